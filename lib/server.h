/*
 * server.h - a server's lifecycle (see server.c); the server struct at the
 * start of each worker's slab is serverstate.h's.
 */
#ifndef NEA_SERVER_H
#define NEA_SERVER_H

#include "serverstate.h"

/* The sizes of the structs the reservation holds, for plan.c's arithmetic. */
const nea__sizes *nea__server_sizes(void);
/* Worker w's counters with its pools', queue's and load's figures: live
 * when w runs on the calling thread (or is the only worker), else as w last
 * published them. Safe from the host's thread and every worker thread. */
void nea__server_figures(const nea_server *w, nea_stats *out);
/* The per-route records as the metrics writers read them: the routes
 * registered so far, each summed over every worker (any worker's thread). */
void nea__server_records(const nea_server *s, nea__records *out);

#ifdef NEA_FAULT_INJECTION
/* Serves an already-connected stream socket (e.g. one end of a socketpair)
 * in a free slot, as if accepted. For fuzzing and tests. */
int nea__server_adopt(nea_server *s, uv_os_sock_t fd);
/* Returns an arena a test took straight from the pool, handing it to the
 * next waiting head as a finished request would. */
void nea__server_give_back(nea_server *s, nea__arena *a);
/* Ends a drain's announcement now, as if drain_delay_ms had passed. */
void nea__server_end_announcement(nea_server *s);
#endif

#endif /* NEA_SERVER_H */
