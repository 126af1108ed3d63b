/*
 * unit.h - the fixture of the tests that drive lib/ modules directly: a
 * server on its own loop with a small configuration and its log captured,
 * requests opened straight from the pool (no socket; req->conn stays NULL,
 * so an unwind answers nothing and only counts stats.oom_500), and a
 * teardown that checks every arena came back before closing and asserting
 * uv_loop_close() == 0.
 */
#ifndef NEA_TEST_UNIT_H
#define NEA_TEST_UNIT_H

#include "server.h"

#include "checkers.h"
#include "log.h"

#define KIB ((size_t)1024)
#define MIB (KIB * 1024)

typedef struct fixture {
    uv_loop_t loop;
    nea_config cfg;
    nea_server *srv;
    int closed;
    t_log log;
} fixture;

/* 8 MiB limit, 4 arenas of 16 KiB, 4 connections of 1 KiB; log into f
 * (or to stderr when f is NULL). */
void unit_config(nea_config *cfg, fixture *f);
/* A heap fixture with unit_config, then tweak (if not NULL), and its
 * server; the log is cleared after the server's startup line. */
fixture *unit_start(void (*tweak)(nea_config *));
/* Disarms the server's arena faults, checks every arena came back, closes
 * the server (its callback exactly once), asserts uv_loop_close() == 0 and
 * frees f. */
void unit_stop(fixture *f);
/* cmocka setup / teardown: unit_start(NULL) into *state; unit_stop. */
int unit_setup(void **state);
int unit_teardown(void **state);
/* The close callback the fixture uses (data: a fixture). */
void unit_on_closed(nea_server *s, void *data);

/* Length of the pool's free list. */
unsigned free_len(const nea__pool *p);
/* No arena in use, all on the free list, no live request, no frame. */
void assert_pool_whole(const fixture *f);

/* A request in a fresh arena, as the server makes one for a head. */
nea_req *open_req(fixture *f);
/* Ends req and runs the loop until its tracked handles have closed. */
void end_req(fixture *f, nea_req *req);
/* Opens a request, runs fn in its outermost frame, ends it. */
void run_req(fixture *f, void (*fn)(nea_req *, void *), void *arg);

/* Defers that record the order they ran in: register t_record with a
 * t_defer_arg naming the order and an id (0..15). */
typedef struct t_order {
    int seq[16];
    int n;
    int ran[16]; /* per id */
} t_order;

typedef struct t_defer_arg {
    t_order *o;
    int id;
} t_defer_arg;

void t_record(void *arg);

/* True when hay contains needle (printed when not). */
bool contains(const char *hay, const char *needle);

#endif
