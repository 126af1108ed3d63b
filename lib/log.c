/*
 * log.c - formatting log lines into a fixed buffer and handing them to the
 * host's sink (see log.h). The buffer is on the stack: logging works on the
 * out-of-memory path and from any thread. Peer addresses are named here
 * too, for the lines that mention them.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

void nea__log(const nea_config *cfg, int level, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (cfg->log != NULL) {
        cfg->log(cfg->log_data, level, buf);
    } else {
        fprintf(stderr, "libnea: %s\n", buf);
    }
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

void nea__addr_name(const struct sockaddr *a, char *buf, size_t len)
{
    int rc = UV_EINVAL;
    if (a->sa_family == AF_INET) {
        rc = uv_ip4_name((const struct sockaddr_in *)a, buf, len);
    } else if (a->sa_family == AF_INET6) {
        rc = uv_ip6_name((const struct sockaddr_in6 *)a, buf, len);
    }
    if (rc != 0 && len > 1) {
        buf[0] = '-';
        buf[1] = '\0';
    }
}

void nea__addr_copy(struct sockaddr_storage *out, const struct sockaddr *a)
{
    memset(out, 0, sizeof(*out));
    if (a->sa_family == AF_INET) {
        memcpy(out, a, sizeof(struct sockaddr_in));
    } else if (a->sa_family == AF_INET6) {
        memcpy(out, a, sizeof(struct sockaddr_in6));
    } else {
        out->ss_family = AF_UNSPEC;
    }
}
