/*
 * conn_shm_pass: handing an mp_pipe_shm end to another process by
 * descriptor (mp_send_conn / mp_recv_conn, mp_process_pass_conn for fork,
 * forkserver and spawn children), and malformed hand-overs refused by name.
 */
#define _GNU_SOURCE /* memfd_create, file seals */
#include "testutil.h"

#include "core/io.h"

#include <mpipc/conn.h>
#include <mpipc/context.h>
#include <mpipc/error.h>
#include <mpipc/process.h>
#include <mpipc/reduction.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define T_LONG 20.0

/* A small ring, so that messages over it go in pieces. */
static const mp_pipe_shm_opts small_ring = {.ring_size = 4096};

/* The socket pair ends travel over; made before each fork. */
static mp_conn *g_s, *g_t;

static void fill(unsigned char *p, size_t len, size_t n)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (unsigned char)(i * 7u + n * 13u + 1u);
}

/* Echo every message on c back until end of file or "stop"; 0 then. */
static int echo_until_eof(mp_conn *c)
{
    for (;;) {
        unsigned char *buf = NULL;
        size_t len = 0;
        int rc = mp_conn_recv_bytes(c, 0, (void **)&buf, &len, T_LONG);
        if (rc == MP_EOF || (rc == 0 && len == 4 && memcmp(buf, "stop", 4) == 0)) {
            free(buf);
            return 0;
        }
        if (rc < 0)
            return 10;
        rc = mp_conn_send_bytes(c, buf, len);
        free(buf);
        if (rc < 0)
            return 11;
    }
}

/* Child: receive an end over g_t, echo on it until end of file. */
static int child_recv_and_echo(void *arg)
{
    (void)arg;
    mp_conn_free(g_s);
    mp_conn *e = NULL;
    if (mp_recv_conn(g_t, &e, T_LONG) < 0)
        return 2;
    mp_conn_free(g_t);
    int rc = echo_until_eof(e);
    mp_conn_free(e);
    return rc;
}

static void round_trip(mp_conn *a, size_t len, size_t n)
{
    unsigned char *msg = malloc(len + 1), *back = NULL;
    fill(msg, len, n);
    assert_int_equal(mp_conn_send_bytes(a, msg, len), 0);
    size_t got = 0;
    assert_int_equal(mp_conn_poll(a, T_LONG), 1);
    assert_int_equal(mp_conn_recv_bytes(a, 0, (void **)&back, &got, T_LONG), 0);
    assert_int_equal(got, len);
    assert_memory_equal(back, msg, len);
    free(back);
    free(msg);
}

/* A duplex end made after the fork reaches the child only by descriptor;
 * this process frees its copy at once and the end keeps working both ways
 * (copies, messages over the ring, loans and views); freeing the other end
 * gives the child MP_EOF. */
static void test_send_conn_hands_a_duplex_end_to_a_child(void **state)
{
    (void)state;
    assert_int_equal(mp_pipe(&g_s, &g_t, true), 0);
    pid_t pid = tu_fork(child_recv_and_echo, NULL);
    mp_conn_free(g_t);
    mp_conn *a, *b;
    assert_int_equal(mp_pipe_shm(&a, &b, true, &small_ring), 0);
    assert_int_equal(mp_send_conn(g_s, b), 0);
    mp_conn_free(b);
    const size_t sizes[] = {0, 1, 100, 1500, 4096, 20000, 100000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        round_trip(a, sizes[i], i);
    void *loan = NULL;
    assert_int_equal(mp_conn_loan(a, 1000, &loan, T_LONG), 0);
    fill(loan, 1000, 99);
    assert_int_equal(mp_conn_commit(a, loan, 1000), 0);
    const void *view = NULL;
    size_t len = 0;
    assert_int_equal(mp_conn_recv_view(a, &view, &len, T_LONG), 0);
    unsigned char want[1000];
    fill(want, sizeof want, 99);
    assert_int_equal(len, sizeof want);
    assert_memory_equal(view, want, sizeof want);
    assert_int_equal(mp_conn_release(a, view), 0);
    mp_conn_free(a);
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    mp_conn_free(g_s);
}

/* Child: receive a send-only end, send three messages, exit without
 * closing it (the kernel closes the doorbell). */
static int child_send_three(void *arg)
{
    (void)arg;
    mp_conn_free(g_s);
    mp_conn *e = NULL;
    if (mp_recv_conn(g_t, &e, T_LONG) < 0)
        return 2;
    if (mp_conn_send_bytes(e, "one", 3) < 0 || mp_conn_send_bytes(e, "two", 3) < 0 ||
        mp_conn_send_bytes(e, "three", 5) < 0)
        return 3;
    return 0;
}

/* The send-only end of a one-way pipe, handed over: the child's messages
 * arrive in order, then MP_EOF once it is gone; the receiving end stays
 * receive-only. */
static void test_send_conn_hands_a_one_way_writer_over(void **state)
{
    (void)state;
    assert_int_equal(mp_pipe(&g_s, &g_t, true), 0);
    pid_t pid = tu_fork(child_send_three, NULL);
    mp_conn_free(g_t);
    mp_conn *r, *w;
    assert_int_equal(mp_pipe_shm(&r, &w, false, NULL), 0);
    assert_int_equal(mp_send_conn(g_s, w), 0);
    mp_conn_free(w);
    const char *want[] = {"one", "two", "three"};
    for (size_t i = 0; i < 3; i++) {
        unsigned char *buf = NULL;
        size_t len = 0;
        assert_int_equal(mp_conn_recv_bytes(r, 0, (void **)&buf, &len, T_LONG), 0);
        assert_int_equal(len, strlen(want[i]));
        assert_memory_equal(buf, want[i], len);
        free(buf);
    }
    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    unsigned char *buf = NULL;
    size_t len = 0;
    TU_ASSERT_STATUS(mp_conn_recv_bytes(r, 0, (void **)&buf, &len, T_LONG), MP_EOF);
    TU_ASSERT_STATUS(mp_conn_send_bytes(r, "no", 2), MP_EREADONLY);
    mp_conn_free(r);
    mp_conn_free(g_s);
}

/* Child: receive an end, say so on it, then wait to be killed. */
static int child_recv_and_hang(void *arg)
{
    (void)arg;
    mp_conn_free(g_s);
    mp_conn *e = NULL;
    if (mp_recv_conn(g_t, &e, T_LONG) < 0)
        return 2;
    if (mp_conn_send_bytes(e, "ready", 5) < 0)
        return 3;
    tu_sleep(T_LONG);
    return 4;
}

/* A receiver killed while holding the handed-over end: the peer's receive
 * gives MP_EOF and its sends, once the ring is full, -EPIPE. */
static void test_killed_receiver_gives_eof_and_epipe(void **state)
{
    (void)state;
    assert_int_equal(mp_pipe(&g_s, &g_t, true), 0);
    pid_t pid = tu_fork(child_recv_and_hang, NULL);
    mp_conn_free(g_t);
    mp_conn *a, *b;
    assert_int_equal(mp_pipe_shm(&a, &b, true, &small_ring), 0);
    assert_int_equal(mp_send_conn(g_s, b), 0);
    mp_conn_free(b);
    unsigned char *buf = NULL;
    size_t len = 0;
    assert_int_equal(mp_conn_recv_bytes(a, 0, (void **)&buf, &len, T_LONG), 0);
    free(buf);
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(tu_wait_child(pid, T_LONG), -SIGKILL);
    TU_ASSERT_STATUS(mp_conn_recv_bytes(a, 0, (void **)&buf, &len, T_LONG), MP_EOF);
    unsigned char chunk[1000] = {0};
    int rc = 0;
    for (int i = 0; i < 100 && rc == 0; i++)
        rc = mp_conn_send_bytes(a, chunk, sizeof chunk);
    TU_ASSERT_STATUS(rc, -EPIPE);
    mp_conn_free(a);
    mp_conn_free(g_s);
}

/* args (): on inherited conn 0 (a shared-memory end), echo until end of
 * file, then exit 7. */
static int t_shm_echo(const mp_obj *args)
{
    (void)args;
    mp_conn *c = NULL;
    if (mp_process_inherited_conn(&c, 0) < 0)
        return 100;
    int rc = echo_until_eof(c);
    mp_conn_free(c);
    return rc == 0 ? 7 : rc;
}
MP_TARGET(t_shm_echo);

/* fork, forkserver and spawn children rebuild a passed shared-memory end
 * (two descriptor slots, index 0 the first), which works after the parent
 * frees its copy; freeing the parent's end ends a forkserver or spawn
 * child with MP_EOF. */
static void test_process_pass_conn_for_every_start_method(void **state)
{
    (void)state;
    const char *methods[] = {"fork", "forkserver", "spawn"};
    for (size_t m = 0; m < 3; m++) {
        const mp_context *ctx = NULL;
        assert_int_equal(mp_context_get(&ctx, methods[m]), 0);
        mp_conn *a, *b;
        assert_int_equal(mp_pipe_shm(&a, &b, true, &small_ring), 0);
        mp_process *p;
        assert_int_equal(mp_process_new_ctx(&p, ctx, "t_shm_echo", NULL), 0);
        assert_int_equal(mp_process_pass_conn(p, b), 0);
        assert_int_equal(mp_process_pass_fd(p, STDERR_FILENO), 2); /* after both slots */
        assert_int_equal(mp_process_start(p), 0);
        mp_conn_free(b);
        round_trip(a, 10, m);
        round_trip(a, 50000, m);
        /* A fork child also holds this process's copy of a (inherited, as
         * in Python), so it would never see end of file: it is told. */
        if (m == 0)
            assert_int_equal(mp_conn_send_bytes(a, "stop", 4), 0);
        mp_conn_free(a);
        assert_int_equal(mp_process_join(p, T_LONG), 0);
        int code = -1;
        assert_int_equal(mp_process_exitcode(p, &code), 0);
        assert_int_equal(code, 7);
        mp_process_free(p);
    }
}

/* ---- malformed hand-overs ------------------------------------------------------ */

/* Hand a real end over within this process and take its two descriptors
 * raw, as a hostile peer could: *memfd then *bell. */
static void take_raw(mp_conn *s, mp_conn *t, mp_conn *end, int *memfd, int *bell)
{
    assert_int_equal(mp_send_conn(s, end), 0);
    assert_int_equal(mp_recv_handle(t, memfd, T_LONG), 0);
    assert_int_equal(mp_recv_handle(t, bell, T_LONG), 0);
}

/* Send fd0 then (if >= 0) fd1 as handle messages and expect recv_conn to
 * refuse them with MP_EPROTO; the caller's copies stay its own. */
static void expect_refused(mp_conn *s, mp_conn *t, int fd0, int fd1, const char *why)
{
    assert_int_equal(mp_send_handle(s, fd0, 0), 0);
    if (fd1 >= 0)
        assert_int_equal(mp_send_handle(s, fd1, 0), 0);
    mp_conn *got = (mp_conn *)&got;
    TU_ASSERT_STATUS(mp_recv_conn(t, &got, T_LONG), MP_EPROTO);
    assert_null(got);
    if (!strstr(mp_errmsg(MP_EPROTO), why))
        fail_msg("expected \"%s\" in: %s", why, mp_errmsg(MP_EPROTO));
}

/* A file that is no ring, a ring with the wrong size, a doorbell that is not
 * the ring's, a ring whose indexes fail their check, a ring with no doorbell
 * after it (a framed message instead, left whole), and both descriptors in
 * one message: each MP_EPROTO, every descriptor that came closed (the
 * teardown counts them) and nothing left mapped. */
static void test_malformed_hand_overs_are_refused_and_leak_nothing(void **state)
{
    (void)state;
    mp_conn *s, *t, *a, *b, *x, *y;
    assert_int_equal(mp_pipe(&s, &t, true), 0);
    assert_int_equal(mp_pipe(&x, &y, true), 0);
    assert_int_equal(mp_pipe_shm(&a, &b, true, &small_ring), 0);
    int memfd = -1, bell = -1;
    take_raw(s, t, b, &memfd, &bell);

    /* not a ring: zeros of a plausible size, unsealed, then sealed */
    off_t size = lseek(memfd, 0, SEEK_END);
    assert_true(size > 0);
    int junk = memfd_create("junk", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    assert_true(junk >= 0);
    assert_int_equal(mp__truncate(junk, (uint64_t)size), 0);
    expect_refused(s, t, junk, bell, "not sealed");
    assert_int_equal(fcntl(junk, F_ADD_SEALS, F_SEAL_SHRINK), 0);
    expect_refused(s, t, junk, bell, "not a shared-memory pipe");
    mp__close(junk);

    /* the right passport, the wrong size (sealed) */
    unsigned char passport[64];
    assert_int_equal(mp__pread_all(memfd, passport, sizeof passport, 0), 0);
    junk = memfd_create("junk", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    assert_true(junk >= 0);
    assert_int_equal(mp__truncate(junk, (uint64_t)size + 4096), 0);
    assert_int_equal(mp__pwrite_all(junk, passport, sizeof passport, 0), 0);
    assert_int_equal(fcntl(junk, F_ADD_SEALS, F_SEAL_SHRINK), 0);
    expect_refused(s, t, junk, bell, "bytes where its ring needs");
    mp__close(junk);

    /* a sealed ring cannot be shrunk by whoever receives it */
    assert_true(ftruncate(memfd, 4096) < 0);

    /* a doorbell from another socket pair */
    expect_refused(s, t, memfd, mp_conn_fileno(x), "not one of this ring");

    /* the ring's indexes more than its size apart (ring 0: tail at 64,
     * head one cache line after) */
    uint64_t tail_old = 0, head_old = 0, bad_tail = UINT64_C(1) << 20, bad_head = 0;
    assert_int_equal(mp__pread_all(memfd, &tail_old, 8, 64), 0);
    assert_int_equal(mp__pread_all(memfd, &head_old, 8, 128), 0);
    assert_int_equal(mp__pwrite_all(memfd, &bad_tail, 8, 64), 0);
    assert_int_equal(mp__pwrite_all(memfd, &bad_head, 8, 128), 0);
    expect_refused(s, t, memfd, bell, "more than its");
    assert_int_equal(mp__pwrite_all(memfd, &tail_old, 8, 64), 0);
    assert_int_equal(mp__pwrite_all(memfd, &head_old, 8, 128), 0);

    /* no doorbell after the ring: a framed message, which stays whole */
    assert_int_equal(mp_send_handle(s, memfd, 0), 0);
    assert_int_equal(mp_conn_send_bytes(s, "after", 5), 0);
    mp_conn *none = NULL;
    TU_ASSERT_STATUS(mp_recv_conn(t, &none, T_LONG), MP_EPROTO);
    assert_null(none);
    assert_non_null(strstr(mp_errmsg(MP_EPROTO), "without the doorbell"));
    unsigned char *buf = NULL;
    size_t len = 0;
    assert_int_equal(mp_conn_recv_bytes(t, 0, (void **)&buf, &len, T_LONG), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "after", 5);
    free(buf);

    /* both in one message: more descriptors than a handle message holds */
    unsigned char count = 2;
    int both[2] = {memfd, bell};
    assert_int_equal(mp__send_fds(mp_conn_fileno(s), &count, 1, both, 2), 0);
    mp_conn *got = NULL;
    TU_ASSERT_STATUS(mp_recv_conn(t, &got, T_LONG), MP_EPROTO);

    /* and the real pair still makes a working end */
    assert_int_equal(mp_send_handle(s, memfd, 0), 0);
    assert_int_equal(mp_send_handle(s, bell, 0), 0);
    assert_int_equal(mp_recv_conn(t, &got, T_LONG), 0);
    mp__close(memfd);
    mp__close(bell);
    mp_conn_free(b);
    assert_int_equal(mp_conn_send_bytes(a, "hi", 2), 0);
    assert_int_equal(mp_conn_recv_bytes(got, 0, (void **)&buf, &len, T_LONG), 0);
    assert_int_equal(len, 2);
    free(buf);
    mp_conn_free(got);
    TU_ASSERT_STATUS(mp_conn_recv_bytes(a, 0, (void **)&buf, &len, T_LONG), MP_EOF);
    mp_conn_free(a);
    mp_conn_free(s);
    mp_conn_free(t);
    mp_conn_free(x);
    mp_conn_free(y);
}

/* An end with a loan out or a message part-way received is refused by
 * name and stays usable. */
static void test_end_in_use_is_not_handed_over(void **state)
{
    (void)state;
    mp_conn *s, *t, *a, *b;
    assert_int_equal(mp_pipe(&s, &t, true), 0);
    assert_int_equal(mp_pipe_shm(&a, &b, true, &small_ring), 0);
    void *loan = NULL;
    assert_int_equal(mp_conn_loan(b, 16, &loan, T_LONG), 0);
    TU_ASSERT_STATUS(mp_send_conn(s, b), MP_ESTATE);
    const mp_context *ctx = NULL;
    assert_int_equal(mp_context_get(&ctx, "spawn"), 0);
    mp_process *p;
    assert_int_equal(mp_process_new_ctx(&p, ctx, "no_such_target", NULL), 0);
    TU_ASSERT_STATUS(mp_process_pass_conn(p, b), MP_ESTATE);
    mp_process_free(p);
    assert_int_equal(mp_conn_commit(b, loan, 16), 0);
    assert_int_equal(mp_conn_poll(a, T_LONG), 1);
    assert_int_equal(mp_send_conn(s, a), 0);
    mp_conn *got = NULL;
    assert_int_equal(mp_recv_conn(t, &got, T_LONG), 0);
    mp_conn_free(a);
    const void *view = NULL;
    size_t len = 0;
    assert_int_equal(mp_conn_recv_view(got, &view, &len, T_LONG), 0);
    assert_int_equal(len, 16);
    assert_int_equal(mp_conn_release(got, view), 0);
    mp_conn_free(got);
    mp_conn_free(b);
    mp_conn_free(s);
    mp_conn_free(t);
}

int main(int argc, char **argv)
{
    mp_spawn_main(argc, argv);
    tu_filter(argc, argv);
    if (mp_forkserver_start() < 0) /* early: before any thread */
        return 1;
    const struct CMUnitTest tests[] = {
        TU_TEST(test_send_conn_hands_a_duplex_end_to_a_child),
        TU_TEST(test_send_conn_hands_a_one_way_writer_over),
        TU_TEST(test_killed_receiver_gives_eof_and_epipe),
        TU_TEST(test_process_pass_conn_for_every_start_method),
        TU_TEST(test_malformed_hand_overs_are_refused_and_leak_nothing),
        TU_TEST(test_end_in_use_is_not_handed_over),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
