/*
 * test_timers.c - a server's deadline lists (timers.c) on a real loop:
 * deadlines fire in due order across lists, each at its time and not
 * before; a cancelled or re-set deadline fires only at its new time; out
 * of order insertion keeps a list sorted; a deadline set again while
 * firing, even at 0 ms, waits for the next firing; the one libuv timer
 * stops when the lists are empty.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "timers.h"

typedef struct item {
    nea__timed t; /* first: the item is its deadline */
    int id;
    uint64_t fired_at;
    int refire; /* set again with this many ms when it fires (-1: no) */
} item;

static nea__timers timers;
static uv_loop_t loop;
static int order[256], n_fired;
static unsigned passes[256]; /* timers.pass at each firing */

static void on_expired(nea__timed *e)
{
    item *it = (item *)(void *)e;
    it->fired_at = uv_now(&loop);
    passes[n_fired] = timers.pass;
    order[n_fired++] = it->id;
    if (it->refire >= 0) {
        int ms = it->refire;
        it->refire = -1;
        nea__timers_set(&timers, e, e->list, uv_now(&loop) + (uint64_t)ms);
    }
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    nea__timers_init(&timers, &loop, on_expired);
    n_fired = 0;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    nea__timers_close(&timers, NULL, NULL);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    return 0;
}

static void item_init(item *it, int id)
{
    memset(it, 0, sizeof(*it));
    it->id = id;
    it->refire = -1;
}

/* Runs the loop until fired deadlines have fired (the loop ending before
 * that fails the test). */
static void run_until(int fired)
{
    while (n_fired < fired) {
        if (uv_run(&loop, UV_RUN_ONCE) == 0 && n_fired < fired) {
            fail_msg("the loop ran dry after %d of %d deadlines", n_fired, fired);
        }
    }
}

static void test_fire_in_due_order_across_lists(void **state)
{
    item a, b, c, d;
    uint64_t t0 = uv_now(&loop);
    (void)state;
    item_init(&a, 1);
    item_init(&b, 2);
    item_init(&c, 3);
    item_init(&d, 4);
    nea__timers_set(&timers, &a.t, 0, t0 + 60);
    nea__timers_set(&timers, &b.t, 1, t0 + 20);
    nea__timers_set(&timers, &c.t, 0, t0 + 40); /* earlier than the tail: sorted insert */
    nea__timers_set(&timers, &d.t, 2, t0 + 80);
    nea__timers_cancel(&timers, &d.t);
    run_until(3);
    assert_int_equal(order[0], 2);
    assert_int_equal(order[1], 3);
    assert_int_equal(order[2], 1);
    assert_true(b.fired_at >= t0 + 20);
    assert_true(c.fired_at >= t0 + 40);
    assert_true(a.fired_at >= t0 + 60);
    /* d was cancelled: the loop ends with nothing armed. */
    assert_int_equal(uv_run(&loop, UV_RUN_NOWAIT), 0);
    assert_int_equal(n_fired, 3);
    assert_false(uv_is_active((uv_handle_t *)&timers.timer));
}

static void test_reset_moves_a_deadline(void **state)
{
    item a, b;
    uint64_t t0 = uv_now(&loop);
    (void)state;
    item_init(&a, 1);
    item_init(&b, 2);
    nea__timers_set(&timers, &a.t, 3, t0 + 10);
    nea__timers_set(&timers, &b.t, 3, t0 + 30);
    nea__timers_set(&timers, &a.t, 3, t0 + 50); /* moved later: behind b */
    run_until(2);
    assert_int_equal(order[0], 2);
    assert_int_equal(order[1], 1);
    assert_true(a.fired_at >= t0 + 50);
}

/* Set again at 0 ms while firing: not in the same firing (where it would
 * loop for ever), but in the next. */
static void test_zero_ms_again_waits_for_the_next_firing(void **state)
{
    item a;
    (void)state;
    item_init(&a, 7);
    a.refire = 0;
    nea__timers_set(&timers, &a.t, 5, uv_now(&loop) + 5);
    run_until(2);
    assert_int_equal(order[1], 7);
    assert_int_equal(passes[1], passes[0] + 1); /* the next firing, not the same one */
    assert_int_equal(uv_run(&loop, UV_RUN_NOWAIT), 0);
    assert_int_equal(n_fired, 2);
}

static void test_many_in_one_list(void **state)
{
    static item its[200];
    uint64_t t0 = uv_now(&loop);
    (void)state;
    for (int i = 0; i < 200; i++) {
        item_init(&its[i], i);
        nea__timers_set(&timers, &its[i].t, 4, t0 + 10 + (uint64_t)(i % 7));
    }
    run_until(200);
    for (int i = 1; i < 200; i++) {
        assert_true(its[order[i - 1]].t.due <= its[order[i]].t.due);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fire_in_due_order_across_lists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_moves_a_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero_ms_again_waits_for_the_next_firing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_many_in_one_list, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
