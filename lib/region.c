/*
 * region.c - the one anonymous mapping a server lives in.
 *
 * nea_server_new maps the whole reservation here, once, in this order: map
 * (committed when prefaulting or locking), protect the guard pages (PROT_NONE
 * holes between arenas, so an overrun faults instead of corrupting a
 * neighbour, and which are never made resident), touch every other page
 * (prefault: nothing can be refused later and the OOM killer has nothing new
 * to find), lock. Nothing else in libnea maps or unmaps memory.
 */
#include "internal.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int nea__region_map(nea__region *r, size_t size, bool commit)
{
    /* Without commit the kernel may overcommit; with it (prefault or lock)
     * the whole reservation is charged now, so it fails here or never. */
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | (commit ? 0 : MAP_NORESERVE);
    void *p;

    memset(r, 0, sizeof(*r));
    r->page = (size_t)sysconf(_SC_PAGESIZE);
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (p == MAP_FAILED) {
        return -errno;
    }
    r->base = p;
    r->size = size;
    return 0;
}

int nea__region_guard(nea__region *r, void *addr, size_t len)
{
    (void)r;
    return mprotect(addr, len, PROT_NONE) == 0 ? 0 : -errno;
}

int nea__region_touch(nea__region *r, void *addr, size_t len)
{
    /* Read and write back one byte a page: resident and writable, and
     * whatever was already stored there is kept. */
    for (size_t off = 0; off < len; off += r->page) {
        volatile char *b = (char *)addr + off;
        *b = *b;
    }
    return 0;
}

int nea__region_lock(nea__region *r, void *addr, size_t len)
{
    (void)r;
    if (mlock(addr, len) != 0) {
        int err = errno;
        return err == ENOMEM || err == EPERM || err == EAGAIN ? NEA_EMLOCK : -err;
    }
    return 0;
}

void nea__region_unmap(nea__region *r)
{
    if (r->base != NULL) {
        /* The sanitizer's shadow outlives the mapping: clear it, or the
         * next mapping at this address starts out poisoned. */
        NEA__UNPOISON(r->base, r->size);
        munmap(r->base, r->size);
        r->base = NULL;
    }
}
