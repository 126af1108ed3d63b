/*
 * log.h - the one way libnea reports: the host's log sink from the config,
 * or stderr when there is none.
 */
#ifndef NEA_LOG_H
#define NEA_LOG_H

#include "nea.h"

#include <stdbool.h>
#include <stdint.h>

/* Formats into a fixed stack buffer (512 bytes, truncated beyond) and hands
 * it to cfg->log, or prints "libnea: <msg>" to stderr. Never allocates. */
void nea__log(const nea_config *cfg, int level, const char *fmt, ...) NEA_PRINTF(3, 4);

/* At most one line a second for a kind of event; the rest are counted. */
typedef struct nea__log_limit {
    uint64_t next_ms;    /* loop time from which the next line may go out */
    uint64_t suppressed; /* events not logged since the last line */
} nea__log_limit;

/* True when a line may go out at now_ms; *suppressed is then set to the
 * events skipped before it. Otherwise counts this event as skipped. */
bool nea__log_limit_pass(nea__log_limit *l, uint64_t now_ms, uint64_t *suppressed);

/* An address (no port) as text into buf, or "-" when it is not an IPv4 or
 * IPv6 address. */
struct sockaddr;
void nea__addr_name(const struct sockaddr *a, char *buf, size_t len);
/* Copies an IPv4 or IPv6 address (family AF_UNSPEC otherwise) into out. */
struct sockaddr_storage;
void nea__addr_copy(struct sockaddr_storage *out, const struct sockaddr *a);

#endif /* NEA_LOG_H */
