/*
 * conn.c - connection slots and the request lifecycle on them.
 *
 * A slot (in the reservation) holds a connection's libuv handles, its llhttp
 * parser and its fixed read buffer. One timer per slot enforces whichever
 * deadline the current state has:
 *
 *   IDLE    --first byte-->   HEAD     keep-alive timer   -> close
 *   HEAD    --head done-->    QUEUED   header deadline    -> 408, close
 *   QUEUED  --arena-->        BODY     queue timeout      -> 503, close
 *   BODY    --body done-->    HANDLER  body idle timer    -> 408, close
 *   HANDLER --respond-->      WRITING  (none: async handlers may take time)
 *   WRITING --written-->      IDLE     write timer        -> close
 *   (any)   --must close-->   LINGER   linger timer       -> close
 *
 * Invariants: a slot holds an arena only from a complete head to the end of
 * its response (idle and slow connections hold none); the read buffer is the
 * only place request bytes wait, so a connection never buffers more than
 * read_buffer_size (reading stops when it is full: backpressure for
 * pipelined floods); a request is detached from its slot before it ends, so
 * the slot and the arena are returned independently.
 */
#include "internal.h"

#include <string.h>
#include <sys/socket.h>

static void conn_process(nea__conn *c);
static void close_now(nea__conn *c);
static void close_lingering(nea__conn *c);
static void update_reading(nea__conn *c);

static const char continue_line[] = "HTTP/1.1 100 Continue\r\n\r\n";

/* --- lists ----------------------------------------------------------------- */

static void list_push(nea__conn **head, nea__conn **tail, nea__conn *c)
{
    c->next = NULL;
    c->prev = *tail;
    if (*tail != NULL) {
        (*tail)->next = c;
    } else {
        *head = c;
    }
    *tail = c;
}

static void list_remove(nea__conn **head, nea__conn **tail, nea__conn *c)
{
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        *head = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    } else {
        *tail = c->prev;
    }
    c->next = c->prev = NULL;
}

/* Leaves the current state, unlinking the slot from the idle list or the
 * arena wait queue as needed. The idle list (oldest first) holds the
 * keep-alive connections that may be evicted to make room. */
static void set_state(nea__conn *c, nea__conn_state st)
{
    nea_server *s = c->srv;
    if (c->in_idle_list) {
        list_remove(&s->idle_head, &s->idle_tail, c);
        c->in_idle_list = false;
    } else if (c->state == NEA__C_QUEUED) {
        list_remove(&s->wait_head, &s->wait_tail, c);
        s->wait_len--;
    }
    c->state = st;
    if (st == NEA__C_IDLE && c->served) {
        /* Only a connection that has been answered can be evicted: a fresh
         * one may hold a request that was sent but not read yet. */
        list_push(&s->idle_head, &s->idle_tail, c);
        c->in_idle_list = true;
    } else if (st == NEA__C_QUEUED) {
        list_push(&s->wait_head, &s->wait_tail, c);
        s->wait_len++;
    }
}

/* --- timers ---------------------------------------------------------------- */

static void on_timer(uv_timer_t *t)
{
    nea__conn *c = t->data;
    nea_server *s = c->srv;

    switch (c->state) {
    case NEA__C_HEAD:
    case NEA__C_BODY:
        s->stats.timeouts++;
        c->must_close = true;
        nea__conn_respond_error(c, NEA__E408);
        break;
    case NEA__C_QUEUED:
        s->stats.shed_503++;
        c->must_close = true;
        nea__conn_respond_error(c, NEA__E503);
        break;
    case NEA__C_WRITING:
        s->stats.timeouts++;
        close_now(c);
        break;
    default: /* IDLE (keep-alive expired), LINGER */
        close_now(c);
        break;
    }
}

static void arm(nea__conn *c, unsigned ms)
{
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

/* The body may idle body_timeout_ms between reads, and must be complete by
 * its deadline however steadily it drips. */
static void arm_body(nea__conn *c)
{
    uint64_t now = uv_now(c->srv->loop);
    uint64_t left = c->body_deadline_ms > now ? c->body_deadline_ms - now : 0;
    unsigned idle = c->srv->cfg.body_timeout_ms;
    arm(c, left < idle ? (unsigned)left : idle);
}

/* --- reading --------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    nea__conn *c = h->data;
    size_t size = c->srv->cfg.read_buffer_size;
    (void)suggested;
    if (c->state == NEA__C_LINGER) {
        *buf = uv_buf_init(c->rbuf, (unsigned)size); /* discarded */
    } else {
        *buf = uv_buf_init(c->rbuf + c->rlen, (unsigned)(size - c->rlen));
    }
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    nea__conn *c = st->data;
    (void)buf;
    if (n == 0) {
        return;
    }
    if (n < 0) {
        c->eof = true;
        if (n == UV_EOF && (c->state == NEA__C_WRITING || c->owrite_pending)) {
            /* The peer finished sending: finish what is being written and
             * answer the complete requests already buffered, then close
             * (conn_process, on_out_written). */
            update_reading(c);
        } else {
            close_now(c); /* cancels a request in flight */
        }
        return;
    }
    if (c->state == NEA__C_LINGER) {
        return;
    }
    c->rlen += (size_t)n;
    conn_process(c);
}

static void update_reading(nea__conn *c)
{
    bool want;
    if (c->state == NEA__C_FREE || c->state == NEA__C_CLOSING || c->eof) {
        want = false;
    } else {
        want = c->state == NEA__C_LINGER || c->rlen < c->srv->cfg.read_buffer_size;
    }
    if (want && !c->reading) {
        c->reading = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

/* --- closing ---------------------------------------------------------------- */

static void on_tcp_close(uv_handle_t *h)
{
    nea__conn *c = h->data;
    nea_server *s = c->srv;
    c->state = NEA__C_FREE;
    if (c->counted_open) {
        s->stats.connections_open--;
        c->counted_open = false;
    }
    c->next = s->free_conns;
    s->free_conns = c;
    s->handles_open--;
    nea__server_slot_freed(s);
}

static void cancel_request(nea__conn *c)
{
    nea_req *req = c->req;
    if (req != NULL) {
        req->cancelled = true;
        c->req = NULL;
        req->conn = NULL;
        nea__req_end(req);
    }
}

static void close_now(nea__conn *c)
{
    if (c->state == NEA__C_CLOSING || c->state == NEA__C_FREE) {
        return;
    }
    set_state(c, NEA__C_CLOSING);
    cancel_request(c);
    uv_timer_stop(&c->timer);
    update_reading(c);
    uv_close((uv_handle_t *)&c->tcp, on_tcp_close);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    nea__conn *c = req->data;
    if (status < 0) {
        close_now(c);
    }
}

/* Closes after the last response: send FIN, then drain what the peer still
 * sends until it closes or the linger timer fires, so it reads our response
 * rather than a reset. */
static void close_lingering(nea__conn *c)
{
    cancel_request(c);
    if (c->eof) {
        close_now(c);
        return;
    }
    set_state(c, NEA__C_LINGER);
    c->shut.data = c;
    if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        close_now(c);
        return;
    }
    arm(c, NEA__LINGER_MS);
    update_reading(c);
}

void nea__conn_close(nea__conn *c)
{
    close_now(c);
}

nea__conn *nea__conn_evictable(nea_server *s)
{
    unsigned looked = 0;
    for (nea__conn *c = s->idle_head; c != NULL && looked < NEA__EVICT_SCAN;
         c = c->next, looked++) {
        uv_os_fd_t fd;
        char byte;
        /* Bytes waiting in the kernel are a request on its way: keep it. */
        if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0 ||
            recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) <= 0) {
            return c;
        }
    }
    return NULL;
}

/* --- writing --------------------------------------------------------------- */

static void write_finished(nea__conn *c, int status)
{
    nea_req *req = c->req;
    if (req != NULL) {
        req->written = true;
        req->bytes_sent = req->bytes_sent || status == 0;
        if (status < 0) {
            c->must_close = true;
            c->eof = true; /* nothing more can be said on this socket */
        }
        if (req->depth > 0) {
            return; /* handler code still on the stack: nea__req_settle finishes */
        }
    }
    nea__conn_response_done(c, status);
}

static void on_write(uv_write_t *w, int status)
{
    nea__conn *c = w->data;
    if (c->state == NEA__C_CLOSING) {
        return; /* closed under the write; the request was already cancelled */
    }
    write_finished(c, status);
}

static void on_out_written(uv_write_t *w, int status)
{
    nea__conn *c = w->data;
    c->owrite_pending = false;
    c->olen = 0;
    if (c->state == NEA__C_CLOSING) {
        return;
    }
    if (status < 0) {
        close_now(c);
    } else if (c->eof && c->state == NEA__C_IDLE) {
        close_lingering(c); /* the peer half-closed while the batch drained */
    }
}

/* Hands the gathered responses to the kernel: one write for the batch.
 * What it does not take is written from obuf, which stays untouched (no
 * gathering) until that write completes. */
static int flush_out(nea__conn *c)
{
    uv_buf_t b = uv_buf_init(c->obuf, (unsigned)c->olen);
    int r;

    if (c->olen == 0 || c->owrite_pending) {
        return 0;
    }
    r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (r == UV_EAGAIN || r == UV_ENOSYS) {
        r = 0;
    }
    if (r < 0 || (size_t)r == c->olen) {
        c->olen = 0;
        return r < 0 ? r : 0;
    }
    b.base += r;
    b.len -= (size_t)r;
    c->wreq_out.data = c;
    r = uv_write(&c->wreq_out, (uv_stream_t *)&c->tcp, &b, 1, on_out_written);
    if (r < 0) {
        c->olen = 0;
        return r;
    }
    c->owrite_pending = true;
    return 0;
}

/* A response may join the batch when another pipelined request is already
 * buffered behind it, it keeps the connection open, and it fits. */
static bool gather(nea__conn *c, const uv_buf_t *bufs, unsigned n)
{
    size_t total = 0;
    if (!c->in_process || c->rpos >= c->rlen || c->must_close || c->srv->closing ||
        c->owrite_pending) {
        return false;
    }
    for (unsigned i = 0; i < n; i++) {
        total += bufs[i].len;
    }
    if (total > NEA__OBUF - c->olen) {
        return false;
    }
    for (unsigned i = 0; i < n; i++) {
        memcpy(c->obuf + c->olen, bufs[i].base, bufs[i].len);
        c->olen += bufs[i].len;
    }
    return true;
}

void nea__conn_write_bufs(nea__conn *c, uv_buf_t *bufs, unsigned n)
{
    int r;

    set_state(c, NEA__C_WRITING);
    if (gather(c, bufs, n)) {
        write_finished(c, 0); /* the request ends; its bytes wait in obuf */
        return;
    }
    r = flush_out(c); /* earlier responses go first */
    if (r == 0) {
        r = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
    }
    if (r == UV_EAGAIN || r == UV_ENOSYS) {
        r = 0;
    }
    if (r < 0) {
        write_finished(c, r);
        return;
    }
    /* Skip what the kernel took; uv_write gets the rest (at most 3 bufs,
     * which libuv keeps inline without allocating). */
    for (size_t done = (size_t)r; n > 0 && done >= bufs[0].len; n--, bufs++) {
        done -= bufs[0].len;
        r = (int)done;
    }
    if (n == 0) {
        write_finished(c, 0);
        return;
    }
    if (c->req != NULL && r > 0) {
        c->req->bytes_sent = true;
    }
    bufs[0].base += r;
    bufs[0].len -= (size_t)r;
    c->wreq.data = c;
    r = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, n, on_write);
    if (r < 0) {
        write_finished(c, r);
        return;
    }
    arm(c, c->srv->cfg.write_timeout_ms);
}

const char *nea__conn_line(nea__conn *c)
{
    if (!c->keep_alive || c->must_close || c->srv->closing) {
        c->must_close = true;
        return "Connection: close\r\n";
    }
    return c->parser.http_minor == 0 ? "Connection: keep-alive\r\n" : "";
}

void nea__conn_respond_error(nea__conn *c, nea__err e)
{
    nea_server *s = c->srv;
    char allow[96];
    size_t allow_len = 0;
    bool head_only = c->head.headers_done && c->parser.method == HTTP_HEAD;
    unsigned n;

    if (e != NEA__E404 && e != NEA__E405 && e != NEA__E500) {
        c->must_close = true; /* the connection's framing can't be trusted */
    }
    if (e == NEA__E405) {
        allow_len = nea__route_allow(s, c->head.url, c->head.url_len, allow, sizeof(allow));
    }
    if (e == NEA__E400) {
        s->stats.rejected_400++;
    }
    if (c->req != NULL) {
        c->req->responded = true;
    }
    n = nea__static_bufs(s, e, nea__conn_line(c), allow, allow_len, head_only, c->hdrbuf, c->ebufs);
    nea__count_response(s, s->statics[e].status);
    nea__conn_write_bufs(c, c->ebufs, n);
}

/* --- requests ------------------------------------------------------------ */

nea_req *nea__req_open(nea_server *s, nea__arena *a)
{
    nea_req *req = nea__arena_alloc(a, sizeof(*req), NEA__ALIGN);
    /* The plan guarantees room for the struct; only fault injection fails. */
    if (req == NULL) {
        return NULL;
    }
    memset(req, 0, sizeof(*req));
    req->srv = s;
    req->arena = a;
    s->live_reqs++;
    return req;
}

static void release_arena(nea_req *req)
{
    nea_server *s = req->srv;
    s->live_reqs--;
    nea__pool_release(&s->pool, req->arena);
    nea__server_arena_released(s);
}

static void on_tracked_close(uv_handle_t *h)
{
    nea_req *req = h->data;
    if (--req->handles_closing == 0) {
        release_arena(req);
    }
}

/* Runs defers and closes tracked handles; the arena returns once the last
 * handle has closed. */
static void end_now(nea_req *req)
{
    req->ended = true;
    nea__req_run_defers(req, NULL);
    for (nea__tracked *t = req->tracked; t != NULL; t = t->next) {
        if (!uv_is_closing(t->handle)) {
            t->handle->data = req;
            uv_close(t->handle, on_tracked_close);
            req->handles_closing++;
        }
    }
    if (req->handles_closing == 0) {
        release_arena(req);
    }
}

void nea__req_end(nea_req *req)
{
    if (req->ended) {
        return;
    }
    if (req->conn != NULL) {
        req->conn->req = NULL;
        req->conn = NULL;
    }
    if (req->depth > 0) {
        /* Handler code is on the stack and may still use the arena: the
         * outermost frame ends the request when it returns (settle). */
        req->end_pending = true;
        return;
    }
    end_now(req);
}

void nea__req_oom(nea_req *req)
{
    if (!req->responded && req->conn != NULL) {
        nea__conn_respond_error(req->conn, NEA__E500);
    }
}

void nea__req_settle(nea_req *req)
{
    if (req->depth > 0 || req->ended) {
        return;
    }
    if (req->end_pending) {
        end_now(req);
    } else if (req->written && req->conn != NULL) {
        nea__conn_response_done(req->conn, 0);
    }
}

static void call_handler(nea_req *req, void *arg)
{
    (void)arg;
    req->fn(req, req->fn_data);
}

static void dispatch(nea__conn *c)
{
    uv_timer_stop(&c->timer);
    set_state(c, NEA__C_HANDLER);
    nea__req_call(c->req, call_handler, NULL);
}

void nea__conn_response_done(nea__conn *c, int status)
{
    nea_server *s = c->srv;

    uv_timer_stop(&c->timer);
    if (c->req != NULL) {
        nea__req_end(c->req); /* detaches */
    }
    if (status < 0) {
        close_now(c);
    } else if (c->must_close || s->closing) {
        close_lingering(c);
    } else {
        c->served = true;
        set_state(c, NEA__C_IDLE);
        arm(c, s->cfg.keepalive_timeout_ms);
        conn_process(c); /* pipelined requests already buffered */
    }
}

/* --- the request head ------------------------------------------------------ */

static void begin_head(nea__conn *c)
{
    nea_server *s = c->srv;
    if (c->rpos > 0) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    memset(&c->head, 0, sizeof(c->head));
    llhttp_init(&c->parser, HTTP_REQUEST, &s->settings);
    c->parser.data = c;
    c->route = NULL;
    c->must_close = false;
    set_state(c, NEA__C_HEAD);
    arm(c, s->cfg.header_timeout_ms); /* a deadline: more bytes do not extend it */
}

static bool body_expected(const nea__conn *c)
{
    return c->head.chunked || (c->head.has_cl && c->head.content_length > 0);
}

static void start_body(nea__conn *c)
{
    nea_req *req = c->req;
    nea__head *h = &c->head;

    if (h->chunked) {
        req->body = nea__arena_alloc(req->arena, 1, 1);
        llhttp_resume(&c->parser);
    } else {
        req->body = nea__arena_alloc(req->arena, (size_t)h->content_length + 1, 1);
        c->body_left = h->content_length;
    }
    if (req->body == NULL) {
        nea__conn_respond_error(c, NEA__E413);
        return;
    }
    req->body[0] = '\0';
    if (h->expect_continue && c->parser.http_minor == 1 && c->rpos == c->rlen) {
        uv_buf_t b = uv_buf_init((char *)continue_line, sizeof(continue_line) - 1);
        int r = flush_out(c);
        if (r == 0) {
            r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        }
        if (r == UV_EAGAIN) {
            r = 0;
        }
        if (r >= 0 && (size_t)r < b.len) {
            b.base += r;
            b.len -= (size_t)r;
            c->wreq_continue.data = c;
            r = uv_write(&c->wreq_continue, (uv_stream_t *)&c->tcp, &b, 1, NULL);
        }
        if (r < 0) {
            close_now(c);
            return;
        }
    }
    set_state(c, NEA__C_BODY);
    c->body_deadline_ms = uv_now(c->srv->loop) + c->srv->cfg.body_deadline_ms;
    arm_body(c);
}

/* An arena is available for the head waiting in c. */
void nea__conn_arena_ready(nea__conn *c, nea__arena *a)
{
    nea_server *s = c->srv;
    nea__head *h = &c->head;
    nea_req *req = nea__req_open(s, a);
    int rc;

    if (req == NULL) {
        nea__pool_release(&s->pool, a);
        c->must_close = true;
        nea__conn_respond_error(c, NEA__E500);
        return;
    }
    c->req = req;
    req->conn = c;
    req->fn = c->route->fn;
    req->fn_data = c->route->data;
    req->http_minor = c->parser.http_minor;
    req->is_head = c->parser.method == HTTP_HEAD;
    rc = nea__head_index(req, c->rbuf + h->start, h->end - h->start,
                         c->route->prefix ? c->route->path_len : 0);
    c->rpos = h->end;
    if (rc != 0) {
        nea__conn_respond_error(c, NEA__E431);
        return;
    }
    if (body_expected(c)) {
        start_body(c);
    } else {
        dispatch(c);
    }
    conn_process(c); /* body bytes or pipelined requests already buffered */
}

static void head_done(nea__conn *c)
{
    nea_server *s = c->srv;
    nea__head *h = &c->head;
    const char *method = c->rbuf + h->start;
    size_t method_len = (size_t)((const char *)memchr(method, ' ', h->end - h->start) - method);
    const char *q;
    size_t path_len;
    nea__arena *a;
    int status;

    s->stats.requests++;
    status = nea__head_parse(h, &c->parser, c->rbuf);
    if (status != 0) {
        nea__conn_respond_error(c, nea__err_for_status(status));
        return;
    }
    c->keep_alive = llhttp_should_keep_alive(&c->parser) != 0;
    if (c->parser.upgrade) {
        c->must_close = true; /* no protocol switch: what follows is not HTTP/1.1 */
    }
    path_len = nea__target_path(h->url, h->url_len);
    h->url += path_len;
    h->url_len -= path_len;
    q = memchr(h->url, '?', h->url_len);
    path_len = q != NULL ? (size_t)(q - h->url) : h->url_len;
    if (path_len == 0) {
        h->url = "/"; /* absolute-form without a path */
        path_len = h->url_len = 1;
    }
    switch (nea__route_find(s, method, method_len, h->url, path_len, &c->route)) {
    case NEA__ROUTE_FOUND:
        break;
    case NEA__ROUTE_NO_METHOD:
        h->url_len = path_len;
        c->rpos = h->end;
        c->must_close = c->must_close || body_expected(c);
        nea__conn_respond_error(c, NEA__E405);
        return;
    default:
        c->rpos = h->end;
        c->must_close = c->must_close || body_expected(c);
        nea__conn_respond_error(c, NEA__E404);
        return;
    }
    if (h->has_cl && h->content_length > s->cfg.max_body_size) {
        nea__conn_respond_error(c, NEA__E413); /* decided before reading the body */
        return;
    }
    a = nea__pool_acquire(&s->pool);
    if (a != NULL) {
        nea__conn_arena_ready(c, a);
    } else if (s->cfg.queue_timeout_ms > 0 && s->wait_len < s->wait_max && !s->closing) {
        set_state(c, NEA__C_QUEUED);
        arm(c, s->cfg.queue_timeout_ms);
    } else {
        s->stats.shed_503++;
        nea__conn_respond_error(c, NEA__E503);
    }
}

static void process_head(nea__conn *c)
{
    size_t size = c->srv->cfg.read_buffer_size;
    switch (nea__head_scan(&c->head, c->rbuf, c->rlen)) {
    case NEA__HEAD_BAD:
        nea__conn_respond_error(c, NEA__E400);
        break;
    case NEA__HEAD_MORE:
        if (c->rlen == size) {
            nea__conn_respond_error(c, c->head.line_done ? NEA__E431 : NEA__E414);
        }
        break;
    case NEA__HEAD_DONE:
        head_done(c);
        break;
    }
}

/* --- the body ------------------------------------------------------------------ */

static void process_body(nea__conn *c)
{
    nea_req *req = c->req;
    size_t avail = c->rlen - c->rpos;

    if (c->head.chunked) {
        llhttp_errno_t err = llhttp_execute(&c->parser, c->rbuf + c->rpos, avail);
        if (err == HPE_PAUSED && c->head.message_done) {
            c->rpos = (size_t)(llhttp_get_error_pos(&c->parser) - c->rbuf);
            dispatch(c);
            return;
        }
        if (err != HPE_OK) {
            nea__conn_respond_error(c, c->head.status == 413 ? NEA__E413 : NEA__E400);
            return;
        }
        c->rpos = c->rlen;
    } else {
        size_t take = avail < c->body_left ? avail : (size_t)c->body_left;
        memcpy(req->body + req->body_len, c->rbuf + c->rpos, take);
        req->body_len += take;
        req->body[req->body_len] = '\0';
        c->rpos += take;
        c->body_left -= take;
        if (c->body_left == 0) {
            dispatch(c);
            return;
        }
    }
    /* Everything buffered belongs to the body and is now in the arena. */
    c->rpos = c->rlen = 0;
    arm_body(c);
}

/* Runs the state machine over buffered bytes until it needs more input or
 * waits for something else (an arena, a handler, a write). A response that
 * completes synchronously inside this loop re-enters here; the nested call
 * returns at once and this loop carries on, so pipelined requests are served
 * iteratively, not by recursion. */
static void conn_process(nea__conn *c)
{
    if (c->in_process) {
        return;
    }
    c->in_process = true;
    for (;;) {
        if (c->state == NEA__C_IDLE && c->rpos < c->rlen) {
            begin_head(c);
        }
        if (c->state == NEA__C_HEAD) {
            process_head(c);
            if (c->state == NEA__C_HEAD) {
                break; /* needs more bytes */
            }
        } else if (c->state == NEA__C_BODY && c->rpos < c->rlen) {
            process_body(c);
            if (c->state == NEA__C_BODY) {
                break;
            }
        } else {
            break;
        }
    }
    c->in_process = false;
    if (c->state != NEA__C_CLOSING && flush_out(c) < 0) {
        close_now(c);
        return;
    }
    if (c->eof && (c->state == NEA__C_IDLE || c->state == NEA__C_HEAD)) {
        close_lingering(c); /* nothing more can arrive */
        return;
    }
    if (c->state == NEA__C_IDLE && c->rpos == c->rlen) {
        c->rpos = c->rlen = 0;
    }
    update_reading(c);
}

/* --- slots ------------------------------------------------------------------- */

void nea__conn_init(nea__conn *c, nea_server *s, char *rbuf, char *obuf)
{
    memset(c, 0, sizeof(*c));
    c->srv = s;
    c->rbuf = rbuf;
    c->obuf = obuf;
    c->state = NEA__C_FREE;
    uv_timer_init(s->loop, &c->timer);
    c->timer.data = c;
    s->handles_open++;
}

int nea__conn_accept(nea__conn *c, uv_stream_t *listener, uv_os_sock_t fd)
{
    nea_server *s = c->srv;
    int rc;
    uv_tcp_init(s->loop, &c->tcp);
    s->handles_open++;
    c->tcp.data = c;
    rc = listener != NULL ? uv_accept(listener, (uv_stream_t *)&c->tcp) : uv_tcp_open(&c->tcp, fd);
    if (rc != 0) {
        c->state = NEA__C_CLOSING;
        uv_close((uv_handle_t *)&c->tcp, on_tcp_close);
        return rc;
    }
    c->rlen = c->rpos = 0;
    c->olen = 0;
    c->owrite_pending = false;
    c->served = false;
    c->reading = c->eof = c->must_close = false;
    c->keep_alive = true;
    c->req = NULL;
    c->counted_open = true;
    s->stats.connections_open++;
    s->stats.accepted++;
    if (s->stats.connections_open > s->stats.connections_max) {
        s->stats.connections_max = s->stats.connections_open;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    set_state(c, NEA__C_IDLE);
    arm(c, s->cfg.keepalive_timeout_ms);
    update_reading(c);
    return 0;
}
