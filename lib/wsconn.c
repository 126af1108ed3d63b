/*
 * wsconn.c - a connection slot after a WebSocket upgrade (RFC 6455): the
 * handshake on a route, frames in, one message at a time to its handler in
 * an arena of its own, frames out, pings and the close handshake.
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
 * Messages: the parser (ws.c) unmasks payload in place in the read buffer
 * and hands it out in pieces; a message's first piece asks admission for an
 * arena of the route's class, exactly as a request head does (so CPU and
 * fair-share refusals, the queue and its timeout apply; a refusal closes
 * with 1013). The pieces are gathered in the arena (or, with NEA_WS_PIECES,
 * handed to the handler as they come) and the handler runs once for the
 * whole message, in the message's protected frame. The next message is not
 * parsed before this one ended, and not while a data frame is still being
 * written: a slow reader slows the peer down through TCP, never a queue.
 *
 * Frames out: one frame is on the wire at a time (output.c's response
 * write), data or control. A data frame's payload waits in an arena: the
 * message's (held until written) while its handler runs or it is kept,
 * else one taken from the route's pool for that frame. A control frame
 * (pong, ping, close) waits in this state, at most one behind the one on
 * the wire (a close replaces a pong).
 *
 * State: what a connection needs between messages is in its slot (route,
 * host data, generation for references); everything else is here, in the
 * connection buffer, which goes back to the pool whenever the connection is
 * idle (between frames, nothing to write): an idle WebSocket connection
 * costs what an idle HTTP one does. A fresh buffer starts this state anew.
 *
 * Invariants: handler code runs only in a message's protected frame (the
 * route's open and close run outside any, and may not allocate); a message
 * holds at most one arena and a connection at most two (its message's and
 * a frame's); nothing waits unbounded: every phase has a deadline.
 */
#include "wsconn.h"

#include "stats.h"
#include "ws.h"

#include <stdio.h>
#include <string.h>

enum { LANE_FREE, LANE_DATA, LANE_CONTROL };

/* Where the message in progress (c->w->req) is. */
enum { MSG_NONE, MSG_GATHER, MSG_HANDLING };

#define CONTROL_FRAME (2 + NEA__WS_CONTROL_MAX)

typedef struct ws_state {
    bool ready; /* set up for this connection buffer (a fresh one is zeroed) */
    bool busy;  /* running over the input (a re-entry guard) */
    nea__ws_parser parser;

    /* The message in progress: its request is c->w->req. */
    uint8_t msg;
    bool skip;  /* the message failed: its remaining pieces are dropped */
    char *data; /* whole messages: the payload gathered in the arena */
    size_t cap; /* bytes data has room for */
    uint64_t got;

    /* A piece waiting for its message's arena (inside the read buffer). */
    bool pending;
    nea__ws_event piece;

    /* Frames out: the one on the wire, and a control frame behind it. */
    uint8_t lane;
    bool ctl_is_close, next_is_close;
    uint8_t ctl_len, next_len;
    uint8_t dhead[NEA__WS_HEAD_MAX];
    uint8_t ctl[CONTROL_FRAME];
    uint8_t next[CONTROL_FRAME];
    nea_req *held;           /* the message whose arena holds the data frame on the wire */
    nea__arena *frame_arena; /* or the arena taken for it */

    /* The close handshake. */
    bool close_queued;  /* our close frame is on its way: nothing may follow it */
    bool close_written; /* ... and out */
    bool fin_after;     /* once it is out, close the TCP connection */
    uint16_t code_sent, code_received;

    void (*drain_fn)(nea_ws *ws, void *arg);
    void *drain_arg;
} ws_state;

_Static_assert(sizeof(ws_state) <= NEA__WS_STATE_BYTES,
               "the WebSocket state must fit its room in the connection buffer");

static void run(nea__conn *c);
static void rest(nea__conn *c, bool heard, bool boundary);
static void start_close(nea__conn *c, unsigned code, const char *reason, bool fin);
static void end_message(nea__conn *c, nea_outcome outcome);
static void end_record(nea__conn *c, nea_outcome outcome);

static ws_state *S(const nea__conn *c)
{
    return (ws_state *)(void *)c->w->ws;
}

static bool ws_phase(const nea__conn *c)
{
    return nea__conn_owner_of(c->state) == NEA__OWNER_WS;
}

/* Open: upgraded, not closing, not closed. */
static bool ws_open(const nea__conn *c)
{
    return c->ws_route != NULL && ws_phase(c) && c->state != NEA__C_WS_CLOSING;
}

static const nea_ws_route *route_of(const nea__conn *c)
{
    return c->ws_route->ws;
}

uint64_t nea__wsconn_default_limit(size_t size)
{
    size_t taken = NEA__ROUND_UP(sizeof(nea_req), NEA__ALIGN) + NEA__MIN_HANDLER_BYTES;
    return size > taken ? size - taken : 0;
}

/* A fresh connection buffer (zeroed by conn.c) gets this connection's
 * state: the parser starts between frames. */
static void ensure_ready(nea__conn *c)
{
    ws_state *s = S(c);
    if (!s->ready) {
        memset(s, 0, sizeof(*s));
        nea__ws_parser_init(&s->parser, false, c->ws_route->body_max);
        s->ready = true;
        c->w->route = c->ws_route; /* admission's queues read the class there */
    }
}

/* --- frames out ----------------------------------------------------------------------- */

/* The data frame on the wire was written (or cancelled): its memory goes. */
static void release_frame(nea__conn *c)
{
    ws_state *s = S(c);
    if (s->held != NULL) {
        nea_req *m = s->held;
        s->held = NULL;
        nea__req_unhold(m); /* may end it: its arena returns */
    }
    if (s->frame_arena != NULL) {
        nea__arena *a = s->frame_arena;
        s->frame_arena = NULL;
        nea__req_give_back(&c->env->reqs, a);
    }
}

/* Our close frame is out: the close handshake goes on. */
static void close_written(nea__conn *c)
{
    ws_state *s = S(c);
    s->close_written = true;
    if (s->fin_after) {
        nea__conn_close_lingering(c); /* FIN after it; the peer's end is drained */
    }
}

/* Writes the control frame in s->ctl (the lane is free). */
static void write_control(nea__conn *c)
{
    ws_state *s = S(c);
    uv_buf_t b = nea__buf(s->ctl, s->ctl_len);
    int r = nea__out_send(&c->w->out, &b, 1);
    if (r < 0) {
        nea__conn_close(c);
        return;
    }
    if (r == 0) {
        s->lane = LANE_CONTROL;
        return;
    }
    if (s->ctl_is_close) {
        close_written(c);
    }
}

/* Sends a control frame now, or right after the frame on the wire. A
 * close replaces a pong waiting behind it; nothing replaces a close. */
static void send_control(nea__conn *c, unsigned opcode, const uint8_t *payload, size_t len)
{
    ws_state *s = S(c);
    bool close = opcode == NEA__WS_CLOSE;
    uint8_t *buf;
    size_t h;

    if (s->lane != LANE_FREE && s->next_len > 0 && s->next_is_close) {
        return;
    }
    buf = s->lane == LANE_FREE ? s->ctl : s->next;
    h = nea__ws_frame_head(buf, opcode, true, len, NULL);
    if (len > 0) {
        memcpy(buf + h, payload, len);
    }
    if (s->lane != LANE_FREE) {
        s->next_len = (uint8_t)(h + len);
        s->next_is_close = close;
        return;
    }
    s->ctl_len = (uint8_t)(h + len);
    s->ctl_is_close = close;
    write_control(c);
}

/* An arena for a frame sent outside a message's handler: the route's
 * class, leaving class 0's reserved arenas to exempt routes. */
static nea__arena *take_arena(nea__conn *c)
{
    unsigned k = route_of(c)->arena_class;
    nea__pool *p = &c->env->reqs.pools[k];
    unsigned keep = k == 0 ? c->env->cfg->reserved_arenas : 0;
    return p->count - p->in_use > keep ? nea__pool_acquire(p) : NULL;
}

static bool in_arena(const nea__arena *a, const void *p, size_t len)
{
    uintptr_t q = (uintptr_t)p, base = (uintptr_t)a->base;
    return q >= base && q - base <= a->used && len <= a->used - (q - base);
}

static bool utf8_ok(const void *data, size_t len)
{
    nea__utf8 u;
    nea__utf8_init(&u);
    return nea__utf8_feed(&u, data, len) && nea__utf8_complete(&u);
}

int nea_ws_send(nea_ws *ws, int opcode, const void *data, size_t len)
{
    nea__conn *c = (nea__conn *)(void *)ws;
    nea_req *msg;
    ws_state *s;
    const char *payload;
    uv_buf_t bufs[2];
    size_t h, mark = 0;
    bool copied = false;
    int r;

    NEA__NEED(ws, "WebSocket connection");
    nea__req_check_thread(&c->env->reqs, "nea_ws_send");
    if (!ws_open(c)) {
        return NEA_ESTATE;
    }
    if ((opcode != NEA_WS_TEXT && opcode != NEA_WS_BINARY) || (data == NULL && len > 0) ||
        (opcode == NEA_WS_TEXT && !utf8_ok(data, len))) {
        return UV_EINVAL;
    }
    if (!nea__conn_take_work(c)) {
        return UV_ENOBUFS;
    }
    ensure_ready(c);
    s = S(c);
    if (s->lane != LANE_FREE) {
        return UV_EAGAIN;
    }
    msg = s->msg == MSG_HANDLING ? c->w->req : NULL;
    if (msg != NULL && nea__req_live(msg)) {
        payload = data;
        if (len > 0 && !in_arena(msg->arena, data, len)) {
            char *p;
            mark = msg->arena->used;
            p = nea__arena_alloc(msg->arena, len, 1);
            if (p == NULL) {
                return NEA_ENOMEM;
            }
            memcpy(p, data, len);
            payload = p;
            copied = true;
        }
    } else {
        char *p;
        msg = NULL;
        s->frame_arena = take_arena(c);
        if (s->frame_arena == NULL) {
            nea__conn_release_work(c);
            return UV_ENOBUFS;
        }
        p = nea__arena_alloc(s->frame_arena, len, 1);
        if (p == NULL) {
            release_frame(c);
            nea__conn_release_work(c);
            return NEA_ENOMEM;
        }
        if (len > 0) {
            memcpy(p, data, len);
        }
        payload = p;
    }
    h = nea__ws_frame_head(s->dhead, (unsigned)opcode, true, len, NULL);
    bufs[0] = nea__buf(s->dhead, h);
    bufs[1] = nea__buf(payload, len);
    r = nea__out_send(&c->w->out, bufs, 2);
    if (r < 0) {
        release_frame(c);
        nea__conn_close(c);
        return r;
    }
    c->env->stats->ws_messages_out++;
    if (c->w->record.open) {
        c->w->record.sample.bytes_out += h + len; /* the message being handled sent it */
    }
    if (r == 0) {
        s->lane = LANE_DATA;
        if (msg != NULL) {
            s->held = msg;
            nea__req_hold(msg); /* its arena stays until the frame is out */
        }
        if (c->state == NEA__C_WS_WRITING) {
            nea__conn_rearm(c); /* each frame has write_timeout_ms to go out */
        }
    } else {
        if (copied) {
            nea__arena_rollback(msg->arena, mark); /* the kernel took it: the copy is not kept */
        }
        release_frame(c); /* may hand an arena on (and so run other handlers) */
    }
    if (ws_phase(c) && !s->busy) {
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
    if (!ws_open(c) || c->w == NULL || !S(c)->ready || S(c)->lane == LANE_FREE) {
        return NEA_ESTATE;
    }
    S(c)->drain_fn = fn;
    S(c)->drain_arg = arg;
    return 0;
}

/* The frame on the wire was written (status 0) or failed. */
static void on_sent(nea__conn *c, int status)
{
    ws_state *s = S(c);
    uint8_t was = s->lane;
    void (*fn)(nea_ws *, void *);

    s->lane = LANE_FREE;
    if (was == LANE_DATA) {
        release_frame(c); /* may hand an arena on (and so run other handlers) */
    }
    if (!ws_phase(c)) {
        return;
    }
    if (status < 0) {
        nea__conn_close(c);
        return;
    }
    if (was == LANE_CONTROL && s->ctl_is_close) {
        close_written(c);
        if (!ws_phase(c)) {
            return;
        }
    }
    if (s->next_len > 0) {
        memcpy(s->ctl, s->next, s->next_len);
        s->ctl_len = s->next_len;
        s->ctl_is_close = s->next_is_close;
        s->next_len = 0;
        write_control(c);
        if (!ws_phase(c)) {
            return;
        }
    }
    fn = s->lane == LANE_FREE ? s->drain_fn : NULL;
    if (fn != NULL && ws_open(c)) {
        s->drain_fn = NULL;
        fn((nea_ws *)(void *)c, s->drain_arg);
        if (!ws_phase(c) || c->w == NULL) {
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

/* --- the close handshake --------------------------------------------------------------- */

/* Starts (or joins) the close: our close frame goes out after the frame on
 * the wire; with fin, the TCP connection closes once it is out (a failed
 * connection, an echo of the peer's close), else the peer's close is
 * awaited in WS_CLOSING. A message being gathered or waiting for an arena
 * is dropped; a kept one is cancelled when the connection closes. */
static void start_close(nea__conn *c, unsigned code, const char *reason, bool fin)
{
    ws_state *s = S(c);
    uint8_t payload[NEA__WS_CONTROL_MAX];
    size_t n = 0;

    if (s->close_queued) {
        s->fin_after = s->fin_after || fin;
        if (fin && s->close_written) {
            nea__conn_close_lingering(c);
        }
        return;
    }
    s->close_queued = true;
    s->fin_after = fin;
    s->code_sent = (uint16_t)code;
    s->pending = false;
    if (c->w->req != NULL && s->msg != MSG_HANDLING) {
        nea__req_cancel(c->w->req);
        end_message(c, NEA_OUTCOME_CANCELLED);
    } else if (c->w->req == NULL) {
        end_record(c, NEA_OUTCOME_CANCELLED); /* a message that waited for an arena, if any */
    }
    if (reason == NULL) {
        reason = "";
    }
    if (nea__ws_close_payload(payload, code, reason, strlen(reason), &n) != 0) {
        (void)nea__ws_close_payload(payload, code, "", 0, &n);
    }
    nea__conn_enter(c, NEA__C_WS_CLOSING);
    send_control(c, NEA__WS_CLOSE, payload, n);
}

/* The peer's close frame: answered with ours (its code echoed, none for
 * 1005), then the TCP connection closes; or, when ours went first, the
 * handshake is complete. */
static void peer_closed(nea__conn *c, unsigned code)
{
    ws_state *s = S(c);
    s->code_received = (uint16_t)code;
    if (s->close_queued) {
        start_close(c, 0, NULL, true);
        return;
    }
    start_close(c, code == NEA__WS_NO_STATUS ? 0 : code, NULL, true);
}

/* The connection breaks the protocol, or cannot go on: close with code. */
static void fail(nea__conn *c, unsigned code, const char *why)
{
    nea_stats *st = c->env->stats;
    if (code == NEA__WS_TOO_BIG) {
        st->ws_too_big++;
    } else if (code == NEA__WS_PROTOCOL_ERROR || code == NEA__WS_INVALID_DATA) {
        st->ws_failed++;
    }
    nea__log(c->env->cfg, NEA_LOG_INFO, "WebSocket %s closed with %u: %s", c->ws_route->path, code,
             why);
    start_close(c, code, why, true);
}

/* --- messages ------------------------------------------------------------------------- */

static const struct sockaddr *peer_of(void *data)
{
    return nea__conn_peer(data);
}

/* The message's record is counted (once: record.c ignores a closed one). */
static void end_record(nea__conn *c, nea_outcome outcome)
{
    nea__record_end end;
    end.req = c->w->req;
    end.body_in = S(c)->got;
    end.fallback = outcome;
    end.peer = peer_of;
    end.peer_data = c;
    nea__record_finish(&c->w->record, &c->env->records, &end);
}

/* The message in progress ends: counted, then let go of (its arena returns
 * once no handler code is on the stack and nothing holds it). */
static void end_message(nea__conn *c, nea_outcome outcome)
{
    ws_state *s = S(c);
    nea_req *req = c->w->req;
    if (req == NULL) {
        return;
    }
    end_record(c, outcome);
    c->w->req = NULL;
    s->msg = MSG_NONE;
    s->data = NULL;
    s->cap = 0;
    s->got = 0;
    nea__req_end(req);
}

/* The handler keeps its message past its return. */
static bool kept(const nea__conn *c, const nea_req *req)
{
    unsigned ours = S(c)->held == req ? 1u : 0u;
    return req->kept || req->tracked != NULL || req->holds > ours;
}

static bool pieces(const nea__conn *c)
{
    return (route_of(c)->flags & NEA_WS_PIECES) != 0;
}

typedef struct call {
    nea__conn *c;
    const nea_ws_msg *m;
} call;

static void call_message(nea_req *req, void *arg)
{
    const call *k = arg;
    const nea__route *r = k->c->ws_route;
    r->ws->message((nea_ws *)(void *)k->c, req, k->m, r->data);
}

/* Runs the handler for a message (or a piece) in the message's protected
 * frame, then ends the message unless the handler kept it. */
static void dispatch(nea__conn *c, const nea_ws_msg *m)
{
    ws_state *s = S(c);
    nea__work *w = c->w;
    nea_req *req = w->req;
    call k = {c, m};
    uint64_t t0, t1;

    s->msg = MSG_HANDLING;
    if (!w->record.sample.handled) {
        w->record.sample.handled = true;
        nea__record_stamp(&w->record);
    }
    if (m->last) {
        c->env->stats->ws_messages_in++;
    }
    t0 = uv_hrtime();
    nea__req_call(req, call_message, &k);
    t1 = uv_hrtime();
    nea__load_handler_ran(c->env->load, t1 - t0);
    if (!ws_phase(c) || c->w == NULL || c->w->req != req) {
        return; /* closed under it, or ended inside it (nea_ws_done) */
    }
    w->record.sample.handler_ns += t1 - t0;
    if (req->oom) {
        c->env->stats->ws_message_oom++;
        s->skip = !m->last; /* the rest of a message in pieces is dropped */
        end_message(c, NEA_OUTCOME_OOM);
    } else if (!nea__req_live(req)) {
        end_message(c, NEA_OUTCOME_CANCELLED);
    } else if (!m->last) {
        s->msg = MSG_GATHER;
    } else if (!kept(c, req)) {
        end_message(c, NEA_OUTCOME_COMPLETED);
    } else if (!s->close_queued) {
        nea__conn_enter(c, NEA__C_WS_HANDLER); /* nea_ws_done, or response_timeout_ms */
    }
}

/* A piece of the message whose arena is granted: gathered (the handler
 * runs at the last), or handed over at once (NEA_WS_PIECES). */
static void take_piece(nea__conn *c, const nea__ws_event *ev)
{
    ws_state *s = S(c);
    nea_req *req = c->w->req;
    if (pieces(c)) {
        nea_ws_msg m = {(int)ev->opcode, (const char *)ev->data, ev->len, s->got, ev->last};
        s->got += ev->len;
        dispatch(c, &m);
        return;
    }
    /* The payload grows in place: it is the arena's last allocation while
     * it gathers (frames sent meanwhile take an arena of their own). The
     * limit keeps it within the arena; only fault injection fails here. */
    if (s->data == NULL || ev->message_len + 1 > s->cap) {
        size_t need = (size_t)ev->message_len + 1;
        char *p = s->data == NULL ? nea__arena_alloc(req->arena, need, 1)
                                  : nea__arena_grow(req->arena, s->data, need);
        if (p == NULL) {
            fail(c, NEA__WS_TOO_BIG, "message larger than its arena");
            return;
        }
        s->data = p;
        s->cap = need;
    }
    if (ev->len > 0) {
        memcpy(s->data + s->got, ev->data, ev->len);
    }
    s->got += ev->len;
    if (ev->last) {
        nea_ws_msg m = {(int)ev->opcode, s->data, (size_t)s->got, 0, 1};
        s->data[s->got] = '\0';
        dispatch(c, &m);
    }
}

/* A message's first piece: an arena is asked for as for a request head
 * (admission answers through the granted, queued and refused hooks). */
static void ask_arena(nea__conn *c)
{
    nea__work *w = c->w;
    const nea__route *r = c->ws_route;
    nea__record_begin(&w->record, 0);
    w->record.sample.route = (unsigned)(r - c->env->router->routes) + 1;
    w->record.method = "WS";
    w->record.method_len = 2;
    w->record.path = r->path;
    w->record.path_len = r->path_len;
    w->record.sample.waited = true;
    nea__record_stamp(&w->record); /* the message's start */
    c->env->hooks->routed(c);
}

static void on_data(nea__conn *c, const nea__ws_event *ev)
{
    ws_state *s = S(c);
    if (s->close_queued) {
        return; /* nothing is handled after a close */
    }
    if (s->skip) {
        s->skip = !ev->last;
        return;
    }
    if (c->w->req != NULL) {
        take_piece(c, ev);
        return;
    }
    s->pending = true;
    s->piece = *ev;
    ask_arena(c);
    if (s->pending && c->w->req != NULL) { /* granted at once */
        s->pending = false;
        take_piece(c, &s->piece);
    }
}

static void on_granted(nea__conn *c, nea__arena *a)
{
    ws_state *s = S(c);
    nea__work *w = c->w;
    nea_req *req = nea__req_open(&c->env->reqs, a, c);

    if (req == NULL) { /* fault injection only */
        nea__req_give_back(&c->env->reqs, a);
        fail(c, NEA__WS_INTERNAL, "no room for the message's request");
        return;
    }
    req->phase = NEA__R_MESSAGE;
    req->msg.method = "WS";
    req->msg.path = c->ws_route->path;
    req->msg.query = "";
    req->msg.tail = "";
    req->http_minor = 1;
    req->fn_data = c->ws_route->data;
    w->req = req;
    w->record.sample.queue_ns = w->record.t_head != 0 ? uv_hrtime() - w->record.t_head : 0;
    s->msg = MSG_GATHER;
    s->data = NULL;
    s->cap = 0;
    s->got = 0;
    if (c->state == NEA__C_WS_QUEUED) {
        nea__conn_enter(c, NEA__C_WS_FRAME);
        run(c); /* its first piece, and what followed */
    }
}

static void on_queued(nea__conn *c, unsigned ms)
{
    nea__record_stamp(&c->w->record);
    c->w->queue_ms = ms;
    nea__conn_enter(c, NEA__C_WS_QUEUED);
}

/* No arena for a message (the CPU, fair share, the queue full or its
 * timeout; admission counted the cause): close 1013, try again later. */
static void on_refused(nea__conn *c, bool keep)
{
    (void)keep;
    c->w->record.sample.outcome = NEA_OUTCOME_SHED;
    end_record(c, NEA_OUTCOME_SHED);
    S(c)->pending = false;
    start_close(c, 1013, "try again later", true);
}

void nea_ws_done(nea_req *msg)
{
    nea__conn *c;
    NEA__NEED(msg, "request");
    nea__req_check_thread(msg->env, "nea_ws_done");
    c = msg->conn;
    if (c == NULL || !ws_phase(c) || c->ws_route == NULL || c->w == NULL || c->w->req != msg ||
        S(c)->msg != MSG_HANDLING) {
        return;
    }
    end_message(c, NEA_OUTCOME_COMPLETED);
    if (c->state == NEA__C_WS_HANDLER) {
        run(c); /* the next message */
    }
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
    ws_state *s = S(c);
    for (;;) {
        nea__work *w = c->w;
        nea__ws_event ev;
        size_t n;

        if (!ws_phase(c) || !takes_input(c)) {
            return;
        }
        if (s->pending) {
            if (w->req == NULL) {
                return;
            }
            s->pending = false;
            take_piece(c, &s->piece);
            continue;
        }
        if (nea__ws_parser_between(&s->parser) && !s->close_queued &&
            (s->lane == LANE_DATA || s->msg != MSG_NONE)) {
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
            on_data(c, &ev);
            break;
        case NEA__WS_EV_PING:
            *heard = *boundary = true;
            if (!s->close_queued) {
                send_control(c, NEA__WS_PONG, ev.data, ev.len);
            }
            break;
        case NEA__WS_EV_PONG:
            *heard = *boundary = true;
            break;
        case NEA__WS_EV_CLOSE:
            *heard = true;
            peer_closed(c, ev.code);
            break;
        case NEA__WS_EV_ERROR:
            if (s->close_queued) {
                nea__conn_close(c);
                return;
            }
            fail(c, ev.code, ev.why);
            break;
        }
    }
}

/* A message's pace starts: it may idle body_timeout_ms between reads, must
 * average body_min_rate after the grace period, and (unless read in
 * pieces) end within body_deadline_ms. */
static void pace_start(nea__conn *c)
{
    unsigned deadline = pieces(c) ? 0 : c->env->cfg->body_deadline_ms;
    nea__body_rx_start(&c->w->body, false, 0, 0, 0, uv_now(c->env->loop), deadline,
                       c->w->rlen - c->w->rpos);
}

/* The phase once the input is run over, when nothing else set one: a
 * frame half-read, a data frame on the wire, or idle (pinged stays pinged
 * until the peer says something). */
static void rest(nea__conn *c, bool heard, bool boundary)
{
    ws_state *s = S(c);
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
        if (c->w->req != NULL && s->msg == MSG_HANDLING) {
            return;
        }
        break;
    default:
        break;
    }
    if (!nea__ws_parser_between(&s->parser) || s->msg != MSG_NONE) {
        st = NEA__C_WS_FRAME;
    } else if (s->lane == LANE_DATA) {
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

/* Runs over the input and settles the phase; gives the buffer back when
 * idle. The one entry for everything that may let the connection go on. */
static void run(nea__conn *c)
{
    bool heard = false, boundary = false;
    nea__work *w;
    ws_state *s;

    if (!ws_phase(c) || c->ws_route == NULL) {
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
    ensure_ready(c);
    w = c->w;
    s = S(c);
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
        if (!ws_phase(c)) {
            s->busy = false;
            return; /* closed, or lingering after the close */
        }
        before = c->state;
        rest(c, heard, boundary);
        if (c->state == before || !takes_input(c) || (w->rpos == w->rlen && !s->pending)) {
            break;
        }
    }
    s->busy = false;
    if (w->rpos == w->rlen && !s->pending) {
        w->rpos = w->rlen = 0;
    }
    if (c->env->closing && c->state == NEA__C_WS_IDLE) {
        start_close(c, NEA__WS_GOING_AWAY, "going away", false);
    }
    if (c->eof && takes_input(c) && w->rpos == w->rlen) {
        nea__conn_close(c); /* the peer's end without (or after) a close: nothing more comes */
        return;
    }
    nea__conn_release_work(c);
    nea__conn_update_reading(c);
}

/* --- the slot's reports ------------------------------------------------------------------ */

static void on_expired(nea__conn *c, nea__expiry e)
{
    nea_stats *st = c->env->stats;
    switch (e) {
    case NEA__EXPIRE_PING:
        if (!nea__conn_take_work(c)) {
            nea__conn_enter(c, NEA__C_WS_PINGED); /* no buffer to say it with: wait as if said */
            return;
        }
        ensure_ready(c);
        nea__conn_enter(c, NEA__C_WS_PINGED);
        send_control(c, NEA__WS_PING, NULL, 0);
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
        fail(c, NEA__WS_POLICY, "message too slow");
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
        end_message(c, NEA_OUTCOME_TIMEOUT);
        run(c);
        break;
    case NEA__EXPIRE_GOING_AWAY:
        if (!nea__conn_take_work(c)) {
            nea__conn_close(c);
            return;
        }
        ensure_ready(c);
        start_close(c, NEA__WS_GOING_AWAY, "going away", false);
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
    if (c->w != NULL && S(c)->ready) {
        ws_state *s = S(c);
        if (s->code_received != 0) {
            code = s->code_received;
        } else if (s->code_sent != 0) {
            code = s->code_sent;
        }
        s->drain_fn = NULL;
        s->pending = false;
        if (s->lane == LANE_DATA) {
            release_frame(c);
        }
        if (c->w->req != NULL) {
            nea__req_cancel(c->w->req);
            end_message(c, NEA_OUTCOME_CANCELLED);
        } else {
            end_record(c, NEA_OUTCOME_CANCELLED);
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
    .queued = on_queued,
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
    ws_state *s = S(c);

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

int nea_ws_close(nea_ws *ws, unsigned code, const char *reason)
{
    nea__conn *c = (nea__conn *)(void *)ws;
    uint8_t payload[NEA__WS_CONTROL_MAX];
    size_t n;

    NEA__NEED(ws, "WebSocket connection");
    nea__req_check_thread(&c->env->reqs, "nea_ws_close");
    if (!ws_open(c)) {
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
    ensure_ready(c);
    start_close(c, code, reason, false);
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
    return c->gen == ref.gen && ws_open(c) ? (nea_ws *)(void *)c : NULL;
}
