/*
 * adapt.c - allocator adapters: C libraries that take allocation hooks
 * (jansson, cJSON, zlib, protobuf-c) allocate from the request's arena
 * instead of the heap, so a handler that uses them keeps the memory bound.
 *
 * Every block handed out here starts with a header naming its owner (the
 * request whose arena holds it, or NULL for a block from libc) and its size.
 * free and realloc get no request argument, so the header is how they find
 * the arena and how many bytes a copy must move. Blocks are never freed one
 * by one: free reclaims a block only when it is the most recent allocation
 * of its owner's arena (the common "allocate scratch, free it" pattern),
 * and realloc grows that same block in place; any other block stays until
 * the request ends, like everything else in the arena.
 *
 * The global-hook adapters (nea_arena_*) find the request through the
 * innermost protected frame of the calling thread (nea_req_current).
 * Outside any frame - a library used at startup, or freed from a defer -
 * they fall back to libc: such blocks are tagged owner NULL and go back to
 * libc wherever they are freed, and a libc block stays in libc when it is
 * reallocated inside a request (moving it into an arena would leave the
 * host holding memory that dies with the request). The per-object adapters
 * (zlib, protobuf-c) are given their request and always use its arena.
 *
 * Two tiers, as for nea_alloc and nea_try_alloc: the plain adapters unwind
 * on exhaustion (the request gets the out-of-memory 500, or NEA_ENOMEM from
 * nea_req_protect), the try adapters return NULL.
 */
#include "req.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

typedef struct block {
    alignas(max_align_t) nea_req *owner; /* NULL: the block came from libc */
    size_t size;                         /* bytes the caller asked for */
} block;

/* The payload after the header keeps the arena's alignment. */
_Static_assert(sizeof(block) % alignof(max_align_t) == 0, "block header breaks alignment");

static block *header(void *p)
{
    return (block *)p - 1;
}

/* n bytes with a header in req's arena; unwinds or returns NULL when it is
 * exhausted. */
static void *arena_block(nea_req *req, size_t n, bool unwinds, const char *what)
{
    block *b = NULL;
    if (unwinds) {
        nea__req_check_frame(req, what);
    }
    if (n <= SIZE_MAX - sizeof(block)) {
        b = nea__arena_alloc(req->arena, sizeof(block) + n, NEA__ALIGN);
    }
    if (b == NULL) {
        if (unwinds) {
            nea__req_unwind(req, n);
        }
        return NULL;
    }
    b->owner = req;
    b->size = n;
    return b + 1;
}

static void *libc_block(size_t n)
{
    block *b = n <= SIZE_MAX - sizeof(block) ? malloc(sizeof(block) + n) : NULL;
    if (b == NULL) {
        return NULL;
    }
    b->owner = NULL;
    b->size = n;
    return b + 1;
}

/* The running request's arena, or libc outside any protected frame. */
static void *current_block(size_t n, bool unwinds, const char *what)
{
    nea_req *req = nea_req_current();
    return req != NULL ? arena_block(req, n, unwinds, what) : libc_block(n);
}

static void *current_zeroed(size_t count, size_t size, bool unwinds, const char *what)
{
    size_t n;
    void *p;
    if (__builtin_mul_overflow(count, size, &n)) {
        nea_req *req = nea_req_current();
        if (unwinds && req != NULL) {
            nea__req_check_frame(req, what);
            nea__req_unwind(req, SIZE_MAX);
        }
        return NULL;
    }
    p = current_block(n, unwinds, what);
    if (p != NULL) {
        memset(p, 0, n);
    }
    return p;
}

static void block_free(void *p)
{
    block *b;
    nea__arena *a;
    if (p == NULL) {
        return;
    }
    b = header(p);
    if (b->owner == NULL) {
        free(b);
        return;
    }
    a = b->owner->arena;
    if ((uintptr_t)b == (uintptr_t)(a->base + a->last)) {
        nea__arena_rollback(a, a->last);
    }
}

static void *block_realloc(void *p, size_t n, bool unwinds, const char *what)
{
    block *b, *nb;
    void *q;
    if (p == NULL) {
        return current_block(n, unwinds, what);
    }
    b = header(p);
    if (b->owner == NULL) {
        nb = n <= SIZE_MAX - sizeof(block) ? realloc(b, sizeof(block) + n) : NULL;
        if (nb == NULL) {
            return NULL;
        }
        nb->size = n;
        return nb + 1;
    }
    /* In place when it is the arena's most recent block, or shrinking. */
    if ((n <= SIZE_MAX - sizeof(block) &&
         nea__arena_grow(b->owner->arena, b, sizeof(block) + n) != NULL) ||
        n <= b->size) {
        b->size = n;
        return p;
    }
    q = arena_block(b->owner, n, unwinds, what);
    if (q != NULL) {
        memcpy(q, p, b->size);
    }
    return q;
}

/* --- global hooks: the current request ----------------------------------- */

void *nea_arena_malloc(size_t n)
{
    return current_block(n, true, "nea_arena_malloc");
}

void *nea_arena_calloc(size_t count, size_t size)
{
    return current_zeroed(count, size, true, "nea_arena_calloc");
}

void *nea_arena_realloc(void *p, size_t n)
{
    return block_realloc(p, n, true, "nea_arena_realloc");
}

void *nea_arena_try_malloc(size_t n)
{
    return current_block(n, false, NULL);
}

void *nea_arena_try_calloc(size_t count, size_t size)
{
    return current_zeroed(count, size, false, NULL);
}

void *nea_arena_try_realloc(void *p, size_t n)
{
    return block_realloc(p, n, false, NULL);
}

void nea_arena_free(void *p)
{
    block_free(p);
}

/* --- per-object hooks: the request is the library's opaque pointer --------- */

static void *object_block(void *req, size_t count, size_t size, bool unwinds, const char *what)
{
    size_t n;
    if (__builtin_mul_overflow(count, size, &n)) {
        n = SIZE_MAX;
    }
    return arena_block(req, n, unwinds, what);
}

void *nea_zalloc(void *req, unsigned items, unsigned size)
{
    return object_block(req, items, size, true, "nea_zalloc");
}

void *nea_try_zalloc(void *req, unsigned items, unsigned size)
{
    return object_block(req, items, size, false, NULL);
}

void nea_zfree(void *req, void *p)
{
    (void)req;
    block_free(p);
}

void *nea_pbc_alloc(void *req, size_t n)
{
    return object_block(req, n, 1, true, "nea_pbc_alloc");
}

void *nea_try_pbc_alloc(void *req, size_t n)
{
    return object_block(req, n, 1, false, NULL);
}

void nea_pbc_free(void *req, void *p)
{
    (void)req;
    block_free(p);
}
