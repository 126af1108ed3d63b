/*
 * listener.h - the listening socket (see listener.c).
 */
#ifndef NEA_LISTENER_H
#define NEA_LISTENER_H

#include "common.h"
#include "fault.h"

typedef struct nea__listener {
    uv_tcp_t tcp;
    bool open;      /* the handle exists (until its close callback) */
    bool listening; /* bound and accepting */
    int port;
    uint64_t error_logged_ms;
    const nea_config *cfg;
    nea_stats *stats;
    unsigned *handles_open;
    void (*on_connection)(void *data, uv_stream_t *listener); /* one connection is pending */
    void (*on_closed)(void *data);
    void *data;
} nea__listener;

/* Binds host:port and listens (cfg: the log sink), with SO_REUSEPORT when
 * shared (one of several sockets on that address: workers, or servers a
 * host runs on its own threads). Returns 0 or a UV_E* error (logged; the
 * handle is then closing and on_closed will be called). */
int nea__listener_start(nea__listener *l, uv_loop_t *loop, const nea_config *cfg,
                        const char *host, int port, bool shared, nea_stats *stats,
                        unsigned *handles_open, nea__fault *fault,
                        void (*on_connection)(void *data, uv_stream_t *listener),
                        void (*on_closed)(void *data), void *data);
/* Stops accepting; on_closed is called once the handle has closed. */
void nea__listener_close(nea__listener *l);

#endif /* NEA_LISTENER_H */
