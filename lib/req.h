/*
 * req.h - a request in its arena: lifecycle, protected calls, defers,
 * tracked handles, the allocation API and the response entry points (see
 * req.c).
 */
#ifndef NEA_REQ_H
#define NEA_REQ_H

#include "http.h"
#include "pool.h"
#include "response.h"
#include "trampoline.h"

/* The handler must have at least this much of its arena left after the
 * request struct and the largest possible head; enforced by the plan. */
#define NEA__MIN_HANDLER_BYTES ((size_t)1024)
/* The shortest request head: "GET / HTTP/1.0\r\n\r\n". */
#define NEA__MIN_HEAD_BYTES ((size_t)18)

/* How a request tells its owner (the connection) what happened. Lower
 * layers never call up: these are set once per server. */
typedef struct nea__req_hooks {
    /* The Connection line for the response ("Connection: close\r\n", ...);
     * the owner may decide here to close after it, and must when close is
     * set (a body delimited by the connection's close). */
    const char *(*conn_line)(nea_req *req, bool close);
    /* Write the response in bufs (they live in the arena until the request
     * ends); the owner ends the request once it is written. */
    void (*send)(nea_req *req, uv_buf_t *bufs, unsigned n);
    /* Answer with a pre-built error instead (an out-of-memory 500). */
    void (*send_error)(nea_req *req, nea__prebuilt e);
    /* The response was written while handler code was on the stack, which
     * has now left: the owner may finish the request. */
    void (*written)(nea_req *req);
    /* The client's address (nea_req_peer); UV_ENOTCONN when unknown. */
    int (*peer)(nea_req *req, struct sockaddr_storage *addr);
    /* Streamed responses (stream.c): write one piece of bufs (at most 4)
     * and report it with nea__stream_written; 0 or the write error (the
     * request is then cancelled). */
    int (*send_piece)(nea_req *req, uv_buf_t *bufs, unsigned n);
    /* With nothing queued on the socket, let the kernel send up to len
     * bytes of the file fd from off (sendfile): the bytes sent, or UV_EAGAIN
     * (the socket is full, or a write is queued), or another UV_E* error. */
    int (*send_file)(nea_req *req, int fd, uint64_t off, size_t len);
    /* Response bytes may be on the wire and the response cannot be
     * finished: close the connection (cancels the request). */
    void (*abort)(nea_req *req);
    /* Streamed request bodies (stream.c): the handler is ready for pieces
     * (nea__stream_body_piece): 0, or NEA_ESTATE when its route does not
     * take its body in pieces; or ready again after a pause. */
    int (*body_begin)(nea_req *req);
    void (*body_resume)(nea_req *req);
} nea__req_hooks;

/* What every request of one server shares. */
typedef struct nea__req_env {
    nea_server *server; /* the host's handle (worker 0's), whichever worker this is */
    uv_loop_t *loop;
    const nea_config *cfg;
    nea_stats *stats;
    nea__pool *pools; /* one per arena class, indexed by class */
    nea__date *date;
    nea__trampoline tramp;
    const nea__req_hooks *hooks;
    /* An arena came back to the pool (whoever hands out arenas listens). */
    void (*released)(void *data);
    void *released_data;
    unsigned live; /* requests whose arena is not back in the pool yet */
    /* The thread the loop runs on, learned when the first request opens:
     * references are checked against it (host code on another thread
     * must not touch a request). */
    uv_thread_t thread;
    bool thread_known;
} nea__req_env;

typedef struct nea__defer {
    struct nea__defer *next;
    void (*fn)(void *);
    void *arg;
} nea__defer;

typedef struct nea__tracked {
    struct nea__tracked *next;
    uv_handle_t *handle;
} nea__tracked;

/* A request's lifecycle, in order. Live phases come first: a request is
 * live (its handler code may run, a reference finds it) exactly while its
 * phase is at most NEA__R_WRITTEN (nea__req_live). */
typedef enum {
    NEA__R_RECEIVING, /* its body arrives into the arena; the handler has not run */
    NEA__R_MESSAGE,   /* a WebSocket message (wsconn.c): no HTTP response, it ends
                         when its owner says */
    NEA__R_HANDLING,  /* the handler ran (or runs); no response yet */
    NEA__R_STREAMING, /* a streamed response is under way */
    NEA__R_ANSWERED,  /* a whole response was issued and is being written */
    NEA__R_WRITTEN,   /* written while handler code was on the stack: the owner is
                         told once it has left (settle) */
    NEA__R_CANCELLED, /* the client left, a deadline passed or the server cancelled it:
                         no handler code runs for it again; the owner lets go of it */
    NEA__R_DETACHED,  /* the owner let go: it ends once no handler code is on the
                         stack and every hold is released */
    NEA__R_ENDED,     /* defers ran; the arena returns once its tracked handles closed */
} nea__req_phase;

struct nea_req {
    nea__req_env *env;
    void *conn; /* the owner, while the request is attached (phase < DETACHED) */
    nea__arena *arena;

    nea__msg msg;
    nea__body body;
    int http_minor;
    bool is_head;
    bool oom;        /* answered 500 because its arena ran out (metrics) */
    bool kept;       /* nea_req_keep: a response will come from code libnea cannot see */
    uint16_t status; /* of the response issued (metrics) */
    nea__req_phase phase;

    nea_handler_fn fn;
    void *fn_data;
    void *user; /* nea_req_set_data: the host's, never touched by libnea */

    unsigned depth;           /* protected frames of this request on the stack */
    unsigned holds;           /* nea_req_hold / nea_req_work not yet released */
    unsigned handles_closing; /* tracked handles whose close callback is pending */

    nea__defer *defers;
    nea__tracked *tracked;
    nea__resp_hdrs resp_hdrs;
    uv_buf_t wbufs[2];
    struct nea__stream *stream; /* a streamed response (stream.c), in the arena */
    struct nea__reader *reader; /* a body read in pieces (stream.c), in the arena */

    size_t oom_asked; /* bytes requested by the allocation that failed */
};

/* The one "is it still live" test: handler code may run for req, and a
 * reference to it finds it. */
static inline bool nea__req_live(const nea_req *req)
{
    return req->phase <= NEA__R_WRITTEN;
}

/* A response (or a pre-built answer) was issued for req. */
static inline bool nea__req_responded(const nea_req *req)
{
    return req->phase >= NEA__R_STREAMING;
}

/* Creates a request in a fresh arena (the request struct is the arena's
 * first allocation), in phase NEA__R_RECEIVING; NULL only under fault
 * injection. */
nea_req *nea__req_open(nea__req_env *env, nea__arena *a, void *conn);
/* Returns arena a to its pool and tells whoever hands out arenas. */
void nea__req_give_back(nea__req_env *env, nea__arena *a);
/* The request in arena a, or NULL when a holds none. */
nea_req *nea__req_in(const nea__arena *a);
/* Runs the request's handler inside its outermost protected frame. */
void nea__req_dispatch(nea_req *req);
/* Runs fn inside the request's outermost protected frame and handles an
 * out-of-memory unwind (500 or close). */
void nea__req_call(nea_req *req, void (*fn)(nea_req *, void *), void *arg);
/* Lays out the head of a handler response in req->wbufs (body NULL: a
 * streamed body follows) and marks the request responded; the caller sends
 * it. On arena exhaustion answers the pre-built 500. Returns the buffer
 * count, or NEA_ERESPONDED, NEA_ESTATE, UV_EINVAL, NEA_ENOMEM. */
int nea__req_head(nea_req *req, int status, const char *ctype, const void *body, size_t len,
                  bool copy, nea__framing framing);
/* The response became the pre-built 500 because the arena could not hold
 * asked bytes for it (nothing was sent yet): logged, counted, sent.
 * Returns NEA_ENOMEM. */
int nea__req_oom_500(nea_req *req, size_t asked);
/* The owner's response for req was written: true when the owner may
 * finish the request now, false when handler code is on the stack (the
 * owner's written hook is called once it has left). */
bool nea__req_written(nea_req *req);
/* The client left, a deadline passed or the server cancels: handler code
 * never runs for req again (its owner detaches it next). */
void nea__req_cancel(nea_req *req);
/* The owner lets go of the request: it ends (defers LIFO, tracked handles
 * closed, the arena returned once every handle has closed) as soon as no
 * handler code is on the stack and every hold is released. Idempotent. */
void nea__req_end(nea_req *req);
/* Holds keep the arena (and the request struct) reserved past the
 * request's end until released (ref.c). */
void nea__req_hold(nea_req *req);
void nea__req_unhold(nea_req *req);
/* Aborts, naming `what` and the rule, unless the calling thread runs
 * req's loop. */
void nea__req_check_thread(const nea__req_env *env, const char *what);

/* Every allocation that may unwind calls this first: aborts, naming the
 * broken handler rule, unless req's own frame is innermost (`what` names the
 * allocating call). */
void nea__req_check_frame(const nea_req *req, const char *what);
/* Records `asked` as the failed request's size and unwinds to req's
 * innermost frame (checked by nea__req_check_frame beforehand). */
_Noreturn void nea__req_unwind(nea_req *req, size_t asked);

#endif /* NEA_REQ_H */
