/*
 * admission.c - who gets a connection slot and who gets an arena.
 *
 * Slots: a new connection takes a free slot. With none free, someone
 * gives way, in this order: a lingering connection (its last response
 * sent, draining input before the close); then, by address, heaviest
 * holder first: an address holding more than fair_share_pct of the slots
 * loses its oldest connection that never sent a byte (silent), then its
 * oldest idle keep-alive one; another address its oldest connection silent
 * for NEA__SILENT_GRACE_MS; then anyone's connection silent that long;
 * then anyone's oldest idle keep-alive connection.
 * A connection with request bytes waiting in the kernel never gives way.
 * The one chosen is closed and the newcomer accepted when that close
 * completes. So silent connections cost whoever opens them: an address
 * that floods the slots with them loses its own first, and a newcomer from
 * anywhere gets in. With nobody to give way, the newcomer is accepted on
 * one of a few reject handles, told 503 with Retry-After and closed (never
 * a silent drop), and its address is remembered as waiting. While another
 * address waits (refused within NEA__WAITING_MS, any of the last
 * NEA__WAITING such addresses), a new connection from an address holding
 * more than its share is told 503 and closed at once, so slots that free
 * up go to the others. An address alone (a benchmark, a single proxy) is
 * never limited: its new connections take the place of its old silent or
 * idle ones. Who holds how many slots is counted only when an accept finds
 * no free slot, at most every NEA__TALLY_MS (two passes over the slots).
 * While a connection waits to be accepted libuv stops polling the
 * listener, so nothing spins; at the process fd limit libuv's own
 * reserve-fd trick sheds connections without a busy loop.
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
 * skipped for exempt routes: the request would wait for the loop longer
 * than the CPU target (load.c predicts it from the heads queued ahead), or
 * the client's address holds more than its fair share while others wait.
 * And the loop's budget: once handlers have run overload_budget_us in an
 * iteration, a routed head waits in the queue for the next one even with
 * an arena free (whatever queue_timeout_ms says: it waits for the loop);
 * exempt routes never wait for it.
 * Fair share on arenas applies only while another address is waiting: a
 * head from an address that holds fair_share_pct of the arenas is refused
 * while a head from another address waits in the queue (and a queued one
 * is skipped for it when an arena returns). Counting that holding scans
 * the slots, so it runs only under contention: O(max_connections) then.
 *
 * This is where admission policy lives: the lists here are kept in step
 * with every slot's state through nea__conn_hooks, and nothing below calls
 * up into this file.
 */
#include "admission.h"

#include "stats.h"

#include <inttypes.h>
#include <stdio.h>
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

/* Which of admission's lists holds a slot: stored in the slot (c->listed),
 * so that leaving a list never depends on what changed since the slot
 * joined it (a connection answered without leaving IDLE turns from silent
 * to served in place). */
enum {
    LISTED_NONE,
    LISTED_IDLE,
    LISTED_SILENT,
    LISTED_LINGER,
    LISTED_BUFFER,
    LISTED_WAIT,                          /* + arena class */
    LISTED_EXEMPT = LISTED_WAIT + NEA_ARENA_CLASSES, /* + arena class */
};

/* The list a slot in phase st belongs to: the phase table (conn.c) names
 * the list, and the class or exemption of its route picks which one. An
 * idle connection is silent (never answered: it has sent no whole request
 * yet) until it has been answered once. */
static unsigned list_for(const nea__conn *c, nea__conn_state st)
{
    switch (nea__conn_list_of(st)) {
    case NEA__LIST_IDLE:
        return c->served ? LISTED_IDLE : LISTED_SILENT;
    case NEA__LIST_WAIT:
        return ((nea__conn_route(c)->flags & NEA_ROUTE_EXEMPT) != 0 ? LISTED_EXEMPT
                                                                     : LISTED_WAIT) +
               nea__conn_route(c)->arena_class;
    case NEA__LIST_LINGER:
        return LISTED_LINGER;
    case NEA__LIST_BUFFER:
        return LISTED_BUFFER;
    case NEA__LIST_NONE:
        break;
    }
    return LISTED_NONE;
}

static nea__conn **list_head(nea__admission *adm, unsigned id, nea__conn ***tail)
{
    switch (id) {
    case LISTED_IDLE:
        *tail = &adm->idle_tail;
        return &adm->idle_head;
    case LISTED_SILENT:
        *tail = &adm->silent_tail;
        return &adm->silent_head;
    case LISTED_LINGER:
        *tail = &adm->linger_tail;
        return &adm->linger_head;
    case LISTED_BUFFER:
        *tail = &adm->bufwait_tail;
        return &adm->bufwait_head;
    default:
        if (id >= LISTED_EXEMPT) {
            *tail = &adm->exempt_tail[id - LISTED_EXEMPT];
            return &adm->exempt_head[id - LISTED_EXEMPT];
        }
        *tail = &adm->wait_tail[id - LISTED_WAIT];
        return &adm->wait_head[id - LISTED_WAIT];
    }
}

/* Queued heads and connections waiting for a buffer are counted too. */
static void count_listed(nea__admission *adm, unsigned id, int d)
{
    if (id >= LISTED_WAIT) {
        adm->wait_len = (unsigned)((int)adm->wait_len + d);
    } else if (id == LISTED_BUFFER) {
        adm->bufwait_len = (unsigned)((int)adm->bufwait_len + d);
    }
}

/* Every phase change that touches a list comes here (nea__conn_enter), so
 * the lists always match the phases. */
static void on_state(nea__conn *c, nea__conn_state from)
{
    nea__admission *adm = c->env->hooks_data;
    nea__conn **head, **tail;
    unsigned id = list_for(c, c->state);

    if (c->state == NEA__C_CLOSING && from != NEA__C_FREE) {
        nea__share_closing(&adm->share, c);
    }
    if (c->listed != LISTED_NONE) {
        head = list_head(adm, c->listed, &tail);
        list_remove(head, tail, c);
        count_listed(adm, c->listed, -1);
    }
    c->listed = (uint8_t)id;
    if (id != LISTED_NONE) {
        head = list_head(adm, id, &tail);
        list_push(head, tail, c);
        count_listed(adm, id, 1);
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

/* Arenas that c's address holds (a scan of the slots). */
static unsigned arenas_of_peer(const nea__admission *adm, nea__conn *c)
{
    unsigned arenas = 0;
    for (unsigned i = 0; i < adm->count; i++) {
        nea__conn *o = nea__admission_slot(adm, i);
        if (o->state != NEA__C_FREE && o->state != NEA__C_CLOSING && nea__conn_has_request(o) &&
            nea__conn_same_peer(o, nea__conn_peer(c))) {
            arenas++;
        }
    }
    return arenas;
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
    if (adm->share_arenas == 0 || !other_waiting(adm, c)) {
        return false;
    }
    return arenas_of_peer(adm, c) >= adm->share_arenas;
}

/* The refusals when a head is routed, for ordinary routes: its wait for
 * the loop would exceed the CPU target (load.c; the connection stays), or
 * its address is over its share of the arenas while another waits.
 * Returns true when c was answered 503. */
static bool refused_at_once(nea__admission *adm, nea__conn *c)
{
    nea_stats *st = c->env->stats;
    if (is_exempt(c)) {
        return false;
    }
    if (nea__load_refuse(adm->load, adm->wait_len)) {
        st->shed_cpu++;
        nea__conn_refuse(c, true);
        return true;
    }
    if (over_arena_share(adm, c)) {
        st->shed_fair++;
        nea__conn_refuse(c, false);
        return true;
    }
    return false;
}

/* The refusal when a queued head's turn comes: its address is over its
 * share of the arenas while another waits. */
static bool refused_at_grant(nea__admission *adm, nea__conn *c)
{
    if (is_exempt(c) || !over_arena_share(adm, c)) {
        return false;
    }
    c->env->stats->shed_fair++;
    nea__conn_refuse(c, false);
    return true;
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
        nea__conn_refuse(c, false);
    } else {
        nea__conn_respond_error(c, NEA__PB_READY);
    }
    return true;
}

static void on_regrant(uv_idle_t *h);

/* Whether the routed head c may run now: an arena of its class is free
 * and, for an ordinary route, this iteration's handler budget is not spent
 * and nothing of its class queues ahead of it. */
static bool runs_now(const nea__admission *adm, const nea__conn *c)
{
    return arena_free_for(adm, c) &&
           (is_exempt(c) ||
            (!nea__load_spent(adm->load) && adm->wait_head[nea__conn_route(c)->arena_class] == NULL));
}

static void on_routed(nea__conn *c)
{
    nea__admission *adm = c->env->hooks_data;
    const nea_config *cfg = c->env->cfg;

    if (answered_ready(c) || refused_at_once(adm, c)) {
        return;
    }
    if (runs_now(adm, c)) {
        nea__conn_grant(c, nea__pool_acquire(pool_of(adm, c)));
    } else if (arena_free_for(adm, c) && adm->wait_len < adm->wait_max) {
        /* Waits for the loop, not for an arena: the next iteration runs
         * it, whatever queue_timeout_ms says (the CPU target bounds the
         * wait; without one, NEA__LOOP_WAIT_MAX_MS does). */
        nea__conn_queue(c, NEA__LOOP_WAIT_MAX_MS);
        uv_idle_start(&adm->regrant, on_regrant);
    } else if (cfg->queue_timeout_ms > 0 && adm->wait_len < adm->wait_max) {
        nea__conn_queue(c, cfg->queue_timeout_ms);
    } else {
        c->env->stats->shed_no_arena++;
        nea__conn_refuse(c, false);
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

/* An arena returned to the pool, or a new iteration began: the first
 * head waiting gets an arena and runs. A granted handler may respond at
 * once and return its arena from inside this loop; the nested call leaves
 * the hand-off to this loop, so the stack stays flat however long the
 * queue is. Once handlers have spent the iteration's budget the loop stops
 * (a queue of CPU-heavy requests must not hold the loop, and the health
 * checks behind it, for the whole queue) and the rest runs from the next
 * iteration on (regrant); a head that has by then waited longer than the
 * CPU target allows is answered 503 instead (load.c). */
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
        if (!is_exempt(c) && nea__load_spent(adm->load)) {
            if (nea__load_stale(adm->load, nea__conn_waiting_since(c))) {
                c->env->stats->shed_cpu++;
                nea__conn_refuse(c, true);
                continue; /* it left the queue; the next waiter is looked at */
            }
            uv_idle_start(&adm->regrant, on_regrant);
            break;
        }
        if (refused_at_grant(adm, c)) {
            continue;
        }
        nea__conn_grant(c, nea__pool_acquire(pool_of(adm, c)));
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

static void on_reject_closed(nea__oneshot *o)
{
    nea__reject *r = o->data;
    nea__admission *adm = r->adm;
    r->next = adm->free_rejects;
    adm->free_rejects = r;
    accept_pending(adm);
    adm->changed(adm->changed_data);
}

/* A connection refused a slot is counted in the unrouted record (no
 * request was read) and logged at most once a second. */
static void note_no_slot(nea__admission *adm, const struct sockaddr_storage *peer)
{
    nea__conn_env *env = adm->env;
    nea__sample sample = {.status = 503, .outcome = NEA_OUTCOME_SHED};
    uint64_t skipped;
    char addr[64];

    nea__metrics_record(env->records.metrics, &sample);
    if (nea__log_limit_pass(&env->records.log_503, uv_now(env->loop), &skipped)) {
        nea__addr_name((const struct sockaddr *)peer, addr, sizeof(addr));
        nea__log(env->cfg, NEA_LOG_WARN,
                 "503 for a connection from %s (no free connection slot); %" PRIu64
                 " more 503s since the last such line",
                 addr, skipped);
    }
}

static void reject(nea__admission *adm)
{
    nea__conn_env *env = adm->env;
    nea__reject *r = adm->free_rejects;
    struct sockaddr_storage peer;
    int len = sizeof(peer);
    unsigned n;

    adm->free_rejects = r->next;
    if (nea__oneshot_accept(&r->o, adm->listener) != 0) {
        return;
    }
    env->stats->shed_no_slot++;
    if (uv_tcp_getpeername(&r->o.tcp, (struct sockaddr *)&peer, &len) != 0) {
        peer.ss_family = AF_UNSPEC;
    }
    /* It waits now: fair share limits the others (every waiting address
     * counts, not only the last one refused). */
    {
        nea__peer_key k = nea__share_key((const struct sockaddr *)&peer);
        nea__share_asked(&adm->share, &k, true);
    }
    if (env->tls != NULL) {
        /* A TLS client cannot read a plain 503: closed, still counted. */
        note_no_slot(adm, &peer);
        nea__oneshot_close(&r->o);
        return;
    }
    nea__stats_response(env->stats, 503);
    note_no_slot(adm, &peer);
    n = nea__static_bufs(env->statics, &env->date, uv_now(env->loop), NEA__PB_503,
                         "Connection: close\r\n", "", 0, false, r->hdrbuf, r->ebufs);
    nea__oneshot_send(&r->o, r->ebufs, n);
}

/* --- accepting ------------------------------------------------------------ */

/* c may be closed to make room: it has no request bytes waiting in the
 * kernel (they would be a request on its way). */
static bool may_evict(nea__conn *c)
{
    return !nea__conn_input_waiting(c);
}

/* The oldest connection of list (from head) whose address is k (any
 * address when k is NULL) that may be evicted and, unless any_age, was
 * accepted at least NEA__SILENT_GRACE_MS ago; NULL if none among the first
 * NEA__EVICT_SCAN. */
static bool evictable(nea__admission *adm, nea__conn *c, const nea__peer_key *k, bool any_age)
{
    bool young = !any_age && uv_now(adm->env->loop) - c->accept_ms < NEA__SILENT_GRACE_MS;
    return !young && (k == NULL || nea__share_is(c, k)) && may_evict(c);
}

/* The oldest connection of a list (head to tail) whose address is k (any
 * address when k is NULL) that may be evicted and, unless any_age, was
 * accepted at least NEA__SILENT_GRACE_MS ago; NULL if none. At most
 * NEA__EVICT_SCAN from each end are looked at: an address whose
 * connections come and go (a flood replacing what it lost) has them at
 * the young end, behind others that stay. */
static nea__conn *oldest_of(nea__admission *adm, nea__conn *head, nea__conn *tail,
                            const nea__peer_key *k, bool any_age)
{
    unsigned looked = 0;
    nea__conn *c;
    for (c = head; c != NULL && looked < NEA__EVICT_SCAN; c = c->next, looked++) {
        if (evictable(adm, c, k, any_age)) {
            return c;
        }
    }
    for (looked = 0, c = tail; c != NULL && looked < NEA__EVICT_SCAN; c = c->prev, looked++) {
        if (evictable(adm, c, k, any_age)) {
            return c;
        }
    }
    return NULL;
}

/* Who gives way to a newcomer when every slot is taken. The addresses
 * holding the most slots first: one holding more than its share loses its
 * oldest silent connection (never sent a byte) of any age, then its oldest
 * idle keep-alive one; any other loses a silent connection once it is
 * NEA__SILENT_GRACE_MS old. Then anyone's oldest such silent connection,
 * then anyone's oldest idle keep-alive one. Silent connections cost
 * whoever opens them, and the heaviest address pays first, so holdings
 * even out; an address alone is never limited: its own connections make
 * room for its new ones. NULL: nobody may give way. */
static nea__conn *victim_by_address(nea__admission *adm)
{
    nea__conn *v = NULL;
    for (unsigned j = 0; j < adm->share.tally_len && v == NULL; j++) {
        bool over = nea__share_over(&adm->share, adm->share.tally[j].slots);
        v = oldest_of(adm, adm->silent_head, adm->silent_tail, &adm->share.tally[j].key, over);
        if (v == NULL && over) {
            v = oldest_of(adm, adm->idle_head, adm->idle_tail, &adm->share.tally[j].key, true);
        }
    }
    return v;
}

static nea__conn *victim(nea__admission *adm)
{
    nea__conn *v;
    nea__share_fresh(&adm->share);
    v = victim_by_address(adm);
    if (v == NULL && adm->share.tally_accepts > 0) {
        /* Connections accepted since the count may have changed who is
         * over the share (a flood replacing what it lost): count again. */
        nea__share_count(&adm->share);
        v = victim_by_address(adm);
    }
    if (v == NULL) {
        v = oldest_of(adm, adm->silent_head, adm->silent_tail, NULL, false);
    }
    if (v == NULL) {
        v = oldest_of(adm, adm->idle_head, adm->idle_tail, NULL, true);
    }
    return v;
}

/* While another address is waiting for a slot (refused within
 * NEA__WAITING_MS), a connection from an address that holds more than its
 * share is told 503 and closed, so the slots it would keep go to the
 * others. */
static void fair_check(nea__admission *adm, nea__conn *c)
{
    nea__peer_key k;
    if (adm->share.pct_slots == 0 || !nea__share_someone_waiting(&adm->share) ||
        (k = nea__share_key(nea__conn_peer(c))).family == 0) {
        return;
    }
    nea__share_fresh(&adm->share);
    if (nea__share_over(&adm->share, nea__share_held(&adm->share, &k)) &&
        nea__share_other_waiting(&adm->share, &k)) {
        adm->env->stats->shed_fair++;
        nea__conn_refuse(c, false);
    }
}

static void accept_pending(nea__admission *adm)
{
    nea__conn *c, *v;

    if (!adm->accept_pending || adm->stopped) {
        return;
    }
    c = adm->free_conns;
    if (c != NULL) {
        adm->free_conns = c->next;
        adm->accept_pending = false;
        if (nea__conn_accept(c, adm->listener, -1) == 0) {
            nea__share_accepted(&adm->share, c);
            fair_check(adm, c);
        }
    } else if (adm->linger_head != NULL) {
        /* Its last response is sent: the lingering only spares the peer a
         * reset, and a newcomer needs the slot more. Accepted on close. */
        nea__conn_close(adm->linger_head);
    } else if ((v = victim(adm)) != NULL) {
        /* Make room: the slot frees when the close completes, and the
         * waiting connection is accepted then (on_closed). */
        adm->env->stats->evicted++;
        nea__conn_close(v);
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
    nea__share_init(&adm->share, env->loop, slots, stride, count,
                    share_of(count, cfg->fair_share_pct));
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
        nea__oneshot_init(&r->o, env->loop, &env->handles_open, on_reject_closed, r);
        r->next = adm->free_rejects;
        adm->free_rejects = r;
    }
}

void nea__admission_drain(nea__admission *adm, bool keep_idle)
{
    adm->stopped = true;
    for (unsigned i = 0; i < adm->count; i++) {
        nea__conn *c = nea__admission_slot(adm, i);
        /* Handed off: a successor serves the address, so idle HTTP
         * connections are answered once more (Connection: close) instead;
         * WebSocket ones are told the server is going away either way. */
        if (!keep_idle || nea__conn_owner_of(c->state) != NEA__OWNER_HTTP) {
            nea__conn_drain(c); /* as its phase's row says */
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
        if (adm->rejects[i].o.in_use) {
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
        nea__oneshot_close_timer(&adm->rejects[i].o, cb, data);
    }
}
