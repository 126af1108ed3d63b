/*
 * output.h - a connection's output side: the gathered batch, response
 * writes, streamed pieces, sendfile and 100 Continue (see output.c).
 */
#ifndef NEA_OUTPUT_H
#define NEA_OUTPUT_H

#include "common.h"

#include <uv.h>

/* Per-connection output buffer: small responses to pipelined requests are
 * gathered here and sent with one write. */
#define NEA__OBUF 2048

typedef struct nea__output nea__output;

/* How the output side reports to its connection (set once per server). A
 * report is always made from the loop, never from inside the call that
 * started the write. */
typedef struct nea__output_hooks {
    /* A response handed over with nea__out_send was written (status 0) or
     * failed (status < 0). */
    void (*sent)(nea__output *o, int status);
    /* A streamed piece handed over with nea__out_piece was written or
     * failed. */
    void (*piece)(nea__output *o, int status);
    /* The gathered batch finished writing; status < 0: it failed. */
    void (*drained)(nea__output *o, int status);
} nea__output_hooks;

struct nea__output {
    uv_stream_t *stream;
    const nea__output_hooks *hooks;
    char *obuf;           /* NEA__OBUF bytes */
    size_t olen;          /* bytes gathered in obuf, not yet handed to the kernel */
    bool batch_writing;   /* obuf's rest is being written by wbatch */
    bool writing;         /* wreq is queued (a response's rest or a piece) */
    uv_write_t wreq;      /* a response's rest, or a streamed piece */
    uv_write_t wbatch;    /* the gathered batch's rest (and a cut 100 Continue) */
    uv_buf_t rest[4];     /* what wreq writes (libuv copies them; kept for clarity) */
};

/* Starts the output of a new connection on stream, with obuf as its batch
 * buffer. Nothing of a previous connection survives. */
void nea__out_start(nea__output *o, uv_stream_t *stream, char *obuf,
                    const nea__output_hooks *hooks);
/* Copies bufs (n <= 4) into the batch when they fit and no batch write is
 * under way; returns whether it did. The batch goes out with the next
 * nea__out_flush or nea__out_send. */
bool nea__out_gather(nea__output *o, const uv_buf_t *bufs, unsigned n);
/* Hands the batch to the kernel (one write); the rest, if any, is queued. */
int nea__out_flush(nea__output *o);
/* Writes a response (n <= 3 buffers; they must stay valid until it is
 * written), after the batch. Returns 1 when the kernel took all of it now
 * (no report follows), 0 when the rest was queued (the sent hook reports),
 * or a UV_E* error (nothing queued, no report). */
int nea__out_send(nea__output *o, uv_buf_t *bufs, unsigned n);
/* Writes one streamed piece (n <= 4 buffers), after the batch; the piece
 * hook always reports, from the loop. 0 or a UV_E* error (no report). */
int nea__out_piece(nea__output *o, uv_buf_t *bufs, unsigned n);
/* With nothing queued, lets the kernel send up to len bytes of file fd
 * from off: the bytes sent, UV_EAGAIN (socket full, or bytes queued that
 * must go first) or another UV_E* error. */
int64_t nea__out_file(nea__output *o, int fd, uint64_t off, size_t len);
/* Tells a client that waits for it to send its body: "100 Continue",
 * only when nothing else is pending on the connection (RFC 9110 allows
 * leaving it out; a client that waits sends its body after a short time
 * anyway). Returns 0 or a UV_E* error. */
int nea__out_continue(nea__output *o);
/* True when nothing is gathered or queued. */
bool nea__out_idle(const nea__output *o);

#endif /* NEA_OUTPUT_H */
