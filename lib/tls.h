/*
 * tls.h - one TLS connection's engine: its state in memory the caller
 * provides, ciphertext in and out, plaintext in and out (see tls.c); the
 * server object every connection shares is tlsserver.h's, the failure
 * reasons tlsreason.h's. No socket, no loop, no allocation per
 * connection: the caller moves bytes between its socket and the engine.
 *
 * Memory, per connection (exact, for the plan):
 *
 *   nea__tls_conn_size()     the state, kept for the connection's whole life
 *   nea__tls_records_size()  the record buffers: from the first byte of the
 *                            handshake until the connection is idle, when
 *                            nea__tls_park gives them back
 *
 * and per server nea__tls_server_size(sessions) (the session cache). Both
 * blocks are aligned to NEA__ALIGN by the caller. Certificates are the only
 * heap memory: allocated when loaded (server init, reload), freed when no
 * handshake uses them any more; never per connection.
 *
 * Data flow, each direction zero-copy (a buffer and an ack) or copying:
 *
 *   socket -> recv_buf/recv_ack (or feed) -> read_buf/read_ack -> HTTP
 *   HTTP -> write_buf/write_ack (or write) + flush -> send_buf/send_ack -> socket
 *
 * After each call, nea__tls_status tells what the engine can do next.
 * Without TLS support compiled in (NEA_HAVE_TLS 0) every size is 0 and
 * nea__tls_server_init returns NEA_ENOTLS.
 */
#ifndef NEA_TLS_H
#define NEA_TLS_H

#include "tlsreason.h"
#include "tlsserver.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct nea__tls_conn nea__tls_conn;

/* State kept for the connection's life; 0 without TLS support. */
size_t nea__tls_conn_size(void);
/* The record buffers (one block: input then output), needed while active;
 * 0 without TLS support. */
size_t nea__tls_records_size(void);

/* Starts the server side of a handshake in mem (nea__tls_conn_size() bytes)
 * with the record buffers in records (nea__tls_records_size() bytes), both
 * NEA__ALIGN-aligned and owned by the caller until nea__tls_conn_end. data
 * is passed to the admit hook. Never fails: an engine that cannot start is
 * failed with NEA__TLS_R_INTERNAL. */
nea__tls_conn *nea__tls_conn_start(void *mem, nea__tls_server *s, void *records, void *data);

/* Ends the connection: releases the certificate a handshake in progress
 * holds, wipes the keys, and returns the record block (NULL while parked)
 * for the caller to reuse. mem may then be reused. */
void *nea__tls_conn_end(nea__tls_conn *c);

/* Readiness and phase, as bits. */
enum {
    NEA__TLS_HANDSHAKE = 1u << 0, /* handshake in progress */
    NEA__TLS_OPEN = 1u << 1,      /* handshake done: application data flows */
    NEA__TLS_CLOSED = 1u << 2,    /* ended cleanly: close_notify exchanged, or the stream
                                     ended before its first byte */
    NEA__TLS_FAILED = 1u << 3,    /* ended with a reason (nea__tls_reason_of) */
    NEA__TLS_RECV = 1u << 4,      /* can take ciphertext (recv_buf/feed) */
    NEA__TLS_READ = 1u << 5,      /* plaintext waits (read_buf) */
    NEA__TLS_WRITE = 1u << 6,     /* can take plaintext (write_buf) */
    NEA__TLS_SEND = 1u << 7,      /* ciphertext waits to be sent (send_buf) */
    NEA__TLS_PARKED = 1u << 8,    /* record buffers given back (nea__tls_park) */
    NEA__TLS_EOF = 1u << 9,       /* OPEN, and the peer's stream ended between records: what
                                     was received can still be read, and answers sent */
};
unsigned nea__tls_status(const nea__tls_conn *c);
nea__tls_reason nea__tls_reason_of(const nea__tls_conn *c);
/* The TLS library's own error code behind the reason (0 if none), for logs. */
int nea__tls_detail(const nea__tls_conn *c);
/* After the handshake: the protocol agreed by ALPN ("http/1.1") or NULL,
 * and whether the session was resumed (no public-key work done). */
const char *nea__tls_alpn(const nea__tls_conn *c);
bool nea__tls_resumed(const nea__tls_conn *c);

/* Ciphertext in. recv_buf: where the next received bytes go and how many
 * fit (*len), NULL when none can be taken now (plaintext waits, the output
 * side is full, ended or parked). Never more than the rest of the current
 * record (or header): read again when the buffer filled. recv_ack: n bytes
 * were stored there. feed: copies from data as much as the engine takes,
 * returns that count. */
unsigned char *nea__tls_recv_buf(nea__tls_conn *c, size_t *len);
void nea__tls_recv_ack(nea__tls_conn *c, size_t n);
size_t nea__tls_feed(nea__tls_conn *c, const void *data, size_t len);

/* Plaintext out: what was decrypted and not yet read (NULL if nothing). */
const unsigned char *nea__tls_read_buf(nea__tls_conn *c, size_t *len);
void nea__tls_read_ack(nea__tls_conn *c, size_t n);

/* Plaintext in. write: copies as much as fits in the current record (none
 * before the handshake is done, or while a record waits to be sent); a full
 * record is sealed at once. flush: seals the current record so it can be
 * sent. */
size_t nea__tls_write(nea__tls_conn *c, const void *data, size_t len);
void nea__tls_flush(nea__tls_conn *c);

/* Ciphertext out: the sealed bytes to send (NULL if none). */
const unsigned char *nea__tls_send_buf(nea__tls_conn *c, size_t *len);
void nea__tls_send_ack(nea__tls_conn *c, size_t n);

/* Queues a close_notify (send it, then close the socket). */
void nea__tls_close(nea__tls_conn *c);
/* The peer ended its stream (EOF; a reset too). Before any byte: CLOSED.
 * Between records of an established connection: a half-close - it stays
 * OPEN with NEA__TLS_EOF, takes no more input, and what was received can
 * still be read and answered; the caller closes when done. Inside the
 * handshake or a record: FAILED, truncated. */
void nea__tls_eof(nea__tls_conn *c);
/* Fails the connection for a reason found outside the engine (a deadline). */
void nea__tls_abort(nea__tls_conn *c, nea__tls_reason r);

/* Gives the record buffers back while the connection is idle: returns the
 * block, or NULL when it holds something (a partial record, plaintext not
 * read, ciphertext not sent) or the handshake is not done. */
void *nea__tls_park(nea__tls_conn *c);
/* Gives a parked connection record buffers again (any block of
 * nea__tls_records_size() bytes), before the next byte is received or sent. */
void nea__tls_unpark(nea__tls_conn *c, void *records);

#endif /* NEA_TLS_H */
