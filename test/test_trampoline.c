/*
 * test_trampoline.c - protected frames and the out-of-memory unwind
 * (trampoline.c, and the unwind's meaning in req.c): where an unwind lands,
 * what it logs, nested frames (nea_req_protect), and the aborts that name a
 * broken handler rule - an unwinding allocation outside any frame, or from
 * another request's arena while that request's frame is not innermost.
 *
 * Handler code records what it saw in plain structs; the assertions run
 * after it returned, never inside a protected frame. Aborts happen in
 * fork()ed children (support/child.h).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"
#include "unit.h"

#define ARENA ((size_t)16 * KIB)

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
    assert_int_equal(f->log.level, NEA_LOG_WARN);
    assert_true(contains(f->log.last, "- - asked 100000 bytes"));
    snprintf(want, sizeof(want), "with %zu of %zu used", p.used_at_failure, ARENA);
    assert_true(contains(f->log.last, want));
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
    assert_true(contains(f->log.last, want));
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
    assert_true(contains(f->log.last, "asked 1 bytes"));
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

/* --- nested protected frames ------------------------------------------------ */

typedef struct nest {
    t_order o;
    t_defer_arg args[16];
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
    n->args[id] = (t_defer_arg){&n->o, id};
    if (nea_req_defer(req, t_record, &n->args[id]) != 0) {
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
    assert_true(contains(f->log.all, "rolled back"));
    assert_true(contains(f->log.all, "asked 16384"));
}

/* The rollback happens while handler code is still on the stack: level 1 sees
 * the defers of level 2 already run when protect returns. */
typedef struct seen {
    t_order o;
    t_defer_arg args[4];
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
    s->args[2] = (t_defer_arg){&s->o, 2};
    (void)nea_req_defer(req, t_record, &s->args[2]);
    s->first_try = nea_alloc(req, 500);
    (void)nea_alloc(req, ARENA);
}

static void outer_checks(nea_req *req, void *arg)
{
    seen *s = arg;
    s->args[1] = (t_defer_arg){&s->o, 1};
    (void)nea_req_defer(req, t_record, &s->args[1]);
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

/* --- the rule checks: abort at once, naming the rule ------------------------- */

typedef struct two_reqs {
    fixture *f;
    nea_req *a, *b;
    int which; /* 0 nea_alloc, 1 nea_calloc, 2 nea_strdup, 3 nea_printf */
} two_reqs;

static void alloc_one(nea_req *req, int which)
{
    switch (which) {
    case 0:
        (void)nea_alloc(req, 1);
        break;
    case 1:
        (void)nea_calloc(req, 1, 1);
        break;
    case 2:
        (void)nea_strdup(req, "x");
        break;
    default:
        (void)nea_printf(req, "%d", 1);
        break;
    }
}

/* Runs in B's frame, nested inside A's handler: allocates from A. */
static void b_allocates_from_a(nea_req *req, void *arg)
{
    two_reqs *t = arg;
    (void)req;
    alloc_one(t->a, t->which);
}

static void a_runs_b(nea_req *req, void *arg)
{
    two_reqs *t = arg;
    (void)req;
    nea_req_run(t->b, b_allocates_from_a, t);
}

static void child_cross_request(void *arg)
{
    two_reqs *t = arg;
    t->a = open_req(t->f);
    t->b = open_req(t->f);
    t->a->msg.path = "/a";
    t->b->msg.path = "/b";
    nea__req_call(t->a, a_runs_b, t);
}

static void test_alloc_from_another_request_aborts(void **state)
{
    fixture *f = *state;
    if (under_valgrind()) {
        skip();
    }
    /* Even 1 byte, with A's arena nearly empty: the check is the rule, not
     * exhaustion. */
    for (int which = 0; which < 4; which++) {
        two_reqs t = {.f = f, .which = which};
        t_child c;
        t_child_run(child_cross_request, &t, &c);
        t_child_aborted(&c, "another request");
        assert_non_null(strstr(c.stderr_, "/a")); /* names the request that was misused */
    }
}

static void child_no_frame(void *arg)
{
    two_reqs *t = arg;
    nea_req *req = open_req(t->f);
    alloc_one(req, t->which); /* directly after nea__req_open: no frame */
}

static void on_raw_timer(uv_timer_t *timer)
{
    two_reqs *t = timer->data;
    alloc_one(t->a, t->which); /* a raw libuv callback, not nea_req_run */
}

static void child_raw_timer(void *arg)
{
    two_reqs *t = arg;
    static uv_timer_t timer;
    t->a = open_req(t->f);
    uv_timer_init(&t->f->loop, &timer);
    timer.data = t;
    uv_timer_start(&timer, on_raw_timer, 0, 0);
    uv_run(&t->f->loop, UV_RUN_DEFAULT);
}

static void test_alloc_outside_frame_aborts_at_once(void **state)
{
    fixture *f = *state;
    if (under_valgrind()) {
        skip();
    }
    for (int which = 0; which < 4; which++) {
        two_reqs t = {.f = f, .which = which};
        t_child c;
        t_child_run(child_no_frame, &t, &c);
        t_child_aborted(&c, "outside a protected frame");
        t_child_run(child_raw_timer, &t, &c);
        t_child_aborted(&c, "outside a protected frame");
    }
}

/* nea_req_run(B) inside A's handler: B exhausts its own arena. The unwind
 * lands in B's frame (B's incident, B's 500); A carries on. */
typedef struct nested_run {
    nea_req *b;
    int a_after, b_before, b_after;
    size_t a_used_before, a_used_after;
    char *a_late;
} nested_run;

static void b_exhausts(nea_req *req, void *arg)
{
    nested_run *n = arg;
    n->b_before = 1;
    (void)nea_alloc(req, ARENA * 2);
    n->b_after = 1;
}

static void a_runs_b_then_continues(nea_req *req, void *arg)
{
    nested_run *n = arg;
    n->a_used_before = req->arena->used;
    nea_req_run(n->b, b_exhausts, n);
    n->a_used_after = req->arena->used;
    n->a_late = nea_strdup(req, "A goes on");
    n->a_after = 1;
}

static void test_unwind_lands_in_its_own_request(void **state)
{
    fixture *f = *state;
    nested_run n;
    nea_req *a = open_req(f), *b = open_req(f);

    memset(&n, 0, sizeof(n));
    a->msg.method = "GET";
    a->msg.path = "/outer-a";
    b->msg.method = "POST";
    b->msg.path = "/inner-b";
    n.b = b;
    nea__req_call(a, a_runs_b_then_continues, &n);
    assert_int_equal(n.b_before, 1);
    assert_int_equal(n.b_after, 0);
    assert_int_equal(n.a_after, 1); /* A's handler went on after B's unwind */
    assert_string_equal(n.a_late, "A goes on");
    assert_int_equal(n.a_used_after, n.a_used_before);
    assert_int_equal(f->srv->stats.oom_500, 1);
    assert_int_equal(a->depth, 0);
    assert_int_equal(b->depth, 0);
    assert_null(f->srv->env.reqs.tramp.top);
    /* The incident names B, not A. */
    assert_true(contains(f->log.all, "POST /inner-b asked"));
    assert_null(strstr(f->log.all, "/outer-a"));
    end_req(f, b);
    end_req(f, a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unwind_skips_rest, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_unwind_logs_method_path, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_unwind_exact_boundary, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_alloc_outside_frame_aborts, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_protect_inner_oom, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_protect_rollback_visible, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_protect_three_levels, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_alloc_from_another_request_aborts, unit_setup,
                                        unit_teardown),
        cmocka_unit_test_setup_teardown(test_alloc_outside_frame_aborts_at_once, unit_setup,
                                        unit_teardown),
        cmocka_unit_test_setup_teardown(test_unwind_lands_in_its_own_request, unit_setup,
                                        unit_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
