/*
 * test_totals.c - the process's figures summed over its workers (totals.c):
 * nea_server_stats, nea_server_worker_stats, nea_server_route_stats and
 * nea_server_metrics_text over a three-worker server whose threads never
 * start, so that every worker's figures are set here exactly: worker 0's
 * live (this is its thread), the others' as they last published them.
 * test_worker.c covers the same readers with every worker serving.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "server.h"

#define WORKERS 3u

typedef struct fixture {
    uv_loop_t loop;
    nea_server *srv;
    int closed;
} fixture;

static void quiet(void *data, int level, const char *msg)
{
    (void)data;
    (void)level;
    (void)msg;
}

static void handler(nea_req *req, void *data)
{
    (void)data;
    nea_respond(req, 200, "text/plain", "x", 1);
}

static void start(fixture *f, unsigned workers)
{
    nea_config cfg;
    nea_config_init(&cfg);
    cfg.port = 0;
    cfg.workers = workers;
    cfg.memory_limit = 16u << 20;
    cfg.arena_count = 4;
    cfg.max_connections = 8;
    cfg.log = quiet;
    memset(f, 0, sizeof(*f));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(nea_server_new(&f->loop, &cfg, &f->srv), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/a", handler, NULL), 0);
}

static void on_closed(nea_server *s, void *data)
{
    (void)s;
    (*(int *)data)++;
}

static void stop(fixture *f)
{
    assert_int_equal(nea_server_close(f->srv, on_closed, &f->closed), 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->closed, 1);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* Worker w (1 or more, its thread never started) publishes new figures, as
 * its thread would before its loop waits. */
static void republish(nea_server *w, uint64_t requests, uint64_t shed_cpu, unsigned open)
{
    nea_stats st;
    nea__stats_read(&w->snapshot, &st);
    st.requests = requests;
    st.responses[2] = requests;
    st.shed_cpu = shed_cpu;
    st.connections_open = open;
    st.classes[0].in_use = 1;
    st.classes[0].peak_bytes = 1000 + requests;
    nea__stats_publish(&w->snapshot, &st);
}

/* One finished request of route record 1 (/a) in worker w's block. */
static void record(nea_server *w, int status, nea_outcome outcome, size_t peak)
{
    nea__sample s;
    memset(&s, 0, sizeof(s));
    s.route = 1;
    s.status = status;
    s.outcome = outcome;
    s.bytes_in = 100;
    s.bytes_out = 50;
    s.arena_peak = peak;
    s.handled = true;
    s.handler_ns = 2000;
    s.total_ns = 5000;
    nea__metrics_record(&w->metrics, &s);
}

static void test_stats_add_up_over_workers(void **state)
{
    fixture f;
    nea_stats st, one;
    nea_stats_class arenas;
    (void)state;

    start(&f, WORKERS);
    f.srv->stats.requests = 10; /* worker 0: live, this is its thread */
    f.srv->stats.responses[2] = 10;
    f.srv->stats.shed_no_slot = 4;
    republish(nea__server_worker(f.srv, 1), 20, 1, 2);
    republish(nea__server_worker(f.srv, 2), 30, 2, 3);

    for (unsigned i = 0; i < WORKERS; i++) {
        assert_int_equal(nea_server_worker_stats(f.srv, i, &one), 0);
        assert_int_equal(one.requests, 10 * (i + 1));
        assert_int_equal(nea_stats_arenas(&one).count, 4);
    }
    memset(&one, 0x5a, sizeof(one));
    assert_int_equal(nea_server_worker_stats(f.srv, WORKERS, &one), UV_EINVAL);
    assert_int_equal(one.requests, 0x5a5a5a5a5a5a5a5aull); /* left unchanged */

    nea_server_stats(f.srv, &st);
    assert_int_equal(st.requests, 60);
    assert_int_equal(st.responses[2], 60);
    assert_int_equal(st.shed_cpu, 3);
    assert_int_equal(nea_stats_shed(&st), 7);
    assert_int_equal(st.connections_open, 5);
    arenas = nea_stats_arenas(&st);
    assert_int_equal(arenas.count, WORKERS * 4); /* capacities add up */
    assert_int_equal(arenas.in_use, 2);
    assert_int_equal(arenas.peak_bytes, 1030); /* the largest of any worker */
    /* Any worker's server answers for the whole process. */
    nea_server_stats(nea__server_worker(f.srv, 2), &one);
    assert_int_equal(one.requests, 60);
    stop(&f);
}

static void test_route_records_add_up_over_workers(void **state)
{
    fixture f;
    nea_route_stats r;
    (void)state;

    start(&f, WORKERS);
    record(f.srv, 200, NEA_OUTCOME_COMPLETED, 700);
    record(nea__server_worker(f.srv, 1), 200, NEA_OUTCOME_COMPLETED, 900);
    record(nea__server_worker(f.srv, 2), 500, NEA_OUTCOME_OOM, 4000);
    record(nea__server_worker(f.srv, 2), 200, NEA_OUTCOME_COMPLETED, 800);

    assert_int_equal(nea_server_route_stats_count(f.srv), 2); /* unrouted and /a */
    assert_int_equal(nea_server_route_stats(f.srv, 1, &r), 0);
    assert_string_equal(r.method, "GET"); /* names from worker 0 */
    assert_string_equal(r.path, "/a");
    assert_int_equal(r.requests, 4);
    assert_int_equal(r.outcomes[NEA_OUTCOME_COMPLETED], 3);
    assert_int_equal(r.outcomes[NEA_OUTCOME_OOM], 1);
    assert_int_equal(r.responses[2], 3);
    assert_int_equal(r.responses[5], 1);
    assert_int_equal(r.bytes_in, 400);
    assert_int_equal(r.arena_peak_bytes.count, 4);
    assert_int_equal(r.arena_peak_bytes.sum, 700 + 900 + 4000 + 800);
    assert_int_equal(r.arena_peak_max, 4000);
    assert_int_equal(r.total_ns.count, 4);
    assert_int_equal(nea_server_route_stats(f.srv, 0, &r), 0);
    assert_string_equal(r.path, "unrouted");
    assert_int_equal(r.requests, 0);
    assert_int_equal(nea_server_route_stats(f.srv, 2, &r), UV_EINVAL);
    stop(&f);
}

static void test_metrics_text_is_the_process(void **state)
{
    fixture f;
    char text[32768], want[160];
    size_t need;
    (void)state;

    start(&f, WORKERS);
    f.srv->stats.requests = 10;
    republish(nea__server_worker(f.srv, 1), 20, 1, 0);
    republish(nea__server_worker(f.srv, 2), 30, 2, 0);
    record(f.srv, 200, NEA_OUTCOME_COMPLETED, 700);
    record(nea__server_worker(f.srv, 2), 200, NEA_OUTCOME_COMPLETED, 800);

    need = nea_server_metrics_text(f.srv, NULL, 0);
    assert_true(need > 0 && need < sizeof(text));
    assert_int_equal(nea_server_metrics_text(f.srv, text, sizeof(text)), need);
    assert_int_equal(strlen(text), need);
    assert_non_null(strstr(text, "\nnea_requests_total 60\n"));
    assert_non_null(strstr(text, "\nnea_shed_total{cause=\"cpu\"} 3\n"));
    snprintf(want, sizeof(want), "\nnea_arenas %u\n", WORKERS * 4);
    assert_non_null(strstr(text, want));
    assert_non_null(strstr(
        text, "\nnea_route_requests_total{route=\"/a\",method=\"GET\",outcome=\"completed\"} 2\n"));
    stop(&f);
}

/* One worker: the totals are its own live figures. */
static void test_one_worker_is_its_own_total(void **state)
{
    fixture f;
    nea_stats st, one;
    (void)state;

    start(&f, 1);
    f.srv->stats.requests = 7;
    f.srv->stats.shed_fair = 2;
    nea_server_stats(f.srv, &st);
    assert_int_equal(nea_server_worker_stats(f.srv, 0, &one), 0);
    assert_memory_equal(&st, &one, sizeof(st));
    assert_int_equal(st.requests, 7);
    assert_int_equal(nea_stats_shed(&st), 2);
    assert_int_equal(nea_server_worker_stats(f.srv, 1, &one), UV_EINVAL);
    f.srv->stats.requests = 8; /* live: no snapshot in between */
    nea_server_stats(f.srv, &st);
    assert_int_equal(st.requests, 8);
    stop(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stats_add_up_over_workers),
        cmocka_unit_test(test_route_records_add_up_over_workers),
        cmocka_unit_test(test_metrics_text_is_the_process),
        cmocka_unit_test(test_one_worker_is_its_own_total),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
