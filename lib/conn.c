/*
 * conn.c - connection slots and the request lifecycle on them.
 *
 * A slot (in the reservation) holds a connection's libuv handles, its llhttp
 * parser and its fixed read buffer. One timer per slot enforces whichever
 * deadline the current state has:
 *
 *   IDLE    --first byte-->   HEAD     keep-alive timer   -> close
 *   HEAD    --head done-->    QUEUED   header deadline    -> 408, close
 *   QUEUED  --arena-->        BODY     queue timeout      -> 503, close
 *   BODY    --body done-->    HANDLER  idle, rate, deadline -> 408, close
 *   HANDLER --respond-->      WRITING  response timeout   -> 504
 *   WRITING --written-->      IDLE     write timer        -> close
 *   (any)   --must close-->   LINGER   linger timer       -> close
 *
 * Invariants: a slot holds an arena only from a complete head to the end of
 * its response (idle and slow connections hold none); the read buffer is the
 * only place request bytes wait, so a connection never buffers more than
 * read_buffer_size (reading stops when it is full: backpressure for
 * pipelined floods); a request is detached from its slot before it ends, so
 * the slot and the arena are returned independently.
 *
 * Which slot is free, which idle one may be evicted and which head gets the
 * next arena is admission's decision (admission.c): a slot reports every
 * state change, every routed head and its close through nea__conn_hooks and
 * never calls up. The request in the slot reports back through the
 * nea__req_hooks this file implements.
 */
#include "conn.h"

#include "log.h"
#include "stats.h"
#include "stream.h"

#include <inttypes.h>
#include <errno.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>

static void conn_process(nea__conn *c);
static void close_now(nea__conn *c);
static void close_lingering(nea__conn *c);
static void update_reading(nea__conn *c);
static void response_done(nea__conn *c, int status);
static bool body_overdue(const nea__conn *c, uint64_t now);
static bool body_expected(const nea__conn *c);
static void arm_body(nea__conn *c);
static void begin_sample(nea__conn *c);
static void finish_sample(nea__conn *c, nea_outcome fallback);

static const char continue_line[] = "HTTP/1.1 100 Continue\r\n\r\n";

/* Every state change goes through here, so the owner's lists (idle,
 * waiting) always match the state. */
static void set_state(nea__conn *c, nea__conn_state st)
{
    nea__conn_state from = c->state;
    c->state = st;
    c->env->hooks->state(c, from);
}

/* --- timers ---------------------------------------------------------------- */

static void on_timer(uv_timer_t *t)
{
    nea__conn *c = t->data;
    nea_stats *st = c->env->stats;
    uint64_t now = uv_now(c->env->loop);

    if (now < c->due) {
        /* Set for an earlier deadline that has since moved (arm): the rest. */
        c->timer_due = c->due;
        uv_timer_start(t, on_timer, c->due - now, 0);
        return;
    }
    switch (c->state) {
    case NEA__C_BODY:
        if (!body_overdue(c, uv_now(c->env->loop))) {
            arm_body(c); /* still moving */
            break;
        }
        /* fall through */
    case NEA__C_HEAD:
        st->timeouts++;
        c->must_close = true;
        nea__conn_respond_error(c, NEA__E408);
        break;
    case NEA__C_HANDLER:
        /* No response in time: the handler's work is abandoned (defers run,
         * handles close when the 504 is written) and it may not answer. */
        st->timeouts++;
        st->unanswered++;
        nea__log(c->env->cfg, NEA_LOG_WARN,
                 "no response to %s %s within response_timeout_ms (%u); answering 504",
                 c->req->msg.method, c->req->msg.path, c->env->cfg->response_timeout_ms);
        c->req->cancelled = true;
        nea__conn_respond_error(c, NEA__E504);
        break;
    case NEA__C_QUEUED:
        st->shed_no_arena++;
        nea__conn_shed(c, false);
        break;
    case NEA__C_WRITING:
        st->timeouts++;
        c->sample.outcome = NEA_OUTCOME_TIMEOUT;
        close_now(c);
        break;
    default: /* IDLE (keep-alive expired), LINGER */
        close_now(c);
        break;
    }
}

/* Sets the current state's deadline, ms from now. A request moves through
 * four of them (keep-alive, head, response, write), each usually later than
 * the one before: the libuv timer is moved only when the new deadline is
 * earlier than the one it is set for, and otherwise fires early once and
 * re-arms for the rest (on_timer). One timer-heap update per keep-alive
 * period instead of four per request. */
static void arm(nea__conn *c, unsigned ms)
{
    uint64_t due = uv_now(c->env->loop) + ms;
    c->due = due;
    if (!uv_is_active((uv_handle_t *)&c->timer) || c->timer_due > due) {
        c->timer_due = due;
        uv_timer_start(&c->timer, on_timer, ms, 0);
    }
}

/* When the body being received stops being acceptable (loop time, ms): it
 * may idle body_timeout_ms between reads, must be complete by its deadline
 * however steadily it drips, and, once the grace period is over, must
 * average body_min_rate bytes/s since it started, so an arena is held only
 * by a body that is moving. */
static uint64_t body_due(const nea__conn *c)
{
    const nea_config *cfg = c->env->cfg;
    uint64_t due = c->body_last_ms + cfg->body_timeout_ms;

    if (c->body_deadline_ms < due) {
        due = c->body_deadline_ms;
    }
    if (cfg->body_min_rate > 0) {
        /* The first moment the average drops below the rate. */
        uint64_t slow = c->body_start_ms + c->body_bytes * 1000u / cfg->body_min_rate + 1;
        uint64_t grace = c->body_start_ms + cfg->body_rate_grace_ms;
        slow = slow > grace ? slow : grace;
        due = slow < due ? slow : due;
    }
    return due;
}

static bool body_overdue(const nea__conn *c, uint64_t now)
{
    return now >= body_due(c);
}

static void arm_body(nea__conn *c)
{
    uint64_t now = uv_now(c->env->loop), due = body_due(c);
    uint64_t left = due > now ? due - now : 0;
    arm(c, left < UINT32_MAX ? (unsigned)left : UINT32_MAX);
}

/* --- reading --------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    nea__conn *c = h->data;
    size_t size = c->env->cfg->read_buffer_size;
    (void)suggested;
    if (c->state == NEA__C_LINGER) {
        *buf = uv_buf_init(c->rbuf, (unsigned)size); /* discarded */
    } else {
        *buf = uv_buf_init(c->rbuf + c->rlen, (unsigned)(size - c->rlen));
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
    if (n < 0) {
        c->eof = true;
        if (n == UV_EOF && (c->state == NEA__C_WRITING || c->owrite_pending)) {
            /* The peer finished sending: finish what is being written and
             * answer the complete requests already buffered, then close
             * (conn_process, on_out_written). */
            update_reading(c);
        } else {
            close_now(c); /* cancels a request in flight */
        }
        return;
    }
    if (c->state == NEA__C_LINGER) {
        return;
    }
    if (c->state == NEA__C_BODY) {
        c->body_last_ms = uv_now(c->env->loop);
        c->body_bytes += (uint64_t)n;
    }
    c->rlen += (size_t)n;
    conn_process(c);
}

static void update_reading(nea__conn *c)
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
    if (c->counted_open) {
        nea__stats_conn_closed(env->stats);
        c->counted_open = false;
    }
    env->handles_open--;
    env->hooks->closed(c);
}

/* The request lets go of the slot, then ends (its arena returns on its own
 * schedule). */
static void end_request(nea__conn *c)
{
    nea_req *req = c->req;
    if (req != NULL) {
        c->req = NULL;
        nea__req_end(req);
    }
}

static void cancel_request(nea__conn *c)
{
    if (c->req != NULL) {
        c->req->cancelled = true;
        end_request(c);
    }
}

static void close_now(nea__conn *c)
{
    if (c->state == NEA__C_CLOSING || c->state == NEA__C_FREE) {
        return;
    }
    set_state(c, NEA__C_CLOSING);
    finish_sample(c, NEA_OUTCOME_CANCELLED);
    cancel_request(c);
    uv_timer_stop(&c->timer);
    update_reading(c);
    uv_close((uv_handle_t *)&c->tcp, on_tcp_close);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    nea__conn *c = req->data;
    if (status < 0) {
        close_now(c);
    }
}

/* Closes after the last response: send FIN, then drain what the peer still
 * sends until it closes or the linger timer fires, so it reads our response
 * rather than a reset. */
static void close_lingering(nea__conn *c)
{
    cancel_request(c);
    if (c->eof) {
        close_now(c);
        return;
    }
    set_state(c, NEA__C_LINGER);
    c->shut.data = c;
    if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        close_now(c);
        return;
    }
    arm(c, NEA__LINGER_MS);
    update_reading(c);
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

/* --- writing --------------------------------------------------------------- */

static void write_finished(nea__conn *c, int status)
{
    nea_req *req = c->req;
    if (req != NULL) {
        req->written = true;
        req->bytes_sent = req->bytes_sent || status == 0;
        if (status < 0) {
            c->must_close = true;
            c->eof = true; /* nothing more can be said on this socket */
        }
        if (req->depth > 0) {
            return; /* handler code still on the stack: nea__req_settle finishes */
        }
    }
    response_done(c, status);
}

static void on_write(uv_write_t *w, int status)
{
    nea__conn *c = w->data;
    if (c->state == NEA__C_CLOSING) {
        return; /* closed under the write; the request was already cancelled */
    }
    write_finished(c, status);
}

static void on_out_written(uv_write_t *w, int status)
{
    nea__conn *c = w->data;
    c->owrite_pending = false;
    c->olen = 0;
    if (c->state == NEA__C_CLOSING) {
        return;
    }
    if (status < 0) {
        close_now(c);
    } else if (c->eof && c->state == NEA__C_IDLE) {
        close_lingering(c); /* the peer half-closed while the batch drained */
    }
}

/* obuf's first done bytes are in the kernel: uv_write takes the rest, and
 * obuf stays untouched (no gathering) until that write completes. */
static int out_rest(nea__conn *c, size_t done)
{
    uv_buf_t b;
    int r;

    if (done == c->olen) {
        c->olen = 0;
        return 0;
    }
    b = uv_buf_init(c->obuf + done, (unsigned)(c->olen - done));
    c->wreq_out.data = c;
    r = uv_write(&c->wreq_out, (uv_stream_t *)&c->tcp, &b, 1, on_out_written);
    if (r < 0) {
        c->olen = 0;
        return r;
    }
    c->owrite_pending = true;
    return 0;
}

/* Hands the gathered responses to the kernel: one write for the batch. */
static int flush_out(nea__conn *c)
{
    uv_buf_t b = uv_buf_init(c->obuf, (unsigned)c->olen);
    int r;

    if (c->olen == 0 || c->owrite_pending) {
        return 0;
    }
    r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (r == UV_EAGAIN || r == UV_ENOSYS) {
        r = 0;
    }
    if (r < 0) {
        c->olen = 0;
        return r;
    }
    return out_rest(c, (size_t)r);
}

/* Writes what the kernel takes of bufs now, after the gathered responses
 * still in obuf (earlier responses go first). The batch and bufs go out in
 * one writev when they fit libuv's four inline buffers: a pipelined batch
 * costs one send, not two. Returns the bytes of bufs taken (0: none, they
 * wait behind what is queued) or an error. */
static int write_now(nea__conn *c, uv_buf_t *bufs, unsigned n)
{
    uv_buf_t all[4];
    size_t olen = c->olen;
    int r;

    if (olen == 0 || c->owrite_pending || n >= 4) {
        r = flush_out(c);
        if (r == 0) {
            r = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
        }
        return r == UV_EAGAIN || r == UV_ENOSYS ? 0 : r;
    }
    all[0] = uv_buf_init(c->obuf, (unsigned)olen);
    memcpy(all + 1, bufs, n * sizeof(*bufs));
    r = uv_try_write((uv_stream_t *)&c->tcp, all, n + 1);
    if (r == UV_EAGAIN || r == UV_ENOSYS) {
        r = 0;
    }
    if (r < 0) {
        c->olen = 0;
        return r;
    }
    if ((size_t)r < olen) {
        return out_rest(c, (size_t)r); /* bufs wait behind the batch's rest */
    }
    c->olen = 0;
    return r - (int)olen;
}

/* A response may join the batch when another pipelined request is already
 * buffered behind it, it keeps the connection open, and it fits. */
static bool gather(nea__conn *c, const uv_buf_t *bufs, unsigned n)
{
    size_t total = 0;
    if (!c->in_process || c->rpos >= c->rlen || c->must_close || c->env->closing ||
        c->owrite_pending) {
        return false;
    }
    for (unsigned i = 0; i < n; i++) {
        total += bufs[i].len;
    }
    if (total > NEA__OBUF - c->olen) {
        return false;
    }
    for (unsigned i = 0; i < n; i++) {
        memcpy(c->obuf + c->olen, bufs[i].base, bufs[i].len);
        c->olen += bufs[i].len;
    }
    return true;
}

/* The metrics of bytes going out: their count, and the handler's time
 * until its first answer (a streamed response: its first piece). */
static void sample_out(nea__conn *c, const uv_buf_t *bufs, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        c->sample.bytes_out += bufs[i].len;
    }
    if (c->sample.handled && c->sample.handler_ns == 0) {
        if (c->in_dispatch) {
            c->handler_sync = true; /* the clock is read when the handler returns */
        } else {
            c->sample.handler_ns = uv_hrtime() - c->t_handler;
        }
    }
}

static void write_bufs(nea__conn *c, uv_buf_t *bufs, unsigned n)
{
    int r;

    sample_out(c, bufs, n);
    set_state(c, NEA__C_WRITING);
    if (n == 0 || gather(c, bufs, n)) {
        write_finished(c, 0); /* the request ends; its bytes wait in obuf */
        return;
    }
    r = write_now(c, bufs, n);
    if (r < 0) {
        write_finished(c, r);
        return;
    }
    /* Skip what the kernel took; uv_write gets the rest (at most 3 bufs,
     * which libuv keeps inline without allocating). */
    for (size_t done = (size_t)r; n > 0 && done >= bufs[0].len; n--, bufs++) {
        done -= bufs[0].len;
        r = (int)done;
    }
    if (n == 0) {
        write_finished(c, 0);
        return;
    }
    if (c->req != NULL && r > 0) {
        c->req->bytes_sent = true;
    }
    bufs[0].base += r;
    bufs[0].len -= (size_t)r;
    c->wreq.data = c;
    r = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, n, on_write);
    if (r < 0) {
        write_finished(c, r);
        return;
    }
    arm(c, c->env->cfg->write_timeout_ms);
}

/* The Connection line for the current response: closes the connection
 * after it when the peer or the server wants that. */
static const char *conn_line(nea__conn *c)
{
    /* peer_closing: only the peer's own wish. An error response has set
     * must_close already (its framing or an unread body may still be
     * arriving), and a draining server closes for its own reasons. */
    bool server_closes = c->must_close || c->env->closing || c->body_unread;
    c->peer_closing = !c->keep_alive && !server_closes;
    if (!c->keep_alive || server_closes) {
        c->must_close = true;
        return "Connection: close\r\n";
    }
    return c->parser.http_minor == 0 ? "Connection: keep-alive\r\n" : "";
}

/* The time the head was complete, read from the clock the first time
 * something needs it (an answer, a body, a wait for an arena): a request
 * granted an arena at once takes it from the handler's first read. */
static void stamp_head(nea__conn *c)
{
    if (c->t_head == 0) {
        c->t_head = uv_hrtime();
    }
}

void nea__conn_respond_error(nea__conn *c, nea__err e)
{
    nea__conn_env *env = c->env;
    char allow[96];
    size_t allow_len = 0;
    bool head_only = c->head.headers_done && c->parser.method == HTTP_HEAD;
    unsigned n;

    if (e != NEA__E404 && e != NEA__E405 && e != NEA__E500 && e != NEA__E503 && e != NEA__E504 &&
        e != NEA__READY) {
        c->must_close = true; /* the connection's framing can't be trusted */
    } else if ((c->req == NULL && body_expected(c)) || c->body_unread) {
        c->must_close = true; /* answered from the head: the unread body follows */
    }
    if (e == NEA__E405) {
        allow_len =
            nea__route_allow(env->router, c->head.url, c->head.url_len, allow, sizeof(allow));
    }
    if (e == NEA__E400) {
        env->stats->rejected_400++;
    }
    if (c->req != NULL) {
        c->req->responded = true;
    }
    if (!c->sampling) {
        begin_sample(c); /* answered before the head was complete: unrouted */
    }
    stamp_head(c);
    c->sample.status = nea__err_status(e);
    if (e == NEA__E503) {
        c->sample.outcome = NEA_OUTCOME_SHED;
    } else if (e == NEA__E408 || e == NEA__E504) {
        c->sample.outcome = NEA_OUTCOME_TIMEOUT;
    }
    n = nea__static_bufs(env->statics, &env->date, uv_now(env->loop), e, conn_line(c), allow,
                         allow_len, head_only, c->hdrbuf, c->ebufs);
    nea__stats_response(env->stats, nea__err_status(e));
    write_bufs(c, c->ebufs, n);
}

void nea__conn_shed(nea__conn *c, bool keep)
{
    c->env->stats->shed_503++;
    c->must_close = c->must_close || !keep;
    nea__conn_respond_error(c, NEA__E503);
}

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

void nea__addr_name(const struct sockaddr_storage *a, char *buf, size_t len)
{
    int rc = UV_EINVAL;
    if (a->ss_family == AF_INET) {
        rc = uv_ip4_name((const struct sockaddr_in *)a, buf, len);
    } else if (a->ss_family == AF_INET6) {
        rc = uv_ip6_name((const struct sockaddr_in6 *)a, buf, len);
    }
    if (rc != 0 && len > 1) {
        buf[0] = '-';
        buf[1] = '\0';
    }
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

/* --- the request's hooks ---------------------------------------------------- */

static const char *req_conn_line(nea_req *req, bool close)
{
    nea__conn *c = req->conn;
    c->must_close = c->must_close || close;
    return conn_line(c);
}

static void req_send(nea_req *req, uv_buf_t *bufs, unsigned n)
{
    nea__conn *c = req->conn;
    c->sample.status = req->status;
    write_bufs(c, bufs, n);
}

static void req_send_error(nea_req *req, nea__err e)
{
    nea__conn_respond_error(req->conn, e);
}

static void req_written(nea_req *req)
{
    response_done(req->conn, 0);
}

static int req_peer(nea_req *req, struct sockaddr_storage *addr)
{
    const struct sockaddr_storage *p = nea__conn_peer(req->conn);
    if (p->ss_family != AF_INET && p->ss_family != AF_INET6) {
        return UV_ENOTCONN;
    }
    *addr = *p;
    return 0;
}

/* A piece of a streamed response was written: the producer's turn, bounded
 * by response_timeout_ms like a handler's first answer. */
static void on_piece(uv_write_t *w, int status)
{
    nea__conn *c = w->data;
    if (c->state == NEA__C_CLOSING) {
        return; /* closed under the write; the request was already cancelled */
    }
    if (status < 0) {
        close_now(c);
        return;
    }
    arm(c, c->env->cfg->response_timeout_ms);
    nea__stream_written(c->req);
}

/* One piece at a time (stream.c), so wreq is free. uv_write reports from
 * the loop even when the kernel took everything at once: the producer is
 * never re-entered from inside its own write. */
static int req_send_piece(nea_req *req, uv_buf_t *bufs, unsigned n)
{
    nea__conn *c = req->conn;
    int r;
    sample_out(c, bufs, n);
    c->sample.status = req->status;
    if (c->state != NEA__C_WRITING) {
        set_state(c, NEA__C_WRITING);
    }
    r = flush_out(c); /* earlier pipelined responses go first */
    if (r == 0) {
        c->wreq.data = c;
        r = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, n, on_piece);
    }
    if (r < 0) {
        close_now(c);
        return r;
    }
    req->bytes_sent = true;
    arm(c, c->env->cfg->write_timeout_ms);
    return 0;
}

static int req_send_file(nea_req *req, int fd, uint64_t off, size_t len)
{
    nea__conn *c = req->conn;
    off_t o = (off_t)off;
    uv_os_fd_t sock;
    ssize_t n;
    if (c->olen > 0 || c->owrite_pending ||
        uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > 0 ||
        uv_fileno((uv_handle_t *)&c->tcp, &sock) != 0) {
        return UV_EAGAIN; /* bytes already queued go first */
    }
    do {
        n = sendfile(sock, fd, &o, len);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return errno == EAGAIN || errno == EWOULDBLOCK ? UV_EAGAIN : -errno;
    }
    c->sample.bytes_out += (uint64_t)n;
    return (int)n;
}

static void req_abort(nea_req *req)
{
    close_now(req->conn);
}

static void begin_body(nea__conn *c);
static bool stream_route(const nea__conn *c);
static void body_end(nea__conn *c);

/* The handler of a streaming route is ready for its body. */
static int req_body_begin(nea_req *req)
{
    nea__conn *c = req->conn;
    if (!stream_route(c)) {
        return NEA_ESTATE;
    }
    if (!c->body_unread) {
        nea__stream_body_piece(req, NULL, 0); /* no body: its end at once */
        return 0;
    }
    begin_body(c);
    conn_process(c); /* pieces already buffered */
    return 0;
}

static void req_body_resume(nea_req *req)
{
    nea__conn *c = req->conn;
    if (c->state != NEA__C_BODY) {
        return;
    }
    if (!c->head.chunked && c->body_left == 0) {
        body_end(c); /* the paused piece was the last */
        return;
    }
    if (c->rpos == c->rlen) {
        c->rpos = c->rlen = 0; /* the paused piece is released */
    }
    conn_process(c);
}

static const nea__req_hooks req_hooks = {
    .conn_line = req_conn_line,
    .send = req_send,
    .send_error = req_send_error,
    .written = req_written,
    .peer = req_peer,
    .send_piece = req_send_piece,
    .send_file = req_send_file,
    .abort = req_abort,
    .body_begin = req_body_begin,
    .body_resume = req_body_resume,
};

/* The handler's turn: it must answer within response_timeout_ms. */
static void await_response(nea__conn *c)
{
    set_state(c, NEA__C_HANDLER);
    arm(c, c->env->cfg->response_timeout_ms);
}

/* Runs the handler. The clock is read once before and once after (for the
 * load and the metrics both). A request that is granted an arena at once
 * and answered and written by its handler ends inside it: its end's clock
 * read (finish_sample) is the one after, so it costs two reads in all. */
static void dispatch(nea__conn *c)
{
    nea__load *load = c->env->load;
    uint64_t t0, t1;
    unsigned seq = c->sample_seq;
    await_response(c);
    t0 = uv_hrtime();
    if (c->t_head == 0) {
        c->t_head = t0; /* routed and granted at once: its first clock read */
    }
    c->t_handler = t0;
    c->sample.handled = true;
    c->in_dispatch = true;
    c->t_end = 0;
    nea__req_dispatch(c->req);
    t1 = c->t_end != 0 ? c->t_end : uv_hrtime();
    /* c may be closed by now, or serving a pipelined request (another
     * sample): only this request's own sample is finished here. */
    if (c->sample_seq == seq) {
        c->in_dispatch = false;
        if (c->sampling && c->handler_sync && c->sample.handler_ns == 0) {
            c->sample.handler_ns = t1 - t0;
        }
    }
    nea__load_handler_ran(load, t1 - t0);
}

/* The request's response is fully written (or failed with status < 0). */
static void response_done(nea__conn *c, int status)
{
    finish_sample(c, status < 0 ? NEA_OUTCOME_CANCELLED : NEA_OUTCOME_COMPLETED);
    end_request(c); /* every branch below sets the next deadline or closes */
    if (status < 0) {
        close_now(c);
    } else if (c->peer_closing && c->rpos == c->rlen) {
        /* The peer said Connection: close and everything it sent has been
         * read and answered: it sends nothing more, so there is nothing to
         * drain and no reset to fear. Closing now saves the shutdown, a
         * read and the linger timer of the half-close. */
        close_now(c);
    } else if (c->must_close || c->env->closing) {
        close_lingering(c);
    } else {
        c->served = true;
        set_state(c, NEA__C_IDLE);
        arm(c, c->env->cfg->keepalive_timeout_ms);
        conn_process(c); /* pipelined requests already buffered */
    }
}

/* --- the request head ------------------------------------------------------ */

static void begin_head(nea__conn *c)
{
    if (c->rpos > 0) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    nea__head_begin(&c->head, &c->parser);
    c->route = NULL;
    c->must_close = false;
    c->body_unread = false;
    set_state(c, NEA__C_HEAD);
    arm(c, c->env->cfg->header_timeout_ms); /* a deadline: more bytes do not extend it */
}

static bool body_expected(const nea__conn *c)
{
    return c->head.chunked || (c->head.has_cl && c->head.content_length > 0);
}

static void start_body(nea__conn *c)
{
    nea_req *req = c->req;
    nea__head *h = &c->head;
    int status;

    status = nea__body_start(&req->body, req->arena, h->chunked ? 0 : (size_t)h->content_length,
                             c->env->max_body[c->route->arena_class]);
    if (status != 0) {
        nea__conn_respond_error(c, NEA__E413);
        return;
    }
    begin_body(c);
}

/* Reading the body starts (into the arena, or in pieces to the handler):
 * its framing, the 100 Continue the client may wait for, its timers. */
static void begin_body(nea__conn *c)
{
    nea__head *h = &c->head;
    if (h->chunked) {
        /* Size lines, extensions and trailers together may take no more
         * than a head may. */
        nea__chunked_init(&c->chunked, c->env->cfg->read_buffer_size);
    } else {
        c->body_left = h->content_length;
    }
    if (h->expect_continue && c->parser.http_minor == 1 && c->rpos == c->rlen) {
        uv_buf_t b = uv_buf_init((char *)continue_line, sizeof(continue_line) - 1);
        int r = write_now(c, &b, 1);
        if (r >= 0 && (size_t)r < b.len) {
            b.base += r;
            b.len -= (size_t)r;
            c->wreq_continue.data = c;
            r = uv_write(&c->wreq_continue, (uv_stream_t *)&c->tcp, &b, 1, NULL);
        }
        if (r < 0) {
            close_now(c);
            return;
        }
    }
    stamp_head(c);
    set_state(c, NEA__C_BODY);
    c->body_start_ms = c->body_last_ms = uv_now(c->env->loop);
    /* A body read in pieces holds no more arena the longer it runs: only
     * idleness and the minimum rate bound it. */
    c->body_deadline_ms =
        stream_route(c) ? UINT64_MAX : c->body_start_ms + c->env->cfg->body_deadline_ms;
    c->body_bytes = c->rlen - c->rpos; /* arrived with the head */
    arm_body(c);
}

void nea__conn_arena_ready(nea__conn *c, nea__arena *a)
{
    nea__conn_env *env = c->env;
    nea__head *h = &c->head;
    nea_req *req = nea__req_open(&env->reqs, a, c);
    int rc;

    if (req == NULL) {
        nea__pool_release(&env->reqs.pools[a->cls], a);
        c->must_close = true;
        nea__conn_respond_error(c, NEA__E500);
        env->reqs.released(env->reqs.released_data);
        return;
    }
    c->req = req;
    c->sample.queue_ns = c->t_head != 0 ? uv_hrtime() - c->t_head : 0; /* 0: granted at once */
    req->fn = c->route->fn;
    req->fn_data = c->route->data;
    req->http_minor = c->parser.http_minor;
    req->is_head = c->parser.method == HTTP_HEAD;
    rc = nea__head_index(req->arena, h, c->rbuf, c->route->prefix, c->route->path_len, &req->msg);
    if (rc != 0) {
        nea__conn_respond_error(c, NEA__E431);
        return;
    }
    c->body_unread = stream_route(c) && body_expected(c);
    c->body_got = 0;
    if (body_expected(c) && !stream_route(c)) {
        start_body(c);
    } else {
        dispatch(c);
    }
    conn_process(c); /* body bytes or pipelined requests already buffered */
}

void nea__conn_wait(nea__conn *c, unsigned ms)
{
    stamp_head(c);
    set_state(c, NEA__C_QUEUED);
    arm(c, ms);
}

uint64_t nea__conn_waiting_since(const nea__conn *c)
{
    return c->state == NEA__C_QUEUED ? c->t_head : 0;
}

/* The routed head's handler takes its body in pieces. */
static bool stream_route(const nea__conn *c)
{
    return (c->route->flags & NEA_ROUTE_STREAM_BODY) != 0;
}

/* The route's own limit for a body read in pieces, else the buffered one. */
static uint64_t body_limit(const nea__conn *c)
{
    if (stream_route(c)) {
        return c->route->body_max;
    }
    return c->env->max_body[c->route->arena_class];
}

static void head_done(nea__conn *c)
{
    nea__conn_env *env = c->env;
    nea__head *h = &c->head;
    const char *method = c->rbuf + h->start;
    const char *space = memchr(method, ' ', h->end - h->start);
    size_t method_len = space != NULL ? (size_t)(space - method) : 0;
    const char *q;
    size_t path_len;
    int status;

    env->stats->requests++;
    begin_sample(c);
    c->s_method = method; /* named in the refusal log even when the head is bad */
    c->s_method_len = method_len;
    status = nea__head_parse(h, &c->parser, c->rbuf);
    if (status != 0) {
        nea__conn_respond_error(c, nea__err_for_status(status));
        return;
    }
    c->rpos = h->end; /* whatever answers this head, the next request starts after it */
    c->keep_alive = nea__head_keep_alive(h, &c->parser);
    if (c->parser.upgrade) {
        c->must_close = true; /* no protocol switch: what follows is not HTTP/1.1 */
    }
    path_len = nea__target_path(h->url, h->url_len);
    h->url += path_len;
    h->url_len -= path_len;
    q = memchr(h->url, '?', h->url_len);
    path_len = q != NULL ? (size_t)(q - h->url) : h->url_len;
    if (path_len == 0) {
        h->url = "/"; /* absolute-form without a path */
        path_len = h->url_len = 1;
    }
    c->s_path = h->url;
    c->s_path_len = path_len;
    switch (nea__route_find(env->router, method, method_len, h->url, path_len, &c->route)) {
    case NEA__ROUTE_FOUND:
        c->sample.route = (unsigned)(c->route - env->router->routes) + 1;
        break;
    case NEA__ROUTE_NO_METHOD:
        h->url_len = path_len;
        nea__conn_respond_error(c, NEA__E405);
        return;
    default:
        nea__conn_respond_error(c, NEA__E404);
        return;
    }
    if (h->has_cl && h->content_length > body_limit(c)) {
        nea__conn_respond_error(c, NEA__E413); /* decided before reading the body */
        return;
    }
    c->sample.waited = true;
    env->hooks->routed(c);
}

static void process_head(nea__conn *c)
{
    size_t size = c->env->cfg->read_buffer_size;
    switch (nea__head_scan(&c->head, c->rbuf, c->rlen)) {
    case NEA__HEAD_BAD:
        nea__conn_respond_error(c, NEA__E400);
        break;
    case NEA__HEAD_MORE:
        if (c->rlen == size) {
            nea__conn_respond_error(c, c->head.line_done ? NEA__E431 : NEA__E414);
        }
        break;
    case NEA__HEAD_DONE:
        head_done(c);
        break;
    }
}

/* --- the body ------------------------------------------------------------------ */

/* Decodes buffered chunked framing (chunked.c, strict) into the body.
 * Returns true when the request moved on (dispatched or answered). */
static bool process_chunked(nea__conn *c)
{
    nea_req *req = c->req;
    for (;;) {
        const char *data = NULL;
        size_t used = 0, len = 0;
        nea__chunked_result r = nea__chunked_feed(&c->chunked, c->rbuf + c->rpos, c->rlen - c->rpos,
                                                  &used, &data, &len);
        c->rpos += used;
        switch (r) {
        case NEA__CHUNKED_DATA:
            if (nea__body_append(&req->body, data, len) != 0) {
                nea__conn_respond_error(c, NEA__E413);
                return true;
            }
            continue;
        case NEA__CHUNKED_DONE:
            dispatch(c); /* what follows is the next request, not yet looked at */
            return true;
        case NEA__CHUNKED_BAD:
            nea__conn_respond_error(c, NEA__E400);
            return true;
        case NEA__CHUNKED_MORE:
            break;
        }
        /* A chunk announced beyond the limit is refused before its data
         * arrives. */
        if (nea__chunked_left(&c->chunked) > req->body.max - req->body.len) {
            nea__conn_respond_error(c, NEA__E413);
            return true;
        }
        return false;
    }
}

/* The body read in pieces is complete: the handler's turn, with the
 * response deadline. */
static void body_end(nea__conn *c)
{
    c->body_unread = false;
    await_response(c);
    nea__stream_body_piece(c->req, NULL, 0);
}

/* Hands one piece to the handler; false when the request moved on (it
 * answered, or the connection closed) or the handler paused. */
static bool deliver(nea__conn *c, const char *data, size_t len)
{
    if (len > c->route->body_max - c->body_got) {
        nea__conn_respond_error(c, NEA__E413); /* a chunked body grew past the route's limit */
        return false;
    }
    c->body_got += len;
    nea__stream_body_piece(c->req, data, len);
    return c->state == NEA__C_BODY && !nea__stream_body_paused(c->req);
}

/* A body read in pieces: views into the read buffer go to the handler,
 * nothing is stored. A paused handler keeps its piece where it is: the
 * read buffer is not reused until it resumes. */
static void process_body_pieces(nea__conn *c)
{
    for (;;) {
        const char *data = c->rbuf + c->rpos;
        size_t used = 0, len = c->rlen - c->rpos;
        nea__chunked_result r = NEA__CHUNKED_DATA;

        if (c->head.chunked) {
            r = nea__chunked_feed(&c->chunked, data, len, &used, &data, &len);
        } else {
            len = len < c->body_left ? len : (size_t)c->body_left;
            used = len;
            c->body_left -= len;
            if (c->body_left == 0) {
                r = len > 0 ? NEA__CHUNKED_DATA : NEA__CHUNKED_DONE;
            } else if (len == 0) {
                r = NEA__CHUNKED_MORE;
            }
        }
        c->rpos += used;
        if (r == NEA__CHUNKED_DONE) {
            body_end(c);
            return;
        }
        if (r == NEA__CHUNKED_BAD) {
            nea__conn_respond_error(c, NEA__E400);
            return;
        }
        if (r == NEA__CHUNKED_DATA && len > 0 && !deliver(c, data, len)) {
            return;
        }
        if (r == NEA__CHUNKED_MORE) {
            if (c->head.chunked &&
                nea__chunked_left(&c->chunked) > c->route->body_max - c->body_got) {
                nea__conn_respond_error(c, NEA__E413);
                return;
            }
            break;
        }
    }
    c->rpos = c->rlen = 0;
    arm_body(c);
}

static void process_body(nea__conn *c)
{
    nea_req *req = c->req;

    if (stream_route(c)) {
        process_body_pieces(c);
        return;
    }
    if (c->head.chunked) {
        if (process_chunked(c)) {
            return;
        }
    } else {
        size_t avail = c->rlen - c->rpos;
        size_t take = avail < c->body_left ? avail : (size_t)c->body_left;
        memcpy(req->body.data + req->body.len, c->rbuf + c->rpos, take);
        req->body.len += take;
        req->body.data[req->body.len] = '\0';
        c->rpos += take;
        c->body_left -= take;
        if (c->body_left == 0) {
            dispatch(c);
            return;
        }
    }
    /* Everything buffered belongs to the body and is now in the arena. */
    c->rpos = c->rlen = 0;
    arm_body(c);
}

/* Runs the state machine over buffered bytes until it needs more input or
 * waits for something else (an arena, a handler, a write). A response that
 * completes synchronously inside this loop re-enters here; the nested call
 * returns at once and this loop carries on, so pipelined requests are served
 * iteratively, not by recursion. */
static void conn_process(nea__conn *c)
{
    if (c->in_process) {
        return;
    }
    c->in_process = true;
    for (;;) {
        if (c->state == NEA__C_IDLE && c->rpos < c->rlen) {
            begin_head(c);
        }
        if (c->state == NEA__C_HEAD) {
            process_head(c);
            if (c->state == NEA__C_HEAD) {
                break; /* needs more bytes */
            }
        } else if (c->state == NEA__C_BODY && c->rpos < c->rlen &&
                   !nea__stream_body_paused(c->req)) {
            process_body(c);
            if (c->state == NEA__C_BODY) {
                break;
            }
        } else {
            break;
        }
    }
    c->in_process = false;
    if (c->state != NEA__C_CLOSING && flush_out(c) < 0) {
        close_now(c);
        return;
    }
    if (c->eof && (c->state == NEA__C_IDLE || c->state == NEA__C_HEAD)) {
        close_lingering(c); /* nothing more can arrive */
        return;
    }
    if (c->state == NEA__C_IDLE && c->rpos == c->rlen) {
        c->rpos = c->rlen = 0;
    }
    update_reading(c);
}

/* --- counting: per-route metrics, the completion hook, refusal logs ------------ */

/* A request begins in the slot: a complete head, or an error answered
 * before one was. */
static void begin_sample(nea__conn *c)
{
    memset(&c->sample, 0, sizeof(c->sample));
    c->sampling = true;
    c->sample_seq++;
    c->in_dispatch = c->handler_sync = false;
    c->s_method = c->s_path = "";
    c->s_method_len = c->s_path_len = 0;
    c->t_head = 0; /* read lazily: the first event that needs the time sets it */
    c->sample.bytes_in = c->head.end > c->head.start ? c->head.end - c->head.start : 0;
}

static void log_refusal(nea__conn *c, const nea_completion *done)
{
    nea__conn_env *env = c->env;
    nea__log_limit *limit = done->status == 503 ? &env->log_503 : &env->log_400;
    char addr[64] = "-";
    uint64_t skipped;

    if (!nea__log_limit_pass(limit, uv_now(env->loop), &skipped)) {
        return;
    }
    nea__addr_name(nea__conn_peer(c), addr, sizeof(addr));
    nea__log(env->cfg, NEA_LOG_WARN,
             "%d for %.*s %.*s from %s (%s); %" PRIu64 " more since the last such line",
             done->status, (int)done->method_len, done->method, (int)done->path_len, done->path,
             addr, nea_outcome_name(done->outcome), skipped);
}

/* The request in the slot ended: count it once, tell the completion hook,
 * and log a refusal (rate-limited). outcome: how it ended unless a timeout,
 * a shed or an out-of-memory answer already said otherwise. */
static void finish_sample(nea__conn *c, nea_outcome fallback)
{
    nea__conn_env *env = c->env;
    nea__sample *s = &c->sample;
    nea_req *req = c->req;
    nea_completion done;
    uint64_t end;

    if (!c->sampling) {
        return;
    }
    c->sampling = false;
    if (req != NULL) {
        s->arena_peak = req->arena->peak;
        s->bytes_in += req->body.len;
        if (req->oom && s->outcome == NEA_OUTCOME_COMPLETED) {
            s->outcome = NEA_OUTCOME_OOM;
        }
    }
    if (s->outcome == NEA_OUTCOME_COMPLETED) {
        s->outcome = fallback;
    }
    end = c->t_end = uv_hrtime();
    if (c->handler_sync && s->handler_ns == 0) {
        s->handler_ns = end - c->t_handler; /* answered in the handler, written before it left */
    }
    s->total_ns = c->t_head != 0 ? end - c->t_head : 0;
    nea__metrics_record(env->metrics, s);
    if (env->cfg->on_complete == NULL && s->status != 503 && s->status != 400) {
        return;
    }
    done.method = c->s_method;
    done.method_len = c->s_method_len;
    done.path = c->s_path;
    done.path_len = c->s_path_len;
    if (req != NULL) {
        /* The head in rbuf may be gone (body bytes overwrite it): the
         * arena has the copy. */
        done.method = req->msg.method != NULL ? req->msg.method : "";
        done.method_len = strlen(done.method);
        done.path = req->msg.path != NULL ? req->msg.path : "";
        done.path_len = strlen(done.path);
    }
    done.route = s->route > 0 ? env->metrics->routes[s->route].path : NULL;
    done.status = s->status;
    done.outcome = s->outcome;
    done.bytes_in = s->bytes_in;
    done.bytes_out = s->bytes_out;
    done.queue_ns = s->queue_ns;
    done.handler_ns = s->handler_ns;
    done.total_ns = s->total_ns;
    done.arena_peak_bytes = s->arena_peak;
    if (s->status == 503 || s->status == 400) {
        log_refusal(c, &done);
    }
    if (env->cfg->on_complete != NULL) {
        done.peer = nea__conn_peer(c);
        env->cfg->on_complete(env->cfg->on_complete_data, &done);
    }
}

/* --- slots ------------------------------------------------------------------- */

void nea__conn_env_init(nea__conn_env *env, uv_loop_t *loop, const nea_config *cfg,
                        nea_stats *stats, const nea__router *router, const nea__statics *statics,
                        nea__pool *pools, const nea_plan *plan)
{
    size_t date_len;
    env->loop = loop;
    env->cfg = cfg;
    env->stats = stats;
    env->router = router;
    env->statics = statics;
    for (unsigned i = 0; i < plan->class_count; i++) {
        env->max_body[i] = plan->classes[i].max_body_size;
    }
    env->reqs.loop = loop;
    env->reqs.cfg = cfg;
    env->reqs.stats = stats;
    env->reqs.pools = pools;
    env->reqs.date = &env->date;
    env->reqs.hooks = &req_hooks;
    /* glibc loads the time zone (heap) on the first gmtime_r: let that
     * happen now, not inside the first handler's frame. */
    (void)nea__date_line(&env->date, uv_now(loop), &date_len);
}

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
    int rc;
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
        uv_close((uv_handle_t *)&c->tcp, on_tcp_close);
        return rc;
    }
    c->rlen = c->rpos = 0;
    c->olen = 0;
    c->owrite_pending = false;
    c->served = false;
    c->accept_ms = uv_now(env->loop);
    c->peer_closing = false;
    c->reading = c->eof = c->must_close = c->body_unread = false;
    c->keep_alive = true;
    c->req = NULL;
    c->peer_known = false;
    c->counted_open = true;
    nea__stats_conn_opened(env->stats);
    if (listener == NULL) {
        uv_tcp_nodelay(&c->tcp, 1); /* accepted ones inherit it from the listener */
    }
    set_state(c, NEA__C_IDLE);
    arm(c, env->cfg->keepalive_timeout_ms);
    update_reading(c);
    return 0;
}
