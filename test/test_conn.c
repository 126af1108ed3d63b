/*
 * test_conn.c - the connection slot (conn.c) over real sockets: every
 * phase's deadline comes from its own row of the phase table, the
 * admission list each phase belongs to, lingering after a last answer,
 * the peer's address, and a fresh connection's independence from the
 * slot's last one.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "e2e.h"
#include "strict.h"

#include <stdio.h>
#include <stdlib.h>

static nea__conn *slot_in(h_fixture *f, nea__conn_state st)
{
    for (unsigned i = 0; i < f->srv->admission.count; i++) {
        if (h_slot(f, i)->state == st) {
            return h_slot(f, i);
        }
    }
    return NULL;
}

/* --- the phase table ------------------------------------------------------------ */

static void distinct_deadlines(nea_config *cfg)
{
    cfg->keepalive_timeout_ms = 150;
    cfg->header_timeout_ms = 450;
    cfg->arena_count = 1;
    cfg->queue_timeout_ms = 300;
    cfg->response_timeout_ms = 600;
}

/* Each phase is cut by its own config field: an idle connection at the
 * keep-alive deadline, a head at the header deadline, a queued head at the
 * queue timeout, a handler at the response timeout. Every deadline is far
 * from the others, so a row reading the wrong field is caught. */
static void test_each_phase_has_its_own_deadline(void **state)
{
    h_fixture *f;
    h_response r;
    uint64_t t0;
    int idle, head, busy, queued;

    h_test_start(state, distinct_deadlines);
    f = *state;
    t0 = h_now_ms();
    idle = h_connect(f);
    head = h_connect(f);
    h_sends(f, head, "GET /hello HTTP/1.1\r\n");
    busy = h_get(f, "/sleep/100000"); /* the handler never answers in time */
    H_WAIT(f, h_arenas_in_use(f) == 1);
    queued = h_get(f, "/hello");
    assert_true(h_closed(f, idle, H_DEADLINE_MS));
    assert_true(h_now_ms() - t0 >= 140 && h_now_ms() - t0 < 300);
    assert_int_equal(h_read(f, queued, &r, H_DEADLINE_MS), 503);
    assert_true(h_now_ms() - t0 >= 290 && h_now_ms() - t0 < 450);
    assert_int_equal(h_read(f, head, &r, H_DEADLINE_MS), 408);
    assert_true(h_now_ms() - t0 >= 440 && h_now_ms() - t0 < 600);
    assert_int_equal(h_read(f, busy, &r, H_DEADLINE_MS), 504);
    assert_true(h_now_ms() - t0 >= 590);
    close(idle);
    close(head);
    close(busy);
    close(queued);
}

static void test_phase_lists(void **state)
{
    (void)state;
    assert_int_equal(nea__conn_list_of(NEA__C_IDLE), NEA__LIST_IDLE);
    assert_int_equal(nea__conn_list_of(NEA__C_QUEUED), NEA__LIST_WAIT);
    assert_int_equal(nea__conn_list_of(NEA__C_LINGER), NEA__LIST_LINGER);
    for (int st = 0; st < NEA__C_PHASES; st++) {
        if (st != NEA__C_IDLE && st != NEA__C_QUEUED && st != NEA__C_LINGER) {
            assert_int_equal(nea__conn_list_of((nea__conn_state)st), NEA__LIST_NONE);
        }
    }
}

/* --- per-route response timeouts ------------------------------------------------- */

/* GET /tick/N: a streamed (chunked) response of N lines "tick K\n", one
 * every TICK_MS, the producer waiting on a tracked timer between pieces
 * (the STREAM phase). */
#define TICK_MS 150

typedef struct ticker {
    unsigned left;
    char line[32];
    nea_req *req;
    uv_timer_t *timer;
} ticker;

static void tick_write(nea_req *req, void *arg);

static void on_tick(uv_timer_t *t)
{
    ticker *k = t->data;
    nea_req_run(k->req, tick_write, k);
}

static void tick_written(nea_req *req, void *arg)
{
    ticker *k = arg;
    (void)req;
    uv_timer_start(k->timer, on_tick, TICK_MS, 0);
}

static void tick_write(nea_req *req, void *arg)
{
    ticker *k = arg;
    int n;
    if (k->left == 0) {
        assert_int_equal(nea_stream_end(req), 0);
        return;
    }
    n = snprintf(k->line, sizeof(k->line), "tick %u\n", --k->left);
    assert_int_equal(nea_stream_write(req, k->line, (size_t)n, tick_written, k), 0);
}

static void r_tick(nea_req *req, void *data)
{
    ticker *k = nea_alloc(req, sizeof(*k));
    (void)data;
    k->left = (unsigned)strtoul(nea_req_path_tail(req), NULL, 10);
    k->req = req;
    k->timer = nea_req_timer(req);
    k->timer->data = k;
    assert_int_equal(nea_stream_start(req, 200, "text/plain", NEA_LENGTH_UNKNOWN), 0);
    tick_write(req, k);
}

static void tight_default(nea_config *cfg)
{
    cfg->response_timeout_ms = 100;
}

/* The HANDLER phase's deadline is the route's response timeout when it has
 * one (longer or shorter than the config's), else the config's. */
static void test_route_response_timeout(void **state)
{
    h_fixture *f;
    h_response r;
    uint64_t t0;
    h_test_start(state, tight_default);
    f = *state;

    /* The config's 100 ms: /sleep/250 gets its 504, logged with 100. */
    assert_int_equal(h_request(f, "GET /sleep/250 HTTP/1.1\r\nHost: x\r\n\r\n", &r), 504);
    assert_true(t_log_has(&f->log, "within response_timeout_ms (100)"));

    /* Its own 1000 ms: answered. */
    assert_int_equal(nea_server_route_timeout(f->srv, "GET", "/sleep/", 1000), 0);
    t0 = h_now_ms();
    assert_int_equal(h_request(f, "GET /sleep/250 HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
    assert_true(h_now_ms() - t0 >= 240);
    assert_string_equal(r.body, "slept");

    /* Its own 40 ms, tighter than the config's: 504 although 90 ms is
     * within the config's 100. */
    assert_int_equal(nea_server_route_timeout(f->srv, "GET", "/sleep/", 40), 0);
    assert_int_equal(h_request(f, "GET /sleep/90 HTTP/1.1\r\nHost: x\r\n\r\n", &r), 504);
    assert_true(t_log_has(&f->log, "within response_timeout_ms (40)"));
    /* Other routes keep the config's. */
    assert_int_equal(h_request(f, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);

    /* 0: the config's again. */
    assert_int_equal(nea_server_route_timeout(f->srv, "GET", "/sleep/", 0), 0);
    assert_int_equal(h_request(f, "GET /sleep/250 HTTP/1.1\r\nHost: x\r\n\r\n", &r), 504);
    assert_int_equal(h_st(f).unanswered, 3);
}

/* The STREAM phase (the producer's turn between pieces) takes the route's
 * timeout too: a 150 ms gap between pieces is cut under the config's
 * 100 ms, and kept under the route's own 1000 ms, set with
 * nea_server_route_timeout or the nea_route field. */
static void test_route_timeout_between_pieces(void **state)
{
    nea_route own = {
        .method = "GET", .path = "/tick-own/", .fn = r_tick, .response_timeout_ms = 1000};
    h_fixture *f;
    t_strict r;
    int fd;
    h_test_start(state, tight_default);
    f = *state;
    assert_int_equal(nea_server_route(f->srv, "GET", "/tick/", r_tick, NULL), 0);
    assert_int_equal(nea_server_add_route(f->srv, &own), 0);

    /* The config's 100 ms: the first line, then the connection is cut. */
    fd = h_connect(f);
    assert_int_equal(
        t_strict_fetch(&f->loop, fd, "GET /tick/3 HTTP/1.1\r\nHost: x\r\n\r\n", &r, false), -1);
    assert_true(r.eof);
    assert_int_equal(r.body_len, 7); /* "tick 2\n" */
    close(fd);
    assert_true(h_arenas_settle(f));
    assert_int_equal(h_st(f).timeouts, 1);

    /* The route's own, from the nea_route field: all three lines, and the
     * connection stays open. */
    fd = h_connect(f);
    assert_int_equal(
        t_strict_fetch(&f->loop, fd, "GET /tick-own/3 HTTP/1.1\r\nHost: x\r\n\r\n", &r, false),
        200);
    assert_int_equal(r.body_len, 21);
    /* The same from nea_server_route_timeout. */
    assert_int_equal(nea_server_route_timeout(f->srv, "GET", "/tick/", 1000), 0);
    assert_int_equal(
        t_strict_fetch(&f->loop, fd, "GET /tick/2 HTTP/1.1\r\nHost: x\r\n\r\n", &r, false), 200);
    assert_int_equal(r.body_len, 14);
    close(fd);
    assert_int_equal(h_st(f).timeouts, 1);
}

/* --- lingering ------------------------------------------------------------------- */

/* After its last answer the connection lingers (reading what the peer
 * still sends) until the peer closes. */
static void test_lingers_until_the_peer_closes(void **state)
{
    h_fixture *f = *state;
    h_response r;
    int fd = h_connect(f);
    /* 404 with a body: the body is not read, so the connection closes
     * after the answer, lingering. */
    h_sends(f, fd, "POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 404);
    H_WAIT(f, slot_in(f, NEA__C_LINGER) != NULL);
    h_sends(f, fd, "hello"); /* read and dropped: it still lingers */
    h_pump(f, 30, NULL);
    assert_non_null(slot_in(f, NEA__C_LINGER));
    close(fd);
    H_WAIT(f, slot_in(f, NEA__C_LINGER) == NULL);
    assert_int_equal(h_st(f).connections_open, 0);
}

/* --- the peer -------------------------------------------------------------------- */

static void test_peer_address(void **state)
{
    h_fixture *f = *state;
    nea__conn *c;
    struct sockaddr_storage other;
    int fd = h_connect(f);
    H_WAIT(f, (c = slot_in(f, NEA__C_IDLE)) != NULL);
    assert_int_equal(nea__conn_peer(c)->ss_family, AF_INET);
    assert_int_equal(((const struct sockaddr_in *)nea__conn_peer(c))->sin_addr.s_addr,
                     htonl(INADDR_LOOPBACK));
    memset(&other, 0, sizeof(other));
    other.ss_family = AF_INET;
    ((struct sockaddr_in *)&other)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(nea__conn_same_peer(c, &other));
    ((struct sockaddr_in *)&other)->sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1);
    assert_false(nea__conn_same_peer(c, &other));
    close(fd);
}

/* --- a fresh connection owes nothing to the slot's last one ------------------ */

static void one_slot(nea_config *cfg)
{
    cfg->max_connections = 1;
}

static void test_fresh_connection_does_not_inherit_a_head(void **state)
{
    h_fixture *f;
    h_response r;
    char v[32];
    int fd;
    h_test_start(state, one_slot);
    f = *state;
    fd = h_connect(f);
    h_sends(f, fd, "HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    f->head_request = true;
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    f->head_request = false;
    close(fd);
    H_WAIT(f, h_slot(f, 0)->state == NEA__C_FREE);
    /* The same slot, a new connection, refused before it sent a byte: its
     * 503 carries its body (it answers no HEAD). */
    fd = h_connect(f);
    H_WAIT(f, h_slot(f, 0)->state == NEA__C_IDLE);
    nea__conn_shed(h_slot(f, 0), false);
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 503);
    assert_string_equal(h_header(&r, "Content-Length", v, sizeof(v)), "51");
    assert_int_equal(r.body_len, 51);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_each_phase_has_its_own_deadline, h_test_teardown),
        cmocka_unit_test(test_phase_lists),
        cmocka_unit_test_teardown(test_route_response_timeout, h_test_teardown),
        cmocka_unit_test_teardown(test_route_timeout_between_pieces, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_lingers_until_the_peer_closes, h_test_setup,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_peer_address, h_test_setup, h_test_teardown),
        cmocka_unit_test_teardown(test_fresh_connection_does_not_inherit_a_head, h_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
