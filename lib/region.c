/*
 * region.c - the one anonymous mapping a server lives in.
 *
 * nea_server_new has the whole reservation prepared here, once, in this
 * order: map (committed when prefaulting or locking), protect the guard pages
 * (PROT_NONE holes after every arena, so an overrun faults instead of
 * corrupting a neighbour, and which are never made resident), touch every
 * other page (prefault: nothing can be refused later and the OOM killer has
 * nothing new to find), lock. mlock over a PROT_NONE page fails and guard
 * pages must never become resident: touch and lock walk the usable ranges
 * only. With workers the mapping holds one identical slab per worker, and
 * each step walks every slab. Nothing else in libnea maps or unmaps memory.
 */
#include "region.h"

#include "log.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int map(nea__region *r, size_t size, bool commit, nea__fault *fault)
{
    /* Without commit the kernel may overcommit; with it (prefault or lock)
     * the whole reservation is charged now, so it fails here or never. */
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | (commit ? 0 : MAP_NORESERVE);
    void *p;

    memset(r, 0, sizeof(*r));
    r->page = (size_t)sysconf(_SC_PAGESIZE);
    if (nea__fault_hit(fault, NEA__FAULT_MAP)) {
        return UV_ENOMEM;
    }
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (p == MAP_FAILED) {
        return -errno;
    }
    r->base = p;
    r->size = size;
    return 0;
}

static int guard(nea__region *r, void *addr, size_t len, nea__fault *fault)
{
    (void)r;
    if (nea__fault_hit(fault, NEA__FAULT_GUARD)) {
        return UV_ENOMEM;
    }
    return mprotect(addr, len, PROT_NONE) == 0 ? 0 : -errno;
}

static int touch(nea__region *r, void *addr, size_t len, nea__fault *fault)
{
    (void)fault;
    /* Read and write back one byte a page: resident and writable, and
     * whatever was already stored there is kept. */
    for (size_t off = 0; off < len; off += r->page) {
        volatile char *b = (char *)addr + off;
        *b = *b;
    }
    return 0;
}

static int lock(nea__region *r, void *addr, size_t len, nea__fault *fault)
{
    (void)r;
    if (nea__fault_hit(fault, NEA__FAULT_LOCK)) {
        return NEA_EMLOCK;
    }
    if (mlock(addr, len) != 0) {
        int err = errno;
        return err == ENOMEM || err == EPERM || err == EAGAIN ? NEA_EMLOCK : -err;
    }
    return 0;
}

/* Applies fn to every part of the reservation that is not a guard page:
 * in each worker's slab, the fixed part with the connection slots, then each
 * arena's span. */
static int each_usable_range(nea__region *r, const nea_plan *p, const nea__layout *l,
                             nea__fault *fault,
                             int (*fn)(nea__region *, void *, size_t, nea__fault *))
{
    int rc = 0;
    for (unsigned w = 0; rc == 0 && w < p->workers; w++) {
        char *slab = r->base + nea__plan_slab(p, w);
        rc = fn(r, slab, l->classes[0].off, fault);
        for (unsigned k = 0; k < p->class_count; k++) {
            size_t span = nea__plan_span(p, p->classes[k].size);
            for (unsigned i = 0; rc == 0 && i < p->classes[k].count; i++) {
                rc = fn(r, slab + nea__plan_arena(p, l, k, i).span, span, fault);
            }
        }
    }
    if (rc == 0 && p->tls_cache_bytes > 0) {
        rc = fn(r, r->base + l->tls_server_off, p->tls_cache_bytes, fault); /* after the slabs */
    }
    return rc;
}

/* Protects the guard page after every arena of every class, in every
 * worker's slab. */
static int guard_all(nea__region *r, const nea_plan *p, const nea__layout *l, const nea_config *cfg,
                     nea__fault *fault)
{
    int rc = 0;
    for (unsigned w = 0; w < p->workers; w++) {
        char *slab = r->base + nea__plan_slab(p, w);
        for (unsigned k = 0; k < p->class_count; k++) {
            for (unsigned i = 0; i < p->classes[k].count; i++) {
                rc = guard(r, slab + nea__plan_arena(p, l, k, i).guard, p->page_size, fault);
                if (rc != 0) {
                    nea__log(cfg, NEA_LOG_ERROR,
                             "cannot protect guard page %u of class %u of worker %u: %s "
                             "(vm.max_map_count too low for %u x %u arenas? set guard_pages = 0)",
                             i, k, w, nea_strerror(rc), p->workers, p->arena_total);
                    return rc;
                }
            }
        }
    }
    return 0;
}

int nea__region_prepare(nea__region *r, const nea_plan *p, const nea__layout *l,
                        const nea_config *cfg, nea__fault *fault)
{
    int rc = map(r, p->total, cfg->prefault || cfg->lock_memory, fault);

    if (rc != 0) {
        nea__log(cfg, NEA_LOG_ERROR, "cannot reserve %zu bytes: %s", p->total, nea_strerror(rc));
        return rc;
    }
    if (cfg->guard_pages && (rc = guard_all(r, p, l, cfg, fault)) != 0) {
        nea__region_unmap(r);
        return rc;
    }
    if (cfg->prefault) {
        (void)each_usable_range(r, p, l, fault, touch);
    }
    if (cfg->lock_memory && (rc = each_usable_range(r, p, l, fault, lock)) != 0) {
        nea__log(cfg, NEA_LOG_ERROR, "cannot lock %zu bytes: %s", p->total, nea_strerror(rc));
        nea__region_unmap(r);
        return rc;
    }
    r->locked = cfg->lock_memory != 0;
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
