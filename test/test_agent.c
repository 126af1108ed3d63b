/*
 * test_agent.c - what a load balancer sees (agent.c, and the drain and
 * readiness parts of server.c and admission.c): the weight arithmetic, the
 * agent's answers as arenas fill and free, "drain" from the first moment of
 * nea_server_close while the server still accepts and serves with
 * Connection: close, queued requests served through a drain, NEA_ROUTE_READY
 * answered without an arena, more agent connections than client handles,
 * and an agent port already taken.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "e2e.h"

/* --- the arithmetic ------------------------------------------------------------ */

static void test_free_share_is_the_scarcer_resource(void **state)
{
    nea__capacity cap = {.arenas = 10, .arenas_free = 10, .slots = 100};
    (void)state;
    assert_int_equal(nea__capacity_free(&cap), 100);
    cap.arenas_free = 4;
    assert_int_equal(nea__capacity_free(&cap), 40);
    cap.queued = 3; /* waiting heads will take free arenas first */
    assert_int_equal(nea__capacity_free(&cap), 10);
    cap.queued = 9;
    assert_int_equal(nea__capacity_free(&cap), 0);
    cap.queued = 0;
    cap.slots_busy = 80; /* slots scarcer than arenas */
    assert_int_equal(nea__capacity_free(&cap), 20);
    cap.slots_busy = 200;
    assert_int_equal(nea__capacity_free(&cap), 0);
    memset(&cap, 0, sizeof(cap)); /* nothing to count: all free */
    assert_int_equal(nea__capacity_free(&cap), 100);
}

static void test_agent_line(void **state)
{
    nea__capacity cap = {0};
    char line[NEA__AGENT_LINE];
    (void)state;
    assert_int_equal(nea__agent_line(&cap, 75, 100, line), strlen("up ready 75%\n"));
    assert_string_equal(line, "up ready 75%\n");
    nea__agent_line(&cap, 0, 100, line); /* never 0: a full server still gets a trickle */
    assert_string_equal(line, "up ready 1%\n");
    nea__agent_line(&cap, 250, 100, line);
    assert_string_equal(line, "up ready 100%\n");
    cap.shedding = true;
    nea__agent_line(&cap, 90, 100, line);
    assert_string_equal(line, "up ready 10%\n");
    nea__agent_line(&cap, 4, 100, line);
    assert_string_equal(line, "up ready 4%\n");
    cap.draining = true;
    assert_int_equal(nea__agent_line(&cap, 90, 100, line), 6);
    assert_string_equal(line, "drain\n");
}

/* HAProxy sets weight * N / 100, rounded down: the least N that still
 * leaves a weight of 1, for each configured weight; and no percentage at
 * all when the weight is not known. */
static void test_agent_line_never_zeroes_the_configured_weight(void **state)
{
    static const unsigned weights[] = {1, 2, 3, 7, 10, 33, 100, 256};
    nea__capacity cap = {0};
    char line[NEA__AGENT_LINE];
    (void)state;
    for (unsigned i = 0; i < sizeof(weights) / sizeof(weights[0]); i++) {
        unsigned wt = weights[i], pct = 0;
        for (unsigned free = 0; free <= 100; free += 5) {
            cap.shedding = free % 10 == 5;
            nea__agent_line(&cap, free, wt, line);
            assert_int_equal(sscanf(line, "up ready %u%%", &pct), 1);
            if (wt * pct / 100 < 1) {
                fail_msg("weight %u, free %u: \"%s\" rounds to weight 0", wt, free, line);
            }
        }
    }
    nea__agent_line(&cap, 40, 1, line);
    assert_string_equal(line, "up ready 100%\n"); /* HAProxy's default weight: up or drain */
    nea__agent_line(&cap, 40, 3, line);
    assert_string_equal(line, "up ready 40%\n");
    nea__agent_line(&cap, 20, 3, line);
    assert_string_equal(line, "up ready 34%\n");
    cap.shedding = false;
    for (unsigned free = 0; free <= 100; free += 25) {
        assert_int_equal(nea__agent_line(&cap, free, 0, line), 9);
        assert_string_equal(line, "up ready\n");
    }
    cap.draining = true;
    nea__agent_line(&cap, 40, 0, line);
    assert_string_equal(line, "drain\n");
}

/* --- end to end ----------------------------------------------------------------- */

static void with_agent(nea_config *c)
{
    c->agent_port = 0;
    c->agent_weight = 100;
    c->queue_timeout_ms = 5000;
}

static void with_agent_default_weight(nea_config *c)
{
    c->agent_port = 0;
    c->queue_timeout_ms = 5000;
}

static void with_agent_and_delay(nea_config *c)
{
    with_agent(c);
    c->drain_delay_ms = 60000; /* the tests end the announcement by closing */
}

/* The agent's whole answer (it closes after one line). */
static void agent_ask(h_fixture *f, char *buf, size_t len)
{
    int fd = s_connect(&f->loop, nea_server_agent_port(f->srv));
    assert_true(fd >= 0);
    assert_true(s_read_all(&f->loop, fd, buf, len, H_DEADLINE_MS) > 0);
    close(fd);
}

/* A blocking connect to 127.0.0.1:port succeeds. */
static bool port_accepts(int port)
{
    struct sockaddr_in a = {0};
    int fd = socket(AF_INET, SOCK_STREAM, 0), rc;
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
    close(fd);
    return rc == 0;
}

static unsigned agent_weight(h_fixture *f)
{
    char line[64];
    unsigned w = 0;
    agent_ask(f, line, sizeof(line));
    assert_int_equal(sscanf(line, "up ready %u%%", &w), 1);
    return w;
}

static bool weight_at_most(h_fixture *f, unsigned w)
{
    h_pump(f, 20, NULL);
    return agent_weight(f) <= w;
}

static bool weight_at_least(h_fixture *f, unsigned w)
{
    h_pump(f, 20, NULL);
    return agent_weight(f) >= w;
}

/* Requests that hold their arena until the test answers them. */
static nea_req *held[8];
static unsigned held_count;

static void r_hold(nea_req *req, void *data)
{
    (void)data;
    nea_req_keep(req);
    held[held_count++] = req;
}

static void test_weight_follows_free_arenas(void **state)
{
    h_fixture *f;
    int fd[4];
    h_response r;
    h_test_start(state, with_agent);
    f = *state;
    held_count = 0;
    assert_int_equal(nea_server_route(f->srv, "GET", "/hold", r_hold, NULL), 0);
    assert_true(nea_server_agent_port(f->srv) > 0);
    /* A fresh server answers its capacity at once: ramping it up is the
     * balancer's slowstart, never a weight that starts near 0. */
    assert_true(agent_weight(f) >= 90);
    for (int i = 0; i < 4; i++) { /* half of the 8 arenas */
        fd[i] = h_get(f, "/hold");
    }
    H_WAIT(f, held_count == 4);
    /* The average falls towards 50 and never below it. */
    H_WAIT(f, weight_at_most(f, 70));
    assert_true(agent_weight(f) >= 50);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(nea_respond(held[i], 200, "text/plain", "done", 4), 0);
        assert_int_equal(h_read(f, fd[i], &r, H_DEADLINE_MS), 200);
        close(fd[i]);
    }
    H_WAIT(f, weight_at_least(f, 90));
}

static void test_drain_is_announced_while_still_serving(void **state)
{
    h_fixture *f;
    h_response r;
    char line[64], v[32];
    nea_stats st;
    int idle, late, agent_port;
    h_test_start(state, with_agent_and_delay);
    f = *state;
    idle = h_connect(f);
    h_expect(f, idle, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 200, &r);
    agent_port = nea_server_agent_port(f->srv);
    h_close(f);
    /* The agent says drain at once ... */
    agent_ask(f, line, sizeof(line));
    assert_string_equal(line, "drain\n");
    /* ... while the idle keep-alive connection stays and its next request
     * is served, with Connection: close ... */
    assert_true(h_quiet(f, idle, 50));
    h_expect(f, idle, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 200, &r);
    assert_string_equal(h_header(&r, "connection", v, sizeof(v)), "close");
    assert_true(h_closed(f, idle, H_DEADLINE_MS));
    /* ... and new connections are still accepted and served. */
    late = h_connect(f);
    h_expect(f, late, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 200, &r);
    assert_string_equal(h_header(&r, "connection", v, sizeof(v)), "close");
    h_stats(f, &st);
    assert_int_equal(nea_stats_shed(&st), 0);
    assert_false(f->closed);
    close(idle);
    close(late);
    /* The announcement ends (here: at once) and the server closes, the
     * agent port with it. */
    nea__server_end_announcement(f->srv);
    h_pump(f, H_DEADLINE_MS, &f->closed);
    assert_true(f->closed);
    assert_false(port_accepts(agent_port));
}

static void test_queued_request_is_served_through_the_drain(void **state)
{
    h_fixture *f;
    h_response r;
    int fd[9];
    h_test_start(state, with_agent);
    f = *state;
    for (int i = 0; i < 8; i++) {
        fd[i] = h_get(f, "/sleep/200");
    }
    H_WAIT(f, h_arenas_in_use(f) == 8);
    fd[8] = h_get(f, "/hello");
    H_WAIT(f, h_st(f).queue_length == 1);
    h_close(f); /* no announcement: accepting stops at once */
    for (int i = 0; i < 9; i++) {
        assert_int_equal(h_read(f, fd[i], &r, H_DEADLINE_MS), 200);
        close(fd[i]);
    }
    h_pump(f, H_DEADLINE_MS, &f->closed);
    assert_true(f->closed);
}

static void test_ready_route_needs_no_arena(void **state)
{
    h_fixture *f;
    h_response r;
    char v[32];
    nea_stats st;
    int fd[8], probe;
    h_test_start(state, with_agent_and_delay);
    f = *state;
    assert_int_equal(nea_server_route_flags(f->srv, "GET", "/ready", NULL, NULL, NEA_ROUTE_READY),
                     0);
    for (int i = 0; i < 8; i++) { /* every arena busy, no reserve */
        fd[i] = h_get(f, "/sleep/300");
    }
    H_WAIT(f, h_arenas_in_use(f) == 8);
    probe = h_connect(f);
    h_expect(f, probe, "GET /ready HTTP/1.1\r\nHost: x\r\n\r\n", 200, &r);
    assert_string_equal(r.body, "ready\n");
    f->head_request = true;
    h_expect(f, probe, "HEAD /ready HTTP/1.1\r\nHost: x\r\n\r\n", 200, &r);
    f->head_request = false;
    assert_int_equal(r.body_len, 0);
    assert_int_equal(h_arenas_in_use(f), 8);
    h_close(f);
    h_expect(f, probe, "GET /ready HTTP/1.1\r\nHost: x\r\n\r\n", 503, &r);
    assert_non_null(h_header(&r, "retry-after", v, sizeof(v)));
    assert_true(h_closed(f, probe, H_DEADLINE_MS));
    h_stats(f, &st);
    assert_int_equal(st.shed_draining, 1);
    assert_int_equal(nea_stats_shed(&st), 1);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(h_read(f, fd[i], &r, H_DEADLINE_MS), 200);
        close(fd[i]);
    }
    close(probe);
    nea__server_end_announcement(f->srv);
    h_pump(f, H_DEADLINE_MS, &f->closed);
    assert_true(f->closed);
}

static void test_more_agent_connections_than_handles(void **state)
{
    enum { N = NEA__AGENT_CLIENTS * 3 };
    h_fixture *f;
    int fd[N];
    char line[64];
    h_test_start(state, with_agent);
    f = *state;
    for (int i = 0; i < N; i++) { /* all connected before the loop runs */
        fd[i] = s_connect(&f->loop, nea_server_agent_port(f->srv));
        assert_true(fd[i] >= 0);
    }
    for (int i = 0; i < N; i++) {
        assert_true(s_read_all(&f->loop, fd[i], line, sizeof(line), H_DEADLINE_MS) > 0);
        assert_true(strncmp(line, "up ready ", 9) == 0);
        close(fd[i]);
    }
    assert_int_equal(f->srv->agent.answered, N);
}

/* With the balancer's weight not known, the agent never answers a
 * percentage, however full the server: the configured weight (HAProxy's
 * default 1 included) stays, and only "drain" takes traffic away. */
static void test_unknown_weight_answers_no_percentage(void **state)
{
    h_fixture *f;
    int fd[8];
    char line[64];
    h_response r;
    h_test_start(state, with_agent_default_weight);
    f = *state;
    held_count = 0;
    assert_int_equal(nea_server_route(f->srv, "GET", "/hold", r_hold, NULL), 0);
    agent_ask(f, line, sizeof(line));
    assert_string_equal(line, "up ready\n");
    for (int i = 0; i < 8; i++) { /* every arena */
        fd[i] = h_get(f, "/hold");
    }
    H_WAIT(f, held_count == 8);
    h_pump(f, 300, NULL); /* the average falls */
    agent_ask(f, line, sizeof(line));
    assert_string_equal(line, "up ready\n");
    for (int i = 0; i < 8; i++) {
        assert_int_equal(nea_respond(held[i], 200, "text/plain", "done", 4), 0);
        assert_int_equal(h_read(f, fd[i], &r, H_DEADLINE_MS), 200);
        close(fd[i]);
    }
    h_close(f);
    agent_ask(f, line, sizeof(line));
    assert_string_equal(line, "drain\n");
}

static void on_other_closed(nea_server *s, void *data)
{
    (void)s;
    (*(int *)data)++;
}

static void test_agent_port_taken(void **state)
{
    h_fixture *f;
    nea_server *other;
    nea_config cfg;
    int other_closed = 0;
    h_test_start(state, with_agent);
    f = *state;
    h_config(&cfg);
    cfg.agent_port = nea_server_agent_port(f->srv); /* taken */
    cfg.log = NULL;
    assert_int_equal(nea_server_new(&f->loop, &cfg, &other), 0);
    assert_int_equal(nea_server_listen(other), UV_EADDRINUSE);
    assert_int_equal(nea_server_agent_port(other), -1);
    assert_int_equal(nea_server_port(other), -1); /* nothing listens */
    assert_int_equal(nea_server_close(other, on_other_closed, &other_closed), 0);
    H_WAIT(f, other_closed == 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_free_share_is_the_scarcer_resource),
        cmocka_unit_test(test_agent_line),
        cmocka_unit_test(test_agent_line_never_zeroes_the_configured_weight),
        cmocka_unit_test_teardown(test_unknown_weight_answers_no_percentage, h_test_teardown),
        cmocka_unit_test_teardown(test_weight_follows_free_arenas, h_test_teardown),
        cmocka_unit_test_teardown(test_drain_is_announced_while_still_serving, h_test_teardown),
        cmocka_unit_test_teardown(test_queued_request_is_served_through_the_drain, h_test_teardown),
        cmocka_unit_test_teardown(test_ready_route_needs_no_arena, h_test_teardown),
        cmocka_unit_test_teardown(test_more_agent_connections_than_handles, h_test_teardown),
        cmocka_unit_test_teardown(test_agent_port_taken, h_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
