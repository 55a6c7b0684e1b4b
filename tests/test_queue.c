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

/* Wait until another process holds m (trylock says EBUSY): a state, not a
 * guess. Returns true once it does, false at the deadline. */
static bool wait_held_by_other(pthread_mutex_t *m, double timeout)
{
    double end = tu_now() + timeout;
    for (;;) {
        int rc = pthread_mutex_trylock(m);
        if (rc == EBUSY)
            return true;
        if (rc == EOWNERDEAD)
            (void)pthread_mutex_consistent(m);
        if (rc == 0 || rc == EOWNERDEAD)
            (void)pthread_mutex_unlock(m);
        if (tu_now() >= end)
            return false;
        tu_sleep(0.001);
    }
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

/* ---- an item's kind: nothing lost, nothing misread ---------------------------------------- */

/* A value whose pickle spans several chunks. */
static mp_obj *big_str(size_t n)
{
    char *s = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        s[i] = (char)('a' + i % 26);
    s[n] = 0;
    mp_obj *o = mp_obj_str(s, n);
    free(s);
    return o;
}

static bool is_big_str(const mp_obj *o, size_t n)
{
    const char *s;
    size_t len;
    if (!o || mp_obj_get_str(o, &s, &len) != 0 || len != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] != (char)('a' + i % 26))
            return false;
    return true;
}

/* The four gets of one queue type, so that one test covers both types. */
struct getters {
    void *q;
    int (*get)(void *q, void **data, size_t *len, double timeout);
    int (*get_obj)(void *q, mp_obj **obj, double timeout);
    int (*get_item)(void *q, void **data, size_t *len, mp_obj **obj, double timeout);
    int (*put)(void *q, const void *data, size_t len, double timeout);
    int (*put_obj)(void *q, const mp_obj *obj, double timeout);
};

static int g_q_get(void *q, void **d, size_t *l, double t)
{
    return mp_queue_get(q, d, l, t);
}
static int g_q_get_obj(void *q, mp_obj **o, double t)
{
    return mp_queue_get_obj(q, o, t);
}
static int g_q_get_item(void *q, void **d, size_t *l, mp_obj **o, double t)
{
    return mp_queue_get_item(q, d, l, o, t);
}
static int g_q_put(void *q, const void *d, size_t l, double t)
{
    return mp_queue_put(q, d, l, t);
}
static int g_q_put_obj(void *q, const mp_obj *o, double t)
{
    return mp_queue_put_obj(q, o, t);
}
static int g_s_get(void *q, void **d, size_t *l, double t)
{
    return mp_simplequeue_get(q, d, l, t);
}
static int g_s_get_obj(void *q, mp_obj **o, double t)
{
    return mp_simplequeue_get_obj(q, o, t);
}
static int g_s_get_item(void *q, void **d, size_t *l, mp_obj **o, double t)
{
    return mp_simplequeue_get_item(q, d, l, o, t);
}
static int g_s_put(void *q, const void *d, size_t l, double t)
{
    return mp_simplequeue_put(q, d, l, t);
}
static int g_s_put_obj(void *q, const mp_obj *o, double t)
{
    return mp_simplequeue_put_obj(q, o, t);
}

static struct getters queue_getters(mp_queue *q)
{
    return (struct getters){q, g_q_get, g_q_get_obj, g_q_get_item, g_q_put, g_q_put_obj};
}

static struct getters simple_getters(mp_simplequeue *q)
{
    return (struct getters){q, g_s_get, g_s_get_obj, g_s_get_item, g_s_put, g_s_put_obj};
}

/* get() of bytes, expecting exactly want[0..n). */
static void assert_get_bytes(const struct getters *g, const void *want, size_t n)
{
    void *d;
    size_t len;
    assert_int_equal(g->get(g->q, &d, &len, T_LONG), 0);
    assert_int_equal(len, n);
    assert_memory_equal(d, want, n);
    free(d);
}

static void check_wrong_kind_gets_leave_the_head(const struct getters *g)
{
    enum { BIG = 3 * MP__QPIPE_CHUNK_MAX + 17 };
    unsigned char *big = malloc(BIG);
    make_item(big, 5, BIG);
    mp_obj *none = mp_obj_none();
    mp_obj *bigv = big_str(BIG);
    /* bytes, None, big bytes, big value: one chunk and many, each kind. */
    assert_int_equal(g->put(g->q, "job-1", 5, T_LONG), 0);
    assert_int_equal(g->put_obj(g->q, none, T_LONG), 0);
    assert_int_equal(g->put(g->q, big, BIG, T_LONG), 0);
    assert_int_equal(g->put_obj(g->q, bigv, T_LONG), 0);

    mp_obj *o = (mp_obj *)1;
    void *d = (void *)1;
    size_t len = 99;
    TU_ASSERT_STATUS(g->get_obj(g->q, &o, T_LONG), MP_ETYPE);
    assert_null(o);
    TU_ASSERT_STATUS(g->get_obj(g->q, &o, T_LONG), MP_ETYPE); /* still there */
    assert_get_bytes(g, "job-1", 5);
    TU_ASSERT_STATUS(g->get(g->q, &d, &len, T_LONG), MP_ETYPE);
    assert_null(d);
    assert_int_equal(len, 0);
    assert_int_equal(g->get_item(g->q, &d, &len, &o, T_LONG), MP_QUEUE_OBJ);
    assert_null(d);
    assert_true(mp_obj_is_none(o));
    mp_obj_free(o);
    TU_ASSERT_STATUS(g->get_obj(g->q, &o, T_LONG), MP_ETYPE);
    assert_int_equal(g->get_item(g->q, &d, &len, &o, T_LONG), MP_QUEUE_BYTES);
    assert_null(o);
    assert_int_equal(len, BIG);
    assert_memory_equal(d, big, BIG);
    free(d);
    TU_ASSERT_STATUS(g->get(g->q, &d, &len, T_LONG), MP_ETYPE);
    assert_int_equal(g->get_obj(g->q, &o, T_LONG), 0);
    assert_true(is_big_str(o, BIG));
    mp_obj_free(o);
    TU_ASSERT_STATUS(g->get_item(g->q, &d, &len, &o, 0.05), MP_EMPTY);
    TU_ASSERT_STATUS(g->get_item(g->q, &d, &len, NULL, 0), -EINVAL);
    mp_obj_free(none);
    mp_obj_free(bigv);
    free(big);
}

static void test_queue_get_of_the_wrong_kind_leaves_the_item_at_the_head(void **state)
{
    (void)state;
    /* Python's Queue has one kind of item; here a get of the other form is
     * refused with MP_ETYPE before it takes anything, so nothing is lost
     * (get_obj on bytes used to consume them) or misread (get on a value
     * used to return its pickle). */
    mp_queue *q;
    assert_int_equal(mp_queue_new(&q, 4), 0);
    struct getters g = queue_getters(q);
    check_wrong_kind_gets_leave_the_head(&g);
    assert_int_equal(mp_queue_qsize(q), 0);
    assert_int_equal(mp_queue_full(q), 0);
    mp_queue_free(q);

    mp_simplequeue *sq;
    assert_int_equal(mp_simplequeue_new(&sq), 0);
    g = simple_getters(sq);
    check_wrong_kind_gets_leave_the_head(&g);
    mp_simplequeue_free(sq);
}

struct kinds_child {
    mp_queue *q;
    atomic_int *step;
};

/* Take the first bytes item, be refused the value after it, and leave. */
static int take_bytes_then_be_refused(void *arg)
{
    struct kinds_child *k = arg;
    watchdog();
    void *d;
    size_t len;
    if (mp_queue_get(k->q, &d, &len, T_LONG) != 0)
        return 1;
    bool ok = len == 2 && memcmp(d, "b1", 2) == 0;
    free(d);
    if (!ok)
        return 2;
    if (mp_queue_get(k->q, &d, &len, T_LONG) != MP_ETYPE)
        return 3; /* the value, misread as bytes */
    if (mp_queue_get(k->q, &d, &len, T_LONG) != MP_ETYPE)
        return 4;
    return 0;
}

static void test_queue_item_refused_in_one_process_is_the_head_for_another(void **state)
{
    (void)state;
    /* The child's get read all three items ahead, out of the pipe; the value
     * it refused is still the head of the queue - for this process. */
    mp_queue *q;
    assert_int_equal(mp_queue_new(&q, 0), 0);
    mp_obj *v = mp_obj_int(42);
    assert_int_equal(mp_queue_put(q, "b1", 2, T_LONG), 0);
    assert_int_equal(mp_queue_put_obj(q, v, T_LONG), 0);
    assert_int_equal(mp_queue_put(q, "b2", 2, T_LONG), 0);
    mp_obj_free(v);
    wait_not_empty(q);
    struct kinds_child k = {q, NULL};
    assert_int_equal(tu_wait_child(tu_fork(take_bytes_then_be_refused, &k), T_LONG), 0);
    assert_int_equal(mp_queue_qsize(q), 2);
    void *d;
    size_t len;
    TU_ASSERT_STATUS(mp_queue_get(q, &d, &len, T_LONG), MP_ETYPE);
    mp_obj *o;
    assert_int_equal(mp_queue_get_obj(q, &o, T_LONG), 0);
    int64_t i;
    assert_int_equal(mp_obj_get_int(o, &i), 0);
    assert_int_equal(i, 42);
    mp_obj_free(o);
    struct getters g = queue_getters(q);
    assert_get_bytes(&g, "b2", 2);
    assert_int_equal(mp_queue_qsize(q), 0);
    mp_queue_free(q);
}

#define README_JOBS 500

static int readme_producer(void *arg)
{
    watchdog();
    mp_queue *q = arg;
    for (uint32_t i = 0; i < README_JOBS; i++) {
        char job[32];
        int n = snprintf(job, sizeof job, "job-%u", (unsigned)i);
        if (mp_queue_put(q, job, (size_t)n, MP_FOREVER) != 0)
            return 1;
    }
    mp_obj *none = mp_obj_none(); /* values travel as pickles: the end marker */
    int rc = mp_queue_put_obj(q, none, MP_FOREVER);
    mp_obj_free(none);
    return rc == 0 ? 0 : 2;
}

static void test_queue_readme_example_bytes_then_a_none_end_marker(void **state)
{
    (void)state;
    /* The README's Queues example: bytes jobs, then None. The consumer
     * takes bytes until get() says the head is a value, then get_obj()
     * has the None; every job arrives as the bytes put, none twice. */
    mp_queue *q;
    assert_int_equal(mp_queue_new(&q, 0), 0);
    mp_process *p = spawn(readme_producer, q);
    uint32_t jobs = 0;
    for (;;) {
        void *item;
        size_t len;
        int rc = mp_queue_get(q, &item, &len, T_LONG);
        if (rc == MP_ETYPE)
            break;
        assert_int_equal(rc, 0);
        char want[32];
        int n = snprintf(want, sizeof want, "job-%u", (unsigned)jobs);
        assert_int_equal(len, (size_t)n);
        assert_memory_equal(item, want, len);
        free(item);
        jobs++;
    }
    assert_int_equal(jobs, README_JOBS);
    mp_obj *o;
    assert_int_equal(mp_queue_get_obj(q, &o, T_LONG), 0); /* None: the producer is done */
    assert_true(mp_obj_is_none(o));
    mp_obj_free(o);
    assert_int_equal(finish(p, T_LONG), 0);
    assert_int_equal(mp_queue_qsize(q), 0);
    mp_queue_free(q);
}

static void test_joinable_queue_counts_stay_exact_across_wrong_kind_gets(void **state)
{
    (void)state;
    /* A refused get takes nothing, so it needs no task_done(); join() waits
     * for exactly the items put. */
    mp_queue *q;
    assert_int_equal(mp_queue_new_joinable(&q, 2), 0);
    mp_obj *v = mp_obj_int(7);
    assert_int_equal(mp_queue_put(q, "x", 1, T_LONG), 0);
    assert_int_equal(mp_queue_put_obj(q, v, T_LONG), 0);
    mp_obj_free(v);
    TU_ASSERT_STATUS(mp_queue_put(q, "y", 1, MP_NOWAIT), MP_FULL);
    mp_obj *o;
    TU_ASSERT_STATUS(mp_queue_get_obj(q, &o, T_LONG), MP_ETYPE);
    assert_int_equal(mp_queue_qsize(q), 2);
    struct getters g = queue_getters(q);
    assert_get_bytes(&g, "x", 1);
    assert_int_equal(mp_queue_task_done(q), 0);
    TU_ASSERT_STATUS(mp_queue_join(q, 0.05), MP_ETIMEDOUT);
    void *d;
    size_t len;
    TU_ASSERT_STATUS(mp_queue_get(q, &d, &len, T_LONG), MP_ETYPE);
    assert_int_equal(mp_queue_qsize(q), 1);
    assert_int_equal(mp_queue_get_obj(q, &o, T_LONG), 0);
    mp_obj_free(o);
    assert_int_equal(mp_queue_task_done(q), 0);
    assert_int_equal(mp_queue_join(q, 0), 0);
    TU_ASSERT_STATUS(mp_queue_task_done(q), MP_EVALUE);
    /* Both places are free again. */
    assert_int_equal(mp_queue_put(q, "z", 1, MP_NOWAIT), 0);
    assert_int_equal(mp_queue_put(q, "z", 1, MP_NOWAIT), 0);
    assert_int_equal(mp_queue_qsize(q), 2);
    mp_queue_free(q);
}

#define SPILL_ITEMS 1500

static int put_mixed_kinds_then_exit(void *arg)
{
    watchdog();
    mp_queue *q = arg;
    unsigned char buf[1024];
    for (uint32_t i = 0; i < SPILL_ITEMS; i++) {
        int rc;
        if (i % 2) {
            mp_obj *o = mp_obj_int(i);
            rc = mp_queue_put_obj(q, o, MP_FOREVER);
            mp_obj_free(o);
        } else {
            rc = mp_queue_put(q, buf, make_item(buf, i, sizeof buf), MP_FOREVER);
        }
        if (rc != 0)
            return 1;
    }
    return 0; /* more than the pipe holds: the rest is spilled at exit */
}

static void test_queue_spilled_items_keep_their_kind(void **state)
{
    (void)state;
    /* Nobody reads until the child has exited, so most of its items went to
     * the spill file; each is refused by the get of the wrong form and taken
     * by the right one, in order. */
    mp_queue *q;
    assert_int_equal(mp_queue_new(&q, 0), 0);
    mp_process *p = spawn(put_mixed_kinds_then_exit, q);
    assert_int_equal(finish(p, T_LONG), 0);
    struct mp__qpipe *qp = mp__queue_qpipe(q);
    assert_true(qp->sh->spill_tail > qp->sh->spill_head); /* it did spill */
    for (uint32_t i = 0; i < SPILL_ITEMS; i++) {
        void *d;
        size_t len;
        mp_obj *o;
        if (i % 2) {
            TU_ASSERT_STATUS(mp_queue_get(q, &d, &len, T_LONG), MP_ETYPE);
            assert_int_equal(mp_queue_get_obj(q, &o, T_LONG), 0);
            int64_t v;
            assert_int_equal(mp_obj_get_int(o, &v), 0);
            assert_int_equal(v, i);
            mp_obj_free(o);
        } else {
            TU_ASSERT_STATUS(mp_queue_get_obj(q, &o, T_LONG), MP_ETYPE);
            assert_int_equal(mp_queue_get(q, &d, &len, T_LONG), 0);
            uint32_t seq;
            assert_true(check_item(d, len, &seq));
            assert_int_equal(seq, i);
            free(d);
        }
    }
    assert_int_equal(mp_queue_qsize(q), 0);
    mp_queue_free(q);
}

static void test_queue_value_the_decoder_refuses_is_taken_with_eproto(void **state)
{
    (void)state;
    /* A value item whose bytes are not a pickle the decoder takes (only a
     * writer other than put_obj can make one): no get could ever read it, so
     * get_obj takes it with MP_EPROTO, and the next item follows. */
    mp_simplequeue *q;
    assert_int_equal(mp_simplequeue_new(&q), 0);
    struct mp__qitem junk = {"\x80\x04junk", 6, MP__QK_OBJ};
    size_t written;
    assert_int_equal(mp__qpipe_write(mp__simplequeue_qpipe(q), &junk, 1, mp__deadline(T_LONG), NULL,
                                     NULL, &written, true),
                     0);
    assert_int_equal(mp_simplequeue_put(q, "next", 4, T_LONG), 0);
    mp_obj *o;
    TU_ASSERT_STATUS(mp_simplequeue_get_obj(q, &o, T_LONG), MP_EPROTO);
    assert_null(o);
    struct getters g = simple_getters(q);
    assert_get_bytes(&g, "next", 4);
    mp_simplequeue_free(q);
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
        const double timeouts[] = {0.2, 1.0, 0.05, 0};
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
        TU_TEST(test_queue_bounded_put_like_python),
        TU_TEST(test_queue_get_like_python),
        TU_TEST(test_queue_items_put_before_and_after_fork_all_arrive),
        TU_TEST(test_queue_child_forked_mid_feed_never_resends_parent_items),
        TU_TEST(test_queue_qsize_goes_0_1_2_1_0),
        TU_TEST(test_queue_get_timeout),
        TU_TEST(test_queue_put_and_get_after_close_are_eclosed),
        TU_TEST(test_queue_items_of_every_size_arrive_whole_and_in_order),
        TU_TEST(test_queue_item_larger_than_the_pipe_passes),
        TU_TEST(test_queue_get_nowait_polling_receives_a_big_item_whole),
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
        TU_TEST(test_queue_get_of_the_wrong_kind_leaves_the_item_at_the_head),
        TU_TEST(test_queue_item_refused_in_one_process_is_the_head_for_another),
        TU_TEST(test_queue_readme_example_bytes_then_a_none_end_marker),
        TU_TEST(test_joinable_queue_counts_stay_exact_across_wrong_kind_gets),
        TU_TEST(test_queue_spilled_items_keep_their_kind),
        TU_TEST(test_queue_value_the_decoder_refuses_is_taken_with_eproto),
        TU_TEST(test_queue_continuation_flood_keeps_reader_memory_bounded),
        TU_TEST(test_queue_get_timeout_holds_while_chunks_drip_in),
        TU_TEST(test_queue_junk_between_items_costs_only_the_junk),
        TU_TEST(test_queue_junk_written_while_items_flow_loses_nothing),
        TU_TEST(test_queue_item_over_max_item_is_refused_or_dropped),
        TU_TEST(test_queue_part_of_an_item_left_by_a_timed_out_get_keeps_its_kind),
        TU_TEST(test_queue_big_item_from_a_slow_writer_is_finished_by_any_reader),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
