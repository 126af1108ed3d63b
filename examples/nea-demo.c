/*
 * nea-demo.c - libnea's demo server and benchmark target.
 *
 * Routes:
 *   GET  /hello      200 "Hello, World!"
 *   GET  /alloc/N    allocates N KiB from the request arena, fills it with
 *                    0xAA, answers the byte count; beyond the arena: 500
 *   POST /svg        CSV lines "x, y" -> an SVG path; a bad number: 400
 *   GET  /static     the --static file, streamed from disk through a bounded
 *                    buffer, with ETag and Last-Modified, conditional requests
 *                    (If-None-Match / If-Modified-Since -> 304, If-Match ->
 *                    412), one byte range (Range -> 206, past the end -> 416,
 *                    If-Range), HEAD for each (docs/files.md)
 *   GET  /stream/N   N MiB whose byte i is i % 256, streamed with a known
 *                    Content-Length; /stream/N?chunked with chunked framing
 *   POST /upload     reads the body in pieces (any size up to --max-upload)
 *                    and answers "bytes=<count> crc32=<8 hex digits>"
 *   GET  /sleep/MS   holds its arena MS ms on a libuv timer, then answers
 *   GET  /spin/US    burns US microseconds of CPU in the handler (at most
 *                    1 s), then answers: a CPU-bound route for overload tests
 *   GET  /stats      the server counters as JSON, summed over the workers,
 *                    with each worker's accepted connections and requests
 *                    (exempt: answered while the server sheds everything else)
 *   GET  /health     "ok" (exempt)
 *   GET  /metrics    per-route metrics, Prometheus text format 0.0.4, summed
 *                    over the workers, on any of them, streamed through a
 *                    4 KiB buffer whatever the number of routes (exempt)
 *   GET  /events/N   server-sent events: N events (text/event-stream,
 *                    chunked), one every 100 ms, "id: K" and "data: tick K
 *                    of N"; a client reconnecting with Last-Event-ID: K
 *                    resumes after K. Its route has its own response
 *                    timeout (1000 ms between events), so it works under
 *                    any --response-timeout-ms
 *   GET  /json/N     N objects encoded by jansson, allocating from the arena
 *   GET  /gzip/N     N KiB of text deflated by zlib from the arena
 *                    (Content-Encoding: gzip; needs --arena-size 512k)
 *                    (a too-large N: the out-of-memory 500)
 *   GET  /json-libc/N, /gzip-libc/N   the same with libc malloc, for the
 *                    benchmark (only with --libc-routes; N at most 65536)
 *   GET  /ready      readiness for HTTP-only balancers: 200 "ready", 503 once
 *                    draining (NEA_ROUTE_READY: answered without an arena)
 *   GET  /ws/echo    WebSocket (RFC 6455): every message is sent back as it
 *                    came, text as text, binary as binary (docs/websocket.md)
 *
 * With --agent-port N, HAProxy's agent-check on port N gets "up ready" or
 * "drain"; with --agent-weight W (the server's weight in HAProxy) also the
 * share of capacity free, "N%" of W; --drain-delay-ms keeps serving that
 * long after SIGTERM so the balancer notices the drain first.
 *
 * --access-log prints one line per finished request to stdout (the
 * completion hook); refused requests (503, 400) are logged by libnea to
 * stderr at most once a second. --arena-class SIZE:COUNT adds an arena size
 * class, --route-class PATH=K puts a route in it, and --advise prints, when
 * SIGINT or SIGTERM starts the drain, the sizing advisor's classes for the
 * same memory limit (target: 0.1% OOM 500s) from the peaks observed on
 * every worker.
 *
 * --json-errors answers libnea's own errors (400, 404, 405, 413, 500, 503,
 * 504) with {"error":"..."} bodies (nea_config.error_bodies).
 *
 * Listening: --host/--port (TCP), or --unix PATH (a Unix domain socket).
 * Started with listening sockets handed over (systemd's socket activation:
 * LISTEN_FDS; or a predecessor's upgrade), it serves on those instead.
 * --upgrade-on-sigusr2: SIGUSR2 starts a new nea-demo from this binary's
 * path with the same arguments on the very same listening sockets
 * (nea_server_upgrade); once it listens, this one stops accepting, drains
 * and exits 0. Replace the binary file, then send SIGUSR2: no connection
 * is refused on the way.
 *
 * With --tls-cert FILE --tls-key FILE it speaks HTTPS (docs/tls.md) and
 * SIGHUP reloads the certificate and key from the same files (a bad pair
 * is logged and the one in use stays).
 *
 * Prints one line when listening, drains and exits 0 on SIGINT/SIGTERM.
 */
#include <nea.h>

#include "clib-routes.h"

#include <errno.h>
#include <signal.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static const char *static_path = "LICENSE";
static nea_config demo_cfg; /* as given to nea_run: the advisor's starting point */
static bool advise;         /* --advise */
static uv_signal_t advise_sigint, advise_sigterm;
static bool upgrade_on_usr2; /* --upgrade-on-sigusr2 */
static uv_signal_t upgrade_sigusr2;
static char self_path[4096]; /* this binary, read at start: what an upgrade runs */
static char **self_argv;
static nea_listen_fds inherited; /* sockets handed to this process, if any */
static uv_signal_t reload_sighup, reload_sigint, reload_sigterm; /* --tls-cert */
/* Set once listening; handlers on worker threads read it (demo_server). */
static nea_server *server;

static nea_server *demo_server(void)
{
    return __atomic_load_n(&server, __ATOMIC_ACQUIRE);
}

/* Parses a decimal unsigned number that must fill the whole string. */
static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (*s == '\0') {
        return -1;
    }
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9' || v > (max - (uint64_t)(*s - '0')) / 10) {
            return -1;
        }
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

/* GET /ws/echo: a WebSocket route that sends every message back as it
 * came (text as text, binary as binary). The payload is in the message's
 * arena, so the echo is written from there without a copy. */
static void ws_echo_message(nea_ws *ws, nea_req *msg, const nea_ws_msg *m, void *data)
{
    (void)msg;
    (void)data;
    (void)nea_ws_send(ws, m->opcode, m->data, m->len);
}

static const nea_ws_route ws_echo = {.message = ws_echo_message};

static void bad_request(nea_req *req, const char *why)
{
    nea_respond(req, 400, "text/plain", why, strlen(why));
}

static void hello(nea_req *req, void *data)
{
    static const char body[] = "Hello, World!";
    (void)data;
    nea_respond_static(req, 200, "text/plain", body, sizeof(body) - 1);
}

static void alloc(nea_req *req, void *data)
{
    uint64_t kib;
    char *p, *answer;
    (void)data;
    if (parse_u64(nea_req_path_tail(req), SIZE_MAX / 1024, &kib) != 0) {
        bad_request(req, "usage: /alloc/KIB\n");
        return;
    }
    p = nea_alloc(req, (size_t)kib * 1024); /* beyond the arena: unwinds to a 500 */
    memset(p, 0xAA, (size_t)kib * 1024);
    answer = nea_printf(req, "%" PRIu64, kib * 1024);
    nea_respond_static(req, 200, "text/plain", answer, strlen(answer));
}

/* Reads an optionally signed integer surrounded by blanks; NULL if none. */
static const char *parse_int(const char *p, const char *end, long *out)
{
    bool neg = false;
    long v = 0;
    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }
    if (p < end && (*p == '-' || *p == '+')) {
        neg = *p++ == '-';
    }
    if (p == end || *p < '0' || *p > '9') {
        return NULL;
    }
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        if (v > 99999999) {
            return NULL; /* keep coordinates sane and overflow impossible */
        }
        v = v * 10 + (*p - '0');
    }
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r')) {
        p++;
    }
    *out = neg ? -v : v;
    return p;
}

/* Writes v in decimal at o; returns the end. */
static char *put_long(char *o, long v)
{
    char digits[24];
    size_t n = 0;
    unsigned long u = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;
    if (v < 0) {
        *o++ = '-';
    }
    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    while (n > 0) {
        *o++ = digits[--n];
    }
    return o;
}

static void svg(nea_req *req, void *data)
{
    static const char head[] = "<svg xmlns=\"http://www.w3.org/2000/svg\"><path d=\"M 0 0";
    static const char tail[] = "\"/></svg>\n";
    size_t len, line = 0;
    const char *body = nea_req_body(req, &len), *p = body, *end = body + len;
    /* Each point "x, y\n" becomes " x y": at most one byte longer per line,
     * so twice the input bounds the output. */
    char *out = nea_alloc(req, sizeof(head) + 2 + 2 * len + sizeof(tail));
    char *o = out;
    bool first = true;
    (void)data;

    memcpy(o, head, sizeof(head) - 1);
    o += sizeof(head) - 1;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        long x, y;
        line++;
        if (eol == NULL) {
            eol = end;
        }
        if (p[0] == '\n' || (p[0] == '\r' && eol == p + 1)) {
            p = eol + 1;
            continue;
        }
        p = parse_int(p, eol, &x);
        if (p == NULL || p == eol || *p != ',' || (p = parse_int(p + 1, eol, &y)) == NULL ||
            p != eol) {
            bad_request(req, nea_printf(req, "bad number on line %zu\n", line));
            return;
        }
        if (first) {
            memcpy(o, " L", 2);
            o += 2;
            first = false;
        }
        *o++ = ' ';
        o = put_long(o, x);
        *o++ = ' ';
        o = put_long(o, y);
        p = eol + 1;
    }
    memcpy(o, tail, sizeof(tail) - 1);
    o += sizeof(tail) - 1;
    nea_respond_static(req, 200, "image/svg+xml", out, (size_t)(o - out));
}

static void static_file(nea_req *req, void *data)
{
    static const char missing[] = "no static file\n";
    int rc;
    (void)data;
    rc = nea_respond_file(req, static_path, "text/plain", 0);
    if (rc == UV_ENOENT || rc == UV_EISDIR || rc == UV_EACCES) {
        nea_respond_static(req, 404, "text/plain", missing, sizeof(missing) - 1);
    } else if (rc < 0) {
        /* The 500 may already be out (NEA_ERESPONDED then: harmless). */
        (void)nea_respond_static(req, 500, "text/plain", "cannot serve\n", 13);
    }
}

/* GET /stream/N: one buffer of the arena holds the pattern (its size is a
 * multiple of 256, so every piece starts at byte value 0) and is written
 * again and again: the arena holds the same few KiB for any N. */
typedef struct pattern_stream {
    uint64_t left;
    char *buf;
    size_t len;
} pattern_stream;

static void stream_more(nea_req *req, void *arg)
{
    pattern_stream *ps = arg;
    size_t n = ps->left < ps->len ? (size_t)ps->left : ps->len;
    if (n == 0) {
        (void)nea_stream_end(req);
        return;
    }
    ps->left -= n;
    (void)nea_stream_write(req, ps->buf, n, stream_more, ps); /* an error: stop producing */
}

static void stream_route(nea_req *req, void *data)
{
    pattern_stream *ps;
    uint64_t mib;
    size_t len = nea_arena_available(req) / 2;
    bool chunked = strcmp(nea_req_query(req), "chunked") == 0;
    (void)data;
    if (parse_u64(nea_req_path_tail(req), UINT64_MAX >> 20, &mib) != 0) {
        bad_request(req, "usage: /stream/MIB[?chunked]\n");
        return;
    }
    len = len > 64 * 1024 ? 64 * 1024 : len & ~(size_t)255;
    ps = nea_alloc(req, sizeof(*ps));
    ps->left = mib << 20;
    ps->len = len;
    ps->buf = nea_alloc(req, len);
    for (size_t i = 0; i < len; i++) {
        ps->buf[i] = (char)(i % 256);
    }
    if (nea_stream_start(req, 200, "application/octet-stream",
                         chunked ? NEA_LENGTH_UNKNOWN : ps->left) == 0) {
        stream_more(req, ps);
    }
}

/* POST /upload: the body is read in pieces from the connection's buffer;
 * only the running count and CRC live in the arena. */
typedef struct upload {
    uint64_t bytes;
    uLong crc;
} upload;

static void upload_piece(nea_req *req, const char *data, size_t len, void *arg)
{
    upload *up = arg;
    char *answer;
    if (data != NULL) {
        up->bytes += len;
        up->crc = crc32(up->crc, (const Bytef *)data, (uInt)len);
        return;
    }
    answer = nea_printf(req, "bytes=%" PRIu64 " crc32=%08lx\n", up->bytes, (unsigned long)up->crc);
    nea_respond_static(req, 200, "text/plain", answer, strlen(answer));
}

static void upload_route(nea_req *req, void *data)
{
    upload *up = nea_alloc(req, sizeof(*up));
    (void)data;
    up->bytes = 0;
    up->crc = crc32(0L, Z_NULL, 0);
    if (nea_body_read(req, upload_piece, up) != 0) {
        bad_request(req, "cannot read the body\n");
    }
}

static void sleep_done(nea_req *req, void *arg)
{
    char *msg = nea_printf(req, "slept %s", nea_req_path_tail(req));
    (void)arg;
    nea_respond_static(req, 200, "text/plain", msg, strlen(msg));
}

static void on_sleep_timer(uv_timer_t *t)
{
    nea_req_run(t->data, sleep_done, NULL);
}

static void sleep_route(nea_req *req, void *data)
{
    uint64_t ms;
    uv_timer_t *t;
    (void)data;
    if (parse_u64(nea_req_path_tail(req), 600000, &ms) != 0) {
        bad_request(req, "usage: /sleep/MS (at most 600000)\n");
        return;
    }
    t = nea_req_timer(req); /* tracked: closed with the request */
    t->data = req;
    uv_timer_start(t, on_sleep_timer, ms, 0);
}

/* Busy-waits on the monotonic clock: the handler holds the loop, as a
 * CPU-heavy handler would. */
static void spin(nea_req *req, void *data)
{
    uint64_t us, until;
    char *answer;
    (void)data;
    if (parse_u64(nea_req_path_tail(req), 1000000, &us) != 0) {
        bad_request(req, "usage: /spin/US (at most 1000000)\n");
        return;
    }
    until = uv_hrtime() + us * 1000u;
    while (uv_hrtime() < until) {
    }
    answer = nea_printf(req, "spun %" PRIu64 " us\n", us);
    nea_respond_static(req, 200, "text/plain", answer, strlen(answer));
}

static void health(nea_req *req, void *data)
{
    (void)data;
    nea_respond_static(req, 200, "text/plain", "ok\n", 3);
}

static void stats(nea_req *req, void *data)
{
    nea_server *srv = demo_server();
    unsigned workers = nea_server_plan(srv)->workers;
    nea_stats st;
    nea_stats_class arenas;
    char *json, *accepted = "", *requests = "", *tls_failed = "";
    (void)data;
    for (unsigned i = 0; i < workers; i++) {
        nea_stats one;
        (void)nea_server_worker_stats(srv, i, &one);
        accepted = nea_printf(req, "%s%s%" PRIu64, accepted, i ? "," : "", one.accepted);
        requests = nea_printf(req, "%s%s%" PRIu64, requests, i ? "," : "", one.requests);
    }
    nea_server_stats(srv, &st);
    arenas = nea_stats_arenas(&st);
    for (unsigned i = 0; i < NEA_TLS_REASONS; i++) {
        if (nea_tls_reason_name(i) != NULL) {
            tls_failed =
                nea_printf(req, "%s%s\"%s\":%" PRIu64, tls_failed, *tls_failed != '\0' ? "," : "",
                           nea_tls_reason_name(i), st.tls_failed[i]);
        }
    }
    json = nea_printf(
        req,
        "{\"requests\":%" PRIu64 ",\"responses\":{\"1xx\":%" PRIu64 ",\"2xx\":%" PRIu64
        ",\"3xx\":%" PRIu64 ",\"4xx\":%" PRIu64 ",\"5xx\":%" PRIu64 "},\"oom_500\":%" PRIu64
        ",\"shed_503\":%" PRIu64 ",\"shed_no_slot\":%" PRIu64 ",\"shed_no_arena\":%" PRIu64
        ",\"shed_cpu\":%" PRIu64 ",\"shed_fair\":%" PRIu64 ",\"shed_draining\":%" PRIu64
        ",\"shed_no_buffer\":%" PRIu64 ",\"shedding\":%u,\"shed_transitions\":%" PRIu64
        ",\"loop_lag_us\":%" PRIu64 ",\"unanswered\":%" PRIu64 ",\"timeouts\":%" PRIu64
        ",\"rejected_400\":%" PRIu64 ",\"accepted\":%" PRIu64 ",\"evicted\":%" PRIu64
        ",\"accept_errors\":%" PRIu64
        ",\"connections_open\":%u,\"connections_max\":%u,\"arenas_in_use\":%u,"
        "\"arenas_high_water\":%u,\"arena_count\":%u,\"queue_length\":%u,"
        "\"conn_buffers\":%u,\"conn_buffers_in_use\":%u,\"conn_buffers_high_water\":%u,"
        "\"buffer_waiters\":%u,\"ws_open\":%u,\"ws_upgraded\":%" PRIu64
        ",\"ws_messages_in\":%" PRIu64 ",\"ws_messages_out\":%" PRIu64 ","
        "\"arena_peak_bytes\":%zu,\"reserved\":%zu,\"workers\":%u,"
        "\"worker_accepted\":[%s],\"worker_requests\":[%s],\"pid\":%ld,"
        "\"tls_handshakes\":%" PRIu64 ",\"tls_resumed\":%" PRIu64 ",\"tls_failed\":{%s}}\n",
        st.requests, st.responses[1], st.responses[2], st.responses[3], st.responses[4],
        st.responses[5], st.oom_500, nea_stats_shed(&st), st.shed_no_slot, st.shed_no_arena,
        st.shed_cpu, st.shed_fair, st.shed_draining, st.shed_no_buffer, st.shedding,
        st.shed_transitions, st.loop_lag_us, st.unanswered, st.timeouts, st.rejected_400,
        st.accepted, st.evicted, st.accept_errors, st.connections_open, st.connections_max,
        arenas.in_use, arenas.high_water, arenas.count, st.queue_length, st.conn_buffers,
        st.conn_buffers_in_use, st.conn_buffers_high_water, st.buffer_waiters, st.ws_open,
        st.ws_upgraded, st.ws_messages_in, st.ws_messages_out, arenas.peak_bytes,
        nea_server_plan(srv)->total, workers, accepted, requests, (long)getpid(), st.tls_handshakes,
        st.tls_resumed, tls_failed);
    nea_respond_static(req, 200, "application/json", json, strlen(json));
}

/* The process's Prometheus text (with --workers, every worker's records
 * summed, on whichever worker got the scrape), streamed a few lines at a
 * time through a 4 KiB buffer of the arena: the text grows with the routes
 * (about 6 KB each), the arena a scrape takes does not. */
static void metrics(nea_req *req, void *data)
{
    (void)data;
    if (nea_respond_metrics(req, 0) == NEA_ENOMEM) {
        (void)nea_respond_static(req, 507, "text/plain", "arena too small for a scrape\n", 29);
    }
}

/* GET /events/N: server-sent events, one every EVENT_MS. Between two
 * events the handler holds only this state; the wait is a tracked timer
 * (closed with the request when the client leaves), and the next event is
 * written once the previous one is: a client that stops reading stalls
 * the producer instead of piling events up. */
#define EVENT_MS 100

typedef struct events {
    uint64_t next, last;
    nea_req *req; /* the tracked timer's request */
    uv_timer_t *timer;
    char text[96];
} events;

static void events_write(nea_req *req, void *arg);

static void on_event_timer(uv_timer_t *t)
{
    events *ev = t->data;
    nea_req_run(ev->req, events_write, ev);
}

static void event_written(nea_req *req, void *arg)
{
    events *ev = arg;
    (void)req;
    uv_timer_start(ev->timer, on_event_timer, EVENT_MS, 0);
}

static void events_write(nea_req *req, void *arg)
{
    events *ev = arg;
    int n;
    if (ev->next > ev->last) {
        (void)nea_stream_end(req);
        return;
    }
    n = snprintf(ev->text, sizeof(ev->text),
                 "id: %" PRIu64 "\ndata: tick %" PRIu64 " of %" PRIu64 "\n\n", ev->next, ev->next,
                 ev->last);
    ev->next++;
    (void)nea_stream_write(req, ev->text, (size_t)n, event_written, ev); /* an error: stop */
}

static void events_route(nea_req *req, void *data)
{
    const char *resume = nea_req_header(req, "Last-Event-ID");
    uint64_t n, after = 0;
    events *ev;
    (void)data;
    if (parse_u64(nea_req_path_tail(req), 1000000, &n) != 0 ||
        (resume != NULL && parse_u64(resume, UINT64_MAX - 1, &after) != 0)) {
        bad_request(req, "usage: /events/N (N <= 1000000; Last-Event-ID: a number)\n");
        return;
    }
    (void)nea_resp_header(req, "Cache-Control", "no-cache");
    if (strcmp(nea_req_method(req), "HEAD") == 0) {
        (void)nea_stream_start(req, 200, "text/event-stream", NEA_LENGTH_UNKNOWN);
        return; /* the head is the whole answer */
    }
    ev = nea_alloc(req, sizeof(*ev));
    ev->next = after + 1;
    ev->last = n;
    ev->req = req;
    ev->timer = nea_req_timer(req);
    ev->timer->data = ev;
    if (nea_stream_start(req, 200, "text/event-stream", NEA_LENGTH_UNKNOWN) == 0) {
        events_write(req, ev); /* the first event at once */
    }
}

/* --json-errors: libnea's own answers with JSON bodies. */
#define JSON_ERROR(status, text)                                                                   \
    {                                                                                              \
        status, "application/json", "{\"error\":\"" text "\"}\n",                                  \
            sizeof("{\"error\":\"" text "\"}\n") - 1                                               \
    }
static const nea_error_body json_errors[] = {
    JSON_ERROR(400, "bad request"),
    JSON_ERROR(404, "not found"),
    JSON_ERROR(405, "method not allowed"),
    JSON_ERROR(413, "too large"),
    JSON_ERROR(500, "internal"),
    JSON_ERROR(503, "busy, retry later"),
    JSON_ERROR(504, "timeout"),
};

/* --advise: the advisor's classes for what was observed (summed over every
 * worker), on stdout, as the drain starts (libnea's own signal handler
 * starts it). */
static void print_advice(uv_signal_t *h, int signum)
{
    static nea_route_stats recs[1024];
    static unsigned cls[1024];
    static char text[16384];
    unsigned n = nea_server_route_stats_count(demo_server());
    nea_advice advice;
    int rc;
    (void)h;
    (void)signum;
    uv_close((uv_handle_t *)&advise_sigint, NULL);
    uv_close((uv_handle_t *)&advise_sigterm, NULL);
    n = n < 1024 ? n : 1024;
    for (unsigned i = 0; i < n; i++) {
        (void)nea_server_route_stats(demo_server(), i, &recs[i]);
    }
    rc = nea_advise(&demo_cfg, recs, n, 0.001, 0, cls, &advice);
    if (rc != 0) {
        printf("advice: none (%s)\n", nea_strerror(rc));
    } else {
        nea_advice_format(&advice, recs, n, cls, text, sizeof(text));
        fputs(text, stdout);
    }
    fflush(stdout);
}

/* --access-log: one line per request, after it ended. */
static void access_log(void *data, const nea_completion *c)
{
    char addr[64] = "-";
    (void)data;
    if (c->peer->ss_family == AF_INET) {
        uv_ip4_name((const struct sockaddr_in *)c->peer, addr, sizeof(addr));
    } else if (c->peer->ss_family == AF_INET6) {
        uv_ip6_name((const struct sockaddr_in6 *)c->peer, addr, sizeof(addr));
    }
    printf("%s \"%.*s %.*s\" %d %" PRIu64 " route=%s outcome=%s in=%" PRIu64 " queue_us=%" PRIu64
           " handler_us=%" PRIu64 " total_us=%" PRIu64 " arena_peak=%zu\n",
           addr, (int)c->method_len, c->method, (int)c->path_len, c->path, c->status, c->bytes_out,
           c->route != NULL ? c->route : "-", nea_outcome_name(c->outcome), c->bytes_in,
           c->queue_ns / 1000, c->handler_ns / 1000, c->total_ns / 1000, c->arena_peak_bytes);
}

static void usage(FILE *to)
{
    fprintf(to,
            "usage: nea-demo [options]\n"
            "  --host ADDR               listen address (default 127.0.0.1)\n"
            "  --port N                  port, 0 = any free one (default 8080)\n"
            "  --unix PATH               listen on this Unix domain socket instead\n"
            "  --upgrade-on-sigusr2      SIGUSR2 starts this binary (same path, same options)\n"
            "                            on the listening sockets; once it listens, this\n"
            "                            process drains and exits\n"
            "  --memory-limit SIZE       ceiling for the reservation (default 64M)\n"
            "  --arena-size SIZE         bytes per in-flight request (default 64k)\n"
            "  --arenas N                in-flight requests, 0 = as many as fit (default 0)\n"
            "  --connections N           connection slots: what an idle connection costs\n"
            "                            (default 16384)\n"
            "  --conn-buffers N          connection buffers, held only while a connection\n"
            "                            has work (default: --connections, at most 1024)\n"
            "  --read-buffer SIZE        per connection; the max request head (default 8k)\n"
            "  --max-body SIZE           largest buffered request body (default: what the arena "
            "holds)\n"
            "  --header-timeout-ms MS    first byte to end of head (default 10000)\n"
            "  --keepalive-timeout-ms MS idle time between requests (default 5000)\n"
            "  --queue-timeout-ms MS     wait for an arena before 503 (default 100)\n"
            "  --body-timeout-ms MS      idle time between body reads (default 10000)\n"
            "  --body-deadline-ms MS     end of head to end of body (default 60000)\n"
            "  --static FILE             served by GET /static (default ./LICENSE)\n"
            "  --max-upload SIZE         largest body POST /upload accepts (default 4G)\n"
            "  --write-timeout-ms MS     a response (or one streamed piece) must be written\n"
            "                            within this long (default 10000)\n"
            "  --prefault                make the whole reservation resident at start\n"
            "  --no-guard-pages          no PROT_NONE page between arenas\n"
            "  --response-timeout-ms MS  handler start to response, then 504 (default 30000)\n"
            "  --body-min-rate B         bytes/s a body must average after 5 s (default 240)\n"
            "  --overload-target-ms MS   loop busy time before CPU shedding, 0 = off (default 5)\n"
            "  --overload-interval-ms MS busy that long before shedding starts (default 25)\n"
            "  --overload-hold-ms MS     shedding lasts at least this long (default 1000)\n"
            "  --reserved-arenas N       arenas only /stats, /health, /metrics take (default 1)\n"
            "  --fair-share-pct P        one address's share under contention, 0 = off (50)\n"
            "  --libc-routes             also serve /json-libc/N and /gzip-libc/N (libc malloc;\n"
            "                            only with --workers 1)\n"
            "  --agent-port N            answer HAProxy agent-check on port N (0 = any free)\n"
            "  --agent-weight W          the server's weight in HAProxy: the agent answers\n"
            "                            percentages of it (0 = unknown, no percentage; 0)\n"
            "  --drain-delay-ms MS       after SIGTERM, keep accepting this long while the\n"
            "                            agent says drain (default 0)\n"
            "  --drain-timeout-ms MS     then wait this long for in-flight requests (5000)\n"
            "  --access-log              one line per finished request on stdout\n"
            "  --arena-class SIZE:COUNT  one more arena size class (class 1, 2, ...)\n"
            "  --route-class PATH=K      requests of route PATH take arenas of class K\n"
            "  --advise                  at drain, print arena classes for the same memory\n"
            "                            limit from the peaks observed (0.1%% OOM target)\n"
            "  --workers N               worker threads, 0 = one per CPU; --arenas and\n"
            "                            --connections are per worker, --memory-limit the\n"
            "                            total (default 1)\n"
            "  --json-errors             libnea's own errors with {\"error\":...} bodies\n"
            "  --tls-cert FILE           serve HTTPS with this certificate chain (PEM)\n"
            "  --tls-key FILE            and this private key (PEM); SIGHUP reloads both\n"
            "  --tls-sessions N          TLS sessions kept for resumption (default 1024)\n"
            "  --tls-handshake-ms MS     accept to handshake done (default: header timeout)\n"
            "  --help                    this text\n"
            "SIZE takes a k, M or G suffix (powers of 1024).\n");
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    unsigned long long v;
    unsigned shift = 0;
    errno = 0;
    if (*s < '0' || *s > '9') {
        return -1;
    }
    v = strtoull(s, &end, 10);
    if (errno != 0) {
        return -1;
    }
    switch (*end) {
    case 'k':
    case 'K':
        shift = 10;
        end++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        end++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        end++;
        break;
    default:
        break;
    }
    if (*end != '\0' || v > (SIZE_MAX >> shift)) {
        return -1;
    }
    *out = (size_t)v << shift;
    return 0;
}

static int parse_uint(const char *s, unsigned max, unsigned *out)
{
    uint64_t v;
    if (parse_u64(s, max, &v) != 0) {
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

/* --arena-class SIZE:COUNT */
static int parse_class(const char *s, nea_config *cfg)
{
    char size[32];
    const char *colon = strchr(s, ':');
    nea_arena_class *k = &cfg->arena_classes[cfg->arena_class_count];
    if (colon == NULL || (size_t)(colon - s) >= sizeof(size) ||
        cfg->arena_class_count >= NEA_ARENA_CLASSES - 1) {
        return -1;
    }
    memcpy(size, s, (size_t)(colon - s));
    size[colon - s] = '\0';
    if (parse_size(size, &k->size) != 0 || parse_uint(colon + 1, 1u << 24, &k->count) != 0) {
        return -1;
    }
    cfg->arena_class_count++;
    return 0;
}

/* --route-class PATH=K: every route registered under PATH. */
static int parse_route_class(const char *s, nea_route *routes, size_t n)
{
    const char *eq = strrchr(s, '=');
    unsigned k;
    int found = -1;
    if (eq == NULL || parse_uint(eq + 1, NEA_ARENA_CLASSES - 1, &k) != 0) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (strlen(routes[i].path) == (size_t)(eq - s) &&
            memcmp(routes[i].path, s, (size_t)(eq - s)) == 0) {
            routes[i].arena_class = k;
            found = 0;
        }
    }
    return found;
}

static const char *option_name(const struct option *opts, int val)
{
    for (; opts->name != NULL; opts++) {
        if (opts->val == val) {
            return opts->name;
        }
    }
    return "?";
}

/* The successor listens (status 0): drain and let nea_run return. Or it
 * failed: serve on, and take SIGUSR2 again. */
static void on_upgraded(nea_server *s, int status, void *data)
{
    (void)data;
    if (status == 0) {
        fprintf(stderr, "nea-demo: upgrade: the successor listens; draining\n");
        uv_close((uv_handle_t *)&upgrade_sigusr2, NULL);
        (void)nea_server_close(s, NULL, NULL);
    } else {
        fprintf(stderr, "nea-demo: upgrade failed (%s); still serving\n", nea_strerror(status));
    }
}

static void on_sigusr2(uv_signal_t *h, int signum)
{
    int rc;
    (void)h;
    (void)signum;
    self_argv[0] = self_path;
    rc = nea_server_upgrade(demo_server(), self_argv, on_upgraded, NULL);
    if (rc != 0 && rc != NEA_ESTATE) {
        fprintf(stderr, "nea-demo: upgrade not started: %s\n", nea_strerror(rc));
    }
}

/* --tls-cert: SIGHUP reads the same files again. */
static void on_sighup(uv_signal_t *h, int signum)
{
    const nea_config *cfg = h->data;
    char err[256];
    (void)signum;
    if (nea_server_tls_reload(demo_server(), &cfg->tls, err, sizeof(err)) == 0) {
        fprintf(stderr, "nea-demo: TLS certificate reloaded\n");
    } else {
        fprintf(stderr, "nea-demo: TLS reload failed, the old certificate stays: %s\n", err);
    }
}

/* The drain starts (libnea's own handler): the SIGHUP handle goes, so the
 * loop can end. */
static void on_stop_reload(uv_signal_t *h, int signum)
{
    (void)h;
    (void)signum;
    uv_close((uv_handle_t *)&reload_sighup, NULL);
    uv_close((uv_handle_t *)&reload_sigint, NULL);
    uv_close((uv_handle_t *)&reload_sigterm, NULL);
}

static void on_ready(nea_server *s, void *data)
{
    const nea_plan *plan = nea_server_plan(s);
    const nea_config *cfg = data;
    __atomic_store_n(&server, s, __ATOMIC_RELEASE);
    if (advise) {
        uv_signal_init(nea_server_loop(s), &advise_sigint);
        uv_signal_init(nea_server_loop(s), &advise_sigterm);
        uv_signal_start_oneshot(&advise_sigint, print_advice, SIGINT);
        uv_signal_start_oneshot(&advise_sigterm, print_advice, SIGTERM);
    }
    if (plan->tls_cache_bytes > 0) {
        uv_loop_t *loop = nea_server_loop(s);
        uv_signal_init(loop, &reload_sighup);
        uv_signal_init(loop, &reload_sigint);
        uv_signal_init(loop, &reload_sigterm);
        reload_sighup.data = data;
        uv_signal_start(&reload_sighup, on_sighup, SIGHUP);
        uv_signal_start_oneshot(&reload_sigint, on_stop_reload, SIGINT);
        uv_signal_start_oneshot(&reload_sigterm, on_stop_reload, SIGTERM);
        uv_unref((uv_handle_t *)&reload_sighup);
        uv_unref((uv_handle_t *)&reload_sigint);
        uv_unref((uv_handle_t *)&reload_sigterm);
    }
    if (upgrade_on_usr2) {
        uv_signal_init(nea_server_loop(s), &upgrade_sigusr2);
        uv_signal_start(&upgrade_sigusr2, on_sigusr2, SIGUSR2);
        uv_unref((uv_handle_t *)&upgrade_sigusr2); /* never keeps the run alive */
    }
    /* arenas and connections are per worker; reserved is the total. */
    if (nea_server_port(s) < 0) {
        printf("listening on unix:%s", cfg->unix_path != NULL ? cfg->unix_path : "(inherited)");
    } else {
        printf("listening on %s://%s:%d", plan->tls_cache_bytes > 0 ? "https" : "http", cfg->host,
               nea_server_port(s));
    }
    printf(" reserved=%zu workers=%u arenas=%u arena_size=%zu connections=%u buffers=%u "
           "slot_bytes=%zu buffer_bytes=%zu",
           plan->total, plan->workers, plan->classes[0].count, plan->classes[0].size,
           cfg->max_connections, plan->conn_buffers, plan->conn_slot_size, plan->conn_buffer_size);
    if (inherited.http_count > 0) {
        printf(" inherited=%u", inherited.http_count);
    }
    if (plan->tls_cache_bytes > 0) {
        printf(" tls_state_bytes=%zu tls_records_bytes=%zu tls_sessions=%u tls_cache_bytes=%zu",
               plan->tls_conn_size, plan->tls_records_size, plan->tls_sessions,
               plan->tls_cache_bytes);
    }
    if (nea_server_agent_port(s) >= 0) {
        printf(" agent=%d", nea_server_agent_port(s));
    }
    printf("\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    enum {
        O_HOST = 256,
        O_PORT,
        O_MEM,
        O_ARENA,
        O_ARENAS,
        O_CONNS,
        O_BUFS,
        O_RBUF,
        O_BODY,
        O_HTO,
        O_KTO,
        O_QTO,
        O_BTO,
        O_BDL,
        O_STATIC,
        O_PREFAULT,
        O_NOGUARD,
        O_RTO,
        O_RATE,
        O_OTARGET,
        O_OINTERVAL,
        O_OHOLD,
        O_OBUDGET,
        O_RESERVED,
        O_FAIR,
        O_LIBC,
        O_AGENT,
        O_DDELAY,
        O_DTIMEOUT,
        O_ACCESS,
        O_CLASS,
        O_RCLASS,
        O_ADVISE,
        O_UPLOAD,
        O_WTO,
        O_WORKERS,
        O_JSON_ERRORS,
        O_UNIX,
        O_UPGRADE,
        O_AWEIGHT,
        O_TLS_CERT,
        O_TLS_KEY,
        O_TLS_SESSIONS,
        O_TLS_HSTO,
        O_HELP
    };
    static const struct option opts[] = {
        {"host", required_argument, NULL, O_HOST},
        {"port", required_argument, NULL, O_PORT},
        {"memory-limit", required_argument, NULL, O_MEM},
        {"arena-size", required_argument, NULL, O_ARENA},
        {"arenas", required_argument, NULL, O_ARENAS},
        {"connections", required_argument, NULL, O_CONNS},
        {"conn-buffers", required_argument, NULL, O_BUFS},
        {"read-buffer", required_argument, NULL, O_RBUF},
        {"max-body", required_argument, NULL, O_BODY},
        {"header-timeout-ms", required_argument, NULL, O_HTO},
        {"keepalive-timeout-ms", required_argument, NULL, O_KTO},
        {"queue-timeout-ms", required_argument, NULL, O_QTO},
        {"body-timeout-ms", required_argument, NULL, O_BTO},
        {"body-deadline-ms", required_argument, NULL, O_BDL},
        {"static", required_argument, NULL, O_STATIC},
        {"prefault", no_argument, NULL, O_PREFAULT},
        {"no-guard-pages", no_argument, NULL, O_NOGUARD},
        {"response-timeout-ms", required_argument, NULL, O_RTO},
        {"body-min-rate", required_argument, NULL, O_RATE},
        {"overload-target-ms", required_argument, NULL, O_OTARGET},
        {"overload-interval-ms", required_argument, NULL, O_OINTERVAL},
        {"overload-hold-ms", required_argument, NULL, O_OHOLD},
        {"overload-budget-us", required_argument, NULL, O_OBUDGET},
        {"reserved-arenas", required_argument, NULL, O_RESERVED},
        {"fair-share-pct", required_argument, NULL, O_FAIR},
        {"libc-routes", no_argument, NULL, O_LIBC},
        {"agent-port", required_argument, NULL, O_AGENT},
        {"drain-delay-ms", required_argument, NULL, O_DDELAY},
        {"drain-timeout-ms", required_argument, NULL, O_DTIMEOUT},
        {"access-log", no_argument, NULL, O_ACCESS},
        {"arena-class", required_argument, NULL, O_CLASS},
        {"route-class", required_argument, NULL, O_RCLASS},
        {"advise", no_argument, NULL, O_ADVISE},
        {"max-upload", required_argument, NULL, O_UPLOAD},
        {"write-timeout-ms", required_argument, NULL, O_WTO},
        {"workers", required_argument, NULL, O_WORKERS},
        {"json-errors", no_argument, NULL, O_JSON_ERRORS},
        {"unix", required_argument, NULL, O_UNIX},
        {"upgrade-on-sigusr2", no_argument, NULL, O_UPGRADE},
        {"agent-weight", required_argument, NULL, O_AWEIGHT},
        {"tls-cert", required_argument, NULL, O_TLS_CERT},
        {"tls-key", required_argument, NULL, O_TLS_KEY},
        {"tls-sessions", required_argument, NULL, O_TLS_SESSIONS},
        {"tls-handshake-ms", required_argument, NULL, O_TLS_HSTO},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    nea_route routes[] = {
        {"GET", "/hello", hello, NULL, 0, 0, 0, 0, NULL},
        {"GET", "/alloc/", alloc, NULL, 0, 0, 0, 0, NULL},
        {"POST", "/svg", svg, NULL, 0, 0, 0, 0, NULL},
        {"GET", "/static", static_file, NULL, 0, 0, 0, 0, NULL},
        {"GET", "/stream/", stream_route, NULL, 0, 0, 0, 0, NULL},
        /* max_body: --max-upload, set after the options */
        {"POST", "/upload", upload_route, NULL, NEA_ROUTE_STREAM_BODY, 0, 0, 0, NULL},
        {"GET", "/sleep/", sleep_route, NULL, 0, 0, 0, 0, NULL},
        {"GET", "/spin/", spin, NULL, 0, 0, 0, 0, NULL},
        {"GET", "/stats", stats, NULL, NEA_ROUTE_EXEMPT, 0, 0, 0, NULL},
        {"GET", "/health", health, NULL, NEA_ROUTE_EXEMPT, 0, 0, 0, NULL},
        {"GET", "/ready", NULL, NULL, NEA_ROUTE_READY, 0, 0, 0, NULL},
        {"GET", "/metrics", metrics, NULL, NEA_ROUTE_EXEMPT, 0, 0, 0, NULL},
        /* its own response timeout: at most 1 s from one event to the next */
        {"GET", "/events/", events_route, NULL, 0, 0, 0, 1000, NULL},
        {"GET", "/json/", clib_json, NULL, 0, 0, 0, 0, NULL},
        {"GET", "/gzip/", clib_gzip, NULL, 0, 0, 0, 0, NULL},
        {"GET", "/ws/echo", NULL, NULL, 0, 0, 0, 0, &ws_echo},
        /* the last two only with --libc-routes */
        {"GET", "/json-libc/", clib_json, CLIB_LIBC, 0, 0, 0, 0, NULL},
        {"GET", "/gzip-libc/", clib_gzip, CLIB_LIBC, 0, 0, 0, 0, NULL},
    };
    size_t nroutes = sizeof(routes) / sizeof(routes[0]) - 2;
    size_t max_upload = (size_t)4 << 30;
    nea_config cfg;
    struct stat sb;
    bool static_given = false;
    unsigned port = 0;
    int opt, rc = 0;

    nea_config_init(&cfg);
    cfg.reserved_arenas = 1; /* /stats and /health answer when every other arena is busy */
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case O_HOST:
            cfg.host = optarg;
            break;
        case O_PORT:
            rc = parse_uint(optarg, 65535, &port);
            cfg.port = (int)port;
            break;
        case O_MEM:
            rc = parse_size(optarg, &cfg.memory_limit);
            break;
        case O_ARENA:
            rc = parse_size(optarg, &cfg.arena_size);
            break;
        case O_ARENAS:
            rc = parse_uint(optarg, 1u << 24, &cfg.arena_count);
            break;
        case O_CONNS:
            rc = parse_uint(optarg, 1u << 22, &cfg.max_connections);
            break;
        case O_BUFS:
            rc = parse_uint(optarg, 1u << 22, &cfg.conn_buffers);
            break;
        case O_RBUF:
            rc = parse_size(optarg, &cfg.read_buffer_size);
            break;
        case O_BODY:
            rc = parse_size(optarg, &cfg.max_body_size);
            break;
        case O_HTO:
            rc = parse_uint(optarg, 86400000, &cfg.header_timeout_ms);
            break;
        case O_KTO:
            rc = parse_uint(optarg, 86400000, &cfg.keepalive_timeout_ms);
            break;
        case O_QTO:
            rc = parse_uint(optarg, 86400000, &cfg.queue_timeout_ms);
            break;
        case O_BTO:
            rc = parse_uint(optarg, 86400000, &cfg.body_timeout_ms);
            break;
        case O_BDL:
            rc = parse_uint(optarg, 86400000, &cfg.body_deadline_ms);
            break;
        case O_STATIC:
            static_path = optarg;
            static_given = true;
            break;
        case O_UPLOAD:
            rc = parse_size(optarg, &max_upload);
            break;
        case O_WTO:
            rc = parse_uint(optarg, 86400000, &cfg.write_timeout_ms);
            break;
        case O_PREFAULT:
            cfg.prefault = 1;
            break;
        case O_NOGUARD:
            cfg.guard_pages = 0;
            break;
        case O_RTO:
            rc = parse_uint(optarg, 86400000, &cfg.response_timeout_ms);
            break;
        case O_RATE:
            rc = parse_uint(optarg, 1u << 30, &cfg.body_min_rate);
            break;
        case O_OTARGET:
            rc = parse_uint(optarg, 86400000, &cfg.overload_target_ms);
            break;
        case O_OINTERVAL:
            rc = parse_uint(optarg, 86400000, &cfg.overload_interval_ms);
            break;
        case O_OHOLD:
            rc = parse_uint(optarg, 86400000, &cfg.overload_hold_ms);
            break;
        case O_OBUDGET:
            rc = parse_uint(optarg, 86400000, &cfg.overload_budget_us);
            break;
        case O_RESERVED:
            rc = parse_uint(optarg, 1u << 24, &cfg.reserved_arenas);
            break;
        case O_FAIR:
            rc = parse_uint(optarg, 100, &cfg.fair_share_pct);
            break;
        case O_LIBC:
            nroutes = sizeof(routes) / sizeof(routes[0]);
            break;
        case O_AGENT:
            rc = parse_uint(optarg, 65535, &port);
            cfg.agent_port = (int)port;
            break;
        case O_DDELAY:
            rc = parse_uint(optarg, 86400000, &cfg.drain_delay_ms);
            break;
        case O_DTIMEOUT:
            rc = parse_uint(optarg, 86400000, &cfg.drain_timeout_ms);
            break;
        case O_ACCESS:
            cfg.on_complete = access_log;
            break;
        case O_CLASS:
            rc = parse_class(optarg, &cfg);
            break;
        case O_RCLASS:
            rc = parse_route_class(optarg, routes, sizeof(routes) / sizeof(routes[0]));
            break;
        case O_ADVISE:
            advise = true;
            break;
        case O_WORKERS:
            rc = parse_uint(optarg, 1024, &cfg.workers);
            break;
        case O_JSON_ERRORS:
            cfg.error_bodies = json_errors;
            cfg.error_body_count = sizeof(json_errors) / sizeof(json_errors[0]);
            break;
        case O_UNIX:
            cfg.unix_path = optarg;
            break;
        case O_UPGRADE:
            upgrade_on_usr2 = true;
            break;
        case O_AWEIGHT:
            rc = parse_uint(optarg, 256, &cfg.agent_weight);
            break;
        case O_TLS_CERT:
            cfg.tls.cert_file = optarg;
            break;
        case O_TLS_KEY:
            cfg.tls.key_file = optarg;
            break;
        case O_TLS_SESSIONS:
            rc = parse_uint(optarg, 1u << 24, &cfg.tls_sessions);
            break;
        case O_TLS_HSTO:
            rc = parse_uint(optarg, 86400000, &cfg.tls_handshake_ms);
            break;
        case O_HELP:
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
        if (rc != 0) {
            fprintf(stderr, "nea-demo: bad value for --%s: %s\n", option_name(opts, opt), optarg);
            usage(stderr);
            return 2;
        }
    }
    if (nroutes == sizeof(routes) / sizeof(routes[0]) && cfg.workers != 1) {
        /* The libc routes switch jansson's process-wide allocator for the
         * length of a request: not while another thread serves /json. */
        fprintf(stderr, "nea-demo: --libc-routes needs --workers 1\n");
        return 2;
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if ((cfg.tls.cert_file == NULL) != (cfg.tls.key_file == NULL)) {
        fprintf(stderr, "nea-demo: --tls-cert and --tls-key go together\n");
        return 2;
    }
    if (static_given && stat(static_path, &sb) != 0) {
        fprintf(stderr, "nea-demo: --static %s: %s\n", static_path, strerror(errno));
        return 2;
    }
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if ((routes[i].flags & NEA_ROUTE_STREAM_BODY) != 0) {
            routes[i].max_body = max_upload;
        }
    }
    /* Sockets handed over (systemd, or a predecessor's upgrade) replace
     * --host/--port/--unix. */
    rc = nea_listen_fds_from_env(&inherited);
    if (rc < 0) {
        fprintf(stderr, "nea-demo: LISTEN_FDS: %s\n", nea_strerror(rc));
        return 2;
    }
    if (rc > 0 || inherited.agent >= 0 || inherited.ready >= 0) {
        cfg.inherit = &inherited;
    }
    if (upgrade_on_usr2) {
        ssize_t n = readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
        if (n <= 0) {
            fprintf(stderr, "nea-demo: --upgrade-on-sigusr2: cannot read /proc/self/exe\n");
            return 2;
        }
        self_path[n] = '\0';
        self_argv = argv;
    }
    clib_routes_init();
    demo_cfg = cfg;
    rc = nea_run(&cfg, routes, nroutes, on_ready, &cfg);
    if (rc != 0) {
        fprintf(stderr, "nea-demo: %s\n", nea_strerror(rc));
        return 1;
    }
    return 0;
}
