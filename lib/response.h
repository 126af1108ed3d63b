/*
 * response.h - serialising responses: reason phrases, the Date cache, the
 * pre-built error responses and handler responses (see response.c). No I/O.
 */
#ifndef NEA_RESPONSE_H
#define NEA_RESPONSE_H

#include "arena.h"

/* The pre-built responses, one row each: everything about them is
 * generated from this list (the enum, the status, the body, whether the
 * connection may stay open after it, the outcome it records).
 *   XX(name, status, keeps, outcome, body)
 * keeps: the connection's framing can still be trusted after it (an error
 * found in the head or the body closes the connection). outcome: how the
 * request ended when this answered it (NEA_OUTCOME_*, without the prefix). */
#define NEA__PREBUILT_MAP(XX)                                                                      \
    XX(400, 400, false, COMPLETED, "Bad Request\n")                                                \
    XX(404, 404, true, COMPLETED, "Not Found\n")                                                   \
    XX(405, 405, true, COMPLETED, "Method Not Allowed\n")                                          \
    XX(408, 408, false, TIMEOUT, "Request Timeout\n")                                              \
    XX(413, 413, false, COMPLETED, "Content Too Large\n")                                          \
    XX(414, 414, false, COMPLETED, "URI Too Long\n")                                               \
    XX(431, 431, false, COMPLETED, "Request Header Fields Too Large\n")                            \
    XX(500, 500, true, COMPLETED, "Internal Server Error: request exceeded its memory arena\n")    \
    XX(500_UNANSWERED, 500, true, COMPLETED,                                                       \
       "Internal Server Error: the handler returned without answering\n")                         \
    XX(501, 501, false, COMPLETED, "Not Implemented\n")                                            \
    XX(503, 503, true, SHED, "Service Unavailable: server at capacity, try again\n")               \
    XX(504, 504, true, TIMEOUT, "Gateway Timeout: the handler did not respond in time\n")          \
    XX(505, 505, false, COMPLETED, "HTTP Version Not Supported\n")                                 \
    XX(READY, 200, true, COMPLETED, "ready\n")

typedef enum {
#define NEA__PREBUILT_ENUM(name, status, keeps, outcome, body) NEA__PB_##name,
    NEA__PREBUILT_MAP(NEA__PREBUILT_ENUM)
#undef NEA__PREBUILT_ENUM
        NEA__PB_COUNT
} nea__prebuilt;

/* Room for a pre-built head: the longest status line (46), Content-Type
 * with NEA_ERROR_TYPE_MAX bytes (143), Content-Length up to
 * NEA_ERROR_BODY_MAX (23), Retry-After up to 86400 (20). */
#define NEA__STATIC_HEAD 256

typedef struct nea__static_resp {
    int status;
    char head[NEA__STATIC_HEAD]; /* status line, Content-Type, Content-Length, Retry-After */
    size_t head_len;
    const char *body; /* libnea's text, or the host's copy in the reservation */
    size_t body_len;
} nea__static_resp;

typedef struct nea__statics {
    nea__static_resp at[NEA__PB_COUNT];
} nea__statics;

/* The cached "Date: ...\r\n" line, refreshed when the second changes. */
typedef struct nea__date {
    uint64_t tick; /* loop time (ms) when the line was last checked */
    int64_t sec;
    char line[40];
    size_t len;
} nea__date;

/* Dynamic lines of a pre-built response: Allow (<= 96), Date (37),
 * Connection (<= 24), CRLF. */
#define NEA__HDRBUF 192

/* Checks cfg's error bodies (see nea_error_body): 0, or NEA_EINVAL_CONFIG
 * with a one-line reason naming the entry in errbuf (when not NULL). */
int nea__error_bodies_check(const nea_config *cfg, char *errbuf, size_t errlen);
/* Builds every pre-built response: libnea's own, or, for the statuses cfg's
 * error bodies (checked) name, the host's content type and a copy of its
 * body in store (plan.error_bodies_bytes bytes of the reservation). */
void nea__statics_build(nea__statics *st, const nea_config *cfg, char *store);
/* The pre-built answer for an error status found while reading a head
 * (400 for any status without one). */
nea__prebuilt nea__prebuilt_for_status(int status);
int nea__prebuilt_status(nea__prebuilt e);
/* Whether the connection may stay open after e, and the outcome it records. */
bool nea__prebuilt_keeps(nea__prebuilt e);
nea_outcome nea__prebuilt_outcome(nea__prebuilt e);
const char *nea__date_line(nea__date *d, uint64_t now_ms, size_t *len);
/* Writes sec (Unix time) as an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37
 * GMT", 29 bytes) into buf; returns its length. */
size_t nea__http_date(char *buf, size_t len, int64_t sec);
/* Reads an IMF-fixdate; 0, or -1 when s is not one. */
int nea__http_date_parse(const char *s, int64_t *sec);

/* Fills bufs[0..3) with a pre-built response; returns the count (2 for a
 * HEAD: no body). conn_line is "" or a complete "Connection: ...\r\n" line;
 * allow (405 only) likewise. hdrbuf (NEA__HDRBUF bytes) must live until the
 * write completes. */
unsigned nea__static_bufs(const nea__statics *st, nea__date *date, uint64_t now_ms, nea__prebuilt e,
                          const char *conn_line, const char *allow, size_t allow_len,
                          bool head_only, char *hdrbuf, uv_buf_t *bufs);

/* Response header lines added by a handler, in the request's arena. */
typedef struct nea__resp_hdr {
    struct nea__resp_hdr *next;
    const char *line; /* "Name: value\r\n" */
    size_t len;
} nea__resp_hdr;

typedef struct nea__resp_hdrs {
    nea__resp_hdr *first, **tail;
    size_t len; /* bytes of all lines */
} nea__resp_hdrs;

/* Copies "name: value\r\n" into the arena. Returns 0, NEA_ENOMEM, or
 * UV_EINVAL for an empty or non-token name, CR/LF/NUL in either, or a field
 * libnea manages (Content-Length, Date, Connection, Transfer-Encoding). */
int nea__resp_hdr_add(nea__resp_hdrs *h, nea__arena *a, const char *name, const char *value);

/* How a handler response's body is delimited. */
typedef enum {
    NEA__FRAME_LENGTH,  /* Content-Length: len */
    NEA__FRAME_CHUNKED, /* Transfer-Encoding: chunked (a streamed HTTP/1.1 body) */
    NEA__FRAME_CLOSE,   /* neither: the connection's close ends it (streamed HTTP/1.0) */
} nea__framing;

typedef struct nea__resp_spec {
    int status;
    const char *content_type; /* NULL: no Content-Type line */
    const nea__resp_hdrs *hdrs;
    const char *date_line, *conn_line;
    size_t date_len;
    const void *body;
    size_t len;
    bool copy;    /* copy the body into the arena (else reference it) */
    bool is_head; /* announce the length, send no body */
    nea__framing framing;
} nea__resp_spec;

/* Serialises a handler response into the arena: bufs[0] holds the head (and
 * the copied body), bufs[1] a referenced body (none when body is NULL: a
 * streamed body follows). Returns the buffer count (1
 * or 2), or 0 when the arena cannot hold it (*needed says how much). 204 and
 * 304 get neither a body nor a Content-Length. */
unsigned nea__resp_serialize(nea__arena *a, const nea__resp_spec *spec, uv_buf_t *bufs,
                             size_t *needed);

#endif /* NEA_RESPONSE_H */
