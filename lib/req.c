/*
 * req.c - a request in its arena, from its head to its arena's return.
 *
 * A request is opened when its head is granted an arena; the struct is the
 * arena's first allocation, so everything the request owns dies with the
 * arena. Its handler runs inside the outermost protected frame of
 * trampoline.c; what an out-of-memory unwind means is decided here:
 *
 *   - the outermost frame (handler entry or nea_req_run) ends the request
 *     with the pre-built 500, unless a response was already issued;
 *   - a nested frame (nea_req_protect) runs the defers registered inside it,
 *     rolls the arena back and returns NEA_ENOMEM to its caller.
 *
 * Lifecycle: one phase (nea__req_phase, in order) says where a request
 * is, and one predicate (nea__req_live) says whether handler code may run
 * for it. RECEIVING (body into the arena) -> HANDLING (handler called) ->
 * STREAMING or ANSWERED (a response issued) -> the owner detaches it
 * (DETACHED) -> ENDED. A request written while handler code is on the
 * stack waits in WRITTEN until that code leaves; a cancel (client gone,
 * deadline, drain) moves a live request to CANCELLED, after which no
 * handler code runs for it. A detached request ends only when no handler
 * code is on the stack (depth) and no hold is outstanding (holds: thread-
 * pool work and host callbacks, ref.c): then defers run LIFO, tracked
 * handles close, and the arena returns to the pool once the last close
 * callback has run, so an arena is never reused under code that may still
 * touch it. A WebSocket message is a request in phase MESSAGE from its
 * opening to its detach: it gets no HTTP response, and an out-of-memory
 * unwind in it fails that message only (its owner, wsconn.c, ends it).
 *
 * Invariants: the unwind path never allocates (the incident is logged from a
 * stack buffer); an unwinding allocation is checked to have its own
 * request's frame innermost (trampoline.c). The request talks to its owner
 * only through nea__req_hooks.
 */
#include "req.h"

#include "log.h"
#include "stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- lifecycle ------------------------------------------------------------ */

nea_req *nea__req_open(nea__req_env *env, nea__arena *a, void *conn)
{
    /* Rounded up, so the handler's first allocation starts where the
     * request's ends. The plan guarantees room; only fault injection fails. */
    nea_req *req = nea__arena_alloc(a, NEA__ROUND_UP(sizeof(*req), NEA__ALIGN), NEA__ALIGN);
    if (req == NULL) {
        return NULL;
    }
    memset(req, 0, sizeof(*req));
    req->env = env;
    req->arena = a;
    req->conn = conn;
    req->phase = NEA__R_RECEIVING;
    env->live++;
    if (!env->thread_known) {
        env->thread = uv_thread_self();
        env->thread_known = true;
    }
    return req;
}

nea_req *nea__req_in(const nea__arena *a)
{
    /* The request struct is the arena's first allocation. */
    return a->used > 0 ? (nea_req *)(void *)a->base : NULL;
}

void nea__req_check_thread(const nea__req_env *env, const char *what)
{
    uv_thread_t self = uv_thread_self();
    if (env->thread_known && !uv_thread_equal(&env->thread, &self)) {
        fprintf(stderr,
                "libnea: %s called on a thread that does not run the request's loop; a request "
                "may only be touched from its own loop (come back with nea_req_work's done, or "
                "hand the work to that loop, e.g. with a uv_async_t)\n",
                what);
        abort();
    }
}

void nea__req_give_back(nea__req_env *env, nea__arena *a)
{
    nea__pool_release(&env->pools[a->cls], a);
    env->released(env->released_data);
}

static void release_arena(nea_req *req)
{
    req->env->live--;
    nea__req_give_back(req->env, req->arena);
}

static void on_tracked_close(uv_handle_t *h)
{
    nea_req *req = h->data;
    if (--req->handles_closing == 0) {
        release_arena(req);
    }
}

/* Runs defers registered after `keep` (LIFO) and unlinks them before each
 * call, so a defer that itself unwinds or re-enters cannot run twice. */
static void run_defers(nea_req *req, nea__defer *keep)
{
    while (req->defers != NULL && req->defers != keep) {
        nea__defer *d = req->defers;
        req->defers = d->next;
        d->fn(d->arg);
    }
}

/* Detached, no handler code on the stack, no hold: nothing can use the
 * request any more. */
static void maybe_end(nea_req *req)
{
    if (req->phase != NEA__R_DETACHED || req->depth > 0 || req->holds > 0) {
        return;
    }
    req->phase = NEA__R_ENDED;
    run_defers(req, NULL);
    for (nea__tracked *t = req->tracked; t != NULL; t = t->next) {
        if (!uv_is_closing(t->handle)) {
            t->handle->data = req;
            uv_close(t->handle, on_tracked_close);
            req->handles_closing++;
        }
    }
    if (req->handles_closing == 0) {
        release_arena(req);
    }
}

void nea__req_end(nea_req *req)
{
    if (req->phase >= NEA__R_DETACHED) {
        return;
    }
    req->phase = NEA__R_DETACHED;
    req->conn = NULL;
    maybe_end(req);
}

void nea__req_cancel(nea_req *req)
{
    if (nea__req_live(req)) {
        req->phase = NEA__R_CANCELLED;
    }
}

bool nea__req_written(nea_req *req)
{
    if (req->depth == 0) {
        return true;
    }
    if (nea__req_live(req)) {
        req->phase = NEA__R_WRITTEN; /* settle tells the owner when handler code left */
    }
    return false;
}

void nea__req_hold(nea_req *req)
{
    req->holds++;
}

void nea__req_unhold(nea_req *req)
{
    req->holds--;
    maybe_end(req);
}

/* Nothing will ever answer a request whose handler code left without a
 * response, a tracked handle, a hold or nea_req_keep: a host bug, answered
 * 500 at once rather than left to hang. */
static bool abandoned(const nea_req *req)
{
    return req->phase == NEA__R_HANDLING && req->tracked == NULL && !req->kept &&
           req->holds == 0;
}

/* Handler code left the stack: finish what happened while it ran. */
static void settle(nea_req *req)
{
    if (req->depth > 0) {
        return;
    }
    if (req->phase == NEA__R_DETACHED) {
        maybe_end(req);
    } else if (req->phase == NEA__R_WRITTEN) {
        req->env->hooks->written(req);
    } else if (abandoned(req)) {
        nea__log(req->env->cfg, NEA_LOG_ERROR,
                 "handler for %s %s returned without responding and with nothing pending (no "
                 "tracked handle, no hold, no nea_req_keep); answering 500",
                 req->msg.method != NULL ? req->msg.method : "-",
                 req->msg.path != NULL ? req->msg.path : "-");
        req->env->stats->unanswered++;
        req->phase = NEA__R_ANSWERED;
        req->env->hooks->send_error(req, NEA__PB_500_UNANSWERED);
    }
}

void nea_req_keep(nea_req *req)
{
    NEA__NEED(req, "request");
    req->kept = true;
}

static void log_oom(nea_req *req, const char *outcome)
{
    nea__log(req->env->cfg, NEA_LOG_WARN,
             "request arena exhausted: %s %s asked %zu bytes with %zu of %zu used; %s",
             req->msg.method != NULL ? req->msg.method : "-",
             req->msg.path != NULL ? req->msg.path : "-", req->oom_asked, req->arena->used,
             req->arena->size, outcome);
}

static void oom_incident(nea_req *req)
{
    log_oom(req, "answering 500");
    req->env->stats->oom_500++;
    req->oom = true;
}

/* The request's response became a pre-built 500 (nothing was sent yet),
 * or, inside a streamed response whose head may be on the wire, the
 * connection closes: no status can be given any more. */
static void answer_oom(nea_req *req)
{
    if (req->phase == NEA__R_MESSAGE) {
        log_oom(req, "the message fails, the connection carries on");
        req->oom = true; /* its owner ends it (wsconn.c) */
        return;
    }
    if (req->phase == NEA__R_STREAMING) {
        log_oom(req, "closing the connection (streamed response under way)");
        req->oom = true;
        req->env->hooks->abort(req);
        return;
    }
    if (req->phase == NEA__R_HANDLING) {
        (void)nea__req_oom_500(req, req->oom_asked);
    } else {
        oom_incident(req); /* the response already issued stands */
    }
}

void nea__req_call(nea_req *req, void (*fn)(nea_req *, void *), void *arg)
{
    /* depth stays raised until the 500 below is issued too: the request
     * cannot end (and its arena cannot be reused) under this frame. */
    req->depth++;
    if (nea__tramp_call(&req->env->tramp, req, fn, arg) == NEA_ENOMEM) {
        answer_oom(req);
    }
    req->depth--;
    settle(req);
}

static void call_handler(nea_req *req, void *arg)
{
    (void)arg;
    req->fn(req, req->fn_data);
}

void nea__req_dispatch(nea_req *req)
{
    req->phase = NEA__R_HANDLING;
    nea__req_call(req, call_handler, NULL);
}

void nea_req_run(nea_req *req, void (*fn)(nea_req *req, void *arg), void *arg)
{
    NEA__NEED(req, "request");
    nea__req_check_thread(req->env, "nea_req_run");
    if (!nea__req_live(req)) {
        return;
    }
    nea__req_call(req, fn, arg);
}

int nea_req_protect(nea_req *req, void (*fn)(nea_req *req, void *arg), void *arg)
{
    /* Everything the unwind path needs is captured before the call and
     * never modified afterwards, so no volatile is required here. */
    nea__defer *const defers = req->defers;
    nea__tracked *const tracked = req->tracked;
    const size_t mark = req->arena->used;
    int rc;

    nea__tramp_check(&req->env->tramp, req, "nea_req_protect", req->msg.path);
    req->depth++;
    rc = nea__tramp_call(&req->env->tramp, req, fn, arg);
    req->depth--;
    if (rc == NEA_ENOMEM) {
        nea__log(req->env->cfg, NEA_LOG_INFO,
                 "nea_req_protect: %s %s asked %zu bytes with %zu of %zu used; rolled back",
                 req->msg.method != NULL ? req->msg.method : "-",
                 req->msg.path != NULL ? req->msg.path : "-", req->oom_asked, req->arena->used,
                 req->arena->size);
        run_defers(req, defers);
        /* Handles tracked inside fn live past the mark and are still
         * registered with the loop: their memory must not be reused. */
        if (req->tracked == tracked) {
            nea__arena_rollback(req->arena, mark);
        }
    }
    return rc;
}

/* --- allocation ----------------------------------------------------------- */

_Noreturn void nea__req_unwind(nea_req *req, size_t asked)
{
    req->oom_asked = asked;
    nea__tramp_unwind(&req->env->tramp, req);
}

/* Every allocation that may unwind starts here: the unwind must have a
 * frame of this very request to land in. */
void nea__req_check_frame(const nea_req *req, const char *what)
{
    nea__tramp_check(&req->env->tramp, req, what, req->msg.path);
}

static void *alloc_or_unwind(nea_req *req, size_t n, size_t align, const char *what)
{
    void *p;
    nea__req_check_frame(req, what);
    p = nea__arena_alloc(req->arena, n, align);
    if (p == NULL) {
        nea__req_unwind(req, n);
    }
    return p;
}

void *nea_try_alloc(nea_req *req, size_t n)
{
    NEA__NEED(req, "request");
    return nea__arena_alloc(req->arena, n, NEA__ALIGN);
}

void *nea_alloc(nea_req *req, size_t n)
{
    NEA__NEED(req, "request");
    return alloc_or_unwind(req, n, NEA__ALIGN, "nea_alloc");
}

void *nea_alloc_aligned(nea_req *req, size_t n, size_t align)
{
    NEA__NEED(req, "request");
    if (align == 0 || (align & (align - 1)) != 0) {
        fprintf(stderr, "libnea: nea_alloc_aligned: alignment %zu is not a power of two\n", align);
        abort();
    }
    return alloc_or_unwind(req, n, align < NEA__ALIGN ? NEA__ALIGN : align, "nea_alloc_aligned");
}

void *nea_calloc(nea_req *req, size_t count, size_t size)
{
    NEA__NEED(req, "request");
    size_t n;
    void *p;
    nea__req_check_frame(req, "nea_calloc");
    if (__builtin_mul_overflow(count, size, &n)) {
        nea__req_unwind(req, SIZE_MAX);
    }
    p = alloc_or_unwind(req, n, NEA__ALIGN, "nea_calloc");
    memset(p, 0, n);
    return p;
}

char *nea_strndup(nea_req *req, const char *s, size_t n)
{
    NEA__NEED(req, "request");
    size_t len = strnlen(s, n);
    char *p = alloc_or_unwind(req, len + 1, 1, "nea_strndup");
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *nea_strdup(nea_req *req, const char *s)
{
    NEA__NEED(req, "request");
    return nea_strndup(req, s, SIZE_MAX);
}

char *nea_vprintf(nea_req *req, const char *fmt, va_list ap)
{
    NEA__NEED(req, "request");
    /* Format straight into whatever the arena has left; if it did not fit,
     * the exact length is now known and the arena is truly exhausted. */
    nea__arena *a = req->arena;
    const size_t peak = a->peak;
    size_t avail = nea__arena_available(a);
    char *p;
    va_list ap2;
    int n;

    nea__req_check_frame(req, "nea_vprintf");
    p = nea__arena_alloc(a, avail, 1);
    if (p == NULL) {
        nea__req_unwind(req, 1);
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
    nea__req_unwind(req, (size_t)n + 1);
}

char *nea_printf(nea_req *req, const char *fmt, ...)
{
    NEA__NEED(req, "request");
    va_list ap;
    char *p;
    va_start(ap, fmt);
    p = nea_vprintf(req, fmt, ap);
    va_end(ap);
    return p;
}

void *nea_try_grow(nea_req *req, void *p, size_t n)
{
    NEA__NEED(req, "request");
    return nea__arena_grow(req->arena, p, n);
}

size_t nea_arena_available(const nea_req *req)
{
    NEA__NEED(req, "request");
    return nea__arena_available(req->arena);
}

/* --- resources -------------------------------------------------------------- */

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

int nea_req_track(nea_req *req, uv_handle_t *handle)
{
    NEA__NEED(req, "request");
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
    NEA__NEED(req, "request");
    uv_timer_t *t = alloc_or_unwind(req, sizeof(*t), NEA__ALIGN, "nea_req_timer");
    nea__tracked *node = alloc_or_unwind(req, sizeof(*node), NEA__ALIGN, "nea_req_timer");
    uv_timer_init(req->env->loop, t);
    node->handle = (uv_handle_t *)t;
    node->next = req->tracked;
    req->tracked = node;
    return t;
}

uv_loop_t *nea_req_loop(const nea_req *req)
{
    NEA__NEED(req, "request");
    return req->env->loop;
}

nea_server *nea_req_server(const nea_req *req)
{
    NEA__NEED(req, "request");
    return req->env->server;
}

void nea_req_set_data(nea_req *req, void *data)
{
    NEA__NEED(req, "request");
    req->user = data;
}

void *nea_req_data(const nea_req *req)
{
    NEA__NEED(req, "request");
    return req->user;
}

/* The request whose protected frame is innermost on this thread (handler code,
 * nea_req_protect, nea_req_run); NULL in defers and outside any frame. */
nea_req *nea_req_current(void)
{
    nea__frame *f = nea__tramp_current();
    return f != NULL ? f->req : NULL;
}

/* --- request data ------------------------------------------------------------ */

const char *nea_req_method(const nea_req *req)
{
    NEA__NEED(req, "request");
    return req->msg.method;
}

const char *nea_req_path(const nea_req *req)
{
    NEA__NEED(req, "request");
    return req->msg.path;
}

const char *nea_req_query(const nea_req *req)
{
    NEA__NEED(req, "request");
    return req->msg.query;
}

const char *nea_req_path_tail(const nea_req *req)
{
    NEA__NEED(req, "request");
    return req->msg.tail;
}

int nea_req_peer(const nea_req *req, struct sockaddr_storage *addr)
{
    NEA__NEED(req, "request");
    /* The connection knows the address: only while the request is attached. */
    if (req->conn == NULL) {
        return UV_ENOTCONN;
    }
    return req->env->hooks->peer((nea_req *)req, addr);
}

int nea_req_http_minor(const nea_req *req)
{
    NEA__NEED(req, "request");
    return req->http_minor;
}

const char *nea_req_header(const nea_req *req, const char *name)
{
    NEA__NEED(req, "request");
    for (size_t i = 0; i < req->msg.nhdrs; i++) {
        if (strcasecmp(req->msg.hdrs[i].name, name) == 0) {
            return req->msg.hdrs[i].value;
        }
    }
    return NULL;
}

size_t nea_req_header_count(const nea_req *req)
{
    NEA__NEED(req, "request");
    return req->msg.nhdrs;
}

int nea_req_header_at(const nea_req *req, size_t i, const char **name, const char **value)
{
    NEA__NEED(req, "request");
    if (i >= req->msg.nhdrs) {
        return UV_EINVAL;
    }
    *name = req->msg.hdrs[i].name;
    *value = req->msg.hdrs[i].value;
    return 0;
}

const char *nea_req_body(const nea_req *req, size_t *len)
{
    NEA__NEED(req, "request");
    if (len != NULL) {
        *len = req->body.len;
    }
    return req->body.data != NULL ? req->body.data : "";
}

/* --- responses ------------------------------------------------------------ */

int nea_resp_header(nea_req *req, const char *name, const char *value)
{
    NEA__NEED(req, "request");
    if (nea__req_responded(req)) {
        return NEA_ERESPONDED;
    }
    return nea__resp_hdr_add(&req->resp_hdrs, req->arena, name, value);
}

static bool line_safe(const char *s)
{
    return strpbrk(s, "\r\n") == NULL;
}

int nea__req_head(nea_req *req, int status, const char *ctype, const void *body, size_t len,
                  bool copy, nea__framing framing)
{
    nea__req_env *env = req->env;
    nea__resp_spec spec;
    size_t needed = 0;
    unsigned n;

    if (!nea__req_live(req) || req->phase == NEA__R_RECEIVING || req->phase == NEA__R_MESSAGE) {
        return NEA_ESTATE; /* no handler yet, or a WebSocket message: no HTTP response */
    }
    if (req->phase != NEA__R_HANDLING) {
        return NEA_ERESPONDED;
    }
    if (status < 200 || status > 599 || (ctype != NULL && !line_safe(ctype))) {
        return UV_EINVAL;
    }
    req->phase = NEA__R_ANSWERED;
    spec.status = status;
    spec.content_type = ctype;
    spec.hdrs = &req->resp_hdrs;
    spec.date_line = nea__date_line(env->date, uv_now(env->loop), &spec.date_len);
    spec.conn_line = env->hooks->conn_line(req, framing == NEA__FRAME_CLOSE);
    spec.body = body;
    spec.len = len;
    spec.copy = copy;
    spec.is_head = req->is_head;
    spec.framing = framing;
    n = nea__resp_serialize(req->arena, &spec, req->wbufs, &needed);
    if (n == 0) {
        return nea__req_oom_500(req, needed);
    }
    nea__stats_response(env->stats, status);
    req->status = (uint16_t)status;
    return (int)n;
}

int nea__req_oom_500(nea_req *req, size_t asked)
{
    req->oom_asked = asked;
    req->phase = NEA__R_ANSWERED;
    oom_incident(req);
    req->env->hooks->send_error(req, NEA__PB_500);
    return NEA_ENOMEM;
}

static int respond(nea_req *req, int status, const char *ctype, const void *body, size_t len,
                   bool copy)
{
    int n = nea__req_head(req, status, ctype, body, len, copy, NEA__FRAME_LENGTH);
    if (n < 0) {
        return n;
    }
    req->env->hooks->send(req, req->wbufs, (unsigned)n);
    return 0;
}

int nea_respond(nea_req *req, int status, const char *content_type, const void *body, size_t len)
{
    NEA__NEED(req, "request");
    return respond(req, status, content_type, body, len, true);
}

int nea_respond_static(nea_req *req, int status, const char *content_type, const void *body,
                       size_t len)
{
    NEA__NEED(req, "request");
    return respond(req, status, content_type, body, len, false);
}
