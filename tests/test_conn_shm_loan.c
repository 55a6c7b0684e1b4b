/*
 * conn_shm_loan: zero-copy loans and views on mp_pipe_shm ends (and their
 * heap fallback on socket ends) and the prompt EPIPE after the reader
 * closes (handing an end over by descriptor: test_conn_shm_pass.c).
 */
#include "testutil.h"

#include <mpipc/conn.h>

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* A small ring, so that loans wrap (pad records) and some go to the heap. */
static const mp_pipe_shm_opts small_ring = {.ring_size = 4096};

static void fill(unsigned char *p, size_t len, uint32_t n)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (unsigned char)(i * 7u + n * 13u + 1u);
}

static bool check(const unsigned char *p, size_t len, uint32_t n)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != (unsigned char)(i * 7u + n * 13u + 1u))
            return false;
    return true;
}

/* Sizes that walk the ring's wrap point, cross mp_conn_loan_max (heap
 * loans) and the ring itself (a heap loan sent in pieces). */
static size_t loan_size(uint32_t n)
{
    static const size_t sizes[] = {0, 8, 100, 1000, 2000, 2016, 2017, 1500, 3000, 9000, 24, 640};
    return sizes[n % (sizeof sizes / sizeof sizes[0])];
}

static mp_conn *g_a, *g_b;

/* Child: echo each message back, viewing it and answering with a loan
 * filled from the view, until end of file. */
static int child_view_echo(void *arg)
{
    (void)arg;
    mp_conn_free(g_a);
    for (;;) {
        const void *view;
        size_t len;
        int rc = mp_conn_recv_view(g_b, &view, &len, 20.0);
        if (rc == MP_EOF)
            return 0;
        if (rc < 0)
            return 1;
        void *out;
        if (mp_conn_loan(g_b, len, &out, 20.0) < 0)
            return 2;
        memcpy(out, view, len);
        if (mp_conn_release(g_b, view) < 0)
            return 3;
        if (mp_conn_commit(g_b, out, len) < 0)
            return 4;
    }
}

/* Python's Pipe: every message comes back whole and in order; here built in
 * a loan and read through a view, at every size, also where a loan meets
 * the ring's end, is larger than mp_conn_loan_max (heap) or than the ring. */
static void round_trips(mp_conn *a, mp_conn *b, const mp_pipe_shm_opts *opts)
{
    g_a = a;
    g_b = b;
    pid_t pid = tu_fork(child_view_echo, NULL);
    mp_conn_free(g_b);
    for (uint32_t n = 0; n < 200; n++) {
        size_t len = loan_size(n);
        void *out;
        assert_int_equal(mp_conn_loan(g_a, len, &out, 10.0), 0);
        assert_non_null(out);
        fill(out, len, n);
        assert_int_equal(mp_conn_commit(g_a, out, len), 0);
        const void *view;
        size_t got = 99;
        assert_int_equal(mp_conn_recv_view(g_a, &view, &got, 10.0), 0);
        assert_int_equal(got, len);
        assert_true(check(view, got, n));
        assert_int_equal(mp_conn_release(g_a, view), 0);
    }
    if (opts)
        assert_true(mp_conn_loan_max(g_a) > 1000 && mp_conn_loan_max(g_a) < 2048);
    else
        assert_int_equal(mp_conn_loan_max(g_a), 0);
    mp_conn_free(g_a);
    assert_int_equal(tu_wait_child(pid, 20.0), 0);
}

static void test_loan_and_view_round_trip_every_size_across_fork(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe_shm(&a, &b, true, &small_ring), 0);
    round_trips(a, b, &small_ring);
}

/* Child: send 50 messages through loans, never receiving. */
static int child_loan_sender(void *arg)
{
    (void)arg;
    mp_conn_free(g_a);
    for (uint32_t n = 0; n < 50; n++) {
        size_t len = loan_size(n);
        void *out;
        if (mp_conn_loan(g_b, len, &out, 10.0) < 0)
            return 1;
        fill(out, len, n);
        if (mp_conn_commit(g_b, out, len) < 0)
            return 2;
    }
    mp_conn_free(g_b);
    return 0;
}

/* A forked child that only sends uses loans as its parent would (the loan
 * is its own, not a copy of the parent's state); then end of file. */
static void test_loans_in_a_child_that_only_sends(void **state)
{
    (void)state;
    assert_int_equal(mp_pipe_shm(&g_a, &g_b, false, &small_ring), 0);
    pid_t pid = tu_fork(child_loan_sender, NULL);
    mp_conn_free(g_b);
    for (uint32_t n = 0; n < 50; n++) {
        const void *view;
        size_t len;
        assert_int_equal(mp_conn_recv_view(g_a, &view, &len, 10.0), 0);
        assert_int_equal(len, loan_size(n));
        assert_true(check(view, len, n));
        assert_int_equal(mp_conn_release(g_a, view), 0);
    }
    const void *view;
    size_t len;
    TU_ASSERT_STATUS(mp_conn_recv_view(g_a, &view, &len, 10.0), MP_EOF);
    assert_int_equal(tu_wait_child(pid, 20.0), 0);
    mp_conn_free(g_a);
}

/* On a socket end the same calls work, through heap buffers. */
static void test_loan_and_view_fall_back_on_a_socket_pipe(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    round_trips(a, b, NULL);
}

/* A view is the message in place: mixed with copying sends and receives,
 * order is kept, and the copying calls see the same bytes. */
static void test_view_and_copying_calls_mix_in_order(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe_shm(&a, &b, false, &small_ring), 0);
    unsigned char m[3000];
    for (uint32_t n = 0; n < 60; n++) {
        size_t len = 100 + (n * 371) % 2900;
        fill(m, len, n);
        if (n % 3 == 0) {
            void *out;
            assert_int_equal(mp_conn_loan(b, len, &out, 5.0), 0);
            memcpy(out, m, len);
            assert_int_equal(mp_conn_commit(b, out, len), 0);
        } else {
            assert_int_equal(mp_conn_send_bytes(b, m, len), 0);
        }
        if (n % 2) {
            const void *view;
            size_t got;
            assert_int_equal(mp_conn_recv_view(a, &view, &got, 5.0), 0);
            assert_int_equal(got, len);
            assert_true(check(view, got, n));
            assert_int_equal(mp_conn_release(a, view), 0);
        } else {
            unsigned char in[3000];
            assert_int_equal(mp_conn_recv_bytes_into(a, in, sizeof in, 0, NULL, 5.0), (ssize_t)len);
            assert_true(check(in, len, n));
        }
    }
    assert_int_equal(mp_conn_buffered(a), 0);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* Bad use is refused by name and loses nothing: a commit longer than the
 * loan keeps the loan; a second loan or view in one thread is MP_ESTATE; a
 * cancelled loan sends nothing; a view with nothing there times out. */
static void test_loan_misuse_is_refused_and_loses_nothing(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe_shm(&a, &b, false, &small_ring), 0);
    void *out, *second;
    const void *view, *view2;
    size_t len;
    TU_ASSERT_STATUS(mp_conn_recv_view(a, &view, &len, 0.05), MP_ETIMEDOUT);
    assert_null(view);
    assert_int_equal(mp_conn_loan(b, 100, &out, 1.0), 0);
    TU_ASSERT_STATUS(mp_conn_loan(b, 10, &second, MP_NOWAIT), MP_ESTATE);
    assert_null(second);
    TU_ASSERT_STATUS(mp_conn_send_bytes(b, "early", 5), MP_ESTATE);
    TU_ASSERT_STATUS(mp_conn_commit(b, out, 101), MP_EVALUE);
    TU_ASSERT_STATUS(mp_conn_commit(b, (char *)out + 8, 10), -EINVAL);
    memcpy(out, "kept", 4);
    assert_int_equal(mp_conn_commit(b, out, 4), 0);
    assert_int_equal(mp_conn_loan(b, 50, &out, 1.0), 0);
    assert_int_equal(mp_conn_loan_cancel(b, out), 0);
    assert_int_equal(mp_conn_send_bytes(b, "next", 4), 0);
    assert_int_equal(mp_conn_recv_view(a, &view, &len, 1.0), 0);
    TU_ASSERT_STATUS(mp_conn_recv_view(a, &view2, &len, MP_NOWAIT), MP_ESTATE);
    assert_int_equal(mp_conn_recv_view(a, &view, &len, MP_NOWAIT) == 0, 0);
    assert_int_equal(len, 0); /* the refusals wrote their outputs only */
    TU_ASSERT_STATUS(mp_conn_release(a, NULL), -EINVAL);
    (void)view2;
    mp_conn_free(a);
    mp_conn_free(b);
}

/* NULLs and closed ends. */
static void test_loan_bad_arguments(void **state)
{
    (void)state;
    mp_conn *a, *b;
    void *out = (void *)1;
    const void *view = (const void *)1;
    size_t len;
    TU_ASSERT_STATUS(mp_conn_loan(NULL, 1, &out, 1.0), -EINVAL);
    TU_ASSERT_STATUS(mp_conn_commit(NULL, out, 1), -EINVAL);
    TU_ASSERT_STATUS(mp_conn_recv_view(NULL, &view, &len, 1.0), -EINVAL);
    assert_int_equal(mp_conn_loan_max(NULL), 0);
    assert_int_equal(mp_pipe_shm(&a, &b, false, &small_ring), 0);
    TU_ASSERT_STATUS(mp_conn_loan(a, 1, &out, 1.0), MP_EREADONLY);
    assert_null(out);
    TU_ASSERT_STATUS(mp_conn_recv_view(b, &view, &len, 1.0), MP_EWRITEONLY);
    TU_ASSERT_STATUS(mp_conn_loan(b, 1, &out, NAN), MP_EVALUE);
    assert_int_equal(mp_conn_loan_max(a), 0);
    assert_int_equal(mp_conn_close(b), 0);
    TU_ASSERT_STATUS(mp_conn_loan(b, 1, &out, 1.0), MP_ECLOSED);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* ---- death mid-loan, mid-view ------------------------------------------------ */

static int g_sync[2];

/* Child: take a loan, half fill it, tell the parent, wait to be killed. */
static int child_loan_and_hang(void *arg)
{
    (void)arg;
    void *out;
    if (mp_conn_loan(g_b, 1000, &out, 5.0) < 0)
        return 1;
    memset(out, 'x', 500);
    if (write(g_sync[1], "L", 1) != 1)
        return 2;
    tu_sleep(30.0);
    return 0;
}

/* A sender SIGKILLed holding a loan publishes nothing of it and leaks no
 * ring space: the next sender sends at once and its message is the only
 * one delivered. */
static void test_sender_killed_holding_a_loan_loses_nothing(void **state)
{
    (void)state;
    assert_int_equal(mp_pipe_shm(&g_a, &g_b, false, &small_ring), 0);
    assert_int_equal(pipe(g_sync), 0);
    pid_t pid = tu_fork(child_loan_and_hang, NULL);
    char c;
    assert_int_equal(read(g_sync[0], &c, 1), 1);
    kill(pid, SIGKILL);
    assert_int_equal(tu_wait_child(pid, 5.0), -SIGKILL);
    assert_int_equal(mp_conn_buffered(g_a), 0);
    for (int i = 0; i < 20; i++) { /* the whole ring is free again */
        void *out;
        assert_int_equal(mp_conn_loan(g_b, 1500, &out, 2.0), 0);
        memset(out, 'y', 1500);
        assert_int_equal(mp_conn_commit(g_b, out, 1500), 0);
        const void *view;
        size_t len;
        assert_int_equal(mp_conn_recv_view(g_a, &view, &len, 2.0), 0);
        assert_int_equal(len, 1500);
        assert_int_equal(((const unsigned char *)view)[0], 'y');
        assert_int_equal(mp_conn_release(g_a, view), 0);
    }
    assert_int_equal(mp_conn_buffered(g_a), 0);
    close(g_sync[0]);
    close(g_sync[1]);
    mp_conn_free(g_a);
    mp_conn_free(g_b);
}

/* Child: send loans of every size, forever, until killed. */
static int child_loan_stream(void *arg)
{
    (void)arg;
    mp_conn_free(g_a);
    for (uint32_t n = 0;; n++) {
        size_t len = loan_size(n);
        void *out;
        if (mp_conn_loan(g_b, len, &out, 10.0) < 0)
            return 1;
        fill(out, len, n);
        if (mp_conn_commit(g_b, out, len) < 0)
            return 2;
    }
}

/* A sender SIGKILLed at any instant of a stream of loans (some in place,
 * some on the heap and sent in pieces): every message delivered is whole
 * and in order, then MP_EOF or MP_ETRUNCATED, never a torn message. */
static void test_sender_killed_mid_loan_stream_never_tears_a_message(void **state)
{
    (void)state;
    for (int round = 0; round < 5; round++) {
        assert_int_equal(mp_pipe_shm(&g_a, &g_b, false, &small_ring), 0);
        pid_t pid = tu_fork(child_loan_stream, NULL);
        mp_conn_free(g_b);
        double kill_at = tu_now() + 0.01 + 0.013 * round;
        bool killed = false;
        int rc = 0;
        for (uint32_t n = 0;; n++) {
            if (!killed && tu_now() >= kill_at) {
                kill(pid, SIGKILL);
                killed = true;
            }
            const void *view;
            size_t len;
            rc = mp_conn_recv_view(g_a, &view, &len, 10.0);
            if (rc < 0)
                break;
            assert_int_equal(len, loan_size(n));
            assert_true(check(view, len, n));
            assert_int_equal(mp_conn_release(g_a, view), 0);
        }
        assert_true(rc == MP_EOF || rc == MP_ETRUNCATED);
        assert_int_equal(tu_wait_child(pid, 5.0), -SIGKILL);
        mp_conn_free(g_a);
    }
}

/* Child: view a message, tell the parent, wait to be killed. */
static int child_view_and_hang(void *arg)
{
    (void)arg;
    const void *view;
    size_t len;
    if (mp_conn_recv_view(g_a, &view, &len, 5.0) < 0)
        return 1;
    if (write(g_sync[1], "V", 1) != 1)
        return 2;
    tu_sleep(30.0);
    return 0;
}

/* A receiver SIGKILLed holding a view has not consumed the message: the
 * next receiver gets it whole. */
static void test_receiver_killed_holding_a_view_loses_nothing(void **state)
{
    (void)state;
    assert_int_equal(mp_pipe_shm(&g_a, &g_b, false, &small_ring), 0);
    assert_int_equal(pipe(g_sync), 0);
    assert_int_equal(mp_conn_send_bytes(g_b, "viewed", 6), 0);
    pid_t pid = tu_fork(child_view_and_hang, NULL);
    char c;
    assert_int_equal(read(g_sync[0], &c, 1), 1);
    kill(pid, SIGKILL);
    assert_int_equal(tu_wait_child(pid, 5.0), -SIGKILL);
    const void *view;
    size_t len;
    assert_int_equal(mp_conn_recv_view(g_a, &view, &len, 2.0), 0);
    assert_int_equal(len, 6);
    assert_memory_equal(view, "viewed", 6);
    assert_int_equal(mp_conn_release(g_a, view), 0);
    close(g_sync[0]);
    close(g_sync[1]);
    mp_conn_free(g_a);
    mp_conn_free(g_b);
}

/* ---- EPIPE ------------------------------------------------------------------------ */

/* Python's Pipe: send after the reader closed raises BrokenPipeError at
 * once; here the first send (copying or a loan) is -EPIPE, without waiting
 * for the ring to fill. */
static void test_first_send_after_the_reader_closed_gives_epipe(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe_shm(&a, &b, false, NULL), 0);
    assert_int_equal(mp_conn_send_bytes(b, "x", 1), 0);
    mp_conn_free(a);
    TU_ASSERT_STATUS(mp_conn_send_bytes(b, "y", 1), -EPIPE);
    TU_ASSERT_STATUS(mp_conn_send_bytes(b, "z", 1), -EPIPE);
    void *out;
    TU_ASSERT_STATUS(mp_conn_loan(b, 10, &out, 1.0), -EPIPE);
    mp_conn_free(b);
    /* Duplex: closing one end is the other's EPIPE too. */
    assert_int_equal(mp_pipe_shm(&a, &b, true, NULL), 0);
    mp_conn_free(b);
    TU_ASSERT_STATUS(mp_conn_send_bytes(a, "y", 1), -EPIPE);
    mp_conn_free(a);
}

static int child_receive_one(void *arg)
{
    (void)arg;
    mp_conn_free(g_b);
    void *buf;
    size_t len;
    if (mp_conn_recv_bytes(g_a, 0, &buf, &len, 10.0) < 0)
        return 1;
    int ok = len == 5 && memcmp(buf, "still", 5) == 0;
    free(buf);
    mp_conn_free(g_a);
    return ok ? 0 : 2;
}

/* As with a socket, the reader is gone only when every copy is closed: a
 * forked child still holding the end still receives after the parent
 * closed its copy, and the send after the child closed it is -EPIPE. */
static void test_reader_still_held_by_a_child_still_receives(void **state)
{
    (void)state;
    assert_int_equal(mp_pipe_shm(&g_a, &g_b, false, NULL), 0);
    pid_t pid = tu_fork(child_receive_one, NULL);
    mp_conn_free(g_a);
    assert_int_equal(mp_conn_send_bytes(g_b, "still", 5), 0);
    assert_int_equal(tu_wait_child(pid, 20.0), 0);
    TU_ASSERT_STATUS(mp_conn_send_bytes(g_b, "gone", 4), -EPIPE);
    mp_conn_free(g_b);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_loan_and_view_round_trip_every_size_across_fork),
        TU_TEST(test_loans_in_a_child_that_only_sends),
        TU_TEST(test_loan_and_view_fall_back_on_a_socket_pipe),
        TU_TEST(test_view_and_copying_calls_mix_in_order),
        TU_TEST(test_loan_misuse_is_refused_and_loses_nothing),
        TU_TEST(test_loan_bad_arguments),
        TU_TEST(test_sender_killed_holding_a_loan_loses_nothing),
        TU_TEST(test_sender_killed_mid_loan_stream_never_tears_a_message),
        TU_TEST(test_receiver_killed_holding_a_view_loses_nothing),
        TU_TEST(test_first_send_after_the_reader_closed_gives_epipe),
        TU_TEST(test_reader_still_held_by_a_child_still_receives),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
