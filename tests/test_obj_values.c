/* obj_values: set, frozenset and bytearray values (their API, Python's
 * equality, hashing and repr), and mp_obj_dumps / mp_obj_loads: exact
 * protocol 4 bytes, round trips of every type, and the machine's python3
 * loading what we dump and dumping what we load. */
#include "pickle_helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static mp_obj *must(mp_obj *o)
{
    assert_non_null(o);
    return o;
}

static mp_obj *I(int64_t v)
{
    return must(mp_obj_int(v));
}

static mp_obj *S(const char *s)
{
    return must(mp_obj_str_cstr(s));
}

/* A set (or frozenset) of n ints. */
static mp_obj *int_set(bool frozen, size_t n, const int64_t *v)
{
    mp_obj *s = must(frozen ? mp_obj_frozenset_new() : mp_obj_set_new());
    for (size_t i = 0; i < n; i++)
        TU_ASSERT_STATUS(mp_obj_set_add(s, I(v[i])), 0);
    return s;
}

static void assert_repr(const mp_obj *o, const char *want)
{
    char *r;
    TU_ASSERT_STATUS(mp_obj_repr(o, &r), 0);
    assert_string_equal(r, want);
    free(r);
}

/* ---- The set API ----------------------------------------------------------- */

static void test_set_add_contains_discard_and_len_follow_python(void **state)
{
    (void)state;
    mp_obj *s = must(mp_obj_set_new());
    assert_int_equal(mp_obj_type(s), MP_TYPE_SET);
    assert_string_equal(mp_type_name(MP_TYPE_SET), "set");
    assert_int_equal(mp_obj_len(s), 0);
    TU_ASSERT_STATUS(mp_obj_set_add(s, I(1)), 0);
    TU_ASSERT_STATUS(mp_obj_set_add(s, S("a")), 0);
    /* 1.0 and True are the same item as 1 (Python: {1, 1.0, True} == {1}) */
    TU_ASSERT_STATUS(mp_obj_set_add(s, must(mp_obj_float(1.0))), 0);
    TU_ASSERT_STATUS(mp_obj_set_add(s, must(mp_obj_bool(true))), 0);
    assert_int_equal(mp_obj_len(s), 2);
    mp_obj *probe = must(mp_obj_float(1.0));
    assert_int_equal(mp_obj_set_contains(s, probe), 1);
    mp_obj_free(probe);
    probe = S("b");
    assert_int_equal(mp_obj_set_contains(s, probe), 0);
    assert_int_equal(mp_obj_set_discard(s, probe), 0); /* discard of a missing item: no error */
    mp_obj_free(probe);
    probe = S("a");
    assert_int_equal(mp_obj_set_discard(s, probe), 1);
    assert_int_equal(mp_obj_set_contains(s, probe), 0);
    mp_obj_free(probe);
    assert_int_equal(mp_obj_len(s), 1);
    assert_repr(s, "{1}");
    mp_obj_free(s);
}

static void test_set_refuses_unhashable_items_and_keeps_them_with_the_caller(void **state)
{
    (void)state;
    /* Python: {[]} is TypeError: unhashable type: 'list'; so are dict, set,
     * bytearray, and a tuple holding a list. The caller still owns them. */
    mp_obj *s = must(mp_obj_set_new());
    mp_obj *bad[5] = {must(mp_obj_list_new()), must(mp_obj_dict_new()), must(mp_obj_set_new()),
                      must(mp_obj_bytearray("x", 1)), must(mp_obj_tuple_new())};
    TU_ASSERT_STATUS(mp_obj_tuple_append(bad[4], must(mp_obj_list_new())), 0);
    for (int i = 0; i < 5; i++) {
        TU_ASSERT_STATUS(mp_obj_set_add(s, bad[i]), MP_ETYPE);
        TU_ASSERT_STATUS(mp_obj_set_contains(s, bad[i]), MP_ETYPE);
        TU_ASSERT_STATUS(mp_obj_set_discard(s, bad[i]), MP_ETYPE);
        mp_obj_free(bad[i]);
    }
    assert_int_equal(mp_obj_len(s), 0);
    /* and the misuse every container refuses */
    TU_ASSERT_STATUS(mp_obj_set_add(s, s), -EINVAL);
    TU_ASSERT_STATUS(mp_obj_set_add(NULL, I(1)), -EINVAL);
    mp_obj *l = must(mp_obj_list_new());
    TU_ASSERT_STATUS(mp_obj_set_add(l, I(1)), MP_ETYPE);
    TU_ASSERT_STATUS(mp_obj_set_contains(l, I(1)), MP_ETYPE);
    size_t pos = 0;
    TU_ASSERT_STATUS(mp_obj_set_next(l, &pos, NULL), MP_ETYPE);
    mp_obj_free(l);
    mp_obj_free(s);
}

static void test_set_next_visits_every_item_once_in_insertion_order(void **state)
{
    (void)state;
    int64_t v[] = {5, 300, -7, 1000000};
    mp_obj *s = int_set(false, 4, v);
    mp_obj *gone = I(300);
    assert_int_equal(mp_obj_set_discard(s, gone), 1);
    mp_obj_free(gone);
    size_t pos = 0, n = 0;
    const mp_obj *item;
    int64_t want[] = {5, -7, 1000000}, got;
    while (mp_obj_set_next(s, &pos, &item) == 1) {
        assert_true(n < 3);
        TU_ASSERT_STATUS(mp_obj_get_int(item, &got), 0);
        assert_int_equal(got, want[n++]);
    }
    assert_int_equal(n, 3);
    mp_obj_free(s);
}

static void test_frozenset_is_hashable_and_immutable_once_inside_a_value(void **state)
{
    (void)state;
    int64_t v[] = {1, 2};
    mp_obj *fs = int_set(true, 2, v);
    assert_string_equal(mp_type_name(mp_obj_type(fs)), "frozenset");
    TU_ASSERT_STATUS(mp_obj_set_discard(fs, I(1)), MP_ETYPE); /* frozenset has no discard */
    /* as a dict key, found by an equal frozenset built in another order */
    mp_obj *d = must(mp_obj_dict_new());
    TU_ASSERT_STATUS(mp_obj_dict_set(d, fs, S("v")), 0);
    int64_t rv[] = {2, 1};
    mp_obj *probe = int_set(true, 2, rv);
    const char *str;
    TU_ASSERT_STATUS(mp_obj_get_str(mp_obj_dict_get(d, probe), &str, NULL), 0);
    assert_string_equal(str, "v");
    /* a set equal to it finds nothing: a set is unhashable */
    mp_obj *mutable_probe = int_set(false, 2, rv);
    assert_null(mp_obj_dict_get(d, mutable_probe));
    assert_true(mp_obj_equal(mutable_probe, probe)); /* but {1, 2} == frozenset({1, 2}) */
    /* inside a value, no more adding */
    mp_obj *big = I(1000);
    TU_ASSERT_STATUS(mp_obj_set_add(fs, big), -EINVAL);
    mp_obj_free(big); /* still the caller's */
    /* as a set item, next to an equal one: one item */
    mp_obj *outer = must(mp_obj_set_new());
    TU_ASSERT_STATUS(mp_obj_set_add(outer, probe), 0);
    TU_ASSERT_STATUS(mp_obj_set_add(outer, int_set(true, 2, v)), 0);
    assert_int_equal(mp_obj_len(outer), 1);
    assert_repr(outer, "{frozenset({2, 1})}");
    mp_obj_free(outer);
    mp_obj_free(mutable_probe);
    mp_obj_free(d);
}

static void test_set_equality_ignores_order_and_copy_is_equal(void **state)
{
    (void)state;
    int64_t a[] = {1, 2, 3}, b[] = {3, 1, 2}, c[] = {1, 2, 4};
    mp_obj *x = int_set(false, 3, a), *y = int_set(true, 3, b), *z = int_set(false, 3, c);
    assert_true(mp_obj_equal(x, y));
    assert_false(mp_obj_equal(x, z));
    mp_obj *e1 = must(mp_obj_set_new()), *e2 = must(mp_obj_dict_new());
    assert_false(mp_obj_equal(e1, e2)); /* set() != {} */
    mp_obj *cx = must(mp_obj_copy(x)), *cy = must(mp_obj_copy(y));
    assert_int_equal(mp_obj_type(cy), MP_TYPE_FROZENSET);
    assert_true(mp_obj_equal(cx, x));
    assert_true(mp_obj_equal(cy, y));
    /* the copy is independent */
    mp_obj *one = I(1);
    assert_int_equal(mp_obj_set_discard(cx, one), 1);
    assert_int_equal(mp_obj_set_contains(x, one), 1);
    mp_obj_free(one);
    mp_obj *objs[] = {x, y, z, e1, e2, cx, cy};
    for (size_t i = 0; i < 7; i++)
        mp_obj_free(objs[i]);
}

static void test_repr_of_sets_frozensets_and_bytearrays_is_pythons(void **state)
{
    (void)state;
    int64_t v[] = {1, 2};
    mp_obj *o;
    assert_repr(o = must(mp_obj_set_new()), "set()");
    mp_obj_free(o);
    assert_repr(o = must(mp_obj_frozenset_new()), "frozenset()");
    mp_obj_free(o);
    assert_repr(o = int_set(false, 2, v), "{1, 2}");
    mp_obj_free(o);
    assert_repr(o = int_set(true, 2, v), "frozenset({1, 2})");
    mp_obj_free(o);
    assert_repr(o = must(mp_obj_bytearray("ab", 2)), "bytearray(b'ab')");
    mp_obj_free(o);
    assert_repr(o = must(mp_obj_bytearray(NULL, 0)), "bytearray(b'')");
    mp_obj_free(o);
    assert_repr(o = must(mp_obj_bytearray("it's\n", 5)), "bytearray(b\"it's\\n\")");
    mp_obj_free(o);
}

static void test_bytearray_reads_as_bytes_changes_in_place_and_equals_bytes(void **state)
{
    (void)state;
    mp_obj *ba = must(mp_obj_bytearray("abc", 3)), *b = must(mp_obj_bytes("abc", 3));
    assert_int_equal(mp_obj_type(ba), MP_TYPE_BYTEARRAY);
    assert_string_equal(mp_type_name(MP_TYPE_BYTEARRAY), "bytearray");
    assert_int_equal(mp_obj_len(ba), 3);
    const unsigned char *p;
    size_t len;
    TU_ASSERT_STATUS(mp_obj_get_bytes(ba, &p, &len), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(p, "abc", 3);
    assert_true(mp_obj_equal(ba, b)); /* b'abc' == bytearray(b'abc') */
    unsigned char *w;
    TU_ASSERT_STATUS(mp_obj_get_bytes_mut(ba, &w, &len), 0);
    w[0] = 'X';
    assert_false(mp_obj_equal(ba, b));
    assert_repr(ba, "bytearray(b'Xbc')");
    TU_ASSERT_STATUS(mp_obj_get_bytes_mut(b, &w, &len), MP_ETYPE); /* bytes are immutable */
    TU_ASSERT_STATUS(mp_obj_get_bytes_mut(NULL, &w, &len), -EINVAL);
    assert_null(mp_obj_bytearray(NULL, 1));
    /* unhashable: not a dict key */
    mp_obj *d = must(mp_obj_dict_new());
    TU_ASSERT_STATUS(mp_obj_dict_set(d, ba, I(1)), MP_ETYPE);
    mp_obj *copy = must(mp_obj_copy(ba));
    assert_int_equal(mp_obj_type(copy), MP_TYPE_BYTEARRAY);
    assert_true(mp_obj_equal(copy, ba));
    mp_obj_free(copy);
    mp_obj_free(d);
    mp_obj_free(ba);
    mp_obj_free(b);
}

/* ---- mp_obj_dumps / mp_obj_loads --------------------------------------------- */

static void assert_dumps(mp_obj *o, const char *expected, size_t n)
{
    void *out;
    size_t len;
    TU_ASSERT_STATUS(mp_obj_dumps(o, &out, &len), 0);
    if (len != n || memcmp(out, expected, n) != 0) {
        char *r = NULL;
        mp_obj_repr(o, &r);
        fail_msg("dumps of %s: %zu bytes, want %zu", r ? r : "?", len, n);
    }
    free(out);
    mp_obj_free(o);
}

#define DUMPS(o, lit) assert_dumps((o), lit, sizeof lit - 1)

static void test_dumps_writes_what_python_writes_for_the_new_types(void **state)
{
    (void)state;
    /* pickle.dumps(x, 4) of Python 3.11 without its FRAME and memo opcodes */
    int64_t v[] = {1, 2};
    DUMPS(int_set(false, 2, v), "\x80\x04\x8f(K\x01K\x02\x90.");
    DUMPS(must(mp_obj_set_new()), "\x80\x04\x8f.");
    DUMPS(int_set(true, 2, v), "\x80\x04(K\x01K\x02\x91.");
    DUMPS(must(mp_obj_frozenset_new()), "\x80\x04(\x91.");
    DUMPS(must(mp_obj_bytearray("ab", 2)), "\x80\x04\x8c\x08"
                                           "builtins\x8c\tbytearray\x93"
                                           "C\x02"
                                           "ab\x85R.");
    DUMPS(must(mp_obj_bytearray(NULL, 0)), "\x80\x04\x8c\x08"
                                           "builtins\x8c\tbytearray\x93)R.");
}

static void test_dumps_batches_set_items_by_1000_as_python(void **state)
{
    (void)state;
    mp_obj *s = must(mp_obj_set_new());
    for (int64_t i = 0; i < 2001; i++)
        TU_ASSERT_STATUS(mp_obj_set_add(s, I(i)), 0);
    void *out;
    size_t len;
    TU_ASSERT_STATUS(mp_obj_dumps(s, &out, &len), 0);
    size_t marks = 0, adds = 0;
    const unsigned char *p = out;
    /* every item is K, M or J, so the opcodes can be walked */
    for (size_t i = 3; i < len - 1;) {
        unsigned op = p[i];
        if (op == '(')
            marks++, i++;
        else if (op == 0x90)
            adds++, i++;
        else
            i += op == 'K' ? 2 : op == 'M' ? 3 : 5;
    }
    assert_int_equal(marks, 3);
    assert_int_equal(adds, 3);
    mp_obj *back;
    TU_ASSERT_STATUS(mp_obj_loads(out, len, &back), 0);
    assert_true(mp_obj_equal(back, s));
    mp_obj_free(back);
    free(out);
    mp_obj_free(s);
}

/* One value of every type, nested: the sets inside lists, tuples, dicts. */
static mp_obj *every_type(void)
{
    mp_obj *l = must(mp_obj_list_new());
    mp_obj *items[] = {must(mp_obj_none()),
                       must(mp_obj_bool(true)),
                       I(-1234567890123),
                       must(mp_obj_float(0.1)),
                       S("caf\xc3\xa9"),
                       must(mp_obj_bytes("\0\xff", 2)),
                       must(mp_obj_bytearray("ba", 2)),
                       must(mp_obj_bytearray(NULL, 0)),
                       must(mp_obj_tuple_new()),
                       must(mp_obj_dict_new()),
                       must(mp_obj_set_new()),
                       must(mp_obj_frozenset_new())};
    for (size_t i = 0; i < sizeof items / sizeof items[0]; i++)
        TU_ASSERT_STATUS(mp_obj_list_append(l, items[i]), 0);
    int64_t v[] = {3, 1, 2};
    mp_obj *fs = int_set(true, 3, v);
    mp_obj *s = must(mp_obj_set_new());
    TU_ASSERT_STATUS(mp_obj_set_add(s, S("x")), 0);
    TU_ASSERT_STATUS(mp_obj_set_add(s, int_set(true, 2, v)), 0);
    mp_obj *t = must(mp_obj_tuple_new());
    TU_ASSERT_STATUS(mp_obj_tuple_append(t, I(7)), 0);
    TU_ASSERT_STATUS(mp_obj_tuple_append(t, int_set(true, 1, v)), 0);
    TU_ASSERT_STATUS(mp_obj_set_add(s, t), 0);
    mp_obj *d = must(mp_obj_dict_new());
    TU_ASSERT_STATUS(mp_obj_dict_set(d, fs, s), 0);
    TU_ASSERT_STATUS(mp_obj_dict_set(d, S("ba"), must(mp_obj_bytearray("q", 1))), 0);
    TU_ASSERT_STATUS(mp_obj_list_append(l, d), 0);
    return l;
}

static void test_dumps_then_loads_round_trips_every_type(void **state)
{
    (void)state;
    mp_obj *o = every_type();
    void *out;
    size_t len;
    TU_ASSERT_STATUS(mp_obj_dumps(o, &out, &len), 0);
    mp_obj *back;
    TU_ASSERT_STATUS(mp_obj_loads(out, len, &back), 0);
    assert_true(mp_obj_equal(back, o));
    char *r1, *r2;
    TU_ASSERT_STATUS(mp_obj_repr(o, &r1), 0);
    TU_ASSERT_STATUS(mp_obj_repr(back, &r2), 0);
    assert_string_equal(r1, r2); /* types kept: a bytearray stays one */
    free(r1);
    free(r2);
    /* and the connection's decoder reads the same bytes the same way */
    mp_obj *back2;
    TU_ASSERT_STATUS(mp__pickle_loads(out, len, &back2), 0);
    assert_true(mp_obj_equal(back2, o));
    mp_obj_free(back2);
    mp_obj_free(back);
    free(out);
    mp_obj_free(o);
}

static void test_loads_ignores_bytes_after_stop_as_python_does(void **state)
{
    (void)state;
    /* pickle.loads(b'\x80\x04K\x05.junk') == 5; a frame must hold one
     * pickle exactly, so the connection's decoder refuses it. */
    static const char p[] = "\x80\x04K\x05.junk";
    mp_obj *o = NULL;
    TU_ASSERT_STATUS(mp_obj_loads(p, sizeof p - 1, &o), 0);
    int64_t v;
    TU_ASSERT_STATUS(mp_obj_get_int(o, &v), 0);
    assert_int_equal(v, 5);
    mp_obj_free(o);
    TU_ASSERT_STATUS(mp__pickle_loads((const unsigned char *)p, sizeof p - 1, &o), MP_EPROTO);
    assert_null(o);
}

static void test_loads_refuses_what_the_connection_refuses_and_leaks_nothing(void **state)
{
    (void)state;
    static const struct {
        const char *p;
        size_t n;
    } bad[] = {
#define B(s) {s, sizeof s - 1}
        B("cos\nsystem\n(S'echo'\ntR."),    /* an import and a call */
        B("\x80\x04\x8f(]\x90."),           /* a list in a set: unhashable */
        B("\x80\x04(K\x01\x91(K\x02\x90."), /* ADDITEMS on a frozenset */
        B("\x80\x04\x8f(K\x01K\x02\x90"),   /* no STOP */
        B("\x80\x03"
          "cbuiltins\nset\n)R."), /* set() without its list */
        B("\x80\x03"
          "cbuiltins\nset\nK\x01\x85R."), /* set(1) */
        B("\x80\x03"
          "cbuiltins\nlist\n]\x85R."), /* a name outside the table */
        B("\x80\x03"
          "cbuiltins\nfrozenset\n]K\x01\x86R."), /* two arguments */
        B("\x80\x03"
          "cbuiltins\nset\n."), /* the callable as a value */
        B("\x80\x04]\x8c\x08"
          "builtins\x8c\x03set\x93"
          "a."), /* ... or an item */
#undef B
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mp_obj *o = (mp_obj *)&o;
        int rc = mp_obj_loads(bad[i].p, bad[i].n, &o);
        if (rc != MP_EPROTO)
            fail_msg("case %zu: %s", i, mp_errname(rc));
        assert_null(o);
    }
    mp_obj *o;
    TU_ASSERT_STATUS(mp_obj_loads(NULL, 1, &o), -EINVAL);
    TU_ASSERT_STATUS(mp_obj_loads("N.", 2, NULL), -EINVAL);
    void *out;
    size_t len;
    TU_ASSERT_STATUS(mp_obj_dumps(NULL, &out, &len), -EINVAL);
    assert_null(out);
}

static void test_loads_reads_sets_as_protocols_0_to_3_write_them(void **state)
{
    (void)state;
    /* builtins.set / frozenset called with one list: what pickle.dumps({1},
     * 2) and frozenset() in protocols 0 and 3 write; built, not called. */
    static const struct {
        const char *p;
        size_t n;
        const char *repr;
    } ok[] = {
#define C(s, r) {s, sizeof s - 1, r}
        C("c__builtin__\nset\np0\n((lp1\nI1\natp2\nRp3\n.", "{1}"),
        C("c__builtin__\nfrozenset\np0\n((lp1\ntp2\nRp3\n.", "frozenset()"),
        C("\x80\x02"
          "c__builtin__\nset\nq\x00]q\x01K\x01"
          "a\x85q\x02Rq\x03.",
          "{1}"),
        C("\x80\x03"
          "cbuiltins\nfrozenset\nq\x00]q\x01\x85q\x02Rq\x03.",
          "frozenset()"),
        C("\x80\x03"
          "cbuiltins\nset\n](K\x01K\x02K\x01"
          "e\x85R.",
          "{1, 2}"),
        C("\x80\x05\x96\x02\x00\x00\x00\x00\x00\x00\x00"
          "ab.",
          "bytearray(b'ab')"),
        C("\x80\x04(\x91.", "frozenset()"), /* FROZENSET on an empty stack */
        /* memo: a set shared by a list, BINGET of it */
        C("\x80\x04]\x94(\x8f\x94(K\x01\x90h\x01"
          "e.",
          "[{1}, {1}]"),
#undef C
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        mp_obj *o = NULL;
        int rc = mp_obj_loads(ok[i].p, ok[i].n, &o);
        if (rc != 0)
            fail_msg("case %zu: %s", i, mp_errname(rc));
        assert_repr(o, ok[i].repr);
        mp_obj_free(o);
    }
}

/* ---- Talking to the real python3 ---------------------------------------------- */

static const char python_expects_every_type[] =
    "import pickle, sys\n"
    "o = pickle.loads(sys.stdin.buffer.read())\n"
    "exp = [None, True, -1234567890123, 0.1, 'caf\\xe9', b'\\x00\\xff', bytearray(b'ba'),\n"
    "       bytearray(), (), {}, set(), frozenset(),\n"
    "       {frozenset({1, 2, 3}): {'x', frozenset({3, 1}), (7, frozenset({3}))},\n"
    "        'ba': bytearray(b'q')}]\n"
    "ok = o == exp and [type(x) for x in o] == [type(x) for x in exp]\n"
    "ok = ok and type(o[-1]['ba']) is bytearray\n"
    "ok = ok and all(type(k) is frozenset for k in o[-1] if not isinstance(k, str))\n"
    "if not ok: sys.stderr.write('python3 got %.300r\\n' % (o,))\n"
    "sys.exit(0 if ok else 1)\n";

static void test_python3_loads_what_mp_obj_dumps_writes(void **state)
{
    (void)state;
    mp_obj *o = every_type();
    void *p;
    size_t n;
    TU_ASSERT_STATUS(mp_obj_dumps(o, &p, &n), 0);
    assert_int_equal(tu_python_filter(python_expects_every_type, p, n, NULL, NULL, 60), 0);
    free(p);
    mp_obj_free(o);
}

/* Python writes records: pickle length, pickle, repr length, repr. */
static const char python_dumps_sets[] =
    "import pickle, sys, struct\n"
    "fs = frozenset({1, 2})\n"
    "s = {3, 4}\n"
    "objs = [{1, 2}, set(), frozenset({1, 2}), frozenset(), [{1}], [s, s], (fs, fs),\n"
    "  {fs: s}, {'a', 'b', 'c'}, set(range(2500)), frozenset(range(1500)),\n"
    "  {frozenset({frozenset({1}), 2}), (1, fs)}, bytearray(b'ab'), bytearray(),\n"
    "  [bytearray(b'x'), bytearray(b'x')]]\n"
    "out = sys.stdout.buffer\n"
    "for p in [0, 1, 2, 3, 4, 5]:\n"
    "    for o in objs:\n"
    "        b = pickle.dumps(o, protocol=p)\n"
    "        if b'_codecs' in b:\n"
    "            continue  # protocols 0-2 write bytes as a _codecs call: refused\n"
    "        r = repr(o).encode()\n"
    "        out.write(struct.pack('<I', len(b)) + b + struct.pack('<I', len(r)) + r)\n";

static void test_we_load_the_sets_and_bytearrays_python3_dumps(void **state)
{
    (void)state;
    unsigned char *out;
    size_t n;
    assert_int_equal(tu_python_filter(python_dumps_sets, NULL, 0, &out, &n, 60), 0);
    /* A set keeps the order its pickle lists the items in, which is Python's
     * iteration order: the reprs match character for character. */
    size_t count = assert_python_records(out, n, true);
    assert_int_equal(count, 6 * 15 - 3 * 2); /* less the _codecs ones */
    free(out);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_add_contains_discard_and_len_follow_python),
        cmocka_unit_test(test_set_refuses_unhashable_items_and_keeps_them_with_the_caller),
        cmocka_unit_test(test_set_next_visits_every_item_once_in_insertion_order),
        cmocka_unit_test(test_frozenset_is_hashable_and_immutable_once_inside_a_value),
        cmocka_unit_test(test_set_equality_ignores_order_and_copy_is_equal),
        cmocka_unit_test(test_repr_of_sets_frozensets_and_bytearrays_is_pythons),
        cmocka_unit_test(test_bytearray_reads_as_bytes_changes_in_place_and_equals_bytes),
        cmocka_unit_test(test_dumps_writes_what_python_writes_for_the_new_types),
        cmocka_unit_test(test_dumps_batches_set_items_by_1000_as_python),
        cmocka_unit_test(test_dumps_then_loads_round_trips_every_type),
        cmocka_unit_test(test_loads_ignores_bytes_after_stop_as_python_does),
        cmocka_unit_test(test_loads_refuses_what_the_connection_refuses_and_leaks_nothing),
        cmocka_unit_test(test_loads_reads_sets_as_protocols_0_to_3_write_them),
        TU_TEST(test_python3_loads_what_mp_obj_dumps_writes),
        TU_TEST(test_we_load_the_sets_and_bytearrays_python3_dumps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
