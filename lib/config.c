/*
 * config.c - defaults, validation, and the memory plan.
 *
 * The plan is the single source of truth for the reservation's size and
 * layout; server.c carves the mapping exactly as computed here:
 *
 *   [ fixed: server struct | route table | arena descriptors ]  page-rounded
 *   [ connection slots: max_connections * conn_slot_size ]       page-rounded
 *   [ arena 0 | guard ][ arena 1 | guard ] ...                   arena_count * arena_stride
 *
 *   conn_slot_size = round64(sizeof(nea__conn)) + round64(read_buffer_size) + NEA__OBUF
 *   arena_stride   = round_page(arena_size) + (guard_pages ? page : 0)
 *
 * Validation refuses instead of clamping: every error names the field.
 */
#include "internal.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define KIB ((size_t)1024)
#define MIB (KIB * 1024)

void nea_config_init(nea_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->host = "127.0.0.1";
    cfg->port = 8080;
    cfg->backlog = 511;
    cfg->memory_limit = 64 * MIB;
    cfg->arena_size = 64 * KIB;
    cfg->arena_count = 0;
    cfg->max_connections = 1024;
    cfg->read_buffer_size = 8 * KIB;
    cfg->max_body_size = 1 * MIB;
    cfg->max_routes = 64;
    cfg->queue_length = 0;
    cfg->header_timeout_ms = 10000;
    cfg->body_timeout_ms = 10000;
    cfg->body_deadline_ms = 60000;
    cfg->keepalive_timeout_ms = 5000;
    cfg->write_timeout_ms = 10000;
    cfg->queue_timeout_ms = 100;
    cfg->drain_timeout_ms = 5000;
    cfg->retry_after_s = 1;
    cfg->prefault = 0;
    cfg->lock_memory = 0;
    cfg->guard_pages = 1;
    cfg->scrub = NEA_SCRUB_NONE;
}

static int refuse(int err, char *errbuf, size_t errlen, const char *fmt, ...) NEA_PRINTF(4, 5);

static int refuse(int err, char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (errbuf != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errbuf, errlen, fmt, ap);
        va_end(ap);
    }
    return err;
}

/* a*b+c with overflow detection. */
static bool mul_add(size_t a, size_t b, size_t c, size_t *out)
{
    size_t m;
    return !__builtin_mul_overflow(a, b, &m) && !__builtin_add_overflow(m, c, out);
}

static size_t fixed_bytes(const nea_config *cfg, unsigned arenas, size_t page)
{
    size_t n = NEA__ROUND_UP(sizeof(nea_server), 64) +
               NEA__ROUND_UP((size_t)cfg->max_routes * sizeof(nea__route), 64) +
               (size_t)arenas * sizeof(nea__arena);
    return NEA__ROUND_UP(n, page);
}

size_t nea__request_overhead(void)
{
    return NEA__ROUND_UP(sizeof(nea_req), NEA__ALIGN);
}

int nea_config_plan(const nea_config *cfg, nea_plan *plan, char *errbuf, size_t errlen)
{
    const int E = NEA_EINVAL_CONFIG;
    nea_plan p;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t min_arena, span;

    memset(&p, 0, sizeof(p));
    if (cfg->port < 0 || cfg->port > 65535) {
        return refuse(E, errbuf, errlen, "port %d is outside 0..65535", cfg->port);
    }
    if (cfg->host == NULL || strlen(cfg->host) >= sizeof(((nea_server *)0)->host)) {
        return refuse(E, errbuf, errlen, "host must be an IPv4 or IPv6 literal");
    }
    if (cfg->backlog <= 0) {
        return refuse(E, errbuf, errlen, "backlog must be > 0");
    }
    if (cfg->memory_limit == 0 || cfg->arena_size == 0 || cfg->max_connections == 0 ||
        cfg->max_routes == 0) {
        return refuse(E, errbuf, errlen,
                      "memory_limit, arena_size, max_connections and max_routes must be > 0");
    }
    if (cfg->read_buffer_size < 256 || cfg->read_buffer_size > (size_t)1 << 30) {
        return refuse(E, errbuf, errlen, "read_buffer_size %zu is outside 256 B..1 GiB",
                      cfg->read_buffer_size);
    }
    {
        const struct {
            const char *name;
            unsigned value;
        } timeouts[] = {
            {"header_timeout_ms", cfg->header_timeout_ms},
            {"body_timeout_ms", cfg->body_timeout_ms},
            {"body_deadline_ms", cfg->body_deadline_ms},
            {"keepalive_timeout_ms", cfg->keepalive_timeout_ms},
            {"write_timeout_ms", cfg->write_timeout_ms},
            {"drain_timeout_ms", cfg->drain_timeout_ms},
        };
        for (size_t i = 0; i < sizeof(timeouts) / sizeof(timeouts[0]); i++) {
            if (timeouts[i].value == 0) {
                return refuse(E, errbuf, errlen, "%s must be > 0", timeouts[i].name);
            }
        }
    }
    if (cfg->retry_after_s > 86400) {
        return refuse(E, errbuf, errlen, "retry_after_s %u is above 86400", cfg->retry_after_s);
    }
    if (cfg->scrub < NEA_SCRUB_NONE || cfg->scrub > NEA_SCRUB_POISON) {
        return refuse(E, errbuf, errlen, "scrub must be NEA_SCRUB_NONE, _ZERO or _POISON");
    }
    if (cfg->max_connections > (1u << 22) || cfg->max_routes > (1u << 16)) {
        return refuse(E, errbuf, errlen,
                      "max_connections (<= 4194304) or max_routes (<= 65536) too large");
    }
    /* A request needs its struct and a copy of the largest head it can
     * receive, plus room for the handler. */
    p.request_overhead = nea__request_overhead();
    min_arena = p.request_overhead + cfg->read_buffer_size + NEA__MIN_HANDLER_BYTES;
    if (cfg->arena_size < min_arena) {
        return refuse(NEA_EARENA_SMALL, errbuf, errlen,
                      "arena_size %zu is below %zu (request struct %zu + read_buffer_size %zu + "
                      "%zu for the handler)",
                      cfg->arena_size, min_arena, p.request_overhead, cfg->read_buffer_size,
                      NEA__MIN_HANDLER_BYTES);
    }
    if (cfg->arena_size > ((size_t)1 << 40)) {
        return refuse(NEA_EOVERFLOW, errbuf, errlen, "arena_size %zu is above 1 TiB",
                      cfg->arena_size);
    }

    p.page_size = page;
    p.arena_size = cfg->arena_size;
    span = NEA__ROUND_UP(cfg->arena_size, page);
    p.arena_stride = span + (cfg->guard_pages ? page : 0);
    p.conn_slot_size =
        NEA__ROUND_UP(sizeof(nea__conn), 64) + NEA__ROUND_UP(cfg->read_buffer_size, 64) + NEA__OBUF;
    if (!mul_add(cfg->max_connections, p.conn_slot_size, page - 1, &p.connections_bytes)) {
        return refuse(NEA_EOVERFLOW, errbuf, errlen, "max_connections * slot size overflows");
    }
    p.connections_bytes &= ~(page - 1);

    if (cfg->arena_count != 0) {
        p.arena_count = cfg->arena_count;
    } else {
        /* As many arenas as fit: each costs its stride plus its descriptor.
         * Start from the fixed part before page rounding (an upper bound on
         * the count), then step down to the exact maximum. */
        size_t base = NEA__ROUND_UP(sizeof(nea_server), 64) +
                      NEA__ROUND_UP((size_t)cfg->max_routes * sizeof(nea__route), 64) +
                      p.connections_bytes;
        size_t per = p.arena_stride + sizeof(nea__arena);
        size_t n = cfg->memory_limit > base ? (cfg->memory_limit - base) / per : 0;
        if (n > UINT32_MAX) {
            n = UINT32_MAX;
        }
        p.arena_count = (unsigned)n;
        /* Page-rounding the descriptor table may push one arena out. */
        while (p.arena_count > 0 && fixed_bytes(cfg, p.arena_count, page) + p.connections_bytes +
                                            (size_t)p.arena_count * p.arena_stride >
                                        cfg->memory_limit) {
            p.arena_count--;
        }
        if (p.arena_count == 0) {
            return refuse(NEA_EOVERLIMIT, errbuf, errlen,
                          "memory_limit %zu leaves no room for one arena (fixed %zu + "
                          "connections %zu + one arena %zu)",
                          cfg->memory_limit, fixed_bytes(cfg, 1, page), p.connections_bytes,
                          p.arena_stride);
        }
    }
    p.fixed_overhead = fixed_bytes(cfg, p.arena_count, page);
    if (!mul_add(p.arena_count, p.arena_stride, 0, &p.arenas_bytes) ||
        !mul_add(1, p.arenas_bytes, p.connections_bytes, &p.total) ||
        !mul_add(1, p.total, p.fixed_overhead, &p.total)) {
        return refuse(NEA_EOVERFLOW, errbuf, errlen, "arena_count * arena stride overflows");
    }
    if (p.total > cfg->memory_limit) {
        return refuse(NEA_EOVERLIMIT, errbuf, errlen,
                      "plan needs %zu bytes (fixed %zu + connections %u x %zu + arenas %u x %zu) "
                      "but memory_limit is %zu",
                      p.total, p.fixed_overhead, cfg->max_connections, p.conn_slot_size,
                      p.arena_count, p.arena_stride, cfg->memory_limit);
    }
    *plan = p;
    return 0;
}

void nea_plan_format(const nea_plan *p, char *buf, size_t len)
{
    snprintf(buf, len,
             "reserved=%zu (fixed %zu + connections %zu + arenas %u x %zu stride = %zu) "
             "arena_size=%zu",
             p->total, p->fixed_overhead, p->connections_bytes, p->arena_count, p->arena_stride,
             p->arenas_bytes, p->arena_size);
}
