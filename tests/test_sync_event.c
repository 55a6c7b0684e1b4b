/*
 * sync_event: Event and Condition for forked processes
 * (src/sync/sync_event.c; _TestEvent and _TestCondition in
 * Lib/test/_test_multiprocessing.py), and what CPython lacks: a waiter or
 * lock holder that dies never wedges the others (gh-88304). Its siblings are
 * test_sync_lock, test_sync_barrier and test_sync_value.
 *
 * Children are real processes (tu_fork); they report through their exit
 * status and shared memory, and the parent asserts. A test name filter may
 * be given as the first argument (cmocka glob): test_sync_event '*dead*'.
 */
#include "sync_testutil.h"

#include <mpipc/conn.h>
#include <mpipc/sync.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- Event ------------------------------------------------------------------------ */

static int set_after_delay(void *arg)
{
    mp_event *e = arg;
    tu_sleep(0.2);
    return mp_event_set(e);
}

static void test_event_like_python(void **state)
{
    (void)state;
    /* _TestEvent.test_event */
    mp_event *e;
    assert_int_equal(mp_event_new(&e), 0);
    assert_int_equal(mp_event_is_set(e), 0);
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_event_wait(e, 0.0), MP_ETIMEDOUT);
    ASSERT_TOOK(t0, 0.0);
    t0 = tu_now();
    TU_ASSERT_STATUS(mp_event_wait(e, 0.1), MP_ETIMEDOUT);
    ASSERT_TOOK(t0, 0.1);

    assert_int_equal(mp_event_set(e), 0);
    assert_int_equal(mp_event_is_set(e), 1);
    t0 = tu_now();
    assert_int_equal(mp_event_wait(e, MP_FOREVER), 0);
    assert_int_equal(mp_event_wait(e, 0.1), 0);
    ASSERT_TOOK(t0, 0.0);

    assert_int_equal(mp_event_clear(e), 0);
    assert_int_equal(mp_event_is_set(e), 0);
    /* The child's 0.2 s start at fork: timed from before it, so a parent
     * that gets the CPU back late (memcheck, a loaded machine) still sees
     * the whole wait. */
    t0 = tu_now();
    pid_t pid = tu_fork(set_after_delay, e);
    assert_int_equal(mp_event_wait(e, T_LONG), 0);
    ASSERT_TOOK(t0, 0.2);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    TU_ASSERT_STATUS(mp_event_wait(NULL, 0), -EINVAL);
    mp_event_free(e);
}

struct waiter_args {
    mp_event *ev;
    mp_cond *cond;
    mp_sem *sleeping;
    mp_sem *woken;
    double timeout;
    int id;
    struct shared *sh;
};

static int event_waiter(void *arg)
{
    struct waiter_args *w = arg;
    mp_sem_release(w->sleeping);
    int rc = mp_event_wait(w->ev, w->timeout);
    if (rc == 0)
        mp_sem_release(w->woken);
    return rc == 0 ? 0 : 1;
}

static void *event_waiter_thread(void *arg)
{
    return (void *)(intptr_t)event_waiter(arg);
}

static void test_event_set_wakes_every_waiting_process_and_thread(void **state)
{
    (void)state;
    struct waiter_args w = {.timeout = T_LONG};
    assert_int_equal(mp_event_new(&w.ev), 0);
    assert_int_equal(mp_sem_new(&w.sleeping, 0), 0);
    assert_int_equal(mp_sem_new(&w.woken, 0), 0);
    pid_t pids[4];
    for (int i = 0; i < 4; i++)
        pids[i] = tu_fork(event_waiter, &w);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, event_waiter_thread, &w), 0);
    for (int i = 0; i < 6; i++)
        assert_int_equal(mp_sem_acquire(w.sleeping, T_LONG), 0);
    tu_sleep(DELTA);
    assert_int_equal(mp_sem_get_value(w.woken), 0);
    assert_int_equal(mp_event_set(w.ev), 0);
    for (int i = 0; i < 6; i++)
        assert_int_equal(mp_sem_acquire(w.woken, T_LONG), 0);
    join_all(pids, 4);
    for (int i = 0; i < 2; i++) {
        void *r;
        assert_int_equal(pthread_join(th[i], &r), 0);
        assert_null(r);
    }
    mp_event_free(w.ev);
    mp_sem_free(w.sleeping);
    mp_sem_free(w.woken);
}

static int event_wait_forever(void *arg)
{
    struct waiter_args *w = arg;
    mp_sem_release(w->sleeping);
    mp_event_wait(w->ev, MP_FOREVER); /* killed in here */
    return 1;
}

static void test_event_waiters_that_die_are_reclaimed(void **state)
{
    (void)state;
    /* More dead waiters than an Event has waiter slots: their slots are
     * reclaimed, and a living waiter is still woken. */
    struct waiter_args w = {.timeout = T_LONG};
    assert_int_equal(mp_event_new(&w.ev), 0);
    assert_int_equal(mp_sem_new(&w.sleeping, 0), 0);
    assert_int_equal(mp_sem_new(&w.woken, 0), 0);
    enum { BATCH = 40, DEAD = MP_SYNC_MAX_WAITERS + 2 * BATCH };
    for (int done = 0; done < DEAD; done += BATCH) {
        pid_t pids[BATCH];
        for (int i = 0; i < BATCH; i++)
            pids[i] = tu_fork(event_wait_forever, &w);
        for (int i = 0; i < BATCH; i++)
            assert_int_equal(mp_sem_acquire(w.sleeping, T_LONG), 0);
        tu_sleep(0.05);
        for (int i = 0; i < BATCH; i++)
            kill(pids[i], SIGKILL);
        for (int i = 0; i < BATCH; i++)
            assert_int_equal(tu_wait_child(pids[i], T_LONG), -SIGKILL);
    }
    pid_t live = tu_fork(event_waiter, &w);
    assert_int_equal(mp_sem_acquire(w.sleeping, T_LONG), 0);
    tu_sleep(DELTA);
    assert_int_equal(mp_event_set(w.ev), 0);
    assert_int_equal(mp_sem_acquire(w.woken, T_LONG), 0);
    assert_int_equal(tu_wait_child(live, T_LONG), 0);
    mp_event_free(w.ev);
    mp_sem_free(w.sleeping);
    mp_sem_free(w.woken);
}

/* ---- Condition -------------------------------------------------------------------- */

/* _TestCondition.f: acquire, say "sleeping", wait(timeout), say "woken". */
static int cond_f(void *arg)
{
    struct waiter_args *w = arg;
    if (mp_cond_acquire(w->cond, T_LONG) != 0)
        return 1;
    mp_sem_release(w->sleeping);
    int rc = mp_cond_wait(w->cond, w->timeout);
    if (w->sh)
        w->sh->order[atomic_fetch_add(&w->sh->n[1], 1)] = w->id;
    mp_sem_release(w->woken);
    mp_cond_release(w->cond);
    if (w->timeout >= 0 && w->timeout < 5)
        return rc == MP_ETIMEDOUT ? 0 : 2;
    return rc == 0 ? 0 : 3;
}

static void *cond_f_thread(void *arg)
{
    return (void *)(intptr_t)cond_f(arg);
}

struct cond_fixture {
    struct waiter_args w;
    pid_t pids[8];
    pthread_t threads[8];
    int npids, nthreads;
};

static void cond_fixture_init(struct cond_fixture *f, double timeout)
{
    memset(f, 0, sizeof *f);
    f->w.timeout = timeout;
    assert_int_equal(mp_cond_new(&f->w.cond, NULL), 0);
    assert_int_equal(mp_sem_new(&f->w.sleeping, 0), 0);
    assert_int_equal(mp_sem_new(&f->w.woken, 0), 0);
}

/* Start `procs` processes and `threads` threads running cond_f, and wait
 * until all of them are inside wait(). */
static void start_sleepers(struct cond_fixture *f, int procs, int threads)
{
    for (int i = 0; i < procs; i++)
        f->pids[f->npids++] = tu_fork(cond_f, &f->w);
    for (int i = 0; i < threads; i++)
        assert_int_equal(pthread_create(&f->threads[f->nthreads++], NULL, cond_f_thread, &f->w), 0);
    for (int i = 0; i < procs + threads; i++)
        assert_int_equal(mp_sem_acquire(f->w.sleeping, T_LONG), 0);
    /* They said so holding the lock; once we can take it, they all sleep. */
    assert_int_equal(mp_cond_acquire(f->w.cond, T_LONG), 0);
    assert_int_equal(mp_cond_release(f->w.cond), 0);
}

static void join_sleepers(struct cond_fixture *f)
{
    join_all(f->pids, f->npids);
    for (int i = 0; i < f->nthreads; i++) {
        void *r;
        assert_int_equal(pthread_join(f->threads[i], &r), 0);
        assert_null(r);
    }
    f->npids = f->nthreads = 0;
}

static void cond_fixture_free(struct cond_fixture *f)
{
    mp_cond_free(f->w.cond);
    mp_sem_free(f->w.sleeping);
    mp_sem_free(f->w.woken);
}

static int notify(mp_cond *c, unsigned n)
{
    assert_int_equal(mp_cond_acquire(c, T_LONG), 0);
    int rc = mp_cond_notify(c, n);
    assert_int_equal(mp_cond_release(c), 0);
    return rc;
}

static void test_cond_notify_wakes_one_at_a_time(void **state)
{
    (void)state;
    /* _TestCondition.test_notify: a process and a thread. */
    struct cond_fixture f;
    cond_fixture_init(&f, T_LONG);
    start_sleepers(&f, 1, 1);
    tu_sleep(DELTA);
    assert_int_equal(mp_sem_get_value(f.w.woken), 0);
    assert_int_equal(notify(f.w.cond, 1), 1);
    assert_int_equal(mp_sem_acquire(f.w.woken, T_LONG), 0);
    tu_sleep(DELTA);
    assert_int_equal(mp_sem_get_value(f.w.woken), 0);
    assert_int_equal(notify(f.w.cond, 1), 1);
    assert_int_equal(mp_sem_acquire(f.w.woken, T_LONG), 0);
    join_sleepers(&f);
    /* Nobody left: notify wakes no one. */
    assert_int_equal(notify(f.w.cond, 1), 0);
    cond_fixture_free(&f);
}

static void test_cond_notify_all_after_timeouts(void **state)
{
    (void)state;
    /* _TestCondition.test_notify_all: first six that time out, then six
     * that notify_all wakes. */
    struct cond_fixture f;
    cond_fixture_init(&f, 0.1);
    start_sleepers(&f, 3, 3);
    for (int i = 0; i < 6; i++)
        assert_int_equal(mp_sem_acquire(f.w.woken, T_LONG), 0);
    join_sleepers(&f);
    assert_int_equal(mp_sem_get_value(f.w.woken), 0);
    assert_int_equal(notify(f.w.cond, UINT32_MAX), 0); /* nobody waits now */

    f.w.timeout = T_LONG;
    start_sleepers(&f, 3, 3);
    tu_sleep(DELTA);
    assert_int_equal(mp_sem_get_value(f.w.woken), 0);
    assert_int_equal(mp_cond_acquire(f.w.cond, T_LONG), 0);
    assert_int_equal(mp_cond_notify_all(f.w.cond), 6);
    assert_int_equal(mp_cond_release(f.w.cond), 0);
    for (int i = 0; i < 6; i++)
        assert_int_equal(mp_sem_acquire(f.w.woken, T_LONG), 0);
    join_sleepers(&f);
    cond_fixture_free(&f);
}

static void test_cond_notify_n_wakes_exactly_n(void **state)
{
    (void)state;
    /* _TestCondition.test_notify_n */
    struct cond_fixture f;
    cond_fixture_init(&f, T_LONG);
    start_sleepers(&f, 3, 3);
    tu_sleep(DELTA);
    assert_int_equal(mp_sem_get_value(f.w.woken), 0);
    assert_int_equal(notify(f.w.cond, 2), 2);
    for (int i = 0; i < 2; i++)
        assert_int_equal(mp_sem_acquire(f.w.woken, T_LONG), 0);
    tu_sleep(DELTA);
    assert_int_equal(mp_sem_get_value(f.w.woken), 0); /* exactly two */
    assert_int_equal(notify(f.w.cond, 4), 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(mp_sem_acquire(f.w.woken, T_LONG), 0);
    assert_int_equal(notify(f.w.cond, 3), 0);
    assert_int_equal(notify(f.w.cond, 0), 0);
    join_sleepers(&f);
    assert_int_equal(mp_sem_get_value(f.w.woken), 0);
    cond_fixture_free(&f);
}

static void test_cond_notify_wakes_the_oldest_waiter_first(void **state)
{
    (void)state;
    struct cond_fixture f;
    cond_fixture_init(&f, T_LONG);
    f.w.sh = shared_new();
    for (int i = 0; i < 3; i++) {
        f.w.id = i;
        start_sleepers(&f, 1, 0); /* one at a time: arrival order is i */
    }
    for (int i = 0; i < 3; i++) {
        assert_int_equal(notify(f.w.cond, 1), 1);
        assert_int_equal(mp_sem_acquire(f.w.woken, T_LONG), 0);
        assert_int_equal(f.w.sh->order[i], i);
    }
    join_sleepers(&f);
    mp_shm_free(f.w.sh);
    cond_fixture_free(&f);
}

static void test_cond_wait_timeout_and_result(void **state)
{
    (void)state;
    /* _TestCondition.test_timeout and test_wait_result */
    mp_cond *c;
    assert_int_equal(mp_cond_new(&c, NULL), 0);
    assert_int_equal(mp_cond_acquire(c, T_LONG), 0);
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_cond_wait(c, 0), MP_ETIMEDOUT);
    ASSERT_TOOK(t0, 0.0);
    t0 = tu_now();
    TU_ASSERT_STATUS(mp_cond_wait(c, 0.1), MP_ETIMEDOUT);
    ASSERT_TOOK(t0, 0.1);
    assert_int_equal(mp_cond_release(c), 0);
    mp_cond_free(c);
}

static int notify_once(void *arg)
{
    mp_cond *c = arg;
    if (mp_cond_acquire(c, T_LONG) != 0)
        return 1;
    int n = mp_cond_notify(c, 1);
    mp_cond_release(c);
    return n == 1 ? 0 : 2;
}

static void test_cond_wait_returns_0_when_notified_by_a_process(void **state)
{
    (void)state;
    mp_cond *c;
    assert_int_equal(mp_cond_new(&c, NULL), 0);
    assert_int_equal(mp_cond_acquire(c, T_LONG), 0);
    pid_t pid = tu_fork(notify_once, c);
    /* The child can only notify once we released the lock by waiting. */
    assert_int_equal(mp_cond_wait(c, T_LONG), 0);
    assert_int_equal(mp_cond_release(c), 0);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    mp_cond_free(c);
}

static void test_cond_needs_the_lock_held(void **state)
{
    (void)state;
    mp_lock *l;
    mp_cond *c, *cr;
    assert_int_equal(mp_lock_new(&l), 0);
    assert_int_equal(mp_cond_new(&c, l), 0);
    assert_int_equal(mp_cond_new(&cr, NULL), 0);
    /* Python's AssertionError: "must acquire() condition before using
     * wait()" and "lock is not owned". */
    TU_ASSERT_STATUS(mp_cond_wait(c, 0.1), MP_ESTATE);
    TU_ASSERT_STATUS(mp_cond_notify(c, 1), MP_ESTATE);
    TU_ASSERT_STATUS(mp_cond_wait(cr, 0.1), MP_ESTATE);
    TU_ASSERT_STATUS(mp_cond_notify_all(cr), MP_ESTATE);
    /* Over a plain Lock it works once held. */
    assert_int_equal(mp_cond_acquire(c, T_LONG), 0);
    TU_ASSERT_STATUS(mp_cond_wait(c, 0.05), MP_ETIMEDOUT);
    assert_int_equal(mp_cond_notify(c, 1), 0);
    TU_ASSERT_STATUS(mp_lock_acquire(l, MP_NOWAIT), MP_ETIMEDOUT); /* still held */
    assert_int_equal(mp_cond_release(c), 0);
    TU_ASSERT_STATUS(mp_cond_release(c), MP_EVALUE);
    mp_cond_free(c);
    mp_cond_free(cr);
    TU_ASSERT_STATUS(mp_cond_new_rlock(&cr, NULL), -EINVAL);
    assert_null(cr);
    mp_lock_free(l);
    TU_ASSERT_STATUS(mp_cond_wait(NULL, 0), -EINVAL);
    TU_ASSERT_STATUS(mp_cond_notify(NULL, 1), -EINVAL);
}

struct rlevel_args {
    mp_cond *cond;
    mp_rlock *rlock;
    mp_sem *got;
};

static int take_rlock_then_notify(void *arg)
{
    struct rlevel_args *a = arg;
    /* Possible only if wait() released every level. */
    if (mp_rlock_acquire(a->rlock, T_LONG) != 0)
        return 1;
    mp_sem_release(a->got);
    int n = mp_cond_notify(a->cond, 1);
    mp_rlock_release(a->rlock);
    return n == 1 ? 0 : 2;
}

static void test_cond_wait_releases_every_rlock_level_and_restores_them(void **state)
{
    (void)state;
    struct rlevel_args a;
    assert_int_equal(mp_rlock_new(&a.rlock), 0);
    assert_int_equal(mp_cond_new_rlock(&a.cond, a.rlock), 0);
    assert_int_equal(mp_sem_new(&a.got, 0), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(mp_rlock_acquire(a.rlock, T_LONG), 0);
    pid_t pid = tu_fork(take_rlock_then_notify, &a);
    assert_int_equal(mp_cond_wait(a.cond, T_LONG), 0);
    assert_int_equal(mp_sem_acquire(a.got, MP_NOWAIT), 0);
    assert_int_equal(mp_rlock_count(a.rlock), 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(mp_rlock_release(a.rlock), 0);
    TU_ASSERT_STATUS(mp_rlock_release(a.rlock), MP_ESTATE);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    mp_cond_free(a.cond);
    mp_rlock_free(a.rlock);
    mp_sem_free(a.got);
}

struct waitfor_args {
    mp_cond *cond;
    mp_value *state;
    mp_sem *started;
};

static bool state_is(void *arg)
{
    int64_t *want_and_value = arg;
    return want_and_value[0] == *(volatile int *)(intptr_t)want_and_value[1];
}

/* _TestCondition._test_waitfor_f */
static int waitfor_child(void *arg)
{
    struct waitfor_args *a = arg;
    int64_t q[2] = {4, (int64_t)(intptr_t)mp_value_ptr(a->state)};
    if (mp_cond_acquire(a->cond, T_LONG) != 0)
        return 1;
    mp_value_set_int(a->state, 0);
    mp_cond_notify(a->cond, 1);
    int rc = mp_cond_wait_for(a->cond, state_is, q, T_LONG);
    int64_t v;
    mp_value_get_int(a->state, &v);
    mp_cond_release(a->cond);
    return rc == 0 && v == 4 ? 0 : 2;
}

static void test_cond_wait_for_predicate_across_processes(void **state)
{
    (void)state;
    struct waitfor_args a;
    int init = -1;
    assert_int_equal(mp_cond_new(&a.cond, NULL), 0);
    assert_int_equal(mp_value_new(&a.state, 'i', &init, true), 0);
    pid_t pid = tu_fork(waitfor_child, &a);
    int64_t q[2] = {0, (int64_t)(intptr_t)mp_value_ptr(a.state)};
    assert_int_equal(mp_cond_acquire(a.cond, T_LONG), 0);
    assert_int_equal(mp_cond_wait_for(a.cond, state_is, q, T_LONG), 0);
    assert_int_equal(mp_cond_release(a.cond), 0);
    for (int i = 0; i < 4; i++) {
        tu_sleep(0.01);
        assert_int_equal(mp_cond_acquire(a.cond, T_LONG), 0);
        int64_t v;
        assert_int_equal(mp_value_get_int(a.state, &v), 0);
        assert_int_equal(mp_value_set_int(a.state, v + 1), 0);
        mp_cond_notify(a.cond, 1);
        assert_int_equal(mp_cond_release(a.cond), 0);
    }
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    mp_cond_free(a.cond);
    mp_value_free(a.state);
}

/* _TestCondition._test_waitfor_timeout_f */
static int waitfor_timeout_child(void *arg)
{
    struct waitfor_args *a = arg;
    int64_t q[2] = {4, (int64_t)(intptr_t)mp_value_ptr(a->state)};
    mp_sem_release(a->started);
    if (mp_cond_acquire(a->cond, T_LONG) != 0)
        return 1;
    double t0 = tu_now();
    int rc = mp_cond_wait_for(a->cond, state_is, q, 0.2);
    double dt = tu_now() - t0;
    mp_cond_release(a->cond);
    return rc == MP_ETIMEDOUT && dt >= 0.195 ? 0 : 2;
}

static void test_cond_wait_for_times_out_when_predicate_stays_false(void **state)
{
    (void)state;
    struct waitfor_args a;
    assert_int_equal(mp_cond_new(&a.cond, NULL), 0);
    assert_int_equal(mp_value_new(&a.state, 'i', NULL, true), 0);
    assert_int_equal(mp_sem_new(&a.started, 0), 0);
    pid_t pid = tu_fork(waitfor_timeout_child, &a);
    assert_int_equal(mp_sem_acquire(a.started, T_LONG), 0);
    for (int i = 0; i < 3; i++) { /* state never reaches 4 */
        tu_sleep(0.01);
        assert_int_equal(mp_cond_acquire(a.cond, T_LONG), 0);
        int64_t v;
        mp_value_get_int(a.state, &v);
        mp_value_set_int(a.state, v + 1);
        mp_cond_notify(a.cond, 1);
        assert_int_equal(mp_cond_release(a.cond), 0);
    }
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    mp_cond_free(a.cond);
    mp_value_free(a.state);
    mp_sem_free(a.started);
}

static void test_cond_dead_waiters_are_not_counted_as_woken(void **state)
{
    (void)state;
    struct cond_fixture f;
    cond_fixture_init(&f, T_LONG);
    start_sleepers(&f, 4, 0);
    /* Two of the four die in their wait. */
    kill_and_reap(f.pids[0]);
    kill_and_reap(f.pids[1]);
    f.pids[0] = f.pids[2];
    f.pids[1] = f.pids[3];
    f.npids = 2;
    /* notify(3) finds only two living waiters and says so; CPython's
     * notify would wait forever for the dead to confirm. */
    assert_int_equal(notify(f.w.cond, 3), 2);
    for (int i = 0; i < 2; i++)
        assert_int_equal(mp_sem_acquire(f.w.woken, T_LONG), 0);
    join_sleepers(&f);
    /* Still exact afterwards. */
    start_sleepers(&f, 2, 0);
    assert_int_equal(notify(f.w.cond, 1), 1);
    assert_int_equal(mp_sem_acquire(f.w.woken, T_LONG), 0);
    tu_sleep(DELTA);
    assert_int_equal(mp_sem_get_value(f.w.woken), 0);
    assert_int_equal(notify(f.w.cond, 1), 1);
    join_sleepers(&f);
    cond_fixture_free(&f);
}

struct lock_holder_death {
    mp_cond *cond;
    mp_lock *lock;
    mp_sem *ready;
    pid_t victim;
};

static int notify_then_die_holding_lock(void *arg)
{
    struct lock_holder_death *a = arg;
    if (mp_lock_acquire(a->lock, T_LONG) != 0)
        return 1;
    mp_cond_notify(a->cond, 1);
    mp_sem_release(a->ready);
    for (;;)
        pause(); /* killed holding the condition's lock */
}

static int kill_when_ready(void *arg)
{
    struct lock_holder_death *a = arg;
    if (mp_sem_acquire(a->ready, T_LONG) != 0)
        return 1;
    tu_sleep(0.05);
    return kill(a->victim, SIGKILL) == 0 ? 0 : 2;
}

static void test_cond_wait_reports_a_dead_lock_holder(void **state)
{
    (void)state;
    struct lock_holder_death a;
    assert_int_equal(mp_lock_new(&a.lock), 0);
    assert_int_equal(mp_cond_new(&a.cond, a.lock), 0);
    assert_int_equal(mp_sem_new(&a.ready, 0), 0);
    assert_int_equal(mp_cond_acquire(a.cond, T_LONG), 0);
    a.victim = tu_fork(notify_then_die_holding_lock, &a);
    pid_t killer = tu_fork(kill_when_ready, &a);
    /* Notified, but the lock to take back is held by a process that is
     * then killed: the wait ends with the lock ours, and says so. */
    TU_ASSERT_STATUS(mp_cond_wait(a.cond, T_LONG), MP_EOWNERDEAD);
    TU_ASSERT_STATUS(mp_lock_acquire(a.lock, MP_NOWAIT), MP_ETIMEDOUT); /* ours */
    assert_int_equal(mp_cond_release(a.cond), 0);
    assert_int_equal(tu_wait_child(killer, T_LONG), 0);
    assert_int_equal(tu_wait_child(a.victim, T_LONG), -SIGKILL);
    mp_cond_free(a.cond);
    mp_lock_free(a.lock);
    mp_sem_free(a.ready);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_event_like_python),
        TU_TEST(test_event_set_wakes_every_waiting_process_and_thread),
        TU_TEST(test_event_waiters_that_die_are_reclaimed),
        TU_TEST(test_cond_notify_wakes_one_at_a_time),
        TU_TEST(test_cond_notify_all_after_timeouts),
        TU_TEST(test_cond_notify_n_wakes_exactly_n),
        TU_TEST(test_cond_notify_wakes_the_oldest_waiter_first),
        TU_TEST(test_cond_wait_timeout_and_result),
        TU_TEST(test_cond_wait_returns_0_when_notified_by_a_process),
        TU_TEST(test_cond_needs_the_lock_held),
        TU_TEST(test_cond_wait_releases_every_rlock_level_and_restores_them),
        TU_TEST(test_cond_wait_for_predicate_across_processes),
        TU_TEST(test_cond_wait_for_times_out_when_predicate_stays_false),
        TU_TEST(test_cond_dead_waiters_are_not_counted_as_woken),
        TU_TEST(test_cond_wait_reports_a_dead_lock_holder),
    };
    tu_filter(argc, argv);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
