/*
 * arena.c - bump allocation inside one fixed-size arena.
 *
 * An arena is a contiguous run of `size` bytes inside the reservation.
 * Allocation advances `used`; nothing is freed individually; reset drops
 * everything at once and applies the scrub policy to the bytes that were
 * handed out (peak), so the cost of scrubbing is proportional to use, not to
 * arena size. The most recent allocation can grow or shrink in place.
 *
 * Under AddressSanitizer or Valgrind, bytes not currently handed out are
 * poisoned, so an overrun from one allocation into padding or unused arena
 * space is reported even though it stays inside the mapping.
 */
#include "arena.h"

#include <string.h>

#define SCRUB_POISON_BYTE 0xDB

void nea__arena_init(nea__arena *a, char *base, size_t size, nea__fault *fault)
{
    a->base = base;
    a->size = size;
    a->used = 0;
    a->peak = 0;
    a->last = 0;
    a->next_free = NULL;
    a->fault = fault;
    NEA__POISON(base, size);
}

void *nea__arena_alloc(nea__arena *a, size_t n, size_t align)
{
    /* Align the address, not the offset: an arena ends at its guard page, so
     * its base has no alignment of its own. */
    uintptr_t cur = (uintptr_t)(a->base + a->used);
    size_t start = a->used + (size_t)(NEA__ROUND_UP(cur, align) - cur);
    /* start may exceed size after alignment: check before subtracting. */
    if (start > a->size || n > a->size - start || nea__fault_hit(a->fault, NEA__FAULT_ARENA)) {
        return NULL;
    }
    a->last = start;
    a->used = start + n;
    if (a->used > a->peak) {
        a->peak = a->used;
    }
    NEA__UNPOISON(a->base + start, n);
    return a->base + start;
}

void *nea__arena_grow(nea__arena *a, void *p, size_t n)
{
    size_t off;
    if (p == NULL) {
        return NULL;
    }
    off = (size_t)((char *)p - a->base);
    if (off != a->last || n > a->size - off) {
        return NULL;
    }
    if (off + n > a->used) {
        NEA__UNPOISON(a->base + a->used, off + n - a->used);
    } else {
        NEA__POISON(a->base + off + n, a->used - off - n);
    }
    a->used = off + n;
    if (a->used > a->peak) {
        a->peak = a->used;
    }
    return p;
}

size_t nea__arena_available(const nea__arena *a)
{
    return a->size - a->used;
}

void nea__arena_rollback(nea__arena *a, size_t mark)
{
    if (mark < a->used) {
        NEA__POISON(a->base + mark, a->used - mark);
        a->used = mark;
        a->last = mark;
    }
}

void nea__arena_reset(nea__arena *a, int scrub)
{
    if (scrub != NEA_SCRUB_NONE && a->peak > 0) {
        NEA__UNPOISON(a->base, a->peak);
        memset(a->base, scrub == NEA_SCRUB_ZERO ? 0 : SCRUB_POISON_BYTE, a->peak);
    }
    NEA__POISON(a->base, a->size);
    a->used = 0;
    a->last = 0;
    a->peak = 0;
}
