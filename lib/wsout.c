/*
 * wsout.c - what a WebSocket connection sends: data frames, control
 * frames (pong, ping, close), and the close handshake.
 *
 * One frame is on the wire at a time (output.c's response write), data or
 * control: its lane. A data frame's payload waits in an arena until it is
 * written: the message's (held until the frame is out) when its handler
 * sends it, else one taken from the route's pool for that frame (leaving
 * class 0's reserved arenas to exempt routes); the kernel taking it at
 * once gives the copy back. A control frame waits in the state, at most
 * one behind the one on the wire (a close replaces a pong; nothing
 * replaces a close).
 *
 * The close handshake: our close frame goes out after the frame on the
 * wire; with fin (a failed connection, an echo of the peer's close) the
 * TCP connection closes once it is out, else the peer's close is awaited
 * in WS_CLOSING. A message being gathered or waiting for an arena is
 * dropped when the close starts; a kept one is cancelled when the
 * connection closes.
 *
 * Invariants: nothing follows our close frame; a connection holds at most
 * two arenas (its message's, and one frame's); a data frame's arena is let
 * go of exactly once, when the frame is written, fails or the connection
 * closes. Nothing here runs the input or settles the phase: wsconn.c does
 * after every call.
 */
#include "wsout.h"

#include "stats.h"

#include <string.h>

/* --- frames out ----------------------------------------------------------------------- */

/* The data frame on the wire was written (or cancelled): its memory goes. */
void nea__wsout_release(nea__conn *c)
{
    nea__wsc *s = nea__wsc_of(c);
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
    nea__wsc *s = nea__wsc_of(c);
    s->close_written = true;
    if (s->fin_after) {
        nea__conn_close_lingering(c); /* FIN after it; the peer's end is drained */
    }
}

/* Writes the control frame in s->ctl (the lane is free). */
static void write_control(nea__conn *c)
{
    nea__wsc *s = nea__wsc_of(c);
    uv_buf_t b = nea__buf(s->ctl, s->ctl_len);
    int r = nea__out_send(&c->w->out, &b, 1);
    if (r < 0) {
        nea__conn_close(c);
        return;
    }
    if (r == 0) {
        s->lane = NEA__WSC_LANE_CONTROL;
        return;
    }
    if (s->ctl_is_close) {
        close_written(c);
    }
}

/* Sends a control frame now, or right after the frame on the wire. A
 * close replaces a pong waiting behind it; nothing replaces a close. */
void nea__wsout_control(nea__conn *c, unsigned opcode, const uint8_t *payload, size_t len)
{
    nea__wsc *s = nea__wsc_of(c);
    bool close = opcode == NEA__WS_CLOSE;
    uint8_t *buf;
    size_t h;

    if (s->lane != NEA__WSC_LANE_FREE && s->next_len > 0 && s->next_is_close) {
        return;
    }
    buf = s->lane == NEA__WSC_LANE_FREE ? s->ctl : s->next;
    h = nea__ws_frame_head(buf, opcode, true, len, NULL);
    if (len > 0) {
        memcpy(buf + h, payload, len);
    }
    if (s->lane != NEA__WSC_LANE_FREE) {
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
    unsigned k = nea__wsc_route(c)->arena_class;
    nea__pool *p = &c->env->reqs.pools[k];
    unsigned keep = k == 0 ? c->env->cfg->reserved_arenas : 0;
    return p->count - p->in_use > keep ? nea__pool_acquire(p) : NULL;
}

static bool in_arena(const nea__arena *a, const void *p, size_t len)
{
    uintptr_t q = (uintptr_t)p, base = (uintptr_t)a->base;
    return q >= base && q - base <= a->used && len <= a->used - (q - base);
}

int nea__wsout_data(nea__conn *c, int opcode, const void *data, size_t len)
{
    nea__wsc *s = nea__wsc_of(c);
    nea_req *msg;
    const char *payload;
    uv_buf_t bufs[2];
    size_t h, mark = 0;
    bool copied = false;
    int r;

    if (s->lane != NEA__WSC_LANE_FREE) {
        return UV_EAGAIN;
    }
    msg = s->msg == NEA__WSC_MSG_HANDLING ? c->w->req : NULL;
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
            nea__wsout_release(c);
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
        nea__wsout_release(c);
        nea__conn_close(c);
        return r;
    }
    c->env->stats->ws_messages_out++;
    if (c->w->record.open) {
        c->w->record.sample.bytes_out += h + len; /* the message being handled sent it */
    }
    if (r == 0) {
        s->lane = NEA__WSC_LANE_DATA;
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
        nea__wsout_release(c); /* may hand an arena on (and so run other handlers) */
    }
    return 0;
}

bool nea__wsout_sent(nea__conn *c, int status)
{
    nea__wsc *s = nea__wsc_of(c);
    uint8_t was = s->lane;

    s->lane = NEA__WSC_LANE_FREE;
    if (was == NEA__WSC_LANE_DATA) {
        nea__wsout_release(c); /* may hand an arena on (and so run other handlers) */
    }
    if (!nea__wsc_phase(c)) {
        return false;
    }
    if (status < 0) {
        nea__conn_close(c);
        return false;
    }
    if (was == NEA__WSC_LANE_CONTROL && s->ctl_is_close) {
        close_written(c);
        if (!nea__wsc_phase(c)) {
            return false;
        }
    }
    if (s->next_len > 0) {
        memcpy(s->ctl, s->next, s->next_len);
        s->ctl_len = s->next_len;
        s->ctl_is_close = s->next_is_close;
        s->next_len = 0;
        write_control(c);
        if (!nea__wsc_phase(c)) {
            return false;
        }
    }
    return true;
}

/* --- the close handshake --------------------------------------------------------------- */

/* Starts (or joins) the close: our close frame goes out after the frame on
 * the wire; with fin, the TCP connection closes once it is out (a failed
 * connection, an echo of the peer's close), else the peer's close is
 * awaited in WS_CLOSING. A message being gathered or waiting for an arena
 * is dropped; a kept one is cancelled when the connection closes. */
void nea__wsout_close(nea__conn *c, unsigned code, const char *reason, bool fin)
{
    nea__wsc *s = nea__wsc_of(c);
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
    if (c->w->req != NULL && s->msg != NEA__WSC_MSG_HANDLING) {
        nea__req_cancel(c->w->req);
        nea__wsmsg_end(c, NEA_OUTCOME_CANCELLED);
    } else if (c->w->req == NULL) {
        nea__wsmsg_end_record(
            c, NEA_OUTCOME_CANCELLED); /* a message that waited for an arena, if any */
    }
    if (reason == NULL) {
        reason = "";
    }
    if (nea__ws_close_payload(payload, code, reason, strlen(reason), &n) != 0) {
        (void)nea__ws_close_payload(payload, code, "", 0, &n);
    }
    nea__conn_enter(c, NEA__C_WS_CLOSING);
    nea__wsout_control(c, NEA__WS_CLOSE, payload, n);
}

/* The peer's close frame: answered with ours (its code echoed, none for
 * 1005), then the TCP connection closes; or, when ours went first, the
 * handshake is complete. */
void nea__wsout_peer_closed(nea__conn *c, unsigned code)
{
    nea__wsc *s = nea__wsc_of(c);
    s->code_received = (uint16_t)code;
    if (s->close_queued) {
        nea__wsout_close(c, 0, NULL, true);
        return;
    }
    nea__wsout_close(c, code == NEA__WS_NO_STATUS ? 0 : code, NULL, true);
}

/* The connection breaks the protocol, or cannot go on: close with code. */
void nea__wsout_fail(nea__conn *c, unsigned code, const char *why)
{
    nea_stats *st = c->env->stats;
    if (code == NEA__WS_TOO_BIG) {
        st->ws_too_big++;
    } else if (code == NEA__WS_PROTOCOL_ERROR || code == NEA__WS_INVALID_DATA) {
        st->ws_failed++;
    }
    nea__log(c->env->cfg, NEA_LOG_INFO, "WebSocket %s closed with %u: %s", c->ws_route->path, code,
             why);
    nea__wsout_close(c, code, why, true);
}
