/*
 * stream.c - bodies of any size through a bounded part of the arena:
 * streamed responses (nea_stream_*) and request bodies read in pieces
 * (nea_body_*).
 *
 * A streamed response has at most one piece in flight. The piece is
 * referenced, never copied, so the arena memory a stream holds is the
 * producer's buffer plus this file's small state, whatever the body's
 * size; the producer learns the piece was written through its more
 * callback, which runs in a protected frame from the loop (libuv reports
 * writes from the loop, never from inside uv_write, so a producer that
 * writes again from more does not grow the stack). Framing: Content-Length
 * when the length is known, else chunked for HTTP/1.1 and the connection's
 * close for HTTP/1.0.
 *
 * A body read in pieces hands the handler views into the connection's read
 * buffer: nothing of the body is stored, so it may be far larger than the
 * arena. The connection decides when a piece arrives and when the body is
 * over; this file only frames the calls into handler code.
 *
 * Invariants: handler code is entered only through nea__req_call (the
 * out-of-memory unwind has a frame to land in); a cancelled or ended
 * request is never re-entered; every write is at most 4 buffers (libuv
 * keeps those inline, without allocating).
 */
#include "stream.h"

#include <stdio.h>
#include <string.h>

static const char crlf[] = "\r\n";
static const char last_chunk[] = "0\r\n\r\n";

/* A streamed response under way on a live request. */
static bool streaming(const nea_req *req)
{
    return req->phase == NEA__R_STREAMING;
}

int nea_stream_start(nea_req *req, int status, const char *content_type, uint64_t length)
{
    NEA__NEED(req, "request");
    nea__framing framing = NEA__FRAME_LENGTH;
    nea__stream *s;
    int n;

    if (length == NEA_LENGTH_UNKNOWN) {
        framing = req->http_minor == 0 ? NEA__FRAME_CLOSE : NEA__FRAME_CHUNKED;
    }
    n = nea__req_head(req, status, content_type, NULL, (size_t)length, false, framing);
    if (n < 0) {
        return n;
    }
    /* The head is only laid out, not sent: an exhausted arena still gets
     * its 500. */
    s = nea__arena_alloc(req->arena, sizeof(*s), NEA__ALIGN);
    if (s == NULL) {
        return nea__req_oom_500(req, sizeof(*s));
    }
    req->stream = s;
    memset(s, 0, sizeof(*s));
    s->framing = framing;
    s->left = length;
    s->head = req->wbufs[0];
    if (req->is_head || status == 204 || status == 304) {
        req->env->hooks->send(req, req->wbufs, 1); /* the head is the whole response */
        return 0;
    }
    req->phase = NEA__R_STREAMING;
    return 0;
}

/* Puts the head in front of the next write, once. */
static unsigned take_head(nea__stream *s)
{
    if (s->head.len == 0) {
        return 0;
    }
    s->bufs[0] = s->head;
    s->head.len = 0;
    return 1;
}

int nea_stream_write(nea_req *req, const void *data, size_t len, nea_stream_fn more, void *arg)
{
    NEA__NEED(req, "request");
    nea__stream *s = req->stream;
    unsigned n;
    int rc;

    if (s == NULL || !streaming(req) || s->in_flight) {
        return NEA_ESTATE;
    }
    if (len == 0 || more == NULL || (s->framing == NEA__FRAME_LENGTH && len > s->left)) {
        return UV_EINVAL;
    }
    n = take_head(s);
    if (s->framing == NEA__FRAME_CHUNKED) {
        int k = snprintf(s->size_line, sizeof(s->size_line), "%zx\r\n", len);
        s->bufs[n++] = nea__buf(s->size_line, (size_t)k);
        s->bufs[n++] = nea__buf(data, len);
        s->bufs[n++] = nea__buf(crlf, 2);
    } else {
        s->bufs[n++] = nea__buf(data, len);
        s->left -= s->framing == NEA__FRAME_LENGTH ? len : 0;
    }
    s->in_flight = true;
    s->more = more;
    s->more_arg = arg;
    rc = req->env->hooks->send_piece(req, s->bufs, n);
    return rc < 0 ? NEA_ESTATE : 0;
}

int nea_stream_end(nea_req *req)
{
    NEA__NEED(req, "request");
    nea__stream *s = req->stream;
    unsigned n;

    if (s == NULL || !streaming(req) || s->in_flight) {
        return NEA_ESTATE;
    }
    req->phase = NEA__R_ANSWERED;
    if (s->framing == NEA__FRAME_LENGTH && s->left > 0) {
        /* The client was promised more: only a close can tell it. */
        req->env->hooks->abort(req);
        return UV_EINVAL;
    }
    n = take_head(s);
    if (s->framing == NEA__FRAME_CHUNKED) {
        s->bufs[n++] = nea__buf(last_chunk, sizeof(last_chunk) - 1);
    }
    req->env->hooks->send(req, s->bufs, n);
    return 0;
}

int nea__stream_sendfile(nea_req *req, int fd, uint64_t off, size_t len)
{
    nea__stream *s = req->stream;
    int n;
    if (s == NULL || !streaming(req) || s->in_flight || s->head.len > 0 ||
        s->framing != NEA__FRAME_LENGTH || len == 0 || len > s->left) {
        return UV_EAGAIN;
    }
    n = req->env->hooks->send_file(req, fd, off, len);
    if (n > 0) {
        s->left -= (uint64_t)n;
    }
    return n;
}

static void call_more(nea_req *req, void *arg)
{
    nea__stream *s = arg;
    nea_stream_fn fn = s->more;
    s->more = NULL;
    if (fn != NULL) {
        fn(req, s->more_arg);
    }
}

void nea__stream_written(nea_req *req)
{
    nea__stream *s = req->stream;
    s->in_flight = false;
    if (nea__req_live(req)) {
        nea__req_call(req, call_more, s);
    }
}

/* --- bodies read in pieces -------------------------------------------------- */

int nea_body_read(nea_req *req, nea_body_fn fn, void *arg)
{
    NEA__NEED(req, "request");
    nea__reader *r;
    int rc;
    if (req->reader != NULL || req->phase != NEA__R_HANDLING || fn == NULL) {
        return NEA_ESTATE;
    }
    r = nea__arena_alloc(req->arena, sizeof(*r), NEA__ALIGN);
    if (r == NULL) {
        return NEA_ENOMEM;
    }
    r->fn = fn;
    r->arg = arg;
    r->paused = false;
    req->reader = r;
    rc = req->env->hooks->body_begin(req);
    if (rc != 0) {
        req->reader = NULL; /* not a route that reads its body in pieces */
        return rc;
    }
    req->kept = true; /* the body's end is the handler's next turn */
    return 0;
}

void nea_body_pause(nea_req *req)
{
    NEA__NEED(req, "request");
    if (req->reader != NULL) {
        req->reader->paused = true;
    }
}

void nea_body_resume(nea_req *req)
{
    NEA__NEED(req, "request");
    if (req->reader != NULL && req->reader->paused) {
        req->reader->paused = false;
        if (nea__req_live(req)) {
            req->env->hooks->body_resume(req);
        }
    }
}

bool nea__stream_body_paused(const nea_req *req)
{
    return req->reader != NULL && req->reader->paused;
}

typedef struct piece {
    const char *data;
    size_t len;
} piece;

static void call_reader(nea_req *req, void *arg)
{
    const piece *p = arg;
    req->reader->fn(req, p->data, p->len, req->reader->arg);
}

void nea__stream_body_piece(nea_req *req, const char *data, size_t len)
{
    piece p = {data, len};
    if (nea__req_live(req)) {
        nea__req_call(req, call_reader, &p);
    }
}
