/*
 * log.c - formatting log lines into a fixed buffer and handing them to the
 * host's sink (see log.h). The buffer is on the stack: logging works on the
 * out-of-memory path and from any thread.
 */
#include "log.h"

#include <stdio.h>

void nea__logv(const nea_config *cfg, int level, const char *fmt, va_list ap)
{
    char buf[512];
    vsnprintf(buf, sizeof(buf), fmt, ap);
    if (cfg->log != NULL) {
        cfg->log(cfg->log_data, level, buf);
    } else {
        fprintf(stderr, "libnea: %s\n", buf);
    }
}

void nea__log(const nea_config *cfg, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    nea__logv(cfg, level, fmt, ap);
    va_end(ap);
}

bool nea__log_limit_pass(nea__log_limit *l, uint64_t now_ms, uint64_t *suppressed)
{
    if (now_ms < l->next_ms) {
        l->suppressed++;
        return false;
    }
    *suppressed = l->suppressed;
    l->suppressed = 0;
    l->next_ms = now_ms + 1000;
    return true;
}
