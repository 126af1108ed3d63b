/*
 * test_plan.c - nea_config_init defaults, the memory plan's arithmetic,
 * where the layout puts every part of a slab, every refusal of
 * nea_config_plan (code, and a message naming the field), and
 * nea_server_new refusing the same configs through its log.
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

#include "log.h"
#include "tls.h"

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
    assert_int_equal(p->classes[0].size, cfg->arena_size);
    assert_int_equal(p->worker_bytes, p->fixed_overhead + p->connections_bytes +
                                          p->buffers_bytes + p->arenas_bytes);
    assert_true(p->workers >= 1);
    assert_int_equal(p->total, (size_t)p->workers * p->worker_bytes + p->tls_cache_bytes);
    assert_int_equal(p->class_count, 1 + cfg->arena_class_count);
    {
        size_t sum = 0;
        unsigned arenas = 0;
        for (unsigned k = 0; k < p->class_count; k++) {
            assert_int_equal(p->classes[k].bytes,
                             (size_t)p->classes[k].count * p->classes[k].stride);
            sum += p->classes[k].bytes;
            arenas += p->classes[k].count;
        }
        assert_int_equal(p->arenas_bytes, sum);
        assert_int_equal(p->arena_total, arenas);
    }
    assert_int_equal(p->classes[0].stride,
                     round_up(cfg->arena_size, page) + (cfg->guard_pages ? page : 0));
    assert_int_equal(p->fixed_overhead % page, 0);
    /* Connection slots: what an idle connection costs, at most 512 bytes, the
     * slot struct rounded to 64; page-rounded in all. */
    assert_int_equal(p->connections_bytes % page, 0);
    assert_int_equal(p->conn_slot_size, round_up(sizeof(nea__conn), 64) + p->tls_conn_size);
    assert_true(p->conn_slot_size - p->tls_conn_size <= 512);
    assert_int_equal(p->connections_bytes, round_up(p->conn_slot_size * cfg->max_connections, page));
    /* Connection buffers: the working state, the read buffer and the output
     * buffer, each rounded to 64; page-rounded in all. */
    assert_int_equal(p->conn_buffers, cfg->conn_buffers != 0 ? cfg->conn_buffers
                                      : cfg->max_connections < 1024 ? cfg->max_connections
                                                                    : 1024);
    assert_int_equal(p->conn_buffer_size, round_up(sizeof(nea__work), 64) +
                                              round_up(cfg->read_buffer_size, 64) + NEA__OBUF +
                                              p->tls_records_size);
    assert_int_equal(p->buffers_bytes % page, 0);
    assert_int_equal(p->buffers_bytes, round_up(p->conn_buffer_size * p->conn_buffers, page));
    /* The descriptor table for every arena is inside the fixed part. */
    assert_true(p->fixed_overhead >=
                sizeof(nea_server) + (size_t)p->arena_total * sizeof(nea__arena));
    assert_true(p->request_overhead >= sizeof(nea_req));
    assert_int_equal(p->request_overhead % alignof(max_align_t), 0);
    assert_true(p->classes[0].count > 0);
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
    assert_int_equal(cfg.max_connections, 16384);
    assert_int_equal(cfg.conn_buffers, 0); /* max_connections, at most 1024 */
    assert_int_equal(cfg.read_buffer_size, 8 * KIB);
    assert_int_equal(cfg.max_body_size, 0); /* as large as the arena allows */
    assert_int_equal(cfg.max_routes, 64);
    assert_int_equal(cfg.queue_length, 0);
    assert_int_equal(cfg.header_timeout_ms, 10000);
    assert_int_equal(cfg.body_timeout_ms, 10000);
    assert_int_equal(cfg.body_deadline_ms, 60000);
    assert_int_equal(cfg.keepalive_timeout_ms, 5000);
    assert_int_equal(cfg.write_timeout_ms, 10000);
    assert_int_equal(cfg.queue_timeout_ms, 100);
    assert_int_equal(cfg.drain_timeout_ms, 5000);
    assert_int_equal(cfg.drain_delay_ms, 0);
    assert_int_equal(cfg.agent_port, -1); /* no agent unless asked for */
    assert_null(cfg.agent_host);
    assert_null(cfg.error_bodies); /* libnea's own text for every error */
    assert_int_equal(cfg.error_body_count, 0);
    assert_int_equal(cfg.retry_after_s, 1);
    assert_int_equal(cfg.prefault, 0);
    assert_int_equal(cfg.workers, 1);
    assert_int_equal(cfg.reuse_port, 0);
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
    /* 16384 slots of at most 512 bytes (8 MiB at most), 1024 buffers of at
     * least 8 KiB each, and the rest is arenas. */
    assert_int_equal(p.conn_buffers, 1024);
    assert_true(p.connections_bytes <= 16384 * 512);
    assert_true(p.buffers_bytes >= 1024 * 8 * KIB);
    assert_true(p.classes[0].count > 100);
}

/* The defaults stay valid whatever the arena size, and max_body_size 0
 * resolves to everything an arena holds after the request struct, the
 * shortest head (18 bytes) and the body's NUL. */
static void test_defaults_any_arena_size(void **state)
{
    static const size_t sizes[] = {64 * KIB, 16 * KIB, 1 * MIB};
    (void)state;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        nea_config cfg;
        nea_plan p;
        char err[256] = "";
        int rc;

        nea_config_init(&cfg);
        cfg.arena_size = sizes[i];
        rc = nea_config_plan(&cfg, &p, err, sizeof(err));
        if (rc != 0) {
            print_error("arena_size %zu: %s\n", sizes[i], err);
        }
        assert_int_equal(rc, 0);
        check_plan_identities(&cfg, &p);
        assert_int_equal(p.classes[0].max_body_size, sizes[i] - p.request_overhead - 18 - 1);

        /* That largest body is accepted when asked for explicitly; one more
         * byte is not. */
        cfg.max_body_size = p.classes[0].max_body_size;
        assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
        assert_int_equal(p.classes[0].max_body_size, cfg.max_body_size);
        cfg.max_body_size++;
        err[0] = '\0';
        assert_int_equal(nea_config_plan(&cfg, &p, err, sizeof(err)), NEA_EINVAL_CONFIG);
        assert_non_null(strstr(err, "max_body_size"));
    }
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
    assert_int_equal(p.classes[0].count, 8);
    assert_int_equal(p.classes[0].stride, 32 * KIB + page);
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
    assert_int_equal(without.classes[0].stride, 32 * KIB);
    /* Guard pages cost exactly one page per arena, nothing else. */
    assert_int_equal(with.total - without.total, 8 * page_size());
    assert_int_equal(with.fixed_overhead, without.fixed_overhead);
    assert_int_equal(with.connections_bytes, without.connections_bytes);
    assert_int_equal(with.buffers_bytes, without.buffers_bytes);
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
    assert_int_equal(p.classes[0].stride, round_up(20000, page) + page);
    assert_int_equal(p.classes[0].size, 20000);
    assert_int_equal(p.connections_bytes, round_up(7 * p.conn_slot_size, page));
    assert_int_equal(p.conn_buffers, 7);
    assert_int_equal(p.buffers_bytes, round_up(7 * p.conn_buffer_size, page));
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
    /* A bigger read buffer makes every connection buffer bigger by the same
     * amount, and no slot bigger: an idle connection holds none. */
    cfg.read_buffer_size += 1024;
    assert_int_equal(nea_config_plan(&cfg, &b, NULL, 0), 0);
    assert_int_equal(b.conn_slot_size, a.conn_slot_size);
    assert_int_equal(b.conn_buffer_size, a.conn_buffer_size + 1024);
    /* Buffers are counted on their own. */
    cfg.conn_buffers = 10;
    assert_int_equal(nea_config_plan(&cfg, &b, NULL, 0), 0);
    assert_int_equal(b.conn_buffers, 10);
    assert_int_equal(b.buffers_bytes, round_up(10 * b.conn_buffer_size, page_size()));
    assert_int_equal(b.connections_bytes, round_up(200 * b.conn_slot_size, page_size()));
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
    resolved = p.classes[0].count;

    cfg->arena_count = resolved;
    assert_int_equal(nea_config_plan(cfg, &q, NULL, 0), 0);
    assert_int_equal(q.total, p.total);
    assert_int_equal(q.classes[0].count, resolved);

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
    base_limit = p.fixed_overhead + p.connections_bytes + p.buffers_bytes + 2 * p.classes[0].stride;
    for (size_t limit = base_limit; limit < base_limit + 3 * p.classes[0].stride; limit += 40) {
        cfg.memory_limit = limit;
        check_resolves_to_max(&cfg);
    }
}

/* --- refusals ------------------------------------------------------------- */

/* One assignment to a config field, as data: the field's offset and size,
 * and the number (any integer field: int, unsigned, size_t) or string. */
typedef struct assign {
    size_t off, size;
    uint64_t num;
    const char *str;
    bool is_str;
} assign;

#define SET(field, value)                                                                          \
    {                                                                                              \
        offsetof(nea_config, field), sizeof(((nea_config *)0)->field), (uint64_t)(value), NULL,    \
            false                                                                                  \
    }
#define SET_STR(field, value)                                                                      \
    {                                                                                              \
        offsetof(nea_config, field), sizeof(const char *), 0, (value), true                        \
    }

typedef struct refusal {
    const char *field; /* the message must name this field */
    assign set[4];     /* applied to small_config(), in order */
    int code;
    const char *text; /* and contain this */
} refusal;

static void apply(nea_config *cfg, const assign *set)
{
    for (int i = 0; i < 4 && set[i].size != 0; i++) {
        char *at = (char *)cfg + set[i].off;
        if (set[i].is_str) {
            memcpy(at, &set[i].str, sizeof(set[i].str));
        } else if (set[i].size == sizeof(uint32_t)) {
            uint32_t v = (uint32_t)set[i].num;
            memcpy(at, &v, sizeof(v));
        } else {
            assert_int_equal(set[i].size, sizeof(uint64_t));
            memcpy(at, &set[i].num, sizeof(set[i].num));
        }
    }
}

#define EINV NEA_EINVAL_CONFIG
#define HOST_LONG "0000:0000:0000:0000:0000:0000:0000:0001%an-interface-name-that-is-too-long"

static const refusal refusals[] = {
    /* Fields that must be > 0. */
    {"memory_limit", {SET(memory_limit, 0)}, EINV, "must be > 0"},
    {"workers", {SET(workers, 1025)}, EINV, "above 1024"},
    {"arena_size", {SET(arena_size, 0)}, EINV, "must be > 0"},
    {"max_connections", {SET(max_connections, 0)}, EINV, "outside 1..4194304"},
    {"max_routes", {SET(max_routes, 0)}, EINV, "outside 1..65536"},
    {"backlog", {SET(backlog, 0)}, EINV, "must be > 0"},
    {"backlog", {SET(backlog, -1)}, EINV, "must be > 0"},
    {"header_timeout_ms", {SET(header_timeout_ms, 0)}, EINV, "must be > 0"},
    {"body_timeout_ms", {SET(body_timeout_ms, 0)}, EINV, "must be > 0"},
    {"body_deadline_ms", {SET(body_deadline_ms, 0)}, EINV, "must be > 0"},
    {"keepalive_timeout_ms", {SET(keepalive_timeout_ms, 0)}, EINV, "must be > 0"},
    {"write_timeout_ms", {SET(write_timeout_ms, 0)}, EINV, "must be > 0"},
    {"drain_timeout_ms", {SET(drain_timeout_ms, 0)}, EINV, "must be > 0"},
    /* Ranges. */
    {"read_buffer_size", {SET(read_buffer_size, 0)}, EINV, "outside 256 B..1 GiB"},
    {"read_buffer_size", {SET(read_buffer_size, 255)}, EINV, "outside 256 B..1 GiB"},
    {"read_buffer_size", {SET(read_buffer_size, ((size_t)1 << 30) + 1)}, EINV, "outside"},
    {"scrub", {SET(scrub, 3)}, EINV, "NEA_SCRUB_NONE"},
    {"scrub", {SET(scrub, -1)}, EINV, "NEA_SCRUB_NONE"},
    {"port", {SET(port, -1)}, EINV, "outside 0..65535"},
    {"port", {SET(port, 65536)}, EINV, "outside 0..65535"},
    {"agent_port", {SET(agent_port, -2)}, EINV, "outside -1..65535"},
    {"agent_port", {SET(agent_port, 65536)}, EINV, "outside -1..65535"},
    {"agent_host", {SET_STR(agent_host, "localhost")}, EINV, "not an IPv4 or IPv6 literal"},
    {"agent_host", {SET_STR(agent_host, HOST_LONG)}, EINV, "not an IPv4 or IPv6 literal"},
    {"retry_after_s", {SET(retry_after_s, 86401)}, EINV, "above 86400"},
    {"max_connections", {SET(max_connections, (1u << 22) + 1)}, EINV, "outside 1..4194304"},
    {"conn_buffers", {SET(max_connections, 16), SET(conn_buffers, 17)}, EINV, "conn_buffers 17 is above max_connections 16"},
    {"max_routes", {SET(max_routes, (1u << 16) + 1)}, EINV, "outside 1..65536"},
    {"queue_length", {SET(queue_length, 17)}, EINV, "above max_connections"},
    /* host: an IP literal, nothing else. */
    {"host", {SET_STR(host, NULL)}, EINV, "not an IPv4 or IPv6 literal"},
    {"host", {SET_STR(host, HOST_LONG)}, EINV, "not an IPv4 or IPv6 literal"},
    {"host", {SET_STR(host, "localhost")}, EINV, "not an IPv4 or IPv6 literal"},
    {"host", {SET_STR(host, "1.2.3")}, EINV, "not an IPv4 or IPv6 literal"},
    {"host", {SET_STR(host, "::zz")}, EINV, "not an IPv4 or IPv6 literal"},
    {"host", {SET_STR(host, "")}, EINV, "not an IPv4 or IPv6 literal"},
    /* A body no arena could ever hold (32 KiB arenas). */
    {"max_body_size", {SET(max_body_size, 32 * KIB)}, EINV, "can never fit"},
    {"max_body_size", {SET(max_body_size, SIZE_MAX)}, EINV, "can never fit"},
    /* Arithmetic. */
    {"arena_size", {SET(arena_size, ((size_t)1 << 40) + 1)}, NEA_EOVERFLOW, "above 1 TiB"},
    {"arena_count",
     {SET(memory_limit, SIZE_MAX), SET(arena_size, (size_t)1 << 40), SET(arena_count, UINT_MAX)},
     NEA_EOVERFLOW,
     "overflows"},
    /* 64 x 32 KiB + guards > 1 MiB */
    {"memory_limit", {SET(memory_limit, 1 * MIB), SET(arena_count, 64)}, NEA_EOVERLIMIT, "needs"},
    /* connections alone need more */
    {"memory_limit",
     {SET(arena_count, 0), SET(memory_limit, 64 * KIB)},
     NEA_EOVERLIMIT,
     "no room for one arena"},
    /* The largest product the caps allow (2^22 slots x 1 GiB): 4 PiB, refused
     * rather than wrapped. On 64-bit it does not overflow size_t (the caps
     * keep it below 2^53), so the refusal is the limit check. */
    {"memory_limit",
     {SET(max_connections, 1u << 22), SET(read_buffer_size, (size_t)1 << 30),
      SET(arena_size, ((size_t)1 << 30) + 64 * KIB), SET(memory_limit, (size_t)64 << 30)},
     NEA_EOVERLIMIT,
     "needs"},
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
        apply(&cfg, r->set);
        memset(err, 0, sizeof(err));
        memset(&p, 0xa5, sizeof(p));
        before = p;
        rc = nea_config_plan(&cfg, &p, err, sizeof(err));
        if (rc != r->code || strstr(err, r->field) == NULL || strstr(err, r->text) == NULL) {
            print_error("row %zu: got %d (%s) \"%s\", want %d naming \"%s\" with \"%s\"\n", i, rc,
                        nea_err_name(rc), err, r->code, r->field, r->text);
        }
        assert_int_equal(rc, r->code);
        assert_true(strlen(err) > 0);
        assert_non_null(strstr(err, r->field));
        assert_non_null(strstr(err, r->text));
        /* A refused plan is not written. */
        assert_memory_equal(&p, &before, sizeof(p));
        /* NULL errbuf is allowed and gives the same answer. */
        assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), r->code);
    }
}

/* --- the host's error bodies ------------------------------------------------------ */

/* Their copies are one more term of the fixed part: the sum of their
 * lengths rounded up to 64, whatever their content types. */
static void test_error_bodies_in_the_plan(void **state)
{
    static char big[10000];
    nea_error_body bodies[] = {
        {404, "application/json", "{\"error\":\"not found\"}", 21},
        {503, "text/html; charset=utf-8", big, sizeof(big)},
        {400, "application/json", NULL, 0},
    };
    nea_config cfg;
    nea_plan with, without, auto_with, auto_without;
    char line[512];
    (void)state;

    small_config(&cfg);
    assert_int_equal(nea_config_plan(&cfg, &without, NULL, 0), 0);
    assert_int_equal(without.error_bodies_bytes, 0);
    cfg.error_bodies = bodies;
    cfg.error_body_count = 3;
    assert_int_equal(nea_config_plan(&cfg, &with, NULL, 0), 0);
    check_plan_identities(&cfg, &with);
    assert_int_equal(with.error_bodies_bytes, round_up(21 + 10000, 64));
    /* Inside the page-rounded fixed part: it grows by the term, give or take
     * that rounding; nothing else moves. */
    assert_true(with.fixed_overhead >=
                without.fixed_overhead + with.error_bodies_bytes - page_size());
    assert_true(with.fixed_overhead <=
                without.fixed_overhead + with.error_bodies_bytes + page_size());
    assert_int_equal(with.connections_bytes, without.connections_bytes);
    assert_int_equal(with.arenas_bytes, without.arenas_bytes);
    nea_plan_format(&with, line, sizeof(line));
    assert_non_null(strstr(line, " error_bodies=10048 "));
    nea_plan_format(&without, line, sizeof(line));
    assert_null(strstr(line, "error_bodies"));

    /* arena_count 0: the term is taken from what is left for arenas. */
    cfg.arena_count = 0;
    assert_int_equal(nea_config_plan(&cfg, &auto_with, NULL, 0), 0);
    check_plan_identities(&cfg, &auto_with);
    cfg.error_body_count = 0;
    assert_int_equal(nea_config_plan(&cfg, &auto_without, NULL, 0), 0);
    assert_true(auto_with.classes[0].count <= auto_without.classes[0].count);
}

/* Every bad entry is refused with NEA_EINVAL_CONFIG, naming it. */
static void test_error_bodies_refused(void **state)
{
    static char too_long[NEA_ERROR_BODY_MAX + 1];
    char long_type[NEA_ERROR_TYPE_MAX + 2];
    const nea_error_body ok = {404, "application/json", "{}", 2};
    const struct {
        nea_error_body bad;
        const char *text;
    } rows[] = {
        {{200, "application/json", "{}", 2}, "no answer of its own"},
        {{302, "application/json", "{}", 2}, "no answer of its own"},
        {{418, "application/json", "{}", 2}, "no answer of its own"},
        {{0, "application/json", "{}", 2}, "no answer of its own"},
        {{404, "application/json", "{}", 2}, "given twice"},
        {{503, NULL, "{}", 2}, "content_type"},
        {{503, "", "{}", 2}, "content_type"},
        {{503, "application/json\r\nX-Injected: 1", "{}", 2}, "content_type"},
        {{503, "text/plain\n", "{}", 2}, "content_type"},
        {{503, "text/plain\t", "{}", 2}, "content_type"},
        {{503, long_type, "{}", 2}, "content_type"},
        {{503, "application/json", too_long, sizeof(too_long)}, "NEA_ERROR_BODY_MAX"},
        {{503, "application/json", NULL, 2}, "body NULL"},
    };
    (void)state;
    memset(long_type, 'a', sizeof(long_type) - 1);
    long_type[sizeof(long_type) - 1] = '\0';
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        nea_error_body bodies[2] = {ok, rows[i].bad};
        nea_config cfg;
        nea_plan p;
        char err[512] = "";
        small_config(&cfg);
        cfg.error_bodies = bodies;
        cfg.error_body_count = 2;
        assert_int_equal(nea_config_plan(&cfg, &p, err, sizeof(err)), NEA_EINVAL_CONFIG);
        if (strstr(err, "error_bodies[1]") == NULL || strstr(err, rows[i].text) == NULL) {
            fail_msg("row %zu: \"%s\" does not name error_bodies[1] with \"%s\"", i, err,
                     rows[i].text);
        }
        assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), NEA_EINVAL_CONFIG);
    }
    /* The longest content type and body are accepted. */
    {
        nea_error_body b = {503, long_type, too_long, NEA_ERROR_BODY_MAX};
        nea_config cfg;
        nea_plan p;
        long_type[NEA_ERROR_TYPE_MAX] = '\0';
        small_config(&cfg);
        cfg.error_bodies = &b;
        cfg.error_body_count = 1;
        assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
        assert_int_equal(p.error_bodies_bytes, NEA_ERROR_BODY_MAX);
        /* A count without an array. */
        cfg.error_bodies = NULL;
        assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), NEA_EINVAL_CONFIG);
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
    small_config(&cfg);
    cfg.queue_length = cfg.max_connections; /* every slot may wait */
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
    min = p.request_overhead + 1024; /* the head stays in the read buffer: no copy */

    cfg.arena_size = min;
    assert_int_equal(nea_config_plan(&cfg, &p, err, sizeof(err)), 0);
    assert_int_equal(p.classes[0].size, min);

    cfg.arena_size = min - 1;
    assert_int_equal(nea_config_plan(&cfg, &p, err, sizeof(err)), NEA_EARENA_SMALL);
    assert_non_null(strstr(err, "arena_size"));
    /* The message states the minimum so the operator knows what to set. */
    {
        char num[32];
        snprintf(num, sizeof(num), "%zu", min);
        assert_non_null(strstr(err, num));
    }

    /* The minimum does not follow the read buffer. */
    cfg.read_buffer_size = 16 * KIB;
    cfg.arena_size = min;
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
    /* The smallest arena that serves /hello fits 2 KiB. */
    assert_true(min <= 2 * KIB);
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
    snprintf(num, sizeof(num), "%zu", p.classes[0].stride);
    assert_non_null(strstr(buf, num));
    /* The slot count is the configured one, whatever the page rounding of
     * their bytes leaves over. */
    cfg.max_connections = 100000;
    cfg.memory_limit = (size_t)256 << 20;
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
    assert_int_equal(p.connections, 100000);
    assert_true(p.connections_bytes > (size_t)100000 * p.conn_slot_size);
    nea_plan_format(&p, buf, sizeof(buf));
    snprintf(num, sizeof(num), " connections=100000x%zu ", p.conn_slot_size);
    assert_non_null(strstr(buf, num));
}

/* --- arena size classes ------------------------------------------------------- */

static void two_classes(nea_config *cfg)
{
    small_config(cfg);
    cfg->arena_class_count = 2;
    cfg->arena_classes[0] = (nea_arena_class){.size = 256 * KIB, .count = 2};
    cfg->arena_classes[1] = (nea_arena_class){.size = 20000, .count = 3};
}

static void test_classes_sum_in_the_plan(void **state)
{
    nea_config cfg;
    nea_plan p, one;
    size_t page = page_size();
    char buf[512];
    (void)state;

    two_classes(&cfg);
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
    assert_int_equal(p.class_count, 3);
    assert_int_equal(p.arena_total, 8 + 2 + 3);
    assert_int_equal(p.classes[0].count, 8);
    assert_int_equal(p.classes[0].stride, 32 * KIB + page);
    assert_int_equal(p.classes[1].size, 256 * KIB);
    assert_int_equal(p.classes[1].stride, 256 * KIB + page);
    assert_int_equal(p.classes[2].stride, round_up(20000, page) + page);
    assert_int_equal(p.classes[2].bytes, 3 * (round_up(20000, page) + page));
    assert_int_equal(p.arenas_bytes, p.classes[0].bytes + p.classes[1].bytes + p.classes[2].bytes);
    assert_int_equal(p.total,
                     p.fixed_overhead + p.connections_bytes + p.buffers_bytes + p.arenas_bytes);
    /* Each class's body limit is what its arena holds. */
    assert_true(p.classes[1].max_body_size > 200 * KIB);
    assert_true(p.classes[2].max_body_size < 20000);
    /* Descriptors of every arena are in the fixed part. */
    small_config(&cfg);
    assert_int_equal(nea_config_plan(&cfg, &one, NULL, 0), 0);
    assert_true(p.fixed_overhead >= one.fixed_overhead);
    /* The summary names every class. */
    two_classes(&cfg);
    nea_plan_format(&p, buf, sizeof(buf));
    assert_non_null(strstr(buf, "class0=8x"));
    assert_non_null(strstr(buf, "class1=2x"));
    assert_non_null(strstr(buf, "class2=3x"));
}

/* Where plan.c puts every part of a slab: the fixed part's tables in order,
 * the connection slots after it, then every class's arenas back to back,
 * each arena's usable bytes ending where its span ends and its guard page
 * right after, the last guard page ending the slab; slabs one after the
 * other. */
static void test_plan_places_every_part(void **state)
{
    nea_config cfg;
    nea_plan p;
    nea__layout l;
    const nea__sizes *sz = nea__server_sizes();
    size_t page = page_size(), end;
    (void)state;

    two_classes(&cfg);
    cfg.workers = 2;
    cfg.memory_limit = 64 * MIB;
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
    nea__plan_layout(&cfg, sz, &p, &l);

    assert_true(l.routes_off >= sizeof(nea_server));
    assert_true(l.metrics_off >= l.routes_off + cfg.max_routes * sizeof(nea__route));
    assert_int_equal(l.metrics_count, cfg.max_routes + 1);
    assert_true(l.arena_table_off >= l.metrics_off + l.metrics_count * sizeof(nea_route_stats));
    assert_true(l.arena_table_off + p.arena_total * sizeof(nea__arena) <= p.fixed_overhead);
    assert_int_equal(l.conns_off, p.fixed_overhead);
    assert_int_equal(l.buffers_off, p.fixed_overhead + p.connections_bytes);
    assert_true(l.buf_rbuf_off >= sizeof(nea__work));
    assert_true(l.buf_obuf_off >= l.buf_rbuf_off + cfg.read_buffer_size);
    assert_int_equal(l.buf_obuf_off + NEA__OBUF, p.conn_buffer_size);

    end = p.fixed_overhead + p.connections_bytes + p.buffers_bytes;
    for (unsigned k = 0; k < p.class_count; k++) {
        const nea_plan_class *c = &p.classes[k];
        size_t span = nea__plan_span(&p, c->size);
        assert_int_equal(span % page, 0);
        assert_true(span >= c->size && span < c->size + page);
        assert_int_equal(l.classes[k].first,
                         k == 0 ? 0 : l.classes[k - 1].first + p.classes[k - 1].count);
        for (unsigned i = 0; i < c->count; i++) {
            nea__arena_place at = nea__plan_arena(&p, &l, k, i);
            assert_int_equal(at.span, end); /* right after the previous arena's guard */
            assert_int_equal(at.span % page, 0);
            assert_int_equal(at.usable + c->size, at.span + span);
            assert_int_equal(at.guard, at.span + span);
            end = at.guard + (cfg.guard_pages ? page : 0);
        }
    }
    assert_int_equal(end, p.worker_bytes);
    for (unsigned w = 0; w < p.workers; w++) {
        assert_int_equal(nea__plan_slab(&p, w), w * p.worker_bytes);
    }
    assert_int_equal(nea__plan_slab(&p, p.workers), p.total);
}

/* TLS: the state in every slot, the record buffers in every connection
 * buffer, the session cache once after the slabs (shared by the workers),
 * and each of them in the budget, the limit check, the layout and the
 * plan line. */
static void tls_config(nea_config *cfg)
{
    small_config(cfg);
    cfg->tls.cert_file = "server.crt"; /* the plan does not read it */
    cfg->tls.key_file = "server.key";
}

static void test_plan_tls(void **state)
{
    const nea__sizes *sz = nea__server_sizes();
    nea_config cfg;
    nea_plan plain, p;
    nea__layout l;
    size_t page = page_size();
    char line[1024], want[160];
    (void)state;

    if (sz->tls_server == NULL) {
        skip(); /* built without TLS: every TLS term is 0 */
    }
    small_config(&cfg);
    assert_int_equal(nea_config_plan(&cfg, &plain, NULL, 0), 0);
    assert_int_equal(plain.tls_conn_size + plain.tls_records_size + plain.tls_cache_bytes, 0);
    assert_int_equal(plain.tls_sessions, 0);

    tls_config(&cfg);
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
    check_plan_identities(&cfg, &p);
    assert_int_equal(p.tls_conn_size, round_up(nea__tls_conn_size(), 64));
    assert_int_equal(p.tls_records_size, round_up(nea__tls_records_size(), 64));
    assert_int_equal(p.tls_sessions, 1024);
    assert_int_equal(p.tls_cache_bytes, round_up(nea__tls_server_size(1024), page));
    assert_int_equal(p.conn_slot_size, plain.conn_slot_size + p.tls_conn_size);
    assert_int_equal(p.conn_buffer_size, plain.conn_buffer_size + p.tls_records_size);
    assert_int_equal(p.connections_bytes,
                     round_up((size_t)cfg.max_connections * p.conn_slot_size, page));
    assert_int_equal(p.total, p.worker_bytes + p.tls_cache_bytes);
    /* an active TLS connection within 24 KiB of the bound: its state and
     * its record buffers (the plain slot and buffer come on top) */
    assert_true(p.tls_conn_size + p.tls_records_size <= 24 * KIB);

    cfg.tls_sessions = 10;
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
    assert_int_equal(p.tls_cache_bytes, round_up(nea__tls_server_size(10), page));
    cfg.tls_sessions = (1u << 24) + 1;
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), NEA_EINVAL_CONFIG);

    /* with workers the cache is counted once, outside the slabs, and the
     * arenas fit what memory_limit leaves after it */
    tls_config(&cfg);
    cfg.workers = 3;
    cfg.arena_count = 0;
    cfg.memory_limit = 32 * MIB;
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
    check_plan_identities(&cfg, &p);
    assert_int_equal(p.total, 3 * p.worker_bytes + p.tls_cache_bytes);
    assert_int_equal(nea__plan_arena_budget(&cfg, &p), (cfg.memory_limit - p.tls_cache_bytes) / 3 -
                                                           p.fixed_overhead - p.connections_bytes -
                                                           p.buffers_bytes);
    nea__plan_layout(&cfg, sz, &p, &l);
    assert_int_equal(l.tls_server_off, 3 * p.worker_bytes);
    assert_int_equal(l.tls_server_off + p.tls_cache_bytes, p.total);
    assert_int_equal(l.conn_tls_off, round_up(sizeof(nea__conn), 64));
    assert_int_equal(l.conn_tls_off + p.tls_conn_size, p.conn_slot_size);
    assert_int_equal(l.buf_tls_off, l.buf_obuf_off + NEA__OBUF);
    assert_int_equal(l.buf_tls_off + p.tls_records_size, p.conn_buffer_size);
    assert_int_equal(l.buf_tls_off % alignof(max_align_t), 0);

    /* the limit counts the cache: one byte less than the plan is refused */
    tls_config(&cfg);
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
    cfg.memory_limit = p.total - 1;
    assert_int_equal(nea_config_plan(&cfg, &p, line, sizeof(line)), NEA_EOVERLIMIT);
    assert_non_null(strstr(line, "TLS session cache"));

    tls_config(&cfg);
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
    nea_plan_format(&p, line, sizeof(line));
    snprintf(want, sizeof(want),
             " tls=state %zu/slot + records %zu/buffer + session cache %zu (1024 sessions)",
             p.tls_conn_size, p.tls_records_size, p.tls_cache_bytes);
    assert_non_null(strstr(line, want));
}

/* The advisor's floor and budget are the plan's own figures: the smallest
 * arena is the one nea_config_plan still accepts, and one worker's arena
 * budget is its share less what its slab holds besides arenas (the fixed
 * part, the connection slots and the connection buffers). */
static void test_plan_min_arena_and_budget(void **state)
{
    nea_config cfg;
    nea_plan p;
    size_t min;
    (void)state;

    small_config(&cfg);
    min = nea__plan_min_arena(&cfg, nea__server_sizes());
    cfg.arena_size = min;
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
    cfg.arena_size = min - 1;
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), NEA_EARENA_SMALL);

    small_config(&cfg);
    cfg.workers = 2;
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
    assert_int_equal(nea__plan_arena_budget(&cfg, &p),
                     cfg.memory_limit / 2 - p.fixed_overhead - p.connections_bytes -
                         p.buffers_bytes);
    cfg.memory_limit = p.fixed_overhead; /* less than the slab's fixed part: no budget */
    assert_int_equal(nea__plan_arena_budget(&cfg, &p), 0);
}

/* arena_count = 0: class 0 takes what memory_limit leaves after the other
 * classes, to the arena. */
static void test_classes_auto_default_class(void **state)
{
    nea_config cfg;
    nea_plan p, base;
    (void)state;

    two_classes(&cfg);
    cfg.arena_count = 0;
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
    assert_true(p.total <= cfg.memory_limit);
    assert_true(p.total + p.classes[0].stride > cfg.memory_limit); /* one more would not fit */
    cfg.arena_class_count = 0;
    assert_int_equal(nea_config_plan(&cfg, &base, NULL, 0), 0);
    assert_true(p.classes[0].count < base.classes[0].count);
    /* Class 0 gives up what the other classes take, to within one arena
     * either way (both counts are rounded down to whole arenas). */
    assert_true((base.classes[0].count - p.classes[0].count + 1) * p.classes[0].stride >
                p.classes[1].bytes + p.classes[2].bytes);
    assert_true((base.classes[0].count - p.classes[0].count - 1) * p.classes[0].stride <
                p.classes[1].bytes + p.classes[2].bytes);
}

static void test_classes_refused(void **state)
{
    nea_config cfg;
    nea_plan p;
    char err[256];
    (void)state;

    two_classes(&cfg);
    cfg.arena_classes[1].count = 0;
    assert_int_equal(nea_config_plan(&cfg, &p, err, sizeof(err)), NEA_EINVAL_CONFIG);
    assert_non_null(strstr(err, "arena_classes[1].count"));
    two_classes(&cfg);
    cfg.arena_classes[0].size = 1000;
    assert_int_equal(nea_config_plan(&cfg, &p, err, sizeof(err)), NEA_EARENA_SMALL);
    assert_non_null(strstr(err, "arena_classes[0].size"));
    two_classes(&cfg);
    cfg.arena_class_count = NEA_ARENA_CLASSES;
    assert_int_equal(nea_config_plan(&cfg, &p, err, sizeof(err)), NEA_EINVAL_CONFIG);
    two_classes(&cfg);
    cfg.memory_limit = 1 * MIB; /* the classes alone do not fit */
    assert_int_equal(nea_config_plan(&cfg, &p, err, sizeof(err)), NEA_EOVERLIMIT);
    /* A body only the big class can hold is allowed; one none can is not. */
    two_classes(&cfg);
    cfg.max_body_size = 100 * KIB;
    assert_int_equal(nea_config_plan(&cfg, &p, err, sizeof(err)), 0);
    assert_int_equal(p.classes[1].max_body_size, 100 * KIB);
    assert_true(p.classes[0].max_body_size < 32 * KIB);
    cfg.max_body_size = 300 * KIB;
    assert_int_equal(nea_config_plan(&cfg, &p, err, sizeof(err)), NEA_EINVAL_CONFIG);
}

/* --- nea_server_new refuses the same configs ------------------------------- */

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
        t_log lc;
        nea_server *srv = (nea_server *)&lc; /* sentinel: must not be overwritten */

        small_config(&cfg);
        apply(&cfg, r->set);
        t_log_attach(&lc, &cfg);
        assert_int_equal(nea_server_new(&loop, &cfg, &srv), r->code);
        assert_ptr_equal(srv, (nea_server *)&lc);
        assert_int_equal(lc.count, 1);
        assert_int_equal(lc.level, NEA_LOG_ERROR);
        assert_non_null(strstr(lc.last, r->field));
        assert_non_null(strstr(lc.last, r->text));
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
    t_log lc;
    char num[32];
    int closed = 0;
    (void)state;

    small_config(&cfg);
    t_log_attach(&lc, &cfg);
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
    assert_int_equal(nea_stats_arenas(&st).count, p.classes[0].count);
    assert_int_equal(srv->pools[0].count, p.classes[0].count);
    assert_int_equal(srv->region.size, p.total);
    assert_int_equal(nea_server_port(srv), -1);

    nea_server_close(srv, on_closed, &closed);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(closed, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* --- workers: one slab per worker, the exact sum ----------------------------- */

static void test_plan_workers_sum(void **state)
{
    nea_config cfg;
    nea_plan one, three, p;
    char err[256], buf[512], num[32];
    (void)state;

    small_config(&cfg);
    assert_int_equal(nea_config_plan(&cfg, &one, NULL, 0), 0);
    assert_int_equal(one.workers, 1);
    assert_int_equal(one.worker_bytes, one.total);
    cfg.workers = 3;
    assert_int_equal(nea_config_plan(&cfg, &three, NULL, 0), 0);
    check_plan_identities(&cfg, &three);
    /* Every term is one worker's, exactly the single-worker plan's; the
     * total is three slabs. */
    assert_int_equal(three.workers, 3);
    assert_int_equal(three.worker_bytes, one.total);
    assert_int_equal(three.total, 3 * one.total);
    assert_int_equal(three.fixed_overhead, one.fixed_overhead);
    assert_int_equal(three.connections_bytes, one.connections_bytes);
    assert_int_equal(three.classes[0].count, one.classes[0].count);
    assert_int_equal(three.arenas_bytes, one.arenas_bytes);

    /* memory_limit caps the sum, to the byte. */
    cfg.memory_limit = 3 * one.total;
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
    cfg.memory_limit = 3 * one.total - 1;
    assert_int_equal(nea_config_plan(&cfg, &p, err, sizeof(err)), NEA_EOVERLIMIT);
    assert_non_null(strstr(err, "workers 3"));

    /* The plan line names the workers, the slab and the sum. */
    nea_plan_format(&three, buf, sizeof(buf));
    assert_non_null(strstr(buf, "workers=3"));
    snprintf(num, sizeof(num), "reserved=%zu", three.total);
    assert_non_null(strstr(buf, num));
    snprintf(num, sizeof(num), "%zu", three.worker_bytes);
    assert_non_null(strstr(buf, num));
}

static void test_plan_workers_share_memory_limit(void **state)
{
    nea_config cfg;
    nea_plan half, two;
    (void)state;

    /* arena_count 0: each worker fits as many arenas as memory_limit / 2
     * allows, i.e. exactly what one worker gets with half the limit. */
    small_config(&cfg);
    cfg.arena_count = 0;
    cfg.memory_limit = 8 * MIB + 12345;
    cfg.workers = 2;
    assert_int_equal(nea_config_plan(&cfg, &two, NULL, 0), 0);
    check_plan_identities(&cfg, &two);
    cfg.workers = 1;
    cfg.memory_limit /= 2;
    assert_int_equal(nea_config_plan(&cfg, &half, NULL, 0), 0);
    assert_int_equal(two.classes[0].count, half.classes[0].count);
    assert_int_equal(two.worker_bytes, half.total);
    assert_true(two.total <= 8 * MIB + 12345);

    /* 0 = one worker per online CPU. */
    small_config(&cfg);
    cfg.workers = 0;
    cfg.memory_limit = 1024 * MIB;
    assert_int_equal(nea_config_plan(&cfg, &two, NULL, 0), 0);
    assert_int_equal(two.workers, (unsigned)sysconf(_SC_NPROCESSORS_ONLN));
}

static void test_server_new_carves_worker_slabs(void **state)
{
    uv_loop_t loop;
    nea_config cfg;
    nea_plan p;
    nea_server *srv = NULL;
    nea_stats st;
    int closed = 0;
    (void)state;

    small_config(&cfg);
    cfg.workers = 3;
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(nea_server_new(&loop, &cfg, &srv), 0);
    /* One mapping of exactly the sum, one complete server per slab. */
    assert_int_equal(srv->region.size, p.total);
    for (unsigned i = 0; i < 3; i++) {
        nea_server *w = nea__server_worker(srv, i);
        assert_ptr_equal(w, srv->region.base + i * p.worker_bytes);
        assert_int_equal(w->index, i);
        assert_int_equal(w->pools[0].count, p.classes[0].count);
        assert_true((char *)w->pools[0].arenas[0].base > (char *)w);
        assert_true((char *)w->pools[0].arenas[p.classes[0].count - 1].base <
                    (char *)w + p.worker_bytes);
        assert_ptr_equal(w->loop, i == 0 ? &loop : &w->worker.loop);
    }
    nea_server_stats(srv, &st);
    assert_int_equal(nea_stats_arenas(&st).count, 3 * p.classes[0].count);
    assert_memory_equal(nea_server_plan(srv), &p, sizeof(p));

    nea_server_close(srv, on_closed, &closed);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(closed, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_defaults_plan),
        cmocka_unit_test(test_defaults_any_arena_size),
        cmocka_unit_test(test_plan_terms_guard),
        cmocka_unit_test(test_plan_terms_no_guard),
        cmocka_unit_test(test_plan_unaligned_sizes),
        cmocka_unit_test(test_plan_scales_with_connections),
        cmocka_unit_test(test_arena_count_auto_is_max),
        cmocka_unit_test(test_arena_count_auto_sweep),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_boundaries_accepted),
        cmocka_unit_test(test_error_bodies_in_the_plan),
        cmocka_unit_test(test_error_bodies_refused),
        cmocka_unit_test(test_arena_small_boundary),
        cmocka_unit_test(test_errbuf_truncated),
        cmocka_unit_test(test_plan_format),
        cmocka_unit_test(test_classes_sum_in_the_plan),
        cmocka_unit_test(test_plan_places_every_part),
        cmocka_unit_test(test_plan_tls),
        cmocka_unit_test(test_plan_min_arena_and_budget),
        cmocka_unit_test(test_classes_auto_default_class),
        cmocka_unit_test(test_classes_refused),
        cmocka_unit_test(test_server_new_refuses),
        cmocka_unit_test(test_server_new_uses_plan),
        cmocka_unit_test(test_plan_workers_sum),
        cmocka_unit_test(test_plan_workers_share_memory_limit),
        cmocka_unit_test(test_server_new_carves_worker_slabs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
