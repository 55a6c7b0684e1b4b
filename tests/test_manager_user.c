/* manager_user: types of your own (mpipc/manager_user.h) served by our
 * manager: C clients in forked processes share one object by its proxy;
 * a method's status reaches C as itself and Python (BaseManager.register)
 * as the exception of the same meaning; an unknown method, a wrong number
 * of arguments and an unknown typeid get named errors and the object
 * loses nothing (also for requests made by hand on the wire); the type's
 * free runs when the last holder releases; mp_manager_serve serves types;
 * CPython's server gets -ENOTSUP. */
#include "mgr_testutil.h"
#include "pyserver_testutil.h"

#include <mpipc/error.h>
#include <mpipc/listener.h>
#include <mpipc/manager_user.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PY_TIMEOUT 90.0

/* Tally: totals by key, each at most the limit create was given. */
struct tally {
    mp_obj *totals; /* dict: key -> int */
    int64_t limit;
};

static int tally_live; /* in the server process: tallies not yet freed */

static int tally_create(const mp_obj *args, void **self)
{
    int64_t limit = 1000;
    if (mp_obj_len(args) > 1)
        return MP_ETYPE;
    if (mp_obj_len(args) == 1 && mp_obj_get_int(mp_obj_list_get(args, 0), &limit) < 0)
        return MP_ETYPE;
    struct tally *t = calloc(1, sizeof *t);
    if (!t || !(t->totals = mp_obj_dict_new())) {
        free(t);
        return -ENOMEM;
    }
    t->limit = limit;
    tally_live++;
    *self = t;
    return 0;
}

static void tally_free(void *self)
{
    struct tally *t = self;
    mp_obj_free(t->totals);
    free(t);
    tally_live--;
}

/* add(key, n): the key's new total; MP_EVALUE past the limit (nothing
 * added), MP_ETYPE for an n that is no int. */
static int tally_add(void *self, const mp_obj *args, mp_obj **result)
{
    struct tally *t = self;
    const mp_obj *key = mp_obj_list_get(args, 0);
    int64_t n, have = 0;
    if (mp_obj_get_int(mp_obj_list_get(args, 1), &n) < 0)
        return MP_ETYPE;
    const mp_obj *cur = mp_obj_dict_get(t->totals, key);
    if (cur)
        (void)mp_obj_get_int(cur, &have);
    if (n < 0 || have + n > t->limit)
        return MP_EVALUE;
    mp_obj *k = mp_obj_copy(key), *v = mp_obj_int(have + n);
    int rc = k && v ? mp_obj_dict_set(t->totals, k, v) : -ENOMEM;
    if (rc < 0) {
        mp_obj_free(k);
        mp_obj_free(v);
        return rc;
    }
    *result = mp_obj_int(have + n);
    return *result ? 0 : -ENOMEM;
}

/* get(key): the key's total; MP_EKEY when it has none. */
static int tally_get(void *self, const mp_obj *args, mp_obj **result)
{
    struct tally *t = self;
    const mp_obj *cur = mp_obj_dict_get(t->totals, mp_obj_list_get(args, 0));
    if (!cur)
        return MP_EKEY;
    *result = mp_obj_copy(cur);
    return *result ? 0 : -ENOMEM;
}

/* live(): how many tallies the server holds; reset(): None. */
static int tally_count_live(void *self, const mp_obj *args, mp_obj **result)
{
    (void)self;
    (void)args;
    *result = mp_obj_int(tally_live);
    return *result ? 0 : -ENOMEM;
}

static int tally_reset(void *self, const mp_obj *args, mp_obj **result)
{
    struct tally *t = self;
    (void)args;
    (void)result; /* None */
    mp_obj *fresh = mp_obj_dict_new();
    if (!fresh)
        return -ENOMEM;
    mp_obj_free(t->totals);
    t->totals = fresh;
    return 0;
}

static const mp_manager_method tally_methods[] = {
    {"add", 2, 2, tally_add},
    {"get", 1, 1, tally_get},
    {"live", 0, 0, tally_count_live},
    {"reset", 0, 0, tally_reset},
};

static const mp_manager_type tally_type = {"Tally", tally_create, tally_free, tally_methods,
                                           sizeof tally_methods / sizeof tally_methods[0]};

static mp_manager *start_with_tally(const char *address)
{
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    o.address = address;
    o.authkey = "user-key";
    o.authkey_len = 8;
    o.types = &tally_type;
    o.ntypes = 1;
    mp_manager *m = NULL;
    TU_ASSERT_STATUS(mp_manager_start(&m, &o), 0);
    return m;
}

static int64_t call_int(mp_proxy *p, const char *method, mp_obj *args)
{
    mp_obj *r = NULL;
    int rc = mp_proxy_call(p, method, args, &r);
    mp_obj_free(args);
    if (rc < 0)
        return rc;
    int64_t v = INT64_MIN;
    assert_int_equal(mp_obj_get_int(r, &v), 0);
    mp_obj_free(r);
    return v;
}

#define NCHILD 4
#define NADD   50

static int child_adds(void *arg)
{
    mp_proxy *p = arg;
    for (int i = 0; i < NADD; i++)
        if (call_int(p, "add", mp_obj_build("(si)", "x", 1)) < 0)
            return 1;
    return 0;
}

static void test_c_clients_in_forked_processes_share_one_user_object(void **state)
{
    (void)state;
    mp_manager *m = start_with_tally(NULL);
    mp_proxy *p = NULL;
    mp_obj *args = mp_obj_build("(i)", 100000);
    TU_ASSERT_STATUS(mp_manager_create(m, "Tally", args, &p), 0);
    mp_obj_free(args);
    pid_t pids[NCHILD];
    for (int i = 0; i < NCHILD; i++) {
        pids[i] = tu_fork(child_adds, p);
        assert_true(pids[i] > 0);
    }
    for (int i = 0; i < NCHILD; i++)
        assert_int_equal(tu_wait_child(pids[i], 60), 0);
    assert_int_equal(call_int(p, "get", mp_obj_build("(s)", "x")), NCHILD * NADD);
    mp_obj *r = NULL;
    TU_ASSERT_STATUS(mp_proxy_call(p, "reset", NULL, &r), 0);
    assert_true(mp_obj_is_none(r)); /* a method's NULL result is None */
    mp_obj_free(r);
    mp_proxy_free(p);
    TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
    mp_manager_free(m);
}

static void test_user_method_errors_reach_c_as_named_statuses(void **state)
{
    (void)state;
    mp_manager *m = start_with_tally("tcp:127.0.0.1:0");
    mp_proxy *p = NULL;
    mp_obj *args = mp_obj_build("(i)", 10);
    TU_ASSERT_STATUS(mp_manager_create(m, "Tally", args, &p), 0);
    mp_obj_free(args);
    assert_int_equal(call_int(p, "add", mp_obj_build("(si)", "k", 4)), 4);
    /* the method's own statuses */
    assert_int_equal(call_int(p, "get", mp_obj_build("(s)", "nope")), MP_EKEY);
    assert_string_equal(mp_errmsg(MP_EKEY), "KeyError: 'nope'");
    assert_int_equal(call_int(p, "add", mp_obj_build("(si)", "k", 7)), MP_EVALUE);
    assert_string_equal(mp_errmsg(MP_EVALUE), "ValueError: Tally.add() refused its arguments");
    assert_int_equal(call_int(p, "add", mp_obj_build("(ss)", "k", "x")), MP_ETYPE);
    /* what the server refuses before calling it */
    assert_int_equal(call_int(p, "nonesuch", NULL), MP_EPROTO);
    assert_non_null(strstr(mp_errmsg(MP_EPROTO), "nonesuch"));
    assert_int_equal(call_int(p, "get", NULL), MP_ETYPE);
    assert_non_null(strstr(mp_errmsg(MP_ETYPE), "get()"));
    assert_int_equal(call_int(p, "get", mp_obj_build("(ss)", "k", "k")), MP_ETYPE);
    /* bad arguments at the call */
    mp_obj *notuple = mt_int(1), *r = NULL;
    TU_ASSERT_STATUS(mp_proxy_call(p, "get", notuple, &r), -EINVAL);
    TU_ASSERT_STATUS(mp_proxy_call(NULL, "get", NULL, &r), -EINVAL);
    TU_ASSERT_STATUS(mp_proxy_call(p, NULL, NULL, &r), -EINVAL);
    assert_null(r);
    /* nothing was lost: the total is what the one good add made */
    assert_int_equal(call_int(p, "get", mp_obj_build("(s)", "k")), 4);
    /* create: an unknown typeid, a constructor's refusal, bad arguments */
    mp_proxy *q = (mp_proxy *)1;
    TU_ASSERT_STATUS(mp_manager_create(m, "NoSuchType", NULL, &q), MP_EVALUE);
    assert_null(q);
    args = mp_obj_build("(s)", "ten");
    TU_ASSERT_STATUS(mp_manager_create(m, "Tally", args, &q), MP_ETYPE);
    mp_obj_free(args);
    TU_ASSERT_STATUS(mp_manager_create(m, "Tally", notuple, &q), -EINVAL);
    TU_ASSERT_STATUS(mp_manager_create(m, NULL, NULL, &q), -EINVAL);
    TU_ASSERT_STATUS(mp_manager_create(NULL, "Tally", NULL, &q), -EINVAL);
    mp_obj_free(notuple);
    assert_int_equal(call_int(p, "live", NULL), 1);
    mp_proxy_free(p);
    mp_proxy_free(NULL);
    TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
    mp_manager_free(m);
}

static void test_user_object_is_freed_when_its_last_holder_releases_it(void **state)
{
    (void)state;
    mp_manager *m = start_with_tally(NULL);
    mp_proxy *a = NULL, *b = NULL;
    TU_ASSERT_STATUS(mp_manager_create(m, "Tally", NULL, &a), 0);
    TU_ASSERT_STATUS(mp_manager_create(m, "Tally", NULL, &b), 0);
    assert_int_equal(call_int(a, "live", NULL), 2);
    mp_proxy_free(b);
    assert_int_equal(call_int(a, "live", NULL), 1);
    mp_proxy_free(a);
    TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
    mp_manager_free(m);
}

static void test_types_without_a_table_are_refused(void **state)
{
    (void)state;
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    o.ntypes = 1; /* types NULL */
    mp_manager *m = (mp_manager *)1;
    TU_ASSERT_STATUS(mp_manager_start(&m, &o), -EINVAL);
    TU_ASSERT_STATUS(mp_manager_serve("tcp:127.0.0.1:0", "k", 1, &o), -EINVAL);
    /* a malformed table: a method without a function, counts reversed, a
     * typeid twice */
    mp_manager_method bad[] = {{"get", 1, 1, NULL}};
    mp_manager_type t[2] = {{"Bad", tally_create, tally_free, bad, 1}, tally_type};
    o.types = t;
    TU_ASSERT_STATUS(mp_manager_start(&m, &o), -EINVAL);
    assert_non_null(strstr(mp_errmsg(-EINVAL), "malformed"));
    bad[0].fn = tally_get;
    bad[0].min_args = 2;
    TU_ASSERT_STATUS(mp_manager_serve("tcp:127.0.0.1:0", "k", 1, &o), -EINVAL);
    bad[0].min_args = 1;
    t[0].typeid = "Tally";
    o.ntypes = 2;
    TU_ASSERT_STATUS(mp_manager_start(&m, &o), -EINVAL);
    assert_non_null(strstr(mp_errmsg(-EINVAL), "twice"));
}

/* From the wire: create('user', ...) with an initial value that is not
 * (typeid, args), an unknown typeid, and calls with the wrong number of
 * arguments or an unknown method get named errors; the server serves on. */
static void test_bad_user_requests_from_the_wire_get_named_errors(void **state)
{
    (void)state;
    mp_manager *m = start_with_tally(NULL);
    mp_conn *c;
    TU_ASSERT_STATUS(mp_client_connect(&c, mp_manager_address(m), "user-key", 8, MT_LONG), 0);
    mt_raw_hello(c, 4242, 0);
    assert_int_equal(
        mt_send_obj(c,
                    mt_request(0, "create", mp_obj_build("(sNs)", "user", mp_obj_none(), "Tally"))),
        MP_ETYPE);
    assert_int_equal(
        mt_send_obj(
            c, mt_request(0, "create", mp_obj_build("(sN(s()))", "user", mp_obj_none(), "Nope"))),
        MP_EVALUE);
    assert_int_equal(
        mt_send_obj(c, mt_request(0, "create",
                                  mp_obj_build("(sN(si))", "user", mp_obj_none(), "Tally", 3))),
        MP_ETYPE);
    mp_obj *ok = mt_request(0, "create", mp_obj_build("(sN(s()))", "user", mp_obj_none(), "Tally"));
    TU_ASSERT_STATUS(mp_conn_send(c, ok), 0);
    mp_obj_free(ok);
    mp_obj *r = NULL;
    TU_ASSERT_STATUS(mp_conn_recv(c, &r, MT_LONG), 0);
    int64_t id = 0; /* ('#RETURN', (id, created, kind)) */
    assert_int_equal(mp_obj_get_int(mp_obj_list_get(mp_obj_list_get(r, 1), 0), &id), 0);
    mp_obj_free(r);
    assert_int_equal(mt_send_obj(c, mt_request(id, "get", NULL)), MP_ETYPE);
    assert_int_equal(mt_send_obj(c, mt_request(id, "add", mp_obj_build("(sii)", "k", 1, 2))),
                     MP_ETYPE);
    assert_int_equal(mt_send_obj(c, mt_request(id, "__del__", NULL)), MP_EPROTO);
    assert_int_equal(mt_send_obj(c, mt_request(id, "add", mp_obj_build("(si)", "k", 1))), 0);
    mp_conn_free(c);
    TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
    mp_manager_free(m);
}

/* mp_manager_serve: the program itself serves its types. */
static void serve_report(const char *address, void *arg)
{
    char buf[256] = {0};
    snprintf(buf, sizeof buf, "%s", address);
    assert_int_equal(write(*(int *)arg, buf, sizeof buf), (ssize_t)sizeof buf);
}

static int serving_child(void *arg)
{
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    o.ready = serve_report;
    o.ready_arg = arg;
    o.types = &tally_type;
    o.ntypes = 1;
    return mp_manager_serve("tcp:127.0.0.1:0", "user-key", 8, &o) == 0 ? 0 : 10;
}

static void test_a_serving_program_serves_its_types(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = tu_fork(serving_child, &p[1]);
    assert_true(pid > 0);
    close(p[1]);
    char address[256];
    assert_int_equal(mt_read_full(p[0], address, sizeof address, MT_LONG), 0);
    close(p[0]);
    address[sizeof address - 1] = '\0';
    mp_manager *m = NULL;
    TU_ASSERT_STATUS(mp_manager_connect(&m, address, "user-key", 8, NULL), 0);
    mp_proxy *t = NULL;
    TU_ASSERT_STATUS(mp_manager_create(m, "Tally", NULL, &t), 0);
    assert_int_equal(call_int(t, "add", mp_obj_build("(si)", "a", 3)), 3);
    assert_int_equal(call_int(t, "get", mp_obj_build("(s)", "a")), 3);
    mp_proxy_free(t);
    TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
    mp_manager_free(m);
    assert_int_equal(tu_wait_child(pid, 30), 0);
}

/* Python's BaseManager.register('Tally') on its side: create, the exposed
 * methods, each status as Python's exception, and the object loses nothing. */
static const char py_client[] =
    "import sys\n"
    "from multiprocessing.managers import BaseManager\n"
    "class M(BaseManager): pass\n"
    "M.register('Tally')\n"
    "a = sys.argv[1]\n"
    "if a.startswith('unix:'): address = a[5:]\n"
    "else: h, p = a[4:].rsplit(':', 1); address = (h, int(p))\n"
    "m = M(address=address, authkey=b'user-key')\n"
    "m.connect()\n"
    "def raises(exc, f, *args, **kw):\n"
    "    try: f(*args, **kw)\n"
    "    except exc as e: return e\n"
    "    raise AssertionError('%r did not raise %s' % (f, exc.__name__))\n"
    "t = m.Tally(10)\n"
    "assert set(t._exposed_) == {'add', 'get', 'live', 'reset'}, t._exposed_\n"
    "assert t.add('k', 4) == 4 and t.add('k', 2) == 6 and t.get('k') == 6\n"
    "e = raises(KeyError, t.get, 'nope'); assert e.args == ('nope',), e.args\n"
    "e = raises(ValueError, t.add, 'k', 5); assert str(e) == 'Tally.add() refused its arguments', "
    "str(e)\n"
    "raises(TypeError, t.add, 'k', 'x')\n"
    "raises(TypeError, t.get)\n"
    "raises(TypeError, t._callmethod, 'get', ('k',), {'x': 1})\n"
    "raises(AttributeError, t._callmethod, 'nonesuch')\n"
    "assert t.get('k') == 6\n"
    "assert t.reset() is None\n"
    "raises(KeyError, t.get, 'k')\n"
    "from multiprocessing.managers import RemoteError\n"
    "raises(RemoteError, m.Tally, 'ten')\n"
    "u = m.Tally(); assert u.add('z', 999) == 999\n"
    "assert u.live() >= 2\n"
    "del t, u\n"
    "print('ok')\n";

static void run_python_against(const char *address)
{
    const char *py;
    for (size_t pyi = 0; (py = tu_python_at(pyi)) != NULL; pyi++) {
        mp_manager *m = start_with_tally(address);
        const char *args[] = {mp_manager_address(m), NULL};
        pid_t pid = tu_spawn_python_as(py, py_client, args, NULL, 0);
        assert_true(pid > 0);
        assert_int_equal(tu_wait_child(pid, PY_TIMEOUT), 0);
        /* Python's decrefs freed its tallies; a C client is served on. */
        mp_proxy *p = NULL;
        TU_ASSERT_STATUS(mp_manager_create(m, "Tally", NULL, &p), 0);
        assert_int_equal(call_int(p, "live", NULL), 1);
        mp_proxy_free(p);
        TU_ASSERT_STATUS(mp_manager_shutdown(m), 0);
        mp_manager_free(m);
    }
}

static void test_python_client_calls_a_user_type_through_register_over_af_unix(void **state)
{
    (void)state;
    run_python_against(NULL);
}

static void test_python_client_calls_a_user_type_through_register_over_tcp(void **state)
{
    (void)state;
    run_python_against("tcp:127.0.0.1:0");
}

/* CPython's server cannot run a C type: -ENOTSUP, and the handle works on. */
static void test_create_on_cpython_server_is_enotsup(void **state)
{
    (void)state;
    struct ps_server s;
    assert_int_equal(ps_start(&s, "python3", false, false, 0), 0);
    mp_manager *m = NULL;
    TU_ASSERT_STATUS(mp_manager_connect(&m, s.address, PS_KEY, PS_KEY_LEN, NULL), 0);
    mp_proxy *p = (mp_proxy *)1;
    TU_ASSERT_STATUS(mp_manager_create(m, "Tally", NULL, &p), -ENOTSUP);
    assert_null(p);
    mp_dictproxy *d = NULL;
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &d), 0);
    mp_dictproxy_free(d);
    mp_manager_free(m);
    assert_int_equal(ps_stop(&s), 0);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_c_clients_in_forked_processes_share_one_user_object),
        TU_TEST(test_user_method_errors_reach_c_as_named_statuses),
        TU_TEST(test_user_object_is_freed_when_its_last_holder_releases_it),
        TU_TEST(test_types_without_a_table_are_refused),
        TU_TEST(test_bad_user_requests_from_the_wire_get_named_errors),
        TU_TEST(test_a_serving_program_serves_its_types),
        TU_TEST(test_create_on_cpython_server_is_enotsup),
        TU_TEST(test_python_client_calls_a_user_type_through_register_over_af_unix),
        TU_TEST(test_python_client_calls_a_user_type_through_register_over_tcp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
