/*
 * Connection workloads for bench/run.py, each printed as "<case> <rate>".
 *
 *   pingpong       64-byte round trips/s through mp_conn (child echoes)
 *   oneway         64-byte messages/s, child sends, parent receives
 *   bandwidth      MB/s of 1 MiB messages received with mp_conn_recv_bytes
 *   bandwidth_into MB/s of 1 MiB messages received into one reused buffer
 *   shm_*          pingpong, oneway, bandwidth_into over mp_pipe_shm (1 MiB
 *                  rings: a 1 MiB message goes in pieces)
 *   shm_loan_pingpong  1 MiB round trips/s over mp_pipe_shm (4 MiB rings),
 *                  each message a loan (mp_conn_loan/commit) read through a
 *                  view (mp_conn_recv_view/release): only a 64-byte header
 *                  is written and read, so this is the transport's latency,
 *                  to set beside shm_pingpong's 64-byte figure
 *   raw_shm_*      pingpong and oneway over a bare busy-polling ring in
 *                  shared memory (one writer, one reader, no locks, no
 *                  sleeping, no checks): the floor for shm_*
 *   raw_*          the same over a tuned raw socketpair loop: CPython's
 *                  framing, one writev() per message, and a reader with a
 *                  64 KiB read-ahead buffer that reads large payloads
 *                  straight into a reused destination.
 *
 * The raw loop is the floor a hand-written C program would reach; the
 * library's target is 0.85x of it on every case.
 */
/* MAP_ANONYMOUS (the raw ring) is shown by glibc with _DEFAULT_SOURCE. */
#define _DEFAULT_SOURCE
#include <mpipc.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SMALL 64
#define BIG   (1u << 20)

/* Item counts, scaled once at the start of main. */
static int n_pingpongs = 100000;
static int n_oneway = 1000000;
static int n_bigs = 3000;
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
    fprintf(stderr, "bench_conn: %s: %s\n", what, rc < 0 ? mp_strerror(rc) : strerror(errno));
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

/* ---- mp_conn --------------------------------------------------------------- */

/* The shm_* cases run the same loops over mp_pipe_shm. */
static int use_shm;

static int bench_pipe(mp_conn **a, mp_conn **b)
{
    return use_shm ? mp_pipe_shm(a, b, true, NULL) : mp_pipe(a, b, true);
}

static double mp_pingpong(void)
{
    mp_conn *a, *b;
    int rc = bench_pipe(&a, &b);
    if (rc)
        die("mp_pipe", rc);
    pid_t pid = fork();
    if (pid == 0) {
        mp_conn_free(a);
        char buf[SMALL];
        for (int i = 0; i < n_pingpongs; i++) {
            if (mp_conn_recv_bytes_into(b, buf, sizeof buf, 0, NULL, MP_FOREVER) != SMALL)
                _exit(1);
            if (mp_conn_send_bytes(b, buf, SMALL))
                _exit(1);
        }
        _exit(0);
    }
    mp_conn_free(b);
    char msg[SMALL] = {0};
    double t0 = now();
    for (int i = 0; i < n_pingpongs; i++) {
        if ((rc = mp_conn_send_bytes(a, msg, SMALL)))
            die("send", rc);
        void *got;
        size_t len;
        if ((rc = mp_conn_recv_bytes(a, 0, &got, &len, MP_FOREVER)))
            die("recv", rc);
        free(got);
    }
    double rate = n_pingpongs / (now() - t0);
    reap(pid);
    mp_conn_free(a);
    return rate;
}

static double mp_stream(size_t size, int count, int into)
{
    mp_conn *a, *b;
    int rc = bench_pipe(&a, &b);
    if (rc)
        die("mp_pipe", rc);
    char *msg = calloc(1, size);
    pid_t pid = fork();
    if (pid == 0) {
        mp_conn_free(a);
        for (int i = 0; i < count; i++)
            if (mp_conn_send_bytes(b, msg, size))
                _exit(1);
        _exit(0);
    }
    mp_conn_free(b);
    char *dest = into ? malloc(size) : NULL;
    double t0 = now();
    for (int i = 0; i < count; i++) {
        if (into) {
            ssize_t n = mp_conn_recv_bytes_into(a, dest, size, 0, NULL, MP_FOREVER);
            if (n != (ssize_t)size)
                die("recv_into", (int)n);
        } else {
            void *got;
            size_t len;
            if ((rc = mp_conn_recv_bytes(a, 0, &got, &len, MP_FOREVER)))
                die("recv", rc);
            free(got);
        }
    }
    double elapsed = now() - t0;
    reap(pid);
    free(dest);
    free(msg);
    mp_conn_free(a);
    return count / elapsed;
}

/* ---- loans: 1 MiB round trips, zero copy ----------------------------------- */

static double shm_loan_pingpong(void)
{
    mp_conn *a, *b;
    mp_pipe_shm_opts o = MP_PIPE_SHM_OPTS_INIT;
    o.ring_size = (size_t)4 << 20;
    int rc = mp_pipe_shm(&a, &b, true, &o);
    if (rc)
        die("mp_pipe_shm", rc);
    pid_t pid = fork();
    if (pid == 0) {
        mp_conn_free(a);
        for (int i = 0; i < n_pingpongs; i++) {
            const void *view;
            size_t len;
            void *out;
            if (mp_conn_recv_view(b, &view, &len, MP_FOREVER) || len != BIG)
                _exit(1);
            if (mp_conn_loan(b, BIG, &out, MP_FOREVER))
                _exit(1);
            memcpy(out, view, SMALL);
            mp_conn_release(b, view);
            if (mp_conn_commit(b, out, BIG))
                _exit(1);
        }
        _exit(0);
    }
    mp_conn_free(b);
    double t0 = now();
    for (int i = 0; i < n_pingpongs; i++) {
        void *out;
        if ((rc = mp_conn_loan(a, BIG, &out, MP_FOREVER)))
            die("loan", rc);
        memcpy(out, &i, sizeof i);
        if ((rc = mp_conn_commit(a, out, BIG)))
            die("commit", rc);
        const void *view;
        size_t len;
        if ((rc = mp_conn_recv_view(a, &view, &len, MP_FOREVER)))
            die("recv_view", rc);
        int back;
        memcpy(&back, view, sizeof back);
        mp_conn_release(a, view);
        if (back != i || len != BIG)
            die("loan echo", 0);
    }
    double rate = n_pingpongs / (now() - t0);
    reap(pid);
    mp_conn_free(a);
    return rate;
}

/* ---- the raw busy-poll shared-memory ring (the floor) ------------------------ */

/* One direction: one writer, one reader; records {u64 len, payload padded
 * to 8}; tail and head free-running on their own cache lines. */
#define RAW_RING (1u << 20)
struct raw_ring {
    _Alignas(64) uint64_t tail;
    _Alignas(64) uint64_t head;
    _Alignas(64) unsigned char data[RAW_RING];
};

/* Each side keeps the other's index as last read (a process-local copy,
 * one per ring: each process uses a ring from one side only), fetching
 * the other's cache line only when that copy does not suffice. */
static uint64_t raw_seen[2];

static struct raw_ring *raw_ring_base; /* the pair raw_rings() made */

static void raw_ring_send(struct raw_ring *r, const void *buf, uint64_t len)
{
    uint64_t *seen = &raw_seen[r == raw_ring_base ? 0 : 1];
    uint64_t t = r->tail, need = 8 + ((len + 7) & ~(uint64_t)7);
    while (RAW_RING - (t - *seen) < need) {
        *seen = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
        if (RAW_RING - (t - *seen) >= need)
            break;
        __asm__ __volatile__("" ::: "memory");
    }
    /* need divides nothing: copy in two parts when the record wraps */
    unsigned char tmp[8 + SMALL];
    memcpy(tmp, &len, 8);
    memcpy(tmp + 8, buf, len);
    size_t off = t & (RAW_RING - 1), first = RAW_RING - off < need ? RAW_RING - off : need;
    memcpy(r->data + off, tmp, first);
    memcpy(r->data, tmp + first, need - first);
    __atomic_store_n(&r->tail, t + need, __ATOMIC_RELEASE);
}

static uint64_t raw_ring_recv(struct raw_ring *r, void *buf)
{
    uint64_t *seen = &raw_seen[r == raw_ring_base ? 0 : 1];
    uint64_t h = r->head;
    while (*seen == h) {
        *seen = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
        if (*seen != h)
            break;
        __asm__ __volatile__("" ::: "memory");
    }
    unsigned char tmp[8 + SMALL];
    size_t off = h & (RAW_RING - 1),
           first = RAW_RING - off < 8 + SMALL ? RAW_RING - off : 8 + SMALL;
    memcpy(tmp, r->data + off, first);
    memcpy(tmp + first, r->data, 8 + SMALL - first);
    uint64_t len;
    memcpy(&len, tmp, 8);
    memcpy(buf, tmp + 8, len);
    __atomic_store_n(&r->head, h + 8 + ((len + 7) & ~(uint64_t)7), __ATOMIC_RELEASE);
    return len;
}

static struct raw_ring *raw_rings(void)
{
    struct raw_ring *r =
        mmap(NULL, 2 * sizeof *r, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED)
        die("mmap", 0);
    raw_ring_base = r;
    raw_seen[0] = raw_seen[1] = 0;
    return r;
}

static double raw_shm_pingpong(void)
{
    struct raw_ring *r = raw_rings(); /* r[0]: to the child, r[1]: back */
    pid_t pid = fork();
    if (pid == 0) {
        char buf[SMALL];
        for (int i = 0; i < n_pingpongs; i++) {
            uint64_t len = raw_ring_recv(&r[0], buf);
            raw_ring_send(&r[1], buf, len);
        }
        _exit(0);
    }
    char msg[SMALL] = {0}, got[SMALL];
    double t0 = now();
    for (int i = 0; i < n_pingpongs; i++) {
        raw_ring_send(&r[0], msg, SMALL);
        raw_ring_recv(&r[1], got);
    }
    double rate = n_pingpongs / (now() - t0);
    reap(pid);
    munmap(r, 2 * sizeof *r);
    return rate;
}

static double raw_shm_oneway(void)
{
    struct raw_ring *r = raw_rings();
    pid_t pid = fork();
    if (pid == 0) {
        char msg[SMALL] = {0};
        for (int i = 0; i < n_oneway; i++)
            raw_ring_send(&r[0], msg, SMALL);
        _exit(0);
    }
    char got[SMALL];
    double t0 = now();
    for (int i = 0; i < n_oneway; i++)
        if (raw_ring_recv(&r[0], got) != SMALL)
            die("raw_shm length", 0);
    double rate = n_oneway / (now() - t0);
    reap(pid);
    munmap(r, 2 * sizeof *r);
    return rate;
}

/* ---- the tuned raw loop ------------------------------------------------------ */

struct raw_reader {
    int fd;
    unsigned char buf[64 * 1024];
    size_t pos, len;
};

static void raw_fill(struct raw_reader *r, size_t need)
{
    if (r->pos + need > sizeof r->buf) {
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->len -= r->pos;
        r->pos = 0;
    }
    while (r->len - r->pos < need) {
        ssize_t n = read(r->fd, r->buf + r->len, sizeof r->buf - r->len);
        if (n <= 0)
            die("raw read", 0);
        r->len += (size_t)n;
    }
}

/* Receive one message into dest (cap bytes); returns its size. */
static size_t raw_recv(struct raw_reader *r, void *dest, size_t cap)
{
    raw_fill(r, 4);
    uint32_t be;
    memcpy(&be, r->buf + r->pos, 4);
    size_t size = ntohl(be);
    r->pos += 4;
    if (size > cap)
        die("raw message too big", 0);
    size_t have = r->len - r->pos;
    if (size <= sizeof r->buf) {
        raw_fill(r, size);
        memcpy(dest, r->buf + r->pos, size);
        r->pos += size;
        return size;
    }
    memcpy(dest, r->buf + r->pos, have);
    r->pos = r->len = 0;
    for (size_t got = have; got < size;) {
        ssize_t n = read(r->fd, (char *)dest + got, size - got);
        if (n <= 0)
            die("raw read", 0);
        got += (size_t)n;
    }
    return size;
}

static void raw_send(int fd, const void *buf, size_t len)
{
    uint32_t be = htonl((uint32_t)len);
    struct iovec iov[2] = {{&be, 4}, {(void *)buf, len}};
    size_t total = 4 + len;
    while (total > 0) {
        ssize_t n = writev(fd, iov, 2);
        if (n < 0)
            die("raw writev", 0);
        total -= (size_t)n;
        for (int i = 0; i < 2 && n > 0; i++) {
            size_t take = (size_t)n < iov[i].iov_len ? (size_t)n : iov[i].iov_len;
            iov[i].iov_base = (char *)iov[i].iov_base + take;
            iov[i].iov_len -= take;
            n -= (ssize_t)take;
        }
    }
}

static double raw_pingpong(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
        die("socketpair", 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        static struct raw_reader r;
        r.fd = sv[1];
        char buf[SMALL];
        for (int i = 0; i < n_pingpongs; i++) {
            raw_recv(&r, buf, sizeof buf);
            raw_send(sv[1], buf, SMALL);
        }
        _exit(0);
    }
    close(sv[1]);
    static struct raw_reader r;
    r.fd = sv[0];
    char msg[SMALL] = {0}, got[SMALL];
    double t0 = now();
    for (int i = 0; i < n_pingpongs; i++) {
        raw_send(sv[0], msg, SMALL);
        raw_recv(&r, got, sizeof got);
    }
    double rate = n_pingpongs / (now() - t0);
    reap(pid);
    close(sv[0]);
    return rate;
}

static double raw_stream(size_t size, int count)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
        die("socketpair", 0);
    char *msg = calloc(1, size);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        for (int i = 0; i < count; i++)
            raw_send(sv[1], msg, size);
        _exit(0);
    }
    close(sv[1]);
    static struct raw_reader r;
    r.fd = sv[0];
    r.pos = r.len = 0;
    char *dest = malloc(size);
    double t0 = now();
    for (int i = 0; i < count; i++)
        raw_recv(&r, dest, size);
    double elapsed = now() - t0;
    reap(pid);
    free(dest);
    free(msg);
    close(sv[0]);
    return count / elapsed;
}

int main(int argc, char **argv)
{
    n_pingpongs = scaled(n_pingpongs);
    n_oneway = scaled(n_oneway);
    n_bigs = scaled(n_bigs);
    if (argc != 2) {
        fprintf(stderr, "usage: bench_conn pingpong|oneway|bandwidth|bandwidth_into|"
                        "raw_pingpong|raw_oneway|raw_bandwidth|raw_shm_pingpong|raw_shm_oneway|"
                        "shm_<case>|shm_loan_pingpong\n");
        return 2;
    }
    const char *c = argv[1];
    if (!strncmp(c, "shm_", 4)) {
        use_shm = 1;
        c += 4;
    }
    double rate;
    const double mb = BIG / 1e6;
    if (!strcmp(c, "pingpong"))
        rate = mp_pingpong();
    else if (!strcmp(c, "oneway"))
        rate = mp_stream(SMALL, n_oneway, 0);
    else if (!strcmp(c, "bandwidth"))
        rate = mp_stream(BIG, n_bigs, 0) * mb;
    else if (!strcmp(c, "bandwidth_into"))
        rate = mp_stream(BIG, n_bigs, 1) * mb;
    else if (use_shm && !strcmp(c, "loan_pingpong"))
        rate = shm_loan_pingpong();
    else if (!strcmp(c, "raw_shm_pingpong"))
        rate = raw_shm_pingpong();
    else if (!strcmp(c, "raw_shm_oneway"))
        rate = raw_shm_oneway();
    else if (!strcmp(c, "raw_pingpong"))
        rate = raw_pingpong();
    else if (!strcmp(c, "raw_oneway"))
        rate = raw_stream(SMALL, n_oneway);
    else if (!strcmp(c, "raw_bandwidth"))
        rate = raw_stream(BIG, n_bigs) * mb;
    else
        return 2;
    printf("%s %.1f\n", argv[1], rate);
    return 0;
}
