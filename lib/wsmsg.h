/*
 * wsmsg.h - a WebSocket connection's messages in: one at a time, each in
 * an arena of its own asked of admission like a request head's, gathered
 * whole (or handed over in pieces) and given to the route's handler in the
 * message's protected frame (see wsmsg.c).
 *
 * Nothing here closes the connection or runs its input: a message that
 * cannot go on returns the close code (and why) to the caller (wsconn.c),
 * which starts the close.
 */
#ifndef NEA_WSMSG_H
#define NEA_WSMSG_H

#include "wsstate.h"

/* A data event of the parser (a piece of a message) for the message in
 * progress; the first piece of a message asks for its arena, and waits
 * for it in the state (pending) when admission does not answer at once.
 * Returns 0, or the close code the connection must fail with (*why set). */
unsigned nea__wsmsg_data(nea__conn *c, const nea__ws_event *ev, const char **why);
/* The piece that waited for its arena (now granted): as nea__wsmsg_data. */
unsigned nea__wsmsg_take(nea__conn *c, const nea__ws_event *ev, const char **why);
/* Admission granted the waiting message arena a: the message's request
 * opens in it. Returns 0, or the close code (*why set) when no request
 * fits (fault injection only; the arena went back). The caller runs the
 * input once a queued message has its arena. */
unsigned nea__wsmsg_granted(nea__conn *c, nea__arena *a, const char **why);
/* Admission queued the message for at most ms: WS_QUEUED. */
void nea__wsmsg_queued(nea__conn *c, unsigned ms);
/* The message in progress ends: counted, then let go of (its arena
 * returns once no handler code is on the stack and nothing holds it). */
void nea__wsmsg_end(nea__conn *c, nea_outcome outcome);
/* The message's record is counted, with outcome unless one was set (once:
 * record.c ignores a closed one); for a message that never got a request. */
void nea__wsmsg_end_record(nea__conn *c, nea_outcome outcome);

#endif /* NEA_WSMSG_H */
