/*
 * metrics.h - per-route counters and histograms in the reservation and the
 * Prometheus text writer, with the bounded text builder the advisor's
 * output shares (see metrics.c).
 */
#ifndef NEA_METRICS_H
#define NEA_METRICS_H

#include "common.h"

/* One server's metrics block: route_cap + 1 records in the reservation,
 * record 0 the "unrouted" bucket (requests answered before routing), record
 * i the route registered i-th. */
typedef struct nea__metrics {
    nea_route_stats *routes;
    unsigned cap;   /* records (max_routes + 1) */
    unsigned count; /* records in use (routes registered + 1) */
} nea__metrics;

/* What one finished request contributes (filled by its connection). */
typedef struct nea__sample {
    unsigned route; /* record index: 0 unrouted */
    int status;     /* 0: no response was sent */
    nea_outcome outcome;
    uint64_t bytes_in, bytes_out;
    size_t arena_peak; /* 0: no arena was taken */
    bool waited;       /* asked for an arena (queue_ns counts) */
    bool handled;      /* a handler ran (handler_ns counts) */
    uint64_t queue_ns, handler_ns, total_ns;
} nea__sample;

/* Takes the block of `records` records at mem (max_routes + 1, where the
 * layout puts them), zeroes it and names record 0 "unrouted". */
void nea__metrics_init(nea__metrics *m, void *mem, unsigned records);
/* Names the next record after a route that was just registered. */
void nea__metrics_route_added(nea__metrics *m, const char *method, const char *path,
                              unsigned arena_class);
/* Counts one finished request: O(1), no allocation, on the thread that
 * owns m only (the single writer). */
void nea__metrics_record(nea__metrics *m, const nea__sample *s);
/* Copies record i (< m->count) out, from any thread, without a lock: each
 * counter at some recent value, with requests and every histogram's count
 * derived from their parts so the copy is self-consistent. */
void nea__metrics_read(const nea__metrics *m, unsigned i, nea_route_stats *out);
/* Counts a value into a histogram whose lowest edge is 2^min_log2. */
void nea__hist_add(nea_histogram *h, unsigned min_log2, uint64_t v);
/* The bucket v falls in. */
unsigned nea__hist_index(unsigned min_log2, uint64_t v);
/* Adds every counter of `from` into `into` (the routes' names are kept);
 * how several per-server blocks are summed at read time. */
void nea__route_stats_add(nea_route_stats *into, const nea_route_stats *from);

/* snprintf-style appending into buf (cap bytes, NUL-terminated): keeps
 * counting past cap, so len ends as the length the whole text needs. */
typedef struct nea__text {
    char *buf;
    size_t cap, len;
} nea__text;

void nea__textf(nea__text *t, const char *fmt, ...) NEA_PRINTF(2, 3);

/* Where the writer gets its records: n of them, record i copied into *out
 * by read (e.g. summed over several blocks). The writer asks for a record
 * once per metric family, so it holds one copy at a time, whatever n. */
typedef struct nea__records {
    unsigned n;
    void (*read)(const void *data, unsigned i, nea_route_stats *out);
    const void *data;
} nea__records;

/* Writes the Prometheus text exposition (format 0.0.4) of src's records
 * and the server counters into buf (at most cap bytes, NUL-terminated when
 * cap > 0); returns the length the whole text needs, like snprintf. */
size_t nea__metrics_write(const nea__records *src, const nea_stats *st, char *buf, size_t cap);

/* The same exposition written a piece at a time (a streamed scrape): a
 * position in it, which nea__expo_next moves through whole lines. It holds
 * the record of the unit it is in (one family's lines for one route), read
 * once, so a unit continued in the next piece reads the same counters. */
typedef struct nea__expo {
    unsigned family; /* the metric family */
    unsigned record; /* a per-route family's record */
    unsigned line;   /* the next line of the family's (or the record's) lines */
    bool header_done;
    bool have; /* rec holds record `record`, read for this family */
    nea_route_stats rec;
} nea__expo;

/* Starts at the exposition's first line. */
void nea__expo_begin(nea__expo *x);
/* The longest line src's exposition can have: cap for nea__expo_next must
 * exceed it (it grows with the longest route path and method). */
size_t nea__expo_line_max(const nea__records *src);
/* Writes the next whole lines into buf, as many as fit in cap - 1 bytes
 * (buf is NUL-terminated), and moves past them; returns the bytes written,
 * 0 once the text is over. Pieces written from nea__expo_begin to 0 add up
 * to what nea__metrics_write writes for the same records and counters. */
size_t nea__expo_next(nea__expo *x, const nea__records *src, const nea_stats *st, char *buf,
                      size_t cap);

#endif /* NEA_METRICS_H */
