/*
 * fuzz_ws.c - libFuzzer target for the WebSocket protocol core (lib/ws.c).
 *
 * The first byte picks what the rest of the input is:
 *   0  frames from a client (the server's parser), max_message from byte 1
 *   1  frames from a server (a client's parser), max_message from byte 1
 *   2  an opening handshake: header lines "Name: value\n"
 *   3  UTF-8 and close payloads
 * Invariants checked (abort on violation, so the fuzzer records the input):
 *   - frames: the events are the same whether the input is parsed whole or
 *     in pieces cut at offsets drawn from byte 2 (one byte at a time when
 *     it is 0); each DATA piece lies inside the input; text messages
 *     delivered are valid UTF-8 by an independent decoder; nothing follows
 *     an error or a close; the parser never consumes more than it is given;
 *   - handshake: an accepted one has a 28-character accept key and a
 *     16-byte nonce; a refused one says why and answers 400, 405 or 426;
 *     base64 that decodes re-encodes to the same text;
 *   - UTF-8: the incremental validator agrees with the decoder, whole and
 *     split; a close payload built from the input parses back.
 */
#include "../support/utf8_ref.h"
#include "ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_ws: invariant violated: %s (line %d)\n", #cond, __LINE__);       \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define FZ_MAX_INPUT (1u << 20)

/* What a parse reported, independent of how the input was split. */
typedef struct summary {
    uint32_t hash; /* over every event and every complete message's bytes */
    unsigned events;
    uint8_t msg[FZ_MAX_INPUT];
    size_t msg_len;
    bool in_msg, over;
} summary;

static void mix(summary *s, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        s->hash = (s->hash ^ b[i]) * 16777619u;
    }
}

static void note(summary *s, const nea__ws_event *ev, const uint8_t *buf, size_t buf_len)
{
    uint32_t tag = (uint32_t)ev->type << 16 | ev->code;
    CHECK(!s->over);
    switch (ev->type) {
    case NEA__WS_EV_DATA:
        CHECK(ev->data >= buf && ev->data + ev->len <= buf + buf_len);
        CHECK(ev->first == !s->in_msg);
        CHECK(ev->len > 0 || ev->last);
        CHECK(s->msg_len + ev->len <= sizeof(s->msg));
        memcpy(s->msg + s->msg_len, ev->data, ev->len);
        s->msg_len += ev->len;
        s->in_msg = true;
        CHECK(ev->message_len >= s->msg_len);
        if (ev->last) {
            CHECK(ev->message_len == s->msg_len);
            CHECK(ev->opcode != NEA__WS_TEXT || ref_utf8(s->msg, s->msg_len));
            tag |= ev->opcode << 8;
            mix(s, &tag, sizeof(tag));
            mix(s, s->msg, s->msg_len);
            s->events++;
            s->msg_len = 0;
            s->in_msg = false;
        }
        return;
    case NEA__WS_EV_PING:
    case NEA__WS_EV_PONG:
    case NEA__WS_EV_CLOSE:
        CHECK(ev->len <= NEA__WS_CONTROL_MAX);
        CHECK(ev->type != NEA__WS_EV_CLOSE || ref_utf8(ev->data, ev->len));
        CHECK(ev->type != NEA__WS_EV_CLOSE || ev->code == 1005 || nea__ws_close_code_ok(ev->code));
        break;
    case NEA__WS_EV_ERROR:
        CHECK(ev->code == 1002 || ev->code == 1007 || ev->code == 1009);
        CHECK(ev->why != NULL);
        break;
    default:
        CHECK(false);
    }
    mix(s, &tag, sizeof(tag));
    mix(s, ev->data, ev->len);
    s->events++;
    s->over = ev->type == NEA__WS_EV_CLOSE || ev->type == NEA__WS_EV_ERROR;
}

static uint8_t copy[FZ_MAX_INPUT];
static summary whole, split;

/* Parses in[0..len) in pieces of the sizes step() draws (all at once when
 * seed is NULL). */
static void parse(const uint8_t *in, size_t len, bool client, uint64_t max, const uint8_t *seed,
                  size_t seed_len, summary *s)
{
    nea__ws_parser p;
    size_t at = 0, k = 0;
    memcpy(copy, in, len);
    s->hash = 2166136261u;
    s->events = 0;
    s->msg_len = 0;
    s->in_msg = s->over = false;
    nea__ws_parser_init(&p, client, max);
    while (at < len || (at == 0 && len == 0)) {
        size_t piece = len - at;
        if (seed != NULL) {
            piece = seed_len > 0 ? (size_t)seed[k++ % seed_len] % 17 : 1;
            piece = piece == 0 ? 1 : piece;
            piece = piece < len - at ? piece : len - at;
        }
        while (piece > 0 || len == 0) {
            nea__ws_event ev;
            size_t n = nea__ws_parse(&p, copy + at, piece, &ev);
            CHECK(n <= piece);
            at += n;
            piece -= n;
            if (ev.type == NEA__WS_EV_NEED) {
                CHECK(piece == 0);
                break;
            }
            if (s->over) {
                CHECK(ev.type == NEA__WS_EV_ERROR && piece == 0); /* sticky */
                break;
            }
            note(s, &ev, copy, len);
        }
        if (len == 0) {
            break;
        }
    }
}

static void frames(const uint8_t *data, size_t size, bool client)
{
    uint64_t max;
    const uint8_t *seed, *in;
    size_t seed_len, len;
    if (size < 2) {
        return;
    }
    /* byte 0: the limit (0: none; else up to 2^(b/4) bytes); byte 1: how
     * many seed bytes follow. */
    max = data[0] == 0 ? 0 : (uint64_t)data[0] * ((uint64_t)1 << (data[0] / 16));
    seed_len = data[1] % 8;
    if (size < 2 + seed_len) {
        return;
    }
    seed = data + 2;
    in = data + 2 + seed_len;
    len = size - 2 - seed_len;
    if (len > FZ_MAX_INPUT) {
        return;
    }
    parse(in, len, client, max, NULL, 0, &whole);
    parse(in, len, client, max, seed, seed_len, &split);
    CHECK(whole.hash == split.hash && whole.events == split.events && whole.over == split.over);
}

static void handshake(const uint8_t *data, size_t size)
{
    static char text[4096];
    nea__hdr hdrs[32];
    nea__ws_handshake hs;
    size_t n = 0, len = size < sizeof(text) - 1 ? size : sizeof(text) - 1;
    char *line, *save = NULL;
    int rc;

    memcpy(text, data, len);
    text[len] = '\0';
    for (line = strtok_r(text, "\n", &save); line != NULL && n < 32;
         line = strtok_r(NULL, "\n", &save)) {
        char *colon = strchr(line, ':');
        if (colon == NULL) {
            continue;
        }
        *colon = '\0';
        hdrs[n].name = line;
        hdrs[n].value = colon + 1;
        n++;
    }
    rc = nea__ws_handshake_check(n > 0 && strlen(hdrs[0].name) == 1 ? "POST" : "GET", 1,
                                 len % 3 == 0 ? 0 : 1, hdrs, n, &hs);
    if (rc == 0) {
        char head[512];
        CHECK(strlen(hs.accept) == NEA__WS_ACCEPT_LEN);
        CHECK(nea__ws_accept_head(head, sizeof(head), hs.accept, NULL) > 0);
    } else {
        CHECK(rc == 400 || rc == 405 || rc == 426);
        CHECK(hs.why != NULL);
    }
    /* Canonical base64 round-trips. */
    {
        static uint8_t bin[4096];
        static char back[8192];
        size_t blen;
        if (nea__base64_decode(bin, sizeof(bin), (const char *)data, size < 4096 ? size : 4096,
                               &blen) == 0) {
            CHECK(nea__base64_encode(back, bin, blen) == (size < 4096 ? size : 4096));
            CHECK(memcmp(back, data, size < 4096 ? size : 4096) == 0);
        }
    }
}

static void utf8_and_close(const uint8_t *data, size_t size)
{
    nea__utf8 u;
    bool ok, want = ref_utf8(data, size);
    size_t cut = size > 0 ? data[0] % (size + 1) : 0;

    nea__utf8_init(&u);
    ok = nea__utf8_feed(&u, data, size) && nea__utf8_complete(&u);
    CHECK(ok == want);
    nea__utf8_init(&u);
    ok = nea__utf8_feed(&u, data, cut) && nea__utf8_feed(&u, data + cut, size - cut) &&
         nea__utf8_complete(&u);
    CHECK(ok == want);

    /* A close payload from the input parses back as a server's close. */
    if (size >= 2) {
        unsigned code = (unsigned)data[0] << 8 | data[1];
        uint8_t pl[NEA__WS_CONTROL_MAX], frame[NEA__WS_HEAD_MAX + NEA__WS_CONTROL_MAX];
        size_t pl_len, h;
        if (nea__ws_close_payload(pl, code, (const char *)data + 2, size - 2, &pl_len) == 0) {
            nea__ws_parser p;
            nea__ws_event ev;
            bool none = code == 0 && size == 2; /* no status: an empty payload */
            CHECK(none || (nea__ws_close_code_ok(code) && ref_utf8(data + 2, size - 2)));
            CHECK(none ? pl_len == 0 : pl_len >= 2 && pl_len <= NEA__WS_CONTROL_MAX);
            h = nea__ws_frame_head(frame, NEA__WS_CLOSE, true, pl_len, NULL);
            CHECK(h == 2);
            memcpy(frame + h, pl, pl_len);
            nea__ws_parser_init(&p, true, 0);
            CHECK(nea__ws_parse(&p, frame, h + pl_len, &ev) == h + pl_len);
            CHECK(ev.type == NEA__WS_EV_CLOSE && ev.code == (none ? 1005u : code));
            CHECK(ev.len == (none ? 0 : pl_len - 2) &&
                  (ev.len == 0 || memcmp(ev.data, data + 2, ev.len) == 0));
        } else {
            CHECK(!nea__ws_close_code_ok(code) || !ref_utf8(data + 2, size - 2));
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    switch (data[0] % 4) {
    case 0:
        frames(data + 1, size - 1, false);
        break;
    case 1:
        frames(data + 1, size - 1, true);
        break;
    case 2:
        handshake(data + 1, size - 1);
        break;
    default:
        utf8_and_close(data + 1, size - 1);
        break;
    }
    return 0;
}
