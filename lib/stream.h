/*
 * stream.h - streamed responses and request bodies read in pieces (see
 * stream.c).
 */
#ifndef NEA_STREAM_H
#define NEA_STREAM_H

#include "req.h"

/* A streamed response, in its request's arena. */
typedef struct nea__stream {
    nea__framing framing;
    uint64_t left;      /* NEA__FRAME_LENGTH: announced bytes not yet written */
    uv_buf_t head;      /* the head, until it goes out with the first write */
    bool in_flight;     /* a piece is being written */
    nea_stream_fn more; /* called when the piece in flight is written */
    void *more_arg;
    uv_buf_t bufs[4];   /* head, size line, piece, CRLF (libuv copies them) */
    char size_line[20]; /* "<hex>\r\n" of the piece in flight */
} nea__stream;

/* A request body read in pieces, in its request's arena. */
typedef struct nea__reader {
    nea_body_fn fn;
    void *arg;
    bool paused; /* nea_body_pause: keep the last piece, deliver no more */
} nea__reader;

/* Between pieces of a Content-Length stream whose head is out: up to len
 * bytes of the file fd from off go to the socket straight from the kernel's
 * page cache, without a buffer. Returns the bytes sent (counted against
 * the announced length), or UV_EAGAIN when the caller should write a
 * buffered piece instead (the socket is full, the head is not out yet, or
 * the stream cannot take them), or another UV_E* error. */
int nea__stream_sendfile(nea_req *req, int fd, uint64_t off, size_t len);

/* The piece in flight was written (by the owner's send_piece): the
 * producer's more callback runs in a protected frame. */
void nea__stream_written(nea_req *req);

/* A piece of the body (data NULL and len 0: its end), delivered to the
 * handler's reader in a protected frame. */
void nea__stream_body_piece(nea_req *req, const char *data, size_t len);

/* True when the handler paused its body reader. */
bool nea__stream_body_paused(const nea_req *req);

#endif /* NEA_STREAM_H */
