/*
 * conn.c - connection slots: the socket, one phase machine driven by one
 * table, reading, writing through output.c, closing.
 *
 * A slot (in the reservation) holds a connection's libuv handles, its
 * llhttp parser and its fixed read buffer. Where a connection is in its
 * life is one phase (nea__conn_state); the table below gives every phase
 * its deadline (which config field sets it), what the deadline's expiry
 * does, the admission list the slot belongs to meanwhile, whose phase it
 * is, whether the connection buffer may go back in it, and what the
 * server's drain does to it. Every phase change goes through
 * nea__conn_enter, which tells admission and arms the deadline itself.
 * What the phases mean is their owner's: the HTTP exchange's (exchange.c),
 * or, after a WebSocket upgrade, wsconn.c's. The slot tells the owner of
 * its current phase what happened through nea__slot_hooks (bytes arrived
 * or the peer finished sending, a deadline passed, a write finished, the
 * connection is closing, admission answered), so handing a slot to
 * another protocol is entering one of that protocol's phases. The slot
 * never calls up.
 *
 * Deadlines: a slot holds a few words of links, not a libuv timer: the
 * server's deadline lists (timers.c) keep one list per phase, each sorted
 * because its deadlines are now plus that phase's constant.
 *
 * Invariants: a slot is on at most one deadline list, the one of its
 * phase (none while free or closing); reading stops while the read buffer
 * is full and after the peer's end; nothing of one connection survives into
 * the next connection in the same slot (the per-connection part is zeroed
 * at accept).
 */
#include "conn.h"

#include "stats.h"

#include <string.h>
#include <sys/socket.h>

static void close_now(nea__conn *c);

/* --- the phase table ------------------------------------------------------- */

/* Deadlines that are not a config field. */
#define NO_DEADLINE SIZE_MAX
#define BODY_PACE (SIZE_MAX - 1) /* body.c computes it from the body's progress */
#define LINGER (SIZE_MAX - 2)    /* NEA__LINGER_MS */
#define RESPONSE (SIZE_MAX - 3)  /* the route's response timeout, else the config's */
#define QUEUE (SIZE_MAX - 4)     /* the wait admission chose (nea__conn_queue) */

/* Deadlines of the WebSocket phases (nea_config fields). */
#define WS_PING offsetof(nea_config, ws_ping_interval_ms)
#define WS_PONG offsetof(nea_config, ws_pong_timeout_ms)

/* One row per phase. idle: nothing is under way, so the connection buffer
 * may go back to the pool. buffer: for an idle phase, the phase a readable
 * connection waits in when no buffer is free; for such a waiting phase, the
 * phase it goes back to with one. drain: what the server's drain does. */
static const struct phase {
    size_t deadline; /* offsetof(nea_config, <field>_ms), or one of the above */
    nea__expiry on_expiry;
    nea__conn_list list;
    nea__owner owner;
    bool idle;
    nea__conn_state buffer;
    nea__expiry drain;
} phases[NEA__C_PHASES] = {
#define H NEA__OWNER_HTTP
#define W NEA__OWNER_WS
#define CFG(field) offsetof(nea_config, field)
    [NEA__C_FREE] = {NO_DEADLINE, NEA__EXPIRE_NONE, NEA__LIST_NONE, H, false, NEA__C_FREE,
                     NEA__EXPIRE_NONE},
    [NEA__C_IDLE] = {CFG(keepalive_timeout_ms), NEA__EXPIRE_CLOSE, NEA__LIST_IDLE, H, true,
                     NEA__C_WAITBUF, NEA__EXPIRE_CLOSE},
    [NEA__C_WAITBUF] = {CFG(header_timeout_ms), NEA__EXPIRE_NO_BUFFER, NEA__LIST_BUFFER, H, false,
                        NEA__C_IDLE, NEA__EXPIRE_CLOSE},
    [NEA__C_HEAD] = {CFG(header_timeout_ms), NEA__EXPIRE_408, NEA__LIST_NONE, H, false, NEA__C_FREE,
                     NEA__EXPIRE_CLOSE},
    [NEA__C_QUEUED] = {QUEUE, NEA__EXPIRE_SHED, NEA__LIST_WAIT, H, false,
                       NEA__C_FREE, NEA__EXPIRE_NONE},
    [NEA__C_BODY] = {BODY_PACE, NEA__EXPIRE_408, NEA__LIST_NONE, H, false, NEA__C_FREE,
                     NEA__EXPIRE_NONE},
    [NEA__C_HANDLER] = {RESPONSE, NEA__EXPIRE_504, NEA__LIST_NONE, H, false,
                        NEA__C_FREE, NEA__EXPIRE_NONE},
    [NEA__C_STREAM] = {RESPONSE, NEA__EXPIRE_TIMEOUT, NEA__LIST_NONE, H, false,
                       NEA__C_FREE, NEA__EXPIRE_NONE},
    [NEA__C_WRITING] = {CFG(write_timeout_ms), NEA__EXPIRE_TIMEOUT, NEA__LIST_NONE, H, false,
                        NEA__C_FREE, NEA__EXPIRE_NONE},
    [NEA__C_LINGER] = {LINGER, NEA__EXPIRE_CLOSE, NEA__LIST_LINGER, H, false, NEA__C_FREE,
                       NEA__EXPIRE_NONE},
    [NEA__C_CLOSING] = {NO_DEADLINE, NEA__EXPIRE_NONE, NEA__LIST_NONE, H, false, NEA__C_FREE,
                        NEA__EXPIRE_NONE},
    [NEA__C_WS_IDLE] = {WS_PING, NEA__EXPIRE_PING, NEA__LIST_NONE, W, true, NEA__C_WS_WAITBUF,
                        NEA__EXPIRE_GOING_AWAY},
    [NEA__C_WS_PINGED] = {WS_PONG, NEA__EXPIRE_TIMEOUT, NEA__LIST_NONE, W, true, NEA__C_WS_WAITBUF,
                          NEA__EXPIRE_GOING_AWAY},
    [NEA__C_WS_WAITBUF] = {CFG(header_timeout_ms), NEA__EXPIRE_NO_BUFFER, NEA__LIST_BUFFER, W,
                           false, NEA__C_WS_IDLE, NEA__EXPIRE_CLOSE},
    [NEA__C_WS_FRAME] = {BODY_PACE, NEA__EXPIRE_SLOW, NEA__LIST_NONE, W, false, NEA__C_FREE,
                         NEA__EXPIRE_NONE},
    [NEA__C_WS_QUEUED] = {QUEUE, NEA__EXPIRE_SHED, NEA__LIST_WAIT, W, false,
                          NEA__C_FREE, NEA__EXPIRE_NONE},
    [NEA__C_WS_HANDLER] = {CFG(response_timeout_ms), NEA__EXPIRE_504, NEA__LIST_NONE, W, false,
                           NEA__C_FREE, NEA__EXPIRE_NONE},
    [NEA__C_WS_WRITING] = {CFG(write_timeout_ms), NEA__EXPIRE_TIMEOUT, NEA__LIST_NONE, W, false,
                           NEA__C_FREE, NEA__EXPIRE_NONE},
    [NEA__C_WS_CLOSING] = {LINGER, NEA__EXPIRE_CLOSE, NEA__LIST_LINGER, W, false, NEA__C_FREE,
                           NEA__EXPIRE_NONE},
#undef CFG
#undef W
#undef H
};

/* Every phase has a deadline list of its own (timers.c). */
_Static_assert(NEA__C_PHASES <= NEA__TIMER_LISTS, "a deadline list per phase");

nea__conn_list nea__conn_list_of(nea__conn_state st)
{
    return phases[st].list;
}

nea__owner nea__conn_owner_of(nea__conn_state st)
{
    return phases[st].owner;
}

/* The hooks of whoever runs on c in its current phase. */
static const nea__slot_hooks *owner(const nea__conn *c)
{
    return c->env->owners[phases[c->state].owner];
}

void nea__conn_grant(nea__conn *c, nea__arena *a)
{
    owner(c)->granted(c, a);
}

void nea__conn_queue(nea__conn *c, unsigned ms)
{
    owner(c)->queued(c, ms);
}

void nea__conn_refuse(nea__conn *c, bool keep)
{
    owner(c)->refused(c, keep);
}

uint64_t nea__conn_waiting_since(const nea__conn *c)
{
    return phases[c->state].list == NEA__LIST_WAIT ? c->w->record.t_head : 0;
}

/* The loop time at which the current phase's deadline passes. */
static uint64_t phase_due(const nea__conn *c, uint64_t now)
{
    size_t d = phases[c->state].deadline;
    switch (d) {
    case NO_DEADLINE:
        return UINT64_MAX;
    case BODY_PACE:
        return nea__body_rx_due(&c->w->body, c->env->cfg);
    case LINGER:
        return now + NEA__LINGER_MS;
    case RESPONSE:
        return now + nea__route_response_ms(c->w->route, c->env->cfg);
    case QUEUE:
        return now + c->w->queue_ms;
    default:
        return now + *(const unsigned *)(const void *)((const char *)c->env->cfg + d);
    }
}

/* Sets the current phase's deadline on the server's list for that phase
 * (timers.c): most phases' deadlines are now plus a constant, so this is
 * an append. */
static void arm(nea__conn *c)
{
    uint64_t due = phase_due(c, uv_now(c->env->loop));
    c->due = due;
    if (due == UINT64_MAX) {
        nea__timers_cancel(&c->env->timers, &c->deadline);
        return;
    }
    /* A request moves through several deadlines, each usually later than
     * the one before (keep-alive, head, response, write): an entry that
     * fires no later than the new deadline stays where it is, fires early
     * once and is moved then (nea__conn_expired). Steady keep-alive
     * traffic touches no list. */
    if (c->deadline.linked && c->deadline.due <= due) {
        return;
    }
    nea__timers_set(&c->env->timers, &c->deadline, (unsigned)c->state, due);
}

/* Every phase change goes through here: admission's lists always match the
 * phase (it is told when the slot enters or leaves a phase that has one,
 * and when it starts closing: its count of who holds the slots drops it),
 * and the phase's deadline is armed. */
void nea__conn_enter(nea__conn *c, nea__conn_state st)
{
    nea__conn_state from = c->state;
    c->state = st;
    if (phases[from].list != NEA__LIST_NONE || phases[st].list != NEA__LIST_NONE ||
        st == NEA__C_CLOSING) {
        c->env->hooks->state(c, from);
    }
    arm(c);
}

void nea__conn_rearm(nea__conn *c)
{
    arm(c);
}

#define CONN_OF_DEADLINE(e) ((nea__conn *)(void *)((char *)(e)-offsetof(nea__conn, deadline)))

/* A slot's deadline passed (timers.c took it off its list). */
void nea__conn_expired(nea__timed *e)
{
    nea__conn *c = CONN_OF_DEADLINE(e);
    uint64_t now = uv_now(c->env->loop);
    if (phases[c->state].deadline == BODY_PACE) {
        c->due = phase_due(c, now); /* the body (or message) moved since: its pace moved the deadline */
    }
    if (now < c->due) {
        /* Set for an earlier deadline: moved to its phase's list, due then. */
        nea__timers_set(&c->env->timers, &c->deadline, (unsigned)c->state, c->due);
        return;
    }
    switch (phases[c->state].on_expiry) {
    case NEA__EXPIRE_CLOSE:
        close_now(c);
        break;
    case NEA__EXPIRE_NONE:
        break;
    default:
        owner(c)->expired(c, phases[c->state].on_expiry);
        break;
    }
}

void nea__conn_drain(nea__conn *c)
{
    switch (phases[c->state].drain) {
    case NEA__EXPIRE_CLOSE:
        close_now(c);
        break;
    case NEA__EXPIRE_NONE:
        break;
    default:
        owner(c)->expired(c, phases[c->state].drain);
        break;
    }
}

/* --- writing: output.c's reports ------------------------------------------- */

/* The slot whose socket o writes to. */
#define CONN_OF(o) ((nea__conn *)(o)->stream->data)

static void on_sent(nea__output *o, int status)
{
    nea__conn *c = CONN_OF(o);
    if (c->state != NEA__C_CLOSING) {
        owner(c)->sent(c, status);
    }
}

static void on_piece(nea__output *o, int status)
{
    nea__conn *c = CONN_OF(o);
    if (c->state != NEA__C_CLOSING) { /* else closed under the write: already cancelled */
        owner(c)->piece(c, status);
    }
}

static void on_drained(nea__output *o, int status)
{
    nea__conn *c = CONN_OF(o);
    if (c->state == NEA__C_CLOSING) {
        return;
    }
    if (status < 0) {
        close_now(c);
    } else if (c->eof && c->state == NEA__C_IDLE) {
        close_now(c); /* the peer finished sending while the batch drained */
    } else {
        nea__conn_release_work(c); /* idle, nothing more to write: the buffer goes back */
    }
}

static const nea__output_hooks out_hooks = {
    .sent = on_sent,
    .piece = on_piece,
    .drained = on_drained,
};

/* --- connection buffers ----------------------------------------------------- */

/* Takes a buffer from the server's pool for c; false when none is free. */
static bool work_take(nea__conn *c)
{
    nea__work_pool *pool = &c->env->works;
    nea__work *w = pool->free;
    char *rbuf;
    if (w == NULL) {
        return false;
    }
    pool->free = w->next_free;
    pool->in_use++;
    if (pool->in_use > pool->high_water) {
        pool->high_water = pool->in_use;
    }
    rbuf = w->rbuf;
    memset(w, 0, sizeof(*w)); /* nothing of the last connection that held it */
    w->rbuf = rbuf;
    nea__out_start(&w->out, (uv_stream_t *)&c->tcp, rbuf + pool->obuf_off, &out_hooks);
    w->shut.data = c;
    c->w = w;
    return true;
}

/* c's buffer goes back; the first connection waiting for one gets it. */
static void work_give(nea__conn *c)
{
    nea__work_pool *pool = &c->env->works;
    nea__work *w = c->w;
    c->w = NULL;
    w->next_free = pool->free;
    pool->free = w;
    pool->in_use--;
    c->env->hooks->buffer_free(c->env);
}

void nea__conn_work_pool_init(nea__conn_env *env, char *first, size_t stride, unsigned count,
                              size_t rbuf_off, size_t obuf_off)
{
    nea__work_pool *pool = &env->works;
    memset(pool, 0, sizeof(*pool));
    pool->count = count;
    pool->obuf_off = obuf_off - rbuf_off;
    for (unsigned i = count; i-- > 0;) {
        nea__work *w = (nea__work *)(void *)(first + (size_t)i * stride);
        w->rbuf = (char *)w + rbuf_off;
        w->next_free = pool->free;
        pool->free = w;
    }
}

void nea__conn_release_work(nea__conn *c)
{
    if (c->w != NULL && phases[c->state].idle && c->w->rpos == c->w->rlen && c->w->req == NULL &&
        nea__out_idle(&c->w->out)) {
        work_give(c);
    }
}

bool nea__conn_take_work(nea__conn *c)
{
    return c->w != NULL || work_take(c);
}

bool nea__conn_resume(nea__conn *c)
{
    if (phases[c->state].list != NEA__LIST_BUFFER || !work_take(c)) {
        return false;
    }
    nea__conn_enter(c, phases[c->state].buffer);
    nea__conn_update_reading(c);
    return true;
}

/* --- reading --------------------------------------------------------------- */

/* libuv asks for a buffer only when the socket is readable: an idle
 * connection takes one from the pool then, and none at all while it waits.
 * With the pool empty the zero-length buffer makes libuv report
 * UV_ENOBUFS, and the connection waits in line for one (on_read). */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    nea__conn *c = h->data;
    size_t size = c->env->cfg->read_buffer_size;
    (void)suggested;
    if (c->w == NULL && !work_take(c)) {
        *buf = nea__buf(NULL, 0);
    } else if (c->state == NEA__C_LINGER) {
        *buf = nea__buf(c->w->rbuf, size); /* discarded */
    } else {
        *buf = nea__buf(c->w->rbuf + c->w->rlen, size - c->w->rlen);
    }
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    nea__conn *c = st->data;
    (void)buf;
    nea__load_touch(c->env->load);
    if (n == 0) {
        return;
    }
    if (n == UV_ENOBUFS) {
        /* Readable, and no buffer free: stop polling, wait in line. */
        uv_read_stop(st);
        c->reading = false;
        nea__conn_enter(c, phases[c->state].buffer);
        return;
    }
    if (n == UV_EOF && c->state != NEA__C_LINGER) {
        /* The peer finished sending (a half-close, or a close we cannot tell
         * from one yet): what is complete is still answered. */
        c->eof = true;
        nea__conn_update_reading(c);
        owner(c)->input(c);
        return;
    }
    if (n < 0) {
        close_now(c); /* a reset (cancels a request in flight), or a lingering peer's end */
        return;
    }
    if (c->state == NEA__C_LINGER) {
        return;
    }
    if (phases[c->state].deadline == BODY_PACE) {
        nea__body_rx_arrived(&c->w->body, (size_t)n, uv_now(c->env->loop));
    }
    c->w->rlen += (size_t)n;
    owner(c)->input(c);
}

void nea__conn_update_reading(nea__conn *c)
{
    bool want;
    if (c->state == NEA__C_FREE || c->state == NEA__C_CLOSING ||
        phases[c->state].list == NEA__LIST_BUFFER || c->eof) {
        want = false;
    } else {
        /* Without a buffer the connection waits for readability only. */
        want = c->state == NEA__C_LINGER || c->w == NULL ||
               c->w->rlen < c->env->cfg->read_buffer_size;
    }
    if (want && !c->reading) {
        c->reading = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

/* --- closing ---------------------------------------------------------------- */

static void on_tcp_close(uv_handle_t *h)
{
    nea__conn *c = h->data;
    nea__conn_env *env = c->env;
    if (c->w != NULL) {
        work_give(c); /* every write's callback ran (cancelled) before this one */
    }
    c->state = NEA__C_FREE;
    nea__stats_conn_closed(env->stats);
    env->handles_open--;
    env->hooks->closed(c);
}

/* A connection that could not be accepted was never counted as open. */
static void on_refused_close(uv_handle_t *h)
{
    nea__conn *c = h->data;
    c->state = NEA__C_FREE;
    c->env->handles_open--;
    c->env->hooks->closed(c);
}

static void close_now(nea__conn *c)
{
    const nea__slot_hooks *was = owner(c); /* whoever ran on it hears of the close */
    if (c->state == NEA__C_CLOSING || c->state == NEA__C_FREE) {
        return;
    }
    nea__conn_enter(c, NEA__C_CLOSING);
    was->closing(c);
    nea__conn_update_reading(c);
    uv_close((uv_handle_t *)&c->tcp, on_tcp_close);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    nea__conn *c = req->data;
    if (status < 0 || c->eof) {
        close_now(c); /* written; the peer sends nothing more */
    }
}

/* Closes after the last response: what is queued goes out, then FIN; then
 * input is drained until the peer closes or the linger deadline passes, so
 * it reads our response rather than a reset. A request still in the slot
 * (a body that can no longer arrive) is cancelled by the exchange. */
void nea__conn_close_lingering(nea__conn *c)
{
    owner(c)->closing(c);
    if (c->w == NULL || nea__out_flush(&c->w->out) < 0 ||
        (c->eof && nea__out_idle(&c->w->out))) {
        close_now(c);
        return;
    }
    if (uv_shutdown(&c->w->shut, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        close_now(c);
        return;
    }
    nea__conn_enter(c, NEA__C_LINGER);
    nea__conn_update_reading(c);
}

void nea__conn_close(nea__conn *c)
{
    close_now(c);
}

bool nea__conn_input_waiting(nea__conn *c)
{
    uv_os_fd_t fd;
    char byte;
    return uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 &&
           recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

/* --- the peer ------------------------------------------------------------------ */

const struct sockaddr *nea__conn_peer(nea__conn *c)
{
    if (!c->peer_known) {
        int len = sizeof(c->peer);
        if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->peer, &len) != 0) {
            c->peer.sin6_family = AF_UNSPEC;
        }
        c->peer_known = true;
    }
    return (const struct sockaddr *)&c->peer;
}

bool nea__conn_same_peer(nea__conn *c, const struct sockaddr *y)
{
    const struct sockaddr *x = nea__conn_peer(c);
    if (x->sa_family != y->sa_family) {
        return false;
    }
    if (x->sa_family == AF_INET) {
        return ((const struct sockaddr_in *)(const void *)x)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)(const void *)y)->sin_addr.s_addr;
    }
    return x->sa_family == AF_INET6 &&
           memcmp(&((const struct sockaddr_in6 *)(const void *)x)->sin6_addr,
                  &((const struct sockaddr_in6 *)(const void *)y)->sin6_addr,
                  sizeof(struct in6_addr)) == 0;
}

/* --- slots ------------------------------------------------------------------- */

void nea__conn_init(nea__conn *c, nea__conn_env *env)
{
    memset(c, 0, sizeof(*c));
    c->env = env;
    c->state = NEA__C_FREE;
}

int nea__conn_accept(nea__conn *c, uv_stream_t *listener, uv_os_sock_t fd)
{
    nea__conn_env *env = c->env;
    size_t fresh = offsetof(nea__conn, deadline);
    int rc;

    /* Nothing of the last connection survives; references to it read as
     * gone (its generation is bumped). */
    memset((char *)c + fresh, 0, sizeof(*c) - fresh);
    c->gen++;
    uv_tcp_init(env->loop, &c->tcp);
    env->handles_open++;
    c->tcp.data = c;
    if (listener != NULL) {
        /* An injected failure drops the connection after taking it off the
         * listener: libuv polls the listener again only once the pending
         * connection has been accepted. */
        rc = uv_accept(listener, (uv_stream_t *)&c->tcp);
        if (rc == 0 && nea__fault_hit(env->fault, NEA__FAULT_ACCEPT)) {
            rc = UV_EMFILE;
        }
    } else {
        rc = nea__fault_hit(env->fault, NEA__FAULT_ACCEPT) ? UV_EMFILE : uv_tcp_open(&c->tcp, fd);
    }
    if (rc != 0) {
        c->state = NEA__C_CLOSING;
        uv_close((uv_handle_t *)&c->tcp, on_refused_close);
        return rc;
    }
    nea__stats_conn_opened(env->stats);
    c->accept_ms = uv_now(env->loop);
    if (listener == NULL) {
        uv_tcp_nodelay(&c->tcp, 1); /* accepted ones inherit it from the listener */
    }
    nea__conn_enter(c, NEA__C_IDLE);
    nea__conn_update_reading(c);
    return 0;
}
