/*
 * pool: the core calls (map, apply_async, imap, a worker killed mid-task)
 * under each start method the pool allows (mp_pool_opts.ctx: fork, and
 * forkserver, whose pool server is a child of the shared fork server), what
 * each method's workers see, and spawn refused with a named error.
 */
#include "pool_testutil.h"

#include <mpipc/context.h>
#include <mpipc/pool.h>
#include <mpipc/process.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- tasks (they run in the workers) ------------------------------------ */

/* x*x, but x == -1 kills its own worker (a crash in a task). */
static int sqr_or_die(const mp_obj *args, mp_obj **result)
{
    int64_t x = arg_int(args, 0);
    if (x == -1)
        raise(SIGKILL);
    *result = mp_obj_int(x * x);
    return 0;
}

/* The worker's pid: which process ran the task. */
static int my_pid(const mp_obj *args, mp_obj **result)
{
    (void)args;
    *result = mp_obj_int(getpid());
    return 0;
}

/* ---- helpers ------------------------------------------------------------------ */

static mp_pool *methods_pool(const char *method, int processes)
{
    const mp_context *ctx = NULL;
    TU_ASSERT_STATUS(mp_context_get(&ctx, method), 0);
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = processes;
    o.ctx = ctx;
    mp_pool *p = NULL;
    TU_ASSERT_STATUS(mp_pool_new(&p, &o), 0);
    assert_non_null(p);
    return p;
}

/* ---- the cases, each run under every method ------------------------------------- */

static void check_map(const char *method)
{
    mp_pool *p = methods_pool(method, 2);
    mp_obj *items = int_list(0, 100);
    mp_obj *res = NULL;
    TU_ASSERT_STATUS(mp_pool_map(p, sqr, items, 7, &res, NULL, T_LONG), 0);
    assert_int_equal(mp_obj_len(res), 100);
    for (size_t i = 0; i < 100; i++)
        assert_int_equal(as_int(mp_obj_list_get(res, i)), (int64_t)(i * i));
    mp_obj_free(res);
    mp_obj_free(items);
    close_join_free(p);
}

static void check_apply_async(const char *method)
{
    mp_pool *p = methods_pool(method, 2);
    pid_t pids[2];
    assert_int_equal(mp_pool_pids(p, pids, 2), 2);
    enum { N = 20 };
    mp_result *rs[N];
    for (int i = 0; i < N; i++) {
        mp_obj *args = tuple2(mp_obj_int(i), NULL);
        TU_ASSERT_STATUS(mp_pool_apply_async(p, i % 2 ? my_pid : sqr, args, NULL, &rs[i]), 0);
        mp_obj_free(args);
    }
    for (int i = 0; i < N; i++) {
        const mp_obj *v;
        TU_ASSERT_STATUS(mp_result_get(rs[i], &v, NULL, T_LONG), 0);
        if (i % 2) /* ran in one of the pool's workers, not here */
            assert_true(as_int(v) == pids[0] || as_int(v) == pids[1]);
        else
            assert_int_equal(as_int(v), i * i);
        mp_result_free(rs[i]);
    }
    close_join_free(p);
}

static void check_imap(const char *method)
{
    mp_pool *p = methods_pool(method, 2);
    mp_obj *items = int_list(0, 60);
    mp_imap *it = NULL;
    TU_ASSERT_STATUS(mp_pool_imap(p, sqr, items, 4, &it), 0);
    for (size_t i = 0; i < 60; i++) {
        size_t idx = 9999;
        mp_obj *v = NULL;
        TU_ASSERT_STATUS(mp_imap_next(it, &idx, &v, NULL, T_LONG), 1);
        assert_int_equal(idx, i);
        assert_int_equal(as_int(v), (int64_t)(i * i));
        mp_obj_free(v);
    }
    TU_ASSERT_STATUS(mp_imap_next(it, NULL, NULL, NULL, T_LONG), 0);
    mp_imap_free(it);
    mp_obj_free(items);
    close_join_free(p);
}

/* A worker killed mid-task fails exactly that task with MP_EWORKER (the
 * message names the worker, its pid and the signal); a replacement comes
 * and the pool goes on. */
static void check_worker_killed(const char *method)
{
    mp_pool *p = methods_pool(method, 2);
    enum { N = 30, BAD = 9 };
    mp_result *rs[N];
    for (int i = 0; i < N; i++) {
        mp_obj *args = tuple2(mp_obj_int(i == BAD ? -1 : i), NULL);
        TU_ASSERT_STATUS(mp_pool_apply_async(p, sqr_or_die, args, NULL, &rs[i]), 0);
        mp_obj_free(args);
    }
    for (int i = 0; i < N; i++) {
        const mp_obj *v;
        mp_task_error err;
        int rc = mp_result_get(rs[i], &v, &err, T_LONG);
        if (i == BAD) {
            TU_ASSERT_STATUS(rc, MP_EWORKER);
            assert_int_equal(err.code, -SIGKILL);
            assert_non_null(strstr(err.message, "PoolWorker-"));
            assert_non_null(strstr(err.message, "(pid "));
            assert_non_null(strstr(err.message, "killed by signal 9"));
        } else {
            TU_ASSERT_STATUS(rc, 0);
            assert_int_equal(as_int(v), i * i);
        }
        mp_result_free(rs[i]);
    }
    pid_t after[2];
    double end = tu_now() + T_LONG;
    while (mp_pool_pids(p, after, 2) < 2 && tu_now() < end)
        tu_sleep(0.005);
    assert_int_equal(mp_pool_pids(p, after, 2), 2);
    mp_obj *items = int_list(0, 20);
    mp_obj *res = NULL;
    TU_ASSERT_STATUS(mp_pool_map(p, sqr, items, 1, &res, NULL, T_LONG), 0);
    assert_int_equal(as_int(mp_obj_list_get(res, 19)), 19 * 19);
    mp_obj_free(res);
    mp_obj_free(items);
    close_join_free(p);
}

/* terminate fails what is not done with MP_ETERMINATED, and join returns. */
static void check_terminate(const char *method)
{
    mp_pool *p = methods_pool(method, 2);
    mp_obj *args = tuple2(mp_obj_int(3), mp_obj_float(30.0));
    mp_result *r = NULL;
    TU_ASSERT_STATUS(mp_pool_apply_async(p, sqr, args, NULL, &r), 0);
    mp_obj_free(args);
    TU_ASSERT_STATUS(mp_pool_terminate(p), 0);
    TU_ASSERT_STATUS(mp_result_get(r, NULL, NULL, T_LONG), MP_ETERMINATED);
    mp_result_free(r);
    TU_ASSERT_STATUS(mp_pool_join(p, T_LONG), 0);
    mp_pool_free(p);
}

/* The initializer runs in each worker with its initarg (under forkserver:
 * data that existed when the shared server started, like this static). */
static int64_t init_seen;
static const int64_t init_value = 1234;

static void set_init_seen(void *arg)
{
    init_seen = *(const int64_t *)arg;
}

static int read_init_seen(const mp_obj *args, mp_obj **result)
{
    (void)args;
    *result = mp_obj_int(init_seen);
    return 0;
}

static void check_initializer(const char *method)
{
    const mp_context *ctx = NULL;
    TU_ASSERT_STATUS(mp_context_get(&ctx, method), 0);
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 2;
    o.initializer = set_init_seen;
    o.initarg = (void *)&init_value;
    o.ctx = ctx;
    mp_pool *p = NULL;
    TU_ASSERT_STATUS(mp_pool_new(&p, &o), 0);
    mp_obj *items = int_list(0, 10);
    mp_obj *res = NULL;
    TU_ASSERT_STATUS(mp_pool_map(p, read_init_seen, items, 1, &res, NULL, T_LONG), 0);
    for (size_t i = 0; i < 10; i++)
        assert_int_equal(as_int(mp_obj_list_get(res, i)), 1234);
    assert_int_equal(init_seen, 0); /* not run here */
    mp_obj_free(res);
    mp_obj_free(items);
    close_join_free(p);
}

#define METHOD_TESTS(m)                                                                            \
    static void test_##m##_map(void **state)                                                       \
    {                                                                                              \
        (void)state;                                                                               \
        check_map(#m);                                                                             \
    }                                                                                              \
    static void test_##m##_apply_async_runs_in_the_workers(void **state)                           \
    {                                                                                              \
        (void)state;                                                                               \
        check_apply_async(#m);                                                                     \
    }                                                                                              \
    static void test_##m##_imap_in_order(void **state)                                             \
    {                                                                                              \
        (void)state;                                                                               \
        check_imap(#m);                                                                            \
    }                                                                                              \
    static void test_##m##_worker_killed_mid_task_fails_only_that_task(void **state)               \
    {                                                                                              \
        (void)state;                                                                               \
        check_worker_killed(#m);                                                                   \
    }                                                                                              \
    static void test_##m##_terminate_fails_what_is_not_done(void **state)                          \
    {                                                                                              \
        (void)state;                                                                               \
        check_terminate(#m);                                                                       \
    }                                                                                              \
    static void test_##m##_initializer_runs_in_each_worker(void **state)                           \
    {                                                                                              \
        (void)state;                                                                               \
        check_initializer(#m);                                                                     \
    }

METHOD_TESTS(fork)
METHOD_TESTS(forkserver)

/* What the workers see of the caller's memory (pool.h's table): under fork
 * the memory as it was at mp_pool_new; under forkserver as it was when the
 * shared server started (main), not what the caller set later. */
static int64_t seen_global = 1;

static int read_global(const mp_obj *args, mp_obj **result)
{
    (void)args;
    *result = mp_obj_int(seen_global);
    return 0;
}

static void check_sees_memory(const char *method, int64_t expect)
{
    seen_global = 42;
    mp_pool *p = methods_pool(method, 1);
    seen_global = 7; /* after the pool exists: no method's workers see it */
    mp_obj *args = mp_obj_tuple_new();
    mp_obj *v = NULL;
    TU_ASSERT_STATUS(mp_pool_apply(p, read_global, args, &v, NULL, T_LONG), 0);
    seen_global = 1;
    assert_int_equal(as_int(v), expect);
    mp_obj_free(v);
    mp_obj_free(args);
    close_join_free(p);
}

static void test_fork_workers_see_memory_as_at_pool_new(void **state)
{
    (void)state;
    check_sees_memory("fork", 42);
}

static void test_forkserver_workers_see_memory_as_at_server_start(void **state)
{
    (void)state;
    check_sees_memory("forkserver", 1);
}

/* The forkserver pool's workers are not the caller's children nor forked
 * from it: they work while the caller runs threads of its own. */
static void *spin(void *arg)
{
    int *stop = arg;
    while (!__atomic_load_n(stop, __ATOMIC_ACQUIRE))
        tu_sleep(0.001);
    return NULL;
}

static void test_forkserver_pool_from_a_threaded_caller(void **state)
{
    (void)state;
    int stop = 0;
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&th[i], NULL, spin, &stop), 0);
    ssize_t kids = mp_process_active_children(NULL, 0);
    mp_pool *p = methods_pool("forkserver", 2);
    /* The pool's server is the one child it adds; the workers are its. */
    assert_int_equal(mp_process_active_children(NULL, 0), kids + 1);
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    mp_obj *items = int_list(0, 30);
    mp_obj *res = NULL;
    TU_ASSERT_STATUS(mp_pool_map(p, sqr, items, 1, &res, NULL, T_LONG), 0);
    assert_int_equal(as_int(mp_obj_list_get(res, 29)), 29 * 29);
    mp_obj_free(res);
    mp_obj_free(items);
    close_join_free(p);
}

/* A process that makes a forkserver pool, sends its workers' pids on the
 * pipe's write end (arg) and waits to be killed. */
static int owner_with_pool(void *arg)
{
    int wfd = *(int *)arg;
    const mp_context *ctx = NULL;
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 2;
    if (mp_context_get(&ctx, "forkserver") < 0)
        return 2;
    o.ctx = ctx;
    mp_pool *p = NULL;
    if (mp_pool_new(&p, &o) < 0)
        return 3;
    pid_t pids[2];
    if (mp_pool_pids(p, pids, 2) != 2 || write(wfd, pids, sizeof pids) != (ssize_t)sizeof pids)
        return 4;
    for (;;)
        tu_sleep(1.0);
}

/* The owner killed by SIGKILL (no exit procedure): its pool's server,
 * a child of the shared server, sees its control connection close and
 * ends the workers, as the default pool's server does. */
static void test_forkserver_pool_workers_end_when_the_owner_is_killed(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t owner = tu_fork(owner_with_pool, &fds[1]);
    close(fds[1]);
    pid_t pids[2];
    size_t got = 0;
    double end = tu_now() + T_LONG;
    while (got < sizeof pids && tu_now() < end) {
        ssize_t r = read(fds[0], (char *)pids + got, sizeof pids - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fds[0]);
    if (got != sizeof pids)
        kill(owner, SIGKILL);
    assert_int_equal(got, sizeof pids);
    assert_int_equal(kill(owner, SIGKILL), 0);
    assert_int_equal(tu_wait_child(owner, T_LONG), -SIGKILL);
    for (int i = 0; i < 2; i++) {
        end = tu_now() + T_LONG;
        while (kill(pids[i], 0) == 0 && tu_now() < end)
            tu_sleep(0.01);
        assert_int_equal(kill(pids[i], 0), -1); /* gone (and reaped) */
    }
}

/* spawn: -ENOTSUP with a message naming the method; *out NULL and no
 * process left behind. */
static void test_spawn_is_refused_with_a_named_error_and_leaves_nothing(void **state)
{
    (void)state;
    const mp_context *ctx = NULL;
    TU_ASSERT_STATUS(mp_context_get(&ctx, "spawn"), 0);
    ssize_t before = mp_process_active_children(NULL, 0);
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 2;
    o.ctx = ctx;
    mp_pool *p = (mp_pool *)&o; /* not NULL, to see it cleared */
    int rc = mp_pool_new(&p, &o);
    TU_ASSERT_STATUS(rc, -ENOTSUP);
    assert_null(p);
    assert_non_null(strstr(mp_errmsg(rc), "spawn"));
    assert_int_equal(mp_process_active_children(NULL, 0), before);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    /* As a forkserver program does (context.h): the shared server runs
     * early, before any thread; the pool's own server is used beside it. */
    if (mp_forkserver_start() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        TU_TEST(test_fork_map),
        TU_TEST(test_fork_apply_async_runs_in_the_workers),
        TU_TEST(test_fork_imap_in_order),
        TU_TEST(test_fork_worker_killed_mid_task_fails_only_that_task),
        TU_TEST(test_fork_terminate_fails_what_is_not_done),
        TU_TEST(test_fork_initializer_runs_in_each_worker),
        TU_TEST(test_forkserver_map),
        TU_TEST(test_forkserver_apply_async_runs_in_the_workers),
        TU_TEST(test_forkserver_imap_in_order),
        TU_TEST(test_forkserver_worker_killed_mid_task_fails_only_that_task),
        TU_TEST(test_forkserver_terminate_fails_what_is_not_done),
        TU_TEST(test_forkserver_initializer_runs_in_each_worker),
        TU_TEST(test_fork_workers_see_memory_as_at_pool_new),
        TU_TEST(test_forkserver_workers_see_memory_as_at_server_start),
        TU_TEST(test_forkserver_pool_from_a_threaded_caller),
        TU_TEST(test_forkserver_pool_workers_end_when_the_owner_is_killed),
        TU_TEST(test_spawn_is_refused_with_a_named_error_and_leaves_nothing),
    };
    pool_test_start();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
