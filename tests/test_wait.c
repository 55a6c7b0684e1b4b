/*
 * wait: Python's multiprocessing.connection.wait(object_list, timeout) over
 * connections and raw descriptors (process sentinels), including messages
 * that sit in a connection's read-ahead buffer, and the start of a message
 * there, which is not one.
 */
#include "testutil.h"

#include <mpipc/conn.h>
#include <mpipc/process.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_wait_returns_only_the_ready_connections(void **state)
{
    (void)state;
    mp_conn *r[3], *w[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(mp_pipe(&r[i], &w[i], i != 1), 0);
    assert_int_equal(mp_conn_send_bytes(w[1], "x", 1), 0);
    mp_wait_item items[3];
    for (int i = 0; i < 3; i++)
        items[i] = (mp_wait_item){.conn = r[i], .fd = -1};
    assert_int_equal(mp_wait(items, 3, 1.0), 1);
    assert_int_equal(items[0].ready, 0);
    assert_int_equal(items[1].ready, 1);
    assert_int_equal(items[2].ready, 0);
    for (int i = 0; i < 3; i++) {
        mp_conn_free(r[i]);
        mp_conn_free(w[i]);
    }
}

static void test_wait_counts_messages_already_read_ahead(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    assert_int_equal(mp_conn_send_bytes(a, "1", 1), 0);
    assert_int_equal(mp_conn_send_bytes(a, "2", 1), 0);
    void *buf;
    size_t len;
    assert_int_equal(mp_conn_recv_bytes(b, 0, &buf, &len, 1.0), 0);
    free(buf);
    /* "2" is in b's buffer, the descriptor is empty: still ready, at once. */
    mp_wait_item item = {.conn = b, .fd = -1};
    double t0 = tu_now();
    assert_int_equal(mp_wait(&item, 1, 5.0), 1);
    assert_true(tu_now() - t0 < 0.5);
    assert_int_equal(item.ready, 1);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* After a receive timed out in the middle of a message, its start sits in
 * the read-ahead buffer. That is not a message: wait() sleeps on the
 * descriptor as if nothing were buffered (before, it said ready at once and
 * a "wait, then receive" loop spun). The descriptor getting more bytes makes
 * the connection ready again, as Python's poll counts any readable data,
 * even when they do not complete the message yet. */
static void test_wait_does_not_count_the_start_of_a_message_as_ready(void **state)
{
    (void)state;
    mp_conn *a, *b, *c, *d;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    assert_int_equal(mp_pipe(&c, &d, true), 0);
    const unsigned char frame[4 + 10] = {0,   0,   0,   10,  'p', 'a', 'r',
                                         't', 'i', 'a', 'l', '!', '!', '!'};
    int fd = mp_conn_fileno(a);
    assert_int_equal(write(fd, frame, 7), 7);
    void *buf;
    size_t len;
    TU_ASSERT_STATUS(mp_conn_recv_bytes(b, 0, &buf, &len, 0.05), MP_ETIMEDOUT);
    assert_int_equal(mp_conn_buffered(b), 7);

    mp_wait_item items[2] = {{.conn = b, .fd = -1, .ready = 7}, {.conn = d, .fd = -1, .ready = 7}};
    double t0 = tu_now();
    assert_int_equal(mp_wait(items, 2, 0.3), 0);
    double took = tu_now() - t0;
    assert_true(took >= 0.299 && took < 0.3 + 1.5);
    assert_int_equal(items[0].ready, 0);
    assert_int_equal(items[1].ready, 0);

    /* One more byte: the descriptor is readable, so ready - but a receive
     * still waits for the rest. Once it has taken that byte, not ready. */
    assert_int_equal(write(fd, frame + 7, 1), 1);
    assert_int_equal(mp_wait(items, 2, 5.0), 1);
    assert_int_equal(items[0].ready, 1);
    TU_ASSERT_STATUS(mp_conn_recv_bytes(b, 0, &buf, &len, 0.05), MP_ETIMEDOUT);
    assert_int_equal(mp_wait(items, 2, 0.1), 0);

    /* The rest arrives: ready, and the message is whole. */
    assert_int_equal(write(fd, frame + 8, sizeof frame - 8), (ssize_t)(sizeof frame - 8));
    assert_int_equal(mp_wait(items, 2, 5.0), 1);
    assert_int_equal(items[0].ready, 1);
    assert_int_equal(items[1].ready, 0);
    assert_int_equal(mp_conn_recv_bytes(b, 0, &buf, &len, 1.0), 0);
    assert_int_equal(len, 10);
    assert_memory_equal(buf, "partial!!!", 10);
    free(buf);
    mp_conn_free(a);
    mp_conn_free(b);
    mp_conn_free(c);
    mp_conn_free(d);
}

/* A message whose writer left part-way: the descriptor is at end of file, so
 * the connection is ready, and the receive reports the truncation at once. */
static void test_wait_reports_end_of_file_after_a_partial_message_as_ready(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, false), 0);
    assert_int_equal(write(mp_conn_fileno(b), "\0\0\0\5ab", 6), 6);
    void *buf;
    size_t len;
    TU_ASSERT_STATUS(mp_conn_recv_bytes(a, 0, &buf, &len, 0.05), MP_ETIMEDOUT);
    assert_int_equal(mp_conn_poll(a, MP_NOWAIT), 0);
    mp_conn_free(b);
    mp_wait_item item = {.conn = a, .fd = -1};
    double t0 = tu_now();
    assert_int_equal(mp_wait(&item, 1, 5.0), 1);
    assert_true(tu_now() - t0 < 1.0);
    TU_ASSERT_STATUS(mp_conn_recv_bytes(a, 0, &buf, &len, MP_NOWAIT), MP_ETRUNCATED);
    mp_conn_free(a);
}

static void test_wait_times_out_after_about_t_with_nothing_ready(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    mp_wait_item item = {.conn = b, .fd = -1, .ready = 7};
    double t0 = tu_now();
    assert_int_equal(mp_wait(&item, 1, 0.2), 0);
    double took = tu_now() - t0;
    assert_true(took >= 0.199 && took < 0.7);
    assert_int_equal(item.ready, 0);
    t0 = tu_now();
    assert_int_equal(mp_wait(&item, 1, MP_NOWAIT), 0);
    assert_true(tu_now() - t0 < 0.05);
    /* Python's wait([], timeout) just sleeps for the timeout. */
    t0 = tu_now();
    assert_int_equal(mp_wait(NULL, 0, 0.1), 0);
    assert_true(tu_now() - t0 >= 0.099);
    mp_conn_free(a);
    mp_conn_free(b);
}

static void test_wait_reports_end_of_file_as_ready(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, false), 0);
    mp_conn_free(b);
    mp_wait_item item = {.conn = a, .fd = -1};
    assert_int_equal(mp_wait(&item, 1, 1.0), 1);
    mp_conn_free(a);
}

static int sleep_then_exit(void *arg)
{
    tu_sleep(*(double *)arg);
    return 0;
}

/* The way Python waits for "a message or the worker's death". */
static void test_wait_on_process_sentinels_and_connections_together(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    double nap = 0.2;
    mp_process *p;
    assert_int_equal(mp_process_new(&p, sleep_then_exit, &nap), 0);
    assert_int_equal(mp_process_start(p), 0);
    mp_wait_item items[2] = {{.conn = b, .fd = -1}, {.conn = NULL, .fd = mp_process_sentinel(p)}};
    double t0 = tu_now();
    assert_int_equal(mp_wait(items, 2, 5.0), 1);
    assert_true(tu_now() - t0 >= 0.15);
    assert_int_equal(items[0].ready, 0);
    assert_int_equal(items[1].ready, 1);
    assert_int_equal(mp_process_join(p, 5.0), 0);
    assert_int_equal(mp_process_close(p), 0);
    mp_process_free(p);
    mp_conn_free(a);
    mp_conn_free(b);
}

static void test_wait_handles_more_items_than_fit_on_the_stack(void **state)
{
    (void)state;
    enum { N = 40 };
    mp_conn *r[N], *w[N];
    mp_wait_item items[N];
    for (int i = 0; i < N; i++) {
        assert_int_equal(mp_pipe(&r[i], &w[i], false), 0);
        items[i] = (mp_wait_item){.conn = r[i], .fd = -1};
    }
    assert_int_equal(mp_conn_send_bytes(w[3], "a", 1), 0);
    assert_int_equal(mp_conn_send_bytes(w[37], "b", 1), 0);
    assert_int_equal(mp_wait(items, N, 1.0), 2);
    for (int i = 0; i < N; i++)
        assert_int_equal(items[i].ready, i == 3 || i == 37);
    for (int i = 0; i < N; i++) {
        mp_conn_free(r[i]);
        mp_conn_free(w[i]);
    }
}

static void test_wait_rejects_closed_write_only_and_bad_descriptors(void **state)
{
    (void)state;
    mp_conn *r, *w;
    assert_int_equal(mp_pipe(&r, &w, false), 0);
    mp_wait_item item = {.conn = w, .fd = -1};
    TU_ASSERT_STATUS(mp_wait(&item, 1, 0), MP_EWRITEONLY);
    mp_conn_close(r);
    item.conn = r;
    TU_ASSERT_STATUS(mp_wait(&item, 1, 0), MP_ECLOSED);
    item = (mp_wait_item){.conn = NULL, .fd = -1};
    TU_ASSERT_STATUS(mp_wait(&item, 1, 0), -EINVAL);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    close(fds[0]);
    close(fds[1]);
    item = (mp_wait_item){.conn = NULL, .fd = fds[0]};
    TU_ASSERT_STATUS(mp_wait(&item, 1, 0), -EBADF);
    TU_ASSERT_STATUS(mp_wait(NULL, 1, 0), -EINVAL);
    mp_conn_free(r);
    mp_conn_free(w);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_wait_returns_only_the_ready_connections),
        TU_TEST(test_wait_counts_messages_already_read_ahead),
        TU_TEST(test_wait_does_not_count_the_start_of_a_message_as_ready),
        TU_TEST(test_wait_reports_end_of_file_after_a_partial_message_as_ready),
        TU_TEST(test_wait_times_out_after_about_t_with_nothing_ready),
        TU_TEST(test_wait_reports_end_of_file_as_ready),
        TU_TEST(test_wait_on_process_sentinels_and_connections_together),
        TU_TEST(test_wait_handles_more_items_than_fit_on_the_stack),
        TU_TEST(test_wait_rejects_closed_write_only_and_bad_descriptors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
