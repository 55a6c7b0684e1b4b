/*
 * queue: Python's Queue, JoinableQueue and SimpleQueue for forked processes
 * (_TestQueue and _TestSimpleQueue in Lib/test/_test_multiprocessing.py), and
 * what CPython gets wrong: a child that put more than a pipe holds can exit
 * while its parent joins it (gh-73983), and processes killed in the middle
 * of a get or a put neither wedge nor corrupt the queue.
 *
 * Producers are mp_process children: their exit procedure is what flushes
 * the feeder, as Python's does. A test name filter may be given as the first
 * argument (cmocka glob): test_queue '*many*'.
 */
#include "testutil.h"

#include "io.h"
#include "qpipe.h"

#include <mpipc/obj.h>
#include <mpipc/process.h>
#include <mpipc/queue.h>
#include <mpipc/sync.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T_LONG 30.0 /* a bound that only a hang can reach */
#define DELTA  0.1  /* Python's DELTA */
#define SLACK  1.5  /* how late a timed call may return on a loaded machine */

#define ASSERT_TOOK(t0, expected)                                                                  \
    do {                                                                                           \
        double took_ = tu_now() - (t0);                                                            \
        if (took_ < (expected)-0.005 || took_ > (expected) + SLACK)                                \
            fail_msg("took %.3f s, expected about %.3f s", took_, (double)(expected));             \
    } while (0)

static mp_process *spawn(mp_target_fn fn, void *arg)
{
    mp_process *p;
    assert_int_equal(mp_process_new(&p, fn, arg), 0);
    assert_int_equal(mp_process_start(p), 0);
    return p;
}

/* Join with a deadline (killing a child that overstays) and free; returns
 * the exit code, -signal, or TU_TIMEOUT. */
static int finish(mp_process *p, double timeout)
{
    int rc = mp_process_join(p, timeout);
    if (rc == MP_ETIMEDOUT) {
        mp_process_kill(p);
        mp_process_join(p, T_LONG);
    }
    int code = -9999;
    mp_process_exitcode(p, &code);
    mp_process_free(p);
    return rc == MP_ETIMEDOUT ? TU_TIMEOUT : code;
}

/* Children run with the test's watchdog too. */
static void watchdog(void)
{
    alarm(TU_CHILD_LIFETIME);
}

static int put_int(mp_queue *q, int v, double timeout)
{
    return mp_queue_put(q, &v, sizeof v, timeout);
}

/* get() an int; returns the status, *v the value. */
static int get_int(mp_queue *q, int *v, double timeout)
{
    void *d;
    size_t len;
    int rc = mp_queue_get(q, &d, &len, timeout);
    if (rc == 0) {
        if (len == sizeof *v)
            memcpy(v, d, sizeof *v);
        else
            rc = -EBADMSG;
        free(d);
    }
    return rc;
}

/* Poll until the queue stops looking empty (Python's race: put() returns
 * before the feeder wrote the item). */
static void wait_not_empty(mp_queue *q)
{
    double end = tu_now() + T_LONG;
    while (mp_queue_empty(q) && tu_now() < end)
        tu_sleep(0.002);
}

/* ---- _TestQueue ports ------------------------------------------------------------ */

struct events {
    mp_queue *q;
    mp_event *child_can_start;
    mp_event *parent_can_continue;
};

static int take_six(void *arg)
{
    struct events *e = arg;
    watchdog();
    if (mp_event_wait(e->child_can_start, T_LONG) != 0)
        return 1;
    for (int i = 0; i < 6; i++) {
        int v;
        if (get_int(e->q, &v, T_LONG) != 0 || v != i + 1)
            return 2;
    }
    return mp_event_set(e->parent_can_continue) == 0 ? 0 : 3;
}

static void test_queue_bounded_put_like_python(void **state)
{
    (void)state;
    /* _TestQueue.test_put */
    enum { MAXSIZE = 6 };
    struct events e;
    assert_int_equal(mp_queue_new(&e.q, MAXSIZE), 0);
    assert_int_equal(mp_event_new(&e.child_can_start), 0);
    assert_int_equal(mp_event_new(&e.parent_can_continue), 0);
    mp_process *p = spawn(take_six, &e);

    assert_int_equal(mp_queue_empty(e.q), 1);
    assert_int_equal(mp_queue_full(e.q), 0);
    assert_int_equal(put_int(e.q, 1, MP_FOREVER), 0);
    assert_int_equal(put_int(e.q, 2, MP_FOREVER), 0);
    assert_int_equal(put_int(e.q, 3, 5.0), 0);
    assert_int_equal(put_int(e.q, 4, MP_NOWAIT), 0);
    assert_int_equal(put_int(e.q, 5, MP_NOWAIT), 0);
    assert_int_equal(put_int(e.q, 6, MP_NOWAIT), 0);
    wait_not_empty(e.q);
    assert_int_equal(mp_queue_empty(e.q), 0);
    assert_int_equal(mp_queue_full(e.q), 1);
    assert_int_equal(mp_queue_qsize(e.q), 6);

    double t0 = tu_now();
    TU_ASSERT_STATUS(put_int(e.q, 7, MP_NOWAIT), MP_FULL);
    ASSERT_TOOK(t0, 0.0);
    t0 = tu_now();
    TU_ASSERT_STATUS(put_int(e.q, 7, 0.1), MP_FULL);
    ASSERT_TOOK(t0, 0.1);
    t0 = tu_now();
    TU_ASSERT_STATUS(put_int(e.q, 7, 0.25), MP_FULL);
    ASSERT_TOOK(t0, 0.25);

    assert_int_equal(mp_event_set(e.child_can_start), 0);
    assert_int_equal(mp_event_wait(e.parent_can_continue, T_LONG), 0);
    assert_int_equal(mp_queue_empty(e.q), 1);
    assert_int_equal(mp_queue_full(e.q), 0);
    assert_int_equal(mp_queue_qsize(e.q), 0);
    assert_int_equal(finish(p, T_LONG), 0);
    mp_queue_free(e.q);
    mp_event_free(e.child_can_start);
    mp_event_free(e.parent_can_continue);
}

static int put_two_to_five(void *arg)
{
    struct events *e = arg;
    watchdog();
    if (mp_event_wait(e->child_can_start, T_LONG) != 0)
        return 1;
    for (int v = 2; v <= 5; v++)
        if (put_int(e->q, v, MP_FOREVER) != 0)
            return 2;
    return mp_event_set(e->parent_can_continue) == 0 ? 0 : 3;
}

static void test_queue_get_like_python(void **state)
{
    (void)state;
    /* _TestQueue.test_get */
    struct events e;
    assert_int_equal(mp_queue_new(&e.q, 0), 0);
    assert_int_equal(mp_event_new(&e.child_can_start), 0);
    assert_int_equal(mp_event_new(&e.parent_can_continue), 0);
    mp_process *p = spawn(put_two_to_five, &e);
    assert_int_equal(mp_queue_empty(e.q), 1);
    assert_int_equal(mp_event_set(e.child_can_start), 0);
    assert_int_equal(mp_event_wait(e.parent_can_continue, T_LONG), 0);
    wait_not_empty(e.q);
    assert_int_equal(mp_queue_empty(e.q), 0);

    int v;
    assert_int_equal(get_int(e.q, &v, MP_FOREVER), 0);
    assert_int_equal(v, 2);
    assert_int_equal(get_int(e.q, &v, MP_FOREVER), 0);
    assert_int_equal(v, 3);
    assert_int_equal(get_int(e.q, &v, 1.0), 0);
    assert_int_equal(v, 4);
    /* The child has ended (so flushed); the last item is in the pipe. */
    assert_int_equal(finish(p, T_LONG), 0);
    assert_int_equal(get_int(e.q, &v, MP_NOWAIT), 0);
    assert_int_equal(v, 5);
    assert_int_equal(mp_queue_empty(e.q), 1);

    double t0 = tu_now();
    TU_ASSERT_STATUS(get_int(e.q, &v, MP_NOWAIT), MP_EMPTY);
    ASSERT_TOOK(t0, 0.0);
    t0 = tu_now();
    TU_ASSERT_STATUS(get_int(e.q, &v, 0.1), MP_EMPTY);
    ASSERT_TOOK(t0, 0.1);
    t0 = tu_now();
    TU_ASSERT_STATUS(get_int(e.q, &v, 0.25), MP_EMPTY);
    ASSERT_TOOK(t0, 0.25);
    mp_queue_free(e.q);
    mp_event_free(e.child_can_start);
    mp_event_free(e.parent_can_continue);
}

static int put_ten_to_twenty(void *arg)
{
    watchdog();
    for (int i = 10; i < 20; i++)
        if (put_int(arg, i, MP_FOREVER) != 0)
            return 1;
    return 0;
}

static void test_queue_items_put_before_and_after_fork_all_arrive(void **state)
{
    (void)state;
    /* _TestQueue.test_fork: the parent's ten, put before fork, then the
     * child's ten, each producer in order. */
    mp_queue *q;
    assert_int_equal(mp_queue_new(&q, 0), 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(put_int(q, i, MP_FOREVER), 0);
    tu_sleep(DELTA);
    mp_process *p = spawn(put_ten_to_twenty, q);
    for (int i = 0; i < 20; i++) {
        int v = -1;
        assert_int_equal(get_int(q, &v, T_LONG), 0);
        assert_int_equal(v, i);
    }
    int v;
    TU_ASSERT_STATUS(get_int(q, &v, MP_NOWAIT), MP_EMPTY);
    assert_int_equal(finish(p, T_LONG), 0);
    mp_queue_free(q);
}

static int put_ten_from_a_million(void *arg)
{
    watchdog();
    for (int i = 1000000; i < 1000010; i++)
        if (put_int(arg, i, MP_FOREVER) != 0)
            return 1;
    return 0;
}

static int just_exit(void *arg)
{
    (void)arg;
    return 0;
}

static void test_queue_child_forked_mid_feed_never_resends_parent_items(void **state)
{
    (void)state;
    /* The parent's feeder still holds items when children fork; each
     * child's copy of that buffer is dropped, so every item arrives once. */
    enum { N = 3000 };
    mp_queue *q;
    assert_int_equal(mp_queue_new(&q, 0), 0);
    mp_process *kids[4];
    for (int i = 0; i < N; i++) {
        assert_int_equal(put_int(q, i, MP_FOREVER), 0);
        if (i % 1000 == 999)
            kids[i / 1000] = spawn(just_exit, NULL);
    }
    kids[3] = spawn(put_ten_from_a_million, q);
    int parent_next = 0, child_next = 1000000;
    for (int n = 0; n < N + 10; n++) {
        int v = -1;
        assert_int_equal(get_int(q, &v, T_LONG), 0);
        if (v >= 1000000 && v == child_next)
            child_next++; /* the child's own items */
        else if (v == parent_next)
            parent_next++;
        else
            fail_msg("item %d out of order (parent next %d, child next %d)", v, parent_next,
                     child_next);
    }
    int v;
    TU_ASSERT_STATUS(get_int(q, &v, 0.2), MP_EMPTY);
    for (int i = 0; i < 4; i++)
        assert_int_equal(finish(kids[i], T_LONG), 0);
    mp_queue_free(q);
}

static void test_queue_qsize_goes_0_1_2_1_0(void **state)
{
    (void)state;
    /* _TestQueue.test_qsize */
    mp_queue *q;
    assert_int_equal(mp_queue_new(&q, 0), 0);
    assert_int_equal(mp_queue_qsize(q), 0);
    assert_int_equal(put_int(q, 1, MP_FOREVER), 0);
    assert_int_equal(mp_queue_qsize(q), 1);
    assert_int_equal(put_int(q, 5, MP_FOREVER), 0);
    assert_int_equal(mp_queue_qsize(q), 2);
    int v;
    assert_int_equal(get_int(q, &v, T_LONG), 0);
    assert_int_equal(mp_queue_qsize(q), 1);
    assert_int_equal(get_int(q, &v, T_LONG), 0);
    assert_int_equal(mp_queue_qsize(q), 0);
    TU_ASSERT_STATUS(mp_queue_qsize(NULL), -EINVAL);
    mp_queue_free(q);
}

static void test_queue_get_timeout(void **state)
{
    (void)state;
    /* _TestQueue.test_timeout */
    mp_queue *q;
    assert_int_equal(mp_queue_new(&q, 0), 0);
    double t0 = tu_now();
    int v;
    TU_ASSERT_STATUS(get_int(q, &v, 0.2), MP_EMPTY);
    ASSERT_TOOK(t0, 0.2);
    mp_queue_free(q);
}

static void test_queue_put_and_get_after_close_are_eclosed(void **state)
{
    (void)state;
    /* _TestQueue.test_closed_queue_put_get_exceptions */
    for (int joinable = 0; joinable <= 1; joinable++) {
        mp_queue *q;
        assert_int_equal(joinable ? mp_queue_new_joinable(&q, 0) : mp_queue_new(&q, 0), 0);
        /* join_thread before close: Python's AssertionError. */
        TU_ASSERT_STATUS(mp_queue_join_thread(q), MP_ESTATE);
        assert_int_equal(put_int(q, 1, MP_FOREVER), 0);
        assert_int_equal(mp_queue_close(q), 0);
        assert_int_equal(mp_queue_close(q), 0);
        assert_int_equal(mp_queue_join_thread(q), 0);
        TU_ASSERT_STATUS(put_int(q, 2, MP_FOREVER), MP_ECLOSED);
        int v;
        TU_ASSERT_STATUS(get_int(q, &v, MP_FOREVER), MP_ECLOSED);
        mp_queue_free(q);
    }
    TU_ASSERT_STATUS(mp_queue_put(NULL, "x", 1, 0), -EINVAL);
    mp_queue *q;
    assert_int_equal(mp_queue_new(&q, 0), 0);
    TU_ASSERT_STATUS(mp_queue_put(q, NULL, 1, 0), -EINVAL);
    TU_ASSERT_STATUS(mp_queue_get(q, NULL, NULL, 0), -EINVAL);
    mp_queue_free(q);
    mp_queue_free(NULL);
    TU_ASSERT_STATUS(mp_queue_new(NULL, 0), -EINVAL);
}

/* ---- sizes and order ------------------------------------------------------------------ */

/* A self-checking item: [seq][len][bytes derived from seq]. */
static size_t make_item(unsigned char *buf, uint32_t seq, size_t len)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (unsigned char)(seq * 31 + i * 7);
    if (len >= 4)
        memcpy(buf, &seq, 4);
    return len;
}

static bool check_item(const unsigned char *buf, size_t len, uint32_t *seq)
{
    uint32_t s = 0;
    if (len >= 4)
        memcpy(&s, buf, 4);
    for (size_t i = 4; i < len; i++)
        if (buf[i] != (unsigned char)(s * 31 + i * 7))
            return false;
    *seq = s;
    return true;
}

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

/* ---- the seed's sentinel pattern, with values ----------------------------------------- */

struct chef {
    mp_queue *q;
    const char *name;
    atomic_int *eaten;
};

static int chef(void *arg)
{
    struct chef *c = arg;
    watchdog();
    for (int i = 0; i < 2; i++) {
        char dish[32];
        snprintf(dish, sizeof dish, "%s%d", c->name, i);
        mp_obj *o = mp_obj_str_cstr(dish);
        int rc = mp_queue_put_obj(c->q, o, MP_FOREVER);
        mp_obj_free(o);
        if (rc != 0)
            return 1;
    }
    return 0;
}

static int eater(void *arg)
{
    struct chef *c = arg;
    watchdog();
    for (;;) {
        mp_obj *o;
        if (mp_queue_get_obj(c->q, &o, T_LONG) != 0)
            return 1;
        bool end = mp_obj_type(o) == MP_TYPE_NONE; /* if res is None: break */
        bool is_str = mp_obj_type(o) == MP_TYPE_STR;
        mp_obj_free(o);
        if (end)
            return 0;
        if (!is_str)
            return 2;
        atomic_fetch_add(c->eaten, 1);
    }
}

static void test_queue_sentinel_pattern_with_values_and_none(void **state)
{
    (void)state;
    /* Seed 004: three chefs, two eaters, one None per eater. */
    atomic_int *eaten;
    assert_int_equal(mp_shm_alloc((void **)&eaten, sizeof *eaten), 0);
    mp_queue *q;
    assert_int_equal(mp_queue_new(&q, 0), 0);
    const char *names[3] = {"baozi", "bone", "swill"};
    struct chef c[3], e = {q, NULL, eaten};
    mp_process *chefs[3], *eaters[2];
    for (int i = 0; i < 3; i++) {
        c[i] = (struct chef){q, names[i], eaten};
        chefs[i] = spawn(chef, &c[i]);
    }
    for (int i = 0; i < 2; i++)
        eaters[i] = spawn(eater, &e);
    for (int i = 0; i < 3; i++)
        assert_int_equal(finish(chefs[i], T_LONG), 0);
    mp_obj *none = mp_obj_none();
    for (int i = 0; i < 2; i++)
        assert_int_equal(mp_queue_put_obj(q, none, MP_FOREVER), 0);
    mp_obj_free(none);
    for (int i = 0; i < 2; i++)
        assert_int_equal(finish(eaters[i], T_LONG), 0);
    assert_int_equal(atomic_load(eaten), 6);

    mp_queue_free(q);
    mp_shm_free(eaten);
}

/* ---- exit: flushed, never a hang (gh-73983) --------------------------------------------- */

#define BIG_BATCH 2000

static int put_two_megabytes(void *arg)
{
    watchdog();
    unsigned char buf[1024];
    for (uint32_t i = 0; i < BIG_BATCH; i++) {
        make_item(buf, i, sizeof buf);
        if (mp_queue_put(arg, buf, sizeof buf, MP_FOREVER) != 0)
            return 1;
    }
    return 0; /* the exit procedure flushes what the feeder holds */
}

static void drain_in_order(mp_queue *q, uint32_t n, size_t len)
{
    for (uint32_t i = 0; i < n; i++) {
        void *d;
        size_t l;
        int rc = mp_queue_get(q, &d, &l, T_LONG);
        if (rc != 0)
            fail_msg("item %u: %s", i, mp_errname(rc));
        uint32_t seq = 0;
        assert_true(check_item(d, l, &seq));
        assert_int_equal(l, len);
        if (seq != i)
            fail_msg("item %u arrived as number %u", seq, i);
        free(d);
    }
}

static void test_queue_child_exits_while_parent_joins_before_reading(void **state)
{
    (void)state;
    /* CPython's documented deadlock: the parent joins a child before
     * draining what it put (2 MB into a 64 KiB pipe); Python hangs forever.
     * Here the child ends (after a pause of 0.1 s with a full pipe) and
     * nothing is lost: what the pipe could not take went to the spill
     * file, and arrives after the pipe's items, in order. */
    mp_queue *q;
    assert_int_equal(mp_queue_new(&q, 0), 0);
    mp_process *p = spawn(put_two_megabytes, q);
    double t0 = tu_now();
    assert_int_equal(mp_process_join(p, T_LONG), 0);
    assert_true(tu_now() - t0 < 10.0);
    assert_int_equal(finish(p, T_LONG), 0);
    drain_in_order(q, BIG_BATCH, 1024);
    int v;
    TU_ASSERT_STATUS(get_int(q, &v, 0.1), MP_EMPTY);
    mp_queue_free(q);
}

static int put_then_exit(void *arg)
{
    alarm(TU_CHILD_LIFETIME);
    if (put_two_megabytes(arg) != 0)
        _exit(1);
    exit(0); /* a plain exit(): atexit runs the library's exit procedure */
}

static void test_queue_flushed_when_a_plain_child_calls_exit(void **state)
{
    (void)state;
    mp_queue *q;
    assert_int_equal(mp_queue_new(&q, 0), 0);
    pid_t pid = tu_fork(put_then_exit, q);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    drain_in_order(q, BIG_BATCH, 1024);
    mp_queue_free(q);
}

static int put_then_cancel(void *arg)
{
    watchdog();
    mp_queue_cancel_join_thread(arg);
    return put_two_megabytes(arg);
}

static void test_queue_cancel_join_thread_skips_the_exit_flush(void **state)
{
    (void)state;
    /* Python's cancel_join_thread(): exit at once, buffered items lost. */
    mp_queue *q;
    assert_int_equal(mp_queue_new(&q, 0), 0);
    mp_process *p = spawn(put_then_cancel, q);
    assert_int_equal(finish(p, 5.0), 0);
    int n = 0;
    void *d;
    size_t len;
    while (mp_queue_get(q, &d, &len, 0.3) == 0) {
        free(d);
        n++;
    }
    assert_true(n < BIG_BATCH);
    mp_queue_free(q);
}

static void test_queue_close_and_join_thread_never_wait_for_a_reader(void **state)
{
    (void)state;
    /* In one process: more than the pipe holds, then close + join_thread
     * with nobody reading. Python's join_thread() would hang here. */
    mp_queue *q;
    assert_int_equal(mp_queue_new(&q, 0), 0);
    unsigned char buf[1024];
    for (uint32_t i = 0; i < BIG_BATCH; i++) {
        make_item(buf, i, sizeof buf);
        assert_int_equal(mp_queue_put(q, buf, sizeof buf, MP_FOREVER), 0);
    }
    double t0 = tu_now();
    assert_int_equal(mp_queue_close(q), 0);
    assert_int_equal(mp_queue_join_thread(q), 0);
    assert_true(tu_now() - t0 < 10.0);
    mp_queue_free(q);
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
    double end = tu_now() + T_LONG;
    while (atomic_load(started) == 0 && tu_now() < end)
        tu_sleep(0.001);
    tu_sleep(DELTA); /* it is asleep in get(), holding the read lock */
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
        double end = tu_now() + T_LONG;
        while (atomic_load(started) == 0 && tu_now() < end)
            tu_sleep(0.001);
        tu_sleep(0.3); /* the pipe is full of the item's first chunks */
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

/* ---- JoinableQueue ------------------------------------------------------------------------ */

static int task_worker(void *arg)
{
    watchdog();
    mp_queue *q = arg;
    for (;;) { /* for obj in iter(q.get, None) */
        mp_obj *o;
        if (mp_queue_get_obj(q, &o, T_LONG) != 0)
            return 1;
        bool end = mp_obj_type(o) == MP_TYPE_NONE;
        mp_obj_free(o);
        if (end)
            return 0;
        tu_sleep(0.01);
        if (mp_queue_task_done(q) != 0)
            return 2;
    }
}

static void test_joinable_queue_task_done_and_join(void **state)
{
    (void)state;
    /* _TestQueue.test_task_done: four workers, ten tasks, join(). */
    mp_queue *q;
    assert_int_equal(mp_queue_new_joinable(&q, 0), 0);
    mp_process *w[4];
    for (int i = 0; i < 4; i++)
        w[i] = spawn(task_worker, q);
    for (int i = 0; i < 10; i++) {
        mp_obj *o = mp_obj_int(i);
        assert_int_equal(mp_queue_put_obj(q, o, MP_FOREVER), 0);
        mp_obj_free(o);
    }
    assert_int_equal(mp_queue_join(q, T_LONG), 0);
    mp_obj *none = mp_obj_none();
    for (int i = 0; i < 4; i++)
        assert_int_equal(mp_queue_put_obj(q, none, MP_FOREVER), 0);
    mp_obj_free(none);
    for (int i = 0; i < 4; i++)
        assert_int_equal(finish(w[i], T_LONG), 0);

    /* The four None were put too, and never marked done; one more than
     * that is Python's ValueError: task_done() called too many times. */
    for (int i = 0; i < 4; i++)
        assert_int_equal(mp_queue_task_done(q), 0);
    TU_ASSERT_STATUS(mp_queue_task_done(q), MP_EVALUE);
    /* join() waits for task_done, with a timeout. */
    assert_int_equal(put_int(q, 1, MP_FOREVER), 0);
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_queue_join(q, 0.2), MP_ETIMEDOUT);
    ASSERT_TOOK(t0, 0.2);
    int v;
    assert_int_equal(get_int(q, &v, T_LONG), 0);
    assert_int_equal(mp_queue_task_done(q), 0);
    assert_int_equal(mp_queue_join(q, 0), 0);
    mp_queue_free(q);

    /* A plain queue has no task_done (Python: AttributeError). */
    assert_int_equal(mp_queue_new(&q, 0), 0);
    TU_ASSERT_STATUS(mp_queue_task_done(q), MP_ESTATE);
    TU_ASSERT_STATUS(mp_queue_join(q, 0), MP_ESTATE);
    mp_queue_free(q);
}

/* ---- SimpleQueue ------------------------------------------------------------------------ */

static int simple_echo(void *arg)
{
    mp_simplequeue **qs = arg;
    watchdog();
    for (int i = 0; i < 100; i++) {
        /* The items are values: a get of bytes would be refused. */
        mp_obj *o;
        if (mp_simplequeue_get_obj(qs[0], &o, T_LONG) != 0)
            return 1;
        int rc = mp_simplequeue_put_obj(qs[1], o, T_LONG);
        mp_obj_free(o);
        if (rc != 0)
            return 2;
    }
    return 0;
}

static void test_simplequeue_like_python(void **state)
{
    (void)state;
    /* _TestSimpleQueue.test_empty and test_close, and a round trip
     * through another process. */
    mp_simplequeue *qs[2];
    assert_int_equal(mp_simplequeue_new(&qs[0]), 0);
    assert_int_equal(mp_simplequeue_new(&qs[1]), 0);
    assert_int_equal(mp_simplequeue_empty(qs[0]), 1);
    pid_t pid = tu_fork(simple_echo, qs);
    for (int i = 0; i < 100; i++) {
        mp_obj *o = mp_obj_int(i);
        assert_int_equal(mp_simplequeue_put_obj(qs[0], o, T_LONG), 0);
        mp_obj_free(o);
    }
    for (int i = 0; i < 100; i++) {
        mp_obj *o;
        assert_int_equal(mp_simplequeue_get_obj(qs[1], &o, T_LONG), 0);
        int64_t v;
        assert_int_equal(mp_obj_get_int(o, &v), 0);
        assert_int_equal(v, i);
        mp_obj_free(o);
    }
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    assert_int_equal(mp_simplequeue_empty(qs[1]), 1);
    assert_int_equal(mp_simplequeue_put(qs[1], "x", 1, T_LONG), 0);
    double end = tu_now() + T_LONG;
    while (mp_simplequeue_empty(qs[1]) && tu_now() < end)
        tu_sleep(0.001);
    assert_int_equal(mp_simplequeue_empty(qs[1]), 0);
    double t0 = tu_now();
    void *d;
    size_t len;
    assert_int_equal(mp_simplequeue_get(qs[1], &d, &len, T_LONG), 0);
    free(d);
    TU_ASSERT_STATUS(mp_simplequeue_get(qs[1], &d, &len, 0.1), MP_EMPTY);
    ASSERT_TOOK(t0, 0.1);
    assert_int_equal(mp_simplequeue_close(qs[1]), 0);
    TU_ASSERT_STATUS(mp_simplequeue_put(qs[1], "x", 1, 0), MP_ECLOSED);
    TU_ASSERT_STATUS(mp_simplequeue_get(qs[1], &d, &len, 0), MP_ECLOSED);
    mp_simplequeue_free(qs[0]);
    mp_simplequeue_free(qs[1]);
    mp_simplequeue_free(NULL);
}

static void test_simplequeue_put_blocks_when_the_pipe_is_full(void **state)
{
    (void)state;
    /* No feeder: put() writes now, and waits when the pipe is full. */
    mp_simplequeue *q;
    assert_int_equal(mp_simplequeue_new(&q), 0);
    unsigned char buf[1000];
    memset(buf, 'q', sizeof buf);
    int n = 0;
    int rc;
    while ((rc = mp_simplequeue_put(q, buf, sizeof buf, MP_NOWAIT)) == 0)
        n++;
    TU_ASSERT_STATUS(rc, MP_FULL);
    assert_true(n >= 50 && n < 100000);
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_simplequeue_put(q, buf, sizeof buf, 0.2), MP_FULL);
    ASSERT_TOOK(t0, 0.2);
    /* Room again after a get; every item put is there. */
    void *d;
    size_t len;
    for (int i = 0; i < n; i++) {
        assert_int_equal(mp_simplequeue_get(q, &d, &len, T_LONG), 0);
        assert_int_equal(len, sizeof buf);
        free(d);
    }
    TU_ASSERT_STATUS(mp_simplequeue_get(q, &d, &len, 0), MP_EMPTY);
    mp_simplequeue_free(q);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_queue_bounded_put_like_python),
        TU_TEST(test_queue_get_like_python),
        TU_TEST(test_queue_items_put_before_and_after_fork_all_arrive),
        TU_TEST(test_queue_child_forked_mid_feed_never_resends_parent_items),
        TU_TEST(test_queue_qsize_goes_0_1_2_1_0),
        TU_TEST(test_queue_get_timeout),
        TU_TEST(test_queue_put_and_get_after_close_are_eclosed),
        TU_TEST(test_queue_items_of_every_size_arrive_whole_and_in_order),
        TU_TEST(test_queue_item_larger_than_the_pipe_passes),
        TU_TEST(test_queue_many_producers_and_consumers_lose_and_duplicate_nothing),
        TU_TEST(test_queue_sentinel_pattern_with_values_and_none),
        TU_TEST(test_queue_child_exits_while_parent_joins_before_reading),
        TU_TEST(test_queue_flushed_when_a_plain_child_calls_exit),
        TU_TEST(test_queue_cancel_join_thread_skips_the_exit_flush),
        TU_TEST(test_queue_close_and_join_thread_never_wait_for_a_reader),
        TU_TEST(test_queue_consumer_killed_holding_the_read_lock_does_not_wedge),
        TU_TEST(test_queue_consumers_killed_at_random_lose_only_what_they_held),
        TU_TEST(test_queue_writer_killed_mid_item_does_not_corrupt_the_stream),
        TU_TEST(test_queue_reader_killed_after_its_read_is_repaired),
        TU_TEST(test_joinable_queue_task_done_and_join),
        TU_TEST(test_simplequeue_like_python),
        TU_TEST(test_simplequeue_put_blocks_when_the_pipe_is_full),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
