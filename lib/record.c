/*
 * record.c - the per-request record: the sample a connection fills while a
 * request is in its slot, counted once when it ends (per-route metrics,
 * the completion hook, the rate-limited refusal log).
 *
 * A record is opened by a complete head (or an error answered before one
 * was) and finished exactly once: by the response being written, by a
 * cancel, or by the slot closing. Times come from at most two clock reads
 * on the common path (the handler's start and the request's end); the
 * head's completion time is read only when something waits.
 *
 * Invariants: finishing never allocates; the strings handed to the
 * completion hook live until it returns (the request's arena is still
 * held, or the read buffer is untouched).
 */
#include "record.h"

#include <inttypes.h>
#include <string.h>

void nea__record_begin(nea__record *r, size_t head_bytes)
{
    memset(&r->sample, 0, sizeof(r->sample));
    r->open = true;
    r->seq++;
    r->in_dispatch = r->handler_sync = false;
    r->method = r->path = "";
    r->method_len = r->path_len = 0;
    r->t_head = 0; /* read lazily: the first event that needs the time sets it */
    r->sample.bytes_in = head_bytes;
}

void nea__record_stamp(nea__record *r)
{
    if (r->t_head == 0) {
        r->t_head = uv_hrtime();
    }
}

void nea__record_out(nea__record *r, const uv_buf_t *bufs, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        r->sample.bytes_out += bufs[i].len;
    }
    if (r->sample.handled && r->sample.handler_ns == 0) {
        if (r->in_dispatch) {
            r->handler_sync = true; /* the clock is read when the handler returns */
        } else {
            r->sample.handler_ns = uv_hrtime() - r->t_handler;
        }
    }
}

uint64_t nea__record_handler_start(nea__record *r)
{
    uint64_t t0 = uv_hrtime();
    if (r->t_head == 0) {
        r->t_head = t0; /* routed and granted at once: its first clock read */
    }
    r->t_handler = t0;
    r->sample.handled = true;
    r->in_dispatch = true;
    r->t_end = 0;
    return t0;
}

uint64_t nea__record_handler_end(nea__record *r, unsigned seq, uint64_t t0)
{
    uint64_t t1 = r->t_end != 0 ? r->t_end : uv_hrtime();
    /* The slot may be closed by now, or serving a pipelined request (another
     * record): only this request's own record is finished here. */
    if (r->seq == seq) {
        r->in_dispatch = false;
        if (r->open && r->handler_sync && r->sample.handler_ns == 0) {
            r->sample.handler_ns = t1 - t0;
        }
    }
    return t1;
}

static void log_refusal(nea__record_env *env, const nea__record_end *end,
                        const nea_completion *done)
{
    nea__log_limit *limit = done->status == 503 ? &env->log_503 : &env->log_400;
    char addr[64] = "-";
    uint64_t skipped;

    if (!nea__log_limit_pass(limit, uv_now(env->loop), &skipped)) {
        return;
    }
    nea__addr_name(end->peer(end->peer_data), addr, sizeof(addr));
    nea__log(env->cfg, NEA_LOG_WARN,
             "%d for %.*s %.*s from %s (%s); %" PRIu64 " more since the last such line",
             done->status, (int)done->method_len, done->method, (int)done->path_len, done->path,
             addr, nea_outcome_name(done->outcome), skipped);
}

/* The method and path the completion hook and the log name: the arena's
 * copy once the request has one (body bytes may have overwritten the head
 * in the read buffer), else the read buffer's. */
static void name_request(const nea__record *r, const nea_req *req, nea_completion *done)
{
    done->method = r->method;
    done->method_len = r->method_len;
    done->path = r->path;
    done->path_len = r->path_len;
    if (req != NULL) {
        done->method = req->msg.method != NULL ? req->msg.method : "";
        done->method_len = strlen(done->method);
        done->path = req->msg.path != NULL ? req->msg.path : "";
        done->path_len = strlen(done->path);
    }
}

void nea__record_finish(nea__record *r, nea__record_env *env, const nea__record_end *end)
{
    nea__sample *s = &r->sample;
    const nea_req *req = end->req;
    nea_completion done;
    uint64_t t;

    if (!r->open) {
        return;
    }
    r->open = false;
    s->bytes_in += end->body_in;
    if (req != NULL) {
        s->arena_peak = req->arena->peak;
        if (req->oom && s->outcome == NEA_OUTCOME_COMPLETED) {
            s->outcome = NEA_OUTCOME_OOM;
        }
    }
    if (s->outcome == NEA_OUTCOME_COMPLETED) {
        s->outcome = end->fallback;
    }
    t = r->t_end = uv_hrtime();
    if (r->handler_sync && s->handler_ns == 0) {
        s->handler_ns = t - r->t_handler; /* answered in the handler, written before it left */
    }
    s->total_ns = r->t_head != 0 ? t - r->t_head : 0;
    nea__metrics_record(env->metrics, s);
    if (env->cfg->on_complete == NULL && s->status != 503 && s->status != 400) {
        return;
    }
    name_request(r, req, &done);
    done.route = s->route > 0 ? env->metrics->routes[s->route].path : NULL;
    done.status = s->status;
    done.outcome = s->outcome;
    done.bytes_in = s->bytes_in;
    done.bytes_out = s->bytes_out;
    done.queue_ns = s->queue_ns;
    done.handler_ns = s->handler_ns;
    done.total_ns = s->total_ns;
    done.arena_peak_bytes = s->arena_peak;
    if (s->status == 503 || s->status == 400) {
        log_refusal(env, end, &done);
    }
    if (env->cfg->on_complete != NULL) {
        struct sockaddr_storage peer;
        nea__addr_copy(&peer, end->peer(end->peer_data));
        done.peer = &peer;
        env->cfg->on_complete(env->cfg->on_complete_data, &done);
    }
}
