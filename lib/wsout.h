/*
 * wsout.h - what a WebSocket connection sends: one frame on the wire at a
 * time, data frames' payloads in an arena until written, a control frame
 * waiting behind, and the close handshake (see wsout.c). Nothing here runs
 * the input or settles the phase: the caller (wsconn.c) does.
 */
#ifndef NEA_WSOUT_H
#define NEA_WSOUT_H

#include "wsmsg.h"

/* A data frame of a message the host sends (opcode NEA_WS_TEXT or
 * NEA_WS_BINARY, checked by the caller; c holds a buffer and its state is
 * ready). Its payload is the handled message's arena's (copied there if
 * it is not in it) or a frame arena's. Returns 0 (on the wire, or already
 * written), UV_EAGAIN (a frame is on the wire), UV_ENOBUFS (no arena for
 * the frame; the buffer went back if idle), NEA_ENOMEM, or the write's
 * error (the connection is closed). */
int nea__wsout_data(nea__conn *c, int opcode, const void *data, size_t len);
/* Sends a control frame now, or right after the frame on the wire. A
 * close replaces a pong waiting behind it; nothing replaces a close. */
void nea__wsout_control(nea__conn *c, unsigned opcode, const uint8_t *payload, size_t len);
/* The frame on the wire was written (status 0) or failed: the data frame's
 * arena goes, a close written goes on with the handshake, the control
 * frame behind it goes out. False when the connection left its WebSocket
 * phases (closed, or lingering after the close). */
bool nea__wsout_sent(nea__conn *c, int status);
/* The data frame on the wire was written or cancelled: its memory goes
 * (the message's hold, or the frame's arena). */
void nea__wsout_release(nea__conn *c);

/* Starts (or joins) the close with code and reason: our close frame goes
 * out after the frame on the wire; with fin, the TCP connection closes once
 * it is out, else the peer's close is awaited in WS_CLOSING. */
void nea__wsout_close(nea__conn *c, unsigned code, const char *reason, bool fin);
/* The peer's close frame (code NEA__WS_NO_STATUS for none): answered with
 * ours (its code echoed), then the TCP connection closes; or, when ours
 * went first, the handshake is complete. */
void nea__wsout_peer_closed(nea__conn *c, unsigned code);
/* The connection breaks the protocol or cannot go on: counted (1009: too
 * big; 1002, 1007: failed), logged, closed with code. */
void nea__wsout_fail(nea__conn *c, unsigned code, const char *why);

#endif /* NEA_WSOUT_H */
