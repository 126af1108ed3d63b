/*
 * wsconn.c - a connection slot after a WebSocket upgrade (RFC 6455): the
 * handshake on a route, the handover, and the connection's phases: what
 * the slot reports, the input run over, the phase it rests in, and every
 * call the host makes on a connection.
 *
 * The handshake is an ordinary request on a WebSocket route, whose handler
 * (nea__wsconn_upgrade) checks it with the protocol core (ws.c), asks the
 * route's accept and answers 101 through the request's own response path.
 * Once the 101 is written the exchange hands the slot over
 * (nea__wsconn_start): from then on the slot's phases are the WebSocket
 * ones of conn.c's phase table, and the slot reports here (nea__slot_hooks)
 * instead of to the exchange: bytes arrived, a deadline passed, a frame was
 * written, admission answered, the connection closes. Reading and writing
 * go through the slot (its read buffer, output.c), never the socket.
 *
 *   WS_IDLE --bytes--> WS_FRAME --message's first piece--> (arena: routed
 *   like a head) --granted--> the handler --returned--> WS_IDLE
 *   (no arena yet: WS_QUEUED; kept: WS_HANDLER until nea_ws_done;
 *   a frame still being written: WS_WRITING; silence: WS_PINGED;
 *   a close: WS_CLOSING, then conn.c's linger)
 *
 * The parser runs over the read buffer here (process); messages are
 * wsmsg.c's, frames out and the close handshake wsout.c's, and neither
 * runs the input or sets a resting phase: after each report and each
 * host call, run (or rest) settles the phase here. The next message is
 * not parsed before this one ended, and not while a data frame is still
 * being written: a slow reader slows the peer down through TCP, never a
 * queue.
 *
 * State: what a connection needs between messages is in its slot (route,
 * host data, generation for references); everything else (wsstate.h) is
 * in the connection buffer, which goes back to the pool whenever the
 * connection is idle (between frames, nothing to write): an idle WebSocket
 * connection costs what an idle HTTP one does.
 *
 * Invariants: handler code runs only in a message's protected frame (the
 * route's open and close run outside any, and may not allocate); nothing
 * waits unbounded: every phase has a deadline; the host hears of the
 * close once, with the code received, else the code sent, else 1006.
 */
#include "wsconn.h"

#include "stats.h"
#include "wsout.h"

#include <string.h>

static void run(nea__conn *c);

uint64_t nea__wsconn_default_limit(size_t size)
{
    size_t taken = NEA__ROUND_UP(sizeof(nea_req), NEA__ALIGN) + NEA__MIN_HANDLER_BYTES;
    return size > taken ? size - taken : 0;
}

/* --- input ----------------------------------------------------------------------------- */

static bool takes_input(const nea__conn *c)
{
    switch (c->state) {
    case NEA__C_WS_IDLE:
    case NEA__C_WS_PINGED:
    case NEA__C_WS_FRAME:
    case NEA__C_WS_CLOSING:
        return true;
    default:
        return false;
    }
}

/* Runs the parser over what is buffered until it needs more bytes or the
 * connection waits for something else: an arena, a kept message, the
 * frame on the wire (the next message is not started while a data frame
 * is being written), the close. */
static void process(nea__conn *c, bool *heard, bool *boundary)
{
    nea__wsc *s = nea__wsc_of(c);
    for (;;) {
        nea__work *w = c->w;
        nea__ws_event ev;
        const char *why;
        unsigned code;
        size_t n;

        if (!nea__wsc_phase(c) || !takes_input(c)) {
            return;
        }
        if (s->pending) {
            if (w->req == NULL) {
                return;
            }
            s->pending = false;
            code = nea__wsmsg_take(c, &s->piece, &why);
            if (code != 0) {
                nea__wsout_fail(c, code, why);
            }
            continue;
        }
        if (nea__ws_parser_between(&s->parser) && !s->close_queued &&
            (s->lane == NEA__WSC_LANE_DATA || s->msg != NEA__WSC_MSG_NONE)) {
            return; /* the next message waits for the frame on the wire */
        }
        if (w->rpos == w->rlen) {
            return;
        }
        n = nea__ws_parse(&s->parser, (uint8_t *)w->rbuf + w->rpos, w->rlen - w->rpos, &ev);
        w->rpos += n;
        switch (ev.type) {
        case NEA__WS_EV_NEED:
            break;
        case NEA__WS_EV_DATA:
            *heard = true;
            *boundary = *boundary || ev.last;
            code = nea__wsmsg_data(c, &ev, &why);
            if (code != 0) {
                nea__wsout_fail(c, code, why);
            }
            break;
        case NEA__WS_EV_PING:
            *heard = *boundary = true;
            if (!s->close_queued) {
                nea__wsout_control(c, NEA__WS_PONG, ev.data, ev.len);
            }
            break;
        case NEA__WS_EV_PONG:
            *heard = *boundary = true;
            break;
        case NEA__WS_EV_CLOSE:
            *heard = true;
            nea__wsout_peer_closed(c, ev.code);
            break;
        case NEA__WS_EV_ERROR:
            if (s->close_queued) {
                nea__conn_close(c);
                return;
            }
            nea__wsout_fail(c, ev.code, ev.why);
            break;
        }
    }
}

/* A message's pace starts: it may idle body_timeout_ms between reads, must
 * average body_min_rate after the grace period, and (unless read in
 * pieces) end within body_deadline_ms. */
static void pace_start(nea__conn *c)
{
    unsigned deadline = nea__wsc_pieces(c) ? 0 : c->env->cfg->body_deadline_ms;
    nea__body_rx_start(&c->w->body, false, 0, 0, 0, uv_now(c->env->loop), deadline,
                       c->w->rlen - c->w->rpos);
}

/* The phase once the input is run over, when nothing else set one: a
 * frame half-read, a data frame on the wire, or idle (pinged stays pinged
 * until the peer says something). */
static void rest(nea__conn *c, bool heard, bool boundary)
{
    nea__wsc *s = nea__wsc_of(c);
    nea__conn_state st;

    switch (c->state) {
    case NEA__C_WS_CLOSING:
        return;
    case NEA__C_WS_QUEUED:
        if (s->pending) {
            return;
        }
        break;
    case NEA__C_WS_HANDLER:
        if (c->w->req != NULL && s->msg == NEA__WSC_MSG_HANDLING) {
            return;
        }
        break;
    default:
        break;
    }
    if (!nea__ws_parser_between(&s->parser) || s->msg != NEA__WSC_MSG_NONE) {
        st = NEA__C_WS_FRAME;
    } else if (s->lane == NEA__WSC_LANE_DATA) {
        st = NEA__C_WS_WRITING;
    } else if (c->state == NEA__C_WS_PINGED && !heard) {
        st = NEA__C_WS_PINGED;
    } else {
        st = NEA__C_WS_IDLE;
    }
    if (st == NEA__C_WS_FRAME && (c->state != NEA__C_WS_FRAME || boundary)) {
        pace_start(c);
    }
    if (st != c->state || (heard && st == NEA__C_WS_IDLE)) {
        nea__conn_enter(c, st); /* idle: the ping deadline counts from now */
    } else if (st == NEA__C_WS_FRAME && boundary) {
        nea__conn_rearm(c);
    }
}

/* With TLS: moves decrypted bytes waiting in the TLS state into the room
 * the parser made in the read buffer (closing the gap before them first,
 * unless a piece waits in place for its arena); true when some moved.
 * A record holds up to 16 KiB, more than a read buffer may: without this
 * the rest of a record would wait for a read that never comes, since the
 * TLS state takes no ciphertext while its plaintext waits. */
static bool refill(nea__conn *c)
{
    nea__work *w = c->w;
    if (c->env->tls == NULL) {
        return false;
    }
    if (!nea__wsc_of(c)->pending && w->rpos > 0) {
        memmove(w->rbuf, w->rbuf + w->rpos, w->rlen - w->rpos);
        w->rlen -= w->rpos;
        w->rpos = 0;
    }
    return nea__conn_refill(c);
}

/* Runs over the input and settles the phase; gives the buffer back when
 * idle. The one entry for everything that may let the connection go on. */
static void run(nea__conn *c)
{
    bool heard = false, boundary = false;
    nea__work *w;
    nea__wsc *s;

    if (!nea__wsc_phase(c) || c->ws_route == NULL) {
        return;
    }
    if (c->w == NULL) {
        if (c->eof) {
            nea__conn_close(c); /* the peer's end, between messages, without a close */
        } else {
            nea__conn_update_reading(c);
        }
        return;
    }
    nea__wsc_ready(c);
    w = c->w;
    s = nea__wsc_of(c);
    if (s->busy) {
        return; /* the outer run settles it */
    }
    if (!s->pending && w->rpos > 0) {
        memmove(w->rbuf, w->rbuf + w->rpos, w->rlen - w->rpos);
        w->rlen -= w->rpos;
        w->rpos = 0;
    }
    s->busy = true;
    for (;;) {
        nea__conn_state before;
        process(c, &heard, &boundary);
        if (!nea__wsc_phase(c)) {
            s->busy = false;
            return; /* closed, or lingering after the close */
        }
        before = c->state;
        rest(c, heard, boundary);
        if (c->state != before && takes_input(c) && (w->rpos < w->rlen || s->pending)) {
            continue; /* the new phase takes what is buffered */
        }
        if (!refill(c)) {
            break;
        }
    }
    s->busy = false;
    if (w->rpos == w->rlen && !s->pending) {
        w->rpos = w->rlen = 0;
    }
    if (c->env->closing && c->state == NEA__C_WS_IDLE) {
        nea__wsout_close(c, NEA__WS_GOING_AWAY, "going away", false);
    }
    if (c->eof && takes_input(c) && w->rpos == w->rlen) {
        nea__conn_close(c); /* the peer's end without (or after) a close: nothing more comes */
        return;
    }
    nea__conn_release_work(c);
    nea__conn_update_reading(c);
}

/* --- the slot's reports ------------------------------------------------------------------ */

/* The frame on the wire was written (status 0) or failed: once what was
 * waiting behind it is out, the host's on_drain hears of it, then the
 * input runs (a message may have waited for the frame). */
static void on_sent(nea__conn *c, int status)
{
    nea__wsc *s = nea__wsc_of(c);
    void (*fn)(nea_ws *, void *);

    if (!nea__wsout_sent(c, status)) {
        return;
    }
    fn = s->lane == NEA__WSC_LANE_FREE ? s->drain_fn : NULL;
    if (fn != NULL && nea__wsc_open(c)) {
        s->drain_fn = NULL;
        fn((nea_ws *)(void *)c, s->drain_arg);
        if (!nea__wsc_phase(c) || c->w == NULL) {
            return;
        }
    }
    run(c);
}

static void on_piece(nea__conn *c, int status)
{
    (void)c;
    (void)status; /* a WebSocket connection writes no streamed pieces */
}

/* An arena for the message waiting for one: its first piece, and what
 * followed, run once it is in (a queued one runs now). */
static void on_granted(nea__conn *c, nea__arena *a)
{
    const char *why;
    unsigned code = nea__wsmsg_granted(c, a, &why);
    if (code != 0) {
        nea__wsout_fail(c, code, why);
        return;
    }
    if (c->state == NEA__C_WS_QUEUED) {
        nea__conn_enter(c, NEA__C_WS_FRAME);
        run(c); /* its first piece, and what followed */
    }
}

/* No arena for a message (the CPU, fair share, the queue full or its
 * timeout; admission counted the cause): close 1013, try again later. */
static void on_refused(nea__conn *c, bool keep)
{
    (void)keep;
    c->w->record.sample.outcome = NEA_OUTCOME_SHED;
    nea__wsmsg_end_record(c, NEA_OUTCOME_SHED);
    nea__wsc_of(c)->pending = false;
    nea__wsout_close(c, 1013, "try again later", true);
}

static void on_expired(nea__conn *c, nea__expiry e)
{
    nea_stats *st = c->env->stats;
    switch (e) {
    case NEA__EXPIRE_PING:
        if (!nea__conn_take_work(c)) {
            nea__conn_enter(c, NEA__C_WS_PINGED); /* no buffer to say it with: wait as if said */
            return;
        }
        nea__wsc_ready(c);
        nea__conn_enter(c, NEA__C_WS_PINGED);
        nea__wsout_control(c, NEA__WS_PING, NULL, 0);
        run(c);
        break;
    case NEA__EXPIRE_TIMEOUT: /* no answer to a ping, or a frame that cannot be written */
        st->timeouts++;
        nea__conn_close(c);
        break;
    case NEA__EXPIRE_NO_BUFFER:
        st->shed_no_buffer++;
        nea__conn_close(c);
        break;
    case NEA__EXPIRE_SLOW:
        st->timeouts++;
        nea__wsout_fail(c, NEA__WS_POLICY, "message too slow");
        break;
    case NEA__EXPIRE_SHED:
        st->shed_no_arena++;
        on_refused(c, false);
        break;
    case NEA__EXPIRE_504:
        st->timeouts++;
        st->unanswered++;
        nea__log(c->env->cfg, NEA_LOG_WARN,
                 "WebSocket %s: a kept message was not done within response_timeout_ms (%u); "
                 "cancelled",
                 c->ws_route->path, c->env->cfg->response_timeout_ms);
        nea__req_cancel(c->w->req);
        nea__wsmsg_end(c, NEA_OUTCOME_TIMEOUT);
        run(c);
        break;
    case NEA__EXPIRE_GOING_AWAY:
        if (!nea__conn_take_work(c)) {
            nea__conn_close(c);
            return;
        }
        nea__wsc_ready(c);
        nea__wsout_close(c, NEA__WS_GOING_AWAY, "going away", false);
        run(c);
        break;
    default:
        break;
    }
}

/* The connection closes (or lingers after its close): the message in
 * progress is cancelled, the frame on the wire let go of (libuv cancels
 * its write), and the host is told, once. */
static void on_closing(nea__conn *c)
{
    const nea__route *r = c->ws_route;
    unsigned code = NEA__WS_ABNORMAL;

    if (r == NULL) {
        return;
    }
    c->ws_route = NULL; /* references read as gone, sending is refused */
    if (c->w != NULL && nea__wsc_of(c)->ready) {
        nea__wsc *s = nea__wsc_of(c);
        if (s->code_received != 0) {
            code = s->code_received;
        } else if (s->code_sent != 0) {
            code = s->code_sent;
        }
        s->drain_fn = NULL;
        s->pending = false;
        if (s->lane == NEA__WSC_LANE_DATA) {
            nea__wsout_release(c);
        }
        if (c->w->req != NULL) {
            nea__req_cancel(c->w->req);
            nea__wsmsg_end(c, NEA_OUTCOME_CANCELLED);
        } else {
            nea__wsmsg_end_record(c, NEA_OUTCOME_CANCELLED);
        }
    }
    c->env->stats->ws_open--;
    if (r->ws->close != NULL) {
        r->ws->close((nea_ws *)(void *)c, code, r->data);
    }
}

static const nea__slot_hooks hooks = {
    .input = run,
    .expired = on_expired,
    .closing = on_closing,
    .sent = on_sent,
    .piece = on_piece,
    .granted = on_granted,
    .queued = nea__wsmsg_queued,
    .refused = on_refused,
};

void nea__wsconn_env_init(nea__conn_env *env)
{
    env->owners[NEA__OWNER_WS] = &hooks;
}

/* --- the handshake and the handover --------------------------------------------------------- */

void nea__wsconn_upgrade(nea_req *req, void *data)
{
    nea__conn *c = req->conn;
    const nea_ws_route *wr = c->w->route->ws;
    nea__ws_handshake hs;
    size_t cap, n;
    char *head;
    int st;

    st = nea__ws_handshake_check(req->msg.method, 1, req->http_minor, req->msg.hdrs, req->msg.nhdrs,
                                 &hs);
    if (st != 0) {
        if (st == 426) {
            (void)nea_resp_header(req, "Sec-WebSocket-Version", "13");
        }
        (void)nea_respond_static(req, st, "text/plain", hs.why, strlen(hs.why));
        return;
    }
    if (wr->accept != NULL) {
        st = wr->accept(req, data);
        if (req->phase != NEA__R_HANDLING) {
            return; /* it answered (or the request was cancelled) */
        }
        if (st != 0) {
            (void)nea_respond(req, st >= 400 && st <= 599 ? st : 403, NULL, NULL, 0);
            return;
        }
    }
    /* The 101: the protocol's lines, then those accept added. */
    cap = 160 + NEA__WS_ACCEPT_LEN + req->resp_hdrs.len;
    head = nea_alloc(req, cap);
    n = nea__ws_accept_head(head, cap, hs.accept, NULL) - 2; /* before the blank line */
    for (const nea__resp_hdr *h = req->resp_hdrs.first; h != NULL; h = h->next) {
        memcpy(head + n, h->line, h->len);
        n += h->len;
    }
    memcpy(head + n, "\r\n", 2);
    n += 2;
    req->phase = NEA__R_ANSWERED;
    req->status = 101;
    nea__stats_response(c->env->stats, 101);
    c->w->upgrade = true; /* the exchange hands the slot over once it is written */
    req->wbufs[0] = nea__buf(head, n);
    req->env->hooks->send(req, req->wbufs, 1);
}

void nea__wsconn_start(nea__conn *c)
{
    nea__work *w = c->w;
    nea_req *upgrade = w->req;
    const nea__route *r = w->route;
    nea__wsc *s = nea__wsc_of(c);

    w->upgrade = false;
    w->must_close = false;
    /* The exchange's parser and head share these bytes: they are done. */
    memset(s, 0, sizeof(*s));
    nea__ws_parser_init(&s->parser, false, r->body_max);
    s->ready = true;
    c->ws_route = r;
    c->env->stats->ws_upgraded++;
    c->env->stats->ws_open++;
    nea__conn_enter(c, NEA__C_WS_IDLE);
    /* The upgrade request lets go of the slot; its head stays readable
     * (and the input untouched) until open returns. */
    w->req = NULL;
    w->keep = 0;
    if (r->ws->open != NULL) {
        s->busy = true;
        r->ws->open((nea_ws *)(void *)c, upgrade, r->data);
        s->busy = false;
    }
    nea__req_end(upgrade);
    run(c); /* frames that came with the upgrade */
}

/* --- the host's calls ----------------------------------------------------------------------- */

static bool utf8_ok(const void *data, size_t len)
{
    nea__utf8 u;
    nea__utf8_init(&u);
    return nea__utf8_feed(&u, data, len) && nea__utf8_complete(&u);
}

int nea_ws_send(nea_ws *ws, int opcode, const void *data, size_t len)
{
    nea__conn *c = (nea__conn *)(void *)ws;
    nea__wsc *s;
    int r;

    NEA__NEED(ws, "WebSocket connection");
    nea__req_check_thread(&c->env->reqs, "nea_ws_send");
    if (!nea__wsc_open(c)) {
        return NEA_ESTATE;
    }
    if ((opcode != NEA_WS_TEXT && opcode != NEA_WS_BINARY) || (data == NULL && len > 0) ||
        (opcode == NEA_WS_TEXT && !utf8_ok(data, len))) {
        return UV_EINVAL;
    }
    if (!nea__conn_take_work(c)) {
        return UV_ENOBUFS;
    }
    nea__wsc_ready(c);
    s = nea__wsc_of(c);
    r = nea__wsout_data(c, opcode, data, len);
    if (r != 0) {
        return r;
    }
    if (nea__wsc_phase(c) && !s->busy) {
        /* Nothing else changed: the phase for what is on the wire now, and
         * the buffer back if that is nothing. */
        rest(c, false, false);
        nea__conn_release_work(c);
        nea__conn_update_reading(c);
    }
    return 0;
}

int nea_ws_on_drain(nea_ws *ws, void (*fn)(nea_ws *ws, void *arg), void *arg)
{
    nea__conn *c = (nea__conn *)(void *)ws;
    NEA__NEED(ws, "WebSocket connection");
    nea__req_check_thread(&c->env->reqs, "nea_ws_on_drain");
    if (fn == NULL) {
        return UV_EINVAL;
    }
    if (!nea__wsc_open(c) || c->w == NULL || !nea__wsc_of(c)->ready ||
        nea__wsc_of(c)->lane == NEA__WSC_LANE_FREE) {
        return NEA_ESTATE;
    }
    nea__wsc_of(c)->drain_fn = fn;
    nea__wsc_of(c)->drain_arg = arg;
    return 0;
}

void nea_ws_done(nea_req *msg)
{
    nea__conn *c;
    NEA__NEED(msg, "request");
    nea__req_check_thread(msg->env, "nea_ws_done");
    c = msg->conn;
    if (c == NULL || !nea__wsc_phase(c) || c->ws_route == NULL || c->w == NULL ||
        c->w->req != msg || nea__wsc_of(c)->msg != NEA__WSC_MSG_HANDLING) {
        return;
    }
    nea__wsmsg_end(c, NEA_OUTCOME_COMPLETED);
    if (c->state == NEA__C_WS_HANDLER) {
        run(c); /* the next message */
    }
}

int nea_ws_close(nea_ws *ws, unsigned code, const char *reason)
{
    nea__conn *c = (nea__conn *)(void *)ws;
    uint8_t payload[NEA__WS_CONTROL_MAX];
    size_t n;

    NEA__NEED(ws, "WebSocket connection");
    nea__req_check_thread(&c->env->reqs, "nea_ws_close");
    if (!nea__wsc_open(c)) {
        return NEA_ESTATE;
    }
    if (reason == NULL) {
        reason = "";
    }
    if ((code == 0 && reason[0] != '\0') ||
        nea__ws_close_payload(payload, code, reason, strlen(reason), &n) != 0) {
        return UV_EINVAL;
    }
    if (!nea__conn_take_work(c)) {
        return UV_ENOBUFS;
    }
    nea__wsc_ready(c);
    nea__wsout_close(c, code, reason, false);
    run(c);
    return 0;
}

void nea_ws_set_data(nea_ws *ws, void *data)
{
    nea__conn *c = (nea__conn *)(void *)ws;
    NEA__NEED(ws, "WebSocket connection");
    c->ws_data = data;
}

void *nea_ws_data(const nea_ws *ws)
{
    const nea__conn *c = (const nea__conn *)(const void *)ws;
    NEA__NEED(ws, "WebSocket connection");
    return c->ws_data;
}

nea_wsref nea_ws_ref(nea_ws *ws)
{
    nea__conn *c = (nea__conn *)(void *)ws;
    nea_wsref ref;
    NEA__NEED(ws, "WebSocket connection");
    ref.slot = c;
    ref.gen = c->gen;
    return ref;
}

nea_ws *nea_ref_ws(nea_wsref ref)
{
    nea__conn *c = (nea__conn *)(uintptr_t)ref.slot;
    if (c == NULL) {
        return NULL;
    }
    nea__req_check_thread(&c->env->reqs, "nea_ref_ws");
    return c->gen == ref.gen && nea__wsc_open(c) ? (nea_ws *)(void *)c : NULL;
}
