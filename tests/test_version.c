/* version: the run-time version calls agree with the macros this test was
 * compiled against (the same build), and the string spells the number. */
#include "testutil.h"

#include <mpipc/version.h>

#include <stdio.h>
#include <string.h>

static void test_runtime_version_matches_the_macros(void **state)
{
    (void)state;
    assert_int_equal(mp_version(), MP_VERSION);
    assert_int_equal(mp_version(),
                     MP_MAKE_VERSION(MP_VERSION_MAJOR, MP_VERSION_MINOR, MP_VERSION_PATCH));
    assert_non_null(mp_version_string());
    assert_string_equal(mp_version_string(), MP_VERSION_STRING);
    char spelled[32];
    snprintf(spelled, sizeof spelled, "%d.%d.%d", MP_VERSION_MAJOR, MP_VERSION_MINOR,
             MP_VERSION_PATCH);
    assert_string_equal(mp_version_string(), spelled);
    /* The same static string every time. */
    assert_ptr_equal(mp_version_string(), mp_version_string());
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runtime_version_matches_the_macros),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
