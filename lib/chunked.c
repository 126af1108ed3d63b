/*
 * chunked.c - the strict chunked transfer-coding decoder (RFC 9112 7.1).
 *
 * Owns the framing of a chunked request body, byte by byte:
 *
 *   chunked-body = *chunk last-chunk trailer-section CRLF
 *   chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   last-chunk   = 1*("0") [ chunk-ext ] CRLF
 *   chunk-ext    = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
 *
 * Invariants:
 *   - Every line ends in exactly CR LF. A CR followed by anything else, a
 *     bare LF, or anything but CRLF after chunk data is malformed; lenient
 *     readings of these are how a front end and libnea could disagree on
 *     where a request ends (request smuggling).
 *   - A chunk-size has at most 16 hex digits, so it always fits a uint64_t.
 *   - Trailer fields are validated and discarded; the ones that would change
 *     framing or routing if some other hop merged them into the head
 *     (Content-Length, Transfer-Encoding, Host) are malformed.
 *   - Each chunk-size line (with its extensions and the CRLF after the
 *     previous chunk's data) and the trailer section as a whole may take at
 *     most meta_limit bytes. The budget is per line, not per message: a body
 *     of many chunks is bounded by the body limit (every chunk but the last
 *     carries at least one data byte), not by its framing.
 *   - Chunk data gets no per-byte work: it is reported as whole spans of
 *     the caller's input, never empty, never copied.
 *   - DONE is returned on the LF that ends the message; no byte after it is
 *     read. DONE and BAD are sticky.
 */
#include "chunked.h"

#include "tchar.h"

#include <string.h>

enum {
    S_SIZE_FIRST,     /* first hex digit of a chunk-size */
    S_SIZE,           /* more hex digits, ';', BWS before ';', or CR */
    S_BWS_SEMI,       /* BWS that must be followed by ';' */
    S_EXT_NAME_FIRST, /* BWS, then the first byte of an ext-name */
    S_EXT_NAME,       /* more of the ext-name, ';', '=', BWS, or CR */
    S_EXT_NAME_BWS,   /* BWS after an ext-name: ';' or '=' must follow */
    S_EXT_VAL_FIRST,  /* BWS, then a token or a quoted-string */
    S_EXT_VAL_TOKEN,  /* more of a token ext-val, ';', BWS, or CR */
    S_EXT_QUOTED,     /* inside a quoted-string ext-val */
    S_EXT_QPAIR,      /* the byte after a backslash in a quoted-string */
    S_EXT_QUOTED_END, /* after the closing DQUOTE: ';', BWS, or CR */
    S_SIZE_LF,        /* the LF ending a chunk-size line */
    S_DATA,           /* chunk-data; ck->left bytes of it remain */
    S_DATA_CR,        /* the CR after chunk-data */
    S_DATA_LF,        /* the LF after chunk-data */
    S_TRAILER_FIRST,  /* start of a trailer line: a field name, or CR ending the section */
    S_TRAILER_NAME,   /* more of the field name, or ':' */
    S_TRAILER_VALUE,  /* OWS field-value OWS, or CR */
    S_TRAILER_LF,     /* the LF ending a trailer field line */
    S_FINAL_LF,       /* the LF ending the trailer section, and the message */
    S_DONE,
    S_BAD,
};

/* Trailer fields that are malformed whatever their value; one bit each in
 * ck->match. */
static const char *const forbidden[] = {"content-length", "transfer-encoding", "host"};
#define ALL_FORBIDDEN ((unsigned char)((1u << (sizeof(forbidden) / sizeof(forbidden[0]))) - 1))
/* Longer than every forbidden name: name_len stops counting here. */
#define NAME_LEN_CAP 32u

static bool is_ws(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* VCHAR or obs-text. */
static bool is_vchar_obs(unsigned char c)
{
    return (c >= 0x21 && c <= 0x7e) || c >= 0x80;
}

/* qdtext: HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text. */
static bool is_qdtext(unsigned char c)
{
    return is_ws(c) || (is_vchar_obs(c) && c != '"' && c != '\\');
}

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Narrows ck->match to the forbidden names that byte c at position
 * ck->name_len of the field name still agrees with. */
static void match_name(nea__chunked *ck, unsigned char c)
{
    for (unsigned k = 0; k < sizeof(forbidden) / sizeof(forbidden[0]); k++) {
        unsigned char bit = (unsigned char)(1u << k);
        if ((ck->match & bit) != 0 && (ck->name_len >= strlen(forbidden[k]) ||
                                       (unsigned char)forbidden[k][ck->name_len] != lower(c))) {
            ck->match = (unsigned char)(ck->match & ~bit);
        }
    }
    if (ck->name_len < NAME_LEN_CAP) {
        ck->name_len++;
    }
}

static bool name_forbidden(const nea__chunked *ck)
{
    for (unsigned k = 0; k < sizeof(forbidden) / sizeof(forbidden[0]); k++) {
        if ((ck->match & (1u << k)) != 0 && ck->name_len == strlen(forbidden[k])) {
            return true;
        }
    }
    return false;
}

static void go(nea__chunked *ck, int state)
{
    ck->state = (unsigned char)state;
}

/* After a chunk-size, a chunk-ext name or a chunk-ext value: another
 * extension, whitespace (then ws_state), or the end of the line. invalid
 * names the element for any other byte. */
static const char *after_element(nea__chunked *ck, unsigned char c, int ws_state,
                                 const char *invalid)
{
    if (c == ';') {
        go(ck, S_EXT_NAME_FIRST);
        return NULL;
    }
    if (is_ws(c)) {
        go(ck, ws_state);
        return NULL;
    }
    if (c == '\r') {
        go(ck, S_SIZE_LF);
        return NULL;
    }
    return c == '\n' ? "chunk-size line ended by a bare LF" : invalid;
}

/* Advances over one framing byte. Returns NULL, or why the framing is
 * malformed. Never called in S_DATA, S_DONE or S_BAD. */
static const char *frame_byte(nea__chunked *ck, unsigned char c)
{
    switch (ck->state) {
    case S_SIZE_FIRST:
    case S_SIZE: {
        int v = nea__hex_value(c);
        if (v >= 0) {
            /* 16 hex digits are 64 bits: the limit is also the overflow check. */
            if (ck->digits == 16) {
                return "chunk-size longer than 16 hex digits";
            }
            ck->digits++;
            ck->left = ck->left << 4 | (uint64_t)v;
            go(ck, S_SIZE);
            return NULL;
        }
        if (ck->state == S_SIZE_FIRST) {
            return "chunk-size line does not start with a hex digit";
        }
        return after_element(ck, c, S_BWS_SEMI, "invalid byte in chunk-size");
    }
    case S_BWS_SEMI:
        if (is_ws(c)) {
            return NULL;
        }
        if (c == ';') {
            go(ck, S_EXT_NAME_FIRST);
            return NULL;
        }
        return "whitespace in chunk-size line not followed by ';'";
    case S_EXT_NAME_FIRST:
        if (is_ws(c)) {
            return NULL;
        }
        if (nea__is_tchar(c)) {
            go(ck, S_EXT_NAME);
            return NULL;
        }
        return "chunk extension without a name";
    case S_EXT_NAME:
        if (nea__is_tchar(c)) {
            return NULL;
        }
        if (c == '=') {
            go(ck, S_EXT_VAL_FIRST);
            return NULL;
        }
        return after_element(ck, c, S_EXT_NAME_BWS, "invalid byte in chunk-ext name");
    case S_EXT_NAME_BWS:
        if (is_ws(c)) {
            return NULL;
        }
        if (c == ';') {
            go(ck, S_EXT_NAME_FIRST);
            return NULL;
        }
        if (c == '=') {
            go(ck, S_EXT_VAL_FIRST);
            return NULL;
        }
        return "whitespace after chunk-ext name not followed by ';' or '='";
    case S_EXT_VAL_FIRST:
        if (is_ws(c)) {
            return NULL;
        }
        if (c == '"') {
            go(ck, S_EXT_QUOTED);
            return NULL;
        }
        if (nea__is_tchar(c)) {
            go(ck, S_EXT_VAL_TOKEN);
            return NULL;
        }
        return "chunk-ext value is neither a token nor a quoted-string";
    case S_EXT_VAL_TOKEN:
        if (nea__is_tchar(c)) {
            return NULL;
        }
        return after_element(ck, c, S_BWS_SEMI, "invalid byte in chunk-ext value");
    case S_EXT_QUOTED:
        if (c == '"') {
            go(ck, S_EXT_QUOTED_END);
            return NULL;
        }
        if (c == '\\') {
            go(ck, S_EXT_QPAIR);
            return NULL;
        }
        return is_qdtext(c) ? NULL : "invalid byte in quoted chunk-ext value";
    case S_EXT_QPAIR:
        if (is_ws(c) || is_vchar_obs(c)) {
            go(ck, S_EXT_QUOTED);
            return NULL;
        }
        return "invalid quoted-pair in chunk-ext value";
    case S_EXT_QUOTED_END:
        return after_element(ck, c, S_BWS_SEMI, "invalid byte after quoted chunk-ext value");
    case S_SIZE_LF:
        if (c != '\n') {
            return "chunk-size line not ended by CRLF";
        }
        if (ck->left == 0) {
            ck->meta = 0; /* the trailer section has a budget of its own */
        }
        go(ck, ck->left > 0 ? S_DATA : S_TRAILER_FIRST);
        return NULL;
    case S_DATA_CR:
        if (c != '\r') {
            return "chunk-data not followed by CRLF";
        }
        go(ck, S_DATA_LF);
        return NULL;
    case S_DATA_LF:
        if (c != '\n') {
            return "chunk-data not followed by CRLF";
        }
        ck->digits = 0;
        ck->meta = 0; /* each chunk-size line has the whole budget */
        go(ck, S_SIZE_FIRST);
        return NULL;
    case S_TRAILER_FIRST:
        if (c == '\r') {
            go(ck, S_FINAL_LF);
            return NULL;
        }
        if (is_ws(c)) {
            return "obs-fold or whitespace at the start of a trailer line";
        }
        if (c == ':') {
            return "trailer field with an empty name";
        }
        if (!nea__is_tchar(c)) {
            return c == '\n' ? "trailer line ended by a bare LF" : "invalid byte in trailer name";
        }
        ck->name_len = 0;
        ck->match = ALL_FORBIDDEN;
        match_name(ck, c);
        go(ck, S_TRAILER_NAME);
        return NULL;
    case S_TRAILER_NAME:
        if (nea__is_tchar(c)) {
            match_name(ck, c);
            return NULL;
        }
        if (c != ':') {
            return c == '\r' || c == '\n' ? "trailer field line without a colon"
                                          : "invalid byte in trailer name";
        }
        if (name_forbidden(ck)) {
            return "Content-Length, Transfer-Encoding or Host in the trailer section";
        }
        go(ck, S_TRAILER_VALUE);
        return NULL;
    case S_TRAILER_VALUE:
        if (is_ws(c) || is_vchar_obs(c)) {
            return NULL;
        }
        if (c == '\r') {
            go(ck, S_TRAILER_LF);
            return NULL;
        }
        return c == '\n' ? "trailer line ended by a bare LF" : "invalid byte in trailer value";
    case S_TRAILER_LF:
        if (c != '\n') {
            return "trailer line not ended by CRLF";
        }
        go(ck, S_TRAILER_FIRST);
        return NULL;
    case S_FINAL_LF:
        if (c != '\n') {
            return "trailer section not ended by CRLF";
        }
        go(ck, S_DONE);
        return NULL;
    default:
        return "decoder state corrupt";
    }
}

void nea__chunked_init(nea__chunked *ck, size_t meta_limit)
{
    memset(ck, 0, sizeof(*ck));
    ck->meta_limit = meta_limit;
    go(ck, S_SIZE_FIRST);
}

nea__chunked_result nea__chunked_feed(nea__chunked *ck, const char *in, size_t len, size_t *used,
                                      const char **data, size_t *data_len)
{
    size_t i = 0;

    *used = 0;
    *data = NULL;
    *data_len = 0;
    if (ck->state == S_DONE) {
        return NEA__CHUNKED_DONE;
    }
    if (ck->state == S_BAD) {
        return NEA__CHUNKED_BAD;
    }
    while (i < len) {
        const char *why;
        if (ck->state == S_DATA) {
            size_t n = len - i;
            if ((uint64_t)n > ck->left) {
                n = (size_t)ck->left;
            }
            ck->left -= n;
            if (ck->left == 0) {
                go(ck, S_DATA_CR);
            }
            *data = in + i;
            *data_len = n;
            *used = i + n;
            return NEA__CHUNKED_DATA;
        }
        if (ck->meta == ck->meta_limit) {
            why = "a chunk-size line or the trailers exceed their limit";
        } else {
            ck->meta++;
            why = frame_byte(ck, (unsigned char)in[i]);
        }
        i++;
        if (why != NULL) {
            ck->error = why;
            go(ck, S_BAD);
            *used = i;
            return NEA__CHUNKED_BAD;
        }
        if (ck->state == S_DONE) {
            *used = i;
            return NEA__CHUNKED_DONE;
        }
    }
    *used = i;
    return NEA__CHUNKED_MORE;
}

const char *nea__chunked_error(const nea__chunked *ck)
{
    return ck->error;
}

uint64_t nea__chunked_left(const nea__chunked *ck)
{
    return ck->state == S_DATA ? ck->left : 0;
}
