/* pickle: the encoder writes the protocol 4 opcodes CPython writes, what
 * it writes reads back, the machine's python3 reads what we write and we
 * read what it writes. The decoder's own tests are in test_unpickle.c. */
#include "pickle_helpers.h"
#include "pickle_vectors.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- Writing -------------------------------------------------------------- */

static void assert_dumps(mp_obj *o, const unsigned char *expected, size_t n)
{
    unsigned char *out;
    size_t len;
    TU_ASSERT_STATUS(mp__pickle_dumps(o, &out, &len), 0);
    assert_int_equal(len, n);
    assert_memory_equal(out, expected, n);
    free(out);
    mp_obj_free(o);
}

static void test_dumps_writes_the_protocol_4_opcodes_cpython_uses(void **state)
{
    (void)state;
    assert_dumps(mp_obj_none(), P("\x80\x04N."));
    assert_dumps(mp_obj_bool(true), P("\x80\x04\x88."));
    assert_dumps(mp_obj_bool(false), P("\x80\x04\x89."));
    assert_dumps(mp_obj_int(5), P("\x80\x04K\x05."));
    assert_dumps(mp_obj_int(256), P("\x80\x04M\x00\x01."));
    assert_dumps(mp_obj_int(65536), P("\x80\x04J\x00\x00\x01\x00."));
    assert_dumps(mp_obj_int(-1), P("\x80\x04J\xff\xff\xff\xff."));
    assert_dumps(mp_obj_int(INT64_C(2147483648)), P("\x80\x04\x8a\x05\x00\x00\x00\x80\x00."));
    assert_dumps(mp_obj_int(INT64_C(-2147483649)), P("\x80\x04\x8a\x05\xff\xff\xff\x7f\xff."));
    assert_dumps(mp_obj_int(INT64_MAX), P("\x80\x04\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7f."));
    assert_dumps(mp_obj_int(INT64_MIN), P("\x80\x04\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80."));
    assert_dumps(mp_obj_float(1.5), P("\x80\x04G?\xf8\x00\x00\x00\x00\x00\x00."));
    assert_dumps(mp_obj_str("a\0", 2), P("\x80\x04\x8c\x02"
                                         "a\x00."));
    assert_dumps(mp_obj_bytes("", 0), P("\x80\x04"
                                        "C\x00."));
    assert_dumps(mp_obj_tuple_new(), P("\x80\x04)."));
    mp_obj *l = mp_obj_list_new();
    TU_ASSERT_STATUS(mp_obj_list_append(l, mp_obj_int(1)), 0);
    assert_dumps(l, P("\x80\x04]K\x01"
                      "a."));
    mp_obj *d = mp_obj_dict_new();
    TU_ASSERT_STATUS(mp_obj_dict_set(d, mp_obj_str_cstr("a"), mp_obj_int(1)), 0);
    TU_ASSERT_STATUS(mp_obj_dict_set(d, mp_obj_str_cstr("b"), mp_obj_int(2)), 0);
    assert_dumps(d, P("\x80\x04}(\x8c\x01"
                      "aK\x01\x8c\x01"
                      "bK\x02u."));
    mp_obj *t = mp_obj_tuple_new();
    for (int i = 0; i < 4; i++)
        TU_ASSERT_STATUS(mp_obj_tuple_append(t, mp_obj_int(i)), 0);
    assert_dumps(t, P("\x80\x04(K\x00K\x01K\x02K\x03t."));
    /* 256 bytes of text no longer fit SHORT_BINUNICODE's length */
    char big[256];
    memset(big, 'x', sizeof big);
    mp_obj *s = mp_obj_str(big, sizeof big);
    unsigned char *out;
    size_t len;
    TU_ASSERT_STATUS(mp__pickle_dumps(s, &out, &len), 0);
    assert_int_equal(len, 2 + 5 + 256 + 1);
    assert_memory_equal(out, "\x80\x04X\x00\x01\x00\x00", 7);
    free(out);
    mp_obj_free(s);
}

static void test_dumps_of_a_dict_after_deletes_keeps_the_live_items_in_order(void **state)
{
    (void)state;
    mp_obj *d = mp_obj_dict_new();
    for (int i = 0; i < 2500; i++)
        TU_ASSERT_STATUS(mp_obj_dict_set(d, mp_obj_int(i), mp_obj_int(-i)), 0);
    for (int i = 0; i < 2500; i += 3) {
        mp_obj *k = mp_obj_int(i);
        TU_ASSERT_STATUS(mp_obj_dict_del(d, k), 0);
        mp_obj_free(k);
    }
    unsigned char *out;
    size_t len;
    TU_ASSERT_STATUS(mp__pickle_dumps(d, &out, &len), 0);
    mp_obj *back = loads_ok(out, len);
    assert_true(mp_obj_equal(d, back));
    char *r1 = repr_of(d), *r2 = repr_of(back);
    assert_string_equal(r1, r2); /* same order */
    free(r1);
    free(r2);
    free(out);
    mp_obj_free(back);
    mp_obj_free(d);
}

static void test_dumps_then_loads_round_trips_every_vector(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ELEMS(pickle_vecs); i++) {
        const struct pickle_vec *v = &pickle_vecs[i];
        if (v->status != 0)
            continue;
        mp_obj *a = loads_ok(v->data, v->len);
        unsigned char *out;
        size_t len;
        TU_ASSERT_STATUS(mp__pickle_dumps(a, &out, &len), 0);
        mp_obj *b = loads_ok(out, len);
        char *ra = repr_of(a), *rb = repr_of(b);
        assert_string_equal(ra, rb);
        if (strstr(ra, "nan") == NULL)
            assert_true(mp_obj_equal(a, b));
        free(ra);
        free(rb);
        free(out);
        mp_obj_free(a);
        mp_obj_free(b);
    }
}

/* ---- Talking to the real python3 --------------------------------------- */

static mp_obj *must(mp_obj *o)
{
    assert_non_null(o);
    return o;
}

static void add(mp_obj *list, mp_obj *item)
{
    TU_ASSERT_STATUS(mp_obj_list_append(list, must(item)), 0);
}

static void put(mp_obj *d, const char *key, mp_obj *v)
{
    TU_ASSERT_STATUS(mp_obj_dict_set(d, must(mp_obj_str_cstr(key)), must(v)), 0);
}

/* Every type, nested, at the edges: what test_python3_loads_what_we_dump
 * compares with the same value written as a Python literal. */
static mp_obj *build_everything(void)
{
    mp_obj *d = must(mp_obj_dict_new());
    put(d, "none", mp_obj_none());
    mp_obj *bools = must(mp_obj_list_new());
    add(bools, mp_obj_bool(true));
    add(bools, mp_obj_bool(false));
    put(d, "bools", bools);
    static const int64_t ints[] = {0,
                                   1,
                                   -1,
                                   255,
                                   256,
                                   65535,
                                   65536,
                                   -65536,
                                   INT32_MAX,
                                   INT32_MIN,
                                   INT64_C(2147483648),
                                   INT64_C(-2147483649),
                                   INT64_MAX,
                                   INT64_MIN,
                                   INT64_C(1) << 53};
    mp_obj *il = must(mp_obj_list_new());
    for (size_t i = 0; i < N_ELEMS(ints); i++)
        add(il, mp_obj_int(ints[i]));
    put(d, "ints", il);
    static const double floats[] = {1.5, -0.0, 0.0, 0.1, 5e-324, 1e16, 1.7976931348623157e308};
    mp_obj *fl = must(mp_obj_list_new());
    for (size_t i = 0; i < N_ELEMS(floats); i++)
        add(fl, mp_obj_float(floats[i]));
    add(fl, mp_obj_float(INFINITY));
    add(fl, mp_obj_float(-INFINITY));
    put(d, "floats", fl);
    put(d, "nan", mp_obj_float(NAN));
    mp_obj *sl = must(mp_obj_list_new());
    add(sl, mp_obj_str_cstr(""));
    add(sl, mp_obj_str_cstr("h\xc3\xa9llo"));
    add(sl, mp_obj_str_cstr("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"));
    add(sl, mp_obj_str_cstr("\xf0\x9f\x98\x80"));
    add(sl, mp_obj_str("a\0b", 3));
    char *big = malloc(70000);
    assert_non_null(big);
    memset(big, 'y', 70000);
    add(sl, mp_obj_str(big, 300));
    add(sl, mp_obj_str(big, 70000));
    put(d, "strs", sl);
    mp_obj *bl = must(mp_obj_list_new());
    add(bl, mp_obj_bytes("", 0));
    add(bl, mp_obj_bytes("\0\xff", 2));
    add(bl, mp_obj_bytes(big, 300));
    add(bl, mp_obj_bytes(big, 70000));
    free(big);
    put(d, "bytes", bl);
    mp_obj *tl = must(mp_obj_list_new());
    for (int n = 0; n <= 4; n++) {
        mp_obj *t = must(mp_obj_tuple_new());
        for (int i = 1; i <= n; i++)
            TU_ASSERT_STATUS(mp_obj_tuple_append(t, must(mp_obj_int(i))), 0);
        add(tl, t);
    }
    put(d, "tuples", tl);
    mp_obj *range = must(mp_obj_list_new());
    for (int i = 0; i < 2500; i++)
        add(range, mp_obj_int(i));
    put(d, "range2500", range);
    mp_obj *kd = must(mp_obj_dict_new());
    TU_ASSERT_STATUS(mp_obj_dict_set(kd, must(mp_obj_int(1)), must(mp_obj_str_cstr("a"))), 0);
    TU_ASSERT_STATUS(mp_obj_dict_set(kd, must(mp_obj_float(2.5)), must(mp_obj_str_cstr("b"))), 0);
    TU_ASSERT_STATUS(mp_obj_dict_set(kd, must(mp_obj_none()), must(mp_obj_int(3))), 0);
    mp_obj *tk = must(mp_obj_tuple_new()), *tk2 = must(mp_obj_tuple_new());
    TU_ASSERT_STATUS(mp_obj_tuple_append(tk2, must(mp_obj_int(2))), 0);
    TU_ASSERT_STATUS(mp_obj_tuple_append(tk, must(mp_obj_int(1))), 0);
    TU_ASSERT_STATUS(mp_obj_tuple_append(tk, tk2), 0);
    TU_ASSERT_STATUS(mp_obj_dict_set(kd, tk, must(mp_obj_int(4))), 0);
    TU_ASSERT_STATUS(mp_obj_dict_set(kd, must(mp_obj_bytes("k", 1)), must(mp_obj_int(5))), 0);
    TU_ASSERT_STATUS(mp_obj_dict_set(kd, must(mp_obj_str_cstr("")), must(mp_obj_int(6))), 0);
    TU_ASSERT_STATUS(mp_obj_dict_set(kd, must(mp_obj_bool(false)), must(mp_obj_int(7))), 0);
    put(d, "keys", kd);
    mp_obj *bigd = must(mp_obj_dict_new());
    for (int i = 0; i < 2100; i++)
        TU_ASSERT_STATUS(mp_obj_dict_set(bigd, must(mp_obj_int(i)), must(mp_obj_int(-i))), 0);
    put(d, "dict2100", bigd);
    mp_obj *deep = must(mp_obj_list_new());
    for (int i = 1; i < 400; i++) {
        mp_obj *outer = must(mp_obj_list_new());
        add(outer, deep);
        deep = outer;
    }
    put(d, "deep400", deep);
    return d;
}

static const char python_expects_everything[] =
    "import pickle, sys, math\n"
    "o = pickle.loads(sys.stdin.buffer.read())\n"
    "deep = []\n"
    "for i in range(399): deep = [deep]\n"
    "exp = {'none': None, 'bools': [True, False],\n"
    " 'ints': [0, 1, -1, 255, 256, 65535, 65536, -65536, 2**31-1, -2**31, 2**31, -2**31-1,\n"
    "          2**63-1, -2**63, 2**53],\n"
    " 'floats': [1.5, -0.0, 0.0, 0.1, 5e-324, 1e16, 1.7976931348623157e308,\n"
    "            float('inf'), float('-inf')],\n"
    " 'nan': None,\n"
    " 'strs': ['', 'h\\u00e9llo', '\\u65e5\\u672c\\u8a9e', '\\U0001F600', 'a\\x00"
    "b',\n"
    "          'y'*300, 'y'*70000],\n"
    " 'bytes': [b'', b'\\x00\\xff', b'y'*300, b'y'*70000],\n"
    " 'tuples': [(), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)],\n"
    " 'range2500': list(range(2500)),\n"
    " 'keys': {1: 'a', 2.5: 'b', None: 3, (1, (2,)): 4, b'k': 5, '': 6, False: 7},\n"
    " 'dict2100': {i: -i for i in range(2100)},\n"
    " 'deep400': deep}\n"
    "nan = o['nan']; o['nan'] = None\n"
    "ok = isinstance(nan, float) and math.isnan(nan)\n"
    "ok = ok and o == exp and repr(o) == repr(exp) and list(o) == list(exp)\n"
    "ok = ok and math.copysign(1, o['floats'][1]) == -1\n"
    "if not ok: sys.stderr.write('python3 got %.300r\\n' % (o,))\n"
    "sys.exit(0 if ok else 1)\n";

static void test_python3_loads_what_we_dump(void **state)
{
    (void)state;
    /* C -> Python: the equal object, types included (repr tells 1 from
     * True and 1.0), dict order kept, -0.0 and nan preserved. */
    mp_obj *o = build_everything();
    unsigned char *p;
    size_t n;
    TU_ASSERT_STATUS(mp__pickle_dumps(o, &p, &n), 0);
    int status = tu_python_filter(python_expects_everything, p, n, NULL, NULL, 60);
    assert_int_equal(status, 0);
    free(p);
    mp_obj_free(o);
}

static const char python_dumps_for_c[] =
    "import pickle, sys, struct\n"
    "x = [1, 2]; s = 'shared'; t = (x, s)\n"
    "objs = [None, True, False, 0, -1, 2**63-1, -2**63, 1.5, -0.0, 1e16, float('inf'),\n"
    "  '', 'h\\u00e9llo \\U0001F600', 'a\\x00"
    "b', 'y'*70000, [], (), {}, (1,), (1, 2, 3, 4),\n"
    "  [x, x, t, t], {s: s, 'k': [t, {s: x}]}, [[1]*100]*1000,\n"
    "  {i: str(i) for i in range(3000)}, list(range(2500)), [[[[]]]],\n"
    "  {1: 'a', 2.5: 'b', None: 3, (1, (2,)): 4, '': 6, False: 7}]\n"
    "bobjs = [b'', b'\\x00\\xff', b'q'*70000, {b'k': [b'v', b'v']}]\n"
    "out = sys.stdout.buffer\n"
    "for p in [2, 3, 4, 5, None]:\n"
    "    for o in objs + (bobjs if p is None or p >= 3 else []):\n"
    "        b = pickle.dumps(o) if p is None else pickle.dumps(o, protocol=p)\n"
    "        r = repr(o).encode()\n"
    "        out.write(struct.pack('<I', len(b)) + b + struct.pack('<I', len(r)) + r)\n";

static void test_we_load_what_python3_dumps(void **state)
{
    (void)state;
    /* Python -> C, live, with whatever python3 this machine has: protocols
     * 2-5 and the default (what multiprocessing sends). */
    unsigned char *out;
    size_t n;
    int status = tu_python_filter(python_dumps_for_c, NULL, 0, &out, &n, 60);
    assert_int_equal(status, 0);
    size_t count = assert_python_records(out, n, false);
    assert_int_equal(count, 5 * 27 + 4 * 4); /* objs in 5 protocols, bobjs in 4 */
    free(out);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dumps_writes_the_protocol_4_opcodes_cpython_uses),
        cmocka_unit_test(test_dumps_of_a_dict_after_deletes_keeps_the_live_items_in_order),
        cmocka_unit_test(test_dumps_then_loads_round_trips_every_vector),
        TU_TEST(test_python3_loads_what_we_dump),
        TU_TEST(test_we_load_what_python3_dumps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
