/*
 * conn.h - one connection slot: its phases and their deadlines, reading,
 * writing through output.c, closing (see conn.c). The HTTP exchange that
 * runs on a slot is exchange.h's.
 */
#ifndef NEA_CONN_H
#define NEA_CONN_H

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

/* How long a closing connection keeps draining input before the final close
 * (so the peer reads our last response instead of a reset). */
#define NEA__LINGER_MS 2000

/* A slot's phases. Each has one row in conn.c's phase table: its deadline,
 * what the deadline's expiry does, and the admission list it belongs to. */
typedef enum {
    NEA__C_FREE,    /* no connection */
    NEA__C_IDLE,    /* no partial request; keep-alive deadline */
    NEA__C_HEAD,    /* receiving a head; header deadline */
    NEA__C_QUEUED,  /* head complete, waiting for an arena */
    NEA__C_BODY,    /* receiving the body (into the arena, or in pieces) */
    NEA__C_HANDLER, /* the handler's turn to answer */
    NEA__C_STREAM,  /* a streamed response: the producer's turn for its next piece */
    NEA__C_WRITING, /* a response (or a piece) is being written */
    NEA__C_LINGER,  /* sent the last response, draining input before close */
    NEA__C_CLOSING, /* uv_close called */
    NEA__C_PHASES
} nea__conn_state;

/* What a phase's deadline does when it passes (conn.c's table says which).
 * A plain close is the slot's own; the others are the exchange's. */
typedef enum {
    NEA__EXPIRE_NONE,
    NEA__EXPIRE_CLOSE,   /* close at once */
    NEA__EXPIRE_408,     /* answer 408 and close */
    NEA__EXPIRE_504,     /* the handler's work is abandoned: cancel, answer 504 */
    NEA__EXPIRE_SHED,    /* no arena in time: 503 and close */
    NEA__EXPIRE_TIMEOUT, /* a response that cannot be sent: counted, closed */
} nea__expiry;

/* The admission list a phase belongs to (conn.c's table says which). */
typedef enum {
    NEA__LIST_NONE,
    NEA__LIST_IDLE,   /* answered keep-alive connections, oldest first */
    NEA__LIST_WAIT,   /* routed heads waiting for an arena, per class */
    NEA__LIST_LINGER, /* closing after their last response, oldest first */
} nea__conn_list;

typedef struct nea__conn nea__conn;

/* What a slot tells its owner (admission.c). */
typedef struct nea__conn_hooks {
    /* The slot changed phase (c->state is the new one). */
    void (*state)(nea__conn *c, nea__conn_state from);
    /* A head is complete and routed: grant an arena (nea__conn_arena_ready),
     * queue it (nea__conn_wait) or refuse it (nea__conn_respond_error). */
    void (*routed)(nea__conn *c);
    /* The socket closed: the slot is free again. */
    void (*closed)(nea__conn *c);
} nea__conn_hooks;

/* How a slot reports to the exchange running on it (exchange.c): the slot
 * never calls up. */
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
} nea__slot_hooks;

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
    const nea__conn_hooks *hooks; /* admission's */
    void *hooks_data;
    const nea__slot_hooks *exchange;
    nea__fault *fault;
    nea__load *load;         /* touched by every read: the loop's busy time */
    nea__timers timers;      /* every slot's deadline, by phase */
    bool closing;            /* the server drains: every response closes its connection */
    unsigned handles_open;   /* libuv handles of this server not yet closed */
} nea__conn_env;

struct nea__conn {
    /* The slot's own: set once, kept across connections. */
    uv_tcp_t tcp;
    nea__conn_env *env;
    char *rbuf;
    char *obuf;
    nea__conn *next, *prev; /* owner's lists: free slots, idle, arena wait queue */

    /* Everything below belongs to one connection: zeroed when a connection
     * is accepted into the slot, so nothing of the previous one survives. */
    nea__conn_state state;
    nea__timed deadline; /* the current phase's, on the server's list for it */
    size_t rlen;        /* bytes in rbuf */
    size_t rpos;        /* start of the unprocessed part */
    bool reading;       /* uv_read_start is in force */
    bool eof;           /* the peer finished sending (half-close or close) */
    bool in_process;    /* conn_process is on the stack */
    bool served;        /* at least one response completed on this connection */
    /* Per request: */
    bool keep_alive;   /* the request lets the connection stay open */
    bool must_close;   /* close after the current response */
    bool peer_closing; /* the peer asked to close and its request was read to the end */
    bool body_unread;  /* a body read in pieces is not over: close after answering */

    uv_shutdown_t shut;
    nea__output out;
    llhttp_t parser;
    nea__head head;
    const nea__route *route;
    nea__body_rx body;
    nea__record record;
    nea_req *req;
    struct sockaddr_storage peer; /* the client's address, read on first use (nea__conn_peer) */
    bool peer_known;

    char hdrbuf[NEA__HDRBUF]; /* dynamic lines of a pre-built response */
    uv_buf_t ebufs[3];
};

/* rbuf: read_buffer_size bytes; obuf: NEA__OBUF bytes (both in the slot). */
void nea__conn_init(nea__conn *c, nea__conn_env *env, char *rbuf, char *obuf);
/* Starts serving the free slot c on the connection pending on listener, or,
 * when listener is NULL, on the connected socket fd. On failure the slot is
 * handed back through the closed hook. */
int nea__conn_accept(nea__conn *c, uv_stream_t *listener, uv_os_sock_t fd);
/* The one phase transition: tells admission, arms the phase's deadline. */
void nea__conn_enter(nea__conn *c, nea__conn_state st);
/* Re-reads the current phase's deadline (a body's pace moved it). */
void nea__conn_rearm(nea__conn *c);
/* The server's deadline lists report here (timers.c's expired hook). */
void nea__conn_expired(nea__timed *e);
/* Reads while the phase wants input and the read buffer has room. */
void nea__conn_update_reading(nea__conn *c);
/* Closes at once, cancelling a request in flight. */
void nea__conn_close(nea__conn *c);
/* Closes after the last answer: what is queued goes out, then FIN, then
 * input is drained until the peer closes or the linger deadline passes. */
void nea__conn_close_lingering(nea__conn *c);
/* The admission list phase st belongs to. */
nea__conn_list nea__conn_list_of(nea__conn_state st);
/* True when the peer already sent bytes we have not read (a request on its
 * way: such a connection is not evicted). */
bool nea__conn_input_waiting(nea__conn *c);
/* The client's address (family AF_UNSPEC when unknown). Asked of the kernel
 * on first use only: most connections never need it, and accepting stays
 * one system call shorter. */
const struct sockaddr_storage *nea__conn_peer(nea__conn *c);
/* True when c's client has the address peer (ports not compared). */
bool nea__conn_same_peer(nea__conn *c, const struct sockaddr_storage *peer);

#endif /* NEA_CONN_H */
