/*
 * process: Python's Process for fork (multiprocessing/process.py,
 * popen_fork.py, _TestProcess in Lib/test/_test_multiprocessing.py), and the
 * exit procedure (util._exit_function): daemons terminated, other children
 * joined, queue hooks run in the process that registered them only.
 */
/* sched_setaffinity() and the CPU_* macros, for the affinity test. */
#define _GNU_SOURCE

#include "testutil.h"

#include "core/internal.h"

#include <mpipc/conn.h>
#include <mpipc/process.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define T_LONG 10.0

static int return_arg(void *arg)
{
    return *(int *)arg;
}

static int sleep_forever(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return 0;
}

static int sleep_for(void *arg)
{
    tu_sleep(*(double *)arg);
    return 0;
}

static void test_process_runs_target_and_reports_its_return_as_exitcode(void **state)
{
    (void)state;
    int value = 3;
    mp_process *p;
    assert_int_equal(mp_process_new(&p, return_arg, &value), 0);
    int code = -1;
    /* Python: exitcode is None before start and while running. */
    TU_ASSERT_STATUS(mp_process_exitcode(p, &code), MP_ENOTDONE);
    assert_int_equal(mp_process_is_alive(p), 0);
    assert_int_equal(mp_process_pid(p), 0);
    assert_int_equal(mp_process_start(p), 0);
    assert_true(mp_process_pid(p) > 0);
    assert_int_equal(mp_process_join(p, T_LONG), 0);
    assert_int_equal(mp_process_is_alive(p), 0);
    assert_int_equal(mp_process_exitcode(p, &code), 0);
    assert_int_equal(code, 3);
    /* Joining again is fine and quick. */
    assert_int_equal(mp_process_join(p, 0), 0);
    assert_int_equal(mp_process_close(p), 0);
    mp_process_free(p);

    /* Python's Process() without a target exits 0. */
    assert_int_equal(mp_process_new(&p, NULL, NULL), 0);
    assert_int_equal(mp_process_start(p), 0);
    assert_int_equal(mp_process_join(p, T_LONG), 0);
    assert_int_equal(mp_process_exitcode(p, &code), 0);
    assert_int_equal(code, 0);
    assert_int_equal(mp_process_close(p), 0);
    mp_process_free(p);
}

static void test_is_alive_while_running_and_join_timeout(void **state)
{
    (void)state;
    mp_process *p;
    assert_int_equal(mp_process_new(&p, sleep_forever, NULL), 0);
    assert_int_equal(mp_process_start(p), 0);
    assert_int_equal(mp_process_is_alive(p), 1);
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_process_join(p, 0.2), MP_ETIMEDOUT);
    double took = tu_now() - t0;
    assert_true(took >= 0.199 && took < 0.7);
    int code;
    TU_ASSERT_STATUS(mp_process_exitcode(p, &code), MP_ENOTDONE);
    /* Python's close() of a running process: ValueError. */
    TU_ASSERT_STATUS(mp_process_close(p), MP_EVALUE);
    assert_int_equal(mp_process_terminate(p), 0);
    assert_int_equal(mp_process_join(p, T_LONG), 0);
    assert_int_equal(mp_process_exitcode(p, &code), 0);
    assert_int_equal(code, -SIGTERM);
    /* Signalling an ended process is a no-op, as in Python. */
    assert_int_equal(mp_process_kill(p), 0);
    assert_int_equal(mp_process_close(p), 0);
    mp_process_free(p);
}

static int crash(void *arg)
{
    (void)arg;
    /* cmocka catches SIGSEGV in the test process and this child inherits
     * that handler; a real crash meets the default action. */
    signal(SIGSEGV, SIG_DFL);
    raise(SIGSEGV);
    return 0;
}

static int call_exit(void *arg)
{
    exit(*(int *)arg); /* Python's sys.exit(n) in a target */
}

static void test_exitcode_is_minus_signal_when_killed(void **state)
{
    (void)state;
    mp_process *p;
    int code;
    assert_int_equal(mp_process_new(&p, sleep_forever, NULL), 0);
    assert_int_equal(mp_process_start(p), 0);
    assert_int_equal(mp_process_kill(p), 0);
    assert_int_equal(mp_process_join(p, T_LONG), 0);
    assert_int_equal(mp_process_exitcode(p, &code), 0);
    assert_int_equal(code, -SIGKILL);
    assert_int_equal(mp_process_close(p), 0);
    mp_process_free(p);

    assert_int_equal(mp_process_new(&p, crash, NULL), 0);
    assert_int_equal(mp_process_start(p), 0);
    assert_int_equal(mp_process_join(p, T_LONG), 0);
    assert_int_equal(mp_process_exitcode(p, &code), 0);
    assert_int_equal(code, -SIGSEGV);
    assert_int_equal(mp_process_close(p), 0);
    mp_process_free(p);

    int seven = 7;
    assert_int_equal(mp_process_new(&p, call_exit, &seven), 0);
    assert_int_equal(mp_process_start(p), 0);
    assert_int_equal(mp_process_join(p, T_LONG), 0);
    assert_int_equal(mp_process_exitcode(p, &code), 0);
    assert_int_equal(code, 7);
    assert_int_equal(mp_process_close(p), 0);
    mp_process_free(p);
}

static void test_state_errors_match_python_assertions(void **state)
{
    (void)state;
    mp_process *p;
    double nap = 0.05;
    assert_int_equal(mp_process_new(&p, sleep_for, &nap), 0);
    /* Python: "can only join a started process", terminate on None popen,
     * ValueError "process not started" for sentinel. */
    TU_ASSERT_STATUS(mp_process_join(p, 0), MP_ESTATE);
    TU_ASSERT_STATUS(mp_process_terminate(p), MP_ESTATE);
    TU_ASSERT_STATUS(mp_process_kill(p), MP_ESTATE);
    TU_ASSERT_STATUS(mp_process_sentinel(p), MP_EVALUE);
    assert_int_equal(mp_process_set_daemon(p, true), 0);
    assert_true(mp_process_daemon(p));
    assert_int_equal(mp_process_set_daemon(p, false), 0);
    assert_int_equal(mp_process_start(p), 0);
    /* "cannot start a process twice", "process has already started". */
    TU_ASSERT_STATUS(mp_process_start(p), MP_ESTATE);
    TU_ASSERT_STATUS(mp_process_set_daemon(p, true), MP_ESTATE);
    assert_false(mp_process_daemon(p));
    assert_true(mp_process_sentinel(p) >= 0);
    assert_int_equal(mp_process_join(p, T_LONG), 0);
    TU_ASSERT_STATUS(mp_process_start(p), MP_ESTATE);
    assert_int_equal(mp_process_close(p), 0);
    mp_process_free(p);
    mp_process_free(NULL); /* accepted */
    assert_int_equal(mp_process_close(NULL), -EINVAL);
    assert_int_equal(mp_process_new(NULL, NULL, NULL), -EINVAL);
}

static void test_sentinel_becomes_ready_when_the_child_ends(void **state)
{
    (void)state;
    double nap = 0.2;
    mp_process *p;
    assert_int_equal(mp_process_new(&p, sleep_for, &nap), 0);
    assert_int_equal(mp_process_start(p), 0);
    mp_wait_item item = {.conn = NULL, .fd = mp_process_sentinel(p)};
    assert_int_equal(mp_wait(&item, 1, 0), 0);
    double t0 = tu_now();
    assert_int_equal(mp_wait(&item, 1, T_LONG), 1);
    assert_true(tu_now() - t0 >= 0.15);
    assert_int_equal(mp_process_join(p, T_LONG), 0);
    assert_int_equal(mp_process_close(p), 0);
    mp_process_free(p);
}

/* ---- names ------------------------------------------------------------------ */

struct name_report {
    int fd;
};

static int report_names(void *arg)
{
    struct name_report *r = arg;
    mp_process *grandchild;
    if (mp_process_new(&grandchild, NULL, NULL) != 0)
        return 1;
    char line[256];
    int n = snprintf(line, sizeof line, "%s|%s", mp_process_current_name(),
                     mp_process_name(grandchild));
    mp_process_free(grandchild);
    return write(r->fd, line, (size_t)n) == n ? 0 : 2;
}

static void test_names_follow_pythons_identity_scheme(void **state)
{
    (void)state;
    assert_string_equal(mp_process_current_name(), "MainProcess");
    mp_process *p, *q;
    assert_int_equal(mp_process_new(&p, NULL, NULL), 0);
    assert_int_equal(mp_process_new(&q, NULL, NULL), 0);
    /* Consecutive processes count up: Process-N, Process-N+1. */
    unsigned n1, n2;
    assert_int_equal(sscanf(mp_process_name(p), "Process-%u", &n1), 1);
    assert_int_equal(sscanf(mp_process_name(q), "Process-%u", &n2), 1);
    assert_int_equal(n2, n1 + 1);
    assert_int_equal(mp_process_set_name(q, "worker"), 0);
    assert_string_equal(mp_process_name(q), "worker");

    int fds[2];
    assert_int_equal(pipe(fds), 0);
    struct name_report r = {fds[1]};
    mp_process *child;
    assert_int_equal(mp_process_new(&child, report_names, &r), 0);
    char expected[128];
    snprintf(expected, sizeof expected, "%s|Process-%u:1", mp_process_name(child), n2 + 1);
    assert_int_equal(mp_process_start(child), 0);
    close(fds[1]);
    char got[256] = {0};
    assert_true(read(fds[0], got, sizeof got - 1) > 0);
    close(fds[0]);
    assert_string_equal(got, expected);
    assert_int_equal(mp_process_join(child, T_LONG), 0);
    int code;
    assert_int_equal(mp_process_exitcode(child, &code), 0);
    assert_int_equal(code, 0);
    mp_process_free(child);
    mp_process_free(p);
    mp_process_free(q);
}

/* ---- handles in the wrong process ------------------------------------------ */

struct sibling_args {
    mp_process *sibling;
};

static int poke_sibling(void *arg)
{
    struct sibling_args *s = arg;
    int code;
    /* Python: "can only join a child process", "can only test a child process". */
    if (mp_process_join(s->sibling, 0) != MP_ESTATE)
        return 1;
    if (mp_process_is_alive(s->sibling) != MP_ESTATE)
        return 2;
    if (mp_process_terminate(s->sibling) != MP_ESTATE)
        return 3;
    if (mp_process_exitcode(s->sibling, &code) != MP_ESTATE)
        return 4;
    if (mp_process_start(s->sibling) != MP_ESTATE)
        return 5;
    return 0;
}

static void test_only_the_parent_may_join_or_signal_a_child(void **state)
{
    (void)state;
    mp_process *sib, *p;
    assert_int_equal(mp_process_new(&sib, sleep_forever, NULL), 0);
    assert_int_equal(mp_process_start(sib), 0);
    struct sibling_args a = {sib};
    assert_int_equal(mp_process_new(&p, poke_sibling, &a), 0);
    assert_int_equal(mp_process_start(p), 0);
    assert_int_equal(mp_process_join(p, T_LONG), 0);
    int code;
    assert_int_equal(mp_process_exitcode(p, &code), 0);
    assert_int_equal(code, 0);
    assert_int_equal(mp_process_is_alive(sib), 1); /* nobody signalled it */
    assert_int_equal(mp_process_kill(sib), 0);
    assert_int_equal(mp_process_join(sib, T_LONG), 0);
    mp_process_free(p);
    mp_process_free(sib);
}

static int start_a_child(void *arg)
{
    (void)arg;
    mp_process *p;
    if (mp_process_new(&p, NULL, NULL) != 0)
        return 1;
    int rc = mp_process_start(p);
    mp_process_free(p);
    return rc == MP_ESTATE ? 0 : 2;
}

static void test_daemon_processes_may_not_start_children(void **state)
{
    (void)state;
    mp_process *p;
    assert_int_equal(mp_process_new(&p, start_a_child, NULL), 0);
    assert_int_equal(mp_process_set_daemon(p, true), 0);
    assert_int_equal(mp_process_start(p), 0);
    assert_int_equal(mp_process_join(p, T_LONG), 0);
    int code;
    assert_int_equal(mp_process_exitcode(p, &code), 0);
    assert_int_equal(code, 0);
    mp_process_free(p);
}

/* ---- the exit procedure ------------------------------------------------------ */

struct exit_scene {
    int report_fd; /* the middle process writes the daemon's pid here */
    int done_fd;   /* the non-daemon grandchild writes "done" here */
};

static int write_done_after_nap(void *arg)
{
    struct exit_scene *s = arg;
    tu_sleep(0.3);
    return write(s->done_fd, "done", 4) == 4 ? 0 : 1;
}

/* A "main program" that starts a daemon (sleeps forever) and a non-daemon
 * child (works 0.3 s), then returns from main with exit(0): Python's
 * _exit_function terminates the daemon and joins the other. */
static int main_program(void *arg)
{
    struct exit_scene *s = arg;
    mp_process *daemon, *worker;
    if (mp_process_new(&daemon, sleep_forever, NULL) || mp_process_set_daemon(daemon, true) ||
        mp_process_start(daemon))
        return 10;
    if (mp_process_new(&worker, write_done_after_nap, s) || mp_process_start(worker))
        return 11;
    pid_t dpid = mp_process_pid(daemon);
    if (write(s->report_fd, &dpid, sizeof dpid) != sizeof dpid)
        return 12;
    exit(0); /* runs atexit: the library's exit procedure */
}

static void test_exit_procedure_terminates_daemons_and_joins_other_children(void **state)
{
    (void)state;
    int report[2], done[2];
    assert_int_equal(pipe(report), 0);
    assert_int_equal(pipe(done), 0);
    struct exit_scene s = {report[1], done[1]};
    double t0 = tu_now();
    pid_t pid = tu_fork(main_program, &s);
    close(report[1]);
    close(done[1]);
    /* The "main program" only ends once its worker is done (0.3 s). */
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    assert_true(tu_now() - t0 >= 0.25);
    char buf[8] = {0};
    assert_int_equal(read(done[0], buf, sizeof buf), 4);
    assert_memory_equal(buf, "done", 4);
    pid_t dpid = 0;
    assert_int_equal(read(report[0], &dpid, sizeof dpid), (ssize_t)sizeof dpid);
    /* The daemon was terminated and reaped by its parent: gone. */
    assert_int_equal(kill(dpid, 0), -1);
    assert_int_equal(errno, ESRCH);
    close(report[0]);
    close(done[0]);
}

static int start_worker_and_return(void *arg)
{
    mp_process *worker;
    if (mp_process_new(&worker, write_done_after_nap, arg) || mp_process_start(worker))
        return 10;
    return 5; /* the handle is not joined explicitly: the exit procedure does it */
}

static void test_a_child_joins_its_own_children_before_it_exits(void **state)
{
    (void)state;
    int done[2];
    assert_int_equal(pipe(done), 0);
    struct exit_scene s = {-1, done[1]};
    mp_process *p;
    assert_int_equal(mp_process_new(&p, start_worker_and_return, &s), 0);
    double t0 = tu_now();
    assert_int_equal(mp_process_start(p), 0);
    close(done[1]);
    assert_int_equal(mp_process_join(p, T_LONG), 0);
    assert_true(tu_now() - t0 >= 0.25);
    int code;
    assert_int_equal(mp_process_exitcode(p, &code), 0);
    assert_int_equal(code, 5);
    char buf[8] = {0};
    assert_int_equal(read(done[0], buf, sizeof buf), 4);
    close(done[0]);
    mp_process_free(p);
}

/* ---- at-exit hooks (the queues' flush) -------------------------------------- */

static int hook_fd = -1;

static void hook_write(void *arg)
{
    const char *tag = arg;
    if (write(hook_fd, tag, strlen(tag)) < 0)
        _exit(90);
}

static int register_hooks_and_return(void *arg)
{
    (void)arg;
    mp__exit_hook_add(hook_write, "A", 0);
    mp__exit_hook_add(hook_write, "B", 5);
    int late = mp__exit_hook_add(hook_write, "L", -5);
    int gone = mp__exit_hook_add(hook_write, "X", 1);
    mp__exit_hook_remove(gone);
    return late > 0 ? 0 : 1;
}

static void test_exit_hooks_run_in_the_registering_process_only(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    hook_fd = fds[1];
    /* A hook of the parent's must not run when the child ends. */
    int parent_hook = mp__exit_hook_add(hook_write, "P", 0);
    assert_true(parent_hook > 0);
    mp_process *p;
    assert_int_equal(mp_process_new(&p, register_hooks_and_return, NULL), 0);
    assert_int_equal(mp_process_start(p), 0);
    close(fds[1]);
    assert_int_equal(mp_process_join(p, T_LONG), 0);
    char buf[16] = {0};
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    assert_true(n > 0);
    /* Newest first within a group; priority >= 0 before children are joined,
     * negative after; removed hooks do not run. */
    assert_string_equal(buf, "BAL");
    close(fds[0]);
    mp__exit_hook_remove(parent_hook);
    mp_process_free(p);
}

/* ---- stdio -------------------------------------------------------------------- */

static int print_without_newline(void *arg)
{
    int fd = *(int *)arg;
    dup2(fd, STDOUT_FILENO);
    printf("child says hi");
    return 0; /* the library flushes before _exit */
}

static void test_child_output_is_flushed_and_parent_buffers_not_repeated(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    /* An unflushed parent buffer on a stream the child inherits. */
    FILE *f = fdopen(dup(fds[1]), "w");
    assert_non_null(f);
    setvbuf(f, NULL, _IOFBF, 4096);
    fputs("parent|", f);
    int wfd = fds[1];
    mp_process *p;
    assert_int_equal(mp_process_new(&p, print_without_newline, &wfd), 0);
    assert_int_equal(mp_process_start(p), 0); /* flushes "parent|" first */
    assert_int_equal(mp_process_join(p, T_LONG), 0);
    fclose(f);
    close(fds[1]);
    char buf[128] = {0};
    size_t got = 0;
    ssize_t n;
    while ((n = read(fds[0], buf + got, sizeof buf - 1 - got)) > 0)
        got += (size_t)n;
    close(fds[0]);
    assert_string_equal(buf, "parent|child says hi");
    mp_process_free(p);
}

/* ---- many ------------------------------------------------------------------- */

static void test_many_processes_start_join_and_terminate(void **state)
{
    (void)state;
    enum { N = 50 };
    mp_process *ps[N];
    int codes[N];
    for (int i = 0; i < N; i++) {
        codes[i] = i;
        assert_int_equal(mp_process_new(&ps[i], return_arg, &codes[i]), 0);
        assert_int_equal(mp_process_start(ps[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        int code;
        assert_int_equal(mp_process_join(ps[i], T_LONG), 0);
        assert_int_equal(mp_process_exitcode(ps[i], &code), 0);
        assert_int_equal(code, i);
        assert_int_equal(mp_process_close(ps[i]), 0);
        mp_process_free(ps[i]);
    }
    /* Python's test_many_processes also terminates a batch. */
    for (int i = 0; i < N; i++) {
        assert_int_equal(mp_process_new(&ps[i], sleep_forever, NULL), 0);
        assert_int_equal(mp_process_start(ps[i]), 0);
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(mp_process_terminate(ps[i]), 0);
    for (int i = 0; i < N; i++) {
        int code;
        assert_int_equal(mp_process_join(ps[i], T_LONG), 0);
        assert_int_equal(mp_process_exitcode(ps[i], &code), 0);
        assert_int_equal(code, -SIGTERM);
        assert_int_equal(mp_process_close(ps[i]), 0);
        mp_process_free(ps[i]);
    }
}

/* Python's close(): ValueError while the child runs (nothing changes), and
 * ValueError "process object is closed" from every call that needs the
 * process afterwards; close itself may be repeated. */
static void test_close_refuses_a_running_child_then_closed_handle_refuses_use(void **state)
{
    (void)state;
    mp_process *p;
    int code;
    assert_int_equal(mp_process_new(&p, sleep_forever, NULL), 0);
    assert_int_equal(mp_process_start(p), 0);
    TU_ASSERT_STATUS(mp_process_close(p), MP_EVALUE);
    assert_int_equal(mp_process_is_alive(p), 1);
    assert_true(mp_process_sentinel(p) >= 0);
    assert_int_equal(mp_process_terminate(p), 0);
    assert_int_equal(mp_process_join(p, T_LONG), 0);
    pid_t pid = mp_process_pid(p);
    assert_int_equal(mp_process_close(p), 0);
    assert_int_equal(mp_process_close(p), 0);
    TU_ASSERT_STATUS(mp_process_join(p, 0), MP_EVALUE);
    TU_ASSERT_STATUS(mp_process_is_alive(p), MP_EVALUE);
    TU_ASSERT_STATUS(mp_process_exitcode(p, &code), MP_EVALUE);
    TU_ASSERT_STATUS(mp_process_sentinel(p), MP_EVALUE);
    TU_ASSERT_STATUS(mp_process_terminate(p), MP_EVALUE);
    TU_ASSERT_STATUS(mp_process_kill(p), MP_EVALUE);
    TU_ASSERT_STATUS(mp_process_start(p), MP_EVALUE);
    assert_int_equal(mp_process_pid(p), pid);
    assert_non_null(mp_process_name(p));
    mp_process_free(p);

    /* A process never started closes at once, and then cannot start. */
    assert_int_equal(mp_process_new(&p, NULL, NULL), 0);
    assert_int_equal(mp_process_close(p), 0);
    TU_ASSERT_STATUS(mp_process_start(p), MP_EVALUE);
    mp_process_free(p);
}

/* mp_process_free never fails: a running child is left running, detached,
 * and nobody reaps it behind the caller's back. */
static void test_free_leaves_a_running_child_running(void **state)
{
    (void)state;
    mp_process *p;
    assert_int_equal(mp_process_new(&p, sleep_forever, NULL), 0);
    assert_int_equal(mp_process_start(p), 0);
    pid_t pid = mp_process_pid(p);
    mp_process_free(p);
    tu_sleep(0.05);
    assert_int_equal(kill(pid, 0), 0);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, WNOHANG), 0); /* still running */
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

/* ---- helpers: active children, current and parent, CPUs --------------------- */

/* Python's active_children(): the live children only, and the ended ones
 * are reaped on the way (their exitcode is known without a join). */
static void test_active_children_lists_live_children_and_reaps_ended_ones(void **state)
{
    (void)state;
    TU_ASSERT_STATUS(mp_process_active_children(NULL, 0), 0);
    mp_process *a, *b, *c;
    int five = 5;
    assert_int_equal(mp_process_new(&a, sleep_forever, NULL), 0);
    assert_int_equal(mp_process_new(&b, return_arg, &five), 0);
    assert_int_equal(mp_process_new(&c, sleep_forever, NULL), 0);
    assert_int_equal(mp_process_start(a), 0);
    assert_int_equal(mp_process_start(b), 0);
    assert_int_equal(mp_process_start(c), 0);

    /* Wait (without join) until b has ended and active_children reaped it. */
    mp_process *kids[4] = {NULL};
    ssize_t n = -1;
    double deadline = tu_now() + T_LONG;
    while ((n = mp_process_active_children(kids, 4)) == 3 && tu_now() < deadline)
        tu_sleep(0.01);
    TU_ASSERT_STATUS(n, 2);
    /* Oldest first, the ended one gone. */
    assert_ptr_equal(kids[0], a);
    assert_ptr_equal(kids[1], c);
    int code = -1;
    assert_int_equal(mp_process_exitcode(b, &code), 0);
    assert_int_equal(code, 5);

    /* A short array gets the oldest; the count is still the whole. */
    mp_process *one[1] = {NULL};
    TU_ASSERT_STATUS(mp_process_active_children(one, 1), 2);
    assert_ptr_equal(one[0], a);
    TU_ASSERT_STATUS(mp_process_active_children(NULL, 0), 2);
    TU_ASSERT_STATUS(mp_process_active_children(NULL, 1), -EINVAL);

    assert_int_equal(mp_process_terminate(a), 0);
    assert_int_equal(mp_process_terminate(c), 0);
    deadline = tu_now() + T_LONG;
    while ((n = mp_process_active_children(NULL, 0)) > 0 && tu_now() < deadline)
        tu_sleep(0.01);
    TU_ASSERT_STATUS(n, 0);
    assert_int_equal(mp_process_exitcode(a, &code), 0);
    assert_int_equal(code, -SIGTERM);
    /* Reaped ones are still joinable (at once) and closable. */
    assert_int_equal(mp_process_join(a, 0), 0);
    assert_int_equal(mp_process_close(a), 0);
    assert_int_equal(mp_process_close(b), 0);
    assert_int_equal(mp_process_close(c), 0);
    mp_process_free(a);
    mp_process_free(b);
    mp_process_free(c);
}

/* A closed or freed handle is no longer this process's to track. */
static void test_active_children_skips_closed_and_freed_handles(void **state)
{
    (void)state;
    mp_process *a;
    assert_int_equal(mp_process_new(&a, sleep_forever, NULL), 0);
    assert_int_equal(mp_process_start(a), 0);
    TU_ASSERT_STATUS(mp_process_active_children(NULL, 0), 1);
    pid_t pid = mp_process_pid(a);
    mp_process_free(a); /* detached: left running */
    TU_ASSERT_STATUS(mp_process_active_children(NULL, 0), 0);
    assert_int_equal(kill(pid, SIGKILL), 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
}

/* What a child learns of itself and its parent, written to a pipe as
 * "pid|name|parent pid|parent name|child of mine's name|its report". */
struct family_args {
    int fd;
    int depth; /* 1: start one more generation below */
};

static int report_family(void *arg)
{
    struct family_args *f = arg;
    char below[256] = "-";
    if (f->depth > 0) {
        int fds[2];
        if (pipe(fds) != 0)
            return 10;
        struct family_args g = {fds[1], f->depth - 1};
        mp_process *gc;
        if (mp_process_new(&gc, report_family, &g) != 0 || mp_process_start(gc) != 0)
            return 11;
        close(fds[1]);
        ssize_t r = read(fds[0], below, sizeof below - 1);
        below[r > 0 ? r : 0] = '\0';
        close(fds[0]);
        if (mp_process_join(gc, 30.0) != 0)
            return 12;
        mp_process_free(gc);
    }
    mp_process *probe;
    if (mp_process_new(&probe, NULL, NULL) != 0)
        return 13;
    const char *pn = mp_process_parent_name();
    char line[512];
    int n = snprintf(line, sizeof line, "%d|%s|%d|%s|%s|%s", (int)mp_process_current_pid(),
                     mp_process_current_name(), (int)mp_process_parent_pid(), pn ? pn : "(null)",
                     mp_process_name(probe), below);
    mp_process_free(probe);
    return write(f->fd, line, (size_t)n) == n ? 0 : 14;
}

/* Python's current_process() and parent_process(), and names inherited
 * through three generations: a child renamed "boss" still names its own
 * children by its identity ("Process-N:1"), and they see "boss" as their
 * parent's name. */
static void test_current_and_parent_process_through_generations(void **state)
{
    (void)state;
    assert_int_equal(mp_process_current_pid(), getpid());
    assert_int_equal(mp_process_parent_pid(), 0); /* Python: None */
    assert_null(mp_process_parent_name());

    int fds[2];
    assert_int_equal(pipe(fds), 0);
    struct family_args f = {fds[1], 1};
    mp_process *child;
    assert_int_equal(mp_process_new(&child, report_family, &f), 0);
    unsigned n;
    assert_int_equal(sscanf(mp_process_name(child), "Process-%u", &n), 1);
    assert_int_equal(mp_process_set_name(child, "boss"), 0);
    assert_int_equal(mp_process_start(child), 0);
    close(fds[1]);
    char got[1024] = {0};
    size_t len = 0;
    ssize_t r;
    while ((r = read(fds[0], got + len, sizeof got - 1 - len)) > 0)
        len += (size_t)r;
    close(fds[0]);
    assert_int_equal(mp_process_join(child, T_LONG), 0);
    int code = -1;
    assert_int_equal(mp_process_exitcode(child, &code), 0);
    assert_int_equal(code, 0);

    /* The grandchild (started by "boss") reports first, inside boss's line. */
    int cpid, gpid;
    char expected[1024];
    assert_int_equal(sscanf(got, "%d|", &cpid), 1);
    assert_int_equal(cpid, mp_process_pid(child));
    char *inner = strchr(got, '|');
    for (int k = 0; k < 4 && inner; k++)
        inner = strchr(inner + 1, '|');
    assert_non_null(inner);
    inner++;
    assert_int_equal(sscanf(inner, "%d|", &gpid), 1);
    snprintf(expected, sizeof expected, "%d|boss|%d|MainProcess|Process-%u:2|", cpid, (int)getpid(),
             n);
    assert_memory_equal(got, expected, strlen(expected));
    assert_true(gpid > 0 && gpid != cpid);
    snprintf(expected, sizeof expected, "%d|Process-%u:1|%d|boss|Process-%u:1:1|-", gpid, n, cpid,
             n);
    assert_string_equal(inner, expected);
    mp_process_free(child);
}

/* Python's own answers, from the interpreter python, which inherits the
 * caller's affinity mask: os.cpu_count() and os.process_cpu_count() (3.13+),
 * or len(os.sched_getaffinity(0)) before 3.13. Returns 0, or -1 if Python
 * did not answer. */
static int python_cpu_counts(const char *python, long *cpu, long *usable)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    char arg[16];
    snprintf(arg, sizeof arg, "%d", fds[1]);
    const char *args[] = {arg, NULL};
    pid_t pid = tu_spawn_python_as(python,
                                   "import os, sys\n"
                                   "usable = (os.process_cpu_count()\n"
                                   "          if hasattr(os, 'process_cpu_count')\n"
                                   "          else len(os.sched_getaffinity(0)))\n"
                                   "os.write(int(sys.argv[1]),\n"
                                   "         ('%d %d' % (os.cpu_count(), usable)).encode())\n",
                                   args, &fds[1], 1);
    close(fds[1]);
    char buf[64] = {0};
    ssize_t r = read(fds[0], buf, sizeof buf - 1);
    close(fds[0]);
    if (tu_wait_child(pid, 60) != 0 || r <= 0)
        return -1;
    return sscanf(buf, "%ld %ld", cpu, usable) == 2 ? 0 : -1;
}

struct watch_args {
    int fd;   /* where the report goes */
    int sync; /* the watcher writes a byte here once its parent may go */
};

/* The grandchild of the test: sees its parent alive, lets it go, waits for
 * it to end (it leaves without joining), then sees it gone. Reports
 * "1 <MP_ETIMEDOUT> 0 0". */
static int watch_parent(void *arg)
{
    struct watch_args *w = arg;
    int before = mp_process_parent_is_alive();
    int timed = mp_process_parent_join(0.05);
    if (write(w->sync, "x", 1) != 1)
        return 2;
    int joined = mp_process_parent_join(30.0);
    int after = mp_process_parent_is_alive();
    char line[64];
    int n = snprintf(line, sizeof line, "%d %d %d %d", before, timed, joined, after);
    return write(w->fd, line, (size_t)n) == n ? 0 : 1;
}

/* Starts watch_parent, waits for its go, then leaves through _exit() (no
 * exit procedure, so it does not join its child first). */
static int start_watcher_and_leave(void *arg)
{
    int sync[2];
    if (pipe(sync) != 0)
        _exit(9);
    struct watch_args w = {*(int *)arg, sync[1]};
    mp_process *gc;
    if (mp_process_new(&gc, watch_parent, &w) != 0 || mp_process_start(gc) != 0)
        _exit(10);
    close(sync[1]);
    char b;
    _exit(read(sync[0], &b, 1) == 1 ? 0 : 11);
}

/* Python's parent_process().is_alive() and .join(): None in the main
 * process; in a grandchild, alive, then ended once its parent has gone. */
static void test_parent_is_alive_and_join_follow_the_parent(void **state)
{
    (void)state;
    TU_ASSERT_STATUS(mp_process_parent_is_alive(), -ESRCH);
    TU_ASSERT_STATUS(mp_process_parent_join(0), -ESRCH);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    mp_process *child;
    assert_int_equal(mp_process_new(&child, start_watcher_and_leave, &fds[1]), 0);
    assert_int_equal(mp_process_start(child), 0);
    close(fds[1]);
    char got[64] = {0};
    size_t len = 0;
    ssize_t r;
    while ((r = read(fds[0], got + len, sizeof got - 1 - len)) > 0)
        len += (size_t)r;
    close(fds[0]);
    assert_int_equal(mp_process_join(child, T_LONG), 0);
    int code = -1;
    assert_int_equal(mp_process_exitcode(child, &code), 0);
    assert_int_equal(code, 0);
    mp_process_free(child);
    char expected[64];
    snprintf(expected, sizeof expected, "1 %d 0 0", MP_ETIMEDOUT);
    assert_string_equal(got, expected);
}

static void test_cpu_count_is_online_cpus(void **state)
{
    (void)state;
    ssize_t n = mp_cpu_count();
    assert_true(n >= 1);
    assert_int_equal(n, sysconf(_SC_NPROCESSORS_ONLN));
    ssize_t k = mp_process_cpu_count();
    assert_true(k >= 1);
    cpu_set_t set;
    CPU_ZERO(&set);
    assert_int_equal(sched_getaffinity(0, sizeof set, &set), 0);
    assert_int_equal(k, CPU_COUNT(&set));
    const char *py;
    for (size_t pyi = 0; (py = tu_python_at(pyi)) != NULL; pyi++) {
        long py_cpu = 0, py_usable = 0;
        assert_int_equal(python_cpu_counts(py, &py_cpu, &py_usable), 0);
        assert_int_equal(n, py_cpu);
        assert_int_equal(k, py_usable);
    }
}

/* Bound to one CPU (as `taskset -c N` does), a process counts 1 usable CPU
 * while the system still has them all: Python 3.13's process_cpu_count()
 * against os.cpu_count(), and every interpreter under the same mask says
 * the same. Runs in a child so the test process keeps its mask. */
static int pin_and_count(void *arg)
{
    (void)arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 10;
    int first = -1;
    for (int i = 0; i < CPU_SETSIZE && first < 0; i++)
        if (CPU_ISSET(i, &set))
            first = i;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    if (sched_setaffinity(0, sizeof one, &one) != 0)
        return 11;
    if (mp_process_cpu_count() != 1)
        return 12;
    if (mp_cpu_count() != sysconf(_SC_NPROCESSORS_ONLN))
        return 13;
    /* Python, started with the same mask, agrees: each interpreter (3.13's
     * os.process_cpu_count() is what mp_process_cpu_count() follows). */
    const char *pys[TU_MAX_PYTHONS];
    size_t npys = tu_pythons(pys);
    for (size_t i = 0; i < npys; i++) {
        long py_cpu = 0, py_usable = 0;
        if (python_cpu_counts(pys[i], &py_cpu, &py_usable) != 0)
            return 14;
        if (py_usable != 1 || py_cpu != mp_cpu_count())
            return 15;
    }
    return 0;
}

static void test_process_cpu_count_follows_the_affinity_mask(void **state)
{
    (void)state;
    assert_int_equal(tu_wait_child(tu_fork(pin_and_count, NULL), T_LONG), 0);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_process_runs_target_and_reports_its_return_as_exitcode),
        TU_TEST(test_is_alive_while_running_and_join_timeout),
        TU_TEST(test_exitcode_is_minus_signal_when_killed),
        TU_TEST(test_state_errors_match_python_assertions),
        TU_TEST(test_sentinel_becomes_ready_when_the_child_ends),
        TU_TEST(test_names_follow_pythons_identity_scheme),
        TU_TEST(test_only_the_parent_may_join_or_signal_a_child),
        TU_TEST(test_daemon_processes_may_not_start_children),
        TU_TEST(test_exit_procedure_terminates_daemons_and_joins_other_children),
        TU_TEST(test_a_child_joins_its_own_children_before_it_exits),
        TU_TEST(test_exit_hooks_run_in_the_registering_process_only),
        TU_TEST(test_child_output_is_flushed_and_parent_buffers_not_repeated),
        TU_TEST(test_many_processes_start_join_and_terminate),
        TU_TEST(test_close_refuses_a_running_child_then_closed_handle_refuses_use),
        TU_TEST(test_free_leaves_a_running_child_running),
        TU_TEST(test_active_children_lists_live_children_and_reaps_ended_ones),
        TU_TEST(test_active_children_skips_closed_and_freed_handles),
        TU_TEST(test_current_and_parent_process_through_generations),
        TU_TEST(test_parent_is_alive_and_join_follow_the_parent),
        TU_TEST(test_cpu_count_is_online_cpus),
        TU_TEST(test_process_cpu_count_follows_the_affinity_mask),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
