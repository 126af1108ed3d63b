/*
 * admission.c - who gets a connection slot and who gets an arena.
 *
 * Slots: a new connection takes a free slot. With none free, a lingering
 * connection (its last response sent, draining input before the close)
 * gives way first, then the oldest idle keep-alive connection that has no
 * request on its way is closed to make room (the new one is accepted when
 * that close completes). With neither, it is accepted on one of a few reject handles,
 * told 503 with Retry-After and closed: never a silent drop. While a
 * connection waits to be accepted libuv stops polling the listener, so
 * nothing spins; at the process fd limit libuv's own reserve-fd trick sheds
 * connections without a busy loop.
 *
 * Arenas: a routed head takes a free arena at once, or waits in a bounded
 * FIFO for at most queue_timeout_ms, or is told 503 (queue full, no waiting
 * configured, or the server draining). An arena that returns goes to the
 * head that waited longest.
 *
 * This is where admission policy lives: the lists here are kept in step
 * with every slot's state through nea__conn_hooks, and nothing below calls
 * up into this file.
 */
#include "admission.h"

#include "stats.h"

#include <string.h>

/* --- lists ----------------------------------------------------------------- */

static void list_push(nea__conn **head, nea__conn **tail, nea__conn *c)
{
    c->next = NULL;
    c->prev = *tail;
    if (*tail != NULL) {
        (*tail)->next = c;
    } else {
        *head = c;
    }
    *tail = c;
    c->listed = true;
}

static void list_remove(nea__conn **head, nea__conn **tail, nea__conn *c)
{
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        *head = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    } else {
        *tail = c->prev;
    }
    c->next = c->prev = NULL;
    c->listed = false;
}

/* --- the slots' hooks --------------------------------------------------------- */

/* The list a slot in state st belongs to, if any. Only a connection that
 * has been answered can be evicted: a fresh one may hold a request that was
 * sent but not read yet. */
static nea__conn **list_of(nea__admission *adm, const nea__conn *c, nea__conn_state st,
                           nea__conn ***tail)
{
    switch (st) {
    case NEA__C_IDLE:
        *tail = &adm->idle_tail;
        return c->served ? &adm->idle_head : NULL;
    case NEA__C_QUEUED:
        *tail = &adm->wait_tail;
        return &adm->wait_head;
    case NEA__C_LINGER:
        *tail = &adm->linger_tail;
        return &adm->linger_head;
    default:
        return NULL;
    }
}

static void on_state(nea__conn *c, nea__conn_state from)
{
    nea__admission *adm = c->env->hooks_data;
    nea__conn **head, **tail;

    if (c->listed && (head = list_of(adm, c, from, &tail)) != NULL) {
        list_remove(head, tail, c);
        adm->wait_len -= from == NEA__C_QUEUED;
    }
    if ((head = list_of(adm, c, c->state, &tail)) != NULL) {
        list_push(head, tail, c);
        adm->wait_len += c->state == NEA__C_QUEUED;
    }
}

static void on_routed(nea__conn *c)
{
    nea__admission *adm = c->env->hooks_data;
    const nea_config *cfg = c->env->cfg;
    nea__arena *a = nea__pool_acquire(adm->pool);

    if (a != NULL) {
        nea__conn_arena_ready(c, a);
    } else if (cfg->queue_timeout_ms > 0 && adm->wait_len < adm->wait_max && !c->env->closing) {
        nea__conn_wait(c, cfg->queue_timeout_ms);
    } else {
        c->env->stats->shed_503++;
        nea__conn_respond_error(c, NEA__E503);
    }
}

static void accept_pending(nea__admission *adm);

static void on_closed(nea__conn *c)
{
    nea__admission *adm = c->env->hooks_data;
    c->next = adm->free_conns;
    adm->free_conns = c;
    accept_pending(adm);
    adm->changed(adm->changed_data);
}

static const nea__conn_hooks conn_hooks = {
    .state = on_state,
    .routed = on_routed,
    .closed = on_closed,
};

/* An arena returned to the pool: the first head waiting gets it. A granted
 * handler may respond at once and return its arena from inside this loop;
 * the nested call leaves the hand-off to this loop, so the stack stays flat
 * however long the queue is. */
static void on_arena_released(void *data)
{
    nea__admission *adm = data;
    if (adm->granting) {
        return;
    }
    adm->granting = true;
    while (adm->wait_head != NULL && adm->pool->free != NULL) {
        nea__conn *c = adm->wait_head;
        uv_timer_stop(&c->timer);
        nea__conn_arena_ready(c, nea__pool_acquire(adm->pool));
    }
    adm->granting = false;
    adm->changed(adm->changed_data);
}

/* --- rejecting with 503 when every slot is busy --------------------------- */

static void on_reject_closed(uv_handle_t *h)
{
    nea__reject *r = h->data;
    nea__admission *adm = r->adm;
    r->in_use = false;
    r->next = adm->free_rejects;
    adm->free_rejects = r;
    adm->env->handles_open--;
    accept_pending(adm);
    adm->changed(adm->changed_data);
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

static void reject(nea__admission *adm)
{
    nea__conn_env *env = adm->env;
    nea__reject *r = adm->free_rejects;
    unsigned n;

    adm->free_rejects = r->next;
    r->in_use = true;
    uv_tcp_init(env->loop, &r->tcp);
    env->handles_open++;
    r->tcp.data = r;
    if (uv_accept(adm->listener, (uv_stream_t *)&r->tcp) != 0) {
        reject_close(r);
        return;
    }
    env->stats->shed_503++;
    nea__stats_response(env->stats, 503);
    n = nea__static_bufs(env->statics, &env->date, uv_now(env->loop), NEA__E503,
                         "Connection: close\r\n", "", 0, false, r->hdrbuf, r->ebufs);
    r->wreq.data = r;
    if (uv_write(&r->wreq, (uv_stream_t *)&r->tcp, r->ebufs, n, on_reject_written) != 0) {
        reject_close(r);
        return;
    }
    uv_read_start((uv_stream_t *)&r->tcp, on_reject_alloc, on_reject_read);
    uv_timer_start(&r->timer, on_reject_timer, NEA__LINGER_MS / 4, 0);
}

/* --- accepting ------------------------------------------------------------ */

/* An idle keep-alive connection that may be closed to make room (answered
 * at least once, no request bytes waiting), oldest first; NULL if none. */
static nea__conn *evictable(nea__admission *adm)
{
    unsigned looked = 0;
    for (nea__conn *c = adm->idle_head; c != NULL && looked < NEA__EVICT_SCAN;
         c = c->next, looked++) {
        if (!nea__conn_input_waiting(c)) {
            return c;
        }
    }
    return NULL;
}

static void accept_pending(nea__admission *adm)
{
    nea__conn *c, *victim;

    if (!adm->accept_pending || adm->env->closing) {
        return;
    }
    c = adm->free_conns;
    if (c != NULL) {
        adm->free_conns = c->next;
        adm->accept_pending = false;
        (void)nea__conn_accept(c, adm->listener, -1);
    } else if (adm->linger_head != NULL) {
        /* Its last response is sent: the lingering only spares the peer a
         * reset, and a newcomer needs the slot more. Accepted on close. */
        nea__conn_close(adm->linger_head);
    } else if ((victim = evictable(adm)) != NULL) {
        /* Make room: the slot frees when the close completes, and the
         * waiting connection is accepted then (on_closed). */
        adm->env->stats->evicted++;
        nea__conn_close(victim);
    } else if (adm->free_rejects != NULL) {
        adm->accept_pending = false;
        reject(adm);
    }
    /* else: every reject handle is busy closing; libuv stops polling the
     * listener until we accept, and a closing handle calls back soon. */
}

void nea__admission_on_connection(nea__admission *adm, uv_stream_t *listener)
{
    adm->listener = listener;
    adm->accept_pending = true;
    accept_pending(adm);
}

int nea__admission_adopt(nea__admission *adm, uv_os_sock_t fd)
{
    nea__conn *c = adm->free_conns;
    if (c == NULL) {
        return UV_EBUSY;
    }
    adm->free_conns = c->next;
    return nea__conn_accept(c, NULL, fd);
}

/* --- setup and drain ---------------------------------------------------------- */

nea__conn *nea__admission_slot(const nea__admission *adm, unsigned i)
{
    return (nea__conn *)(adm->slots + (size_t)i * adm->stride);
}

void nea__admission_init(nea__admission *adm, nea__conn_env *env, nea__pool *pool, char *slots,
                         size_t stride, size_t rbuf_off, size_t obuf_off, unsigned count,
                         void (*changed)(void *data), void *changed_data)
{
    const nea_config *cfg = env->cfg;

    memset(adm, 0, sizeof(*adm));
    adm->env = env;
    adm->pool = pool;
    adm->slots = slots;
    adm->stride = stride;
    adm->count = count;
    adm->wait_max = cfg->queue_length != 0 ? cfg->queue_length : cfg->max_connections;
    adm->changed = changed;
    adm->changed_data = changed_data;
    env->hooks = &conn_hooks;
    env->hooks_data = adm;
    env->reqs.released = on_arena_released;
    env->reqs.released_data = adm;
    for (unsigned i = count; i-- > 0;) {
        nea__conn *c = nea__admission_slot(adm, i);
        char *base = (char *)c;
        nea__conn_init(c, env, base + rbuf_off, base + obuf_off);
        c->next = adm->free_conns;
        adm->free_conns = c;
    }
    for (unsigned i = 0; i < NEA__REJECT_SLOTS; i++) {
        nea__reject *r = &adm->rejects[i];
        r->adm = adm;
        uv_timer_init(env->loop, &r->timer);
        r->timer.data = r;
        env->handles_open++;
        r->next = adm->free_rejects;
        adm->free_rejects = r;
    }
}

void nea__admission_drain(nea__admission *adm)
{
    for (unsigned i = 0; i < adm->count; i++) {
        nea__conn *c = nea__admission_slot(adm, i);
        if (c->state == NEA__C_IDLE || c->state == NEA__C_HEAD) {
            nea__conn_close(c);
        } else if (c->state == NEA__C_QUEUED) {
            uv_timer_stop(&c->timer);
            adm->env->stats->shed_503++;
            nea__conn_respond_error(c, NEA__E503);
        }
    }
}

void nea__admission_cancel(nea__admission *adm)
{
    for (unsigned i = 0; i < adm->count; i++) {
        nea__conn_close(nea__admission_slot(adm, i));
    }
}

bool nea__admission_busy(const nea__admission *adm)
{
    for (unsigned i = 0; i < adm->count; i++) {
        if (nea__admission_slot(adm, i)->state != NEA__C_FREE) {
            return true;
        }
    }
    for (unsigned i = 0; i < NEA__REJECT_SLOTS; i++) {
        if (adm->rejects[i].in_use) {
            return true;
        }
    }
    return false;
}

void nea__admission_close_timers(nea__admission *adm, uv_close_cb cb, void *data)
{
    for (unsigned i = 0; i < adm->count; i++) {
        nea__conn *c = nea__admission_slot(adm, i);
        c->timer.data = data;
        uv_close((uv_handle_t *)&c->timer, cb);
    }
    for (unsigned i = 0; i < NEA__REJECT_SLOTS; i++) {
        adm->rejects[i].timer.data = data;
        uv_close((uv_handle_t *)&adm->rejects[i].timer, cb);
    }
}
