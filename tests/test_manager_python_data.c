/* manager_python_data: CPython's own SyncManager client on our server with
 * the types of mpipc/manager_data.h, under every interpreter tu_pythons
 * finds: Value, Array and Namespace with Python's proxy semantics and
 * exceptions; list sort (compared with Python's sorted on the same data),
 * reverse, +, *, += and *=; dict(pairs) and dict(m, **kw); JoinableQueue.
 * And a C process and a Python process sharing one Value (under one
 * Lock) and one Namespace. */
#include "mgr_testutil.h"

#include <mpipc/error.h>
#include <mpipc/listener.h>
#include <mpipc/manager.h>
#include <mpipc/manager_data.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define PY_TIMEOUT 120.0

#define PY_CONNECT                                                                                 \
    "import sys\n"                                                                                 \
    "a = sys.argv[1]\n"                                                                            \
    "if a.startswith('unix:'): address = a[5:]\n"                                                  \
    "else: h, p = a[4:].rsplit(':', 1); address = (h, int(p))\n"                                   \
    "key = sys.argv[2].encode()\n"                                                                 \
    "def raises(exc, f, *args, **kw):\n"                                                           \
    "    try: f(*args, **kw)\n"                                                                    \
    "    except exc as e: return e\n"                                                              \
    "    raise AssertionError('%r did not raise %s' % (f, exc.__name__))\n"

static const char py_client[] = PY_CONNECT
    "from multiprocessing.managers import SyncManager\n"
    "m = SyncManager(address=address, authkey=key)\n"
    "m.connect()\n"
    "# Value: managers.Value keeps any value\n"
    "v = m.Value('i', 5)\n"
    "assert v.value == 5 and v.get() == 5\n"
    "v.value = 7; assert v.value == 7\n"
    "v.set('any'); assert v.get() == 'any'\n"
    "# Array: array.array's rules\n"
    "a = m.Array('i', [1, 2, 3])\n"
    "assert len(a) == 3 and a[0] == 1 and a[-1] == 3\n"
    "a[1] = 20; assert list(a) == [1, 20, 3], list(a)\n"
    "raises(IndexError, a.__getitem__, 3)\n"
    "raises(TypeError, a.__setitem__, 0, 1.5)\n"
    "raises(OverflowError, a.__setitem__, 0, 2**40)\n"
    "assert list(a) == [1, 20, 3]\n"
    "d = m.Array('d', [1, 2.5]); assert list(d) == [1.0, 2.5] and type(d[0]) is float\n"
    "q = m.Array('Q', [2**64 - 1]); assert q[0] == 2**64 - 1\n"
    "# Namespace\n"
    "ns = m.Namespace(x=1, y='two')\n"
    "assert ns.x == 1 and ns.y == 'two'\n"
    "ns.z = [3]; assert ns.z == [3]\n"
    "del ns.x\n"
    "e = raises(AttributeError, getattr, ns, 'x'); assert 'x' in str(e), str(e)\n"
    "raises(AttributeError, delattr, ns, 'nope')\n"
    "# sort: the same data through our server and Python's sorted\n"
    "datas = [\n"
    "    [3, 1.5, True, -2**70, 2**64, 0, -1.0, 2.0, 2, float('inf'), False, 1, 1.0,\n"
    "     float('-inf'), 2**63, 2**63 + 0.0, -2**63, 9007199254740993, 9007199254740992.0],\n"
    "    ['b', 'a', '\\u00e9', 'ab', '', '\\U0001f600', 'Z', '\\uffff', 'a\\x00'],\n"
    "    [b'b', b'a\\x00', b'', b'\\xff', b'a'],\n"
    "    [(1, 'b'), (1, 'a'), (0,), (1,), (1, 'a', 0), (), (0, 1.0), (0, True)],\n"
    "    [[2], [1, [3]], [1, [2]], [], [1]],\n"
    "    list(range(200, 0, -7)) + [x * 0.5 for x in range(60)],\n"
    "]\n"
    "def typed(xs): return [(type(x), x) for x in xs]\n"
    "for data in datas:\n"
    "    l = m.list(data)\n"
    "    l.sort(); assert typed(l._getvalue()) == typed(sorted(data)), (l._getvalue(), "
    "sorted(data))\n"
    "    l = m.list(data)\n"
    "    l.sort(reverse=True)\n"
    "    assert typed(l._getvalue()) == typed(sorted(data, reverse=True)), l._getvalue()\n"
    "mixed = m.list([1, 'a', 2])\n"
    "e = raises(TypeError, mixed.sort); assert mixed._getvalue() == [1, 'a', 2]\n"
    "# a key function cannot travel (the decoder imports nothing): refused\n"
    "from multiprocessing.managers import RemoteError\n"
    "raises(RemoteError, mixed.sort, key=len); assert mixed._getvalue() == [1, 'a', 2]\n"
    "n = m.list([2, 1]); n.sort(key=None, reverse=False); assert n._getvalue() == [1, 2]\n"
    "l2 = m.list([1, 2, 3]); l2.reverse(); assert l2._getvalue() == [3, 2, 1]\n"
    "l2 += [4]; assert l2._getvalue() == [3, 2, 1, 4]\n"
    "assert l2 + [9] == [3, 2, 1, 4, 9] and l2 * 2 == [3, 2, 1, 4] * 2 and 2 * l2 == l2 * 2\n"
    "l2 *= 2; assert l2._getvalue() == [3, 2, 1, 4, 3, 2, 1, 4]\n"
    "l2 *= 0; assert l2._getvalue() == []\n"
    "# a repeat that could never be sent back is refused, the list unchanged\n"
    "assert l2 * 10**15 == [] and 10**15 * l2 == []\n"
    "l2.extend([1, 2]); raises(RemoteError, l2.__imul__, 10**12)\n"
    "raises(RemoteError, l2.__mul__, 10**12); assert l2._getvalue() == [1, 2]\n"
    "# creation with initial contents\n"
    "d1 = m.dict([('a', 1), ('b', 2)]); assert d1.copy() == {'a': 1, 'b': 2}\n"
    "d2 = m.dict({'a': 1}, b=2); assert d2.copy() == {'a': 1, 'b': 2}\n"
    "l3 = m.list((1, 2)); assert l3._getvalue() == [1, 2]\n"
    "# JoinableQueue\n"
    "jq = m.JoinableQueue(); jq.put(1); assert jq.get(timeout=10) == 1\n"
    "jq.task_done(); jq.join()\n"
    "del v, a, d, q, ns, l, l2, l3, mixed, n, d1, d2, jq\n"
    "print('ok')\n";

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
        const char *args[] = {mp_manager_address(m), "py-key", NULL};
        pid_t pid = tu_spawn_python_as(py, py_client, args, NULL, 0);
        assert_true(pid > 0);
        assert_int_equal(tu_wait_child(pid, PY_TIMEOUT), 0);
        /* Python's references are all gone: so are the objects. */
        TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
        mp_manager_free(m);
    }
}

static void test_python_uses_value_array_namespace_and_sort_over_af_unix(void **state)
{
    (void)state;
    run_python_against(NULL);
}

static void test_python_uses_value_array_namespace_and_sort_over_tcp(void **state)
{
    (void)state;
    run_python_against("tcp:127.0.0.1:0");
}

/* ---- one Value and one Namespace, a C process and a Python process ----------------- */

#define SHARE_ROUNDS 100

/* The id (as Python's ident, hex) of the object called name: attached by
 * a raw connection of our own dialect. */
static void ident_of(mp_manager *m, const char *kind, const char *name, char hex[32])
{
    mp_conn *c = mt_raw_connect(m);
    mt_raw_hello(c, 4242, 0);
    mp_obj *req = mt_request(0, "attach", mp_obj_build("(ss)", kind, name));
    TU_ASSERT_STATUS(mp_conn_send(c, req), 0);
    mp_obj_free(req);
    mp_obj *r = NULL;
    TU_ASSERT_STATUS(mp_conn_recv(c, &r, MT_LONG), 0);
    int64_t id = 0;
    TU_ASSERT_STATUS(mp_obj_get_int(mp_obj_list_get(mp_obj_list_get(r, 1), 0), &id), 0);
    snprintf(hex, 32, "%" PRIx64, (uint64_t)id);
    mp_obj_free(r);
    mp_conn_free(c);
}

static const char py_share[] = PY_CONNECT
    "from multiprocessing.managers import ValueProxy, NamespaceProxy, AcquirerProxy, Token\n"
    "v = ValueProxy(Token('Value', address, sys.argv[3]), 'pickle', authkey=key)\n"
    "lk = AcquirerProxy(Token('Lock', address, sys.argv[4]), 'pickle', authkey=key)\n"
    "ns = NamespaceProxy(Token('Namespace', address, sys.argv[5]), 'pickle', authkey=key)\n"
    "assert ns.from_c == 'c', ns.from_c\n"
    "for i in range(int(sys.argv[6])):\n"
    "    with lk: v.value += 1\n"
    "ns.from_python = [1, 'py']\n"
    "print('ok')\n";

struct share {
    mp_valueproxy *v;
    mp_lockproxy *lock;
};

static int child_increments(void *arg)
{
    struct share *sh = arg;
    for (int i = 0; i < SHARE_ROUNDS; i++) {
        int64_t x;
        if (mp_lockproxy_acquire(sh->lock, MT_LONG) != 0 || mp_valueproxy_get_int(sh->v, &x) != 0 ||
            mp_valueproxy_set_int(sh->v, x + 1) != 0 || mp_lockproxy_release(sh->lock) != 0)
            return 1;
    }
    return 0;
}

/* A C process and a Python process increment one Value under one manager
 * Lock at the same time: no increment is lost; each sees the other's
 * Namespace attribute. */
static void test_c_and_python_processes_share_one_value_and_namespace(void **state)
{
    (void)state;
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    o.authkey = "py-key";
    o.authkey_len = 6;
    mp_manager *m = NULL;
    TU_ASSERT_STATUS(mp_manager_start(&m, &o), 0);
    struct share sh;
    mp_nsproxy *ns = NULL;
    mp_obj *zero = mp_obj_int(0), *c = mt_str("c");
    TU_ASSERT_STATUS(mp_manager_value_named(m, "counter", "i", zero, &sh.v), 1);
    TU_ASSERT_STATUS(mp_manager_lock_named(m, "guard", false, &sh.lock), 1);
    TU_ASSERT_STATUS(mp_manager_namespace_named(m, "ns", NULL, &ns), 1);
    TU_ASSERT_STATUS(mp_nsproxy_set(ns, "from_c", c), 0);
    char vid[32], lid[32], nid[32], rounds[16];
    ident_of(m, "value", "counter", vid);
    ident_of(m, "lock", "guard", lid);
    ident_of(m, "namespace", "ns", nid);
    snprintf(rounds, sizeof rounds, "%d", SHARE_ROUNDS);
    const char *args[] = {mp_manager_address(m), "py-key", vid, lid, nid, rounds, NULL};
    pid_t py = tu_spawn_python(py_share, args, NULL, 0);
    assert_true(py > 0);
    pid_t cp = tu_fork(child_increments, &sh);
    assert_int_equal(tu_wait_child(cp, PY_TIMEOUT), 0);
    assert_int_equal(tu_wait_child(py, PY_TIMEOUT), 0);
    int64_t x = -1;
    TU_ASSERT_STATUS(mp_valueproxy_get_int(sh.v, &x), 0);
    assert_int_equal(x, 2 * SHARE_ROUNDS);
    mp_obj *got = NULL;
    TU_ASSERT_STATUS(mp_nsproxy_get(ns, "from_python", &got), 0);
    mt_take_repr(got, "[1, 'py']");
    mp_obj_free(zero);
    mp_obj_free(c);
    mp_nsproxy_free(ns);
    mp_valueproxy_free(sh.v);
    mp_lockproxy_free(sh.lock);
    TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
    mp_manager_free(m);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_python_uses_value_array_namespace_and_sort_over_af_unix),
        TU_TEST(test_python_uses_value_array_namespace_and_sort_over_tcp),
        TU_TEST(test_c_and_python_processes_share_one_value_and_namespace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
