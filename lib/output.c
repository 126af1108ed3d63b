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
    memset(o, 0, sizeof(*o));
    o->stream = stream;
    o->obuf = obuf;
    o->hooks = hooks;
    o->wreq.data = o;
    o->wbatch.data = o;
}

bool nea__out_idle(const nea__output *o)
{
    return o->olen == 0 && !o->batch_writing && !o->writing &&
           uv_stream_get_write_queue_size(o->stream) == 0;
}

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
    int r = o->writing ? UV_EBUSY : nea__out_flush(o); /* earlier responses go first */
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

    if (!nea__out_idle(o) || uv_fileno((uv_handle_t *)o->stream, &sock) != 0) {
        return UV_EAGAIN; /* bytes already queued go first */
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
    r = try_write(o, &b, 1);
    if (r < 0 || (size_t)r == b.len) {
        return r < 0 ? r : 0;
    }
    /* Cut by the kernel: the rest goes out as the batch's rest. */
    o->olen = b.len - (size_t)r;
    memcpy(o->obuf, continue_line + r, o->olen);
    return batch_rest(o, 0);
}
