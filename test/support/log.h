/*
 * log.h - the one log capture every test uses: a nea_config log sink that
 * keeps the count, the last level and message, and everything logged
 * (newline-separated, truncated at the buffer's end).
 */
#ifndef NEA_TEST_LOG_H
#define NEA_TEST_LOG_H

#include "nea.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct t_log {
    int count;
    int level; /* of the last message */
    char last[512];
    char all[8192];
    size_t len; /* bytes in all */
} t_log;

/* The sink: data is a t_log. */
void t_log_sink(void *data, int level, const char *msg);
/* Clears l and points cfg's log at it. */
void t_log_attach(t_log *l, nea_config *cfg);
void t_log_clear(t_log *l);
/* True when some logged message contains needle (printed when not). */
bool t_log_has(const t_log *l, const char *needle);

#endif
