/*
 * reduction_readahead: handles mixed with messages on an end that reads
 * ahead (the default): a receive that reads past a message onto a handle
 * keeps its descriptor for mp_recv_handle, from C peers and from python3
 * (and the 3.12+ interpreters);
 * descriptors on ordinary messages are closed as they arrive; a child
 * forked while a handle is kept does not get it.
 */
#include "reduction_testutil.h"

#include <mpipc/conn.h>
#include <mpipc/reduction.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- handles between messages ------------------------------------------------------ */

/* Handles between messages, read-ahead off and on: each arrives, also
 * when a message receive meets the handle first (it refuses, MP_EPROTO,
 * and keeps it). With read-ahead on, a receive that read past a handle
 * kept its descriptor; the handle is then ready to poll, a message receive
 * refuses it (MP_EPROTO, nothing consumed), and recv_handle refuses a
 * message (MP_EPROTO, nothing lost). */
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
    /* A message receive that meets a handle (read-ahead off reads only the
     * header's bytes, and the kernel stops after the handle's): kept. */
    assert_int_equal(mp_send_handle(b, fd, 0), 0);
    assert_int_equal(send_str(b, "behind"), 0);
    void *msg = NULL;
    size_t msg_len = 0;
    TU_ASSERT_STATUS(mp_conn_recv_bytes(a, 0, &msg, &msg_len, T_LONG), MP_EPROTO);
    ASSERT_MSG_HAS(MP_EPROTO, "receive it with mp_recv_handle");
    assert_int_equal(mp_recv_handle(a, &got, T_LONG), 0);
    assert_int_equal(file_has(got, "between"), 0);
    close(got);
    assert_int_equal(expect_bytes(a, "behind"), 0);

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

/* python3 (and each 3.12+ interpreter) sends handles with
 * reduction.send_handle between conn.send_bytes calls at random places; C,
 * with read-ahead on, gets every one of each. */
static void handles_from_python_case(const char *py, unsigned seed)
{
    char seq[SEQ_LEN + 1];
    make_sequence(seq, seed);
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    int pyfd = mp_conn_fileno(b);
    char arg[16];
    snprintf(arg, sizeof arg, "%d", pyfd);
    const char *args[] = {arg, seq, NULL};
    pid_t pid = tu_spawn_python_as(py, PY_SEND_SEQUENCE, args, &pyfd, 1);
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

static void test_handles_at_random_places_from_python(void **state)
{
    (void)state;
    unsigned seed = test_seed();
    const char *py;
    for (size_t pyi = 0; (py = tu_python_at(pyi)) != NULL; pyi++)
        handles_from_python_case(py, seed);
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

/* ---- hostile peers and forks --------------------------------------------------------- */

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

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_handles_between_messages_arrive_with_readahead_on_and_off),
        TU_TEST(test_handles_at_random_places_from_a_c_peer),
        TU_TEST(test_handles_at_random_places_from_python),
        TU_TEST(test_recv_handle_during_a_partial_message_is_estate),
        TU_TEST(test_descriptors_on_ordinary_messages_leak_none),
        TU_TEST(test_kept_handle_passed_over_is_closed),
        TU_TEST(test_child_forked_with_a_kept_handle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
