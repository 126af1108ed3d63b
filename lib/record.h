/*
 * record.h - the per-request record a connection keeps: what is counted
 * when a request ends (see record.c).
 */
#ifndef NEA_RECORD_H
#define NEA_RECORD_H

#include "log.h"
#include "metrics.h"
#include "req.h"

/* What every record of one server shares. */
typedef struct nea__record_env {
    uv_loop_t *loop;
    const nea_config *cfg;
    nea__metrics *metrics;           /* per-route records: every finished request is counted */
    nea__log_limit log_503, log_400; /* refusals are logged at most once a second */
} nea__record_env;

/* The record of the request in one connection slot. */
typedef struct nea__record {
    nea__sample sample;
    bool open;         /* a request is in the slot and not counted yet */
    bool in_dispatch;  /* the handler's first call is on the stack */
    bool handler_sync; /* it answered there: handler_ns is read at its return */
    unsigned seq;      /* bumped per request: a dispatch knows its own */
    /* In the read buffer, until the request has an arena (named in the
     * refusal log even when the head is bad). */
    const char *method, *path;
    size_t method_len, path_len;
    /* uv_hrtime() of the head's completion: read lazily, by the first event
     * that needs a time (a wait for an arena, a body, a pre-built answer,
     * or the handler's start), so the common path reads the clock only
     * twice: at the handler's start and at the request's end, which is
     * also the handler's end when it answers at once (t_end). 0: not read. */
    uint64_t t_head;
    uint64_t t_handler; /* uv_hrtime() when the handler started */
    uint64_t t_end;     /* uv_hrtime() of the last finished record (0: none since dispatch) */
} nea__record;

/* How a request ended, as its connection knows it. */
typedef struct nea__record_end {
    const nea_req *req; /* NULL: it never had an arena */
    uint64_t body_in;   /* body bytes received (buffered or handed over in pieces) */
    nea_outcome fallback;
    /* The client's address, asked for only when a line is logged or the
     * completion hook runs. */
    const struct sockaddr *(*peer)(void *data);
    void *peer_data;
} nea__record_end;

/* A request begins in the slot (a complete head of head_bytes, or an
 * error answered before one was). */
void nea__record_begin(nea__record *r, size_t head_bytes);
/* Reads the head's time from the clock unless it was read already. */
void nea__record_stamp(nea__record *r);
/* Counts bytes going out, and the handler's time until its first answer
 * (a streamed response: its first piece). */
void nea__record_out(nea__record *r, const uv_buf_t *bufs, unsigned n);
/* The handler is about to run: returns the clock read that starts it. */
uint64_t nea__record_handler_start(nea__record *r);
/* The handler's first call returned (t0 from nea__record_handler_start,
 * seq the record's seq then): finishes its time unless the slot moved on
 * to another request meanwhile. Returns the time it returned. */
uint64_t nea__record_handler_end(nea__record *r, unsigned seq, uint64_t t0);
/* The request ended: counts it once in the metrics, tells the completion
 * hook and logs a refusal (rate-limited). end->fallback is how it ended
 * unless a timeout, a shed or an out-of-memory answer already said
 * otherwise. Does nothing when no request is open. */
void nea__record_finish(nea__record *r, nea__record_env *env, const nea__record_end *end);

#endif /* NEA_RECORD_H */
