/*
 * load.c - how long ready work waits for handlers, and when to shed for it.
 *
 * A request that became readable waits in the kernel until the loop polls
 * again, then behind every callback that runs before its own in that
 * iteration. Two times are measured per iteration: the loop's busy time
 * (from its first I/O callback, nea__load_touch, to the next prepare phase,
 * just before the loop polls again), reported as the lag and used to see
 * whether the loop has idle time; and the time spent inside handlers,
 * nea__load_handler_ran. Shedding is decided on the second: refusing a
 * request saves its handler's time and nothing else (reading, parsing and
 * writing a 503 cost about what a small response costs), so when handlers
 * are cheap a busy loop is not helped by shedding and does not shed.
 *
 * The policy, learned from CoDel (a queue is bad only when its delay stays
 * above target for a whole interval, so bursts pass; the interval is 25 ms
 * rather than CoDel's 100, since it also bounds the backlog that builds
 * before shedding starts) and with hysteresis
 * against the flip-flop of controllers that switch on the very signal their
 * action removes:
 *
 *   - shedding starts when in every iteration for overload_interval_ms
 *     handlers ran longer than overload_target_ms;
 *   - while shedding, a request is shed when handlers have already run for
 *     overload_budget_us in the iteration that found it (the first one is
 *     always admitted): each iteration serves a budget's worth of requests
 *     and answers the rest 503 at once. Iterations stay short, so what is
 *     admitted waits a couple of budgets, not the backlog, and the 503 goes
 *     out as fast. (Counting the previous iteration's length as well, as
 *     the wait the new bytes may have had in the kernel, overestimates it
 *     for bursts that arrive during that iteration: measured, it left the
 *     loop idle between bursts at 2C and cut goodput to 0.76C.);
 *   - shedding stops when the demand is gone: an interval in which the
 *     handler time asked for - what ran, plus what the shed requests would
 *     have run at the interval's average - was below nine tenths of the
 *     interval (in overload it stays above, however low shedding keeps the
 *     delay), but not before overload_hold_ms after it started; or after
 *     overload_hold_ms without a shed. Never because the delay it keeps low
 *     is low, nor because shedding left the loop idle between bursts: both
 *     would switch it off in steady overload, the flip-flop of controllers
 *     that watch their own effect.
 *
 * Nothing here allocates; the handle lives in the server struct.
 */
#include "load.h"

#include <string.h>

static void stop_shedding(nea__load *l)
{
    l->shedding = false;
    l->transitions++;
}

/* Once per interval: did handlers ask for most of the loop's time? */
static void check_demand(nea__load *l, uint64_t now)
{
    uint64_t span = now - l->window, demand;
    if (span < l->interval_ns) {
        return;
    }
    demand = l->win_handler;
    if (l->win_ran > 0) {
        demand += l->win_shed * (l->win_handler / l->win_ran);
    }
    if (l->shedding && demand * 10 < span * 9 && now - l->on_since >= l->hold_ns) {
        stop_shedding(l);
    }
    l->window = now;
    l->win_handler = l->win_ran = l->win_shed = 0;
}

static void on_prepare(uv_prepare_t *h)
{
    nea__load *l = h->data;
    uint64_t now = uv_hrtime(), handlers = l->iter_handler;
    bool io = l->iter_start != 0;

    if (io) {
        l->lag = now - l->iter_start;
        l->iter_start = 0;
    }
    l->iter_handler = 0;
    check_demand(l, now);
    if (l->shedding && now - l->last_shed >= l->hold_ns) {
        stop_shedding(l);
    }
    if (!io || l->target_ns == 0) {
        return; /* an iteration without I/O (timers only): nothing waited */
    }
    if (handlers <= l->target_ns) {
        l->above_since = 0;
    } else if (l->above_since == 0) {
        l->above_since = now;
    } else if (!l->shedding && now - l->above_since >= l->interval_ns) {
        l->shedding = true;
        l->last_shed = l->on_since = now;
        l->transitions++;
    }
}

void nea__load_init(nea__load *l, uv_loop_t *loop, unsigned target_ms, unsigned interval_ms,
                    unsigned budget_us, unsigned hold_ms)
{
    memset(l, 0, sizeof(*l));
    l->budget_ns = (uint64_t)budget_us * 1000u;
    l->window = uv_hrtime();
    l->target_ns = (uint64_t)target_ms * 1000000u;
    l->interval_ns = (uint64_t)interval_ms * 1000000u;
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
    l->iter_handler += ns;
    l->win_handler += ns;
    l->win_ran++;
}

bool nea__load_spent(const nea__load *l)
{
    return l->iter_handler >= l->budget_ns;
}

bool nea__load_shed(nea__load *l)
{
    if (!l->shedding || !nea__load_spent(l)) {
        return false;
    }
    l->last_shed = uv_hrtime();
    l->win_shed++;
    return true;
}

void nea__load_close(nea__load *l, uv_close_cb cb, void *data)
{
    l->prepare.data = data;
    uv_close((uv_handle_t *)&l->prepare, cb);
}
