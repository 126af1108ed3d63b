/*
 * test_router.c - the route table (router.c): every registration refusal,
 * with its code and its logged reason; the accepted edge cases reachable by
 * real requests; precedence among overlapping routes; the path tail.
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

/* --- registration --------------------------------------------------------- */

static void r_tail(nea_req *req, void *d)
{
    const char *t = nea_req_path_tail(req);
    char *s = nea_printf(req, "%s[%s]", (const char *)d, t != NULL ? t : "(null)");
    nea_respond(req, 200, "text/plain", s, strlen(s));
}

static void sixteen_routes(nea_config *c)
{
    c->max_routes = 16;
}

/* Registration fails with code, and the reason is logged (one more line,
 * at error level, containing why). */
static void expect_refused(h_fixture *f, const char *method, const char *path, nea_handler_fn fn,
                           int code, const char *why)
{
    int before = f->log.count, rc = nea_server_route(f->srv, method, path, fn, NULL);
    if (rc != code || !t_log_has(&f->log, why)) {
        print_error("%s %.40s: got %d (%s), want %d (%s)\n", method != NULL ? method : "(null)",
                    path != NULL ? path : "(null)", rc, nea_err_name(rc), code, nea_err_name(code));
    }
    assert_int_equal(rc, code);
    assert_int_equal(f->log.count, before + 1);
    assert_int_equal(f->log.level, NEA_LOG_ERROR);
    assert_true(t_log_has(&f->log, why));
}

/* The longest path a GET route may have: "GET " path " HTTP/1.0\r\n\r\n" is
 * exactly read_buffer_size bytes. */
static char longest[4096];
static char too_long[4096];

static void test_route_refusals(void **state)
{
    h_fixture *f;
    size_t max;
    h_test_start(state, sixteen_routes);
    f = *state;
    max = f->cfg.read_buffer_size - strlen("GET  HTTP/1.0\r\n\r\n");

    expect_refused(f, "GET", "/hello", r_tail, NEA_EROUTE_DUP, "GET /hello is already registered");
    expect_refused(f, "get", "/lower", r_tail, NEA_EROUTE_METHOD, "\"get\" is not an uppercase");
    expect_refused(f, "FOO", "/foo", r_tail, NEA_EROUTE_METHOD, "\"FOO\" is answered 501");
    expect_refused(f, "", "/empty", r_tail, NEA_EROUTE_METHOD, "answered 501");
    expect_refused(f, "GET", "hello", r_tail, NEA_EROUTE_PATH, "does not start with '/'");
    expect_refused(f, "GET", "", r_tail, NEA_EROUTE_PATH, "does not start with '/'");
    memset(too_long, 'a', max + 1);
    too_long[0] = '/';
    too_long[max + 1] = '\0';
    expect_refused(f, "GET", too_long, r_tail, NEA_EROUTE_PATH, "cannot fit a request head");
    expect_refused(f, "GET", "/nofn", NULL, UV_EINVAL, "needs a method, a path and a handler");
    expect_refused(f, NULL, "/nomethod", r_tail, UV_EINVAL, "needs a method");
    expect_refused(f, "GET", NULL, r_tail, UV_EINVAL, "needs a method");
    /* A readiness route is answered by libnea: a handler for it is a mistake. */
    assert_int_equal(nea_server_route_flags(f->srv, "GET", "/rdy", r_tail, NULL, NEA_ROUTE_READY),
                     UV_EINVAL);
    assert_true(t_log_has(&f->log, "none for NEA_ROUTE_READY"));
    assert_int_equal(nea_server_route_flags(f->srv, "GET", "/x", r_tail, NULL, 1u << 7), UV_EINVAL);
    assert_true(t_log_has(&f->log, "unknown route flags 0x80"));

    /* The accepted shapes: a method with a '-' the parser knows, and a path
     * of exactly the maximum length. */
    memset(longest, 'b', max);
    longest[0] = '/';
    longest[max] = '\0';
    assert_int_equal(nea_server_route(f->srv, "M-SEARCH", "/ms", r_tail, "ms"), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", longest, r_tail, "long"), 0);
    /* 11 test routes + 2: fill the table to 16, then one more is refused. */
    assert_int_equal(nea_server_route(f->srv, "PUT", "/f1", r_tail, ""), 0);
    assert_int_equal(nea_server_route(f->srv, "PUT", "/f2", r_tail, ""), 0);
    assert_int_equal(nea_server_route(f->srv, "PUT", "/f3", r_tail, ""), 0);
    assert_int_equal(f->srv->router.count, 16);
    expect_refused(f, "PUT", "/f5", r_tail, NEA_EROUTES, "route table full (max_routes 16)");
    /* A refused registration changed nothing. */
    assert_int_equal(f->srv->router.count, 16);
}

static void test_accepted_routes_are_reachable(void **state)
{
    h_fixture *f;
    h_response r;
    char req[4200];
    size_t max, n;
    h_test_start(state, sixteen_routes);
    f = *state;
    max = f->cfg.read_buffer_size - strlen("GET  HTTP/1.0\r\n\r\n");
    memset(longest, 'b', max);
    longest[0] = '/';
    longest[max] = '\0';
    assert_int_equal(nea_server_route(f->srv, "M-SEARCH", "/ms", r_tail, "ms"), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", longest, r_tail, "long"), 0);

    assert_int_equal(h_request(f, "M-SEARCH /ms HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
    assert_string_equal(r.body, "ms[]");
    /* The longest path in a head of exactly read_buffer_size bytes. */
    n = (size_t)snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\n\r\n", longest);
    assert_int_equal(n, f->cfg.read_buffer_size);
    assert_int_equal(h_request(f, req, &r), 200);
    assert_string_equal(r.body, "long[]");
}

/* --- precedence with overlapping routes ------------------------------------------ */

static void test_overlapping_prefixes(void **state)
{
    static const struct {
        const char *path, *body;
    } cases[] = {
        {"/a/b/c", "exact[]"},     /* exact beats both prefixes */
        {"/a/b/x", "a/b/[x]"},     /* the longer prefix beats the shorter */
        {"/a/b/", "a/b/[]"},       /* the prefix itself */
        {"/a/b/c/d", "a/b/[c/d]"}, /* past the exact route: the longest prefix */
        {"/a/x", "a/[x]"},         /* only the shorter prefix matches */
        {"/a/b", "a/[b]"},         /* "/a/b" is not under "/a/b/" */
        {"/z/y/w", "z/y/[w]"},     /* same, registered longest first */
        {"/z/w", "z/[w]"},
    };
    h_fixture *f;
    h_response r;
    char req[128];
    h_test_start(state, sixteen_routes);
    f = *state;
    /* Shorter first here, longer first below: order must not matter. */
    assert_int_equal(nea_server_route(f->srv, "GET", "/a/", r_tail, "a/"), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/a/b/", r_tail, "a/b/"), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/a/b/c", r_tail, "exact"), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/z/y/", r_tail, "z/y/"), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/z/", r_tail, "z/"), 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", cases[i].path);
        if (h_request(f, req, &r) != 200 || strcmp(r.body, cases[i].body) != 0) {
            fail_msg("%s: status %d body '%s', want '%s'", cases[i].path, r.status, r.body,
                     cases[i].body);
        }
    }
}

static void test_path_tail_exact_is_empty(void **state)
{
    h_fixture *f;
    h_response r;
    h_test_start(state, sixteen_routes);
    f = *state;
    assert_int_equal(nea_server_route(f->srv, "GET", "/exact", r_tail, "exact"), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/pre/", r_tail, "pre"), 0);
    /* "" (not NULL) on an exact route, even with a query. */
    assert_int_equal(h_request(f, "GET /exact?q=1 HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
    assert_string_equal(r.body, "exact[]");
    /* The tail on a prefix route, without the query. */
    assert_int_equal(h_request(f, "GET /pre/one/two?q=1 HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
    assert_string_equal(r.body, "pre[one/two]");
    assert_int_equal(h_request(f, "GET /pre/ HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
    assert_string_equal(r.body, "pre[]");
}

/* --- percent-encoded paths ----------------------------------------------------- */

static void test_percent_encoded_paths(void **state)
{
    h_fixture *f;
    h_response r;
    char allow[64];
    h_test_start(state, sixteen_routes);
    f = *state;
    assert_int_equal(nea_server_route(f->srv, "GET", "/files%2Fx", r_tail, "slash"), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/100%25", r_tail, "pct"), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/caf\xc3\xa9", r_tail, "cafe"), 0);
    expect_refused(f, "GET", "/a%41", r_tail, NEA_EROUTE_PATH, "other than %2F, %25 or %00");
    expect_refused(f, "GET", "/a%", r_tail, NEA_EROUTE_PATH, "other than %2F, %25 or %00");

    /* Escapes of ordinary characters are decoded for routing. */
    assert_int_equal(h_request(f, "GET /hel%6co HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
    assert_string_equal(r.body, "Hello, World!");
    assert_int_equal(h_request(f, "GET /%68%65%6C%6C%6F HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
    assert_int_equal(h_request(f, "GET /caf%C3%A9 HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
    assert_string_equal(r.body, "cafe[]");
    /* 405 and its Allow list see the same path. */
    assert_int_equal(h_request(f, "DELETE /hel%6co HTTP/1.1\r\nHost: x\r\n\r\n", &r), 405);
    assert_non_null(h_header(&r, "Allow", allow, sizeof(allow)));
    assert_non_null(strstr(allow, "GET"));
    assert_non_null(strstr(allow, "POST"));
    /* A prefix matched through an escape: the tail starts after it in the
     * raw path, still encoded. */
    assert_int_equal(h_request(f, "GET /%70/a%20b?q HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
    assert_string_equal(r.body, "a%20b");
    /* An encoded slash is never a separator, and a separator never an
     * encoded slash. */
    assert_int_equal(h_request(f, "GET /p%2Fx HTTP/1.1\r\nHost: x\r\n\r\n", &r), 404);
    assert_int_equal(h_request(f, "GET /files%2fx HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
    assert_string_equal(r.body, "slash[]");
    assert_int_equal(h_request(f, "GET /files/x HTTP/1.1\r\nHost: x\r\n\r\n", &r), 404);
    /* An encoded '%' stays encoded: decoded once, never twice. */
    assert_int_equal(h_request(f, "GET /100%25 HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
    assert_string_equal(r.body, "pct[]");
    assert_int_equal(h_request(f, "GET /100%2525 HTTP/1.1\r\nHost: x\r\n\r\n", &r), 404);
    /* A malformed escape never reaches routing: the head guard's 400. */
    assert_int_equal(h_request(f, "GET /hel%6 HTTP/1.1\r\nHost: x\r\n\r\n", &r), 400);
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

static void r_none(nea_req *req, void *d)
{
    (void)req;
    (void)d;
}

/* "/" is an exact route, not a catch-all; Allow names each method once. */
static void test_root_is_exact_and_allow_lists_once(void **state)
{
    nea__route table[4];
    nea__router r;
    const nea__route *found;
    char why[128], allow[96];
    size_t n;
    (void)state;
    nea__router_init(&r, table, 4, 4096);
    assert_int_equal(nea__router_add(&r, "GET", "/", r_none, NULL, 0, why, sizeof(why)), 0);
    assert_int_equal(nea__route_find(&r, "GET", 3, "/", 1, &found), NEA__ROUTE_FOUND);
    assert_int_equal(nea__route_find(&r, "GET", 3, "/x", 2, &found), NEA__ROUTE_NO_PATH);
    assert_int_equal(nea__router_add(&r, "GET", "/a", r_none, NULL, 0, why, sizeof(why)), 0);
    assert_int_equal(nea__router_add(&r, "HEAD", "/a", r_none, NULL, 0, why, sizeof(why)), 0);
    n = nea__route_allow(&r, "/a", 2, allow, sizeof(allow));
    allow[n] = '\0';
    assert_string_equal(allow, "Allow: GET, HEAD\r\n");
}

/* Lookup by the path's second byte (router.c's chains) finds the same
 * route a scan of every route would: routes sharing that byte, registered
 * in any order, exact against prefix, the root, a copy of the table (as
 * workers get), and encoded paths (which do scan every route). */
static void test_lookup_by_second_byte_matches_a_full_scan(void **state)
{
    static nea__route table[16], copy[16];
    static const char *const paths[] = {"/a/",  "/ab", "/abc/", "/a/b/", "/b",
                                        "/abc", "/",   "/bb/",  "/a"};
    static const struct {
        const char *path;
        int want; /* index into paths, -1: no route */
    } cases[] = {
        {"/", 6},      {"/a", 8},      {"/a/", 0},     {"/a/x", 0},    {"/a/b/c", 3},
        {"/ab", 1},    {"/abc", 5},    {"/abc/", 2},   {"/abc/d", 2},  {"/abd", -1},
        {"/b", 4},     {"/bb/x", 7},   {"/c", -1},     {"/%61b", 1},   {"/a%2fb", -1},
    };
    nea__router r, w;
    const nea__route *out;
    char why[128];
    (void)state;
    nea__router_init(&r, table, 16, 4096);
    nea__router_init(&w, copy, 16, 4096);
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        assert_int_equal(nea__router_add(&r, "GET", paths[i], r_tail, (void *)paths[i], 0, why,
                                         sizeof(why)),
                         0);
    }
    nea__router_copy(&w, &r);
    for (int pass = 0; pass < 2; pass++) {
        const nea__router *t = pass == 0 ? &r : &w;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            nea__route_result res =
                nea__route_find(t, "GET", 3, cases[i].path, strlen(cases[i].path), &out);
            if (cases[i].want < 0) {
                if (res == NEA__ROUTE_FOUND) {
                    fail_msg("%s: found %s, wanted none", cases[i].path, out->path);
                }
            } else if (res != NEA__ROUTE_FOUND ||
                       strcmp(out->path, paths[cases[i].want]) != 0) {
                fail_msg("%s: found %s, wanted %s", cases[i].path,
                         res == NEA__ROUTE_FOUND ? out->path : "none", paths[cases[i].want]);
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup_by_second_byte_matches_a_full_scan),
        cmocka_unit_test(test_root_is_exact_and_allow_lists_once),
        cmocka_unit_test_teardown(test_route_refusals, h_test_teardown),
        cmocka_unit_test_teardown(test_accepted_routes_are_reachable, h_test_teardown),
        cmocka_unit_test_teardown(test_overlapping_prefixes, h_test_teardown),
        cmocka_unit_test_teardown(test_path_tail_exact_is_empty, h_test_teardown),
        cmocka_unit_test_teardown(test_percent_encoded_paths, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_request_data, h_test_setup, h_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
