/*
 * log.c - see log.h.
 */
#include "log.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

void t_log_sink(void *data, int level, const char *msg)
{
    t_log *l = data;
    size_t n = strlen(msg);
    l->count++;
    l->level = level;
    snprintf(l->last, sizeof(l->last), "%s", msg);
    if (l->len + n + 2 < sizeof(l->all)) {
        memcpy(l->all + l->len, msg, n);
        l->len += n;
        l->all[l->len++] = '\n';
        l->all[l->len] = '\0';
    }
}

void t_log_clear(t_log *l)
{
    memset(l, 0, sizeof(*l));
}

void t_log_attach(t_log *l, nea_config *cfg)
{
    t_log_clear(l);
    cfg->log = t_log_sink;
    cfg->log_data = l;
}

bool t_log_has(const t_log *l, const char *needle)
{
    if (strstr(l->all, needle) == NULL) {
        print_error("log does not contain \"%s\":\n%s\n", needle, l->all);
        return false;
    }
    return true;
}
