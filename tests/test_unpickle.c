/* unpickle: the decoder reads what CPython writes (tests/pickle_vectors.h
 * holds real CPython 3.11 pickles, protocols 0-5, with Python's repr of
 * each), and every rule of the refusal list in src/codec/pickle.h has a
 * hostile pickle that checks it. Its memory bounds are in
 * test_unpickle_limits.c, the encoder's tests in test_pickle.c. */
#include "pickle_helpers.h"
#include "pickle_vectors.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const struct pickle_vec *vec(const char *name, int proto)
{
    for (size_t i = 0; i < N_ELEMS(pickle_vecs); i++)
        if (pickle_vecs[i].proto == proto && strcmp(pickle_vecs[i].name, name) == 0)
            return &pickle_vecs[i];
    fail_msg("no vector %s protocol %d", name, proto);
    return NULL;
}

/* ---- Reading CPython's pickles ---------------------------------------- */

static void test_loads_every_cpython_pickle_of_protocols_0_to_5(void **state)
{
    (void)state;
    size_t accepted = 0;
    for (size_t i = 0; i < N_ELEMS(pickle_vecs); i++) {
        const struct pickle_vec *v = &pickle_vecs[i];
        mp_obj *o = NULL;
        int rc = mp__pickle_loads(v->data, v->len, &o);
        if (rc != v->status)
            fail_msg("%s protocol %d: status %s, expected %s", v->name, v->proto, mp_errname(rc),
                     mp_errname(v->status));
        if (rc == 0) {
            char *s = repr_of(o);
            if (strcmp(s, v->repr) != 0)
                fail_msg("%s protocol %d: repr %.200s, Python says %.200s", v->name, v->proto, s,
                         v->repr);
            free(s);
            mp_obj_free(o);
            accepted++;
        } else {
            assert_null(o);
        }
    }
    assert_true(accepted > 400);
}

static bool out_of_int64(const char *name)
{
    return strcmp(name, "int64_max_plus_one") == 0 || strcmp(name, "int64_min_minus_one") == 0 ||
           strcmp(name, "int_2_pow_100") == 0;
}

static void test_every_protocol_2_to_5_pickle_is_accepted_but_protocol_2_bytes(void **state)
{
    (void)state;
    /* The required range: whatever CPython writes for our types in 2..5
     * loads, except bytes in protocol 2 (see the refusal test) and ints
     * beyond int64. The loads themselves run in the test above; this one
     * checks that the vector table claims no other refusal. */
    size_t n = 0;
    for (size_t i = 0; i < N_ELEMS(pickle_vecs); i++) {
        const struct pickle_vec *v = &pickle_vecs[i];
        if (v->proto < 2 || out_of_int64(v->name))
            continue;
        /* bytearray() is a call with no argument: no _codecs, accepted */
        bool has_bytes = strstr(v->name, "bytes") || strcmp(v->name, "bytearray") == 0 ||
                         strcmp(v->name, "dict_mixed_keys") == 0 ||
                         strcmp(v->name, "mixed_list") == 0 || strcmp(v->name, "set_mixed") == 0;
        if (v->proto == 2 && has_bytes)
            assert_int_equal(v->status, MP_EPROTO);
        else
            assert_int_equal(v->status, 0);
        n++;
    }
    assert_true(n > 300);
}

static void test_shared_references_become_equal_independent_copies(void **state)
{
    (void)state;
    /* Python: x = [1]; y = [x, x]. Here y[0] == y[1], but they are two trees:
     * changing one leaves the other (documented in obj.h). */
    for (int proto = 2; proto <= 5; proto++) {
        const struct pickle_vec *v = vec("shared_list", proto);
        mp_obj *y = loads_ok(v->data, v->len);
        mp_obj *a = mp_obj_list_get_mut(y, 0);
        const mp_obj *b = mp_obj_list_get(y, 1);
        assert_true(a != b);
        assert_true(mp_obj_equal(a, b));
        mp_obj *two = mp_obj_int(2);
        TU_ASSERT_STATUS(mp_obj_list_append(a, two), 0);
        assert_int_equal(mp_obj_len(a), 2);
        assert_int_equal(mp_obj_len(b), 1);
        mp_obj_free(y);
    }
    /* A dict shared three times: ({'k': 'v'}, [{...}], {'again': {...}}) */
    const struct pickle_vec *v = vec("shared_dict", 4);
    mp_obj *t = loads_ok(v->data, v->len);
    const mp_obj *d0 = mp_obj_list_get(t, 0);
    const mp_obj *d1 = mp_obj_list_get(mp_obj_list_get(t, 1), 0);
    const mp_obj *d2 = mp_obj_dict_get_cstr(mp_obj_list_get(t, 2), "again");
    assert_true(d0 != d1 && d1 != d2 && mp_obj_equal(d0, d2));
    mp_obj_free(t);
}

static void test_int64_edges_decode_exactly(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        int64_t value;
    } t[] = {
        {"int64_max", INT64_MAX},
        {"int64_min", INT64_MIN},
        {"int32_max", INT32_MAX},
        {"int32_min", INT32_MIN},
        {"int32_max_plus_one", INT64_C(2147483648)},
        {"int32_min_minus_one", INT64_C(-2147483649)},
        {"int_65535", 65535},
        {"int_minus_65536", -65536},
        {"int_minus_one", -1},
        {"int_2_pow_62", INT64_C(1) << 62},
    };
    for (size_t i = 0; i < N_ELEMS(t); i++) {
        for (int proto = 0; proto <= 5; proto++) {
            const struct pickle_vec *v = vec(t[i].name, proto);
            mp_obj *o = loads_ok(v->data, v->len);
            int64_t got;
            assert_int_equal(mp_obj_type(o), MP_TYPE_INT);
            TU_ASSERT_STATUS(mp_obj_get_int(o, &got), 0);
            assert_true(got == t[i].value);
            mp_obj_free(o);
        }
    }
}

static void test_special_floats_decode_bit_exact(void **state)
{
    (void)state;
    for (int proto = 0; proto <= 5; proto++) {
        double f;
        mp_obj *o =
            loads_ok(vec("float_minus_zero", proto)->data, vec("float_minus_zero", proto)->len);
        TU_ASSERT_STATUS(mp_obj_get_float(o, &f), 0);
        assert_true(f == 0 && signbit(f));
        mp_obj_free(o);
        o = loads_ok(vec("float_minus_inf", proto)->data, vec("float_minus_inf", proto)->len);
        TU_ASSERT_STATUS(mp_obj_get_float(o, &f), 0);
        assert_true(isinf(f) && f < 0);
        mp_obj_free(o);
        o = loads_ok(vec("float_nan", proto)->data, vec("float_nan", proto)->len);
        TU_ASSERT_STATUS(mp_obj_get_float(o, &f), 0);
        assert_true(isnan(f));
        mp_obj_free(o);
        o = loads_ok(vec("float_denormal_min", proto)->data, vec("float_denormal_min", proto)->len);
        TU_ASSERT_STATUS(mp_obj_get_float(o, &f), 0);
        assert_true(f == 5e-324);
        mp_obj_free(o);
    }
}

static void test_bytearray_of_protocols_3_to_5_decodes_as_bytearray(void **state)
{
    (void)state;
    for (int proto = 3; proto <= 5; proto++) {
        mp_obj *o = loads_ok(vec("bytearray", proto)->data, vec("bytearray", proto)->len);
        assert_int_equal(mp_obj_type(o), MP_TYPE_BYTEARRAY);
        const unsigned char *p;
        size_t n;
        TU_ASSERT_STATUS(mp_obj_get_bytes(o, &p, &n), 0);
        assert_int_equal(n, 2);
        assert_memory_equal(p, "ba", 2);
        mp_obj_free(o);
        o = loads_ok(vec("bytearray_empty", proto)->data, vec("bytearray_empty", proto)->len);
        assert_int_equal(mp_obj_type(o), MP_TYPE_BYTEARRAY);
        TU_ASSERT_STATUS(mp_obj_get_bytes(o, &p, &n), 0);
        assert_int_equal(n, 0);
        mp_obj_free(o);
    }
}

static void test_str_with_nul_and_non_ascii_decode_length_counted(void **state)
{
    (void)state;
    for (int proto = 0; proto <= 5; proto++) {
        mp_obj *o = loads_ok(vec("str_with_nul", proto)->data, vec("str_with_nul", proto)->len);
        const char *s;
        size_t n;
        TU_ASSERT_STATUS(mp_obj_get_str(o, &s, &n), 0);
        assert_int_equal(n, 3);
        assert_memory_equal(s, "a\0b", 3);
        mp_obj_free(o);
        o = loads_ok(vec("str_astral", proto)->data, vec("str_astral", proto)->len);
        TU_ASSERT_STATUS(mp_obj_get_str(o, &s, &n), 0);
        assert_int_equal(n, 4);
        assert_memory_equal(s, "\xf0\x9f\x98\x80", 4);
        assert_int_equal(mp_obj_len(o), 1);
        mp_obj_free(o);
    }
}

static void test_loads_non_minimal_long_encodings_within_int64(void **state)
{
    (void)state;
    /* pickle.loads accepts any LONG1/LONG4 length; so do we while the value
     * fits: -1 in nine bytes, 0 in zero bytes, 1 in LONG4. */
    assert_loads_repr(P("\x80\x02\x8a\x09\xff\xff\xff\xff\xff\xff\xff\xff\xff."), "-1");
    assert_loads_repr(P("\x80\x02\x8a\x00."), "0");
    assert_loads_repr(P("\x80\x02\x8b\x01\x00\x00\x00\x01."), "1");
    assert_loads_repr(P("\x80\x02\x8a\x0a\x00\x00\x00\x00\x00\x00\x00\x80\xff\xff."),
                      "-9223372036854775808");
    assert_loads_repr(P("I-12\n."), "-12");
    assert_loads_repr(P("L-9223372036854775808L\n."), "-9223372036854775808");
}

static void test_loads_stack_and_memo_opcodes_python_defines(void **state)
{
    (void)state;
    /* POP_MARK drops everything since the MARK */
    assert_loads_repr(P("(NNN1K\x01."), "1");
    /* POP with nothing above the MARK drops the MARK (Python's load_pop) */
    assert_loads_repr(P("K\x01(0."), "1");
    /* DUP, text PUT/GET, LONG_BINPUT/LONG_BINGET, MEMOIZE numbering */
    assert_loads_repr(P("\x80\x02]2\x86."), "([], [])");
    assert_loads_repr(P("((lp7\nI1\nag7\nt."), "([1], [1])");
    assert_loads_repr(P("\x80\x02K\x05r\xff\xff\xff\x7f"
                        "0j\xff\xff\xff\x7f."),
                      "5");
    assert_loads_repr(P("\x80\x04K\x01\x94"
                        "0K\x02\x94"
                        "0h\x00h\x01\x86."),
                      "(1, 2)");
    /* a FRAME covering the rest, as protocol 4 writes it */
    assert_loads_repr(P("\x80\x04\x95\x03\x00\x00\x00\x00\x00\x00\x00K\x07."), "7");
    /* protocol 0 float text, including what repr writes for specials */
    assert_loads_repr(P("(F1e+16\nF-0.0\nFinf\nF-inf\nF0.1\nF5e-324\nl."),
                      "[1e+16, -0.0, inf, -inf, 0.1, 5e-324]");
    /* raw-unicode-escape: \\u escapes, latin-1 bytes, backslash pairs */
    assert_loads_repr(P("V\\u00e9\xe9\\U0001f600\\\\u0041\\x\n."),
                      "'\xc3\xa9\xc3\xa9\xf0\x9f\x98\x80\\\\\\\\u0041\\\\x'");
    /* an equal key replaces the value and Python keeps the first key */
    assert_loads_repr(P("\x80\x02}(K\x01X\x01\x00\x00\x00"
                        "a\x88X\x01\x00\x00\x00"
                        "bu."),
                      "{1: 'b'}");
}

static void test_memo_keys_may_be_sparse_overwritten_and_many(void **state)
{
    (void)state;
    /* PUT to a key already used replaces it, as Python's memo dict does */
    assert_loads_repr(P("\x80\x02K\x01q\x05"
                        "0K\x02q\x05"
                        "0h\x05."),
                      "2");
    /* 3000 LONG_BINPUTs at scattered keys, then a list of every GET */
    size_t n = 3000, k = 0;
    unsigned char *buf = malloc(n * 16 + 16);
    assert_non_null(buf);
    buf[k++] = 0x80;
    buf[k++] = 2;
    for (size_t i = 0; i < n; i++) {
        uint32_t key = (uint32_t)(i * 2654435761u);
        buf[k++] = 'M';
        buf[k++] = (unsigned char)i;
        buf[k++] = (unsigned char)(i >> 8);
        buf[k++] = 'r';
        for (int b = 0; b < 4; b++)
            buf[k++] = (unsigned char)(key >> (8 * b));
        buf[k++] = '0';
    }
    buf[k++] = ']';
    buf[k++] = '(';
    for (size_t i = 0; i < n; i++) {
        uint32_t key = (uint32_t)(i * 2654435761u);
        buf[k++] = 'j';
        for (int b = 0; b < 4; b++)
            buf[k++] = (unsigned char)(key >> (8 * b));
    }
    buf[k++] = 'e';
    buf[k++] = '.';
    mp_obj *o = loads_ok(buf, k);
    assert_int_equal(mp_obj_len(o), (ssize_t)n);
    for (size_t i = 0; i < n; i++) {
        int64_t v;
        TU_ASSERT_STATUS(mp_obj_get_int(mp_obj_list_get(o, i), &v), 0);
        assert_int_equal(v, (int64_t)i);
    }
    mp_obj_free(o);
    free(buf);
}

static void test_equal_keys_built_separately_keep_the_first_key(void **state)
{
    (void)state;
    /* {'a': 1, 'a': 2} from two distinct 'a' objects, and ('t',) twice */
    assert_loads_repr(P("\x80\x04}(\x8c\x01"
                        "aK\x01\x8c\x01"
                        "aK\x02u."),
                      "{'a': 2}");
    assert_loads_repr(P("\x80\x04}(\x8c\x01t\x85K\x01\x8c\x01t\x85K\x02\x8c\x01u\x85K\x03u."),
                      "{('t',): 2, ('u',): 3}");
}

/* ---- Refusals: one hostile pickle per rule ----------------------------- */

static void test_refuses_opcodes_that_import_or_call_code(void **state)
{
    (void)state;
    assert_refused(P("cos\nsystem\n(S'echo pwned'\ntR."));      /* GLOBAL */
    assert_refused(P("\x80\x04\x8c\x02os\x8c\x06system\x93.")); /* STACK_GLOBAL */
    assert_refused(P("\x80\x02N)R."));                          /* REDUCE */
    assert_refused(P("\x80\x02}}b."));                          /* BUILD */
    assert_refused(P("(ios\nsystem\n."));                       /* INST */
    assert_refused(P("\x80\x02(N)o."));                         /* OBJ */
    assert_refused(P("\x80\x02N)\x81."));                       /* NEWOBJ */
    assert_refused(P("\x80\x04N)}\x92."));                      /* NEWOBJ_EX */
    assert_refused(P("\x80\x02\x82\x01."));                     /* EXT1 */
    assert_refused(P("\x80\x02\x83\x01\x00."));                 /* EXT2 */
    assert_refused(P("\x80\x02\x84\x01\x00\x00\x00."));         /* EXT4 */
    assert_refused(P("Pfoo\n."));                               /* PERSID */
    assert_refused(P("\x80\x02NQ."));                           /* BINPERSID */
    assert_refused(P("cbuiltins\neval\n(V1\ntR."));             /* a builtin other than bytearray */
    assert_refused(P("c__builtin__\nbytes\n)R.")); /* what protocol 0-2 writes for b'' */
}

static void test_refuses_protocol_0_to_2_bytes_which_cpython_writes_as_a_codecs_call(void **state)
{
    (void)state;
    /* pickle.dumps(b'a', 2) is _codecs.encode('a', 'latin1'): a call. */
    for (int proto = 0; proto <= 2; proto++) {
        assert_refused(vec("bytes_a", proto)->data, vec("bytes_a", proto)->len);
        assert_refused(vec("bytearray", proto)->data, vec("bytearray", proto)->len);
    }
}

static void test_refuses_set_misuse_buffers_and_python2_strings(void **state)
{
    (void)state;
    /* Python fails on these set opcodes too: ADDITEMS needs a set below the
     * MARK (a frozenset has no add), and every item must be hashable. */
    assert_refused(P("\x80\x04(K\x01\x90."));      /* ADDITEMS, nothing below */
    assert_refused(P("\x80\x04](K\x01\x90."));     /* ADDITEMS to a list */
    assert_refused(P("\x80\x04(\x91(K\x01\x90.")); /* ADDITEMS to a frozenset */
    assert_refused(P("\x80\x04\x8f(}\x90."));      /* a dict in a set */
    assert_refused(P("\x80\x04(\x8f\x91."));       /* a set in a frozenset */
    assert_refused(P("\x80\x04}\x8f\x8f\x94s."));  /* a set as a dict key */
    assert_refused(P("\x80\x04\x91."));            /* FROZENSET without a MARK */
    assert_refused(P("\x80\x04\x8f(K\x01\x90"));   /* no STOP */
    assert_refused(P("\x80\x05\x97."));            /* NEXT_BUFFER */
    assert_refused(P("\x80\x05"
                     "C\x01"
                     "a\x98."));    /* READONLY_BUFFER */
    assert_refused(P("S'abc'\n.")); /* STRING */
    assert_refused(P("T\x03\x00\x00\x00"
                     "abc.")); /* BINSTRING */
    assert_refused(P("U\x03"
                     "abc.")); /* SHORT_BINSTRING */
}

static void test_refuses_unknown_opcodes_and_protocols_above_5(void **state)
{
    (void)state;
    assert_refused(P("\x80\x06N."));
    assert_refused(P("\xff"));
    assert_refused(P("\x80\x04\x99."));
    assert_refused(P("N\x00."));
    assert_refused(P("")); /* empty: no STOP */
}

static void test_refuses_every_truncation_of_a_valid_pickle(void **state)
{
    (void)state;
    static const char *names[] = {"nested_mixed", "list_of_dicts", "str_latin1", "int64_min",
                                  "float_0_1",    "shared_tuple",  "bytearray",  "dict_mixed_keys"};
    for (size_t i = 0; i < N_ELEMS(names); i++) {
        for (int proto = 0; proto <= 5; proto++) {
            const struct pickle_vec *v = vec(names[i], proto);
            if (v->status != 0)
                continue;
            for (size_t k = 0; k < v->len; k++) {
                mp_obj *o = NULL;
                int rc = mp__pickle_loads(v->data, k, &o);
                if (rc != MP_EPROTO)
                    fail_msg("%s p%d cut at %zu of %zu: %s", v->name, proto, k, v->len,
                             mp_errname(rc));
                assert_null(o);
            }
        }
    }
}

static void test_refuses_str_that_is_not_utf8(void **state)
{
    (void)state;
    /* Lone surrogates (ED A0 80, V\\ud800) are read: test_obj_str.c. */
    assert_refused(P("\x80\x04\x8c\x02\xc0\x80."));         /* overlong NUL */
    assert_refused(P("\x80\x04\x8c\x04\xf4\x90\x80\x80.")); /* > U+10FFFF */
    assert_refused(P("\x80\x04\x8c\x01\x80."));             /* lone continuation */
    assert_refused(P("\x80\x04\x8c\x02\xe6\x97."));         /* truncated sequence */
    assert_refused(P("X\x01\x00\x00\x00\xff."));            /* BINUNICODE */
    assert_refused(P("\x80\x04\x8d\x01\x00\x00\x00\x00\x00\x00\x00\xfe."));
    assert_refused(P("V\\U00110000\n.")); /* out of range */
    assert_refused(P("V\\u00g1\n."));     /* bad hex */
    assert_refused(P("V\\u00\n."));       /* truncated escape */
}

static void test_refuses_stack_underflow(void **state)
{
    (void)state;
    assert_refused(P("a."));
    assert_refused(P("K\x01"
                     "a."));
    assert_refused(P("\x85."));
    assert_refused(P("K\x01\x86."));
    assert_refused(P("K\x01K\x02\x87."));
    assert_refused(P("s."));
    assert_refused(P("}K\x01s."));
    assert_refused(P("0."));
    assert_refused(P("2."));
    assert_refused(P("q\x00."));
    assert_refused(P("\x94."));
    assert_refused(P("\x80\x04\x93."));
    assert_refused(P("R."));
    assert_refused(P("."));
    /* items below a MARK are out of reach until it is closed */
    assert_refused(P("K\x01(\x85."));
    assert_refused(P("](K\x01"
                     "a."));
}

static void test_refuses_mark_misuse(void **state)
{
    (void)state;
    assert_refused(P("e.")); /* APPENDS without MARK */
    assert_refused(P("u.")); /* SETITEMS without MARK */
    assert_refused(P("l.")); /* LIST without MARK */
    assert_refused(P("t.")); /* TUPLE without MARK */
    assert_refused(P("d.")); /* DICT without MARK */
    assert_refused(P("1.")); /* POP_MARK without MARK */
    assert_refused(P("(K\x01"
                     "e."));            /* APPENDS with no list below the MARK */
    assert_refused(P("(K\x01K\x02u.")); /* SETITEMS with no dict below */
    assert_refused(P("(N."));           /* MARK still open at STOP */
    assert_refused(P("(K\x01K\x02K\x03"
                     "d.")); /* DICT with a key and no value */
}

static void test_refuses_get_of_a_memo_key_never_put(void **state)
{
    (void)state;
    assert_refused(P("\x80\x02h\x05."));
    assert_refused(P("\x80\x02K\x01q\x00h\x01."));
    assert_refused(P("\x80\x02j\x00\x00\x00\x01."));
    assert_refused(P("g3\n."));
    assert_refused(P("K\x01p-1\n."));  /* negative PUT */
    assert_refused(P("K\x01pabc\n.")); /* non-numeric PUT */
}

static void test_refuses_lengths_beyond_the_input_before_allocating(void **state)
{
    (void)state;
    /* Each claims far more bytes than follow: refused at once, no allocation
     * of the claimed size (a 2**62-byte malloc would fail or abort ASan). */
    double t0 = tu_now();
    assert_refused(P("\x80\x04\x8d\x00\x00\x00\x00\x00\x00\x00\x40"
                     "abc.")); /* BINUNICODE8 */
    assert_refused(P("\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\xff"
                     "abc.")); /* BINBYTES8 */
    assert_refused(P("\x80\x05\x96\x00\x00\x00\x00\x00\x01\x00\x00"
                     "abc.")); /* BYTEARRAY8 */
    assert_refused(P("\x80\x03"
                     "B\xff\xff\xff\xff"
                     "abc.")); /* BINBYTES */
    assert_refused(P("X\xff\xff\xff\x7f"
                     "abc.")); /* BINUNICODE */
    assert_refused(P("\x80\x04\x8c\x05"
                     "abc.")); /* SHORT_BINUNICODE */
    assert_refused(P("\x80\x03"
                     "C\x10"
                     "abc."));                                           /* SHORT_BINBYTES */
    assert_refused(P("\x80\x02\x8b\xff\xff\xff\x7f\x01."));              /* LONG4 */
    assert_refused(P("\x80\x02\x8b\xff\xff\xff\xff\x01."));              /* LONG4 < 0 */
    assert_refused(P("\x80\x02\x8a\x05\x01."));                          /* LONG1 */
    assert_refused(P("\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\x7fN.")); /* FRAME */
    assert_refused(P("\x80\x04\x95\x03\x00\x00\x00\x00\x00\x00\x00N.")); /* FRAME > rest */
    assert_true(tu_now() - t0 < 1.0);
}

static void test_reads_ints_beyond_int64_never_wrapping(void **state)
{
    (void)state;
    /* Exact, as Python's ints (the vectors hold their reprs; limits in
     * test_obj_int.c); malformed numbers are still refused. */
    assert_loads_repr(P("\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\x00."),
                      "9223372036854775808");
    assert_loads_repr(P("\x80\x02\x8a\x09\xff\xff\xff\xff\xff\xff\xff\x7f\xff."),
                      "-9223372036854775809");
    assert_loads_repr(P("I9223372036854775808\n."), "9223372036854775808");
    assert_loads_repr(P("I-9223372036854775809\n."), "-9223372036854775809");
    assert_refused(P("I12x\n."));
    assert_refused(P("I\n."));
    assert_refused(P("F1.5x\n."));
    assert_refused(P("F\n."));
    assert_refused(P("F1e\n."));
    assert_refused(P("F.\n."));
    assert_refused(P("Fin\n."));
}

/* A pickle of n nested containers made with TUPLE1, or MARK/LIST pairs. */
static unsigned char *nested(size_t n, bool lists, size_t *len)
{
    unsigned char *p = malloc(2 * n + 4);
    assert_non_null(p);
    size_t k = 0;
    p[k++] = 0x80;
    p[k++] = 4;
    if (lists) {
        for (size_t i = 0; i < n; i++)
            p[k++] = '(';
        for (size_t i = 0; i < n; i++)
            p[k++] = 'l';
    } else {
        p[k++] = ')';
        for (size_t i = 1; i < n; i++)
            p[k++] = 0x85;
    }
    p[k++] = '.';
    *len = k;
    return p;
}

static void test_refuses_nesting_deeper_than_max_depth(void **state)
{
    (void)state;
    for (int lists = 0; lists <= 1; lists++) {
        size_t len;
        unsigned char *p = nested(MP_OBJ_MAX_DEPTH, lists, &len);
        mp_obj *o = loads_ok(p, len);
        mp_obj_free(o);
        free(p);
        p = nested(MP_OBJ_MAX_DEPTH + 1, lists, &len);
        assert_refused(p, len);
        free(p);
        p = nested(200000, lists, &len); /* no stack overflow on the way */
        assert_refused(p, len);
        free(p);
    }
    /* A list grows after it was wrapped 999 deep: L0 = []; T = (((L0,),)...);
     * L0.append([]). The depth only shows once the whole value is placed. */
    unsigned char buf[1100];
    size_t k = 0;
    buf[k++] = 0x80;
    buf[k++] = 4;
    buf[k++] = ']';
    buf[k++] = 0x94; /* memo 0 = L0 */
    for (int i = 1; i < MP_OBJ_MAX_DEPTH; i++)
        buf[k++] = 0x85;
    size_t ok_len = k;
    buf[k++] = 'h';
    buf[k++] = 0;
    buf[k++] = ']';
    buf[k++] = 'a';
    buf[k++] = '0';
    buf[k++] = '.';
    assert_refused(buf, k);
    buf[ok_len] = '.';
    mp_obj *o = loads_ok(buf, ok_len + 1); /* exactly the limit without the append */
    mp_obj_free(o);
}

static void test_refuses_a_shared_value_whose_copy_would_nest_too_deep(void **state)
{
    (void)state;
    /* L0 = []; T = L0 wrapped in 997 tuples (998 deep); outer = [T, [T]]
     * (1000 deep: fine when built). Then L0.append([]) through the memo makes
     * T 999 deep, so the copy of T inside [T] would sit 1001 deep. Only the
     * placing pass sees it. */
    unsigned char buf[1100];
    size_t k = 0;
    buf[k++] = 0x80;
    buf[k++] = 4;
    buf[k++] = ']';
    buf[k++] = 0x94; /* memo 0 = L0 */
    for (int i = 0; i < MP_OBJ_MAX_DEPTH - 3; i++)
        buf[k++] = 0x85;
    buf[k++] = 0x94; /* memo 1 = T */
    buf[k++] = '0';
    const unsigned char outer[] = {'(', 'h', 1, '(', 'h', 1, 'l', 'l'};
    memcpy(buf + k, outer, sizeof outer);
    k += sizeof outer;
    size_t before_append = k;
    const unsigned char grow[] = {'h', 0, ']', 'a', '0', '.'};
    memcpy(buf + k, grow, sizeof grow);
    k += sizeof grow;
    assert_refused(buf, k);
    buf[before_append] = '.';
    mp_obj *o = loads_ok(buf, before_append + 1); /* without the append: 1000 deep */
    assert_int_equal(mp_obj_len(o), 2);
    mp_obj_free(o);
}

static void test_refuses_unhashable_dict_keys(void **state)
{
    (void)state;
    assert_refused(P("\x80\x02}]K\x01s."));     /* list key */
    assert_refused(P("\x80\x02}}K\x01s."));     /* dict key */
    assert_refused(P("\x80\x02}]\x85K\x01s.")); /* tuple holding a list */
    assert_refused(P("\x80\x02(]K\x01"
                     "d."));                           /* DICT opcode */
    assert_refused(P("\x80\x02}(K\x01K\x01]K\x02u.")); /* second pair of SETITEMS */
}

static void test_refuses_values_that_contain_themselves(void **state)
{
    (void)state;
    /* x = []; x.append(x) */
    assert_refused(P("\x80\x02]q\x00h\x00"
                     "a."));
    /* x = {}; x[1] = x */
    assert_refused(P("\x80\x02}q\x00K\x01h\x00s."));
    /* a = []; b = [a]; a.append(b) */
    assert_refused(P("\x80\x02]q\x00]q\x01h\x00"
                     "a0h\x00h\x01"
                     "a0."));
    /* t = ([],); t[0].append(t): what Python writes for a recursive tuple */
    assert_refused(P("\x80\x02]q\x00h\x00\x85q\x01"
                     "a0h\x01."));
    /* exactly what CPython 3.11 writes (protocol 4) for those three */
    assert_refused(P("\x80\x04\x95\x06\x00\x00\x00\x00\x00\x00\x00]\x94h\x00"
                     "a."));
    assert_refused(P("\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00]\x94h\x00\x85\x94"
                     "a0h\x01."));
    assert_refused(P("\x80\x04\x95\x0d\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x04self\x94h\x00s."));
    /* DUP then APPEND: the list into itself */
    assert_refused(P("]2a."));
}

static void test_refuses_data_after_stop_and_leftover_values(void **state)
{
    (void)state;
    /* Python ignores both; for a message from a peer they mean corruption. */
    assert_refused(P("N.x"));
    assert_refused(P("N.N."));
    assert_refused(P("NN."));
}

static void test_refuses_opcodes_applied_to_the_wrong_type(void **state)
{
    (void)state;
    assert_refused(P("\x80\x02}K\x01"
                     "a.")); /* APPEND to a dict */
    assert_refused(P("\x80\x02)K\x01"
                     "a."));                     /* APPEND to a tuple */
    assert_refused(P("\x80\x02](K\x01K\x02u.")); /* SETITEMS to a list */
    assert_refused(P("\x80\x02]K\x01K\x02s."));  /* SETITEM to a list */
    assert_refused(P("\x80\x02K\x01(K\x02"
                     "e."));                /* APPENDS to an int */
    assert_refused(P("\x80\x02}(K\x01u.")); /* SETITEMS with an odd count */
}

static void test_refuses_the_bytearray_global_used_any_other_way(void **state)
{
    (void)state;
    /* the callable itself as the result, in a list, as a dict key */
    assert_refused(P("\x80\x04\x8c\x08"
                     "builtins\x8c\tbytearray\x93."));
    assert_refused(P("\x80\x04]\x8c\x08"
                     "builtins\x8c\tbytearray\x93"
                     "a."));
    assert_refused(P("\x80\x03}cbuiltins\nbytearray\nK\x01s."));
    assert_refused(P("\x80\x03(cbuiltins\nbytearray\nt."));
    /* called with something other than () or (bytes,) */
    assert_refused(P("\x80\x03"
                     "cbuiltins\nbytearray\nK\x01\x85R."));
    assert_refused(P("\x80\x03"
                     "cbuiltins\nbytearray\nC\x01"
                     "aC\x01"
                     "b\x86R."));
    assert_refused(P("\x80\x03"
                     "cbuiltins\nbytearray\n."));
    assert_refused(P("\x80\x03"
                     "cbuiltins\nbytearray\nK\x01R."));
    /* STACK_GLOBAL with non-str operands */
    assert_refused(P("\x80\x04"
                     "C\x08"
                     "builtinsC\tbytearray\x93)R."));
    /* REDUCE whose callable is an ordinary value */
    assert_refused(P("\x80\x03]C\x01"
                     "a\x85R."));
    /* but the memoized form Python writes is fine, and reusable via GET */
    assert_loads_repr(P("\x80\x04\x8c\x08"
                        "builtins\x94\x8c\tbytearray\x94\x93\x94"
                        "C\x01"
                        "a\x85Rh\x02)R\x86."),
                      "(bytearray(b'a'), bytearray(b''))");
}

/* L0 = []; L(i+1) = [Li, Li]: 8 bytes per level, 2**levels nodes as a tree. */
static size_t doubling_lists(unsigned char *buf, int levels)
{
    size_t k = 0;
    buf[k++] = 0x80;
    buf[k++] = 4;
    buf[k++] = ']';
    buf[k++] = 0x94; /* memo 0 = L0 */
    for (int i = 0; i < levels; i++) {
        buf[k++] = '0'; /* drop Li from the stack; the memo keeps it */
        buf[k++] = '(';
        buf[k++] = 'h';
        buf[k++] = (unsigned char)i;
        buf[k++] = 'h';
        buf[k++] = (unsigned char)i;
        buf[k++] = 'l';
        buf[k++] = 0x94;
    }
    buf[k++] = '.';
    return k;
}

static void test_refuses_exponential_memo_expansion_quickly(void **state)
{
    (void)state;
    unsigned char buf[1024];
    size_t k = doubling_lists(buf, 64);
    double t0 = tu_now();
    assert_refused(buf, k);
    assert_true(tu_now() - t0 < 60.0); /* finite: 2**64 nodes would never be */
    /* the same shape with modest sharing loads: 2**10 leaves */
    k = doubling_lists(buf, 10);
    mp_obj *o = loads_ok(buf, k);
    const mp_obj *leaf = o;
    int depth = 0;
    while (mp_obj_len(leaf) > 0) {
        assert_int_equal(mp_obj_len(leaf), 2);
        leaf = mp_obj_list_get(leaf, 1);
        depth++;
    }
    assert_int_equal(depth, 10);
    mp_obj_free(o);
}

/* Two separately built but equal tuple graphs, A(i+1) = (Ai, Ai), as the keys
 * of one dict: {A: 1, B: 2}. Comparing them walks 2**levels paths unless the
 * decoder bounds the work. */
static size_t doubling_keys(unsigned char *buf, int levels)
{
    size_t k = 0;
    buf[k++] = 0x80;
    buf[k++] = 4;
    for (int chain = 0; chain < 2; chain++) {
        int base = chain * (levels + 1);
        buf[k++] = 'N';
        buf[k++] = 0x85;
        buf[k++] = 0x94; /* memo base = (None,) */
        buf[k++] = '0';
        for (int i = 0; i < levels; i++) {
            buf[k++] = 'h';
            buf[k++] = (unsigned char)(base + i);
            buf[k++] = 'h';
            buf[k++] = (unsigned char)(base + i);
            buf[k++] = 0x86;
            buf[k++] = 0x94;
            buf[k++] = '0';
        }
    }
    buf[k++] = '}';
    buf[k++] = '(';
    buf[k++] = 'h';
    buf[k++] = (unsigned char)levels;
    buf[k++] = 'K';
    buf[k++] = 1;
    buf[k++] = 'h';
    buf[k++] = (unsigned char)(2 * levels + 1);
    buf[k++] = 'K';
    buf[k++] = 2;
    buf[k++] = 'u';
    buf[k++] = '.';
    return k;
}

static void test_refuses_exponential_key_comparison_quickly(void **state)
{
    (void)state;
    unsigned char buf[2048];
    size_t k = doubling_keys(buf, 60);
    double t0 = tu_now();
    assert_refused(buf, k);
    assert_true(tu_now() - t0 < 60.0); /* finite: 2**60 paths would never be */
    /* small graphs compare fine: the two keys are equal, so one entry */
    k = doubling_keys(buf, 8);
    mp_obj *o = loads_ok(buf, k);
    assert_int_equal(mp_obj_len(o), 1);
    size_t pos = 0;
    const mp_obj *v;
    int64_t iv;
    assert_int_equal(mp_obj_dict_next(o, &pos, NULL, &v), 1);
    TU_ASSERT_STATUS(mp_obj_get_int(v, &iv), 0);
    assert_int_equal(iv, 2); /* B's value replaced A's, as in Python */
    mp_obj_free(o);
}

static void test_loads_checks_its_arguments(void **state)
{
    (void)state;
    mp_obj *o = (mp_obj *)1;
    TU_ASSERT_STATUS(mp__pickle_loads(NULL, 3, &o), -EINVAL);
    assert_null(o);
    TU_ASSERT_STATUS(mp__pickle_loads(P("N."), NULL), -EINVAL);
    unsigned char *out = (unsigned char *)1;
    size_t len;
    TU_ASSERT_STATUS(mp__pickle_dumps(NULL, &out, &len), -EINVAL);
    assert_null(out);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loads_every_cpython_pickle_of_protocols_0_to_5),
        cmocka_unit_test(test_every_protocol_2_to_5_pickle_is_accepted_but_protocol_2_bytes),
        cmocka_unit_test(test_shared_references_become_equal_independent_copies),
        cmocka_unit_test(test_int64_edges_decode_exactly),
        cmocka_unit_test(test_special_floats_decode_bit_exact),
        cmocka_unit_test(test_bytearray_of_protocols_3_to_5_decodes_as_bytearray),
        cmocka_unit_test(test_str_with_nul_and_non_ascii_decode_length_counted),
        cmocka_unit_test(test_loads_non_minimal_long_encodings_within_int64),
        cmocka_unit_test(test_loads_stack_and_memo_opcodes_python_defines),
        cmocka_unit_test(test_memo_keys_may_be_sparse_overwritten_and_many),
        cmocka_unit_test(test_equal_keys_built_separately_keep_the_first_key),
        cmocka_unit_test(test_refuses_opcodes_that_import_or_call_code),
        cmocka_unit_test(test_refuses_protocol_0_to_2_bytes_which_cpython_writes_as_a_codecs_call),
        cmocka_unit_test(test_refuses_set_misuse_buffers_and_python2_strings),
        cmocka_unit_test(test_refuses_unknown_opcodes_and_protocols_above_5),
        cmocka_unit_test(test_refuses_every_truncation_of_a_valid_pickle),
        cmocka_unit_test(test_refuses_str_that_is_not_utf8),
        cmocka_unit_test(test_refuses_stack_underflow),
        cmocka_unit_test(test_refuses_mark_misuse),
        cmocka_unit_test(test_refuses_get_of_a_memo_key_never_put),
        cmocka_unit_test(test_refuses_lengths_beyond_the_input_before_allocating),
        cmocka_unit_test(test_reads_ints_beyond_int64_never_wrapping),
        cmocka_unit_test(test_refuses_nesting_deeper_than_max_depth),
        cmocka_unit_test(test_refuses_a_shared_value_whose_copy_would_nest_too_deep),
        cmocka_unit_test(test_refuses_unhashable_dict_keys),
        cmocka_unit_test(test_refuses_values_that_contain_themselves),
        cmocka_unit_test(test_refuses_data_after_stop_and_leftover_values),
        cmocka_unit_test(test_refuses_opcodes_applied_to_the_wrong_type),
        cmocka_unit_test(test_refuses_the_bytearray_global_used_any_other_way),
        cmocka_unit_test(test_refuses_exponential_memo_expansion_quickly),
        cmocka_unit_test(test_refuses_exponential_key_comparison_quickly),
        cmocka_unit_test(test_loads_checks_its_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
