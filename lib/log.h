/*
 * log.h - the one way libnea reports: the host's log sink from the config,
 * or stderr when there is none.
 */
#ifndef NEA_LOG_H
#define NEA_LOG_H

#include "nea.h"

#include <stdarg.h>

/* Formats into a fixed stack buffer (512 bytes, truncated beyond) and hands
 * it to cfg->log, or prints "libnea: <msg>" to stderr. Never allocates. */
void nea__logv(const nea_config *cfg, int level, const char *fmt, va_list ap) NEA_PRINTF(3, 0);
void nea__log(const nea_config *cfg, int level, const char *fmt, ...) NEA_PRINTF(3, 4);

#endif /* NEA_LOG_H */
