/* manager_cpython_server_types: our C proxies of Semaphore,
 * BoundedSemaphore, Event, Condition, Barrier, Value, Array, Namespace,
 * list sort/reverse and JoinableQueue on CPython's own SyncManager, with
 * the codes they give against our server; and CPython's _TestContainers,
 * _TestRemoteManager and _TestManagerRestart scenarios run by C clients
 * against a real python3 manager (every interpreter tu_pythons finds). */
#include "pyserver_testutil.h"

#include <mpipc/error.h>
#include <mpipc/manager_data.h>
#include <mpipc/manager_sync.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static mp_manager *ct_connect(const char *address, const char *key, size_t keylen)
{
    mp_manager *m = NULL;
    TU_ASSERT_STATUS(mp_manager_connect(&m, address, key, keylen, NULL), 0);
    assert_non_null(m);
    TU_ASSERT_STATUS(mp_manager_set_timeout(m, 30.0), 0);
    return m;
}

/* ---- the types ------------------------------------------------------------------- */

struct ct_shared {
    const char *address;
    mp_semproxy *sem;
    mp_eventproxy *ev;
    mp_condproxy *cond;
    mp_barrierproxy *bar;
    mp_queueproxy *q;
};

static int ct_sem_child(void *arg)
{
    struct ct_shared *sh = arg;
    /* The parent holds the only unit; it lets go within a second. */
    return mp_semproxy_acquire(sh->sem, 10.0) == 0 && mp_semproxy_release(sh->sem) == 0 ? 0 : 1;
}

/* Semaphore and BoundedSemaphore: acquire with and without a timeout,
 * False as MP_ETIMEDOUT, over-release of a bounded one as MP_EVALUE
 * (ValueError), a unit passed to another process; get_value, which
 * AcquirerProxy does not expose, is -ENOTSUP. */
static void ct_semaphores(mp_manager *m)
{
    struct ct_shared sh = {0};
    TU_ASSERT_STATUS(mp_manager_semaphore(m, 2, &sh.sem), 0);
    TU_ASSERT_STATUS(mp_semproxy_acquire(sh.sem, MP_FOREVER), 0);
    TU_ASSERT_STATUS(mp_semproxy_acquire(sh.sem, 5.0), 0);
    TU_ASSERT_STATUS(mp_semproxy_acquire(sh.sem, MP_NOWAIT), MP_ETIMEDOUT);
    TU_ASSERT_STATUS(mp_semproxy_acquire(sh.sem, 0.1), MP_ETIMEDOUT);
    TU_ASSERT_STATUS(mp_semproxy_release(sh.sem), 0);
    TU_ASSERT_STATUS(mp_semproxy_get_value(sh.sem), -ENOTSUP);
    pid_t pid = tu_fork(ct_sem_child, &sh);
    assert_true(pid > 0);
    tu_sleep(0.2); /* the child waits in acquire by now (it passes if not yet) */
    TU_ASSERT_STATUS(mp_semproxy_release(sh.sem), 0);
    assert_int_equal(tu_wait_child(pid, 30.0), 0);
    TU_ASSERT_STATUS(mp_semproxy_acquire(sh.sem, 5.0), 0);
    TU_ASSERT_STATUS(mp_semproxy_acquire(sh.sem, 5.0), 0);
    mp_semproxy_free(sh.sem);

    mp_semproxy *b = NULL;
    TU_ASSERT_STATUS(mp_manager_bounded_semaphore(m, 1, &b), 0);
    TU_ASSERT_STATUS(mp_semproxy_release(b), MP_EVALUE);
    assert_non_null(strstr(mp_errmsg(MP_EVALUE), "ValueError"));
    TU_ASSERT_STATUS(mp_semproxy_acquire(b, MP_NOWAIT), 0);
    TU_ASSERT_STATUS(mp_semproxy_acquire(b, MP_NOWAIT), MP_ETIMEDOUT);
    TU_ASSERT_STATUS(mp_semproxy_release(b), 0);
    mp_semproxy_free(b);
}

static int ct_event_child(void *arg)
{
    struct ct_shared *sh = arg;
    tu_sleep(0.15);
    return mp_eventproxy_set(sh->ev) == 0 ? 0 : 1;
}

/* Event: wait times out while clear (MP_ETIMEDOUT), wakes when another
 * process sets it, is_set and clear. */
static void ct_event(mp_manager *m)
{
    struct ct_shared sh = {0};
    TU_ASSERT_STATUS(mp_manager_event(m, &sh.ev), 0);
    TU_ASSERT_STATUS(mp_eventproxy_is_set(sh.ev), 0);
    TU_ASSERT_STATUS(mp_eventproxy_wait(sh.ev, 0.1), MP_ETIMEDOUT);
    TU_ASSERT_STATUS(mp_eventproxy_wait(sh.ev, MP_NOWAIT), MP_ETIMEDOUT);
    pid_t pid = tu_fork(ct_event_child, &sh);
    assert_true(pid > 0);
    TU_ASSERT_STATUS(mp_eventproxy_wait(sh.ev, 20.0), 0);
    assert_int_equal(tu_wait_child(pid, 30.0), 0);
    TU_ASSERT_STATUS(mp_eventproxy_is_set(sh.ev), 1);
    TU_ASSERT_STATUS(mp_eventproxy_wait(sh.ev, MP_FOREVER), 0);
    TU_ASSERT_STATUS(mp_eventproxy_clear(sh.ev), 0);
    TU_ASSERT_STATUS(mp_eventproxy_is_set(sh.ev), 0);
    mp_eventproxy_free(sh.ev);
}

static int ct_cond_child(void *arg)
{
    struct ct_shared *sh = arg;
    if (mp_condproxy_acquire(sh->cond, 10.0) != 0)
        return 1;
    int rc = mp_condproxy_wait(sh->cond, 20.0);
    return mp_condproxy_release(sh->cond) == 0 && rc == 0 ? 0 : 2;
}

/* A child waits on sh->cond; notify until it is done (Python's notify says
 * nothing of who woke), each round bounded. */
static void ct_notify_until_done(struct ct_shared *sh)
{
    pid_t pid = tu_fork(ct_cond_child, sh);
    assert_true(pid > 0);
    int st = -1;
    for (int i = 0; i < 200 && (st = tu_poll_child(pid)) == TU_RUNNING; i++) {
        TU_ASSERT_STATUS(mp_condproxy_acquire(sh->cond, 5.0), 0);
        TU_ASSERT_STATUS(mp_condproxy_notify(sh->cond, 1), 0);
        TU_ASSERT_STATUS(mp_condproxy_release(sh->cond), 0);
        tu_sleep(0.05);
    }
    if (st == TU_RUNNING)
        st = tu_wait_child(pid, 5.0);
    assert_int_equal(st, 0);
}

/* Another process finds the lock held: its non-blocking acquire fails. */
static int ct_lock_is_held_child(void *arg)
{
    return mp_lockproxy_acquire(arg, MP_NOWAIT) == MP_ETIMEDOUT ? 0 : 1;
}

/* Condition(lock) over a Lock or an RLock C made: the lock travels as a
 * pickled AcquirerProxy, and the condition's acquire, wait and release are
 * that lock's (another proxy of it sees it held, then free); a waiter in
 * another process wakes on notify. Over an RLock, wait is RuntimeError
 * (MP_EVALUE), the lock still held, as Python's own
 * m.Condition(m.RLock()).wait() is: the server's Condition asks a lock
 * without _is_owned by a non-blocking acquire, which an RLock's owner
 * always gets. */
static void ct_condition_over(mp_manager *m, bool rlock)
{
    struct ct_shared sh = {0};
    mp_lockproxy *lock = NULL;
    TU_ASSERT_STATUS(rlock ? mp_manager_rlock(m, &lock) : mp_manager_lock(m, &lock), 0);
    TU_ASSERT_STATUS(mp_manager_condition(m, lock, &sh.cond), 0);
    TU_ASSERT_STATUS(mp_condproxy_acquire(sh.cond, 5.0), 0);
    pid_t pid = tu_fork(ct_lock_is_held_child, lock);
    assert_int_equal(tu_wait_child(pid, 30.0), 0);
    TU_ASSERT_STATUS(mp_condproxy_wait(sh.cond, 0.1), rlock ? MP_EVALUE : MP_ETIMEDOUT);
    pid = tu_fork(ct_lock_is_held_child, lock); /* held after the wait */
    assert_int_equal(tu_wait_child(pid, 30.0), 0);
    TU_ASSERT_STATUS(mp_condproxy_release(sh.cond), 0);
    TU_ASSERT_STATUS(mp_lockproxy_acquire(lock, MP_NOWAIT), 0); /* free */
    TU_ASSERT_STATUS(mp_lockproxy_release(lock), 0);
    if (!rlock)
        ct_notify_until_done(&sh);
    mp_condproxy_free(sh.cond);
    mp_lockproxy_free(lock);
}

/* Condition: wait and notify need the lock (RuntimeError: MP_EVALUE),
 * wait times out holding it again, a waiter in another process wakes on
 * notify; and over a given lock (ct_condition_over). */
static void ct_condition(mp_manager *m)
{
    struct ct_shared sh = {0};
    TU_ASSERT_STATUS(mp_manager_condition(m, NULL, &sh.cond), 0);
    TU_ASSERT_STATUS(mp_condproxy_wait(sh.cond, 0.1), MP_EVALUE);
    assert_non_null(strstr(mp_errmsg(MP_EVALUE), "RuntimeError"));
    TU_ASSERT_STATUS(mp_condproxy_notify(sh.cond, 1), MP_EVALUE);
    TU_ASSERT_STATUS(mp_condproxy_release(sh.cond), MP_EVALUE);
    TU_ASSERT_STATUS(mp_condproxy_acquire(sh.cond, 5.0), 0);
    TU_ASSERT_STATUS(mp_condproxy_wait(sh.cond, 0.1), MP_ETIMEDOUT);
    TU_ASSERT_STATUS(mp_condproxy_notify_all(sh.cond), 0);
    TU_ASSERT_STATUS(mp_condproxy_release(sh.cond), 0);

    ct_notify_until_done(&sh);
    mp_condproxy_free(sh.cond);

    ct_condition_over(m, false);
    ct_condition_over(m, true);
}

static int ct_barrier_child(void *arg)
{
    struct ct_shared *sh = arg;
    int rc = mp_barrierproxy_wait(sh->bar, 20.0);
    return rc >= 0 && rc < 3 ? 10 + rc : 1;
}

/* Barrier: three processes pass it with the indexes 0, 1, 2; parties,
 * n_waiting and broken by __getattribute__; a lone wait that times out
 * breaks it (BrokenBarrierError: MP_EBROKEN); reset mends it; abort
 * breaks it again. */
static void ct_barrier(mp_manager *m)
{
    struct ct_shared sh = {0};
    TU_ASSERT_STATUS(mp_manager_barrier(m, 3, MP_FOREVER, &sh.bar), 0);
    TU_ASSERT_STATUS(mp_barrierproxy_parties(sh.bar), 3);
    TU_ASSERT_STATUS(mp_barrierproxy_n_waiting(sh.bar), 0);
    TU_ASSERT_STATUS(mp_barrierproxy_broken(sh.bar), 0);
    pid_t p1 = tu_fork(ct_barrier_child, &sh), p2 = tu_fork(ct_barrier_child, &sh);
    assert_true(p1 > 0 && p2 > 0);
    int mine = mp_barrierproxy_wait(sh.bar, 20.0);
    assert_true(mine >= 0 && mine < 3);
    int s1 = tu_wait_child(p1, 30.0), s2 = tu_wait_child(p2, 30.0);
    assert_true(s1 >= 10 && s1 < 13 && s2 >= 10 && s2 < 13);
    /* Three different indexes. */
    assert_int_equal((1 << mine) | (1 << (s1 - 10)) | (1 << (s2 - 10)), 7);

    TU_ASSERT_STATUS(mp_barrierproxy_wait(sh.bar, 0.1), MP_EBROKEN);
    assert_non_null(strstr(mp_errmsg(MP_EBROKEN), "BrokenBarrierError"));
    TU_ASSERT_STATUS(mp_barrierproxy_broken(sh.bar), 1);
    TU_ASSERT_STATUS(mp_barrierproxy_reset(sh.bar), 0);
    TU_ASSERT_STATUS(mp_barrierproxy_broken(sh.bar), 0);
    TU_ASSERT_STATUS(mp_barrierproxy_abort(sh.bar), 0);
    TU_ASSERT_STATUS(mp_barrierproxy_wait(sh.bar, 5.0), MP_EBROKEN);
    mp_barrierproxy_free(sh.bar);

    mp_barrierproxy *b2 = NULL; /* the barrier's own timeout */
    TU_ASSERT_STATUS(mp_manager_barrier(m, 2, 0.1, &b2), 0);
    TU_ASSERT_STATUS(mp_barrierproxy_wait(b2, MP_FOREVER), MP_EBROKEN);
    mp_barrierproxy_free(b2);
}

/* Value and Array: get and set; IndexError as MP_EKEY, a str in an 'i'
 * array as MP_ETYPE (TypeError), an int too large as MP_EVALUE
 * (OverflowError); Array copy and named ones are -ENOTSUP. */
static void ct_value_array(mp_manager *m)
{
    mp_obj *five = mt_int(5);
    mp_valueproxy *v = NULL;
    TU_ASSERT_STATUS(mp_manager_value(m, "i", five, &v), 0);
    int64_t i = 0;
    TU_ASSERT_STATUS(mp_valueproxy_get_int(v, &i), 0);
    assert_int_equal(i, 5);
    TU_ASSERT_STATUS(mp_valueproxy_set_int(v, 7), 0);
    TU_ASSERT_STATUS(mp_valueproxy_get_int(v, &i), 0);
    assert_int_equal(i, 7);
    mp_valueproxy_free(v);
    mp_obj *f = mp_obj_float(1.5);
    TU_ASSERT_STATUS(mp_manager_value(m, "d", f, &v), 0);
    double d = 0;
    TU_ASSERT_STATUS(mp_valueproxy_set_float(v, 2.25), 0);
    TU_ASSERT_STATUS(mp_valueproxy_get_float(v, &d), 0);
    assert_true(d == 2.25);
    mp_valueproxy_free(v);
    mp_obj_free(f);
    TU_ASSERT_STATUS(mp_manager_value_named(m, "n", "i", five, &v), -ENOTSUP);
    assert_null(v);
    mp_obj_free(five);

    mp_obj *seq = mp_obj_build("[iii]", (int64_t)1, (int64_t)2, (int64_t)3);
    mp_arrayproxy *a = NULL;
    TU_ASSERT_STATUS(mp_manager_array(m, "i", seq, &a), 0);
    mp_obj_free(seq);
    TU_ASSERT_STATUS(mp_arrayproxy_len(a), 3);
    TU_ASSERT_STATUS(mp_arrayproxy_get_int(a, 1, &i), 0);
    assert_int_equal(i, 2);
    TU_ASSERT_STATUS(mp_arrayproxy_set_int(a, 1, 20), 0);
    TU_ASSERT_STATUS(mp_arrayproxy_get_int(a, 1, &i), 0);
    assert_int_equal(i, 20);
    TU_ASSERT_STATUS(mp_arrayproxy_get_int(a, -1, &i), 0);
    assert_int_equal(i, 3);
    TU_ASSERT_STATUS(mp_arrayproxy_get_int(a, 5, &i), MP_EKEY);
    assert_non_null(strstr(mp_errmsg(MP_EKEY), "IndexError"));
    TU_ASSERT_STATUS(mp_arrayproxy_set_int(a, 5, 1), MP_EKEY);
    mp_obj *s = mt_str("x");
    TU_ASSERT_STATUS(mp_arrayproxy_set(a, 0, s), MP_ETYPE);
    mp_obj_free(s);
    TU_ASSERT_STATUS(mp_arrayproxy_set_int(a, 0, INT64_C(1) << 40), MP_EVALUE);
    TU_ASSERT_STATUS(mp_arrayproxy_get_int(a, 0, &i), 0);
    assert_int_equal(i, 1); /* nothing lost */
    mp_obj *copy = NULL;
    TU_ASSERT_STATUS(mp_arrayproxy_copy(a, &copy), -ENOTSUP);
    assert_null(copy);
    mp_arrayproxy_free(a);
}

/* _TestContainers.test_namespace, and AttributeError as MP_EKEY. */
static void ct_namespace(mp_manager *m)
{
    mp_nsproxy *n = NULL;
    TU_ASSERT_STATUS(mp_manager_namespace(m, NULL, &n), 0);
    mp_obj *bob = mt_str("Bob"), *builder = mt_str("Builder"), *hidden = mt_str("hidden");
    TU_ASSERT_STATUS(mp_nsproxy_set(n, "name", bob), 0);
    TU_ASSERT_STATUS(mp_nsproxy_set(n, "job", builder), 0);
    TU_ASSERT_STATUS(mp_nsproxy_set(n, "_hidden", hidden), 0);
    mp_obj_free(bob);
    mp_obj_free(builder);
    mp_obj_free(hidden);
    mp_obj *got = NULL;
    TU_ASSERT_STATUS(mp_nsproxy_get(n, "name", &got), 0);
    mt_take_repr(got, "'Bob'");
    TU_ASSERT_STATUS(mp_nsproxy_get(n, "job", &got), 0);
    mt_take_repr(got, "'Builder'");
    TU_ASSERT_STATUS(mp_nsproxy_del(n, "job"), 0);
    TU_ASSERT_STATUS(mp_nsproxy_copy(n, &got), 0);
    mt_take_repr(got, "{'name': 'Bob', '_hidden': 'hidden'}");
    TU_ASSERT_STATUS(mp_nsproxy_get(n, "job", &got), MP_EKEY); /* not hasattr(n, 'job') */
    assert_null(got);
    assert_non_null(strstr(mp_errmsg(MP_EKEY), "AttributeError"));
    TU_ASSERT_STATUS(mp_nsproxy_del(n, "job"), MP_EKEY);
    mp_nsproxy_free(n);

    mp_obj *attrs = mt_dict1("x", 1);
    TU_ASSERT_STATUS(mp_manager_namespace(m, attrs, &n), 0);
    mp_obj_free(attrs);
    TU_ASSERT_STATUS(mp_nsproxy_get(n, "x", &got), 0);
    mt_take_repr(got, "1");
    mp_nsproxy_free(n);
}

/* list sort and reverse with Python's ordering; mixed types: MP_ETYPE. */
static void ct_list_order(mp_manager *m)
{
    mp_obj *init = mp_obj_build("[iii]", (int64_t)3, (int64_t)1, (int64_t)2), *got = NULL;
    mp_listproxy *l = NULL;
    TU_ASSERT_STATUS(mp_manager_list(m, init, &l), 0);
    mp_obj_free(init);
    TU_ASSERT_STATUS(mp_listproxy_sort(l, false), 0);
    TU_ASSERT_STATUS(mp_listproxy_copy(l, &got), 0);
    mt_take_repr(got, "[1, 2, 3]");
    TU_ASSERT_STATUS(mp_listproxy_sort(l, true), 0);
    TU_ASSERT_STATUS(mp_listproxy_copy(l, &got), 0);
    mt_take_repr(got, "[3, 2, 1]");
    TU_ASSERT_STATUS(mp_listproxy_reverse(l), 0);
    TU_ASSERT_STATUS(mp_listproxy_copy(l, &got), 0);
    mt_take_repr(got, "[1, 2, 3]");
    TU_ASSERT_STATUS(mp_listproxy_append_str(l, "x"), 0);
    TU_ASSERT_STATUS(mp_listproxy_sort(l, false), MP_ETYPE);
    assert_non_null(strstr(mp_errmsg(MP_ETYPE), "TypeError"));
    assert_int_equal(mp_listproxy_len(l), 4);
    mp_listproxy_free(l);
}

static int ct_jq_child(void *arg)
{
    struct ct_shared *sh = arg;
    for (int i = 0; i < 3; i++) {
        mp_obj *item = NULL;
        if (mp_queueproxy_get(sh->q, &item, 10.0) != 0)
            return 1;
        mp_obj_free(item);
        tu_sleep(0.05);
        if (mp_queueproxy_task_done(sh->q) != 0)
            return 2;
    }
    return 0;
}

/* JoinableQueue (queue.Queue on Python's server): join waits for the
 * task_done of another process; one task_done too many is MP_EVALUE; a
 * join with work pending times out. */
static void ct_joinable_queue(mp_manager *m)
{
    struct ct_shared sh = {0};
    TU_ASSERT_STATUS(mp_manager_queue(m, 0, &sh.q), 0);
    for (int i = 0; i < 3; i++) {
        mp_obj *item = mt_int(i);
        TU_ASSERT_STATUS(mp_queueproxy_put(sh.q, item, 5.0), 0);
        mp_obj_free(item);
    }
    TU_ASSERT_STATUS(mp_queueproxy_join(sh.q, 0.1), MP_ETIMEDOUT);
    pid_t pid = tu_fork(ct_jq_child, &sh);
    assert_true(pid > 0);
    TU_ASSERT_STATUS(mp_queueproxy_join(sh.q, 20.0), 0);
    assert_int_equal(tu_wait_child(pid, 30.0), 0);
    TU_ASSERT_STATUS(mp_queueproxy_task_done(sh.q), MP_EVALUE);
    assert_non_null(strstr(mp_errmsg(MP_EVALUE), "ValueError"));
    TU_ASSERT_STATUS(mp_queueproxy_join(sh.q, 5.0), 0);
    mp_queueproxy_free(sh.q);
}

/* ---- _TestContainers ------------------------------------------------------------- */

static mp_obj *ct_range(int64_t lo, int64_t hi)
{
    mp_obj *l = mp_obj_list_new();
    for (int64_t i = lo; i < hi; i++)
        assert_int_equal(mp_obj_list_append(l, mt_int(i)), 0);
    return l;
}

/* test_list and test_list_iter; what needs a proxy inside a list
 * (e = list([a, b]), test_list_proxy_in_list) has no C form. */
static void ct_containers_list(mp_manager *m)
{
    mp_obj *r10 = ct_range(0, 10), *got = NULL;
    mp_listproxy *a = NULL, *b = NULL;
    TU_ASSERT_STATUS(mp_manager_list(m, r10, &a), 0);
    TU_ASSERT_STATUS(mp_listproxy_slice(a, 0, MP_LISTPROXY_END, &got), 0);
    assert_true(mp_obj_equal(got, r10));
    mp_obj_free(got);
    TU_ASSERT_STATUS(mp_manager_list(m, NULL, &b), 0);
    TU_ASSERT_STATUS(mp_listproxy_slice(b, 0, MP_LISTPROXY_END, &got), 0);
    mt_take_repr(got, "[]");
    mp_obj *r5 = ct_range(0, 5);
    TU_ASSERT_STATUS(mp_listproxy_extend(b, r5), 0);
    TU_ASSERT_STATUS(mp_listproxy_copy(b, &got), 0);
    assert_true(mp_obj_equal(got, r5));
    mp_obj_free(got);
    int64_t v = 0;
    TU_ASSERT_STATUS(mp_listproxy_get_int(b, 2, &v), 0);
    assert_int_equal(v, 2);
    TU_ASSERT_STATUS(mp_listproxy_slice(b, 2, 10, &got), 0);
    mt_take_repr(got, "[2, 3, 4]");
    TU_ASSERT_STATUS(mp_listproxy_extend(b, r5), 0); /* b *= 2 */
    TU_ASSERT_STATUS(mp_listproxy_slice(b, 0, MP_LISTPROXY_END, &got), 0);
    mt_take_repr(got, "[0, 1, 2, 3, 4, 0, 1, 2, 3, 4]");
    mp_obj_free(r5);
    TU_ASSERT_STATUS(mp_listproxy_copy(a, &got), 0);
    assert_true(mp_obj_equal(got, r10));
    mp_obj_free(got);

    /* test_list_iter: by index to the end, and a change seen while going. */
    ssize_t n = mp_listproxy_len(a);
    assert_int_equal(n, 10);
    for (ssize_t i = 0; i < n; i++) {
        TU_ASSERT_STATUS(mp_listproxy_get_int(a, i, &v), 0);
        assert_int_equal(v, i);
    }
    TU_ASSERT_STATUS(mp_listproxy_get_int(a, n, &v), MP_EKEY); /* exhausted */
    mp_obj *hundred = mt_int(100);
    TU_ASSERT_STATUS(mp_listproxy_set(a, 0, hundred), 0);
    mp_obj_free(hundred);
    TU_ASSERT_STATUS(mp_listproxy_get_int(a, 0, &v), 0);
    assert_int_equal(v, 100);
    mp_obj_free(r10);
    mp_listproxy_free(a);
    mp_listproxy_free(b);
}

/* test_dict (int keys); test_dict_iter's RuntimeError needs an iterator
 * proxy, and test_dict_proxy_nested / test_nested_queue a proxy inside a
 * container: no C form. */
static void ct_containers_dict(mp_manager *m)
{
    mp_dictproxy *d = NULL;
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &d), 0);
    mp_obj *want = mp_obj_dict_new();
    for (int64_t i = 65; i < 70; i++) {
        char c = (char)i;
        mp_obj *k = mt_int(i), *val = mp_obj_str(&c, 1);
        TU_ASSERT_STATUS(mp_dictproxy_set(d, k, val), 0);
        assert_int_equal(mp_obj_dict_set(want, k, val), 0);
    }
    mp_obj *got = NULL;
    TU_ASSERT_STATUS(mp_dictproxy_copy(d, &got), 0);
    assert_true(mp_obj_equal(got, want));
    mp_obj_free(got);
    mp_obj_free(want);
    TU_ASSERT_STATUS(mp_dictproxy_keys(d, &got), 0);
    mt_take_repr(got, "[65, 66, 67, 68, 69]");
    TU_ASSERT_STATUS(mp_dictproxy_values(d, &got), 0);
    mt_take_repr(got, "['A', 'B', 'C', 'D', 'E']");
    TU_ASSERT_STATUS(mp_dictproxy_items(d, &got), 0);
    mt_take_repr(got, "[(65, 'A'), (66, 'B'), (67, 'C'), (68, 'D'), (69, 'E')]");
    mp_dictproxy_free(d);
}

static void ct_run_types(bool serve, bool tcp)
{
    const char *py;
    for (size_t pyi = 0; (py = tu_python_at(pyi)) != NULL; pyi++) {
        struct ps_server s;
        assert_int_equal(ps_start(&s, py, serve, tcp, 0), 0);
        mp_manager *m = ct_connect(s.address, PS_KEY, PS_KEY_LEN);
        ct_semaphores(m);
        ct_event(m);
        ct_condition(m);
        ct_barrier(m);
        ct_value_array(m);
        ct_namespace(m);
        ct_list_order(m);
        ct_joinable_queue(m);
        ct_containers_list(m);
        ct_containers_dict(m);
        if (serve)
            TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
        mp_manager_free(m);
        assert_int_equal(ps_stop(&s), 0);
    }
}

static void test_c_types_and_containers_on_cpython_started_manager(void **state)
{
    (void)state;
    ct_run_types(false, false);
}

static void test_c_types_and_containers_on_cpython_serve_forever_tcp(void **state)
{
    (void)state;
    ct_run_types(true, true);
}

static void test_condition_over_a_lock_on_a_server_with_another_process_key_is_eauth(void **state)
{
    (void)state;
    /* A SyncManager given authkey= keeps Python's random process authkey:
     * the proxy its Condition rebuilds for the lock cannot connect back
     * (Python's own m.Condition(m.Lock()) fails there alike), and its
     * AuthenticationError reaches C as MP_EAUTH - the class is one the
     * decoder reads - not as a refused pickle. The lock is untouched. */
    struct ps_server s;
    assert_int_equal(ps_start_key(&s, "python3", false, false, 0, false), 0);
    mp_manager *m = ct_connect(s.address, PS_KEY, PS_KEY_LEN);
    mp_lockproxy *lock = NULL;
    mp_condproxy *cond = NULL;
    TU_ASSERT_STATUS(mp_manager_lock(m, &lock), 0);
    TU_ASSERT_STATUS(mp_manager_condition(m, lock, &cond), 0);
    TU_ASSERT_STATUS(mp_condproxy_acquire(cond, 5.0), MP_EAUTH);
    assert_non_null(strstr(mp_errmsg(MP_EAUTH), "AuthenticationError"));
    TU_ASSERT_STATUS(mp_lockproxy_acquire(lock, MP_NOWAIT), 0);
    TU_ASSERT_STATUS(mp_lockproxy_release(lock), 0);
    mp_condproxy_free(cond);
    mp_lockproxy_free(lock);
    mp_manager_free(m);
    assert_int_equal(ps_stop(&s), 0);
}

/* ---- _TestRemoteManager, _TestManagerRestart ------------------------------------- */

/* CPython's QueueManager: one queue.Queue behind the typeid get_queue, at
 * ('127.0.0.1', port) (0: any), with an authkey given in hex; started
 * with manager.start() and shut down when the stop pipe closes. Like
 * CPython's test, it retries once after a second if the port is still in
 * use. */
static const char ct_script[] =
    "import os, sys, queue, time\n"
    "from multiprocessing.managers import BaseManager\n"
    "port, key, wfd, rfd = int(sys.argv[1]), bytes.fromhex(sys.argv[2]), int(sys.argv[3]), "
    "int(sys.argv[4])\n"
    "q = queue.Queue()\n"
    "class QueueManager(BaseManager): pass\n"
    "QueueManager.register('get_queue', callable=lambda: q)\n"
    "m = QueueManager(address=('127.0.0.1', port), authkey=key)\n"
    "try:\n"
    "    m.start()\n"
    "except OSError:\n"
    "    time.sleep(1.0)\n"
    "    m = QueueManager(address=('127.0.0.1', port), authkey=key)\n"
    "    m.start()\n"
    "os.write(wfd, ('tcp:%s:%d\\n' % m.address).encode()); os.close(wfd)\n"
    "os.read(rfd, 1)\n"
    "m.shutdown()\n";

struct ct_qm {
    struct ps_server s;
    int port;
    char key[32];
};

/* Start the QueueManager script under py on port (0: any). */
static void ct_qm_start(struct ct_qm *q, const char *py, int port)
{
    memset(&q->s, 0, sizeof q->s);
    q->s.stop_fd = -1;
    char hex[65], portarg[16], wfd[16], rfd[16];
    for (size_t i = 0; i < sizeof q->key; i++)
        snprintf(hex + 2 * i, 3, "%02x", (unsigned char)q->key[i]);
    int up[2], stop[2];
    assert_int_equal(pipe(up), 0);
    assert_int_equal(pipe(stop), 0);
    (void)fcntl(up[0], F_SETFD, FD_CLOEXEC);
    (void)fcntl(stop[1], F_SETFD, FD_CLOEXEC);
    snprintf(portarg, sizeof portarg, "%d", port);
    snprintf(wfd, sizeof wfd, "%d", up[1]);
    snprintf(rfd, sizeof rfd, "%d", stop[0]);
    const char *args[] = {portarg, hex, wfd, rfd, NULL};
    int keep[2] = {up[1], stop[0]};
    q->s.pid = tu_spawn_python_as(py, ct_script, args, keep, 2);
    close(up[1]);
    close(stop[0]);
    q->s.stop_fd = stop[1];
    assert_true(q->s.pid > 0);
    /* The address line, within 60 s. */
    size_t n = 0;
    double until = tu_now() + 60.0;
    for (;;) {
        struct pollfd pfd = {up[0], POLLIN, 0};
        int left = (int)((until - tu_now()) * 1000);
        assert_true(left > 0);
        if (poll(&pfd, 1, left) <= 0)
            continue;
        assert_true(n + 1 < sizeof q->s.address);
        assert_int_equal(read(up[0], q->s.address + n, 1), 1);
        if (q->s.address[n] == '\n')
            break;
        n++;
    }
    q->s.address[n] = '\0';
    close(up[0]);
    const char *colon = strrchr(q->s.address, ':');
    assert_non_null(colon);
    q->port = atoi(colon + 1);
}

static mp_obj *ct_remote_values(void)
{
    static const char hall[] = "hall\xc3\xa5 v\xc3\xa4rlden";
    static const char privit[] = "\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd1\x96\xd1\x82 "
                                 "\xd1\x81\xd0\xb2\xd1\x96\xd1\x82";
    static const char hall_b[] = "hall\xe5 v\xe4rlden";
    mp_obj *t = mp_obj_tuple_new();
    assert_non_null(t);
    assert_int_equal(mp_obj_tuple_append(t, mt_str("hello world")), 0);
    assert_int_equal(mp_obj_tuple_append(t, mp_obj_none()), 0);
    assert_int_equal(mp_obj_tuple_append(t, mp_obj_bool(true)), 0);
    assert_int_equal(mp_obj_tuple_append(t, mp_obj_float(2.25)), 0);
    assert_int_equal(mp_obj_tuple_append(t, mp_obj_str(hall, sizeof hall - 1)), 0);
    assert_int_equal(mp_obj_tuple_append(t, mp_obj_str(privit, sizeof privit - 1)), 0);
    assert_int_equal(mp_obj_tuple_append(t, mp_obj_bytes(hall_b, sizeof hall_b - 1)), 0);
    return t;
}

static int ct_putter(void *arg)
{
    const struct ct_qm *q = arg;
    mp_manager *m = NULL;
    if (mp_manager_connect(&m, q->s.address, q->key, sizeof q->key, NULL) != 0)
        return 1;
    (void)mp_manager_set_timeout(m, 30.0);
    mp_queueproxy *queue = NULL;
    int rc = mp_manager_attach_queue(m, "get_queue", &queue);
    mp_obj *v = ct_remote_values();
    if (rc == 0)
        rc = mp_queueproxy_put(queue, v, 10.0);
    mp_obj_free(v);
    mp_queueproxy_free(queue);
    mp_manager_free(m);
    return rc == 0 ? 0 : 2;
}

/* _TestRemoteManager.test_remote: a putter process connects with a
 * random authkey and puts the tuple of values (str, None, bool, float,
 * non-ASCII str, bytes); a second client gets them, equal. (Its last step,
 * queue.put(time.sleep) failing to pickle, has no C form: every mp_obj
 * pickles.) */
static void test_c_clients_pass_cpython_test_remote(void **state)
{
    (void)state;
    const char *py;
    for (size_t pyi = 0; (py = tu_python_at(pyi)) != NULL; pyi++) {
        struct ct_qm q;
        for (size_t i = 0; i < sizeof q.key; i++)
            q.key[i] = (char)(rand() & 0xff);
        ct_qm_start(&q, py, 0);
        pid_t pid = tu_fork(ct_putter, &q);
        assert_true(pid > 0);
        mp_manager *m = ct_connect(q.s.address, q.key, sizeof q.key);
        mp_queueproxy *queue = NULL;
        TU_ASSERT_STATUS(mp_manager_attach_queue(m, "get_queue", &queue), 0);
        mp_obj *got = NULL, *want = ct_remote_values();
        TU_ASSERT_STATUS(mp_queueproxy_get(queue, &got, 30.0), 0);
        assert_true(mp_obj_equal(got, want));
        mp_obj_free(got);
        mp_obj_free(want);
        assert_int_equal(tu_wait_child(pid, 30.0), 0);
        mp_queueproxy_free(queue);
        mp_manager_free(m);
        assert_int_equal(ps_stop(&q.s), 0);
    }
}

static int ct_restart_putter(void *arg)
{
    const struct ct_qm *q = arg;
    mp_manager *m = NULL;
    if (mp_manager_connect(&m, q->s.address, q->key, sizeof q->key, NULL) != 0)
        return 1;
    (void)mp_manager_set_timeout(m, 30.0);
    mp_queueproxy *queue = NULL;
    int rc = mp_manager_attach_queue(m, "get_queue", &queue);
    mp_obj *v = mt_str("hello world");
    if (rc == 0)
        rc = mp_queueproxy_put(queue, v, 10.0);
    mp_obj_free(v);
    mp_queueproxy_free(queue);
    mp_manager_free(m);
    return rc == 0 ? 0 : 2;
}

/* _TestManagerRestart.test_rapid_restart: a manager on a TCP port, a
 * putter process, the item got; the manager shut down and a new one
 * started at once on the same address, which a new client reaches; the
 * old handle's proxy then gives a named error, never a hang. */
static void test_c_clients_pass_cpython_test_rapid_restart(void **state)
{
    (void)state;
    const char *py;
    for (size_t pyi = 0; (py = tu_python_at(pyi)) != NULL; pyi++) {
        struct ct_qm q;
        for (size_t i = 0; i < sizeof q.key; i++)
            q.key[i] = (char)(rand() & 0xff);
        ct_qm_start(&q, py, 0);
        pid_t pid = tu_fork(ct_restart_putter, &q);
        assert_true(pid > 0);
        assert_int_equal(tu_wait_child(pid, 30.0), 0);
        mp_manager *m = ct_connect(q.s.address, q.key, sizeof q.key);
        mp_queueproxy *queue = NULL;
        TU_ASSERT_STATUS(mp_manager_attach_queue(m, "get_queue", &queue), 0);
        mp_obj *got = NULL;
        TU_ASSERT_STATUS(mp_queueproxy_get(queue, &got, 10.0), 0);
        mt_take_repr(got, "'hello world'");
        assert_int_equal(ps_stop(&q.s), 0);

        char old[sizeof q.s.address];
        memcpy(old, q.s.address, sizeof old);
        ct_qm_start(&q, py, q.port);
        assert_string_equal(q.s.address, old);
        int rc = mp_queueproxy_get(queue, &got, 1.0);
        assert_true(rc == MP_ENOSERVER || rc == MP_ENOOBJ);
        assert_null(got);
        mp_queueproxy_free(queue);
        mp_manager_free(m);

        m = ct_connect(q.s.address, q.key, sizeof q.key);
        TU_ASSERT_STATUS(mp_manager_attach_queue(m, "get_queue", &queue), 0);
        mp_obj *item = mt_str("again");
        TU_ASSERT_STATUS(mp_queueproxy_put(queue, item, 5.0), 0);
        mp_obj_free(item);
        TU_ASSERT_STATUS(mp_queueproxy_get(queue, &got, 5.0), 0);
        mt_take_repr(got, "'again'");
        mp_queueproxy_free(queue);
        mp_manager_free(m);
        assert_int_equal(ps_stop(&q.s), 0);
    }
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    srand((unsigned)getpid());
    const struct CMUnitTest tests[] = {
        TU_TEST(test_c_types_and_containers_on_cpython_started_manager),
        TU_TEST(test_c_types_and_containers_on_cpython_serve_forever_tcp),
        TU_TEST(test_condition_over_a_lock_on_a_server_with_another_process_key_is_eauth),
        TU_TEST(test_c_clients_pass_cpython_test_remote),
        TU_TEST(test_c_clients_pass_cpython_test_rapid_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
