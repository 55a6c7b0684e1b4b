/*
 * reduction: passing descriptors and connection ends over a connection
 * (Python's multiprocessing.reduction send_handle/recv_handle, and a
 * Connection sent over a Connection), between C processes, with the
 * machine's python3 on the other side both ways, and against raw sendmsg
 * peers that send descriptors they did not announce: none may leak.
 */
#include "testutil.h"

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

#define T_LONG 20.0

/* ---- helpers ---------------------------------------------------------------------- */

/* An unnamed file holding text, for a handle whose contents prove which
 * file arrived. */
static int make_file(const char *text)
{
    int fd = mp__anon_file("mpipc-reduction-test");
    assert_true(fd >= 0);
    assert_int_equal(mp__pwrite_all(fd, text, strlen(text), 0), 0);
    return fd;
}

/* 0 if fd's file starts with text. */
static int file_has(int fd, const char *text)
{
    char buf[128];
    ssize_t r = pread(fd, buf, sizeof buf, 0);
    size_t n = strlen(text);
    return r == (ssize_t)n && memcmp(buf, text, n) == 0 ? 0 : 1;
}

/* 0 if the next message on c is want. */
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

static int send_str(mp_conn *c, const char *s)
{
    return mp_conn_send_bytes(c, s, strlen(s));
}

/* Assert that the message recorded for code contains want. */
#define ASSERT_MSG_HAS(code, want)                                                                 \
    do {                                                                                           \
        const char *m_ = mp_errmsg(code);                                                          \
        if (!strstr(m_, (want)))                                                                   \
            fail_msg("mp_errmsg(%s) = \"%s\", wanted \"%s\" in it", mp_errname(code), m_, (want)); \
    } while (0)

/*
 * A hostile peer: one sendmsg() of the byte `count` with n fresh
 * descriptors (of /dev/null) in SCM_RIGHTS, which it then closes, so that
 * afterwards only the receiver can hold them.
 */
static void raw_send(int sock, unsigned char count, int n)
{
    int fds[32];
    assert_true(n <= 32);
    for (int i = 0; i < n; i++) {
        fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
        assert_true(fds[i] >= 0);
    }
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * 32)];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec iov = {&count, 1};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (n > 0) {
        msg.msg_control = ctl.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)n);
    }
    assert_int_equal(sendmsg(sock, &msg, MSG_NOSIGNAL), 1);
    for (int i = 0; i < n; i++)
        close(fds[i]);
}

/* A hostile peer: one sendmsg() of len bytes with n fresh descriptors. */
static void raw_sendmsg(int sock, const void *buf, size_t len, int n)
{
    int fds[32];
    assert_true(n <= 32);
    for (int i = 0; i < n; i++) {
        fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
        assert_true(fds[i] >= 0);
    }
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * 32)];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec iov = {(void *)buf, len};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (n > 0) {
        msg.msg_control = ctl.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)n);
    }
    assert_int_equal(sendmsg(sock, &msg, MSG_NOSIGNAL), (ssize_t)len);
    for (int i = 0; i < n; i++)
        close(fds[i]);
}

/* A framed message (Python's 4-byte big-endian length) with n descriptors. */
static void raw_send_framed(int sock, const char *payload, int n)
{
    unsigned char frame[64];
    size_t len = strlen(payload);
    assert_true(len + 4 <= sizeof frame);
    frame[0] = frame[1] = frame[2] = 0;
    frame[3] = (unsigned char)len;
    memcpy(frame + 4, payload, len);
    raw_sendmsg(sock, frame, len + 4, n);
}

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
static void test_python_send_handle_reaches_c_recv_handle(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    int pyfd = mp_conn_fileno(b);
    char arg[16];
    snprintf(arg, sizeof arg, "%d", pyfd);
    const char *args[] = {arg, NULL};
    pid_t pid = tu_spawn_python(PY_SEND_HANDLE, args, &pyfd, 1);
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

static const char PY_RECV_HANDLE[] = "import os, sys\n"
                                     "from multiprocessing.connection import Connection\n"
                                     "from multiprocessing.reduction import recv_handle\n"
                                     "c = Connection(int(sys.argv[1]))\n"
                                     "fd = recv_handle(c)\n"
                                     "c.send_bytes(os.pread(fd, 100, 0))\n"
                                     "os.close(fd)\n";

/* C sends a file it wrote with mp_send_handle; Python's recv_handle gets
 * it and sends back what it reads there. */
static void test_c_send_handle_reaches_python_recv_handle(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    int pyfd = mp_conn_fileno(b);
    char arg[16];
    snprintf(arg, sizeof arg, "%d", pyfd);
    const char *args[] = {arg, NULL};
    pid_t pid = tu_spawn_python(PY_RECV_HANDLE, args, &pyfd, 1);
    int fd = make_file("written by C");
    assert_int_equal(mp_send_handle(a, fd, pid), 0);
    close(fd);
    int rc = expect_bytes(a, "written by C");
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    TU_ASSERT_STATUS(rc, 0);
    mp_conn_free(a);
    mp_conn_free(b);
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
static void test_python_hands_a_socket_to_c_recv_conn(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    int pyfd = mp_conn_fileno(b);
    char arg[16];
    snprintf(arg, sizeof arg, "%d", pyfd);
    const char *args[] = {arg, NULL};
    pid_t pid = tu_spawn_python(PY_HAND_OVER_SOCKET, args, &pyfd, 1);
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

/* Handles between messages, read-ahead off and on: each arrives. With it
 * on, a receive that read past a handle kept its descriptor; the handle is
 * then ready to poll, a message receive refuses it (MP_EPROTO, nothing
 * consumed), and recv_handle refuses a message (MP_EPROTO, nothing lost). */
static void test_handles_between_messages_arrive_with_readahead_on_and_off(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    int fd = make_file("between");
    assert_int_equal(mp_conn_set_readahead(a, false), 0);
    assert_int_equal(send_str(b, "before"), 0);
    assert_int_equal(mp_send_handle(b, fd, 0), 0);
    assert_int_equal(send_str(b, "after"), 0);
    assert_int_equal(expect_bytes(a, "before"), 0);
    int got = -1;
    assert_int_equal(mp_recv_handle(a, &got, T_LONG), 0);
    assert_int_equal(file_has(got, "between"), 0);
    close(got);
    assert_int_equal(expect_bytes(a, "after"), 0);

    assert_int_equal(mp_conn_set_readahead(a, true), 0);
    assert_int_equal(send_str(b, "one"), 0);
    assert_int_equal(send_str(b, "two"), 0);
    assert_int_equal(mp_send_handle(b, fd, 0), 0);
    assert_int_equal(send_str(b, "three"), 0);
    assert_int_equal(expect_bytes(a, "one"), 0); /* read "two" and the handle ahead */
    assert_true(mp_conn_buffered(a) > 0);
    TU_ASSERT_STATUS(mp_recv_handle(a, &got, T_LONG), MP_EPROTO);
    ASSERT_MSG_HAS(MP_EPROTO, "carries no descriptor");
    assert_int_equal(got, -1);
    assert_int_equal(expect_bytes(a, "two"), 0); /* nothing lost by the refusal */
    assert_int_equal(mp_conn_buffered(a), 1);    /* the handle's byte */
    assert_int_equal(mp_conn_poll(a, MP_NOWAIT), 1);
    void *buf = NULL;
    size_t len = 0;
    TU_ASSERT_STATUS(mp_conn_recv_bytes(a, 0, &buf, &len, T_LONG), MP_EPROTO);
    ASSERT_MSG_HAS(MP_EPROTO, "receive it with mp_recv_handle");
    assert_null(buf);
    assert_int_equal(mp_conn_buffered(a), 1);
    assert_int_equal(mp_recv_handle(a, &got, T_LONG), 0);
    assert_int_equal(file_has(got, "between"), 0);
    assert_true(fcntl(got, F_GETFD) & FD_CLOEXEC);
    close(got);
    assert_int_equal(expect_bytes(a, "three"), 0);
    close(fd);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* A stream of handles and messages in a random order: 'm' a small message,
 * 'M' one larger than the read-ahead buffer, 'h' a handle whose file holds
 * "h<i>". */
#define SEQ_LEN 80
#define BIG_MSG 100000

static void make_sequence(char *seq, unsigned seed)
{
    for (int i = 0; i < SEQ_LEN; i++) {
        seed = seed * 1103515245u + 12345u;
        unsigned r = (seed >> 16) % 16;
        seq[i] = r < 7 ? 'h' : r < 15 ? 'm' : 'M';
    }
    seq[SEQ_LEN] = '\0';
}

static void fill_big(unsigned char *buf, int i)
{
    for (size_t k = 0; k < BIG_MSG; k++)
        buf[k] = (unsigned char)(k * 7 + (size_t)i);
}

/* Send seq over c as C: mp_conn_send_bytes and mp_send_handle. */
static int send_sequence(mp_conn *c, const char *seq)
{
    static unsigned char big[BIG_MSG];
    char text[32];
    for (int i = 0; seq[i]; i++) {
        int rc;
        if (seq[i] == 'h') {
            snprintf(text, sizeof text, "h%d", i);
            int fd = make_file(text);
            rc = mp_send_handle(c, fd, 0);
            close(fd);
        } else if (seq[i] == 'M') {
            fill_big(big, i);
            rc = mp_conn_send_bytes(c, big, BIG_MSG);
        } else {
            snprintf(text, sizeof text, "m%d", i);
            rc = send_str(c, text);
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* Receive seq on c (read-ahead on): every message and every handle, in
 * order. 0, or the status of the first failure (1000 + i for wrong data). */
static int recv_sequence(mp_conn *c, const char *seq)
{
    static unsigned char want_big[BIG_MSG];
    char text[32];
    for (int i = 0; seq[i]; i++) {
        int rc;
        if (seq[i] == 'h') {
            int fd = -1;
            rc = mp_recv_handle(c, &fd, T_LONG);
            if (rc == 0) {
                snprintf(text, sizeof text, "h%d", i);
                rc = file_has(fd, text) ? 1000 + i : 0;
                close(fd);
            }
        } else if (seq[i] == 'M') {
            void *buf = NULL;
            size_t len = 0;
            rc = mp_conn_recv_bytes(c, 0, &buf, &len, T_LONG);
            fill_big(want_big, i);
            if (rc == 0 && (len != BIG_MSG || memcmp(buf, want_big, BIG_MSG) != 0))
                rc = 1000 + i;
            free(buf);
        } else {
            snprintf(text, sizeof text, "m%d", i);
            rc = expect_bytes(c, text);
            if (rc == -12345)
                rc = 1000 + i;
        }
        if (rc) {
            fprintf(stderr, "item %d ('%c') of %s: %d\n", i, seq[i], seq, rc);
            return rc;
        }
    }
    return 0;
}

static unsigned test_seed(void)
{
    unsigned seed = (unsigned)getpid() ^ (unsigned)(tu_now() * 1e6);
    fprintf(stderr, "# seed %u\n", seed);
    return seed;
}

struct seq_ctx {
    mp_conn *end, *other;
    const char *seq;
};

static int child_send_sequence(void *arg)
{
    struct seq_ctx *x = arg;
    mp_conn_free(x->other);
    int rc = send_sequence(x->end, x->seq);
    if (rc == 0)
        rc = expect_bytes(x->end, "done");
    return rc ? 1 : 0;
}

/* A forked C peer sends handles at random places between messages, all at
 * once; the receiver, with read-ahead on, gets every one of each. */
static void test_handles_at_random_places_from_a_c_peer(void **state)
{
    (void)state;
    unsigned seed = test_seed();
    for (int round = 0; round < 3; round++) {
        char seq[SEQ_LEN + 1];
        make_sequence(seq, seed + (unsigned)round);
        mp_conn *a, *b;
        assert_int_equal(mp_pipe(&a, &b, true), 0);
        struct seq_ctx x = {b, a, seq};
        pid_t pid = tu_fork(child_send_sequence, &x);
        if (round > 0)
            tu_sleep(0.2); /* let the stream pile up: long read-aheads */
        int rc = recv_sequence(a, seq);
        if (rc == 0)
            rc = send_str(a, "done");
        assert_int_equal(tu_wait_child(pid, T_LONG), 0);
        TU_ASSERT_STATUS(rc, 0);
        assert_int_equal(mp_conn_buffered(a), 0);
        mp_conn_free(a);
        mp_conn_free(b);
    }
}

static const char PY_SEND_SEQUENCE[] = "import sys, tempfile\n"
                                       "from multiprocessing.connection import Connection\n"
                                       "from multiprocessing.reduction import send_handle\n"
                                       "c = Connection(int(sys.argv[1]))\n"
                                       "for i, k in enumerate(sys.argv[2]):\n"
                                       "    if k == 'h':\n"
                                       "        with tempfile.TemporaryFile() as f:\n"
                                       "            f.write(b'h%d' % i)\n"
                                       "            f.flush()\n"
                                       "            send_handle(c, f.fileno(), 0)\n"
                                       "    elif k == 'M':\n"
                                       "        c.send_bytes(bytes((k * 7 + i) & 255\n"
                                       "                           for k in range(100000)))\n"
                                       "    else:\n"
                                       "        c.send_bytes(b'm%d' % i)\n"
                                       "sys.exit(0 if c.recv_bytes() == b'done' else 3)\n";

/* python3 sends handles with reduction.send_handle between conn.send_bytes
 * calls at random places; C, with read-ahead on, gets every one of each. */
static void test_handles_at_random_places_from_python(void **state)
{
    (void)state;
    char seq[SEQ_LEN + 1];
    make_sequence(seq, test_seed());
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    int pyfd = mp_conn_fileno(b);
    char arg[16];
    snprintf(arg, sizeof arg, "%d", pyfd);
    const char *args[] = {arg, seq, NULL};
    pid_t pid = tu_spawn_python(PY_SEND_SEQUENCE, args, &pyfd, 1);
    assert_int_equal(mp_conn_poll(a, T_LONG), 1);
    tu_sleep(0.3); /* let the stream pile up: long read-aheads */
    int rc = recv_sequence(a, seq);
    if (rc == 0)
        rc = send_str(a, "done");
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    TU_ASSERT_STATUS(rc, 0);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* A message part-way received (its receive timed out) is not at a handle:
 * recv_handle refuses with MP_ESTATE and the message then completes. */
static void test_recv_handle_during_a_partial_message_is_estate(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    static unsigned char big[BIG_MSG + 4];
    big[0] = 0;
    big[1] = (unsigned char)(BIG_MSG >> 16);
    big[2] = (unsigned char)(BIG_MSG >> 8);
    big[3] = (unsigned char)BIG_MSG;
    fill_big(big + 4, 5);
    raw_sendmsg(mp_conn_fileno(b), big, 1000, 0);
    void *buf = NULL;
    size_t len = 0;
    TU_ASSERT_STATUS(mp_conn_recv_bytes(a, 0, &buf, &len, 0.1), MP_ETIMEDOUT);
    int got = 7;
    TU_ASSERT_STATUS(mp_recv_handle(a, &got, T_LONG), MP_ESTATE);
    ASSERT_MSG_HAS(MP_ESTATE, "part-way");
    assert_int_equal(got, -1);
    raw_sendmsg(mp_conn_fileno(b), big + 1000, sizeof big - 1000, 0);
    assert_int_equal(mp_conn_recv_bytes(a, 0, &buf, &len, T_LONG), 0);
    assert_int_equal(len, BIG_MSG);
    assert_memory_equal(buf, big + 4, BIG_MSG);
    free(buf);
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

/* Descriptors a peer attaches to ordinary messages are closed as they
 * arrive in a read-ahead receive (one, three, more than the control buffer
 * holds, and one on a message whose last byte looks like a handle's count,
 * closed when the message is received); every message arrives whole, and a
 * real handle after them still does. */
static void test_descriptors_on_ordinary_messages_leak_none(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    int sock = mp_conn_fileno(b);
    int before = tu_count_fds();
    raw_send_framed(sock, "one fd", 1);
    raw_send_framed(sock, "three fds", 3);
    raw_send_framed(sock, "twenty fds", 20);
    raw_send_framed(sock, "ends in \x01", 1);
    int fd = make_file("real");
    assert_int_equal(mp_send_handle(b, fd, 0), 0);
    close(fd);
    raw_send_framed(sock, "last", 2);
    assert_int_equal(tu_count_fds(), before);
    assert_int_equal(expect_bytes(a, "one fd"), 0);
    assert_int_equal(tu_count_fds(), before);
    assert_int_equal(expect_bytes(a, "three fds"), 0);
    assert_int_equal(tu_count_fds(), before);
    assert_int_equal(expect_bytes(a, "twenty fds"), 0);
    assert_int_equal(tu_count_fds(), before);
    assert_int_equal(expect_bytes(a, "ends in \x01"), 0);
    assert_int_equal(tu_count_fds(), before);
    int got = -1;
    assert_int_equal(mp_recv_handle(a, &got, T_LONG), 0);
    assert_int_equal(file_has(got, "real"), 0);
    close(got);
    assert_int_equal(expect_bytes(a, "last"), 0);
    assert_int_equal(tu_count_fds(), before);
    assert_int_equal(mp_conn_buffered(a), 0);

    /* Read ahead all at once (the peer is quick), then close the end with a
     * kept handle never received: mp_conn_free closes it. */
    assert_int_equal(send_str(b, "first"), 0);
    fd = make_file("never received");
    assert_int_equal(mp_send_handle(b, fd, 0), 0);
    close(fd);
    assert_int_equal(expect_bytes(a, "first"), 0);
    assert_int_equal(mp_conn_buffered(a), 1);
    assert_int_equal(tu_count_fds(), before + 1); /* kept for mp_recv_handle */
    mp_conn_free(a);
    mp_conn_free(b);
}

/* Python's peer breaking the protocol: a handle received as a message
 * (MP_EPROTO, kept), and a message's bytes consumed past a kept handle by
 * a lying header: the handle's descriptor is closed, never leaked. */
static void test_kept_handle_passed_over_is_closed(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    int before = tu_count_fds();
    /* A header announcing 6 bytes, then only 2 of them, then a handle: the
     * receive of that message takes the handle's byte as payload. */
    static const unsigned char part[] = {0, 0, 0, 6, 'a', 'b'};
    raw_sendmsg(mp_conn_fileno(b), part, sizeof part, 0);
    int fd = make_file("swallowed");
    assert_int_equal(mp_send_handle(b, fd, 0), 0);
    close(fd);
    raw_sendmsg(mp_conn_fileno(b), "cde", 3, 0);
    void *buf = NULL;
    size_t len = 0;
    assert_int_equal(mp_conn_recv_bytes(a, 0, &buf, &len, T_LONG), 0);
    assert_int_equal(len, 6);
    assert_memory_equal(buf,
                        "ab\x01"
                        "cde",
                        6);
    free(buf);
    assert_int_equal(tu_count_fds(), before);
    mp_conn_free(a);
    mp_conn_free(b);
}

struct stash_ctx {
    mp_conn *a;
    int fds_before_fixup;
};

/* The child of a parent that kept a handle: none is the child's; its first
 * receive of a handle reads the descriptor. */
static int child_with_parents_stash(void *arg)
{
    struct stash_ctx *x = arg;
    int n0 = tu_count_fds();
    if (mp_conn_buffered(x->a) != 0) /* the first call makes the handle the child's */
        return 1;
    if (tu_count_fds() != n0 - 1) /* its copy of the kept descriptor is closed */
        return 2;
    if (mp_conn_poll(x->a, T_LONG) != 1)
        return 3;
    int fd = -1;
    if (mp_recv_handle(x->a, &fd, T_LONG) != 0)
        return 4;
    int bad = file_has(fd, "for the child");
    close(fd);
    return bad ? 5 : 0;
}

/* A child forked while its parent keeps a handle it read ahead: the kept
 * handle stays the parent's (the child closes its copy and drops the byte,
 * as for whole messages read ahead); the child's first recv_handle gets the
 * next handle from the descriptor; the parent then still gets its own. */
static void test_child_forked_with_a_kept_handle(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    assert_int_equal(send_str(b, "first"), 0);
    int fd = make_file("for the parent");
    assert_int_equal(mp_send_handle(b, fd, 0), 0);
    close(fd);
    assert_int_equal(expect_bytes(a, "first"), 0);
    assert_int_equal(mp_conn_buffered(a), 1);
    struct stash_ctx x = {a, 0};
    pid_t pid = tu_fork(child_with_parents_stash, &x);
    tu_sleep(0.1);
    fd = make_file("for the child");
    assert_int_equal(mp_send_handle(b, fd, 0), 0);
    close(fd);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    int got = -1;
    assert_int_equal(mp_recv_handle(a, &got, T_LONG), 0);
    assert_int_equal(file_has(got, "for the parent"), 0);
    close(got);
    assert_int_equal(mp_conn_buffered(a), 0);
    assert_int_equal(mp_conn_poll(a, MP_NOWAIT), 0);
    mp_conn_free(a);
    mp_conn_free(b);
}

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
        TU_TEST(test_handle_calls_on_a_pipe_are_enotsock),
        TU_TEST(test_recv_handle_timeout_eof_and_bad_arguments),
        TU_TEST(test_recv_handle_leaves_a_framed_message_whole),
        TU_TEST(test_handles_between_messages_arrive_with_readahead_on_and_off),
        TU_TEST(test_handles_at_random_places_from_a_c_peer),
        TU_TEST(test_handles_at_random_places_from_python),
        TU_TEST(test_recv_handle_during_a_partial_message_is_estate),
        TU_TEST(test_server_hands_accepted_clients_to_a_worker),
        TU_TEST(test_sent_ends_keep_their_directions),
        TU_TEST(test_send_conn_refuses_an_end_with_buffered_bytes),
        TU_TEST(test_send_conn_refuses_narrowed_closed_and_self),
        TU_TEST(test_more_descriptors_than_announced_leak_none),
        TU_TEST(test_unannounced_descriptors_leak_none),
        TU_TEST(test_truncated_control_data_leaks_none),
        TU_TEST(test_announced_but_missing_descriptor_is_eproto),
        TU_TEST(test_descriptors_on_ordinary_messages_leak_none),
        TU_TEST(test_kept_handle_passed_over_is_closed),
        TU_TEST(test_child_forked_with_a_kept_handle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
