/*
 * timers.c - a server's deadlines: lists sorted by due time, all driven by
 * one libuv timer.
 *
 * Every connection slot has at most one deadline at a time (its phase's),
 * and most phases' deadlines are "now plus a constant from the config":
 * entering them in order keeps a list of such deadlines sorted, so setting
 * one is an append and the earliest is the list's head. A slot therefore
 * carries a few words of links instead of a libuv timer of its own (152
 * bytes), and the loop's timer heap holds one entry per server instead of
 * one per connection. Deadlines that move (a body's pace) or differ per
 * entry are inserted in order, walking from the end.
 *
 * Firing: the libuv timer is set for the earliest head among the lists;
 * when it fires, every entry whose time has come is taken off its list and
 * reported. A report may set deadlines again, even ones already due: an
 * entry set during the current firing waits for the next one, so a
 * deadline of 0 ms cannot loop.
 *
 * Invariants: each list is sorted by due (ties in the order they were set);
 * an entry is on at most one list; the libuv timer is set for no later than
 * the earliest head (it may fire early once after a head was removed, and
 * then re-arms).
 */
#include "timers.h"

#include <string.h>

static void on_timer(uv_timer_t *h);

/* Sets the libuv timer for due, unless it is already set for no later. */
static void arm(nea__timers *t, uint64_t due)
{
    uint64_t now;
    if (due >= t->armed) {
        return;
    }
    now = uv_now(t->timer.loop);
    t->armed = due;
    uv_timer_start(&t->timer, on_timer, due > now ? due - now : 0, 0);
}

void nea__timers_init(nea__timers *t, uv_loop_t *loop, void (*expired)(nea__timed *e))
{
    memset(t, 0, sizeof(*t));
    uv_timer_init(loop, &t->timer);
    t->timer.data = t;
    t->armed = UINT64_MAX;
    t->expired = expired;
}

static void unlink_entry(nea__timers *t, nea__timed *e)
{
    unsigned k = e->list;
    if (e->prev != NULL) {
        e->prev->next = e->next;
    } else {
        t->head[k] = e->next;
    }
    if (e->next != NULL) {
        e->next->prev = e->prev;
    } else {
        t->tail[k] = e->prev;
    }
    e->prev = e->next = NULL;
    e->linked = false;
}

void nea__timers_cancel(nea__timers *t, nea__timed *e)
{
    if (e->linked) {
        unlink_entry(t, e);
    }
}

void nea__timers_set(nea__timers *t, nea__timed *e, unsigned list, uint64_t due)
{
    nea__timed *after;
    nea__timers_cancel(t, e);
    e->due = due;
    e->list = list;
    e->pass = t->pass;
    e->linked = true;
    /* After the last entry due no later than e: from the end, where a list
     * of "now plus a constant" deadlines always finds it at once. */
    after = t->tail[list];
    while (after != NULL && after->due > due) {
        after = after->prev;
    }
    e->prev = after;
    e->next = after != NULL ? after->next : t->head[list];
    if (e->next != NULL) {
        e->next->prev = e;
    } else {
        t->tail[list] = e;
    }
    if (after != NULL) {
        after->next = e;
    } else {
        t->head[list] = e;
    }
    arm(t, due);
}

static void on_timer(uv_timer_t *h)
{
    nea__timers *t = h->data;
    uint64_t now = uv_now(h->loop), next = UINT64_MAX;
    unsigned pass = ++t->pass;

    t->armed = UINT64_MAX;
    for (unsigned k = 0; k < NEA__TIMER_LISTS; k++) {
        nea__timed *e;
        while ((e = t->head[k]) != NULL && e->due <= now && e->pass != pass) {
            unlink_entry(t, e);
            t->expired(e);
        }
    }
    for (unsigned k = 0; k < NEA__TIMER_LISTS; k++) {
        if (t->head[k] != NULL && t->head[k]->due < next) {
            next = t->head[k]->due;
        }
    }
    if (next != UINT64_MAX) {
        arm(t, next);
    }
}

void nea__timers_close(nea__timers *t, uv_close_cb cb, void *data)
{
    t->timer.data = data;
    uv_close((uv_handle_t *)&t->timer, cb);
}
