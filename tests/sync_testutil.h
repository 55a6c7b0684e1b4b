/*
 * sync_testutil - what the sync test binaries share (test_sync_lock,
 * test_sync_event, test_sync_barrier, test_sync_value, one per source file
 * of src/sync/): time bounds, a block of counters shared with children, and
 * waiting for children or killing them.
 */
#ifndef MPIPC_SYNC_TESTUTIL_H
#define MPIPC_SYNC_TESTUTIL_H

#include "testutil.h"

#include <stdatomic.h>
#include <sys/types.h>

#define T_LONG 20.0 /* a bound that only a hang can reach */
#define DELTA  0.1  /* Python's DELTA: time for a child to get to sleep */
#define SLACK  1.5  /* how late a timed wait may return on a loaded machine */

/* Assert a timed call returned after about `expected` seconds. */
#define ASSERT_TOOK(t0, expected)                                                                  \
    do {                                                                                           \
        double took_ = tu_now() - (t0);                                                            \
        if (took_ < (expected)-0.005 || took_ > (expected) + SLACK)                                \
            fail_msg("took %.3f s, expected about %.3f s", took_, (double)(expected));             \
    } while (0)

/* Counters shared with children: a fresh zeroed block per test. */
struct shared {
    atomic_int n[8];
    volatile long counter;
    pid_t pids[16];
    int order[16];
};

/* A fresh zeroed block in shared memory (free it with mp_shm_free). */
struct shared *shared_new(void);

/* Wait for every child, asserting each exited 0. */
void join_all(const pid_t *pids, int n);

/* Poll until *v == want or the deadline; returns the last value seen. */
int reaches(atomic_int *v, int want, double timeout);

/* SIGKILL a child and reap it, asserting it died of that. */
void kill_and_reap(pid_t pid);

/* How much slower than native this run is: time bounds are multiplied by
 * it. Memcheck runs some 20-50 times slower; it is recognised by its
 * preload library, which it puts in every process it runs. */
double slowdown(void);

#endif /* MPIPC_SYNC_TESTUTIL_H */
