/* obj_build: mp_obj_build and mp_obj_parse behave as Python's Py_BuildValue
 * and PyArg_ParseTuple (every code both ways, nesting, Python's error
 * messages with the position), a failed build frees what N handed over, a
 * failed parse writes nothing, and mp_obj_dict_get_or is d.get(key, default).
 * Values are compared through repr(), which matches Python's character for
 * character (test_obj.c). */
#include "testutil.h"

#include "codec/obj_fmt.h"

#include <mpipc/obj.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* repr(o) compared with what Python prints for the same value; frees o. */
static void assert_repr_and_free(mp_obj *o, const char *expected)
{
    assert_non_null(o);
    char *s = NULL;
    TU_ASSERT_STATUS(mp_obj_repr(o, &s), 0);
    assert_string_equal(s, expected);
    free(s);
    mp_obj_free(o);
}

/* The recorded failure of the last build or parse: its code and text. */
static void assert_failure(int code, const char *msg)
{
    const char *m = NULL;
    TU_ASSERT_STATUS(mp__obj_fmt_last(&m), code);
    assert_string_equal(m, msg);
}

static mp_obj *value(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mp_obj *o = mp_obj_vbuild(fmt, ap);
    va_end(ap);
    assert_non_null(o);
    return o;
}

/* ---- mp_obj_build ---- */

/* Py_BuildValue's codes, one at a time: each gives the Python value. */
static void test_build_each_code_gives_the_python_value(void **state)
{
    (void)state;
    assert_repr_and_free(mp_obj_build("i", -3), "-3");
    assert_repr_and_free(mp_obj_build("b", 'A'), "65");
    assert_repr_and_free(mp_obj_build("h", (short)-300), "-300");
    assert_repr_and_free(mp_obj_build("B", (unsigned char)255), "255");
    assert_repr_and_free(mp_obj_build("H", (unsigned short)65535), "65535");
    assert_repr_and_free(mp_obj_build("I", 4000000000u), "4000000000");
    assert_repr_and_free(mp_obj_build("l", -5L), "-5");
    assert_repr_and_free(mp_obj_build("k", 5UL), "5");
    assert_repr_and_free(mp_obj_build("L", INT64_MIN), "-9223372036854775808");
    assert_repr_and_free(mp_obj_build("K", (unsigned long long)INT64_MAX), "9223372036854775807");
    assert_repr_and_free(mp_obj_build("n", (ssize_t)-1), "-1");
    assert_repr_and_free(mp_obj_build("d", 0.1), "0.1");
    assert_repr_and_free(mp_obj_build("f", 1.5f), "1.5");
    assert_repr_and_free(mp_obj_build("p", 2), "True");
    assert_repr_and_free(mp_obj_build("p", 0), "False");
    assert_repr_and_free(mp_obj_build("s", "h\xc3\xa9llo"), "'h\xc3\xa9llo'");
    assert_repr_and_free(mp_obj_build("U", "u"), "'u'");
    assert_repr_and_free(mp_obj_build("s#", "a\0b", (size_t)3), "'a\\x00b'");
    assert_repr_and_free(mp_obj_build("z#", "ab", (size_t)1), "'a'");
    assert_repr_and_free(mp_obj_build("y", "ab"), "b'ab'");
    assert_repr_and_free(mp_obj_build("y#", "\0\xff", (size_t)2), "b'\\x00\\xff'");
    /* NULL strings are None, as in Python (s, z, y alike). */
    assert_repr_and_free(mp_obj_build("s", (char *)NULL), "None");
    assert_repr_and_free(mp_obj_build("z", (char *)NULL), "None");
    assert_repr_and_free(mp_obj_build("y#", (char *)NULL, (size_t)4), "None");
}

/* One top-level item is the value itself, several a tuple, none None. */
static void test_build_top_level_is_one_value_a_tuple_or_none(void **state)
{
    (void)state;
    assert_repr_and_free(mp_obj_build(""), "None");
    assert_repr_and_free(mp_obj_build("  "), "None");
    assert_repr_and_free(mp_obj_build("i", 1), "1");
    assert_repr_and_free(mp_obj_build("i,i", 1, 2), "(1, 2)");
    assert_repr_and_free(mp_obj_build("i i", 1, 2), "(1, 2)");
    assert_repr_and_free(mp_obj_build("(i)", 1), "(1,)");
    assert_repr_and_free(mp_obj_build("()"), "()");
    assert_repr_and_free(mp_obj_build("[]"), "[]");
    assert_repr_and_free(mp_obj_build("{}"), "{}");
}

static void test_build_nests_tuples_lists_and_dicts(void **state)
{
    (void)state;
    assert_repr_and_free(mp_obj_build("(s,i,[d])", "x", 2, 0.5), "('x', 2, [0.5])");
    assert_repr_and_free(mp_obj_build("{s:i, s:[i,(s,z)]}", "a", 1, "b", 2, "c", NULL),
                         "{'a': 1, 'b': [2, ('c', None)]}");
    assert_repr_and_free(mp_obj_build("[{(ii):s}]", 1, 2, "pt"), "[{(1, 2): 'pt'}]");
    assert_repr_and_free(mp_obj_build("((()))"), "(((),),)");
    /* Dict keys keep Python's semantics: 1 and True are one key, the first
     * key stays and the last value wins. */
    assert_repr_and_free(mp_obj_build("{i:s,p:s}", 1, "a", 1, "b"), "{1: 'b'}");
}

/* O copies (the caller keeps its value, and the result is independent);
 * N hands the value over. */
static void test_build_O_copies_and_N_takes_over(void **state)
{
    (void)state;
    mp_obj *mine = value("[i]", 1);
    mp_obj *r = mp_obj_build("(O,i)", mine, 2);
    TU_ASSERT_STATUS(mp_obj_list_append(mine, mp_obj_int(9)), 0);
    assert_repr_and_free(r, "([1], 2)");
    assert_repr_and_free(mine, "[1, 9]");

    mp_obj *given = value("{s:i}", "k", 3);
    r = mp_obj_build("[N]", given);
    assert_non_null(r);
    assert_ptr_equal(mp_obj_list_get(r, 0), given);
    assert_repr_and_free(r, "[{'k': 3}]");
    /* A single N is the result itself. */
    given = value("[]");
    assert_ptr_equal(mp_obj_build("N", given), given);
    mp_obj_free(given);
}

/* A malformed format is a programming error: NULL, -EINVAL, and a reason
 * with the offset. */
static void test_build_malformed_format_fails_with_the_reason(void **state)
{
    (void)state;
    assert_null(mp_obj_build("(i", 1));
    assert_failure(-EINVAL, "mp_obj_build: unmatched '(' at offset 2 of format \"(i\"");
    assert_null(mp_obj_build("[i,x]", 1));
    assert_failure(-EINVAL, "mp_obj_build: bad format character at offset 3 of format \"[i,x]\"");
    assert_null(mp_obj_build("{s}", "k"));
    assert_failure(-EINVAL,
                   "mp_obj_build: a dict key without a value at offset 2 of format \"{s}\"");
    /* A malformed format outranks a bad value met before it. */
    assert_null(mp_obj_build("[s,x]", "\xff"));
    assert_failure(-EINVAL, "mp_obj_build: bad format character at offset 3 of format \"[s,x]\"");
    const char *bad[] = {"i)", "[i)", "{i:i", "i#", "[", "Q"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_null(mp_obj_build(bad[i], 1, 2, 3));
        TU_ASSERT_STATUS(mp__obj_fmt_last(NULL), -EINVAL);
    }
    assert_null(mp_obj_build(NULL));
    TU_ASSERT_STATUS(mp__obj_fmt_last(NULL), -EINVAL);
    /* A success clears the record. */
    assert_repr_and_free(mp_obj_build("i", 1), "1");
    assert_failure(0, "");
}

/* Bad values: NULL with the Python exception's code, and every N item freed
 * (those before the failure and those after it); leak checkers (ASan,
 * valgrind) judge the "freed". */
static void test_build_failure_frees_every_N_item(void **state)
{
    (void)state;
    assert_null(mp_obj_build("[N,s,N]", value("[s]", "before"), "\xff", value("{i:i}", 1, 2)));
    assert_failure(MP_EVALUE,
                   "mp_obj_build: 's' text is not valid UTF-8 at offset 3 of format \"[N,s,N]\"");

    /* A NULL N, from a constructor that failed, fails the build and the
     * other N items go. */
    assert_null(mp_obj_build("(N,N)", value("[i]", 1), mp_obj_str_cstr("\xff")));
    assert_failure(-EINVAL, "mp_obj_build: 'N' object is NULL at offset 3 of format \"(N,N)\"");

    mp_obj *l = value("[]");
    assert_null(mp_obj_build("{O:N}", l, value("(s)", "v")));
    assert_failure(MP_ETYPE, "mp_obj_build: unhashable dict key at offset 1 of format \"{O:N}\"");
    mp_obj_free(l); /* O only copied it */

    assert_null(mp_obj_build("[K,N]", ULLONG_MAX, value("[s]", "after")));
    assert_failure(-EOVERFLOW, "mp_obj_build: 'K' value 18446744073709551615 does not fit a "
                               "64-bit int at offset 1 of format \"[K,N]\"");
    assert_null(mp_obj_build("[O]", (mp_obj *)NULL));
    TU_ASSERT_STATUS(mp__obj_fmt_last(NULL), -EINVAL);
}

/* The build cannot nest deeper than a value may (MP_OBJ_MAX_DEPTH). */
static void test_build_refuses_nesting_beyond_max_depth(void **state)
{
    (void)state;
    size_t n = MP_OBJ_MAX_DEPTH + 1;
    char *fmt = malloc(2 * n + 1);
    assert_non_null(fmt);
    memset(fmt, '[', n);
    memset(fmt + n, ']', n);
    fmt[2 * n] = '\0';
    assert_null(mp_obj_build(fmt));
    TU_ASSERT_STATUS(mp__obj_fmt_last(NULL), -EINVAL);
    fmt[n - 1] = ' ';
    fmt[n] = ' ';
    mp_obj *o = mp_obj_build(fmt);
    assert_non_null(o);
    mp_obj_free(o);
    free(fmt);
}

static mp_obj *build_twice(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mp_obj *a = mp_obj_vbuild(fmt, ap);
    mp_obj *b = mp_obj_vbuild(fmt, ap);
    va_end(ap);
    assert_true(mp_obj_equal(a, b));
    mp_obj_free(b);
    return a;
}

/* The va_list is the caller's: mp_obj_vbuild reads a copy. */
static void test_vbuild_leaves_the_va_list_to_the_caller(void **state)
{
    (void)state;
    assert_repr_and_free(build_twice("(s,i)", "a", 5), "('a', 5)");
}

static void *fail_a_build_in_a_thread(void *arg)
{
    (void)arg;
    mp_obj *o = mp_obj_build("[x]");
    const char *m;
    return (void *)(intptr_t)(o == NULL && mp__obj_fmt_last(&m) == -EINVAL && *m);
}

/* Why a build failed is kept per thread, as errno: another thread's
 * failure neither shows nor clears this thread's. */
static void test_failure_record_is_per_thread(void **state)
{
    (void)state;
    assert_null(mp_obj_build("(i", 1));
    pthread_t t;
    void *ok = NULL;
    assert_int_equal(pthread_create(&t, NULL, fail_a_build_in_a_thread, NULL), 0);
    assert_int_equal(pthread_join(t, &ok), 0);
    assert_true(ok != NULL);
    assert_failure(-EINVAL, "mp_obj_build: unmatched '(' at offset 2 of format \"(i\"");
}

/* ---- mp_obj_parse ---- */

/* Every code reads back what mp_obj_build made with the same format. */
static void test_parse_reads_back_every_code_the_build_wrote(void **state)
{
    (void)state;
    const char *fmt = "(i,b,h,l,L,n,d,f,p,s,s#,z,z#,y,y#,O)";
    mp_obj *inner = value("[i]", 7);
    mp_obj *o =
        mp_obj_build(fmt, -7, 200, -300, -8L, INT64_MIN, (ssize_t)9, 0.25, 1.5f, 1, "s", "a\0b",
                     (size_t)3, NULL, "z", (size_t)1, "yy", "\0\1", (size_t)2, inner);
    mp_obj_free(inner); /* O copied it */
    assert_non_null(o);
    int i, p;
    unsigned char b;
    short h;
    long l;
    int64_t L;
    ssize_t n;
    double d;
    float f;
    const char *s, *s2, *z = "x", *z2, *y, *y2;
    size_t s2len, z2len, y2len;
    const mp_obj *obj;
    TU_ASSERT_STATUS(mp_obj_parse(o, fmt, &i, &b, &h, &l, &L, &n, &d, &f, &p, &s, &s2, &s2len, &z,
                                  &z2, &z2len, &y, &y2, &y2len, &obj),
                     0);
    assert_int_equal(i, -7);
    assert_int_equal(b, 200);
    assert_int_equal(h, -300);
    assert_int_equal(l, -8);
    assert_true(L == INT64_MIN);
    assert_int_equal(n, 9);
    assert_true(d == 0.25);
    assert_true(f == 1.5f);
    assert_int_equal(p, 1);
    assert_string_equal(s, "s");
    assert_int_equal(s2len, 3);
    assert_memory_equal(s2, "a\0b", 4); /* NUL-terminated after the text */
    assert_null(z);                     /* None for z */
    assert_int_equal(z2len, 1);
    assert_string_equal(z2, "z");
    assert_string_equal(y, "yy");
    assert_int_equal(y2len, 2);
    assert_memory_equal(y2, "\0\1", 2);
    assert_ptr_equal(obj, mp_obj_list_get(o, 15)); /* borrowed from o */
    mp_obj_free(o);
}

/* Python's unsigned codes: any int, modulo 2**bits; U and S hand out a
 * str or bytes value itself. */
static void test_parse_unsigned_codes_mask_and_U_S_check_the_type(void **state)
{
    (void)state;
    mp_obj *o = value("(i,i,L,i,i,s,y)", -1, 65537, (int64_t)UINT32_MAX + 2, -2, 7, "u", "b");
    unsigned char B = 0;
    unsigned short H = 0;
    unsigned I = 0;
    unsigned long k = 0;
    unsigned long long K = 0;
    const mp_obj *u = NULL, *sb = NULL;
    TU_ASSERT_STATUS(mp_obj_parse(o, "B,H,I,k,K,U,S", &B, &H, &I, &k, &K, &u, &sb), 0);
    assert_int_equal(B, 255);
    assert_int_equal(H, 1);
    assert_int_equal(I, 1);
    assert_true(k == ULONG_MAX - 1);
    assert_true(K == 7);
    assert_ptr_equal(u, mp_obj_list_get(o, 5));
    assert_ptr_equal(sb, mp_obj_list_get(o, 6));
    TU_ASSERT_STATUS(mp_obj_parse(o, "B,H,I,k,K,S,S", &B, &H, &I, &k, &K, &u, &sb), MP_ETYPE);
    assert_failure(MP_ETYPE, "argument 6 must be bytes, not str");
    TU_ASSERT_STATUS(mp_obj_parse(o, "B,H,I,k,K,U,U", &B, &H, &I, &k, &K, &u, &sb), MP_ETYPE);
    assert_failure(MP_ETYPE, "argument 7 must be str, not bytes");
    TU_ASSERT_STATUS(mp_obj_parse(o, "U,H,I,k,K,U,S", &u, &H, &I, &k, &K, &u, &sb), MP_ETYPE);
    assert_failure(MP_ETYPE, "argument 1 must be str, not int");
    mp_obj_free(o);
}

/* One code alone reads the value itself; a lone (...) and bare items both
 * read the items of a tuple, as they build one. */
static void test_parse_top_level_reads_as_build_writes(void **state)
{
    (void)state;
    mp_obj *o = value("i", 42);
    int x = 0, y = 0;
    TU_ASSERT_STATUS(mp_obj_parse(o, "i", &x), 0);
    assert_int_equal(x, 42);
    mp_obj_free(o);
    o = value("(s,i)", "k", 5);
    const char *s = NULL;
    TU_ASSERT_STATUS(mp_obj_parse(o, "(s,i)", &s, &x), 0);
    assert_string_equal(s, "k");
    x = 0;
    TU_ASSERT_STATUS(mp_obj_parse(o, "s i", &s, &x), 0);
    assert_int_equal(x, 5);
    mp_obj_free(o);
    /* A list is read like a tuple, at the top and nested. */
    o = value("[i,[i,i]]", 1, 2, 3);
    int a, b, c;
    TU_ASSERT_STATUS(mp_obj_parse(o, "i,(i,i)", &a, &b, &c), 0);
    assert_int_equal(a + b + c, 6);
    mp_obj_free(o);
    /* 'p' is Python's truth value of anything; 'd' takes an int. */
    o = value("(s,[],[i],d,z,i)", "", 0, 0.0, NULL, 3);
    int t[5];
    double d;
    TU_ASSERT_STATUS(mp_obj_parse(o, "ppppp d", &t[0], &t[1], &t[2], &t[3], &t[4], &d), 0);
    assert_int_equal(t[0], 0);
    assert_int_equal(t[1], 0);
    assert_int_equal(t[2], 1);
    assert_int_equal(t[3], 0);
    assert_int_equal(t[4], 0);
    assert_true(d == 3.0);
    mp_obj_free(o);
    (void)y;
}

/* '|': the items after it may be missing; their variables keep what the
 * caller put there (the default). */
static void test_parse_optional_tail_keeps_the_defaults(void **state)
{
    (void)state;
    mp_obj *o = value("(s)", "name");
    const char *s = NULL;
    int n = -1;
    double r = 0.5;
    TU_ASSERT_STATUS(mp_obj_parse(o, "(s|i,d)", &s, &n, &r), 0);
    assert_string_equal(s, "name");
    assert_int_equal(n, -1);
    assert_true(r == 0.5);
    mp_obj_free(o);
    o = value("(s,i)", "name", 3);
    TU_ASSERT_STATUS(mp_obj_parse(o, "s|i,d", &s, &n, &r), 0);
    assert_int_equal(n, 3);
    assert_true(r == 0.5);
    mp_obj_free(o);
    /* Optional items inside a nested sequence; what follows still lines up. */
    o = value("((i),s)", 1, "after");
    int a = 0, b = 99;
    TU_ASSERT_STATUS(mp_obj_parse(o, "(i|i),s", &a, &b, &s), 0);
    assert_int_equal(a, 1);
    assert_int_equal(b, 99);
    assert_string_equal(s, "after");
    mp_obj_free(o);
}

struct parse_case {
    const char *fmt; /* what to build the value with (no arguments needed) */
    const char *parse;
    int code;
    const char *msg;
};

/* Python's TypeError / ValueError / OverflowError words, with the position
 * (arguments from 1, items of a nested sequence from 0, as getargs.c). */
static void test_parse_errors_name_the_position_in_python_words(void **state)
{
    (void)state;
    mp_obj *v;
    const char *s;
    int i, j;
    unsigned char b;
    double d;
    size_t len;
    const mp_obj *any;

    v = value("(s,s)", "a", "b");
    TU_ASSERT_STATUS(mp_obj_parse(v, "(s,i)", &s, &i), MP_ETYPE);
    assert_failure(MP_ETYPE, "argument 2 must be int, not str");
    TU_ASSERT_STATUS(mp_obj_parse(v, "(s,i):frob", &s, &i), MP_ETYPE);
    assert_failure(MP_ETYPE, "frob() argument 2 must be int, not str");
    TU_ASSERT_STATUS(mp_obj_parse(v, "s,d", &s, &d), MP_ETYPE);
    assert_failure(MP_ETYPE, "argument 2 must be real number, not str");
    TU_ASSERT_STATUS(mp_obj_parse(v, "(s,s,i)", &s, &s, &i), MP_ETYPE);
    assert_failure(MP_ETYPE, "function takes exactly 3 arguments (2 given)");
    TU_ASSERT_STATUS(mp_obj_parse(v, "(s):frob", &s), MP_ETYPE);
    assert_failure(MP_ETYPE, "frob() takes exactly 1 argument (2 given)");
    TU_ASSERT_STATUS(mp_obj_parse(v, "(s,s,s|i)", &s, &s, &s, &i), MP_ETYPE);
    assert_failure(MP_ETYPE, "function takes at least 3 arguments (2 given)");
    TU_ASSERT_STATUS(mp_obj_parse(v, "(|s)", &s), MP_ETYPE);
    assert_failure(MP_ETYPE, "function takes at most 1 argument (2 given)");
    TU_ASSERT_STATUS(mp_obj_parse(v, "i", &i), MP_ETYPE);
    assert_failure(MP_ETYPE, "argument must be int, not tuple");
    mp_obj_free(v);

    v = value("(s,i,(s,i))", "a", 1, "x", 2);
    TU_ASSERT_STATUS(mp_obj_parse(v, "s,i,(i,i)", &s, &i, &i, &j), MP_ETYPE);
    assert_failure(MP_ETYPE, "argument 3, item 0 must be int, not str");
    TU_ASSERT_STATUS(mp_obj_parse(v, "s,i,(s,i,i)", &s, &i, &s, &i, &j), MP_ETYPE);
    assert_failure(MP_ETYPE, "argument 3 must be sequence of length 3, not 2");
    TU_ASSERT_STATUS(mp_obj_parse(v, "s,(i,i),(s,i)", &s, &i, &j, &s, &i), MP_ETYPE);
    assert_failure(MP_ETYPE, "argument 2 must be 2-item sequence, not int");
    TU_ASSERT_STATUS(mp_obj_parse(v, "(z,z,O)", &s, &s, &any), MP_ETYPE);
    assert_failure(MP_ETYPE, "argument 2 must be str or None, not int");
    TU_ASSERT_STATUS(mp_obj_parse(v, "y,i,O", &s, &i, &any), MP_ETYPE);
    assert_failure(MP_ETYPE, "argument 1 must be bytes, not str");
    mp_obj_free(v);

    v = value("(s#,y#)", "a\0b", (size_t)3, "c\0d", (size_t)3);
    TU_ASSERT_STATUS(mp_obj_parse(v, "s,y#", &s, &s, &len), MP_EVALUE);
    assert_failure(MP_EVALUE, "argument 1: embedded null character");
    TU_ASSERT_STATUS(mp_obj_parse(v, "O,y", &any, &s), MP_EVALUE);
    assert_failure(MP_EVALUE, "argument 2: embedded null byte");
    mp_obj_free(v);

    v = value("(L,L,i,i)", (int64_t)INT_MAX + 1, (int64_t)INT_MIN - 1, 256, -1);
    TU_ASSERT_STATUS(mp_obj_parse(v, "i,O,O,O", &i, &any, &any, &any), -EOVERFLOW);
    assert_failure(-EOVERFLOW, "argument 1: signed integer is greater than maximum");
    TU_ASSERT_STATUS(mp_obj_parse(v, "O,i,O,O", &any, &i, &any, &any), -EOVERFLOW);
    assert_failure(-EOVERFLOW, "argument 2: signed integer is less than minimum");
    TU_ASSERT_STATUS(mp_obj_parse(v, "O,O,b,O", &any, &any, &b, &any), -EOVERFLOW);
    assert_failure(-EOVERFLOW, "argument 3: unsigned byte integer is greater than maximum");
    TU_ASSERT_STATUS(mp_obj_parse(v, "O,O,O,b", &any, &any, &any, &b), -EOVERFLOW);
    assert_failure(-EOVERFLOW, "argument 4: unsigned byte integer is less than minimum");
    mp_obj_free(v);
}

/* A failed parse writes nothing, even the variables of the items that
 * passed before the one that failed. */
static void test_parse_failure_writes_no_variable(void **state)
{
    (void)state;
    mp_obj *v = value("(i,s,s)", 1, "a", "b");
    int a = -1, c = -1;
    const char *s = "untouched";
    TU_ASSERT_STATUS(mp_obj_parse(v, "i,s,i", &a, &s, &c), MP_ETYPE);
    assert_int_equal(a, -1);
    assert_string_equal(s, "untouched");
    assert_int_equal(c, -1);
    mp_obj_free(v);
}

/* A malformed format, a NULL value or variable: -EINVAL with the reason. */
static void test_parse_malformed_format_is_einval(void **state)
{
    (void)state;
    mp_obj *v = value("(i,i)", 1, 2);
    int a, b;
    TU_ASSERT_STATUS(mp_obj_parse(v, "(i,i", &a, &b), -EINVAL);
    assert_failure(-EINVAL, "mp_obj_parse: unmatched '(' at offset 4 of format \"(i,i\"");
    TU_ASSERT_STATUS(mp_obj_parse(v, "i,x", &a, &b), -EINVAL);
    assert_failure(-EINVAL, "mp_obj_parse: bad format character at offset 2 of format \"i,x\"");
    const char *bad[] = {"i)", "i#,i", "i||i", "[i,i]", "{i:i}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        TU_ASSERT_STATUS(mp_obj_parse(v, bad[i], &a, &b), -EINVAL);
    TU_ASSERT_STATUS(mp_obj_parse(v, "i,i", &a, (int *)NULL), -EINVAL);
    assert_failure(-EINVAL, "argument 2: a NULL variable for 'i'");
    TU_ASSERT_STATUS(mp_obj_parse(NULL, "i", &a), -EINVAL);
    TU_ASSERT_STATUS(mp_obj_parse(v, NULL), -EINVAL);
    mp_obj_free(v);
}

/* Random formats against random values: every variable is a pointer, so
 * 40 pointers to scratch space serve any format of up to 40 variables.
 * Each call returns 0 or a named code with its message recorded, and
 * never reads or writes out of bounds (the sanitizer and memcheck runs
 * judge that). */
static void test_parse_of_random_formats_fails_cleanly(void **state)
{
    (void)state;
    static const char alphabet[] = "ibhlLnBHIkKdfpszyOUS##(()))|, :";
    mp_obj *values[] = {value("(i,s,[d,(y,z)],i)", 1, "a", 0.5, "b", NULL, 300),
                        value("[s#,{i:i},L]", "x\0y", (size_t)3, 1, 2, INT64_MAX), value("i", -1),
                        value("()"), value("(s)", "")};
    _Alignas(16) unsigned char scratch[40][16];
    unsigned seed = 12345;
    for (int iter = 0; iter < 20000; iter++) {
        char fmt[16];
        seed = seed * 1103515245u + 12345u;
        size_t len = (seed >> 16) % (sizeof fmt - 1);
        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            fmt[i] = alphabet[(seed >> 16) % (sizeof alphabet - 1)];
        }
        fmt[len] = '\0';
        const mp_obj *v = values[(seed >> 8) % (sizeof values / sizeof values[0])];
#define S(i) (void *)scratch[i]
        int rc = mp_obj_parse(v, fmt, S(0), S(1), S(2), S(3), S(4), S(5), S(6), S(7), S(8), S(9),
                              S(10), S(11), S(12), S(13), S(14), S(15), S(16), S(17), S(18), S(19),
                              S(20), S(21), S(22), S(23), S(24), S(25), S(26), S(27), S(28), S(29),
                              S(30), S(31), S(32), S(33), S(34), S(35), S(36), S(37), S(38), S(39));
#undef S
        const char *m;
        int last = mp__obj_fmt_last(&m);
        if (rc == 0) {
            assert_int_equal(last, 0);
            continue;
        }
        if (rc != MP_ETYPE && rc != MP_EVALUE && rc != -EOVERFLOW && rc != -EINVAL) {
            print_error("format \"%s\": %d\n", fmt, rc);
            fail();
        }
        assert_int_equal(last, rc);
        assert_true(*m != '\0');
    }
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        mp_obj_free(values[i]);
}

/* ---- mp_obj_dict_get_or ---- */

/* Python's d.get(key, default): the stored value, else the default; both
 * borrowed. */
static void test_dict_get_or_is_python_get_with_default(void **state)
{
    (void)state;
    mp_obj *d = value("{s:i,i:s}", "a", 1, 1, "one");
    mp_obj *dflt = value("s", "dflt");
    mp_obj *key = value("s", "a");
    assert_ptr_equal(mp_obj_dict_get_or(d, key, dflt), mp_obj_dict_get(d, key));
    mp_obj_free(key);
    key = value("s", "missing");
    assert_ptr_equal(mp_obj_dict_get_or(d, key, dflt), dflt);
    assert_null(mp_obj_dict_get_or(d, key, NULL)); /* d.get(key) is None */
    mp_obj_free(key);
    /* 1.0 and True find the key 1, as in Python. */
    key = value("d", 1.0);
    assert_repr_and_free(mp_obj_copy(mp_obj_dict_get_or(d, key, dflt)), "'one'");
    mp_obj_free(key);
    /* An unhashable key is Python's TypeError, never the default. */
    key = value("[]");
    assert_null(mp_obj_dict_get_or(d, key, dflt));
    mp_obj_free(key);
    assert_null(mp_obj_dict_get_or(dflt, dflt, dflt)); /* not a dict */
    assert_null(mp_obj_dict_get_or(NULL, dflt, dflt));
    mp_obj_free(dflt);
    mp_obj_free(d);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_each_code_gives_the_python_value),
        cmocka_unit_test(test_build_top_level_is_one_value_a_tuple_or_none),
        cmocka_unit_test(test_build_nests_tuples_lists_and_dicts),
        cmocka_unit_test(test_build_O_copies_and_N_takes_over),
        cmocka_unit_test(test_build_malformed_format_fails_with_the_reason),
        cmocka_unit_test(test_build_failure_frees_every_N_item),
        cmocka_unit_test(test_build_refuses_nesting_beyond_max_depth),
        cmocka_unit_test(test_vbuild_leaves_the_va_list_to_the_caller),
        cmocka_unit_test(test_failure_record_is_per_thread),
        cmocka_unit_test(test_parse_reads_back_every_code_the_build_wrote),
        cmocka_unit_test(test_parse_top_level_reads_as_build_writes),
        cmocka_unit_test(test_parse_unsigned_codes_mask_and_U_S_check_the_type),
        cmocka_unit_test(test_parse_optional_tail_keeps_the_defaults),
        cmocka_unit_test(test_parse_errors_name_the_position_in_python_words),
        cmocka_unit_test(test_parse_failure_writes_no_variable),
        cmocka_unit_test(test_parse_malformed_format_is_einval),
        cmocka_unit_test(test_parse_of_random_formats_fails_cleanly),
        cmocka_unit_test(test_dict_get_or_is_python_get_with_default),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
