/*
 * error.c - names and descriptions of libnea's error codes.
 *
 * libnea returns libuv's negative errno values unchanged and its own codes
 * (NEA_E*, -30000 and below) for conditions libuv has no word for. Both
 * functions return static strings and never allocate.
 */
#include "internal.h"

#include <string.h>

#define NEA_ERRORS(X)                                                                              \
    X(NEA_EINVAL_CONFIG, "invalid configuration")                                                  \
    X(NEA_EOVERFLOW, "memory plan overflows size_t")                                               \
    X(NEA_EOVERLIMIT, "memory plan exceeds memory_limit")                                          \
    X(NEA_EARENA_SMALL, "arena_size too small for a request head")                                 \
    X(NEA_ENOMEM, "request arena exhausted")                                                       \
    X(NEA_EMLOCK, "cannot lock the reservation in memory (RLIMIT_MEMLOCK too low?)")               \
    X(NEA_EROUTES, "route table full (raise max_routes)")                                          \
    X(NEA_ESTATE, "operation not valid in the current state")                                      \
    X(NEA_ERESPONDED, "request already has a response")

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
#define X(code, text)                                                                              \
    case code:                                                                                     \
        return text;
        NEA_ERRORS(X)
#undef X
    case 0:
        return "success";
    default:
        return known_to_libuv(err) ? uv_strerror(err) : "unknown error";
    }
}

const char *nea_err_name(int err)
{
    switch (err) {
#define X(code, text)                                                                              \
    case code:                                                                                     \
        return #code;
        NEA_ERRORS(X)
#undef X
    case 0:
        return "OK";
    default:
        return known_to_libuv(err) ? uv_err_name(err) : "UNKNOWN";
    }
}
