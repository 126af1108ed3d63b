/*
 * load.c - how much handler time the loop spends, and when a request would
 * wait too long for it.
 *
 * Two rules, both always on, decided per request, none of them waiting for
 * a signal to build up (an onset of overload is refused from its first
 * request on):
 *
 *   - The budget: handlers run for at most overload_budget_us per loop
 *     iteration (the first one of an iteration always runs). Requests that
 *     become ready after that wait in admission's queue for the next
 *     iteration, so the loop goes back to polling between budgets: reads,
 *     timers and exempt routes (health checks) wait for one budget, not for
 *     every request that happened to be ready. Cheap handlers never notice
 *     (a 1 ms budget runs hundreds of them).
 *
 *   - The sojourn: a request should not wait for the loop longer than
 *     overload_target_ms. Its wait is predicted when its head is routed:
 *     the requests queued ahead of it, each taking the handlers' recent
 *     average time. A predicted wait beyond the target is refused at once,
 *     503, before the request took anything but the read of its head; so
 *     what is admitted waits at most about the target, and what is refused
 *     is told in the iteration that read it. The target is an allowance for
 *     bursts, not a queue to keep: once refusals have kept coming for
 *     overload_interval_ms (none more than that apart: overload that
 *     lasts, not a burst or a stall of the machine), the wait allowed is two
 *     budgets, so what is admitted then waits about two iterations. A queued request that has
 *     waited overload_interval_ms when the loop could run it, while
 *     shedding (the prediction was wrong: handlers got slower), is refused
 *     then instead.
 *
 * The average is per handler run, recent: it moves by 1/NEA__LOAD_AVG_WEIGHT
 * of the difference on every run, a run counting at most NEA__LOAD_CLIP
 * times the average (a handler the OS preempted is not a costlier one), so
 * a change of the handlers' cost is followed within a few dozen requests. "shedding" (nea_stats,
 * the agent's weight) is on from a refusal until overload_hold_ms pass without one.
 *
 * Two times are measured per iteration as well: the loop's busy time (from
 * its first I/O callback, nea__load_touch, to the next prepare phase, just
 * before it polls again), reported as the lag; and the handler time spent
 * in it, against the budget.
 *
 * Nothing here allocates; the handle lives in the server struct.
 */
#include "load.h"

#include <string.h>

static void set_shedding(nea__load *l, bool on)
{
    if (l->shedding != on) {
        l->shedding = on;
        l->transitions++;
    }
}

static void on_prepare(uv_prepare_t *h)
{
    nea__load *l = h->data;
    uint64_t now = uv_hrtime();

    if (l->iter_start != 0) {
        l->lag = now - l->iter_start;
        l->iter_start = 0;
    }
    l->iter_handler = 0;
    if (l->shedding && now - l->last_shed >= l->hold_ns) {
        set_shedding(l, false);
    }
}

void nea__load_init(nea__load *l, uv_loop_t *loop, unsigned target_ms, unsigned interval_ms,
                    unsigned budget_us, unsigned hold_ms)
{
    memset(l, 0, sizeof(*l));
    l->budget_ns = (uint64_t)budget_us * 1000u;
    l->target_ns = (uint64_t)target_ms * 1000000u;
    l->stale_ns = (uint64_t)interval_ms * 1000000u;
    l->interval_ns = l->stale_ns;
    l->hold_ns = (uint64_t)hold_ms * 1000000u;
    uv_prepare_init(loop, &l->prepare);
    l->prepare.data = l;
    uv_prepare_start(&l->prepare, on_prepare);
    uv_unref((uv_handle_t *)&l->prepare);
}

void nea__load_touch(nea__load *l)
{
    if (l->iter_start == 0) {
        l->iter_start = uv_hrtime();
    }
}

void nea__load_handler_ran(nea__load *l, uint64_t ns)
{
    uint64_t x = ns;
    int64_t d;
    l->iter_handler += ns;
    if (l->avg_ns == 0) {
        l->avg_ns = ns > 0 ? ns : 1; /* the first run is the estimate */
        return;
    }
    /* A run the OS preempted looks many times longer than it was: one
     * sample moves the average by at most as much as a run of
     * NEA__LOAD_CLIP times it would, so an outlier shifts it by a few
     * percent while a real change of cost is followed within a few dozen
     * runs. */
    if (x > NEA__LOAD_CLIP * l->avg_ns) {
        x = NEA__LOAD_CLIP * l->avg_ns;
    }
    d = (int64_t)x - (int64_t)l->avg_ns;
    l->avg_ns = (uint64_t)((int64_t)l->avg_ns + d / NEA__LOAD_AVG_WEIGHT);
    l->avg_ns = l->avg_ns > 0 ? l->avg_ns : 1;
}

bool nea__load_spent(const nea__load *l)
{
    return l->iter_handler >= l->budget_ns;
}

static bool refused(nea__load *l)
{
    uint64_t now = uv_hrtime();
    if (!l->shedding || now - l->last_shed > l->interval_ns) {
        l->run_since = now; /* a new run of refusals */
    }
    l->last_shed = now;
    set_shedding(l, true);
    return true;
}

/* Refusals have kept coming, none more than an interval after the one
 * before, for a whole interval: overload that lasts, not a burst or a
 * stall of the machine. */
static bool sustained(const nea__load *l)
{
    uint64_t now;
    if (!l->shedding) {
        return false; /* the common case reads no clock */
    }
    now = uv_hrtime();
    return now - l->last_shed <= l->interval_ns && l->last_shed - l->run_since >= l->interval_ns;
}

bool nea__load_refuse(nea__load *l, unsigned ahead)
{
    uint64_t limit = l->target_ns;
    if (limit == 0) {
        return false;
    }
    if (2 * l->budget_ns < limit && sustained(l)) {
        limit = 2 * l->budget_ns; /* no standing queue */
    }
    if ((uint64_t)ahead * l->avg_ns <= limit) {
        return false;
    }
    return refused(l);
}

bool nea__load_stale(nea__load *l, uint64_t since)
{
    /* Only while shedding: a head that waited for an arena (memory, not
     * the loop) is not a misprediction of the handlers' time. */
    if (!l->shedding || since == 0 || uv_hrtime() - since <= l->stale_ns) {
        return false;
    }
    return refused(l);
}

bool nea__load_saturated(const nea__load *l)
{
    return l->shedding && nea__load_spent(l);
}

void nea__load_close(nea__load *l, uv_close_cb cb, void *data)
{
    l->prepare.data = data;
    uv_close((uv_handle_t *)&l->prepare, cb);
}
