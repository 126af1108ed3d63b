/*
 * test_record.c - the per-request record (record.c) as the completion hook
 * sees it over real sockets: each request of a pipeline is counted with
 * its own bytes and its own times, starting at its own head, not at the
 * head of the request before it on the same connection; the refusal log
 * limits 400s and 503s each on its own.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "e2e.h"

#define SEEN_MAX 8

static nea_completion seen[SEEN_MAX];
static char seen_path[SEEN_MAX][64];
static unsigned seen_count;

static void on_complete(void *data, const nea_completion *c)
{
    unsigned i = seen_count++;
    (void)data;
    if (i < SEEN_MAX) {
        seen[i] = *c;
        snprintf(seen_path[i], sizeof(seen_path[i]), "%.*s", (int)c->path_len, c->path);
        seen[i].method = seen[i].path = NULL; /* valid only during the call */
        seen[i].peer = NULL;
    }
}

static void with_hook(nea_config *c)
{
    c->on_complete = on_complete;
    seen_count = 0;
}

/* The bytes of a response as the client read them. */
static size_t response_bytes(const h_response *r)
{
    return strlen(r->head) + r->body_len;
}

/* Two requests in one write: the second waits in the read buffer while the
 * first sleeps 300 ms. Its record starts when its own head is taken up:
 * granted an arena at once (queue_ns 0), a total far below the first one's,
 * and its own bytes in and out. */
static void test_pipelined_request_counts_from_its_own_head(void **state)
{
    static const char first[] = "GET /sleep/300 HTTP/1.1\r\nHost: x\r\n\r\n";
    static const char second[] = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
    char both[sizeof(first) + sizeof(second)];
    h_fixture *f;
    h_response r1, r2;
    int fd;

    h_test_start(state, with_hook);
    f = *state;
    snprintf(both, sizeof(both), "%s%s", first, second);
    fd = h_connect(f);
    h_sends(f, fd, both);
    assert_int_equal(h_read(f, fd, &r1, H_DEADLINE_MS), 200);
    assert_string_equal(r1.body, "slept");
    assert_int_equal(h_read(f, fd, &r2, H_DEADLINE_MS), 200);
    assert_string_equal(r2.body, "Hello, World!");
    H_WAIT(f, seen_count == 2);
    close(fd);

    assert_string_equal(seen_path[0], "/sleep/300");
    assert_string_equal(seen_path[1], "/hello");
    assert_int_equal(seen[0].bytes_in, strlen(first));
    assert_int_equal(seen[1].bytes_in, strlen(second));
    assert_int_equal(seen[0].bytes_out, response_bytes(&r1));
    assert_int_equal(seen[1].bytes_out, response_bytes(&r2));
    assert_int_equal(seen[0].queue_ns, 0);
    assert_int_equal(seen[1].queue_ns, 0);
    /* The first slept 300 ms in its handler; the second's time does not
     * include that wait. */
    assert_true(seen[0].total_ns >= seen[0].handler_ns);
    assert_true(seen[0].handler_ns >= 250u * 1000 * 1000);
    assert_true(seen[1].total_ns >= seen[1].handler_ns);
    assert_true(seen[1].total_ns < seen[0].total_ns / 2);
}

/* The refusal log keeps one rate limit per status: a 400 right after a
 * 503 still gets its line (each names its status, method and path). */
static void test_refusal_log_limits_each_status_apart(void **state)
{
    h_fixture *f;
    h_response r;
    int fd;

    h_test_start(state, NULL);
    f = *state;
    fd = h_connect(f);
    h_expect(f, fd, "GET /status/503 HTTP/1.1\r\nHost: x\r\n\r\n", 503, &r);
    close(fd);
    H_WAIT(f, strstr(f->log.all, "503 for GET /status/503") != NULL);
    h_expect_close(f, "GET /bad path HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    H_WAIT(f, strstr(f->log.all, "400 for ") != NULL);
    assert_true(t_log_has(&f->log, "503 for GET /status/503"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_pipelined_request_counts_from_its_own_head, h_test_teardown),
        cmocka_unit_test_teardown(test_refusal_log_limits_each_status_apart, h_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
