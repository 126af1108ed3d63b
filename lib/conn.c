/*
 * conn.c - connection slots: the socket, one phase machine driven by one
 * table, reading, writing through output.c, closing.
 *
 * A slot (in the reservation) holds a connection's libuv handles, its
 * llhttp parser and its fixed read buffer. Where a connection is in its
 * life is one phase (nea__conn_state); the table below gives every phase
 * its deadline (which config field sets it), what the deadline's expiry
 * does, and the admission list the slot belongs to meanwhile. Every phase
 * change goes through nea__conn_enter, which tells admission and arms the
 * deadline itself. What the phases mean for HTTP is the exchange's
 * (exchange.c), which the slot tells what happened through
 * nea__slot_hooks: bytes arrived or the peer finished sending, a deadline
 * passed, a write finished, the connection is closing. The slot never
 * calls up.
 *
 * Invariants: one libuv timer per slot, moved only when a deadline comes
 * earlier than the one it is set for; reading stops while the read buffer
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

static const struct phase {
    size_t deadline; /* offsetof(nea_config, <field>_ms), or one of the above */
    nea__expiry on_expiry;
    nea__conn_list list;
} phases[NEA__C_PHASES] = {
    [NEA__C_FREE] = {NO_DEADLINE, NEA__EXPIRE_NONE, NEA__LIST_NONE},
    [NEA__C_IDLE] = {offsetof(nea_config, keepalive_timeout_ms), NEA__EXPIRE_CLOSE, NEA__LIST_IDLE},
    [NEA__C_HEAD] = {offsetof(nea_config, header_timeout_ms), NEA__EXPIRE_408, NEA__LIST_NONE},
    [NEA__C_QUEUED] = {offsetof(nea_config, queue_timeout_ms), NEA__EXPIRE_SHED, NEA__LIST_WAIT},
    [NEA__C_BODY] = {BODY_PACE, NEA__EXPIRE_408, NEA__LIST_NONE},
    [NEA__C_HANDLER] = {RESPONSE, NEA__EXPIRE_504, NEA__LIST_NONE},
    [NEA__C_STREAM] = {RESPONSE, NEA__EXPIRE_TIMEOUT, NEA__LIST_NONE},
    [NEA__C_WRITING] = {offsetof(nea_config, write_timeout_ms), NEA__EXPIRE_TIMEOUT, NEA__LIST_NONE},
    [NEA__C_LINGER] = {LINGER, NEA__EXPIRE_CLOSE, NEA__LIST_LINGER},
    [NEA__C_CLOSING] = {NO_DEADLINE, NEA__EXPIRE_NONE, NEA__LIST_NONE},
};

nea__conn_list nea__conn_list_of(nea__conn_state st)
{
    return phases[st].list;
}

/* The loop time at which the current phase's deadline passes. */
static uint64_t phase_due(const nea__conn *c, uint64_t now)
{
    size_t d = phases[c->state].deadline;
    switch (d) {
    case NO_DEADLINE:
        return UINT64_MAX;
    case BODY_PACE:
        return nea__body_rx_due(&c->body, c->env->cfg);
    case LINGER:
        return now + NEA__LINGER_MS;
    case RESPONSE:
        return now + nea__route_response_ms(c->route, c->env->cfg);
    default:
        return now + *(const unsigned *)(const void *)((const char *)c->env->cfg + d);
    }
}

static void on_timer(uv_timer_t *t);

/* Sets the timer for the current phase's deadline. A request moves through
 * several deadlines, each usually later than the one before: the libuv
 * timer is moved only when the new deadline is earlier than the one it is
 * set for, and otherwise fires early once and re-arms for the rest
 * (on_timer). One timer-heap update per keep-alive period instead of four
 * per request. */
static void arm(nea__conn *c)
{
    uint64_t now = uv_now(c->env->loop);
    uint64_t due = phase_due(c, now);
    c->due = due;
    if (due == UINT64_MAX) {
        uv_timer_stop(&c->timer);
        return;
    }
    if (!uv_is_active((uv_handle_t *)&c->timer) || c->timer_due > due) {
        c->timer_due = due;
        uv_timer_start(&c->timer, on_timer, due > now ? due - now : 0, 0);
    }
}

/* Every phase change goes through here: admission's lists always match the
 * phase, and the phase's deadline is armed. */
void nea__conn_enter(nea__conn *c, nea__conn_state st)
{
    nea__conn_state from = c->state;
    c->state = st;
    c->env->hooks->state(c, from);
    arm(c);
}

void nea__conn_rearm(nea__conn *c)
{
    arm(c);
}

static void on_timer(uv_timer_t *t)
{
    nea__conn *c = t->data;
    uint64_t now = uv_now(c->env->loop);

    if (c->state == NEA__C_BODY) {
        c->due = phase_due(c, now); /* the body's pace moves its deadline */
    }
    if (now < c->due) {
        /* Set for an earlier deadline that has since moved: the rest. */
        c->timer_due = c->due;
        uv_timer_start(t, on_timer, c->due - now, 0);
        return;
    }
    switch (phases[c->state].on_expiry) {
    case NEA__EXPIRE_CLOSE:
        close_now(c);
        break;
    case NEA__EXPIRE_NONE:
        break;
    default:
        c->env->exchange->expired(c, phases[c->state].on_expiry);
        break;
    }
}

/* --- reading --------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    nea__conn *c = h->data;
    size_t size = c->env->cfg->read_buffer_size;
    (void)suggested;
    if (c->state == NEA__C_LINGER) {
        *buf = nea__buf(c->rbuf, size); /* discarded */
    } else {
        *buf = nea__buf(c->rbuf + c->rlen, size - c->rlen);
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
    if (n == UV_EOF && c->state != NEA__C_LINGER) {
        /* The peer finished sending (a half-close, or a close we cannot tell
         * from one yet): what is complete is still answered. */
        c->eof = true;
        nea__conn_update_reading(c);
        c->env->exchange->input(c);
        return;
    }
    if (n < 0) {
        close_now(c); /* a reset (cancels a request in flight), or a lingering peer's end */
        return;
    }
    if (c->state == NEA__C_LINGER) {
        return;
    }
    if (c->state == NEA__C_BODY) {
        nea__body_rx_arrived(&c->body, (size_t)n, uv_now(c->env->loop));
    }
    c->rlen += (size_t)n;
    c->env->exchange->input(c);
}

void nea__conn_update_reading(nea__conn *c)
{
    bool want;
    if (c->state == NEA__C_FREE || c->state == NEA__C_CLOSING || c->eof) {
        want = false;
    } else {
        want = c->state == NEA__C_LINGER || c->rlen < c->env->cfg->read_buffer_size;
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
    if (c->state == NEA__C_CLOSING || c->state == NEA__C_FREE) {
        return;
    }
    nea__conn_enter(c, NEA__C_CLOSING);
    c->env->exchange->closing(c);
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
    c->env->exchange->closing(c);
    if (nea__out_flush(&c->out) < 0 || (c->eof && nea__out_idle(&c->out))) {
        close_now(c);
        return;
    }
    c->shut.data = c;
    if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
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

/* --- writing: output.c's reports ------------------------------------------- */

#define CONN_OF(o) ((nea__conn *)(void *)((char *)(o)-offsetof(nea__conn, out)))

static void on_sent(nea__output *o, int status)
{
    nea__conn *c = CONN_OF(o);
    if (c->state != NEA__C_CLOSING) {
        c->env->exchange->sent(c, status);
    }
}

static void on_piece(nea__output *o, int status)
{
    nea__conn *c = CONN_OF(o);
    if (c->state != NEA__C_CLOSING) { /* else closed under the write: already cancelled */
        c->env->exchange->piece(c, status);
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
    }
}

static const nea__output_hooks out_hooks = {
    .sent = on_sent,
    .piece = on_piece,
    .drained = on_drained,
};

/* --- the peer ------------------------------------------------------------------ */

const struct sockaddr_storage *nea__conn_peer(nea__conn *c)
{
    if (!c->peer_known) {
        int len = sizeof(c->peer);
        if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->peer, &len) != 0) {
            c->peer.ss_family = AF_UNSPEC;
        }
        c->peer_known = true;
    }
    return &c->peer;
}

bool nea__conn_same_peer(nea__conn *c, const struct sockaddr_storage *y)
{
    const struct sockaddr_storage *x = nea__conn_peer(c);
    if (x->ss_family != y->ss_family) {
        return false;
    }
    if (x->ss_family == AF_INET) {
        return ((const struct sockaddr_in *)x)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)y)->sin_addr.s_addr;
    }
    return x->ss_family == AF_INET6 &&
           memcmp(&((const struct sockaddr_in6 *)x)->sin6_addr,
                  &((const struct sockaddr_in6 *)y)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

/* --- slots ------------------------------------------------------------------- */

void nea__conn_init(nea__conn *c, nea__conn_env *env, char *rbuf, char *obuf)
{
    memset(c, 0, sizeof(*c));
    c->env = env;
    c->rbuf = rbuf;
    c->obuf = obuf;
    c->state = NEA__C_FREE;
    uv_timer_init(env->loop, &c->timer);
    c->timer.data = c;
    env->handles_open++;
}

int nea__conn_accept(nea__conn *c, uv_stream_t *listener, uv_os_sock_t fd)
{
    nea__conn_env *env = c->env;
    size_t fresh = offsetof(nea__conn, state);
    int rc;

    memset((char *)c + fresh, 0, sizeof(*c) - fresh); /* nothing of the last connection */
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
    nea__out_start(&c->out, (uv_stream_t *)&c->tcp, c->obuf, &out_hooks);
    c->keep_alive = true;
    nea__stats_conn_opened(env->stats);
    if (listener == NULL) {
        uv_tcp_nodelay(&c->tcp, 1); /* accepted ones inherit it from the listener */
    }
    nea__conn_enter(c, NEA__C_IDLE);
    nea__conn_update_reading(c);
    return 0;
}
