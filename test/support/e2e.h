/*
 * e2e.h - the end-to-end fixture: a libnea server with the shared test
 * routes (handlers.h) on a private loop, its log captured, and client
 * sockets (sock.h) on 127.0.0.1, all driven from one thread.
 *
 * h_stop checks, like unit_stop, that every arena came back before it
 * closes the server, and that the loop closes cleanly afterwards.
 */
#ifndef NEA_TEST_E2E_H
#define NEA_TEST_E2E_H

#include "server.h"

#include "handlers.h"
#include "log.h"
#include "sock.h"

#include <stdbool.h>
#include <stddef.h>

#define H_DEADLINE_MS S_DEADLINE_MS

typedef s_response h_response;

typedef struct h_fixture {
    uv_loop_t loop;
    nea_server *srv;
    nea_config cfg;
    int port;
    bool closed;
    int closed_calls;
    bool close_called;
    int close_rc, close_rc2; /* for handlers that close the server themselves */
    bool head_request;       /* h_read: the next response answers HEAD (no body) */
    t_log log;
} h_fixture;

/* nea_config_init plus small, test-friendly sizes and port 0. */
void h_config(nea_config *cfg);
/* Creates the server with cfg (log captured into f->log), registers the
 * test routes, listens. */
void h_start(h_fixture *f, const nea_config *cfg);
/* h_config, then tweak (if not NULL), then h_start. */
void h_start_tweaked(h_fixture *f, void (*tweak)(nea_config *));
/* The close callback the fixture uses (data: the fixture): sets f->closed
 * and counts f->closed_calls. */
void h_on_closed(nea_server *s, void *data);
/* Starts the graceful close (the callback sets f->closed). */
void h_close(h_fixture *f);
/* Unless the close already started: waits for every arena to come back
 * (pool in_use == 0, no live request) and asserts it. Then the graceful
 * close, waited for, and uv_loop_close() == 0. */
void h_stop(h_fixture *f);

/* The fixture an end-to-end test program shares (cmocka runs one test at a
 * time): h_test_start starts it with h_config changed by tweak (may be
 * NULL) and hands it to the test as *state; h_test_setup is the cmocka
 * setup without a tweak; h_test_teardown stops it (h_stop). */
void h_test_start(void **state, void (*tweak)(nea_config *));
int h_test_setup(void **state);
int h_test_teardown(void **state);

/* The server's arenas, every class taken together (nea_stats_arenas). */
nea_stats_class h_arenas(h_fixture *f);
/* Arenas in use now (the request reading /stats-like figures counts). */
unsigned h_arenas_in_use(h_fixture *f);
/* Runs the loop until no arena is in use, at most H_DEADLINE_MS; returns
 * whether that happened. */
bool h_arenas_settle(h_fixture *f);

/* Runs the loop for up to ms milliseconds (or until *done becomes true). */
void h_pump(h_fixture *f, unsigned ms, const bool *done);
/* Runs the loop once, waiting at most ms. */
void h_step(h_fixture *f, unsigned ms);
uint64_t h_now_ms(void);

/* Waits (running the loop) until cond holds, at most H_DEADLINE_MS; then
 * asserts it. cond is re-evaluated after every loop step. */
#define H_WAIT(f, cond)                                                                            \
    do {                                                                                           \
        uint64_t h_end_ = h_now_ms() + H_DEADLINE_MS;                                              \
        while (!(cond) && h_now_ms() < h_end_) {                                                   \
            h_step((f), 5);                                                                        \
        }                                                                                          \
        assert_true(cond);                                                                         \
    } while (0)

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
/* A fresh connection that has sent "GET path HTTP/1.1" with a Host. */
int h_get(h_fixture *f, const char *path);
/* Sends raw on fd and reads the answer into r (r may be NULL); fails the
 * test, naming raw, unless the status is the one expected. */
void h_expect(h_fixture *f, int fd, const char *raw, int status, h_response *r);
/* raw on a fresh connection is answered status with Connection: close and
 * the connection is then closed. */
void h_expect_close(h_fixture *f, const char *raw, int status);

void h_stats(h_fixture *f, nea_stats *st);
nea_stats h_st(h_fixture *f);
/* Slot i of the server (connection state, for conditions). */
nea__conn *h_slot(h_fixture *f, unsigned i);
/* How many slots are in state st. */
unsigned h_slots_in(h_fixture *f, nea__conn_state st);

#endif
