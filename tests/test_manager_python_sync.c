/* manager_python_sync: CPython's SyncManager against our server, under
 * every interpreter tu_pythons finds: Semaphore, BoundedSemaphore, Event,
 * Condition and Barrier with Python's proxies (AcquirerProxy, EventProxy,
 * ConditionProxy, BarrierProxy) and threads; a C process and a Python
 * process sharing one Semaphore, one Event and one Barrier; a Python
 * waiter woken once, and a Python waiter killed losing nothing. */
#include "manager/mgr_client.h"
#include "mgr_testutil.h"

#include <mpipc/error.h>

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PY_TIMEOUT 90.0

static const char py_prelude[] =
    "import sys, threading, time\n"
    "from multiprocessing.managers import SyncManager\n"
    "a = sys.argv[1]\n"
    "if a.startswith('unix:'): address = a[5:]\n"
    "else: h, p = a[4:].rsplit(':', 1); address = (h, int(p))\n"
    "key = sys.argv[2].encode()\n"
    "m = SyncManager(address=address, authkey=key)\n"
    "m.connect()\n"
    "def raises(exc, f, *args, **kw):\n"
    "    try: f(*args, **kw)\n"
    "    except exc as e: return e\n"
    "    raise AssertionError('%r did not raise %s' % (f, exc.__name__))\n"
    "def run(*fs):\n"
    "    ts = [threading.Thread(target=f) for f in fs]\n"
    "    for t in ts: t.start()\n"
    "    return ts\n"
    "def join(ts):\n"
    "    for t in ts: t.join(30); assert not t.is_alive()\n";

static const char py_types[] =
    "# Semaphore and BoundedSemaphore: AcquirerProxy\n"
    "s = m.Semaphore(2)\n"
    "assert s.acquire() and s.acquire(timeout=1)\n"
    "assert s.acquire(False) is False\n"
    "t0 = time.monotonic(); assert s.acquire(timeout=0.1) is False\n"
    "assert time.monotonic() - t0 >= 0.075\n"
    "s.release(); s.release(); s.release()  # a Semaphore goes above its value\n"
    "with s: pass\n"
    "b = m.BoundedSemaphore()\n"
    "raises(ValueError, b.release)\n"
    "assert b.acquire(); b.release(); raises(ValueError, b.release)\n"
    "# a unit released by another thread wakes a waiter\n"
    "s0 = m.Semaphore(0); got = []\n"
    "ts = run(lambda: got.append(s0.acquire(timeout=30)))\n"
    "time.sleep(0.1); s0.release(); join(ts); assert got == [True], got\n"
    "# Event: EventProxy\n"
    "e = m.Event()\n"
    "assert e.is_set() is False and e.wait(0.1) is False and e.wait(0) is False\n"
    "got = []\n"
    "ts = run(lambda: got.append(e.wait(30)), lambda: got.append(e.wait()))\n"
    "time.sleep(0.1); e.set(); join(ts)\n"
    "assert got == [True, True] and e.is_set() and e.wait() is True\n"
    "e.clear(); assert not e.is_set()\n"
    "# Condition: ConditionProxy (wait_for is the proxy's own, over wait)\n"
    "c = m.Condition()\n"
    "raises(RuntimeError, c.wait, 0.1)\n"
    "raises(RuntimeError, c.notify)\n"
    "raises(RuntimeError, c.release)\n"
    "with c:\n"
    "    assert c.wait(0.1) is False\n"
    "    c.notify(); c.notify_all()\n"
    "    assert c.acquire(); c.release()  # an RLock\n"
    "state = []; woke = []\n"
    "def waiter():\n"
    "    with c: woke.append(c.wait_for(lambda: state, timeout=30))\n"
    "ts = run(waiter, waiter)\n"
    "time.sleep(0.15)  # both wait (wait_for checks first, so either order works)\n"
    "with c: state.append(1); c.notify_all()\n"
    "join(ts); assert woke == [[1], [1]], woke  # the predicate's value\n"
    "with c: assert c.wait_for(lambda: False, timeout=0.1) is False\n"
    "# Barrier: BarrierProxy\n"
    "br = m.Barrier(3)\n"
    "assert br.parties == 3 and br.n_waiting == 0 and br.broken is False\n"
    "idx = []\n"
    "ts = run(*[lambda: idx.append(br.wait(30))] * 3)\n"
    "join(ts); assert sorted(idx) == [0, 1, 2], idx\n"
    "ts = run(lambda: raises(threading.BrokenBarrierError, br.wait, 30))\n"
    "t0 = time.monotonic()\n"
    "while br.n_waiting != 1 and time.monotonic() - t0 < 30: time.sleep(0.01)\n"
    "br.abort(); join(ts); assert br.broken is True\n"
    "raises(threading.BrokenBarrierError, br.wait)\n"
    "br.reset(); assert br.broken is False\n"
    "bt = m.Barrier(2, timeout=0.1)\n"
    "raises(threading.BrokenBarrierError, bt.wait)\n"
    "assert bt.broken is True\n"
    "del s, b, s0, e, c, br, bt\n"
    "print('ok')\n";

/* Beside a C process: argv[3..5] are the Semaphore's, the Event's and the
 * Barrier's ids, made by C, which holds the Semaphore; argv[6] a
 * Semaphore(1) whose unit a killed C child held. */
static const char py_shared[] =
    "from multiprocessing.managers import AcquirerProxy, EventProxy, BarrierProxy, Token\n"
    "s = AcquirerProxy(Token('Semaphore', address, sys.argv[3]), 'pickle', authkey=key)\n"
    "e = EventProxy(Token('Event', address, sys.argv[4]), 'pickle', authkey=key)\n"
    "br = BarrierProxy(Token('Barrier', address, sys.argv[5]), 'pickle', authkey=key)\n"
    "assert s.acquire(timeout=0.2) is False  # C holds it\n"
    "assert br.parties == 2\n"
    "i = br.wait(30)  # with C\n"
    "assert e.wait(30) is True  # C released the semaphore, then set it\n"
    "assert s.acquire(timeout=30) is True\n"
    "s.release()\n"
    "# a C process died holding the one unit of another: Python gets it\n"
    "s2 = AcquirerProxy(Token('Semaphore', address, sys.argv[6]), 'pickle', authkey=key)\n"
    "assert s2.acquire(timeout=30) is True\n"
    "print('ok', i)\n";

/* A Python process asleep in its read of a lock's reply is woken once, by
 * the grant (mgr_server_conn.c: requests are peeked, and taken out of the
 * socket once answered; taking one out at once woke the client sleeping
 * behind it for nothing, an AF_UNIX write-space wake-up). Its voluntary
 * context switches over the acquire count the wake-ups. */
static const char py_woken_once[] =
    "import resource\n"
    "import multiprocessing as mp\n"
    "def child(lock, d, w):\n"
    "    d.get('warm')  # this process's own connection, made first\n"
    "    time.sleep(0.05)  # the server is asleep when the request comes\n"
    "    w.send('ready')\n"
    "    n0 = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw\n"
    "    ok = lock.acquire(timeout=30)\n"
    "    n1 = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw\n"
    "    w.send((ok, n1 - n0))\n"
    "for i in range(3):\n"
    "    lock = m.Lock(); d = m.dict(); assert lock.acquire()\n"
    "    r, w = mp.Pipe(duplex=False)\n"
    "    p = mp.get_context('fork').Process(target=child, args=(lock, d, w))\n"
    "    p.start()\n"
    "    assert r.poll(30) and r.recv() == 'ready'\n"
    "    time.sleep(0.1)  # the child waits, asleep in its read of the reply\n"
    "    lock.release()\n"
    "    assert r.poll(30)\n"
    "    ok, woken = r.recv()\n"
    "    p.join(30); assert p.exitcode == 0\n"
    "    # 0 only if it had not gone to sleep yet (a very busy machine)\n"
    "    assert ok is True and woken <= 1, (ok, woken)\n"
    "print('ok')\n";

/* A Python getter parked on a Queue C made (argv[3] its id), blocked until
 * killed. */
static const char py_parked_getter[] =
    "from multiprocessing.managers import BaseProxy, Token\n"
    "q = BaseProxy(Token('Queue', address, sys.argv[3]), 'pickle', authkey=key)\n"
    "q._callmethod('get')\n"
    "sys.exit(3)  # never: it is killed while it waits\n";

static char *py_script(const char *body)
{
    size_t n = strlen(py_prelude) + strlen(body) + 1;
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n, "%s%s", py_prelude, body);
    return s;
}

static mp_manager *st_start(const char *address)
{
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    o.address = address;
    o.authkey = "py-key";
    o.authkey_len = 6;
    mp_manager *m = NULL;
    TU_ASSERT_STATUS(mp_manager_start(&m, &o), 0);
    return m;
}

static void run_types(const char *address)
{
    char *script = py_script(py_types);
    const char *py;
    for (size_t pyi = 0; (py = tu_python_at(pyi)) != NULL; pyi++) {
        mp_manager *m = st_start(address);
        const char *args[] = {mp_manager_address(m), "py-key", NULL};
        pid_t pid = tu_spawn_python_as(py, script, args, NULL, 0);
        assert_true(pid > 0);
        assert_int_equal(tu_wait_child(pid, PY_TIMEOUT), 0);
        TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
        mp_manager_free(m);
    }
    free(script);
}

static void test_python_sync_types_through_our_server_over_af_unix(void **state)
{
    (void)state;
    run_types(NULL);
}

static void test_python_sync_types_through_our_server_over_tcp(void **state)
{
    (void)state;
    run_types("tcp:127.0.0.1:0");
}

/* The id Python's Token names (our object's id, in hex). */
static void st_ident(const void *proxy, char *buf, size_t cap)
{
    snprintf(buf, cap, "%" PRIx64, (uint64_t)((const struct proxy *)proxy)->id);
}

static int child_takes_the_unit(void *arg)
{
    struct {
        mp_semproxy *s;
        int fd;
    } *sh = arg;
    if (mp_semproxy_acquire(sh->s, MT_LONG) != 0)
        return 10;
    mt_say(sh->fd);
    tu_sleep(TU_CHILD_LIFETIME); /* until killed */
    return 11;
}

static void test_c_and_python_share_a_semaphore_an_event_and_a_barrier(void **state)
{
    (void)state;
    char *script = py_script(py_shared);
    const char *py;
    for (size_t pyi = 0; (py = tu_python_at(pyi)) != NULL; pyi++) {
        mp_manager *m = st_start(NULL);
        mp_semproxy *s;
        mp_eventproxy *e;
        mp_barrierproxy *br;
        TU_ASSERT_STATUS(mp_manager_semaphore(m, 1, &s), 0);
        TU_ASSERT_STATUS(mp_manager_event(m, &e), 0);
        TU_ASSERT_STATUS(mp_manager_barrier(m, 2, MP_FOREVER, &br), 0);
        struct {
            mp_semproxy *s;
            int fd;
        } dead = {NULL, -1};
        int p[2];
        assert_int_equal(pipe(p), 0);
        dead.fd = p[1];
        TU_ASSERT_STATUS(mp_manager_semaphore(m, 1, &dead.s), 0);
        pid_t holder = tu_fork(child_takes_the_unit, &dead);
        assert_int_equal(mt_wait_byte(p[0], MT_LONG), 0);
        kill(holder, SIGKILL);
        assert_int_equal(tu_wait_child(holder, MT_LONG), -SIGKILL);
        close(p[0]);
        close(p[1]);
        char sid[32], eid[32], bid[32], did[32];
        st_ident(dead.s, did, sizeof did);
        st_ident(s, sid, sizeof sid);
        st_ident(e, eid, sizeof eid);
        st_ident(br, bid, sizeof bid);
        TU_ASSERT_STATUS(mp_semproxy_acquire(s, MT_LONG), 0);
        const char *args[] = {mp_manager_address(m), "py-key", sid, eid, bid, did, NULL};
        pid_t pid = tu_spawn_python_as(py, script, args, NULL, 0);
        assert_true(pid > 0);
        int i = mp_barrierproxy_wait(br, PY_TIMEOUT);
        assert_true(i == 0 || i == 1);
        TU_ASSERT_STATUS(mp_semproxy_release(s), 0);
        TU_ASSERT_STATUS(mp_eventproxy_set(e), 0);
        assert_int_equal(tu_wait_child(pid, PY_TIMEOUT), 0);
        /* Python released the unit it took */
        TU_ASSERT_STATUS(mp_semproxy_acquire(s, MP_NOWAIT), 0);
        /* Python holds that unit now: nothing is free */
        TU_ASSERT_STATUS(mp_semproxy_acquire(dead.s, MP_NOWAIT), MP_ETIMEDOUT);
        mp_semproxy_free(dead.s);
        mp_semproxy_free(s);
        mp_eventproxy_free(e);
        mp_barrierproxy_free(br);
        TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
        mp_manager_free(m);
    }
    free(script);
}

static void test_python_waiter_is_woken_once_by_its_grant(void **state)
{
    (void)state;
    /* The server's behaviour, not the interpreter's: python3 alone. */
    char *script = py_script(py_woken_once);
    mp_manager *m = st_start(NULL);
    const char *args[] = {mp_manager_address(m), "py-key", NULL};
    pid_t pid = tu_spawn_python_as("python3", script, args, NULL, 0);
    assert_true(pid > 0);
    assert_int_equal(tu_wait_child(pid, PY_TIMEOUT), 0);
    TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
    mp_manager_free(m);
    free(script);
}

/*
 * A Python getter's request waits in the server still peeked, its socket
 * polled only for a hang-up; the getter is killed and C puts an item right
 * behind its death, through the mailbox, before the server has read the
 * hang-up: the item must not go to the dead getter. Over TCP the hang-up
 * is a FIN behind the unread request (POLLRDHUP); over AF_UNIX, POLLHUP.
 */
static void getter_killed_takes_no_item(const char *address)
{
    char *script = py_script(py_parked_getter);
    mp_manager *m = st_start(address);
    mp_queueproxy *q;
    TU_ASSERT_STATUS(mp_manager_queue(m, 0, &q), 0);
    char qid[32];
    st_ident(q, qid, sizeof qid);
    for (int round = 0; round < 3; round++) {
        const char *args[] = {mp_manager_address(m), "py-key", qid, NULL};
        pid_t pid = tu_spawn_python_as("python3", script, args, NULL, 0);
        assert_true(pid > 0);
        assert_true(mt_eventually_waiting(m, 1));
        kill(pid, SIGKILL);
        assert_int_equal(tu_wait_child(pid, MT_LONG), -SIGKILL);
        mp_obj *x = mt_int(round), *item = NULL;
        TU_ASSERT_STATUS(mp_queueproxy_put(q, x, MT_LONG), 0);
        mp_obj_free(x);
        TU_ASSERT_STATUS(mp_queueproxy_get(q, &item, 2.0), 0);
        int64_t v = -1;
        TU_ASSERT_STATUS(mp_obj_get_int(item, &v), 0);
        assert_int_equal(v, round);
        mp_obj_free(item);
        assert_true(mt_eventually_waiting(m, 0));
    }
    mp_queueproxy_free(q);
    TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
    mp_manager_free(m);
    free(script);
}

static void test_python_getter_killed_while_waiting_takes_no_item_over_af_unix(void **state)
{
    (void)state;
    getter_killed_takes_no_item(NULL);
}

static void test_python_getter_killed_while_waiting_takes_no_item_over_tcp(void **state)
{
    (void)state;
    getter_killed_takes_no_item("tcp:127.0.0.1:0");
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_python_sync_types_through_our_server_over_af_unix),
        TU_TEST(test_python_sync_types_through_our_server_over_tcp),
        TU_TEST(test_c_and_python_share_a_semaphore_an_event_and_a_barrier),
        TU_TEST(test_python_waiter_is_woken_once_by_its_grant),
        TU_TEST(test_python_getter_killed_while_waiting_takes_no_item_over_af_unix),
        TU_TEST(test_python_getter_killed_while_waiting_takes_no_item_over_tcp),
    };
    return cmocka_run_group_tests_name("manager_python_sync", tests, NULL, NULL);
}
