/*
 * pool.c - the fixed set of arenas and its free list.
 *
 * Invariants: every arena is either on the free list or owned by exactly one
 * request; in_use + length(free list) == count. Acquire and release are O(1)
 * (LIFO, so a recently used, cache-warm arena is reused first). Where an
 * arena sits is the plan's business (plan.c), waiting for one admission's
 * (admission.c): the pool only hands out and takes back.
 */
#include "pool.h"

void nea__pool_init(nea__pool *p, nea__arena *table, unsigned count, int scrub)
{
    p->arenas = table;
    p->free = NULL;
    p->count = count;
    p->in_use = 0;
    p->high_water = 0;
    p->peak_bytes = 0;
    p->scrub = scrub;
    /* Build the free list backwards so arena 0 is handed out first. */
    for (unsigned i = count; i-- > 0;) {
        table[i].next_free = p->free;
        p->free = &table[i];
    }
}

nea__arena *nea__pool_acquire(nea__pool *p)
{
    nea__arena *a = p->free;
    if (a == NULL) {
        return NULL;
    }
    p->free = a->next_free;
    a->next_free = NULL;
    if (++p->in_use > p->high_water) {
        p->high_water = p->in_use;
    }
    return a;
}

void nea__pool_release(nea__pool *p, nea__arena *a)
{
    if (a->peak > p->peak_bytes) {
        p->peak_bytes = a->peak;
    }
    nea__arena_reset(a, p->scrub);
    a->gen++; /* references to its last request now read as gone */
    a->next_free = p->free;
    p->free = a;
    p->in_use--;
}
