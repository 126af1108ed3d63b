/*
 * output.c - a connection's output side: the gathered batch, response
 * writes, streamed pieces, sendfile and 100 Continue.
 *
 * Responses to pipelined requests found in one read are gathered into the
 * connection's output buffer and leave with one write; a response that
 * does not join the batch goes out behind it in the same writev when both
 * fit libuv's four inline buffers. What the kernel does not take at once
 * is queued with uv_write on one of two write requests the connection
 * owns: wreq for a response's rest or a streamed piece, wbatch for the
 * batch's rest. Each is queued at most once at a time (writing,
 * batch_writing), and nothing is gathered while the batch's rest is being
 * written: a write request is never handed to libuv while it is queued,
 * which would corrupt libuv's queue.
 *
 * 100 Continue is sent only when nothing else is pending on the
 * connection; when the kernel cuts it, its rest is queued as the batch's
 * rest, so it too goes through wbatch. Under a client that does not read
 * (its window full) the interim answer is simply left out, which RFC 9110
 * allows.
 *
 * With TLS every byte goes through the connection's TLS state instead: the
 * batch and the response (or piece) are plaintext, handed over in the
 * order they were queued (at most one of each, as in plain text); each one
 * ends with its record sealed, and it is complete once that record's
 * ciphertext is out. Ciphertext leaves with uv_try_write, else on wreq, the
 * only write request then, from the TLS state's own output buffer; its
 * callback hands over more and sends on. The TLS state holds one record
 * (2 KiB of plaintext) at a time, so a long response goes out record by
 * record without being copied anywhere else. A piece's last record always
 * goes through wreq, so that its report comes from the loop. A completion
 * reported from the loop while another write is still queued keeps that
 * one's flag set, so the connection cannot give its buffer (and this
 * struct) back under the report; writes started from inside a report are
 * only queued, and sent once it returns. sendfile cannot encrypt: over TLS
 * nea__out_file answers UV_EAGAIN and files go out in buffered pieces.
 *
 * Invariants: every write is at most four buffers (libuv keeps those
 * inline, without allocating); completions are reported through
 * nea__output_hooks from the loop, never from inside the call that
 * started the write; nothing here decides what the connection does next.
 */
#include "output.h"

#include <errno.h>
#include <string.h>
#include <sys/sendfile.h>

static const char continue_line[] = "HTTP/1.1 100 Continue\r\n\r\n";

void nea__out_start(nea__output *o, uv_stream_t *stream, char *obuf,
                    const nea__output_hooks *hooks)
{
    /* The state and flags; the write requests are filled by uv_write (and
     * wbatch's TLS offsets by nea__out_tls), rest by each response. This
     * runs once per request of a keep-alive connection. */
    memset(o, 0, offsetof(nea__output, wreq));
    o->stream = stream;
    o->obuf = obuf;
    o->hooks = hooks;
    o->wreq.data = o;
    o->wbatch.data = o;
}

bool nea__out_idle(const nea__output *o)
{
    if (o->tls != NULL &&
        (o->wbusy || o->close_pending || (nea__tls_status(o->tls) & NEA__TLS_SEND) != 0)) {
        return false;
    }
    return o->olen == 0 && !o->batch_writing && !o->writing &&
           uv_stream_get_write_queue_size(o->stream) == 0;
}

static int tls_flush(nea__output *o);
static int tls_send(nea__output *o, uv_buf_t *bufs, unsigned n, bool piece);

static void on_batch_written(uv_write_t *w, int status)
{
    nea__output *o = w->data;
    o->batch_writing = false;
    o->olen = 0;
    o->hooks->drained(o, status);
}

static void on_sent(uv_write_t *w, int status)
{
    nea__output *o = w->data;
    o->writing = false;
    o->hooks->sent(o, status);
}

static void on_piece(uv_write_t *w, int status)
{
    nea__output *o = w->data;
    o->writing = false;
    o->hooks->piece(o, status);
}

/* The kernel took what it takes at once; 0 when it is full (EAGAIN). */
static int try_write(nea__output *o, const uv_buf_t *bufs, unsigned n)
{
    int r = uv_try_write(o->stream, bufs, n);
    return r == UV_EAGAIN || r == UV_ENOSYS ? 0 : r;
}

/* obuf's first done bytes are in the kernel: wbatch takes the rest, and
 * obuf stays untouched (nothing is gathered) until that write completes. */
static int batch_rest(nea__output *o, size_t done)
{
    uv_buf_t b;
    int r;

    if (done == o->olen) {
        o->olen = 0;
        return 0;
    }
    b = nea__buf(o->obuf + done, o->olen - done);
    r = uv_write(&o->wbatch, o->stream, &b, 1, on_batch_written);
    if (r < 0) {
        o->olen = 0;
        return r;
    }
    o->batch_writing = true;
    return 0;
}

int nea__out_flush(nea__output *o)
{
    uv_buf_t b = nea__buf(o->obuf, o->olen);
    int r;

    if (o->olen == 0 || o->batch_writing) {
        return 0;
    }
    if (o->tls != NULL) {
        return tls_flush(o);
    }
    r = try_write(o, &b, 1);
    if (r < 0) {
        o->olen = 0;
        return r;
    }
    return batch_rest(o, (size_t)r);
}

bool nea__out_gather(nea__output *o, const uv_buf_t *bufs, unsigned n)
{
    size_t total = 0;
    if (o->batch_writing) {
        return false;
    }
    for (unsigned i = 0; i < n; i++) {
        total += bufs[i].len;
    }
    if (total > NEA__OBUF - o->olen) {
        return false;
    }
    for (unsigned i = 0; i < n; i++) {
        memcpy(o->obuf + o->olen, bufs[i].base, bufs[i].len);
        o->olen += bufs[i].len;
    }
    return true;
}

/* Writes what the kernel takes of bufs now, after the batch (earlier
 * responses go first). The batch and bufs go out in one writev when they
 * fit libuv's four inline buffers: a pipelined batch costs one send, not
 * two. Returns the bytes of bufs taken (0: none, they wait behind what is
 * queued) or an error. */
static int64_t write_now(nea__output *o, const uv_buf_t *bufs, unsigned n)
{
    uv_buf_t all[4];
    size_t olen = o->olen;
    int r;

    if (olen == 0 || o->batch_writing || n >= 4) {
        r = nea__out_flush(o);
        if (r == 0 && !o->batch_writing) {
            r = try_write(o, bufs, n);
        }
        return r;
    }
    all[0] = nea__buf(o->obuf, olen);
    memcpy(all + 1, bufs, n * sizeof(*bufs));
    r = try_write(o, all, n + 1);
    if (r < 0) {
        o->olen = 0;
        return r;
    }
    if ((size_t)r < olen) {
        r = batch_rest(o, (size_t)r); /* bufs wait behind the batch's rest */
        return r < 0 ? r : 0;
    }
    o->olen = 0;
    return (int64_t)r - (int64_t)olen;
}

int nea__out_send(nea__output *o, uv_buf_t *bufs, unsigned n)
{
    int64_t took;
    unsigned k = 0;
    int r;

    if (o->writing) {
        return UV_EBUSY; /* one response or piece at a time */
    }
    if (o->tls != NULL) {
        return tls_send(o, bufs, n, false);
    }
    took = write_now(o, bufs, n);
    if (took < 0) {
        return (int)took;
    }
    /* Skip what the kernel took; wreq gets the rest (at most 3 buffers). */
    for (size_t done = (size_t)took; k < n && done >= bufs[k].len; k++) {
        done -= bufs[k].len;
        took = (int64_t)done;
    }
    if (k == n) {
        return 1;
    }
    for (unsigned i = k; i < n; i++) {
        o->rest[i - k] = bufs[i];
    }
    o->rest[0].base += took;
    o->rest[0].len -= (size_t)took;
    r = uv_write(&o->wreq, o->stream, o->rest, n - k, on_sent);
    if (r < 0) {
        return r;
    }
    o->writing = true;
    return 0;
}

int nea__out_piece(nea__output *o, uv_buf_t *bufs, unsigned n)
{
    int r;
    if (o->tls != NULL) {
        return o->writing ? UV_EBUSY : tls_send(o, bufs, n, true);
    }
    r = o->writing ? UV_EBUSY : nea__out_flush(o); /* earlier responses go first */
    if (r == 0) {
        r = uv_write(&o->wreq, o->stream, bufs, n, on_piece);
    }
    if (r == 0) {
        o->writing = true;
    }
    return r;
}

int64_t nea__out_file(nea__output *o, int fd, uint64_t off, size_t len)
{
    off_t at = (off_t)off;
    uv_os_fd_t sock;
    ssize_t n;

    if (o->tls != NULL || !nea__out_idle(o) || uv_fileno((uv_handle_t *)o->stream, &sock) != 0) {
        return UV_EAGAIN; /* bytes already queued go first; TLS cannot use sendfile */
    }
    do {
        n = sendfile(sock, fd, &at, len);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return errno == EAGAIN || errno == EWOULDBLOCK ? UV_EAGAIN : -errno;
    }
    return (int64_t)n;
}

int nea__out_continue(nea__output *o)
{
    uv_buf_t b = nea__buf(continue_line, sizeof(continue_line) - 1);
    int r;

    if (!nea__out_idle(o)) {
        return 0; /* something is pending: the interim answer is left out */
    }
    if (o->tls != NULL) {
        memcpy(o->obuf, continue_line, b.len); /* the batch is empty: idle */
        o->olen = b.len;
        return tls_flush(o);
    }
    r = try_write(o, &b, 1);
    if (r < 0 || (size_t)r == b.len) {
        return r < 0 ? r : 0;
    }
    /* Cut by the kernel: the rest goes out as the batch's rest. */
    o->olen = b.len - (size_t)r;
    memcpy(o->obuf, continue_line + r, o->olen);
    return batch_rest(o, 0);
}

/* --- TLS ------------------------------------------------------------------------- */

/* What one run of tls_pump ended with (besides a UV_E* error). */
enum { PUMP_IDLE = 1, PUMP_BUSY, PUMP_BATCH, PUMP_RESP };

void nea__out_tls(nea__output *o, nea__tls_conn *tls)
{
    o->tls = tls;
    memset(&o->wbatch, 0, sizeof(o->wbatch)); /* the TLS offsets live there */
}

/* The batch is the one being handed over now (else the response is). */
static bool batch_current(const nea__output *o)
{
    return o->batch_writing && !(o->writing && o->resp_first);
}

static void on_tls_written(uv_write_t *w, int status);

/* Sends the sealed record in the TLS state: what the kernel takes now,
 * the rest on wreq. A piece's last record skips the try (defer), so its
 * completion is reported from wreq's callback. */
static int tls_send_record(nea__output *o, const unsigned char *rec, size_t len, bool defer)
{
    uv_buf_t b = nea__buf(rec, len);
    int r = defer ? 0 : try_write(o, &b, 1);
    if (r < 0) {
        return r;
    }
    if (r > 0) {
        nea__tls_send_ack(o->tls, (size_t)r);
        if ((size_t)r == len) {
            return 0;
        }
        rec = nea__tls_send_buf(o->tls, &len);
        b = nea__buf(rec, len);
    }
    r = uv_write(&o->wreq, o->stream, &b, 1, on_tls_written);
    if (r < 0) {
        return r;
    }
    o->wbusy = true;
    o->wlen = len;
    return PUMP_BUSY;
}

/* Moves plaintext of what is queued into the TLS state and ciphertext to
 * the socket, until a write is queued on wreq (PUMP_BUSY), nothing is left
 * (PUMP_IDLE), the batch or the response is complete (PUMP_BATCH,
 * PUMP_RESP: the caller clears its flag), or an error. from_loop: run
 * from wreq's callback, where completions may be reported. */
static int tls_pump(nea__output *o, bool from_loop)
{
    for (;;) {
        const unsigned char *rec;
        size_t len;
        bool batch;
        int r;

        if (o->wbusy) {
            return PUMP_BUSY;
        }
        batch = batch_current(o);
        rec = nea__tls_send_buf(o->tls, &len);
        if (rec != NULL) {
            bool defer = !from_loop && !batch && o->writing && o->piece && o->rcount == 0;
            r = tls_send_record(o, rec, len, defer);
            if (r != 0) {
                return r;
            }
            continue;
        }
        if (!o->batch_writing && !o->writing) {
            if (o->close_pending) {
                o->close_pending = false;
                nea__tls_close(o->tls);
                continue;
            }
            return PUMP_IDLE;
        }
        if (batch ? o->boff < o->olen : o->rcount > 0) {
            uv_buf_t *b = &o->rest[o->rfirst];
            const char *p = batch ? o->obuf + o->boff : b->base;
            size_t n = batch ? o->olen - o->boff : b->len;
            size_t took = n > 0 ? nea__tls_write(o->tls, p, n) : 0;
            if (took == 0 && n > 0) {
                return UV_EPROTO; /* the TLS state ended: nothing more can be sent */
            }
            if (batch) {
                o->boff += took;
            } else if ((b->len -= took) == 0) {
                o->rfirst++;
                o->rcount--;
            } else {
                b->base += took;
            }
            continue;
        }
        /* All of it is handed over. A batch followed by a response in the
         * same call shares the response's record: nothing reports the
         * batch alone then. */
        if (!o->flushed && !(batch && o->writing && !from_loop)) {
            nea__tls_flush(o->tls);
            o->flushed = true;
            continue;
        }
        o->flushed = false;
        return batch ? PUMP_BATCH : PUMP_RESP;
    }
}

static void tls_batch_done(nea__output *o)
{
    o->batch_writing = false;
    o->olen = o->boff = 0;
}

/* What an error leaves: nothing queued. */
static void tls_drop(nea__output *o)
{
    tls_batch_done(o);
    o->writing = o->flushed = o->close_pending = false;
    o->rcount = 0;
}

/* Runs the pump from a call of this file's API: what completes now is not
 * reported (the call's own return says it). While a write is queued, or a
 * completion is being reported, it only queues: the loop goes on. */
static int tls_run_now(nea__output *o)
{
    if (o->wbusy || o->reporting) {
        return 0;
    }
    for (;;) {
        int r = tls_pump(o, false);
        if (r == PUMP_BATCH) {
            tls_batch_done(o);
        } else if (r == PUMP_RESP) {
            o->writing = false;
        } else if (r < 0) {
            tls_drop(o);
            return r;
        } else {
            return 0;
        }
    }
}

static void report(nea__output *o, int kind, int status)
{
    if (kind == PUMP_BATCH) {
        o->hooks->drained(o, status);
    } else if (o->piece) {
        o->hooks->piece(o, status);
    } else {
        o->hooks->sent(o, status);
    }
}

/* Reports a failure to what is queued, first to last; the one still queued
 * keeps its flag during the first report (o stays valid). */
static void tls_fail(nea__output *o, int status)
{
    bool both = o->batch_writing && o->writing;
    int first = batch_current(o) ? PUMP_BATCH : PUMP_RESP;

    o->close_pending = o->flushed = false;
    o->rcount = 0;
    o->olen = o->boff = 0;
    if (!o->batch_writing && !o->writing) {
        o->hooks->drained(o, status);
        return;
    }
    if (first == PUMP_BATCH) {
        o->batch_writing = false;
    } else {
        o->writing = false;
    }
    if (!both) {
        report(o, first, status);
        return;
    }
    o->reporting = true;
    report(o, first, status);
    o->reporting = false;
    o->batch_writing = o->writing = false;
    report(o, first == PUMP_BATCH ? PUMP_RESP : PUMP_BATCH, status);
}

/* The pump from wreq's callback: each completion is reported as it comes,
 * the last one as the last touch of o (the connection may give its buffer
 * back from inside it). */
static void tls_run_loop(nea__output *o)
{
    for (;;) {
        int r = tls_pump(o, true);
        if (r == PUMP_BUSY) {
            return;
        }
        if (r < 0) {
            tls_fail(o, r);
            return;
        }
        if (r == PUMP_IDLE) {
            o->hooks->drained(o, 0); /* what the TLS state made on its own is out */
            return;
        }
        if (r == PUMP_BATCH) {
            tls_batch_done(o);
        } else {
            o->writing = false;
        }
        if (!o->batch_writing && !o->writing && !o->close_pending) {
            report(o, r, 0);
            return;
        }
        o->reporting = true;
        report(o, r, 0);
        o->reporting = false;
        if (uv_is_closing((uv_handle_t *)o->stream)) {
            return; /* closed from the report: the close ends what is left */
        }
    }
}

static void on_tls_written(uv_write_t *w, int status)
{
    nea__output *o = w->data;
    o->wbusy = false;
    if (status < 0) {
        tls_fail(o, status);
        return;
    }
    nea__tls_send_ack(o->tls, o->wlen);
    tls_run_loop(o);
}

static int tls_flush(nea__output *o)
{
    o->batch_writing = true;
    o->boff = 0;
    o->resp_first = o->writing; /* behind a response already queued */
    return tls_run_now(o);
}

/* A response (or piece) behind the batch, if any. */
static int tls_send(nea__output *o, uv_buf_t *bufs, unsigned n, bool piece)
{
    int r;
    if (n > 4) {
        return UV_EINVAL;
    }
    if (o->olen > 0 && !o->batch_writing) {
        o->batch_writing = true;
        o->boff = 0;
    }
    memcpy(o->rest, bufs, n * sizeof(*bufs));
    o->rfirst = 0;
    o->rcount = (uint8_t)n;
    o->piece = piece;
    o->resp_first = false;
    o->writing = true;
    r = tls_run_now(o);
    if (r < 0) {
        return r;
    }
    return piece || o->writing ? 0 : 1;
}

int nea__out_tls_kick(nea__output *o)
{
    return tls_run_now(o);
}

int nea__out_tls_close(nea__output *o)
{
    o->close_pending = true;
    return tls_run_now(o);
}
