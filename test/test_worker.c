/*
 * test_worker.c - worker threads (worker.c, balance.c, and the worker parts
 * of server.c, listener.c, stats.c and metrics.c), end to end on 127.0.0.1:
 * every worker serves, connections dealt round-robin and past a full
 * worker, counters summed across workers, per-route metrics and the
 * Prometheus text summed across workers and read from another worker's
 * thread while the others record, drain with requests in flight on several
 * workers, a full worker answering 503 at once, the agent answering for the
 * process, per-worker fault injection, the lifecycle without listening or
 * after a failed listen, nea_run with workers, and the embedding pattern (a
 * host's own threads, one server each, one address).
 *
 * The test thread runs worker 0's loop (the host's), so every wait here
 * runs that loop while the other workers run on their own threads. The
 * handlers say which worker ran them, and everything they share is atomic:
 * the same program runs under ThreadSanitizer in CI.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "e2e.h"

#define MAX_W 4

/* Worker loops, in worker order: written before the threads start. */
static uv_loop_t *loops[MAX_W];
static unsigned n_loops;
static unsigned defers_run; /* atomic */

static unsigned worker_of(nea_req *req)
{
    for (unsigned i = 0; i < n_loops; i++) {
        if (nea_req_loop(req) == loops[i]) {
            return i;
        }
    }
    return 99;
}

/* GET /who: "w<worker>"; 500 unless nea_req_server gives the host's
 * handle (data, when not NULL), on every worker. */
static void who(nea_req *req, void *data)
{
    char *body = nea_printf(req, "w%u", worker_of(req));
    if (data != NULL && nea_req_server(req) != data) {
        nea_respond(req, 500, "text/plain", "not the host's handle", 21);
        return;
    }
    nea_respond(req, 200, "text/plain", body, strlen(body));
}

/* GET /alloc: takes 1 KiB of the arena, then like /who (arena faults make
 * it a 500). */
static void alloc_who(nea_req *req, void *data)
{
    memset(nea_alloc(req, 1024), 0xAA, 1024);
    who(req, data);
}

static void count_defer(void *arg)
{
    (void)arg;
    __atomic_fetch_add(&defers_run, 1u, __ATOMIC_RELAXED);
}

static void on_hold_timer(uv_timer_t *t)
{
    nea_req_run(t->data, who, NULL);
}

/* GET /hold/MS: holds its arena MS ms on a tracked timer, then like /who. */
static void hold(nea_req *req, void *data)
{
    uv_timer_t *t = nea_req_timer(req);
    (void)data;
    /* No cmocka assertion here: this runs on a worker thread. */
    if (nea_req_defer(req, count_defer, NULL) != 0) {
        abort();
    }
    t->data = req;
    uv_timer_start(t, on_hold_timer, strtoul(nea_req_path_tail(req), NULL, 10), 0);
}

/* GET /close-here: on worker 1 only, closes the whole server (worker 0's
 * handle) from this worker's thread; elsewhere 409. The close's result is
 * kept in close_rc (atomic). */
static h_fixture *close_fixture;
static int close_rc = 1;

static void close_here(nea_req *req, void *data)
{
    (void)data;
    if (worker_of(req) != 1) {
        nea_respond(req, 409, "text/plain", "elsewhere", 9);
        return;
    }
    __atomic_store_n(&close_rc, nea_server_close(close_fixture->srv, h_on_closed, close_fixture),
                     __ATOMIC_RELEASE);
    nea_respond(req, 200, "text/plain", "closing", 7);
}

/* The log sink is called from every worker thread: lock around the
 * shared capture. */
static uv_mutex_t log_lock;
static t_log log_all;

static void locked_sink(void *data, int level, const char *msg)
{
    (void)data;
    uv_mutex_lock(&log_lock);
    t_log_sink(&log_all, level, msg);
    uv_mutex_unlock(&log_lock);
}

static void w_config(nea_config *cfg, unsigned workers)
{
    h_config(cfg);
    cfg->workers = workers;
    cfg->arena_count = 16;
    cfg->log = locked_sink;
    cfg->log_data = NULL;
}

static bool log_has(const char *needle)
{
    bool has;
    uv_mutex_lock(&log_lock);
    has = t_log_has(&log_all, needle);
    uv_mutex_unlock(&log_lock);
    return has;
}

/* Creates the server and registers the routes, not yet listening. */
static void w_new(h_fixture *f, const nea_config *cfg)
{
    memset(f, 0, sizeof(*f));
    t_log_clear(&log_all);
    __atomic_store_n(&defers_run, 0u, __ATOMIC_RELAXED);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->cfg = *cfg;
    assert_int_equal(nea_server_new(&f->loop, &f->cfg, &f->srv), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/who", who, f->srv), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/alloc", alloc_who, NULL), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/hold/", hold, NULL), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/close-here", close_here, NULL), 0);
    n_loops = nea_server_plan(f->srv)->workers;
    assert_true(n_loops <= MAX_W);
    for (unsigned i = 0; i < n_loops; i++) {
        loops[i] = nea__server_worker(f->srv, i)->loop;
    }
}

static void w_listen(h_fixture *f)
{
    assert_int_equal(nea_server_listen(f->srv), 0);
    f->port = nea_server_port(f->srv);
    assert_true(f->port > 0);
}

static void w_start(h_fixture *f, unsigned workers)
{
    nea_config cfg;
    w_config(&cfg, workers);
    w_new(f, &cfg);
    w_listen(f);
}

static nea_stats worker_st(h_fixture *f, unsigned i)
{
    nea_stats st;
    assert_int_equal(nea_server_worker_stats(f->srv, i, &st), 0);
    return st;
}

/* Worker i's arenas, every class taken together. */
static nea_stats_class worker_arenas(h_fixture *f, unsigned i)
{
    nea_stats st = worker_st(f, i);
    return nea_stats_arenas(&st);
}

static bool all_idle(h_fixture *f)
{
    nea_stats st = h_st(f);
    return nea_stats_arenas(&st).in_use == 0 && st.connections_open == 0;
}

/* Once every worker is idle (unless the test closed already), h_stop:
 * close, wait for the callback, close the loop. */
static void w_stop(h_fixture *f)
{
    if (!f->close_called) {
        H_WAIT(f, all_idle(f));
    }
    h_stop(f);
}

/* One request on a fresh connection that asks to close; returns the worker
 * that answered (its "w<N>" body), or -1 when the status is not want. */
static int request_who(h_fixture *f, const char *path, int want)
{
    char raw[128];
    h_response r;
    int fd = h_connect(f), status;
    snprintf(raw, sizeof(raw), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
    h_sends(f, fd, raw);
    status = h_read(f, fd, &r, H_DEADLINE_MS);
    close(fd);
    if (status != want) {
        return -1;
    }
    return r.body_len == 2 && r.body[0] == 'w' ? r.body[1] - '0' : 99;
}

/* --- serving ---------------------------------------------------------------- */

static bool accepted_add_up(h_fixture *f, unsigned workers, uint64_t total)
{
    uint64_t sum = 0;
    for (unsigned i = 0; i < workers; i++) {
        sum += worker_st(f, i).accepted;
    }
    return sum == total && h_st(f).accepted == total && h_st(f).responses[2] == total;
}

static void test_every_worker_serves_and_stats_add_up(void **state)
{
    h_fixture f;
    unsigned served[3] = {0}, sent = 0, missing = 3;
    nea_stats st;
    (void)state;
    w_start(&f, 3);
    /* The kernel spreads connections over the three listening sockets:
     * within 300 connections each has had some (1 - (2/3)^300 odds). */
    while (missing > 0 && sent < 300) {
        int w = request_who(&f, "/who", 200);
        assert_true(w >= 0 && w < 3);
        sent++;
        if (served[w]++ == 0) {
            missing--;
        }
    }
    assert_int_equal(missing, 0);
    /* Each worker counted what it served; the sum is the whole. Snapshots
     * are at most one loop iteration old: wait for the last ones. */
    H_WAIT(&f, accepted_add_up(&f, 3, sent));
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(worker_st(&f, i).requests, served[i]);
        assert_int_equal(worker_arenas(&f, i).count, 16);
    }
    nea_server_stats(f.srv, &st);
    assert_int_equal(st.requests, sent);
    assert_int_equal(nea_stats_arenas(&st).count, 3 * 16);
    assert_int_equal(nea_server_worker_stats(f.srv, 3, &st), UV_EINVAL);
    w_stop(&f);
}

static void test_connections_are_dealt_round_robin(void **state)
{
    h_fixture f;
    unsigned served[3] = {0};
    (void)state;
    w_start(&f, 3);
    if (!f.srv->balance.attached) {
        /* No CAP_BPF here: the kernel hashes (the other tests cover that). */
        assert_true(log_has("reuseport hash"));
        w_stop(&f);
        skip();
    }
    assert_true(log_has("dealt round-robin"));
    /* 60 connections one after another: exactly 20 each (the kernel's hash
     * gets that about one run in a hundred). */
    for (int i = 0; i < 60; i++) {
        int w = request_who(&f, "/who", 200);
        assert_true(w >= 0 && w < 3);
        served[w]++;
    }
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(served[i], 20);
    }
    w_stop(&f);
}

static void test_routes_are_read_only_once_workers_run(void **state)
{
    h_fixture f;
    nea_config cfg;
    (void)state;
    w_config(&cfg, 2);
    w_new(&f, &cfg);
    /* Set before listen: every worker's copy of the route has it. */
    assert_int_equal(nea_server_route_timeout(f.srv, "GET", "/hold/", 1234), 0);
    w_listen(&f);
    for (unsigned i = 0; i < 2; i++) {
        const nea__router *r = &nea__server_worker(f.srv, i)->router;
        assert_int_equal(r->routes[2].response_ms, 1234);
        assert_string_equal(r->routes[2].path, "/hold/");
    }
    assert_int_equal(nea_server_route(f.srv, "GET", "/late", who, NULL), NEA_ESTATE);
    assert_true(log_has("workers are running"));
    assert_int_equal(nea_server_route_timeout(f.srv, "GET", "/hold/", 10), NEA_ESTATE);
    assert_int_equal(nea_server_listen(f.srv), NEA_ESTATE);
    w_stop(&f);
}

/* --- draining ----------------------------------------------------------------- */

static bool holding_on_every_worker(h_fixture *f, unsigned workers)
{
    for (unsigned i = 0; i < workers; i++) {
        if (worker_arenas(f, i).in_use == 0) {
            return false;
        }
    }
    return true;
}

/* Opens requests for path (one that holds its arena) one at a time until
 * every worker has one in flight (all 40 on one of two: 2^-39); returns
 * how many, their sockets in fds. */
static unsigned hold_on_every_worker(h_fixture *f, const char *path, int fds[40])
{
    unsigned n = 0;
    while (n < 40 && !holding_on_every_worker(f, 2)) {
        fds[n] = h_get(f, path);
        n++;
        H_WAIT(f, h_arenas(f).in_use == n);
    }
    assert_true(holding_on_every_worker(f, 2));
    return n;
}

static void test_drain_finishes_inflight_on_every_worker(void **state)
{
    h_fixture f;
    h_response r;
    int fds[40];
    unsigned n, seen = 0;
    char v[32];
    (void)state;
    w_start(&f, 2);
    n = hold_on_every_worker(&f, "/hold/1000", fds); /* held 1 s */
    h_close(&f);
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(h_read(&f, fds[i], &r, H_DEADLINE_MS), 200);
        assert_string_equal(h_header(&r, "connection", v, sizeof(v)), "close");
        seen |= 1u << (r.body[1] - '0');
        assert_true(h_closed(&f, fds[i], H_DEADLINE_MS));
        close(fds[i]);
    }
    assert_int_equal(seen, 3u); /* answered by worker 0 and by worker 1 */
    h_pump(&f, H_DEADLINE_MS, &f.closed);
    assert_true(f.closed);
    assert_int_equal(__atomic_load_n(&defers_run, __ATOMIC_RELAXED), n);
    w_stop(&f);
}

static void short_drain(nea_config *cfg)
{
    cfg->drain_timeout_ms = 100;
}

static void test_drain_deadline_cancels_on_every_worker(void **state)
{
    h_fixture f;
    nea_config cfg;
    int fds[40];
    unsigned n;
    (void)state;
    w_config(&cfg, 2);
    short_drain(&cfg);
    w_new(&f, &cfg);
    w_listen(&f);
    n = hold_on_every_worker(&f, "/hold/60000", fds);
    h_close(&f);
    h_pump(&f, H_DEADLINE_MS, &f.closed);
    assert_true(f.closed);
    /* Every held request was cancelled (its defer ran) and its connection
     * closed, on whichever worker it was. */
    assert_int_equal(__atomic_load_n(&defers_run, __ATOMIC_RELAXED), n);
    for (unsigned i = 0; i < n; i++) {
        assert_true(h_closed(&f, fds[i], H_DEADLINE_MS));
        close(fds[i]);
    }
    w_stop(&f);
}

/* --- a full worker ------------------------------------------------------------ */

static void one_slot(nea_config *cfg)
{
    cfg->max_connections = 1;
}

static bool shed_or_opened(h_fixture *f, uint64_t shed, unsigned open)
{
    nea_stats st = h_st(f);
    return st.shed_no_slot > shed || st.connections_open > open;
}

static void test_full_worker_answers_503_while_sibling_idles(void **state)
{
    h_fixture f;
    nea_config cfg;
    h_response r;
    char v[16];
    int held, full = -1;
    bool refused = false;
    (void)state;
    w_config(&cfg, 2);
    one_slot(&cfg);
    w_new(&f, &cfg);
    /* The kernel's hash, as without CAP_BPF: a full worker keeps getting
     * its share of new connections. */
    nea__fault_arm(&f.srv->fault, NEA__FAULT_BALANCE, 1, false);
    w_listen(&f);
    assert_false(f.srv->balance.attached);
    assert_true(log_has("reuseport hash"));
    /* One connection holds its worker's only slot (half a head). */
    held = h_connect(&f);
    h_sends(&f, held, "GET /who HTTP/1.1\r\n");
    H_WAIT(&f, h_st(&f).connections_open == 1);
    full = worker_st(&f, 0).connections_open == 1 ? 0 : 1;
    /* New connections go to either socket. One that lands on the full
     * worker is accepted and told 503 at once, while the other worker has
     * a free slot; one that lands on the idle worker is closed again. */
    for (int tries = 0; tries < 64 && !refused; tries++) {
        uint64_t shed = h_st(&f).shed_no_slot;
        int fd = h_connect(&f);
        H_WAIT(&f, shed_or_opened(&f, shed, 1));
        if (h_st(&f).shed_no_slot > shed) {
            assert_int_equal(h_read(&f, fd, &r, H_DEADLINE_MS), 503);
            assert_non_null(h_header(&r, "retry-after", v, sizeof(v)));
            assert_true(h_closed(&f, fd, H_DEADLINE_MS));
            assert_int_equal(worker_st(&f, (unsigned)full).shed_no_slot, 1);
            assert_int_equal(worker_st(&f, (unsigned)!full).connections_open, 0);
            refused = true;
        }
        close(fd);
        H_WAIT(&f, h_st(&f).connections_open == 1);
    }
    assert_true(refused);
    /* The held connection is still served. */
    h_sends(&f, held, "Host: x\r\n\r\n");
    assert_int_equal(h_read(&f, held, &r, H_DEADLINE_MS), 200);
    assert_int_equal(r.body[1] - '0', full);
    close(held);
    w_stop(&f);
}

static void test_full_worker_stops_competing(void **state)
{
    h_fixture f;
    nea_config cfg;
    h_response r;
    int held;
    unsigned full;
    (void)state;
    w_config(&cfg, 2);
    one_slot(&cfg);
    w_new(&f, &cfg);
    w_listen(&f);
    if (!f.srv->balance.attached) {
        w_stop(&f);
        skip(); /* no CAP_BPF: the test above covers the kernel's hash */
    }
    held = h_connect(&f);
    h_sends(&f, held, "GET /who HTTP/1.1\r\n");
    H_WAIT(&f, h_st(&f).connections_open == 1);
    full = worker_st(&f, 0).connections_open == 1 ? 0 : 1;
    /* Round-robin alone would deal every other connection to the full
     * worker (a 503 each); it is skipped while it has no free slot. */
    for (int i = 0; i < 10; i++) {
        assert_int_equal(request_who(&f, "/who", 200), (int)!full);
        H_WAIT(&f, h_st(&f).connections_open == 1);
    }
    assert_int_equal(h_st(&f).shed_no_slot, 0);
    /* Both full: the round-robin worker answers 503 at once. */
    {
        int other = h_connect(&f), fd;
        h_sends(&f, other, "GET /who HTTP/1.1\r\n");
        H_WAIT(&f, h_st(&f).connections_open == 2);
        fd = h_connect(&f);
        assert_int_equal(h_read(&f, fd, &r, H_DEADLINE_MS), 503);
        close(fd);
        close(other);
    }
    /* And once the slot is free again, that worker is dealt connections. */
    h_sends(&f, held, "Host: x\r\n\r\n");
    assert_int_equal(h_read(&f, held, &r, H_DEADLINE_MS), 200);
    close(held);
    H_WAIT(&f, h_st(&f).connections_open == 0);
    {
        unsigned seen = 0;
        for (int i = 0; i < 4; i++) {
            seen |= 1u << request_who(&f, "/who", 200);
            H_WAIT(&f, h_st(&f).connections_open == 0);
        }
        assert_int_equal(seen, 3u);
    }
    w_stop(&f);
}

/* --- the agent answers for the process ----------------------------------------- */

static unsigned agent_weight(h_fixture *f, char *line, size_t len)
{
    unsigned w = 0;
    int fd = s_connect(&f->loop, nea_server_agent_port(f->srv));
    assert_true(fd >= 0);
    assert_true(s_read_all(&f->loop, fd, line, len, H_DEADLINE_MS) > 0);
    close(fd);
    return sscanf(line, "up ready %u%%", &w) == 1 ? w : 1000;
}

static bool weight_in(h_fixture *f, unsigned lo, unsigned hi)
{
    char line[64];
    unsigned w;
    h_pump(f, 20, NULL);
    w = agent_weight(f, line, sizeof(line));
    return w >= lo && w <= hi;
}

static void test_agent_answers_for_every_worker(void **state)
{
    h_fixture f;
    nea_config cfg;
    int fds[40];
    unsigned n;
    char line[64];
    (void)state;
    w_config(&cfg, 2);
    cfg.agent_port = 0;
    cfg.agent_weight = 100;
    cfg.drain_timeout_ms = 200; /* the held requests are cancelled */
    w_new(&f, &cfg);
    w_listen(&f);
    assert_true(nea_server_agent_port(f.srv) > 0);
    H_WAIT(&f, weight_in(&f, 90, 100)); /* all free */
    /* Requests held on both workers: the free share is taken over the 32
     * arenas of the two (8 held: 75%), read from worker 1's published
     * counters on worker 0's thread. */
    n = hold_on_every_worker(&f, "/hold/60000", fds);
    while (n < 8) {
        fds[n] = h_get(&f, "/hold/60000");
        n++;
        H_WAIT(&f, h_arenas(&f).in_use == n);
    }
    H_WAIT(&f, weight_in(&f, 0, (32 - n) * 100 / 32 + 5));
    assert_true(agent_weight(&f, line, sizeof(line)) >= (32 - n) * 100 / 32 - 5);
    h_close(&f);
    assert_int_equal(agent_weight(&f, line, sizeof(line)), 1000);
    assert_non_null(strstr(line, "drain"));
    h_pump(&f, H_DEADLINE_MS, &f.closed);
    for (unsigned i = 0; i < n; i++) {
        close(fds[i]);
    }
    w_stop(&f);
}

/* --- per-route metrics summed over the workers ------------------------------- */

/* /who is the first route w_new registers: record 1. */
#define WHO_RECORD 1

/* GET /count: "w<worker> <requests>", the requests /who counted over every
 * worker, read with nea_server_route_stats on this worker's thread. */
static void count_who(nea_req *req, void *data)
{
    nea_route_stats rs;
    char *body;
    if (nea_server_route_stats(data, WHO_RECORD, &rs) != 0) {
        abort(); /* no cmocka assertion on a worker thread */
    }
    body = nea_printf(req, "w%u %llu", worker_of(req), (unsigned long long)rs.requests);
    nea_respond(req, 200, "text/plain", body, strlen(body));
}

/* GET /metrics: the process's Prometheus text, saying in X-Worker which
 * worker's thread wrote it. */
static void metrics_on(nea_req *req, void *data)
{
    static const char *const names[MAX_W] = {"0", "1", "2", "3"};
    unsigned w = worker_of(req);
    if (w >= MAX_W || nea_resp_header(req, "X-Worker", names[w]) != 0) {
        abort();
    }
    t_metrics(req, data);
}

static uint64_t who_requests(h_fixture *f)
{
    nea_route_stats rs;
    assert_int_equal(nea_server_route_stats(f->srv, WHO_RECORD, &rs), 0);
    assert_string_equal(rs.path, "/who");
    return rs.requests;
}

/* GET path on fresh connections until worker `worker` answers it (each
 * connection lands on either of two: 2^-200 odds of never). */
static void request_on(h_fixture *f, unsigned worker, const char *path, h_response *r)
{
    char raw[128], w[8];
    snprintf(raw, sizeof(raw), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
    for (int i = 0; i < 200; i++) {
        int fd = h_connect(f), status;
        h_sends(f, fd, raw);
        status = h_read(f, fd, r, H_DEADLINE_MS);
        close(fd);
        assert_int_equal(status, 200);
        if (r->body[0] == 'w' ? (unsigned)(r->body[1] - '0') == worker
                              : h_header(r, "X-Worker", w, sizeof(w)) != NULL &&
                                    (unsigned)(w[0] - '0') == worker) {
            return;
        }
    }
    fail_msg("worker %u never answered %s", worker, path);
}

/* The value of the first series of text starting with `series` + " ". */
static uint64_t series_value(const char *text, const char *series)
{
    char key[160];
    const char *at;
    snprintf(key, sizeof(key), "\n%s ", series);
    at = strstr(text, key);
    if (at == NULL) {
        fail_msg("no series %s", series);
    }
    return strtoull(at + strlen(key), NULL, 10);
}

#define WHO_COMPLETED                                                                              \
    "nea_route_requests_total{route=\"/who\",method=\"GET\",outcome=\"completed\"}"
#define WHO_DURATIONS "nea_route_duration_seconds_count{route=\"/who\",method=\"GET\"}"
#define WHO_INF "nea_route_duration_seconds_bucket{route=\"/who\",method=\"GET\",le=\"+Inf\"}"

/* /who's completed requests in a scrape, which must lie in [lo, hi], and
 * its duration histogram at most hi with +Inf equal to _count (the
 * counters of one record are read one by one, so across counters only
 * the upper bound holds while requests are being recorded). */
static uint64_t who_in_scrape(const h_response *r, uint64_t lo, uint64_t hi)
{
    uint64_t n = series_value(r->body, WHO_COMPLETED);
    assert_true(n >= lo && n <= hi);
    assert_true(series_value(r->body, WHO_DURATIONS) <= hi);
    assert_int_equal(series_value(r->body, WHO_INF), series_value(r->body, WHO_DURATIONS));
    return n;
}

static void promtool_accepts(const h_response *r)
{
    FILE *p;
    if (system("command -v promtool >/dev/null 2>&1") != 0) {
        fail_msg("promtool not found: install the Debian package prometheus "
                 "(scripts/install-deps.sh)");
    }
    p = popen("promtool check metrics", "w");
    assert_non_null(p);
    assert_int_equal(fwrite(r->body, 1, r->body_len, p), r->body_len);
    assert_int_equal(pclose(p), 0);
}

/* A client on its own thread: n GET /who on fresh connections with plain
 * blocking sockets (the test thread keeps running worker 0's loop). */
typedef struct who_load {
    int port;
    unsigned n;
    unsigned ok; /* atomic: answered 200 */
    bool done;   /* atomic */
} who_load;

static bool blocking_who(int port)
{
    static const char raw[] = "GET /who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    struct sockaddr_in a;
    struct timeval tv = {H_DEADLINE_MS / 1000, 0};
    char buf[512];
    size_t got = 0;
    ssize_t n = 1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    uv_ip4_addr("127.0.0.1", port, &a);
    if (fd < 0) {
        return false;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (const struct sockaddr *)&a, sizeof(a)) != 0 ||
        write(fd, raw, sizeof(raw) - 1) != (ssize_t)(sizeof(raw) - 1)) {
        close(fd);
        return false;
    }
    while (n > 0 && got < sizeof(buf) - 1) {
        n = read(fd, buf + got, sizeof(buf) - 1 - got);
        got += n > 0 ? (size_t)n : 0;
    }
    close(fd);
    buf[got] = '\0';
    return n == 0 && strncmp(buf, "HTTP/1.1 200 ", 13) == 0;
}

static void who_load_main(void *arg)
{
    who_load *l = arg;
    for (unsigned i = 0; i < l->n; i++) {
        if (blocking_who(l->port)) {
            __atomic_fetch_add(&l->ok, 1u, __ATOMIC_RELAXED);
        }
    }
    __atomic_store_n(&l->done, true, __ATOMIC_RELEASE);
}

static void test_metrics_sum_every_worker(void **state)
{
    static h_response r; /* 64 KiB of body */
    h_fixture f;
    nea_config cfg;
    unsigned served[2] = {0}, sent = 0, scrapes = 0;
    uint64_t last = 0, mine = 0;
    who_load load = {0};
    uv_thread_t client;
    (void)state;
    w_config(&cfg, 2);
    w_new(&f, &cfg);
    assert_int_equal(nea_server_route(f.srv, "GET", "/count", count_who, f.srv), 0);
    assert_int_equal(nea_server_route(f.srv, "GET", "/metrics", metrics_on, f.srv), 0);
    w_listen(&f);

    /* N requests spread over both workers. */
    while (sent < 300 && (sent < 20 || served[0] == 0 || served[1] == 0)) {
        int w = request_who(&f, "/who", 200);
        assert_true(w == 0 || w == 1);
        served[w]++;
        sent++;
    }
    assert_true(served[0] > 0 && served[1] > 0);
    /* Each is counted just after its response was written: wait for the
     * last, read on worker 0's thread (worker 1's record read across). */
    H_WAIT(&f, who_requests(&f) == sent);
    /* Worker 1 reads worker 0's records too: the whole process, exactly. */
    request_on(&f, 1, "/metrics", &r);
    assert_int_equal(who_in_scrape(&r, sent, sent), sent);
    promtool_accepts(&r);
    request_on(&f, 1, "/count", &r);
    assert_int_equal(strtoull(r.body + 3, NULL, 10), sent);

    /* Scrapes while both workers record: worker 1 reads worker 0's block
     * as this thread writes it (serving the client thread's requests on
     * worker 0's loop while it waits), this thread reads worker 1's. Each
     * reader sees some recent count, never a fall (each counter is read
     * coherently by one thread) and never an inconsistent histogram. */
    load.port = f.port;
    load.n = 150;
    assert_int_equal(uv_thread_create(&client, who_load_main, &load), 0);
    while (!__atomic_load_n(&load.done, __ATOMIC_ACQUIRE) || scrapes < 3) {
        uint64_t now;
        request_on(&f, 1, "/metrics", &r);
        now = who_in_scrape(&r, last, sent + load.n);
        last = now;
        now = who_requests(&f);
        assert_true(now >= mine && now <= sent + load.n);
        mine = now;
        if (scrapes++ == 0) {
            promtool_accepts(&r);
        }
    }
    assert_int_equal(uv_thread_join(&client), 0);
    assert_int_equal(__atomic_load_n(&load.ok, __ATOMIC_RELAXED), load.n);
    H_WAIT(&f, who_requests(&f) == sent + load.n);
    request_on(&f, 1, "/metrics", &r);
    assert_int_equal(who_in_scrape(&r, sent + load.n, sent + load.n), sent + load.n);
    request_on(&f, 0, "/metrics", &r);
    assert_int_equal(who_in_scrape(&r, sent + load.n, sent + load.n), sent + load.n);
    w_stop(&f);
}

/* --- fault injection ----------------------------------------------------------- */

static void test_fault_plan_is_per_worker(void **state)
{
    h_fixture f;
    nea_config cfg;
    nea_server *w1;
    unsigned ok = 0, failed = 0;
    (void)state;
    w_config(&cfg, 2);
    w_new(&f, &cfg);
    /* Every arena grant of worker 1 fails; worker 0 is untouched. Armed
     * before the threads start. */
    w1 = nea__server_worker(f.srv, 1);
    nea__fault_arm(&w1->fault, NEA__FAULT_ARENA, 1, true);
    w_listen(&f);
    for (int i = 0; i < 300 && (ok == 0 || failed == 0); i++) {
        int w = request_who(&f, "/alloc", 200);
        if (w == 0) {
            ok++;
        } else {
            /* Not 200: worker 1 (whose 500 body is the static one). */
            assert_int_equal(w, -1);
            failed++;
        }
    }
    assert_true(ok > 0 && failed > 0);
    H_WAIT(&f, h_st(&f).responses[5] == failed);
    assert_int_equal(worker_st(&f, 0).responses[5], 0);
    assert_int_equal(worker_st(&f, 0).responses[2], ok);
    assert_int_equal(worker_st(&f, 1).responses[5], failed);
    assert_int_equal(nea__fault_seen(&f.srv->fault, NEA__FAULT_ARENA), 0);
    w_stop(&f);
    /* Worker 1's counters died with the reservation; its requests were
     * counted above. */
}

/* --- lifecycle -------------------------------------------------------------------- */

static void test_close_without_listen(void **state)
{
    h_fixture f;
    nea_config cfg;
    (void)state;
    w_config(&cfg, 3);
    w_new(&f, &cfg);
    /* The threads never started: the workers close on this thread. */
    h_close(&f);
    w_stop(&f);
}

static void test_listen_failure_then_close(void **state)
{
    h_fixture f, g;
    nea_config cfg;
    (void)state;
    w_start(&f, 2);
    /* A second group on the same port without SO_REUSEPORT... */
    h_config(&cfg);
    cfg.port = f.port;
    cfg.log = locked_sink;
    memset(&g, 0, sizeof(g));
    assert_int_equal(uv_loop_init(&g.loop), 0);
    assert_int_equal(nea_server_new(&g.loop, &cfg, &g.srv), 0);
    assert_int_equal(nea_server_listen(g.srv), UV_EADDRINUSE);
    h_close(&g);
    w_stop(&g);
    /* ...and a group whose worker 1 cannot bind (fault): worker 0 stops
     * listening again, and the server closes cleanly. */
    w_config(&cfg, 2);
    w_new(&g, &cfg);
    nea__fault_arm(&nea__server_worker(g.srv, 1)->fault, NEA__FAULT_LISTEN, 1, false);
    assert_int_equal(nea_server_listen(g.srv), UV_EADDRINUSE);
    h_close(&g);
    w_stop(&g);
    assert_int_equal(request_who(&f, "/who", 200) >= 0, 1);
    w_stop(&f);
}

static bool run_ready;

static void on_run_ready(nea_server *s, void *data)
{
    (void)data;
    run_ready = nea_server_port(s) > 0 && nea_server_plan(s)->workers == 2;
    raise(SIGTERM); /* nea_run drains every worker and returns */
}

static void test_nea_run_with_workers_drains_on_sigterm(void **state)
{
    nea_config cfg;
    (void)state;
    w_config(&cfg, 2);
    run_ready = false;
    assert_int_equal(nea_run(&cfg, NULL, 0, on_run_ready, NULL), 0);
    assert_true(run_ready);
}

/* --- embedding: a host's own threads, one server each, one address -------------- */

typedef struct host_thread {
    uv_loop_t loop;
    uv_async_t stop;
    nea_server *srv;
    int port;
    bool closed;
} host_thread;

static void on_host_closed(nea_server *s, void *data)
{
    host_thread *h = data;
    (void)s;
    h->closed = true;
    uv_close((uv_handle_t *)&h->stop, NULL);
}

static void on_host_stop(uv_async_t *a)
{
    host_thread *h = a->data;
    assert_int_equal(nea_server_close(h->srv, on_host_closed, h), 0);
}

static void host_main(void *arg)
{
    host_thread *h = arg;
    uv_run(&h->loop, UV_RUN_DEFAULT);
}

static void test_embedding_servers_on_host_threads_share_an_address(void **state)
{
    h_fixture f;
    host_thread h;
    nea_config cfg;
    uv_thread_t tid;
    unsigned seen = 0;
    (void)state;
    /* The fixture's server on this thread, a second one on a thread the
     * "host" runs itself, both with reuse_port on one port. */
    w_config(&cfg, 1);
    cfg.reuse_port = 1;
    w_new(&f, &cfg);
    w_listen(&f);
    memset(&h, 0, sizeof(h));
    assert_int_equal(uv_loop_init(&h.loop), 0);
    cfg.port = f.port;
    assert_int_equal(nea_server_new(&h.loop, &cfg, &h.srv), 0);
    assert_int_equal(nea_server_route(h.srv, "GET", "/who", who, h.srv), 0);
    assert_int_equal(nea_server_listen(h.srv), 0);
    assert_int_equal(nea_server_port(h.srv), f.port);
    /* The second server's requests run on its loop: worker_of tells them
     * apart as "worker 1". */
    loops[1] = &h.loop;
    n_loops = 2;
    assert_int_equal(uv_async_init(&h.loop, &h.stop, on_host_stop), 0);
    h.stop.data = &h;
    assert_int_equal(uv_thread_create(&tid, host_main, &h), 0);
    for (int i = 0; i < 200 && seen != 3; i++) {
        int w = request_who(&f, "/who", 200);
        assert_true(w == 0 || w == 1);
        seen |= 1u << w;
    }
    assert_int_equal(seen, 3u);
    /* Each server closes on its own thread. */
    uv_async_send(&h.stop);
    uv_thread_join(&tid);
    assert_true(h.closed);
    assert_int_equal(uv_loop_close(&h.loop), 0);
    w_stop(&f);
}

/* A handler on worker 1 closes the server: the close is handed to worker
 * 0's loop (no handle of worker 0 is touched from worker 1's thread), runs
 * there, drains every worker and calls back exactly once. Run under TSan
 * in CI. */
static void test_close_from_another_workers_handler(void **state)
{
    h_fixture f;
    int got = 0;
    (void)state;
    w_start(&f, 2);
    close_fixture = &f;
    __atomic_store_n(&close_rc, 1, __ATOMIC_RELEASE);
    f.close_called = true;
    for (int i = 0; i < 200 && got != 200; i++) {
        char raw[] = "GET /close-here HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        h_response r;
        int fd = h_connect(&f);
        h_sends(&f, fd, raw);
        got = h_read(&f, fd, &r, H_DEADLINE_MS);
        close(fd);
    }
    assert_int_equal(got, 200);
    assert_int_equal(__atomic_load_n(&close_rc, __ATOMIC_ACQUIRE), 0);
    h_pump(&f, H_DEADLINE_MS, &f.closed);
    assert_true(f.closed);
    assert_int_equal(f.closed_calls, 1);
    h_stop(&f);
}

/* Two servers with two workers each on one address, in one process: the
 * second finds the reuseport group shared and detaches the first one's
 * round-robin program (which could only ever deal the first one's
 * sockets), so the kernel's hash gives each server its share. */
static void test_two_servers_with_workers_share_an_address(void **state)
{
    h_fixture f;
    host_thread h;
    nea_config cfg;
    uv_thread_t tid;
    unsigned got[MAX_W] = {0};
    (void)state;
    w_config(&cfg, 2);
    w_new(&f, &cfg);
    w_listen(&f);
    memset(&h, 0, sizeof(h));
    assert_int_equal(uv_loop_init(&h.loop), 0);
    cfg.port = f.port;
    assert_int_equal(nea_server_new(&h.loop, &cfg, &h.srv), 0);
    assert_int_equal(nea_server_route(h.srv, "GET", "/who", who, NULL), 0);
    /* Its workers answer "w2" and "w3". */
    loops[2] = &h.loop;
    loops[3] = nea__server_worker(h.srv, 1)->loop;
    n_loops = 4;
    assert_int_equal(nea_server_listen(h.srv), 0);
    assert_int_equal(nea_server_port(h.srv), f.port);
    assert_false(h.srv->balance.attached);
    assert_int_equal(uv_async_init(&h.loop, &h.stop, on_host_stop), 0);
    h.stop.data = &h;
    assert_int_equal(uv_thread_create(&tid, host_main, &h), 0);
    for (int i = 0; i < 200; i++) {
        int w = request_who(&f, "/who", 200);
        assert_true(w >= 0 && w < MAX_W);
        got[w]++;
    }
    /* At least a quarter each (the hash gives about half). */
    assert_true(got[0] + got[1] >= 50);
    assert_true(got[2] + got[3] >= 50);
    /* The first server saw it too, on its next look at the group. */
    H_WAIT(&f, !f.srv->balance.attached);
    uv_async_send(&h.stop);
    uv_thread_join(&tid);
    assert_true(h.closed);
    assert_int_equal(uv_loop_close(&h.loop), 0);
    w_stop(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_worker_serves_and_stats_add_up),
        cmocka_unit_test(test_connections_are_dealt_round_robin),
        cmocka_unit_test(test_routes_are_read_only_once_workers_run),
        cmocka_unit_test(test_drain_finishes_inflight_on_every_worker),
        cmocka_unit_test(test_drain_deadline_cancels_on_every_worker),
        cmocka_unit_test(test_full_worker_answers_503_while_sibling_idles),
        cmocka_unit_test(test_full_worker_stops_competing),
        cmocka_unit_test(test_agent_answers_for_every_worker),
        cmocka_unit_test(test_metrics_sum_every_worker),
        cmocka_unit_test(test_fault_plan_is_per_worker),
        cmocka_unit_test(test_close_without_listen),
        cmocka_unit_test(test_listen_failure_then_close),
        cmocka_unit_test(test_nea_run_with_workers_drains_on_sigterm),
        cmocka_unit_test(test_embedding_servers_on_host_threads_share_an_address),
        cmocka_unit_test(test_close_from_another_workers_handler),
        cmocka_unit_test(test_two_servers_with_workers_share_an_address),
    };
    uv_mutex_init(&log_lock);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
