/*
 * conn_shm: mp_pipe_shm, the Pipe over shared-memory rings, across real
 * forked processes: the Connection API on its ends, the doorbell under
 * poll/mp_wait, end of file and killed peers, a corrupted ring, several
 * senders, and an idle receiver's CPU.
 */
#include "testutil.h"

#include "conn/shmpipe.h"

#include <mpipc/conn.h>
#include <mpipc/obj.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* A small ring, so that modest messages already go through in pieces. */
static const mp_pipe_shm_opts small_ring = {.ring_size = 4096};

/* Message n of sender s: a header {s, n, len} then a pattern of them all. */
static size_t msg_fill(unsigned char *buf, size_t len, uint32_t s, uint32_t n)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (unsigned char)(i * 31u + s * 7u + n * 13u);
    if (len >= 12) {
        uint32_t l = (uint32_t)len;
        memcpy(buf, &s, 4);
        memcpy(buf + 4, &n, 4);
        memcpy(buf + 8, &l, 4);
    }
    return len;
}

/* True if buf is exactly a message msg_fill made; *s, *n say whose. */
static bool msg_check(const unsigned char *buf, size_t len, uint32_t *s, uint32_t *n)
{
    if (len < 12)
        return false;
    uint32_t l;
    memcpy(s, buf, 4);
    memcpy(n, buf + 4, 4);
    memcpy(&l, buf + 8, 4);
    if (l != len)
        return false;
    for (size_t i = 12; i < len; i++)
        if (buf[i] != (unsigned char)(i * 31u + *s * 7u + *n * 13u))
            return false;
    return true;
}

static size_t msg_size(uint32_t n)
{
    static const size_t sizes[] = {12, 100, 4000, 4080, 5000, 20000, 64, 300000};
    return sizes[n % (sizeof sizes / sizeof sizes[0])];
}

/* ---- round trips ------------------------------------------------------------- */

static mp_conn *g_a, *g_b;

/* Child: echo every message back until end of file. */
static int child_echo(void *arg)
{
    (void)arg;
    mp_conn_free(g_a);
    for (;;) {
        void *buf;
        size_t len;
        int rc = mp_conn_recv_bytes(g_b, 0, &buf, &len, 20.0);
        if (rc == MP_EOF)
            return 0;
        if (rc < 0)
            return 1;
        rc = mp_conn_send_bytes(g_b, buf, len);
        free(buf);
        if (rc < 0)
            return 2;
    }
}

/* Python's Pipe: every message comes back whole and in order, whatever its
 * size, also those much larger than the ring (sent in pieces). */
static void test_shm_round_trips_small_and_larger_than_the_ring(void **state)
{
    (void)state;
    assert_int_equal(mp_pipe_shm(&g_a, &g_b, true, &small_ring), 0);
    pid_t pid = tu_fork(child_echo, NULL);
    mp_conn_free(g_b);
    unsigned char *out = malloc(300000), *in = malloc(300000);
    assert_non_null(out);
    assert_non_null(in);
    for (uint32_t n = 0; n < 40; n++) {
        size_t len = msg_fill(out, msg_size(n), 0, n);
        assert_int_equal(mp_conn_send_bytes(g_a, out, len), 0);
        void *buf;
        size_t got;
        if (n % 2) {
            assert_int_equal(mp_conn_recv_bytes(g_a, 0, &buf, &got, 10.0), 0);
        } else {
            ssize_t r = mp_conn_recv_bytes_into(g_a, in, 300000, 0, NULL, 10.0);
            assert_int_equal(r, (ssize_t)len);
            buf = NULL;
            got = (size_t)r;
        }
        uint32_t s = 0, k = 0;
        assert_int_equal(got, len);
        assert_true(msg_check(buf ? buf : in, got, &s, &k));
        assert_int_equal(k, n);
        free(buf);
    }
    /* The empty message is a message. */
    assert_int_equal(mp_conn_send_bytes(g_a, "", 0), 0);
    void *buf;
    size_t got = 99;
    assert_int_equal(mp_conn_recv_bytes(g_a, 0, &buf, &got, 10.0), 0);
    assert_int_equal(got, 0);
    free(buf);
    mp_conn_free(g_a);
    assert_int_equal(tu_wait_child(pid, 20.0), 0);
    free(out);
    free(in);
}

/* Python's recv_bytes_into: too small a buffer is an error that keeps the
 * message (we go further than Python, which loses it), for a message that
 * fits the ring and for one that comes in pieces; the offset is honoured. */
static void test_shm_recv_into_too_short_keeps_the_message(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe_shm(&a, &b, false, &small_ring), 0);
    unsigned char msg[1000];
    msg_fill(msg, sizeof msg, 1, 1);
    assert_int_equal(mp_conn_send_bytes(b, msg, sizeof msg), 0);
    unsigned char into[1100];
    size_t need = 0;
    TU_ASSERT_STATUS(mp_conn_recv_bytes_into(a, into, 999, 0, &need, 1.0), MP_ETOOSHORT);
    assert_int_equal(need, 1000);
    assert_int_equal(mp_conn_recv_bytes_into(a, into, sizeof into, 100, &need, 1.0), 1000);
    assert_memory_equal(into + 100, msg, 1000);
    mp_conn_free(a);
    mp_conn_free(b);
}

static int child_send_big(void *arg)
{
    size_t len = *(size_t *)arg;
    mp_conn_free(g_a);
    unsigned char *m = malloc(len);
    if (!m)
        return 3;
    msg_fill(m, len, 2, 2);
    int rc = mp_conn_send_bytes(g_b, m, len);
    free(m);
    mp_conn_free(g_b);
    return rc == 0 ? 0 : 1;
}

static void test_shm_recv_into_too_short_keeps_a_message_sent_in_pieces(void **state)
{
    (void)state;
    size_t len = 50000;
    assert_int_equal(mp_pipe_shm(&g_a, &g_b, false, &small_ring), 0);
    pid_t pid = tu_fork(child_send_big, &len);
    mp_conn_free(g_b);
    unsigned char *into = malloc(len);
    size_t need = 0;
    TU_ASSERT_STATUS(mp_conn_recv_bytes_into(g_a, into, len - 1, 0, &need, 5.0), MP_ETOOSHORT);
    assert_int_equal(need, len);
    assert_int_equal(mp_conn_recv_bytes_into(g_a, into, len, 0, &need, 5.0), (ssize_t)len);
    uint32_t s = 0, n = 0;
    assert_true(msg_check(into, len, &s, &n));
    assert_int_equal(tu_wait_child(pid, 10.0), 0);
    void *buf;
    TU_ASSERT_STATUS(mp_conn_recv_bytes(g_a, 0, &buf, &need, 5.0), MP_EOF);
    free(into);
    mp_conn_free(g_a);
}

/* A receive that times out half way through a message sent in pieces keeps
 * what it took; the next receive completes it (the socket Pipe's rule). The
 * sender is stopped (SIGSTOP) so that the message cannot complete in time. */
static void test_shm_timeout_mid_message_resumes(void **state)
{
    (void)state;
    size_t len = 50000;
    unsigned char *into = malloc(len);
    assert_non_null(into);
    /* mode 0: recv_bytes; mode 1: recv_bytes_into, whose part moves from
     * the caller's buffer to the heap at the timeout */
    for (int mode = 0; mode < 2; mode++) {
        assert_int_equal(mp_pipe_shm(&g_a, &g_b, false, &small_ring), 0);
        pid_t pid = tu_fork(child_send_big, &len);
        tu_sleep(0.1); /* the ring is full, the child waits for room */
        kill(pid, SIGSTOP);
        void *buf = NULL;
        size_t got = 0;
        if (mode == 0)
            TU_ASSERT_STATUS(mp_conn_recv_bytes(g_a, 0, &buf, &got, 0.2), MP_ETIMEDOUT);
        else
            TU_ASSERT_STATUS(mp_conn_recv_bytes_into(g_a, into, len, 0, NULL, 0.2), MP_ETIMEDOUT);
        assert_true(mp_conn_buffered(g_a) >= 2000); /* the part taken counts */
        memset(into, 0, len);
        kill(pid, SIGCONT);
        mp_conn_free(g_b);
        if (mode == 0) {
            assert_int_equal(mp_conn_recv_bytes(g_a, 0, &buf, &got, 5.0), 0);
        } else {
            assert_int_equal(mp_conn_recv_bytes_into(g_a, into, len, 0, NULL, 5.0), (ssize_t)len);
            got = len;
        }
        assert_int_equal(got, len);
        uint32_t s = 0, n = 0;
        assert_true(msg_check(mode == 0 ? buf : into, got, &s, &n));
        free(buf);
        assert_int_equal(tu_wait_child(pid, 10.0), 0);
        TU_ASSERT_STATUS(mp_conn_recv_bytes(g_a, 0, &buf, &got, 5.0), MP_EOF);
        mp_conn_free(g_a);
    }
    free(into);
}

static int child_send_big_then_next(void *arg)
{
    size_t len = *(size_t *)arg;
    mp_conn_free(g_a);
    unsigned char *m = malloc(len);
    if (!m)
        return 3;
    msg_fill(m, len, 2, 2);
    int rc = mp_conn_send_bytes(g_b, m, len);
    free(m);
    if (rc == 0)
        rc = mp_conn_send_bytes(g_b, "next", 4);
    mp_conn_free(g_b);
    return rc == 0 ? 0 : 1;
}

static int child_receive_next(void *arg)
{
    (void)arg;
    void *buf;
    size_t len;
    int rc = mp_conn_recv_bytes(g_a, 0, &buf, &len, 5.0);
    if (rc < 0)
        return 1;
    rc = len == 4 && memcmp(buf, "next", 4) == 0 ? 0 : 2;
    free(buf);
    return rc;
}

/* The socket Pipe's fork rule: a message the parent had begun receiving is
 * the parent's; a child forked then never receives it (nor a torn part of
 * it), and goes on with the next whole message. */
static void test_shm_child_never_receives_the_parents_part(void **state)
{
    (void)state;
    size_t len = 50000;
    assert_int_equal(mp_pipe_shm(&g_a, &g_b, false, &small_ring), 0);
    pid_t sender = tu_fork(child_send_big_then_next, &len);
    mp_conn_free(g_b);
    tu_sleep(0.1);
    kill(sender, SIGSTOP);
    void *buf;
    size_t got;
    TU_ASSERT_STATUS(mp_conn_recv_bytes(g_a, 0, &buf, &got, 0.2), MP_ETIMEDOUT);
    pid_t receiver = tu_fork(child_receive_next, NULL);
    kill(sender, SIGCONT);
    assert_int_equal(tu_wait_child(receiver, 10.0), 0);
    assert_int_equal(tu_wait_child(sender, 10.0), 0);
    mp_conn_free(g_a);
}

/* Python's _bad_message_length: over maxlength, a duplex end stops being
 * readable and a receive-only end is closed. */
static void test_shm_maxlength_ends_reading(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe_shm(&a, &b, true, NULL), 0);
    assert_int_equal(mp_conn_send_bytes(b, "0123456789", 10), 0);
    void *buf;
    size_t len;
    TU_ASSERT_STATUS(mp_conn_recv_bytes(a, 9, &buf, &len, 1.0), MP_ETOOLONG);
    assert_false(mp_conn_readable(a));
    TU_ASSERT_STATUS(mp_conn_recv_bytes(a, 0, &buf, &len, 1.0), MP_EWRITEONLY);
    assert_int_equal(mp_conn_send_bytes(a, "back", 4), 0); /* still writable */
    assert_int_equal(mp_conn_recv_bytes(b, 10, &buf, &len, 1.0), 0);
    assert_int_equal(len, 4);
    free(buf);
    mp_conn_free(a);
    mp_conn_free(b);

    assert_int_equal(mp_pipe_shm(&a, &b, false, NULL), 0);
    assert_int_equal(mp_conn_send_bytes(b, "0123456789", 10), 0);
    TU_ASSERT_STATUS(mp_conn_recv_bytes(a, 9, &buf, &len, 1.0), MP_ETOOLONG);
    assert_true(mp_conn_closed(a));
    mp_conn_free(a);
    mp_conn_free(b);
}

/* Python's send/recv: values pickled across the ring, and the wrong
 * direction of a one-way pipe refused by name. */
static void test_shm_send_recv_values_and_directions(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe_shm(&a, &b, false, NULL), 0);
    mp_obj *v = mp_obj_build("(s,i,[d,y#])", "x", 2, 0.5, "raw", (size_t)3);
    assert_non_null(v);
    assert_int_equal(mp_conn_send(b, v), 0);
    mp_obj *w = NULL;
    assert_int_equal(mp_conn_recv(a, &w, 1.0), 0);
    assert_true(mp_obj_equal(v, w));
    mp_obj_free(v);
    mp_obj_free(w);
    TU_ASSERT_STATUS(mp_conn_send_bytes(a, "x", 1), MP_EREADONLY);
    void *buf;
    size_t len;
    TU_ASSERT_STATUS(mp_conn_recv_bytes(b, 0, &buf, &len, 0.0), MP_EWRITEONLY);
    TU_ASSERT_STATUS(mp_conn_poll(b, 0.0), MP_EWRITEONLY);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* ---- poll and the doorbell ---------------------------------------------------- */

static int child_send_later(void *arg)
{
    (void)arg;
    mp_conn_free(g_a);
    tu_sleep(0.2);
    int rc = mp_conn_send_bytes(g_b, "late", 4);
    tu_sleep(0.5); /* keep the end open: the wake-up must be the bell's */
    mp_conn_free(g_b);
    return rc == 0 ? 0 : 1;
}

/* Python's poll(timeout): False after the timeout with nothing sent, True
 * at once with a message waiting, and a sleeping poll is woken by a send. */
static void test_shm_poll_with_and_without_data(void **state)
{
    (void)state;
    assert_int_equal(mp_pipe_shm(&g_a, &g_b, true, NULL), 0);
    double t0 = tu_now();
    assert_int_equal(mp_conn_poll(g_a, 0.1), 0);
    assert_true(tu_now() - t0 >= 0.09);
    assert_int_equal(mp_conn_poll(g_a, 0.0), 0);
    pid_t pid = tu_fork(child_send_later, NULL);
    t0 = tu_now();
    assert_int_equal(mp_conn_poll(g_a, 5.0), 1);
    assert_true(tu_now() - t0 < 2.0);
    assert_int_equal(mp_conn_poll(g_a, 0.0), 1); /* still there */
    void *buf;
    size_t len;
    assert_int_equal(mp_conn_recv_bytes(g_a, 0, &buf, &len, 1.0), 0);
    assert_memory_equal(buf, "late", 4);
    free(buf);
    assert_int_equal(tu_wait_child(pid, 5.0), 0);
    mp_conn_free(g_b);
    /* Every peer end closed: readable (end of file), as for a socket. */
    assert_int_equal(mp_conn_poll(g_a, 1.0), 1);
    TU_ASSERT_STATUS(mp_conn_recv_bytes(g_a, 0, &buf, &len, 1.0), MP_EOF);
    mp_conn_free(g_a);
}

/* The doorbell is an ordinary descriptor: a user's own poll() loop (after
 * mp_conn_poll(c, MP_NOWAIT), the rule for read-ahead) and mp_wait beside a
 * socket Pipe are woken by a message from another process. */
static void test_shm_doorbell_wakes_poll_loops_and_mp_wait(void **state)
{
    (void)state;
    assert_int_equal(mp_pipe_shm(&g_a, &g_b, true, NULL), 0);
    pid_t pid = tu_fork(child_send_later, NULL);
    assert_int_equal(mp_conn_poll(g_a, 0.0), 0);
    struct pollfd p = {.fd = mp_conn_fileno(g_a), .events = POLLIN};
    assert_true(p.fd >= 0);
    double t0 = tu_now();
    assert_int_equal(poll(&p, 1, 5000), 1);
    assert_true(tu_now() - t0 < 2.0);
    assert_int_equal(mp_conn_poll(g_a, 0.0), 1);
    void *buf;
    size_t len;
    assert_int_equal(mp_conn_recv_bytes(g_a, 0, &buf, &len, 1.0), 0);
    free(buf);
    assert_int_equal(tu_wait_child(pid, 5.0), 0);

    mp_conn *s1, *s2;
    assert_int_equal(mp_pipe(&s1, &s2, true), 0);
    mp_conn *c, *d;
    assert_int_equal(mp_pipe_shm(&c, &d, false, NULL), 0);
    mp_wait_item items[3] = {
        {.conn = s1, .fd = -1}, {.conn = g_a, .fd = -1}, {.conn = c, .fd = -1}};
    t0 = tu_now();
    assert_int_equal(mp_wait(items, 3, 0.15), 0);
    assert_true(tu_now() - t0 >= 0.14);
    pid = tu_fork(child_send_later, NULL); /* sends on g_b */
    assert_int_equal(mp_wait(items, 3, 5.0), 1);
    assert_int_equal(items[0].ready, 0);
    assert_int_equal(items[1].ready, 1);
    assert_int_equal(items[2].ready, 0);
    assert_int_equal(mp_conn_send_bytes(d, "x", 1), 0);
    assert_int_equal(mp_wait(items, 3, 5.0), 2);
    assert_int_equal(items[2].ready, 1);
    assert_int_equal(tu_wait_child(pid, 5.0), 0);
    mp_conn_free(s1);
    mp_conn_free(s2);
    mp_conn_free(c);
    mp_conn_free(d);
    mp_conn_free(g_a);
    mp_conn_free(g_b);
}

/* ---- end of file and death ------------------------------------------------------ */

static int child_send_three_and_exit(void *arg)
{
    (void)arg;
    mp_conn_free(g_a);
    for (int i = 0; i < 3; i++)
        if (mp_conn_send_bytes(g_b, "msg", 3) < 0)
            return 1;
    return 0; /* exits without closing: the kernel closes the doorbell */
}

/* Python: messages sent before the peer went away are still received, then
 * EOFError; a receiver blocked when the peer closes wakes with it. */
static void test_shm_eof_after_the_peer_exits_or_closes(void **state)
{
    (void)state;
    assert_int_equal(mp_pipe_shm(&g_a, &g_b, true, NULL), 0);
    pid_t pid = tu_fork(child_send_three_and_exit, NULL);
    mp_conn_free(g_b);
    assert_int_equal(tu_wait_child(pid, 5.0), 0);
    void *buf;
    size_t len;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(mp_conn_recv_bytes(g_a, 0, &buf, &len, 1.0), 0);
        free(buf);
    }
    TU_ASSERT_STATUS(mp_conn_recv_bytes(g_a, 0, &buf, &len, 1.0), MP_EOF);
    TU_ASSERT_STATUS(mp_conn_recv_bytes(g_a, 0, &buf, &len, 1.0), MP_EOF);
    mp_conn_free(g_a);

    /* In one process: closing the one peer end wakes a blocked receive. */
    mp_conn *a, *b;
    assert_int_equal(mp_pipe_shm(&a, &b, false, NULL), 0);
    assert_int_equal(mp_conn_close(b), 0);
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_conn_recv_bytes(a, 0, &buf, &len, 5.0), MP_EOF);
    assert_true(tu_now() - t0 < 1.0);
    TU_ASSERT_STATUS(mp_conn_send_bytes(b, "x", 1), MP_ECLOSED);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* Python raises BrokenPipeError sending to a Pipe whose reader is gone:
 * here -EPIPE, at the latest when the ring is full. */
static void test_shm_send_to_a_closed_reader_gives_epipe(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe_shm(&a, &b, false, &small_ring), 0);
    mp_conn_free(a);
    unsigned char m[1000] = {0};
    int rc = 0;
    for (int i = 0; i < 20 && rc == 0; i++)
        rc = mp_conn_send_bytes(b, m, sizeof m);
    TU_ASSERT_STATUS(rc, -EPIPE);
    mp_conn_free(b);
}

static int child_stream(void *arg)
{
    (void)arg;
    mp_conn_free(g_a);
    unsigned char *m = malloc(300000);
    if (!m)
        return 3;
    for (uint32_t n = 0;; n++) {
        size_t len = msg_fill(m, msg_size(n), 3, n);
        if (mp_conn_send_bytes(g_b, m, len) < 0)
            return 1;
    }
}

/* A sender SIGKILLed at any instant, also in the middle of a message sent
 * in pieces: every message delivered is whole and in order, then MP_EOF or
 * MP_ETRUNCATED, never a hang or a torn message. */
static void test_shm_sender_killed_mid_stream_never_tears_a_message(void **state)
{
    (void)state;
    for (int round = 0; round < 8; round++) {
        assert_int_equal(mp_pipe_shm(&g_a, &g_b, false, &small_ring), 0);
        pid_t pid = tu_fork(child_stream, NULL);
        mp_conn_free(g_b);
        double kill_at = tu_now() + 0.01 + 0.013 * round;
        bool killed = false;
        uint32_t expect = 0;
        int rc;
        for (;;) {
            if (!killed && tu_now() >= kill_at) {
                kill(pid, SIGKILL);
                killed = true;
            }
            void *buf;
            size_t len;
            rc = mp_conn_recv_bytes(g_a, 0, &buf, &len, 5.0);
            if (rc < 0)
                break;
            uint32_t s = 0, n = 0;
            assert_true(msg_check(buf, len, &s, &n));
            assert_int_equal(n, expect);
            expect++;
            free(buf);
        }
        assert_true(killed);
        assert_true(rc == MP_EOF || rc == MP_ETRUNCATED);
        assert_int_equal(tu_wait_child(pid, 5.0), -SIGKILL);
        mp_conn_free(g_a);
    }
}

static int child_send_huge_and_block(void *arg)
{
    (void)arg;
    mp_conn_free(g_a);
    size_t len = 200000; /* far over the ring: blocks holding the send lock */
    unsigned char *m = malloc(len);
    if (!m)
        return 3;
    msg_fill(m, len, 4, 4);
    (void)mp_conn_send_bytes(g_b, m, len);
    return 1; /* never gets here: killed */
}

static int child_send_after(void *arg)
{
    (void)arg;
    mp_conn_free(g_a);
    int rc = mp_conn_send_bytes(g_b, "after", 5);
    mp_conn_free(g_b);
    return rc == 0 ? 0 : 1;
}

/* A sender killed while it holds the send lock, part way through a message
 * in pieces: the next sender still gets through, and the receiver gets its
 * message, not the dead one's part. */
static void test_shm_sender_killed_holding_the_lock_leaves_no_partial_message(void **state)
{
    (void)state;
    assert_int_equal(mp_pipe_shm(&g_a, &g_b, false, &small_ring), 0);
    pid_t pid = tu_fork(child_send_huge_and_block, NULL);
    tu_sleep(0.2); /* the ring fills; the child waits for room, lock held */
    assert_true(mp_conn_buffered(g_a) > 0);
    kill(pid, SIGKILL);
    assert_int_equal(tu_wait_child(pid, 5.0), -SIGKILL);
    /* The next sender waits for room the dead one's part holds, so it runs
     * in a process of its own while this one receives. */
    pid = tu_fork(child_send_after, NULL);
    mp_conn_free(g_b);
    void *buf;
    size_t len;
    assert_int_equal(mp_conn_recv_bytes(g_a, 0, &buf, &len, 5.0), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "after", 5);
    free(buf);
    assert_int_equal(tu_wait_child(pid, 5.0), 0);
    TU_ASSERT_STATUS(mp_conn_recv_bytes(g_a, 0, &buf, &len, 5.0), MP_EOF);
    mp_conn_free(g_a);
}

static int child_receive_slowly(void *arg)
{
    (void)arg;
    mp_conn_free(g_b);
    void *buf;
    size_t len;
    if (mp_conn_recv_bytes(g_a, 0, &buf, &len, 5.0) == 0)
        free(buf);
    tu_sleep(30.0); /* killed while the sender waits for room */
    return 0;
}

static void *thread_kill_later(void *arg)
{
    tu_sleep(0.2);
    kill(*(pid_t *)arg, SIGKILL);
    return NULL;
}

/* Python raises BrokenPipeError when the reader dies: a sender blocked on
 * a full ring when its receiver is SIGKILLed returns -EPIPE soon, never
 * hangs. */
static void test_shm_sender_blocked_on_a_killed_receiver_gets_epipe(void **state)
{
    (void)state;
    assert_int_equal(mp_pipe_shm(&g_a, &g_b, false, &small_ring), 0);
    pid_t pid = tu_fork(child_receive_slowly, NULL);
    mp_conn_free(g_a);
    pthread_t killer;
    assert_int_equal(pthread_create(&killer, NULL, thread_kill_later, &pid), 0);
    unsigned char m[1000] = {0};
    int rc = 0;
    double t0 = tu_now();
    while (rc == 0 && tu_now() - t0 < 10.0)
        rc = mp_conn_send_bytes(g_b, m, sizeof m); /* blocks on the full ring */
    TU_ASSERT_STATUS(rc, -EPIPE);
    assert_true(tu_now() - t0 < 2.0);
    assert_int_equal(pthread_join(killer, NULL), 0);
    assert_int_equal(tu_wait_child(pid, 5.0), -SIGKILL);
    mp_conn_free(g_b);
}

/* ---- bad input --------------------------------------------------------------------- */

/* Shared indexes overwritten (by a bug or a hostile process): MP_EPROTO,
 * nothing read out of bounds, and the state is not consumed. */
static void test_shm_corrupted_index_gives_eproto(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe_shm(&a, &b, true, &small_ring), 0);
    uint64_t *head = mp__shmc_test_index(a, 0), *tail = mp__shmc_test_index(a, 1);
    assert_non_null(head);
    assert_non_null(tail);
    void *buf;
    size_t len;
    unsigned char m[100] = {1};
    assert_int_equal(mp_conn_send_bytes(b, m, sizeof m), 0);
    uint64_t good = *tail, good_head = *head;
    /* More published than the ring holds. */
    *tail = *head + 4096 * 4;
    TU_ASSERT_STATUS(mp_conn_recv_bytes(a, 0, &buf, &len, 0.5), MP_EPROTO);
    assert_int_equal(mp_conn_poll(a, 0.0), 1); /* a receive would not wait */
    TU_ASSERT_STATUS(mp_conn_send_bytes(b, m, sizeof m), MP_EPROTO);
    /* Less published than the record says it holds. */
    *tail = *head + 24;
    TU_ASSERT_STATUS(mp_conn_recv_bytes(a, 0, &buf, &len, 0.5), MP_EPROTO);
    /* Less than a record header. */
    *tail = *head + 3;
    TU_ASSERT_STATUS(mp_conn_recv_bytes(a, 0, &buf, &len, 0.5), MP_EPROTO);
    /* A head run past the tail. */
    *tail = good;
    *head = good + 8;
    TU_ASSERT_STATUS(mp_conn_recv_bytes(a, 0, &buf, &len, 0.5), MP_EPROTO);
    /* Restored, the message is still there. */
    *head = good_head;
    assert_int_equal(mp_conn_recv_bytes(a, 0, &buf, &len, 0.5), 0);
    assert_int_equal(len, sizeof m);
    free(buf);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* ---- several senders -------------------------------------------------------------- */

static int child_sender(void *arg)
{
    uint32_t me = (uint32_t)(uintptr_t)arg;
    mp_conn_free(g_a);
    unsigned char *m = malloc(300000);
    if (!m)
        return 3;
    for (uint32_t n = 0; n < 40; n++) {
        size_t len = msg_fill(m, msg_size(n + me), me, n);
        if (mp_conn_send_bytes(g_b, m, len) < 0)
            return 1;
    }
    free(m);
    mp_conn_free(g_b);
    return 0;
}

/* The seed program: five children share one end. Every message arrives
 * whole, each child's in its order, whatever their sizes. */
static void test_shm_five_senders_keep_whole_messages(void **state)
{
    (void)state;
    enum { NS = 5, NM = 40 };
    assert_int_equal(mp_pipe_shm(&g_a, &g_b, false, &small_ring), 0);
    pid_t pids[NS];
    for (uintptr_t i = 0; i < NS; i++)
        pids[i] = tu_fork(child_sender, (void *)(i + 1));
    mp_conn_free(g_b);
    uint32_t next[NS + 1] = {0};
    for (int i = 0; i < NS * NM; i++) {
        void *buf;
        size_t len;
        assert_int_equal(mp_conn_recv_bytes(g_a, 0, &buf, &len, 10.0), 0);
        uint32_t s = 0, n = 0;
        assert_true(msg_check(buf, len, &s, &n));
        assert_true(s >= 1 && s <= NS);
        assert_int_equal(n, next[s]);
        next[s]++;
        free(buf);
    }
    for (int i = 0; i < NS; i++)
        assert_int_equal(tu_wait_child(pids[i], 10.0), 0);
    void *buf;
    size_t len;
    TU_ASSERT_STATUS(mp_conn_recv_bytes(g_a, 0, &buf, &len, 5.0), MP_EOF);
    mp_conn_free(g_a);
}

/* ---- threads ------------------------------------------------------------------------ */

struct thread_rx {
    mp_conn *c;
    int got, bad;
};

static void *thread_receive(void *arg)
{
    struct thread_rx *t = arg;
    for (;;) {
        void *buf;
        size_t len;
        int rc = mp_conn_recv_bytes(t->c, 0, &buf, &len, 10.0);
        if (rc == MP_EOF)
            return NULL;
        uint32_t s = 0, n = 0;
        if (rc < 0 || !msg_check(buf, len, &s, &n))
            t->bad++;
        else
            t->got++;
        free(buf);
        if (rc < 0)
            return NULL;
    }
}

/* Threads of one process share an end as Python's threads do: two
 * receiving threads between them get every message once and whole. */
static void test_shm_two_receiving_threads_share_an_end(void **state)
{
    (void)state;
    enum { NM = 300 };
    mp_conn *a, *b;
    assert_int_equal(mp_pipe_shm(&a, &b, false, &small_ring), 0);
    struct thread_rx t[2] = {{.c = a}, {.c = a}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, thread_receive, &t[i]), 0);
    unsigned char *m = malloc(300000);
    assert_non_null(m);
    for (uint32_t n = 0; n < NM; n++) {
        size_t len = msg_fill(m, msg_size(n) % 30000 + 12, 5, n);
        assert_int_equal(mp_conn_send_bytes(b, m, len), 0);
    }
    free(m);
    assert_int_equal(mp_conn_close(b), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(t[0].bad + t[1].bad, 0);
    assert_int_equal(t[0].got + t[1].got, NM);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* ---- idle receiver ---------------------------------------------------------------- */

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static int child_idle_receive(void *arg)
{
    (void)arg;
    mp_conn_free(g_b);
    double c0 = cpu_seconds();
    void *buf;
    size_t len;
    int rc = mp_conn_recv_bytes(g_a, 0, &buf, &len, 0.5);
    double used = cpu_seconds() - c0;
    if (rc != MP_ETIMEDOUT)
        return 1;
    return used < 0.05 * tu_slowdown(1.0, 2.0) ? 0 : 2;
}

/* An idle receiver blocked in recv sleeps in the kernel after a short spin:
 * well under 10% of a CPU over half a second. */
static void test_shm_idle_blocked_receiver_uses_no_cpu(void **state)
{
    (void)state;
    assert_int_equal(mp_pipe_shm(&g_a, &g_b, true, NULL), 0);
    pid_t pid = tu_fork(child_idle_receive, NULL);
    assert_int_equal(tu_wait_child(pid, 10.0), 0);
    mp_conn_free(g_a);
    mp_conn_free(g_b);
}

/* Bad arguments are refused by name and hand back nothing. */
static void test_shm_bad_arguments(void **state)
{
    (void)state;
    mp_conn *a = (mp_conn *)1, *b = (mp_conn *)1;
    TU_ASSERT_STATUS(mp_pipe_shm(NULL, &b, true, NULL), -EINVAL);
    mp_pipe_shm_opts huge = MP_PIPE_SHM_OPTS_INIT;
    huge.ring_size = (size_t)1 << 40;
    TU_ASSERT_STATUS(mp_pipe_shm(&a, &b, true, &huge), -EINVAL);
    assert_null(a);
    assert_null(b);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_shm_round_trips_small_and_larger_than_the_ring),
        TU_TEST(test_shm_recv_into_too_short_keeps_the_message),
        TU_TEST(test_shm_recv_into_too_short_keeps_a_message_sent_in_pieces),
        TU_TEST(test_shm_timeout_mid_message_resumes),
        TU_TEST(test_shm_child_never_receives_the_parents_part),
        TU_TEST(test_shm_maxlength_ends_reading),
        TU_TEST(test_shm_send_recv_values_and_directions),
        TU_TEST(test_shm_poll_with_and_without_data),
        TU_TEST(test_shm_doorbell_wakes_poll_loops_and_mp_wait),
        TU_TEST(test_shm_eof_after_the_peer_exits_or_closes),
        TU_TEST(test_shm_send_to_a_closed_reader_gives_epipe),
        TU_TEST(test_shm_sender_killed_mid_stream_never_tears_a_message),
        TU_TEST(test_shm_sender_killed_holding_the_lock_leaves_no_partial_message),
        TU_TEST(test_shm_sender_blocked_on_a_killed_receiver_gets_epipe),
        TU_TEST(test_shm_corrupted_index_gives_eproto),
        TU_TEST(test_shm_five_senders_keep_whole_messages),
        TU_TEST(test_shm_two_receiving_threads_share_an_end),
        TU_TEST(test_shm_idle_blocked_receiver_uses_no_cpu),
        TU_TEST(test_shm_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
