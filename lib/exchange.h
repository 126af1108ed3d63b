/*
 * exchange.h - the HTTP/1.1 exchange on a connection slot: head, routing,
 * the arena, the body, the handler's turn and the response (see
 * exchange.c). Admission answers a routed head through these calls.
 */
#ifndef NEA_EXCHANGE_H
#define NEA_EXCHANGE_H

#include "conn.h"

/* Fills env: the slots report to the exchange, the requests to their
 * slots. */
void nea__conn_env_init(nea__conn_env *env, uv_loop_t *loop, const nea_config *cfg,
                        nea_stats *stats, const nea__router *router, const nea__statics *statics,
                        nea__pool *pools, const nea_plan *plan);

/* Answers the current request with a pre-built response. */
void nea__conn_respond_error(nea__conn *c, nea__prebuilt e);
/* Answers 503 (counted by the caller's cause); closes after it unless keep,
 * and then still when an unread body follows. keep is for CPU refusals,
 * where a reconnect would cost the server more than the refusal saved. */
void nea__conn_shed(nea__conn *c, bool keep);

#endif /* NEA_EXCHANGE_H */
