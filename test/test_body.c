/*
 * test_body.c - a request body's framing and pace (body.c): Content-Length
 * and chunked bodies fed whole, split at every byte and one byte at a
 * time give the same bytes and stop exactly at the body's end; the limit
 * refuses a chunk announced beyond it before its data; the pace deadline
 * is the earliest of idleness, the body deadline and the minimum rate.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "body.h"

/* Feeds in[0..len) in pieces of at most step bytes (0: whole) into b,
 * collecting body bytes into out; returns the final step and sets *used
 * to the input consumed. */
static nea__body_step feed(nea__body_rx *b, const char *in, size_t len, size_t step, char *out,
                           size_t *out_len, size_t *used)
{
    size_t pos = 0;
    *out_len = 0;
    for (;;) {
        size_t avail = len - pos, n, u = 0, dlen = 0;
        const char *data = NULL;
        nea__body_step r;
        n = step == 0 || avail < step ? avail : step;
        r = nea__body_rx_feed(b, in + pos, n, &u, &data, &dlen);
        pos += u;
        if (r == NEA__BODY_DATA) {
            memcpy(out + *out_len, data, dlen);
            *out_len += dlen;
            continue;
        }
        if (r == NEA__BODY_MORE && pos < len) {
            continue;
        }
        *used = pos;
        return r;
    }
}

static void start(nea__body_rx *b, bool chunked, uint64_t length, uint64_t limit)
{
    nea__body_rx_start(b, chunked, length, limit, 64, 1000, 5000, 0);
}

static void test_length_body_stops_at_its_end(void **state)
{
    static const char in[] = "hello worldGET / HTTP/1.1\r\n";
    char out[64];
    size_t out_len, used;
    (void)state;
    for (size_t step = 0; step <= 12; step++) {
        nea__body_rx b;
        start(&b, false, 11, 1000);
        assert_int_equal(feed(&b, in, sizeof(in) - 1, step, out, &out_len, &used), NEA__BODY_DONE);
        assert_int_equal(out_len, 11);
        assert_memory_equal(out, "hello world", 11);
        assert_int_equal(used, 11); /* the next request is not touched */
        assert_int_equal(b.got, 11);
    }
}

static void test_chunked_body_split_anywhere(void **state)
{
    static const char in[] = "5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nT: v\r\n\r\nNEXT";
    char out[64];
    size_t out_len, used;
    (void)state;
    for (size_t step = 0; step < sizeof(in); step++) {
        nea__body_rx b;
        start(&b, true, 0, 1000);
        assert_int_equal(feed(&b, in, sizeof(in) - 1, step, out, &out_len, &used), NEA__BODY_DONE);
        assert_int_equal(out_len, 11);
        assert_memory_equal(out, "hello world", 11);
        assert_int_equal(used, sizeof(in) - 1 - 4);
    }
}

static void test_limit(void **state)
{
    char out[64];
    size_t out_len, used;
    nea__body_rx b;
    (void)state;
    /* exactly at the limit */
    start(&b, true, 0, 11);
    assert_int_equal(feed(&b, "b\r\nhello world\r\n0\r\n\r\n", 22, 0, out, &out_len, &used),
                     NEA__BODY_DONE);
    /* a chunk announced one byte beyond it: refused before its data */
    start(&b, true, 0, 10);
    assert_int_equal(feed(&b, "b\r\n", 3, 0, out, &out_len, &used), NEA__BODY_TOO_LARGE);
    assert_int_equal(out_len, 0);
    /* two chunks that together pass it */
    start(&b, true, 0, 10);
    assert_int_equal(feed(&b, "5\r\nhello\r\n6\r\n", 13, 0, out, &out_len, &used),
                     NEA__BODY_TOO_LARGE);
    assert_int_equal(out_len, 5);
    /* bad framing */
    start(&b, true, 0, 10);
    assert_int_equal(feed(&b, "5\nhello", 7, 0, out, &out_len, &used), NEA__BODY_BAD);
}

static void test_pace_deadline(void **state)
{
    nea_config cfg;
    nea__body_rx b;
    (void)state;
    nea_config_init(&cfg);
    cfg.body_timeout_ms = 100;
    cfg.body_min_rate = 1000; /* bytes/s */
    cfg.body_rate_grace_ms = 500;
    /* Started at t=1000 with a 5 s deadline: idle 100 ms is the earliest. */
    nea__body_rx_start(&b, false, 1u << 20, 1u << 20, 64, 1000, 5000, 0);
    assert_int_equal(nea__body_rx_due(&b, &cfg), 1100);
    /* Reads move the idle deadline; the rate's applies after the grace:
     * 200 bytes at 1000 B/s last until t=1201, so the grace (t=1500) rules. */
    nea__body_rx_arrived(&b, 200, 1090);
    assert_int_equal(nea__body_rx_due(&b, &cfg), 1190);
    nea__body_rx_arrived(&b, 0, 1450);
    assert_int_equal(nea__body_rx_due(&b, &cfg), 1500);
    /* 2,000 bytes by t=1900: they last until t=3201; idleness rules. */
    nea__body_rx_arrived(&b, 1800, 1900);
    assert_int_equal(nea__body_rx_due(&b, &cfg), 2000);
    /* A steady drip cannot pass the body deadline (t=6000). */
    nea__body_rx_arrived(&b, 100000, 5950);
    assert_int_equal(nea__body_rx_due(&b, &cfg), 6000);
    /* Without a deadline (a body read in pieces) only idleness and rate. */
    nea__body_rx_start(&b, false, 10, 10, 64, 1000, 0, 0);
    assert_int_equal(b.deadline_ms, UINT64_MAX);
    cfg.body_min_rate = 0;
    nea__body_rx_arrived(&b, 1, 9000);
    assert_int_equal(nea__body_rx_due(&b, &cfg), 9100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_length_body_stops_at_its_end),
        cmocka_unit_test(test_chunked_body_split_anywhere),
        cmocka_unit_test(test_limit),
        cmocka_unit_test(test_pace_deadline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
