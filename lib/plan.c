/*
 * plan.c - defaults, validation, and the memory plan and layout.
 *
 * This file is the single source of truth for the reservation: every size
 * (nea__plan) and every offset (nea__plan_layout, nea__plan_slab,
 * nea__plan_arena) is computed here, from the config and the struct sizes
 * it is given; server.c and region.c carve and protect the mapping by these
 * figures, and the advisor sizes classes with nea__plan_min_arena and
 * nea__plan_arena_budget.
 *
 *   [ fixed: server struct | route table | route metrics | error bodies | arena descriptors ]
 *                                                                 page-rounded
 *   [ connection slots: max_connections * conn_slot_size ]       page-rounded
 *   [ connection buffers: conn_buffers * conn_buffer_size ]      page-rounded
 *   [ arena 0 | guard ][ arena 1 | guard ] ...                   class 0: count * stride
 *   [ arena | guard ] ...                                        class 1, 2, ...: count * stride
 *
 *   metrics_bytes  = round64((max_routes + 1) * sizeof(nea_route_stats))
 *   error_bodies_bytes = round64(sum of error_bodies[i].len)
 *   conn_slot_size   = round64(sizeof(nea__conn)) + tls_conn_size
 *   conn_buffer_size = round64(sizeof(nea__work)) + round64(read_buffer_size) + NEA__OBUF
 *                      + tls_records_size
 *   stride         = round_page(size) + (guard_pages ? page : 0), per class
 *
 * That is one worker's slab (worker_bytes, a whole number of pages). With
 * workers > 1 the mapping holds that many identical slabs back to back,
 * total = workers * worker_bytes + tls_cache_bytes <= memory_limit, and
 * arena_count 0 fits each worker's arenas into
 * (memory_limit - tls_cache_bytes) / workers.
 *
 * With TLS (a certificate configured) a slot carries the connection's TLS
 * state for its whole life, a connection buffer carries the TLS record
 * buffers (so they come and go with the buffer), and the TLS server object
 * (certificate pointer and session cache) follows the last slab, once for
 * the whole server: every worker resumes every other worker's sessions, so
 * the cache is one, not one per slab. Without TLS the three terms are 0.
 *
 * The struct sizes come in as nea__sizes (server.c fills them), so this file
 * is pure arithmetic over the config. Validation refuses instead of
 * clamping: every refusal names the field.
 */
#include "plan.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define KIB ((size_t)1024)
#define MIB (KIB * 1024)

void nea_config_init(nea_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->host = "127.0.0.1";
    cfg->port = 8080;
    cfg->backlog = 511;
    cfg->memory_limit = 64 * MIB;
    cfg->arena_size = 64 * KIB;
    cfg->arena_count = 0;
    cfg->max_connections = 16384;
    cfg->conn_buffers = 0;
    cfg->read_buffer_size = 8 * KIB;
    cfg->max_body_size = 0;
    cfg->max_routes = 64;
    cfg->queue_length = 0;
    cfg->header_timeout_ms = 10000;
    cfg->body_timeout_ms = 10000;
    cfg->body_deadline_ms = 60000;
    cfg->body_min_rate = 240;
    cfg->body_rate_grace_ms = 5000;
    cfg->response_timeout_ms = 30000;
    cfg->keepalive_timeout_ms = 5000;
    cfg->write_timeout_ms = 10000;
    cfg->queue_timeout_ms = 100;
    cfg->drain_timeout_ms = 5000;
    cfg->drain_delay_ms = 0;
    cfg->retry_after_s = 1;
    cfg->ws_ping_interval_ms = 30000;
    cfg->ws_pong_timeout_ms = 10000;
    cfg->overload_target_ms = 5;
    cfg->overload_interval_ms = 25;
    cfg->overload_budget_us = 1000;
    cfg->overload_hold_ms = 1000;
    cfg->reserved_arenas = 0;
    cfg->fair_share_pct = 50;
    cfg->agent_port = -1;
    cfg->agent_host = NULL;
    cfg->workers = 1;
    cfg->reuse_port = 0;
    cfg->prefault = 0;
    cfg->lock_memory = 0;
    cfg->guard_pages = 1;
    cfg->scrub = NEA_SCRUB_NONE;
}

/* a*b+c with overflow detection. */
static bool mul_add(size_t a, size_t b, size_t c, size_t *out)
{
    size_t m;
    return !__builtin_mul_overflow(a, b, &m) && !__builtin_add_overflow(m, c, out);
}

static size_t server_bytes(const nea__sizes *sz)
{
    return NEA__ROUND_UP(sz->server, 64);
}

static size_t routes_bytes(const nea_config *cfg, const nea__sizes *sz)
{
    return NEA__ROUND_UP((size_t)cfg->max_routes * sz->route, 64);
}

/* The per-route metrics: one record per route and one for unrouted requests. */
static unsigned metrics_records(const nea_config *cfg)
{
    return cfg->max_routes + 1;
}

static size_t metrics_bytes(const nea_config *cfg, const nea__sizes *sz)
{
    return NEA__ROUND_UP((size_t)metrics_records(cfg) * sz->route_stats, 64);
}

/* The copies of the host's error bodies (response.c checked each: at most
 * one per pre-built status, each at most NEA_ERROR_BODY_MAX, so the sum
 * cannot overflow). */
static size_t error_bodies_bytes(const nea_config *cfg)
{
    size_t n = 0;
    for (unsigned i = 0; i < cfg->error_body_count; i++) {
        n += cfg->error_bodies[i].len;
    }
    return NEA__ROUND_UP(n, 64);
}

static size_t fixed_bytes(const nea_config *cfg, const nea__sizes *sz, unsigned arenas, size_t page)
{
    size_t n = server_bytes(sz) + routes_bytes(cfg, sz) + metrics_bytes(cfg, sz) +
               error_bodies_bytes(cfg) + (size_t)arenas * sz->arena;
    return NEA__ROUND_UP(n, page);
}

static size_t conn_struct_bytes(const nea__sizes *sz)
{
    return NEA__ROUND_UP(sz->conn, 64);
}

static size_t work_struct_bytes(const nea__sizes *sz)
{
    return NEA__ROUND_UP(sz->work, 64);
}

/* conn_buffers resolved: 0 means one per slot, at most 1024. */
static unsigned resolve_buffers(const nea_config *cfg)
{
    if (cfg->conn_buffers != 0) {
        return cfg->conn_buffers;
    }
    return cfg->max_connections < 1024 ? cfg->max_connections : 1024;
}

/* A worker's connection slots and buffers together. */
static size_t conn_bytes(const nea_plan *p)
{
    return p->connections_bytes + p->buffers_bytes;
}

/* One worker's share of memory_limit, once the server-wide part (the TLS
 * session cache) is set aside. */
static size_t worker_share(const nea_config *cfg, unsigned workers, size_t shared)
{
    return cfg->memory_limit > shared ? (cfg->memory_limit - shared) / workers : 0;
}

bool nea__plan_tls(const nea_config *cfg)
{
    const nea_tls_cert *t = &cfg->tls;
    return t->cert_file != NULL || t->key_file != NULL || t->cert_pem != NULL || t->key_pem != NULL;
}

static unsigned nea__plan_tls_sessions(const nea_config *cfg)
{
    return cfg->tls_sessions != 0 ? cfg->tls_sessions : 1024;
}

size_t nea__plan_min_arena(const nea_config *cfg, const nea__sizes *sz)
{
    (void)cfg; /* the head is read where it was received: no copy in the arena */
    return NEA__ROUND_UP(sz->request, NEA__ALIGN) + sz->min_handler;
}

/* workers resolved: 0 means one per online CPU. */
static unsigned resolve_workers(const nea_config *cfg)
{
    long n;
    if (cfg->workers != 0) {
        return cfg->workers;
    }
    n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1u : n > NEA__WORKERS_MAX ? NEA__WORKERS_MAX : (unsigned)n;
}

static bool is_ip_literal(const char *host)
{
    unsigned char addr[16];
    return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

/* Field checks that need no arithmetic. */
static int check_fields(const nea_config *cfg, const nea__sizes *sz, char *errbuf, size_t errlen)
{
    const int E = NEA_EINVAL_CONFIG;
    const struct {
        const char *name;
        unsigned value;
    } timeouts[] = {
        {"header_timeout_ms", cfg->header_timeout_ms},
        {"body_timeout_ms", cfg->body_timeout_ms},
        {"body_deadline_ms", cfg->body_deadline_ms},
        {"keepalive_timeout_ms", cfg->keepalive_timeout_ms},
        {"write_timeout_ms", cfg->write_timeout_ms},
        {"response_timeout_ms", cfg->response_timeout_ms},
        {"overload_interval_ms", cfg->overload_interval_ms},
        {"overload_hold_ms", cfg->overload_hold_ms},
        {"overload_budget_us", cfg->overload_budget_us},
        {"drain_timeout_ms", cfg->drain_timeout_ms},
        {"ws_ping_interval_ms", cfg->ws_ping_interval_ms},
        {"ws_pong_timeout_ms", cfg->ws_pong_timeout_ms},
    };

    if (cfg->port < 0 || cfg->port > 65535) {
        return nea__refuse(E, errbuf, errlen, "port %d is outside 0..65535", cfg->port);
    }
    if (cfg->host == NULL || strlen(cfg->host) >= sz->host_max || !is_ip_literal(cfg->host)) {
        return nea__refuse(E, errbuf, errlen, "host \"%s\" is not an IPv4 or IPv6 literal",
                           cfg->host != NULL ? cfg->host : "(null)");
    }
    if (cfg->agent_port < -1 || cfg->agent_port > 65535) {
        return nea__refuse(E, errbuf, errlen, "agent_port %d is outside -1..65535",
                           cfg->agent_port);
    }
    if (cfg->agent_host != NULL &&
        (strlen(cfg->agent_host) >= sz->host_max || !is_ip_literal(cfg->agent_host))) {
        return nea__refuse(E, errbuf, errlen, "agent_host \"%s\" is not an IPv4 or IPv6 literal",
                           cfg->agent_host);
    }
    if (cfg->backlog <= 0) {
        return nea__refuse(E, errbuf, errlen, "backlog %d must be > 0", cfg->backlog);
    }
    if (cfg->memory_limit == 0) {
        return nea__refuse(E, errbuf, errlen, "memory_limit must be > 0");
    }
    if (cfg->arena_size == 0) {
        return nea__refuse(E, errbuf, errlen, "arena_size must be > 0");
    }
    if (cfg->max_connections == 0 || cfg->max_connections > (1u << 22)) {
        return nea__refuse(E, errbuf, errlen, "max_connections %u is outside 1..4194304",
                           cfg->max_connections);
    }
    if (cfg->max_routes == 0 || cfg->max_routes > (1u << 16)) {
        return nea__refuse(E, errbuf, errlen, "max_routes %u is outside 1..65536", cfg->max_routes);
    }
    if (cfg->read_buffer_size < 256 || cfg->read_buffer_size > (size_t)1 << 30) {
        return nea__refuse(E, errbuf, errlen, "read_buffer_size %zu is outside 256 B..1 GiB",
                           cfg->read_buffer_size);
    }
    for (size_t i = 0; i < sizeof(timeouts) / sizeof(timeouts[0]); i++) {
        if (timeouts[i].value == 0) {
            return nea__refuse(E, errbuf, errlen, "%s must be > 0", timeouts[i].name);
        }
    }
    if (cfg->retry_after_s > 86400) {
        return nea__refuse(E, errbuf, errlen, "retry_after_s %u is above 86400",
                           cfg->retry_after_s);
    }
    if (cfg->scrub < NEA_SCRUB_NONE || cfg->scrub > NEA_SCRUB_POISON) {
        return nea__refuse(E, errbuf, errlen, "scrub %d is not NEA_SCRUB_NONE, _ZERO or _POISON",
                           cfg->scrub);
    }
    if (cfg->fair_share_pct > 100) {
        return nea__refuse(E, errbuf, errlen, "fair_share_pct %u is above 100",
                           cfg->fair_share_pct);
    }
    if (cfg->workers > NEA__WORKERS_MAX) {
        return nea__refuse(E, errbuf, errlen, "workers %u is above %u", cfg->workers,
                           NEA__WORKERS_MAX);
    }
    if (cfg->conn_buffers > cfg->max_connections) {
        return nea__refuse(
            E, errbuf, errlen,
            "conn_buffers %u is above max_connections %u (a connection holds at most "
            "one)",
            cfg->conn_buffers, cfg->max_connections);
    }
    if (cfg->tls_sessions > (1u << 24)) {
        return nea__refuse(E, errbuf, errlen, "tls_sessions %u is above 16777216",
                           cfg->tls_sessions);
    }
    if (cfg->queue_length > cfg->max_connections) {
        return nea__refuse(E, errbuf, errlen,
                           "queue_length %u is above max_connections %u (a queued request holds a "
                           "connection slot)",
                           cfg->queue_length, cfg->max_connections);
    }
    return 0;
}

int nea__plan(const nea_config *cfg, const nea__sizes *sz, nea_plan *plan, char *errbuf,
              size_t errlen)
{
    nea_plan p;
    nea_plan_class *c0 = &p.classes[0]; /* the default class: its count may be resolved here */
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t min_arena, body_room, more_bytes = 0, limit;
    unsigned more_count = 0; /* arenas of the classes besides the default one */
    int rc = check_fields(cfg, sz, errbuf, errlen);

    if (rc != 0) {
        return rc;
    }
    memset(&p, 0, sizeof(p));
    p.workers = resolve_workers(cfg);
    if (nea__plan_tls(cfg) && sz->tls_server != NULL) {
        p.tls_sessions = nea__plan_tls_sessions(cfg);
        p.tls_conn_size = NEA__ROUND_UP(sz->tls_conn, 64);
        p.tls_records_size = NEA__ROUND_UP(sz->tls_records, 64);
        p.tls_cache_bytes = NEA__ROUND_UP(sz->tls_server(p.tls_sessions), page);
    }
    limit = worker_share(cfg, p.workers, p.tls_cache_bytes);
    /* A request needs its struct and room for the handler (its head stays
     * in the connection's read buffer). */
    p.request_overhead = NEA__ROUND_UP(sz->request, NEA__ALIGN);
    min_arena = nea__plan_min_arena(cfg, sz);
    if (cfg->arena_size < min_arena) {
        return nea__refuse(NEA_EARENA_SMALL, errbuf, errlen,
                           "arena_size %zu is below %zu (request struct %zu + %zu for the handler)",
                           cfg->arena_size, min_arena, p.request_overhead, sz->min_handler);
    }
    if (cfg->arena_size > ((size_t)1 << 40)) {
        return nea__refuse(NEA_EOVERFLOW, errbuf, errlen, "arena_size %zu is above 1 TiB",
                           cfg->arena_size);
    }
    if (cfg->arena_class_count > NEA_ARENA_CLASSES - 1) {
        return nea__refuse(NEA_EINVAL_CONFIG, errbuf, errlen, "arena_class_count %u is above %d",
                           cfg->arena_class_count, NEA_ARENA_CLASSES - 1);
    }
    for (unsigned i = 0; i < cfg->arena_class_count; i++) {
        const nea_arena_class *k = &cfg->arena_classes[i];
        if (k->size < min_arena) {
            return nea__refuse(NEA_EARENA_SMALL, errbuf, errlen,
                               "arena_classes[%u].size %zu is below %zu (as arena_size)", i,
                               k->size, min_arena);
        }
        if (k->size > ((size_t)1 << 40)) {
            return nea__refuse(NEA_EOVERFLOW, errbuf, errlen,
                               "arena_classes[%u].size %zu is above 1 TiB", i, k->size);
        }
        if (k->count == 0) {
            return nea__refuse(NEA_EINVAL_CONFIG, errbuf, errlen,
                               "arena_classes[%u].count must be > 0 (only the default class sizes "
                               "itself from memory_limit)",
                               i);
        }
    }
    /* The most body an arena can ever hold: everything after the request
     * struct but the shortest head and the body's terminating NUL. A limit
     * no class could hold is refused; each class holds what it can. */
    body_room = 0;
    p.class_count = 1 + cfg->arena_class_count;
    for (unsigned i = 0; i < p.class_count; i++) {
        size_t size = i == 0 ? cfg->arena_size : cfg->arena_classes[i - 1].size;
        size_t room = size - p.request_overhead - sz->min_head - 1;
        p.classes[i].size = size;
        p.classes[i].max_body_size =
            cfg->max_body_size != 0 && cfg->max_body_size < room ? cfg->max_body_size : room;
        body_room = room > body_room ? room : body_room;
    }
    if (cfg->max_body_size > body_room) {
        return nea__refuse(NEA_EINVAL_CONFIG, errbuf, errlen,
                           "max_body_size %zu can never fit: the largest arena holds at most %zu "
                           "(0 = as large as the arena allows)",
                           cfg->max_body_size, body_room);
    }

    p.page_size = page;
    for (unsigned i = 0; i < p.class_count; i++) {
        p.classes[i].stride = nea__plan_span(&p, p.classes[i].size) + (cfg->guard_pages ? page : 0);
    }
    /* The classes besides the default one: their count is given. */
    for (unsigned i = 1; i < p.class_count; i++) {
        p.classes[i].count = cfg->arena_classes[i - 1].count;
        if (!mul_add(p.classes[i].count, p.classes[i].stride, 0, &p.classes[i].bytes) ||
            !mul_add(1, p.classes[i].bytes, more_bytes, &more_bytes) ||
            __builtin_add_overflow(more_count, p.classes[i].count, &more_count)) {
            return nea__refuse(NEA_EOVERFLOW, errbuf, errlen, "arena_classes[%u] overflow", i - 1);
        }
    }
    p.conn_slot_size = conn_struct_bytes(sz) + p.tls_conn_size;
    p.connections = cfg->max_connections;
    if (!mul_add(cfg->max_connections, p.conn_slot_size, page - 1, &p.connections_bytes)) {
        return nea__refuse(NEA_EOVERFLOW, errbuf, errlen, "max_connections * slot size overflows");
    }
    p.connections_bytes &= ~(page - 1);
    p.conn_buffers = resolve_buffers(cfg);
    p.conn_buffer_size = work_struct_bytes(sz) + NEA__ROUND_UP(cfg->read_buffer_size, 64) +
                         sz->conn_obuf + p.tls_records_size;
    if (!mul_add(p.conn_buffers, p.conn_buffer_size, page - 1, &p.buffers_bytes)) {
        return nea__refuse(NEA_EOVERFLOW, errbuf, errlen, "conn_buffers * buffer size overflows");
    }
    p.buffers_bytes &= ~(page - 1);

    if (cfg->arena_count != 0) {
        c0->count = cfg->arena_count;
    } else {
        /* As many arenas as fit: each costs its stride plus its descriptor.
         * Start from the fixed part before page rounding (an upper bound on
         * the count), then step down to the exact maximum. */
        size_t base = server_bytes(sz) + routes_bytes(cfg, sz) + metrics_bytes(cfg, sz) +
                      error_bodies_bytes(cfg) + conn_bytes(&p) + more_bytes +
                      (size_t)more_count * sz->arena;
        size_t per = c0->stride + sz->arena;
        size_t n = limit > base ? (limit - base) / per : 0;
        if (n > UINT32_MAX - more_count) {
            n = UINT32_MAX - more_count;
        }
        c0->count = (unsigned)n;
        /* Page-rounding the descriptor table may push one arena out. */
        while (c0->count > 0 && fixed_bytes(cfg, sz, c0->count + more_count, page) +
                                        conn_bytes(&p) + more_bytes +
                                        (size_t)c0->count * c0->stride >
                                    limit) {
            c0->count--;
        }
        if (c0->count == 0) {
            return nea__refuse(
                NEA_EOVERLIMIT, errbuf, errlen,
                "memory_limit %zu (%zu per worker of %u) leaves no room for one arena "
                "(fixed %zu + connections %zu + other classes %zu + one arena %zu)",
                cfg->memory_limit, limit, p.workers, fixed_bytes(cfg, sz, 1 + more_count, page),
                conn_bytes(&p), more_bytes, c0->stride);
        }
    }
    if (cfg->reserved_arenas >= c0->count) {
        return nea__refuse(NEA_EINVAL_CONFIG, errbuf, errlen,
                           "reserved_arenas %u leaves none of the %u arenas for ordinary routes",
                           cfg->reserved_arenas, c0->count);
    }
    if (__builtin_add_overflow(c0->count, more_count, &p.arena_total)) {
        return nea__refuse(NEA_EOVERFLOW, errbuf, errlen, "arena count overflows");
    }
    p.fixed_overhead = fixed_bytes(cfg, sz, p.arena_total, page);
    p.metrics_bytes = metrics_bytes(cfg, sz);
    p.error_bodies_bytes = error_bodies_bytes(cfg);
    if (!mul_add(c0->count, c0->stride, 0, &c0->bytes) ||
        !mul_add(1, c0->bytes, more_bytes, &p.arenas_bytes) ||
        !mul_add(1, p.arenas_bytes, conn_bytes(&p), &p.worker_bytes) ||
        !mul_add(1, p.worker_bytes, p.fixed_overhead, &p.worker_bytes)) {
        return nea__refuse(NEA_EOVERFLOW, errbuf, errlen, "arena_count * arena stride overflows");
    }
    if (!mul_add(p.workers, p.worker_bytes, p.tls_cache_bytes, &p.total)) {
        return nea__refuse(NEA_EOVERFLOW, errbuf, errlen, "workers * worker slab overflows");
    }
    if (p.total > cfg->memory_limit) {
        return nea__refuse(NEA_EOVERLIMIT, errbuf, errlen,
                           "plan needs %zu bytes (workers %u x (fixed %zu + connections %u x %zu + "
                           "buffers %u x %zu + arenas %u x %zu + other classes %zu) + TLS session "
                           "cache %zu) but memory_limit is %zu",
                           p.total, p.workers, p.fixed_overhead, cfg->max_connections,
                           p.conn_slot_size, p.conn_buffers, p.conn_buffer_size, c0->count,
                           c0->stride, more_bytes, p.tls_cache_bytes, cfg->memory_limit);
    }
    *plan = p;
    return 0;
}

void nea__plan_layout(const nea_config *cfg, const nea__sizes *sz, const nea_plan *plan,
                      nea__layout *out)
{
    size_t off = plan->fixed_overhead + conn_bytes(plan);
    unsigned first = 0;

    memset(out, 0, sizeof(*out));
    out->routes_off = server_bytes(sz);
    out->metrics_off = out->routes_off + routes_bytes(cfg, sz);
    out->metrics_count = metrics_records(cfg);
    out->errors_off = out->metrics_off + metrics_bytes(cfg, sz);
    out->arena_table_off = out->errors_off + error_bodies_bytes(cfg);
    out->conns_off = plan->fixed_overhead;
    out->buffers_off = plan->fixed_overhead + plan->connections_bytes;
    out->buf_rbuf_off = work_struct_bytes(sz);
    out->buf_obuf_off = out->buf_rbuf_off + NEA__ROUND_UP(cfg->read_buffer_size, 64);
    out->buf_tls_off = out->buf_obuf_off + sz->conn_obuf;
    out->conn_tls_off = conn_struct_bytes(sz);
    out->tls_server_off = (size_t)plan->workers * plan->worker_bytes;
    for (unsigned i = 0; i < plan->class_count; i++) {
        out->classes[i].off = off;
        out->classes[i].first = first;
        off += plan->classes[i].bytes;
        first += plan->classes[i].count;
    }
}

size_t nea__plan_slab(const nea_plan *plan, unsigned worker)
{
    return (size_t)worker * plan->worker_bytes;
}

nea__arena_place nea__plan_arena(const nea_plan *plan, const nea__layout *layout, unsigned cls,
                                 unsigned i)
{
    const nea_plan_class *c = &plan->classes[cls];
    size_t span = nea__plan_span(plan, c->size);
    nea__arena_place at;
    at.span = layout->classes[cls].off + (size_t)i * c->stride;
    at.usable = at.span + span - c->size;
    at.guard = at.span + span;
    return at;
}

size_t nea__plan_span(const nea_plan *plan, size_t size)
{
    return NEA__ROUND_UP(size, plan->page_size);
}

size_t nea__plan_arena_budget(const nea_config *cfg, const nea_plan *plan)
{
    size_t rest = plan->fixed_overhead + conn_bytes(plan);
    size_t share = worker_share(cfg, plan->workers, plan->tls_cache_bytes);
    return share > rest ? share - rest : 0;
}

void nea_plan_format(const nea_plan *p, char *buf, size_t len)
{
    int n = snprintf(buf, len,
                     "reserved=%zu workers=%u x %zu (fixed %zu incl. metrics %zu + connections "
                     "%zu + buffers %zu + arenas %zu) connections=%ux%zu buffers=%ux%zu "
                     "arena_size=%zu",
                     p->total, p->workers, p->worker_bytes, p->fixed_overhead, p->metrics_bytes,
                     p->connections_bytes, p->buffers_bytes, p->arenas_bytes, p->connections,
                     p->conn_slot_size, p->conn_buffers, p->conn_buffer_size, p->classes[0].size);
    if (p->error_bodies_bytes > 0 && n > 0 && (size_t)n < len) {
        n += snprintf(buf + n, len - (size_t)n, " error_bodies=%zu", p->error_bodies_bytes);
    }
    /* Every class: count x stride (size). */
    for (unsigned i = 0; i < p->class_count && n > 0 && (size_t)n < len; i++) {
        n += snprintf(buf + n, len - (size_t)n, " class%u=%ux%zu(%zu)", i, p->classes[i].count,
                      p->classes[i].stride, p->classes[i].size);
    }
    /* TLS: the state in every slot, the record buffers in every connection
     * buffer (both already in the sizes above), the session cache once. */
    if (p->tls_cache_bytes > 0 && n > 0 && (size_t)n < len) {
        snprintf(buf + n, len - (size_t)n,
                 " tls=state %zu/slot + records %zu/buffer + session cache %zu (%u sessions)",
                 p->tls_conn_size, p->tls_records_size, p->tls_cache_bytes, p->tls_sessions);
    }
}
