/* manager_python_nested: proxies inside values (CPython pickles one as
 * managers.RebuildProxy) with real python3 processes. On our server a value
 * that holds a proxy keeps its object alive until the value lets go (and
 * no longer: the objects go when the holder does), a proxy a reply carries
 * works in the client that receives it, and Condition(m.Lock()) and
 * Condition(m.RLock()) are served over that lock. A C client reads such a
 * value as an inert reference, passes it on and makes a C proxy of it,
 * against our server and against CPython's. */
#include "pyserver_testutil.h"

#include "manager/mgr_client.h"

#include <mpipc/error.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PY_TIMEOUT 90.0
#define KEY        "nested-key"

/* argv[1] our address, argv[2] the key; the process's authkey is the
 * manager's, as a proxy rebuilt from a value (RebuildProxy gets none) uses
 * current_process().authkey. */
static const char py_prelude[] =
    "import gc, sys, threading, time, multiprocessing\n"
    "from multiprocessing.managers import SyncManager, DictProxy, Token\n"
    "a = sys.argv[1]\n"
    "if a.startswith('unix:'): address = a[5:]\n"
    "else: h, p = a[4:].rsplit(':', 1); address = (h, int(p))\n"
    "key = sys.argv[2].encode()\n"
    "multiprocessing.current_process().authkey = key\n"
    "SyncManager.register('shared_dict')\n"
    "m = SyncManager(address=address, authkey=key)\n"
    "m.connect()\n"
    "def objs(): gc.collect(); return m._number_of_objects()\n"
    "def raises(exc, f, *args, **kw):\n"
    "    try: f(*args, **kw)\n"
    "    except exc as e: return e\n"
    "    raise AssertionError('%r did not raise %s' % (f, exc.__name__))\n";

static const char py_lifetimes[] =
    "n0 = objs()\n"
    "# a dict keeps the list stored in it after the client's proxy is gone\n"
    "d = m.dict()\n"
    "d['x'] = m.list([1])\n"
    "assert objs() == n0 + 2\n"
    "d['x'].append(2)\n"
    "assert list(d['x']) == [1, 2]\n"
    "# pop hands the client a working proxy; the object goes with that proxy\n"
    "p = d.pop('x')\n"
    "p.append(3); assert list(p) == [1, 2, 3]\n"
    "del p; assert objs() == n0 + 1\n"
    "# overwriting and clearing let go too\n"
    "d['y'] = m.dict(k=1); d['y'] = 5\n"
    "assert objs() == n0 + 1\n"
    "d['z'] = [m.Queue(), {'deep': m.Event()}]\n"
    "assert objs() == n0 + 3\n"
    "d['z'][0].put(7); assert d['z'][0].get(timeout=5) == 7\n"
    "d['z'][1]['deep'].set(); assert d['z'][1]['deep'].is_set()\n"
    "d.clear(); assert objs() == n0 + 1\n"
    "# a list of lists goes as a whole\n"
    "a = m.list([m.list(range(3)) for _ in range(3)])\n"
    "assert objs() == n0 + 5\n"
    "a[0][2] = 55; assert list(a[0]) == [0, 1, 55]\n"
    "del a; assert objs() == n0 + 1\n"
    "# a queue holds what it carries until it is taken\n"
    "q = m.Queue(); q.put(m.list([9]))\n"
    "assert objs() == n0 + 3\n"
    "x = q.get(timeout=5); assert list(x) == [9]\n"
    "del x; assert objs() == n0 + 2\n"
    "# a Namespace too\n"
    "ns = m.Namespace(); ns.inner = m.dict(a=1)\n"
    "assert ns.inner['a'] == 1\n"
    "del ns; assert objs() == n0 + 2\n"
    "# a list that holds itself stays, as in CPython; nothing breaks\n"
    "b = m.list(); b.append(b); assert len(b[0]) == 1\n"
    "del b; assert objs() == n0 + 3\n"
    "del d, q\n"
    "print('ok')\n";

static const char py_condition[] =
    "n0 = objs()\n"
    "for lock in (m.Lock, m.RLock):\n"
    "    c = m.Condition(lock())  # the lock's own proxy goes at once\n"
    "    assert objs() == n0 + 2\n"
    "    raises(RuntimeError, c.wait, 0.1)\n"
    "    with c:\n"
    "        assert c.wait(0.1) is False\n"
    "        c.notify()\n"
    "    state = []; woke = []\n"
    "    def waiter():\n"
    "        with c: woke.append(c.wait_for(lambda: state, timeout=30))\n"
    "    ts = [threading.Thread(target=waiter) for _ in range(2)]\n"
    "    for t in ts: t.start()\n"
    "    time.sleep(0.3)\n"
    "    with c: state.append(1); c.notify_all()\n"
    "    for t in ts: t.join(30); assert not t.is_alive()\n"
    "    assert woke == [[1], [1]], woke\n"
    "    del c; assert objs() == n0\n"
    "# the Condition's lock is the given one: holding it holds the condition\n"
    "lk = m.Lock(); c = m.Condition(lk)\n"
    "assert lk.acquire(timeout=5)\n"
    "assert c.acquire(timeout=0.2) is False\n"
    "lk.release(); assert c.acquire(timeout=5); c.release()\n"
    "# another kind of lock is refused, and the server goes on\n"
    "raises(Exception, m.Condition, m.Event())\n"
    "del lk, c\n"
    "assert objs() == n0\n"
    "print('ok')\n";

static char *py_script(const char *body)
{
    size_t n = strlen(py_prelude) + strlen(body) + 1;
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n, "%s%s", py_prelude, body);
    return s;
}

static mp_manager *nt_start(const char *address)
{
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    o.address = address;
    o.authkey = KEY;
    o.authkey_len = strlen(KEY);
    mp_manager *m = NULL;
    TU_ASSERT_STATUS(mp_manager_start(&m, &o), 0);
    TU_ASSERT_STATUS(mp_manager_set_timeout(m, 30.0), 0);
    return m;
}

/* Run body under every interpreter against a new server of ours. */
static void nt_run(const char *body, const char *address)
{
    char *script = py_script(body);
    const char *py;
    for (size_t pyi = 0; (py = tu_python_at(pyi)) != NULL; pyi++) {
        mp_manager *m = nt_start(address);
        const char *args[] = {mp_manager_address(m), KEY, NULL};
        pid_t pid = tu_spawn_python_as(py, script, args, NULL, 0);
        assert_true(pid > 0);
        assert_int_equal(tu_wait_child(pid, PY_TIMEOUT), 0);
        TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
        mp_manager_free(m);
    }
    free(script);
}

static void test_values_holding_proxies_keep_their_objects_until_they_let_go(void **state)
{
    (void)state;
    nt_run(py_lifetimes, NULL);
    nt_run(py_lifetimes, "tcp:127.0.0.1:0");
}

static void test_python_condition_over_a_lock_proxy_is_served_with_that_lock(void **state)
{
    (void)state;
    nt_run(py_condition, NULL);
}

/* ---- a C client and proxy references -------------------------------------- */

/* argv[3]: a dict's id. 'store' puts a list proxy in it as 'inner';
 * 'check' finds what C copied to 'copy' to be that same list, which C
 * appended 3 to. */
static const char py_store_check[] =
    "D = DictProxy(Token('dict', address, sys.argv[3]), 'pickle', authkey=key)\n"
    "if sys.argv[4] == 'store':\n"
    "    D['inner'] = m.list([1, 2]); D['lock'] = m.Lock()\n"
    "else:\n"
    "    c = D['copy']; c.append(4)\n"
    "    assert list(D['copy']) == [1, 2, 3, 4], list(D['copy'])\n"
    "print('ok')\n";

/* A C proxy from ref, a reference to a list: it appends 3, and refuses to
 * be made as another kind; a Token of another address is refused. */
static void nt_use_list_ref(mp_manager *m, const mp_obj *ref)
{
    mp_listproxy *l = NULL;
    TU_ASSERT_STATUS(mp_manager_list_from_ref(m, ref, &l), 0);
    mp_obj *three = mt_int(3);
    TU_ASSERT_STATUS(mp_listproxy_append(l, three), 0);
    mp_obj_free(three);
    assert_int_equal(mp_listproxy_len(l), 3);
    mp_listproxy_free(l);
    mp_dictproxy *d = (mp_dictproxy *)1;
    TU_ASSERT_STATUS(mp_manager_dict_from_ref(m, ref, &d), MP_ETYPE);
    assert_null(d);
    mp_obj *notref = mt_int(1);
    TU_ASSERT_STATUS(mp_manager_list_from_ref(m, notref, &l), MP_ETYPE);
    mp_obj_free(notref);
    TU_ASSERT_STATUS(mp_manager_list_from_ref(m, NULL, &l), -EINVAL);
    const mp_obj *a = mp_obj_instance_args(ref);
    mp_obj *tok = mp_obj_build("(s(si)s)", "list", "127.0.0.1", 1, "1");
    mp_obj *t = mp_obj_instance_new("multiprocessing.managers.Token", tok);
    mp_obj *args = mp_obj_build("(OOOO)", mp_obj_list_get(a, 0), t, mp_obj_list_get(a, 2),
                                mp_obj_list_get(a, 3));
    mp_obj *other = mp_obj_instance_new("multiprocessing.managers.RebuildProxy", args);
    assert_non_null(other);
    TU_ASSERT_STATUS(mp_manager_list_from_ref(m, other, &l), MP_EVALUE);
    mp_obj_free(other);
    mp_obj_free(args);
    mp_obj_free(t);
    mp_obj_free(tok);
}

/* d['lock'], a Lock a Python client stored, through a C lock proxy. */
static void nt_use_lock_ref(mp_manager *m, mp_dictproxy *d)
{
    mp_obj *k = mt_str("lock"), *ref = NULL;
    TU_ASSERT_STATUS(mp_dictproxy_get(d, k, &ref), 0);
    mp_lockproxy *lk = NULL;
    TU_ASSERT_STATUS(mp_manager_lock_from_ref(m, ref, &lk), 0);
    TU_ASSERT_STATUS(mp_lockproxy_acquire(lk, 5.0), 0);
    TU_ASSERT_STATUS(mp_lockproxy_release(lk), 0);
    mp_lockproxy_free(lk);
    mp_queueproxy *q = NULL;
    TU_ASSERT_STATUS(mp_manager_queue_from_ref(m, ref, &q), MP_ETYPE);
    mp_obj_free(ref);
    mp_obj_free(k);
}

/* o is a proxy reference to a list (ListProxy, typeid 'list'). */
static void nt_assert_list_ref(const mp_obj *o)
{
    assert_int_equal(mp_obj_type(o), MP_TYPE_INSTANCE);
    assert_string_equal(mp_obj_instance_class(o), "multiprocessing.managers.RebuildProxy");
    const mp_obj *args = mp_obj_instance_args(o);
    const char *s;
    TU_ASSERT_STATUS(mp_obj_get_str(mp_obj_list_get(args, 0), &s, NULL), 0);
    assert_string_equal(s, "ListProxy");
    const mp_obj *tok = mp_obj_instance_args(mp_obj_list_get(args, 1));
    TU_ASSERT_STATUS(mp_obj_get_str(mp_obj_list_get(tok, 0), &s, NULL), 0);
    assert_string_equal(s, "list");
}

static void nt_python(const char *script, const char *address, const char *key, const char *id,
                      const char *mode)
{
    const char *args[] = {address, key, id, mode, NULL};
    pid_t pid = tu_spawn_python_as("python3", script, args, NULL, 0);
    assert_true(pid > 0);
    assert_int_equal(tu_wait_child(pid, PY_TIMEOUT), 0);
}

static void test_c_reads_and_passes_on_a_proxy_reference_on_our_server(void **state)
{
    (void)state;
    char *script = py_script(py_store_check);
    mp_manager *m = nt_start(NULL);
    mp_dictproxy *d;
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &d), 0);
    char id[32];
    snprintf(id, sizeof id, "%" PRIx64, (uint64_t)((const struct proxy *)d)->id);
    int64_t n0 = mt_info_int(m, "objects");
    nt_python(script, mp_manager_address(m), KEY, id, "store");
    /* Python is gone: the dict holds the list and the lock. */
    assert_int_equal(mt_info_int(m, "objects"), n0 + 2);
    nt_use_lock_ref(m, d);
    mp_obj *k = mt_str("inner"), *ref = NULL;
    TU_ASSERT_STATUS(mp_dictproxy_get(d, k, &ref), 0);
    nt_assert_list_ref(ref);
    nt_use_list_ref(m, ref);
    /* Passed on from C, it holds the list in turn. */
    mp_obj *k2 = mt_str("copy");
    TU_ASSERT_STATUS(mp_dictproxy_set(d, k2, ref), 0);
    TU_ASSERT_STATUS(mp_dictproxy_del(d, k), 0);
    assert_int_equal(mt_info_int(m, "objects"), n0 + 2);
    nt_python(script, mp_manager_address(m), KEY, id, "check");
    /* A list C makes with the reference in its initial value holds it too,
     * until that list goes. */
    mp_obj *init = mp_obj_build("[iO]", 1, ref);
    mp_listproxy *l2;
    TU_ASSERT_STATUS(mp_manager_list(m, init, &l2), 0);
    TU_ASSERT_STATUS(mp_dictproxy_del(d, k2), 0);
    assert_int_equal(mt_info_int(m, "objects"), n0 + 3);
    mp_listproxy_free(l2);
    assert_int_equal(mt_info_int(m, "objects"), n0 + 1); /* the lock */
    mp_obj_free(init);
    mp_obj_free(ref);
    mp_obj_free(k2);
    mp_obj_free(k);
    mp_dictproxy_free(d);
    TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
    mp_manager_free(m);
    free(script);
}

/* The same through CPython's server, its dict being the 'shared_dict'
 * typeid (pyserver_testutil.c). */
static const char py_cs_store_check[] =
    "D = m.shared_dict()\n"
    "if sys.argv[4] == 'store':\n"
    "    D['inner'] = m.list([1, 2]); D['lock'] = m.Lock()\n"
    "else:\n"
    "    c = D['copy']; c.append(4)\n"
    "    assert list(D['inner']) == [1, 2, 3, 4], list(D['inner'])\n"
    "print('ok')\n";

static void test_c_reads_and_passes_on_a_proxy_reference_on_cpythons_server(void **state)
{
    (void)state;
    char *script = py_script(py_cs_store_check);
    struct ps_server s;
    assert_int_equal(ps_start(&s, "python3", false, false, 0), 0);
    mp_manager *m = NULL;
    TU_ASSERT_STATUS(mp_manager_connect(&m, s.address, PS_KEY, PS_KEY_LEN, NULL), 0);
    TU_ASSERT_STATUS(mp_manager_set_timeout(m, 30.0), 0);
    nt_python(script, s.address, PS_KEY, "", "store");
    mp_dictproxy *d;
    TU_ASSERT_STATUS(mp_manager_attach_dict(m, "shared_dict", &d), 0);
    nt_use_lock_ref(m, d);
    mp_obj *k = mt_str("inner"), *ref = NULL;
    TU_ASSERT_STATUS(mp_dictproxy_get(d, k, &ref), 0);
    nt_assert_list_ref(ref);
    nt_use_list_ref(m, ref);
    mp_obj *k2 = mt_str("copy");
    TU_ASSERT_STATUS(mp_dictproxy_set(d, k2, ref), 0);
    nt_python(script, s.address, PS_KEY, "", "check");
    mp_obj_free(ref);
    mp_obj_free(k2);
    mp_obj_free(k);
    mp_dictproxy_free(d);
    mp_manager_free(m);
    assert_int_equal(ps_stop(&s), 0);
    free(script);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_values_holding_proxies_keep_their_objects_until_they_let_go),
        TU_TEST(test_python_condition_over_a_lock_proxy_is_served_with_that_lock),
        TU_TEST(test_c_reads_and_passes_on_a_proxy_reference_on_our_server),
        TU_TEST(test_c_reads_and_passes_on_a_proxy_reference_on_cpythons_server),
    };
    return cmocka_run_group_tests_name("manager_python_nested", tests, NULL, NULL);
}
