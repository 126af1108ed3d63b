/*
 * test_load.c - CPU shedding (load.c, decided in admission.c) over real
 * sockets: a loop that stays busier than overload_target_ms starts to shed
 * with 503 within a per-iteration budget, never sheds an exempt route, and
 * stops once the load is gone; with the target at 0 it never sheds.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "e2e.h"

/* --- CPU shedding ------------------------------------------------------------ */

static void busy_ms(unsigned ms)
{
    uint64_t until = uv_hrtime() + (uint64_t)ms * 1000000u;
    while (uv_hrtime() < until) {
    }
}

static void r_spin2(nea_req *req, void *d)
{
    (void)d;
    busy_ms(2);
    nea_respond(req, 200, "text/plain", "spun", 4);
}

static void r_health(nea_req *req, void *d)
{
    (void)d;
    nea_respond(req, 200, "text/plain", "ok", 2);
}

static void fast_overload(nea_config *cfg)
{
    cfg->max_connections = 64;
    cfg->arena_count = 40;
    cfg->overload_target_ms = 5;
    cfg->overload_interval_ms = 50;
    cfg->overload_hold_ms = 300;
}

enum { BURST = 30 };

/* Writes one request on each of the first n sockets before the server runs,
 * so one loop iteration finds them all ready; then reads every answer.
 * Returns how many were 200 and 503 (other statuses fail the test). */
static void burst(h_fixture *f, int *fd, int n, const char *const *paths, unsigned *ok,
                  unsigned *shed)
{
    h_response r;
    *ok = *shed = 0;
    for (int i = 0; i < n; i++) {
        char req[128];
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", paths[i]);
        assert_int_equal(write(fd[i], req, strlen(req)), (ssize_t)strlen(req));
    }
    for (int i = 0; i < n; i++) {
        int st = h_read(f, fd[i], &r, H_DEADLINE_MS);
        if (st == 200) {
            (*ok)++;
        } else {
            assert_int_equal(st, 503);
            assert_non_null(strstr(r.head, "Retry-After: 1"));
            /* A CPU shed of a request without a body keeps the connection:
             * a reconnect would cost more than the refusal saved. */
            assert_null(strstr(r.head, "Connection: close"));
            (*shed)++;
        }
    }
}

static bool not_shedding(h_fixture *f)
{
    nea_stats st;
    h_stats(f, &st);
    return st.shedding == 0;
}

static void test_cpu_shedding_starts_spares_exempt_and_stops(void **state)
{
    const char *paths[BURST + 1];
    int fd[BURST + 1];
    unsigned ok, shed, health_ok = 0, seen_shed = 0;
    nea_stats st;
    h_fixture *f;
    h_response r;

    h_test_start(state, fast_overload);
    f = *state;
    assert_int_equal(nea_server_route(f->srv, "GET", "/spin2", r_spin2, NULL), 0);
    assert_int_equal(
        nea_server_route_flags(f->srv, "GET", "/health", r_health, NULL, NEA_ROUTE_EXEMPT), 0);
    for (int i = 0; i <= BURST; i++) {
        fd[i] = h_connect(f);
        paths[i] = i == BURST ? "/health" : "/spin2";
    }
    /* Two bursts keep every iteration busier than the target for longer
     * than the interval (each is BURST x 2 ms = 60 ms): shedding starts. */
    for (int round = 0; round < 4; round++) {
        burst(f, fd, BURST + 1, paths, &ok, &shed);
        seen_shed += shed;
        h_stats(f, &st);
        if (st.shedding) {
            break;
        }
    }
    assert_int_equal(st.shedding, 1);
    /* Shedding: an iteration serves about a target's worth and answers the
     * rest 503 at once; the exempt route is never shed. */
    for (int round = 0; round < 3; round++) {
        burst(f, fd, BURST + 1, paths, &ok, &shed);
        seen_shed += shed;
        print_message("shedding round %d: %u x 200, %u x 503\n", round, ok, shed);
        assert_true(ok >= 2);    /* the health check and the first request */
        assert_true(shed >= 10); /* most of the 60 ms of work */
        assert_true(ok + shed == BURST + 1);
        health_ok++;
    }
    h_stats(f, &st);
    assert_true(st.shed_cpu >= 30);
    /* One 503 per refused request: the kept connection goes on with the
     * next request, the refused head is not read again. */
    assert_int_equal(st.shed_cpu, seen_shed);
    assert_int_equal(nea_stats_shed(&st), seen_shed); /* and no 503 for any other cause */
    assert_int_equal(health_ok, 3);
    /* The load is gone: shedding stops after the hold time, once. */
    H_WAIT(f, not_shedding(f));
    h_stats(f, &st);
    assert_int_equal(st.shed_transitions, 2);
    h_sends(f, fd[0], "GET /spin2 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, fd[0], &r, H_DEADLINE_MS), 200);
    for (int i = 0; i <= BURST; i++) {
        close(fd[i]);
    }
}

static void no_cpu_shedding(nea_config *cfg)
{
    fast_overload(cfg);
    cfg->overload_target_ms = 0;
}

static void test_cpu_shedding_off(void **state)
{
    const char *paths[BURST];
    int fd[BURST];
    unsigned ok, shed;
    nea_stats st;
    h_fixture *f;

    h_test_start(state, no_cpu_shedding);
    f = *state;
    assert_int_equal(nea_server_route(f->srv, "GET", "/spin2", r_spin2, NULL), 0);
    for (int i = 0; i < BURST; i++) {
        fd[i] = h_connect(f);
        paths[i] = "/spin2";
    }
    for (int round = 0; round < 4; round++) {
        burst(f, fd, BURST, paths, &ok, &shed);
        assert_int_equal(shed, 0);
    }
    h_stats(f, &st);
    assert_int_equal(st.shedding, 0);
    assert_int_equal(st.shed_cpu, 0);
    for (int i = 0; i < BURST; i++) {
        close(fd[i]);
    }
}

/* --- no onset: a step of load is refused from its first request ------------- */

/* Sends one request on each of fd[0 .. n) at once, then runs the loop and
 * polls them all, noting when each answer's status arrived (ms after the
 * send) and what it was. */
static void timed_burst(h_fixture *f, int *fd, int n, const char *const *paths, int *status,
                        double *ms)
{
    uint64_t t0 = uv_hrtime();
    int left = n;
    for (int i = 0; i < n; i++) {
        char req[128];
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", paths[i]);
        assert_int_equal(write(fd[i], req, strlen(req)), (ssize_t)strlen(req));
        status[i] = 0;
    }
    while (left > 0 && uv_hrtime() - t0 < (uint64_t)H_DEADLINE_MS * 1000000u) {
        h_step(f, 1);
        for (int i = 0; i < n; i++) {
            char buf[4096];
            ssize_t got;
            if (status[i] != 0 || (got = recv(fd[i], buf, sizeof(buf) - 1, MSG_DONTWAIT)) <= 0) {
                continue;
            }
            buf[got] = '\0';
            status[i] = atoi(buf + 9);
            ms[i] = (double)(uv_hrtime() - t0) / 1e6;
            left--;
        }
    }
    assert_int_equal(left, 0);
}

static void step_config(nea_config *cfg)
{
    cfg->max_connections = 64;
    cfg->arena_count = 40;
    cfg->overload_target_ms = 5; /* the defaults for the rest */
}

/* A server that was serving lightly gets 30 requests of 2 ms of CPU each,
 * and a health check, all at once (60 ms of work): what it admits waits
 * about the target, not the whole burst; what it refuses is told at once;
 * the health check is answered within a budget. Before the budget and the
 * prediction, the first burst ran whole (the last request 60 ms late)
 * while shedding waited for overload_interval_ms of overloaded
 * iterations. */
static void test_step_is_refused_from_its_first_request(void **state)
{
    enum { N = 30 };
    const char *paths[N + 1];
    int fd[N + 1], status[N + 1];
    double ms[N + 1], ok_max = 0, shed_max = 0;
    unsigned ok = 0, shed = 0;
    h_fixture *f;
    h_response r;

    h_test_start(state, step_config);
    f = *state;
    assert_int_equal(nea_server_route(f->srv, "GET", "/spin2", r_spin2, NULL), 0);
    assert_int_equal(
        nea_server_route_flags(f->srv, "GET", "/health", r_health, NULL, NEA_ROUTE_EXEMPT), 0);
    for (int i = 0; i <= N; i++) {
        fd[i] = h_connect(f);
        paths[i] = i == N ? "/health" : "/spin2";
    }
    /* Light load first: one request at a time. */
    for (int i = 0; i < 5; i++) {
        h_sends(f, fd[i], "GET /spin2 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_int_equal(h_read(f, fd[i], &r, H_DEADLINE_MS), 200);
    }
    timed_burst(f, fd, N + 1, paths, status, ms);
    for (int i = 0; i < N; i++) {
        if (status[i] == 200) {
            ok++;
            ok_max = ms[i] > ok_max ? ms[i] : ok_max;
        } else {
            assert_int_equal(status[i], 503);
            shed++;
            shed_max = ms[i] > shed_max ? ms[i] : shed_max;
        }
    }
    print_message("burst of %d x 2 ms: %u x 200 (last %.1f ms), %u x 503 (last %.1f ms), "
                  "health %.1f ms\n",
                  N, ok, ok_max, shed, shed_max, ms[N]);
    /* Structure first: most of the burst is refused, not run (before, all
     * 30 ran). Then time, with room for a loaded machine (sanitizers,
     * parallel tests): the whole burst takes 60 ms of handlers, so before
     * the health check and the last admitted request came after 60 ms at
     * the least; now after a budget or a few. */
    assert_int_equal(status[N], 200);
    assert_true(shed >= N / 2);
    assert_true(ok >= 2);
    assert_true(ms[N] < 40.0);
    assert_true(ok_max < 40.0);
    assert_true(shed_max < 40.0);
    for (int i = 0; i <= N; i++) {
        close(fd[i]);
    }
}

/* --- a queue of CPU work yields to the loop ---------------------------------- */

/* A check handle counts loop iterations; each /spin2 run notes the iteration
 * it ran in, so the test sees how many handlers one iteration ran. */
static uv_check_t iter_check;
static unsigned iteration, runs_this_iteration, run_iteration, max_runs_per_iteration;
static bool iter_closed;

static void on_iteration(uv_check_t *h)
{
    (void)h;
    iteration++;
}

static void on_iter_closed(uv_handle_t *h)
{
    (void)h;
    iter_closed = true;
}

static void r_spin2_counted(nea_req *req, void *d)
{
    if (run_iteration != iteration) {
        run_iteration = iteration;
        runs_this_iteration = 0;
    }
    if (++runs_this_iteration > max_runs_per_iteration) {
        max_runs_per_iteration = runs_this_iteration;
    }
    r_spin2(req, d);
}

static void one_arena_long_queue(nea_config *cfg)
{
    cfg->arena_count = 1;
    cfg->queue_timeout_ms = 5000;
    cfg->overload_target_ms = 0; /* no shedding: only the hand-off is tested */
}

static void test_queue_of_cpu_work_yields_to_the_loop(void **state)
{
    enum { N = 10 };
    h_fixture *f;
    h_response r;
    int a, fd[N];

    h_test_start(state, one_arena_long_queue);
    f = *state;
    assert_int_equal(nea_server_route(f->srv, "GET", "/spin2", r_spin2_counted, NULL), 0);
    a = h_get(f, "/sleep/100");
    H_WAIT(f, h_arenas(f).in_use == 1);
    for (int i = 0; i < N; i++) {
        fd[i] = h_get(f, "/spin2");
    }
    H_WAIT(f, h_st(f).queue_length == N);
    /* When the sleeper's arena returns, N x 2 ms of handlers wait for it; the
     * budget (1 ms of handler time per iteration) lets one run per iteration,
     * not the whole queue in one. */
    uv_check_init(&f->loop, &iter_check);
    uv_check_start(&iter_check, on_iteration);
    iteration = 1;
    run_iteration = runs_this_iteration = max_runs_per_iteration = 0;
    assert_int_equal(h_read(f, a, &r, H_DEADLINE_MS), 200);
    for (int i = 0; i < N; i++) {
        assert_int_equal(h_read(f, fd[i], &r, H_DEADLINE_MS), 200);
    }
    iter_closed = false;
    uv_close((uv_handle_t *)&iter_check, on_iter_closed);
    H_WAIT(f, iter_closed);
    print_message("most /spin2 handlers run in one loop iteration: %u of %d\n",
                  max_runs_per_iteration, N);
    assert_int_equal(max_runs_per_iteration, 1);
    close(a);
    for (int i = 0; i < N; i++) {
        close(fd[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_cpu_shedding_starts_spares_exempt_and_stops,
                                  h_test_teardown),
        cmocka_unit_test_teardown(test_cpu_shedding_off, h_test_teardown),
        cmocka_unit_test_teardown(test_step_is_refused_from_its_first_request, h_test_teardown),
        cmocka_unit_test_teardown(test_queue_of_cpu_work_yields_to_the_loop, h_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
