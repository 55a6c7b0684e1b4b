/* manager_python: CPython's own manager client - SyncManager(address=,
 * authkey=).connect() and its proxies - against our server, over AF_UNIX
 * and TCP, under every interpreter tu_pythons finds: dict (and its
 * iterator), list, Queue, Lock and RLock with Python's proxy semantics;
 * KeyError, IndexError, queue.Empty, queue.Full and RuntimeError reaching
 * Python as themselves; a Lock released by another thread, and an RLock
 * whose holder died passing to the next acquirer. A C client keeps
 * working on the same server meanwhile. */
#include "mgr_testutil.h"

#include <mpipc/error.h>

#include <stdio.h>
#include <string.h>

#define PY_TIMEOUT 90.0

static const char py_client[] =
    "import sys, queue, threading, time\n"
    "from multiprocessing.managers import SyncManager\n"
    "a = sys.argv[1]\n"
    "if a.startswith('unix:'): address = a[5:]\n"
    "else: h, p = a[4:].rsplit(':', 1); address = (h, int(p))\n"
    "m = SyncManager(address=address, authkey=sys.argv[2].encode())\n"
    "m.connect()\n"
    "def raises(exc, f, *args, **kw):\n"
    "    try: f(*args, **kw)\n"
    "    except exc as e: return e\n"
    "    raise AssertionError('%r did not raise %s' % (f, exc.__name__))\n"
    "# dict: Python's DictProxy\n"
    "d = m.dict()\n"
    "d['a'] = 1; d['b'] = [1, 2]\n"
    "assert d['a'] == 1 and len(d) == 2 and 'a' in d and 'q' not in d\n"
    "assert d.get('zz') is None and d.get('zz', 5) == 5\n"
    "e = raises(KeyError, d.__getitem__, 'missing'); assert e.args == ('missing',), e.args\n"
    "e = raises(KeyError, d.__delitem__, ('t', 1)); assert e.args == (('t', 1),), e.args\n"
    "assert d.pop('a') == 1 and d.pop('a', 7) == 7\n"
    "raises(KeyError, d.pop, 'a')\n"
    "assert d.keys() == ['b'] and d.items() == [('b', [1, 2])] and d.values() == [[1, 2]]\n"
    "d.update({'x': 2}); d.update(y=3)\n"
    "assert d.setdefault('x', 9) == 2 and d.setdefault('z') is None\n"
    "assert d.copy() == {'b': [1, 2], 'x': 2, 'y': 3, 'z': None}, d.copy()\n"
    "assert d._getvalue() == d.copy()\n"
    "raises(TypeError, d.__setitem__, [1], 2)\n"
    "d2 = m.dict({'k': 'v'}); assert d2['k'] == 'v' and len(d2) == 1\n"
    "# iteration: DictProxy.__iter__ gives an Iterator proxy ('#PROXY' reply)\n"
    "assert sorted(d) == ['b', 'x', 'y', 'z'] and [k for k in d2] == ['k']\n"
    "it = iter(d2); assert next(it) == 'k'; raises(StopIteration, next, it)\n"
    "d.clear(); assert len(d) == 0\n"
    "# list: Python's ListProxy\n"
    "l = m.list([1, 2, 3])\n"
    "l.append(4); l.extend([5, 6])\n"
    "assert l[-1] == 6 and len(l) == 6 and l.index(2) == 1 and l.count(1) == 1 and 3 in l\n"
    "# each IndexError in Python's own words\n"
    "for f, args, text in [(l.__getitem__, (10,), 'list index out of range'),\n"
    "                      (l.__setitem__, (10, 0), 'list assignment index out of range'),\n"
    "                      (l.__delitem__, (10,), 'list assignment index out of range'),\n"
    "                      (l.pop, (10,), 'pop index out of range'),\n"
    "                      (m.list().pop, (), 'pop from empty list')]:\n"
    "    e = raises(IndexError, f, *args); assert e.args == (text,), e.args\n"
    "raises(ValueError, l.remove, 99)\n"
    "raises(ValueError, l.index, 99)\n"
    "l[0] = 'x'; del l[1]; l.insert(0, 'y')\n"
    "assert l.pop() == 6 and l.pop(0) == 'y'\n"
    "assert l._getvalue() == ['x', 3, 4, 5], l._getvalue()\n"
    "assert list(l) == ['x', 3, 4, 5]\n"
    "# Queue: AutoProxy of queue.Queue\n"
    "q = m.Queue(2)\n"
    "q.put(1); q.put(2)\n"
    "assert q.full() and q.qsize() == 2\n"
    "t0 = time.monotonic(); raises(queue.Full, q.put, 3, timeout=0.1)\n"
    "assert time.monotonic() - t0 >= 0.075\n"
    "raises(queue.Full, q.put_nowait, 3); raises(queue.Full, q.put, 3, False)\n"
    "assert q.get() == 1 and q.get_nowait() == 2 and q.empty()\n"
    "raises(queue.Empty, q.get, timeout=0.1); raises(queue.Empty, q.get_nowait)\n"
    "raises(queue.Empty, q.get, False)\n"
    "def later(): time.sleep(0.15); q.put('late')\n"
    "th = threading.Thread(target=later); th.start()\n"
    "assert q.get(timeout=20) == 'late'; th.join()\n"
    "q.task_done(); q.task_done(); q.task_done(); q.join()\n"
    "raises(ValueError, q.task_done)\n"
    "# Lock and RLock: AcquirerProxy\n"
    "lk = m.Lock()\n"
    "assert lk.acquire() is True\n"
    "assert lk.acquire(timeout=0.1) is False and lk.acquire(False) is False\n"
    "lk.release()\n"
    "with lk: pass\n"
    "raises(RuntimeError, lk.release)\n"
    "rl = m.RLock()\n"
    "assert rl.acquire() and rl.acquire(blocking=True, timeout=1)\n"
    "rl.release(); rl.release()\n"
    "raises(RuntimeError, rl.release)\n"
    "# a lock held by another thread (another connection) blocks, then passes\n"
    "lk.acquire()\n"
    "got = []\n"
    "th = threading.Thread(target=lambda: got.append(lk.acquire(timeout=20)))\n"
    "th.start(); time.sleep(0.15); lk.release(); th.join()\n"
    "assert got == [True], got\n"
    "lk.release()  # a Python Lock has no owner: another thread releases it\n"
    "# a process that dies holding an RLock: the next acquirer gets it\n"
    "import subprocess\n"
    "child = ('import os, sys\\n'\n"
    "    'from multiprocessing.managers import AcquirerProxy, Token\\n'\n"
    "    'p = AcquirerProxy(Token(\"RLock\", %r, %r), \"pickle\", authkey=%r)\\n'\n"
    "    'assert p.acquire(timeout=5)\\nos._exit(0)\\n') % (address, rl._token.id,\n"
    "    sys.argv[2].encode())\n"
    "subprocess.run([sys.executable, '-c', child], check=True, timeout=60)\n"
    "assert rl.acquire(timeout=20) is True\n"
    "rl.release()\n"
    "del d, d2, l, q, lk, rl\n"
    "print('ok')\n";

/* A C client makes a dict, the Python client runs, and the C dict is
 * still served: both dialects on one server. */
static void run_python_against(const char *address_opt)
{
    const char *py;
    for (size_t pyi = 0; (py = tu_python_at(pyi)) != NULL; pyi++) {
        mp_manager_opts o = MP_MANAGER_OPTS_INIT;
        o.address = address_opt;
        o.authkey = "py-key";
        o.authkey_len = 6;
        mp_manager *m = NULL;
        TU_ASSERT_STATUS(mp_manager_start(&m, &o), 0);
        mp_dictproxy *d = NULL;
        TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &d), 0);
        mp_obj *k = mt_str("c"), *v = mt_int(1);
        TU_ASSERT_STATUS(mp_dictproxy_set(d, k, v), 0);

        const char *args[] = {mp_manager_address(m), "py-key", NULL};
        pid_t pid = tu_spawn_python_as(py, py_client, args, NULL, 0);
        assert_true(pid > 0);
        assert_int_equal(tu_wait_child(pid, PY_TIMEOUT), 0);

        mp_obj *got = NULL;
        TU_ASSERT_STATUS(mp_dictproxy_get(d, k, &got), 0);
        assert_true(mp_obj_equal(got, v));
        mp_obj_free(got);
        mp_obj_free(k);
        mp_obj_free(v);
        mp_dictproxy_free(d);
        TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
        mp_manager_free(m);
    }
}

static void test_python_syncmanager_uses_our_server_over_af_unix(void **state)
{
    (void)state;
    run_python_against(NULL);
}

static void test_python_syncmanager_uses_our_server_over_tcp(void **state)
{
    (void)state;
    run_python_against("tcp:127.0.0.1:0");
}

/* Python's server answers what it does not know with a traceback, which
 * its client raises as RemoteError: so do we, for a typeid we do not serve
 * yet and an unknown public call, and the connection stays usable. */
static const char py_unsupported[] =
    "import sys\n"
    "from multiprocessing.managers import SyncManager, RemoteError, dispatch\n"
    "from multiprocessing.connection import Client\n"
    "a = sys.argv[1]\n"
    "m = SyncManager(address=a[5:], authkey=b'py-key')\n"
    "m.connect()\n"
    "try: m.Pool(); raise SystemExit('Pool served?')\n"
    "except RemoteError as e: assert 'Pool' in str(e), str(e)\n"
    "c = Client(a[5:], authkey=b'py-key')\n"
    "try: dispatch(c, None, 'nonesuch'); raise SystemExit('nonesuch served?')\n"
    "except RemoteError as e: assert 'nonesuch' in str(e), str(e)\n"
    "assert dispatch(c, None, 'dummy') is None\n"
    "assert dispatch(c, None, 'number_of_objects') >= 0\n"
    "ident, exposed = dispatch(c, None, 'create', ('dict',))\n"
    "assert '__getitem__' in exposed\n"
    "from multiprocessing.managers import Token\n"
    "assert 'keys' in dispatch(c, None, 'get_methods', (Token('dict', a[5:], ident),))\n"
    "dispatch(c, None, 'decref', (ident,))\n"
    "try: dispatch(c, None, 'decref', (ident,)); raise SystemExit('decref of a freed object')\n"
    "except RemoteError: pass\n"
    "print('ok')\n";

static void test_python_client_gets_remote_errors_for_what_we_do_not_serve(void **state)
{
    (void)state;
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    o.authkey = "py-key";
    o.authkey_len = 6;
    mp_manager *m = NULL;
    TU_ASSERT_STATUS(mp_manager_start(&m, &o), 0);
    const char *args[] = {mp_manager_address(m), NULL};
    pid_t pid = tu_spawn_python(py_unsupported, args, NULL, 0);
    assert_true(pid > 0);
    assert_int_equal(tu_wait_child(pid, PY_TIMEOUT), 0);
    /* The C client was never disturbed. */
    mp_obj *info = NULL;
    TU_ASSERT_STATUS(mp_manager_info(m, &info), 0);
    mp_obj_free(info);
    TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
    mp_manager_free(m);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_python_syncmanager_uses_our_server_over_af_unix),
        TU_TEST(test_python_syncmanager_uses_our_server_over_tcp),
        TU_TEST(test_python_client_gets_remote_errors_for_what_we_do_not_serve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
