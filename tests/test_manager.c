/*
 * manager: Python's multiprocessing managers (multiprocessing/managers.py)
 * for C, across real processes. The behaviours checked follow CPython's
 * Lib/test/_test_multiprocessing.py:
 *   _TestContainers.test_dict / test_list (every DictProxy and ListProxy
 *     method, the same values and the reprs Python prints);
 *   TestSyncManagerTypes (a child uses the parent's dict, list, lock, queue;
 *     its test_lock is the one place we differ on purpose: a lock whose
 *     holder exits is released, and the next acquirer gets MP_EOWNERDEAD);
 *   _TestLock.test_lock / test_rlock (acquire, non-blocking acquire,
 *     release of an unheld lock is an error, RLock re-entry);
 *   _TestQueue.test_put / test_get / test_qsize (Full and Empty at once and
 *     after a timeout, qsize 0 1 2 1 0, task_done / join);
 *   _TestRemoteManager / _TestManagerRestart (a server on TCP, a client that
 *     connects by address and key, a wrong key refused; a server started
 *     again on the same address);
 *   _TestMyManager (shutdown leaves the server process with exit code 0);
 * plus what the issue adds beyond Python: the seed program, atomic add and
 * compare-and-set, named objects, locks freed when their holder dies, a
 * killed server, a killed client, request size limits, malformed requests,
 * and a manager reached from another network namespace ("another host").
 *
 * Children never call cmocka asserts: they report through exit codes (each
 * failure point its own code) and the parent asserts.
 */
#include "testutil.h"

#include <mpipc/manager.h>
#include <mpipc/obj.h>
#include <mpipc/process.h>

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

#include <mpipc/conn.h>
#include <mpipc/listener.h>

#include "codec/handshake.h"

#define T_LONG 10.0 /* a bound for things that take milliseconds */

static const char *self_exe; /* this binary, for the namespace roles */

/* ---- helpers ------------------------------------------------------------------ */

static mp_obj *S(const char *s)
{
    return mp_obj_str_cstr(s);
}

static mp_obj *I(int64_t v)
{
    return mp_obj_int(v);
}

/* {k: v} */
static mp_obj *dict1(const char *k, int64_t v)
{
    mp_obj *d = mp_obj_dict_new();
    assert_int_equal(mp_obj_dict_set(d, S(k), I(v)), 0);
    return d;
}

static void assert_repr(const mp_obj *o, const char *want)
{
    char *r = NULL;
    assert_int_equal(mp_obj_repr(o, &r), 0);
    if (strcmp(r, want) != 0) {
        print_error("repr %s, expected %s\n", r, want);
        free(r);
        fail();
    }
    free(r);
}

/* Assert, then free, a value's repr. */
static void take_repr(mp_obj *o, const char *want)
{
    assert_non_null(o);
    assert_repr(o, want);
    mp_obj_free(o);
}

static mp_manager *start(void)
{
    mp_manager *m = NULL;
    TU_ASSERT_STATUS(mp_manager_start(&m, NULL), 0);
    assert_non_null(m);
    return m;
}

static int64_t info_int(mp_manager *m, const char *key)
{
    mp_obj *info;
    TU_ASSERT_STATUS(mp_manager_info(m, &info), 0);
    int64_t v = -1;
    assert_int_equal(mp_obj_get_int(mp_obj_dict_get_cstr(info, key), &v), 0);
    mp_obj_free(info);
    return v;
}

/* Wait until a condition on the server holds (it learns of a dead client a
 * moment after the client's exit). */
static bool eventually_objects(mp_manager *m, int64_t want)
{
    double end = tu_now() + T_LONG;
    while (tu_now() < end) {
        if (info_int(m, "objects") == want)
            return true;
        tu_sleep(0.005);
    }
    return false;
}

/* Running under valgrind (its preload library is in the environment)? */
static bool under_valgrind(void)
{
    const char *p = getenv("LD_PRELOAD");
    return p && strstr(p, "vgpreload");
}

/* Built with a sanitizer, whose allocator keeps freed memory its own way? */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

/* Wait until the server has n requests parked (info 'waiting'). */
static bool eventually_waiting(mp_manager *m, int64_t n)
{
    double end = tu_now() + T_LONG;
    while (tu_now() < end) {
        if (info_int(m, "waiting") == n)
            return true;
        tu_sleep(0.002);
    }
    return false;
}

/* A byte through a pipe, with a deadline: how children say "I got here". */
static int wait_byte(int fd, double timeout)
{
    mp_conn *c;
    int dup_fd = dup(fd);
    if (dup_fd < 0 || mp_conn_from_fd(&c, dup_fd, true, false) < 0)
        return -1;
    int rc = mp_conn_poll(c, timeout);
    char b;
    if (rc == 1)
        rc = read(fd, &b, 1) == 1 ? 0 : -1;
    else
        rc = -1;
    mp_conn_free(c);
    return rc;
}

static void say(int fd)
{
    char b = 1;
    if (write(fd, &b, 1) != 1)
        _exit(99);
}

/* Read exactly n bytes, each wait bounded. 0, or -1 on end of file,
 * error or timeout. */
static int read_full(int fd, void *buf, size_t n, double timeout)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
        if (poll(&p, 1, (int)(timeout * 1000)) != 1)
            return -1;
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

/* Is a process gone (exited and reaped, or a zombie nobody reaps)? */
static bool pid_gone(pid_t pid)
{
    if (kill(pid, 0) < 0 && errno == ESRCH)
        return true;
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return true;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *close_paren = strrchr(buf, ')');
    return close_paren && close_paren[1] == ' ' && close_paren[2] == 'Z';
}

static bool eventually_gone(pid_t pid, double timeout)
{
    double end = tu_now() + timeout;
    while (tu_now() < end) {
        if (pid_gone(pid))
            return true;
        tu_sleep(0.005);
    }
    return false;
}

static int env_int(const char *name, int dflt)
{
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}

/* ---- lifecycle ------------------------------------------------------------------ */

static void test_start_uses_a_private_socket_and_shutdown_cleans_it_up(void **state)
{
    (void)state;
    mp_manager *m = start();
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
    assert_int_equal(info_int(m, "pid"), pid);

    /* Python's _TestMyManager: shutdown leaves exit code 0. */
    TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
    TU_ASSERT_STATUS(mp_manager_shutdown(m), 0); /* again: fine */
    assert_int_equal(stat(path, &st), -1);
    assert_int_equal(stat(dir, &st), -1);
    assert_true(pid_gone(pid));
    mp_obj *info;
    TU_ASSERT_STATUS(mp_manager_info(m, &info), MP_ECLOSED);
    mp_manager_free(m);
}

static void test_two_managers_are_independent_and_start_again(void **state)
{
    (void)state;
    /* _TestManagerRestart's spirit: managers come and go without residue. */
    for (int round = 0; round < 3; round++) {
        mp_manager *a = start(), *b = start();
        assert_string_not_equal(mp_manager_address(a), mp_manager_address(b));
        mp_dict *da, *db;
        TU_ASSERT_STATUS(mp_manager_dict(a, NULL, &da), 0);
        TU_ASSERT_STATUS(mp_manager_dict(b, NULL, &db), 0);
        TU_ASSERT_STATUS(mp_dict_set_int(da, "x", 1), 0);
        TU_ASSERT_STATUS(mp_dict_set_int(db, "x", 2), 0);
        int64_t v;
        TU_ASSERT_STATUS(mp_dict_get_int(da, "x", &v), 0);
        assert_int_equal(v, 1);
        TU_ASSERT_STATUS(mp_dict_get_int(db, "x", &v), 0);
        assert_int_equal(v, 2);
        mp_dict_free(da);
        mp_dict_free(db);
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
    assert_int_equal(read_full(p[0], r, sizeof *r, T_LONG), 0);
    close(p[0]);
    *status = tu_wait_child(pid, T_LONG);
}

static void test_server_exits_when_its_starter_is_killed(void **state)
{
    (void)state;
    struct orphan_report r;
    int status;
    run_starter(0, &r, &status);
    assert_int_equal(status, -SIGKILL);
    assert_true(eventually_gone(r.server, T_LONG)); /* no orphan server */
    /* The socket went with the server: nobody is listening there. */
    double end = tu_now() + T_LONG;
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
    mp_manager *m = start();
    mp_dict *d;
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &d), 0);
    assert_int_equal(kill(mp_manager_pid(m), SIGINT), 0);
    tu_sleep(0.05);
    TU_ASSERT_STATUS(mp_dict_set_int(d, "still", 1), 0);
    assert_false(pid_gone(mp_manager_pid(m)));
    mp_dict_free(d);
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
    TU_ASSERT_STATUS(mp_process_join(p, T_LONG), 0);
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
    mp_manager *m = start();
    close(p[1]);
    char b;
    assert_int_equal(read(p[0], &b, 1), 0);
    close(p[0]);
    mp_manager_free(m);
}

/* ---- dict ------------------------------------------------------------------------ */

static void test_dict_methods_match_python(void **state)
{
    (void)state;
    mp_manager *m = start();
    mp_dict *d;
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &d), 0);

    /* _TestContainers.test_dict: d[i] = chr(i) for i in 65..69 */
    for (int i = 65; i < 70; i++) {
        char s[2] = {(char)i, 0};
        mp_obj *k = I(i), *v = S(s);
        TU_ASSERT_STATUS(mp_dict_set(d, k, v), 0);
        mp_obj_free(k);
        mp_obj_free(v);
    }
    mp_obj *o;
    TU_ASSERT_STATUS(mp_dict_copy(d, &o), 0);
    take_repr(o, "{65: 'A', 66: 'B', 67: 'C', 68: 'D', 69: 'E'}");
    TU_ASSERT_STATUS(mp_dict_keys(d, &o), 0);
    take_repr(o, "[65, 66, 67, 68, 69]");
    TU_ASSERT_STATUS(mp_dict_values(d, &o), 0);
    take_repr(o, "['A', 'B', 'C', 'D', 'E']");
    TU_ASSERT_STATUS(mp_dict_items(d, &o), 0);
    take_repr(o, "[(65, 'A'), (66, 'B'), (67, 'C'), (68, 'D'), (69, 'E')]");
    assert_int_equal(mp_dict_len(d), 5);

    /* get / KeyError, contains, del */
    mp_obj *k = I(66);
    TU_ASSERT_STATUS(mp_dict_get(d, k, &o), 0);
    take_repr(o, "'B'");
    assert_int_equal(mp_dict_contains(d, k), 1);
    TU_ASSERT_STATUS(mp_dict_del(d, k), 0);
    assert_int_equal(mp_dict_contains(d, k), 0);
    TU_ASSERT_STATUS(mp_dict_get(d, k, &o), MP_EKEY);
    assert_null(o);
    TU_ASSERT_STATUS(mp_dict_del(d, k), MP_EKEY);
    TU_ASSERT_STATUS(mp_dict_pop(d, k, &o), MP_EKEY);

    /* pop, setdefault (present and absent) */
    mp_obj_free(k);
    k = I(65);
    TU_ASSERT_STATUS(mp_dict_pop(d, k, &o), 0);
    take_repr(o, "'A'");
    mp_obj *dflt = S("z");
    TU_ASSERT_STATUS(mp_dict_setdefault(d, k, dflt, &o), 0);
    take_repr(o, "'z'");
    mp_obj *other = S("y");
    TU_ASSERT_STATUS(mp_dict_setdefault(d, k, other, &o), 0);
    take_repr(o, "'z'");
    mp_obj_free(other);
    mp_obj_free(dflt);
    mp_obj_free(k);
    TU_ASSERT_STATUS(mp_dict_copy(d, &o), 0);
    take_repr(o, "{67: 'C', 68: 'D', 69: 'E', 65: 'z'}");

    /* popitem is LIFO; KeyError when empty */
    mp_obj *pk, *pv;
    TU_ASSERT_STATUS(mp_dict_popitem(d, &pk, &pv), 0);
    take_repr(pk, "65");
    take_repr(pv, "'z'");
    TU_ASSERT_STATUS(mp_dict_popitem(d, NULL, NULL), 0);
    TU_ASSERT_STATUS(mp_dict_clear(d), 0);
    assert_int_equal(mp_dict_len(d), 0);
    TU_ASSERT_STATUS(mp_dict_popitem(d, &pk, &pv), MP_EKEY);
    assert_null(pk);

    /* update from a dict and from pairs; bad input changes nothing */
    mp_obj *u = dict1("a", 1);
    assert_int_equal(mp_obj_dict_set(u, S("b"), I(2)), 0);
    TU_ASSERT_STATUS(mp_dict_update(d, u), 0);
    mp_obj_free(u);
    u = mp_obj_list_new();
    mp_obj *pair = mp_obj_tuple_new();
    mp_obj_tuple_append(pair, S("c"));
    mp_obj_tuple_append(pair, I(3));
    mp_obj_list_append(u, pair);
    pair = mp_obj_list_new();
    mp_obj_list_append(pair, S("a"));
    mp_obj_list_append(pair, I(10));
    mp_obj_list_append(u, pair);
    TU_ASSERT_STATUS(mp_dict_update(d, u), 0);
    mp_obj_list_append(u, I(5)); /* not a pair */
    TU_ASSERT_STATUS(mp_dict_update(d, u), MP_EVALUE);
    mp_obj_free(u);
    u = I(1);
    TU_ASSERT_STATUS(mp_dict_update(d, u), MP_ETYPE);
    mp_obj_free(u);
    TU_ASSERT_STATUS(mp_dict_copy(d, &o), 0);
    take_repr(o, "{'a': 10, 'b': 2, 'c': 3}");

    mp_dict_free(d);
    mp_manager_free(m);
}

static void test_dict_keys_have_python_semantics(void **state)
{
    (void)state;
    mp_manager *m = start();
    mp_dict *d;
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &d), 0);
    /* 1, 1.0 and True are one key; the first key stays */
    mp_obj *k1 = I(1), *kf = mp_obj_float(1.0), *kt = mp_obj_bool(true);
    mp_obj *a = S("a"), *b = S("b"), *c = S("c");
    TU_ASSERT_STATUS(mp_dict_set(d, k1, a), 0);
    TU_ASSERT_STATUS(mp_dict_set(d, kf, b), 0);
    TU_ASSERT_STATUS(mp_dict_set(d, kt, c), 0);
    mp_obj *o;
    TU_ASSERT_STATUS(mp_dict_copy(d, &o), 0);
    take_repr(o, "{1: 'c'}");
    /* an unhashable key is TypeError */
    mp_obj *lst = mp_obj_list_new();
    TU_ASSERT_STATUS(mp_dict_set(d, lst, a), MP_ETYPE);
    TU_ASSERT_STATUS(mp_dict_get(d, lst, &o), MP_ETYPE);
    TU_ASSERT_STATUS(mp_dict_contains(d, lst), MP_ETYPE);
    /* tuple keys, nested values */
    mp_obj *tk = mp_obj_tuple_new();
    mp_obj_tuple_append(tk, I(1));
    mp_obj_tuple_append(tk, S("x"));
    mp_obj *nested = dict1("deep", 7);
    TU_ASSERT_STATUS(mp_dict_set(d, tk, nested), 0);
    TU_ASSERT_STATUS(mp_dict_get(d, tk, &o), 0);
    take_repr(o, "{'deep': 7}");
    mp_obj_free(nested);
    mp_obj_free(tk);
    mp_obj_free(lst);
    mp_obj_free(k1);
    mp_obj_free(kf);
    mp_obj_free(kt);
    mp_obj_free(a);
    mp_obj_free(b);
    mp_obj_free(c);
    mp_dict_free(d);
    mp_manager_free(m);
}

static void test_dict_convenience_forms(void **state)
{
    (void)state;
    mp_manager *m = start();
    mp_dict *d;
    mp_obj *init = dict1("count", 100);
    TU_ASSERT_STATUS(mp_manager_dict(m, init, &d), 0);
    mp_obj_free(init);
    int64_t v = 0;
    TU_ASSERT_STATUS(mp_dict_get_int(d, "count", &v), 0);
    assert_int_equal(v, 100);
    TU_ASSERT_STATUS(mp_dict_set_int(d, "neg", INT64_MIN), 0);
    TU_ASSERT_STATUS(mp_dict_get_int(d, "neg", &v), 0);
    assert_true(v == INT64_MIN);
    TU_ASSERT_STATUS(mp_dict_set_str(d, "name", "妹妹\n"), 0);
    char *s = NULL;
    size_t len = 0;
    TU_ASSERT_STATUS(mp_dict_get_str(d, "name", &s, &len), 0);
    assert_string_equal(s, "妹妹\n");
    assert_int_equal(len, strlen("妹妹\n"));
    free(s);
    TU_ASSERT_STATUS(mp_dict_set_bytes(d, "blob", "\0\xff\0", 3), 0);
    void *p = NULL;
    TU_ASSERT_STATUS(mp_dict_get_bytes(d, "blob", &p, &len), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(p, "\0\xff\0", 3);
    free(p);
    TU_ASSERT_STATUS(mp_dict_set_bytes(d, "empty", NULL, 0), 0);
    TU_ASSERT_STATUS(mp_dict_get_bytes(d, "empty", &p, &len), 0);
    assert_int_equal(len, 0);
    free(p);
    /* wrong types, missing keys, bad UTF-8 */
    TU_ASSERT_STATUS(mp_dict_get_int(d, "name", &v), MP_ETYPE);
    TU_ASSERT_STATUS(mp_dict_get_str(d, "count", &s, NULL), MP_ETYPE);
    assert_null(s);
    TU_ASSERT_STATUS(mp_dict_get_bytes(d, "name", &p, NULL), MP_ETYPE);
    TU_ASSERT_STATUS(mp_dict_get_int(d, "nope", &v), MP_EKEY);
    TU_ASSERT_STATUS(mp_dict_get_int(d, "\xff", &v), -EINVAL);
    TU_ASSERT_STATUS(mp_dict_set_str(d, "ok", "\xc3"), -EINVAL);
    assert_int_equal(mp_dict_contains_str(d, "blob"), 1);
    TU_ASSERT_STATUS(mp_dict_del_str(d, "blob"), 0);
    assert_int_equal(mp_dict_contains_str(d, "blob"), 0);
    TU_ASSERT_STATUS(mp_dict_del_str(d, "blob"), MP_EKEY);
    /* a bool is an int, as in Python */
    mp_obj *t = mp_obj_bool(true), *k = S("flag");
    TU_ASSERT_STATUS(mp_dict_set(d, k, t), 0);
    TU_ASSERT_STATUS(mp_dict_get_int(d, "flag", &v), 0);
    assert_int_equal(v, 1);
    mp_obj_free(t);
    mp_obj_free(k);
    mp_dict_free(d);
    mp_manager_free(m);
}

static void test_dict_add_and_compare_and_set_are_atomic_read_modify_writes(void **state)
{
    (void)state;
    mp_manager *m = start();
    mp_dict *d;
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &d), 0);
    int64_t v = 0;
    /* a missing key counts as 0 */
    TU_ASSERT_STATUS(mp_dict_add_int(d, "n", 5, &v), 0);
    assert_int_equal(v, 5);
    TU_ASSERT_STATUS(mp_dict_add_int(d, "n", -7, &v), 0);
    assert_int_equal(v, -2);
    TU_ASSERT_STATUS(mp_dict_add_int(d, "n", 0, NULL), 0);
    /* a bool becomes an int, as True + 1 == 2 */
    mp_obj *k = S("b"), *t = mp_obj_bool(true);
    TU_ASSERT_STATUS(mp_dict_set(d, k, t), 0);
    TU_ASSERT_STATUS(mp_dict_add(d, k, 1, &v), 0);
    assert_int_equal(v, 2);
    mp_obj *o;
    TU_ASSERT_STATUS(mp_dict_get(d, k, &o), 0);
    take_repr(o, "2");
    /* overflow changes nothing; other types are TypeError */
    TU_ASSERT_STATUS(mp_dict_set_int(d, "big", INT64_MAX), 0);
    TU_ASSERT_STATUS(mp_dict_add_int(d, "big", 1, &v), -EOVERFLOW);
    TU_ASSERT_STATUS(mp_dict_get_int(d, "big", &v), 0);
    assert_true(v == INT64_MAX);
    TU_ASSERT_STATUS(mp_dict_set_str(d, "s", "x"), 0);
    TU_ASSERT_STATUS(mp_dict_add_int(d, "s", 1, &v), MP_ETYPE);

    /* compare and set */
    TU_ASSERT_STATUS(mp_dict_cas_int(d, "n", -2, 10, &v), 1);
    TU_ASSERT_STATUS(mp_dict_cas_int(d, "n", -2, 11, &v), 0);
    assert_int_equal(v, 10);
    TU_ASSERT_STATUS(mp_dict_cas_int(d, "nope", 0, 1, &v), MP_EKEY);
    TU_ASSERT_STATUS(mp_dict_cas_int(d, "s", 0, 1, &v), MP_ETYPE);
    mp_obj *key = S("fresh"), *want = S("one"), *cur = NULL;
    /* expected NULL: only if absent */
    TU_ASSERT_STATUS(mp_dict_cas(d, key, NULL, want, &cur), 1);
    assert_null(cur);
    TU_ASSERT_STATUS(mp_dict_cas(d, key, NULL, want, &cur), 0);
    take_repr(cur, "'one'");
    mp_obj *exp = mp_obj_float(10.0), *nk = S("n"), *nv = S("ten");
    TU_ASSERT_STATUS(mp_dict_cas(d, nk, exp, nv, &cur), 1); /* 10 == 10.0 */
    take_repr(cur, "10");
    TU_ASSERT_STATUS(mp_dict_get(d, nk, &o), 0);
    take_repr(o, "'ten'");
    mp_obj_free(exp);
    mp_obj_free(nk);
    mp_obj_free(nv);
    mp_obj_free(key);
    mp_obj_free(want);
    mp_obj_free(k);
    mp_obj_free(t);
    mp_dict_free(d);
    mp_manager_free(m);
}

/* ---- list ------------------------------------------------------------------------ */

static mp_obj *range_list(int n)
{
    mp_obj *l = mp_obj_list_new();
    for (int i = 0; i < n; i++)
        mp_obj_list_append(l, I(i));
    return l;
}

static void test_list_methods_match_python(void **state)
{
    (void)state;
    mp_manager *m = start();
    /* _TestContainers.test_list */
    mp_obj *r10 = range_list(10);
    mp_list *a, *b;
    TU_ASSERT_STATUS(mp_manager_list(m, r10, &a), 0);
    mp_obj *o;
    TU_ASSERT_STATUS(mp_list_copy(a, &o), 0);
    take_repr(o, "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]");
    TU_ASSERT_STATUS(mp_manager_list(m, NULL, &b), 0);
    TU_ASSERT_STATUS(mp_list_copy(b, &o), 0);
    take_repr(o, "[]");
    mp_obj *r5 = range_list(5);
    TU_ASSERT_STATUS(mp_list_extend(b, r5), 0);
    TU_ASSERT_STATUS(mp_list_copy(b, &o), 0);
    take_repr(o, "[0, 1, 2, 3, 4]");
    int64_t v;
    TU_ASSERT_STATUS(mp_list_get_int(b, 2, &v), 0);
    assert_int_equal(v, 2);
    TU_ASSERT_STATUS(mp_list_slice(b, 2, 10, &o), 0);
    take_repr(o, "[2, 3, 4]");
    TU_ASSERT_STATUS(mp_list_extend(b, r5), 0); /* b *= 2 */
    TU_ASSERT_STATUS(mp_list_copy(b, &o), 0);
    take_repr(o, "[0, 1, 2, 3, 4, 0, 1, 2, 3, 4]");
    mp_obj *hello = S("hello");
    TU_ASSERT_STATUS(mp_list_append(a, hello), 0);
    TU_ASSERT_STATUS(mp_list_copy(a, &o), 0);
    take_repr(o, "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 'hello']");

    /* negative indexes, slices as Python clamps them */
    TU_ASSERT_STATUS(mp_list_get(a, -1, &o), 0);
    take_repr(o, "'hello'");
    TU_ASSERT_STATUS(mp_list_get(a, -11, &o), 0);
    take_repr(o, "0");
    TU_ASSERT_STATUS(mp_list_get(a, 11, &o), MP_EKEY);
    TU_ASSERT_STATUS(mp_list_get(a, -12, &o), MP_EKEY);
    TU_ASSERT_STATUS(mp_list_slice(a, -3, MP_LIST_END, &o), 0);
    take_repr(o, "[8, 9, 'hello']");
    TU_ASSERT_STATUS(mp_list_slice(a, -100, 2, &o), 0);
    take_repr(o, "[0, 1]");
    TU_ASSERT_STATUS(mp_list_slice(a, 5, 3, &o), 0);
    take_repr(o, "[]");
    mp_obj *x = S("x");
    TU_ASSERT_STATUS(mp_list_set(a, -1, x), 0);
    TU_ASSERT_STATUS(mp_list_set(a, 100, x), MP_EKEY);

    /* pop, insert (clamped), del, index, count, remove, contains */
    TU_ASSERT_STATUS(mp_list_pop(a, -1, &o), 0);
    take_repr(o, "'x'");
    TU_ASSERT_STATUS(mp_list_pop(a, 0, &o), 0);
    take_repr(o, "0");
    mp_obj *first = S("first"), *last = S("last"), *mid = S("mid");
    TU_ASSERT_STATUS(mp_list_insert(a, -100, first), 0);
    TU_ASSERT_STATUS(mp_list_insert(a, 100, last), 0);
    TU_ASSERT_STATUS(mp_list_insert(a, -1, mid), 0);
    TU_ASSERT_STATUS(mp_list_copy(a, &o), 0);
    take_repr(o, "['first', 1, 2, 3, 4, 5, 6, 7, 8, 9, 'mid', 'last']");
    TU_ASSERT_STATUS(mp_list_del(a, 1), 0);
    TU_ASSERT_STATUS(mp_list_del(a, 50), MP_EKEY);
    assert_int_equal(mp_list_index(a, mid), 9);
    mp_obj *nine = I(9), *missing = I(42);
    assert_int_equal(mp_list_count(b, nine), 0);
    mp_obj *three = I(3);
    assert_int_equal(mp_list_count(b, three), 2);
    assert_int_equal(mp_list_index(a, missing), MP_EVALUE);
    assert_int_equal(mp_list_contains(a, nine), 1);
    assert_int_equal(mp_list_contains(a, missing), 0);
    TU_ASSERT_STATUS(mp_list_remove(b, three), 0);
    TU_ASSERT_STATUS(mp_list_copy(b, &o), 0);
    take_repr(o, "[0, 1, 2, 4, 0, 1, 2, 3, 4]");
    TU_ASSERT_STATUS(mp_list_remove(b, missing), MP_EVALUE);
    assert_int_equal(mp_list_len(a), 11);
    TU_ASSERT_STATUS(mp_list_clear(a), 0);
    assert_int_equal(mp_list_len(a), 0);
    TU_ASSERT_STATUS(mp_list_pop(a, -1, &o), MP_EKEY); /* pop from empty list */
    TU_ASSERT_STATUS(mp_list_append_int(a, 7), 0);
    TU_ASSERT_STATUS(mp_list_append_str(a, "s"), 0);
    char *s;
    TU_ASSERT_STATUS(mp_list_get_str(a, 1, &s, NULL), 0);
    assert_string_equal(s, "s");
    free(s);
    TU_ASSERT_STATUS(mp_list_get_str(a, 0, &s, NULL), MP_ETYPE);
    TU_ASSERT_STATUS(mp_list_extend(a, hello), MP_ETYPE);

    /* a tuple as the initial value */
    mp_obj *tup = mp_obj_tuple_new();
    mp_obj_tuple_append(tup, I(1));
    mp_obj_tuple_append(tup, S("two"));
    mp_list *c;
    TU_ASSERT_STATUS(mp_manager_list(m, tup, &c), 0);
    TU_ASSERT_STATUS(mp_list_copy(c, &o), 0);
    take_repr(o, "[1, 'two']");
    mp_list *c2;
    TU_ASSERT_STATUS(mp_manager_list(m, hello, &c2), MP_ETYPE);
    assert_null(c2);

    mp_obj *objs[] = {r10, r5, hello, x, first, last, mid, nine, missing, three, tup};
    for (size_t i = 0; i < sizeof objs / sizeof objs[0]; i++)
        mp_obj_free(objs[i]);
    mp_list_free(c);
    mp_list_free(a);
    mp_list_free(b);
    mp_manager_free(m);
}

/* ---- TestSyncManagerTypes: a child uses the parent's objects ------------------------- */

struct shared {
    mp_dict *d;
    mp_list *l;
    mp_mlock *lock;
    mp_mqueue *q;
    int fd; /* a pipe's write end, for "I got here" */
    int n;
};

static int child_uses_dict_list_queue(void *arg)
{
    struct shared *sh = arg;
    int64_t v;
    /* _test_dict */
    if (mp_dict_len(sh->d) != 1)
        return 10;
    if (mp_dict_get_int(sh->d, "foo", &v) != 0 || v != 5)
        return 11;
    mp_obj *k, *val;
    if (mp_dict_popitem(sh->d, &k, &val) != 0)
        return 12;
    mp_obj_free(k);
    mp_obj_free(val);
    /* _test_list */
    if (mp_list_get_int(sh->l, 0, &v) != 0 || v != 5)
        return 20;
    if (mp_list_pop(sh->l, 0, NULL) != 0)
        return 21;
    /* _test_queue */
    if (mp_mqueue_qsize(sh->q) != 2 || mp_mqueue_full(sh->q) != 1 || mp_mqueue_empty(sh->q) != 0)
        return 30;
    mp_obj *item;
    for (int want = 5; want <= 6; want++) {
        if (mp_mqueue_get(sh->q, &item, T_LONG) != 0 || mp_obj_get_int(item, &v) != 0 || v != want)
            return 31;
        mp_obj_free(item);
    }
    if (mp_mqueue_empty(sh->q) != 1)
        return 32;
    return 0;
}

static void test_child_uses_the_parents_dict_list_and_queue(void **state)
{
    (void)state;
    mp_manager *m = start();
    struct shared sh = {0};
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &sh.d), 0);
    TU_ASSERT_STATUS(mp_manager_list(m, NULL, &sh.l), 0);
    TU_ASSERT_STATUS(mp_manager_queue(m, 2, &sh.q), 0);
    TU_ASSERT_STATUS(mp_dict_set_int(sh.d, "foo", 5), 0);
    TU_ASSERT_STATUS(mp_list_append_int(sh.l, 5), 0);
    mp_obj *five = I(5), *six = I(6);
    TU_ASSERT_STATUS(mp_mqueue_put(sh.q, five, MP_NOWAIT), 0);
    TU_ASSERT_STATUS(mp_mqueue_put(sh.q, six, MP_NOWAIT), 0);
    mp_process *p;
    assert_int_equal(mp_process_new(&p, child_uses_dict_list_queue, &sh), 0);
    assert_int_equal(mp_process_start(p), 0);
    TU_ASSERT_STATUS(mp_process_join(p, T_LONG), 0);
    int code = -1;
    assert_int_equal(mp_process_exitcode(p, &code), 0);
    assert_int_equal(code, 0);
    mp_process_free(p);
    assert_int_equal(mp_dict_len(sh.d), 0);
    assert_int_equal(mp_list_len(sh.l), 0);
    assert_int_equal(mp_mqueue_empty(sh.q), 1);
    assert_int_equal(mp_mqueue_full(sh.q), 0);
    mp_obj_free(five);
    mp_obj_free(six);
    mp_dict_free(sh.d);
    mp_list_free(sh.l);
    mp_mqueue_free(sh.q);
    mp_manager_free(m);
}

/* ---- the seed program ------------------------------------------------------------------- */

static int seed_work(void *arg)
{
    struct shared *sh = arg;
    int rc = mp_mlock_acquire(sh->lock, T_LONG); /* with lock: */
    if (rc != 0)
        return 10;
    int64_t v;
    if (mp_dict_get_int(sh->d, "count", &v) != 0) /* d['count'] -= 1 */
        return 11;
    if (mp_dict_set_int(sh->d, "count", v - 1) != 0)
        return 12;
    if (mp_mlock_release(sh->lock) != 0)
        return 13;
    return 0;
}

static int seed_work_atomic(void *arg)
{
    struct shared *sh = arg;
    return mp_dict_add_int(sh->d, "count", -1, NULL) == 0 ? 0 : 20;
}

static void run_seed(mp_target_fn fn, bool with_lock)
{
    mp_manager *m = start();
    struct shared sh = {0};
    mp_obj *init = dict1("count", 100);
    TU_ASSERT_STATUS(mp_manager_dict(m, init, &sh.d), 0);
    mp_obj_free(init);
    if (with_lock)
        TU_ASSERT_STATUS(mp_manager_lock(m, &sh.lock), 0);
    mp_process *ps[100];
    for (int i = 0; i < 100; i++) {
        assert_int_equal(mp_process_new(&ps[i], fn, &sh), 0);
        assert_int_equal(mp_process_start(ps[i]), 0);
    }
    for (int i = 0; i < 100; i++) {
        TU_ASSERT_STATUS(mp_process_join(ps[i], 60.0), 0);
        int code = -1;
        assert_int_equal(mp_process_exitcode(ps[i], &code), 0);
        assert_int_equal(code, 0);
        mp_process_free(ps[i]);
    }
    mp_obj *o;
    TU_ASSERT_STATUS(mp_dict_copy(sh.d, &o), 0);
    take_repr(o, "{'count': 0}"); /* print(dic) */
    mp_dict_free(sh.d);
    mp_mlock_free(sh.lock);
    mp_manager_free(m);
}

static void test_seed_100_processes_decrement_under_a_lock_to_zero(void **state)
{
    (void)state;
    run_seed(seed_work, true);
}

static void test_seed_with_atomic_add_needs_no_lock(void **state)
{
    (void)state;
    run_seed(seed_work_atomic, false);
}

/* ---- fork and threads ---------------------------------------------------------------- */

struct conn_ids {
    mp_manager *m;
    mp_dict *d;
    int64_t parent_session, parent_conn;
};

static int child_gets_its_own_connection(void *arg)
{
    struct conn_ids *ci = arg;
    mp_obj *info;
    if (mp_manager_info(ci->m, &info) != 0)
        return 10;
    int64_t sess = 0, conn = 0;
    mp_obj_get_int(mp_obj_dict_get_cstr(info, "session"), &sess);
    mp_obj_get_int(mp_obj_dict_get_cstr(info, "connection"), &conn);
    mp_obj_free(info);
    if (sess == ci->parent_session)
        return 11; /* the child must not pass for its parent */
    if (conn == ci->parent_conn)
        return 12; /* nor use its socket */
    /* Hammer the dict while the parent does too: a shared socket would
     * cross the replies (a reply meant for another process would show as a
     * wrong count). */
    char key[32];
    snprintf(key, sizeof key, "c%d", (int)getpid());
    for (int i = 0; i < 300; i++) {
        int64_t v;
        if (mp_dict_add_int(ci->d, key, 1, &v) != 0 || v != i + 1)
            return 13;
        if (mp_dict_add_int(ci->d, "child", 1, NULL) != 0)
            return 14;
    }
    return 0;
}

static void test_child_forked_after_the_parent_used_a_proxy_opens_its_own_connection(void **state)
{
    (void)state;
    mp_manager *m = start();
    struct conn_ids ci = {m, NULL, 0, 0};
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &ci.d), 0);
    TU_ASSERT_STATUS(mp_dict_set_int(ci.d, "parent", 0), 0);
    ci.parent_session = info_int(m, "session");
    ci.parent_conn = info_int(m, "connection");
    pid_t kids[3];
    for (int k = 0; k < 3; k++)
        kids[k] = tu_fork(child_gets_its_own_connection, &ci);
    for (int i = 0; i < 300; i++) {
        int64_t v;
        TU_ASSERT_STATUS(mp_dict_add_int(ci.d, "parent", 1, &v), 0);
        assert_int_equal(v, i + 1);
    }
    for (int k = 0; k < 3; k++)
        assert_int_equal(tu_wait_child(kids[k], 60.0), 0);
    int64_t v;
    TU_ASSERT_STATUS(mp_dict_get_int(ci.d, "child", &v), 0);
    assert_int_equal(v, 900);
    /* the parent still talks over its own, untouched connection */
    assert_int_equal(info_int(m, "session"), ci.parent_session);
    assert_int_equal(info_int(m, "connection"), ci.parent_conn);
    mp_dict_free(ci.d);
    mp_manager_free(m);
}

struct thread_arg {
    mp_dict *d;
    mp_mqueue *q;
    mp_mlock *rlock;
    int n;
    int rc;
    double got_at;
};

static void *adder_thread(void *arg)
{
    struct thread_arg *t = arg;
    for (int i = 0; i < t->n && t->rc == 0; i++)
        t->rc = mp_dict_add_int(t->d, "total", 1, NULL);
    return NULL;
}

static void *getter_thread(void *arg)
{
    struct thread_arg *t = arg;
    mp_obj *item = NULL;
    t->rc = mp_mqueue_get(t->q, &item, T_LONG);
    t->got_at = tu_now();
    mp_obj_free(item);
    return NULL;
}

static void *rlock_thief(void *arg)
{
    struct thread_arg *t = arg;
    /* Another thread neither enters nor releases the holder's RLock. */
    int a = mp_mlock_acquire(t->rlock, MP_NOWAIT);
    int r = mp_mlock_release(t->rlock);
    t->rc = (a == MP_ETIMEDOUT && r == MP_EVALUE) ? 0 : 1;
    return NULL;
}

static void test_one_proxy_used_from_several_threads(void **state)
{
    (void)state;
    mp_manager *m = start();
    mp_dict *d;
    mp_mqueue *q;
    mp_mlock *rl;
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &d), 0);
    TU_ASSERT_STATUS(mp_manager_queue(m, 0, &q), 0);
    TU_ASSERT_STATUS(mp_manager_rlock(m, &rl), 0);
    /* A thread blocked in get() must not hold up the others. */
    struct thread_arg getter = {d, q, rl, 0, -1, 0};
    pthread_t gt;
    assert_int_equal(pthread_create(&gt, NULL, getter_thread, &getter), 0);
    struct thread_arg adders[4];
    pthread_t at[4];
    for (int i = 0; i < 4; i++) {
        adders[i] = (struct thread_arg){d, q, rl, 500, 0, 0};
        assert_int_equal(pthread_create(&at[i], NULL, adder_thread, &adders[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(at[i], NULL);
        TU_ASSERT_STATUS(adders[i].rc, 0);
    }
    double adds_done = tu_now();
    int64_t v;
    TU_ASSERT_STATUS(mp_dict_get_int(d, "total", &v), 0);
    assert_int_equal(v, 2000);
    mp_obj *item = S("wake");
    TU_ASSERT_STATUS(mp_mqueue_put(q, item, T_LONG), 0);
    mp_obj_free(item);
    pthread_join(gt, NULL);
    TU_ASSERT_STATUS(getter.rc, 0);
    assert_true(getter.got_at >= adds_done);

    /* RLock ownership is per thread */
    TU_ASSERT_STATUS(mp_mlock_acquire(rl, T_LONG), 0);
    struct thread_arg thief = {d, q, rl, 0, -1, 0};
    pthread_t tt;
    assert_int_equal(pthread_create(&tt, NULL, rlock_thief, &thief), 0);
    pthread_join(tt, NULL);
    assert_int_equal(thief.rc, 0);
    TU_ASSERT_STATUS(mp_mlock_release(rl), 0);

    mp_dict_free(d);
    mp_mqueue_free(q);
    mp_mlock_free(rl);
    mp_manager_free(m);
}

/* ---- 8 processes x 10,000 mixed operations -------------------------------------------- */

static int mixed_worker(void *arg)
{
    struct shared *sh = arg;
    int me = sh->fd; /* the worker's number */
    int n = sh->n;
    char key[32];
    snprintf(key, sizeof key, "p%d", me);
    int64_t qsum = 0;
    for (int k = 0; k < n; k++) {
        int rc = 0;
        int64_t v;
        switch (k % 10) {
        case 6:
            rc = mp_dict_set_int(sh->d, key, k);
            break;
        case 7:
            rc = mp_list_append_int(sh->l, (int64_t)me * n + k);
            break;
        case 8:
            rc = mp_dict_get_int(sh->d, key, &v);
            if (rc == 0 && v != k - 2)
                return 30;
            break;
        case 9:
            if (k % 100 == 9) {
                rc = mp_mlock_acquire(sh->lock, T_LONG);
                if (rc == 0)
                    rc = mp_dict_get_int(sh->d, "locked", &v);
                if (rc == 0)
                    rc = mp_dict_set_int(sh->d, "locked", v + 1);
                if (rc == 0)
                    rc = mp_mlock_release(sh->lock);
            } else {
                mp_obj *item = I(k), *got = NULL;
                rc = mp_mqueue_put(sh->q, item, T_LONG);
                if (rc == 0)
                    rc = mp_mqueue_get(sh->q, &got, T_LONG);
                if (rc == 0 && mp_obj_get_int(got, &v) == 0)
                    qsum += v;
                mp_obj_free(item);
                mp_obj_free(got);
            }
            break;
        default:
            rc = mp_dict_add_int(sh->d, "total", 1, NULL);
            break;
        }
        if (rc != 0)
            return 10 + k % 10;
    }
    return mp_dict_add_int(sh->d, "qsum", qsum, NULL) == 0 ? 0 : 40;
}

static void test_8_processes_x_10000_mixed_operations_keep_the_state_exact(void **state)
{
    (void)state;
    /* MPIPC_MANAGER_OPS lowers the count for the valgrind run. */
    int n = env_int("MPIPC_MANAGER_OPS", 10000) / 100 * 100;
    if (n < 100)
        n = 100;
    mp_manager *m = start();
    struct shared base = {0};
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &base.d), 0);
    TU_ASSERT_STATUS(mp_manager_list(m, NULL, &base.l), 0);
    TU_ASSERT_STATUS(mp_manager_lock(m, &base.lock), 0);
    TU_ASSERT_STATUS(mp_manager_queue(m, 0, &base.q), 0);
    TU_ASSERT_STATUS(mp_dict_set_int(base.d, "locked", 0), 0);
    struct shared sh[8];
    mp_process *ps[8];
    double t0 = tu_now();
    for (int i = 0; i < 8; i++) {
        sh[i] = base;
        sh[i].fd = i;
        sh[i].n = n;
        assert_int_equal(mp_process_new(&ps[i], mixed_worker, &sh[i]), 0);
        assert_int_equal(mp_process_start(ps[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        TU_ASSERT_STATUS(mp_process_join(ps[i], 120.0), 0);
        int code = -1;
        assert_int_equal(mp_process_exitcode(ps[i], &code), 0);
        assert_int_equal(code, 0);
        mp_process_free(ps[i]);
    }
    print_message("    %d operations in %.2f s\n", 8 * n, tu_now() - t0);
    int64_t v;
    TU_ASSERT_STATUS(mp_dict_get_int(base.d, "total", &v), 0);
    assert_int_equal(v, 8 * n * 6 / 10);
    TU_ASSERT_STATUS(mp_dict_get_int(base.d, "locked", &v), 0);
    assert_int_equal(v, 8 * n / 100);
    for (int i = 0; i < 8; i++) {
        char key[32];
        snprintf(key, sizeof key, "p%d", i);
        TU_ASSERT_STATUS(mp_dict_get_int(base.d, key, &v), 0);
        assert_int_equal(v, n - 4); /* the last k with k % 10 == 6 */
    }
    /* every list item once, each worker's in order */
    mp_obj *items;
    TU_ASSERT_STATUS(mp_list_copy(base.l, &items), 0);
    assert_int_equal(mp_obj_len(items), 8 * n / 10);
    int64_t last[8];
    for (int i = 0; i < 8; i++)
        last[i] = -1;
    for (ssize_t i = 0; i < mp_obj_len(items); i++) {
        assert_int_equal(mp_obj_get_int(mp_obj_list_get(items, (size_t)i), &v), 0);
        int w = (int)(v / n);
        assert_true(w >= 0 && w < 8);
        assert_true(v % n > last[w]);
        last[w] = v % n;
    }
    mp_obj_free(items);
    /* the queue: everything put was got, nothing twice */
    assert_int_equal(mp_mqueue_qsize(base.q), 0);
    int64_t want = 0;
    for (int k = 0; k < n; k++)
        if (k % 10 == 9 && k % 100 != 9)
            want += k;
    TU_ASSERT_STATUS(mp_dict_get_int(base.d, "qsum", &v), 0);
    assert_int_equal(v, 8 * want);
    mp_dict_free(base.d);
    mp_list_free(base.l);
    mp_mlock_free(base.lock);
    mp_mqueue_free(base.q);
    mp_manager_free(m);
}

/* ---- locks ------------------------------------------------------------------------------ */

static void test_lock_acquire_release_semantics_match_python(void **state)
{
    (void)state;
    mp_manager *m = start();
    mp_mlock *lk, *rl;
    TU_ASSERT_STATUS(mp_manager_lock(m, &lk), 0);
    TU_ASSERT_STATUS(mp_manager_rlock(m, &rl), 0);
    /* _TestLock.test_lock */
    TU_ASSERT_STATUS(mp_mlock_acquire(lk, MP_FOREVER), 0);
    TU_ASSERT_STATUS(mp_mlock_acquire(lk, MP_NOWAIT), MP_ETIMEDOUT);
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_mlock_acquire(lk, 0.2), MP_ETIMEDOUT);
    double dt = tu_now() - t0;
    assert_true(dt >= 0.19 && dt < 5.0);
    TU_ASSERT_STATUS(mp_mlock_release(lk), 0);
    TU_ASSERT_STATUS(mp_mlock_release(lk), MP_EVALUE);
    /* _TestLock.test_rlock */
    for (int i = 0; i < 3; i++)
        TU_ASSERT_STATUS(mp_mlock_acquire(rl, T_LONG), 0);
    for (int i = 0; i < 3; i++)
        TU_ASSERT_STATUS(mp_mlock_release(rl), 0);
    TU_ASSERT_STATUS(mp_mlock_release(rl), MP_EVALUE);
    mp_mlock_free(lk);
    mp_mlock_free(rl);
    mp_manager_free(m);
}

static int child_releases_parents_lock(void *arg)
{
    struct shared *sh = arg;
    /* Python lets any process release a Lock. */
    return mp_mlock_release(sh->lock) == 0 ? 0 : 10;
}

static int child_acquires_then_waits(void *arg)
{
    struct shared *sh = arg;
    int rc = mp_mlock_acquire(sh->lock, T_LONG);
    if (rc != 0)
        return 10;
    say(sh->fd);
    tu_sleep(TU_CHILD_LIFETIME); /* until killed */
    return 11;
}

static int child_waits_for_dead_holders_lock(void *arg)
{
    struct shared *sh = arg;
    say(sh->fd);
    int rc = mp_mlock_acquire(sh->lock, T_LONG);
    if (rc != MP_EOWNERDEAD)
        return rc == 0 ? 20 : rc == MP_ETIMEDOUT ? 21 : 22;
    /* the lock is ours and works on */
    if (mp_mlock_release(sh->lock) != 0)
        return 23;
    return 0;
}

static void test_a_lock_may_be_released_by_another_process(void **state)
{
    (void)state;
    mp_manager *m = start();
    struct shared sh = {0};
    TU_ASSERT_STATUS(mp_manager_lock(m, &sh.lock), 0);
    TU_ASSERT_STATUS(mp_mlock_acquire(sh.lock, T_LONG), 0);
    pid_t pid = tu_fork(child_releases_parents_lock, &sh);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    TU_ASSERT_STATUS(mp_mlock_acquire(sh.lock, MP_NOWAIT), 0);
    TU_ASSERT_STATUS(mp_mlock_release(sh.lock), 0);
    mp_mlock_free(sh.lock);
    mp_manager_free(m);
}

static void kill_holder_and_check(bool recursive, bool with_waiter)
{
    mp_manager *m = start();
    struct shared sh = {0};
    TU_ASSERT_STATUS(mp_manager_lock_named(m, NULL, recursive, &sh.lock), 0);
    int p[2];
    assert_int_equal(pipe(p), 0);
    sh.fd = p[1];
    pid_t holder = tu_fork(child_acquires_then_waits, &sh);
    assert_int_equal(wait_byte(p[0], T_LONG), 0);
    pid_t waiter = -1;
    if (with_waiter) {
        waiter = tu_fork(child_waits_for_dead_holders_lock, &sh);
        assert_int_equal(wait_byte(p[0], T_LONG), 0);
        /* its acquire is parked in the server: the holder's death hands it
         * the lock, the case this test names */
        assert_true(eventually_waiting(m, 1));
    }
    kill(holder, SIGKILL);
    assert_int_equal(tu_wait_child(holder, T_LONG), -SIGKILL);
    if (with_waiter) {
        assert_int_equal(tu_wait_child(waiter, T_LONG + 5), 0);
        /* the waiter was told; the next acquirer is not */
        TU_ASSERT_STATUS(mp_mlock_acquire(sh.lock, T_LONG), 0);
    } else {
        TU_ASSERT_STATUS(mp_mlock_acquire(sh.lock, T_LONG), MP_EOWNERDEAD);
        TU_ASSERT_STATUS(mp_mlock_release(sh.lock), 0);
        TU_ASSERT_STATUS(mp_mlock_acquire(sh.lock, T_LONG), 0);
    }
    TU_ASSERT_STATUS(mp_mlock_release(sh.lock), 0);
    close(p[0]);
    close(p[1]);
    mp_mlock_free(sh.lock);
    mp_manager_free(m);
}

static void test_client_killed_holding_a_lock_the_waiter_gets_it_with_eownerdead(void **state)
{
    (void)state;
    kill_holder_and_check(false, true);
}

static void test_client_killed_holding_a_lock_the_next_acquirer_gets_eownerdead(void **state)
{
    (void)state;
    kill_holder_and_check(false, false);
    kill_holder_and_check(true, true); /* an RLock too */
}

/* ---- queues --------------------------------------------------------------------------------- */

static void test_queue_full_and_empty_match_python(void **state)
{
    (void)state;
    mp_manager *m = start();
    mp_mqueue *q;
    TU_ASSERT_STATUS(mp_manager_queue(m, 6, &q), 0);
    /* _TestQueue.test_put */
    assert_int_equal(mp_mqueue_empty(q), 1);
    assert_int_equal(mp_mqueue_full(q), 0);
    for (int i = 1; i <= 6; i++) {
        mp_obj *x = I(i);
        TU_ASSERT_STATUS(mp_mqueue_put(q, x, i % 2 ? MP_FOREVER : MP_NOWAIT), 0);
        mp_obj_free(x);
    }
    assert_int_equal(mp_mqueue_empty(q), 0);
    assert_int_equal(mp_mqueue_full(q), 1);
    mp_obj *seven = I(7);
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_mqueue_put(q, seven, MP_NOWAIT), MP_FULL);
    assert_true(tu_now() - t0 < 2.0);
    t0 = tu_now();
    TU_ASSERT_STATUS(mp_mqueue_put(q, seven, 0.1), MP_FULL);
    double dt = tu_now() - t0;
    assert_true(dt >= 0.09 && dt < 5.0);
    mp_obj_free(seven);
    /* _TestQueue.test_get */
    mp_obj *item;
    for (int i = 1; i <= 6; i++) {
        TU_ASSERT_STATUS(mp_mqueue_get(q, &item, i % 2 ? MP_FOREVER : MP_NOWAIT), 0);
        int64_t v;
        assert_int_equal(mp_obj_get_int(item, &v), 0);
        assert_int_equal(v, i);
        mp_obj_free(item);
    }
    t0 = tu_now();
    TU_ASSERT_STATUS(mp_mqueue_get(q, &item, MP_NOWAIT), MP_EMPTY);
    assert_null(item);
    assert_true(tu_now() - t0 < 2.0);
    t0 = tu_now();
    TU_ASSERT_STATUS(mp_mqueue_get(q, &item, 0.1), MP_EMPTY);
    dt = tu_now() - t0;
    assert_true(dt >= 0.09 && dt < 5.0);
    /* test_qsize: 0, 1, 2, 1, 0 */
    mp_obj *x = S("x");
    assert_int_equal(mp_mqueue_qsize(q), 0);
    TU_ASSERT_STATUS(mp_mqueue_put(q, x, T_LONG), 0);
    assert_int_equal(mp_mqueue_qsize(q), 1);
    TU_ASSERT_STATUS(mp_mqueue_put(q, x, T_LONG), 0);
    assert_int_equal(mp_mqueue_qsize(q), 2);
    TU_ASSERT_STATUS(mp_mqueue_get(q, &item, T_LONG), 0);
    mp_obj_free(item);
    assert_int_equal(mp_mqueue_qsize(q), 1);
    TU_ASSERT_STATUS(mp_mqueue_get(q, &item, T_LONG), 0);
    mp_obj_free(item);
    assert_int_equal(mp_mqueue_qsize(q), 0);
    mp_obj_free(x);
    mp_mqueue_free(q);
    mp_manager_free(m);
}

static int child_puts_after_a_while(void *arg)
{
    struct shared *sh = arg;
    tu_sleep(0.1);
    mp_obj *x = I(sh->n);
    int rc = mp_mqueue_put(sh->q, x, T_LONG);
    mp_obj_free(x);
    return rc == 0 ? 0 : 10;
}

static int child_gets_one(void *arg)
{
    struct shared *sh = arg;
    tu_sleep(0.1);
    mp_obj *x;
    int rc = mp_mqueue_get(sh->q, &x, T_LONG);
    int64_t v = -1;
    mp_obj_get_int(x, &v);
    mp_obj_free(x);
    return rc == 0 && v == 1 ? 0 : 10;
}

static int child_task_done(void *arg)
{
    struct shared *sh = arg;
    mp_obj *x;
    for (int i = 0; i < 3; i++) {
        if (mp_mqueue_get(sh->q, &x, T_LONG) != 0)
            return 10;
        mp_obj_free(x);
        tu_sleep(0.02);
        if (mp_mqueue_task_done(sh->q) != 0)
            return 11;
    }
    return mp_mqueue_task_done(sh->q) == MP_EVALUE ? 0 : 12;
}

static void test_queue_blocking_get_put_and_join_across_processes(void **state)
{
    (void)state;
    mp_manager *m = start();
    struct shared sh = {0};
    TU_ASSERT_STATUS(mp_manager_queue(m, 1, &sh.q), 0);
    /* a get blocked in the server is woken by another process's put */
    sh.n = 42;
    pid_t pid = tu_fork(child_puts_after_a_while, &sh);
    mp_obj *item;
    TU_ASSERT_STATUS(mp_mqueue_get(sh.q, &item, T_LONG), 0);
    take_repr(item, "42");
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    /* a put blocked on a full queue is woken by another process's get */
    mp_obj *one = I(1), *two = I(2);
    TU_ASSERT_STATUS(mp_mqueue_put(sh.q, one, T_LONG), 0);
    pid = tu_fork(child_gets_one, &sh);
    TU_ASSERT_STATUS(mp_mqueue_put(sh.q, two, T_LONG), 0);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    TU_ASSERT_STATUS(mp_mqueue_get(sh.q, &item, T_LONG), 0);
    take_repr(item, "2");
    mp_obj_free(one);
    mp_obj_free(two);
    mp_mqueue_free(sh.q);

    /* JoinableQueue: join waits for every task_done */
    TU_ASSERT_STATUS(mp_manager_queue(m, 0, &sh.q), 0);
    TU_ASSERT_STATUS(mp_mqueue_join(sh.q, MP_NOWAIT), 0);
    for (int i = 0; i < 3; i++) {
        mp_obj *x = I(i);
        TU_ASSERT_STATUS(mp_mqueue_put(sh.q, x, T_LONG), 0);
        mp_obj_free(x);
    }
    TU_ASSERT_STATUS(mp_mqueue_join(sh.q, MP_NOWAIT), MP_ETIMEDOUT);
    pid = tu_fork(child_task_done, &sh);
    TU_ASSERT_STATUS(mp_mqueue_join(sh.q, T_LONG), 0);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    mp_mqueue_free(sh.q);
    mp_manager_free(m);
}

/* ---- named objects and lifetimes ------------------------------------------------------------- */

static void test_named_objects_are_made_once_and_attached_by_name(void **state)
{
    (void)state;
    mp_manager *m = start();
    mp_obj *init = dict1("n", 1);
    mp_dict *d1, *d2, *d3;
    TU_ASSERT_STATUS(mp_manager_dict_named(m, "results", init, &d1), 1); /* made */
    mp_obj_free(init);
    init = dict1("n", 99);
    TU_ASSERT_STATUS(mp_manager_dict_named(m, "results", init, &d2), 0); /* existed */
    mp_obj_free(init);
    TU_ASSERT_STATUS(mp_manager_attach_dict(m, "results", &d3), 0);
    TU_ASSERT_STATUS(mp_dict_add_int(d2, "n", 1, NULL), 0);
    int64_t v;
    TU_ASSERT_STATUS(mp_dict_get_int(d3, "n", &v), 0);
    assert_int_equal(v, 2);

    mp_list *l;
    mp_mlock *lk;
    mp_mqueue *q;
    mp_dict *d4;
    TU_ASSERT_STATUS(mp_manager_attach_dict(m, "missing", &d4), MP_ENOOBJ);
    assert_null(d4);
    TU_ASSERT_STATUS(mp_manager_attach_list(m, "results", &l), MP_ETYPE);
    TU_ASSERT_STATUS(mp_manager_list_named(m, "results", NULL, &l), MP_ETYPE);
    TU_ASSERT_STATUS(mp_manager_lock_named(m, "guard", true, &lk), 1);
    mp_mlock *lk2;
    TU_ASSERT_STATUS(mp_manager_attach_lock(m, "guard", &lk2), 0); /* finds the RLock */
    TU_ASSERT_STATUS(mp_mlock_acquire(lk, T_LONG), 0);
    TU_ASSERT_STATUS(mp_mlock_acquire(lk2, T_LONG), 0); /* same RLock, same thread */
    TU_ASSERT_STATUS(mp_mlock_release(lk2), 0);
    TU_ASSERT_STATUS(mp_mlock_release(lk), 0);
    mp_mlock *lk3;
    TU_ASSERT_STATUS(mp_manager_lock_named(m, "guard", false, &lk3), MP_ETYPE);
    assert_null(lk3);
    TU_ASSERT_STATUS(mp_manager_queue_named(m, "jobs", 0, &q), 1);
    mp_obj *info;
    TU_ASSERT_STATUS(mp_manager_info(m, &info), 0);
    take_repr(mp_obj_copy(mp_obj_dict_get_cstr(info, "names")), "['results', 'guard', 'jobs']");
    mp_obj_free(info);

    /* a name keeps its object alive after every proxy is gone... */
    mp_dict_free(d1);
    mp_dict_free(d2);
    mp_dict_free(d3);
    TU_ASSERT_STATUS(mp_manager_attach_dict(m, "results", &d1), 0);
    TU_ASSERT_STATUS(mp_dict_get_int(d1, "n", &v), 0);
    assert_int_equal(v, 2);
    /* ...and unlink forgets the name; the object lives while held */
    int64_t before = info_int(m, "objects");
    TU_ASSERT_STATUS(mp_manager_unlink(m, "results"), 0);
    TU_ASSERT_STATUS(mp_manager_unlink(m, "results"), MP_ENOOBJ);
    TU_ASSERT_STATUS(mp_manager_attach_dict(m, "results", &d2), MP_ENOOBJ);
    TU_ASSERT_STATUS(mp_dict_get_int(d1, "n", &v), 0);
    mp_dict_free(d1);
    assert_int_equal(info_int(m, "objects"), before - 1);
    mp_mlock_free(lk);
    mp_mlock_free(lk2);
    mp_mqueue_free(q);
    TU_ASSERT_STATUS(mp_manager_dict_named(m, "bad\xff", NULL, &d1), -EINVAL);
    mp_manager_free(m);
}

static int child_uses_inherited_proxy_later(void *arg)
{
    struct shared *sh = arg;
    int64_t v;
    /* first use: registers this process as a holder */
    if (mp_dict_get_int(sh->d, "x", &v) != 0 || v != 1)
        return 10;
    say(sh->fd);
    tu_sleep(0.3); /* meanwhile the parent frees its proxy */
    if (mp_dict_add_int(sh->d, "x", 1, &v) != 0 || v != 2)
        return 11;
    return 0;
}

static void test_anonymous_objects_live_while_some_process_holds_them(void **state)
{
    (void)state;
    mp_manager *m = start();
    assert_int_equal(info_int(m, "objects"), 0);
    struct shared sh = {0};
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &sh.d), 0);
    TU_ASSERT_STATUS(mp_dict_set_int(sh.d, "x", 1), 0);
    assert_int_equal(info_int(m, "objects"), 1);
    int p[2];
    assert_int_equal(pipe(p), 0);
    sh.fd = p[1];
    pid_t pid = tu_fork(child_uses_inherited_proxy_later, &sh);
    assert_int_equal(wait_byte(p[0], T_LONG), 0);
    mp_dict_free(sh.d); /* the child still holds it */
    assert_int_equal(info_int(m, "objects"), 1);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    /* the child's exit dropped the last hold */
    assert_true(eventually_objects(m, 0));
    close(p[0]);
    close(p[1]);

    /* a proxy that outlives its manager handle says so */
    mp_list *l;
    TU_ASSERT_STATUS(mp_manager_list(m, NULL, &l), 0);
    mp_manager_free(m);
    TU_ASSERT_STATUS(mp_list_append_int(l, 1), MP_ECLOSED);
    assert_int_equal(mp_list_len(l), MP_ECLOSED);
    mp_list_free(l);
}

/* ---- failures ----------------------------------------------------------------------------------
 */

static int child_adds_until_the_server_dies(void *arg)
{
    struct shared *sh = arg;
    int rc;
    bool said = false;
    double end = tu_now() + 30;
    do {
        rc = mp_dict_add_int(sh->d, "n", 1, NULL);
        if (!said && rc == 0) {
            say(sh->fd);
            said = true;
        }
    } while (rc == 0 && tu_now() < end);
    if (rc != MP_ENOSERVER)
        return 10;
    /* and again, promptly, without a server to connect to */
    double t0 = tu_now();
    rc = mp_dict_add_int(sh->d, "n", 1, NULL);
    return rc == MP_ENOSERVER && tu_now() - t0 < 2.0 ? 0 : 11;
}

static int child_blocks_in_acquire(void *arg)
{
    struct shared *sh = arg;
    say(sh->fd);
    double t0 = tu_now();
    int rc = mp_mlock_acquire(sh->lock, 30.0);
    return rc == MP_ENOSERVER && tu_now() - t0 < 10.0 ? 0 : 20;
}

static int child_blocks_in_get(void *arg)
{
    struct shared *sh = arg;
    say(sh->fd);
    mp_obj *x;
    double t0 = tu_now();
    int rc = mp_mqueue_get(sh->q, &x, MP_FOREVER); /* even "forever" ends */
    return rc == MP_ENOSERVER && tu_now() - t0 < 10.0 ? 0 : 30;
}

static void test_server_killed_mid_run_every_call_returns_enoserver(void **state)
{
    (void)state;
    mp_manager *m = start();
    struct shared sh = {0};
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &sh.d), 0);
    TU_ASSERT_STATUS(mp_manager_lock(m, &sh.lock), 0);
    TU_ASSERT_STATUS(mp_manager_queue(m, 0, &sh.q), 0);
    TU_ASSERT_STATUS(mp_mlock_acquire(sh.lock, T_LONG), 0); /* so the child waits */
    int p[2];
    assert_int_equal(pipe(p), 0);
    sh.fd = p[1];
    pid_t kids[4];
    kids[0] = tu_fork(child_adds_until_the_server_dies, &sh);
    kids[1] = tu_fork(child_adds_until_the_server_dies, &sh);
    kids[2] = tu_fork(child_blocks_in_acquire, &sh);
    kids[3] = tu_fork(child_blocks_in_get, &sh);
    for (int i = 0; i < 4; i++)
        assert_int_equal(wait_byte(p[0], T_LONG), 0);
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
    TU_ASSERT_STATUS(mp_dict_set_int(sh.d, "x", 1), MP_ENOSERVER);
    TU_ASSERT_STATUS(mp_mlock_release(sh.lock), MP_ENOSERVER);
    close(p[0]);
    close(p[1]);
    mp_dict_free(sh.d);
    mp_mlock_free(sh.lock);
    mp_mqueue_free(sh.q);
    TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
    struct stat st;
    assert_int_equal(stat(dir, &st), -1); /* the killed server's socket dir is cleaned up */
    mp_manager_free(m);
}

static void test_a_stopped_server_makes_calls_time_out_not_hang(void **state)
{
    (void)state;
    mp_manager *m = start();
    mp_dict *d;
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &d), 0);
    TU_ASSERT_STATUS(mp_manager_set_timeout(m, 0.3), 0);
    assert_int_equal(kill(mp_manager_pid(m), SIGSTOP), 0);
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_dict_set_int(d, "x", 1), MP_ETIMEDOUT);
    double dt = tu_now() - t0;
    assert_true(dt >= 0.29 && dt < 5.0);
    /* a blocking call: its own wait plus the call timeout */
    mp_mqueue *q = NULL;
    assert_int_equal(kill(mp_manager_pid(m), SIGCONT), 0);
    TU_ASSERT_STATUS(mp_manager_queue(m, 0, &q), 0);
    assert_int_equal(kill(mp_manager_pid(m), SIGSTOP), 0);
    mp_obj *x;
    t0 = tu_now();
    TU_ASSERT_STATUS(mp_mqueue_get(q, &x, 0.2), MP_ETIMEDOUT);
    dt = tu_now() - t0;
    assert_true(dt >= 0.49 && dt < 5.0);
    assert_int_equal(kill(mp_manager_pid(m), SIGCONT), 0);
    /* the server comes back; so do the calls */
    TU_ASSERT_STATUS(mp_manager_set_timeout(m, T_LONG), 0);
    TU_ASSERT_STATUS(mp_dict_set_int(d, "x", 2), 0);
    mp_mqueue_free(q);
    mp_dict_free(d);
    mp_manager_free(m);
}

/* Send raw frames on an authenticated connection; read the reply. */
static mp_obj *raw_call(mp_conn *c, const void *frame, size_t len)
{
    assert_int_equal(mp_conn_send_bytes(c, frame, len), 0);
    mp_obj *r = NULL;
    TU_ASSERT_STATUS(mp_conn_recv(c, &r, T_LONG), 0);
    return r;
}

static int reply_code(mp_obj *r)
{
    const char *k;
    int64_t code = 0;
    if (mp_obj_get_str(mp_obj_list_get(r, 0), &k, NULL) != 0)
        return 1;
    if (strcmp(k, "#RETURN") == 0)
        code = 0;
    else if (mp_obj_get_int(mp_obj_list_get(r, 1), &code) != 0)
        code = 2;
    mp_obj_free(r);
    return (int)code;
}

static mp_obj *request(int64_t ident, const char *method, mp_obj *args)
{
    mp_obj *t = mp_obj_tuple_new();
    mp_obj_tuple_append(t, I(ident));
    mp_obj_tuple_append(t, S(method));
    mp_obj_tuple_append(t, args ? args : mp_obj_tuple_new());
    return t;
}

static int send_obj(mp_conn *c, mp_obj *req)
{
    assert_int_equal(mp_conn_send(c, req), 0);
    mp_obj_free(req);
    mp_obj *r = NULL;
    TU_ASSERT_STATUS(mp_conn_recv(c, &r, T_LONG), 0);
    return reply_code(r);
}

static void test_malformed_requests_get_error_replies_and_the_server_serves_on(void **state)
{
    (void)state;
    mp_manager *m = start();
    mp_dict *d;
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &d), 0);
    size_t keylen;
    const void *key = mp_manager_authkey(m, &keylen);
    mp_conn *c;
    TU_ASSERT_STATUS(mp_client_connect(&c, mp_manager_address(m), key, keylen, T_LONG), 0);
    /* not a pickle */
    assert_int_equal(reply_code(raw_call(c, "garbage", 7)), MP_EPROTO);
    /* a pickle that would call code: refused, never run */
    static const char evil[] = "\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x04true\x85R.";
    assert_int_equal(reply_code(raw_call(c, evil, sizeof evil - 1)), MP_EPROTO);
    /* a value that is not (ident, method, args) */
    assert_int_equal(send_obj(c, I(5)), MP_EPROTO);
    /* anything before hello */
    assert_int_equal(send_obj(c, request(0, "info", NULL)), MP_ESTATE);
    mp_obj *hello = mp_obj_tuple_new();
    mp_obj_tuple_append(hello, I(12345));
    mp_obj_tuple_append(hello, I(getpid()));
    mp_obj_tuple_append(hello, I(0));
    mp_obj_tuple_append(hello, I(1));
    assert_int_equal(send_obj(c, request(0, "hello", hello)), 0);
    assert_int_equal(send_obj(c, request(0, "no such method", NULL)), MP_EPROTO);
    assert_int_equal(send_obj(c, request(987654, "get", NULL)), MP_ENOOBJ);
    mp_obj *args = mp_obj_tuple_new();
    mp_obj_tuple_append(args, I(1));
    mp_obj_tuple_append(args, I(2));
    mp_obj_tuple_append(args, I(3));
    mp_obj_tuple_append(args, I(4));
    mp_obj *idtuple = mp_obj_tuple_new();
    mp_obj_tuple_append(idtuple, S("dict"));
    mp_obj_tuple_append(idtuple, mp_obj_none());
    mp_obj_tuple_append(idtuple, mp_obj_none());
    assert_int_equal(send_obj(c, request(0, "create", idtuple)), 0);
    /* wrong argument counts and types for a real object */
    mp_obj *info;
    TU_ASSERT_STATUS(mp_manager_info(m, &info), 0);
    mp_obj_free(info);
    assert_int_equal(send_obj(c, request(0, "create", args)), MP_EPROTO);
    /* the proxy kept working all along */
    TU_ASSERT_STATUS(mp_dict_set_int(d, "alive", 1), 0);

    /* a frame claiming more than the limit: an error reply, then hang-up
     * (the stream cannot be read on, as with Python's maxlength) */
    unsigned char big[4] = {0x40, 0, 0, 0}; /* 1 GiB */
    assert_int_equal(write(mp_conn_fileno(c), big, 4), 4);
    mp_obj *r = NULL;
    TU_ASSERT_STATUS(mp_conn_recv(c, &r, T_LONG), 0);
    assert_int_equal(reply_code(r), MP_ETOOLONG);
    void *buf;
    size_t len;
    TU_ASSERT_STATUS(mp_conn_recv_bytes(c, &buf, &len, 0, T_LONG), MP_EOF);
    mp_conn_free(c);
    /* a corrupt length header: the same */
    TU_ASSERT_STATUS(mp_client_connect(&c, mp_manager_address(m), key, keylen, T_LONG), 0);
    unsigned char neg[4] = {0x80, 0, 0, 1};
    assert_int_equal(write(mp_conn_fileno(c), neg, 4), 4);
    TU_ASSERT_STATUS(mp_conn_recv(c, &r, T_LONG), 0);
    assert_int_equal(reply_code(r), MP_EPROTO);
    mp_conn_free(c);
    /* a client with a wrong key never gets in */
    TU_ASSERT_STATUS(mp_client_connect(&c, mp_manager_address(m), "wrong", 5, T_LONG), MP_EAUTH);

    int64_t v;
    TU_ASSERT_STATUS(mp_dict_get_int(d, "alive", &v), 0);
    assert_int_equal(v, 1);
    mp_dict_free(d);
    mp_manager_free(m);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

/* A random value: scalars, and containers a level or two deep. */
static mp_obj *random_value(int depth)
{
    switch (rnd() % (depth > 1 ? 6 : 9)) {
    case 0:
        return mp_obj_none();
    case 1:
        return I((int64_t)(rnd() % 7) - 3);
    case 2:
        return I((int64_t)rnd());
    case 3:
        return mp_obj_float((double)(rnd() % 100) / 8.0 - 2.0);
    case 4: {
        static const char *const words[] = {"a", "count", "", "\xe5\xa6\xb9", "x y"};
        return S(words[rnd() % 5]);
    }
    case 5:
        return mp_obj_bytes("\0\1", rnd() % 3);
    case 6: {
        mp_obj *l = mp_obj_list_new();
        for (uint64_t i = rnd() % 4; i > 0; i--)
            mp_obj_list_append(l, random_value(depth + 1));
        return l;
    }
    case 7: {
        mp_obj *t = mp_obj_tuple_new();
        for (uint64_t i = rnd() % 4; i > 0; i--)
            mp_obj_tuple_append(t, random_value(depth + 1));
        return t;
    }
    default: {
        mp_obj *d = mp_obj_dict_new();
        for (uint64_t i = rnd() % 3; i > 0; i--) {
            mp_obj *k = random_value(2), *v = random_value(depth + 1);
            if (mp_obj_dict_set(d, k, v) < 0) { /* unhashable key */
                mp_obj_free(k);
                mp_obj_free(v);
            }
        }
        return d;
    }
    }
}

static void test_random_requests_each_get_a_reply_and_break_nothing(void **state)
{
    (void)state;
    /* Methods with the ident of the object of their kind (0 the manager, 1
     * the dict, 2 the list, 3 the lock, 4 the queue made below) and their
     * usual argument count: mostly used, so that most requests reach the
     * handlers rather than stop at the checks. */
    static const struct {
        const char *name;
        int kind, nargs;
    } methods[] = {
        {"get", 1, 1},      {"set", 1, 2},      {"del", 1, 1},        {"contains", 1, 1},
        {"len", 1, 0},      {"keys", 1, 0},     {"values", 1, 0},     {"items", 1, 0},
        {"clear", 1, 0},    {"pop", 1, 1},      {"popitem", 1, 0},    {"setdefault", 1, 2},
        {"update", 1, 1},   {"copy", 1, 0},     {"add", 1, 2},        {"cas", 1, 3},
        {"append", 2, 1},   {"extend", 2, 1},   {"insert", 2, 2},     {"slice", 2, 2},
        {"index", 2, 1},    {"count", 2, 1},    {"remove", 2, 1},     {"get", 2, 1},
        {"set", 2, 2},      {"pop", 2, 1},      {"del", 2, 1},        {"acquire", 3, 2},
        {"release", 3, 1},  {"put", 4, 2},      {"get", 4, 1},        {"qsize", 4, 0},
        {"empty", 4, 0},    {"full", 4, 0},     {"join", 4, 1},       {"task_done", 4, 0},
        {"create", 0, 3},   {"attach", 0, 2},   {"incref", 0, 1},     {"release", 0, 1},
        {"unlink", 0, 1},   {"info", 0, 0},     {"ping", 0, 0},       {"hello", 0, 4},
        {"shm", 0, 1},      {"nonsense", 0, 0},
    };
    const size_t nmethods = sizeof methods / sizeof methods[0];
    int n = env_int("MPIPC_MANAGER_OPS", 10000) / 5;
    mp_manager *m = start();
    mp_dict *d;
    mp_list *l;
    mp_mlock *lk;
    mp_mqueue *q;
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &d), 0);
    TU_ASSERT_STATUS(mp_manager_list(m, NULL, &l), 0);
    TU_ASSERT_STATUS(mp_manager_lock(m, &lk), 0);
    TU_ASSERT_STATUS(mp_manager_queue(m, 2, &q), 0);
    size_t keylen;
    const void *key = mp_manager_authkey(m, &keylen);
    mp_conn *c;
    TU_ASSERT_STATUS(mp_client_connect(&c, mp_manager_address(m), key, keylen, T_LONG), 0);
    mp_obj *hello = mp_obj_tuple_new();
    mp_obj_tuple_append(hello, I(777));
    mp_obj_tuple_append(hello, I(getpid()));
    mp_obj_tuple_append(hello, I(0));
    mp_obj_tuple_append(hello, I(1));
    assert_int_equal(send_obj(c, request(0, "hello", hello)), 0);
    int64_t ids[6] = {0, 1, 2, 3, 4, 999};
    for (int i = 0; i < n; i++) {
        int64_t ident = ids[rnd() % 6];
        size_t mi = rnd() % nmethods;
        if (ident <= 4 && rnd() % 5) /* mostly a method of the target's kind */
            while (methods[mi].kind != ident)
                mi = rnd() % nmethods;
        const char *meth = methods[mi].name;
        mp_obj *args = mp_obj_tuple_new();
        uint64_t nargs = rnd() % 5 ? (uint64_t)methods[mi].nargs : rnd() % 4;
        for (uint64_t k = 0; k < nargs; k++) {
            /* small ints make valid ids, indexes and kinds likelier */
            uint64_t pick = rnd() % 4;
            mp_obj *a = pick == 0   ? I((int64_t)(rnd() % 6))
                        : pick == 1 ? S(rnd() % 2 ? "dict" : "queue")
                                    : random_value(0);
            mp_obj_tuple_append(args, a);
        }
        /* Nothing may wait: a wait could outlast the test. */
        bool waits = strcmp(meth, "acquire") == 0 || strcmp(meth, "join") == 0 ||
                     (strcmp(meth, "get") == 0 && ident == 4) || strcmp(meth, "put") == 0 ||
                     strcmp(meth, "shutdown") == 0;
        if (waits) {
            mp_obj_free(args);
            args = mp_obj_tuple_new();
            if (strcmp(meth, "put") == 0)
                mp_obj_tuple_append(args, random_value(0));
            mp_obj_tuple_append(args, mp_obj_float(0.0));
            if (strcmp(meth, "acquire") == 0)
                mp_obj_tuple_append(args, I(1));
        }
        mp_obj *req = request(ident, meth, args);
        assert_int_equal(mp_conn_send(c, req), 0);
        mp_obj_free(req);
        mp_obj *r = NULL;
        TU_ASSERT_STATUS(mp_conn_recv(c, &r, T_LONG), 0); /* every request is answered */
        assert_int_equal(mp_obj_type(r), MP_TYPE_TUPLE);
        mp_obj_free(r);
    }
    mp_conn_free(c);
    /* the server is sane and the proxies work */
    TU_ASSERT_STATUS(mp_dict_set_int(d, "after", 1), 0);
    int64_t v;
    TU_ASSERT_STATUS(mp_dict_get_int(d, "after", &v), 0);
    assert_int_equal(v, 1);
    TU_ASSERT_STATUS(mp_list_append_int(l, 1), 0);
    mp_mlock *lk2;
    TU_ASSERT_STATUS(mp_manager_lock(m, &lk2), 0);
    TU_ASSERT_STATUS(mp_mlock_acquire(lk2, T_LONG), 0);
    TU_ASSERT_STATUS(mp_mlock_release(lk2), 0);
    mp_mlock_free(lk2);
    assert_true(info_int(m, "sessions") >= 1);
    mp_dict_free(d);
    mp_list_free(l);
    mp_mlock_free(lk);
    mp_mqueue_free(q);
    mp_manager_free(m);
}

/* ---- mailboxes (shared-memory calls of a started manager) --------------------- */

static bool info_mailbox(mp_manager *m)
{
    mp_obj *info;
    TU_ASSERT_STATUS(mp_manager_info(m, &info), 0);
    bool v = false;
    assert_int_equal(mp_obj_get_bool(mp_obj_dict_get_cstr(info, "mailbox"), &v), 0);
    mp_obj_free(info);
    return v;
}

/* Sizes around a mailbox slot's capacity (src/manager/mgr.h: 960 bytes of pickle),
 * so requests and replies go by the slot, by the socket, and switch. */
static const size_t mail_sizes[] = {0,   1,    100,  880,  900,   920, 930, 940,    950, 960,
                                    970, 1000, 1100, 4000, 70000, 3,   950, 100000, 10};

/* Set and read back values of every size; returns 0 or a failure code. */
static int mail_roundtrips(mp_dict *d, unsigned seed)
{
    unsigned char *buf = malloc(100000);
    if (!buf)
        return 90;
    for (size_t k = 0; k < sizeof mail_sizes / sizeof mail_sizes[0]; k++) {
        size_t n = mail_sizes[k];
        for (size_t i = 0; i < n; i++)
            buf[i] = (unsigned char)(seed + k + i * 7);
        if (mp_dict_set_bytes(d, "v", buf, n) != 0) {
            free(buf);
            return 91;
        }
        void *back = NULL;
        size_t len = 0;
        int rc = mp_dict_get_bytes(d, "v", &back, &len);
        bool same = rc == 0 && len == n && (n == 0 || memcmp(back, buf, n) == 0);
        free(back);
        int64_t c;
        if (!same || mp_dict_add_int(d, "count", 1, &c) != 0) {
            free(buf);
            return 92;
        }
    }
    free(buf);
    return 0;
}

static int child_mail_roundtrips(void *arg)
{
    mp_dict *d = arg;
    return mail_roundtrips(d, 77);
}

/* A started manager carries calls through shared memory; a value of any
 * size still comes back whole, in a child too, and a handle that connects
 * by address (no shared memory) talks by its socket alone - the same
 * results either way. */
static void test_started_manager_calls_go_through_mailboxes_of_any_size(void **state)
{
    (void)state;
    mp_manager *m = start();
    assert_true(info_mailbox(m));
    mp_dict *d;
    TU_ASSERT_STATUS(mp_manager_dict_named(m, "mail", NULL, &d), 1);
    assert_int_equal(mail_roundtrips(d, 1), 0);
    pid_t kid = tu_fork(child_mail_roundtrips, d);
    assert_int_equal(tu_wait_child(kid, 60.0), 0);

    size_t keylen;
    const void *key = mp_manager_authkey(m, &keylen);
    mp_manager *m2;
    TU_ASSERT_STATUS(mp_manager_connect(&m2, mp_manager_address(m), key, keylen, NULL), 0);
    assert_false(info_mailbox(m2));
    assert_true(info_int(m2, "mailboxes") >= 1); /* the starter's */
    mp_dict *d2;
    TU_ASSERT_STATUS(mp_manager_attach_dict(m2, "mail", &d2), 0);
    assert_int_equal(mail_roundtrips(d2, 5), 0);
    int64_t count;
    TU_ASSERT_STATUS(mp_dict_get_int(d, "count", &count), 0);
    assert_int_equal(count, 3 * (int64_t)(sizeof mail_sizes / sizeof mail_sizes[0]));
    mp_dict_free(d2);
    mp_manager_free(m2);
    mp_dict_free(d);
    mp_manager_free(m);
}

struct mail_getter {
    mp_mqueue *q;
    int rc;
    int64_t got;
};

static void *mail_getter_thread(void *arg)
{
    struct mail_getter *g = arg;
    mp_obj *item = NULL;
    g->rc = mp_mqueue_get(g->q, &item, 3 * T_LONG);
    if (g->rc == 0 && mp_obj_get_int(item, &g->got) != 0)
        g->rc = MP_ETYPE;
    mp_obj_free(item);
    return NULL;
}

#define MAIL_THREADS 140 /* more than the 128 mailbox slots (src/manager/mgr.h) */

/* When every mailbox slot is taken, further connections simply use their
 * sockets: 140 threads that wait in get() at once (a connection each) all
 * get their item. */
static void test_more_connections_than_mailboxes_fall_back_to_the_socket(void **state)
{
    (void)state;
    mp_manager *m = start();
    mp_mqueue *q;
    TU_ASSERT_STATUS(mp_manager_queue(m, 0, &q), 0);
    static struct mail_getter g[MAIL_THREADS];
    static pthread_t t[MAIL_THREADS];
    for (int i = 0; i < MAIL_THREADS; i++) {
        g[i] = (struct mail_getter){q, -1, -1};
        assert_int_equal(pthread_create(&t[i], NULL, mail_getter_thread, &g[i]), 0);
    }
    double end = tu_now() + 3 * T_LONG;
    while (info_int(m, "connections") < MAIL_THREADS + 1 && tu_now() < end)
        tu_sleep(0.01);
    assert_int_equal(info_int(m, "connections"), MAIL_THREADS + 1);
    int64_t boxes = info_int(m, "mailboxes");
    assert_true(boxes >= 1 && boxes < MAIL_THREADS + 1);
    int64_t sum = 0;
    for (int i = 0; i < MAIL_THREADS; i++) {
        mp_obj *item = mp_obj_int(i);
        TU_ASSERT_STATUS(mp_mqueue_put(q, item, T_LONG), 0);
        mp_obj_free(item);
        sum += i;
    }
    for (int i = 0; i < MAIL_THREADS; i++) {
        pthread_join(t[i], NULL);
        TU_ASSERT_STATUS(g[i].rc, 0);
        sum -= g[i].got;
    }
    assert_int_equal(sum, 0);
    mp_mqueue_free(q);
    mp_manager_free(m);
}

/* Int replies of every pickled width (BININT1, BININT2, BININT, LONG1 of 1
 * to 8 bytes, both signs) come back exact, and so do bools and None as
 * get_int() sees them (an int, as Python's int(True); MP_ETYPE). */
static void test_int_replies_of_every_width_read_back_exactly(void **state)
{
    (void)state;
    mp_manager *m = start();
    mp_dict *d;
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &d), 0);
    const int64_t vals[] = {0,
                            1,
                            255,
                            256,
                            65535,
                            65536,
                            -1,
                            -128,
                            -129,
                            INT32_MAX,
                            (int64_t)INT32_MAX + 1,
                            INT32_MIN,
                            (int64_t)INT32_MIN - 1,
                            (int64_t)1 << 39,
                            -((int64_t)1 << 39),
                            ((int64_t)1 << 47) - 1,
                            (int64_t)1 << 55,
                            INT64_MAX,
                            INT64_MIN,
                            INT64_MIN + 1};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        int64_t got = 12345, sum = 0;
        TU_ASSERT_STATUS(mp_dict_set_int(d, "v", vals[i]), 0);
        TU_ASSERT_STATUS(mp_dict_get_int(d, "v", &got), 0);
        assert_true(got == vals[i]);
        TU_ASSERT_STATUS(mp_dict_set_int(d, "a", 0), 0);
        TU_ASSERT_STATUS(mp_dict_add_int(d, "a", vals[i], &sum), 0);
        assert_true(sum == vals[i]);
    }
    mp_obj *t = mp_obj_bool(true), *none = mp_obj_none();
    mp_obj *kb = S("b"), *kn = S("n");
    TU_ASSERT_STATUS(mp_dict_set(d, kb, t), 0);
    TU_ASSERT_STATUS(mp_dict_set(d, kn, none), 0);
    int64_t v = -1;
    TU_ASSERT_STATUS(mp_dict_get_int(d, "b", &v), 0);
    assert_int_equal(v, 1);
    TU_ASSERT_STATUS(mp_dict_get_int(d, "n", &v), MP_ETYPE);
    TU_ASSERT_STATUS(mp_dict_add_int(d, "b", 2, &v), 0); /* True + 2, as in Python */
    assert_int_equal(v, 3);
    mp_obj_free(t);
    mp_obj_free(none);
    mp_obj_free(kb);
    mp_obj_free(kn);
    mp_dict_free(d);
    mp_manager_free(m);
}

/* A child that keeps the server busy through its mailbox until told to
 * stop (or for 20 s at most). */
static int child_busy_until_stop(void *arg)
{
    mp_dict *d = arg;
    double end = tu_now() + 20.0;
    for (int i = 0; tu_now() < end; i++) {
        if (mp_dict_add_int(d, "busy", 1, NULL) != 0)
            return 1;
        int64_t stop = 0;
        if (i % 64 == 0 && mp_dict_get_int(d, "stop", &stop) == 0 && stop)
            return 0;
    }
    return 2; /* never told to stop */
}

/* The server looks at its sockets however busy its mailboxes keep it: a
 * client that talks by socket alone is served while two children hammer
 * the server through their mailboxes. */
static void test_socket_clients_are_served_while_mailboxes_keep_the_server_busy(void **state)
{
    (void)state;
    mp_manager *m = start();
    mp_dict *d;
    TU_ASSERT_STATUS(mp_manager_dict_named(m, "busy", NULL, &d), 1);
    TU_ASSERT_STATUS(mp_dict_set_int(d, "stop", 0), 0);
    pid_t kids[2];
    for (int i = 0; i < 2; i++)
        kids[i] = tu_fork(child_busy_until_stop, d);
    double end = tu_now() + T_LONG;
    int64_t busy = 0;
    while (busy < 1000 && tu_now() < end) {
        int rc = mp_dict_get_int(d, "busy", &busy);
        assert_true(rc == 0 || rc == MP_EKEY);
    }
    size_t keylen;
    const void *key = mp_manager_authkey(m, &keylen);
    mp_manager *m2;
    TU_ASSERT_STATUS(mp_manager_connect(&m2, mp_manager_address(m), key, keylen, NULL), 0);
    mp_dict *d2;
    TU_ASSERT_STATUS(mp_manager_attach_dict(m2, "busy", &d2), 0);
    double t0 = tu_now();
    for (int i = 0; i < 200; i++)
        TU_ASSERT_STATUS(mp_dict_add_int(d2, "socket", 1, NULL), 0);
    double dt = tu_now() - t0;
    TU_ASSERT_STATUS(mp_dict_set_int(d2, "stop", 1), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(tu_wait_child(kids[i], 30.0), 0);
    assert_true(dt < 10.0); /* not held off until the children gave up */
    mp_dict_free(d2);
    mp_manager_free(m2);
    mp_dict_free(d);
    mp_manager_free(m);
}

/* A request built by hand: PROTO 4, ident (BININT1), a short str method,
 * then `args` (the argument pickles and the args tuple opcode), TUPLE3,
 * STOP, then `tail`. */
static size_t hand_request(unsigned char *out, int ident, const char *method, const void *args,
                           size_t alen, const void *tail, size_t tlen)
{
    size_t n = 0, ml = strlen(method);
    out[n++] = 0x80;
    out[n++] = 4;
    out[n++] = 'K';
    out[n++] = (unsigned char)ident;
    out[n++] = 0x8c;
    out[n++] = (unsigned char)ml;
    memcpy(out + n, method, ml);
    n += ml;
    memcpy(out + n, args, alen);
    n += alen;
    out[n++] = 0x87;
    out[n++] = '.';
    if (tlen)
        memcpy(out + n, tail, tlen);
    return n + tlen;
}

/* The server reads the common requests of libmpipc clients without its
 * general decoder; hand-made bytes show that both readings agree: a key
 * written one way is found when written another, ints of every width and
 * floats and bytes arrive intact, and what the decoder refuses (bad UTF-8,
 * bytes after STOP) or the checks refuse (too many arguments) still is. */
static void test_hand_written_requests_mean_what_the_decoder_says(void **state)
{
    (void)state;
    mp_manager *m = start();
    size_t keylen;
    const void *key = mp_manager_authkey(m, &keylen);
    mp_conn *c;
    TU_ASSERT_STATUS(mp_client_connect(&c, mp_manager_address(m), key, keylen, T_LONG), 0);
    mp_obj *hello = mp_obj_tuple_new();
    mp_obj_tuple_append(hello, I(4242));
    mp_obj_tuple_append(hello, I(getpid()));
    mp_obj_tuple_append(hello, I(0));
    mp_obj_tuple_append(hello, I(1));
    assert_int_equal(send_obj(c, request(0, "hello", hello)), 0);
    mp_obj *ca = mp_obj_tuple_new();
    mp_obj_tuple_append(ca, S("dict"));
    mp_obj_tuple_append(ca, S("hand"));
    mp_obj_tuple_append(ca, mp_obj_none());
    mp_obj *creq = request(0, "create", ca);
    TU_ASSERT_STATUS(mp_conn_send(c, creq), 0);
    mp_obj_free(creq);
    mp_obj *r = NULL;
    TU_ASSERT_STATUS(mp_conn_recv(c, &r, T_LONG), 0);
    int64_t id = -1;
    assert_int_equal(mp_obj_get_int(mp_obj_list_get(mp_obj_list_get(r, 1), 0), &id), 0);
    mp_obj_free(r);
    assert_true(id > 0 && id < 256);
    mp_dict *d;
    TU_ASSERT_STATUS(mp_manager_attach_dict(m, "hand", &d), 0);

    unsigned char f[128];
    /* set('k\u00e9', LONG1 0x0102030405), key as SHORT_BINUNICODE */
    static const unsigned char a1[] = {0x8c, 3, 'k', 0xc3, 0xa9, 0x8a, 5, 5, 4, 3, 2, 1, 0x86};
    size_t n = hand_request(f, (int)id, "set", a1, sizeof a1, NULL, 0);
    assert_int_equal(reply_code(raw_call(c, f, n)), 0);
    int64_t v = 0;
    TU_ASSERT_STATUS(mp_dict_get_int(d, "k\xc3\xa9", &v), 0);
    assert_true(v == 0x0102030405);
    /* the same key as BINUNICODE (4-byte length): the general decoder */
    static const unsigned char a2[] = {'X',  3,   0,    0,    0,    'k',  0xc3,
                                       0xa9, 'J', 0xf9, 0xff, 0xff, 0xff, 0x86};
    n = hand_request(f, (int)id, "set", a2, sizeof a2, NULL, 0);
    assert_int_equal(reply_code(raw_call(c, f, n)), 0);
    TU_ASSERT_STATUS(mp_dict_get_int(d, "k\xc3\xa9", &v), 0);
    assert_int_equal(v, -7);
    assert_int_equal(mp_dict_len(d), 1);
    /* a float and bytes */
    static const unsigned char a3[] = {0x8c, 1,    'f',  'G',  0x40, 0x09, 0x21,
                                       0xfb, 0x54, 0x44, 0x2d, 0x18, 0x86}; /* pi */
    n = hand_request(f, (int)id, "set", a3, sizeof a3, NULL, 0);
    assert_int_equal(reply_code(raw_call(c, f, n)), 0);
    static const unsigned char a4[] = {0x8c, 1, 'b', 'C', 3, 0, 0xff, 'x', 0x86};
    n = hand_request(f, (int)id, "set", a4, sizeof a4, NULL, 0);
    assert_int_equal(reply_code(raw_call(c, f, n)), 0);
    mp_obj *fk = S("f"), *fv = NULL;
    TU_ASSERT_STATUS(mp_dict_get(d, fk, &fv), 0);
    double pi = 0;
    assert_int_equal(mp_obj_get_float(fv, &pi), 0);
    assert_true(pi == 3.141592653589793);
    mp_obj_free(fk);
    mp_obj_free(fv);
    void *bytes = NULL;
    size_t blen = 0;
    TU_ASSERT_STATUS(mp_dict_get_bytes(d, "b", &bytes, &blen), 0);
    assert_int_equal(blen, 3);
    assert_memory_equal(bytes, "\0\xffx", 3);
    free(bytes);
    /* refusals: a key that is not UTF-8, bytes after STOP, nine arguments */
    static const unsigned char a5[] = {0x8c, 2, 0xc3, 0x28, 'K', 1, 0x86};
    n = hand_request(f, (int)id, "set", a5, sizeof a5, NULL, 0);
    assert_int_equal(reply_code(raw_call(c, f, n)), MP_EPROTO);
    n = hand_request(f, (int)id, "set", a1, sizeof a1, "N", 1);
    assert_int_equal(reply_code(raw_call(c, f, n)), MP_EPROTO);
    static const unsigned char a6[] = {'(', 'N', 'N', 'N', 'N', 'N', 'N', 'N', 'N', 'N', 't'};
    n = hand_request(f, (int)id, "set", a6, sizeof a6, NULL, 0);
    assert_int_equal(reply_code(raw_call(c, f, n)), MP_EPROTO);
    assert_int_equal(mp_dict_len(d), 3);
    mp_conn_free(c);
    mp_dict_free(d);
    mp_manager_free(m);
}

/* Say hello on a raw connection, with a reply limit (0: the server's). */
static void raw_hello(mp_conn *c, int64_t session, int64_t max_reply)
{
    mp_obj *hello = mp_obj_tuple_new();
    mp_obj_tuple_append(hello, I(session));
    mp_obj_tuple_append(hello, I(getpid()));
    mp_obj_tuple_append(hello, I(max_reply));
    mp_obj_tuple_append(hello, I(1));
    assert_int_equal(send_obj(c, request(0, "hello", hello)), 0);
}

/* The args of a hand-written request: n Nones and the tuple opcode, in the
 * form the server's fast path reads, or (general) followed by a MEMOIZE,
 * which only the general decoder takes. */
static size_t none_args(unsigned char *out, int n, bool general)
{
    size_t k = 0;
    if (n > 3)
        out[k++] = '(';
    for (int i = 0; i < n; i++)
        out[k++] = 'N';
    out[k++] = n > 3 ? 't' : n == 0 ? ')' : (unsigned char)(0x85 + n - 1);
    if (general)
        out[k++] = 0x94;
    return k;
}

/* docs/manager.md: a request with the wrong number of arguments gets
 * MP_EPROTO and the server goes on serving - shutdown('x') included. Every
 * method of the manager and some of each object kind, each one argument
 * short and one too many, through both of the server's readers. */
static void test_every_request_checks_its_argument_count_and_the_server_serves_on(void **state)
{
    (void)state;
    mp_manager *m = start();
    mp_dict *d;
    mp_list *l;
    mp_mqueue *q;
    mp_mlock *lk;
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &d), 0);
    TU_ASSERT_STATUS(mp_manager_list(m, NULL, &l), 0);
    TU_ASSERT_STATUS(mp_manager_queue(m, 0, &q), 0);
    TU_ASSERT_STATUS(mp_manager_lock(m, &lk), 0);
    TU_ASSERT_STATUS(mp_dict_set_int(d, "k", 1), 0);
    mp_obj *none = mp_obj_none();
    TU_ASSERT_STATUS(mp_mqueue_put(q, none, T_LONG), 0);
    mp_obj_free(none);
    size_t keylen;
    const void *key = mp_manager_authkey(m, &keylen);
    mp_conn *c;
    TU_ASSERT_STATUS(mp_client_connect(&c, mp_manager_address(m), key, keylen, T_LONG), 0);
    raw_hello(c, 777, 0);
    /* the ids of the objects: the raw connection attaches nothing, it
     * only names them (the server checks no holding) */
    struct {
        int ident;
        const char *method;
        int min, max;
    } cases[] = {
        {0, "shutdown", 0, 0}, {0, "ping", 0, 0},      {0, "info", 0, 0},    {0, "hello", 4, 4},
        {0, "create", 3, 3},   {0, "attach", 2, 2},    {0, "incref", 1, 1},  {0, "release", 1, 1},
        {0, "unlink", 1, 1},   {0, "shm", 1, 1},       {1, "len", 0, 0},     {1, "cas", 2, 3},
        {1, "popitem", 0, 0},  {2, "pop", 0, 1},       {2, "insert", 2, 2},  {3, "get", 1, 1},
        {3, "put", 2, 2},      {3, "task_done", 0, 0}, {4, "acquire", 2, 2}, {4, "release", 1, 1},
    };
    unsigned char f[256], a[32];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int general = 0; general < 2; general++) {
            int counts[2] = {cases[i].min - 1, cases[i].max + 1};
            for (int k = 0; k < 2; k++) {
                if (counts[k] < 0)
                    continue;
                size_t an = none_args(a, counts[k], general);
                size_t n = hand_request(f, cases[i].ident, cases[i].method, a, an, NULL, 0);
                int code = reply_code(raw_call(c, f, n));
                if (code != MP_EPROTO) {
                    print_error("%d.%s with %d args (%s): %d\n", cases[i].ident, cases[i].method,
                                counts[k], general ? "general" : "fast", code);
                    fail();
                }
            }
        }
    }
    /* nothing changed, and everyone is still served */
    assert_int_equal(reply_code(raw_call(c, f, hand_request(f, 0, "ping", ")", 1, NULL, 0))), 0);
    assert_false(pid_gone(mp_manager_pid(m)));
    assert_int_equal(mp_dict_len(d), 1);
    assert_int_equal(mp_list_len(l), 0);
    assert_int_equal(mp_mqueue_qsize(q), 1);
    TU_ASSERT_STATUS(mp_mlock_acquire(lk, MP_NOWAIT), 0);
    TU_ASSERT_STATUS(mp_mlock_release(lk), 0);
    mp_conn_free(c);
    mp_mlock_free(lk);
    mp_mqueue_free(q);
    mp_list_free(l);
    mp_dict_free(d);
    mp_manager_free(m);
}

/* docs/manager.md: hello's max_reply of 0 or less means the server's own
 * request limit, not the 1 GiB ceiling: a reply larger than that limit is
 * MP_ETOOLONG. */
static void test_hello_without_a_reply_limit_gets_the_servers_request_limit(void **state)
{
    (void)state;
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    o.max_message = 1 << 20;
    mp_manager *m;
    TU_ASSERT_STATUS(mp_manager_start(&m, &o), 0);
    mp_dict *d;
    TU_ASSERT_STATUS(mp_manager_dict_named(m, "big", NULL, &d), 1);
    size_t n = 600 << 10;
    char *blob = calloc(1, n);
    assert_non_null(blob);
    TU_ASSERT_STATUS(mp_dict_set_bytes(d, "a", blob, n), 0);
    TU_ASSERT_STATUS(mp_dict_set_bytes(d, "b", blob, n), 0);
    free(blob);
    size_t keylen;
    const void *key = mp_manager_authkey(m, &keylen);
    for (int64_t limit = 0; limit >= -1; limit--) {
        mp_conn *c;
        TU_ASSERT_STATUS(mp_client_connect(&c, mp_manager_address(m), key, keylen, T_LONG), 0);
        raw_hello(c, 4243 + limit, limit);
        mp_obj *aa = mp_obj_tuple_new();
        mp_obj_tuple_append(aa, S("dict"));
        mp_obj_tuple_append(aa, S("big"));
        mp_obj *r = NULL;
        mp_obj *req = request(0, "attach", aa);
        TU_ASSERT_STATUS(mp_conn_send(c, req), 0);
        mp_obj_free(req);
        TU_ASSERT_STATUS(mp_conn_recv(c, &r, T_LONG), 0);
        int64_t id = -1;
        assert_int_equal(mp_obj_get_int(mp_obj_list_get(mp_obj_list_get(r, 1), 0), &id), 0);
        mp_obj_free(r);
        /* 1.2 MB of reply against a 1 MiB limit */
        assert_int_equal(send_obj(c, request(id, "copy", NULL)), MP_ETOOLONG);
        assert_int_equal(send_obj(c, request(id, "len", NULL)), 0);
        mp_conn_free(c);
    }
    mp_dict_free(d);
    mp_manager_free(m);
}

struct getter {
    mp_mqueue *q;
    int rc;
    size_t len; /* of the bytes item it got */
    pthread_t t;
};

static void *getter_main(void *arg)
{
    struct getter *g = arg;
    mp_obj *x = NULL;
    g->rc = mp_mqueue_get(g->q, &x, T_LONG);
    const unsigned char *p;
    if (g->rc == 0 && mp_obj_get_bytes(x, &p, &g->len) != 0)
        g->rc = 1;
    mp_obj_free(x);
    return NULL;
}

static void start_getter(struct getter *g, mp_manager *m, const char *name)
{
    memset(g, 0, sizeof *g);
    TU_ASSERT_STATUS(mp_manager_attach_queue(m, name, &g->q), 0);
    assert_int_equal(pthread_create(&g->t, NULL, getter_main, g), 0);
}

static void join_getter(struct getter *g)
{
    pthread_join(g->t, NULL);
    mp_mqueue_free(g->q);
}

static size_t bytes_len(const mp_obj *o)
{
    const unsigned char *p;
    size_t n = 0;
    assert_int_equal(mp_obj_get_bytes(o, &p, &n), 0);
    return n;
}

/* An error never loses data: a reader whose max_message an item's reply
 * exceeds gets MP_ETOOLONG and the object stays as it was, so a reader
 * with a larger limit gets the item - for a queue's get, a list's pop, a
 * dict's pop, popitem, compare-and-set and setdefault, and a put handed
 * straight to a waiting get. */
static void test_an_item_too_big_for_its_reader_stays_for_a_reader_that_can_take_it(void **state)
{
    (void)state;
    mp_manager *m = start();
    size_t keylen;
    const void *key = mp_manager_authkey(m, &keylen);
    mp_manager_opts small = MP_MANAGER_OPTS_INIT;
    small.max_message = 64 << 10;
    mp_manager *ms;
    TU_ASSERT_STATUS(mp_manager_connect(&ms, mp_manager_address(m), key, keylen, &small), 0);
    size_t n = 100 << 10;
    char *blob = calloc(1, n);
    assert_non_null(blob);
    mp_obj *big = mp_obj_bytes(blob, n), *k = S("k"), *one = I(1), *x = NULL, *x2 = NULL;

    /* queue get */
    mp_mqueue *q, *qs;
    TU_ASSERT_STATUS(mp_manager_queue_named(m, "q", 0, &q), 1);
    TU_ASSERT_STATUS(mp_manager_attach_queue(ms, "q", &qs), 0);
    TU_ASSERT_STATUS(mp_mqueue_put(q, big, T_LONG), 0);
    TU_ASSERT_STATUS(mp_mqueue_get(qs, &x, T_LONG), MP_ETOOLONG);
    assert_int_equal(mp_mqueue_qsize(q), 1);
    TU_ASSERT_STATUS(mp_mqueue_get(q, &x, MP_NOWAIT), 0);
    assert_int_equal(bytes_len(x), n);
    mp_obj_free(x);
    /* an item of many small values, too large only once encoded */
    mp_obj *many = mp_obj_list_new();
    for (int i = 0; i < 40000; i++)
        assert_int_equal(mp_obj_list_append(many, I(i % 100)), 0);
    TU_ASSERT_STATUS(mp_mqueue_put(q, many, T_LONG), 0);
    TU_ASSERT_STATUS(mp_mqueue_get(qs, &x, T_LONG), MP_ETOOLONG);
    assert_int_equal(mp_mqueue_qsize(q), 1);
    TU_ASSERT_STATUS(mp_mqueue_get(q, &x, MP_NOWAIT), 0);
    assert_int_equal(mp_obj_len(x), 40000);
    mp_obj_free(x);

    /* list pop, the last item and by index */
    mp_list *l, *ls;
    TU_ASSERT_STATUS(mp_manager_list_named(m, "l", NULL, &l), 1);
    TU_ASSERT_STATUS(mp_manager_attach_list(ms, "l", &ls), 0);
    TU_ASSERT_STATUS(mp_list_append(l, big), 0);
    TU_ASSERT_STATUS(mp_list_append(l, one), 0);
    TU_ASSERT_STATUS(mp_list_pop(ls, 0, &x), MP_ETOOLONG);
    TU_ASSERT_STATUS(mp_list_pop(ls, -1, &x), 0); /* the small one goes */
    mp_obj_free(x);
    TU_ASSERT_STATUS(mp_list_pop(ls, -1, &x), MP_ETOOLONG);
    assert_int_equal(mp_list_len(l), 1);
    TU_ASSERT_STATUS(mp_list_pop(l, -1, &x), 0);
    assert_int_equal(bytes_len(x), n);
    mp_obj_free(x);
    TU_ASSERT_STATUS(mp_list_append(l, many), 0);
    TU_ASSERT_STATUS(mp_list_pop(ls, -1, &x), MP_ETOOLONG);
    assert_int_equal(mp_list_len(l), 1);
    TU_ASSERT_STATUS(mp_list_pop(l, -1, &x), 0);
    assert_int_equal(mp_obj_len(x), 40000);
    mp_obj_free(x);
    mp_obj_free(many);

    /* dict pop, popitem, cas, setdefault */
    mp_dict *d, *ds;
    TU_ASSERT_STATUS(mp_manager_dict_named(m, "d", NULL, &d), 1);
    TU_ASSERT_STATUS(mp_manager_attach_dict(ms, "d", &ds), 0);
    TU_ASSERT_STATUS(mp_dict_set(d, k, big), 0);
    TU_ASSERT_STATUS(mp_dict_pop(ds, k, &x), MP_ETOOLONG);
    TU_ASSERT_STATUS(mp_dict_popitem(ds, &x, &x2), MP_ETOOLONG);
    TU_ASSERT_STATUS(mp_dict_cas(ds, k, big, one, &x), MP_ETOOLONG);
    assert_int_equal(mp_dict_len(d), 1);
    TU_ASSERT_STATUS(mp_dict_get(d, k, &x), 0);
    assert_int_equal(bytes_len(x), n); /* not swapped */
    mp_obj_free(x);
    mp_obj *k2 = S("k2");
    TU_ASSERT_STATUS(mp_dict_setdefault(ds, k2, big, &x), MP_ETOOLONG);
    assert_int_equal(mp_dict_contains(d, k2), 0); /* not stored behind the error */
    TU_ASSERT_STATUS(mp_dict_popitem(d, &x, &x2), 0);
    assert_int_equal(bytes_len(x2), n);
    mp_obj_free(x);
    mp_obj_free(x2);
    mp_obj_free(k2);

    /* a put handed to waiting getters: the small one gets MP_ETOOLONG,
     * the next one in line gets the item */
    struct getter gs, gb;
    start_getter(&gs, ms, "q");
    assert_true(eventually_waiting(m, 1));
    start_getter(&gb, m, "q");
    assert_true(eventually_waiting(m, 2));
    TU_ASSERT_STATUS(mp_mqueue_put(q, big, T_LONG), 0);
    join_getter(&gs);
    join_getter(&gb);
    TU_ASSERT_STATUS(gs.rc, MP_ETOOLONG);
    TU_ASSERT_STATUS(gb.rc, 0);
    assert_int_equal(gb.len, n);
    assert_int_equal(mp_mqueue_qsize(q), 0);
    /* only a small getter waits: the item goes into the queue */
    start_getter(&gs, ms, "q");
    assert_true(eventually_waiting(m, 1));
    TU_ASSERT_STATUS(mp_mqueue_put(q, big, T_LONG), 0);
    join_getter(&gs);
    TU_ASSERT_STATUS(gs.rc, MP_ETOOLONG);
    assert_int_equal(mp_mqueue_qsize(q), 1);
    TU_ASSERT_STATUS(mp_mqueue_get(q, &x, MP_NOWAIT), 0);
    assert_int_equal(bytes_len(x), n);
    mp_obj_free(x);

    mp_obj_free(big);
    mp_obj_free(k);
    mp_obj_free(one);
    free(blob);
    mp_dict_free(d);
    mp_dict_free(ds);
    mp_list_free(l);
    mp_list_free(ls);
    mp_mqueue_free(q);
    mp_mqueue_free(qs);
    mp_manager_free(ms);
    mp_manager_free(m);
}

/* The issue's case: a Python producer puts [blob] * 15, which pickle sends
 * with the blob once and 14 memo references - 8 MiB on the wire, 120 MiB as
 * the value the server holds and sends. A default C reader (64 MiB) gets
 * MP_ETOOLONG and the item stays; a reader that accepts 128 MiB gets it. */
static const char PY_PRODUCER[] =
    "import os, pickle, sys\n"
    "from multiprocessing.connection import Client\n"
    "c = Client(sys.argv[1], authkey=bytes.fromhex(sys.argv[2]))\n"
    "def call(ident, method, *args):\n"
    "    data = pickle.dumps((ident, method, args), protocol=4)\n"
    "    c.send_bytes(data)\n"
    "    return len(data), pickle.loads(c.recv_bytes())\n"
    "call(0, 'hello', int.from_bytes(os.urandom(7), 'big'), os.getpid(), 0, 1)\n"
    "ident = call(0, 'attach', 'queue', 'big')[1][1][0]\n"
    "blob = bytes(range(256)) * (int(sys.argv[3]) // 256)\n"
    "n, r = call(ident, 'put', [blob] * 15, None)\n"
    "assert r == ('#RETURN', None), r\n"
    "assert n < len(blob) + 4096, n\n"
    "c.close()\n";

static void test_a_python_items_shared_references_count_in_full_and_nothing_is_lost(void **state)
{
    (void)state;
    mp_manager *m = start();
    mp_mqueue *q;
    TU_ASSERT_STATUS(mp_manager_queue_named(m, "big", 0, &q), 1);
    size_t keylen;
    const unsigned char *key = mp_manager_authkey(m, &keylen);
    char hex[2 * 64 + 1] = {0};
    for (size_t i = 0; i < keylen && i < 64; i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    /* The issue's sizes: an 8 MiB blob, 120 MiB sent, against a default
     * reader (64 MiB) and one that takes 128 MiB. Under valgrind, some 30
     * times slower, the same ratios at a 1 MiB blob. */
    const size_t blob = under_valgrind() ? (size_t)1 << 20 : (size_t)8 << 20;
    char size[32];
    snprintf(size, sizeof size, "%zu", blob);
    const char *args[] = {mp_manager_address(m) + 5, hex, size, NULL};
    pid_t py = tu_spawn_python(PY_PRODUCER, args, NULL, 0);
    assert_int_equal(tu_wait_child(py, 60), 0);
    assert_int_equal(mp_mqueue_qsize(q), 1);
    mp_manager *ms = m, *ml;
    mp_mqueue *qs = q, *ql;
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    if (blob != (size_t)8 << 20) {
        o.max_message = 8 * blob;
        TU_ASSERT_STATUS(mp_manager_connect(&ms, mp_manager_address(m), key, keylen, &o), 0);
        TU_ASSERT_STATUS(mp_manager_attach_queue(ms, "big", &qs), 0);
    }
    mp_obj *x = NULL;
    TU_ASSERT_STATUS(mp_mqueue_get(qs, &x, T_LONG), MP_ETOOLONG);
    assert_null(x);
    assert_int_equal(mp_mqueue_qsize(q), 1);
    o.max_message = 16 * blob;
    o.timeout = 60;
    TU_ASSERT_STATUS(mp_manager_connect(&ml, mp_manager_address(m), key, keylen, &o), 0);
    TU_ASSERT_STATUS(mp_manager_attach_queue(ml, "big", &ql), 0);
    TU_ASSERT_STATUS(mp_mqueue_get(ql, &x, T_LONG), 0);
    assert_int_equal(mp_obj_len(x), 15);
    for (size_t i = 0; i < 15; i++) {
        const unsigned char *p;
        size_t len;
        assert_int_equal(mp_obj_get_bytes(mp_obj_list_get(x, i), &p, &len), 0);
        assert_int_equal(len, blob);
        assert_int_equal(p[0], 0);
        assert_int_equal(p[blob - 1], 255);
    }
    mp_obj_free(x);
    assert_int_equal(mp_mqueue_qsize(q), 0);
    mp_mqueue_free(ql);
    mp_manager_free(ml);
    if (ms != m) {
        mp_mqueue_free(qs);
        mp_manager_free(ms);
    }
    mp_mqueue_free(q);
    mp_manager_free(m);
}

/* A request (ident, 'set', (key, bytes of n zeros)), framed: its bytes in
 * a new buffer (free()), its length in *len. */
static unsigned char *set_bytes_frame(int ident, const char *key, size_t n, size_t *len)
{
    size_t kl = strlen(key), size = 2 + 2 + 2 + 3 + 2 + kl + 5 + n + 3;
    unsigned char *f = calloc(1, 4 + size), *p = f + 4;
    assert_non_null(f);
    f[0] = (unsigned char)(size >> 24);
    f[1] = (unsigned char)(size >> 16);
    f[2] = (unsigned char)(size >> 8);
    f[3] = (unsigned char)size;
    *p++ = 0x80;
    *p++ = 4;
    *p++ = 'K';
    *p++ = (unsigned char)ident;
    *p++ = 0x8c;
    *p++ = 3;
    memcpy(p, "set", 3);
    p += 3;
    *p++ = 0x8c;
    *p++ = (unsigned char)kl;
    memcpy(p, key, kl);
    p += kl;
    *p++ = 'B'; /* BINBYTES: 4-byte little-endian length */
    *p++ = (unsigned char)n;
    *p++ = (unsigned char)(n >> 8);
    *p++ = (unsigned char)(n >> 16);
    *p++ = (unsigned char)(n >> 24);
    p += n;
    *p++ = 0x86;
    *p++ = 0x87;
    *p++ = '.';
    assert_int_equal((size_t)(p - f), 4 + size);
    *len = 4 + size;
    return f;
}

/* Write all of buf to a socket, each wait for room bounded. */
static void write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        struct pollfd pf = {.fd = fd, .events = POLLOUT, .revents = 0};
        assert_int_equal(poll(&pf, 1, (int)(T_LONG * 1000)), 1);
        ssize_t w = send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        assert_true(w > 0);
        p += w;
        n -= (size_t)w;
    }
}

/* docs/manager.md, "Large messages": the server holds large requests in
 * flight only within its budget (4 x its request limit). Four clients
 * that each sent most of a 900 KiB request fill a 1 MiB server's 4 MiB;
 * a fifth large request is read, dropped and answered -EAGAIN, while
 * small requests are served on; once the four are done, the fifth goes
 * through on the same connection. */
static void test_large_requests_over_the_budget_get_eagain_and_others_are_served(void **state)
{
    (void)state;
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    o.max_message = 1 << 20;
    mp_manager *m;
    TU_ASSERT_STATUS(mp_manager_start(&m, &o), 0);
    assert_int_equal(info_int(m, "budget"), 4 << 20);
    mp_dict *d;
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &d), 0); /* id 1 */
    size_t keylen;
    const void *key = mp_manager_authkey(m, &keylen);
    enum { N = 5 };
    mp_conn *c[N];
    unsigned char *f[N];
    size_t len[N];
    for (int i = 0; i < N; i++) {
        TU_ASSERT_STATUS(mp_client_connect(&c[i], mp_manager_address(m), key, keylen, T_LONG), 0);
        raw_hello(c[i], 5000 + i, 0);
        char k[2] = {(char)('a' + i), 0};
        f[i] = set_bytes_frame(1, k, 900 << 10, &len[i]);
    }
    /* four requests all but complete: each holds its whole frame's size */
    for (int i = 0; i < 4; i++)
        write_all(mp_conn_fileno(c[i]), f[i], len[i] - 1000);
    double end = tu_now() + T_LONG;
    while (info_int(m, "buffered") != 4 * (int64_t)len[0] && tu_now() < end)
        tu_sleep(0.002);
    assert_int_equal(info_int(m, "buffered"), 4 * (int64_t)len[0]);
    /* the fifth: dropped, answered, in step; small requests go on */
    write_all(mp_conn_fileno(c[4]), f[4], len[4]);
    mp_obj *r = NULL;
    TU_ASSERT_STATUS(mp_conn_recv(c[4], &r, T_LONG), 0);
    assert_int_equal(reply_code(r), -EAGAIN);
    TU_ASSERT_STATUS(mp_dict_set_int(d, "small", 1), 0);
    assert_int_equal(send_obj(c[4], request(0, "ping", NULL)), 0);
    assert_int_equal(mp_dict_len(d), 1);
    /* the four finish and are served */
    for (int i = 0; i < 4; i++) {
        write_all(mp_conn_fileno(c[i]), f[i] + len[i] - 1000, 1000);
        TU_ASSERT_STATUS(mp_conn_recv(c[i], &r, T_LONG), 0);
        assert_int_equal(reply_code(r), 0);
    }
    end = tu_now() + T_LONG;
    while (info_int(m, "buffered") != 0 && tu_now() < end)
        tu_sleep(0.002);
    assert_int_equal(info_int(m, "buffered"), 0);
    /* now the fifth fits */
    assert_int_equal(reply_code(raw_call(c[4], f[4] + 4, len[4] - 4)), 0);
    assert_int_equal(mp_dict_len(d), 6);
    for (int i = 0; i < N; i++) {
        mp_conn_free(c[i]);
        free(f[i]);
    }
    mp_dict_free(d);
    mp_manager_free(m);
}

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *fp = fopen(path, "r");
    long v = -1;
    while (fp && fgets(line, sizeof line, fp))
        if (strncmp(line, "VmRSS:", 6) == 0)
            v = atol(line + 6);
    if (fp)
        fclose(fp);
    return v;
}

struct pinger {
    mp_dict *d;
    int stop; /* atomic */
    double max_latency;
    long calls;
    int rc;
    pthread_t t;
};

static void *pinger_main(void *arg)
{
    struct pinger *p = arg;
    while (!__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE) && p->rc == 0) {
        double t0 = tu_now();
        p->rc = mp_dict_add_int(p->d, "pings", 1, NULL);
        double dt = tu_now() - t0;
        if (dt > p->max_latency)
            p->max_latency = dt;
        p->calls++;
        tu_sleep(0.001);
    }
    return NULL;
}

/* The issue's case, scaled: one authenticated request of several MiB of
 * NONE opcodes (a list of Nones) took the server's loop for as long as
 * decoding it took, stalling every client, and left the server's memory
 * high afterwards. Other clients are served throughout (their worst call
 * takes a fraction of the large request's time), and the server's RSS
 * comes back down to where it was. */
static void test_a_large_request_stalls_nobody_and_its_memory_is_given_back(void **state)
{
    (void)state;
    mp_manager *m = start();
    mp_list *l;
    TU_ASSERT_STATUS(mp_manager_list(m, NULL, &l), 0); /* id 1 */
    size_t keylen;
    const void *key = mp_manager_authkey(m, &keylen);
    mp_conn *c;
    TU_ASSERT_STATUS(mp_client_connect(&c, mp_manager_address(m), key, keylen, T_LONG), 0);
    raw_hello(c, 6000, 0);
    /* (1, 'contains', ([None] * n,)) */
    /* Large enough that decoding takes a while; smaller where every
     * instruction costs ten times more. */
    size_t n = under_valgrind() ? (size_t)1 << 20 : SANITIZED ? (size_t)2 << 20 : (size_t)8 << 20;
    size_t k = 0;
    unsigned char *req = malloc(n + 64);
    assert_non_null(req);
    static const unsigned char head[] = {0x80, 4,   'K', 1,   0x8c, 8,   'c',
                                         'o',  'n', 't', 'a', 'i',  'n', 's'};
    memcpy(req, head, sizeof head);
    k = sizeof head;
    req[k++] = ']';
    req[k++] = '(';
    memset(req + k, 'N', n);
    k += n;
    req[k++] = 'e';
    req[k++] = 0x85;
    req[k++] = 0x87;
    req[k++] = '.';
    pid_t server = mp_manager_pid(m);
    long before = rss_kib(server);
    struct pinger p = {0};
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &p.d), 0);
    TU_ASSERT_STATUS(mp_dict_add_int(p.d, "pings", 1, NULL), 0);
    assert_int_equal(pthread_create(&p.t, NULL, pinger_main, &p), 0);
    tu_sleep(0.05);
    /* No assert until the pinger is joined. */
    double t0 = tu_now();
    mp_obj *r = NULL;
    int rc = mp_conn_send_bytes(c, req, k);
    if (rc == 0)
        rc = mp_conn_recv(c, &r, 120.0);
    double took = tu_now() - t0;
    __atomic_store_n(&p.stop, 1, __ATOMIC_RELEASE);
    pthread_join(p.t, NULL);
    TU_ASSERT_STATUS(rc, 0);
    TU_ASSERT_STATUS(p.rc, 0);
    assert_int_equal(reply_code(r), 0); /* False: a real request */
    /* Not under valgrind, which runs one thread of a process at a time and
     * hands over unfairly: there the loop can wait for the helper's turn. */
    double bound = took / 3 > 0.25 ? took / 3 : 0.25;
    if (!under_valgrind() && p.max_latency > bound) {
        print_error("a call took %.3f s while a large request took %.3f s\n", p.max_latency, took);
        fail();
    }
    /* With the C library's own allocator, the memory comes back (a
     * sanitizer's allocator and valgrind's keep freed blocks their way). */
    if (!SANITIZED && !under_valgrind()) {
        double end = tu_now() + T_LONG;
        long after = rss_kib(server);
        while (after > before + (32 << 10) && tu_now() < end) {
            tu_sleep(0.01);
            after = rss_kib(server);
        }
        if (after > before + (32 << 10)) {
            print_error("server RSS %ld KiB before, %ld KiB after\n", before, after);
            fail();
        }
    }
    assert_int_equal(info_int(m, "buffered"), 0);
    free(req);
    mp_dict_free(p.d);
    mp_conn_free(c);
    mp_list_free(l);
    mp_manager_free(m);
}

/* CPU seconds a thread of a process has used (Linux: /proc). */
static double thread_cpu(pid_t pid, pid_t tid)
{
    char path[96], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/task/%d/stat", (int)pid, (int)tid);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    assert_non_null(p);
    unsigned long ut = 0, st = 0;
    /* after the name: state (field 3) ... utime (14), stime (15) */
    assert_int_equal(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st),
                     2);
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* While the helper thread decodes a large request, the requests pipelined
 * behind it wait - and the loop must wait with them, not spin on a socket
 * that stays readable: its thread uses next to no CPU meanwhile. */
static void test_requests_behind_a_large_one_wait_without_spinning(void **state)
{
    (void)state;
    mp_manager *m = start();
    mp_list *l;
    TU_ASSERT_STATUS(mp_manager_list(m, NULL, &l), 0); /* id 1 */
    size_t keylen;
    const void *key = mp_manager_authkey(m, &keylen);
    mp_conn *c;
    TU_ASSERT_STATUS(mp_client_connect(&c, mp_manager_address(m), key, keylen, T_LONG), 0);
    raw_hello(c, 6100, 0);
    size_t n = under_valgrind() ? (size_t)1 << 20 : SANITIZED ? (size_t)2 << 20 : (size_t)8 << 20;
    /* the frame of (1, 'contains', ([None] * n,)), then 100 KB of pings */
    enum { PINGS = 6000 };
    static const unsigned char ping[] = {0, 0,   0,   13,  0x80, 4,   'K',  0,  0x8c,
                                         4, 'p', 'i', 'n', 'g',  ')', 0x87, '.'};
    size_t size = 14 + 2 + n + 4, k = 0;
    unsigned char *f = malloc(4 + size + PINGS * sizeof ping);
    assert_non_null(f);
    f[k++] = (unsigned char)(size >> 24);
    f[k++] = (unsigned char)(size >> 16);
    f[k++] = (unsigned char)(size >> 8);
    f[k++] = (unsigned char)size;
    static const unsigned char head[] = {0x80, 4,   'K', 1,   0x8c, 8,   'c',
                                         'o',  'n', 't', 'a', 'i',  'n', 's'};
    memcpy(f + k, head, sizeof head);
    k += sizeof head;
    f[k++] = ']';
    f[k++] = '(';
    memset(f + k, 'N', n);
    k += n;
    f[k++] = 'e';
    f[k++] = 0x85;
    f[k++] = 0x87;
    f[k++] = '.';
    assert_int_equal(k, 4 + size);
    for (int i = 0; i < PINGS; i++, k += sizeof ping)
        memcpy(f + k, ping, sizeof ping);
    pid_t server = mp_manager_pid(m);
    double cpu0 = thread_cpu(server, server), t0 = tu_now();
    write_all(mp_conn_fileno(c), f, k);
    mp_obj *r = NULL;
    TU_ASSERT_STATUS(mp_conn_recv(c, &r, 120.0), 0);
    double took = tu_now() - t0, loop_cpu = thread_cpu(server, server) - cpu0;
    assert_int_equal(reply_code(r), 0);
    for (int i = 0; i < PINGS; i++) {
        TU_ASSERT_STATUS(mp_conn_recv(c, &r, T_LONG), 0);
        assert_int_equal(reply_code(r), 0);
    }
    if (loop_cpu > 0.2 * took + 0.1) {
        print_error("the loop used %.2f s of CPU in %.2f s\n", loop_cpu, took);
        fail();
    }
    free(f);
    mp_conn_free(c);
    mp_list_free(l);
    mp_manager_free(m);
}

static void test_request_and_reply_size_limits(void **state)
{
    (void)state;
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    o.max_message = 1 << 20;
    mp_manager *m;
    TU_ASSERT_STATUS(mp_manager_start(&m, &o), 0);
    mp_dict *d;
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &d), 0);
    size_t n = 2u << 20;
    char *blob = calloc(1, n);
    assert_non_null(blob);
    int64_t conns = info_int(m, "connections");
    TU_ASSERT_STATUS(mp_dict_set_bytes(d, "big", blob, n), MP_ETOOLONG);
    /* refused before sending: the same connection goes on */
    assert_int_equal(info_int(m, "connections"), conns);
    TU_ASSERT_STATUS(mp_dict_set_bytes(d, "ok", blob, 100 << 10), 0);
    TU_ASSERT_STATUS(mp_dict_set_bytes(d, "ok2", blob, 100 << 10), 0);

    /* a client that accepts small replies only */
    size_t keylen;
    const void *key = mp_manager_authkey(m, &keylen);
    mp_manager_opts small = MP_MANAGER_OPTS_INIT;
    small.max_message = 64 << 10;
    mp_manager *m2;
    TU_ASSERT_STATUS(mp_manager_connect(&m2, mp_manager_address(m), key, keylen, &small), 0);
    mp_dict *d2;
    TU_ASSERT_STATUS(mp_manager_dict(m2, NULL, &d2), 0);
    TU_ASSERT_STATUS(mp_dict_update(d2, NULL), -EINVAL);
    mp_obj *o2 = NULL;
    mp_dict *shared;
    TU_ASSERT_STATUS(mp_manager_dict_named(m, "s", NULL, &shared), 1);
    TU_ASSERT_STATUS(mp_dict_set_bytes(shared, "blob", blob, 200 << 10), 0);
    mp_dict *s2;
    TU_ASSERT_STATUS(mp_manager_attach_dict(m2, "s", &s2), 0);
    TU_ASSERT_STATUS(mp_dict_copy(s2, &o2), MP_ETOOLONG);
    assert_int_equal(mp_dict_len(s2), 1); /* and the connection goes on */
    mp_dict_free(s2);
    mp_dict_free(d2);
    mp_manager_free(m2);
    mp_dict_free(shared);
    free(blob);
    mp_dict_free(d);
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
    mp_dict_free(NULL);
    mp_list_free(NULL);
    mp_mlock_free(NULL);
    mp_mqueue_free(NULL);
    assert_null(mp_manager_address(NULL));
    m = start();
    mp_dict *d;
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, NULL), -EINVAL);
    mp_obj *notdict = I(1);
    TU_ASSERT_STATUS(mp_manager_dict(m, notdict, &d), MP_ETYPE);
    mp_obj_free(notdict);
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &d), 0);
    TU_ASSERT_STATUS(mp_dict_get(d, NULL, NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_dict_set_int(d, NULL, 1), -EINVAL);
    TU_ASSERT_STATUS(mp_dict_get_int(NULL, "x", NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_manager_set_timeout(NULL, 1.0), -EINVAL);
    mp_dict_free(d);
    mp_manager_free(m);
}

/* docs/manager.md, "Speaking it from Python": a python3 client with only
 * multiprocessing.connection and pickle. */
static const char PY_CLIENT[] =
    "import os, pickle, sys\n"
    "from multiprocessing.connection import Client\n"
    "c = Client(sys.argv[1], authkey=bytes.fromhex(sys.argv[2]))\n"
    "def call(ident, method, *args):\n"
    "    c.send_bytes(pickle.dumps((ident, method, args), protocol=4))\n"
    "    return pickle.loads(c.recv_bytes())\n"
    "r = call(0, 'hello', int.from_bytes(os.urandom(7), 'big'), os.getpid(), 0, 1)\n"
    "assert r[0] == '#RETURN' and r[1][0] == 1, r\n"
    "ident, created, kind = call(0, 'attach', 'dict', 'results')[1]\n"
    "assert kind == 'dict' and not created\n"
    "assert call(ident, 'copy') == ('#RETURN', {'a': 1}), call(ident, 'copy')\n"
    "assert call(ident, 'set', 'py', [1.5, b'x', None])[0] == '#RETURN'\n"
    "r = call(ident, 'get', 'missing')\n"
    "assert r[0] == '#ERROR' and r[1] == -1021, r\n"
    "assert call(ident, 'add', 'a', 41) == ('#RETURN', 42)\n"
    "r = call(0, 'attach', 'dict', 'nope')\n"
    "assert r[0] == '#ERROR' and r[1] == -1041, r\n"
    "c.close()\n";

static void test_a_python_client_speaks_the_protocol(void **state)
{
    (void)state;
    mp_manager *m = start();
    mp_obj *init = dict1("a", 1);
    mp_dict *d;
    TU_ASSERT_STATUS(mp_manager_dict_named(m, "results", init, &d), 1);
    mp_obj_free(init);
    size_t keylen;
    const unsigned char *key = mp_manager_authkey(m, &keylen);
    char hex[2 * 64 + 1] = {0};
    for (size_t i = 0; i < keylen && i < 64; i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    const char *args[] = {mp_manager_address(m) + 5, hex, NULL};
    pid_t py = tu_spawn_python(PY_CLIENT, args, NULL, 0);
    assert_int_equal(tu_wait_child(py, 30.0), 0);
    mp_obj *o;
    TU_ASSERT_STATUS(mp_dict_copy(d, &o), 0);
    take_repr(o, "{'a': 42, 'py': [1.5, b'x', None]}");
    mp_dict_free(d);
    mp_manager_free(m);
}

/* ---- remote managers on TCP loopback
 * ------------------------------------------------------------- */

static void report_address(const char *address, void *arg)
{
    int fd = *(int *)arg;
    char buf[256] = {0};
    snprintf(buf, sizeof buf, "%s", address);
    if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf)
        _exit(98);
}

static int serving_child(void *arg)
{
    int fd = *(int *)arg;
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    o.ready = report_address;
    o.ready_arg = &fd;
    int rc = mp_manager_serve("tcp:127.0.0.1:0", "secret", 6, &o);
    return rc == 0 ? 0 : 10;
}

static pid_t serve_in_child(char *address, size_t cap)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = tu_fork(serving_child, &p[1]);
    close(p[1]);
    char buf[256];
    assert_int_equal(read_full(p[0], buf, sizeof buf, T_LONG), 0);
    close(p[0]);
    buf[sizeof buf - 1] = '\0';
    snprintf(address, cap, "%s", buf);
    return pid;
}

static int remote_putter(void *arg)
{
    /* _TestRemoteManager._putter: a separately connected client */
    const char *address = arg;
    mp_manager *m;
    if (mp_manager_connect(&m, address, "secret", 6, NULL) != 0)
        return 10;
    mp_mqueue *q;
    if (mp_manager_queue_named(m, "get_queue", 0, &q) < 0)
        return 11;
    mp_obj *t = mp_obj_tuple_new();
    mp_obj_tuple_append(t, S("hello world"));
    mp_obj_tuple_append(t, mp_obj_none());
    mp_obj_tuple_append(t, mp_obj_bool(true));
    mp_obj_tuple_append(t, mp_obj_float(2.25));
    mp_obj_tuple_append(t, S("hall\xc3\xa5 v\xc3\xa4rlden"));
    mp_obj_tuple_append(t, mp_obj_bytes("hall\xe5 v\xe4rlden", 13));
    int rc = mp_mqueue_put(q, t, T_LONG);
    mp_obj_free(t);
    mp_mqueue_free(q);
    mp_manager_free(m);
    return rc == 0 ? 0 : 12;
}

static int serving_child_few_fds(void *arg)
{
    /* Only the soft limit: valgrind refuses to change the hard one. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 8;
    rl.rlim_cur = 24;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 9;
    return serving_child(arg);
}

/* CPU seconds a process has used (Linux /proc). */
static double cpu_seconds(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    unsigned long utime = 0, stime = 0;
    /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime stime */
    if (!p ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static void
test_a_server_out_of_descriptors_refuses_newcomers_serves_the_rest_and_recovers(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t server = tu_fork(serving_child_few_fds, &p[1]);
    close(p[1]);
    char address[256];
    assert_int_equal(read_full(p[0], address, sizeof address, T_LONG), 0);
    close(p[0]);
    address[sizeof address - 1] = '\0';
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    o.timeout = 0.5;
    mp_manager *ms[40];
    int ok = 0, refused = 0;
    for (int i = 0; i < 40; i++) {
        ms[i] = NULL;
        int rc = mp_manager_connect(&ms[i], address, "secret", 6, &o);
        if (rc == 0)
            ok++;
        else
            refused++;
    }
    /* It ran out of descriptors: the newcomers were closed at once (the
     * server sheds them through a descriptor it keeps in reserve, so its
     * failing accept() neither spins nor leaves them in the backlog). */
    assert_true(ok > 5 && refused > 0);
    /* An idle server at its limit does not spin (well under 0.5 CPU
     * seconds in a 1 second wait). */
    double c0 = cpu_seconds(server);
    tu_sleep(1.0);
    double c1 = cpu_seconds(server);
    assert_true(c0 >= 0 && c1 - c0 < 0.5);
    /* the connected ones still work; freeing them makes room for others */
    mp_dict *d;
    int first = -1;
    for (int i = 0; i < 40; i++)
        if (ms[i] && first < 0)
            first = i;
    TU_ASSERT_STATUS(mp_manager_dict_named(ms[first], "d", NULL, &d), 1);
    TU_ASSERT_STATUS(mp_dict_set_int(d, "x", 1), 0);
    mp_dict_free(d);
    for (int i = 0; i < 40; i++)
        if (i != first)
            mp_manager_free(ms[i]);
    /* Recovery takes a moment: the server first sees the freed clients go
     * and drains the dead connections left in its backlog. */
    mp_manager *again = NULL;
    o.timeout = T_LONG;
    double end = tu_now() + T_LONG;
    int rc;
    while ((rc = mp_manager_connect(&again, address, "secret", 6, &o)) != 0 && tu_now() < end)
        tu_sleep(0.05);
    TU_ASSERT_STATUS(rc, 0);
    TU_ASSERT_STATUS(mp_manager_attach_dict(again, "d", &d), 0);
    int64_t v;
    TU_ASSERT_STATUS(mp_dict_get_int(d, "x", &v), 0);
    assert_int_equal(v, 1);
    mp_dict_free(d);
    TU_ASSERT_STATUS(mp_manager_shutdown(again), 0);
    mp_manager_free(again);
    mp_manager_free(ms[first]);
    assert_int_equal(tu_wait_child(server, T_LONG), 0);
}

static void test_tcp_loopback_server_with_right_and_wrong_keys(void **state)
{
    (void)state;
    char address[256];
    pid_t server = serve_in_child(address, sizeof address);
    assert_true(strncmp(address, "tcp:127.0.0.1:", 14) == 0);
    mp_manager *m = NULL;
    TU_ASSERT_STATUS(mp_manager_connect(&m, address, "wrong", 5, NULL), MP_EAUTH);
    assert_null(m);
    TU_ASSERT_STATUS(mp_manager_connect(&m, address, "secret", 6, NULL), 0);
    assert_int_equal(mp_manager_pid(m), 0);
    pid_t putter = tu_fork(remote_putter, address);
    mp_mqueue *q;
    double end = tu_now() + T_LONG;
    int rc;
    while ((rc = mp_manager_attach_queue(m, "get_queue", &q)) == MP_ENOOBJ && tu_now() < end)
        tu_sleep(0.01);
    TU_ASSERT_STATUS(rc, 0);
    mp_obj *item;
    TU_ASSERT_STATUS(mp_mqueue_get(q, &item, T_LONG), 0);
    take_repr(item, "('hello world', None, True, 2.25, 'hallå världen', b'hall\\xe5 v\\xe4rlden')");
    assert_int_equal(tu_wait_child(putter, T_LONG), 0);
    mp_mqueue_free(q);
    /* any authenticated client may stop a served manager */
    TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
    TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
    assert_int_equal(tu_wait_child(server, T_LONG), 0);
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
    mp_dict *d1, *d2;
    TU_ASSERT_STATUS(mp_manager_dict_named(m, "d", NULL, &d1), 1);
    TU_ASSERT_STATUS(mp_manager_attach_dict(c, "d", &d2), 0);
    TU_ASSERT_STATUS(mp_dict_set_int(d2, "via", 1), 0);
    int64_t v;
    TU_ASSERT_STATUS(mp_dict_get_int(d1, "via", &v), 0);
    assert_int_equal(v, 1);
    /* the same address again once it is free (_TestManagerRestart) */
    char again[256];
    snprintf(again, sizeof again, "%s", addr);
    mp_dict_free(d2);
    mp_manager_free(c);
    mp_dict_free(d1);
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
    mp_mlock *lock;
    mp_mqueue *q;
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
    ip->waiter_rc = mp_mlock_acquire(ip->lock, 30.0);
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
    mp_obj *init = dict1("a", 1);
    mp_dict *d;
    mp_list *l;
    TU_ASSERT_STATUS(mp_manager_dict_named(m, "d", init, &d), 1);
    TU_ASSERT_STATUS(mp_manager_list(m, NULL, &l), 0);
    TU_ASSERT_STATUS(mp_manager_lock(m, &ip.lock), 0);
    TU_ASSERT_STATUS(mp_manager_queue(m, 1, &ip.q), 0);
    TU_ASSERT_STATUS(mp_list_append(l, init), 0);
    TU_ASSERT_STATUS(mp_mqueue_put(ip.q, init, T_LONG), 0); /* left in the queue */
    TU_ASSERT_STATUS(mp_mqueue_put(ip.q, init, 0.05), MP_FULL);
    TU_ASSERT_STATUS(mp_mlock_acquire(ip.lock, T_LONG), 0);
    assert_int_equal(pthread_create(&wt, NULL, inproc_waiter, &ip), 0);
    assert_true(eventually_waiting(m, 1)); /* parked in the server at the shutdown */
    TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
    pthread_join(st, NULL);
    TU_ASSERT_STATUS(ip.rc, 0);
    pthread_join(wt, NULL);
    TU_ASSERT_STATUS(ip.waiter_rc, MP_ENOSERVER);
    mp_obj_free(init);
    mp_dict_free(d);
    mp_list_free(l);
    mp_mlock_free(ip.lock);
    mp_mqueue_free(ip.q);
    mp_manager_free(m);
    pthread_mutex_destroy(&ip.mu);
    pthread_cond_destroy(&ip.cv);
}

/* ---- handshakes under attack
 * ---------------------------------------------------------
 *
 * Anyone who can reach a manager's port can open connections and then say
 * nothing, or drip a byte at a time. None of that may keep a client that
 * has the key from getting in (docs/manager.md, "Connections"). */

#define ATTACKERS 1000

/* Time bounds are for a quiet machine; memcheck runs everything some 20-50
 * times slower, the sanitizers 2-5 times. */
static double slow_factor(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return 3.0;
#else
    const char *pre = getenv("LD_PRELOAD");
    return pre && strstr(pre, "vgpreload") ? 5.0 : 1.0;
#endif
}

/* A non-blocking raw connection to "tcp:127.0.0.1:port" or "unix:/path", as
 * an attacker makes it: the fd, or -errno (-EAGAIN: an AF_UNIX backlog is
 * full, try again). */
static int raw_connect(const char *address)
{
    int fd;
    int rc;
    if (strncmp(address, "unix:", 5) == 0) {
        struct sockaddr_un un;
        memset(&un, 0, sizeof un);
        un.sun_family = AF_UNIX;
        snprintf(un.sun_path, sizeof un.sun_path, "%s", address + 5);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
        rc = connect(fd, (struct sockaddr *)&un, sizeof un);
    } else {
        const char *colon = strrchr(address, ':');
        struct sockaddr_in in;
        memset(&in, 0, sizeof in);
        in.sin_family = AF_INET;
        in.sin_port = htons((uint16_t)atoi(colon + 1));
        in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
        rc = connect(fd, (struct sockaddr *)&in, sizeof in);
    }
    if (rc < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

struct attack {
    const char *address;
    int count;   /* connections to hold */
    bool drip;   /* send a byte at a time instead of nothing */
    int ready;   /* write end: the attacker writes how many it holds */
    int stop;    /* read end: end of file tells the attacker to stop */
    int closing[2]; /* its copies of the parent's pipe ends, closed at once */
};

/* Hold a->count connections against the server, re-opening each one the
 * server closes, until told to stop. A drip-feeder sends, one byte per
 * connection every 100 ms, a frame header announcing 256 bytes and then
 * the bytes: never a whole message within the handshake's 10 s. Exit
 * status: 0, or where it failed. */
static int attacker(void *arg)
{
    struct attack *a = arg;
    close(a->closing[0]);
    close(a->closing[1]);
    /* The fd limit: this process needs count + a few. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 20;
    rlim_t want = (rlim_t)a->count + 64;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            return 21;
    }
    if ((rlim_t)a->count + 64 > rl.rlim_cur)
        a->count = (int)rl.rlim_cur - 64; /* the parent is told how many */
    int n = a->count;
    int *fd = malloc((size_t)n * sizeof *fd);
    int *sent = calloc((size_t)n, sizeof *sent);
    struct pollfd *p = malloc((size_t)(n + 1) * sizeof *p);
    if (!fd || !sent || !p)
        return 22;
    unsigned char drip[4 + 256];
    drip[0] = 0, drip[1] = 0, drip[2] = 1, drip[3] = 0; /* 256 */
    memset(drip + 4, 'x', 256);
    for (int i = 0; i < n; i++)
        fd[i] = -1;
    bool reported = false;
    double report_by = tu_now() + 5.0, next_drip = tu_now();
    for (;;) {
        int held = 0;
        for (int i = 0; i < n; i++) {
            if (fd[i] < 0) {
                fd[i] = raw_connect(a->address);
                sent[i] = 0;
                if (fd[i] < 0 && fd[i] != -EAGAIN && fd[i] != -ECONNREFUSED && fd[i] != -ETIMEDOUT)
                    return 23;
                if (fd[i] < 0)
                    fd[i] = -1;
            }
            held += fd[i] >= 0;
        }
        if (!reported && (held == n || tu_now() > report_by)) {
            if (write(a->ready, &held, sizeof held) != (ssize_t)sizeof held)
                return 24;
            reported = true;
        }
        if (a->drip && tu_now() >= next_drip) {
            next_drip = tu_now() + 0.1;
            for (int i = 0; i < n; i++) {
                if (fd[i] < 0 || sent[i] == (int)sizeof drip)
                    continue;
                ssize_t r = send(fd[i], drip + sent[i], 1, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (r == 1) {
                    sent[i]++;
                } else if (r < 0 && errno != EAGAIN && errno != ENOTCONN) {
                    close(fd[i]);
                    fd[i] = -1;
                }
            }
        }
        p[0] = (struct pollfd){.fd = a->stop, .events = POLLIN, .revents = 0};
        for (int i = 0; i < n; i++)
            p[i + 1] = (struct pollfd){.fd = fd[i], .events = POLLIN, .revents = 0};
        if (poll(p, (nfds_t)n + 1, 20) < 0 && errno != EINTR)
            return 25;
        if (p[0].revents)
            break;
        for (int i = 0; i < n; i++) {
            if (fd[i] < 0 || !p[i + 1].revents)
                continue;
            /* The server's challenge (read and ignored), or its hang-up. */
            char buf[512];
            ssize_t r = recv(fd[i], buf, sizeof buf, MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                close(fd[i]);
                fd[i] = -1;
            }
        }
    }
    for (int i = 0; i < n; i++)
        if (fd[i] >= 0)
            close(fd[i]);
    free(fd);
    free(sent);
    free(p);
    return 0;
}

/* Children of these tests, killed by the teardown if a test failed before it
 * stopped them (else they would hold their connections until their
 * watchdog). */
static pid_t hs_kids[2];
static int hs_stop = -1; /* the pipe end that stops the attacker */

static void hs_kid(pid_t pid)
{
    for (int i = 0; i < 2; i++) {
        if (hs_kids[i] == 0) {
            hs_kids[i] = pid;
            return;
        }
    }
}

static void hs_kid_done(pid_t pid)
{
    for (int i = 0; i < 2; i++)
        if (hs_kids[i] == pid)
            hs_kids[i] = 0;
}

static int hs_teardown(void **state)
{
    for (int i = 0; i < 2; i++) {
        if (hs_kids[i] > 0) {
            kill(hs_kids[i], SIGKILL);
            (void)tu_wait_child(hs_kids[i], T_LONG);
        }
        hs_kids[i] = 0;
    }
    if (hs_stop >= 0)
        close(hs_stop);
    hs_stop = -1;
    return tu_fd_teardown(state);
}

#define HS_TEST(f) cmocka_unit_test_setup_teardown(f, tu_fd_setup, hs_teardown)

/* Start an attacker against address; returns its pid once it holds its
 * connections (or has tried for 5 s), *held receiving how many it holds and
 * *stop the pipe end whose closing stops it. */
static pid_t start_attacker(const char *address, int count, bool drip, int *stop, int *held)
{
    int ready[2], st[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(st), 0);
    struct attack a = {address, count, drip, ready[1], st[0], {ready[0], st[1]}};
    pid_t pid = tu_fork(attacker, &a);
    hs_kid(pid);
    close(ready[1]);
    close(st[0]);
    *held = 0;
    assert_int_equal(read_full(ready[0], held, sizeof *held, 30.0), 0);
    close(ready[0]);
    *stop = hs_stop = st[1];
    return pid;
}

static void stop_attacker(pid_t pid, int stop)
{
    close(stop);
    hs_stop = -1;
    int st = tu_wait_child(pid, T_LONG);
    hs_kid_done(pid);
    assert_int_equal(st, 0);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define LATENCY_RUNS 7

/* Connect with the key and make one call, LATENCY_RUNS times over some 3 s
 * while the attack goes on; each must take under a second. shed: a server
 * out of descriptors may close the connection during the handshake
 * (docs/manager.md), and the client tries again within that second. */
static void assert_clients_get_in(const char *address, const void *key, size_t keylen,
                                  const char *what, bool shed)
{
    double bound = 1.0 * slow_factor();
    double t[LATENCY_RUNS];
    int retries = 0;
    for (int i = 0; i < LATENCY_RUNS; i++) {
        mp_manager_opts o = MP_MANAGER_OPTS_INIT;
        o.timeout = 3 * bound; /* a locked-out client fails, not hangs */
        double t0 = tu_now();
        mp_manager *m = NULL;
        mp_obj *info = NULL;
        int rc;
        for (;;) {
            rc = mp_manager_connect(&m, address, key, keylen, &o);
            if (rc == 0) {
                rc = mp_manager_info(m, &info);
                if (rc < 0)
                    mp_manager_free(m);
            }
            if (rc == 0 || !shed || (rc != MP_EOF && rc != MP_ENOSERVER) ||
                tu_now() - t0 >= bound)
                break;
            retries++;
        }
        TU_ASSERT_STATUS(rc, 0);
        t[i] = tu_now() - t0;
        mp_obj_free(info);
        mp_manager_free(m);
        if (t[i] >= bound) {
            print_error("%s: connect and call took %.3f s\n", what, t[i]);
            fail();
        }
        tu_sleep(0.5); /* spread the runs over the attack's re-opening */
    }
    qsort(t, LATENCY_RUNS, sizeof t[0], cmp_double);
    print_message("%s: connect+call median %.1f ms, max %.1f ms (%d runs, %d retries)\n", what,
                  t[LATENCY_RUNS / 2] * 1e3, t[LATENCY_RUNS - 1] * 1e3, LATENCY_RUNS, retries);
}

/* A manager serving "tcp:127.0.0.1:<port>" in a child, with key "secret". */
static pid_t hs_server(char *address, size_t cap)
{
    pid_t pid = serve_in_child(address, cap);
    hs_kid(pid);
    return pid;
}

/* Ask the server of hs_server to stop; it must exit with 0. */
static void hs_server_stop(pid_t server, const char *address)
{
    mp_manager *m = NULL;
    TU_ASSERT_STATUS(mp_manager_connect(&m, address, "secret", 6, NULL), 0);
    TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
    mp_manager_free(m);
    int st = tu_wait_child(server, T_LONG);
    hs_kid_done(server);
    assert_int_equal(st, 0);
}

static void attack_tcp_server(bool drip)
{
    char address[256];
    pid_t server = hs_server(address, sizeof address);
    int stop, held;
    pid_t att = start_attacker(address, ATTACKERS, drip, &stop, &held);
    assert_clients_get_in(address, "secret", 6,
                          drip ? "tcp, 1000 drip-feeders" : "tcp, 1000 silent connections", false);
    assert_true(held >= ATTACKERS * 9 / 10); /* it was a real attack */
    stop_attacker(att, stop);
    hs_server_stop(server, address);
}

static void test_1000_silent_tcp_connections_do_not_lock_out_a_client_with_the_key(void **state)
{
    (void)state;
    attack_tcp_server(false);
}

static void
test_1000_drip_feeding_tcp_connections_do_not_lock_out_a_client_with_the_key(void **state)
{
    (void)state;
    attack_tcp_server(true);
}

static void
test_1000_silent_unix_connections_do_not_lock_out_a_started_managers_clients(void **state)
{
    (void)state;
    mp_manager *m = start();
    size_t keylen;
    const void *key = mp_manager_authkey(m, &keylen);
    int stop, held;
    pid_t att = start_attacker(mp_manager_address(m), ATTACKERS, false, &stop, &held);
    assert_clients_get_in(mp_manager_address(m), key, keylen, "unix, 1000 silent connections",
                          false);
    assert_true(held >= ATTACKERS * 9 / 10); /* it was a real attack */
    /* the starter's own handle works too */
    assert_true(info_int(m, "objects") >= 0);
    stop_attacker(att, stop);
    mp_manager_free(m);
}

static int serving_child_64_fds(void *arg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 8;
    rl.rlim_cur = 64;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 9;
    return serving_child(arg);
}

static void test_out_of_descriptors_a_server_drops_silent_connections_for_newcomers(void **state)
{
    (void)state;
    /* A server with 64 descriptors against 200 silent connections that
     * re-open as they close: it closes the oldest silent one to take each
     * newcomer, so a client with the key still gets in within a second
     * (perhaps at a second try: a handshake the server had to drop or shed
     * is MP_EOF, and a race with the attack can cost one). */
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t server = tu_fork(serving_child_64_fds, &p[1]);
    hs_kid(server);
    close(p[1]);
    char address[256];
    assert_int_equal(read_full(p[0], address, sizeof address, T_LONG), 0);
    close(p[0]);
    address[sizeof address - 1] = '\0';
    int stop, held;
    pid_t att = start_attacker(address, 200, false, &stop, &held);
    assert_clients_get_in(address, "secret", 6, "tcp, 64 fds, 200 silent connections", true);
    assert_true(held >= 150); /* it was a real attack */
    /* ... and it does not spin when it is out of descriptors with no one
     * to shed. While the attack re-opens what the server closes, the
     * server's work follows the attacker's (under memcheck, a whole CPU),
     * so freeze the attacker: its connections stay, some in the backlog
     * the server cannot accept for want of descriptors. A server that
     * retried accept() at once would now burn a CPU; this one goes idle
     * once it has shed what it could. */
    assert_int_equal(kill(att, SIGSTOP), 0);
    tu_sleep(0.5 * slow_factor());
    double c0 = cpu_seconds(server);
    tu_sleep(1.0);
    double c1 = cpu_seconds(server);
    assert_int_equal(kill(att, SIGCONT), 0);
    if (!(c0 >= 0 && c1 - c0 < 0.3)) {
        print_error("the server used %.2f s of CPU in 1 s\n", c1 - c0);
        fail();
    }
    stop_attacker(att, stop);
    hs_server_stop(server, address);
}

/* Read one frame of at most cap bytes from a raw blocking socket before the
 * deadline (tu_now() seconds): its length, or -1. */
static ssize_t raw_recv_frame(int fd, unsigned char *buf, size_t cap, double deadline)
{
    unsigned char hdr[4];
    size_t got = 0, need = 4;
    unsigned char *dst = hdr;
    for (int part = 0; part < 2; part++) {
        while (got < need) {
            double left = deadline - tu_now();
            struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
            if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) != 1)
                return -1;
            ssize_t r = recv(fd, dst + got, need - got, 0);
            if (r <= 0)
                return -1;
            got += (size_t)r;
        }
        if (part == 0) {
            need = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
            if (need > cap)
                return -1;
            got = 0;
            dst = buf;
        }
    }
    return (ssize_t)need;
}

/* Seconds from t0 until the server hangs up on fd (end of file or a
 * reset), waiting at most until t0 + limit; -1 if it did not. Whatever the
 * server sends first is read and ignored. */
static double hangup_after(int fd, double t0, double limit)
{
    for (;;) {
        double left = t0 + limit - tu_now();
        struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
        if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) != 1)
            return -1;
        char buf[256];
        ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
            return tu_now() - t0;
    }
}

static void test_the_whole_handshake_has_10_seconds_not_each_direction(void **state)
{
    (void)state;
    /* docs/manager.md: "The whole handshake must end within 10 seconds."
     * A client that proves the key slowly (the first byte of its answer at
     * once, the rest after 6 s) and then never sends its own challenge is
     * cut off 10 s after it connected - not 10 s after its answer. One that
     * never says a word has the same 10 s: there is no shorter deadline for
     * the first bytes, which would turn away an honest client that a loaded
     * machine starved for a few seconds. */
    char address[256];
    pid_t server = hs_server(address, sizeof address);
    int fd = raw_connect(address);
    int quiet = raw_connect(address);
    assert_true(fd >= 0 && quiet >= 0);
    int fl = fcntl(fd, F_GETFL);
    assert_int_equal(fcntl(fd, F_SETFL, fl & ~O_NONBLOCK), 0);
    double t0 = tu_now();
    unsigned char ch[256];
    ssize_t n = raw_recv_frame(fd, ch, sizeof ch, t0 + T_LONG);
    assert_true(n > 0);
    unsigned char frame[4 + MP__HS_RESPONSE_MAX];
    int rn = mp__hs_respond("secret", 6, ch, (size_t)n, frame + 4);
    assert_true(rn > 0);
    frame[0] = frame[1] = frame[2] = 0;
    frame[3] = (unsigned char)rn;
    assert_int_equal(send(fd, frame, 1, MSG_NOSIGNAL), 1);
    tu_sleep(t0 + 6.0 - tu_now());
    assert_int_equal(send(fd, frame + 1, (size_t)rn + 3, MSG_NOSIGNAL), rn + 3);
    unsigned char verdict[16];
    n = raw_recv_frame(fd, verdict, sizeof verdict, t0 + 9.0);
    assert_int_equal(n, 9);
    assert_memory_equal(verdict, "#WELCOME#", 9);
    /* Now silent: cut off at 10 s (per direction, it would be 16 s). */
    double slack = slow_factor();
    double at = hangup_after(fd, t0, 10.0 + 2.0 * slack);
    if (at < 9.9 || at > 10.0 + 1.0 * slack) {
        print_error("the server hung up %.2f s after the connect\n", at);
        fail();
    }
    /* The silent one went at the same time; it is closed by now. */
    at = hangup_after(quiet, t0, 10.0 + 2.0 * slack);
    if (at < 9.9 || at > 10.0 + 1.0 * slack) {
        print_error("the silent connection was dropped %.2f s after the connect\n", at);
        fail();
    }
    close(quiet);
    close(fd);
    hs_server_stop(server, address);
}

/* ---- two hosts: network namespaces
 * ---------------------------------------------------------------- */

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
#define NS_KEY  "two hosts, one key"
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
    mp_mqueue *q = NULL;
    mp_dict *d = NULL;
    if (strcmp(role, "producer") == 0) {
        if (mp_manager_queue_named(m, "jobs", 0, &q) < 0 ||
            mp_manager_dict_named(m, "results", NULL, &d) < 0)
            code = 30;
        for (int i = 1; code == 0 && i <= NS_JOBS; i++) {
            mp_obj *x = I(i);
            if (mp_mqueue_put(q, x, T_LONG) != 0)
                code = 31;
            mp_obj_free(x);
        }
        for (int i = 0; code == 0 && i < 2; i++) { /* one end-marker per worker */
            mp_obj *none = mp_obj_none();
            if (mp_mqueue_put(q, none, T_LONG) != 0)
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
            if (code || mp_mqueue_get(q, &item, 20.0) != 0) {
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
            if (mp_dict_add_int(d, "sum", v, NULL) != 0 || mp_dict_add_int(d, key, 1, NULL) != 0) {
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
        if (!code && (mp_dict_get_int(d, "sum", &sum) != 0 || sum != NS_JOBS * (NS_JOBS + 1) / 2))
            code = 52;
        /* a worker may have got no job at all (then it has no count) */
        int r1 = code ? 0 : mp_dict_get_int(d, "done:w1", &c1);
        int r2 = code ? 0 : mp_dict_get_int(d, "done:w2", &c2);
        if (!code &&
            ((r1 != 0 && r1 != MP_EKEY) || (r2 != 0 && r2 != MP_EKEY) || c1 + c2 != NS_JOBS))
            code = 53;
        mp_dict_free(d);
        d = NULL;
        if (mp_manager_shutdown(m) != 0 && !code)
            code = 54;
    } else {
        code = 91;
    }
    mp_mqueue_free(q);
    mp_dict_free(d);
    mp_manager_free(m);
    return code;
}

/* ---- Hostile dict keys through the manager (issue 11, item 6) ------------------
 *
 * A separate group: one update() of 100,000 keys chosen against simple hashes
 * (NaN, which never equals itself; ints and floats that collide under
 * Python's hash mod 2**61-1 or in their low bits; strs and bytes that collide
 * under Java's hash) must be served in well under a second, like any other
 * request, and leave every key in the dict. The server stores the dict as an
 * mp_obj dict, so this is obj.c's hash, reached through the request decoder.
 */

/* Memcheck is some 30 times slower, the sanitizers a few times. */
static double hk_slowdown(void)
{
    const char *pre = getenv("LD_PRELOAD");
    if (pre && strstr(pre, "vgpreload"))
        return 30.0;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return 4.0;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
    return 4.0;
#endif
#endif
    return 1.0;
}

static mp_obj *hk_float_bits(uint64_t bits)
{
    double f;
    memcpy(&f, &bits, sizeof f);
    return mp_obj_float(f);
}

/* Key i of a kind: 0 NaN (one bit pattern), 1 int, 2 float, 3 str, 4 bytes. */
static mp_obj *hk_key(int kind, size_t i)
{
    char text[34];
    uint64_t u = (uint64_t)(i / 2);
    switch (kind) {
    case 0:
        return hk_float_bits(UINT64_C(0x7ff8000000000000));
    case 1: /* multiples of 2**61-1, and of 2**32 */
        return mp_obj_int(i % 2 ? (int64_t)(u * ((UINT64_C(1) << 61) - 1))
                                : (int64_t)(u << 32) + 1);
    case 2: /* floats equal to ints k << 40, and beyond int64 */
        return mp_obj_float(ldexp((double)(u + 1), i % 2 ? 40 : 70));
    default: /* 17 blocks of "Aa" or "BB": one Java hashCode for all */
        for (int b = 0; b < 17; b++)
            memcpy(text + 2 * b, (i >> b) & 1 ? "BB" : "Aa", 2);
        return kind == 3 ? mp_obj_str(text, sizeof text) : mp_obj_bytes(text, sizeof text);
    }
}

static void test_update_with_100000_hostile_keys_of_each_type_is_served_fast(void **state)
{
    (void)state;
    static const char *const kinds[] = {"NaN", "int", "float", "str", "bytes"};
    double bound = 1.0 * hk_slowdown();
    size_t n = hk_slowdown() > 10 ? 20000 : 100000;
    mp_manager *m = start();
    /* a quadratic server would hold the call for a minute: fail sooner */
    TU_ASSERT_STATUS(mp_manager_set_timeout(m, 5 * bound), 0);
    mp_dict *d = NULL;
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &d), 0);
    for (int kind = 0; kind < 5; kind++) {
        mp_obj *pairs = mp_obj_list_new();
        assert_non_null(pairs);
        for (size_t i = 0; i < n; i++) {
            mp_obj *p = mp_obj_tuple_new(), *k = hk_key(kind, i), *v = mp_obj_int((int64_t)i);
            assert_true(p && k && v);
            TU_ASSERT_STATUS(mp_obj_tuple_append(p, k), 0);
            TU_ASSERT_STATUS(mp_obj_tuple_append(p, v), 0);
            TU_ASSERT_STATUS(mp_obj_list_append(pairs, p), 0);
        }
        double t0 = tu_now();
        int rc = mp_dict_update(d, pairs);
        double took = tu_now() - t0;
        mp_obj_free(pairs);
        if (rc != 0 || took > bound)
            fail_msg("update() with %zu %s keys: %s after %.2f s (bound %.1f s)", n, kinds[kind],
                     mp_strerror(rc), took, bound);
        assert_int_equal(mp_dict_len(d), (ssize_t)n);
        TU_ASSERT_STATUS(mp_dict_clear(d), 0);
    }
    mp_dict_free(d);
    TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
    mp_manager_free(m);
}

static int run_hostile_key_tests(void)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_update_with_100000_hostile_keys_of_each_type_is_served_fast),
    };
    return cmocka_run_group_tests_name("manager_hostile_keys", tests, NULL, NULL);
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
    /* MPIPC_TEST_FILTER=test_server_killed* runs only the matching tests
     * (for running the failure tests many times in a row). */
    const char *filter = getenv("MPIPC_TEST_FILTER");
    if (filter && *filter)
        cmocka_set_test_filter(filter);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_start_uses_a_private_socket_and_shutdown_cleans_it_up),
        TU_TEST(test_two_managers_are_independent_and_start_again),
        TU_TEST(test_server_exits_when_its_starter_is_killed),
        TU_TEST(test_exit_hook_stops_the_server_when_the_starter_exits),
        TU_TEST(test_server_does_not_keep_its_parents_pipes_open),
        TU_TEST(test_server_ignores_the_sigint_a_terminal_sends_the_process_group),
        TU_TEST(test_a_daemon_child_may_not_start_a_manager),
        TU_TEST(test_dict_methods_match_python),
        TU_TEST(test_dict_keys_have_python_semantics),
        TU_TEST(test_dict_convenience_forms),
        TU_TEST(test_dict_add_and_compare_and_set_are_atomic_read_modify_writes),
        TU_TEST(test_list_methods_match_python),
        TU_TEST(test_child_uses_the_parents_dict_list_and_queue),
        TU_TEST(test_seed_100_processes_decrement_under_a_lock_to_zero),
        TU_TEST(test_seed_with_atomic_add_needs_no_lock),
        TU_TEST(test_child_forked_after_the_parent_used_a_proxy_opens_its_own_connection),
        TU_TEST(test_one_proxy_used_from_several_threads),
        TU_TEST(test_8_processes_x_10000_mixed_operations_keep_the_state_exact),
        TU_TEST(test_lock_acquire_release_semantics_match_python),
        TU_TEST(test_a_lock_may_be_released_by_another_process),
        TU_TEST(test_client_killed_holding_a_lock_the_waiter_gets_it_with_eownerdead),
        TU_TEST(test_client_killed_holding_a_lock_the_next_acquirer_gets_eownerdead),
        TU_TEST(test_queue_full_and_empty_match_python),
        TU_TEST(test_queue_blocking_get_put_and_join_across_processes),
        TU_TEST(test_named_objects_are_made_once_and_attached_by_name),
        TU_TEST(test_anonymous_objects_live_while_some_process_holds_them),
        TU_TEST(test_server_killed_mid_run_every_call_returns_enoserver),
        TU_TEST(test_a_stopped_server_makes_calls_time_out_not_hang),
        TU_TEST(test_malformed_requests_get_error_replies_and_the_server_serves_on),
        TU_TEST(test_random_requests_each_get_a_reply_and_break_nothing),
        TU_TEST(test_started_manager_calls_go_through_mailboxes_of_any_size),
        TU_TEST(test_more_connections_than_mailboxes_fall_back_to_the_socket),
        TU_TEST(test_socket_clients_are_served_while_mailboxes_keep_the_server_busy),
        TU_TEST(test_int_replies_of_every_width_read_back_exactly),
        TU_TEST(test_hand_written_requests_mean_what_the_decoder_says),
        TU_TEST(test_every_request_checks_its_argument_count_and_the_server_serves_on),
        TU_TEST(test_hello_without_a_reply_limit_gets_the_servers_request_limit),
        TU_TEST(test_an_item_too_big_for_its_reader_stays_for_a_reader_that_can_take_it),
        TU_TEST(test_a_python_items_shared_references_count_in_full_and_nothing_is_lost),
        TU_TEST(test_large_requests_over_the_budget_get_eagain_and_others_are_served),
        TU_TEST(test_a_large_request_stalls_nobody_and_its_memory_is_given_back),
        TU_TEST(test_requests_behind_a_large_one_wait_without_spinning),
        TU_TEST(test_request_and_reply_size_limits),
        TU_TEST(test_a_python_client_speaks_the_protocol),
        TU_TEST(test_invalid_arguments_are_einval),
        TU_TEST(test_tcp_loopback_server_with_right_and_wrong_keys),
        TU_TEST(test_started_manager_on_a_tcp_address),
        TU_TEST(test_a_server_out_of_descriptors_refuses_newcomers_serves_the_rest_and_recovers),
        TU_TEST(test_serve_in_a_thread_releases_everything_at_shutdown),
        HS_TEST(test_1000_silent_tcp_connections_do_not_lock_out_a_client_with_the_key),
        HS_TEST(test_1000_drip_feeding_tcp_connections_do_not_lock_out_a_client_with_the_key),
        HS_TEST(test_1000_silent_unix_connections_do_not_lock_out_a_started_managers_clients),
        HS_TEST(test_the_whole_handshake_has_10_seconds_not_each_direction),
        HS_TEST(test_out_of_descriptors_a_server_drops_silent_connections_for_newcomers),
        cmocka_unit_test_setup_teardown(test_two_hosts_manager_in_one_namespace_clients_in_another,
                                        netns_setup, netns_teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    return failed + run_hostile_key_tests();
}
