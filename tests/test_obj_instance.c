/* obj_instance: the CPython classes Python's managers send (Token,
 * RemoteError, the exceptions a referent raises, queue.Empty and Full)
 * travel as inert MP_TYPE_INSTANCE values, both ways with real python3,
 * and every other class, and every other use of REDUCE, NEWOBJ and BUILD,
 * is still refused. */
#include "pickle_helpers.h"

#include <mpipc/error.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PY_TIMEOUT 60.0

/* ---- Python to C ---------------------------------------------------------- */

/* Each value in each protocol 2-5 and as the managers send it (ForkingPickler,
 * the default protocol), as records of (pickle, Python's repr). */
static const char py_dump[] =
    "import sys, pickle, queue, threading, struct\n"
    "from multiprocessing import AuthenticationError\n"
    "from multiprocessing.managers import Token, RemoteError\n"
    "from multiprocessing.reduction import ForkingPickler\n"
    "vals = [Token('dict', '/tmp/m', '7f1'), Token('Queue', ('127.0.0.1', 5000), 'ab'),\n"
    "    KeyError('k'), KeyError(), IndexError('list index out of range'),\n"
    "    ValueError(1, 2.5), TypeError('x'), AttributeError('a'),\n"
    "    RuntimeError('release unlocked lock'), StopIteration(5), OverflowError('o'),\n"
    "    threading.BrokenBarrierError(), queue.Empty(), queue.Full(),\n"
    "    AuthenticationError('digest received was wrong'),\n"
    "    RemoteError('Traceback ...'), ('#ERROR', KeyError('k')),\n"
    "    ('#PROXY', (('get', 'put'), Token('Queue', '/tmp/m', '7f2'))),\n"
    "    [KeyError([1, {'a': (2,)}]), KeyError([1, {'a': (2,)}])]]\n"
    "out = sys.stdout.buffer\n"
    "def rec(p, r):\n"
    "    r = r.encode()\n"
    "    out.write(struct.pack('<I', len(p)) + p + struct.pack('<I', len(r)) + r)\n"
    "for v in vals:\n"
    "    for proto in (2, 3, 4, 5):\n"
    "        rec(pickle.dumps(v, proto), repr(v))\n"
    "    rec(bytes(ForkingPickler.dumps(v)), repr(v))\n";

static void test_instances_python_pickles_decode_with_pythons_repr(void **state)
{
    (void)state;
    unsigned char *out = NULL;
    size_t n = 0;
    TU_ASSERT_STATUS(tu_python_filter(py_dump, NULL, 0, &out, &n, PY_TIMEOUT), 0);
    assert_int_equal(assert_python_records(out, n, false), 19 * 5);
    free(out);
}

static void test_instances_decode_to_their_class_and_args(void **state)
{
    (void)state;
    /* ForkingPickler.dumps(Token('dict', '/tmp/x', '7f12')), as a
     * Python manager's ('#PROXY', ...) reply carries it. */
    mp_obj *o = loads_ok(P("\x80\x04\x95\x43\x00\x00\x00\x00\x00\x00\x00\x8c\x18multiprocessing."
                           "managers\x94\x8c\x05Token\x94\x93\x94)\x81\x94\x8c\x04"
                           "dict\x94\x8c\x06/tmp/x\x94\x8c\x04"
                           "7f12\x94\x87\x94"
                           "b."));
    assert_int_equal(mp_obj_type(o), MP_TYPE_INSTANCE);
    assert_string_equal(mp_obj_instance_class(o), "multiprocessing.managers.Token");
    const mp_obj *args = mp_obj_instance_args(o);
    assert_int_equal(mp_obj_len(args), 3);
    const char *s;
    TU_ASSERT_STATUS(mp_obj_get_str(mp_obj_list_get(args, 2), &s, NULL), 0);
    assert_string_equal(s, "7f12");
    mp_obj_free(o);

    /* _queue.Empty (CPython's C class) is queue.Empty. */
    o = loads_ok(P("\x80\x04\x8c\x06_queue\x94\x8c\x05"
                   "Empty\x94\x93\x94)R\x94."));
    assert_string_equal(mp_obj_instance_class(o), "queue.Empty");
    assert_int_equal(mp_obj_len(mp_obj_instance_args(o)), 0);
    mp_obj_free(o);

    /* CPython 3.12+ pickles an AttributeError with its attributes as a
     * BUILD state ({'name': 'x', 'args': (...)}; pickle.dumps(e, 4) of
     * AttributeError('m', name='x')): read, and the state dropped - the
     * instance is its class and args, as from 3.11. */
    o = loads_ok(P("\x80\x04\x95\x40\x00\x00\x00\x00\x00\x00\x00\x8c\x08"
                   "builtins\x94\x8c\x0e"
                   "AttributeError\x94\x93\x94\x8c\x01m\x94\x85\x94R\x94}\x94(\x8c\x04"
                   "name\x94\x8c\x01x\x94\x8c\x04"
                   "args\x94h\x04u"
                   "b."));
    assert_string_equal(mp_obj_instance_class(o), "builtins.AttributeError");
    char *r = repr_of(o);
    assert_string_equal(r, "AttributeError('m')");
    free(r);
    mp_obj_free(o);
}

/* ---- C to Python ---------------------------------------------------------- */

/* Reads (class name, pickle) records; for each, loads the pickle with
 * Python's own unpickler and prints whether it is exactly that class, and
 * its repr. */
static const char py_load[] = "import sys, pickle, importlib, struct\n"
                              "data = sys.stdin.buffer.read()\n"
                              "off = 0\n"
                              "def take():\n"
                              "    global off\n"
                              "    (n,) = struct.unpack_from('<I', data, off); off += 4\n"
                              "    off += n\n"
                              "    return data[off - n:off]\n"
                              "while off < len(data):\n"
                              "    mod, _, name = take().decode().rpartition('.')\n"
                              "    v = pickle.loads(take())\n"
                              "    ok = type(v) is getattr(importlib.import_module(mod), name)\n"
                              "    sys.stdout.write('%d %r\\n' % (ok, v))\n";

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

static void test_instances_c_pickles_rebuild_pythons_real_classes(void **state)
{
    (void)state;
    static const struct {
        const char *cls, *args;
    } cases[] = {
        {"multiprocessing.managers.Token", "(sss)"},
        {"multiprocessing.managers.RemoteError", "(s)"},
        {"builtins.KeyError", "(s)"},
        {"builtins.IndexError", "()"},
        {"builtins.ValueError", "(is)"},
        {"builtins.TypeError", "(s)"},
        {"builtins.AttributeError", "(s)"},
        {"builtins.RuntimeError", "(s)"},
        {"builtins.StopIteration", "(i)"},
        {"builtins.OverflowError", "(s)"},
        {"threading.BrokenBarrierError", "()"},
        {"multiprocessing.context.AuthenticationError", "(s)"},
        {"queue.Empty", "()"},
        {"queue.Full", "()"},
    };
    unsigned char *in = NULL;
    size_t inlen = 0;
    char expect[4096] = "";
    size_t elen = 0;
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        mp_obj *args = mp_obj_build(cases[i].args, "Queue", "/tmp/m", "7f1");
        if (strcmp(cases[i].args, "(is)") == 0) {
            mp_obj_free(args);
            args = mp_obj_build("(is)", 42, "bad 'value'");
        } else if (strcmp(cases[i].args, "(i)") == 0) {
            mp_obj_free(args);
            args = mp_obj_build("(i)", 5);
        } else if (strcmp(cases[i].args, "(s)") == 0) {
            mp_obj_free(args);
            args = mp_obj_build("(s)", "caf\xc3\xa9");
        }
        assert_non_null(args);
        mp_obj *o = mp_obj_instance_new(cases[i].cls, args);
        assert_non_null(o);
        /* A reply as our server would send it: ('#ERROR', exc). */
        mp_obj *reply = mp_obj_build("(sO)", "#ERROR", o);
        assert_non_null(reply);
        void *p;
        size_t n;
        TU_ASSERT_STATUS(mp_obj_dumps(o, &p, &n), 0);
        put_rec(&in, &inlen, cases[i].cls, strlen(cases[i].cls));
        put_rec(&in, &inlen, p, n);
        free(p);
        char *r = repr_of(o);
        elen += (size_t)snprintf(expect + elen, sizeof expect - elen, "1 %s\n", r);
        assert_true(elen < sizeof expect);
        free(r);
        /* The decoder reads back what the encoder wrote. */
        TU_ASSERT_STATUS(mp_obj_dumps(reply, &p, &n), 0);
        mp_obj *back = loads_ok(p, n);
        assert_true(mp_obj_equal(back, reply));
        mp_obj_free(back);
        free(p);
        mp_obj_free(reply);
        mp_obj_free(o);
        mp_obj_free(args);
    }
    unsigned char *out = NULL;
    size_t n = 0;
    TU_ASSERT_STATUS(tu_python_filter(py_load, in, inlen, &out, &n, PY_TIMEOUT), 0);
    assert_int_equal(n, elen);
    assert_memory_equal(out, expect, elen);
    free(out);
    free(in);
}

/* ---- The C API ------------------------------------------------------------ */

static void test_instance_new_refuses_unknown_classes_and_bad_args(void **state)
{
    (void)state;
    mp_obj *args = mp_obj_build("(s)", "k"), *list = mp_obj_build("[s]", "k");
    mp_obj *three = mp_obj_build("(sss)", "dict", "/tmp/m", "1");
    assert_non_null(args);
    assert_null(mp_obj_instance_new("builtins.ZeroDivisionError", args));
    assert_null(mp_obj_instance_new("os.system", args));
    assert_null(mp_obj_instance_new("KeyError", args));
    assert_null(mp_obj_instance_new("", args));
    assert_null(mp_obj_instance_new("builtins.KeyError.x", args));
    assert_null(mp_obj_instance_new(NULL, args));
    assert_null(mp_obj_instance_new("builtins.KeyError", NULL));
    assert_null(mp_obj_instance_new("builtins.KeyError", list));
    /* Token's __setstate__ unpacks exactly three items. */
    assert_null(mp_obj_instance_new("multiprocessing.managers.Token", args));
    mp_obj *tok = mp_obj_instance_new("multiprocessing.managers.Token", three);
    assert_non_null(tok);
    mp_obj_free(tok);
    /* Not instances: no class, no args. */
    assert_null(mp_obj_instance_class(args));
    assert_null(mp_obj_instance_args(args));
    assert_null(mp_obj_instance_class(NULL));
    mp_obj_free(three);
    mp_obj_free(list);
    mp_obj_free(args);
}

static void test_instance_copies_compares_and_refuses_hashing(void **state)
{
    (void)state;
    mp_obj *args = mp_obj_build("(s[i])", "k", 1);
    mp_obj *a = mp_obj_instance_new("builtins.KeyError", args);
    mp_obj *b = mp_obj_instance_new("builtins.KeyError", args);
    mp_obj *c = mp_obj_instance_new("builtins.IndexError", args);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    /* args were copied: changing the caller's tuple changes nothing. */
    assert_true(mp_obj_instance_args(a) != args);
    assert_true(mp_obj_equal(mp_obj_instance_args(a), args));
    assert_true(mp_obj_equal(a, b));
    assert_false(mp_obj_equal(a, c));
    assert_int_equal(mp_obj_type(a), MP_TYPE_INSTANCE);
    assert_string_equal(mp_type_name(MP_TYPE_INSTANCE), "instance");
    char *r = repr_of(c);
    assert_string_equal(r, "IndexError('k', [1])");
    free(r);
    mp_obj *copy = mp_obj_copy(a);
    assert_non_null(copy);
    assert_true(mp_obj_equal(copy, a));
    assert_string_equal(mp_obj_instance_class(copy), "builtins.KeyError");
    /* An exception is no dict key here (Python hashes it by identity, which
     * a value has not); it goes into a container as any value. */
    mp_obj *d = mp_obj_dict_new();
    TU_ASSERT_STATUS(mp_obj_dict_set(d, copy, mp_obj_none()), MP_ETYPE);
    mp_obj *l = mp_obj_list_new();
    TU_ASSERT_STATUS(mp_obj_list_append(l, copy), 0);
    r = repr_of(l);
    assert_string_equal(r, "[KeyError('k', [1])]");
    free(r);
    mp_obj_free(l);
    mp_obj_free(d);
    mp_obj_free(c);
    mp_obj_free(b);
    mp_obj_free(a);
    mp_obj_free(args);
}

/* ---- Refusals ------------------------------------------------------------- */

static void assert_refused_says(const unsigned char *p, size_t n, const char *words)
{
    assert_refused(p, n);
    const char *m = mp_errmsg(MP_EPROTO);
    if (!strstr(m, words))
        fail_msg("message %s lacks %s", m, words);
}

#define TOKEN_CLS "\x8c\x18multiprocessing.managers\x8c\x05Token\x93"
#define KEYERR_CLS                                                                                 \
    "\x8c\x08"                                                                                     \
    "builtins\x8c\x08KeyError\x93"

static void test_other_globals_and_other_uses_of_the_classes_are_refused(void **state)
{
    (void)state;
    /* Other globals: nothing is imported. */
    assert_refused_says(P("\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R."), "never imports");
    assert_refused_says(P("\x80\x02"
                          "cposix\nsystem\nX\x02\x00\x00\x00id\x85R."),
                        "never imports");
    assert_refused_says(P("\x80\x04\x8c\x08"
                          "builtins\x8c\x11ZeroDivisionError\x93)R."),
                        "never imports");
    assert_refused_says(P("\x80\x04\x8c\x08"
                          "builtins\x8c\x04"
                          "eval\x93\x8c\x01"
                          "1\x85R."),
                        "never imports");
    assert_refused_says(P("\x80\x04\x8c\x18multiprocessing.managers\x8c\x0b"
                          "BaseManager\x93)R."),
                        "never imports");
    assert_refused_says(P("\x80\x04\x8c\x05queue\x8c\x05Queue\x93)R."), "never imports");
    /* A known class is not a value: it only goes to REDUCE or NEWOBJ. */
    assert_refused(P("\x80\x04" KEYERR_CLS "."));
    assert_refused(P("\x80\x04" KEYERR_CLS "\x85."));
    /* REDUCE of a known class: args must be a tuple; Token is made only as
     * CPython writes it (NEWOBJ then BUILD). */
    assert_refused(P("\x80\x04" KEYERR_CLS "]R."));
    assert_refused_says(P("\x80\x04" TOKEN_CLS "\x8c\x01"
                          "a\x8c\x01"
                          "b\x8c\x01"
                          "c\x87R."),
                        "never calls");
    /* NEWOBJ: Token with () only. */
    assert_refused_says(P("\x80\x04" KEYERR_CLS ")\x81."), "never calls");
    assert_refused(P("\x80\x04" TOKEN_CLS "\x8c\x01"
                     "a\x85\x81\x8c\x01"
                     "a\x8c\x01"
                     "b\x8c\x01"
                     "c\x87"
                     "b."));
    /* A Token with the wrong state: arity, type. */
    assert_refused(P("\x80\x04" TOKEN_CLS ")\x81\x8c\x01"
                     "a\x8c\x01"
                     "b\x86"
                     "b."));
    assert_refused(P("\x80\x04" TOKEN_CLS ")\x81(\x8c\x01"
                     "a\x8c\x01"
                     "b\x8c\x01"
                     "c\x8c\x01"
                     "dtb."));
    assert_refused(P("\x80\x04" TOKEN_CLS ")\x81}b."));
    /* A Token never built (no BUILD), alone or in a list; built twice. */
    assert_refused(P("\x80\x04" TOKEN_CLS ")\x81."));
    assert_refused(P("\x80\x04]" TOKEN_CLS ")\x81\x61."));
    assert_refused(P("\x80\x04" TOKEN_CLS ")\x81\x8c\x01"
                     "a\x8c\x01"
                     "b\x8c\x01"
                     "c\x87"
                     "b\x8c\x01"
                     "a\x8c\x01"
                     "b\x8c\x01"
                     "c\x87"
                     "b."));
    /* BUILD on anything else would set attributes or call __setstate__: an
     * exception's state that is not a dict of str keys (3.12+'s attributes
     * are), a slice's or range's state, a dict. */
    assert_refused_says(P("\x80\x04" KEYERR_CLS "\x8c\x01k\x85R\x8c\x01k\x85"
                          "b."), "never calls");
    assert_refused_says(P("\x80\x04" KEYERR_CLS "\x8c\x01k\x85R}K\x01K\x02sb."), "never calls");
    assert_refused_says(P("\x80\x04\x8c\x08"
                          "builtins\x8c\x05slice\x93NNN\x87R}b."),
                        "never calls");
    assert_refused_says(P("\x80\x04}}b."), "never calls");
    /* An exception's str-keyed state is read and dropped: KeyError('k'). */
    mp_obj *o = loads_ok(P("\x80\x04" KEYERR_CLS "\x8c\x01k\x85R}\x8c\x01"
                           "aK\x01sb."));
    char *r = repr_of(o);
    assert_string_equal(r, "KeyError('k')");
    free(r);
    mp_obj_free(o);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_instances_python_pickles_decode_with_pythons_repr),
        cmocka_unit_test(test_instances_decode_to_their_class_and_args),
        cmocka_unit_test(test_instances_c_pickles_rebuild_pythons_real_classes),
        cmocka_unit_test(test_instance_new_refuses_unknown_classes_and_bad_args),
        cmocka_unit_test(test_instance_copies_compares_and_refuses_hashing),
        cmocka_unit_test(test_other_globals_and_other_uses_of_the_classes_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
