/*
 * wsstate.h - a WebSocket connection's working state: what it keeps in its
 * connection buffer between reads (the frame parser, the message in
 * progress, the frames out, the close handshake), shared by the three
 * files that run a connection after the upgrade: wsmsg.c (messages in),
 * wsout.c (frames out, the close) and wsconn.c (the phases).
 *
 * The state lives in the connection buffer's room for it
 * (NEA__WS_STATE_BYTES, where the HTTP exchange kept its parser and head),
 * so it goes back to the pool with the buffer whenever the connection is
 * idle; a fresh buffer is zeroed, and nea__wsc_ready starts the state anew
 * in it (between frames, nothing under way). What a connection needs
 * between messages is in its slot (route, host data, generation).
 */
#ifndef NEA_WSSTATE_H
#define NEA_WSSTATE_H

#include "conn.h"
#include "ws.h"

#include <string.h>

/* Who has the one frame on the wire (nea__wsc.lane). */
enum { NEA__WSC_LANE_FREE, NEA__WSC_LANE_DATA, NEA__WSC_LANE_CONTROL };

/* Where the message in progress (c->w->req) is (nea__wsc.msg). */
enum { NEA__WSC_MSG_NONE, NEA__WSC_MSG_GATHER, NEA__WSC_MSG_HANDLING };

/* A control frame: its head and the longest payload one may carry. */
#define NEA__WSC_CONTROL_FRAME (2 + NEA__WS_CONTROL_MAX)

typedef struct nea__wsc {
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
    uint8_t ctl[NEA__WSC_CONTROL_FRAME];
    uint8_t next[NEA__WSC_CONTROL_FRAME];
    nea_req *held;           /* the message whose arena holds the data frame on the wire */
    nea__arena *frame_arena; /* or the arena taken for it */

    /* The close handshake. */
    bool close_queued;  /* our close frame is on its way: nothing may follow it */
    bool close_written; /* ... and out */
    bool fin_after;     /* once it is out, close the TCP connection */
    uint16_t code_sent, code_received;

    void (*drain_fn)(nea_ws *ws, void *arg);
    void *drain_arg;
} nea__wsc;

_Static_assert(sizeof(nea__wsc) <= NEA__WS_STATE_BYTES,
               "the WebSocket state must fit its room in the connection buffer");

/* c's state (c holds a connection buffer). */
static inline nea__wsc *nea__wsc_of(const nea__conn *c)
{
    return (nea__wsc *)(void *)c->w->ws;
}

/* c's phase is a WebSocket one (once it lingers or closes, it is conn.c's). */
static inline bool nea__wsc_phase(const nea__conn *c)
{
    return nea__conn_owner_of(c->state) == NEA__OWNER_WS;
}

/* Open: upgraded, not closing, not closed. */
static inline bool nea__wsc_open(const nea__conn *c)
{
    return c->ws_route != NULL && nea__wsc_phase(c) && c->state != NEA__C_WS_CLOSING;
}

static inline const nea_ws_route *nea__wsc_route(const nea__conn *c)
{
    return c->ws_route->ws;
}

/* The route hands messages over in pieces (NEA_WS_PIECES). */
static inline bool nea__wsc_pieces(const nea__conn *c)
{
    return (nea__wsc_route(c)->flags & NEA_WS_PIECES) != 0;
}

/* A fresh connection buffer (zeroed by conn.c) gets this connection's
 * state: the parser starts between frames. */
static inline void nea__wsc_ready(nea__conn *c)
{
    nea__wsc *s = nea__wsc_of(c);
    if (!s->ready) {
        memset(s, 0, sizeof(*s));
        nea__ws_parser_init(&s->parser, false, c->ws_route->body_max);
        s->ready = true;
        c->w->route = c->ws_route; /* admission's queues read the class there */
    }
}

#endif /* NEA_WSSTATE_H */
