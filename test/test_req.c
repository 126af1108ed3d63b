/*
 * test_req.c - a request in its arena (req.c): the allocation API
 * (alignment, exact fit, grow, the string helpers and their unwinds,
 * nea_printf at the exact end of the arena), defers, tracked handles,
 * continuations (nea_req_run), the accessors, and an SQLite-style
 * fault-injection sweep over a realistic handler.
 *
 * Requests are made without sockets (support/unit.h): an arena from the
 * server's pool, a request opened in it, handler code run through
 * nea__req_call, then nea__req_end and uv_run for tracked handles to finish
 * closing. Handler code records what it saw in plain structs; the
 * assertions run after it returned, never inside a protected frame.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "child.h"
#include "unit.h"

#define ARENA ((size_t)16 * KIB)

static void tweak_zero(nea_config *cfg)
{
    cfg->scrub = NEA_SCRUB_ZERO;
}

static void tweak_odd_arena(nea_config *cfg)
{
    cfg->arena_size = 20000; /* not a page multiple */
}

static int setup_zero(void **state)
{
    *state = unit_start(tweak_zero);
    return 0;
}

static int setup_odd(void **state)
{
    *state = unit_start(tweak_odd_arena);
    return 0;
}

static bool aligned(const void *p, size_t a)
{
    return (uintptr_t)p % a == 0;
}

/* Handler code records; the assertions run after it returned (a failed cmocka
 * assertion inside a protected frame would jump over the frame). */
typedef struct align_probe {
    int done;
    int misaligned_default; /* nea_alloc / nea_calloc results not max_align_t aligned */
    int misaligned_64;
    int misaligned_4096;
    int misaligned_small;
} align_probe;

static void h_alignment(nea_req *req, void *arg)
{
    align_probe *p = arg;
    for (size_t n = 1; n <= 33; n++) {
        p->misaligned_default += !aligned(nea_alloc(req, n), alignof(max_align_t));
        p->misaligned_default += !aligned(nea_calloc(req, 1, n), alignof(max_align_t));
        (void)nea_strdup(req, "x"); /* leaves the next start unaligned */
    }
    for (int i = 0; i < 3; i++) {
        (void)nea_strdup(req, "x");
        p->misaligned_64 += !aligned(nea_alloc_aligned(req, 8, 64), 64);
        (void)nea_strdup(req, "x");
        p->misaligned_4096 += !aligned(nea_alloc_aligned(req, 8, 4096), 4096);
        /* Alignments below the default still give the default. */
        (void)nea_strdup(req, "x");
        p->misaligned_small += !aligned(nea_alloc_aligned(req, 8, 2), alignof(max_align_t));
    }
    p->done = 1;
}

static void test_req_alignment(void **state)
{
    fixture *f = *state;
    nea_req *req = open_req(f);
    align_probe p;

    memset(&p, 0, sizeof(p));
    assert_true(aligned(req, alignof(max_align_t)));
    nea__req_call(req, h_alignment, &p);
    end_req(f, req);
    assert_int_equal(p.done, 1);
    assert_int_equal(f->srv->stats.oom_500, 0);
    assert_int_equal(p.misaligned_default, 0);
    assert_int_equal(p.misaligned_small, 0);
    assert_int_equal(p.misaligned_64, 0);
    assert_int_equal(p.misaligned_4096, 0);
}

/* Same, in an arena whose size is not a page multiple: its base is then only
 * 16-byte aligned, and alignment must still hold for the address, not for the
 * offset inside the arena. */
static void test_req_alignment_odd_arena(void **state)
{
    test_req_alignment(state);
}

static void test_req_exact_fit(void **state)
{
    fixture *f = *state;
    nea_req *req = open_req(f);
    nea__arena *a = req->arena;
    size_t pad = NEA__ROUND_UP(a->used, NEA__ALIGN) - a->used;
    size_t avail = nea_arena_available(req);
    char *p;

    /* nea_arena_available counts before alignment padding. */
    assert_int_equal(avail, f->cfg.arena_size - a->used);
    assert_null(nea_try_alloc(req, avail - pad + 1));
    assert_int_equal(nea_arena_available(req), avail);
    p = nea_try_alloc(req, avail - pad);
    assert_non_null(p);
    memset(p, 0x33, avail - pad);
    assert_int_equal(nea_arena_available(req), 0);
    assert_null(nea_try_alloc(req, 1));
    end_req(f, req);
}

static void test_req_try_grow(void **state)
{
    fixture *f = *state;
    nea_req *req = open_req(f);
    char *buf = nea_try_alloc(req, 16), *other;
    size_t cap = 16, len = 0;

    assert_non_null(buf);
    /* The usual pattern: append, doubling in place until the arena says no. */
    for (;;) {
        while (len < cap) {
            buf[len] = (char)('a' + len % 26);
            len++;
        }
        char *nb = nea_try_grow(req, buf, cap * 2);
        if (nb == NULL) {
            break;
        }
        assert_ptr_equal(nb, buf);
        cap *= 2;
    }
    assert_true(cap >= 4096);
    assert_true(cap * 2 > nea_arena_available(req) + cap);
    for (size_t i = 0; i < len; i++) {
        assert_int_equal(buf[i], (char)('a' + i % 26));
    }
    /* Shrink to what was used; the rest is available again. */
    assert_ptr_equal(nea_try_grow(req, buf, 100), buf);
    assert_int_equal(nea_arena_available(req),
                     f->cfg.arena_size - (size_t)(buf - req->arena->base) - 100);
    /* Not the most recent allocation any more: refused, p unchanged. */
    other = nea_try_alloc(req, 8);
    assert_non_null(other);
    assert_null(nea_try_grow(req, buf, 200));
    assert_int_equal(buf[99], (char)('a' + 99 % 26));
    end_req(f, req);
}

/* --- defers ---------------------------------------------------------------- */

typedef struct defer_probe {
    t_order o;
    t_defer_arg args[8];
    int rc[8];
    int after;
    bool oom;
    bool keep_alive; /* also start a tracked timer */
} defer_probe;

static void keep_alive_timer(uv_timer_t *t)
{
    (void)t; /* never fires: the request ends first */
}

static void h_defers(nea_req *req, void *arg)
{
    defer_probe *p = arg;
    for (int i = 1; i <= 3; i++) {
        p->args[i] = (t_defer_arg){&p->o, i};
        p->rc[i] = nea_req_defer(req, t_record, &p->args[i]);
    }
    if (p->oom) {
        (void)nea_alloc(req, ARENA);
        p->args[4] = (t_defer_arg){&p->o, 4};
        p->rc[4] = nea_req_defer(req, t_record, &p->args[4]);
    }
    if (p->keep_alive) {
        uv_timer_start(nea_req_timer(req), keep_alive_timer, 60000, 0);
    }
    p->after = 1;
}

static void test_defers_lifo_normal(void **state)
{
    fixture *f = *state;
    defer_probe p;
    nea_req *req = open_req(f);

    memset(&p, 0, sizeof(p));
    p.keep_alive = true; /* a tracked timer keeps the request valid after its end */
    nea__req_call(req, h_defers, &p);
    assert_int_equal(p.after, 1);
    assert_int_equal(p.rc[1] | p.rc[2] | p.rc[3], 0);
    assert_int_equal(p.o.n, 0); /* nothing runs before the request ends */
    nea__req_end(req);
    assert_int_equal(p.o.n, 3);
    assert_int_equal(p.o.seq[0], 3);
    assert_int_equal(p.o.seq[1], 2);
    assert_int_equal(p.o.seq[2], 1);
    /* Ending twice runs nothing twice: the request is still there (its timer
     * is closing, so its arena is not back yet), and the second end is a
     * no-op. */
    assert_int_equal(req->phase, NEA__R_ENDED);
    assert_int_equal(f->srv->env.reqs.live, 1);
    nea__req_end(req);
    assert_int_equal(p.o.n, 3);
    assert_int_equal(f->srv->env.reqs.live, 1);
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
    p->args[1] = (t_defer_arg){&p->o, 1};
    p->rc[1] = nea_req_defer(req, t_record, &p->args[1]);
    /* Take everything that is left (after the alignment padding). */
    {
        size_t pad = NEA__ROUND_UP(req->arena->used, NEA__ALIGN) - req->arena->used;
        p->rc[3] = nea_try_alloc(req, nea_arena_available(req) - pad) != NULL;
        p->rc[4] = (int)nea_arena_available(req);
    }
    p->args[2] = (t_defer_arg){&p->o, 2};
    p->rc[2] = nea_req_defer(req, t_record, &p->args[2]);
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
    assert_int_equal(f->srv->pools[0].in_use, 1);
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
    assert_int_equal(f->srv->pools[0].in_use, 1);
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
    assert_int_equal(f->srv->pools[0].in_use, 1);
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

    req->phase = NEA__R_CANCELLED;
    nea_req_run(req, cont_fn, &c);
    assert_int_equal(c.ran, 1);
    req->phase = NEA__R_RECEIVING;

    nea__req_end(req);
    assert_int_equal(req->phase, NEA__R_ENDED);
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
    /* printf's scratch is not the peak */
    assert_true(nea_stats_arenas(&st).peak_bytes < ARENA / 2);
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
        assert_true(contains(f->log.last, asked[which]));
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
    assert_ptr_equal(nea__pool_acquire(&f->srv->pools[0]), a);
    all = nea__arena_alloc(a, a->size, 1);
    assert_non_null(all);
    expose(all, a->size);
    for (size_t i = 0; i < a->size; i++) {
        dirty += all[i] != 0;
    }
    nea__pool_release(&f->srv->pools[0], a);
    if (dirty != 0) {
        print_error("%zu bytes of the previous request survived NEA_SCRUB_ZERO\n", dirty);
    }
    assert_int_equal(dirty, 0);
}

/* --- nea_printf at the exact end of the arena ------------------------------------ */

typedef struct fit_probe {
    size_t len; /* formatted length, relative to what is available */
    size_t avail_before, avail_after;
    char *s;
    int after;
} fit_probe;

static char fit_buf[2 * 16 * 1024];

static void h_printf_fit(nea_req *req, void *arg)
{
    fit_probe *p = arg;
    size_t n;
    p->avail_before = nea_arena_available(req);
    n = p->avail_before - p->len; /* p->len: 1 = leave room for the NUL, 0 = no room */
    memset(fit_buf, 'f', n);
    fit_buf[n] = '\0';
    p->s = nea_printf(req, "%s", fit_buf);
    p->avail_after = nea_arena_available(req);
    p->after = 1;
}

static void test_printf_exact_fit_boundaries(void **state)
{
    fixture *f = *state;
    fit_probe p;
    nea_req *req;
    char want[64];

    /* n == available - 1: the string and its NUL take exactly what is left. */
    memset(&p, 0, sizeof(p));
    p.len = 1;
    req = open_req(f);
    nea__req_call(req, h_printf_fit, &p);
    assert_int_equal(p.after, 1);
    assert_non_null(p.s);
    assert_int_equal(strlen(p.s), p.avail_before - 1);
    assert_int_equal(p.avail_after, 0);
    assert_int_equal(f->srv->stats.oom_500, 0);
    end_req(f, req);

    /* n == available: one byte short for the NUL, so it unwinds. */
    memset(&p, 0, sizeof(p));
    p.len = 0;
    req = open_req(f);
    nea__req_call(req, h_printf_fit, &p);
    assert_int_equal(p.after, 0);
    assert_int_equal(f->srv->stats.oom_500, 1);
    snprintf(want, sizeof(want), "asked %zu bytes", p.avail_before + 1);
    assert_true(contains(f->log.last, want));
    end_req(f, req);
}

/* --- accessors ------------------------------------------------------------------------ */

static void test_header_at_bounds(void **state)
{
    fixture *f = *state;
    nea_req *req = open_req(f);
    nea__hdr hdrs[2] = {{"Host", "x"}, {"X-Test", "v"}};
    const char *name = "unchanged-name", *value = "unchanged-value";

    req->msg.hdrs = hdrs;
    req->msg.nhdrs = 2;
    assert_int_equal(nea_req_header_count(req), 2);
    /* Past the end: UV_EINVAL, outputs untouched. */
    assert_int_equal(nea_req_header_at(req, 2, &name, &value), UV_EINVAL);
    assert_string_equal(name, "unchanged-name");
    assert_string_equal(value, "unchanged-value");
    assert_int_equal(nea_req_header_at(req, SIZE_MAX, &name, &value), UV_EINVAL);
    assert_string_equal(name, "unchanged-name");
    assert_string_equal(value, "unchanged-value");
    /* In range: both set. */
    assert_int_equal(nea_req_header_at(req, 1, &name, &value), 0);
    assert_string_equal(name, "X-Test");
    assert_string_equal(value, "v");
    assert_string_equal(nea_req_header(req, "x-test"), "v");
    assert_null(nea_req_header(req, "absent"));
    /* No headers at all: index 0 is already past the end. */
    req->msg.nhdrs = 0;
    name = value = NULL;
    assert_int_equal(nea_req_header_at(req, 0, &name, &value), UV_EINVAL);
    assert_null(name);
    assert_null(value);
    end_req(f, req);
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

/* --- host rules broken: each aborts with a message naming it --------------- */


static void other_thread(void *arg)
{
    (void)nea_ref_req(*(nea_ref *)arg);
}

static void child_ref_off_thread(void *arg)
{
    fixture *f = arg;
    nea_req *req = open_req(f);
    nea_ref ref = nea_req_ref(req);
    uv_thread_t t;
    assert_int_equal(uv_thread_create(&t, other_thread, &ref), 0);
    (void)uv_thread_join(&t);
}

static void test_ref_from_another_thread_aborts(void **state)
{
    t_child c;
    t_child_run(child_ref_off_thread, *state, &c);
    t_child_aborted(&c, "nea_ref_req called on a thread that does not run the request's loop");
}

static void child_double_release(void *arg)
{
    fixture *f = arg;
    nea_req *req = open_req(f);
    nea_hold h = nea_req_hold(req);
    nea_hold_release(h, NULL, NULL);
    nea_hold_release(h, NULL, NULL);
}

static void test_hold_released_twice_aborts(void **state)
{
    t_child c;
    t_child_run(child_double_release, *state, &c);
    t_child_aborted(&c, "nea_hold_release: the hold was already released");
}

static void child_null(void *arg)
{
    switch ((int)(intptr_t)arg) {
    case 0:
        (void)nea_alloc(NULL, 1);
        break;
    case 1:
        (void)nea_respond(NULL, 200, NULL, "", 0);
        break;
    case 2:
        (void)nea_req_ref(NULL);
        break;
    case 3:
        (void)nea_server_close(NULL, NULL, NULL);
        break;
    case 4:
        (void)nea_stream_start(NULL, 200, NULL, 1);
        break;
    default:
        (void)nea_req_header(NULL, "Host");
        break;
    }
}

/* --- the server and the host's data ----------------------------------------- */

typedef struct data_probe {
    nea_server *server;
    void *before, *after, *later;
    int cell;
} data_probe;

static void set_data(nea_req *req, void *arg)
{
    data_probe *p = arg;
    p->server = nea_req_server(req);
    p->before = nea_req_data(req);
    nea_req_set_data(req, &p->cell);
    p->after = nea_req_data(req);
}

static void read_data(nea_req *req, void *arg)
{
    data_probe *p = arg;
    p->later = nea_req_data(req);
}

static void one_arena(nea_config *cfg)
{
    cfg->arena_count = 1;
}

/* nea_req_server is the server; the host's pointer is NULL until set, kept
 * for the request's later frames, and forgotten when it ends: the next
 * request in the same arena (nothing scrubbed) starts with NULL again. */
static void test_req_server_and_data(void **state)
{
    fixture *f = unit_start(one_arena);
    data_probe p;
    nea_req *req, *next;
    (void)state;
    memset(&p, 0, sizeof(p));
    req = open_req(f);
    nea__req_call(req, set_data, &p);
    nea__req_call(req, read_data, &p);
    assert_ptr_equal(p.server, f->srv);
    assert_null(p.before);
    assert_ptr_equal(p.after, &p.cell);
    assert_ptr_equal(p.later, &p.cell);
    nea_req_set_data(req, NULL);
    assert_null(nea_req_data(req));
    nea_req_set_data(req, &p);
    end_req(f, req);
    next = open_req(f);
    assert_ptr_equal(next, req); /* the one arena again */
    assert_null(nea_req_data(next));
    end_req(f, next);
    unit_stop(f);
}

static void test_null_arguments_abort_naming_the_function(void **state)
{
    static const char *const names[] = {
        "nea_alloc called with a NULL request",   "nea_respond called with a NULL request",
        "nea_req_ref called with a NULL request", "nea_server_close called with a NULL server",
        "nea_stream_start called with a NULL request", "nea_req_header called with a NULL request",
    };
    (void)state;
    for (int i = 0; i < 6; i++) {
        t_child c;
        t_child_run(child_null, (void *)(intptr_t)i, &c);
        t_child_aborted(&c, names[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_req_alignment, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_req_alignment_odd_arena, setup_odd, unit_teardown),
        cmocka_unit_test_setup_teardown(test_req_exact_fit, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_req_try_grow, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_defers_lifo_normal, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_defers_lifo_on_unwind, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_defer_enomem, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_timer_closed_at_end, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_track_closes_handle, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_protect_keeps_tracked, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_req_run_continuation, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_req_run_cancelled_or_ended, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_strings_contents, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_calloc_zeroes_reused_memory, unit_setup,
                                        unit_teardown),
        cmocka_unit_test_setup_teardown(test_string_helpers_unwind, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_printf_unwind_is_scrubbed, setup_zero, unit_teardown),
        cmocka_unit_test_setup_teardown(test_printf_exact_fit_boundaries, unit_setup,
                                        unit_teardown),
        cmocka_unit_test_setup_teardown(test_header_at_bounds, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_oom_sweep_once, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_oom_sweep_persistent, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_ref_from_another_thread_aborts, unit_setup,
                                        unit_teardown),
        cmocka_unit_test_setup_teardown(test_hold_released_twice_aborts, unit_setup, unit_teardown),
        cmocka_unit_test(test_req_server_and_data),
        cmocka_unit_test(test_null_arguments_abort_naming_the_function),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
