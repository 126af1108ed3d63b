/*
 * test_url.c - percent-encoding (url.c, and urlreq.c for a request):
 * strict decoding into a buffer, in place and into a request's arena (both
 * allocation tiers, exhaustion included), query parameters found by
 * decoded name and iterated, the routing view of a path and where a prefix
 * route's tail starts in the raw path, and nea_query_param answering real
 * requests.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "e2e.h"
#include "unit.h"
#include "url.h"

/* --- decoding into a buffer ---------------------------------------------------- */

typedef struct decode_case {
    const char *in;
    unsigned flags;
    int rc;
    const char *out; /* when rc == 0 */
    size_t out_len;
} decode_case;

static void test_decode_table(void **state)
{
    static const decode_case cases[] = {
        {"", 0, 0, "", 0},
        {"abc", 0, 0, "abc", 3},
        {"%41", 0, 0, "A", 1},
        {"%4a%4A", 0, 0, "JJ", 2},
        {"a+b", 0, 0, "a+b", 3},
        {"a+b", NEA_DECODE_PLUS, 0, "a b", 3},
        {"%2B", NEA_DECODE_PLUS, 0, "+", 1},
        {"%2541", 0, 0, "%41", 3}, /* one round only */
        {"%C3%A9t%C3%A9", 0, 0, "\xc3\xa9t\xc3\xa9", 5},
        {"%2F..%2f", 0, 0, "/../", 4},
        {"%", 0, UV_EINVAL, NULL, 0},
        {"%4", 0, UV_EINVAL, NULL, 0},
        {"a%", 0, UV_EINVAL, NULL, 0},
        {"%zz", 0, UV_EINVAL, NULL, 0},
        {"%4g", 0, UV_EINVAL, NULL, 0},
        {"%g4", 0, UV_EINVAL, NULL, 0},
        {"100%", NEA_DECODE_PLUS, UV_EINVAL, NULL, 0},
        {"%00", 0, UV_EINVAL, NULL, 0},
        {"a%00b", NEA_DECODE_NUL, 0, "a\0b", 3},
        {"x", 0x4, UV_EINVAL, NULL, 0}, /* unknown flag */
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const decode_case *c = &cases[i];
        char out[32];
        size_t n = 999;
        int rc = nea_url_decode_into(out, c->in, strlen(c->in), c->flags, &n);
        if (rc != c->rc) {
            print_error("\"%s\" flags %u: rc %d, want %d\n", c->in, c->flags, rc, c->rc);
        }
        assert_int_equal(rc, c->rc);
        if (rc == 0) {
            assert_int_equal(n, c->out_len);
            assert_memory_equal(out, c->out, n);
            assert_int_equal(out[n], '\0');
        }
    }
    assert_int_equal(nea_url_decode_into(NULL, "a", 1, 0, NULL), UV_EINVAL);
    assert_int_equal(nea_url_decode_into((char[1]){0}, NULL, 0, 0, NULL), 0);
}

/* Every byte value, escaped with upper- and lower-case hex, decodes to
 * itself; in place, so the output overwrites the input as it goes. */
static void test_decode_every_byte_in_place(void **state)
{
    char buf[256 * 6 + 1], want[256];
    size_t len = 0, n = 0;
    (void)state;
    for (unsigned b = 0; b < 256; b++) {
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, b % 2 ? "%%%02X" : "%%%02x", b);
        want[b] = (char)b;
    }
    assert_int_equal(nea_url_decode_into(buf, buf, len, 0, &n), UV_EINVAL); /* %00 first */
    len = 0;
    for (unsigned b = 0; b < 256; b++) {
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, b % 2 ? "%%%02X" : "%%%02x", b);
    }
    assert_int_equal(nea_url_decode_into(buf, buf, len, NEA_DECODE_NUL, &n), 0);
    assert_int_equal(n, 256);
    assert_memory_equal(buf, want, 256);
}

/* --- decoding into the arena --------------------------------------------------- */

typedef struct arena_probe {
    int step;
    int rc, rc_try;
    char *out;
    size_t out_len;
    size_t used_before, used_after;
    bool after; /* the handler ran past the call */
} arena_probe;

static void h_decode(nea_req *req, void *arg)
{
    arena_probe *p = arg;
    static const char enc[] = "caf%C3%A9+au+lait";
    if (p->step == 0) {
        /* Exactly the decoded length plus the NUL (aligned). */
        p->used_before = req->arena->used;
        p->rc = nea_url_decode(req, enc, strlen(enc), NEA_DECODE_PLUS, &p->out, &p->out_len);
        p->used_after = req->arena->used;
        assert_int_equal(p->rc, 0);
        assert_string_equal(p->out, "caf\xc3\xa9 au lait");
        /* A malformed input takes nothing from the arena. */
        p->used_before = req->arena->used;
        assert_int_equal(nea_url_decode(req, "%x", 2, 0, &p->out, NULL), UV_EINVAL);
        assert_int_equal(nea_try_url_decode(req, "%x", 2, 0, &p->out, NULL), UV_EINVAL);
        assert_int_equal(req->arena->used, p->used_before);
        p->after = true;
        return;
    }
    /* Leave less than the decoded string needs (less than one aligned byte). */
    while (nea_try_alloc(req, 64) != NULL) {
    }
    while (nea_try_alloc(req, 1) != NULL) {
    }
    p->rc_try = nea_try_url_decode(req,
                                   "%41%42%43%44%45%46%47%48%49%4A%4B%4C%4D%4E%4F%50%51%52%53"
                                   "%54%55%56%57%58%59%5A%41%42%43%44%45%46%47%48%49%4A%4B%4C",
                                   114, 0, &p->out, &p->out_len);
    p->out = NULL;
    (void)nea_url_decode(req, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                         64, 0, &p->out, NULL);
    p->after = true; /* not reached: the call above unwinds */
}

static void test_decode_into_arena(void **state)
{
    fixture *f = unit_start(NULL);
    arena_probe p = {0};
    (void)state;

    run_req(f, h_decode, &p);
    assert_true(p.after);
    assert_int_equal(f->srv->stats.oom_500, 0);

    p = (arena_probe){.step = 1};
    run_req(f, h_decode, &p);
    assert_int_equal(p.rc_try, NEA_ENOMEM);
    assert_false(p.after);
    assert_int_equal(f->srv->stats.oom_500, 1);
    assert_true(contains(f->log.last, "asked 65 bytes"));
    unit_stop(f);
}

/* --- query parameters ---------------------------------------------------------- */

/* The values nea_query_find returns for name, in order, each in <>. */
static const char *all_values(const char *query, const char *name)
{
    static char out[256];
    size_t pos = 0, n = 0, len;
    const char *v;
    out[0] = '\0';
    while (nea_query_find(query, name, &pos, &v, &len) == 0) {
        n += (size_t)snprintf(out + n, sizeof(out) - n, "<%.*s>", (int)len, v);
    }
    assert_int_equal(pos, strlen(query));
    return out;
}

static void test_query_find(void **state)
{
    static const char q[] = "a=1&b=2&a=3&c&d=&=e&&a&na%6De=x&a+b=sp&a%2Bb=plus&%zz=bad&z%00=nul"
                            "&A=upper&a=x=y";
    size_t pos = 0;
    (void)state;
    assert_string_equal(all_values(q, "a"), "<1><3><><x=y>");
    assert_string_equal(all_values(q, "b"), "<2>");
    assert_string_equal(all_values(q, "c"), "<>");
    assert_string_equal(all_values(q, "d"), "<>");
    assert_string_equal(all_values(q, ""), "<e>");
    assert_string_equal(all_values(q, "name"), "<x>");
    assert_string_equal(all_values(q, "a b"), "<sp>");
    assert_string_equal(all_values(q, "a+b"), "<plus>");
    assert_string_equal(all_values(q, "%zz"), ""); /* a malformed name equals nothing */
    assert_string_equal(all_values(q, "z"), "");   /* nor one with %00 */
    assert_string_equal(all_values(q, "A"), "<upper>");
    assert_string_equal(all_values(q, "e"), "");
    assert_string_equal(all_values("", "a"), "");
    /* c is found, with an empty value, and counted as found. */
    assert_int_equal(nea_query_find(q, "c", &pos, NULL, NULL), 0);
    assert_int_equal(nea_query_find(q, "c", &pos, NULL, NULL), UV_ENOENT);
    pos = 9999;
    assert_int_equal(nea_query_find(q, "a", &pos, NULL, NULL), UV_ENOENT);
    assert_int_equal(pos, strlen(q));
    assert_int_equal(nea_query_find(NULL, "a", &pos, NULL, NULL), UV_EINVAL);
    assert_int_equal(nea_query_find(q, NULL, &pos, NULL, NULL), UV_EINVAL);
    assert_int_equal(nea_query_find(q, "a", NULL, NULL, NULL), UV_EINVAL);
}

static void r_param(nea_req *req, void *data)
{
    char *v;
    size_t len;
    int rc = nea_query_param(req, (const char *)data, &v, &len);
    if (rc == UV_ENOENT) {
        nea_respond_static(req, 404, "text/plain", "absent", 6);
    } else if (rc != 0) {
        nea_respond_static(req, 400, "text/plain", "malformed", 9);
    } else {
        nea_respond(req, 200, "text/plain", v, len);
    }
}

/* Exhausts the arena, then asks for a parameter: the out-of-memory 500. */
static void r_param_oom(nea_req *req, void *data)
{
    char *v;
    (void)data;
    while (nea_try_alloc(req, 16) != NULL) {
    }
    (void)nea_query_param(req, "v", &v, NULL);
    nea_respond_static(req, 200, "text/plain", "unreachable", 11);
}

static void test_query_param_end_to_end(void **state)
{
    h_fixture *f;
    h_response r;
    int fd;

    h_test_start(state, NULL);
    f = *state;
    assert_int_equal(nea_server_route(f->srv, "GET", "/q", r_param, "name"), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/q-oom", r_param_oom, NULL), 0);
    fd = h_connect(f);
    h_expect(f, fd, "GET /q?x=1&name=J%C3%BCrgen+M%C3%BCller&name=2 HTTP/1.1\r\nHost: x\r\n\r\n",
             200, &r);
    assert_int_equal(r.body_len, strlen("J\xc3\xbcrgen M\xc3\xbcller"));
    assert_memory_equal(r.body, "J\xc3\xbcrgen M\xc3\xbcller", r.body_len);
    h_expect(f, fd, "GET /q?nam%65=%2B%26%3D HTTP/1.1\r\nHost: x\r\n\r\n", 200, &r);
    assert_memory_equal(r.body, "+&=", 3);
    h_expect(f, fd, "GET /q?name HTTP/1.1\r\nHost: x\r\n\r\n", 200, &r);
    assert_int_equal(r.body_len, 0);
    h_expect(f, fd, "GET /q HTTP/1.1\r\nHost: x\r\n\r\n", 404, NULL);
    h_expect(f, fd, "GET /q?names=1 HTTP/1.1\r\nHost: x\r\n\r\n", 404, NULL);
    h_expect(f, fd, "GET /q?name=a%00b HTTP/1.1\r\nHost: x\r\n\r\n", 400, NULL);
    h_expect(f, fd, "GET /q-oom?v=abc HTTP/1.1\r\nHost: x\r\n\r\n", 500, NULL);
    assert_int_equal(h_st(f).oom_500, 1);
    /* The connection and the server carry on. */
    h_expect(f, fd, "GET /q?name=ok HTTP/1.1\r\nHost: x\r\n\r\n", 200, &r);
    assert_memory_equal(r.body, "ok", 2);
    close(fd);
    /* A malformed escape anywhere in the target never reaches a handler:
     * the head guard answers 400 and closes. */
    h_expect_close(f, "GET /q?name=100% HTTP/1.1\r\nHost: x\r\n\r\n", 400);
}

/* --- the routing view ---------------------------------------------------------- */

static void test_routing_view(void **state)
{
    static const struct {
        const char *raw, *route;
        size_t want; /* raw bytes covering the route, or SIZE_MAX */
    } cases[] = {
        {"/hello", "/hello", 6},
        {"/hel%6co", "/hello", 8},
        {"/hel%6Co", "/hello", 8},
        {"/%68%65%6c%6c%6f", "/hello", 16},
        {"/a%2Fb", "/a/b", SIZE_MAX}, /* an encoded slash is no separator */
        {"/a/b", "/a%2Fb", SIZE_MAX}, /* and a separator no encoded slash */
        {"/a%2fb", "/a%2Fb", 6},      /* hex case does not matter */
        {"/a%2Fb", "/a%2fb", 6},
        {"/100%25", "/100%25", 7},      /* an encoded '%' stays encoded */
        {"/100%2525", "/100%25", 7},    /* and is never decoded twice */
        {"/100%", "/100%25", SIZE_MAX}, /* a lone '%' is a plain byte */
        {"/x%00", "/x%00", 5},
        {"/x%zz", "/x", 2}, /* a prefix of the view */
        {"/st%61tic/a%2Fb", "/static/", 10},
        {"/stat", "/static/", SIZE_MAX},
        {"/caf%C3%A9", "/caf\xc3\xa9", 10},
        {"/a%20b", "/a b", 6},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t got = nea__url_match(cases[i].raw, strlen(cases[i].raw), cases[i].route,
                                    strlen(cases[i].route));
        if (got != cases[i].want) {
            print_error("%s vs route %s: %zu, want %zu\n", cases[i].raw, cases[i].route, got,
                        cases[i].want);
        }
        assert_true(got == cases[i].want);
    }
    /* Where a matched prefix route's tail starts in the raw path. */
    assert_int_equal(nea__url_raw_prefix("/st%61tic/a%2Fb", 8), 10);
    assert_int_equal(nea__url_raw_prefix("/a%2Fb/c", strlen("/a%2Fb/")), 7);
    assert_int_equal(nea__url_raw_prefix("/p/x", 3), 3);
    assert_int_equal(nea__url_raw_prefix("/p", 3), 2); /* never past the end */
    /* Which '%' a route may hold. */
    assert_true(nea__url_route_ok("/a%2Fb%25%00%2f", 15));
    assert_true(nea__url_route_ok("/plain", 6));
    assert_false(nea__url_route_ok("/a%41", 5));
    assert_false(nea__url_route_ok("/a%", 3));
    assert_false(nea__url_route_ok("/a%2", 4));
    assert_false(nea__url_route_ok("/a%zz", 5));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_table),
        cmocka_unit_test(test_decode_every_byte_in_place),
        cmocka_unit_test(test_decode_into_arena),
        cmocka_unit_test(test_query_find),
        cmocka_unit_test_teardown(test_query_param_end_to_end, h_test_teardown),
        cmocka_unit_test(test_routing_view),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
