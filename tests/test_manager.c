/*
 * manager: a manager's life across real processes - start, connect, shutdown,
 * named and held objects, a killed or stopped server, bad arguments, servers
 * on TCP or in a thread, and a manager in another network namespace.
 *
 * Python's counterparts (Lib/test/_test_multiprocessing.py): _TestMyManager
 * (shutdown leaves exit code 0), _TestRemoteManager and _TestManagerRestart
 * (a TCP server, a client with the key, a wrong key refused, the address used
 * again). The other manager binaries, one per part of src/manager/:
 * test_manager_dict, _list, _lock, _queue (the object types), _concurrency,
 * _mailbox, _protocol, _limits, _handshake; their helpers are mgr_testutil.c.
 * Children never call cmocka asserts: they report through exit codes (each
 * failure point its own code) and the parent asserts.
 */
#include "mgr_testutil.h"

#include <mpipc/manager.h>
#include <mpipc/obj.h>
#include <mpipc/process.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mpipc/conn.h>
#include <mpipc/listener.h>

static const char *self_exe; /* this binary, for the namespace roles */

/* Wait until a condition on the server holds (it learns of a dead client a
 * moment after the client's exit). */
static bool eventually_objects(mp_manager *m, int64_t want)
{
    double end = tu_now() + MT_LONG;
    while (tu_now() < end) {
        if (mt_info_int(m, "objects") == want)
            return true;
        tu_sleep(0.005);
    }
    return false;
}

static bool eventually_gone(pid_t pid, double timeout)
{
    double end = tu_now() + timeout;
    while (tu_now() < end) {
        if (mt_pid_gone(pid))
            return true;
        tu_sleep(0.005);
    }
    return false;
}

/* ---- lifecycle ------------------------------------------------------------------ */

static void test_start_uses_a_private_socket_and_shutdown_cleans_it_up(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    const char *addr = mp_manager_address(m);
    assert_true(strncmp(addr, "unix:", 5) == 0);
    char path[512], dir[512];
    snprintf(path, sizeof path, "%s", addr + 5);
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = '\0';
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    size_t keylen = 0;
    assert_non_null(mp_manager_authkey(m, &keylen));
    assert_int_equal(keylen, 32);
    pid_t pid = mp_manager_pid(m);
    assert_true(pid > 0);
    assert_int_equal(mt_info_int(m, "pid"), pid);

    /* Python's _TestMyManager: shutdown leaves exit code 0. */
    TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
    TU_ASSERT_STATUS(mp_manager_shutdown(m), 0); /* again: fine */
    assert_int_equal(stat(path, &st), -1);
    assert_int_equal(stat(dir, &st), -1);
    assert_true(mt_pid_gone(pid));
    mp_obj *info;
    TU_ASSERT_STATUS(mp_manager_info(m, &info), MP_ECLOSED);
    mp_manager_free(m);
}

static void test_two_managers_are_independent_and_start_again(void **state)
{
    (void)state;
    /* _TestManagerRestart's spirit: managers come and go without residue. */
    for (int round = 0; round < 3; round++) {
        mp_manager *a = mt_start(), *b = mt_start();
        assert_string_not_equal(mp_manager_address(a), mp_manager_address(b));
        mp_dictproxy *da, *db;
        TU_ASSERT_STATUS(mp_manager_dict(a, NULL, &da), 0);
        TU_ASSERT_STATUS(mp_manager_dict(b, NULL, &db), 0);
        TU_ASSERT_STATUS(mp_dictproxy_set_int(da, "x", 1), 0);
        TU_ASSERT_STATUS(mp_dictproxy_set_int(db, "x", 2), 0);
        int64_t v;
        TU_ASSERT_STATUS(mp_dictproxy_get_int(da, "x", &v), 0);
        assert_int_equal(v, 1);
        TU_ASSERT_STATUS(mp_dictproxy_get_int(db, "x", &v), 0);
        assert_int_equal(v, 2);
        mp_dictproxy_free(da);
        mp_dictproxy_free(db);
        mp_manager_free(b);
        mp_manager_free(a);
    }
}

struct orphan_report {
    pid_t server;
    char address[512];
};

/* Start a manager, tell the parent where, then die (or exit normally). */
static int starter_child(void *arg)
{
    int *fds = arg; /* [0] write end, [1] how to leave: 0 SIGKILL, 1 exit() */
    mp_manager *m;
    if (mp_manager_start(&m, NULL) < 0)
        return 1;
    struct orphan_report r;
    memset(&r, 0, sizeof r);
    r.server = mp_manager_pid(m);
    snprintf(r.address, sizeof r.address, "%s", mp_manager_address(m));
    if (write(fds[0], &r, sizeof r) != (ssize_t)sizeof r)
        return 2;
    if (fds[1] == 0)
        kill(getpid(), SIGKILL);
    exit(0); /* the exit procedure's hook stops the server */
}

static void run_starter(int how, struct orphan_report *r, int *status)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    int args[2] = {p[1], how};
    pid_t pid = tu_fork(starter_child, args);
    close(p[1]);
    assert_int_equal(mt_read_full(p[0], r, sizeof *r, MT_LONG), 0);
    close(p[0]);
    *status = tu_wait_child(pid, MT_LONG);
}

static void test_server_exits_when_its_starter_is_killed(void **state)
{
    (void)state;
    struct orphan_report r;
    int status;
    run_starter(0, &r, &status);
    assert_int_equal(status, -SIGKILL);
    assert_true(eventually_gone(r.server, MT_LONG)); /* no orphan server */
    /* The socket went with the server: nobody is listening there. */
    double end = tu_now() + MT_LONG;
    int rc;
    do {
        mp_conn *c = NULL;
        rc = mp_client_connect(&c, r.address, "x", 1, 1.0);
        mp_conn_free(c);
        if (rc == -ENOENT || rc == -ECONNREFUSED)
            break;
        tu_sleep(0.01);
    } while (tu_now() < end);
    assert_true(rc == -ENOENT || rc == -ECONNREFUSED);
}

static void test_exit_hook_stops_the_server_when_the_starter_exits(void **state)
{
    (void)state;
    struct orphan_report r;
    int status;
    run_starter(1, &r, &status);
    assert_int_equal(status, 0);
    struct stat st;
    assert_int_equal(stat(r.address + 5, &st), -1); /* socket removed */
}

static void test_server_ignores_the_sigint_a_terminal_sends_the_process_group(void **state)
{
    (void)state;
    /* Python's manager ignores SIGINT (bpo-36368), so a Ctrl-C does not kill
     * the server under the program's cleanup code. */
    mp_manager *m = mt_start();
    mp_dictproxy *d;
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &d), 0);
    assert_int_equal(kill(mp_manager_pid(m), SIGINT), 0);
    tu_sleep(0.05);
    TU_ASSERT_STATUS(mp_dictproxy_set_int(d, "still", 1), 0);
    assert_false(mt_pid_gone(mp_manager_pid(m)));
    mp_dictproxy_free(d);
    mp_manager_free(m);
}

static int daemon_starts_manager(void *arg)
{
    (void)arg;
    mp_manager *m = NULL;
    int rc = mp_manager_start(&m, NULL);
    return rc == MP_ESTATE && m == NULL ? 0 : 10;
}

static void test_a_daemon_child_may_not_start_a_manager(void **state)
{
    (void)state;
    /* Python: "daemonic processes are not allowed to have children" */
    mp_process *p;
    assert_int_equal(mp_process_new(&p, daemon_starts_manager, NULL), 0);
    assert_int_equal(mp_process_set_daemon(p, true), 0);
    assert_int_equal(mp_process_start(p), 0);
    TU_ASSERT_STATUS(mp_process_join(p, MT_LONG), 0);
    int code = -1;
    assert_int_equal(mp_process_exitcode(p, &code), 0);
    assert_int_equal(code, 0);
    mp_process_free(p);
}

static void test_server_does_not_keep_its_parents_pipes_open(void **state)
{
    (void)state;
    /* A pipe made before the manager: once we close the write end, the
     * reader sees end of file - the server kept no copy of it (with
     * Python's fork start method, the manager process would). */
    int p[2];
    assert_int_equal(pipe(p), 0);
    mp_manager *m = mt_start();
    close(p[1]);
    char b;
    assert_int_equal(read(p[0], &b, 1), 0);
    close(p[0]);
    mp_manager_free(m);
}

/* ---- named objects and lifetimes ------------------------------------------------ */

static void test_named_objects_are_made_once_and_attached_by_name(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    mp_obj *init = mt_dict1("n", 1);
    mp_dictproxy *d1, *d2, *d3;
    TU_ASSERT_STATUS(mp_manager_dict_named(m, "results", init, &d1), 1); /* made */
    mp_obj_free(init);
    init = mt_dict1("n", 99);
    TU_ASSERT_STATUS(mp_manager_dict_named(m, "results", init, &d2), 0); /* existed */
    mp_obj_free(init);
    TU_ASSERT_STATUS(mp_manager_attach_dict(m, "results", &d3), 0);
    TU_ASSERT_STATUS(mp_dictproxy_add_int(d2, "n", 1, NULL), 0);
    int64_t v;
    TU_ASSERT_STATUS(mp_dictproxy_get_int(d3, "n", &v), 0);
    assert_int_equal(v, 2);

    mp_listproxy *l;
    mp_lockproxy *lk;
    mp_queueproxy *q;
    mp_dictproxy *d4;
    TU_ASSERT_STATUS(mp_manager_attach_dict(m, "missing", &d4), MP_ENOOBJ);
    assert_null(d4);
    TU_ASSERT_STATUS(mp_manager_attach_list(m, "results", &l), MP_ETYPE);
    TU_ASSERT_STATUS(mp_manager_list_named(m, "results", NULL, &l), MP_ETYPE);
    TU_ASSERT_STATUS(mp_manager_lock_named(m, "guard", true, &lk), 1);
    mp_lockproxy *lk2;
    TU_ASSERT_STATUS(mp_manager_attach_lock(m, "guard", &lk2), 0); /* finds the RLock */
    TU_ASSERT_STATUS(mp_lockproxy_acquire(lk, MT_LONG), 0);
    TU_ASSERT_STATUS(mp_lockproxy_acquire(lk2, MT_LONG), 0); /* same RLock, same thread */
    TU_ASSERT_STATUS(mp_lockproxy_release(lk2), 0);
    TU_ASSERT_STATUS(mp_lockproxy_release(lk), 0);
    mp_lockproxy *lk3;
    TU_ASSERT_STATUS(mp_manager_lock_named(m, "guard", false, &lk3), MP_ETYPE);
    assert_null(lk3);
    TU_ASSERT_STATUS(mp_manager_queue_named(m, "jobs", 0, &q), 1);
    mp_obj *info;
    TU_ASSERT_STATUS(mp_manager_info(m, &info), 0);
    mt_take_repr(mp_obj_copy(mp_obj_dict_get_cstr(info, "names")), "['results', 'guard', 'jobs']");
    mp_obj_free(info);

    /* a name keeps its object alive after every proxy is gone... */
    mp_dictproxy_free(d1);
    mp_dictproxy_free(d2);
    mp_dictproxy_free(d3);
    TU_ASSERT_STATUS(mp_manager_attach_dict(m, "results", &d1), 0);
    TU_ASSERT_STATUS(mp_dictproxy_get_int(d1, "n", &v), 0);
    assert_int_equal(v, 2);
    /* ...and unlink forgets the name; the object lives while held */
    int64_t before = mt_info_int(m, "objects");
    TU_ASSERT_STATUS(mp_manager_unlink(m, "results"), 0);
    TU_ASSERT_STATUS(mp_manager_unlink(m, "results"), MP_ENOOBJ);
    TU_ASSERT_STATUS(mp_manager_attach_dict(m, "results", &d2), MP_ENOOBJ);
    TU_ASSERT_STATUS(mp_dictproxy_get_int(d1, "n", &v), 0);
    mp_dictproxy_free(d1);
    assert_int_equal(mt_info_int(m, "objects"), before - 1);
    mp_lockproxy_free(lk);
    mp_lockproxy_free(lk2);
    mp_queueproxy_free(q);
    TU_ASSERT_STATUS(mp_manager_dict_named(m, "bad\xff", NULL, &d1), -EINVAL);
    mp_manager_free(m);
}

static int child_uses_inherited_proxy_later(void *arg)
{
    struct mt_shared *sh = arg;
    int64_t v;
    /* first use: registers this process as a holder */
    if (mp_dictproxy_get_int(sh->d, "x", &v) != 0 || v != 1)
        return 10;
    mt_say(sh->fd);
    tu_sleep(0.3); /* meanwhile the parent frees its proxy */
    if (mp_dictproxy_add_int(sh->d, "x", 1, &v) != 0 || v != 2)
        return 11;
    return 0;
}

static void test_anonymous_objects_live_while_some_process_holds_them(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    assert_int_equal(mt_info_int(m, "objects"), 0);
    struct mt_shared sh = {0};
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &sh.d), 0);
    TU_ASSERT_STATUS(mp_dictproxy_set_int(sh.d, "x", 1), 0);
    assert_int_equal(mt_info_int(m, "objects"), 1);
    int p[2];
    assert_int_equal(pipe(p), 0);
    sh.fd = p[1];
    pid_t pid = tu_fork(child_uses_inherited_proxy_later, &sh);
    assert_int_equal(mt_wait_byte(p[0], MT_LONG), 0);
    mp_dictproxy_free(sh.d); /* the child still holds it */
    assert_int_equal(mt_info_int(m, "objects"), 1);
    assert_int_equal(tu_wait_child(pid, MT_LONG), 0);
    /* the child's exit dropped the last hold */
    assert_true(eventually_objects(m, 0));
    close(p[0]);
    close(p[1]);

    /* a proxy that outlives its manager handle says so */
    mp_listproxy *l;
    TU_ASSERT_STATUS(mp_manager_list(m, NULL, &l), 0);
    mp_manager_free(m);
    TU_ASSERT_STATUS(mp_listproxy_append_int(l, 1), MP_ECLOSED);
    assert_int_equal(mp_listproxy_len(l), MP_ECLOSED);
    mp_listproxy_free(l);
}

/* ---- failures and bad arguments ------------------------------------------------- */

static int child_adds_until_the_server_dies(void *arg)
{
    struct mt_shared *sh = arg;
    int rc;
    bool said = false;
    double end = tu_now() + 30;
    do {
        rc = mp_dictproxy_add_int(sh->d, "n", 1, NULL);
        if (!said && rc == 0) {
            mt_say(sh->fd);
            said = true;
        }
    } while (rc == 0 && tu_now() < end);
    if (rc != MP_ENOSERVER)
        return 10;
    /* and again, promptly, without a server to connect to */
    double t0 = tu_now();
    rc = mp_dictproxy_add_int(sh->d, "n", 1, NULL);
    return rc == MP_ENOSERVER && tu_now() - t0 < 2.0 ? 0 : 11;
}

static int child_blocks_in_acquire(void *arg)
{
    struct mt_shared *sh = arg;
    mt_say(sh->fd);
    double t0 = tu_now();
    int rc = mp_lockproxy_acquire(sh->lock, 30.0);
    return rc == MP_ENOSERVER && tu_now() - t0 < 10.0 ? 0 : 20;
}

static int child_blocks_in_get(void *arg)
{
    struct mt_shared *sh = arg;
    mt_say(sh->fd);
    mp_obj *x;
    double t0 = tu_now();
    int rc = mp_queueproxy_get(sh->q, &x, MP_FOREVER); /* even "forever" ends */
    return rc == MP_ENOSERVER && tu_now() - t0 < 10.0 ? 0 : 30;
}

static void test_server_killed_mid_run_every_call_returns_enoserver(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    struct mt_shared sh = {0};
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &sh.d), 0);
    TU_ASSERT_STATUS(mp_manager_lock(m, &sh.lock), 0);
    TU_ASSERT_STATUS(mp_manager_queue(m, 0, &sh.q), 0);
    TU_ASSERT_STATUS(mp_lockproxy_acquire(sh.lock, MT_LONG), 0); /* so the child waits */
    int p[2];
    assert_int_equal(pipe(p), 0);
    sh.fd = p[1];
    pid_t kids[4];
    kids[0] = tu_fork(child_adds_until_the_server_dies, &sh);
    kids[1] = tu_fork(child_adds_until_the_server_dies, &sh);
    kids[2] = tu_fork(child_blocks_in_acquire, &sh);
    kids[3] = tu_fork(child_blocks_in_get, &sh);
    for (int i = 0; i < 4; i++)
        assert_int_equal(mt_wait_byte(p[0], MT_LONG), 0);
    tu_sleep(0.05);
    char dir[512];
    snprintf(dir, sizeof dir, "%s", mp_manager_address(m) + 5);
    *strrchr(dir, '/') = '\0';
    assert_int_equal(kill(mp_manager_pid(m), SIGKILL), 0);
    double t0 = tu_now();
    for (int i = 0; i < 4; i++)
        assert_int_equal(tu_wait_child(kids[i], 15.0), 0);
    assert_true(tu_now() - t0 < 10.0);
    /* the parent too */
    TU_ASSERT_STATUS(mp_dictproxy_set_int(sh.d, "x", 1), MP_ENOSERVER);
    TU_ASSERT_STATUS(mp_lockproxy_release(sh.lock), MP_ENOSERVER);
    close(p[0]);
    close(p[1]);
    mp_dictproxy_free(sh.d);
    mp_lockproxy_free(sh.lock);
    mp_queueproxy_free(sh.q);
    TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
    struct stat st;
    assert_int_equal(stat(dir, &st), -1); /* the killed server's socket dir is cleaned up */
    mp_manager_free(m);
}

static void test_a_stopped_server_makes_calls_time_out_not_hang(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    mp_dictproxy *d;
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &d), 0);
    TU_ASSERT_STATUS(mp_manager_set_timeout(m, 0.3), 0);
    assert_int_equal(kill(mp_manager_pid(m), SIGSTOP), 0);
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_dictproxy_set_int(d, "x", 1), MP_ETIMEDOUT);
    double dt = tu_now() - t0;
    assert_true(dt >= 0.29 && dt < 5.0);
    /* a blocking call: its own wait plus the call timeout */
    mp_queueproxy *q = NULL;
    assert_int_equal(kill(mp_manager_pid(m), SIGCONT), 0);
    TU_ASSERT_STATUS(mp_manager_queue(m, 0, &q), 0);
    assert_int_equal(kill(mp_manager_pid(m), SIGSTOP), 0);
    mp_obj *x;
    t0 = tu_now();
    TU_ASSERT_STATUS(mp_queueproxy_get(q, &x, 0.2), MP_ETIMEDOUT);
    dt = tu_now() - t0;
    assert_true(dt >= 0.49 && dt < 5.0);
    assert_int_equal(kill(mp_manager_pid(m), SIGCONT), 0);
    /* the server comes back; so do the calls */
    TU_ASSERT_STATUS(mp_manager_set_timeout(m, MT_LONG), 0);
    TU_ASSERT_STATUS(mp_dictproxy_set_int(d, "x", 2), 0);
    mp_queueproxy_free(q);
    mp_dictproxy_free(d);
    mp_manager_free(m);
}

static void test_invalid_arguments_are_einval(void **state)
{
    (void)state;
    mp_manager *m = NULL;
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    TU_ASSERT_STATUS(mp_manager_start(NULL, NULL), -EINVAL);
    o.authkey_len = 3;
    TU_ASSERT_STATUS(mp_manager_start(&m, &o), -EINVAL);
    assert_null(m);
    o = (mp_manager_opts)MP_MANAGER_OPTS_INIT;
    o.max_message = (size_t)2 << 30;
    TU_ASSERT_STATUS(mp_manager_start(&m, &o), -EINVAL);
    o = (mp_manager_opts)MP_MANAGER_OPTS_INIT;
    o.address = "not an address";
    TU_ASSERT_STATUS(mp_manager_start(&m, &o), -EINVAL);
    assert_null(m);
    TU_ASSERT_STATUS(mp_manager_connect(&m, "tcp:127.0.0.1:1", NULL, 0, NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_manager_serve(NULL, "k", 1, NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_manager_serve("tcp:127.0.0.1:0", NULL, 0, NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_manager_connect(&m, "unix:/nonexistent/sock", "k", 1, NULL), -ENOENT);
    TU_ASSERT_STATUS(mp_manager_shutdown(NULL), -EINVAL);
    mp_manager_free(NULL);
    mp_dictproxy_free(NULL);
    mp_listproxy_free(NULL);
    mp_lockproxy_free(NULL);
    mp_queueproxy_free(NULL);
    assert_null(mp_manager_address(NULL));
    m = mt_start();
    mp_dictproxy *d;
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, NULL), -EINVAL);
    mp_obj *notdict = mt_int(1);
    TU_ASSERT_STATUS(mp_manager_dict(m, notdict, &d), MP_ETYPE);
    mp_obj_free(notdict);
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &d), 0);
    TU_ASSERT_STATUS(mp_dictproxy_get(d, NULL, NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_dictproxy_set_int(d, NULL, 1), -EINVAL);
    TU_ASSERT_STATUS(mp_dictproxy_get_int(NULL, "x", NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_manager_set_timeout(NULL, 1.0), -EINVAL);
    mp_dictproxy_free(d);
    mp_manager_free(m);
}

/* ---- remote managers on TCP loopback, and a server in a thread ------------------ */

static int remote_putter(void *arg)
{
    /* _TestRemoteManager._putter: a separately connected client */
    const char *address = arg;
    mp_manager *m;
    if (mp_manager_connect(&m, address, "secret", 6, NULL) != 0)
        return 10;
    mp_queueproxy *q;
    if (mp_manager_queue_named(m, "get_queue", 0, &q) < 0)
        return 11;
    mp_obj *t = mp_obj_tuple_new();
    mp_obj_tuple_append(t, mt_str("hello world"));
    mp_obj_tuple_append(t, mp_obj_none());
    mp_obj_tuple_append(t, mp_obj_bool(true));
    mp_obj_tuple_append(t, mp_obj_float(2.25));
    mp_obj_tuple_append(t, mt_str("hall\xc3\xa5 v\xc3\xa4rlden"));
    mp_obj_tuple_append(t, mp_obj_bytes("hall\xe5 v\xe4rlden", 13));
    int rc = mp_queueproxy_put(q, t, MT_LONG);
    mp_obj_free(t);
    mp_queueproxy_free(q);
    mp_manager_free(m);
    return rc == 0 ? 0 : 12;
}

static void test_tcp_loopback_server_with_right_and_wrong_keys(void **state)
{
    (void)state;
    char address[256];
    pid_t server = mt_serve_in_child(address, sizeof address);
    assert_true(strncmp(address, "tcp:127.0.0.1:", 14) == 0);
    mp_manager *m = NULL;
    TU_ASSERT_STATUS(mp_manager_connect(&m, address, "wrong", 5, NULL), MP_EAUTH);
    assert_null(m);
    TU_ASSERT_STATUS(mp_manager_connect(&m, address, "secret", 6, NULL), 0);
    assert_int_equal(mp_manager_pid(m), 0);
    pid_t putter = tu_fork(remote_putter, address);
    mp_queueproxy *q;
    double end = tu_now() + MT_LONG;
    int rc;
    while ((rc = mp_manager_attach_queue(m, "get_queue", &q)) == MP_ENOOBJ && tu_now() < end)
        tu_sleep(0.01);
    TU_ASSERT_STATUS(rc, 0);
    mp_obj *item;
    TU_ASSERT_STATUS(mp_queueproxy_get(q, &item, MT_LONG), 0);
    mt_take_repr(item,
                 "('hello world', None, True, 2.25, 'hallå världen', b'hall\\xe5 v\\xe4rlden')");
    assert_int_equal(tu_wait_child(putter, MT_LONG), 0);
    mp_queueproxy_free(q);
    /* any authenticated client may stop a served manager */
    TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
    TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
    assert_int_equal(tu_wait_child(server, MT_LONG), 0);
    mp_manager_free(m);
}

static void test_started_manager_on_a_tcp_address(void **state)
{
    (void)state;
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    o.address = "tcp:127.0.0.1:0";
    o.authkey = "abracadabra";
    o.authkey_len = 11;
    mp_manager *m;
    TU_ASSERT_STATUS(mp_manager_start(&m, &o), 0);
    const char *addr = mp_manager_address(m);
    assert_true(strncmp(addr, "tcp:127.0.0.1:", 14) == 0 && strcmp(addr, "tcp:127.0.0.1:0") != 0);
    mp_manager *c;
    TU_ASSERT_STATUS(mp_manager_connect(&c, addr, "abracadabra", 11, NULL), 0);
    mp_dictproxy *d1, *d2;
    TU_ASSERT_STATUS(mp_manager_dict_named(m, "d", NULL, &d1), 1);
    TU_ASSERT_STATUS(mp_manager_attach_dict(c, "d", &d2), 0);
    TU_ASSERT_STATUS(mp_dictproxy_set_int(d2, "via", 1), 0);
    int64_t v;
    TU_ASSERT_STATUS(mp_dictproxy_get_int(d1, "via", &v), 0);
    assert_int_equal(v, 1);
    /* the same address again once it is free (_TestManagerRestart) */
    char again[256];
    snprintf(again, sizeof again, "%s", addr);
    mp_dictproxy_free(d2);
    mp_manager_free(c);
    mp_dictproxy_free(d1);
    mp_manager_free(m);
    o.address = again;
    TU_ASSERT_STATUS(mp_manager_start(&m, &o), 0);
    assert_string_equal(mp_manager_address(m), again);
    mp_manager_free(m);
}

struct inproc {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char address[256];
    int rc;
    mp_lockproxy *lock;
    mp_queueproxy *q;
    int waiter_rc;
};

static void inproc_ready(const char *address, void *arg)
{
    struct inproc *ip = arg;
    pthread_mutex_lock(&ip->mu);
    snprintf(ip->address, sizeof ip->address, "%s", address);
    pthread_cond_signal(&ip->cv);
    pthread_mutex_unlock(&ip->mu);
}

static void *inproc_server(void *arg)
{
    struct inproc *ip = arg;
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    o.ready = inproc_ready;
    o.ready_arg = ip;
    ip->rc = mp_manager_serve("tcp:127.0.0.1:0", "k", 1, &o);
    return NULL;
}

static void *inproc_waiter(void *arg)
{
    struct inproc *ip = arg;
    ip->waiter_rc = mp_lockproxy_acquire(ip->lock, 30.0);
    return NULL;
}

static void test_serve_in_a_thread_releases_everything_at_shutdown(void **state)
{
    (void)state;
    /* The server runs in this process, so valgrind checks that a shutdown
     * with objects, items, sessions and waiting requests frees it all. */
    struct inproc ip;
    memset(&ip, 0, sizeof ip);
    pthread_mutex_init(&ip.mu, NULL);
    pthread_cond_init(&ip.cv, NULL);
    ip.rc = -1;
    pthread_t st, wt;
    assert_int_equal(pthread_create(&st, NULL, inproc_server, &ip), 0);
    pthread_mutex_lock(&ip.mu);
    while (!ip.address[0])
        pthread_cond_wait(&ip.cv, &ip.mu);
    pthread_mutex_unlock(&ip.mu);
    mp_manager *m;
    TU_ASSERT_STATUS(mp_manager_connect(&m, ip.address, "k", 1, NULL), 0);
    mp_obj *init = mt_dict1("a", 1);
    mp_dictproxy *d;
    mp_listproxy *l;
    TU_ASSERT_STATUS(mp_manager_dict_named(m, "d", init, &d), 1);
    TU_ASSERT_STATUS(mp_manager_list(m, NULL, &l), 0);
    TU_ASSERT_STATUS(mp_manager_lock(m, &ip.lock), 0);
    TU_ASSERT_STATUS(mp_manager_queue(m, 1, &ip.q), 0);
    TU_ASSERT_STATUS(mp_listproxy_append(l, init), 0);
    TU_ASSERT_STATUS(mp_queueproxy_put(ip.q, init, MT_LONG), 0); /* left in the queue */
    TU_ASSERT_STATUS(mp_queueproxy_put(ip.q, init, 0.05), MP_FULL);
    TU_ASSERT_STATUS(mp_lockproxy_acquire(ip.lock, MT_LONG), 0);
    assert_int_equal(pthread_create(&wt, NULL, inproc_waiter, &ip), 0);
    assert_true(mt_eventually_waiting(m, 1)); /* parked in the server at the shutdown */
    TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
    pthread_join(st, NULL);
    TU_ASSERT_STATUS(ip.rc, 0);
    pthread_join(wt, NULL);
    TU_ASSERT_STATUS(ip.waiter_rc, MP_ENOSERVER);
    mp_obj_free(init);
    mp_dictproxy_free(d);
    mp_listproxy_free(l);
    mp_lockproxy_free(ip.lock);
    mp_queueproxy_free(ip.q);
    mp_manager_free(m);
    pthread_mutex_destroy(&ip.mu);
    pthread_cond_destroy(&ip.cv);
}

/* ---- two hosts: network namespaces ---------------------------------------------- */

struct netns {
    char a[32], b[32], va[16], vb[16];
    bool made_a, made_b;
};

static struct netns ns;

static int sh_quiet(const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[600];
    snprintf(full, sizeof full, "%s >/dev/null 2>&1", cmd);
    int st = system(full);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void netns_cleanup(void)
{
    /* Whatever still runs in them goes first, then the namespaces (which
     * takes the veth pair with them). */
    if (ns.made_a) {
        sh_quiet("for p in $(/usr/sbin/ip netns pids %s); do kill -9 $p; done", ns.a);
        sh_quiet("/usr/sbin/ip netns del %s", ns.a);
        ns.made_a = false;
    }
    if (ns.made_b) {
        sh_quiet("for p in $(/usr/sbin/ip netns pids %s); do kill -9 $p; done", ns.b);
        sh_quiet("/usr/sbin/ip netns del %s", ns.b);
        ns.made_b = false;
    }
    sh_quiet("/usr/sbin/ip link del %s", ns.va); /* if it never moved */
}

static int netns_setup(void **state)
{
    memset(&ns, 0, sizeof ns);
    int id = (int)getpid();
    snprintf(ns.a, sizeof ns.a, "mpipc-mgr-%d-a", id);
    snprintf(ns.b, sizeof ns.b, "mpipc-mgr-%d-b", id);
    snprintf(ns.va, sizeof ns.va, "mpa%d", id % 10000000);
    snprintf(ns.vb, sizeof ns.vb, "mpb%d", id % 10000000);
    return tu_fd_setup(state);
}

static int netns_teardown(void **state)
{
    netns_cleanup();
    return tu_fd_teardown(state);
}

/* Run this binary in a namespace, in a role (see netns_role). */
static pid_t spawn_in(const char *netns, const char *role, const char *a1, const char *a2)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(TU_CHILD_LIFETIME);
        execl("/usr/sbin/ip", "ip", "netns", "exec", netns, self_exe, "--netns-role", role, a1, a2,
              (char *)NULL);
        _exit(127);
    }
    assert_true(pid > 0);
    return pid;
}

#define NS_ADDR "tcp:10.213.7.1:50000"

#define NS_KEY "two hosts, one key"

#define NS_JOBS 200

static void test_two_hosts_manager_in_one_namespace_clients_in_another(void **state)
{
    (void)state;
    /* Two "hosts": network namespaces joined by a veth pair. */
    if (sh_quiet("/usr/sbin/ip netns add %s", ns.a) != 0)
        fail_msg("cannot create network namespace %s: this test needs root and ip(8)", ns.a);
    ns.made_a = true;
    if (sh_quiet("/usr/sbin/ip netns add %s", ns.b) != 0)
        fail_msg("cannot create network namespace %s", ns.b);
    ns.made_b = true;
    int rc = sh_quiet("/usr/sbin/ip link add %s type veth peer name %s", ns.va, ns.vb);
    rc |= sh_quiet("/usr/sbin/ip link set %s netns %s", ns.va, ns.a);
    rc |= sh_quiet("/usr/sbin/ip link set %s netns %s", ns.vb, ns.b);
    rc |= sh_quiet("/usr/sbin/ip -n %s addr add 10.213.7.1/24 dev %s", ns.a, ns.va);
    rc |= sh_quiet("/usr/sbin/ip -n %s addr add 10.213.7.2/24 dev %s", ns.b, ns.vb);
    rc |= sh_quiet("/usr/sbin/ip -n %s link set %s up", ns.a, ns.va);
    rc |= sh_quiet("/usr/sbin/ip -n %s link set %s up", ns.b, ns.vb);
    rc |= sh_quiet("/usr/sbin/ip -n %s link set lo up", ns.a);
    rc |= sh_quiet("/usr/sbin/ip -n %s link set lo up", ns.b);
    if (rc != 0)
        fail_msg("cannot wire the namespaces together with a veth pair");

    /* host A serves; host B produces, works, checks */
    pid_t server = spawn_in(ns.a, "serve", NS_ADDR, "-");
    pid_t producer = spawn_in(ns.b, "producer", NS_ADDR, "-");
    pid_t w1 = spawn_in(ns.b, "worker", NS_ADDR, "w1");
    pid_t w2 = spawn_in(ns.b, "worker", NS_ADDR, "w2");
    assert_int_equal(tu_wait_child(producer, 30.0), 0);
    assert_int_equal(tu_wait_child(w1, 30.0), 0);
    assert_int_equal(tu_wait_child(w2, 30.0), 0);
    pid_t checker = spawn_in(ns.b, "check", NS_ADDR, "-");
    assert_int_equal(tu_wait_child(checker, 30.0), 0);
    assert_int_equal(tu_wait_child(server, 30.0), 0);
    /* from this host (the root namespace) the server is unreachable */
    mp_manager *m = NULL;
    rc = mp_manager_connect(&m, NS_ADDR, NS_KEY, strlen(NS_KEY), NULL);
    assert_true(rc < 0);
    assert_null(m);
}

/* Connect, retrying while the server comes up. */
static int role_connect(const char *address, mp_manager **m)
{
    double end = tu_now() + 20;
    int rc;
    do {
        rc = mp_manager_connect(m, address, NS_KEY, strlen(NS_KEY), NULL);
        if (rc == 0 || rc == MP_EAUTH)
            return rc;
        tu_sleep(0.02);
    } while (tu_now() < end);
    return rc;
}

static int netns_role(int argc, char **argv)
{
    if (argc < 5)
        return 90;
    const char *role = argv[2], *address = argv[3], *name = argv[4];
    if (strcmp(role, "serve") == 0)
        return mp_manager_serve(address, NS_KEY, strlen(NS_KEY), NULL) == 0 ? 0 : 10;
    mp_manager *m;
    if (role_connect(address, &m) != 0)
        return 20;
    int code = 0;
    mp_queueproxy *q = NULL;
    mp_dictproxy *d = NULL;
    if (strcmp(role, "producer") == 0) {
        if (mp_manager_queue_named(m, "jobs", 0, &q) < 0 ||
            mp_manager_dict_named(m, "results", NULL, &d) < 0)
            code = 30;
        for (int i = 1; code == 0 && i <= NS_JOBS; i++) {
            mp_obj *x = mt_int(i);
            if (mp_queueproxy_put(q, x, MT_LONG) != 0)
                code = 31;
            mp_obj_free(x);
        }
        for (int i = 0; code == 0 && i < 2; i++) { /* one end-marker per worker */
            mp_obj *none = mp_obj_none();
            if (mp_queueproxy_put(q, none, MT_LONG) != 0)
                code = 32;
            mp_obj_free(none);
        }
    } else if (strcmp(role, "worker") == 0) {
        double end = tu_now() + 20;
        int rc;
        while ((rc = mp_manager_queue_named(m, "jobs", 0, &q)) < 0 && tu_now() < end)
            tu_sleep(0.01);
        if (rc < 0 || mp_manager_dict_named(m, "results", NULL, &d) < 0)
            code = 40;
        for (;;) {
            mp_obj *item = NULL;
            int64_t v;
            if (code || mp_queueproxy_get(q, &item, 20.0) != 0) {
                code = code ? code : 41;
                break;
            }
            bool stop = mp_obj_is_none(item);
            int ok = stop || mp_obj_get_int(item, &v) == 0;
            mp_obj_free(item);
            if (!ok) {
                code = 42;
                break;
            }
            if (stop)
                break;
            char key[64];
            snprintf(key, sizeof key, "done:%s", name);
            if (mp_dictproxy_add_int(d, "sum", v, NULL) != 0 ||
                mp_dictproxy_add_int(d, key, 1, NULL) != 0) {
                code = 43;
                break;
            }
        }
    } else if (strcmp(role, "check") == 0) {
        mp_manager *bad = NULL;
        if (mp_manager_connect(&bad, address, "wrong key", 9, NULL) != MP_EAUTH)
            code = 50;
        int64_t sum = 0, c1 = 0, c2 = 0;
        if (!code && mp_manager_attach_dict(m, "results", &d) != 0)
            code = 51;
        if (!code &&
            (mp_dictproxy_get_int(d, "sum", &sum) != 0 || sum != NS_JOBS * (NS_JOBS + 1) / 2))
            code = 52;
        /* a worker may have got no job at all (then it has no count) */
        int r1 = code ? 0 : mp_dictproxy_get_int(d, "done:w1", &c1);
        int r2 = code ? 0 : mp_dictproxy_get_int(d, "done:w2", &c2);
        if (!code &&
            ((r1 != 0 && r1 != MP_EKEY) || (r2 != 0 && r2 != MP_EKEY) || c1 + c2 != NS_JOBS))
            code = 53;
        mp_dictproxy_free(d);
        d = NULL;
        if (mp_manager_shutdown(m) != 0 && !code)
            code = 54;
    } else {
        code = 91;
    }
    mp_queueproxy_free(q);
    mp_dictproxy_free(d);
    mp_manager_free(m);
    return code;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--netns-role") == 0)
        return netns_role(argc, argv);
    static char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        self_exe = exe;
    } else {
        self_exe = argv[0];
    }
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_start_uses_a_private_socket_and_shutdown_cleans_it_up),
        TU_TEST(test_two_managers_are_independent_and_start_again),
        TU_TEST(test_server_exits_when_its_starter_is_killed),
        TU_TEST(test_exit_hook_stops_the_server_when_the_starter_exits),
        TU_TEST(test_server_does_not_keep_its_parents_pipes_open),
        TU_TEST(test_server_ignores_the_sigint_a_terminal_sends_the_process_group),
        TU_TEST(test_a_daemon_child_may_not_start_a_manager),
        TU_TEST(test_named_objects_are_made_once_and_attached_by_name),
        TU_TEST(test_anonymous_objects_live_while_some_process_holds_them),
        TU_TEST(test_server_killed_mid_run_every_call_returns_enoserver),
        TU_TEST(test_a_stopped_server_makes_calls_time_out_not_hang),
        TU_TEST(test_invalid_arguments_are_einval),
        TU_TEST(test_tcp_loopback_server_with_right_and_wrong_keys),
        TU_TEST(test_started_manager_on_a_tcp_address),
        TU_TEST(test_serve_in_a_thread_releases_everything_at_shutdown),
        cmocka_unit_test_setup_teardown(test_two_hosts_manager_in_one_namespace_clients_in_another,
                                        netns_setup, netns_teardown),
    };
    return cmocka_run_group_tests_name("manager", tests, NULL, NULL);
}
