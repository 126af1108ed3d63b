/*
 * test_stream.c - streamed responses and bodies read in pieces (stream.c,
 * and the connection's side of them in conn.c) over real sockets: framing
 * checked by a strict parser (llhttp in response mode), HEAD, HTTP/1.0,
 * backpressure, cancellation at every stage (client gone before the first
 * piece and mid-stream, write timeout, producer stall, drain), out of
 * memory mid-stream, uploads larger than the arena, 100-continue only when
 * the handler reads, pause/resume, and the route's own body limit.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "e2e.h"
#include "strict.h"

/* What the handlers below saw, reset by every test's setup. */
static unsigned defers;   /* request defers run */
static unsigned pieces;   /* pieces the producer handed to nea_stream_write */
static int write_rc;      /* the first error nea_stream_write or _end returned */
static unsigned up_calls; /* handler entries of the upload route */
static size_t max_piece;  /* the largest body piece an upload handler saw */

static void count_defer(void *arg)
{
    (void)arg;
    defers++;
}

static void note_rc(int rc)
{
    if (rc != 0 && write_rc == 0) {
        write_rc = rc;
    }
}

/* --- GET /s/N[?options]: N bytes, byte i = i % 256, in pieces of PIECE ---- */

#define PIECE 1000

typedef struct producer {
    uint64_t off, total;
    char *buf; /* one piece of the arena, refilled for every piece */
    unsigned calls;
    const char *opts;
    nea_req *req;
} producer;

static bool opt(const producer *p, const char *name)
{
    return strstr(p->opts, name) != NULL;
}

static void produce(nea_req *req, void *arg)
{
    producer *p = arg;
    size_t n = p->total - p->off < PIECE ? (size_t)(p->total - p->off) : PIECE;
    int rc;

    p->calls++;
    if (opt(p, "oom") && p->calls == 3) {
        (void)nea_alloc(req, (size_t)1 << 30); /* unwinds: the head is already out */
    }
    if (opt(p, "stall") && p->calls == 2) {
        return; /* never writes again: response_timeout_ms cuts it */
    }
    if (opt(p, "short") && p->off >= p->total / 2) {
        note_rc(nea_stream_end(req));
        return;
    }
    if (n == 0) {
        note_rc(nea_stream_end(req));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        p->buf[i] = (char)(uint8_t)(p->off + i);
    }
    if (opt(p, "over") && p->calls == 1) {
        note_rc(nea_stream_write(req, p->buf, (size_t)p->total + 1, produce, p));
    }
    p->off += n;
    rc = nea_stream_write(req, p->buf, n, produce, p);
    pieces += rc == 0;
    note_rc(rc);
    if (opt(p, "twice") && p->calls == 1) {
        note_rc(nea_stream_write(req, p->buf, n, produce, p)); /* one in flight already */
    }
}

static void on_wait_timer(uv_timer_t *t)
{
    producer *p = t->data;
    nea_req_run(p->req, produce, p);
}

static void stream_route(nea_req *req, void *data)
{
    producer *p = nea_alloc(req, sizeof(*p));
    int rc;
    (void)data;
    memset(p, 0, sizeof(*p));
    p->total = strtoull(nea_req_path_tail(req), NULL, 10);
    p->opts = nea_req_query(req);
    p->buf = nea_alloc(req, PIECE);
    p->req = req;
    assert_int_equal(nea_req_defer(req, count_defer, NULL), 0);
    if (opt(p, "full")) {
        void *rest = nea_try_alloc(req, nea_arena_available(req) - 32);
        assert_non_null(rest); /* no room left for the head */
    }
    rc = nea_stream_start(req, 200, "application/octet-stream",
                          opt(p, "chunked") ? NEA_LENGTH_UNKNOWN : p->total);
    if (rc != 0) {
        note_rc(rc);
        return;
    }
    if (opt(p, "wait")) {
        /* The first piece waits on a timer: the head is not sent yet. */
        uv_timer_t *t = nea_req_timer(req);
        t->data = p;
        uv_timer_start(t, on_wait_timer, 10000, 0);
        return;
    }
    produce(req, p);
}

/* --- POST /up: the body in pieces; answers "bytes=N sum=S" ---------------- */

typedef struct upload {
    uint64_t bytes;
    uint32_t sum; /* FNV-1a over the body */
    uv_timer_t *timer;
    const char *opts;
    nea_req *req;
    const char *held; /* paused on this piece: summed only when the timer resumes */
    size_t held_len;
} upload;

static void up_piece(nea_req *req, const char *data, size_t len, void *arg);

static void add(upload *u, const char *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        u->sum = (u->sum ^ (uint8_t)data[i]) * 16777619u;
    }
    u->bytes += len;
}

/* The paused piece must still hold its bytes now, after the loop ran. */
static void on_resume(uv_timer_t *t)
{
    upload *u = t->data;
    add(u, u->held, u->held_len);
    u->held = NULL;
    nea_body_resume(u->req);
}

static void up_piece(nea_req *req, const char *data, size_t len, void *arg)
{
    upload *u = arg;
    if (data == NULL) {
        char *answer = nea_printf(req, "bytes=%llu sum=%08x", (unsigned long long)u->bytes, u->sum);
        nea_respond_static(req, 200, "text/plain", answer, strlen(answer));
        return;
    }
    max_piece = len > max_piece ? len : max_piece;
    if (u->timer != NULL) {
        assert_null(u->held); /* nothing is delivered while paused */
        u->held = data;
        u->held_len = len;
        nea_body_pause(req); /* the piece stays valid until the timer resumes */
        uv_timer_start(u->timer, on_resume, 1, 0);
        return;
    }
    add(u, data, len);
    if (strstr(u->opts, "early") != NULL && u->bytes >= 8192) {
        nea_respond_static(req, 422, "text/plain", "no", 2); /* before the body's end */
    }
}

static void start_reading(nea_req *req, void *arg)
{
    assert_int_equal(nea_body_read(req, up_piece, arg), 0);
}

static void on_late(uv_timer_t *t)
{
    upload *u = t->data;
    nea_req_run(u->req, start_reading, u);
}

static void up_route(nea_req *req, void *data)
{
    upload *u = nea_alloc(req, sizeof(*u));
    (void)data;
    up_calls++;
    memset(u, 0, sizeof(*u));
    u->req = req;
    u->sum = 2166136261u;
    u->opts = nea_req_query(req);
    assert_int_equal(nea_req_defer(req, count_defer, NULL), 0);
    if (strstr(u->opts, "refuse") != NULL) {
        nea_respond_static(req, 403, "text/plain", "no", 2); /* never reads the body */
        return;
    }
    if (strstr(u->opts, "pause") != NULL) {
        u->timer = nea_req_timer(req);
        u->timer->data = u;
    }
    if (strstr(u->opts, "late") != NULL) {
        uv_timer_t *t = nea_req_timer(req);
        t->data = u;
        uv_timer_start(t, on_late, 300, 0);
        return;
    }
    start_reading(req, u);
}

/* --- fixture ---------------------------------------------------------------- */

static void add_routes(h_fixture *f)
{
    defers = pieces = up_calls = 0;
    write_rc = 0;
    max_piece = 0;
    assert_int_equal(nea_server_route(f->srv, "GET", "/s/", stream_route, NULL), 0);
    assert_int_equal(
        nea_server_route_stream(f->srv, "POST", "/up", up_route, NULL, 0, (uint64_t)4 << 20), 0);
    assert_int_equal(nea_server_route_stream(f->srv, "POST", "/up10", up_route, NULL, 0, 10), 0);
}

static void start(void **state, void (*tweak)(nea_config *))
{
    h_test_start(state, tweak);
    add_routes(*state);
}

static int setup(void **state)
{
    start(state, NULL);
    return 0;
}

static void quick_timeouts(nea_config *cfg)
{
    cfg->write_timeout_ms = 200;
    cfg->response_timeout_ms = 200;
    cfg->drain_timeout_ms = 300;
}

static int setup_quick(void **state)
{
    start(state, quick_timeouts);
    return 0;
}

static void expect_cleanup(h_fixture *f, unsigned n_defers)
{
    H_WAIT(f, defers == n_defers);
    assert_true(h_arenas_settle(f));
}

/* --- responses -------------------------------------------------------------- */

static void test_length_framing_and_keep_alive(void **state)
{
    h_fixture *f = *state;
    t_strict r;
    int fd = h_connect(f);
    char want[64];

    assert_int_equal(
        t_strict_fetch(&f->loop, fd, "GET /s/300000 HTTP/1.1\r\nHost: x\r\n\r\n", &r, false), 200);
    snprintf(want, sizeof(want), "Content-Length: 300000\r\n");
    assert_non_null(strstr(r.head, want));
    assert_null(strstr(r.head, "Transfer-Encoding"));
    assert_int_equal(r.body_len, 300000);
    assert_true(r.pattern_ok);
    assert_int_equal(pieces, 300);
    /* The arena held the producer's one piece, not the body. */
    assert_true(h_arenas(f).peak_bytes < 8192);
    /* The connection stays usable. */
    assert_int_equal(
        t_strict_fetch(&f->loop, fd, "GET /s/10 HTTP/1.1\r\nHost: x\r\n\r\n", &r, false), 200);
    assert_int_equal(r.body_len, 10);
    expect_cleanup(f, 2);
    close(fd);
}

static void test_chunked_framing_is_strict(void **state)
{
    h_fixture *f = *state;
    t_strict r;
    int fd = h_connect(f);

    assert_int_equal(t_strict_fetch(&f->loop, fd,
                                    "GET /s/123457?chunked HTTP/1.1\r\nHost: x\r\n\r\n", &r, false),
                     200);
    assert_non_null(strstr(r.head, "Transfer-Encoding: chunked\r\n"));
    assert_null(strstr(r.head, "Content-Length"));
    assert_int_equal(r.body_len, 123457);
    assert_true(r.pattern_ok);
    /* The terminating chunk was the end of it: the next response parses. */
    assert_int_equal(
        t_strict_fetch(&f->loop, fd, "GET /s/0?chunked HTTP/1.1\r\nHost: x\r\n\r\n", &r, false),
        200);
    assert_int_equal(r.body_len, 0);
    assert_true(h_quiet(f, fd, 50));
    expect_cleanup(f, 2);
    close(fd);
}

static void test_http10_unknown_length_closes(void **state)
{
    h_fixture *f = *state;
    t_strict r;
    int fd = h_connect(f);

    assert_int_equal(
        t_strict_fetch(&f->loop, fd,
                       "GET /s/5000?chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &r, false),
        200);
    assert_true(r.eof); /* the close delimited the body */
    assert_null(strstr(r.head, "Transfer-Encoding"));
    assert_null(strstr(r.head, "Content-Length"));
    assert_non_null(strstr(r.head, "Connection: close\r\n"));
    assert_int_equal(r.body_len, 5000);
    assert_true(r.pattern_ok);
    expect_cleanup(f, 1);
    close(fd);
}

static void test_head_sends_the_head_only(void **state)
{
    h_fixture *f = *state;
    t_strict r;
    h_response hr;
    int fd = h_connect(f);

    assert_int_equal(
        t_strict_fetch(&f->loop, fd, "HEAD /s/5000 HTTP/1.1\r\nHost: x\r\n\r\n", &r, true), 200);
    assert_non_null(strstr(r.head, "Content-Length: 5000\r\n"));
    assert_int_equal(pieces, 0); /* the producer was told to stop at once */
    assert_int_equal(write_rc, NEA_ESTATE);
    assert_int_equal(
        t_strict_fetch(&f->loop, fd, "HEAD /s/5000?chunked HTTP/1.1\r\nHost: x\r\n\r\n", &r, true),
        200);
    assert_non_null(strstr(r.head, "Transfer-Encoding: chunked\r\n"));
    /* No body byte followed either head: the next response starts clean. */
    h_expect(f, fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 200, &hr);
    assert_string_equal(hr.body, "Hello, World!");
    expect_cleanup(f, 2);
    close(fd);
}

static void test_misuse_is_refused(void **state)
{
    h_fixture *f = *state;
    t_strict r;
    int fd = h_connect(f);

    /* Beyond the announced length: refused, the stream carries on. */
    assert_int_equal(
        t_strict_fetch(&f->loop, fd, "GET /s/3000?over HTTP/1.1\r\nHost: x\r\n\r\n", &r, false),
        200);
    assert_int_equal(write_rc, UV_EINVAL);
    assert_int_equal(r.body_len, 3000);
    /* A second piece while one is in flight. */
    write_rc = 0;
    assert_int_equal(
        t_strict_fetch(&f->loop, fd, "GET /s/3000?twice HTTP/1.1\r\nHost: x\r\n\r\n", &r, false),
        200);
    assert_int_equal(write_rc, NEA_ESTATE);
    assert_int_equal(r.body_len, 3000);
    /* Ending short of the announced length cannot be framed: closed. */
    write_rc = 0;
    assert_int_equal(
        t_strict_fetch(&f->loop, fd, "GET /s/10000?short HTTP/1.1\r\nHost: x\r\n\r\n", &r, false),
        -1);
    assert_true(r.eof);
    assert_int_equal(r.body_len, 5000);
    assert_int_equal(write_rc, UV_EINVAL);
    expect_cleanup(f, 3);
    close(fd);
}

static void test_backpressure_stalls_the_producer(void **state)
{
    h_fixture *f = *state;
    t_strict r;
    int fd = h_connect(f);
    unsigned before;
    uint64_t end = h_now_ms() + H_DEADLINE_MS;

    h_sends(f, fd, "GET /s/100000000 HTTP/1.1\r\nHost: x\r\n\r\n");
    /* The client reads nothing: production must stop well short of 100 MB. */
    do {
        before = pieces;
        h_pump(f, 100, NULL);
    } while (pieces != before && h_now_ms() < end);
    assert_int_equal(pieces, before);
    assert_true((uint64_t)pieces * PIECE < 16u << 20);
    assert_true(h_arenas(f).peak_bytes < 8192);
    /* Reading lets it go on. */
    assert_int_equal(t_strict_read(&f->loop, fd, &r, false, (uint64_t)before * PIECE + (1u << 20),
                                   H_DEADLINE_MS),
                     -1);
    assert_true(r.pattern_ok);
    assert_true(pieces > before);
    /* The client leaves mid-stream: the request is cancelled, its defer
     * runs, the producer is not called again, the arena comes back. */
    close(fd);
    expect_cleanup(f, 1);
    before = pieces;
    h_pump(f, 50, NULL);
    assert_int_equal(pieces, before);
}

static void test_client_gone_before_first_piece(void **state)
{
    h_fixture *f = *state;
    int fd = h_connect(f);
    h_sends(f, fd, "GET /s/1000?wait HTTP/1.1\r\nHost: x\r\n\r\n");
    H_WAIT(f, h_arenas_in_use(f) == 1);
    assert_true(h_quiet(f, fd, 50)); /* the head waits for the first piece */
    s_reset(fd);
    expect_cleanup(f, 1); /* the tracked timer closed before the arena came back */
    assert_int_equal(pieces, 0);
}

static void test_write_timeout_cuts_a_stalled_reader(void **state)
{
    h_fixture *f = *state;
    int fd = h_connect(f);
    h_sends(f, fd, "GET /s/100000000 HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_cleanup(f, 1);
    assert_int_equal(h_st(f).timeouts, 1);
    assert_true(h_closed(f, fd, H_DEADLINE_MS));
    close(fd);
}

static void test_producer_stall_is_cut(void **state)
{
    h_fixture *f = *state;
    t_strict r;
    int fd = h_connect(f);
    h_sends(f, fd, "GET /s/100000?stall HTTP/1.1\r\nHost: x\r\n\r\n");
    /* One piece, then nothing: response_timeout_ms closes the connection
     * (no 504: the status line is on the wire). */
    assert_int_equal(t_strict_read(&f->loop, fd, &r, false, 0, H_DEADLINE_MS), -1);
    assert_true(r.eof);
    assert_int_equal(r.body_len, PIECE);
    expect_cleanup(f, 1);
    assert_int_equal(h_st(f).timeouts, 1);
    close(fd);
}

static void test_drain_cancels_a_stream(void **state)
{
    h_fixture *f = *state;
    int fd = h_connect(f);
    h_sends(f, fd, "GET /s/100000000 HTTP/1.1\r\nHost: x\r\n\r\n");
    H_WAIT(f, pieces > 10);
    h_close(f);
    H_WAIT(f, f->closed);
    assert_int_equal(defers, 1);
    close(fd);
}

static void test_oom_mid_stream_closes(void **state)
{
    h_fixture *f = *state;
    t_strict r;
    int fd = h_connect(f);

    t_log_clear(&f->log);
    h_sends(f, fd, "GET /s/100000?oom HTTP/1.1\r\nHost: x\r\n\r\n");
    /* Two pieces, then the third call of the producer exhausts the arena:
     * no 500 can follow a status line, so the connection closes. */
    assert_int_equal(t_strict_read(&f->loop, fd, &r, false, 0, H_DEADLINE_MS), -1);
    assert_true(r.eof);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 2 * PIECE);
    expect_cleanup(f, 1);
    assert_true(t_log_has(&f->log, "closing the connection"));
    close(fd);
    /* Before the head is out the arena's exhaustion is an ordinary 500. */
    fd = h_connect(f);
    h_expect(f, fd, "GET /s/1000?full HTTP/1.1\r\nHost: x\r\n\r\n", 500, NULL);
    assert_int_equal(write_rc, NEA_ENOMEM);
    assert_int_equal(h_st(f).oom_500, 1);
    expect_cleanup(f, 2);
    close(fd);
}

/* --- request bodies --------------------------------------------------------- */

static uint32_t fnv(const char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ (uint8_t)p[i]) * 16777619u;
    }
    return h;
}

static char *make_body(size_t n)
{
    char *b = malloc(n);
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        b[i] = (char)(x >> 16);
    }
    return b;
}

static void expect_upload(h_fixture *f, int fd, const char *body, size_t n)
{
    h_response r;
    char want[64];
    assert_int_equal(h_read(f, fd, &r, 4 * H_DEADLINE_MS), 200);
    snprintf(want, sizeof(want), "bytes=%zu sum=%08x", n, fnv(body, n));
    assert_string_equal(r.body, want);
}

static void test_upload_larger_than_the_arena(void **state)
{
    h_fixture *f = *state;
    size_t n = 1u << 20; /* 16 arenas' worth */
    char *body = make_body(n), head[128];
    int fd = h_connect(f);

    snprintf(head, sizeof(head), "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", n);
    h_sends(f, fd, head);
    h_send(f, fd, body, n);
    expect_upload(f, fd, body, n);
    /* Pieces are views into the read buffer: nothing was stored. */
    assert_true(max_piece <= f->cfg.read_buffer_size);
    assert_true(h_arenas(f).peak_bytes < 8192);
    expect_cleanup(f, 1);
    free(body);
    close(fd);
}

static void test_chunked_upload_larger_than_the_arena(void **state)
{
    h_fixture *f = *state;
    size_t n = 300000, step = 7000;
    char *body = make_body(n), line[32];
    int fd = h_connect(f);

    h_sends(f, fd, "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (size_t off = 0; off < n; off += step) {
        size_t k = n - off < step ? n - off : step;
        snprintf(line, sizeof(line), "%zx\r\n", k);
        h_sends(f, fd, line);
        h_send(f, fd, body + off, k);
        h_sends(f, fd, "\r\n");
    }
    h_sends(f, fd, "0\r\n\r\n");
    expect_upload(f, fd, body, n);
    /* The connection is still in step: another request is answered. */
    h_expect(f, fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 200, NULL);
    expect_cleanup(f, 1);
    free(body);
    close(fd);
}

static void test_pause_and_resume(void **state)
{
    h_fixture *f = *state;
    size_t n = 100000;
    char *body = make_body(n), head[128];
    int fd = h_connect(f);

    snprintf(head, sizeof(head),
             "POST /up?pause HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", n);
    h_sends(f, fd, head);
    h_send(f, fd, body, n);
    expect_upload(f, fd, body, n);
    expect_cleanup(f, 1);
    free(body);
    close(fd);
}

static void test_continue_waits_for_the_reader(void **state)
{
    h_fixture *f = *state;
    h_response r;
    int fd = h_connect(f);

    h_sends(
        f, fd,
        "POST /up?late HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    H_WAIT(f, up_calls == 1);
    /* The handler runs but does not read yet: no 100 Continue. */
    assert_true(h_quiet(f, fd, 150));
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 100);
    h_sends(f, fd, "hello");
    expect_upload(f, fd, "hello", 5);
    expect_cleanup(f, 1);
    close(fd);
}

static void test_answer_without_reading_closes(void **state)
{
    h_fixture *f = *state;
    h_response r;
    int fd = h_connect(f);

    h_sends(
        f, fd,
        "POST /up?refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    /* No 100 Continue: the handler never asked for the body. */
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 403);
    assert_non_null(strstr(r.head, "Connection: close"));
    assert_true(h_closed(f, fd, H_DEADLINE_MS));
    expect_cleanup(f, 1);
    close(fd);
}

static void test_answer_before_the_end_closes(void **state)
{
    h_fixture *f = *state;
    size_t n = 100000;
    char *body = make_body(n), head[128];
    h_response r;
    int fd = h_connect(f);

    snprintf(head, sizeof(head),
             "POST /up?early HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", n);
    h_sends(f, fd, head);
    h_send(f, fd, body, 16384);
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 422);
    assert_non_null(strstr(r.head, "Connection: close"));
    assert_true(h_closed(f, fd, H_DEADLINE_MS));
    expect_cleanup(f, 1);
    free(body);
    close(fd);
}

static void test_route_limit(void **state)
{
    h_fixture *f = *state;
    h_response r;
    int fd;

    /* Content-Length above the route's limit: 413 before the handler. */
    h_expect_close(f, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 4194305\r\n\r\n", 413);
    assert_int_equal(up_calls, 0);
    /* Far above cfg.max_body_size (32 KiB) is fine for this route. */
    assert_true(f->cfg.max_body_size < 4194304);
    /* A chunked body that grows past it: 413 mid-body, defers run. */
    fd = h_connect(f);
    h_sends(f, fd, "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n400001\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 413);
    expect_cleanup(f, 1);
    close(fd);
    /* Small chunks that arrive whole, each within the limit, 11 in all. */
    h_expect_close(f,
                   "POST /up10 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n",
                   413);
    expect_cleanup(f, 2);
    /* Exactly the limit is fine. */
    fd = h_connect(f);
    h_expect(f, fd,
             "POST /up10 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
             "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n",
             200, &r);
    assert_string_equal(r.body, "bytes=10 sum=3b9f5c61");
    expect_cleanup(f, 3);
    close(fd);
}

static void test_client_gone_mid_body(void **state)
{
    h_fixture *f = *state;
    char *body = make_body(20000);
    int fd = h_connect(f);
    h_sends(f, fd, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n");
    h_send(f, fd, body, 20000);
    H_WAIT(f, max_piece > 0);
    close(fd);
    expect_cleanup(f, 1);
    free(body);
}

static void test_no_body_ends_at_once(void **state)
{
    h_fixture *f = *state;
    int fd = h_connect(f);
    h_response r;
    h_expect(f, fd, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 200, &r);
    assert_string_equal(r.body, "bytes=0 sum=811c9dc5");
    expect_cleanup(f, 1);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_length_framing_and_keep_alive, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_chunked_framing_is_strict, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_http10_unknown_length_closes, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_head_sends_the_head_only, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_misuse_is_refused, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_backpressure_stalls_the_producer, setup,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_client_gone_before_first_piece, setup,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_write_timeout_cuts_a_stalled_reader, setup_quick,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_producer_stall_is_cut, setup_quick, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_drain_cancels_a_stream, setup_quick, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_oom_mid_stream_closes, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_upload_larger_than_the_arena, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_chunked_upload_larger_than_the_arena, setup,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_pause_and_resume, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_continue_waits_for_the_reader, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_answer_without_reading_closes, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_answer_before_the_end_closes, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_route_limit, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_client_gone_mid_body, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_no_body_ends_at_once, setup, h_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
