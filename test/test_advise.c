/*
 * test_advise.c - the sizing advisor (advise.c) on synthetic histograms:
 * each route's need (quantile, capped by the largest peak, page-rounded,
 * at least the smallest arena), routes sharing a class within 25%, the
 * counts filling memory_limit (one worker's share of it with workers), the
 * predicted OOM rate and fit, and the text.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include <unistd.h>

#include "metrics.h"

#define KIB ((size_t)1024)
#define MIB (KIB * KIB)

static void add(nea_route_stats *r, size_t peak, uint64_t times, uint64_t ns_each)
{
    for (uint64_t i = 0; i < times; i++) {
        nea__hist_add(&r->arena_peak_bytes, NEA_HIST_BYTES_LOG2, peak);
        nea__hist_add(&r->total_ns, NEA_HIST_NS_LOG2, ns_each);
    }
    if (peak > r->arena_peak_max) {
        r->arena_peak_max = peak;
    }
}

static nea_route_stats routes[4];

static void synthetic(nea_config *cfg)
{
    memset(routes, 0, sizeof(routes));
    routes[0] = (nea_route_stats){.method = "", .path = "unrouted"};
    routes[1] = (nea_route_stats){.method = "GET", .path = "/hello"};
    routes[2] = (nea_route_stats){.method = "GET", .path = "/alloc/"};
    routes[3] = (nea_route_stats){.method = "POST", .path = "/svg"};
    add(&routes[1], 3000, 10000, 100000);
    add(&routes[2], 200 * KIB, 1000, 1000000);
    add(&routes[2], 210 * KIB, 1, 1000000);
    add(&routes[3], 20000, 999, 200000);
    add(&routes[3], 900 * KIB, 1, 200000); /* beyond the p99.9: left to OOM */
    nea_config_init(cfg);
    cfg->memory_limit = 64 * MIB;
    cfg->arena_size = 1 * MIB;
    cfg->max_connections = 256;
    cfg->read_buffer_size = 4 * KIB;
}

static void test_advice_arithmetic(void **state)
{
    nea_config cfg;
    nea_advice a;
    nea_plan p;
    unsigned cls[4];
    size_t page = (size_t)sysconf(_SC_PAGESIZE), min_size;
    double held, ideal;
    (void)state;

    synthetic(&cfg);
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
    min_size = NEA__ROUND_UP(p.request_overhead + 1024, page); /* no head copy in arenas */
    assert_int_equal(nea_advise(&cfg, routes, 4, 0.001, 0, cls, &a), 0);

    /* /hello: 3000 B peaks, below the smallest arena: the smallest. */
    assert_int_equal(a.cfg.arena_size, min_size);
    assert_int_equal(a.cfg.arena_class_count, 2);
    /* /svg: the p99.9 lies in 20000's bucket (edge 20480); the outlier is
     * not provided for. */
    assert_int_equal(a.cfg.arena_classes[0].size, NEA__ROUND_UP(20480, page));
    /* /alloc/: the bucket's edge (224 KiB) is above the largest peak seen
     * (210 KiB), which is exact: the need is 210 KiB, page-rounded. */
    assert_int_equal(a.cfg.arena_classes[1].size, NEA__ROUND_UP(210 * KIB, page));
    assert_int_equal(cls[0], 0);
    assert_int_equal(cls[1], 0);
    assert_int_equal(cls[2], 2);
    assert_int_equal(cls[3], 1);
    /* The layout fits the same memory_limit, class 0 taking the rest. */
    assert_int_equal(a.cfg.memory_limit, cfg.memory_limit);
    assert_true(a.plan.total <= cfg.memory_limit);
    /* Class 0 has every arena that fits: one more is refused (it costs its
     * stride and its descriptor, which may round the fixed part up a page:
     * total + stride alone can still be within the limit). */
    {
        nea_config more = a.cfg;
        nea_plan bigger;
        more.arena_count = a.plan.classes[0].count + 1;
        assert_int_equal(nea_config_plan(&more, &bigger, NULL, 0), NEA_EOVERLIMIT);
    }
    assert_true(a.cfg.arena_classes[0].count >= 1 && a.cfg.arena_classes[1].count >= 1);
    /* One outlier of 12001 requests may exceed its class. */
    assert_true(a.predicted_oom > 0.9 / 12001 && a.predicted_oom < 1.1 / 12001);
    /* The fit, recomputed: in-flight time times class size over its mean peak. */
    held = 1e9 * (double)min_size + 1001e6 * (double)a.cfg.arena_classes[1].size +
           2e8 * (double)a.cfg.arena_classes[0].size;
    ideal = 1e9 * 3000 + 1001e6 * ((200.0 * 1000 + 210) * 1024 / 1001) +
            2e8 * ((999.0 * 20000 + 900 * 1024) / 1000);
    assert_true(a.fit_ratio > held / ideal * 0.999 && a.fit_ratio < held / ideal * 1.001);
    assert_true(a.one_class_fit > a.fit_ratio);
    assert_true(a.in_flight > 2 * a.in_flight_one_class);
}

/* With workers the records are the process's sums and memory_limit caps
 * every worker's slab together: the advice per worker is the advice for
 * one worker with its share of the memory, and the in-flight figures are
 * the process's. */
static void test_advice_with_workers(void **state)
{
    nea_config cfg;
    nea_advice one, two;
    unsigned cls_one[4], cls_two[4];
    (void)state;

    synthetic(&cfg);
    cfg.memory_limit = 32 * MIB;
    assert_int_equal(nea_advise(&cfg, routes, 4, 0.001, 0, cls_one, &one), 0);
    cfg.workers = 2;
    cfg.memory_limit = 64 * MIB;
    assert_int_equal(nea_advise(&cfg, routes, 4, 0.001, 0, cls_two, &two), 0);
    assert_int_equal(two.plan.workers, 2);
    assert_true(two.plan.total <= cfg.memory_limit);
    assert_int_equal(two.cfg.arena_size, one.cfg.arena_size);
    assert_int_equal(two.cfg.arena_class_count, one.cfg.arena_class_count);
    for (unsigned c = 0; c < one.cfg.arena_class_count; c++) {
        assert_int_equal(two.cfg.arena_classes[c].size, one.cfg.arena_classes[c].size);
        assert_int_equal(two.cfg.arena_classes[c].count, one.cfg.arena_classes[c].count);
    }
    assert_int_equal(two.plan.classes[0].count, one.plan.classes[0].count);
    assert_memory_equal(cls_two, cls_one, sizeof(cls_one));
    assert_true(two.in_flight > 1.999 * one.in_flight && two.in_flight < 2.001 * one.in_flight);
    assert_true(two.in_flight_one_class > 1.999 * one.in_flight_one_class &&
                two.in_flight_one_class < 2.001 * one.in_flight_one_class);
}

static void test_advice_edges(void **state)
{
    nea_config cfg;
    nea_advice a;
    unsigned cls[4];
    (void)state;

    synthetic(&cfg);
    assert_int_equal(nea_advise(&cfg, routes, 4, 1.0, 0, cls, &a), UV_EINVAL);
    assert_int_equal(nea_advise(&cfg, routes, 0, 0.001, 0, cls, &a), UV_EINVAL);
    /* oom_rate 0: every peak provided for, the outlier too. */
    assert_int_equal(nea_advise(&cfg, routes, 4, 0, 0, cls, &a), 0);
    assert_int_equal(a.predicted_oom, 0);
    assert_int_equal(a.cfg.arena_classes[a.cfg.arena_class_count - 1].size,
                     NEA__ROUND_UP(900 * KIB, (size_t)sysconf(_SC_PAGESIZE)));
    /* Headroom: 10% more for /alloc/. */
    assert_int_equal(nea_advise(&cfg, routes, 4, 0.001, 10, cls, &a), 0);
    assert_true(a.cfg.arena_classes[1].size >= 231 * KIB);
    /* Nothing observed: one class as configured. */
    memset(&routes[1].arena_peak_bytes, 0, sizeof(nea_histogram));
    memset(&routes[2].arena_peak_bytes, 0, sizeof(nea_histogram));
    memset(&routes[3].arena_peak_bytes, 0, sizeof(nea_histogram));
    assert_int_equal(nea_advise(&cfg, routes, 4, 0.001, 0, cls, &a), 0);
    assert_int_equal(a.cfg.arena_class_count, 0);
    assert_int_equal(a.cfg.arena_size, 1 * MIB);
    /* A budget that cannot hold one arena per class. */
    synthetic(&cfg);
    cfg.memory_limit = 4 * MIB;
    cfg.arena_size = 64 * KIB;
    routes[2].arena_peak_max = 0;
    add(&routes[2], 3 * MIB, 1, 1);
    assert_int_equal(nea_advise(&cfg, routes, 4, 0, 0, cls, &a), NEA_EOVERLIMIT);
}

static void test_advice_text(void **state)
{
    nea_config cfg;
    nea_advice a;
    unsigned cls[4];
    char text[2048], cut[16];
    size_t len;
    (void)state;

    synthetic(&cfg);
    assert_int_equal(nea_advise(&cfg, routes, 4, 0.001, 0, cls, &a), 0);
    len = nea_advice_format(&a, routes, 4, cls, text, sizeof(text));
    assert_true(len > 0 && len < sizeof(text));
    assert_non_null(strstr(text, "cfg.arena_class_count = 2;\n"));
    assert_non_null(
        strstr(text, "nea_server_route_class(s, \"GET\", \"/alloc/\", fn, data, flags, 2)"));
    assert_non_null(strstr(text, "--route-class /alloc/=2"));
    assert_non_null(strstr(text, "--route-class /svg=1"));
    assert_null(strstr(text, "/hello=")); /* class 0 needs no flag */
    assert_int_equal(nea_advice_format(&a, routes, 4, cls, cut, sizeof(cut)), len);
    assert_int_equal(strlen(cut), sizeof(cut) - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_advice_arithmetic),
        cmocka_unit_test(test_advice_with_workers),
        cmocka_unit_test(test_advice_edges),
        cmocka_unit_test(test_advice_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
