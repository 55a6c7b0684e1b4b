/* Tests of mp_shareable_list (Python's ShareableList): the block is byte
 * for byte what CPython writes for the same list; C reads and changes a
 * list Python made and Python reads one C made; Python's rules for setting
 * items (type changes, the slot's size, index errors); bad input and
 * damaged blocks are refused with named errors and change nothing. */
#include "shm_testutil.h"

#include <mpipc/error.h>
#include <mpipc/obj.h>
#include <mpipc/shared_memory.h>

#include <math.h>

static const mp_shared_memory_opts untracked = {.track = false};

/* The list every interop test uses, as Python sees it. */
static const char py_values[] =
    "[1, -2.5, True, None, 'hello', b'by\\x00tes', '', 2**40, False, b'12345678', 'x' * 8, -1]";

/* The same list built in C. */
static mp_obj *values_in_c(void)
{
    mp_obj *l = mp_obj_list_new();
    mp_obj *items[] = {
        mp_obj_int(1),
        mp_obj_float(-2.5),
        mp_obj_bool(true),
        mp_obj_none(),
        mp_obj_str_cstr("hello"),
        mp_obj_bytes("by\0tes", 6),
        mp_obj_str("", 0),
        mp_obj_int(INT64_C(1) << 40),
        mp_obj_bool(false),
        mp_obj_bytes("12345678", 8),
        mp_obj_str_cstr("xxxxxxxx"),
        mp_obj_int(-1),
    };
    for (size_t i = 0; i < sizeof items / sizeof items[0]; i++)
        assert_int_equal(mp_obj_list_append(l, items[i]), 0);
    return l;
}

static void assert_item(const mp_shareable_list *l, ssize_t i, const mp_obj *want)
{
    mp_obj *got;
    TU_ASSERT_STATUS(mp_shareable_list_get(l, i, &got), 0);
    assert_int_equal(mp_obj_type(got), mp_obj_type(want));
    assert_true(mp_obj_equal(got, want));
    mp_obj_free(got);
}

static const char py_makes_list[] =
    SHMT_PY_PRELUDE "sl = shared_memory.ShareableList(eval(sys.argv[1]))\n"
                    "print(sl.shm.name, flush=True)\n"
                    "print(sl.format, flush=True)\n"
                    "sys.stdin.readline()\n"
                    "got = list(sl)\n"
                    "sl.shm.close(); sl.shm.unlink()\n"
                    "want = eval(sys.argv[2])\n"
                    "same = got == want and [type(v) for v in got] == [type(v) for v in want]\n"
                    "print('ok' if same else 'bad %r' % (got,), flush=True)\n";

/* Python makes a ShareableList; C's block for the same list is the same
 * bytes, its format string the same; C reads every item and sets some
 * (changing types, as Python allows), and Python reads C's changes. */
static void test_shareable_list_matches_and_shares_a_list_python_made(void **state)
{
    (void)state;
    mp_obj *want = values_in_c();
    const char *interp;
    for (size_t pyi = 0; (interp = tu_python_at(pyi)) != NULL; pyi++) {
        struct shmt_py py;
        const char *after = "[1, -2.5, True, None, 'hello', b'by\\x00tes', '', 2**40, False, "
                            "b'12345678', 'x' * 8, 'now str']";
        const char *args[] = {py_values, after, NULL};
        shmt_py_start(&py, interp, py_makes_list, args);
        char name[300], pyfmt[300], line[300];
        shmt_py_line(&py, name, sizeof name);
        shmt_note(name);
        shmt_py_line(&py, pyfmt, sizeof pyfmt);

        mp_shareable_list *theirs, *ours;
        TU_ASSERT_STATUS(mp_shareable_list_attach(&theirs, name, &untracked), 0);
        TU_ASSERT_STATUS(mp_shareable_list_create(&ours, want, NULL, &untracked), 0);
        shmt_note(mp_shared_memory_name(mp_shareable_list_shm(ours)));
        mp_shared_memory *a = mp_shareable_list_shm(theirs), *b = mp_shareable_list_shm(ours);
        assert_int_equal(mp_shared_memory_size(a), mp_shared_memory_size(b));
        assert_memory_equal(mp_shared_memory_buf(a), mp_shared_memory_buf(b),
                            mp_shared_memory_size(a));
        char *fmt;
        TU_ASSERT_STATUS(mp_shareable_list_format(ours, &fmt), 0);
        assert_string_equal(fmt, pyfmt);
        free(fmt);

        assert_int_equal(mp_shareable_list_len(theirs), 12);
        for (ssize_t i = 0; i < 12; i++)
            assert_item(theirs, i, mp_obj_list_get(want, i));
        mp_obj *s = mp_obj_str_cstr("now str");
        TU_ASSERT_STATUS(mp_shareable_list_set(theirs, -1, s), 0); /* an int slot: 8 bytes */
        mp_obj_free(s);

        TU_ASSERT_STATUS(mp_shared_memory_unlink(b), 0);
        mp_shareable_list_free(ours);
        mp_shareable_list_free(theirs);
        shmt_py_say(&py, "read");
        shmt_py_line(&py, line, sizeof line);
        assert_string_equal(line, "ok");
        assert_int_equal(shmt_py_finish(&py), 0);
    }
    mp_obj_free(want);
}

static const char py_reads_list[] =
    SHMT_PY_PRELUDE "sl = shared_memory.ShareableList(name=sys.argv[1])\n"
                    "untrack(sl.shm)\n"
                    "got = list(sl)\n"
                    "want = eval(sys.argv[2])\n"
                    "same = got == want and [type(v) for v in got] == [type(v) for v in want]\n"
                    "same = same and sl.format == sys.argv[3] and len(sl) == len(want)\n"
                    "sl[0] = 'py'\n"
                    "sl.shm.close()\n"
                    "print('ok' if same else 'bad %r %r' % (got, sl.format), flush=True)\n";

/* C makes a list and changes items (every type change Python allows, str
 * and bytes within their slots, non-ASCII text); Python reads it, with its
 * format, and its own write comes back to C. */
static void test_shareable_list_python_reads_a_list_c_made_and_changed(void **state)
{
    (void)state;
    const char *interp;
    for (size_t pyi = 0; (interp = tu_python_at(pyi)) != NULL; pyi++) {
        mp_obj *seq = values_in_c();
        mp_shareable_list *l;
        TU_ASSERT_STATUS(mp_shareable_list_create(&l, seq, NULL, &untracked), 0);
        mp_obj_free(seq);
        mp_shared_memory *shm = mp_shareable_list_shm(l);
        shmt_note(mp_shared_memory_name(shm));
        mp_obj *v[] = {
            mp_obj_str_cstr("\xe2\x82\xac\xe2\x82\xac"), /* '€€': 6 bytes in an 8-byte int slot */
            mp_obj_none(),                               /* float -> None */
            mp_obj_float(0.5),                           /* bool -> float */
            mp_obj_int(-7),                              /* None -> int */
            mp_obj_bytes("raw", 3),                      /* str -> bytes */
            mp_obj_bool(true),                           /* bytes -> bool */
        };
        for (ssize_t i = 0; i < 6; i++) {
            TU_ASSERT_STATUS(mp_shareable_list_set(l, i, v[i]), 0);
            mp_obj_free(v[i]);
        }
        char *fmt;
        TU_ASSERT_STATUS(mp_shareable_list_format(l, &fmt), 0);
        struct shmt_py py;
        const char *args[] = {mp_shared_memory_name(shm),
                              "['\\u20ac\\u20ac', None, 0.5, -7, b'raw', True, '', 2**40, False, "
                              "b'12345678', 'x' * 8, -1]",
                              fmt, NULL};
        shmt_py_start(&py, interp, py_reads_list, args);
        char line[300];
        shmt_py_line(&py, line, sizeof line);
        assert_string_equal(line, "ok");
        assert_int_equal(shmt_py_finish(&py), 0);
        free(fmt);
        mp_obj *py_str = mp_obj_str_cstr("py");
        assert_item(l, 0, py_str);
        mp_obj_free(py_str);
        TU_ASSERT_STATUS(mp_shared_memory_unlink(shm), 0);
        mp_shareable_list_free(l);
    }
}

static const char py_reads_text[] =
    SHMT_PY_PRELUDE "sl = shared_memory.ShareableList(name=sys.argv[1])\n"
                    "untrack(sl.shm)\n"
                    "ok = list(sl) == ['\u20ac' * 5, 'ab'] and sl.format == '16s8s'\n"
                    "sl.shm.close()\n"
                    "print('ok' if ok else 'bad %r %r' % (list(sl), sl.format), flush=True)\n";

/* A non-ASCII str gets a slot for its UTF-8 bytes ('\u20ac' * 5 is 15
 * bytes: a 16-byte slot, where Python's count of code points would give 8
 * and cut it), and Python reads it whole. */
static void test_shareable_list_sizes_text_by_its_utf8_bytes(void **state)
{
    (void)state;
    mp_obj *seq = mp_obj_list_new();
    mp_obj_list_append(
        seq, mp_obj_str_cstr("\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac"));
    mp_obj_list_append(seq, mp_obj_str_cstr("ab"));
    mp_shareable_list *l;
    TU_ASSERT_STATUS(mp_shareable_list_create(&l, seq, NULL, &untracked), 0);
    shmt_note(mp_shared_memory_name(mp_shareable_list_shm(l)));
    assert_item(l, 0, mp_obj_list_get(seq, 0));
    mp_obj_free(seq);
    const char *interp;
    for (size_t pyi = 0; (interp = tu_python_at(pyi)) != NULL; pyi++) {
        struct shmt_py py;
        const char *args[] = {mp_shared_memory_name(mp_shareable_list_shm(l)), NULL};
        shmt_py_start(&py, interp, py_reads_text, args);
        char line[300];
        shmt_py_line(&py, line, sizeof line);
        assert_string_equal(line, "ok");
        assert_int_equal(shmt_py_finish(&py), 0);
    }
    TU_ASSERT_STATUS(mp_shared_memory_unlink(mp_shareable_list_shm(l)), 0);
    mp_shareable_list_free(l);
}

/* Python's __setitem__ rules: a str or bytes must fit the slot ("bytes/str
 * item exceeds available storage"), an index beyond the end is IndexError,
 * a negative one counts from the end, an unsupported type or an int beyond
 * int64 is refused; a refused set writes nothing. */
static void test_shareable_list_set_follows_pythons_rules(void **state)
{
    (void)state;
    mp_obj *seq = mp_obj_list_new();
    mp_obj_list_append(seq, mp_obj_int(5));
    mp_obj_list_append(seq, mp_obj_str_cstr("abcdefghijk")); /* 11 bytes: a 16-byte slot */
    mp_shareable_list *l;
    TU_ASSERT_STATUS(mp_shareable_list_create(&l, seq, NULL, &untracked), 0);
    shmt_note(mp_shared_memory_name(mp_shareable_list_shm(l)));

    mp_obj *fits8 = mp_obj_str_cstr("12345678"), *over8 = mp_obj_str_cstr("123456789");
    mp_obj *fits16 = mp_obj_bytes("0123456789abcdef", 16);
    mp_obj *over16 = mp_obj_bytes("0123456789abcdefg", 17);
    TU_ASSERT_STATUS(mp_shareable_list_set(l, 0, over8), MP_EVALUE);
    assert_string_equal(mp_errmsg(MP_EVALUE), "bytes/str item exceeds available storage");
    assert_item(l, 0, mp_obj_list_get(seq, 0));
    TU_ASSERT_STATUS(mp_shareable_list_set(l, 0, fits8), 0);
    assert_item(l, 0, fits8);
    TU_ASSERT_STATUS(mp_shareable_list_set(l, -1, over16), MP_EVALUE);
    assert_item(l, 1, mp_obj_list_get(seq, 1));
    TU_ASSERT_STATUS(mp_shareable_list_set(l, -1, fits16), 0);
    assert_item(l, 1, fits16);

    TU_ASSERT_STATUS(mp_shareable_list_set(l, 2, fits8), MP_EKEY);
    TU_ASSERT_STATUS(mp_shareable_list_set(l, -3, fits8), MP_EKEY);
    mp_obj *got = (mp_obj *)1;
    TU_ASSERT_STATUS(mp_shareable_list_get(l, 2, &got), MP_EKEY);
    assert_null(got);

    mp_obj *bad[] = {mp_obj_list_new(), mp_obj_dict_new(), mp_obj_tuple_new()};
    for (int i = 0; i < 3; i++) {
        TU_ASSERT_STATUS(mp_shareable_list_set(l, 0, bad[i]), MP_ETYPE);
        mp_obj_free(bad[i]);
    }
    mp_obj *big;
    TU_ASSERT_STATUS(mp_obj_int_from_str("9223372036854775808", 19, &big), 0);
    TU_ASSERT_STATUS(mp_shareable_list_set(l, 0, big), -ERANGE);
    mp_obj_free(big);
    mp_obj *surrogate = mp_obj_str("\xed\xb3\xbf", 3); /* '\udcff' */
    assert_non_null(surrogate);
    TU_ASSERT_STATUS(mp_shareable_list_set(l, 0, surrogate), MP_EVALUE);
    mp_obj_free(surrogate);
    assert_item(l, 0, fits8);
    TU_ASSERT_STATUS(mp_shareable_list_set(NULL, 0, fits8), -EINVAL);
    TU_ASSERT_STATUS(mp_shareable_list_set(l, 0, NULL), -EINVAL);

    mp_obj_free(fits8);
    mp_obj_free(over8);
    mp_obj_free(fits16);
    mp_obj_free(over16);
    mp_obj_free(seq);
    TU_ASSERT_STATUS(mp_shared_memory_unlink(mp_shareable_list_shm(l)), 0);
    mp_shareable_list_free(l);
}

/* A list holding a type ShareableList cannot store (Python's KeyError), or
 * something that is not a list, makes no block at all. */
static void test_shareable_list_create_refuses_bad_items_and_makes_nothing(void **state)
{
    (void)state;
    char name[64];
    shmt_name(name, sizeof name, "badlist");
    mp_obj *seq = mp_obj_list_new();
    mp_obj_list_append(seq, mp_obj_int(1));
    mp_obj_list_append(seq, mp_obj_list_new());
    mp_shareable_list *l = (mp_shareable_list *)1;
    TU_ASSERT_STATUS(mp_shareable_list_create(&l, seq, name, &untracked), MP_ETYPE);
    assert_null(l);
    assert_false(shmt_exists(name));
    mp_obj *notseq = mp_obj_int(3);
    TU_ASSERT_STATUS(mp_shareable_list_create(&l, notseq, name, &untracked), MP_ETYPE);
    assert_false(shmt_exists(name));
    mp_obj_free(notseq);
    mp_obj_free(seq);
    TU_ASSERT_STATUS(mp_shareable_list_create(NULL, NULL, name, &untracked), -EINVAL);
}

/* len, count and index with Python's equality (1 == 1.0 == True), index's
 * ValueError, an empty list (16 bytes, as Python makes it), trailing NULs
 * dropped on read as Python's rstrip does. */
static void test_shareable_list_len_count_index_and_empty(void **state)
{
    (void)state;
    mp_obj *seq = mp_obj_list_new();
    mp_obj_list_append(seq, mp_obj_float(1.0));
    mp_obj_list_append(seq, mp_obj_int(2));
    mp_obj_list_append(seq, mp_obj_bool(true));
    mp_obj_list_append(seq, mp_obj_bytes("ab\0\0", 4));
    mp_shareable_list *l;
    TU_ASSERT_STATUS(mp_shareable_list_create(&l, seq, NULL, &untracked), 0);
    shmt_note(mp_shared_memory_name(mp_shareable_list_shm(l)));
    assert_int_equal(mp_shareable_list_len(l), 4);
    mp_obj *one = mp_obj_int(1), *three = mp_obj_int(3), *ab = mp_obj_bytes("ab", 2);
    assert_int_equal(mp_shareable_list_count(l, one), 2);
    assert_int_equal(mp_shareable_list_index(l, one), 0);
    assert_int_equal(mp_shareable_list_index(l, ab), 3);
    TU_ASSERT_STATUS(mp_shareable_list_index(l, three), MP_EVALUE);
    assert_int_equal(mp_shareable_list_count(l, three), 0);
    mp_obj_free(one);
    mp_obj_free(three);
    mp_obj_free(ab);
    mp_obj_free(seq);
    TU_ASSERT_STATUS(mp_shared_memory_unlink(mp_shareable_list_shm(l)), 0);
    mp_shareable_list_free(l);

    TU_ASSERT_STATUS(mp_shareable_list_create(&l, NULL, NULL, &untracked), 0);
    shmt_note(mp_shared_memory_name(mp_shareable_list_shm(l)));
    assert_int_equal(mp_shareable_list_len(l), 0);
    assert_int_equal(mp_shared_memory_size(mp_shareable_list_shm(l)), 16);
    char *fmt;
    TU_ASSERT_STATUS(mp_shareable_list_format(l, &fmt), 0);
    assert_string_equal(fmt, "");
    free(fmt);
    TU_ASSERT_STATUS(mp_shared_memory_unlink(mp_shareable_list_shm(l)), 0);
    mp_shareable_list_free(l);
}

/* A block that does not hold a ShareableList: a count too large for it is
 * refused at attach; a damaged format or offset is refused by get and set,
 * never read past the block. */
static void test_shareable_list_refuses_a_damaged_block(void **state)
{
    (void)state;
    char name[64];
    shmt_name(name, sizeof name, "damaged");
    mp_shared_memory *shm;
    TU_ASSERT_STATUS(mp_shared_memory_create(&shm, name, 64, &untracked), 0);
    int64_t n = 1000;
    memcpy(mp_shared_memory_buf(shm), &n, 8);
    mp_shareable_list *l = (mp_shareable_list *)1;
    TU_ASSERT_STATUS(mp_shareable_list_attach(&l, name, &untracked), MP_EPROTO);
    assert_null(l);
    n = -1;
    memcpy(mp_shared_memory_buf(shm), &n, 8);
    TU_ASSERT_STATUS(mp_shareable_list_attach(&l, name, &untracked), MP_EPROTO);
    TU_ASSERT_STATUS(mp_shared_memory_unlink(shm), 0);
    mp_shared_memory_free(shm);

    mp_obj *seq = mp_obj_list_new();
    mp_obj_list_append(seq, mp_obj_int(42));
    TU_ASSERT_STATUS(mp_shareable_list_create(&l, seq, name, &untracked), 0);
    mp_obj_free(seq);
    unsigned char *b = mp_shared_memory_buf(mp_shareable_list_shm(l));
    /* layout for one item: count, 2 offsets, 8 data bytes, format at 32, code at 40 */
    memcpy(b + 32, "zz", 2);
    mp_obj *got = (mp_obj *)1, *v = mp_obj_int(1);
    TU_ASSERT_STATUS(mp_shareable_list_get(l, 0, &got), MP_EPROTO);
    assert_null(got);
    memcpy(b + 32, "q\0", 2);
    b[40] = 9; /* no such back-transform code */
    TU_ASSERT_STATUS(mp_shareable_list_get(l, 0, &got), MP_EPROTO);
    memcpy(b + 32, "8s", 2);
    b[40] = 1;                     /* a str slot... */
    memcpy(b + 24, "\xff\xfe", 2); /* ...that is not UTF-8: UnicodeDecodeError */
    TU_ASSERT_STATUS(mp_shareable_list_get(l, 0, &got), MP_EVALUE);
    assert_null(got);
    memcpy(b + 32, "q\0", 2);
    b[40] = 0;
    uint64_t off = 1u << 20;
    memcpy(b + 16, &off, 8);
    TU_ASSERT_STATUS(mp_shareable_list_get(l, 0, &got), MP_EPROTO);
    TU_ASSERT_STATUS(mp_shareable_list_set(l, 0, v), MP_EPROTO);
    mp_obj_free(v);
    TU_ASSERT_STATUS(mp_shared_memory_unlink(mp_shareable_list_shm(l)), 0);
    mp_shareable_list_free(l);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_shareable_list_matches_and_shares_a_list_python_made),
        TU_TEST(test_shareable_list_python_reads_a_list_c_made_and_changed),
        TU_TEST(test_shareable_list_sizes_text_by_its_utf8_bytes),
        TU_TEST(test_shareable_list_set_follows_pythons_rules),
        TU_TEST(test_shareable_list_create_refuses_bad_items_and_makes_nothing),
        TU_TEST(test_shareable_list_len_count_index_and_empty),
        TU_TEST(test_shareable_list_refuses_a_damaged_block),
    };
    return cmocka_run_group_tests(tests, shmt_group_setup, shmt_group_teardown);
}
