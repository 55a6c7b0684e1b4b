/* error: every status code has a name and a description, and the two kinds
 * of negative codes (library, errno) never collide. */
#include "testutil.h"

#include <mpipc/error.h>

#include <errno.h>
#include <string.h>

static const int all_codes[] = {
    MP_EOF,      MP_EMPTY,      MP_FULL,       MP_ETIMEDOUT, MP_ETOOLONG,   MP_ETOOSHORT,
    MP_ECLOSED,  MP_EPROTO,     MP_EVALUE,     MP_EAUTH,     MP_EBROKEN,    MP_ETASK,
    MP_EWORKER,  MP_EOWNERDEAD, MP_ETRUNCATED, MP_EREADONLY, MP_EWRITEONLY, MP_ESTATE,
    MP_ENOTDONE, MP_ETYPE,      MP_EKEY,       MP_ENOSERVER, MP_ENOOBJ,
    MP_EFORKED,  MP_ETERMINATED, /* pool */
};
#define NCODES (sizeof all_codes / sizeof all_codes[0])

static void test_every_library_code_has_a_name_and_text(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCODES; i++) {
        const char *name = mp_errname(all_codes[i]);
        const char *text = mp_strerror(all_codes[i]);
        assert_non_null(name);
        assert_non_null(text);
        assert_string_not_equal(name, "MP_UNKNOWN");
        assert_string_not_equal(text, "unknown libmpipc status");
        assert_true(strncmp(name, "MP_", 3) == 0);
    }
}

static void test_library_codes_are_distinct_and_below_errno_range(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCODES; i++) {
        assert_true(all_codes[i] < -1000);
        for (size_t j = i + 1; j < NCODES; j++)
            assert_int_not_equal(all_codes[i], all_codes[j]);
    }
}

static void test_errno_codes_are_described_by_the_os(void **state)
{
    (void)state;
    assert_string_equal(mp_errname(-EPIPE), "EPIPE");
    assert_string_equal(mp_strerror(-EPIPE), strerror(EPIPE));
    assert_string_equal(mp_errname(-EMFILE), "EMFILE");
    assert_string_equal(mp_strerror(0), "success");
    assert_string_equal(mp_errname(0), "MP_OK");
}

static void test_unknown_codes_get_a_fallback_never_null(void **state)
{
    (void)state;
    assert_string_equal(mp_errname(-999999), "MP_UNKNOWN");
    assert_string_equal(mp_strerror(-999999), "unknown libmpipc status");
    assert_string_equal(mp_strerror(12345), "unknown libmpipc status");
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_library_code_has_a_name_and_text),
        cmocka_unit_test(test_library_codes_are_distinct_and_below_errno_range),
        cmocka_unit_test(test_errno_codes_are_described_by_the_os),
        cmocka_unit_test(test_unknown_codes_get_a_fallback_never_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
