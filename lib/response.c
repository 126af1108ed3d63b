/*
 * response.c - status lines, the Date cache, pre-built errors, nea_respond.
 *
 * Error responses are built once per server (nea__responses_build) into the
 * reservation, so answering 400, 503 or an out-of-memory 500 never needs an
 * arena or the heap: a write of three buffers (pre-built head, a small line
 * block with Date and Connection kept in the connection slot, the body).
 * Handler responses are serialized into the request's arena: the head and,
 * unless the body is static, the body too, so a response is one or two
 * buffers and one uv_write (libuv only allocates beyond four).
 */
#include "internal.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

const char *nea__reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return status < 300   ? "OK"
               : status < 400 ? "Redirect"
               : status < 500 ? "Client Error"
                              : "Server Error";
    }
}

static const int error_status[NEA__ECOUNT] = {
    [NEA__E400] = 400, [NEA__E404] = 404, [NEA__E405] = 405, [NEA__E408] = 408,
    [NEA__E413] = 413, [NEA__E414] = 414, [NEA__E431] = 431, [NEA__E500] = 500,
    [NEA__E501] = 501, [NEA__E503] = 503, [NEA__E505] = 505,
};

nea__err nea__err_for_status(int status)
{
    for (int e = 0; e < NEA__ECOUNT; e++) {
        if (error_status[e] == status) {
            return (nea__err)e;
        }
    }
    return NEA__E400;
}

void nea__responses_build(nea_server *s)
{
    static const char *const bodies[NEA__ECOUNT] = {
        [NEA__E400] = "Bad Request\n",
        [NEA__E404] = "Not Found\n",
        [NEA__E405] = "Method Not Allowed\n",
        [NEA__E408] = "Request Timeout\n",
        [NEA__E413] = "Content Too Large\n",
        [NEA__E414] = "URI Too Long\n",
        [NEA__E431] = "Request Header Fields Too Large\n",
        [NEA__E500] = "Internal Server Error: request exceeded its memory arena\n",
        [NEA__E501] = "Not Implemented\n",
        [NEA__E503] = "Service Unavailable: server at capacity, try again\n",
        [NEA__E505] = "HTTP Version Not Supported\n",
    };
    for (int e = 0; e < NEA__ECOUNT; e++) {
        nea__static_resp *r = &s->statics[e];
        int n;
        r->status = error_status[e];
        r->body = bodies[e];
        r->body_len = strlen(bodies[e]);
        n = snprintf(r->head, sizeof(r->head),
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n",
                     r->status, nea__reason(r->status), r->body_len);
        if (r->status == 503) {
            n += snprintf(r->head + n, sizeof(r->head) - (size_t)n, "Retry-After: %u\r\n",
                          s->cfg.retry_after_s);
        }
        r->head_len = (size_t)n;
    }
}

/* RFC 9110 IMF-fixdate, written by hand: strftime would follow the host's
 * locale. */
const char *nea__date_line(nea_server *s, size_t *len)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    uint64_t tick = uv_now(s->loop);

    if (tick != s->date_tick || s->date_len == 0) {
        time_t now = time(NULL);
        s->date_tick = tick;
        if ((int64_t)now != s->date_sec || s->date_len == 0) {
            struct tm tm;
            gmtime_r(&now, &tm);
            s->date_sec = (int64_t)now;
            s->date_len = (size_t)snprintf(s->date_line, sizeof(s->date_line),
                                           "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n",
                                           days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
                                           tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
        }
    }
    *len = s->date_len;
    return s->date_line;
}

unsigned nea__static_bufs(nea_server *s, nea__err e, const char *conn_line, const char *allow,
                          size_t allow_len, bool head_only, char *hdrbuf, uv_buf_t *bufs)
{
    const nea__static_resp *r = &s->statics[e];
    size_t date_len, conn_len = strlen(conn_line), n = 0;
    const char *date = nea__date_line(s, &date_len);

    /* Allow (bounded by nea__route_allow), Date (37), Connection (<= 24), CRLF. */
    memcpy(hdrbuf + n, allow, allow_len);
    n += allow_len;
    memcpy(hdrbuf + n, date, date_len);
    n += date_len;
    memcpy(hdrbuf + n, conn_line, conn_len);
    n += conn_len;
    memcpy(hdrbuf + n, "\r\n", 2);
    n += 2;
    bufs[0] = uv_buf_init((char *)r->head, (unsigned)r->head_len);
    bufs[1] = uv_buf_init(hdrbuf, (unsigned)n);
    if (head_only) {
        return 2;
    }
    bufs[2] = uv_buf_init((char *)r->body, (unsigned)r->body_len);
    return 3;
}

static bool line_safe(const char *s)
{
    return strpbrk(s, "\r\n") == NULL;
}

int nea_resp_header(nea_req *req, const char *name, const char *value)
{
    static const char *const managed[] = {"content-length", "date", "connection",
                                          "transfer-encoding"};
    size_t nlen = strlen(name), vlen = strlen(value);
    nea__resp_hdr *h;
    char *line;

    if (req->responded) {
        return NEA_ERESPONDED;
    }
    if (nlen == 0 || !line_safe(name) || !line_safe(value) || memchr(name, ':', nlen) != NULL) {
        return UV_EINVAL;
    }
    for (size_t i = 0; i < sizeof(managed) / sizeof(managed[0]); i++) {
        if (strcasecmp(name, managed[i]) == 0) {
            return UV_EINVAL;
        }
    }
    h = nea__arena_alloc(req->arena, sizeof(*h), NEA__ALIGN);
    line = h != NULL ? nea__arena_alloc(req->arena, nlen + vlen + 4, 1) : NULL;
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
    if (req->resp_tail == NULL) {
        req->resp_tail = &req->resp_hdrs;
    }
    *req->resp_tail = h;
    req->resp_tail = &h->next;
    req->resp_hdrs_len += h->len;
    return 0;
}

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

static int respond(nea_req *req, int status, const char *ctype, const void *body, size_t len,
                   bool copy)
{
    nea__conn *c = req->conn;
    const char *reason, *conn_line, *date;
    size_t date_len, head_len, copy_len;
    bool no_body = status == 204 || status == 304;
    bool send_body = !no_body && !req->is_head;
    char cl[48], status_line[96], *buf, *p;
    int cl_len = 0, sl_len;

    if (req->responded) {
        return NEA_ERESPONDED;
    }
    if (req->cancelled || req->ended || c == NULL) {
        return NEA_ESTATE;
    }
    if (status < 200 || status > 599 || (ctype != NULL && !line_safe(ctype))) {
        return UV_EINVAL;
    }
    req->responded = true;
    reason = nea__reason(status);
    sl_len = snprintf(status_line, sizeof(status_line), "HTTP/1.1 %d %s\r\n", status, reason);
    if (!no_body) {
        cl_len = snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", len);
    }
    date = nea__date_line(req->srv, &date_len);
    conn_line = nea__conn_line(c);
    head_len = (size_t)sl_len + date_len + (size_t)cl_len + strlen(conn_line) + req->resp_hdrs_len +
               2 + (ctype != NULL ? strlen(ctype) + 16 : 0);
    copy_len = copy && send_body ? len : 0;

    buf = nea__arena_alloc(req->arena, head_len + copy_len, 1);
    if (buf == NULL) {
        req->oom_asked = head_len + copy_len;
        nea__req_log_oom(req);
        req->srv->stats.oom_500++;
        nea__conn_respond_error(c, NEA__E500);
        return NEA_ENOMEM;
    }
    p = put(buf, status_line, (size_t)sl_len);
    p = put(p, date, date_len);
    if (ctype != NULL) {
        p = put(p, "Content-Type: ", 14);
        p = put(p, ctype, strlen(ctype));
        p = put(p, "\r\n", 2);
    }
    p = put(p, cl, (size_t)cl_len);
    p = put(p, conn_line, strlen(conn_line));
    for (const nea__resp_hdr *h = req->resp_hdrs; h != NULL; h = h->next) {
        p = put(p, h->line, h->len);
    }
    p = put(p, "\r\n", 2);
    if (copy_len > 0) {
        p = put(p, body, copy_len);
    }
    req->wbufs[0] = uv_buf_init(buf, (unsigned)(p - buf));
    req->nwbufs = 1;
    if (!copy && send_body && len > 0) {
        req->wbufs[1] = uv_buf_init((char *)body, (unsigned)len);
        req->nwbufs = 2;
    }
    nea__count_response(req->srv, status);
    nea__conn_write_bufs(c, req->wbufs, req->nwbufs);
    return 0;
}

int nea_respond(nea_req *req, int status, const char *content_type, const void *body, size_t len)
{
    return respond(req, status, content_type, body, len, true);
}

int nea_respond_static(nea_req *req, int status, const char *content_type, const void *body,
                       size_t len)
{
    return respond(req, status, content_type, body, len, false);
}
