/*
 * test_server.c - a server's lifecycle (server.c, listener.c, run.c):
 * graceful close and its drain deadline, nea_server_close twice and from
 * inside a handler, SIGPIPE, listen errors, IPv6, nea_run, and per-server
 * fault injection (arena, listen, accept).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "e2e.h"

/* --- lifecycle ---------------------------------------------------------------- */

static void test_graceful_close_finishes_inflight(void **state)
{
    h_fixture *f;
    h_response r;
    char v[32];
    int a, idle;
    h_test_start(state, NULL);
    f = *state;
    idle = h_get(f, "/hello");
    assert_int_equal(h_read(f, idle, &r, H_DEADLINE_MS), 200);
    a = h_get(f, "/sleep/150");
    H_WAIT(f, h_arenas_in_use(f) == 1); /* in its handler */
    h_close(f);
    assert_true(h_closed(f, idle, H_DEADLINE_MS)); /* idle ones go at once */
    assert_false(f->closed);
    assert_int_equal(h_read(f, a, &r, H_DEADLINE_MS), 200);
    assert_string_equal(h_header(&r, "connection", v, sizeof(v)), "close");
    assert_true(h_closed(f, a, H_DEADLINE_MS));
    h_pump(f, H_DEADLINE_MS, &f->closed);
    assert_true(f->closed);
    assert_int_equal(t_defers_run, 1);
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
    h_test_start(state, short_drain);
    f = *state;
    a = h_get(f, "/sleep/20000");
    H_WAIT(f, h_arenas_in_use(f) == 1); /* in its handler */
    t0 = h_now_ms();
    h_close(f);
    h_pump(f, H_DEADLINE_MS, &f->closed);
    assert_true(f->closed);
    assert_true(h_now_ms() - t0 >= 140);
    assert_int_equal(t_defers_run, 1);
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
    h_test_start(state, NULL);
    f = *state;
    assert_int_equal(sigaction(SIGPIPE, NULL, &sa), 0);
    assert_true(sa.sa_handler == SIG_IGN);
    assert_true(strstr(f->log.all, "SIGPIPE") != NULL);
    fd = h_connect(f);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    h_sends(f, fd, "GET /big HTTP/1.1\r\nHost: x\r\n\r\nGET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    H_WAIT(f, h_slots_in(f, NEA__C_WRITING) == 1); /* the first response is stuck */
    close(fd); /* with unread data: the server's next write fails */
    assert_true(h_arenas_settle(f));
    assert_int_equal(h_arenas_in_use(f), 0);
}

static void on_other_closed(nea_server *s, void *data)
{
    (void)s;
    (*(int *)data)++;
}

static void test_listen_errors(void **state)
{
    int other_closed = 0;
    h_fixture *f;
    nea_server *other;
    nea_config cfg;
    h_test_start(state, NULL);
    f = *state;
    assert_int_equal(nea_server_listen(f->srv), NEA_ESTATE);
    h_config(&cfg);
    cfg.port = f->port; /* taken */
    cfg.log = NULL;
    assert_int_equal(nea_server_new(&f->loop, &cfg, &other), 0);
    assert_int_equal(nea_server_listen(other), UV_EADDRINUSE);
    assert_int_equal(nea_server_port(other), -1);
    assert_int_equal(nea_server_close(other, on_other_closed, &other_closed), 0);
    H_WAIT(f, other_closed == 1);
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
    h_test_start(state, ipv6);
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
    static const nea_route routes[] = {{"GET", "/x", NULL, NULL, 0, 0, 0, 0, NULL}};
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

/* --- nea_server_close: once, and from inside a handler ---------------------------------- */

static int second_cb_runs;

static void second_cb(nea_server *s, void *data)
{
    (void)s;
    (void)data;
    second_cb_runs++;
}

/* nea_server_route_timeout names a registered route by its method and
 * path exactly. */
static void test_route_timeout_errors(void **state)
{
    h_fixture *f = *state;
    assert_int_equal(nea_server_route_timeout(f->srv, "GET", "/sleep/", 5000), 0);
    assert_int_equal(nea_server_route_timeout(f->srv, "GET", "/sleep/5", 5000), UV_ENOENT);
    assert_true(t_log_has(&f->log, "no route GET /sleep/5"));
    assert_int_equal(nea_server_route_timeout(f->srv, "DELETE", "/sleep/", 5000), UV_ENOENT);
    assert_int_equal(nea_server_route_timeout(f->srv, "get", "/hello", 5000), UV_ENOENT);
    assert_int_equal(nea_server_route_timeout(f->srv, NULL, "/hello", 5000), UV_EINVAL);
    assert_int_equal(nea_server_route_timeout(f->srv, "GET", NULL, 5000), UV_EINVAL);
}

static void test_close_twice(void **state)
{
    h_fixture *f;
    h_test_start(state, NULL);
    f = *state;
    second_cb_runs = 0;
    h_close(f);
    assert_int_equal(nea_server_close(f->srv, second_cb, NULL), NEA_ESTATE);
    assert_int_equal(nea_server_listen(f->srv), NEA_ESTATE);
    h_pump(f, H_DEADLINE_MS, &f->closed);
    assert_true(f->closed);
    assert_int_equal(f->closed_calls, 1);
    assert_int_equal(second_cb_runs, 0);
    /* h_stop: the first callback ran exactly once, and the loop closes. */
}

static void r_close_self(nea_req *req, void *d)
{
    h_fixture *f = d;
    f->close_called = true;
    f->close_rc = nea_server_close(f->srv, h_on_closed, f);
    f->close_rc2 = nea_server_close(f->srv, second_cb, NULL);
    nea_respond(req, 200, "text/plain", "bye", 3);
}

static void test_close_from_handler(void **state)
{
    h_fixture *f;
    h_response r;
    char v[32];
    int fd;
    h_test_start(state, NULL);
    f = *state;
    second_cb_runs = 0;
    assert_int_equal(nea_server_route(f->srv, "GET", "/close-self", r_close_self, f), 0);
    fd = h_get(f, "/close-self");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "bye");
    assert_string_equal(h_header(&r, "connection", v, sizeof(v)), "close");
    assert_true(h_closed(f, fd, H_DEADLINE_MS));
    close(fd);
    assert_int_equal(f->close_rc, 0);
    assert_int_equal(f->close_rc2, NEA_ESTATE);
    h_pump(f, H_DEADLINE_MS, &f->closed);
    assert_true(f->closed);
    assert_int_equal(f->closed_calls, 1);
    assert_int_equal(second_cb_runs, 0);
    /* h_stop asserts uv_loop_close() == 0. */
}

/* --- fault injection is per server --------------------------------------------------- */

static void test_fault_plans_are_per_server(void **state)
{
    h_fixture *f;
    h_response r;
    nea_server *other;
    nea_config cfg;
    t_log log;
    int fd, closed = 0, other_port;
    h_test_start(state, NULL);
    f = *state;
    h_config(&cfg);
    t_log_attach(&log, &cfg);
    assert_int_equal(nea_server_new(&f->loop, &cfg, &other), 0);
    t_routes_add(other);
    assert_int_equal(nea_server_listen(other), 0);
    other_port = nea_server_port(other);

    /* Every arena grant of the other server fails; this one is untouched. */
    nea__fault_arm(&other->fault, NEA__FAULT_ARENA, 1, true);
    assert_int_equal(h_request(f, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
    assert_int_equal(nea__fault_seen(&f->srv->fault, NEA__FAULT_ARENA), 0);
    assert_int_equal(nea__fault_failed(&f->srv->fault, NEA__FAULT_ARENA), 0);

    fd = s_connect(&f->loop, other_port);
    s_send(&f->loop, fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 33);
    assert_true(s_read(&f->loop, fd, &r, false, H_DEADLINE_MS) != 200);
    close(fd);
    assert_true(nea__fault_failed(&other->fault, NEA__FAULT_ARENA) >= 1);
    /* And this server still serves, with its own plan still clean. */
    assert_int_equal(h_request(f, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
    assert_int_equal(nea__fault_failed(&f->srv->fault, NEA__FAULT_ARENA), 0);

    nea__fault_arm(&other->fault, NEA__FAULT_ARENA, 0, false);
    assert_int_equal(nea_server_close(other, on_other_closed, &closed), 0);
    H_WAIT(f, closed == 1);
}

static void test_listen_fault(void **state)
{
    h_fixture *f;
    nea_server *other;
    nea_config cfg;
    t_log log;
    int closed = 0;
    h_test_start(state, NULL);
    f = *state;
    h_config(&cfg);
    t_log_attach(&log, &cfg);
    assert_int_equal(nea_server_new(&f->loop, &cfg, &other), 0);
    nea__fault_arm(&other->fault, NEA__FAULT_LISTEN, 1, false);
    assert_int_equal(nea_server_listen(other), UV_EADDRINUSE);
    assert_true(t_log_has(&log, "cannot listen on 127.0.0.1:0"));
    assert_int_equal(log.level, NEA_LOG_ERROR);
    assert_int_equal(nea_server_port(other), -1);
    assert_int_equal(nea__fault_failed(&f->srv->fault, NEA__FAULT_LISTEN), 0);
    /* The failed server still closes cleanly (h_stop then checks the loop). */
    assert_int_equal(nea_server_close(other, on_other_closed, &closed), 0);
    H_WAIT(f, closed == 1);
    assert_int_equal(closed, 1);
}

static void test_accept_fault_drops_one(void **state)
{
    h_fixture *f;
    h_response r;
    int a, b;
    h_test_start(state, NULL);
    f = *state;
    nea__fault_arm(&f->srv->fault, NEA__FAULT_ACCEPT, 1, false);
    a = h_get(f, "/hello");
    H_WAIT(f, nea__fault_failed(&f->srv->fault, NEA__FAULT_ACCEPT) == 1);
    b = h_get(f, "/p/second");
    assert_int_equal(h_read(f, b, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "second");
    /* Exactly one accept failed, and it was not the connection served. */
    assert_int_equal(nea__fault_failed(&f->srv->fault, NEA__FAULT_ACCEPT), 1);
    assert_true(h_closed(f, a, H_DEADLINE_MS));
    assert_int_equal(h_st(f).accepted, 1);
    close(a);
    close(b);
}

static void r_never_called(nea_req *req, void *d)
{
    (void)req;
    (void)d;
}

static int run_ready_calls;

/* Should the server listen after all, stop it the way an operator would. */
static void on_refused_run_ready(nea_server *s, void *data)
{
    (void)s;
    (void)data;
    run_ready_calls++;
    raise(SIGINT);
}

/* nea_run stops at a refused route, even with good routes after it, and
 * returns its error: nothing listens. */
static void test_run_refuses_bad_route(void **state)
{
    nea_config cfg;
    static const nea_route routes[] = {{"GET", "/ok", r_never_called, NULL, 0, 0, 0, 0, NULL},
                                       {"get", "/lower", r_never_called, NULL, 0, 0, 0, 0, NULL},
                                       {"GET", "/after", r_never_called, NULL, 0, 0, 0, 0, NULL}};
    (void)state;
    nea_config_init(&cfg);
    cfg.port = 0;
    cfg.memory_limit = 8u << 20;
    cfg.max_connections = 8;
    cfg.log = t_log_sink;
    {
        t_log log;
        t_log_attach(&log, &cfg);
        run_ready_calls = 0;
        assert_int_equal(nea_run(&cfg, routes, 3, on_refused_run_ready, NULL), NEA_EROUTE_METHOD);
        assert_true(t_log_has(&log, "route refused"));
        assert_int_equal(run_ready_calls, 0);
    }
}

/* nea_server_close from a host thread while the loop runs: handed to the
 * loop, which closes and calls back once; a second call from the loop's
 * thread is refused. */

static int thread_rc = 1;

static void close_on_thread(void *arg)
{
    h_fixture *f = arg;
    __atomic_store_n(&thread_rc, nea_server_close(f->srv, h_on_closed, f), __ATOMIC_RELEASE);
}

static void test_close_from_another_thread(void **state)
{
    h_fixture *f;
    h_response r;
    uv_thread_t t;
    int fd;
    h_test_start(state, NULL);
    f = *state;
    second_cb_runs = 0;
    fd = h_get(f, "/sleep/100"); /* in flight across the close */
    H_WAIT(f, h_arenas_in_use(f) == 1);
    f->close_called = true;
    assert_int_equal(uv_thread_create(&t, close_on_thread, f), 0);
    assert_int_equal(uv_thread_join(&t), 0);
    assert_int_equal(__atomic_load_n(&thread_rc, __ATOMIC_ACQUIRE), 0);
    assert_false(f->closed); /* begins on the loop, not on the calling thread */
    assert_int_equal(nea_server_close(f->srv, second_cb, NULL), NEA_ESTATE);
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "slept");
    close(fd);
    h_pump(f, H_DEADLINE_MS, &f->closed);
    assert_true(f->closed);
    assert_int_equal(f->closed_calls, 1);
    assert_int_equal(second_cb_runs, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_refuses_bad_route),
        cmocka_unit_test_teardown(test_graceful_close_finishes_inflight, h_test_teardown),
        cmocka_unit_test_teardown(test_drain_deadline_cancels_stragglers, h_test_teardown),
        cmocka_unit_test_teardown(test_peer_closing_mid_response_cannot_kill_the_process,
                                  h_test_teardown),
        cmocka_unit_test_teardown(test_listen_errors, h_test_teardown),
        cmocka_unit_test_teardown(test_ipv6, h_test_teardown),
        cmocka_unit_test_teardown(test_nea_run_drains_on_sigterm, no_teardown),
        cmocka_unit_test_setup_teardown(test_route_timeout_errors, h_test_setup, h_test_teardown),
        cmocka_unit_test_teardown(test_close_twice, h_test_teardown),
        cmocka_unit_test_teardown(test_close_from_another_thread, h_test_teardown),
        cmocka_unit_test_teardown(test_close_from_handler, h_test_teardown),
        cmocka_unit_test_teardown(test_fault_plans_are_per_server, h_test_teardown),
        cmocka_unit_test_teardown(test_listen_fault, h_test_teardown),
        cmocka_unit_test_teardown(test_accept_fault_drops_one, h_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
