/*
 * test_ws.c - the WebSocket protocol core (ws.c), without sockets.
 *
 * SHA-1 and base64 against the RFC 3174 and RFC 4648 vectors and against
 * python3's hashlib and base64 on random inputs; the handshake's accept
 * key (RFC 6455's example) and every refusal; UTF-8 validation against a
 * reference decoder, exhaustively over short sequences and split at every
 * offset; the frame parser on RFC 6455's examples and on every rule a
 * server enforces, each input fed whole, split in two at every offset and
 * one byte at a time, which must all give the same events; frame heads and
 * close payloads, round-tripped through the parser. Last, a second
 * implementation: python3's wsproto (a sans-I/O WebSocket client) talks
 * over pipes to an echo loop built from this core.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "utf8_ref.h"
#include "ws.h"

/* --- SHA-1 and base64 -------------------------------------------------------------- */

static void hex(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        sprintf(out + 2 * i, "%02x", p[i]);
    }
    out[2 * n] = '\0';
}

static void sha1_hex(const void *data, size_t len, size_t repeat, char out[41])
{
    nea__sha1 s;
    uint8_t d[20];
    nea__sha1_init(&s);
    for (size_t i = 0; i < repeat; i++) {
        nea__sha1_update(&s, data, len);
    }
    nea__sha1_final(&s, d);
    hex(d, 20, out);
}

/* RFC 3174 section 7.3's four tests, and the empty string. */
static void test_sha1_rfc3174(void **state)
{
    char h[41];
    (void)state;
    sha1_hex("abc", 3, 1, h);
    assert_string_equal(h, "a9993e364706816aba3e25717850c26c9cd0d89d");
    sha1_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, 1, h);
    assert_string_equal(h, "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    sha1_hex("a", 1, 1000000, h);
    assert_string_equal(h, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
    sha1_hex("0123456701234567012345670123456701234567012345670123456701234567", 64, 10, h);
    assert_string_equal(h, "dea356a2cddd90c7a7ecedc5ebb563934f460452");
    sha1_hex("", 0, 1, h);
    assert_string_equal(h, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
}

/* The digest does not depend on how the input is split into updates. */
static void test_sha1_split_updates(void **state)
{
    uint8_t data[200], whole[20], split[20];
    nea__sha1 s;
    (void)state;
    for (size_t i = 0; i < sizeof(data); i++) {
        data[i] = (uint8_t)(i * 7 + 3);
    }
    for (size_t len = 0; len <= sizeof(data); len += 13) {
        nea__sha1_init(&s);
        nea__sha1_update(&s, data, len);
        nea__sha1_final(&s, whole);
        for (size_t cut = 0; cut <= len; cut++) {
            nea__sha1_init(&s);
            nea__sha1_update(&s, data, cut);
            nea__sha1_update(&s, data + cut, len - cut);
            nea__sha1_final(&s, split);
            assert_memory_equal(whole, split, 20);
        }
    }
}

static void test_base64_rfc4648(void **state)
{
    static const char *const vectors[][2] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        char out[16];
        uint8_t back[16];
        size_t n = strlen(vectors[i][0]), m;
        assert_int_equal(nea__base64_encode(out, (const uint8_t *)vectors[i][0], n),
                         strlen(vectors[i][1]));
        assert_string_equal(out, vectors[i][1]);
        assert_int_equal(nea__base64_decode(back, sizeof(back), out, strlen(out), &m), 0);
        assert_int_equal(m, n);
        assert_memory_equal(back, vectors[i][0], n);
    }
}

static void test_base64_refusals(void **state)
{
    static const char *const bad[] = {
        "Zg=",      /* length not a multiple of 4 */
        "Zg",       /* no padding */
        "Zh==",     /* unused bits set */
        "Zm9=",     /* unused bits set */
        "Z===",     /* too much padding */
        "====",     /* only padding */
        "Zg==Zg==", /* padding before the end */
        "Zm=v",     /* data after padding */
        "Zm9v\n",   /* not in the alphabet */
        "Zm-v",     /* the URL-safe alphabet is another one */
        "Zm9 ",
    };
    uint8_t out[16];
    size_t n;
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (nea__base64_decode(out, sizeof(out), bad[i], strlen(bad[i]), &n) != UV_EINVAL) {
            fail_msg("\"%s\" decoded", bad[i]);
        }
    }
    /* More than the room given. */
    assert_int_equal(nea__base64_decode(out, 5, "Zm9vYmFy", 8, &n), UV_EINVAL);
    assert_int_equal(nea__base64_decode(out, 6, "Zm9vYmFy", 8, &n), 0);
}

/* 400 random inputs of 0..299 bytes, hashed and encoded here and checked
 * by python3's hashlib and base64. */
static void test_sha1_base64_against_python(void **state)
{
    static const char script[] =
        "import sys, hashlib, base64\n"
        "n = bad = 0\n"
        "for n, line in enumerate(open(sys.argv[1]), 1):\n"
        "    h, sha, b64 = line.split()\n"
        "    data = b'' if h == '-' else bytes.fromhex(h)\n"
        "    b64 = '' if b64 == '-' else b64\n"
        "    if hashlib.sha1(data).hexdigest() != sha or base64.b64encode(data).decode() != b64:\n"
        "        bad += 1\n"
        "        print('mismatch on line', n)\n"
        "print('python3 checked', n, 'inputs')\n"
        "sys.exit(1 if bad or n != 400 else 0)\n";
    char file[64], py[64], cmd[256], h[41], b64[420], data_hex[601];
    uint8_t data[300];
    uint32_t x = 2463534242u;
    FILE *fp;
    (void)state;

    if (system("command -v python3 >/dev/null 2>&1") != 0) {
        skip();
    }
    snprintf(file, sizeof(file), "/tmp/nea_test_ws_%d", (int)getpid());
    snprintf(py, sizeof(py), "/tmp/nea_test_ws_%d.py", (int)getpid());
    fp = fopen(py, "w");
    assert_non_null(fp);
    fputs(script, fp);
    fclose(fp);
    fp = fopen(file, "w");
    assert_non_null(fp);
    for (int i = 0; i < 400; i++) {
        size_t len = (size_t)(i * 37 % 300);
        for (size_t j = 0; j < len; j++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            data[j] = (uint8_t)x;
        }
        sha1_hex(data, len, 1, h);
        nea__base64_encode(b64, data, len);
        hex(data, len, data_hex);
        fprintf(fp, "%s %s %s\n", len == 0 ? "-" : data_hex, h, len == 0 ? "-" : b64);
    }
    fclose(fp);
    snprintf(cmd, sizeof(cmd), "python3 %s %s", py, file);
    assert_int_equal(system(cmd), 0);
    unlink(file);
    unlink(py);
}

/* --- the handshake ----------------------------------------------------------------- */

static void test_accept_key_rfc6455(void **state)
{
    char out[NEA__WS_ACCEPT_LEN + 1];
    (void)state;
    nea__ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, out);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

typedef struct hs_case {
    const char *method;
    int minor;
    const char *hdrs[8][2];
    int status;
    const char *why;
} hs_case;

#define KEY                                                                                        \
    {                                                                                              \
        "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="                                            \
    }
#define VER                                                                                        \
    {                                                                                              \
        "Sec-WebSocket-Version", "13"                                                              \
    }
#define UPG                                                                                        \
    {                                                                                              \
        "Upgrade", "websocket"                                                                     \
    }
#define CON                                                                                        \
    {                                                                                              \
        "Connection", "Upgrade"                                                                    \
    }

static void test_handshake_check(void **state)
{
    static const hs_case cases[] = {
        {"GET", 1, {UPG, CON, KEY, VER}, 0, NULL},
        {"GET",
         1,
         {{"upgrade", "WebSocket"}, {"connection", "keep-alive, UPGRADE"}, KEY, VER},
         0,
         NULL},
        {"GET", 1, {{"Upgrade", "h2c , websocket"}, CON, KEY, VER}, 0, NULL},
        {"GET",
         1,
         {UPG, {"Connection", "keep-alive"}, {"Connection", "upgrade"}, KEY, VER},
         0,
         NULL},
        {"POST", 1, {UPG, CON, KEY, VER}, 405, "must be a GET"},
        {"GET", 0, {UPG, CON, KEY, VER}, 400, "needs HTTP/1.1"},
        {"GET", 1, {CON, KEY, VER}, 400, "Upgrade does not list websocket"},
        {"GET", 1, {{"Upgrade", "websocketx"}, CON, KEY, VER}, 400, "Upgrade does not list"},
        {"GET", 1, {{"Upgrade", "websocket/13"}, CON, KEY, VER}, 400, "Upgrade does not list"},
        {"GET", 1, {UPG, KEY, VER}, 400, "Connection does not list upgrade"},
        {"GET", 1, {UPG, {"Connection", "upgraded"}, KEY, VER}, 400, "Connection does not"},
        {"GET", 1, {UPG, CON, KEY}, 426, "Version is not 13"},
        {"GET", 1, {UPG, CON, KEY, {"Sec-WebSocket-Version", "8"}}, 426, "Version is not 13"},
        {"GET", 1, {UPG, CON, KEY, VER, VER}, 426, "Version is not 13"},
        {"GET", 1, {UPG, CON, VER}, 400, "not exactly one Sec-WebSocket-Key"},
        {"GET", 1, {UPG, CON, KEY, KEY, VER}, 400, "not exactly one"},
        {"GET",
         1,
         {UPG, CON, {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ="}, VER},
         400,
         "not the base64 of 16 bytes"},
        {"GET",
         1,
         {UPG, CON, {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZSE="}, VER},
         400,
         "not the base64 of 16 bytes"}, /* 17 bytes */
        {"GET",
         1,
         {UPG, CON, {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZR=="}, VER},
         400,
         "not the base64 of 16 bytes"}, /* unused bits set */
        {"GET",
         1,
         {UPG, CON, {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25j*Q=="}, VER},
         400,
         "not the base64 of 16 bytes"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        nea__hdr hdrs[8];
        nea__ws_handshake hs;
        size_t n = 0;
        int rc;
        while (n < 8 && cases[i].hdrs[n][0] != NULL) {
            hdrs[n].name = cases[i].hdrs[n][0];
            hdrs[n].value = cases[i].hdrs[n][1];
            n++;
        }
        rc = nea__ws_handshake_check(cases[i].method, 1, cases[i].minor, hdrs, n, &hs);
        if (rc != cases[i].status ||
            (cases[i].why != NULL && (hs.why == NULL || strstr(hs.why, cases[i].why) == NULL))) {
            fail_msg("case %zu: %d (%s), want %d (%s)", i, rc, hs.why ? hs.why : "-",
                     cases[i].status, cases[i].why ? cases[i].why : "-");
        }
        if (rc == 0) {
            assert_string_equal(hs.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        }
    }
}

static void test_accept_head(void **state)
{
    nea__hdr hdrs[] = {UPG,
                       CON,
                       KEY,
                       VER,
                       {"Sec-WebSocket-Protocol", "chat, superchat"},
                       {"Origin", "http://example.com"}};
    nea__ws_handshake hs;
    char buf[256];
    size_t n;
    (void)state;
    assert_int_equal(nea__ws_handshake_check("GET", 1, 1, hdrs, 6, &hs), 0);
    assert_string_equal(hs.protocols, "chat, superchat");
    assert_string_equal(hs.origin, "http://example.com");
    n = nea__ws_accept_head(buf, sizeof(buf), hs.accept, "chat");
    assert_string_equal(buf, "HTTP/1.1 101 Switching Protocols\r\n"
                             "Upgrade: websocket\r\n"
                             "Connection: Upgrade\r\n"
                             "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                             "Sec-WebSocket-Protocol: chat\r\n"
                             "\r\n");
    assert_int_equal(n, strlen(buf));
    n = nea__ws_accept_head(buf, sizeof(buf), hs.accept, NULL);
    assert_null(strstr(buf, "Sec-WebSocket-Protocol"));
    assert_int_equal(nea__ws_accept_head(buf, n, hs.accept, NULL), 0); /* no room for the NUL */
    assert_int_equal(nea__ws_accept_head(buf, sizeof(buf), hs.accept, "a\r\nX: y"), 0);
}

/* --- UTF-8 ------------------------------------------------------------------------- */

static bool utf8_whole(const uint8_t *s, size_t n)
{
    nea__utf8 u;
    nea__utf8_init(&u);
    return nea__utf8_feed(&u, s, n) && nea__utf8_complete(&u);
}

/* The verdict fed one byte at a time and split at every offset, which must
 * be the whole input's. */
static void utf8_splits_agree(const uint8_t *s, size_t n)
{
    bool whole = utf8_whole(s, n), ok = true;
    nea__utf8 u;
    nea__utf8_init(&u);
    for (size_t i = 0; i < n && ok; i++) {
        ok = nea__utf8_feed(&u, s + i, 1);
    }
    assert_int_equal(ok && nea__utf8_complete(&u), whole);
    for (size_t cut = 0; cut <= n; cut++) {
        nea__utf8_init(&u);
        ok = nea__utf8_feed(&u, s, cut) && nea__utf8_feed(&u, s + cut, n - cut);
        assert_int_equal(ok && nea__utf8_complete(&u), whole);
    }
}

static void test_utf8_examples(void **state)
{
    static const struct {
        const char *s;
        bool ok;
    } cases[] = {
        {"", true},
        {"plain ASCII, longer than eight bytes", true},
        {"\x7f", true},
        {"\xc2\x80", true},         /* U+0080 */
        {"\xdf\xbf", true},         /* U+07FF */
        {"\xe0\xa0\x80", true},     /* U+0800 */
        {"\xed\x9f\xbf", true},     /* U+D7FF */
        {"\xee\x80\x80", true},     /* U+E000 */
        {"\xef\xbf\xbf", true},     /* U+FFFF */
        {"\xf0\x90\x80\x80", true}, /* U+10000 */
        {"\xf4\x8f\xbf\xbf", true}, /* U+10FFFF */
        {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", true},
        {"\xc0\x80", false},                 /* overlong NUL */
        {"\xc1\xbf", false},                 /* overlong */
        {"\xe0\x80\x80", false},             /* overlong */
        {"\xe0\x9f\xbf", false},             /* overlong U+07FF */
        {"\xf0\x80\x80\x80", false},         /* overlong */
        {"\xf0\x8f\xbf\xbf", false},         /* overlong U+FFFF */
        {"\xed\xa0\x80", false},             /* U+D800 */
        {"\xed\xbf\xbf", false},             /* U+DFFF */
        {"\xed\xa0\x80\xed\xb0\x80", false}, /* a surrogate pair */
        {"\xf4\x90\x80\x80", false},         /* U+110000 */
        {"\xf5\x80\x80\x80", false},
        {"\xff", false},
        {"\x80", false},  /* a lone continuation */
        {"a\xc2", false}, /* cut short */
        {"\xe0\xa0", false},
        {"\xf0\x90\x80", false},
        {"\xc2\x41", false}, /* not a continuation */
        {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
         "edited",
         false},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const uint8_t *s = (const uint8_t *)cases[i].s;
        size_t n = strlen(cases[i].s);
        if (utf8_whole(s, n) != cases[i].ok || ref_utf8(s, n) != cases[i].ok) {
            fail_msg("case %zu: got %d, reference %d, want %d", i, utf8_whole(s, n), ref_utf8(s, n),
                     cases[i].ok);
        }
        utf8_splits_agree(s, n);
    }
}

/* Every sequence of one and two bytes, every three-byte sequence with a
 * lead byte of a three- or four-byte form, and the four-byte forms at the
 * edges of their ranges: the same verdict as the reference. */
static void test_utf8_exhaustive(void **state)
{
    uint8_t s[4];
    static const uint8_t edges[] = {0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xff};
    (void)state;
    for (unsigned a = 0; a < 256; a++) {
        s[0] = (uint8_t)a;
        assert_int_equal(utf8_whole(s, 1), ref_utf8(s, 1));
        for (unsigned b = 0; b < 256; b++) {
            s[1] = (uint8_t)b;
            assert_int_equal(utf8_whole(s, 2), ref_utf8(s, 2));
        }
    }
    for (unsigned a = 0xe0; a <= 0xf4; a++) {
        s[0] = (uint8_t)a;
        for (unsigned b = 0; b < 256; b++) {
            s[1] = (uint8_t)b;
            for (unsigned c = 0; c < 256; c++) {
                s[2] = (uint8_t)c;
                if (utf8_whole(s, 3) != ref_utf8(s, 3)) {
                    fail_msg("%02x %02x %02x", a, b, c);
                }
            }
        }
    }
    for (unsigned a = 0xf0; a <= 0xf7; a++) {
        for (unsigned b = 0; b < 256; b++) {
            for (size_t c = 0; c < sizeof(edges); c++) {
                for (size_t d = 0; d < sizeof(edges); d++) {
                    s[0] = (uint8_t)a, s[1] = (uint8_t)b, s[2] = edges[c], s[3] = edges[d];
                    if (utf8_whole(s, 4) != ref_utf8(s, 4)) {
                        fail_msg("%02x %02x %02x %02x", a, b, s[2], s[3]);
                    }
                }
            }
        }
    }
}

/* --- the frame parser -------------------------------------------------------------- */

/* A transcript of what the parser reported, independent of how the input
 * was split: complete messages (opcode, length, FNV-1a of the payload),
 * control frames, the close, the error. */
typedef struct transcript {
    char text[4096];
    size_t len;
    uint8_t msg[1 << 17]; /* the message being received */
    size_t msg_len;
    bool in_msg;
    bool over; /* an error or a close was reported */
} transcript;

static uint32_t fnv(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ p[i]) * 16777619u;
    }
    return h;
}

static void say(transcript *t, const char *fmt, ...) NEA_PRINTF(2, 3);

static void say(transcript *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    t->len += (size_t)vsnprintf(t->text + t->len, sizeof(t->text) - t->len, fmt, ap);
    va_end(ap);
    assert_true(t->len < sizeof(t->text));
}

static void record(transcript *t, const nea__ws_event *ev)
{
    assert_false(t->over); /* nothing after an error or a close */
    switch (ev->type) {
    case NEA__WS_EV_DATA:
        /* first exactly on a message's first piece; only its last piece may be empty */
        assert_int_equal(ev->first, !t->in_msg);
        assert_true(ev->len > 0 || ev->last);
        assert_true(ev->opcode == NEA__WS_TEXT || ev->opcode == NEA__WS_BINARY);
        t->in_msg = true;
        assert_true(t->msg_len + ev->len <= sizeof(t->msg));
        if (ev->len > 0) {
            memcpy(t->msg + t->msg_len, ev->data, ev->len);
        }
        t->msg_len += ev->len;
        assert_true(ev->message_len >= t->msg_len);
        if (ev->last) {
            assert_int_equal(ev->message_len, t->msg_len);
            say(t, "%s %zu %08x\n", ev->opcode == NEA__WS_TEXT ? "text" : "binary", t->msg_len,
                fnv(t->msg, t->msg_len));
            t->msg_len = 0;
            t->in_msg = false;
        }
        break;
    case NEA__WS_EV_PING:
    case NEA__WS_EV_PONG:
        assert_true(ev->len <= NEA__WS_CONTROL_MAX);
        say(t, "%s %.*s\n", ev->type == NEA__WS_EV_PING ? "ping" : "pong", (int)ev->len,
            (const char *)ev->data);
        break;
    case NEA__WS_EV_CLOSE:
        say(t, "close %u %.*s\n", ev->code, (int)ev->len, (const char *)ev->data);
        t->over = true;
        break;
    case NEA__WS_EV_ERROR:
        say(t, "error %u\n", ev->code);
        t->over = true;
        break;
    default:
        break;
    }
}

/* Feeds data[0..len) to p, recording every event. */
static void feed(nea__ws_parser *p, transcript *t, uint8_t *data, size_t len)
{
    for (;;) {
        nea__ws_event ev;
        size_t n = nea__ws_parse(p, data, len, &ev);
        assert_true(n <= len);
        data += n;
        len -= n;
        if (ev.type == NEA__WS_EV_NEED) {
            assert_int_equal(len, 0);
            return;
        }
        if (t->over) {
            /* Sticky: an error again, everything consumed; after a close,
             * nothing (NEED above). */
            assert_int_equal(ev.type, NEA__WS_EV_ERROR);
            assert_int_equal(len, 0);
            return;
        }
        record(t, &ev);
    }
}

static uint8_t copy_buf[1 << 18];

/* The transcript of in fed in the pieces that the cut offsets (ascending,
 * ncuts of them) make. */
static void run(const uint8_t *in, size_t len, bool client, uint64_t max, const size_t *cuts,
                size_t ncuts, transcript *t)
{
    nea__ws_parser p;
    size_t at = 0;
    assert_true(len <= sizeof(copy_buf));
    memcpy(copy_buf, in, len); /* unmasked in place */
    memset(t, 0, offsetof(transcript, msg));
    t->msg_len = 0;
    t->in_msg = false;
    t->over = false;
    nea__ws_parser_init(&p, client, max);
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        feed(&p, t, copy_buf + at, end - at);
        at = end;
    }
}

static transcript t_whole, t_split;
static const char *t_case = ""; /* named in failures */

/* Parses in whole, split in two at every offset, and one byte at a time;
 * every way gives the same transcript, which is want. */
static void expect_events(const uint8_t *in, size_t len, bool client, uint64_t max,
                          const char *want)
{
    static size_t cuts[1 << 18];
    run(in, len, client, max, NULL, 0, &t_whole);
    if (strcmp(t_whole.text, want) != 0) {
        fail_msg("%s: got:\n%swant:\n%s", t_case, t_whole.text, want);
    }
    for (size_t cut = 0; cut <= len; cut++) {
        run(in, len, client, max, &cut, 1, &t_split);
        if (strcmp(t_split.text, want) != 0) {
            fail_msg("%s: split at %zu:\n%swant:\n%s", t_case, cut, t_split.text, want);
        }
    }
    for (size_t i = 0; i < len; i++) {
        cuts[i] = i + 1;
    }
    if (len > 0) {
        run(in, len, client, max, cuts, len - 1, &t_split);
        if (strcmp(t_split.text, want) != 0) {
            fail_msg("%s: byte by byte:\n%swant:\n%s", t_case, t_split.text, want);
        }
    }
}

/* A message as a transcript line. */
static const char *msg_line(const char *kind, const void *p, size_t n)
{
    static char line[80];
    snprintf(line, sizeof(line), "%s %zu %08x\n", kind, n, fnv(p, n));
    return line;
}

static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};

/* The longest control payload. */
static const char ping125[] = "0123456789012345678901234567890123456789012345678901234567890123"
                              "456789012345678901234567890123456789012345678901234567890123";

/* Appends a frame to out: a client's (masked with key) unless server. */
static size_t put_frame(uint8_t *out, unsigned opcode, bool fin, const void *payload, size_t len,
                        bool server)
{
    size_t n = nea__ws_frame_head(out, opcode, fin, len, server ? NULL : key);
    assert_true(n > 0);
    if (len > 0) {
        memcpy(out + n, payload, len);
    }
    if (!server) {
        nea__ws_mask(out + n, len, key, 0);
    }
    return n + len;
}

/* RFC 6455 section 5.7. */
static void test_rfc6455_examples(void **state)
{
    static const uint8_t unmasked_hello[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    static const uint8_t masked_hello[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                           0x7f, 0x9f, 0x4d, 0x51, 0x58};
    static const uint8_t fragmented[] = {0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f};
    static const uint8_t ping[] = {0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    static const uint8_t pong[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                   0x7f, 0x9f, 0x4d, 0x51, 0x58};
    static uint8_t big[10 + 65536];
    char want[128];
    (void)state;

    expect_events(unmasked_hello, sizeof(unmasked_hello), true, 0, msg_line("text", "Hello", 5));
    expect_events(masked_hello, sizeof(masked_hello), false, 0, msg_line("text", "Hello", 5));
    expect_events(fragmented, sizeof(fragmented), true, 0, msg_line("text", "Hello", 5));
    expect_events(ping, sizeof(ping), true, 0, "ping Hello\n");
    expect_events(pong, sizeof(pong), false, 0, "pong Hello\n");
    /* 256 bytes of binary in one unmasked frame: a 16-bit length. */
    big[0] = 0x82, big[1] = 0x7e, big[2] = 0x01, big[3] = 0x00;
    memset(big + 4, 'x', 256);
    expect_events(big, 4 + 256, true, 0, msg_line("binary", big + 4, 256));
    /* 64 KiB: a 64-bit length. */
    big[0] = 0x82, big[1] = 0x7f;
    memset(big + 2, 0, 8);
    big[7] = 0x01;
    memset(big + 10, 'y', 65536);
    snprintf(want, sizeof(want), "%s", msg_line("binary", big + 10, 65536));
    run(big, sizeof(big), true, 0, NULL, 0, &t_whole); /* every split: too slow, see below */
    assert_string_equal(t_whole.text, want);
}

/* The ways a message can be framed: one frame, fragments with control
 * frames between them, empty fragments, empty messages, 16- and 64-bit
 * lengths, text cut inside a character at fragment boundaries. */
static void test_messages_and_fragments(void **state)
{
    static uint8_t in[1 << 17], payload[70000];
    char want[512];
    size_t n = 0;
    (void)state;

    for (size_t i = 0; i < sizeof(payload); i++) {
        payload[i] = (uint8_t)(i * 31 + 7);
    }
    /* A text message in three fragments, a ping and a pong between them, the
     * euro sign (e2 82 ac) cut across the fragments. */
    n += put_frame(in + n, NEA__WS_TEXT, false, "price: \xe2", 8, false);
    n += put_frame(in + n, NEA__WS_PING, true, "p1", 2, false);
    n += put_frame(in + n, NEA__WS_CONT, false, "\x82", 1, false);
    n += put_frame(in + n, NEA__WS_PONG, true, "", 0, false);
    n += put_frame(in + n, NEA__WS_CONT, true, "\xac 5", 3, false);
    /* An empty text message, an empty binary one made of empty fragments. */
    n += put_frame(in + n, NEA__WS_TEXT, true, "", 0, false);
    n += put_frame(in + n, NEA__WS_BINARY, false, "", 0, false);
    n += put_frame(in + n, NEA__WS_CONT, false, "", 0, false);
    n += put_frame(in + n, NEA__WS_CONT, true, "", 0, false);
    /* 125 and 126 bytes (the edge of the 7-bit length), a 125-byte ping. */
    n += put_frame(in + n, NEA__WS_BINARY, true, payload, 125, false);
    n += put_frame(in + n, NEA__WS_BINARY, true, payload, 126, false);
    n += put_frame(in + n, NEA__WS_PING, true, ping125, 125, false);
    /* A close with a code and a reason. */
    n += put_frame(in + n, NEA__WS_CLOSE, true,
                   "\x03\xe8"
                   "bye",
                   5, false);
    want[0] = '\0';
    strcat(want, "ping p1\npong \n");
    strcat(want, msg_line("text", "price: \xe2\x82\xac 5", 12));
    strcat(want, msg_line("text", "", 0));
    strcat(want, msg_line("binary", "", 0));
    strcat(want, msg_line("binary", payload, 125));
    strcat(want, msg_line("binary", payload, 126));
    strcat(want, "ping ");
    strcat(want, ping125);
    strcat(want, "\nclose 1000 bye\n");
    expect_events(in, n, false, 0, want);

    /* 65535 and 65536 bytes (the edge of the 16-bit length), then 70000 in
     * fragments of 65536 and 4464: fed whole, and byte by byte. */
    n = put_frame(in, NEA__WS_BINARY, true, payload, 65535, false);
    snprintf(want, sizeof(want), "%s", msg_line("binary", payload, 65535));
    run(in, n, false, 0, NULL, 0, &t_whole);
    assert_string_equal(t_whole.text, want);
    n = put_frame(in, NEA__WS_BINARY, false, payload, 65536, false);
    n += put_frame(in + n, NEA__WS_CONT, true, payload + 65536, 70000 - 65536, false);
    snprintf(want, sizeof(want), "%s", msg_line("binary", payload, 70000));
    run(in, n, false, 0, NULL, 0, &t_whole);
    assert_string_equal(t_whole.text, want);
    {
        static size_t cuts[1 << 17];
        for (size_t i = 0; i + 1 < n; i++) {
            cuts[i] = i + 1;
        }
        run(in, n, false, 0, cuts, n - 1, &t_split);
        assert_string_equal(t_split.text, want);
    }
}

typedef struct bad_case {
    const char *name;
    uint8_t bytes[24];
    size_t len;
    bool client; /* parsing a server's frames */
    unsigned code;
    const char *before; /* what is reported before the error */
} bad_case;

/* Client frames below are masked with key 00 00 00 00 (so the payload reads
 * as written) unless the case is about masking. */
static void test_protocol_errors(void **state)
{
    static const bad_case cases[] = {
        {"unmasked client frame", {0x81, 0x01, 'a'}, 3, false, 1002, ""},
        {"masked server frame", {0x81, 0x81, 0, 0, 0, 0, 'a'}, 7, true, 1002, ""},
        {"RSV1", {0xc1, 0x80, 0, 0, 0, 0}, 6, false, 1002, ""},
        {"RSV2", {0xa1, 0x80, 0, 0, 0, 0}, 6, false, 1002, ""},
        {"RSV3", {0x91, 0x80, 0, 0, 0, 0}, 6, false, 1002, ""},
        {"opcode 3", {0x83, 0x80, 0, 0, 0, 0}, 6, false, 1002, ""},
        {"opcode 7", {0x87, 0x80, 0, 0, 0, 0}, 6, false, 1002, ""},
        {"opcode 0xB", {0x8b, 0x80, 0, 0, 0, 0}, 6, false, 1002, ""},
        {"opcode 0xF", {0x8f, 0x80, 0, 0, 0, 0}, 6, false, 1002, ""},
        {"fragmented ping", {0x09, 0x80, 0, 0, 0, 0}, 6, false, 1002, ""},
        {"fragmented close", {0x08, 0x80, 0, 0, 0, 0}, 6, false, 1002, ""},
        {"126-byte ping", {0x89, 0xfe, 0x00, 0x7e}, 4, false, 1002, ""},
        {"continuation first", {0x80, 0x80, 0, 0, 0, 0}, 6, false, 1002, ""},
        {"text inside text",
         {0x01, 0x81, 0, 0, 0, 0, 'a', 0x81, 0x81, 0, 0, 0, 0, 'b'},
         14,
         false,
         1002,
         ""},
        {"16-bit length under 126", {0x82, 0xfe, 0x00, 0x7d, 0, 0, 0, 0}, 8, false, 1002, ""},
        {"64-bit length under 65536",
         {0x82, 0xff, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0},
         14,
         false,
         1002,
         ""},
        {"64-bit length, top bit",
         {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
         14,
         false,
         1002,
         ""},
        {"close of one byte", {0x88, 0x81, 0, 0, 0, 0, 0x03}, 7, false, 1002, ""},
        {"close code 999", {0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe7}, 8, false, 1002, ""},
        {"close code 1004", {0x88, 0x82, 0, 0, 0, 0, 0x03, 0xec}, 8, false, 1002, ""},
        {"close code 1005", {0x88, 0x82, 0, 0, 0, 0, 0x03, 0xed}, 8, false, 1002, ""},
        {"close code 1006", {0x88, 0x82, 0, 0, 0, 0, 0x03, 0xee}, 8, false, 1002, ""},
        {"close code 1015", {0x88, 0x82, 0, 0, 0, 0, 0x03, 0xf7}, 8, false, 1002, ""},
        {"close code 1016", {0x88, 0x82, 0, 0, 0, 0, 0x03, 0xf8}, 8, false, 1002, ""},
        {"close code 2999", {0x88, 0x82, 0, 0, 0, 0, 0x0b, 0xb7}, 8, false, 1002, ""},
        {"close code 5000", {0x88, 0x82, 0, 0, 0, 0, 0x13, 0x88}, 8, false, 1002, ""},
        {"close code 0", {0x88, 0x82, 0, 0, 0, 0, 0x00, 0x00}, 8, false, 1002, ""},
        {"close reason not UTF-8",
         {0x88, 0x84, 0, 0, 0, 0, 0x03, 0xe8, 0xc3, 0x28},
         10,
         false,
         1007,
         ""},
        {"text not UTF-8", {0x81, 0x82, 0, 0, 0, 0, 0xc3, 0x28}, 8, false, 1007, ""},
        {"text ends inside a character", {0x81, 0x81, 0, 0, 0, 0, 0xe2}, 7, false, 1007, ""},
        {"empty final fragment after a cut character",
         {0x01, 0x81, 0, 0, 0, 0, 0xe2, 0x80, 0x80, 0, 0, 0, 0},
         13,
         false,
         1007,
         ""},
        {"surrogate in text", {0x81, 0x83, 0, 0, 0, 0, 0xed, 0xa0, 0x80}, 9, false, 1007, ""},
        {"overlong in text", {0x81, 0x82, 0, 0, 0, 0, 0xc0, 0xaf}, 8, false, 1007, ""},
        {"a message, then an error",
         {0x82, 0x81, 0, 0, 0, 0, 'z', 0x99, 0x80, 0, 0, 0, 0},
         13,
         false,
         1002,
         "binary 1 ff0c53ad\n"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char want[128];
        snprintf(want, sizeof(want), "%serror %u\n", cases[i].before, cases[i].code);
        t_case = cases[i].name;
        expect_events(cases[i].bytes, cases[i].len, cases[i].client, 0, want);
    }
}

/* Invalid text fails fast: at the byte that cannot be UTF-8, before the
 * rest of its frame (here 1000 bytes that never come) arrives. */
static void test_utf8_fails_fast(void **state)
{
    uint8_t head[] = {0x81, 0xfe, 0x03, 0xe8, 0, 0, 0, 0, 'o', 'k', 0xf8};
    nea__ws_parser p;
    nea__ws_event ev;
    (void)state;
    nea__ws_parser_init(&p, false, 0);
    assert_int_equal(nea__ws_parse(&p, head, 10, &ev), 10);
    assert_int_equal(ev.type, NEA__WS_EV_DATA);
    assert_int_equal(ev.len, 2);
    assert_true(ev.first && !ev.last);
    nea__ws_parse(&p, head + 10, 1, &ev);
    assert_int_equal(ev.type, NEA__WS_EV_ERROR);
    assert_int_equal(ev.code, 1007);
    /* Sticky. */
    assert_int_equal(nea__ws_parse(&p, head, sizeof(head), &ev), sizeof(head));
    assert_int_equal(ev.type, NEA__WS_EV_ERROR);
    assert_int_equal(ev.code, 1007);
}

static void test_close_frames(void **state)
{
    static const unsigned ok[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009,
                                  1010, 1011, 1012, 1013, 1014, 3000, 4999};
    uint8_t in[256];
    size_t n;
    char want[160];
    (void)state;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint8_t pl[2] = {(uint8_t)(ok[i] >> 8), (uint8_t)ok[i]};
        n = put_frame(in, NEA__WS_CLOSE, true, pl, 2, false);
        snprintf(want, sizeof(want), "close %u \n", ok[i]);
        expect_events(in, n, false, 0, want);
    }
    /* No payload: 1005 is reported (and never sent). */
    n = put_frame(in, NEA__WS_CLOSE, true, "", 0, false);
    expect_events(in, n, false, 0, "close 1005 \n");
    /* A reason of 123 bytes, the most a close frame holds. */
    {
        char pl[125] = "\x03\xe9";
        memset(pl + 2, 'r', 123);
        n = put_frame(in, NEA__WS_CLOSE, true, pl, 125, false);
        snprintf(want, sizeof(want), "close 1001 %.123s\n", pl + 2);
        run(in, n, false, 0, NULL, 0, &t_whole);
        assert_string_equal(t_whole.text, want);
    }
    /* Bytes after a close are ignored, whatever they are. */
    n = put_frame(in, NEA__WS_CLOSE, true, "\x03\xe8", 2, false);
    memcpy(in + n, "\xff\xff\xff", 3);
    expect_events(in, n + 3, false, 0, "close 1000 \n");
}

/* The limit hook: a message announcing more than max_message bytes fails
 * with 1009 at the frame head that passes it, before its payload. */
static void test_max_message(void **state)
{
    static uint8_t in[4096];
    static uint8_t payload[2048];
    nea__ws_parser p;
    nea__ws_event ev;
    size_t n;
    (void)state;
    memset(payload, 'm', sizeof(payload));

    n = put_frame(in, NEA__WS_BINARY, true, payload, 100, false);
    expect_events(in, n, false, 100, msg_line("binary", payload, 100));
    expect_events(in, n, false, 99, "error 1009\n");
    /* Fragments: 60 + 40 fits 100, a third fragment does not. */
    n = put_frame(in, NEA__WS_TEXT, false, payload, 60, false);
    n += put_frame(in + n, NEA__WS_CONT, false, payload, 40, false);
    n += put_frame(in + n, NEA__WS_PING, true, "x", 1, false); /* control frames do not count */
    n += put_frame(in + n, NEA__WS_CONT, true, payload, 1, false);
    expect_events(in, n, false, 100, "ping x\nerror 1009\n");
    {
        char want[128];
        snprintf(want, sizeof(want), "ping x\n%s", msg_line("text", payload, 101));
        expect_events(in, n, false, 101, want);
    }
    /* Before the payload: the head of a 2000-byte frame is enough. */
    n = put_frame(in, NEA__WS_BINARY, true, payload, 2000, false);
    nea__ws_parser_init(&p, false, 1000);
    assert_int_equal(nea__ws_parse(&p, in, 8, &ev), 8);
    assert_int_equal(ev.type, NEA__WS_EV_ERROR);
    assert_int_equal(ev.code, 1009);
    /* The hook may change between messages, and within one. */
    nea__ws_parser_init(&p, false, 10);
    n = put_frame(in, NEA__WS_BINARY, false, payload, 10, false);
    assert_int_equal(nea__ws_parse(&p, in, n, &ev), n);
    assert_int_equal(ev.type, NEA__WS_EV_DATA);
    assert_int_equal(ev.message_len, 10);
    p.max_message = 0; /* the owner takes the rest in pieces: no limit */
    n = put_frame(in, NEA__WS_CONT, true, payload, 2000, false);
    assert_int_equal(nea__ws_parse(&p, in, n, &ev), n);
    assert_int_equal(ev.type, NEA__WS_EV_DATA);
    assert_true(ev.last);
    assert_int_equal(ev.message_len, 2010);
}

/* --- frames out -------------------------------------------------------------------- */

static void test_frame_heads(void **state)
{
    static const struct {
        uint64_t len;
        size_t head;
        uint8_t b1;
    } sizes[] = {{0, 2, 0},           {125, 2, 125},    {126, 4, 126},
                 {65535, 4, 126},     {65536, 10, 127}, {(uint64_t)1 << 32, 10, 127},
                 {INT64_MAX, 10, 127}};
    uint8_t h[NEA__WS_HEAD_MAX];
    (void)state;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint64_t back = 0;
        assert_int_equal(nea__ws_frame_head(h, NEA__WS_BINARY, true, sizes[i].len, NULL),
                         sizes[i].head);
        assert_int_equal(h[0], 0x82);
        assert_int_equal(h[1], sizes[i].b1); /* a server's frame: no mask bit */
        if (sizes[i].head == 2) {
            back = h[1];
        }
        for (size_t j = 2; j < sizes[i].head; j++) {
            back = back << 8 | h[j];
        }
        assert_true(back == sizes[i].len);
        assert_int_equal(nea__ws_frame_head(h, NEA__WS_BINARY, true, sizes[i].len, key),
                         sizes[i].head + 4);
        assert_int_equal(h[1], 0x80 | sizes[i].b1);
        assert_memory_equal(h + sizes[i].head, key, 4);
    }
    assert_int_equal(nea__ws_frame_head(h, NEA__WS_TEXT, false, 3, NULL), 2);
    assert_int_equal(h[0], 0x01);
    /* What RFC 6455 forbids is refused. */
    assert_int_equal(nea__ws_frame_head(h, NEA__WS_PING, true, 126, NULL), 0);
    assert_int_equal(nea__ws_frame_head(h, NEA__WS_CLOSE, false, 2, NULL), 0);
    assert_int_equal(nea__ws_frame_head(h, 3, true, 0, NULL), 0);
    assert_int_equal(nea__ws_frame_head(h, 0xB, true, 0, NULL), 0);
    assert_int_equal(nea__ws_frame_head(h, NEA__WS_BINARY, true, (uint64_t)1 << 63, NULL), 0);
    assert_int_equal(nea__ws_frame_head(h, NEA__WS_PONG, true, 125, NULL), 2);
}

static void test_mask_any_offset(void **state)
{
    uint8_t a[67], b[67];
    (void)state;
    for (uint64_t pos = 0; pos < 8; pos++) {
        for (size_t len = 0; len <= sizeof(a); len++) {
            for (size_t i = 0; i < len; i++) {
                a[i] = b[i] = (uint8_t)(i * 13);
            }
            nea__ws_mask(a, len, key, pos);
            for (size_t i = 0; i < len; i++) {
                b[i] ^= key[(pos + i) % 4];
            }
            assert_memory_equal(a, b, len);
        }
    }
}

static void test_close_payloads(void **state)
{
    uint8_t out[NEA__WS_CONTROL_MAX], in[NEA__WS_HEAD_MAX + NEA__WS_CONTROL_MAX];
    char reason[200];
    size_t n, m;
    (void)state;
    assert_int_equal(nea__ws_close_payload(out, 1000, "bye", 3, &n), 0);
    assert_int_equal(n, 5);
    assert_memory_equal(out,
                        "\x03\xe8"
                        "bye",
                        5);
    assert_int_equal(nea__ws_close_payload(out, 0, NULL, 0, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(nea__ws_close_payload(out, 0, "x", 1, &n), UV_EINVAL);
    assert_int_equal(nea__ws_close_payload(out, 1005, NULL, 0, &n), UV_EINVAL);
    assert_int_equal(nea__ws_close_payload(out, 1006, NULL, 0, &n), UV_EINVAL);
    assert_int_equal(nea__ws_close_payload(out, 999, NULL, 0, &n), UV_EINVAL);
    assert_int_equal(nea__ws_close_payload(out, 1000, "\xc3\x28", 2, &n), UV_EINVAL);
    /* 62 two-byte characters (124 bytes): cut to 61 at a character
     * boundary, not in the middle of the 62nd. */
    for (int i = 0; i < 62; i++) {
        memcpy(reason + 2 * i, "\xc3\xa9", 2);
    }
    assert_int_equal(nea__ws_close_payload(out, 4000, reason, 124, &n), 0);
    assert_int_equal(n, 2 + 122);
    /* 200 ASCII bytes: cut to 123. */
    memset(reason, 'a', sizeof(reason));
    assert_int_equal(nea__ws_close_payload(out, 1001, reason, 200, &n), 0);
    assert_int_equal(n, 125);
    /* Round trip: the payload, as a server's close frame, parses back. */
    m = nea__ws_frame_head(in, NEA__WS_CLOSE, true, n, NULL);
    memcpy(in + m, out, n);
    snprintf(reason, sizeof(reason), "close 1001 %.123s\n", out + 2);
    expect_events(in, m + n, true, 0, reason);
}

/* Messages framed by nea__ws_frame_head, as a server sends them, parse back
 * in a client's parser: text, binary, fragmented, every length class. */
static void test_round_trip(void **state)
{
    static uint8_t in[1 << 18], payload[70000];
    static const size_t lens[] = {0, 1, 125, 126, 65535, 65536, 70000};
    (void)state;
    for (size_t i = 0; i < sizeof(payload); i++) {
        payload[i] = (uint8_t)('a' + i % 26);
    }
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        size_t n = 0, half = lens[i] / 2;
        char want[128];
        n += put_frame(in + n, NEA__WS_TEXT, true, payload, lens[i], true);
        n += put_frame(in + n, NEA__WS_BINARY, false, payload, half, true);
        n += put_frame(in + n, NEA__WS_CONT, true, payload + half, lens[i] - half, true);
        snprintf(want, sizeof(want), "%s", msg_line("text", payload, lens[i]));
        snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s",
                 msg_line("binary", payload, lens[i]));
        run(in, n, true, 0, NULL, 0, &t_whole);
        assert_string_equal(t_whole.text, want);
    }
}

/* --- a second implementation: python3's wsproto --------------------------------------- */

/* wsproto as a client over pipes (stdin, stdout), in two modes:
 *   good: the handshake, messages of every kind and length class, a
 *         fragmented message, a ping, and the close handshake, each echo
 *         checked;
 *   bad:  the handshake, then a text frame that is not UTF-8, which must be
 *         answered with a close of code 1007. */
static const char py_peer[] =
    "import os, sys\n"
    "from wsproto import WSConnection, ConnectionType\n"
    "from wsproto.events import (Request, AcceptConnection, TextMessage, BytesMessage, Ping,\n"
    "                            Pong, CloseConnection, Message)\n"
    "ws = WSConnection(ConnectionType.CLIENT)\n"
    "def send(b):\n"
    "    while b:\n"
    "        b = b[os.write(1, b):]\n"
    "def next_event():\n"
    "    while True:\n"
    "        for ev in ws.events():\n"
    "            return ev\n"
    "        data = os.read(0, 65536)\n"
    "        ws.receive_data(data if data else None)\n"
    "def message():\n"
    "    parts = []\n"
    "    while True:\n"
    "        ev = next_event()\n"
    "        assert isinstance(ev, Message), ev\n"
    "        parts.append(ev.data)\n"
    "        if ev.message_finished:\n"
    "            return type(ev), ('' if isinstance(ev, TextMessage) else b'').join(parts)\n"
    "send(ws.send(Request(host='localhost', target='/ws', subprotocols=['chat'])))\n"
    "ev = next_event()\n"
    "assert isinstance(ev, AcceptConnection) and ev.subprotocol == 'chat', ev\n"
    "if sys.argv[1] == 'bad':\n"
    "    send(b'\\x81\\x82\\x00\\x00\\x00\\x00\\xc3\\x28')\n"
    "    ev = next_event()\n"
    "    assert isinstance(ev, CloseConnection) and ev.code == 1007, ev\n"
    "    print('wsproto: invalid UTF-8 answered with close', ev.code, file=sys.stderr)\n"
    "    sys.exit(0)\n"
    "texts = ['hello', '', 'caf\\u00e9 \\u20ac \\U0001f600', 'x' * 125, 'y' * 126, 'z' * 70000]\n"
    "for t in texts:\n"
    "    send(ws.send(TextMessage(data=t)))\n"
    "    assert message() == (TextMessage, t)\n"
    "for b in [b'', bytes(range(256)), bytes(65536), bytes(70000)]:\n"
    "    send(ws.send(BytesMessage(data=b)))\n"
    "    assert message() == (BytesMessage, b)\n"
    "send(ws.send(TextMessage(data='frag', message_finished=False)))\n"
    "send(ws.send(Ping(payload=b'between')))\n"
    "send(ws.send(TextMessage(data='mented \\u20ac', message_finished=True)))\n"
    "ev = next_event()\n"
    "assert isinstance(ev, Pong) and ev.payload == b'between', ev\n"
    "assert message() == (TextMessage, 'fragmented \\u20ac')\n"
    "send(ws.send(CloseConnection(code=1000, reason='done')))\n"
    "ev = next_event()\n"
    "assert isinstance(ev, CloseConnection) and ev.code == 1000 and ev.reason == 'done', ev\n"
    "print('wsproto: handshake, 11 messages, a ping and the close handshake echoed',\n"
    "      file=sys.stderr)\n";

typedef struct peer {
    pid_t pid;
    int to, from; /* its stdin, its stdout */
} peer;

static void peer_start(peer *p, const char *mode)
{
    int in[2], out[2];
    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(out), 0);
    p->pid = fork();
    assert_true(p->pid >= 0);
    if (p->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]), close(in[1]), close(out[0]), close(out[1]);
        /* argv[0] is the path: Python finds its prefix (and Debian's
         * dist-packages, where wsproto is) from it, and a bare "python3"
         * would be looked up on PATH, where another Python may come first. */
        execl("/usr/bin/python3", "/usr/bin/python3", "-c", py_peer, mode, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    p->to = in[1];
    p->from = out[0];
}

/* Reads what the peer wrote (at most cap bytes), waiting at most 30 s;
 * 0 at its end. */
static size_t peer_read(peer *p, uint8_t *buf, size_t cap)
{
    struct pollfd pfd = {p->from, POLLIN, 0};
    ssize_t n;
    assert_int_equal(poll(&pfd, 1, 30000), 1);
    n = read(p->from, buf, cap);
    assert_true(n >= 0);
    return (size_t)n;
}

static void peer_write(peer *p, const void *data, size_t len)
{
    const uint8_t *b = data;
    while (len > 0) {
        ssize_t n = write(p->to, b, len);
        assert_true(n > 0);
        b += n;
        len -= (size_t)n;
    }
}

/* A server frame of payload (one piece) to the peer. */
static void peer_frame(peer *p, unsigned opcode, const void *payload, size_t len)
{
    uint8_t h[NEA__WS_HEAD_MAX];
    size_t n = nea__ws_frame_head(h, opcode, true, len, NULL);
    assert_true(n > 0);
    peer_write(p, h, n);
    peer_write(p, payload, len);
}

/* Reads the opening handshake, answers it, then echoes every message,
 * answers pings and closes, until a close or an error. Returns the close
 * code it sent. */
static unsigned echo_server(peer *p)
{
    static uint8_t buf[1 << 16], msg[1 << 17];
    char *lines[16] = {NULL}, *eoh, head[256];
    nea__hdr hdrs[16];
    nea__ws_handshake hs;
    nea__ws_parser ps;
    size_t have = 0, n = 0, msg_len = 0;

    /* The request head (the test's own minimal reader). */
    for (;;) {
        size_t got = peer_read(p, buf + have, sizeof(buf) - have - 1);
        assert_true(got > 0);
        have += got;
        buf[have] = '\0';
        if ((eoh = strstr((char *)buf, "\r\n\r\n")) != NULL) {
            break;
        }
    }
    eoh[2] = '\0';
    for (char *s = strtok((char *)buf, "\r\n"); s != NULL && n < 16; s = strtok(NULL, "\r\n")) {
        lines[n++] = s;
    }
    assert_true(n > 1);
    assert_non_null(strstr(lines[0], "GET /ws HTTP/1.1"));
    for (size_t i = 1; i < n; i++) {
        char *colon = strchr(lines[i], ':');
        assert_non_null(colon);
        *colon = '\0';
        hdrs[i - 1].name = lines[i];
        hdrs[i - 1].value = colon + 1 + strspn(colon + 1, " \t");
    }
    assert_int_equal(nea__ws_handshake_check("GET", 1, 1, hdrs, n - 1, &hs), 0);
    assert_string_equal(hs.protocols, "chat");
    n = nea__ws_accept_head(head, sizeof(head), hs.accept, "chat");
    assert_true(n > 0);
    peer_write(p, head, n);

    /* Frames (wsproto sends nothing before our answer: the rest of buf is
     * empty). */
    nea__ws_parser_init(&ps, false, sizeof(msg));
    for (;;) {
        size_t len = peer_read(p, buf, sizeof(buf)), at = 0;
        if (len == 0) {
            return 0; /* the peer left without a close */
        }
        while (at < len) {
            nea__ws_event ev;
            uint8_t pl[NEA__WS_CONTROL_MAX];
            size_t pl_len;
            at += nea__ws_parse(&ps, buf + at, len - at, &ev);
            switch (ev.type) {
            case NEA__WS_EV_DATA:
                memcpy(msg + msg_len, ev.data, ev.len);
                msg_len += ev.len;
                if (ev.last) {
                    peer_frame(p, ev.opcode, msg, msg_len);
                    msg_len = 0;
                }
                break;
            case NEA__WS_EV_PING:
                peer_frame(p, NEA__WS_PONG, ev.data, ev.len);
                break;
            case NEA__WS_EV_CLOSE:
            case NEA__WS_EV_ERROR:
                /* Echo the code (none for 1005, which is never sent). */
                assert_int_equal(
                    nea__ws_close_payload(pl, ev.code == 1005 ? 0 : ev.code, (const char *)ev.data,
                                          ev.type == NEA__WS_EV_CLOSE ? ev.len : 0, &pl_len),
                    0);
                peer_frame(p, NEA__WS_CLOSE, pl, pl_len);
                return ev.code;
            default:
                break;
            }
        }
    }
}

static void peer_end(peer *p)
{
    int status;
    close(p->to);
    close(p->from);
    assert_int_equal(waitpid(p->pid, &status, 0), p->pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_wsproto_client(void **state)
{
    peer p;
    (void)state;
    if (system("/usr/bin/python3 -c 'import wsproto' 2>/dev/null") != 0) {
        print_message("python3-wsproto is not installed (scripts/install-deps.sh)\n");
        skip();
    }
    signal(SIGPIPE, SIG_IGN); /* a peer that died is reported by its exit status */
    peer_start(&p, "good");
    assert_int_equal(echo_server(&p), 1000);
    peer_end(&p);
    peer_start(&p, "bad");
    assert_int_equal(echo_server(&p), 1007);
    peer_end(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha1_rfc3174),
        cmocka_unit_test(test_sha1_split_updates),
        cmocka_unit_test(test_base64_rfc4648),
        cmocka_unit_test(test_base64_refusals),
        cmocka_unit_test(test_sha1_base64_against_python),
        cmocka_unit_test(test_accept_key_rfc6455),
        cmocka_unit_test(test_handshake_check),
        cmocka_unit_test(test_accept_head),
        cmocka_unit_test(test_utf8_examples),
        cmocka_unit_test(test_utf8_exhaustive),
        cmocka_unit_test(test_rfc6455_examples),
        cmocka_unit_test(test_messages_and_fragments),
        cmocka_unit_test(test_protocol_errors),
        cmocka_unit_test(test_utf8_fails_fast),
        cmocka_unit_test(test_close_frames),
        cmocka_unit_test(test_max_message),
        cmocka_unit_test(test_frame_heads),
        cmocka_unit_test(test_mask_any_offset),
        cmocka_unit_test(test_close_payloads),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_wsproto_client),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
