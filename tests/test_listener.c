/*
 * listener: Python's Listener/Client and authkey handshake
 * (multiprocessing/connection.py; _TestListener, _TestListenerClient and the
 * authentication tests of Lib/test/_test_multiprocessing.py), between C ends
 * and against the machine's real python3 in both directions, in the 3.11
 * form (which python3 here speaks) and the 3.12+ "{sha256}" form (spoken by
 * a script that implements CPython 3.12's deliver/answer functions).
 */
#include "testutil.h"

#include <mpipc/conn.h>
#include <mpipc/listener.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define T_LONG 10.0
#define KEY    "the key"
#define KEYLEN 7
/* The slow peers' pause before their first step (seconds); the handshake's
 * timeout in those tests is twice it. */
#define SLOW_STEP 0.75

static int expect_bytes(mp_conn *c, const char *want)
{
    void *buf;
    size_t len;
    int rc = mp_conn_recv_bytes(c, 0, &buf, &len, T_LONG);
    if (rc)
        return rc;
    int ok = len == strlen(want) && memcmp(buf, want, len) == 0;
    free(buf);
    return ok ? 0 : -12345;
}

/* ---- C client, C listener ------------------------------------------------ */

struct client_args {
    const char *address;
    const char *key;
    size_t keylen;
    int expect; /* the status the client should get */
};

/* Connect, and on success echo one message reversed. */
static int c_client(void *arg)
{
    struct client_args *a = arg;
    mp_conn *c;
    int rc = mp_client_connect(&c, a->address, a->key, a->keylen, T_LONG);
    if (rc != a->expect)
        return 10;
    if (rc != 0)
        return 0;
    void *buf;
    size_t len;
    if (mp_conn_recv_bytes(c, 0, &buf, &len, T_LONG) != 0)
        return 11;
    char *m = buf;
    for (size_t i = 0; i < len / 2; i++) {
        char t = m[i];
        m[i] = m[len - 1 - i];
        m[len - 1 - i] = t;
    }
    rc = mp_conn_send_bytes(c, m, len);
    free(buf);
    mp_conn_free(c);
    return rc == 0 ? 0 : 12;
}

static void serve_one(mp_listener *l, int form_ok)
{
    mp_conn *c;
    TU_ASSERT_STATUS(mp_listener_accept(l, &c, T_LONG), form_ok);
    if (form_ok != 0)
        return;
    assert_int_equal(mp_conn_send_bytes(c, "olleh", 5), 0);
    TU_ASSERT_STATUS(expect_bytes(c, "hello"), 0);
    mp_conn_free(c);
}

static void test_private_unix_listener_is_0700_dir_0600_socket_and_cleans_up(void **state)
{
    (void)state;
    mp_listener *l;
    assert_int_equal(mp_listener_new(&l, NULL, KEY, KEYLEN, NULL), 0);
    const char *addr = mp_listener_address(l);
    assert_true(strncmp(addr, "unix:", 5) == 0);
    const char *path = addr + 5;
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    char dir[512];
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = '\0';
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    struct client_args a = {addr, KEY, KEYLEN, 0};
    pid_t pid = tu_fork(c_client, &a);
    serve_one(l, 0);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    assert_non_null(mp_listener_last_accepted(l));

    char saved[512];
    snprintf(saved, sizeof saved, "%s", path);
    mp_listener_free(l);
    assert_int_equal(stat(saved, &st), -1); /* socket removed */
    assert_int_equal(stat(dir, &st), -1);   /* and its directory */
}

static void test_tcp_loopback_with_ephemeral_port(void **state)
{
    (void)state;
    mp_listener *l;
    assert_int_equal(mp_listener_new(&l, "tcp:127.0.0.1:0", KEY, KEYLEN, NULL), 0);
    unsigned port = 0;
    assert_int_equal(sscanf(mp_listener_address(l), "tcp:127.0.0.1:%u", &port), 1);
    assert_true(port > 0);
    struct client_args a = {mp_listener_address(l), KEY, KEYLEN, 0};
    pid_t pid = tu_fork(c_client, &a);
    serve_one(l, 0);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    assert_true(strncmp(mp_listener_last_accepted(l), "tcp:127.0.0.1:", 14) == 0);
    mp_listener_free(l);
}

static void test_wrong_key_is_eauth_on_both_sides(void **state)
{
    (void)state;
    for (int form = MP_AUTH_SHA256; form <= MP_AUTH_MD5; form++) {
        mp_listener_opts o = MP_LISTENER_OPTS_INIT;
        o.challenge = form;
        mp_listener *l;
        assert_int_equal(mp_listener_new(&l, NULL, KEY, KEYLEN, &o), 0);
        struct client_args a = {mp_listener_address(l), "not the key", 11, MP_EAUTH};
        pid_t pid = tu_fork(c_client, &a);
        serve_one(l, MP_EAUTH);
        assert_int_equal(tu_wait_child(pid, T_LONG), 0);
        /* The listener serves the next client normally. */
        struct client_args good = {mp_listener_address(l), KEY, KEYLEN, 0};
        pid = tu_fork(c_client, &good);
        serve_one(l, 0);
        assert_int_equal(tu_wait_child(pid, T_LONG), 0);
        mp_listener_free(l);
    }
}

static void test_no_key_means_no_handshake(void **state)
{
    (void)state;
    mp_listener *l;
    assert_int_equal(mp_listener_new(&l, "tcp:127.0.0.1:0", NULL, 0, NULL), 0);
    struct client_args a = {mp_listener_address(l), NULL, 0, 0};
    pid_t pid = tu_fork(c_client, &a);
    serve_one(l, 0);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    mp_listener_free(l);
}

static void test_listener_fd_works_with_wait_and_accept_times_out(void **state)
{
    (void)state;
    mp_listener *l;
    assert_int_equal(mp_listener_new(&l, NULL, KEY, KEYLEN, NULL), 0);
    mp_wait_item item = {.conn = NULL, .fd = mp_listener_fileno(l)};
    assert_int_equal(mp_wait(&item, 1, 0.05), 0);
    mp_conn *c;
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_listener_accept(l, &c, 0.2), MP_ETIMEDOUT);
    assert_true(tu_now() - t0 >= 0.19);
    assert_null(c);
    struct client_args a = {mp_listener_address(l), KEY, KEYLEN, 0};
    pid_t pid = tu_fork(c_client, &a);
    assert_int_equal(mp_wait(&item, 1, T_LONG), 1);
    serve_one(l, 0);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    assert_int_equal(mp_listener_close(l), 0);
    assert_int_equal(mp_listener_close(l), 0);
    TU_ASSERT_STATUS(mp_listener_accept(l, &c, 0), MP_ECLOSED);
    TU_ASSERT_STATUS(mp_listener_fileno(l), MP_ECLOSED);
    mp_listener_free(l);
}

static void test_abstract_unix_address(void **state)
{
    (void)state;
    char addr[64];
    snprintf(addr, sizeof addr, "unix:@mpipc-test-%d", (int)getpid());
    mp_listener *l;
    assert_int_equal(mp_listener_new(&l, addr, KEY, KEYLEN, NULL), 0);
    assert_string_equal(mp_listener_address(l), addr);
    struct client_args a = {addr, KEY, KEYLEN, 0};
    pid_t pid = tu_fork(c_client, &a);
    serve_one(l, 0);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    mp_listener_free(l);
}

static void test_bad_addresses_and_refused_connections(void **state)
{
    (void)state;
    mp_listener *l;
    mp_conn *c;
    const char *bad[] = {"",          "tcp:",  "tcp:127.0.0.1:", "tcp:127.0.0.1:99999",
                         "host:port", "unix:", "tcp:1.2.3.4:-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(mp_listener_new(&l, bad[i], NULL, 0, NULL), -EINVAL);
        assert_null(l);
        assert_int_equal(mp_client_connect(&c, bad[i], NULL, 0, 1.0), -EINVAL);
        assert_null(c);
    }
    assert_int_equal(mp_client_connect(&c, "unix:/nonexistent/mpipc.sock", NULL, 0, 1.0), -ENOENT);
    /* A port nobody listens on: bind one, close it, connect. */
    assert_int_equal(mp_listener_new(&l, "tcp:127.0.0.1:0", NULL, 0, NULL), 0);
    char addr[64];
    snprintf(addr, sizeof addr, "%s", mp_listener_address(l));
    mp_listener_free(l);
    assert_int_equal(mp_client_connect(&c, addr, NULL, 0, 1.0), -ECONNREFUSED);
    /* The same path twice. */
    assert_int_equal(mp_listener_new(&l, NULL, NULL, 0, NULL), 0);
    mp_listener *l2;
    assert_int_equal(mp_listener_new(&l2, mp_listener_address(l), NULL, 0, NULL), -EADDRINUSE);
    mp_listener_free(l);
}

static int close_inherited_listener(void *arg)
{
    mp_listener_free(arg);
    return 0;
}

static void test_only_the_creating_process_removes_the_socket_file(void **state)
{
    (void)state;
    mp_listener *l;
    assert_int_equal(mp_listener_new(&l, NULL, KEY, KEYLEN, NULL), 0);
    pid_t pid = tu_fork(close_inherited_listener, l);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    struct stat st;
    assert_int_equal(stat(mp_listener_address(l) + 5, &st), 0);
    struct client_args a = {mp_listener_address(l), KEY, KEYLEN, 0};
    pid = tu_fork(c_client, &a);
    serve_one(l, 0);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    mp_listener_free(l);
}

/* ---- hostile peers ---------------------------------------------------------- */

struct raw_peer {
    const char *address;
    int mode;
};

enum {
    SEND_GARBAGE,
    SEND_HUGE,
    SEND_NOTHING,
    SEND_BAD_FRAME,
    HANG_UP,
    SEND_SHORT_CHALLENGE,
    SEND_UNKNOWN_DIGEST
};

/* The other side may hang up on us at any point: that is its right. */
static void raw_send(int fd, const void *p, size_t n)
{
    (void)send(fd, p, n, MSG_NOSIGNAL);
}

static void raw_frame(int fd, const char *payload, size_t n)
{
    unsigned char h[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                          (unsigned char)(n >> 8), (unsigned char)n};
    raw_send(fd, h, 4);
    raw_send(fd, payload, n);
}

/* Stay connected, reading and dropping whatever comes, until the other side
 * hangs up (or T_LONG passes): it must decide on its own, and the test need
 * not wait out a fixed stay once it has. */
static void stay_until_hangup(int fd)
{
    double end = tu_now() + T_LONG;
    for (;;) {
        double left = end - tu_now();
        struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
        if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) < 0)
            return;
        char buf[4096];
        ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
            return;
    }
}

static void act(int fd, int mode)
{
    static char huge[100000];
    switch (mode) {
    case SEND_GARBAGE:
        raw_frame(fd, "#NOT-A-CHALLENGE# and not an answer either", 42);
        break;
    case SEND_HUGE:
        memset(huge, 'x', sizeof huge);
        raw_frame(fd, huge, sizeof huge);
        break;
    case SEND_BAD_FRAME:
        raw_send(fd, "\xff\xff\xff\x00garbage", 11);
        break;
    case SEND_SHORT_CHALLENGE:
        raw_frame(fd, "#CHALLENGE#short", 16);
        break;
    case SEND_UNKNOWN_DIGEST:
        raw_frame(fd, "#CHALLENGE#{sha384}0123456789012345678901234567890123456789", 59);
        break;
    case HANG_UP:
        return;
    case SEND_NOTHING:
        break;
    }
    stay_until_hangup(fd);
}

/* A client that connects and misbehaves instead of answering. */
static int raw_client(void *arg)
{
    struct raw_peer *p = arg;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", p->address + 5);
    if (connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0)
        return 40;
    act(fd, p->mode);
    close(fd);
    return 0;
}

static void test_garbage_from_a_client_is_eauth_never_a_hang(void **state)
{
    (void)state;
    mp_listener *l;
    assert_int_equal(mp_listener_new(&l, NULL, KEY, KEYLEN, NULL), 0);
    const struct {
        int mode;
        int expect;
    } cases[] = {{SEND_GARBAGE, MP_EAUTH},
                 {SEND_HUGE, MP_EAUTH},
                 {SEND_BAD_FRAME, MP_EAUTH},
                 {HANG_UP, MP_EOF},
                 {SEND_NOTHING, MP_ETIMEDOUT}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct raw_peer p = {mp_listener_address(l), cases[i].mode};
        pid_t pid = tu_fork(raw_client, &p);
        mp_conn *c;
        double t0 = tu_now();
        TU_ASSERT_STATUS(mp_listener_accept(l, &c, 0.5), cases[i].expect);
        assert_true(tu_now() - t0 < 1.5);
        assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    }
    /* Still serving. */
    struct client_args a = {mp_listener_address(l), KEY, KEYLEN, 0};
    pid_t pid = tu_fork(c_client, &a);
    serve_one(l, 0);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    mp_listener_free(l);
}

/* A client that answers the listener's challenge after SLOW_STEP s, then
 * says nothing until the listener hangs up. */
static int slow_client(void *arg)
{
    const char *address = arg;
    mp_conn *c;
    if (mp_client_connect(&c, address, NULL, 0, T_LONG) != 0)
        return 50;
    tu_sleep(SLOW_STEP);
    int rc = mp_answer_challenge(c, KEY, KEYLEN, T_LONG);
    void *buf;
    size_t len;
    if (rc == 0 && mp_conn_recv_bytes(c, 0, &buf, &len, T_LONG) != MP_EOF)
        rc = 51;
    mp_conn_free(c);
    return rc == 0 ? 0 : 52;
}

/* A listener without a key that challenges its client after SLOW_STEP s, then
 * never answers the client's challenge (until the client hangs up). */
static int slow_server(void *arg)
{
    mp_listener *l = arg;
    mp_conn *c;
    if (mp_listener_accept(l, &c, T_LONG) != 0)
        return 60;
    tu_sleep(SLOW_STEP);
    int rc = mp_deliver_challenge(c, KEY, KEYLEN, MP_AUTH_SHA256, T_LONG);
    void *buf;
    size_t len;
    if (rc == 0 && mp_conn_recv_bytes(c, 0, &buf, &len, T_LONG) == 0)
        free(buf); /* the client's challenge, left unanswered */
    else
        rc = 61;
    if (rc == 0 && mp_conn_recv_bytes(c, 0, &buf, &len, T_LONG) != MP_EOF)
        rc = 63;
    mp_conn_free(c);
    mp_listener_free(l);
    return rc == 0 ? 0 : 62;
}

static void test_one_timeout_covers_the_whole_handshake_not_each_direction(void **state)
{
    (void)state;
    /* A peer that takes SLOW_STEP (0.75 s) over the first direction and
     * then stalls the second: accept and connect with a 1.5 s timeout
     * return MP_ETIMEDOUT after 1.5 s in all, not 1.5 s after the first
     * direction ended (2.25 s, past the bound below). */
    mp_listener *l;
    assert_int_equal(mp_listener_new(&l, NULL, KEY, KEYLEN, NULL), 0);
    pid_t pid = tu_fork(slow_client, (void *)mp_listener_address(l));
    mp_conn *c;
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_listener_accept(l, &c, 2 * SLOW_STEP), MP_ETIMEDOUT);
    double took = tu_now() - t0;
    assert_true(took >= 2 * SLOW_STEP - 0.05 && took < 2 * SLOW_STEP + 0.6);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    mp_listener_free(l);

    assert_int_equal(mp_listener_new(&l, NULL, NULL, 0, NULL), 0);
    char address[512];
    snprintf(address, sizeof address, "%s", mp_listener_address(l));
    pid = tu_fork(slow_server, l); /* it accepts on its copy */
    t0 = tu_now();
    TU_ASSERT_STATUS(mp_client_connect(&c, address, KEY, KEYLEN, 2 * SLOW_STEP), MP_ETIMEDOUT);
    took = tu_now() - t0;
    assert_true(took >= 2 * SLOW_STEP - 0.05 && took < 2 * SLOW_STEP + 0.6);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    mp_listener_free(l);
}

/* A server that accepts and misbehaves instead of challenging. */
static int raw_server(void *arg)
{
    struct raw_peer *p = arg;
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", p->address + 5);
    if (bind(lfd, (struct sockaddr *)&sun, sizeof sun) < 0 || listen(lfd, 1) < 0)
        return 40;
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0)
        return 41;
    act(fd, p->mode);
    close(fd);
    close(lfd);
    return 0;
}

static void test_garbage_from_a_server_is_eauth_never_a_hang(void **state)
{
    (void)state;
    const struct {
        int mode;
        int expect;
    } cases[] = {{SEND_GARBAGE, MP_EAUTH},        {SEND_HUGE, MP_EAUTH},
                 {SEND_BAD_FRAME, MP_EAUTH},      {SEND_SHORT_CHALLENGE, MP_EAUTH},
                 {SEND_UNKNOWN_DIGEST, MP_EAUTH}, {HANG_UP, MP_EOF},
                 {SEND_NOTHING, MP_ETIMEDOUT}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[128];
        snprintf(path, sizeof path, "unix:/tmp/mpipc-test-raw-%d.sock", (int)getpid());
        unlink(path + 5);
        struct raw_peer p = {path, cases[i].mode};
        pid_t pid = tu_fork(raw_server, &p);
        mp_conn *c = NULL;
        int rc;
        double t0 = tu_now();
        do /* until the server has bound */
            rc = mp_client_connect(&c, path, KEY, KEYLEN, 0.5);
        while ((rc == -ENOENT || rc == -ECONNREFUSED) && tu_now() - t0 < T_LONG);
        TU_ASSERT_STATUS(rc, cases[i].expect);
        assert_null(c);
        assert_int_equal(tu_wait_child(pid, T_LONG), 0);
        unlink(path + 5);
    }
}

/* ---- against the real python3 ----------------------------------------------- */

static const char PY_LISTENER[] =
    "import os, sys\n"
    "from multiprocessing.connection import Listener\n"
    "from multiprocessing import AuthenticationError\n"
    "fam, addr, key, report = sys.argv[1], sys.argv[2], sys.argv[3].encode(), int(sys.argv[4])\n"
    "address = addr if fam == 'unix' else ('127.0.0.1', 0)\n"
    "l = Listener(address, authkey=key)\n"
    "a = l.address\n"
    "os.write(report, (('unix:' + a) if fam == 'unix' else 'tcp:%s:%d' % a).encode())\n"
    "os.close(report)\n"
    "try:\n"
    "    c = l.accept()\n"
    "except AuthenticationError:\n"
    "    sys.exit(3)\n"
    "c.send_bytes(b'olleh')\n"
    "assert c.recv_bytes() == b'hello'\n"
    "c.close(); l.close()\n";

/* Start the Python listener under the interpreter py; returns its pid and
 * fills its address. */
static pid_t start_py_listener(const char *py, const char *fam, char *addr, size_t cap)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    char path[128], report[16];
    snprintf(path, sizeof path, "/tmp/mpipc-test-py-%d.sock", (int)getpid());
    unlink(path);
    snprintf(report, sizeof report, "%d", fds[1]);
    const char *args[] = {fam, path, KEY, report, NULL};
    pid_t pid = tu_spawn_python_as(py, PY_LISTENER, args, &fds[1], 1);
    close(fds[1]);
    size_t got = 0;
    ssize_t n;
    while (got < cap - 1 && (n = read(fds[0], addr + got, cap - 1 - got)) > 0)
        got += (size_t)n;
    addr[got] = '\0';
    close(fds[0]);
    assert_true(got > 0);
    return pid;
}

/* Under python3 and each 3.12+ interpreter (3.12 changed the handshake). */
static void test_c_client_joins_a_python_listener(void **state)
{
    (void)state;
    const char *fams[] = {"unix", "tcp"};
    const char *py;
    for (size_t pyi = 0; (py = tu_python_at(pyi)) != NULL; pyi++) {
        for (int i = 0; i < 2; i++) {
            char addr[256];
            pid_t pid = start_py_listener(py, fams[i], addr, sizeof addr);
            struct client_args a = {addr, KEY, KEYLEN, 0};
            assert_int_equal(c_client(&a), 0);
            assert_int_equal(tu_wait_child(pid, T_LONG), 0);
        }
    }
}

static void test_python_listener_refuses_a_wrong_key_and_so_does_the_c_client(void **state)
{
    (void)state;
    const char *py;
    for (size_t pyi = 0; (py = tu_python_at(pyi)) != NULL; pyi++) {
        char addr[256];
        pid_t pid = start_py_listener(py, "unix", addr, sizeof addr);
        struct client_args a = {addr, "wrong", 5, MP_EAUTH};
        assert_int_equal(c_client(&a), 0);
        assert_int_equal(tu_wait_child(pid, T_LONG), 3); /* Python's AuthenticationError */
    }
}

static const char PY_CLIENT[] = "import sys\n"
                                "from multiprocessing.connection import Client\n"
                                "from multiprocessing import AuthenticationError\n"
                                "addr, key = sys.argv[1], sys.argv[2].encode()\n"
                                "if addr.startswith('unix:'):\n"
                                "    address = addr[5:]\n"
                                "else:\n"
                                "    h, p = addr[4:].rsplit(':', 1); address = (h, int(p))\n"
                                "try:\n"
                                "    c = Client(address, authkey=key)\n"
                                "except AuthenticationError:\n"
                                "    sys.exit(3)\n"
                                "m = c.recv_bytes(); c.send_bytes(m[::-1]); c.close()\n";

/* Each interpreter's Client (3.11's answers with HMAC-MD5, 3.12+'s with
 * "{sha256}") joins under both challenge forms the listener can send. */
static void test_python_client_joins_a_c_listener_in_both_forms(void **state)
{
    (void)state;
    const char *addrs[] = {NULL, "tcp:127.0.0.1:0"};
    const char *py;
    for (size_t pyi = 0; (py = tu_python_at(pyi)) != NULL; pyi++) {
        for (int i = 0; i < 2; i++) {
            for (int form = MP_AUTH_SHA256; form <= MP_AUTH_MD5; form++) {
                mp_listener_opts o = MP_LISTENER_OPTS_INIT;
                o.challenge = form;
                mp_listener *l;
                assert_int_equal(mp_listener_new(&l, addrs[i], KEY, KEYLEN, &o), 0);
                const char *args[] = {mp_listener_address(l), KEY, NULL};
                pid_t pid = tu_spawn_python_as(py, PY_CLIENT, args, NULL, 0);
                serve_one(l, 0);
                assert_int_equal(tu_wait_child(pid, T_LONG), 0);
                mp_listener_free(l);
            }
        }
    }
}

static void test_python_client_with_a_wrong_key_is_refused_both_ways(void **state)
{
    (void)state;
    const char *py;
    for (size_t pyi = 0; (py = tu_python_at(pyi)) != NULL; pyi++) {
        mp_listener *l;
        assert_int_equal(mp_listener_new(&l, NULL, KEY, KEYLEN, NULL), 0);
        const char *args[] = {mp_listener_address(l), "wrong", NULL};
        pid_t pid = tu_spawn_python_as(py, PY_CLIENT, args, NULL, 0);
        mp_conn *c;
        TU_ASSERT_STATUS(mp_listener_accept(l, &c, T_LONG), MP_EAUTH);
        assert_int_equal(tu_wait_child(pid, T_LONG), 3);
        mp_listener_free(l);
    }
}

/* CPython 3.12's handshake, written out from its specification so it runs
 * on any python3: the peer sends "{sha256}" challenges and answers them with
 * "{sha256}" + HMAC-SHA256. Exits 0 on success, 3 on AuthenticationError. */
static const char PY_MODERN[] =
    "import hmac, os, sys\n"
    "from multiprocessing.connection import Listener, Client\n"
    "role, addr, key = sys.argv[1], sys.argv[2], sys.argv[3].encode()\n"
    "C, W, F = b'#CHALLENGE#', b'#WELCOME#', b'#FAILURE#'\n"
    "def deliver(c):\n"
    "    m = b'{sha256}' + os.urandom(40)\n"
    "    c.send_bytes(C + m)\n"
    "    r = c.recv_bytes(256)\n"
    "    ok = r.startswith(b'{sha256}') and hmac.compare_digest(\n"
    "        r[8:], hmac.new(key, m, 'sha256').digest())\n"
    "    c.send_bytes(W if ok else F)\n"
    "    if not ok: sys.exit(3)\n"
    "def answer(c):\n"
    "    m = c.recv_bytes(256)\n"
    "    assert m.startswith(C); m = m[len(C):]\n"
    "    if len(m) in (16, 20):\n"
    "        d = hmac.new(key, m, 'md5').digest()\n"
    "    else:\n"
    "        name = m[1:m.index(b'}')].decode()\n"
    "        d = b'{%s}' % name.encode() + hmac.new(key, m, name).digest()\n"
    "    c.send_bytes(d)\n"
    "    if c.recv_bytes(256) != W: sys.exit(3)\n"
    "if role == 'server':\n"
    "    l = Listener(addr[5:])\n"
    "    c = l.accept(); deliver(c); answer(c)\n"
    "    c.send_bytes(b'olleh'); assert c.recv_bytes() == b'hello'\n"
    "    c.close(); l.close()\n"
    "else:\n"
    "    c = Client(addr[5:]); answer(c); deliver(c)\n"
    "    m = c.recv_bytes(); c.send_bytes(m[::-1]); c.close()\n";

static void test_the_312_sha256_form_both_ways(void **state)
{
    (void)state;
    /* A C listener and a 3.12-style client. */
    mp_listener *l;
    assert_int_equal(mp_listener_new(&l, NULL, KEY, KEYLEN, NULL), 0);
    const char *cargs[] = {"client", mp_listener_address(l), KEY, NULL};
    pid_t pid = tu_spawn_python(PY_MODERN, cargs, NULL, 0);
    serve_one(l, 0);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    /* ... with a wrong key. */
    const char *wargs[] = {"client", mp_listener_address(l), "wrong", NULL};
    pid = tu_spawn_python(PY_MODERN, wargs, NULL, 0);
    serve_one(l, MP_EAUTH);
    assert_int_equal(tu_wait_child(pid, T_LONG), 3);
    mp_listener_free(l);

    /* A 3.12-style listener and a C client. */
    char path[128];
    snprintf(path, sizeof path, "unix:/tmp/mpipc-test-modern-%d.sock", (int)getpid());
    unlink(path + 5);
    const char *sargs[] = {"server", path, KEY, NULL};
    pid = tu_spawn_python(PY_MODERN, sargs, NULL, 0);
    mp_conn *c = NULL;
    int rc;
    double t0 = tu_now();
    do /* until Python has bound */
        rc = mp_client_connect(&c, path, KEY, KEYLEN, T_LONG);
    while ((rc == -ENOENT || rc == -ECONNREFUSED) && tu_now() - t0 < T_LONG);
    TU_ASSERT_STATUS(rc, 0);
    TU_ASSERT_STATUS(expect_bytes(c, "olleh"), 0);
    assert_int_equal(mp_conn_send_bytes(c, "hello", 5), 0);
    mp_conn_free(c);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    unlink(path + 5);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_private_unix_listener_is_0700_dir_0600_socket_and_cleans_up),
        TU_TEST(test_tcp_loopback_with_ephemeral_port),
        TU_TEST(test_wrong_key_is_eauth_on_both_sides),
        TU_TEST(test_no_key_means_no_handshake),
        TU_TEST(test_listener_fd_works_with_wait_and_accept_times_out),
        TU_TEST(test_abstract_unix_address),
        TU_TEST(test_bad_addresses_and_refused_connections),
        TU_TEST(test_only_the_creating_process_removes_the_socket_file),
        TU_TEST(test_garbage_from_a_client_is_eauth_never_a_hang),
        TU_TEST(test_garbage_from_a_server_is_eauth_never_a_hang),
        TU_TEST(test_one_timeout_covers_the_whole_handshake_not_each_direction),
        TU_TEST(test_c_client_joins_a_python_listener),
        TU_TEST(test_python_listener_refuses_a_wrong_key_and_so_does_the_c_client),
        TU_TEST(test_python_client_joins_a_c_listener_in_both_forms),
        TU_TEST(test_python_client_with_a_wrong_key_is_refused_both_ways),
        TU_TEST(test_the_312_sha256_form_both_ways),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
