/*
 * queue: Python's Queue, JoinableQueue and SimpleQueue for forked processes
 * (src/queue/queue.c; _TestQueue and _TestSimpleQueue in
 * Lib/test/_test_multiprocessing.py), and what CPython gets wrong: a child
 * that put more than a pipe holds can exit while its parent joins it
 * (gh-73983). An item keeps the kind it was put with. The stream under the
 * queues (src/queue/qpipe.c) is tested by test_qpipe.
 *
 * Producers are mp_process children: their exit procedure is what flushes
 * the feeder, as Python's does. A test name filter may be given as the first
 * argument (cmocka glob): test_queue '*kind*'.
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
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

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

/* maxsize is a size_t; one the semaphore cannot count to is Python's
 * ValueError from SemLock, and no queue is made. */
static void test_queue_maxsize_above_sem_value_max_is_refused(void **state)
{
    (void)state;
    mp_queue *q = (mp_queue *)&q;
    size_t big = (size_t)SEM_VALUE_MAX + 1;
    TU_ASSERT_STATUS(mp_queue_new(&q, big), MP_EVALUE);
    assert_null(q);
    q = (mp_queue *)&q;
    TU_ASSERT_STATUS(mp_queue_new_joinable(&q, SIZE_MAX), MP_EVALUE);
    assert_null(q);
    mp_queue_opts o = MP_QUEUE_OPTS_INIT;
    o.maxsize = big;
    TU_ASSERT_STATUS(mp_queue_new_opts(&q, &o), MP_EVALUE);
    assert_null(q);
    assert_int_equal(mp_queue_new(&q, (size_t)SEM_VALUE_MAX), 0);
    assert_int_equal(mp_queue_full(q), 0);
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

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_queue_bounded_put_like_python),
        TU_TEST(test_queue_maxsize_above_sem_value_max_is_refused),
        TU_TEST(test_queue_get_like_python),
        TU_TEST(test_queue_items_put_before_and_after_fork_all_arrive),
        TU_TEST(test_queue_child_forked_mid_feed_never_resends_parent_items),
        TU_TEST(test_queue_qsize_goes_0_1_2_1_0),
        TU_TEST(test_queue_get_timeout),
        TU_TEST(test_queue_put_and_get_after_close_are_eclosed),
        TU_TEST(test_queue_sentinel_pattern_with_values_and_none),
        TU_TEST(test_queue_child_exits_while_parent_joins_before_reading),
        TU_TEST(test_queue_flushed_when_a_plain_child_calls_exit),
        TU_TEST(test_queue_cancel_join_thread_skips_the_exit_flush),
        TU_TEST(test_queue_close_and_join_thread_never_wait_for_a_reader),
        TU_TEST(test_joinable_queue_task_done_and_join),
        TU_TEST(test_simplequeue_like_python),
        TU_TEST(test_simplequeue_put_blocks_when_the_pipe_is_full),
        TU_TEST(test_queue_get_of_the_wrong_kind_leaves_the_item_at_the_head),
        TU_TEST(test_queue_item_refused_in_one_process_is_the_head_for_another),
        TU_TEST(test_queue_readme_example_bytes_then_a_none_end_marker),
        TU_TEST(test_joinable_queue_counts_stay_exact_across_wrong_kind_gets),
        TU_TEST(test_queue_spilled_items_keep_their_kind),
        TU_TEST(test_queue_value_the_decoder_refuses_is_taken_with_eproto),
    };
    tu_filter(argc, argv);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
