/*
 * agent.c - the load-balancer agent: a tiny TCP responder on the server's
 * loop that tells a balancer (HAProxy's agent-check) how full the server is
 * before it has to say 503, and that it drains before connections fail.
 *
 * Every connection is answered one line at once and closed: "up ready N%\n"
 * with N the share of capacity free, or "drain\n" once the server began to
 * close.
 *
 * N is an average, not a snapshot. The arenas a balanced stream holds
 * jump from one instant to the next; weights taken from snapshots send one
 * check interval's traffic to whichever instance happened to look empty,
 * which then looks full: the traffic sloshes between instances and queues
 * up. Worse, the free share reacts to the balancer's own traffic with a
 * gain of load / free (3 at 75% busy), so weights followed at once
 * overshoot and oscillate. The free share is sampled every
 * NEA__AGENT_SAMPLE_MS and averaged with a time constant of
 * NEA__AGENT_SMOOTH_MS, four times a typical agent-inter of 250 ms: the
 * feedback is damped (no overshoot below a gain of 3), sampling noise
 * averages out, and what holds arenas for seconds (slow requests, hogs)
 * still lowers the weight within about a second. Draining and CPU shedding
 * act at once.
 *
 * The average starts at 0, so a fresh process reports 1% and rises to its
 * free share over two or three seconds: a slow start. A balancer that put a
 * restarted instance in at 100% next to instances that carried its share
 * meanwhile (and report 25%) would send it most of the traffic at once. "up" lifts a down state the
 * agent did not cause only when health checks agree; "ready" lifts a drain
 * left from this address's previous process (a rolling restart). The
 * capacity is read through the owner's hook when the balancer asks: one
 * read over the whole server, so per-worker servers sum into one answer.
 *
 * No arena, no allocation: the listener and NEA__AGENT_CLIENTS client
 * handles live in this struct. A connection that finds them all busy stays
 * pending on the listener (libuv stops polling it) until one closes. Bytes
 * the balancer sends (agent-send) are read and dropped, so the close is a
 * FIN and never a reset that could discard the answer.
 */
#include "agent.h"

#include <stdio.h>
#include <string.h>

unsigned nea__capacity_free(const nea__capacity *cap)
{
    unsigned free_arenas = cap->arenas_free > cap->queued ? cap->arenas_free - cap->queued : 0;
    unsigned free_slots = cap->slots > cap->slots_busy ? cap->slots - cap->slots_busy : 0;
    uint64_t w = 100, ws;

    if (cap->arenas > 0) {
        w = (uint64_t)free_arenas * 100 / cap->arenas;
    }
    if (cap->slots > 0) {
        ws = (uint64_t)free_slots * 100 / cap->slots;
        w = ws < w ? ws : w;
    }
    return (unsigned)w;
}

size_t nea__agent_line(const nea__capacity *cap, unsigned free_avg, char *buf)
{
    unsigned w = free_avg > 100 ? 100 : free_avg;
    if (cap->draining) {
        memcpy(buf, "drain\n", 7);
        return 6;
    }
    if (cap->shedding && w > 10) {
        w = 10;
    }
    return (size_t)snprintf(buf, NEA__AGENT_LINE, "up ready %u%%\n", w < 1 ? 1 : w);
}

/* Exponential average over time: avg += (x - avg) * dt / tau, dt the time
 * since the last sample (a busy loop that runs the timer late still
 * averages over the right time). */
static void on_sample(uv_timer_t *t)
{
    nea__agent *a = t->data;
    nea__capacity cap;
    uint64_t now = uv_now(t->loop), dt = now - a->sampled_ms;
    int64_t x, avg = a->free_avg;

    memset(&cap, 0, sizeof(cap));
    a->read(a->data, &cap);
    x = (int64_t)nea__capacity_free(&cap) << 10;
    dt = dt < NEA__AGENT_SMOOTH_MS ? dt : NEA__AGENT_SMOOTH_MS;
    a->free_avg = (uint32_t)(avg + (x - avg) * (int64_t)dt / NEA__AGENT_SMOOTH_MS);
    a->sampled_ms = now;
}

static void accept_pending(nea__agent *a);

static void maybe_closed(nea__agent *a)
{
    if (!a->listener.open && a->clients_open == 0 && !a->sample_open) {
        a->closed(a->data);
    }
}

static void on_client_closed(uv_handle_t *h)
{
    nea__agent_client *cl = h->data;
    nea__agent *a = cl->agent;
    cl->in_use = false;
    a->clients_open--;
    if (a->closing) {
        maybe_closed(a);
    } else {
        accept_pending(a);
    }
}

static void client_close(nea__agent_client *cl)
{
    if (!uv_is_closing((uv_handle_t *)&cl->tcp)) {
        uv_close((uv_handle_t *)&cl->tcp, on_client_closed);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    nea__agent_client *cl = h->data;
    (void)suggested;
    *buf = uv_buf_init(cl->discard, sizeof(cl->discard));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    if (n < 0) { /* EOF or error: nothing more to say */
        client_close(s->data);
    }
}

static void on_written(uv_write_t *w, int status)
{
    (void)status;
    client_close(w->data);
}

static void answer(nea__agent *a, nea__agent_client *cl)
{
    nea__capacity cap;
    uv_buf_t buf;

    memset(&cap, 0, sizeof(cap));
    a->read(a->data, &cap);
    buf =
        uv_buf_init(cl->line, (unsigned)nea__agent_line(&cap, (a->free_avg + 512) >> 10, cl->line));
    cl->wreq.data = cl;
    a->answered++;
    if (uv_read_start((uv_stream_t *)&cl->tcp, on_alloc, on_read) != 0 ||
        uv_write(&cl->wreq, (uv_stream_t *)&cl->tcp, &buf, 1, on_written) != 0) {
        client_close(cl);
    }
}

static void accept_pending(nea__agent *a)
{
    nea__agent_client *cl = NULL;

    if (a->pending == NULL || a->closing) {
        return;
    }
    for (unsigned i = 0; i < NEA__AGENT_CLIENTS && cl == NULL; i++) {
        cl = a->clients[i].in_use ? NULL : &a->clients[i];
    }
    if (cl == NULL) {
        return; /* a client handle closes soon and calls back */
    }
    uv_tcp_init(a->pending->loop, &cl->tcp);
    cl->tcp.data = cl;
    cl->agent = a;
    cl->in_use = true;
    a->clients_open++;
    if (uv_accept(a->pending, (uv_stream_t *)&cl->tcp) == 0) {
        answer(a, cl);
    } else {
        client_close(cl);
    }
    a->pending = NULL;
}

static void on_connection(void *data, uv_stream_t *listener)
{
    nea__agent *a = data;
    a->pending = listener;
    accept_pending(a);
}

static void on_listener_closed(void *data)
{
    maybe_closed(data);
}

static void on_sample_closed(uv_handle_t *h)
{
    nea__agent *a = h->data;
    a->sample_open = false;
    maybe_closed(a);
}

int nea__agent_start(nea__agent *a, uv_loop_t *loop, const nea_config *cfg,
                     const nea__listen_on *on, nea_stats *stats, unsigned *handles_open,
                     void (*read)(void *data, nea__capacity *out), void (*closed)(void *data),
                     void *data)
{
    int rc;
    memset(a, 0, sizeof(*a));
    a->read = read;
    a->closed = closed;
    a->data = data;
    a->free_avg = 0; /* slow start: see the top of this file */
    rc = nea__listener_start(&a->listener, loop, cfg, on, stats, handles_open, NULL, on_connection,
                             on_listener_closed, a);
    if (rc == 0) {
        uv_timer_init(loop, &a->sample);
        a->sample.data = a;
        a->sampled_ms = uv_now(loop);
        a->sample_open = true;
        uv_timer_start(&a->sample, on_sample, NEA__AGENT_SAMPLE_MS, NEA__AGENT_SAMPLE_MS);
        uv_unref((uv_handle_t *)&a->sample); /* never keeps the loop alive */
    }
    return rc;
}

bool nea__agent_open(const nea__agent *a)
{
    return a->listener.open || a->clients_open > 0 || a->sample_open;
}

void nea__agent_close(nea__agent *a)
{
    if (a->closing || !nea__agent_open(a)) {
        return;
    }
    a->closing = true;
    nea__listener_close(&a->listener);
    if (a->sample_open && !uv_is_closing((uv_handle_t *)&a->sample)) {
        uv_close((uv_handle_t *)&a->sample, on_sample_closed);
    }
    for (unsigned i = 0; i < NEA__AGENT_CLIENTS; i++) {
        if (a->clients[i].in_use) {
            client_close(&a->clients[i]);
        }
    }
}
