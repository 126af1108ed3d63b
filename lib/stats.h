/*
 * stats.h - the server's counters (nea_stats, in the reservation) and the
 * few rules for keeping them (see stats.c).
 */
#ifndef NEA_STATS_H
#define NEA_STATS_H

#include "nea.h"

#include <string.h>

/* Counts one response by its status class. */
void nea__stats_response(nea_stats *st, int status);
/* A connection entered a slot / left it. */
void nea__stats_conn_opened(nea_stats *st);
void nea__stats_conn_closed(nea_stats *st);

/* Adds one worker's figures into a process-wide sum: counters and
 * capacities add up, each class's peak_bytes and loop_lag_us take the
 * largest, shedding counts the workers shedding for CPU. */
void nea__stats_add(nea_stats *sum, const nea_stats *one);

/* A copy of one worker's nea_stats that other threads may read while the
 * worker keeps counting: one writer (the worker, between requests), any
 * number of readers, no locks (a sequence count around relaxed atomic
 * words). */
#define NEA__STATS_WORDS ((sizeof(nea_stats) + sizeof(uint64_t) - 1) / sizeof(uint64_t))
typedef struct nea__stats_snapshot {
    unsigned seq; /* odd while the words are being written */
    uint64_t words[NEA__STATS_WORDS];
} nea__stats_snapshot;

/* The writer's thread only. */
void nea__stats_publish(nea__stats_snapshot *snap, const nea_stats *st);
/* Any thread: a consistent copy of the last figures published. */
void nea__stats_read(const nea__stats_snapshot *snap, nea_stats *out);

#endif /* NEA_STATS_H */
