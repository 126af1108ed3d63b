/*
 * agent.h - the load-balancer agent: how full the server is, told to a
 * balancer on its own TCP port (see agent.c).
 */
#ifndef NEA_AGENT_H
#define NEA_AGENT_H

#include "listener.h"
#include "oneshot.h"

/* Agent connections served at once; more wait on the listener. */
#define NEA__AGENT_CLIENTS 4
/* The weight is the free share averaged over about NEA__AGENT_SMOOTH_MS,
 * sampled every NEA__AGENT_SAMPLE_MS (see agent.c). */
#define NEA__AGENT_SAMPLE_MS 50
#define NEA__AGENT_SMOOTH_MS 1000
/* The longest answer: "up ready 100%\n". */
#define NEA__AGENT_LINE 24

/* What the balancer is told about, read over the whole server at the
 * moment it asks. Every count is additive, so several per-worker servers
 * of one process sum into one answer. */
typedef struct nea__capacity {
    unsigned arenas;      /* arenas an ordinary request may take (reserved ones excluded) */
    unsigned arenas_free; /* of those, free now */
    unsigned queued;      /* routed heads waiting for an arena */
    unsigned slots;       /* connection slots */
    unsigned slots_busy;  /* slots holding a request (idle keep-alive ones can be evicted) */
    bool shedding;        /* shedding for CPU */
    bool draining;        /* nea_server_close was called */
} nea__capacity;

/* The free share of cap in percent (0..100): the smaller of the free share
 * of arenas (less the queued heads) and of slots. */
unsigned nea__capacity_free(const nea__capacity *cap);
/* The agent-check line into buf (NEA__AGENT_LINE bytes); returns its
 * length. "drain\n" when cap is draining. Otherwise, with the balancer's
 * weight for this server unknown (weight 0), "up ready\n": no percentage,
 * the configured weight stays. With it known, "up ready N%\n", N the
 * averaged free share free_avg (at most 10 while shedding for CPU), and
 * never less than the percentage that leaves the server a weight of 1
 * (HAProxy rounds weight * N / 100 down): ceil(100 / weight). A full server
 * still gets a trickle, and a balancer whose servers are all full does not
 * run out of servers. */
size_t nea__agent_line(const nea__capacity *cap, unsigned free_avg, unsigned weight, char *buf);

typedef struct nea__agent nea__agent;

typedef struct nea__agent_client {
    nea__oneshot o;
    nea__agent *agent;
    char line[NEA__AGENT_LINE];
} nea__agent_client;

struct nea__agent {
    nea__listener listener;
    uv_timer_t sample; /* every NEA__AGENT_SAMPLE_MS: the average below */
    bool sample_open;
    uint32_t free_avg;   /* free share, percent << 10, averaged; starts at the first reading */
    uint64_t sampled_ms; /* loop time of the last sample */
    unsigned weight;     /* nea_config.agent_weight */
    nea__agent_client clients[NEA__AGENT_CLIENTS];
    unsigned timers_open; /* the clients' linger timers */
    uv_stream_t *pending; /* a connection waits for a free client handle */
    bool closing;
    uint64_t answered;
    unsigned *handles_open;
    void (*read)(void *data, nea__capacity *out); /* the owner's read of its capacity */
    void (*closed)(void *data);                   /* every handle closed after nea__agent_close */
    void *data;
};

/* Listens where on says (host:port, or an inherited socket) and answers
 * every connection with the line for the capacity read() returns at that
 * moment. Returns 0 or a UV_E* error (logged; closed() is then called once
 * the listener handle has closed). */
int nea__agent_start(nea__agent *a, uv_loop_t *loop, const nea_config *cfg,
                     const nea__listen_on *on, nea_stats *stats, unsigned *handles_open,
                     void (*read)(void *data, nea__capacity *out), void (*closed)(void *data),
                     void *data);
/* True while any of its handles is open. */
bool nea__agent_open(const nea__agent *a);
/* Stops listening and closes open answers; closed() follows once all are
 * closed. Does nothing when already closing or never started. */
void nea__agent_close(nea__agent *a);

#endif /* NEA_AGENT_H */
