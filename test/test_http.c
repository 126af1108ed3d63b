/*
 * test_http.c - the HTTP/1.1 front end over real sockets: statuses, the head
 * guard (request smuggling shapes), framing, pipelining, HEAD,
 * 100-continue, chunked bodies, and requests split at every byte offset.
 */
#include "harness.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

static int setup(void **state)
{
    static h_fixture f;
    nea_config cfg;
    h_config(&cfg);
    h_start(&f, &cfg);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    h_stop(*state);
    return 0;
}

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

static void test_404_with_body_closes(void **state)
{
    h_fixture *f = *state;
    h_response r;
    int fd = h_connect(f);
    h_sends(f, fd, "POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 404);
    assert_true(strstr(r.head, "Connection: close") != NULL);
    assert_true(h_closed(f, fd, H_DEADLINE_MS));
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

static void test_request_data(void **state)
{
    h_fixture *f = *state;
    h_response r;
    assert_int_equal(
        h_request(f, "GET /hdr?a=1&b=2 HTTP/1.1\r\nHost: x\r\nx-TEST:  spaced value \r\n\r\n", &r),
        200);
    assert_string_equal(r.body, "spaced value|a=1&b=2");
    assert_int_equal(h_request(f, "GET /p/deep/er HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
    assert_string_equal(r.body, "deep/er");
    assert_int_equal(h_request(f, "GET /p HTTP/1.1\r\nHost: x\r\n\r\n", &r), 404);
    /* absolute-form targets route by their path */
    assert_int_equal(
        h_request(f, "GET http://example.com:80/p/abs?z=9 HTTP/1.1\r\nHost: example.com\r\n\r\n",
                  &r),
        200);
    assert_string_equal(r.body, "abs");
    assert_int_equal(
        h_request(f, "GET HTTP://example.com/hdr?q=2 HTTP/1.1\r\nHost: example.com\r\n\r\n", &r),
        200);
    assert_string_equal(r.body, "(none)|q=2");
    assert_int_equal(
        h_request(f, "GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n", &r),
        404); /* path "/" has no route here */
}

/* Statuses that are answered and followed by a close. */
static void expect_close(h_fixture *f, const char *raw, int status)
{
    h_response r;
    int fd = h_connect(f);
    h_sends(f, fd, raw);
    if (h_read(f, fd, &r, H_DEADLINE_MS) != status) {
        fail_msg("expected %d for %s", status, raw);
    }
    if (strstr(r.head, "Connection: close") == NULL) {
        fail_msg("no Connection: close on %d for %s", status, raw);
    }
    if (!h_closed(f, fd, H_DEADLINE_MS)) {
        fail_msg("connection left open after %d for %s", status, raw);
    }
    close(fd);
}

static void test_error_statuses(void **state)
{
    h_fixture *f = *state;
    char big[8192];

    expect_close(f, "GARBAGE\r\n\r\n", 400);
    expect_close(f, "BREW /hello HTTP/1.1\r\nHost: x\r\n\r\n", 501);
    expect_close(f, "GET /hello HTTP/2.0\r\nHost: x\r\n\r\n", 505);
    expect_close(f, "GET /hello HTTP/1.2\r\nHost: x\r\n\r\n", 505);
    expect_close(f, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                 501);
    expect_close(f, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 40000\r\n\r\n", 413);

    /* 414: the request line alone does not fit the read buffer. */
    memset(big, 'a', sizeof(big));
    memcpy(big, "GET /", 5);
    big[sizeof(big) - 1] = '\0';
    expect_close(f, big, 414);

    /* 431: the request line fits, the fields do not. */
    {
        char head[6000];
        size_t n = (size_t)snprintf(head, sizeof(head), "GET /hello HTTP/1.1\r\nHost: x\r\n");
        while (n < 5000) {
            n += (size_t)snprintf(head + n, sizeof(head) - n, "X-Filler: %s\r\n",
                                  "0123456789012345678901234567890123456789");
        }
        snprintf(head + n, sizeof(head) - n, "\r\n");
        expect_close(f, head, 431);
    }
}

static void test_oom_500_keeps_connection(void **state)
{
    h_fixture *f = *state;
    h_response r;
    nea_stats st;
    int fd = h_connect(f);
    h_sends(f, fd, "GET /alloc/100000000 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 500);
    h_sends(f, fd, "GET /alloc/1000 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    close(fd);
    h_stats(f, &st);
    assert_int_equal(st.oom_500, 1);
    assert_true(strstr(f->log, "GET /alloc/100000000 asked 100000000 bytes") != NULL);
}

static void test_oom_after_response_keeps_response(void **state)
{
    h_fixture *f = *state;
    h_response r;
    assert_int_equal(h_request(f, "GET /respond-then-oom HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
    assert_string_equal(r.body, "early");
}

/* Each request-smuggling shape: 400, Connection: close, and the close. */
static void test_smuggling_shapes(void **state)
{
    static const char *const bad[] = {
        /* TE with CL */
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        "0\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
        "0\r\n\r\n",
        /* TE not ending in chunked, TE twice, TE in HTTP/1.0 */
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        /* conflicting or malformed CL */
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc",
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n",
        /* obs-fold, bare LF, bare CR */
        "GET /hello HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
        "GET /hello HTTP/1.1\r\n Host: x\r\n\r\n",
        "GET /hello HTTP/1.1\nHost: x\n\n",
        "GET /hello HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n",
        "GET /hello HTTP/1.1\r\nHost: x\rX-A: 1\r\n\r\n",
        "GET /hello HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
        /* control characters and NUL in values or names */
        "GET /hello HTTP/1.1\r\nHost: x\r\nX-A: a\x01z\r\n\r\n",
        "GET /hello HTTP/1.1\r\nHost: x\r\nX-A: a\x7fz\r\n\r\n",
        "GET /hello HTTP/1.1\r\nHost: x\r\nX\x02"
        "A: 1\r\n\r\n",
        /* whitespace before the colon, empty name, no colon */
        "GET /hello HTTP/1.1\r\nHost : x\r\n\r\n",
        "GET /hello HTTP/1.1\r\nHost\t: x\r\n\r\n",
        "GET /hello HTTP/1.1\r\nHost: x\r\n: empty\r\n\r\n",
        "GET /hello HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n",
        /* request line not exactly "method SP target SP version" */
        "GET  /hello HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /hello  HTTP/1.1\r\nHost: x\r\n\r\n",
        /* Host missing or duplicated */
        "GET /hello HTTP/1.1\r\n\r\n",
        "GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET /hello HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n",
    };
    h_fixture *f = *state;
    nea_stats st;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        expect_close(f, bad[i], 400);
    }
    {
        /* NUL needs an explicit length. */
        static const char nul[] = "GET /hello HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n";
        h_response r;
        int fd = h_connect(f);
        h_send(f, fd, nul, sizeof(nul) - 1);
        assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 400);
        assert_true(h_closed(f, fd, H_DEADLINE_MS));
        close(fd);
    }
    h_stats(f, &st);
    assert_int_equal(st.rejected_400, sizeof(bad) / sizeof(bad[0]) + 1);
}

static void test_leading_empty_line_tolerated(void **state)
{
    h_fixture *f = *state;
    h_response r;
    assert_int_equal(h_request(f, "\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
}

static void test_pipelining_in_order(void **state)
{
    h_fixture *f = *state;
    h_response r;
    int fd = h_connect(f);
    h_sends(f, fd,
            "GET /p/one HTTP/1.1\r\nHost: x\r\n\r\n"
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\ntwo"
            "GET /sleep/30 HTTP/1.1\r\nHost: x\r\n\r\n"
            "GET /p/four HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "one");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "two");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "slept");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "four");
    close(fd);
}

/* Reads and discards one response whose body is exactly body_len bytes. */
static void drain_response(h_fixture *f, int fd, size_t body_len)
{
    char buf[65536], *hend;
    size_t have = 0, total = 0;
    uint64_t end = h_now_ms() + H_DEADLINE_MS;
    for (;;) {
        ssize_t n = recv(fd, buf + have, have < 4096 ? 4096 - have : 0, MSG_PEEK);
        assert_true(n > 0 || (n < 0 && h_now_ms() < end));
        if (n > 0 && (hend = memmem(buf, (size_t)n, "\r\n\r\n", 4)) != NULL) {
            total = (size_t)(hend - buf) + 4 + body_len;
            break;
        }
        h_pump(f, 5, NULL);
    }
    while (total > 0 && h_now_ms() < end) {
        ssize_t n = recv(fd, buf, total < sizeof(buf) ? total : sizeof(buf), 0);
        if (n > 0) {
            total -= (size_t)n;
        } else {
            h_pump(f, 1, NULL);
        }
    }
    assert_int_equal(total, 0);
}

static void test_half_close_answers_buffered_requests(void **state)
{
    /* The first response (8 MiB) is still being written when the client
     * shuts down its sending side: the requests behind it were received
     * whole, so they are answered too, then the connection closes. */
    h_fixture *f = *state;
    h_response r;
    int fd = h_connect(f);
    h_sends(f, fd,
            "GET /big HTTP/1.1\r\nHost: x\r\n\r\nGET /p/2 HTTP/1.1\r\nHost: x\r\n\r\n"
            "GET /p/3 HTTP/1.1\r\nHost: x\r\n\r\n");
    h_pump(f, 20, NULL);
    shutdown(fd, SHUT_WR);
    h_pump(f, 20, NULL);
    drain_response(f, fd, h_big_len);
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "2");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "3");
    assert_true(h_closed(f, fd, H_DEADLINE_MS));
    close(fd);
}

static void test_pipeline_flood_is_bounded(void **state)
{
    /* Far more pipelined requests than the read buffer holds: all answered,
     * in order, while the server never buffers more than read_buffer_size. */
    h_fixture *f = *state;
    static char reqs[200 * 40];
    h_response r;
    size_t n = 0;
    int fd = h_connect(f);
    for (int i = 0; i < 200; i++) {
        n += (size_t)snprintf(reqs + n, sizeof(reqs) - n, "GET /p/%03d HTTP/1.1\r\nHost: x\r\n\r\n",
                              i);
    }
    h_send(f, fd, reqs, n);
    for (int i = 0; i < 200; i++) {
        char want[16];
        snprintf(want, sizeof(want), "%03d", i);
        assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
        assert_string_equal(r.body, want);
    }
    close(fd);
}

static void test_http10_keepalive_rules(void **state)
{
    h_fixture *f = *state;
    h_response r;
    char v[64];
    int fd;

    fd = h_connect(f);
    h_sends(f, fd, "GET /hello HTTP/1.0\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(h_header(&r, "connection", v, sizeof(v)), "close");
    assert_true(h_closed(f, fd, H_DEADLINE_MS));
    close(fd);

    fd = h_connect(f);
    h_sends(f, fd, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(h_header(&r, "connection", v, sizeof(v)), "keep-alive");
    h_sends(f, fd, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    close(fd);

    fd = h_connect(f);
    h_sends(f, fd, "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(h_header(&r, "connection", v, sizeof(v)), "close");
    assert_true(h_closed(f, fd, H_DEADLINE_MS));
    close(fd);
}

static void test_expect_continue(void **state)
{
    h_fixture *f = *state;
    h_response r;
    int fd = h_connect(f);
    h_sends(f, fd,
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 100);
    h_sends(f, fd, "hello");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "hello");
    close(fd);

    /* Too large: 413 straight away, no 100. */
    fd = h_connect(f);
    h_sends(
        f, fd,
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999\r\nExpect: 100-continue\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 413);
    close(fd);
}

static void test_chunked_body(void **state)
{
    h_fixture *f = *state;
    h_response r;
    assert_int_equal(
        h_request(f,
                  "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\n",
                  &r),
        200);
    assert_string_equal(r.body, "hello, world");
}

static void test_chunked_too_large(void **state)
{
    h_fixture *f = *state;
    static char body[40000];
    size_t n;
    int fd = h_connect(f);
    h_response r;
    h_sends(f, fd, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    n = (size_t)snprintf(body, sizeof(body), "%x\r\n", 36000);
    memset(body + n, 'z', 36000);
    h_send(f, fd, body, n + 36000);
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 413);
    assert_true(h_closed(f, fd, H_DEADLINE_MS));
    close(fd);
}

static void test_bad_chunk_framing(void **state)
{
    h_fixture *f = *state;
    expect_close(
        f, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n", 400);
}

/* Every split point of several valid requests gives the same answer. */
static void test_split_at_every_offset(void **state)
{
    static const struct {
        const char *req;
        const char *body;
    } cases[] = {
        {"GET /hdr?q=1 HTTP/1.1\r\nHost: example\r\nX-Test: split\r\nAccept: */*\r\n\r\n",
         "split|q=1"},
        {"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world", "hello world"},
        {"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
         "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
         "abcde"},
    };
    h_fixture *f = *state;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const char *req = cases[c].req;
        size_t len = strlen(req);
        int fd = h_connect(f);
        for (size_t i = 1; i < len; i++) {
            h_response r;
            h_send(f, fd, req, i);
            h_pump(f, 1, NULL);
            h_send(f, fd, req + i, len - i);
            if (h_read(f, fd, &r, H_DEADLINE_MS) != 200 || strcmp(r.body, cases[c].body) != 0) {
                fail_msg("case %zu split at %zu: status %d body '%s'", c, i, r.status, r.body);
            }
        }
        close(fd);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hello, setup, teardown),
        cmocka_unit_test_setup_teardown(test_404_405_keep_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_404_with_body_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_statuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oom_500_keeps_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oom_after_response_keeps_response, setup, teardown),
        cmocka_unit_test_setup_teardown(test_smuggling_shapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leading_empty_line_tolerated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelining_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_close_answers_buffered_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_flood_is_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http10_keepalive_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expect_continue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_chunk_framing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_at_every_offset, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
