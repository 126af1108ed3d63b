/*
 * harness.h - end-to-end test fixture: a libnea server on a private loop and
 * blocking-free client sockets on 127.0.0.1, driven from one thread.
 *
 * The test thread alternates between running the server's loop
 * (UV_RUN_NOWAIT) and polling the client socket, so there are no threads and
 * no sleeps: every wait is a poll with a deadline.
 */
#ifndef NEA_TEST_HARNESS_H
#define NEA_TEST_HARNESS_H

#include "server.h"

#include <stdbool.h>
#include <stddef.h>

#define H_DEADLINE_MS 5000

typedef struct h_fixture {
    uv_loop_t loop;
    nea_server *srv;
    nea_config cfg;
    int port;
    bool closed;
    bool close_called;
    bool head_request; /* h_read: the next response answers HEAD (no body) */
    char log[8192];    /* everything logged, newline-separated (truncated) */
    size_t log_len;
} h_fixture;

typedef struct h_response {
    int status;
    char head[4096];
    char body[65536];
    size_t body_len;
} h_response;

/* nea_config_init plus small, test-friendly sizes and port 0. */
void h_config(nea_config *cfg);
/* Creates the server with cfg, registers the test routes, listens. */
void h_start(h_fixture *f, const nea_config *cfg);
/* Starts the graceful close (callback sets f->closed). */
void h_close(h_fixture *f);
/* Graceful close (unless already started), waits for it, then asserts
 * uv_loop_close() == 0. */
void h_stop(h_fixture *f);

/* Runs the loop for up to ms milliseconds (or until *done becomes true). */
void h_pump(h_fixture *f, unsigned ms, const bool *done);
uint64_t h_now_ms(void);

int h_connect(h_fixture *f);
void h_send(h_fixture *f, int fd, const char *data, size_t len);
void h_sends(h_fixture *f, int fd, const char *s);
/* Reads one response; returns its status, or -1 on EOF/reset/timeout. */
int h_read(h_fixture *f, int fd, h_response *r, unsigned timeout_ms);
/* True if the peer closed (EOF or reset) within timeout_ms, discarding data. */
bool h_closed(h_fixture *f, int fd, unsigned timeout_ms);
/* True if nothing arrives and the socket stays open for ms. */
bool h_quiet(h_fixture *f, int fd, unsigned ms);
/* Value of a response header (case-insensitive), copied into buf; NULL if absent. */
const char *h_header(const h_response *r, const char *name, char *buf, size_t len);
/* One request on a fresh connection; returns the status (the connection is closed). */
int h_request(h_fixture *f, const char *raw, h_response *r);

void h_stats(h_fixture *f, nea_stats *st);

/* Routes registered by h_start:
 *   GET  /hello        200 "Hello, World!"
 *   POST /echo         200 with the request body
 *   GET  /hdr          200 with the value of header X-Test and the query, "v|q"
 *   GET  /p/           prefix route: 200 with the path tail
 *   GET  /alloc/N      nea_alloc N bytes (huge N: OOM 500)
 *   GET  /sleep/MS     async: tracked timer, then 200 "slept"; registers a defer
 *                      that increments h_defers_run
 *   GET  /big          200 with h_big_len bytes of static body
 *   POST /hello        (so /hello knows two methods)
 *   GET  /norespond-oom  responds, then exhausts the arena (response stands)
 */
extern unsigned h_defers_run;
extern size_t h_big_len;

#endif
