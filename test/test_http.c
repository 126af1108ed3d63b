/*
 * test_http.c - the request head guard (http.c): nea__head_scan and
 * nea__head_parse driven directly, then over real sockets - error statuses,
 * every request-smuggling shape (400, Connection: close, and the close), and
 * Transfer-Encoding with Content-Length reaching libnea's own check.
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
#include "tchar.h"

/* --- token characters (tchar.h) ------------------------------------------------- */

/* Every byte is a tchar exactly when RFC 9110 lists it: the one definition
 * behind method, field-name and Transfer-Encoding checks here and chunk
 * extension and trailer names in chunked.c. */
static void test_tchar_is_rfc9110s_set(void **state)
{
    static const char listed[] = "!#$%&'*+-.^_`|~0123456789"
                                 "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    unsigned count = 0;
    (void)state;
    for (unsigned c = 0; c < 256; c++) {
        bool want = c != 0 && memchr(listed, (int)c, sizeof(listed) - 1) != NULL;
        assert_int_equal(nea__is_tchar((unsigned char)c), want);
        count += want;
    }
    assert_int_equal(count, 15 + 10 + 26 + 26);
}

/* --- the head guard, driven directly --------------------------------------------- */

typedef struct parsed {
    nea__scan_result scan;
    int status; /* nea__head_parse's answer (when scan is DONE) */
    nea__head h;
} parsed;

/* lenient: let llhttp accept Transfer-Encoding with Content-Length (as a
 * lenient or older llhttp build would), so that libnea's own rule is what
 * must refuse it. */
static void parse_with(const char *raw, parsed *out, bool lenient)
{
    llhttp_t parser;
    size_t len = strlen(raw);
    memset(out, 0, sizeof(*out));
    nea__head_begin(&out->h, &parser);
    if (lenient) {
        llhttp_set_lenient_chunked_length(&parser, 1);
    }
    out->scan = nea__head_scan(&out->h, raw, len);
    out->status = out->scan == NEA__HEAD_DONE ? nea__head_parse(&out->h, &parser, raw) : -1;
}

static void parse(const char *raw, parsed *out)
{
    parse_with(raw, out, false);
}

/* Transfer-Encoding together with Content-Length, in both orders and in
 * other cases. The llhttp Debian ships (8.1) refuses every such head itself
 * (HPE_UNEXPECTED_CONTENT_LENGTH) before libnea's rule runs, for every shape
 * whose fields both parsers recognise; libnea's rule (http.c: has_te &&
 * has_cl) is the guard for a parser that lets them through, so it is checked
 * with llhttp's lenient_chunked_length on. */
static const char *const te_with_cl[] = {
    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: x\r\ncontent-length: 0\r\ntransfer-encoding: CHUNKED\r\n\r\n",
    "POST /echo HTTP/1.1\r\nContent-Length: 5\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    "GET /hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\nContent-Length: 0\r\n\r\n",
};

static void test_te_with_cl_refused_by_libnea(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(te_with_cl) / sizeof(te_with_cl[0]); i++) {
        parsed p;
        /* As shipped: refused (by llhttp, before libnea looks). */
        parse(te_with_cl[i], &p);
        assert_int_equal(p.scan, NEA__HEAD_DONE);
        assert_int_equal(p.status, 400);
        /* With llhttp letting it through, libnea's rule refuses it: no field
         * callback objected, llhttp parsed the whole head, both were seen. */
        parse_with(te_with_cl[i], &p, true);
        if (p.status != 400 || !p.h.headers_done) {
            print_error("shape %zu: status %d headers_done %d\n", i, p.status, p.h.headers_done);
        }
        assert_int_equal(p.scan, NEA__HEAD_DONE);
        assert_true(p.h.headers_done);
        assert_int_equal(p.h.status, 0);
        assert_true(p.h.has_te && p.h.has_cl);
        assert_int_equal(p.status, 400);
    }
    /* Control: the lenient parser accepts either field alone. */
    {
        parsed p;
        parse_with("POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", &p, true);
        assert_int_equal(p.status, 0);
        parse_with("POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n", &p, true);
        assert_int_equal(p.status, 0);
    }
}

static void test_head_guard_accepts_and_refuses(void **state)
{
    static const struct {
        const char *raw;
        int status;
    } cases[] = {
        {"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0},
        {"GET / HTTP/1.0\r\n\r\n", 0},
        {"POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 0},
        {"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n", 0},
        {"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", 400},
        {"POST /e HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
        {"POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
        {"GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        parsed p;
        parse(cases[i].raw, &p);
        if (p.scan != NEA__HEAD_DONE || p.status != cases[i].status) {
            fail_msg("case %zu: scan %d status %d, want %d", i, p.scan, p.status, cases[i].status);
        }
    }
}

static void test_te_with_cl_end_to_end(void **state)
{
    h_fixture *f = *state;
    for (size_t i = 0; i < sizeof(te_with_cl) / sizeof(te_with_cl[0]); i++) {
        h_expect_close(f, te_with_cl[i], 400);
    }
    assert_int_equal(h_st(f).rejected_400, sizeof(te_with_cl) / sizeof(te_with_cl[0]));
}

static void test_error_statuses(void **state)
{
    h_fixture *f = *state;
    char big[8192];

    h_expect_close(f, "GARBAGE\r\n\r\n", 400);
    h_expect_close(f, "BREW /hello HTTP/1.1\r\nHost: x\r\n\r\n", 501);
    h_expect_close(f, "GET /hello HTTP/2.0\r\nHost: x\r\n\r\n", 505);
    h_expect_close(f, "GET /hello HTTP/1.2\r\nHost: x\r\n\r\n", 505);
    h_expect_close(f, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                   501);
    h_expect_close(f, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 40000\r\n\r\n", 413);

    /* 414: the request line alone does not fit the read buffer. */
    memset(big, 'a', sizeof(big));
    memcpy(big, "GET /", 5);
    big[sizeof(big) - 1] = '\0';
    h_expect_close(f, big, 414);

    /* 431: the request line fits, the fields do not. */
    {
        char head[6000];
        size_t n = (size_t)snprintf(head, sizeof(head), "GET /hello HTTP/1.1\r\nHost: x\r\n");
        while (n < 5000) {
            n += (size_t)snprintf(head + n, sizeof(head) - n, "X-Filler: %s\r\n",
                                  "0123456789012345678901234567890123456789");
        }
        snprintf(head + n, sizeof(head) - n, "\r\n");
        h_expect_close(f, head, 431);
    }
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
        h_expect_close(f, bad[i], 400);
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

/* The byte rules the scanner enforces before llhttp sees anything: a bare
 * LF inside a line and DEL are refused at the scan. */
static void test_scanner_refuses_bare_lf_and_del(void **state)
{
    static const char *const bad[] = {
        "GET / HTTP/1.1\nHost: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\nY: z\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\x7f\r\n\r\n",
        "GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        nea__head h;
        llhttp_t parser;
        nea__head_begin(&h, &parser);
        if (nea__head_scan(&h, bad[i], strlen(bad[i])) != NEA__HEAD_BAD) {
            fail_msg("case %zu was not refused by the scanner", i);
        }
    }
}

/* The scanner steps over values eight bytes at a time: a control byte at
 * any place of a long value (every offset within those eight) is still
 * refused, and every byte from 0x80 up (obs-text) and HTAB still pass. */
static void test_scanner_finds_a_control_byte_anywhere_in_a_value(void **state)
{
    char raw[128];
    static const unsigned char bad[] = {0x00, 0x01, 0x0b, 0x1f, 0x7f};
    static const unsigned char good[] = {0x09, 0x20, 0x7e, 0x80, 0x9f, 0xff};
    const char *pre = "GET / HTTP/1.1\r\nHost: x\r\nX-Long: ";
    size_t plen = strlen(pre);
    (void)state;
    for (size_t at = 0; at < 40; at++) {
        for (size_t k = 0; k < sizeof(bad) + sizeof(good); k++) {
            bool is_bad = k < sizeof(bad);
            unsigned char b = is_bad ? bad[k] : good[k - sizeof(bad)];
            nea__head h;
            llhttp_t parser;
            size_t len;
            memcpy(raw, pre, plen);
            memset(raw + plen, 'v', 40);
            raw[plen + at] = (char)b;
            memcpy(raw + plen + 40, "\r\n\r\n", 4);
            len = plen + 44;
            nea__head_begin(&h, &parser);
            if ((nea__head_scan(&h, raw, len) == NEA__HEAD_BAD) != is_bad) {
                fail_msg("byte 0x%02x at value offset %zu: %s", b, at,
                         is_bad ? "not refused" : "refused");
            }
        }
    }
}

/* A buffered body may be exactly max bytes, not one more. */
static void test_body_limit_exact(void **state)
{
    static char mem[4096];
    nea__arena a;
    nea__body b;
    (void)state;
    nea__arena_init(&a, mem, sizeof(mem), NULL);
    assert_int_equal(nea__body_start(&b, &a, 0, 10), 0);
    assert_int_equal(nea__body_append(&b, "0123456789", 10), 0);
    assert_int_equal(b.len, 10);
    assert_string_equal(b.data, "0123456789");
    assert_int_equal(nea__body_append(&b, "x", 1), 413);
    assert_int_equal(b.len, 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tchar_is_rfc9110s_set),
        cmocka_unit_test(test_scanner_refuses_bare_lf_and_del),
        cmocka_unit_test(test_body_limit_exact),
        cmocka_unit_test(test_scanner_finds_a_control_byte_anywhere_in_a_value),
        cmocka_unit_test(test_te_with_cl_refused_by_libnea),
        cmocka_unit_test(test_head_guard_accepts_and_refuses),
        cmocka_unit_test_setup_teardown(test_te_with_cl_end_to_end, h_test_setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_error_statuses, h_test_setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_smuggling_shapes, h_test_setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_leading_empty_line_tolerated, h_test_setup,
                                        h_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
