/*
 * region.c - the one anonymous mapping a server lives in.
 *
 * nea_server_new maps the whole reservation here, once. Pre-faulting makes
 * every page resident at start (so the kernel cannot refuse a page later and
 * the OOM killer has nothing new to find); locking pins it; guard pages are
 * PROT_NONE holes between arenas so an overrun faults instead of corrupting
 * a neighbour. Nothing else in libnea maps or unmaps memory.
 */
#include "internal.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int nea__region_map(nea__region *r, size_t size, bool prefault, bool lock)
{
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
    void *p;

    memset(r, 0, sizeof(*r));
    r->page = (size_t)sysconf(_SC_PAGESIZE);
    if (prefault) {
        /* Reserve swap/commit up front: a pre-faulted region must not be
         * overcommitted. */
        flags = (flags & ~MAP_NORESERVE) | MAP_POPULATE;
    }
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (p == MAP_FAILED) {
        return -errno;
    }
    r->base = p;
    r->size = size;
    if (lock) {
        if (mlock(p, size) != 0) {
            int err = errno;
            munmap(p, size);
            r->base = NULL;
            return err == ENOMEM || err == EPERM || err == EAGAIN ? NEA_EMLOCK : -err;
        }
        r->locked = true;
    }
    return 0;
}

int nea__region_guard(nea__region *r, void *addr, size_t len)
{
    (void)r;
    return mprotect(addr, len, PROT_NONE) == 0 ? 0 : -errno;
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
