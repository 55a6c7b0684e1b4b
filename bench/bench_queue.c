/*
 * Queue workloads for bench/run.py, each printed as "<case> <rate>" in
 * 64-byte items per second, from the first put to the last get.
 *
 *   queue_1to1, queue_2to2      mp_queue, one (two) producer processes and
 *                               one (two) consumer processes
 *   simplequeue_1to1, _2to2     mp_simplequeue, the same
 *   raw_1to1, raw_2to2          the tuned raw loop: a pipe, CPython's framing,
 *                               one write() per item; the one reader reads
 *                               64 KiB ahead, two readers read one framed
 *                               item per read() (each write is atomic)
 *
 * Any shape "<kind>_<P>to<C>" runs P producers and C consumers (1-8 each,
 * P a multiple of C or C of P): run.py's scaling rows use 1to1 .. 8to8. An
 * optional second argument is the number of items (default: 2,000,000 for
 * mp_queue, 1,000,000 for the others); MPIPC_BENCH_SCALE multiplies it.
 */
#include <mpipc.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ITEM      64
#define N_OURS    2000000
#define N_RAW     1000000
#define MAX_PROCS 8

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
    fprintf(stderr, "bench_queue: %s: %s\n", what, rc < 0 ? mp_strerror(rc) : strerror(errno));
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

/* ---- mp_queue and mp_simplequeue ---------------------------------------------- */

struct ours {
    mp_queue *q;
    mp_simplequeue *sq;
    int n; /* items per producer */
    int per_consumer;
};

static int produce(void *arg)
{
    struct ours *o = arg;
    unsigned char item[ITEM] = {0};
    for (int i = 0; i < o->n; i++) {
        memcpy(item, &i, sizeof i);
        int rc = o->q ? mp_queue_put(o->q, item, ITEM, MP_FOREVER)
                      : mp_simplequeue_put(o->sq, item, ITEM, MP_FOREVER);
        if (rc)
            die("put", rc);
    }
    return 0;
}

static int consume(void *arg)
{
    struct ours *o = arg;
    for (int i = 0; i < o->per_consumer; i++) {
        void *d;
        size_t len;
        int rc =
            o->q ? mp_queue_get(o->q, &d, &len, 60.0) : mp_simplequeue_get(o->sq, &d, &len, 60.0);
        if (rc || len != ITEM)
            die("get", rc);
        free(d);
    }
    return 0;
}

static double run_ours(bool simple, int producers, int consumers, int total)
{
    struct ours o = {0};
    int rc = simple ? mp_simplequeue_new(&o.sq) : mp_queue_new(&o.q, 0);
    if (rc)
        die("new", rc);
    o.n = total / producers;
    o.per_consumer = o.n * producers / consumers;
    mp_process *p[2 * MAX_PROCS];
    double t0 = now();
    for (int i = 0; i < producers + consumers; i++) {
        if ((rc = mp_process_new(&p[i], i < producers ? produce : consume, &o)) ||
            (rc = mp_process_start(p[i])))
            die("process", rc);
    }
    for (int i = producers; i < producers + consumers; i++) {
        int code = -1;
        if (mp_process_join(p[i], 120.0) || mp_process_exitcode(p[i], &code) || code)
            die("consumer", 0);
    }
    double rate = (double)o.per_consumer * consumers / (now() - t0);
    for (int i = 0; i < producers + consumers; i++) {
        mp_process_join(p[i], 120.0);
        mp_process_free(p[i]);
    }
    mp_queue_free(o.q);
    mp_simplequeue_free(o.sq);
    return rate;
}

/* ---- the raw loop ---------------------------------------------------------------- */

static void raw_produce(int fd, int n)
{
    unsigned char msg[4 + ITEM] = {0};
    uint32_t be = htonl(ITEM);
    memcpy(msg, &be, 4);
    for (int i = 0; i < n; i++) {
        memcpy(msg + 4, &i, sizeof i);
        if (write(fd, msg, sizeof msg) != (ssize_t)sizeof msg)
            _exit(1);
    }
}

/* One reader: 64 KiB read-ahead, parse framed items out of it. */
static void raw_consume_ahead(int fd, int n)
{
    static unsigned char buf[1 << 16];
    size_t have = 0, pos = 0;
    for (int got = 0; got < n;) {
        if (have - pos < 4 + ITEM) {
            memmove(buf, buf + pos, have - pos);
            have -= pos;
            pos = 0;
            ssize_t r = read(fd, buf + have, sizeof buf - have);
            if (r <= 0)
                _exit(2);
            have += (size_t)r;
            continue;
        }
        uint32_t be;
        memcpy(&be, buf + pos, 4);
        if (ntohl(be) != ITEM)
            _exit(3);
        pos += 4 + ITEM;
        got++;
    }
}

/* Two readers: one whole framed item per read() (writes are atomic). */
static void raw_consume_one(int fd, int n)
{
    unsigned char msg[4 + ITEM];
    for (int i = 0; i < n; i++)
        if (read(fd, msg, sizeof msg) != (ssize_t)sizeof msg)
            _exit(2);
}

static double run_raw(int producers, int consumers, int total)
{
    int fds[2];
    if (pipe(fds) < 0)
        die("pipe", 0);
    int n = total / producers;
    int per_consumer = n * producers / consumers;
    pid_t pids[2 * MAX_PROCS];
    double t0 = now();
    for (int i = 0; i < producers + consumers; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            if (i < producers) {
                close(fds[0]);
                raw_produce(fds[1], n);
            } else {
                close(fds[1]);
                if (consumers == 1)
                    raw_consume_ahead(fds[0], per_consumer);
                else
                    raw_consume_one(fds[0], per_consumer);
            }
            _exit(0);
        }
    }
    close(fds[0]);
    close(fds[1]);
    for (int i = producers; i < producers + consumers; i++)
        reap(pids[i]);
    double rate = (double)per_consumer * consumers / (now() - t0);
    for (int i = 0; i < producers; i++)
        reap(pids[i]);
    return rate;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: bench_queue queue|simplequeue|raw_<P>to<C> [items]\n");
        return 2;
    }
    const char *c = argv[1];
    char kind[16];
    int producers, consumers, end = 0;
    if (sscanf(c, "%15[a-z]_%dto%d%n", kind, &producers, &consumers, &end) != 3 || c[end] != '\0' ||
        producers < 1 || producers > MAX_PROCS || consumers < 1 || consumers > MAX_PROCS ||
        (producers % consumers && consumers % producers)) {
        fprintf(stderr, "bench_queue: unknown case %s\n", c);
        return 2;
    }
    bool simple = !strcmp(kind, "simplequeue");
    long items = argc == 3 ? atol(argv[2]) : !strcmp(kind, "queue") ? N_OURS : N_RAW;
    int total = scaled(items);
    /* Every consumer gets the same whole number of items. */
    total -= total % (producers * consumers);
    if (total == 0)
        total = producers * consumers;
    double rate;
    if (!strcmp(kind, "queue") || simple)
        rate = run_ours(simple, producers, consumers, total);
    else if (!strcmp(kind, "raw"))
        rate = run_raw(producers, consumers, total);
    else {
        fprintf(stderr, "bench_queue: unknown case %s\n", c);
        return 2;
    }
    printf("%s %.1f\n", c, rate);
    return 0;
}
