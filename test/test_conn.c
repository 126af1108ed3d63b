/*
 * test_conn.c - the connection slot (conn.c) over real sockets: every
 * phase's deadline comes from its own row of the phase table, the
 * admission list each phase belongs to, a paused body's deadline moving
 * with the bytes that still arrive, lingering after a last answer,
 * the peer's address, a fresh connection's independence from the slot's
 * last one, and the connection buffers: an idle connection holds none,
 * newcomers wait for one in line (served in order, 503 at the deadline),
 * and a request in flight always finishes.
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
    uint64_t t_idle, t_head, t_busy, t_queued;
    int idle, head, busy, queued;

    h_test_start(state, distinct_deadlines);
    f = *state;
    /* Each clock starts when its own phase does (slow runs, valgrind, do
     * not move one deadline into the next one's window). */
    t_idle = h_now_ms();
    idle = h_connect(f);
    head = h_connect(f);
    t_head = h_now_ms();
    h_sends(f, head, "GET /hello HTTP/1.1\r\n");
    t_busy = h_now_ms();
    busy = h_get(f, "/sleep/100000"); /* the handler never answers in time */
    H_WAIT(f, h_arenas_in_use(f) == 1);
    t_queued = h_now_ms();
    queued = h_get(f, "/hello");
    assert_true(h_closed(f, idle, H_DEADLINE_MS));
    assert_true(h_now_ms() - t_idle >= 140 && h_now_ms() - t_idle < 300);
    assert_int_equal(h_read(f, queued, &r, H_DEADLINE_MS), 503);
    assert_true(h_now_ms() - t_queued >= 290 && h_now_ms() - t_queued < 450);
    assert_int_equal(h_read(f, head, &r, H_DEADLINE_MS), 408);
    assert_true(h_now_ms() - t_head >= 440 && h_now_ms() - t_head < 600);
    assert_int_equal(h_read(f, busy, &r, H_DEADLINE_MS), 504);
    assert_true(h_now_ms() - t_busy >= 590);
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
    assert_int_equal(nea__conn_list_of(NEA__C_WAITBUF), NEA__LIST_BUFFER);
    /* A WebSocket message waits for an arena in the same queues, and for a
     * buffer in the same line; a WebSocket close gives way like a linger. */
    assert_int_equal(nea__conn_list_of(NEA__C_WS_QUEUED), NEA__LIST_WAIT);
    assert_int_equal(nea__conn_list_of(NEA__C_WS_WAITBUF), NEA__LIST_BUFFER);
    assert_int_equal(nea__conn_list_of(NEA__C_WS_CLOSING), NEA__LIST_LINGER);
    for (int st = 0; st < NEA__C_PHASES; st++) {
        if (st != NEA__C_IDLE && st != NEA__C_QUEUED && st != NEA__C_LINGER &&
            st != NEA__C_WAITBUF && st != NEA__C_WS_QUEUED && st != NEA__C_WS_WAITBUF &&
            st != NEA__C_WS_CLOSING) {
            assert_int_equal(nea__conn_list_of((nea__conn_state)st), NEA__LIST_NONE);
        }
    }
    /* Whose phase each is: the WebSocket phases are wsconn.c's. */
    for (int st = 0; st < NEA__C_PHASES; st++) {
        assert_int_equal(nea__conn_owner_of((nea__conn_state)st),
                         st >= NEA__C_WS_IDLE ? NEA__OWNER_WS : NEA__OWNER_HTTP);
    }
}

/* --- the body's deadline moves with its bytes ------------------------------------- */

/* POST /held-body: takes its body in pieces and pauses on the first one
 * for HELD_MS (a tracked timer), then answers "bytes=N". */
#define HELD_MS 600

typedef struct held_body {
    nea_req *req;
    uv_timer_t *timer;
    size_t bytes;
    bool paused_once;
} held_body;

static void held_resume(uv_timer_t *t)
{
    held_body *h = t->data;
    nea_body_resume(h->req);
}

static void held_piece(nea_req *req, const char *data, size_t len, void *arg)
{
    held_body *h = arg;
    if (data == NULL) {
        char *answer = nea_printf(req, "bytes=%zu", h->bytes);
        assert_int_equal(nea_respond(req, 200, "text/plain", answer, strlen(answer)), 0);
        return;
    }
    h->bytes += len;
    if (!h->paused_once) {
        h->paused_once = true;
        nea_body_pause(req);
        uv_timer_start(h->timer, held_resume, HELD_MS, 0);
    }
}

static void r_held_body(nea_req *req, void *data)
{
    held_body *h = nea_alloc(req, sizeof(*h));
    (void)data;
    memset(h, 0, sizeof(*h));
    h->req = req;
    h->timer = nea_req_timer(req);
    h->timer->data = h;
    assert_int_equal(nea_body_read(req, held_piece, h), 0);
}

static void short_body_idle(nea_config *cfg)
{
    cfg->body_timeout_ms = 250;
}

/* The handler pauses its body for 600 ms while the client goes on sending
 * a byte every 100 ms: the body is never idle for body_timeout_ms (250),
 * so its deadline, re-read from the bytes that arrived when it comes due,
 * keeps moving, and the whole body is answered. */
static void test_paused_body_of_a_sending_client_is_not_cut(void **state)
{
    h_fixture *f;
    h_response r;
    int fd, status = -1;
    h_test_start(state, short_body_idle);
    f = *state;
    assert_int_equal(
        nea_server_route_stream(f->srv, "POST", "/held-body", r_held_body, NULL, 0, 1u << 20), 0);
    fd = h_connect(f);
    h_sends(f, fd, "POST /held-body HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\na");
    for (int i = 0; i < 9 && status < 0; i++) {
        status = h_read(f, fd, &r, 100);
        if (status < 0) {
            h_send(f, fd, "b", 1);
        }
    }
    if (status < 0) {
        status = h_read(f, fd, &r, H_DEADLINE_MS);
    }
    assert_int_equal(status, 200);
    assert_string_equal(r.body, "bytes=10");
    assert_int_equal(h_st(f).timeouts, 0);
    close(fd);
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
    assert_int_equal(nea__conn_peer(c)->sa_family, AF_INET);
    assert_int_equal(((const struct sockaddr_in *)nea__conn_peer(c))->sin_addr.s_addr,
                     htonl(INADDR_LOOPBACK));
    memset(&other, 0, sizeof(other));
    other.ss_family = AF_INET;
    ((struct sockaddr_in *)&other)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(nea__conn_same_peer(c, (const struct sockaddr *)&other));
    ((struct sockaddr_in *)&other)->sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1);
    assert_false(nea__conn_same_peer(c, (const struct sockaddr *)&other));
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

/* --- connection buffers ------------------------------------------------------------ */

static unsigned buffers_in_use(h_fixture *f)
{
    return h_st(f).conn_buffers_in_use;
}

/* A keep-alive connection between requests holds no buffer: only its slot. */
static void test_idle_connection_holds_no_buffer(void **state)
{
    h_fixture *f = *state;
    h_response r;
    int fd = h_connect(f);
    for (int i = 0; i < 3; i++) {
        h_expect(f, fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 200, &r);
        H_WAIT(f, buffers_in_use(f) == 0);
    }
    assert_int_equal(h_st(f).connections_open, 1);
    /* A partial head holds one. */
    h_sends(f, fd, "GET /hello HTTP/1.1\r\n");
    H_WAIT(f, buffers_in_use(f) == 1);
    h_expect(f, fd, "Host: x\r\n\r\n", 200, &r);
    H_WAIT(f, buffers_in_use(f) == 0);
    close(fd);
}

static void two_buffers(nea_config *cfg)
{
    cfg->max_connections = 8;
    cfg->conn_buffers = 2;
    cfg->header_timeout_ms = 3000;
}

/* Both buffers held by partial heads: newcomers with something to say wait
 * in line, first come first served, and are answered as buffers return. */
static void test_buffer_waiters_are_served_in_order(void **state)
{
    h_fixture *f;
    h_response r;
    int a, b, c, d;
    h_test_start(state, two_buffers);
    f = *state;
    a = h_connect(f);
    h_sends(f, a, "GET /p/a HTTP/1.1\r\n");
    b = h_connect(f);
    h_sends(f, b, "GET /p/b HTTP/1.1\r\n");
    H_WAIT(f, buffers_in_use(f) == 2);
    c = h_get(f, "/sleep/300"); /* once it has a buffer, holds it 300 ms */
    H_WAIT(f, h_st(f).buffer_waiters == 1);
    d = h_get(f, "/p/d");
    H_WAIT(f, h_st(f).buffer_waiters == 2);
    assert_true(h_quiet(f, c, 50)); /* waiting, not refused */
    /* a finishes: its buffer goes to c, the first in line, not to d. */
    h_expect(f, a, "Host: x\r\n\r\n", 200, &r);
    H_WAIT(f, h_slots_in(f, NEA__C_HANDLER) == 1); /* c's handler runs */
    assert_int_equal(h_st(f).buffer_waiters, 1);     /* d still waits */
    assert_true(h_quiet(f, d, 50));
    /* b finishes: d gets that one, and is answered while c still sleeps. */
    h_expect(f, b, "Host: x\r\n\r\n", 200, &r);
    assert_int_equal(h_read(f, d, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "d");
    assert_int_equal(h_read(f, c, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "slept");
    assert_int_equal(h_st(f).shed_no_buffer, 0);
    close(a);
    close(b);
    close(c);
    close(d);
}

static void one_buffer_short_wait(nea_config *cfg)
{
    cfg->max_connections = 8;
    cfg->conn_buffers = 1;
    cfg->header_timeout_ms = 200;
}

/* No buffer within header_timeout_ms: the pre-built 503 with Retry-After,
 * and the connection closes. The holder is cut by the same deadline. */
static void test_buffer_wait_has_a_deadline(void **state)
{
    h_fixture *f;
    h_response r;
    char v[16];
    int holder, waiter;
    uint64_t t0;
    h_test_start(state, one_buffer_short_wait);
    f = *state;
    holder = h_connect(f);
    h_sends(f, holder, "GET /hello HTTP/1.1\r\n");
    H_WAIT(f, buffers_in_use(f) == 1);
    t0 = h_now_ms();
    waiter = h_get(f, "/hello");
    assert_int_equal(h_read(f, waiter, &r, H_DEADLINE_MS), 503);
    assert_true(h_now_ms() - t0 >= 150);
    assert_string_equal(h_header(&r, "Retry-After", v, sizeof(v)), "1");
    assert_string_equal(h_header(&r, "Connection", v, sizeof(v)), "close");
    assert_true(h_closed(f, waiter, H_DEADLINE_MS));
    assert_int_equal(h_st(f).shed_no_buffer, 1);
    assert_int_equal(h_read(f, holder, &r, H_DEADLINE_MS), 408); /* its own deadline */
    close(holder);
    close(waiter);
    /* The buffer is back: the next one is served. */
    assert_int_equal(h_request(f, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
}

static void one_buffer(nea_config *cfg)
{
    cfg->max_connections = 8;
    cfg->conn_buffers = 1;
}

/* A request in flight holds its buffer from its head to its answer, so it
 * always finishes, whoever waits: a slow reader of a big answer, then the
 * waiters in turn. */
static void test_admitted_requests_always_finish(void **state)
{
    h_fixture *f;
    h_response r;
    int big, w1, w2;
    h_test_start(state, one_buffer);
    f = *state;
    big = h_get(f, "/big");
    H_WAIT(f, h_slots_in(f, NEA__C_WRITING) == 1); /* the client does not read yet */
    w1 = h_get(f, "/hello");
    w2 = h_get(f, "/sleep/10");
    H_WAIT(f, h_st(f).buffer_waiters == 2);
    assert_true(s_drain(&f->loop, big, t_big_len, H_DEADLINE_MS));
    assert_int_equal(h_read(f, w1, &r, H_DEADLINE_MS), 200);
    assert_int_equal(h_read(f, w2, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "slept");
    close(big);
    close(w1);
    close(w2);
}

/* Steady keep-alive traffic touches no deadline list: each phase's
 * deadline is later than the entry's, which stays put (and would fire
 * early once, then move); the slot's own deadline follows the phase. */
static void test_requests_leave_the_deadline_entry_in_place(void **state)
{
    h_fixture *f = *state;
    h_response r;
    nea__conn *c;
    uint64_t entry, due;
    int fd = h_connect(f);
    h_expect(f, fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 200, &r);
    H_WAIT(f, (c = slot_in(f, NEA__C_IDLE)) != NULL);
    assert_true(c->deadline.linked);
    entry = c->deadline.due;
    due = c->due;
    h_pump(f, 20, NULL); /* the loop's clock moves on */
    for (int i = 0; i < 5; i++) {
        h_expect(f, fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 200, &r);
    }
    H_WAIT(f, c->state == NEA__C_IDLE);
    assert_int_equal(c->deadline.due, entry); /* not moved */
    assert_true(c->due > due);                /* the keep-alive deadline moved on */
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_each_phase_has_its_own_deadline, h_test_teardown),
        cmocka_unit_test(test_phase_lists),
        cmocka_unit_test_teardown(test_paused_body_of_a_sending_client_is_not_cut, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_requests_leave_the_deadline_entry_in_place,
                                        h_test_setup, h_test_teardown),
        cmocka_unit_test_teardown(test_route_response_timeout, h_test_teardown),
        cmocka_unit_test_teardown(test_route_timeout_between_pieces, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_lingers_until_the_peer_closes, h_test_setup,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_peer_address, h_test_setup, h_test_teardown),
        cmocka_unit_test_teardown(test_fresh_connection_does_not_inherit_a_head, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_idle_connection_holds_no_buffer, h_test_setup,
                                        h_test_teardown),
        cmocka_unit_test_teardown(test_buffer_waiters_are_served_in_order, h_test_teardown),
        cmocka_unit_test_teardown(test_buffer_wait_has_a_deadline, h_test_teardown),
        cmocka_unit_test_teardown(test_admitted_requests_always_finish, h_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
