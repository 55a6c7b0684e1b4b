/*
 * sync_testutil - the helpers the sync test binaries share (see
 * sync_testutil.h).
 */
#include "sync_testutil.h"

#include <mpipc/sync.h>

#include <signal.h>

struct shared *shared_new(void)
{
    void *p;
    assert_int_equal(mp_shm_alloc(&p, sizeof(struct shared)), 0);
    return p;
}

void join_all(const pid_t *pids, int n)
{
    for (int i = 0; i < n; i++) {
        int st = tu_wait_child(pids[i], T_LONG);
        if (st != 0)
            fail_msg("child %d (pid %d) ended with %d", i, (int)pids[i], st);
    }
}

int reaches(atomic_int *v, int want, double timeout)
{
    double end = tu_now() + timeout;
    int seen;
    while ((seen = atomic_load(v)) != want && tu_now() < end)
        tu_sleep(0.005);
    return seen;
}

void kill_and_reap(pid_t pid)
{
    kill(pid, SIGKILL);
    assert_int_equal(tu_wait_child(pid, T_LONG), -SIGKILL);
}

double slowdown(void)
{
    return tu_slowdown(10.0, 1.0);
}
