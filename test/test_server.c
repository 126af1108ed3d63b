/*
 * test_server.c - admission, isolation, timeouts, asynchronous handlers and
 * the server lifecycle, over real sockets on 127.0.0.1.
 */
#include "harness.h"

#include <netinet/in.h>
#include <signal.h>
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

static int send_get(h_fixture *f, const char *path)
{
    char req[256];
    int fd = h_connect(f);
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    h_sends(f, fd, req);
    return fd;
}

static unsigned arenas_in_use(h_fixture *f)
{
    nea_stats st;
    h_stats(f, &st);
    return st.arenas_in_use;
}

/* Pumps until no arena is in use or the deadline passes. */
static bool arenas_settle(h_fixture *f)
{
    uint64_t end = h_now_ms() + H_DEADLINE_MS;
    while (arenas_in_use(f) != 0 && h_now_ms() < end) {
        h_pump(f, 10, NULL);
    }
    return arenas_in_use(f) == 0;
}

/* --- isolation ------------------------------------------------------------- */

static void test_oom_is_isolated(void **state)
{
    h_fixture *f;
    h_response r;
    nea_stats st;
    int a, b, c;
    start(state, NULL);
    f = *state;
    a = send_get(f, "/sleep/200");
    h_pump(f, 20, NULL);
    b = send_get(f, "/alloc/999999999");
    c = send_get(f, "/hello");
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
    assert_true(arenas_settle(f));
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
    start(state, two_arenas);
    f = *state;
    a = send_get(f, "/sleep/400");
    b = send_get(f, "/sleep/400");
    h_pump(f, 20, NULL);
    assert_int_equal(arenas_in_use(f), 2);
    t0 = h_now_ms();
    c = send_get(f, "/hello");
    assert_int_equal(h_read(f, c, &r, H_DEADLINE_MS), 503);
    assert_true(h_now_ms() - t0 >= 90); /* it waited its queue_timeout_ms first */
    assert_string_equal(h_header(&r, "retry-after", v, sizeof(v)), "1");
    assert_string_equal(h_header(&r, "connection", v, sizeof(v)), "close");
    assert_true(h_closed(f, c, H_DEADLINE_MS));
    assert_int_equal(h_read(f, a, &r, H_DEADLINE_MS), 200);
    assert_int_equal(h_read(f, b, &r, H_DEADLINE_MS), 200);
    d = send_get(f, "/hello");
    assert_int_equal(h_read(f, d, &r, H_DEADLINE_MS), 200);
    h_stats(f, &st);
    assert_int_equal(st.shed_503, 1);
    assert_int_equal(st.arenas_high_water, 2);
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
    start(state, one_arena_long_queue);
    f = *state;
    a = send_get(f, "/sleep/50");
    h_pump(f, 10, NULL);
    b = send_get(f, "/hello");
    h_pump(f, 10, NULL);
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
    start(state, one_arena_long_queue);
    f = *state;
    busy = send_get(f, "/sleep/100");
    h_pump(f, 10, NULL);
    for (int i = 0; i < N; i++) {
        fds[i] = send_get(f, "/hello");
    }
    h_pump(f, 20, NULL);
    h_stats(f, &st);
    assert_int_equal(st.queue_length, N);
    assert_int_equal(h_read(f, busy, &r, H_DEADLINE_MS), 200);
    for (int i = 0; i < N; i++) {
        assert_int_equal(h_read(f, fds[i], &r, H_DEADLINE_MS), 200);
        close(fds[i]);
    }
    h_stats(f, &st);
    assert_int_equal(st.shed_503, 0);
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
    start(state, one_arena_queue_of_one);
    f = *state;
    a = send_get(f, "/sleep/300");
    b = send_get(f, "/hello");
    h_pump(f, 20, NULL);
    t0 = h_now_ms();
    c = send_get(f, "/hello");
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
    start(state, one_arena_no_wait);
    f = *state;
    a = send_get(f, "/sleep/300");
    h_pump(f, 20, NULL);
    t0 = h_now_ms();
    b = send_get(f, "/hello");
    assert_int_equal(h_read(f, b, &r, H_DEADLINE_MS), 503);
    assert_true(h_now_ms() - t0 < 100);
    h_stats(f, &st);
    assert_int_equal(st.queue_length, 0);
    assert_int_equal(h_read(f, a, &r, H_DEADLINE_MS), 200);
    close(a);
    close(b);
}

static void test_idle_and_slow_connections_hold_no_arena(void **state)
{
    h_fixture *f;
    h_response r;
    int fds[8];
    start(state, NULL);
    f = *state;
    for (int i = 0; i < 8; i++) {
        fds[i] = h_connect(f);
        if (i % 2 == 0) {
            h_sends(f, fds[i], "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
            assert_int_equal(h_read(f, fds[i], &r, H_DEADLINE_MS), 200); /* now idle */
        } else {
            h_sends(f, fds[i], "GET /hello HTTP/1.1\r\nHo"); /* partial head */
        }
    }
    h_pump(f, 20, NULL);
    assert_int_equal(arenas_in_use(f), 0);
    for (int i = 0; i < 8; i++) {
        close(fds[i]);
    }
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
    start(state, two_slots);
    f = *state;
    a = send_get(f, "/hello");
    assert_int_equal(h_read(f, a, &r, H_DEADLINE_MS), 200);
    b = send_get(f, "/hello");
    assert_int_equal(h_read(f, b, &r, H_DEADLINE_MS), 200);
    c = send_get(f, "/hello");
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
    start(state, one_slot);
    f = *state;
    for (int i = 0; i < 5; i++) {
        b = h_connect(f);
        h_pump(f, 5, NULL);
        c = h_connect(f);
        assert_int_equal(h_read(f, c, &r, H_DEADLINE_MS), 503);
        h_sends(f, b, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_int_equal(h_read(f, b, &r, H_DEADLINE_MS), 200);
        close(b);
        close(c);
        h_pump(f, 5, NULL);
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
    start(state, one_slot);
    f = *state;
    a = send_get(f, "/hello");
    assert_int_equal(h_read(f, a, &r, H_DEADLINE_MS), 200);
    h_pump(f, 5, NULL);
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
    start(state, one_slot);
    f = *state;
    a = send_get(f, "/sleep/200");
    h_pump(f, 20, NULL);
    b = send_get(f, "/hello");
    assert_int_equal(h_read(f, b, &r, H_DEADLINE_MS), 503);
    assert_string_equal(h_header(&r, "retry-after", v, sizeof(v)), "1");
    assert_true(h_closed(f, b, H_DEADLINE_MS));
    assert_int_equal(h_read(f, a, &r, H_DEADLINE_MS), 200);
    h_stats(f, &st);
    assert_int_equal(st.shed_503, 1);
    close(a);
    close(b);
}

/* --- timeouts -------------------------------------------------------------------- */

static void short_timeouts(nea_config *c)
{
    c->header_timeout_ms = 300;
    c->body_timeout_ms = 200;
    c->keepalive_timeout_ms = 200;
    c->write_timeout_ms = 300;
}

static void test_header_deadline_against_dripping_client(void **state)
{
    static const char req[] =
        "GET /hello HTTP/1.1\r\nHost: x\r\nX-Drip: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    h_fixture *f;
    h_response r;
    nea_stats st;
    uint64_t t0;
    int fd, status = -1;
    start(state, short_timeouts);
    f = *state;
    fd = h_connect(f);
    t0 = h_now_ms();
    /* One byte every 40 ms: each is well inside any idle timeout, but the
     * whole head would take 2.6 s; the deadline counts from the first byte. */
    for (size_t i = 0; i < sizeof(req) - 1 && status < 0; i++) {
        h_send(f, fd, req + i, 1);
        status = h_read(f, fd, &r, 40);
    }
    assert_int_equal(status, 408);
    assert_true(h_now_ms() - t0 >= 280);
    assert_true(h_now_ms() - t0 < 1500);
    assert_true(h_closed(f, fd, H_DEADLINE_MS));
    h_stats(f, &st);
    assert_int_equal(st.timeouts, 1);
    close(fd);
}

static void test_body_timeout(void **state)
{
    h_fixture *f;
    h_response r;
    int fd;
    start(state, short_timeouts);
    f = *state;
    fd = h_connect(f);
    h_sends(f, fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 408);
    assert_true(h_closed(f, fd, H_DEADLINE_MS));
    assert_true(arenas_settle(f));
    close(fd);
}

static void body_deadline(nea_config *c)
{
    c->body_timeout_ms = 200;
    c->body_deadline_ms = 500;
}

static void test_body_deadline_against_dripping_client(void **state)
{
    /* One body byte every 100 ms never trips the 200 ms idle timer; the
     * 500 ms deadline cuts it anyway. */
    h_fixture *f;
    h_response r;
    uint64_t t0;
    int fd, status = -1;
    start(state, body_deadline);
    f = *state;
    fd = h_connect(f);
    h_sends(f, fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n");
    t0 = h_now_ms();
    for (int i = 0; i < 50 && status < 0; i++) {
        h_send(f, fd, "z", 1);
        status = h_read(f, fd, &r, 100);
    }
    assert_int_equal(status, 408);
    assert_true(h_now_ms() - t0 >= 450);
    assert_true(h_now_ms() - t0 < 2000);
    assert_true(h_closed(f, fd, H_DEADLINE_MS));
    assert_true(arenas_settle(f));
    close(fd);
}

static void test_keepalive_timeout(void **state)
{
    h_fixture *f;
    h_response r;
    int fd;
    start(state, short_timeouts);
    f = *state;
    fd = send_get(f, "/hello");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_true(h_quiet(f, fd, 100));
    assert_true(h_closed(f, fd, H_DEADLINE_MS));
    close(fd);
}

static void test_slow_reader_is_cut(void **state)
{
    h_fixture *f;
    nea_stats st;
    int fd, small = 4096;
    start(state, short_timeouts);
    f = *state;
    fd = h_connect(f);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    h_sends(f, fd, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    /* Never read: the 8 MiB response cannot drain, the write timer fires. */
    h_pump(f, 200, NULL);
    assert_int_equal(arenas_in_use(f), 1);
    assert_true(arenas_settle(f));
    h_stats(f, &st);
    assert_int_equal(st.timeouts, 1);
    assert_int_equal(st.connections_open, 0);
    close(fd);
}

/* --- asynchronous handlers ------------------------------------------------- */

static void test_async_handler_completes_from_timer(void **state)
{
    h_fixture *f;
    h_response r;
    int fd;
    uint64_t t0;
    start(state, NULL);
    f = *state;
    t0 = h_now_ms();
    fd = send_get(f, "/sleep/60");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "slept");
    assert_true(h_now_ms() - t0 >= 55);
    assert_true(arenas_settle(f));
    assert_int_equal(h_defers_run, 1);
    close(fd);
}

static void test_client_disconnect_cancels_async_request(void **state)
{
    h_fixture *f;
    nea_stats st;
    int fd;
    start(state, NULL);
    f = *state;
    fd = send_get(f, "/sleep/10000");
    h_pump(f, 30, NULL);
    assert_int_equal(arenas_in_use(f), 1);
    assert_int_equal(h_defers_run, 0);
    close(fd);
    assert_true(arenas_settle(f)); /* long before the 10 s timer */
    assert_int_equal(h_defers_run, 1);
    h_stats(f, &st);
    assert_int_equal(st.responses[2], 0);
    assert_int_equal(st.connections_open, 0);
}

/* --- lifecycle ---------------------------------------------------------------- */

static void test_graceful_close_finishes_inflight(void **state)
{
    h_fixture *f;
    h_response r;
    char v[32];
    int a, idle;
    start(state, NULL);
    f = *state;
    idle = send_get(f, "/hello");
    assert_int_equal(h_read(f, idle, &r, H_DEADLINE_MS), 200);
    a = send_get(f, "/sleep/150");
    h_pump(f, 20, NULL);
    h_close(f);
    assert_true(h_closed(f, idle, H_DEADLINE_MS)); /* idle ones go at once */
    assert_false(f->closed);
    assert_int_equal(h_read(f, a, &r, H_DEADLINE_MS), 200);
    assert_string_equal(h_header(&r, "connection", v, sizeof(v)), "close");
    assert_true(h_closed(f, a, H_DEADLINE_MS));
    h_pump(f, H_DEADLINE_MS, &f->closed);
    assert_true(f->closed);
    assert_int_equal(h_defers_run, 1);
    close(a);
    close(idle);
}

static void short_drain(nea_config *c)
{
    c->drain_timeout_ms = 150;
}

static void test_drain_deadline_cancels_stragglers(void **state)
{
    h_fixture *f;
    uint64_t t0;
    int a;
    start(state, short_drain);
    f = *state;
    a = send_get(f, "/sleep/20000");
    h_pump(f, 20, NULL);
    t0 = h_now_ms();
    h_close(f);
    h_pump(f, H_DEADLINE_MS, &f->closed);
    assert_true(f->closed);
    assert_true(h_now_ms() - t0 >= 140);
    assert_int_equal(h_defers_run, 1);
    assert_true(h_closed(f, a, H_DEADLINE_MS));
    close(a);
}

static void test_peer_closing_mid_response_cannot_kill_the_process(void **state)
{
    /* SIGPIPE at its default would end this test process on the server's
     * first write to a closed socket: the server must have ignored it. */
    h_fixture *f;
    int fd, small = 4096;
    struct sigaction sa;
    signal(SIGPIPE, SIG_DFL);
    start(state, NULL);
    f = *state;
    assert_int_equal(sigaction(SIGPIPE, NULL, &sa), 0);
    assert_true(sa.sa_handler == SIG_IGN);
    assert_true(strstr(f->log, "SIGPIPE") != NULL);
    fd = h_connect(f);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    h_sends(f, fd, "GET /big HTTP/1.1\r\nHost: x\r\n\r\nGET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    h_pump(f, 30, NULL);
    close(fd); /* with unread data: the server's next write fails */
    assert_true(arenas_settle(f));
    assert_int_equal(arenas_in_use(f), 0);
}

static void test_listen_errors(void **state)
{
    h_fixture *f;
    nea_server *other;
    nea_config cfg;
    start(state, NULL);
    f = *state;
    assert_int_equal(nea_server_listen(f->srv), NEA_ESTATE);
    h_config(&cfg);
    cfg.port = f->port; /* taken */
    cfg.log = NULL;
    assert_int_equal(nea_server_new(&f->loop, &cfg, &other), 0);
    assert_int_equal(nea_server_listen(other), UV_EADDRINUSE);
    assert_int_equal(nea_server_port(other), -1);
    nea_server_close(other, NULL, NULL);
    h_pump(f, 50, NULL);
}

static void ipv6(nea_config *c)
{
    c->host = "::1";
}

static void test_ipv6(void **state)
{
    h_fixture *f;
    h_response r;
    struct sockaddr_in6 a = {0};
    int fd;
    start(state, ipv6);
    f = *state;
    fd = socket(AF_INET6, SOCK_STREAM, 0);
    a.sin6_family = AF_INET6;
    a.sin6_port = htons((uint16_t)f->port);
    a.sin6_addr = in6addr_loopback;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        skip(); /* no IPv6 loopback on this machine */
    }
    h_sends(f, fd, "GET /hello HTTP/1.1\r\nHost: [::1]\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    close(fd);
}

static bool run_ready;

static void on_run_ready(nea_server *s, void *data)
{
    (void)data;
    run_ready = nea_server_port(s) > 0;
    raise(SIGTERM); /* nea_run drains and returns */
}

static void test_nea_run_drains_on_sigterm(void **state)
{
    static const nea_route routes[] = {{"GET", "/x", NULL, NULL, 0}};
    nea_config cfg;
    (void)state;
    h_config(&cfg);
    /* A route without a handler is refused before anything listens. */
    assert_int_equal(nea_run(&cfg, routes, 1, on_run_ready, NULL), UV_EINVAL);
    assert_false(run_ready);
    assert_int_equal(nea_run(&cfg, NULL, 0, on_run_ready, NULL), 0);
    assert_true(run_ready);
}

static int no_teardown(void **state)
{
    (void)state;
    return 0;
}

int main(void)
{
#define T(fn) cmocka_unit_test_teardown(fn, teardown)
    const struct CMUnitTest tests[] = {
        T(test_oom_is_isolated),
        T(test_503_when_arenas_exhausted_then_recovery),
        T(test_queued_request_gets_the_next_arena),
        T(test_long_queue_drains_in_order),
        T(test_full_queue_sheds_at_once),
        T(test_zero_queue_timeout_sheds_at_once),
        T(test_idle_and_slow_connections_hold_no_arena),
        T(test_idle_connection_evicted_for_new_one),
        T(test_no_slot_and_none_idle_gets_503),
        T(test_fresh_connection_is_never_evicted),
        T(test_idle_connection_with_waiting_request_is_kept),
        T(test_header_deadline_against_dripping_client),
        T(test_body_timeout),
        T(test_body_deadline_against_dripping_client),
        T(test_keepalive_timeout),
        T(test_slow_reader_is_cut),
        T(test_async_handler_completes_from_timer),
        T(test_client_disconnect_cancels_async_request),
        T(test_graceful_close_finishes_inflight),
        T(test_drain_deadline_cancels_stragglers),
        T(test_peer_closing_mid_response_cannot_kill_the_process),
        T(test_listen_errors),
        T(test_ipv6),
        cmocka_unit_test_teardown(test_nea_run_drains_on_sigterm, no_teardown),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
