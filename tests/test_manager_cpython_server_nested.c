/* manager_cpython_server_nested: C ports of CPython's _TestContainers
 * test_list, test_list_proxy_in_list, test_dict_proxy_nested and
 * test_nested_queue, run by C clients against our server and CPython's (one
 * per interpreter tu_pythons finds, for the whole binary); a proxy inside a
 * value is a reference (mp_listproxy_ref...) read back with *_from_ref. And
 * a Python client's m.list() inside a dict, appended to from C. */
#include "pyserver_testutil.h"

#include <mpipc/error.h>
#include <mpipc/manager_data.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NS_NONE MP_LISTPROXY_NONE

/* The servers every case runs against: ours (started here), then
 * CPython's, one per interpreter. */
struct ns_server {
    const char *py; /* NULL for ours */
    struct ps_server ps;
    mp_manager *m;
};

static struct ns_server ns_servers[TU_MAX_PYTHONS + 1];
static size_t ns_nservers;
/* Descriptors open before the servers: the handles' pools keep
 * connections between cases, so the whole binary is checked for leaks
 * (at the end) rather than each case. */
static int ns_fds_before;

static int ns_setup(void **state)
{
    (void)state;
    ns_fds_before = tu_count_fds();
    struct ns_server *s = &ns_servers[0];
    if (mp_manager_start(&s->m, NULL) != 0)
        return -1;
    ns_nservers = 1;
    const char *py;
    for (size_t pyi = 0; (py = tu_python_at(pyi)) != NULL; pyi++) {
        s = &ns_servers[ns_nservers];
        s->py = py;
        if (ps_start(&s->ps, py, false, false, 0) != 0)
            return -1;
        ns_nservers++;
        if (mp_manager_connect(&s->m, s->ps.address, PS_KEY, PS_KEY_LEN, NULL) != 0 ||
            mp_manager_set_timeout(s->m, 30.0) != 0)
            return -1;
    }
    return 0;
}

static int ns_teardown(void **state)
{
    (void)state;
    int rc = 0;
    for (size_t i = 0; i < ns_nservers; i++) {
        mp_manager_free(ns_servers[i].m);
        if (ns_servers[i].py && ps_stop(&ns_servers[i].ps) != 0)
            rc = -1;
    }
    ns_nservers = 0;
    int after = tu_count_fds();
    if (after != ns_fds_before) {
        print_error("descriptor leak: %d open before the servers, %d after\n", ns_fds_before,
                    after);
        rc = -1;
    }
    return rc;
}

/* ---- helpers ------------------------------------------------------------------------ */

/* A list of the ints lo..hi-1 (Python's list(range(lo, hi))). */
static mp_obj *ns_range(int64_t lo, int64_t hi)
{
    mp_obj *l = mp_obj_list_new();
    assert_non_null(l);
    for (int64_t i = lo; i < hi; i++)
        assert_int_equal(mp_obj_list_append(l, mt_int(i)), 0);
    return l;
}

static mp_listproxy *ns_list(mp_manager *m, mp_obj *initial)
{
    mp_listproxy *l = NULL;
    TU_ASSERT_STATUS(mp_manager_list(m, initial, &l), 0);
    mp_obj_free(initial);
    return l;
}

static mp_obj *ns_lref(mp_listproxy *l)
{
    mp_obj *r = NULL;
    TU_ASSERT_STATUS(mp_listproxy_ref(l, &r), 0);
    assert_string_equal(mp_obj_instance_class(r), "multiprocessing.managers.RebuildProxy");
    return r;
}

static mp_obj *ns_dref(mp_dictproxy *d)
{
    mp_obj *r = NULL;
    TU_ASSERT_STATUS(mp_dictproxy_ref(d, &r), 0);
    return r;
}

/* l[:] (the slice, as Python's test writes it) has repr want. */
static void ns_expect(mp_listproxy *l, const char *want)
{
    mp_obj *v = NULL;
    TU_ASSERT_STATUS(mp_listproxy_get_slice(l, NS_NONE, NS_NONE, NS_NONE, &v), 0);
    mt_take_repr(v, want);
}

/* outer[i], a list proxy's reference, as a C proxy. */
static mp_listproxy *ns_list_at(mp_manager *m, mp_listproxy *outer, ssize_t i)
{
    mp_obj *ref = NULL;
    mp_listproxy *l = NULL;
    TU_ASSERT_STATUS(mp_listproxy_get(outer, i, &ref), 0);
    TU_ASSERT_STATUS(mp_manager_list_from_ref(m, ref, &l), 0);
    mp_obj_free(ref);
    return l;
}

/* d[key], a dict proxy's reference, as a C proxy. */
static mp_dictproxy *ns_dict_at(mp_manager *m, mp_dictproxy *d, const char *key)
{
    mp_obj *k = mt_str(key), *ref = NULL;
    mp_dictproxy *inner = NULL;
    TU_ASSERT_STATUS(mp_dictproxy_get(d, k, &ref), 0);
    TU_ASSERT_STATUS(mp_manager_dict_from_ref(m, ref, &inner), 0);
    mp_obj_free(ref);
    mp_obj_free(k);
    return inner;
}

/* d[key] is the int want (a macro: a failure names the caller's line). */
#define ns_dict_expect(d, key, want)                                                               \
    do {                                                                                           \
        int64_t v_ = -1;                                                                           \
        TU_ASSERT_STATUS(mp_dictproxy_get_int((d), (key), &v_), 0);                                \
        assert_int_equal(v_, (want));                                                              \
    } while (0)

/* ---- the cases -------------------------------------------------------------------- */

/* test_list: slices, extend, b *= 2, b + [5, 6], a list made of two list
 * proxies, and a list holding a that sees a.append. Python's b *= 2 is
 * ListProxy.__imul__, one call the C API has not: here b.extend(b[:]),
 * two calls with the same result. b + [5, 6] is __add__, which makes a
 * local list and leaves b alone: here b[:] extended locally. */
static void ns_test_list(mp_manager *m)
{
    mp_listproxy *a = ns_list(m, ns_range(0, 10));
    ns_expect(a, "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]");
    mp_listproxy *b = ns_list(m, NULL);
    ns_expect(b, "[]");
    mp_obj *five = ns_range(0, 5);
    TU_ASSERT_STATUS(mp_listproxy_extend(b, five), 0);
    mp_obj_free(five);
    ns_expect(b, "[0, 1, 2, 3, 4]");
    int64_t v = -1;
    TU_ASSERT_STATUS(mp_listproxy_get_int(b, 2, &v), 0);
    assert_int_equal(v, 2);
    mp_obj *sl = NULL;
    TU_ASSERT_STATUS(mp_listproxy_get_slice(b, 2, 10, NS_NONE, &sl), 0);
    mt_take_repr(sl, "[2, 3, 4]");

    mp_obj *whole = NULL; /* b *= 2 */
    TU_ASSERT_STATUS(mp_listproxy_copy(b, &whole), 0);
    TU_ASSERT_STATUS(mp_listproxy_extend(b, whole), 0);
    mp_obj_free(whole);
    ns_expect(b, "[0, 1, 2, 3, 4, 0, 1, 2, 3, 4]");

    mp_obj *sum = NULL; /* b + [5, 6] */
    TU_ASSERT_STATUS(mp_listproxy_copy(b, &sum), 0);
    assert_int_equal(mp_obj_list_append(sum, mt_int(5)), 0);
    assert_int_equal(mp_obj_list_append(sum, mt_int(6)), 0);
    mt_take_repr(sum, "[0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6]");
    ns_expect(b, "[0, 1, 2, 3, 4, 0, 1, 2, 3, 4]");
    ns_expect(a, "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]");

    /* e = m.list([a, b]): [element[:] for element in e] */
    mp_obj *d = mp_obj_build("[NN]", ns_lref(a), ns_lref(b));
    assert_non_null(d);
    mp_listproxy *e = ns_list(m, d);
    TU_ASSERT_STATUS(mp_listproxy_len(e), 2);
    for (ssize_t i = 0; i < 2; i++) {
        mp_listproxy *el = ns_list_at(m, e, i);
        ns_expect(el, i == 0 ? "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]" : "[0, 1, 2, 3, 4, 0, 1, 2, 3, 4]");
        mp_listproxy_free(el);
    }

    /* f = m.list([a]); a.append('hello'): f[0] sees it. */
    mp_listproxy *f = ns_list(m, mp_obj_build("[N]", ns_lref(a)));
    TU_ASSERT_STATUS(mp_listproxy_append_str(a, "hello"), 0);
    mp_listproxy *f0 = ns_list_at(m, f, 0);
    ns_expect(f0, "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 'hello']");
    mp_listproxy_free(f0);
    mp_listproxy_free(f);
    mp_listproxy_free(e);
    mp_listproxy_free(b);
    mp_listproxy_free(a);
}

/* test_list_proxy_in_list: a list of three lists, made and then let go
 * by this client (the outer value keeps them); a[0][-1] = 55 changes only
 * a[0]; a[1].pop() gives 2 and shortens only a[1]; b.append(b) works. */
static void ns_test_list_proxy_in_list(mp_manager *m)
{
    mp_obj *init = mp_obj_list_new();
    assert_non_null(init);
    mp_listproxy *in[3];
    for (int i = 0; i < 3; i++) {
        in[i] = ns_list(m, ns_range(0, 3));
        assert_int_equal(mp_obj_list_append(init, ns_lref(in[i])), 0);
    }
    mp_listproxy *a = ns_list(m, init);
    for (int i = 0; i < 3; i++)
        mp_listproxy_free(in[i]); /* the comprehension's proxies are gone: a keeps them */
    for (ssize_t i = 0; i < 3; i++) {
        in[i] = ns_list_at(m, a, i);
        ns_expect(in[i], "[0, 1, 2]");
    }
    mp_obj *v55 = mt_int(55);
    TU_ASSERT_STATUS(mp_listproxy_set(in[0], -1, v55), 0);
    mp_obj_free(v55);
    mp_listproxy_free(in[0]);
    in[0] = ns_list_at(m, a, 0);
    ns_expect(in[0], "[0, 1, 55]");
    ns_expect(in[1], "[0, 1, 2]");
    ns_expect(in[2], "[0, 1, 2]");
    mp_obj *popped = NULL;
    TU_ASSERT_STATUS(mp_listproxy_pop(in[1], -1, &popped), 0);
    mt_take_repr(popped, "2");
    TU_ASSERT_STATUS(mp_listproxy_len(in[1]), 2);
    TU_ASSERT_STATUS(mp_listproxy_len(in[0]), 3);
    TU_ASSERT_STATUS(mp_listproxy_len(in[2]), 3);
    for (int i = 0; i < 3; i++)
        mp_listproxy_free(in[i]);
    mp_listproxy_free(a);

    mp_listproxy *b = ns_list(m, NULL); /* b.append(b); del b */
    mp_obj *self = ns_lref(b);
    TU_ASSERT_STATUS(mp_listproxy_append(b, self), 0);
    mp_obj_free(self);
    mp_listproxy *b0 = ns_list_at(m, b, 0); /* b[0] is b */
    TU_ASSERT_STATUS(mp_listproxy_len(b0), 1);
    mp_listproxy_free(b0);
    mp_listproxy_free(b);
}

/* test_dict_proxy_nested: d = m.dict(pets=pets, supplies=supplies); writes
 * through d['supplies'] are seen through supplies and back; after this
 * client lets pets and supplies go, d keeps them; d.clear() leaves them to
 * the proxies read back from it; a list of them, and a list holding a plain
 * list and that list, whose [0] stays a plain list. */
static void ns_test_dict_proxy_nested(mp_manager *m)
{
    mp_dictproxy *pets = NULL, *supplies = NULL, *d = NULL;
    mp_obj *init = mp_obj_build("{s:i, s:i}", "ferrets", 2, "hamsters", 4);
    TU_ASSERT_STATUS(mp_manager_dict(m, init, &pets), 0);
    mp_obj_free(init);
    init = mp_obj_build("{s:i, s:i}", "water", 10, "feed", 3);
    TU_ASSERT_STATUS(mp_manager_dict(m, init, &supplies), 0);
    mp_obj_free(init);
    init = mp_obj_build("{s:N, s:N}", "pets", ns_dref(pets), "supplies", ns_dref(supplies));
    assert_non_null(init);
    TU_ASSERT_STATUS(mp_manager_dict(m, init, &d), 0);
    mp_obj_free(init);

    ns_dict_expect(supplies, "water", 10);
    mp_dictproxy *ds = ns_dict_at(m, d, "supplies");
    ns_dict_expect(ds, "water", 10);
    TU_ASSERT_STATUS(mp_dictproxy_set_int(ds, "blankets", 5), 0);
    ns_dict_expect(supplies, "blankets", 5);
    ns_dict_expect(ds, "blankets", 5);
    TU_ASSERT_STATUS(mp_dictproxy_set_int(ds, "water", 7), 0);
    ns_dict_expect(supplies, "water", 7);
    mp_dictproxy_free(ds);
    ds = ns_dict_at(m, d, "supplies");
    ns_dict_expect(ds, "water", 7);
    mp_dictproxy_free(ds);

    mp_dictproxy_free(pets); /* del pets, supplies: d keeps them */
    mp_dictproxy_free(supplies);
    mp_dictproxy *dp = ns_dict_at(m, d, "pets");
    ns_dict_expect(dp, "ferrets", 2);
    mp_dictproxy_free(dp);
    ds = ns_dict_at(m, d, "supplies");
    TU_ASSERT_STATUS(mp_dictproxy_set_int(ds, "blankets", 11), 0);
    mp_dictproxy_free(ds);
    ds = ns_dict_at(m, d, "supplies");
    ns_dict_expect(ds, "blankets", 11);
    mp_dictproxy_free(ds);

    pets = ns_dict_at(m, d, "pets");
    supplies = ns_dict_at(m, d, "supplies");
    TU_ASSERT_STATUS(mp_dictproxy_set_int(supplies, "water", 7), 0);
    ns_dict_expect(supplies, "water", 7);
    ds = ns_dict_at(m, d, "supplies");
    ns_dict_expect(ds, "water", 7);
    mp_dictproxy_free(ds);

    TU_ASSERT_STATUS(mp_dictproxy_clear(d), 0);
    TU_ASSERT_STATUS(mp_dictproxy_len(d), 0);
    ns_dict_expect(supplies, "water", 7);
    ns_dict_expect(pets, "hamsters", 4);

    mp_listproxy *l = ns_list(m, mp_obj_build("[NN]", ns_dref(pets), ns_dref(supplies)));
    mp_obj *ref = NULL;
    mp_dictproxy *l0 = NULL;
    TU_ASSERT_STATUS(mp_listproxy_get(l, 0, &ref), 0);
    TU_ASSERT_STATUS(mp_manager_dict_from_ref(m, ref, &l0), 0);
    mp_obj_free(ref);
    TU_ASSERT_STATUS(mp_dictproxy_set_int(l0, "marmots", 1), 0);
    ns_dict_expect(pets, "marmots", 1);
    ns_dict_expect(l0, "marmots", 1);
    mp_dictproxy_free(l0);
    mp_dictproxy_free(pets);
    mp_dictproxy_free(supplies);
    TU_ASSERT_STATUS(mp_listproxy_get(l, 0, &ref), 0);
    TU_ASSERT_STATUS(mp_manager_dict_from_ref(m, ref, &l0), 0);
    mp_obj_free(ref);
    ns_dict_expect(l0, "marmots", 1);
    mp_dictproxy_free(l0);

    mp_listproxy *outer = ns_list(m, mp_obj_build("[[ii]N]", 88, 99, ns_lref(l)));
    mp_obj *first = NULL;
    TU_ASSERT_STATUS(mp_listproxy_get(outer, 0, &first), 0);
    assert_int_equal(mp_obj_type(first), MP_TYPE_LIST); /* not a ListProxy */
    mt_take_repr(first, "[88, 99]");
    mp_listproxy *last = ns_list_at(m, outer, -1);
    TU_ASSERT_STATUS(mp_listproxy_get(last, -1, &ref), 0);
    mp_dictproxy *sup = NULL;
    TU_ASSERT_STATUS(mp_manager_dict_from_ref(m, ref, &sup), 0);
    mp_obj_free(ref);
    ns_dict_expect(sup, "feed", 3);
    mp_dictproxy_free(sup);
    mp_listproxy_free(last);
    mp_listproxy_free(outer);
    mp_listproxy_free(l);
    mp_dictproxy_free(d);
}

/* a[0] (or b[0]), a Queue proxy's reference, as a C proxy. */
static mp_queueproxy *ns_queue_of(mp_manager *m, mp_obj *ref)
{
    mp_queueproxy *q = NULL;
    TU_ASSERT_STATUS(mp_manager_queue_from_ref(m, ref, &q), 0);
    mp_obj_free(ref);
    return q;
}

/* test_nested_queue: a Queue inside a list and inside a dict; a[0].put(123)
 * then a[0].get() gives 123 (each a[0] a new proxy, as in Python), b[0]
 * likewise with 456. */
static void ns_test_nested_queue(mp_manager *m)
{
    mp_listproxy *a = ns_list(m, NULL);
    mp_queueproxy *q = NULL;
    mp_obj *ref = NULL, *v = NULL;
    TU_ASSERT_STATUS(mp_manager_queue(m, 0, &q), 0);
    TU_ASSERT_STATUS(mp_queueproxy_ref(q, &ref), 0);
    TU_ASSERT_STATUS(mp_listproxy_append(a, ref), 0);
    mp_queueproxy_free(q); /* the temporary of a.append(m.Queue()): a keeps it */
    mp_obj_free(ref);
    TU_ASSERT_STATUS(mp_listproxy_get(a, 0, &ref), 0);
    q = ns_queue_of(m, ref);
    mp_obj *item = mt_int(123);
    TU_ASSERT_STATUS(mp_queueproxy_put(q, item, MT_LONG), 0);
    mp_obj_free(item);
    mp_queueproxy_free(q);
    TU_ASSERT_STATUS(mp_listproxy_get(a, 0, &ref), 0);
    q = ns_queue_of(m, ref);
    TU_ASSERT_STATUS(mp_queueproxy_get(q, &v, MT_LONG), 0);
    mt_take_repr(v, "123");
    mp_queueproxy_free(q);
    mp_listproxy_free(a);

    mp_dictproxy *b = NULL;
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &b), 0);
    TU_ASSERT_STATUS(mp_manager_queue(m, 0, &q), 0);
    TU_ASSERT_STATUS(mp_queueproxy_ref(q, &ref), 0);
    mp_obj *zero = mt_int(0);
    TU_ASSERT_STATUS(mp_dictproxy_set(b, zero, ref), 0);
    mp_queueproxy_free(q);
    mp_obj_free(ref);
    TU_ASSERT_STATUS(mp_dictproxy_get(b, zero, &ref), 0);
    q = ns_queue_of(m, ref);
    item = mt_int(456);
    TU_ASSERT_STATUS(mp_queueproxy_put(q, item, MT_LONG), 0);
    mp_obj_free(item);
    mp_queueproxy_free(q);
    TU_ASSERT_STATUS(mp_dictproxy_get(b, zero, &ref), 0);
    q = ns_queue_of(m, ref);
    TU_ASSERT_STATUS(mp_queueproxy_get(q, &v, MT_LONG), 0);
    mt_take_repr(v, "456");
    mp_queueproxy_free(q);
    mp_obj_free(zero);
    mp_dictproxy_free(b);
}

/* Run one case against every server. */
static void ns_each(void (*scenario)(mp_manager *m))
{
    assert_true(ns_nservers >= 1);
    for (size_t i = 0; i < ns_nservers; i++) {
        print_message("  on %s\n", ns_servers[i].py ? ns_servers[i].py : "our server");
        scenario(ns_servers[i].m);
    }
}

static void test_c_clients_pass_cpython_test_list_on_both_servers(void **state)
{
    (void)state;
    ns_each(ns_test_list);
}

static void test_c_clients_pass_cpython_test_list_proxy_in_list_on_both_servers(void **state)
{
    (void)state;
    ns_each(ns_test_list_proxy_in_list);
}

static void test_c_clients_pass_cpython_test_dict_proxy_nested_on_both_servers(void **state)
{
    (void)state;
    ns_each(ns_test_dict_proxy_nested);
}

static void test_c_clients_pass_cpython_test_nested_queue_on_both_servers(void **state)
{
    (void)state;
    ns_each(ns_test_nested_queue);
}

/* ---- references: bad input -------------------------------------------------------- */

/* A reference names its object by this server's address and id: read back
 * by the same handle it is the same object, which stays when that second
 * proxy is freed; NULL arguments are -EINVAL with *ref NULL; a dict's
 * reference is no list's (MP_ETYPE). */
static void ns_ref_shapes(mp_manager *m)
{
    mp_dictproxy *d = NULL;
    TU_ASSERT_STATUS(mp_manager_dict(m, NULL, &d), 0);
    mp_obj *ref = (mp_obj *)1;
    TU_ASSERT_STATUS(mp_dictproxy_ref(NULL, &ref), -EINVAL);
    assert_null(ref);
    TU_ASSERT_STATUS(mp_dictproxy_ref(d, NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_listproxy_ref(NULL, &ref), -EINVAL);
    TU_ASSERT_STATUS(mp_queueproxy_ref(NULL, &ref), -EINVAL);
    ref = ns_dref(d);
    const mp_obj *tok = mp_obj_list_get(mp_obj_instance_args(ref), 1);
    assert_string_equal(mp_obj_instance_class(tok), "multiprocessing.managers.Token");
    mp_listproxy *l = (mp_listproxy *)1;
    TU_ASSERT_STATUS(mp_manager_list_from_ref(m, ref, &l), MP_ETYPE);
    assert_null(l);
    mp_dictproxy *again = NULL;
    TU_ASSERT_STATUS(mp_manager_dict_from_ref(m, ref, &again), 0);
    TU_ASSERT_STATUS(mp_dictproxy_set_int(again, "x", 1), 0);
    ns_dict_expect(d, "x", 1);
    mp_dictproxy_free(again);
    /* Two proxies of one object in this process: freeing one leaves the
     * object to the other, as CPython counts each proxy's incref. */
    ns_dict_expect(d, "x", 1);
    mp_obj_free(ref);
    mp_dictproxy_free(d);
}

static void test_proxy_refs_round_trip_and_refuse_bad_input(void **state)
{
    (void)state;
    ns_each(ns_ref_shapes);
}

/* ---- mixed: Python stores a proxy, C uses it -------------------------------------- */

/* A Python client: d = m.dict(); l = m.list(['py']); d['inner'] = l; it
 * hands d to C as Python pickles a proxy (hex on a pipe), waits for C's
 * byte, then checks that l holds C's append and that the list and queue
 * references C stored in d work as Python proxies. */
static const char ns_py_client[] =
    "import os, sys, pickle, multiprocessing\n"
    "from multiprocessing.managers import SyncManager\n"
    "addr, key, wfd, rfd = sys.argv[1], bytes.fromhex(sys.argv[2]), int(sys.argv[3]), "
    "int(sys.argv[4])\n"
    "if addr.startswith('unix:'): address = addr[5:]\n"
    "else:\n"
    "    host, port = addr[4:].rsplit(':', 1); address = (host, int(port))\n"
    "multiprocessing.current_process().authkey = key  # for the proxies it rebuilds\n"
    "m = SyncManager(address=address, authkey=key); m.connect()\n"
    "d = m.dict(); l = m.list(['py']); d['inner'] = l\n"
    "os.write(wfd, pickle.dumps(d).hex().encode() + b'\\n'); os.close(wfd)\n"
    "if os.read(rfd, 1) != b'k': sys.exit(2)\n"
    "if l[:] != ['py', 'from C'] or d['inner'][:] != ['py', 'from C']: sys.exit(3)\n"
    "if d['from_c'][:] != ['c']: sys.exit(4)\n"
    "if d['queue'].get(timeout=10) != 7: sys.exit(5)\n"
    "sys.exit(0)\n";

/* Read a line of at most cap - 1 bytes from fd, within 60 s. */
static void ns_read_line(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    double until = tu_now() + 60.0;
    for (;;) {
        int left = (int)((until - tu_now()) * 1000);
        assert_true(left > 0);
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, left) <= 0)
            continue;
        assert_true(n + 1 < cap);
        assert_int_equal(read(fd, buf + n, 1), 1);
        if (buf[n] == '\n')
            break;
        n++;
    }
    buf[n] = '\0';
}

static void ns_mixed(const char *py, mp_manager *m)
{
    size_t keylen = 0;
    const unsigned char *key = mp_manager_authkey(m, &keylen);
    char hex[2 * 64 + 1], wfd[16], rfd[16];
    assert_true(keylen > 0 && keylen <= 64);
    for (size_t i = 0; i < keylen; i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    int up[2], go[2];
    assert_int_equal(pipe(up), 0);
    assert_int_equal(pipe(go), 0);
    (void)fcntl(up[0], F_SETFD, FD_CLOEXEC);
    (void)fcntl(go[1], F_SETFD, FD_CLOEXEC);
    snprintf(wfd, sizeof wfd, "%d", up[1]);
    snprintf(rfd, sizeof rfd, "%d", go[0]);
    const char *args[] = {mp_manager_address(m), hex, wfd, rfd, NULL};
    int keep[2] = {up[1], go[0]};
    pid_t pid = tu_spawn_python_as(py, ns_py_client, args, keep, 2);
    close(up[1]);
    close(go[0]);
    assert_true(pid > 0);

    static char line[8192];
    ns_read_line(up[0], line, sizeof line);
    close(up[0]);
    size_t n = strlen(line) / 2;
    unsigned char *pk = malloc(n + 1);
    assert_non_null(pk);
    for (size_t i = 0; i < n; i++) {
        unsigned x;
        assert_int_equal(sscanf(line + 2 * i, "%2x", &x), 1);
        pk[i] = (unsigned char)x;
    }
    mp_obj *dref = NULL;
    TU_ASSERT_STATUS(mp_obj_loads(pk, n, &dref), 0);
    free(pk);
    mp_dictproxy *d = NULL;
    TU_ASSERT_STATUS(mp_manager_dict_from_ref(m, dref, &d), 0);
    mp_obj_free(dref);
    mp_dictproxy *d2 = d;
    mp_listproxy *inner = NULL;
    mp_obj *k = mt_str("inner"), *ref = NULL;
    TU_ASSERT_STATUS(mp_dictproxy_get(d2, k, &ref), 0);
    mp_obj_free(k);
    TU_ASSERT_STATUS(mp_manager_list_from_ref(m, ref, &inner), 0);
    mp_obj_free(ref);
    TU_ASSERT_STATUS(mp_listproxy_append_str(inner, "from C"), 0);

    /* And the other way: a list and a queue of C's, stored in d. */
    mp_listproxy *cl = ns_list(m, mp_obj_build("[s]", "c"));
    mp_queueproxy *q = NULL;
    TU_ASSERT_STATUS(mp_manager_queue(m, 0, &q), 0);
    mp_obj *seven = mt_int(7);
    TU_ASSERT_STATUS(mp_queueproxy_put(q, seven, MT_LONG), 0);
    mp_obj_free(seven);
    mp_obj *v = NULL;
    k = mt_str("from_c");
    v = ns_lref(cl);
    TU_ASSERT_STATUS(mp_dictproxy_set(d, k, v), 0);
    mp_obj_free(k);
    mp_obj_free(v);
    k = mt_str("queue");
    TU_ASSERT_STATUS(mp_queueproxy_ref(q, &v), 0);
    TU_ASSERT_STATUS(mp_dictproxy_set(d, k, v), 0);
    mp_obj_free(k);
    mp_obj_free(v);

    assert_int_equal(write(go[1], "k", 1), 1);
    close(go[1]);
    assert_int_equal(tu_wait_child(pid, 60.0), 0);
    mp_queueproxy_free(q);
    mp_listproxy_free(cl);
    mp_listproxy_free(inner);
    mp_dictproxy_free(d);
}

/* A Python client puts m.list() in a dict, on our server and on CPython's;
 * a C client finds it through the dict, appends, and Python sees the
 * append; Python reads the list and queue references C stored as working
 * proxies. */
static void test_python_stored_list_in_dict_is_appended_from_c_on_both_servers(void **state)
{
    (void)state;
    for (size_t i = 0; i < ns_nservers; i++) {
        const char *py = ns_servers[i].py ? ns_servers[i].py : "python3";
        print_message("  on %s\n", ns_servers[i].py ? ns_servers[i].py : "our server");
        ns_mixed(py, ns_servers[i].m);
    }
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_c_clients_pass_cpython_test_list_on_both_servers),
        cmocka_unit_test(test_c_clients_pass_cpython_test_list_proxy_in_list_on_both_servers),
        cmocka_unit_test(test_c_clients_pass_cpython_test_dict_proxy_nested_on_both_servers),
        cmocka_unit_test(test_c_clients_pass_cpython_test_nested_queue_on_both_servers),
        cmocka_unit_test(test_proxy_refs_round_trip_and_refuse_bad_input),
        cmocka_unit_test(test_python_stored_list_in_dict_is_appended_from_c_on_both_servers),
    };
    return cmocka_run_group_tests(tests, ns_setup, ns_teardown);
}
