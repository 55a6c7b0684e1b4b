/*
 * pool: the core calls (map, apply_async, imap, a worker killed mid-task)
 * under each start method (mp_pool_opts.ctx: fork; forkserver, whose pool
 * server is a child of the shared fork server; spawn, whose server is a
 * fresh run of this program and whose tasks travel by registered name),
 * what each method's workers see, and the task registry (MP_TASK).
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

/* Under spawn every task a pool runs is registered (pool.h). */
MP_TASK(sqr_or_die);
MP_TASK(my_pid);

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
    init_seen = arg ? *(const int64_t *)arg : init_value; /* spawn: initarg is NULL */
}

static int read_init_seen(const mp_obj *args, mp_obj **result)
{
    (void)args;
    *result = mp_obj_int(init_seen);
    return 0;
}

MP_TASK(set_init_seen);
MP_TASK(read_init_seen);

static void check_initializer(const char *method)
{
    const mp_context *ctx = NULL;
    TU_ASSERT_STATUS(mp_context_get(&ctx, method), 0);
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 2;
    o.initializer = set_init_seen;
    o.initarg = strcmp(method, "spawn") == 0 ? NULL : (void *)&init_value;
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
METHOD_TESTS(spawn)

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
MP_TASK(read_global);

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

/* A process that makes a pool under owner_method, sends its workers' pids
 * on the pipe's write end (arg) and waits to be killed. */
static const char *owner_method;

static int owner_with_pool(void *arg)
{
    int wfd = *(int *)arg;
    const mp_context *ctx = NULL;
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 2;
    if (mp_context_get(&ctx, owner_method) < 0)
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
static void check_workers_end_when_the_owner_is_killed(const char *method)
{
    owner_method = method;
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

static void test_forkserver_pool_workers_end_when_the_owner_is_killed(void **state)
{
    (void)state;
    check_workers_end_when_the_owner_is_killed("forkserver");
}

/* The same under spawn: the pool's server is the owner's own child (a
 * fresh run of the program) and notices its parent is gone. */
static void test_spawn_pool_workers_end_when_the_owner_is_killed(void **state)
{
    (void)state;
    check_workers_end_when_the_owner_is_killed("spawn");
}

/* ---- spawn: tasks by name ------------------------------------------------------ */

static void test_spawn_workers_see_memory_as_at_program_start(void **state)
{
    (void)state;
    check_sees_memory("spawn", 1); /* a fresh run: the initial value */
}

/* A bytes task: the input reversed. */
static int reverse_bytes(const void *in, size_t in_len, void **out, size_t *out_len)
{
    unsigned char *o = malloc(in_len ? in_len : 1);
    if (!o)
        return 1;
    for (size_t i = 0; i < in_len; i++)
        o[i] = ((const unsigned char *)in)[in_len - 1 - i];
    *out = o;
    *out_len = in_len;
    return 0;
}
MP_TASK(reverse_bytes);

/* Registered nowhere: its address means nothing in a spawned worker. */
static int not_registered_obj(const mp_obj *args, mp_obj **result)
{
    (void)args;
    *result = NULL;
    return 0;
}

static int not_registered_array(const void *in, void *out)
{
    (void)in;
    (void)out;
    return 0;
}

static int not_registered_bytes(const void *in, size_t in_len, void **out, size_t *out_len)
{
    (void)in;
    (void)in_len;
    *out = NULL;
    *out_len = 0;
    return 0;
}

static void not_registered_init(void *arg)
{
    (void)arg;
}

static int one_item(void *user, mp_obj **item)
{
    (void)user;
    *item = NULL;
    return 0;
}

/* The bytes and array forms' map and imap under spawn, by registered name. */
static void test_spawn_bytes_and_array_map_and_imap(void **state)
{
    (void)state;
    mp_pool *p = methods_pool("spawn", 2);
    enum { N = 40 };
    char bufs[N][8];
    struct iovec in[N];
    for (int i = 0; i < N; i++) {
        snprintf(bufs[i], sizeof bufs[i], "ab%03d", i);
        in[i] = (struct iovec){.iov_base = bufs[i], .iov_len = strlen(bufs[i])};
    }
    struct iovec res[N];
    TU_ASSERT_STATUS(mp_pool_map_bytes(p, reverse_bytes, in, N, res, 3, NULL, T_LONG), 0);
    for (int i = 0; i < N; i++) {
        char want[8];
        for (int k = 0; k < 5; k++)
            want[k] = bufs[i][4 - k];
        want[5] = 0;
        assert_int_equal(res[i].iov_len, 5);
        assert_memory_equal(res[i].iov_base, want, 5);
        free(res[i].iov_base);
    }
    memset(res, 0, sizeof res);
    mp_imap *bit = NULL;
    TU_ASSERT_STATUS(mp_pool_imap_bytes(p, reverse_bytes, in, N, res, 2, &bit), 0);
    for (int i = 0; i < N; i++) {
        size_t idx = SIZE_MAX;
        TU_ASSERT_STATUS(mp_imap_next(bit, &idx, NULL, NULL, T_LONG), 1);
        assert_int_equal(idx, (size_t)i);
        assert_int_equal(res[i].iov_len, 5);
        assert_int_equal(((const char *)res[i].iov_base)[0], bufs[i][4]);
        free(res[i].iov_base);
    }
    TU_ASSERT_STATUS(mp_imap_next(bit, NULL, NULL, NULL, T_LONG), 0);
    mp_imap_free(bit);
    int32_t ain[N];
    int64_t aout[N];
    for (int i = 0; i < N; i++)
        ain[i] = i - 7;
    TU_ASSERT_STATUS(mp_pool_map_array(p, square_int, ain, sizeof ain[0], N, aout, sizeof aout[0],
                                       4, NULL, T_LONG),
                     0);
    for (int i = 0; i < N; i++)
        assert_int_equal(aout[i], (int64_t)(i - 7) * (i - 7));
    memset(aout, 0, sizeof aout);
    mp_imap *it = NULL;
    TU_ASSERT_STATUS(
        mp_pool_imap_array(p, square_int, ain, sizeof ain[0], N, aout, sizeof aout[0], 2, &it), 0);
    for (int i = 0; i < N; i++)
        TU_ASSERT_STATUS(mp_imap_next(it, NULL, NULL, NULL, T_LONG), 1);
    TU_ASSERT_STATUS(mp_imap_next(it, NULL, NULL, NULL, T_LONG), 0);
    mp_imap_free(it);
    for (int i = 0; i < N; i++)
        assert_int_equal(aout[i], (int64_t)(i - 7) * (i - 7));
    close_join_free(p);
}

/* An unregistered task fails the submitting call in the parent with MP_EKEY
 * naming MP_TASK, whatever the form; nothing is sent, *out stays NULL, and
 * the pool goes on working. */
static void test_spawn_unregistered_task_is_MP_EKEY_in_the_parent(void **state)
{
    (void)state;
    mp_pool *p = methods_pool("spawn", 2);
    mp_obj *args = mp_obj_tuple_new();
    mp_result *r = (mp_result *)&args;
    int rc = mp_pool_apply_async(p, not_registered_obj, args, NULL, &r);
    TU_ASSERT_STATUS(rc, MP_EKEY);
    assert_null(r);
    assert_non_null(strstr(mp_errmsg(rc), "MP_TASK"));
    mp_obj *items = int_list(0, 5);
    mp_obj *res = NULL;
    TU_ASSERT_STATUS(mp_pool_map(p, not_registered_obj, items, 1, &res, NULL, T_LONG), MP_EKEY);
    assert_null(res);
    int32_t ain[3] = {1, 2, 3};
    int64_t aout[3] = {0};
    TU_ASSERT_STATUS(mp_pool_map_array(p, not_registered_array, ain, sizeof ain[0], 3, aout,
                                       sizeof aout[0], 1, NULL, T_LONG),
                     MP_EKEY);
    struct iovec in = {.iov_base = "x", .iov_len = 1}, out;
    TU_ASSERT_STATUS(mp_pool_map_bytes(p, not_registered_bytes, &in, 1, &out, 1, NULL, T_LONG),
                     MP_EKEY);
    mp_imap *it = (mp_imap *)&args;
    TU_ASSERT_STATUS(mp_pool_imap_gen(p, not_registered_obj, one_item, NULL, 1, &it), MP_EKEY);
    assert_null(it);
    /* Still working, and registered tasks still run. */
    TU_ASSERT_STATUS(mp_pool_map(p, sqr, items, 1, &res, NULL, T_LONG), 0);
    assert_int_equal(as_int(mp_obj_list_get(res, 4)), 16);
    mp_obj_free(res);
    mp_obj_free(items);
    mp_obj_free(args);
    close_join_free(p);
}

/* Registered here after main() began (so not in the spawned run): the
 * parent accepts it, the worker does not know it, and each item fails with
 * MP_EKEY and a message saying where to register; the worker lives on. */
static int late_task(const mp_obj *args, mp_obj **result)
{
    (void)args;
    *result = mp_obj_int(1);
    return 0;
}

static void test_spawn_task_registered_after_spawn_main_fails_in_the_worker(void **state)
{
    (void)state;
    TU_ASSERT_STATUS(mp_task_register_obj("late_task", late_task), 0);
    mp_pool *p = methods_pool("spawn", 1);
    mp_obj *items = int_list(0, 3);
    mp_obj *res = NULL;
    mp_task_error err;
    TU_ASSERT_STATUS(mp_pool_map(p, late_task, items, 1, &res, &err, T_LONG), MP_EKEY);
    assert_int_equal(err.index, 0);
    assert_non_null(strstr(err.message, "mp_spawn_main"));
    TU_ASSERT_STATUS(mp_pool_map(p, sqr, items, 1, &res, NULL, T_LONG), 0);
    mp_obj_free(res);
    mp_obj_free(items);
    close_join_free(p);
}

/* Under spawn the initializer must be registered (MP_EKEY) and initarg
 * NULL (MP_EVALUE: a pointer does not survive exec); nothing starts. */
static void test_spawn_initializer_unregistered_or_with_initarg_is_refused(void **state)
{
    (void)state;
    const mp_context *ctx = NULL;
    TU_ASSERT_STATUS(mp_context_get(&ctx, "spawn"), 0);
    ssize_t before = mp_process_active_children(NULL, 0);
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 1;
    o.ctx = ctx;
    o.initializer = not_registered_init;
    mp_pool *p = (mp_pool *)&o;
    int rc = mp_pool_new(&p, &o);
    TU_ASSERT_STATUS(rc, MP_EKEY);
    assert_null(p);
    assert_non_null(strstr(mp_errmsg(rc), "MP_TASK"));
    o.initializer = set_init_seen;
    o.initarg = (void *)&init_value;
    p = (mp_pool *)&o;
    rc = mp_pool_new(&p, &o);
    TU_ASSERT_STATUS(rc, MP_EVALUE);
    assert_null(p);
    assert_non_null(strstr(mp_errmsg(rc), "initarg"));
    assert_int_equal(mp_process_active_children(NULL, 0), before);
}

/* The registry both ways, and its refusals: a name taken by another
 * function of the same form; each form (and the targets) has its own names. */
static int other_obj(const mp_obj *args, mp_obj **result)
{
    (void)args;
    *result = NULL;
    return 0;
}

static int target_named_sqr(const mp_obj *args)
{
    (void)args;
    return 0;
}

static void test_task_registry_lookup_both_ways_and_collisions_refused(void **state)
{
    (void)state;
    mp_task_fn fn = NULL;
    TU_ASSERT_STATUS(mp_task_lookup(MP_TASK_OBJ, "sqr", &fn), 0);
    assert_true(fn == (mp_task_fn)sqr);
    TU_ASSERT_STATUS(mp_task_lookup(MP_TASK_ARRAY, "square_int", &fn), 0);
    assert_true(fn == (mp_task_fn)square_int);
    TU_ASSERT_STATUS(mp_task_lookup(MP_TASK_INIT, "set_init_seen", &fn), 0);
    assert_true(fn == (mp_task_fn)set_init_seen);
    const char *name = NULL;
    TU_ASSERT_STATUS(mp_task_name(MP_TASK_BYTES, (mp_task_fn)reverse_bytes, &name), 0);
    assert_string_equal(name, "reverse_bytes");
    /* Wrong form, unknown name, unregistered function. */
    int rc = mp_task_lookup(MP_TASK_BYTES, "sqr", &fn);
    TU_ASSERT_STATUS(rc, MP_EKEY);
    assert_non_null(strstr(mp_errmsg(rc), "'sqr'"));
    TU_ASSERT_STATUS(mp_task_lookup(MP_TASK_OBJ, "no_such_task", &fn), MP_EKEY);
    TU_ASSERT_STATUS(mp_task_name(MP_TASK_OBJ, (mp_task_fn)not_registered_obj, &name), MP_EKEY);
    /* Again the same: fine; another function under a taken name: refused,
     * and the first stays. */
    TU_ASSERT_STATUS(mp_task_register_obj("sqr", sqr), 0);
    rc = mp_task_register_obj("sqr", other_obj);
    TU_ASSERT_STATUS(rc, MP_EVALUE);
    assert_non_null(strstr(mp_errmsg(rc), "'sqr'"));
    TU_ASSERT_STATUS(mp_task_lookup(MP_TASK_OBJ, "sqr", &fn), 0);
    assert_true(fn == (mp_task_fn)sqr);
    /* An alias maps back to the same function; forms and targets apart. */
    TU_ASSERT_STATUS(mp_task_register_obj("sqr_alias", sqr), 0);
    TU_ASSERT_STATUS(mp_task_lookup(MP_TASK_OBJ, "sqr_alias", &fn), 0);
    assert_true(fn == (mp_task_fn)sqr);
    TU_ASSERT_STATUS(mp_task_register_array("sqr", square_int), 0);
    TU_ASSERT_STATUS(mp_target_register("sqr", target_named_sqr), 0);
    /* Bad input. */
    TU_ASSERT_STATUS(mp_task_register_obj("", sqr), -EINVAL);
    TU_ASSERT_STATUS(mp_task_register_obj(NULL, sqr), -EINVAL);
    TU_ASSERT_STATUS(mp_task_register_obj("x", NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_task_lookup((mp_task_kind)0, "sqr", &fn), -EINVAL);
    TU_ASSERT_STATUS(mp_task_name(MP_TASK_OBJ, NULL, &name), -EINVAL);
}

int main(int argc, char **argv)
{
    if (pool_test_main(argc, argv) < 0)
        return 1;
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
        TU_TEST(test_spawn_map),
        TU_TEST(test_spawn_apply_async_runs_in_the_workers),
        TU_TEST(test_spawn_imap_in_order),
        TU_TEST(test_spawn_worker_killed_mid_task_fails_only_that_task),
        TU_TEST(test_spawn_terminate_fails_what_is_not_done),
        TU_TEST(test_spawn_initializer_runs_in_each_worker),
        TU_TEST(test_spawn_workers_see_memory_as_at_program_start),
        TU_TEST(test_spawn_pool_workers_end_when_the_owner_is_killed),
        TU_TEST(test_spawn_bytes_and_array_map_and_imap),
        TU_TEST(test_spawn_unregistered_task_is_MP_EKEY_in_the_parent),
        TU_TEST(test_spawn_task_registered_after_spawn_main_fails_in_the_worker),
        TU_TEST(test_spawn_initializer_unregistered_or_with_initarg_is_refused),
        TU_TEST(test_task_registry_lookup_both_ways_and_collisions_refused),
    };
    return POOL_RUN_TESTS(tests);
}
