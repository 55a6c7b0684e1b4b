/*
 * The lock suites' cross-process behaviours under every start method: the
 * objects are handed to children made by fork, forkserver and spawn
 * (mp_process_pass_*), and each scenario runs once per method. Spawn
 * re-executes this binary.
 *
 * Which behaviour runs where (every one under fork, forkserver and spawn;
 * nothing here is fork-only but what is listed):
 *   test_start_passobj.c  Lock mutual exclusion (4 children); Lock and RLock
 *                         holder death (MP_EOWNERDEAD); Event wakes a child
 *                         and a Semaphore wakes back; an RLock held here is
 *                         held for the child; Value and Array with their
 *                         lock; Condition (own lock) notify; passing on.
 *   this file             bounded Semaphore counting (never more than its
 *                         value inside, exact release count); Event wakes
 *                         every waiting child; Condition notify_all over
 *                         several children; Condition over our Lock and
 *                         over our RLock (nested levels); Barrier cycles
 *                         with several children; a Barrier party that dies
 *                         breaks it (MP_EBROKEN).
 *   fork only             a Barrier with an action: its action is a
 *                         function pointer and its arg a pointer, which mean
 *                         nothing in a forkserver or spawn child; passing
 *                         one there is MP_EVALUE (asserted here).
 */
#include "start_testutil.h"

#include <mpipc/conn.h>
#include <mpipc/context.h>
#include <mpipc/obj.h>
#include <mpipc/process.h>
#include <mpipc/sync.h>

#include <stdint.h>
#include <string.h>
#include <time.h>

#define NCHILD 3

static void pause_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* ---- targets ---------------------------------------------------------------------- */

/* args (rounds): Semaphore 0 guards Array 1 = [inside, most]: inside the
 * semaphore count in, note the most seen, pause, count out. */
static int t_sem_count(const mp_obj *args)
{
    int rounds;
    mp_sem *sem;
    mp_array *a;
    if (mp_obj_parse(args, "(i)", &rounds) < 0 || mp_process_inherited_sem(&sem, 0) < 0 ||
        mp_process_inherited_array(&a, 1) < 0)
        return 10;
    mp_rlock *al = mp_array_get_lock(a);
    int64_t *v = mp_array_ptr(a);
    for (int k = 0; k < rounds; k++) {
        if (mp_sem_acquire(sem, ST_LONG) < 0 || mp_rlock_acquire(al, ST_LONG) < 0)
            return 11;
        if (++v[0] > v[1])
            v[1] = v[0];
        (void)mp_rlock_release(al);
        pause_ms(2);
        if (mp_rlock_acquire(al, ST_LONG) < 0)
            return 12;
        v[0]--;
        (void)mp_rlock_release(al);
        if (mp_sem_release(sem) < 0)
            return 13;
    }
    return 0;
}
MP_TARGET(t_sem_count);

/* Wait for Event 0, then release Semaphore 1. */
static int t_event_wait(const mp_obj *args)
{
    (void)args;
    mp_event *ev;
    mp_sem *done;
    if (mp_process_inherited_event(&ev, 0) < 0 || mp_process_inherited_sem(&done, 1) < 0)
        return 20;
    if (mp_event_wait(ev, ST_LONG) != 0)
        return 21;
    return mp_sem_release(done) < 0 ? 22 : 0;
}
MP_TARGET(t_event_wait);

/* Condition 0 (own lock): take it, release Semaphore 1 (ready) while
 * holding it, wait, then release Semaphore 2 (done). */
static int t_cond_wait(const mp_obj *args)
{
    (void)args;
    mp_cond *c;
    mp_sem *ready, *done;
    if (mp_process_inherited_cond(&c, 0) < 0 || mp_process_inherited_sem(&ready, 1) < 0 ||
        mp_process_inherited_sem(&done, 2) < 0)
        return 30;
    if (mp_cond_acquire(c, ST_LONG) < 0 || mp_sem_release(ready) < 0)
        return 31;
    if (mp_cond_wait(c, ST_LONG) != 0)
        return 32;
    if (mp_cond_release(c) < 0)
        return 33;
    return mp_sem_release(done) < 0 ? 34 : 0;
}
MP_TARGET(t_cond_wait);

/* args (rlock): Condition 0 is over the parent's Lock (or RLock) 1, which
 * the parent holds: taking that lock here times out, which the parent is
 * told by Event 2; the parent then waits on the Condition, which lets us
 * take it through the Condition, notify and release. */
static int t_cond_over(const mp_obj *args)
{
    int rlock;
    mp_cond *c;
    mp_event *told;
    if (mp_obj_parse(args, "(p)", &rlock) < 0 || mp_process_inherited_cond(&c, 0) < 0 ||
        mp_process_inherited_event(&told, 2) < 0)
        return 40;
    int held;
    if (rlock) {
        mp_rlock *l;
        if (mp_process_inherited_rlock(&l, 1) < 0)
            return 41;
        held = mp_rlock_acquire(l, 0.05);
    } else {
        mp_lock *l;
        if (mp_process_inherited_lock(&l, 1) < 0)
            return 41;
        held = mp_lock_acquire(l, 0.05);
    }
    if (held != MP_ETIMEDOUT)
        return 42; /* not the parent's lock */
    if (mp_event_set(told) < 0 || mp_cond_acquire(c, ST_LONG) < 0)
        return 43;
    ssize_t woken = mp_cond_notify(c, 1);
    if (mp_cond_release(c) < 0)
        return 44;
    return woken == 1 ? 0 : 45;
}
MP_TARGET(t_cond_over);

/* args (cycles): wait at Barrier 0 that many times; each wait must pass. */
static int t_barrier(const mp_obj *args)
{
    int cycles;
    mp_barrier *b;
    if (mp_obj_parse(args, "(i)", &cycles) < 0 || mp_process_inherited_barrier(&b, 0) < 0)
        return 50;
    if (mp_barrier_parties(b) != NCHILD + 1)
        return 51;
    for (int k = 0; k < cycles; k++) {
        int idx = mp_barrier_wait(b, ST_LONG);
        if (idx < 0 || idx > NCHILD)
            return 52;
    }
    return 0;
}
MP_TARGET(t_barrier);

/* Wait at Barrier 0 for good (the parent kills us meanwhile). */
static int t_barrier_stuck(const mp_obj *args)
{
    (void)args;
    mp_barrier *b;
    if (mp_process_inherited_barrier(&b, 0) < 0)
        return 60;
    (void)mp_barrier_wait(b, ST_LONG);
    return 61;
}
MP_TARGET(t_barrier_stuck);

/* The Barrier action of the fork-only case: count in Value arg. */
static int count_action(void *arg)
{
    int64_t *n = mp_value_ptr(arg);
    ++*n;
    return 0;
}

/* ---- scenarios -------------------------------------------------------------------- */

/* Python's test_semaphore across processes: a bounded Semaphore(2) lets
 * at most two of the children in at once, and is back at 2 after. */
static void sem_counts(const char *method)
{
    mp_sem *sem;
    mp_array *a;
    int64_t zero[2] = {0, 0};
    assert_int_equal(mp_sem_new_bounded(&sem, 2), 0);
    assert_int_equal(mp_array_new(&a, 'q', 2, zero, true), 0);
    mp_obj *args = mp_obj_build("(i)", 10);
    mp_process *p[NCHILD];
    for (int i = 0; i < NCHILD; i++) {
        assert_int_equal(mp_process_new_ctx(&p[i], st_ctx(method), "t_sem_count", args), 0);
        assert_int_equal(mp_process_pass_sem(p[i], sem), 0);
        assert_int_equal(mp_process_pass_array(p[i], a), 1);
        assert_int_equal(mp_process_start(p[i]), 0);
    }
    mp_obj_free(args);
    for (int i = 0; i < NCHILD; i++) {
        st_join_ok(p[i]);
        mp_process_free(p[i]);
    }
    int64_t inside = -1, most = -1;
    assert_int_equal(mp_array_get_int(a, 0, &inside), 0);
    assert_int_equal(mp_array_get_int(a, 1, &most), 0);
    assert_int_equal(inside, 0);
    assert_true(most >= 1 && most <= 2);
    assert_int_equal(mp_sem_get_value(sem), 2);
    TU_ASSERT_STATUS(mp_sem_release(sem), MP_EVALUE); /* bounded: one too many */
    mp_sem_free(sem);
    mp_array_free(a);
}

/* Python's test_event: set() wakes every child waiting, none before. */
static void event_wakes_all(const char *method)
{
    mp_event *ev;
    mp_sem *done;
    assert_int_equal(mp_event_new(&ev), 0);
    assert_int_equal(mp_sem_new(&done, 0), 0);
    mp_process *p[NCHILD];
    for (int i = 0; i < NCHILD; i++) {
        assert_int_equal(mp_process_new_ctx(&p[i], st_ctx(method), "t_event_wait", NULL), 0);
        assert_int_equal(mp_process_pass_event(p[i], ev), 0);
        assert_int_equal(mp_process_pass_sem(p[i], done), 1);
        assert_int_equal(mp_process_start(p[i]), 0);
    }
    TU_ASSERT_STATUS(mp_sem_acquire(done, 0.2), MP_ETIMEDOUT);
    assert_int_equal(mp_event_set(ev), 0);
    for (int i = 0; i < NCHILD; i++)
        assert_int_equal(mp_sem_acquire(done, ST_LONG), 0);
    for (int i = 0; i < NCHILD; i++) {
        st_join_ok(p[i]);
        mp_process_free(p[i]);
    }
    mp_event_free(ev);
    mp_sem_free(done);
}

/* Python's test_notify_all: every child waiting on the Condition wakes. */
static void cond_notify_all(const char *method)
{
    mp_cond *c;
    mp_sem *ready, *done;
    assert_int_equal(mp_cond_new(&c, NULL), 0);
    assert_int_equal(mp_sem_new(&ready, 0), 0);
    assert_int_equal(mp_sem_new(&done, 0), 0);
    mp_process *p[NCHILD];
    for (int i = 0; i < NCHILD; i++) {
        assert_int_equal(mp_process_new_ctx(&p[i], st_ctx(method), "t_cond_wait", NULL), 0);
        assert_int_equal(mp_process_pass_cond(p[i], c), 0);
        assert_int_equal(mp_process_pass_sem(p[i], ready), 1);
        assert_int_equal(mp_process_pass_sem(p[i], done), 2);
        assert_int_equal(mp_process_start(p[i]), 0);
    }
    /* A child says ready holding the lock: once we hold it, it waits. */
    for (int i = 0; i < NCHILD; i++)
        assert_int_equal(mp_sem_acquire(ready, ST_LONG), 0);
    assert_int_equal(mp_cond_acquire(c, ST_LONG), 0);
    TU_ASSERT_STATUS(mp_sem_acquire(done, 0.05), MP_ETIMEDOUT);
    assert_int_equal(mp_cond_notify_all(c), NCHILD);
    assert_int_equal(mp_cond_release(c), 0);
    for (int i = 0; i < NCHILD; i++)
        assert_int_equal(mp_sem_acquire(done, ST_LONG), 0);
    for (int i = 0; i < NCHILD; i++) {
        st_join_ok(p[i]);
        mp_process_free(p[i]);
    }
    mp_cond_free(c);
    mp_sem_free(ready);
    mp_sem_free(done);
}

/* Python's Condition(lock) across processes: the child's Condition is over
 * the very Lock (or RLock, held here at two levels) we hold; our wait
 * releases it for the child, whose notify wakes us holding it again. */
static void cond_over(const char *method, bool use_rlock)
{
    mp_lock *lock = NULL;
    mp_rlock *rlock = NULL;
    mp_cond *c;
    mp_event *told;
    if (use_rlock) {
        assert_int_equal(mp_rlock_new(&rlock), 0);
        assert_int_equal(mp_cond_new_rlock(&c, rlock), 0);
        assert_int_equal(mp_rlock_acquire(rlock, ST_LONG), 0);
        assert_int_equal(mp_rlock_acquire(rlock, ST_LONG), 0);
    } else {
        assert_int_equal(mp_lock_new(&lock), 0);
        assert_int_equal(mp_cond_new(&c, lock), 0);
        assert_int_equal(mp_lock_acquire(lock, ST_LONG), 0);
    }
    assert_int_equal(mp_event_new(&told), 0);
    mp_obj *args = mp_obj_build("(p)", use_rlock);
    mp_process *p;
    assert_int_equal(mp_process_new_ctx(&p, st_ctx(method), "t_cond_over", args), 0);
    mp_obj_free(args);
    assert_int_equal(mp_process_pass_cond(p, c), 0);
    if (use_rlock)
        assert_int_equal(mp_process_pass_rlock(p, rlock), 1);
    else
        assert_int_equal(mp_process_pass_lock(p, lock), 1);
    assert_int_equal(mp_process_pass_event(p, told), 2);
    assert_int_equal(mp_process_start(p), 0);
    assert_int_equal(mp_event_wait(told, ST_LONG), 0);
    assert_int_equal(mp_cond_wait(c, ST_LONG), 0);
    st_join_ok(p);
    /* Held again after the wait, at every level. */
    if (use_rlock) {
        assert_int_equal(mp_rlock_release(rlock), 0);
        assert_int_equal(mp_rlock_release(rlock), 0);
        TU_ASSERT_STATUS(mp_rlock_release(rlock), MP_ESTATE);
    } else {
        assert_int_equal(mp_lock_release(lock), 0);
    }
    mp_process_free(p);
    mp_event_free(told);
    mp_cond_free(c);
    mp_lock_free(lock);
    mp_rlock_free(rlock);
}

static void cond_over_lock(const char *method)
{
    cond_over(method, false);
}

static void cond_over_rlock(const char *method)
{
    cond_over(method, true);
}

/* Python's test_barrier across processes: NCHILD children and we pass
 * the Barrier together, cycle after cycle. */
static void barrier_cycles(const char *method)
{
    enum { CYCLES = 5 };
    mp_barrier *b;
    assert_int_equal(mp_barrier_new(&b, NCHILD + 1, NULL, NULL, ST_LONG), 0);
    mp_obj *args = mp_obj_build("(i)", CYCLES);
    mp_process *p[NCHILD];
    for (int i = 0; i < NCHILD; i++) {
        assert_int_equal(mp_process_new_ctx(&p[i], st_ctx(method), "t_barrier", args), 0);
        assert_int_equal(mp_process_pass_barrier(p[i], b), 0);
        assert_int_equal(mp_process_start(p[i]), 0);
    }
    mp_obj_free(args);
    for (int k = 0; k < CYCLES; k++) {
        int idx = mp_barrier_wait(b, ST_LONG);
        assert_true(idx >= 0 && idx <= NCHILD);
    }
    for (int i = 0; i < NCHILD; i++) {
        st_join_ok(p[i]);
        mp_process_free(p[i]);
    }
    assert_int_equal(mp_barrier_broken(b), 0);
    mp_barrier_free(b);
}

/* A party killed while it waits breaks the Barrier: our wait is
 * MP_EBROKEN (Python's BrokenBarrierError), not a hang. */
static void barrier_party_dies(const char *method)
{
    mp_barrier *b;
    assert_int_equal(mp_barrier_new(&b, 3, NULL, NULL, ST_LONG), 0);
    mp_process *p;
    assert_int_equal(mp_process_new_ctx(&p, st_ctx(method), "t_barrier_stuck", NULL), 0);
    assert_int_equal(mp_process_pass_barrier(p, b), 0);
    assert_int_equal(mp_process_start(p), 0);
    double until = tu_now() + ST_LONG;
    while (mp_barrier_n_waiting(b) < 1 && tu_now() < until)
        pause_ms(5);
    assert_int_equal(mp_barrier_n_waiting(b), 1);
    assert_int_equal(mp_process_kill(p), 0);
    assert_int_equal(mp_process_join(p, ST_LONG), 0);
    TU_ASSERT_STATUS(mp_barrier_wait(b, ST_LONG), MP_EBROKEN);
    assert_int_equal(mp_barrier_broken(b), 1);
    mp_process_free(p);
    mp_barrier_free(b);
}

/* A Barrier with an action: a fork child runs it (the pointers are the
 * same there); forkserver and spawn refuse it with MP_EVALUE and say why,
 * and nothing is passed. */
static void barrier_action(const char *method)
{
    mp_value *count;
    int64_t zero = 0;
    assert_int_equal(mp_value_new(&count, 'q', &zero, false), 0);
    mp_barrier *b;
    assert_int_equal(mp_barrier_new(&b, NCHILD + 1, count_action, count, ST_LONG), 0);
    mp_obj *args = mp_obj_build("(i)", 2);
    mp_process *p;
    assert_int_equal(mp_process_new_ctx(&p, st_ctx(method), "t_barrier", args), 0);
    mp_obj_free(args);
    if (strcmp(method, "fork") != 0) {
        TU_ASSERT_STATUS(mp_process_pass_barrier(p, b), MP_EVALUE);
        assert_non_null(strstr(mp_errmsg(MP_EVALUE), "action"));
        assert_non_null(strstr(mp_errmsg(MP_EVALUE), method));
        mp_process_free(p);
        mp_barrier_free(b);
        mp_value_free(count);
        return;
    }
    /* Three fork children, each with the Barrier: two cycles, two actions. */
    mp_process *q[NCHILD] = {p};
    args = mp_obj_build("(i)", 2);
    for (int i = 1; i < NCHILD; i++)
        assert_int_equal(mp_process_new_ctx(&q[i], st_ctx(method), "t_barrier", args), 0);
    mp_obj_free(args);
    for (int i = 0; i < NCHILD; i++) {
        assert_int_equal(mp_process_pass_barrier(q[i], b), 0);
        assert_int_equal(mp_process_start(q[i]), 0);
    }
    for (int k = 0; k < 2; k++)
        assert_true(mp_barrier_wait(b, ST_LONG) >= 0);
    for (int i = 0; i < NCHILD; i++) {
        st_join_ok(q[i]);
        mp_process_free(q[i]);
    }
    int64_t n = 0;
    assert_int_equal(mp_value_get_int(count, &n), 0);
    assert_int_equal(n, 2);
    mp_barrier_free(b);
    mp_value_free(count);
}

ST_EACH_METHOD(sem_counts, passed_bounded_semaphore_counts_across_children)
ST_EACH_METHOD(event_wakes_all, passed_event_set_wakes_every_child)
ST_EACH_METHOD(cond_notify_all, passed_condition_notify_all_wakes_every_child)
ST_EACH_METHOD(cond_over_lock, passed_condition_over_our_lock_shares_it)
ST_EACH_METHOD(cond_over_rlock, passed_condition_over_our_rlock_shares_its_levels)
ST_EACH_METHOD(barrier_cycles, passed_barrier_cycles_with_children)
ST_EACH_METHOD(barrier_party_dies, passed_barrier_party_death_breaks_it)
ST_EACH_METHOD(barrier_action, passed_barrier_with_action_only_to_fork)

int main(int argc, char **argv)
{
    mp_spawn_main(argc, argv); /* a spawned child runs its target here */
    tu_filter(argc, argv);
    if (mp_forkserver_start() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        ST_TESTS(passed_bounded_semaphore_counts_across_children),
        ST_TESTS(passed_event_set_wakes_every_child),
        ST_TESTS(passed_condition_notify_all_wakes_every_child),
        ST_TESTS(passed_condition_over_our_lock_shares_it),
        ST_TESTS(passed_condition_over_our_rlock_shares_its_levels),
        ST_TESTS(passed_barrier_cycles_with_children),
        ST_TESTS(passed_barrier_party_death_breaks_it),
        ST_TESTS(passed_barrier_with_action_only_to_fork),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
