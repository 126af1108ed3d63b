/*
 * test_ref.c - coming back to a request later (ref.c) over real sockets:
 * references that read as gone once the request was cancelled, also after
 * its arena serves another client; holds that keep the arena past a cancel
 * until released exactly once; thread-pool work whose done runs exactly
 * once (with NULL after a cancel) while the arena stays reserved, through
 * a client reset, a 504 and a drain; and the thread rule (death tests).
 *
 * The "host" here keeps its timers outside libnea (test memory, not the
 * arena, not tracked), as a database client's callbacks would be.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "child.h"
#include "e2e.h"

/* --- the host: callbacks libnea does not run ------------------------------------ */

#define LATER_MAX 4

typedef struct later {
    uv_timer_t timer; /* the host's own, not in the arena, not tracked */
    bool used;
    unsigned idx;
    nea_ref ref;
    nea_hold hold;
    bool is_hold;
} later;

static later laters[LATER_MAX];
static unsigned later_nulls;    /* nea_ref_req said the request is gone */
static unsigned later_answers;  /* answered through a reference */
static unsigned release_nulls;  /* nea_hold_release called fn with NULL */
static unsigned release_answers;
static unsigned seq;            /* orders the events below */
static unsigned defer_seq, done_seq, release_seq;
static unsigned defers;

static void on_defer(void *arg)
{
    (void)arg;
    defers++;
    defer_seq = ++seq;
}

static void answer_later(nea_req *req, void *arg)
{
    later *l = arg;
    char *body = nea_printf(req, "later-%u", l->idx);
    later_answers++;
    assert_int_equal(nea_respond(req, 200, "text/plain", body, strlen(body)), 0);
}

static void on_release(nea_req *req, void *arg)
{
    later *l = arg;
    release_seq = ++seq;
    if (req == NULL) {
        release_nulls++;
        return;
    }
    release_answers++;
    (void)l;
    assert_int_equal(nea_respond(req, 200, "text/plain", "held", 4), 0);
}

static void on_later(uv_timer_t *t)
{
    later *l = t->data;
    if (l->is_hold) {
        nea_hold_release(l->hold, on_release, l);
    } else {
        nea_req *req = nea_ref_req(l->ref);
        if (req == NULL) {
            later_nulls++;
        } else {
            nea_req_run(req, answer_later, l);
        }
    }
    l->used = false;
}

static later *later_start(unsigned ms)
{
    for (unsigned i = 0; i < LATER_MAX; i++) {
        later *l = &laters[i];
        if (!l->used) {
            l->used = true;
            l->idx = i;
            l->timer.data = l;
            uv_timer_start(&l->timer, on_later, ms, 0);
            return l;
        }
    }
    fail_msg("no free host timer");
    return NULL;
}

static unsigned ms_of(nea_req *req)
{
    return (unsigned)strtoul(nea_req_path_tail(req), NULL, 10);
}

/* GET /later/MS: keeps a reference, answers from a host timer. */
static void r_later(nea_req *req, void *d)
{
    later *l;
    (void)d;
    assert_int_equal(nea_req_defer(req, on_defer, NULL), 0);
    l = later_start(ms_of(req));
    l->is_hold = false;
    l->ref = nea_req_ref(req);
    nea_req_keep(req);
}

/* GET /hold/MS: holds the request, releases from a host timer. */
static void r_hold(nea_req *req, void *d)
{
    later *l;
    (void)d;
    assert_int_equal(nea_req_defer(req, on_defer, NULL), 0);
    l = later_start(ms_of(req));
    l->is_hold = true;
    l->hold = nea_req_hold(req);
}


/* --- thread-pool work --------------------------------------------------------- */

typedef struct job {
    unsigned ms;
    char pattern[64];
    int worked;
} job;

static volatile int jobs_started;
static unsigned done_calls, done_nulls;
static bool pattern_ok;

static void do_job(void *arg)
{
    job *j = arg;
    __atomic_fetch_add(&jobs_started, 1, __ATOMIC_SEQ_CST);
    uv_sleep(j->ms);
    j->worked = 1;
}

static void job_done(nea_req *req, void *arg)
{
    job *j = arg;
    char want[64];
    memset(want, 'j', sizeof(want));
    done_calls++;
    done_seq = ++seq;
    /* The arena stayed reserved: arg is intact, even after a cancel. */
    pattern_ok = j->worked == 1 && memcmp(j->pattern, want, sizeof(want)) == 0;
    if (req == NULL) {
        done_nulls++;
        return;
    }
    assert_int_equal(nea_respond(req, 200, "text/plain", "worked", 6), 0);
}

/* GET /work/MS: a job of MS ms on the thread pool. */
static void r_work(nea_req *req, void *d)
{
    job *j = nea_alloc(req, sizeof(*j));
    (void)d;
    j->ms = ms_of(req);
    j->worked = 0;
    memset(j->pattern, 'j', sizeof(j->pattern));
    assert_int_equal(nea_req_defer(req, on_defer, NULL), 0);
    assert_int_equal(nea_req_work(req, do_job, job_done, j), 0);
}

/* GET /work-errors: nea_req_work's refusals, as "a b". */
static void r_work_errors(nea_req *req, void *d)
{
    int a = nea_req_work(req, NULL, job_done, NULL);
    int b = nea_req_work(req, do_job, NULL, NULL);
    char *body = nea_printf(req, "%d %d", a, b);
    (void)d;
    assert_int_equal(nea_respond(req, 200, "text/plain", body, strlen(body)), 0);
}

/* GET /mine/MS: another client's request, answered "mine" from a tracked
 * timer after MS ms. */
static void answer_mine(nea_req *req, void *arg)
{
    (void)arg;
    assert_int_equal(nea_respond(req, 200, "text/plain", "mine", 4), 0);
}

static void mine_timer(uv_timer_t *t)
{
    nea_req *req = t->data; /* a tracked timer's request: valid while it runs */
    nea_req_run(req, answer_mine, NULL);
}

static void r_mine(nea_req *req, void *d)
{
    uv_timer_t *t = nea_req_timer(req);
    (void)d;
    t->data = req;
    uv_timer_start(t, mine_timer, ms_of(req), 0);
}

/* GET /keep-ref: answers at once and keeps its reference for the test. */
static nea_ref kept_ref;

static void r_keep_ref(nea_req *req, void *d)
{
    (void)d;
    kept_ref = nea_req_ref(req);
    assert_true(nea_ref_req(kept_ref) == req); /* live: it is itself */
    assert_int_equal(nea_respond(req, 200, "text/plain", "ok", 2), 0);
}

/* --- fixture ---------------------------------------------------------------- */

static void start(void **state, void (*tweak)(nea_config *))
{
    h_fixture *f;
    h_test_start(state, tweak);
    f = *state;
    memset(laters, 0, sizeof(laters));
    for (unsigned i = 0; i < LATER_MAX; i++) {
        assert_int_equal(uv_timer_init(&f->loop, &laters[i].timer), 0);
    }
    later_nulls = later_answers = release_nulls = release_answers = 0;
    seq = defer_seq = done_seq = release_seq = defers = 0;
    done_calls = done_nulls = 0;
    jobs_started = 0;
    pattern_ok = false;
    memset(&kept_ref, 0, sizeof(kept_ref));
    assert_int_equal(nea_server_route(f->srv, "GET", "/later/", r_later, NULL), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/hold/", r_hold, NULL), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/mine/", r_mine, NULL), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/work/", r_work, NULL), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/work-errors", r_work_errors, NULL), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/keep-ref", r_keep_ref, NULL), 0);
}

static int teardown(void **state)
{
    for (unsigned i = 0; i < LATER_MAX; i++) {
        uv_close((uv_handle_t *)&laters[i].timer, NULL);
    }
    return h_test_teardown(state);
}

static void one_arena(nea_config *cfg)
{
    cfg->arena_count = 1;
    cfg->queue_timeout_ms = 2000;
    cfg->scrub = NEA_SCRUB_POISON;
}

static void poison(nea_config *cfg)
{
    cfg->scrub = NEA_SCRUB_POISON;
}

static void quick_response(nea_config *cfg)
{
    cfg->scrub = NEA_SCRUB_POISON;
    cfg->response_timeout_ms = 100;
}

static void quick_drain(nea_config *cfg)
{
    cfg->drain_timeout_ms = 50;
}

/* --- references ---------------------------------------------------------------- */

static void test_ref_answers_a_live_request(void **state)
{
    h_fixture *f;
    h_response r;
    int fd;
    start(state, NULL);
    f = *state;
    fd = h_get(f, "/later/20");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "later-0");
    assert_int_equal(later_answers, 1);
    assert_int_equal(later_nulls, 0);
    close(fd);
    assert_true(h_arenas_settle(f));
    assert_int_equal(defers, 1);
}

/* The kept reference of a request whose client left must not reach the
 * next request in the same arena (the only one here). */
static void test_ref_of_a_cancelled_request_never_reaches_the_next_client(void **state)
{
    h_fixture *f;
    h_response r;
    int a, b;
    start(state, one_arena);
    f = *state;
    a = h_get(f, "/later/200");
    H_WAIT(f, h_arenas_in_use(f) == 1);
    s_reset(a); /* client A is gone: its request is cancelled, its arena returns */
    H_WAIT(f, h_arenas_in_use(f) == 0);
    assert_int_equal(defers, 1);
    b = h_get(f, "/mine/600"); /* B now holds the same arena */
    H_WAIT(f, h_arenas_in_use(f) == 1);
    H_WAIT(f, later_nulls == 1); /* A's host callback came back: nothing to answer */
    assert_int_equal(later_answers, 0);
    assert_int_equal(h_read(f, b, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "mine"); /* B got its own answer, not A's */
    close(b);
}

static void test_ref_is_null_once_the_request_ended(void **state)
{
    h_fixture *f;
    h_response r;
    nea_ref zero;
    int fd;
    start(state, NULL);
    f = *state;
    memset(&zero, 0, sizeof(zero));
    assert_null(nea_ref_req(zero));
    fd = h_get(f, "/keep-ref");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_true(h_arenas_settle(f));
    assert_null(nea_ref_req(kept_ref));
    /* Another request in the same arena does not revive it. */
    h_sends(f, fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_null(nea_ref_req(kept_ref));
    close(fd);
}

/* --- holds -------------------------------------------------------------------- */

static void test_hold_answers_a_live_request(void **state)
{
    h_fixture *f;
    h_response r;
    int fd;
    start(state, poison);
    f = *state;
    fd = h_get(f, "/hold/20");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "held");
    assert_int_equal(release_answers, 1);
    close(fd);
    assert_true(h_arenas_settle(f));
    assert_int_equal(defers, 1);
    assert_true(defer_seq > release_seq);
}

static void test_hold_keeps_the_arena_past_a_cancel(void **state)
{
    h_fixture *f;
    int fd;
    start(state, poison);
    f = *state;
    fd = h_get(f, "/hold/300");
    H_WAIT(f, h_arenas_in_use(f) == 1);
    s_reset(fd);
    H_WAIT(f, h_st(f).connections_open == 0); /* the connection is gone */
    assert_int_equal(h_arenas_in_use(f), 1);  /* the hold keeps the arena */
    assert_int_equal(defers, 0);              /* and its defers wait */
    /* Reserved, but no longer live: a reference (the hold's own too) reads
     * it as gone, so host code cannot answer a client that left. */
    assert_null(nea_ref_req(laters[0].hold.ref));
    H_WAIT(f, release_nulls == 1);
    assert_int_equal(release_answers, 0);
    assert_true(h_arenas_settle(f));
    assert_int_equal(defers, 1);
    assert_true(defer_seq > release_seq); /* defers after the release */
}

/* --- thread-pool work ---------------------------------------------------------- */

static void test_work_answers_from_done(void **state)
{
    h_fixture *f;
    h_response r;
    int fd;
    start(state, poison);
    f = *state;
    fd = h_get(f, "/work/10");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "worked");
    assert_int_equal(done_calls, 1);
    assert_int_equal(done_nulls, 0);
    assert_true(pattern_ok);
    close(fd);
    assert_true(h_arenas_settle(f));
    assert_true(defer_seq > done_seq);
}

static void test_work_client_leaves_mid_job(void **state)
{
    h_fixture *f;
    int fd;
    start(state, poison);
    f = *state;
    fd = h_get(f, "/work/300");
    H_WAIT(f, __atomic_load_n(&jobs_started, __ATOMIC_SEQ_CST) == 1);
    s_reset(fd);
    H_WAIT(f, h_st(f).connections_open == 0);
    assert_int_equal(done_calls, 0);
    assert_int_equal(h_arenas_in_use(f), 1); /* reserved while the job runs */
    assert_int_equal(defers, 0);
    H_WAIT(f, done_calls == 1);
    assert_int_equal(done_nulls, 1);
    assert_true(pattern_ok); /* not poisoned, not reused under the job */
    assert_true(h_arenas_settle(f));
    assert_int_equal(defers, 1);
    assert_true(defer_seq > done_seq);
}

static void test_work_past_the_response_deadline(void **state)
{
    h_fixture *f;
    h_response r;
    int fd;
    start(state, quick_response);
    f = *state;
    fd = h_get(f, "/work/400");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 504);
    assert_int_equal(done_calls, 0);
    H_WAIT(f, done_calls == 1);
    assert_int_equal(done_nulls, 1);
    assert_true(pattern_ok);
    assert_true(h_arenas_settle(f));
    /* The connection carries on. */
    h_sends(f, fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    close(fd);
}

static void test_work_errors(void **state)
{
    h_fixture *f;
    h_response r;
    char want[32];
    int fd;
    start(state, NULL);
    f = *state;
    fd = h_get(f, "/work-errors");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    snprintf(want, sizeof(want), "%d %d", UV_EINVAL, UV_EINVAL);
    assert_string_equal(r.body, want);
    assert_int_equal(done_calls, 0);
    close(fd);
}

/* After drain_timeout_ms the request is cancelled, but the close callback
 * waits for the job's done. */
static void test_drain_waits_for_a_running_job(void **state)
{
    h_fixture *f;
    int fd;
    start(state, quick_drain);
    f = *state;
    fd = h_get(f, "/work/300");
    H_WAIT(f, __atomic_load_n(&jobs_started, __ATOMIC_SEQ_CST) == 1);
    h_close(f);
    H_WAIT(f, h_st(f).connections_open == 0); /* cancelled at the drain deadline */
    assert_false(f->closed);
    assert_int_equal(done_calls, 0);
    H_WAIT(f, f->closed);
    assert_int_equal(done_calls, 1);
    assert_int_equal(done_nulls, 1);
    assert_int_equal(defers, 1);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_ref_answers_a_live_request, teardown),
        cmocka_unit_test_teardown(test_ref_of_a_cancelled_request_never_reaches_the_next_client,
                                  teardown),
        cmocka_unit_test_teardown(test_ref_is_null_once_the_request_ended, teardown),
        cmocka_unit_test_teardown(test_hold_answers_a_live_request, teardown),
        cmocka_unit_test_teardown(test_hold_keeps_the_arena_past_a_cancel, teardown),
        cmocka_unit_test_teardown(test_work_answers_from_done, teardown),
        cmocka_unit_test_teardown(test_work_client_leaves_mid_job, teardown),
        cmocka_unit_test_teardown(test_work_past_the_response_deadline, teardown),
        cmocka_unit_test_teardown(test_work_errors, teardown),
        cmocka_unit_test_teardown(test_drain_waits_for_a_running_job, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
