/*
 * wsclient.h - a strict WebSocket client for end-to-end tests, over a real
 * socket on 127.0.0.1, driven from the thread that runs the server's loop
 * (every wait runs the loop; no threads, no sleeps).
 *
 * It completes the opening handshake (checking the 101 and its
 * Sec-WebSocket-Accept against RFC 6455's formula), sends masked frames
 * (any opcode, fragment or length, written whole, one byte at a time or cut
 * where the test says) and reads the server's frames with the protocol
 * core's parser in client mode: a frame that breaks RFC 6455 (masked,
 * reserved bits, bad lengths, invalid UTF-8, a bad close code) fails the
 * test. Messages are gathered into a buffer of the client's own (static
 * storage: no heap, so test_alloc can count the server's allocations).
 */
#ifndef NEA_TEST_WSCLIENT_H
#define NEA_TEST_WSCLIENT_H

#include "ws.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define T_WS_MSG_MAX (4u << 20) /* the largest message a client gathers */

typedef enum {
    T_WS_NONE,    /* nothing within the deadline */
    T_WS_MESSAGE, /* a whole text or binary message: msg, msg_len, opcode */
    T_WS_PING,    /* ctl, ctl_len */
    T_WS_PONG,    /* ctl, ctl_len */
    T_WS_CLOSE,   /* code (1005: none), ctl (the reason), ctl_len */
    T_WS_EOF,     /* the server closed the TCP connection (or reset it) */
} t_ws_kind;

typedef struct t_ws {
    uv_loop_t *loop;
    int fd;
    nea__ws_parser parser;
    uint8_t rx[65536];
    size_t rx_len, rx_pos;
    uint32_t seed;   /* mask keys */
    bool auto_pong;  /* answer pings while waiting (default: on) */
    bool eof, reset; /* the server's end (reset: ECONNRESET) */
    /* The last event: */
    t_ws_kind kind;
    unsigned opcode;
    uint8_t *msg; /* T_WS_MSG_MAX bytes, shared by every client */
    size_t msg_len;
    uint8_t ctl[NEA__WS_CONTROL_MAX];
    size_t ctl_len;
    unsigned code;
    unsigned pings, pongs; /* control frames seen so far */
} t_ws;

/* Connects to 127.0.0.1:port and sends the upgrade for path with extra
 * header lines (NULL or "Name: v\r\n..."); reads the answer into status
 * (and head, when not NULL: up to head_len bytes). Returns true when it
 * is a correct 101 (its accept key checked); w is then ready. */
bool t_ws_open(t_ws *w, uv_loop_t *loop, int port, const char *path, const char *extra, int *status,
               char *head, size_t head_len);
/* Makes w the client of fd, a socket whose 101 was already read. */
void t_ws_attach(t_ws *w, uv_loop_t *loop, int fd);
/* Sends one frame (masked with a fresh key) in one write. */
void t_ws_frame(t_ws *w, unsigned opcode, bool fin, const void *data, size_t len);
/* Writes a frame's bytes into out (head + masked payload) without sending;
 * returns its length. mask NULL: unmasked (a protocol violation). */
size_t t_ws_build(uint8_t *out, unsigned opcode, bool fin, const void *data, size_t len,
                  const uint8_t *mask);
/* Sends raw bytes, in pieces of at most `piece` bytes (0: one write),
 * running the loop between them. */
void t_ws_send_raw(t_ws *w, const void *data, size_t len, size_t piece);
/* Waits (running the loop) for the next event, at most timeout_ms; pings
 * are answered and skipped when auto_pong is on. Returns its kind (also
 * in w->kind). A frame that breaks RFC 6455 fails the test. */
t_ws_kind t_ws_next(t_ws *w, unsigned timeout_ms);
/* Waits for a message and checks it is opcode with exactly data. */
void t_ws_expect(t_ws *w, unsigned opcode, const void *data, size_t len);
/* Sends a close with code (0: none) and reason, waits for the server's
 * close and then for its end of the TCP connection; returns the code the
 * server's close carried (0 when none came). */
unsigned t_ws_close(t_ws *w, unsigned code, const char *reason);
/* Closes the socket (with a reset when reset). */
void t_ws_drop(t_ws *w, bool reset);

#endif
