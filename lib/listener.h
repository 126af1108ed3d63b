/*
 * listener.h - a listening socket: TCP, a Unix domain socket, or one the
 * host already has (see listener.c).
 */
#ifndef NEA_LISTENER_H
#define NEA_LISTENER_H

#include "common.h"
#include "fault.h"

#include <sys/types.h>

/* sun_path's size on Linux: a Unix socket path is at most this minus one. */
#define NEA__UNIX_PATH_MAX 108

/* Where a listener listens: exactly one of the three. */
typedef struct nea__listen_on {
    const char *host;                    /* TCP: an IP literal (the plan checked it) ... */
    int port;                            /* ... and a port (0: any free one), */
    const struct sockaddr_storage *addr; /* or this address instead of host:port */
    bool shared;      /* TCP: SO_REUSEPORT, one of several sockets on the address */
    const char *path; /* or a Unix domain socket path ("@name": Linux's abstract namespace) */
    int fd;           /* or a listening stream socket the host has (>= 0), owned from now on */
} nea__listen_on;

typedef struct nea__listener {
    uv_tcp_t tcp;   /* any stream socket: libuv's Unix code does not look at the family */
    bool open;      /* the handle exists (until its close callback) */
    bool listening; /* bound and accepting */
    int family;     /* AF_INET, AF_INET6 or AF_UNIX, once listening */
    int port;       /* the bound TCP port, or -1 */
    bool owns_path; /* bound a path here: unlinked at close unless kept */
    bool keep_path; /* a successor serves on this socket: its path stays */
    dev_t path_dev; /* the path's file as bound, so only that file is unlinked */
    ino_t path_ino;
    char path[NEA__UNIX_PATH_MAX];
    uint64_t error_logged_ms;
    const nea_config *cfg;
    nea_stats *stats;
    unsigned *handles_open;
    void (*on_connection)(void *data, uv_stream_t *listener); /* one connection is pending */
    void (*on_closed)(void *data);
    void *data;
} nea__listener;

/* Listens where on says (cfg: the backlog and the log sink). An inherited
 * fd must be a stream socket (it is listened on again, which only sets the
 * backlog when it already listens); a Unix path left by a process that is
 * gone (nothing accepts on it) is replaced, one that a live process serves
 * is UV_EADDRINUSE, one too long UV_ENAMETOOLONG. Returns 0 or a UV_E*
 * error (logged; the handle is then closing and on_closed will be called,
 * an inherited fd closed with it). */
int nea__listener_start(nea__listener *l, uv_loop_t *loop, const nea_config *cfg,
                        const nea__listen_on *on, nea_stats *stats, unsigned *handles_open,
                        nea__fault *fault, void (*on_connection)(void *data, uv_stream_t *listener),
                        void (*on_closed)(void *data), void *data);
/* The listening socket's descriptor, or -1 when there is none. */
int nea__listener_fd(const nea__listener *l);
/* Stops accepting; on_closed is called once the handle has closed. A Unix
 * socket path this listener bound is unlinked then, unless keep_path. */
void nea__listener_close(nea__listener *l);

/* Whether fd is a socket with SO_REUSEPORT set (a reuseport group may be
 * joined next to it). */
bool nea__listener_fd_reuseport(int fd);

#endif /* NEA_LISTENER_H */
