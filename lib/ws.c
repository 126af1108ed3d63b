/*
 * ws.c - the WebSocket protocol core (RFC 6455): everything about the
 * protocol that needs no socket, so a connection owner can drive it with
 * whatever bytes arrive and test it without one.
 *
 * Frames in: nea__ws_parse is a resumable state machine over the frame
 * head (copied into the parser as it arrives, at most 14 bytes), the
 * payload of data frames (unmasked in place and handed out as pieces, never
 * copied) and the payload of control frames (at most 125 bytes, gathered in
 * the parser so a ping can be echoed and a close validated whole). Every
 * rule a server must enforce fails the connection with the close code
 * RFC 6455 names: a client frame that is not masked, reserved bits without
 * an extension, reserved opcodes, fragmented or oversized control frames, a
 * continuation without a message or a message inside another, lengths not
 * in the fewest bytes or with the top bit set, a close payload of one byte
 * or with a code that may not be sent (1002); text that is not UTF-8,
 * checked across fragments as it arrives, and close reasons (1007); a
 * message announcing more than max_message bytes, checked at each frame
 * head before its payload (1009). A failure is sticky.
 *
 * Frames out: nea__ws_frame_head writes the head for a payload the owner
 * sends next to it (no copy); close payloads are built with a valid code
 * and a reason cut at a character boundary.
 *
 * The opening handshake: nea__ws_handshake_check validates the Upgrade
 * request and computes Sec-WebSocket-Accept with the SHA-1 (RFC 3174) and
 * base64 (RFC 4648) below, which exist only for it.
 *
 * Invariants: no heap, no I/O, no global state; the parser's events do not
 * depend on how the input is split (test_ws and fuzz_ws check this at every
 * offset).
 */
#include "ws.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* --- SHA-1 ------------------------------------------------------------------------- */

static uint32_t rol32(uint32_t x, unsigned n)
{
    return (x << n) | (x >> (32 - n));
}

static uint32_t load_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* One 64-byte block (RFC 3174 section 6.1, method 1). */
static void sha1_block(uint32_t h[5], const uint8_t *p)
{
    uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (unsigned t = 0; t < 16; t++) {
        w[t] = load_be32(p + 4 * t);
    }
    for (unsigned t = 16; t < 80; t++) {
        w[t] = rol32(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
    }
    for (unsigned t = 0; t < 80; t++) {
        uint32_t f, k, tmp;
        if (t < 20) {
            f = (b & c) | (~b & d);
            k = 0x5A827999u;
        } else if (t < 40) {
            f = b ^ c ^ d;
            k = 0x6ED9EBA1u;
        } else if (t < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8F1BBCDCu;
        } else {
            f = b ^ c ^ d;
            k = 0xCA62C1D6u;
        }
        tmp = rol32(a, 5) + f + e + w[t] + k;
        e = d;
        d = c;
        c = rol32(b, 30);
        b = a;
        a = tmp;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

void nea__sha1_init(nea__sha1 *s)
{
    s->h[0] = 0x67452301u;
    s->h[1] = 0xEFCDAB89u;
    s->h[2] = 0x98BADCFEu;
    s->h[3] = 0x10325476u;
    s->h[4] = 0xC3D2E1F0u;
    s->bytes = 0;
    s->block_len = 0;
}

void nea__sha1_update(nea__sha1 *s, const void *data, size_t len)
{
    const uint8_t *p = data;
    s->bytes += len;
    while (len > 0) {
        size_t take = 64 - s->block_len < len ? 64 - s->block_len : len;
        if (s->block_len == 0 && len >= 64) {
            sha1_block(s->h, p); /* whole blocks straight from the input */
            take = 64;
        } else {
            memcpy(s->block + s->block_len, p, take);
            s->block_len += take;
            if (s->block_len == 64) {
                sha1_block(s->h, s->block);
                s->block_len = 0;
            }
        }
        p += take;
        len -= take;
    }
}

void nea__sha1_final(nea__sha1 *s, uint8_t digest[20])
{
    uint64_t bits = s->bytes * 8;
    uint8_t pad[72] = {0x80};
    size_t pad_len = (s->block_len < 56 ? 56 : 120) - s->block_len;
    for (unsigned i = 0; i < 8; i++) {
        pad[pad_len + i] = (uint8_t)(bits >> (56 - 8 * i));
    }
    nea__sha1_update(s, pad, pad_len + 8);
    for (unsigned i = 0; i < 5; i++) {
        digest[4 * i] = (uint8_t)(s->h[i] >> 24);
        digest[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        digest[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        digest[4 * i + 3] = (uint8_t)s->h[i];
    }
}

/* --- base64 ---------------------------------------------------------------------------- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t nea__base64_encode(char *out, const uint8_t *in, size_t len)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = b64_alphabet[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < len ? b64_alphabet[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

int nea__base64_decode(uint8_t *out, size_t cap, const char *in, size_t len, size_t *out_len)
{
    size_t o = 0;
    if (len % 4 != 0) {
        return UV_EINVAL;
    }
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        unsigned pad = 0;
        bool last = i + 4 == len;
        for (unsigned j = 0; j < 4; j++) {
            v[j] = b64_value(in[i + j]);
            if (in[i + j] == '=' && last && j >= 2) {
                pad++;
                v[j] = 0;
            } else if (v[j] < 0 || pad > 0) {
                return UV_EINVAL; /* outside the alphabet, or data after '=' */
            }
        }
        uint32_t bits =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        if ((pad == 2 && (bits & 0xFFFF) != 0) || (pad == 1 && (bits & 0xFF) != 0)) {
            return UV_EINVAL; /* unused bits set: not the canonical encoding */
        }
        if (o + 3 - pad > cap) {
            return UV_EINVAL;
        }
        out[o++] = (uint8_t)(bits >> 16);
        if (pad < 2) {
            out[o++] = (uint8_t)(bits >> 8);
        }
        if (pad < 1) {
            out[o++] = (uint8_t)bits;
        }
    }
    *out_len = o;
    return 0;
}

/* --- UTF-8 ------------------------------------------------------------------------------ */

void nea__utf8_init(nea__utf8 *u)
{
    u->need = 0;
    u->lo = 0x80;
    u->hi = 0xBF;
}

bool nea__utf8_feed(nea__utf8 *u, const uint8_t *p, size_t len)
{
    unsigned need = u->need, lo = u->lo, hi = u->hi;
    size_t i = 0;
    while (i < len) {
        unsigned b = p[i];
        if (need == 0) {
            if (b < 0x80) {
                i++;
                for (; i + 8 <= len; i += 8) { /* ASCII runs, eight bytes at a time */
                    uint64_t w;
                    memcpy(&w, p + i, 8);
                    if ((w & 0x8080808080808080u) != 0) {
                        break;
                    }
                }
                continue;
            }
            lo = 0x80;
            hi = 0xBF;
            if (b >= 0xC2 && b <= 0xDF) {
                need = 1;
            } else if (b >= 0xE0 && b <= 0xEF) {
                need = 2;
                lo = b == 0xE0 ? 0xA0 : 0x80; /* E0 80..9F would be overlong */
                hi = b == 0xED ? 0x9F : 0xBF; /* ED A0..BF would be a surrogate */
            } else if (b >= 0xF0 && b <= 0xF4) {
                need = 3;
                lo = b == 0xF0 ? 0x90 : 0x80; /* F0 80..8F would be overlong */
                hi = b == 0xF4 ? 0x8F : 0xBF; /* F4 90.. would pass U+10FFFF */
            } else {
                return false; /* a continuation byte, C0, C1 or F5..FF */
            }
        } else {
            if (b < lo || b > hi) {
                return false;
            }
            need--;
            lo = 0x80;
            hi = 0xBF;
        }
        i++;
    }
    u->need = (uint8_t)need;
    u->lo = (uint8_t)lo;
    u->hi = (uint8_t)hi;
    return true;
}

bool nea__utf8_complete(const nea__utf8 *u)
{
    return u->need == 0;
}

static bool utf8_valid(const uint8_t *p, size_t len)
{
    nea__utf8 u;
    nea__utf8_init(&u);
    return nea__utf8_feed(&u, p, len) && nea__utf8_complete(&u);
}

/* --- frames in ---------------------------------------------------------------------------- */

enum { ST_HEAD, ST_DATA, ST_CONTROL, ST_CLOSED, ST_FAILED };

void nea__ws_parser_init(nea__ws_parser *p, bool client, uint64_t max_message)
{
    memset(p, 0, sizeof(*p));
    p->client = client;
    p->max_message = max_message;
    p->state = ST_HEAD;
    nea__utf8_init(&p->utf8);
}

bool nea__ws_parser_between(const nea__ws_parser *p)
{
    return p->state == ST_HEAD && p->head_len == 0 && p->msg_opcode == 0;
}

void nea__ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t pos)
{
    uint8_t key[8];
    uint64_t word;
    size_t i = 0;
    for (unsigned j = 0; j < 8; j++) {
        key[j] = mask[(pos + j) & 3];
    }
    memcpy(&word, key, 8);
    for (; i + 8 <= len; i += 8) {
        uint64_t x;
        memcpy(&x, data + i, 8);
        x ^= word;
        memcpy(data + i, &x, 8);
    }
    for (; i < len; i++) {
        data[i] ^= key[i & 7];
    }
}

static void next_frame(nea__ws_parser *p)
{
    p->state = ST_HEAD;
    p->head_len = 0;
    p->head_need = 0;
}

static size_t fail(nea__ws_parser *p, nea__ws_event *ev, unsigned code, const char *why,
                   size_t consumed)
{
    p->state = ST_FAILED;
    p->fail_code = code;
    p->fail_why = why;
    ev->type = NEA__WS_EV_ERROR;
    ev->code = code;
    ev->why = why;
    return consumed;
}

static bool is_control(unsigned opcode)
{
    return (opcode & 0x8) != 0;
}

/* The first two bytes of a head are in: the rules they decide, and how
 * long the rest of the head is. NULL, or why the frame is refused. */
static const char *head_start(nea__ws_parser *p)
{
    unsigned b0 = p->head[0], b1 = p->head[1], op = b0 & 0x0F, len7 = b1 & 0x7F;
    bool masked = (b1 & 0x80) != 0;

    if ((b0 & 0x70) != 0) {
        return "reserved bits set (no extension was negotiated)";
    }
    if (op != NEA__WS_CONT && op != NEA__WS_TEXT && op != NEA__WS_BINARY && op != NEA__WS_CLOSE &&
        op != NEA__WS_PING && op != NEA__WS_PONG) {
        return "reserved opcode";
    }
    p->opcode = (uint8_t)op;
    p->fin = (b0 & 0x80) != 0;
    if (is_control(op)) {
        if (!p->fin) {
            return "fragmented control frame";
        }
        if (len7 > NEA__WS_CONTROL_MAX) {
            return "control frame longer than 125 bytes";
        }
    } else if (op == NEA__WS_CONT && p->msg_opcode == 0) {
        return "continuation frame outside a fragmented message";
    } else if (op != NEA__WS_CONT && p->msg_opcode != 0) {
        return "new data message inside a fragmented one";
    }
    if (masked == p->client) {
        return p->client ? "masked frame from a server" : "unmasked frame from a client";
    }
    p->head_need = (uint8_t)(2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (masked ? 4 : 0));
    return NULL;
}

/* The whole head is in: its length and mask key. NULL, or why refused. */
static const char *head_done(nea__ws_parser *p, unsigned *code)
{
    unsigned len7 = p->head[1] & 0x7F;
    const uint8_t *q = p->head + 2;
    uint64_t len = len7;

    *code = NEA__WS_PROTOCOL_ERROR;
    if (len7 == 126) {
        len = (uint64_t)q[0] << 8 | q[1];
        q += 2;
        if (len < 126) {
            return "length not in the fewest bytes";
        }
    } else if (len7 == 127) {
        len = 0;
        for (unsigned i = 0; i < 8; i++) {
            len = len << 8 | q[i];
        }
        q += 8;
        if (len >> 63 != 0) {
            return "64-bit length with the most significant bit set";
        }
        if (len <= 0xFFFF) {
            return "length not in the fewest bytes";
        }
    }
    if (!p->client) {
        memcpy(p->mask, q, 4);
    }
    p->frame_len = p->frame_left = len;
    if (is_control(p->opcode)) {
        p->ctl_len = 0;
        p->state = ST_CONTROL;
        return NULL;
    }
    if (p->opcode != NEA__WS_CONT) {
        p->msg_opcode = p->opcode;
        p->msg_len = 0;
        p->msg_delivered = false;
        nea__utf8_init(&p->utf8);
    }
    if (p->max_message != 0 && (p->msg_len > p->max_message || len > p->max_message - p->msg_len)) {
        *code = NEA__WS_TOO_BIG;
        return "message larger than the limit";
    }
    p->msg_len += len;
    p->state = ST_DATA;
    return NULL;
}

/* A data piece (possibly empty, at the end of a final frame) as an event. */
static void data_event(nea__ws_parser *p, nea__ws_event *ev, const uint8_t *data, size_t len)
{
    ev->type = NEA__WS_EV_DATA;
    ev->opcode = p->msg_opcode;
    ev->first = !p->msg_delivered;
    ev->last = p->frame_left == 0 && p->fin;
    ev->data = data;
    ev->len = len;
    ev->message_len = p->msg_len;
    p->msg_delivered = true;
    if (p->frame_left == 0) {
        next_frame(p);
        if (p->fin) {
            p->msg_opcode = 0;
        }
    }
}

/* A complete control frame as an event; the close frame is validated. */
static size_t control_event(nea__ws_parser *p, nea__ws_event *ev, size_t consumed)
{
    next_frame(p);
    ev->data = p->ctl;
    ev->len = p->ctl_len;
    if (p->opcode == NEA__WS_PING) {
        ev->type = NEA__WS_EV_PING;
        return consumed;
    }
    if (p->opcode == NEA__WS_PONG) {
        ev->type = NEA__WS_EV_PONG;
        return consumed;
    }
    ev->data = NULL;
    ev->len = 0;
    ev->code = NEA__WS_NO_STATUS;
    if (p->ctl_len == 1) {
        return fail(p, ev, NEA__WS_PROTOCOL_ERROR, "close payload of one byte", consumed);
    }
    if (p->ctl_len >= 2) {
        ev->code = (unsigned)p->ctl[0] << 8 | p->ctl[1];
        if (!nea__ws_close_code_ok(ev->code)) {
            return fail(p, ev, NEA__WS_PROTOCOL_ERROR, "close code that may not be sent", consumed);
        }
        if (!utf8_valid(p->ctl + 2, p->ctl_len - 2u)) {
            return fail(p, ev, NEA__WS_INVALID_DATA, "close reason is not UTF-8", consumed);
        }
        ev->data = p->ctl + 2;
        ev->len = p->ctl_len - 2u;
    }
    ev->type = NEA__WS_EV_CLOSE;
    p->state = ST_CLOSED;
    return consumed;
}

size_t nea__ws_parse(nea__ws_parser *p, uint8_t *data, size_t len, nea__ws_event *ev)
{
    size_t i = 0;

    memset(ev, 0, sizeof(*ev));
    ev->type = NEA__WS_EV_NEED;
    if (p->state == ST_FAILED) {
        return fail(p, ev, p->fail_code, p->fail_why, len);
    }
    if (p->state == ST_CLOSED || len == 0) {
        return len; /* no event needs zero bytes: each is completed by the last byte it takes */
    }
    for (;;) {
        if (p->state == ST_HEAD) {
            const char *why;
            unsigned code;
            bool start = p->head_need == 0; /* the head's length is not known yet */
            size_t want = start ? 2 : p->head_need, take;
            take = want - p->head_len < len - i ? want - p->head_len : len - i;
            memcpy(p->head + p->head_len, data + i, take);
            p->head_len = (uint8_t)(p->head_len + take);
            i += take;
            if (p->head_len < want) {
                return i; /* == len */
            }
            if (start) {
                why = head_start(p);
                if (why != NULL) {
                    return fail(p, ev, NEA__WS_PROTOCOL_ERROR, why, i);
                }
                continue; /* the rest of the head (there is always some, or none) */
            }
            why = head_done(p, &code);
            if (why != NULL) {
                return fail(p, ev, code, why, i);
            }
            if (p->state == ST_DATA && p->frame_left == 0) {
                if (!p->fin) {
                    next_frame(p); /* an empty fragment: nothing to say */
                    continue;
                }
                if (p->msg_opcode == NEA__WS_TEXT && !nea__utf8_complete(&p->utf8)) {
                    return fail(p, ev, NEA__WS_INVALID_DATA, "text ends inside a character", i);
                }
                data_event(p, ev, data + i, 0);
                return i;
            }
        } else if (p->state == ST_DATA) {
            size_t n = p->frame_left < len - i ? (size_t)p->frame_left : len - i;
            uint8_t *piece = data + i;
            if (n == 0) {
                return i; /* == len */
            }
            if (!p->client) {
                nea__ws_mask(piece, n, p->mask, p->frame_len - p->frame_left);
            }
            if (p->msg_opcode == NEA__WS_TEXT && !nea__utf8_feed(&p->utf8, piece, n)) {
                return fail(p, ev, NEA__WS_INVALID_DATA, "text is not UTF-8", i);
            }
            p->frame_left -= n;
            i += n;
            if (p->frame_left == 0 && p->fin && p->msg_opcode == NEA__WS_TEXT &&
                !nea__utf8_complete(&p->utf8)) {
                return fail(p, ev, NEA__WS_INVALID_DATA, "text ends inside a character", i);
            }
            data_event(p, ev, piece, n);
            return i;
        } else { /* ST_CONTROL */
            size_t n = p->frame_left < len - i ? (size_t)p->frame_left : len - i;
            memcpy(p->ctl + p->ctl_len, data + i, n);
            if (!p->client) {
                nea__ws_mask(p->ctl + p->ctl_len, n, p->mask, p->ctl_len);
            }
            p->ctl_len = (uint8_t)(p->ctl_len + n);
            p->frame_left -= n;
            i += n;
            if (p->frame_left > 0) {
                return i; /* == len */
            }
            return control_event(p, ev, i);
        }
    }
}

/* --- frames out --------------------------------------------------------------------------- */

size_t nea__ws_frame_head(uint8_t out[NEA__WS_HEAD_MAX], unsigned opcode, bool fin, uint64_t len,
                          const uint8_t *mask)
{
    size_t n = 2;
    if (opcode != NEA__WS_CONT && opcode != NEA__WS_TEXT && opcode != NEA__WS_BINARY &&
        opcode != NEA__WS_CLOSE && opcode != NEA__WS_PING && opcode != NEA__WS_PONG) {
        return 0;
    }
    if ((is_control(opcode) && (!fin || len > NEA__WS_CONTROL_MAX)) || len >> 63 != 0) {
        return 0;
    }
    out[0] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    if (len < 126) {
        out[1] = (uint8_t)len;
    } else if (len <= 0xFFFF) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        n = 4;
    } else {
        out[1] = 127;
        for (unsigned i = 0; i < 8; i++) {
            out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        }
        n = 10;
    }
    if (mask != NULL) {
        out[1] |= 0x80;
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

bool nea__ws_close_code_ok(unsigned code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

int nea__ws_close_payload(uint8_t out[NEA__WS_CONTROL_MAX], unsigned code, const char *reason,
                          size_t reason_len, size_t *out_len)
{
    size_t cut = reason_len < NEA__WS_REASON_MAX ? reason_len : NEA__WS_REASON_MAX;
    if (code == 0 && reason_len == 0) {
        *out_len = 0;
        return 0;
    }
    if (!nea__ws_close_code_ok(code) || (reason == NULL && reason_len > 0) ||
        !utf8_valid((const uint8_t *)reason, reason_len)) {
        return UV_EINVAL;
    }
    while (cut < reason_len && cut > 0 && ((unsigned char)reason[cut] & 0xC0) == 0x80) {
        cut--; /* reason[cut] continues a character that would be cut */
    }
    out[0] = (uint8_t)(code >> 8);
    out[1] = (uint8_t)code;
    if (cut > 0) {
        memcpy(out + 2, reason, cut);
    }
    *out_len = cut + 2;
    return 0;
}

/* --- the opening handshake ----------------------------------------------------------------- */

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

void nea__ws_accept_key(const char *key, size_t key_len, char out[NEA__WS_ACCEPT_LEN + 1])
{
    nea__sha1 s;
    uint8_t digest[20];
    nea__sha1_init(&s);
    nea__sha1_update(&s, key, key_len);
    nea__sha1_update(&s, ws_guid, sizeof(ws_guid) - 1);
    nea__sha1_final(&s, digest);
    nea__base64_encode(out, digest, sizeof(digest));
}

/* Whether the comma-separated list value (OWS around elements) holds
 * token, case-insensitively. */
static bool token_listed(const char *value, const char *token)
{
    size_t n = strlen(token);
    const char *p = value;
    while (*p != '\0') {
        const char *end;
        while (*p == ' ' || *p == '\t' || *p == ',') {
            p++;
        }
        end = p;
        while (*end != '\0' && *end != ',') {
            end++;
        }
        if (strncasecmp(p, token, n) == 0) {
            const char *q = p + n;
            while (*q == ' ' || *q == '\t') {
                q++;
            }
            if (q == end) {
                return true;
            }
        }
        p = end;
    }
    return false;
}

static int refuse(nea__ws_handshake *out, int status, const char *why)
{
    out->why = why;
    return status;
}

int nea__ws_handshake_check(const char *method, int http_major, int http_minor,
                            const nea__hdr *hdrs, size_t n, nea__ws_handshake *out)
{
    const char *key = NULL, *version = NULL;
    unsigned keys = 0, versions = 0;
    bool upgrade = false, connection = false;
    uint8_t nonce[16];
    size_t nonce_len;

    memset(out, 0, sizeof(*out));
    if (strcmp(method, "GET") != 0) {
        return refuse(out, 405, "the opening handshake must be a GET");
    }
    if (http_major < 1 || (http_major == 1 && http_minor < 1)) {
        return refuse(out, 400, "the opening handshake needs HTTP/1.1");
    }
    for (size_t i = 0; i < n; i++) {
        const char *name = hdrs[i].name, *value = hdrs[i].value;
        if (strcasecmp(name, "Upgrade") == 0) {
            upgrade = upgrade || token_listed(value, "websocket");
        } else if (strcasecmp(name, "Connection") == 0) {
            connection = connection || token_listed(value, "upgrade");
        } else if (strcasecmp(name, "Sec-WebSocket-Key") == 0) {
            key = value;
            keys++;
        } else if (strcasecmp(name, "Sec-WebSocket-Version") == 0) {
            version = value;
            versions++;
        } else if (strcasecmp(name, "Sec-WebSocket-Protocol") == 0 && out->protocols == NULL) {
            out->protocols = value;
        } else if (strcasecmp(name, "Origin") == 0 && out->origin == NULL) {
            out->origin = value;
        }
    }
    if (!upgrade) {
        return refuse(out, 400, "Upgrade does not list websocket");
    }
    if (!connection) {
        return refuse(out, 400, "Connection does not list upgrade");
    }
    if (versions != 1 || strcmp(version, "13") != 0) {
        return refuse(out, 426, "Sec-WebSocket-Version is not 13");
    }
    if (keys != 1) {
        return refuse(out, 400, "not exactly one Sec-WebSocket-Key");
    }
    if (strlen(key) != 24 || nea__base64_decode(nonce, sizeof(nonce), key, 24, &nonce_len) != 0 ||
        nonce_len != 16) {
        return refuse(out, 400, "Sec-WebSocket-Key is not the base64 of 16 bytes");
    }
    nea__ws_accept_key(key, 24, out->accept);
    return 0;
}

size_t nea__ws_accept_head(char *buf, size_t cap, const char *accept, const char *protocol)
{
    int n;
    if (protocol != NULL && strpbrk(protocol, "\r\n") != NULL) {
        return 0;
    }
    n = snprintf(buf, cap,
                 "HTTP/1.1 101 Switching Protocols\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Accept: %s\r\n"
                 "%s%s%s"
                 "\r\n",
                 accept, protocol != NULL ? "Sec-WebSocket-Protocol: " : "",
                 protocol != NULL ? protocol : "", protocol != NULL ? "\r\n" : "");
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}
