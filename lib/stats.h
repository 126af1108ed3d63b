/*
 * stats.h - the server's counters (nea_stats, in the reservation) and the
 * few rules for keeping them (see stats.c).
 */
#ifndef NEA_STATS_H
#define NEA_STATS_H

#include "nea.h"

/* Counts one response by its status class. */
void nea__stats_response(nea_stats *st, int status);
/* A connection entered a slot / left it. */
void nea__stats_conn_opened(nea_stats *st);
void nea__stats_conn_closed(nea_stats *st);

#endif /* NEA_STATS_H */
