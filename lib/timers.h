/*
 * timers.h - a server's deadlines: sorted lists under one libuv timer (see
 * timers.c).
 */
#ifndef NEA_TIMERS_H
#define NEA_TIMERS_H

#include "common.h"

/* How many lists a server keeps: one per kind of deadline (conn.c uses one
 * per phase). */
#define NEA__TIMER_LISTS 24

/* A deadline, embedded in what it times (a connection slot). */
typedef struct nea__timed {
    struct nea__timed *prev, *next;
    uint64_t due;      /* loop time (ms) */
    unsigned list;     /* which list it is on, while linked */
    unsigned pass;     /* the firing pass it was set in (timers.c) */
    bool linked;
} nea__timed;

typedef struct nea__timers {
    uv_timer_t timer;
    nea__timed *head[NEA__TIMER_LISTS], *tail[NEA__TIMER_LISTS];
    uint64_t armed; /* the due the libuv timer is set for; UINT64_MAX: stopped */
    unsigned pass;  /* bumped per firing */
    /* A deadline passed: e is already off its list (it may be set again). */
    void (*expired)(nea__timed *e);
} nea__timers;

void nea__timers_init(nea__timers *t, uv_loop_t *loop, void (*expired)(nea__timed *e));
/* Puts e on list (0 .. NEA__TIMER_LISTS) with its due time, off any list it
 * was on. O(1) when due is no earlier than the list's last entry (a list
 * whose deadlines are now plus one constant), else a walk from the end. */
void nea__timers_set(nea__timers *t, nea__timed *e, unsigned list, uint64_t due);
/* Takes e off its list (nothing when it is on none). */
void nea__timers_cancel(nea__timers *t, nea__timed *e);
/* Closes the libuv timer (its data becomes data). */
void nea__timers_close(nea__timers *t, uv_close_cb cb, void *data);

#endif /* NEA_TIMERS_H */
