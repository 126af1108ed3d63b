/*
 * arena.h - bump allocation inside one fixed-size arena (see arena.c).
 */
#ifndef NEA_ARENA_H
#define NEA_ARENA_H

#include "common.h"
#include "fault.h"

typedef struct nea__arena {
    char *base;
    size_t size; /* usable bytes */
    size_t used; /* bump offset */
    size_t peak; /* highest `used` since the last reset */
    size_t last; /* offset of the most recent allocation (for grow) */
    struct nea__arena *next_free;
    unsigned cls;      /* its size class: the server's pool it returns to */
    /* Bumped every time the arena returns to its pool: a reference to the
     * request it held names that generation, and reads as gone after it. */
    uint64_t gen;
    /* The requests' shared state of the server the arena belongs to (set
     * once at start; req.c finds a reference's loop through it). */
    const void *home;
    nea__fault *fault; /* test builds: the owning server's plan; else unused */
} nea__arena;

void nea__arena_init(nea__arena *a, char *base, size_t size, nea__fault *fault);
/* NULL on exhaustion (or injected failure); never unwinds. */
void *nea__arena_alloc(nea__arena *a, size_t n, size_t align);
/* Resizes p, the most recent allocation, to n bytes in place; NULL when p is
 * not the most recent allocation or n does not fit (p is then unchanged). */
void *nea__arena_grow(nea__arena *a, void *p, size_t n);
size_t nea__arena_available(const nea__arena *a);
/* Drops every allocation past `mark` (a previous `used`). */
void nea__arena_rollback(nea__arena *a, size_t mark);
/* Drops everything and applies the scrub policy to the bytes that were used. */
void nea__arena_reset(nea__arena *a, int scrub);

#endif /* NEA_ARENA_H */
