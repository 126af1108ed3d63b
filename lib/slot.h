/*
 * slot.h - a connection slot's state: the types every file working on a
 * slot shares. A slot (nea__conn) is what a connection keeps while it
 * waits: its socket, deadline, links and peer; its working state
 * (nea__work: read buffer, output side, the HTTP exchange's parser and head
 * or the WebSocket state) is a connection buffer it holds only while it has
 * work; what every slot of one server shares is nea__conn_env. The phases
 * a slot goes through, what their deadlines do, whose they are and which
 * admission list they belong to are enums here; conn.c's phase table gives
 * each its row.
 *
 * Types and accessors only, no functions of a file: the slot's own
 * functions are conn.c's (conn.h), its TLS side tlsio.c's (tlsio.h). A slot
 * reports to the files above it only through the hooks in its env
 * (nea__conn_hooks to admission, nea__slot_hooks to the owner of its
 * phase), never by calling them.
 *
 * Invariants: what follows a slot's own fields is zeroed whenever a
 * connection is accepted into it, so nothing of the previous one survives;
 * a slot holds a connection buffer (w) only while it has work, so an idle
 * connection holds none; with TLS, its TLS state sits tls_off bytes after
 * the slot's start for the connection's whole life.
 */
#ifndef NEA_SLOT_H
#define NEA_SLOT_H

#include "body.h"
#include "fault.h"
#include "http.h"
#include "load.h"
#include "log.h"
#include "metrics.h"
#include "output.h"
#include "record.h"
#include "req.h"
#include "response.h"
#include "router.h"
#include "timers.h"
#include "tls.h"

/* A slot's phases. Each has one row in conn.c's phase table: its deadline,
 * what the deadline's expiry does, the admission list it belongs to, whose
 * phase it is (the HTTP exchange's or the WebSocket's) and what the
 * server's drain does to it. */
typedef enum {
    NEA__C_FREE,          /* no connection */
    NEA__C_TLS_HANDSHAKE, /* TLS: accepted, handshake not done; tls_handshake_ms */
    NEA__C_IDLE,          /* no partial request; keep-alive deadline */
    NEA__C_WAITBUF,       /* readable, waiting in line for a connection buffer */
    NEA__C_HEAD,          /* receiving a head; header deadline */
    NEA__C_QUEUED,        /* head complete, waiting for an arena */
    NEA__C_BODY,          /* receiving the body (into the arena, or in pieces) */
    NEA__C_HANDLER,       /* the handler's turn to answer */
    NEA__C_STREAM,        /* a streamed response: the producer's turn for its next piece */
    NEA__C_WRITING,       /* a response (or a piece) is being written */
    NEA__C_LINGER,        /* sent the last response, draining input before close */
    NEA__C_CLOSING,       /* uv_close called */
    /* After the handover to WebSocket (wsconn.c): */
    NEA__C_WS_IDLE,    /* between messages, nothing under way; ping deadline */
    NEA__C_WS_PINGED,  /* between messages, a ping sent; the peer must say something */
    NEA__C_WS_WAITBUF, /* readable, waiting in line for a connection buffer */
    NEA__C_WS_FRAME,   /* a frame or message arriving; its pace */
    NEA__C_WS_QUEUED,  /* a message's first bytes wait for an arena */
    NEA__C_WS_HANDLER, /* a message handler kept its message (nea_ws_done ends it) */
    NEA__C_WS_WRITING, /* between messages, a frame being written */
    NEA__C_WS_CLOSING, /* our close frame sent, waiting for the peer's */
    NEA__C_PHASES
} nea__conn_state;

/* What a phase's deadline does when it passes (conn.c's table says which).
 * A plain close is the slot's own; the others are the phase owner's. */
typedef enum {
    NEA__EXPIRE_NONE,
    NEA__EXPIRE_CLOSE,      /* close at once */
    NEA__EXPIRE_408,        /* answer 408 and close */
    NEA__EXPIRE_504,        /* the handler's work is abandoned: cancel, answer 504 */
    NEA__EXPIRE_SHED,       /* no arena in time: 503 and close */
    NEA__EXPIRE_TIMEOUT,    /* a response that cannot be sent: counted, closed */
    NEA__EXPIRE_NO_BUFFER,  /* no connection buffer in time: 503 and close */
    NEA__EXPIRE_TLS,        /* a TLS handshake too slow: counted (timeout), closed */
    NEA__EXPIRE_PING,       /* WebSocket: silent for a while, send a ping */
    NEA__EXPIRE_SLOW,       /* WebSocket: a message arrives too slowly: close 1008 */
    NEA__EXPIRE_GOING_AWAY, /* WebSocket (drain): close 1001 */
} nea__expiry;

/* Whose a phase is: the hooks in nea__conn_env.owners that hear about it. */
typedef enum {
    NEA__OWNER_HTTP, /* the HTTP exchange (exchange.c) */
    NEA__OWNER_WS,   /* a WebSocket connection (wsconn.c) */
    NEA__OWNERS
} nea__owner;

/* The admission list a phase belongs to (conn.c's table says which). */
typedef enum {
    NEA__LIST_NONE,
    NEA__LIST_IDLE,   /* answered keep-alive connections, oldest first */
    NEA__LIST_WAIT,   /* routed heads waiting for an arena, per class */
    NEA__LIST_LINGER, /* closing after their last response, oldest first */
    NEA__LIST_BUFFER, /* readable, waiting for a connection buffer, first come first */
} nea__conn_list;

typedef struct nea__conn nea__conn;
typedef struct nea__conn_env nea__conn_env;

/* What a slot tells its owner (admission.c). */
typedef struct nea__conn_hooks {
    /* The slot entered or left a phase that has an admission list, or
     * began to close (c->state is the new phase). */
    void (*state)(nea__conn *c, nea__conn_state from);
    /* A head (or a WebSocket message) is complete and routed: grant an
     * arena (nea__conn_grant), queue it (nea__conn_queue) or refuse it
     * (nea__conn_refuse, or nea__conn_respond_error for a readiness
     * check). */
    void (*routed)(nea__conn *c);
    /* The socket closed: the slot is free again. */
    void (*closed)(nea__conn *c);
    /* A connection buffer went back to the pool: the first connection
     * waiting for one may take it (nea__conn_resume). */
    void (*buffer_free)(nea__conn_env *env);
} nea__conn_hooks;

/* How a slot reports to whoever runs on it in its current phase (the phase
 * table's owner: exchange.c, or wsconn.c after a WebSocket upgrade): the
 * slot never calls up. */
typedef struct nea__slot_hooks {
    /* Bytes arrived in the read buffer, or the peer finished sending
     * (c->eof): run the exchange over what is buffered. */
    void (*input)(nea__conn *c);
    /* The phase's deadline passed and its expiry is not a plain close. */
    void (*expired)(nea__conn *c, nea__expiry e);
    /* The connection is closing (or lingering after its last answer): count
     * the request in the slot, if any, and let go of it. */
    void (*closing)(nea__conn *c);
    /* A response handed to nea__out_send was written (status 0) or failed. */
    void (*sent)(nea__conn *c, int status);
    /* A streamed piece was written (status 0) or failed. */
    void (*piece)(nea__conn *c, int status);
    /* Admission's answers to what the owner asked for with the routed hook
     * (passed on by nea__conn_grant, nea__conn_queue, nea__conn_refuse):
     * an arena, a place in the queue for at most ms, or a refusal (keep:
     * the connection may stay). */
    void (*granted)(nea__conn *c, nea__arena *a);
    void (*queued)(nea__conn *c, unsigned ms);
    void (*refused)(nea__conn *c, bool keep);
} nea__slot_hooks;

/* The server's connection buffers (nea__work and their read and output
 * buffers, in the reservation). */
typedef struct nea__work_pool {
    struct nea__work *free;
    size_t obuf_off; /* a buffer's output buffer, from its read buffer */
    size_t tls_off;  /* with TLS: a buffer's TLS record buffers, from its read buffer */
    unsigned count, in_use, high_water;
} nea__work_pool;

/* What every slot of one server shares. */
typedef struct nea__conn_env {
    uv_loop_t *loop;
    const nea_config *cfg;
    nea_stats *stats;
    const nea__router *router;
    const nea__statics *statics;
    nea__date date;
    nea__req_env reqs;
    nea__record_env records;
    size_t max_body[NEA_ARENA_CLASSES]; /* the buffered-body limit in force, by class (plan) */
    const nea__conn_hooks *hooks;       /* admission's */
    void *hooks_data;
    const nea__slot_hooks *owners[NEA__OWNERS]; /* by the phase table's owner column */
    nea__fault *fault;
    nea__load *load;       /* touched by every read: the loop's busy time */
    nea__timers timers;    /* every slot's deadline, by phase */
    nea__work_pool works;  /* connection buffers, taken while there is work */
    bool closing;          /* the server drains: every response closes its connection */
    unsigned handles_open; /* libuv handles of this server not yet closed */
    /* TLS (tlsio.c): the server's certificate and session cache, shared by
     * every worker; NULL when the server speaks plain HTTP. */
    nea__tls_server *tls;
    size_t tls_off;                           /* a slot's TLS state, from the slot's start */
    nea__log_limit tls_log[NEA__TLS_R_COUNT]; /* failures logged at most once a second, per
                                                 reason */
} nea__conn_env;

/* Room for a WebSocket connection's working state (wsconn.c checks its
 * struct fits): it shares the connection buffer with the HTTP exchange's
 * parser and head, which a connection no longer needs after the 101. */
#define NEA__WS_STATE_BYTES 640

/* A connection's working state: its read buffer, output side and HTTP
 * exchange (or WebSocket state). Drawn from the server's pool of
 * connection buffers (conn.c) while the connection has work (a partial
 * request, a request in flight, an answer being written, a lingering
 * close, a WebSocket frame under way) and given back when it goes idle: an
 * idle connection holds none. */
typedef struct nea__work {
    struct nea__work *next_free;
    char *rbuf;      /* read_buffer_size bytes, after the struct */
    size_t rlen;     /* bytes in rbuf */
    size_t rpos;     /* start of the unprocessed part */
    size_t keep;     /* rbuf's first bytes hold the live request's head (views into it) */
    nea__output out; /* its batch buffer is NEA__OBUF bytes after rbuf */
    uv_shutdown_t shut;
    const nea__route *route;
    nea__body_rx body; /* a body's framing and pace (a WebSocket message's pace) */
    nea__record record;
    nea_req *req; /* the request in flight (a WebSocket message) */
    /* Per request: */
    bool keep_alive;   /* the request lets the connection stay open */
    bool must_close;   /* close after the current response */
    bool upgrade;      /* a 101 is the response: the slot goes to WebSocket once it is written */
    bool peer_closing; /* the peer asked to close and its request was read to the end */
    bool body_unread;  /* a body read in pieces is not over: close after answering */
    unsigned queue_ms; /* how long a queued head or message may wait (nea__conn_queue) */
    bool shut_pending; /* TLS, lingering: FIN once the close_notify is out */
    union {
        struct { /* the HTTP exchange's (exchange.c) */
            llhttp_t parser;
            nea__head head;
            char hdrbuf[NEA__HDRBUF]; /* dynamic lines of a pre-built response */
            uv_buf_t ebufs[3];
        };
        /* After the handover to WebSocket: wsconn.c's state, a type of its
         * own file, checked there to fit. */
        _Alignas(max_align_t) unsigned char ws[NEA__WS_STATE_BYTES];
    };
} nea__work;

/* A connection slot: what a connection keeps while it waits (its socket,
 * its deadline, its links, its peer), a few hundred bytes. */
struct nea__conn {
    /* The slot's own: set once, kept across connections. */
    uv_tcp_t tcp;
    nea__conn_env *env;
    nea__conn *next, *prev; /* owner's lists: free slots, idle, arena and buffer queues */
    uint32_t gen;           /* bumped per connection: a WebSocket reference names one */

    /* Everything below belongs to one connection: zeroed when a connection
     * is accepted into the slot, so nothing of the previous one survives. */
    nea__timed deadline; /* on a deadline list, due no later than the phase's deadline */
    uint64_t due;        /* loop time the current phase's deadline passes (UINT64_MAX: none) */
    uint64_t accept_ms;  /* loop time of the accept (how long a silent one has waited) */
    nea__work *w;        /* its working state; NULL while it waits for nothing */
    nea__conn_state state;
    bool reading;    /* uv_read_start is in force */
    bool eof;        /* the peer finished sending (half-close or close) */
    bool in_process; /* the exchange runs over its input (exchange.c) */
    bool served;     /* at least one response completed on this connection */
    bool tls_live;   /* its TLS state is started and not yet ended (tlsio.c) */
    bool skip_alloc; /* refuse libuv's next buffer request once (conn.c: on_read) */
    bool peer_known;
    uint8_t listed;           /* admission's: which of its lists holds the slot (0: none) */
    struct sockaddr_in6 peer; /* the client's address (an IPv4 one fits), read on first use */
    /* After the handover to WebSocket (wsconn.c), until its close is reported: */
    const nea__route *ws_route;
    void *ws_data; /* the host's (nea_ws_set_data) */
};

/* The route of the head in c, if any. */
static inline const nea__route *nea__conn_route(const nea__conn *c)
{
    return c->w != NULL ? c->w->route : NULL;
}
/* c's TLS state (in the slot, after the struct), or NULL when the server
 * speaks plain HTTP. Started once the connection has a buffer (tls_live). */
static inline nea__tls_conn *nea__conn_tls(const nea__conn *c)
{
    return c->env->tls != NULL ? (nea__tls_conn *)(void *)((char *)(uintptr_t)c + c->env->tls_off)
                               : NULL;
}
/* c holds a request (and so an arena). */
static inline bool nea__conn_has_request(const nea__conn *c)
{
    return c->w != NULL && c->w->req != NULL;
}

#endif /* NEA_SLOT_H */
