/*
 * wsmsg.c - a WebSocket connection's messages in, one at a time, each in
 * an arena of its own, to the route's handler.
 *
 * The parser (ws.c) unmasks payload in place in the read buffer and hands
 * it out in pieces; a message's first piece asks admission for an arena of
 * the route's class, exactly as a request head does (so CPU and
 * fair-share refusals, the queue and its timeout apply), and waits in the
 * state (pending, still in the read buffer) until it has one. The pieces
 * are gathered in the arena, growing in place as its last allocation (or,
 * with NEA_WS_PIECES, handed to the handler as they come), and the handler
 * runs once for the whole message in the message's protected frame, timed
 * as handler time for the loop's load. Its request is a message's
 * (NEA__R_MESSAGE: no HTTP response); one the handler keeps (nea_req_keep,
 * a tracked handle, a hold) waits in WS_HANDLER for nea_ws_done.
 *
 * Invariants: a message holds at most one arena, from its first piece to
 * its end; its record is counted once, whichever way it ends (completed,
 * out of memory, cancelled, shed, timed out); after an out-of-memory
 * unwind the rest of a message in pieces is dropped, not handed over; a
 * message after our close is not handled. Nothing here closes the
 * connection or runs its input: wsconn.c does, from what these return.
 */
#include "wsmsg.h"

#include "stats.h"

#include <string.h>

static const struct sockaddr *peer_of(void *data)
{
    return nea__conn_peer(data);
}

/* The message's record is counted (once: record.c ignores a closed one). */
void nea__wsmsg_end_record(nea__conn *c, nea_outcome outcome)
{
    nea__record_end end;
    end.req = c->w->req;
    end.body_in = nea__wsc_of(c)->got;
    end.fallback = outcome;
    end.peer = peer_of;
    end.peer_data = c;
    nea__record_finish(&c->w->record, &c->env->records, &end);
}

/* The message in progress ends: counted, then let go of (its arena returns
 * once no handler code is on the stack and nothing holds it). */
void nea__wsmsg_end(nea__conn *c, nea_outcome outcome)
{
    nea__wsc *s = nea__wsc_of(c);
    nea_req *req = c->w->req;
    if (req == NULL) {
        return;
    }
    nea__wsmsg_end_record(c, outcome);
    c->w->req = NULL;
    s->msg = NEA__WSC_MSG_NONE;
    s->data = NULL;
    s->cap = 0;
    s->got = 0;
    nea__req_end(req);
}

/* The handler keeps its message past its return. */
static bool kept(const nea__conn *c, const nea_req *req)
{
    unsigned ours = nea__wsc_of(c)->held == req ? 1u : 0u;
    return req->kept || req->tracked != NULL || req->holds > ours;
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
    nea__wsc *s = nea__wsc_of(c);
    nea__work *w = c->w;
    nea_req *req = w->req;
    call k = {c, m};
    uint64_t t0, t1;

    s->msg = NEA__WSC_MSG_HANDLING;
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
    if (!nea__wsc_phase(c) || c->w == NULL || c->w->req != req) {
        return; /* closed under it, or ended inside it (nea_ws_done) */
    }
    w->record.sample.handler_ns += t1 - t0;
    if (req->oom) {
        c->env->stats->ws_message_oom++;
        s->skip = !m->last; /* the rest of a message in pieces is dropped */
        nea__wsmsg_end(c, NEA_OUTCOME_OOM);
    } else if (!nea__req_live(req)) {
        nea__wsmsg_end(c, NEA_OUTCOME_CANCELLED);
    } else if (!m->last) {
        s->msg = NEA__WSC_MSG_GATHER;
    } else if (!kept(c, req)) {
        nea__wsmsg_end(c, NEA_OUTCOME_COMPLETED);
    } else if (!s->close_queued) {
        nea__conn_enter(c, NEA__C_WS_HANDLER); /* nea_ws_done, or response_timeout_ms */
    }
}

/* A piece of the message whose arena is granted: gathered (the handler
 * runs at the last), or handed over at once (NEA_WS_PIECES). */
unsigned nea__wsmsg_take(nea__conn *c, const nea__ws_event *ev, const char **why)
{
    nea__wsc *s = nea__wsc_of(c);
    nea_req *req = c->w->req;
    if (nea__wsc_pieces(c)) {
        nea_ws_msg m = {(int)ev->opcode, (const char *)ev->data, ev->len, s->got, ev->last};
        s->got += ev->len;
        dispatch(c, &m);
        return 0;
    }
    /* The payload grows in place: it is the arena's last allocation while
     * it gathers (frames sent meanwhile take an arena of their own). The
     * limit keeps it within the arena; only fault injection fails here. */
    if (s->data == NULL || ev->message_len + 1 > s->cap) {
        size_t need = (size_t)ev->message_len + 1;
        char *p = s->data == NULL ? nea__arena_alloc(req->arena, need, 1)
                                  : nea__arena_grow(req->arena, s->data, need);
        if (p == NULL) {
            *why = "message larger than its arena";
            return NEA__WS_TOO_BIG;
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
    return 0;
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

unsigned nea__wsmsg_data(nea__conn *c, const nea__ws_event *ev, const char **why)
{
    nea__wsc *s = nea__wsc_of(c);
    if (s->close_queued) {
        return 0; /* nothing is handled after a close */
    }
    if (s->skip) {
        s->skip = !ev->last;
        return 0;
    }
    if (c->w->req != NULL) {
        return nea__wsmsg_take(c, ev, why);
    }
    s->pending = true;
    s->piece = *ev;
    ask_arena(c);
    if (s->pending && c->w->req != NULL) { /* granted at once */
        s->pending = false;
        return nea__wsmsg_take(c, &s->piece, why);
    }
    return 0;
}

unsigned nea__wsmsg_granted(nea__conn *c, nea__arena *a, const char **why)
{
    nea__wsc *s = nea__wsc_of(c);
    nea__work *w = c->w;
    nea_req *req = nea__req_open(&c->env->reqs, a, c);

    if (req == NULL) { /* fault injection only */
        nea__req_give_back(&c->env->reqs, a);
        *why = "no room for the message's request";
        return NEA__WS_INTERNAL;
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
    s->msg = NEA__WSC_MSG_GATHER;
    s->data = NULL;
    s->cap = 0;
    s->got = 0;
    return 0;
}

void nea__wsmsg_queued(nea__conn *c, unsigned ms)
{
    nea__record_stamp(&c->w->record);
    c->w->queue_ms = ms;
    nea__conn_enter(c, NEA__C_WS_QUEUED);
}
