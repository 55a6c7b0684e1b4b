/*
 * The queue suite's cross-process behaviours under every start method: the
 * queues are handed to children made by fork, forkserver and spawn
 * (mp_process_pass_queue, mp_process_pass_simplequeue), and each scenario
 * runs once per method. Spawn re-executes this binary.
 *
 * Which behaviour runs where (every one under fork, forkserver and spawn;
 * none of the queue behaviours is fork-only):
 *   test_start_passobj.c  put/get both ways in order with a bounded reply
 *                         queue; several producers, exact counts and each
 *                         producer's order; JoinableQueue join waits for the
 *                         child's task_done; a closed queue is refused.
 *   this file             big items (4 MiB) both ways among small ones, in
 *                         order; a child that exits with more queued than a
 *                         pipe holds, joined before anything is got (no
 *                         deadlock: Python's gh-73983 case); a bounded
 *                         queue makes the child's put wait; SimpleQueue both
 *                         ways (ints, a big bytes item, None), its kind and
 *                         index checks in the child, and its refusals.
 * The pool's runs under each method are the pool tests' (MPIPC_TEST_START_METHOD).
 */
#include "start_testutil.h"

#include <mpipc/context.h>
#include <mpipc/obj.h>
#include <mpipc/process.h>
#include <mpipc/queue.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BIG ((size_t)4 << 20)

/* The byte at offset i of big item `seed`. */
static unsigned char big_byte(size_t i, unsigned seed)
{
    return (unsigned char)((i * 31 + seed) ^ (i >> 12));
}

static unsigned char *big_make(unsigned seed)
{
    unsigned char *b = malloc(BIG);
    for (size_t i = 0; b && i < BIG; i++)
        b[i] = big_byte(i, seed);
    return b;
}

static bool big_ok(const unsigned char *b, size_t len, unsigned seed)
{
    if (len != BIG)
        return false;
    for (size_t i = 0; i < BIG; i++)
        if (b[i] != big_byte(i, seed))
            return false;
    return true;
}

/* ---- targets ---------------------------------------------------------------------- */

/* Echo every item of Queue 0 onto Queue 1, bytes as bytes and values as
 * values, until None (echoed too). A big item is checked here first
 * (seed 1: exit 13 when it is not what was put). */
static int t_echo(const mp_obj *args)
{
    (void)args;
    mp_queue *in, *out;
    if (mp_process_inherited_queue(&in, 0) < 0 || mp_process_inherited_queue(&out, 1) < 0)
        return 10;
    for (;;) {
        void *data = NULL;
        size_t len = 0;
        mp_obj *o = NULL;
        int kind = mp_queue_get_item(in, &data, &len, &o, ST_LONG);
        if (kind < 0)
            return 11;
        int rc;
        if (kind == MP_QUEUE_BYTES) {
            if (len > 1024 && !big_ok(data, len, 1))
                return 13;
            rc = mp_queue_put(out, data, len, ST_LONG);
        } else {
            rc = mp_queue_put_obj(out, o, ST_LONG);
        }
        bool end = o && mp_obj_is_none(o);
        free(data);
        mp_obj_free(o);
        if (rc < 0)
            return 12;
        if (end)
            break;
    }
    mp_queue_free(in);
    mp_queue_free(out); /* flushes this process's feeder */
    return 0;
}
MP_TARGET(t_echo);

/* args (n, size): put n items of size bytes (item k filled with k % 251)
 * on Queue 0 and return at once: the exit flushes them. */
static int t_fill_and_exit(const mp_obj *args)
{
    int n, size;
    mp_queue *q;
    if (mp_obj_parse(args, "(ii)", &n, &size) < 0 || mp_process_inherited_queue(&q, 0) < 0)
        return 20;
    unsigned char *buf = malloc((size_t)size);
    if (!buf)
        return 21;
    for (int k = 0; k < n; k++) {
        memset(buf, k % 251, (size_t)size);
        if (mp_queue_put(q, buf, (size_t)size, ST_LONG) < 0) {
            free(buf);
            return 22;
        }
    }
    free(buf);
    return 0;
}
MP_TARGET(t_fill_and_exit);

/* args (n): put the ints 0..n-1 on bounded Queue 0, each put waiting for
 * room. */
static int t_put_ints(const mp_obj *args)
{
    int n;
    mp_queue *q;
    if (mp_obj_parse(args, "(i)", &n) < 0 || mp_process_inherited_queue(&q, 0) < 0)
        return 30;
    for (int k = 0; k < n; k++) {
        mp_obj *o = mp_obj_int(k);
        int rc = o ? mp_queue_put_obj(q, o, ST_LONG) : -1;
        mp_obj_free(o);
        if (rc < 0)
            return 31;
    }
    mp_queue_free(q);
    return 0;
}
MP_TARGET(t_put_ints);

/* SimpleQueue 0 in, 1 out: ints come back doubled, bytes as they came
 * (a big item checked, seed 2), None ends. Index 0 is no Queue, index 2
 * is nothing (codes 4x). */
static int t_sq_echo(const mp_obj *args)
{
    (void)args;
    mp_simplequeue *in, *out, *none;
    mp_queue *wrong;
    if (mp_process_inherited_simplequeue(&in, 0) < 0 ||
        mp_process_inherited_simplequeue(&out, 1) < 0)
        return 40;
    if (mp_process_inherited_queue(&wrong, 0) != MP_ETYPE || wrong != NULL)
        return 41;
    if (mp_process_inherited_simplequeue(&none, 2) != MP_EKEY)
        return 42;
    for (;;) {
        void *data = NULL;
        size_t len = 0;
        mp_obj *o = NULL;
        int kind = mp_simplequeue_get_item(in, &data, &len, &o, ST_LONG);
        if (kind < 0)
            return 43;
        int rc;
        int64_t x = 0;
        bool end = false;
        if (kind == MP_QUEUE_BYTES) {
            rc = len > 1024 && !big_ok(data, len, 2) ? -1
                                                     : mp_simplequeue_put(out, data, len, ST_LONG);
        } else if (mp_obj_is_none(o)) {
            end = true;
            rc = mp_simplequeue_put_obj(out, o, ST_LONG);
        } else {
            mp_obj *d = mp_obj_get_int(o, &x) < 0 ? NULL : mp_obj_int(2 * x);
            rc = d ? mp_simplequeue_put_obj(out, d, ST_LONG) : -1;
            mp_obj_free(d);
        }
        free(data);
        mp_obj_free(o);
        if (rc < 0)
            return 44;
        if (end)
            break;
    }
    mp_simplequeue_free(in);
    mp_simplequeue_free(out);
    return 0;
}
MP_TARGET(t_sq_echo);

/* ---- scenarios -------------------------------------------------------------------- */

static void put_int(mp_queue *q, int64_t x)
{
    mp_obj *o = mp_obj_int(x);
    assert_int_equal(mp_queue_put_obj(q, o, ST_LONG), 0);
    mp_obj_free(o);
}

static void get_int_is(mp_queue *q, int64_t want)
{
    mp_obj *o = NULL;
    int64_t x = -1;
    assert_int_equal(mp_queue_get_obj(q, &o, ST_LONG), 0);
    assert_int_equal(mp_obj_get_int(o, &x), 0);
    assert_int_equal(x, want);
    mp_obj_free(o);
}

/* Python's test_queue with large items across processes: a 4 MiB item
 * goes to the child and comes back whole, between small ones, in order. */
static void big_items(const char *method)
{
    mp_queue *in, *out;
    assert_int_equal(mp_queue_new(&in, 0), 0);
    assert_int_equal(mp_queue_new(&out, 0), 0);
    mp_process *p;
    assert_int_equal(mp_process_new_ctx(&p, st_ctx(method), "t_echo", NULL), 0);
    assert_int_equal(mp_process_pass_queue(p, in), 0);
    assert_int_equal(mp_process_pass_queue(p, out), 1);
    assert_int_equal(mp_process_start(p), 0);
    unsigned char *big = big_make(1);
    assert_non_null(big);
    for (int k = 0; k < 50; k++)
        put_int(in, k);
    assert_int_equal(mp_queue_put(in, big, BIG, ST_LONG), 0);
    for (int k = 50; k < 100; k++)
        put_int(in, k);
    mp_obj *none = mp_obj_none();
    assert_int_equal(mp_queue_put_obj(in, none, ST_LONG), 0);
    mp_obj_free(none);
    free(big);
    for (int k = 0; k < 50; k++)
        get_int_is(out, k);
    void *data = NULL;
    size_t len = 0;
    assert_int_equal(mp_queue_get(out, &data, &len, ST_LONG), 0);
    assert_true(big_ok(data, len, 1));
    free(data);
    for (int k = 50; k < 100; k++)
        get_int_is(out, k);
    mp_obj *end = NULL;
    assert_int_equal(mp_queue_get_obj(out, &end, ST_LONG), 0);
    assert_true(mp_obj_is_none(end));
    mp_obj_free(end);
    st_join_ok(p);
    mp_process_free(p);
    mp_queue_free(in);
    mp_queue_free(out);
}

/* A child puts more than a pipe holds and exits; we join it before getting
 * anything. Python's docs warn this can deadlock (gh-73983); here the
 * child's exit spills what the pipe cannot take, the join returns, and
 * every item then arrives, in order, whole. */
static void child_exits_with_queued_data(const char *method)
{
    enum { N = 600, SIZE = 1000 }; /* 600 kB: several pipes' worth */
    mp_queue *q;
    assert_int_equal(mp_queue_new(&q, 0), 0);
    mp_obj *args = mp_obj_build("(ii)", N, SIZE);
    mp_process *p;
    assert_int_equal(mp_process_new_ctx(&p, st_ctx(method), "t_fill_and_exit", args), 0);
    mp_obj_free(args);
    assert_int_equal(mp_process_pass_queue(p, q), 0);
    assert_int_equal(mp_process_start(p), 0);
    st_join_ok(p);
    for (int k = 0; k < N; k++) {
        unsigned char *data = NULL;
        size_t len = 0;
        assert_int_equal(mp_queue_get(q, (void **)&data, &len, ST_LONG), 0);
        assert_int_equal(len, SIZE);
        assert_int_equal(data[0], k % 251);
        assert_int_equal(data[SIZE - 1], k % 251);
        free(data);
    }
    void *extra = NULL;
    size_t len = 0;
    TU_ASSERT_STATUS(mp_queue_get(q, &extra, &len, 0.05), MP_EMPTY);
    mp_process_free(p);
    mp_queue_free(q);
}

/* Python's Queue(maxsize) across processes: the child's puts wait for
 * room, so the queue never holds more than maxsize; all arrive in order. */
static void bounded_put_waits(const char *method)
{
    enum { N = 30, MAX = 2 };
    mp_queue *q;
    assert_int_equal(mp_queue_new(&q, MAX), 0);
    mp_obj *args = mp_obj_build("(i)", N);
    mp_process *p;
    assert_int_equal(mp_process_new_ctx(&p, st_ctx(method), "t_put_ints", args), 0);
    mp_obj_free(args);
    assert_int_equal(mp_process_pass_queue(p, q), 0);
    assert_int_equal(mp_process_start(p), 0);
    double until = tu_now() + ST_LONG;
    while (mp_queue_full(q) != 1 && tu_now() < until)
        tu_sleep(0.005);
    assert_int_equal(mp_queue_full(q), 1);
    tu_sleep(0.1); /* the child is blocked: still no more than MAX */
    assert_true(mp_queue_qsize(q) <= MAX);
    assert_int_equal(mp_process_is_alive(p), 1);
    for (int k = 0; k < N; k++)
        get_int_is(q, k);
    st_join_ok(p);
    mp_process_free(p);
    mp_queue_free(q);
}

/* Python's SimpleQueue across processes: both ways, in order, a big bytes
 * item whole; the child's kind and index checks (t_sq_echo). */
static void simplequeue_both_ways(const char *method)
{
    mp_simplequeue *in, *out;
    assert_int_equal(mp_simplequeue_new(&in), 0);
    assert_int_equal(mp_simplequeue_new(&out), 0);
    mp_process *p;
    assert_int_equal(mp_process_new_ctx(&p, st_ctx(method), "t_sq_echo", NULL), 0);
    assert_int_equal(mp_process_pass_simplequeue(p, in), 0);
    assert_int_equal(mp_process_pass_simplequeue(p, out), 1);
    TU_ASSERT_STATUS(mp_process_pass_simplequeue(p, in), MP_EVALUE); /* once */
    assert_int_equal(mp_process_start(p), 0);
    /* SimpleQueue.put writes now: a big item needs the reader, so it goes
     * last but one, and its echo is read while the child writes it. */
    for (int k = 1; k <= 100; k++) {
        mp_obj *o = mp_obj_int(k);
        assert_int_equal(mp_simplequeue_put_obj(in, o, ST_LONG), 0);
        mp_obj_free(o);
    }
    for (int k = 1; k <= 100; k++) {
        mp_obj *o = NULL;
        int64_t x = 0;
        assert_int_equal(mp_simplequeue_get_obj(out, &o, ST_LONG), 0);
        assert_int_equal(mp_obj_get_int(o, &x), 0);
        assert_int_equal(x, 2 * k);
        mp_obj_free(o);
    }
    unsigned char *big = big_make(2);
    assert_non_null(big);
    assert_int_equal(mp_simplequeue_put(in, big, BIG, ST_LONG), 0);
    free(big);
    void *data = NULL;
    size_t len = 0;
    assert_int_equal(mp_simplequeue_get(out, &data, &len, ST_LONG), 0);
    assert_true(big_ok(data, len, 2));
    free(data);
    mp_obj *none = mp_obj_none(), *end = NULL;
    assert_int_equal(mp_simplequeue_put_obj(in, none, ST_LONG), 0);
    mp_obj_free(none);
    assert_int_equal(mp_simplequeue_get_obj(out, &end, ST_LONG), 0);
    assert_true(mp_obj_is_none(end));
    mp_obj_free(end);
    st_join_ok(p);
    assert_int_equal(mp_simplequeue_empty(in), 1);
    mp_process_free(p);
    mp_simplequeue_free(in);
    mp_simplequeue_free(out);
}

ST_EACH_METHOD(big_items, passed_queue_big_items_both_ways_in_order)
ST_EACH_METHOD(child_exits_with_queued_data, passed_queue_child_exit_with_data_joins)
ST_EACH_METHOD(bounded_put_waits, passed_bounded_queue_child_put_waits_for_room)
ST_EACH_METHOD(simplequeue_both_ways, passed_simplequeue_carries_items_both_ways)

/* Refusals: a closed SimpleQueue (MP_ECLOSED, as Python refuses a closed
 * one), NULL, a handle mp_process_new made; nothing passed to a process
 * not started through a context. */
static int plain_main(void *arg)
{
    (void)arg;
    return 0;
}

static void test_pass_simplequeue_refuses_bad_input(void **state)
{
    (void)state;
    mp_simplequeue *q;
    assert_int_equal(mp_simplequeue_new(&q), 0);
    mp_process *p;
    assert_int_equal(mp_process_new_ctx(&p, st_ctx("spawn"), "t_sq_echo", NULL), 0);
    TU_ASSERT_STATUS(mp_process_pass_simplequeue(p, NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_process_pass_simplequeue(NULL, q), -EINVAL);
    mp_simplequeue *closed;
    assert_int_equal(mp_simplequeue_new(&closed), 0);
    assert_int_equal(mp_simplequeue_close(closed), 0);
    TU_ASSERT_STATUS(mp_process_pass_simplequeue(p, closed), MP_ECLOSED);
    mp_simplequeue_free(closed);
    mp_process_free(p);

    mp_process *plain;
    assert_int_equal(mp_process_new(&plain, plain_main, NULL), 0);
    TU_ASSERT_STATUS(mp_process_pass_simplequeue(plain, q), MP_ESTATE);
    mp_process_free(plain);

    mp_simplequeue *got = (mp_simplequeue *)1;
    TU_ASSERT_STATUS(mp_process_inherited_simplequeue(&got, 0), MP_EKEY);
    assert_null(got);
    TU_ASSERT_STATUS(mp_process_inherited_simplequeue(NULL, 0), -EINVAL);
    mp_simplequeue_free(q);
}

int main(int argc, char **argv)
{
    mp_spawn_main(argc, argv); /* a spawned child runs its target here */
    tu_filter(argc, argv);
    if (mp_forkserver_start() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        ST_TESTS(passed_queue_big_items_both_ways_in_order),
        ST_TESTS(passed_queue_child_exit_with_data_joins),
        ST_TESTS(passed_bounded_queue_child_put_waits_for_room),
        ST_TESTS(passed_simplequeue_carries_items_both_ways),
        TU_TEST(test_pass_simplequeue_refuses_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
