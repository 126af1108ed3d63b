/*
 * serverstate.h - a server worker's state: the struct at the start of each
 * worker's slab (nea_server: the config copy, the reservation, the router,
 * pools, slots' env, admission, listener, agent, stats, the group's
 * threads and sockets), shared by the files that run a server:
 * sockets.c (its listening sockets) and server.c (its lifecycle), and read
 * by the files above them (totals.c, scrape.c, advise.c, run.c).
 *
 * Types and accessors only, no functions of a file. The listening sockets
 * report to the lifecycle only through the hooks server.c sets
 * (nea__sockets_hooks). Worker 0 is the server the host holds and speaks
 * for the group; fields marked (0) are used by worker 0 only.
 *
 * Invariants: every worker's struct sits at the start of its own slab of
 * the one reservation (nea__server_worker finds it from any worker), and
 * its hooks are set when the slab is carved, before any socket opens.
 */
#ifndef NEA_SERVERSTATE_H
#define NEA_SERVERSTATE_H

#include "admission.h"
#include "agent.h"
#include "balance.h"
#include "listener.h"
#include "region.h"
#include "stats.h"
#include "upgrade.h"
#include "worker.h"

/* Room for the host literal (INET6_ADDRSTRLEN plus a zone suffix). */
#define NEA__HOST_MAX 64

/* How a server's listening sockets (sockets.c) report to the server's
 * lifecycle (server.c), which sets them on every worker: sockets.c calls
 * nothing of server.c's. data is the worker. */
typedef struct nea__sockets_hooks {
    /* A connection is pending on one of the worker's listeners. */
    void (*connection)(void *data, uv_stream_t *listener);
    /* A handle the sockets opened (a listener, the group check's timer, a
     * successor being started) closed: once nothing of the server is in
     * use any more, the close finishes. */
    void (*closed)(void *data);
} nea__sockets_hooks;

struct nea_server {
    nea_config cfg; /* the host's config, copied; cfg.host points at host */
    char host[NEA__HOST_MAX];
    char agent_host[NEA__HOST_MAX];     /* cfg.agent_host, or host when that was NULL */
    char unix_path[NEA__UNIX_PATH_MAX]; /* cfg.unix_path ("" = TCP); cfg.unix_path points here */
    nea_listen_fds inherit;             /* (0) cfg.inherit, copied; an fd is -1 once handed on */
    nea_plan plan;
    nea__region region;
    uv_loop_t *loop;

    nea__router router;
    nea__pool pools[NEA_ARENA_CLASSES]; /* one per arena class, class 0 first */
    nea__statics statics;
    nea__conn_env env; /* what every slot and request shares */
    nea__load load;
    nea__admission admission;
    nea__listener listener;
    nea__agent agent;
    uv_timer_t drain_timer; /* drain_delay_ms, then drain_timeout_ms */

    bool closing; /* the drain is announced (accepting stops drain_delay_ms later) */
    void (*close_cb)(nea_server *, void *);
    void *close_data;

    nea_stats stats;
    nea__metrics metrics; /* per-route records (metrics.c) */
    nea__fault fault;     /* test builds: this server's failure plan */

    /* Workers (server.c): one nea_server per worker, each at the start of
     * its slab; worker 0 is the one nea_server_new returned and runs on the
     * host's loop. Fields marked (0) are used by worker 0 only. */
    unsigned index;               /* this worker's number */
    nea_server *group;            /* worker 0 */
    nea__worker worker;           /* workers 1..: the thread and its loop */
    uv_prepare_t publish;         /* with workers: publishes stats before every wait */
    nea__stats_snapshot snapshot; /* what other threads read of this worker's stats */
    uv_thread_t owner;            /* (0) the host's thread: the one that created the server */
    uv_async_t notify;            /* (0) wakes its loop: a worker finished closing, or a close
                                     was asked for from another thread */
    unsigned workers_closed;      /* (0) atomic: workers that finished closing */
    bool close_asked;             /* (0) atomic: nea_server_close was called */
    bool close_posted;            /* (0) atomic: ... from another thread, not begun yet */
    uv_work_t pool_warm;          /* (0) the no-op job that starts libuv's thread pool */
    bool pool_warming;            /* (0) that job has not come back yet */
    bool started;                 /* (0) the worker threads run: routes are read-only */
    nea__balance balance;         /* (0) the round-robin program's maps (balance.c) */
    bool balance_ready;           /* (0) the maps exist: the program may be attached */
    uv_timer_t balance_check;     /* (0) every NEA__BALANCE_CHECK_MS: who shares the group */
    bool balance_check_open;      /* (0) */
    int flags_map;                /* worker 0's balance.flags_map, or -1: the "full" flags */
    bool own_socket;              /* this worker's listening socket is its own, not a dup */
    bool handed_off;              /* (0, atomic) a successor serves on these sockets */
    nea__upgrade upgrade;         /* (0) a successor being started (upgrade.c) */
    void (*upgrade_cb)(nea_server *, int, void *); /* (0) nea_server_upgrade's callback */
    void *upgrade_data;
    bool reported_full;              /* the balance map says this worker has no free slot */
    const nea__sockets_hooks *hooks; /* server.c's, for sockets.c: set on every worker */
};

/* Worker i of s's group (0 <= i < plan.workers), at the start of its slab. */
static inline nea_server *nea__server_worker(const nea_server *s, unsigned i)
{
    const nea_server *g = s->group;
    return (nea_server *)(g->region.base + nea__plan_slab(&g->plan, i));
}

/* A successor serves on the server's sockets (nea_server_upgrade
 * succeeded): read on every worker's thread while closing. */
static inline bool nea__server_handed_off(const nea_server *s)
{
    return __atomic_load_n(&s->group->handed_off, __ATOMIC_ACQUIRE);
}

#endif /* NEA_SERVERSTATE_H */
