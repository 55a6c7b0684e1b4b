/*
 * manager_lock: Lock and RLock as Python's (_TestLock), released by another
 * process; and where we differ on purpose: a dead holder's lock is released,
 * its next acquirer told MP_EOWNERDEAD. Siblings: test_manager_dict, _list, _queue.
 */
#include "mgr_testutil.h"

#include <mpipc/manager.h>

#include <signal.h>
#include <unistd.h>

static void test_lock_acquire_release_semantics_match_python(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    mp_lockproxy *lk, *rl;
    TU_ASSERT_STATUS(mp_manager_lock(m, &lk), 0);
    TU_ASSERT_STATUS(mp_manager_rlock(m, &rl), 0);
    /* _TestLock.test_lock */
    TU_ASSERT_STATUS(mp_lockproxy_acquire(lk, MP_FOREVER), 0);
    TU_ASSERT_STATUS(mp_lockproxy_acquire(lk, MP_NOWAIT), MP_ETIMEDOUT);
    double t0 = tu_now();
    TU_ASSERT_STATUS(mp_lockproxy_acquire(lk, 0.2), MP_ETIMEDOUT);
    double dt = tu_now() - t0;
    assert_true(dt >= 0.19 && dt < 5.0);
    TU_ASSERT_STATUS(mp_lockproxy_release(lk), 0);
    TU_ASSERT_STATUS(mp_lockproxy_release(lk), MP_EVALUE);
    /* _TestLock.test_rlock */
    for (int i = 0; i < 3; i++)
        TU_ASSERT_STATUS(mp_lockproxy_acquire(rl, MT_LONG), 0);
    for (int i = 0; i < 3; i++)
        TU_ASSERT_STATUS(mp_lockproxy_release(rl), 0);
    TU_ASSERT_STATUS(mp_lockproxy_release(rl), MP_EVALUE);
    mp_lockproxy_free(lk);
    mp_lockproxy_free(rl);
    mp_manager_free(m);
}

static int child_releases_parents_lock(void *arg)
{
    struct mt_shared *sh = arg;
    /* Python lets any process release a Lock. */
    return mp_lockproxy_release(sh->lock) == 0 ? 0 : 10;
}

static int child_acquires_then_waits(void *arg)
{
    struct mt_shared *sh = arg;
    int rc = mp_lockproxy_acquire(sh->lock, MT_LONG);
    if (rc != 0)
        return 10;
    mt_say(sh->fd);
    tu_sleep(TU_CHILD_LIFETIME); /* until killed */
    return 11;
}

static int child_waits_for_dead_holders_lock(void *arg)
{
    struct mt_shared *sh = arg;
    mt_say(sh->fd);
    int rc = mp_lockproxy_acquire(sh->lock, MT_LONG);
    if (rc != MP_EOWNERDEAD)
        return rc == 0 ? 20 : rc == MP_ETIMEDOUT ? 21 : 22;
    /* the lock is ours and works on */
    if (mp_lockproxy_release(sh->lock) != 0)
        return 23;
    return 0;
}

static void test_a_lock_may_be_released_by_another_process(void **state)
{
    (void)state;
    mp_manager *m = mt_start();
    struct mt_shared sh = {0};
    TU_ASSERT_STATUS(mp_manager_lock(m, &sh.lock), 0);
    TU_ASSERT_STATUS(mp_lockproxy_acquire(sh.lock, MT_LONG), 0);
    pid_t pid = tu_fork(child_releases_parents_lock, &sh);
    assert_int_equal(tu_wait_child(pid, MT_LONG), 0);
    TU_ASSERT_STATUS(mp_lockproxy_acquire(sh.lock, MP_NOWAIT), 0);
    TU_ASSERT_STATUS(mp_lockproxy_release(sh.lock), 0);
    mp_lockproxy_free(sh.lock);
    mp_manager_free(m);
}

/* ---- a holder killed ------------------------------------------------------------ */

static void kill_holder_and_check(bool recursive, bool with_waiter)
{
    mp_manager *m = mt_start();
    struct mt_shared sh = {0};
    TU_ASSERT_STATUS(mp_manager_lock_named(m, NULL, recursive, &sh.lock), 0);
    int p[2];
    assert_int_equal(pipe(p), 0);
    sh.fd = p[1];
    pid_t holder = tu_fork(child_acquires_then_waits, &sh);
    assert_int_equal(mt_wait_byte(p[0], MT_LONG), 0);
    pid_t waiter = -1;
    if (with_waiter) {
        waiter = tu_fork(child_waits_for_dead_holders_lock, &sh);
        assert_int_equal(mt_wait_byte(p[0], MT_LONG), 0);
        /* its acquire is parked in the server: the holder's death hands it
         * the lock, the case this test names */
        assert_true(mt_eventually_waiting(m, 1));
    }
    kill(holder, SIGKILL);
    assert_int_equal(tu_wait_child(holder, MT_LONG), -SIGKILL);
    if (with_waiter) {
        assert_int_equal(tu_wait_child(waiter, MT_LONG + 5), 0);
        /* the waiter was told; the next acquirer is not */
        TU_ASSERT_STATUS(mp_lockproxy_acquire(sh.lock, MT_LONG), 0);
    } else {
        TU_ASSERT_STATUS(mp_lockproxy_acquire(sh.lock, MT_LONG), MP_EOWNERDEAD);
        TU_ASSERT_STATUS(mp_lockproxy_release(sh.lock), 0);
        TU_ASSERT_STATUS(mp_lockproxy_acquire(sh.lock, MT_LONG), 0);
    }
    TU_ASSERT_STATUS(mp_lockproxy_release(sh.lock), 0);
    close(p[0]);
    close(p[1]);
    mp_lockproxy_free(sh.lock);
    mp_manager_free(m);
}

static void test_client_killed_holding_a_lock_the_waiter_gets_it_with_eownerdead(void **state)
{
    (void)state;
    kill_holder_and_check(false, true);
}

static void test_client_killed_holding_a_lock_the_next_acquirer_gets_eownerdead(void **state)
{
    (void)state;
    kill_holder_and_check(false, false);
    kill_holder_and_check(true, true); /* an RLock too */
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_lock_acquire_release_semantics_match_python),
        TU_TEST(test_a_lock_may_be_released_by_another_process),
        TU_TEST(test_client_killed_holding_a_lock_the_waiter_gets_it_with_eownerdead),
        TU_TEST(test_client_killed_holding_a_lock_the_next_acquirer_gets_eownerdead),
    };
    return cmocka_run_group_tests_name("manager_lock", tests, NULL, NULL);
}
