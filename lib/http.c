/*
 * http.c - the request head guard and the llhttp glue.
 *
 * A head is accepted only when all of it sits in the connection's read
 * buffer. Two passes, both over bytes already received:
 *
 *   1. nea__head_scan (incremental, resumable): byte-level rules that the
 *      llhttp Debian ships does not enforce in its loose build - bare CR or
 *      LF, control characters and NUL, obs-fold (a line starting with SP or
 *      HTAB), field names that are empty or not tokens (which also rejects
 *      whitespace before the colon), a line without a colon. It also finds
 *      the end of the head.
 *   2. nea__head_parse: the request line checked by hand (one space each,
 *      an exact HTTP-version, RFC 3986 target bytes, the target form the
 *      method allows), then llhttp over the complete head, pausing at
 *      on_headers_complete, plus the rules that need field values:
 *      Transfer-Encoding with Content-Length, anything but a final
 *      `chunked`, TE in HTTP/1.0, conflicting or malformed Content-Length,
 *      missing, duplicate or malformed Host. List-valued fields libnea
 *      interprets (Connection, Transfer-Encoding, Expect) are parsed as
 *      comma-separated lists with SP/HTAB around elements.
 *
 * After an arena is granted, nea__head_index builds the NUL-terminated
 * views handlers read, in the read buffer itself (separators become NULs;
 * no byte after the head is touched): only their index goes into the
 * arena, so an arena need not hold a copy of the largest head. Bodies never go through
 * llhttp: chunked framing is decoded strictly by chunked.c.
 */
#include "http.h"
#include "url.h"

#include "tchar.h"

#include <string.h>
#include <strings.h>

static bool is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Which of x's eight bytes are control bytes (below 0x20, or 0x7f): the
 * top bit of each such byte is set, and no bit when there is none. Bytes
 * of 0x80 and above (obs-text) are not: the borrow trick flags a byte
 * below n exactly when its top bit is clear. A borrow only runs upward,
 * so a byte may be flagged wrongly only above a control byte: the lowest
 * flag is always exact. */
static uint64_t control_mask(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
    uint64_t del = x ^ (ones * 0x7f);
    return (((x - ones * 0x20) & ~x) | ((del - ones) & ~del)) & high;
}

/* How many of the eight bytes a non-zero control_mask was taken from
 * come before the first control byte (on a big-endian machine none are
 * skipped: the byte loop after it finds the control byte). */
static size_t plain_before(uint64_t m)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return (size_t)__builtin_ctzll(m) / 8; /* the first byte read is the lowest */
#else
    (void)m;
    return 0;
#endif
}

nea__scan_result nea__head_scan(nea__head *h, const char *buf, size_t len)
{
    for (size_t i = h->scan; i < len; i++) {
        unsigned char c = (unsigned char)buf[i];
        unsigned char prev = i > 0 ? (unsigned char)buf[i - 1] : 0;

        if (prev == '\r' && c != '\n' && i > h->start) {
            return NEA__HEAD_BAD; /* bare CR */
        }
        if (c == '\n') {
            if (i == h->line_start || prev != '\r') {
                return NEA__HEAD_BAD; /* bare LF */
            }
            if (i - 1 == h->line_start) { /* empty line */
                if (!h->line_done) {
                    /* RFC 9112 2.2: ignore empty lines before the request line. */
                    h->start = h->line_start = i + 1;
                    continue;
                }
                h->end = i + 1;
                h->scan = i + 1;
                return NEA__HEAD_DONE;
            }
            if (h->line_done && h->in_name) {
                return NEA__HEAD_BAD; /* field line without a colon */
            }
            if (h->line_done) {
                h->lines++;
            }
            h->line_done = true;
            h->in_name = true;
            h->line_start = i + 1;
            continue;
        }
        if (c == '\r') {
            continue;
        }
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return NEA__HEAD_BAD;
        }
        if (h->line_done && h->in_name) {
            if (c == ':') {
                if (i == h->line_start) {
                    return NEA__HEAD_BAD; /* empty field name */
                }
                h->in_name = false;
            } else if (!nea__is_tchar(c)) {
                return NEA__HEAD_BAD; /* obs-fold, or whitespace before ':' */
            }
            continue;
        }
        /* The request line or a field value: only a control byte (CR and
         * LF among them) needs a look, so the others are stepped over here,
         * eight at a time while no control byte is among them, then
         * straight up to the first one. */
        for (uint64_t x, m; i + 9 <= len; i += 8) {
            memcpy(&x, buf + i + 1, sizeof(x));
            if ((m = control_mask(x)) != 0) {
                i += plain_before(m);
                break;
            }
        }
        while (i + 1 < len && (unsigned char)buf[i + 1] >= 0x20 && buf[i + 1] != 0x7f) {
            i++;
        }
    }
    h->scan = len;
    return NEA__HEAD_MORE;
}

static nea__head *head_of(llhttp_t *p)
{
    return p->data;
}

/* Appends a span: a field seen in two pieces is still contiguous in the buffer. */
static void span(const char **at_out, size_t *len_out, const char *at, size_t len)
{
    if (*at_out == NULL) {
        *at_out = at;
        *len_out = len;
    } else {
        *len_out = (size_t)(at + len - *at_out);
    }
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    nea__head *h = head_of(p);
    span(&h->url, &h->url_len, at, len);
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    nea__head *h = head_of(p);
    span(&h->name, &h->name_len, at, len);
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    nea__head *h = head_of(p);
    span(&h->value, &h->value_len, at, len);
    return 0;
}

/* The n bytes at s equal lower (lower-case ASCII) but for ASCII case, as
 * strncasecmp in the C locale: the names and tokens compared are a few
 * bytes long, shorter than a call to it. */
static bool ascii_ieq(const char *s, const char *lower, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 'A' && c <= 'Z') {
            c = (unsigned char)(c + ('a' - 'A'));
        }
        if (c != (unsigned char)lower[i]) {
            return false;
        }
    }
    return true;
}

static bool name_is(const nea__head *h, const char *name)
{
    size_t n = strlen(name);
    return h->name_len == n && ascii_ieq(h->name, name, n);
}

static void trim(const char **v, size_t *len)
{
    while (*len > 0 && ((*v)[0] == ' ' || (*v)[0] == '\t')) {
        (*v)++;
        (*len)--;
    }
    while (*len > 0 && ((*v)[*len - 1] == ' ' || (*v)[*len - 1] == '\t')) {
        (*len)--;
    }
}

static bool token_eq(const char *v, size_t len, const char *token)
{
    return len == strlen(token) && ascii_ieq(v, token, len);
}

/* The next element of a comma-separated list value (RFC 9110 5.6.1): OWS
 * (SP or HTAB) around elements is dropped and empty elements are skipped.
 * Returns false when the list is exhausted. */
static bool list_next(const char **v, size_t *len, const char **el, size_t *el_len)
{
    while (*len > 0) {
        const char *comma = memchr(*v, ',', *len);
        size_t n = comma != NULL ? (size_t)(comma - *v) : *len;
        *el = *v;
        *el_len = n;
        *v += comma != NULL ? n + 1 : n;
        *len -= comma != NULL ? n + 1 : n;
        trim(el, el_len);
        if (*el_len > 0) {
            return true;
        }
    }
    return false;
}

static bool all_tchars(const char *v, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (!nea__is_tchar((unsigned char)v[i])) {
            return false;
        }
    }
    return len > 0;
}

/* RFC 3986 unreserved / sub-delims, plus what the caller allows (":@/?" in
 * a target, ":" in a Host); "%" must start a pct-encoded octet. */
static bool uri_plain(unsigned char c)
{
    if (is_alnum(c)) {
        return true;
    }
    switch (c) {
    case '-': case '.': case '_': case '~': case '!': case '$': case '&': case '\'':
    case '(': case ')': case '*': case '+': case ',': case ';': case '=':
        return true;
    default:
        return false;
    }
}

static bool uri_chars(const char *v, size_t len, const char *also)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if (uri_plain(c) || (c != '\0' && strchr(also, c) != NULL)) {
            continue;
        }
        if (c == '%' && i + 2 < len && nea__hex_value((unsigned char)v[i + 1]) >= 0 &&
            nea__hex_value((unsigned char)v[i + 2]) >= 0) {
            i += 2;
            continue;
        }
        return false;
    }
    return true;
}

/* Host = uri-host [ ":" port ] (RFC 9110 7.2): an IP-literal in brackets or
 * a reg-name, then digits. An empty Host is allowed. */
static bool host_valid(const char *v, size_t len)
{
    const char *colon;
    if (len > 0 && v[0] == '[') {
        const char *close = memchr(v, ']', len);
        if (close == NULL || !uri_chars(v + 1, (size_t)(close - v - 1), ":")) {
            return false;
        }
        len -= (size_t)(close + 1 - v);
        v = close + 1;
        if (len == 0) {
            return true;
        }
        if (v[0] != ':') {
            return false;
        }
        colon = v;
    } else {
        colon = memchr(v, ':', len);
        if (!uri_chars(v, colon != NULL ? (size_t)(colon - v) : len, "")) {
            return false;
        }
    }
    if (colon != NULL) {
        for (const char *p = colon + 1; p < v + len; p++) {
            if (*p < '0' || *p > '9') {
                return false;
            }
        }
    }
    return true;
}

static int check_content_length(nea__head *h, const char *v, size_t len)
{
    uint64_t n = 0;
    if (len == 0) {
        return 400; /* empty, or a list of lengths */
    }
    /* Leading zeros carry nothing; more than 18 significant digits is beyond
     * any body an arena can hold and would overflow. */
    while (len > 1 && v[0] == '0') {
        v++;
        len--;
    }
    if (len > 18) {
        return 400;
    }
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9') {
            return 400;
        }
        n = n * 10 + (uint64_t)(v[i] - '0');
    }
    if (h->has_cl && n != h->content_length) {
        return 400;
    }
    h->has_cl = true;
    h->content_length = n;
    return 0;
}

/* Transfer-Encoding: a list whose last coding must be chunked (else the body
 * length is undeterminable: 400); a coding before it is one libnea does not
 * decode (501); chunked twice is malformed (400). */
static int check_transfer_encoding(nea__head *h, const char *v, size_t len)
{
    const char *el;
    size_t el_len;
    bool last_chunked = false, other = false;

    if (h->has_te) {
        return 400; /* split across fields: refuse rather than merge */
    }
    h->has_te = true;
    while (list_next(&v, &len, &el, &el_len)) {
        if (!all_tchars(el, el_len) || last_chunked) {
            return 400; /* not a coding, or anything after chunked */
        }
        if (token_eq(el, el_len, "chunked")) {
            last_chunked = true;
        } else {
            other = true;
        }
    }
    if (!last_chunked) {
        return 400;
    }
    if (other) {
        return 501;
    }
    h->chunked = true;
    return 0;
}

/* Framing-relevant fields; everything else is only indexed later. */
static int check_field(nea__head *h)
{
    const char *v = h->value != NULL ? h->value : "";
    size_t len = h->value != NULL ? h->value_len : 0;
    const char *el;
    size_t el_len;

    trim(&v, &len);
    if (name_is(h, "content-length")) {
        return check_content_length(h, v, len);
    }
    if (name_is(h, "transfer-encoding")) {
        return check_transfer_encoding(h, v, len);
    }
    if (name_is(h, "host")) {
        h->hosts++;
        return host_valid(v, len) ? 0 : 400;
    }
    if (name_is(h, "connection")) {
        while (list_next(&v, &len, &el, &el_len)) {
            h->conn_close = h->conn_close || token_eq(el, el_len, "close");
            h->conn_keep_alive = h->conn_keep_alive || token_eq(el, el_len, "keep-alive");
        }
    } else if (name_is(h, "expect")) {
        while (list_next(&v, &len, &el, &el_len)) {
            h->expect_continue = h->expect_continue || token_eq(el, el_len, "100-continue");
        }
    }
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    nea__head *h = head_of(p);
    int status = 0;
    if (!h->headers_done) {
        status = check_field(h);
    }
    h->name = h->value = NULL;
    h->name_len = h->value_len = 0;
    if (status != 0) {
        h->status = status;
        return -1;
    }
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    head_of(p)->headers_done = true;
    return HPE_PAUSED;
}

/* Shared, read-only: llhttp keeps a pointer to it in every parser. */
static const llhttp_settings_t settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
};

void nea__head_begin(nea__head *h, llhttp_t *parser)
{
    memset(h, 0, sizeof(*h));
    llhttp_init(parser, HTTP_REQUEST, &settings);
    parser->data = h;
}

/* The request line, checked before llhttp sees it (RFC 9112 3):
 * method SP request-target SP HTTP-version CRLF, with exactly one space
 * each (llhttp's loose build also takes runs of spaces), the version exactly
 * "HTTP/" DIGIT "." DIGIT (505 when well-formed but not 1.0 or 1.1), the
 * target's bytes within RFC 3986 and its form matching the method. */
static int check_request_line(nea__head *h, const char *line, size_t len)
{
    const char *end = memchr(line, '\r', len), *sp1, *sp2, *t, *ver;
    size_t tlen;

    sp1 = line;
    while (sp1 < end && nea__is_tchar((unsigned char)*sp1)) {
        sp1++;
    }
    if (sp1 == line || sp1 == end || *sp1 != ' ') {
        return 400;
    }
    t = sp1 + 1;
    sp2 = memchr(t, ' ', (size_t)(end - t));
    if (sp2 == NULL || sp2 == t) {
        return 400;
    }
    tlen = (size_t)(sp2 - t);
    h->method_len = (size_t)(sp1 - line);
    h->target_len = tlen;
    ver = sp2 + 1;
    if (end - ver != 8 || memcmp(ver, "HTTP/", 5) != 0 || ver[5] < '0' || ver[5] > '9' ||
        ver[6] != '.' || ver[7] < '0' || ver[7] > '9') {
        return 400;
    }
    if (ver[5] != '1' || ver[7] > '1') {
        return 505;
    }
    if (!uri_chars(t, tlen, ":@/?[]")) {
        return 400;
    }
    /* Target forms (RFC 9112 3.2): "*" only for OPTIONS; authority-form
     * only, and always, for CONNECT; else origin-form or absolute-form. */
    if (sp1 - line == 7 && memcmp(line, "CONNECT", 7) == 0) {
        return t[0] != '/' && memchr(t, '/', tlen) == NULL && memchr(t, '?', tlen) == NULL ? 0
                                                                                           : 400;
    }
    if (tlen == 1 && t[0] == '*') {
        return sp1 - line == 7 && memcmp(line, "OPTIONS", 7) == 0 ? 0 : 400;
    }
    if (t[0] == '/' || nea__target_path(t, tlen) > 0) {
        return 0;
    }
    return 400;
}

int nea__head_parse(nea__head *h, llhttp_t *parser, const char *buf)
{
    const char *line = buf + h->start;
    int status = check_request_line(h, line, h->end - h->start);
    llhttp_errno_t err;

    if (status != 0) {
        return status;
    }
    err = llhttp_execute(parser, line, h->end - h->start);
    if (h->status != 0) {
        return h->status;
    }
    if (err != HPE_PAUSED || !h->headers_done) {
        /* The line is well-formed (checked above): an unknown method is 501. */
        return err == HPE_INVALID_METHOD ? 501 : 400;
    }
    if (h->has_te && (h->has_cl || parser->http_minor == 0)) {
        return 400;
    }
    if (h->hosts > 1 || (parser->http_minor == 1 && h->hosts == 0)) {
        return 400;
    }
    if (h->url == NULL || h->url != line + h->method_len + 1) {
        return 400;
    }
    return 0;
}

bool nea__head_keep_alive(const nea__head *h, const llhttp_t *parser)
{
    if (h->conn_close || parser->upgrade) {
        return false;
    }
    return parser->http_minor == 1 || h->conn_keep_alive;
}

int nea__body_start(nea__body *b, nea__arena *a, size_t len, size_t max)
{
    b->arena = a;
    b->len = 0;
    b->max = max;
    b->data = nea__arena_alloc(a, len + 1, 1);
    if (b->data == NULL) {
        return 413;
    }
    b->data[0] = '\0';
    return 0;
}

/* Body bytes go straight into the arena, growing the body (the arena's most
 * recent allocation) in place. */
int nea__body_append(nea__body *b, const char *p, size_t n)
{
    size_t need = b->len + n;
    char *data;

    if (need > b->max || (data = nea__arena_grow(b->arena, b->data, need + 1)) == NULL) {
        return 413;
    }
    memcpy(data + b->len, p, n);
    b->len = need;
    data[need] = '\0';
    return 0;
}

size_t nea__target_path_abs(const char *url, size_t len)
{
    static const char *const schemes[] = {"http://", "https://"};
    for (size_t i = 0; i < 2; i++) {
        size_t n = strlen(schemes[i]);
        if (len > n && strncasecmp(url, schemes[i], n) == 0) {
            const char *slash = memchr(url + n, '/', len - n);
            const char *query = memchr(url + n, '?', len - n);
            if (slash != NULL && (query == NULL || slash < query)) {
                return (size_t)(slash - url);
            }
            return query != NULL ? (size_t)(query - url) : len;
        }
    }
    return 0;
}

int nea__head_index(nea__arena *a, const nea__head *h, char *buf, bool prefix, size_t prefix_len,
                    nea__msg *m)
{
    char *copy = buf + h->start; /* the head, read where it was received */
    char *end = buf + h->end;
    char *p, *sp, *q;
    size_t n = 0;

    /* Request line: METHOD SP target SP version CRLF (checked by
     * nea__head_parse, which measured the method and the target). */
    m->method = p = copy;
    sp = p + h->method_len;
    *sp = '\0';
    p = sp + 1;
    sp = p + h->target_len;
    *sp = '\0';
    p += nea__target_path(p, (size_t)(sp - p));
    m->path = p;
    q = memchr(p, '?', (size_t)(sp - p));
    if (q != NULL) {
        *q = '\0';
        m->query = q + 1;
    } else {
        m->query = sp; /* "" */
        q = sp;
    }
    if (m->path[0] == '\0') {
        m->path = "/"; /* absolute-form without a path */
        q = (char *)m->path + 1;
    }
    /* A prefix route's tail is what follows the prefix in the raw path (the
     * route matched its routing view, url.c); an exact route has none (the
     * path's end, q). */
    m->tail = prefix ? m->path + nea__url_raw_prefix(m->path, prefix_len) : q;
    /* The version is exactly "HTTP/" DIGIT "." DIGIT and the line ends in
     * CRLF (nea__head_parse checked both). */
    p = sp + 1 + 8 + 2;

    m->hdrs = nea__arena_alloc(a, (h->lines + 1) * sizeof(nea__hdr), NEA__ALIGN);
    if (m->hdrs == NULL) {
        return 431;
    }
    /* Field lines: name ':' OWS value OWS CRLF (validated by the scanner). */
    while (p < end && *p != '\r') {
        char *colon = memchr(p, ':', (size_t)(end - p));
        char *cr = (char *)memchr(colon, '\n', (size_t)(end - colon)) - 1;
        char *eol = cr, *v = colon + 1;
        *colon = '\0';
        while (v < eol && (*v == ' ' || *v == '\t')) {
            v++;
        }
        while (eol > v && (eol[-1] == ' ' || eol[-1] == '\t')) {
            eol--;
        }
        *eol = '\0';
        m->hdrs[n].name = p;
        m->hdrs[n].value = v;
        n++;
        p = cr + 2; /* past the line's CRLF */
    }
    m->nhdrs = n;
    return 0;
}
