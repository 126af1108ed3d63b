/*
 * server.c - a server's lifecycle: create, route, listen, close.
 *
 * nea_server_new validates the config (plan.c), prepares the one mapping
 * (region.c), carves it exactly as the layout says and wires the modules
 * together: the slots report to admission, requests report to their slots,
 * the listener reports pending connections to admission. After that this
 * file only starts and stops things.
 *
 * Close: announce the drain (the agent says "drain", every response closes
 * its connection) and go on serving for drain_delay_ms, so that a balancer
 * stops sending before a connection is refused; then stop accepting, close
 * idle connections, let requests in flight and queued finish for
 * drain_timeout_ms, then cancel what is left; once every handle has closed
 * (the agent's last) the reservation is unmapped and the user's callback
 * runs, exactly once.
 *
 * The agent learns the server's capacity through read_capacity, the one
 * read of everything a balancer is told.
 *
 * Workers: the mapping holds one slab per worker, each starting with a
 * complete nea_server of its own (slots, pools, queue, load, stats, metrics,
 * fault plan, listener), so the request path shares nothing between
 * threads. Worker 0 is the server the host holds; it runs on the host's loop
 * and speaks for the group (the agent runs there). Routes are registered on
 * worker 0 and copied into every worker's table when nea_server_listen
 * starts the threads; from then on they are read-only. Closing worker 0
 * wakes every other worker, which closes itself on its own thread exactly
 * as a single server does and then tells worker 0 (an atomic count and a
 * uv_async_t); worker 0 joins the threads before the last close callback
 * unmaps the one reservation. Counters cross threads only as snapshots
 * (stats.c) that each worker publishes before its loop waits, and as the
 * per-route records, which each worker writes with relaxed atomic stores
 * (metrics.c); nea__server_figures reads one worker's counters from any
 * thread, and totals.c sums the workers for the public readers.
 */
#include "server.h"

#include "log.h"
#include "sockets.h"
#include "tlsio.h"
#include "wsconn.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* libuv writes to sockets with write(2): a peer that closes while a
 * response is queued raises SIGPIPE, whose default action ends the process.
 * A host that chose a disposition keeps it; the default one is replaced. */
static void ignore_default_sigpipe(const nea_config *cfg)
{
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && !(sa.sa_flags & SA_SIGINFO) &&
        sa.sa_handler == SIG_DFL) {
        signal(SIGPIPE, SIG_IGN);
        nea__log(cfg, NEA_LOG_INFO, "SIGPIPE was at its default (terminate): now ignored");
    }
}

static void on_admission_changed(void *data);
static void on_connection(void *data, uv_stream_t *listener);
static void maybe_finish_close(void *data);

/* What the listening sockets report (sockets.c), on every worker. */
static const nea__sockets_hooks sockets_hooks = {
    .connection = on_connection,
    .closed = maybe_finish_close,
};

/* What the reservation holds, for the arithmetic in plan.c. */
static const nea__sizes sizes = {
    .server = sizeof(nea_server),
    .route = sizeof(nea__route),
    .route_stats = sizeof(nea_route_stats),
    .arena = sizeof(nea__arena),
    .conn = sizeof(nea__conn),
    .work = sizeof(nea__work),
    .conn_obuf = NEA__OBUF,
    .request = sizeof(nea_req),
    .min_handler = NEA__MIN_HANDLER_BYTES,
    .min_head = NEA__MIN_HEAD_BYTES,
    .host_max = NEA__HOST_MAX,
#if NEA_HAVE_TLS
    .tls_server = nea__tls_server_size, /* and the per-connection sizes: fill_sizes */
#endif
};

static nea__sizes all_sizes;
static uv_once_t sizes_once = UV_ONCE_INIT;

static void fill_sizes(void)
{
    all_sizes = sizes;
    all_sizes.tls_conn = nea__tls_conn_size();
    all_sizes.tls_records = nea__tls_records_size();
}

/* The sizes, with the TLS engine's (functions of tls.c, not constants). */
const nea__sizes *nea__server_sizes(void)
{
    uv_once(&sizes_once, fill_sizes);
    return &all_sizes;
}

int nea_config_plan(const nea_config *cfg, nea_plan *plan, char *errbuf, size_t errlen)
{
    /* The error bodies first: the plan sums their lengths. */
    int rc = nea__error_bodies_check(cfg, errbuf, errlen);
    return rc != 0 ? rc : nea__plan(cfg, nea__server_sizes(), plan, errbuf, errlen);
}

/* Worker i's server, at the start of its slab. */
static nea_server *slab_server(char *base, const nea_plan *plan, unsigned i)
{
    return (nea_server *)(base + nea__plan_slab(plan, i));
}

static void own_stats(const nea_server *s, nea_stats *out);

static void on_publish(uv_prepare_t *h)
{
    nea_server *s = h->data;
    nea_stats st;
    own_stats(s, &st);
    nea__stats_publish(&s->snapshot, &st);
}

static void on_worker_closed(nea_server *w, void *data)
{
    nea_server *g = w->group;
    (void)data;
    __atomic_fetch_add(&g->workers_closed, 1u, __ATOMIC_RELEASE);
    (void)uv_async_send(&g->notify);
}

/* On a worker's own thread: worker 0 began to close. */
static void on_wake(void *data)
{
    (void)nea_server_close(data, on_worker_closed, NULL);
}

static void begin_close(nea_server *s, void (*cb)(nea_server *, void *), void *data);

/* Worker 0's loop was woken from another thread: a worker finished
 * closing, or a close was asked for. */
static void on_notify(uv_async_t *h)
{
    nea_server *s = h->data;
    if (__atomic_exchange_n(&s->close_posted, false, __ATOMIC_ACQUIRE)) {
        begin_close(s, s->close_cb, s->close_data);
    }
    maybe_finish_close(s);
}

/* libuv starts its thread pool (threads, and their heap) on the first
 * job: a no-op job at listen moves that out of the first handler that
 * calls nea_req_work. */
static void pool_warm(uv_work_t *w)
{
    (void)w;
}

static void pool_warmed(uv_work_t *w, int status)
{
    nea_server *s = w->data;
    (void)status;
    s->pool_warming = false;
    maybe_finish_close(s);
}

/* Carves one worker's slab (s is its start) exactly as the plan laid it
 * out and wires the modules together on loop. */
static void server_init(nea_server *s, nea_server *group, unsigned index, uv_loop_t *loop,
                        const nea_config *cfg, const nea_plan *plan, const nea__layout *layout,
                        nea__tls_server *tls)
{
    char *base = (char *)s;
    s->cfg = *cfg;
    strcpy(s->host, cfg->host);
    s->cfg.host = s->host;
    strcpy(s->agent_host, cfg->agent_host != NULL ? cfg->agent_host : cfg->host);
    s->cfg.agent_host = s->agent_host;
    strcpy(s->unix_path, cfg->unix_path != NULL ? cfg->unix_path : "");
    s->cfg.unix_path = cfg->unix_path != NULL ? s->unix_path : NULL;
    s->cfg.inherit = NULL; /* worker 0 keeps the copy: s->inherit */
    s->inherit.agent = s->inherit.ready = -1;
    s->plan = *plan;
    s->loop = loop;
    s->index = index;
    s->group = group;
    s->flags_map = -1;
    s->hooks = &sockets_hooks;
    s->balance.flags_map = s->balance.socks_map = -1;
    nea__router_init(&s->router, (nea__route *)(base + layout->routes_off), cfg->max_routes,
                     cfg->read_buffer_size);
    nea__metrics_init(&s->metrics, base + layout->metrics_off, layout->metrics_count);
    for (unsigned k = 0; k < plan->class_count; k++) {
        const nea_plan_class *c = &plan->classes[k];
        nea__arena *table =
            (nea__arena *)(base + layout->arena_table_off) + layout->classes[k].first;
        for (unsigned i = 0; i < c->count; i++) {
            nea__arena_init(&table[i], base + nea__plan_arena(plan, layout, k, i).usable, c->size,
                            &s->fault);
            table[i].cls = k;
            table[i].home = &s->env.reqs;
        }
        nea__pool_init(&s->pools[k], table, c->count, cfg->scrub);
    }
    nea__statics_build(&s->statics, cfg, base + layout->errors_off);
    /* The host's array need not outlive nea_server_new: its copies live in
     * the statics. */
    s->cfg.error_bodies = NULL;
    s->cfg.error_body_count = 0;
    nea__conn_env_init(&s->env, loop, &s->cfg, &s->stats, &s->router, &s->statics, s->pools, plan);
    s->env.fault = &s->fault;
    s->env.reqs.server = group; /* what nea_req_server answers on every worker */
    s->env.records.metrics = &s->metrics;
    s->env.load = &s->load;
    nea__load_init(&s->load, loop, cfg->overload_target_ms, cfg->overload_interval_ms,
                   cfg->overload_budget_us, cfg->overload_hold_ms);
    s->env.handles_open++;
    s->env.tls = tls;
    s->env.tls_off = layout->conn_tls_off;
    nea__conn_work_pool_init(&s->env, base + layout->buffers_off, plan->conn_buffer_size,
                             plan->conn_buffers, layout->buf_rbuf_off, layout->buf_obuf_off,
                             layout->buf_tls_off);
    nea__admission_init(&s->admission, &s->env, s->pools, plan->class_count, &s->load,
                        base + layout->conns_off, plan->conn_slot_size, cfg->max_connections,
                        on_admission_changed, s);
    uv_timer_init(loop, &s->drain_timer);
    s->drain_timer.data = s;
    s->env.handles_open++;
    if (plan->workers > 1) {
        /* Unreferenced: publishing alone must not keep the host's loop
         * alive. */
        uv_prepare_init(loop, &s->publish);
        s->publish.data = s;
        uv_prepare_start(&s->publish, on_publish);
        uv_unref((uv_handle_t *)&s->publish);
        s->env.handles_open++;
        on_publish(&s->publish);
        if (index > 0) {
            s->env.handles_open++; /* its wake-up */
        }
    }
}

int nea_server_new(uv_loop_t *loop, const nea_config *cfg, nea_server **out)
{
    nea_plan plan;
    nea__layout layout;
    nea__region region;
    nea__fault *fault = NULL;
    nea__tls_server *tls = NULL;
    nea_server *s;
    char err[256], line[512];
    unsigned i;
    int rc;

    rc = nea_config_plan(cfg, &plan, err, sizeof(err));
    if (rc != 0) {
        nea__log(cfg, NEA_LOG_ERROR, "config refused: %s", err);
        return rc;
    }
    if (cfg->unix_path != NULL && strlen(cfg->unix_path) >= NEA__UNIX_PATH_MAX) {
        nea__log(cfg, NEA_LOG_ERROR, "config refused: unix_path is %zu bytes, at most %d fit",
                 strlen(cfg->unix_path), NEA__UNIX_PATH_MAX - 1);
        return UV_ENAMETOOLONG;
    }
    nea__plan_layout(cfg, nea__server_sizes(), &plan, &layout);
#ifdef NEA_FAULT_INJECTION
    fault = nea__fault_next_server();
#endif
    rc = nea__region_prepare(&region, &plan, &layout, cfg, fault);
    if (rc != 0) {
        return rc;
    }
    s = slab_server(region.base, &plan, 0);
    /* TLS: the certificate is read and checked now, into the server object
     * after the slabs (shared by every worker). */
    if (nea__plan_tls(cfg)) {
        rc = nea__tls_server_init(region.base + layout.tls_server_off, plan.tls_sessions, &cfg->tls,
                                  nea__tlsio_admit, &tls, err, sizeof(err));
        if (rc != 0) {
            nea__log(cfg, NEA_LOG_ERROR, "TLS refused: %s",
                     rc == NEA_ETLS_CERT || rc == NEA_ENOTLS ? err : nea_strerror(rc));
            nea__region_unmap(&region);
            return rc;
        }
    }
    /* The workers' loops first: the only step here that can fail. */
    for (i = 1, rc = 0; i < plan.workers && rc == 0; i++) {
        nea_server *w = slab_server(region.base, &plan, i);
        rc = nea__worker_init(&w->worker, on_wake, w);
    }
    if (rc != 0) {
        nea__log(cfg, NEA_LOG_ERROR, "cannot create the loop of worker %u: %s", i - 1,
                 uv_strerror(rc));
        while (--i > 1) {
            nea_server *w = slab_server(region.base, &plan, i - 1);
            uv_close((uv_handle_t *)&w->worker.wake, NULL);
            nea__worker_run_here(&w->worker);
        }
        nea__tls_server_destroy(tls);
        nea__region_unmap(&region);
        return rc;
    }
    s->region = region;
#ifdef NEA_FAULT_INJECTION
    s->fault = *fault;
    memset(fault, 0, sizeof(*fault));
#endif
    for (i = 0; i < plan.workers; i++) {
        nea_server *w = slab_server(region.base, &plan, i);
        server_init(w, s, i, i == 0 ? loop : &w->worker.loop, cfg, &plan, &layout, tls);
    }
    if (cfg->inherit != NULL) {
        s->inherit = *cfg->inherit;
    }
    s->owner = uv_thread_self();
    uv_async_init(loop, &s->notify, on_notify);
    s->notify.data = s;
    uv_unref((uv_handle_t *)&s->notify); /* referenced while closing */
    s->env.handles_open++;

    ignore_default_sigpipe(cfg);
    nea_plan_format(&plan, line, sizeof(line));
    nea__log(&s->cfg, NEA_LOG_INFO, "%s", line);
    *out = s;
    return 0;
}

int nea_server_route_class(nea_server *s, const char *method, const char *path, nea_handler_fn fn,
                           void *data, unsigned flags, unsigned arena_class)
{
    NEA__NEED(s, "server");
    char why[160];
    int rc;
    if (s->started) {
        nea__log(&s->cfg, NEA_LOG_ERROR, "route refused: the workers are running");
        return NEA_ESTATE;
    }
    if (arena_class >= s->plan.class_count) {
        nea__log(&s->cfg, NEA_LOG_ERROR,
                 "route refused: arena class %u is not declared (%u classes)", arena_class,
                 s->plan.class_count);
        return UV_EINVAL;
    }
    rc = nea__router_add(&s->router, method, path, fn, data, flags, why, sizeof(why));
    if (rc != 0) {
        nea__log(&s->cfg, NEA_LOG_ERROR, "route refused: %s", why);
        return rc;
    }
    s->router.routes[s->router.count - 1].arena_class = arena_class;
    nea__metrics_route_added(&s->metrics, method, path, arena_class);
    return 0;
}

int nea_server_route_flags(nea_server *s, const char *method, const char *path, nea_handler_fn fn,
                           void *data, unsigned flags)
{
    NEA__NEED(s, "server");
    return nea_server_route_class(s, method, path, fn, data, flags, 0);
}

int nea_server_route_ws(nea_server *s, const char *path, const nea_ws_route *route, void *data)
{
    NEA__NEED(s, "server");
    uint64_t room, limit;
    nea__route *rt;
    int rc;
    if (route == NULL || route->message == NULL || (route->flags & ~(unsigned)NEA_WS_PIECES) != 0) {
        nea__log(&s->cfg, NEA_LOG_ERROR, "WebSocket route refused: %s",
                 route == NULL            ? "no route"
                 : route->message == NULL ? "no message handler"
                                          : "unknown flags");
        return UV_EINVAL;
    }
    if (route->arena_class >= s->plan.class_count) {
        return nea_server_route_class(s, "GET", path, nea__wsconn_upgrade, data, 0,
                                      route->arena_class); /* refused, and logged, there */
    }
    room = nea__wsconn_default_limit(s->plan.classes[route->arena_class].size);
    limit = route->max_message != 0 ? route->max_message : room;
    if ((route->flags & NEA_WS_PIECES) != 0) {
        limit = route->max_message; /* 0: none */
    } else if (limit > room) {
        nea__log(&s->cfg, NEA_LOG_ERROR,
                 "WebSocket route %s refused: max_message %" PRIu64
                 " is more than a message arena of class %u holds (%" PRIu64
                 "); use NEA_WS_PIECES or a larger class",
                 path != NULL ? path : "(null)", route->max_message, route->arena_class, room);
        return UV_EINVAL;
    }
    rc = nea_server_route_class(s, "GET", path, nea__wsconn_upgrade, data, 0, route->arena_class);
    if (rc == 0) {
        rt = &s->router.routes[s->router.count - 1]; /* the route just added */
        rt->ws = route;
        rt->body_max = limit;
    }
    return rc;
}

int nea_server_add_route(nea_server *s, const nea_route *r)
{
    NEA__NEED(s, "server");
    if (r->ws != NULL) {
        if (r->fn != NULL || r->method == NULL || strcmp(r->method, "GET") != 0) {
            nea__log(&s->cfg, NEA_LOG_ERROR,
                     "route refused: a WebSocket route is a GET route without fn");
            return UV_EINVAL;
        }
        return nea_server_route_ws(s, r->path, r->ws, r->data);
    }
    int rc =
        nea_server_route_class(s, r->method, r->path, r->fn, r->data, r->flags, r->arena_class);
    if (rc == 0 && (r->flags & NEA_ROUTE_STREAM_BODY) != 0 && r->max_body > 0) {
        s->router.routes[s->router.count - 1].body_max = r->max_body; /* the route just added */
    }
    if (rc == 0) {
        s->router.routes[s->router.count - 1].response_ms = r->response_timeout_ms;
    }
    return rc;
}

int nea_server_route_timeout(nea_server *s, const char *method, const char *path,
                             unsigned response_timeout_ms)
{
    NEA__NEED(s, "server");
    nea__route *r;
    if (method == NULL || path == NULL) {
        return UV_EINVAL;
    }
    if (s->started) {
        nea__log(&s->cfg, NEA_LOG_ERROR, "route timeout refused: the workers are running");
        return NEA_ESTATE;
    }
    r = nea__router_get(&s->router, method, path);
    if (r == NULL) {
        nea__log(&s->cfg, NEA_LOG_ERROR, "route timeout refused: no route %s %s", method, path);
        return UV_ENOENT;
    }
    r->response_ms = response_timeout_ms;
    return 0;
}

int nea_server_route_stream(nea_server *s, const char *method, const char *path, nea_handler_fn fn,
                            void *data, unsigned flags, uint64_t max_body)
{
    NEA__NEED(s, "server");
    nea_route r = {.method = method,
                   .path = path,
                   .fn = fn,
                   .data = data,
                   .flags = flags | NEA_ROUTE_STREAM_BODY,
                   .max_body = max_body};
    return nea_server_add_route(s, &r);
}

int nea_server_route(nea_server *s, const char *method, const char *path, nea_handler_fn fn,
                     void *data)
{
    NEA__NEED(s, "server");
    return nea_server_route_flags(s, method, path, fn, data, 0);
}

uv_loop_t *nea_server_loop(const nea_server *s)
{
    NEA__NEED(s, "server");
    return s->loop;
}

const nea_plan *nea_server_plan(const nea_server *s)
{
    NEA__NEED(s, "server");
    return &s->plan;
}

int nea_server_port(const nea_server *s)
{
    NEA__NEED(s, "server");
    return s->listener.listening && s->listener.family != AF_UNIX ? s->listener.port : -1;
}

static void own_stats(const nea_server *s, nea_stats *out)
{
    *out = s->stats;
    out->arena_class_count = s->plan.class_count;
    for (unsigned k = 0; k < s->plan.class_count; k++) {
        const nea__pool *p = &s->pools[k];
        nea_stats_class *c = &out->classes[k];
        c->size = s->plan.classes[k].size;
        c->count = p->count;
        c->in_use = p->in_use;
        c->high_water = p->high_water;
        c->peak_bytes = p->peak_bytes;
    }
    out->queue_length = s->admission.wait_len;
    out->conn_buffers = s->env.works.count;
    out->conn_buffers_in_use = s->env.works.in_use;
    out->conn_buffers_high_water = s->env.works.high_water;
    out->buffer_waiters = s->admission.bufwait_len;
    out->shedding = s->load.shedding;
    out->shed_transitions = s->load.transitions;
    out->loop_lag_us = s->load.lag / 1000u;
}

/* True when worker w runs on the calling thread (worker 0: the thread that
 * created the server), so its live state may be touched directly. */
static bool runs_here(const nea_server *w)
{
    const nea__worker *cur = nea__worker_current();
    uv_thread_t self;
    if (w->index != 0) {
        return cur == &w->worker;
    }
    self = uv_thread_self();
    return cur == NULL && uv_thread_equal(&w->owner, &self);
}

void nea__server_figures(const nea_server *w, nea_stats *out)
{
    if (w->plan.workers == 1 || runs_here(w)) {
        own_stats(w, out);
    } else {
        nea__stats_read(&w->snapshot, out);
    }
}

/* Keeps this worker's flag in the balance program's map in step with
 * whether it has a free slot, so that a full worker stops being dealt new
 * connections while a sibling has room (balance.c). */
static void report_full(nea_server *s)
{
    bool full = s->admission.free_conns == NULL;
    if (s->flags_map >= 0 && full != s->reported_full) {
        s->reported_full = full;
        nea__balance_set_full(s->flags_map, s->index, full);
    }
}

/* A connection is pending on one of the worker's listeners. */
static void on_connection(void *data, uv_stream_t *listener)
{
    nea_server *s = data;
    nea__admission_on_connection(&s->admission, listener);
    report_full(s);
}

/* A slot, a reject handle or an arena came back. */
static void on_admission_changed(void *data)
{
    report_full(data);
    maybe_finish_close(data);
}

int nea_server_agent_port(const nea_server *s)
{
    NEA__NEED(s, "server");
    return s->agent.listener.listening ? s->agent.listener.port : -1;
}

/* One worker's part of what a balancer is told. Worker 0 (the agent's own
 * thread) is read live; another worker from its published counters, where
 * its busy slots are its open connections (idle keep-alive ones included:
 * the process looks a little fuller than it is, never emptier). */
static void add_capacity(nea__capacity *out, const nea_server *w, const nea_stats *st)
{
    nea_stats_class arenas = nea_stats_arenas(st);
    unsigned reserved = w->admission.reserved, count = arenas.count;
    unsigned free = arenas.count - arenas.in_use;
    out->arenas += count > reserved ? count - reserved : 0;
    out->arenas_free += free > reserved ? free - reserved : 0;
    out->queued += st->queue_length;
    out->slots += w->admission.count;
    out->slots_busy +=
        w->index == 0 ? nea__admission_slots_busy(&w->admission) : st->connections_open;
    out->shedding = out->shedding || st->shedding > 0;
}

/* What a balancer is told, read over the whole server (every worker) at
 * once. */
static void read_capacity(void *data, nea__capacity *out)
{
    const nea_server *s = data;
    nea_stats st;
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < s->plan.workers; i++) {
        const nea_server *w = nea__server_worker(s, i);
        nea__server_figures(w, &st);
        add_capacity(out, w, &st);
    }
    out->draining = s->closing;
}

/* Every other worker: its own copy of the routes (and of their metrics
 * records), its own socket on worker 0's address and port, then its thread.
 * On an error, workers not running stop listening; the running ones stop
 * when the server is closed. */
static int start_workers(nea_server *s)
{
    unsigned i;
    int rc = 0;
    for (i = 1; i < s->plan.workers && rc == 0; i++) {
        nea_server *w = nea__server_worker(s, i);
        nea__router_copy(&w->router, &s->router);
        for (unsigned r = 1; r < s->metrics.count; r++) {
            const nea_route_stats *m = &s->metrics.routes[r];
            nea__metrics_route_added(&w->metrics, m->method, m->path, m->arena_class);
        }
        rc = nea__sockets_listen(w);
    }
    if (rc == 0) {
        nea__sockets_balance(s);
    }
    for (i = 1; i < s->plan.workers && rc == 0; i++) {
        rc = nea__worker_start(&nea__server_worker(s, i)->worker);
        if (rc != 0) {
            nea__log(&s->cfg, NEA_LOG_ERROR, "cannot start worker %u: %s", i, uv_strerror(rc));
        }
    }
    if (rc != 0) {
        nea__listener_close(&s->listener);
        for (i = 1; i < s->plan.workers; i++) {
            nea_server *w = nea__server_worker(s, i);
            if (!w->worker.started) {
                nea__listener_close(&w->listener);
            }
        }
    }
    return rc;
}

static int start_agent(nea_server *s)
{
    nea__listen_on on;
    memset(&on, 0, sizeof(on));
    on.host = s->cfg.agent_host;
    on.port = s->cfg.agent_port;
    on.fd = s->inherit.agent;
    s->inherit.agent = -1; /* the agent's listener owns it now */
    return nea__agent_start(&s->agent, s->loop, &s->cfg, &on, &s->stats, &s->env.handles_open,
                            read_capacity, maybe_finish_close, s);
}

int nea_server_listen(nea_server *s)
{
    int rc = 0;
    NEA__NEED(s, "server");
    if (s->listener.open || s->closing || s->started ||
        __atomic_load_n(&s->close_asked, __ATOMIC_ACQUIRE)) {
        return NEA_ESTATE;
    }
    if (s->inherit.http_count > s->plan.workers) {
        nea__log(&s->cfg, NEA_LOG_ERROR,
                 "cannot listen: %u inherited listening sockets for %u workers (each needs one "
                 "worker to serve it)",
                 s->inherit.http_count, s->plan.workers);
        rc = UV_EINVAL;
    }
    if (rc == 0) {
        rc = nea__sockets_listen(s);
    }
    if (rc == 0 && s->plan.workers > 1) {
        s->started = true;
        rc = start_workers(s);
    } else if (rc == 0 && s->cfg.reuse_port) {
        nea__sockets_join(s);
    }
    if (rc == 0 && s->cfg.agent_port >= 0) {
        rc = start_agent(s);
        if (rc != 0) {
            nea__listener_close(&s->listener);
        }
    }
    if (rc == 0 && !s->pool_warming) {
        s->pool_warm.data = s;
        s->pool_warming = uv_queue_work(s->loop, &s->pool_warm, pool_warm, pool_warmed) == 0;
    }
    nea__sockets_close_inherited(s);
    nea__upgrade_ready(s->inherit.ready, rc == 0);
    s->inherit.ready = -1;
    return rc;
}

#ifdef NEA_FAULT_INJECTION
int nea__server_adopt(nea_server *s, uv_os_sock_t fd)
{
    return nea__admission_adopt(&s->admission, fd);
}

void nea__server_give_back(nea_server *s, nea__arena *a)
{
    nea__req_give_back(&s->env.reqs, a);
}
#endif

int nea_server_tls_reload(nea_server *s, const nea_tls_cert *cert, char *errbuf, size_t errlen)
{
    char err[256];
    int rc;
    NEA__NEED(s, "server");
    if (cert == NULL) {
        return UV_EINVAL;
    }
    if (s->env.tls == NULL) {
        return NEA_HAVE_TLS ? NEA_ESTATE : NEA_ENOTLS;
    }
    /* The server object serialises this against every worker's handshakes. */
    rc = nea__tls_server_reload(s->env.tls, cert, err, sizeof(err));
    if (rc != 0) {
        if (rc != NEA_ETLS_CERT) {
            snprintf(err, sizeof(err), "%s", nea_strerror(rc));
        }
        nea__log(&s->cfg, NEA_LOG_ERROR, "TLS reload refused (the certificate in use stays): %s",
                 err);
        if (errbuf != NULL && errlen > 0) {
            snprintf(errbuf, errlen, "%s", err);
        }
        return rc;
    }
    nea__log(&s->cfg, NEA_LOG_INFO, "TLS certificate reloaded");
    return 0;
}

/* --- closing -------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    nea_server *s = h->data;
    if (--s->env.handles_open == 0) {
        void (*cb)(nea_server *, void *) = s->close_cb;
        void *data = s->close_data;
        nea__region region = s->region;
        if (s->index == 0) {
            /* Every worker's connections have ended: the certificates go. */
            nea__tls_server_destroy(s->env.tls);
        }
        nea__region_unmap(&region); /* s itself lives in the region */
        if (cb != NULL) {
            cb(s, data); /* s is unmapped: the pointer identifies, nothing more */
        }
    }
}

/* Once nothing is in use any more, closes the always-open timers; the last
 * close callback unmaps. Every handle that closes while the server closes
 * comes back here. */
static void maybe_finish_close(void *data)
{
    nea_server *s = data;
    if (!s->closing || s->env.handles_open == 0 || uv_is_closing((uv_handle_t *)&s->drain_timer) ||
        s->pool_warming) {
        return;
    }
    if (nea__admission_busy(&s->admission) || s->env.reqs.live > 0 || s->listener.open) {
        return;
    }
    if (s->plan.workers > 1 && s->index == 0) {
        if (__atomic_load_n(&s->workers_closed, __ATOMIC_ACQUIRE) < s->plan.workers - 1) {
            return;
        }
        /* Each has called back from its last close callback: its thread
         * is ending, and the reservation outlives it. */
        for (unsigned i = 1; i < s->plan.workers; i++) {
            nea__worker_join(&nea__server_worker(s, i)->worker);
        }
        nea__balance_close(&s->balance);
    }
    if (nea__sockets_check_open(s)) {
        return; /* its close callback comes back here */
    }
    if (s->upgrade.open) {
        nea__upgrade_close(&s->upgrade); /* its closed hook comes back here */
        return;
    }
    if (nea__agent_open(&s->agent)) {
        nea__agent_close(&s->agent); /* its closed hook comes back here */
        return;
    }
    uv_close((uv_handle_t *)&s->drain_timer, on_handle_closed);
    nea__load_close(&s->load, on_handle_closed, s);
    nea__admission_close_timers(&s->admission, on_handle_closed, s);
    if (s->index == 0) {
        uv_close((uv_handle_t *)&s->notify, on_handle_closed);
    } else {
        nea__worker_close_wake(&s->worker, on_handle_closed, s);
    }
    if (s->plan.workers > 1) {
        uv_close((uv_handle_t *)&s->publish, on_handle_closed);
    }
}

static void on_drain_deadline(uv_timer_t *t)
{
    nea_server *s = t->data;
    nea__log(&s->cfg, NEA_LOG_WARN, "drain deadline reached; cancelling %u requests",
             s->env.reqs.live);
    nea__admission_cancel(&s->admission);
}

/* The announcement is over: stop accepting and let what is in flight
 * finish. */
static void stop_accepting(nea_server *s)
{
    nea__listener_close(&s->listener);
    nea__admission_drain(&s->admission, nea__server_handed_off(s));
    uv_timer_start(&s->drain_timer, on_drain_deadline, s->cfg.drain_timeout_ms, 0);
    maybe_finish_close(s);
}

static void on_drain_delay(uv_timer_t *t)
{
    stop_accepting(t->data);
}

#ifdef NEA_FAULT_INJECTION
void nea__server_end_announcement(nea_server *s)
{
    uv_timer_stop(&s->drain_timer);
    stop_accepting(s);
}
#endif

/* The close starts on the server's own loop thread. */
static void begin_close(nea_server *s, void (*cb)(nea_server *, void *), void *data)
{
    s->closing = true;
    s->env.closing = true;
    s->close_cb = cb;
    s->close_data = data;
    if (s->balance_check_open) {
        /* It reads every worker's listener, which the workers close now. */
        uv_timer_stop(&s->balance_check);
    }
    if (s->plan.workers > 1 && s->index == 0) {
        uv_ref((uv_handle_t *)&s->notify);
        for (unsigned i = 1; i < s->plan.workers; i++) {
            nea_server *w = nea__server_worker(s, i);
            if (w->worker.started) {
                nea__worker_wake(&w->worker);
            } else {
                /* Never ran: it closes at once, here. */
                on_wake(w);
                nea__worker_run_here(&w->worker);
            }
        }
    }
    if (nea__server_handed_off(s)) {
        /* The successor accepts on the same sockets and answers the
         * balancer's agent: nothing to announce, nothing is refused. */
        nea__agent_close(&s->agent);
        stop_accepting(s);
    } else if (s->cfg.drain_delay_ms > 0 && s->listener.listening) {
        nea__log(&s->cfg, NEA_LOG_INFO, "draining: still accepting for %u ms",
                 s->cfg.drain_delay_ms);
        uv_timer_start(&s->drain_timer, on_drain_delay, s->cfg.drain_delay_ms, 0);
    } else {
        stop_accepting(s);
    }
}

int nea_server_close(nea_server *s, void (*cb)(nea_server *s, void *data), void *data)
{
    NEA__NEED(s, "server");
    if (s->index > 0) {
        /* A worker, on its own thread, told by worker 0. */
        if (s->closing) {
            return NEA_ESTATE;
        }
        begin_close(s, cb, data);
        return 0;
    }
    /* One close per server, whichever thread asks first. */
    if (__atomic_exchange_n(&s->close_asked, true, __ATOMIC_ACQ_REL)) {
        return NEA_ESTATE;
    }
    if (!runs_here(s)) {
        /* Another thread (a handler on another worker, a host thread):
         * the close begins on the server's loop, from its next iteration. */
        s->close_cb = cb;
        s->close_data = data;
        __atomic_store_n(&s->close_posted, true, __ATOMIC_RELEASE);
        (void)uv_async_send(&s->notify);
        return 0;
    }
    begin_close(s, cb, data);
    return 0;
}
