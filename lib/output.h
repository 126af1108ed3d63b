/*
 * output.h - a connection's output side: the gathered batch, response
 * writes, streamed pieces, sendfile and 100 Continue, in plain text or
 * through a TLS state (see output.c).
 */
#ifndef NEA_OUTPUT_H
#define NEA_OUTPUT_H

#include "common.h"
#include "tls.h"

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
    /* The gathered batch finished writing; status < 0: it failed. With
     * TLS also when ciphertext the TLS state made on its own (handshake
     * messages, a close_notify) has gone out and nothing else is queued,
     * or when that failed. */
    void (*drained)(nea__output *o, int status);
} nea__output_hooks;

struct nea__output {
    uv_stream_t *stream;
    const nea__output_hooks *hooks;
    char *obuf;         /* NEA__OBUF bytes */
    size_t olen;        /* bytes gathered in obuf, not yet handed to the kernel */
    bool batch_writing; /* obuf's rest is being written by wbatch (TLS: queued) */
    bool writing;       /* wreq is queued (a response's rest or a piece; TLS: queued) */
    /* With TLS (tls set): the batch and the response are plaintext handed
     * to the TLS state in order, and wreq alone writes its ciphertext. The
     * flags fill what would be padding, the offsets share wbatch's place
     * (TLS never uses it): a connection buffer is no larger for them. */
    bool piece;         /* the response is a streamed piece (reported by the piece hook) */
    bool resp_first;    /* with both queued, the response goes before the batch */
    bool flushed;       /* the current one's last record is sealed */
    bool wbusy;         /* wreq is queued with ciphertext */
    bool close_pending; /* a close_notify goes out after everything queued */
    bool reporting;     /* a completion is being reported: new writes only queue */
    nea__tls_conn *tls;
    uv_write_t wreq; /* a response's rest, or a streamed piece; TLS: ciphertext */
    union {
        uv_write_t wbatch; /* the gathered batch's rest (and a cut 100 Continue) */
        struct {
            size_t boff;    /* of the batch, bytes handed over */
            size_t wlen;    /* ciphertext bytes of the write queued on wreq */
            uint8_t rfirst; /* rest[rfirst .. rfirst + rcount): the response's plaintext
                               not yet handed over */
            uint8_t rcount;
        };
    };
    uv_buf_t rest[4]; /* what wreq writes (libuv copies them; kept for clarity); with
                         TLS, the response's plaintext */
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
/* True when nothing is gathered or queued (with TLS: nor ciphertext
 * waiting in the TLS state). */
bool nea__out_idle(const nea__output *o);

/* With TLS: every call above hands plaintext to tls and sends the
 * ciphertext (uv_try_write, else one write request, continued from its
 * callback), one write request at a time and one buffer per write; a
 * response is reported written once all of it is in and its ciphertext is
 * out; nea__out_file always answers UV_EAGAIN (the file goes out in
 * buffered pieces). Set right after nea__out_start; NULL: plain text. */
void nea__out_tls(nea__output *o, nea__tls_conn *tls);
/* With TLS: sends what the TLS state made on its own (handshake messages,
 * alerts). Returns 0 or a UV_E* error (nothing is reported then). */
int nea__out_tls_kick(nea__output *o);
/* With TLS: a close_notify goes out after everything queued (the drained
 * hook reports when it is out, unless it went out at once: then
 * nea__out_idle is true on return). Returns 0 or a UV_E* error. */
int nea__out_tls_close(nea__output *o);

#endif /* NEA_OUTPUT_H */
