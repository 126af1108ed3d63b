/*
 * test_share.c - who holds the connection slots and who asks for one
 * (share.c), on slots made up here (state and peer set by hand, no
 * socket): the count of the heaviest addresses, exact and heaviest first,
 * with more addresses than it keeps; the even split and its cap; who is
 * waiting; the count kept in step by accepts and closes; peers without an
 * IP address never counted.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "share.h"

enum { SLOTS = 64 };

typedef struct fixture {
    uv_loop_t loop;
    nea__conn *slots;
    nea__share sh;
} fixture;

static nea__peer_key key(const char *ip)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    in->sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, ip, &in->sin_addr), 1);
    return nea__share_key((const struct sockaddr *)&ss);
}

/* Slot i held (idle) by a client at ip. */
static void hold(fixture *f, unsigned i, const char *ip)
{
    nea__conn *c = &f->slots[i];
    struct sockaddr_in *in = (struct sockaddr_in *)&c->peer;
    memset(&c->peer, 0, sizeof(c->peer));
    in->sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, ip, &in->sin_addr), 1);
    c->peer_known = true;
    c->state = NEA__C_IDLE;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->slots = calloc(SLOTS, sizeof(nea__conn));
    assert_non_null(f->slots);
    for (unsigned i = 0; i < SLOTS; i++) {
        f->slots[i].state = NEA__C_FREE;
    }
    nea__share_init(&f->sh, &f->loop, (char *)f->slots, sizeof(nea__conn), SLOTS, SLOTS / 2);
    uv_update_time(&f->loop);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f->slots);
    free(f);
    return 0;
}

static void test_count_is_exact_and_heaviest_first(void **state)
{
    fixture *f = *state;
    nea__peer_key a = key("10.0.0.1"), b = key("10.0.0.2");
    for (unsigned i = 0; i < 30; i++) {
        hold(f, i, "10.0.0.1");
    }
    for (unsigned i = 30; i < 40; i++) {
        hold(f, i, "10.0.0.2");
    }
    f->slots[39].state = NEA__C_CLOSING; /* giving up its slot: not counted */
    /* Twenty more addresses, one slot each: more than the count keeps. */
    for (unsigned i = 40; i < 60; i++) {
        char ip[32];
        snprintf(ip, sizeof(ip), "10.0.1.%u", i);
        hold(f, i, ip);
    }
    nea__share_count(&f->sh);
    assert_true(f->sh.tally_len <= NEA__TALLY);
    assert_true(nea__share_same(&f->sh.tally[0].key, &a));
    assert_int_equal(f->sh.tally[0].slots, 30);
    assert_true(nea__share_same(&f->sh.tally[1].key, &b));
    assert_int_equal(f->sh.tally[1].slots, 9);
    assert_int_equal(nea__share_held(&f->sh, &a), 30);
    assert_int_equal(nea__share_held(&f->sh, &b), 9);
}

static void test_share_is_an_even_split_capped_by_pct(void **state)
{
    fixture *f = *state;
    nea__peer_key c = key("10.0.0.3");
    /* One address alone: the cap, half the slots. */
    for (unsigned i = 0; i < 40; i++) {
        hold(f, i, "10.0.0.1");
    }
    nea__share_count(&f->sh);
    assert_false(nea__share_over(&f->sh, 32));
    assert_true(nea__share_over(&f->sh, 33));
    /* Two holding: still 32 each. */
    for (unsigned i = 40; i < 50; i++) {
        hold(f, i, "10.0.0.2");
    }
    nea__share_count(&f->sh);
    assert_true(nea__share_over(&f->sh, 33));
    assert_false(nea__share_over(&f->sh, 32));
    /* A third asks (refused): an even third, 22. */
    nea__share_asked(&f->sh, &c, true);
    assert_true(nea__share_over(&f->sh, 23));
    assert_false(nea__share_over(&f->sh, 22));
    /* Fair share off: the even split alone. */
    f->sh.pct_slots = 0;
    assert_true(nea__share_over(&f->sh, 23));
    f->sh.pct_slots = SLOTS / 2;
}

static void test_who_is_waiting(void **state)
{
    fixture *f = *state;
    nea__peer_key a = key("10.0.0.1"), b = key("10.0.0.2"), c = key("10.0.0.3");
    for (unsigned i = 0; i < SLOTS; i++) {
        hold(f, i, "10.0.0.1");
    }
    nea__share_count(&f->sh);
    assert_false(nea__share_someone_waiting(&f->sh));
    nea__share_asked(&f->sh, &b, false); /* asked and was let in */
    assert_false(nea__share_someone_waiting(&f->sh));
    nea__share_asked(&f->sh, &b, true);
    nea__share_asked(&f->sh, &a, true); /* refused last */
    assert_true(nea__share_someone_waiting(&f->sh));
    /* A, refused last, does not hide B: B waits under its share, so A
     * (and C) see another address waiting ... */
    assert_true(nea__share_other_waiting(&f->sh, &a));
    assert_true(nea__share_other_waiting(&f->sh, &c));
    /* ... while for B the only other one waiting is A, over its share
     * already: a slot B gives up would not be A's to take. */
    assert_false(nea__share_other_waiting(&f->sh, &b));
}

static void test_count_follows_accepts_and_closes(void **state)
{
    fixture *f = *state;
    nea__peer_key a = key("10.0.0.1");
    for (unsigned i = 0; i < 10; i++) {
        hold(f, i, "10.0.0.1");
    }
    nea__share_count(&f->sh);
    assert_int_equal(nea__share_held(&f->sh, &a), 10);
    hold(f, 10, "10.0.0.1");
    nea__share_accepted(&f->sh, &f->slots[10]);
    assert_int_equal(nea__share_held(&f->sh, &a), 11);
    nea__share_closing(&f->sh, &f->slots[0]);
    nea__share_closing(&f->sh, &f->slots[1]);
    assert_int_equal(nea__share_held(&f->sh, &a), 9);
    assert_int_equal(f->sh.tally_accepts, 0);
    /* Once the count is old, an accept is only noted (the next count
     * sees it). */
    f->sh.tally_ms -= NEA__TALLY_MS;
    nea__share_accepted(&f->sh, &f->slots[10]);
    assert_int_equal(f->sh.tally_accepts, 1);
    assert_int_equal(nea__share_held(&f->sh, &a), 9);
}

static void test_peers_without_an_address_are_not_counted(void **state)
{
    fixture *f = *state;
    struct sockaddr_in6 un = {0};
    nea__peer_key k;
    un.sin6_family = AF_UNIX;
    k = nea__share_key((const struct sockaddr *)&un);
    assert_int_equal(k.family, 0);
    for (unsigned i = 0; i < SLOTS; i++) {
        f->slots[i].peer = un;
        f->slots[i].peer_known = true;
        f->slots[i].state = NEA__C_IDLE;
    }
    nea__share_count(&f->sh);
    assert_int_equal(f->sh.tally_len, 0);
    nea__share_asked(&f->sh, &k, true);
    assert_false(nea__share_someone_waiting(&f->sh));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_count_is_exact_and_heaviest_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_share_is_an_even_split_capped_by_pct, setup, teardown),
        cmocka_unit_test_setup_teardown(test_who_is_waiting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_count_follows_accepts_and_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peers_without_an_address_are_not_counted, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
