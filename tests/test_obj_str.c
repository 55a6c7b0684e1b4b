/*
 * obj_str: str with lone surrogates, as Python's os.walk yields them for
 * file names that are not UTF-8 - decoded from the 3-byte form pickle
 * writes ("surrogatepass"), kept, counted, repr'd and written back as
 * Python does; malformed UTF-8 still refused; os.fsencode and os.fsdecode
 * in C; round-tripped with a real python3 through a Pipe.
 */
#include "testutil.h"

#include "pickle_helpers.h"
#include "py_roundtrip.h"

#include <mpipc/obj.h>

#include <stdlib.h>
#include <string.h>

static void assert_repr(const mp_obj *o, const char *want)
{
    char *s = repr_of(o);
    assert_string_equal(s, want);
    free(s);
}

static void test_loads_a_lone_surrogate_and_keeps_its_code_point(void **state)
{
    (void)state;
    /* pickle.dumps('\udcff') (frame taken off): ED B3 BF. */
    mp_obj *o = loads_ok(P("\x80\x04\x8c\x03\xed\xb3\xbf\x94."));
    const char *s;
    size_t n;
    TU_ASSERT_STATUS(mp_obj_get_str(o, &s, &n), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(s, "\xed\xb3\xbf", 3);
    assert_int_equal(mp_obj_len(o), 1);
    assert_repr(o, "'\\udcff'");
    unsigned char *p;
    TU_ASSERT_STATUS(mp__pickle_dumps(o, &p, &n), 0);
    assert_int_equal(n, 8);
    assert_memory_equal(p, "\x80\x04\x8c\x03\xed\xb3\xbf.", 8);
    free(p);
    mp_obj_free(o);
    /* The ends of the range, and a pair that stays two code points, as in
     * Python: '\ud83d\ude00' is not '\U0001f600'. */
    assert_loads_repr(P("\x80\x04\x8c\x03\xed\xa0\x80."), "'\\ud800'");
    assert_loads_repr(P("\x80\x04\x8c\x03\xed\xbf\xbf."), "'\\udfff'");
    o = loads_ok(P("\x80\x04\x8c\x06\xed\xa0\xbd\xed\xb8\x80."));
    assert_int_equal(mp_obj_len(o), 2);
    assert_repr(o, "'\\ud83d\\ude00'");
    mp_obj *emoji = mp_obj_str_cstr("\xf0\x9f\x98\x80");
    assert_false(mp_obj_equal(o, emoji));
    mp_obj_free(emoji);
    mp_obj_free(o);
    /* Protocol 0 writes it as a raw-unicode-escape: V\udcff. */
    assert_loads_repr(P("V\\udcff\np0\n."), "'\\udcff'");
    assert_loads_repr(P("Va\\ud800b\n."), "'a\\ud800b'");
}

static void test_malformed_utf8_is_still_refused(void **state)
{
    (void)state;
    /* Overlong forms, truncated sequences, bad continuations, code points
     * above U+10FFFF, stray continuation bytes: Python's UnicodeDecodeError
     * even with "surrogatepass". */
    assert_refused(P("\x80\x04\x8c\x03\xe0\x80\x80."));     /* overlong U+0000 */
    assert_refused(P("\x80\x04\x8c\x02\xc0\x80."));         /* overlong NUL */
    assert_refused(P("\x80\x04\x8c\x04\xf0\x8d\xb3\xbf.")); /* overlong U+DCFF */
    assert_refused(P("\x80\x04\x8c\x02\xed\xb3."));         /* truncated */
    assert_refused(P("\x80\x04\x8c\x03\xed\xb3\x41."));     /* bad continuation */
    assert_refused(P("\x80\x04\x8c\x03\xed\xc0\x80."));
    assert_refused(P("\x80\x04\x8c\x04\xf4\x90\x80\x80.")); /* above U+10FFFF */
    assert_refused(P("\x80\x04\x8c\x01\xb3."));             /* stray continuation */
    assert_refused(P("V\\U00110000\n."));
    assert_null(mp_obj_str("\xe0\x80\x80", 3));
    assert_null(mp_obj_str("\xed\xb3", 2));
}

static void test_str_accepts_the_form_get_str_hands_back(void **state)
{
    (void)state;
    mp_obj *o = mp_obj_str("a\xed\xb3\xbf\x00z", 6);
    assert_non_null(o);
    assert_int_equal(mp_obj_len(o), 4);
    assert_repr(o, "'a\\udcff\\x00z'");
    mp_obj *p = loads_ok(P("\x80\x04\x8c\x06\x61\xed\xb3\xbf\x00z."));
    assert_true(mp_obj_equal(o, p));
    /* As a dict key: found by an equal str. */
    mp_obj *d = mp_obj_dict_new();
    TU_ASSERT_STATUS(mp_obj_dict_set(d, p, mp_obj_int(1)), 0);
    assert_non_null(mp_obj_dict_get(d, o));
    mp_obj_free(d);
    mp_obj_free(o);
}

static void test_fsdecode_and_fsencode_follow_python(void **state)
{
    (void)state;
    /* os.fsdecode(b'\xff\xfe name \xe2\x82') == '\udcff\udcfe name \udce2\udc82' */
    static const char name[] = "\xff\xfe name \xe2\x82";
    mp_obj *o = mp_obj_str_fsdecode(name, sizeof name - 1);
    assert_non_null(o);
    assert_repr(o, "'\\udcff\\udcfe name \\udce2\\udc82'");
    assert_int_equal(mp_obj_len(o), 10);
    char *b = NULL;
    size_t n = 0;
    TU_ASSERT_STATUS(mp_obj_str_fsencode(o, &b, &n), 0);
    assert_int_equal(n, sizeof name - 1);
    assert_memory_equal(b, name, n);
    assert_int_equal(b[n], '\0');
    free(b);
    mp_obj_free(o);
    /* Encoded surrogates and overlong forms are not UTF-8 to fsdecode:
     * os.fsdecode(b'\xed\xb3\xbf') == '\udced\udcb3\udcbf'. */
    o = mp_obj_str_fsdecode("\xed\xb3\xbf\xc0\x80", 5);
    assert_repr(o, "'\\udced\\udcb3\\udcbf\\udcc0\\udc80'");
    TU_ASSERT_STATUS(mp_obj_str_fsencode(o, &b, &n), 0);
    assert_int_equal(n, 5);
    assert_memory_equal(b, "\xed\xb3\xbf\xc0\x80", 5);
    free(b);
    mp_obj_free(o);
    /* Valid UTF-8 stays as it is; the empty name too. */
    o = mp_obj_str_fsdecode("caf\xc3\xa9 \xf0\x9f\x98\x80", 10);
    mp_obj *want = mp_obj_str_cstr("caf\xc3\xa9 \xf0\x9f\x98\x80");
    assert_true(mp_obj_equal(o, want));
    mp_obj_free(want);
    mp_obj_free(o);
    o = mp_obj_str_fsdecode(NULL, 0);
    assert_int_equal(mp_obj_len(o), 0);
    mp_obj_free(o);
    assert_null(mp_obj_str_fsdecode(NULL, 1));
}

static void test_fsencode_refuses_surrogates_it_cannot_escape(void **state)
{
    (void)state;
    /* os.fsencode('\ud800') and os.fsencode('\udc7f') raise
     * UnicodeEncodeError; nothing is handed out. */
    static const char *const bad[] = {"\xed\xa0\x80", "\xed\xb1\xbf", "ok\xed\xbf\xbf"};
    for (size_t i = 0; i < N_ELEMS(bad); i++) {
        mp_obj *o = mp_obj_str(bad[i], strlen(bad[i]));
        assert_non_null(o);
        char *b = (char *)1;
        size_t n = 7;
        TU_ASSERT_STATUS(mp_obj_str_fsencode(o, &b, &n), MP_EVALUE);
        assert_null(b);
        assert_int_equal(n, 7);
        mp_obj_free(o);
    }
    char *b;
    size_t n;
    TU_ASSERT_STATUS(mp_obj_str_fsencode(mp_obj_none(), &b, &n), MP_ETYPE);
    TU_ASSERT_STATUS(mp_obj_str_fsencode(NULL, &b, &n), -EINVAL);
}

static void test_surrogate_strs_round_trip_with_python3(void **state)
{
    (void)state;
    static const char name[] = "\xff\xfe name \xe2\x82";
    mp_obj *l = mp_obj_list_new();
    TU_ASSERT_STATUS(mp_obj_list_append(l, mp_obj_str_fsdecode("\x80", 1)), 0);
    TU_ASSERT_STATUS(mp_obj_list_append(l, mp_obj_str("\xed\xa0\x80", 3)), 0);
    struct pyrt_case cases[] = {
        {"os.fsdecode(b'\\xff\\xfe name \\xe2\\x82')", mp_obj_str_fsdecode(name, sizeof name - 1)},
        {"'\\ud800'", mp_obj_str("\xed\xa0\x80", 3)},
        {"'\\ud83d\\ude00'", mp_obj_str("\xed\xa0\xbd\xed\xb8\x80", 6)},
        {"['\\udc80', '\\ud800']", l},
    };
    pyrt_run("['\\udcff', 'a\\udc80b', '\\ud800', '\\udfff', '\\ud83d\\ude00',"
             " 'caf\\xe9\\udce9', os.fsdecode(b'\\xff\\xfe name \\xe2\\x82'),"
             " {'\\udcfe': ['\\udcfd', ('\\udcfc', 1)]}, 'x\\udcff' * 1000]",
             cases, N_ELEMS(cases));
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loads_a_lone_surrogate_and_keeps_its_code_point),
        cmocka_unit_test(test_malformed_utf8_is_still_refused),
        cmocka_unit_test(test_str_accepts_the_form_get_str_hands_back),
        cmocka_unit_test(test_fsdecode_and_fsencode_follow_python),
        cmocka_unit_test(test_fsencode_refuses_surrogates_it_cannot_escape),
        TU_TEST(test_surrogate_strs_round_trip_with_python3),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
