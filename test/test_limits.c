/*
 * test_limits.c - what a slow or absent peer, or a handler that never
 * answers, may hold: lingering connections give their slot to a newcomer,
 * bodies below the minimum data rate lose their arena, a handler with
 * nothing pending gets a 500 at once and one that never answers a 504 at
 * response_timeout_ms. Real sockets on 127.0.0.1.
 */
#include "harness.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

static h_fixture fx;

static void start(void **state, void (*tweak)(nea_config *))
{
    nea_config cfg;
    h_config(&cfg);
    if (tweak != NULL) {
        tweak(&cfg);
    }
    h_start(&fx, &cfg);
    *state = &fx;
}

static int teardown(void **state)
{
    h_stop(*state);
    return 0;
}

/* Runs the loop until cond(f) holds or ms pass; returns whether it held. */
static bool pump_until(h_fixture *f, unsigned ms, bool (*cond)(h_fixture *))
{
    uint64_t end = h_now_ms() + ms;
    while (!cond(f) && h_now_ms() < end) {
        h_pump(f, 5, NULL);
    }
    return cond(f);
}

static bool no_arena_in_use(h_fixture *f)
{
    nea_stats st;
    h_stats(f, &st);
    return st.arenas_in_use == 0;
}

/* --- lingering connections give way ---------------------------------------- */

static void two_slots_short_heads(nea_config *cfg)
{
    cfg->max_connections = 2;
    cfg->header_timeout_ms = 150;
}

static void test_lingering_gives_slot_to_newcomer(void **state)
{
    h_fixture *f;
    h_response r;
    int a, b, c;
    uint64_t cut, served;

    start(state, two_slots_short_heads);
    f = *state;
    /* Two slowloris peers take both slots and never finish a head, nor
     * close after their 408: the server lingers on them. */
    a = h_connect(f);
    b = h_connect(f);
    h_sends(f, a, "GET /hello HTTP/1.1\r\n");
    h_sends(f, b, "GET /hello HTTP/1.1\r\n");
    assert_int_equal(h_read(f, a, &r, H_DEADLINE_MS), 408);
    assert_int_equal(h_read(f, b, &r, H_DEADLINE_MS), 408);
    cut = h_now_ms();
    /* A newcomer is served, not told 503 while the linger runs out. */
    c = h_connect(f);
    h_sends(f, c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, c, &r, H_DEADLINE_MS), 200);
    served = h_now_ms();
    print_message("newcomer served %llu ms after the attackers were cut\n",
                  (unsigned long long)(served - cut));
    assert_true(served - cut < 500);
    close(a);
    close(b);
    close(c);
}

/* --- minimum body data rate --------------------------------------------------- */

static void two_arenas_min_rate(nea_config *cfg)
{
    cfg->arena_count = 2;
    cfg->body_min_rate = 1000;
    cfg->body_rate_grace_ms = 300;
    cfg->queue_timeout_ms = 3000;
}

static void test_dripping_uploads_lose_their_arenas(void **state)
{
    enum { DRIPPERS = 4 };
    static const char head[] = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n";
    h_fixture *f;
    h_response r;
    int d[DRIPPERS], probe;
    nea_stats st;
    uint64_t t0;
    int probe_status = 0;

    start(state, two_arenas_min_rate);
    f = *state;
    t0 = h_now_ms();
    for (int i = 0; i < DRIPPERS; i++) {
        d[i] = h_connect(f);
        h_sends(f, d[i], head);
    }
    /* Both arenas are held by drippers now; the probe waits in the queue. */
    probe = h_connect(f);
    h_sends(f, probe, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    /* Drip 5 bytes every 50 ms (100 B/s, below the 1000 B/s minimum) until
     * the probe is answered, at most 3 s. */
    while (probe_status == 0 && h_now_ms() - t0 < 3000) {
        for (int i = 0; i < DRIPPERS; i++) {
            (void)write(d[i], "aaaaa", 5);
        }
        h_pump(f, 50, NULL);
        if (h_quiet(f, probe, 1) == false) {
            probe_status = h_read(f, probe, &r, H_DEADLINE_MS);
        }
    }
    assert_int_equal(probe_status, 200);
    print_message("probe served %llu ms after %d dripping uploads started (2 arenas)\n",
                  (unsigned long long)(h_now_ms() - t0), DRIPPERS);
    h_stats(f, &st);
    assert_true(st.timeouts >= 2); /* the drippers that held arenas were cut (408) */
    for (int i = 0; i < DRIPPERS; i++) {
        close(d[i]);
    }
    close(probe);
    assert_true(pump_until(f, H_DEADLINE_MS, no_arena_in_use));
}

static void slow_but_steady(nea_config *cfg)
{
    cfg->body_min_rate = 100;
    cfg->body_rate_grace_ms = 200;
}

static void test_body_above_min_rate_completes(void **state)
{
    h_fixture *f;
    h_response r;
    int c;

    start(state, slow_but_steady);
    f = *state;
    c = h_connect(f);
    h_sends(f, c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 120\r\n\r\n");
    /* 20 bytes every 50 ms: 400 B/s, four times the 100 B/s minimum. */
    for (int i = 0; i < 6; i++) {
        h_pump(f, 50, NULL);
        h_sends(f, c, "01234567890123456789");
    }
    assert_int_equal(h_read(f, c, &r, H_DEADLINE_MS), 200);
    assert_int_equal(r.body_len, 120);
    close(c);
}

/* --- handlers that never answer --------------------------------------------- */

static unsigned defers_here;

static void count_defer(void *arg)
{
    (void)arg;
    defers_here++;
}

static void r_forgets(nea_req *req, void *d)
{
    (void)d;
    (void)nea_req_defer(req, count_defer, NULL);
}

static void r_never(nea_req *req, void *d)
{
    (void)d;
    (void)nea_req_defer(req, count_defer, NULL);
    nea_req_keep(req); /* promises an answer that never comes */
}

static void short_response_timeout(nea_config *cfg)
{
    cfg->response_timeout_ms = 200;
}

static void test_handler_with_nothing_pending_gets_500(void **state)
{
    h_fixture *f;
    h_response r;
    nea_stats st;
    int c;

    start(state, NULL);
    f = *state;
    assert_int_equal(nea_server_route(f->srv, "GET", "/forgets", r_forgets, NULL), 0);
    defers_here = 0;
    c = h_connect(f);
    h_sends(f, c, "GET /forgets HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, c, &r, 1000), 500);
    assert_int_equal(h_read(f, c, &r, 1000), 200); /* the connection carries on */
    assert_non_null(strstr(f->log, "GET /forgets returned without responding"));
    assert_int_equal(defers_here, 1);
    h_stats(f, &st);
    assert_int_equal(st.unanswered, 1);
    assert_int_equal(st.oom_500, 0);
    close(c);
}

static void test_response_timeout_gives_504_and_cleans_up(void **state)
{
    h_fixture *f;
    h_response r;
    nea_stats st;
    int c;
    uint64_t t0;

    start(state, short_response_timeout);
    f = *state;
    assert_int_equal(nea_server_route(f->srv, "GET", "/never", r_never, NULL), 0);
    defers_here = 0;
    h_defers_run = 0;
    c = h_connect(f);
    t0 = h_now_ms();
    h_sends(f, c, "GET /never HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, c, &r, 2000), 504);
    assert_true(h_now_ms() - t0 >= 190);
    assert_int_equal(defers_here, 1);
    /* A handler waiting on a tracked timer past the deadline: 504 too, its
     * timer is closed and its defers run. */
    h_sends(f, c, "GET /sleep/5000 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, c, &r, 2000), 504);
    assert_int_equal(h_defers_run, 1);
    assert_true(pump_until(f, H_DEADLINE_MS, no_arena_in_use));
    h_sends(f, c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, c, &r, 1000), 200);
    assert_non_null(strstr(f->log, "no response to GET /never within response_timeout_ms"));
    h_stats(f, &st);
    assert_int_equal(st.unanswered, 2);
    assert_int_equal(st.shed_503, 0); /* a handler ran: never a 503 */
    close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_lingering_gives_slot_to_newcomer, teardown),
        cmocka_unit_test_teardown(test_dripping_uploads_lose_their_arenas, teardown),
        cmocka_unit_test_teardown(test_body_above_min_rate_completes, teardown),
        cmocka_unit_test_teardown(test_handler_with_nothing_pending_gets_500, teardown),
        cmocka_unit_test_teardown(test_response_timeout_gives_504_and_cleans_up, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
