/*
 * handlers.h - the request handlers the end-to-end tests share, and the
 * routes they are registered under (t_routes_add):
 *
 *   GET  /hello        200 "Hello, World!"
 *   POST /hello        the same (so /hello knows two methods)
 *   POST /echo         200 with the request body
 *   GET  /hdr          200 with the value of header X-Test and the query, "v|q"
 *   GET  /p/           prefix route: 200 with the path tail
 *   GET  /alloc/N      nea_alloc N bytes (huge N: OOM 500)
 *   GET  /sleep/MS     async: tracked timer, then 200 "slept"; registers a defer
 *                      that increments t_defers_run
 *   GET  /big          200 with t_big_len bytes of static body
 *   GET  /respond-then-oom  responds, then exhausts the arena (response stands)
 *   GET  /status/N     responds N with the body "body" (nea_respond)
 *   GET  /metrics      the server's Prometheus text (exempt), 507 when it does not
 *                      fit the arena
 */
#ifndef NEA_TEST_HANDLERS_H
#define NEA_TEST_HANDLERS_H

#include "nea.h"

extern unsigned t_defers_run;
extern size_t t_big_len;

/* GET /metrics's handler (data: the server), for tests that pick their
 * own routes. Any worker's thread may run it. */
void t_metrics(nea_req *req, void *d);
/* Registers the routes above on s (asserting each registration). */
void t_routes_add(nea_server *s);
/* Resets t_defers_run and makes the big body. */
void t_handlers_reset(void);

#endif
