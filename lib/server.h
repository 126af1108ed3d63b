/*
 * server.h - the server struct at the start of the reservation (see
 * server.c).
 */
#ifndef NEA_SERVER_H
#define NEA_SERVER_H

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
    bool reported_full; /* the balance map says this worker has no free slot */
};

/* True when worker w runs on the calling thread (worker 0: the thread that
 * created the server), so its live state may be touched directly. */
bool nea__server_on_thread(const nea_server *w);
/* The sizes of the structs the reservation holds, for plan.c's arithmetic. */
const nea__sizes *nea__server_sizes(void);
/* Worker i of s's group (0 <= i < plan.workers). */
nea_server *nea__server_worker(const nea_server *s, unsigned i);
/* Worker w's counters with its pools', queue's and load's figures: live
 * when w runs on the calling thread (or is the only worker), else as w last
 * published them. Safe from the host's thread and every worker thread. */
void nea__server_figures(const nea_server *w, nea_stats *out);
/* The per-route records as the metrics writers read them: the routes
 * registered so far, each summed over every worker (any worker's thread). */
void nea__server_records(const nea_server *s, nea__records *out);

/* A connection is pending on one of w's listeners (the listener's hook). */
void nea__server_on_connection(void *data, uv_stream_t *listener);
/* Once nothing of the server (data) is in use any more, closes the
 * always-open handles; the last close callback unmaps. Every handle that
 * closes while the server closes comes back here. */
void nea__server_maybe_finish_close(void *data);
/* A successor serves on the server's sockets (nea_server_upgrade
 * succeeded); any worker's thread may ask. */
bool nea__server_handed_off(const nea_server *s);

#ifdef NEA_FAULT_INJECTION
/* Serves an already-connected stream socket (e.g. one end of a socketpair)
 * in a free slot, as if accepted. For fuzzing and tests. */
int nea__server_adopt(nea_server *s, uv_os_sock_t fd);
/* Returns an arena a test took straight from the pool, handing it to the
 * next waiting head as a finished request would. */
void nea__server_give_back(nea_server *s, nea__arena *a);
/* Ends a drain's announcement now, as if drain_delay_ms had passed. */
void nea__server_end_announcement(nea_server *s);
#endif

#endif /* NEA_SERVER_H */
