/*
 * oom.c - the out-of-memory trampoline and the request's arena API.
 *
 * Model: Lua's ldo.c. Every entry into handler code goes through a protected
 * frame (a jmp_buf on the C stack, chained through `prev` to the enclosing
 * one). nea_alloc that cannot be satisfied records what was asked and
 * _longjmp()s to the innermost frame; the frame's owner decides what the
 * unwind means:
 *
 *   - the outermost frame of a request (nea__req_call: handler entry or
 *     nea_req_run) ends the request with the pre-built 500, or closes the
 *     connection if response bytes already left;
 *   - a nested frame (nea_req_protect) runs the defers registered inside it,
 *     rolls the arena back and returns NEA_ENOMEM to its caller.
 *
 * The unwind path never allocates: the incident is formatted into the
 * server's fixed log buffer. _setjmp/_longjmp do not save the signal mask,
 * so there is no syscall on the hot path. Values that live across setjmp and
 * change after it are volatile or re-read from the frame.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Noreturn void unwind(nea_req *req, size_t asked)
{
    nea__frame *f = req->srv->frame;
    req->oom_asked = asked;
    if (f == NULL) {
        fprintf(stderr,
                "libnea: nea_alloc(%zu) exhausted the arena outside a protected frame "
                "(call handler code through nea_req_run); aborting\n",
                asked);
        abort();
    }
    _longjmp(f->jb, 1);
}

void *nea_try_alloc(nea_req *req, size_t n)
{
    return nea__arena_alloc(req->arena, n, NEA__ALIGN);
}

void *nea_alloc(nea_req *req, size_t n)
{
    void *p = nea__arena_alloc(req->arena, n, NEA__ALIGN);
    if (p == NULL) {
        unwind(req, n);
    }
    return p;
}

void *nea_alloc_aligned(nea_req *req, size_t n, size_t align)
{
    void *p;
    if (align == 0 || (align & (align - 1)) != 0) {
        fprintf(stderr, "libnea: nea_alloc_aligned: alignment %zu is not a power of two\n", align);
        abort();
    }
    p = nea__arena_alloc(req->arena, n, align < NEA__ALIGN ? NEA__ALIGN : align);
    if (p == NULL) {
        unwind(req, n);
    }
    return p;
}

void *nea_calloc(nea_req *req, size_t count, size_t size)
{
    size_t n;
    void *p;
    if (__builtin_mul_overflow(count, size, &n)) {
        unwind(req, SIZE_MAX);
    }
    p = nea_alloc(req, n);
    memset(p, 0, n);
    return p;
}

char *nea_strndup(nea_req *req, const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = nea_alloc(req, len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *nea_strdup(nea_req *req, const char *s)
{
    return nea_strndup(req, s, SIZE_MAX);
}

char *nea_vprintf(nea_req *req, const char *fmt, va_list ap)
{
    /* Format straight into whatever the arena has left; if it did not fit,
     * the exact length is now known and a second pass either fits or the
     * arena is truly exhausted. */
    nea__arena *a = req->arena;
    const size_t peak = a->peak;
    size_t avail = nea__arena_available(a);
    char *p = nea__arena_alloc(a, avail, 1);
    va_list ap2;
    int n;

    if (p == NULL) {
        unwind(req, 1);
    }
    va_copy(ap2, ap);
    n = vsnprintf(p, avail, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        nea__arena_rollback(a, (size_t)(p - a->base));
        return nea_strdup(req, "");
    }
    /* The whole remainder was claimed only to format into: the peak (what
     * stats report and scrub clears) is what the string really used. */
    if ((size_t)n < avail) {
        (void)nea__arena_grow(a, p, (size_t)n + 1);
        a->peak = peak > a->used ? peak : a->used;
        return p;
    }
    /* vsnprintf wrote the whole remainder: the peak stays there so the scrub
     * policy clears those bytes too. */
    nea__arena_rollback(a, (size_t)(p - a->base));
    unwind(req, (size_t)n + 1);
}

char *nea_printf(nea_req *req, const char *fmt, ...)
{
    va_list ap;
    char *p;
    va_start(ap, fmt);
    p = nea_vprintf(req, fmt, ap);
    va_end(ap);
    return p;
}

void *nea_try_grow(nea_req *req, void *p, size_t n)
{
    return nea__arena_grow(req->arena, p, n);
}

size_t nea_arena_available(const nea_req *req)
{
    return nea__arena_available(req->arena);
}

uv_loop_t *nea_req_loop(const nea_req *req)
{
    return req->srv->loop;
}

int nea_req_defer(nea_req *req, void (*fn)(void *arg), void *arg)
{
    nea__defer *d = nea__arena_alloc(req->arena, sizeof(*d), NEA__ALIGN);
    if (d == NULL) {
        return NEA_ENOMEM;
    }
    d->fn = fn;
    d->arg = arg;
    d->next = req->defers;
    req->defers = d;
    return 0;
}

void nea__req_run_defers(nea_req *req, nea__defer *keep)
{
    /* Unlink before calling, so a defer that itself unwinds or re-enters
     * cannot run twice. */
    while (req->defers != NULL && req->defers != keep) {
        nea__defer *d = req->defers;
        req->defers = d->next;
        d->fn(d->arg);
    }
}

int nea_req_track(nea_req *req, uv_handle_t *handle)
{
    nea__tracked *t = nea__arena_alloc(req->arena, sizeof(*t), NEA__ALIGN);
    if (t == NULL) {
        return NEA_ENOMEM;
    }
    t->handle = handle;
    t->next = req->tracked;
    req->tracked = t;
    return 0;
}

uv_timer_t *nea_req_timer(nea_req *req)
{
    uv_timer_t *t = nea_alloc(req, sizeof(*t));
    nea__tracked *node = nea_alloc(req, sizeof(*node));
    uv_timer_init(req->srv->loop, t);
    node->handle = (uv_handle_t *)t;
    node->next = req->tracked;
    req->tracked = node;
    return t;
}

/* Pushes a frame and calls fn inside it. Returns 0, or NEA_ENOMEM after an
 * unwind (the frame is already popped). */
static int protected_call(nea_req *req, void (*fn)(nea_req *, void *), void *arg)
{
    nea_server *s = req->srv;
    nea__frame f;

    f.prev = s->frame;
    f.req = req;
    s->frame = &f;
    req->depth++;
    if (_setjmp(f.jb) == 0) {
        fn(req, arg);
        s->frame = f.prev;
        req->depth--;
        return 0;
    }
    /* Unwound: f lives in this stack frame and is still valid. */
    s->frame = f.prev;
    req->depth--;
    return NEA_ENOMEM;
}

void nea__req_log_oom(nea_req *req)
{
    nea__log(req->srv, NEA_LOG_WARN,
             "request arena exhausted: %s %s asked %zu bytes with %zu of %zu used; answering 500",
             req->method != NULL ? req->method : "-", req->path != NULL ? req->path : "-",
             req->oom_asked, req->arena->used, req->arena->size);
}

int nea_req_protect(nea_req *req, void (*fn)(nea_req *req, void *arg), void *arg)
{
    /* Everything the unwind path needs is captured before the call and
     * never modified afterwards, so no volatile is required here. */
    nea__defer *const defers = req->defers;
    nea__tracked *const tracked = req->tracked;
    const size_t mark = req->arena->used;
    int rc = protected_call(req, fn, arg);

    if (rc == NEA_ENOMEM) {
        nea__log(req->srv, NEA_LOG_INFO,
                 "nea_req_protect: %s %s asked %zu bytes with %zu of %zu used; rolled back",
                 req->method != NULL ? req->method : "-", req->path != NULL ? req->path : "-",
                 req->oom_asked, req->arena->used, req->arena->size);
        nea__req_run_defers(req, defers);
        /* Handles tracked inside fn live past the mark and are still
         * registered with the loop: their memory must not be reused. */
        if (req->tracked == tracked) {
            nea__arena_rollback(req->arena, mark);
        }
    }
    return rc;
}

void nea__req_call(nea_req *req, void (*fn)(nea_req *, void *), void *arg)
{
    /* depth stays raised until the 500 below is issued too: the request
     * cannot end (and its arena cannot be reused) under this frame. */
    req->depth++;
    if (protected_call(req, fn, arg) == NEA_ENOMEM) {
        nea__req_log_oom(req);
        req->srv->stats.oom_500++;
        nea__req_oom(req);
    }
    req->depth--;
    nea__req_settle(req);
}

void nea_req_run(nea_req *req, void (*fn)(nea_req *req, void *arg), void *arg)
{
    if (req->cancelled || req->ended || req->end_pending) {
        return;
    }
    nea__req_call(req, fn, arg);
}
