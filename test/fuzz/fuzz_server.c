/*
 * fuzz_server.c - libFuzzer target for a whole server: the listener, slot
 * admission (lib/admission.c: accept, eviction of idle connections,
 * lingering connections giving way, the 503 reject handles, the arena wait
 * queue), the connection state machine and its timers (lib/conn.c), and
 * requests that end every way a request can end (lib/req.c,
 * lib/trampoline.c).
 *
 * One server lives for the whole process on its own loop, listening on
 * 127.0.0.1 port 0, with a tiny configuration: 3 connection slots, 2 arenas,
 * a wait queue of 2, and timeouts of tens of milliseconds (header, body,
 * body rate, keep-alive, queue, response), so every deadline is reachable
 * within an input. Clients are real TCP sockets connected with connect(2).
 *
 * Input: a script of one-byte ops, read left to right; the high nibble is
 * the op, the low nibble its argument a (k = a & 7 names one of 8 client
 * sockets). Some ops take the following byte(s) as operands. An input stops
 * at its end or after MAX_OPS ops.
 *
 *   0x0a  OPEN k       connect() client k (closing a previous socket k first)
 *   0x1a  SEND k N ..  send the next N bytes (N = next byte) on k
 *   0x2a  REQ k S      send canned request S (next byte, mod the table) on k
 *   0x3a  SHUT k       half-close k (shutdown SHUT_WR)
 *   0x4a  CLOSE k      read what is there, check it, close k (a & 8: with RST)
 *   0x5a  READ k       read what is available on k
 *   0x6a  WAIT         let (a + 1) * 3 ms pass on the loop (WAIT_BUDGET_MS per input)
 *   0x7a  HOLD         take a free arena from the pool (as a busy request would)
 *   0x8a  RELEASE      give a held arena back (the first waiting head gets it)
 *   0x9a  FAULT        fail the ((a & 7) + 1)th arena grant from now (a & 8: the
 *                      next accept into a slot instead)
 *   0xAa  PUMP         run the loop (a + 1) times without waiting
 *   0xBa  FILL k       send 16 bytes of 'x' on k (a & 8: 64), body filler or drip
 *   0xCa  PIPE k S     send canned request S three times in one write on k
 *   0xDa  OREQ k S     OPEN k, then REQ k S
 *   0xEa  READALL      read what is available on every client
 *   0xFa  NOP
 *
 * Canned requests (REQ, PIPE, OREQ) reach every route: /now answers at
 * once, /later/N from a tracked timer after N ms, /never calls nea_req_keep
 * and is answered 504 at response_timeout_ms, /forget returns without
 * answering (500), /oom exhausts its arena (500), /big/N answers N bytes,
 * POST /echo sends the body back (heads with Content-Length or chunked
 * framing whose body follows via SEND or FILL), GET /stream/N streams N
 * bytes in 64-byte pieces, POST /sink reads its body in pieces (413 past
 * 4096 bytes, an early answer after 3000), plus HEAD, HTTP/1.0,
 * Connection: close, 100-continue, 404, and a head cut short (slowloris).
 * After every op the loop runs a couple of times without waiting.
 *
 * After the script: held arenas go back and the fault is disarmed; every
 * client half-closes and reads until the server closes (bounded), then every
 * socket is closed with a reset; the loop runs until the server is quiescent
 * (bounded: SETTLE_LIMIT_MS), and a fresh probe connection must still be
 * answered 200. Checked (abort() on violation, which libFuzzer reports as a
 * crash):
 *   - connections_open == 0, arenas_in_use == 0, queue_length == 0, no live
 *     request, no protected frame, the idle, wait and linger lists empty,
 *     no connection pending acceptance, no reject handle in use;
 *   - every defer a handler registered ran exactly once;
 *   - what each client received is a sequence of HTTP/1.1 responses: status
 *     line with a valid 3-digit status, bodies framed by Content-Length
 *     (HEAD: announced, not sent), nothing after "Connection: close", and
 *     every 503 carries Retry-After. A response may be cut short only where
 *     the client stopped reading or saw a reset.
 *
 * Built two ways: with clang and -fsanitize=fuzzer (test/fuzz/CMakeLists.txt,
 * target fuzz_server), and with any compiler together with replay.c (target
 * fuzz_replay_server, run by ctest over corpus_server/ and
 * regressions_server/). FUZZ_SERVER_VERBOSE=1 traces every op.
 */
#include "server.h"

#include "responses.h"

#include <errno.h>
#include <netinet/in.h>
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

#define CLIENTS 8
#define SLOTS 3
#define ARENAS 2
#define QUEUE 2
#define READ_BUFFER 1024
#define MAX_BODY 1024
#define T_HEADER 15
#define T_BODY 15
#define T_BODY_DEADLINE 80
#define T_RATE_GRACE 10
#define BODY_MIN_RATE 4000 /* bytes/s: 40 bytes within the 10 ms grace */
#define T_RESPONSE 20
#define T_KEEPALIVE 25
#define T_QUEUE 8
#define T_WRITE 30
#define MAX_OPS 64
#define WAIT_BUDGET_MS 120   /* real time the WAIT ops of one input may take */
#define FINISH_MS 60         /* after the script: how long clients wait for the server's FIN */
#define SETTLE_LIMIT_MS 3000 /* longest the server may take to become quiescent */
#define SLOW_MS 500          /* a phase taking longer is described on stderr */
#define LATER_MAX_MS 60
#define RX_CAP (64u * 1024u)
#define CLIENT_PORT_BASE 20000 /* source ports 20000-31999: below the ephemeral range */
#define CLIENT_PORTS 12000
#define CONNECT_MS 3500 /* a lost SYN is sent again after 1 s, then 2 s */

typedef struct client {
    int fd;
    char rx[RX_CAP];
    size_t rx_len;
    bool eof;   /* the server closed its end (orderly) */
    bool reset; /* the connection was reset: what was in flight may be lost */
    bool shut;  /* we half-closed */
} client;

static uv_loop_t loop;
static nea_server *srv;
static uv_timer_t wake; /* bounds every UV_RUN_ONCE */
static int port;
static client clients[CLIENTS];
static nea__arena *held[ARENAS];
static unsigned long defers_registered, defers_run;
static bool verbose;
static unsigned char rx_memo[RX_CAP + 1]; /* scratch for fz_responses_valid */

static void fail(const char *what, const client *cl)
{
    nea_stats st;
    nea_server_stats(srv, &st);
    fprintf(stderr,
            "fuzz_server: invariant violated: %s\n"
            "  connections_open=%u arenas_in_use=%u queue_length=%u env.reqs.live=%u "
            "requests=%llu defers %lu/%lu\n",
            what, st.connections_open, st.arenas_in_use, st.queue_length, srv->env.reqs.live,
            (unsigned long long)st.requests, defers_run, defers_registered);
    if (cl != NULL) {
        fprintf(stderr, "  client received %zu bytes%s%s: %.*s\n", cl->rx_len,
                cl->eof ? ", then EOF" : "", cl->reset ? ", then a reset" : "",
                (int)(cl->rx_len < 4096 ? cl->rx_len : 4096), cl->rx);
    }
    abort();
}

/* What the server holds, for a report of an input that takes too long. */
static void dump_server(const char *when)
{
    const nea__admission *adm = &srv->admission;
    unsigned rejects = 0;
    nea_stats st;
    nea_server_stats(srv, &st);
    for (unsigned i = 0; i < NEA__REJECT_SLOTS; i++) {
        rejects += adm->rejects[i].o.in_use ? 1u : 0u;
    }
    fprintf(stderr,
            "fuzz_server: %s: connections_open=%u arenas_in_use=%u queue_length=%u live=%u "
            "accept_pending=%d rejects_in_use=%u\n",
            when, st.connections_open, st.arenas_in_use, st.queue_length, srv->env.reqs.live,
            (int)adm->accept_pending, rejects);
    for (unsigned i = 0; i < adm->count; i++) {
        const nea__conn *c = nea__admission_slot(adm, i);
        fprintf(stderr, "  slot %u: state %d eof %d reading %d rlen %zu req %p\n", i, (int)c->state,
                (int)c->eof, (int)c->reading, c->rlen, (void *)c->req);
    }
    for (unsigned i = 0; i < CLIENTS; i++) {
        fprintf(stderr, "  client %u: fd %d rx %zu eof %d reset %d shut %d\n", i, clients[i].fd,
                clients[i].rx_len, (int)clients[i].eof, (int)clients[i].reset,
                (int)clients[i].shut);
    }
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* --- handlers ------------------------------------------------------------ */

static void on_log(void *data, int level, const char *msg)
{
    (void)data;
    if (verbose) {
        fprintf(stderr, "fuzz_server: log %d: %s\n", level, msg);
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

/* GET /now: answered at once. */
static void h_now(nea_req *req, void *d)
{
    (void)d;
    add_defer(req);
    nea_respond(req, 200, "text/plain", "now\n", 4);
}

static void later_finish(nea_req *req, void *arg)
{
    (void)arg;
    nea_respond_static(req, 200, "text/plain", "later\n", 6);
}

static void on_later(uv_timer_t *t)
{
    nea_req_run(t->data, later_finish, NULL);
}

/* GET /later/N: answered from a tracked timer after N ms (at most
 * LATER_MAX_MS); past response_timeout_ms it is a 504 instead. */
static void h_later(nea_req *req, void *d)
{
    unsigned long ms = strtoul(nea_req_path_tail(req), NULL, 10);
    uv_timer_t *t;
    (void)d;
    add_defer(req);
    t = nea_req_timer(req);
    t->data = req;
    uv_timer_start(t, on_later, ms < LATER_MAX_MS ? ms : LATER_MAX_MS, 0);
}

/* GET /never: promises an answer that never comes (504). */
static void h_never(nea_req *req, void *d)
{
    (void)d;
    add_defer(req);
    nea_req_keep(req);
}

/* GET /forget: returns with nothing pending (500). */
static void h_forget(nea_req *req, void *d)
{
    (void)d;
    add_defer(req);
}

/* GET /oom: more than any arena holds (500). */
static void h_oom(nea_req *req, void *d)
{
    (void)d;
    add_defer(req);
    (void)nea_alloc(req, (size_t)1 << 40);
    fail("nea_alloc returned after exhausting the arena", NULL);
}

/* GET /big/N: N bytes of body, built in the arena (too many: 500). */
static void h_big(nea_req *req, void *d)
{
    size_t n = (size_t)strtoul(nea_req_path_tail(req), NULL, 10);
    char *p;
    (void)d;
    add_defer(req);
    p = nea_alloc(req, n + 1);
    memset(p, 'b', n);
    nea_respond_static(req, 200, "text/plain", p, n);
}

/* POST /echo: the body back. */
static void h_echo(nea_req *req, void *d)
{
    size_t len;
    const char *body = nea_req_body(req, &len);
    (void)d;
    if (body[len] != '\0') {
        fail("body not NUL-terminated", NULL);
    }
    nea_respond(req, 200, "application/octet-stream", body, len);
}

/* GET /stream/N: N bytes streamed in pieces of at most STREAM_PIECE from
 * static memory, Content-Length known; each piece waits for the last. */
#define STREAM_PIECE 64
static const char stream_bytes[STREAM_PIECE] =
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n";

static void stream_more(nea_req *req, void *arg)
{
    size_t *left = arg;
    size_t n = *left < STREAM_PIECE ? *left : STREAM_PIECE;
    if (n == 0) {
        (void)nea_stream_end(req);
        return;
    }
    *left -= n;
    (void)nea_stream_write(req, stream_bytes, n, stream_more, left);
}

static void h_stream(nea_req *req, void *d)
{
    size_t *left = nea_alloc(req, sizeof *left);
    (void)d;
    add_defer(req);
    *left = (size_t)strtoul(nea_req_path_tail(req), NULL, 10);
    if (nea_stream_start(req, 200, "text/plain", *left) == 0) {
        stream_more(req, left);
    }
}

/* POST /sink: a body read in pieces (route limit SINK_MAX: 413 beyond),
 * answered with its length at the end, or early once SINK_ENOUGH bytes
 * came (the connection then closes after the answer). */
#define SINK_MAX 4096
#define SINK_ENOUGH 3000

static void sink_piece(nea_req *req, const char *data, size_t len, void *arg)
{
    size_t *seen = arg;
    (void)data;
    if (data == NULL) {
        nea_respond(req, 200, "text/plain", "end\n", 4);
        return;
    }
    *seen += len;
    if (*seen >= SINK_ENOUGH) {
        nea_respond(req, 200, "text/plain", "enough\n", 7);
    }
}

static void h_sink(nea_req *req, void *d)
{
    size_t *seen = nea_calloc(req, 1, sizeof *seen);
    (void)d;
    add_defer(req);
    (void)nea_body_read(req, sink_piece, seen);
}

static void on_wake(uv_timer_t *t)
{
    (void)t;
}

static void setup(void)
{
    nea_config cfg;
    int rc;

    verbose = getenv("FUZZ_SERVER_VERBOSE") != NULL;
    signal(SIGPIPE, SIG_IGN);
    for (unsigned i = 0; i < CLIENTS; i++) {
        clients[i].fd = -1;
    }
    if (uv_loop_init(&loop) != 0) {
        abort();
    }
    uv_timer_init(&loop, &wake);

    nea_config_init(&cfg);
    cfg.host = "127.0.0.1";
    cfg.port = 0;
    cfg.read_buffer_size = READ_BUFFER;
    cfg.arena_count = ARENAS;
    cfg.max_connections = SLOTS;
    cfg.queue_length = QUEUE;
    cfg.max_body_size = MAX_BODY;
    cfg.queue_timeout_ms = T_QUEUE;
    cfg.header_timeout_ms = T_HEADER;
    cfg.body_timeout_ms = T_BODY;
    cfg.body_deadline_ms = T_BODY_DEADLINE;
    cfg.body_min_rate = BODY_MIN_RATE;
    cfg.body_rate_grace_ms = T_RATE_GRACE;
    cfg.response_timeout_ms = T_RESPONSE;
    cfg.keepalive_timeout_ms = T_KEEPALIVE;
    cfg.write_timeout_ms = T_WRITE;
    cfg.drain_timeout_ms = 2 * T_WRITE;
    cfg.scrub = NEA_SCRUB_POISON;
    cfg.log = on_log;
    /* Room for the request, the head copy, the handler minimum and a body
     * of max_body_size: echoing such a body does not fit (500). */
    cfg.arena_size = NEA__ROUND_UP(sizeof(nea_req), NEA__ALIGN) + READ_BUFFER +
                     NEA__MIN_HANDLER_BYTES + MAX_BODY;
    rc = nea_server_new(&loop, &cfg, &srv);
    if (rc != 0) {
        fprintf(stderr, "fuzz_server: nea_server_new: %s\n", nea_strerror(rc));
        abort();
    }
    if (nea_server_route(srv, "GET", "/now", h_now, NULL) != 0 ||
        nea_server_route(srv, "GET", "/later/", h_later, NULL) != 0 ||
        nea_server_route(srv, "GET", "/never", h_never, NULL) != 0 ||
        nea_server_route(srv, "GET", "/forget", h_forget, NULL) != 0 ||
        nea_server_route(srv, "GET", "/oom", h_oom, NULL) != 0 ||
        nea_server_route(srv, "GET", "/big/", h_big, NULL) != 0 ||
        nea_server_route(srv, "POST", "/echo", h_echo, NULL) != 0 ||
        nea_server_route(srv, "GET", "/stream/", h_stream, NULL) != 0 ||
        nea_server_route_stream(srv, "POST", "/sink", h_sink, NULL, 0, SINK_MAX) != 0) {
        abort();
    }
    rc = nea_server_listen(srv);
    if (rc != 0) {
        fprintf(stderr, "fuzz_server: nea_server_listen: %s\n", nea_strerror(rc));
        abort();
    }
    port = nea_server_port(srv);
}

/* --- the loop ------------------------------------------------------------ */

static void pump(unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
    }
}

/* Lets up to ms of real time pass on the loop, so timers due by then fire;
 * returns early when done() says so (checked after every iteration). */
static void pump_wait(unsigned ms, bool (*done)(void))
{
    uint64_t now = now_ms(), end = now + ms;
    while (now < end && (done == NULL || !done())) {
        uv_timer_start(&wake, on_wake, end - now, 0);
        uv_run(&loop, UV_RUN_ONCE);
        uv_timer_stop(&wake);
        now = now_ms();
    }
}

/* --- clients ------------------------------------------------------------- */

/* Reads everything client c has been sent so far, without blocking. */
static void client_read(client *c)
{
    char tmp[4096];
    while (c->fd >= 0 && !c->eof && !c->reset) {
        ssize_t n = recv(c->fd, tmp, sizeof(tmp), MSG_DONTWAIT);
        if (n > 0) {
            size_t take = (size_t)n;
            if (take > RX_CAP - c->rx_len) {
                take = RX_CAP - c->rx_len;
            }
            memcpy(c->rx + c->rx_len, tmp, take);
            c->rx_len += take;
        } else if (n == 0) {
            c->eof = true;
        } else if (errno == EINTR) {
            continue;
        } else {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                c->reset = true; /* ECONNRESET */
            }
            return;
        }
    }
}

/* Binds fd to the next source port of a range below the kernel's ephemeral
 * one, taken in turn. The server closes first often (Connection: close,
 * errors, timeouts), leaving its end in TIME_WAIT for a minute; a port the
 * kernel picked again within that minute can meet that TIME_WAIT, and the
 * handshake then waits for a SYN retransmission (1 s and more). Taking the
 * ports in turn reuses one only after CLIENT_PORTS connections. */
static void bind_source_port(int fd)
{
    static unsigned next;
    struct sockaddr_in sin;

    if (next == 0) {
        next = (unsigned)getpid() * 7919u; /* replays in a row start elsewhere */
    }
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (unsigned tries = 0; tries < 64; tries++) {
        sin.sin_port = htons((uint16_t)(CLIENT_PORT_BASE + next++ % CLIENT_PORTS));
        if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0) {
            return;
        }
    }
    /* All taken: let connect() pick one. */
}

static void client_open(client *c)
{
    struct sockaddr_in sin;
    struct pollfd pfd;
    int fd;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("fuzz_server: socket");
        abort();
    }
    bind_source_port(fd);
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 && errno != EINPROGRESS) {
        perror("fuzz_server: connect");
        abort();
    }
    /* The kernel completes a loopback handshake at once (the listener's
     * backlog takes it whether or not the server accepts). */
    pfd.fd = fd;
    pfd.events = POLLOUT;
    if (poll(&pfd, 1, CONNECT_MS) != 1) {
        fprintf(stderr, "fuzz_server: connect to 127.0.0.1:%d did not complete in %d ms\n", port,
                CONNECT_MS);
        abort();
    }
    c->fd = fd;
    c->rx_len = 0;
    c->eof = c->reset = c->shut = false;
}

static void client_send(client *c, const void *p, size_t n)
{
    const char *b = p;
    unsigned stalls = 0;
    if (c->fd < 0 || c->shut) {
        return;
    }
    while (n > 0) {
        ssize_t w = send(c->fd, b, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            b += w;
            n -= (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && stalls++ < 20) {
            pump(2); /* the server stopped reading (backpressure): let it work */
        } else {
            return; /* reset, or the server will not take more */
        }
    }
}

/* --- checking what a client received -------------------------------------- */

static void check_client(const client *c)
{
    if (verbose) {
        fprintf(stderr, "fuzz_server: client %d received %zu bytes%s%s:\n%.*s\n",
                (int)(c - clients), c->rx_len, c->eof ? ", then EOF" : "",
                c->reset ? ", then a reset" : "", (int)c->rx_len, c->rx);
    }
    fz_stream st = {c->rx, c->rx_len, !c->eof || c->reset || c->rx_len == RX_CAP, true, rx_memo};
    if (!fz_responses_valid(&st)) {
        fail("a client received something that is not a sequence of HTTP/1.1 responses", c);
    }
}

static void client_close(client *c, bool rst)
{
    if (c->fd < 0) {
        return;
    }
    client_read(c);
    check_client(c);
    if (rst) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        (void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(c->fd);
    c->fd = -1;
}

/* --- canned requests -------------------------------------------------------- */

static const char *const canned[] = {
    "GET /now HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /later/3 HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /later/12 HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /later/40 HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /never HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /forget HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /oom HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /big/900 HTTP/1.1\r\nHost: a\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789",
    "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 200\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    "GET /now HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    "GET /now HTTP/1.0\r\n\r\n",
    "HEAD /now HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /now HTTP/1.1\r\nHo",
    "GET /missing HTTP/1.1\r\nHost: a\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1024\r\n\r\n",
    "10\r\n0123456789abcdef\r\n",
    "0\r\n\r\n",
    "GET /big/5000 HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /now HTTP/1.1\r\nHost: a\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
    "GET /stream/3000 HTTP/1.1\r\nHost: a\r\n\r\n",
    "HEAD /stream/100 HTTP/1.1\r\nHost: a\r\n\r\n",
    "POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: 20\r\n\r\n01234567890123456789",
    "POST /sink HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n",
    "POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: 16\r\nExpect: 100-continue\r\n\r\n",
};
#define CANNED (sizeof(canned) / sizeof(canned[0]))

/* --- one input ------------------------------------------------------------------ */

static bool all_clients_done(void)
{
    for (unsigned i = 0; i < CLIENTS; i++) {
        client_read(&clients[i]);
    }
    for (unsigned i = 0; i < CLIENTS; i++) {
        if (clients[i].fd >= 0 && !clients[i].eof && !clients[i].reset) {
            return false;
        }
    }
    return true;
}

static bool quiescent(void)
{
    const nea__admission *adm = &srv->admission;
    nea_stats st;
    nea_server_stats(srv, &st);
    return st.connections_open == 0 && st.arenas_in_use == 0 && st.queue_length == 0 &&
           srv->env.reqs.live == 0 && !adm->accept_pending && !nea__admission_busy(adm);
}

/* Quiescent, and still so after a few more loop iterations (a connection
 * may still sit in the listener's backlog). */
static bool settled(void)
{
    for (unsigned i = 0; i < 4; i++) {
        if (!quiescent()) {
            return false;
        }
        pump(1);
    }
    return quiescent();
}

/* Runs the loop until cond() holds, for at most SETTLE_LIMIT_MS; describes
 * the server if that takes longer than SLOW_MS. Returns cond(). */
static bool wait_until(bool (*cond)(void), const char *what)
{
    uint64_t start = now_ms(), deadline = start + SETTLE_LIMIT_MS;
    bool reported = false;
    while (!cond() && now_ms() < deadline) {
        pump_wait(1, cond);
        if (!reported && now_ms() - start > SLOW_MS) {
            dump_server(what);
            reported = true;
        }
    }
    return cond();
}

static void check_idle(void)
{
    const nea__admission *adm = &srv->admission;
    nea_stats st;
    nea_server_stats(srv, &st);
    if (st.connections_open != 0 || st.arenas_in_use != 0 || st.queue_length != 0 ||
        srv->env.reqs.live != 0) {
        fail("server not back to idle after the input", NULL);
    }
    if (srv->env.reqs.tramp.top != NULL) {
        fail("a protected frame is left on the trampoline", NULL);
    }
    for (unsigned k = 0; k < NEA_ARENA_CLASSES; k++) {
        if (adm->wait_head[k] != NULL || adm->wait_tail[k] != NULL ||
            adm->exempt_head[k] != NULL || adm->exempt_tail[k] != NULL) {
            fail("an arena wait queue is not empty", NULL);
        }
    }
    if (adm->idle_head != NULL || adm->idle_tail != NULL || adm->linger_head != NULL ||
        adm->linger_tail != NULL || adm->wait_len != 0) {
        fail("an admission list (idle, wait, linger) is not empty", NULL);
    }
    if (defers_registered != defers_run) {
        fail("a registered defer did not run exactly once", NULL);
    }
}

/* A fresh connection must still be served: no slot, arena or listener was
 * lost by the input. */
static void probe(void)
{
    static const char req[] = "GET /now HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n";
    client *c = &clients[0];

    client_open(c);
    client_send(c, req, sizeof(req) - 1);
    (void)wait_until(all_clients_done, "slow probe");
    if (c->rx_len < 13 || memcmp(c->rx, "HTTP/1.1 200 ", 13) != 0 || !c->eof) {
        fail("a fresh connection was not answered 200 after the input", c);
    }
    client_close(c, true);
}

static void run_script(const uint8_t *p, const uint8_t *end)
{
    unsigned wait_budget = WAIT_BUDGET_MS;

    for (unsigned ops = 0; p < end && ops < MAX_OPS; ops++) {
        uint8_t b = *p++;
        unsigned op = b >> 4, a = b & 15u;
        client *c = &clients[a & 7u];
        if (verbose) {
            fprintf(stderr, "fuzz_server: op %X arg %u\n", op, a);
        }
        switch (op) {
        case 0x0:
            client_close(c, false);
            client_open(c);
            break;
        case 0x2:
        case 0xC:
        case 0xD: {
            const char *r;
            if (op == 0xD) {
                client_close(c, false);
                client_open(c);
            }
            if (p >= end) {
                break;
            }
            r = canned[*p++ % CANNED];
            for (unsigned i = 0; i < (op == 0xC ? 3u : 1u); i++) {
                client_send(c, r, strlen(r));
            }
            break;
        }
        case 0x1: {
            size_t n;
            if (p >= end) {
                break;
            }
            n = *p++;
            n = n < (size_t)(end - p) ? n : (size_t)(end - p);
            client_send(c, p, n);
            p += n;
            break;
        }
        case 0x3:
            if (c->fd >= 0 && !c->shut) {
                (void)shutdown(c->fd, SHUT_WR);
                c->shut = true;
            }
            break;
        case 0x4:
            client_close(c, (a & 8u) != 0);
            break;
        case 0x5:
            client_read(c);
            break;
        case 0x6: {
            unsigned ms = (a + 1) * 3;
            ms = ms < wait_budget ? ms : wait_budget;
            wait_budget -= ms;
            pump_wait(ms, NULL);
            break;
        }
        case 0x7:
            for (unsigned i = 0; i < ARENAS; i++) {
                if (held[i] == NULL) {
                    held[i] = nea__pool_acquire(&srv->pools[0]);
                    break;
                }
            }
            break;
        case 0x8:
            for (unsigned i = 0; i < ARENAS; i++) {
                if (held[i] != NULL) {
                    nea__server_give_back(srv, held[i]);
                    held[i] = NULL;
                    break;
                }
            }
            break;
        case 0x9:
            if (a & 8u) {
                nea__fault_arm(&srv->fault, NEA__FAULT_ACCEPT, 1, false);
            } else {
                nea__fault_arm(&srv->fault, NEA__FAULT_ARENA, (a & 7u) + 1, false);
            }
            break;
        case 0xA:
            pump(a + 1);
            break;
        case 0xB: {
            char fill[64];
            memset(fill, 'x', sizeof(fill));
            client_send(c, fill, (a & 8u) != 0 ? 64u : 16u);
            break;
        }
        case 0xE:
            for (unsigned i = 0; i < CLIENTS; i++) {
                client_read(&clients[i]);
            }
            break;
        default:
            break;
        }
        pump(2);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    uint64_t started, t_script, t_finish, t_settle, t_probe;

    if (!ready) {
        setup();
        ready = true;
    }
    started = now_ms();
    run_script(data, data + size);
    t_script = now_ms();

    /* Back to a server nobody else uses. */
    for (unsigned i = 0; i < ARENAS; i++) {
        if (held[i] != NULL) {
            nea__server_give_back(srv, held[i]);
            held[i] = NULL;
        }
    }
    nea__fault_arm(&srv->fault, NEA__FAULT_ARENA, 0, false);
    nea__fault_arm(&srv->fault, NEA__FAULT_ACCEPT, 0, false);

    /* Every client says it is done and reads until the server closes. */
    for (unsigned i = 0; i < CLIENTS; i++) {
        client *c = &clients[i];
        if (c->fd >= 0 && !c->shut) {
            (void)shutdown(c->fd, SHUT_WR);
            c->shut = true;
        }
    }
    pump(2);
    pump_wait(FINISH_MS, all_clients_done);
    for (unsigned i = 0; i < CLIENTS; i++) {
        client_close(&clients[i], true);
    }
    t_finish = now_ms();

    /* The clients are gone: every slot and arena must come back. */
    if (!wait_until(settled, "slow to settle")) {
        fail("the server was not quiescent 3 s after its clients left", NULL);
    }
    check_idle();
    t_settle = now_ms();
    probe();
    t_probe = now_ms();
    if (!wait_until(settled, "slow to settle after the probe")) {
        fail("the server was not quiescent 3 s after the probe", NULL);
    }
    check_idle();
    if (now_ms() - started > 1000) {
        fprintf(stderr,
                "fuzz_server: slow input (%zu bytes): script %llu ms, finish %llu, settle %llu, "
                "probe %llu, settle again %llu\n",
                size, (unsigned long long)(t_script - started),
                (unsigned long long)(t_finish - t_script),
                (unsigned long long)(t_settle - t_finish), (unsigned long long)(t_probe - t_settle),
                (unsigned long long)(now_ms() - t_probe));
    }
    if (verbose) {
        nea_stats st;
        nea_server_stats(srv, &st);
        fprintf(stderr,
                "fuzz_server: %zu bytes: %llu ms; so far accepted %llu, evicted %llu, shed_503 "
                "%llu, timeouts %llu, unanswered %llu, oom_500 %llu\n",
                size, (unsigned long long)(now_ms() - started), (unsigned long long)st.accepted,
                (unsigned long long)st.evicted, (unsigned long long)st.shed_503,
                (unsigned long long)st.timeouts, (unsigned long long)st.unanswered,
                (unsigned long long)st.oom_500);
    }
    return 0;
}
