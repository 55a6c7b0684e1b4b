/*
 * pool: Python's multiprocessing.Pool for fork (multiprocessing/pool.py),
 * tested across real worker processes - the calls: apply, map, starmap,
 * imap, their async forms and callbacks, results and errors, close and
 * terminate. Workers' lives and deaths are in test_pool_worker.c; scale,
 * threads, fork and the pool's own lifecycle in test_pool_life.c; the
 * helpers they share in pool_testutil.h.
 *
 * Ported from CPython's Lib/test/_test_multiprocessing.py:
 *   _TestPool              test_apply, test_map, test_starmap,
 *                          test_starmap_async, test_map_async,
 *                          test_map_async_callbacks, test_map_chunksize,
 *                          test_async, test_async_timeout, test_imap,
 *                          test_imap_handle_iterable_exception (as a task
 *                          failing at a position), test_imap_unordered,
 *                          test_imap_unordered_handle_iterable_exception,
 *                          test_make_pool, test_terminate,
 *                          test_empty_iterable, test_context / test_enter
 *                          (submit after close/terminate), test_traceback
 *                          (the task's code and message reach the caller),
 *                          test_map_no_failfast
 *   _TestPoolWorkerErrors  test_async_error_callback,
 *                          test_unpickleable_result (an unencodable result
 *                          fails its task and keeps the workers)
 * Beyond Python (issue 7): terminate() fails pending results with
 * MP_ETERMINATED.
 *
 * A name filter runs a subset (tu_filter, testutil.h).
 */
#include "pool_testutil.h"

#include <mpipc/conn.h>
#include <mpipc/pool.h>
#include <mpipc/process.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- tasks (they run in the workers) ------------------------------------ */

static int mul(const mp_obj *args, mp_obj **result)
{
    int64_t x, y;
    if (mp_obj_get_int(mp_obj_list_get(args, 0), &x) < 0 ||
        mp_obj_get_int(mp_obj_list_get(args, 1), &y) < 0)
        return mp_task_fail(MP_ETYPE, "mul() needs two ints");
    *result = mp_obj_int(x * y);
    return 0;
}
MP_TASK(mul);

/* Python's int(s): parses a str, fails like ValueError on junk. */
static int to_int(const mp_obj *args, mp_obj **result)
{
    const char *s;
    size_t len;
    if (mp_obj_get_str(mp_obj_list_get(args, 0), &s, &len) < 0)
        return mp_task_fail(MP_ETYPE, "int() argument must be a str");
    char *end;
    long v = strtol(s, &end, 10);
    if (len == 0 || *end)
        return mp_task_fail(MP_EVALUE, "invalid literal for int() with base 10: '%s'", s);
    *result = mp_obj_int(v);
    return 0;
}
MP_TASK(to_int);

/* Fails (code 42) on the items whose value is negative. */
static int square_or_fail(const void *in, void *out)
{
    int32_t x = *(const int32_t *)in;
    if (x < 0)
        return mp_task_fail(42, "negative item %d", (int)x);
    *(int32_t *)out = x * x;
    return 0;
}
MP_TASK(square_or_fail);

static int sqr_or_fail(const mp_obj *args, mp_obj **result)
{
    int64_t x = arg_int(args, 0);
    if (x < 0)
        return mp_task_fail(7, "Somebody said when (%d)", (int)x);
    *result = mp_obj_int(x * x);
    return 0;
}
MP_TASK(sqr_or_fail);

/* bytes: upper-case the input. */
static int upper(const void *in, size_t len, void **out, size_t *out_len)
{
    unsigned char *o = malloc(len ? len : 1);
    if (!o)
        return -ENOMEM;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = ((const unsigned char *)in)[i];
        o[i] = (c >= 'a' && c <= 'z') ? (unsigned char)(c - 32) : c;
    }
    *out = o;
    *out_len = len;
    return 0;
}
MP_TASK(upper);

/* bytes: a task whose output cannot be sent (NULL with a length): Python's
 * unpickleable result. */
static int broken_output(const void *in, size_t len, void **out, size_t *out_len)
{
    (void)in;
    (void)len;
    *out = NULL;
    *out_len = 5;
    return 0;
}
MP_TASK(broken_output);

static int raising(const void *in, size_t len, void **out, size_t *out_len)
{
    (void)in;
    (void)len;
    (void)out;
    (void)out_len;
    return mp_task_fail(-EKEYEXPIRED, "KeyError: 'key'");
}
MP_TASK(raising);

static int fail_without_message(const void *in, size_t len, void **out, size_t *out_len)
{
    (void)in;
    (void)len;
    (void)out;
    (void)out_len;
    return 99;
}
MP_TASK(fail_without_message);

/* ---- _TestPool ------------------------------------------------------------ */

static void test_apply_runs_the_task_in_a_worker_and_returns_its_value(void **state)
{
    (void)state;
    mp_pool *p = make_pool(4);
    mp_obj *args = tuple2(mp_obj_int(5), NULL);
    mp_obj *res = NULL;
    TU_ASSERT_STATUS(mp_pool_apply(p, sqr, args, &res, NULL, T_LONG), 0);
    assert_int_equal(as_int(res), 25);
    mp_obj_free(res);
    mp_obj_free(args);

    /* The task really ran elsewhere. */
    TU_ASSERT_STATUS(mp_pool_apply(p, return_pid, NULL, &res, NULL, T_LONG), 0);
    assert_int_not_equal(as_int(res), getpid());
    pid_t pids[4];
    int n = mp_pool_pids(p, pids, 4);
    assert_int_equal(n, 4);
    bool found = false;
    for (int i = 0; i < n; i++)
        found |= pids[i] == (pid_t)as_int(res);
    assert_true(found);
    mp_obj_free(res);

    /* The bytes form. */
    void *out;
    size_t len;
    TU_ASSERT_STATUS(mp_pool_apply_bytes(p, upper, "hello", 5, &out, &len, NULL, T_LONG), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(out, "HELLO", 5);
    free(out);
    TU_ASSERT_STATUS(mp_pool_apply_bytes(p, upper, NULL, 0, &out, &len, NULL, T_LONG), 0);
    assert_int_equal(len, 0);
    assert_non_null(out);
    free(out);
    close_join_free(p);
}

static void test_map_matches_a_serial_map_with_any_chunksize(void **state)
{
    (void)state;
    mp_pool *p = make_pool(4);
    for (int round = 0; round < 2; round++) {
        int64_t n = round ? 100 : 10;
        mp_obj *items = int_list(0, n);
        mp_obj *res = NULL;
        TU_ASSERT_STATUS(mp_pool_map(p, sqr, items, round ? 20 : 0, &res, NULL, T_LONG), 0);
        assert_int_equal(mp_obj_type(res), MP_TYPE_LIST);
        assert_int_equal(mp_obj_len(res), n);
        for (int64_t i = 0; i < n; i++)
            assert_int_equal(as_int(mp_obj_list_get(res, (size_t)i)), i * i);
        mp_obj_free(res);
        mp_obj_free(items);
    }
    /* The array form, straight into a C array, for several chunksizes. */
    int32_t in[1000];
    int64_t out[1000];
    for (int i = 0; i < 1000; i++)
        in[i] = i - 500;
    size_t sizes[] = {0, 1, 7, 250, 1000, 5000};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        memset(out, 0xff, sizeof out);
        TU_ASSERT_STATUS(mp_pool_map_array(p, square_int, in, sizeof in[0], 1000, out,
                                           sizeof out[0], sizes[s], NULL, T_LONG),
                         0);
        for (int i = 0; i < 1000; i++)
            assert_int_equal(out[i], (int64_t)(i - 500) * (i - 500));
    }
    close_join_free(p);
}

static mp_obj *zip_pairs(int n)
{
    mp_obj *l = mp_obj_list_new();
    for (int i = 0; i < n; i++)
        assert_int_equal(mp_obj_list_append(l, tuple2(mp_obj_int(i), mp_obj_int(n - 1 - i))), 0);
    return l;
}

static void test_starmap_unpacks_each_tuple_into_arguments(void **state)
{
    (void)state;
    mp_pool *p = make_pool(4);
    for (int round = 0; round < 2; round++) {
        int n = round ? 100 : 10;
        mp_obj *tuples = zip_pairs(n);
        mp_obj *res = NULL;
        TU_ASSERT_STATUS(mp_pool_starmap(p, mul, tuples, round ? 20 : 0, &res, NULL, T_LONG), 0);
        assert_int_equal(mp_obj_len(res), n);
        for (int i = 0; i < n; i++)
            assert_int_equal(as_int(mp_obj_list_get(res, (size_t)i)), i * (n - 1 - i));
        mp_obj_free(res);
        mp_obj_free(tuples);
    }
    /* test_starmap_async */
    mp_obj *tuples = zip_pairs(100);
    mp_result *r;
    TU_ASSERT_STATUS(mp_pool_starmap_async(p, mul, tuples, 0, NULL, &r), 0);
    mp_obj_free(tuples); /* the pool copied it */
    const mp_obj *v;
    TU_ASSERT_STATUS(mp_result_get(r, &v, NULL, T_LONG), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(as_int(mp_obj_list_get(v, (size_t)i)), i * (99 - i));
    mp_result_free(r);
    /* An item that is not a tuple is the task's TypeError. */
    mp_obj *bad = mp_obj_list_new();
    mp_obj_list_append(bad, tuple2(mp_obj_int(2), mp_obj_int(3)));
    mp_obj_list_append(bad, mp_obj_int(4));
    mp_obj *res = NULL;
    mp_task_error err;
    TU_ASSERT_STATUS(mp_pool_starmap(p, mul, bad, 1, &res, &err, T_LONG), MP_ETASK);
    assert_null(res);
    assert_int_equal(err.code, MP_ETYPE);
    assert_int_equal(err.index, 1);
    assert_non_null(strstr(err.message, "tuple or list"));
    mp_obj_free(bad);
    close_join_free(p);
}

static void test_map_async_returns_the_list_and_keeps_no_reference_to_the_input(void **state)
{
    (void)state;
    mp_pool *p = make_pool(4);
    mp_obj *items = int_list(0, 10);
    mp_result *r;
    TU_ASSERT_STATUS(mp_pool_map_async(p, sqr, items, 0, NULL, &r), 0);
    mp_obj_free(items);
    const mp_obj *v;
    TU_ASSERT_STATUS(mp_result_get(r, &v, NULL, T_LONG), 0);
    assert_int_equal(mp_obj_len(v), 10);
    for (int i = 0; i < 10; i++)
        assert_int_equal(as_int(mp_obj_list_get(v, (size_t)i)), i * i);
    /* get() again gives the same value (Python's AsyncResult keeps it). */
    const mp_obj *v2;
    TU_ASSERT_STATUS(mp_result_get(r, &v2, NULL, 0), 0);
    assert_ptr_equal(v, v2);
    assert_int_equal(mp_result_ready(r), 1);
    assert_int_equal(mp_result_successful(r), 1);
    mp_result_free(r);
    close_join_free(p);
}

struct calls {
    pthread_mutex_t mu;
    int ok, failed;
    int64_t first_value;
    int error_status, error_code;
    char error_msg[MP_TASK_MSG_MAX];
    bool in_other_thread;
    bool ready_inside;
    pthread_t main_thread;
};

static void on_ok(mp_result *r, void *user)
{
    struct calls *c = user;
    const mp_obj *v = NULL;
    int rc = mp_result_get(r, &v, NULL, MP_NOWAIT);
    pthread_mutex_lock(&c->mu);
    c->ok++;
    if (rc == 0 && v)
        (void)mp_obj_get_int(mp_obj_list_get(v, 0), &c->first_value); /* no cmocka here */
    c->in_other_thread = !pthread_equal(pthread_self(), c->main_thread);
    c->ready_inside = mp_result_ready(r) == 1;
    pthread_mutex_unlock(&c->mu);
}

static void on_error(mp_result *r, void *user)
{
    struct calls *c = user;
    mp_task_error err;
    int rc = mp_result_get(r, NULL, &err, MP_NOWAIT);
    pthread_mutex_lock(&c->mu);
    c->failed++;
    c->error_status = rc;
    c->error_code = err.code;
    snprintf(c->error_msg, sizeof c->error_msg, "%s", err.message);
    c->in_other_thread = !pthread_equal(pthread_self(), c->main_thread);
    pthread_mutex_unlock(&c->mu);
}

static void test_map_async_callbacks_run_once_in_the_result_thread_before_waiters(void **state)
{
    (void)state;
    mp_pool *p = make_pool(4);
    struct calls c = {.mu = PTHREAD_MUTEX_INITIALIZER, .main_thread = pthread_self()};
    mp_callbacks cbs = {on_ok, on_error, &c};
    mp_obj *items = mp_obj_list_new();
    mp_obj_list_append(items, mp_obj_str_cstr("1"));
    mp_result *r;
    TU_ASSERT_STATUS(mp_pool_map_async(p, to_int, items, 0, &cbs, &r), 0);
    TU_ASSERT_STATUS(mp_result_wait(r, T_LONG), 0);
    /* wait() returned: the callback has already run (Python sets the event
     * after the callback). */
    pthread_mutex_lock(&c.mu);
    assert_int_equal(c.ok, 1);
    assert_int_equal(c.failed, 0);
    assert_int_equal(c.first_value, 1);
    assert_true(c.in_other_thread);
    assert_true(c.ready_inside);
    pthread_mutex_unlock(&c.mu);
    mp_result_free(r);
    mp_obj_free(items);

    items = mp_obj_list_new();
    mp_obj_list_append(items, mp_obj_str_cstr("a"));
    TU_ASSERT_STATUS(mp_pool_map_async(p, to_int, items, 0, &cbs, &r), 0);
    TU_ASSERT_STATUS(mp_result_wait(r, T_LONG), 0);
    pthread_mutex_lock(&c.mu);
    assert_int_equal(c.ok, 1);
    assert_int_equal(c.failed, 1);
    assert_int_equal(c.error_status, MP_ETASK);
    assert_int_equal(c.error_code, MP_EVALUE);
    assert_string_equal(c.error_msg, "invalid literal for int() with base 10: 'a'");
    pthread_mutex_unlock(&c.mu);
    assert_int_equal(mp_result_successful(r), 0);
    mp_result_free(r);
    mp_obj_free(items);

    /* Dropping the handle at once does not cancel the call: the callback
     * still runs (Python's fire-and-forget apply_async). */
    mp_obj *args = tuple2(mp_obj_int(3), NULL);
    TU_ASSERT_STATUS(mp_pool_apply_async(p, sqr, args, &cbs, &r), 0);
    mp_result_free(r);
    mp_obj_free(args);
    close_join_free(p);
    assert_int_equal(c.ok, 2);
}

static void test_map_async_of_an_empty_list_is_ready_at_once(void **state)
{
    (void)state;
    mp_pool *p = make_pool(2);
    mp_obj *empty = mp_obj_list_new();
    mp_result *r;
    TU_ASSERT_STATUS(mp_pool_map_async(p, sqr, empty, 1, NULL, &r), 0);
    const mp_obj *v;
    TU_ASSERT_STATUS(mp_result_get(r, &v, NULL, 1.0), 0);
    assert_int_equal(mp_obj_len(v), 0);
    mp_result_free(r);
    mp_obj_free(empty);
    close_join_free(p);
}

static void test_get_waits_for_the_task_and_times_out_without_losing_it(void **state)
{
    (void)state;
    mp_pool *p = make_pool(3);
    /* test_async: get() blocks until the task is done. */
    mp_obj *args = tuple2(mp_obj_int(7), mp_obj_float(0.2));
    mp_result *r;
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_pool_apply_async(p, sqr, args, NULL, &r), 0);
    const mp_obj *v;
    TU_ASSERT_STATUS(mp_result_get(r, &v, NULL, T_LONG), 0);
    assert_true(tu_now() - t0 >= 0.19);
    assert_int_equal(as_int(v), 49);
    mp_result_free(r);
    mp_obj_free(args);

    /* test_async_timeout: get(timeout) before the task ends is
     * TimeoutError; the task goes on and a later get() has the value. */
    args = tuple2(mp_obj_int(6), mp_obj_float(0.5));
    TU_ASSERT_STATUS(mp_pool_apply_async(p, sqr, args, NULL, &r), 0);
    t0 = tu_now();
    mp_task_error err;
    TU_ASSERT_STATUS(mp_result_get(r, &v, &err, 0.1), MP_ETIMEDOUT);
    double took = tu_now() - t0;
    assert_true(took >= 0.099 && took < 0.45);
    assert_null(v);
    TU_ASSERT_STATUS(mp_result_ready(r), 0);
    /* Python's successful() before ready is ValueError. */
    TU_ASSERT_STATUS(mp_result_successful(r), MP_EVALUE);
    TU_ASSERT_STATUS(mp_result_wait(r, 0.01), MP_ETIMEDOUT);
    TU_ASSERT_STATUS(mp_result_get(r, &v, NULL, T_LONG), 0);
    assert_int_equal(as_int(v), 36);
    mp_result_free(r);

    /* The blocking apply with a timeout gives up too. */
    mp_obj *res = (mp_obj *)1;
    TU_ASSERT_STATUS(mp_pool_apply(p, sqr, args, &res, &err, 0.05), MP_ETIMEDOUT);
    assert_null(res);
    assert_int_equal(err.status, MP_ETIMEDOUT);
    mp_obj_free(args);
    close_join_free(p);
}

static void test_imap_yields_every_result_in_input_order_then_ends(void **state)
{
    (void)state;
    mp_pool *p = make_pool(4);
    size_t counts[] = {10, 1000};
    size_t chunks[] = {0, 100};
    for (int round = 0; round < 2; round++) {
        mp_obj *items = int_list(0, (int64_t)counts[round]);
        mp_imap *it;
        TU_ASSERT_STATUS(mp_pool_imap(p, sqr, items, chunks[round], &it), 0);
        mp_obj_free(items);
        for (size_t i = 0; i < counts[round]; i++) {
            mp_obj *v;
            size_t index;
            TU_ASSERT_STATUS(mp_imap_next(it, &index, &v, NULL, T_LONG), 1);
            assert_int_equal(index, i);
            assert_int_equal(as_int(v), (int64_t)(i * i));
            mp_obj_free(v);
        }
        /* StopIteration, again and again. */
        TU_ASSERT_STATUS(mp_imap_next(it, NULL, NULL, NULL, T_LONG), 0);
        TU_ASSERT_STATUS(mp_imap_next(it, NULL, NULL, NULL, 0), 0);
        mp_imap_free(it);
    }
    /* The array form: out[index] is ready when next() hands index out. */
    int32_t in[500];
    int64_t out[500];
    for (int i = 0; i < 500; i++)
        in[i] = i;
    mp_imap *it;
    TU_ASSERT_STATUS(
        mp_pool_imap_array(p, square_int, in, sizeof in[0], 500, out, sizeof out[0], 7, &it), 0);
    for (size_t i = 0; i < 500; i++) {
        size_t index;
        mp_obj *v = (mp_obj *)1;
        TU_ASSERT_STATUS(mp_imap_next(it, &index, &v, NULL, T_LONG), 1);
        assert_int_equal(index, i);
        assert_null(v);
        assert_int_equal(out[index], (int64_t)(i * i));
    }
    TU_ASSERT_STATUS(mp_imap_next(it, NULL, NULL, NULL, T_LONG), 0);
    mp_imap_free(it);
    close_join_free(p);
}

/* Items 0..n-1 where the item at `when` is -1 (the task fails there). */
static mp_obj *list_failing_at(int n, int when)
{
    mp_obj *l = mp_obj_list_new();
    for (int i = 0; i < n; i++)
        mp_obj_list_append(l, mp_obj_int(i == when ? -1 : i));
    return l;
}

static void test_imap_reports_a_failing_item_at_its_position_and_goes_on(void **state)
{
    (void)state;
    mp_pool *p = make_pool(4);
    struct {
        int n, when;
        size_t chunksize;
    } cases[] = {{1, 0, 1}, {10, 3, 1}, {20, 7, 2}, {20, 7, 4}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        mp_obj *items = list_failing_at(cases[c].n, cases[c].when);
        mp_imap *it;
        TU_ASSERT_STATUS(mp_pool_imap(p, sqr_or_fail, items, cases[c].chunksize, &it), 0);
        mp_obj_free(items);
        for (int i = 0; i < cases[c].n; i++) {
            mp_obj *v;
            size_t index;
            mp_task_error err;
            int rc = mp_imap_next(it, &index, &v, &err, T_LONG);
            assert_int_equal(index, i);
            if (i == cases[c].when) {
                /* Python raises SayWhenError at this position. Unlike
                 * Python, the items before it in its chunk are delivered,
                 * and the iterator goes on after it whatever the chunksize. */
                TU_ASSERT_STATUS(rc, MP_ETASK);
                assert_null(v);
                assert_int_equal(err.status, MP_ETASK);
                assert_int_equal(err.code, 7);
                assert_int_equal(err.index, i);
                assert_string_equal(err.message, "Somebody said when (-1)");
            } else {
                TU_ASSERT_STATUS(rc, 1);
                assert_int_equal(as_int(v), i * i);
                mp_obj_free(v);
            }
        }
        TU_ASSERT_STATUS(mp_imap_next(it, NULL, NULL, NULL, T_LONG), 0);
        mp_imap_free(it);
    }
    close_join_free(p);
}

static void test_imap_unordered_yields_every_result_once(void **state)
{
    (void)state;
    mp_pool *p = make_pool(4);
    size_t counts[] = {10, 1000};
    size_t chunks[] = {0, 100};
    for (int round = 0; round < 2; round++) {
        size_t n = counts[round];
        mp_obj *items = list_failing_at((int)n, round ? 500 : 3);
        mp_imap *it;
        TU_ASSERT_STATUS(mp_pool_imap_unordered(p, sqr_or_fail, items, chunks[round], &it), 0);
        mp_obj_free(items);
        bool *seen = calloc(n, 1);
        int errors = 0;
        for (size_t k = 0; k < n; k++) {
            mp_obj *v;
            size_t index = SIZE_MAX;
            mp_task_error err;
            int rc = mp_imap_next(it, &index, &v, &err, T_LONG);
            assert_true(index < n);
            assert_false(seen[index]);
            seen[index] = true;
            if (rc == MP_ETASK) {
                errors++;
                assert_int_equal(err.index, index);
                assert_int_equal(index, round ? 500 : 3);
            } else {
                TU_ASSERT_STATUS(rc, 1);
                assert_int_equal(as_int(v), (int64_t)(index * index));
                mp_obj_free(v);
            }
        }
        assert_int_equal(errors, 1);
        TU_ASSERT_STATUS(mp_imap_next(it, NULL, NULL, NULL, T_LONG), 0);
        free(seen);
        mp_imap_free(it);
    }
    /* The array form hands out indices of out[] as they complete. */
    int32_t in[300];
    int64_t out[300];
    for (int i = 0; i < 300; i++)
        in[i] = i;
    mp_imap *it;
    TU_ASSERT_STATUS(mp_pool_imap_unordered_array(p, square_int, in, sizeof in[0], 300, out,
                                                  sizeof out[0], 0, &it),
                     0);
    int64_t sum = 0;
    size_t index;
    int got = 0;
    while (mp_imap_next(it, &index, NULL, NULL, T_LONG) == 1) {
        sum += out[index];
        got++;
    }
    assert_int_equal(got, 300);
    assert_int_equal(sum, 299 * 300 * 599 / 6);
    mp_imap_free(it);
    close_join_free(p);
}

static void test_make_pool_refuses_bad_arguments_and_defaults_to_the_cpu_count(void **state)
{
    (void)state;
    mp_pool *p = (mp_pool *)1;
    mp_pool_opts o = pool_test_opts();
    o.processes = -1;
    TU_ASSERT_STATUS(pool_test_new(&p, &o), MP_EVALUE);
    assert_null(p);
    o.processes = 1;
    o.maxtasksperchild = -1; /* test_pool_maxtasksperchild_invalid */
    TU_ASSERT_STATUS(pool_test_new(&p, &o), MP_EVALUE);
    TU_ASSERT_STATUS(pool_test_new(NULL, &o), -EINVAL);

    p = make_pool(3);
    assert_int_equal(mp_pool_processes(p), 3);
    pid_t pids[8];
    assert_int_equal(mp_pool_pids(p, pids, 8), 3);
    assert_int_equal(mp_pool_pids(p, pids, 1), 3); /* count, one stored */
    close_join_free(p);

    /* processes 0 (or no options): os.cpu_count() workers (on MPI: every
     * rank but rank 0). */
    TU_ASSERT_STATUS(pool_test_new(&p, NULL), 0);
    assert_int_equal(mp_pool_processes(p), pool_test_default_processes());
    close_join_free(p);
}

static void test_calls_refuse_bad_arguments(void **state)
{
    (void)state;
    mp_pool *p = make_pool(1);
    mp_result *r = (mp_result *)1;
    mp_imap *it = (mp_imap *)1;
    int32_t in[4] = {0};
    int64_t out[4];
    mp_obj *notseq = mp_obj_int(3);
    mp_obj *list = int_list(0, 3);
    TU_ASSERT_STATUS(mp_pool_apply_async(p, NULL, NULL, NULL, &r), -EINVAL);
    assert_null(r);
    TU_ASSERT_STATUS(mp_pool_apply_async(p, sqr, notseq, NULL, &r), -EINVAL);
    TU_ASSERT_STATUS(mp_pool_apply_async(NULL, sqr, NULL, NULL, &r), -EINVAL);
    TU_ASSERT_STATUS(mp_pool_map_async(p, sqr, notseq, 0, NULL, &r), -EINVAL);
    TU_ASSERT_STATUS(mp_pool_map_async(p, sqr, NULL, 0, NULL, &r), -EINVAL);
    TU_ASSERT_STATUS(mp_pool_imap(p, sqr, list, 0, NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_pool_map_array_async(p, square_int, NULL, 4, 4, out, 8, 0, NULL, &r),
                     -EINVAL);
    TU_ASSERT_STATUS(mp_pool_map_array_async(p, square_int, in, 0, 4, out, 8, 0, NULL, &r),
                     -EINVAL);
    TU_ASSERT_STATUS(mp_pool_map_array_async(p, square_int, in, 4, 4, out, 0, 0, NULL, &r),
                     -EINVAL);
    TU_ASSERT_STATUS(
        mp_pool_map_array_async(p, square_int, in, 4, SIZE_MAX / 2, out, 8, 0, NULL, &r),
        -EOVERFLOW);
    TU_ASSERT_STATUS(mp_pool_imap_array(p, square_int, in, 4, 4, NULL, 8, 0, &it), -EINVAL);
    assert_null(it);
    TU_ASSERT_STATUS(mp_pool_apply_bytes_async(p, upper, NULL, 3, NULL, &r), -EINVAL);
    void *o;
    size_t olen;
    TU_ASSERT_STATUS(mp_pool_apply_bytes(p, upper, "x", 1, NULL, &olen, NULL, 1.0), -EINVAL);
    TU_ASSERT_STATUS(mp_pool_apply_bytes(p, upper, "x", 1, &o, NULL, NULL, 1.0), -EINVAL);
    TU_ASSERT_STATUS(mp_result_get(NULL, NULL, NULL, 0), -EINVAL);
    TU_ASSERT_STATUS(mp_result_wait(NULL, 0), -EINVAL);
    TU_ASSERT_STATUS(mp_result_ready(NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_result_successful(NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_imap_next(NULL, NULL, NULL, NULL, 0), -EINVAL);
    TU_ASSERT_STATUS(mp_pool_close(NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_pool_join(NULL, 0), -EINVAL);
    TU_ASSERT_STATUS(mp_pool_terminate(NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_pool_processes(NULL), -EINVAL);
    /* A value-form result read as bytes, and the other way round. */
    mp_obj *args = tuple2(mp_obj_int(2), NULL);
    TU_ASSERT_STATUS(mp_pool_apply_async(p, sqr, args, NULL, &r), 0);
    const void *b;
    size_t blen;
    TU_ASSERT_STATUS(mp_result_get_bytes(r, &b, &blen, NULL, T_LONG), -EINVAL);
    TU_ASSERT_STATUS(mp_result_get(r, NULL, NULL, T_LONG), 0);
    mp_result_free(r);
    mp_result_free(NULL);
    mp_imap_free(NULL);
    mp_pool_free(NULL); /* accepted */
    mp_obj_free(args);
    mp_obj_free(notseq);
    mp_obj_free(list);
    close_join_free(p);
}

static void test_terminate_fails_every_pending_result_instead_of_blocking(void **state)
{
    (void)state;
    mp_pool *p = make_pool(3);
    /* test_terminate: slow tasks that would take "forever". */
    enum { N = 2000 };
    static double naps[N];
    static int32_t outs[N];
    for (int i = 0; i < N; i++)
        naps[i] = 30.0;
    struct calls c = {.mu = PTHREAD_MUTEX_INITIALIZER, .main_thread = pthread_self()};
    mp_callbacks cbs = {on_ok, on_error, &c};
    mp_result *r;
    TU_ASSERT_STATUS(mp_pool_map_array_async(p, sleep_item, naps, sizeof naps[0], N, outs,
                                             sizeof outs[0], 1, &cbs, &r),
                     0);
    mp_obj *args = tuple2(mp_obj_int(2), NULL);
    mp_result *r2;
    TU_ASSERT_STATUS(mp_pool_apply_async(p, sqr, args, NULL, &r2), 0);
    mp_obj *items = int_list(0, 50);
    mp_imap *it;
    TU_ASSERT_STATUS(mp_pool_imap(p, sqr, items, 1, &it), 0);
    tu_sleep(0.1);
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_pool_terminate(p), 0);
    /* When terminate() returns, the pending results are failed. */
    TU_ASSERT_STATUS(mp_result_ready(r), 1);
    mp_task_error err;
    TU_ASSERT_STATUS(mp_result_get(r, NULL, &err, 0), MP_ETERMINATED);
    assert_int_equal(err.status, MP_ETERMINATED);
    assert_non_null(strstr(err.message, "terminated"));
    pthread_mutex_lock(&c.mu);
    assert_int_equal(c.failed, 1);
    assert_int_equal(c.error_status, MP_ETERMINATED);
    pthread_mutex_unlock(&c.mu);
    TU_ASSERT_STATUS(mp_pool_join(p, T_LONG), 0);
    assert_true(tu_now() - t0 < 20.0);
    /* r2 may have finished before the terminate; either outcome is final. */
    int rc = mp_result_get(r2, NULL, NULL, 0);
    assert_true(rc == 0 || rc == MP_ETERMINATED);
    /* imap: what had arrived is handed out, then MP_ETERMINATED. */
    for (;;) {
        rc = mp_imap_next(it, NULL, NULL, NULL, 0);
        if (rc != 1)
            break;
    }
    assert_true(rc == 0 || rc == MP_ETERMINATED);
    /* Submitting after terminate is ValueError("Pool not running"). */
    mp_result *r3 = (mp_result *)1;
    TU_ASSERT_STATUS(mp_pool_apply_async(p, sqr, args, NULL, &r3), MP_ECLOSED);
    assert_null(r3);
    TU_ASSERT_STATUS(mp_pool_terminate(p), 0); /* again: harmless */
    mp_imap_free(it);
    mp_result_free(r);
    mp_result_free(r2);
    mp_obj_free(items);
    mp_obj_free(args);
    mp_pool_free(p);
}

static void test_empty_inputs_give_empty_results(void **state)
{
    (void)state;
    mp_pool *p = make_pool(1);
    mp_obj *empty = mp_obj_list_new();
    mp_obj *res = NULL;
    TU_ASSERT_STATUS(mp_pool_map(p, sqr, empty, 0, &res, NULL, T_LONG), 0);
    assert_int_equal(mp_obj_len(res), 0);
    mp_obj_free(res);
    mp_imap *it;
    TU_ASSERT_STATUS(mp_pool_imap(p, sqr, empty, 0, &it), 0);
    TU_ASSERT_STATUS(mp_imap_next(it, NULL, NULL, NULL, T_LONG), 0);
    mp_imap_free(it);
    TU_ASSERT_STATUS(mp_pool_imap_unordered(p, sqr, empty, 0, &it), 0);
    TU_ASSERT_STATUS(mp_imap_next(it, NULL, NULL, NULL, T_LONG), 0);
    mp_imap_free(it);
    mp_result *r;
    TU_ASSERT_STATUS(mp_pool_map_async(p, sqr, empty, 0, NULL, &r), 0);
    const mp_obj *v;
    TU_ASSERT_STATUS(mp_result_get(r, &v, NULL, T_LONG), 0);
    assert_int_equal(mp_obj_len(v), 0);
    mp_result_free(r);
    TU_ASSERT_STATUS(mp_pool_map_array(p, square_int, NULL, 4, 0, NULL, 8, 0, NULL, T_LONG), 0);
    mp_obj_free(empty);
    close_join_free(p);
}

static void test_closed_pool_refuses_work_and_join_needs_close(void **state)
{
    (void)state;
    mp_pool *p = make_pool(2);
    /* Python's join() on a running pool: ValueError. */
    TU_ASSERT_STATUS(mp_pool_join(p, 0), MP_EVALUE);
    mp_obj *items = int_list(0, 10);
    mp_result *r;
    TU_ASSERT_STATUS(mp_pool_map_async(p, sqr, items, 0, NULL, &r), 0);
    TU_ASSERT_STATUS(mp_pool_close(p), 0);
    TU_ASSERT_STATUS(mp_pool_close(p), 0);
    /* test_context: after close, submitting is ValueError. */
    mp_result *r2 = (mp_result *)1;
    TU_ASSERT_STATUS(mp_pool_map_async(p, sqr, items, 0, NULL, &r2), MP_ECLOSED);
    assert_null(r2);
    mp_imap *it;
    TU_ASSERT_STATUS(mp_pool_imap(p, sqr, items, 0, &it), MP_ECLOSED);
    int32_t in[2] = {1, 2};
    int64_t out[2];
    TU_ASSERT_STATUS(mp_pool_map_array(p, square_int, in, 4, 2, out, 8, 0, NULL, 1.0), MP_ECLOSED);
    /* Work queued before close still completes. */
    TU_ASSERT_STATUS(mp_pool_join(p, T_LONG), 0);
    const mp_obj *v;
    TU_ASSERT_STATUS(mp_result_get(r, &v, NULL, 0), 0);
    assert_int_equal(as_int(mp_obj_list_get(v, 9)), 81);
    /* join again is fine; results outlive the pool. */
    TU_ASSERT_STATUS(mp_pool_join(p, 0), 0);
    mp_pool_free(p);
    TU_ASSERT_STATUS(mp_result_get(r, &v, NULL, 0), 0);
    assert_int_equal(as_int(mp_obj_list_get(v, 3)), 9);
    mp_result_free(r);
    mp_obj_free(items);
}

static void test_a_failing_task_gives_its_code_and_message(void **state)
{
    (void)state;
    mp_pool *p = make_pool(2);
    mp_task_error err;
    void *out = (void *)1;
    size_t len;
    /* test_traceback / test_wrapped_exception: the task's own error. */
    TU_ASSERT_STATUS(mp_pool_apply_bytes(p, raising, NULL, 0, &out, &len, &err, T_LONG), MP_ETASK);
    assert_null(out);
    assert_int_equal(err.status, MP_ETASK);
    assert_int_equal(err.code, -EKEYEXPIRED);
    assert_int_equal(err.index, 0);
    assert_string_equal(err.message, "KeyError: 'key'");
    TU_ASSERT_STATUS(
        mp_pool_apply_bytes(p, fail_without_message, NULL, 0, &out, &len, &err, T_LONG), MP_ETASK);
    assert_int_equal(err.code, 99);
    assert_string_equal(err.message, "task failed with code 99");
    /* test_async_error_callback */
    struct calls c = {.mu = PTHREAD_MUTEX_INITIALIZER, .main_thread = pthread_self()};
    mp_callbacks cbs = {on_ok, on_error, &c};
    mp_result *r;
    TU_ASSERT_STATUS(mp_pool_apply_bytes_async(p, raising, NULL, 0, &cbs, &r), 0);
    TU_ASSERT_STATUS(mp_result_get_bytes(r, NULL, NULL, &err, T_LONG), MP_ETASK);
    pthread_mutex_lock(&c.mu);
    assert_int_equal(c.failed, 1);
    assert_int_equal(c.error_code, -EKEYEXPIRED);
    pthread_mutex_unlock(&c.mu);
    assert_int_equal(mp_result_successful(r), 0);
    mp_result_free(r);
    /* test_unpickleable_result: an output that cannot be sent fails its
     * task (Python's MaybeEncodingError), and the workers survive it. */
    pid_t before[2], after[2];
    assert_int_equal(mp_pool_pids(p, before, 2), 2);
    for (int i = 0; i < 20; i++) {
        TU_ASSERT_STATUS(mp_pool_apply_bytes(p, broken_output, "x", 1, &out, &len, &err, T_LONG),
                         -EINVAL);
        assert_int_equal(err.status, -EINVAL);
        assert_non_null(strstr(err.message, "NULL"));
    }
    assert_int_equal(mp_pool_pids(p, after, 2), 2);
    assert_true((before[0] == after[0] && before[1] == after[1]) ||
                (before[0] == after[1] && before[1] == after[0]));
    close_join_free(p);
}

static void test_map_fails_with_its_first_failing_item_after_running_the_rest(void **state)
{
    (void)state;
    mp_pool *p = make_pool(2);
    enum { N = 1000 };
    int32_t in[N], out[N];
    for (int i = 0; i < N; i++) {
        in[i] = (i == 400 || i == 700) ? -i : i;
        out[i] = -1;
    }
    mp_task_error err;
    for (size_t chunk = 1; chunk <= 64; chunk *= 8) {
        TU_ASSERT_STATUS(mp_pool_map_array(p, square_or_fail, in, sizeof in[0], N, out,
                                           sizeof out[0], chunk, &err, T_LONG),
                         MP_ETASK);
        assert_int_equal(err.code, 42);
        assert_int_equal(err.index, 400);
        assert_string_equal(err.message, "negative item -400");
        /* Every other item was computed; the failed slots are untouched. */
        for (int i = 0; i < N; i++)
            assert_int_equal(out[i], (i == 400 || i == 700) ? -1 : i * i);
    }
    /* The value form, mid-map. */
    mp_obj *items = list_failing_at(100, 37);
    mp_obj *res = (mp_obj *)1;
    TU_ASSERT_STATUS(mp_pool_map(p, sqr_or_fail, items, 0, &res, &err, T_LONG), MP_ETASK);
    assert_null(res);
    assert_int_equal(err.index, 37);
    assert_int_equal(err.code, 7);
    mp_obj_free(items);
    close_join_free(p);
}

static void test_close_and_join_wait_for_every_task_after_a_failure(void **state)
{
    (void)state;
    /* test_map_no_failfast: a map that fails still lets close+join finish,
     * after all its tasks have run. */
    mp_pool *p = make_pool(2);
    double t0 = tu_now();
    double naps[2] = {0.0, 0.4};
    int32_t outs[2];
    mp_result *r;
    TU_ASSERT_STATUS(mp_pool_map_array_async(p, sleep_item, naps, sizeof naps[0], 2, outs,
                                             sizeof outs[0], 1, NULL, &r),
                     0);
    mp_obj *items = list_failing_at(2, 0);
    mp_obj *res = NULL;
    TU_ASSERT_STATUS(mp_pool_map(p, sqr_or_fail, items, 1, &res, NULL, T_LONG), MP_ETASK);
    TU_ASSERT_STATUS(mp_pool_close(p), 0);
    TU_ASSERT_STATUS(mp_pool_join(p, T_LONG), 0);
    assert_true(tu_now() - t0 > 0.39);
    TU_ASSERT_STATUS(mp_result_get(r, NULL, NULL, 0), 0);
    assert_int_equal(outs[1], 1);
    mp_result_free(r);
    mp_obj_free(items);
    mp_pool_free(p);
}

int main(int argc, char **argv)
{
    if (pool_test_main(argc, argv) < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        TU_TEST(test_apply_runs_the_task_in_a_worker_and_returns_its_value),
        TU_TEST(test_map_matches_a_serial_map_with_any_chunksize),
        TU_TEST(test_starmap_unpacks_each_tuple_into_arguments),
        TU_TEST(test_map_async_returns_the_list_and_keeps_no_reference_to_the_input),
        TU_TEST(test_map_async_callbacks_run_once_in_the_result_thread_before_waiters),
        TU_TEST(test_map_async_of_an_empty_list_is_ready_at_once),
        TU_TEST(test_get_waits_for_the_task_and_times_out_without_losing_it),
        TU_TEST(test_imap_yields_every_result_in_input_order_then_ends),
        TU_TEST(test_imap_reports_a_failing_item_at_its_position_and_goes_on),
        TU_TEST(test_imap_unordered_yields_every_result_once),
        TU_TEST(test_make_pool_refuses_bad_arguments_and_defaults_to_the_cpu_count),
        TU_TEST(test_calls_refuse_bad_arguments),
        TU_TEST(test_terminate_fails_every_pending_result_instead_of_blocking),
        TU_TEST(test_empty_inputs_give_empty_results),
        TU_TEST(test_closed_pool_refuses_work_and_join_needs_close),
        TU_TEST(test_a_failing_task_gives_its_code_and_message),
        TU_TEST(test_map_fails_with_its_first_failing_item_after_running_the_rest),
        TU_TEST(test_close_and_join_wait_for_every_task_after_a_failure),
    };
    return POOL_RUN_TESTS(tests);
}
