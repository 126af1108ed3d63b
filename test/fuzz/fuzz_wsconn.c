/*
 * fuzz_wsconn.c - libFuzzer target for WebSocket connections: frames over
 * a real connection (lib/wsconn.c and the slot's WebSocket phases in
 * lib/conn.c, the protocol core lib/ws.c behind them, message arenas from
 * admission, out-of-memory unwinds in message handlers, the close
 * handshake, pings and every WebSocket deadline).
 *
 * One server lives for the whole process on its own loop, with a small
 * configuration: two arenas that hold messages of about 3 KiB, four slots,
 * a 1 KiB read buffer, and deadlines of a few to tens of milliseconds (ping,
 * pong, message pace, queue, kept message, write). Each input is served on
 * a fresh connection: one end of a socketpair handed to nea__server_adopt,
 * the other played by this file, which sends the opening handshake, checks
 * the 101, then follows the input's script.
 *
 * Input: byte 0 is flags, the rest a script of one-byte ops (high nibble
 * the op, low nibble its argument a), some followed by operands.
 *   flags bits 0-1  the route: 0 /echo (whole messages), 1 /pieces
 *                   (NEA_WS_PIECES, up to 64 KiB), 2 /keep (answered from
 *                   a tracked timer and done there; "n..." never), 3 /oom
 *                   ("o..." exhausts the arena, "p..." inside
 *                   nea_req_protect, else echoed)
 *   flags bit 2     open sends a greeting (a send outside any message)
 *   flags bit 3     slow reader: the server's end gets the smallest send
 *                   buffer and the client reads only at READ ops and at
 *                   the end
 *   flags bits 4-6  N != 0: the Nth arena grant of the input fails, once
 *   flags bit 7     the client ends with a reset instead of a close
 *   0x0a FRAME      b0 (FIN, RSV, opcode: raw), L, then L payload bytes;
 *                   masked unless a & 8
 *   0x1a MESSAGE    (a + 1) * 97 bytes of text in (a >> 1) + 1 fragments
 *   0x2a RAW        N, then N bytes sent as they are
 *   0x3a CONTROL    a ping (a & 8: a pong) of a & 7 bytes
 *   0x4a CLOSE      a close with the next 2 bytes as its code (any) and a
 *                   bytes of reason
 *   0x5a WAIT       (a + 1) * 3 ms pass (at most WAIT_BUDGET_MS an input)
 *   0x6a ARENAS     a & 1: take every free arena; else give them back
 *   0x7a READ       read what the server sent
 *   0x8a BIG        one binary message of (a + 1) * 2048 bytes
 *   0x9a SPLIT      later writes: whole (0), 1, 7 or 64 bytes at a time
 *   0xAa BURST      a + 1 small text messages in one write
 *   other           nothing
 *
 * After the script: arenas go back, the fault is disarmed, the client
 * sends a close (or resets), half-closes, reads until the server closes
 * (bounded) and closes. Checked (abort() on violation):
 *   - the server answered the handshake with a correct 101 first;
 *   - everything after it parses as server frames in the protocol core's
 *     client mode (unmasked, no reserved bits, valid lengths, text UTF-8,
 *     close codes that may be sent), and nothing follows a close frame;
 *   - the connection, its buffer and every arena come back: no live
 *     request, no protected frame, nothing queued, ws_open 0;
 *   - the route's close callback ran exactly once for every open, and every
 *     defer a handler registered ran exactly once.
 *
 * Built two ways: with clang and -fsanitize=fuzzer (test/fuzz/CMakeLists.txt,
 * target fuzz_wsconn), and with any compiler together with replay.c (target
 * fuzz_replay_wsconn, run by ctest over corpus_wsconn/ and
 * regressions_wsconn/). FUZZ_WSCONN_VERBOSE=1 traces each input.
 */
#include "fuzzloop.h"
#include "server.h"

#include "ws.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define READ_BUFFER 1024
#define MESSAGE_ROOM 2048 /* what an arena holds beyond the head and the handler's minimum */
#define ARENAS 2
#define T_SHORT 15
#define WAIT_BUDGET_MS 60
#define SETTLE_LIMIT_MS 5000
#define RX_CAP (512u * 1024u)
#define MAX_OPS 96

static uv_loop_t loop;
static nea_server *srv;
static uv_timer_t wake;
static bool verbose;
static unsigned long opened, closed, defers_registered, defers_run;

static uint8_t rx[RX_CAP];
static size_t rx_len;
static bool rx_eof, client_reads;
static nea__arena *held[ARENAS];

static void fail(const char *what)
{
    nea_stats st;
    nea_server_stats(srv, &st);
    fprintf(stderr,
            "fuzz_wsconn: invariant violated: %s\n"
            "  connections_open=%u ws_open=%u arenas_in_use=%u live=%u buffers=%u "
            "opened=%lu closed=%lu defers %lu/%lu rx=%zu eof=%d\n",
            what, st.connections_open, st.ws_open, nea_stats_arenas(&st).in_use, srv->env.reqs.live,
            st.conn_buffers_in_use, opened, closed, defers_run, defers_registered, rx_len,
            (int)rx_eof);
    for (unsigned i = 0; i < srv->admission.count; i++) {
        const nea__conn *c = nea__admission_slot(&srv->admission, i);
        if (c->state != NEA__C_FREE) {
            fprintf(stderr, "  slot %u: phase %d due %llu (now %llu) linked %d reading %d eof %d\n",
                    i, (int)c->state, (unsigned long long)c->due, (unsigned long long)uv_now(&loop),
                    (int)c->deadline.linked, (int)c->reading, (int)c->eof);
        }
    }
    abort();
}

/* --- the routes ------------------------------------------------------------ */

static void on_log(void *data, int level, const char *msg)
{
    (void)data;
    if (verbose) {
        fprintf(stderr, "fuzz_wsconn: log %d: %s\n", level, msg);
    }
}

static void count_defer(void *arg)
{
    (void)arg;
    defers_run++;
}

static void add_defer(nea_req *req)
{
    if (nea_req_defer(req, count_defer, NULL) == 0) {
        defers_registered++;
    }
}

static void check_send(int rc)
{
    if (rc != 0 && rc != UV_EAGAIN && rc != NEA_ESTATE && rc != UV_ENOBUFS && rc != NEA_ENOMEM &&
        rc != UV_EPIPE && rc != UV_ECONNRESET && rc != UV_ENOTCONN) {
        fprintf(stderr, "fuzz_wsconn: nea_ws_send: %s\n", nea_strerror(rc));
        fail("nea_ws_send returned an undocumented error");
    }
}

static void on_open(nea_ws *ws, nea_req *upgrade, void *data)
{
    (void)data;
    opened++;
    if (nea_req_header(upgrade, "X-Greet") != NULL) {
        check_send(nea_ws_send(ws, NEA_WS_TEXT, "welcome", 7));
    }
}

static void on_close(nea_ws *ws, unsigned code, void *data)
{
    (void)data;
    closed++;
    if (code < 1000 || code > 4999) {
        fail("a close code outside 1000..4999 reported");
    }
    if (nea_ws_send(ws, NEA_WS_TEXT, "x", 1) != NEA_ESTATE) {
        fail("a send from the close callback was not refused");
    }
}

static void echo(nea_ws *ws, nea_req *msg, const nea_ws_msg *m, void *data)
{
    (void)data;
    add_defer(msg);
    if (m->data[m->len] != '\0') {
        fail("a whole message is not NUL-terminated");
    }
    if (nea_respond(msg, 200, NULL, NULL, 0) != NEA_ESTATE) {
        fail("nea_respond on a message was not refused");
    }
    check_send(nea_ws_send(ws, m->opcode, m->data, m->len));
}

static void pieces(nea_ws *ws, nea_req *msg, const nea_ws_msg *m, void *data)
{
    (void)data;
    if (m->offset == 0) {
        add_defer(msg);
    }
    if (m->last) {
        char *s = nea_printf(msg, "%llu", (unsigned long long)(m->offset + m->len));
        check_send(nea_ws_send(ws, NEA_WS_TEXT, s, strlen(s)));
    }
}

typedef struct kept {
    nea_req *msg;
    nea_wsref ref;
} kept;

static void keep_answer(nea_req *msg, void *arg)
{
    kept *k = arg;
    nea_ws *ws = nea_ref_ws(k->ref);
    if (ws != NULL) {
        check_send(nea_ws_send(ws, NEA_WS_TEXT, "later", 5));
    }
    nea_ws_done(msg);
}

static void keep_timer(uv_timer_t *t)
{
    kept *k = t->data;
    nea_req_run(k->msg, keep_answer, k);
}

/* Messages /keep never finished: each holds the connection for up to
 * response_timeout_ms, and the ones buffered behind it wait their turn. */
static unsigned long never_kept;

static void keep(nea_ws *ws, nea_req *msg, const nea_ws_msg *m, void *data)
{
    kept *k;
    uv_timer_t *t;
    (void)data;
    add_defer(msg);
    nea_req_keep(msg);
    if (m->len > 0 && m->data[0] == 'n') {
        never_kept++;
        return; /* never: cancelled at response_timeout_ms */
    }
    k = nea_alloc(msg, sizeof(*k));
    k->msg = msg;
    k->ref = nea_ws_ref(ws);
    t = nea_req_timer(msg);
    t->data = k;
    uv_timer_start(t, keep_timer, m->len % 5, 0);
}

static void greedy(nea_req *req, void *arg)
{
    (void)arg;
    (void)nea_alloc(req, (size_t)1 << 40);
}

static void oom(nea_ws *ws, nea_req *msg, const nea_ws_msg *m, void *data)
{
    (void)data;
    add_defer(msg);
    if (m->len > 0 && m->data[0] == 'o') {
        (void)nea_alloc(msg, (size_t)1 << 40);
        fail("nea_alloc returned after exhausting the arena");
    }
    if (m->len > 0 && m->data[0] == 'p' && nea_req_protect(msg, greedy, NULL) != NEA_ENOMEM) {
        fail("nea_req_protect did not report the unwind");
    }
    check_send(nea_ws_send(ws, m->opcode, m->data, m->len));
}

static const nea_ws_route routes[4] = {
    {.open = on_open, .message = echo, .close = on_close},
    {.open = on_open,
     .message = pieces,
     .close = on_close,
     .max_message = 64u << 10,
     .flags = NEA_WS_PIECES},
    {.open = on_open, .message = keep, .close = on_close},
    {.open = on_open, .message = oom, .close = on_close},
};
static const char *const paths[4] = {"/echo", "/pieces", "/keep", "/oom"};

static void setup(void)
{
    nea_config cfg;
    int rc;

    verbose = getenv("FUZZ_WSCONN_VERBOSE") != NULL;
    signal(SIGPIPE, SIG_IGN);
    if (uv_loop_init(&loop) != 0) {
        abort();
    }
    uv_timer_init(&loop, &wake);
    nea_config_init(&cfg);
    cfg.port = 0;
    cfg.read_buffer_size = READ_BUFFER;
    cfg.arena_count = ARENAS;
    cfg.max_connections = 4;
    cfg.queue_timeout_ms = 5;
    cfg.header_timeout_ms = T_SHORT;
    cfg.body_timeout_ms = T_SHORT;
    cfg.body_deadline_ms = 6 * T_SHORT;
    cfg.body_rate_grace_ms = T_SHORT;
    cfg.body_min_rate = 4000;
    cfg.keepalive_timeout_ms = T_SHORT;
    cfg.response_timeout_ms = 2 * T_SHORT;
    cfg.write_timeout_ms = 2 * T_SHORT;
    cfg.drain_timeout_ms = 2 * T_SHORT;
    cfg.ws_ping_interval_ms = 10;
    cfg.ws_pong_timeout_ms = T_SHORT;
    cfg.scrub = NEA_SCRUB_POISON;
    cfg.log = on_log;
    cfg.arena_size = NEA__ROUND_UP(sizeof(nea_req), NEA__ALIGN) + READ_BUFFER +
                     NEA__MIN_HANDLER_BYTES + MESSAGE_ROOM;
    rc = nea_server_new(&loop, &cfg, &srv);
    if (rc != 0) {
        fprintf(stderr, "fuzz_wsconn: nea_server_new: %s\n", nea_strerror(rc));
        abort();
    }
    for (unsigned i = 0; i < 4; i++) {
        if (nea_server_route_ws(srv, paths[i], &routes[i], NULL) != 0) {
            abort();
        }
    }
}

/* --- the client side ------------------------------------------------------------ */

static void drain(int fd)
{
    uint8_t tmp[8192];
    if (!client_reads || fd < 0) {
        return;
    }
    for (;;) {
        ssize_t n = recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT);
        if (n > 0) {
            size_t take = (size_t)n < RX_CAP - rx_len ? (size_t)n : RX_CAP - rx_len;
            memcpy(rx + rx_len, tmp, take);
            rx_len += take;
        } else if (n == 0) {
            rx_eof = true;
            return;
        } else if (errno == EINTR) {
            continue;
        } else {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                rx_eof = true;
            }
            return;
        }
    }
}

static void pump(int fd, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        drain(fd);
    }
}

static void pump_wait(int fd, unsigned ms)
{
    uint64_t now = fuzz_now_ms(), end = now + ms;
    while (now < end && !(fd >= 0 && rx_eof)) {
        fuzz_turn(&loop, &wake, end - now);
        drain(fd);
        now = fuzz_now_ms();
    }
}

static size_t split = 0; /* 0: whole writes */

/* Sends n bytes split as SPLIT says; false once the server takes no more. */
static bool send_all(int fd, const uint8_t *p, size_t n)
{
    unsigned stalls = 0;
    while (n > 0) {
        size_t take = split != 0 && split < n ? split : n;
        ssize_t w = send(fd, p, take, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            if (split != 0) {
                pump(fd, 2);
            }
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && stalls < 40) {
            stalls++;
            pump(fd, 4);
            if (stalls > 10) {
                pump_wait(fd, 2);
            }
        } else {
            return false;
        }
    }
    pump(fd, 2);
    return true;
}

static uint8_t frame_buf[70000];

/* A frame, masked with key (or not: mask NULL). */
static size_t build(uint8_t *out, uint8_t b0, const uint8_t *payload, size_t len,
                    const uint8_t *mask)
{
    size_t h = 0;
    out[h++] = b0;
    if (len < 126) {
        out[h++] = (uint8_t)((mask != NULL ? 0x80 : 0) | len);
    } else if (len <= 0xFFFF) {
        out[h++] = (uint8_t)((mask != NULL ? 0x80 : 0) | 126);
        out[h++] = (uint8_t)(len >> 8);
        out[h++] = (uint8_t)len;
    } else {
        out[h++] = (uint8_t)((mask != NULL ? 0x80 : 0) | 127);
        for (int i = 7; i >= 0; i--) {
            out[h++] = (uint8_t)((uint64_t)len >> (8 * i));
        }
    }
    if (mask != NULL) {
        memcpy(out + h, mask, 4);
        h += 4;
    }
    if (len > 0) {
        memcpy(out + h, payload, len);
        if (mask != NULL) {
            nea__ws_mask(out + h, len, mask, 0);
        }
    }
    return h + len;
}

static bool send_frame(int fd, uint8_t b0, const uint8_t *payload, size_t len, unsigned key)
{
    uint8_t mask[4] = {(uint8_t)(key * 37 + 1), (uint8_t)(key * 11 + 5), 0x5a, (uint8_t)key};
    return send_all(fd, frame_buf, build(frame_buf, b0, payload, len, mask));
}

/* --- checking what the client received ----------------------------------------- */

static void check_frames(void)
{
    nea__ws_parser p;
    size_t pos = 0;
    bool closed_frame = false;
    const uint8_t *eoh = NULL;

    for (size_t i = 0; i + 3 < rx_len; i++) {
        if (memcmp(rx + i, "\r\n\r\n", 4) == 0) {
            eoh = rx + i + 4;
            break;
        }
    }
    if (rx_len < 12 || memcmp(rx, "HTTP/1.1 101 ", 13) != 0 || eoh == NULL) {
        if (verbose) {
            fprintf(stderr, "fuzz_wsconn: got %.*s\n", (int)(rx_len < 400 ? rx_len : 400), rx);
        }
        fail("the handshake was not answered 101");
    }
    if (strstr((const char *)rx, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n") ==
        NULL) {
        fail("the 101 has the wrong Sec-WebSocket-Accept");
    }
    pos = (size_t)(eoh - rx);
    nea__ws_parser_init(&p, true, 0);
    while (pos < rx_len) {
        nea__ws_event ev;
        size_t n = nea__ws_parse(&p, rx + pos, rx_len - pos, &ev);
        pos += n;
        if (ev.type == NEA__WS_EV_ERROR) {
            fprintf(stderr, "fuzz_wsconn: %s\n", ev.why);
            fail("the server sent a frame RFC 6455 forbids");
        }
        if (ev.type == NEA__WS_EV_CLOSE) {
            closed_frame = true;
            if (pos != rx_len && rx_len < RX_CAP) {
                fail("the server sent something after its close frame");
            }
        }
    }
    (void)closed_frame;
}

/* --- one input ------------------------------------------------------------------------ */

static bool settled(void)
{
    nea_stats st;
    nea_server_stats(srv, &st);
    return st.connections_open == 0 && nea_stats_arenas(&st).in_use == 0 && st.queue_length == 0 &&
           srv->env.reqs.live == 0 && st.conn_buffers_in_use == 0;
}

static void arenas_take(void)
{
    for (unsigned i = 0; i < ARENAS; i++) {
        if (held[i] == NULL) {
            held[i] = nea__pool_acquire(&srv->pools[0]);
        }
    }
}

static void arenas_give(void)
{
    for (unsigned i = 0; i < ARENAS; i++) {
        if (held[i] != NULL) {
            nea__server_give_back(srv, held[i]);
            held[i] = NULL;
        }
    }
}

/* Runs the script; false once the server stopped taking bytes. */
static bool run_script(int fd, const uint8_t *p, const uint8_t *end)
{
    static uint8_t payload[64u << 10];
    unsigned budget = WAIT_BUDGET_MS;
    for (unsigned ops = 0; p < end && ops < MAX_OPS; ops++) {
        unsigned op = *p >> 4, a = *p & 15u;
        bool ok = true;
        p++;
        switch (op) {
        case 0x0: {
            uint8_t b0 = p < end ? *p++ : 0x81;
            size_t len = p < end ? *p++ : 0;
            uint8_t mask[4] = {(uint8_t)a, 0x33, 0x77, 0xc1};
            if (len > (size_t)(end - p)) {
                len = (size_t)(end - p);
            }
            ok = send_all(fd, frame_buf, build(frame_buf, b0, p, len, (a & 8u) != 0 ? NULL : mask));
            p += len;
            break;
        }
        case 0x1: {
            size_t len = (a + 1u) * 97u, parts = (a >> 1) + 1u, off = 0;
            for (size_t i = 0; i < len; i++) {
                payload[i] = (uint8_t)('a' + i % 26);
            }
            /* what the /keep and /oom routes look at */
            payload[0] = a == 15 ? 'o' : a == 14 ? 'p' : a == 13 ? 'n' : 'a';
            for (size_t k = 0; k < parts && ok; k++) {
                size_t n = k + 1 == parts ? len - off : len / parts;
                uint8_t b0 = (uint8_t)((k + 1 == parts ? 0x80 : 0) | (k == 0 ? 0x1 : 0x0));
                ok = send_frame(fd, b0, payload + off, n, (unsigned)k);
                off += n;
            }
            break;
        }
        case 0x2: {
            size_t len = p < end ? *p++ : 0;
            if (len > (size_t)(end - p)) {
                len = (size_t)(end - p);
            }
            ok = send_all(fd, p, len);
            p += len;
            break;
        }
        case 0x3:
            memset(payload, 'p', 8);
            ok = send_frame(fd, (a & 8u) != 0 ? 0x8A : 0x89, payload, a & 7u, a);
            break;
        case 0x4: {
            uint8_t c[2 + 15];
            c[0] = p < end ? *p++ : 0x03;
            c[1] = p < end ? *p++ : 0xe8;
            memset(c + 2, 'r', a);
            ok = send_frame(fd, 0x88, c, 2 + a, a);
            break;
        }
        case 0x5: {
            unsigned ms = (a + 1u) * 3u;
            if (ms > budget) {
                ms = budget;
            }
            budget -= ms;
            pump_wait(fd, ms);
            break;
        }
        case 0x6:
            if (a & 1u) {
                arenas_take();
            } else {
                arenas_give();
            }
            break;
        case 0x7: {
            bool was = client_reads;
            client_reads = true;
            drain(fd);
            client_reads = was;
            break;
        }
        case 0x8: {
            size_t len = (a + 1u) * 2048u;
            for (size_t i = 0; i < len; i++) {
                payload[i] = (uint8_t)(i * 7);
            }
            ok = send_frame(fd, 0x82, payload, len, a);
            break;
        }
        case 0x9:
            split = a % 4 == 0 ? 0 : a % 4 == 1 ? 1 : a % 4 == 2 ? 7 : 64;
            break;
        case 0xA: {
            size_t n = 0;
            uint8_t mask[4] = {1, 2, 3, (uint8_t)a};
            for (unsigned i = 0; i <= a; i++) {
                n += build(frame_buf + n, 0x81, (const uint8_t *)"burst", 5, mask);
            }
            ok = send_all(fd, frame_buf, n);
            break;
        }
        default:
            break;
        }
        pump(fd, 2);
        if (!ok) {
            return false;
        }
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    static const char key_line[] = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    char req[512];
    unsigned route, fault_nth;
    bool slow, greet, reset, open = true;
    uint64_t started;
    int sv[2], n;

    if (!ready) {
        setup();
        ready = true;
    }
    if (size == 0) {
        return 0;
    }
    started = fuzz_now_ms();
    route = data[0] & 3u;
    greet = (data[0] & 4u) != 0;
    slow = (data[0] & 8u) != 0;
    fault_nth = (data[0] >> 4) & 7u;
    reset = (data[0] & 0x80u) != 0;
    rx_len = 0;
    rx_eof = false;
    split = 0;
    client_reads = true;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        perror("fuzz_wsconn: socketpair");
        abort();
    }
    if (slow) {
        int small = 1; /* the kernel raises it to its minimum */
        (void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    }
    if (nea__server_adopt(srv, sv[0]) != 0) {
        fail("nea__server_adopt refused a connection with every slot free");
    }
    n = snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "%sSec-WebSocket-Version: 13\r\n%s\r\n",
                 paths[route], key_line, greet ? "X-Greet: 1\r\n" : "");
    if (!send_all(sv[1], (const uint8_t *)req, (size_t)n)) {
        fail("the server did not take the handshake");
    }
    /* The 101 first (read before the script can hold the arenas). */
    for (uint64_t end = fuzz_now_ms() + 1000; fuzz_now_ms() < end && !rx_eof;) {
        pump_wait(sv[1], 1);
        if (memmem(rx, rx_len, "\r\n\r\n", 4) != NULL) {
            break;
        }
    }
    client_reads = !slow;
    if (fault_nth != 0) {
        nea__fault_arm(&srv->fault, NEA__FAULT_ARENA, fault_nth, false);
    }
    open = run_script(sv[1], data + 1, data + size);

    /* The end: arenas back, then a close (or a reset). */
    arenas_give();
    nea__fault_arm(&srv->fault, NEA__FAULT_ARENA, 0, false);
    client_reads = true;
    if (reset) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        drain(sv[1]);
        (void)setsockopt(sv[1], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(sv[1]);
        sv[1] = -1;
    } else {
        if (open) {
            split = 0;
            (void)send_frame(sv[1], 0x88, (const uint8_t *)"\x03\xe8", 2, 9);
        }
        shutdown(sv[1], SHUT_WR);
        pump(sv[1], 8);
        /* A kept message, a linger: bounded by their deadlines. Each
         * message /keep never finishes holds the connection until its
         * response timeout, and the messages buffered behind it (the close
         * frame among them) wait for it: the bound grows with each. */
        for (unsigned long seen = never_kept - 1; seen != never_kept && !rx_eof;) {
            seen = never_kept;
            pump_wait(sv[1], 200);
        }
        if (!rx_eof) {
            fail("the server did not close 200 ms after the client's close and end");
        }
        check_frames();
        close(sv[1]);
        sv[1] = -1;
    }

    pump(-1, 4);
    if (!settled()) {
        uint64_t deadline = fuzz_now_ms() + SETTLE_LIMIT_MS;
        while (!settled() && fuzz_now_ms() < deadline) {
            pump_wait(-1, 1);
        }
        if (!settled()) {
            fail("the connection, its buffer or an arena outlived the client by 5 s");
        }
    }
    {
        nea_stats st;
        nea_server_stats(srv, &st);
        if (st.ws_open != 0 || opened != closed) {
            fail("a WebSocket connection was not reported closed exactly once");
        }
    }
    if (srv->env.reqs.tramp.top != NULL || srv->admission.wait_head[0] != NULL ||
        srv->admission.wait_len != 0 || srv->admission.bufwait_len != 0) {
        fail("a protected frame or a waiter is left over");
    }
    if (defers_registered != defers_run) {
        fail("a registered defer did not run exactly once");
    }
    if (verbose) {
        fprintf(stderr, "fuzz_wsconn: %zu bytes, route %s%s%s%s, fault %u: %llu ms, rx %zu\n",
                size - 1, paths[route], greet ? ", greeting" : "", slow ? ", slow reader" : "",
                reset ? ", reset" : "", fault_nth, (unsigned long long)(fuzz_now_ms() - started),
                rx_len);
    }
    return 0;
}
