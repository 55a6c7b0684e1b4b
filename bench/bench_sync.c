/*
 * Synchronisation workloads for bench/run.py, each printed as "<case> <rate>".
 *
 *   lock               uncontended mp_lock acquire+release pairs/s
 *   event_pingpong     round trips/s between two processes through two
 *                      mp_events (set the other's, wait for yours, clear it)
 *   cond_pingpong      round trips/s through one mp_cond and a shared turn
 *   raw_lock, raw_event_pingpong, raw_cond_pingpong  robust|plain
 *                      the same loops on raw process-shared pthread mutexes
 *                      and condvars: "robust" mutexes are what mp_lock stands
 *                      on (the floor); "plain" ones are cheaper, but a dead
 *                      holder wedges them forever.
 */
#include <mpipc.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Item counts, scaled once at the start of main. */
static int n_pairs = 20000000;
static int n_rounds = 100000;
/* run.py --scale sets MPIPC_BENCH_SCALE: every item count is multiplied by
 * it, so a quick run of the whole report takes seconds (at least 1 item). */
static int scaled(long n)
{
    const char *s = getenv("MPIPC_BENCH_SCALE");
    double v = (double)n * (s ? atof(s) : 1.0);
    return v < 1.0 ? 1 : (int)v;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_sync: %s: %s\n", what, mp_strerror(rc));
    exit(1);
}

static void reap(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        die("child failed", 0);
}

/* Shared memory for the raw loops too (it is an mmap(MAP_SHARED) arena). */
static void *shared(size_t size)
{
    void *p;
    int rc = mp_shm_alloc(&p, size);
    if (rc)
        die("mp_shm_alloc", rc);
    return p;
}

static void raw_mutex_init(pthread_mutex_t *m, int robust)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (robust)
        pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
}

static void raw_cond_init(pthread_cond_t *c)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
}

/* ---- uncontended lock pairs --------------------------------------------------- */

static double lock_pairs(void)
{
    mp_lock *l;
    int rc = mp_lock_new(&l);
    if (rc)
        die("mp_lock_new", rc);
    double t0 = now();
    for (int i = 0; i < n_pairs; i++) {
        mp_lock_acquire(l, MP_FOREVER);
        mp_lock_release(l);
    }
    double rate = n_pairs / (now() - t0);
    mp_lock_free(l);
    return rate;
}

static double raw_lock_pairs(int robust)
{
    pthread_mutex_t *m = shared(sizeof *m);
    raw_mutex_init(m, robust);
    double t0 = now();
    for (int i = 0; i < n_pairs; i++) {
        pthread_mutex_lock(m);
        pthread_mutex_unlock(m);
    }
    return n_pairs / (now() - t0);
}

/* ---- event ping-pong -------------------------------------------------------------- */

static double event_pingpong(void)
{
    mp_event *e[2];
    for (int i = 0; i < 2; i++) {
        int rc = mp_event_new(&e[i]);
        if (rc)
            die("mp_event_new", rc);
    }
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < n_rounds; i++) {
            if (mp_event_wait(e[0], MP_FOREVER) != 0)
                _exit(1);
            mp_event_clear(e[0]);
            mp_event_set(e[1]);
        }
        _exit(0);
    }
    double t0 = now();
    for (int i = 0; i < n_rounds; i++) {
        mp_event_set(e[0]);
        if (mp_event_wait(e[1], MP_FOREVER) != 0)
            die("mp_event_wait", 0);
        mp_event_clear(e[1]);
    }
    double rate = n_rounds / (now() - t0);
    reap(pid);
    mp_event_free(e[0]);
    mp_event_free(e[1]);
    return rate;
}

struct raw_event {
    pthread_mutex_t m;
    pthread_cond_t c;
    int flag;
};

static void raw_event_set(struct raw_event *e)
{
    pthread_mutex_lock(&e->m);
    e->flag = 1;
    pthread_cond_broadcast(&e->c);
    pthread_mutex_unlock(&e->m);
}

static void raw_event_wait_clear(struct raw_event *e)
{
    pthread_mutex_lock(&e->m);
    while (!e->flag)
        pthread_cond_wait(&e->c, &e->m);
    pthread_mutex_unlock(&e->m);
    pthread_mutex_lock(&e->m);
    e->flag = 0;
    pthread_mutex_unlock(&e->m);
}

static double raw_event_pingpong(int robust)
{
    struct raw_event *e = shared(2 * sizeof *e);
    for (int i = 0; i < 2; i++) {
        raw_mutex_init(&e[i].m, robust);
        raw_cond_init(&e[i].c);
        e[i].flag = 0;
    }
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < n_rounds; i++) {
            raw_event_wait_clear(&e[0]);
            raw_event_set(&e[1]);
        }
        _exit(0);
    }
    double t0 = now();
    for (int i = 0; i < n_rounds; i++) {
        raw_event_set(&e[0]);
        raw_event_wait_clear(&e[1]);
    }
    double rate = n_rounds / (now() - t0);
    reap(pid);
    return rate;
}

/* ---- condition ping-pong ---------------------------------------------------------- */

static double cond_pingpong(void)
{
    mp_cond *c;
    int rc = mp_cond_new(&c, NULL);
    if (rc)
        die("mp_cond_new", rc);
    volatile int *turn = shared(sizeof *turn);
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < n_rounds; i++) {
            mp_cond_acquire(c, MP_FOREVER);
            while (*turn != 1)
                mp_cond_wait(c, MP_FOREVER);
            *turn = 0;
            mp_cond_notify(c, 1);
            mp_cond_release(c);
        }
        _exit(0);
    }
    double t0 = now();
    for (int i = 0; i < n_rounds; i++) {
        mp_cond_acquire(c, MP_FOREVER);
        *turn = 1;
        mp_cond_notify(c, 1);
        while (*turn != 0)
            mp_cond_wait(c, MP_FOREVER);
        mp_cond_release(c);
    }
    double rate = n_rounds / (now() - t0);
    reap(pid);
    mp_cond_free(c);
    return rate;
}

struct raw_condpair {
    pthread_mutex_t m;
    pthread_cond_t c;
    int turn;
};

static double raw_cond_pingpong(int robust)
{
    struct raw_condpair *s = shared(sizeof *s);
    raw_mutex_init(&s->m, robust);
    raw_cond_init(&s->c);
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < n_rounds; i++) {
            pthread_mutex_lock(&s->m);
            while (s->turn != 1)
                pthread_cond_wait(&s->c, &s->m);
            s->turn = 0;
            pthread_cond_signal(&s->c);
            pthread_mutex_unlock(&s->m);
        }
        _exit(0);
    }
    double t0 = now();
    for (int i = 0; i < n_rounds; i++) {
        pthread_mutex_lock(&s->m);
        s->turn = 1;
        pthread_cond_signal(&s->c);
        while (s->turn != 0)
            pthread_cond_wait(&s->c, &s->m);
        pthread_mutex_unlock(&s->m);
    }
    double rate = n_rounds / (now() - t0);
    reap(pid);
    return rate;
}

int main(int argc, char **argv)
{
    n_pairs = scaled(n_pairs);
    n_rounds = scaled(n_rounds);
    if (argc < 2) {
        fprintf(stderr, "usage: bench_sync <case> [robust|plain]\n");
        return 2;
    }
    const char *c = argv[1];
    int robust = argc < 3 || strcmp(argv[2], "plain") != 0;
    double rate;
    if (!strcmp(c, "lock"))
        rate = lock_pairs();
    else if (!strcmp(c, "raw_lock"))
        rate = raw_lock_pairs(robust);
    else if (!strcmp(c, "event_pingpong"))
        rate = event_pingpong();
    else if (!strcmp(c, "raw_event_pingpong"))
        rate = raw_event_pingpong(robust);
    else if (!strcmp(c, "cond_pingpong"))
        rate = cond_pingpong();
    else if (!strcmp(c, "raw_cond_pingpong"))
        rate = raw_cond_pingpong(robust);
    else {
        fprintf(stderr, "bench_sync: unknown case %s\n", c);
        return 2;
    }
    printf("%s %.1f\n", c, rate);
    return 0;
}
