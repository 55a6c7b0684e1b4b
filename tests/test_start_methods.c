/*
 * start methods: get_context(method), the registry of targets by name, and
 * the same child under fork, forkserver and spawn (Python's
 * _TestProcess run under each start method): a Pipe end passed to it, its
 * args, its name, its exit code, terminate and kill, a lock shared where the
 * method allows it. Spawn re-executes this binary: main calls
 * mp_spawn_main first.
 */
#include "testutil.h"

#include <mpipc/conn.h>
#include <mpipc/context.h>
#include <mpipc/obj.h>
#include <mpipc/process.h>
#include <mpipc/queue.h>
#include <mpipc/sync.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T_LONG 20.0

/* Made in main before the fork server starts, so fork and forkserver
 * children share them (forkserver: shared memory as it was at the server's
 * start). */
static mp_lock *g_lock;
static long *g_counter;
/* Made before the child under fork only. */
static mp_queue *g_queue;

/* ---- targets ---------------------------------------------------------------------- */

/* args (code, text): send (text, current name, pid) on inherited conn 0,
 * return code. */
static int t_echo(const mp_obj *args)
{
    int code;
    const char *text;
    if (mp_obj_parse(args, "(is)", &code, &text) < 0)
        return 100;
    mp_conn *c;
    if (mp_process_inherited_conn(&c, 0) < 0)
        return 101;
    mp_obj *reply = mp_obj_build("(s,s,i)", text, mp_process_current_name(), (int)getpid());
    int rc = reply ? mp_conn_send(c, reply) : -ENOMEM;
    mp_obj_free(reply);
    mp_conn_free(c);
    return rc < 0 ? 102 : code;
}
MP_TARGET(t_echo);

static int t_sleep(const mp_obj *args)
{
    (void)args;
    for (;;)
        pause();
    return 0;
}
MP_TARGET(t_sleep);

/* Take the shared lock (waits while the parent holds it), count, leave. */
static int t_lock(const mp_obj *args)
{
    (void)args;
    if (mp_lock_acquire(g_lock, T_LONG) < 0)
        return 3;
    ++*g_counter;
    return mp_lock_release(g_lock) < 0 ? 4 : 0;
}
MP_TARGET(t_lock);

static int t_queue_put(const mp_obj *args)
{
    return mp_queue_put_obj(g_queue, args, T_LONG) < 0 ? 5 : 0;
}
MP_TARGET(t_queue_put);

/* args (bytes): 0 when it is the 1 MiB pattern big_arg() makes. */
#define BIG (1u << 20)
static int t_big(const mp_obj *args)
{
    const char *p;
    size_t len;
    if (mp_obj_parse(args, "(y#)", &p, &len) < 0 || len != BIG)
        return 1;
    for (size_t i = 0; i < len; i++)
        if (p[i] != (char)(i * 7))
            return 2;
    return 0;
}
MP_TARGET(t_big);

/* args (method, text): start t_echo by method with inherited conn 0
 * passed on, return its exit code (Python: a child starts its own). */
static int t_nested(const mp_obj *args)
{
    const char *method, *text;
    const mp_context *ctx;
    if (mp_obj_parse(args, "(ss)", &method, &text) < 0 || mp_context_get(&ctx, method) < 0)
        return 90;
    mp_conn *c;
    if (mp_process_inherited_conn(&c, 0) < 0)
        return 91;
    mp_obj *a = mp_obj_build("(is)", 9, text);
    mp_process *p;
    int code = -1;
    if (!a || mp_process_new_ctx(&p, ctx, "t_echo", a) < 0)
        return 92;
    if (mp_process_pass_conn(p, c) < 0 || mp_process_start(p) < 0 ||
        mp_process_join(p, T_LONG) < 0 || mp_process_exitcode(p, &code) < 0)
        code = 93;
    mp_process_free(p);
    mp_obj_free(a);
    mp_conn_free(c);
    return code;
}
MP_TARGET(t_nested);

static const mp_context *ctx_of(const char *method)
{
    const mp_context *ctx = NULL;
    assert_int_equal(mp_context_get(&ctx, method), 0);
    assert_non_null(ctx);
    return ctx;
}

/* ---- contexts and the registry ------------------------------------------------------ */

/* Python: get_context('fork'|'forkserver'|'spawn') and get_start_method(). */
static void test_context_get_names_each_method_and_refuses_others(void **state)
{
    (void)state;
    const char *names[] = {"fork", "forkserver", "spawn"};
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(mp_context_start_method(ctx_of(names[i])), names[i]);
    assert_string_equal(mp_context_start_method(ctx_of(NULL)), "fork");
    const mp_context *ctx = (const mp_context *)1;
    /* Python: ValueError("cannot find context for 'thread'"). */
    TU_ASSERT_STATUS(mp_context_get(&ctx, "thread"), MP_EVALUE);
    assert_null(ctx);
    assert_string_equal(mp_errmsg(MP_EVALUE), "cannot find context for 'thread'");
    TU_ASSERT_STATUS(mp_context_get(NULL, "fork"), -EINVAL);
}

static int t_other(const mp_obj *args)
{
    (void)args;
    return 0;
}

static void test_registry_finds_targets_and_refuses_a_name_taken_by_another(void **state)
{
    (void)state;
    mp_named_target_fn fn = NULL;
    assert_int_equal(mp_target_lookup("t_echo", &fn), 0); /* MP_TARGET, before main */
    assert_ptr_equal(fn, t_echo);
    assert_int_equal(mp_target_register("other", t_other), 0);
    assert_int_equal(mp_target_register("other", t_other), 0); /* again: nothing */
    TU_ASSERT_STATUS(mp_target_register("other", t_echo), MP_EVALUE);
    assert_int_equal(mp_target_lookup("other", &fn), 0);
    assert_ptr_equal(fn, t_other);
    TU_ASSERT_STATUS(mp_target_lookup("nobody", &fn), MP_EKEY);
    assert_non_null(strstr(mp_errmsg(MP_EKEY), "'nobody'"));
    TU_ASSERT_STATUS(mp_target_register("", t_other), -EINVAL);
    TU_ASSERT_STATUS(mp_target_register("x", NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_target_lookup(NULL, &fn), -EINVAL);
}

/* ---- the same child under each method -------------------------------------------- */

/* An unknown target is a named error in the parent at start (Python's
 * PicklingError at start), and nothing starts. */
static void start_unknown_target(const char *method)
{
    mp_process *p;
    assert_int_equal(mp_process_new_ctx(&p, ctx_of(method), "no_such_target", NULL), 0);
    TU_ASSERT_STATUS(mp_process_start(p), MP_EKEY);
    assert_non_null(strstr(mp_errmsg(MP_EKEY), "no_such_target"));
    assert_int_equal(mp_process_pid(p), 0);
    assert_int_equal(mp_process_is_alive(p), 0);
    int code;
    TU_ASSERT_STATUS(mp_process_exitcode(p, &code), MP_ENOTDONE);
    /* The name can be registered later, and the handle started then. */
    mp_process_free(p);
}

/* The child gets its args and the Pipe end, answers on it with its name,
 * and its return value is its exit code; the sentinel fires at its end. */
static void start_pipe_and_exitcode(const char *method)
{
    mp_conn *r, *w;
    assert_int_equal(mp_pipe(&r, &w, false), 0);
    mp_obj *args = mp_obj_build("(is)", 7, "hello");
    mp_process *p;
    assert_int_equal(mp_process_new_ctx(&p, ctx_of(method), "t_echo", args), 0);
    mp_obj_free(args); /* copied */
    assert_int_equal(mp_process_pass_conn(p, w), 0);
    assert_int_equal(mp_process_start(p), 0);
    mp_conn_free(w); /* the child has its own */
    TU_ASSERT_STATUS(mp_process_pass_conn(p, r), MP_ESTATE);

    mp_obj *reply = NULL;
    assert_int_equal(mp_conn_recv(r, &reply, T_LONG), 0);
    const char *text, *name;
    int pid;
    assert_int_equal(mp_obj_parse(reply, "(ssi)", &text, &name, &pid), 0);
    assert_string_equal(text, "hello");
    assert_string_equal(name, mp_process_name(p)); /* Python: Process-N, inherited */
    assert_int_equal(pid, mp_process_pid(p));
    mp_obj_free(reply);

    mp_wait_item item = {.conn = NULL, .fd = mp_process_sentinel(p), .ready = 0};
    assert_int_equal(mp_wait(&item, 1, T_LONG), 1);
    assert_int_equal(mp_process_join(p, T_LONG), 0);
    int code = -1;
    assert_int_equal(mp_process_exitcode(p, &code), 0);
    assert_int_equal(code, 7);
    assert_int_equal(mp_process_is_alive(p), 0);
    /* Only the child's end was open: end of file now. */
    TU_ASSERT_STATUS(mp_conn_recv(r, &reply, T_LONG), MP_EOF);
    assert_int_equal(mp_process_close(p), 0);
    mp_process_free(p);
    mp_conn_free(r);
}

/* Python: exitcode is -SIGTERM after terminate(), -SIGKILL after kill();
 * join(timeout) returns while it still runs. */
static void start_terminate_and_kill(const char *method)
{
    int sigs[] = {SIGTERM, SIGKILL};
    for (int i = 0; i < 2; i++) {
        mp_process *p;
        assert_int_equal(mp_process_new_ctx(&p, ctx_of(method), "t_sleep", NULL), 0);
        assert_int_equal(mp_process_start(p), 0);
        assert_int_equal(mp_process_is_alive(p), 1);
        TU_ASSERT_STATUS(mp_process_join(p, 0.1), MP_ETIMEDOUT);
        int code = 0;
        TU_ASSERT_STATUS(mp_process_exitcode(p, &code), MP_ENOTDONE);
        TU_ASSERT_STATUS(mp_process_close(p), MP_EVALUE);
        assert_int_equal(sigs[i] == SIGTERM ? mp_process_terminate(p) : mp_process_kill(p), 0);
        assert_int_equal(mp_process_join(p, T_LONG), 0);
        assert_int_equal(mp_process_exitcode(p, &code), 0);
        assert_int_equal(code, -sigs[i]);
        mp_process_free(p);
    }
}

/* A lock made before start (forkserver: before the server started) is the
 * child's too: it waits while the parent holds it. */
static void start_lock_shared(const char *method)
{
    long before = *g_counter;
    assert_int_equal(mp_lock_acquire(g_lock, T_LONG), 0);
    mp_process *p;
    assert_int_equal(mp_process_new_ctx(&p, ctx_of(method), "t_lock", NULL), 0);
    assert_int_equal(mp_process_start(p), 0);
    TU_ASSERT_STATUS(mp_process_join(p, 0.3), MP_ETIMEDOUT); /* blocked on our lock */
    assert_int_equal(*g_counter, before);
    assert_int_equal(mp_lock_release(g_lock), 0);
    assert_int_equal(mp_process_join(p, T_LONG), 0);
    int code = -1;
    assert_int_equal(mp_process_exitcode(p, &code), 0);
    assert_int_equal(code, 0);
    assert_int_equal(*g_counter, before + 1);
    mp_process_free(p);
}

/* The argument travels whole however large (1 MiB: more than a pipe or
 * socket buffer holds, so the parent writes while the child reads). */
static void start_big_args(const char *method)
{
    char *buf = malloc(BIG);
    assert_non_null(buf);
    for (size_t i = 0; i < BIG; i++)
        buf[i] = (char)(i * 7);
    mp_obj *args = mp_obj_build("(y#)", buf, (size_t)BIG);
    free(buf);
    mp_process *p;
    assert_int_equal(mp_process_new_ctx(&p, ctx_of(method), "t_big", args), 0);
    mp_obj_free(args);
    assert_int_equal(mp_process_start(p), 0);
    assert_int_equal(mp_process_join(p, T_LONG), 0);
    int code = -1;
    assert_int_equal(mp_process_exitcode(p, &code), 0);
    assert_int_equal(code, 0);
    mp_process_free(p);
}

/* A child starts its own child by the same method and passes the Pipe end
 * on; the grandchild is named as Python names it ("Process-N:1"). */
static void start_nested(const char *method)
{
    mp_conn *r, *w;
    assert_int_equal(mp_pipe(&r, &w, false), 0);
    mp_obj *args = mp_obj_build("(ss)", method, "deep");
    mp_process *p;
    assert_int_equal(mp_process_new_ctx(&p, ctx_of(method), "t_nested", args), 0);
    mp_obj_free(args);
    assert_int_equal(mp_process_pass_conn(p, w), 0);
    assert_int_equal(mp_process_start(p), 0);
    mp_conn_free(w);
    mp_obj *reply = NULL;
    assert_int_equal(mp_conn_recv(r, &reply, T_LONG), 0);
    const char *text, *name;
    int pid;
    assert_int_equal(mp_obj_parse(reply, "(ssi)", &text, &name, &pid), 0);
    assert_string_equal(text, "deep");
    char want[64];
    snprintf(want, sizeof want, "%s:1", mp_process_name(p));
    assert_string_equal(name, want);
    mp_obj_free(reply);
    assert_int_equal(mp_process_join(p, T_LONG), 0);
    int code = -1;
    assert_int_equal(mp_process_exitcode(p, &code), 0);
    assert_int_equal(code, 9); /* the grandchild's, passed up */
    mp_process_free(p);
    mp_conn_free(r);
}

#define PER_METHOD(name, method, fn)                                                               \
    static void test_##name##_##method(void **state)                                               \
    {                                                                                              \
        (void)state;                                                                               \
        fn(#method);                                                                               \
    }
PER_METHOD(start_unknown_target_is_named_error_in_parent, fork, start_unknown_target)
PER_METHOD(start_unknown_target_is_named_error_in_parent, forkserver, start_unknown_target)
PER_METHOD(start_unknown_target_is_named_error_in_parent, spawn, start_unknown_target)
PER_METHOD(start_child_uses_passed_pipe_and_reports_exitcode, fork, start_pipe_and_exitcode)
PER_METHOD(start_child_uses_passed_pipe_and_reports_exitcode, forkserver, start_pipe_and_exitcode)
PER_METHOD(start_child_uses_passed_pipe_and_reports_exitcode, spawn, start_pipe_and_exitcode)
PER_METHOD(start_terminate_and_kill_give_minus_signum, fork, start_terminate_and_kill)
PER_METHOD(start_terminate_and_kill_give_minus_signum, forkserver, start_terminate_and_kill)
PER_METHOD(start_terminate_and_kill_give_minus_signum, spawn, start_terminate_and_kill)
PER_METHOD(start_big_args_travel_whole, forkserver, start_big_args)
PER_METHOD(start_big_args_travel_whole, spawn, start_big_args)
PER_METHOD(start_child_starts_its_own_child, fork, start_nested)
PER_METHOD(start_child_starts_its_own_child, forkserver, start_nested)
PER_METHOD(start_child_starts_its_own_child, spawn, start_nested)
PER_METHOD(start_lock_made_before_is_shared, fork, start_lock_shared)
PER_METHOD(start_lock_made_before_is_shared, forkserver, start_lock_shared)

/* A queue made before start is the child's under fork (Python's fork
 * context); forkserver and spawn need queues by descriptor, a later step. */
static void test_start_queue_made_before_is_shared_fork(void **state)
{
    (void)state;
    assert_int_equal(mp_queue_new(&g_queue, 0), 0);
    mp_obj *args = mp_obj_build("(si)", "item", 5);
    mp_process *p;
    assert_int_equal(mp_process_new_ctx(&p, ctx_of("fork"), "t_queue_put", args), 0);
    assert_int_equal(mp_process_start(p), 0);
    mp_obj *got = NULL;
    assert_int_equal(mp_queue_get_obj(g_queue, &got, T_LONG), 0);
    assert_true(mp_obj_equal(got, args));
    assert_int_equal(mp_process_join(p, T_LONG), 0);
    int code = -1;
    assert_int_equal(mp_process_exitcode(p, &code), 0);
    assert_int_equal(code, 0);
    mp_obj_free(got);
    mp_obj_free(args);
    mp_process_free(p);
    mp_queue_free(g_queue);
    g_queue = NULL;
}

/* Bad input is refused with a named error, and loses nothing. */
static void test_start_pass_fd_refuses_bad_input(void **state)
{
    (void)state;
    mp_process *plain, *p;
    assert_int_equal(mp_process_new(&plain, NULL, NULL), 0);
    TU_ASSERT_STATUS(mp_process_pass_fd(plain, 0), MP_ESTATE); /* fork inherits all */
    mp_process_free(plain);
    assert_int_equal(mp_process_new_ctx(&p, ctx_of("spawn"), "t_echo", NULL), 0);
    TU_ASSERT_STATUS(mp_process_pass_fd(p, -1), -EINVAL);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    close(fds[0]);
    close(fds[1]);
    TU_ASSERT_STATUS(mp_process_pass_fd(p, fds[0]), -EBADF);
    for (int i = 0; i < 60; i++)
        assert_int_equal(mp_process_pass_fd(p, 2), i);
    TU_ASSERT_STATUS(mp_process_pass_fd(p, 2), MP_EVALUE);
    TU_ASSERT_STATUS(mp_process_new_ctx(NULL, NULL, "t_echo", NULL), -EINVAL);
    mp_process *q = (mp_process *)1;
    TU_ASSERT_STATUS(mp_process_new_ctx(&q, NULL, NULL, NULL), -EINVAL);
    assert_null(q);
    mp_process_free(p);
    /* Not a child started through a context: nothing inherited. */
    TU_ASSERT_STATUS(mp_process_inherited_fd(0), MP_EKEY);
    mp_conn *c = (mp_conn *)1;
    TU_ASSERT_STATUS(mp_process_inherited_conn(&c, 0), MP_EKEY);
    assert_null(c);
}

/* mp_spawn_main: not a spawned child returns 0 at once; a command line
 * that claims to be one but is malformed is MP_EVALUE, and nothing runs. */
static void test_spawn_main_refuses_a_malformed_command_line(void **state)
{
    (void)state;
    char a0[] = "prog", a1[] = "--mpipc-spawn", bad[] = "12x", big[] = "99999", other[] = "-v";
    char *plain[] = {a0, other, NULL};
    assert_int_equal(mp_spawn_main(2, plain), 0);
    assert_int_equal(mp_spawn_main(1, plain), 0);
    char *shortv[] = {a0, a1, NULL};
    TU_ASSERT_STATUS(mp_spawn_main(2, shortv), MP_EVALUE);
    char *badv[] = {a0, a1, bad, bad, NULL};
    TU_ASSERT_STATUS(mp_spawn_main(4, badv), MP_EVALUE);
    char *closed[] = {a0, a1, big, big, NULL};
    TU_ASSERT_STATUS(mp_spawn_main(4, closed), MP_EVALUE);
}

int main(int argc, char **argv)
{
    mp_spawn_main(argc, argv); /* a spawned child runs its target here */
    tu_filter(argc, argv);
    if (mp_lock_new(&g_lock) < 0 || mp_shm_alloc((void **)&g_counter, sizeof *g_counter) < 0)
        return 1;
    *g_counter = 0;
    if (mp_forkserver_start() < 0) /* early: before any thread */
        return 1;
    const struct CMUnitTest tests[] = {
        TU_TEST(test_context_get_names_each_method_and_refuses_others),
        TU_TEST(test_registry_finds_targets_and_refuses_a_name_taken_by_another),
        TU_TEST(test_start_unknown_target_is_named_error_in_parent_fork),
        TU_TEST(test_start_unknown_target_is_named_error_in_parent_forkserver),
        TU_TEST(test_start_unknown_target_is_named_error_in_parent_spawn),
        TU_TEST(test_start_child_uses_passed_pipe_and_reports_exitcode_fork),
        TU_TEST(test_start_child_uses_passed_pipe_and_reports_exitcode_forkserver),
        TU_TEST(test_start_child_uses_passed_pipe_and_reports_exitcode_spawn),
        TU_TEST(test_start_terminate_and_kill_give_minus_signum_fork),
        TU_TEST(test_start_terminate_and_kill_give_minus_signum_forkserver),
        TU_TEST(test_start_terminate_and_kill_give_minus_signum_spawn),
        TU_TEST(test_start_big_args_travel_whole_forkserver),
        TU_TEST(test_start_big_args_travel_whole_spawn),
        TU_TEST(test_start_child_starts_its_own_child_fork),
        TU_TEST(test_start_child_starts_its_own_child_forkserver),
        TU_TEST(test_start_child_starts_its_own_child_spawn),
        TU_TEST(test_start_lock_made_before_is_shared_fork),
        TU_TEST(test_start_lock_made_before_is_shared_forkserver),
        TU_TEST(test_start_queue_made_before_is_shared_fork),
        TU_TEST(test_start_pass_fd_refuses_bad_input),
        TU_TEST(test_spawn_main_refuses_a_malformed_command_line),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    mp_lock_free(g_lock);
    mp_shm_free(g_counter);
    return rc;
}
