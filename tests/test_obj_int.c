/*
 * obj_int: ints beyond int64 as Python has them - decoded from LONG1, LONG4
 * and protocol 0's text, written back as CPython writes them, converted to
 * and from bytes and decimal text with Python's rules and its 4300-digit
 * limit, compared and hashed exactly against floats, and round-tripped with
 * a real python3 through a Pipe.
 */
#include "testutil.h"

#include "pickle_helpers.h"
#include "py_roundtrip.h"

#include <mpipc/obj.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

static mp_obj *from_str(const char *s)
{
    mp_obj *o = NULL;
    TU_ASSERT_STATUS(mp_obj_int_from_str(s, strlen(s), &o), 0);
    assert_non_null(o);
    return o;
}

static void assert_repr(const mp_obj *o, const char *want)
{
    char *s = repr_of(o);
    assert_string_equal(s, want);
    free(s);
}

/* n copies of c, NUL-terminated (the caller frees). */
static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void test_loads_long1_beyond_int64_gives_the_exact_int(void **state)
{
    (void)state;
    /* pickle.dumps(2**70, 2) and pickle.dumps(-2**70, 2) */
    mp_obj *o = loads_ok(P("\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x40."));
    assert_int_equal(mp_obj_type(o), MP_TYPE_INT);
    assert_repr(o, "1180591620717411303424");
    assert_false(mp_obj_int_fits(o));
    int64_t v = 42;
    TU_ASSERT_STATUS(mp_obj_get_int(o, &v), -ERANGE); /* OverflowError */
    assert_int_equal(v, 42);
    mp_obj_free(o);
    assert_loads_repr(P("\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\xc0."),
                      "-1180591620717411303424");
    /* 2**63 and -2**63 - 1: the first values past int64. */
    assert_loads_repr(P("\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\x00."),
                      "9223372036854775808");
    assert_loads_repr(P("\x80\x02\x8a\x09\xff\xff\xff\xff\xff\xff\xff\x7f\xff."),
                      "-9223372036854775809");
}

static void test_loads_long_with_redundant_sign_bytes_gives_an_int64(void **state)
{
    (void)state;
    /* 12 bytes holding 1 and -2: Python reads 1 and -2, and so do we, as
     * plain int64 values (canonical: a big int never fits int64). */
    mp_obj *o = loads_ok(P("\x80\x04\x8a\x0c\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00."));
    assert_true(o == mp_obj_int(1)); /* the immortal 1 */
    mp_obj_free(o);
    o = loads_ok(P("\x80\x04\x8a\x0a\x00\x00\x00\x00\x00\x00\x00\x80\xff\xff."));
    assert_true(mp_obj_int_fits(o));
    int64_t v;
    TU_ASSERT_STATUS(mp_obj_get_int(o, &v), 0);
    assert_true(v == INT64_MIN);
    mp_obj_free(o);
    assert_loads_repr(P("\x80\x04\x8a\x00."), "0");
}

static void test_dumps_a_big_int_as_cpython_does(void **state)
{
    (void)state;
    /* LONG1 with the shortest bytes; LONG4 from 256 bytes (2**2048 has
     * 257): pickle.dumps(x, 4) without its FRAME. */
    unsigned char *p;
    size_t n;
    mp_obj *o = from_str("-18446744073709551616"); /* -2**64 */
    TU_ASSERT_STATUS(mp__pickle_dumps(o, &p, &n), 0);
    static const unsigned char want[] = "\x80\x04\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\xff.";
    assert_int_equal(n, sizeof want - 1);
    assert_memory_equal(p, want, n);
    free(p);
    mp_obj_free(o);

    unsigned char le[257] = {0};
    le[256] = 1; /* 2**2048 */
    o = mp_obj_int_from_bytes(le, sizeof le, false);
    assert_non_null(o);
    TU_ASSERT_STATUS(mp__pickle_dumps(o, &p, &n), 0);
    assert_int_equal(n, 2 + 5 + 257 + 1);
    assert_memory_equal(p, "\x80\x04\x8b\x01\x01\x00\x00", 7);
    assert_memory_equal(p + 7, le, 257);
    mp_obj *back = loads_ok(p, n);
    assert_true(mp_obj_equal(back, o));
    mp_obj_free(back);
    free(p);
    mp_obj_free(o);
}

static void test_loads_protocol_0_long_text_beyond_int64(void **state)
{
    (void)state;
    /* pickle.dumps(2**70, 0), and INT's text as Python 2 wrote big ones. */
    assert_loads_repr(P("L1180591620717411303424L\n."), "1180591620717411303424");
    assert_loads_repr(P("I-1180591620717411303424\n."), "-1180591620717411303424");
    assert_refused(P("L11805916207174113034x4L\n."));
    assert_refused(P("L-L\n."));
}

static void test_long_text_of_4301_digits_is_refused_4300_is_read(void **state)
{
    (void)state;
    /* Python's int(text) limit: pickle.loads of such a protocol 0 pickle
     * raises ValueError; 4300 digits are fine. */
    char *d = repeat('9', 4301);
    size_t n = 1 + 4301 + 2; /* L, the digits, \n. */
    unsigned char *p = malloc(n);
    assert_non_null(p);
    p[0] = 'L';
    memcpy(p + 1, d, 4301);
    memcpy(p + 4302, "\n.", 2);
    assert_refused(p, n);
    memcpy(p + 1, d, 4300);
    memcpy(p + 4301, "\n.", 2);
    mp_obj *o = loads_ok(p, n - 1);
    char *s = repr_of(o);
    assert_int_equal(strlen(s), 4300);
    assert_memory_equal(s, d, 4300);
    free(s);
    mp_obj_free(o);
    free(p);
    free(d);
}

static void test_long4_claiming_more_bytes_than_present_is_refused(void **state)
{
    (void)state;
    /* The count is checked against the input before anything is
     * allocated: 2 GiB - 1 claimed with 3 bytes present, one byte short,
     * a negative count, a truncated LONG1. */
    assert_refused(P("\x80\x04\x8b\xff\xff\xff\x7f\x01\x02\x03."));
    assert_refused(P("\x80\x04\x8b\x0a\x00\x00\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09"));
    assert_refused(P("\x80\x04\x8b\x00\x00\x00\x80."));
    assert_refused(P("\x80\x04\x8a\x09\x00\x00\x00"));
    assert_refused(P("\x80\x04\x8b\x01\x00"));
}

static void test_repr_of_more_than_4300_digits_is_refused(void **state)
{
    (void)state;
    /* Python: ValueError "Exceeds the limit (4300 digits) for integer
     * string conversion". 10**4300 - 1 has 4300 digits, 10**4300 has 4301. */
    char *nines = repeat('9', 4300);
    mp_obj *o = from_str(nines);
    char *s = repr_of(o);
    assert_string_equal(s, nines);
    free(s);
    mp_obj_free(o);
    char *big = repeat('0', 4301);
    big[0] = '1';
    mp_obj *b = NULL;
    TU_ASSERT_STATUS(mp_obj_int_from_str(big, 4301, &b), MP_EVALUE);
    assert_null(b);
    /* 10**4300 from its bytes: repr refuses, inside a list too. */
    mp_obj *l = mp_obj_list_new();
    unsigned char le[1800];
    memset(le, 0, sizeof le);
    le[1790] = 0x40; /* 2**14326: some 4313 digits */
    TU_ASSERT_STATUS(mp_obj_list_append(l, mp_obj_int_from_bytes(le, sizeof le, true)), 0);
    s = (char *)1;
    TU_ASSERT_STATUS(mp_obj_repr(l, &s), MP_EVALUE);
    assert_null(s);
    mp_obj_free(l);
    free(big);
    free(nines);
}

static void test_repr_of_a_huge_peer_int_is_refused_without_quadratic_work(void **state)
{
    (void)state;
    /* A LONG4 of 4 MiB decodes (linear), but its repr is refused from its
     * size alone, at once. */
    size_t len = (size_t)4 << 20, n = 2 + 5 + len + 1;
    unsigned char *p = calloc(1, n);
    assert_non_null(p);
    memcpy(p, "\x80\x04\x8b\x00\x00\x40\x00", 7);
    p[7 + len - 1] = 0x01;
    p[n - 1] = '.';
    mp_obj *o = loads_ok(p, n);
    free(p);
    double t0 = tu_now();
    char *s = (char *)1;
    TU_ASSERT_STATUS(mp_obj_repr(o, &s), MP_EVALUE);
    assert_true(tu_now() - t0 < 1.0 * tu_slowdown(20, 5));
    assert_null(s);
    assert_int_equal(mp_obj_int_bit_length(o), (ssize_t)(len - 1) * 8 + 1);
    mp_obj_free(o);
}

static void test_int_from_str_follows_python_int(void **state)
{
    (void)state;
    static const struct {
        const char *in, *repr;
    } ok[] = {
        {"0", "0"},
        {"-0", "0"},
        {"007", "7"},
        {" \t+1_000\n\v\f\r", "1000"},
        {"-9223372036854775808", "-9223372036854775808"},
        {"9223372036854775808", "9223372036854775808"},
        {"-340282366920938463463374607431768211456", "-340282366920938463463374607431768211456"},
        {"1_2_3_4_5_6_7_8_9_0_1_2_3_4_5_6_7_8_9_0", "12345678901234567890"},
    };
    for (size_t i = 0; i < N_ELEMS(ok); i++) {
        mp_obj *o = from_str(ok[i].in);
        assert_repr(o, ok[i].repr);
        mp_obj_free(o);
    }
    /* int() raises ValueError for each. */
    static const char *const bad[] = {"",
                                      " ",
                                      "+",
                                      "-",
                                      "1__0",
                                      "_1",
                                      "1_",
                                      "- 1",
                                      "1e5",
                                      "0x10",
                                      "1.0",
                                      "\x1c"
                                      "1",
                                      "12a",
                                      "\xd9\xa3"};
    for (size_t i = 0; i < N_ELEMS(bad); i++) {
        mp_obj *o = (mp_obj *)1;
        TU_ASSERT_STATUS(mp_obj_int_from_str(bad[i], strlen(bad[i]), &o), MP_EVALUE);
        assert_null(o);
    }
    mp_obj *o = (mp_obj *)1;
    TU_ASSERT_STATUS(mp_obj_int_from_str("1\0", 2, &o), MP_EVALUE);
    TU_ASSERT_STATUS(mp_obj_int_from_str(NULL, 1, &o), -EINVAL);
    TU_ASSERT_STATUS(mp_obj_int_from_str("1", 1, NULL), -EINVAL);
    /* The limit counts digits, not underscores: "1_" * 4300 + "1" has 4301. */
    char *s = malloc(2 * 4300 + 2);
    assert_non_null(s);
    for (size_t i = 0; i < 4300; i++)
        memcpy(s + 2 * i, "1_", 2);
    memcpy(s + 8600, "1", 2);
    TU_ASSERT_STATUS(mp_obj_int_from_str(s, 8601, &o), MP_EVALUE);
    TU_ASSERT_STATUS(mp_obj_int_from_str(s + 2, 8599, &o), 0);
    mp_obj_free(o);
    free(s);
}

static void test_int_from_bytes_and_to_bytes_follow_python(void **state)
{
    (void)state;
    static const unsigned char ff9[9] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    /* int.from_bytes(b'\xff'*9, 'little', signed=True) == -1 */
    mp_obj *o = mp_obj_int_from_bytes(ff9, 9, true);
    assert_true(o == mp_obj_int(-1));
    /* ... unsigned: 2**72 - 1 */
    o = mp_obj_int_from_bytes(ff9, 9, false);
    assert_repr(o, "4722366482869645213695");
    assert_int_equal(mp_obj_int_bit_length(o), 72);
    unsigned char out[12];
    memset(out, 0xaa, sizeof out);
    TU_ASSERT_STATUS(mp_obj_int_to_bytes(o, 8, false, out), -ERANGE); /* too big */
    TU_ASSERT_STATUS(mp_obj_int_to_bytes(o, 9, true, out), -ERANGE);  /* sign bit */
    assert_int_equal(out[0], 0xaa);                                   /* untouched */
    TU_ASSERT_STATUS(mp_obj_int_to_bytes(o, 9, false, out), 0);
    assert_memory_equal(out, ff9, 9);
    TU_ASSERT_STATUS(mp_obj_int_to_bytes(o, 12, true, out), 0);
    assert_memory_equal(out, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00", 12);
    mp_obj_free(o);

    /* -2**64: signed only, 9 bytes or more, sign-extended. */
    o = from_str("-18446744073709551616");
    assert_int_equal(mp_obj_int_bit_length(o), 65);
    TU_ASSERT_STATUS(mp_obj_int_to_bytes(o, 12, false, out), -ERANGE); /* negative */
    TU_ASSERT_STATUS(mp_obj_int_to_bytes(o, 8, true, out), -ERANGE);
    TU_ASSERT_STATUS(mp_obj_int_to_bytes(o, 10, true, out), 0);
    assert_memory_equal(out, "\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff", 10);
    mp_obj_free(o);

    /* Small ints and bools too, as in Python: (255).to_bytes(1, 'little'),
     * (-129).to_bytes(1, ..., signed=True) overflows, True is 1. */
    TU_ASSERT_STATUS(mp_obj_int_to_bytes(mp_obj_int(255), 1, false, out), 0);
    assert_int_equal(out[0], 0xff);
    TU_ASSERT_STATUS(mp_obj_int_to_bytes(mp_obj_int(255), 1, true, out), -ERANGE);
    o = mp_obj_int(-129);
    TU_ASSERT_STATUS(mp_obj_int_to_bytes(o, 1, true, out), -ERANGE);
    TU_ASSERT_STATUS(mp_obj_int_to_bytes(o, 2, true, out), 0);
    assert_memory_equal(out, "\x7f\xff", 2);
    assert_int_equal(mp_obj_int_bit_length(o), 8);
    mp_obj_free(o);
    TU_ASSERT_STATUS(mp_obj_int_to_bytes(mp_obj_bool(true), 1, false, out), 0);
    assert_int_equal(out[0], 1);
    TU_ASSERT_STATUS(mp_obj_int_to_bytes(mp_obj_int(0), 0, false, NULL), 0);
    o = mp_obj_int(INT64_MIN);
    assert_int_equal(mp_obj_int_bit_length(o), 64);
    mp_obj_free(o);
    assert_int_equal(mp_obj_int_bit_length(mp_obj_int(0)), 0);
    TU_ASSERT_STATUS(mp_obj_int_bit_length(mp_obj_none()), MP_ETYPE);
    TU_ASSERT_STATUS(mp_obj_int_to_bytes(mp_obj_none(), 1, true, out), MP_ETYPE);
    assert_false(mp_obj_int_fits(mp_obj_none()));
    assert_true(mp_obj_int_fits(mp_obj_bool(false)));
    assert_true(mp_obj_int_from_bytes(NULL, 0, true) == mp_obj_int(0));
    assert_null(mp_obj_int_from_bytes(NULL, 1, true));
}

/* Python's int(1e300). */
#define E300_TEXT                                                                                  \
    "1000000000000000052504760255204420248704468581108159154915854115511802457988908195786371375"  \
    "0804478640437044438328838781769425232353604305756447921847867069828483872009265758037378302"  \
    "3379478809005936895323497079994508111903896764088007465274278014249457925878882005684283811"  \
    "5669472196386865459400540160"

static void test_big_ints_compare_and_hash_exactly_with_floats(void **state)
{
    (void)state;
    /* 2**64 == 2.0**64, and they are one dict key; 2**64 + 1 is not equal
     * to float(2**64 + 1) (Python compares exactly). */
    mp_obj *big = from_str("18446744073709551616");
    mp_obj *big1 = from_str("18446744073709551617");
    mp_obj *f = mp_obj_float(18446744073709551616.0);
    mp_obj *nf = mp_obj_float(-18446744073709551616.0);
    mp_obj *nbig = from_str("-18446744073709551616");
    assert_true(mp_obj_equal(big, f));
    assert_true(mp_obj_equal(f, big));
    assert_false(mp_obj_equal(big1, f));
    assert_true(mp_obj_equal(nbig, nf));
    assert_false(mp_obj_equal(big, nf));
    assert_false(mp_obj_equal(big, big1));
    assert_false(mp_obj_equal(big, mp_obj_int(-1)));
    mp_obj *c = mp_obj_copy(big);
    assert_true(mp_obj_equal(big, c));
    assert_false(mp_obj_int_fits(c));
    mp_obj_free(c);
    /* 1e300 is an int in Python's eyes: int(1e300) == 1e300. */
    mp_obj *e300 = mp_obj_float(1e300);
    mp_obj *i300 = from_str(E300_TEXT);
    assert_true(mp_obj_equal(i300, e300));
    mp_obj *d = mp_obj_dict_new();
    TU_ASSERT_STATUS(mp_obj_dict_set(d, f, mp_obj_str_cstr("float key")), 0);
    TU_ASSERT_STATUS(mp_obj_dict_set(d, e300, mp_obj_str_cstr("1e300")), 0);
    TU_ASSERT_STATUS(mp_obj_dict_set(d, big1, mp_obj_str_cstr("2**64+1")), 0);
    const char *s;
    TU_ASSERT_STATUS(mp_obj_get_str(mp_obj_dict_get(d, big), &s, NULL), 0);
    assert_string_equal(s, "float key");
    TU_ASSERT_STATUS(mp_obj_get_str(mp_obj_dict_get(d, i300), &s, NULL), 0);
    assert_string_equal(s, "1e300");
    /* Storing 2**64 replaces the value under 2.0**64, the key stays. */
    TU_ASSERT_STATUS(mp_obj_dict_set(d, big, mp_obj_str_cstr("int key")), 0);
    assert_int_equal(mp_obj_len(d), 3);
    assert_repr(d, "{1.8446744073709552e+19: 'int key', 1e+300: '1e300', "
                   "18446744073709551617: '2**64+1'}");
    mp_obj_free(d);
    mp_obj_free(i300);
    mp_obj_free(nf);
    mp_obj_free(nbig);
}

static void test_int_1e300_text_equals_the_float(void **state)
{
    (void)state;
    /* int(1e300) from the float's own bits: Python's text, and back. */
    mp_obj *f = mp_obj_float(1e300);
    unsigned char le[MP__INT_DOUBLE_BYTES];
    size_t n;
    assert_true(mp__int_from_double_big(1e300, le, &n));
    mp_obj *i = mp_obj_int_from_bytes(le, n, true);
    assert_true(mp_obj_equal(i, f));
    char *s = repr_of(i);
    assert_string_equal(s, E300_TEXT);
    mp_obj *back = from_str(s);
    assert_true(mp_obj_equal(back, f));
    assert_int_equal(strlen(s), 301);
    free(s);
    mp_obj_free(back);
    mp_obj_free(i);
    mp_obj_free(f);
}

static void test_random_ints_survive_bytes_text_and_pickle(void **state)
{
    (void)state;
    /* 1800 ints of 0 to 23 random bytes and 200 of up to 1699 (4100 digits):
     * from_bytes -> repr -> from_str -> to_bytes gives the same bytes,
     * pickling gives an equal value, and the hash agrees with equality. */
    uint64_t x = 0x9e3779b97f4a7c15u;
    unsigned char in[1700], out[1700];
    for (int t = 0; t < 2000; t++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t n = (size_t)(x % (t < 1800 ? 24 : sizeof in));
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            in[i] = (unsigned char)(x >> 24);
        }
        if (n && t % 3 == 0)
            in[n - 1] = t % 2 ? 0xff : 0x00; /* redundant sign bytes */
        mp_obj *o = mp_obj_int_from_bytes(in, n, true);
        assert_non_null(o);
        char *s = repr_of(o);
        mp_obj *back = from_str(s);
        assert_true(mp_obj_equal(o, back));
        TU_ASSERT_STATUS(mp_obj_int_to_bytes(back, n, true, out), 0);
        assert_memory_equal(out, in, n);
        ssize_t bits = mp_obj_int_bit_length(o);
        assert_true(bits >= 0 && (size_t)bits <= 8 * n);
        assert_true(mp_obj_int_fits(o) == (bits < 64 || (bits == 64 && s[0] == '-' &&
                                                         strcmp(s, "-9223372036854775808") == 0)));
        unsigned char *p;
        size_t pn;
        TU_ASSERT_STATUS(mp__pickle_dumps(o, &p, &pn), 0);
        mp_obj *un = loads_ok(p, pn);
        assert_true(mp_obj_equal(o, un));
        mp_obj *d = mp_obj_dict_new();
        TU_ASSERT_STATUS(mp_obj_dict_set(d, un, mp_obj_none()), 0);
        assert_non_null(mp_obj_dict_get(d, back));
        mp_obj_free(d);
        free(p);
        free(s);
        mp_obj_free(back);
        mp_obj_free(o);
    }
}

static void test_big_ints_round_trip_with_python3(void **state)
{
    (void)state;
    /* Python's values, pickled in protocols 0-5; C's, built from text and
     * bytes. */
    static const unsigned char ff16[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                           0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    static const unsigned char neg71[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0x80};
    mp_obj *d = mp_obj_dict_new();
    TU_ASSERT_STATUS(mp_obj_dict_set(d, from_str("18446744073709551616"), mp_obj_str_cstr("big")),
                     0);
    TU_ASSERT_STATUS(mp_obj_dict_set(d, mp_obj_int(1), from_str("-99999999999999999999")), 0);
    struct pyrt_case cases[] = {
        {"-123456789012345678901234567890", from_str("-123456789012345678901234567890")},
        {"2**128 - 1", mp_obj_int_from_bytes(ff16, 16, false)},
        {"-2**71", mp_obj_int_from_bytes(neg71, 9, true)},
        {"9223372036854775807", from_str("9223372036854775807")},
        {"{2**64: 'big', 1: -99999999999999999999}", d},
    };
    pyrt_run("[2**63, -2**63 - 1, 2**64 - 1, -2**64, 2**70, -2**70, 2**2039 - 1, -2**2039,"
             " 2**2039, 2**2048 + 12345, -(10**4300 - 1), 10**4300, 3**5000, -7**9000,"
             " [2**100, (-2**100, {2**65: 3})]]",
             cases, N_ELEMS(cases));
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loads_long1_beyond_int64_gives_the_exact_int),
        cmocka_unit_test(test_loads_long_with_redundant_sign_bytes_gives_an_int64),
        cmocka_unit_test(test_dumps_a_big_int_as_cpython_does),
        cmocka_unit_test(test_loads_protocol_0_long_text_beyond_int64),
        cmocka_unit_test(test_long_text_of_4301_digits_is_refused_4300_is_read),
        cmocka_unit_test(test_long4_claiming_more_bytes_than_present_is_refused),
        cmocka_unit_test(test_repr_of_more_than_4300_digits_is_refused),
        cmocka_unit_test(test_repr_of_a_huge_peer_int_is_refused_without_quadratic_work),
        cmocka_unit_test(test_int_from_str_follows_python_int),
        cmocka_unit_test(test_int_from_bytes_and_to_bytes_follow_python),
        cmocka_unit_test(test_big_ints_compare_and_hash_exactly_with_floats),
        cmocka_unit_test(test_int_1e300_text_equals_the_float),
        cmocka_unit_test(test_random_ints_survive_bytes_text_and_pickle),
        TU_TEST(test_big_ints_round_trip_with_python3),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
