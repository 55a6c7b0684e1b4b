/*
 * Manager workloads for bench/run.py, each printed as "<case> <rate>".
 *
 *   lock_rmw   W6: 4 processes x 2,500 read-modify-write decrements of
 *              d['count'] under a manager Lock (acquire, get, set, release:
 *              four round trips each), in operations/s
 *   mplock_rmw the same under a shared-memory mp_lock (sync.h) instead: only
 *              the get and the set go to the server (two round trips), as
 *              Python's row "with multiprocessing.Lock()"
 *   atomic_add the same decrements with mp_dictproxy_add_int (one round trip,
 *              atomic in the server, no lock)
 *   lock_rmw_cpython  W6 as lock_rmw, the C clients on CPython's own server
 *              (SyncManager.get_server().serve_forever() under python3, or
 *              $MPIPC_BENCH_PYTHON), over AF_UNIX as lock_rmw
 *   serve ADDRESS KEYHEX  not a case: our server alone (mp_manager_serve),
 *              printing its address, for bench_manager.py's Python clients
 *              on our server (case manager_lock_ours)
 *
 * The rate counts from the moment the workers are told to go to the moment
 * the last one is done; process start-up and connecting are not timed.
 * The final count is checked: a wrong one fails the run.
 *
 * usage: bench_manager <case> [processes] [ops per process] - run.py's
 * scaling rows run 1, 2, 4 and 8 clients; MPIPC_BENCH_SCALE multiplies the
 * operations.
 */
#include <mpipc.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PROCS 64

static int n_procs = 4;  /* client processes */
static int n_ops = 2500; /* decrements per client */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void serve_ready(const char *address, void *arg)
{
    (void)arg;
    printf("%s\n", address);
    fflush(stdout);
}

/* Our server alone until a shutdown request; key given in hex. */
static int serve(const char *address, const char *hex)
{
    unsigned char key[128];
    size_t n = strlen(hex) / 2;
    if (n == 0 || n > sizeof key)
        return 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return 2;
        key[i] = (unsigned char)v;
    }
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    o.ready = serve_ready;
    int rc = mp_manager_serve(address, key, n, &o);
    if (rc)
        fprintf(stderr, "bench_manager serve: %s\n", mp_strerror(rc));
    return rc ? 1 : 0;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_manager: %s: %s\n", what, mp_strerror(rc));
    exit(1);
}

struct work {
    mp_dictproxy *d;
    mp_lockproxy *lock;
    mp_lock *shm_lock;
    int go;     /* read end: a byte means "start" */
    int ready;  /* write end: a byte means "connected" */
    int locked; /* 0: atomic add; 1: the manager lock; 2: the mp_lock */
};

static int rmw_once(struct work *w)
{
    int64_t v;
    if (w->locked == 2) {
        if (mp_lock_acquire(w->shm_lock, 10.0) != 0)
            return -1;
        int rc = mp_dictproxy_get_int(w->d, "count", &v);
        if (rc == 0)
            rc = mp_dictproxy_set_int(w->d, "count", v - 1);
        return mp_lock_release(w->shm_lock) != 0 ? -1 : rc;
    }
    if (mp_lockproxy_acquire(w->lock, 10.0) != 0 || mp_dictproxy_get_int(w->d, "count", &v) != 0 ||
        mp_dictproxy_set_int(w->d, "count", v - 1) != 0 || mp_lockproxy_release(w->lock) != 0)
        return -1;
    return 0;
}

static int worker(void *arg)
{
    struct work *w = arg;
    int64_t v;
    /* Connect before the clock starts. */
    if (mp_dictproxy_get_int(w->d, "count", &v) != 0)
        return 1;
    if (w->lock && mp_lockproxy_acquire(w->lock, 10.0) == 0 && mp_lockproxy_release(w->lock) != 0)
        return 1;
    char b = 1;
    if (write(w->ready, &b, 1) != 1 || read(w->go, &b, 1) != 1)
        return 1;
    for (int i = 0; i < n_ops; i++) {
        if (w->locked) {
            if (rmw_once(w) != 0)
                return 2;
        } else if (mp_dictproxy_add_int(w->d, "count", -1, NULL) != 0) {
            return 2;
        }
    }
    return 0;
}

/* CPython's manager server, as a python3 child printing its address. */
static const char cpython_server[] =
    "import os, sys, tempfile\n"
    "from multiprocessing.managers import SyncManager\n"
    "a = os.path.join(tempfile.mkdtemp(prefix='mpipc-bench-'), 'listener')\n"
    "s = SyncManager(address=a, authkey=b'bench-key').get_server()\n"
    "print('unix:' + a, flush=True)\n"
    "s.serve_forever()\n";

static FILE *cpython_start(mp_manager **m)
{
    const char *py = getenv("MPIPC_BENCH_PYTHON");
    char cmd[sizeof cpython_server + 300];
    snprintf(cmd, sizeof cmd, "'%s' -c \"%s\"", py && *py ? py : "python3", cpython_server);
    FILE *f = popen(cmd, "r");
    char addr[512];
    if (!f || !fgets(addr, sizeof addr, f))
        die("starting CPython's server", -EIO);
    addr[strcspn(addr, "\n")] = '\0';
    int rc = mp_manager_connect(m, addr, "bench-key", 9, NULL);
    if (rc)
        die("mp_manager_connect to CPython's server", rc);
    return f;
}

/* locked: as struct work; cpython: the clients on CPython's server. */
static double run(int locked, bool cpython)
{
    mp_manager *m;
    FILE *py = NULL;
    int rc = 0;
    if (cpython)
        py = cpython_start(&m);
    else if ((rc = mp_manager_start(&m, NULL)))
        die("mp_manager_start", rc);
    struct work w = {0};
    w.locked = locked;
    if ((rc = mp_manager_dict(m, NULL, &w.d)) ||
        (rc = mp_dictproxy_set_int(w.d, "count", n_procs * n_ops)))
        die("dict", rc);
    if (locked == 1 && (rc = mp_manager_lock(m, &w.lock)))
        die("lock", rc);
    if (locked == 2 && (rc = mp_lock_new(&w.shm_lock)))
        die("mp_lock_new", rc);
    int go[2], ready[2];
    if (pipe(go) || pipe(ready))
        die("pipe", -errno);
    w.go = go[0];
    w.ready = ready[1];
    mp_process *ps[MAX_PROCS];
    for (int i = 0; i < n_procs; i++) {
        if ((rc = mp_process_new(&ps[i], worker, &w)) || (rc = mp_process_start(ps[i])))
            die("start", rc);
    }
    char b[MAX_PROCS];
    for (int i = 0; i < n_procs; i++)
        if (read(ready[0], &b[i], 1) != 1)
            die("ready", -errno);
    double t0 = now();
    if (write(go[1], b, (size_t)n_procs) != n_procs)
        die("go", -errno);
    for (int i = 0; i < n_procs; i++) {
        int code = -1;
        if ((rc = mp_process_join(ps[i], 120.0)) || mp_process_exitcode(ps[i], &code) || code)
            die("worker failed", rc ? rc : MP_ETASK);
        mp_process_free(ps[i]);
    }
    double dt = now() - t0;
    int64_t v = -1;
    if ((rc = mp_dictproxy_get_int(w.d, "count", &v)) || v != 0)
        die("the final count is not 0", rc ? rc : MP_EVALUE);
    close(go[0]);
    close(go[1]);
    close(ready[0]);
    close(ready[1]);
    mp_dictproxy_free(w.d);
    mp_lockproxy_free(w.lock);
    mp_lock_free(w.shm_lock);
    if (py) {
        (void)mp_manager_shutdown(m);
        (void)pclose(py);
    }
    mp_manager_free(m);
    return n_procs * n_ops / dt;
}

int main(int argc, char **argv)
{
    const char *c = argc > 1 ? argv[1] : "";
    if (strcmp(c, "serve") == 0)
        return argc == 4 ? serve(argv[2], argv[3]) : 2;
    if (argc > 2)
        n_procs = atoi(argv[2]);
    if (argc > 3)
        n_ops = atoi(argv[3]);
    const char *scale = getenv("MPIPC_BENCH_SCALE");
    n_ops = (int)((double)n_ops * (scale ? atof(scale) : 1.0));
    if (n_ops < 1)
        n_ops = 1;
    if (n_procs < 1 || n_procs > MAX_PROCS) {
        fprintf(stderr, "bench_manager: processes must be 1-%d\n", MAX_PROCS);
        return 2;
    }
    if (strcmp(c, "lock_rmw") == 0)
        printf("lock_rmw %.1f\n", run(1, false));
    else if (strcmp(c, "mplock_rmw") == 0)
        printf("mplock_rmw %.1f\n", run(2, false));
    else if (strcmp(c, "atomic_add") == 0)
        printf("atomic_add %.1f\n", run(0, false));
    else if (strcmp(c, "lock_rmw_cpython") == 0)
        printf("lock_rmw_cpython %.1f\n", run(1, true));
    else {
        fprintf(stderr, "usage: bench_manager lock_rmw|mplock_rmw|atomic_add|lock_rmw_cpython "
                        "[processes] [ops]\n");
        return 2;
    }
    return 0;
}
