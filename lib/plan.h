/*
 * plan.h - configuration defaults, validation and the reservation's layout
 * (see plan.c): the only place where sizes and offsets are computed.
 */
#ifndef NEA_PLAN_H
#define NEA_PLAN_H

#include "common.h"

/* The most worker threads one server runs. */
#define NEA__WORKERS_MAX 1024u

/* Where everything sits inside the one mapping, in bytes from its base. */
typedef struct nea__layout {
    size_t page;
    size_t routes_off;      /* the route table, after the server struct */
    size_t metrics_off;     /* the per-route metrics records, after the route table */
    size_t errors_off;      /* the copies of the host's error bodies, after the metrics */
    size_t arena_table_off; /* the arena descriptors */
    size_t conns_off;       /* the first connection slot (== plan.fixed_overhead) */
    size_t conn_stride;     /* one slot (== plan.conn_slot_size) */
    size_t conn_rbuf_off;   /* a slot's read buffer, from the slot's start */
    size_t conn_obuf_off;   /* a slot's output buffer, from the slot's start */
    unsigned conn_count;
    struct nea__layout_class {
        size_t off;    /* the class's first arena stride */
        size_t stride; /* arena span + guard page */
        size_t span;   /* size rounded up to a page */
        size_t size;   /* usable bytes, at the end of the span */
        unsigned count;
        unsigned first;           /* its first descriptor in the arena table */
    } classes[NEA_ARENA_CLASSES]; /* class 0 first, then class 1, ... */
    unsigned class_count;
    unsigned arena_total;
    bool guard_pages;
    unsigned workers;    /* identical slabs, back to back */
    size_t worker_bytes; /* one slab; every offset above is from a slab's start */
    size_t total;
} nea__layout;

/* The sizes of what the reservation holds, given by the files that define
 * those structs (server.c), so that this arithmetic depends on nothing. */
typedef struct nea__sizes {
    size_t server;      /* sizeof(nea_server) */
    size_t route;       /* one route table entry */
    size_t route_stats; /* one per-route metrics record (max_routes + 1 of them) */
    size_t arena;       /* one arena descriptor */
    size_t conn;        /* one connection slot's struct */
    size_t conn_obuf;   /* a slot's output buffer */
    size_t request;     /* the request struct at the start of every arena */
    size_t min_handler; /* arena bytes a handler is guaranteed */
    size_t min_head;    /* the shortest request head */
    size_t host_max;    /* room for the host literal, NUL included */
} nea__sizes;

/* nea_config_plan with the struct sizes given; cfg's error bodies must have
 * passed nea__error_bodies_check (response.c) first. */
int nea__plan(const nea_config *cfg, const nea__sizes *sz, nea_plan *plan, char *errbuf,
              size_t errlen);
/* The layout of a plan that nea__plan accepted for cfg. */
void nea__plan_layout(const nea_config *cfg, const nea__sizes *sz, const nea_plan *plan,
                      nea__layout *out);

#endif /* NEA_PLAN_H */
