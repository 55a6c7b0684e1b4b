/*
 * sync_barrier: Barrier for forked processes (src/sync/sync_barrier.c;
 * _TestBarrier in Lib/test/_test_multiprocessing.py), and what CPython
 * lacks: a party that dies breaks the barrier instead of wedging the others
 * (gh-88304). Its siblings are test_sync_lock, test_sync_event and
 * test_sync_value.
 *
 * Children are real processes (tu_fork); they report through their exit
 * status and shared memory, and the parent asserts. A test name filter may
 * be given as the first argument (cmocka glob): test_sync_barrier '*dies*'.
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

/* ---- Barrier ---------------------------------------------------------------------- */

#define NPARTIES 5

struct barrier_args {
    mp_barrier *b;
    mp_barrier *b2;
    struct shared *sh;
    int passes;
    mp_lock *lock;
    mp_conn *conn;
};

/* _TestBarrier.multipass: every party appends to results[0], waits, appends
 * to results[1], waits; each count is checked at the right moments. */
static int multipass(void *arg)
{
    struct barrier_args *a = arg;
    for (int i = 0; i < a->passes; i++) {
        atomic_fetch_add(&a->sh->n[0], 1);
        if (atomic_load(&a->sh->n[1]) != i * NPARTIES)
            return 1;
        if (mp_barrier_wait(a->b, MP_FOREVER) < 0)
            return 2;
        atomic_fetch_add(&a->sh->n[1], 1);
        if (atomic_load(&a->sh->n[0]) != (i + 1) * NPARTIES)
            return 3;
        if (mp_barrier_wait(a->b, MP_FOREVER) < 0)
            return 4;
    }
    if (mp_barrier_n_waiting(a->b) != 0)
        return 5;
    return mp_barrier_broken(a->b) == 0 ? 0 : 6;
}

/* Run fn in NPARTIES-1 children and in this process, then join. */
static void run_parties(int (*fn)(void *), void *arg)
{
    pid_t pids[NPARTIES - 1];
    for (int i = 0; i < NPARTIES - 1; i++)
        pids[i] = tu_fork(fn, arg);
    int mine = fn(arg);
    join_all(pids, NPARTIES - 1);
    assert_int_equal(mine, 0);
}

static void test_barrier_passes_processes_in_lockstep(void **state)
{
    (void)state;
    /* _TestBarrier.test_barrier and test_barrier_10 */
    struct barrier_args a = {.passes = 10};
    a.sh = shared_new();
    assert_int_equal(mp_barrier_new(&a.b, NPARTIES, NULL, NULL, 30.0), 0);
    assert_int_equal(mp_barrier_parties(a.b), NPARTIES);
    run_parties(multipass, &a);
    assert_int_equal(atomic_load(&a.sh->n[0]), 10 * NPARTIES);
    assert_int_equal(atomic_load(&a.sh->n[1]), 10 * NPARTIES);
    mp_barrier_free(a.b);
    mp_shm_free(a.sh);
}

static int record_index(void *arg)
{
    struct barrier_args *a = arg;
    int idx = mp_barrier_wait(a->b, MP_FOREVER);
    if (idx < 0 || idx >= NPARTIES)
        return 1;
    atomic_fetch_add(&a->sh->n[idx], 1);
    return 0;
}

static void test_barrier_wait_returns_each_index_once(void **state)
{
    (void)state;
    /* _TestBarrier.test_wait_return: exactly one party gets 0 - and here
     * each index 0..parties-1 comes out exactly once. */
    struct barrier_args a = {0};
    a.sh = shared_new();
    assert_int_equal(mp_barrier_new(&a.b, NPARTIES, NULL, NULL, 30.0), 0);
    run_parties(record_index, &a);
    for (int i = 0; i < NPARTIES; i++)
        assert_int_equal(atomic_load(&a.sh->n[i]), 1);
    mp_barrier_free(a.b);
    mp_shm_free(a.sh);
}

static int count_action(void *arg)
{
    struct shared *sh = arg;
    atomic_fetch_add(&sh->n[0], 1);
    sh->pids[atomic_fetch_add(&sh->n[1], 1) % 16] = getpid();
    return 0;
}

static int action_party(void *arg)
{
    struct barrier_args *a = arg;
    for (int i = 0; i < 3; i++) {
        if (mp_barrier_wait(a->b, MP_FOREVER) < 0)
            return 1;
        /* Every party leaves after the action of this cycle ran once. */
        if (atomic_load(&a->sh->n[0]) != i + 1)
            return 2;
        if (mp_barrier_wait(a->b2, MP_FOREVER) < 0)
            return 3;
    }
    return 0;
}

static void test_barrier_action_runs_once_per_cycle_in_one_party(void **state)
{
    (void)state;
    /* _TestBarrier.test_action, over three cycles. */
    struct barrier_args a = {0};
    a.sh = shared_new();
    assert_int_equal(mp_barrier_new(&a.b, NPARTIES, count_action, a.sh, 30.0), 0);
    assert_int_equal(mp_barrier_new(&a.b2, NPARTIES, NULL, NULL, 30.0), 0);
    pid_t pids[NPARTIES - 1];
    for (int i = 0; i < NPARTIES - 1; i++)
        pids[i] = tu_fork(action_party, &a);
    assert_int_equal(action_party(&a), 0);
    join_all(pids, NPARTIES - 1);
    assert_int_equal(atomic_load(&a.sh->n[0]), 3);
    for (int c = 0; c < 3; c++) {
        bool is_party = a.sh->pids[c] == getpid();
        for (int i = 0; i < NPARTIES - 1; i++)
            is_party |= a.sh->pids[c] == pids[i];
        assert_true(is_party);
    }
    mp_barrier_free(a.b);
    mp_barrier_free(a.b2);
    mp_shm_free(a.sh);
}

static int failing_action(void *arg)
{
    (void)arg;
    return -1;
}

static int expect_broken(void *arg)
{
    struct barrier_args *a = arg;
    return mp_barrier_wait(a->b, MP_FOREVER) == MP_EBROKEN ? 0 : 1;
}

static void test_barrier_action_failure_breaks_it_for_all(void **state)
{
    (void)state;
    struct barrier_args a = {0};
    assert_int_equal(mp_barrier_new(&a.b, NPARTIES, failing_action, NULL, 30.0), 0);
    run_parties(expect_broken, &a);
    assert_int_equal(mp_barrier_broken(a.b), 1);
    /* Broken until reset; then usable again. */
    TU_ASSERT_STATUS(mp_barrier_wait(a.b, 1.0), MP_EBROKEN);
    assert_int_equal(mp_barrier_reset(a.b), 0);
    assert_int_equal(mp_barrier_broken(a.b), 0);
    mp_barrier_free(a.b);
}

/* _TestBarrier._test_abort_f */
static int abort_party(void *arg)
{
    struct barrier_args *a = arg;
    int i = mp_barrier_wait(a->b, MP_FOREVER);
    if (i < 0)
        return 1;
    if (i == NPARTIES / 2) {
        mp_barrier_abort(a->b); /* "raise RuntimeError" */
        return 0;
    }
    int rc = mp_barrier_wait(a->b, MP_FOREVER);
    if (rc == MP_EBROKEN)
        atomic_fetch_add(&a->sh->n[1], 1);
    else if (rc >= 0)
        atomic_fetch_add(&a->sh->n[0], 1);
    return 0;
}

static void test_barrier_abort_breaks_it(void **state)
{
    (void)state;
    struct barrier_args a = {0};
    a.sh = shared_new();
    assert_int_equal(mp_barrier_new(&a.b, NPARTIES, NULL, NULL, 30.0), 0);
    run_parties(abort_party, &a);
    assert_int_equal(atomic_load(&a.sh->n[0]), 0);
    assert_int_equal(atomic_load(&a.sh->n[1]), NPARTIES - 1);
    assert_int_equal(mp_barrier_broken(a.b), 1);
    mp_barrier_free(a.b);
    mp_shm_free(a.sh);
}

/* _TestBarrier._test_reset_f */
static int reset_party(void *arg)
{
    struct barrier_args *a = arg;
    int i = mp_barrier_wait(a->b, MP_FOREVER);
    if (i < 0)
        return 1;
    if (i == NPARTIES / 2) {
        double end = tu_now() + T_LONG;
        while (mp_barrier_n_waiting(a->b) < NPARTIES - 1 && tu_now() < end)
            tu_sleep(0.001);
        mp_barrier_reset(a->b);
    } else {
        int rc = mp_barrier_wait(a->b, MP_FOREVER);
        if (rc == MP_EBROKEN)
            atomic_fetch_add(&a->sh->n[1], 1);
        else if (rc >= 0)
            atomic_fetch_add(&a->sh->n[0], 1);
    }
    if (mp_barrier_wait(a->b, MP_FOREVER) < 0)
        return 2;
    atomic_fetch_add(&a->sh->n[2], 1);
    return 0;
}

static void test_barrier_reset_frees_the_waiters(void **state)
{
    (void)state;
    struct barrier_args a = {0};
    a.sh = shared_new();
    assert_int_equal(mp_barrier_new(&a.b, NPARTIES, NULL, NULL, 30.0), 0);
    run_parties(reset_party, &a);
    assert_int_equal(atomic_load(&a.sh->n[0]), 0);
    assert_int_equal(atomic_load(&a.sh->n[1]), NPARTIES - 1);
    assert_int_equal(atomic_load(&a.sh->n[2]), NPARTIES);
    mp_barrier_free(a.b);
    mp_shm_free(a.sh);
}

/* _TestBarrier._test_abort_and_reset_f */
static int abort_and_reset_party(void *arg)
{
    struct barrier_args *a = arg;
    int i = mp_barrier_wait(a->b, MP_FOREVER);
    if (i < 0)
        return 1;
    if (i == NPARTIES / 2) {
        mp_barrier_abort(a->b);
    } else {
        int rc = mp_barrier_wait(a->b, MP_FOREVER);
        if (rc == MP_EBROKEN)
            atomic_fetch_add(&a->sh->n[1], 1);
        else if (rc >= 0)
            atomic_fetch_add(&a->sh->n[0], 1);
    }
    if (mp_barrier_wait(a->b2, MP_FOREVER) == NPARTIES / 2)
        mp_barrier_reset(a->b);
    if (mp_barrier_wait(a->b2, MP_FOREVER) < 0)
        return 2;
    if (mp_barrier_wait(a->b, MP_FOREVER) < 0)
        return 3;
    atomic_fetch_add(&a->sh->n[2], 1);
    return 0;
}

static void test_barrier_can_be_reset_after_abort(void **state)
{
    (void)state;
    struct barrier_args a = {0};
    a.sh = shared_new();
    assert_int_equal(mp_barrier_new(&a.b, NPARTIES, NULL, NULL, 30.0), 0);
    assert_int_equal(mp_barrier_new(&a.b2, NPARTIES, NULL, NULL, 30.0), 0);
    run_parties(abort_and_reset_party, &a);
    assert_int_equal(atomic_load(&a.sh->n[0]), 0);
    assert_int_equal(atomic_load(&a.sh->n[1]), NPARTIES - 1);
    assert_int_equal(atomic_load(&a.sh->n[2]), NPARTIES);
    mp_barrier_free(a.b);
    mp_barrier_free(a.b2);
    mp_shm_free(a.sh);
}

/* _TestBarrier._test_timeout_f (timeout given) and _test_default_timeout_f
 * (the barrier's own): one party is late, everyone gets MP_EBROKEN. */
static int late_party(void *arg)
{
    struct barrier_args *a = arg;
    int i = mp_barrier_wait(a->b, 30.0);
    if (i < 0)
        return 1;
    if (i == NPARTIES / 2)
        tu_sleep(0.6);
    int rc = a->passes ? mp_barrier_wait(a->b, MP_FOREVER) : mp_barrier_wait(a->b, 0.3);
    if (rc == MP_EBROKEN)
        atomic_fetch_add(&a->sh->n[0], 1);
    return 0;
}

static void test_barrier_timeout_breaks_it_for_everyone(void **state)
{
    (void)state;
    for (int use_default = 0; use_default <= 1; use_default++) {
        struct barrier_args a = {.passes = use_default};
        a.sh = shared_new();
        assert_int_equal(mp_barrier_new(&a.b, NPARTIES, NULL, NULL, use_default ? 0.3 : 30.0), 0);
        run_parties(late_party, &a);
        assert_int_equal(atomic_load(&a.sh->n[0]), NPARTIES);
        mp_barrier_free(a.b);
        mp_shm_free(a.sh);
    }
}

static void test_barrier_single_party_and_argument_errors(void **state)
{
    (void)state;
    mp_barrier *b;
    assert_int_equal(mp_barrier_new(&b, 1, NULL, NULL, MP_FOREVER), 0);
    assert_int_equal(mp_barrier_wait(b, MP_FOREVER), 0);
    assert_int_equal(mp_barrier_wait(b, MP_FOREVER), 0);
    assert_int_equal(mp_barrier_n_waiting(b), 0);
    mp_barrier_free(b);
    /* Python's ValueError("parties must be > 0"). */
    TU_ASSERT_STATUS(mp_barrier_new(&b, 0, NULL, NULL, MP_FOREVER), MP_EVALUE);
    assert_null(b);
    TU_ASSERT_STATUS(mp_barrier_new(NULL, 1, NULL, NULL, MP_FOREVER), -EINVAL);
    TU_ASSERT_STATUS(mp_barrier_wait(NULL, MP_FOREVER), -EINVAL);
    TU_ASSERT_STATUS(mp_barrier_broken(NULL), -EINVAL);
    mp_barrier_free(NULL);
}

/* _TestBarrier._test_thousand_f: wait, then send the cycle number on a
 * shared pipe end under a lock. */
static int thousand_party(void *arg)
{
    struct barrier_args *a = arg;
    for (int i = 0; i < a->passes; i++) {
        if (mp_barrier_wait(a->b, MP_FOREVER) < 0)
            return 1;
        if (mp_lock_acquire(a->lock, T_LONG) != 0)
            return 2;
        int rc = mp_conn_send_bytes(a->conn, &i, sizeof i);
        mp_lock_release(a->lock);
        if (rc != 0)
            return 3;
    }
    return 0;
}

static void test_barrier_thousand_cycles_with_five_processes(void **state)
{
    (void)state;
    enum { PASSES = 1000 };
    struct barrier_args a = {.passes = PASSES};
    mp_conn *reader;
    assert_int_equal(mp_pipe(&reader, &a.conn, false), 0);
    assert_int_equal(mp_lock_new(&a.lock), 0);
    assert_int_equal(mp_barrier_new(&a.b, NPARTIES, NULL, NULL, 30.0), 0);
    pid_t pids[NPARTIES];
    for (int j = 0; j < NPARTIES; j++)
        pids[j] = tu_fork(thousand_party, &a);
    mp_conn_free(a.conn);
    for (int i = 0; i < PASSES; i++) {
        for (int j = 0; j < NPARTIES; j++) {
            int got = -1;
            assert_int_equal(mp_conn_recv_bytes_into(reader, &got, sizeof got, 0, NULL, T_LONG),
                             sizeof got);
            if (got != i)
                fail_msg("cycle %d: a party sent %d", i, got);
        }
    }
    join_all(pids, NPARTIES);
    mp_conn_free(reader);
    mp_lock_free(a.lock);
    mp_barrier_free(a.b);
}

static int wait_forever_at_barrier(void *arg)
{
    struct barrier_args *a = arg;
    atomic_fetch_add(&a->sh->n[0], 1);
    mp_barrier_wait(a->b, MP_FOREVER); /* killed here */
    return 1;
}

static int wait_expect_broken_no_timeout(void *arg)
{
    struct barrier_args *a = arg;
    return mp_barrier_wait(a->b, MP_FOREVER) == MP_EBROKEN ? 0 : 1;
}

static void test_barrier_party_that_dies_breaks_it_instead_of_a_hang(void **state)
{
    (void)state;
    struct barrier_args a = {0};
    a.sh = shared_new();
    assert_int_equal(mp_barrier_new(&a.b, 3, NULL, NULL, MP_FOREVER), 0);
    pid_t doomed = tu_fork(wait_forever_at_barrier, &a);
    pid_t other = tu_fork(wait_expect_broken_no_timeout, &a);
    assert_int_equal(reaches(&a.sh->n[0], 1, T_LONG), 1);
    double end = tu_now() + T_LONG;
    while (mp_barrier_n_waiting(a.b) < 2 && tu_now() < end)
        tu_sleep(0.005);
    assert_int_equal(mp_barrier_n_waiting(a.b), 2);
    kill_and_reap(doomed);
    /* The third party arrives: with a dead party counted in, releasing
     * would be a lie, so the barrier is broken - by the waiter's own check
     * for dead parties if that came first, or by this arrival. */
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_barrier_wait(a.b, MP_FOREVER), MP_EBROKEN);
    assert_true(tu_now() - t0 < 5.0);
    assert_int_equal(tu_wait_child(other, T_LONG), 0);
    assert_int_equal(mp_barrier_broken(a.b), 1);
    assert_int_equal(mp_barrier_reset(a.b), 0);
    /* Usable again by three living parties. */
    pid_t p1 = tu_fork(record_index, &(struct barrier_args){.b = a.b, .sh = a.sh});
    pid_t p2 = tu_fork(record_index, &(struct barrier_args){.b = a.b, .sh = a.sh});
    int idx = mp_barrier_wait(a.b, T_LONG);
    assert_true(idx >= 0 && idx < 3);
    assert_int_equal(tu_wait_child(p1, T_LONG), 0);
    assert_int_equal(tu_wait_child(p2, T_LONG), 0);
    mp_barrier_free(a.b);
    mp_shm_free(a.sh);
}

/* What a party of the test below saw: its result and when it returned. */
struct death_watch {
    atomic_int result[8];
    _Atomic double returned_at[8];
};

struct death_args {
    mp_barrier *b;
    struct death_watch *w;
    int slot;
};

static int wait_forever_and_record(void *arg)
{
    struct death_args *a = arg;
    int rc = mp_barrier_wait(a->b, MP_FOREVER);
    atomic_store(&a->w->returned_at[a->slot], tu_now());
    atomic_store(&a->w->result[a->slot], rc);
    return 0;
}

static int wait_forever_to_be_killed(void *arg)
{
    struct death_args *a = arg;
    mp_barrier_wait(a->b, MP_FOREVER); /* killed here */
    return 1;
}

static void
test_barrier_waiters_with_no_timeout_get_ebroken_within_a_second_of_a_death(void **state)
{
    (void)state;
    /* sync.h: a waiting party that dies breaks the barrier for the others.
     * A death wakes nobody, so the waiters must notice it themselves, with
     * MP_FOREVER too, and not only when a later party arrives (which here
     * never happens: 5 parties, 4 arrive). */
    enum { LIVING = 3 };
    double bound = 1.0 * slowdown();
    struct death_watch *w;
    assert_int_equal(mp_shm_alloc((void **)&w, sizeof *w), 0);
    mp_barrier *b;
    assert_int_equal(mp_barrier_new(&b, LIVING + 2, NULL, NULL, MP_FOREVER), 0);
    struct death_args args[LIVING + 1];
    pid_t pids[LIVING];
    for (int i = 0; i < LIVING; i++) {
        args[i] = (struct death_args){.b = b, .w = w, .slot = i};
        atomic_store(&w->result[i], 1); /* not returned */
        pids[i] = tu_fork(wait_forever_and_record, &args[i]);
    }
    args[LIVING] = (struct death_args){.b = b, .w = w, .slot = LIVING};
    pid_t doomed = tu_fork(wait_forever_to_be_killed, &args[LIVING]);
    double end = tu_now() + T_LONG;
    while (mp_barrier_n_waiting(b) < LIVING + 1 && tu_now() < end)
        tu_sleep(0.005);
    assert_int_equal(mp_barrier_n_waiting(b), LIVING + 1);

    double killed_at = tu_now();
    kill_and_reap(doomed);
    /* Finite guard: before the fix the waiters slept on until it. */
    int status[LIVING];
    for (int i = 0; i < LIVING; i++) {
        double left = killed_at + bound + 5.0 * slowdown() - tu_now();
        status[i] = tu_wait_child(pids[i], left > 0 ? left : 0.01);
    }
    for (int i = 0; i < LIVING; i++)
        if (status[i] != 0)
            fail_msg("party %d still waiting %.1f s after the death (status %d)", i,
                     tu_now() - killed_at, status[i]);
    for (int i = 0; i < LIVING; i++) {
        TU_ASSERT_STATUS(atomic_load(&w->result[i]), MP_EBROKEN);
        double late = atomic_load(&w->returned_at[i]) - killed_at;
        if (late > bound)
            fail_msg("party %d got MP_EBROKEN %.3f s after the death (bound %.1f s)", i, late,
                     bound);
    }
    assert_int_equal(mp_barrier_broken(b), 1);
    assert_int_equal(mp_barrier_n_waiting(b), 0);
    mp_barrier_free(b);
    mp_shm_free(w);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_barrier_passes_processes_in_lockstep),
        TU_TEST(test_barrier_wait_returns_each_index_once),
        TU_TEST(test_barrier_action_runs_once_per_cycle_in_one_party),
        TU_TEST(test_barrier_action_failure_breaks_it_for_all),
        TU_TEST(test_barrier_abort_breaks_it),
        TU_TEST(test_barrier_reset_frees_the_waiters),
        TU_TEST(test_barrier_can_be_reset_after_abort),
        TU_TEST(test_barrier_timeout_breaks_it_for_everyone),
        TU_TEST(test_barrier_single_party_and_argument_errors),
        TU_TEST(test_barrier_thousand_cycles_with_five_processes),
        TU_TEST(test_barrier_party_that_dies_breaks_it_instead_of_a_hang),
        TU_TEST(test_barrier_waiters_with_no_timeout_get_ebroken_within_a_second_of_a_death),
    };
    tu_filter(argc, argv);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
