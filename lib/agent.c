/*
 * agent.c - the load-balancer agent: a tiny TCP responder on the server's
 * loop that tells a balancer (HAProxy's agent-check) how full the server is
 * before it has to say 503, and that it drains before connections fail.
 *
 * Every connection is answered one line at once and closed (oneshot.c):
 * "drain\n" once the server began to close, else "up ready" and, when the
 * balancer's weight for this server is known (nea_config.agent_weight),
 * "N%": the share of capacity free.
 *
 * Why the weight must be known: HAProxy turns "N%" into weight * N / 100,
 * rounded down, and weight is 1 unless the configuration says otherwise.
 * Under that default any N below 100 is weight 0: no new traffic, and a
 * fleet whose instances all report less than 100% (all busy, a rolling
 * restart, a cold start) has no server at all. So without agent_weight the
 * agent never answers a percentage and the configured weight stands; with
 * it, N is never below ceil(100 / weight), the least that still rounds to a
 * weight of 1 (1% for weight 100).
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
 * The average starts at the free share read when the agent starts (a fresh
 * process: all of it). A restarted instance is ramped up by the balancer,
 * not by the agent: HAProxy's slowstart does that once the server comes
 * back up, and a slow start in the agent itself (starting near 0%) is what
 * zeroed a fleet that all started at once. "up" lifts a down state the
 * agent did not cause only when health checks agree; "ready" lifts a drain
 * left from this address's previous process (a rolling restart). The
 * capacity is read through the owner's hook when the balancer asks: one
 * read over the whole server, so per-worker servers sum into one answer.
 *
 * No arena, no allocation: the listener and NEA__AGENT_CLIENTS client
 * handles live in this struct. A connection that finds them all busy stays
 * pending on the listener (libuv stops polling it) until one closes.
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

size_t nea__agent_line(const nea__capacity *cap, unsigned free_avg, unsigned weight, char *buf)
{
    unsigned w = free_avg > 100 ? 100 : free_avg, least;
    if (cap->draining) {
        memcpy(buf, "drain\n", 7);
        return 6;
    }
    if (weight == 0) {
        memcpy(buf, "up ready\n", 10);
        return 9;
    }
    least = weight >= 100 ? 1 : (100 + weight - 1) / weight;
    if (cap->shedding && w > 10) {
        w = 10;
    }
    return (size_t)snprintf(buf, NEA__AGENT_LINE, "up ready %u%%\n", w < least ? least : w);
}

static uint32_t read_free(nea__agent *a)
{
    nea__capacity cap;
    memset(&cap, 0, sizeof(cap));
    a->read(a->data, &cap);
    return nea__capacity_free(&cap) << 10;
}

/* Exponential average over time: avg += (x - avg) * dt / tau, dt the time
 * since the last sample (a busy loop that runs the timer late still
 * averages over the right time). */
static void on_sample(uv_timer_t *t)
{
    nea__agent *a = t->data;
    uint64_t now = uv_now(t->loop), dt = now - a->sampled_ms;
    int64_t x = read_free(a), avg = a->free_avg;

    dt = dt < NEA__AGENT_SMOOTH_MS ? dt : NEA__AGENT_SMOOTH_MS;
    a->free_avg = (uint32_t)(avg + (x - avg) * (int64_t)dt / NEA__AGENT_SMOOTH_MS);
    a->sampled_ms = now;
}

static void accept_pending(nea__agent *a);

static bool clients_open(const nea__agent *a)
{
    for (unsigned i = 0; i < NEA__AGENT_CLIENTS; i++) {
        if (a->clients[i].o.in_use) {
            return true;
        }
    }
    return false;
}

static void maybe_closed(nea__agent *a)
{
    if (!a->listener.open && !clients_open(a) && !a->sample_open && a->timers_open == 0) {
        a->closed(a->data);
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    nea__agent *a = h->data;
    a->timers_open--;
    (*a->handles_open)--;
    maybe_closed(a);
}

/* A client's connection closed; once the agent closes, so do the timers. */
static void on_client_closed(nea__oneshot *o)
{
    nea__agent_client *cl = o->data;
    nea__agent *a = cl->agent;
    if (!a->closing) {
        accept_pending(a);
        return;
    }
    if (!clients_open(a)) {
        for (unsigned i = 0; i < NEA__AGENT_CLIENTS; i++) {
            nea__oneshot_close_timer(&a->clients[i].o, on_timer_closed, a);
        }
    }
}

static void answer(nea__agent *a, nea__agent_client *cl)
{
    nea__capacity cap;
    uv_buf_t buf;

    memset(&cap, 0, sizeof(cap));
    a->read(a->data, &cap);
    buf = uv_buf_init(
        cl->line, (unsigned)nea__agent_line(&cap, (a->free_avg + 512) >> 10, a->weight, cl->line));
    a->answered++;
    nea__oneshot_send(&cl->o, &buf, 1);
}

static void accept_pending(nea__agent *a)
{
    nea__agent_client *cl = NULL;

    if (a->pending == NULL || a->closing) {
        return;
    }
    for (unsigned i = 0; i < NEA__AGENT_CLIENTS && cl == NULL; i++) {
        cl = a->clients[i].o.in_use ? NULL : &a->clients[i];
    }
    if (cl == NULL) {
        return; /* a client handle closes soon and calls back */
    }
    if (nea__oneshot_accept(&cl->o, a->pending) == 0) {
        answer(a, cl);
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
    a->handles_open = handles_open;
    a->weight = cfg->agent_weight;
    rc = nea__listener_start(&a->listener, loop, cfg, on, stats, handles_open, NULL, on_connection,
                             on_listener_closed, a);
    if (rc == 0) {
        for (unsigned i = 0; i < NEA__AGENT_CLIENTS; i++) {
            a->clients[i].agent = a;
            nea__oneshot_init(&a->clients[i].o, loop, handles_open, on_client_closed,
                              &a->clients[i]);
        }
        a->timers_open = NEA__AGENT_CLIENTS;
        a->free_avg = read_free(a); /* no slow start here: see the top of this file */
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
    return a->listener.open || clients_open(a) || a->sample_open || a->timers_open > 0;
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
    if (!clients_open(a)) {
        for (unsigned i = 0; i < NEA__AGENT_CLIENTS && a->timers_open > 0; i++) {
            nea__oneshot_close_timer(&a->clients[i].o, on_timer_closed, a);
        }
        return;
    }
    for (unsigned i = 0; i < NEA__AGENT_CLIENTS; i++) {
        nea__oneshot_close(&a->clients[i].o); /* the last one closes the timers */
    }
}
