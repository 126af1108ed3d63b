/*
 * wsconn.h - a connection slot after a WebSocket upgrade: the route's
 * handshake, the handover from the HTTP exchange, and the connection's
 * phases (see wsconn.c; its messages are wsmsg.c's, its frames out and the
 * close handshake wsout.c's).
 */
#ifndef NEA_WSCONN_H
#define NEA_WSCONN_H

#include "conn.h"

/* Makes wsconn.c the owner of the WebSocket phases of env's slots. */
void nea__wsconn_env_init(nea__conn_env *env);
/* The handler of every WebSocket route (route data: the host's): checks
 * the handshake, asks the route's accept, answers 101 (or the refusal). */
void nea__wsconn_upgrade(nea_req *req, void *data);
/* The 101 for the upgrade request in c is written: the slot is the
 * WebSocket's from here. Calls the route's open, ends the upgrade request
 * and runs over the frames already buffered. */
void nea__wsconn_start(nea__conn *c);
/* The default message limit of a route whose message arenas are `size`
 * bytes: what one holds after the request's bookkeeping, leaving the
 * handler NEA__MIN_HANDLER_BYTES. */
uint64_t nea__wsconn_default_limit(size_t size);

#endif /* NEA_WSCONN_H */
