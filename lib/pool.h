/*
 * pool.h - the fixed set of arenas and its free list (see pool.c).
 */
#ifndef NEA_POOL_H
#define NEA_POOL_H

#include "arena.h"

typedef struct nea__pool {
    nea__arena *arenas;
    nea__arena *free;
    unsigned count;
    unsigned in_use;
    unsigned high_water;
    size_t peak_bytes;
    int scrub;
} nea__pool;

/* Takes the `count` arenas of table, each already placed (nea__arena_init
 * over the bytes the plan gives it), as free; arena 0 is handed out first. */
void nea__pool_init(nea__pool *p, nea__arena *table, unsigned count, int scrub);
/* A free arena, or NULL when every arena is in use. */
nea__arena *nea__pool_acquire(nea__pool *p);
/* Scrubs a (per the policy) and makes it free again. */
void nea__pool_release(nea__pool *p, nea__arena *a);

#endif /* NEA_POOL_H */
