/*
 * server.c - server lifecycle: the reservation's layout, listening,
 * admission of connections, graceful close, counters and logging.
 *
 * Admission: a new connection takes a free slot. With none free, the oldest
 * idle keep-alive connection is closed to make room (the new one is accepted
 * when that close completes). With no idle connection either, it is accepted
 * on one of a few reject handles, told 503 with Retry-After and closed: never
 * a silent drop. While a connection waits to be accepted libuv stops polling
 * the listener, so nothing spins; at the process fd limit libuv's own
 * reserve-fd trick sheds connections without a busy loop.
 *
 * Close: stop accepting, close idle connections, let requests in flight
 * finish for drain_timeout_ms, then cancel what is left; once every handle
 * has closed the reservation is unmapped and the user's callback runs.
 */
#include "internal.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void nea__logv(const nea_config *cfg, int level, const char *fmt, va_list ap)
{
    char buf[512];
    vsnprintf(buf, sizeof(buf), fmt, ap);
    if (cfg->log != NULL) {
        cfg->log(cfg->log_data, level, buf);
    } else {
        fprintf(stderr, "libnea: %s\n", buf);
    }
}

void nea__log(nea_server *s, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    nea__logv(&s->cfg, level, fmt, ap);
    va_end(ap);
}

void nea__count_response(nea_server *s, int status)
{
    int cls = status / 100;
    if (cls >= 1 && cls <= 5) {
        s->stats.responses[cls]++;
    }
}

static void log_cfg(const nea_config *cfg, int level, const char *fmt, ...) NEA_PRINTF(3, 4);

static void log_cfg(const nea_config *cfg, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    nea__logv(cfg, level, fmt, ap);
    va_end(ap);
}

/* --- creation ------------------------------------------------------------ */

static nea__conn *conn_at(const nea_server *s, unsigned i)
{
    return (nea__conn *)((char *)s->conns + (size_t)i * s->plan.conn_slot_size);
}

/* libuv writes to sockets with write(2): a peer that closes while a
 * response is queued raises SIGPIPE, whose default action ends the process.
 * A host that chose a disposition keeps it; the default one is replaced. */
static void ignore_default_sigpipe(const nea_config *cfg)
{
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && !(sa.sa_flags & SA_SIGINFO) &&
        sa.sa_handler == SIG_DFL) {
        signal(SIGPIPE, SIG_IGN);
        log_cfg(cfg, NEA_LOG_INFO, "SIGPIPE was at its default (terminate): now ignored");
    }
}

/* Applies fn to every part of the reservation that is not a guard page:
 * the fixed part with the connection slots, then each arena. */
static int each_usable_range(nea__region *r, const nea_plan *plan,
                             int (*fn)(nea__region *, void *, size_t))
{
    size_t span = NEA__ROUND_UP(plan->arena_size, plan->page_size);
    char *arenas = r->base + plan->fixed_overhead + plan->connections_bytes;
    int rc = fn(r, r->base, plan->fixed_overhead + plan->connections_bytes);
    for (unsigned i = 0; rc == 0 && i < plan->arena_count; i++) {
        rc = fn(r, arenas + (size_t)i * plan->arena_stride, span);
    }
    return rc;
}

/* Maps the reservation and applies guard pages, prefault and lock, before
 * anything is stored in it. mlock over a PROT_NONE page fails, and guard
 * pages must never become resident: both walk the usable ranges only. */
static int prepare_region(nea__region *r, const nea_plan *plan, const nea_config *cfg)
{
    size_t span = NEA__ROUND_UP(plan->arena_size, plan->page_size);
    char *arenas;
    int rc = nea__region_map(r, plan->total, cfg->prefault || cfg->lock_memory);

    if (rc != 0) {
        log_cfg(cfg, NEA_LOG_ERROR, "cannot reserve %zu bytes: %s", plan->total, nea_strerror(rc));
        return rc;
    }
    arenas = r->base + plan->fixed_overhead + plan->connections_bytes;
    for (unsigned i = 0; cfg->guard_pages && i < plan->arena_count; i++) {
        rc = nea__region_guard(r, arenas + (size_t)i * plan->arena_stride + span, plan->page_size);
        if (rc != 0) {
            log_cfg(cfg, NEA_LOG_ERROR,
                    "cannot protect guard page %u: %s (vm.max_map_count too low for %u arenas? "
                    "set guard_pages = 0)",
                    i, nea_strerror(rc), plan->arena_count);
            nea__region_unmap(r);
            return rc;
        }
    }
    if (cfg->prefault) {
        (void)each_usable_range(r, plan, nea__region_touch);
    }
    if (cfg->lock_memory && (rc = each_usable_range(r, plan, nea__region_lock)) != 0) {
        log_cfg(cfg, NEA_LOG_ERROR, "cannot lock %zu bytes: %s", plan->total, nea_strerror(rc));
        nea__region_unmap(r);
        return rc;
    }
    r->locked = cfg->lock_memory != 0;
    return 0;
}

int nea_server_new(uv_loop_t *loop, const nea_config *cfg, nea_server **out)
{
    nea_plan plan;
    nea__region region;
    nea_server *s;
    char err[256], *p, *conns, *arenas;
    int rc;

    rc = nea_config_plan(cfg, &plan, err, sizeof(err));
    if (rc != 0) {
        log_cfg(cfg, NEA_LOG_ERROR, "config refused: %s", err);
        return rc;
    }
    rc = prepare_region(&region, &plan, cfg);
    if (rc != 0) {
        return rc;
    }

    /* Carve the mapping exactly as the plan laid it out (config.c). */
    p = region.base;
    s = (nea_server *)p;
    p += NEA__ROUND_UP(sizeof(*s), 64);
    s->routes = (nea__route *)p;
    p += NEA__ROUND_UP((size_t)cfg->max_routes * sizeof(nea__route), 64);
    s->pool.arenas = (nea__arena *)p;
    conns = region.base + plan.fixed_overhead;
    arenas = conns + plan.connections_bytes;

    s->loop = loop;
    s->cfg = *cfg;
    strcpy(s->host, cfg->host);
    s->cfg.host = s->host;
    s->plan = plan;
    s->region = region;
    s->port = -1;
    s->wait_max = cfg->queue_length != 0 ? cfg->queue_length : cfg->max_connections;

    nea__pool_init(&s->pool, s->pool.arenas, arenas, plan.arena_count, plan.arena_stride,
                   NEA__ROUND_UP(plan.arena_size, plan.page_size), plan.arena_size, cfg->scrub);

    s->free_conns = NULL;
    s->conns = (nea__conn *)conns;
    for (unsigned i = cfg->max_connections; i-- > 0;) {
        nea__conn *c = conn_at(s, i);
        char *rbuf = (char *)c + NEA__ROUND_UP(sizeof(nea__conn), 64);
        nea__conn_init(c, s, rbuf, rbuf + NEA__ROUND_UP(cfg->read_buffer_size, 64));
        c->next = s->free_conns;
        s->free_conns = c;
    }
    for (unsigned i = 0; i < NEA__REJECT_SLOTS; i++) {
        nea__reject *r = &s->rejects[i];
        r->srv = s;
        uv_timer_init(loop, &r->timer);
        r->timer.data = r;
        s->handles_open++;
        r->next = s->free_rejects;
        s->free_rejects = r;
    }
    uv_timer_init(loop, &s->drain_timer);
    s->drain_timer.data = s;
    s->handles_open++;

    nea__http_settings(&s->settings);
    nea__responses_build(s);
    s->stats.arena_count = plan.arena_count;

    ignore_default_sigpipe(cfg);
    nea_plan_format(&plan, err, sizeof(err));
    nea__log(s, NEA_LOG_INFO, "%s", err);
    *out = s;
    return 0;
}

const nea_plan *nea_server_plan(const nea_server *s)
{
    return &s->plan;
}

int nea_server_port(const nea_server *s)
{
    return s->listening ? s->port : -1;
}

void nea_server_stats(const nea_server *s, nea_stats *out)
{
    *out = s->stats;
    out->arenas_in_use = s->pool.in_use;
    out->arenas_high_water = s->pool.high_water;
    out->arena_count = s->pool.count;
    out->queue_length = s->wait_len;
    out->arena_peak_bytes = s->pool.peak_bytes;
}

/* --- rejecting with 503 when every slot is busy --------------------------- */

static void on_reject_closed(uv_handle_t *h)
{
    nea__reject *r = h->data;
    nea_server *s = r->srv;
    r->in_use = false;
    r->next = s->free_rejects;
    s->free_rejects = r;
    s->handles_open--;
    nea__server_slot_freed(s);
}

static void reject_close(nea__reject *r)
{
    if (!uv_is_closing((uv_handle_t *)&r->tcp)) {
        uv_timer_stop(&r->timer);
        uv_close((uv_handle_t *)&r->tcp, on_reject_closed);
    }
}

static void on_reject_timer(uv_timer_t *t)
{
    reject_close(t->data);
}

static void on_reject_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    nea__reject *r = h->data;
    (void)suggested;
    /* Whatever the peer sent is discarded. */
    *buf = uv_buf_init(r->discard, sizeof(r->discard));
}

static void on_reject_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    if (n < 0) {
        reject_close(st->data);
    }
}

static void on_reject_written(uv_write_t *w, int status)
{
    nea__reject *r = w->data;
    if (status < 0 || uv_shutdown(&r->shut, (uv_stream_t *)&r->tcp, NULL) != 0) {
        reject_close(r);
    }
}

static void reject(nea_server *s)
{
    nea__reject *r = s->free_rejects;
    unsigned n;

    s->free_rejects = r->next;
    r->in_use = true;
    uv_tcp_init(s->loop, &r->tcp);
    s->handles_open++;
    r->tcp.data = r;
    if (uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&r->tcp) != 0) {
        reject_close(r);
        return;
    }
    s->stats.shed_503++;
    nea__count_response(s, 503);
    n = nea__static_bufs(s, NEA__E503, "Connection: close\r\n", "", 0, false, r->hdrbuf, r->ebufs);
    r->wreq.data = r;
    if (uv_write(&r->wreq, (uv_stream_t *)&r->tcp, r->ebufs, n, on_reject_written) != 0) {
        reject_close(r);
        return;
    }
    uv_read_start((uv_stream_t *)&r->tcp, on_reject_alloc, on_reject_read);
    uv_timer_start(&r->timer, on_reject_timer, NEA__LINGER_MS / 4, 0);
}

/* --- accepting ------------------------------------------------------------ */

static void accept_pending(nea_server *s)
{
    nea__conn *c, *victim;

    if (!s->accept_pending || s->closing) {
        return;
    }
    c = s->free_conns;
    if (c != NULL) {
        s->free_conns = c->next;
        s->accept_pending = false;
        (void)nea__conn_accept(c, (uv_stream_t *)&s->listener, -1);
    } else if ((victim = nea__conn_evictable(s)) != NULL) {
        /* Make room: the slot frees when the close completes, and the
         * waiting connection is accepted then (nea__server_slot_freed). */
        s->stats.evicted++;
        nea__conn_close(victim);
    } else if (s->free_rejects != NULL) {
        s->accept_pending = false;
        reject(s);
    }
    /* else: every reject handle is busy closing; libuv stops polling the
     * listener until we accept, and a closing handle calls back soon. */
}

static void on_connection(uv_stream_t *listener, int status)
{
    nea_server *s = listener->data;
    if (status < 0) {
        /* UV_EMFILE / UV_ENFILE: libuv already accepted and closed the
         * connection with its reserve fd, so the listener does not spin. A
         * flood would repeat this thousands of times a second: log it at
         * most once a second. */
        uint64_t now = uv_now(s->loop);
        s->stats.accept_errors++;
        if (now - s->accept_error_logged_ms >= 1000 || s->accept_error_logged_ms == 0) {
            s->accept_error_logged_ms = now;
            nea__log(s, NEA_LOG_WARN, "accept failed: %s (%llu so far)", uv_strerror(status),
                     (unsigned long long)s->stats.accept_errors);
        }
        return;
    }
    s->accept_pending = true;
    accept_pending(s);
}

static void on_listener_closed(uv_handle_t *h)
{
    nea_server *s = h->data;
    s->listening = false;
    s->listener_open = false;
    s->handles_open--;
    nea__server_maybe_finish_close(s);
}

int nea_server_listen(nea_server *s)
{
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
        struct sockaddr_storage ss;
    } addr;
    int len = sizeof(addr), rc;

    if (s->listener_open || s->closing) {
        return NEA_ESTATE;
    }
    if (uv_ip4_addr(s->host, s->cfg.port, &addr.in4) != 0 &&
        uv_ip6_addr(s->host, s->cfg.port, &addr.in6) != 0) {
        nea__log(s, NEA_LOG_ERROR, "host \"%s\" is not an IPv4 or IPv6 address", s->host);
        return UV_EINVAL;
    }
    uv_tcp_init(s->loop, &s->listener);
    s->handles_open++;
    s->listener_open = true;
    s->listener.data = s;
    rc = uv_tcp_bind(&s->listener, &addr.sa, 0);
    if (rc == 0) {
        rc = uv_listen((uv_stream_t *)&s->listener, s->cfg.backlog, on_connection);
    }
    if (rc == 0) {
        rc = uv_tcp_getsockname(&s->listener, &addr.sa, &len);
    }
    if (rc != 0) {
        nea__log(s, NEA_LOG_ERROR, "cannot listen on %s:%d: %s", s->host, s->cfg.port,
                 uv_strerror(rc));
        uv_close((uv_handle_t *)&s->listener, on_listener_closed);
        return rc;
    }
    s->port = ntohs(addr.sa.sa_family == AF_INET6 ? addr.in6.sin6_port : addr.in4.sin_port);
    s->listening = true;
    return 0;
}

#ifdef NEA_FAULT_INJECTION
int nea__server_adopt(nea_server *s, uv_os_sock_t fd)
{
    nea__conn *c = s->free_conns;
    if (c == NULL) {
        return UV_EBUSY;
    }
    s->free_conns = c->next;
    return nea__conn_accept(c, NULL, fd);
}
#endif

void nea__server_slot_freed(nea_server *s)
{
    accept_pending(s);
    nea__server_maybe_finish_close(s);
}

/* An arena returned to the pool: the first connection waiting gets it. A
 * granted handler may respond at once and return its arena from inside this
 * loop; the nested call leaves the hand-off to this loop, so the stack stays
 * flat however long the queue is. */
void nea__server_arena_released(nea_server *s)
{
    if (s->granting) {
        return;
    }
    s->granting = true;
    while (s->wait_head != NULL && s->pool.free != NULL) {
        nea__conn *c = s->wait_head;
        uv_timer_stop(&c->timer);
        nea__conn_arena_ready(c, nea__pool_acquire(&s->pool));
    }
    s->granting = false;
    nea__server_maybe_finish_close(s);
}

/* --- closing -------------------------------------------------------------- */

static void on_server_handle_closed(uv_handle_t *h)
{
    nea_server *s = h->data;
    if (--s->handles_open == 0) {
        void (*cb)(nea_server *, void *) = s->close_cb;
        void *data = s->close_data;
        nea__region region = s->region;
        nea__region_unmap(&region); /* s itself lives in the region */
        if (cb != NULL) {
            cb(s, data); /* s is unmapped: the pointer identifies, nothing more */
        }
    }
}

static void close_timer(uv_timer_t *t, nea_server *s)
{
    t->data = s;
    uv_close((uv_handle_t *)t, on_server_handle_closed);
}

void nea__server_maybe_finish_close(nea_server *s)
{
    unsigned busy = 0;
    if (!s->closing || s->handles_open == 0) {
        return;
    }
    for (unsigned i = 0; i < s->cfg.max_connections; i++) {
        nea__conn *c = conn_at(s, i);
        busy += c->state != NEA__C_FREE;
    }
    for (unsigned i = 0; i < NEA__REJECT_SLOTS; i++) {
        busy += s->rejects[i].in_use;
    }
    if (busy > 0 || s->live_reqs > 0 || s->listener_open) {
        return;
    }
    /* Only the always-initialised timers remain open. */
    if (uv_is_closing((uv_handle_t *)&s->drain_timer)) {
        return;
    }
    close_timer(&s->drain_timer, s);
    for (unsigned i = 0; i < s->cfg.max_connections; i++) {
        nea__conn *c = conn_at(s, i);
        close_timer(&c->timer, s);
    }
    for (unsigned i = 0; i < NEA__REJECT_SLOTS; i++) {
        close_timer(&s->rejects[i].timer, s);
    }
}

static void on_drain_deadline(uv_timer_t *t)
{
    nea_server *s = t->data;
    nea__log(s, NEA_LOG_WARN, "drain deadline reached; cancelling %u requests", s->live_reqs);
    for (unsigned i = 0; i < s->cfg.max_connections; i++) {
        nea__conn_close(conn_at(s, i));
    }
}

void nea_server_close(nea_server *s, void (*cb)(nea_server *s, void *data), void *data)
{
    if (s->closing) {
        return;
    }
    s->closing = true;
    s->close_cb = cb;
    s->close_data = data;
    if (s->listener_open && !uv_is_closing((uv_handle_t *)&s->listener)) {
        uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    }
    for (unsigned i = 0; i < s->cfg.max_connections; i++) {
        nea__conn *c = conn_at(s, i);
        if (c->state == NEA__C_IDLE || c->state == NEA__C_HEAD) {
            nea__conn_close(c);
        } else if (c->state == NEA__C_QUEUED) {
            uv_timer_stop(&c->timer);
            nea__conn_respond_error(c, NEA__E503);
        }
    }
    uv_timer_start(&s->drain_timer, on_drain_deadline, s->cfg.drain_timeout_ms, 0);
    nea__server_maybe_finish_close(s);
}
