/*
 * test_admission.c - who gets a connection slot and who gets an arena
 * (admission.c): 503 when arenas run out and the recovery, the bounded
 * arena wait queue, eviction of idle keep-alive connections through the
 * accept path (and the ones never evicted), 503 when no slot is left.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include "e2e.h"

/* --- isolation ------------------------------------------------------------- */

static void test_oom_is_isolated(void **state)
{
    h_fixture *f;
    h_response r;
    nea_stats st;
    int a, b, c;
    h_test_start(state, NULL);
    f = *state;
    a = h_get(f, "/sleep/200");
    H_WAIT(f, h_arenas_in_use(f) == 1); /* in its handler */
    b = h_get(f, "/alloc/999999999");
    c = h_get(f, "/hello");
    assert_int_equal(h_read(f, b, &r, H_DEADLINE_MS), 500);
    assert_int_equal(h_read(f, c, &r, H_DEADLINE_MS), 200);
    assert_int_equal(h_read(f, a, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "slept");
    h_stats(f, &st);
    assert_int_equal(st.oom_500, 1);
    assert_int_equal(st.responses[2], 2);
    close(a);
    close(b);
    close(c);
    assert_true(h_arenas_settle(f));
}

/* --- arena size classes ------------------------------------------------------ */

/* Class 1: one 256 KiB arena, for /big/ routes; class 0 stays 8 x 64 KiB. */
static void big_class(nea_config *c)
{
    c->memory_limit = 32u << 20;
    c->arena_class_count = 1;
    c->arena_classes[0] = (nea_arena_class){.size = 256u << 10, .count = 1};
    c->queue_timeout_ms = 2000;
}

/* GET /big/alloc/N: allocates N bytes; GET /big/sleep/MS: holds the arena. */
static void on_big_slept(uv_timer_t *t)
{
    nea_req *req = t->data;
    nea_respond(req, 200, "text/plain", "slept", 5);
}

static void r_big(nea_req *req, void *d)
{
    const char *tail = nea_req_path_tail(req);
    (void)d;
    if (strncmp(tail, "sleep/", 6) == 0) {
        uv_timer_t *t = nea_req_timer(req);
        t->data = req;
        uv_timer_start(t, on_big_slept, strtoull(tail + 6, NULL, 10), 0);
        return;
    }
    memset(nea_alloc(req, strtoull(tail + 6, NULL, 10)), 1, strtoull(tail + 6, NULL, 10));
    nea_respond(req, 200, "text/plain", "ok", 2);
}

static void test_class_admission_and_oom(void **state)
{
    h_fixture *f;
    h_response r;
    nea_stats st;
    nea_route_stats rs;
    int hold, queued, small;

    h_test_start(state, big_class);
    f = *state;
    assert_int_equal(nea_server_route_class(f->srv, "GET", "/big/", r_big, NULL, 0, 1), 0);
    assert_int_equal(nea_server_route_class(f->srv, "GET", "/nope", r_big, NULL, 0, 2), UV_EINVAL);
    /* 200 KiB: beyond a class 0 arena (500), within class 1's (200). */
    assert_int_equal(h_request(f, "GET /alloc/204800 HTTP/1.1\r\nHost: x\r\n\r\n", &r), 500);
    assert_int_equal(h_request(f, "GET /big/alloc/204800 HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
    /* And class 1's own limit still gives a 500. */
    assert_int_equal(h_request(f, "GET /big/alloc/300000 HTTP/1.1\r\nHost: x\r\n\r\n", &r), 500);

    /* The only class 1 arena is held: another class 1 request waits while
     * class 0 requests are served at once, then gets the arena. */
    hold = h_get(f, "/big/sleep/150");
    H_WAIT(f, f->srv->pools[1].in_use == 1);
    queued = h_get(f, "/big/alloc/1000");
    H_WAIT(f, f->srv->admission.wait_len == 1);
    assert_non_null(f->srv->admission.wait_head[1]);
    assert_null(f->srv->admission.wait_head[0]);
    small = h_get(f, "/hello");
    assert_int_equal(h_read(f, small, &r, H_DEADLINE_MS), 200);
    assert_int_equal(f->srv->admission.wait_len, 1); /* still waiting for its class */
    assert_int_equal(h_read(f, hold, &r, H_DEADLINE_MS), 200);
    assert_int_equal(h_read(f, queued, &r, H_DEADLINE_MS), 200);
    close(hold);
    close(queued);
    close(small);

    h_stats(f, &st);
    assert_int_equal(st.arena_class_count, 2);
    assert_int_equal(st.classes[1].size, 256u << 10);
    assert_int_equal(st.classes[1].count, 1);
    assert_int_equal(st.classes[1].high_water, 1);
    assert_true(st.classes[1].peak_bytes > 200u << 10);
    assert_true(st.classes[0].peak_bytes < 64u << 10);
    assert_int_equal(nea_stats_arenas(&st).count, st.classes[0].count + 1);
    assert_int_equal(st.oom_500, 2);
    /* The route's metrics name its class. */
    assert_int_equal(nea_server_route_stats(f->srv, nea_server_route_stats_count(f->srv) - 1, &rs),
                     0);
    assert_string_equal(rs.path, "/big/");
    assert_int_equal(rs.arena_class, 1);
    assert_int_equal(rs.outcomes[NEA_OUTCOME_OOM], 1);
    assert_true(h_arenas_settle(f));
}

/* With no waiting, a class with no free arena answers 503 while the
 * default class still has arenas. */
static void big_class_no_wait(nea_config *c)
{
    big_class(c);
    c->queue_timeout_ms = 0;
}

static void test_class_full_sheds_alone(void **state)
{
    h_fixture *f;
    h_response r;
    int hold;

    h_test_start(state, big_class_no_wait);
    f = *state;
    assert_int_equal(nea_server_route_class(f->srv, "GET", "/big/", r_big, NULL, 0, 1), 0);
    hold = h_get(f, "/big/sleep/100");
    H_WAIT(f, f->srv->pools[1].in_use == 1);
    assert_int_equal(h_request(f, "GET /big/alloc/10 HTTP/1.1\r\nHost: x\r\n\r\n", &r), 503);
    assert_int_equal(h_request(f, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
    assert_int_equal(h_read(f, hold, &r, H_DEADLINE_MS), 200);
    close(hold);
    assert_int_equal(h_st(f).shed_no_arena, 1);
}

/* --- arena admission ------------------------------------------------------- */

static void two_arenas(nea_config *c)
{
    c->arena_count = 2;
    c->queue_timeout_ms = 100;
}

static void test_503_when_arenas_exhausted_then_recovery(void **state)
{
    h_fixture *f;
    h_response r;
    nea_stats st;
    char v[32];
    int a, b, c, d;
    uint64_t t0;
    h_test_start(state, two_arenas);
    f = *state;
    a = h_get(f, "/sleep/400");
    b = h_get(f, "/sleep/400");
    H_WAIT(f, h_arenas_in_use(f) == 2);
    assert_int_equal(h_arenas_in_use(f), 2);
    t0 = h_now_ms();
    c = h_get(f, "/hello");
    assert_int_equal(h_read(f, c, &r, H_DEADLINE_MS), 503);
    assert_true(h_now_ms() - t0 >= 90); /* it waited its queue_timeout_ms first */
    assert_string_equal(h_header(&r, "retry-after", v, sizeof(v)), "1");
    assert_string_equal(h_header(&r, "connection", v, sizeof(v)), "close");
    assert_true(h_closed(f, c, H_DEADLINE_MS));
    assert_int_equal(h_read(f, a, &r, H_DEADLINE_MS), 200);
    assert_int_equal(h_read(f, b, &r, H_DEADLINE_MS), 200);
    d = h_get(f, "/hello");
    assert_int_equal(h_read(f, d, &r, H_DEADLINE_MS), 200);
    h_stats(f, &st);
    assert_int_equal(nea_stats_shed(&st), 1);
    assert_int_equal(nea_stats_arenas(&st).high_water, 2);
    close(a);
    close(b);
    close(c);
    close(d);
}

static void one_arena_long_queue(nea_config *c)
{
    c->arena_count = 1;
    c->queue_timeout_ms = 3000;
}

static void test_queued_request_gets_the_next_arena(void **state)
{
    h_fixture *f;
    h_response r;
    int a, b;
    h_test_start(state, one_arena_long_queue);
    f = *state;
    a = h_get(f, "/sleep/50");
    H_WAIT(f, h_arenas_in_use(f) == 1); /* in its handler */
    b = h_get(f, "/hello");
    H_WAIT(f, h_st(f).queue_length == 1);
    {
        nea_stats st;
        h_stats(f, &st);
        assert_int_equal(st.queue_length, 1);
    }
    assert_int_equal(h_read(f, b, &r, H_DEADLINE_MS), 200);
    assert_int_equal(h_read(f, a, &r, H_DEADLINE_MS), 200);
    close(a);
    close(b);
}

static void test_long_queue_drains_in_order(void **state)
{
    /* Many heads wait for the one arena; each handler answers at once, so
     * every hand-off happens while the previous request is releasing its
     * arena. All are served, none is shed. */
    enum { N = 24 };
    h_fixture *f;
    h_response r;
    nea_stats st;
    int busy, fds[N];
    h_test_start(state, one_arena_long_queue);
    f = *state;
    busy = h_get(f, "/sleep/100");
    H_WAIT(f, h_arenas_in_use(f) == 1); /* in its handler */
    for (int i = 0; i < N; i++) {
        fds[i] = h_get(f, "/hello");
    }
    H_WAIT(f, h_st(f).queue_length == N);
    h_stats(f, &st);
    assert_int_equal(st.queue_length, N);
    assert_int_equal(h_read(f, busy, &r, H_DEADLINE_MS), 200);
    for (int i = 0; i < N; i++) {
        assert_int_equal(h_read(f, fds[i], &r, H_DEADLINE_MS), 200);
        close(fds[i]);
    }
    h_stats(f, &st);
    assert_int_equal(nea_stats_shed(&st), 0);
    assert_int_equal(st.queue_length, 0);
    close(busy);
}

static void one_arena_queue_of_one(nea_config *c)
{
    c->arena_count = 1;
    c->queue_length = 1;
    c->queue_timeout_ms = 3000;
}

static void test_full_queue_sheds_at_once(void **state)
{
    h_fixture *f;
    h_response r;
    int a, b, c;
    uint64_t t0;
    h_test_start(state, one_arena_queue_of_one);
    f = *state;
    a = h_get(f, "/sleep/300");
    H_WAIT(f, h_arenas_in_use(f) == 1);
    b = h_get(f, "/hello");
    H_WAIT(f, h_st(f).queue_length == 1);
    t0 = h_now_ms();
    c = h_get(f, "/hello");
    assert_int_equal(h_read(f, c, &r, H_DEADLINE_MS), 503);
    assert_true(h_now_ms() - t0 < 250); /* not after the queue timeout */
    assert_int_equal(h_read(f, a, &r, H_DEADLINE_MS), 200);
    assert_int_equal(h_read(f, b, &r, H_DEADLINE_MS), 200);
    close(a);
    close(b);
    close(c);
}

static void one_arena_no_wait(nea_config *c)
{
    c->arena_count = 1;
    c->queue_timeout_ms = 0;
}

static void test_zero_queue_timeout_sheds_at_once(void **state)
{
    h_fixture *f;
    h_response r;
    nea_stats st;
    int a, b;
    uint64_t t0;
    h_test_start(state, one_arena_no_wait);
    f = *state;
    a = h_get(f, "/sleep/300");
    H_WAIT(f, h_arenas_in_use(f) == 1); /* in its handler */
    t0 = h_now_ms();
    b = h_get(f, "/hello");
    assert_int_equal(h_read(f, b, &r, H_DEADLINE_MS), 503);
    assert_true(h_now_ms() - t0 < 100);
    h_stats(f, &st);
    assert_int_equal(st.queue_length, 0);
    assert_int_equal(h_read(f, a, &r, H_DEADLINE_MS), 200);
    close(a);
    close(b);
}

/* --- connection slots -------------------------------------------------------- */

static void two_slots(nea_config *c)
{
    c->max_connections = 2;
}

static void test_idle_connection_evicted_for_new_one(void **state)
{
    h_fixture *f;
    h_response r;
    nea_stats st;
    int a, b, c;
    h_test_start(state, two_slots);
    f = *state;
    a = h_get(f, "/hello");
    assert_int_equal(h_read(f, a, &r, H_DEADLINE_MS), 200);
    b = h_get(f, "/hello");
    assert_int_equal(h_read(f, b, &r, H_DEADLINE_MS), 200);
    c = h_get(f, "/hello");
    assert_int_equal(h_read(f, c, &r, H_DEADLINE_MS), 200);
    assert_true(h_closed(f, a, H_DEADLINE_MS)); /* the oldest idle one */
    h_sends(f, b, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, b, &r, H_DEADLINE_MS), 200);
    h_stats(f, &st);
    assert_int_equal(st.evicted, 1);
    assert_int_equal(st.connections_open, 2);
    close(a);
    close(b);
    close(c);
}

/* A fresh connection answered within one read (a 404 needs no arena, so
 * the slot never leaves IDLE) turns from silent to served in place: it
 * joins the idle keep-alive connections behind the one answered before it,
 * and the older one gives way to a newcomer. */
static void test_answered_without_leaving_idle_joins_the_idle_list(void **state)
{
    h_fixture *f;
    h_response r;
    nea_stats st;
    int a, b, c;
    h_test_start(state, two_slots);
    f = *state;
    b = h_get(f, "/hello");
    assert_int_equal(h_read(f, b, &r, H_DEADLINE_MS), 200);
    H_WAIT(f, f->srv->admission.idle_head != NULL);
    a = h_get(f, "/nowhere");
    assert_int_equal(h_read(f, a, &r, H_DEADLINE_MS), 404);
    H_WAIT(f, f->srv->admission.idle_tail != f->srv->admission.idle_head);
    assert_null(f->srv->admission.silent_head);
    c = h_get(f, "/p/newcomer");
    assert_int_equal(h_read(f, c, &r, H_DEADLINE_MS), 200);
    assert_true(h_closed(f, b, H_DEADLINE_MS)); /* the older idle one */
    h_sends(f, a, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, a, &r, H_DEADLINE_MS), 200);
    h_stats(f, &st);
    assert_int_equal(st.evicted, 1);
    close(a);
    close(b);
    close(c);
}

static void one_slot(nea_config *c)
{
    c->max_connections = 1;
}

static void test_fresh_connection_is_never_evicted(void **state)
{
    /* B is accepted but has not sent its request yet when C arrives: B has
     * never been answered, so it is not evicted (its request may be on the
     * wire); C is told 503 and B is served. */
    h_fixture *f;
    h_response r;
    nea_stats st;
    int b, c;
    h_test_start(state, one_slot);
    f = *state;
    for (int i = 0; i < 5; i++) {
        b = h_connect(f);
        H_WAIT(f, h_st(f).connections_open == 1); /* B holds the slot */
        c = h_connect(f);
        assert_int_equal(h_read(f, c, &r, H_DEADLINE_MS), 503);
        h_sends(f, b, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_int_equal(h_read(f, b, &r, H_DEADLINE_MS), 200);
        close(b);
        close(c);
        H_WAIT(f, h_st(f).connections_open == 0);
    }
    h_stats(f, &st);
    assert_int_equal(st.evicted, 0);
}

static void test_idle_connection_with_waiting_request_is_kept(void **state)
{
    /* A was answered and is idle: evictable. Once its next request sits in
     * the kernel (not yet read by the server) it is not, and that request is
     * answered. */
    h_fixture *f;
    h_response r;
    int a;
    static const char req[] = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
    h_test_start(state, one_slot);
    f = *state;
    a = h_get(f, "/hello");
    assert_int_equal(h_read(f, a, &r, H_DEADLINE_MS), 200);
    H_WAIT(f, f->srv->admission.idle_head != NULL);
    assert_non_null(f->srv->admission.idle_head);
    assert_false(nea__conn_input_waiting(f->srv->admission.idle_head));
    assert_int_equal(send(a, req, sizeof(req) - 1, 0), (ssize_t)(sizeof(req) - 1));
    assert_true(nea__conn_input_waiting(f->srv->admission.idle_head));
    assert_int_equal(h_read(f, a, &r, H_DEADLINE_MS), 200);
    close(a);
}

static void test_no_slot_and_none_idle_gets_503(void **state)
{
    h_fixture *f;
    h_response r;
    nea_stats st;
    char v[32];
    int a, b;
    h_test_start(state, one_slot);
    f = *state;
    a = h_get(f, "/sleep/200");
    H_WAIT(f, h_arenas_in_use(f) == 1); /* in its handler */
    b = h_get(f, "/hello");
    assert_int_equal(h_read(f, b, &r, H_DEADLINE_MS), 503);
    assert_string_equal(h_header(&r, "retry-after", v, sizeof(v)), "1");
    assert_true(h_closed(f, b, H_DEADLINE_MS));
    assert_int_equal(h_read(f, a, &r, H_DEADLINE_MS), 200);
    h_stats(f, &st);
    assert_int_equal(nea_stats_shed(&st), 1);
    close(a);
    close(b);
}

/* --- eviction through the accept path ---------------------------------------------------- */

/* A connect() the server's loop has not seen yet. */
static int raw_connect(int port)
{
    struct sockaddr_in a = {0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static void test_accept_keeps_idle_with_request_waiting(void **state)
{
    /* One slot, held by A: answered, idle. The newcomer C is pending on the
     * listener before A's next request lands in the kernel, so the accept
     * sees C first and A with input waiting: A is kept (C gets 503) and A's
     * request is answered. */
    static const char req[] = "GET /p/again HTTP/1.1\r\nHost: x\r\n\r\n";
    h_fixture *f;
    h_response r;
    nea_stats st;
    int a, c;
    h_test_start(state, one_slot);
    f = *state;
    a = h_get(f, "/hello");
    assert_int_equal(h_read(f, a, &r, H_DEADLINE_MS), 200);
    H_WAIT(f, f->srv->admission.idle_head != NULL);
    c = raw_connect(f->port);
    assert_int_equal(send(a, req, sizeof(req) - 1, 0), (ssize_t)(sizeof(req) - 1));
    assert_true(nea__conn_input_waiting(f->srv->admission.idle_head));
    assert_int_equal(h_read(f, c, &r, H_DEADLINE_MS), 503);
    assert_int_equal(h_read(f, a, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "again");
    h_stats(f, &st);
    assert_int_equal(st.evicted, 0);
    assert_int_equal(nea_stats_shed(&st), 1);
    close(a);
    close(c);
}

static void test_accept_evicts_idle_with_nothing_waiting(void **state)
{
    /* One slot, held by an answered idle A with nothing on its way: the
     * newcomer C takes its slot and is served; A is closed. */
    h_fixture *f;
    h_response r;
    nea_stats st;
    int a, c;
    h_test_start(state, one_slot);
    f = *state;
    a = h_get(f, "/hello");
    assert_int_equal(h_read(f, a, &r, H_DEADLINE_MS), 200);
    H_WAIT(f, f->srv->admission.idle_head != NULL);
    c = h_get(f, "/p/newcomer");
    assert_int_equal(h_read(f, c, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "newcomer");
    assert_true(h_closed(f, a, H_DEADLINE_MS));
    h_stats(f, &st);
    assert_int_equal(st.evicted, 1);
    assert_int_equal(nea_stats_shed(&st), 0);
    close(a);
    close(c);
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

    h_test_start(state, two_slots_short_heads);
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

static void r_health(nea_req *req, void *d)
{
    (void)d;
    nea_respond(req, 200, "text/plain", "ok", 2);
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

    h_test_start(state, one_reserved);
    f = *state;
    assert_int_equal(
        nea_server_route_flags(f->srv, "GET", "/health", r_health, NULL, NEA_ROUTE_EXEMPT), 0);
    /* Two ordinary requests hold the two ordinary arenas... */
    a = h_connect(f);
    b = h_connect(f);
    h_sends(f, a, "GET /sleep/2000 HTTP/1.1\r\nHost: x\r\n\r\n");
    h_sends(f, b, "GET /sleep/2000 HTTP/1.1\r\nHost: x\r\n\r\n");
    H_WAIT(f, h_arenas_in_use(f) == 2);
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
    assert_true(h_arenas_settle(f));
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
    cfg->fair_share_pct = 50; /* one arena per address while another waits */
    /* The refusals counted are fair share's alone: no queue deadline, no
     * CPU refusal can stand in for one, however slow the run (valgrind). */
    cfg->queue_timeout_ms = 30000;
    cfg->overload_target_ms = 0;
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

/* Requests to /held keep their arena until the test answers them. */
static nea_req *held_reqs[4];
static unsigned held_n;

static void r_held(nea_req *req, void *d)
{
    (void)d;
    nea_req_keep(req);
    held_reqs[held_n++] = req;
}

static void answer_held(unsigned i)
{
    assert_int_equal(nea_respond(held_reqs[i], 200, "text/plain", "held", 4), 0);
}

static void test_fair_share_only_under_contention(void **state)
{
    static const char held[] = "GET /held HTTP/1.1\r\nHost: x\r\n\r\n";
    h_fixture *f;
    h_response r;
    nea_stats st;
    int a1, a2, a3, a4, b1, p;

    h_test_start(state, two_arenas_fair);
    f = *state;
    held_n = 0;
    assert_int_equal(nea_server_route(f->srv, "GET", "/peer", r_peer, NULL), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/held", r_held, NULL), 0);
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
    h_sends(f, a1, held);
    H_WAIT(f, held_n == 1);
    h_sends(f, a2, held);
    H_WAIT(f, held_n == 2);
    h_sends(f, a3, held); /* queued: nobody else is waiting */
    H_WAIT(f, (h_stats(f, &st), st.queue_length == 1));
    /* B arrives and waits; now A is over its share while B waits: A's next
     * head is refused, and when a1's arena returns (A still holding a2's),
     * A's queued head gives way to B's. */
    b1 = connect_from(f, "127.0.0.5");
    h_sends(f, b1, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    H_WAIT(f, (h_stats(f, &st), st.queue_length == 2));
    a4 = connect_from(f, "127.0.0.2");
    h_sends(f, a4, held);
    assert_int_equal(h_read(f, a4, &r, H_DEADLINE_MS), 503);
    answer_held(0);
    assert_int_equal(h_read(f, a1, &r, H_DEADLINE_MS), 200);
    assert_int_equal(h_read(f, b1, &r, H_DEADLINE_MS), 200);
    assert_int_equal(h_read(f, a3, &r, H_DEADLINE_MS), 503);
    assert_int_equal(held_n, 2); /* a3 and a4 never ran */
    answer_held(1);
    assert_int_equal(h_read(f, a2, &r, H_DEADLINE_MS), 200);
    h_stats(f, &st);
    assert_int_equal(st.shed_fair, 2);
    close(a1);
    close(a2);
    close(a3);
    close(a4);
    close(b1);
}

/* --- fair share on slots --------------------------------------------------------- */

static void eight_slots(nea_config *cfg)
{
    cfg->max_connections = 8;
    cfg->keepalive_timeout_ms = 60000; /* silent connections stay until evicted */
}

/* A greedy client that keeps n connections open from src and sends
 * nothing on them; whenever the server closes one (evicted, or told 503)
 * it connects again. */
typedef struct flood {
    const char *src;
    int fd[32];
    unsigned n;
    unsigned reconnects;
} flood;

static void flood_open(h_fixture *f, flood *fl, const char *src, unsigned n)
{
    fl->src = src;
    fl->n = n;
    fl->reconnects = 0;
    for (unsigned i = 0; i < n; i++) {
        fl->fd[i] = connect_from(f, src);
    }
}

/* Reconnects what the server closed; true when none was. */
static bool flood_keep(h_fixture *f, flood *fl)
{
    bool none = true;
    for (unsigned i = 0; i < fl->n; i++) {
        char buf[512];
        ssize_t n;
        while ((n = recv(fl->fd[i], buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
        }
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
            close(fl->fd[i]);
            fl->fd[i] = connect_from(f, fl->src);
            fl->reconnects++;
            none = false;
        }
    }
    return none;
}

static void flood_close(flood *fl)
{
    for (unsigned i = 0; i < fl->n; i++) {
        close(fl->fd[i]);
    }
}

/* One address holds every slot with connections that never send a byte,
 * and more wait behind them, reconnecting whenever one is closed. Another
 * address asks GET /hello on a fresh connection, again and again: it is
 * served every time, at the expense of the flood's own connections. */
static void test_silent_flood_leaves_room_for_others(void **state)
{
    h_fixture *f;
    h_response r;
    nea_stats st;
    flood fl;
    unsigned ok = 0;
    h_test_start(state, eight_slots);
    f = *state;
    flood_open(f, &fl, "127.0.0.5", 12);
    h_pump(f, 50, NULL);
    for (int i = 0; i < 20; i++) {
        int p = connect_from(f, "127.0.0.6");
        h_sends(f, p, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
        ok += h_read(f, p, &r, 2000) == 200;
        close(p);
        (void)flood_keep(f, &fl);
        h_pump(f, 10, NULL);
        (void)flood_keep(f, &fl);
    }
    h_stats(f, &st);
    print_message("polite: %u of 20 200s; evicted %llu, flood reconnects %u, shed_no_slot %llu\n",
                  ok, (unsigned long long)st.evicted, fl.reconnects,
                  (unsigned long long)st.shed_no_slot);
    assert_int_equal(ok, 20);
    assert_true(st.evicted > 0);
    assert_true(st.connections_open <= 8);
    flood_close(&fl);
}

/* A lone address is never limited: its new connection takes the place of
 * one of its own silent ones. */
static void test_lone_address_is_never_limited(void **state)
{
    h_fixture *f;
    h_response r;
    nea_stats st;
    flood fl;
    int p;
    h_test_start(state, eight_slots);
    f = *state;
    flood_open(f, &fl, "127.0.0.7", 10);
    h_pump(f, 50, NULL);
    p = connect_from(f, "127.0.0.7");
    h_sends(f, p, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, p, &r, H_DEADLINE_MS), 200);
    h_stats(f, &st);
    assert_int_equal(nea_stats_shed(&st), 0);
    assert_true(st.evicted >= 3);
    close(p);
    flood_close(&fl);
}

static void four_slots_busy(nea_config *cfg)
{
    cfg->max_connections = 4;
    cfg->arena_count = 8;
}

/* Every address refused a slot counts as waiting, not only the last one:
 * the greedy address, refused after the polite one, does not exempt
 * itself, and the slot that frees goes to the polite one. */
static void test_every_waiting_address_counts(void **state)
{
    static const char first[] = "GET /sleep/300 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    static const char slow[] = "GET /sleep/1500 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    h_fixture *f;
    h_response r;
    nea_stats st;
    int g[4], polite, greedy, late;
    h_test_start(state, four_slots_busy);
    f = *state;
    for (int i = 0; i < 4; i++) { /* every slot busy with a request */
        g[i] = connect_from(f, "127.0.0.8");
        h_sends(f, g[i], i == 0 ? first : slow);
    }
    H_WAIT(f, h_arenas_in_use(f) == 4);
    polite = connect_from(f, "127.0.0.9");
    assert_int_equal(h_read(f, polite, &r, H_DEADLINE_MS), 503);
    close(polite);
    greedy = connect_from(f, "127.0.0.8"); /* refused last */
    assert_int_equal(h_read(f, greedy, &r, H_DEADLINE_MS), 503);
    close(greedy);
    /* The first request ends and frees its slot: the greedy address asks
     * first, and is refused while the polite one waits ... */
    assert_int_equal(h_read(f, g[0], &r, H_DEADLINE_MS), 200);
    H_WAIT(f, h_st(f).connections_open <= 3);
    greedy = connect_from(f, "127.0.0.8");
    assert_int_equal(h_read(f, greedy, &r, H_DEADLINE_MS), 503);
    h_stats(f, &st);
    assert_int_equal(st.shed_fair, 1);
    /* ... so the polite one gets it. */
    late = connect_from(f, "127.0.0.9");
    h_sends(f, late, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, late, &r, H_DEADLINE_MS), 200);
    for (int i = 1; i < 4; i++) {
        assert_int_equal(h_read(f, g[i], &r, H_DEADLINE_MS), 200);
        close(g[i]);
    }
    close(g[0]);
    close(greedy);
    close(late);
}

/* Several addresses each holding more than an even share of the slots
 * with silent connections: newcomers take from the heaviest, so the
 * holdings even out instead of staying first-come. */
static unsigned held_from(h_fixture *f, const char *src)
{
    struct in_addr want;
    unsigned n = 0;
    assert_int_equal(inet_pton(AF_INET, src, &want), 1);
    for (unsigned i = 0; i < f->srv->admission.count; i++) {
        nea__conn *c = h_slot(f, i);
        const struct sockaddr *p;
        if (c->state == NEA__C_FREE || c->state == NEA__C_CLOSING) {
            continue;
        }
        p = nea__conn_peer(c);
        n += p->sa_family == AF_INET &&
             ((const struct sockaddr_in *)(const void *)p)->sin_addr.s_addr == want.s_addr;
    }
    return n;
}

static void twelve_slots(nea_config *cfg)
{
    cfg->max_connections = 12;
    cfg->keepalive_timeout_ms = 60000;
}

static void test_greedy_addresses_even_out(void **state)
{
    h_fixture *f;
    flood a, b, c;
    unsigned ha, hb, hc;
    h_test_start(state, twelve_slots);
    f = *state;
    /* First come: A takes all 12 slots (and 4 more wait). */
    flood_open(f, &a, "127.0.0.11", 16);
    h_pump(f, 50, NULL);
    (void)flood_keep(f, &a);
    h_pump(f, 50, NULL);
    assert_int_equal(held_from(f, "127.0.0.11"), 12);
    /* B and C arrive, each wanting more than a third. */
    flood_open(f, &b, "127.0.0.12", 8);
    flood_open(f, &c, "127.0.0.13", 6);
    /* Within the second a young silent connection is spared, the even
     * split alone moves slots: over a third is over the share. */
    for (uint64_t end = h_now_ms() + 700; h_now_ms() < end;) {
        (void)flood_keep(f, &a);
        (void)flood_keep(f, &b);
        (void)flood_keep(f, &c);
        h_pump(f, 20, NULL);
    }
    ha = held_from(f, "127.0.0.11");
    hb = held_from(f, "127.0.0.12");
    hc = held_from(f, "127.0.0.13");
    print_message("after 0.7 s: A %u, B %u, C %u\n", ha, hb, hc);
    assert_true(ha <= 5 && hb <= 5 && hc <= 5);
    for (uint64_t end = h_now_ms() + 1800; h_now_ms() < end;) {
        (void)flood_keep(f, &a);
        (void)flood_keep(f, &b);
        (void)flood_keep(f, &c);
        h_pump(f, 20, NULL);
    }
    ha = held_from(f, "127.0.0.11");
    hb = held_from(f, "127.0.0.12");
    hc = held_from(f, "127.0.0.13");
    print_message("12 slots held: A %u, B %u, C %u (A %u reconnects, B %u, C %u)\n", ha, hb, hc,
                  a.reconnects, b.reconnects, c.reconnects);
    /* An even share is 4 each: none is shut out, none keeps them all. */
    assert_true(ha >= 2 && ha <= 6);
    assert_true(hb >= 2 && hb <= 6);
    assert_true(hc >= 2 && hc <= 6);
    flood_close(&a);
    flood_close(&b);
    flood_close(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_lingering_gives_slot_to_newcomer, h_test_teardown),
        cmocka_unit_test_teardown(test_exempt_route_uses_reserved_arena, h_test_teardown),
        cmocka_unit_test_teardown(test_fair_share_only_under_contention, h_test_teardown),
        cmocka_unit_test_teardown(test_silent_flood_leaves_room_for_others, h_test_teardown),
        cmocka_unit_test_teardown(test_lone_address_is_never_limited, h_test_teardown),
        cmocka_unit_test_teardown(test_every_waiting_address_counts, h_test_teardown),
        cmocka_unit_test_teardown(test_greedy_addresses_even_out, h_test_teardown),
        cmocka_unit_test_teardown(test_oom_is_isolated, h_test_teardown),
        cmocka_unit_test_teardown(test_class_admission_and_oom, h_test_teardown),
        cmocka_unit_test_teardown(test_class_full_sheds_alone, h_test_teardown),
        cmocka_unit_test_teardown(test_503_when_arenas_exhausted_then_recovery, h_test_teardown),
        cmocka_unit_test_teardown(test_queued_request_gets_the_next_arena, h_test_teardown),
        cmocka_unit_test_teardown(test_long_queue_drains_in_order, h_test_teardown),
        cmocka_unit_test_teardown(test_full_queue_sheds_at_once, h_test_teardown),
        cmocka_unit_test_teardown(test_zero_queue_timeout_sheds_at_once, h_test_teardown),
        cmocka_unit_test_teardown(test_idle_connection_evicted_for_new_one, h_test_teardown),
        cmocka_unit_test_teardown(test_answered_without_leaving_idle_joins_the_idle_list,
                                  h_test_teardown),
        cmocka_unit_test_teardown(test_no_slot_and_none_idle_gets_503, h_test_teardown),
        cmocka_unit_test_teardown(test_fresh_connection_is_never_evicted, h_test_teardown),
        cmocka_unit_test_teardown(test_idle_connection_with_waiting_request_is_kept,
                                  h_test_teardown),
        cmocka_unit_test_teardown(test_accept_keeps_idle_with_request_waiting, h_test_teardown),
        cmocka_unit_test_teardown(test_accept_evicts_idle_with_nothing_waiting, h_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
