/*
 * handlers.c - see handlers.h.
 */
#include "handlers.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

unsigned t_defers_run;
size_t t_big_len = 8u << 20;
static char *big_body;

static void r_hello(nea_req *req, void *d)
{
    (void)d;
    nea_respond(req, 200, "text/plain", "Hello, World!", 13);
}

static void r_echo(nea_req *req, void *d)
{
    size_t n;
    const char *b = nea_req_body(req, &n);
    (void)d;
    nea_respond(req, 200, "application/octet-stream", b, n);
}

static void r_hdr(nea_req *req, void *d)
{
    const char *v = nea_req_header(req, "x-test");
    char *s = nea_printf(req, "%s|%s", v != NULL ? v : "(none)", nea_req_query(req));
    (void)d;
    nea_respond(req, 200, "text/plain", s, strlen(s));
}

static void r_prefix(nea_req *req, void *d)
{
    const char *t = nea_req_path_tail(req);
    (void)d;
    nea_respond(req, 200, "text/plain", t, strlen(t));
}

static void r_alloc(nea_req *req, void *d)
{
    size_t n = (size_t)strtoull(nea_req_path_tail(req), NULL, 10);
    char *p = nea_alloc(req, n);
    (void)d;
    memset(p, 1, n);
    nea_respond(req, 200, "text/plain", "ok", 2);
}

static void count_defer(void *arg)
{
    (void)arg;
    t_defers_run++;
}

static void sleep_done(nea_req *req, void *arg)
{
    (void)arg;
    nea_respond(req, 200, "text/plain", "slept", 5);
}

static void on_sleep(uv_timer_t *t)
{
    nea_req_run(t->data, sleep_done, NULL);
}

static void r_sleep(nea_req *req, void *d)
{
    uv_timer_t *t = nea_req_timer(req);
    (void)d;
    assert_int_equal(nea_req_defer(req, count_defer, NULL), 0);
    t->data = req;
    uv_timer_start(t, on_sleep, strtoull(nea_req_path_tail(req), NULL, 10), 0);
}

/* The server's Prometheus text (data: the server), measured and then
 * formatted into the arena. With workers the others go on counting between
 * the two calls, so the text may have grown: a little room to spare, and
 * measured again on a miss. 507 when it does not fit the arena. */
void t_metrics(nea_req *req, void *d)
{
    size_t cap = 0, len = nea_server_metrics_text(d, NULL, 0);
    char *buf = NULL;
    while (len >= cap) {
        cap = len + len / 16 + 1;
        buf = nea_try_alloc(req, cap);
        if (buf == NULL) {
            nea_respond_static(req, 507, "text/plain", "too big", 7);
            return;
        }
        len = nea_server_metrics_text(d, buf, cap);
    }
    nea_respond_static(req, 200, "text/plain; version=0.0.4", buf, len);
}

static void r_big(nea_req *req, void *d)
{
    (void)d;
    nea_respond_static(req, 200, "application/octet-stream", big_body, t_big_len);
}

static void r_respond_then_oom(nea_req *req, void *d)
{
    (void)d;
    nea_respond(req, 200, "text/plain", "early", 5);
    (void)nea_alloc(req, SIZE_MAX / 2);
}

static void r_status(nea_req *req, void *d)
{
    int status = atoi(nea_req_path_tail(req));
    (void)d;
    nea_respond(req, status, "text/plain", "body", 4);
}

void t_handlers_reset(void)
{
    t_defers_run = 0;
    if (big_body == NULL) {
        big_body = malloc(t_big_len);
        memset(big_body, 'b', t_big_len);
    }
}

void t_routes_add(nea_server *s)
{
    assert_int_equal(nea_server_route(s, "GET", "/hello", r_hello, NULL), 0);
    assert_int_equal(nea_server_route(s, "POST", "/hello", r_hello, NULL), 0);
    assert_int_equal(nea_server_route(s, "POST", "/echo", r_echo, NULL), 0);
    assert_int_equal(nea_server_route(s, "GET", "/hdr", r_hdr, NULL), 0);
    assert_int_equal(nea_server_route(s, "GET", "/p/", r_prefix, NULL), 0);
    assert_int_equal(nea_server_route(s, "GET", "/alloc/", r_alloc, NULL), 0);
    assert_int_equal(nea_server_route(s, "GET", "/sleep/", r_sleep, NULL), 0);
    assert_int_equal(nea_server_route(s, "GET", "/big", r_big, NULL), 0);
    assert_int_equal(nea_server_route(s, "GET", "/respond-then-oom", r_respond_then_oom, NULL), 0);
    assert_int_equal(nea_server_route(s, "GET", "/status/", r_status, NULL), 0);
    assert_int_equal(nea_server_route_flags(s, "GET", "/metrics", t_metrics, s, NEA_ROUTE_EXEMPT),
                     0);
}
