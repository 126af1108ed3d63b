/*
 * sockets.h - a server's listening sockets: per worker, the round-robin
 * program's group check, handing them to a successor (see sockets.c).
 */
#ifndef NEA_SOCKETS_H
#define NEA_SOCKETS_H

#include "serverstate.h"

/* Worker w starts listening where the group's config says (worker 0 is
 * listening already when w is another). Returns 0 or a UV_E* error
 * (logged). */
int nea__sockets_listen(nea_server *w);
/* Closes the handed-over descriptors no listener took (s: worker 0). */
void nea__sockets_close_inherited(nea_server *s);
/* With workers each on a TCP socket of its own: the round-robin program's
 * maps, the first look at the group and the timer that looks again (s:
 * worker 0, every worker listening). Logs which way connections go. */
void nea__sockets_balance(nea_server *s);
/* A single server that joined a group others hold detaches their program. */
void nea__sockets_join(nea_server *s);
/* Closing: true while the group check's timer is open (its close callback
 * then calls the closed hook). */
bool nea__sockets_check_open(nea_server *s);

#endif /* NEA_SOCKETS_H */
