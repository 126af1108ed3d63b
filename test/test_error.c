/*
 * test_error.c - the names and descriptions of every error code libnea
 * returns (error.c): libnea's own codes, generated from NEA_ERRNO_MAP, and
 * libuv's passing through unchanged.
 */
#include "nea.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

/* --- error names ---------------------------------------------------------- */

static void test_error_names(void **state)
{
    static const struct {
        int code;
        const char *name;
    } codes[] = {
        {NEA_EINVAL_CONFIG, "NEA_EINVAL_CONFIG"},
        {NEA_EOVERFLOW, "NEA_EOVERFLOW"},
        {NEA_EOVERLIMIT, "NEA_EOVERLIMIT"},
        {NEA_EARENA_SMALL, "NEA_EARENA_SMALL"},
        {NEA_ENOMEM, "NEA_ENOMEM"},
        {NEA_EMLOCK, "NEA_EMLOCK"},
        {NEA_EROUTES, "NEA_EROUTES"},
        {NEA_ESTATE, "NEA_ESTATE"},
        {NEA_ERESPONDED, "NEA_ERESPONDED"},
        {NEA_EROUTE_DUP, "NEA_EROUTE_DUP"},
        {NEA_EROUTE_METHOD, "NEA_EROUTE_METHOD"},
        {NEA_EROUTE_PATH, "NEA_EROUTE_PATH"},
    };
    const size_t n = sizeof(codes) / sizeof(codes[0]);
    (void)state;

    for (size_t i = 0; i < n; i++) {
        const char *msg = nea_strerror(codes[i].code);
        assert_string_equal(nea_err_name(codes[i].code), codes[i].name);
        assert_non_null(msg);
        assert_true(strlen(msg) > 0);
        /* Not libuv's fallback ("Unknown system error -30001", which libuv
         * allocates): libnea's codes are outside libuv's range and named here. */
        assert_true(codes[i].code <= -30000);
        assert_null(strstr(msg, "nknown"));
        /* Descriptions are distinct. */
        for (size_t j = 0; j < i; j++) {
            assert_string_not_equal(msg, nea_strerror(codes[j].code));
        }
        /* Static strings: the same pointer every time. */
        assert_ptr_equal(msg, nea_strerror(codes[i].code));
    }
    assert_string_equal(nea_strerror(NEA_EMLOCK),
                        "cannot lock the reservation in memory (RLIMIT_MEMLOCK too low?)");
    /* libuv codes pass through unchanged. */
    assert_string_equal(nea_strerror(UV_EINVAL), uv_strerror(UV_EINVAL));
    assert_string_equal(nea_err_name(UV_EINVAL), "EINVAL");
    assert_string_equal(nea_err_name(UV_ENOMEM), "ENOMEM");
    assert_string_equal(nea_strerror(UV_EADDRINUSE), uv_strerror(UV_EADDRINUSE));
    assert_string_equal(nea_err_name(0), "OK");
    assert_true(strlen(nea_strerror(0)) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
