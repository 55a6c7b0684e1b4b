/*
 * qpipe: the stream under the queues (src/queue/qpipe.c), through the
 * queues' API: items of every size arrive whole and in order, many producers
 * and consumers lose and duplicate nothing, processes killed in the middle
 * of a get or a put neither wedge nor corrupt the queue, and junk written
 * into the pipe costs only itself. The queues' own semantics are tested by
 * test_queue.
 *
 * Producers are mp_process children: their exit procedure is what flushes
 * the feeder, as Python's does. A test name filter may be given as the first
 * argument (cmocka glob): test_qpipe '*many*'.
 */
#include "queue_testutil.h"

#include "codec/pickle.h"
#include "core/io.h"
#include "queue/qpipe.h"

#include <mpipc/obj.h>
#include <mpipc/process.h>
#include <mpipc/queue.h>
#include <mpipc/sync.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* ---- sizes and order ------------------------------------------------------------------ */

/* Sizes around the chunk boundaries (MP__QPIPE_CHUNK_MAX bytes of payload
 * per chunk). */
#define CM MP__QPIPE_CHUNK_MAX
static const size_t edge_sizes[] = {0,          1,      4,          64,    CM - 1, CM,     CM + 1,
                                    2 * CM - 1, 2 * CM, 2 * CM + 1, 65536, 70000,  1 << 20};
#define NEDGE (sizeof edge_sizes / sizeof edge_sizes[0])

static int put_edge_sizes(void *arg)
{
    watchdog();
    unsigned char *buf = malloc(1 << 20);
    for (uint32_t i = 0; i < NEDGE; i++) {
        size_t len = make_item(buf, i, edge_sizes[i]);
        if (mp_queue_put(arg, buf, len, MP_FOREVER) != 0)
            return 1;
    }
    free(buf);
    return 0;
}

static void test_queue_items_of_every_size_arrive_whole_and_in_order(void **state)
{
    (void)state;
    mp_queue *q;
    assert_int_equal(mp_queue_new(&q, 0), 0);
    mp_process *p = spawn(put_edge_sizes, q);
    for (uint32_t i = 0; i < NEDGE; i++) {
        void *d;
        size_t len;
        assert_int_equal(mp_queue_get(q, &d, &len, T_LONG), 0);
        assert_non_null(d);
        assert_int_equal(len, edge_sizes[i]);
        uint32_t seq = 0;
        assert_true(check_item(d, len, &seq));
        if (len >= 4)
            assert_int_equal(seq, i);
        free(d);
    }
    assert_int_equal(finish(p, T_LONG), 0);
    mp_queue_free(q);
}

static int put_16mib(void *arg)
{
    watchdog();
    size_t len = 16u << 20;
    unsigned char *buf = malloc(len);
    if (!buf)
        return 1;
    make_item(buf, 77, len);
    int rc = mp_queue_put(arg, buf, len, MP_FOREVER);
    free(buf);
    return rc == 0 ? 0 : 2;
}

static void test_queue_item_larger_than_the_pipe_passes(void **state)
{
    (void)state;
    /* 16 MiB through a 64 KiB pipe. */
    mp_queue *q;
    assert_int_equal(mp_queue_new(&q, 0), 0);
    mp_process *p = spawn(put_16mib, q);
    void *d;
    size_t len;
    assert_int_equal(mp_queue_get(q, &d, &len, T_LONG), 0);
    assert_int_equal(len, 16u << 20);
    uint32_t seq;
    assert_true(check_item(d, len, &seq));
    assert_int_equal(seq, 77);
    free(d);
    assert_int_equal(finish(p, T_LONG), 0);
    mp_queue_free(q);
}

static void test_queue_get_nowait_polling_receives_a_big_item_whole(void **state)
{
    (void)state;
    /* Each get_nowait() takes what is in the pipe and leaves it at the head
     * for the next one; polling, the 16 MiB item arrives whole, once. */
    mp_queue *q;
    assert_int_equal(mp_queue_new(&q, 0), 0);
    mp_process *p = spawn(put_16mib, q);
    void *d = NULL;
    size_t len = 0;
    int rc, polls = 0;
    double end = tu_now() + T_LONG;
    while ((rc = mp_queue_get(q, &d, &len, MP_NOWAIT)) == MP_EMPTY && tu_now() < end) {
        polls++;
        tu_sleep(0.0005);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(len, 16u << 20);
    uint32_t seq;
    assert_true(check_item(d, len, &seq));
    assert_int_equal(seq, 77);
    free(d);
    print_message("16 MiB item got after %d empty polls\n", polls);
    assert_true(polls > 0);
    assert_int_equal(finish(p, T_LONG), 0);
    TU_ASSERT_STATUS(mp_queue_get(q, &d, &len, 0.05), MP_EMPTY);
    assert_int_equal(mp_queue_qsize(q), 0);
    mp_queue_free(q);
}

/* ---- many producers, many consumers ----------------------------------------------------- */

#define MANY_ITEMS 100000
#define MANY_PROCS 4

struct many {
    mp_queue *q;
    int id;
    atomic_ullong *sum;  /* checksum of the values got */
    atomic_int *got;     /* items got */
    unsigned char *seen; /* MANY_ITEMS flags */
    atomic_int *dups;
};

static int many_producer(void *arg)
{
    struct many *m = arg;
    watchdog();
    unsigned char buf[200];
    for (uint32_t v = (uint32_t)m->id; v < MANY_ITEMS; v += MANY_PROCS) {
        size_t len = make_item(buf, v, 8 + v % 180);
        if (mp_queue_put(m->q, buf, len, MP_FOREVER) != 0)
            return 1;
    }
    return 0;
}

static int many_consumer(void *arg)
{
    struct many *m = arg;
    watchdog();
    for (;;) {
        void *d;
        size_t len;
        int rc = mp_queue_get(m->q, &d, &len, T_LONG);
        if (rc != 0)
            return 1;
        uint32_t v;
        bool ok = check_item(d, len, &v);
        free(d);
        if (!ok || len != 8 + v % 180)
            return 2;
        if (v == UINT32_MAX)
            return 0; /* end marker */
        if (v >= MANY_ITEMS)
            return 3;
        if (__atomic_exchange_n(&m->seen[v], 1, __ATOMIC_RELAXED))
            atomic_fetch_add(m->dups, 1);
        atomic_fetch_add(m->sum, v);
        atomic_fetch_add(m->got, 1);
    }
}

static void test_queue_many_producers_and_consumers_lose_and_duplicate_nothing(void **state)
{
    (void)state;
    /* 4 producers x 4 consumers, 100,000 items of 8..187 bytes; one end
     * marker per consumer. Checksum, count, and no item twice. */
    struct {
        atomic_ullong sum;
        atomic_int got, dups;
        unsigned char seen[MANY_ITEMS];
    } * sh;
    assert_int_equal(mp_shm_alloc((void **)&sh, sizeof *sh), 0);
    mp_queue *q;
    assert_int_equal(mp_queue_new(&q, 1000), 0);
    struct many args[2 * MANY_PROCS];
    mp_process *procs[2 * MANY_PROCS];
    for (int i = 0; i < 2 * MANY_PROCS; i++) {
        args[i] = (struct many){q, i % MANY_PROCS, &sh->sum, &sh->got, sh->seen, &sh->dups};
        procs[i] = spawn(i < MANY_PROCS ? many_producer : many_consumer, &args[i]);
    }
    for (int i = 0; i < MANY_PROCS; i++)
        assert_int_equal(finish(procs[i], T_LONG), 0);
    size_t elen = 8 + UINT32_MAX % 180;
    unsigned char *endbuf = malloc(elen);
    make_item(endbuf, UINT32_MAX, elen);
    for (int i = 0; i < MANY_PROCS; i++)
        assert_int_equal(mp_queue_put(q, endbuf, elen, T_LONG), 0);
    free(endbuf);
    for (int i = MANY_PROCS; i < 2 * MANY_PROCS; i++)
        assert_int_equal(finish(procs[i], T_LONG), 0);
    unsigned long long expect = (unsigned long long)MANY_ITEMS * (MANY_ITEMS - 1) / 2;
    assert_int_equal(atomic_load(&sh->got), MANY_ITEMS);
    assert_int_equal(atomic_load(&sh->dups), 0);
    assert_true(atomic_load(&sh->sum) == expect);
    assert_int_equal(mp_queue_qsize(q), 0);
    mp_queue_free(q);
    mp_shm_free(sh);
}

/* ---- processes that die in the middle ----------------------------------------------------- */

struct consumer_args {
    mp_queue *q;
    mp_simplequeue *sq;
    atomic_int *started;
    atomic_int *seen; /* per item */
    int n;
};

static int block_in_get(void *arg)
{
    struct consumer_args *a = arg;
    watchdog();
    atomic_fetch_add(a->started, 1);
    void *d;
    size_t len;
    mp_queue_get(a->q, &d, &len, MP_FOREVER); /* killed in here, holding the read lock */
    return 1;
}

static void test_queue_consumer_killed_holding_the_read_lock_does_not_wedge(void **state)
{
    (void)state;
    atomic_int *started;
    assert_int_equal(mp_shm_alloc((void **)&started, sizeof *started), 0);
    mp_queue *q;
    assert_int_equal(mp_queue_new(&q, 0), 0);
    struct consumer_args a = {.q = q, .started = started};
    pid_t pid = tu_fork(block_in_get, &a);
    /* It is in get(), holding the read lock: kill it there. */
    assert_true(wait_held_by_other(&mp__queue_qpipe(q)->sh->rlock, T_LONG));
    kill(pid, SIGKILL);
    assert_int_equal(tu_wait_child(pid, T_LONG), -SIGKILL);
    /* Another consumer is not wedged: it gets the next item at once. */
    assert_int_equal(put_int(q, 42, MP_FOREVER), 0);
    int v = 0;
    double t0 = tu_now();
    assert_int_equal(get_int(q, &v, T_LONG), 0);
    assert_int_equal(v, 42);
    assert_true(tu_now() - t0 < 5.0);
    mp_queue_free(q);
    mp_shm_free(started);
}

static int consume_forever(void *arg)
{
    struct consumer_args *a = arg;
    watchdog();
    for (;;) {
        void *d;
        size_t len;
        int rc = a->sq ? mp_simplequeue_get(a->sq, &d, &len, T_LONG)
                       : mp_queue_get(a->q, &d, &len, T_LONG);
        if (rc != 0)
            return 1;
        uint32_t seq;
        bool ok = check_item(d, len, &seq);
        free(d);
        if (!ok || seq >= (uint32_t)a->n)
            return 2; /* a torn or invented item */
        atomic_fetch_add(&a->seen[seq], 1);
    }
}

static void test_queue_consumers_killed_at_random_lose_only_what_they_held(void **state)
{
    (void)state;
    /* Three consumers drain 20,000 items; the test keeps killing one at
     * random and starting another. Every item that arrives is whole and
     * arrives once; each kill loses at most the item being received. */
    enum { N = 20000, CONSUMERS = 3 };
    atomic_int *seen;
    assert_int_equal(mp_shm_alloc((void **)&seen, N * sizeof *seen), 0);
    mp_queue *q;
    assert_int_equal(mp_queue_new(&q, 0), 0);
    struct consumer_args a = {.q = q, .seen = seen, .n = N};
    pid_t kids[CONSUMERS];
    for (int i = 0; i < CONSUMERS; i++)
        kids[i] = tu_fork(consume_forever, &a);
    unsigned char buf[300];
    int kills = 0;
    unsigned r = 12345;
    for (uint32_t i = 0; i < N; i++) {
        size_t len = make_item(buf, i, 4 + i % 290);
        assert_int_equal(mp_queue_put(q, buf, len, MP_FOREVER), 0);
        if (i % 500 == 250) {
            r = r * 1103515245 + 12345;
            int victim = (int)(r >> 16) % CONSUMERS;
            kill(kids[victim], SIGKILL);
            assert_int_equal(tu_wait_child(kids[victim], T_LONG), -SIGKILL);
            kids[victim] = tu_fork(consume_forever, &a);
            kills++;
        }
    }
    /* Wait until the items stop arriving. */
    int total = 0, last = -1;
    double end = tu_now() + T_LONG;
    while (tu_now() < end) {
        total = 0;
        for (int i = 0; i < N; i++)
            total += atomic_load(&seen[i]);
        if (total == N || (total == last && mp_queue_qsize(q) <= kills))
            break;
        last = total;
        tu_sleep(0.2);
    }
    for (int i = 0; i < CONSUMERS; i++) {
        kill(kids[i], SIGKILL);
        tu_wait_child(kids[i], T_LONG);
    }
    int dups = 0, missing = 0;
    for (int i = 0; i < N; i++) {
        if (atomic_load(&seen[i]) > 1)
            dups++;
        if (atomic_load(&seen[i]) == 0)
            missing++;
    }
    assert_int_equal(dups, 0);
    if (missing > kills + CONSUMERS)
        fail_msg("%d items lost with %d kills", missing, kills);
    mp_queue_free(q);
    mp_shm_free(seen);
}

struct big_writer {
    mp_queue *q;
    mp_simplequeue *sq;
    atomic_int *started;
};

static int put_huge_item(void *arg)
{
    struct big_writer *b = arg;
    watchdog();
    size_t len = 4u << 20;
    unsigned char *buf = malloc(len);
    make_item(buf, 9, len);
    atomic_store(b->started, 1);
    /* Nobody reads: the writer blocks part way through the item, holding
     * the write lock, and is killed there. */
    if (b->sq)
        mp_simplequeue_put(b->sq, buf, len, MP_FOREVER);
    else
        mp_queue_put(b->q, buf, len, MP_FOREVER);
    for (;;)
        pause();
    return 0;
}

static void *put_three_small(void *arg)
{
    struct big_writer *b = arg;
    unsigned char buf[100];
    for (uint32_t i = 0; i < 3; i++) {
        size_t len = make_item(buf, 100 + i, sizeof buf);
        int rc = b->sq ? mp_simplequeue_put(b->sq, buf, len, T_LONG)
                       : mp_queue_put(b->q, buf, len, T_LONG);
        if (rc != 0)
            return (void *)1;
    }
    return NULL;
}

static void test_queue_writer_killed_mid_item_does_not_corrupt_the_stream(void **state)
{
    (void)state;
    for (int simple = 0; simple <= 1; simple++) {
        atomic_int *started;
        assert_int_equal(mp_shm_alloc((void **)&started, sizeof *started), 0);
        struct big_writer b = {.started = started};
        if (simple)
            assert_int_equal(mp_simplequeue_new(&b.sq), 0);
        else
            assert_int_equal(mp_queue_new(&b.q, 0), 0);
        pid_t pid = tu_fork(put_huge_item, &b);
        /* Kill it once the pipe is full of the item's first chunks and it
         * waits for room holding the write lock: part way through the item. */
        struct mp__qpipe *qp = simple ? mp__simplequeue_qpipe(b.sq) : mp__queue_qpipe(b.q);
        double end = tu_now() + T_LONG;
        bool mid_item = false;
        while (!mid_item && tu_now() < end) {
            mid_item = mp__bytes_ready(qp->rfd) > (ssize_t)(qp->pipe_cap - 4096) &&
                       wait_held_by_other(&qp->sh->wlock, 0);
            if (!mid_item)
                tu_sleep(0.001);
        }
        assert_true(mid_item);
        kill(pid, SIGKILL);
        assert_int_equal(tu_wait_child(pid, T_LONG), -SIGKILL);
        /* The next writer finds the write lock from a dead holder; readers
         * drop the torn item and get the new ones whole. (A thread writes
         * them: a SimpleQueue's put waits for the reader to make room.) */
        pthread_t writer;
        assert_int_equal(pthread_create(&writer, NULL, put_three_small, &b), 0);
        for (uint32_t i = 0; i < 3; i++) {
            void *d;
            size_t len;
            int rc = simple ? mp_simplequeue_get(b.sq, &d, &len, T_LONG)
                            : mp_queue_get(b.q, &d, &len, T_LONG);
            assert_int_equal(rc, 0);
            uint32_t seq;
            assert_true(check_item(d, len, &seq));
            assert_int_equal(len, 100);
            assert_int_equal(seq, 100 + i);
            free(d);
        }
        void *wrc;
        assert_int_equal(pthread_join(writer, &wrc), 0);
        assert_null(wrc);
        mp_queue_free(b.q);
        mp_simplequeue_free(b.sq);
        mp_shm_free(started);
    }
}

/* The reader-death window no kill test can aim at: after the kernel filled
 * the ring, before the reader advanced the tail. A child takes the read
 * lock, does exactly that much of a read, and dies. */
static int read_then_die(void *arg)
{
    struct mp__qpipe *qp = arg;
    struct mp__qpipe_shared *sh = qp->sh;
    pthread_mutex_lock(&sh->rlock);
    size_t n = sh->cap - (size_t)(sh->tail - sh->head);
    size_t at = (size_t)(sh->tail % sh->cap);
    if (sh->cap - at < n)
        n = sh->cap - at;
    memset(sh->ring + at, 0, n); /* as refill() zeroes before reading */
    if (sh->clean < sh->tail + n)
        sh->clean = sh->tail + n;
    sh->read_len = n;
    sh->reading = 1;
    ssize_t r = read(qp->rfd, sh->ring + at, n);
    _exit(r > 0 ? 0 : 1); /* dies holding the lock, tail not advanced */
}

static void test_queue_reader_killed_after_its_read_is_repaired(void **state)
{
    (void)state;
    struct mp__qpipe qp;
    assert_int_equal(mp__qpipe_open(&qp, MP_QUEUE_MAX_ITEM_DEFAULT), 0);
    unsigned char bufs[3][300];
    struct mp__qitem items[3];
    for (uint32_t i = 0; i < 3; i++) {
        items[i].data = bufs[i];
        items[i].len = make_item(bufs[i], i, 100 + 100 * i);
        items[i].kind = MP__QK_BYTES;
    }
    size_t written;
    assert_int_equal(
        mp__qpipe_write(&qp, items, 3, mp__deadline(T_LONG), NULL, NULL, &written, false), 0);
    assert_int_equal(written, 3);
    assert_int_equal(tu_wait_child(tu_fork(read_then_die, &qp), T_LONG), 0);
    /* The pipe is empty now: the items are only in the ring, past the
     * recorded tail. The next reader counts them in. */
    for (uint32_t i = 0; i < 3; i++) {
        void *d;
        size_t len;
        assert_int_equal(
            mp__qpipe_read(&qp, MP__QK_BYTES, NULL, NULL, &d, &len, NULL, mp__deadline(T_LONG)), 0);
        uint32_t seq;
        assert_true(check_item(d, len, &seq));
        assert_int_equal(seq, i);
        assert_int_equal(len, 100 + 100 * i);
        free(d);
    }
    void *d;
    size_t len;
    TU_ASSERT_STATUS(mp__qpipe_read(&qp, MP__QK_ANY, NULL, NULL, &d, &len, NULL, mp__deadline(0)),
                     MP_ETIMEDOUT);
    mp__qpipe_close_fds(&qp);
    mp__qpipe_destroy(&qp);
}

/* ---- a process that writes junk into the pipe ----------------------------------------------- */

/* Bounds for the timed checks below. The target is 50 ms past the timeout;
 * the tests allow more for a loaded machine and for valgrind (some 50 times
 * slower) and the sanitizers, and still fail by seconds before the fix. */
static double slow_factor(void)
{
    return tu_slowdown(20.0, 4.0);
}

#define LATE_MAX (0.25 * slow_factor())

/* Write all n bytes into the pipe as a stray writer would: no lock, and for
 * more than PIPE_BUF not even atomically. Returns false when the pipe had no
 * room for a long time. */
static bool raw_write(int fd, const void *p, size_t n)
{
    const unsigned char *b = p;
    double end = tu_now() + T_LONG;
    while (n > 0) {
        ssize_t r = write(fd, b, n);
        if (r > 0) {
            b += r;
            n -= (size_t)r;
            continue;
        }
        if (r < 0 && errno != EAGAIN && errno != EINTR)
            return false;
        if (tu_now() > end)
            return false;
        struct pollfd pfd = {fd, POLLOUT, 0};
        (void)poll(&pfd, 1, 10);
    }
    return true;
}

/* Write one chunk that readers take for one of the queue's own. */
static bool forge_chunk(struct mp__qpipe *qp, unsigned flags, const void *payload, size_t len)
{
    unsigned char buf[MP__QPIPE_HDR + MP__QPIPE_CHUNK_MAX];
    mp__qpipe_header(qp, flags, len, buf);
    if (len)
        memcpy(buf + MP__QPIPE_HDR, payload, len);
    return raw_write(qp->wfd, buf, MP__QPIPE_HDR + len);
}

/* Peak resident set of this process, in KiB. */
static long peak_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

struct flood {
    mp_queue *q;
    struct mp__qpipe *qp;
    atomic_int *ready;  /* the reader has measured its starting point */
    atomic_int *done;   /* the attacker has stopped */
    atomic_long *grown; /* the reader's peak RSS growth, KiB */
    atomic_int *gets;   /* the reader's gets that timed out */
    double seconds;
    size_t bytes;
};

/* START, then continuation chunks without end: what grew a reader's item
 * buffer without limit. */
static int continuation_flood(void *arg)
{
    struct flood *f = arg;
    watchdog();
    static unsigned char payload[MP__QPIPE_CHUNK_MAX];
    memset(payload, 'F', sizeof payload);
    double end = tu_now() + f->seconds;
    size_t sent = 0;
    int rc = forge_chunk(f->qp, MP__QF_START, payload, sizeof payload) ? 0 : 1;
    while (rc == 0 && tu_now() < end && sent < f->bytes) {
        if (!forge_chunk(f->qp, 0, payload, sizeof payload))
            rc = 2;
        sent += sizeof payload;
    }
    atomic_store(f->done, 1);
    return rc;
}

static int flood_reader(void *arg)
{
    struct flood *f = arg;
    watchdog();
    void *d;
    size_t len;
    /* Warm up (the first get makes what a get needs), then measure. */
    if (mp_queue_get(f->q, &d, &len, 0.01) != MP_EMPTY)
        return 1;
    long before = peak_rss_kib();
    atomic_store(f->ready, 1);
    while (!atomic_load(f->done)) {
        int rc = mp_queue_get(f->q, &d, &len, 0.1);
        if (rc != MP_EMPTY)
            return 2; /* the flood is not an item */
        atomic_fetch_add(f->gets, 1);
    }
    atomic_store(f->grown, peak_rss_kib() - before); /* the parent puts now */
    /* The queue still works: the parent's item arrives whole. */
    if (mp_queue_get(f->q, &d, &len, T_LONG) != 0)
        return 3;
    bool ok = len == 5 && memcmp(d, "after", 5) == 0;
    free(d);
    return ok ? 0 : 4;
}

static void test_queue_continuation_flood_keeps_reader_memory_bounded(void **state)
{
    (void)state;
    /* A process floods the pipe with a START and then continuation chunks,
     * 256 MiB of them (or 3 s worth). The reader drops the item once it is
     * over max_item (1 MiB here) and skips the rest as it comes: its peak
     * RSS grows by about max_item, where it used to grow by the flood. */
    struct {
        atomic_int ready, done, gets;
        atomic_long grown;
    } * sh;
    assert_int_equal(mp_shm_alloc((void **)&sh, sizeof *sh), 0);
    mp_queue_opts opts = MP_QUEUE_OPTS_INIT;
    opts.max_item = (size_t)1 << 20;
    mp_queue *q;
    assert_int_equal(mp_queue_new_opts(&q, &opts), 0);
    atomic_store(&sh->grown, -1);
    struct flood f = {q,          mp__queue_qpipe(q), &sh->ready, &sh->done,
                      &sh->grown, &sh->gets,          3.0,        256u << 20};
    pid_t reader = tu_fork(flood_reader, &f);
    double end = tu_now() + T_LONG;
    while (!atomic_load(&sh->ready) && tu_now() < end)
        tu_sleep(0.001);
    pid_t attacker = tu_fork(continuation_flood, &f);
    assert_int_equal(tu_wait_child(attacker, T_LONG), 0);
    while (atomic_load(&sh->grown) < 0 && tu_now() < end)
        tu_sleep(0.001); /* the reader is out of its flood loop */
    assert_int_equal(mp_queue_put(q, "after", 5, MP_FOREVER), 0);
    assert_int_equal(tu_wait_child(reader, T_LONG), 0);
    long grown = atomic_load(&sh->grown);
    print_message("reader peak RSS grew by %ld KiB under the flood (%d gets timed out)\n", grown,
                  atomic_load(&sh->gets));
    assert_true(grown < 16 * 1024);
    assert_true(atomic_load(&sh->gets) > 0);
    mp_queue_free(q);
    mp_shm_free(sh);
}

struct drip {
    struct mp__qpipe *qp;
    atomic_int *stop;
    bool junk; /* junk bytes rather than forged continuation chunks */
};

/* A START, then a continuation chunk every 10 ms (or ten junk bytes every
 * 10 ms), until told to stop. */
static int drip(void *arg)
{
    struct drip *d = arg;
    watchdog();
    unsigned char payload[MP__QPIPE_CHUNK_MAX];
    memset(payload, 'D', sizeof payload);
    if (!d->junk && !forge_chunk(d->qp, MP__QF_START, payload, sizeof payload))
        return 1;
    double end = tu_now() + T_LONG;
    while (!atomic_load(d->stop) && tu_now() < end) {
        bool ok = d->junk ? raw_write(d->qp->wfd, "junk\x81\x00junk", 10)
                          : forge_chunk(d->qp, 0, payload, sizeof payload);
        if (!ok)
            return 2;
        tu_sleep(0.01);
    }
    return 0;
}

static void test_queue_get_timeout_holds_while_chunks_drip_in(void **state)
{
    (void)state;
    /* Something keeps writing into the pipe every 10 ms: continuation
     * chunks of an item that never ends, or junk. A get still returns by
     * its timeout (it used to wait as long as the drip lasted: 8 s and
     * more), and an item put meanwhile still arrives. */
    atomic_int *stop;
    assert_int_equal(mp_shm_alloc((void **)&stop, sizeof *stop), 0);
    for (int junk = 0; junk <= 1; junk++) {
        mp_queue *q;
        assert_int_equal(mp_queue_new(&q, 0), 0);
        atomic_store(stop, 0);
        struct drip dr = {mp__queue_qpipe(q), stop, junk};
        pid_t pid = tu_fork(drip, &dr);
        double worst = 0;
        const double timeouts[] = {0.2, 0.5, 0.05, 0};
        for (size_t i = 0; i < sizeof timeouts / sizeof timeouts[0]; i++) {
            int v;
            double t0 = tu_now();
            TU_ASSERT_STATUS(get_int(q, &v, timeouts[i]), MP_EMPTY);
            double late = tu_now() - t0 - timeouts[i];
            if (late > worst)
                worst = late;
        }
        print_message("%s drip: gets returned at most %.1f ms past their timeout\n",
                      junk ? "junk" : "continuation", worst * 1000);
        assert_true(worst < LATE_MAX);
        assert_int_equal(put_int(q, 77, MP_FOREVER), 0);
        int v = 0;
        assert_int_equal(get_int(q, &v, T_LONG), 0);
        assert_int_equal(v, 77);
        atomic_store(stop, 1);
        assert_int_equal(tu_wait_child(pid, T_LONG), 0);
        assert_int_equal(mp_queue_qsize(q), 0);
        mp_queue_free(q);
    }
    mp_shm_free(stop);
}

/* Junk of every sort a stray writer makes, each piece ending on a byte that
 * could start a header. */
static size_t make_junk(unsigned char *buf, int which, unsigned *seed)
{
    switch (which % 6) {
    case 0:
        memcpy(buf, "hello, this is not a chunk\n", 27);
        return 27;
    case 1:
        memset(buf, 0, 100); /* zeros */
        return 100;
    case 2:
        /* Random bytes, more than one write's worth (not atomic). */
        for (size_t i = 0; i < 6000; i++) {
            *seed = *seed * 1103515245u + 12345u;
            buf[i] = (unsigned char)(*seed >> 16);
        }
        return 6000;
    case 3:
        /* A chunk in the old 4-byte format: START|END, 5 bytes. */
        memcpy(buf,
               "\x83\x05\x00\x00"
               "abcde",
               9);
        return 9;
    case 4:
        /* A header of the right shape with a wrong check, and 20 bytes. */
        memset(buf, 'x', 28);
        memcpy(buf, "\x83\x14\x00\x00\x01\x02\x03\x04", 8);
        return 28;
    default:
        buf[0] = 0x80 | MP__QF_START | MP__QF_END; /* a lone header byte */
        return 1;
    }
}

static void test_queue_junk_between_items_costs_only_the_junk(void **state)
{
    (void)state;
    /* A bounded JoinableQueue of 6 places. Between the items in the pipe,
     * junk: text, zeros, random bytes, an old-format chunk, a header with a
     * wrong check, a lone header byte. One get reads it all ahead; every item
     * arrives whole and in order (the reader used to drop everything read
     * with the junk), nothing else arrives, and every count is exact after:
     * qsize 0, six places free, join() done after six task_done(). */
    enum { N = 6 };
    mp_queue *q;
    assert_int_equal(mp_queue_new_joinable(&q, N), 0);
    struct mp__qpipe *qp = mp__queue_qpipe(q);
    unsigned char *junk = malloc(8192), *item = malloc(3 * MP__QPIPE_CHUNK_MAX);
    unsigned seed = 1;
    size_t sizes[N];
    for (int i = 0; i < N; i++) {
        /* Every third item is a big one (several chunks). */
        sizes[i] = i % 3 == 2 ? 2 * MP__QPIPE_CHUNK_MAX + 100 : (size_t)(10 + 40 * i);
        ssize_t before = mp__bytes_ready(qp->rfd);
        assert_int_equal(mp_queue_put(q, item, make_item(item, (uint32_t)i, sizes[i]), T_LONG), 0);
        /* The feeder has written it when the pipe holds it. */
        double end = tu_now() + T_LONG;
        while (mp__bytes_ready(qp->rfd) <= before && tu_now() < end)
            tu_sleep(0.001);
        assert_true(raw_write(qp->wfd, junk, make_junk(junk, i, &seed)));
    }
    assert_int_equal(mp_queue_full(q), 1);
    for (int i = 0; i < N; i++) {
        void *d;
        size_t len;
        assert_int_equal(mp_queue_get(q, &d, &len, T_LONG), 0);
        uint32_t seq;
        assert_int_equal(len, sizes[i]);
        assert_true(check_item(d, len, &seq));
        assert_int_equal(seq, i);
        free(d);
    }
    void *d;
    size_t len;
    TU_ASSERT_STATUS(mp_queue_get(q, &d, &len, 0.1), MP_EMPTY);
    assert_int_equal(mp_queue_qsize(q), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(mp_queue_task_done(q), 0);
    assert_int_equal(mp_queue_join(q, 0), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(put_int(q, i, MP_NOWAIT), 0);
    TU_ASSERT_STATUS(put_int(q, N, MP_NOWAIT), MP_FULL);
    assert_int_equal(mp_queue_qsize(q), N);
    free(junk);
    free(item);
    mp_queue_free(q);
}

struct junk_race {
    mp_queue *q;
    struct mp__qpipe *qp;
    atomic_int *stop;
};

static int junk_writer(void *arg)
{
    struct junk_race *j = arg;
    watchdog();
    unsigned char *buf = malloc(8192);
    unsigned seed = (unsigned)getpid();
    double end = tu_now() + T_LONG;
    for (int i = 0; !atomic_load(j->stop) && tu_now() < end; i++) {
        if (!raw_write(j->qp->wfd, buf, make_junk(buf, i, &seed)))
            return 1;
        tu_sleep(0.0005);
    }
    free(buf);
    return 0;
}

#define RACE_ITEMS 3000

static int race_producer(void *arg)
{
    struct junk_race *j = arg;
    watchdog();
    unsigned char buf[600];
    for (uint32_t i = 0; i < RACE_ITEMS; i++)
        if (mp_queue_put(j->q, buf, make_item(buf, i, 4 + i % 590), MP_FOREVER) != 0)
            return 1;
    return 0;
}

static void test_queue_junk_written_while_items_flow_loses_nothing(void **state)
{
    (void)state;
    /* A process writes junk into the pipe while a producer puts 3,000 items
     * into a bounded queue of 20 places: every item arrives once, whole and
     * in order; then the queue is empty, qsize is 0 and all 20 places are
     * free. */
    atomic_int *stop;
    assert_int_equal(mp_shm_alloc((void **)&stop, sizeof *stop), 0);
    mp_queue *q;
    assert_int_equal(mp_queue_new(&q, 20), 0);
    struct junk_race j = {q, mp__queue_qpipe(q), stop};
    pid_t attacker = tu_fork(junk_writer, &j);
    mp_process *producer = spawn(race_producer, &j);
    for (uint32_t i = 0; i < RACE_ITEMS; i++) {
        void *d;
        size_t len;
        int rc = mp_queue_get(q, &d, &len, T_LONG);
        if (rc != 0)
            fail_msg("item %u: %s", i, mp_errname(rc));
        uint32_t seq;
        assert_true(check_item(d, len, &seq));
        assert_int_equal(len, 4 + i % 590);
        assert_int_equal(seq, i);
        free(d);
    }
    atomic_store(stop, 1);
    assert_int_equal(tu_wait_child(attacker, T_LONG), 0);
    assert_int_equal(finish(producer, T_LONG), 0);
    int v;
    TU_ASSERT_STATUS(get_int(q, &v, 0.1), MP_EMPTY);
    assert_int_equal(mp_queue_qsize(q), 0);
    for (int i = 0; i < 20; i++)
        assert_int_equal(put_int(q, i, MP_NOWAIT), 0);
    TU_ASSERT_STATUS(put_int(q, 20, MP_NOWAIT), MP_FULL);
    mp_queue_free(q);
    mp_shm_free(stop);
}

static void test_queue_item_over_max_item_is_refused_or_dropped(void **state)
{
    (void)state;
    /* max_item bounds an item both ways: a put over it is refused with
     * MP_ETOOLONG (nothing is put), and an item over it that reaches the
     * pipe anyway is dropped as it streams in; the next item follows. */
    enum { MAX = 10000 };
    mp_queue_opts opts = MP_QUEUE_OPTS_INIT;
    opts.max_item = MAX;
    mp_simplequeue *q;
    assert_int_equal(mp_simplequeue_new_opts(&q, &opts), 0);
    unsigned char *buf = malloc(5 * MP__QPIPE_CHUNK_MAX);
    make_item(buf, 3, MAX + 1);
    TU_ASSERT_STATUS(mp_simplequeue_put(q, buf, MAX + 1, T_LONG), MP_ETOOLONG);
    mp_obj *o = big_str(MAX);
    TU_ASSERT_STATUS(mp_simplequeue_put_obj(q, o, T_LONG), MP_ETOOLONG); /* pickle > MAX */
    mp_obj_free(o);
    assert_int_equal(mp_simplequeue_put(q, buf, MAX, T_LONG), 0);
    /* 5 chunks, 20,440 bytes: forged, as only a stray writer can. */
    struct mp__qpipe *qp = mp__simplequeue_qpipe(q);
    for (int c = 0; c < 5; c++)
        assert_true(forge_chunk(qp, (c == 0 ? MP__QF_START : 0) | (c == 4 ? MP__QF_END : 0), buf,
                                MP__QPIPE_CHUNK_MAX));
    assert_int_equal(mp_simplequeue_put(q, "small", 5, T_LONG), 0);
    void *d;
    size_t len;
    assert_int_equal(mp_simplequeue_get(q, &d, &len, T_LONG), 0);
    assert_int_equal(len, MAX);
    free(d);
    assert_int_equal(mp_simplequeue_get(q, &d, &len, T_LONG), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(d, "small", 5);
    free(d);
    TU_ASSERT_STATUS(mp_simplequeue_get(q, &d, &len, 0.05), MP_EMPTY);
    mp_simplequeue_free(q);

    mp_queue *bad;
    opts.max_item = SIZE_MAX;
    TU_ASSERT_STATUS(mp_queue_new_opts(&bad, &opts), MP_EVALUE);
    assert_null(bad);
    opts.max_item = 0;
    opts.maxsize = 1;
    TU_ASSERT_STATUS(mp_simplequeue_new_opts(&q, &opts), -EINVAL);
    TU_ASSERT_STATUS(mp_queue_new_opts(NULL, NULL), -EINVAL);
    assert_int_equal(mp_queue_new_opts(&bad, NULL), 0);
    TU_ASSERT_STATUS(mp_queue_put(bad, buf, MP_QUEUE_MAX_ITEM_DEFAULT + 1, 0), MP_ETOOLONG);
    mp_queue_free(bad);
    free(buf);
}

static int get_obj_times_out(void *arg)
{
    watchdog();
    mp_obj *o;
    double t0 = tu_now();
    if (mp_simplequeue_get_obj(arg, &o, 0.1) != MP_EMPTY)
        return 1;
    return tu_now() - t0 < 0.1 + LATE_MAX ? 0 : 2;
}

static void test_queue_part_of_an_item_left_by_a_timed_out_get_keeps_its_kind(void **state)
{
    (void)state;
    /* A writer is part way through a big value (it holds the write lock);
     * a get_obj in another process times out with part of it (it used to
     * wait for the rest, whatever its timeout) and leaves that part at the
     * head. get() of bytes is refused, get_item goes on with it and times
     * out again, and once the rest comes get_obj has the value, whole. */
    mp_simplequeue *q;
    assert_int_equal(mp_simplequeue_new(&q), 0);
    struct mp__qpipe *qp = mp__simplequeue_qpipe(q);
    enum { N = 5 * MP__QPIPE_CHUNK_MAX };
    mp_obj *v = big_str(N);
    unsigned char *pk;
    size_t pklen;
    assert_int_equal(mp__pickle_dumps(v, &pk, &pklen), 0);
    size_t nchunks = (pklen + MP__QPIPE_CHUNK_MAX - 1) / MP__QPIPE_CHUNK_MAX;
    assert_true(nchunks >= 3);
    assert_int_equal(pthread_mutex_lock(&qp->sh->wlock), 0); /* a live writer */
    for (size_t c = 0; c + 1 < nchunks; c++)
        assert_true(forge_chunk(qp, MP__QF_OBJ | (c == 0 ? MP__QF_START : 0),
                                pk + c * MP__QPIPE_CHUNK_MAX, MP__QPIPE_CHUNK_MAX));
    /* The first get is in another process: what it leaves is the head for
     * this one. */
    assert_int_equal(tu_wait_child(tu_fork(get_obj_times_out, q), 5.0), 0);
    assert_int_equal(qp->sh->held, 1);
    mp_obj *o;
    void *d;
    size_t len;
    TU_ASSERT_STATUS(mp_simplequeue_get(q, &d, &len, T_LONG), MP_ETYPE);
    TU_ASSERT_STATUS(mp_simplequeue_get_item(q, &d, &len, &o, 0.05), MP_EMPTY);
    assert_int_equal(qp->sh->held, 1);
    size_t last = pklen - (nchunks - 1) * MP__QPIPE_CHUNK_MAX;
    assert_true(
        forge_chunk(qp, MP__QF_OBJ | MP__QF_END, pk + (nchunks - 1) * MP__QPIPE_CHUNK_MAX, last));
    assert_int_equal(pthread_mutex_unlock(&qp->sh->wlock), 0);
    TU_ASSERT_STATUS(mp_simplequeue_get(q, &d, &len, T_LONG), MP_ETYPE);
    assert_int_equal(mp_simplequeue_get_obj(q, &o, T_LONG), 0);
    assert_true(is_big_str(o, N));
    assert_int_equal(qp->sh->held, 0);
    mp_obj_free(o);
    mp_obj_free(v);
    free(pk);
    mp_simplequeue_free(q);
}

struct slow_item {
    mp_queue *q;
    struct mp__qpipe *qp;
    atomic_int *got; /* readers that got the item */
    atomic_int *bad; /* readers that got something wrong */
    atomic_int *timeouts;
    atomic_int *late; /* gets that returned later than LATE_MAX */
};

#define SLOW_CHUNKS 256 /* about 1 MiB */

/* A writer as the library's, but slow: it holds the write lock for the
 * whole item and pauses 50 ms after every 32 chunks, as a writer that is
 * descheduled, stopped or swapped out would. */
static int write_slow_item(void *arg)
{
    struct slow_item *s = arg;
    watchdog();
    unsigned char *buf = malloc(SLOW_CHUNKS * MP__QPIPE_CHUNK_MAX);
    make_item(buf, 11, SLOW_CHUNKS * MP__QPIPE_CHUNK_MAX);
    pthread_mutex_lock(&s->qp->sh->wlock);
    for (int c = 0; c < SLOW_CHUNKS; c++) {
        unsigned flags = (c == 0 ? MP__QF_START : 0) | (c == SLOW_CHUNKS - 1 ? MP__QF_END : 0);
        if (!forge_chunk(s->qp, flags, buf + (size_t)c * MP__QPIPE_CHUNK_MAX, MP__QPIPE_CHUNK_MAX))
            return 1;
        if (c % 32 == 31)
            tu_sleep(0.05);
    }
    pthread_mutex_unlock(&s->qp->sh->wlock);
    free(buf);
    return 0;
}

static int impatient_reader(void *arg)
{
    struct slow_item *s = arg;
    watchdog();
    double end = tu_now() + T_LONG;
    while (atomic_load(s->got) == 0 && tu_now() < end) {
        void *d;
        size_t len;
        double t0 = tu_now();
        int rc = mp_queue_get(s->q, &d, &len, 0.02);
        if (tu_now() - t0 > 0.02 + LATE_MAX)
            atomic_fetch_add(s->late, 1);
        if (rc == MP_EMPTY) {
            atomic_fetch_add(s->timeouts, 1);
            tu_sleep(0.002); /* let the other reader have a turn */
            continue;
        }
        uint32_t seq;
        if (rc != 0 || len != SLOW_CHUNKS * MP__QPIPE_CHUNK_MAX || !check_item(d, len, &seq) ||
            seq != 11)
            atomic_fetch_add(s->bad, 1);
        else
            atomic_fetch_add(s->got, 1);
        free(d);
    }
    return 0;
}

static void test_queue_big_item_from_a_slow_writer_is_finished_by_any_reader(void **state)
{
    (void)state;
    /* A live writer takes 0.4 s over a 1 MiB item; two reader processes
     * keep calling get(timeout=0.02). Each get returns in time (it used to
     * wait for the whole item) and leaves what it received at the head; the
     * next get, in whichever process, goes on. Exactly one reader gets the
     * item, whole. */
    struct {
        atomic_int got, bad, timeouts, late;
    } * sh;
    assert_int_equal(mp_shm_alloc((void **)&sh, sizeof *sh), 0);
    mp_queue *q;
    assert_int_equal(mp_queue_new(&q, 0), 0);
    struct slow_item s = {q, mp__queue_qpipe(q), &sh->got, &sh->bad, &sh->timeouts, &sh->late};
    pid_t pids[3];
    for (int i = 0; i < 2; i++)
        pids[i] = tu_fork(impatient_reader, &s);
    pids[2] = tu_fork(write_slow_item, &s);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tu_wait_child(pids[i], T_LONG), 0);
    assert_int_equal(atomic_load(&sh->bad), 0);
    assert_int_equal(atomic_load(&sh->got), 1);
    assert_int_equal(atomic_load(&sh->late), 0);
    /* Seven pauses of 50 ms in mid-item: gets timed out there. */
    assert_true(atomic_load(&sh->timeouts) >= 7);
    assert_int_equal(s.qp->sh->held, 0);
    mp_queue_free(q);
    mp_shm_free(sh);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_queue_items_of_every_size_arrive_whole_and_in_order),
        TU_TEST(test_queue_item_larger_than_the_pipe_passes),
        TU_TEST(test_queue_get_nowait_polling_receives_a_big_item_whole),
        TU_TEST(test_queue_many_producers_and_consumers_lose_and_duplicate_nothing),
        TU_TEST(test_queue_consumer_killed_holding_the_read_lock_does_not_wedge),
        TU_TEST(test_queue_consumers_killed_at_random_lose_only_what_they_held),
        TU_TEST(test_queue_writer_killed_mid_item_does_not_corrupt_the_stream),
        TU_TEST(test_queue_reader_killed_after_its_read_is_repaired),
        TU_TEST(test_queue_continuation_flood_keeps_reader_memory_bounded),
        TU_TEST(test_queue_get_timeout_holds_while_chunks_drip_in),
        TU_TEST(test_queue_junk_between_items_costs_only_the_junk),
        TU_TEST(test_queue_junk_written_while_items_flow_loses_nothing),
        TU_TEST(test_queue_item_over_max_item_is_refused_or_dropped),
        TU_TEST(test_queue_part_of_an_item_left_by_a_timed_out_get_keeps_its_kind),
        TU_TEST(test_queue_big_item_from_a_slow_writer_is_finished_by_any_reader),
    };
    tu_filter(argc, argv);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
