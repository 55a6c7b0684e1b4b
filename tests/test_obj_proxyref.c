/* obj_proxyref: a Python manager proxy inside a value (CPython pickles it as
 * managers.RebuildProxy(func, token, serializer, kwds)) travels as an inert
 * MP_TYPE_INSTANCE both ways with real python3; every other func, shape and
 * use of RebuildProxy and the proxy classes is refused. So does a range
 * (m.list(range(3)) sends one). */
#include "pickle_helpers.h"

#include <mpipc/error.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PY_TIMEOUT 60.0
#define REBUILD    "multiprocessing.managers.RebuildProxy"

/* Python pickles proxies of each kind SyncManager makes, alone and inside
 * lists, dicts and tuples, in protocols 2-5 and as ForkingPickler (what a
 * manager request carries): records of (pickle, a description the C side
 * rebuilds from what it decoded). No server: the proxies are made with
 * incref=False. */
static const char py_dump[] =
    "import sys, pickle, struct\n"
    "from multiprocessing import managers as M\n"
    "from multiprocessing.reduction import ForkingPickler\n"
    "def mk(cls, typeid, addr, ident, **kw):\n"
    "    return cls(M.Token(typeid, addr, ident), 'pickle', authkey=b'k', incref=False, **kw)\n"
    "vals = [mk(M.ListProxy, 'list', ('127.0.0.1', 5000), '1f'),\n"
    "    mk(M.DictProxy, 'dict', '/tmp/m', '2a'),\n"
    "    mk(M.AutoProxy, 'Queue', '/tmp/m', '3', exposed=('get', 'put')),\n"
    "    mk(M.AcquirerProxy, 'Lock', '/tmp/m', '4'), mk(M.ConditionProxy, 'Condition', '/tmp/m', "
    "'5'),\n"
    "    mk(M.EventProxy, 'Event', '/tmp/m', '6'), mk(M.BarrierProxy, 'Barrier', '/tmp/m', '7'),\n"
    "    mk(M.NamespaceProxy, 'Namespace', '/tmp/m', '8'), mk(M.ValueProxy, 'Value', '/tmp/m', "
    "'9'),\n"
    "    mk(M.ArrayProxy, 'Array', '/tmp/m', 'a'), mk(M.IteratorProxy, 'Iterator', '/tmp/m', "
    "'b'),\n"
    "    mk(M.PoolProxy, 'Pool', '/tmp/m', 'c')]\n"
    "vals += [[vals[0], vals[1]], {'pets': vals[1], 0: [vals[2]]}, (1, vals[3])]\n"
    "out = sys.stdout.buffer\n"
    "def rec(p):\n"
    "    out.write(struct.pack('<I', len(p)) + p)\n"
    "for v in vals:\n"
    "    for proto in (2, 3, 4, 5):\n"
    "        rec(pickle.dumps(v, proto))\n"
    "    rec(bytes(ForkingPickler.dumps(v)))\n";

/* The funcs, in the order of py_dump's first twelve values. */
static const char *const funcs[] = {
    "ListProxy",    "DictProxy",      "AutoProxy",  "AcquirerProxy", "ConditionProxy", "EventProxy",
    "BarrierProxy", "NamespaceProxy", "ValueProxy", "ArrayProxy",    "IteratorProxy",  "PoolProxy",
};

/* o is RebuildProxy(func, Token(typeid, _, _), 'pickle', {...}). */
static void assert_proxyref(const mp_obj *o, const char *func, const char *typeid)
{
    assert_int_equal(mp_obj_type(o), MP_TYPE_INSTANCE);
    assert_string_equal(mp_obj_instance_class(o), REBUILD);
    const mp_obj *args = mp_obj_instance_args(o);
    assert_int_equal(mp_obj_len(args), 4);
    const char *s;
    TU_ASSERT_STATUS(mp_obj_get_str(mp_obj_list_get(args, 0), &s, NULL), 0);
    assert_string_equal(s, func);
    const mp_obj *tok = mp_obj_list_get(args, 1);
    assert_string_equal(mp_obj_instance_class(tok), "multiprocessing.managers.Token");
    if (typeid) {
        TU_ASSERT_STATUS(mp_obj_get_str(mp_obj_list_get(mp_obj_instance_args(tok), 0), &s, NULL),
                         0);
        assert_string_equal(s, typeid);
    }
    TU_ASSERT_STATUS(mp_obj_get_str(mp_obj_list_get(args, 2), &s, NULL), 0);
    assert_string_equal(s, "pickle");
    assert_int_equal(mp_obj_type(mp_obj_list_get(args, 3)), MP_TYPE_DICT);
}

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void test_python_proxies_decode_as_inert_proxy_references(void **state)
{
    (void)state;
    unsigned char *out = NULL;
    size_t n = 0, off = 0, k = 0;
    TU_ASSERT_STATUS(tu_python_filter(py_dump, NULL, 0, &out, &n, PY_TIMEOUT), 0);
    while (off + 4 <= n) {
        size_t len = rd32(out + off);
        assert_true(off + 4 + len <= n);
        mp_obj *o = loads_ok(out + off + 4, len);
        size_t v = k / 5;
        if (v < N_ELEMS(funcs)) {
            assert_proxyref(o, funcs[v], NULL);
        } else if (v == N_ELEMS(funcs)) { /* [list, dict] */
            assert_proxyref(mp_obj_list_get(o, 0), "ListProxy", "list");
            assert_proxyref(mp_obj_list_get(o, 1), "DictProxy", "dict");
        } else if (v == N_ELEMS(funcs) + 1) { /* {'pets': dict, 0: [queue]} */
            mp_obj *key = mp_obj_str_cstr("pets");
            assert_proxyref(mp_obj_dict_get(o, key), "DictProxy", "dict");
            mp_obj_free(key);
            key = mp_obj_int(0);
            const mp_obj *l = mp_obj_dict_get(o, key);
            mp_obj_free(key);
            assert_proxyref(mp_obj_list_get(l, 0), "AutoProxy", "Queue");
            /* AutoProxy carries its exposed methods in kwds. */
            const mp_obj *kw = mp_obj_list_get(mp_obj_instance_args(mp_obj_list_get(l, 0)), 3);
            key = mp_obj_str_cstr("exposed");
            assert_int_equal(mp_obj_len(mp_obj_dict_get(kw, key)), 2);
            mp_obj_free(key);
        } else { /* (1, lock) */
            assert_proxyref(mp_obj_list_get(o, 1), "AcquirerProxy", "Lock");
        }
        mp_obj_free(o);
        off += 4 + len;
        k++;
    }
    assert_int_equal(off, n);
    assert_int_equal(k, (N_ELEMS(funcs) + 3) * 5);
    free(out);
}

/* Loads each pickle on stdin (length-prefixed) with Python's unpickler, a
 * proxy's incref turned off (there is no server), and prints the proxy's
 * class, token and serializer, and an AutoProxy's exposed methods. */
static const char py_load[] =
    "import sys, pickle, struct\n"
    "from multiprocessing import managers as M\n"
    "M.BaseProxy._incref = lambda self: None\n"
    "data = sys.stdin.buffer.read()\n"
    "off = 0\n"
    "while off < len(data):\n"
    "    (n,) = struct.unpack_from('<I', data, off); off += 4\n"
    "    v = pickle.loads(data[off:off + n]); off += n\n"
    "    for p in (v if isinstance(v, list) else [v]):\n"
    "        t = p._token\n"
    "        ex = sorted(p._exposed_) if type(p).__name__.startswith('AutoProxy') else ''\n"
    "        sys.stdout.write('%s %s %r %s %s %s\\n' % (type(p).__name__.split('[')[0],\n"
    "            t.typeid, t.address, t.id, p._serializer, ex))\n";

static void put_rec(unsigned char **buf, size_t *len, const void *p, size_t n)
{
    unsigned char *b = realloc(*buf, *len + 4 + n);
    assert_non_null(b);
    for (int i = 0; i < 4; i++)
        b[*len + (size_t)i] = (unsigned char)(n >> (8 * i));
    memcpy(b + *len + 4, p, n);
    *buf = b;
    *len += 4 + n;
}

static mp_obj *proxyref(const char *func, const char *typeid, const char *ident, const mp_obj *kwds)
{
    mp_obj *targs = mp_obj_build("(s(si)s)", typeid, "127.0.0.1", 5000, ident);
    mp_obj *tok = mp_obj_instance_new("multiprocessing.managers.Token", targs);
    mp_obj *args = mp_obj_build("(sOsO)", func, tok, "pickle", kwds);
    mp_obj *o = mp_obj_instance_new(REBUILD, args);
    assert_non_null(o);
    mp_obj_free(args);
    mp_obj_free(tok);
    mp_obj_free(targs);
    return o;
}

static void test_c_proxy_references_rebuild_pythons_proxies(void **state)
{
    (void)state;
    mp_obj *empty = mp_obj_dict_new();
    mp_obj *exposed = mp_obj_build("{s(ss)}", "exposed", "put", "get");
    mp_obj *l = proxyref("ListProxy", "list", "1f", empty);
    mp_obj *q = proxyref("AutoProxy", "Queue", "2", exposed);
    mp_obj *both = mp_obj_build("[OO]", l, q);
    unsigned char *in = NULL;
    size_t inlen = 0;
    void *p;
    size_t n;
    TU_ASSERT_STATUS(mp_obj_dumps(l, &p, &n), 0);
    put_rec(&in, &inlen, p, n);
    /* The decoder reads back what the encoder wrote. */
    mp_obj *back = loads_ok(p, n);
    assert_true(mp_obj_equal(back, l));
    mp_obj_free(back);
    free(p);
    TU_ASSERT_STATUS(mp_obj_dumps(both, &p, &n), 0);
    put_rec(&in, &inlen, p, n);
    back = loads_ok(p, n);
    assert_true(mp_obj_equal(back, both));
    mp_obj_free(back);
    free(p);
    char *r = repr_of(l);
    assert_string_equal(r, "RebuildProxy('ListProxy', Token(typeid='list', address=('127.0.0.1', "
                           "5000), id='1f'), 'pickle', {})");
    free(r);

    unsigned char *out = NULL;
    size_t on = 0;
    TU_ASSERT_STATUS(tu_python_filter(py_load, in, inlen, &out, &on, PY_TIMEOUT), 0);
    static const char expect[] = "ListProxy list ('127.0.0.1', 5000) 1f pickle \n"
                                 "ListProxy list ('127.0.0.1', 5000) 1f pickle \n"
                                 "AutoProxy Queue ('127.0.0.1', 5000) 2 pickle ['get', 'put']\n";
    assert_int_equal(on, sizeof expect - 1);
    assert_memory_equal(out, expect, on);
    free(out);
    free(in);
    mp_obj_free(both);
    mp_obj_free(q);
    mp_obj_free(l);
    mp_obj_free(exposed);
    mp_obj_free(empty);
}

static void test_instance_new_checks_a_proxy_references_shape(void **state)
{
    (void)state;
    mp_obj *targs = mp_obj_build("(sss)", "list", "/tmp/m", "1");
    mp_obj *tok = mp_obj_instance_new("multiprocessing.managers.Token", targs);
    mp_obj *kw = mp_obj_dict_new();
    assert_non_null(tok);
    mp_obj *bad[] = {
        mp_obj_build("(sOsO)", "BaseProxy", tok, "pickle", kw), /* func not on the list */
        mp_obj_build("(OOsO)", kw, tok, "pickle", kw),          /* func not a str */
        mp_obj_build("(sOOO)", "ListProxy", tok, kw, kw),       /* serializer not a str */
        mp_obj_build("(sOs)", "ListProxy", tok, "pickle"),      /* three items */
        mp_obj_build("(sOsOO)", "ListProxy", tok, "pickle", kw, kw),
    };
    for (size_t i = 0; i < N_ELEMS(bad); i++) {
        assert_non_null(bad[i]);
        assert_null(mp_obj_instance_new(REBUILD, bad[i]));
        mp_obj_free(bad[i]);
    }
    /* A token that is a plain tuple, kwds that are not a dict. */
    mp_obj *a = mp_obj_build("(sOsO)", "ListProxy", targs, "pickle", kw);
    assert_null(mp_obj_instance_new(REBUILD, a));
    mp_obj_free(a);
    a = mp_obj_build("(sOsN)", "ListProxy", tok, "pickle", mp_obj_none());
    assert_null(mp_obj_instance_new(REBUILD, a));
    mp_obj_free(a);
    a = mp_obj_build("(sOsO)", "DictProxy", tok, "pickle", kw);
    mp_obj *o = mp_obj_instance_new(REBUILD, a);
    assert_non_null(o);
    mp_obj_free(o);
    mp_obj_free(a);
    mp_obj_free(kw);
    mp_obj_free(tok);
    mp_obj_free(targs);
}

/* ---- Refusals ------------------------------------------------------------- */

static void assert_refused_says(const unsigned char *p, size_t n, const char *words)
{
    assert_refused(p, n);
    const char *m = mp_errmsg(MP_EPROTO);
    if (!strstr(m, words))
        fail_msg("message %s lacks %s", m, words);
}

#define MGR       "\x8c\x18multiprocessing.managers"
#define REBUILD_G MGR "\x8c\x0cRebuildProxy\x93"
#define LISTPROXY MGR "\x8c\x09ListProxy\x93"
#define TOKEN                                                                                      \
    MGR "\x8c\x05Token\x93)\x81\x8c\x04list\x8c\x01/\x8c\x01"                                      \
        "1\x87"                                                                                    \
        "b"
#define SER "\x8c\x06pickle"

static void test_other_funcs_shapes_and_uses_are_refused(void **state)
{
    (void)state;
    /* What CPython writes, accepted (the baseline of the cases below). */
    mp_obj *o = loads_ok(P("\x80\x04" REBUILD_G "(" LISTPROXY TOKEN SER "}tR."));
    assert_proxyref(o, "ListProxy", "list");
    mp_obj_free(o);
    /* Other funcs: a class not on the list, a builtin, a str. */
    assert_refused_says(P("\x80\x04" REBUILD_G "(" MGR "\x8c\x09"
                          "BaseProxy\x93" TOKEN SER "}tR."),
                        "never imports");
    assert_refused_says(P("\x80\x04" REBUILD_G "(\x8c\x08"
                          "builtins\x8c\x04"
                          "eval\x93" TOKEN SER "}tR."),
                        "never imports");
    assert_refused(P("\x80\x04" REBUILD_G "(\x8c\x09ListProxy" TOKEN SER "}tR."));
    /* Other shapes: three or five items, a tuple for the token, a non-str
     * serializer, a list for kwds, a list of args. */
    assert_refused(P("\x80\x04" REBUILD_G "(" LISTPROXY TOKEN SER "tR."));
    assert_refused(P("\x80\x04" REBUILD_G "(" LISTPROXY TOKEN SER "}}tR."));
    assert_refused(P("\x80\x04" REBUILD_G "(" LISTPROXY "\x8c\x01"
                     "a\x8c\x01"
                     "b\x8c\x01"
                     "c\x87" SER "}tR."));
    assert_refused(P("\x80\x04" REBUILD_G "(" LISTPROXY TOKEN "K\x01}tR."));
    assert_refused(P("\x80\x04" REBUILD_G "(" LISTPROXY TOKEN SER "]tR."));
    assert_refused(P("\x80\x04" REBUILD_G "(" LISTPROXY TOKEN SER "}lR."));
    /* A proxy class is never a value: alone, in a list, a dict, or a tuple
     * REDUCE never consumes; nor is it called itself. */
    assert_refused_says(P("\x80\x04" LISTPROXY "."), "");
    assert_refused(P("\x80\x04(" LISTPROXY "l."));
    assert_refused(P("\x80\x04}\x8c\x01k" LISTPROXY "s."));
    assert_refused_says(P("\x80\x04(" LISTPROXY TOKEN SER "}t."), "never as a value");
    assert_refused_says(P("\x80\x04" LISTPROXY "(" TOKEN SER "}tR."), "never calls");
    /* RebuildProxy is only REDUCE'd: not a value, not NEWOBJ'd, not BUILT. */
    assert_refused(P("\x80\x04" REBUILD_G "."));
    assert_refused_says(P("\x80\x04" REBUILD_G ")\x81."), "never calls");
    assert_refused_says(P("\x80\x04" REBUILD_G "(" LISTPROXY TOKEN SER "}tR}b."), "never calls");
}

/* range(start, stop, step) both ways: Python's pickle decodes to the
 * inert instance, ours loads in Python as the range; other shapes refused. */
static const char py_range[] = "import sys, pickle\n"
                               "data = sys.stdin.buffer.read()\n"
                               "v = pickle.loads(data)\n"
                               "sys.stdout.write('%r %d\\n' % (v, len(v)))\n";

#define RANGE_G                                                                                    \
    "\x8c\x08"                                                                                     \
    "builtins\x8c\x05range\x93"

static void test_range_travels_as_an_inert_instance(void **state)
{
    (void)state;
    /* pickle.dumps(range(-5, 100, 7), 4) without FRAME and memo */
    mp_obj *o = loads_ok(P("\x80\x04" RANGE_G "J\xfb\xff\xff\xff"
                           "Kd"
                           "K\x07\x87R."));
    assert_string_equal(mp_obj_instance_class(o), "builtins.range");
    char *r = repr_of(o);
    assert_string_equal(r, "range(-5, 100, 7)");
    free(r);
    void *p;
    size_t n;
    TU_ASSERT_STATUS(mp_obj_dumps(o, &p, &n), 0);
    unsigned char *out = NULL;
    size_t on = 0;
    TU_ASSERT_STATUS(tu_python_filter(py_range, p, n, &out, &on, PY_TIMEOUT), 0);
    static const char expect[] = "range(-5, 100, 7) 15\n";
    assert_int_equal(on, sizeof expect - 1);
    assert_memory_equal(out, expect, on);
    free(out);
    free(p);
    mp_obj_free(o);
    o = loads_ok(P("\x80\x04" RANGE_G "K\x00K\x03K\x01\x87R."));
    r = repr_of(o);
    assert_string_equal(r, "range(0, 3)"); /* Python's repr leaves out a step of 1 */
    free(r);
    mp_obj_free(o);
    /* A step of 0, two items, a str, an int beyond 64 bits. */
    assert_refused(P("\x80\x04" RANGE_G "K\x00K\x03K\x00\x87R."));
    assert_refused(P("\x80\x04" RANGE_G "K\x00K\x03\x86R."));
    assert_refused(P("\x80\x04" RANGE_G "K\x00\x8c\x01"
                     "aK\x01\x87R."));
    assert_refused(
        P("\x80\x04" RANGE_G "K\x00\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01K\x01\x87R."));
    mp_obj *bad = mp_obj_build("(iii)", 0, 3, 0);
    assert_null(mp_obj_instance_new("builtins.range", bad));
    mp_obj_free(bad);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_python_proxies_decode_as_inert_proxy_references),
        cmocka_unit_test(test_c_proxy_references_rebuild_pythons_proxies),
        cmocka_unit_test(test_instance_new_checks_a_proxy_references_shape),
        cmocka_unit_test(test_other_funcs_shapes_and_uses_are_refused),
        cmocka_unit_test(test_range_travels_as_an_inert_instance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
