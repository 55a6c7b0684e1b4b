/*
 * manager_data: the manager's Value, Array and Namespace and the list's
 * sort and reverse (mpipc/manager_data.h), from C clients in forked
 * processes. Python's own clients on the same types: test_manager_python_data.c.
 */
#include "mgr_testutil.h"

#include <mpipc/error.h>
#include <mpipc/manager.h>
#include <mpipc/manager_data.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define ROUNDS   50
#define CHILDREN 4

/* ---- Value ------------------------------------------------------------------------ */

struct shared {
    mp_valueproxy *v;
    mp_lockproxy *lock;
    mp_arrayproxy *a;
    mp_nsproxy *ns;
    mp_listproxy *l;
};

/* Python's `with lock: v.value += 1`, ROUNDS times. */
static int child_increments(void *arg)
{
    struct shared *sh = arg;
    for (int i = 0; i < ROUNDS; i++) {
        int64_t x;
        if (mp_lockproxy_acquire(sh->lock, MT_LONG) != 0 || mp_valueproxy_get_int(sh->v, &x) != 0 ||
            mp_valueproxy_set_int(sh->v, x + 1) != 0 || mp_lockproxy_release(sh->lock) != 0)
            return 1;
    }
    return 0;
}

/* A Value is one value for every process: increments under a manager Lock
 * from forked children all count, as with Python's m.Value('i', 0). */
static void test_value_counts_increments_of_forked_clients(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    struct shared sh = {0};
    mp_obj *zero = mp_obj_int(0);
    TU_ASSERT_STATUS(mp_manager_value(m, "i", zero, &sh.v), 0);
    mp_obj_free(zero);
    TU_ASSERT_STATUS(mp_manager_lock(m, &sh.lock), 0);
    pid_t pids[CHILDREN];
    for (int i = 0; i < CHILDREN; i++)
        pids[i] = tu_fork(child_increments, &sh);
    for (int i = 0; i < CHILDREN; i++)
        assert_int_equal(tu_wait_child(pids[i], 60), 0);
    int64_t x = -1;
    TU_ASSERT_STATUS(mp_valueproxy_get_int(sh.v, &x), 0);
    assert_int_equal(x, CHILDREN * ROUNDS);
    /* managers.Value checks nothing against its typecode: any value goes. */
    mp_obj *s = mt_str("text"), *got = NULL;
    TU_ASSERT_STATUS(mp_valueproxy_set(sh.v, s), 0);
    TU_ASSERT_STATUS(mp_valueproxy_get(sh.v, &got), 0);
    assert_true(mp_obj_equal(got, s));
    TU_ASSERT_STATUS(mp_valueproxy_get_int(sh.v, &x), MP_ETYPE);
    double f;
    TU_ASSERT_STATUS(mp_valueproxy_set_float(sh.v, 2.5), 0);
    TU_ASSERT_STATUS(mp_valueproxy_get_float(sh.v, &f), 0);
    assert_true(f == 2.5);
    mp_obj_free(s);
    mp_obj_free(got);
    /* Bad input: a named error, nothing made. */
    mp_valueproxy *bad = (mp_valueproxy *)&bad;
    TU_ASSERT_STATUS(mp_manager_value(m, NULL, NULL, &bad), -EINVAL);
    assert_null(bad);
    /* A name shared by two processes' calls gives one Value. */
    mp_valueproxy *n1, *n2;
    mp_obj *one = mp_obj_int(1), *two = mp_obj_int(2);
    TU_ASSERT_STATUS(mp_manager_value_named(m, "v", "i", one, &n1), 1);
    TU_ASSERT_STATUS(mp_manager_value_named(m, "v", "i", two, &n2), 0);
    TU_ASSERT_STATUS(mp_valueproxy_get_int(n2, &x), 0);
    assert_int_equal(x, 1);
    mp_nsproxy *wrong = NULL;
    TU_ASSERT_STATUS(mp_manager_namespace_named(m, "v", NULL, &wrong), MP_ETYPE);
    assert_null(wrong);
    mp_obj_free(one);
    mp_obj_free(two);
    mp_valueproxy_free(n1);
    mp_valueproxy_free(n2);
    mp_valueproxy_free(sh.v);
    mp_lockproxy_free(sh.lock);
    mp_manager_free(m);
}

/* ---- Array ------------------------------------------------------------------------ */

static int child_sets_array(void *arg)
{
    struct shared *sh = arg;
    return mp_arrayproxy_set_int(sh->a, -1, 127) == 0 && mp_arrayproxy_set_int(sh->a, 0, -128) == 0
               ? 0
               : 1;
}

/* An Array checks items as array.array does: ints of the typecode's range
 * (OverflowError: MP_EVALUE), no floats in an int array (TypeError), and
 * the array is unchanged by a refused item; 'd' stores floats. */
static void test_array_keeps_typecode_rules_of_python(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    struct shared sh = {0};
    mp_obj *init = mp_obj_build("[iii]", 1, 2, 3);
    TU_ASSERT_STATUS(mp_manager_array(m, "b", init, &sh.a), 0);
    pid_t pid = tu_fork(child_sets_array, &sh);
    assert_int_equal(tu_wait_child(pid, 60), 0);
    int64_t x;
    TU_ASSERT_STATUS(mp_arrayproxy_get_int(sh.a, 0, &x), 0);
    assert_int_equal(x, -128);
    TU_ASSERT_STATUS(mp_arrayproxy_get_int(sh.a, 2, &x), 0);
    assert_int_equal(x, 127);
    assert_int_equal(mp_arrayproxy_len(sh.a), 3);
    TU_ASSERT_STATUS(mp_arrayproxy_set_int(sh.a, 1, 128), MP_EVALUE);
    assert_non_null(strstr(mp_errmsg(MP_EVALUE), "OverflowError"));
    mp_obj *f = mp_obj_float(1.5);
    TU_ASSERT_STATUS(mp_arrayproxy_set(sh.a, 1, f), MP_ETYPE);
    TU_ASSERT_STATUS(mp_arrayproxy_set_int(sh.a, 3, 0), MP_EKEY);
    TU_ASSERT_STATUS(mp_arrayproxy_get_int(sh.a, -4, &x), MP_EKEY);
    mp_obj *all = NULL, *want = mp_obj_build("[iii]", -128, 2, 127);
    TU_ASSERT_STATUS(mp_arrayproxy_copy(sh.a, &all), 0);
    assert_true(mp_obj_equal(all, want));
    mp_obj_free(all);
    mp_obj_free(want);
    /* 'd' takes ints as floats; a bad typecode or item makes nothing. */
    mp_arrayproxy *d = NULL, *bad = NULL;
    TU_ASSERT_STATUS(mp_manager_array(m, "d", init, &d), 0);
    mp_obj *item = NULL;
    TU_ASSERT_STATUS(mp_arrayproxy_get(d, 0, &item), 0);
    assert_int_equal(mp_obj_type(item), MP_TYPE_FLOAT);
    mp_obj_free(item);
    TU_ASSERT_STATUS(mp_manager_array(m, "z", init, &bad), MP_ETYPE);
    assert_null(bad);
    mp_obj *floats = mp_obj_build("[d]", 0.5);
    TU_ASSERT_STATUS(mp_manager_array(m, "i", floats, &bad), MP_ETYPE);
    assert_null(bad);
    TU_ASSERT_STATUS(mp_manager_array(m, "i", f, &bad), MP_ETYPE);
    mp_obj_free(floats);
    mp_obj_free(f);
    mp_obj_free(init);
    mp_arrayproxy_free(d);
    mp_arrayproxy_free(sh.a);
    mp_manager_free(m);
}

/* ---- Namespace ---------------------------------------------------------------------- */

static int child_sets_attributes(void *arg)
{
    struct shared *sh = arg;
    mp_obj *v = mp_obj_build("[is]", 1, "x");
    int rc = v ? mp_nsproxy_set(sh->ns, "child", v) : -1;
    mp_obj_free(v);
    return rc == 0 && mp_nsproxy_del(sh->ns, "gone") == 0 ? 0 : 1;
}

/* A Namespace's attributes set and deleted in a child are the parent's;
 * a missing one is MP_EKEY with Python's AttributeError words. */
static void test_namespace_attributes_are_shared_with_children(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    struct shared sh = {0};
    mp_obj *attrs = mp_obj_build("{s:i,s:i}", "gone", 1, "kept", 2);
    TU_ASSERT_STATUS(mp_manager_namespace(m, attrs, &sh.ns), 0);
    mp_obj_free(attrs);
    pid_t pid = tu_fork(child_sets_attributes, &sh);
    assert_int_equal(tu_wait_child(pid, 60), 0);
    mp_obj *v = NULL, *want = mp_obj_build("[is]", 1, "x");
    TU_ASSERT_STATUS(mp_nsproxy_get(sh.ns, "child", &v), 0);
    assert_true(mp_obj_equal(v, want));
    mp_obj_free(v);
    mp_obj_free(want);
    TU_ASSERT_STATUS(mp_nsproxy_get(sh.ns, "gone", &v), MP_EKEY);
    assert_null(v);
    assert_non_null(strstr(mp_errmsg(MP_EKEY), "has no attribute 'gone'"));
    TU_ASSERT_STATUS(mp_nsproxy_del(sh.ns, "gone"), MP_EKEY);
    mp_obj *all = NULL;
    TU_ASSERT_STATUS(mp_nsproxy_copy(sh.ns, &all), 0);
    assert_int_equal(mp_obj_len(all), 2);
    mp_obj_free(all);
    /* Names are strs: a dict with another key is refused, nothing made. */
    mp_nsproxy *bad = NULL;
    mp_obj *intkeys = mp_obj_build("{i:i}", 1, 2);
    TU_ASSERT_STATUS(mp_manager_namespace(m, intkeys, &bad), MP_ETYPE);
    assert_null(bad);
    mp_obj_free(intkeys);
    TU_ASSERT_STATUS(mp_nsproxy_get(sh.ns, NULL, &v), -EINVAL);
    mp_nsproxy_free(sh.ns);
    mp_manager_free(m);
}

/* ---- list sort and reverse ------------------------------------------------------------ */

static int child_sorts(void *arg)
{
    struct shared *sh = arg;
    return mp_listproxy_sort(sh->l, false) == 0 ? 0 : 1;
}

/* Python's ordering and stability: 1, 1.0 and True are equal and keep
 * their order; a sort with incomparable items is TypeError (MP_ETYPE) and
 * leaves the list as it was; reverse=True keeps equal items in order too. */
static void test_list_sort_orders_as_python_and_refuses_mixed_types(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    struct shared sh = {0};
    mp_obj *init = mp_obj_build("[idpid]", 3, 1.0, 1, -2, 0.5);
    TU_ASSERT_STATUS(mp_manager_list(m, init, &sh.l), 0);
    pid_t pid = tu_fork(child_sorts, &sh);
    assert_int_equal(tu_wait_child(pid, 60), 0);
    mp_obj *got = NULL;
    TU_ASSERT_STATUS(mp_listproxy_copy(sh.l, &got), 0);
    mt_take_repr(got, "[-2, 0.5, 1.0, True, 3]");
    TU_ASSERT_STATUS(mp_listproxy_sort(sh.l, true), 0);
    TU_ASSERT_STATUS(mp_listproxy_copy(sh.l, &got), 0);
    mt_take_repr(got, "[3, 1.0, True, 0.5, -2]");
    TU_ASSERT_STATUS(mp_listproxy_reverse(sh.l), 0);
    TU_ASSERT_STATUS(mp_listproxy_copy(sh.l, &got), 0);
    mt_take_repr(got, "[-2, 0.5, True, 1.0, 3]");
    /* mixed: refused, unchanged */
    TU_ASSERT_STATUS(mp_listproxy_append_str(sh.l, "a"), 0);
    TU_ASSERT_STATUS(mp_listproxy_sort(sh.l, false), MP_ETYPE);
    assert_non_null(strstr(mp_errmsg(MP_ETYPE), "'<' not supported"));
    TU_ASSERT_STATUS(mp_listproxy_copy(sh.l, &got), 0);
    mt_take_repr(got, "[-2, 0.5, True, 1.0, 3, 'a']");
    /* str, bytes, tuples */
    mp_listproxy *s = NULL;
    mp_obj *strs = mp_obj_build("[sss(is)(i)]", "b", "ab", "", 1, "a", 1);
    TU_ASSERT_STATUS(mp_manager_list(m, strs, &s), 0);
    TU_ASSERT_STATUS(mp_listproxy_sort(s, false), MP_ETYPE);
    TU_ASSERT_STATUS(mp_listproxy_pop(s, -1, NULL), 0);
    TU_ASSERT_STATUS(mp_listproxy_pop(s, -1, NULL), 0);
    TU_ASSERT_STATUS(mp_listproxy_sort(s, false), 0);
    TU_ASSERT_STATUS(mp_listproxy_copy(s, &got), 0);
    mt_take_repr(got, "['', 'ab', 'b']");
    /* Nothing to compare: Python's [].sort() and [None].sort() succeed. */
    mp_listproxy *e = NULL;
    TU_ASSERT_STATUS(mp_manager_list(m, NULL, &e), 0);
    TU_ASSERT_STATUS(mp_listproxy_sort(e, true), 0);
    mp_obj *none = mp_obj_none();
    TU_ASSERT_STATUS(mp_listproxy_append(e, none), 0);
    TU_ASSERT_STATUS(mp_listproxy_sort(e, false), 0);
    TU_ASSERT_STATUS(mp_listproxy_append(e, none), 0);
    TU_ASSERT_STATUS(mp_listproxy_sort(e, false), MP_ETYPE); /* None < None */
    mp_obj_free(none);
    mp_listproxy_free(e);
    TU_ASSERT_STATUS(mp_listproxy_sort(NULL, false), -EINVAL);
    mp_obj_free(strs);
    mp_obj_free(init);
    mp_listproxy_free(s);
    mp_listproxy_free(sh.l);
    mp_manager_free(m);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_value_counts_increments_of_forked_clients),
        TU_TEST(test_array_keeps_typecode_rules_of_python),
        TU_TEST(test_namespace_attributes_are_shared_with_children),
        TU_TEST(test_list_sort_orders_as_python_and_refuses_mixed_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
