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
 * TLS (a server with a certificate): a connection starts in
 * NEA__C_TLS_HANDSHAKE and moves to IDLE when the handshake is done;
 * libuv reads ciphertext into the TLS state (tlsio.c), and the decrypted
 * bytes land in the read buffer where plain bytes land, so the exchange
 * sees the same bytes either way; what it writes goes through the TLS
 * state (output.c). Reading stops while the TLS state cannot take more
 * (decrypted bytes wait for room in the read buffer, or its answer waits
 * to be sent), and the exchange pulls waiting bytes in as it makes room
 * (nea__conn_refill). An idle connection's TLS state gives its record
 * buffers back with the connection buffer. A failed TLS connection is
 * counted and closed (plain HTTP sent to the TLS port gets a plain 400
 * first); a close sends close_notify when it can.
 *
 * Invariants: a slot is on at most one deadline list, the one of its
 * phase (none while free or closing); reading stops while the read buffer
 * is full and after the peer's end; nothing of one connection survives into
 * the next connection in the same slot (the per-connection part is zeroed
 * at accept, the TLS state wiped when the connection ends).
 */
#include "conn.h"

#include "stats.h"
#include "tlsio.h"

#include <string.h>
#include <sys/socket.h>

static void close_now(nea__conn *c);
static void on_shutdown(uv_shutdown_t *req, int status);

/* --- the phase table ------------------------------------------------------- */

/* Deadlines that are not a config field. */
#define NO_DEADLINE SIZE_MAX
#define BODY_PACE (SIZE_MAX - 1) /* body.c computes it from the body's progress */
#define LINGER (SIZE_MAX - 2)    /* NEA__LINGER_MS */
#define RESPONSE (SIZE_MAX - 3)  /* the route's response timeout, else the config's */
#define QUEUE (SIZE_MAX - 4)     /* the wait admission chose (nea__conn_queue) */
#define HANDSHAKE (SIZE_MAX - 5) /* tls_handshake_ms, else header_timeout_ms */

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
    [NEA__C_TLS_HANDSHAKE] = {HANDSHAKE, NEA__EXPIRE_TLS, NEA__LIST_NONE, H, false, NEA__C_WAITBUF,
                              NEA__EXPIRE_CLOSE},
    [NEA__C_IDLE] = {CFG(keepalive_timeout_ms), NEA__EXPIRE_CLOSE, NEA__LIST_IDLE, H, true,
                     NEA__C_WAITBUF, NEA__EXPIRE_CLOSE},
    [NEA__C_WAITBUF] = {CFG(header_timeout_ms), NEA__EXPIRE_NO_BUFFER, NEA__LIST_BUFFER, H, false,
                        NEA__C_IDLE, NEA__EXPIRE_CLOSE},
    [NEA__C_HEAD] = {CFG(header_timeout_ms), NEA__EXPIRE_408, NEA__LIST_NONE, H, false, NEA__C_FREE,
                     NEA__EXPIRE_CLOSE},
    [NEA__C_QUEUED] = {QUEUE, NEA__EXPIRE_SHED, NEA__LIST_WAIT, H, false, NEA__C_FREE,
                       NEA__EXPIRE_NONE},
    [NEA__C_BODY] = {BODY_PACE, NEA__EXPIRE_408, NEA__LIST_NONE, H, false, NEA__C_FREE,
                     NEA__EXPIRE_NONE},
    [NEA__C_HANDLER] = {RESPONSE, NEA__EXPIRE_504, NEA__LIST_NONE, H, false, NEA__C_FREE,
                        NEA__EXPIRE_NONE},
    [NEA__C_STREAM] = {RESPONSE, NEA__EXPIRE_TIMEOUT, NEA__LIST_NONE, H, false, NEA__C_FREE,
                       NEA__EXPIRE_NONE},
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
    [NEA__C_WS_QUEUED] = {QUEUE, NEA__EXPIRE_SHED, NEA__LIST_WAIT, W, false, NEA__C_FREE,
                          NEA__EXPIRE_NONE},
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
    case HANDSHAKE: {
        const nea_config *cfg = c->env->cfg;
        return now + (cfg->tls_handshake_ms != 0 ? cfg->tls_handshake_ms : cfg->header_timeout_ms);
    }
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
        c->due =
            phase_due(c, now); /* the body (or message) moved since: its pace moved the deadline */
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
    case NEA__EXPIRE_TLS:
        nea__tlsio_timeout(c);
        close_now(c);
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

static void tls_settle(nea__conn *c, bool data);

static void on_drained(nea__output *o, int status)
{
    nea__conn *c = CONN_OF(o);
    if (c->state == NEA__C_CLOSING) {
        return;
    }
    if (status < 0) {
        close_now(c);
    } else if (c->state == NEA__C_LINGER) {
        /* TLS: the close_notify is out, the FIN follows it. */
        if (c->w->shut_pending && nea__out_idle(o)) {
            c->w->shut_pending = false;
            if (uv_shutdown(&c->w->shut, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
                close_now(c);
            }
        }
    } else if (c->env->tls != NULL) {
        tls_settle(c, false); /* the TLS state may take input, or be done, now */
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

/* A TLS connection whose handshake is not done yet. */
static bool tls_handshaking(const nea__conn *c)
{
    return c->env->tls != NULL &&
           (!c->tls_live || (nea__tls_status(nea__conn_tls(c)) & NEA__TLS_OPEN) == 0);
}

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
    /* Nothing of the last connection that held it, cleared where it is
     * read before it is written: the counters and flags, the route, the
     * body, the record, the parser and the head. Not cleared, each written before
     * use: the output side (nea__out_start), the shutdown request
     * (uv_shutdown), the response's header lines, and the rest of the
     * WebSocket state (cleared at the handover). A buffer is taken for
     * every request of a keep-alive connection: this is on its path. */
    memset(w, 0, offsetof(nea__work, out));
    memset(&w->route, 0, offsetof(nea__work, hdrbuf) - offsetof(nea__work, route));
    w->rbuf = rbuf;
    nea__out_start(&w->out, (uv_stream_t *)&c->tcp, rbuf + pool->obuf_off, &out_hooks);
    w->shut.data = c;
    c->w = w;
    if (c->env->tls != NULL) {
        nea__tlsio_attach(c); /* the TLS state takes the buffer's record buffers */
    }
    return true;
}

/* work_take clears two runs of nea__work; they must stay in this order. */
_Static_assert(offsetof(nea__work, out) + sizeof(nea__output) <= offsetof(nea__work, shut) &&
                   offsetof(nea__work, shut) < offsetof(nea__work, route) &&
                   offsetof(nea__work, route) < offsetof(nea__work, body) &&
                   offsetof(nea__work, body) < offsetof(nea__work, record) &&
                   offsetof(nea__work, record) < offsetof(nea__work, parser) &&
                   offsetof(nea__work, head) < offsetof(nea__work, hdrbuf),
               "nea__work's fields moved: check work_take's clearing");

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
                              size_t rbuf_off, size_t obuf_off, size_t tls_off)
{
    nea__work_pool *pool = &env->works;
    memset(pool, 0, sizeof(*pool));
    pool->count = count;
    pool->obuf_off = obuf_off - rbuf_off;
    pool->tls_off = tls_off - rbuf_off;
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
        nea__out_idle(&c->w->out) && (c->env->tls == NULL || nea__tlsio_detach(c))) {
        work_give(c);
    }
}

bool nea__conn_take_work(nea__conn *c)
{
    return c->w != NULL || work_take(c);
}

bool nea__conn_resume(nea__conn *c)
{
    nea__conn_state next;
    if (phases[c->state].list != NEA__LIST_BUFFER || !work_take(c)) {
        return false;
    }
    /* A TLS connection may have waited for its first buffer, before its
     * handshake. */
    next = phases[c->state].buffer;
    nea__conn_enter(c, next == NEA__C_IDLE && tls_handshaking(c) ? NEA__C_TLS_HANDSHAKE : next);
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
    if (c->skip_alloc) {
        *buf = nea__buf(NULL, 0); /* see on_read: read_in lets this one pass */
    } else if (c->w == NULL && !work_take(c)) {
        *buf = nea__buf(NULL, 0);
    } else if (c->state == NEA__C_LINGER) {
        *buf = nea__buf(c->w->rbuf, size); /* discarded */
    } else if (c->env->tls != NULL) {
        *buf = nea__tlsio_recv_buf(c); /* ciphertext, straight into the TLS state */
    } else {
        *buf = nea__buf(c->w->rbuf + c->w->rlen, size - c->w->rlen);
    }
}

/* Decrypted bytes land in the read buffer (TLS), or n plain bytes did. In
 * a phase timed by its pace (a request body, a WebSocket message) they
 * count as its progress: its deadline runs from the last read. */
static void landed(nea__conn *c, size_t n)
{
    if (phases[c->state].deadline == BODY_PACE) {
        nea__body_rx_arrived(&c->w->body, n, uv_now(c->env->loop));
    }
    c->w->rlen += n;
}

bool nea__conn_refill(nea__conn *c)
{
    size_t room, n;
    if (c->env->tls == NULL || c->w == NULL || !c->tls_live) {
        return false;
    }
    room = c->env->cfg->read_buffer_size - c->w->rlen;
    n = room > 0 ? nea__tlsio_take(c, c->w->rbuf + c->w->rlen, room) : 0;
    if (n > 0) {
        landed(c, n);
    }
    return n > 0;
}

static void refuse_plain_http(nea__conn *c);

/* After the TLS state moved (bytes received, ciphertext sent, the peer's
 * end): what it means for the connection. data: the exchange has news
 * (decrypted bytes, the peer's end) even if nothing more lands now. */
static void tls_settle(nea__conn *c, bool data)
{
    switch (nea__tlsio_check(c)) {
    case NEA__TLSIO_FAILED:
        if (nea__tlsio_reason(c) == NEA__TLS_R_PLAIN_HTTP) {
            refuse_plain_http(c);
        } else {
            close_now(c);
        }
        return;
    case NEA__TLSIO_CLOSED:
        close_now(c); /* close_notify exchanged, or nothing was ever sent */
        return;
    case NEA__TLSIO_HANDSHAKE:
        nea__conn_update_reading(c);
        return;
    case NEA__TLSIO_OPENED:
        nea__conn_enter(c, NEA__C_IDLE);
        data = true; /* the first request may be here already; else the buffer goes back */
        break;
    case NEA__TLSIO_OPEN:
        break;
    }
    if (!c->eof && nea__tlsio_peer_done(c)) {
        c->eof = true; /* a half-close between records: what is complete is answered */
        data = true;
    }
    if (nea__conn_refill(c)) {
        data = true;
    }
    if (data) {
        owner(c)->input(c);
    } else {
        nea__conn_release_work(c);
        nea__conn_update_reading(c);
    }
}

static void read_in(nea__conn *c, ssize_t n)
{
    if (n == 0) {
        nea__conn_release_work(c); /* nothing came after all: an idle one needs no buffer */
        return;
    }
    if (n == UV_ENOBUFS && c->skip_alloc) {
        c->skip_alloc = false;
        return;
    }
    if (n == UV_ENOBUFS) {
        /* Readable, and no buffer free: stop polling, wait in line. With
         * TLS and a buffer, the TLS state cannot take more now: reading
         * resumes when it can (nea__conn_update_reading). */
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
        if (c->w == NULL) {
            nea__conn_enter(c, phases[c->state].buffer);
        } else if (c->env->tls != NULL) {
            tls_settle(c, false);
        }
        return;
    }
    if (c->env->tls != NULL && c->state != NEA__C_LINGER) {
        if (n == UV_EOF && !c->tls_live) {
            close_now(c); /* nothing was ever read */
            return;
        }
        if (n == UV_EOF) {
            nea__tlsio_eof(c); /* between records: a half-close; else a truncation */
        } else if (n < 0 || nea__tlsio_received(c, (size_t)n) < 0) {
            close_now(c); /* a reset, or the answer cannot be sent */
            return;
        }
        tls_settle(c, false);
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
    landed(c, (size_t)n);
    owner(c)->input(c);
}

/* When a read fills its buffer libuv reads again at once, asking for a
 * buffer first. If this read's work gave the connection buffer back (the
 * connection is idle now), that request is refused once (skip_alloc):
 * otherwise the idle connection would take a buffer again just to find
 * nothing to read. TLS reads fill their buffer every time (a record header,
 * then its body). */
static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    nea__conn *c = st->data;
    nea__load_touch(c->env->load);
    read_in(c, n);
    if (n > 0 && (size_t)n == buf->len && c->w == NULL) {
        c->skip_alloc = true;
    }
}

void nea__conn_update_reading(nea__conn *c)
{
    bool want;
    if (c->state == NEA__C_FREE || c->state == NEA__C_CLOSING ||
        phases[c->state].list == NEA__LIST_BUFFER || c->eof) {
        want = false;
    } else if (c->state == NEA__C_LINGER || c->w == NULL) {
        want = true; /* without a buffer the connection waits for readability only */
    } else if (c->env->tls != NULL) {
        /* The TLS state takes ciphertext while its decrypted bytes are not
         * waiting for room in the read buffer and its answer is out. */
        want = c->tls_live && (nea__tls_status(nea__conn_tls(c)) & NEA__TLS_RECV) != 0;
    } else {
        want = c->w->rlen < c->env->cfg->read_buffer_size;
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
    if (env->tls != NULL) {
        nea__tlsio_end(c); /* before its record buffers go back with the buffer */
    }
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
    if (c->tls_live) {
        /* close_notify, if it can go now; an idle connection borrows a
         * buffer for it (it goes back when the socket has closed). */
        if (c->w == NULL && c->env->works.free != NULL) {
            (void)work_take(c);
        }
        nea__tlsio_goodbye(c);
    }
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
    if (c->w == NULL || nea__out_flush(&c->w->out) < 0 || (c->eof && nea__out_idle(&c->w->out))) {
        close_now(c);
        return;
    }
    if (c->env->tls != NULL) {
        /* close_notify after what is queued; the FIN once it is out. */
        if (nea__out_tls_close(&c->w->out) < 0) {
            close_now(c);
            return;
        }
        if (!nea__out_idle(&c->w->out)) {
            c->w->shut_pending = true; /* on_drained sends the FIN */
            nea__conn_enter(c, NEA__C_LINGER);
            nea__conn_update_reading(c);
            return;
        }
    }
    if (uv_shutdown(&c->w->shut, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        close_now(c);
        return;
    }
    nea__conn_enter(c, NEA__C_LINGER);
    nea__conn_update_reading(c);
}

/* Plain HTTP sent to the TLS port: a plain 400 (the client can read it)
 * with Connection: close, then the lingering close. Counted as a 400 and
 * in the unrouted record, like any malformed request. */
static void refuse_plain_http(nea__conn *c)
{
    nea__conn_env *env = c->env;
    nea__sample sample = {.status = 400, .outcome = NEA_OUTCOME_COMPLETED};
    char hdrbuf[NEA__HDRBUF];
    uv_buf_t bufs[3];
    unsigned n = nea__static_bufs(env->statics, &env->date, uv_now(env->loop), NEA__PB_400,
                                  "Connection: close\r\n", "", 0, false, hdrbuf, bufs);
    (void)uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
    env->stats->rejected_400++;
    nea__stats_response(env->stats, 400);
    nea__metrics_record(env->records.metrics, &sample);
    nea__conn_close_lingering(c);
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
    nea__conn_enter(c, env->tls != NULL ? NEA__C_TLS_HANDSHAKE : NEA__C_IDLE);
    nea__conn_update_reading(c);
    return 0;
}
