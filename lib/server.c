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
 */
#include "server.h"

#include "log.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

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

static void maybe_finish_close(void *data);

/* What the reservation holds, for the arithmetic in plan.c. */
static const nea__sizes sizes = {
    .server = sizeof(nea_server),
    .route = sizeof(nea__route),
    .route_stats = sizeof(nea_route_stats),
    .arena = sizeof(nea__arena),
    .conn = sizeof(nea__conn),
    .conn_obuf = NEA__OBUF,
    .request = sizeof(nea_req),
    .min_handler = NEA__MIN_HANDLER_BYTES,
    .min_head = NEA__MIN_HEAD_BYTES,
    .host_max = NEA__HOST_MAX,
};

int nea_config_plan(const nea_config *cfg, nea_plan *plan, char *errbuf, size_t errlen)
{
    return nea__plan(cfg, &sizes, plan, errbuf, errlen);
}

int nea_server_new(uv_loop_t *loop, const nea_config *cfg, nea_server **out)
{
    nea_plan plan;
    nea__layout layout;
    nea__region region;
    nea__fault *fault = NULL;
    nea_server *s;
    char err[256];
    int rc;

    rc = nea_config_plan(cfg, &plan, err, sizeof(err));
    if (rc != 0) {
        nea__log(cfg, NEA_LOG_ERROR, "config refused: %s", err);
        return rc;
    }
    nea__plan_layout(cfg, &sizes, &plan, &layout);
#ifdef NEA_FAULT_INJECTION
    fault = nea__fault_next_server();
#endif
    rc = nea__region_prepare(&region, &layout, cfg, fault);
    if (rc != 0) {
        return rc;
    }

    /* Carve the mapping exactly as the plan laid it out. */
    s = (nea_server *)region.base;
    s->cfg = *cfg;
    strcpy(s->host, cfg->host);
    s->cfg.host = s->host;
    strcpy(s->agent_host, cfg->agent_host != NULL ? cfg->agent_host : cfg->host);
    s->cfg.agent_host = s->agent_host;
    s->plan = plan;
    s->region = region;
    s->loop = loop;
#ifdef NEA_FAULT_INJECTION
    s->fault = *fault;
    memset(fault, 0, sizeof(*fault));
#endif
    nea__router_init(&s->router, (nea__route *)(region.base + layout.routes_off), cfg->max_routes,
                     cfg->read_buffer_size);
    nea__metrics_init(&s->metrics, region.base + layout.metrics_off, cfg->max_routes);
    for (unsigned k = 0; k < layout.class_count; k++) {
        const struct nea__layout_class *c = &layout.classes[k];
        nea__arena *table = (nea__arena *)(region.base + layout.arena_table_off) + c->first;
        nea__pool_init(&s->pools[k], table, region.base + c->off, c->count, c->stride, c->span,
                       c->size, cfg->scrub, &s->fault);
        for (unsigned i = 0; i < c->count; i++) {
            table[i].cls = k;
        }
    }
    nea__statics_build(&s->statics, cfg->retry_after_s);
    nea__conn_env_init(&s->env, loop, &s->cfg, &s->stats, &s->router, &s->statics, s->pools, &plan);
    s->env.fault = &s->fault;
    s->env.metrics = &s->metrics;
    s->env.load = &s->load;
    nea__load_init(&s->load, loop, cfg->overload_target_ms, cfg->overload_interval_ms,
                   cfg->overload_budget_us, cfg->overload_hold_ms);
    s->env.handles_open++;
    nea__admission_init(&s->admission, &s->env, s->pools, layout.class_count, &s->load,
                        region.base + layout.conns_off, layout.conn_stride, layout.conn_rbuf_off,
                        layout.conn_obuf_off, layout.conn_count, maybe_finish_close, s);
    uv_timer_init(loop, &s->drain_timer);
    s->drain_timer.data = s;
    s->env.handles_open++;
    s->stats.arena_count = plan.arena_count;

    ignore_default_sigpipe(cfg);
    nea_plan_format(&plan, err, sizeof(err));
    nea__log(&s->cfg, NEA_LOG_INFO, "%s", err);
    *out = s;
    return 0;
}

int nea_server_route_class(nea_server *s, const char *method, const char *path, nea_handler_fn fn,
                           void *data, unsigned flags, unsigned arena_class)
{
    char why[160];
    int rc;
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
    return nea_server_route_class(s, method, path, fn, data, flags, 0);
}

int nea_server_add_route(nea_server *s, const nea_route *r)
{
    int rc =
        nea_server_route_class(s, r->method, r->path, r->fn, r->data, r->flags, r->arena_class);
    if (rc == 0 && (r->flags & NEA_ROUTE_STREAM_BODY) != 0 && r->max_body > 0) {
        s->router.routes[s->router.count - 1].body_max = r->max_body; /* the route just added */
    }
    return rc;
}

int nea_server_route_stream(nea_server *s, const char *method, const char *path, nea_handler_fn fn,
                            void *data, unsigned flags, uint64_t max_body)
{
    nea_route r = {method, path, fn, data, flags | NEA_ROUTE_STREAM_BODY, 0, max_body};
    return nea_server_add_route(s, &r);
}

int nea_server_route(nea_server *s, const char *method, const char *path, nea_handler_fn fn,
                     void *data)
{
    return nea_server_route_flags(s, method, path, fn, data, 0);
}

uv_loop_t *nea_server_loop(const nea_server *s)
{
    return s->loop;
}

const nea_plan *nea_server_plan(const nea_server *s)
{
    return &s->plan;
}

int nea_server_port(const nea_server *s)
{
    return s->listener.listening ? s->listener.port : -1;
}

void nea_server_stats(const nea_server *s, nea_stats *out)
{
    *out = s->stats;
    out->arenas_in_use = out->arenas_high_water = out->arena_count = 0;
    out->arena_peak_bytes = 0;
    out->arena_class_count = s->plan.class_count;
    for (unsigned k = 0; k < s->plan.class_count; k++) {
        const nea__pool *p = &s->pools[k];
        nea_stats_class *c = &out->classes[k];
        c->size = s->plan.classes[k].size;
        c->count = p->count;
        c->in_use = p->in_use;
        c->high_water = p->high_water;
        c->peak_bytes = p->peak_bytes;
        out->arenas_in_use += p->in_use;
        out->arenas_high_water += p->high_water;
        out->arena_count += p->count;
        out->arena_peak_bytes =
            p->peak_bytes > out->arena_peak_bytes ? p->peak_bytes : out->arena_peak_bytes;
    }
    out->queue_length = s->admission.wait_len;
    out->shedding = s->load.shedding;
    out->shed_transitions = s->load.transitions;
    out->loop_lag_us = s->load.lag / 1000u;
}

unsigned nea_server_route_stats_count(const nea_server *s)
{
    return s->metrics.count;
}

int nea_server_route_stats(const nea_server *s, unsigned i, nea_route_stats *out)
{
    if (i >= s->metrics.count) {
        return UV_EINVAL;
    }
    *out = s->metrics.routes[i];
    return 0;
}

size_t nea_server_metrics_text(const nea_server *s, char *buf, size_t cap)
{
    nea_stats st;
    nea_server_stats(s, &st);
    return nea__metrics_write(s->metrics.routes, s->metrics.count, &st, buf, cap);
}

static void on_connection(void *data, uv_stream_t *listener)
{
    nea_server *s = data;
    nea__admission_on_connection(&s->admission, listener);
}

int nea_server_agent_port(const nea_server *s)
{
    return s->agent.listener.listening ? s->agent.listener.port : -1;
}

/* What a balancer is told, read over the whole server at once. */
static void read_capacity(void *data, nea__capacity *out)
{
    const nea_server *s = data;
    unsigned reserved = s->admission.reserved, count = 0, free = 0;
    for (unsigned k = 0; k < s->plan.class_count; k++) { /* every arena class together */
        count += s->pools[k].count;
        free += s->pools[k].count - s->pools[k].in_use;
    }
    out->arenas = count > reserved ? count - reserved : 0;
    out->arenas_free = free > reserved ? free - reserved : 0;
    out->queued = s->admission.wait_len;
    out->slots = s->admission.count;
    out->slots_busy = nea__admission_slots_busy(&s->admission);
    out->shedding = s->load.shedding;
    out->draining = s->closing;
}

int nea_server_listen(nea_server *s)
{
    int rc;
    if (s->listener.open || s->closing) {
        return NEA_ESTATE;
    }
    rc = nea__listener_start(&s->listener, s->loop, &s->cfg, s->cfg.host, s->cfg.port, &s->stats,
                             &s->env.handles_open, &s->fault, on_connection, maybe_finish_close, s);
    if (rc == 0 && s->cfg.agent_port >= 0) {
        rc =
            nea__agent_start(&s->agent, s->loop, &s->cfg, s->cfg.agent_host, s->cfg.agent_port,
                             &s->stats, &s->env.handles_open, read_capacity, maybe_finish_close, s);
        if (rc != 0) {
            nea__listener_close(&s->listener);
        }
    }
    return rc;
}

#ifdef NEA_FAULT_INJECTION
int nea__server_adopt(nea_server *s, uv_os_sock_t fd)
{
    return nea__admission_adopt(&s->admission, fd);
}

void nea__server_give_back(nea_server *s, nea__arena *a)
{
    nea__pool_release(&s->pools[a->cls], a);
    s->env.reqs.released(s->env.reqs.released_data);
}
#endif

/* --- closing -------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    nea_server *s = h->data;
    if (--s->env.handles_open == 0) {
        void (*cb)(nea_server *, void *) = s->close_cb;
        void *data = s->close_data;
        nea__region region = s->region;
        nea__region_unmap(&region); /* s itself lives in the region */
        if (cb != NULL) {
            cb(s, data); /* s is unmapped: the pointer identifies, nothing more */
        }
    }
}

/* Once nothing is in use any more, closes the always-open timers; the last
 * close callback unmaps. */
static void maybe_finish_close(void *data)
{
    nea_server *s = data;
    if (!s->closing || s->env.handles_open == 0 || uv_is_closing((uv_handle_t *)&s->drain_timer)) {
        return;
    }
    if (nea__admission_busy(&s->admission) || s->env.reqs.live > 0 || s->listener.open) {
        return;
    }
    if (nea__agent_open(&s->agent)) {
        nea__agent_close(&s->agent); /* its closed hook comes back here */
        return;
    }
    uv_close((uv_handle_t *)&s->drain_timer, on_handle_closed);
    nea__load_close(&s->load, on_handle_closed, s);
    nea__admission_close_timers(&s->admission, on_handle_closed, s);
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
    nea__admission_drain(&s->admission);
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

int nea_server_close(nea_server *s, void (*cb)(nea_server *s, void *data), void *data)
{
    if (s->closing) {
        return NEA_ESTATE;
    }
    s->closing = true;
    s->env.closing = true;
    s->close_cb = cb;
    s->close_data = data;
    if (s->cfg.drain_delay_ms > 0 && s->listener.listening) {
        nea__log(&s->cfg, NEA_LOG_INFO, "draining: still accepting for %u ms",
                 s->cfg.drain_delay_ms);
        uv_timer_start(&s->drain_timer, on_drain_delay, s->cfg.drain_delay_ms, 0);
    } else {
        stop_accepting(s);
    }
    return 0;
}
