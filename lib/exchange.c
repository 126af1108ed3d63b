/*
 * exchange.c - the HTTP/1.1 exchange on a connection slot: the head, its
 * route, the arena, the body, the handler's turn and the response.
 *
 * The slot (conn.c) owns the socket, the phases and their deadlines; it
 * reports here through nea__slot_hooks (bytes arrived, a deadline passed,
 * a write finished, the connection is closing) and this file moves the
 * slot between phases with nea__conn_enter:
 *
 *   IDLE --first byte--> HEAD --head done--> QUEUED --arena--> BODY
 *        --body done--> HANDLER --respond--> WRITING --written--> IDLE
 *   (a streamed response: WRITING <-> STREAM per piece; any phase --must
 *   close--> LINGER)
 *
 * The peer's end of sending (EOF: a half-close or a close) is not a
 * cancel: requests already complete are answered, and the connection
 * closes once it would need input that can no longer come. A reset or a
 * failed write cancels the request in flight.
 *
 * The work is split by concern, each reporting back rather than calling
 * up: output.c writes (the batch, responses, pieces, sendfile, 100
 * Continue), body.c decodes a body's framing and pace, record.c counts
 * each request when it ends, req.c runs the request's lifecycle (the
 * request reports here through nea__req_hooks), and admission (through
 * nea__conn_hooks) decides who gets an arena.
 *
 * Invariants: a slot holds an arena only from a complete head to the end of
 * its response (idle and slow connections hold none); the read buffer is
 * the only place request bytes wait, so a connection never buffers more
 * than read_buffer_size (reading stops when it is full: backpressure for
 * pipelined floods); a request is detached from its slot before it ends,
 * so the slot and the arena are returned independently.
 */
#include "exchange.h"

#include "stats.h"
#include "stream.h"
#include "wsconn.h"

#include <string.h>

static void conn_process(nea__conn *c);
static void response_done(nea__conn *c, int status);
static void dispatch(nea__conn *c);
static void begin_body(nea__conn *c);
static void body_end(nea__conn *c);
static void finish_record(nea__conn *c, nea_outcome fallback);

/* The phase waits for bytes from the peer: a new request, the rest of a
 * head, or more of a body the handler is ready for. */
static bool needs_input(const nea__conn *c)
{
    switch (c->state) {
    case NEA__C_IDLE:
    case NEA__C_HEAD:
        return true;
    case NEA__C_BODY:
        return !nea__stream_body_paused(c->w->req);
    default:
        return false;
    }
}

/* --- the slot's reports -------------------------------------------------------- */

static void on_expired(nea__conn *c, nea__expiry e)
{
    nea_stats *st = c->env->stats;
    switch (e) {
    case NEA__EXPIRE_408:
        st->timeouts++;
        c->w->must_close = true;
        nea__conn_respond_error(c, NEA__PB_408);
        break;
    case NEA__EXPIRE_504:
        st->timeouts++;
        st->unanswered++;
        nea__log(c->env->cfg, NEA_LOG_WARN,
                 "no response to %s %s within response_timeout_ms (%u); answering 504",
                 c->w->req->msg.method, c->w->req->msg.path,
                 nea__route_response_ms(c->w->route, c->env->cfg));
        nea__req_cancel(c->w->req); /* its work is abandoned: it may not answer now */
        nea__conn_respond_error(c, NEA__PB_504);
        break;
    case NEA__EXPIRE_SHED:
        st->shed_no_arena++;
        nea__conn_shed(c, false);
        break;
    case NEA__EXPIRE_TIMEOUT:
        st->timeouts++;
        c->w->record.sample.outcome = NEA_OUTCOME_TIMEOUT;
        nea__conn_close(c);
        break;
    case NEA__EXPIRE_NO_BUFFER:
        st->shed_no_buffer++;
        nea__conn_shed(c, false);
        break;
    default:
        break;
    }
}

/* The request lets go of the slot, then ends (its arena returns on its own
 * schedule). */
static void end_request(nea__conn *c)
{
    nea_req *req = c->w->req;
    if (req != NULL) {
        c->w->req = NULL;
        c->w->keep = 0; /* nothing reads its head any more */
        nea__req_end(req);
    }
}

static void on_closing(nea__conn *c)
{
    if (c->w == NULL) {
        return; /* it had nothing under way */
    }
    finish_record(c, NEA_OUTCOME_CANCELLED);
    if (c->w->req != NULL) {
        nea__req_cancel(c->w->req);
        end_request(c);
    }
}

/* --- writing --------------------------------------------------------------- */

static void write_finished(nea__conn *c, int status)
{
    if (status < 0) {
        c->w->must_close = true;
        c->eof = true; /* nothing more can be said on this socket */
    }
    if (c->w->req != NULL && !nea__req_written(c->w->req)) {
        return; /* handler code still on the stack: its settle finishes */
    }
    response_done(c, status);
}

/* A response may join the batch when another pipelined request is already
 * buffered behind it and it keeps the connection open. */
static bool may_gather(const nea__conn *c)
{
    return c->in_process && c->w->rpos < c->w->rlen && !c->w->must_close && !c->env->closing;
}

static void write_bufs(nea__conn *c, uv_buf_t *bufs, unsigned n)
{
    int r;

    nea__record_out(&c->w->record, bufs, n);
    if (n == 0 || (may_gather(c) && nea__out_gather(&c->w->out, bufs, n))) {
        write_finished(c, 0); /* the request ends; its bytes wait in the batch */
        return;
    }
    r = nea__out_send(&c->w->out, bufs, n);
    if (r == 0) {
        nea__conn_enter(c, NEA__C_WRITING); /* queued: the write deadline runs */
        return;
    }
    write_finished(c, r > 0 ? 0 : r); /* written at once (or failed): no WRITING phase */
}

/* The Connection line for the current response: closes the connection
 * after it when the peer or the server wants that. */
static const char *conn_line(nea__conn *c)
{
    /* peer_closing: only the peer's own wish. An error response has set
     * must_close already (its framing or an unread body may still be
     * arriving), and a draining server closes for its own reasons. */
    bool server_closes = c->w->must_close || c->env->closing || c->w->body_unread;
    c->w->peer_closing = !c->w->keep_alive && !server_closes;
    if (!c->w->keep_alive || server_closes) {
        c->w->must_close = true;
        return "Connection: close\r\n";
    }
    return c->w->parser.http_minor == 0 ? "Connection: keep-alive\r\n" : "";
}

static bool body_expected(const nea__conn *c)
{
    return c->w->head.chunked || (c->w->head.has_cl && c->w->head.content_length > 0);
}

void nea__conn_respond_error(nea__conn *c, nea__prebuilt e)
{
    nea__conn_env *env = c->env;
    char allow[96];
    size_t allow_len = 0;
    bool head_only = c->w->head.headers_done && c->w->parser.method == HTTP_HEAD;
    unsigned n;

    if (!nea__prebuilt_keeps(e)) {
        c->w->must_close = true; /* the connection's framing can't be trusted */
    } else if ((c->w->req == NULL && body_expected(c)) || c->w->body_unread) {
        c->w->must_close = true; /* answered from the head: the unread body follows */
    }
    if (e == NEA__PB_405) {
        allow_len =
            nea__route_allow(env->router, c->w->head.url, c->w->head.url_len, allow, sizeof(allow));
    }
    if (e == NEA__PB_400) {
        env->stats->rejected_400++;
    }
    if (c->w->req != NULL && nea__req_live(c->w->req)) {
        c->w->req->phase = NEA__R_ANSWERED;
    }
    if (!c->w->record.open) {
        nea__record_begin(&c->w->record, 0); /* answered before the head was complete: unrouted */
    }
    nea__record_stamp(&c->w->record);
    c->w->record.sample.status = nea__prebuilt_status(e);
    if (nea__prebuilt_outcome(e) != NEA_OUTCOME_COMPLETED) {
        c->w->record.sample.outcome = nea__prebuilt_outcome(e);
    }
    n = nea__static_bufs(env->statics, &env->date, uv_now(env->loop), e, conn_line(c), allow,
                         allow_len, head_only, c->w->hdrbuf, c->w->ebufs);
    nea__stats_response(env->stats, nea__prebuilt_status(e));
    write_bufs(c, c->w->ebufs, n);
}

/* A 503 for a connection that holds no buffer (refused as it was accepted,
 * or waiting for a buffer in vain): the pre-built bytes go out with one
 * try-write from the stack, as much as the kernel takes, and the
 * connection closes. Counted in the unrouted record. */
static void refuse_without_buffer(nea__conn *c)
{
    nea__conn_env *env = c->env;
    nea__sample sample = {.status = 503, .outcome = NEA_OUTCOME_SHED};
    char hdrbuf[NEA__HDRBUF];
    uv_buf_t bufs[3];
    unsigned n;
    if (env->tls != NULL) {
        /* A TLS client cannot read a plain 503: it is closed (still counted
         * by its cause, and as a shed in the unrouted record). */
        sample.status = 0;
        nea__metrics_record(env->records.metrics, &sample);
        nea__conn_close(c);
        return;
    }
    n = nea__static_bufs(env->statics, &env->date, uv_now(env->loop), NEA__PB_503,
                         "Connection: close\r\n", "", 0, false, hdrbuf, bufs);
    (void)uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
    nea__stats_response(env->stats, 503);
    nea__metrics_record(env->records.metrics, &sample);
    nea__conn_close(c);
}

void nea__conn_shed(nea__conn *c, bool keep)
{
    if (c->w == NULL) {
        refuse_without_buffer(c);
        return;
    }
    c->w->must_close = c->w->must_close || !keep;
    nea__conn_respond_error(c, NEA__PB_503);
}

/* --- the request's hooks ---------------------------------------------------- */

static const char *req_conn_line(nea_req *req, bool close)
{
    nea__conn *c = req->conn;
    c->w->must_close = c->w->must_close || close;
    return conn_line(c);
}

static void req_send(nea_req *req, uv_buf_t *bufs, unsigned n)
{
    nea__conn *c = req->conn;
    c->w->record.sample.status = req->status;
    write_bufs(c, bufs, n);
}

static void req_send_error(nea_req *req, nea__prebuilt e)
{
    nea__conn_respond_error(req->conn, e);
}

static void req_written(nea_req *req)
{
    response_done(req->conn, 0);
}

static int req_peer(nea_req *req, struct sockaddr_storage *addr)
{
    const struct sockaddr *p = nea__conn_peer(req->conn);
    if (p->sa_family != AF_INET && p->sa_family != AF_INET6) {
        return UV_ENOTCONN;
    }
    nea__addr_copy(addr, p);
    return 0;
}

/* One piece at a time (stream.c): the piece hook always reports from the
 * loop, so the producer is never re-entered from inside its own write. */
static int req_send_piece(nea_req *req, uv_buf_t *bufs, unsigned n)
{
    nea__conn *c = req->conn;
    int r;
    nea__record_out(&c->w->record, bufs, n);
    c->w->record.sample.status = req->status;
    r = nea__out_piece(&c->w->out, bufs, n);
    if (r < 0) {
        nea__conn_close(c);
        return r;
    }
    nea__conn_enter(c, NEA__C_WRITING);
    return 0;
}

static int req_send_file(nea_req *req, int fd, uint64_t off, size_t len)
{
    nea__conn *c = req->conn;
    int64_t n = nea__out_file(&c->w->out, fd, off, len);
    if (n > 0) {
        c->w->record.sample.bytes_out += (uint64_t)n;
    }
    return (int)n; /* sendfile(2) sends at most 0x7ffff000 bytes a call */
}

static void req_abort(nea_req *req)
{
    nea__conn_close(req->conn);
}

/* The routed head's handler takes its body in pieces. */
static bool stream_route(const nea__conn *c)
{
    return (c->w->route->flags & NEA_ROUTE_STREAM_BODY) != 0;
}

/* The handler of a streaming route is ready for its body. */
static int req_body_begin(nea_req *req)
{
    nea__conn *c = req->conn;
    if (!stream_route(c)) {
        return NEA_ESTATE;
    }
    if (!c->w->body_unread) {
        nea__stream_body_piece(req, NULL, 0); /* no body: its end at once */
        return 0;
    }
    begin_body(c);
    conn_process(c); /* pieces already buffered */
    return 0;
}

static void req_body_resume(nea_req *req)
{
    nea__conn *c = req->conn;
    if (c->state != NEA__C_BODY) {
        return;
    }
    if (!c->w->body.is_chunked && c->w->body.left == 0) {
        body_end(c); /* the paused piece was the last */
        return;
    }
    if (c->w->rpos == c->w->rlen) {
        c->w->rpos = c->w->rlen = c->w->keep; /* the paused piece is released */
    }
    conn_process(c);
}

static const nea__req_hooks req_hooks = {
    .conn_line = req_conn_line,
    .send = req_send,
    .send_error = req_send_error,
    .written = req_written,
    .peer = req_peer,
    .send_piece = req_send_piece,
    .send_file = req_send_file,
    .abort = req_abort,
    .body_begin = req_body_begin,
    .body_resume = req_body_resume,
};

/* Runs the handler. The clock is read once before and once after (for the
 * load and the metrics both). A request that is granted an arena at once
 * and answered and written by its handler ends inside it: its end's clock
 * read (record.c) is the one after, so it costs two reads in all. */
static void dispatch(nea__conn *c)
{
    unsigned seq = c->w->record.seq;
    uint64_t t0, t1;
    nea__conn_enter(c, NEA__C_HANDLER);
    t0 = nea__record_handler_start(&c->w->record);
    nea__req_dispatch(c->w->req);
    /* Answered, written and done inside: the slot may be idle and its
     * buffer back in the pool by now (its record was finished then). */
    t1 = c->w != NULL ? nea__record_handler_end(&c->w->record, seq, t0) : uv_hrtime();
    nea__load_handler_ran(c->env->load, t1 - t0);
}

/* The request's response is fully written (or failed with status < 0). */
static void response_done(nea__conn *c, int status)
{
    finish_record(c, status < 0 ? NEA_OUTCOME_CANCELLED : NEA_OUTCOME_COMPLETED);
    if (status >= 0 && c->w->upgrade) {
        nea__wsconn_start(c); /* the slot is the WebSocket's now; it ends the request */
        return;
    }
    end_request(c); /* every branch below sets the next deadline or closes */
    if (status < 0) {
        nea__conn_close(c);
    } else if (c->w->peer_closing && c->w->rpos == c->w->rlen) {
        /* The peer said Connection: close and everything it sent has been
         * read and answered: it sends nothing more, so there is nothing to
         * drain and no reset to fear. Closing now saves the shutdown, a
         * read and the linger timer of the half-close. */
        nea__conn_close(c);
    } else if (c->w->must_close || c->env->closing) {
        nea__conn_close_lingering(c);
    } else {
        c->served = true;
        nea__conn_enter(c, NEA__C_IDLE);
        conn_process(c); /* pipelined requests already buffered */
    }
}

/* --- the request head ------------------------------------------------------ */

static void begin_head(nea__conn *c)
{
    if (c->w->rpos > 0) {
        memmove(c->w->rbuf, c->w->rbuf + c->w->rpos, c->w->rlen - c->w->rpos);
        c->w->rlen -= c->w->rpos;
        c->w->rpos = 0;
    }
    nea__head_begin(&c->w->head, &c->w->parser);
    memset(&c->w->body, 0, sizeof(c->w->body));
    c->w->route = NULL;
    c->w->must_close = false;
    c->w->body_unread = false;
}

/* The route's own limit for a body read in pieces, else the buffered one. */
static uint64_t body_limit(const nea__conn *c)
{
    if (stream_route(c)) {
        return c->w->route->body_max;
    }
    return c->env->max_body[c->w->route->arena_class];
}

static void head_done(nea__conn *c)
{
    nea__conn_env *env = c->env;
    nea__head *h = &c->w->head;
    const char *method = c->w->rbuf + h->start;
    const char *q;
    size_t method_len, path_len;
    int status;

    env->stats->requests++;
    nea__record_begin(&c->w->record, h->end - h->start);
    c->w->record.method = method; /* named in the refusal log even when the head is bad */
    status = nea__head_parse(h, &c->w->parser, c->w->rbuf);
    if (status != 0) {
        const char *space = memchr(method, ' ', h->end - h->start);
        c->w->record.method_len = space != NULL ? (size_t)(space - method) : 0;
        nea__conn_respond_error(c, nea__prebuilt_for_status(status));
        return;
    }
    method_len = c->w->record.method_len = h->method_len; /* a token: up to the first space */
    c->w->rpos = h->end; /* whatever answers this head, the next request starts after it */
    c->w->keep_alive = nea__head_keep_alive(h, &c->w->parser);
    if (c->w->parser.upgrade) {
        c->w->must_close = true; /* no protocol switch: what follows is not HTTP/1.1 */
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
    c->w->record.path = h->url;
    c->w->record.path_len = path_len;
    switch (nea__route_find(env->router, method, method_len, h->url, path_len, &c->w->route)) {
    case NEA__ROUTE_FOUND:
        c->w->record.sample.route = (unsigned)(c->w->route - env->router->routes) + 1;
        break;
    case NEA__ROUTE_NO_METHOD:
        h->url_len = path_len;
        nea__conn_respond_error(c, NEA__PB_405);
        return;
    default:
        nea__conn_respond_error(c, NEA__PB_404);
        return;
    }
    if (h->has_cl && h->content_length > body_limit(c)) {
        nea__conn_respond_error(c, NEA__PB_413); /* decided before reading the body */
        return;
    }
    c->w->record.sample.waited = true;
    env->hooks->routed(c);
}

/* Scans the head buffered so far and acts on it; true when it needs more
 * bytes (the request may also have been answered, and the slot idle
 * again, by the time this returns false). */
static bool process_head(nea__conn *c)
{
    size_t size = c->env->cfg->read_buffer_size;
    switch (nea__head_scan(&c->w->head, c->w->rbuf, c->w->rlen)) {
    case NEA__HEAD_BAD:
        nea__conn_respond_error(c, NEA__PB_400);
        return false;
    case NEA__HEAD_MORE:
        if (c->w->rlen == size) {
            nea__conn_respond_error(c, c->w->head.line_done ? NEA__PB_431 : NEA__PB_414);
            return false;
        }
        return true;
    case NEA__HEAD_DONE:
        head_done(c);
        return false;
    }
    return false;
}

/* --- the body ------------------------------------------------------------------ */

/* Reading the body starts (into the arena, or in pieces to the handler):
 * the 100 Continue the client may wait for, its framing and its pace. */
static void begin_body(nea__conn *c)
{
    const nea_config *cfg = c->env->cfg;
    nea__head *h = &c->w->head;
    if (h->expect_continue && c->w->parser.http_minor == 1 && c->w->rpos == c->w->rlen) {
        /* Earlier pipelined answers go first; if the client does not read
         * them, the interim answer is left out (output.c). */
        if (nea__out_flush(&c->w->out) < 0 || nea__out_continue(&c->w->out) < 0) {
            nea__conn_close(c);
            return;
        }
    }
    nea__record_stamp(&c->w->record);
    /* A body read in pieces holds no more arena the longer it runs: only
     * idleness and the minimum rate bound it. Size lines and trailers each
     * take at most what a head may. */
    nea__body_rx_start(&c->w->body, h->chunked, h->content_length, body_limit(c),
                       cfg->read_buffer_size, uv_now(c->env->loop),
                       stream_route(c) ? 0 : cfg->body_deadline_ms, c->w->rlen - c->w->rpos);
    nea__conn_enter(c, NEA__C_BODY);
}

static void start_body(nea__conn *c)
{
    nea_req *req = c->w->req;
    nea__head *h = &c->w->head;
    if (nea__body_start(&req->body, req->arena, h->chunked ? 0 : (size_t)h->content_length,
                        c->env->max_body[c->w->route->arena_class]) != 0) {
        nea__conn_respond_error(c, NEA__PB_413);
        return;
    }
    begin_body(c);
}

/* The body read in pieces is complete: the handler's turn, with the
 * response deadline. */
static void body_end(nea__conn *c)
{
    c->w->body_unread = false;
    nea__conn_enter(c, NEA__C_HANDLER);
    nea__stream_body_piece(c->w->req, NULL, 0);
}

/* Hands one piece to the handler; false when the request moved on (it
 * answered, or the connection closed) or the handler paused. A paused
 * handler keeps its piece where it is: the read buffer is not reused until
 * it resumes. */
static bool deliver(nea__conn *c, const char *data, size_t len)
{
    nea__stream_body_piece(c->w->req, data, len);
    return c->state == NEA__C_BODY && !nea__stream_body_paused(c->w->req);
}

/* Decodes what is buffered: into the arena, or in pieces to the handler. */
static void process_body(nea__conn *c)
{
    for (;;) {
        const char *data = NULL;
        size_t used = 0, len = 0;
        nea__body_step step = nea__body_rx_feed(&c->w->body, c->w->rbuf + c->w->rpos,
                                                c->w->rlen - c->w->rpos, &used, &data, &len);
        c->w->rpos += used;
        switch (step) {
        case NEA__BODY_DATA:
            if (stream_route(c)) {
                if (!deliver(c, data, len)) {
                    return;
                }
            } else if (nea__body_append(&c->w->req->body, data, len) != 0) {
                nea__conn_respond_error(c, NEA__PB_413); /* the arena cannot hold it */
                return;
            }
            continue;
        case NEA__BODY_DONE:
            if (stream_route(c)) {
                body_end(c);
            } else {
                dispatch(c); /* what follows is the next request, not yet looked at */
            }
            return;
        case NEA__BODY_BAD:
            nea__conn_respond_error(c, NEA__PB_400);
            return;
        case NEA__BODY_TOO_LARGE:
            nea__conn_respond_error(c, NEA__PB_413);
            return;
        case NEA__BODY_MORE:
            break;
        }
        break;
    }
    /* Everything buffered belongs to the body and is now consumed; the
     * head before it stays (the request reads it in place). */
    c->w->rpos = c->w->rlen = c->w->keep;
    nea__conn_rearm(c);
}

/* Runs the phase machine over buffered bytes until it needs more input or
 * waits for something else (an arena, a handler, a write). A response that
 * completes synchronously inside this loop re-enters here; the nested call
 * returns at once and this loop carries on, so pipelined requests are served
 * iteratively, not by recursion. */
static void conn_process(nea__conn *c)
{
    if (c->in_process || c->w == NULL) {
        return; /* running already, or idle with its buffer given back */
    }
    c->in_process = true;
    for (;;) {
        if (c->state == NEA__C_IDLE && c->w->rpos < c->w->rlen) {
            /* A head that is already whole (pipelined, or in one read) never
             * waits: only one that needs more bytes enters HEAD, whose
             * deadline runs from then (more bytes do not extend it). */
            begin_head(c);
            if (process_head(c)) {
                nea__conn_enter(c, NEA__C_HEAD);
                if (!nea__conn_refill(c)) { /* TLS: decrypted bytes may be waiting */
                    break;
                }
            }
            continue;
        }
        if (c->state == NEA__C_HEAD) {
            if (process_head(c) && !nea__conn_refill(c)) {
                break; /* needs more bytes */
            }
        } else if (c->state == NEA__C_BODY && c->w->rpos < c->w->rlen &&
                   !nea__stream_body_paused(c->w->req)) {
            process_body(c);
            if (c->state == NEA__C_BODY && (!needs_input(c) || !nea__conn_refill(c))) {
                break;
            }
        } else if (needs_input(c) && c->env->tls != NULL) {
            /* TLS: decrypted bytes may wait for the room made above. */
            if (c->state == NEA__C_IDLE) {
                c->w->rpos = c->w->rlen = 0;
            }
            if (!nea__conn_refill(c)) {
                break;
            }
        } else {
            break;
        }
    }
    c->in_process = false;
    if (c->state == NEA__C_CLOSING || c->state == NEA__C_LINGER ||
        nea__conn_owner_of(c->state) != NEA__OWNER_HTTP) {
        return; /* closed, or handed over to WebSocket */
    }
    if (nea__out_flush(&c->w->out) < 0) {
        nea__conn_close(c);
        return;
    }
    if (c->eof && needs_input(c)) {
        nea__conn_close_lingering(c); /* it can never come: what is queued goes out, then close */
        return;
    }
    if (c->state == NEA__C_IDLE && c->w->rpos == c->w->rlen) {
        c->w->rpos = c->w->rlen = 0;
        nea__conn_release_work(c); /* idle: the buffer goes back unless a write is queued */
    }
    nea__conn_update_reading(c);
}

/* --- admission's answers -------------------------------------------------------- */

static void nea__conn_arena_ready(nea__conn *c, nea__arena *a)
{
    nea__conn_env *env = c->env;
    nea_req *req = nea__req_open(&env->reqs, a, c);

    if (req == NULL) {
        nea__req_give_back(&env->reqs, a);
        c->w->must_close = true;
        nea__conn_respond_error(c, NEA__PB_500);
        return;
    }
    c->w->req = req;
    /* 0: granted at once (the head's time was never read) */
    c->w->record.sample.queue_ns = c->w->record.t_head != 0 ? uv_hrtime() - c->w->record.t_head : 0;
    req->fn = c->w->route->fn;
    req->fn_data = c->w->route->data;
    req->http_minor = c->w->parser.http_minor;
    req->is_head = c->w->parser.method == HTTP_HEAD;
    c->w->keep = c->w->head.end; /* the request's views point into the head */
    if (nea__head_index(req->arena, &c->w->head, c->w->rbuf, c->w->route->prefix,
                        c->w->route->path_len, &req->msg) != 0) {
        nea__conn_respond_error(c, NEA__PB_431);
        return;
    }
    c->w->body_unread = stream_route(c) && body_expected(c);
    if (body_expected(c) && !stream_route(c)) {
        start_body(c);
    } else {
        dispatch(c);
    }
    conn_process(c); /* body bytes or pipelined requests already buffered */
}

static void nea__conn_wait(nea__conn *c, unsigned ms)
{
    nea__record_stamp(&c->w->record);
    c->w->queue_ms = ms;
    nea__conn_enter(c, NEA__C_QUEUED);
}

/* --- the record ----------------------------------------------------------------- */

static const struct sockaddr *peer_of(void *data)
{
    return nea__conn_peer(data);
}

/* The request in the slot ended: counted once (record.c). */
static void finish_record(nea__conn *c, nea_outcome fallback)
{
    nea__record_end end;
    if (!c->w->record.open) {
        return;
    }
    end.req = c->w->req;
    end.body_in = c->w->body.got;
    end.fallback = fallback;
    end.peer = peer_of;
    end.peer_data = c;
    nea__record_finish(&c->w->record, &c->env->records, &end);
}

/* A piece of a streamed response was written: the producer's turn. */
static void on_piece_written(nea__conn *c, int status)
{
    if (status < 0) {
        nea__conn_close(c);
        return;
    }
    nea__conn_enter(c, NEA__C_STREAM);
    nea__stream_written(c->w->req);
}

static const nea__slot_hooks slot_hooks = {
    .input = conn_process,
    .expired = on_expired,
    .closing = on_closing,
    .sent = write_finished,
    .piece = on_piece_written,
    .granted = nea__conn_arena_ready,
    .queued = nea__conn_wait,
    .refused = nea__conn_shed,
};

/* --- setup ------------------------------------------------------------------- */

void nea__conn_env_init(nea__conn_env *env, uv_loop_t *loop, const nea_config *cfg,
                        nea_stats *stats, const nea__router *router, const nea__statics *statics,
                        nea__pool *pools, const nea_plan *plan)
{
    size_t date_len;
    env->loop = loop;
    env->cfg = cfg;
    env->stats = stats;
    env->router = router;
    env->statics = statics;
    for (unsigned i = 0; i < plan->class_count; i++) {
        env->max_body[i] = plan->classes[i].max_body_size;
    }
    env->reqs.loop = loop;
    env->reqs.cfg = cfg;
    env->reqs.stats = stats;
    env->reqs.pools = pools;
    env->reqs.date = &env->date;
    env->reqs.hooks = &req_hooks;
    env->owners[NEA__OWNER_HTTP] = &slot_hooks;
    nea__wsconn_env_init(env);
    env->records.loop = loop;
    env->records.cfg = cfg;
    nea__timers_init(&env->timers, loop, nea__conn_expired);
    env->handles_open++;
    /* glibc loads the time zone (heap) on the first gmtime_r: let that
     * happen now, not inside the first handler's frame. */
    (void)nea__date_line(&env->date, uv_now(loop), &date_len);
}
