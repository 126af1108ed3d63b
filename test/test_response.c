/*
 * test_response.c - what goes on the wire for a response (response.c):
 * standard headers, HEAD, 404/405 with Allow, the pre-built 500 after a
 * response was issued, 204/304 without a body or Content-Length, and the
 * host's own bodies for libnea's error answers (nea_config.error_bodies).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "e2e.h"

static void test_hello(void **state)
{
    h_fixture *f = *state;
    h_response r;
    char v[64];
    assert_int_equal(h_request(f, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
    assert_string_equal(r.body, "Hello, World!");
    assert_non_null(h_header(&r, "date", v, sizeof(v)));
    assert_true(strstr(v, " GMT") != NULL);
    assert_string_equal(h_header(&r, "content-length", v, sizeof(v)), "13");
    assert_string_equal(h_header(&r, "content-type", v, sizeof(v)), "text/plain");
    assert_null(h_header(&r, "connection", v, sizeof(v)));
}

/* The status line and Content-Length are formatted by hand: exact bytes
 * for one, several and no digits. */
static void test_status_line_and_lengths(void **state)
{
    h_fixture *f = *state;
    h_response r;
    static char raw[10203 + 128];
    char v[64];
    assert_int_equal(h_request(f, "GET /status/201 HTTP/1.1\r\nHost: x\r\n\r\n", &r), 201);
    assert_memory_equal(r.head, "HTTP/1.1 201 Created\r\n", 22);
    assert_string_equal(h_header(&r, "content-length", v, sizeof(v)), "4");
    assert_int_equal(
        h_request(f, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", &r), 200);
    assert_memory_equal(r.head, "HTTP/1.1 200 OK\r\n", 17);
    assert_string_equal(h_header(&r, "content-length", v, sizeof(v)), "0");
    snprintf(raw, sizeof(raw), "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10203\r\n\r\n");
    memset(raw + strlen(raw), 'a', 10203);
    raw[sizeof(raw) - 1] = '\0';
    assert_int_equal(h_request(f, raw, &r), 200);
    assert_string_equal(h_header(&r, "content-length", v, sizeof(v)), "10203");
    assert_int_equal(h_request(f, "GET /status/599 HTTP/1.1\r\nHost: x\r\n\r\n", &r), 599);
    assert_memory_equal(r.head, "HTTP/1.1 599 ", 13);
}

static void test_404_405_keep_connection(void **state)
{
    h_fixture *f = *state;
    h_response r;
    char v[64];
    int fd = h_connect(f);
    h_sends(f, fd, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 404);
    h_sends(f, fd, "DELETE /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 405);
    assert_string_equal(h_header(&r, "allow", v, sizeof(v)), "GET, POST, HEAD");
    /* Neither error needed the connection closed. */
    h_sends(f, fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    close(fd);
}

static void test_head(void **state)
{
    h_fixture *f = *state;
    h_response r;
    char v[64];
    int fd = h_connect(f);
    f->head_request = true;
    h_sends(f, fd, "HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(h_header(&r, "content-length", v, sizeof(v)), "13");
    f->head_request = false;
    /* No body bytes followed: the next response starts right away. */
    h_sends(f, fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "Hello, World!");
    close(fd);
}

static void test_oom_after_response_keeps_response(void **state)
{
    h_fixture *f = *state;
    h_response r;
    assert_int_equal(h_request(f, "GET /respond-then-oom HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
    assert_string_equal(r.body, "early");
}

/* --- bodyless statuses ------------------------------------------------------------ */

static void test_204_304_have_no_body(void **state)
{
    static const int statuses[] = {204, 304};
    h_fixture *f = *state;
    h_response r;
    char v[64];
    int fd = h_connect(f);
    for (size_t i = 0; i < 2; i++) {
        char req[64];
        snprintf(req, sizeof(req), "GET /status/%d HTTP/1.1\r\nHost: x\r\n\r\n", statuses[i]);
        /* The handler passes a 4-byte body to nea_respond. */
        h_expect(f, fd, req, statuses[i], &r);
        assert_null(h_header(&r, "content-length", v, sizeof(v)));
        assert_null(h_header(&r, "transfer-encoding", v, sizeof(v)));
        assert_int_equal(r.body_len, 0);
        /* No body bytes followed: the next response starts right away. */
        h_expect(f, fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 200, &r);
        assert_string_equal(r.body, "Hello, World!");
    }
    /* Control: another status carries the body and its length. */
    h_expect(f, fd, "GET /status/202 HTTP/1.1\r\nHost: x\r\n\r\n", 202, &r);
    assert_string_equal(h_header(&r, "content-length", v, sizeof(v)), "4");
    assert_string_equal(r.body, "body");
    close(fd);
}

/* A pre-built error answering HEAD announces its length and sends no
 * body (the next response on the connection starts right after the head);
 * an unknown error status maps to 400. */
static void test_error_for_head_has_no_body(void **state)
{
    h_fixture *f = *state;
    h_response r;
    int fd = h_connect(f);
    f->head_request = true;
    h_sends(
        f, fd,
        "HEAD /nope HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 404);
    assert_int_equal(r.body_len, 0);
    f->head_request = false;
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "Hello, World!");
    assert_int_equal(nea__prebuilt_for_status(999), NEA__PB_400);
    assert_int_equal(nea__prebuilt_status(nea__prebuilt_for_status(413)), 413);
    close(fd);
}

/* nea_respond refuses an informational status; the handler, left with no
 * response and nothing pending, gets the 500 of an unanswered request. */
static void test_informational_status_refused(void **state)
{
    h_fixture *f = *state;
    h_response r;
    nea_stats st;
    int fd = h_connect(f);
    h_sends(f, fd, "GET /status/100 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 500);
    h_stats(f, &st);
    assert_int_equal(st.unanswered, 1);
    assert_true(st.responses[5] >= 1);
    close(fd);
}

/* --- the host's error bodies --------------------------------------------------------- */

static const char nf_json[] = "{\"error\":\"not found\"}\n";
static const char busy_json[] = "{\"error\":\"busy, retry\"}\n";
static const nea_error_body json_errors[] = {
    {404, "application/json", nf_json, sizeof(nf_json) - 1},
    {405, "application/json", "{\"error\":\"method\"}", 18},
    {413, "application/json; charset=utf-8", "{\"error\":\"too large\"}", 21},
    {500, "application/json", "{\"error\":\"internal\"}", 20},
    {503, "application/json", busy_json, sizeof(busy_json) - 1},
    {504, "application/problem+json", "{\"error\":\"timeout\"}", 19},
    {400, "text/html", NULL, 0},
};

static void json_error_cfg(nea_config *c)
{
    c->error_bodies = json_errors;
    c->error_body_count = sizeof(json_errors) / sizeof(json_errors[0]);
    c->arena_count = 1;
    c->queue_timeout_ms = 10;
    c->response_timeout_ms = 300;
    c->retry_after_s = 7;
}

/* One answer: status, Content-Type and body as configured, Content-Length
 * the body's. */
static void check_answer(const h_response *r, int status, const char *ctype, const char *body)
{
    char v[160], len[32];
    assert_int_equal(r->status, status);
    assert_string_equal(h_header(r, "content-type", v, sizeof(v)), ctype);
    snprintf(len, sizeof(len), "%zu", strlen(body));
    assert_string_equal(h_header(r, "content-length", v, sizeof(v)), len);
    assert_int_equal(r->body_len, strlen(body));
    assert_memory_equal(r->body, body, strlen(body));
}

/* The host's bodies answer 404, 405, 413, the out-of-memory 500, 503 and
 * 504 exactly as libnea's own would (same Connection handling, Allow,
 * Retry-After, no body for HEAD), and the statuses it left out keep
 * libnea's text. */
static void test_error_bodies_json(void **state)
{
    h_fixture *f;
    h_response r;
    char v[64];
    int fd, busy;
    h_test_start(state, json_error_cfg);
    f = *state;
    assert_int_equal(nea_server_plan(f->srv)->error_bodies_bytes, 128); /* 124 rounded up to 64 */

    /* 404 and 405 keep the connection. */
    fd = h_connect(f);
    h_expect(f, fd, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404, &r);
    check_answer(&r, 404, "application/json", nf_json);
    assert_null(h_header(&r, "connection", v, sizeof(v)));
    h_expect(f, fd, "DELETE /hello HTTP/1.1\r\nHost: x\r\n\r\n", 405, &r);
    check_answer(&r, 405, "application/json", "{\"error\":\"method\"}");
    assert_string_equal(h_header(&r, "allow", v, sizeof(v)), "GET, POST, HEAD");
    /* HEAD: the announced length, no body; the next answer follows at once. */
    f->head_request = true;
    h_sends(f, fd, "HEAD /nope HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 404);
    assert_string_equal(h_header(&r, "content-length", v, sizeof(v)), "22");
    assert_int_equal(r.body_len, 0);
    f->head_request = false;
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "Hello, World!");
    /* The out-of-memory 500 keeps the connection too. */
    h_expect(f, fd, "GET /alloc/99999999 HTTP/1.1\r\nHost: x\r\n\r\n", 500, &r);
    check_answer(&r, 500, "application/json", "{\"error\":\"internal\"}");
    h_expect(f, fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 200, &r);
    close(fd);

    /* 413 from the head, and an empty 400 body: both close. */
    h_expect_close(f, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n", 413);
    assert_int_equal(
        h_request(f, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n", &r),
        413);
    check_answer(&r, 413, "application/json; charset=utf-8", "{\"error\":\"too large\"}");
    h_expect_close(f, "GET /hello HTTP/1.1\r\n\r\n", 400);
    assert_int_equal(h_request(f, "GET /hello HTTP/1.1\r\n\r\n", &r), 400);
    check_answer(&r, 400, "text/html", "");

    /* 503 (the only arena is busy) with its Retry-After, then the 504 of the
     * request that held it. */
    busy = h_get(f, "/sleep/5000");
    H_WAIT(f, h_arenas_in_use(f) == 1);
    assert_int_equal(h_request(f, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", &r), 503);
    check_answer(&r, 503, "application/json", busy_json);
    assert_string_equal(h_header(&r, "retry-after", v, sizeof(v)), "7");
    assert_int_equal(h_read(f, busy, &r, H_DEADLINE_MS), 504);
    check_answer(&r, 504, "application/problem+json", "{\"error\":\"timeout\"}");
    close(busy);

    /* Left out: libnea's own text. */
    assert_int_equal(h_request(f, "GET /hello HTTP/1.2\r\nHost: x\r\n\r\n", &r), 505);
    assert_string_equal(h_header(&r, "content-type", v, sizeof(v)), "text/plain");
    assert_string_equal(r.body, "HTTP Version Not Supported\n");
}

static void one_slot_json(nea_config *c)
{
    json_error_cfg(c);
    c->max_connections = 1;
}

/* The refusal for want of a slot (admission's reject path) sends the
 * host's 503 too. */
static void test_error_body_no_slot(void **state)
{
    h_fixture *f;
    h_response r;
    char v[64];
    int b, c;
    h_test_start(state, one_slot_json);
    f = *state;
    b = h_connect(f);
    H_WAIT(f, h_st(f).connections_open == 1);
    c = h_connect(f);
    assert_int_equal(h_read(f, c, &r, H_DEADLINE_MS), 503);
    check_answer(&r, 503, "application/json", busy_json);
    assert_string_equal(h_header(&r, "retry-after", v, sizeof(v)), "7");
    assert_string_equal(h_header(&r, "connection", v, sizeof(v)), "close");
    assert_int_equal(h_st(f).shed_no_slot, 1);
    close(b);
    close(c);
}

/* The copies live in the reservation, between the metrics records and the
 * arena descriptors (exactly where the plan put them), one set per worker;
 * the host's array may be gone once nea_server_new returned. */
static void test_error_bodies_copied_per_worker(void **state)
{
    nea_error_body bodies[2];
    char nf[32], busy[32];
    uv_loop_t loop;
    nea_config cfg;
    nea_server *s;
    (void)state;
    strcpy(nf, "{\"e\":404}");
    strcpy(busy, "{\"e\":503}");
    bodies[0] = (nea_error_body){404, "application/json", nf, strlen(nf)};
    bodies[1] = (nea_error_body){503, "application/json", busy, strlen(busy)};
    h_config(&cfg);
    cfg.workers = 2;
    cfg.error_bodies = bodies;
    cfg.error_body_count = 2;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(nea_server_new(&loop, &cfg, &s), 0);
    memset(nf, 'x', sizeof(nf));
    memset(bodies, 0, sizeof(bodies));
    for (unsigned i = 0; i < 2; i++) {
        nea_server *w = nea__server_worker(s, i);
        const nea__static_resp *a = &w->statics.at[NEA__PB_404];
        const char *metrics_end = (const char *)(w->metrics.routes + w->metrics.cap);
        assert_int_equal(a->body_len, 9);
        assert_memory_equal(a->body, "{\"e\":404}", 9);
        assert_memory_equal(w->statics.at[NEA__PB_503].body, "{\"e\":503}", 9);
        assert_true(strstr(a->head, "Content-Type: application/json\r\n") != NULL);
        /* Right after the (64-rounded) metrics block, inside this worker's slab. */
        assert_ptr_equal(a->body,
                         (const char *)w + (size_t)(metrics_end - (const char *)w + 63) / 64 * 64);
        assert_ptr_equal(w->statics.at[NEA__PB_503].body, a->body + 9);
    }
    assert_int_equal(nea_server_plan(s)->error_bodies_bytes, 64);
    assert_int_equal(nea_server_close(s, NULL, NULL), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_error_for_head_has_no_body, h_test_setup,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_informational_status_refused, h_test_setup,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_hello, h_test_setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_status_line_and_lengths, h_test_setup,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_404_405_keep_connection, h_test_setup,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_head, h_test_setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_oom_after_response_keeps_response, h_test_setup,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_204_304_have_no_body, h_test_setup, h_test_teardown),
        cmocka_unit_test_teardown(test_error_bodies_json, h_test_teardown),
        cmocka_unit_test_teardown(test_error_body_no_slot, h_test_teardown),
        cmocka_unit_test(test_error_bodies_copied_per_worker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
