/*
 * test_response.c - what goes on the wire for a response (response.c):
 * standard headers, HEAD, 404/405 with Allow, the pre-built 500 after a
 * response was issued, and 204/304 without a body or Content-Length.
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
