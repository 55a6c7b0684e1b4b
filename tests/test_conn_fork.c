/*
 * conn_fork: a Connection shared with a child forked at any moment of the
 * stream (the fork fixup of src/conn/conn.c): the child never sees what its
 * parent read ahead, never receives a message it did not get whole, and
 * resumes at the next frame boundary. The rest of conn.c is tested by
 * test_conn.
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

/* ---- fork and read-ahead --------------------------------------------------- */

struct readahead_child_args {
    mp_conn *in;
};

static int child_must_not_see_parents_buffer(void *arg)
{
    struct readahead_child_args *a = arg;
    if (mp_conn_buffered(a->in) != 0)
        return 1;
    void *buf;
    size_t len;
    /* B and C are in the parent's buffer, not in the kernel: nothing for us. */
    int rc = mp_conn_recv_bytes(a->in, 0, &buf, &len, 0.2);
    if (rc == 0) {
        free(buf);
        return 2;
    }
    return rc == MP_ETIMEDOUT ? 0 : 3;
}

static void test_child_forked_after_read_ahead_never_sees_parents_buffer(void **state)
{
    (void)state;
    mp_conn *in, *out;
    assert_int_equal(mp_pipe(&in, &out, true), 0);
    assert_int_equal(mp_conn_send_bytes(out, "A", 1), 0);
    assert_int_equal(mp_conn_send_bytes(out, "B", 1), 0);
    assert_int_equal(mp_conn_send_bytes(out, "C", 1), 0);
    TU_ASSERT_STATUS(recv_expect(in, "A", 1), 0);
    assert_true(mp_conn_buffered(in) > 0); /* B and C were read ahead */
    struct readahead_child_args a = {in};
    pid_t pid = tu_fork(child_must_not_see_parents_buffer, &a);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    TU_ASSERT_STATUS(recv_expect(in, "B", 1), 0);
    TU_ASSERT_STATUS(recv_expect(in, "C", 1), 0);
    mp_conn_free(in);
    mp_conn_free(out);
}

static int child_takes_second_message(void *arg)
{
    struct readahead_child_args *a = arg;
    return recv_expect(a->in, "second", 6) == 0 ? 0 : 1;
}

static void test_readahead_off_leaves_later_messages_for_other_processes(void **state)
{
    (void)state;
    mp_conn *in, *out;
    assert_int_equal(mp_pipe(&in, &out, false), 0);
    assert_int_equal(mp_conn_set_readahead(in, false), 0);
    assert_int_equal(mp_conn_send_bytes(out, "first", 5), 0);
    assert_int_equal(mp_conn_send_bytes(out, "second", 6), 0);
    TU_ASSERT_STATUS(recv_expect(in, "first", 5), 0);
    assert_int_equal(mp_conn_buffered(in), 0);
    struct readahead_child_args a = {in};
    pid_t pid = tu_fork(child_takes_second_message, &a);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    void *buf;
    size_t len;
    TU_ASSERT_STATUS(mp_conn_recv_bytes(in, 0, &buf, &len, 0.05), MP_ETIMEDOUT);
    mp_conn_free(in);
    mp_conn_free(out);
}

/* ---- a child forked while its parent is inside a message -------------------
 *
 * conn.h: whole messages the parent read ahead are the parent's; a message
 * the parent had begun is discarded by the child, which resumes at the next
 * frame boundary. A child never receives a message nobody sent.
 */

/* The parent's first read with read-ahead takes this many bytes when at
 * least as many are queued (the read-ahead buffer's size). */
#define READ_AHEAD ((size_t)64 * 1024)

/* Wait until at least n bytes are queued for reading on fd. */
static bool wait_queued(int fd, size_t n)
{
    double end = tu_now() + T_LONG;
    for (;;) {
        int q = 0;
        if (ioctl(fd, FIONREAD, &q) == 0 && q >= 0 && (size_t)q >= n)
            return true;
        if (tu_now() > end)
            return false;
        tu_sleep(0.001);
    }
}

/* Payload byte j of message `seed`: varied (so a payload byte read as a
 * header gives an arbitrary length), or all zeros for seed 0. */
static unsigned char pattern(unsigned seed, size_t j)
{
    return seed ? (unsigned char)(seed * 37 + j * 7 + (j >> 9)) : 0;
}

static unsigned char *pattern_bytes(unsigned seed, size_t n)
{
    unsigned char *p = malloc(n ? n : 1);
    assert_non_null(p);
    for (size_t j = 0; j < n; j++)
        p[j] = pattern(seed, j);
    return p;
}

struct stream {
    unsigned char *p;
    size_t len;
};

/* Append one frame, in the 12-byte form when longhdr (any size may use it). */
static void append_frame(struct stream *s, const void *payload, size_t n, bool longhdr)
{
    size_t hl = longhdr ? MP__FRAME_LONG : MP__FRAME_SHORT;
    s->p = realloc(s->p, s->len + hl + n);
    assert_non_null(s->p);
    unsigned char *h = s->p + s->len;
    put_header(h, n, longhdr);
    if (n)
        memcpy(h + hl, payload, n);
    s->len += hl + n;
}

/* The pickle of bytes(pattern(seed, 0..n)), for the children that use
 * mp_conn_recv. */
static unsigned char *pickled_pattern(unsigned seed, size_t n, size_t *len)
{
    unsigned char *raw = pattern_bytes(seed, n);
    mp_obj *o = mp_obj_bytes(raw, n);
    assert_non_null(o);
    unsigned char *out;
    assert_int_equal(mp__pickle_dumps(o, &out, len), 0);
    mp_obj_free(o);
    free(raw);
    return out;
}

enum child_api { API_BYTES, API_INTO, API_NO_READAHEAD, API_VALUES, API_COUNT };

struct expect {
    unsigned seed;
    size_t size;
};

struct skip_child_args {
    mp_conn *in;
    enum child_api api;
    const struct expect *want;
    size_t nwant;
    double first_timeout; /* for the first receive */
    int go_fd;            /* >= 0: poll(0.3) must say 0, then write a byte here */
    int wait_fd;          /* >= 0: wait for a byte here before receiving */
};

/* Receive exactly the expected messages, then nothing. Exit status: 0, or
 * which check failed. */
static int skip_child(void *arg)
{
    struct skip_child_args *a = arg;
    if (a->api == API_NO_READAHEAD && mp_conn_set_readahead(a->in, false) != 0)
        return 1;
    if (a->go_fd >= 0) {
        /* Nothing of the child's own is buffered, and a message the parent
         * had begun is not ready: poll waits on the descriptor. */
        if (mp_conn_buffered(a->in) != 0)
            return 2;
        double t0 = tu_now();
        if (mp_conn_poll(a->in, 0.1) != 0 || tu_now() - t0 < 0.099)
            return 3;
        if (write(a->go_fd, "g", 1) != 1)
            return 4;
    }
    if (a->wait_fd >= 0) {
        struct pollfd p = {.fd = a->wait_fd, .events = POLLIN};
        char g;
        if (poll(&p, 1, (int)(T_LONG * 1000)) != 1 || read(a->wait_fd, &g, 1) != 1)
            return 5;
    }
    size_t cap = 200000;
    unsigned char *dest = malloc(cap);
    if (!dest)
        return 6;
    int bad = 0;
    for (size_t i = 0; i <= a->nwant && !bad; i++) {
        double timeout = i == a->nwant ? 0.05 : i == 0 ? a->first_timeout : T_LONG;
        const unsigned char *got = NULL;
        size_t len = 0;
        void *buf = NULL;
        mp_obj *o = NULL;
        int rc;
        if (a->api == API_INTO) {
            ssize_t r = mp_conn_recv_bytes_into(a->in, dest, cap, 0, NULL, timeout);
            rc = r < 0 ? (int)r : 0;
            got = dest;
            len = r < 0 ? 0 : (size_t)r;
        } else if (a->api == API_VALUES) {
            rc = mp_conn_recv(a->in, &o, timeout);
            if (rc == 0 && mp_obj_get_bytes(o, &got, &len) != 0)
                rc = -12345;
        } else {
            rc = mp_conn_recv_bytes(a->in, 0, &buf, &len, timeout);
            got = buf;
        }
        if (i == a->nwant) {
            bad = rc == MP_ETIMEDOUT ? 0 : 90; /* nothing more: nothing invented */
        } else if (rc != 0 || len != a->want[i].size) {
            bad = 10 + (int)i;
        } else {
            for (size_t j = 0; j < len && !bad; j++)
                if (got[j] != pattern(a->want[i].seed, j))
                    bad = 20 + (int)i;
        }
        free(buf);
        mp_obj_free(o);
    }
    free(dest);
    return bad;
}

/* The scenario, exactly: the peer sends "s", then three messages of
 * 50,000 zero bytes. The parent receives "s"; its read-ahead takes 65,531
 * more bytes and stops inside the second 50,000-byte message. A child then
 * receives with a 0.5 s timeout: it must get the third message (the only one
 * nobody had begun), then nothing - before, it got three empty messages,
 * parsed from zero payload bytes. The parent still gets the message it had
 * read whole, and no invented one after it. */
static void test_child_forked_inside_a_message_never_receives_an_invented_one(void **state)
{
    (void)state;
    mp_conn *end, *peer;
    assert_int_equal(mp_pipe(&end, &peer, true), 0);
    unsigned char *zeros = calloc(1, 50000);
    assert_non_null(zeros);
    assert_int_equal(mp_conn_send_bytes(peer, "s", 1), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(mp_conn_send_bytes(peer, zeros, 50000), 0);
    TU_ASSERT_STATUS(recv_expect(end, "s", 1), 0);
    assert_int_equal(mp_conn_buffered(end), 65531);
    static const struct expect third = {0, 50000};
    struct skip_child_args a = {end, API_BYTES, &third, 1, 0.5, -1, -1};
    pid_t pid = tu_fork(skip_child, &a);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    TU_ASSERT_STATUS(recv_expect(end, zeros, 50000), 0);
    void *buf;
    size_t len;
    TU_ASSERT_STATUS(mp_conn_recv_bytes(end, 0, &buf, &len, 0.05), MP_ETIMEDOUT);
    free(zeros);
    mp_conn_free(end);
    mp_conn_free(peer);
}

/*
 * The parent's read-ahead stops `cut` bytes into the frame of message B
 * (0: at B's start; 1-3: inside a 4-byte header; 4-11: inside a 12-byte
 * one; more: inside B's payload). The stream is "s", A (read whole by the
 * parent), B, then C (100 bytes), D (40,000) and E (empty), all with varied
 * payloads. A child forked then must receive B only if the parent had not
 * begun it, then C, D, E, then nothing; the parent gets A.
 */
static void run_cut_case(int duplex, enum child_api api, size_t cut, bool b_long, size_t b_size)
{
    size_t b_hdr = b_long ? MP__FRAME_LONG : MP__FRAME_SHORT;
    size_t a_size = READ_AHEAD - (MP__FRAME_SHORT + 1) - MP__FRAME_SHORT - cut;
    struct stream s = {NULL, 0};
    append_frame(&s, "s", 1, false);
    unsigned char *a_bytes = pattern_bytes(1, a_size);
    append_frame(&s, a_bytes, a_size, false);
    assert_int_equal(s.len, READ_AHEAD - cut);
    const struct expect later[] = {{2, b_size}, {3, 100}, {4, 40000}, {5, 0}};
    for (size_t i = 0; i < 4; i++) {
        size_t n = later[i].size;
        unsigned char *p = api == API_VALUES ? pickled_pattern(later[i].seed, n, &n)
                                             : pattern_bytes(later[i].seed, n);
        append_frame(&s, p, n, i == 0 && b_long);
        free(p);
    }
    assert_true(cut < b_hdr + b_size);

    mp_conn *in, *out;
    assert_int_equal(mp_pipe(&in, &out, duplex), 0);
    struct forge_args f = {mp_conn_fileno(out), s.p, s.len, in};
    pid_t writer = tu_fork(forge_and_exit_child, &f);
    assert_true(wait_queued(mp_conn_fileno(in), READ_AHEAD));
    TU_ASSERT_STATUS(recv_expect(in, "s", 1), 0);
    assert_int_equal(mp_conn_buffered(in), READ_AHEAD - 5); /* the cut is where we meant */

    struct skip_child_args c = {in, api, cut ? later + 1 : later, cut ? 3 : 4, T_LONG, -1, -1};
    pid_t child = tu_fork(skip_child, &c);
    int status = tu_wait_child(child, T_LONG);
    if (status != 0)
        fail_msg("duplex %d api %d cut %zu long %d size %zu: child status %d", duplex, (int)api,
                 cut, (int)b_long, b_size, status);
    assert_int_equal(tu_wait_child(writer, T_LONG), 0);
    TU_ASSERT_STATUS(recv_expect(in, a_bytes, a_size), 0);
    void *buf;
    size_t len;
    TU_ASSERT_STATUS(mp_conn_recv_bytes(in, 0, &buf, &len, 0.05), MP_ETIMEDOUT);
    free(a_bytes);
    free(s.p);
    mp_conn_free(in);
    mp_conn_free(out);
}

static void test_child_forked_inside_a_header_or_payload_resumes_at_the_next_frame(void **state)
{
    (void)state;
    const struct {
        size_t cut;
        bool b_long;
        size_t b_size;
    } cases[] = {
        {0, false, 3000},          {1, false, 3000},  {2, false, 70000},
        {3, false, 3000},          {4, false, 70000}, {4 + 1000, false, 3000},
        {4 + 20000, false, 70000}, {4, true, 3000},   {6, true, 70000},
        {11, true, 3000},          {12, true, 70000}, {12 + 500, true, 3000},
    };
    for (int duplex = 0; duplex <= 1; duplex++)
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
            run_cut_case(duplex, (enum child_api)((i + (size_t)duplex) % API_COUNT), cases[i].cut,
                         cases[i].b_long, cases[i].b_size);
}

/* A receive of a 500,000-byte message timed out part-way, so the parent
 * holds a large message in progress (`big`), by recv_bytes or by
 * recv_bytes_into. A child forked then has nothing buffered and nothing
 * ready (poll(0.1) waits and says 0); when the rest comes, it discards it
 * and receives the next message C. */
static void test_child_forked_during_a_large_message_in_progress_skips_it(void **state)
{
    (void)state;
    const size_t b_size = 500000, part = 100000;
    for (int combo = 0; combo < 4; combo++) {
        int duplex = combo & 1, into = combo >> 1;
        struct stream s = {NULL, 0};
        unsigned char *b = pattern_bytes(6, b_size), *cmsg = pattern_bytes(7, 1000);
        append_frame(&s, b, b_size, false);
        append_frame(&s, cmsg, 1000, false);
        mp_conn *in, *out;
        assert_int_equal(mp_pipe(&in, &out, duplex), 0);
        struct forge_args f1 = {mp_conn_fileno(out), s.p, 4 + part, in};
        pid_t pid = tu_fork(forge_and_exit_child, &f1);
        int status;
        double give_up = tu_now() + T_LONG;
        do {
            TU_ASSERT_STATUS(recv_one(in, into, b, b_size, 0.05), MP_ETIMEDOUT);
            status = tu_poll_child(pid);
        } while (status == TU_RUNNING && tu_now() < give_up);
        assert_int_equal(status, 0);
        TU_ASSERT_STATUS(recv_one(in, into, b, b_size, 0.05), MP_ETIMEDOUT);
        assert_int_equal(mp_conn_buffered(in), part);

        int go[2];
        assert_int_equal(pipe(go), 0);
        static const struct expect c_only = {7, 1000};
        struct skip_child_args c = {in, into ? API_INTO : API_BYTES, &c_only, 1, T_LONG, go[1], -1};
        pid_t child = tu_fork(skip_child, &c);
        struct pollfd p = {.fd = go[0], .events = POLLIN};
        assert_int_equal(poll(&p, 1, (int)(T_LONG * 1000)), 1);
        struct forge_args f2 = {mp_conn_fileno(out), s.p + 4 + part, s.len - 4 - part, in};
        pid = tu_fork(forge_and_exit_child, &f2);
        status = tu_wait_child(child, T_LONG);
        if (status != 0)
            fail_msg("duplex %d into %d: child status %d", duplex, into, status);
        assert_int_equal(tu_wait_child(pid, T_LONG), 0);
        close(go[0]);
        close(go[1]);
        free(b);
        free(cmsg);
        free(s.p);
        mp_conn_free(in);
        mp_conn_free(out);
    }
}

static int child_sees_truncation_then_eof(void *arg)
{
    mp_conn *in = arg;
    void *buf;
    size_t len;
    int rc = mp_conn_recv_bytes(in, 0, &buf, &len, T_LONG);
    if (rc == 0)
        free(buf);
    if (rc != MP_ETRUNCATED)
        return 1;
    return mp_conn_recv_bytes(in, 0, &buf, &len, T_LONG) == MP_EOF ? 0 : 2;
}

/* The peer leaves in the middle of the message the parent had begun (its
 * header cut, or its payload): the child, discarding it, meets end of file
 * inside a message - MP_ETRUNCATED, as for any peer that dies mid-message -
 * and MP_EOF after that. */
static void test_child_skipping_a_message_whose_peer_left_gets_etruncated(void **state)
{
    (void)state;
    static const unsigned char cut_header[] = {0, 0, 0, 1, 's', 0, 0};
    static const unsigned char cut_payload[] = {0, 0, 0, 1, 's', 0, 0, 0, 100, 'a', 'b', 'c'};
    const struct {
        const unsigned char *bytes;
        size_t len;
    } cases[] = {{cut_header, sizeof cut_header}, {cut_payload, sizeof cut_payload}};
    for (int duplex = 0; duplex <= 1; duplex++) {
        for (size_t k = 0; k < 2; k++) {
            mp_conn *in, *out;
            assert_int_equal(mp_pipe(&in, &out, duplex), 0);
            raw_write(mp_conn_fileno(out), cases[k].bytes, cases[k].len);
            mp_conn_free(out);
            TU_ASSERT_STATUS(recv_expect(in, "s", 1), 0);
            assert_int_equal(mp_conn_buffered(in), cases[k].len - 5);
            pid_t pid = tu_fork(child_sees_truncation_then_eof, in);
            assert_int_equal(tu_wait_child(pid, T_LONG), 0);
            mp_conn_free(in);
        }
    }
}

struct blocked_recv {
    mp_conn *in;
    unsigned char *dest;
    size_t cap;
    int tid; /* atomic */
    ssize_t rc;
};

static void *blocked_recv_thread(void *arg)
{
    struct blocked_recv *b = arg;
    __atomic_store_n(&b->tid, (int)syscall(SYS_gettid), __ATOMIC_RELEASE);
    /* Long enough for the test to fork while this waits (it forks as soon
     * as this thread sleeps): 0.5 s, 2 s under valgrind, 1 s under the
     * sanitizers; the forked child reads only after it has ended. */
    b->rc = mp_conn_recv_bytes_into(b->in, b->dest, b->cap, 0, NULL, 0.5 * tu_slowdown(4.0, 2.0));
    return NULL;
}

/* The state letter of one of our threads ('S': asleep in a wait), or 0. */
static char thread_state(int tid)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = 0;
    char *close_paren = strrchr(line, ')');
    return close_paren && close_paren[1] == ' ' ? close_paren[2] : 0;
}

/* Another parent thread is inside recv_bytes_into, reading a large message
 * straight into its buffer, when the parent forks. The child must know how
 * much of that message is still to come, and discard it. */
static void test_child_forked_while_a_thread_reads_a_large_message_skips_it(void **state)
{
    (void)state;
    const size_t b_size = 500000, part = 100000;
    for (int duplex = 0; duplex <= 1; duplex++) {
        struct stream s = {NULL, 0};
        unsigned char *b = pattern_bytes(8, b_size), *cmsg = pattern_bytes(9, 1000);
        append_frame(&s, b, b_size, false);
        append_frame(&s, cmsg, 1000, false);
        mp_conn *in, *out;
        assert_int_equal(mp_pipe(&in, &out, duplex), 0);
        unsigned char *dest = malloc(b_size);
        assert_non_null(dest);
        struct blocked_recv br = {in, dest, b_size, 0, 0};
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, blocked_recv_thread, &br), 0);
        struct forge_args f1 = {mp_conn_fileno(out), s.p, 4 + part, in};
        pid_t pid = tu_fork(forge_and_exit_child, &f1);
        assert_int_equal(tu_wait_child(pid, T_LONG), 0);
        /* Wait until the thread has taken every byte and sleeps for more. */
        double give_up = tu_now() + T_LONG;
        int tid;
        while ((tid = __atomic_load_n(&br.tid, __ATOMIC_ACQUIRE)) == 0 && tu_now() < give_up)
            tu_sleep(0.001);
        int q = -1;
        while (
            (ioctl(mp_conn_fileno(in), FIONREAD, &q) != 0 || q != 0 || thread_state(tid) != 'S') &&
            tu_now() < give_up)
            tu_sleep(0.001);
        assert_int_equal(q, 0);
        assert_int_equal(thread_state(tid), 'S');

        int go[2];
        assert_int_equal(pipe(go), 0);
        static const struct expect c_only = {9, 1000};
        struct skip_child_args c = {in, API_BYTES, &c_only, 1, T_LONG, -1, go[0]};
        pid_t child = tu_fork(skip_child, &c);
        /* The thread's receive times out; then only the child reads. */
        assert_int_equal(pthread_join(th, NULL), 0);
        TU_ASSERT_STATUS(br.rc, MP_ETIMEDOUT);
        assert_int_equal(write(go[1], "g", 1), 1);
        struct forge_args f2 = {mp_conn_fileno(out), s.p + 4 + part, s.len - 4 - part, in};
        pid = tu_fork(forge_and_exit_child, &f2);
        int status = tu_wait_child(child, T_LONG);
        if (status != 0)
            fail_msg("duplex %d: child status %d", duplex, status);
        assert_int_equal(tu_wait_child(pid, T_LONG), 0);
        close(go[0]);
        close(go[1]);
        free(dest);
        free(b);
        free(cmsg);
        free(s.p);
        mp_conn_free(in);
        mp_conn_free(out);
    }
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_child_forked_after_read_ahead_never_sees_parents_buffer),
        TU_TEST(test_readahead_off_leaves_later_messages_for_other_processes),
        TU_TEST(test_child_forked_inside_a_message_never_receives_an_invented_one),
        TU_TEST(test_child_forked_inside_a_header_or_payload_resumes_at_the_next_frame),
        TU_TEST(test_child_forked_during_a_large_message_in_progress_skips_it),
        TU_TEST(test_child_forked_while_a_thread_reads_a_large_message_skips_it),
        TU_TEST(test_child_skipping_a_message_whose_peer_left_gets_etruncated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
