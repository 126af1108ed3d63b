/*
 * load.h - how busy the loop is, and whether to shed for CPU (see load.c).
 */
#ifndef NEA_LOAD_H
#define NEA_LOAD_H

#include "common.h"

typedef struct nea__load {
    uv_prepare_t prepare;
    uint64_t target_ns;    /* overload_target_ms: most a request should wait; 0 = off */
    uint64_t interval_ns;  /* lag above target this long starts shedding */
    uint64_t hold_ns;      /* shedding stops after this long without a shed */
    uint64_t budget_ns;    /* while shedding: admitting stops this far into an iteration */
    uint64_t iter_start;   /* first I/O callback of the running iteration; 0 = none yet */
    uint64_t iter_handler; /* handler time spent in the running iteration */
    uint64_t lag;          /* busy time of the last iteration that had I/O */
    uint64_t above_since;  /* lag has stayed above target since; 0 = it is not */
    uint64_t last_shed;    /* when the last request was shed for CPU */
    uint64_t on_since;     /* when shedding started */
    uint64_t window;       /* start of the demand window (one interval) */
    uint64_t win_handler;  /* handler time within the window */
    uint64_t win_ran;      /* handler entries within the window */
    uint64_t win_shed;     /* requests shed within the window */
    bool shedding;
    uint64_t transitions; /* shedding turned on or off */
} nea__load;

/* Starts measuring on loop (an unreferenced prepare handle: it never keeps
 * the loop alive). target_ms = 0 measures but never sheds. */
void nea__load_init(nea__load *l, uv_loop_t *loop, unsigned target_ms, unsigned interval_ms,
                    unsigned budget_us, unsigned hold_ms);
/* An I/O callback runs: the first one of an iteration marks its start. */
void nea__load_touch(nea__load *l);
/* A handler entry took ns (the time shedding could have saved). */
void nea__load_handler_ran(nea__load *l, uint64_t ns);
/* Handlers have spent this iteration's budget: more handler work now makes
 * everything else on the loop (health checks, reads, timers) wait. */
bool nea__load_spent(const nea__load *l);
/* Whether a request that is ready now must be shed for CPU: shedding is on
 * and the iteration's budget is spent (the shed is counted). */
bool nea__load_shed(nea__load *l);
void nea__load_close(nea__load *l, uv_close_cb cb, void *data);

#endif /* NEA_LOAD_H */
