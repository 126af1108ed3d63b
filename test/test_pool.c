/*
 * test_pool.c - the fixed set of arenas and its free list (pool.c): the
 * table taken as placed, counts and high water, LIFO reuse, reset and scrub on
 * release, the peak; first on a buffer this file maps itself, then through
 * a server's reservation.
 */
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
    /* Placed as plan.c places a server's: each arena's usable bytes end
     * where its span ends. */
    for (unsigned i = 0; i < POOL_N; i++) {
        nea__arena_init(&rp->table[i], rp->buf + (size_t)i * rp->stride + rp->span - POOL_SIZE,
                        POOL_SIZE, NULL);
    }
    nea__pool_init(&rp->pool, rp->table, POOL_N, scrub);
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

/* The pool takes the arenas as placed, every one free and untouched. */
static void test_pool_takes_the_table(void **state)
{
    rawpool *rp = *state;
    for (unsigned i = 0; i < POOL_N; i++) {
        nea__arena *a = &rp->table[i];
        assert_ptr_equal(a->base, rp->buf + (size_t)i * rp->stride + rp->span - POOL_SIZE);
        assert_int_equal(a->size, POOL_SIZE);
        assert_int_equal(a->used, 0);
        assert_true(aligned(a->base, alignof(max_align_t)));
    }
    assert_ptr_equal(rp->pool.arenas, rp->table);
    assert_int_equal(rp->pool.count, POOL_N);
    assert_int_equal(rp->pool.in_use, 0);
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

static void tweak_zero(nea_config *cfg)
{
    cfg->scrub = NEA_SCRUB_ZERO;
}

static int server_setup(void **state)
{
    *state = unit_start(NULL);
    return 0;
}

static int server_setup_zero(void **state)
{
    *state = unit_start(tweak_zero);
    return 0;
}

static int server_teardown(void **state)
{
    unit_stop(*state); /* every test hands all arenas back */
    return 0;
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
    assert_int_equal(nea_stats_arenas(&st).in_use, 2);
    assert_int_equal(nea_stats_arenas(&st).high_water, 2);
    assert_int_equal(nea_stats_arenas(&st).count, 4);
    end_req(f, r2);
    end_req(f, r1);
    nea_server_stats(f->srv, &st);
    assert_int_equal(nea_stats_arenas(&st).in_use, 0);
    assert_int_equal(nea_stats_arenas(&st).high_water, 2);
    assert_int_equal(nea_stats_arenas(&st).peak_bytes, used2);
}

static void test_server_pool_exhaustion(void **state)
{
    fixture *f = *state;
    nea__arena *got[4];
    for (int i = 0; i < 4; i++) {
        got[i] = nea__pool_acquire(&f->srv->pools[0]);
        assert_non_null(got[i]);
    }
    assert_null(nea__pool_acquire(&f->srv->pools[0]));
    for (int i = 4; i-- > 0;) {
        nea__pool_release(&f->srv->pools[0], got[i]);
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
    assert_int_equal(f->srv->pools[0].in_use, 0);
    assert_ptr_equal(nea__pool_acquire(&f->srv->pools[0]), a);
    all = nea__arena_alloc(a, a->size, 1);
    assert_non_null(all);
    expose(all, a->size);
    assert_true(all_bytes(all, a->size, 0x00));
    nea__pool_release(&f->srv->pools[0], a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pool_takes_the_table, pool_setup, pool_teardown),
        cmocka_unit_test_setup_teardown(test_pool_counts, pool_setup, pool_teardown),
        cmocka_unit_test_setup_teardown(test_pool_release_resets, pool_setup, pool_teardown),
        cmocka_unit_test_setup_teardown(test_pool_peak_bytes, pool_setup, pool_teardown),
        cmocka_unit_test_setup_teardown(test_pool_scrub_poison, pool_setup_poison, pool_teardown),
        cmocka_unit_test_setup_teardown(test_server_stats_and_peak, server_setup, server_teardown),
        cmocka_unit_test_setup_teardown(test_server_pool_exhaustion, server_setup, server_teardown),
        cmocka_unit_test_setup_teardown(test_server_scrub_zero, server_setup_zero, server_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
