/*
 * test_stats.c - the server's counters (stats.c): responses by status class,
 * connections and their high mark, the totals derived from their parts
 * (nea_stats_shed, nea_stats_arenas), how one worker's figures add into
 * the process's, and the snapshot other threads read while its worker
 * keeps publishing (never a torn copy).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <string.h>

#include "stats.h"

#include <uv.h>

static void test_responses_by_status_class(void **state)
{
    static const int statuses[] = {100, 101, 200, 204, 299, 304, 400, 404, 431, 500, 503, 599};
    nea_stats st;
    (void)state;

    memset(&st, 0, sizeof(st));
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        nea__stats_response(&st, statuses[i]);
    }
    nea__stats_response(&st, 0);   /* no response was sent */
    nea__stats_response(&st, 99);  /* not a status */
    nea__stats_response(&st, 600); /* not a status class HTTP defines */
    assert_int_equal(st.responses[0], 0);
    assert_int_equal(st.responses[1], 2);
    assert_int_equal(st.responses[2], 3);
    assert_int_equal(st.responses[3], 1);
    assert_int_equal(st.responses[4], 3);
    assert_int_equal(st.responses[5], 3);
}

static void test_connections_and_their_high_mark(void **state)
{
    nea_stats st;
    (void)state;

    memset(&st, 0, sizeof(st));
    nea__stats_conn_opened(&st);
    nea__stats_conn_opened(&st);
    nea__stats_conn_opened(&st);
    nea__stats_conn_closed(&st);
    nea__stats_conn_closed(&st);
    nea__stats_conn_opened(&st);
    assert_int_equal(st.connections_open, 2);
    assert_int_equal(st.connections_max, 3); /* the most open at once, not the last */
    assert_int_equal(st.accepted, 4);        /* every connection that entered a slot */
}

/* Every 503 is counted once, under its cause; the total is their sum. */
static void test_shed_is_the_sum_of_its_causes(void **state)
{
    nea_stats st;
    (void)state;

    memset(&st, 0, sizeof(st));
    assert_int_equal(nea_stats_shed(&st), 0);
    st.shed_no_slot = 1;
    st.shed_no_arena = 20;
    st.shed_cpu = 300;
    st.shed_fair = 4000;
    st.shed_draining = 50000;
    st.oom_500 = 7; /* a 500 is not a 503 */
    assert_int_equal(nea_stats_shed(&st), 54321);
}

static void two_classes(nea_stats *st)
{
    memset(st, 0, sizeof(*st));
    st->arena_class_count = 2;
    st->classes[0] = (nea_stats_class){
        .size = 8192, .count = 10, .in_use = 3, .high_water = 7, .peak_bytes = 5000};
    st->classes[1] = (nea_stats_class){
        .size = 65536, .count = 4, .in_use = 1, .high_water = 4, .peak_bytes = 40000};
}

static void test_arenas_of_every_class(void **state)
{
    nea_stats st;
    nea_stats_class all;
    (void)state;

    two_classes(&st);
    /* A class the config does not declare is not counted, whatever it holds. */
    st.classes[2] = (nea_stats_class){
        .size = 1, .count = 99, .in_use = 99, .high_water = 99, .peak_bytes = 99999};
    all = nea_stats_arenas(&st);
    assert_int_equal(all.count, 14);
    assert_int_equal(all.in_use, 4);
    assert_int_equal(all.high_water, 11);
    assert_int_equal(all.peak_bytes, 40000); /* the largest, not a sum */
    assert_int_equal(all.size, 0);

    memset(&st, 0, sizeof(st));
    all = nea_stats_arenas(&st);
    assert_int_equal(all.count + all.in_use + all.high_water, 0);
    assert_int_equal(all.peak_bytes, 0);
}

/* One worker's figures into the process's: counters and capacities add up,
 * the loop lag and each class's peak are the largest of any worker,
 * shedding counts the workers that shed. */
static void test_workers_add_up(void **state)
{
    nea_stats a, b, sum;
    nea_stats_class all;
    (void)state;

    two_classes(&a);
    a.requests = 10;
    a.responses[2] = 9;
    a.responses[5] = 1;
    a.oom_500 = 1;
    a.shed_cpu = 2;
    a.accepted = 5;
    a.connections_open = 2;
    a.connections_max = 3;
    a.queue_length = 1;
    a.shedding = 1;
    a.shed_transitions = 1;
    a.loop_lag_us = 900;
    two_classes(&b);
    b.classes[0].peak_bytes = 6000;
    b.requests = 5;
    b.responses[2] = 5;
    b.shed_no_slot = 3;
    b.accepted = 6;
    b.connections_open = 4;
    b.connections_max = 4;
    b.loop_lag_us = 300;

    memset(&sum, 0, sizeof(sum));
    nea__stats_add(&sum, &a);
    nea__stats_add(&sum, &b);
    assert_int_equal(sum.requests, 15);
    assert_int_equal(sum.responses[2], 14);
    assert_int_equal(sum.responses[5], 1);
    assert_int_equal(sum.oom_500, 1);
    assert_int_equal(nea_stats_shed(&sum), 5);
    assert_int_equal(sum.accepted, 11);
    assert_int_equal(sum.connections_open, 6);
    assert_int_equal(sum.connections_max, 7);
    assert_int_equal(sum.queue_length, 1);
    assert_int_equal(sum.shedding, 1); /* one worker of two sheds */
    assert_int_equal(sum.shed_transitions, 1);
    assert_int_equal(sum.loop_lag_us, 900);
    assert_int_equal(sum.arena_class_count, 2);
    assert_int_equal(sum.classes[0].size, 8192);
    assert_int_equal(sum.classes[0].count, 20);
    assert_int_equal(sum.classes[0].in_use, 6);
    assert_int_equal(sum.classes[0].high_water, 14);
    assert_int_equal(sum.classes[0].peak_bytes, 6000);
    assert_int_equal(sum.classes[1].peak_bytes, 40000);
    all = nea_stats_arenas(&sum);
    assert_int_equal(all.count, 28);
    assert_int_equal(all.in_use, 8);
    assert_int_equal(all.peak_bytes, 40000);
}

static void test_snapshot_round_trip(void **state)
{
    nea__stats_snapshot snap;
    nea_stats st, got;
    (void)state;

    memset(&snap, 0, sizeof(snap));
    two_classes(&st);
    st.requests = 123456789012345ull;
    st.shed_fair = 17;
    st.connections_open = 3;
    st.loop_lag_us = 42;
    nea__stats_publish(&snap, &st);
    memset(&got, 0xee, sizeof(got));
    nea__stats_read(&snap, &got);
    assert_memory_equal(&got, &st, sizeof(st));
    /* Published again with new figures: the reader sees the new ones. */
    st.requests++;
    st.classes[1].in_use = 0;
    nea__stats_publish(&snap, &st);
    nea__stats_read(&snap, &got);
    assert_memory_equal(&got, &st, sizeof(st));
}

/* A worker publishing as fast as it can while another thread reads: every
 * copy is one the writer published whole. The writer sets every counter it
 * publishes to the same value n, so a torn copy shows two values. */
#define PUBLISHES 200000u

typedef struct race {
    nea__stats_snapshot snap;
    unsigned done; /* atomic */
} race;

static void fill(nea_stats *st, uint64_t n)
{
    memset(st, 0, sizeof(*st));
    st->requests = n;
    st->oom_500 = n;
    st->shed_no_slot = n;
    st->accepted = n;
    st->loop_lag_us = n;
    st->shed_transitions = n;
}

static void writer(void *arg)
{
    race *r = arg;
    nea_stats st;
    for (uint64_t n = 1; n <= PUBLISHES; n++) {
        fill(&st, n);
        nea__stats_publish(&r->snap, &st);
    }
    __atomic_store_n(&r->done, 1u, __ATOMIC_RELEASE);
}

static void test_snapshot_never_torn(void **state)
{
    static race r;
    uv_thread_t t;
    nea_stats got;
    uint64_t last = 0, reads = 0;
    (void)state;

    memset(&r, 0, sizeof(r));
    assert_int_equal(uv_thread_create(&t, writer, &r), 0);
    do {
        nea__stats_read(&r.snap, &got);
        assert_int_equal(got.oom_500, got.requests);
        assert_int_equal(got.shed_no_slot, got.requests);
        assert_int_equal(got.accepted, got.requests);
        assert_int_equal(got.loop_lag_us, got.requests);
        assert_int_equal(got.shed_transitions, got.requests);
        assert_true(got.requests >= last); /* never back to an older copy */
        last = got.requests;
        reads++;
    } while (!__atomic_load_n(&r.done, __ATOMIC_ACQUIRE));
    assert_int_equal(uv_thread_join(&t), 0);
    nea__stats_read(&r.snap, &got);
    assert_int_equal(got.requests, PUBLISHES); /* the last one published */
    assert_true(reads > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_responses_by_status_class),
        cmocka_unit_test(test_connections_and_their_high_mark),
        cmocka_unit_test(test_shed_is_the_sum_of_its_causes),
        cmocka_unit_test(test_arenas_of_every_class),
        cmocka_unit_test(test_workers_add_up),
        cmocka_unit_test(test_snapshot_round_trip),
        cmocka_unit_test(test_snapshot_never_torn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
