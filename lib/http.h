/*
 * http.h - the request head guard, the llhttp glue and the request's parsed
 * views (see http.c).
 */
#ifndef NEA_HTTP_H
#define NEA_HTTP_H

#include "arena.h"

#include <llhttp.h>

/* A request body being buffered in the request's arena. */
typedef struct nea__body {
    nea__arena *arena;
    char *data; /* NUL-terminated; the arena's most recent allocation while it grows */
    size_t len;
    size_t max; /* the buffered-body limit in force */
} nea__body;

/* Parse state of the request head being received on a connection. Offsets
 * are into the connection's read buffer. */
typedef struct nea__head {
    size_t start;      /* first byte of the request line (leading CRLFs skipped) */
    size_t scan;       /* raw scanner position */
    size_t line_start; /* start of the line being scanned */
    size_t end;        /* one past the blank line ending the head */
    unsigned lines;    /* header lines seen (request line not counted) */
    bool line_done;    /* the request line is complete */
    bool in_name;      /* scanner is inside a field name */
    /* Set by nea__head_parse once the request line is well-formed: the
     * method's and the target's lengths (each followed by one space). */
    size_t method_len, target_len;
    /* Filled by llhttp callbacks while the complete head is parsed: */
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
    const char *url;
    size_t url_len;
    uint64_t content_length;
    bool has_cl, has_te, chunked, expect_continue, headers_done;
    bool conn_close, conn_keep_alive; /* tokens of the Connection list */
    unsigned hosts;
    int status; /* error status decided by a callback, 0 = fine */
} nea__head;

typedef enum {
    NEA__HEAD_MORE, /* need more bytes */
    NEA__HEAD_DONE, /* head complete at head->end */
    NEA__HEAD_BAD,  /* malformed: 400 */
} nea__scan_result;

/* Starts a new head: clears h and initialises parser to report into it. */
void nea__head_begin(nea__head *h, llhttp_t *parser);
nea__scan_result nea__head_scan(nea__head *h, const char *buf, size_t len);
/* Checks the request line and runs llhttp over the complete head; returns 0
 * or the status to answer. */
int nea__head_parse(nea__head *h, llhttp_t *parser, const char *buf);
/* Whether the connection may stay open after this request (HTTP/1.1 unless
 * Connection lists close; HTTP/1.0 only when it lists keep-alive). */
bool nea__head_keep_alive(const nea__head *h, const llhttp_t *parser);
/* Where the path starts in a request target: past "http://authority" for
 * absolute-form (RFC 9112 3.2.2), else 0. */
size_t nea__target_path_abs(const char *url, size_t len);
static inline size_t nea__target_path(const char *url, size_t len)
{
    /* origin-form, the common case, without a call: no scheme to look for */
    return len > 0 && url[0] == '/' ? 0 : nea__target_path_abs(url, len);
}

/* Starts a body in a (len bytes known, or 0 for chunked, which grows with
 * nea__body_append). Returns 0, or 413 when the arena cannot hold it. */
int nea__body_start(nea__body *b, nea__arena *a, size_t len, size_t max);
/* Appends n bytes (chunked bodies, growing in place). Returns 0 or 413. */
int nea__body_append(nea__body *b, const char *p, size_t n);

typedef struct nea__hdr {
    const char *name;
    const char *value;
} nea__hdr;

/* The views handlers read: NUL-terminated strings in the connection's read
 * buffer (the head, indexed in place), valid while the request is live. */
typedef struct nea__msg {
    const char *method, *path, *query, *tail;
    nea__hdr *hdrs;
    size_t nhdrs;
} nea__msg;

/* Indexes the complete head h, which nea__head_parse accepted (the
 * lengths it measured are relied on), in place: its separators in buf
 * become NULs and out's views point into buf, which must stay put while
 * they are read; the index of its fields goes into the arena. prefix_len
 * is the matched prefix route's length (0 for exact routes). Returns 0,
 * or 431 when the arena cannot hold the index. */
int nea__head_index(nea__arena *a, const nea__head *h, char *buf, bool prefix, size_t prefix_len,
                    nea__msg *out);

#endif /* NEA_HTTP_H */
