/*
 * manager_queue: the queue as Python's (_TestQueue: Full and Empty, at once and
 * after a timeout, qsize), gets and puts woken across processes, and
 * JoinableQueue's task_done / join. Siblings: test_manager_dict, _list, _lock.
 */
#include "mgr_testutil.h"

#include <mpipc/manager.h>
#include <mpipc/obj.h>

#include <errno.h>
#include <signal.h>
#include <stdint.h>

static void test_queue_full_and_empty_match_python(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    mp_queueproxy *q;
    /* The server keeps maxsize in 64 bits: a larger size_t is refused. */
    if (sizeof(size_t) > 4) {
        q = (mp_queueproxy *)&q;
        TU_ASSERT_STATUS(mp_manager_queue(m, SIZE_MAX, &q), -EOVERFLOW);
        assert_null(q);
    }
    TU_ASSERT_STATUS(mp_manager_queue(m, 6, &q), 0);
    /* _TestQueue.test_put */
    assert_int_equal(mp_queueproxy_empty(q), 1);
    assert_int_equal(mp_queueproxy_full(q), 0);
    for (int i = 1; i <= 6; i++) {
        mp_obj *x = mt_int(i);
        TU_ASSERT_STATUS(mp_queueproxy_put(q, x, i % 2 ? MP_FOREVER : MP_NOWAIT), 0);
        mp_obj_free(x);
    }
    assert_int_equal(mp_queueproxy_empty(q), 0);
    assert_int_equal(mp_queueproxy_full(q), 1);
    mp_obj *seven = mt_int(7);
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_queueproxy_put(q, seven, MP_NOWAIT), MP_FULL);
    assert_true(tu_now() - t0 < 2.0);
    t0 = tu_now();
    TU_ASSERT_STATUS(mp_queueproxy_put(q, seven, 0.1), MP_FULL);
    double dt = tu_now() - t0;
    assert_true(dt >= 0.09 && dt < 5.0);
    mp_obj_free(seven);
    /* _TestQueue.test_get */
    mp_obj *item;
    for (int i = 1; i <= 6; i++) {
        TU_ASSERT_STATUS(mp_queueproxy_get(q, &item, i % 2 ? MP_FOREVER : MP_NOWAIT), 0);
        int64_t v;
        assert_int_equal(mp_obj_get_int(item, &v), 0);
        assert_int_equal(v, i);
        mp_obj_free(item);
    }
    t0 = tu_now();
    TU_ASSERT_STATUS(mp_queueproxy_get(q, &item, MP_NOWAIT), MP_EMPTY);
    assert_null(item);
    assert_true(tu_now() - t0 < 2.0);
    t0 = tu_now();
    TU_ASSERT_STATUS(mp_queueproxy_get(q, &item, 0.1), MP_EMPTY);
    dt = tu_now() - t0;
    assert_true(dt >= 0.09 && dt < 5.0);
    /* test_qsize: 0, 1, 2, 1, 0 */
    mp_obj *x = mt_str("x");
    assert_int_equal(mp_queueproxy_qsize(q), 0);
    TU_ASSERT_STATUS(mp_queueproxy_put(q, x, MT_LONG), 0);
    assert_int_equal(mp_queueproxy_qsize(q), 1);
    TU_ASSERT_STATUS(mp_queueproxy_put(q, x, MT_LONG), 0);
    assert_int_equal(mp_queueproxy_qsize(q), 2);
    TU_ASSERT_STATUS(mp_queueproxy_get(q, &item, MT_LONG), 0);
    mp_obj_free(item);
    assert_int_equal(mp_queueproxy_qsize(q), 1);
    TU_ASSERT_STATUS(mp_queueproxy_get(q, &item, MT_LONG), 0);
    mp_obj_free(item);
    assert_int_equal(mp_queueproxy_qsize(q), 0);
    mp_obj_free(x);
    mp_queueproxy_free(q);
    mp_manager_free(m);
}

static int child_puts_after_a_while(void *arg)
{
    struct mt_shared *sh = arg;
    tu_sleep(0.1);
    mp_obj *x = mt_int(sh->n);
    int rc = mp_queueproxy_put(sh->q, x, MT_LONG);
    mp_obj_free(x);
    return rc == 0 ? 0 : 10;
}

static int child_gets_one(void *arg)
{
    struct mt_shared *sh = arg;
    tu_sleep(0.1);
    mp_obj *x;
    int rc = mp_queueproxy_get(sh->q, &x, MT_LONG);
    int64_t v = -1;
    mp_obj_get_int(x, &v);
    mp_obj_free(x);
    return rc == 0 && v == 1 ? 0 : 10;
}

static int child_task_done(void *arg)
{
    struct mt_shared *sh = arg;
    mp_obj *x;
    for (int i = 0; i < 3; i++) {
        if (mp_queueproxy_get(sh->q, &x, MT_LONG) != 0)
            return 10;
        mp_obj_free(x);
        tu_sleep(0.02);
        if (mp_queueproxy_task_done(sh->q) != 0)
            return 11;
    }
    return mp_queueproxy_task_done(sh->q) == MP_EVALUE ? 0 : 12;
}

static void test_queue_blocking_get_put_and_join_across_processes(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    struct mt_shared sh = {0};
    TU_ASSERT_STATUS(mp_manager_queue(m, 1, &sh.q), 0);
    /* a get blocked in the server is woken by another process's put */
    sh.n = 42;
    pid_t pid = tu_fork(child_puts_after_a_while, &sh);
    mp_obj *item;
    TU_ASSERT_STATUS(mp_queueproxy_get(sh.q, &item, MT_LONG), 0);
    mt_take_repr(item, "42");
    assert_int_equal(tu_wait_child(pid, MT_LONG), 0);
    /* a put blocked on a full queue is woken by another process's get */
    mp_obj *one = mt_int(1), *two = mt_int(2);
    TU_ASSERT_STATUS(mp_queueproxy_put(sh.q, one, MT_LONG), 0);
    pid = tu_fork(child_gets_one, &sh);
    TU_ASSERT_STATUS(mp_queueproxy_put(sh.q, two, MT_LONG), 0);
    assert_int_equal(tu_wait_child(pid, MT_LONG), 0);
    TU_ASSERT_STATUS(mp_queueproxy_get(sh.q, &item, MT_LONG), 0);
    mt_take_repr(item, "2");
    mp_obj_free(one);
    mp_obj_free(two);
    mp_queueproxy_free(sh.q);

    /* JoinableQueue: join waits for every task_done */
    TU_ASSERT_STATUS(mp_manager_queue(m, 0, &sh.q), 0);
    TU_ASSERT_STATUS(mp_queueproxy_join(sh.q, MP_NOWAIT), 0);
    for (int i = 0; i < 3; i++) {
        mp_obj *x = mt_int(i);
        TU_ASSERT_STATUS(mp_queueproxy_put(sh.q, x, MT_LONG), 0);
        mp_obj_free(x);
    }
    TU_ASSERT_STATUS(mp_queueproxy_join(sh.q, MP_NOWAIT), MP_ETIMEDOUT);
    pid = tu_fork(child_task_done, &sh);
    TU_ASSERT_STATUS(mp_queueproxy_join(sh.q, MT_LONG), 0);
    assert_int_equal(tu_wait_child(pid, MT_LONG), 0);
    mp_queueproxy_free(sh.q);
    mp_manager_free(m);
}

static int child_gets_forever(void *arg)
{
    struct mt_shared *sh = arg;
    mp_obj *x = NULL;
    (void)mp_queueproxy_get(sh->q, &x, MT_LONG); /* killed while it waits */
    mp_obj_free(x);
    return 10;
}

static void test_queue_getter_killed_while_waiting_takes_no_item(void **state)
{
    (void)state;
    /* A getter parked in the server is killed; the put that comes right
     * behind its death - through the mailbox, before the server has read
     * the dead getter's hang-up - must not be handed to it and lost. Many
     * rounds, as the window is a single server round. */
    mp_manager *m = mt_start();
    struct mt_shared sh = {0};
    TU_ASSERT_STATUS(mp_manager_queue(m, 0, &sh.q), 0);
    for (int round = 0; round < 20; round++) {
        pid_t pid = tu_fork(child_gets_forever, &sh);
        assert_true(mt_eventually_waiting(m, 1));
        kill(pid, SIGKILL);
        assert_int_equal(tu_wait_child(pid, MT_LONG), -SIGKILL);
        mp_obj *x = mt_int(round), *item = NULL;
        TU_ASSERT_STATUS(mp_queueproxy_put(sh.q, x, MT_LONG), 0);
        mp_obj_free(x);
        TU_ASSERT_STATUS(mp_queueproxy_get(sh.q, &item, 2.0), 0);
        int64_t v = -1;
        TU_ASSERT_STATUS(mp_obj_get_int(item, &v), 0);
        assert_int_equal(v, round);
        mp_obj_free(item);
        /* the dead getter is gone from the server's waiters by now */
        assert_true(mt_eventually_waiting(m, 0));
    }
    mp_queueproxy_free(sh.q);
    mp_manager_free(m);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_queue_full_and_empty_match_python),
        TU_TEST(test_queue_blocking_get_put_and_join_across_processes),
        TU_TEST(test_queue_getter_killed_while_waiting_takes_no_item),
    };
    return cmocka_run_group_tests_name("manager_queue", tests, NULL, NULL);
}
