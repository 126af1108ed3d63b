/*
 * tlsio.c - the TLS side of a connection slot, between the slot (conn.c)
 * and the TLS engine (tls.c).
 *
 * A slot of a TLS server carries its connection's TLS state (the engine's
 * nea__tls_conn, nea__tls_conn_size bytes after the slot's struct) for the
 * connection's whole life; the record buffers (nea__tls_records_size
 * bytes) belong to the connection buffer (nea__work), so a connection has
 * them exactly while it holds a buffer: the state starts with the first
 * buffer's records when the first byte is readable, gives them back
 * (parks) when the connection goes idle with nothing buffered, and takes
 * those of whichever buffer it gets next (unparks). The buffer's output
 * side (output.c) writes through the state.
 *
 * Reading: libuv reads ciphertext straight into the state's input buffer
 * (nea__tlsio_recv_buf); nea__tlsio_received hands it in and sends what the
 * state answers; conn.c then asks where the connection stands
 * (nea__tlsio_check) and takes the decrypted bytes into its read buffer
 * (nea__tlsio_take), where plain HTTP bytes land.
 *
 * Counting: a finished handshake once (resumed or not), a failure once per
 * connection by reason (nea_stats.tls_failed), logged at most once a
 * second per reason with the number of others since. The CPU a handshake
 * step costs goes to the loop's load as handler time: it spends the
 * iteration's handler budget and raises the handlers' average, so requests
 * behind a flood of handshakes are refused sooner (load.c). While the loop
 * sheds and the iteration's budget is spent, the admit hook refuses full
 * handshakes before their public-key work (the engine then fails them with
 * "shed").
 *
 * Invariants: the state has record buffers exactly while the slot holds a
 * connection buffer (c->w) and the state is live; nothing here changes the
 * slot's phase or calls the exchange: conn.c decides from what these
 * functions return.
 */
#include "tlsio.h"

#include <inttypes.h>
#include <string.h>

int nea__tlsio_admit(void *conn)
{
    nea__conn *c = conn;
    return !nea__load_saturated(c->env->load);
}

/* The connection buffer's record buffers. */
static void *records_of(const nea__conn *c)
{
    return c->w->rbuf + c->env->works.tls_off;
}

void nea__tlsio_attach(nea__conn *c)
{
    nea__tls_conn *t = nea__conn_tls(c);
    if (!c->tls_live) {
        t = nea__tls_conn_start(t, c->env->tls, records_of(c), c);
        c->tls_live = true;
    } else {
        nea__tls_unpark(t, records_of(c));
    }
    nea__out_tls(&c->w->out, t);
}

bool nea__tlsio_detach(nea__conn *c)
{
    return nea__tls_park(nea__conn_tls(c)) != NULL;
}

void nea__tlsio_end(nea__conn *c)
{
    if (c->tls_live) {
        (void)nea__tls_conn_end(nea__conn_tls(c));
        c->tls_live = false;
    }
}

uv_buf_t nea__tlsio_recv_buf(nea__conn *c)
{
    size_t len;
    unsigned char *p = nea__tls_recv_buf(nea__conn_tls(c), &len);
    return nea__buf(p, len);
}

int nea__tlsio_received(nea__conn *c, size_t n)
{
    nea__tls_conn *t = nea__conn_tls(c);
    uint64_t t0;
    int r;

    if (c->state != NEA__C_TLS_HANDSHAKE) {
        nea__tls_recv_ack(t, n);
        return nea__out_tls_kick(&c->w->out);
    }
    /* The handshake's public-key work runs inside these calls. */
    t0 = uv_hrtime();
    nea__tls_recv_ack(t, n);
    r = nea__out_tls_kick(&c->w->out);
    nea__load_handler_ran(c->env->load, uv_hrtime() - t0);
    return r;
}

void nea__tlsio_eof(nea__conn *c)
{
    if (c->tls_live) {
        nea__tls_eof(nea__conn_tls(c));
    }
}

/* Counts a failure and logs it, at most once a second per reason. */
static void failed(nea__conn *c, nea__tls_reason r, int detail)
{
    nea__conn_env *env = c->env;
    uint64_t skipped;
    char addr[64];

    env->stats->tls_failed[r]++;
    if (nea__log_limit_pass(&env->tls_log[r], uv_now(env->loop), &skipped)) {
        struct sockaddr_storage peer;
        int len = sizeof(peer);
        if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&peer, &len) != 0) {
            peer.ss_family = AF_UNSPEC;
        }
        nea__addr_name((const struct sockaddr *)&peer, addr, sizeof(addr));
        nea__log(env->cfg, NEA_LOG_WARN,
                 "TLS connection from %s failed: %s (detail %d); %" PRIu64
                 " more \"%s\" failures since the last such line",
                 addr, nea__tls_reason_name(r), detail, skipped, nea__tls_reason_name(r));
    }
}

nea__tlsio_state nea__tlsio_check(nea__conn *c)
{
    nea__tls_conn *t = nea__conn_tls(c);
    unsigned st;

    if (!c->tls_live) {
        return NEA__TLSIO_HANDSHAKE;
    }
    st = nea__tls_status(t);
    if ((st & NEA__TLS_FAILED) != 0) {
        failed(c, nea__tls_reason_of(t), nea__tls_detail(t));
        return NEA__TLSIO_FAILED;
    }
    if ((st & NEA__TLS_CLOSED) != 0) {
        return NEA__TLSIO_CLOSED;
    }
    if ((st & NEA__TLS_OPEN) == 0) {
        return NEA__TLSIO_HANDSHAKE;
    }
    if (c->state == NEA__C_TLS_HANDSHAKE) {
        c->env->stats->tls_handshakes++;
        c->env->stats->tls_resumed += nea__tls_resumed(t);
        return NEA__TLSIO_OPENED;
    }
    return NEA__TLSIO_OPEN;
}

nea__tls_reason nea__tlsio_reason(nea__conn *c)
{
    return c->tls_live ? nea__tls_reason_of(nea__conn_tls(c)) : NEA__TLS_R_NONE;
}

bool nea__tlsio_peer_done(nea__conn *c)
{
    return c->tls_live && (nea__tls_status(nea__conn_tls(c)) & NEA__TLS_EOF) != 0;
}

size_t nea__tlsio_take(nea__conn *c, char *dst, size_t room)
{
    nea__tls_conn *t = nea__conn_tls(c);
    size_t len;
    const unsigned char *p = nea__tls_read_buf(t, &len);
    if (len > room) {
        len = room;
    }
    if (len > 0) {
        memcpy(dst, p, len);
        nea__tls_read_ack(t, len);
    }
    return len;
}

void nea__tlsio_timeout(nea__conn *c)
{
    if (c->tls_live) {
        nea__tls_abort(nea__conn_tls(c), NEA__TLS_R_TIMEOUT);
    }
    failed(c, NEA__TLS_R_TIMEOUT, 0);
}

void nea__tlsio_goodbye(nea__conn *c)
{
    nea__tls_conn *t = nea__conn_tls(c);
    const unsigned char *rec;
    size_t len;
    uv_buf_t b;

    if (!c->tls_live || c->w == NULL || (nea__tls_status(t) & NEA__TLS_OPEN) == 0 ||
        !nea__out_idle(&c->w->out)) {
        return;
    }
    nea__tls_close(t);
    rec = nea__tls_send_buf(t, &len);
    if (rec != NULL) {
        b = nea__buf(rec, len);
        (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    }
}
