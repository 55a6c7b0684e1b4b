/*
 * manager_concurrency: one manager, many processes and threads at once - a
 * child using its parent's objects (TestSyncManagerTypes), the seed program's
 * 100 processes, fork after use, one proxy in threads, 8 x 10,000 operations.
 */
#include "mgr_testutil.h"

#include <mpipc/manager.h>
#include <mpipc/obj.h>
#include <mpipc/process.h>

#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

/* ---- TestSyncManagerTypes: a child uses the parent's objects -------------------- */

static int child_uses_dict_list_queue(void *arg)
{
    struct mt_shared *sh = arg;
    int64_t v;
    /* _test_dict */
    if (mp_dictproxy_len(sh->d) != 1)
        return 10;
    if (mp_dictproxy_get_int(sh->d, "foo", &v) != 0 || v != 5)
        return 11;
    mp_obj *k, *val;
    if (mp_dictproxy_popitem(sh->d, &k, &val) != 0)
        return 12;
    mp_obj_free(k);
    mp_obj_free(val);
    /* _test_list */
    if (mp_listproxy_get_int(sh->l, 0, &v) != 0 || v != 5)
        return 20;
    if (mp_listproxy_pop(sh->l, 0, NULL) != 0)
        return 21;
    /* _test_queue */
    if (mp_queueproxy_qsize(sh->q) != 2 || mp_queueproxy_full(sh->q) != 1 ||
        mp_queueproxy_empty(sh->q) != 0)
        return 30;
    mp_obj *item;
    for (int want = 5; want <= 6; want++) {
        if (mp_queueproxy_get(sh->q, &item, MT_LONG) != 0 || mp_obj_get_int(item, &v) != 0 ||
            v != want)
            return 31;
        mp_obj_free(item);
    }
    if (mp_queueproxy_empty(sh->q) != 1)
        return 32;
    return 0;
}

static void test_child_uses_the_parents_dict_list_and_queue(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    struct mt_shared sh = {0};
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &sh.d), 0);
    TU_ASSERT_STATUS(mp_manager_list(m, NULL, &sh.l), 0);
    TU_ASSERT_STATUS(mp_manager_queue(m, 2, &sh.q), 0);
    TU_ASSERT_STATUS(mp_dictproxy_set_int(sh.d, "foo", 5), 0);
    TU_ASSERT_STATUS(mp_listproxy_append_int(sh.l, 5), 0);
    mp_obj *five = mt_int(5), *six = mt_int(6);
    TU_ASSERT_STATUS(mp_queueproxy_put(sh.q, five, MP_NOWAIT), 0);
    TU_ASSERT_STATUS(mp_queueproxy_put(sh.q, six, MP_NOWAIT), 0);
    mp_process *p;
    assert_int_equal(mp_process_new(&p, child_uses_dict_list_queue, &sh), 0);
    assert_int_equal(mp_process_start(p), 0);
    TU_ASSERT_STATUS(mp_process_join(p, MT_LONG), 0);
    int code = -1;
    assert_int_equal(mp_process_exitcode(p, &code), 0);
    assert_int_equal(code, 0);
    mp_process_free(p);
    assert_int_equal(mp_dictproxy_len(sh.d), 0);
    assert_int_equal(mp_listproxy_len(sh.l), 0);
    assert_int_equal(mp_queueproxy_empty(sh.q), 1);
    assert_int_equal(mp_queueproxy_full(sh.q), 0);
    mp_obj_free(five);
    mp_obj_free(six);
    mp_dictproxy_free(sh.d);
    mp_listproxy_free(sh.l);
    mp_queueproxy_free(sh.q);
    mp_manager_free(m);
}

/* ---- the seed program ----------------------------------------------------------- */

static int seed_work(void *arg)
{
    struct mt_shared *sh = arg;
    int rc = mp_lockproxy_acquire(sh->lock, MT_LONG); /* with lock: */
    if (rc != 0)
        return 10;
    int64_t v;
    if (mp_dictproxy_get_int(sh->d, "count", &v) != 0) /* d['count'] -= 1 */
        return 11;
    if (mp_dictproxy_set_int(sh->d, "count", v - 1) != 0)
        return 12;
    if (mp_lockproxy_release(sh->lock) != 0)
        return 13;
    return 0;
}

static int seed_work_atomic(void *arg)
{
    struct mt_shared *sh = arg;
    return mp_dictproxy_add_int(sh->d, "count", -1, NULL) == 0 ? 0 : 20;
}

static void run_seed(mp_target_fn fn, bool with_lock)
{
    mp_manager *m = mt_start();
    struct mt_shared sh = {0};
    mp_obj *init = mt_dict1("count", 100);
    TU_ASSERT_STATUS(mp_manager_dict(m, init, &sh.d), 0);
    mp_obj_free(init);
    if (with_lock)
        TU_ASSERT_STATUS(mp_manager_lock(m, &sh.lock), 0);
    mp_process *ps[100];
    for (int i = 0; i < 100; i++) {
        assert_int_equal(mp_process_new(&ps[i], fn, &sh), 0);
        assert_int_equal(mp_process_start(ps[i]), 0);
    }
    for (int i = 0; i < 100; i++) {
        TU_ASSERT_STATUS(mp_process_join(ps[i], 60.0), 0);
        int code = -1;
        assert_int_equal(mp_process_exitcode(ps[i], &code), 0);
        assert_int_equal(code, 0);
        mp_process_free(ps[i]);
    }
    mp_obj *o;
    TU_ASSERT_STATUS(mp_dictproxy_copy(sh.d, &o), 0);
    mt_take_repr(o, "{'count': 0}"); /* print(dic) */
    mp_dictproxy_free(sh.d);
    mp_lockproxy_free(sh.lock);
    mp_manager_free(m);
}

static void test_seed_100_processes_decrement_under_a_lock_to_zero(void **state)
{
    (void)state;
    run_seed(seed_work, true);
}

static void test_seed_with_atomic_add_needs_no_lock(void **state)
{
    (void)state;
    run_seed(seed_work_atomic, false);
}

/* ---- fork and threads ----------------------------------------------------------- */

struct conn_ids {
    mp_manager *m;
    mp_dictproxy *d;
    int64_t parent_session, parent_conn;
};

static int child_gets_its_own_connection(void *arg)
{
    struct conn_ids *ci = arg;
    mp_obj *info;
    if (mp_manager_info(ci->m, &info) != 0)
        return 10;
    int64_t sess = 0, conn = 0;
    mp_obj_get_int(mp_obj_dict_get_cstr(info, "session"), &sess);
    mp_obj_get_int(mp_obj_dict_get_cstr(info, "connection"), &conn);
    mp_obj_free(info);
    if (sess == ci->parent_session)
        return 11; /* the child must not pass for its parent */
    if (conn == ci->parent_conn)
        return 12; /* nor use its socket */
    /* Hammer the dict while the parent does too: a shared socket would
     * cross the replies (a reply meant for another process would show as a
     * wrong count). */
    char key[32];
    snprintf(key, sizeof key, "c%d", (int)getpid());
    for (int i = 0; i < 300; i++) {
        int64_t v;
        if (mp_dictproxy_add_int(ci->d, key, 1, &v) != 0 || v != i + 1)
            return 13;
        if (mp_dictproxy_add_int(ci->d, "child", 1, NULL) != 0)
            return 14;
    }
    return 0;
}

static void test_child_forked_after_the_parent_used_a_proxy_opens_its_own_connection(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    struct conn_ids ci = {m, NULL, 0, 0};
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &ci.d), 0);
    TU_ASSERT_STATUS(mp_dictproxy_set_int(ci.d, "parent", 0), 0);
    ci.parent_session = mt_info_int(m, "session");
    ci.parent_conn = mt_info_int(m, "connection");
    pid_t kids[3];
    for (int k = 0; k < 3; k++)
        kids[k] = tu_fork(child_gets_its_own_connection, &ci);
    for (int i = 0; i < 300; i++) {
        int64_t v;
        TU_ASSERT_STATUS(mp_dictproxy_add_int(ci.d, "parent", 1, &v), 0);
        assert_int_equal(v, i + 1);
    }
    for (int k = 0; k < 3; k++)
        assert_int_equal(tu_wait_child(kids[k], 60.0), 0);
    int64_t v;
    TU_ASSERT_STATUS(mp_dictproxy_get_int(ci.d, "child", &v), 0);
    assert_int_equal(v, 900);
    /* the parent still talks over its own, untouched connection */
    assert_int_equal(mt_info_int(m, "session"), ci.parent_session);
    assert_int_equal(mt_info_int(m, "connection"), ci.parent_conn);
    mp_dictproxy_free(ci.d);
    mp_manager_free(m);
}

struct thread_arg {
    mp_dictproxy *d;
    mp_queueproxy *q;
    mp_lockproxy *rlock;
    int n;
    int rc;
    double got_at;
};

static void *adder_thread(void *arg)
{
    struct thread_arg *t = arg;
    for (int i = 0; i < t->n && t->rc == 0; i++)
        t->rc = mp_dictproxy_add_int(t->d, "total", 1, NULL);
    return NULL;
}

static void *getter_thread(void *arg)
{
    struct thread_arg *t = arg;
    mp_obj *item = NULL;
    t->rc = mp_queueproxy_get(t->q, &item, MT_LONG);
    t->got_at = tu_now();
    mp_obj_free(item);
    return NULL;
}

static void *rlock_thief(void *arg)
{
    struct thread_arg *t = arg;
    /* Another thread neither enters nor releases the holder's RLock. */
    int a = mp_lockproxy_acquire(t->rlock, MP_NOWAIT);
    int r = mp_lockproxy_release(t->rlock);
    t->rc = (a == MP_ETIMEDOUT && r == MP_EVALUE) ? 0 : 1;
    return NULL;
}

static void test_one_proxy_used_from_several_threads(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    mp_dictproxy *d;
    mp_queueproxy *q;
    mp_lockproxy *rl;
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &d), 0);
    TU_ASSERT_STATUS(mp_manager_queue(m, 0, &q), 0);
    TU_ASSERT_STATUS(mp_manager_rlock(m, &rl), 0);
    /* A thread blocked in get() must not hold up the others. */
    struct thread_arg getter = {d, q, rl, 0, -1, 0};
    pthread_t gt;
    assert_int_equal(pthread_create(&gt, NULL, getter_thread, &getter), 0);
    struct thread_arg adders[4];
    pthread_t at[4];
    for (int i = 0; i < 4; i++) {
        adders[i] = (struct thread_arg){d, q, rl, 500, 0, 0};
        assert_int_equal(pthread_create(&at[i], NULL, adder_thread, &adders[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(at[i], NULL);
        TU_ASSERT_STATUS(adders[i].rc, 0);
    }
    double adds_done = tu_now();
    int64_t v;
    TU_ASSERT_STATUS(mp_dictproxy_get_int(d, "total", &v), 0);
    assert_int_equal(v, 2000);
    mp_obj *item = mt_str("wake");
    TU_ASSERT_STATUS(mp_queueproxy_put(q, item, MT_LONG), 0);
    mp_obj_free(item);
    pthread_join(gt, NULL);
    TU_ASSERT_STATUS(getter.rc, 0);
    assert_true(getter.got_at >= adds_done);

    /* RLock ownership is per thread */
    TU_ASSERT_STATUS(mp_lockproxy_acquire(rl, MT_LONG), 0);
    struct thread_arg thief = {d, q, rl, 0, -1, 0};
    pthread_t tt;
    assert_int_equal(pthread_create(&tt, NULL, rlock_thief, &thief), 0);
    pthread_join(tt, NULL);
    assert_int_equal(thief.rc, 0);
    TU_ASSERT_STATUS(mp_lockproxy_release(rl), 0);

    mp_dictproxy_free(d);
    mp_queueproxy_free(q);
    mp_lockproxy_free(rl);
    mp_manager_free(m);
}

/* ---- 8 processes x 10,000 mixed operations -------------------------------------- */

static int mixed_worker(void *arg)
{
    struct mt_shared *sh = arg;
    int me = sh->fd; /* the worker's number */
    int n = sh->n;
    char key[32];
    snprintf(key, sizeof key, "p%d", me);
    int64_t qsum = 0;
    for (int k = 0; k < n; k++) {
        int rc = 0;
        int64_t v;
        switch (k % 10) {
        case 6:
            rc = mp_dictproxy_set_int(sh->d, key, k);
            break;
        case 7:
            rc = mp_listproxy_append_int(sh->l, (int64_t)me * n + k);
            break;
        case 8:
            rc = mp_dictproxy_get_int(sh->d, key, &v);
            if (rc == 0 && v != k - 2)
                return 30;
            break;
        case 9:
            if (k % 100 == 9) {
                rc = mp_lockproxy_acquire(sh->lock, MT_LONG);
                if (rc == 0)
                    rc = mp_dictproxy_get_int(sh->d, "locked", &v);
                if (rc == 0)
                    rc = mp_dictproxy_set_int(sh->d, "locked", v + 1);
                if (rc == 0)
                    rc = mp_lockproxy_release(sh->lock);
            } else {
                mp_obj *item = mt_int(k), *got = NULL;
                rc = mp_queueproxy_put(sh->q, item, MT_LONG);
                if (rc == 0)
                    rc = mp_queueproxy_get(sh->q, &got, MT_LONG);
                if (rc == 0 && mp_obj_get_int(got, &v) == 0)
                    qsum += v;
                mp_obj_free(item);
                mp_obj_free(got);
            }
            break;
        default:
            rc = mp_dictproxy_add_int(sh->d, "total", 1, NULL);
            break;
        }
        if (rc != 0)
            return 10 + k % 10;
    }
    return mp_dictproxy_add_int(sh->d, "qsum", qsum, NULL) == 0 ? 0 : 40;
}

static void test_8_processes_x_10000_mixed_operations_keep_the_state_exact(void **state)
{
    (void)state;
    /* MPIPC_MANAGER_OPS lowers the count for the valgrind run. */
    int n = mt_env_int("MPIPC_MANAGER_OPS", 10000) / 100 * 100;
    if (n < 100)
        n = 100;
    mp_manager *m = mt_start();
    struct mt_shared base = {0};
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &base.d), 0);
    TU_ASSERT_STATUS(mp_manager_list(m, NULL, &base.l), 0);
    TU_ASSERT_STATUS(mp_manager_lock(m, &base.lock), 0);
    TU_ASSERT_STATUS(mp_manager_queue(m, 0, &base.q), 0);
    TU_ASSERT_STATUS(mp_dictproxy_set_int(base.d, "locked", 0), 0);
    struct mt_shared sh[8];
    mp_process *ps[8];
    double t0 = tu_now();
    for (int i = 0; i < 8; i++) {
        sh[i] = base;
        sh[i].fd = i;
        sh[i].n = n;
        assert_int_equal(mp_process_new(&ps[i], mixed_worker, &sh[i]), 0);
        assert_int_equal(mp_process_start(ps[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        TU_ASSERT_STATUS(mp_process_join(ps[i], 120.0), 0);
        int code = -1;
        assert_int_equal(mp_process_exitcode(ps[i], &code), 0);
        assert_int_equal(code, 0);
        mp_process_free(ps[i]);
    }
    print_message("    %d operations in %.2f s\n", 8 * n, tu_now() - t0);
    int64_t v;
    TU_ASSERT_STATUS(mp_dictproxy_get_int(base.d, "total", &v), 0);
    assert_int_equal(v, 8 * n * 6 / 10);
    TU_ASSERT_STATUS(mp_dictproxy_get_int(base.d, "locked", &v), 0);
    assert_int_equal(v, 8 * n / 100);
    for (int i = 0; i < 8; i++) {
        char key[32];
        snprintf(key, sizeof key, "p%d", i);
        TU_ASSERT_STATUS(mp_dictproxy_get_int(base.d, key, &v), 0);
        assert_int_equal(v, n - 4); /* the last k with k % 10 == 6 */
    }
    /* every list item once, each worker's in order */
    mp_obj *items;
    TU_ASSERT_STATUS(mp_listproxy_copy(base.l, &items), 0);
    assert_int_equal(mp_obj_len(items), 8 * n / 10);
    int64_t last[8];
    for (int i = 0; i < 8; i++)
        last[i] = -1;
    for (ssize_t i = 0; i < mp_obj_len(items); i++) {
        assert_int_equal(mp_obj_get_int(mp_obj_list_get(items, (size_t)i), &v), 0);
        int w = (int)(v / n);
        assert_true(w >= 0 && w < 8);
        assert_true(v % n > last[w]);
        last[w] = v % n;
    }
    mp_obj_free(items);
    /* the queue: everything put was got, nothing twice */
    assert_int_equal(mp_queueproxy_qsize(base.q), 0);
    int64_t want = 0;
    for (int k = 0; k < n; k++)
        if (k % 10 == 9 && k % 100 != 9)
            want += k;
    TU_ASSERT_STATUS(mp_dictproxy_get_int(base.d, "qsum", &v), 0);
    assert_int_equal(v, 8 * want);
    mp_dictproxy_free(base.d);
    mp_listproxy_free(base.l);
    mp_lockproxy_free(base.lock);
    mp_queueproxy_free(base.q);
    mp_manager_free(m);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_child_uses_the_parents_dict_list_and_queue),
        TU_TEST(test_seed_100_processes_decrement_under_a_lock_to_zero),
        TU_TEST(test_seed_with_atomic_add_needs_no_lock),
        TU_TEST(test_child_forked_after_the_parent_used_a_proxy_opens_its_own_connection),
        TU_TEST(test_one_proxy_used_from_several_threads),
        TU_TEST(test_8_processes_x_10000_mixed_operations_keep_the_state_exact),
    };
    return cmocka_run_group_tests_name("manager_concurrency", tests, NULL, NULL);
}
