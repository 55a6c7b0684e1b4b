/*
 * conn: Python's Connection semantics (multiprocessing/connection.py and
 * _TestConnection in Lib/test/_test_multiprocessing.py), across real
 * processes, plus what this library promises beyond Python: receive
 * timeouts, no SIGPIPE deaths, bounded allocation for lying headers, and
 * MP_ETOOSHORT that keeps the message. A child forked in the middle of the
 * stream is tested by test_conn_fork.
 */
#define _DEFAULT_SOURCE /* syscall(SYS_gettid), to find a thread in /proc */
#include "conn_testutil.h"

#include "codec/frame.h"
#include "codec/pickle.h"

#include <mpipc/conn.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <poll.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- duplex and simplex pipes -------------------------------------------- */

struct echo_args {
    mp_conn *mine;
    mp_conn *other;
};

/* Python's _TestConnection._echo: echo every message until "STOP". */
static int echo_child(void *arg)
{
    struct echo_args *a = arg;
    mp_conn_free(a->other);
    for (;;) {
        void *buf;
        size_t len;
        int rc = mp_conn_recv_bytes(a->mine, 0, &buf, &len, T_LONG);
        if (rc == MP_EOF)
            return 0;
        if (rc != 0)
            return 1;
        if (len == 4 && memcmp(buf, "STOP", 4) == 0) {
            free(buf);
            return 0;
        }
        rc = mp_conn_send_bytes(a->mine, buf, len);
        free(buf);
        if (rc != 0)
            return 2;
    }
}

static void test_duplex_pipe_echoes_across_processes(void **state)
{
    (void)state;
    mp_conn *parent, *child;
    assert_int_equal(mp_pipe(&parent, &child, true), 0);
    assert_true(mp_conn_readable(parent) && mp_conn_writable(parent));
    assert_true(mp_conn_readable(child) && mp_conn_writable(child));
    struct echo_args a = {child, parent};
    pid_t pid = tu_fork(echo_child, &a);
    mp_conn_free(child);

    const char *msgs[] = {"hello world", "", "x", "hello worldhello worldhello world"};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(mp_conn_send_bytes(parent, msgs[i], strlen(msgs[i])), 0);
        TU_ASSERT_STATUS(recv_expect(parent, msgs[i], strlen(msgs[i])), 0);
    }
    /* 16 MiB, as in Python's test_connection. */
    size_t big = 16u << 20;
    char *payload = malloc(big);
    assert_non_null(payload);
    for (size_t i = 0; i < big; i++)
        payload[i] = (char)(i * 7 + (i >> 12));
    assert_int_equal(mp_conn_send_bytes(parent, payload, big), 0);
    TU_ASSERT_STATUS(recv_expect(parent, payload, big), 0);
    free(payload);

    assert_int_equal(mp_conn_send_bytes(parent, "STOP", 4), 0);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    /* The child is gone and we closed our copy of its end: EOF, as in Python. */
    void *buf;
    size_t len;
    TU_ASSERT_STATUS(mp_conn_recv_bytes(parent, 0, &buf, &len, T_LONG), MP_EOF);
    TU_ASSERT_STATUS(mp_conn_recv_bytes(parent, 0, &buf, &len, T_LONG), MP_EOF);
    mp_conn_free(parent);
}

static void test_simplex_pipe_first_end_receives_second_sends(void **state)
{
    (void)state;
    mp_conn *reader, *writer;
    assert_int_equal(mp_pipe(&reader, &writer, false), 0);
    assert_true(mp_conn_readable(reader));
    assert_false(mp_conn_writable(reader));
    assert_false(mp_conn_readable(writer));
    assert_true(mp_conn_writable(writer));

    assert_int_equal(mp_conn_send_bytes(writer, "1", 1), 0);
    TU_ASSERT_STATUS(recv_expect(reader, "1", 1), 0);

    /* Python: reader.send -> OSError("connection is read-only"),
     * writer.recv / writer.poll -> OSError("connection is write-only"). */
    TU_ASSERT_STATUS(mp_conn_send_bytes(reader, "2", 1), MP_EREADONLY);
    void *buf;
    size_t len;
    TU_ASSERT_STATUS(mp_conn_recv_bytes(writer, 0, &buf, &len, 0), MP_EWRITEONLY);
    char small[8];
    TU_ASSERT_STATUS(mp_conn_recv_bytes_into(writer, small, sizeof small, 0, NULL, 0),
                     MP_EWRITEONLY);
    TU_ASSERT_STATUS(mp_conn_poll(writer, 0), MP_EWRITEONLY);
    mp_conn_free(reader);
    mp_conn_free(writer);
}

struct sender_args {
    mp_conn *out;
    mp_conn *close_me;
    int count;
    double delay;
};

static int send_numbers_child(void *arg)
{
    struct sender_args *a = arg;
    mp_conn_free(a->close_me);
    if (a->delay > 0)
        tu_sleep(a->delay);
    for (int i = 0; i < a->count; i++) {
        /* Messages of many sizes, including empty ones and ones larger than
         * the read-ahead buffer. */
        size_t len = (size_t)(i % 7 == 0 ? 0 : (i * 997) % 100000);
        char *m = malloc(len + 1);
        if (!m)
            return 3;
        for (size_t j = 0; j < len; j++)
            m[j] = (char)(i + j);
        int rc = mp_conn_send_bytes(a->out, m, len);
        free(m);
        if (rc != 0)
            return 1;
    }
    mp_conn_free(a->out);
    return 0;
}

static void check_numbered_stream(mp_conn *in, int count)
{
    for (int i = 0; i < count; i++) {
        void *buf;
        size_t len;
        TU_ASSERT_STATUS(mp_conn_recv_bytes(in, 0, &buf, &len, T_LONG), 0);
        size_t want = (size_t)(i % 7 == 0 ? 0 : (i * 997) % 100000);
        assert_int_equal(len, want);
        const char *m = buf;
        for (size_t j = 0; j < len; j++)
            if (m[j] != (char)(i + j))
                fail_msg("message %d corrupt at byte %zu", i, j);
        free(buf);
    }
}

static void test_messages_stay_separate_and_in_order(void **state)
{
    (void)state;
    for (int duplex = 0; duplex <= 1; duplex++) {
        mp_conn *in, *out;
        assert_int_equal(mp_pipe(&in, &out, duplex), 0);
        struct sender_args a = {out, in, 300, 0};
        pid_t pid = tu_fork(send_numbers_child, &a);
        mp_conn_free(out);
        check_numbered_stream(in, 300);
        void *buf;
        size_t len;
        TU_ASSERT_STATUS(mp_conn_recv_bytes(in, 0, &buf, &len, T_LONG), MP_EOF);
        assert_int_equal(tu_wait_child(pid, T_LONG), 0);
        mp_conn_free(in);
    }
}

static void test_readahead_off_receives_the_same_stream(void **state)
{
    (void)state;
    mp_conn *in, *out;
    assert_int_equal(mp_pipe(&in, &out, false), 0);
    assert_int_equal(mp_conn_set_readahead(in, false), 0);
    struct sender_args a = {out, in, 100, 0};
    pid_t pid = tu_fork(send_numbers_child, &a);
    mp_conn_free(out);
    check_numbered_stream(in, 100);
    assert_int_equal(mp_conn_buffered(in), 0);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    mp_conn_free(in);
}

/* ---- poll ------------------------------------------------------------------ */

static void test_empty_message_is_legal_and_makes_poll_true(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    assert_int_equal(mp_conn_poll(b, 0), 0);
    assert_int_equal(mp_conn_send_bytes(a, NULL, 0), 0);
    assert_int_equal(mp_conn_poll(b, 0), 1);
    void *buf;
    size_t len = 99;
    assert_int_equal(mp_conn_recv_bytes(b, 0, &buf, &len, 0), 0);
    assert_non_null(buf);
    assert_int_equal(len, 0);
    free(buf);
    assert_int_equal(mp_conn_poll(b, 0), 0);
    mp_conn_free(a);
    mp_conn_free(b);
}

static void test_poll_never_consumes(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    assert_int_equal(mp_conn_send_bytes(a, "one", 3), 0);
    assert_int_equal(mp_conn_send_bytes(a, "two", 3), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(mp_conn_poll(b, 0), 1);
    TU_ASSERT_STATUS(recv_expect(b, "one", 3), 0);
    /* "two" was read ahead with "one": poll must count the buffered message
     * although the descriptor has nothing left. */
    assert_true(mp_conn_buffered(b) > 0);
    assert_int_equal(mp_conn_poll(b, 0), 1);
    assert_int_equal(mp_conn_poll(b, T_LONG), 1);
    TU_ASSERT_STATUS(recv_expect(b, "two", 3), 0);
    assert_int_equal(mp_conn_buffered(b), 0);
    assert_int_equal(mp_conn_poll(b, 0), 0);
    mp_conn_free(a);
    mp_conn_free(b);
}

static void test_poll_timeouts_zero_t_and_forever(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);

    double t0 = tu_now();
    assert_int_equal(mp_conn_poll(b, MP_NOWAIT), 0);
    assert_true(tu_now() - t0 < 0.05);

    t0 = tu_now();
    assert_int_equal(mp_conn_poll(b, T_SHORT), 0);
    double took = tu_now() - t0;
    assert_true(took >= T_SHORT - 0.001);
    assert_true(took < T_SHORT + 0.5);

    /* poll(MP_FOREVER) blocks until a child sends, 0.3 s later. */
    struct sender_args args = {a, b, 1, 0.3};
    t0 = tu_now(); /* the child's 0.3 s start at fork */
    pid_t pid = tu_fork(send_numbers_child, &args);
    assert_int_equal(mp_conn_poll(b, MP_FOREVER), 1);
    took = tu_now() - t0;
    assert_true(took >= 0.2);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    check_numbered_stream(b, 1);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* ---- end of file and dead peers ------------------------------------------- */

static int hold_then_exit_child(void *arg)
{
    (void)arg;
    tu_sleep(0.3);
    return 0; /* its copies of both ends close as it exits */
}

/* The seed's lesson: EOF arrives only once EVERY copy of the other end is
 * closed, in every process. */
static void test_eof_needs_every_copy_of_the_peer_end_closed(void **state)
{
    (void)state;
    for (int duplex = 0; duplex <= 1; duplex++) {
        mp_conn *in, *out;
        assert_int_equal(mp_pipe(&in, &out, duplex), 0);
        pid_t pid = tu_fork(hold_then_exit_child, NULL); /* holds a copy of out */
        mp_conn_free(out);
        /* Our copy is closed but the child's is not: no EOF yet. */
        void *buf;
        size_t len;
        TU_ASSERT_STATUS(mp_conn_recv_bytes(in, 0, &buf, &len, 0.1), MP_ETIMEDOUT);
        double t0 = tu_now();
        TU_ASSERT_STATUS(mp_conn_recv_bytes(in, 0, &buf, &len, T_LONG), MP_EOF);
        assert_true(tu_now() - t0 > 0.05);
        /* poll reports end of file as ready, as Python's does. */
        assert_int_equal(mp_conn_poll(in, 0), 1);
        assert_int_equal(tu_wait_child(pid, T_LONG), 0);
        mp_conn_free(in);
    }
}

static void test_peer_dying_mid_message_is_truncated_not_eof(void **state)
{
    (void)state;
    /* Header says 100 bytes; only 10 arrive; then the writer is gone. Python:
     * OSError("got end of file during message"). */
    for (int duplex = 0; duplex <= 1; duplex++) {
        mp_conn *in, *out;
        assert_int_equal(mp_pipe(&in, &out, duplex), 0);
        unsigned char msg[4 + 10] = {0,   0,   0,   100, 'a', 'b', 'c',
                                     'd', 'e', 'f', 'g', 'h', 'i', 'j'};
        struct forge_args f = {mp_conn_fileno(out), msg, sizeof msg, in};
        pid_t pid = tu_fork(forge_and_exit_child, &f);
        mp_conn_free(out);
        assert_int_equal(tu_wait_child(pid, T_LONG), 0);
        void *buf;
        size_t len;
        TU_ASSERT_STATUS(mp_conn_recv_bytes(in, 0, &buf, &len, T_LONG), MP_ETRUNCATED);
        TU_ASSERT_STATUS(mp_conn_recv_bytes(in, 0, &buf, &len, T_LONG), MP_EOF);
        mp_conn_free(in);
    }
    /* The same inside the header itself: 2 of its 4 bytes. */
    mp_conn *in, *out;
    assert_int_equal(mp_pipe(&in, &out, true), 0);
    assert_int_equal(write(mp_conn_fileno(out), "\0\0", 2), 2);
    mp_conn_free(out);
    void *buf;
    size_t len;
    TU_ASSERT_STATUS(mp_conn_recv_bytes(in, 0, &buf, &len, T_LONG), MP_ETRUNCATED);
    mp_conn_free(in);
}

static void test_large_message_truncated_by_dying_peer(void **state)
{
    (void)state;
    /* Larger than the read-ahead buffer, so the direct-read path sees it. */
    mp_conn *in, *out;
    assert_int_equal(mp_pipe(&in, &out, true), 0);
    size_t part = 300000;
    unsigned char *msg = calloc(1, 4 + part);
    assert_non_null(msg);
    mp__frame_encode(1000000, msg);
    struct forge_args f = {mp_conn_fileno(out), msg, 4 + part, in};
    pid_t pid = tu_fork(forge_and_exit_child, &f);
    mp_conn_free(out);
    char *into = malloc(1000000);
    assert_non_null(into);
    TU_ASSERT_STATUS(mp_conn_recv_bytes_into(in, into, 1000000, 0, NULL, T_LONG), MP_ETRUNCATED);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    free(into);
    free(msg);
    mp_conn_free(in);
}

/* A length header that lies must not make the library allocate for it: a
 * 1 TiB claim followed by 200 KB and a hang-up ends in MP_ETRUNCATED. Had
 * the receiver trusted the header, malloc(1 TiB) would have failed with
 * -ENOMEM here (and aborted under AddressSanitizer). */
static void test_lying_length_header_is_never_trusted_for_allocation(void **state)
{
    (void)state;
    size_t part = 200000;
    unsigned char *msg = calloc(1, MP__FRAME_LONG + part);
    assert_non_null(msg);
    size_t hl = mp__frame_encode(UINT64_C(1) << 40, msg);
    assert_int_equal(hl, MP__FRAME_LONG);
    for (int duplex = 0; duplex <= 1; duplex++) {
        mp_conn *in, *out;
        assert_int_equal(mp_pipe(&in, &out, duplex), 0);
        struct forge_args f = {mp_conn_fileno(out), msg, hl + part, in};
        pid_t pid = tu_fork(forge_and_exit_child, &f);
        mp_conn_free(out);
        void *buf;
        size_t len;
        TU_ASSERT_STATUS(mp_conn_recv_bytes(in, 0, &buf, &len, T_LONG), MP_ETRUNCATED);
        assert_int_equal(tu_wait_child(pid, T_LONG), 0);
        mp_conn_free(in);
    }
    /* And a 2 GiB - 1 short-form claim, the largest CPython's short header
     * can state. */
    mp_conn *in, *out;
    assert_int_equal(mp_pipe(&in, &out, true), 0);
    hl = mp__frame_encode(0x7fffffffu, msg);
    struct forge_args f = {mp_conn_fileno(out), msg, hl + part, in};
    pid_t pid = tu_fork(forge_and_exit_child, &f);
    mp_conn_free(out);
    void *buf;
    size_t len;
    TU_ASSERT_STATUS(mp_conn_recv_bytes(in, 0, &buf, &len, T_LONG), MP_ETRUNCATED);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    mp_conn_free(in);
    free(msg);
}

static void test_negative_length_header_is_corrupt(void **state)
{
    (void)state;
    mp_conn *in, *out;
    assert_int_equal(mp_pipe(&in, &out, true), 0);
    assert_int_equal(write(mp_conn_fileno(out),
                           "\xff\xff\xff\xfe"
                           "abcd",
                           8),
                     8);
    void *buf;
    size_t len;
    TU_ASSERT_STATUS(mp_conn_recv_bytes(in, 0, &buf, &len, T_LONG), MP_EPROTO);
    mp_conn_free(in);
    mp_conn_free(out);
}

/* A corrupt header read ahead behind a good message: the receive after the
 * good one fails at once with MP_EPROTO, so poll must say ready rather than
 * wait on a descriptor that may never have more (a "poll forever, then
 * receive" loop would hang). */
static void test_corrupt_header_read_ahead_makes_poll_ready(void **state)
{
    (void)state;
    mp_conn *in, *out;
    assert_int_equal(mp_pipe(&in, &out, true), 0);
    assert_int_equal(write(mp_conn_fileno(out),
                           "\0\0\0\1x"
                           "\x80\0\0\0",
                           9),
                     9);
    TU_ASSERT_STATUS(recv_expect(in, "x", 1), 0);
    assert_int_equal(mp_conn_buffered(in), 4);
    double t0 = tu_now();
    assert_int_equal(mp_conn_poll(in, T_LONG), 1);
    assert_true(tu_now() - t0 < 1.0);
    void *buf;
    size_t len;
    TU_ASSERT_STATUS(mp_conn_recv_bytes(in, 0, &buf, &len, MP_NOWAIT), MP_EPROTO);
    mp_conn_free(in);
    mp_conn_free(out);
}

static void test_long_form_header_is_accepted_for_any_size(void **state)
{
    (void)state;
    mp_conn *in, *out;
    assert_int_equal(mp_pipe(&in, &out, false), 0);
    const unsigned char msg[] = {0xff, 0xff, 0xff, 0xff, 0,   0,   0,   0,  0,
                                 0,    0,    5,    'h',  'e', 'l', 'l', 'o'};
    assert_int_equal(write(mp_conn_fileno(out), msg, sizeof msg), (ssize_t)sizeof msg);
    TU_ASSERT_STATUS(recv_expect(in, "hello", 5), 0);
    mp_conn_free(in);
    mp_conn_free(out);
}

/* ---- maxlength and recv_bytes_into ---------------------------------------- */

static void test_message_over_maxlength_is_etoolong_and_duplex_end_stops_reading(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    assert_int_equal(mp_conn_send_bytes(a, "0123456789", 10), 0);
    void *buf;
    size_t len;
    TU_ASSERT_STATUS(mp_conn_recv_bytes(b, 9, &buf, &len, T_LONG), MP_ETOOLONG);
    /* Python's _bad_message_length: a writable end becomes write-only. */
    assert_false(mp_conn_readable(b));
    assert_true(mp_conn_writable(b));
    TU_ASSERT_STATUS(mp_conn_recv_bytes(b, 0, &buf, &len, 0), MP_EWRITEONLY);
    TU_ASSERT_STATUS(mp_conn_poll(b, 0), MP_EWRITEONLY);
    assert_int_equal(mp_conn_send_bytes(b, "still", 5), 0);
    TU_ASSERT_STATUS(recv_expect(a, "still", 5), 0);
    mp_conn_free(a);
    mp_conn_free(b);
}

static void test_message_over_maxlength_closes_a_receive_only_end(void **state)
{
    (void)state;
    mp_conn *in, *out;
    assert_int_equal(mp_pipe(&in, &out, false), 0);
    assert_int_equal(mp_conn_send_bytes(out, "0123456789", 10), 0);
    void *buf;
    size_t len;
    TU_ASSERT_STATUS(mp_conn_recv_bytes(in, 10, &buf, &len, T_LONG), 0); /* exactly max: fine */
    free(buf);
    assert_int_equal(mp_conn_send_bytes(out, "0123456789!", 11), 0);
    TU_ASSERT_STATUS(mp_conn_recv_bytes(in, 10, &buf, &len, T_LONG), MP_ETOOLONG);
    /* Python closes a read-only end: later calls report a closed handle, and
     * the writer sees its reader gone. */
    assert_true(mp_conn_closed(in));
    TU_ASSERT_STATUS(mp_conn_recv_bytes(in, 0, &buf, &len, 0), MP_ECLOSED);
    TU_ASSERT_STATUS(mp_conn_fileno(in), MP_ECLOSED);
    TU_ASSERT_STATUS(mp_conn_send_bytes(out, "x", 1), -EPIPE);
    mp_conn_free(in);
    mp_conn_free(out);
}

static void test_recv_bytes_into_places_message_at_offset(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    int arr[4] = {0, 1, 2, 3};
    int buffer[10] = {0};
    assert_int_equal(mp_conn_send_bytes(a, arr, sizeof arr), 0);
    size_t size = 0;
    assert_int_equal(
        mp_conn_recv_bytes_into(b, buffer, sizeof buffer, 3 * sizeof(int), &size, T_LONG),
        (ssize_t)sizeof arr);
    assert_int_equal(size, sizeof arr);
    int expected[10] = {0, 0, 0, 0, 1, 2, 3, 0, 0, 0};
    assert_memory_equal(buffer, expected, sizeof expected);
    /* Python: ValueError("offset too large"). */
    assert_int_equal(mp_conn_recv_bytes_into(b, buffer, sizeof buffer, sizeof buffer + 1, NULL, 0),
                     -EINVAL);
    mp_conn_free(a);
    mp_conn_free(b);
}

static void test_recv_bytes_into_a_null_buffer_only_fits_an_empty_message(void **state)
{
    (void)state;
    /* recv_bytes_into(NULL, cap 0) asks for the size: MP_ETOOSHORT with the
     * size, the message kept - never a silent allocation. */
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    assert_int_equal(mp_conn_send_bytes(a, "hello", 5), 0);
    assert_int_equal(mp_conn_send_bytes(a, "", 0), 0);
    size_t size = 0;
    TU_ASSERT_STATUS(mp_conn_recv_bytes_into(b, NULL, 0, 0, &size, T_LONG), MP_ETOOSHORT);
    assert_int_equal(size, 5);
    TU_ASSERT_STATUS(recv_expect(b, "hello", 5), 0);
    assert_int_equal(mp_conn_recv_bytes_into(b, NULL, 0, 0, &size, T_LONG), 0);
    assert_int_equal(size, 0);
    mp_conn_free(a);
    mp_conn_free(b);
}

static void check_too_short_keeps_message(size_t msg_len)
{
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    char *msg = malloc(msg_len);
    assert_non_null(msg);
    for (size_t i = 0; i < msg_len; i++)
        msg[i] = (char)('a' + i % 26);
    assert_int_equal(mp_conn_send_bytes(a, msg, msg_len), 0);
    char small[40];
    size_t size = 0;
    TU_ASSERT_STATUS(mp_conn_recv_bytes_into(b, small, sizeof small, 0, &size, T_LONG),
                     MP_ETOOSHORT);
    assert_int_equal(size, msg_len);
    /* Unlike Python, nothing was lost: the next receive gets it whole. */
    TU_ASSERT_STATUS(mp_conn_recv_bytes_into(b, small, sizeof small, 0, &size, T_LONG),
                     MP_ETOOSHORT);
    TU_ASSERT_STATUS(recv_expect(b, msg, msg_len), 0);
    free(msg);
    mp_conn_free(a);
    mp_conn_free(b);
}

struct big_send_args {
    mp_conn *out;
    const char *msg;
    size_t len;
    int times;
};

static int big_send_child(void *arg)
{
    struct big_send_args *s = arg;
    for (int i = 0; i < s->times; i++)
        if (mp_conn_send_bytes(s->out, s->msg, s->len) != 0)
            return 1;
    return 0;
}

static void test_recv_into_too_short_keeps_the_message_for_the_next_call(void **state)
{
    (void)state;
    check_too_short_keeps_message(400); /* "hello world" * 10 in Python's test */

    /* And a message larger than the read-ahead buffer, sent by a child. */
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    size_t n = 1000000;
    char *msg = malloc(n);
    assert_non_null(msg);
    for (size_t i = 0; i < n; i++)
        msg[i] = (char)(i % 251);
    struct big_send_args s = {a, msg, n, 2};
    pid_t pid = tu_fork(big_send_child, &s);
    char small[40];
    size_t size = 0;
    TU_ASSERT_STATUS(mp_conn_recv_bytes_into(b, small, sizeof small, 0, &size, T_LONG),
                     MP_ETOOSHORT);
    assert_int_equal(size, n);
    char *into = malloc(n);
    assert_non_null(into);
    assert_int_equal(mp_conn_recv_bytes_into(b, into, n, 0, &size, T_LONG), (ssize_t)n);
    assert_memory_equal(into, msg, n);
    TU_ASSERT_STATUS(recv_expect(b, msg, n), 0);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    free(into);
    free(msg);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* ---- timeouts and partial messages ---------------------------------------- */

static void test_recv_timeout_returns_after_about_t(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, false), 0);
    void *buf;
    size_t len;
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_conn_recv_bytes(a, 0, &buf, &len, T_SHORT), MP_ETIMEDOUT);
    double took = tu_now() - t0;
    assert_true(took >= T_SHORT - 0.001 && took < T_SHORT + 0.5);
    t0 = tu_now();
    TU_ASSERT_STATUS(mp_conn_recv_bytes(a, 0, &buf, &len, MP_NOWAIT), MP_ETIMEDOUT);
    assert_true(tu_now() - t0 < 0.05);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* A message that has only partly arrived when the timeout passes is kept:
 * the next receive continues it - small and large messages, into a fresh
 * buffer and into the caller's. */
static void test_partial_message_survives_a_timeout(void **state)
{
    (void)state;
    const size_t sizes[] = {1000, 500000};
    for (int combo = 0; combo < 8; combo++) {
        size_t n = sizes[combo & 1];
        int duplex = (combo >> 1) & 1;
        int into = (combo >> 2) & 1;
        mp_conn *in, *out;
        assert_int_equal(mp_pipe(&in, &out, duplex), 0);
        unsigned char *frame = malloc(4 + n);
        unsigned char *dest = malloc(n);
        assert_non_null(frame);
        assert_non_null(dest);
        mp__frame_encode(n, frame);
        for (size_t i = 0; i < n; i++)
            frame[4 + i] = (unsigned char)(i * 13);
        size_t first = 4 + n / 3;
        struct forge_args f1 = {mp_conn_fileno(out), frame, first, in};
        pid_t pid = tu_fork(forge_and_exit_child, &f1);
        void *buf;
        size_t len;
        /* The first third arrives; each receive times out holding what came
         * so far. Keep receiving until the writer is done (a third of the
         * large message does not fit the pipe, so it needs a reader). */
        int status;
        double give_up = tu_now() + T_LONG;
        do {
            if (into)
                TU_ASSERT_STATUS(mp_conn_recv_bytes_into(in, dest, n, 0, NULL, 0.05), MP_ETIMEDOUT);
            else
                TU_ASSERT_STATUS(mp_conn_recv_bytes(in, 0, &buf, &len, 0.05), MP_ETIMEDOUT);
            status = tu_poll_child(pid);
        } while (status == TU_RUNNING && tu_now() < give_up);
        assert_int_equal(status, 0);
        TU_ASSERT_STATUS(mp_conn_recv_bytes(in, 0, &buf, &len, 0.05), MP_ETIMEDOUT);
        assert_true(mp_conn_buffered(in) > 0);
        /* The start of a message is not a message: poll waits for more. */
        assert_int_equal(mp_conn_poll(in, 0), 0);
        struct forge_args f2 = {mp_conn_fileno(out), frame + first, 4 + n - first, in};
        pid = tu_fork(forge_and_exit_child, &f2);
        if (into) {
            memset(dest, 0, n);
            assert_int_equal(mp_conn_recv_bytes_into(in, dest, n, 0, NULL, T_LONG), (ssize_t)n);
            assert_memory_equal(dest, frame + 4, n);
        } else {
            TU_ASSERT_STATUS(mp_conn_recv_bytes(in, 0, &buf, &len, T_LONG), 0);
            assert_int_equal(len, n);
            assert_memory_equal(buf, frame + 4, n);
            free(buf);
        }
        assert_int_equal(tu_wait_child(pid, T_LONG), 0);
        free(frame);
        free(dest);
        mp_conn_free(in);
        mp_conn_free(out);
    }
}

/* Python's poll() says whether data is available; a partial message held in
 * the read-ahead buffer (or a large message in progress) after a receive
 * timed out is not a message. poll(t) and wait(t) must sleep t on the
 * descriptor and say 0, then say 1 once the rest arrives - otherwise "poll
 * forever, then receive" loops spin. Small and large messages, a cut 4-byte
 * header and a cut 12-byte one; pipe and socket; recv_bytes and _into. */
static void test_poll_waits_after_a_receive_timed_out_mid_message(void **state)
{
    (void)state;
    const struct {
        size_t size;  /* payload */
        bool longhdr; /* 12-byte header */
        size_t first; /* bytes of the frame that arrive before the timeout */
        int duplex;
        int into; /* receive by recv_bytes_into */
    } cases[] = {
        {1000, false, 4 + 300, 1, 0},
        {1000, false, 2, 0, 1},
        {1000, true, 6, 1, 1},
        {1000, true, 12 + 10, 0, 0},
        {500000, false, 4 + 100000, 0, 0},
        {500000, false, 4 + 100000, 1, 1},
        {500000, true, 12 + 70000, 1, 0},
        {500000, true, 12 + 70000, 0, 1},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int duplex = cases[k].duplex, into = cases[k].into;
        size_t n = cases[k].size, hl = cases[k].longhdr ? MP__FRAME_LONG : MP__FRAME_SHORT;
        unsigned char *frame = malloc(hl + n);
        unsigned char *dest = malloc(n);
        assert_non_null(frame);
        assert_non_null(dest);
        put_header(frame, n, cases[k].longhdr);
        for (size_t i = 0; i < n; i++)
            frame[hl + i] = (unsigned char)(i * 13 + k);
        mp_conn *in, *out;
        assert_int_equal(mp_pipe(&in, &out, duplex), 0);
        size_t first = cases[k].first;
        struct forge_args f1 = {mp_conn_fileno(out), frame, first, in};
        pid_t pid = tu_fork(forge_and_exit_child, &f1);
        int status;
        double give_up = tu_now() + T_LONG;
        do {
            TU_ASSERT_STATUS(recv_one(in, into, dest, n, 0.05), MP_ETIMEDOUT);
            status = tu_poll_child(pid);
        } while (status == TU_RUNNING && tu_now() < give_up);
        assert_int_equal(status, 0);
        TU_ASSERT_STATUS(recv_one(in, into, dest, n, 0.05), MP_ETIMEDOUT);
        assert_true(mp_conn_buffered(in) > 0); /* the start is held... */

        /* ...but nothing is ready: poll and wait sleep their timeout (0.1 s:
         * a spinning poll would say 0 at once). */
        assert_int_equal(mp_conn_poll(in, MP_NOWAIT), 0);
        double t0 = tu_now();
        assert_int_equal(mp_conn_poll(in, 0.1), 0);
        double took = tu_now() - t0;
        assert_true(took >= 0.099 && took < 0.1 + 1.5);
        mp_wait_item item = {.conn = in, .fd = -1, .ready = 7};
        t0 = tu_now();
        assert_int_equal(mp_wait(&item, 1, 0.1), 0);
        took = tu_now() - t0;
        assert_true(took >= 0.099 && took < 0.1 + 1.5);
        assert_int_equal(item.ready, 0);

        /* The rest arrives: ready, and the receive gets the message. */
        struct forge_args f2 = {mp_conn_fileno(out), frame + first, hl + n - first, in};
        pid = tu_fork(forge_and_exit_child, &f2);
        if (duplex)
            assert_int_equal(mp_conn_poll(in, T_LONG), 1);
        else
            assert_int_equal(mp_wait(&item, 1, T_LONG), 1);
        memset(dest, 0, n);
        TU_ASSERT_STATUS(recv_one(in, into, dest, n, T_LONG), 0);
        assert_memory_equal(dest, frame + hl, n);
        assert_int_equal(tu_wait_child(pid, T_LONG), 0);
        assert_int_equal(mp_conn_poll(in, MP_NOWAIT), 0);
        free(frame);
        free(dest);
        mp_conn_free(in);
        mp_conn_free(out);
    }
}

static volatile sig_atomic_t signals_seen;

static void count_signal(int sig)
{
    (void)sig;
    signals_seen++;
}

struct pester_args {
    pid_t target;
    mp_conn *out;
    double send_after;
};

static int pester_then_send_child(void *arg)
{
    struct pester_args *p = arg;
    double end = tu_now() + p->send_after;
    while (tu_now() < end) {
        kill(p->target, SIGUSR1);
        tu_sleep(0.005);
    }
    return mp_conn_send_bytes(p->out, "late", 4) == 0 ? 0 : 1;
}

/* EINTR from a handler installed without SA_RESTART neither fails a blocked
 * receive nor stretches its deadline. */
static void test_signals_do_not_break_blocking_calls(void **state)
{
    (void)state;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = count_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: every signal interrupts the syscall */
    assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);

    for (int duplex = 0; duplex <= 1; duplex++) {
        mp_conn *in, *out;
        assert_int_equal(mp_pipe(&in, &out, duplex), 0);
        signals_seen = 0;
        struct pester_args p = {getpid(), out, 0.3};
        pid_t pid = tu_fork(pester_then_send_child, &p);
        TU_ASSERT_STATUS(recv_expect(in, "late", 4), 0);
        assert_true(signals_seen > 0);
        assert_int_equal(tu_wait_child(pid, T_LONG), 0);

        /* A timed wait under a storm of signals still ends at its deadline. */
        p.send_after = 0.6;
        signals_seen = 0;
        pid = tu_fork(pester_then_send_child, &p);
        double t0 = tu_now();
        TU_ASSERT_STATUS(mp_conn_poll(in, 0.25), 0);
        double took = tu_now() - t0;
        assert_true(took >= 0.249 && took < 0.55);
        void *buf;
        size_t len;
        t0 = tu_now();
        TU_ASSERT_STATUS(mp_conn_recv_bytes(in, 0, &buf, &len, 0.1), MP_ETIMEDOUT);
        took = tu_now() - t0;
        assert_true(took >= 0.099 && took < 0.4);
        assert_true(signals_seen > 0);
        TU_ASSERT_STATUS(recv_expect(in, "late", 4), 0);
        assert_int_equal(tu_wait_child(pid, T_LONG), 0);
        mp_conn_free(in);
        mp_conn_free(out);
    }
    sigaction(SIGUSR1, &old, NULL);
}

/* ---- sending to a peer that is gone ---------------------------------------- */

static int send_to_closed_peer_child(void *arg)
{
    int duplex = *(int *)arg;
    /* The default disposition: SIGPIPE would kill this process. */
    signal(SIGPIPE, SIG_DFL);
    sigset_t none, mask_before, mask_after, pending;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    sigprocmask(SIG_SETMASK, NULL, &mask_before);

    mp_conn *a, *b;
    if (mp_pipe(&a, &b, duplex) != 0)
        return 10;
    mp_conn *reader = a, *writer = b;
    mp_conn_free(reader);
    int rc = mp_conn_send_bytes(writer, "into the void", 13);
    if (rc != -EPIPE && rc != -ECONNRESET)
        return 11;
    /* Large messages too (several writes). */
    static char big[1 << 20];
    rc = mp_conn_send_bytes(writer, big, sizeof big);
    if (rc != -EPIPE && rc != -ECONNRESET)
        return 12;
    sigprocmask(SIG_SETMASK, NULL, &mask_after);
    if (sigismember(&mask_after, SIGPIPE) != sigismember(&mask_before, SIGPIPE))
        return 13; /* the thread's mask must be restored */
    sigpending(&pending);
    if (sigismember(&pending, SIGPIPE))
        return 14; /* no stray SIGPIPE left behind */
    struct sigaction sa;
    sigaction(SIGPIPE, NULL, &sa);
    if (sa.sa_handler != SIG_DFL)
        return 15; /* the disposition was not touched */
    mp_conn_free(writer);
    return 0;
}

static int send_to_closed_peer_blocked_child(void *arg)
{
    (void)arg;
    /* SIGPIPE blocked by the application and already pending: the library
     * must leave that pending signal alone. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigprocmask(SIG_BLOCK, &set, NULL);
    raise(SIGPIPE);
    mp_conn *r, *w;
    if (mp_pipe(&r, &w, false) != 0)
        return 10;
    mp_conn_free(r);
    if (mp_conn_send_bytes(w, "x", 1) != -EPIPE)
        return 11;
    sigset_t pending;
    sigpending(&pending);
    if (!sigismember(&pending, SIGPIPE))
        return 12;
    mp_conn_free(w);
    return 0;
}

static void test_send_to_a_gone_peer_returns_epipe_and_the_process_survives(void **state)
{
    (void)state;
    for (int duplex = 0; duplex <= 1; duplex++) {
        pid_t pid = tu_fork(send_to_closed_peer_child, &duplex);
        assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    }
    pid_t pid = tu_fork(send_to_closed_peer_blocked_child, NULL);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
}

/* ---- close ----------------------------------------------------------------- */

static void test_closed_connection_reports_eclosed_and_close_twice_is_fine(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    assert_true(mp_conn_fileno(a) >= 0);
    assert_false(mp_conn_closed(a));
    assert_int_equal(mp_conn_close(a), 0);
    assert_true(mp_conn_closed(a));
    assert_int_equal(mp_conn_close(a), 0);
    void *buf;
    size_t len;
    char small[4];
    TU_ASSERT_STATUS(mp_conn_send_bytes(a, "x", 1), MP_ECLOSED);
    TU_ASSERT_STATUS(mp_conn_recv_bytes(a, 0, &buf, &len, 0), MP_ECLOSED);
    TU_ASSERT_STATUS(mp_conn_recv_bytes_into(a, small, 4, 0, NULL, 0), MP_ECLOSED);
    TU_ASSERT_STATUS(mp_conn_poll(a, 0), MP_ECLOSED);
    TU_ASSERT_STATUS(mp_conn_fileno(a), MP_ECLOSED);
    TU_ASSERT_STATUS(mp_conn_set_readahead(a, false), MP_ECLOSED);
    /* The peer sees EOF. */
    TU_ASSERT_STATUS(mp_conn_recv_bytes(b, 0, &buf, &len, T_LONG), MP_EOF);
    mp_conn_free(a);
    mp_conn_free(b);
    mp_conn_free(NULL);
}

static void test_invalid_arguments_are_einval(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(NULL, &b, true), -EINVAL);
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    void *buf;
    size_t len;
    assert_int_equal(mp_conn_send_bytes(a, NULL, 3), -EINVAL);
    assert_int_equal(mp_conn_send_bytes(NULL, "x", 1), -EINVAL);
    assert_int_equal(mp_conn_recv_bytes(a, 0, NULL, &len, 0), -EINVAL);
    assert_int_equal(mp_conn_recv_bytes(NULL, 0, &buf, &len, 0), -EINVAL);
    assert_int_equal(mp_conn_poll(NULL, 0), -EINVAL);
    mp_conn *c = (mp_conn *)&c;
    assert_int_equal(mp_conn_from_fd(&c, -1, true, true), -EINVAL);
    assert_null(c);
    assert_int_equal(mp_conn_from_fd(&c, 0, false, false), -EINVAL);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* ---- descriptors ------------------------------------------------------------ */

static void test_from_fd_wraps_an_inherited_descriptor(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    mp_conn *r, *w;
    assert_int_equal(mp_conn_from_fd(&r, fds[0], true, false), 0);
    assert_int_equal(mp_conn_from_fd(&w, fds[1], false, true), 0);
    assert_int_equal(mp_conn_fileno(r), fds[0]);
    /* The library makes what it owns close-on-exec. */
    assert_true(fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
    assert_int_equal(mp_conn_send_bytes(w, "wrapped", 7), 0);
    TU_ASSERT_STATUS(recv_expect(r, "wrapped", 7), 0);
    mp_conn_free(r);
    mp_conn_free(w);
    assert_false(fcntl(fds[0], F_GETFD) >= 0); /* the connection owned it */

    /* A descriptor that is not open. */
    mp_conn *c;
    assert_int_equal(mp_conn_from_fd(&c, fds[0], true, true), -EBADF);
    assert_null(c);
}

static void test_pipe_descriptors_are_close_on_exec(void **state)
{
    (void)state;
    for (int duplex = 0; duplex <= 1; duplex++) {
        mp_conn *a, *b;
        assert_int_equal(mp_pipe(&a, &b, duplex), 0);
        assert_true(fcntl(mp_conn_fileno(a), F_GETFD) & FD_CLOEXEC);
        assert_true(fcntl(mp_conn_fileno(b), F_GETFD) & FD_CLOEXEC);
        mp_conn_free(a);
        mp_conn_free(b);
    }
}

/* ---- many senders on one end ----------------------------------------------- */

#define SHARED_SENDERS 5
#define SHARED_MSGS    200

struct shared_sender_args {
    mp_conn *out;
    int id;
    size_t len;
};

static int shared_sender_child(void *arg)
{
    struct shared_sender_args *s = arg;
    char msg[4096];
    for (int i = 0; i < SHARED_MSGS; i++) {
        memset(msg, 'A' + s->id, s->len);
        snprintf(msg, s->len, "%d:%d:", s->id, i);
        if (mp_conn_send_bytes(s->out, msg, s->len) != 0)
            return 1;
    }
    return 0;
}

/* The seed's five children sending on one end: each send is one write, so
 * messages up to PIPE_BUF (pipe) never interleave, and every message arrives
 * whole, in per-sender order. */
static void test_several_processes_share_one_sending_end(void **state)
{
    (void)state;
    for (int duplex = 0; duplex <= 1; duplex++) {
        mp_conn *in, *out;
        assert_int_equal(mp_pipe(&in, &out, duplex), 0);
        size_t len = 4096 - MP__FRAME_SHORT; /* header + payload = PIPE_BUF */
        pid_t pids[SHARED_SENDERS];
        struct shared_sender_args args[SHARED_SENDERS];
        for (int k = 0; k < SHARED_SENDERS; k++) {
            args[k] = (struct shared_sender_args){out, k, len};
            pids[k] = tu_fork(shared_sender_child, &args[k]);
        }
        mp_conn_free(out);
        int next[SHARED_SENDERS] = {0};
        for (int m = 0; m < SHARED_SENDERS * SHARED_MSGS; m++) {
            void *buf;
            size_t got;
            TU_ASSERT_STATUS(mp_conn_recv_bytes(in, 0, &buf, &got, T_LONG), 0);
            assert_int_equal(got, len);
            int id = -1, seq = -1;
            assert_int_equal(sscanf(buf, "%d:%d:", &id, &seq), 2);
            assert_true(id >= 0 && id < SHARED_SENDERS);
            assert_int_equal(seq, next[id]);
            next[id]++;
            const char *p = buf;
            for (size_t j = strlen(p) + 1; j < got; j++)
                if (p[j] != 'A' + id)
                    fail_msg("message %d:%d interleaved at byte %zu", id, seq, j);
            free(buf);
        }
        void *buf;
        size_t got;
        TU_ASSERT_STATUS(mp_conn_recv_bytes(in, 0, &buf, &got, T_LONG), MP_EOF);
        for (int k = 0; k < SHARED_SENDERS; k++)
            assert_int_equal(tu_wait_child(pids[k], T_LONG), 0);
        mp_conn_free(in);
    }
}

/* Threads of one process are serialised by the handle at any size. */
struct thread_sender_args {
    mp_conn *out;
    int id;
};

static void *thread_sender(void *arg)
{
    struct thread_sender_args *t = arg;
    size_t len = 100000;
    char *msg = malloc(len);
    if (!msg)
        return (void *)1;
    memset(msg, 'a' + t->id, len);
    for (int i = 0; i < 20; i++)
        if (mp_conn_send_bytes(t->out, msg, len) != 0) {
            free(msg);
            return (void *)1;
        }
    free(msg);
    return NULL;
}

static void test_threads_sharing_one_end_never_interleave(void **state)
{
    (void)state;
    mp_conn *in, *out;
    assert_int_equal(mp_pipe(&in, &out, true), 0);
    pthread_t th[4];
    struct thread_sender_args args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct thread_sender_args){out, i};
        assert_int_equal(pthread_create(&th[i], NULL, thread_sender, &args[i]), 0);
    }
    for (int m = 0; m < 80; m++) {
        void *buf;
        size_t len;
        TU_ASSERT_STATUS(mp_conn_recv_bytes(in, 0, &buf, &len, T_LONG), 0);
        assert_int_equal(len, 100000);
        const char *p = buf;
        for (size_t j = 1; j < len; j++)
            if (p[j] != p[0])
                fail_msg("message %d interleaved at byte %zu", m, j);
        free(buf);
    }
    for (int i = 0; i < 4; i++) {
        void *ret;
        pthread_join(th[i], &ret);
        assert_null(ret);
    }
    mp_conn_free(in);
    mp_conn_free(out);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_duplex_pipe_echoes_across_processes),
        TU_TEST(test_simplex_pipe_first_end_receives_second_sends),
        TU_TEST(test_messages_stay_separate_and_in_order),
        TU_TEST(test_readahead_off_receives_the_same_stream),
        TU_TEST(test_empty_message_is_legal_and_makes_poll_true),
        TU_TEST(test_poll_never_consumes),
        TU_TEST(test_poll_timeouts_zero_t_and_forever),
        TU_TEST(test_eof_needs_every_copy_of_the_peer_end_closed),
        TU_TEST(test_peer_dying_mid_message_is_truncated_not_eof),
        TU_TEST(test_large_message_truncated_by_dying_peer),
        TU_TEST(test_lying_length_header_is_never_trusted_for_allocation),
        TU_TEST(test_negative_length_header_is_corrupt),
        TU_TEST(test_corrupt_header_read_ahead_makes_poll_ready),
        TU_TEST(test_long_form_header_is_accepted_for_any_size),
        TU_TEST(test_message_over_maxlength_is_etoolong_and_duplex_end_stops_reading),
        TU_TEST(test_message_over_maxlength_closes_a_receive_only_end),
        TU_TEST(test_recv_bytes_into_places_message_at_offset),
        TU_TEST(test_recv_bytes_into_a_null_buffer_only_fits_an_empty_message),
        TU_TEST(test_recv_into_too_short_keeps_the_message_for_the_next_call),
        TU_TEST(test_recv_timeout_returns_after_about_t),
        TU_TEST(test_partial_message_survives_a_timeout),
        TU_TEST(test_poll_waits_after_a_receive_timed_out_mid_message),
        TU_TEST(test_signals_do_not_break_blocking_calls),
        TU_TEST(test_send_to_a_gone_peer_returns_epipe_and_the_process_survives),
        TU_TEST(test_closed_connection_reports_eclosed_and_close_twice_is_fine),
        TU_TEST(test_invalid_arguments_are_einval),
        TU_TEST(test_from_fd_wraps_an_inherited_descriptor),
        TU_TEST(test_pipe_descriptors_are_close_on_exec),
        TU_TEST(test_several_processes_share_one_sending_end),
        TU_TEST(test_threads_sharing_one_end_never_interleave),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
