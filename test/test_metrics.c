/*
 * test_metrics.c - per-route metrics (metrics.c and its recording points in
 * conn.c): histogram bucket edges and quantiles (ranks rounded up),
 * summing records, each
 * outcome counted in its route's record (completed, OOM, shed, timeout,
 * cancelled) and refusals before routing in the unrouted one, the
 * completion hook, rate-limited refusal logs, and the Prometheus exposition
 * checked line by line and by promtool (Debian package prometheus).
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
#include "metrics.h"

/* --- buckets ---------------------------------------------------------------- */

static void test_bucket_edges(void **state)
{
    (void)state;
    assert_int_equal(nea_histogram_edge(10, 0), 1024);
    assert_int_equal(nea_histogram_edge(10, 1), 1280);
    assert_int_equal(nea_histogram_edge(10, 2), 1536);
    assert_int_equal(nea_histogram_edge(10, 3), 1792);
    assert_int_equal(nea_histogram_edge(10, 4), 2048);
    assert_int_equal(nea_histogram_edge(10, 5), 2560);
    assert_int_equal(nea_histogram_edge(10, NEA_HIST_BUCKETS - 2), (uint64_t)1 << 32);
    assert_true(nea_histogram_edge(10, NEA_HIST_BUCKETS - 1) == UINT64_MAX);
    assert_int_equal(nea_histogram_edge(NEA_HIST_NS_LOG2, 0), 4096);

    assert_int_equal(nea__hist_index(10, 0), 0);
    assert_int_equal(nea__hist_index(10, 1024), 0);
    assert_int_equal(nea__hist_index(10, 1025), 1);
    assert_int_equal(nea__hist_index(10, 1280), 1);
    assert_int_equal(nea__hist_index(10, 1281), 2);
    assert_int_equal(nea__hist_index(10, UINT64_MAX), NEA_HIST_BUCKETS - 1);
    /* Every edge is the largest value of its own bucket, for both kinds. */
    for (unsigned m = NEA_HIST_BYTES_LOG2; m <= NEA_HIST_NS_LOG2; m += 2) {
        for (unsigned i = 0; i < NEA_HIST_BUCKETS - 1; i++) {
            uint64_t e = nea_histogram_edge(m, i);
            assert_int_equal(nea__hist_index(m, e), i);
            assert_int_equal(nea__hist_index(m, e + 1), i + 1);
            assert_true(i == 0 || e > nea_histogram_edge(m, i - 1));
        }
    }
}

static void test_quantile_and_sum(void **state)
{
    nea_histogram h, g;
    nea_route_stats a, b;
    (void)state;

    memset(&h, 0, sizeof(h));
    assert_int_equal(nea_histogram_quantile(&h, 10, 0.5), 0);
    /* 998 values of 3000 bytes, 2 of 100 KiB: p99 is in 3000's bucket
     * (edge 3072), p99.9 in 100 KiB's (edge 112 KiB). */
    for (int i = 0; i < 998; i++) {
        nea__hist_add(&h, 10, 3000);
    }
    nea__hist_add(&h, 10, 100 << 10);
    nea__hist_add(&h, 10, 100 << 10);
    assert_int_equal(h.count, 1000);
    assert_int_equal(h.sum, 998 * 3000 + 2 * (100 << 10));
    assert_int_equal(nea_histogram_quantile(&h, 10, 0.99), 3072);
    assert_int_equal(nea_histogram_quantile(&h, 10, 0.999), 112 << 10);
    assert_int_equal(nea_histogram_quantile(&h, 10, 1.0), 112 << 10);
    nea__hist_add(&h, 10, (uint64_t)1 << 40); /* beyond the highest edge */
    assert_true(nea_histogram_quantile(&h, 10, 1.0) == UINT64_MAX);
    /* A rank that falls between two values rounds up: of ten values, p90
     * is the ninth and p95 the tenth (at least 95% of them are no larger). */
    memset(&g, 0, sizeof(g));
    for (int i = 0; i < 9; i++) {
        nea__hist_add(&g, 10, 3000);
    }
    nea__hist_add(&g, 10, 100 << 10);
    assert_int_equal(nea_histogram_quantile(&g, 10, 0.9), 3072);
    assert_int_equal(nea_histogram_quantile(&g, 10, 0.95), 112 << 10);

    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    a.path = "/a";
    b.path = "/b";
    b.requests = 3;
    b.outcomes[NEA_OUTCOME_OOM] = 2;
    b.responses[5] = 2;
    b.arena_peak_max = 77;
    b.arena_peak_bytes = h;
    nea_route_stats_add(&a, &b);
    nea_route_stats_add(&a, &b);
    assert_string_equal(a.path, "/a");
    assert_int_equal(a.requests, 6);
    assert_int_equal(a.outcomes[NEA_OUTCOME_OOM], 4);
    assert_int_equal(a.responses[5], 4);
    assert_int_equal(a.arena_peak_max, 77);
    assert_int_equal(a.arena_peak_bytes.count, 2 * h.count);
    assert_int_equal(a.arena_peak_bytes.buckets[nea__hist_index(10, 3000)], 2 * 998);
}

/* --- counting end to end ------------------------------------------------------- */

/* The record of the route registered as method path. */
static nea_route_stats route_stats(h_fixture *f, const char *method, const char *path)
{
    nea_route_stats r;
    unsigned n = nea_server_route_stats_count(f->srv);
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(nea_server_route_stats(f->srv, i, &r), 0);
        if (strcmp(r.method, method) == 0 && strcmp(r.path, path) == 0) {
            return r;
        }
    }
    fail_msg("no record for %s %s", method, path);
    return r;
}

static void test_outcomes_by_route(void **state)
{
    h_fixture *f;
    h_response r;
    nea_route_stats st;
    int fd;

    h_test_start(state, NULL);
    f = *state;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(h_request(f, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
    }
    assert_int_equal(h_request(f, "GET /alloc/99999999 HTTP/1.1\r\nHost: x\r\n\r\n", &r), 500);
    assert_int_equal(h_request(f, "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", &r), 404);
    assert_int_equal(h_request(f, "GET /hello HTTP/1.1\r\n\r\n", &r), 400); /* no Host */
    /* Cancelled: the client leaves while the handler waits. */
    fd = h_get(f, "/sleep/5000");
    H_WAIT(f, h_arenas_in_use(f) == 1);
    s_reset(fd);
    H_WAIT(f, route_stats(f, "GET", "/sleep/").requests == 1);

    st = route_stats(f, "GET", "/hello");
    assert_int_equal(st.requests, 3);
    assert_int_equal(st.outcomes[NEA_OUTCOME_COMPLETED], 3);
    assert_int_equal(st.responses[2], 3);
    assert_int_equal(st.arena_peak_bytes.count, 3);
    assert_int_equal(st.handler_ns.count, 3);
    assert_int_equal(st.queue_ns.count, 3);
    assert_int_equal(st.total_ns.count, 3);
    assert_true(st.arena_peak_max > 0 && st.arena_peak_max < f->cfg.arena_size);
    assert_true(st.bytes_in >= 3 * strlen("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert_true(st.bytes_out > 3 * strlen("Hello, World!"));

    st = route_stats(f, "GET", "/alloc/");
    assert_int_equal(st.outcomes[NEA_OUTCOME_OOM], 1);
    assert_int_equal(st.responses[5], 1);
    assert_int_equal(st.arena_peak_bytes.count, 1);

    st = route_stats(f, "", "unrouted");
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.responses[4], 2);
    assert_int_equal(st.outcomes[NEA_OUTCOME_COMPLETED], 2);
    assert_int_equal(st.arena_peak_bytes.count, 0); /* neither took an arena */

    st = route_stats(f, "GET", "/sleep/");
    assert_int_equal(st.outcomes[NEA_OUTCOME_CANCELLED], 1);
    assert_int_equal(st.responses[2], 0);
    assert_int_equal(st.handler_ns.count, 1);
    assert_int_equal(st.handler_ns.sum, 0); /* it never responded */
}

static void one_arena_quick(nea_config *c)
{
    c->arena_count = 1;
    c->queue_timeout_ms = 0;
    c->response_timeout_ms = 100;
}

static void test_shed_and_timeout(void **state)
{
    h_fixture *f;
    h_response r;
    nea_route_stats st;
    int fd;

    h_test_start(state, one_arena_quick);
    f = *state;
    fd = h_get(f, "/sleep/5000"); /* holds the only arena until its 504 */
    H_WAIT(f, h_arenas_in_use(f) == 1);
    assert_int_equal(h_request(f, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", &r), 503);
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 504);
    close(fd);

    st = route_stats(f, "GET", "/hello");
    assert_int_equal(st.outcomes[NEA_OUTCOME_SHED], 1);
    assert_int_equal(st.responses[5], 1);
    assert_int_equal(st.queue_ns.count, 1);         /* it asked for an arena */
    assert_int_equal(st.arena_peak_bytes.count, 0); /* and got none */
    assert_int_equal(st.handler_ns.count, 0);
    st = route_stats(f, "GET", "/sleep/");
    assert_int_equal(st.outcomes[NEA_OUTCOME_TIMEOUT], 1);
    assert_int_equal(st.responses[5], 1);
    /* The 503 was logged, with its route's path. */
    assert_true(t_log_has(&f->log, "503 for GET /hello from 127.0.0.1 (shed)"));
}

/* --- the completion hook -------------------------------------------------------- */

static nea_completion seen[8];
static char seen_path[8][64], seen_method[8][16];
static unsigned seen_count;

static void on_complete(void *data, const nea_completion *c)
{
    unsigned i = seen_count++;
    (void)data;
    if (i < 8) {
        seen[i] = *c;
        snprintf(seen_path[i], sizeof(seen_path[i]), "%.*s", (int)c->path_len, c->path);
        snprintf(seen_method[i], sizeof(seen_method[i]), "%.*s", (int)c->method_len, c->method);
        seen[i].peer = NULL; /* valid only during the call */
        assert_true(c->peer->ss_family == AF_INET);
    }
}

static void with_hook(nea_config *c)
{
    c->on_complete = on_complete;
    seen_count = 0;
}

static void test_completion_hook(void **state)
{
    h_fixture *f;
    h_response r;
    int fd;

    h_test_start(state, with_hook);
    f = *state;
    fd = h_connect(f);
    h_expect(f, fd, "POST /echo?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 200,
             &r);
    h_expect(f, fd, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404, &r);
    close(fd);
    assert_int_equal(h_request(f, "GET /alloc/99999999 HTTP/1.1\r\nHost: x\r\n\r\n", &r), 500);
    H_WAIT(f, seen_count == 3);

    assert_string_equal(seen_method[0], "POST");
    assert_string_equal(seen_path[0], "/echo");
    assert_string_equal(seen[0].route, "/echo");
    assert_int_equal(seen[0].status, 200);
    assert_int_equal(seen[0].outcome, NEA_OUTCOME_COMPLETED);
    assert_int_equal(seen[0].bytes_in,
                     strlen("POST /echo?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n") + 5);
    assert_true(seen[0].bytes_out > 5);
    assert_true(seen[0].arena_peak_bytes > 0);
    assert_true(seen[0].total_ns >= seen[0].handler_ns);

    assert_string_equal(seen_path[1], "/nope");
    assert_null(seen[1].route);
    assert_int_equal(seen[1].status, 404);
    assert_int_equal(seen[1].arena_peak_bytes, 0);

    assert_string_equal(seen[2].route, "/alloc/");
    assert_int_equal(seen[2].status, 500);
    assert_int_equal(seen[2].outcome, NEA_OUTCOME_OOM);
}

/* --- refusal logs ----------------------------------------------------------------- */

static unsigned log_lines_with(const t_log *l, const char *needle)
{
    unsigned n = 0;
    for (const char *p = l->all; (p = strstr(p, needle)) != NULL; p++) {
        n++;
    }
    return n;
}

static void test_refusals_logged_rate_limited(void **state)
{
    h_fixture *f;
    h_response r;

    h_test_start(state, NULL);
    f = *state;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(h_request(f, "GET /hello HTTP/1.1\r\n\r\n", &r), 400);
    }
    /* Five 400s within a second: one line (the next one, a second later,
     * would say how many were skipped). */
    assert_int_equal(log_lines_with(&f->log, "400 for GET  from 127.0.0.1 (completed)"), 1);
    assert_int_equal(route_stats(f, "", "unrouted").requests, 5);
}

/* --- the exposition ------------------------------------------------------------------ */

static uint64_t sample_value(const char *text, const char *series)
{
    const char *p = strstr(text, series);
    if (p == NULL) {
        fail_msg("no series %s", series);
    }
    return strtoull(p + strlen(series), NULL, 10);
}

static void test_exposition(void **state)
{
    h_fixture *f;
    h_response r;
    static char text[256 << 10];
    size_t len;
    uint64_t prev = 0;
    const char *p;

    h_test_start(state, NULL);
    f = *state;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(h_request(f, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
    }
    assert_int_equal(h_request(f, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", &r), 404);
    len = nea_server_metrics_text(f->srv, text, sizeof(text));
    assert_true(len > 0 && len < sizeof(text));
    assert_int_equal(strlen(text), len);

    assert_int_equal(sample_value(text, "nea_route_requests_total{route=\"/hello\",method=\"GET\","
                                        "outcome=\"completed\"} "),
                     4);
    assert_int_equal(
        sample_value(text,
                     "nea_route_responses_total{route=\"/hello\",method=\"GET\",code=\"2xx\"} "),
        4);
    assert_int_equal(
        sample_value(text,
                     "nea_route_responses_total{route=\"unrouted\",method=\"\",code=\"4xx\"} "),
        1);
    assert_int_equal(sample_value(text, "\nnea_requests_total "), 5);
    /* The arena-peak histogram: +Inf equals _count, buckets cumulative. */
    assert_int_equal(sample_value(text, "nea_route_arena_peak_bytes_bucket{route=\"/hello\","
                                        "method=\"GET\",le=\"+Inf\"} "),
                     4);
    assert_int_equal(
        sample_value(text, "nea_route_arena_peak_bytes_count{route=\"/hello\",method=\"GET\"} "),
        4);
    assert_non_null(strstr(text, "# TYPE nea_route_arena_peak_bytes histogram\n"));
    assert_non_null(strstr(text, "# TYPE nea_route_duration_seconds histogram\n"));
    p = text;
    while ((p = strstr(p, "nea_route_arena_peak_bytes_bucket{route=\"/hello\",")) != NULL) {
        uint64_t v = strtoull(strchr(p, '}') + 2, NULL, 10);
        assert_true(v >= prev);
        prev = v;
        p++;
    }
    assert_int_equal(prev, 4);
    assert_non_null(strstr(text, "le=\"1024\"}"));
    assert_non_null(strstr(text, "le=\"4.096e-06\"}"));

    /* A buffer too small gets a cut, terminated text and the full length. */
    {
        char small[100];
        assert_int_equal(nea_server_metrics_text(f->srv, small, sizeof(small)), len);
        assert_int_equal(strlen(small), sizeof(small) - 1);
        assert_memory_equal(small, text, sizeof(small) - 1);
        assert_int_equal(nea_server_metrics_text(f->srv, NULL, 0), len);
    }

    /* The same text served over HTTP by an exempt route. */
    assert_int_equal(h_request(f, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
    assert_non_null(strstr(r.body, "nea_route_requests_total{route=\"/hello\""));
}

static void test_promtool_accepts_exposition(void **state)
{
    h_fixture *f;
    h_response r;
    static char text[256 << 10];
    size_t len;
    FILE *p;
    int rc;

    if (system("command -v promtool >/dev/null 2>&1") != 0) {
        fail_msg("promtool not found: install the Debian package prometheus "
                 "(scripts/install-deps.sh)");
    }
    h_test_start(state, one_arena_quick);
    f = *state;
    /* Every kind of record filled: completed, OOM, 404, 400, shed, timeout. */
    assert_int_equal(h_request(f, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
    assert_int_equal(h_request(f, "GET /alloc/99999999 HTTP/1.1\r\nHost: x\r\n\r\n", &r), 500);
    assert_int_equal(h_request(f, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", &r), 404);
    assert_int_equal(h_request(f, "GET /hello HTTP/1.1\r\n\r\n", &r), 400);
    {
        int fd = h_get(f, "/sleep/5000");
        H_WAIT(f, h_arenas_in_use(f) == 1);
        assert_int_equal(h_request(f, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", &r), 503);
        assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 504);
        close(fd);
    }
    len = nea_server_metrics_text(f->srv, text, sizeof(text));
    assert_true(len < sizeof(text));
    p = popen("promtool check metrics", "w");
    assert_non_null(p);
    assert_int_equal(fwrite(text, 1, len, p), len);
    rc = pclose(p);
    assert_int_equal(rc, 0);
}

/* --- the exposition a piece at a time ------------------------------------------ */

/* Three records as a reader would give them: the unrouted one, a route
 * that counted nothing (left out), and a route with a long path full of
 * characters the format escapes. gen is added to every counter, so a
 * reader that moves between two reads shows it. */
static char long_path[700];
static unsigned fake_gen;

static void fake_read(const void *data, unsigned i, nea_route_stats *out)
{
    uint64_t k = 1 + fake_gen;
    (void)data;
    memset(out, 0, sizeof(*out));
    out->method = i == 0 ? "" : "GET";
    out->path = i == 0 ? "unrouted" : i == 1 ? "/idle" : long_path;
    if (i == 1) {
        return;
    }
    for (unsigned o = 0; o < NEA_OUTCOME_COUNT; o++) {
        out->outcomes[o] = k * (o + 1);
        out->requests += out->outcomes[o];
    }
    for (unsigned c = 1; c <= 5; c++) {
        out->responses[c] = k * c;
    }
    out->bytes_in = 1000 * k;
    out->bytes_out = 2000 * k;
    for (unsigned b = 0; b < NEA_HIST_BUCKETS; b++) {
        out->arena_peak_bytes.buckets[b] = k;
        out->queue_ns.buckets[b] = k;
        out->handler_ns.buckets[b] = k;
        out->total_ns.buckets[b] = k;
    }
    out->arena_peak_bytes.count = out->queue_ns.count = NEA_HIST_BUCKETS * k;
    out->handler_ns.count = out->total_ns.count = NEA_HIST_BUCKETS * k;
    out->arena_peak_bytes.sum = 123456 * k;
    out->queue_ns.sum = out->handler_ns.sum = out->total_ns.sum = 987654321 * k;
}

static void fake_source(nea__records *src, nea_stats *st)
{
    for (size_t i = 0; i < sizeof(long_path) - 1; i++) {
        long_path[i] = "/a\"b\\c\nx"[i % 8];
    }
    long_path[sizeof(long_path) - 1] = '\0';
    src->n = 3;
    src->read = fake_read;
    src->data = NULL;
    memset(st, 0, sizeof(*st));
    st->requests = 41;
    st->accepted = 7;
    st->shed_no_arena = 3;
    st->shed_draining = 1;
    st->arena_class_count = 2;
    st->classes[0].size = 65536;
    st->classes[0].count = 8;
    st->classes[1].size = 1 << 20;
    st->classes[1].count = 2;
    st->classes[1].in_use = 1;
}

/* The pieces, concatenated, are the text nea__metrics_write writes, for
 * every piece size from the longest line up; each piece is whole lines. */
static void test_pieces_add_up_to_the_text(void **state)
{
    static char whole[1 << 20], joined[1 << 20], piece[1 << 16];
    nea__records src;
    nea_stats st;
    size_t len, line_max;
    (void)state;
    fake_gen = 0;
    fake_source(&src, &st);
    len = nea__metrics_write(&src, &st, whole, sizeof(whole));
    assert_true(len < sizeof(whole));
    line_max = nea__expo_line_max(&src);
    assert_int_equal(line_max, 256 + 2 * (sizeof(long_path) - 1 + 3));
    {
        const size_t caps[] = {line_max + 1, line_max + 2, line_max + 77, 4097, sizeof(piece)};
        for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
            nea__expo x;
            size_t at = 0, n, pieces = 0;
            nea__expo_begin(&x);
            while ((n = nea__expo_next(&x, &src, &st, piece, caps[c])) > 0) {
                assert_true(n < caps[c]);
                assert_int_equal(strlen(piece), n);
                assert_int_equal(piece[n - 1], '\n');
                assert_true(at + n <= len);
                memcpy(joined + at, piece, n);
                at += n;
                pieces++;
            }
            assert_int_equal(at, len);
            assert_memory_equal(joined, whole, len);
            assert_true(pieces >= len / caps[c]);
            /* Over stays over. */
            assert_int_equal(nea__expo_next(&x, &src, &st, piece, caps[c]), 0);
        }
    }
    /* The route that counted nothing is left out, the escapes are there. */
    assert_null(strstr(whole, "/idle"));
    assert_non_null(strstr(whole, "route=\"/a\\\"b\\\\c\\nx/a"));
}

/* Counters that move between pieces: each route's lines of one family come
 * from one copy of its record (a histogram's buckets, +Inf and _count
 * agree), whatever piece they fall in. */
static void test_pieces_read_each_unit_once(void **state)
{
    static char text[1 << 20], piece[1 << 16];
    nea__records src;
    nea_stats st;
    nea__expo x;
    size_t at = 0, n, cap;
    const char *p;
    unsigned checked = 0;
    (void)state;
    fake_source(&src, &st);
    cap = nea__expo_line_max(&src) + 1; /* about one line a piece */
    fake_gen = 0;
    nea__expo_begin(&x);
    while ((n = nea__expo_next(&x, &src, &st, piece, cap)) > 0) {
        memcpy(text + at, piece, n);
        at += n;
        fake_gen++;
    }
    text[at] = '\0';
    assert_true(fake_gen > 70); /* about one line of the long route a piece */
    /* Every histogram of the long route: bucket j shows (8j + 1) k, +Inf
     * and _count NEA_HIST_BUCKETS k, for one k per histogram. */
    for (p = text; (p = strstr(p, "_bucket{route=\"/a")) != NULL; checked++) {
        uint64_t k = 0;
        for (unsigned j = 0; j < (NEA_HIST_BUCKETS - 2) / 8 + 1; j++) {
            uint64_t v = strtoull(strstr(p, "} ") + 2, NULL, 10);
            if (j == 0) {
                k = v;
            }
            assert_int_equal(v, (8 * j + 1) * k);
            p = strchr(p, '\n') + 1;
        }
        assert_non_null(strstr(p, "le=\"+Inf\"} ") == NULL ? NULL : p);
        assert_int_equal(strtoull(strstr(p, "} ") + 2, NULL, 10), NEA_HIST_BUCKETS * k);
        p = strchr(p, '\n') + 1; /* _sum */
        p = strchr(p, '\n') + 1; /* _count */
        assert_int_equal(strtoull(strstr(p, "} ") + 2, NULL, 10), NEA_HIST_BUCKETS * k);
    }
    assert_int_equal(checked, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_edges),
        cmocka_unit_test(test_quantile_and_sum),
        cmocka_unit_test(test_pieces_add_up_to_the_text),
        cmocka_unit_test(test_pieces_read_each_unit_once),
        cmocka_unit_test_teardown(test_outcomes_by_route, h_test_teardown),
        cmocka_unit_test_teardown(test_shed_and_timeout, h_test_teardown),
        cmocka_unit_test_teardown(test_completion_hook, h_test_teardown),
        cmocka_unit_test_teardown(test_refusals_logged_rate_limited, h_test_teardown),
        cmocka_unit_test_teardown(test_exposition, h_test_teardown),
        cmocka_unit_test_teardown(test_promtool_accepts_exposition, h_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
