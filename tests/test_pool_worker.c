/*
 * pool: the workers' lives and deaths (multiprocessing/pool.py's worker
 * handling), across real worker processes. The calls are tested in
 * test_pool.c, the pool's lifecycle in test_pool_life.c; the helpers they
 * share are in pool_testutil.h.
 *
 * Ported from CPython's Lib/test/_test_multiprocessing.py:
 *   _TestPoolWorkerLifetime test_pool_worker_lifetime,
 *                          test_pool_worker_lifetime_early_close,
 *                          test_pool_maxtasksperchild_invalid
 *   TestInitializers       test_pool_initializer
 * Beyond Python (issue 7): a worker dying mid-task by SIGKILL, a crash,
 * _exit() or exit() fails that task only with MP_EWORKER and its exit code,
 * the worker is replaced and everything else completes; a worker dying in
 * its initializer fails nothing.
 *
 * A name filter ("test_worker_*": every death) runs a subset, as the
 * 20-runs-in-a-row death check does (tu_filter, testutil.h).
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
MP_TASK(maybe_die);

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
MP_TASK(square_or_die);

/* ---- _TestPoolWorkerLifetime, TestInitializers ----------------------------- */

static void test_maxtasksperchild_replaces_workers_and_results_stay_right(void **state)
{
    (void)state;
    mp_pool_opts o = pool_test_opts();
    o.processes = 3;
    o.maxtasksperchild = 10;
    mp_pool *p;
    TU_ASSERT_STATUS(pool_test_new(&p, &o), 0);
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
        TU_ASSERT_STATUS(mp_result_get(rs[i], &v, NULL, T_LONG), 0);
        assert_int_equal(as_int(v), i * i);
        mp_result_free(rs[i]);
    }
    /* Each worker ran at most 10 tasks: many processes served them. */
    for (int i = 0; i < 30; i++) {
        mp_obj *res;
        TU_ASSERT_STATUS(mp_pool_apply(p, return_pid, NULL, &res, NULL, T_LONG), 0);
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
    mp_pool_opts o = pool_test_opts();
    o.processes = 3;
    o.maxtasksperchild = 1;
    mp_pool *p;
    TU_ASSERT_STATUS(pool_test_new(&p, &o), 0);
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
        TU_ASSERT_STATUS(mp_result_get(rs[i], &v, NULL, 0), 0);
        assert_int_equal(as_int(v), i * i);
        mp_result_free(rs[i]);
    }
    mp_pool_free(p);
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
MP_TASK(count_init);

static int read_marker(const mp_obj *args, mp_obj **result)
{
    (void)args;
    *result = mp_obj_int(init_marker);
    return 0;
}
MP_TASK(read_marker);

static void test_initializer_runs_once_in_each_worker_before_its_tasks(void **state)
{
    (void)state;
    mp_conn *r;
    assert_int_equal(mp_pipe(&r, &init_w, false), 0);
    mp_pool_opts o = pool_test_opts();
    o.processes = 3;
    o.initializer = count_init;
    o.initarg = &init_marker;
    mp_pool *p;
    TU_ASSERT_STATUS(pool_test_new(&p, &o), 0);
    for (int i = 0; i < 10; i++) {
        mp_obj *res;
        TU_ASSERT_STATUS(mp_pool_apply(p, read_marker, NULL, &res, NULL, T_LONG), 0);
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
        int rc = mp_result_get(rs[i], &v, &err, T_LONG);
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
    TU_ASSERT_STATUS(mp_pool_map(p, sqr, items, 1, &res, NULL, T_LONG), 0);
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
                                       &err, T_LONG),
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
        int rc = mp_imap_next(it, &index, NULL, &err, T_LONG);
        assert_int_equal(index, i);
        if (i == 77) {
            TU_ASSERT_STATUS(rc, MP_EWORKER);
            assert_int_equal(err.code, -SIGKILL);
        } else {
            TU_ASSERT_STATUS(rc, 1);
            assert_int_equal(out[i], i * i);
        }
    }
    TU_ASSERT_STATUS(mp_imap_next(it, NULL, NULL, NULL, T_LONG), 0);
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
    TU_ASSERT_STATUS(mp_pool_map(p, sqr, items, 1, &res, NULL, T_LONG), 0);
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
MP_TASK(init_maybe_die);

static void test_worker_dying_in_its_initializer_fails_no_task_and_is_replaced(void **state)
{
    (void)state;
    mp_conn *tw;
    assert_int_equal(mp_pipe(&token_r, &tw, false), 0);
    assert_int_equal(mp_conn_send_bytes(tw, "x", 1), 0);
    mp_pool_opts o = pool_test_opts();
    o.processes = 2;
    o.initializer = init_maybe_die;
    mp_pool *p;
    TU_ASSERT_STATUS(pool_test_new(&p, &o), 0);
    mp_obj *items = int_list(0, 60);
    mp_obj *res;
    TU_ASSERT_STATUS(mp_pool_map(p, sqr, items, 1, &res, NULL, T_LONG), 0);
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

int main(int argc, char **argv)
{
    if (pool_test_main(argc, argv) < 0)
        return 1;
    const struct CMUnitTest tests[] = {
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
    };
    return POOL_RUN_TESTS(tests);
}
