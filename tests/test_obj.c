/* obj: values behave like the Python objects they stand for: types, checked
 * accessors, list/tuple/dict building with Python's key semantics, deep
 * equality, deep copy, ownership that never leaks or double-frees, and
 * repr() character for character (tests/repr_vectors.h holds what Python
 * 3.11 printed). */
#define _DEFAULT_SOURCE /* syscall() */
#include "testutil.h"

#include "codec/objimpl.h"
#include "repr_vectors.h"

#include <mpipc/obj.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* repr(o) compared with what Python printed; frees o. */
static void assert_repr_and_free(mp_obj *o, const char *expected)
{
    assert_non_null(o);
    char *s = NULL;
    TU_ASSERT_STATUS(mp_obj_repr(o, &s), 0);
    assert_string_equal(s, expected);
    free(s);
    mp_obj_free(o);
}

static mp_obj *str(const char *s)
{
    mp_obj *o = mp_obj_str_cstr(s);
    assert_non_null(o);
    return o;
}

static mp_obj *num(int64_t v)
{
    mp_obj *o = mp_obj_int(v);
    assert_non_null(o);
    return o;
}

static void append(mp_obj *list, mp_obj *item)
{
    TU_ASSERT_STATUS(mp_obj_list_append(list, item), 0);
}

static void set(mp_obj *d, mp_obj *k, mp_obj *v)
{
    TU_ASSERT_STATUS(mp_obj_dict_set(d, k, v), 0);
}

/* ---- types and accessors ---- */

static void test_constructors_make_each_type(void **state)
{
    (void)state;
    struct {
        mp_obj *o;
        int type;
        const char *name;
    } t[] = {
        {mp_obj_none(), MP_TYPE_NONE, "NoneType"}, {mp_obj_bool(true), MP_TYPE_BOOL, "bool"},
        {mp_obj_int(7), MP_TYPE_INT, "int"},       {mp_obj_float(1.5), MP_TYPE_FLOAT, "float"},
        {mp_obj_str("a", 1), MP_TYPE_STR, "str"},  {mp_obj_bytes("a", 1), MP_TYPE_BYTES, "bytes"},
        {mp_obj_list_new(), MP_TYPE_LIST, "list"}, {mp_obj_tuple_new(), MP_TYPE_TUPLE, "tuple"},
        {mp_obj_dict_new(), MP_TYPE_DICT, "dict"},
    };
    for (size_t i = 0; i < N_ELEMS(t); i++) {
        assert_non_null(t[i].o);
        assert_int_equal(mp_obj_type(t[i].o), t[i].type);
        assert_string_equal(mp_type_name(mp_obj_type(t[i].o)), t[i].name);
        mp_obj_free(t[i].o);
    }
    TU_ASSERT_STATUS(mp_obj_type(NULL), -EINVAL);
    assert_string_equal(mp_type_name(0), "?");
}

static void test_checked_accessors_return_the_value(void **state)
{
    (void)state;
    mp_obj *b = mp_obj_bool(true), *i = mp_obj_int(INT64_MIN), *f = mp_obj_float(-0.0);
    mp_obj *s = mp_obj_str("h\0i", 3), *y = mp_obj_bytes("\0\xff", 2);
    bool bv = false;
    int64_t iv = 0;
    double fv = 1;
    const char *sv;
    const unsigned char *yv;
    size_t len;
    TU_ASSERT_STATUS(mp_obj_get_bool(b, &bv), 0);
    assert_true(bv);
    TU_ASSERT_STATUS(mp_obj_get_int(i, &iv), 0);
    assert_true(iv == INT64_MIN);
    TU_ASSERT_STATUS(mp_obj_get_float(f, &fv), 0);
    assert_true(fv == 0 && signbit(fv));
    TU_ASSERT_STATUS(mp_obj_get_str(s, &sv, &len), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(sv, "h\0i", 4); /* NUL-terminated after len bytes */
    TU_ASSERT_STATUS(mp_obj_get_str(s, &sv, NULL), 0);
    TU_ASSERT_STATUS(mp_obj_get_bytes(y, &yv, &len), 0);
    assert_int_equal(len, 2);
    assert_memory_equal(yv, "\0\xff\0", 3);
    assert_true(mp_obj_is_none(mp_obj_list_get(NULL, 0)) == false);
    mp_obj *n = mp_obj_none();
    assert_true(mp_obj_is_none(n));
    assert_false(mp_obj_is_none(b));
    mp_obj_free(n);
    mp_obj_free(b);
    mp_obj_free(i);
    mp_obj_free(f);
    mp_obj_free(s);
    mp_obj_free(y);
}

static void test_accessor_on_wrong_type_is_type_error_and_leaves_output(void **state)
{
    (void)state;
    /* Python: int("x") style misuse is a TypeError; the C twin is MP_ETYPE. */
    mp_obj *s = str("1"), *i = num(1), *f = mp_obj_float(1.0);
    int64_t iv = 42;
    double fv = 42;
    bool bv = true;
    const char *sv = "untouched";
    const unsigned char *yv = NULL;
    TU_ASSERT_STATUS(mp_obj_get_int(s, &iv), MP_ETYPE);
    TU_ASSERT_STATUS(mp_obj_get_int(f, &iv), MP_ETYPE);
    assert_int_equal(iv, 42);
    TU_ASSERT_STATUS(mp_obj_get_float(i, &fv), MP_ETYPE); /* no silent conversion */
    assert_true(fv == 42);
    TU_ASSERT_STATUS(mp_obj_get_bool(i, &bv), MP_ETYPE);
    assert_true(bv);
    TU_ASSERT_STATUS(mp_obj_get_str(i, &sv, NULL), MP_ETYPE);
    assert_string_equal(sv, "untouched");
    TU_ASSERT_STATUS(mp_obj_get_bytes(s, &yv, NULL), MP_ETYPE);
    assert_null(yv);
    TU_ASSERT_STATUS(mp_obj_get_int(NULL, &iv), -EINVAL);
    TU_ASSERT_STATUS(mp_obj_get_int(i, NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_obj_get_str(s, NULL, NULL), -EINVAL);
    mp_obj_free(s);
    mp_obj_free(i);
    mp_obj_free(f);
}

static void test_get_int_accepts_bool_because_bool_is_an_int(void **state)
{
    (void)state;
    mp_obj *t = mp_obj_bool(true), *f = mp_obj_bool(false);
    int64_t v = 5;
    TU_ASSERT_STATUS(mp_obj_get_int(t, &v), 0);
    assert_int_equal(v, 1);
    TU_ASSERT_STATUS(mp_obj_get_int(f, &v), 0);
    assert_int_equal(v, 0);
    mp_obj_free(t);
    mp_obj_free(f);
}

/* Python's "utf-8" with "surrogatepass", as pickle reads a str: lone
 * surrogates are accepted (test_obj_str.c), the rest as the strict codec. */
static void test_str_refuses_invalid_utf8_like_python_surrogatepass_codec(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t n;
    } bad[] = {
        {"\x80", 1},             /* lone continuation byte */
        {"\xc0\x80", 2},         /* overlong NUL */
        {"\xc1\xbf", 2},         /* overlong */
        {"\xe0\x80\x80", 3},     /* overlong 3-byte */
        {"\xf0\x80\x80\x80", 4}, /* overlong 4-byte */
        {"\xf4\x90\x80\x80", 4}, /* U+110000 */
        {"\xf5\x80\x80\x80", 4}, /* beyond */
        {"\xff", 1},             /* never valid */
        {"\xe6\x97", 2},         /* truncated 3-byte */
        {"a\xc3", 2},            /* truncated at the end */
        {"\xe6\x41\xa5", 3},     /* bad continuation */
    };
    for (size_t i = 0; i < N_ELEMS(bad); i++)
        assert_null(mp_obj_str(bad[i].s, bad[i].n));
    static const struct {
        const char *s;
        size_t n;
    } good[] = {
        {"\x7f", 1},         {"\xc2\x80", 2},         {"\xed\x9f\xbf", 3},     {"\xee\x80\x80", 3},
        {"\xef\xbf\xbf", 3}, {"\xf0\x90\x80\x80", 4}, {"\xf4\x8f\xbf\xbf", 4}, {"", 0},
        {"\xed\xa0\x80", 3}, {"\xed\xbf\xbf", 3}, /* lone surrogates U+D800, U+DFFF */
    };
    for (size_t i = 0; i < N_ELEMS(good); i++) {
        mp_obj *o = mp_obj_str(good[i].s, good[i].n);
        assert_non_null(o);
        mp_obj_free(o);
    }
    assert_null(mp_obj_str(NULL, 1));
    assert_null(mp_obj_str_cstr(NULL));
    assert_null(mp_obj_bytes(NULL, 1));
    mp_obj *e = mp_obj_str(NULL, 0);
    assert_non_null(e);
    mp_obj_free(e);
}

static void test_len_is_python_len(void **state)
{
    (void)state;
    mp_obj *s = mp_obj_str("h\xc3\xa9\0\xf0\x9f\x98\x80", 8); /* 'hé\x00😀' */
    assert_int_equal(mp_obj_len(s), 4);                       /* code points */
    mp_obj *y = mp_obj_bytes("h\xc3\xa9", 3);
    assert_int_equal(mp_obj_len(y), 3);
    mp_obj *l = mp_obj_list_new();
    append(l, num(1));
    append(l, num(2));
    assert_int_equal(mp_obj_len(l), 2);
    mp_obj *i = num(3);
    TU_ASSERT_STATUS(mp_obj_len(i), MP_ETYPE);
    TU_ASSERT_STATUS(mp_obj_len(NULL), -EINVAL);
    mp_obj_free(s);
    mp_obj_free(y);
    mp_obj_free(l);
    mp_obj_free(i);
}

/* ---- lists and tuples ---- */

static void test_list_append_get_set(void **state)
{
    (void)state;
    mp_obj *l = mp_obj_list_new();
    for (int i = 0; i < 100; i++)
        append(l, num(i));
    assert_int_equal(mp_obj_len(l), 100);
    int64_t v;
    TU_ASSERT_STATUS(mp_obj_get_int(mp_obj_list_get(l, 99), &v), 0);
    assert_int_equal(v, 99);
    assert_null(mp_obj_list_get(l, 100));
    TU_ASSERT_STATUS(mp_obj_list_set(l, 5, str("five")), 0);
    const char *s;
    TU_ASSERT_STATUS(mp_obj_get_str(mp_obj_list_get(l, 5), &s, NULL), 0);
    assert_string_equal(s, "five");
    /* Python's IndexError for l[100] = x; the caller keeps x. */
    mp_obj *x = num(1);
    TU_ASSERT_STATUS(mp_obj_list_set(l, 100, x), MP_EKEY);
    mp_obj_free(x);
    mp_obj_free(l);
}

/* The _mut accessors hand out the container's own item, so a nested list
 * or dict changes in place (Python's d["k"].append(x)); the const ones
 * return the same pointer, read-only. Misses are NULL, as for get. */
static void test_get_mut_changes_a_nested_container_in_place(void **state)
{
    (void)state;
    mp_obj *d = mp_obj_dict_new(), *l = mp_obj_list_new();
    append(l, mp_obj_list_new());
    set(d, str("k"), l);
    mp_obj *key = str("k");
    mp_obj *inner = mp_obj_dict_get_mut(d, key);
    assert_true(inner == mp_obj_dict_get(d, key));
    assert_true(inner == mp_obj_dict_get_cstr(d, "k"));
    append(inner, num(1));
    mp_obj *nested = mp_obj_list_get_mut(inner, -2);
    assert_true(nested == mp_obj_list_get(inner, 0));
    append(nested, num(2));
    assert_repr_and_free(mp_obj_copy(d), "{'k': [[2], 1]}");
    assert_null(mp_obj_list_get_mut(inner, 2));
    assert_null(mp_obj_list_get_mut(d, 0)); /* not a list */
    assert_null(mp_obj_list_get_mut(NULL, 0));
    mp_obj *missing = str("nope");
    assert_null(mp_obj_dict_get_mut(d, missing));
    assert_null(mp_obj_dict_get_mut(inner, key)); /* not a dict */
    assert_null(mp_obj_dict_get_mut(NULL, key));
    mp_obj_free(missing);
    mp_obj_free(key);
    mp_obj_free(d);
}

/* Python's l[-1], l[-len] and IndexError for l[-len - 1], for get and set;
 * a refused set leaves the item with the caller and the list unchanged. */
static void test_list_negative_index_counts_from_the_end(void **state)
{
    (void)state;
    mp_obj *l = mp_obj_list_new();
    for (int i = 0; i < 3; i++)
        append(l, num(i));
    int64_t v;
    TU_ASSERT_STATUS(mp_obj_get_int(mp_obj_list_get(l, -1), &v), 0);
    assert_int_equal(v, 2);
    TU_ASSERT_STATUS(mp_obj_get_int(mp_obj_list_get(l, -3), &v), 0);
    assert_int_equal(v, 0);
    assert_null(mp_obj_list_get(l, -4));
    TU_ASSERT_STATUS(mp_obj_list_set(l, -1, num(20)), 0);
    TU_ASSERT_STATUS(mp_obj_get_int(mp_obj_list_get(l, 2), &v), 0);
    assert_int_equal(v, 20);
    mp_obj *x = num(7);
    TU_ASSERT_STATUS(mp_obj_list_set(l, -4, x), MP_EKEY);
    TU_ASSERT_STATUS(mp_obj_list_set(l, -SSIZE_MAX - 1, x), MP_EKEY);
    assert_int_equal(mp_obj_len(l), 3);
    TU_ASSERT_STATUS(mp_obj_get_int(mp_obj_list_get(l, 0), &v), 0);
    assert_int_equal(v, 0);
    mp_obj_free(x);
    /* A tuple reads the same way. */
    mp_obj *t = mp_obj_tuple_new();
    TU_ASSERT_STATUS(mp_obj_tuple_append(t, num(5)), 0);
    TU_ASSERT_STATUS(mp_obj_get_int(mp_obj_list_get(t, -1), &v), 0);
    assert_int_equal(v, 5);
    mp_obj_free(t);
    mp_obj_free(l);
}

static void test_failed_append_leaves_the_item_with_the_caller(void **state)
{
    (void)state;
    mp_obj *t = mp_obj_tuple_new(), *item = num(1);
    TU_ASSERT_STATUS(mp_obj_list_append(t, item), MP_ETYPE);
    /* still ours: usable and freeable */
    int64_t v;
    TU_ASSERT_STATUS(mp_obj_get_int(item, &v), 0);
    mp_obj_free(item);
    mp_obj_free(t);
    TU_ASSERT_STATUS(mp_obj_list_append(NULL, NULL), -EINVAL);
}

static void test_tuple_is_built_while_root_then_immutable(void **state)
{
    (void)state;
    mp_obj *t = mp_obj_tuple_new();
    TU_ASSERT_STATUS(mp_obj_tuple_append(t, num(1)), 0);
    TU_ASSERT_STATUS(mp_obj_tuple_append(t, str("a")), 0);
    mp_obj *l = mp_obj_list_new();
    append(l, t);
    /* t is now inside a list: Python tuples are immutable. */
    mp_obj *x = num(2);
    TU_ASSERT_STATUS(mp_obj_tuple_append(t, x), -EINVAL);
    TU_ASSERT_STATUS(mp_obj_list_set(t, 0, x), MP_ETYPE);
    TU_ASSERT_STATUS(mp_obj_tuple_append(l, x), MP_ETYPE);
    mp_obj_free(x);
    assert_repr_and_free(l, "[(1, 'a')]");
}

static void test_item_already_in_a_container_cannot_be_added_again(void **state)
{
    (void)state;
    mp_obj *a = mp_obj_list_new(), *b = mp_obj_list_new(), *d = mp_obj_dict_new();
    mp_obj *x = num(1000); /* not a shared small int (see below) */
    append(a, x);
    /* x belongs to a: a second owner would mean a double free. */
    TU_ASSERT_STATUS(mp_obj_list_append(b, x), -EINVAL);
    mp_obj *k = str("k");
    TU_ASSERT_STATUS(mp_obj_dict_set(d, k, x), -EINVAL);
    TU_ASSERT_STATUS(mp_obj_dict_set(d, x, k), -EINVAL);
    TU_ASSERT_STATUS(mp_obj_list_set(a, 0, x), -EINVAL);
    mp_obj_free(k);
    /* Freeing a borrowed item is ignored rather than corrupting a. */
    mp_obj_free(x);
    assert_int_equal(mp_obj_len(a), 1);
    assert_int_equal(mp_obj_len(b), 0);
    assert_int_equal(mp_obj_len(d), 0);
    mp_obj_free(a);
    mp_obj_free(b);
    mp_obj_free(d);
}

static void test_dict_set_failure_leaves_both_with_the_caller(void **state)
{
    (void)state;
    mp_obj *d = mp_obj_dict_new(), *k = str("k"), *bad = mp_obj_list_new(), *v = num(1);
    TU_ASSERT_STATUS(mp_obj_dict_set(d, bad, v), MP_ETYPE);
    TU_ASSERT_STATUS(mp_obj_dict_set(d, k, k), -EINVAL);
    TU_ASSERT_STATUS(mp_obj_dict_set(v, k, bad), MP_ETYPE);
    TU_ASSERT_STATUS(mp_obj_dict_set(NULL, k, v), -EINVAL);
    assert_int_equal(mp_obj_len(d), 0);
    mp_obj_free(k);
    mp_obj_free(bad);
    mp_obj_free(v);
    mp_obj_free(d);
}

static void test_container_cannot_go_into_itself(void **state)
{
    (void)state;
    mp_obj *a = mp_obj_list_new(), *b = mp_obj_list_new(), *d = mp_obj_dict_new();
    TU_ASSERT_STATUS(mp_obj_list_append(a, a), -EINVAL);
    append(a, b);
    /* b is inside a; putting a into b would make a cycle nobody owns. */
    TU_ASSERT_STATUS(mp_obj_list_append(b, a), -EINVAL);
    append(b, d);
    mp_obj *k = str("a");
    TU_ASSERT_STATUS(mp_obj_dict_set(d, k, a), -EINVAL);
    TU_ASSERT_STATUS(mp_obj_dict_set(d, k, d), -EINVAL);
    mp_obj_free(k);
    assert_repr_and_free(a, "[[{}]]");
}

static void test_nesting_is_limited_to_max_depth(void **state)
{
    (void)state;
    /* Build 1000 levels bottom-up: allowed. One more is MP_EVALUE. */
    mp_obj *inner = mp_obj_list_new();
    for (int i = 1; i < MP_OBJ_MAX_DEPTH; i++) {
        mp_obj *outer = mp_obj_list_new();
        append(outer, inner);
        inner = outer;
    }
    mp_obj *top = mp_obj_list_new();
    TU_ASSERT_STATUS(mp_obj_list_append(top, inner), MP_EVALUE);
    mp_obj_free(top);
    /* Top-down: find the innermost list and try to go deeper there. */
    mp_obj *leaf = inner;
    while (mp_obj_len(leaf) > 0)
        leaf = mp_obj_list_get_mut(leaf, 0);
    mp_obj *extra = mp_obj_list_new();
    TU_ASSERT_STATUS(mp_obj_list_append(leaf, extra), MP_EVALUE);
    TU_ASSERT_STATUS(mp_obj_list_append(leaf, num(1)), 0); /* a scalar fits */
    mp_obj *d = mp_obj_dict_new();
    TU_ASSERT_STATUS(mp_obj_dict_set(d, str("k"), extra), 0);
    TU_ASSERT_STATUS(mp_obj_list_append(leaf, d), MP_EVALUE);
    mp_obj_free(d);
    /* A copy of the deepest legal value works and compares equal. */
    mp_obj *c = mp_obj_copy(inner);
    assert_true(mp_obj_equal(c, inner));
    mp_obj_free(c);
    mp_obj_free(inner);
}

/* ---- dicts ---- */

static void test_dict_set_get_and_replace_keeps_the_first_key(void **state)
{
    (void)state;
    /* Python: {1: 'a', True: 'b', 1.0: 'c'} == {1: 'c'} and the key stays 1 */
    mp_obj *d = mp_obj_dict_new();
    set(d, num(1), str("a"));
    set(d, mp_obj_bool(true), str("b"));
    set(d, mp_obj_float(1.0), str("c"));
    assert_int_equal(mp_obj_len(d), 1);
    mp_obj *k = mp_obj_float(1.0);
    const char *s;
    TU_ASSERT_STATUS(mp_obj_get_str(mp_obj_dict_get(d, k), &s, NULL), 0);
    assert_string_equal(s, "c");
    mp_obj_free(k);
    assert_repr_and_free(d, "{1: 'c'}");
}

static void test_dict_lookup_by_equal_numbers(void **state)
{
    (void)state;
    mp_obj *d = mp_obj_dict_new();
    set(d, num(1), str("a"));
    set(d, mp_obj_float(2.5), str("b"));
    set(d, mp_obj_float(-0.0), str("zero"));
    set(d, num(INT64_MAX), str("max"));
    const char *s;
    TU_ASSERT_STATUS(mp_obj_get_str(mp_obj_dict_get_int(d, 1), &s, NULL), 0);
    assert_string_equal(s, "a");
    mp_obj *t = mp_obj_bool(true), *one = mp_obj_float(1.0), *z = num(0), *f = mp_obj_bool(false);
    assert_non_null(mp_obj_dict_get(d, t));
    assert_non_null(mp_obj_dict_get(d, one));
    assert_non_null(mp_obj_dict_get(d, z)); /* 0 == -0.0 */
    assert_non_null(mp_obj_dict_get(d, f)); /* False == 0 */
    assert_null(mp_obj_dict_get_int(d, 2)); /* 2 != 2.5 */
    /* float(2**63) is not INT64_MAX: exact comparison, no rounding. */
    mp_obj *big = mp_obj_float(9223372036854775808.0);
    assert_null(mp_obj_dict_get(d, big));
    assert_non_null(mp_obj_dict_get_int(d, INT64_MAX));
    mp_obj_free(big);
    mp_obj_free(t);
    mp_obj_free(one);
    mp_obj_free(z);
    mp_obj_free(f);
    mp_obj_free(d);
}

static void test_dict_keys_of_every_hashable_type(void **state)
{
    (void)state;
    mp_obj *d = mp_obj_dict_new();
    mp_obj *tk = mp_obj_tuple_new();
    TU_ASSERT_STATUS(mp_obj_tuple_append(tk, num(1)), 0);
    mp_obj *inner = mp_obj_tuple_new();
    TU_ASSERT_STATUS(mp_obj_tuple_append(inner, str("x")), 0);
    TU_ASSERT_STATUS(mp_obj_tuple_append(tk, inner), 0);
    set(d, tk, num(1));
    set(d, mp_obj_none(), num(2));
    set(d, mp_obj_bytes("k", 1), num(3));
    set(d, str("k"), num(4)); /* str 'k' != bytes b'k' */
    set(d, mp_obj_float(0.5), num(5));
    assert_int_equal(mp_obj_len(d), 5);
    /* Look the tuple key up with an equal, separately built tuple. */
    mp_obj *probe = mp_obj_tuple_new();
    TU_ASSERT_STATUS(mp_obj_tuple_append(probe, mp_obj_float(1.0)), 0);
    mp_obj *pin = mp_obj_tuple_new();
    TU_ASSERT_STATUS(mp_obj_tuple_append(pin, str("x")), 0);
    TU_ASSERT_STATUS(mp_obj_tuple_append(probe, pin), 0);
    int64_t v = 0;
    TU_ASSERT_STATUS(mp_obj_get_int(mp_obj_dict_get(d, probe), &v), 0);
    assert_int_equal(v, 1);
    TU_ASSERT_STATUS(mp_obj_get_int(mp_obj_dict_get_cstr(d, "k"), &v), 0);
    assert_int_equal(v, 4);
    mp_obj_free(probe);
    assert_repr_and_free(d, "{(1, ('x',)): 1, None: 2, b'k': 3, 'k': 4, 0.5: 5}");
}

static void test_unhashable_keys_are_type_errors(void **state)
{
    (void)state;
    /* Python: d[[1]] = 1 -> TypeError: unhashable type: 'list' */
    mp_obj *d = mp_obj_dict_new(), *v = num(1);
    mp_obj *l = mp_obj_list_new(), *dd = mp_obj_dict_new(), *t = mp_obj_tuple_new();
    TU_ASSERT_STATUS(mp_obj_tuple_append(t, mp_obj_list_new()), 0);
    TU_ASSERT_STATUS(mp_obj_dict_set(d, l, v), MP_ETYPE);
    TU_ASSERT_STATUS(mp_obj_dict_set(d, dd, v), MP_ETYPE);
    TU_ASSERT_STATUS(mp_obj_dict_set(d, t, v), MP_ETYPE);
    assert_null(mp_obj_dict_get(d, l));
    TU_ASSERT_STATUS(mp_obj_dict_del(d, t), MP_ETYPE);
    mp_obj_free(l);
    mp_obj_free(dd);
    mp_obj_free(t);
    mp_obj_free(v);
    mp_obj_free(d);
}

static void test_dict_del_and_missing_key_is_key_error(void **state)
{
    (void)state;
    mp_obj *d = mp_obj_dict_new();
    set(d, str("a"), num(1));
    set(d, str("b"), num(2));
    mp_obj *a = str("a");
    TU_ASSERT_STATUS(mp_obj_dict_del(d, a), 0);
    TU_ASSERT_STATUS(mp_obj_dict_del(d, a), MP_EKEY);
    assert_null(mp_obj_dict_get(d, a));
    assert_int_equal(mp_obj_len(d), 1);
    TU_ASSERT_STATUS(mp_obj_dict_del(a, a), MP_ETYPE);
    TU_ASSERT_STATUS(mp_obj_dict_del(NULL, a), -EINVAL);
    mp_obj_free(a);
    assert_repr_and_free(d, "{'b': 2}");
}

static void test_dict_iterates_in_insertion_order_through_deletes_and_growth(void **state)
{
    (void)state;
    mp_obj *d = mp_obj_dict_new();
    for (int i = 0; i < 3000; i++)
        set(d, num(i), num(i * 10));
    /* delete the even keys, then re-insert 0: it goes to the end (Python 3.7+) */
    for (int i = 0; i < 3000; i += 2) {
        mp_obj *k = num(i);
        TU_ASSERT_STATUS(mp_obj_dict_del(d, k), 0);
        mp_obj_free(k);
    }
    set(d, num(0), str("again"));
    for (int i = 3000; i < 9000; i++)
        set(d, num(i), num(i * 10)); /* passes 8192 entries: grows, dropping the deleted */
    assert_int_equal(mp_obj_len(d), 1500 + 1 + 6000);
    size_t pos = 0;
    const mp_obj *k, *v;
    int64_t expect = 1, kv;
    int n = 0;
    while (mp_obj_dict_next(d, &pos, &k, &v) == 1) {
        TU_ASSERT_STATUS(mp_obj_get_int(k, &kv), 0);
        if (n < 1500) {
            assert_int_equal(kv, expect);
            expect += 2;
        } else if (n == 1500) {
            assert_int_equal(kv, 0);
            assert_int_equal(mp_obj_type(v), MP_TYPE_STR);
            expect = 3000;
        } else {
            assert_int_equal(kv, expect);
            expect++;
        }
        n++;
    }
    assert_int_equal(n, 7501);
    for (int i = 1; i < 9000; i += 2)
        assert_non_null(mp_obj_dict_get_int(d, i)); /* odd keys survived the rebuild */
    TU_ASSERT_STATUS(mp_obj_dict_next(d, &pos, NULL, NULL), 0);
    mp_obj *l = mp_obj_list_new();
    pos = 0;
    TU_ASSERT_STATUS(mp_obj_dict_next(l, &pos, &k, &v), MP_ETYPE);
    TU_ASSERT_STATUS(mp_obj_dict_next(d, NULL, &k, &v), -EINVAL);
    mp_obj_free(l);
    mp_obj_free(d);
}

static void test_dict_survives_churn_of_inserts_and_deletes(void **state)
{
    (void)state;
    /* Deleted entries leave tombstones; a dict that keeps adding and removing
     * keys must reuse its space and keep finding what is live. */
    mp_obj *d = mp_obj_dict_new();
    set(d, str("keep"), num(-1));
    for (int i = 0; i < 20000; i++) {
        set(d, num(i), num(i));
        mp_obj *k = mp_obj_float((double)i); /* equal to the int key */
        TU_ASSERT_STATUS(mp_obj_dict_del(d, k), 0);
        mp_obj_free(k);
    }
    assert_int_equal(mp_obj_len(d), 1);
    int64_t v;
    TU_ASSERT_STATUS(mp_obj_get_int(mp_obj_dict_get_cstr(d, "keep"), &v), 0);
    assert_int_equal(v, -1);
    assert_null(mp_obj_dict_get_int(d, 19999));
    assert_repr_and_free(d, "{'keep': -1}");
}

/* The child of the test below: rounds of 8 inserts, each undone by
 * popitem() (even rounds) or by pop() of the last key (odd rounds), which
 * drop the deleted entries at the end. 0 when every call did as Python's
 * would; the parent's deadline catches a lookup that never ends. */
static double slowdown(void);

static int popitem_rounds_child(void *arg)
{
    (void)arg;
    mp_obj *d = mp_obj_dict_new();
    int64_t next = 1000;
    for (int round = 0; round < 2000; round++) {
        for (int i = 0; i < 8; i++)
            if (mp_obj_dict_set(d, mp_obj_int(next++), mp_obj_none()) < 0)
                return 2;
        for (int i = 0; i < 8; i++) {
            mp_obj *probe = mp_obj_int(next - 1 - i), *k, *v;
            int rc = round % 2 ? mp__dict_take(d, probe, &k, &v) : mp__dict_popitem(d, &k, &v);
            mp_obj_free(probe);
            if (rc != 1)
                return 3;
            mp_obj_free(k);
            mp_obj_free(v);
        }
        if (mp_obj_len(d) != 0 || mp_obj_dict_get_int(d, next) != NULL)
            return 4;
    }
    mp_obj_free(d);
    return 0;
}

static void test_dict_popitem_and_pop_then_insert_rounds_keep_lookups_finite(void **state)
{
    (void)state;
    /* Python: for each round, d[k] = None 8 times, then d.popitem() (or
     * d.pop(k)) 8 times: d is empty after each round, and stays usable. */
    pid_t pid = tu_fork(popitem_rounds_child, NULL);
    assert_int_equal(tu_wait_child(pid, 10.0 * slowdown()), 0);
}

static void test_nan_keys_are_distinct_as_in_python(void **state)
{
    (void)state;
    /* Python: d = {}; d[float('nan')] = 1; d[float('nan')] = 2 -> 2 keys */
    mp_obj *d = mp_obj_dict_new();
    set(d, mp_obj_float(NAN), num(1));
    set(d, mp_obj_float(NAN), num(2));
    assert_int_equal(mp_obj_len(d), 2);
    mp_obj *probe = mp_obj_float(NAN);
    assert_null(mp_obj_dict_get(d, probe));
    mp_obj_free(probe);
    assert_repr_and_free(d, "{nan: 1, nan: 2}");
}

static void test_nan_key_is_found_by_identity_and_copies_keep_it(void **state)
{
    (void)state;
    /* Python: n = float('nan'); d = {n: 1}; d[n] -> 1 (identity), and
     * copy.deepcopy(d)[n] -> 1 too, since deepcopy keeps the float. */
    mp_obj *d = mp_obj_dict_new(), *n = mp_obj_float(NAN);
    set(d, n, num(1));
    const mp_obj *v = mp_obj_dict_get(d, n);
    assert_non_null(v);
    mp_obj *c = mp_obj_copy(d);
    assert_true(mp_obj_dict_get(c, n) != NULL);
    assert_true(mp_obj_equal(d, c));
    /* the copy of the key is the same key: setting it replaces */
    mp_obj *nc = mp_obj_copy(n);
    set(c, nc, num(2));
    assert_int_equal(mp_obj_len(c), 1);
    /* a NaN key inside a tuple key, too */
    mp_obj *t = mp_obj_tuple_new();
    TU_ASSERT_STATUS(mp_obj_tuple_append(t, mp_obj_copy(n)), 0);
    mp_obj *tc = mp_obj_copy(t);
    set(d, t, num(3));
    set(d, tc, num(4));
    assert_int_equal(mp_obj_len(d), 2);
    assert_repr_and_free(c, "{nan: 2}");
    assert_repr_and_free(d, "{nan: 1, (nan,): 4}");
}

static void test_none_bools_and_small_ints_are_shared_immortal_values(void **state)
{
    (void)state;
    /* Python has one None, one True, one False and caches -5..256; so do
     * we. They may go into any number of containers, and freeing them, or
     * a container that holds them, leaves them intact. */
    assert_true(mp_obj_none() == mp_obj_none());
    assert_true(mp_obj_bool(true) == mp_obj_bool(true));
    assert_true(mp_obj_int(-5) == mp_obj_int(-5));
    assert_true(mp_obj_int(256) == mp_obj_int(256));
    for (int64_t i = -5; i <= 256; i++) {
        int64_t v;
        TU_ASSERT_STATUS(mp_obj_get_int(mp_obj_int(i), &v), 0);
        assert_int_equal(v, i);
        assert_int_equal(mp_obj_type(mp_obj_int(i)), MP_TYPE_INT);
    }
    mp_obj *big = num(257), *big2 = num(257);
    assert_true(big != big2); /* beyond the cache: one node each */
    mp_obj_free(big);
    mp_obj_free(big2);
    mp_obj *a = mp_obj_list_new(), *b = mp_obj_list_new(), *d = mp_obj_dict_new();
    mp_obj *x = mp_obj_int(7), *none = mp_obj_none();
    append(a, x);
    append(b, x);
    append(a, x);
    append(a, none);
    set(d, none, none);            /* d[None] = None */
    set(d, x, mp_obj_bool(false)); /* d[7] = False */
    set(d, mp_obj_bool(true), x);  /* d[True] = 7 */
    set(d, mp_obj_int(1), x);      /* 1 == True: replaces the value */
    TU_ASSERT_STATUS(mp_obj_list_set(a, 0, mp_obj_int(-1)), 0);
    mp_obj_free(x);
    mp_obj_free(mp_obj_list_get_mut(a, 1));
    mp_obj *c = mp_obj_copy(a);
    assert_true(mp_obj_list_get(c, 1) == x);
    mp_obj_free(c);
    mp_obj_free(b);
    char *r = NULL;
    TU_ASSERT_STATUS(mp_obj_repr(d, &r), 0);
    assert_string_equal(r, "{None: None, 7: False, True: 7}");
    free(r);
    mp_obj_free(d);
    assert_repr_and_free(a, "[-1, 7, None]");
    assert_repr_and_free(mp_obj_int(7), "7");
    assert_repr_and_free(mp_obj_none(), "None");
}

/* ---- hash flooding ----
 *
 * A dict built from a peer's data holds keys the peer chose. Each test below
 * inserts keys that collide under some simple hash (Python's own numeric hash
 * mod 2**61-1, an identity hash, Java's string hash, NaN hashed by its bits)
 * and must stay linear: 100,000 keys well under a second. The insert loop
 * gives up as soon as the bound has passed, so a quadratic dict fails in
 * about a second instead of running for minutes.
 */

/* How much slower than a plain build this run is: time bounds are multiplied
 * by it (memcheck is some 30 times slower, the sanitizers a few times). */
static double slowdown(void)
{
    return tu_slowdown(30.0, 4.0);
}

typedef mp_obj *(*key_maker)(size_t i);

/* Insert make(i) -> i for i < n into a new dict within limit seconds (times
 * slowdown()), then look every key up again within the same bound. Keys that
 * equal nothing (NaN) are looked up by the stored node itself. */
static void assert_inserts_in_linear_time(key_maker make, size_t n, double limit, const char *what)
{
    limit *= slowdown();
    mp_obj *d = mp_obj_dict_new();
    assert_non_null(d);
    double t0 = tu_now();
    for (size_t i = 0; i < n; i++) {
        mp_obj *k = make(i);
        assert_non_null(k);
        TU_ASSERT_STATUS(mp_obj_dict_set(d, k, num((int64_t)i)), 0);
        if (i % 1024 == 1023 && tu_now() - t0 > limit)
            fail_msg("%s: the first %zu keys took over %.1f s", what, i + 1, limit);
    }
    double took = tu_now() - t0;
    if (took > limit)
        fail_msg("%s: %zu keys took %.2f s (bound %.1f s)", what, n, took, limit);
    assert_int_equal(mp_obj_len(d), (ssize_t)n); /* all distinct */
    t0 = tu_now();
    size_t pos = 0;
    const mp_obj *k, *v;
    int64_t expect = 0, got;
    while (mp_obj_dict_next(d, &pos, &k, &v) == 1) {
        const mp_obj *found = mp_obj_dict_get(d, k);
        assert_true(found == v);
        TU_ASSERT_STATUS(mp_obj_get_int(found, &got), 0);
        assert_int_equal(got, expect++);
        if (expect % 1024 == 0 && tu_now() - t0 > limit)
            fail_msg("%s: looking up %lld keys took over %.1f s", what, (long long)expect, limit);
    }
    mp_obj_free(d);
}

static mp_obj *nan_key(size_t i)
{
    (void)i;
    return mp_obj_float(NAN);
}

static void test_dict_of_40000_nan_keys_inserts_in_linear_time(void **state)
{
    (void)state;
    /* Python hashes a NaN by identity, so distinct NaN objects spread out:
     * {float('nan'): i for i in range(40000)} takes 0.024 s in CPython. */
    assert_inserts_in_linear_time(nan_key, 40000, 1.0, "40,000 NaN keys");
}

/* NaNs with every payload, and the same bits over and over. */
static mp_obj *nan_payload_key(size_t i)
{
    uint64_t bits = UINT64_C(0x7ff8000000000000) | (i % 7 ? (uint64_t)i : 0);
    if (i & 1)
        bits |= UINT64_C(1) << 63;
    double f;
    memcpy(&f, &bits, sizeof f);
    return mp_obj_float(f);
}

/* Python's numeric hash is the value mod 2**61-1; an identity hash indexed by
 * the low bits collides on multiples of a power of two; -1 and -2 hash alike
 * in CPython. Every third key of each kind. */
static mp_obj *hostile_int_key(size_t i)
{
    uint64_t u = (uint64_t)(i / 3);
    switch (i % 3) {
    case 0:
        return mp_obj_int((int64_t)(u * ((UINT64_C(1) << 61) - 1))); /* odd: distinct */
    case 1:
        return mp_obj_int((int64_t)(u << 32) + 1);
    default:
        return mp_obj_int(-(int64_t)(u << 20) - 2);
    }
}

/* Floats equal to ints that collide as above, values beyond int64 whose
 * hash mod 2**61-1 is tiny, non-integers, subnormals (bits 1, 2, 3...). */
static mp_obj *hostile_float_key(size_t i)
{
    double k = (double)(i / 4 + 1);
    uint64_t bits;
    double f;
    switch (i % 4) {
    case 0:
        return mp_obj_float(ldexp(k, 40)); /* == the int k << 40 */
    case 1:
        return mp_obj_float(ldexp(k, 70)); /* beyond int64 */
    case 2:
        return mp_obj_float(k + 0.5);
    default:
        bits = (uint64_t)(i / 4 + 1);
        memcpy(&f, &bits, sizeof f);
        return mp_obj_float(f);
    }
}

/* Strings made of 17 blocks of "Aa" or "BB": Java's hashCode gives all
 * 131,072 of them the same value. */
static void java_colliding_text(size_t i, char *buf)
{
    for (int b = 0; b < 17; b++)
        memcpy(buf + 2 * b, (i >> b) & 1 ? "BB" : "Aa", 2);
}

static mp_obj *hostile_str_key(size_t i)
{
    char buf[34];
    java_colliding_text(i, buf);
    return mp_obj_str(buf, sizeof buf);
}

static mp_obj *hostile_bytes_key(size_t i)
{
    /* Alternately the Java-colliding text and 64 equal bytes followed by
     * the index: a hash of the first bytes only would see one key. */
    unsigned char buf[72];
    if (i % 2 == 0) {
        java_colliding_text(i / 2, (char *)buf);
        return mp_obj_bytes(buf, 34);
    }
    memset(buf, 'x', 64);
    uint64_t v = i;
    memcpy(buf + 64, &v, 8);
    return mp_obj_bytes(buf, sizeof buf);
}

static void test_dict_of_100000_hostile_keys_of_each_type_inserts_in_linear_time(void **state)
{
    (void)state;
    assert_inserts_in_linear_time(nan_key, 100000, 1.0, "NaN");
    assert_inserts_in_linear_time(nan_payload_key, 100000, 1.0, "NaN payloads");
    assert_inserts_in_linear_time(hostile_int_key, 100000, 1.0, "int");
    assert_inserts_in_linear_time(hostile_float_key, 100000, 1.0, "float");
    assert_inserts_in_linear_time(hostile_str_key, 100000, 1.0, "str");
    assert_inserts_in_linear_time(hostile_bytes_key, 100000, 1.0, "bytes");
}

/* ---- the hash key comes from the kernel ----
 *
 * This binary defines getrandom(), so the library (linked statically) calls
 * this one. Normally it passes the call to the kernel. In a copy of the
 * binary run with --seed-child it hands out known bytes - after an EINTR and
 * a short read, which the library must ride out - and the child checks that
 * the dict hash is SipHash-1-3 keyed with exactly those bytes. A fresh
 * process is needed because the key is drawn once, at the first hash.
 */

static int seed_child;
static int getrandom_calls;
static const unsigned char seed_bytes[16] = {0x3a, 0x51, 0x0c, 0xe7, 0x92, 0x18, 0x6f, 0xa4,
                                             0xd5, 0x2b, 0x70, 0x09, 0xbe, 0x46, 0x83, 0xfc};

ssize_t getrandom(void *buf, size_t len, unsigned int flags);
ssize_t getrandom(void *buf, size_t len, unsigned int flags)
{
    if (!seed_child)
        return syscall(SYS_getrandom, buf, len, flags);
    static size_t handed;
    switch (getrandom_calls++) {
    case 0:
        errno = EINTR;
        return -1;
    case 1:
        len = len < 5 ? len : 5;
        break;
    default:
        break;
    }
    for (size_t i = 0; i < len; i++)
        ((unsigned char *)buf)[i] = seed_bytes[(handed + i) % 16];
    handed += len;
    return (ssize_t)len;
}

/* SipHash-1-3 written from the paper (Aumasson and Bernstein), to check
 * obj_dict.c's against. */
static uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static void sipround(uint64_t v[4])
{
    v[0] += v[1];
    v[1] = rotl(v[1], 13) ^ v[0];
    v[0] = rotl(v[0], 32);
    v[2] += v[3];
    v[3] = rotl(v[3], 16) ^ v[2];
    v[0] += v[3];
    v[3] = rotl(v[3], 21) ^ v[0];
    v[2] += v[1];
    v[1] = rotl(v[1], 17) ^ v[2];
    v[2] = rotl(v[2], 32);
}

static uint64_t ref_siphash13(const unsigned char key[16], const unsigned char *m, size_t n)
{
    uint64_t k0 = 0, k1 = 0;
    for (int i = 7; i >= 0; i--) {
        k0 = k0 << 8 | key[i];
        k1 = k1 << 8 | key[8 + i];
    }
    uint64_t v[4] = {k0 ^ 0x736f6d6570736575ULL, k1 ^ 0x646f72616e646f6dULL,
                     k0 ^ 0x6c7967656e657261ULL, k1 ^ 0x7465646279746573ULL};
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w = 0;
        for (int b = 7; b >= 0; b--)
            w = w << 8 | m[i + (size_t)b];
        v[3] ^= w;
        sipround(v);
        v[0] ^= w;
    }
    uint64_t last = (uint64_t)n << 56;
    for (size_t b = 0; i + b < n; b++)
        last |= (uint64_t)m[i + b] << (8 * b);
    v[3] ^= last;
    sipround(v);
    v[0] ^= last;
    v[2] ^= 0xff;
    sipround(v);
    sipround(v);
    sipround(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

/* The --seed-child run: 0 when the hash of str 'abc' and of bytes b'abc' is
 * SipHash-1-3 keyed with seed_bytes (on the tagged form obj_dict.c hashes: 's'
 * or 'b', then the bytes), in host byte order as the library reads the
 * key; 1 when not; 2 when getrandom was not used as expected. */
static int seed_child_main(void)
{
    unsigned char key[16];
    /* the library copies the 16 bytes into two uint64_t: on a big-endian
     * host the same bytes give other numbers, so reorder them likewise */
    uint64_t k[2];
    memcpy(k, seed_bytes, 16);
    for (int w = 0; w < 2; w++)
        for (int b = 0; b < 8; b++)
            key[8 * w + b] = (unsigned char)(k[w] >> (8 * b));
    mp_obj *s = mp_obj_str("abc", 3), *y = mp_obj_bytes("abc", 3);
    uint64_t hs = 0, hy = 0;
    if (!s || !y || mp__obj_hash(s, false, &hs) < 0 || mp__obj_hash(y, false, &hy) < 0)
        return 1;
    mp_obj_free(s);
    mp_obj_free(y);
    if (getrandom_calls < 3)
        return 2;
    return hs == ref_siphash13(key, (const unsigned char *)"sabc", 4) &&
                   hy == ref_siphash13(key, (const unsigned char *)"babc", 4)
               ? 0
               : 1;
}

static void test_hash_key_comes_from_getrandom_through_eintr_and_short_reads(void **state)
{
    (void)state;
    /* Python seeds its hash from the kernel (getrandom, else /dev/urandom);
     * a key from the clock and pid is guessable by a peer. */
    /* readlink, not exec of /proc/self/exe: under valgrind that is the
     * tool's binary, and valgrind answers readlink with ours. */
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    assert_true(len > 0);
    exe[len] = '\0';
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl(exe, "test_obj", "--seed-child", (char *)NULL);
        _exit(127);
    }
    int status = tu_wait_child(pid, 30.0);
    if (status != 0)
        fail_msg("the --seed-child run exited with %d (1: the hash is not keyed with the bytes "
                 "getrandom gave; 2: getrandom was not called through EINTR and a short read)",
                 status);
}

/* ---- equality, copy, free ---- */

static void test_equal_follows_python(void **state)
{
    (void)state;
    mp_obj *one = num(1), *onef = mp_obj_float(1.0), *t = mp_obj_bool(true);
    mp_obj *big = num((INT64_C(1) << 53) + 1), *bigf = mp_obj_float(9007199254740993.0);
    mp_obj *nan = mp_obj_float(NAN), *z = mp_obj_float(0.0), *nz = mp_obj_float(-0.0);
    mp_obj *s = str("a"), *y = mp_obj_bytes("a", 1), *n = mp_obj_none(), *n2 = mp_obj_none();
    assert_true(mp_obj_equal(one, onef));
    assert_true(mp_obj_equal(one, t));
    assert_true(mp_obj_equal(t, onef));
    assert_false(mp_obj_equal(big, bigf)); /* 2**53+1 != float(2**53+1) */
    assert_false(mp_obj_equal(nan, nan));  /* nan != nan, even the same object */
    assert_true(mp_obj_equal(z, nz));
    assert_false(mp_obj_equal(s, y)); /* 'a' != b'a' */
    assert_true(mp_obj_equal(n, n2));
    assert_false(mp_obj_equal(n, NULL));
    mp_obj *l = mp_obj_list_new(), *tu = mp_obj_tuple_new();
    append(l, num(1));
    TU_ASSERT_STATUS(mp_obj_tuple_append(tu, num(1)), 0);
    assert_false(mp_obj_equal(l, tu)); /* [1] != (1,) */
    /* [nan] == [nan] holds for the same list: identity comes first. A copy
     * keeps the NaN's identity, as copy.deepcopy() keeps the float object
     * itself: x = [nan]; x == copy.deepcopy(x) is True. Two NaNs made
     * separately are two objects: [nan] != [float('nan')]. */
    mp_obj *ln = mp_obj_list_new();
    append(ln, mp_obj_float(NAN));
    assert_true(mp_obj_equal(ln, ln));
    mp_obj *ln2 = mp_obj_copy(ln);
    assert_true(mp_obj_equal(ln, ln2));
    mp_obj *ln3 = mp_obj_list_new();
    append(ln3, mp_obj_float(NAN));
    assert_false(mp_obj_equal(ln, ln3));
    /* dicts: order does not matter */
    mp_obj *d1 = mp_obj_dict_new(), *d2 = mp_obj_dict_new();
    set(d1, str("a"), num(1));
    set(d1, str("b"), num(2));
    set(d2, str("b"), mp_obj_float(2.0));
    set(d2, str("a"), mp_obj_bool(true));
    assert_true(mp_obj_equal(d1, d2));
    set(d2, str("c"), num(3));
    assert_false(mp_obj_equal(d1, d2));
    mp_obj *objs[] = {one, onef, t, big, bigf, nan, z,   nz, s, y,
                      n,   n2,   l, tu,  ln,   ln2, ln3, d1, d2};
    for (size_t i = 0; i < N_ELEMS(objs); i++)
        mp_obj_free(objs[i]);
}

static void test_copy_is_deep_and_independent(void **state)
{
    (void)state;
    mp_obj *d = mp_obj_dict_new(), *l = mp_obj_list_new(), *tk = mp_obj_tuple_new();
    append(l, num(1));
    append(l, mp_obj_bytes("\0x", 2));
    TU_ASSERT_STATUS(mp_obj_tuple_append(tk, str("t")), 0);
    set(d, str("list"), l);
    set(d, tk, mp_obj_float(NAN));
    for (int i = 0; i < 20; i++)
        set(d, num(i), num(-i));
    for (int i = 0; i < 20; i += 3) {
        mp_obj *k = num(i);
        TU_ASSERT_STATUS(mp_obj_dict_del(d, k), 0);
        mp_obj_free(k);
    }
    mp_obj *c = mp_obj_copy(d);
    assert_non_null(c);
    char *r1, *r2;
    TU_ASSERT_STATUS(mp_obj_repr(d, &r1), 0);
    TU_ASSERT_STATUS(mp_obj_repr(c, &r2), 0);
    assert_string_equal(r1, r2);
    free(r1);
    free(r2);
    /* changing the copy leaves the original alone */
    mp_obj *key = str("list");
    append(mp_obj_dict_get_mut(c, key), num(2));
    mp_obj_free(key);
    assert_int_equal(mp_obj_len(mp_obj_dict_get_cstr(d, "list")), 2);
    assert_int_equal(mp_obj_len(mp_obj_dict_get_cstr(c, "list")), 3);
    /* the copied tuple key still finds its value */
    mp_obj *probe = mp_obj_tuple_new();
    TU_ASSERT_STATUS(mp_obj_tuple_append(probe, str("t")), 0);
    assert_non_null(mp_obj_dict_get(c, probe));
    mp_obj_free(probe);
    assert_null(mp_obj_copy(NULL));
    /* an item copied out of a container is a root of its own */
    mp_obj *lc = mp_obj_copy(l);
    mp_obj *outer = mp_obj_list_new();
    append(outer, lc);
    mp_obj_free(outer);
    mp_obj_free(d);
    mp_obj_free(c);
}

static void test_free_accepts_null_and_ignores_borrowed_items(void **state)
{
    (void)state;
    mp_obj_free(NULL);
    mp_obj *l = mp_obj_list_new();
    append(l, str("x"));
    mp_obj_free(mp_obj_list_get_mut(l, 0)); /* not ours: ignored */
    assert_repr_and_free(l, "['x']");
}

/* ---- repr ---- */

static void test_repr_of_floats_is_pythons_shortest_round_trip(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ELEMS(float_vecs); i++) {
        double d;
        memcpy(&d, &float_vecs[i].bits, sizeof d);
        mp_obj *o = mp_obj_float(d);
        char *s;
        TU_ASSERT_STATUS(mp_obj_repr(o, &s), 0);
        if (strcmp(s, float_vecs[i].repr) != 0)
            fail_msg("float bits %016llx: repr %s, Python says %s",
                     (unsigned long long)float_vecs[i].bits, s, float_vecs[i].repr);
        free(s);
        mp_obj_free(o);
    }
}

static void test_repr_of_str_quotes_and_escapes_like_python(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ELEMS(str_vecs); i++) {
        mp_obj *o = mp_obj_str(str_vecs[i].utf8, str_vecs[i].len);
        assert_repr_and_free(o, str_vecs[i].repr);
    }
}

static void test_repr_of_bytes_like_python(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ELEMS(bytes_vecs); i++) {
        mp_obj *o = mp_obj_bytes(bytes_vecs[i].utf8, bytes_vecs[i].len);
        assert_repr_and_free(o, bytes_vecs[i].repr);
    }
}

static void test_repr_of_scalars_and_containers_like_python(void **state)
{
    (void)state;
    assert_repr_and_free(mp_obj_none(), "None");
    assert_repr_and_free(mp_obj_bool(true), "True");
    assert_repr_and_free(mp_obj_bool(false), "False");
    assert_repr_and_free(num(INT64_MIN), "-9223372036854775808");
    assert_repr_and_free(mp_obj_list_new(), "[]");
    assert_repr_and_free(mp_obj_tuple_new(), "()");
    assert_repr_and_free(mp_obj_dict_new(), "{}");
    mp_obj *t1 = mp_obj_tuple_new();
    TU_ASSERT_STATUS(mp_obj_tuple_append(t1, num(1)), 0);
    assert_repr_and_free(t1, "(1,)");
    /* repr({'a': [1, (2,), {}], 'b': (None, b'x', 1.5), 3: [[]]}) */
    mp_obj *d = mp_obj_dict_new(), *l = mp_obj_list_new(), *t = mp_obj_tuple_new();
    mp_obj *t2 = mp_obj_tuple_new(), *ll = mp_obj_list_new();
    append(l, num(1));
    TU_ASSERT_STATUS(mp_obj_tuple_append(t, num(2)), 0);
    append(l, t);
    append(l, mp_obj_dict_new());
    set(d, str("a"), l);
    TU_ASSERT_STATUS(mp_obj_tuple_append(t2, mp_obj_none()), 0);
    TU_ASSERT_STATUS(mp_obj_tuple_append(t2, mp_obj_bytes("x", 1)), 0);
    TU_ASSERT_STATUS(mp_obj_tuple_append(t2, mp_obj_float(1.5)), 0);
    set(d, str("b"), t2);
    append(ll, mp_obj_list_new());
    set(d, num(3), ll);
    assert_repr_and_free(d, "{'a': [1, (2,), {}], 'b': (None, b'x', 1.5), 3: [[]]}");
    char *s = (char *)"x";
    TU_ASSERT_STATUS(mp_obj_repr(NULL, &s), -EINVAL);
    assert_null(s);
    mp_obj *n = mp_obj_none();
    TU_ASSERT_STATUS(mp_obj_repr(n, NULL), -EINVAL);
    mp_obj_free(n);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--seed-child") == 0) {
        seed_child = 1;
        return seed_child_main();
    }
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_constructors_make_each_type),
        cmocka_unit_test(test_list_negative_index_counts_from_the_end),
        cmocka_unit_test(test_get_mut_changes_a_nested_container_in_place),
        cmocka_unit_test(test_checked_accessors_return_the_value),
        cmocka_unit_test(test_accessor_on_wrong_type_is_type_error_and_leaves_output),
        cmocka_unit_test(test_get_int_accepts_bool_because_bool_is_an_int),
        cmocka_unit_test(test_str_refuses_invalid_utf8_like_python_surrogatepass_codec),
        cmocka_unit_test(test_len_is_python_len),
        cmocka_unit_test(test_list_append_get_set),
        cmocka_unit_test(test_failed_append_leaves_the_item_with_the_caller),
        cmocka_unit_test(test_tuple_is_built_while_root_then_immutable),
        cmocka_unit_test(test_item_already_in_a_container_cannot_be_added_again),
        cmocka_unit_test(test_dict_set_failure_leaves_both_with_the_caller),
        cmocka_unit_test(test_container_cannot_go_into_itself),
        cmocka_unit_test(test_nesting_is_limited_to_max_depth),
        cmocka_unit_test(test_dict_set_get_and_replace_keeps_the_first_key),
        cmocka_unit_test(test_dict_lookup_by_equal_numbers),
        cmocka_unit_test(test_dict_keys_of_every_hashable_type),
        cmocka_unit_test(test_unhashable_keys_are_type_errors),
        cmocka_unit_test(test_dict_del_and_missing_key_is_key_error),
        cmocka_unit_test(test_dict_iterates_in_insertion_order_through_deletes_and_growth),
        cmocka_unit_test(test_dict_survives_churn_of_inserts_and_deletes),
        cmocka_unit_test(test_dict_popitem_and_pop_then_insert_rounds_keep_lookups_finite),
        cmocka_unit_test(test_nan_keys_are_distinct_as_in_python),
        cmocka_unit_test(test_nan_key_is_found_by_identity_and_copies_keep_it),
        cmocka_unit_test(test_none_bools_and_small_ints_are_shared_immortal_values),
        cmocka_unit_test(test_dict_of_40000_nan_keys_inserts_in_linear_time),
        cmocka_unit_test(test_dict_of_100000_hostile_keys_of_each_type_inserts_in_linear_time),
        cmocka_unit_test(test_hash_key_comes_from_getrandom_through_eintr_and_short_reads),
        cmocka_unit_test(test_equal_follows_python),
        cmocka_unit_test(test_copy_is_deep_and_independent),
        cmocka_unit_test(test_free_accepts_null_and_ignores_borrowed_items),
        cmocka_unit_test(test_repr_of_floats_is_pythons_shortest_round_trip),
        cmocka_unit_test(test_repr_of_str_quotes_and_escapes_like_python),
        cmocka_unit_test(test_repr_of_bytes_like_python),
        cmocka_unit_test(test_repr_of_scalars_and_containers_like_python),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
