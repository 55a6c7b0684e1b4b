/*
 * python: a C end and a real python3 end of one socketpair and of simplex
 * pipes, talking multiprocessing.connection.Connection's protocol: bytes of
 * 0 B, 1 B, 64 KiB and 16 MiB both ways; values of every supported type,
 * sets, frozensets and bytearrays included, nested and with shared
 * references, both ways; Python's values equal to
 * what C built and mp_obj_repr equal to Python's repr; pickles that would
 * run code refused while the connection stays usable.
 */
#include "testutil.h"

#include <mpipc/conn.h>
#include <mpipc/obj.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T_LONG 30.0

static const char PEER[] =
    "import sys, pickle\n"
    "from multiprocessing.connection import Connection\n"
    "duplex = Connection(int(sys.argv[1]))\n"
    "p2c = Connection(int(sys.argv[2]), readable=False)\n"
    "c2p = Connection(int(sys.argv[3]), writable=False)\n"
    "def fail(msg):\n"
    "    sys.stderr.write('python peer: %s\\n' % msg); sys.exit(1)\n"
    "def pattern(n):\n"
    "    return (bytes(range(251)) * (n // 251 + 1))[:n]\n"
    "# 1. bytes, both ways, on the socketpair and the simplex pipes\n"
    "for n in (0, 1, 65536, 16 << 20):\n"
    "    b = duplex.recv_bytes()\n"
    "    if b != pattern(n): fail('bytes of %d from C differ' % n)\n"
    "    duplex.send_bytes(b)\n"
    "    p2c.send_bytes(pattern(n))\n"
    "    if c2p.recv_bytes() != pattern(n): fail('simplex bytes of %d differ' % n)\n"
    "# 2. values built in C: equal to the Python literal, same repr\n"
    "while True:\n"
    "    expr, obj = duplex.recv()\n"
    "    if expr is None: break\n"
    "    expected = eval(expr)\n"
    "    ok = repr(obj) == repr(expected) and (obj == expected or obj != obj)\n"
    "    duplex.send((ok, repr(obj), obj))\n"
    "# 3. values built in Python, with shared references\n"
    "x = [1, 'shared']\n"
    "d = {'k': x}\n"
    "fs = frozenset({3, frozenset({4})})\n"
    "s2 = {5, 'six'}\n"
    "deep = []\n"
    "cur = deep\n"
    "for _ in range(200):\n"
    "    nxt = []; cur.append(nxt); cur = nxt\n"
    "cases = [None, True, False, 0, -1, 2**63 - 1, -2**63, 255, 256, 65535, 65536, -129,\n"
    "         1.5, -0.0, float('inf'), float('-inf'), 1e300, 5e-324, 0.1,\n"
    "         '', 'caf\\xe9 \\u4e2d \\U0001f600', 'a\\x00b', \"it's\", 'x' * 100000,\n"
    "         b'', b'\\x00\\xff\\n', b'q' * 300, bytearray(b'ba'),\n"
    "         [], (), {}, (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4),\n"
    "         [x, x, d, d], (x, [x, (x,)]), {'a': x, 'b': {'c': x}, 1: d, (1, 'k'): [d]},\n"
    "         {1: 'int', 2.5: 'float', None: 'none', b'b': 'bytes', ('t', 1): 'tuple'},\n"
    "         list(range(10000)), deep,\n"
    "         set(), {1, 2}, frozenset(), frozenset({1, 2}), {'a', (1, 2), None, 2.5},\n"
    "         [fs, fs, {fs: fs}], {fs: s2}, set(range(2500)), bytearray(b''),\n"
    "         [bytearray(b'x'), bytearray(b'x')]]\n"
    "for proto in (2, 3, 4, 5, None):\n"
    "    for v in cases:\n"
    "        data = pickle.dumps((repr(v), v), protocol=proto)\n"
    "        if b'_codecs' in data or (proto == 2 and isinstance(v, bytes)):\n"
    "            continue  # protocol 2 writes bytes as code: refused by design\n"
    "        duplex.send_bytes(data)\n"
    "        back = duplex.recv()\n"
    "        if back != v and back == back: fail('round trip of %.80r' % (v,))\n"
    "duplex.send(None)\n"
    "# 4. pickles that would run code, or are not of our types: refused\n"
    "duplex.send_bytes(pickle.dumps(1j))\n"
    "duplex.send_bytes(b'cos\\nsystem\\n(S\"echo pwned\"\\ntR.')\n"
    "class K: pass\n"
    "duplex.send_bytes(pickle.dumps(K()))\n"
    "duplex.send(['still usable'])\n"
    "# 5. values over the simplex pipes\n"
    "o = c2p.recv()\n"
    "p2c.send(o)\n"
    "if duplex.recv_bytes() != b'done': fail('no done')\n";

/* ---- building values in C --------------------------------------------------- */

static mp_obj *must(mp_obj *o)
{
    assert_non_null(o);
    return o;
}

static mp_obj *S(const char *s)
{
    return must(mp_obj_str_cstr(s));
}

static mp_obj *I(int64_t v)
{
    return must(mp_obj_int(v));
}

static mp_obj *F(double v)
{
    return must(mp_obj_float(v));
}

/* A list or tuple of n items (taken over). */
static mp_obj *seq(bool tuple, int n, ...)
{
    mp_obj *s = must(tuple ? mp_obj_tuple_new() : mp_obj_list_new());
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        mp_obj *item = va_arg(ap, mp_obj *);
        assert_int_equal(tuple ? mp_obj_tuple_append(s, item) : mp_obj_list_append(s, item), 0);
    }
    va_end(ap);
    return s;
}

/* A dict of n key/value pairs (taken over). */
static mp_obj *D(int n, ...)
{
    mp_obj *d = must(mp_obj_dict_new());
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        mp_obj *k = va_arg(ap, mp_obj *);
        mp_obj *v = va_arg(ap, mp_obj *);
        assert_int_equal(mp_obj_dict_set(d, k, v), 0);
    }
    va_end(ap);
    return d;
}

/* A set or frozenset of n items (taken over). */
static mp_obj *set_of(bool frozen, int n, ...)
{
    mp_obj *s = must(frozen ? mp_obj_frozenset_new() : mp_obj_set_new());
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        assert_int_equal(mp_obj_set_add(s, va_arg(ap, mp_obj *)), 0);
    va_end(ap);
    return s;
}

#define L(...) seq(false, __VA_ARGS__)
#define T(...) seq(true, __VA_ARGS__)

struct c_case {
    const char *expr; /* the Python literal the value must equal */
    mp_obj *value;
};

static int c_cases(struct c_case *out)
{
    int n = 0;
    out[n++] = (struct c_case){"None", must(mp_obj_none())};
    out[n++] = (struct c_case){"True", must(mp_obj_bool(true))};
    out[n++] = (struct c_case){"False", must(mp_obj_bool(false))};
    out[n++] = (struct c_case){"0", I(0)};
    out[n++] = (struct c_case){"-1", I(-1)};
    out[n++] = (struct c_case){"2**63 - 1", I(INT64_MAX)};
    out[n++] = (struct c_case){"-2**63", I(INT64_MIN)};
    out[n++] = (struct c_case){"65536", I(65536)};
    out[n++] = (struct c_case){"1.5", F(1.5)};
    out[n++] = (struct c_case){"-0.0", F(-0.0)};
    out[n++] = (struct c_case){"float('inf')", F(INFINITY)};
    out[n++] = (struct c_case){"float('nan')", F(NAN)};
    out[n++] = (struct c_case){"0.1", F(0.1)};
    out[n++] = (struct c_case){"''", S("")};
    out[n++] = (struct c_case){"'caf\\xe9 \\u4e2d \\U0001f600'",
                               S("caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80")};
    out[n++] = (struct c_case){"'a\\x00b'", must(mp_obj_str("a\0b", 3))};
    out[n++] = (struct c_case){"b''", must(mp_obj_bytes("", 0))};
    out[n++] = (struct c_case){"b'\\x00\\xff'", must(mp_obj_bytes("\0\xff", 2))};
    out[n++] = (struct c_case){"[]", must(mp_obj_list_new())};
    out[n++] = (struct c_case){"()", must(mp_obj_tuple_new())};
    out[n++] = (struct c_case){"{}", must(mp_obj_dict_new())};
    out[n++] = (struct c_case){"(1,)", T(1, I(1))};
    out[n++] = (struct c_case){
        "[1, 'two', 3.0, None, b'x']",
        L(5, I(1), S("two"), F(3.0), must(mp_obj_none()), must(mp_obj_bytes("x", 1)))};
    out[n++] = (struct c_case){"{'a': 1, 2: [3, 4], (5, 'six'): {'x': b'y'}, None: (True,)}",
                               D(4, S("a"), I(1), I(2), L(2, I(3), I(4)), T(2, I(5), S("six")),
                                 D(1, S("x"), must(mp_obj_bytes("y", 1))), must(mp_obj_none()),
                                 T(1, must(mp_obj_bool(true))))};
    /* Sets of small ints, whose order Python's repr shows as ours. */
    out[n++] = (struct c_case){"set()", must(mp_obj_set_new())};
    out[n++] = (struct c_case){"frozenset()", must(mp_obj_frozenset_new())};
    out[n++] = (struct c_case){"{1, 2}", set_of(false, 2, I(1), I(2))};
    out[n++] = (struct c_case){"frozenset({1, 2})", set_of(true, 2, I(1), I(2))};
    out[n++] = (struct c_case){"{frozenset({1, 2}): [{3}], 'k': frozenset({(1, 2)})}",
                               D(2, set_of(true, 2, I(1), I(2)), L(1, set_of(false, 1, I(3))),
                                 S("k"), set_of(true, 1, T(2, I(1), I(2))))};
    out[n++] = (struct c_case){"bytearray(b'ab')", must(mp_obj_bytearray("ab", 2))};
    out[n++] = (struct c_case){"bytearray(b'')", must(mp_obj_bytearray(NULL, 0))};
    out[n++] = (struct c_case){"[bytearray(b'\\x00'), {7}]",
                               L(2, must(mp_obj_bytearray("", 1)), set_of(false, 1, I(7)))};
    /* 10,000 ints and a 100,000-character string: several frames' worth. */
    mp_obj *big = must(mp_obj_list_new());
    for (int i = 0; i < 10000; i++)
        assert_int_equal(mp_obj_list_append(big, I(i * 7919 - 5000000)), 0);
    out[n++] = (struct c_case){"[i * 7919 - 5000000 for i in range(10000)]", big};
    char *x = malloc(100001);
    assert_non_null(x);
    memset(x, 'x', 100000);
    x[100000] = '\0';
    out[n++] = (struct c_case){"'x' * 100000", S(x)};
    free(x);
    /* 100 levels of nesting. */
    mp_obj *deep = must(mp_obj_list_new());
    for (int i = 0; i < 100; i++)
        deep = L(1, deep);
    out[n++] = (struct c_case){"eval('[' * 101 + ']' * 101)", deep};
    return n;
}

/* ---- the test ------------------------------------------------------------------ */

static void check_pattern(const void *buf, size_t n)
{
    const unsigned char *p = buf;
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(i % 251))
            fail_msg("byte %zu of %zu differs", i, n);
}

static void *pattern(size_t n)
{
    unsigned char *p = malloc(n ? n : 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i % 251);
    return p;
}

static void test_c_and_python_exchange_bytes_and_values(void **state)
{
    (void)state;
    mp_conn *mine, *theirs, *p2c_r, *p2c_w, *c2p_r, *c2p_w;
    assert_int_equal(mp_pipe(&mine, &theirs, true), 0);
    assert_int_equal(mp_pipe(&p2c_r, &p2c_w, false), 0);
    assert_int_equal(mp_pipe(&c2p_r, &c2p_w, false), 0);
    int keep[3] = {mp_conn_fileno(theirs), mp_conn_fileno(p2c_w), mp_conn_fileno(c2p_r)};
    char a1[16], a2[16], a3[16];
    snprintf(a1, sizeof a1, "%d", keep[0]);
    snprintf(a2, sizeof a2, "%d", keep[1]);
    snprintf(a3, sizeof a3, "%d", keep[2]);
    const char *args[] = {a1, a2, a3, NULL};
    pid_t pid = tu_spawn_python(PEER, args, keep, 3);
    mp_conn_free(theirs);
    mp_conn_free(p2c_w);
    mp_conn_free(c2p_r);

    /* 1. bytes */
    const size_t sizes[] = {0, 1, 65536, 16u << 20};
    for (size_t i = 0; i < 4; i++) {
        void *p = pattern(sizes[i]);
        assert_int_equal(mp_conn_send_bytes(mine, p, sizes[i]), 0);
        void *buf;
        size_t len;
        TU_ASSERT_STATUS(mp_conn_recv_bytes(mine, 0, &buf, &len, T_LONG), 0);
        assert_int_equal(len, sizes[i]);
        check_pattern(buf, len);
        free(buf);
        TU_ASSERT_STATUS(mp_conn_recv_bytes(p2c_r, 0, &buf, &len, T_LONG), 0);
        assert_int_equal(len, sizes[i]);
        check_pattern(buf, len);
        free(buf);
        assert_int_equal(mp_conn_send_bytes(c2p_w, p, sizes[i]), 0);
        free(p);
    }

    /* 2. values built in C */
    struct c_case cases[64];
    int n = c_cases(cases);
    for (int i = 0; i < n; i++) {
        mp_obj *msg = T(2, S(cases[i].expr), cases[i].value);
        assert_int_equal(mp_conn_send(mine, msg), 0);
        mp_obj *reply;
        TU_ASSERT_STATUS(mp_conn_recv(mine, &reply, T_LONG), 0);
        bool ok = false;
        assert_int_equal(mp_obj_get_bool(mp_obj_list_get(reply, 0), &ok), 0);
        const char *pyrepr;
        size_t rlen;
        assert_int_equal(mp_obj_get_str(mp_obj_list_get(reply, 1), &pyrepr, &rlen), 0);
        char *crepr;
        assert_int_equal(mp_obj_repr(cases[i].value, &crepr), 0);
        if (!ok || strlen(crepr) != rlen || memcmp(crepr, pyrepr, rlen) != 0)
            fail_msg("case %s: python ok=%d, python repr %.200s, C repr %.200s", cases[i].expr, ok,
                     pyrepr, crepr);
        /* What came back equals what we sent (NaN excepted: it equals nothing). */
        const mp_obj *back = mp_obj_list_get(reply, 2);
        double dv;
        bool is_nan = mp_obj_get_float(back, &dv) == 0 && isnan(dv);
        assert_true(is_nan || mp_obj_equal(back, cases[i].value));
        free(crepr);
        mp_obj_free(reply);
        mp_obj_free(msg);
    }
    mp_obj *end = T(2, must(mp_obj_none()), must(mp_obj_none()));
    assert_int_equal(mp_conn_send(mine, end), 0);
    mp_obj_free(end);

    /* 3. values built in Python: our repr is Python's, and they go back equal */
    int received = 0;
    for (;;) {
        mp_obj *msg;
        TU_ASSERT_STATUS(mp_conn_recv(mine, &msg, T_LONG), 0);
        if (mp_obj_is_none(msg)) {
            mp_obj_free(msg);
            break;
        }
        const char *pyrepr;
        size_t rlen;
        assert_int_equal(mp_obj_get_str(mp_obj_list_get(msg, 0), &pyrepr, &rlen), 0);
        const mp_obj *v = mp_obj_list_get(msg, 1);
        char *crepr;
        assert_int_equal(mp_obj_repr(v, &crepr), 0);
        if (strlen(crepr) != rlen || memcmp(crepr, pyrepr, rlen) != 0)
            fail_msg("python repr %.200s, C repr %.200s", pyrepr, crepr);
        free(crepr);
        assert_int_equal(mp_conn_send(mine, v), 0);
        mp_obj_free(msg);
        received++;
    }
    assert_true(received > 150);

    /* 4. refused pickles; the connection stays usable */
    for (int i = 0; i < 3; i++) {
        mp_obj *o = (mp_obj *)&o;
        TU_ASSERT_STATUS(mp_conn_recv(mine, &o, T_LONG), MP_EPROTO);
        assert_null(o);
    }
    mp_obj *after;
    TU_ASSERT_STATUS(mp_conn_recv(mine, &after, T_LONG), 0);
    char *r;
    assert_int_equal(mp_obj_repr(after, &r), 0);
    assert_string_equal(r, "['still usable']");
    free(r);
    mp_obj_free(after);

    /* 5. values over the simplex pipes */
    mp_obj *v = D(1, S("via"), T(2, S("simplex"), I(2)));
    assert_int_equal(mp_conn_send(c2p_w, v), 0);
    mp_obj *echo;
    TU_ASSERT_STATUS(mp_conn_recv(p2c_r, &echo, T_LONG), 0);
    assert_true(mp_obj_equal(v, echo));
    mp_obj_free(echo);
    mp_obj_free(v);
    assert_int_equal(mp_conn_send_bytes(mine, "done", 4), 0);

    assert_int_equal(tu_wait_child(pid, T_LONG), 0);
    mp_conn_free(mine);
    mp_conn_free(p2c_r);
    mp_conn_free(c2p_w);
}

static void test_refused_pickle_never_runs_code(void **state)
{
    (void)state;
    /* The classic: GLOBAL os.system + REDUCE. Were it executed, the file
     * would exist afterwards. */
    char marker[128];
    snprintf(marker, sizeof marker, "/tmp/mpipc-pwned-%d", (int)getpid());
    unlink(marker);
    char pickle[256];
    int len = snprintf(pickle, sizeof pickle, "cos\nsystem\n(S'touch %s'\ntR.", marker);
    mp_conn *a, *b;
    assert_int_equal(mp_pipe(&a, &b, true), 0);
    assert_int_equal(mp_conn_send_bytes(a, pickle, (size_t)len), 0);
    mp_obj *o;
    TU_ASSERT_STATUS(mp_conn_recv(b, &o, T_LONG), MP_EPROTO);
    assert_int_equal(access(marker, F_OK), -1);
    mp_conn_free(a);
    mp_conn_free(b);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_c_and_python_exchange_bytes_and_values),
        TU_TEST(test_refused_pickle_never_runs_code),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
