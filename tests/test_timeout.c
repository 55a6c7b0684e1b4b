/*
 * timeout: the one contract every module shares for its timeout arguments
 * (common.h). A NaN timeout is not a number of seconds: every public entry
 * point that takes one returns MP_EVALUE (Python raises ValueError for
 * float('nan') in Lock.acquire, Queue.get, Connection.poll, ...) before it
 * does anything, so nothing is taken, sent, queued or consumed.
 *
 * A few representative calls per module; each object is then shown to be
 * untouched by a call with a real timeout.
 */
#include "testutil.h"

#include <mpipc.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define T_LONG 20.0

static const double not_a_number = NAN;

/* ---- sync ------------------------------------------------------------------------- */

static bool never(void *arg)
{
    (void)arg;
    return false;
}

static void test_sync_nan_timeouts_are_evalue(void **state)
{
    (void)state;
    double nan = not_a_number;

    mp_lock *lock;
    assert_int_equal(mp_lock_new(&lock), 0);
    TU_ASSERT_STATUS(mp_lock_acquire(lock, nan), MP_EVALUE);
    TU_ASSERT_STATUS(mp_lock_release(lock), MP_EVALUE); /* was not taken */

    mp_rlock *rlock;
    assert_int_equal(mp_rlock_new(&rlock), 0);
    TU_ASSERT_STATUS(mp_rlock_acquire(rlock, nan), MP_EVALUE);
    assert_int_equal(mp_rlock_count(rlock), 0);

    mp_sem *sem;
    assert_int_equal(mp_sem_new(&sem, 1), 0);
    TU_ASSERT_STATUS(mp_sem_acquire(sem, nan), MP_EVALUE);
    assert_int_equal(mp_sem_get_value(sem), 1);

    mp_event *ev;
    assert_int_equal(mp_event_new(&ev), 0);
    TU_ASSERT_STATUS(mp_event_wait(ev, nan), MP_EVALUE);
    assert_int_equal(mp_event_set(ev), 0);
    TU_ASSERT_STATUS(mp_event_wait(ev, nan), MP_EVALUE); /* set or not */

    mp_cond *cond;
    assert_int_equal(mp_cond_new(&cond, lock), 0);
    TU_ASSERT_STATUS(mp_cond_acquire(cond, nan), MP_EVALUE);
    assert_int_equal(mp_cond_acquire(cond, T_LONG), 0);
    TU_ASSERT_STATUS(mp_cond_wait(cond, nan), MP_EVALUE);
    TU_ASSERT_STATUS(mp_cond_wait_for(cond, never, NULL, nan), MP_EVALUE);
    /* Still held by us: the wait never released it. */
    TU_ASSERT_STATUS(mp_lock_acquire(lock, MP_NOWAIT), MP_ETIMEDOUT);
    assert_int_equal(mp_cond_release(cond), 0);

    mp_barrier *b = (mp_barrier *)1;
    TU_ASSERT_STATUS(mp_barrier_new(&b, 2, NULL, NULL, nan), MP_EVALUE);
    assert_null(b);
    assert_int_equal(mp_barrier_new(&b, 2, NULL, NULL, MP_FOREVER), 0);
    TU_ASSERT_STATUS(mp_barrier_wait(b, nan), MP_EVALUE);
    assert_int_equal(mp_barrier_n_waiting(b), 0);
    assert_int_equal(mp_barrier_broken(b), 0);

    mp_barrier_free(b);
    mp_cond_free(cond);
    mp_event_free(ev);
    mp_sem_free(sem);
    mp_rlock_free(rlock);
    mp_lock_free(lock);
}

/* ---- conn and listener ------------------------------------------------------------ */

static void test_conn_nan_timeouts_are_evalue(void **state)
{
    (void)state;
    double nan = not_a_number;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    assert_int_equal(mp_conn_send_bytes(a, "hi", 2), 0);

    void *buf = NULL;
    size_t len = 0;
    TU_ASSERT_STATUS(mp_conn_recv_bytes(b, 0, &buf, &len, nan), MP_EVALUE);
    char small[8];
    TU_ASSERT_STATUS(mp_conn_recv_bytes_into(b, small, sizeof small, 0, NULL, nan), MP_EVALUE);
    mp_obj *o = NULL;
    TU_ASSERT_STATUS(mp_conn_recv(b, &o, nan), MP_EVALUE);
    TU_ASSERT_STATUS(mp_conn_poll(b, nan), MP_EVALUE);
    mp_wait_item item = {.conn = b};
    TU_ASSERT_STATUS(mp_wait(&item, 1, nan), MP_EVALUE);

    /* The message is still there, whole. */
    assert_int_equal(mp_conn_recv_bytes(b, 0, &buf, &len, T_LONG), 0);
    assert_int_equal(len, 2);
    assert_memory_equal(buf, "hi", 2);
    free(buf);

    TU_ASSERT_STATUS(mp_deliver_challenge(a, "k", 1, 0, nan), MP_EVALUE);
    TU_ASSERT_STATUS(mp_answer_challenge(b, "k", 1, nan), MP_EVALUE);
    mp_conn_free(a);
    mp_conn_free(b);

    mp_listener *l;
    assert_int_equal(mp_listener_new(&l, NULL, NULL, 0, 0), 0);
    mp_conn *c = NULL;
    TU_ASSERT_STATUS(mp_listener_accept(l, &c, nan), MP_EVALUE);
    assert_null(c);
    TU_ASSERT_STATUS(mp_client_connect(&c, mp_listener_address(l), NULL, 0, nan), MP_EVALUE);
    assert_null(c);
    mp_listener_free(l);
}

/* ---- queue ------------------------------------------------------------------------ */

static void test_queue_nan_timeouts_are_evalue(void **state)
{
    (void)state;
    double nan = not_a_number;
    mp_queue *q;
    assert_int_equal(mp_queue_new_joinable(&q, 0), 0);
    TU_ASSERT_STATUS(mp_queue_put(q, "x", 1, nan), MP_EVALUE);
    mp_obj *none = mp_obj_none();
    TU_ASSERT_STATUS(mp_queue_put_obj(q, none, nan), MP_EVALUE);
    assert_int_equal(mp_queue_put(q, "y", 1, T_LONG), 0);
    void *data = NULL;
    size_t len = 0;
    TU_ASSERT_STATUS(mp_queue_get(q, &data, &len, nan), MP_EVALUE);
    mp_obj *o = NULL;
    TU_ASSERT_STATUS(mp_queue_get_obj(q, &o, nan), MP_EVALUE);
    TU_ASSERT_STATUS(mp_queue_get_item(q, &data, &len, &o, nan), MP_EVALUE);
    TU_ASSERT_STATUS(mp_queue_join(q, nan), MP_EVALUE);
    /* Only "y" went in, and it is still there. */
    assert_int_equal(mp_queue_get(q, &data, &len, T_LONG), 0);
    assert_int_equal(len, 1);
    assert_memory_equal(data, "y", 1);
    free(data);
    TU_ASSERT_STATUS(mp_queue_get(q, &data, &len, MP_NOWAIT), MP_EMPTY);
    mp_queue_free(q);

    mp_simplequeue *sq;
    assert_int_equal(mp_simplequeue_new(&sq), 0);
    TU_ASSERT_STATUS(mp_simplequeue_put(sq, "x", 1, nan), MP_EVALUE);
    TU_ASSERT_STATUS(mp_simplequeue_put_obj(sq, none, nan), MP_EVALUE);
    assert_int_equal(mp_simplequeue_empty(sq), 1);
    assert_int_equal(mp_simplequeue_put(sq, "y", 1, T_LONG), 0);
    TU_ASSERT_STATUS(mp_simplequeue_get(sq, &data, &len, nan), MP_EVALUE);
    TU_ASSERT_STATUS(mp_simplequeue_get_obj(sq, &o, nan), MP_EVALUE);
    TU_ASSERT_STATUS(mp_simplequeue_get_item(sq, &data, &len, &o, nan), MP_EVALUE);
    assert_int_equal(mp_simplequeue_get(sq, &data, &len, T_LONG), 0);
    assert_memory_equal(data, "y", 1);
    free(data);
    mp_simplequeue_free(sq);
    mp_obj_free(none);
}

/* ---- process and pool ------------------------------------------------------------- */

static int echo(const void *in, size_t in_len, void **out, size_t *out_len)
{
    *out = malloc(in_len ? in_len : 1);
    if (!*out)
        return 1;
    memcpy(*out, in, in_len);
    *out_len = in_len;
    return 0;
}

static void test_process_and_pool_nan_timeouts_are_evalue(void **state)
{
    (void)state;
    double nan = not_a_number;
    mp_process *p;
    assert_int_equal(mp_process_new(&p, NULL, NULL), 0);
    assert_int_equal(mp_process_start(p), 0);
    TU_ASSERT_STATUS(mp_process_join(p, nan), MP_EVALUE);
    assert_int_equal(mp_process_join(p, T_LONG), 0);
    assert_int_equal(mp_process_close(p), 0);
    mp_process_free(p);

    mp_pool_opts opts = MP_POOL_OPTS_INIT;
    opts.processes = 1;
    mp_pool *pool;
    assert_int_equal(mp_pool_new(&pool, &opts), 0);
    void *out = NULL;
    size_t out_len = 0;
    TU_ASSERT_STATUS(mp_pool_apply_bytes(pool, echo, "ab", 2, &out, &out_len, NULL, nan),
                     MP_EVALUE);
    assert_null(out);
    mp_result *r;
    assert_int_equal(mp_pool_apply_bytes_async(pool, echo, "cd", 2, NULL, &r), 0);
    TU_ASSERT_STATUS(mp_result_wait(r, nan), MP_EVALUE);
    const void *got = NULL;
    TU_ASSERT_STATUS(mp_result_get_bytes(r, &got, &out_len, NULL, nan), MP_EVALUE);
    assert_int_equal(mp_result_get_bytes(r, &got, &out_len, NULL, T_LONG), 0);
    assert_int_equal(out_len, 2);
    assert_memory_equal(got, "cd", 2);
    mp_result_free(r);
    assert_int_equal(mp_pool_close(pool), 0);
    TU_ASSERT_STATUS(mp_pool_join(pool, nan), MP_EVALUE);
    assert_int_equal(mp_pool_join(pool, T_LONG), 0);
    mp_pool_free(pool);
}

/* ---- manager ---------------------------------------------------------------------- */

static void test_manager_nan_timeouts_are_evalue(void **state)
{
    (void)state;
    double nan = not_a_number;
    mp_manager_opts opts = MP_MANAGER_OPTS_INIT;
    opts.timeout = nan;
    mp_manager *m = (mp_manager *)1;
    TU_ASSERT_STATUS(mp_manager_start(&m, &opts), MP_EVALUE);
    assert_null(m);
    opts.timeout = T_LONG;
    assert_int_equal(mp_manager_start(&m, &opts), 0);
    TU_ASSERT_STATUS(mp_manager_set_timeout(m, nan), MP_EVALUE);

    opts.timeout = nan;
    mp_manager *c = (mp_manager *)1;
    size_t keylen;
    const void *key = mp_manager_authkey(m, &keylen);
    TU_ASSERT_STATUS(mp_manager_connect(&c, mp_manager_address(m), key, keylen, &opts), MP_EVALUE);
    assert_null(c);

    mp_lockproxy *lk;
    assert_int_equal(mp_manager_lock(m, &lk), 0);
    TU_ASSERT_STATUS(mp_lockproxy_acquire(lk, nan), MP_EVALUE);
    TU_ASSERT_STATUS(mp_lockproxy_release(lk), MP_EVALUE); /* was not taken */

    mp_queueproxy *q;
    assert_int_equal(mp_manager_queue(m, 0, &q), 0);
    mp_obj *one = mp_obj_int(1);
    TU_ASSERT_STATUS(mp_queueproxy_put(q, one, nan), MP_EVALUE);
    assert_int_equal(mp_queueproxy_qsize(q), 0);
    assert_int_equal(mp_queueproxy_put(q, one, T_LONG), 0);
    mp_obj *item = NULL;
    TU_ASSERT_STATUS(mp_queueproxy_get(q, &item, nan), MP_EVALUE);
    assert_int_equal(mp_queueproxy_qsize(q), 1);
    TU_ASSERT_STATUS(mp_queueproxy_join(q, nan), MP_EVALUE);
    mp_obj_free(one);
    mp_queueproxy_free(q);
    mp_lockproxy_free(lk);
    assert_int_equal(mp_manager_shutdown(m), 0);
    mp_manager_free(m);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_sync_nan_timeouts_are_evalue),
        TU_TEST(test_conn_nan_timeouts_are_evalue),
        TU_TEST(test_queue_nan_timeouts_are_evalue),
        TU_TEST(test_process_and_pool_nan_timeouts_are_evalue),
        TU_TEST(test_manager_nan_timeouts_are_evalue),
    };
    tu_filter(argc, argv);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
