/*
 * test_oom.c - the out-of-memory trampoline: unwinding, incident logging,
 * defers, nested protected frames, tracked handles, the arena string helpers,
 * and an SQLite-style fault-injection sweep over a realistic handler.
 *
 * Requests are made without sockets: an arena from the server's pool, a
 * request opened in it (req->conn stays NULL, so an unwind answers nothing
 * and only counts stats.oom_500), handler code run through nea__req_call, then
 * nea__req_end and uv_run for tracked handles to finish closing. Handler code
 * records what it saw in plain structs; the assertions run after it returned,
 * never inside a protected frame.
 */
#include "server.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"

#define ARENA ((size_t)16 * KIB)

/* --- fixture: a server on its own loop, log captured ------------------------ */

static int start(void **state, int scrub)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    unit_config(&f->cfg, f);
    f->cfg.arena_size = ARENA;
    f->cfg.scrub = scrub;
    assert_int_equal(nea_server_new(&f->loop, &f->cfg, &f->srv), 0);
    f->log_count = 0;
    f->log_all[0] = '\0';
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return start(state, NEA_SCRUB_NONE);
}

static int setup_zero(void **state)
{
    return start(state, NEA_SCRUB_ZERO);
}

static int teardown(void **state)
{
    fixture *f = *state;
    nea__fault_arm(&f->srv->fault, NEA__FAULT_ARENA, 0, false);
    unit_stop(f);
    return 0;
}

/* Opens a request, runs fn in its outermost frame, ends it. */
static void run_req(fixture *f, void (*fn)(nea_req *, void *), void *arg)
{
    nea_req *req = open_req(f);
    nea__req_call(req, fn, arg);
    end_req(f, req);
}

static bool contains(const char *hay, const char *needle)
{
    if (strstr(hay, needle) == NULL) {
        print_error("\"%s\" does not contain \"%s\"\n", hay, needle);
        return false;
    }
    return true;
}

/* --- defers that record their order ----------------------------------------- */

typedef struct order {
    int seq[16];
    int n;
    int ran[16]; /* per id */
} order;

typedef struct defer_arg {
    order *o;
    int id;
} defer_arg;

static void record(void *arg)
{
    defer_arg *d = arg;
    d->o->ran[d->id]++;
    if (d->o->n < 16) {
        d->o->seq[d->o->n++] = d->id;
    }
}

/* --- unwinding ------------------------------------------------------------- */

typedef struct unwind_probe {
    int before, after;
    size_t used_at_failure;
    size_t ask;
} unwind_probe;

static void h_too_big(nea_req *req, void *arg)
{
    unwind_probe *p = arg;
    p->before = 1;
    p->used_at_failure = req->arena->used;
    (void)nea_alloc(req, p->ask);
    p->after = 1; /* never reached */
}

static void test_unwind_skips_rest(void **state)
{
    fixture *f = *state;
    unwind_probe p = {.ask = 100000};
    nea_req *req = open_req(f);
    char want[128];

    nea__req_call(req, h_too_big, &p);
    assert_int_equal(p.before, 1);
    assert_int_equal(p.after, 0);
    assert_int_equal(f->srv->stats.oom_500, 1);
    assert_int_equal(req->depth, 0);
    assert_null(f->srv->env.reqs.tramp.top);
    /* The incident: method and path ("-" when unset), bytes asked, used and size. */
    assert_int_equal(f->log_level, NEA_LOG_WARN);
    assert_true(contains(f->log_last, "- - asked 100000 bytes"));
    snprintf(want, sizeof(want), "with %zu of %zu used", p.used_at_failure, ARENA);
    assert_true(contains(f->log_last, want));
    end_req(f, req);
    assert_pool_whole(f);
}

static void test_unwind_logs_method_path(void **state)
{
    fixture *f = *state;
    unwind_probe p = {.ask = ARENA + 1};
    nea_req *req = open_req(f);
    char want[64];

    req->msg.method = "POST";
    req->msg.path = "/upload";
    nea__req_call(req, h_too_big, &p);
    snprintf(want, sizeof(want), "POST /upload asked %zu bytes", ARENA + 1);
    assert_true(contains(f->log_last, want));
    assert_int_equal(p.after, 0);
    end_req(f, req);
}

/* Just over what is left (not a silly size): the boundary is exact. */
static void h_fill_then_one(nea_req *req, void *arg)
{
    unwind_probe *p = arg;
    size_t pad = NEA__ROUND_UP(req->arena->used, NEA__ALIGN) - req->arena->used;
    size_t left = nea_arena_available(req) - pad;
    (void)nea_alloc(req, left);
    p->before = 1;
    p->used_at_failure = req->arena->used;
    (void)nea_alloc(req, 1);
    p->after = 1;
}

static void test_unwind_exact_boundary(void **state)
{
    fixture *f = *state;
    unwind_probe p = {0};

    run_req(f, h_fill_then_one, &p);
    assert_int_equal(p.before, 1);
    assert_int_equal(p.used_at_failure, ARENA);
    assert_int_equal(p.after, 0);
    assert_int_equal(f->srv->stats.oom_500, 1);
    assert_true(contains(f->log_last, "asked 1 bytes"));
}

static void test_alloc_outside_frame_aborts(void **state)
{
    fixture *f = *state;
    pid_t pid;
    int status;

    if (under_valgrind()) {
        skip();
    }
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        nea_req *req = open_req(f);
        int devnull = open("/dev/null", O_WRONLY);
        signal(SIGABRT, SIG_DFL);
        if (devnull >= 0) {
            dup2(devnull, 2);
        }
        (void)nea_alloc(req, ARENA * 2); /* no protected frame: a rule violation */
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
}

/* --- defers ---------------------------------------------------------------- */

typedef struct defer_probe {
    order o;
    defer_arg args[8];
    int rc[8];
    int after;
    bool oom;
} defer_probe;

static void h_defers(nea_req *req, void *arg)
{
    defer_probe *p = arg;
    for (int i = 1; i <= 3; i++) {
        p->args[i] = (defer_arg){&p->o, i};
        p->rc[i] = nea_req_defer(req, record, &p->args[i]);
    }
    if (p->oom) {
        (void)nea_alloc(req, ARENA);
        p->args[4] = (defer_arg){&p->o, 4};
        p->rc[4] = nea_req_defer(req, record, &p->args[4]);
    }
    p->after = 1;
}

static void test_defers_lifo_normal(void **state)
{
    fixture *f = *state;
    defer_probe p;
    nea_req *req = open_req(f);

    memset(&p, 0, sizeof(p));
    nea__req_call(req, h_defers, &p);
    assert_int_equal(p.after, 1);
    assert_int_equal(p.rc[1] | p.rc[2] | p.rc[3], 0);
    assert_int_equal(p.o.n, 0); /* nothing runs before the request ends */
    nea__req_end(req);
    assert_int_equal(p.o.n, 3);
    assert_int_equal(p.o.seq[0], 3);
    assert_int_equal(p.o.seq[1], 2);
    assert_int_equal(p.o.seq[2], 1);
    /* Ending twice runs nothing twice. */
    (void)uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(p.o.n, 3);
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(p.o.ran[i], 1);
    }
    assert_int_equal(f->srv->stats.oom_500, 0);
}

static void test_defers_lifo_on_unwind(void **state)
{
    fixture *f = *state;
    defer_probe p;

    memset(&p, 0, sizeof(p));
    p.oom = true;
    run_req(f, h_defers, &p);
    assert_int_equal(p.after, 0);
    assert_int_equal(f->srv->stats.oom_500, 1);
    assert_int_equal(p.o.n, 3);
    assert_int_equal(p.o.seq[0], 3);
    assert_int_equal(p.o.seq[1], 2);
    assert_int_equal(p.o.seq[2], 1);
    assert_int_equal(p.o.ran[4], 0); /* never registered */
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(p.o.ran[i], 1);
    }
    assert_pool_whole(f);
}

static void h_defer_when_full(nea_req *req, void *arg)
{
    defer_probe *p = arg;
    p->args[1] = (defer_arg){&p->o, 1};
    p->rc[1] = nea_req_defer(req, record, &p->args[1]);
    /* Take everything that is left (after the alignment padding). */
    {
        size_t pad = NEA__ROUND_UP(req->arena->used, NEA__ALIGN) - req->arena->used;
        p->rc[3] = nea_try_alloc(req, nea_arena_available(req) - pad) != NULL;
        p->rc[4] = (int)nea_arena_available(req);
    }
    p->args[2] = (defer_arg){&p->o, 2};
    p->rc[2] = nea_req_defer(req, record, &p->args[2]);
    p->after = 1; /* nea_req_defer does not unwind */
}

static void test_defer_enomem(void **state)
{
    fixture *f = *state;
    defer_probe p;

    memset(&p, 0, sizeof(p));
    run_req(f, h_defer_when_full, &p);
    assert_int_equal(p.after, 1);
    assert_int_equal(p.rc[1], 0);
    assert_int_equal(p.rc[3], 1);
    assert_int_equal(p.rc[4], 0); /* the arena really was full */
    assert_int_equal(p.rc[2], NEA_ENOMEM);
    assert_int_equal(p.o.ran[1], 1);
    assert_int_equal(p.o.ran[2], 0); /* not registered, so never run */
    assert_int_equal(f->srv->stats.oom_500, 0);
}

/* --- nested protected frames ------------------------------------------------ */

typedef struct nest {
    order o;
    defer_arg args[16];
    int rc2, rc3;
    size_t avail_before2, avail_after2;
    size_t avail_before3, avail_after3;
    int reached[8];
    unsigned depth_seen[4];
    bool inner_oom;     /* level 2 exhausts after level 3 returned */
    bool level3_oom;    /* level 3 exhausts */
    char *late;         /* allocated by level 1 after the protect */
    int ran_at_return2; /* defers that had run when level 2's protect returned */
} nest;

static void defer_id(nea_req *req, nest *n, int id)
{
    n->args[id] = (defer_arg){&n->o, id};
    if (nea_req_defer(req, record, &n->args[id]) != 0) {
        n->reached[7] = -1;
    }
}

static void level3(nea_req *req, void *arg)
{
    nest *n = arg;
    n->depth_seen[3] = req->depth;
    defer_id(req, n, 5);
    (void)nea_alloc(req, 200);
    if (n->level3_oom) {
        (void)nea_alloc(req, ARENA);
    }
    n->reached[3] = 1;
}

static void level2(nea_req *req, void *arg)
{
    nest *n = arg;
    n->depth_seen[2] = req->depth;
    defer_id(req, n, 3);
    (void)nea_strdup(req, "level two");
    defer_id(req, n, 4);
    n->avail_before3 = nea_arena_available(req);
    n->rc3 = nea_req_protect(req, level3, n);
    n->avail_after3 = nea_arena_available(req);
    (void)nea_alloc(req, 100); /* level 2 carries on after level 3's failure */
    if (n->inner_oom) {
        (void)nea_alloc(req, ARENA);
    }
    n->reached[2] = 1;
}

static void level1(nea_req *req, void *arg)
{
    nest *n = arg;
    n->depth_seen[1] = req->depth;
    (void)nea_alloc(req, 64);
    defer_id(req, n, 1);
    defer_id(req, n, 2);
    n->avail_before2 = nea_arena_available(req);
    n->rc2 = nea_req_protect(req, level2, n);
    n->ran_at_return2 = n->o.n;
    n->avail_after2 = nea_arena_available(req);
    n->late = nea_alloc(req, 1000);
    memset(n->late, 'L', 1000);
    n->reached[1] = 1;
}

static void test_protect_inner_oom(void **state)
{
    fixture *f = *state;
    nest n;

    /* Two levels: level 2 exhausts (level 3 is fine). */
    memset(&n, 0, sizeof(n));
    n.inner_oom = true;
    run_req(f, level1, &n);
    assert_int_equal(n.rc3, 0);
    assert_int_equal(n.rc2, NEA_ENOMEM);
    assert_int_equal(n.reached[2], 0);
    assert_int_equal(n.reached[1], 1); /* the outer frame continued */
    assert_non_null(n.late);
    /* Rolled back to exactly where level 1 was before the call. */
    assert_int_equal(n.avail_after2, n.avail_before2);
    /* Defers: 5, 4, 3 (inside level 2, on its unwind, before protect returns),
     * then 2, 1 at the end. */
    assert_int_equal(n.ran_at_return2, 3);
    assert_int_equal(n.o.n, 5);
    assert_int_equal(n.o.seq[0], 5);
    assert_int_equal(n.o.seq[1], 4);
    assert_int_equal(n.o.seq[2], 3);
    assert_int_equal(n.o.seq[3], 2);
    assert_int_equal(n.o.seq[4], 1);
    for (int i = 1; i <= 5; i++) {
        assert_int_equal(n.o.ran[i], 1);
    }
    assert_int_equal(n.reached[7], 0);
    /* A caught OOM is not a 500, but it is logged. */
    assert_int_equal(f->srv->stats.oom_500, 0);
    assert_true(contains(f->log_all, "rolled back"));
    assert_true(contains(f->log_all, "asked 16384"));
}

/* The rollback happens while handler code is still on the stack: level 1 sees
 * the defers of level 2 already run when protect returns. */
typedef struct seen {
    order o;
    defer_arg args[4];
    int ran_at_return;
    size_t before, after;
    int rc;
    char *again;
    char *first_try;
    char *next_at_mark; /* where the next aligned allocation goes before the call */
} seen;

static void inner_reg_and_fail(nea_req *req, void *arg)
{
    seen *s = arg;
    s->args[2] = (defer_arg){&s->o, 2};
    (void)nea_req_defer(req, record, &s->args[2]);
    s->first_try = nea_alloc(req, 500);
    (void)nea_alloc(req, ARENA);
}

static void outer_checks(nea_req *req, void *arg)
{
    seen *s = arg;
    s->args[1] = (defer_arg){&s->o, 1};
    (void)nea_req_defer(req, record, &s->args[1]);
    s->before = nea_arena_available(req);
    s->next_at_mark = req->arena->base + NEA__ROUND_UP(req->arena->used, NEA__ALIGN);
    s->rc = nea_req_protect(req, inner_reg_and_fail, s);
    s->ran_at_return = s->o.n;
    s->after = nea_arena_available(req);
    s->again = nea_alloc(req, 500);
}

static void test_protect_rollback_visible(void **state)
{
    fixture *f = *state;
    seen s;

    memset(&s, 0, sizeof(s));
    run_req(f, outer_checks, &s);
    assert_int_equal(s.rc, NEA_ENOMEM);
    assert_int_equal(s.ran_at_return, 1); /* defer 2 only */
    assert_int_equal(s.o.seq[0], 2);
    assert_int_equal(s.after, s.before);
    /* The bytes the failed frame used are handed out again. */
    assert_true(s.first_try > s.next_at_mark);
    assert_ptr_equal(s.again, s.next_at_mark);
    assert_int_equal(s.o.n, 2);
    assert_int_equal(s.o.seq[1], 1);
    assert_int_equal(f->srv->stats.oom_500, 0);
}

static void test_protect_three_levels(void **state)
{
    fixture *f = *state;
    nest n;

    /* Level 3 exhausts: level 2 gets NEA_ENOMEM and carries on; level 1 gets 0. */
    memset(&n, 0, sizeof(n));
    n.level3_oom = true;
    run_req(f, level1, &n);
    /* Each nested frame is one more level of protection. */
    assert_true(n.depth_seen[1] >= 1);
    assert_int_equal(n.depth_seen[2], n.depth_seen[1] + 1);
    assert_int_equal(n.depth_seen[3], n.depth_seen[2] + 1);
    assert_int_equal(n.rc3, NEA_ENOMEM);
    assert_int_equal(n.avail_after3, n.avail_before3);
    assert_int_equal(n.reached[3], 0);
    assert_int_equal(n.reached[2], 1);
    assert_int_equal(n.rc2, 0);
    assert_int_equal(n.reached[1], 1);
    /* Level 2 kept its allocations: level 1 sees less than before. */
    assert_true(n.avail_after2 < n.avail_before2);
    /* 5 ran at level 3's unwind; 4, 3, 2, 1 at the end. */
    assert_int_equal(n.ran_at_return2, 1);
    assert_int_equal(n.o.n, 5);
    assert_int_equal(n.o.seq[0], 5);
    assert_int_equal(n.o.seq[1], 4);
    assert_int_equal(n.o.seq[2], 3);
    assert_int_equal(n.o.seq[3], 2);
    assert_int_equal(n.o.seq[4], 1);
    for (int i = 1; i <= 5; i++) {
        assert_int_equal(n.o.ran[i], 1);
    }
    assert_int_equal(f->srv->stats.oom_500, 0);

    /* Both inner levels exhaust: each catches its own. */
    memset(&n, 0, sizeof(n));
    n.level3_oom = true;
    n.inner_oom = true;
    run_req(f, level1, &n);
    assert_int_equal(n.rc3, NEA_ENOMEM);
    assert_int_equal(n.rc2, NEA_ENOMEM);
    assert_int_equal(n.avail_after2, n.avail_before2);
    assert_int_equal(n.reached[1], 1);
    assert_int_equal(n.o.n, 5);
    assert_int_equal(n.ran_at_return2, 3);
    assert_int_equal(n.o.seq[0], 5); /* level 3's unwind */
    assert_int_equal(n.o.seq[1], 4); /* level 2's unwind */
    assert_int_equal(n.o.seq[2], 3);
    assert_int_equal(n.o.seq[3], 2); /* the end */
    assert_int_equal(n.o.seq[4], 1);
    assert_int_equal(f->srv->stats.oom_500, 0);
    assert_pool_whole(f);
}

/* --- tracked handles ---------------------------------------------------------- */

typedef struct timers {
    int fired;
    uv_timer_t *t;
    int rc;
    size_t before, after;
} timers;

static void never_fires(uv_timer_t *t)
{
    timers *tm = t->data;
    tm->fired++;
}

static void h_timer(nea_req *req, void *arg)
{
    timers *tm = arg;
    tm->t = nea_req_timer(req);
    tm->t->data = tm;
    uv_timer_start(tm->t, never_fires, 10000, 0);
}

static void test_timer_closed_at_end(void **state)
{
    fixture *f = *state;
    timers tm;
    nea_req *req = open_req(f);
    uint64_t t0;

    memset(&tm, 0, sizeof(tm));
    nea__req_call(req, h_timer, &tm);
    assert_non_null(tm.t);
    assert_true(uv_is_active((uv_handle_t *)tm.t));
    nea__req_end(req);
    /* Closing, not closed: the arena is still out. */
    assert_true(uv_is_closing((uv_handle_t *)tm.t));
    assert_int_equal(f->srv->pool.in_use, 1);
    assert_int_equal(f->srv->env.reqs.live, 1);
    t0 = uv_hrtime();
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_true(uv_hrtime() - t0 < 2000000000ull); /* did not wait for the timer */
    assert_int_equal(tm.fired, 0);
    assert_pool_whole(f);
}

/* A handle the handler initialised itself, registered with nea_req_track. */
typedef struct idle_probe {
    uv_idle_t *idle;
    int rc;
    int spins;
} idle_probe;

static void on_idle(uv_idle_t *h)
{
    idle_probe *p = h->data;
    p->spins++;
}

static void h_idle(nea_req *req, void *arg)
{
    idle_probe *p = arg;
    p->idle = nea_alloc(req, sizeof(*p->idle));
    uv_idle_init(nea_req_loop(req), p->idle);
    p->idle->data = p;
    uv_idle_start(p->idle, on_idle);
    p->rc = nea_req_track(req, (uv_handle_t *)p->idle);
}

static void test_track_closes_handle(void **state)
{
    fixture *f = *state;
    idle_probe p;
    nea_req *req = open_req(f);

    memset(&p, 0, sizeof(p));
    nea__req_call(req, h_idle, &p);
    assert_int_equal(p.rc, 0);
    assert_true(uv_run(&f->loop, UV_RUN_NOWAIT) != 0);
    assert_true(p.spins >= 1);
    nea__req_end(req);
    assert_int_equal(f->srv->pool.in_use, 1);
    /* An idle handle left open would keep this loop spinning forever. */
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_pool_whole(f);
}

/* A handle tracked inside a protected frame that then unwinds: the frame must
 * not roll its memory back (the loop still points into it). */
static void inner_timer_then_oom(nea_req *req, void *arg)
{
    timers *tm = arg;
    tm->t = nea_req_timer(req);
    tm->t->data = tm;
    uv_timer_start(tm->t, never_fires, 10000, 0);
    (void)nea_alloc(req, ARENA);
}

static void h_protect_timer(nea_req *req, void *arg)
{
    timers *tm = arg;
    tm->before = nea_arena_available(req);
    tm->rc = nea_req_protect(req, inner_timer_then_oom, tm);
    tm->after = nea_arena_available(req);
    /* New allocations must not land on the live timer. */
    memset(nea_alloc(req, 256), 0xee, 256);
}

static void test_protect_keeps_tracked(void **state)
{
    fixture *f = *state;
    timers tm;
    nea_req *req = open_req(f);

    memset(&tm, 0, sizeof(tm));
    nea__req_call(req, h_protect_timer, &tm);
    assert_int_equal(tm.rc, NEA_ENOMEM);
    assert_true(tm.after < tm.before); /* not rolled back */
    assert_true(uv_is_active((uv_handle_t *)tm.t));
    assert_ptr_equal(tm.t->data, &tm); /* not overwritten by the memset */
    nea__req_end(req);
    assert_int_equal(f->srv->pool.in_use, 1);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(tm.fired, 0);
    assert_pool_whole(f);
}

/* --- continuations: nea_req_run ------------------------------------------------ */

typedef struct cont {
    nea_req *req;
    uv_timer_t *t;
    int ran;
    int after;
    bool oom;
    char *s;
} cont;

static void cont_fn(nea_req *req, void *arg)
{
    cont *c = arg;
    c->ran++;
    c->s = nea_strdup(req, "continued");
    if (c->oom) {
        (void)nea_alloc(req, ARENA);
    }
    c->after++;
}

static void on_cont_timer(uv_timer_t *t)
{
    cont *c = t->data;
    nea_req_run(c->req, cont_fn, c);
}

static void h_start_cont(nea_req *req, void *arg)
{
    cont *c = arg;
    c->req = req;
    c->t = nea_req_timer(req);
    c->t->data = c;
    uv_timer_start(c->t, on_cont_timer, 1, 0);
}

static void test_req_run_continuation(void **state)
{
    fixture *f = *state;
    for (int oom = 0; oom <= 1; oom++) {
        cont c;
        uint64_t before = f->srv->stats.oom_500;
        nea_req *req = open_req(f);

        memset(&c, 0, sizeof(c));
        c.oom = oom != 0;
        nea__req_call(req, h_start_cont, &c);
        assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0); /* the timer fires */
        assert_int_equal(c.ran, 1);
        assert_string_equal(c.s, "continued");
        assert_int_equal(c.after, oom ? 0 : 1);
        assert_int_equal(f->srv->stats.oom_500, before + (oom ? 1u : 0u));
        assert_null(f->srv->env.reqs.tramp.top);
        assert_int_equal(req->depth, 0);
        end_req(f, req);
        assert_pool_whole(f);
    }
}

static void test_req_run_cancelled_or_ended(void **state)
{
    fixture *f = *state;
    cont c;
    timers tm;
    nea_req *req = open_req(f);

    memset(&c, 0, sizeof(c));
    memset(&tm, 0, sizeof(tm));
    /* A tracked timer keeps the request (and its arena) valid after the end. */
    nea__req_call(req, h_timer, &tm);

    nea_req_run(req, cont_fn, &c);
    assert_int_equal(c.ran, 1); /* live: runs */

    req->cancelled = true;
    nea_req_run(req, cont_fn, &c);
    assert_int_equal(c.ran, 1);
    req->cancelled = false;

    nea__req_end(req);
    assert_true(req->ended);
    nea_req_run(req, cont_fn, &c);
    assert_int_equal(c.ran, 1);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_pool_whole(f);
}

/* --- strings and calloc ------------------------------------------------------ */

typedef struct strs {
    char *dup, *ndup, *ndup_long, *pf, *empty;
    unsigned char *zeros;
    size_t pf_cost, dup_cost, peak_after_pf, used_after_pf;
    int after;
} strs;

static void h_strings(nea_req *req, void *arg)
{
    strs *s = arg;
    size_t before;
    char local[] = "transient";

    s->dup = nea_strdup(req, local);
    local[0] = 'X'; /* the copy is independent of the source */
    s->ndup = nea_strndup(req, "hello world", 5);
    s->ndup_long = nea_strndup(req, "hi", 100);
    s->empty = nea_strdup(req, "");
    s->zeros = nea_calloc(req, 100, 8);

    before = nea_arena_available(req);
    s->pf = nea_printf(req, "%s=%d;%05.1f|%c", "answer", 42, 3.14159, 'z');
    s->pf_cost = before - nea_arena_available(req);
    s->peak_after_pf = req->arena->peak;
    s->used_after_pf = req->arena->used;

    before = nea_arena_available(req);
    (void)nea_strndup(req, "abcdef", 6);
    s->dup_cost = before - nea_arena_available(req); /* includes alignment padding */
    s->after = 1;
}

static void test_strings_contents(void **state)
{
    fixture *f = *state;
    strs s;
    nea_req *req = open_req(f);
    nea_stats st;

    memset(&s, 0, sizeof(s));
    nea__req_call(req, h_strings, &s);
    assert_int_equal(s.after, 1);
    assert_string_equal(s.dup, "transient");
    assert_string_equal(s.ndup, "hello");
    assert_string_equal(s.ndup_long, "hi");
    assert_string_equal(s.empty, "");
    for (size_t i = 0; i < 800; i++) {
        assert_int_equal(s.zeros[i], 0);
    }
    assert_string_equal(s.pf, "answer=42;003.1|z");
    /* printf takes exactly strlen + 1, no slack, and reports that as its peak. */
    assert_int_equal(s.pf_cost, strlen("answer=42;003.1|z") + 1);
    assert_int_equal(s.peak_after_pf, s.used_after_pf);
    assert_true(s.dup_cost >= 7 && s.dup_cost < 7 + NEA__ALIGN);
    end_req(f, req);
    nea_server_stats(f->srv, &st);
    assert_true(st.arena_peak_bytes < ARENA / 2); /* printf's scratch is not the peak */
}

static void h_dirty(nea_req *req, void *arg)
{
    size_t n = nea_arena_available(req) - NEA__ALIGN;
    (void)arg;
    memset(nea_alloc(req, n), 0xff, n);
}

static void h_calloc(nea_req *req, void *arg)
{
    strs *s = arg;
    s->zeros = nea_calloc(req, 1000, 8);
    s->after = 1;
}

static void test_calloc_zeroes_reused_memory(void **state)
{
    fixture *f = *state;
    strs s;
    nea_req *req;
    nea__arena *a;

    /* NEA_SCRUB_NONE: the next request's arena holds the previous one's bytes. */
    req = open_req(f);
    a = req->arena;
    nea__req_call(req, h_dirty, NULL);
    end_req(f, req);
    req = open_req(f);
    assert_ptr_equal(req->arena, a);
    memset(&s, 0, sizeof(s));
    nea__req_call(req, h_calloc, &s);
    assert_int_equal(s.after, 1);
    for (size_t i = 0; i < 8000; i++) {
        assert_int_equal(s.zeros[i], 0);
    }
    end_req(f, req);
}

typedef struct big_probe {
    int which;
    int after;
    size_t used_before, used_after;
} big_probe;

static char big_string[3 * 16 * 1024];

static void h_big(nea_req *req, void *arg)
{
    big_probe *p = arg;
    p->used_before = req->arena->used;
    switch (p->which) {
    case 0:
        (void)nea_printf(req, "%s", big_string);
        break;
    case 1:
        (void)nea_strdup(req, big_string);
        break;
    case 2:
        (void)nea_strndup(req, big_string, ARENA);
        break;
    case 3:
        (void)nea_calloc(req, SIZE_MAX / 4, 8); /* count * size overflows */
        break;
    case 4:
        (void)nea_calloc(req, ARENA, 2);
        break;
    default:
        (void)nea_alloc_aligned(req, ARENA - 64, 4096);
        break;
    }
    p->after = 1;
}

static void test_string_helpers_unwind(void **state)
{
    fixture *f = *state;
    static const char *asked[] = {
        "asked 49152 bytes", "asked 49152 bytes",
        "asked 16385 bytes", "asked 18446744073709551615 bytes",
        "asked 32768 bytes", "asked 16320 bytes",
    };

    memset(big_string, 'S', sizeof(big_string) - 1);
    for (int which = 0; which < 6; which++) {
        big_probe p = {.which = which};
        nea_req *req = open_req(f);

        nea__req_call(req, h_big, &p);
        assert_int_equal(p.after, 0);
        assert_int_equal(f->srv->stats.oom_500, (uint64_t)which + 1);
        assert_true(contains(f->log_last, asked[which]));
        /* A failed helper leaves nothing claimed. */
        assert_int_equal(req->arena->used, p.used_before);
        end_req(f, req);
        assert_pool_whole(f);
    }
}

/* A printf that does not fit has written the prefix of its output into the
 * arena before discovering that; with a scrub policy those bytes must be
 * scrubbed like any other the request wrote. */
static void h_secret_printf(nea_req *req, void *arg)
{
    (void)arg;
    (void)nea_printf(req, "%s", big_string);
}

static void test_printf_unwind_is_scrubbed(void **state)
{
    fixture *f = *state;
    nea_req *req = open_req(f);
    nea__arena *a = req->arena;
    char *all;
    size_t dirty = 0;

    memset(big_string, 'S', sizeof(big_string) - 1);
    nea__req_call(req, h_secret_printf, NULL);
    assert_int_equal(f->srv->stats.oom_500, 1);
    end_req(f, req);
    assert_ptr_equal(nea__pool_acquire(&f->srv->pool), a);
    all = nea__arena_alloc(a, a->size, 1);
    assert_non_null(all);
    expose(all, a->size);
    for (size_t i = 0; i < a->size; i++) {
        dirty += all[i] != 0;
    }
    nea__pool_release(&f->srv->pool, a);
    if (dirty != 0) {
        print_error("%zu bytes of the previous request survived NEA_SCRUB_ZERO\n", dirty);
    }
    assert_int_equal(dirty, 0);
}

/* --- the fault-injection sweep ---------------------------------------------------- */

enum { SW_DEFERS = 6 };

typedef struct sweep {
    int registered[SW_DEFERS];
    int ran[SW_DEFERS];
    int refused;
    int timer_fired;
    int inner_rc;
    bool completed;
    bool contents_ok;
} sweep;

static void sw_defer(void *arg)
{
    (*(int *)arg)++;
}

static void sw_register(nea_req *req, sweep *s, int id)
{
    if (nea_req_defer(req, sw_defer, &s->ran[id]) == 0) {
        s->registered[id]++;
    } else {
        s->refused++; /* the handler would release the resource itself */
    }
}

static void sw_timer(uv_timer_t *t)
{
    ((sweep *)t->data)->timer_fired++;
}

static void sw_inner(nea_req *req, void *arg)
{
    sweep *s = arg;
    sw_register(req, s, 4);
    (void)nea_printf(req, "inner %d", 7);
    (void)nea_alloc(req, 300);
}

/* What a typical handler does: copy the path, format a line, arm a timer, build
 * a buffer of unknown size, index headers, try something optional inside a
 * nested frame, and hold external resources through defers. */
static void sw_handler(nea_req *req, void *arg)
{
    sweep *s = arg;
    char *path, *line, *buf, *hdr;
    uint32_t *idx;
    uv_timer_t *t;
    size_t cap = 64;

    path = nea_strdup(req, "/index.html");
    sw_register(req, s, 0);
    line = nea_printf(req, "GET %s HTTP/1.1", path);
    t = nea_req_timer(req);
    t->data = s;
    uv_timer_start(t, sw_timer, 60000, 0);
    sw_register(req, s, 1);
    buf = nea_alloc(req, cap);
    while (cap < 2048) {
        char *nb = nea_try_grow(req, buf, cap * 2);
        if (nb == NULL) {
            nb = nea_alloc(req, cap * 2);
            memcpy(nb, buf, cap);
        }
        buf = nb;
        cap *= 2;
    }
    memset(buf, 'b', cap);
    idx = nea_calloc(req, 10, sizeof(*idx));
    hdr = nea_strndup(req, "Content-Type: text/plain\r\n", 12);
    sw_register(req, s, 2);
    s->inner_rc = nea_req_protect(req, sw_inner, s);
    (void)nea_alloc(req, 400);
    sw_register(req, s, 3);
    s->contents_ok = strcmp(line, "GET /index.html HTTP/1.1") == 0 &&
                     strcmp(hdr, "Content-Type") == 0 && idx[9] == 0 && buf[cap - 1] == 'b';
    s->completed = true;
}

/* One request through the sweep handler with the fault armed as given; checks
 * the integrity conditions. Returns the number of injected failures. */
static unsigned long sweep_run(fixture *f, unsigned long nth, bool persistent)
{
    sweep s;
    nea_req *req = open_req(f);
    uint64_t oom_before = f->srv->stats.oom_500;
    unsigned long failures;

    memset(&s, 0, sizeof(s));
    nea__fault_arm(&f->srv->fault, NEA__FAULT_ARENA, nth, persistent);
    nea__req_call(req, sw_handler, &s);
    failures = nea__fault_failed(&f->srv->fault, NEA__FAULT_ARENA);
    if (nth > 0 && failures > 0) {
        /* Once: exactly the nth grant failed. Persistent: it and every later one. */
        unsigned long grants = nea__fault_seen(&f->srv->fault, NEA__FAULT_ARENA);
        assert_int_equal(failures, persistent ? grants - nth + 1 : 1);
    }
    nea__fault_arm(&f->srv->fault, NEA__FAULT_ARENA, 0, false);
    nea__req_end(req);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);

    assert_pool_whole(f);
    assert_int_equal(s.timer_fired, 0);
    for (int i = 0; i < SW_DEFERS; i++) {
        /* Every registered defer ran exactly once; none ran unregistered. */
        if (s.ran[i] != s.registered[i]) {
            print_error("N=%lu%s: defer %d registered %d ran %d\n", nth,
                        persistent ? " (persistent)" : "", i, s.registered[i], s.ran[i]);
        }
        assert_int_equal(s.ran[i], s.registered[i]);
        assert_true(s.registered[i] <= 1);
    }
    assert_int_equal(f->srv->stats.oom_500, oom_before + (s.completed ? 0u : 1u));
    if (s.completed) {
        assert_true(s.contents_ok);
    }
    if (failures == 0) {
        assert_true(s.completed);
        assert_int_equal(s.inner_rc, 0);
        assert_int_equal(s.refused, 0);
        for (int i = 0; i < 5; i++) {
            assert_int_equal(s.ran[i], 1);
        }
    }
    return failures;
}

static void oom_sweep(fixture *f, bool persistent)
{
    unsigned long n;
    unsigned steps = 0;

    for (n = 1; n < 1000; n++) {
        unsigned long failures = sweep_run(f, n, persistent);
        if (failures == 0) {
            break;
        }
        steps++;
        /* The next request, with nothing injected, completes. */
        assert_int_equal(sweep_run(f, 0, false), 0);
    }
    assert_true(n < 1000);
    print_message("%s sweep: %u injected failures before a clean run\n",
                  persistent ? "persistent" : "single", steps);
    assert_true(steps > 5);
}

static void test_oom_sweep_once(void **state)
{
    oom_sweep(*state, false);
}

static void test_oom_sweep_persistent(void **state)
{
    oom_sweep(*state, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unwind_skips_rest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwind_logs_method_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwind_exact_boundary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alloc_outside_frame_aborts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_defers_lifo_normal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_defers_lifo_on_unwind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_defer_enomem, setup, teardown),
        cmocka_unit_test_setup_teardown(test_protect_inner_oom, setup, teardown),
        cmocka_unit_test_setup_teardown(test_protect_rollback_visible, setup, teardown),
        cmocka_unit_test_setup_teardown(test_protect_three_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timer_closed_at_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_track_closes_handle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_protect_keeps_tracked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_req_run_continuation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_req_run_cancelled_or_ended, setup, teardown),
        cmocka_unit_test_setup_teardown(test_strings_contents, setup, teardown),
        cmocka_unit_test_setup_teardown(test_calloc_zeroes_reused_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_string_helpers_unwind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_printf_unwind_is_scrubbed, setup_zero, teardown),
        cmocka_unit_test_setup_teardown(test_oom_sweep_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oom_sweep_persistent, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
