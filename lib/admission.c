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
 * configured). A drain leaves queued heads their place. Every arena size
 * class has its own arenas and its own FIFOs: a head waits only for an
 * arena of its route's class. An arena that returns goes to the head of its
 * class that waited longest, exempt routes (health, metrics) first; only
 * they may take the last reserved_arenas of class 0. Readiness
 * routes (NEA_ROUTE_READY) take none: they are answered from a pre-built
 * response before any of this, 503 once the drain is announced.
 *
 * Before an arena is taken, two more refusals, both 503 at once and both
 * skipped for exempt routes: the loop is overloaded (load.c decides), or
 * the client's address holds more than its fair share while others wait.
 * Fair share applies only while another address is waiting: a head from an
 * address that holds fair_share_pct of the arenas is refused while a head
 * from another address waits in the queue (and a queued one is skipped for
 * it when an arena returns); a connection from an address that holds that
 * share of the slots is refused while another address was refused a slot
 * in the last second. One address alone (a benchmark, a single proxy) is
 * never limited. Counting holdings scans the slots and the queue, so it
 * runs only under contention: O(max_connections) then.
 *
 * This is where admission policy lives: the lists here are kept in step
 * with every slot's state through nea__conn_hooks, and nothing below calls
 * up into this file.
 */
#include "admission.h"

#include "stats.h"

#include <inttypes.h>
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
}

/* --- the slots' hooks --------------------------------------------------------- */

/* The list a slot in phase st belongs to, if any: the phase table
 * (conn.c) names the list, and the class or exemption of its route picks
 * which one. Membership is derived from the phase, never stored: every
 * phase change goes through on_state, which moves the slot between lists.
 * Only a connection that has been answered can be evicted: a fresh one may
 * hold a request that was sent but not read yet (served only changes while
 * a slot is not idle). */
static nea__conn **list_of(nea__admission *adm, const nea__conn *c, nea__conn_state st,
                           nea__conn ***tail)
{
    switch (nea__conn_list_of(st)) {
    case NEA__LIST_IDLE:
        *tail = &adm->idle_tail;
        return c->served ? &adm->idle_head : NULL;
    case NEA__LIST_WAIT: {
        unsigned k = nea__conn_route(c)->arena_class;
        if ((nea__conn_route(c)->flags & NEA_ROUTE_EXEMPT) != 0) {
            *tail = &adm->exempt_tail[k];
            return &adm->exempt_head[k];
        }
        *tail = &adm->wait_tail[k];
        return &adm->wait_head[k];
    }
    case NEA__LIST_LINGER:
        *tail = &adm->linger_tail;
        return &adm->linger_head;
    case NEA__LIST_BUFFER:
        *tail = &adm->bufwait_tail;
        return &adm->bufwait_head;
    case NEA__LIST_NONE:
        break;
    }
    return NULL;
}

static void on_state(nea__conn *c, nea__conn_state from)
{
    nea__admission *adm = c->env->hooks_data;
    nea__conn **head, **tail;

    if ((head = list_of(adm, c, from, &tail)) != NULL) {
        list_remove(head, tail, c);
        adm->wait_len -= from == NEA__C_QUEUED;
        adm->bufwait_len -= from == NEA__C_WAITBUF;
    }
    if ((head = list_of(adm, c, c->state, &tail)) != NULL) {
        list_push(head, tail, c);
        adm->wait_len += c->state == NEA__C_QUEUED;
        adm->bufwait_len += c->state == NEA__C_WAITBUF;
    }
}

static bool is_exempt(const nea__conn *c)
{
    return nea__conn_route(c) != NULL && (nea__conn_route(c)->flags & NEA_ROUTE_EXEMPT) != 0;
}

static nea__pool *pool_of(const nea__admission *adm, const nea__conn *c)
{
    return &adm->pools[nea__conn_route(c)->arena_class];
}

/* An arena of c's class is free for c (the reserved ones of class 0:
 * exempt routes only). */
static bool arena_free_for(const nea__admission *adm, const nea__conn *c)
{
    const nea__pool *p = pool_of(adm, c);
    unsigned keep = is_exempt(c) || nea__conn_route(c)->arena_class != 0 ? 0 : adm->reserved;
    return p->count - p->in_use > keep;
}

/* Slots (and of those, slots holding an arena) that c's address holds. */
static void count_peer(const nea__admission *adm, nea__conn *c, unsigned *slots, unsigned *arenas)
{
    *slots = *arenas = 0;
    for (unsigned i = 0; i < adm->count; i++) {
        nea__conn *o = nea__admission_slot(adm, i);
        if (o->state == NEA__C_FREE || o->state == NEA__C_CLOSING ||
            !nea__conn_same_peer(o, nea__conn_peer(c))) {
            continue;
        }
        (*slots)++;
        *arenas += nea__conn_has_request(o);
    }
}

/* Another address has a head waiting for an arena of c's class. */
static bool other_waiting(const nea__admission *adm, nea__conn *c)
{
    for (nea__conn *w = adm->wait_head[nea__conn_route(c)->arena_class]; w != NULL; w = w->next) {
        if (w != c && !nea__conn_same_peer(w, nea__conn_peer(c))) {
            return true;
        }
    }
    return false;
}

/* c's address holds its share of the arenas while another address waits. */
static bool over_arena_share(const nea__admission *adm, nea__conn *c)
{
    unsigned slots, arenas;
    if (adm->share_arenas == 0 || !other_waiting(adm, c)) {
        return false;
    }
    count_peer(adm, c, &slots, &arenas);
    return arenas >= adm->share_arenas;
}

/* The refusals before an arena, for ordinary routes: the loop is
 * overloaded (the connection stays), or c's address is over its share
 * while another waits. Returns true when c was answered 503. */
static bool refused(nea__admission *adm, nea__conn *c)
{
    nea_stats *st = c->env->stats;
    if (is_exempt(c)) {
        return false;
    }
    if (nea__load_shed(adm->load)) {
        st->shed_cpu++;
        nea__conn_shed(c, true);
        return true;
    }
    if (over_arena_share(adm, c)) {
        st->shed_fair++;
        nea__conn_shed(c, false);
        return true;
    }
    return false;
}

/* A readiness check is answered here, before any refusal and without an
 * arena: ready while serving, 503 once the drain is announced. */
static bool answered_ready(nea__conn *c)
{
    if (nea__conn_route(c) == NULL || (nea__conn_route(c)->flags & NEA_ROUTE_READY) == 0) {
        return false;
    }
    if (c->env->closing) {
        c->env->stats->shed_draining++;
        nea__conn_shed(c, false);
    } else {
        nea__conn_respond_error(c, NEA__PB_READY);
    }
    return true;
}

static void on_routed(nea__conn *c)
{
    nea__admission *adm = c->env->hooks_data;
    const nea_config *cfg = c->env->cfg;

    if (answered_ready(c) || refused(adm, c)) {
        return;
    }
    if (arena_free_for(adm, c)) {
        nea__conn_arena_ready(c, nea__pool_acquire(pool_of(adm, c)));
    } else if (cfg->queue_timeout_ms > 0 && adm->wait_len < adm->wait_max) {
        nea__conn_wait(c);
    } else {
        c->env->stats->shed_no_arena++;
        nea__conn_shed(c, false);
    }
}

static void accept_pending(nea__admission *adm);
static void on_regrant(uv_idle_t *h);

static void on_closed(nea__conn *c)
{
    nea__admission *adm = c->env->hooks_data;
    c->next = adm->free_conns;
    adm->free_conns = c;
    accept_pending(adm);
    adm->changed(adm->changed_data);
}

/* A connection buffer came back: the connection that waited longest for
 * one takes it. */
static void on_buffer_free(nea__conn_env *env)
{
    nea__admission *adm = env->hooks_data;
    if (adm->bufwait_head != NULL) {
        (void)nea__conn_resume(adm->bufwait_head);
    }
}

static const nea__conn_hooks conn_hooks = {
    .state = on_state,
    .routed = on_routed,
    .closed = on_closed,
    .buffer_free = on_buffer_free,
};

/* An arena returned to the pool: the first head waiting gets it. A granted
 * handler may respond at once and return its arena from inside this loop;
 * the nested call leaves the hand-off to this loop, so the stack stays flat
 * however long the queue is. Once handlers have spent the iteration's
 * budget the loop stops (a long queue of CPU-heavy requests must not hold
 * the loop, and the health checks behind it, for the whole queue): while
 * shedding, the waiting heads are answered 503 at once; otherwise the rest
 * is handed out from the next iteration on (regrant). */
static void grant(nea__admission *adm)
{
    unsigned k = 0;
    if (adm->granting) {
        return;
    }
    adm->granting = true;
    while (k < adm->classes) { /* each class's queue waits for its own arenas */
        nea__conn *c = adm->exempt_head[k] != NULL ? adm->exempt_head[k] : adm->wait_head[k];
        if (c == NULL || !arena_free_for(adm, c)) {
            k++;
            continue;
        }
        if (!is_exempt(c) && nea__load_spent(adm->load) && !adm->load->shedding) {
            uv_idle_start(&adm->regrant, on_regrant);
            break;
        }
        if (refused(adm, c)) {
            continue; /* it left the queue; the next waiter is looked at */
        }
        nea__conn_arena_ready(c, nea__pool_acquire(pool_of(adm, c)));
    }
    adm->granting = false;
}

static void on_regrant(uv_idle_t *h)
{
    nea__admission *adm = h->data;
    uv_idle_stop(h);
    grant(adm);
}

static void on_arena_released(void *data)
{
    nea__admission *adm = data;
    grant(adm);
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

/* A connection refused a slot is counted in the unrouted record (no
 * request was read) and logged at most once a second. */
static void note_no_slot(nea__admission *adm)
{
    nea__conn_env *env = adm->env;
    nea__sample sample = {.status = 503, .outcome = NEA_OUTCOME_SHED};
    uint64_t skipped;
    char addr[64];

    nea__metrics_record(env->records.metrics, &sample);
    if (nea__log_limit_pass(&env->records.log_503, uv_now(env->loop), &skipped)) {
        nea__addr_name((const struct sockaddr *)&adm->refused, addr, sizeof(addr));
        nea__log(env->cfg, NEA_LOG_WARN,
                 "503 for a connection from %s (no free connection slot); %" PRIu64
                 " more 503s since the last such line",
                 adm->refused_ms == uv_now(env->loop) ? addr : "-", skipped);
    }
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
    env->stats->shed_no_slot++;
    /* Remember who was refused: fair share limits the others now. */
    {
        int len = sizeof(adm->refused);
        if (uv_tcp_getpeername(&r->tcp, (struct sockaddr *)&adm->refused, &len) == 0) {
            adm->refused_ms = uv_now(env->loop);
        }
    }
    if (env->tls != NULL) {
        /* A TLS client cannot read a plain 503: closed, still counted. */
        note_no_slot(adm);
        reject_close(r);
        return;
    }
    nea__stats_response(env->stats, 503);
    note_no_slot(adm);
    n = nea__static_bufs(env->statics, &env->date, uv_now(env->loop), NEA__PB_503,
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

/* While another address was refused a slot in the last second, a
 * connection from an address that already holds its share of the slots is
 * told 503 and closed, so the slots it would keep go to the others. */
static void over_share(nea__admission *adm, nea__conn *c)
{
    unsigned slots, arenas;
    uint64_t now = uv_now(adm->env->loop);
    if (adm->share_slots == 0 || adm->refused_ms == 0 || now - adm->refused_ms > 1000 ||
        nea__conn_same_peer(c, (const struct sockaddr *)&adm->refused)) {
        return;
    }
    count_peer(adm, c, &slots, &arenas);
    if (slots > adm->share_slots) {
        adm->env->stats->shed_fair++;
        nea__conn_shed(c, false);
    }
}

static void accept_pending(nea__admission *adm)
{
    nea__conn *c, *victim;

    if (!adm->accept_pending || adm->stopped) {
        return;
    }
    c = adm->free_conns;
    if (c != NULL) {
        adm->free_conns = c->next;
        adm->accept_pending = false;
        if (nea__conn_accept(c, adm->listener, -1) == 0) {
            over_share(adm, c);
        }
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
    nea__load_touch(adm->load);
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

/* pct of n, at least one (0 when pct is 0: no limit). */
static unsigned share_of(unsigned n, unsigned pct)
{
    unsigned v = (unsigned)((uint64_t)n * pct / 100);
    return pct == 0 ? 0 : v > 0 ? v : 1;
}

void nea__admission_init(nea__admission *adm, nea__conn_env *env, nea__pool *pools,
                         unsigned classes, nea__load *load, char *slots, size_t stride,
                         unsigned count, void (*changed)(void *data), void *changed_data)
{
    const nea_config *cfg = env->cfg;
    unsigned arenas = 0;

    memset(adm, 0, sizeof(*adm));
    adm->env = env;
    adm->pools = pools;
    adm->classes = classes;
    for (unsigned k = 0; k < classes; k++) {
        arenas += pools[k].count;
    }
    adm->load = load;
    adm->reserved = cfg->reserved_arenas;
    adm->share_slots = share_of(count, cfg->fair_share_pct);
    adm->share_arenas = share_of(arenas, cfg->fair_share_pct); /* of every class together */
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
        nea__conn_init(c, env);
        c->next = adm->free_conns;
        adm->free_conns = c;
    }
    uv_idle_init(env->loop, &adm->regrant);
    adm->regrant.data = adm;
    env->handles_open++;
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
    adm->stopped = true;
    for (unsigned i = 0; i < adm->count; i++) {
        nea__conn *c = nea__admission_slot(adm, i);
        if (c->state == NEA__C_IDLE || c->state == NEA__C_HEAD || c->state == NEA__C_WAITBUF ||
            c->state == NEA__C_TLS_HANDSHAKE) {
            nea__conn_close(c);
        }
    }
}

unsigned nea__admission_slots_busy(const nea__admission *adm)
{
    unsigned n = 0;
    for (unsigned i = 0; i < adm->count; i++) {
        nea__conn_state st = nea__admission_slot(adm, i)->state;
        n += st != NEA__C_FREE && st != NEA__C_IDLE && st != NEA__C_LINGER;
    }
    return n;
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
    adm->regrant.data = data;
    uv_close((uv_handle_t *)&adm->regrant, cb);
    nea__timers_close(&adm->env->timers, cb, data);
    for (unsigned i = 0; i < NEA__REJECT_SLOTS; i++) {
        adm->rejects[i].timer.data = data;
        uv_close((uv_handle_t *)&adm->rejects[i].timer, cb);
    }
}
