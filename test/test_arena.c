/*
 * test_arena.c - bump allocation inside one arena (arena.c), on a buffer
 * this file maps itself so that every boundary is known exactly: alignment,
 * exact fit, grow and shrink in place, rollback, reset and the scrub
 * policies.
 *
 * Under AddressSanitizer and Valgrind, libnea poisons arena bytes that are
 * not handed out. A test that reads bytes libnea has not handed out (to see
 * what a scrub left there) first exposes them with expose(), and the buffer
 * is unpoisoned before it is unmapped.
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
