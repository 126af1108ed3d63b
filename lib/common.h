/*
 * common.h - what every libnea file shares: alignment arithmetic and the
 * poisoning hooks for AddressSanitizer and Valgrind. Macros only; no file
 * owns state here.
 *
 * Poisoning: bytes of the reservation that no request currently owns are
 * marked inaccessible (arena.c), so overruns inside the one mapping are
 * still caught by the memory checkers.
 *
 * Buffers: uv_buf_init takes an unsigned int length, which truncates a
 * piece of 4 GiB or more; every buffer libnea hands to libuv is built with
 * nea__buf, whose length is the size_t libuv stores on Unix.
 */
#ifndef NEA_COMMON_H
#define NEA_COMMON_H

#include "nea.h"

#include <stdalign.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NEA_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define NEA_ASAN 1
#endif

#ifdef NEA_ASAN
#include <sanitizer/asan_interface.h>
#define NEA__POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define NEA__UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#elif defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define NEA__POISON(p, n) VALGRIND_MAKE_MEM_NOACCESS((p), (n))
#define NEA__UNPOISON(p, n) VALGRIND_MAKE_MEM_UNDEFINED((p), (n))
#endif
#endif
#ifndef NEA__POISON
#define NEA__POISON(p, n) ((void)(p), (void)(n))
#define NEA__UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define NEA__ALIGN ((size_t)alignof(max_align_t))
#define NEA__ROUND_UP(x, a) (((x) + ((a)-1)) & ~((size_t)(a)-1))

static inline uv_buf_t nea__buf(const void *base, size_t len)
{
    uv_buf_t b;
    b.base = (char *)base;
    b.len = len;
    return b;
}

/* A public function given a NULL request or server: a host bug that
 * would otherwise crash somewhere less clear. Aborts naming the function. */
_Noreturn void nea__null_arg(const char *fn, const char *what);
#define NEA__NEED(p, what)                                                                         \
    do {                                                                                           \
        if ((p) == NULL) {                                                                         \
            nea__null_arg(__func__, (what));                                                       \
        }                                                                                          \
    } while (0)

/* A configuration or input refused: formats the reason into errbuf (when
 * it is not NULL and errlen > 0) and returns err, so a check reads
 * `return nea__refuse(NEA_EINVAL_CONFIG, errbuf, errlen, "...", ...);`. */
int nea__refuse(int err, char *errbuf, size_t errlen, const char *fmt, ...) NEA_PRINTF(4, 5);

#endif /* NEA_COMMON_H */
