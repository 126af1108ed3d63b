/*
 * ref.c - coming back to a request later: references, holds and
 * thread-pool work.
 *
 * Host code that waits for something (a timer, a database client, the
 * thread pool) must not keep a bare nea_req *: once the request ends its
 * arena is reused by another request, and the pointer then names a
 * stranger. A reference (nea_ref) names the arena and the generation it
 * had when the reference was taken; the arena's generation is bumped every
 * time it returns to its pool, so nea_ref_req reads a reference to an
 * ended request as gone, also after its arena was reused, without ever
 * touching the arena's memory (the generation lives in the arena's
 * descriptor in the reservation, which is never reused or poisoned).
 *
 * A hold is a reference that also keeps the arena reserved: the request
 * may be cancelled meanwhile (its owner lets go of it), but it does not end
 * (no defer runs, the arena is not returned) until the hold is released,
 * exactly once, through nea_hold_release. Releasing calls the host's
 * function with the request while it is live, inside its protected frame,
 * or with NULL once it was cancelled, then lets the request end.
 * nea_req_work is a hold around libuv's thread pool: its work request
 * lives in the arena, its done is the release.
 *
 * Invariants: nothing here allocates from the heap (a work request takes a
 * few bytes of the arena); every entry checks it runs on the request's
 * loop thread and aborts naming the rule otherwise; the thread pool is
 * started when the server listens (server.c), so a handler's first job
 * does not allocate the pool's threads.
 */
#include "req.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct work {
    uv_work_t uv;
    nea_hold hold;
    void (*work)(void *arg);
    void (*done)(nea_req *req, void *arg);
    void *arg;
} work;

nea_ref nea_req_ref(nea_req *req)
{
    nea_ref ref;
    NEA__NEED(req, "request");
    ref.slot = req->arena;
    ref.gen = req->arena->gen;
    return ref;
}

/* The request ref names while that request has its arena (live or not),
 * checked on the calling thread; NULL once the arena went back. */
static nea_req *resolve(nea_ref ref, const char *what)
{
    const nea__arena *a = ref.slot;
    if (a == NULL) {
        return NULL;
    }
    nea__req_check_thread(a->home, what);
    if (a->gen != ref.gen) {
        return NULL;
    }
    return nea__req_in(a);
}

nea_req *nea_ref_req(nea_ref ref)
{
    nea_req *req = resolve(ref, "nea_ref_req");
    return req != NULL && nea__req_live(req) ? req : NULL;
}

nea_hold nea_req_hold(nea_req *req)
{
    nea_hold hold;
    NEA__NEED(req, "request");
    nea__req_check_thread(req->env, "nea_req_hold");
    hold.ref = nea_req_ref(req);
    nea__req_hold(req);
    return hold;
}

typedef struct call {
    void (*fn)(nea_req *req, void *arg);
    void *arg;
} call;

static void call_fn(nea_req *req, void *arg)
{
    const call *c = arg;
    c->fn(req, c->arg);
}

void nea_hold_release(nea_hold hold, void (*fn)(nea_req *req, void *arg), void *arg)
{
    /* Held: the arena cannot have gone back, so the request is there. */
    nea_req *req = resolve(hold.ref, "nea_hold_release");
    call c = {fn, arg};

    if (req == NULL || req->holds == 0) {
        fprintf(stderr, "libnea: nea_hold_release: the hold was already released (a hold is "
                        "released exactly once)\n");
        abort();
    }
    if (fn != NULL) {
        if (nea__req_live(req)) {
            nea__req_call(req, call_fn, &c);
        } else {
            fn(NULL, arg); /* cancelled: the host only lets go of what it owns */
        }
    }
    nea__req_unhold(req); /* the last thing: the request may end here */
}

static void on_work(uv_work_t *uv)
{
    work *w = uv->data;
    w->work(w->arg);
}

static void on_after_work(uv_work_t *uv, int status)
{
    work *w = uv->data;
    /* Copied out: the release may end the request and return the arena. */
    nea_hold hold = w->hold;
    void (*done)(nea_req *, void *) = w->done;
    void *arg = w->arg;
    (void)status; /* jobs are never cancelled: libnea does not call uv_cancel */
    nea_hold_release(hold, done, arg);
}

int nea_req_work(nea_req *req, void (*fn)(void *arg), void (*done)(nea_req *req, void *arg),
                 void *arg)
{
    work *w;
    int rc;

    NEA__NEED(req, "request");
    nea__req_check_thread(req->env, "nea_req_work");
    if (fn == NULL || done == NULL) {
        return UV_EINVAL;
    }
    if (!nea__req_live(req)) {
        return NEA_ESTATE;
    }
    w = nea__arena_alloc(req->arena, sizeof(*w), NEA__ALIGN);
    if (w == NULL) {
        return NEA_ENOMEM;
    }
    w->uv.data = w;
    w->work = fn;
    w->done = done;
    w->arg = arg;
    rc = uv_queue_work(req->env->loop, &w->uv, on_work, on_after_work);
    if (rc != 0) {
        return rc;
    }
    w->hold = nea_req_hold(req);
    return 0;
}
