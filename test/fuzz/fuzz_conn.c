/*
 * fuzz_conn.c - libFuzzer target for the request reader and the connection
 * state machine (lib/http.c, lib/chunked.c, lib/conn.c, and the request's
 * arena, defers and out-of-memory unwind in lib/req.c and lib/trampoline.c).
 * The slot logic (lib/admission.c) is reached only through one adopted
 * connection at a time; fuzz_server.c drives it through a real listener.
 *
 * One server lives for the whole process on its own loop, with a small
 * configuration: one arena, four connection slots, 1 KiB read buffer, short
 * timeouts. Each input is served on a fresh connection, one end of a
 * socketpair handed to nea__server_adopt (testing builds only), while this
 * file plays the client on the other end.
 *
 * Input layout: byte 0 is flags, the rest is what the client sends.
 *   bit 0     hold the only arena for the whole input, so every complete
 *             head waits in the arena queue and is shed with 503 (queue
 *             timeout 1 ms) or cancelled when the client goes away
 *   bits 1-3  how the bytes are cut into writes (enum split_mode)
 *   bit 4     slow reader: the server's end gets the smallest send buffer
 *             and the client reads nothing until it has sent everything, so
 *             responses are written partly (uv_write after uv_try_write) and
 *             a stalled write meets the write timeout
 *   bits 5-7  N != 0: the Nth arena grant of the input fails (fault
 *             injection, once), reaching the out-of-memory paths libnea's
 *             own allocations have: request struct, head copy, header index,
 *             body, defers, timers, the response buffer
 *
 * After the input: the client half-closes, reads until the server closes
 * its end, then closes; the loop is pumped until the connection is gone.
 * Checked after every input (abort() on violation, which the fuzzer reports
 * as a crash):
 *   - connections_open == 0, arenas_in_use == 0, queue_length == 0, no live
 *     request, no protected frame left, idle and wait lists empty;
 *   - every defer a handler registered has run exactly once;
 *   - what the client received is a sequence of HTTP/1.1 responses: each
 *     starts with "HTTP/1.1 " and a 3-digit status, bodies framed by
 *     Content-Length (HEAD responses announce one and send nothing), and
 *     nothing follows a response that said "Connection: close". The last
 *     one may be cut short only by a timeout of a stalled write;
 *   - handlers see what the guard promises (Host in HTTP/1.1, NUL-terminated
 *     strings and body) and the API's documented refusals hold.
 *
 * Built two ways: with clang and -fsanitize=fuzzer (test/fuzz/CMakeLists.txt,
 * target fuzz_conn), and with any compiler together with replay.c (target
 * fuzz_replay_conn, run by ctest over corpus/ and regressions/).
 */
#include "fuzzloop.h"
#include "server.h"

#include "responses.h"

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

/* How the client cuts the input into writes (flag bits 1-3). Between two
 * writes the loop runs a few times, so the server reads each separately. */
enum split_mode {
    SPLIT_WHOLE = 0, /* one write */
    SPLIT_1 = 1,     /* 1-byte writes */
    SPLIT_7 = 2,     /* 7-byte writes */
    SPLIT_64 = 3,    /* 64-byte writes */
    SPLIT_FF = 4,    /* writes end at each 0xFF byte, which is dropped */
    /* As SPLIT_FF, and real time passes at each marker (PAUSE_MS each, at
     * most PAUSE_BUDGET_MS per input), so the header, body, keep-alive and
     * queue timers fire between writes. */
    SPLIT_FF_WAIT = 5,
    /* As SPLIT_FF, then the client closes at once without reading: cancels
     * whatever is in flight. */
    SPLIT_FF_ABORT = 6,
    /* As SPLIT_FF, then no half-close for a while: the server's own timers
     * (keep-alive, header and body deadlines) have to end the connection. */
    SPLIT_FF_IDLE = 7,
};

#define READ_BUFFER 1024
#define MAX_BODY 2048        /* small enough that inputs of -max_len=4096 exceed it chunked */
#define TIMEOUT_MS 5         /* header, body, keep-alive */
#define PAUSE_MS 6           /* just past TIMEOUT_MS */
#define PAUSE_BUDGET_MS 18   /* real time one input may spend in pauses */
#define PUMPS 200            /* NOWAIT iterations waiting for the server's FIN */
#define SETTLE_LIMIT_MS 5000 /* longest a closed client's slot may take to free */
#define RX_CAP (256u * 1024u)
#define SLOW_SNDBUF 1 /* the kernel raises it to its minimum (a few KiB) */

static uv_loop_t loop;
static nea_server *srv;
static uv_timer_t wake; /* bounds every UV_RUN_ONCE (and keeps it from returning at once) */

static unsigned long defers_registered, defers_run;
static bool verbose; /* FUZZ_CONN_VERBOSE set: print what each input got back */

static char rx[RX_CAP];
static size_t rx_len;
static bool rx_eof;
static bool client_reads; /* false while a slow reader is still sending */
static bool server_fin;   /* the server closed its end (read, or polled by a slow reader) */
static bool rx_cut_ok;    /* a stalled write timed out: the last response may be cut */
static unsigned char rx_memo[RX_CAP + 1]; /* scratch for fz_responses_valid */

static void fail(const char *what)
{
    nea_stats st;
    nea_server_stats(srv, &st);
    fprintf(stderr,
            "fuzz_conn: invariant violated: %s\n"
            "  connections_open=%u arenas_in_use=%u queue_length=%u env.reqs.live=%u "
            "requests=%llu rx_len=%zu rx_eof=%d defers %lu/%lu\n",
            what, st.connections_open, nea_stats_arenas(&st).in_use, st.queue_length,
            srv->env.reqs.live, (unsigned long long)st.requests, rx_len, (int)rx_eof, defers_run,
            defers_registered);
    fprintf(stderr, "  received: %.*s\n", (int)(rx_len < 2048 ? rx_len : 2048), rx);
    abort();
}

/* --- handlers ------------------------------------------------------------ */

static void on_log(void *data, int level, const char *msg)
{
    (void)data;
    (void)level;
    (void)msg;
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

/* GET /hello: walks the indexed head (so ASan sees every string end), copies
 * one request header into the response. */
static void h_hello(nea_req *req, void *d)
{
    size_t total =
        strlen(nea_req_method(req)) + strlen(nea_req_path(req)) + strlen(nea_req_query(req));
    const char *name, *value, *fuzz;
    (void)d;
    for (size_t i = 0; i < nea_req_header_count(req); i++) {
        if (nea_req_header_at(req, i, &name, &value) != 0) {
            fail("nea_req_header_at refused an index below the count");
        }
        total += strlen(name) + strlen(value);
    }
    if (nea_req_header(req, "host") == NULL && nea_req_http_minor(req) == 1) {
        fail("an HTTP/1.1 request reached a handler without Host");
    }
    fuzz = nea_req_header(req, "x-fuzz");
    if (fuzz != NULL) {
        (void)nea_resp_header(req, "X-Fuzz", fuzz);
    }
    if (nea_resp_header(req, "Content-Length", "1") != UV_EINVAL ||
        nea_resp_header(req, "X-Bad", "a\r\nb") != UV_EINVAL) {
        fail("nea_resp_header let a managed or unsafe header through");
    }
    (void)total;
    nea_respond(req, 200, "text/plain", "hello\n", 6);
    /* The handler is still on the stack, so req is still valid here. */
    if (nea_respond(req, 200, NULL, NULL, 0) != NEA_ERESPONDED) {
        fail("a second nea_respond was not refused");
    }
}

/* POST /echo: the body back. A body near max_body_size does not fit twice
 * in the arena: that response becomes the pre-built 500. */
static void h_echo(nea_req *req, void *d)
{
    size_t len;
    const char *body = nea_req_body(req, &len);
    (void)d;
    if (body[len] != '\0') {
        fail("body not NUL-terminated");
    }
    nea_respond(req, 200, "application/octet-stream", body, len);
}

/* GET /alloc/N: takes N bytes of the arena and writes all of them; an N the
 * arena cannot hold unwinds to the pre-built 500. */
static void h_alloc(nea_req *req, void *d)
{
    size_t n = (size_t)strtoul(nea_req_path_tail(req), NULL, 10);
    char *a = nea_alloc_aligned(req, 1, 64);
    char *p = nea_alloc(req, n);
    (void)d;
    if (((uintptr_t)a & 63) != 0) {
        fail("nea_alloc_aligned ignored the alignment");
    }
    memset(p, 0xA5, n);
    nea_respond(req, 200, "text/plain", p, n < 16 ? n : 16);
}

/* GET /p/...: a prefix route answering with its tail and query. */
static void h_prefix(nea_req *req, void *d)
{
    char *tail = nea_strdup(req, nea_req_path_tail(req));
    char *s = nea_printf(req, "%s?%s\n", tail, nea_req_query(req));
    (void)d;
    nea_respond(req, 200, "text/plain", s, strlen(s));
}

static void protected_alloc(nea_req *req, void *arg)
{
    size_t n = *(const size_t *)arg;
    char *p;
    add_defer(req); /* runs at the unwind if the calloc fails */
    p = nea_calloc(req, 1, n);
    if (nea_try_grow(req, p, n + 16) == NULL && nea_arena_available(req) >= 16) {
        fail("nea_try_grow refused to grow the last allocation in place");
    }
}

/* GET /protect/N: N bytes inside nea_req_protect; too many roll back and the
 * request carries on to a 200. */
static void h_protect(nea_req *req, void *d)
{
    size_t n = (size_t)strtoul(nea_req_path_tail(req), NULL, 10);
    int rc = nea_req_protect(req, protected_alloc, &n);
    char *s;
    (void)d;
    if (rc != 0 && rc != NEA_ENOMEM) {
        fail("nea_req_protect returned neither 0 nor NEA_ENOMEM");
    }
    s = nea_printf(req, "%s, %zu left\n", rc == 0 ? "ok" : "rolled back", nea_arena_available(req));
    nea_respond(req, 200, "text/plain", s, strlen(s));
}

static void async_finish(nea_req *req, void *arg)
{
    (void)arg;
    nea_respond_static(req, 200, "text/plain", "async\n", 6);
}

static void on_async_timer(uv_timer_t *t)
{
    nea_req_run(t->data, async_finish, NULL);
}

/* GET /async: answers from a 0 ms timer through nea_req_run; a client that
 * goes away first cancels it (the defer must still run). */
static void h_async(nea_req *req, void *d)
{
    uv_timer_t *t = nea_req_timer(req);
    (void)d;
    add_defer(req);
    t->data = req;
    uv_timer_start(t, on_async_timer, 0, 0);
}

/* GET /defer: a defer, then more than any arena holds. */
static void h_defer(nea_req *req, void *d)
{
    (void)d;
    add_defer(req);
    (void)nea_alloc(req, (size_t)1 << 40);
    fail("nea_alloc returned after exhausting the arena");
}

static void setup(void)
{
    nea_config cfg;
    nea_plan plan;
    char err[256];
    int rc;

    verbose = getenv("FUZZ_CONN_VERBOSE") != NULL;
    signal(SIGPIPE, SIG_IGN); /* libuv writes with write(2): a closed peer must not kill us */
    if (uv_loop_init(&loop) != 0) {
        abort();
    }
    uv_timer_init(&loop, &wake);

    nea_config_init(&cfg);
    cfg.port = 0;
    cfg.read_buffer_size = READ_BUFFER;
    cfg.arena_count = 1;
    cfg.max_connections = 4;
    cfg.max_body_size = MAX_BODY;
    cfg.queue_timeout_ms = 1;
    cfg.header_timeout_ms = TIMEOUT_MS;
    cfg.body_timeout_ms = TIMEOUT_MS;
    cfg.keepalive_timeout_ms = TIMEOUT_MS;
    cfg.write_timeout_ms = 2 * TIMEOUT_MS;
    cfg.drain_timeout_ms = 2 * TIMEOUT_MS;
    cfg.scrub = NEA_SCRUB_POISON;
    cfg.log = on_log;
    /* The smallest arena the plan accepts (it says so when refused), plus
     * MAX_BODY: a body of max_body_size fits, but not twice (echo's
     * response), so nea_respond's own out-of-memory 500 is reachable. */
    cfg.arena_size = 1;
    if (nea_config_plan(&cfg, &plan, err, sizeof(err)) != NEA_EARENA_SMALL) {
        fprintf(stderr, "fuzz_conn: expected NEA_EARENA_SMALL for a 1-byte arena\n");
        abort();
    }
    cfg.arena_size = NEA__ROUND_UP(sizeof(nea_req), NEA__ALIGN) + READ_BUFFER +
                     NEA__MIN_HANDLER_BYTES + MAX_BODY;
    rc = nea_server_new(&loop, &cfg, &srv);
    if (rc != 0) {
        fprintf(stderr, "fuzz_conn: nea_server_new: %s\n", nea_strerror(rc));
        abort();
    }
    if (nea_server_route(srv, "GET", "/hello", h_hello, NULL) != 0 ||
        nea_server_route(srv, "POST", "/echo", h_echo, NULL) != 0 ||
        nea_server_route(srv, "GET", "/alloc/", h_alloc, NULL) != 0 ||
        nea_server_route(srv, "GET", "/p/", h_prefix, NULL) != 0 ||
        nea_server_route(srv, "GET", "/async", h_async, NULL) != 0 ||
        nea_server_route(srv, "GET", "/defer", h_defer, NULL) != 0 ||
        nea_server_route(srv, "GET", "/protect/", h_protect, NULL) != 0) {
        abort();
    }
}

/* --- the client side -------------------------------------------------------- */

/* Reads everything the server sent so far, without blocking. A slow reader
 * only looks whether the server has closed its end. */
static void drain(int fd)
{
    char tmp[4096];
    if (!client_reads) {
        struct pollfd pfd = {.fd = fd, .events = POLLRDHUP};
        if (poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) {
            server_fin = true;
        }
        return;
    }
    for (;;) {
        ssize_t n = recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT);
        if (n > 0) {
            size_t take = (size_t)n;
            if (take > RX_CAP - rx_len) {
                take = RX_CAP - rx_len;
            }
            memcpy(rx + rx_len, tmp, take);
            rx_len += take;
        } else if (n == 0) {
            rx_eof = server_fin = true;
            return;
        } else if (errno == EINTR) {
            continue;
        } else {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                rx_eof = server_fin = true; /* ECONNRESET: the server is gone */
            }
            return;
        }
    }
}

static void pump(int fd, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        if (fd >= 0) {
            drain(fd);
        }
    }
}

/* Lets up to ms of real time pass on the loop, so timers due by then fire.
 * With a client fd, returns as soon as the server has closed its end. */
static void pump_wait(int fd, unsigned ms)
{
    uint64_t now = fuzz_now_ms(), end = now + ms;
    while (now < end && !(fd >= 0 && server_fin)) {
        fuzz_turn(&loop, &wake, end - now);
        if (fd >= 0) {
            drain(fd);
        }
        now = fuzz_now_ms();
    }
}

/* Sends n bytes; false once the server no longer takes any. */
static bool send_all(int fd, const uint8_t *p, size_t n)
{
    unsigned stalls = 0;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && stalls < 50) {
            /* The server stopped reading (backpressure): let it work. */
            stalls++;
            pump(fd, 4);
            if (stalls > 10) {
                pump_wait(fd, 2);
            }
        } else {
            return false;
        }
    }
    return true;
}

/* --- checking what the client received ------------------------------------- */

static void check_responses(void)
{
    if (verbose) {
        fprintf(stderr, "fuzz_conn: received %zu bytes%s:\n%.*s\n", rx_len,
                rx_eof ? " then EOF" : " (no EOF)", (int)rx_len, rx);
    }
    if (rx_len == RX_CAP) {
        rx_eof = false; /* cut by our buffer: judge only what fits */
    }
    fz_stream st = {rx, rx_len, !rx_eof || rx_cut_ok, false, rx_memo, false};
    if (!fz_responses_valid(&st)) {
        fail("the client received something that is not a sequence of HTTP/1.1 responses");
    }
}

/* --- one input --------------------------------------------------------------- */

static bool settled(bool held)
{
    nea_stats st;
    nea_server_stats(srv, &st);
    return st.connections_open == 0 && nea_stats_arenas(&st).in_use == (held ? 1u : 0u) &&
           st.queue_length == 0 && srv->env.reqs.live == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    const uint8_t *p, *end;
    nea__arena *held = NULL;
    enum split_mode mode;
    unsigned pause_budget = PAUSE_BUDGET_MS, fault_nth;
    bool open = true, slow;
    int sv[2];
    nea_stats st;
    uint64_t timeouts_before;

    uint64_t started;

    if (!ready) {
        setup();
        ready = true;
    }
    if (size == 0) {
        return 0;
    }
    started = fuzz_now_ms();
    mode = (enum split_mode)((data[0] >> 1) & 7);
    slow = (data[0] & 0x10) != 0;
    fault_nth = (unsigned)(data[0] >> 5);
    p = data + 1;
    end = data + size;
    rx_len = 0;
    rx_eof = server_fin = false;
    rx_cut_ok = false;
    client_reads = !slow;
    nea_server_stats(srv, &st);
    timeouts_before = st.timeouts;

    if (data[0] & 1) {
        held = nea__pool_acquire(&srv->pools[0]);
        if (held == NULL) {
            fail("the only arena was not free at the start of an input");
        }
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        perror("fuzz_conn: socketpair");
        abort();
    }
    if (slow) {
        int small = SLOW_SNDBUF;
        (void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    }
    if (nea__server_adopt(srv, sv[0]) != 0) {
        fail("nea__server_adopt refused a connection with every slot free");
    }
    if (fault_nth != 0) {
        nea__fault_arm(&srv->fault, NEA__FAULT_ARENA, fault_nth, false);
    }

    /* Send the input, segment by segment, letting the server read each. */
    while (p < end && open) {
        const uint8_t *seg = p, *next;
        size_t len;
        switch (mode) {
        case SPLIT_WHOLE:
            len = (size_t)(end - p);
            next = end;
            break;
        case SPLIT_1:
        case SPLIT_7:
        case SPLIT_64:
            len = mode == SPLIT_1 ? 1 : mode == SPLIT_7 ? 7 : 64;
            if (len > (size_t)(end - p)) {
                len = (size_t)(end - p);
            }
            next = p + len;
            break;
        default: {
            const uint8_t *m = memchr(p, 0xFF, (size_t)(end - p));
            len = (size_t)((m != NULL ? m : end) - p);
            next = m != NULL ? m + 1 : end;
            break;
        }
        }
        if (len > 0) {
            open = send_all(sv[1], seg, len);
        }
        p = next;
        pump(sv[1], 4);
        if (mode == SPLIT_FF_WAIT && p < end && pause_budget >= PAUSE_MS) {
            pump_wait(sv[1], PAUSE_MS);
            pause_budget -= PAUSE_MS;
        }
    }

    client_reads = true;
    if (mode == SPLIT_FF_ABORT) {
        close(sv[1]);
        sv[1] = -1;
    } else {
        if (mode == SPLIT_FF_IDLE) {
            /* No FIN: the keep-alive or a deadline has to end it. */
            pump_wait(sv[1], 4 * TIMEOUT_MS);
        }
        shutdown(sv[1], SHUT_WR);
        for (unsigned i = 0; i < PUMPS && !rx_eof; i++) {
            pump(sv[1], 1);
        }
        /* Not closed yet: something waits on a timer (queue, linger...). */
        pump_wait(sv[1], 20 * TIMEOUT_MS);
        nea_server_stats(srv, &st);
        rx_cut_ok = slow && st.timeouts != timeouts_before;
        check_responses();
        close(sv[1]);
        sv[1] = -1;
    }

    /* The client is gone: the slot, and the arena, must come back. */
    pump(-1, 4);
    if (!settled(held != NULL)) {
        uint64_t deadline = fuzz_now_ms() + SETTLE_LIMIT_MS;
        while (!settled(held != NULL) && fuzz_now_ms() < deadline) {
            pump_wait(-1, 1);
        }
        if (!settled(held != NULL)) {
            fail("the connection or its request outlived the client by 5 s");
        }
    }
    if (held != NULL) {
        nea__server_give_back(srv, held);
    }
    nea__fault_arm(&srv->fault, NEA__FAULT_ARENA, 0, false);
    nea_server_stats(srv, &st);
    if (st.connections_open != 0 || nea_stats_arenas(&st).in_use != 0 || st.queue_length != 0 ||
        srv->env.reqs.live != 0) {
        fail("server not back to idle after the input");
    }
    if (srv->env.reqs.tramp.top != NULL || srv->admission.idle_head != NULL ||
        srv->admission.wait_head[0] != NULL || srv->admission.wait_len != 0) {
        fail("a protected frame, an idle connection or a waiter is left over");
    }
    if (defers_registered != defers_run) {
        fail("a registered defer did not run exactly once");
    }
    if (verbose) {
        fprintf(stderr, "fuzz_conn: %zu bytes, split mode %d%s%s, fault %u: %llu ms\n", size - 1,
                (int)mode, held != NULL ? ", arena held" : "", slow ? ", slow reader" : "",
                fault_nth, (unsigned long long)(fuzz_now_ms() - started));
    }
    return 0;
}
