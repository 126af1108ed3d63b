/*
 * response.c - status lines, the Date cache, pre-built errors, and the
 * serialisation of handler responses. No I/O: the connection writes what
 * this file lays out.
 *
 * Error responses are built once per server (nea__statics_build) into the
 * reservation, so answering 400, 503 or an out-of-memory 500 never needs an
 * arena or the heap: a write of three buffers (pre-built head, a small line
 * block with Date and Connection kept in the connection slot, the body).
 * The host may give its own content type and body per status
 * (nea_config.error_bodies): they are copied into the reservation when the
 * server is made, so the answer stays exactly as pre-built as libnea's own.
 * Handler responses are serialised into the request's arena: the head and,
 * unless the body is referenced, the body too, so a response is one or two
 * buffers and one uv_write (libuv only allocates beyond four).
 */
#include "response.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* The reason phrase of status, and its length (no strlen per response). */
static const char *reason_of(int status, size_t *len)
{
#define REASON(text) return (*len = sizeof(text) - 1, text)
    switch (status) {
    case 100:
        REASON("Continue");
    case 200:
        REASON("OK");
    case 201:
        REASON("Created");
    case 202:
        REASON("Accepted");
    case 204:
        REASON("No Content");
    case 206:
        REASON("Partial Content");
    case 301:
        REASON("Moved Permanently");
    case 302:
        REASON("Found");
    case 303:
        REASON("See Other");
    case 304:
        REASON("Not Modified");
    case 307:
        REASON("Temporary Redirect");
    case 308:
        REASON("Permanent Redirect");
    case 400:
        REASON("Bad Request");
    case 401:
        REASON("Unauthorized");
    case 403:
        REASON("Forbidden");
    case 404:
        REASON("Not Found");
    case 405:
        REASON("Method Not Allowed");
    case 408:
        REASON("Request Timeout");
    case 409:
        REASON("Conflict");
    case 410:
        REASON("Gone");
    case 411:
        REASON("Length Required");
    case 413:
        REASON("Content Too Large");
    case 414:
        REASON("URI Too Long");
    case 415:
        REASON("Unsupported Media Type");
    case 417:
        REASON("Expectation Failed");
    case 422:
        REASON("Unprocessable Content");
    case 429:
        REASON("Too Many Requests");
    case 431:
        REASON("Request Header Fields Too Large");
    case 500:
        REASON("Internal Server Error");
    case 501:
        REASON("Not Implemented");
    case 502:
        REASON("Bad Gateway");
    case 503:
        REASON("Service Unavailable");
    case 504:
        REASON("Gateway Timeout");
    case 505:
        REASON("HTTP Version Not Supported");
    default:
        if (status < 300) {
            REASON("OK");
        }
        if (status < 400) {
            REASON("Redirect");
        }
        if (status < 500) {
            REASON("Client Error");
        }
        REASON("Server Error");
    }
#undef REASON
}

static const char *nea__reason(int status)
{
    size_t len;
    return reason_of(status, &len);
}

static const struct prebuilt_row {
    int status;
    bool keeps;
    nea_outcome outcome;
    const char *body;
} prebuilt[NEA__PB_COUNT] = {
#define NEA__PREBUILT_ROW(name, status, keeps, outcome, body)                                      \
    [NEA__PB_##name] = {status, keeps, NEA_OUTCOME_##outcome, body},
    NEA__PREBUILT_MAP(NEA__PREBUILT_ROW)
#undef NEA__PREBUILT_ROW
};

nea__prebuilt nea__prebuilt_for_status(int status)
{
    for (int e = 0; e < NEA__PB_COUNT; e++) {
        if (prebuilt[e].status == status && status >= 400) {
            return (nea__prebuilt)e;
        }
    }
    return NEA__PB_400;
}

int nea__prebuilt_status(nea__prebuilt e)
{
    return prebuilt[e].status;
}

bool nea__prebuilt_keeps(nea__prebuilt e)
{
    return prebuilt[e].keeps;
}

nea_outcome nea__prebuilt_outcome(nea__prebuilt e)
{
    return prebuilt[e].outcome;
}

/* An error status libnea answers itself with a pre-built response (the
 * readiness 200 is not an error). */
static bool error_status(int status)
{
    for (int e = 0; e < NEA__PB_COUNT; e++) {
        if (prebuilt[e].status == status && status >= 400) {
            return true;
        }
    }
    return false;
}

static bool type_safe(const char *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c < 0x20 || c == 0x7f) {
            return false; /* CR and LF above all: the line would end early */
        }
    }
    return n > 0;
}

static int bad_body(char *errbuf, size_t errlen, const nea_config *cfg, unsigned i, const char *fmt,
                    ...) NEA_PRINTF(5, 6);

static int bad_body(char *errbuf, size_t errlen, const nea_config *cfg, unsigned i, const char *fmt,
                    ...)
{
    if (errbuf != NULL && errlen > 0) {
        va_list ap;
        int n = snprintf(errbuf, errlen, "error_bodies[%u] (status %d): ", i,
                         cfg->error_bodies[i].status);
        if (n > 0 && (size_t)n < errlen) {
            va_start(ap, fmt);
            vsnprintf(errbuf + n, errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return NEA_EINVAL_CONFIG;
}

/* "400, 404, ..." from the table, each status once. */
static void error_statuses(char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int e = 0; e < NEA__PB_COUNT && n < len; e++) {
        bool seen = prebuilt[e].status < 400;
        for (int k = 0; k < e && !seen; k++) {
            seen = prebuilt[k].status == prebuilt[e].status;
        }
        if (!seen) {
            int w = snprintf(buf + n, len - n, "%s%d", n > 0 ? ", " : "", prebuilt[e].status);
            n += w > 0 ? (size_t)w : 0;
        }
    }
}

int nea__error_bodies_check(const nea_config *cfg, char *errbuf, size_t errlen)
{
    if (cfg->error_body_count > 0 && cfg->error_bodies == NULL) {
        if (errbuf != NULL && errlen > 0) {
            snprintf(errbuf, errlen, "error_body_count %u with error_bodies NULL",
                     cfg->error_body_count);
        }
        return NEA_EINVAL_CONFIG;
    }
    for (unsigned i = 0; i < cfg->error_body_count; i++) {
        const nea_error_body *b = &cfg->error_bodies[i];
        if (!error_status(b->status)) {
            char list[128];
            error_statuses(list, sizeof(list));
            return bad_body(errbuf, errlen, cfg, i,
                            "libnea has no answer of its own with this status (%s)", list);
        }
        for (unsigned j = 0; j < i; j++) {
            if (cfg->error_bodies[j].status == b->status) {
                return bad_body(errbuf, errlen, cfg, i, "the status is given twice");
            }
        }
        if (b->content_type == NULL ||
            strnlen(b->content_type, NEA_ERROR_TYPE_MAX + 1) > NEA_ERROR_TYPE_MAX ||
            !type_safe(b->content_type, strlen(b->content_type))) {
            return bad_body(errbuf, errlen, cfg, i,
                            "content_type must be 1 to %d bytes without control characters",
                            NEA_ERROR_TYPE_MAX);
        }
        if (b->len > NEA_ERROR_BODY_MAX) {
            return bad_body(errbuf, errlen, cfg, i, "len %zu is above NEA_ERROR_BODY_MAX (%d)",
                            b->len, NEA_ERROR_BODY_MAX);
        }
        if (b->body == NULL && b->len > 0) {
            return bad_body(errbuf, errlen, cfg, i, "body NULL with len %zu", b->len);
        }
    }
    return 0;
}

/* The status line, the Content-Type, the Content-Length and, for 503,
 * Retry-After: every line of a pre-built head but Date and Connection. */
static void build_head(nea__static_resp *r, const char *ctype, unsigned retry_after_s)
{
    int n = snprintf(r->head, sizeof(r->head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n", r->status,
                     nea__reason(r->status), ctype, r->body_len);
    if (r->status == 503) {
        n += snprintf(r->head + n, sizeof(r->head) - (size_t)n, "Retry-After: %u\r\n",
                      retry_after_s);
    }
    r->head_len = (size_t)n;
}

void nea__statics_build(nea__statics *st, const nea_config *cfg, char *store)
{
    for (int e = 0; e < NEA__PB_COUNT; e++) {
        nea__static_resp *r = &st->at[e];
        r->status = prebuilt[e].status;
        r->body = prebuilt[e].body;
        r->body_len = strlen(r->body);
        build_head(r, "text/plain", cfg->retry_after_s);
    }
    /* The host's bodies, one copy each, shared by the answers with that
     * status (the two 500s). */
    for (unsigned i = 0; i < cfg->error_body_count; i++) {
        const nea_error_body *b = &cfg->error_bodies[i];
        if (b->len > 0) {
            memcpy(store, b->body, b->len);
        }
        for (int e = 0; e < NEA__PB_COUNT; e++) {
            nea__static_resp *r = &st->at[e];
            if (r->status == b->status && b->status >= 400) {
                r->body = store;
                r->body_len = b->len;
                build_head(r, b->content_type, cfg->retry_after_s);
            }
        }
        store += b->len;
    }
}

static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* RFC 9110 IMF-fixdate, written by hand: strftime would follow the host's
 * locale. */
size_t nea__http_date(char *buf, size_t len, int64_t sec)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    time_t t = (time_t)sec;
    struct tm tm;
    gmtime_r(&t, &tm);
    return (size_t)snprintf(buf, len, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday],
                            tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                            tm.tm_sec);
}

int nea__http_date_parse(const char *s, int64_t *sec)
{
    char wday[4], mon[4];
    struct tm tm;
    int n = 0;
    memset(&tm, 0, sizeof(tm));
    if (sscanf(s, "%3[A-Za-z], %2d %3[A-Za-z] %4d %2d:%2d:%2d GMT%n", wday, &tm.tm_mday, mon,
               &tm.tm_year, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 7 ||
        n == 0 || s[n] != '\0') {
        return -1;
    }
    for (tm.tm_mon = 0; tm.tm_mon < 12 && strcmp(mon, months[tm.tm_mon]) != 0; tm.tm_mon++) {
    }
    if (tm.tm_mon == 12) {
        return -1;
    }
    tm.tm_year -= 1900;
    *sec = (int64_t)timegm(&tm);
    return 0;
}

const char *nea__date_line(nea__date *d, uint64_t now_ms, size_t *len)
{
    if (now_ms != d->tick || d->len == 0) {
        time_t now = time(NULL);
        d->tick = now_ms;
        if ((int64_t)now != d->sec || d->len == 0) {
            d->sec = (int64_t)now;
            memcpy(d->line, "Date: ", 6);
            d->len = 6 + nea__http_date(d->line + 6, sizeof(d->line) - 8, d->sec);
            memcpy(d->line + d->len, "\r\n", 3);
            d->len += 2;
        }
    }
    *len = d->len;
    return d->line;
}

unsigned nea__static_bufs(const nea__statics *st, nea__date *date, uint64_t now_ms, nea__prebuilt e,
                          const char *conn_line, const char *allow, size_t allow_len,
                          bool head_only, char *hdrbuf, uv_buf_t *bufs)
{
    const nea__static_resp *r = &st->at[e];
    size_t date_len, conn_len = strlen(conn_line), n = 0;
    const char *dl = nea__date_line(date, now_ms, &date_len);

    memcpy(hdrbuf + n, allow, allow_len);
    n += allow_len;
    memcpy(hdrbuf + n, dl, date_len);
    n += date_len;
    memcpy(hdrbuf + n, conn_line, conn_len);
    n += conn_len;
    memcpy(hdrbuf + n, "\r\n", 2);
    n += 2;
    bufs[0] = nea__buf(r->head, r->head_len);
    bufs[1] = nea__buf(hdrbuf, n);
    if (head_only) {
        return 2;
    }
    bufs[2] = nea__buf(r->body, r->body_len);
    return 3;
}

static bool line_safe(const char *s)
{
    return strpbrk(s, "\r\n") == NULL;
}

static bool is_token(const char *s, size_t n)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              memchr(extra, c, sizeof(extra) - 1) != NULL)) {
            return false;
        }
    }
    return n > 0;
}

int nea__resp_hdr_add(nea__resp_hdrs *hs, nea__arena *a, const char *name, const char *value)
{
    static const char *const managed[] = {"content-length", "date", "connection",
                                          "transfer-encoding"};
    size_t nlen = strlen(name), vlen = strlen(value);
    nea__resp_hdr *h;
    char *line;

    if (!is_token(name, nlen) || !line_safe(value)) {
        return UV_EINVAL;
    }
    for (size_t i = 0; i < sizeof(managed) / sizeof(managed[0]); i++) {
        if (strcasecmp(name, managed[i]) == 0) {
            return UV_EINVAL;
        }
    }
    h = nea__arena_alloc(a, sizeof(*h), NEA__ALIGN);
    line = h != NULL ? nea__arena_alloc(a, nlen + vlen + 4, 1) : NULL;
    if (line == NULL) {
        return NEA_ENOMEM;
    }
    memcpy(line, name, nlen);
    memcpy(line + nlen, ": ", 2);
    memcpy(line + nlen + 2, value, vlen);
    memcpy(line + nlen + 2 + vlen, "\r\n", 2);
    h->line = line;
    h->len = nlen + vlen + 4;
    h->next = NULL;
    if (hs->tail == NULL) {
        hs->tail = &hs->first;
    }
    *hs->tail = h;
    hs->tail = &h->next;
    hs->len += h->len;
    return 0;
}

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

/* The digits of v in decimal. */
static size_t decimal_len(size_t v)
{
    size_t n = 1;
    for (; v >= 10; v /= 10) {
        n++;
    }
    return n;
}

/* v in decimal, its digits counted already (digits = decimal_len(v)), at
 * p (no NUL); returns the end. Every response formats its Content-Length,
 * and snprintf cost more than the rest of the serialisation together. */
static char *put_decimal(char *p, size_t v, size_t digits)
{
    char *end = p + digits;
    p = end;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return end;
}

unsigned nea__resp_serialize(nea__arena *a, const nea__resp_spec *r, uv_buf_t *bufs, size_t *needed)
{
    static const char chunked_line[] = "Transfer-Encoding: chunked\r\n";
    bool no_body = r->status == 204 || r->status == 304;
    bool send_body = !no_body && !r->is_head;
    bool length = !no_body && r->framing != NEA__FRAME_CHUNKED && r->framing != NEA__FRAME_CLOSE;
    size_t ctype_len = r->content_type != NULL ? strlen(r->content_type) : 0;
    size_t conn_len = strlen(r->conn_line);
    size_t head_len, copy_len, reason_len, cl_len = 0, digits = 0;
    const char *reason = reason_of(r->status, &reason_len);
    char *buf, *p;
    unsigned n = 1;

    /* Every line is laid out where it goes: the arena's block is sized
     * exactly first, so nothing is formatted twice. */
    if (!no_body && r->framing == NEA__FRAME_CHUNKED) {
        cl_len = sizeof(chunked_line) - 1;
    } else if (length) {
        digits = decimal_len(r->len);
        cl_len = 16 + digits + 2; /* "Content-Length: " digits CRLF */
    }
    /* "HTTP/1.1 " status(3) " " reason CRLF; status is 100..599. */
    head_len = 9 + 3 + 1 + reason_len + 2 + r->date_len + cl_len + conn_len + r->hdrs->len + 2 +
               (r->content_type != NULL ? ctype_len + 16 : 0);
    copy_len = r->copy && send_body ? r->len : 0;
    buf = nea__arena_alloc(a, head_len + copy_len, 1);
    if (buf == NULL) {
        *needed = head_len + copy_len;
        return 0;
    }
    p = put(buf, "HTTP/1.1 ", 9);
    p[0] = (char)('0' + r->status / 100 % 10);
    p[1] = (char)('0' + r->status / 10 % 10);
    p[2] = (char)('0' + r->status % 10);
    p[3] = ' ';
    p = put(p + 4, reason, reason_len);
    p = put(p, "\r\n", 2);
    p = put(p, r->date_line, r->date_len);
    if (r->content_type != NULL) {
        p = put(p, "Content-Type: ", 14);
        p = put(p, r->content_type, ctype_len);
        p = put(p, "\r\n", 2);
    }
    if (length) {
        p = put(p, "Content-Length: ", 16);
        p = put_decimal(p, r->len, digits);
        p = put(p, "\r\n", 2);
    } else if (cl_len > 0) {
        p = put(p, chunked_line, cl_len);
    }
    p = put(p, r->conn_line, conn_len);
    for (const nea__resp_hdr *h = r->hdrs->first; h != NULL; h = h->next) {
        p = put(p, h->line, h->len);
    }
    p = put(p, "\r\n", 2);
    if (copy_len > 0) {
        p = put(p, r->body, copy_len);
    }
    bufs[0] = nea__buf(buf, (size_t)(p - buf));
    if (!r->copy && send_body && r->len > 0 && r->body != NULL) {
        bufs[1] = nea__buf(r->body, r->len);
        n = 2;
    }
    return n;
}
