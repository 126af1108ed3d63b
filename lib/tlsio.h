/*
 * tlsio.h - the TLS side of a connection slot: its TLS state started,
 * parked and ended with the connection's buffer, ciphertext handed in,
 * decrypted bytes taken out, the handshake counted, failures counted and
 * logged (see tlsio.c). conn.c drives it and decides what the connection
 * does; nothing here changes a slot's phase.
 */
#ifndef NEA_TLSIO_H
#define NEA_TLSIO_H

#include "slot.h"

/* What the TLS state means for the connection (nea__tlsio_check). */
typedef enum {
    NEA__TLSIO_HANDSHAKE, /* the handshake goes on */
    NEA__TLSIO_OPENED,    /* the handshake finished just now (counted) */
    NEA__TLSIO_OPEN,      /* application data flows */
    NEA__TLSIO_CLOSED,    /* ended cleanly (close_notify, or no byte ever): close */
    NEA__TLSIO_FAILED,    /* failed (counted and logged; nea__tlsio_reason): close */
} nea__tlsio_state;

/* The admit hook of the server's TLS object (tls.h): a full handshake is
 * refused before its public-key work while the loop sheds for CPU. conn is
 * the slot. */
int nea__tlsio_admit(void *conn);

/* c took a connection buffer: its TLS state starts with the buffer's record
 * buffers (the first time) or takes them (after being parked), and the
 * buffer's output side writes through it. */
void nea__tlsio_attach(nea__conn *c);
/* c is idle: true when its TLS state gave the record buffers back (the
 * buffer may go), false when it holds something. */
bool nea__tlsio_detach(nea__conn *c);
/* c's socket closed: its TLS state ends (keys wiped). */
void nea__tlsio_end(nea__conn *c);

/* Where libuv may put received ciphertext (len 0: none can be taken now). */
uv_buf_t nea__tlsio_recv_buf(nea__conn *c);
/* n bytes were received there: handed in, and what the TLS state answers
 * (handshake messages, alerts) is sent. The CPU a handshake costs is
 * counted as the loop's handler time (load.c), so a handshake flood leads
 * to shedding. Returns 0 or an error from sending. */
int nea__tlsio_received(nea__conn *c, size_t n);
/* The peer's stream ended (EOF). */
void nea__tlsio_eof(nea__conn *c);
/* Where the connection stands, counting a finished handshake or a failure
 * once (c's phase tells whether the handshake was still going on). */
nea__tlsio_state nea__tlsio_check(nea__conn *c);
/* The reason of a failed connection. */
nea__tls_reason nea__tlsio_reason(nea__conn *c);
/* True when the peer's stream ended between records (a half-close). */
bool nea__tlsio_peer_done(nea__conn *c);
/* Copies up to room decrypted bytes into dst; returns how many. */
size_t nea__tlsio_take(nea__conn *c, char *dst, size_t room);
/* The handshake deadline passed: the connection fails (timeout), counted
 * and logged. */
void nea__tlsio_timeout(nea__conn *c);
/* Before a close: a close_notify, when the connection is open, holds its
 * buffer and has nothing queued, with one try (never waits). */
void nea__tlsio_goodbye(nea__conn *c);

#endif /* NEA_TLSIO_H */
