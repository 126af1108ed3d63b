/*
 * test_version.c - nea_version and nea_version_string (version.c): the
 * library a program runs with reports the NEA_VERSION_* it was built from,
 * as a number and as a string, and both agree
 * with the version CMake installs the package as.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "nea.h"

static void test_version_number(void **state)
{
    (void)state;
    assert_int_equal(nea_version(), NEA_VERSION_HEX);
    assert_int_equal(nea_version() >> 16, NEA_VERSION_MAJOR);
    assert_int_equal((nea_version() >> 8) & 0xff, NEA_VERSION_MINOR);
    assert_int_equal(nea_version() & 0xff, NEA_VERSION_PATCH);
}

static void test_version_string(void **state)
{
    char want[32];
    (void)state;
    snprintf(want, sizeof(want), "%d.%d.%d", NEA_VERSION_MAJOR, NEA_VERSION_MINOR,
             NEA_VERSION_PATCH);
    assert_string_equal(nea_version_string(), want);
    assert_ptr_equal(nea_version_string(), nea_version_string()); /* static */
    /* The header and the CMake project (the installed package's version,
     * the shared library's VERSION) must move together. */
    assert_string_equal(nea_version_string(), NEA_PROJECT_VERSION);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version_number),
        cmocka_unit_test(test_version_string),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
