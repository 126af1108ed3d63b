/*
 * nea-heapguard.c - the heap guard: a preloadable library that reports every
 * libc allocation made while libnea handler code runs.
 *
 * Handlers must allocate only from their request's arena (handler rule 1);
 * a library left on its default malloc breaks that silently. Preloaded
 * (LD_PRELOAD=libnea_heapguard.so) or linked ahead of libc, this library
 * interposes malloc, calloc, realloc and the aligned allocators, forwards
 * each to glibc's __libc_* entry point, and first asks libnea whether a
 * protected frame is active on the calling thread (nea_req_current). When
 * one is, it writes the call, its size, the request's method and path and a
 * backtrace to stderr, then aborts (NEA_HEAPGUARD=abort, the default) or
 * carries on (NEA_HEAPGUARD=report; read at each report). For tests and debugging only: it is
 * never part of libnea, and costs nothing unless preloaded.
 *
 * libnea's functions are weak references resolved at load time: from
 * libnea.so, or from an executable that links libnea statically and exports
 * its symbols (-rdynamic, CMake ENABLE_EXPORTS). Without them the guard is
 * inert (nea_heapguard_active() returns 0).
 *
 * Reporting must not allocate: the report is formatted into a static buffer
 * and written with write(2); backtrace() allocates on its first call (it
 * loads libgcc_s), so the constructor makes that call, and a thread-local
 * flag lets allocations made while reporting pass.
 */
#include <nea.h>

#include <execinfo.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t m);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t align, size_t n);
extern void *__libc_valloc(size_t n);

#pragma weak nea_req_current
#pragma weak nea_req_method
#pragma weak nea_req_path

/* Exported for tests (looked up or linked directly). */
unsigned long nea_heapguard_hits(void);
const char *nea_heapguard_report(void);
int nea_heapguard_active(void);

static __thread int reporting __attribute__((tls_model("initial-exec")));
static unsigned long hits;
static char report[512];

__attribute__((constructor)) static void heapguard_init(void)
{
    void *frame;
    reporting = 1;
    (void)backtrace(&frame, 1);
    reporting = 0;
}

static void write_all(const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w <= 0) {
            return;
        }
        s += w;
        n -= (size_t)w;
    }
}

static void check(const char *fn, size_t n)
{
    void *frames[48];
    const char *mode, *method, *path;
    nea_req *req;
    int depth, len;

    if (reporting || nea_req_current == NULL || (req = nea_req_current()) == NULL) {
        return;
    }
    reporting = 1;
    __atomic_add_fetch(&hits, 1, __ATOMIC_RELAXED);
    method = nea_req_method(req);
    path = nea_req_path(req);
    len = snprintf(report, sizeof(report),
                   "libnea heap guard: %s(%zu) called inside handler code of %s %s "
                   "(handlers allocate from their arena; see docs/guide.md, \"Using C "
                   "libraries inside handlers\")\n",
                   fn, n, method != NULL ? method : "-", path != NULL ? path : "-");
    write_all(report, len > 0 && (size_t)len < sizeof(report) ? (size_t)len : strlen(report));
    depth = backtrace(frames, (int)(sizeof(frames) / sizeof(frames[0])));
    backtrace_symbols_fd(frames, depth, STDERR_FILENO);
    reporting = 0;
    /* Read at each report (getenv does not allocate), so a test can switch. */
    mode = getenv("NEA_HEAPGUARD");
    if (mode == NULL || strcmp(mode, "report") != 0) {
        abort();
    }
}

unsigned long nea_heapguard_hits(void)
{
    return __atomic_load_n(&hits, __ATOMIC_RELAXED);
}

const char *nea_heapguard_report(void)
{
    return report;
}

int nea_heapguard_active(void)
{
    return nea_req_current != NULL;
}

void *malloc(size_t n)
{
    check("malloc", n);
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
    check("calloc", n * m);
    return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
    check("realloc", n);
    return __libc_realloc(p, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    void *p;
    check("posix_memalign", n);
    p = __libc_memalign(align, n);
    if (p == NULL) {
        return 12; /* ENOMEM */
    }
    *out = p;
    return 0;
}

void *aligned_alloc(size_t align, size_t n)
{
    check("aligned_alloc", n);
    return __libc_memalign(align, n);
}

void *memalign(size_t align, size_t n)
{
    check("memalign", n);
    return __libc_memalign(align, n);
}

void *valloc(size_t n)
{
    check("valloc", n);
    return __libc_valloc(n);
}
