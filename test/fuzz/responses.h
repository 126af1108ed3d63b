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
} fz_stream;

/* True when s->rx is a sequence of responses: each a status line
 * "HTTP/1.1 NNN ", a head, and a body framed by Content-Length (a HEAD
 * answer announces one and sends nothing), only 100 Continue below 200,
 * and nothing after a response that said Connection: close. */
bool fz_responses_valid(const fz_stream *s);

#endif
