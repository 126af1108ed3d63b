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
 *   2. nea__head_parse: llhttp over the complete head, pausing at
 *      on_headers_complete, plus the framing rules that need field values:
 *      Transfer-Encoding with Content-Length, anything but a final
 *      `chunked`, TE in HTTP/1.0, conflicting or malformed Content-Length,
 *      missing or duplicate Host.
 *
 * After an arena is granted, nea__head_index copies the head into it and
 * builds the NUL-terminated views handlers read. llhttp is used again only
 * to decode chunked bodies.
 */
#include "http.h"

#include <string.h>
#include <strings.h>

/* RFC 9110 tchar. */
static bool is_tchar(unsigned char c)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && memchr(extra, c, sizeof(extra) - 1) != NULL);
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
            } else if (!is_tchar(c)) {
                return NEA__HEAD_BAD; /* obs-fold, or whitespace before ':' */
            }
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

static bool name_is(const nea__head *h, const char *name)
{
    size_t n = strlen(name);
    return h->name_len == n && strncasecmp(h->name, name, n) == 0;
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
    return len == strlen(token) && strncasecmp(v, token, len) == 0;
}

/* Framing-relevant fields; everything else is only indexed later. */
static int check_field(nea__head *h)
{
    const char *v = h->value != NULL ? h->value : "";
    size_t len = h->value != NULL ? h->value_len : 0;

    trim(&v, &len);
    if (name_is(h, "content-length")) {
        uint64_t n = 0;
        if (len == 0 || len > 18) {
            return 400; /* empty, a list, or beyond any body we could hold */
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
    } else if (name_is(h, "transfer-encoding")) {
        const char *last;
        size_t last_len;
        if (h->has_te) {
            return 400; /* split across fields: refuse rather than merge */
        }
        h->has_te = true;
        last = memrchr(v, ',', len);
        last = last != NULL ? last + 1 : v;
        last_len = (size_t)(v + len - last);
        trim(&last, &last_len);
        if (!token_eq(last, last_len, "chunked")) {
            return 400; /* the body length would be undeterminable */
        }
        if (last != v) {
            return 501; /* a coding before chunked, which libnea does not decode */
        }
        h->chunked = true;
    } else if (name_is(h, "host")) {
        h->hosts++;
    } else if (name_is(h, "expect")) {
        h->expect_continue = token_eq(v, len, "100-continue");
    }
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    nea__head *h = head_of(p);
    int status = 0;
    if (!h->headers_done) { /* trailers after a chunked body are ignored */
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

static int on_message_complete(llhttp_t *p)
{
    head_of(p)->message_done = true;
    return HPE_PAUSED;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    nea__head *h = head_of(p);
    int status = nea__body_append(h->sink, at, len);
    if (status != 0) {
        h->status = status;
        return -1;
    }
    return 0;
}

/* Shared, read-only: llhttp keeps a pointer to it in every parser. */
static const llhttp_settings_t settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void nea__head_begin(nea__head *h, llhttp_t *parser)
{
    memset(h, 0, sizeof(*h));
    llhttp_init(parser, HTTP_REQUEST, &settings);
    parser->data = h;
}

/* token SP 1*VCHAR SP "HTTP/" */
static bool request_line_shaped(const char *p, size_t len)
{
    const char *end = p + len, *sp = p;
    while (sp < end && is_tchar((unsigned char)*sp)) {
        sp++;
    }
    if (sp == p || sp == end || *sp != ' ') {
        return false;
    }
    sp = memchr(sp + 1, ' ', (size_t)(end - sp - 1));
    return sp != NULL && (size_t)(end - sp) > 6 && memcmp(sp + 1, "HTTP/", 5) == 0;
}

int nea__head_parse(nea__head *h, llhttp_t *parser, const char *buf)
{
    const char *line = buf + h->start, *sp;
    llhttp_errno_t err = llhttp_execute(parser, line, h->end - h->start);

    if (h->status != 0) {
        return h->status;
    }
    if (err != HPE_PAUSED || !h->headers_done) {
        switch (err) {
        case HPE_INVALID_VERSION:
            return 505;
        case HPE_INVALID_METHOD:
            /* An unknown method in a well-formed request line is 501; a
             * line that is no request line at all is 400. */
            return request_line_shaped(buf + h->start, h->end - h->start) ? 501 : 400;
        default:
            return 400;
        }
    }
    if (parser->http_major != 1 || parser->http_minor > 1) {
        return 505;
    }
    if (h->has_te && (h->has_cl || parser->http_minor == 0)) {
        return 400;
    }
    if (h->hosts > 1 || (parser->http_minor == 1 && h->hosts == 0)) {
        return 400;
    }
    /* Exactly "method SP target SP HTTP/": llhttp's loose build also takes
     * runs of spaces, and nea__head_index splits the line on single ones. */
    sp = memchr(line, ' ', h->end - h->start);
    if (h->url == NULL || h->url_len == 0 || sp == NULL || h->url != sp + 1 ||
        memcmp(h->url + h->url_len, " HTTP/", 6) != 0) {
        return 400;
    }
    return 0;
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

size_t nea__target_path(const char *url, size_t len)
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

int nea__head_index(nea__arena *a, const nea__head *h, const char *buf, bool prefix,
                    size_t prefix_len, nea__msg *m)
{
    size_t len = h->end - h->start;
    char *copy = nea__arena_alloc(a, len + 1, 1);
    char *p, *end, *sp, *q;
    size_t n = 0;

    if (copy == NULL) {
        return 431;
    }
    memcpy(copy, buf + h->start, len);
    copy[len] = '\0';
    end = copy + len;

    /* Request line: METHOD SP target SP version CRLF (validated by llhttp). */
    m->method = p = copy;
    sp = memchr(p, ' ', (size_t)(end - p));
    *sp = '\0';
    p = sp + 1;
    sp = memchr(p, ' ', (size_t)(end - p));
    *sp = '\0';
    p += nea__target_path(p, (size_t)(sp - p));
    m->path = p;
    q = memchr(p, '?', (size_t)(sp - p));
    if (q != NULL) {
        *q = '\0';
        m->query = q + 1;
    } else {
        m->query = sp; /* "" */
    }
    if (m->path[0] == '\0') {
        m->path = "/"; /* absolute-form without a path */
    }
    /* A prefix route's tail is what follows the prefix; an exact route has
     * none. */
    m->tail = prefix ? m->path + prefix_len : m->path + strlen(m->path);
    p = (char *)memchr(sp + 1, '\n', (size_t)(end - sp - 1)) + 1;

    m->hdrs = nea__arena_alloc(a, (h->lines + 1) * sizeof(nea__hdr), NEA__ALIGN);
    if (m->hdrs == NULL) {
        return 431;
    }
    /* Field lines: name ':' OWS value OWS CRLF (validated by the scanner). */
    while (p < end && *p != '\r') {
        char *colon = memchr(p, ':', (size_t)(end - p));
        char *eol = (char *)memchr(colon, '\n', (size_t)(end - colon)) - 1; /* at CR */
        char *v = colon + 1;
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
        p = (char *)memchr(eol + 1, '\n', (size_t)(end - eol - 1)) + 1;
    }
    m->nhdrs = n;
    return 0;
}
