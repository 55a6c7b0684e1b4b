/*
 * manager_list: the list proxy, as Python's ListProxy (_TestContainers.test_list:
 * every method, indexes and slices clamped as Python does, the same reprs).
 * Siblings: test_manager_dict, _lock, _queue.
 */
#include "mgr_testutil.h"

#include <mpipc/manager.h>
#include <mpipc/obj.h>

#include <stdlib.h>

static mp_obj *range_list(int n)
{
    mp_obj *l = mp_obj_list_new();
    for (int i = 0; i < n; i++)
        mp_obj_list_append(l, mt_int(i));
    return l;
}

static void test_list_methods_match_python(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    /* _TestContainers.test_list */
    mp_obj *r10 = range_list(10);
    mp_listproxy *a, *b;
    TU_ASSERT_STATUS(mp_manager_list(m, r10, &a), 0);
    mp_obj *o;
    TU_ASSERT_STATUS(mp_listproxy_copy(a, &o), 0);
    mt_take_repr(o, "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]");
    TU_ASSERT_STATUS(mp_manager_list(m, NULL, &b), 0);
    TU_ASSERT_STATUS(mp_listproxy_copy(b, &o), 0);
    mt_take_repr(o, "[]");
    mp_obj *r5 = range_list(5);
    TU_ASSERT_STATUS(mp_listproxy_extend(b, r5), 0);
    TU_ASSERT_STATUS(mp_listproxy_copy(b, &o), 0);
    mt_take_repr(o, "[0, 1, 2, 3, 4]");
    int64_t v;
    TU_ASSERT_STATUS(mp_listproxy_get_int(b, 2, &v), 0);
    assert_int_equal(v, 2);
    TU_ASSERT_STATUS(mp_listproxy_slice(b, 2, 10, &o), 0);
    mt_take_repr(o, "[2, 3, 4]");
    TU_ASSERT_STATUS(mp_listproxy_extend(b, r5), 0); /* b *= 2 */
    TU_ASSERT_STATUS(mp_listproxy_copy(b, &o), 0);
    mt_take_repr(o, "[0, 1, 2, 3, 4, 0, 1, 2, 3, 4]");
    mp_obj *hello = mt_str("hello");
    TU_ASSERT_STATUS(mp_listproxy_append(a, hello), 0);
    TU_ASSERT_STATUS(mp_listproxy_copy(a, &o), 0);
    mt_take_repr(o, "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 'hello']");

    /* negative indexes, slices as Python clamps them */
    TU_ASSERT_STATUS(mp_listproxy_get(a, -1, &o), 0);
    mt_take_repr(o, "'hello'");
    TU_ASSERT_STATUS(mp_listproxy_get(a, -11, &o), 0);
    mt_take_repr(o, "0");
    TU_ASSERT_STATUS(mp_listproxy_get(a, 11, &o), MP_EKEY);
    TU_ASSERT_STATUS(mp_listproxy_get(a, -12, &o), MP_EKEY);
    TU_ASSERT_STATUS(mp_listproxy_slice(a, -3, MP_LISTPROXY_END, &o), 0);
    mt_take_repr(o, "[8, 9, 'hello']");
    TU_ASSERT_STATUS(mp_listproxy_slice(a, -100, 2, &o), 0);
    mt_take_repr(o, "[0, 1]");
    TU_ASSERT_STATUS(mp_listproxy_slice(a, 5, 3, &o), 0);
    mt_take_repr(o, "[]");
    mp_obj *x = mt_str("x");
    TU_ASSERT_STATUS(mp_listproxy_set(a, -1, x), 0);
    TU_ASSERT_STATUS(mp_listproxy_set(a, 100, x), MP_EKEY);

    /* pop, insert (clamped), del, index, count, remove, contains */
    TU_ASSERT_STATUS(mp_listproxy_pop(a, -1, &o), 0);
    mt_take_repr(o, "'x'");
    TU_ASSERT_STATUS(mp_listproxy_pop(a, 0, &o), 0);
    mt_take_repr(o, "0");
    mp_obj *first = mt_str("first"), *last = mt_str("last"), *mid = mt_str("mid");
    TU_ASSERT_STATUS(mp_listproxy_insert(a, -100, first), 0);
    TU_ASSERT_STATUS(mp_listproxy_insert(a, 100, last), 0);
    TU_ASSERT_STATUS(mp_listproxy_insert(a, -1, mid), 0);
    TU_ASSERT_STATUS(mp_listproxy_copy(a, &o), 0);
    mt_take_repr(o, "['first', 1, 2, 3, 4, 5, 6, 7, 8, 9, 'mid', 'last']");
    TU_ASSERT_STATUS(mp_listproxy_del(a, 1), 0);
    TU_ASSERT_STATUS(mp_listproxy_del(a, 50), MP_EKEY);
    assert_int_equal(mp_listproxy_index(a, mid), 9);
    mp_obj *nine = mt_int(9), *missing = mt_int(42);
    assert_int_equal(mp_listproxy_count(b, nine), 0);
    mp_obj *three = mt_int(3);
    assert_int_equal(mp_listproxy_count(b, three), 2);
    assert_int_equal(mp_listproxy_index(a, missing), MP_EVALUE);
    assert_int_equal(mp_listproxy_contains(a, nine), 1);
    assert_int_equal(mp_listproxy_contains(a, missing), 0);
    TU_ASSERT_STATUS(mp_listproxy_remove(b, three), 0);
    TU_ASSERT_STATUS(mp_listproxy_copy(b, &o), 0);
    mt_take_repr(o, "[0, 1, 2, 4, 0, 1, 2, 3, 4]");
    TU_ASSERT_STATUS(mp_listproxy_remove(b, missing), MP_EVALUE);
    assert_int_equal(mp_listproxy_len(a), 11);
    TU_ASSERT_STATUS(mp_listproxy_clear(a), 0);
    assert_int_equal(mp_listproxy_len(a), 0);
    TU_ASSERT_STATUS(mp_listproxy_pop(a, -1, &o), MP_EKEY); /* pop from empty list */
    TU_ASSERT_STATUS(mp_listproxy_append_int(a, 7), 0);
    TU_ASSERT_STATUS(mp_listproxy_append_str(a, "s"), 0);
    char *s;
    TU_ASSERT_STATUS(mp_listproxy_get_str(a, 1, &s, NULL), 0);
    assert_string_equal(s, "s");
    free(s);
    TU_ASSERT_STATUS(mp_listproxy_get_str(a, 0, &s, NULL), MP_ETYPE);
    TU_ASSERT_STATUS(mp_listproxy_extend(a, hello), MP_ETYPE);

    /* a tuple as the initial value */
    mp_obj *tup = mp_obj_tuple_new();
    mp_obj_tuple_append(tup, mt_int(1));
    mp_obj_tuple_append(tup, mt_str("two"));
    mp_listproxy *c;
    TU_ASSERT_STATUS(mp_manager_list(m, tup, &c), 0);
    TU_ASSERT_STATUS(mp_listproxy_copy(c, &o), 0);
    mt_take_repr(o, "[1, 'two']");
    mp_listproxy *c2;
    TU_ASSERT_STATUS(mp_manager_list(m, hello, &c2), MP_ETYPE);
    assert_null(c2);

    mp_obj *objs[] = {r10, r5, hello, x, first, last, mid, nine, missing, three, tup};
    for (size_t i = 0; i < sizeof objs / sizeof objs[0]; i++)
        mp_obj_free(objs[i]);
    mp_listproxy_free(c);
    mp_listproxy_free(a);
    mp_listproxy_free(b);
    mp_manager_free(m);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_list_methods_match_python),
    };
    return cmocka_run_group_tests_name("manager_list", tests, NULL, NULL);
}
