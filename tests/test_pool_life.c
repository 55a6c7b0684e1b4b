/*
 * pool: the pool's own lifecycle at scale and across threads and fork:
 * 100,000 tasks with a checksum, submissions from several threads, a
 * forked child of the owner (MP_EFORKED), free() and exit() with a running
 * pool, a callback that terminates its pool, blocking calls that time out.
 * The calls are tested in test_pool.c, the workers' lives in
 * test_pool_worker.c; the helpers they share are in pool_testutil.h.
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
        mp_pool_map_array(p, square_int, in, sizeof in[0], N, out, sizeof out[0], 1, NULL, T_LONG),
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
    while (mp_imap_next(it, &index, NULL, NULL, T_LONG) == 1) {
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
        if (!rs[i] || mp_result_get(rs[i], &v, NULL, T_LONG) != 0) {
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
    int rc = mp_pool_apply(forked_pool, return_pid, NULL, &res, NULL, 5.0);
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
    mp_pool_free(forked_pool);
    return 0;
}

/* A task that tries to use the pool it runs in (its address comes as the
 * argument: the global was set after the workers were forked). */
static int task_uses_pool(const mp_obj *args, mp_obj **result)
{
    mp_pool *pool = (mp_pool *)(uintptr_t)arg_int(args, 0);
    mp_obj *res = NULL;
    int rc = mp_pool_apply(pool, return_pid, NULL, &res, NULL, 5.0);
    *result = mp_obj_int(rc);
    return 0;
}
MP_TASK(task_uses_pool);

static void test_a_child_forked_from_the_owner_cannot_use_the_pool(void **state)
{
    (void)state;
    forked_pool = make_pool(2);
    pid_t pid = tu_fork(child_uses_pool, NULL);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    mp_obj *res;
    mp_obj *args = tuple2(mp_obj_int((int64_t)(uintptr_t)forked_pool), NULL);
    TU_ASSERT_STATUS(mp_pool_apply(forked_pool, task_uses_pool, args, &res, NULL, T_LONG), 0);
    TU_ASSERT_STATUS(as_int(res), MP_EFORKED);
    mp_obj_free(res);
    mp_obj_free(args);
    /* The owner's pool is unharmed. */
    TU_ASSERT_STATUS(mp_pool_apply(forked_pool, return_pid, NULL, &res, NULL, T_LONG), 0);
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
    mp_pool_free(p);
    assert_true(tu_now() - t0 < 20);
    TU_ASSERT_STATUS(mp_result_get(r, NULL, NULL, 0), MP_ETERMINATED);
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
                                       1, NULL, 0.1),
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
    TU_ASSERT_STATUS(mp_imap_next(it, &index, NULL, NULL, T_LONG), 1);
    TU_ASSERT_STATUS(mp_imap_next(it, &index, NULL, NULL, 0.001), MP_ETIMEDOUT);
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
    /* None deadlocks: free from its own callback is a misuse that does
     * nothing (the calls below still find the pool whole), a blocking call
     * refuses (it would wait for this very thread), terminate returns at
     * once, join refuses. (No cmocka assert in the pool's thread: abort()
     * fails the test loudly.) */
    mp_pool_free(p);
    mp_obj *res = NULL;
    if (mp_pool_apply(p, return_pid, NULL, &res, NULL, 1.0) != MP_ESTATE || res)
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
    TU_ASSERT_STATUS(mp_result_get(r, NULL, NULL, T_LONG), 0);
    TU_ASSERT_STATUS(mp_result_get(slow, NULL, NULL, T_LONG), MP_ETERMINATED);
    TU_ASSERT_STATUS(mp_pool_join(p, T_LONG), 0);
    mp_result_free(r);
    mp_result_free(slow);
    mp_obj_free(args);
    mp_obj_free(slow_args);
    mp_pool_free(p);
}

/* The target of a child process that leaves a pool running: returning
 * from it runs the child's exit procedure (as exit() does in a main
 * program), which must terminate and join the pool. */
static int exit_with_pool(void *arg)
{
    (void)arg;
    mp_pool_opts o = pool_test_opts();
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
    assert_int_equal(mp_process_close(child), 0);
    mp_process_free(child);
}

int main(int argc, char **argv)
{
    if (pool_test_main(argc, argv) < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        TU_TEST(test_100000_tasks_complete_with_the_right_checksum),
        TU_TEST(test_apply_async_from_several_threads_at_once),
        TU_TEST(test_a_child_forked_from_the_owner_cannot_use_the_pool),
        TU_TEST(test_free_of_a_running_pool_terminates_it),
        TU_TEST(test_sync_timeout_and_imap_free_stop_writing_into_the_arrays),
        TU_TEST(test_a_callback_may_terminate_its_pool),
        TU_TEST(test_exit_with_a_running_pool_terminates_it),
    };
    return POOL_RUN_TESTS(tests);
}
