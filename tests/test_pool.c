/*
 * pool: Python's multiprocessing.Pool for fork (multiprocessing/pool.py),
 * tested across real worker processes.
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
 *   _TestPoolWorkerLifetime test_pool_worker_lifetime,
 *                          test_pool_worker_lifetime_early_close,
 *                          test_pool_maxtasksperchild_invalid
 *   TestInitializers       test_pool_initializer
 * Beyond Python (issue 7): a worker dying mid-task by SIGKILL, a crash,
 * _exit() or exit() fails that task only with MP_EWORKER and its exit code,
 * the worker is replaced and everything else completes; a worker dying in
 * its initializer fails nothing; terminate() fails pending results with
 * MP_ETERMINATED; a forked child of the owner gets MP_EFORKED; 100,000
 * tasks with a checksum.
 *
 * Set POOL_TEST_FILTER to a cmocka pattern ("test_worker_*": every death) to run a subset,
 * as the 20-runs-in-a-row death check does.
 */
#include "testutil.h"

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

/* Generous bounds: they only need to be finite (valgrind is ~50x slower). */
#define T_LONG 60.0

/*
 * LeakSanitizer (the asan preset) checks every process that leaves through
 * exit(), forked children included, and changes their exit status when it
 * finds blocks they inherited from their parent. As tests/valgrind.sh does,
 * judge leaks in the test process only: this is LSan's documented hook for
 * turning the exit-time check off, here in every other process (a task
 * that calls exit(3), a child that exits with a pool running).
 */
static pid_t test_pid;
/* Exported (the build hides symbols by default) so the sanitizer runtime
 * finds it. */
__attribute__((visibility("default"))) int __lsan_is_turned_off(void);
__attribute__((visibility("default"))) int __lsan_is_turned_off(void)
{
    return test_pid != 0 && getpid() != test_pid;
}

static mp_obj *tuple2(mp_obj *a, mp_obj *b)
{
    mp_obj *t = mp_obj_tuple_new();
    assert_non_null(t);
    assert_int_equal(mp_obj_tuple_append(t, a), 0);
    if (b)
        assert_int_equal(mp_obj_tuple_append(t, b), 0);
    return t;
}

static mp_obj *int_list(int64_t from, int64_t to)
{
    mp_obj *l = mp_obj_list_new();
    for (int64_t i = from; i < to; i++)
        assert_int_equal(mp_obj_list_append(l, mp_obj_int(i)), 0);
    return l;
}

static int64_t as_int(const mp_obj *o)
{
    int64_t v = -12345;
    assert_int_equal(mp_obj_get_int(o, &v), 0);
    return v;
}

static mp_pool *make_pool(int processes)
{
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = processes;
    mp_pool *p = NULL;
    TU_ASSERT_STATUS(mp_pool_new(&p, &o), 0);
    assert_non_null(p);
    return p;
}

static void close_join_free(mp_pool *p)
{
    TU_ASSERT_STATUS(mp_pool_close(p), 0);
    TU_ASSERT_STATUS(mp_pool_join(p, T_LONG), 0);
    TU_ASSERT_STATUS(mp_pool_free(p), 0);
}

/* ---- tasks (they run in the workers) ------------------------------------ */

/* Python's sqr(x, wait=0.0): x*x after sleeping wait seconds. */
static int sqr(const mp_obj *args, mp_obj **result)
{
    int64_t x;
    if (mp_obj_get_int(mp_obj_list_get(args, 0), &x) < 0)
        return mp_task_fail(MP_ETYPE, "sqr() needs an int");
    double wait = 0;
    if (mp_obj_len(args) > 1)
        (void)mp_obj_get_float(mp_obj_list_get(args, 1), &wait);
    if (wait > 0)
        tu_sleep(wait);
    *result = mp_obj_int(x * x);
    return 0;
}

static int mul(const mp_obj *args, mp_obj **result)
{
    int64_t x, y;
    if (mp_obj_get_int(mp_obj_list_get(args, 0), &x) < 0 ||
        mp_obj_get_int(mp_obj_list_get(args, 1), &y) < 0)
        return mp_task_fail(MP_ETYPE, "mul() needs two ints");
    *result = mp_obj_int(x * y);
    return 0;
}

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

static int square_int(const void *in, void *out)
{
    int64_t x = *(const int32_t *)in;
    *(int64_t *)out = x * x;
    return 0;
}

/* Fails (code 42) on the items whose value is negative. */
static int square_or_fail(const void *in, void *out)
{
    int32_t x = *(const int32_t *)in;
    if (x < 0)
        return mp_task_fail(42, "negative item %d", (int)x);
    *(int32_t *)out = x * x;
    return 0;
}

/* For tasks: they run in workers, where no cmocka assert may run. */
static int64_t arg_int(const mp_obj *args, size_t i)
{
    int64_t v = 0;
    (void)mp_obj_get_int(mp_obj_list_get(args, i), &v);
    return v;
}

static int sqr_or_fail(const mp_obj *args, mp_obj **result)
{
    int64_t x = arg_int(args, 0);
    if (x < 0)
        return mp_task_fail(7, "Somebody said when (%d)", (int)x);
    *result = mp_obj_int(x * x);
    return 0;
}

/* Python's time.sleep(seconds) over an array of doubles. */
static int sleep_item(const void *in, void *out)
{
    tu_sleep(*(const double *)in);
    *(int32_t *)out = 1;
    return 0;
}

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

static int raising(const void *in, size_t len, void **out, size_t *out_len)
{
    (void)in;
    (void)len;
    (void)out;
    (void)out_len;
    return mp_task_fail(-EKEYEXPIRED, "KeyError: 'key'");
}

static int fail_without_message(const void *in, size_t len, void **out, size_t *out_len)
{
    (void)in;
    (void)len;
    (void)out;
    (void)out_len;
    return 99;
}

/* The ways a task can kill its worker (issue 7). */
static void die(const char *how)
{
    if (strcmp(how, "sigkill") == 0) {
        raise(SIGKILL);
    } else if (strcmp(how, "segv") == 0) {
        /* cmocka's SIGSEGV handler is inherited from the test process: a
         * real crash meets the default action. raise() stands for the
         * invalid access, which valgrind would report as an error. */
        signal(SIGSEGV, SIG_DFL);
        raise(SIGSEGV);
    } else if (strcmp(how, "_exit") == 0) {
        _exit(7);
    } else if (strcmp(how, "exit") == 0) {
        exit(3);
    }
}

/* args: (how, x): dies when how is not "", else returns x*x. */
static int maybe_die(const mp_obj *args, mp_obj **result)
{
    const char *how;
    (void)mp_obj_get_str(mp_obj_list_get(args, 0), &how, NULL);
    die(how);
    int64_t x = arg_int(args, 1);
    *result = mp_obj_int(x * x);
    return 0;
}

/* Array form: item -1 dies by _exit(7), item -2 by SIGKILL. (Not a global
 * set by the test: a worker sees memory as it was when it was forked.) */
static int square_or_die(const void *in, void *out)
{
    int32_t x = *(const int32_t *)in;
    if (x == -1)
        die("_exit");
    if (x == -2)
        die("sigkill");
    *(int32_t *)out = x * x;
    return 0;
}

static int return_pid(const mp_obj *args, mp_obj **result)
{
    (void)args;
    *result = mp_obj_int(getpid());
    return 0;
}

/* ---- _TestPool ------------------------------------------------------------ */

static void test_apply_runs_the_task_in_a_worker_and_returns_its_value(void **state)
{
    (void)state;
    mp_pool *p = make_pool(4);
    mp_obj *args = tuple2(mp_obj_int(5), NULL);
    mp_obj *res = NULL;
    TU_ASSERT_STATUS(mp_pool_apply(p, sqr, args, &res, T_LONG, NULL), 0);
    assert_int_equal(as_int(res), 25);
    mp_obj_free(res);
    mp_obj_free(args);

    /* The task really ran elsewhere. */
    TU_ASSERT_STATUS(mp_pool_apply(p, return_pid, NULL, &res, T_LONG, NULL), 0);
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
    TU_ASSERT_STATUS(mp_pool_apply_bytes(p, upper, "hello", 5, &out, &len, T_LONG, NULL), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(out, "HELLO", 5);
    free(out);
    TU_ASSERT_STATUS(mp_pool_apply_bytes(p, upper, NULL, 0, &out, &len, T_LONG, NULL), 0);
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
        TU_ASSERT_STATUS(mp_pool_map(p, sqr, items, round ? 20 : 0, &res, T_LONG, NULL), 0);
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
                                           sizeof out[0], sizes[s], T_LONG, NULL),
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
        TU_ASSERT_STATUS(mp_pool_starmap(p, mul, tuples, round ? 20 : 0, &res, T_LONG, NULL), 0);
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
    TU_ASSERT_STATUS(mp_result_get(r, T_LONG, &v, NULL), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(as_int(mp_obj_list_get(v, (size_t)i)), i * (99 - i));
    mp_result_free(r);
    /* An item that is not a tuple is the task's TypeError. */
    mp_obj *bad = mp_obj_list_new();
    mp_obj_list_append(bad, tuple2(mp_obj_int(2), mp_obj_int(3)));
    mp_obj_list_append(bad, mp_obj_int(4));
    mp_obj *res = NULL;
    mp_task_error err;
    TU_ASSERT_STATUS(mp_pool_starmap(p, mul, bad, 1, &res, T_LONG, &err), MP_ETASK);
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
    TU_ASSERT_STATUS(mp_result_get(r, T_LONG, &v, NULL), 0);
    assert_int_equal(mp_obj_len(v), 10);
    for (int i = 0; i < 10; i++)
        assert_int_equal(as_int(mp_obj_list_get(v, (size_t)i)), i * i);
    /* get() again gives the same value (Python's AsyncResult keeps it). */
    const mp_obj *v2;
    TU_ASSERT_STATUS(mp_result_get(r, 0, &v2, NULL), 0);
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
    int rc = mp_result_get(r, MP_NOWAIT, &v, NULL);
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
    int rc = mp_result_get(r, MP_NOWAIT, NULL, &err);
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
    TU_ASSERT_STATUS(mp_result_get(r, 1.0, &v, NULL), 0);
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
    TU_ASSERT_STATUS(mp_result_get(r, T_LONG, &v, NULL), 0);
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
    TU_ASSERT_STATUS(mp_result_get(r, 0.1, &v, &err), MP_ETIMEDOUT);
    double took = tu_now() - t0;
    assert_true(took >= 0.099 && took < 0.45);
    assert_null(v);
    TU_ASSERT_STATUS(mp_result_ready(r), 0);
    /* Python's successful() before ready is ValueError. */
    TU_ASSERT_STATUS(mp_result_successful(r), MP_EVALUE);
    TU_ASSERT_STATUS(mp_result_wait(r, 0.01), MP_ETIMEDOUT);
    TU_ASSERT_STATUS(mp_result_get(r, T_LONG, &v, NULL), 0);
    assert_int_equal(as_int(v), 36);
    mp_result_free(r);

    /* The blocking apply with a timeout gives up too. */
    mp_obj *res = (mp_obj *)1;
    TU_ASSERT_STATUS(mp_pool_apply(p, sqr, args, &res, 0.05, &err), MP_ETIMEDOUT);
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
            TU_ASSERT_STATUS(mp_imap_next(it, T_LONG, &index, &v, NULL), 1);
            assert_int_equal(index, i);
            assert_int_equal(as_int(v), (int64_t)(i * i));
            mp_obj_free(v);
        }
        /* StopIteration, again and again. */
        TU_ASSERT_STATUS(mp_imap_next(it, T_LONG, NULL, NULL, NULL), 0);
        TU_ASSERT_STATUS(mp_imap_next(it, 0, NULL, NULL, NULL), 0);
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
        TU_ASSERT_STATUS(mp_imap_next(it, T_LONG, &index, &v, NULL), 1);
        assert_int_equal(index, i);
        assert_null(v);
        assert_int_equal(out[index], (int64_t)(i * i));
    }
    TU_ASSERT_STATUS(mp_imap_next(it, T_LONG, NULL, NULL, NULL), 0);
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
            int rc = mp_imap_next(it, T_LONG, &index, &v, &err);
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
        TU_ASSERT_STATUS(mp_imap_next(it, T_LONG, NULL, NULL, NULL), 0);
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
            int rc = mp_imap_next(it, T_LONG, &index, &v, &err);
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
        TU_ASSERT_STATUS(mp_imap_next(it, T_LONG, NULL, NULL, NULL), 0);
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
    while (mp_imap_next(it, T_LONG, &index, NULL, NULL) == 1) {
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
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = -1;
    TU_ASSERT_STATUS(mp_pool_new(&p, &o), MP_EVALUE);
    assert_null(p);
    o.processes = 1;
    o.maxtasksperchild = -1; /* test_pool_maxtasksperchild_invalid */
    TU_ASSERT_STATUS(mp_pool_new(&p, &o), MP_EVALUE);
    TU_ASSERT_STATUS(mp_pool_new(NULL, &o), -EINVAL);

    p = make_pool(3);
    assert_int_equal(mp_pool_processes(p), 3);
    pid_t pids[8];
    assert_int_equal(mp_pool_pids(p, pids, 8), 3);
    assert_int_equal(mp_pool_pids(p, pids, 1), 3); /* count, one stored */
    close_join_free(p);

    /* processes 0 (or no options): os.cpu_count() workers. */
    TU_ASSERT_STATUS(mp_pool_new(&p, NULL), 0);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    assert_int_equal(mp_pool_processes(p), cpus > 0 ? cpus : 1);
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
    TU_ASSERT_STATUS(mp_pool_apply_bytes(p, upper, "x", 1, NULL, &olen, 1.0, NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_pool_apply_bytes(p, upper, "x", 1, &o, NULL, 1.0, NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_result_get(NULL, 0, NULL, NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_result_wait(NULL, 0), -EINVAL);
    TU_ASSERT_STATUS(mp_result_ready(NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_result_successful(NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_imap_next(NULL, 0, NULL, NULL, NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_pool_close(NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_pool_join(NULL, 0), -EINVAL);
    TU_ASSERT_STATUS(mp_pool_terminate(NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_pool_processes(NULL), -EINVAL);
    /* A value-form result read as bytes, and the other way round. */
    mp_obj *args = tuple2(mp_obj_int(2), NULL);
    TU_ASSERT_STATUS(mp_pool_apply_async(p, sqr, args, NULL, &r), 0);
    const void *b;
    size_t blen;
    TU_ASSERT_STATUS(mp_result_get_bytes(r, T_LONG, &b, &blen, NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_result_get(r, T_LONG, NULL, NULL), 0);
    mp_result_free(r);
    mp_result_free(NULL);
    mp_imap_free(NULL);
    assert_int_equal(mp_pool_free(NULL), 0);
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
    TU_ASSERT_STATUS(mp_result_get(r, 0, NULL, &err), MP_ETERMINATED);
    assert_int_equal(err.status, MP_ETERMINATED);
    assert_non_null(strstr(err.message, "terminated"));
    pthread_mutex_lock(&c.mu);
    assert_int_equal(c.failed, 1);
    assert_int_equal(c.error_status, MP_ETERMINATED);
    pthread_mutex_unlock(&c.mu);
    TU_ASSERT_STATUS(mp_pool_join(p, T_LONG), 0);
    assert_true(tu_now() - t0 < 20.0);
    /* r2 may have finished before the terminate; either outcome is final. */
    int rc = mp_result_get(r2, 0, NULL, NULL);
    assert_true(rc == 0 || rc == MP_ETERMINATED);
    /* imap: what had arrived is handed out, then MP_ETERMINATED. */
    for (;;) {
        rc = mp_imap_next(it, 0, NULL, NULL, NULL);
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
    TU_ASSERT_STATUS(mp_pool_free(p), 0);
}

static void test_empty_inputs_give_empty_results(void **state)
{
    (void)state;
    mp_pool *p = make_pool(1);
    mp_obj *empty = mp_obj_list_new();
    mp_obj *res = NULL;
    TU_ASSERT_STATUS(mp_pool_map(p, sqr, empty, 0, &res, T_LONG, NULL), 0);
    assert_int_equal(mp_obj_len(res), 0);
    mp_obj_free(res);
    mp_imap *it;
    TU_ASSERT_STATUS(mp_pool_imap(p, sqr, empty, 0, &it), 0);
    TU_ASSERT_STATUS(mp_imap_next(it, T_LONG, NULL, NULL, NULL), 0);
    mp_imap_free(it);
    TU_ASSERT_STATUS(mp_pool_imap_unordered(p, sqr, empty, 0, &it), 0);
    TU_ASSERT_STATUS(mp_imap_next(it, T_LONG, NULL, NULL, NULL), 0);
    mp_imap_free(it);
    mp_result *r;
    TU_ASSERT_STATUS(mp_pool_map_async(p, sqr, empty, 0, NULL, &r), 0);
    const mp_obj *v;
    TU_ASSERT_STATUS(mp_result_get(r, T_LONG, &v, NULL), 0);
    assert_int_equal(mp_obj_len(v), 0);
    mp_result_free(r);
    TU_ASSERT_STATUS(mp_pool_map_array(p, square_int, NULL, 4, 0, NULL, 8, 0, T_LONG, NULL), 0);
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
    TU_ASSERT_STATUS(mp_pool_map_array(p, square_int, in, 4, 2, out, 8, 0, 1.0, NULL), MP_ECLOSED);
    /* Work queued before close still completes. */
    TU_ASSERT_STATUS(mp_pool_join(p, T_LONG), 0);
    const mp_obj *v;
    TU_ASSERT_STATUS(mp_result_get(r, 0, &v, NULL), 0);
    assert_int_equal(as_int(mp_obj_list_get(v, 9)), 81);
    /* join again is fine; results outlive the pool. */
    TU_ASSERT_STATUS(mp_pool_join(p, 0), 0);
    TU_ASSERT_STATUS(mp_pool_free(p), 0);
    TU_ASSERT_STATUS(mp_result_get(r, 0, &v, NULL), 0);
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
    TU_ASSERT_STATUS(mp_pool_apply_bytes(p, raising, NULL, 0, &out, &len, T_LONG, &err), MP_ETASK);
    assert_null(out);
    assert_int_equal(err.status, MP_ETASK);
    assert_int_equal(err.code, -EKEYEXPIRED);
    assert_int_equal(err.index, 0);
    assert_string_equal(err.message, "KeyError: 'key'");
    TU_ASSERT_STATUS(
        mp_pool_apply_bytes(p, fail_without_message, NULL, 0, &out, &len, T_LONG, &err), MP_ETASK);
    assert_int_equal(err.code, 99);
    assert_string_equal(err.message, "task failed with code 99");
    /* test_async_error_callback */
    struct calls c = {.mu = PTHREAD_MUTEX_INITIALIZER, .main_thread = pthread_self()};
    mp_callbacks cbs = {on_ok, on_error, &c};
    mp_result *r;
    TU_ASSERT_STATUS(mp_pool_apply_bytes_async(p, raising, NULL, 0, &cbs, &r), 0);
    TU_ASSERT_STATUS(mp_result_get_bytes(r, T_LONG, NULL, NULL, &err), MP_ETASK);
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
        TU_ASSERT_STATUS(mp_pool_apply_bytes(p, broken_output, "x", 1, &out, &len, T_LONG, &err),
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
                                           sizeof out[0], chunk, T_LONG, &err),
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
    TU_ASSERT_STATUS(mp_pool_map(p, sqr_or_fail, items, 0, &res, T_LONG, &err), MP_ETASK);
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
    TU_ASSERT_STATUS(mp_pool_map(p, sqr_or_fail, items, 1, &res, T_LONG, NULL), MP_ETASK);
    TU_ASSERT_STATUS(mp_pool_close(p), 0);
    TU_ASSERT_STATUS(mp_pool_join(p, T_LONG), 0);
    assert_true(tu_now() - t0 > 0.39);
    TU_ASSERT_STATUS(mp_result_get(r, 0, NULL, NULL), 0);
    assert_int_equal(outs[1], 1);
    mp_result_free(r);
    mp_obj_free(items);
    TU_ASSERT_STATUS(mp_pool_free(p), 0);
}

/* ---- _TestPoolWorkerLifetime, TestInitializers ----------------------------- */

static void test_maxtasksperchild_replaces_workers_and_results_stay_right(void **state)
{
    (void)state;
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 3;
    o.maxtasksperchild = 10;
    mp_pool *p;
    TU_ASSERT_STATUS(mp_pool_new(&p, &o), 0);
    pid_t orig[3];
    assert_int_equal(mp_pool_pids(p, orig, 3), 3);
    mp_result *rs[100];
    mp_obj *pids_seen = mp_obj_dict_new();
    for (int i = 0; i < 100; i++) {
        mp_obj *args = tuple2(mp_obj_int(i), NULL);
        TU_ASSERT_STATUS(mp_pool_apply_async(p, sqr, args, NULL, &rs[i]), 0);
        mp_obj_free(args);
    }
    for (int i = 0; i < 100; i++) {
        const mp_obj *v;
        TU_ASSERT_STATUS(mp_result_get(rs[i], T_LONG, &v, NULL), 0);
        assert_int_equal(as_int(v), i * i);
        mp_result_free(rs[i]);
    }
    /* Each worker ran at most 10 tasks: many processes served them. */
    for (int i = 0; i < 30; i++) {
        mp_obj *res;
        TU_ASSERT_STATUS(mp_pool_apply(p, return_pid, NULL, &res, T_LONG, NULL), 0);
        mp_obj_dict_set(pids_seen, res, mp_obj_none());
    }
    assert_true(mp_obj_len(pids_seen) >= 3);
    mp_obj_free(pids_seen);
    /* Wait until all workers are alive again, then the pids have changed. */
    pid_t final[3];
    double end = tu_now() + T_LONG;
    while (mp_pool_pids(p, final, 3) < 3 && tu_now() < end)
        tu_sleep(0.01);
    assert_int_equal(mp_pool_pids(p, final, 3), 3);
    int same = 0;
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 3; k++)
            same += orig[i] == final[k];
    assert_int_equal(same, 0);
    close_join_free(p);
}

static void test_maxtasksperchild_pool_closed_early_still_finishes(void **state)
{
    (void)state;
    /* test_pool_worker_lifetime_early_close (Issue #10332). */
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 3;
    o.maxtasksperchild = 1;
    mp_pool *p;
    TU_ASSERT_STATUS(mp_pool_new(&p, &o), 0);
    mp_result *rs[6];
    for (int i = 0; i < 6; i++) {
        mp_obj *args = tuple2(mp_obj_int(i), mp_obj_float(0.1));
        TU_ASSERT_STATUS(mp_pool_apply_async(p, sqr, args, NULL, &rs[i]), 0);
        mp_obj_free(args);
    }
    TU_ASSERT_STATUS(mp_pool_close(p), 0);
    TU_ASSERT_STATUS(mp_pool_join(p, T_LONG), 0);
    for (int i = 0; i < 6; i++) {
        const mp_obj *v;
        TU_ASSERT_STATUS(mp_result_get(rs[i], 0, &v, NULL), 0);
        assert_int_equal(as_int(v), i * i);
        mp_result_free(rs[i]);
    }
    TU_ASSERT_STATUS(mp_pool_free(p), 0);
}

/* The initializer writes one byte per run to a pipe the test reads. */
static mp_conn *init_w;
static int init_marker = 0;

static void count_init(void *arg)
{
    int *marker = arg;
    *marker = 1234; /* the worker's copy only */
    (void)mp_conn_send_bytes(init_w, "i", 1);
}

static int read_marker(const mp_obj *args, mp_obj **result)
{
    (void)args;
    *result = mp_obj_int(init_marker);
    return 0;
}

static void test_initializer_runs_once_in_each_worker_before_its_tasks(void **state)
{
    (void)state;
    mp_conn *r;
    assert_int_equal(mp_pipe(&r, &init_w, false), 0);
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 3;
    o.initializer = count_init;
    o.initarg = &init_marker;
    mp_pool *p;
    TU_ASSERT_STATUS(mp_pool_new(&p, &o), 0);
    for (int i = 0; i < 10; i++) {
        mp_obj *res;
        TU_ASSERT_STATUS(mp_pool_apply(p, read_marker, NULL, &res, T_LONG, NULL), 0);
        assert_int_equal(as_int(res), 1234);
        mp_obj_free(res);
    }
    close_join_free(p);
    mp_conn_free(init_w);
    int runs = 0;
    char c;
    while (mp_conn_recv_bytes_into(r, &c, 1, 0, NULL, 5.0) == 1)
        runs++;
    assert_int_equal(runs, 3);
    assert_int_equal(init_marker, 0); /* the parent's copy never changed */
    mp_conn_free(r);
}

/* ---- worker death ----------------------------------------------------------- */

static void check_death(const char *how, int expect_code)
{
    mp_pool *p = make_pool(2);
    pid_t before[2];
    assert_int_equal(mp_pool_pids(p, before, 2), 2);
    /* One task that kills its worker among many that do not. */
    enum { N = 40 };
    mp_result *rs[N];
    for (int i = 0; i < N; i++) {
        mp_obj *args = tuple2(mp_obj_str_cstr(i == 10 ? how : ""), mp_obj_int(i));
        TU_ASSERT_STATUS(mp_pool_apply_async(p, maybe_die, args, NULL, &rs[i]), 0);
        mp_obj_free(args);
    }
    for (int i = 0; i < N; i++) {
        const mp_obj *v;
        mp_task_error err;
        int rc = mp_result_get(rs[i], T_LONG, &v, &err);
        if (i == 10) {
            TU_ASSERT_STATUS(rc, MP_EWORKER);
            assert_int_equal(err.status, MP_EWORKER);
            assert_int_equal(err.code, expect_code);
            assert_non_null(strstr(err.message, "PoolWorker-"));
            assert_non_null(strstr(err.message, expect_code < 0 ? "killed by signal" : "exited"));
            TU_ASSERT_STATUS(mp_result_successful(rs[i]), 0);
        } else {
            TU_ASSERT_STATUS(rc, 0);
            assert_int_equal(as_int(v), i * i);
        }
        mp_result_free(rs[i]);
    }
    /* A replacement was forked: two live workers, one of them new. */
    pid_t after[2];
    double end = tu_now() + T_LONG;
    while (mp_pool_pids(p, after, 2) < 2 && tu_now() < end)
        tu_sleep(0.005);
    assert_int_equal(mp_pool_pids(p, after, 2), 2);
    assert_false((after[0] == before[0] || after[0] == before[1]) &&
                 (after[1] == before[0] || after[1] == before[1]));
    /* The pool still works, and close + join return. */
    mp_obj *items = int_list(0, 50);
    mp_obj *res;
    TU_ASSERT_STATUS(mp_pool_map(p, sqr, items, 1, &res, T_LONG, NULL), 0);
    assert_int_equal(as_int(mp_obj_list_get(res, 49)), 49 * 49);
    mp_obj_free(res);
    mp_obj_free(items);
    close_join_free(p);
}

static void test_worker_dies_by_sigkill_in_a_task_fails_only_that_task(void **state)
{
    (void)state;
    check_death("sigkill", -SIGKILL);
}

static void test_worker_dies_by_segfault_in_a_task_fails_only_that_task(void **state)
{
    (void)state;
    check_death("segv", -SIGSEGV);
}

static void test_worker_dies_by_underscore_exit_in_a_task_fails_only_that_task(void **state)
{
    (void)state;
    check_death("_exit", 7);
}

static void test_worker_dies_by_exit_in_a_task_fails_only_that_task(void **state)
{
    (void)state;
    check_death("exit", 3);
}

static void test_worker_dies_mid_map_the_map_fails_and_imap_gets_the_rest(void **state)
{
    (void)state;
    mp_pool *p = make_pool(2);
    enum { N = 200 };
    int32_t in[N], out[N];
    for (int i = 0; i < N; i++)
        in[i] = i == 77 ? -1 : i;
    mp_task_error err;
    TU_ASSERT_STATUS(mp_pool_map_array(p, square_or_die, in, sizeof in[0], N, out, sizeof out[0], 1,
                                       T_LONG, &err),
                     MP_EWORKER);
    assert_int_equal(err.index, 77);
    assert_int_equal(err.code, 7);
    for (int i = 0; i < N; i++)
        if (i != 77)
            assert_int_equal(out[i], i * i);
    /* imap: every other item arrives, in order. */
    in[77] = -2;
    mp_imap *it;
    TU_ASSERT_STATUS(
        mp_pool_imap_array(p, square_or_die, in, sizeof in[0], N, out, sizeof out[0], 1, &it), 0);
    for (int i = 0; i < N; i++) {
        size_t index;
        int rc = mp_imap_next(it, T_LONG, &index, NULL, &err);
        assert_int_equal(index, i);
        if (i == 77) {
            TU_ASSERT_STATUS(rc, MP_EWORKER);
            assert_int_equal(err.code, -SIGKILL);
        } else {
            TU_ASSERT_STATUS(rc, 1);
            assert_int_equal(out[i], i * i);
        }
    }
    TU_ASSERT_STATUS(mp_imap_next(it, T_LONG, NULL, NULL, NULL), 0);
    mp_imap_free(it);
    close_join_free(p);
}

static void test_worker_killed_from_outside_while_idle_fails_no_task(void **state)
{
    (void)state;
    mp_pool *p = make_pool(2);
    pid_t pids[2];
    assert_int_equal(mp_pool_pids(p, pids, 2), 2);
    assert_int_equal(kill(pids[0], SIGKILL), 0);
    /* Work submitted right away may be sent to the dying worker: it is
     * retried elsewhere, as it never started. */
    mp_obj *items = int_list(0, 100);
    mp_obj *res;
    TU_ASSERT_STATUS(mp_pool_map(p, sqr, items, 1, &res, T_LONG, NULL), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(as_int(mp_obj_list_get(res, (size_t)i)), i * i);
    mp_obj_free(res);
    mp_obj_free(items);
    close_join_free(p);
}

/* One token in this pipe: the worker that takes it dies in its initializer. */
static mp_conn *token_r;

static void init_maybe_die(void *arg)
{
    (void)arg;
    char c;
    if (mp_conn_recv_bytes_into(token_r, &c, 1, 0, NULL, MP_NOWAIT) == 1)
        _exit(5);
}

static void test_worker_dying_in_its_initializer_fails_no_task_and_is_replaced(void **state)
{
    (void)state;
    mp_conn *tw;
    assert_int_equal(mp_pipe(&token_r, &tw, false), 0);
    assert_int_equal(mp_conn_send_bytes(tw, "x", 1), 0);
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 2;
    o.initializer = init_maybe_die;
    mp_pool *p;
    TU_ASSERT_STATUS(mp_pool_new(&p, &o), 0);
    mp_obj *items = int_list(0, 60);
    mp_obj *res;
    TU_ASSERT_STATUS(mp_pool_map(p, sqr, items, 1, &res, T_LONG, NULL), 0);
    assert_int_equal(mp_obj_len(res), 60);
    for (int i = 0; i < 60; i++)
        assert_int_equal(as_int(mp_obj_list_get(res, (size_t)i)), i * i);
    mp_obj_free(res);
    mp_obj_free(items);
    close_join_free(p);
    /* The token was taken by exactly one worker. */
    char c;
    TU_ASSERT_STATUS(mp_conn_recv_bytes_into(token_r, &c, 1, 0, NULL, MP_NOWAIT), MP_ETIMEDOUT);
    mp_conn_free(token_r);
    mp_conn_free(tw);
}

/* ---- scale, fork, lifecycle ------------------------------------------------- */

static void test_100000_tasks_complete_with_the_right_checksum(void **state)
{
    (void)state;
    mp_pool *p = make_pool(2);
    enum { N = 100000 };
    int32_t *in = malloc(N * sizeof *in);
    int64_t *out = malloc(N * sizeof *out);
    int64_t expect = 0;
    for (int i = 0; i < N; i++) {
        in[i] = i;
        expect += (int64_t)i * i;
    }
    /* chunksize 1: 100,000 separate tasks. */
    memset(out, 0, N * sizeof *out);
    TU_ASSERT_STATUS(
        mp_pool_map_array(p, square_int, in, sizeof in[0], N, out, sizeof out[0], 1, T_LONG, NULL),
        0);
    int64_t sum = 0;
    for (int i = 0; i < N; i++)
        sum += out[i];
    assert_true(sum == expect);
    /* imap_unordered over the same: every index exactly once. */
    memset(out, 0, N * sizeof *out);
    mp_imap *it;
    TU_ASSERT_STATUS(mp_pool_imap_unordered_array(p, square_int, in, sizeof in[0], N, out,
                                                  sizeof out[0], 0, &it),
                     0);
    size_t index;
    sum = 0;
    int count = 0;
    while (mp_imap_next(it, T_LONG, &index, NULL, NULL) == 1) {
        sum += out[index];
        count++;
    }
    assert_int_equal(count, N);
    assert_true(sum == expect);
    mp_imap_free(it);
    free(in);
    free(out);
    close_join_free(p);
}

struct submitter {
    mp_pool *pool;
    int from, to;
    int64_t sum;
    int failures;
};

/* Submit apply_async calls for [from, to), then collect them: a thread of
 * the test process (the cmocka asserts stay in the main thread). */
static void *submit_range(void *arg)
{
    struct submitter *s = arg;
    int n = s->to - s->from;
    mp_result **rs = calloc((size_t)n, sizeof *rs);
    for (int i = 0; i < n; i++) {
        mp_obj *args = tuple2(mp_obj_int(s->from + i), NULL);
        if (mp_pool_apply_async(s->pool, sqr, args, NULL, &rs[i]) != 0)
            s->failures++;
        mp_obj_free(args);
    }
    for (int i = 0; i < n; i++) {
        const mp_obj *v;
        if (!rs[i] || mp_result_get(rs[i], T_LONG, &v, NULL) != 0) {
            s->failures++;
        } else {
            int64_t x = 0;
            (void)mp_obj_get_int(v, &x);
            s->sum += x;
        }
        mp_result_free(rs[i]);
    }
    free(rs);
    return NULL;
}

static void test_apply_async_from_several_threads_at_once(void **state)
{
    (void)state;
    mp_pool *p = make_pool(2);
    enum { N = 6000, T = 3 };
    struct submitter subs[T];
    pthread_t th[T];
    for (int t = 0; t < T; t++) {
        subs[t] = (struct submitter){p, t * (N / T), (t + 1) * (N / T), 0, 0};
        assert_int_equal(pthread_create(&th[t], NULL, submit_range, &subs[t]), 0);
    }
    int64_t sum = 0;
    for (int t = 0; t < T; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(subs[t].failures, 0);
        sum += subs[t].sum;
    }
    assert_true(sum == (int64_t)(N - 1) * N * (2 * N - 1) / 6);
    close_join_free(p);
}

static mp_pool *forked_pool;

static int child_uses_pool(void *arg)
{
    (void)arg;
    mp_obj *res = NULL;
    int rc = mp_pool_apply(forked_pool, return_pid, NULL, &res, 5.0, NULL);
    if (rc != MP_EFORKED || res)
        return 1;
    if (mp_pool_close(forked_pool) != MP_EFORKED || mp_pool_join(forked_pool, 0) != MP_EFORKED)
        return 2;
    if (mp_pool_terminate(forked_pool) != MP_EFORKED)
        return 3;
    pid_t pids[4];
    if (mp_pool_pids(forked_pool, pids, 4) != MP_EFORKED)
        return 4;
    /* free releases only the child's copies. */
    if (mp_pool_free(forked_pool) != 0)
        return 5;
    return 0;
}

/* A task that tries to use the pool it runs in (its address comes as the
 * argument: the global was set after the workers were forked). */
static int task_uses_pool(const mp_obj *args, mp_obj **result)
{
    mp_pool *pool = (mp_pool *)(uintptr_t)arg_int(args, 0);
    mp_obj *res = NULL;
    int rc = mp_pool_apply(pool, return_pid, NULL, &res, 5.0, NULL);
    *result = mp_obj_int(rc);
    return 0;
}

static void test_a_child_forked_from_the_owner_cannot_use_the_pool(void **state)
{
    (void)state;
    forked_pool = make_pool(2);
    pid_t pid = tu_fork(child_uses_pool, NULL);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    mp_obj *res;
    mp_obj *args = tuple2(mp_obj_int((int64_t)(uintptr_t)forked_pool), NULL);
    TU_ASSERT_STATUS(mp_pool_apply(forked_pool, task_uses_pool, args, &res, T_LONG, NULL), 0);
    TU_ASSERT_STATUS(as_int(res), MP_EFORKED);
    mp_obj_free(res);
    mp_obj_free(args);
    /* The owner's pool is unharmed. */
    TU_ASSERT_STATUS(mp_pool_apply(forked_pool, return_pid, NULL, &res, T_LONG, NULL), 0);
    mp_obj_free(res);
    close_join_free(forked_pool);
}

static void test_free_of_a_running_pool_terminates_it(void **state)
{
    (void)state;
    mp_pool *p = make_pool(2);
    double naps[4] = {30, 30, 30, 30};
    int32_t outs[4];
    mp_result *r;
    TU_ASSERT_STATUS(mp_pool_map_array_async(p, sleep_item, naps, sizeof naps[0], 4, outs,
                                             sizeof outs[0], 1, NULL, &r),
                     0);
    tu_sleep(0.05);
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_pool_free(p), 0);
    assert_true(tu_now() - t0 < 20);
    TU_ASSERT_STATUS(mp_result_get(r, 0, NULL, NULL), MP_ETERMINATED);
    mp_result_free(r);
}

static void test_sync_timeout_and_imap_free_stop_writing_into_the_arrays(void **state)
{
    (void)state;
    mp_pool *p = make_pool(1);
    enum { N = 40 };
    double *naps = malloc(N * sizeof *naps);
    int32_t *outs = malloc(N * sizeof *outs);
    for (int i = 0; i < N; i++) {
        naps[i] = 0.02;
        outs[i] = 0;
    }
    TU_ASSERT_STATUS(mp_pool_map_array(p, sleep_item, naps, sizeof naps[0], N, outs, sizeof outs[0],
                                       1, 0.1, NULL),
                     MP_ETIMEDOUT);
    /* The arrays are ours again: freeing them now is safe (valgrind and
     * ASan would see a late write). */
    free(naps);
    free(outs);
    naps = malloc(N * sizeof *naps);
    outs = malloc(N * sizeof *outs);
    for (int i = 0; i < N; i++)
        naps[i] = 0.02;
    mp_imap *it;
    TU_ASSERT_STATUS(
        mp_pool_imap_array(p, sleep_item, naps, sizeof naps[0], N, outs, sizeof outs[0], 1, &it),
        0);
    size_t index;
    TU_ASSERT_STATUS(mp_imap_next(it, T_LONG, &index, NULL, NULL), 1);
    TU_ASSERT_STATUS(mp_imap_next(it, 0.001, &index, NULL, NULL), MP_ETIMEDOUT);
    mp_imap_free(it);
    free(naps);
    free(outs);
    /* The cancelled work does not hold up close + join for long. */
    double t0 = tu_now();
    close_join_free(p);
    assert_true(tu_now() - t0 < 10);
}

static void terminate_from_callback(mp_result *r, void *user)
{
    (void)r;
    mp_pool *p = user;
    /* None deadlocks: a blocking call refuses (it would wait for this very
     * thread), terminate returns at once, join refuses. (No cmocka assert in
     * the pool's thread: abort() fails the test loudly.) */
    mp_obj *res = NULL;
    if (mp_pool_apply(p, return_pid, NULL, &res, 1.0, NULL) != MP_ESTATE || res)
        abort();
    (void)mp_pool_terminate(p);
    if (mp_pool_join(p, 1.0) != MP_ESTATE)
        abort();
}

static void test_a_callback_may_terminate_its_pool(void **state)
{
    (void)state;
    mp_pool *p = make_pool(2);
    mp_callbacks cbs = {terminate_from_callback, NULL, p};
    mp_obj *args = tuple2(mp_obj_int(1), NULL);
    mp_result *r, *slow;
    mp_obj *slow_args = tuple2(mp_obj_int(2), mp_obj_float(30.0));
    TU_ASSERT_STATUS(mp_pool_apply_async(p, sqr, slow_args, NULL, &slow), 0);
    TU_ASSERT_STATUS(mp_pool_apply_async(p, sqr, args, &cbs, &r), 0);
    TU_ASSERT_STATUS(mp_result_get(r, T_LONG, NULL, NULL), 0);
    TU_ASSERT_STATUS(mp_result_get(slow, T_LONG, NULL, NULL), MP_ETERMINATED);
    TU_ASSERT_STATUS(mp_pool_join(p, T_LONG), 0);
    mp_result_free(r);
    mp_result_free(slow);
    mp_obj_free(args);
    mp_obj_free(slow_args);
    TU_ASSERT_STATUS(mp_pool_free(p), 0);
}

/* The target of a child process that leaves a pool running: returning
 * from it runs the child's exit procedure (as exit() does in a main
 * program), which must terminate and join the pool. */
static int exit_with_pool(void *arg)
{
    (void)arg;
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 2;
    mp_pool *p;
    if (mp_pool_new(&p, &o) != 0)
        return 1;
    double naps[2] = {30, 30};
    int32_t outs[2];
    mp_result *r;
    if (mp_pool_map_array_async(p, sleep_item, naps, sizeof naps[0], 2, outs, sizeof outs[0], 1,
                                NULL, &r) != 0)
        return 2;
    tu_sleep(0.05);
    return 0;
}

static void test_exit_with_a_running_pool_terminates_it(void **state)
{
    (void)state;
    double t0 = tu_now();
    mp_process *child;
    assert_int_equal(mp_process_new(&child, exit_with_pool, NULL), 0);
    assert_int_equal(mp_process_start(child), 0);
    TU_ASSERT_STATUS(mp_process_join(child, T_LONG), 0);
    int code = -1;
    assert_int_equal(mp_process_exitcode(child, &code), 0);
    assert_int_equal(code, 0);
    assert_true(tu_now() - t0 < 20);
    assert_int_equal(mp_process_free(child), 0);
}

int main(void)
{
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
        TU_TEST(test_maxtasksperchild_replaces_workers_and_results_stay_right),
        TU_TEST(test_maxtasksperchild_pool_closed_early_still_finishes),
        TU_TEST(test_initializer_runs_once_in_each_worker_before_its_tasks),
        TU_TEST(test_worker_dies_by_sigkill_in_a_task_fails_only_that_task),
        TU_TEST(test_worker_dies_by_segfault_in_a_task_fails_only_that_task),
        TU_TEST(test_worker_dies_by_underscore_exit_in_a_task_fails_only_that_task),
        TU_TEST(test_worker_dies_by_exit_in_a_task_fails_only_that_task),
        TU_TEST(test_worker_dies_mid_map_the_map_fails_and_imap_gets_the_rest),
        TU_TEST(test_worker_killed_from_outside_while_idle_fails_no_task),
        TU_TEST(test_worker_dying_in_its_initializer_fails_no_task_and_is_replaced),
        TU_TEST(test_100000_tasks_complete_with_the_right_checksum),
        TU_TEST(test_apply_async_from_several_threads_at_once),
        TU_TEST(test_a_child_forked_from_the_owner_cannot_use_the_pool),
        TU_TEST(test_free_of_a_running_pool_terminates_it),
        TU_TEST(test_sync_timeout_and_imap_free_stop_writing_into_the_arrays),
        TU_TEST(test_a_callback_may_terminate_its_pool),
        TU_TEST(test_exit_with_a_running_pool_terminates_it),
    };
    test_pid = getpid();
    const char *filter = getenv("POOL_TEST_FILTER");
    if (filter && *filter)
        cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
