/*
 * responses.h - the check both fuzz targets make of what a client received:
 * a sequence of HTTP/1.1 responses as libnea sends them (see responses.c).
 */
#ifndef NEA_FUZZ_RESPONSES_H
#define NEA_FUZZ_RESPONSES_H

#include <stdbool.h>
#include <stddef.h>

typedef struct fz_stream {
    const char *rx; /* what the client received */
    size_t len;
    bool cut_ok;         /* the last response may be cut short */
    bool strict;         /* also: every 503 has Retry-After, every response a length */
    unsigned char *memo; /* len + 1 bytes of scratch */
    bool no_head;        /* the client sent no HEAD: every body announced is sent */
} fz_stream;

/* One final response (status >= 200) of a valid sequence (fz_responses_each). */
typedef struct fz_response {
    int status;
    const char *head; /* status line to the blank line, inclusive */
    size_t head_len;
    const char *body; /* what arrived of it */
    size_t body_len;
    bool cut;    /* the sequence ends inside this response */
    bool closes; /* it says Connection: close */
} fz_response;

/* True when s->rx is a sequence of responses: each a status line
 * "HTTP/1.1 NNN ", a head, and a body framed by Content-Length (a HEAD
 * answer announces one and sends nothing), only 100 Continue below 200,
 * and nothing after a response that said Connection: close. */
bool fz_responses_valid(const fz_stream *s);

/* After fz_responses_valid(s) returned true (its memo is still in s):
 * calls fn for every final response, in order, along the reading that
 * validated (a body is taken as sent where both readings are valid), and
 * returns how many there were. */
size_t fz_responses_each(const fz_stream *s, void (*fn)(const fz_response *r, void *data),
                         void *data);

/* True when needle occurs in the len bytes at hay. */
bool fz_contains(const char *hay, size_t len, const char *needle);

#endif
