/*
 * conn.h - one connection slot and its socket state machine (see conn.c).
 */
#ifndef NEA_CONN_H
#define NEA_CONN_H

#include "chunked.h"
#include "fault.h"
#include "http.h"
#include "load.h"
#include "log.h"
#include "metrics.h"
#include "req.h"
#include "response.h"
#include "router.h"

/* Per-connection output buffer: small responses to pipelined requests are
 * gathered here and sent with one write. */
#define NEA__OBUF 2048
/* How long a closing connection keeps draining input before the final close
 * (so the peer reads our last response instead of a reset). */
#define NEA__LINGER_MS 2000

typedef enum {
    NEA__C_FREE,
    NEA__C_IDLE,    /* no partial request; keep-alive timer */
    NEA__C_HEAD,    /* receiving a head; header deadline */
    NEA__C_QUEUED,  /* head complete, waiting for an arena */
    NEA__C_BODY,    /* receiving the body into the arena */
    NEA__C_HANDLER, /* handler running or pending (async) */
    NEA__C_WRITING, /* response being written */
    NEA__C_LINGER,  /* sent the last response, draining input before close */
    NEA__C_CLOSING, /* uv_close called */
} nea__conn_state;

typedef struct nea__conn nea__conn;

/* What a slot tells its owner (admission.c). */
typedef struct nea__conn_hooks {
    /* The slot changed state (c->state is the new one). */
    void (*state)(nea__conn *c, nea__conn_state from);
    /* A head is complete and routed: grant an arena (nea__conn_arena_ready),
     * queue it (nea__conn_wait) or refuse it (nea__conn_respond_error). */
    void (*routed)(nea__conn *c);
    /* The socket closed: the slot is free again. */
    void (*closed)(nea__conn *c);
} nea__conn_hooks;

/* What every slot of one server shares. */
typedef struct nea__conn_env {
    uv_loop_t *loop;
    const nea_config *cfg;
    nea_stats *stats;
    const nea__router *router;
    const nea__statics *statics;
    nea__date date;
    nea__req_env reqs;
    size_t max_body[NEA_ARENA_CLASSES]; /* the buffered-body limit in force, by class (plan) */
    const nea__conn_hooks *hooks;
    void *hooks_data;
    nea__fault *fault;
    nea__load *load;                 /* touched by every read: the loop's busy time */
    nea__metrics *metrics;           /* per-route records: every finished request is counted */
    nea__log_limit log_503, log_400; /* refusals are logged at most once a second */
    bool closing;                    /* the server drains: every response closes its connection */
    unsigned handles_open;           /* libuv handles of this server not yet closed */
} nea__conn_env;

struct nea__conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_write_t wreq_continue;
    uv_write_t wreq_out;
    uv_shutdown_t shut;
    llhttp_t parser;
    nea__conn_env *env;

    nea__conn_state state;
    char *rbuf;
    char *obuf;          /* NEA__OBUF bytes after rbuf */
    size_t olen;         /* bytes gathered in obuf, not yet handed to the kernel */
    bool owrite_pending; /* obuf is being written by wreq_out */
    size_t rlen;         /* bytes in rbuf */
    size_t rpos;         /* start of the unprocessed part */
    bool reading;
    bool keep_alive;
    bool must_close;   /* close after the current response */
    bool eof;          /* peer finished sending */
    bool counted_open; /* counted in stats.connections_open */
    bool in_process;   /* conn_process is on the stack */
    bool served;       /* at least one response completed on this connection */
    bool peer_closing; /* the peer asked to close and its request was read to the end */

    nea__head head;
    const nea__route *route;
    nea__chunked chunked;      /* framing state of a chunked body */
    uint64_t body_left;        /* Content-Length bytes still to read */
    uint64_t body_deadline_ms; /* uv_now() by which the body must be complete */
    uint64_t body_start_ms;    /* uv_now() when the body started */
    uint64_t body_last_ms;     /* uv_now() of the last body read */
    uint64_t due;       /* loop time at which the current state's deadline passes */
    uint64_t timer_due; /* loop time the libuv timer is set for (<= due while active) */
    uint64_t body_bytes;       /* bytes received since the body started */
    uint64_t body_got;         /* body bytes handed to a handler reading in pieces */
    bool body_unread;          /* a body read in pieces is not over: close after answering */

    /* The request in this slot, counted when it ends (finish_sample). */
    nea__sample sample;
    bool sampling;        /* a request is in the slot and not counted yet */
    const char *s_method; /* in rbuf, until the request has an arena */
    const char *s_path;
    size_t s_method_len, s_path_len;
    /* uv_hrtime() of the request's start: read lazily, by the first event
     * that needs a time (a wait for an arena, a body, a pre-built answer, or
     * the handler's start), so the common path reads the clock only twice:
     * at the handler's start and at the request's end, which is also the
     * handler's end when it answers at once (t_end). 0: not read yet. */
    uint64_t t_head;
    uint64_t t_handler;  /* uv_hrtime() when the handler started */
    uint64_t t_end;      /* uv_hrtime() of the last finished sample (0: none since dispatch) */
    unsigned sample_seq; /* bumped per sample: dispatch knows its own */
    bool in_dispatch;    /* the handler's first call is on the stack */
    bool handler_sync;   /* it responded there: handler_ns is read at its return */

    nea_req *req;
    struct sockaddr_storage peer; /* the client's address, read on first use (nea__conn_peer) */
    bool peer_known;
    nea__conn *next, *prev; /* owner's lists: free slots, idle, arena wait queue */
    uint64_t accept_ms;     /* loop time of the accept (how long a silent one has waited) */

    char hdrbuf[NEA__HDRBUF]; /* dynamic lines of a pre-built response */
    uv_buf_t ebufs[3];
};

/* Fills env; the request hooks are the connection's own. */
void nea__conn_env_init(nea__conn_env *env, uv_loop_t *loop, const nea_config *cfg,
                        nea_stats *stats, const nea__router *router, const nea__statics *statics,
                        nea__pool *pools, const nea_plan *plan);
/* rbuf: read_buffer_size bytes; obuf: NEA__OBUF bytes (both in the slot). */
void nea__conn_init(nea__conn *c, nea__conn_env *env, char *rbuf, char *obuf);
/* Starts serving the free slot c on the connection pending on listener, or,
 * when listener is NULL, on the connected socket fd. On failure the slot is
 * handed back through the closed hook. */
int nea__conn_accept(nea__conn *c, uv_stream_t *listener, uv_os_sock_t fd);
/* Closes at once, cancelling a request in flight. */
void nea__conn_close(nea__conn *c);
/* True when the peer already sent bytes we have not read (a request on its
 * way: such a connection is not evicted). */
bool nea__conn_input_waiting(nea__conn *c);
/* An arena for the routed head waiting in c. */
void nea__conn_arena_ready(nea__conn *c, nea__arena *a);
/* The routed head waits for an arena for at most ms (then 503). */
void nea__conn_wait(nea__conn *c, unsigned ms);
/* Answers the current request with a pre-built error. */
void nea__conn_respond_error(nea__conn *c, nea__err e);
/* Answers 503 (counted by the caller's cause); closes after it unless keep,
 * and then still when an unread body follows. keep is for CPU refusals,
 * where a reconnect would cost the server more than the refusal saved. */
void nea__conn_shed(nea__conn *c, bool keep);
/* The client's address (family AF_UNSPEC when unknown). Asked of the kernel
 * on first use only: most connections never need it, and accepting stays
 * one system call shorter. */
const struct sockaddr_storage *nea__conn_peer(nea__conn *c);
/* The address (no port) as text into buf, or "-" when unknown. */
void nea__addr_name(const struct sockaddr_storage *a, char *buf, size_t len);
/* True when c's client has the address peer (ports not compared). */
bool nea__conn_same_peer(nea__conn *c, const struct sockaddr_storage *peer);
/* uv_hrtime() since which the routed head in c has waited to run (set by
 * nea__conn_wait), or 0 when it has not waited. */
uint64_t nea__conn_waiting_since(const nea__conn *c);

#endif /* NEA_CONN_H */
