/*
 * alloccount.so: an LD_PRELOAD interposer that counts heap calls.
 *
 *   NEA_ALLOCCOUNT_FILE=/tmp/counts LD_PRELOAD=./alloccount.so prog ...
 *   kill -USR1 <pid>      # writes the current counts to /tmp/counts
 *
 * Every malloc, calloc, realloc, reallocarray, free, posix_memalign,
 * aligned_alloc, memalign, valloc and pvalloc call is counted (free(NULL)
 * separately, as it allocates nothing) and forwarded to the next definition
 * (glibc's), found with dlsym(RTLD_NEXT). The counters are atomics in static
 * storage; SIGUSR1 writes them as "name count" lines to FILE.tmp with
 * open/write/close and renames it to FILE, so that a reader that waits for
 * FILE to appear sees a complete snapshot. Nothing on that path touches the
 * heap, so taking a snapshot does not disturb the counts.
 *
 * Bootstrap: dlsym itself may call calloc/malloc (glibc allocates its
 * dlerror state) before the real functions are known. Such calls are served
 * from a small static buffer; free() of a pointer into that buffer is a
 * no-op and realloc() of one moves the data to the real heap.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    C_MALLOC,
    C_CALLOC,
    C_REALLOC,
    C_REALLOCARRAY,
    C_FREE,
    C_FREE_NULL,
    C_POSIX_MEMALIGN,
    C_ALIGNED_ALLOC,
    C_MEMALIGN,
    C_VALLOC,
    C_PVALLOC,
    C_BYTES, /* total bytes requested by the allocating calls */
    C_COUNT
};

static const char *const names[C_COUNT] = {
    "malloc", "calloc", "realloc", "reallocarray", "free", "free_null", "posix_memalign",
    "aligned_alloc", "memalign", "valloc", "pvalloc", "bytes_requested",
};

static unsigned long counts[C_COUNT];

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void *(*real_reallocarray)(void *, size_t, size_t);
static void (*real_free)(void *);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);
static void *(*real_memalign)(size_t, size_t);
static void *(*real_valloc)(size_t);
static void *(*real_pvalloc)(size_t);

static int resolving;
static char out_path[4096];
static char tmp_path[4096 + 8];

/* --- bootstrap buffer -------------------------------------------------- */

static _Alignas(16) unsigned char boot_buf[16384];
static size_t boot_used;

static int is_boot(const void *p)
{
    return (const unsigned char *)p >= boot_buf && (const unsigned char *)p < boot_buf + sizeof boot_buf;
}

/* Each block is a 16-byte header holding its size, then the data. */
static void *boot_alloc(size_t n)
{
    size_t need = 16 + ((n + 15) & ~(size_t)15);
    if (need > sizeof boot_buf - boot_used)
        return NULL;
    unsigned char *p = boot_buf + boot_used;
    boot_used += need;
    memcpy(p, &n, sizeof n);
    memset(p + 16, 0, n);
    return p + 16;
}

static size_t boot_size(const void *p)
{
    size_t n;
    memcpy(&n, (const unsigned char *)p - 16, sizeof n);
    return n;
}

/* dlsym returns an object pointer; copying its bytes into the function pointer
 * is the POSIX-sanctioned conversion without an ISO C cast. */
#define RESOLVE(fn, name)                         \
    do {                                          \
        void *sym_ = dlsym(RTLD_NEXT, name);      \
        memcpy(&(fn), &sym_, sizeof(fn));         \
    } while (0)

static void resolve(void)
{
    if (real_malloc || resolving)
        return;
    resolving = 1;
    RESOLVE(real_calloc, "calloc");
    RESOLVE(real_realloc, "realloc");
    RESOLVE(real_reallocarray, "reallocarray");
    RESOLVE(real_free, "free");
    RESOLVE(real_posix_memalign, "posix_memalign");
    RESOLVE(real_aligned_alloc, "aligned_alloc");
    RESOLVE(real_memalign, "memalign");
    RESOLVE(real_valloc, "valloc");
    RESOLVE(real_pvalloc, "pvalloc");
    /* malloc last: it is the "resolved" flag. */
    RESOLVE(real_malloc, "malloc");
    resolving = 0;
}

static inline void bump(int which, size_t bytes)
{
    __atomic_fetch_add(&counts[which], 1, __ATOMIC_RELAXED);
    if (bytes)
        __atomic_fetch_add(&counts[C_BYTES], bytes, __ATOMIC_RELAXED);
}

/* --- the interposed functions ------------------------------------------ */

void *malloc(size_t n)
{
    bump(C_MALLOC, n);
    if (!real_malloc) {
        resolve();
        if (!real_malloc)
            return boot_alloc(n);
    }
    return real_malloc(n);
}

void *calloc(size_t nmemb, size_t size)
{
    size_t n;
    if (__builtin_mul_overflow(nmemb, size, &n)) {
        errno = ENOMEM;
        return NULL;
    }
    bump(C_CALLOC, n);
    if (!real_calloc) {
        resolve();
        if (!real_calloc)
            return boot_alloc(n);
    }
    return real_calloc(nmemb, size);
}

void *realloc(void *p, size_t n)
{
    bump(C_REALLOC, n);
    if (!real_realloc) {
        resolve();
        if (!real_realloc) {
            void *q = boot_alloc(n);
            if (q && p)
                memcpy(q, p, boot_size(p) < n ? boot_size(p) : n);
            return q;
        }
    }
    if (p && is_boot(p)) {
        void *q = real_malloc(n);
        if (q)
            memcpy(q, p, boot_size(p) < n ? boot_size(p) : n);
        return q;
    }
    return real_realloc(p, n);
}

void *reallocarray(void *p, size_t nmemb, size_t size)
{
    size_t n;
    if (__builtin_mul_overflow(nmemb, size, &n)) {
        errno = ENOMEM;
        return NULL;
    }
    bump(C_REALLOCARRAY, n);
    if (!real_reallocarray)
        resolve();
    if (!real_reallocarray || (p && is_boot(p))) {
        void *q = real_malloc ? real_malloc(n) : boot_alloc(n);
        if (q && p)
            memcpy(q, p, boot_size(p) < n ? boot_size(p) : n);
        return q;
    }
    return real_reallocarray(p, nmemb, size);
}

void free(void *p)
{
    if (!p) {
        bump(C_FREE_NULL, 0);
        return;
    }
    bump(C_FREE, 0);
    if (is_boot(p))
        return;
    if (!real_free)
        resolve();
    if (real_free)
        real_free(p);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    bump(C_POSIX_MEMALIGN, n);
    resolve();
    if (!real_posix_memalign)
        return ENOMEM;
    return real_posix_memalign(out, align, n);
}

void *aligned_alloc(size_t align, size_t n)
{
    bump(C_ALIGNED_ALLOC, n);
    resolve();
    if (!real_aligned_alloc) {
        errno = ENOMEM;
        return NULL;
    }
    return real_aligned_alloc(align, n);
}

void *memalign(size_t align, size_t n)
{
    bump(C_MEMALIGN, n);
    resolve();
    if (!real_memalign) {
        errno = ENOMEM;
        return NULL;
    }
    return real_memalign(align, n);
}

void *valloc(size_t n)
{
    bump(C_VALLOC, n);
    resolve();
    if (!real_valloc) {
        errno = ENOMEM;
        return NULL;
    }
    return real_valloc(n);
}

void *pvalloc(size_t n)
{
    bump(C_PVALLOC, n);
    resolve();
    if (!real_pvalloc) {
        errno = ENOMEM;
        return NULL;
    }
    return real_pvalloc(n);
}

/* --- snapshot on SIGUSR1 ------------------------------------------------ */

static size_t put_str(char *dst, const char *s)
{
    size_t n = strlen(s);
    memcpy(dst, s, n);
    return n;
}

static size_t put_ulong(char *dst, unsigned long v)
{
    char tmp[24];
    size_t n = 0, i;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (i = 0; i < n; i++)
        dst[i] = tmp[n - 1 - i];
    return n;
}

static void on_usr1(int sig)
{
    char buf[C_COUNT * 48];
    size_t len = 0, off = 0;
    int saved = errno, fd;
    (void)sig;

    if (!out_path[0])
        goto out;
    for (int i = 0; i < C_COUNT; i++) {
        len += put_str(buf + len, names[i]);
        buf[len++] = ' ';
        len += put_ulong(buf + len, __atomic_load_n(&counts[i], __ATOMIC_RELAXED));
        buf[len++] = '\n';
    }
    fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        goto out;
    while (off < len) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    close(fd);
    if (off == len)
        rename(tmp_path, out_path);
    else
        unlink(tmp_path);
out:
    errno = saved;
}

__attribute__((constructor)) static void alloccount_init(void)
{
    const char *path = getenv("NEA_ALLOCCOUNT_FILE");
    struct sigaction sa;

    resolve();
    if (path && strlen(path) < sizeof out_path) {
        strcpy(out_path, path);
        strcpy(tmp_path, path);
        strcat(tmp_path, ".tmp");
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
}
