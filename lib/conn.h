/*
 * conn.h - one connection slot: its phases and their deadlines, reading,
 * writing through output.c, closing (see conn.c). The slot's types are
 * slot.h's; the HTTP exchange that runs on a slot is exchange.h's.
 */
#ifndef NEA_CONN_H
#define NEA_CONN_H

#include "slot.h"

/* How long a closing connection keeps draining input before the final close
 * (so the peer reads our last response instead of a reset). */
#define NEA__LINGER_MS 2000

void nea__conn_init(nea__conn *c, nea__conn_env *env);
/* Sets up count connection buffers of stride bytes from first, each with
 * its read buffer at rbuf_off, its output buffer at obuf_off and (with TLS)
 * its TLS record buffers at tls_off. */
void nea__conn_work_pool_init(nea__conn_env *env, char *first, size_t stride, unsigned count,
                              size_t rbuf_off, size_t obuf_off, size_t tls_off);
/* Gives c's buffer back when c is in an idle phase with nothing buffered,
 * no request and nothing to write (with TLS: once its state is parked). */
void nea__conn_release_work(nea__conn *c);
/* Takes a connection buffer for c when it has none (to write, while idle);
 * false when none is free. */
bool nea__conn_take_work(nea__conn *c);
/* c waits for a buffer (NEA__C_WAITBUF): takes one and reads again; false
 * when none is free or c does not wait. */
bool nea__conn_resume(nea__conn *c);
/* With TLS: moves decrypted bytes waiting in the TLS state into the read
 * buffer, as reading would; true when some moved. Always false for plain
 * HTTP (bytes land in the read buffer as they are read). */
bool nea__conn_refill(nea__conn *c);
/* Starts serving the free slot c on the connection pending on listener, or,
 * when listener is NULL, on the connected socket fd. On failure the slot is
 * handed back through the closed hook. */
int nea__conn_accept(nea__conn *c, uv_stream_t *listener, uv_os_sock_t fd);
/* The one phase transition: tells admission, arms the phase's deadline. */
void nea__conn_enter(nea__conn *c, nea__conn_state st);
/* Re-reads the current phase's deadline (a body's pace moved it). */
void nea__conn_rearm(nea__conn *c);
/* The server's deadline lists report here (timers.c's expired hook). */
void nea__conn_expired(nea__timed *e);
/* Reads while the phase wants input and the read buffer has room. */
void nea__conn_update_reading(nea__conn *c);
/* Closes at once, cancelling a request in flight. */
void nea__conn_close(nea__conn *c);
/* Closes after the last answer: what is queued goes out, then FIN, then
 * input is drained until the peer closes or the linger deadline passes. */
void nea__conn_close_lingering(nea__conn *c);
/* The admission list phase st belongs to. */
nea__conn_list nea__conn_list_of(nea__conn_state st);
/* Whose phase st is. */
nea__owner nea__conn_owner_of(nea__conn_state st);
/* Admission's answers, passed on to the owner of c's phase (its granted,
 * queued and refused hooks). */
void nea__conn_grant(nea__conn *c, nea__arena *a);
void nea__conn_queue(nea__conn *c, unsigned ms);
void nea__conn_refuse(nea__conn *c, bool keep);
/* uv_hrtime() since which the head or message in c has waited in the
 * queue (stamped when it was queued), or 0 when it does not wait. */
uint64_t nea__conn_waiting_since(const nea__conn *c);
/* The server drains: does to c what its phase's drain column says (close
 * it, begin a WebSocket close, or nothing: it finishes first). */
void nea__conn_drain(nea__conn *c);
/* True when the peer already sent bytes we have not read (a request on its
 * way: such a connection is not evicted). */
bool nea__conn_input_waiting(nea__conn *c);
/* The client's address (family AF_UNSPEC when unknown). Asked of the kernel
 * on first use only: most connections never need it, and accepting stays
 * one system call shorter. */
const struct sockaddr *nea__conn_peer(nea__conn *c);
/* True when c's client has the address peer (ports not compared). */
bool nea__conn_same_peer(nea__conn *c, const struct sockaddr *peer);

#endif /* NEA_CONN_H */
