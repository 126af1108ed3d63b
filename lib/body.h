/*
 * body.h - decoding a request body's framing (Content-Length or chunked)
 * and its pace (see body.c).
 */
#ifndef NEA_BODY_H
#define NEA_BODY_H

#include "chunked.h"
#include "common.h"

typedef enum {
    NEA__BODY_MORE,      /* all of the input was consumed; feed more */
    NEA__BODY_DATA,      /* *data, *len: body bytes inside the input */
    NEA__BODY_DONE,      /* the body ended; bytes after *used belong to the next request */
    NEA__BODY_BAD,       /* malformed chunked framing: 400 */
    NEA__BODY_TOO_LARGE, /* more than the limit was announced or sent: 413 */
} nea__body_step;

/* A request body being received on a connection. */
typedef struct nea__body_rx {
    nea__chunked chunked; /* framing state of a chunked body */
    bool is_chunked;
    uint64_t left;        /* Content-Length bytes not yet decoded */
    uint64_t limit;       /* most body bytes accepted */
    uint64_t got;         /* body bytes decoded so far */
    uint64_t received;    /* bytes read from the socket since the body started */
    uint64_t start_ms;    /* loop time the body started */
    uint64_t last_ms;     /* loop time of the last read */
    uint64_t deadline_ms; /* loop time by which it must be complete (UINT64_MAX: none) */
} nea__body_rx;

/* Starts a body: length bytes (or chunked, whose size lines and trailers
 * may each take at most meta_limit bytes), at most limit bytes of it
 * accepted, complete within deadline_ms of now_ms (0: no deadline), with
 * buffered bytes already arrived behind the head. */
void nea__body_rx_start(nea__body_rx *b, bool chunked, uint64_t length, uint64_t limit,
                        size_t meta_limit, uint64_t now_ms, unsigned deadline_ms,
                        size_t buffered);
/* Bytes arrived from the socket at now_ms (the pace is measured on them). */
void nea__body_rx_arrived(nea__body_rx *b, size_t n, uint64_t now_ms);
/* Decodes in[0..len): *used bytes consumed; on DATA, the body bytes are
 * (*data, *data_len) inside in. Call again with the rest after DATA. */
nea__body_step nea__body_rx_feed(nea__body_rx *b, const char *in, size_t len, size_t *used,
                                 const char **data, size_t *data_len);
/* The loop time at which the body stops being acceptable: it may idle
 * body_timeout_ms between reads, must be complete by its deadline, and
 * once the grace period is over must average body_min_rate bytes/s. */
uint64_t nea__body_rx_due(const nea__body_rx *b, const nea_config *cfg);

#endif /* NEA_BODY_H */
