/*
 * error.c - names and descriptions of libnea's error codes.
 *
 * libnea returns libuv's negative errno values unchanged and its own codes
 * (NEA_E*, -30000 and below) for conditions libuv has no word for. Both
 * functions are generated from NEA_ERRNO_MAP in nea.h, return static strings
 * and never allocate.
 *
 * nea__refuse formats the reason a configuration or input is refused into
 * the caller's buffer, for every file that checks one.
 *
 * Host bugs that no error code can report (a NULL request or server given
 * to a public function) abort here with a message naming the function.
 */
#include "common.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void nea__null_arg(const char *fn, const char *what)
{
    fprintf(stderr, "libnea: %s called with a NULL %s\n", fn, what);
    abort();
}

int nea__refuse(int err, char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (errbuf != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errbuf, errlen, fmt, ap);
        va_end(ap);
    }
    return err;
}

/* libuv returns static strings for its own codes but allocates (and leaks)
 * a message for any other number: ask its buffer variant first. */
static bool known_to_libuv(int err)
{
    char buf[64];
    uv_err_name_r(err, buf, sizeof(buf));
    return strncmp(buf, "Unknown system error", 20) != 0;
}

const char *nea_strerror(int err)
{
    switch (err) {
#define NEA__ERRNO_TEXT(name, value, text)                                                         \
    case NEA_##name:                                                                               \
        return text;
        NEA_ERRNO_MAP(NEA__ERRNO_TEXT)
#undef NEA__ERRNO_TEXT
    case 0:
        return "success";
    default:
        return known_to_libuv(err) ? uv_strerror(err) : "unknown error";
    }
}

const char *nea_err_name(int err)
{
    switch (err) {
#define NEA__ERRNO_NAME(name, value, text)                                                         \
    case NEA_##name:                                                                               \
        return "NEA_" #name;
        NEA_ERRNO_MAP(NEA__ERRNO_NAME)
#undef NEA__ERRNO_NAME
    case 0:
        return "OK";
    default:
        return known_to_libuv(err) ? uv_err_name(err) : "UNKNOWN";
    }
}
