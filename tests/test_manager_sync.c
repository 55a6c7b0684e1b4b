/*
 * manager_sync: the manager's Semaphore, BoundedSemaphore, Event, Condition
 * and Barrier from C across forked clients, with Python's semantics; and
 * what the server promises beyond Python: a dead holder's units and lock
 * come back (MP_EOWNERDEAD), a dead waiter eats no unit, notify or place.
 */
#include "mgr_testutil.h"

#include <mpipc/error.h>
#include <mpipc/manager.h>

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <unistd.h>

/* What the children share: the proxies made before the fork, a pipe. */
struct st_shared {
    mp_semproxy *sem;
    mp_eventproxy *ev;
    mp_condproxy *cond;
    mp_barrierproxy *bar;
    mp_lockproxy *lock;
    int fd;
};

static void st_pipe(struct st_shared *sh, int p[2])
{
    assert_int_equal(pipe(p), 0);
    sh->fd = p[1];
}

/* Fork child and wait until it has said it got there and its request is
 * parked in the server (n parked in all). */
static pid_t st_fork_parked(mp_manager *m, int (*child)(void *), struct st_shared *sh, int rfd,
                            int64_t n)
{
    pid_t pid = tu_fork(child, sh);
    assert_int_equal(mt_wait_byte(rfd, MT_LONG), 0);
    assert_true(mt_eventually_waiting(m, n));
    return pid;
}

static void st_kill(pid_t pid)
{
    kill(pid, SIGKILL);
    assert_int_equal(tu_wait_child(pid, MT_LONG), -SIGKILL);
}

/* ---- Semaphore --------------------------------------------------------------------- */

static void test_semaphore_counts_as_pythons(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    mp_semproxy *s, *b;
    TU_ASSERT_STATUS(mp_manager_semaphore(m, 2, &s), 0);
    TU_ASSERT_STATUS(mp_semproxy_acquire(s, MP_FOREVER), 0);
    TU_ASSERT_STATUS(mp_semproxy_acquire(s, MT_LONG), 0);
    assert_int_equal(mp_semproxy_get_value(s), 0);
    TU_ASSERT_STATUS(mp_semproxy_acquire(s, MP_NOWAIT), MP_ETIMEDOUT);
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_semproxy_acquire(s, 0.2), MP_ETIMEDOUT);
    double dt = tu_now() - t0;
    assert_true(dt >= 0.19 && dt < 5.0);
    TU_ASSERT_STATUS(mp_semproxy_release(s), 0);
    TU_ASSERT_STATUS(mp_semproxy_release(s), 0);
    TU_ASSERT_STATUS(mp_semproxy_release(s), 0); /* a Semaphore may go above */
    assert_int_equal(mp_semproxy_get_value(s), 3);
    TU_ASSERT_STATUS(mp_semproxy_acquire(s, NAN), MP_EVALUE);
    assert_int_equal(mp_semproxy_get_value(s), 3); /* bad input took nothing */
    /* BoundedSemaphore: ValueError above its value, and nothing changes */
    TU_ASSERT_STATUS(mp_manager_bounded_semaphore(m, 1, &b), 0);
    TU_ASSERT_STATUS(mp_semproxy_release(b), MP_EVALUE);
    assert_int_equal(mp_semproxy_get_value(b), 1);
    TU_ASSERT_STATUS(mp_semproxy_acquire(b, MP_NOWAIT), 0);
    TU_ASSERT_STATUS(mp_semproxy_release(b), 0);
    TU_ASSERT_STATUS(mp_semproxy_release(b), MP_EVALUE);
    assert_int_equal(mp_semproxy_acquire(NULL, 0), -EINVAL);
    mp_semproxy_free(s);
    mp_semproxy_free(b);
    mp_manager_free(m);
}

static int child_sem_acquires_and_stays(void *arg)
{
    struct st_shared *sh = arg;
    if (mp_semproxy_acquire(sh->sem, MT_LONG) != 0)
        return 10;
    mt_say(sh->fd);
    tu_sleep(TU_CHILD_LIFETIME); /* until killed */
    return 11;
}

static int child_sem_waits(void *arg)
{
    struct st_shared *sh = arg;
    mt_say(sh->fd);
    int rc = mp_semproxy_acquire(sh->sem, MT_LONG);
    tu_sleep(rc == 0 ? TU_CHILD_LIFETIME : 0); /* killed while waiting */
    return 12;
}

static int child_sem_waits_for_dead_holder(void *arg)
{
    struct st_shared *sh = arg;
    mt_say(sh->fd);
    int rc = mp_semproxy_acquire(sh->sem, MT_LONG);
    return rc == MP_EOWNERDEAD ? 0 : rc == 0 ? 20 : 21;
}

static void test_semaphore_units_of_a_dead_holder_come_back_with_eownerdead(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    struct st_shared sh = {0};
    int p[2];
    st_pipe(&sh, p);
    TU_ASSERT_STATUS(mp_manager_semaphore(m, 1, &sh.sem), 0);
    pid_t holder = tu_fork(child_sem_acquires_and_stays, &sh);
    assert_int_equal(mt_wait_byte(p[0], MT_LONG), 0);
    pid_t waiter = st_fork_parked(m, child_sem_waits_for_dead_holder, &sh, p[0], 1);
    st_kill(holder);
    assert_int_equal(tu_wait_child(waiter, MT_LONG + 5), 0);
    /* the waiter got the unit and exited: its unit came back too, told once */
    TU_ASSERT_STATUS(mp_semproxy_acquire(sh.sem, MT_LONG), MP_EOWNERDEAD);
    TU_ASSERT_STATUS(mp_semproxy_release(sh.sem), 0);
    TU_ASSERT_STATUS(mp_semproxy_acquire(sh.sem, MT_LONG), 0);
    close(p[0]);
    close(p[1]);
    mp_semproxy_free(sh.sem);
    mp_manager_free(m);
}

static void test_semaphore_dead_waiter_eats_no_unit(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    struct st_shared sh = {0};
    int p[2];
    st_pipe(&sh, p);
    TU_ASSERT_STATUS(mp_manager_semaphore(m, 0, &sh.sem), 0);
    pid_t waiter = st_fork_parked(m, child_sem_waits, &sh, p[0], 1);
    st_kill(waiter);
    TU_ASSERT_STATUS(mp_semproxy_release(sh.sem), 0);
    TU_ASSERT_STATUS(mp_semproxy_acquire(sh.sem, MT_LONG), 0);
    close(p[0]);
    close(p[1]);
    mp_semproxy_free(sh.sem);
    mp_manager_free(m);
}

/* ---- Event ----------------------------------------------------------------------- */

static int child_event_waits(void *arg)
{
    struct st_shared *sh = arg;
    mt_say(sh->fd);
    int rc = mp_eventproxy_wait(sh->ev, MT_LONG);
    return rc == 0 && mp_eventproxy_is_set(sh->ev) == 1 ? 0 : 30;
}

static void test_event_wakes_every_waiter_in_other_processes(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    struct st_shared sh = {0};
    int p[2];
    st_pipe(&sh, p);
    TU_ASSERT_STATUS(mp_manager_event(m, &sh.ev), 0);
    assert_int_equal(mp_eventproxy_is_set(sh.ev), 0);
    TU_ASSERT_STATUS(mp_eventproxy_wait(sh.ev, MP_NOWAIT), MP_ETIMEDOUT);
    TU_ASSERT_STATUS(mp_eventproxy_wait(sh.ev, 0.1), MP_ETIMEDOUT);
    pid_t a = st_fork_parked(m, child_event_waits, &sh, p[0], 1);
    pid_t b = st_fork_parked(m, child_event_waits, &sh, p[0], 2);
    TU_ASSERT_STATUS(mp_eventproxy_set(sh.ev), 0);
    assert_int_equal(tu_wait_child(a, MT_LONG), 0);
    assert_int_equal(tu_wait_child(b, MT_LONG), 0);
    TU_ASSERT_STATUS(mp_eventproxy_wait(sh.ev, MP_NOWAIT), 0);
    TU_ASSERT_STATUS(mp_eventproxy_clear(sh.ev), 0);
    assert_int_equal(mp_eventproxy_is_set(sh.ev), 0);
    close(p[0]);
    close(p[1]);
    mp_eventproxy_free(sh.ev);
    mp_manager_free(m);
}

/* ---- Condition ------------------------------------------------------------------- */

static int child_cond_waits(void *arg)
{
    struct st_shared *sh = arg;
    if (mp_condproxy_acquire(sh->cond, MT_LONG) != 0)
        return 40;
    mt_say(sh->fd);
    int rc = mp_condproxy_wait(sh->cond, MT_LONG);
    if (rc != 0)
        return 41;
    return mp_condproxy_release(sh->cond) == 0 ? 0 : 42; /* it held the lock again */
}

/* Two children wait; notify(1) wakes the first, notify_all the other.
 * over_lock: the condition uses a manager Lock. */
static void cond_notify_one(bool over_lock)
{
    mp_manager *m = mt_start();
    struct st_shared sh = {0};
    int p[2];
    st_pipe(&sh, p);
    if (over_lock)
        TU_ASSERT_STATUS(mp_manager_lock(m, &sh.lock), 0);
    TU_ASSERT_STATUS(mp_manager_condition(m, sh.lock, &sh.cond), 0);
    pid_t a = st_fork_parked(m, child_cond_waits, &sh, p[0], 1);
    pid_t b = st_fork_parked(m, child_cond_waits, &sh, p[0], 2);
    TU_ASSERT_STATUS(mp_condproxy_acquire(sh.cond, MT_LONG), 0);
    assert_int_equal(mp_condproxy_notify(sh.cond, 1), 1);
    TU_ASSERT_STATUS(mp_condproxy_release(sh.cond), 0);
    assert_int_equal(tu_wait_child(a, MT_LONG), 0); /* the first to wait */
    assert_true(mt_eventually_waiting(m, 1));       /* b still waits */
    TU_ASSERT_STATUS(mp_condproxy_acquire(sh.cond, MT_LONG), 0);
    assert_int_equal(mp_condproxy_notify_all(sh.cond), 1);
    TU_ASSERT_STATUS(mp_condproxy_release(sh.cond), 0);
    assert_int_equal(tu_wait_child(b, MT_LONG), 0);
    close(p[0]);
    close(p[1]);
    mp_condproxy_free(sh.cond);
    mp_lockproxy_free(sh.lock);
    mp_manager_free(m);
}

static void test_condition_notify_wakes_waiters_in_order(void **state)
{
    (void)state;
    cond_notify_one(false);
}

static bool st_true_on_third(void *arg)
{
    return ++*(int *)arg >= 3;
}

static bool st_never(void *arg)
{
    ++*(int *)arg;
    return false;
}

static void test_condition_wait_needs_the_lock_and_times_out_holding_it(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    mp_condproxy *c;
    TU_ASSERT_STATUS(mp_manager_condition(m, NULL, &c), 0);
    /* Python's RuntimeError: cannot wait / notify on an un-acquired lock */
    TU_ASSERT_STATUS(mp_condproxy_wait(c, 0.1), MP_EVALUE);
    assert_int_equal(mp_condproxy_notify(c, 1), MP_EVALUE);
    TU_ASSERT_STATUS(mp_condproxy_release(c), MP_EVALUE);
    TU_ASSERT_STATUS(mp_condproxy_acquire(c, MT_LONG), 0);
    TU_ASSERT_STATUS(mp_condproxy_acquire(c, MT_LONG), 0); /* an RLock */
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_condproxy_wait(c, 0.2), MP_ETIMEDOUT);
    assert_true(tu_now() - t0 >= 0.19);
    TU_ASSERT_STATUS(mp_condproxy_wait(c, MP_NOWAIT), MP_ETIMEDOUT);
    assert_int_equal(mp_condproxy_notify(c, 5), 0); /* nobody waits */
    /* wait_for: the predicate first, then waits until it holds or time is up */
    int calls = 2;
    assert_int_equal(mp_condproxy_wait_for(c, st_true_on_third, &calls, MT_LONG), 1);
    assert_int_equal(calls, 3);
    calls = 0;
    t0 = tu_now();
    assert_int_equal(mp_condproxy_wait_for(c, st_never, &calls, 0.2), 0);
    assert_true(calls >= 2 && tu_now() - t0 >= 0.19);
    /* both levels of the RLock came back */
    TU_ASSERT_STATUS(mp_condproxy_release(c), 0);
    TU_ASSERT_STATUS(mp_condproxy_release(c), 0);
    TU_ASSERT_STATUS(mp_condproxy_release(c), MP_EVALUE);
    mp_condproxy_free(c);
    mp_manager_free(m);
}

static int child_cond_waits_then_dies(void *arg)
{
    struct st_shared *sh = arg;
    if (mp_condproxy_acquire(sh->cond, MT_LONG) != 0)
        return 50;
    mt_say(sh->fd);
    (void)mp_condproxy_wait(sh->cond, MT_LONG);
    tu_sleep(TU_CHILD_LIFETIME);
    return 51;
}

static int child_cond_holds_and_stays(void *arg)
{
    struct st_shared *sh = arg;
    if (mp_condproxy_acquire(sh->cond, MT_LONG) != 0)
        return 52;
    mt_say(sh->fd);
    tu_sleep(TU_CHILD_LIFETIME);
    return 53;
}

static void test_condition_dead_waiter_eats_no_notify_and_dead_holder_frees_lock(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    struct st_shared sh = {0};
    int p[2];
    st_pipe(&sh, p);
    TU_ASSERT_STATUS(mp_manager_condition(m, NULL, &sh.cond), 0);
    pid_t dead = st_fork_parked(m, child_cond_waits_then_dies, &sh, p[0], 1);
    pid_t live = st_fork_parked(m, child_cond_waits, &sh, p[0], 2);
    st_kill(dead);
    TU_ASSERT_STATUS(mp_condproxy_acquire(sh.cond, MT_LONG), 0);
    assert_int_equal(mp_condproxy_notify(sh.cond, 1), 1); /* the live one */
    TU_ASSERT_STATUS(mp_condproxy_release(sh.cond), 0);
    assert_int_equal(tu_wait_child(live, MT_LONG), 0);
    /* a holder killed: the lock comes back, the next acquirer is told */
    pid_t holder = tu_fork(child_cond_holds_and_stays, &sh);
    assert_int_equal(mt_wait_byte(p[0], MT_LONG), 0);
    st_kill(holder);
    TU_ASSERT_STATUS(mp_condproxy_acquire(sh.cond, MT_LONG), MP_EOWNERDEAD);
    TU_ASSERT_STATUS(mp_condproxy_release(sh.cond), 0);
    close(p[0]);
    close(p[1]);
    mp_condproxy_free(sh.cond);
    mp_manager_free(m);
}

static void test_condition_over_a_manager_lock_shares_that_lock(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    mp_lockproxy *lk;
    mp_condproxy *c;
    TU_ASSERT_STATUS(mp_manager_lock(m, &lk), 0);
    TU_ASSERT_STATUS(mp_manager_condition(m, lk, &c), 0);
    TU_ASSERT_STATUS(mp_lockproxy_acquire(lk, MT_LONG), 0);
    TU_ASSERT_STATUS(mp_condproxy_acquire(c, MP_NOWAIT), MP_ETIMEDOUT); /* the same lock */
    TU_ASSERT_STATUS(mp_condproxy_wait(c, 0.1), MP_ETIMEDOUT);
    TU_ASSERT_STATUS(mp_condproxy_release(c), 0);
    TU_ASSERT_STATUS(mp_lockproxy_acquire(lk, MP_NOWAIT), 0);
    TU_ASSERT_STATUS(mp_lockproxy_release(lk), 0);
    mp_condproxy_free(c);
    mp_lockproxy_free(lk);
    mp_manager_free(m);
    cond_notify_one(true); /* and across processes */
}

/* ---- Barrier ----------------------------------------------------------------------- */

static int child_barrier_waits(void *arg)
{
    struct st_shared *sh = arg;
    mt_say(sh->fd);
    int rc = mp_barrierproxy_wait(sh->bar, MT_LONG);
    if (rc < 0)
        return rc == MP_EBROKEN ? 60 : 61;
    return 100 + rc; /* its index */
}

static void test_barrier_trips_with_distinct_indexes_across_processes(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    struct st_shared sh = {0};
    int p[2];
    st_pipe(&sh, p);
    TU_ASSERT_STATUS(mp_manager_barrier(m, 3, MP_FOREVER, &sh.bar), 0);
    assert_int_equal(mp_barrierproxy_parties(sh.bar), 3);
    assert_int_equal(mp_barrierproxy_broken(sh.bar), 0);
    pid_t a = st_fork_parked(m, child_barrier_waits, &sh, p[0], 1);
    pid_t b = st_fork_parked(m, child_barrier_waits, &sh, p[0], 2);
    assert_int_equal(mp_barrierproxy_n_waiting(sh.bar), 2);
    assert_int_equal(mp_barrierproxy_wait(sh.bar, MT_LONG), 2); /* the last */
    int ia = tu_wait_child(a, MT_LONG), ib = tu_wait_child(b, MT_LONG);
    assert_true((ia == 100 && ib == 101) || (ia == 101 && ib == 100));
    assert_int_equal(mp_barrierproxy_n_waiting(sh.bar), 0);
    mp_barrierproxy_free(sh.bar);
    TU_ASSERT_STATUS(mp_manager_barrier(m, 0, MP_FOREVER, &sh.bar), MP_EVALUE);
    assert_null(sh.bar);
    close(p[0]);
    close(p[1]);
    mp_manager_free(m);
}

static void test_barrier_timeout_abort_and_reset_as_pythons(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    struct st_shared sh = {0};
    int p[2];
    st_pipe(&sh, p);
    TU_ASSERT_STATUS(mp_manager_barrier(m, 3, 0.2, &sh.bar), 0);
    /* a child waiting when the parent's wait times out: both broken */
    pid_t a = st_fork_parked(m, child_barrier_waits, &sh, p[0], 1);
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_barrierproxy_wait(sh.bar, MP_FOREVER), MP_EBROKEN); /* its 0.2 s */
    assert_true(tu_now() - t0 >= 0.15);
    assert_int_equal(tu_wait_child(a, MT_LONG), 60);
    assert_int_equal(mp_barrierproxy_broken(sh.bar), 1);
    TU_ASSERT_STATUS(mp_barrierproxy_wait(sh.bar, MP_NOWAIT), MP_EBROKEN);
    TU_ASSERT_STATUS(mp_barrierproxy_reset(sh.bar), 0);
    assert_int_equal(mp_barrierproxy_broken(sh.bar), 0);
    /* abort wakes a waiter with BrokenBarrierError */
    a = st_fork_parked(m, child_barrier_waits, &sh, p[0], 1);
    TU_ASSERT_STATUS(mp_barrierproxy_abort(sh.bar), 0);
    assert_int_equal(tu_wait_child(a, MT_LONG), 60);
    assert_int_equal(mp_barrierproxy_broken(sh.bar), 1);
    mp_barrierproxy_free(sh.bar);
    close(p[0]);
    close(p[1]);
    mp_manager_free(m);
}

static void test_barrier_dead_waiter_holds_no_place(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    struct st_shared sh = {0};
    int p[2];
    st_pipe(&sh, p);
    TU_ASSERT_STATUS(mp_manager_barrier(m, 2, MP_FOREVER, &sh.bar), 0);
    pid_t dead = st_fork_parked(m, child_barrier_waits, &sh, p[0], 1);
    st_kill(dead);
    assert_true(mt_eventually_waiting(m, 0));
    assert_int_equal(mp_barrierproxy_n_waiting(sh.bar), 0);
    /* the dead one does not trip it with us: a live one does */
    pid_t live = st_fork_parked(m, child_barrier_waits, &sh, p[0], 1);
    assert_int_equal(mp_barrierproxy_wait(sh.bar, MT_LONG), 1);
    assert_int_equal(tu_wait_child(live, MT_LONG), 100);
    mp_barrierproxy_free(sh.bar);
    close(p[0]);
    close(p[1]);
    mp_manager_free(m);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_semaphore_counts_as_pythons),
        TU_TEST(test_semaphore_units_of_a_dead_holder_come_back_with_eownerdead),
        TU_TEST(test_semaphore_dead_waiter_eats_no_unit),
        TU_TEST(test_event_wakes_every_waiter_in_other_processes),
        TU_TEST(test_condition_notify_wakes_waiters_in_order),
        TU_TEST(test_condition_wait_needs_the_lock_and_times_out_holding_it),
        TU_TEST(test_condition_dead_waiter_eats_no_notify_and_dead_holder_frees_lock),
        TU_TEST(test_condition_over_a_manager_lock_shares_that_lock),
        TU_TEST(test_barrier_trips_with_distinct_indexes_across_processes),
        TU_TEST(test_barrier_timeout_abort_and_reset_as_pythons),
        TU_TEST(test_barrier_dead_waiter_holds_no_place),
    };
    return cmocka_run_group_tests_name("manager_sync", tests, NULL, NULL);
}
