/*
 * test_alloc.c - steady-state request handling makes no heap allocation.
 *
 * This executable interposes malloc and friends (forwarding to glibc's
 * __libc_* entry points) and counts calls while a mixed workload runs after
 * a warm-up: 200s, 404, 405, 400 (smuggling), 413, the OOM 500, 503 from
 * an exhausted arena pool (those answers with the host's own JSON bodies),
 * async handlers, chunked bodies, pipelining, and fresh connections; and a
 * second workload while the loop sheds for CPU,
 * with exempt routes, handlers that never answer (500, 504) and fair-share
 * refusals; a third with the demo's /json and /gzip routes, where jansson
 * and zlib allocate through the arena adapters (their out-of-memory 500s
 * included); a fourth that asks the agent and the readiness route and then
 * drains the server through its announcement to the end; a fifth of
 * streamed responses (length, chunked, a file, its ranges and conditional
 * answers), bodies read in pieces
 * (Content-Length and chunked, far larger than the arena) and a stream cut
 * by its client; and a sixth with two worker threads, where every worker
 * must serve without allocating, its /metrics scrapes summing both
 * workers' records; and a seventh that comes back to requests later: a
 * host timer through a reference (answered, and gone after a reset), a
 * hold released from a host timer (answered, and after a reset), and
 * thread-pool jobs (answered, cut by a reset, cut by the response
 * deadline), and half-closed clients answered; and an eighth of WebSocket
 * connections: handshakes, messages echoed whole and in pieces, sends from
 * a host timer through a reference, a kept message done later, out of
 * memory in a message, protocol failures (1002, 1007, 1009), pings, close
 * handshakes, a reset mid-message, a message refused for want of an arena
 * (1013), and idle connections pinged; and a ninth of 300 new HTTPS
 * connections (handshakes, half of them resumed). Every request is counted in the per-route
 * metrics and passed to a completion hook, and each round of the first
 * workload scrapes the Prometheus text (GET /metrics, and streamed by
 * nea_respond_metrics on both workers too) and logs rate-limited
 * refusals. libuv may grow its fd table when a new fd number first appears
 * (per loop); the warm-up uses the same number of connections on every
 * worker, so after it no allocation at all is expected. Worker threads call
 * malloc too, so the count is atomic. Not built under sanitizers (they own
 * malloc); skipped under Valgrind for the same reason.
 */
#include "clib.h"
#include "e2e.h"
#include "proc.h"
#include "strict.h"
#include "wsclient.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static int counting;             /* atomic */
static unsigned long heap_calls; /* atomic */

static void count_call(int yes)
{
    if (yes && __atomic_load_n(&counting, __ATOMIC_RELAXED)) {
        __atomic_fetch_add(&heap_calls, 1ul, __ATOMIC_RELAXED);
    }
}

/* On: from zero. */
static void set_counting(int on)
{
    if (on) {
        __atomic_store_n(&heap_calls, 0ul, __ATOMIC_SEQ_CST);
    }
    __atomic_store_n(&counting, on, __ATOMIC_SEQ_CST);
}

void *malloc(size_t n)
{
    count_call(1);
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
    count_call(1);
    return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
    count_call(1);
    return __libc_realloc(p, n);
}

void free(void *p)
{
    count_call(p != NULL);
    __libc_free(p);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    count_call(1);
    *out = __libc_memalign(align, n);
    return *out != NULL ? 0 : 12;
}

void *aligned_alloc(size_t align, size_t n)
{
    count_call(1);
    return __libc_memalign(align, n);
}

void *memalign(size_t align, size_t n)
{
    count_call(1);
    return __libc_memalign(align, n);
}

/* Mixed requests on one keep-alive connection: 200s (headers, bodies,
 * chunked, a prefix route, pipelined), 404, 405 and the OOM 500. */
static void keepalive_mix(h_fixture *f, int ka)
{
    h_response r;
    h_expect(f, ka, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 200, NULL);
    h_expect(f, ka, "GET /hdr?x=1 HTTP/1.1\r\nHost: x\r\nX-Test: y\r\n\r\n", 200, NULL);
    h_expect(f, ka, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 200, NULL);
    h_expect(f, ka,
             "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
             "3\r\nabc\r\n0\r\n\r\n",
             200, NULL);
    h_expect(f, ka, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404, &r);
    assert_string_equal(r.body, "{\"error\":\"not found\"}");
    h_expect(f, ka, "DELETE /hello HTTP/1.1\r\nHost: x\r\n\r\n", 405, NULL);
    h_expect(f, ka, "GET /alloc/100000000 HTTP/1.1\r\nHost: x\r\n\r\n", 500, &r);
    assert_string_equal(r.body, "{\"error\":\"internal\"}");
    h_sends(f, ka, "GET /p/a HTTP/1.1\r\nHost: x\r\n\r\nGET /p/b HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, ka, &r, H_DEADLINE_MS), 200);
    assert_int_equal(h_read(f, ka, &r, H_DEADLINE_MS), 200);
}

/* GET /scrape: the metrics streamed (nea_respond_metrics), read to the
 * close; true when it is a whole chunked 200 with the routes' series. */
static void r_scrape(nea_req *req, void *d)
{
    (void)d;
    if (nea_respond_metrics(req, 0) != 0) {
        nea_respond(req, 507, "text/plain", "no room", 7);
    }
}

static void scrape_streamed(h_fixture *f)
{
    static char buf[1 << 20];
    int fd = h_connect(f), n;
    h_sends(f, fd, "GET /scrape HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    n = s_read_all(&f->loop, fd, buf, sizeof(buf), H_DEADLINE_MS);
    close(fd);
    assert_true(n > 5);
    assert_memory_equal(buf, "HTTP/1.1 200 ", 13);
    assert_non_null(strstr(buf, "Transfer-Encoding: chunked\r\n"));
    assert_non_null(strstr(buf, "nea_route_requests_total{route=\"/hello\""));
    assert_memory_equal(buf + n - 5, "0\r\n\r\n", 5);
}

/* One round of the mixed workload. */
static void workload(h_fixture *f)
{
    h_response r;
    int ka = h_connect(f), fd, busy;

    keepalive_mix(f, ka);
    h_expect(f, ka, "GET /sleep/1 HTTP/1.1\r\nHost: x\r\n\r\n", 200, NULL);
    h_expect(f, ka, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 200, &r);
    assert_non_null(strstr(r.body, "nea_route_arena_peak_bytes_bucket{route=\"/hello\""));
    close(ka);
    scrape_streamed(f);

    fd = h_connect(f);
    h_expect(f, fd,
             "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
             400, NULL);
    close(fd);
    fd = h_connect(f);
    h_expect(f, fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n", 413,
             NULL);
    close(fd);

    /* The only arena is held by a sleeping request: the next one is shed. */
    busy = h_connect(f);
    h_sends(f, busy, "GET /sleep/100 HTTP/1.1\r\nHost: x\r\n\r\n");
    H_WAIT(f, f->srv->pools[0].in_use == 1);
    fd = h_connect(f);
    h_expect(f, fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 503, &r);
    assert_string_equal(r.body, "{\"error\":\"busy\"}");
    close(fd);
    assert_int_equal(h_read(f, busy, &r, H_DEADLINE_MS), 200);
    close(busy);
    H_WAIT(f, f->srv->stats.connections_open == 0);
}

static unsigned long completions;

static void on_complete(void *data, const nea_completion *c)
{
    (void)data;
    completions += c->peer->ss_family == AF_INET;
}

/* The host's bodies for libnea's own answers: the 404, 405, 400, 413, 500
 * and 503 of the workload are sent from their copies. */
static const nea_error_body json_errors[] = {
    {400, "application/json", "{\"error\":\"bad request\"}", 23},
    {404, "application/json", "{\"error\":\"not found\"}", 21},
    {405, "application/json", "{\"error\":\"method\"}", 18},
    {413, "application/json", "{\"error\":\"too large\"}", 21},
    {500, "application/json", "{\"error\":\"internal\"}", 20},
    {503, "application/json", "{\"error\":\"busy\"}", 16},
};

static void one_arena(nea_config *c)
{
    c->on_complete = on_complete;
    c->error_bodies = json_errors;
    c->error_body_count = sizeof(json_errors) / sizeof(json_errors[0]);
    c->arena_count = 1;
    c->queue_timeout_ms = 10;
}

static void test_steady_state_allocates_nothing(void **state)
{
    h_fixture *f = *state;
    nea_stats st;
    if (RUNNING_ON_VALGRIND) {
        skip();
    }
    workload(f); /* warm-up: libuv sizes its fd table */
    workload(f);
    set_counting(1);
    for (int i = 0; i < 50; i++) {
        workload(f);
    }
    set_counting(0);
    h_stats(f, &st);
    assert_true(st.requests > 50 * 14);
    assert_true(st.oom_500 >= 50);
    assert_true(nea_stats_shed(&st) >= 50);
    assert_true(completions >= st.requests); /* and the 503s for want of a slot */
    if (heap_calls != 0) {
        fail_msg("%lu heap calls during %llu requests", heap_calls,
                 (unsigned long long)st.requests);
    }
}

/* --- while shedding ------------------------------------------------------------ */

static void r_spin(nea_req *req, void *d)
{
    uint64_t until = uv_hrtime() + 2000000u;
    (void)d;
    while (uv_hrtime() < until) {
    }
    nea_respond(req, 200, "text/plain", "spun", 4);
}

static void r_ok(nea_req *req, void *d)
{
    (void)d;
    nea_respond(req, 200, "text/plain", "ok", 2);
}

static void r_forgets(nea_req *req, void *d)
{
    (void)req;
    (void)d;
}

static void r_never(nea_req *req, void *d)
{
    (void)d;
    nea_req_keep(req);
}

enum { BURST = 20 };

static int spinners[BURST];

/* BURST spinning requests found by one iteration, on kept-alive
 * connections (one a 503 closed is replaced). */
static void burst(h_fixture *f)
{
    h_response r;
    for (int i = 0; i < BURST; i++) {
        /* Written before the server runs: one iteration finds them all. */
        static const char req[] = "GET /spin HTTP/1.1\r\nHost: x\r\n\r\n";
        if (spinners[i] <= 0) {
            spinners[i] = h_connect(f);
        }
        assert_int_equal(write(spinners[i], req, sizeof(req) - 1), (ssize_t)(sizeof(req) - 1));
    }
    for (int i = 0; i < BURST; i++) {
        int st = h_read(f, spinners[i], &r, H_DEADLINE_MS);
        assert_true(st == 200 || st == 503);
        if (st == 503 && strstr(r.head, "Connection: close") != NULL) {
            close(spinners[i]);
            spinners[i] = 0;
        }
    }
}

/* Two bursts back to back (sustained load: shedding starts, and stays on
 * for the hold time), then a health check and handlers that never answer. */
static void shedding_workload(h_fixture *f)
{
    int h;
    burst(f);
    burst(f);
    h = h_connect(f);
    h_expect(f, h, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", 200, NULL);
    h_expect(f, h, "GET /forgets HTTP/1.1\r\nHost: x\r\n\r\n", 500, NULL);
    h_expect(f, h, "GET /never HTTP/1.1\r\nHost: x\r\n\r\n", 504, NULL);
    close(h);
    h_pump(f, 5, NULL);
}

static void test_shedding_allocates_nothing(void **state)
{
    h_fixture *f = *state;
    nea_stats st;
    if (RUNNING_ON_VALGRIND) {
        skip();
    }
    assert_int_equal(nea_server_route(f->srv, "GET", "/spin", r_spin, NULL), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/forgets", r_forgets, NULL), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/never", r_never, NULL), 0);
    assert_int_equal(nea_server_route_flags(f->srv, "GET", "/health", r_ok, NULL, NEA_ROUTE_EXEMPT),
                     0);
    shedding_workload(f); /* warm-up */
    shedding_workload(f);
    set_counting(1);
    for (int i = 0; i < 10; i++) {
        shedding_workload(f);
    }
    set_counting(0);
    h_stats(f, &st);
    assert_int_equal(st.shedding, 1);
    assert_true(st.shed_cpu >= 10 * BURST); /* most of 2 x BURST per round */
    assert_true(st.unanswered >= 20);
    if (heap_calls != 0) {
        fail_msg("%lu heap calls during %llu requests", heap_calls,
                 (unsigned long long)st.requests);
    }
    for (int i = 0; i < BURST; i++) {
        if (spinners[i] > 0) {
            close(spinners[i]);
        }
    }
}

/* --- C libraries on the arena adapters ------------------------------------------- */

static void clib_workload(h_fixture *f)
{
    int fd = h_connect(f);
    h_expect(f, fd, "GET /json/40 HTTP/1.1\r\nHost: x\r\n\r\n", 200, NULL);
    h_expect(f, fd, "GET /gzip/24 HTTP/1.1\r\nHost: x\r\n\r\n", 200, NULL);
    h_expect(f, fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 200, NULL);
    h_expect(f, fd, "GET /json/65536 HTTP/1.1\r\nHost: x\r\n\r\n", 500, NULL);
    h_expect(f, fd, "GET /gzip/3000 HTTP/1.1\r\nHost: x\r\n\r\n", 500, NULL);
    h_expect(f, fd, "GET /json/1 HTTP/1.1\r\nHost: x\r\n\r\n", 200, NULL);
    close(fd);
    H_WAIT(f, f->srv->stats.connections_open == 0);
}

static void test_clibs_allocate_nothing(void **state)
{
    h_fixture *f = *state;
    nea_stats st;
    if (RUNNING_ON_VALGRIND) {
        skip();
    }
    t_clib_routes(f->srv);
    clib_workload(f); /* warm-up: jansson seeds its hash function on first use */
    clib_workload(f);
    set_counting(1);
    for (int i = 0; i < 20; i++) {
        clib_workload(f);
    }
    set_counting(0);
    h_stats(f, &st);
    assert_true(st.oom_500 >= 2 * 20);
    if (heap_calls != 0) {
        fail_msg("%lu heap calls during %llu requests", heap_calls,
                 (unsigned long long)st.requests);
    }
}

static int setup_clibs(void **state)
{
    static h_fixture f;
    nea_config cfg;
    h_config(&cfg);
    t_clib_config(&cfg);
    h_start(&f, &cfg);
    *state = &f;
    return 0;
}

/* --- streaming ------------------------------------------------------------------ */

typedef struct pattern {
    uint64_t left, off;
    char buf[4096];
} pattern;

static void r_more(nea_req *req, void *arg)
{
    pattern *p = arg;
    size_t n = p->left < sizeof(p->buf) ? (size_t)p->left : sizeof(p->buf);
    if (n == 0) {
        (void)nea_stream_end(req);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        p->buf[i] = (char)(uint8_t)(p->off + i);
    }
    p->off += n;
    p->left -= n;
    (void)nea_stream_write(req, p->buf, n, r_more, p);
}

static void r_stream(nea_req *req, void *d)
{
    pattern *p = nea_alloc(req, sizeof(*p));
    (void)d;
    p->left = 1u << 20;
    p->off = 0;
    if (nea_stream_start(req, 200, NULL,
                         nea_req_query(req)[0] != '\0' ? NEA_LENGTH_UNKNOWN : p->left) == 0) {
        r_more(req, p);
    }
}

static void r_piece(nea_req *req, const char *data, size_t len, void *arg)
{
    uint64_t *count = arg;
    char *answer;
    if (data != NULL) {
        *count += len;
        return;
    }
    answer = nea_printf(req, "%llu", (unsigned long long)*count);
    nea_respond_static(req, 200, "text/plain", answer, strlen(answer));
}

static void r_upload(nea_req *req, void *d)
{
    uint64_t *count = nea_calloc(req, 1, sizeof(*count));
    (void)d;
    assert_int_equal(nea_body_read(req, r_piece, count), 0);
}

static void r_file(nea_req *req, void *d)
{
    (void)d;
    assert_int_equal(nea_respond_file(req, "/proc/self/exe", NULL, 8192), 0);
}

static char upload_body[1 << 20];

static void streaming_workload(h_fixture *f)
{
    static const char chunk_head[] = "10000\r\n";
    t_strict r;
    h_response hr;
    int fd = h_connect(f);

    assert_int_equal(t_strict_fetch(&f->loop, fd, "GET /st HTTP/1.1\r\nHost: x\r\n\r\n", &r, false),
                     200);
    assert_true(r.pattern_ok && r.body_len == 1u << 20);
    assert_int_equal(
        t_strict_fetch(&f->loop, fd, "GET /st?chunked HTTP/1.1\r\nHost: x\r\n\r\n", &r, false),
        200);
    assert_true(r.pattern_ok && r.body_len == 1u << 20);
    assert_int_equal(
        t_strict_fetch(&f->loop, fd, "GET /file HTTP/1.1\r\nHost: x\r\n\r\n", &r, false), 200);
    /* Ranges and conditions on the file: 206 (GET and HEAD), 416, 304, 412. */
    assert_int_equal(
        t_strict_fetch(&f->loop, fd,
                       "GET /file HTTP/1.1\r\nHost: x\r\nRange: bytes=100-20099\r\n\r\n", &r,
                       false),
        206);
    assert_true(r.body_len == 20000);
    assert_int_equal(t_strict_fetch(&f->loop, fd,
                                    "HEAD /file HTTP/1.1\r\nHost: x\r\nRange: bytes=-10\r\n\r\n",
                                    &r, true),
                     206);
    assert_int_equal(
        t_strict_fetch(&f->loop, fd,
                       "GET /file HTTP/1.1\r\nHost: x\r\nRange: bytes=99999999999-\r\n\r\n", &r,
                       false),
        416);
    assert_int_equal(t_strict_fetch(&f->loop, fd,
                                    "GET /file HTTP/1.1\r\nHost: x\r\nIf-None-Match: *\r\n\r\n", &r,
                                    false),
                     304);
    assert_int_equal(t_strict_fetch(&f->loop, fd,
                                    "GET /file HTTP/1.1\r\nHost: x\r\nIf-Match: \"x\"\r\n\r\n", &r,
                                    false),
                     412);
    h_sends(f, fd, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n");
    h_send(f, fd, upload_body, sizeof(upload_body));
    assert_int_equal(h_read(f, fd, &hr, H_DEADLINE_MS), 200);
    assert_string_equal(hr.body, "1048576");
    h_sends(f, fd, "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 16; i++) {
        h_sends(f, fd, chunk_head);
        h_send(f, fd, upload_body, 0x10000);
        h_sends(f, fd, "\r\n");
    }
    h_sends(f, fd, "0\r\n\r\n");
    assert_int_equal(h_read(f, fd, &hr, H_DEADLINE_MS), 200);
    assert_string_equal(hr.body, "1048576");
    /* A client that leaves mid-stream. */
    h_sends(f, fd, "GET /st HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(t_strict_read(&f->loop, fd, &r, false, 100000, H_DEADLINE_MS), -1);
    close(fd);
    assert_true(h_arenas_settle(f));
    H_WAIT(f, f->srv->stats.connections_open == 0);
}

static void test_streaming_allocates_nothing(void **state)
{
    h_fixture *f = *state;
    nea_stats st;
    if (RUNNING_ON_VALGRIND) {
        skip();
    }
    assert_int_equal(nea_server_route(f->srv, "GET", "/st", r_stream, NULL), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/file", r_file, NULL), 0);
    assert_int_equal(nea_server_route_stream(f->srv, "POST", "/upload", r_upload, NULL, 0, 0), 0);
    streaming_workload(f); /* warm-up */
    streaming_workload(f);
    set_counting(1);
    for (int i = 0; i < 10; i++) {
        streaming_workload(f);
    }
    set_counting(0);
    h_stats(f, &st);
    assert_true(st.responses[2] >= 10 * 5);
    assert_true(nea_stats_arenas(&st).peak_bytes < 16384);
    if (heap_calls != 0) {
        fail_msg("%lu heap calls during %llu requests", heap_calls,
                 (unsigned long long)st.requests);
    }
}

/* --- with worker threads -------------------------------------------------------- */

/* One keep-alive connection's worth of mixed requests (no /sleep: its
 * defer counter is not for several threads), on whichever worker the kernel
 * picks; one connection at a time, so fd numbers repeat. */
static void worker_workload(h_fixture *f)
{
    int ka = h_connect(f);
    keepalive_mix(f, ka);
    close(ka);
    H_WAIT(f, h_st(f).connections_open == 0);
    scrape_streamed(f); /* on either worker, summing both */
    H_WAIT(f, h_st(f).connections_open == 0);
}

static uint64_t accepted_by(h_fixture *f, unsigned worker)
{
    nea_stats st;
    assert_int_equal(nea_server_worker_stats(f->srv, worker, &st), 0);
    return st.accepted;
}

static void test_workers_allocate_nothing(void **state)
{
    h_fixture *f = *state;
    uint64_t before[2];
    int rounds = 0;
    if (RUNNING_ON_VALGRIND) {
        skip();
    }
    /* Warm-up until each worker has served twice. */
    while (rounds++ < 200 && (accepted_by(f, 0) < 2 || accepted_by(f, 1) < 2)) {
        worker_workload(f);
    }
    before[0] = accepted_by(f, 0);
    before[1] = accepted_by(f, 1);
    set_counting(1);
    for (int i = 0; i < 60; i++) {
        worker_workload(f);
    }
    set_counting(0);
    /* Both workers carried part of it (all 60 on one: 2^-59). */
    assert_true(accepted_by(f, 0) > before[0]);
    assert_true(accepted_by(f, 1) > before[1]);
    if (heap_calls != 0) {
        fail_msg("%lu heap calls with two workers", heap_calls);
    }
}

static void quiet(void *data, int level, const char *msg)
{
    (void)data;
    (void)level;
    (void)msg;
}

static int setup_workers(void **state)
{
    static h_fixture f;
    nea_config cfg;
    h_config(&cfg);
    cfg.workers = 2;
    cfg.log = quiet; /* the capture is not for several threads */
    cfg.error_bodies = json_errors; /* each worker answers from its own copies */
    cfg.error_body_count = sizeof(json_errors) / sizeof(json_errors[0]);
    memset(&f, 0, sizeof(f));
    t_handlers_reset();
    assert_int_equal(uv_loop_init(&f.loop), 0);
    f.cfg = cfg;
    assert_int_equal(nea_server_new(&f.loop, &f.cfg, &f.srv), 0);
    t_routes_add(f.srv);
    assert_int_equal(nea_server_route(f.srv, "GET", "/scrape", r_scrape, NULL), 0);
    assert_int_equal(nea_server_listen(f.srv), 0);
    f.port = nea_server_port(f.srv);
    *state = &f;
    return 0;
}

static int setup_shedding(void **state)
{
    static h_fixture f;
    nea_config cfg;
    h_config(&cfg);
    cfg.overload_target_ms = 1;
    cfg.overload_interval_ms = 1;
    cfg.overload_hold_ms = 60000; /* once on, stays on for the whole test */
    cfg.overload_budget_us = 100;
    cfg.response_timeout_ms = 20;
    h_start(&f, &cfg);
    *state = &f;
    return 0;
}

/* --- slots contended: a silent flood, evictions, refusals ------------------------ */

/* A connection from a source address in 127.0.0.0/8 (blocking connect). */
static int connect_from(h_fixture *f, const char *src)
{
    struct sockaddr_in a = {0}, b = {0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    b.sin_family = AF_INET;
    inet_pton(AF_INET, src, &b.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&b, sizeof(b)), 0);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)f->port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    return fd;
}

enum { FLOOD = 12 };
static int flood[FLOOD];

/* The flood holds every slot silently and reconnects what is closed; a
 * polite address is served meanwhile (its connection evicts the flood's). */
static void contention_workload(h_fixture *f)
{
    for (int round = 0; round < 5; round++) {
        int p = connect_from(f, "127.0.0.6");
        h_expect(f, p, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 200, NULL);
        close(p);
        h_pump(f, 5, NULL);
        for (int i = 0; i < FLOOD; i++) {
            char buf[512];
            ssize_t n;
            while ((n = recv(flood[i], buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
            }
            if (flood[i] < 0 || n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
                if (flood[i] >= 0) {
                    close(flood[i]);
                }
                flood[i] = connect_from(f, "127.0.0.5");
            }
        }
        h_pump(f, 5, NULL);
    }
}

static void test_slot_contention_allocates_nothing(void **state)
{
    h_fixture *f = *state;
    nea_stats st;
    if (RUNNING_ON_VALGRIND) {
        skip();
    }
    for (int i = 0; i < FLOOD; i++) {
        flood[i] = -1;
    }
    contention_workload(f); /* warm-up */
    set_counting(1);
    for (int i = 0; i < 10; i++) {
        contention_workload(f);
    }
    set_counting(0);
    h_stats(f, &st);
    assert_true(st.evicted > 0);
    if (heap_calls != 0) {
        fail_msg("%lu heap calls with the slots contended", heap_calls);
    }
    for (int i = 0; i < FLOOD; i++) {
        close(flood[i]);
    }
}

static int setup_contention(void **state)
{
    static h_fixture f;
    nea_config cfg;
    h_config(&cfg);
    cfg.max_connections = 8;
    cfg.keepalive_timeout_ms = 60000;
    h_start(&f, &cfg);
    *state = &f;
    return 0;
}

/* --- the balancer's view: agent, readiness, the announced drain --------------- */

static void agent_expect(h_fixture *f, const char *line)
{
    char buf[64];
    int fd = s_connect(&f->loop, nea_server_agent_port(f->srv));
    assert_true(s_read_all(&f->loop, fd, buf, sizeof(buf), H_DEADLINE_MS) > 0);
    close(fd);
    if (strncmp(buf, line, strlen(line)) != 0) {
        fail_msg("the agent said \"%s\", not \"%s\"", buf, line);
    }
}

static void balancer_workload(h_fixture *f, const char *agent, int ready)
{
    int fd = h_connect(f);
    agent_expect(f, agent);
    h_expect(f, fd, "GET /ready HTTP/1.1\r\nHost: x\r\n\r\n", ready, NULL);
    if (ready == 200) {
        h_expect(f, fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 200, NULL);
    }
    close(fd);
    H_WAIT(f, f->srv->stats.connections_open == 0);
}

static void test_agent_and_drain_allocate_nothing(void **state)
{
    h_fixture *f = *state;
    if (RUNNING_ON_VALGRIND) {
        skip();
    }
    balancer_workload(f, "up ready ", 200); /* warm-up */
    set_counting(1);
    for (int i = 0; i < 50; i++) {
        balancer_workload(f, "up ready ", 200);
    }
    h_close(f); /* announced: still serving, the agent says drain */
    for (int i = 0; i < 20; i++) {
        int fd = h_connect(f);
        agent_expect(f, "drain\n");
        h_expect(f, fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 200, NULL);
        close(fd);
        balancer_workload(f, "drain\n", 503);
    }
    nea__server_end_announcement(f->srv);
    h_pump(f, H_DEADLINE_MS, &f->closed);
    set_counting(0);
    assert_true(f->closed);
    if (heap_calls != 0) {
        fail_msg("%lu heap calls while answering the balancer and draining", heap_calls);
    }
}

static int setup_balancer(void **state)
{
    static h_fixture f;
    nea_config cfg;
    h_config(&cfg);
    cfg.agent_port = 0;
    cfg.agent_weight = 100;     /* answers with a percentage */
    cfg.drain_delay_ms = 60000; /* ended by the test */
    h_start(&f, &cfg);
    assert_int_equal(nea_server_route_flags(f.srv, "GET", "/ready", NULL, NULL, NEA_ROUTE_READY),
                     0);
    *state = &f;
    return 0;
}

/* --- coming back later: references, holds, thread-pool work ---------------------- */

static uv_timer_t host_timer; /* the host's own, outside libnea */
static nea_ref host_ref;
static nea_hold host_hold;
static bool host_is_hold;
static unsigned later_gone, jobs_done;

static void later_answer(nea_req *req, void *arg)
{
    (void)arg;
    if (req != NULL) {
        (void)nea_respond_static(req, 200, "text/plain", "later", 5);
    } else {
        later_gone++;
    }
}

static void on_host_timer(uv_timer_t *t)
{
    nea_req *req;
    (void)t;
    if (host_is_hold) {
        nea_hold_release(host_hold, later_answer, NULL);
        return;
    }
    req = nea_ref_req(host_ref);
    if (req != NULL) {
        nea_req_run(req, later_answer, NULL);
    } else {
        later_gone++;
    }
}

/* GET /later/MS and GET /held/MS. */
static void r_later(nea_req *req, void *d)
{
    host_is_hold = d != NULL;
    if (host_is_hold) {
        host_hold = nea_req_hold(req);
    } else {
        host_ref = nea_req_ref(req);
        nea_req_keep(req);
    }
    uv_timer_start(&host_timer, on_host_timer, strtoul(nea_req_path_tail(req), NULL, 10), 0);
}

static void job(void *arg)
{
    uv_sleep(*(unsigned *)arg);
}

static void job_done(nea_req *req, void *arg)
{
    (void)arg;
    jobs_done++;
    later_answer(req, NULL);
}

/* GET /job/MS */
static void r_job(nea_req *req, void *d)
{
    unsigned *ms = nea_alloc(req, sizeof(*ms));
    (void)d;
    *ms = (unsigned)strtoul(nea_req_path_tail(req), NULL, 10);
    if (nea_req_work(req, job, job_done, ms) != 0) {
        abort();
    }
}

static void later_workload(h_fixture *f)
{
    h_response r;
    int fd = h_connect(f);
    h_expect(f, fd, "GET /later/1 HTTP/1.1\r\nHost: x\r\n\r\n", 200, NULL);
    h_expect(f, fd, "GET /held/1 HTTP/1.1\r\nHost: x\r\n\r\n", 200, NULL);
    h_expect(f, fd, "GET /job/1 HTTP/1.1\r\nHost: x\r\n\r\n", 200, NULL);
    h_expect(f, fd, "GET /job/300 HTTP/1.1\r\nHost: x\r\n\r\n", 504, NULL);
    H_WAIT(f, f->srv->pools[0].in_use == 0);
    close(fd);
    /* Clients that leave: a reset mid-wait, mid-hold, mid-job. */
    fd = h_get(f, "/later/30");
    H_WAIT(f, f->srv->pools[0].in_use == 1);
    s_reset(fd);
    H_WAIT(f, !uv_is_active((uv_handle_t *)&host_timer)); /* it came back: gone */
    fd = h_get(f, "/held/30");
    H_WAIT(f, f->srv->pools[0].in_use == 1);
    s_reset(fd);
    H_WAIT(f, f->srv->pools[0].in_use == 0); /* released from the host timer */
    fd = h_get(f, "/job/30");
    H_WAIT(f, f->srv->pools[0].in_use == 1);
    s_reset(fd);
    H_WAIT(f, f->srv->pools[0].in_use == 0 && f->srv->stats.connections_open == 0);
    /* A half-closed client still gets its answer. */
    fd = h_get(f, "/job/1");
    s_half_close(fd);
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_true(h_closed(f, fd, H_DEADLINE_MS));
    close(fd);
    H_WAIT(f, f->srv->stats.connections_open == 0);
}

static void test_coming_back_later_allocates_nothing(void **state)
{
    h_fixture *f = *state;
    if (RUNNING_ON_VALGRIND) {
        skip();
    }
    assert_int_equal(nea_server_route(f->srv, "GET", "/later/", r_later, NULL), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/held/", r_later, &host_timer), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/job/", r_job, NULL), 0);
    uv_timer_init(&f->loop, &host_timer);
    later_workload(f); /* warm-up */
    later_workload(f);
    later_gone = jobs_done = 0;
    set_counting(1);
    for (int i = 0; i < 10; i++) {
        later_workload(f);
    }
    set_counting(0);
    assert_int_equal(later_gone, 10 * 3 + 10); /* every reset, and every 504'd job */
    assert_int_equal(jobs_done, 10 * 4);
    uv_close((uv_handle_t *)&host_timer, NULL);
    assert_int_equal(__atomic_load_n(&heap_calls, __ATOMIC_RELAXED), 0);
}

/* --- WebSocket ------------------------------------------------------------------- */

static nea_wsref ws_last; /* the last connection opened */
static unsigned ws_closed;
static uv_timer_t ws_timer;
static int ws_pushed;

static void ws_open(nea_ws *ws, nea_req *upgrade, void *data)
{
    (void)upgrade;
    (void)data;
    ws_last = nea_ws_ref(ws);
}

static void ws_close(nea_ws *ws, unsigned code, void *data)
{
    (void)ws;
    (void)code;
    (void)data;
    ws_closed++;
}

typedef struct ws_keep {
    nea_req *msg;
    nea_wsref ref;
} ws_keep;

static void ws_keep_timer(uv_timer_t *t);

/* Echo; "oom" exhausts the arena; "keep" is answered from a tracked timer
 * and done there. */
static void ws_message(nea_ws *ws, nea_req *msg, const nea_ws_msg *m, void *data)
{
    (void)data;
    if (strcmp(m->data, "oom") == 0) {
        (void)nea_alloc(msg, (size_t)1 << 40);
    }
    if (strcmp(m->data, "keep") == 0) {
        uv_timer_t *t = nea_req_timer(msg);
        ws_keep *k = nea_alloc(msg, sizeof(*k));
        k->msg = msg;
        k->ref = nea_ws_ref(ws);
        t->data = k;
        nea_req_keep(msg);
        uv_timer_start(t, ws_keep_timer, 1, 0);
        return;
    }
    (void)nea_ws_send(ws, m->opcode, m->data, m->len);
}

static void ws_keep_answer(nea_req *msg, void *arg)
{
    nea_ws *ws = nea_ref_ws(((ws_keep *)arg)->ref);
    assert_non_null(ws);
    assert_int_equal(nea_ws_send(ws, NEA_WS_TEXT, "kept", 4), 0);
    nea_ws_done(msg);
}

static void ws_keep_timer(uv_timer_t *t)
{
    ws_keep *k = t->data;
    nea_req_run(k->msg, ws_keep_answer, k);
}

static uint64_t ws_piece_bytes;

static void ws_piece(nea_ws *ws, nea_req *msg, const nea_ws_msg *m, void *data)
{
    (void)msg;
    (void)data;
    ws_piece_bytes = m->offset + m->len;
    if (m->last) {
        char *s = nea_printf(msg, "%llu", (unsigned long long)ws_piece_bytes);
        assert_int_equal(nea_ws_send(ws, NEA_WS_TEXT, s, strlen(s)), 0);
    }
}

static const nea_ws_route ws_echo_route = {
    .open = ws_open, .message = ws_message, .close = ws_close};
static const nea_ws_route ws_piece_route = {.open = ws_open,
                                            .message = ws_piece,
                                            .close = ws_close,
                                            .max_message = 1u << 20,
                                            .flags = NEA_WS_PIECES};

static void ws_push(uv_timer_t *t)
{
    nea_ws *ws = nea_ref_ws(ws_last);
    (void)t;
    ws_pushed = ws != NULL && nea_ws_send(ws, NEA_WS_BINARY, "push", 4) == 0 ? 1 : 2;
}

static void ws_open_ok(h_fixture *f, t_ws *w, const char *path)
{
    int status;
    assert_true(t_ws_open(w, &f->loop, f->port, path, NULL, &status, NULL, 0));
}

static void ws_expect_close(h_fixture *f, const uint8_t *b, size_t n, unsigned code)
{
    t_ws w;
    ws_open_ok(f, &w, "/ws");
    t_ws_send_raw(&w, b, n, 0);
    assert_int_equal(t_ws_next(&w, H_DEADLINE_MS), T_WS_CLOSE);
    assert_int_equal(w.code, code);
    assert_int_equal(t_ws_next(&w, H_DEADLINE_MS), T_WS_EOF);
    t_ws_drop(&w, false);
}

static void ws_workload(h_fixture *f)
{
    static uint8_t data[40000], frame[40100];
    uint8_t mask[4] = {1, 2, 3, 4}, b[64];
    nea__arena *held[2];
    size_t n;
    t_ws w, p;

    for (size_t i = 0; i < sizeof(data); i++) {
        data[i] = (uint8_t)(i * 7);
    }
    ws_open_ok(f, &w, "/ws");
    t_ws_frame(&w, NEA__WS_TEXT, true, "hello", 5);
    t_ws_expect(&w, NEA__WS_TEXT, "hello", 5);
    t_ws_frame(&w, NEA__WS_BINARY, true, data, sizeof(data));
    t_ws_expect(&w, NEA__WS_BINARY, data, sizeof(data));
    t_ws_frame(&w, NEA__WS_TEXT, false, "frag", 4);
    t_ws_frame(&w, NEA__WS_PING, true, "p", 1);
    t_ws_frame(&w, NEA__WS_CONT, true, "ment", 4);
    assert_int_equal(t_ws_next(&w, H_DEADLINE_MS), T_WS_PONG);
    t_ws_expect(&w, NEA__WS_TEXT, "fragment", 8);
    t_ws_frame(&w, NEA__WS_TEXT, true, "oom", 3);
    t_ws_frame(&w, NEA__WS_TEXT, true, "keep", 4);
    t_ws_expect(&w, NEA__WS_TEXT, "kept", 4);
    /* sent from a host timer through a reference, between messages */
    ws_pushed = 0;
    uv_timer_start(&ws_timer, ws_push, 1, 0);
    H_WAIT(f, ws_pushed != 0);
    assert_int_equal(ws_pushed, 1);
    t_ws_expect(&w, NEA__WS_BINARY, "push", 4);
    assert_int_equal(t_ws_close(&w, 1000, "bye"), 1000);
    t_ws_drop(&w, false);

    /* messages in pieces, larger than the arena */
    ws_open_ok(f, &p, "/ws/pieces");
    for (int i = 0; i < 4; i++) {
        t_ws_frame(&p, i == 0 ? NEA__WS_BINARY : NEA__WS_CONT, i == 3, data, sizeof(data));
    }
    t_ws_expect(&p, NEA__WS_TEXT, "160000", 6);
    /* a reset halfway through a message */
    n = t_ws_build(frame, NEA__WS_BINARY, true, data, sizeof(data), mask);
    t_ws_send_raw(&p, frame, n / 2, 0);
    H_WAIT(f, f->srv->pools[0].in_use == 1);
    t_ws_drop(&p, true);

    /* protocol failures */
    n = t_ws_build(b, NEA__WS_TEXT, true, "plain", 5, NULL);
    ws_expect_close(f, b, n, 1002);
    n = t_ws_build(b, NEA__WS_TEXT, true, "bad \xc3", 5, mask);
    ws_expect_close(f, b, n, 1007);
    b[0] = 0x82;
    b[1] = 0x80 | 127;
    memcpy(b + 2, "\x00\x00\x00\x01\x00\x00\x00\x00", 8);
    memcpy(b + 10, mask, 4);
    ws_expect_close(f, b, 14, 1009);

    /* no arena for a message: 1013 */
    ws_open_ok(f, &w, "/ws");
    H_WAIT(f, f->srv->pools[0].in_use == 0);
    held[0] = nea__pool_acquire(&f->srv->pools[0]);
    held[1] = nea__pool_acquire(&f->srv->pools[0]);
    t_ws_frame(&w, NEA__WS_TEXT, true, "waits", 5);
    assert_int_equal(t_ws_next(&w, H_DEADLINE_MS), T_WS_CLOSE);
    assert_int_equal(w.code, 1013);
    nea__server_give_back(f->srv, held[0]);
    nea__server_give_back(f->srv, held[1]);
    assert_int_equal(t_ws_next(&w, H_DEADLINE_MS), T_WS_EOF);
    t_ws_drop(&w, false);

    /* an idle connection is pinged, answers, then leaves */
    ws_open_ok(f, &w, "/ws");
    w.auto_pong = false;
    assert_int_equal(t_ws_next(&w, H_DEADLINE_MS), T_WS_PING);
    t_ws_frame(&w, NEA__WS_PONG, true, w.ctl, w.ctl_len);
    t_ws_frame(&w, NEA__WS_TEXT, true, "alive", 5);
    t_ws_expect(&w, NEA__WS_TEXT, "alive", 5);
    t_ws_drop(&w, true);
    H_WAIT(f, f->srv->stats.connections_open == 0 && f->srv->pools[0].in_use == 0);
}

static void test_websocket_allocates_nothing(void **state)
{
    h_fixture *f = *state;
    nea_stats st;
    if (RUNNING_ON_VALGRIND) {
        skip();
    }
    assert_int_equal(nea_server_route_ws(f->srv, "/ws", &ws_echo_route, NULL), 0);
    assert_int_equal(nea_server_route_ws(f->srv, "/ws/pieces", &ws_piece_route, NULL), 0);
    uv_timer_init(&f->loop, &ws_timer);
    ws_workload(f); /* warm-up */
    ws_workload(f);
    set_counting(1);
    for (int i = 0; i < 10; i++) {
        ws_workload(f);
    }
    set_counting(0);
    uv_close((uv_handle_t *)&ws_timer, NULL);
    h_stats(f, &st);
    assert_int_equal(st.ws_upgraded, 12 * 7);
    assert_int_equal(ws_closed, 12 * 7);
    assert_int_equal(st.ws_message_oom, 12);
    assert_int_equal(__atomic_load_n(&heap_calls, __ATOMIC_RELAXED), 0);
}

/* Message arenas of 128 KiB (class 0, two of them), pings every 50 ms. */
static void ws_config(nea_config *c)
{
    c->arena_count = 2;
    c->arena_size = 128u << 10;
    c->queue_timeout_ms = 20;
    c->ws_ping_interval_ms = 50;
    c->ws_pong_timeout_ms = 1000;
}

static int setup_ws(void **state)
{
    static h_fixture f;
    nea_config cfg;
    h_config(&cfg);
    ws_config(&cfg);
    h_start(&f, &cfg);
    *state = &f;
    return 0;
}

static void later_config(nea_config *c)
{
    c->arena_count = 1;
    c->response_timeout_ms = 100;
}

static int setup_later(void **state)
{
    static h_fixture f;
    nea_config cfg;
    h_config(&cfg);
    later_config(&cfg);
    h_start(&f, &cfg);
    *state = &f;
    return 0;
}

/* --- HTTPS ---------------------------------------------------------------------- */

#if NEA_HAVE_TLS
static char tls_dir[64], tls_crt[96], tls_key[96];

/* 300 new TLS connections from python3's ssl (every other one resuming the
 * session before it), each a handshake, a GET and a close, after a warm-up
 * of 20: no heap call in this process meanwhile (the clients are other
 * processes). Beside them a connection with 100 pipelined requests and
 * one with three streamed responses of 1 MiB. */
static void tls_client(h_fixture *f, t_proc *p, const char *args)
{
    char cmd[512];
    const char *src = getenv("NEA_TEST_SOURCE_DIR");
    snprintf(cmd, sizeof(cmd), "exec python3 %s/support/tls_client.py %s",
             src != NULL ? src : NEA_TEST_SOURCE_DIR, args);
    t_proc_shell(p, &f->loop, cmd); /* spawning allocates: before counting */
    assert_true(t_proc_wait_output(p, "ready", 3 * H_DEADLINE_MS));
}

static void expect_output(t_proc *p, const char *needle)
{
    assert_int_equal(t_proc_finish(p, 3 * H_DEADLINE_MS), 0);
    if (strstr(p->output, needle) == NULL) {
        fail_msg("expected \"%s\" from the client: %s", needle, p->output);
    }
}

static void run_tls_clients(h_fixture *f, unsigned n, bool count)
{
    static t_proc loop, pipe, stream;
    char args[128], done[64];
    snprintf(args, sizeof(args), "loop %d %u", f->port, n);
    tls_client(f, &loop, args);
    snprintf(args, sizeof(args), "wait-pipeline %d 100", f->port);
    tls_client(f, &pipe, args);
    snprintf(args, sizeof(args), "wait-get %d /st 3", f->port);
    tls_client(f, &stream, args);
    if (count) {
        set_counting(1);
    }
    t_proc_say(&loop, "go\n");
    t_proc_say(&pipe, "go\n");
    t_proc_say(&stream, "go\n");
    assert_true(t_proc_wait_output(&loop, "done", 20 * H_DEADLINE_MS));
    assert_true(t_proc_wait_output(&pipe, "ok", 20 * H_DEADLINE_MS));
    assert_true(
        t_proc_wait_output(&stream, "200 1048576\n200 1048576\n200 1048576", 20 * H_DEADLINE_MS));
    H_WAIT(f, f->srv->stats.connections_open == 0);
    set_counting(0);
    snprintf(done, sizeof(done), "done %u %u", n, n / 2);
    expect_output(&loop, done);
    expect_output(&pipe, "ok 100");
    expect_output(&stream, "TLSv1.2");
}

static void test_tls_allocates_nothing(void **state)
{
    h_fixture *f = *state;
    nea_stats st;
    if (RUNNING_ON_VALGRIND) {
        skip();
    }
    run_tls_clients(f, 20, false); /* warm-up */
    run_tls_clients(f, 300, true);
    h_stats(f, &st);
    assert_int_equal(st.tls_handshakes, 320 + 4);
    assert_int_equal(st.tls_resumed, 160);
    if (heap_calls != 0) {
        fail_msg("%lu heap calls during 300 TLS connections", heap_calls);
    }
}

static int setup_tls(void **state)
{
    static h_fixture f;
    nea_config cfg;
    char cmd[256];
    snprintf(tls_dir, sizeof(tls_dir), "/tmp/nea-alloc-tls-XXXXXX");
    assert_non_null(mkdtemp(tls_dir));
    snprintf(cmd, sizeof(cmd),
             "cd %s && openssl ecparam -name prime256v1 -genkey -noout -out k.pem && "
             "openssl req -x509 -new -key k.pem -subj /CN=localhost -days 2 -out c.pem",
             tls_dir);
    assert_int_equal(system(cmd), 0);
    snprintf(tls_crt, sizeof(tls_crt), "%s/c.pem", tls_dir);
    snprintf(tls_key, sizeof(tls_key), "%s/k.pem", tls_dir);
    h_config(&cfg);
    cfg.tls.cert_file = tls_crt;
    cfg.tls.key_file = tls_key;
    h_start(&f, &cfg);
    assert_int_equal(nea_server_route(f.srv, "GET", "/st", r_stream, NULL), 0);
    *state = &f;
    return 0;
}

static int teardown_tls(void **state)
{
    char cmd[128];
    h_stop(*state);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tls_dir);
    return system(cmd) == 0 ? 0 : -1;
}
#endif

static int setup(void **state)
{
    static h_fixture f;
    nea_config cfg;
    h_config(&cfg);
    one_arena(&cfg);
    h_start(&f, &cfg);
    assert_int_equal(nea_server_route(f.srv, "GET", "/scrape", r_scrape, NULL), 0);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    h_stop(*state);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_steady_state_allocates_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_agent_and_drain_allocate_nothing, setup_balancer,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_shedding_allocates_nothing, setup_shedding, teardown),
        cmocka_unit_test_setup_teardown(test_slot_contention_allocates_nothing, setup_contention,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_clibs_allocate_nothing, setup_clibs, teardown),
        cmocka_unit_test_setup_teardown(test_streaming_allocates_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_workers_allocate_nothing, setup_workers, teardown),
        cmocka_unit_test_setup_teardown(test_coming_back_later_allocates_nothing, setup_later,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_websocket_allocates_nothing, setup_ws, teardown),
#if NEA_HAVE_TLS
        cmocka_unit_test_setup_teardown(test_tls_allocates_nothing, setup_tls, teardown_tls),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
