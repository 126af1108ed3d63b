/*
 * test_scrape.c - a metrics scrape as a streamed response (scrape.c,
 * nea_respond_metrics): a text larger than the arena served from a 32 KiB
 * arena, chunk by chunk, that promtool (Debian package prometheus) accepts
 * and that is the same text nea_server_metrics_text writes; HEAD, HTTP/1.0
 * (delimited by the close), the buffer raised to the longest line, an
 * arena too small for the buffer (nothing sent), a client that resets
 * mid-scrape, the scrape on another
 * worker summing every worker, and the connection kept for the next
 * request.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "e2e.h"
#include "strict.h"

/* What nea_server_metrics_text wrote just before a scrape with
 * ?capture (single worker only). */
static char captured[1 << 20];
static size_t captured_len;

/* GET /scrape[?buf=N][&capture]: nea_respond_metrics with N bytes of
 * buffer (0 when absent); 507 when it reports NEA_ENOMEM. X-Worker says
 * which worker (0 when the request runs on the loop of the handle
 * nea_req_server gives). */
static void r_scrape(nea_req *req, void *data)
{
    const char *q = strstr(nea_req_query(req), "buf=");
    size_t buf = q != NULL ? (size_t)strtoull(q + 4, NULL, 10) : 0;
    bool other = nea_req_loop(req) != nea_server_loop(nea_req_server(req));
    int rc;
    (void)data;
    if (nea_resp_header(req, "X-Worker", other ? "1" : "0") != 0) {
        abort();
    }
    if (strstr(nea_req_query(req), "capture") != NULL) {
        captured_len = nea_server_metrics_text(nea_req_server(req), captured, sizeof(captured));
    }
    rc = nea_respond_metrics(req, buf);
    if (rc == NEA_ENOMEM) {
        nea_respond(req, 507, "text/plain", "no room", 7);
    } else if (rc != 0) {
        abort(); /* no cmocka assertion in a handler: it may run on a worker thread */
    }
}

static void small_arena(nea_config *cfg)
{
    cfg->arena_size = 32u << 10;
    cfg->max_body_size = 8u << 10;
}

static void start(void **state, void (*tweak)(nea_config *))
{
    h_fixture *f;
    h_test_start(state, tweak);
    f = *state;
    assert_int_equal(
        nea_server_route_flags(f->srv, "GET", "/scrape", r_scrape, NULL, NEA_ROUTE_EXEMPT), 0);
}

/* Decodes a chunked body in place; returns its length and the number of
 * chunks, or fails the test on bad framing. */
static size_t dechunk(char *body, size_t len, unsigned *chunks)
{
    size_t in = 0, out = 0;
    *chunks = 0;
    for (;;) {
        char *end;
        size_t n = (size_t)strtoull(body + in, &end, 16);
        assert_true(end > body + in && end[0] == '\r' && end[1] == '\n');
        in = (size_t)(end - body) + 2;
        if (n == 0) {
            assert_int_equal(len - in, 2); /* no trailers: the final CRLF */
            assert_memory_equal(body + in, "\r\n", 2);
            return out;
        }
        assert_true(in + n + 2 <= len);
        memmove(body + out, body + in, n);
        out += n;
        in += n;
        assert_memory_equal(body + in, "\r\n", 2);
        in += 2;
        (*chunks)++;
    }
}

typedef struct scraped {
    char head[4096];
    char *body; /* NUL-terminated, decoded */
    size_t len;
    unsigned chunks;
} scraped;

/* Sends raw (which asks to close) and reads the whole answer. */
static int fetch(h_fixture *f, const char *raw, scraped *s)
{
    static char buf[1 << 20];
    char *hend;
    int fd = h_connect(f), n;
    h_sends(f, fd, raw);
    n = s_read_all(&f->loop, fd, buf, sizeof(buf), H_DEADLINE_MS);
    close(fd);
    assert_true(n > 0 && (size_t)n < sizeof(buf) - 1);
    hend = strstr(buf, "\r\n\r\n");
    assert_non_null(hend);
    snprintf(s->head, sizeof(s->head), "%.*s", (int)(hend + 4 - buf), buf);
    s->body = hend + 4;
    s->len = (size_t)n - (size_t)(hend + 4 - buf);
    s->chunks = 0;
    if (strstr(s->head, "Transfer-Encoding: chunked\r\n") != NULL) {
        s->len = dechunk(s->body, s->len, &s->chunks);
    }
    s->body[s->len] = '\0';
    return atoi(buf + 9);
}

static void promtool_accepts(const char *text, size_t len)
{
    FILE *p;
    if (system("command -v promtool >/dev/null 2>&1") != 0) {
        fail_msg("promtool not found: install the Debian package prometheus "
                 "(scripts/install-deps.sh)");
    }
    p = popen("promtool check metrics", "w");
    assert_non_null(p);
    assert_int_equal(fwrite(text, 1, len, p), len);
    assert_int_equal(pclose(p), 0);
}

/* Every shared route counts a request (and the unrouted record a 404). */
static void use_the_routes(h_fixture *f)
{
    static const char *const raws[] = {
        "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
        "GET /hdr HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /p/x HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /alloc/100 HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /sleep/1 HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /respond-then-oom HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /status/201 HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
    };
    h_response r;
    int fd = h_connect(f);
    for (size_t i = 0; i < sizeof(raws) / sizeof(raws[0]); i++) {
        h_sends(f, fd, raws[i]);
        assert_true(h_read(f, fd, &r, H_DEADLINE_MS) > 0);
    }
    close(fd);
}

/* The record of path, read through the public API. */
static nea_route_stats record_of(h_fixture *f, const char *path)
{
    nea_route_stats r;
    for (unsigned i = 0; i < nea_server_route_stats_count(f->srv); i++) {
        assert_int_equal(nea_server_route_stats(f->srv, i, &r), 0);
        if (strcmp(r.path, path) == 0) {
            return r;
        }
    }
    fail_msg("no record for %s", path);
    return r;
}

/* With ten routes in use the text is larger than the 32 KiB arena: the
 * buffered scrape cannot answer, the streamed one does, in pieces of its
 * 4 KiB buffer, with text promtool accepts. */
static void test_scrape_larger_than_the_arena(void **state)
{
    static char text[1 << 20];
    h_fixture *f;
    h_response r;
    scraped s;
    size_t len;
    start(state, small_arena);
    f = *state;
    use_the_routes(f);
    len = nea_server_metrics_text(f->srv, text, sizeof(text));
    assert_true(len > (32u << 10));

    /* The buffered way cannot hold it. */
    assert_int_equal(h_request(f, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &r), 507);

    assert_int_equal(fetch(f, "GET /scrape HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &s),
                     200);
    assert_non_null(strstr(s.head, "Content-Type: " NEA_METRICS_CONTENT_TYPE "\r\n"));
    assert_true(s.len > (32u << 10));
    assert_true(s.chunks >= s.len / 4096);
    assert_true(s.chunks <= s.len / 2048 + 1); /* the buffer is filled, not a line a chunk */
    assert_non_null(strstr(s.body, "nea_route_requests_total{route=\"/status/\",method=\"GET\","
                                   "outcome=\"completed\"} 1\n"));
    assert_non_null(strstr(s.body, "nea_route_duration_seconds_count{route=\"/respond-then-oom\","
                                   "method=\"GET\"} 1\n"));
    promtool_accepts(s.body, s.len);
    /* The arena held the state and the buffer, not the text. */
    H_WAIT(f, record_of(f, "/scrape").requests == 1);
    assert_true(record_of(f, "/scrape").arena_peak_max < (12u << 10));
}

/* Nothing counted in between: the streamed text is the text
 * nea_server_metrics_text writes in the same handler just before, byte
 * for byte, here over HTTP/1.0 (no chunks: the close ends the body). */
static void test_scrape_is_the_metrics_text(void **state)
{
    h_fixture *f;
    scraped s;
    start(state, small_arena);
    f = *state;
    use_the_routes(f);
    captured_len = 0;
    assert_int_equal(fetch(f, "GET /scrape?buf=1000&capture HTTP/1.0\r\n\r\n", &s), 200);
    assert_int_equal(s.chunks, 0);
    assert_null(strstr(s.head, "Transfer-Encoding"));
    assert_non_null(strstr(s.head, "Connection: close\r\n"));
    assert_true(captured_len > (32u << 10));
    assert_int_equal(s.len, captured_len);
    assert_memory_equal(s.body, captured, captured_len);
}

/* HEAD gets the head; the connection then serves the next request. A
 * strict reader checks the chunked framing on a kept-alive connection. */
static void test_scrape_head_and_keep_alive(void **state)
{
    h_fixture *f;
    h_response r;
    t_strict t;
    char v[64];
    int fd;
    start(state, small_arena);
    f = *state;
    use_the_routes(f);
    fd = h_connect(f);
    f->head_request = true;
    h_sends(f, fd, "HEAD /scrape HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(h_header(&r, "transfer-encoding", v, sizeof(v)), "chunked");
    assert_int_equal(r.body_len, 0);
    f->head_request = false;
    assert_int_equal(
        t_strict_fetch(&f->loop, fd, "GET /scrape?buf=300 HTTP/1.1\r\nHost: x\r\n\r\n", &t, false),
        200);
    assert_true(t.done);
    assert_true(t.body_len > (32u << 10));
    h_expect(f, fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 200, &r);
    assert_string_equal(r.body, "Hello, World!");
    close(fd);
}

/* A client that resets mid-scrape cancels it: the arena comes back and
 * the request is counted cancelled. A small buffer makes the scrape a few
 * hundred chunks, one per loop iteration. */
static void test_scrape_client_leaves(void **state)
{
    h_fixture *f;
    nea_route_stats rec;
    int fd;
    start(state, small_arena);
    f = *state;
    use_the_routes(f);
    fd = h_get(f, "/scrape?buf=1");
    H_WAIT(f, h_arenas_in_use(f) == 1);
    s_reset(fd);
    assert_true(h_arenas_settle(f));
    H_WAIT(f, record_of(f, "/scrape").requests == 1);
    rec = record_of(f, "/scrape");
    assert_int_equal(rec.outcomes[NEA_OUTCOME_CANCELLED], 1);
    assert_int_equal(h_st(f).connections_open, 0);
}

static void r_long(nea_req *req, void *data)
{
    (void)data;
    nea_respond(req, 200, "text/plain", "long", 4);
}

/* The buffer is raised to the longest line (a route path of 3000 bytes),
 * however small the handler asked for; an arena that cannot hold the
 * buffer asked for gets nothing sent (the handler answers 507). */
static void test_scrape_buffer_sizes(void **state)
{
    static char path[3001], raw[3200];
    h_fixture *f;
    h_response r;
    scraped s;
    start(state, small_arena);
    f = *state;
    path[0] = '/';
    memset(path + 1, 'q', sizeof(path) - 2);
    assert_int_equal(nea_server_route(f->srv, "GET", path, r_long, NULL), 0);
    snprintf(raw, sizeof(raw), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    assert_int_equal(h_request(f, raw, &r), 200);
    assert_int_equal(
        fetch(f, "GET /scrape?buf=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &s), 200);
    assert_non_null(strstr(s.body, path));
    assert_true(s.chunks > 10);
    promtool_accepts(s.body, s.len);
    assert_int_equal(h_request(f, "GET /scrape?buf=1000000 HTTP/1.1\r\nHost: x\r\n\r\n", &r), 507);
    assert_string_equal(r.body, "no room");
}

static void quiet(void *data, int level, const char *msg)
{
    (void)data;
    (void)level;
    (void)msg;
}

static void two_workers(nea_config *cfg)
{
    small_arena(cfg);
    cfg->workers = 2;
    cfg->log = quiet; /* the capture is not for several threads */
}

/* On worker 1 the scrape sums both workers' records: every /hello, on
 * whichever worker it ran. */
static void test_scrape_on_another_worker(void **state)
{
    h_fixture f;
    nea_config cfg;
    scraped s;
    unsigned hellos = 0;
    bool on_one = false;
    char want[160];
    (void)state;
    h_config(&cfg);
    two_workers(&cfg);
    memset(&f, 0, sizeof(f));
    t_handlers_reset();
    assert_int_equal(uv_loop_init(&f.loop), 0);
    f.cfg = cfg;
    assert_int_equal(nea_server_new(&f.loop, &f.cfg, &f.srv), 0);
    t_routes_add(f.srv);
    assert_int_equal(
        nea_server_route_flags(f.srv, "GET", "/scrape", r_scrape, NULL, NEA_ROUTE_EXEMPT), 0);
    assert_int_equal(nea_server_listen(f.srv), 0);
    f.port = nea_server_port(f.srv);
    for (int i = 0; i < 40; i++) {
        h_response r;
        assert_int_equal(h_request(&f, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
        hellos++;
    }
    H_WAIT(&f, h_st(&f).responses[2] == hellos);
    for (int i = 0; i < 200 && !on_one; i++) {
        assert_int_equal(
            fetch(&f, "GET /scrape HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &s), 200);
        on_one = strstr(s.head, "X-Worker: 1\r\n") != NULL;
    }
    assert_true(on_one);
    snprintf(want, sizeof(want),
             "\nnea_route_requests_total{route=\"/hello\",method=\"GET\",outcome=\"completed\"} "
             "%u\n",
             hellos);
    assert_non_null(strstr(s.body, want));
    promtool_accepts(s.body, s.len);
    h_stop(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_scrape_larger_than_the_arena, h_test_teardown),
        cmocka_unit_test_teardown(test_scrape_is_the_metrics_text, h_test_teardown),
        cmocka_unit_test_teardown(test_scrape_head_and_keep_alive, h_test_teardown),
        cmocka_unit_test_teardown(test_scrape_buffer_sizes, h_test_teardown),
        cmocka_unit_test_teardown(test_scrape_client_leaves, h_test_teardown),
        cmocka_unit_test(test_scrape_on_another_worker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
