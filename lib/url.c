/*
 * url.c - percent-encoding (RFC 3986 2.1): the routing view of a request
 * path, decoding into a buffer, and finding query parameters.
 *
 * The routing view of a path decodes every escape "%XY" except those of
 * '/', '%' and NUL, which stay three bytes (hex digits compared in either
 * case): an encoded slash never becomes a segment boundary, an encoded '%'
 * never starts a second round of decoding, and a NUL never cuts a C string.
 * A '%' not followed by two hex digits is an ordinary byte of the view.
 * Routes are written in the view (router.c refuses a route whose '%' is
 * anything but those three escapes), so "/hello" matches "/hel%6co" and
 * "/a%2Fb" matches only an encoded slash. Matching walks the raw path and
 * the route together; nothing is decoded into memory.
 *
 * Decoding (nea_url_decode_into) is strict where the view is lenient: a
 * '%' not followed by two hex digits is an error, as is %00 unless the
 * caller accepts NUL bytes. Output is never longer than input, so it may be
 * done in place. The request forms, which decode into a request's arena,
 * are urlreq.c's: they measure here first (nea__url_decoded_len).
 */
#include "url.h"

#include "tchar.h"

#include <string.h>

/* The value of the escape at p ('%' and two hex digits within left
 * bytes), or -1 when p does not start one. */
static int escape_at(const char *p, size_t left)
{
    int hi, lo;
    if (left < 3 || p[0] != '%') {
        return -1;
    }
    hi = nea__hex_value((unsigned char)p[1]);
    lo = nea__hex_value((unsigned char)p[2]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

static bool kept_encoded(int byte)
{
    return byte == '/' || byte == '%' || byte == 0;
}

/* One byte of the routing view: its value, whether it is a kept escape,
 * and the raw bytes it takes. */
typedef struct view_tok {
    int byte;
    bool kept;
    size_t raw;
} view_tok;

static view_tok view_next(const char *p, size_t left)
{
    view_tok t = {(unsigned char)p[0], false, 1};
    int v = escape_at(p, left);
    if (v >= 0) {
        t.byte = v;
        t.kept = kept_encoded(v);
        t.raw = 3;
    }
    return t;
}

bool nea__url_route_ok(const char *path, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (path[i] == '%') {
            int v = escape_at(path + i, len - i);
            if (v < 0 || !kept_encoded(v)) {
                return false;
            }
            i += 2;
        }
    }
    return true;
}

size_t nea__url_match(const char *raw, size_t raw_len, const char *route, size_t route_len)
{
    size_t i = 0, j = 0;
    while (j < route_len) {
        view_tok a, b;
        if (i == raw_len) {
            return SIZE_MAX;
        }
        a = view_next(raw + i, raw_len - i);
        b = view_next(route + j, route_len - j);
        if (a.byte != b.byte || a.kept != b.kept) {
            return SIZE_MAX;
        }
        i += a.raw;
        j += b.raw;
    }
    return i;
}

size_t nea__url_raw_prefix(const char *path, size_t route_len)
{
    size_t len = strlen(path), i = 0, j = 0;
    while (j < route_len && i < len) {
        view_tok t = view_next(path + i, len - i);
        i += t.raw;
        j += t.kept ? 3 : 1; /* a kept escape is three bytes of the route too */
    }
    return i;
}

/* Decodes src into dst (NULL: only measures and checks). */
static int decode(char *dst, const char *src, size_t len, unsigned flags, size_t *out_len)
{
    size_t n = 0;
    if ((flags & ~(unsigned)(NEA_DECODE_PLUS | NEA_DECODE_NUL)) != 0 || (src == NULL && len > 0)) {
        return UV_EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)src[i];
        if (c == '%') {
            c = escape_at(src + i, len - i);
            if (c < 0 || (c == 0 && (flags & NEA_DECODE_NUL) == 0)) {
                return UV_EINVAL;
            }
            i += 2;
        } else if (c == '+' && (flags & NEA_DECODE_PLUS) != 0) {
            c = ' ';
        }
        if (dst != NULL) {
            dst[n] = (char)c; /* n <= i: safe in place */
        }
        n++;
    }
    if (dst != NULL) {
        dst[n] = '\0';
    }
    if (out_len != NULL) {
        *out_len = n;
    }
    return 0;
}

int nea_url_decode_into(char *dst, const char *src, size_t len, unsigned flags, size_t *out_len)
{
    if (dst == NULL) {
        return UV_EINVAL;
    }
    return decode(dst, src, len, flags, out_len);
}

int nea__url_decoded_len(const char *src, size_t len, unsigned flags, size_t *out_len)
{
    return decode(NULL, src, len, flags, out_len);
}

/* Whether the encoded parameter name enc[0..len) decodes (form rules) to
 * name; a malformed name equals nothing. */
static bool name_equals(const char *enc, size_t len, const char *name)
{
    size_t k = 0;
    for (size_t i = 0; i < len; i++, k++) {
        int c = (unsigned char)enc[i];
        if (c == '%') {
            c = escape_at(enc + i, len - i);
            if (c <= 0) {
                return false;
            }
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (name[k] == '\0' || (unsigned char)name[k] != c) {
            return false;
        }
    }
    return name[k] == '\0';
}

int nea_query_find(const char *query, const char *name, size_t *pos, const char **value,
                   size_t *value_len)
{
    size_t len, at;
    if (query == NULL || name == NULL || pos == NULL) {
        return UV_EINVAL;
    }
    len = strlen(query);
    at = *pos < len ? *pos : len;
    while (at < len) {
        const char *s = query + at, *amp = memchr(s, '&', len - at);
        size_t seg = amp != NULL ? (size_t)(amp - s) : len - at;
        const char *eq = memchr(s, '=', seg);
        size_t name_len = eq != NULL ? (size_t)(eq - s) : seg;
        at += seg + (amp != NULL);
        if (seg > 0 && name_equals(s, name_len, name)) {
            *pos = at;
            if (value != NULL) {
                *value = eq != NULL ? eq + 1 : s + seg;
            }
            if (value_len != NULL) {
                *value_len = eq != NULL ? seg - name_len - 1 : 0;
            }
            return 0;
        }
    }
    *pos = len;
    return UV_ENOENT;
}
