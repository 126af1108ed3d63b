/*
 * load.h - how much handler time the loop spends, and when a request would
 * wait too long for it (see load.c).
 */
#ifndef NEA_LOAD_H
#define NEA_LOAD_H

#include "common.h"

/* The handlers' average time moves by 1 / NEA__LOAD_AVG_WEIGHT of the
 * difference per handler run. */
#define NEA__LOAD_AVG_WEIGHT 8
/* A run counts at most this many times the average. */
#define NEA__LOAD_CLIP 4

typedef struct nea__load {
    uv_prepare_t prepare;
    uint64_t target_ns;    /* overload_target_ms: most a request should wait; 0 = never refuse */
    uint64_t stale_ns;     /* a queued request that waited this long is refused */
    uint64_t hold_ns;      /* "shedding" lasts this long after the last refusal */
    uint64_t budget_ns;    /* handler time per loop iteration */
    uint64_t iter_start;   /* first I/O callback of the running iteration; 0 = none yet */
    uint64_t iter_handler; /* handler time spent in the running iteration */
    uint64_t lag;          /* busy time of the last iteration that had I/O */
    uint64_t avg_ns;       /* handlers' average time (per run, recent) */
    uint64_t last_shed;    /* when the last request was refused for CPU */
    uint64_t run_since;    /* refusals no more than interval apart since then */
    uint64_t interval_ns;  /* overload_interval_ms */
    bool shedding;         /* refused one within hold_ns */
    uint64_t transitions;  /* shedding turned on or off */
} nea__load;

/* Starts measuring on loop (an unreferenced prepare handle: it never keeps
 * the loop alive). target_ms = 0 never refuses (the budget still holds). */
void nea__load_init(nea__load *l, uv_loop_t *loop, unsigned target_ms, unsigned interval_ms,
                    unsigned budget_us, unsigned hold_ms);
/* An I/O callback runs: the first one of an iteration marks its start. */
void nea__load_touch(nea__load *l);
/* A handler entry took ns. */
void nea__load_handler_ran(nea__load *l, uint64_t ns);
/* Handlers have spent this iteration's budget: more handler work now makes
 * everything else on the loop (health checks, reads, timers) wait; what is
 * ready waits for the next iteration. */
bool nea__load_spent(const nea__load *l);
/* Whether a request that would start after `ahead` others (queued, each
 * taking the handlers' average time) must be refused: its wait would
 * exceed the target. A refusal is counted (shedding turns on). */
bool nea__load_refuse(nea__load *l, unsigned ahead);
/* Whether a request that has waited since `since` (uv_hrtime) must be
 * refused instead of run now: while shedding, once it waited
 * overload_interval_ms (counted like nea__load_refuse). */
bool nea__load_stale(nea__load *l, uint64_t since);
/* Shedding is on and this iteration's budget is spent: work that may be
 * refused and costs a lot (a full TLS handshake) should be refused now. */
bool nea__load_saturated(const nea__load *l);
void nea__load_close(nea__load *l, uv_close_cb cb, void *data);

#endif /* NEA_LOAD_H */
