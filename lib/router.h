/*
 * router.h - the route table (see router.c).
 */
#ifndef NEA_ROUTER_H
#define NEA_ROUTER_H

#include "common.h"

typedef struct nea__route {
    const char *method;
    size_t method_len;
    bool is_get; /* also answers HEAD */
    const char *path;
    size_t path_len;
    bool prefix;
    nea_handler_fn fn;
    void *data;
    unsigned flags;       /* NEA_ROUTE_* */
    unsigned arena_class; /* its requests take arenas of this class (server.c sets it) */
    uint64_t body_max;    /* NEA_ROUTE_STREAM_BODY: the route's body limit (UINT64_MAX: none);
                             a WebSocket route: its message limit (0: none) */
    unsigned response_ms; /* its own response_timeout_ms; 0: the config's */
    unsigned next;        /* 1 + the next route whose path has the same second byte; 0: none */
    const struct nea_ws_route *ws; /* a WebSocket route (wsconn.c), or NULL */
} nea__route;

/* The response deadline of a request on route r (NULL: not routed): the
 * route's own, else the config's response_timeout_ms. */
static inline unsigned nea__route_response_ms(const nea__route *r, const nea_config *cfg)
{
    return r != NULL && r->response_ms != 0 ? r->response_ms : cfg->response_timeout_ms;
}

typedef struct nea__router {
    nea__route *routes; /* max_routes entries in the reservation */
    unsigned count;
    unsigned cap;
    size_t head_max; /* read_buffer_size: the largest head a request can have */
    /* Routes by the byte after the path's leading '/' (0 for "/"): 1 + the
     * first route of that chain, 0 when none. A path without '%' is only
     * compared with the routes of its own chain. */
    unsigned chain[256];
} nea__router;

typedef enum { NEA__ROUTE_FOUND, NEA__ROUTE_NO_PATH, NEA__ROUTE_NO_METHOD } nea__route_result;

void nea__router_init(nea__router *r, nea__route *table, unsigned cap, size_t head_max);
/* Gives dst (a table of the same capacity) src's routes: each worker reads
 * its own copy, made once before the workers start. */
void nea__router_copy(nea__router *dst, const nea__router *src);
/* Adds a route, refusing one that can never be reached: returns 0, UV_EINVAL
 * (NULL argument), NEA_EROUTES (table full), NEA_EROUTE_DUP, NEA_EROUTE_METHOD
 * or NEA_EROUTE_PATH; on refusal a one-line reason is written to why. */
int nea__router_add(nea__router *r, const char *method, const char *path, nea_handler_fn fn,
                    void *data, unsigned flags, char *why, size_t why_len);
/* The route registered with exactly this method and path, or NULL. */
nea__route *nea__router_get(nea__router *r, const char *method, const char *path);
nea__route_result nea__route_find(const nea__router *r, const char *method, size_t method_len,
                                  const char *path, size_t path_len, const nea__route **out);
/* Writes "Allow: GET, HEAD\r\n" for a path into buf (at most cap bytes,
 * whole method names only); returns its length. */
size_t nea__route_allow(const nea__router *r, const char *path, size_t path_len, char *buf,
                        size_t cap);

#endif /* NEA_ROUTER_H */
