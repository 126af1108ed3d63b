/*
 * upgrade.h - handing listening sockets from one process to the next:
 * systemd's LISTEN_FDS protocol both ways, and starting a successor that
 * says when it listens (see upgrade.c).
 */
#ifndef NEA_UPGRADE_H
#define NEA_UPGRADE_H

#include "common.h"

#include <sys/types.h>

/* The names a successor finds in LISTEN_FDNAMES. */
#define NEA__FDNAME_HTTP "nea-http"
#define NEA__FDNAME_AGENT "nea-agent"

/* After the ready pipe closed without a byte: how long (at most) the
 * predecessor looks for the successor's exit status, to log it. */
#define NEA__UPGRADE_REAP_TRIES 20
#define NEA__UPGRADE_REAP_MS 10

typedef struct nea__upgrade {
    uv_pipe_t ready; /* the successor's end writes one byte once it listens */
    uv_timer_t reap; /* looks for the exit status of a successor that failed */
    unsigned tries;
    bool open;        /* ready and reap are handles (until their close callbacks) */
    unsigned closing; /* close callbacks still to come */
    bool reported;    /* done was called */
    pid_t pid;
    char byte;
    unsigned *handles_open;
    const nea_config *cfg;
    void (*done)(void *data, int status); /* 0: listening; else NEA_ESUCCESSOR */
    void (*closed)(void *data);           /* its handles closed */
    void *data;
} nea__upgrade;

/* Starts argv[0] (a path, no search) with argv, the environment, and the n
 * sockets fds[] as descriptors 3 .. 3 + n - 1 under systemd's protocol
 * (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES from names[]), plus NEA_READY_FD:
 * a pipe on which done(data, 0) is called once the successor wrote its
 * byte, or done(data, NEA_ESUCCESSOR) when it closed the pipe without it
 * (it exited, or could not listen). done runs at most once, on loop; the
 * handles close after it and closed(data) follows (u->open until
 * then). Returns 0, UV_EBUSY (one is being started already) or a UV_E* error from
 * pipe, fork (done is then never called). */
int nea__upgrade_start(nea__upgrade *u, uv_loop_t *loop, const nea_config *cfg,
                       unsigned *handles_open, char *const argv[], const int *fds,
                       const char *const *names, unsigned n, void (*done)(void *data, int status),
                       void (*closed)(void *data), void *data);
/* Stops waiting (done is not called any more); closed() follows once the
 * handles closed. Does nothing when none is open. */
void nea__upgrade_close(nea__upgrade *u);

/* The successor's side, after nea_server_listen: one byte on fd, then
 * close it (a failure: close it without a byte). fd < 0: nothing. */
void nea__upgrade_ready(int fd, bool listening);

#endif /* NEA_UPGRADE_H */
