/*
 * checkers.h - what the unit tests need to know about the memory checkers
 * they may run under (AddressSanitizer, Valgrind), in one place.
 *
 * libnea poisons arena memory no request owns; a test that inspects such
 * bytes on purpose (to check scrubbing, say) calls expose() first. Tests
 * that fork or fault on purpose skip themselves under a checker that would
 * report instead of letting the fault happen.
 */
#ifndef NEA_TEST_CHECKERS_H
#define NEA_TEST_CHECKERS_H

#include <stdbool.h>
#include <stddef.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define T_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define T_ASAN 1
#endif
#ifdef T_ASAN
#include <sanitizer/asan_interface.h>
#endif

#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>
#define T_VALGRIND_HEADERS 1
#endif
#endif

static inline bool under_valgrind(void)
{
#ifdef T_VALGRIND_HEADERS
    return RUNNING_ON_VALGRIND != 0;
#else
    return false;
#endif
}

static inline bool under_asan(void)
{
#ifdef T_ASAN
    return true;
#else
    return false;
#endif
}

/* Makes n bytes at p readable to the checkers, whatever libnea poisoned. */
static inline void expose(const void *p, size_t n)
{
#ifdef T_ASAN
    ASAN_UNPOISON_MEMORY_REGION(p, n);
#endif
#ifdef T_VALGRIND_HEADERS
    (void)VALGRIND_MAKE_MEM_DEFINED(p, n);
#endif
    (void)p;
    (void)n;
}

#endif
