/*
 * Helpers the manager's test binaries share (tests/test_manager*.c): see
 * mgr_testutil.h. Linked into each of them as the mpipc_mgr_testutil library.
 */
#include "mgr_testutil.h"

#include <mpipc/listener.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- values and reprs ----------------------------------------------------------- */

mp_obj *mt_str(const char *s)
{
    return mp_obj_str_cstr(s);
}

mp_obj *mt_int(int64_t v)
{
    return mp_obj_int(v);
}

/* {k: v} */
mp_obj *mt_dict1(const char *k, int64_t v)
{
    mp_obj *d = mp_obj_dict_new();
    assert_int_equal(mp_obj_dict_set(d, mt_str(k), mt_int(v)), 0);
    return d;
}

static void mt_assert_repr(const mp_obj *o, const char *want)
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
void mt_take_repr(mp_obj *o, const char *want)
{
    assert_non_null(o);
    mt_assert_repr(o, want);
    mp_obj_free(o);
}

/* ---- a started manager and its counters ----------------------------------------- */

mp_manager *mt_start(void)
{
    mp_manager *m = NULL;
    TU_ASSERT_STATUS(mp_manager_start(&m, NULL), 0);
    assert_non_null(m);
    return m;
}

int64_t mt_info_int(mp_manager *m, const char *key)
{
    mp_obj *info;
    TU_ASSERT_STATUS(mp_manager_info(m, &info), 0);
    int64_t v = -1;
    assert_int_equal(mp_obj_get_int(mp_obj_dict_get_cstr(info, key), &v), 0);
    mp_obj_free(info);
    return v;
}

/* Wait until the server has n requests parked (info 'waiting'). */
bool mt_eventually_waiting(mp_manager *m, int64_t n)
{
    double end = tu_now() + MT_LONG;
    while (tu_now() < end) {
        if (mt_info_int(m, "waiting") == n)
            return true;
        tu_sleep(0.002);
    }
    return false;
}

/* ---- children: pipes and processes ---------------------------------------------- */

/* A byte through a pipe, with a deadline: how children say "I got here". */
int mt_wait_byte(int fd, double timeout)
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

void mt_say(int fd)
{
    char b = 1;
    if (write(fd, &b, 1) != 1)
        _exit(99);
}

/* Read exactly n bytes, each wait bounded. 0, or -1 on end of file,
 * error or timeout. */
int mt_read_full(int fd, void *buf, size_t n, double timeout)
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
bool mt_pid_gone(pid_t pid)
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

int mt_env_int(const char *name, int dflt)
{
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}

/* ---- raw requests on an authenticated connection -------------------------------- */

/* Send raw frames on an authenticated connection; read the reply. */
mp_obj *mt_raw_call(mp_conn *c, const void *frame, size_t len)
{
    assert_int_equal(mp_conn_send_bytes(c, frame, len), 0);
    mp_obj *r = NULL;
    TU_ASSERT_STATUS(mp_conn_recv(c, &r, MT_LONG), 0);
    return r;
}

int mt_reply_code(mp_obj *r)
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

mp_obj *mt_request(int64_t ident, const char *method, mp_obj *args)
{
    mp_obj *t = mp_obj_tuple_new();
    mp_obj_tuple_append(t, mt_int(ident));
    mp_obj_tuple_append(t, mt_str(method));
    mp_obj_tuple_append(t, args ? args : mp_obj_tuple_new());
    return t;
}

int mt_send_obj(mp_conn *c, mp_obj *req)
{
    assert_int_equal(mp_conn_send(c, req), 0);
    mp_obj_free(req);
    mp_obj *r = NULL;
    TU_ASSERT_STATUS(mp_conn_recv(c, &r, MT_LONG), 0);
    return mt_reply_code(r);
}

/* A raw connection to m's server, with its key (no hello yet). */
mp_conn *mt_raw_connect(mp_manager *m)
{
    size_t keylen;
    const void *key = mp_manager_authkey(m, &keylen);
    mp_conn *c = NULL;
    TU_ASSERT_STATUS(mp_client_connect(&c, mp_manager_address(m), key, keylen, MT_LONG), 0);
    return c;
}

/* Say hello on a raw connection, with a reply limit (0: the server's). */
void mt_raw_hello(mp_conn *c, int64_t session, int64_t max_reply)
{
    mp_obj *hello = mp_obj_tuple_new();
    mp_obj_tuple_append(hello, mt_int(session));
    mp_obj_tuple_append(hello, mt_int(getpid()));
    mp_obj_tuple_append(hello, mt_int(max_reply));
    mp_obj_tuple_append(hello, mt_int(1));
    assert_int_equal(mt_send_obj(c, mt_request(0, "hello", hello)), 0);
}

/* ---- a manager served by a child on TCP loopback -------------------------------- */

static void mt_report_address(const char *address, void *arg)
{
    int fd = *(int *)arg;
    char buf[256] = {0};
    snprintf(buf, sizeof buf, "%s", address);
    if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf)
        _exit(98);
}

int mt_serving_child(void *arg)
{
    const struct mt_serving *sv = arg;
    int fd = sv->fd;
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    o.ready = mt_report_address;
    o.ready_arg = &fd;
    o.handshake_timeout = sv->handshake_timeout;
    int rc = mp_manager_serve("tcp:127.0.0.1:0", "secret", 6, &o);
    return rc == 0 ? 0 : 10;
}

pid_t mt_serve_in_child(char *address, size_t cap)
{
    return mt_serve_in_child_hs(address, cap, 0.0);
}

pid_t mt_serve_in_child_hs(char *address, size_t cap, double handshake_timeout)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    struct mt_serving sv = {p[1], handshake_timeout};
    pid_t pid = tu_fork(mt_serving_child, &sv);
    close(p[1]);
    char buf[256];
    assert_int_equal(mt_read_full(p[0], buf, sizeof buf, MT_LONG), 0);
    close(p[0]);
    buf[sizeof buf - 1] = '\0';
    snprintf(address, cap, "%s", buf);
    return pid;
}

