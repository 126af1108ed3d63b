/*
 * strict.h - a strict HTTP/1.1 response reader for end-to-end tests of
 * streamed responses: llhttp in response mode checks the framing
 * (Content-Length, chunked, or close-delimited) of one response read from a
 * client socket, while the server's loop runs; the body is checked against
 * the pattern "byte i is i % 256" without being stored.
 */
#ifndef NEA_TEST_STRICT_H
#define NEA_TEST_STRICT_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct t_strict {
    llhttp_t parser;
    llhttp_settings_t settings;
    bool head_only;  /* the request was HEAD: no body follows the head */
    int status;      /* once the head is complete */
    char head[2048]; /* the head's raw bytes (truncated), NUL-terminated */
    size_t head_len;
    bool head_done;
    bool done; /* the message completed with valid framing */
    bool eof;  /* the server closed the connection */
    bool bad;  /* llhttp refused the bytes (the reason is in error) */
    const char *error;
    uint64_t body_len;   /* body bytes received */
    bool pattern_ok;     /* every body byte i was i % 256 */
    uint32_t fnv;        /* FNV-1a of the body, for bodies without the pattern */
    uint64_t stop_after; /* stop reading once this many body bytes came (0: never) */
} t_strict;

/* Reads one response from fd (non-blocking) until it completes, the server
 * closes, llhttp refuses it, stop_after body bytes came, or timeout_ms pass;
 * runs loop meanwhile. Returns r->status when r->done, else -1. */
int t_strict_read(uv_loop_t *loop, int fd, t_strict *r, bool head_only, uint64_t stop_after,
                  unsigned timeout_ms);

/* Sends request on fd, then t_strict_read with the usual deadline. */
int t_strict_fetch(uv_loop_t *loop, int fd, const char *request, t_strict *r, bool head_only);

#endif
