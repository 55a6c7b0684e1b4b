/*
 * Manager workloads for bench/run.py, each printed as "<case> <rate>".
 *
 *   lock_rmw   W6: 4 processes x 2,500 read-modify-write decrements of
 *              d['count'] under a manager Lock (acquire, get, set, release:
 *              four round trips each), in operations/s
 *   atomic_add the same decrements with mp_dict_add_int (one round trip,
 *              atomic in the server, no lock)
 *
 * The rate counts from the moment the workers are told to go to the moment
 * the last one is done; process start-up and connecting are not timed.
 * The final count is checked: a wrong one fails the run.
 */
#include <mpipc.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROCS 4
#define OPS   2500

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_manager: %s: %s\n", what, mp_strerror(rc));
    exit(1);
}

struct work {
    mp_dict *d;
    mp_mlock *lock;
    int go;    /* read end: a byte means "start" */
    int ready; /* write end: a byte means "connected" */
    int locked;
};

static int worker(void *arg)
{
    struct work *w = arg;
    int64_t v;
    /* Connect before the clock starts. */
    if (mp_dict_get_int(w->d, "count", &v) != 0)
        return 1;
    if (w->lock && mp_mlock_acquire(w->lock, 10.0) == 0 && mp_mlock_release(w->lock) != 0)
        return 1;
    char b = 1;
    if (write(w->ready, &b, 1) != 1 || read(w->go, &b, 1) != 1)
        return 1;
    for (int i = 0; i < OPS; i++) {
        if (w->locked) {
            if (mp_mlock_acquire(w->lock, 10.0) != 0 || mp_dict_get_int(w->d, "count", &v) != 0 ||
                mp_dict_set_int(w->d, "count", v - 1) != 0 || mp_mlock_release(w->lock) != 0)
                return 2;
        } else if (mp_dict_add_int(w->d, "count", -1, NULL) != 0) {
            return 2;
        }
    }
    return 0;
}

static double run(int locked)
{
    mp_manager *m;
    int rc = mp_manager_start(&m, NULL);
    if (rc)
        die("mp_manager_start", rc);
    struct work w = {0};
    w.locked = locked;
    if ((rc = mp_manager_dict(m, NULL, &w.d)) || (rc = mp_dict_set_int(w.d, "count", PROCS * OPS)))
        die("dict", rc);
    if (locked && (rc = mp_manager_lock(m, &w.lock)))
        die("lock", rc);
    int go[2], ready[2];
    if (pipe(go) || pipe(ready))
        die("pipe", -errno);
    w.go = go[0];
    w.ready = ready[1];
    mp_process *ps[PROCS];
    for (int i = 0; i < PROCS; i++) {
        if ((rc = mp_process_new(&ps[i], worker, &w)) || (rc = mp_process_start(ps[i])))
            die("start", rc);
    }
    char b[PROCS];
    for (int i = 0; i < PROCS; i++)
        if (read(ready[0], &b[i], 1) != 1)
            die("ready", -errno);
    double t0 = now();
    if (write(go[1], b, PROCS) != PROCS)
        die("go", -errno);
    for (int i = 0; i < PROCS; i++) {
        int code = -1;
        if ((rc = mp_process_join(ps[i], 120.0)) || mp_process_exitcode(ps[i], &code) || code)
            die("worker failed", rc ? rc : MP_ETASK);
        mp_process_free(ps[i]);
    }
    double dt = now() - t0;
    int64_t v = -1;
    if ((rc = mp_dict_get_int(w.d, "count", &v)) || v != 0)
        die("the final count is not 0", rc ? rc : MP_EVALUE);
    close(go[0]);
    close(go[1]);
    close(ready[0]);
    close(ready[1]);
    mp_dict_free(w.d);
    mp_mlock_free(w.lock);
    mp_manager_free(m);
    return PROCS * OPS / dt;
}

int main(int argc, char **argv)
{
    const char *c = argc > 1 ? argv[1] : "";
    if (strcmp(c, "lock_rmw") == 0)
        printf("lock_rmw %.1f\n", run(1));
    else if (strcmp(c, "atomic_add") == 0)
        printf("atomic_add %.1f\n", run(0));
    else {
        fprintf(stderr, "usage: bench_manager lock_rmw|atomic_add\n");
        return 2;
    }
    return 0;
}
