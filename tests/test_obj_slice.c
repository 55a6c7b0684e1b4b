/* obj_slice: builtins.slice, which a Python ListProxy sends for l[a:b:c],
 * travels as an inert MP_TYPE_INSTANCE of (start, stop, step) both ways
 * with real python3 (protocols 2-5 and ForkingPickler), and a slice of
 * anything but ints and None is refused as the decoder refuses all else. */
#include "pickle_helpers.h"

#include <mpipc/error.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PY_TIMEOUT 60.0

/* Python's pickles of slices, at each protocol 2-5 and as the managers
 * send a request (ForkingPickler), as records of (pickle, Python's repr). */
static const char py_dump[] =
    "import sys, pickle, struct\n"
    "from multiprocessing.reduction import ForkingPickler\n"
    "vals = [slice(None), slice(2, 10), slice(None, None, -1), slice(-3, None, 2),\n"
    "    slice(1, 2, 3), slice(True, False, None), slice(2**70, -2**70, -2**64),\n"
    "    ('__getitem__', (slice(0, 5, None),)), [slice(1, 2), slice(1, 2)]]\n"
    "out = sys.stdout.buffer\n"
    "def rec(p, r):\n"
    "    r = r.encode()\n"
    "    out.write(struct.pack('<I', len(p)) + p + struct.pack('<I', len(r)) + r)\n"
    "for v in vals:\n"
    "    for proto in (2, 3, 4, 5):\n"
    "        rec(pickle.dumps(v, proto), repr(v))\n"
    "    rec(bytes(ForkingPickler.dumps(v)), repr(v))\n";

static void test_python_slices_decode_at_every_protocol_with_pythons_repr(void **state)
{
    (void)state;
    unsigned char *out = NULL;
    size_t n = 0;
    TU_ASSERT_STATUS(tu_python_filter(py_dump, NULL, 0, &out, &n, PY_TIMEOUT), 0);
    assert_int_equal(assert_python_records(out, n, false), 9 * 5);
    free(out);
}

static void test_slice_decodes_to_its_class_and_fields(void **state)
{
    (void)state;
    /* pickle.dumps(slice(1, None, -1), 4) */
    mp_obj *o = loads_ok(P("\x80\x04\x95\x22\x00\x00\x00\x00\x00\x00\x00\x8c\x08"
                           "builtins\x94\x8c\x05slice\x94\x93\x94K\x01NJ\xff\xff\xff\xff\x87\x94"
                           "R\x94."));
    assert_int_equal(mp_obj_type(o), MP_TYPE_INSTANCE);
    assert_string_equal(mp_obj_instance_class(o), "builtins.slice");
    const mp_obj *args = mp_obj_instance_args(o);
    assert_int_equal(mp_obj_len(args), 3);
    int64_t v;
    TU_ASSERT_STATUS(mp_obj_get_int(mp_obj_list_get(args, 2), &v), 0);
    assert_int_equal(v, -1);
    assert_true(mp_obj_is_none(mp_obj_list_get(args, 1)));
    mp_obj_free(o);
    /* Protocol 2 names the module __builtin__ (fix_imports). */
    assert_loads_repr(P("\x80\x02"
                        "c__builtin__\nslice\nq\x00K\x01K\x02N\x87q\x01Rq\x02."),
                      "slice(1, 2, None)");
}

/* Reads pickles (each with a 4-byte length) and prints repr(pickle.loads(p))
 * and whether it is a real slice, one line each. */
static const char py_load[] = "import sys, pickle, struct\n"
                              "data = sys.stdin.buffer.read()\n"
                              "off = 0\n"
                              "while off < len(data):\n"
                              "    (n,) = struct.unpack_from('<I', data, off); off += 4\n"
                              "    v = pickle.loads(data[off:off + n]); off += n\n"
                              "    ok = type(v) is slice or type(v[1][0]) is slice\n"
                              "    sys.stdout.write('%d %r\\n' % (ok, v))\n";

static void test_c_slices_load_in_python_as_real_slices(void **state)
{
    (void)state;
    mp_obj *cases[] = {
        mp_obj_build("(zzz)", NULL, NULL, NULL),
        mp_obj_build("(iii)", 1, 10, -2),
        mp_obj_build("(izi)", -3, NULL, 2),
        mp_obj_build("(ziz)", NULL, 7, NULL),
    };
    unsigned char *in = NULL;
    size_t inlen = 0;
    char expect[1024] = "";
    size_t elen = 0;
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        mp_obj *args = cases[i];
        assert_non_null(args);
        mp_obj *sl = mp_obj_instance_new("builtins.slice", args);
        assert_non_null(sl);
        /* Also as a request's argument, the way the C proxy sends it. */
        mp_obj *req = i % 2 ? mp_obj_build("(s(O))", "__getitem__", sl) : mp_obj_copy(sl);
        assert_non_null(req);
        void *p;
        size_t n;
        TU_ASSERT_STATUS(mp_obj_dumps(req, &p, &n), 0);
        unsigned char *b = realloc(in, inlen + 4 + n);
        assert_non_null(b);
        in = b;
        for (int k = 0; k < 4; k++)
            in[inlen + (size_t)k] = (unsigned char)(n >> (8 * k));
        memcpy(in + inlen + 4, p, n);
        inlen += 4 + n;
        /* Our decoder reads back what the encoder wrote. */
        mp_obj *back = loads_ok(p, n);
        assert_true(mp_obj_equal(back, req));
        mp_obj_free(back);
        free(p);
        char *r = repr_of(req);
        elen += (size_t)snprintf(expect + elen, sizeof expect - elen, "1 %s\n", r);
        assert_true(elen < sizeof expect);
        free(r);
        mp_obj_free(req);
        mp_obj_free(sl);
        mp_obj_free(args);
    }
    unsigned char *out = NULL;
    size_t n = 0;
    TU_ASSERT_STATUS(tu_python_filter(py_load, in, inlen, &out, &n, PY_TIMEOUT), 0);
    if (n != elen || memcmp(out, expect, elen) != 0)
        fail_msg("Python printed %.*s, expected %s", (int)n, (const char *)out, expect);
    free(out);
    free(in);
}

static void test_slice_instance_new_takes_three_ints_or_nones(void **state)
{
    (void)state;
    mp_obj *bad[] = {
        mp_obj_build("(iid)", 1, 2, 0.5),
        mp_obj_build("(sii)", "a", 1, 2),
        mp_obj_build("(ii)", 1, 2),
        mp_obj_build("(iiii)", 1, 2, 3, 4),
        mp_obj_build("()"),
        mp_obj_build("([i]ii)", 1, 2, 3),
        mp_obj_build("[iii]", 1, 2, 3),
    };
    for (size_t i = 0; i < N_ELEMS(bad); i++) {
        assert_non_null(bad[i]);
        assert_null(mp_obj_instance_new("builtins.slice", bad[i]));
        mp_obj_free(bad[i]);
    }
    mp_obj *args = mp_obj_build("(Niz)", mp_obj_bool(true), 5, NULL);
    mp_obj *a = mp_obj_instance_new("builtins.slice", args);
    mp_obj *b = mp_obj_instance_new("builtins.slice", args);
    assert_non_null(a);
    /* Python: slice(True, 5) == slice(True, 5); unhashable on 3.11. */
    assert_true(mp_obj_equal(a, b));
    char *r = repr_of(a);
    assert_string_equal(r, "slice(True, 5, None)");
    free(r);
    mp_obj *d = mp_obj_dict_new();
    TU_ASSERT_STATUS(mp_obj_dict_set(d, a, mp_obj_none()), MP_ETYPE);
    mp_obj_free(d);
    mp_obj_free(b);
    mp_obj_free(a);
    mp_obj_free(args);
}

#define SLICE_CLS                                                                                  \
    "\x8c\x08"                                                                                     \
    "builtins\x8c\x05slice\x93"

static void test_slices_of_other_values_are_refused(void **state)
{
    (void)state;
    /* slice(1, 2.5, None): a float bound. */
    assert_refused(P("\x80\x04" SLICE_CLS "K\x01G@\x04\x00\x00\x00\x00\x00\x00N\x87R."));
    /* slice('a', None, None): a str. */
    assert_refused(P("\x80\x04" SLICE_CLS "\x8c\x01"
                     "aNN\x87R."));
    /* slice([1], None, None), slice(slice(1), ...): containers. */
    assert_refused(P("\x80\x04" SLICE_CLS "]K\x01\x61NN\x87R."));
    /* Two fields, four fields, none: CPython's __reduce__ writes three. */
    assert_refused(P("\x80\x04" SLICE_CLS "K\x01K\x02\x86R."));
    assert_refused(P("\x80\x04" SLICE_CLS "(K\x01K\x02K\x03K\x04tR."));
    assert_refused(P("\x80\x04" SLICE_CLS ")R."));
    /* The class alone is no value; NEWOBJ and BUILD are not for it. */
    assert_refused(P("\x80\x04" SLICE_CLS "."));
    assert_refused(P("\x80\x04" SLICE_CLS ")\x81."));
    assert_refused(P("\x80\x04" SLICE_CLS "NNN\x87R}b."));
    /* Other names in builtins stay refused. */
    assert_refused(P("\x80\x04\x8c\x08"
                     "builtins\x8c\x05range\x93K\x05\x85R."));
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_python_slices_decode_at_every_protocol_with_pythons_repr),
        cmocka_unit_test(test_slice_decodes_to_its_class_and_fields),
        cmocka_unit_test(test_c_slices_load_in_python_as_real_slices),
        cmocka_unit_test(test_slice_instance_new_takes_three_ints_or_nones),
        cmocka_unit_test(test_slices_of_other_values_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
