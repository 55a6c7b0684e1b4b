/* manager_mixed: C and Python programs sharing one dict, one lock and one
 * queue through either server - ours (mp_manager_start; Python's clients
 * speak CPython's dialect to it) and CPython's (a Python SyncManager;
 * our client speaks its protocol). The seed's program: d['count'] = 100,
 * and 100 processes each do `with lock: d['count'] -= 1` and put their
 * language on the queue - 50 forked C children and 50 python3 processes
 * (cycling through every interpreter tu_pythons finds), started in
 * batches so that 2 cores cope - leaving 0 and 50 + 50 items, as it does
 * with Python alone. */
#include "manager/mgr_client.h"
#include "pyserver_testutil.h"

#include <mpipc/error.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MX_EACH    50 /* processes of each language */
#define MX_BATCH   10 /* of each language at a time */
#define MX_TIMEOUT 120.0

/* A Python client: the shared objects from Tokens of their idents (any
 * server: `token`), or from the typeids the server registered (CPython's:
 * `typeid`), then the seed's decrement and its language on the queue. */
static const char py_client[] =
    "import sys\n"
    "from multiprocessing.managers import (SyncManager, Token, DictProxy, AcquirerProxy,\n"
    "                                      MakeProxyType)\n"
    "a, key, mode = sys.argv[1], sys.argv[2].encode(), sys.argv[3]\n"
    "if a.startswith('unix:'): address = a[5:]\n"
    "else: h, p = a[4:].rsplit(':', 1); address = (h, int(p))\n"
    "QP = MakeProxyType('QP', ('put', 'get', 'qsize'))\n"
    "if mode == 'token':\n"
    "    did, lid, qid = sys.argv[4:7]\n"
    "    d = DictProxy(Token('dict', address, did), 'pickle', authkey=key)\n"
    "    lk = AcquirerProxy(Token('Lock', address, lid), 'pickle', authkey=key)\n"
    "    q = QP(Token('Queue', address, qid), 'pickle', authkey=key)\n"
    "else:\n"
    "    class M(SyncManager): pass\n"
    "    M.register('shared_dict', proxytype=DictProxy)\n"
    "    M.register('shared_lock', proxytype=AcquirerProxy)\n"
    "    M.register('shared_queue', proxytype=QP)\n"
    "    m = M(address=address, authkey=key); m.connect()\n"
    "    d, lk, q = m.shared_dict(), m.shared_lock(), m.shared_queue()\n"
    "with lk:\n"
    "    d['count'] -= 1\n"
    "q.put('py')\n";

struct mx {
    mp_dictproxy *d;
    mp_lockproxy *lock;
    mp_queueproxy *q;
};

/* A C child: the same, through the proxies it inherited. */
static int mx_child(void *arg)
{
    struct mx *x = arg;
    int rc = mp_lockproxy_acquire(x->lock, MX_TIMEOUT);
    if (rc < 0 && rc != MP_EOWNERDEAD)
        return 1;
    int64_t v = 0;
    rc = mp_dictproxy_get_int(x->d, "count", &v);
    if (rc == 0)
        rc = mp_dictproxy_set_int(x->d, "count", v - 1);
    if (mp_lockproxy_release(x->lock) < 0 || rc < 0)
        return 2;
    mp_obj *c = mt_str("c");
    rc = mp_queueproxy_put(x->q, c, MX_TIMEOUT);
    mp_obj_free(c);
    return rc < 0 ? 3 : 0;
}

/* An object's ident as Python's proxies name it ('%x'). */
static void mx_ident(const void *proxy, char *buf, size_t cap)
{
    snprintf(buf, cap, "%" PRIx64, (uint64_t)((const struct proxy *)proxy)->id);
}

/* Run the 100 processes on the objects in x at address, then check. */
static void mx_run(struct mx *x, const char *address, const char *key, bool token)
{
    char did[24], lid[24], qid[24];
    mx_ident(x->d, did, sizeof did);
    mx_ident(x->lock, lid, sizeof lid);
    mx_ident(x->q, qid, sizeof qid);
    const char *args[] = {address, key, token ? "token" : "typeid", did, lid, qid, NULL};
    const char *pys[TU_MAX_PYTHONS];
    size_t npy = tu_pythons(pys);
    for (int b = 0; b < MX_EACH / MX_BATCH; b++) {
        pid_t pids[2 * MX_BATCH];
        for (int i = 0; i < MX_BATCH; i++) {
            pids[2 * i] = tu_fork(mx_child, x);
            pids[2 * i + 1] =
                tu_spawn_python_as(pys[(size_t)(b * MX_BATCH + i) % npy], py_client, args, NULL, 0);
        }
        for (int i = 0; i < 2 * MX_BATCH; i++) {
            assert_true(pids[i] > 0);
            assert_int_equal(tu_wait_child(pids[i], MX_TIMEOUT), 0);
        }
    }
    int64_t v = -1;
    TU_ASSERT_STATUS(mp_dictproxy_get_int(x->d, "count", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(mp_queueproxy_qsize(x->q), 2 * MX_EACH);
    int n_c = 0, n_py = 0;
    for (int i = 0; i < 2 * MX_EACH; i++) {
        mp_obj *it = NULL;
        TU_ASSERT_STATUS(mp_queueproxy_get(x->q, &it, 10.0), 0);
        const char *s;
        size_t len;
        TU_ASSERT_STATUS(mp_obj_get_str(it, &s, &len), 0);
        if (len == 1 && s[0] == 'c')
            n_c++;
        else if (len == 2 && memcmp(s, "py", 2) == 0)
            n_py++;
        mp_obj_free(it);
    }
    assert_int_equal(n_c, MX_EACH);
    assert_int_equal(n_py, MX_EACH);
}

static void mx_free(struct mx *x)
{
    mp_dictproxy_free(x->d);
    mp_lockproxy_free(x->lock);
    mp_queueproxy_free(x->q);
}

/* Our server: the C program makes the objects; Python's proxies reach
 * them by their tokens, as a Python program hands proxies to others. */
static void test_c_and_python_decrement_one_dict_under_one_lock_on_our_server(void **state)
{
    (void)state;
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    o.authkey = "mixed-key";
    o.authkey_len = 9;
    mp_manager *m = NULL;
    TU_ASSERT_STATUS(mp_manager_start(&m, &o), 0);
    struct mx x = {0};
    mp_obj *init = mt_dict1("count", 100);
    TU_ASSERT_STATUS(mp_manager_dict(m, init, &x.d), 0);
    mp_obj_free(init);
    TU_ASSERT_STATUS(mp_manager_lock(m, &x.lock), 0);
    TU_ASSERT_STATUS(mp_manager_queue(m, 0, &x.q), 0);
    mx_run(&x, mp_manager_address(m), "mixed-key", true);
    mx_free(&x);
    TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
    mp_manager_free(m);
}

/* CPython's server: the Python program registered the objects; the C
 * program attaches to them by typeid, Python's clients call the typeids
 * (the seed's SyncManager.register / connect). */
static void test_c_and_python_decrement_one_dict_under_one_lock_on_cpython_server(void **state)
{
    (void)state;
    struct ps_server s;
    assert_int_equal(ps_start(&s, "python3", false, false, 100), 0);
    mp_manager *m = NULL;
    TU_ASSERT_STATUS(mp_manager_connect(&m, s.address, PS_KEY, PS_KEY_LEN, NULL), 0);
    TU_ASSERT_STATUS(mp_manager_set_timeout(m, 30.0), 0);
    struct mx x = {0};
    TU_ASSERT_STATUS(mp_manager_attach_dict(m, "shared_dict", &x.d), 0);
    TU_ASSERT_STATUS(mp_manager_attach_lock(m, "shared_lock", &x.lock), 0);
    TU_ASSERT_STATUS(mp_manager_attach_queue(m, "shared_queue", &x.q), 0);
    mx_run(&x, s.address, PS_KEY, false);
    mx_free(&x);
    mp_manager_free(m);
    assert_int_equal(ps_stop(&s), 0);
}

/* The same on CPython's server with Python's proxies made from tokens of
 * objects the C program created there. */
static void test_python_proxies_reach_objects_c_created_on_cpython_server(void **state)
{
    (void)state;
    struct ps_server s;
    assert_int_equal(ps_start(&s, "python3", true, true, 0), 0);
    mp_manager *m = NULL;
    TU_ASSERT_STATUS(mp_manager_connect(&m, s.address, PS_KEY, PS_KEY_LEN, NULL), 0);
    TU_ASSERT_STATUS(mp_manager_set_timeout(m, 30.0), 0);
    struct mx x = {0};
    mp_obj *init = mt_dict1("count", 100);
    TU_ASSERT_STATUS(mp_manager_dict(m, init, &x.d), 0);
    mp_obj_free(init);
    TU_ASSERT_STATUS(mp_manager_lock(m, &x.lock), 0);
    TU_ASSERT_STATUS(mp_manager_queue(m, 0, &x.q), 0);
    mx_run(&x, s.address, PS_KEY, true);
    mx_free(&x);
    TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
    mp_manager_free(m);
    assert_int_equal(ps_stop(&s), 0);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_c_and_python_decrement_one_dict_under_one_lock_on_our_server),
        TU_TEST(test_c_and_python_decrement_one_dict_under_one_lock_on_cpython_server),
        TU_TEST(test_python_proxies_reach_objects_c_created_on_cpython_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
