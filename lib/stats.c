/*
 * stats.c - keeping the server's counters. Every counter is a plain field of
 * nea_stats in the reservation, changed on the loop thread only, so
 * recording is a few instructions and never allocates; nea_server_stats
 * copies them out together with the pools', the queue's and the load's live
 * figures. A total that is a sum of other fields (every 503, the arenas of
 * every class) is never stored: nea_stats_shed and nea_stats_arenas compute
 * it from a copy, so it cannot drift from its parts.
 *
 * With workers, each worker counts in its own nea_stats and publishes a
 * snapshot once per loop iteration; a reader on another thread sums the
 * snapshots (nea__stats_read, nea__stats_add), so the request path never
 * takes a lock or an atomic read-modify-write.
 */
#include "stats.h"

void nea__stats_response(nea_stats *st, int status)
{
    int cls = status / 100;
    if (cls >= 1 && cls <= 5) {
        st->responses[cls]++;
    }
}

void nea__stats_conn_opened(nea_stats *st)
{
    st->connections_open++;
    st->accepted++;
    if (st->connections_open > st->connections_max) {
        st->connections_max = st->connections_open;
    }
}

void nea__stats_conn_closed(nea_stats *st)
{
    st->connections_open--;
}

void nea__stats_add(nea_stats *sum, const nea_stats *one)
{
    sum->requests += one->requests;
    for (int i = 0; i < 6; i++) {
        sum->responses[i] += one->responses[i];
    }
    sum->oom_500 += one->oom_500;
    sum->shed_no_slot += one->shed_no_slot;
    sum->shed_no_arena += one->shed_no_arena;
    sum->shed_cpu += one->shed_cpu;
    sum->shed_fair += one->shed_fair;
    sum->shed_draining += one->shed_draining;
    sum->shed_no_buffer += one->shed_no_buffer;
    sum->timeouts += one->timeouts;
    sum->unanswered += one->unanswered;
    sum->rejected_400 += one->rejected_400;
    sum->accepted += one->accepted;
    sum->evicted += one->evicted;
    sum->accept_errors += one->accept_errors;
    sum->tls_handshakes += one->tls_handshakes;
    sum->tls_resumed += one->tls_resumed;
    for (int i = 0; i < NEA_TLS_REASONS; i++) {
        sum->tls_failed[i] += one->tls_failed[i];
    }
    sum->connections_open += one->connections_open;
    sum->connections_max += one->connections_max;
    sum->queue_length += one->queue_length;
    sum->conn_buffers += one->conn_buffers;
    sum->conn_buffers_in_use += one->conn_buffers_in_use;
    sum->conn_buffers_high_water += one->conn_buffers_high_water;
    sum->buffer_waiters += one->buffer_waiters;
    sum->shedding += one->shedding;
    sum->shed_transitions += one->shed_transitions;
    sum->ws_open += one->ws_open;
    sum->ws_upgraded += one->ws_upgraded;
    sum->ws_messages_in += one->ws_messages_in;
    sum->ws_messages_out += one->ws_messages_out;
    sum->ws_failed += one->ws_failed;
    sum->ws_too_big += one->ws_too_big;
    sum->ws_message_oom += one->ws_message_oom;
    if (one->loop_lag_us > sum->loop_lag_us) {
        sum->loop_lag_us = one->loop_lag_us;
    }
    sum->arena_class_count = one->arena_class_count; /* every worker has the same classes */
    for (unsigned k = 0; k < one->arena_class_count && k < NEA_ARENA_CLASSES; k++) {
        nea_stats_class *c = &sum->classes[k];
        const nea_stats_class *o = &one->classes[k];
        c->size = o->size;
        c->count += o->count;
        c->in_use += o->in_use;
        c->high_water += o->high_water;
        c->peak_bytes = o->peak_bytes > c->peak_bytes ? o->peak_bytes : c->peak_bytes;
    }
}

uint64_t nea_stats_shed(const nea_stats *st)
{
    return st->shed_no_slot + st->shed_no_arena + st->shed_cpu + st->shed_fair +
           st->shed_draining + st->shed_no_buffer;
}

nea_stats_class nea_stats_arenas(const nea_stats *st)
{
    nea_stats_class all = {0};
    for (unsigned k = 0; k < st->arena_class_count && k < NEA_ARENA_CLASSES; k++) {
        const nea_stats_class *c = &st->classes[k];
        all.count += c->count;
        all.in_use += c->in_use;
        all.high_water += c->high_water;
        all.peak_bytes = c->peak_bytes > all.peak_bytes ? c->peak_bytes : all.peak_bytes;
    }
    return all;
}

void nea__stats_publish(nea__stats_snapshot *snap, const nea_stats *st)
{
    uint64_t w[NEA__STATS_WORDS] = {0};
    unsigned seq = snap->seq; /* only this thread writes it */
    memcpy(w, st, sizeof(*st));
    __atomic_store_n(&snap->seq, seq + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    for (size_t i = 0; i < NEA__STATS_WORDS; i++) {
        __atomic_store_n(&snap->words[i], w[i], __ATOMIC_RELAXED);
    }
    __atomic_store_n(&snap->seq, seq + 2, __ATOMIC_RELEASE);
}

void nea__stats_read(const nea__stats_snapshot *snap, nea_stats *out)
{
    uint64_t w[NEA__STATS_WORDS];
    unsigned before, after;
    do {
        before = __atomic_load_n(&snap->seq, __ATOMIC_ACQUIRE);
        for (size_t i = 0; i < NEA__STATS_WORDS; i++) {
            w[i] = __atomic_load_n(&snap->words[i], __ATOMIC_RELAXED);
        }
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        after = __atomic_load_n(&snap->seq, __ATOMIC_RELAXED);
    } while ((before & 1u) != 0 || before != after);
    memcpy(out, w, sizeof(*out));
}
