/*
 * reduction: passing descriptors and connection ends over a connection
 * (Python's multiprocessing.reduction send_handle/recv_handle, and a
 * Connection sent over a Connection), between C processes, with the
 * machine's python3 and its 3.12+ interpreters on the other side both ways, and against raw sendmsg
 * peers that send descriptors they did not announce: none may leak.
 */
#include "reduction_testutil.h"

#include "core/io.h"

#include <mpipc/conn.h>
#include <mpipc/listener.h>
#include <mpipc/reduction.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- send_handle / recv_handle between C processes --------------------------------- */

struct child_end {
    mp_conn *end;
    mp_conn *other; /* the parent's end, closed in the child */
};

/* The child receives a handle and checks the file behind it. */
static int child_recv_file(void *arg)
{
    struct child_end *x = arg;
    mp_conn_free(x->other);
    int fd;
    if (mp_recv_handle(x->end, &fd, T_LONG) != 0)
        return 1;
    int bad = file_has(fd, "from the parent");
    close(fd);
    if (bad)
        return 2;
    return send_str(x->end, "seen") == 0 ? 0 : 3;
}

/* Python's send_handle(conn, fd, pid) then recv_handle(conn) in the child:
 * the child reads the file the parent opened, after the parent closed its
 * own descriptor. */
static void test_handle_sent_to_a_child_opens_the_same_file(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    struct child_end x = {b, a};
    pid_t pid = tu_fork(child_recv_file, &x);
    int fd = make_file("from the parent");
    assert_int_equal(mp_send_handle(a, fd, pid), 0);
    close(fd);
    assert_int_equal(expect_bytes(a, "seen"), 0);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* The descriptor received is new, close-on-exec, and the same open file
 * (a dup in effect: same inode, shared offset). */
static void test_received_handle_is_a_cloexec_duplicate(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    int fd = make_file("dup");
    assert_int_equal(mp_send_handle(b, fd, getpid()), 0);
    int got = -1;
    assert_int_equal(mp_recv_handle(a, &got, T_LONG), 0);
    assert_true(got >= 0);
    assert_int_not_equal(got, fd);
    assert_true(fcntl(got, F_GETFD) & FD_CLOEXEC);
    struct stat s1, s2;
    assert_int_equal(fstat(fd, &s1), 0);
    assert_int_equal(fstat(got, &s2), 0);
    assert_true(s1.st_ino == s2.st_ino && s1.st_dev == s2.st_dev);
    assert_int_equal(lseek(got, 2, SEEK_SET), 2);
    assert_int_equal(lseek(fd, 0, SEEK_CUR), 2); /* one open file description */
    close(fd);
    close(got);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* ---- with python3 on the other side -------------------------------------------------- */

static const char PY_SEND_HANDLE[] = "import sys, tempfile\n"
                                     "from multiprocessing.connection import Connection\n"
                                     "from multiprocessing.reduction import send_handle\n"
                                     "c = Connection(int(sys.argv[1]))\n"
                                     "with tempfile.TemporaryFile() as f:\n"
                                     "    f.write(b'written by python')\n"
                                     "    f.flush()\n"
                                     "    send_handle(c, f.fileno(), 0)\n"
                                     "c.recv_bytes()\n";

/* Python opens a file and sends it with reduction.send_handle; C receives
 * it with mp_recv_handle and reads what Python wrote. */
static void python_send_handle_case(const char *py)
{
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    int pyfd = mp_conn_fileno(b);
    char arg[16];
    snprintf(arg, sizeof arg, "%d", pyfd);
    const char *args[] = {arg, NULL};
    pid_t pid = tu_spawn_python_as(py, PY_SEND_HANDLE, args, &pyfd, 1);
    int fd = -1;
    int rc = mp_recv_handle(a, &fd, T_LONG);
    assert_int_equal(send_str(a, "done"), 0);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    TU_ASSERT_STATUS(rc, 0);
    assert_int_equal(file_has(fd, "written by python"), 0);
    close(fd);
    mp_conn_free(a);
    mp_conn_free(b);
}

static void test_python_send_handle_reaches_c_recv_handle(void **state)
{
    (void)state;
    const char *py;
    for (size_t pyi = 0; (py = tu_python_at(pyi)) != NULL; pyi++)
        python_send_handle_case(py);
}

static const char PY_RECV_HANDLE[] = "import os, sys\n"
                                     "from multiprocessing.connection import Connection\n"
                                     "from multiprocessing.reduction import recv_handle\n"
                                     "c = Connection(int(sys.argv[1]))\n"
                                     "fd = recv_handle(c)\n"
                                     "c.send_bytes(os.pread(fd, 100, 0))\n"
                                     "os.close(fd)\n";

/* C sends a file it wrote with mp_send_handle; Python's recv_handle gets
 * it and sends back what it reads there. */
static void c_send_handle_case(const char *py)
{
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    int pyfd = mp_conn_fileno(b);
    char arg[16];
    snprintf(arg, sizeof arg, "%d", pyfd);
    const char *args[] = {arg, NULL};
    pid_t pid = tu_spawn_python_as(py, PY_RECV_HANDLE, args, &pyfd, 1);
    int fd = make_file("written by C");
    assert_int_equal(mp_send_handle(a, fd, pid), 0);
    close(fd);
    int rc = expect_bytes(a, "written by C");
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    TU_ASSERT_STATUS(rc, 0);
    mp_conn_free(a);
    mp_conn_free(b);
}

static void test_c_send_handle_reaches_python_recv_handle(void **state)
{
    (void)state;
    const char *py;
    for (size_t pyi = 0; (py = tu_python_at(pyi)) != NULL; pyi++)
        c_send_handle_case(py);
}

static const char PY_HAND_OVER_SOCKET[] =
    "import socket, sys\n"
    "from multiprocessing.connection import Connection\n"
    "from multiprocessing.reduction import send_handle\n"
    "c = Connection(int(sys.argv[1]))\n"
    "s1, s2 = socket.socketpair()\n"
    "send_handle(c, s1.fileno(), 0)\n"
    "s1.close()\n"
    "peer = Connection(s2.detach())\n"
    "peer.send_bytes(b'from python')\n"
    "if not peer.poll(20):\n"
    "    sys.exit(3)\n"
    "sys.exit(0 if peer.recv_bytes() == b'ok from C' else 4)\n";

/* A Python server hands one end of a socket to a C worker with send_handle;
 * mp_recv_conn makes it a duplex connection that talks to Python. */
static void python_hands_socket_case(const char *py)
{
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    int pyfd = mp_conn_fileno(b);
    char arg[16];
    snprintf(arg, sizeof arg, "%d", pyfd);
    const char *args[] = {arg, NULL};
    pid_t pid = tu_spawn_python_as(py, PY_HAND_OVER_SOCKET, args, &pyfd, 1);
    mp_conn *w = NULL;
    int rc = mp_recv_conn(a, &w, T_LONG);
    int got = rc == 0 ? expect_bytes(w, "from python") : rc;
    int sent = got == 0 ? send_str(w, "ok from C") : got;
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    TU_ASSERT_STATUS(rc, 0);
    assert_true(mp_conn_readable(w) && mp_conn_writable(w));
    TU_ASSERT_STATUS(got, 0);
    TU_ASSERT_STATUS(sent, 0);
    mp_conn_free(w);
    mp_conn_free(a);
    mp_conn_free(b);
}

static void test_python_hands_a_socket_to_c_recv_conn(void **state)
{
    (void)state;
    const char *py;
    for (size_t pyi = 0; (py = tu_python_at(pyi)) != NULL; pyi++)
        python_hands_socket_case(py);
}

static const char PY_TAKE_CONN[] = "import sys\n"
                                   "from multiprocessing.connection import Connection\n"
                                   "from multiprocessing.reduction import recv_handle\n"
                                   "c = Connection(int(sys.argv[1]))\n"
                                   "peer = Connection(recv_handle(c))\n"
                                   "if not peer.poll(20):\n"
                                   "    sys.exit(3)\n"
                                   "peer.send_bytes(b'python got ' + peer.recv_bytes())\n"
                                   "sys.exit(0 if c.recv_bytes() == b'done' else 4)\n";

/* The other way: a C server hands a connection end to a Python worker with
 * mp_send_conn and frees its copy; Python's recv_handle and Connection()
 * make it a connection that talks to the C process holding the other end. */
static void c_hands_conn_case(const char *py)
{
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    mp_conn *mine, *theirs;
    assert_int_equal(mp_pipe(&mine, &theirs, true), 0);
    int pyfd = mp_conn_fileno(b);
    char arg[16];
    snprintf(arg, sizeof arg, "%d", pyfd);
    const char *args[] = {arg, NULL};
    pid_t pid = tu_spawn_python_as(py, PY_TAKE_CONN, args, &pyfd, 1);
    int rc = mp_send_conn(a, theirs);
    mp_conn_free(theirs);
    int sent = rc == 0 ? send_str(mine, "the end") : rc;
    int got = sent == 0 ? expect_bytes(mine, "python got the end") : sent;
    int done = send_str(a, "done");
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    TU_ASSERT_STATUS(rc, 0);
    TU_ASSERT_STATUS(sent, 0);
    TU_ASSERT_STATUS(got, 0);
    TU_ASSERT_STATUS(done, 0);
    mp_conn_free(mine);
    mp_conn_free(a);
    mp_conn_free(b);
}

static void test_c_hands_a_conn_to_python_recv_handle(void **state)
{
    (void)state;
    const char *py;
    for (size_t pyi = 0; (py = tu_python_at(pyi)) != NULL; pyi++)
        c_hands_conn_case(py);
}

/* ---- refusals ------------------------------------------------------------------------ */

/* A pipe cannot carry descriptors: -ENOTSOCK (Python: OSError ENOTSOCK from
 * socket.fromfd), with a message, and nothing is sent or taken. */
static void test_handle_calls_on_a_pipe_are_enotsock(void **state)
{
    (void)state;
    mp_conn *r, *w;
    assert_int_equal(mp_pipe(&r, &w, false), 0);
    int fd = make_file("x");
    TU_ASSERT_STATUS(mp_send_handle(w, fd, 0), -ENOTSOCK);
    ASSERT_MSG_HAS(-ENOTSOCK, "this one is a pipe");
    int got = 7;
    TU_ASSERT_STATUS(mp_recv_handle(r, &got, MP_NOWAIT), -ENOTSOCK);
    assert_int_equal(got, -1);
    TU_ASSERT_STATUS(mp_send_handle(r, fd, 0), MP_EREADONLY);
    TU_ASSERT_STATUS(mp_recv_handle(w, &got, MP_NOWAIT), MP_EWRITEONLY);
    mp_conn *out = NULL;
    TU_ASSERT_STATUS(mp_recv_conn(r, &out, MP_NOWAIT), -ENOTSOCK);
    assert_null(out);
    assert_int_equal(mp_conn_poll(r, MP_NOWAIT), 0);
    close(fd);
    mp_conn_free(r);
    mp_conn_free(w);
}

/* Timeouts, end of file, NaN, bad arguments, a closed end, a descriptor
 * that is not open (nothing sent). */
static void test_recv_handle_timeout_eof_and_bad_arguments(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    int got;
    TU_ASSERT_STATUS(mp_recv_handle(a, &got, MP_NOWAIT), MP_ETIMEDOUT);
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_recv_handle(a, &got, 0.1), MP_ETIMEDOUT);
    assert_true(tu_now() - t0 >= 0.09);
    TU_ASSERT_STATUS(mp_recv_handle(a, &got, NAN), MP_EVALUE);
    mp_conn *out = a;
    TU_ASSERT_STATUS(mp_recv_conn(a, &out, NAN), MP_EVALUE);
    assert_null(out);
    TU_ASSERT_STATUS(mp_recv_conn(a, NULL, 0), -EINVAL);
    TU_ASSERT_STATUS(mp_recv_handle(a, NULL, 0), -EINVAL);
    TU_ASSERT_STATUS(mp_recv_handle(NULL, &got, 0), -EINVAL);
    TU_ASSERT_STATUS(mp_send_handle(b, -1, 0), -EINVAL);
    TU_ASSERT_STATUS(mp_send_handle(NULL, 0, 0), -EINVAL);
    int closed = open("/dev/null", O_RDONLY | O_CLOEXEC);
    close(closed);
    TU_ASSERT_STATUS(mp_send_handle(b, closed, 0), -EBADF);
    assert_int_equal(mp_conn_poll(a, MP_NOWAIT), 0); /* nothing was sent */
    mp_conn_free(b);
    TU_ASSERT_STATUS(mp_recv_handle(a, &got, T_LONG), MP_EOF);
    assert_int_equal(got, -1);
    assert_int_equal(mp_conn_close(a), 0);
    TU_ASSERT_STATUS(mp_recv_handle(a, &got, 0), MP_ECLOSED);
    TU_ASSERT_STATUS(mp_send_handle(a, 0, 0), MP_ECLOSED);
    mp_conn_free(a);
}

/* A framed message where a handle was expected: MP_EPROTO, and the message
 * is still there, whole, for mp_conn_recv. */
static void test_recv_handle_leaves_a_framed_message_whole(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    assert_int_equal(send_str(b, "a message"), 0);
    int got;
    TU_ASSERT_STATUS(mp_recv_handle(a, &got, T_LONG), MP_EPROTO);
    ASSERT_MSG_HAS(MP_EPROTO, "carries no descriptor");
    assert_int_equal(got, -1);
    assert_int_equal(expect_bytes(a, "a message"), 0);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* ---- connections over connections ----------------------------------------------------- */

struct hand_ctx {
    mp_conn *chan_server, *chan_worker;
    mp_listener *listener;
    const char *address;
    pid_t worker;
    int nclients;
};

/* The worker: receives each client's connection from the server, greets it
 * with its pid and answers its request. */
static int worker_main(void *arg)
{
    struct hand_ctx *x = arg;
    mp_conn_free(x->chan_server);
    mp_listener_free(x->listener);
    for (int i = 0; i < x->nclients; i++) {
        mp_conn *client = NULL;
        if (mp_recv_conn(x->chan_worker, &client, T_LONG) != 0)
            return 10 + i;
        char text[96];
        snprintf(text, sizeof text, "worker %d", (int)getpid());
        void *req = NULL;
        size_t len = 0;
        int bad =
            send_str(client, text) != 0 || mp_conn_recv_bytes(client, 64, &req, &len, T_LONG) != 0;
        if (!bad) {
            snprintf(text, sizeof text, "done: %.*s", (int)len, (const char *)req);
            bad = send_str(client, text) != 0;
        }
        free(req);
        mp_conn_free(client);
        if (bad)
            return 30 + i;
    }
    return 0;
}

/* A client: connects to the server's listener and is served by the worker. */
static int client_main(void *arg)
{
    struct hand_ctx *x = arg;
    mp_conn_free(x->chan_server);
    mp_conn_free(x->chan_worker);
    mp_conn *c;
    if (mp_client_connect(&c, x->address, NULL, 0, T_LONG) != 0)
        return 1;
    char want[96], req[64];
    snprintf(want, sizeof want, "worker %d", (int)x->worker);
    snprintf(req, sizeof req, "request of %d", (int)getpid());
    int rc = expect_bytes(c, want) != 0 ? 2 : send_str(c, req) != 0 ? 3 : 0;
    if (rc == 0) {
        snprintf(want, sizeof want, "done: %s", req);
        rc = expect_bytes(c, want) != 0 ? 4 : 0;
    }
    mp_conn_free(c);
    return rc;
}

/* The pattern: a server accepts clients on a listener and hands
 * each accepted connection to a worker process, which talks to the client;
 * the server closes its copy at once, as a Python server does. */
static void test_server_hands_accepted_clients_to_a_worker(void **state)
{
    (void)state;
    struct hand_ctx x = {.nclients = 3};
    assert_int_equal(mp_pipe(&x.chan_server, &x.chan_worker, true), 0);
    assert_int_equal(mp_listener_new(&x.listener, NULL, NULL, 0, NULL), 0);
    x.address = mp_listener_address(x.listener);
    x.worker = tu_fork(worker_main, &x);
    mp_conn_free(x.chan_worker);
    x.chan_worker = NULL;
    pid_t clients[3];
    for (int i = 0; i < x.nclients; i++)
        clients[i] = tu_fork(client_main, &x);
    int handed = 0;
    for (int i = 0; i < x.nclients; i++) {
        mp_conn *c = NULL;
        if (mp_listener_accept(x.listener, &c, T_LONG) != 0)
            break;
        assert_int_equal(mp_conn_buffered(c), 0);
        handed += mp_send_conn(x.chan_server, c) == 0;
        mp_conn_free(c);
    }
    int st[3];
    for (int i = 0; i < x.nclients; i++)
        st[i] = tu_wait_child(clients[i], T_LONG);
    int wst = tu_wait_child(x.worker, T_LONG);
    mp_conn_free(x.chan_server);
    mp_listener_free(x.listener);
    assert_int_equal(handed, x.nclients);
    for (int i = 0; i < x.nclients; i++)
        assert_int_equal(st[i], 0);
    assert_int_equal(wst, 0);
}

/* Pipe ends arrive with their direction (read-only, write-only), duplex
 * socket ends duplex, and data flows through them. */
static void test_sent_ends_keep_their_directions(void **state)
{
    (void)state;
    mp_conn *a, *b, *r, *w, *s1, *s2;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    assert_int_equal(mp_pipe(&r, &w, false), 0);
    assert_int_equal(mp_pipe(&s1, &s2, true), 0);
    assert_int_equal(mp_send_conn(a, r), 0);
    assert_int_equal(mp_send_conn(a, w), 0);
    assert_int_equal(mp_send_conn(a, s1), 0);
    mp_conn *r2, *w2, *s12;
    assert_int_equal(mp_recv_conn(b, &r2, T_LONG), 0);
    assert_int_equal(mp_recv_conn(b, &w2, T_LONG), 0);
    assert_int_equal(mp_recv_conn(b, &s12, T_LONG), 0);
    mp_conn_free(r);
    mp_conn_free(w);
    mp_conn_free(s1);
    assert_true(mp_conn_readable(r2) && !mp_conn_writable(r2));
    assert_true(!mp_conn_readable(w2) && mp_conn_writable(w2));
    assert_true(mp_conn_readable(s12) && mp_conn_writable(s12));
    assert_int_equal(send_str(w2, "through the pipe"), 0);
    assert_int_equal(expect_bytes(r2, "through the pipe"), 0);
    assert_int_equal(send_str(s12, "through the socket"), 0);
    assert_int_equal(expect_bytes(s2, "through the socket"), 0);
    mp_conn_free(r2);
    mp_conn_free(w2);
    mp_conn_free(s12);
    mp_conn_free(s2);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* An end with read-ahead bytes cannot be handed over without losing them:
 * MP_ESTATE, nothing sent, and the bytes are still delivered here. */
static void test_send_conn_refuses_an_end_with_buffered_bytes(void **state)
{
    (void)state;
    mp_conn *a, *b, *s1, *s2;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    assert_int_equal(mp_pipe(&s1, &s2, true), 0);
    assert_int_equal(send_str(s2, "first"), 0);
    assert_int_equal(send_str(s2, "second"), 0);
    assert_int_equal(expect_bytes(s1, "first"), 0);
    assert_true(mp_conn_buffered(s1) > 0);
    TU_ASSERT_STATUS(mp_send_conn(a, s1), MP_ESTATE);
    ASSERT_MSG_HAS(MP_ESTATE, "read ahead");
    assert_int_equal(mp_conn_poll(b, MP_NOWAIT), 0);
    assert_int_equal(expect_bytes(s1, "second"), 0);
    assert_int_equal(mp_conn_buffered(s1), 0);
    assert_int_equal(mp_send_conn(a, s1), 0); /* drained: now it may go */
    mp_conn *got;
    assert_int_equal(mp_recv_conn(b, &got, T_LONG), 0);
    mp_conn_free(got);
    mp_conn_free(s1);
    mp_conn_free(s2);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* A socket end narrowed to one direction would arrive duplex: refused, as
 * are a closed end and sending an end over itself. */
static void test_send_conn_refuses_narrowed_closed_and_self(void **state)
{
    (void)state;
    mp_conn *a, *b, *s1, *s2, *ro;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    assert_int_equal(mp_pipe(&s1, &s2, true), 0);
    assert_int_equal(
        mp_conn_from_fd(&ro, fcntl(mp_conn_fileno(s1), F_DUPFD_CLOEXEC, 0), true, false), 0);
    TU_ASSERT_STATUS(mp_send_conn(a, ro), MP_ESTATE);
    ASSERT_MSG_HAS(MP_ESTATE, "descriptor allows");
    TU_ASSERT_STATUS(mp_send_conn(a, a), -EINVAL);
    TU_ASSERT_STATUS(mp_send_conn(a, NULL), -EINVAL);
    assert_int_equal(mp_conn_close(s2), 0);
    TU_ASSERT_STATUS(mp_send_conn(a, s2), MP_ECLOSED);
    assert_int_equal(mp_conn_poll(b, MP_NOWAIT), 0);
    mp_conn_free(ro);
    mp_conn_free(s1);
    mp_conn_free(s2);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* ---- hostile peers: no descriptor leaks ------------------------------------------------ */

/* Send a bad handle message from a raw peer; recv_handle refuses it with
 * MP_EPROTO and the process holds exactly the descriptors it held before;
 * a good handle then still arrives. */
static void check_refused_without_leak(unsigned char count, int n, const char *why)
{
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    int before = tu_count_fds();
    raw_send(mp_conn_fileno(b), count, n);
    assert_int_equal(tu_count_fds(), before); /* in flight, held by the socket */
    int got;
    TU_ASSERT_STATUS(mp_recv_handle(a, &got, T_LONG), MP_EPROTO);
    ASSERT_MSG_HAS(MP_EPROTO, why);
    assert_int_equal(got, -1);
    assert_int_equal(tu_count_fds(), before);

    int fd = make_file("good");
    assert_int_equal(mp_send_handle(b, fd, 0), 0);
    assert_int_equal(mp_recv_handle(a, &got, T_LONG), 0);
    assert_int_equal(file_has(got, "good"), 0);
    close(got);
    close(fd);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* Three descriptors where one was announced: all three closed. */
static void test_more_descriptors_than_announced_leak_none(void **state)
{
    (void)state;
    check_refused_without_leak(1, 3, "announced 1 descriptor(s) and carried 3");
}

/* Descriptors with no announcement (count byte 0), and a count that
 * matches but is not one (Python's sendfds of two): closed. */
static void test_unannounced_descriptors_leak_none(void **state)
{
    (void)state;
    check_refused_without_leak(0, 1, "announced 0 descriptor(s) and carried 1");
    check_refused_without_leak(2, 2, "announced 2 descriptor(s) and carried 2");
}

/* More descriptors than the control buffer holds: the kernel cuts the
 * control data (MSG_CTRUNC) and closes the rest; the ones that arrived are
 * closed too. */
static void test_truncated_control_data_leaks_none(void **state)
{
    (void)state;
    check_refused_without_leak(20, 20, "more descriptors came than a handle message holds");
}

/* A count byte announcing a descriptor that never came is no handle: the
 * byte is left unread (MP_EPROTO), and no descriptor appears. */
static void test_announced_but_missing_descriptor_is_eproto(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    int before = tu_count_fds();
    raw_send(mp_conn_fileno(b), 1, 0);
    int got;
    TU_ASSERT_STATUS(mp_recv_handle(a, &got, T_LONG), MP_EPROTO);
    ASSERT_MSG_HAS(MP_EPROTO, "carries no descriptor (first byte 0x01)");
    assert_int_equal(tu_count_fds(), before);
    mp_conn_free(a);
    mp_conn_free(b);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_handle_sent_to_a_child_opens_the_same_file),
        TU_TEST(test_received_handle_is_a_cloexec_duplicate),
        TU_TEST(test_python_send_handle_reaches_c_recv_handle),
        TU_TEST(test_c_send_handle_reaches_python_recv_handle),
        TU_TEST(test_python_hands_a_socket_to_c_recv_conn),
        TU_TEST(test_c_hands_a_conn_to_python_recv_handle),
        TU_TEST(test_handle_calls_on_a_pipe_are_enotsock),
        TU_TEST(test_recv_handle_timeout_eof_and_bad_arguments),
        TU_TEST(test_recv_handle_leaves_a_framed_message_whole),
        TU_TEST(test_server_hands_accepted_clients_to_a_worker),
        TU_TEST(test_sent_ends_keep_their_directions),
        TU_TEST(test_send_conn_refuses_an_end_with_buffered_bytes),
        TU_TEST(test_send_conn_refuses_narrowed_closed_and_self),
        TU_TEST(test_more_descriptors_than_announced_leak_none),
        TU_TEST(test_unannounced_descriptors_leak_none),
        TU_TEST(test_truncated_control_data_leaks_none),
        TU_TEST(test_announced_but_missing_descriptor_is_eproto),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
