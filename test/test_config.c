/*
 * test_config.c - nea_config_init defaults, the memory plan's arithmetic,
 * every refusal of nea_config_plan (code and message), nea_server_new
 * refusing the same configs through its log, and the error-name tables.
 *
 * The plan is what an operator reads to "do the math" before deploying, so
 * each term is checked against the formula in nea.h rather than against
 * numbers copied from the implementation.
 */
#include "server.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define KIB ((size_t)1024)
#define MIB (KIB * 1024)

static size_t page_size(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

static size_t round_up(size_t x, size_t a)
{
    return (x + a - 1) / a * a;
}

/* A config small enough that plans are quick to reason about. */
static void small_config(nea_config *cfg)
{
    nea_config_init(cfg);
    cfg->memory_limit = 8 * MIB;
    cfg->arena_size = 32 * KIB;
    cfg->arena_count = 8;
    cfg->max_connections = 16;
    cfg->read_buffer_size = 4 * KIB;
}

/* Asserts the identities nea.h documents for every plan. */
static void check_plan_identities(const nea_config *cfg, const nea_plan *p)
{
    size_t page = page_size();

    assert_int_equal(p->page_size, page);
    assert_int_equal(p->arena_size, cfg->arena_size);
    assert_int_equal(p->total, p->fixed_overhead + p->connections_bytes + p->arenas_bytes);
    assert_int_equal(p->arenas_bytes, (size_t)p->arena_count * p->arena_stride);
    assert_int_equal(p->arena_stride,
                     round_up(cfg->arena_size, page) + (cfg->guard_pages ? page : 0));
    assert_int_equal(p->fixed_overhead % page, 0);
    /* Connection slots: page-rounded, at least one slot struct + read buffer each, and
     * less than one page of rounding on top of the product. */
    assert_int_equal(p->connections_bytes % page, 0);
    assert_true(p->conn_slot_size >= cfg->read_buffer_size + sizeof(nea__conn));
    assert_true(p->connections_bytes >= p->conn_slot_size * cfg->max_connections);
    assert_true(p->connections_bytes < p->conn_slot_size * cfg->max_connections + page);
    /* The descriptor table for every arena is inside the fixed part. */
    assert_true(p->fixed_overhead >=
                sizeof(nea_server) + (size_t)p->arena_count * sizeof(nea__arena));
    assert_true(p->request_overhead >= sizeof(nea_req));
    assert_int_equal(p->request_overhead % alignof(max_align_t), 0);
    assert_true(p->arena_count > 0);
    assert_true(p->total <= cfg->memory_limit);
}

/* --- defaults ------------------------------------------------------------- */

static void test_defaults(void **state)
{
    nea_config cfg;
    (void)state;

    memset(&cfg, 0x5a, sizeof(cfg)); /* init must set every field, not rely on zeroes */
    nea_config_init(&cfg);
    assert_string_equal(cfg.host, "127.0.0.1");
    assert_int_equal(cfg.port, 8080);
    assert_int_equal(cfg.backlog, 511);
    assert_int_equal(cfg.memory_limit, 64 * MIB);
    assert_int_equal(cfg.arena_size, 64 * KIB);
    assert_int_equal(cfg.arena_count, 0);
    assert_int_equal(cfg.max_connections, 1024);
    assert_int_equal(cfg.read_buffer_size, 8 * KIB);
    assert_int_equal(cfg.max_body_size, 0); /* as large as the arena allows */
    assert_int_equal(cfg.max_routes, 64);
    assert_int_equal(cfg.queue_length, 0);
    assert_int_equal(cfg.header_timeout_ms, 10000);
    assert_int_equal(cfg.body_timeout_ms, 10000);
    assert_int_equal(cfg.keepalive_timeout_ms, 5000);
    assert_int_equal(cfg.write_timeout_ms, 10000);
    assert_int_equal(cfg.queue_timeout_ms, 100);
    assert_int_equal(cfg.drain_timeout_ms, 5000);
    assert_int_equal(cfg.retry_after_s, 1);
    assert_int_equal(cfg.prefault, 0);
    assert_int_equal(cfg.lock_memory, 0);
    assert_int_equal(cfg.guard_pages, 1);
    assert_int_equal(cfg.scrub, NEA_SCRUB_NONE);
    assert_null(cfg.log);
    assert_null(cfg.log_data);
}

static void test_defaults_plan(void **state)
{
    nea_config cfg;
    nea_plan p;
    char err[256] = "";
    (void)state;

    nea_config_init(&cfg);
    assert_int_equal(nea_config_plan(&cfg, &p, err, sizeof(err)), 0);
    check_plan_identities(&cfg, &p);
    /* 1024 slots of at least 8 KiB each, and the rest is arenas. */
    assert_true(p.connections_bytes >= 1024 * 8 * KIB);
    assert_true(p.arena_count > 100);
}

/* --- plan arithmetic ------------------------------------------------------ */

static void test_plan_terms_guard(void **state)
{
    nea_config cfg;
    nea_plan p;
    size_t page = page_size();
    (void)state;

    small_config(&cfg);
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
    check_plan_identities(&cfg, &p);
    assert_int_equal(p.arena_count, 8);
    assert_int_equal(p.arena_stride, 32 * KIB + page);
    assert_int_equal(p.arenas_bytes, 8 * (32 * KIB + page));
}

static void test_plan_terms_no_guard(void **state)
{
    nea_config cfg;
    nea_plan with, without;
    (void)state;

    small_config(&cfg);
    assert_int_equal(nea_config_plan(&cfg, &with, NULL, 0), 0);
    cfg.guard_pages = 0;
    assert_int_equal(nea_config_plan(&cfg, &without, NULL, 0), 0);
    check_plan_identities(&cfg, &without);
    assert_int_equal(without.arena_stride, 32 * KIB);
    /* Guard pages cost exactly one page per arena, nothing else. */
    assert_int_equal(with.total - without.total, 8 * page_size());
    assert_int_equal(with.fixed_overhead, without.fixed_overhead);
    assert_int_equal(with.connections_bytes, without.connections_bytes);
}

static void test_plan_unaligned_sizes(void **state)
{
    nea_config cfg;
    nea_plan p;
    size_t page = page_size();
    (void)state;

    /* Neither the arena nor the read buffer is a page multiple. */
    small_config(&cfg);
    cfg.arena_size = 20000;
    cfg.read_buffer_size = 3000;
    cfg.max_connections = 7;
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
    check_plan_identities(&cfg, &p);
    assert_int_equal(p.arena_stride, round_up(20000, page) + page);
    assert_int_equal(p.arena_size, 20000);
    assert_int_equal(p.connections_bytes, round_up(7 * p.conn_slot_size, page));
}

static void test_plan_scales_with_connections(void **state)
{
    nea_config cfg;
    nea_plan a, b;
    (void)state;

    small_config(&cfg);
    cfg.max_connections = 100;
    assert_int_equal(nea_config_plan(&cfg, &a, NULL, 0), 0);
    cfg.max_connections = 200;
    assert_int_equal(nea_config_plan(&cfg, &b, NULL, 0), 0);
    assert_int_equal(a.conn_slot_size, b.conn_slot_size);
    assert_int_equal(a.connections_bytes, round_up(100 * a.conn_slot_size, page_size()));
    assert_int_equal(b.connections_bytes, round_up(200 * b.conn_slot_size, page_size()));
    /* A bigger read buffer makes every slot bigger by the same amount. */
    cfg.read_buffer_size += 1024;
    cfg.arena_size += 1024;
    assert_int_equal(nea_config_plan(&cfg, &b, NULL, 0), 0);
    assert_int_equal(b.conn_slot_size, a.conn_slot_size + 1024);
}

/* arena_count = 0 resolves to the largest count that fits: the resolved count plans
 * to the same reservation when asked for explicitly, and one more arena is over. */
static void check_resolves_to_max(nea_config *cfg)
{
    nea_plan p, q;
    char err[256] = "";
    unsigned resolved;
    int rc;

    cfg->arena_count = 0;
    rc = nea_config_plan(cfg, &p, err, sizeof(err));
    if (rc != 0) {
        print_error("memory_limit %zu: %s\n", cfg->memory_limit, err);
    }
    assert_int_equal(rc, 0);
    check_plan_identities(cfg, &p);
    resolved = p.arena_count;

    cfg->arena_count = resolved;
    assert_int_equal(nea_config_plan(cfg, &q, NULL, 0), 0);
    assert_int_equal(q.total, p.total);
    assert_int_equal(q.arena_count, resolved);

    cfg->arena_count = resolved + 1;
    err[0] = '\0';
    rc = nea_config_plan(cfg, &q, err, sizeof(err));
    if (rc != NEA_EOVERLIMIT) {
        print_error("memory_limit %zu resolved %u arenas but %u also fit (total %zu)\n",
                    cfg->memory_limit, resolved, resolved + 1, q.total);
    }
    assert_int_equal(rc, NEA_EOVERLIMIT);
    assert_non_null(strstr(err, "memory_limit"));
    cfg->arena_count = 0;
}

static void test_arena_count_auto_is_max(void **state)
{
    nea_config cfg;
    (void)state;

    nea_config_init(&cfg);
    check_resolves_to_max(&cfg);
    cfg.guard_pages = 0;
    check_resolves_to_max(&cfg);

    small_config(&cfg);
    cfg.memory_limit = 3 * MIB + 12345;
    check_resolves_to_max(&cfg);
}

/* The resolution has to get the page-rounding of the descriptor table right at
 * every memory_limit, not only at round ones: sweep limits across several arena
 * strides in sub-descriptor steps. */
static void test_arena_count_auto_sweep(void **state)
{
    nea_config cfg;
    nea_plan p;
    size_t base_limit;
    (void)state;

    small_config(&cfg);
    cfg.arena_size = 8 * KIB;
    cfg.read_buffer_size = 1 * KIB;
    cfg.max_connections = 1;
    cfg.arena_count = 0;
    cfg.memory_limit = 64 * MIB;
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
    base_limit = p.fixed_overhead + p.connections_bytes + 2 * p.arena_stride;
    for (size_t limit = base_limit; limit < base_limit + 3 * p.arena_stride; limit += 40) {
        cfg.memory_limit = limit;
        check_resolves_to_max(&cfg);
    }
}

/* --- refusals ------------------------------------------------------------- */

typedef struct refusal {
    const char *what;
    void (*mutate)(nea_config *cfg);
    int code;
    const char *needle; /* the message must name this */
} refusal;

static void m_memory_limit_zero(nea_config *c)
{
    c->memory_limit = 0;
}

static void m_arena_size_zero(nea_config *c)
{
    c->arena_size = 0;
}

static void m_max_connections_zero(nea_config *c)
{
    c->max_connections = 0;
}

static void m_max_routes_zero(nea_config *c)
{
    c->max_routes = 0;
}

static void m_read_buffer_255(nea_config *c)
{
    c->read_buffer_size = 255;
}

static void m_read_buffer_zero(nea_config *c)
{
    c->read_buffer_size = 0;
}

static void m_read_buffer_huge(nea_config *c)
{
    c->read_buffer_size = ((size_t)1 << 30) + 1;
}

static void m_header_timeout(nea_config *c)
{
    c->header_timeout_ms = 0;
}

static void m_body_timeout(nea_config *c)
{
    c->body_timeout_ms = 0;
}

static void m_keepalive_timeout(nea_config *c)
{
    c->keepalive_timeout_ms = 0;
}

static void m_write_timeout(nea_config *c)
{
    c->write_timeout_ms = 0;
}

static void m_drain_timeout(nea_config *c)
{
    c->drain_timeout_ms = 0;
}

static void m_scrub_3(nea_config *c)
{
    c->scrub = 3;
}

static void m_scrub_neg(nea_config *c)
{
    c->scrub = -1;
}

static void m_port_neg(nea_config *c)
{
    c->port = -1;
}

static void m_port_big(nea_config *c)
{
    c->port = 65536;
}

static void m_backlog_zero(nea_config *c)
{
    c->backlog = 0;
}

static void m_host_null(nea_config *c)
{
    c->host = NULL;
}

static void m_host_long(nea_config *c)
{
    c->host = "0000:0000:0000:0000:0000:0000:0000:0001%an-interface-name-that-is-too-long";
}

static void m_retry_after(nea_config *c)
{
    c->retry_after_s = 86401;
}

static void m_conns_too_many(nea_config *c)
{
    c->max_connections = (1u << 22) + 1;
}

static void m_routes_too_many(nea_config *c)
{
    c->max_routes = (1u << 16) + 1;
}

static void m_arena_huge(nea_config *c)
{
    c->arena_size = ((size_t)1 << 40) + 1;
}

static void m_count_times_stride(nea_config *c)
{
    c->memory_limit = SIZE_MAX;
    c->arena_size = (size_t)1 << 40;
    c->arena_count = UINT_MAX;
}

static void m_over_limit_count(nea_config *c)
{
    c->memory_limit = 1 * MIB;
    c->arena_count = 64; /* 64 x 32 KiB + guards > 1 MiB */
}

static void m_over_limit_auto(nea_config *c)
{
    c->arena_count = 0;
    c->memory_limit = 64 * KIB; /* connections alone need more */
}

static void m_conns_times_buffer(nea_config *c)
{
    /* The largest product the caps allow (2^22 slots x 1 GiB): 4 PiB, refused
     * rather than wrapped. On 64-bit it does not overflow size_t (the caps keep it
     * below 2^53), so the refusal is the limit check. */
    c->max_connections = 1u << 22;
    c->read_buffer_size = (size_t)1 << 30;
    c->arena_size = ((size_t)1 << 30) + 64 * KIB;
    c->memory_limit = (size_t)64 << 30;
}

static const refusal refusals[] = {
    {"memory_limit 0", m_memory_limit_zero, NEA_EINVAL_CONFIG, "memory_limit"},
    {"arena_size 0", m_arena_size_zero, NEA_EINVAL_CONFIG, "arena_size"},
    {"max_connections 0", m_max_connections_zero, NEA_EINVAL_CONFIG, "max_connections"},
    {"max_routes 0", m_max_routes_zero, NEA_EINVAL_CONFIG, "max_routes"},
    {"read_buffer_size 255", m_read_buffer_255, NEA_EINVAL_CONFIG, "read_buffer_size"},
    {"read_buffer_size 0", m_read_buffer_zero, NEA_EINVAL_CONFIG, "read_buffer_size"},
    {"read_buffer_size 1 GiB + 1", m_read_buffer_huge, NEA_EINVAL_CONFIG, "read_buffer_size"},
    /* One message covers the six timeouts; it names them by their common suffix. */
    {"header_timeout_ms 0", m_header_timeout, NEA_EINVAL_CONFIG, "_timeout_ms"},
    {"body_timeout_ms 0", m_body_timeout, NEA_EINVAL_CONFIG, "_timeout_ms"},
    {"keepalive_timeout_ms 0", m_keepalive_timeout, NEA_EINVAL_CONFIG, "_timeout_ms"},
    {"write_timeout_ms 0", m_write_timeout, NEA_EINVAL_CONFIG, "_timeout_ms"},
    {"drain_timeout_ms 0", m_drain_timeout, NEA_EINVAL_CONFIG, "_timeout_ms"},
    {"scrub 3", m_scrub_3, NEA_EINVAL_CONFIG, "scrub"},
    {"scrub -1", m_scrub_neg, NEA_EINVAL_CONFIG, "scrub"},
    {"port -1", m_port_neg, NEA_EINVAL_CONFIG, "port"},
    {"port 65536", m_port_big, NEA_EINVAL_CONFIG, "port"},
    {"backlog 0", m_backlog_zero, NEA_EINVAL_CONFIG, "backlog"},
    {"host NULL", m_host_null, NEA_EINVAL_CONFIG, "host"},
    {"host too long", m_host_long, NEA_EINVAL_CONFIG, "host"},
    {"retry_after_s 86401", m_retry_after, NEA_EINVAL_CONFIG, "retry_after_s"},
    {"max_connections 2^22+1", m_conns_too_many, NEA_EINVAL_CONFIG, "max_connections"},
    {"max_routes 2^16+1", m_routes_too_many, NEA_EINVAL_CONFIG, "max_routes"},
    {"arena_size > 1 TiB", m_arena_huge, NEA_EOVERFLOW, "arena_size"},
    {"arena_count x stride", m_count_times_stride, NEA_EOVERFLOW, "arena_count"},
    {"explicit count over limit", m_over_limit_count, NEA_EOVERLIMIT, "memory_limit"},
    {"no room for one arena", m_over_limit_auto, NEA_EOVERLIMIT, "memory_limit"},
    {"2^22 slots x 1 GiB", m_conns_times_buffer, NEA_EOVERLIMIT, "memory_limit"},
};

static void test_refusals(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
        const refusal *r = &refusals[i];
        nea_config cfg;
        nea_plan p, before;
        char err[512];
        int rc;

        small_config(&cfg);
        r->mutate(&cfg);
        memset(err, 0, sizeof(err));
        memset(&p, 0xa5, sizeof(p));
        before = p;
        rc = nea_config_plan(&cfg, &p, err, sizeof(err));
        if (rc != r->code || strstr(err, r->needle) == NULL) {
            print_error("%s: got %d (%s) \"%s\", want %d naming \"%s\"\n", r->what, rc,
                        nea_err_name(rc), err, r->code, r->needle);
        }
        assert_int_equal(rc, r->code);
        assert_true(strlen(err) > 0);
        assert_non_null(strstr(err, r->needle));
        /* A refused plan is not written. */
        assert_memory_equal(&p, &before, sizeof(p));
        /* NULL errbuf is allowed and gives the same answer. */
        assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), r->code);
    }
}

static void test_boundaries_accepted(void **state)
{
    nea_config cfg;
    nea_plan p;
    (void)state;

    small_config(&cfg);
    cfg.port = 0;
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
    cfg.port = 65535;
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
    small_config(&cfg);
    cfg.read_buffer_size = 256;
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
    small_config(&cfg);
    cfg.scrub = NEA_SCRUB_POISON;
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
    cfg.scrub = NEA_SCRUB_ZERO;
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
    small_config(&cfg);
    cfg.retry_after_s = 0;
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
}

static void test_arena_small_boundary(void **state)
{
    nea_config cfg;
    nea_plan p;
    char err[512] = "";
    size_t min;
    (void)state;

    small_config(&cfg);
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
    min = p.request_overhead + cfg.read_buffer_size + 1024;

    cfg.arena_size = min;
    assert_int_equal(nea_config_plan(&cfg, &p, err, sizeof(err)), 0);
    assert_int_equal(p.arena_size, min);

    cfg.arena_size = min - 1;
    assert_int_equal(nea_config_plan(&cfg, &p, err, sizeof(err)), NEA_EARENA_SMALL);
    assert_non_null(strstr(err, "arena_size"));
    /* The message states the minimum so the operator knows what to set. */
    {
        char num[32];
        snprintf(num, sizeof(num), "%zu", min);
        assert_non_null(strstr(err, num));
    }

    /* The minimum follows the read buffer. */
    cfg.read_buffer_size = 16 * KIB;
    cfg.arena_size = min;
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), NEA_EARENA_SMALL);
    cfg.arena_size = min + 12 * KIB;
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
}

static void test_errbuf_truncated(void **state)
{
    nea_config cfg;
    nea_plan p;
    char err[8];
    (void)state;

    small_config(&cfg);
    cfg.memory_limit = 0;
    memset(err, 'x', sizeof(err));
    assert_int_equal(nea_config_plan(&cfg, &p, err, sizeof(err)), NEA_EINVAL_CONFIG);
    assert_int_equal(strlen(err), sizeof(err) - 1); /* NUL-terminated inside the buffer */
    /* errlen 0: the buffer is not touched. */
    memset(err, 'x', sizeof(err));
    assert_int_equal(nea_config_plan(&cfg, &p, err, 0), NEA_EINVAL_CONFIG);
    assert_int_equal(err[0], 'x');
}

static void test_plan_format(void **state)
{
    nea_config cfg;
    nea_plan p;
    char buf[512], num[32];
    (void)state;

    small_config(&cfg);
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
    nea_plan_format(&p, buf, sizeof(buf));
    snprintf(num, sizeof(num), "%zu", p.total);
    assert_non_null(strstr(buf, num));
    snprintf(num, sizeof(num), "%zu", p.arena_stride);
    assert_non_null(strstr(buf, num));
}

/* --- nea_server_new refuses the same configs ------------------------------- */

typedef struct log_capture {
    int count;
    int level;
    char last[512];
} log_capture;

static void capture_log(void *data, int level, const char *msg)
{
    log_capture *lc = data;
    lc->count++;
    lc->level = level;
    snprintf(lc->last, sizeof(lc->last), "%s", msg);
}

static void on_closed(nea_server *s, void *data)
{
    (void)s;
    *(int *)data += 1;
}

static void test_server_new_refuses(void **state)
{
    uv_loop_t loop;
    (void)state;

    assert_int_equal(uv_loop_init(&loop), 0);
    for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
        const refusal *r = &refusals[i];
        nea_config cfg;
        log_capture lc;
        nea_server *srv = (nea_server *)&lc; /* sentinel: must not be overwritten */

        memset(&lc, 0, sizeof(lc));
        small_config(&cfg);
        r->mutate(&cfg);
        cfg.log = capture_log;
        cfg.log_data = &lc;
        assert_int_equal(nea_server_new(&loop, &cfg, &srv), r->code);
        assert_ptr_equal(srv, (nea_server *)&lc);
        assert_int_equal(lc.count, 1);
        assert_int_equal(lc.level, NEA_LOG_ERROR);
        assert_non_null(strstr(lc.last, r->needle));
    }
    /* Nothing was left on the loop. */
    assert_int_equal(uv_run(&loop, UV_RUN_NOWAIT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_server_new_uses_plan(void **state)
{
    uv_loop_t loop;
    nea_config cfg;
    nea_plan p;
    nea_server *srv = NULL;
    nea_stats st;
    log_capture lc;
    char num[32];
    int closed = 0;
    (void)state;

    memset(&lc, 0, sizeof(lc));
    small_config(&cfg);
    cfg.log = capture_log;
    cfg.log_data = &lc;
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(nea_server_new(&loop, &cfg, &srv), 0);
    assert_non_null(srv);
    assert_memory_equal(nea_server_plan(srv), &p, sizeof(p));
    /* The startup line is the plan, through the log callback. */
    assert_int_equal(lc.level, NEA_LOG_INFO);
    snprintf(num, sizeof(num), "%zu", p.total);
    assert_non_null(strstr(lc.last, num));
    nea_server_stats(srv, &st);
    assert_int_equal(st.arena_count, p.arena_count);
    assert_int_equal(srv->pool.count, p.arena_count);
    assert_int_equal(srv->region.size, p.total);
    assert_int_equal(nea_server_port(srv), -1);

    nea_server_close(srv, on_closed, &closed);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(closed, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* --- error names ---------------------------------------------------------- */

static void test_error_names(void **state)
{
    static const struct {
        int code;
        const char *name;
    } codes[] = {
        {NEA_EINVAL_CONFIG, "NEA_EINVAL_CONFIG"},
        {NEA_EOVERFLOW, "NEA_EOVERFLOW"},
        {NEA_EOVERLIMIT, "NEA_EOVERLIMIT"},
        {NEA_EARENA_SMALL, "NEA_EARENA_SMALL"},
        {NEA_ENOMEM, "NEA_ENOMEM"},
        {NEA_EMLOCK, "NEA_EMLOCK"},
        {NEA_EROUTES, "NEA_EROUTES"},
        {NEA_ESTATE, "NEA_ESTATE"},
        {NEA_ERESPONDED, "NEA_ERESPONDED"},
    };
    const size_t n = sizeof(codes) / sizeof(codes[0]);
    (void)state;

    for (size_t i = 0; i < n; i++) {
        const char *msg = nea_strerror(codes[i].code);
        assert_string_equal(nea_err_name(codes[i].code), codes[i].name);
        assert_non_null(msg);
        assert_true(strlen(msg) > 0);
        /* Not libuv's fallback ("Unknown system error -30001", which libuv
         * allocates): libnea's codes are outside libuv's range and named here. */
        assert_true(codes[i].code <= -30000);
        assert_null(strstr(msg, "nknown"));
        /* Descriptions are distinct. */
        for (size_t j = 0; j < i; j++) {
            assert_string_not_equal(msg, nea_strerror(codes[j].code));
        }
        /* Static strings: the same pointer every time. */
        assert_ptr_equal(msg, nea_strerror(codes[i].code));
    }
    assert_string_equal(nea_strerror(NEA_EMLOCK),
                        "cannot lock the reservation in memory (RLIMIT_MEMLOCK too low?)");
    /* libuv codes pass through unchanged. */
    assert_string_equal(nea_strerror(UV_EINVAL), uv_strerror(UV_EINVAL));
    assert_string_equal(nea_err_name(UV_EINVAL), "EINVAL");
    assert_string_equal(nea_err_name(UV_ENOMEM), "ENOMEM");
    assert_string_equal(nea_strerror(UV_EADDRINUSE), uv_strerror(UV_EADDRINUSE));
    assert_string_equal(nea_err_name(0), "OK");
    assert_true(strlen(nea_strerror(0)) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_defaults_plan),
        cmocka_unit_test(test_plan_terms_guard),
        cmocka_unit_test(test_plan_terms_no_guard),
        cmocka_unit_test(test_plan_unaligned_sizes),
        cmocka_unit_test(test_plan_scales_with_connections),
        cmocka_unit_test(test_arena_count_auto_is_max),
        cmocka_unit_test(test_arena_count_auto_sweep),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_boundaries_accepted),
        cmocka_unit_test(test_arena_small_boundary),
        cmocka_unit_test(test_errbuf_truncated),
        cmocka_unit_test(test_plan_format),
        cmocka_unit_test(test_server_new_refuses),
        cmocka_unit_test(test_server_new_uses_plan),
        cmocka_unit_test(test_error_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
