/*
 * test_arena.c - bump allocation, scrub, the arena pool and the region's
 * options (guard pages, prefault, mlock).
 *
 * Arena and pool functions are tested directly on buffers this file maps
 * itself (so every boundary is known exactly), then through a server, whose
 * reservation puts arenas next to guard pages. Faults are provoked in fork()ed
 * children; the parent only looks at how the child died.
 *
 * Under AddressSanitizer and Valgrind, libnea poisons arena bytes that are not
 * handed out. A test that reads arena bytes libnea has not handed out (to see
 * what a scrub left there) first exposes them with expose(), and a buffer this
 * file mapped is unpoisoned before it is unmapped.
 */
#include "server.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"

static char *map_buf(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    return p;
}

static void unmap_buf(char *p, size_t n)
{
    expose(p, n); /* do not leave poisoned shadow behind for the next mapping */
    assert_int_equal(munmap(p, n), 0);
}

static bool all_bytes(const char *p, size_t n, unsigned char v)
{
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)p[i] != v) {
            print_error("byte %zu is 0x%02x, expected 0x%02x\n", i, (unsigned char)p[i], v);
            return false;
        }
    }
    return true;
}

static bool aligned(const void *p, size_t a)
{
    return (uintptr_t)p % a == 0;
}

/* --- a bare arena on a buffer of our own ---------------------------------- */

#define RAW_SIZE ((size_t)16384)

typedef struct raw {
    char *buf;
    size_t len;
    nea__arena a;
} raw;

static int raw_setup(void **state)
{
    raw *r = calloc(1, sizeof(*r));
    r->len = RAW_SIZE;
    r->buf = map_buf(r->len);
    memset(r->buf, 0x11, r->len); /* what was there before the arena */
    nea__arena_init(&r->a, r->buf, RAW_SIZE, NULL);
    *state = r;
    return 0;
}

static int raw_teardown(void **state)
{
    raw *r = *state;
    unmap_buf(r->buf, r->len);
    free(r);
    return 0;
}

static void test_raw_alignment(void **state)
{
    raw *r = *state;
    for (size_t n = 1; n <= 40; n++) {
        char *p = nea__arena_alloc(&r->a, n, NEA__ALIGN);
        assert_non_null(p);
        assert_true(aligned(p, alignof(max_align_t)));
        memset(p, (int)n, n);
    }
    /* Larger power-of-two alignments on a page-aligned base. */
    (void)nea__arena_alloc(&r->a, 1, 1);
    assert_true(aligned(nea__arena_alloc(&r->a, 8, 64), 64));
    (void)nea__arena_alloc(&r->a, 1, 1);
    assert_true(aligned(nea__arena_alloc(&r->a, 8, 4096), 4096));
}

static void test_raw_exact_fit(void **state)
{
    raw *r = *state;
    char *p = nea__arena_alloc(&r->a, RAW_SIZE, 1);
    assert_ptr_equal(p, r->buf);
    memset(p, 0x22, RAW_SIZE); /* all of it is usable */
    assert_int_equal(nea__arena_available(&r->a), 0);
    assert_null(nea__arena_alloc(&r->a, 1, 1));
    assert_null(nea__arena_alloc(&r->a, 1, NEA__ALIGN));
    assert_int_equal(r->a.used, RAW_SIZE);
}

static void test_raw_one_byte_over(void **state)
{
    raw *r = *state;
    assert_null(nea__arena_alloc(&r->a, RAW_SIZE + 1, 1));
    assert_null(nea__arena_alloc(&r->a, SIZE_MAX, 1));
    assert_null(nea__arena_alloc(&r->a, SIZE_MAX - 8, NEA__ALIGN));
    /* A refusal changes nothing. */
    assert_int_equal(r->a.used, 0);
    assert_int_equal(nea__arena_available(&r->a), RAW_SIZE);

    /* Part-way: exactly what is left fits, one more byte does not. */
    assert_non_null(nea__arena_alloc(&r->a, 1000, 1));
    assert_null(nea__arena_alloc(&r->a, RAW_SIZE - 1000 + 1, 1));
    assert_non_null(nea__arena_alloc(&r->a, RAW_SIZE - 1000, 1));
    assert_int_equal(nea__arena_available(&r->a), 0);
}

static void test_raw_alignment_padding_at_end(void **state)
{
    raw *r = *state;
    /* 20 bytes left, but the next 16-aligned start leaves only 16 of them. */
    assert_non_null(nea__arena_alloc(&r->a, RAW_SIZE - 20, 1));
    assert_int_equal(nea__arena_available(&r->a), 20);
    assert_null(nea__arena_alloc(&r->a, 17, 16));
    assert_int_equal(r->a.used, RAW_SIZE - 20);
    assert_ptr_equal(nea__arena_alloc(&r->a, 16, 16), r->buf + RAW_SIZE - 16);
    assert_int_equal(nea__arena_available(&r->a), 0);
}

static void test_raw_grow(void **state)
{
    raw *r = *state;
    char *first = nea__arena_alloc(&r->a, 10, NEA__ALIGN);
    char *p = nea__arena_alloc(&r->a, 100, NEA__ALIGN);
    size_t off = (size_t)(p - r->buf);
    char *q;

    memset(p, 'a', 100);
    /* Grow in place: same pointer, contents kept, used follows. */
    assert_ptr_equal(nea__arena_grow(&r->a, p, 1000), p);
    assert_int_equal(r->a.used, off + 1000);
    assert_true(all_bytes(p, 100, 'a'));
    memset(p, 'b', 1000);
    /* Shrink in place. */
    assert_ptr_equal(nea__arena_grow(&r->a, p, 50), p);
    assert_int_equal(r->a.used, off + 50);
    assert_int_equal(r->a.peak, off + 1000);
    /* Up to exactly the end of the arena, and not one byte further. */
    assert_ptr_equal(nea__arena_grow(&r->a, p, RAW_SIZE - off), p);
    assert_int_equal(nea__arena_available(&r->a), 0);
    assert_null(nea__arena_grow(&r->a, p, RAW_SIZE - off + 1));
    assert_null(nea__arena_grow(&r->a, p, SIZE_MAX));
    assert_int_equal(r->a.used, RAW_SIZE);
    assert_ptr_equal(nea__arena_grow(&r->a, p, 64), p);

    /* Only the most recent allocation may grow. */
    q = nea__arena_alloc(&r->a, 16, NEA__ALIGN);
    assert_non_null(q);
    assert_null(nea__arena_grow(&r->a, p, 65));
    assert_null(nea__arena_grow(&r->a, first, 20));
    assert_null(nea__arena_grow(&r->a, NULL, 20));
    assert_ptr_equal(nea__arena_grow(&r->a, q, 32), q);
}

static void test_raw_rollback(void **state)
{
    raw *r = *state;
    char *p, *again;
    size_t mark, avail;

    (void)nea__arena_alloc(&r->a, 100, NEA__ALIGN);
    mark = r->a.used;
    avail = nea__arena_available(&r->a);
    p = nea__arena_alloc(&r->a, 500, NEA__ALIGN);
    (void)nea__arena_alloc(&r->a, 700, NEA__ALIGN);
    nea__arena_rollback(&r->a, mark);
    assert_int_equal(r->a.used, mark);
    assert_int_equal(nea__arena_available(&r->a), avail);
    again = nea__arena_alloc(&r->a, 500, NEA__ALIGN);
    assert_ptr_equal(again, p); /* the same bytes are handed out again */
    /* A mark past `used` is not a rollback. */
    nea__arena_rollback(&r->a, r->a.used + 100);
    assert_int_equal(r->a.used, (size_t)(again - r->buf) + 500);
    /* peak remembers what was reached before the rollback. */
    assert_true(r->a.peak >= (size_t)(p - r->buf) + 500 + 700);
}

static void test_raw_reset(void **state)
{
    raw *r = *state;
    for (int i = 0; i < 10; i++) {
        assert_non_null(nea__arena_alloc(&r->a, 1000, NEA__ALIGN));
    }
    assert_true(nea__arena_available(&r->a) < RAW_SIZE - 10000);
    nea__arena_reset(&r->a, NEA_SCRUB_NONE);
    assert_int_equal(nea__arena_available(&r->a), RAW_SIZE);
    assert_int_equal(r->a.used, 0);
    assert_int_equal(r->a.peak, 0);
    assert_ptr_equal(nea__arena_alloc(&r->a, RAW_SIZE, 1), r->buf);
}

/* Writes `used` bytes of 0x5A, resets with scrub, then takes the whole arena again
 * and returns it (exposed for reading). */
static char *raw_use_and_reset(raw *r, size_t used, int scrub)
{
    char *p = nea__arena_alloc(&r->a, used, 1);
    char *all;
    assert_non_null(p);
    memset(p, 0x5a, used);
    nea__arena_reset(&r->a, scrub);
    all = nea__arena_alloc(&r->a, RAW_SIZE, 1);
    assert_ptr_equal(all, r->buf);
    expose(all, RAW_SIZE);
    return all;
}

static void test_raw_scrub_zero(void **state)
{
    raw *r = *state;
    char *all = raw_use_and_reset(r, 1000, NEA_SCRUB_ZERO);
    assert_true(all_bytes(all, 1000, 0x00));
    /* Scrubbing costs what was used: bytes never handed out are not touched. */
    assert_true(all_bytes(all + 1000, RAW_SIZE - 1000, 0x11));
}

static void test_raw_scrub_poison(void **state)
{
    raw *r = *state;
    char *all = raw_use_and_reset(r, 3000, NEA_SCRUB_POISON);
    assert_true(all_bytes(all, 3000, 0xDB));
    assert_true(all_bytes(all + 3000, RAW_SIZE - 3000, 0x11));
}

static void test_raw_scrub_none(void **state)
{
    raw *r = *state;
    char *all = raw_use_and_reset(r, 2000, NEA_SCRUB_NONE);
    /* The documented cost of NEA_SCRUB_NONE: the next user sees old bytes. */
    assert_true(all_bytes(all, 2000, 0x5a));
}

static void test_raw_scrub_covers_peak(void **state)
{
    raw *r = *state;
    char *p = nea__arena_alloc(&r->a, 4000, 1);
    char *all;

    memset(p, 0x5a, 4000);
    /* Shrink and roll back: the bytes were still written, so they are scrubbed. */
    assert_ptr_equal(nea__arena_grow(&r->a, p, 10), p);
    nea__arena_rollback(&r->a, 0);
    nea__arena_reset(&r->a, NEA_SCRUB_ZERO);
    all = nea__arena_alloc(&r->a, RAW_SIZE, 1);
    expose(all, RAW_SIZE);
    assert_true(all_bytes(all, 4000, 0x00));
    assert_true(all_bytes(all + 4000, RAW_SIZE - 4000, 0x11));
}

/* --- the pool on a buffer of our own --------------------------------------- */

#define POOL_N 4u
#define POOL_SIZE ((size_t)10000) /* deliberately not a page or 16-byte multiple */

typedef struct rawpool {
    char *buf;
    size_t len, span, stride;
    nea__arena table[POOL_N];
    nea__pool pool;
} rawpool;

static int pool_setup_scrub(void **state, int scrub)
{
    rawpool *rp = calloc(1, sizeof(*rp));
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    rp->span = NEA__ROUND_UP(POOL_SIZE, page);
    rp->stride = rp->span + page;
    rp->len = rp->stride * POOL_N;
    rp->buf = map_buf(rp->len);
    memset(rp->buf, 0x11, rp->len);
    nea__pool_init(&rp->pool, rp->table, rp->buf, POOL_N, rp->stride, rp->span, POOL_SIZE, scrub,
                   NULL);
    *state = rp;
    return 0;
}

static int pool_setup(void **state)
{
    return pool_setup_scrub(state, NEA_SCRUB_NONE);
}

static int pool_setup_poison(void **state)
{
    return pool_setup_scrub(state, NEA_SCRUB_POISON);
}

static int pool_teardown(void **state)
{
    rawpool *rp = *state;
    unmap_buf(rp->buf, rp->len);
    free(rp);
    return 0;
}

static void test_pool_layout(void **state)
{
    rawpool *rp = *state;
    for (unsigned i = 0; i < POOL_N; i++) {
        nea__arena *a = &rp->table[i];
        char *span_start = rp->buf + (size_t)i * rp->stride;
        assert_int_equal(a->size, POOL_SIZE);
        assert_int_equal(a->used, 0);
        assert_true(aligned(a->base, alignof(max_align_t)));
        /* Inside its span, ending at the span's end (where a guard would be). */
        assert_true(a->base >= span_start);
        assert_ptr_equal(a->base + NEA__ROUND_UP(POOL_SIZE, NEA__ALIGN), span_start + rp->span);
    }
    assert_int_equal(rp->pool.count, POOL_N);
    assert_int_equal(free_len(&rp->pool), POOL_N);
}

static void test_pool_counts(void **state)
{
    rawpool *rp = *state;
    nea__pool *p = &rp->pool;
    nea__arena *got[POOL_N];

    for (unsigned i = 0; i < POOL_N; i++) {
        got[i] = nea__pool_acquire(p);
        assert_ptr_equal(got[i], &rp->table[i]); /* arena 0 first */
        assert_int_equal(p->in_use, i + 1);
        assert_int_equal(p->high_water, i + 1);
        assert_int_equal(p->in_use + free_len(p), POOL_N);
    }
    assert_null(nea__pool_acquire(p)); /* exhausted */
    assert_int_equal(p->in_use, POOL_N);

    nea__pool_release(p, got[2]);
    assert_int_equal(p->in_use, POOL_N - 1);
    assert_int_equal(p->high_water, POOL_N);
    /* LIFO: the arena just released (cache-warm) comes back first. */
    assert_ptr_equal(nea__pool_acquire(p), got[2]);
    nea__pool_release(p, got[1]);
    nea__pool_release(p, got[3]);
    assert_ptr_equal(nea__pool_acquire(p), got[3]);
    assert_ptr_equal(nea__pool_acquire(p), got[1]);

    for (unsigned i = 0; i < POOL_N; i++) {
        nea__pool_release(p, got[i]);
    }
    assert_int_equal(p->in_use, 0);
    assert_int_equal(p->high_water, POOL_N);
    assert_int_equal(free_len(p), POOL_N);
}

static void test_pool_release_resets(void **state)
{
    rawpool *rp = *state;
    nea__pool *p = &rp->pool;
    nea__arena *a = nea__pool_acquire(p);

    assert_non_null(nea__arena_alloc(a, 5000, NEA__ALIGN));
    nea__pool_release(p, a);
    a = nea__pool_acquire(p);
    assert_int_equal(a->used, 0);
    assert_int_equal(nea__arena_available(a), POOL_SIZE);
    nea__pool_release(p, a);
}

static void test_pool_peak_bytes(void **state)
{
    rawpool *rp = *state;
    nea__pool *p = &rp->pool;
    nea__arena *a;

    assert_int_equal(p->peak_bytes, 0);
    a = nea__pool_acquire(p);
    assert_non_null(nea__arena_alloc(a, 1234, 1));
    nea__pool_release(p, a);
    assert_int_equal(p->peak_bytes, 1234);

    a = nea__pool_acquire(p);
    assert_non_null(nea__arena_alloc(a, 500, 1));
    nea__pool_release(p, a);
    assert_int_equal(p->peak_bytes, 1234); /* the largest, not the last */

    a = nea__pool_acquire(p);
    assert_non_null(nea__arena_alloc(a, 6000, 1));
    nea__arena_rollback(a, 0); /* reached, then dropped: still the peak */
    nea__pool_release(p, a);
    assert_int_equal(p->peak_bytes, 6000);
}

static void test_pool_scrub_poison(void **state)
{
    rawpool *rp = *state;
    nea__pool *p = &rp->pool;
    nea__arena *a = nea__pool_acquire(p), *b;
    char *mem = nea__arena_alloc(a, 777, 1);
    char *all;

    memset(mem, 0x5a, 777);
    nea__pool_release(p, a);
    b = nea__pool_acquire(p);
    assert_ptr_equal(b, a);
    all = nea__arena_alloc(b, POOL_SIZE, 1);
    assert_ptr_equal(all, mem);
    expose(all, POOL_SIZE);
    assert_true(all_bytes(all, 777, 0xDB));
    assert_true(all_bytes(all + 777, POOL_SIZE - 777, 0x11));
    nea__pool_release(p, b);
}

/* --- through a server -------------------------------------------------------- */

static int server_start(void **state, void (*tweak)(nea_config *))
{
    fixture *f = calloc(1, sizeof(*f));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    unit_config(&f->cfg, f);
    if (tweak != NULL) {
        tweak(&f->cfg);
    }
    assert_int_equal(nea_server_new(&f->loop, &f->cfg, &f->srv), 0);
    *state = f;
    return 0;
}

static int server_setup(void **state)
{
    return server_start(state, NULL);
}

static void tweak_zero(nea_config *cfg)
{
    cfg->scrub = NEA_SCRUB_ZERO;
}

static int server_setup_zero(void **state)
{
    return server_start(state, tweak_zero);
}

static void tweak_odd_arena(nea_config *cfg)
{
    cfg->arena_size = 20000; /* not a page multiple */
}

static int server_setup_odd(void **state)
{
    return server_start(state, tweak_odd_arena);
}

static int server_teardown(void **state)
{
    unit_stop(*state); /* every test hands all arenas back */
    return 0;
}

/* Handler code records; the assertions run after it returned (a failed cmocka
 * assertion inside a protected frame would jump over the frame). */
typedef struct align_probe {
    int done;
    int misaligned_default; /* nea_alloc / nea_calloc results not max_align_t aligned */
    int misaligned_64;
    int misaligned_4096;
    int misaligned_small;
} align_probe;

static void h_alignment(nea_req *req, void *arg)
{
    align_probe *p = arg;
    for (size_t n = 1; n <= 33; n++) {
        p->misaligned_default += !aligned(nea_alloc(req, n), alignof(max_align_t));
        p->misaligned_default += !aligned(nea_calloc(req, 1, n), alignof(max_align_t));
        (void)nea_strdup(req, "x"); /* leaves the next start unaligned */
    }
    for (int i = 0; i < 3; i++) {
        (void)nea_strdup(req, "x");
        p->misaligned_64 += !aligned(nea_alloc_aligned(req, 8, 64), 64);
        (void)nea_strdup(req, "x");
        p->misaligned_4096 += !aligned(nea_alloc_aligned(req, 8, 4096), 4096);
        /* Alignments below the default still give the default. */
        (void)nea_strdup(req, "x");
        p->misaligned_small += !aligned(nea_alloc_aligned(req, 8, 2), alignof(max_align_t));
    }
    p->done = 1;
}

static void test_req_alignment(void **state)
{
    fixture *f = *state;
    nea_req *req = open_req(f);
    align_probe p;

    memset(&p, 0, sizeof(p));
    assert_true(aligned(req, alignof(max_align_t)));
    nea__req_call(req, h_alignment, &p);
    end_req(f, req);
    assert_int_equal(p.done, 1);
    assert_int_equal(f->srv->stats.oom_500, 0);
    assert_int_equal(p.misaligned_default, 0);
    assert_int_equal(p.misaligned_small, 0);
    assert_int_equal(p.misaligned_64, 0);
    assert_int_equal(p.misaligned_4096, 0);
}

/* Same, in an arena whose size is not a page multiple: its base is then only
 * 16-byte aligned, and alignment must still hold for the address, not for the
 * offset inside the arena. */
static void test_req_alignment_odd_arena(void **state)
{
    test_req_alignment(state);
}

static void test_req_exact_fit(void **state)
{
    fixture *f = *state;
    nea_req *req = open_req(f);
    nea__arena *a = req->arena;
    size_t pad = NEA__ROUND_UP(a->used, NEA__ALIGN) - a->used;
    size_t avail = nea_arena_available(req);
    char *p;

    /* nea_arena_available counts before alignment padding. */
    assert_int_equal(avail, f->cfg.arena_size - a->used);
    assert_null(nea_try_alloc(req, avail - pad + 1));
    assert_int_equal(nea_arena_available(req), avail);
    p = nea_try_alloc(req, avail - pad);
    assert_non_null(p);
    memset(p, 0x33, avail - pad);
    assert_int_equal(nea_arena_available(req), 0);
    assert_null(nea_try_alloc(req, 1));
    end_req(f, req);
}

static void test_req_try_grow(void **state)
{
    fixture *f = *state;
    nea_req *req = open_req(f);
    char *buf = nea_try_alloc(req, 16), *other;
    size_t cap = 16, len = 0;

    assert_non_null(buf);
    /* The usual pattern: append, doubling in place until the arena says no. */
    for (;;) {
        while (len < cap) {
            buf[len] = (char)('a' + len % 26);
            len++;
        }
        char *nb = nea_try_grow(req, buf, cap * 2);
        if (nb == NULL) {
            break;
        }
        assert_ptr_equal(nb, buf);
        cap *= 2;
    }
    assert_true(cap >= 4096);
    assert_true(cap * 2 > nea_arena_available(req) + cap);
    for (size_t i = 0; i < len; i++) {
        assert_int_equal(buf[i], (char)('a' + i % 26));
    }
    /* Shrink to what was used; the rest is available again. */
    assert_ptr_equal(nea_try_grow(req, buf, 100), buf);
    assert_int_equal(nea_arena_available(req),
                     f->cfg.arena_size - (size_t)(buf - req->arena->base) - 100);
    /* Not the most recent allocation any more: refused, p unchanged. */
    other = nea_try_alloc(req, 8);
    assert_non_null(other);
    assert_null(nea_try_grow(req, buf, 200));
    assert_int_equal(buf[99], (char)('a' + 99 % 26));
    end_req(f, req);
}

static void test_server_stats_and_peak(void **state)
{
    fixture *f = *state;
    nea_req *r1 = open_req(f), *r2 = open_req(f);
    nea_stats st;
    size_t used2;

    assert_non_null(nea_try_alloc(r1, 3000));
    assert_non_null(nea_try_alloc(r2, 9000));
    used2 = r2->arena->used;
    nea_server_stats(f->srv, &st);
    assert_int_equal(st.arenas_in_use, 2);
    assert_int_equal(st.arenas_high_water, 2);
    assert_int_equal(st.arena_count, 4);
    end_req(f, r2);
    end_req(f, r1);
    nea_server_stats(f->srv, &st);
    assert_int_equal(st.arenas_in_use, 0);
    assert_int_equal(st.arenas_high_water, 2);
    assert_int_equal(st.arena_peak_bytes, used2);
}

static void test_server_pool_exhaustion(void **state)
{
    fixture *f = *state;
    nea__arena *got[4];
    for (int i = 0; i < 4; i++) {
        got[i] = nea__pool_acquire(&f->srv->pool);
        assert_non_null(got[i]);
    }
    assert_null(nea__pool_acquire(&f->srv->pool));
    for (int i = 4; i-- > 0;) {
        nea__pool_release(&f->srv->pool, got[i]);
    }
}

/* A request's bytes are gone (zeroed) when the next request gets the arena. */
static void test_server_scrub_zero(void **state)
{
    fixture *f = *state;
    nea_req *req = open_req(f);
    nea__arena *a = req->arena;
    char *secret = nea_try_alloc(req, 5000), *all;

    assert_non_null(secret);
    memset(secret, 0x5a, 5000);
    end_req(f, req);
    assert_int_equal(f->srv->pool.in_use, 0);
    assert_ptr_equal(nea__pool_acquire(&f->srv->pool), a);
    all = nea__arena_alloc(a, a->size, 1);
    assert_non_null(all);
    expose(all, a->size);
    assert_true(all_bytes(all, a->size, 0x00));
    nea__pool_release(&f->srv->pool, a);
}

/* --- guard pages ------------------------------------------------------------ */

typedef enum { WRITE_PAST_FIRST, WRITE_PAST_LAST } overrun_kind;

typedef struct child_result {
    int status;
    char report[4096]; /* the child's stderr (a sanitizer's report) */
} child_result;

/* In a child: builds a server, takes the whole of an arena (so the checkers
 * consider all of it handed out), writes its last byte, then one byte past its
 * end. Exit 0 means both writes went through. */
static void overrun_child(int guard_pages, overrun_kind kind, child_result *out)
{
    char path[] = "/tmp/nea-test-arena-XXXXXX";
    int fd = mkstemp(path);
    pid_t pid;
    ssize_t n;

    assert_true(fd >= 0);
    unlink(path);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        uv_loop_t loop;
        nea_config cfg;
        nea_server *srv;
        nea__arena *a = NULL;
        volatile char *p;

        dup2(fd, 2);
        /* cmocka turns SIGSEGV into a test failure and carries on with the next
         * test, in this child: the fault must kill the child instead. */
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        if (uv_loop_init(&loop) != 0) {
            _exit(90);
        }
        unit_config(&cfg, NULL);
        cfg.log = NULL;
        cfg.guard_pages = guard_pages;
        if (nea_server_new(&loop, &cfg, &srv) != 0) {
            _exit(91);
        }
        for (unsigned i = 0; i < (kind == WRITE_PAST_LAST ? srv->pool.count : 1); i++) {
            a = nea__pool_acquire(&srv->pool);
        }
        if (a == NULL || a->size % (size_t)sysconf(_SC_PAGESIZE) != 0) {
            _exit(92);
        }
        p = nea__arena_alloc(a, a->size, 1);
        if (p == NULL) {
            _exit(93);
        }
        p[a->size - 1] = 1; /* the last byte is fine */
        p[a->size] = 1;     /* one past the end */
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &out->status, 0), pid);
    n = pread(fd, out->report, sizeof(out->report) - 1, 0);
    out->report[n > 0 ? n : 0] = '\0';
    close(fd);
}

static void expect_overrun_faults(const child_result *r)
{
    if (WIFSIGNALED(r->status)) {
        assert_int_equal(WTERMSIG(r->status), SIGSEGV);
    } else {
        /* ASan keeps its own SIGSEGV handler: it reports the fault and exits
         * non-zero. It must be the guard page's fault, not another report. */
        if (!under_asan() || WEXITSTATUS(r->status) == 0 || strstr(r->report, "SEGV") == NULL) {
            print_error("child exit %d: %s\n", WEXITSTATUS(r->status), r->report);
        }
        assert_true(WIFEXITED(r->status));
        assert_true(under_asan());
        assert_true(WEXITSTATUS(r->status) != 0 && WEXITSTATUS(r->status) < 90);
        assert_non_null(strstr(r->report, "SEGV"));
    }
}

static void test_guard_page_faults(void **state)
{
    child_result r;
    (void)state;
    if (under_valgrind()) {
        skip();
    }
    overrun_child(1, WRITE_PAST_FIRST, &r);
    expect_overrun_faults(&r);
    overrun_child(1, WRITE_PAST_LAST, &r);
    expect_overrun_faults(&r);
}

static void test_no_guard_page_no_fault(void **state)
{
    child_result r;
    (void)state;
    if (under_valgrind() || under_asan()) {
        skip(); /* both report the write into poisoned bytes themselves */
    }
    /* Past arena 0's end is arena 1's memory: wrong, but not a fault. */
    overrun_child(0, WRITE_PAST_FIRST, &r);
    if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0) {
        print_error("child status 0x%x: %s\n", r.status, r.report);
    }
    assert_true(WIFEXITED(r.status));
    assert_int_equal(WEXITSTATUS(r.status), 0);
}

/* --- prefault and mlock -------------------------------------------------------- */

static size_t status_kib(const char *field)
{
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    size_t v = 0, flen = strlen(field);
    assert_non_null(fp);
    while (fgets(line, sizeof(line), fp) != NULL) {
        if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
            v = (size_t)strtoull(line + flen + 1, NULL, 10);
            break;
        }
    }
    fclose(fp);
    return v;
}

static void big_config(nea_config *cfg, fixture *f)
{
    unit_config(cfg, f);
    cfg->memory_limit = 48 * MIB;
    cfg->arena_size = 256 * KIB;
    cfg->arena_count = 0; /* as many as fit: ~48 MiB of arenas */
}

static void rss_growth(int prefault, size_t *growth, size_t *total)
{
    fixture f;
    nea_server *srv;
    size_t before, after;

    memset(&f, 0, sizeof(f));
    assert_int_equal(uv_loop_init(&f.loop), 0);
    big_config(&f.cfg, &f);
    f.cfg.prefault = prefault;
    before = status_kib("VmRSS") * KIB;
    assert_int_equal(nea_server_new(&f.loop, &f.cfg, &srv), 0);
    after = status_kib("VmRSS") * KIB;
    *growth = after > before ? after - before : 0;
    *total = srv->plan.total;
    nea_server_close(srv, on_closed, &f);
    assert_int_equal(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f.closed, 1);
    assert_int_equal(uv_loop_close(&f.loop), 0);
}

static void test_prefault_resident(void **state)
{
    size_t growth, total;
    (void)state;
    rss_growth(1, &growth, &total);
    if (growth < total / 10 * 9) {
        print_error("prefault: RSS grew %zu of %zu reserved\n", growth, total);
    }
    assert_true(growth >= total / 10 * 9);
}

static void test_no_prefault_lazy(void **state)
{
    size_t growth, total;
    (void)state;
    /* Control for the test above: without prefault the arenas stay unbacked
     * (ASan's shadow for the poisoned arenas is an eighth of them). */
    rss_growth(0, &growth, &total);
    if (growth >= total / 2) {
        print_error("no prefault: RSS grew %zu of %zu reserved\n", growth, total);
    }
    assert_true(growth < total / 2);
}

/* In a child: lowers RLIMIT_MEMLOCK (and drops root, which ignores it), then
 * creates a server with lock_memory. Exit code: 0 = NEA_EMLOCK and logged,
 * 1 = created and locked, >= 10 something else. */
static int mlock_child(rlim_t limit)
{
    pid_t pid = fork();
    int status;

    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit rl = {limit, limit};
        uv_loop_t loop;
        fixture f;
        nea_server *srv = NULL;
        int rc;

        memset(&f, 0, sizeof(f));
        if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0) {
            _exit(10);
        }
        if (geteuid() == 0 && setuid(65534) != 0) {
            _exit(11);
        }
        if (uv_loop_init(&loop) != 0) {
            _exit(12);
        }
        unit_config(&f.cfg, &f);
        f.cfg.lock_memory = 1;
        rc = nea_server_new(&loop, &f.cfg, &srv);
        if (rc == NEA_EMLOCK) {
            _exit(strstr(f.log_all, "lock") != NULL ? 0 : 13);
        }
        if (rc != 0) {
            _exit(14);
        }
        /* Everything is locked but the PROT_NONE guard pages, which are
         * never resident. */
        if (!srv->region.locked ||
            status_kib("VmLck") * KIB <
                srv->plan.total -
                    (f.cfg.guard_pages ? srv->plan.arena_count * srv->plan.page_size : 0)) {
            _exit(15);
        }
        _exit(1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_mlock_refused(void **state)
{
    nea_config cfg;
    nea_plan p;
    struct rlimit rl;
    (void)state;
    if (under_valgrind() || under_asan()) {
        skip(); /* ASan's mlock interceptor does nothing and reports success */
    }
    unit_config(&cfg, NULL);
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
    assert_int_equal(getrlimit(RLIMIT_MEMLOCK, &rl), 0);

    /* Lowering is always allowed; raising above the hard limit is not. */
    assert_int_equal(mlock_child(rl.rlim_max < 64 * KIB ? rl.rlim_max : 64 * KIB), 0);
    /* Control: with room for the plan, the same config locks. */
    if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= p.total + MIB) {
        rlim_t enough = rl.rlim_max == RLIM_INFINITY ? (rlim_t)(p.total + MIB) : rl.rlim_max;
        assert_int_equal(mlock_child(enough), 1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_raw_alignment, raw_setup, raw_teardown),
        cmocka_unit_test_setup_teardown(test_raw_exact_fit, raw_setup, raw_teardown),
        cmocka_unit_test_setup_teardown(test_raw_one_byte_over, raw_setup, raw_teardown),
        cmocka_unit_test_setup_teardown(test_raw_alignment_padding_at_end, raw_setup, raw_teardown),
        cmocka_unit_test_setup_teardown(test_raw_grow, raw_setup, raw_teardown),
        cmocka_unit_test_setup_teardown(test_raw_rollback, raw_setup, raw_teardown),
        cmocka_unit_test_setup_teardown(test_raw_reset, raw_setup, raw_teardown),
        cmocka_unit_test_setup_teardown(test_raw_scrub_zero, raw_setup, raw_teardown),
        cmocka_unit_test_setup_teardown(test_raw_scrub_poison, raw_setup, raw_teardown),
        cmocka_unit_test_setup_teardown(test_raw_scrub_none, raw_setup, raw_teardown),
        cmocka_unit_test_setup_teardown(test_raw_scrub_covers_peak, raw_setup, raw_teardown),
        cmocka_unit_test_setup_teardown(test_pool_layout, pool_setup, pool_teardown),
        cmocka_unit_test_setup_teardown(test_pool_counts, pool_setup, pool_teardown),
        cmocka_unit_test_setup_teardown(test_pool_release_resets, pool_setup, pool_teardown),
        cmocka_unit_test_setup_teardown(test_pool_peak_bytes, pool_setup, pool_teardown),
        cmocka_unit_test_setup_teardown(test_pool_scrub_poison, pool_setup_poison, pool_teardown),
        cmocka_unit_test_setup_teardown(test_req_alignment, server_setup, server_teardown),
        cmocka_unit_test_setup_teardown(test_req_alignment_odd_arena, server_setup_odd,
                                        server_teardown),
        cmocka_unit_test_setup_teardown(test_req_exact_fit, server_setup, server_teardown),
        cmocka_unit_test_setup_teardown(test_req_try_grow, server_setup, server_teardown),
        cmocka_unit_test_setup_teardown(test_server_stats_and_peak, server_setup, server_teardown),
        cmocka_unit_test_setup_teardown(test_server_pool_exhaustion, server_setup, server_teardown),
        cmocka_unit_test_setup_teardown(test_server_scrub_zero, server_setup_zero, server_teardown),
        cmocka_unit_test(test_guard_page_faults),
        cmocka_unit_test(test_no_guard_page_no_fault),
        cmocka_unit_test(test_prefault_resident),
        cmocka_unit_test(test_no_prefault_lazy),
        cmocka_unit_test(test_mlock_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
