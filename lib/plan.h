/*
 * plan.h - configuration defaults, validation, and the reservation's sizes
 * and layout (see plan.c): where every size and offset of the reservation is
 * computed.
 */
#ifndef NEA_PLAN_H
#define NEA_PLAN_H

#include "common.h"

/* The most worker threads one server runs. */
#define NEA__WORKERS_MAX 1024u

/* Where everything sits in one worker's slab, in bytes from the slab's
 * start, beyond what the plan already says (sizes and counts are the
 * plan's; the functions below combine the two). */
typedef struct nea__layout {
    size_t routes_off;      /* the route table, after the server struct */
    size_t metrics_off;     /* the per-route metrics records, after the route table */
    unsigned metrics_count; /* records there: max_routes + 1 (record 0: unrouted) */
    size_t errors_off;      /* the copies of the host's error bodies, after the metrics */
    size_t arena_table_off; /* the arena descriptors, every class's, class 0 first */
    size_t conns_off;       /* the first connection slot (== plan.fixed_overhead); the
                               slots follow each other plan.conn_slot_size apart */
    size_t buffers_off;     /* the first connection buffer, after the slots; they
                               follow each other plan.conn_buffer_size apart */
    size_t buf_rbuf_off;    /* a buffer's read buffer, from the buffer's start */
    size_t buf_obuf_off;    /* a buffer's output buffer, from the buffer's start */
    size_t buf_tls_off;     /* with TLS: a buffer's TLS record buffers, from its start */
    size_t conn_tls_off;    /* with TLS: a slot's TLS state, from the slot's start */
    size_t tls_server_off;  /* with TLS: the server's certificate and session cache, from
                               the mapping's base, after every worker's slab */
    struct nea__layout_class {
        size_t off;               /* the class's first arena */
        unsigned first;           /* its first descriptor in the arena table */
    } classes[NEA_ARENA_CLASSES]; /* class 0 first, then class 1, ... */
} nea__layout;

/* One arena's place, in bytes from its slab's start. */
typedef struct nea__arena_place {
    size_t span;   /* its first page: the span is its size rounded up to whole pages */
    size_t usable; /* its usable bytes, the last `size` of the span: an overrun of one
                      byte reaches the guard page */
    size_t guard;  /* the page right after the span (PROT_NONE with guard_pages) */
} nea__arena_place;

/* The sizes of what the reservation holds, given by the files that define
 * those structs (server.c), so that this arithmetic depends on nothing. */
typedef struct nea__sizes {
    size_t server;      /* sizeof(nea_server) */
    size_t route;       /* one route table entry */
    size_t route_stats; /* one per-route metrics record (max_routes + 1 of them) */
    size_t arena;       /* one arena descriptor */
    size_t conn;        /* one connection slot's struct */
    size_t work;        /* one connection buffer's struct (before its buffers) */
    size_t conn_obuf;   /* a connection buffer's output buffer */
    size_t request;     /* the request struct at the start of every arena */
    size_t min_handler; /* arena bytes a handler is guaranteed */
    size_t min_head;    /* the shortest request head */
    size_t host_max;    /* room for the host literal, NUL included */
    size_t tls_conn;    /* one connection's TLS state (0 without TLS support) */
    size_t tls_records; /* one connection's TLS record buffers, while active */
    size_t (*tls_server)(unsigned sessions); /* the TLS server object with its session
                                                cache; NULL without TLS support */
} nea__sizes;

/* Whether cfg asks for TLS: a certificate or a key is given, from a file or
 * from memory. */
bool nea__plan_tls(const nea_config *cfg);

/* nea_config_plan with the struct sizes given; cfg's error bodies must have
 * passed nea__error_bodies_check (response.c) first. */
int nea__plan(const nea_config *cfg, const nea__sizes *sz, nea_plan *plan, char *errbuf,
              size_t errlen);
/* The layout of a plan that nea__plan accepted for cfg. */
void nea__plan_layout(const nea_config *cfg, const nea__sizes *sz, const nea_plan *plan,
                      nea__layout *out);
/* Worker w's slab, in bytes from the mapping's base (the slabs are identical
 * and back to back). */
size_t nea__plan_slab(const nea_plan *plan, unsigned worker);
/* Where arena i of class cls sits in every slab. */
nea__arena_place nea__plan_arena(const nea_plan *plan, const nea__layout *layout, unsigned cls,
                                 unsigned i);
/* The bytes an arena of `size` usable bytes spans: whole pages. */
size_t nea__plan_span(const nea_plan *plan, size_t size);
/* The smallest arena cfg allows: the request struct and the handler's
 * minimum. */
size_t nea__plan_min_arena(const nea_config *cfg, const nea__sizes *sz);
/* What one worker's arenas may take: its share of memory_limit less its
 * slab's fixed part and connection slots. */
size_t nea__plan_arena_budget(const nea_config *cfg, const nea_plan *plan);

#endif /* NEA_PLAN_H */
