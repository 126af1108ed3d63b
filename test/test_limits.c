/*
 * test_limits.c - what a slow or absent peer, or a handler that never
 * answers, may hold: lingering connections give their slot to a newcomer,
 * bodies below the minimum data rate lose their arena, a handler with
 * nothing pending gets a 500 at once and one that never answers a 504 at
 * response_timeout_ms; the loop that stays busy sheds with 503 and stops
 * when the load is gone, never for exempt routes; one client address is held
 * to its fair share only while another waits. Real sockets on 127.0.0.0/8.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
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

/* --- CPU shedding ------------------------------------------------------------ */

static void busy_ms(unsigned ms)
{
    uint64_t until = uv_hrtime() + (uint64_t)ms * 1000000u;
    while (uv_hrtime() < until) {
    }
}

static void r_spin2(nea_req *req, void *d)
{
    (void)d;
    busy_ms(2);
    nea_respond(req, 200, "text/plain", "spun", 4);
}

static void r_health(nea_req *req, void *d)
{
    (void)d;
    nea_respond(req, 200, "text/plain", "ok", 2);
}

static void fast_overload(nea_config *cfg)
{
    cfg->max_connections = 64;
    cfg->arena_count = 40;
    cfg->overload_target_ms = 5;
    cfg->overload_interval_ms = 50;
    cfg->overload_hold_ms = 300;
}

enum { BURST = 30 };

/* Writes one request on each of the first n sockets before the server runs,
 * so one loop iteration finds them all ready; then reads every answer.
 * Returns how many were 200 and 503 (other statuses fail the test). */
static void burst(h_fixture *f, int *fd, int n, const char *const *paths, unsigned *ok,
                  unsigned *shed)
{
    h_response r;
    *ok = *shed = 0;
    for (int i = 0; i < n; i++) {
        char req[128];
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", paths[i]);
        assert_int_equal(write(fd[i], req, strlen(req)), (ssize_t)strlen(req));
    }
    for (int i = 0; i < n; i++) {
        int st = h_read(f, fd[i], &r, H_DEADLINE_MS);
        if (st == 200) {
            (*ok)++;
        } else {
            assert_int_equal(st, 503);
            assert_non_null(strstr(r.head, "Retry-After: 1"));
            assert_non_null(strstr(r.head, "Connection: close"));
            (*shed)++;
            close(fd[i]); /* a 503 closes its connection: take a new one */
            fd[i] = h_connect(f);
        }
    }
}

static bool not_shedding(h_fixture *f)
{
    nea_stats st;
    h_stats(f, &st);
    return st.shedding == 0;
}

static void test_cpu_shedding_starts_spares_exempt_and_stops(void **state)
{
    const char *paths[BURST + 1];
    int fd[BURST + 1];
    unsigned ok, shed, health_ok = 0;
    nea_stats st;
    h_fixture *f;
    h_response r;

    start(state, fast_overload);
    f = *state;
    assert_int_equal(nea_server_route(f->srv, "GET", "/spin2", r_spin2, NULL), 0);
    assert_int_equal(
        nea_server_route_flags(f->srv, "GET", "/health", r_health, NULL, NEA_ROUTE_EXEMPT), 0);
    for (int i = 0; i <= BURST; i++) {
        fd[i] = h_connect(f);
        paths[i] = i == BURST ? "/health" : "/spin2";
    }
    /* Two bursts keep every iteration busier than the target for longer
     * than the interval (each is BURST x 2 ms = 60 ms): shedding starts. */
    for (int round = 0; round < 4; round++) {
        burst(f, fd, BURST + 1, paths, &ok, &shed);
        h_stats(f, &st);
        if (st.shedding) {
            break;
        }
    }
    assert_int_equal(st.shedding, 1);
    /* Shedding: an iteration serves about a target's worth and answers the
     * rest 503 at once; the exempt route is never shed. */
    for (int round = 0; round < 3; round++) {
        burst(f, fd, BURST + 1, paths, &ok, &shed);
        print_message("shedding round %d: %u x 200, %u x 503\n", round, ok, shed);
        assert_true(ok >= 2);    /* the health check and the first request */
        assert_true(shed >= 10); /* most of the 60 ms of work */
        assert_true(ok + shed == BURST + 1);
        health_ok++;
    }
    h_stats(f, &st);
    assert_true(st.shed_cpu >= 30);
    assert_int_equal(st.shed_cpu + st.shed_no_arena + st.shed_no_slot + st.shed_fair +
                         st.shed_draining,
                     st.shed_503);
    assert_int_equal(health_ok, 3);
    /* The load is gone: shedding stops after the hold time, once. */
    assert_true(pump_until(f, H_DEADLINE_MS, not_shedding));
    h_stats(f, &st);
    assert_int_equal(st.shed_transitions, 2);
    h_sends(f, fd[0], "GET /spin2 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, fd[0], &r, H_DEADLINE_MS), 200);
    for (int i = 0; i <= BURST; i++) {
        close(fd[i]);
    }
}

static void no_cpu_shedding(nea_config *cfg)
{
    fast_overload(cfg);
    cfg->overload_target_ms = 0;
}

static void test_cpu_shedding_off(void **state)
{
    const char *paths[BURST];
    int fd[BURST];
    unsigned ok, shed;
    nea_stats st;
    h_fixture *f;

    start(state, no_cpu_shedding);
    f = *state;
    assert_int_equal(nea_server_route(f->srv, "GET", "/spin2", r_spin2, NULL), 0);
    for (int i = 0; i < BURST; i++) {
        fd[i] = h_connect(f);
        paths[i] = "/spin2";
    }
    for (int round = 0; round < 4; round++) {
        burst(f, fd, BURST, paths, &ok, &shed);
        assert_int_equal(shed, 0);
    }
    h_stats(f, &st);
    assert_int_equal(st.shedding, 0);
    assert_int_equal(st.shed_cpu, 0);
    for (int i = 0; i < BURST; i++) {
        close(fd[i]);
    }
}

/* --- reserved arenas ------------------------------------------------------------ */

static void one_reserved(nea_config *cfg)
{
    cfg->arena_count = 3;
    cfg->reserved_arenas = 1;
    cfg->queue_timeout_ms = 0;
}

static void test_exempt_route_uses_reserved_arena(void **state)
{
    h_fixture *f;
    h_response r;
    int a, b, c, hc;

    start(state, one_reserved);
    f = *state;
    assert_int_equal(
        nea_server_route_flags(f->srv, "GET", "/health", r_health, NULL, NEA_ROUTE_EXEMPT), 0);
    /* Two ordinary requests hold the two ordinary arenas... */
    a = h_connect(f);
    b = h_connect(f);
    h_sends(f, a, "GET /sleep/2000 HTTP/1.1\r\nHost: x\r\n\r\n");
    h_sends(f, b, "GET /sleep/2000 HTTP/1.1\r\nHost: x\r\n\r\n");
    h_pump(f, 20, NULL);
    /* ... a third gets 503 (the last arena is reserved), the health check
     * gets it. */
    c = h_connect(f);
    h_sends(f, c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, c, &r, H_DEADLINE_MS), 503);
    hc = h_connect(f);
    h_sends(f, hc, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, hc, &r, H_DEADLINE_MS), 200);
    close(a);
    close(b);
    close(c);
    close(hc);
    assert_true(pump_until(f, H_DEADLINE_MS, no_arena_in_use));
}

/* --- fair share --------------------------------------------------------------- */

/* A client socket bound to a source address in 127.0.0.0/8. */
static int connect_from(h_fixture *f, const char *src)
{
    struct sockaddr_in a = {0}, b = {0};
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    assert_true(fd >= 0);
    b.sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, src, &b.sin_addr), 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&b, sizeof(b)), 0);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)f->port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    return fd;
}

static void two_arenas_fair(nea_config *cfg)
{
    cfg->arena_count = 2;
    cfg->queue_timeout_ms = 3000;
    cfg->fair_share_pct = 50; /* one arena per address while another waits */
}

static void r_peer(nea_req *req, void *d)
{
    struct sockaddr_storage ss;
    char ip[64] = "?";
    (void)d;
    if (nea_req_peer(req, &ss) == 0 && ss.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof(ip));
    }
    nea_respond(req, 200, "text/plain", ip, strlen(ip));
}

static void test_fair_share_only_under_contention(void **state)
{
    static const char slow[] = "GET /sleep/200 HTTP/1.1\r\nHost: x\r\n\r\n";
    static const char slower[] = "GET /sleep/1500 HTTP/1.1\r\nHost: x\r\n\r\n";
    h_fixture *f;
    h_response r;
    nea_stats st;
    int a1, a2, a3, a4, b1, p;

    start(state, two_arenas_fair);
    f = *state;
    assert_int_equal(nea_server_route(f->srv, "GET", "/peer", r_peer, NULL), 0);
    /* The peer address reaches handlers. */
    p = connect_from(f, "127.0.0.3");
    h_sends(f, p, "GET /peer HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, p, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "127.0.0.3");
    close(p);

    /* Alone, address A may hold every arena and queue for more. */
    a1 = connect_from(f, "127.0.0.2");
    a2 = connect_from(f, "127.0.0.2");
    a3 = connect_from(f, "127.0.0.2");
    h_sends(f, a1, slow);
    h_sends(f, a2, slower);
    h_pump(f, 20, NULL);
    h_sends(f, a3, slow); /* queued: nobody else is waiting */
    h_pump(f, 20, NULL);
    h_stats(f, &st);
    assert_int_equal(st.queue_length, 1);
    /* B arrives and waits; now A is over its share while B waits: A's next
     * head is refused, and when a1's arena returns (A still holding a2's),
     * A's queued head gives way to B's. */
    b1 = connect_from(f, "127.0.0.5");
    h_sends(f, b1, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    h_pump(f, 20, NULL);
    a4 = connect_from(f, "127.0.0.2");
    h_sends(f, a4, slow);
    assert_int_equal(h_read(f, a4, &r, H_DEADLINE_MS), 503);
    assert_int_equal(h_read(f, a1, &r, H_DEADLINE_MS), 200);
    assert_int_equal(h_read(f, b1, &r, H_DEADLINE_MS), 200);
    assert_int_equal(h_read(f, a3, &r, H_DEADLINE_MS), 503);
    assert_int_equal(h_read(f, a2, &r, H_DEADLINE_MS), 200);
    h_stats(f, &st);
    assert_int_equal(st.shed_fair, 2);
    close(a1);
    close(a2);
    close(a3);
    close(a4);
    close(b1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_lingering_gives_slot_to_newcomer, teardown),
        cmocka_unit_test_teardown(test_dripping_uploads_lose_their_arenas, teardown),
        cmocka_unit_test_teardown(test_body_above_min_rate_completes, teardown),
        cmocka_unit_test_teardown(test_handler_with_nothing_pending_gets_500, teardown),
        cmocka_unit_test_teardown(test_response_timeout_gives_504_and_cleans_up, teardown),
        cmocka_unit_test_teardown(test_cpu_shedding_starts_spares_exempt_and_stops, teardown),
        cmocka_unit_test_teardown(test_cpu_shedding_off, teardown),
        cmocka_unit_test_teardown(test_exempt_route_uses_reserved_arena, teardown),
        cmocka_unit_test_teardown(test_fair_share_only_under_contention, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
