/*
 * start_forkserver: why the forkserver method exists (Python 3.14's default
 * on Linux). A parent that already runs threads - a queue's feeder, its own
 * thread holding a mutex and busy in malloc - starts children through the
 * fork server safely, where a plain fork from that parent copies the mutex
 * held. Also: the server forks the children (they are not ours), many at
 * once, and starting it again does nothing.
 */
#include "testutil.h"

#include "core/io.h"

#include <mpipc/conn.h>
#include <mpipc/context.h>
#include <mpipc/obj.h>
#include <mpipc/process.h>
#include <mpipc/queue.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define T_LONG 20.0

/* Unlocked when the fork server started (main); a thread of the test holds
 * it while children start. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

struct holder {
    pthread_mutex_t ready_mu;
    pthread_cond_t ready_cv;
    bool ready;
    bool stop; /* __atomic: the test thread sets it */
};

/* Hold g_mu and churn the allocator until told to stop. */
static void *holder_main(void *arg)
{
    struct holder *h = arg;
    pthread_mutex_lock(&g_mu);
    pthread_mutex_lock(&h->ready_mu);
    h->ready = true;
    pthread_cond_signal(&h->ready_cv);
    pthread_mutex_unlock(&h->ready_mu);
    while (!__atomic_load_n(&h->stop, __ATOMIC_ACQUIRE)) {
        void *p[64];
        for (int i = 0; i < 64; i++)
            p[i] = malloc((size_t)(16 + i * 97));
        for (int i = 0; i < 64; i++)
            free(p[i]);
    }
    pthread_mutex_unlock(&g_mu);
    return NULL;
}

/* The child: take g_mu (as a library the child calls would take its own
 * lock) and allocate a lot. 0 when both work, 3 when g_mu stays held. */
static int grab_and_malloc(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 2;
    if (pthread_mutex_timedlock(&g_mu, &ts) != 0)
        return 3;
    size_t total = 0;
    for (int i = 0; i < 20000; i++) {
        char *p = malloc((size_t)(1 + i % 4096));
        if (!p)
            return 4;
        p[0] = (char)i;
        total += (size_t)p[0] & 1;
        free(p);
    }
    pthread_mutex_unlock(&g_mu);
    return total > 0 ? 0 : 5;
}

static int t_grab(const mp_obj *args)
{
    (void)args;
    return grab_and_malloc();
}
MP_TARGET(t_grab);

static int t_grab_fork(void *arg)
{
    (void)arg;
    return grab_and_malloc();
}

/* args (code): send getppid() on inherited conn 0, return code. */
static int t_ppid(const mp_obj *args)
{
    int code;
    if (mp_obj_parse(args, "(i)", &code) < 0)
        return 100;
    mp_conn *c;
    if (mp_process_inherited_conn(&c, 0) < 0)
        return 101;
    mp_obj *v = mp_obj_int(getppid());
    int rc = mp_conn_send(c, v);
    mp_obj_free(v);
    mp_conn_free(c);
    return rc < 0 ? 102 : code;
}
MP_TARGET(t_ppid);

static int t_sleep(const mp_obj *args)
{
    (void)args;
    for (;;)
        pause();
    return 0;
}
MP_TARGET(t_sleep);

static const mp_context *forkserver(void)
{
    const mp_context *ctx;
    assert_int_equal(mp_context_get(&ctx, "forkserver"), 0);
    return ctx;
}

static int run_to_end_started(mp_process *p)
{
    assert_int_equal(mp_process_join(p, T_LONG), 0);
    int code = -1;
    assert_int_equal(mp_process_exitcode(p, &code), 0);
    return code;
}

static int run_to_end(mp_process *p)
{
    assert_int_equal(mp_process_start(p), 0);
    assert_int_equal(mp_process_join(p, T_LONG), 0);
    int code = -1;
    assert_int_equal(mp_process_exitcode(p, &code), 0);
    return code;
}

/* Python 3.14 made forkserver the default for this: a fork from a process
 * with threads copies their locks held. With a feeder thread running and a
 * thread holding g_mu in a malloc loop, the forkserver child takes g_mu and
 * allocates freely; the plain fork child finds g_mu held. */
static void test_forkserver_child_of_threaded_parent_is_clean(void **state)
{
    (void)state;
    mp_queue *q;
    assert_int_equal(mp_queue_new(&q, 0), 0);
    assert_int_equal(mp_queue_put(q, "x", 1, T_LONG), 0); /* starts the feeder */
    struct holder h = {.ready_mu = PTHREAD_MUTEX_INITIALIZER, .ready_cv = PTHREAD_COND_INITIALIZER};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, holder_main, &h), 0);
    pthread_mutex_lock(&h.ready_mu);
    while (!h.ready)
        pthread_cond_wait(&h.ready_cv, &h.ready_mu);
    pthread_mutex_unlock(&h.ready_mu);

    for (int i = 0; i < 3; i++) {
        mp_process *p;
        assert_int_equal(mp_process_new_ctx(&p, forkserver(), "t_grab", NULL), 0);
        assert_int_equal(run_to_end(p), 0);
        mp_process_free(p);
    }
    /* Spawn is safe from here too: a new run of the program. */
    const mp_context *spawn;
    assert_int_equal(mp_context_get(&spawn, "spawn"), 0);
    mp_process *sp;
    assert_int_equal(mp_process_new_ctx(&sp, spawn, "t_grab", NULL), 0);
    assert_int_equal(run_to_end(sp), 0);
    mp_process_free(sp);
    /* The control: the same child forked from this threaded parent finds
     * g_mu held. (Not under a sanitizer, whose allocator may itself hang in
     * such a child, as pool_forkserver.c notes.) */
    if (!tu_sanitized()) {
        mp_process *f;
        assert_int_equal(mp_process_new(&f, t_grab_fork, NULL), 0);
        assert_int_equal(run_to_end(f), 3);
        mp_process_free(f);
    }

    __atomic_store_n(&h.stop, true, __ATOMIC_RELEASE);
    assert_int_equal(pthread_join(th, NULL), 0);
    void *data = NULL;
    size_t len = 0;
    assert_int_equal(mp_queue_get(q, &data, &len, T_LONG), 0);
    free(data);
    mp_queue_free(q);
}

/* The server forks the child (Python: its parent is the fork server), yet
 * this process joins it and gets its exit code. */
static void test_forkserver_child_is_the_servers_yet_joinable(void **state)
{
    (void)state;
    mp_conn *r, *w;
    assert_int_equal(mp_pipe(&r, &w, false), 0);
    mp_obj *args = mp_obj_build("(i)", 42);
    mp_process *p;
    assert_int_equal(mp_process_new_ctx(&p, forkserver(), "t_ppid", args), 0);
    assert_int_equal(mp_process_pass_conn(p, w), 0);
    assert_int_equal(mp_process_start(p), 0);
    mp_conn_free(w);
    mp_obj *ppid = NULL;
    assert_int_equal(mp_conn_recv(r, &ppid, T_LONG), 0);
    int64_t v = 0;
    assert_int_equal(mp_obj_get_int(ppid, &v), 0);
    assert_true(v != getpid() && v > 1);
    assert_int_equal(mp_process_join(p, T_LONG), 0);
    int code = -1;
    assert_int_equal(mp_process_exitcode(p, &code), 0);
    assert_int_equal(code, 42);
    mp_obj_free(ppid);
    mp_obj_free(args);
    mp_process_free(p);
    mp_conn_free(r);
}

/* Eight children at once, each with its own exit code. */
static void test_forkserver_many_children_report_their_own_codes(void **state)
{
    (void)state;
    enum { N = 8 };
    mp_process *ps[N];
    mp_conn *r[N];
    for (int i = 0; i < N; i++) {
        mp_conn *w;
        assert_int_equal(mp_pipe(&r[i], &w, false), 0);
        mp_obj *args = mp_obj_build("(i)", 10 + i);
        assert_int_equal(mp_process_new_ctx(&ps[i], forkserver(), "t_ppid", args), 0);
        assert_int_equal(mp_process_pass_conn(ps[i], w), 0);
        assert_int_equal(mp_process_start(ps[i]), 0);
        mp_conn_free(w);
        mp_obj_free(args);
    }
    for (int i = N; i-- > 0;) {
        assert_int_equal(mp_process_join(ps[i], T_LONG), 0);
        int code = -1;
        assert_int_equal(mp_process_exitcode(ps[i], &code), 0);
        assert_int_equal(code, 10 + i);
        mp_process_free(ps[i]);
        mp_conn_free(r[i]);
    }
}

/* Python's fork server is no Process: started first (main), it leaves the
 * program's first process its name "Process-1". */
static void test_forkserver_takes_no_process_number(void **state)
{
    (void)state;
    mp_process *p;
    assert_int_equal(mp_process_new_ctx(&p, forkserver(), "t_sleep", NULL), 0);
    assert_string_equal(mp_process_name(p), "Process-1");
    mp_process_free(p);
}

/* The pid of the fork server: the parent of a child it forks. */
static pid_t server_pid(void)
{
    mp_conn *r, *w;
    assert_int_equal(mp_pipe(&r, &w, false), 0);
    mp_obj *args = mp_obj_build("(i)", 0);
    mp_process *p;
    assert_int_equal(mp_process_new_ctx(&p, forkserver(), "t_ppid", args), 0);
    assert_int_equal(mp_process_pass_conn(p, w), 0);
    assert_int_equal(mp_process_start(p), 0);
    mp_conn_free(w);
    mp_obj *ppid = NULL;
    assert_int_equal(mp_conn_recv(r, &ppid, T_LONG), 0);
    int64_t v = 0;
    assert_int_equal(mp_obj_get_int(ppid, &v), 0);
    assert_int_equal(run_to_end_started(p), 0);
    mp_obj_free(ppid);
    mp_obj_free(args);
    mp_process_free(p);
    mp_conn_free(r);
    return (pid_t)v;
}

/* Python: a child whose fork server died reports exit code 255, and the
 * next start runs a new server (ensure_running). */
static void test_forkserver_that_died_is_replaced(void **state)
{
    (void)state;
    pid_t old = server_pid();
    mp_process *p;
    assert_int_equal(mp_process_new_ctx(&p, forkserver(), "t_sleep", NULL), 0);
    assert_int_equal(mp_process_start(p), 0);
    assert_int_equal(kill(old, SIGKILL), 0);
    /* The server's end of the child's socket closes with it. */
    mp_wait_item item = {.conn = NULL, .fd = mp_process_sentinel(p), .ready = 0};
    ssize_t ready = mp_wait(&item, 1, T_LONG);
    (void)kill(mp_process_pid(p), SIGKILL); /* an orphan now: ours to end */
    assert_int_equal(ready, 1);
    assert_int_equal(mp_process_join(p, T_LONG), 0);
    int code = 0;
    assert_int_equal(mp_process_exitcode(p, &code), 0);
    assert_int_equal(code, 255);
    mp_process_free(p);
    pid_t now = server_pid();
    assert_true(now != old && now > 1);
}

/* In a child forked from this process (which holds a fork server): start
 * a daemon t_sleep through a server of its own, send its pid, return. */
static int fork_child_with_daemon(void *arg)
{
    int fd = *(int *)arg;
    const mp_context *ctx;
    mp_process *p;
    if (mp_context_get(&ctx, "forkserver") < 0 || mp_process_new_ctx(&p, ctx, "t_sleep", NULL) < 0)
        return 1;
    (void)mp_process_set_daemon(p, true);
    if (mp_process_start(p) < 0)
        return 2;
    pid_t pid = mp_process_pid(p);
    if (write(fd, &pid, sizeof pid) != (ssize_t)sizeof pid)
        return 3;
    return 0; /* the exit procedure terminates the daemon and joins it */
}

/* A forked child does not use its parent's server (it starts its own), and
 * Python's exit procedure ends a daemon child with its parent. */
static void test_forkserver_in_forked_child_is_its_own_and_daemons_end(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    mp_process *child; /* an mp_process: its exit procedure runs */
    assert_int_equal(mp_process_new(&child, fork_child_with_daemon, &fds[1]), 0);
    assert_int_equal(run_to_end(child), 0);
    mp_process_free(child);
    close(fds[1]);
    pid_t daemon = 0;
    assert_int_equal(read(fds[0], &daemon, sizeof daemon), (ssize_t)sizeof daemon);
    close(fds[0]);
    assert_true(daemon > 1);
    assert_int_equal(kill(daemon, 0), -1); /* terminated and reaped */
    assert_int_equal(errno, ESRCH);
}

/* A child that starts a forkserver t_sleep, sends its pid and leaves by
 * _exit (tu_fork), without the exit procedure. */
static int fork_child_then_vanish(void *arg)
{
    int fd = *(int *)arg;
    const mp_context *ctx;
    mp_process *p;
    if (mp_context_get(&ctx, "forkserver") < 0 ||
        mp_process_new_ctx(&p, ctx, "t_sleep", NULL) < 0 || mp_process_start(p) < 0)
        return 1;
    pid_t pid = mp_process_pid(p);
    return write(fd, &pid, sizeof pid) == (ssize_t)sizeof pid ? 0 : 2;
}

/* The process id of pid's parent and pid's state letter, from /proc. */
static pid_t proc_parent(pid_t pid, char *st)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    int ppid = -1;
    if (!rp || sscanf(rp + 2, "%c %d", st, &ppid) != 2)
        return -1;
    return (pid_t)ppid;
}

/* A parent gone without its exit procedure: its fork server ends at once
 * and leaves the children running (Python's fork server exits when its
 * parent's end closes). */
static void test_forkserver_ends_when_its_parent_vanishes(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t child = tu_fork(fork_child_then_vanish, &fds[1]);
    close(fds[1]);
    int status = tu_wait_child(child, T_LONG);
    pid_t kid = 0;
    ssize_t got = read(fds[0], &kid, sizeof kid);
    close(fds[0]);
    if (got == (ssize_t)sizeof kid && kid > 1 && status != 0)
        (void)kill(kid, SIGKILL); /* never leave the orphan behind */
    assert_int_equal(status, 0);
    assert_int_equal(got, (ssize_t)sizeof kid);
    char st = 0;
    pid_t server = proc_parent(kid, &st);
    bool kid_alive = kill(kid, 0) == 0 && st != 'Z';
    /* The server ends within its poll interval (1 s); it may have ended
     * already, and the orphan's parent is then another process. */
    double until = tu_now() + T_LONG;
    char sst = 0;
    while (server > 1 && tu_now() < until && proc_parent(server, &sst) > 0 && sst != 'Z')
        tu_sleep(0.02);
    bool ended = server <= 1 || proc_parent(server, &sst) < 0 || sst == 'Z' ||
                 proc_parent(kid, &st) != server;
    (void)kill(kid, SIGKILL); /* the orphan runs on: end it before asserting */
    assert_true(kid_alive);
    assert_true(ended);
}

/* The server's guard against descriptors nobody announced: a message with
 * more than the receiver takes keeps what fits and closes the rest. */
static void test_recv_fds_closes_descriptors_beyond_what_fits(void **state)
{
    (void)state;
    int before = tu_count_fds();
    int sv[2], p[2];
    assert_int_equal(mp__socketpair(sv), 0);
    assert_int_equal(mp__pipe(p), 0);
    int out[3] = {p[0], p[1], p[0]};
    assert_int_equal(mp__send_fds(sv[0], "x", 1, out, 3), 0);
    mp__close(p[0]);
    mp__close(p[1]);
    char c;
    int got[1];
    size_t n = 9;
    bool ctrunc = false;
    assert_int_equal(mp__recv_fds(sv[1], &c, 1, got, 1, &n, &ctrunc, false, MP__NO_DEADLINE), 1);
    assert_int_equal(n, 1);
    assert_true(ctrunc); /* the kernel had two more, and closed them */
    assert_true(mp__fd_is_open(got[0]));
    mp__close(got[0]);
    mp__close(sv[0]);
    mp__close(sv[1]);
    assert_int_equal(tu_count_fds(), before); /* the other two were closed */
}

/* args (code): return code. */
static int t_code(const mp_obj *args)
{
    int code;
    return mp_obj_parse(args, "(i)", &code) < 0 ? 100 : code;
}
MP_TARGET(t_code);

struct starter {
    int base;
    int failures;
};

/* Start, join and check four forkserver children, one after another. */
static void *starter_main(void *arg)
{
    struct starter *st = arg;
    const mp_context *ctx;
    if (mp_context_get(&ctx, "forkserver") < 0) {
        st->failures = 100;
        return NULL;
    }
    for (int i = 0; i < 4; i++) {
        int want = st->base + i, code = -1;
        mp_obj *args = mp_obj_build("(i)", want);
        mp_process *p = NULL;
        if (!args || mp_process_new_ctx(&p, ctx, "t_code", args) < 0 || mp_process_start(p) < 0 ||
            mp_process_join(p, T_LONG) < 0 || mp_process_exitcode(p, &code) < 0 || code != want)
            st->failures++;
        mp_process_free(p);
        mp_obj_free(args);
    }
    return NULL;
}

/* Threads of one process start children through the one server at once;
 * each gets its own child's exit code. */
static void test_forkserver_serves_threads_at_once(void **state)
{
    (void)state;
    enum { T = 4 };
    pthread_t th[T];
    struct starter st[T];
    for (int i = 0; i < T; i++) {
        st[i] = (struct starter){.base = 10 * (i + 1), .failures = 0};
        assert_int_equal(pthread_create(&th[i], NULL, starter_main, &st[i]), 0);
    }
    for (int i = 0; i < T; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(st[i].failures, 0);
    }
}

/* Python's ensure_running: a second start does nothing (no descriptor,
 * no process). */
static void test_forkserver_start_again_does_nothing(void **state)
{
    (void)state;
    int before = tu_count_fds();
    assert_int_equal(mp_forkserver_start(), 0);
    assert_int_equal(mp_forkserver_start(), 0);
    assert_int_equal(tu_count_fds(), before);
}

int main(int argc, char **argv)
{
    mp_spawn_main(argc, argv);
    tu_filter(argc, argv);
    if (mp_forkserver_start() < 0) /* early: before any thread */
        return 1;
    const struct CMUnitTest tests[] = {
        TU_TEST(test_forkserver_takes_no_process_number), /* first: counts processes */
        TU_TEST(test_forkserver_child_of_threaded_parent_is_clean),
        TU_TEST(test_forkserver_child_is_the_servers_yet_joinable),
        TU_TEST(test_forkserver_many_children_report_their_own_codes),
        TU_TEST(test_forkserver_start_again_does_nothing),
        TU_TEST(test_forkserver_serves_threads_at_once),
        TU_TEST(test_forkserver_that_died_is_replaced),
        TU_TEST(test_forkserver_in_forked_child_is_its_own_and_daemons_end),
        TU_TEST(test_forkserver_ends_when_its_parent_vanishes),
        TU_TEST(test_recv_fds_closes_descriptors_beyond_what_fits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
