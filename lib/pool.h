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

/* Arena i occupies the `span` (page-rounded) bytes at first + i * stride and
 * ends exactly at the span's end; `size` bytes of it are usable. */
void nea__pool_init(nea__pool *p, nea__arena *table, char *first, unsigned count, size_t stride,
                    size_t span, size_t size, int scrub, nea__fault *fault);
/* A free arena, or NULL when every arena is in use. */
nea__arena *nea__pool_acquire(nea__pool *p);
/* Scrubs a (per the policy) and makes it free again. */
void nea__pool_release(nea__pool *p, nea__arena *a);

#endif /* NEA_POOL_H */
