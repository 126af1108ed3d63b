/*
 * test_wsconn.c - WebSocket connections (wsconn.c) over real sockets on
 * 127.0.0.1: a strict client of the tests' own (support/wsclient.c, built
 * on the protocol core in client mode, which fails the test on any server
 * frame RFC 6455 forbids) and python3's websockets (Debian's
 * python3-websockets, a second implementation) against WebSocket routes.
 *
 * The handshake (101 and every refusal, accept, subprotocols); messages
 * echoed whole whatever their size and however the client cuts its bytes
 * (every offset, one byte at a time); the rules that close a connection
 * (masking, reserved bits, UTF-8 across fragments, 1009 before the payload
 * is read); pings answered, the close handshake both ways; what an idle
 * connection holds (its slot: no buffer, no arena); the ping and pong
 * deadlines; a message's pace (too slow: 1008; slow but steady: served);
 * a client that stops reading while the server sends (UV_EAGAIN,
 * on_drain, then the write deadline); a reset mid-message; a send through
 * a reference after the client left; out of memory in a message; kept
 * messages and their deadline; messages in pieces larger than the arena
 * (one message however many pieces; out of memory at a piece drops the
 * rest of its message only); no arena for a message (queued, then 1013); the drain (1001); the
 * metrics.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "e2e.h"
#include "wsclient.h"

/* --- the routes ------------------------------------------------------------------ */

/* What the routes saw. */
static struct {
    unsigned opened, closed, messages, defers;
    unsigned close_codes[16];
    unsigned eagain, drained, oom_survived;
    nea_wsref ref;   /* the last connection opened on /ws/ref */
    char origin[64]; /* open read the upgrade's Origin */
    uint64_t piece_bytes, pieces;
    uint32_t piece_fnv;
    size_t flood_size; /* /ws/flood: the frame size */
    unsigned flood_sent;
} seen;

static void reset_seen(void)
{
    memset(&seen, 0, sizeof(seen));
}

static void on_close(nea_ws *ws, unsigned code, void *data)
{
    (void)ws;
    (void)data;
    if (seen.closed < 16) {
        seen.close_codes[seen.closed] = code;
    }
    seen.closed++;
}

static void count_defer(void *arg)
{
    (void)arg;
    seen.defers++;
}

static void on_open(nea_ws *ws, nea_req *upgrade, void *data)
{
    const char *origin = nea_req_header(upgrade, "Origin");
    (void)data;
    seen.opened++;
    snprintf(seen.origin, sizeof(seen.origin), "%s", origin != NULL ? origin : "");
    seen.ref = nea_ws_ref(ws);
}

/* /ws/echo: every message back as it came (a binary one after trying to
 * send text that is not UTF-8). */
static void echo_message(nea_ws *ws, nea_req *msg, const nea_ws_msg *m, void *data)
{
    (void)data;
    seen.messages++;
    assert_int_equal(nea_req_defer(msg, count_defer, NULL), 0);
    assert_true(m->last);
    assert_int_equal(m->data[m->len], '\0');
    assert_int_equal(nea_respond(msg, 200, NULL, NULL, 0), NEA_ESTATE);
    if (m->opcode == NEA_WS_BINARY) {
        /* Text that is not UTF-8 is refused, and nothing is sent. */
        assert_int_equal(nea_ws_send(ws, NEA_WS_TEXT, "ok\xc3", 3), UV_EINVAL);
    }
    assert_int_equal(nea_ws_send(ws, m->opcode, m->data, m->len), 0);
}

static const nea_ws_route echo_route = {
    .open = on_open, .message = echo_message, .close = on_close};

/* /ws/acc: refuses without "X-Token: ok"; picks the "chat" subprotocol when
 * offered. */
static int acc_accept(nea_req *upgrade, void *data)
{
    const char *token = nea_req_header(upgrade, "X-Token");
    const char *protocols = nea_req_header(upgrade, "Sec-WebSocket-Protocol");
    (void)data;
    if (token == NULL || strcmp(token, "ok") != 0) {
        return 403;
    }
    if (protocols != NULL && strstr(protocols, "chat") != NULL) {
        assert_int_equal(nea_resp_header(upgrade, "Sec-WebSocket-Protocol", "chat"), 0);
    }
    return 0;
}

static const nea_ws_route acc_route = {
    .accept = acc_accept, .open = on_open, .message = echo_message, .close = on_close};

/* /ws/small: at most 16 bytes a message. */
static const nea_ws_route small_route = {
    .open = on_open, .message = echo_message, .close = on_close, .max_message = 16};

/* /ws/oom: "oom" asks for more than the arena; "protect" does so inside
 * nea_req_protect and answers "survived"; anything else is echoed. */
static void greedy(nea_req *req, void *arg)
{
    (void)arg;
    (void)nea_alloc(req, (size_t)1 << 40);
}

static void oom_message(nea_ws *ws, nea_req *msg, const nea_ws_msg *m, void *data)
{
    (void)data;
    assert_int_equal(nea_req_defer(msg, count_defer, NULL), 0);
    if (strcmp(m->data, "oom") == 0) {
        (void)nea_alloc(msg, (size_t)1 << 40);
        fail_msg("nea_alloc returned after exhausting the arena");
    }
    if (strcmp(m->data, "protect") == 0) {
        assert_int_equal(nea_req_protect(msg, greedy, NULL), NEA_ENOMEM);
        seen.oom_survived++;
        assert_int_equal(nea_ws_send(ws, NEA_WS_TEXT, "survived", 8), 0);
        return;
    }
    assert_int_equal(nea_ws_send(ws, m->opcode, m->data, m->len), 0);
}

static const nea_ws_route oom_route = {.open = on_open, .message = oom_message, .close = on_close};

/* /ws/keep: the answer comes from a tracked timer "N" ms later ("never":
 * no answer, the message is kept until response_timeout_ms). The timer
 * finds the connection through a reference kept in the message's arena. */
typedef struct keep_ctx {
    nea_req *msg;
    nea_wsref ref;
} keep_ctx;

static void keep_answer(nea_req *msg, void *arg)
{
    keep_ctx *k = arg;
    nea_ws *ws = nea_ref_ws(k->ref);
    assert_non_null(ws);
    assert_int_equal(nea_ws_send(ws, NEA_WS_TEXT, "later", 5), 0);
    nea_ws_done(msg);
}

static void keep_timer(uv_timer_t *t)
{
    keep_ctx *k = t->data;
    nea_req_run(k->msg, keep_answer, k);
}

static void keep_message(nea_ws *ws, nea_req *msg, const nea_ws_msg *m, void *data)
{
    keep_ctx *k;
    uv_timer_t *t;
    (void)data;
    assert_int_equal(nea_req_defer(msg, count_defer, NULL), 0);
    nea_req_keep(msg);
    if (strcmp(m->data, "never") == 0) {
        return;
    }
    k = nea_alloc(msg, sizeof(*k));
    k->msg = msg;
    k->ref = nea_ws_ref(ws);
    t = nea_req_timer(msg);
    t->data = k;
    uv_timer_start(t, keep_timer, strtoul(m->data, NULL, 10), 0);
}

static const nea_ws_route keep_route = {
    .open = on_open, .message = keep_message, .close = on_close};

/* /ws/pieces: messages in pieces (up to 8 MiB), answered with their size,
 * piece count and FNV-1a at the last piece; a first piece starting "oom"
 * asks for more than the arena. */
static void pieces_message(nea_ws *ws, nea_req *msg, const nea_ws_msg *m, void *data)
{
    (void)data;
    if (m->offset == 0 && m->len >= 3 && memcmp(m->data, "oom", 3) == 0) {
        (void)nea_alloc(msg, (size_t)1 << 40); /* the rest of this message is dropped */
        fail_msg("nea_alloc returned after exhausting the arena");
    }
    if (m->offset == 0) {
        seen.piece_bytes = seen.pieces = 0;
        seen.piece_fnv = 2166136261u;
    }
    assert_int_equal(m->offset, seen.piece_bytes);
    for (size_t i = 0; i < m->len; i++) {
        seen.piece_fnv = (seen.piece_fnv ^ (uint8_t)m->data[i]) * 16777619u;
    }
    seen.piece_bytes += m->len;
    seen.pieces++;
    if (m->last) {
        char *s = nea_printf(msg, "bytes=%" PRIu64 " fnv=%08x", seen.piece_bytes, seen.piece_fnv);
        assert_int_equal(nea_ws_send(ws, NEA_WS_TEXT, s, strlen(s)), 0);
    }
}

static const nea_ws_route pieces_route = {.open = on_open,
                                          .message = pieces_message,
                                          .close = on_close,
                                          .max_message = 8u << 20,
                                          .flags = NEA_WS_PIECES};

/* /ws/flood: "go" starts sending frames of seen.flood_size bytes until
 * UV_EAGAIN, then again from on_drain, seen.flood_sent in all. */
static char flood_bytes[1 << 16];

static void flood(nea_ws *ws, void *arg)
{
    int rc;
    (void)arg;
    seen.drained += arg != NULL;
    while ((rc = nea_ws_send(ws, NEA_WS_BINARY, flood_bytes, seen.flood_size)) == 0) {
        seen.flood_sent++;
    }
    assert_int_equal(rc, UV_EAGAIN);
    seen.eagain++;
    assert_int_equal(nea_ws_on_drain(ws, flood, ws), 0);
}

static void flood_message(nea_ws *ws, nea_req *msg, const nea_ws_msg *m, void *data)
{
    (void)msg;
    (void)m;
    (void)data;
    flood(ws, NULL);
}

static const nea_ws_route flood_route = {
    .open = on_open, .message = flood_message, .close = on_close};

/* /ws/many: any message is answered with 20 frames of 1000 bytes, copied
 * from memory outside the arena. */
static void many_message(nea_ws *ws, nea_req *msg, const nea_ws_msg *m, void *data)
{
    static char block[1000];
    (void)msg;
    (void)m;
    (void)data;
    for (int i = 0; i < 20; i++) {
        memset(block, 'a' + i, sizeof(block));
        assert_int_equal(nea_ws_send(ws, NEA_WS_BINARY, block, sizeof(block)), 0);
    }
}

static const nea_ws_route many_route = {
    .open = on_open, .message = many_message, .close = on_close};

/* /ws/close: any message is answered with nea_ws_close(4000, "bye"). */
static void close_message(nea_ws *ws, nea_req *msg, const nea_ws_msg *m, void *data)
{
    (void)msg;
    (void)m;
    (void)data;
    assert_int_equal(nea_ws_close(ws, 1004, NULL), UV_EINVAL); /* reserved */
    assert_int_equal(nea_ws_close(ws, 4000, "bye"), 0);
    assert_int_equal(nea_ws_close(ws, 4000, "bye"), NEA_ESTATE);
    assert_int_equal(nea_ws_send(ws, NEA_WS_TEXT, "x", 1), NEA_ESTATE);
}

static const nea_ws_route close_route = {
    .open = on_open, .message = close_message, .close = on_close};

static void add_routes(h_fixture *f)
{
    assert_int_equal(nea_server_route_ws(f->srv, "/ws/echo", &echo_route, NULL), 0);
    assert_int_equal(nea_server_route_ws(f->srv, "/ws/acc", &acc_route, NULL), 0);
    assert_int_equal(nea_server_route_ws(f->srv, "/ws/small", &small_route, NULL), 0);
    assert_int_equal(nea_server_route_ws(f->srv, "/ws/oom", &oom_route, NULL), 0);
    assert_int_equal(nea_server_route_ws(f->srv, "/ws/keep", &keep_route, NULL), 0);
    assert_int_equal(nea_server_route_ws(f->srv, "/ws/pieces", &pieces_route, NULL), 0);
    assert_int_equal(nea_server_route_ws(f->srv, "/ws/flood", &flood_route, NULL), 0);
    assert_int_equal(nea_server_route_ws(f->srv, "/ws/close", &close_route, NULL), 0);
    assert_int_equal(nea_server_route_ws(f->srv, "/ws/many", &many_route, NULL), 0);
}

/* Every test: message arenas of 256 KiB (messages up to about that are
 * whole), then the test's own changes. */
static void (*extra_tweak)(nea_config *);

static void base_tweak(nea_config *cfg)
{
    cfg->arena_size = 256u << 10;
    if (extra_tweak != NULL) {
        extra_tweak(cfg);
    }
}

static void start(void **state, void (*tweak)(nea_config *))
{
    reset_seen();
    extra_tweak = tweak;
    h_test_start(state, base_tweak);
    add_routes(*state);
}

static int setup(void **state)
{
    start(state, NULL);
    return 0;
}

/* The connection's slot on the server (the first one in a WebSocket
 * phase). */
static nea__conn *ws_slot(h_fixture *f)
{
    for (unsigned i = 0; i < f->srv->admission.count; i++) {
        if (nea__conn_owner_of(h_slot(f, i)->state) == NEA__OWNER_WS) {
            return h_slot(f, i);
        }
    }
    return NULL;
}

static void open_ok(h_fixture *f, t_ws *w, const char *path)
{
    int status;
    if (!t_ws_open(w, &f->loop, f->port, path, NULL, &status, NULL, 0)) {
        fail_msg("no 101 for %s (status %d)", path, status);
    }
}

/* The record of the route registered at path. */
static void route_stats(h_fixture *f, const char *path, nea_route_stats *rs)
{
    for (unsigned i = 0; i < nea_server_route_stats_count(f->srv); i++) {
        assert_int_equal(nea_server_route_stats(f->srv, i, rs), 0);
        if (strcmp(rs->path, path) == 0) {
            return;
        }
    }
    fail_msg("no route %s", path);
}

/* Everything the connection held is back: no arena, no buffer. */
static void assert_nothing_held(h_fixture *f)
{
    H_WAIT(f, h_arenas_in_use(f) == 0 && h_st(f).conn_buffers_in_use == 0 &&
                  f->srv->env.reqs.live == 0);
}

/* --- the handshake ---------------------------------------------------------------- */

static void test_handshake_101_and_echo(void **state)
{
    h_fixture *f = *state;
    t_ws w;
    nea_stats st;
    open_ok(f, &w, "/ws/echo");
    assert_int_equal(seen.opened, 1);
    H_WAIT(f, ws_slot(f) != NULL);
    t_ws_frame(&w, NEA__WS_TEXT, true, "hello", 5);
    t_ws_expect(&w, NEA__WS_TEXT, "hello", 5);
    t_ws_frame(&w, NEA__WS_BINARY, true, "\x00\x01\xff", 3);
    t_ws_expect(&w, NEA__WS_BINARY, "\x00\x01\xff", 3);
    assert_int_equal(t_ws_close(&w, 1000, "done"), 1000);
    t_ws_drop(&w, false);
    H_WAIT(f, seen.closed == 1);
    assert_int_equal(seen.close_codes[0], 1000);
    assert_int_equal(seen.messages, 2);
    assert_int_equal(seen.defers, 2);
    h_stats(f, &st);
    assert_int_equal(st.ws_upgraded, 1);
    assert_int_equal(st.ws_messages_in, 2);
    assert_int_equal(st.ws_messages_out, 2);
    H_WAIT(f, h_st(f).ws_open == 0 && h_st(f).connections_open == 0);
}

/* Every refusal of the opening handshake gets its status, and the
 * connection closes after it. */
static void test_handshake_refusals(void **state)
{
    h_fixture *f = *state;
    h_response r;
    char v[32];
    const char *key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    char req[512];

    /* a plain GET on a WebSocket route */
    assert_int_equal(h_request(f, "GET /ws/echo HTTP/1.1\r\nHost: x\r\n\r\n", &r), 400);
    /* another version */
    snprintf(req, sizeof(req),
             "GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "%sSec-WebSocket-Version: 8\r\n\r\n",
             key);
    assert_int_equal(h_request(f, req, &r), 426);
    assert_string_equal(h_header(&r, "sec-websocket-version", v, sizeof(v)), "13");
    /* a key that is not 16 bytes of base64 */
    h_expect_close(f,
                   "GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: abc\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n",
                   400);
    /* HTTP/1.0 */
    snprintf(req, sizeof(req),
             "GET /ws/echo HTTP/1.0\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "%sSec-WebSocket-Version: 13\r\n\r\n",
             key);
    assert_int_equal(h_request(f, req, &r), 400);
    /* POST: the route is a GET route */
    snprintf(req, sizeof(req),
             "POST /ws/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\n%sSec-WebSocket-Version: 13\r\n\r\n",
             key);
    assert_int_equal(h_request(f, req, &r), 405);
    assert_int_equal(seen.opened, 0);
    assert_int_equal(h_st(f).ws_upgraded, 0);
}

/* accept refuses (403) without the token, accepts with it and names the
 * subprotocol it picked in the 101; open reads the upgrade's headers. */
static void test_accept_and_subprotocol(void **state)
{
    h_fixture *f = *state;
    char head[4096], v[64];
    int status;
    t_ws w;
    s_response r;

    assert_false(t_ws_open(&w, &f->loop, f->port, "/ws/acc", NULL, &status, NULL, 0));
    assert_int_equal(status, 403);
    t_ws_drop(&w, false);
    assert_true(t_ws_open(&w, &f->loop, f->port, "/ws/acc",
                          "X-Token: ok\r\nSec-WebSocket-Protocol: superchat, chat\r\n"
                          "Origin: http://example.test\r\n",
                          &status, head, sizeof(head)));
    snprintf(r.head, sizeof(r.head), "%s", head);
    assert_string_equal(s_header(&r, "sec-websocket-protocol", v, sizeof(v)), "chat");
    assert_string_equal(seen.origin, "http://example.test");
    t_ws_frame(&w, NEA__WS_TEXT, true, "hi", 2);
    t_ws_expect(&w, NEA__WS_TEXT, "hi", 2);
    t_ws_drop(&w, false);
    H_WAIT(f, seen.closed == 1);
    assert_int_equal(seen.close_codes[0], 1006); /* no close frame: the connection dropped */
}

/* Frames sent in the same write as the upgrade are served after the 101. */
static void test_frames_with_the_upgrade(void **state)
{
    h_fixture *f = *state;
    uint8_t all[1024], mask[4] = {1, 2, 3, 4};
    size_t n;
    s_response r;
    t_ws w;
    int fd;

    n = (size_t)snprintf((char *)all, sizeof(all),
                         "GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n");
    n += t_ws_build(all + n, NEA__WS_TEXT, true, "early", 5, mask);
    n += t_ws_build(all + n, NEA__WS_BINARY, true, "bird", 4, mask);
    fd = h_connect(f);
    h_send(f, fd, (const char *)all, n);
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 101);
    t_ws_attach(&w, &f->loop, fd);
    t_ws_expect(&w, NEA__WS_TEXT, "early", 5);
    t_ws_expect(&w, NEA__WS_BINARY, "bird", 4);
    t_ws_drop(&w, false);
    H_WAIT(f, seen.closed == 1);
}

/* --- messages ---------------------------------------------------------------------- */

/* Messages of every interesting size come back whole: 0, the 7-bit edge,
 * the 16-bit lengths, the 64-bit length, one larger than the read buffer. */
static void test_echo_sizes(void **state)
{
    h_fixture *f = *state;
    static const size_t sizes[] = {0, 1, 125, 126, 127, 4000, 65535, 65536, 200000};
    static uint8_t data[200000];
    t_ws w;
    for (size_t i = 0; i < sizeof(data); i++) {
        data[i] = (uint8_t)(i * 7 + 3);
    }
    open_ok(f, &w, "/ws/echo");
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        t_ws_frame(&w, NEA__WS_BINARY, true, data, sizes[i]);
        t_ws_expect(&w, NEA__WS_BINARY, data, sizes[i]);
    }
    t_ws_drop(&w, false);
    H_WAIT(f, seen.closed == 1);
    assert_nothing_held(f);
}

/* A fragmented text message with a ping between its fragments and a
 * character cut between two fragments: one message back, the ping
 * answered first. */
static void test_fragments_and_ping_between(void **state)
{
    h_fixture *f = *state;
    t_ws w;
    open_ok(f, &w, "/ws/echo");
    w.auto_pong = false;
    t_ws_frame(&w, NEA__WS_TEXT, false, "h\xc3", 2);
    t_ws_frame(&w, NEA__WS_PING, true, "are you there", 13);
    assert_int_equal(t_ws_next(&w, H_DEADLINE_MS), T_WS_PONG);
    assert_int_equal(w.ctl_len, 13);
    assert_memory_equal(w.ctl, "are you there", 13);
    t_ws_frame(&w, NEA__WS_CONT, false, "\xa9", 1);
    t_ws_frame(&w, NEA__WS_CONT, false, "", 0);
    t_ws_frame(&w, NEA__WS_CONT, true, "llo", 3);
    t_ws_expect(&w, NEA__WS_TEXT, "h\xc3\xa9llo", 6);
    t_ws_drop(&w, false);
}

/* The same three frames (a fragmented message, a ping inside it, a whole
 * message after it) cut in two at every offset, and sent one byte at a
 * time: the same answers every time. */
static void test_split_at_every_offset(void **state)
{
    h_fixture *f = *state;
    uint8_t all[256], mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t n = 0;
    t_ws w;

    n += t_ws_build(all + n, NEA__WS_BINARY, false, "abc", 3, mask);
    n += t_ws_build(all + n, NEA__WS_PING, true, "p", 1, mask);
    n += t_ws_build(all + n, NEA__WS_CONT, true, "defgh", 5, mask);
    n += t_ws_build(all + n, NEA__WS_TEXT, true, "second", 6, mask);
    open_ok(f, &w, "/ws/echo");
    w.auto_pong = false;
    for (size_t cut = 0; cut <= n; cut++) {
        if (cut > 0) {
            t_ws_send_raw(&w, all, cut, 0);
        }
        t_ws_send_raw(&w, all + cut, n - cut, 0);
        assert_int_equal(t_ws_next(&w, H_DEADLINE_MS), T_WS_PONG);
        t_ws_expect(&w, NEA__WS_BINARY, "abcdefgh", 8);
        t_ws_expect(&w, NEA__WS_TEXT, "second", 6);
    }
    t_ws_send_raw(&w, all, n, 1);
    assert_int_equal(t_ws_next(&w, H_DEADLINE_MS), T_WS_PONG);
    t_ws_expect(&w, NEA__WS_BINARY, "abcdefgh", 8);
    t_ws_expect(&w, NEA__WS_TEXT, "second", 6);
    assert_int_equal(seen.messages, 2 * (n + 2));
    t_ws_drop(&w, false);
}

/* --- the rules ------------------------------------------------------------------------ */

/* A frame the server must refuse: the close code, then the TCP close. */
static void expect_failure(h_fixture *f, const char *path, const uint8_t *bytes, size_t n,
                           unsigned code)
{
    t_ws w;
    unsigned before = seen.closed;
    open_ok(f, &w, path);
    t_ws_send_raw(&w, bytes, n, 0);
    assert_int_equal(t_ws_next(&w, H_DEADLINE_MS), T_WS_CLOSE);
    assert_int_equal(w.code, code);
    assert_int_equal(t_ws_next(&w, H_DEADLINE_MS), T_WS_EOF);
    t_ws_drop(&w, false);
    H_WAIT(f, seen.closed == before + 1);
    assert_int_equal(seen.close_codes[before], code);
}

static void test_masking_and_reserved_bits(void **state)
{
    h_fixture *f = *state;
    uint8_t b[64], mask[4] = {9, 8, 7, 6};
    size_t n;

    n = t_ws_build(b, NEA__WS_TEXT, true, "plain", 5, NULL); /* not masked */
    expect_failure(f, "/ws/echo", b, n, 1002);
    n = t_ws_build(b, NEA__WS_TEXT, true, "rsv", 3, mask);
    b[0] |= 0x40; /* RSV1 without an extension */
    expect_failure(f, "/ws/echo", b, n, 1002);
    n = t_ws_build(b, 0x3, true, "op", 2, mask); /* a reserved opcode */
    expect_failure(f, "/ws/echo", b, n, 1002);
    n = t_ws_build(b, NEA__WS_CONT, true, "x", 1, mask); /* a continuation of nothing */
    expect_failure(f, "/ws/echo", b, n, 1002);
    n = t_ws_build(b, NEA__WS_PING, false, "x", 1, mask); /* a fragmented ping */
    expect_failure(f, "/ws/echo", b, n, 1002);
    assert_int_equal(seen.messages, 0);
    assert_int_equal(h_st(f).ws_failed, 5);
    assert_nothing_held(f);
}

/* Invalid UTF-8 split across fragments (an overlong form, a surrogate):
 * 1007 at the fragment holding the bad byte; the handler never runs. */
static void test_invalid_utf8_across_fragments(void **state)
{
    h_fixture *f = *state;
    uint8_t b[128], mask[4] = {1, 1, 2, 3};
    size_t n = 0;

    n += t_ws_build(b + n, NEA__WS_TEXT, false, "ok \xe0", 4, mask);
    n += t_ws_build(b + n, NEA__WS_CONT, true, "\x80\x80", 2, mask); /* overlong */
    expect_failure(f, "/ws/echo", b, n, 1007);
    n = 0;
    n += t_ws_build(b + n, NEA__WS_TEXT, false, "\xed", 1, mask);
    n += t_ws_build(b + n, NEA__WS_CONT, true, "\xa0\x80", 2, mask); /* U+D800 */
    expect_failure(f, "/ws/echo", b, n, 1007);
    n = t_ws_build(b, NEA__WS_TEXT, true, "ends in \xc3", 9, mask); /* inside a character */
    expect_failure(f, "/ws/echo", b, n, 1007);
    assert_int_equal(seen.messages, 0);
}

/* A message over the route's limit is refused at its frame head: 1009
 * before any payload is sent; no arena was taken for it. */
static void test_oversize_1009_at_the_head(void **state)
{
    h_fixture *f = *state;
    uint8_t b[64], mask[4] = {1, 2, 3, 4};
    size_t n;
    t_ws w;

    open_ok(f, &w, "/ws/small");
    t_ws_frame(&w, NEA__WS_TEXT, true, "sixteen bytes ok", 16);
    t_ws_expect(&w, NEA__WS_TEXT, "sixteen bytes ok", 16);
    /* 17 bytes announced by the head alone; the payload never follows */
    n = t_ws_build(b, NEA__WS_BINARY, true, "01234567890123456", 17, mask);
    t_ws_send_raw(&w, b, n - 17, 0);
    assert_int_equal(t_ws_next(&w, H_DEADLINE_MS), T_WS_CLOSE);
    assert_int_equal(w.code, 1009);
    t_ws_drop(&w, false);
    /* fragments adding up past the limit */
    n = 0;
    n += t_ws_build(b + n, NEA__WS_TEXT, false, "0123456789", 10, mask);
    n += t_ws_build(b + n, NEA__WS_CONT, true, "0123456789", 10, mask);
    expect_failure(f, "/ws/small", b, n, 1009);
    /* the default limit: what the arena holds, 4 GiB announced */
    b[0] = 0x82;
    b[1] = 0x80 | 127;
    memcpy(b + 2, "\x00\x00\x00\x01\x00\x00\x00\x00", 8);
    memcpy(b + 10, mask, 4);
    expect_failure(f, "/ws/echo", b, 14, 1009);
    assert_int_equal(h_st(f).ws_too_big, 3);
    assert_nothing_held(f);
}

/* --- pings, closes, idleness ----------------------------------------------------------- */

static void test_close_handshakes(void **state)
{
    h_fixture *f = *state;
    uint64_t t0;
    t_ws w;

    /* the client closes without a code: the echo has none, the host is told
     * 1005; the TCP connection closes right after the echo (the handshake
     * is complete), not at the linger deadline */
    open_ok(f, &w, "/ws/echo");
    t0 = h_now_ms();
    assert_int_equal(t_ws_close(&w, 0, NULL), 1005);
    assert_true(h_now_ms() - t0 < NEA__LINGER_MS / 2);
    t_ws_drop(&w, false);
    H_WAIT(f, seen.closed == 1);
    assert_int_equal(seen.close_codes[0], 1005);

    /* the server closes: 4000 "bye"; the client answers; the TCP connection closes */
    open_ok(f, &w, "/ws/close");
    t_ws_frame(&w, NEA__WS_TEXT, true, "close please", 12);
    assert_int_equal(t_ws_next(&w, H_DEADLINE_MS), T_WS_CLOSE);
    assert_int_equal(w.code, 4000);
    assert_int_equal(w.ctl_len, 3);
    assert_memory_equal(w.ctl, "bye", 3);
    /* a message after the server's close is not handled */
    t_ws_frame(&w, NEA__WS_TEXT, true, "ignored", 7);
    t_ws_frame(&w, NEA__WS_CLOSE, true, "\x0f\xa0", 2);
    assert_int_equal(t_ws_next(&w, H_DEADLINE_MS), T_WS_EOF);
    t_ws_drop(&w, false);
    H_WAIT(f, seen.closed == 2);
    assert_int_equal(seen.close_codes[1], 4000);
    assert_nothing_held(f);
}

/* A peer that does not answer the server's close is cut off 2 s later. */
static void test_unanswered_close_is_cut(void **state)
{
    h_fixture *f = *state;
    uint64_t t0;
    t_ws w;
    open_ok(f, &w, "/ws/close");
    t_ws_frame(&w, NEA__WS_TEXT, true, "x", 1);
    assert_int_equal(t_ws_next(&w, H_DEADLINE_MS), T_WS_CLOSE);
    t0 = h_now_ms();
    assert_int_equal(t_ws_next(&w, H_DEADLINE_MS), T_WS_EOF);
    assert_true(h_now_ms() - t0 >= NEA__LINGER_MS - 50);
    t_ws_drop(&w, false);
}

static void quick_pings(nea_config *cfg)
{
    cfg->ws_ping_interval_ms = 150;
    cfg->ws_pong_timeout_ms = 200;
}

/* An idle connection holds its slot only: no buffer, no arena; it is
 * pinged after ws_ping_interval_ms; a client that answers stays, one that
 * does not is closed ws_pong_timeout_ms later (1006). */
static void test_idle_holds_nothing_and_pings(void **state)
{
    h_fixture *f;
    nea__conn *c;
    uint64_t t0;
    t_ws a, b;

    start(state, quick_pings);
    f = *state;
    open_ok(f, &a, "/ws/echo");
    open_ok(f, &b, "/ws/echo");
    t_ws_frame(&a, NEA__WS_TEXT, true, "x", 1);
    t_ws_expect(&a, NEA__WS_TEXT, "x", 1);
    c = ws_slot(f);
    assert_non_null(c);
    H_WAIT(f, h_st(f).conn_buffers_in_use == 0);
    assert_int_equal(h_arenas_in_use(f), 0);
    assert_int_equal(h_slots_in(f, NEA__C_WS_IDLE), 2);
    assert_null(c->w);
    assert_int_equal(h_st(f).ws_open, 2);
    /* a answers pings (auto_pong), b does not read at all */
    t0 = h_now_ms();
    b.auto_pong = false;
    assert_int_equal(t_ws_next(&b, H_DEADLINE_MS), T_WS_PING);
    assert_true(h_now_ms() - t0 < 1000);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(t_ws_next(&a, 400), T_WS_NONE); /* pings answered meanwhile */
    }
    assert_true(a.pings >= 2);
    assert_int_equal(t_ws_next(&b, H_DEADLINE_MS), T_WS_EOF);
    H_WAIT(f, seen.closed == 1);
    assert_int_equal(seen.close_codes[0], 1006);
    /* a is still open and served */
    t_ws_frame(&a, NEA__WS_TEXT, true, "still", 5);
    t_ws_expect(&a, NEA__WS_TEXT, "still", 5);
    H_WAIT(f, h_st(f).conn_buffers_in_use == 0);
    t_ws_drop(&a, false);
    t_ws_drop(&b, false);
}

static void slow_messages(nea_config *cfg)
{
    cfg->body_timeout_ms = 150;
}

/* A message that stops arriving halfway is closed 1008 once its pace is
 * lost (body_timeout_ms between reads here); what it held comes back. */
static void test_slow_message_1008(void **state)
{
    h_fixture *f;
    uint8_t b[256], mask[4] = {3, 1, 4, 1};
    size_t n;
    uint64_t t0;
    t_ws w;

    start(state, slow_messages);
    f = *state;
    open_ok(f, &w, "/ws/echo");
    n = t_ws_build(b, NEA__WS_TEXT, true, "a message that never ends", 25, mask);
    t_ws_send_raw(&w, b, 10, 0);
    t0 = h_now_ms();
    assert_int_equal(t_ws_next(&w, H_DEADLINE_MS), T_WS_CLOSE);
    assert_int_equal(w.code, 1008);
    assert_true(h_now_ms() - t0 >= 100);
    assert_int_equal(t_ws_next(&w, H_DEADLINE_MS), T_WS_EOF);
    (void)n;
    t_ws_drop(&w, false);
    H_WAIT(f, seen.closed == 1);
    assert_int_equal(seen.close_codes[0], 1008);
    assert_nothing_held(f);
}

static void paced_messages(nea_config *cfg)
{
    cfg->body_timeout_ms = 500;
}

/* A message that arrives slowly but steadily - a piece every 100 ms, each
 * read well within body_timeout_ms of the one before, the whole taking
 * more than twice that - is served: the pace counts from the last read, not
 * from the message's first byte. */
static void test_slow_steady_message_served(void **state)
{
    h_fixture *f;
    static uint8_t data[15000], b[15100];
    uint8_t mask[4] = {7, 1, 8, 2};
    size_t n, step;
    uint64_t t0;
    t_ws w;

    start(state, paced_messages);
    f = *state;
    for (size_t i = 0; i < sizeof(data); i++) {
        data[i] = (uint8_t)(i * 11 + 5);
    }
    open_ok(f, &w, "/ws/echo");
    n = t_ws_build(b, NEA__WS_BINARY, true, data, sizeof(data), mask);
    step = n / 15 + 1;
    t0 = h_now_ms();
    for (size_t off = 0; off < n; off += step) {
        t_ws_send_raw(&w, b + off, off + step < n ? step : n - off, 0);
        if (off + step < n) {
            h_pump(f, 100, NULL);
            assert_int_equal(seen.closed, 0);
        }
    }
    t_ws_expect(&w, NEA__WS_BINARY, data, sizeof(data));
    assert_true(h_now_ms() - t0 >= 2 * 500u);
    assert_int_equal(h_st(f).timeouts, 0);
    t_ws_drop(&w, false);
    H_WAIT(f, seen.closed == 1);
    assert_nothing_held(f);
}

static void one_buffer(nea_config *cfg)
{
    cfg->conn_buffers = 1;
}

/* With one connection buffer, a connection with a frame half-read holds
 * it; another that has bytes to read waits in line for it (holding
 * nothing), and is served once the first frame completes. */
static void test_waiting_for_a_buffer(void **state)
{
    h_fixture *f;
    uint8_t b[256], mask[4] = {2, 7, 1, 8};
    size_t n;
    t_ws a, c;

    start(state, one_buffer);
    f = *state;
    open_ok(f, &a, "/ws/echo");
    open_ok(f, &c, "/ws/echo");
    H_WAIT(f, h_st(f).conn_buffers_in_use == 0);
    n = t_ws_build(b, NEA__WS_TEXT, true, "first one", 9, mask);
    t_ws_send_raw(&a, b, 5, 0);
    H_WAIT(f, h_slots_in(f, NEA__C_WS_FRAME) == 1);
    t_ws_frame(&c, NEA__WS_TEXT, true, "second", 6);
    H_WAIT(f, h_slots_in(f, NEA__C_WS_WAITBUF) == 1);
    assert_int_equal(h_st(f).buffer_waiters, 1);
    t_ws_send_raw(&a, b + 5, n - 5, 0);
    t_ws_expect(&a, NEA__WS_TEXT, "first one", 9);
    t_ws_expect(&c, NEA__WS_TEXT, "second", 6);
    H_WAIT(f, h_st(f).conn_buffers_in_use == 0 && h_st(f).buffer_waiters == 0);
    t_ws_drop(&a, false);
    t_ws_drop(&c, false);
}

/* --- slow readers, resets, references ---------------------------------------------------- */

static void slow_writes(nea_config *cfg)
{
    cfg->write_timeout_ms = 300;
}

/* A client that stops reading while the server sends: sends get
 * UV_EAGAIN once a frame waits, on_drain resumes them, and when nothing
 * moves for write_timeout_ms the connection is closed; what it held comes
 * back. */
static void test_client_stops_reading(void **state)
{
    h_fixture *f;
    uint64_t t0;
    t_ws w;
    int rcv = 4096;

    start(state, slow_writes);
    f = *state;
    seen.flood_size = sizeof(flood_bytes);
    open_ok(f, &w, "/ws/flood");
    setsockopt(w.fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
    H_WAIT(f, ws_slot(f) != NULL);
    /* small kernel buffers on both ends, so a few frames fill them */
    rcv = 16384;
    assert_int_equal(uv_send_buffer_size((uv_handle_t *)&ws_slot(f)->tcp, &rcv), 0);
    t_ws_frame(&w, NEA__WS_TEXT, true, "go", 2);
    H_WAIT(f, seen.eagain >= 1);
    assert_true(seen.flood_sent >= 1);
    /* read: the frame on the wire drains, on_drain sends again */
    for (uint64_t end = h_now_ms() + H_DEADLINE_MS; seen.drained == 0 && h_now_ms() < end;) {
        (void)t_ws_next(&w, 20);
    }
    assert_true(seen.drained >= 1);
    /* now stop reading: the write deadline closes it */
    t0 = h_now_ms();
    H_WAIT(f, seen.closed == 1);
    assert_true(h_now_ms() - t0 >= 250);
    assert_int_equal(seen.close_codes[0], 1006);
    assert_true(h_st(f).timeouts >= 1);
    assert_nothing_held(f);
    t_ws_drop(&w, true);
}

/* A reset halfway through a message: the message's arena and the buffer
 * come back, the host hears 1006. */
static void test_reset_mid_message(void **state)
{
    h_fixture *f = *state;
    static uint8_t big[40000], b[40100];
    uint8_t mask[4] = {5, 6, 7, 8};
    size_t n;
    t_ws w;

    open_ok(f, &w, "/ws/echo");
    n = t_ws_build(b, NEA__WS_BINARY, true, big, sizeof(big), mask);
    t_ws_send_raw(&w, b, n / 2, 0);
    H_WAIT(f, h_arenas_in_use(f) == 1); /* the message took its arena */
    assert_non_null(ws_slot(f));
    assert_int_equal(ws_slot(f)->state, NEA__C_WS_FRAME);
    t_ws_drop(&w, true);
    H_WAIT(f, seen.closed == 1);
    assert_int_equal(seen.close_codes[0], 1006);
    assert_int_equal(seen.messages, 0);
    assert_nothing_held(f);
}

static void send_later(uv_timer_t *t)
{
    nea_ws *ws = nea_ref_ws(seen.ref);
    int *result = t->data;
    *result = ws == NULL ? 1 : 2;
    if (ws != NULL) {
        *result = nea_ws_send(ws, NEA_WS_TEXT, "pushed", 6) == 0 ? 3 : 4;
    }
}

/* A reference to an open connection finds it (and sends through it from a
 * timer of the host's); once the client left, the same reference reads as
 * gone, also after the slot serves another connection. */
static void test_send_through_reference(void **state)
{
    h_fixture *f = *state;
    nea_wsref old;
    uv_timer_t t;
    int result = 0;
    t_ws w, other;

    open_ok(f, &w, "/ws/echo");
    H_WAIT(f, h_st(f).conn_buffers_in_use == 0); /* idle: sending takes a buffer and an arena */
    uv_timer_init(&f->loop, &t);
    t.data = &result;
    uv_timer_start(&t, send_later, 10, 0);
    H_WAIT(f, result != 0);
    assert_int_equal(result, 3);
    t_ws_expect(&w, NEA__WS_TEXT, "pushed", 6);
    assert_nothing_held(f);
    old = seen.ref;
    t_ws_drop(&w, true);
    H_WAIT(f, seen.closed == 1);
    result = 0;
    uv_timer_start(&t, send_later, 1, 0);
    H_WAIT(f, result != 0);
    assert_int_equal(result, 1);
    /* the slot serves someone else: the old reference still reads as gone */
    open_ok(f, &other, "/ws/echo");
    assert_ptr_equal(seen.ref.slot, old.slot);
    assert_null(nea_ref_ws(old));
    assert_non_null(nea_ref_ws(seen.ref));
    t_ws_drop(&other, false);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
}

/* --- memory ---------------------------------------------------------------------------- */

/* A message whose handler exhausts its arena fails alone: its defers run,
 * it counts as out of memory, the connection carries on. */
static void test_oom_fails_the_message_only(void **state)
{
    h_fixture *f = *state;
    nea_route_stats rs;
    t_ws w;

    open_ok(f, &w, "/ws/oom");
    t_ws_frame(&w, NEA__WS_TEXT, true, "oom", 3);
    t_ws_frame(&w, NEA__WS_TEXT, true, "next", 4);
    t_ws_expect(&w, NEA__WS_TEXT, "next", 4);
    t_ws_frame(&w, NEA__WS_TEXT, true, "protect", 7);
    t_ws_expect(&w, NEA__WS_TEXT, "survived", 8);
    assert_int_equal(seen.defers, 3);
    assert_int_equal(h_st(f).ws_message_oom, 1);
    route_stats(f, "/ws/oom", &rs);
    assert_int_equal(rs.outcomes[NEA_OUTCOME_OOM], 1);
    assert_int_equal(rs.outcomes[NEA_OUTCOME_COMPLETED], 3); /* the 101 and two messages */
    t_ws_drop(&w, false);
    assert_nothing_held(f);
}

/* Frames the kernel takes at once leave nothing in the message's arena:
 * twenty 1000-byte sends from one handler peak at about one frame. */
static void test_sent_frames_leave_no_copy(void **state)
{
    h_fixture *f = *state;
    nea_route_stats rs;
    char want[1000];
    t_ws w;

    open_ok(f, &w, "/ws/many");
    t_ws_frame(&w, NEA__WS_TEXT, true, "go", 2);
    for (int i = 0; i < 20; i++) {
        memset(want, 'a' + i, sizeof(want));
        t_ws_expect(&w, NEA__WS_BINARY, want, sizeof(want));
    }
    route_stats(f, "/ws/many", &rs);
    assert_true(rs.arena_peak_max < NEA__ROUND_UP(sizeof(nea_req), NEA__ALIGN) + 3000);
    assert_true(rs.bytes_out >= 20 * 1000);
    t_ws_drop(&w, false);
}

static void short_response(nea_config *cfg)
{
    cfg->response_timeout_ms = 200;
}

/* A kept message is done later (from a tracked timer through nea_req_run);
 * the next message waits for it. One never done is cancelled at
 * response_timeout_ms and the connection carries on. */
static void test_kept_messages(void **state)
{
    h_fixture *f;
    t_ws w;

    start(state, short_response);
    f = *state;
    open_ok(f, &w, "/ws/keep");
    t_ws_frame(&w, NEA__WS_TEXT, true, "30", 2);
    t_ws_frame(&w, NEA__WS_TEXT, true, "1", 1);
    H_WAIT(f, ws_slot(f) != NULL && ws_slot(f)->state == NEA__C_WS_HANDLER);
    assert_int_equal(h_arenas_in_use(f), 1); /* one message at a time */
    t_ws_expect(&w, NEA__WS_TEXT, "later", 5);
    t_ws_expect(&w, NEA__WS_TEXT, "later", 5);
    t_ws_frame(&w, NEA__WS_TEXT, true, "never", 5);
    H_WAIT(f, seen.defers == 3);
    assert_int_equal(h_st(f).unanswered, 1);
    t_ws_frame(&w, NEA__WS_TEXT, true, "5", 1);
    t_ws_expect(&w, NEA__WS_TEXT, "later", 5);
    t_ws_drop(&w, false);
    assert_nothing_held(f);
}

/* Messages in pieces may be larger than the arena (256 KiB here): 3 MiB in
 * fragments of every size goes through, counted piece by piece. */
static void test_pieces_larger_than_the_arena(void **state)
{
    h_fixture *f = *state;
    static uint8_t data[3u << 20];
    uint32_t fnv = 2166136261u;
    char want[64];
    size_t off = 0, step = 1000;
    t_ws w;

    for (size_t i = 0; i < sizeof(data); i++) {
        data[i] = (uint8_t)(i * 31 + (i >> 9));
        fnv = (fnv ^ data[i]) * 16777619u;
    }
    open_ok(f, &w, "/ws/pieces");
    while (off < sizeof(data)) {
        size_t n = sizeof(data) - off < step ? sizeof(data) - off : step;
        t_ws_frame(&w, off == 0 ? NEA__WS_BINARY : NEA__WS_CONT, off + n == sizeof(data),
                   data + off, n);
        off += n;
        step = step * 3 / 2;
    }
    snprintf(want, sizeof(want), "bytes=%zu fnv=%08x", sizeof(data), fnv);
    t_ws_expect(&w, NEA__WS_TEXT, want, strlen(want));
    assert_true(seen.pieces > 10);
    assert_int_equal(h_st(f).ws_messages_in, 1); /* one message, however many pieces */
    t_ws_drop(&w, false);
    assert_nothing_held(f);
}

/* A message in pieces whose handler runs out of memory at its first piece:
 * the rest of that message is dropped, not handed over as a new message;
 * the next message is served. */
static void test_pieces_oom_drops_the_rest(void **state)
{
    h_fixture *f = *state;
    uint32_t fnv = 2166136261u;
    char want[64];
    t_ws w;

    for (const char *p = "hello"; *p != '\0'; p++) {
        fnv = (fnv ^ (uint8_t)*p) * 16777619u;
    }
    open_ok(f, &w, "/ws/pieces");
    t_ws_frame(&w, NEA__WS_TEXT, false, "oom!", 4);
    t_ws_frame(&w, NEA__WS_CONT, false, "rest", 4);
    t_ws_frame(&w, NEA__WS_CONT, true, "end", 3);
    t_ws_frame(&w, NEA__WS_TEXT, true, "hello", 5);
    snprintf(want, sizeof(want), "bytes=5 fnv=%08x", fnv);
    t_ws_expect(&w, NEA__WS_TEXT, want, strlen(want));
    assert_int_equal(h_st(f).ws_message_oom, 1);
    assert_int_equal(h_st(f).ws_messages_in, 1); /* the one that completed */
    t_ws_drop(&w, false);
    assert_nothing_held(f);
}

static void one_arena(nea_config *cfg)
{
    cfg->arena_count = 1;
    cfg->queue_timeout_ms = 300;
}

/* No arena free for a message: it waits in the arena queue, gets one when
 * it comes back; not in time: close 1013. */
static void test_no_arena_queue_then_1013(void **state)
{
    h_fixture *f;
    nea__arena *held;
    t_ws w;

    start(state, one_arena);
    f = *state;
    open_ok(f, &w, "/ws/echo");
    held = nea__pool_acquire(&f->srv->pools[0]);
    assert_non_null(held);
    t_ws_frame(&w, NEA__WS_TEXT, true, "waits", 5);
    H_WAIT(f, ws_slot(f) != NULL && ws_slot(f)->state == NEA__C_WS_QUEUED);
    assert_int_equal(h_st(f).queue_length, 1);
    nea__server_give_back(f->srv, held);
    t_ws_expect(&w, NEA__WS_TEXT, "waits", 5);
    held = nea__pool_acquire(&f->srv->pools[0]);
    t_ws_frame(&w, NEA__WS_TEXT, true, "in vain", 7);
    assert_int_equal(t_ws_next(&w, H_DEADLINE_MS), T_WS_CLOSE);
    assert_int_equal(w.code, 1013);
    assert_int_equal(t_ws_next(&w, H_DEADLINE_MS), T_WS_EOF);
    assert_int_equal(h_st(f).shed_no_arena, 1);
    nea__server_give_back(f->srv, held);
    t_ws_drop(&w, false);
    H_WAIT(f, seen.closed == 1);
    assert_int_equal(seen.close_codes[0], 1013);
}

/* --- the server ------------------------------------------------------------------------ */

/* The drain closes WebSocket connections with 1001; the close callback
 * runs once the peers answered. */
static void test_drain_going_away(void **state)
{
    h_fixture *f = *state;
    t_ws a, b;
    open_ok(f, &a, "/ws/echo");
    open_ok(f, &b, "/ws/echo");
    h_close(f);
    assert_int_equal(t_ws_next(&a, H_DEADLINE_MS), T_WS_CLOSE);
    assert_int_equal(a.code, 1001);
    assert_int_equal(t_ws_close(&b, 1000, NULL), 1001); /* b's close crossed the server's */
    t_ws_frame(&a, NEA__WS_CLOSE, true, "\x03\xe9", 2);
    assert_int_equal(t_ws_next(&a, H_DEADLINE_MS), T_WS_EOF);
    h_pump(f, H_DEADLINE_MS, &f->closed);
    assert_true(f->closed);
    assert_int_equal(seen.closed, 2);
    t_ws_drop(&a, false);
    t_ws_drop(&b, false);
}

/* Every message is counted in its route's record; the exposition names
 * the WebSocket counters. */
static void test_metrics(void **state)
{
    h_fixture *f = *state;
    static char text[65536];
    nea_route_stats rs;
    t_ws w;

    open_ok(f, &w, "/ws/echo");
    for (int i = 0; i < 3; i++) {
        t_ws_frame(&w, NEA__WS_TEXT, true, "m", 1);
        t_ws_expect(&w, NEA__WS_TEXT, "m", 1);
    }
    route_stats(f, "/ws/echo", &rs);
    assert_int_equal(rs.requests, 4); /* the upgrade and three messages */
    assert_int_equal(rs.responses[1], 1);
    assert_int_equal(rs.outcomes[NEA_OUTCOME_COMPLETED], 4);
    assert_int_equal(rs.arena_peak_bytes.count, 4);
    assert_int_equal(rs.handler_ns.count, 4); /* the upgrade's handler and three messages' */
    assert_true(rs.handler_ns.sum < 5000000000u);
    assert_int_equal(rs.bytes_out > 3 * 3, 1);
    assert_true(nea_server_metrics_text(f->srv, text, sizeof(text)) < sizeof(text));
    assert_non_null(strstr(text, "nea_ws_connections_open 1\n"));
    assert_non_null(strstr(text, "nea_ws_messages_received_total 3\n"));
    assert_non_null(strstr(text, "nea_ws_messages_sent_total 3\n"));
    t_ws_drop(&w, false);
}

/* Registration refuses what cannot work. */
static void test_route_refusals(void **state)
{
    h_fixture *f = *state;
    nea_ws_route no_handler = {.open = on_open};
    nea_ws_route too_big = {.message = echo_message, .max_message = 1u << 20};
    nea_ws_route bad_flags = {.message = echo_message, .flags = 0x80};
    nea_ws_route bad_class = {.message = echo_message, .arena_class = 5};
    nea_route r = {.method = "POST", .path = "/x", .ws = &echo_route};

    assert_int_equal(nea_server_route_ws(f->srv, "/a", NULL, NULL), UV_EINVAL);
    assert_int_equal(nea_server_route_ws(f->srv, "/a", &no_handler, NULL), UV_EINVAL);
    assert_int_equal(nea_server_route_ws(f->srv, "/a", &too_big, NULL), UV_EINVAL);
    assert_int_equal(nea_server_route_ws(f->srv, "/a", &bad_flags, NULL), UV_EINVAL);
    assert_int_equal(nea_server_route_ws(f->srv, "/a", &bad_class, NULL), UV_EINVAL);
    assert_int_equal(nea_server_route_ws(f->srv, "/ws/echo", &echo_route, NULL), NEA_EROUTE_DUP);
    assert_int_equal(nea_server_add_route(f->srv, &r), UV_EINVAL);
    r.method = "GET";
    assert_int_equal(nea_server_add_route(f->srv, &r), 0);
}

/* --- a second implementation: python3's websockets --------------------------------------- */

/* Debian's python3-websockets (an asyncio client) against /ws/echo: text
 * with multi-byte characters and binary messages of many sizes, a ping
 * answered, a message of 300 KB (more than the arena: the server closes
 * 1009 and the client reports it), and the close handshake. */
static void test_python_websockets(void **state)
{
    static const char script[] =
        "import asyncio, sys, websockets\n"
        "async def main(port):\n"
        "    uri = f'ws://127.0.0.1:{port}/ws/echo'\n"
        "    async with websockets.connect(uri, max_size=None, compression=None) as ws:\n"
        "        for text in ['hello', 'h\\u00e9llo \\u20ac \\U0001f600', '']:\n"
        "            await ws.send(text)\n"
        "            assert await ws.recv() == text\n"
        "        for n in [0, 1, 125, 126, 65535, 65536, 200000]:\n"
        "            data = bytes((i * 13) & 255 for i in range(n))\n"
        "            await ws.send(data)\n"
        "            assert await ws.recv() == data, n\n"
        "        pong = await ws.ping(b'abc')\n"
        "        await asyncio.wait_for(pong, 5)\n"
        "        await ws.close(code=1000, reason='bye')\n"
        "        assert ws.close_code == 1000, ws.close_code\n"
        "    try:\n"
        "        async with websockets.connect(uri, max_size=None, compression=None) as ws:\n"
        "            await ws.send(b'x' * 300000)\n"
        "            await ws.recv()\n"
        "        print('no close for a message too big'); sys.exit(1)\n"
        "    except websockets.exceptions.ConnectionClosedError as e:\n"
        "        assert e.rcvd.code == 1009, e.rcvd\n"
        "    print('python websockets', websockets.__version__, 'ok')\n"
        "asyncio.run(main(int(sys.argv[1])))\n";
    h_fixture *f = *state;
    char path[] = "/tmp/nea-wsconn-XXXXXX.py", cmd[512];
    int fd, status;
    pid_t pid;

    if (system("/usr/bin/python3 -c 'import websockets' 2>/dev/null") != 0) {
        print_message("python3-websockets is not installed (scripts/install-deps.sh): skipped\n");
        skip();
    }
    fd = mkstemps(path, 3);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, script, sizeof(script) - 1), (ssize_t)(sizeof(script) - 1));
    close(fd);
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s %d", path, f->port);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    /* Serve while the client runs (it is a child process). */
    for (uint64_t end = h_now_ms() + 20000; h_now_ms() < end;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            break;
        }
        h_step(f, 10);
    }
    unlink(path);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    H_WAIT(f, seen.closed == 2);
    assert_int_equal(seen.close_codes[0], 1000);
    assert_int_equal(seen.close_codes[1], 1009);
    assert_nothing_held(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_handshake_101_and_echo, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_handshake_refusals, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_accept_and_subprotocol, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_frames_with_the_upgrade, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_echo_sizes, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_fragments_and_ping_between, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_split_at_every_offset, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_masking_and_reserved_bits, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_invalid_utf8_across_fragments, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_oversize_1009_at_the_head, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_close_handshakes, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_unanswered_close_is_cut, setup, h_test_teardown),
        cmocka_unit_test_teardown(test_idle_holds_nothing_and_pings, h_test_teardown),
        cmocka_unit_test_teardown(test_client_stops_reading, h_test_teardown),
        cmocka_unit_test_teardown(test_slow_message_1008, h_test_teardown),
        cmocka_unit_test_teardown(test_slow_steady_message_served, h_test_teardown),
        cmocka_unit_test_teardown(test_waiting_for_a_buffer, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_reset_mid_message, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_send_through_reference, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_oom_fails_the_message_only, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_sent_frames_leave_no_copy, setup, h_test_teardown),
        cmocka_unit_test_teardown(test_kept_messages, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_pieces_larger_than_the_arena, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_pieces_oom_drops_the_rest, setup, h_test_teardown),
        cmocka_unit_test_teardown(test_no_arena_queue_then_1013, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_drain_going_away, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_metrics, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_route_refusals, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_python_websockets, setup, h_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
