/*
 * metrics.c - per-route counters and fixed-bucket histograms, and their
 * Prometheus text exposition.
 *
 * The block is an array of nea_route_stats in the reservation (plan.c
 * sizes and places it): record 0 for requests answered before routing, then one per
 * route in registration order, so a finished request finds its record by
 * index. Recording is a few increments and, per histogram, one
 * count-leading-zeros to find the bucket: O(1), no allocation, loop thread
 * only. Nothing here knows about servers or workers: readers copy records
 * out (nea__metrics_read) and may sum several blocks (nea__route_stats_add)
 * before writing.
 *
 * Single writer, readers on any thread: only the loop thread that owns a
 * block changes it, and it changes every counter with a relaxed atomic load
 * and store (no read-modify-write: on x86-64 both are plain moves, no locked
 * instruction), so another thread may read the block at any time without a
 * lock and without a data race. A reader sees each counter at some recent
 * value, not the whole record at one instant; nea__metrics_read then derives
 * each total from its parts (requests from the outcomes, a histogram's
 * count from its buckets), so a copy always keeps the record's invariants
 * (+Inf = _count, cumulative buckets never fall).
 *
 * Buckets are log-linear (see nea.h): for v above the lowest edge 2^m, with
 * u = v - 1 and p the position of u's top bit, the bucket is
 * 4 (p - m) + 1 + (the two bits below the top one), whose upper edge is
 * 2^p + (step + 1) 2^(p-2). The exposition prints every second octave's
 * edge (x4 apart; cumulative counts make any subset of edges exact) and
 * only routes that counted a request, keeping a scrape near 6 KB per
 * route in use so it fits an ordinary arena.
 */
#include "metrics.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

_Static_assert(NEA_HIST_STEPS == 4, "bucket index takes two bits below the top one");

/* The exposition's edges: every EXPO_EVERY-th bucket, from the first. */
#define EXPO_EVERY (2 * NEA_HIST_STEPS)
_Static_assert(NEA_HIST_OCTAVES % 2 == 0, "the highest edge is printed");

void nea__metrics_init(nea__metrics *m, void *mem, unsigned records)
{
    m->routes = mem;
    m->cap = records;
    m->count = 1;
    memset(m->routes, 0, (size_t)records * sizeof(*m->routes));
    m->routes[0].method = "";
    m->routes[0].path = "unrouted";
}

void nea__metrics_route_added(nea__metrics *m, const char *method, const char *path,
                              unsigned arena_class)
{
    nea_route_stats *r = &m->routes[m->count++];
    r->method = method;
    r->path = path;
    r->arena_class = arena_class;
}

unsigned nea__hist_index(unsigned min_log2, uint64_t v)
{
    uint64_t u;
    unsigned p;

    if (v <= (uint64_t)1 << min_log2) {
        return 0;
    }
    u = v - 1;
    p = 63u - (unsigned)__builtin_clzll(u);
    if (p >= min_log2 + NEA_HIST_OCTAVES) {
        return NEA_HIST_BUCKETS - 1;
    }
    return (p - min_log2) * NEA_HIST_STEPS + 1 + (unsigned)((u >> (p - 2)) & 3);
}

uint64_t nea_histogram_edge(unsigned min_log2, unsigned i)
{
    unsigned p;
    if (i == 0) {
        return (uint64_t)1 << min_log2;
    }
    if (i >= NEA_HIST_BUCKETS - 1 || min_log2 < 2 || min_log2 + NEA_HIST_OCTAVES > 63) {
        return UINT64_MAX;
    }
    p = min_log2 + (i - 1) / NEA_HIST_STEPS;
    return ((uint64_t)1 << p) + ((uint64_t)((i - 1) % NEA_HIST_STEPS + 1) << (p - 2));
}

uint64_t nea_histogram_quantile(const nea_histogram *h, unsigned min_log2, double q)
{
    uint64_t rank, seen = 0;
    if (h->count == 0) {
        return 0;
    }
    rank = (uint64_t)(q * (double)h->count);
    if ((double)rank < q * (double)h->count) {
        rank++; /* ceil */
    }
    if (rank == 0) {
        rank = 1;
    }
    for (unsigned i = 0; i < NEA_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            return nea_histogram_edge(min_log2, i);
        }
    }
    return UINT64_MAX;
}

/* Adds v to a counter only this thread writes, so that other threads may
 * load it at any time (relaxed: a recent value, no ordering). */
static inline void bump(uint64_t *c, uint64_t v)
{
    __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}

void nea__hist_add(nea_histogram *h, unsigned min_log2, uint64_t v)
{
    bump(&h->count, 1);
    bump(&h->sum, v);
    bump(&h->buckets[nea__hist_index(min_log2, v)], 1);
}

const char *nea_outcome_name(nea_outcome outcome)
{
    static const char *const names[NEA_OUTCOME_COUNT] = {
        [NEA_OUTCOME_COMPLETED] = "completed", [NEA_OUTCOME_OOM] = "oom",
        [NEA_OUTCOME_SHED] = "shed",           [NEA_OUTCOME_TIMEOUT] = "timeout",
        [NEA_OUTCOME_CANCELLED] = "cancelled",
    };
    return (unsigned)outcome < NEA_OUTCOME_COUNT ? names[outcome] : "unknown";
}

void nea__metrics_record(nea__metrics *m, const nea__sample *s)
{
    nea_route_stats *r = &m->routes[s->route];
    unsigned cls = (unsigned)s->status / 100;

    bump(&r->outcomes[s->outcome], 1);
    if (cls >= 1 && cls <= 5) {
        bump(&r->responses[cls], 1);
    }
    bump(&r->bytes_in, s->bytes_in);
    bump(&r->bytes_out, s->bytes_out);
    if (s->arena_peak > 0) {
        nea__hist_add(&r->arena_peak_bytes, NEA_HIST_BYTES_LOG2, s->arena_peak);
        if (s->arena_peak > __atomic_load_n(&r->arena_peak_max, __ATOMIC_RELAXED)) {
            __atomic_store_n(&r->arena_peak_max, s->arena_peak, __ATOMIC_RELAXED);
        }
    }
    if (s->waited) {
        nea__hist_add(&r->queue_ns, NEA_HIST_NS_LOG2, s->queue_ns);
    }
    if (s->handled) {
        nea__hist_add(&r->handler_ns, NEA_HIST_NS_LOG2, s->handler_ns);
    }
    nea__hist_add(&r->total_ns, NEA_HIST_NS_LOG2, s->total_ns);
}

/* The counters of a record: every field from `requests` on is a uint64_t
 * (the histograms too), read one by one. */
#define COUNTERS_OFF offsetof(nea_route_stats, requests)
#define COUNTERS ((sizeof(nea_route_stats) - COUNTERS_OFF) / sizeof(uint64_t))
_Static_assert(COUNTERS_OFF % sizeof(uint64_t) == 0 &&
                   (sizeof(nea_route_stats) - COUNTERS_OFF) % sizeof(uint64_t) == 0,
               "a record's counters are whole uint64_t words");

/* A histogram's count as its buckets add up (see the opening comment). */
static void hist_settle(nea_histogram *h)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < NEA_HIST_BUCKETS; i++) {
        n += h->buckets[i];
    }
    h->count = n;
}

void nea__metrics_read(const nea__metrics *m, unsigned i, nea_route_stats *out)
{
    const nea_route_stats *r = &m->routes[i];
    const uint64_t *from = (const uint64_t *)((const char *)r + COUNTERS_OFF);
    uint64_t *to = (uint64_t *)((char *)out + COUNTERS_OFF);

    out->method = r->method; /* names are written before any reader starts */
    out->path = r->path;
    out->arena_class = r->arena_class;
    for (size_t k = 0; k < COUNTERS; k++) {
        to[k] = __atomic_load_n(&from[k], __ATOMIC_RELAXED);
    }
    out->requests = 0;
    for (unsigned k = 0; k < NEA_OUTCOME_COUNT; k++) {
        out->requests += out->outcomes[k];
    }
    hist_settle(&out->arena_peak_bytes);
    hist_settle(&out->queue_ns);
    hist_settle(&out->handler_ns);
    hist_settle(&out->total_ns);
}

static void hist_sum(nea_histogram *into, const nea_histogram *from)
{
    into->count += from->count;
    into->sum += from->sum;
    for (unsigned i = 0; i < NEA_HIST_BUCKETS; i++) {
        into->buckets[i] += from->buckets[i];
    }
}

void nea__route_stats_add(nea_route_stats *into, const nea_route_stats *from)
{
    into->requests += from->requests;
    for (unsigned i = 0; i < 6; i++) {
        into->responses[i] += from->responses[i];
    }
    for (unsigned i = 0; i < NEA_OUTCOME_COUNT; i++) {
        into->outcomes[i] += from->outcomes[i];
    }
    into->bytes_in += from->bytes_in;
    into->bytes_out += from->bytes_out;
    if (from->arena_peak_max > into->arena_peak_max) {
        into->arena_peak_max = from->arena_peak_max;
    }
    hist_sum(&into->arena_peak_bytes, &from->arena_peak_bytes);
    hist_sum(&into->queue_ns, &from->queue_ns);
    hist_sum(&into->handler_ns, &from->handler_ns);
    hist_sum(&into->total_ns, &from->total_ns);
}

void nea_route_stats_add(nea_route_stats *into, const nea_route_stats *from)
{
    nea__route_stats_add(into, from);
}

/* --- the Prometheus text exposition ------------------------------------------ */

void nea__textf(nea__text *t, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(t->len < t->cap ? t->buf + t->len : NULL, t->len < t->cap ? t->cap - t->len : 0,
                  fmt, ap);
    va_end(ap);
    t->len += n > 0 ? (size_t)n : 0;
}

/* A label value, escaped as the format asks (backslash, quote, newline). */
static void put_label(nea__text *o, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\' || *s == '"') {
            nea__textf(o, "\\%c", *s);
        } else if (*s == '\n') {
            nea__textf(o, "\\n");
        } else {
            nea__textf(o, "%c", *s);
        }
    }
}

static void put_family(nea__text *o, const char *name, const char *type, const char *help)
{
    nea__textf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{route="...",method="..."  (the caller closes the braces). */
static void put_route(nea__text *o, const char *name, const nea_route_stats *r)
{
    nea__textf(o, "%s{route=\"", name);
    put_label(o, r->path);
    nea__textf(o, "\",method=\"");
    put_label(o, r->method);
    nea__textf(o, "\"");
}

/* Prints v, in nanoseconds when `seconds`, in the metric's base unit. */
static void put_value(nea__text *o, uint64_t v, bool seconds)
{
    if (seconds) {
        nea__textf(o, "%.9g", (double)v / 1e9);
    } else {
        nea__textf(o, "%" PRIu64, v);
    }
}

typedef struct hist_family {
    const char *name;
    const char *help;
    size_t offset; /* of the histogram in nea_route_stats */
    unsigned min_log2;
    bool seconds;
} hist_family;

/* Record r as the reader gives it; false when it counted no request (its
 * series are left out). */
static bool fetch(const nea__records *src, unsigned r, nea_route_stats *rec)
{
    src->read(src->data, r, rec);
    return rec->requests > 0;
}

static void put_histogram(nea__text *o, const hist_family *f, const nea__records *src)
{
    char series[96];
    nea_route_stats rec;

    put_family(o, f->name, "histogram", f->help);
    for (unsigned r = 0; r < src->n; r++) {
        const nea_histogram *h = (const nea_histogram *)((const char *)&rec + f->offset);
        uint64_t cum = 0;
        snprintf(series, sizeof(series), "%s_bucket", f->name);
        if (!fetch(src, r, &rec)) {
            continue;
        }
        for (unsigned i = 0; i < NEA_HIST_BUCKETS - 1; i++) {
            cum += h->buckets[i];
            if (i % EXPO_EVERY == 0) {
                put_route(o, series, &rec);
                nea__textf(o, ",le=\"");
                put_value(o, nea_histogram_edge(f->min_log2, i), f->seconds);
                nea__textf(o, "\"} %" PRIu64 "\n", cum);
            }
        }
        put_route(o, series, &rec);
        nea__textf(o, ",le=\"+Inf\"} %" PRIu64 "\n", h->count);
        snprintf(series, sizeof(series), "%s_sum", f->name);
        put_route(o, series, &rec);
        nea__textf(o, "} ");
        put_value(o, h->sum, f->seconds);
        snprintf(series, sizeof(series), "%s_count", f->name);
        nea__textf(o, "\n");
        put_route(o, series, &rec);
        nea__textf(o, "} %" PRIu64 "\n", h->count);
    }
}

static void put_global(nea__text *o, const char *name, const char *type, const char *help,
                       uint64_t v)
{
    put_family(o, name, type, help);
    nea__textf(o, "%s %" PRIu64 "\n", name, v);
}

size_t nea__metrics_write(const nea__records *src, const nea_stats *st, char *buf, size_t cap)
{
    static const hist_family hists[] = {
        {"nea_route_arena_peak_bytes", "Most arena bytes a request used.",
         offsetof(nea_route_stats, arena_peak_bytes), NEA_HIST_BYTES_LOG2, false},
        {"nea_route_queue_seconds", "Wait from a routed head to its arena.",
         offsetof(nea_route_stats, queue_ns), NEA_HIST_NS_LOG2, true},
        {"nea_route_handler_seconds", "Handler start to response issued.",
         offsetof(nea_route_stats, handler_ns), NEA_HIST_NS_LOG2, true},
        {"nea_route_duration_seconds", "Request start to end (response written).",
         offsetof(nea_route_stats, total_ns), NEA_HIST_NS_LOG2, true},
    };
    static const struct {
        const char *name, *help;
    } class_gauges[] = {
        {"nea_arena_class_size_bytes", "Usable bytes per arena of a class."},
        {"nea_arena_class_arenas", "Arenas of a class."},
        {"nea_arena_class_in_use", "Arenas of a class held by requests now."},
    };
    static const char *const causes[] = {"no_slot", "no_arena", "cpu",
                                         "fair",    "draining", "no_buffer"};
    const uint64_t shed[] = {st->shed_no_slot, st->shed_no_arena, st->shed_cpu,
                             st->shed_fair,    st->shed_draining, st->shed_no_buffer};
    const nea_stats_class arenas = nea_stats_arenas(st);
    nea__text o = {buf, cap, 0};
    nea_route_stats rec;

    if (cap > 0) {
        buf[0] = '\0';
    }
    put_global(&o, "nea_requests_total", "counter", "Request heads fully received.", st->requests);
    put_global(&o, "nea_connections_accepted_total", "counter", "Connections accepted into a slot.",
               st->accepted);
    put_global(&o, "nea_connections_open", "gauge", "Connections in a slot now.",
               st->connections_open);
    put_global(&o, "nea_arenas", "gauge", "Arenas in the reservation.", arenas.count);
    put_global(&o, "nea_arenas_in_use", "gauge", "Arenas held by requests now.", arenas.in_use);
    put_global(&o, "nea_arena_queue_length", "gauge", "Routed heads waiting for an arena now.",
               st->queue_length);
    put_global(&o, "nea_conn_buffers", "gauge", "Connection buffers in the reservation.",
               st->conn_buffers);
    put_global(&o, "nea_conn_buffers_in_use", "gauge",
               "Connection buffers held by connections with work now.", st->conn_buffers_in_use);
    put_global(&o, "nea_conn_buffer_waiters", "gauge",
               "Connections waiting in line for a connection buffer now.", st->buffer_waiters);
    put_global(&o, "nea_shedding", "gauge", "1 while shedding for CPU.", st->shedding);
    for (unsigned g = 0; g < sizeof(class_gauges) / sizeof(class_gauges[0]); g++) {
        put_family(&o, class_gauges[g].name, "gauge", class_gauges[g].help);
        for (unsigned k = 0; k < st->arena_class_count; k++) {
            const nea_stats_class *c = &st->classes[k];
            uint64_t v = g == 0 ? c->size : g == 1 ? c->count : c->in_use;
            nea__textf(&o, "%s{class=\"%u\"} %" PRIu64 "\n", class_gauges[g].name, k, v);
        }
    }
    put_family(&o, "nea_shed_total", "counter", "503 answers by cause (no handler ran).");
    for (unsigned i = 0; i < sizeof(causes) / sizeof(causes[0]); i++) {
        nea__textf(&o, "nea_shed_total{cause=\"%s\"} %" PRIu64 "\n", causes[i], shed[i]);
    }
    put_family(&o, "nea_tls_handshakes_total", "counter",
               "TLS handshakes completed, by whether the session was resumed.");
    nea__textf(&o, "nea_tls_handshakes_total{resumed=\"false\"} %" PRIu64 "\n",
               st->tls_handshakes - st->tls_resumed);
    nea__textf(&o, "nea_tls_handshakes_total{resumed=\"true\"} %" PRIu64 "\n", st->tls_resumed);
    put_family(&o, "nea_tls_failures_total", "counter",
               "TLS connections that failed (closed), by reason.");
    for (unsigned i = 0; i < NEA_TLS_REASONS; i++) {
        if (nea_tls_reason_name(i) != NULL) {
            nea__textf(&o, "nea_tls_failures_total{reason=\"%s\"} %" PRIu64 "\n",
                       nea_tls_reason_name(i), st->tls_failed[i]);
        }
    }

    put_family(&o, "nea_route_requests_total", "counter", "Finished requests by outcome.");
    for (unsigned r = 0; r < src->n; r++) {
        if (!fetch(src, r, &rec)) {
            continue;
        }
        for (unsigned k = 0; k < NEA_OUTCOME_COUNT; k++) {
            put_route(&o, "nea_route_requests_total", &rec);
            nea__textf(&o, ",outcome=\"%s\"} %" PRIu64 "\n", nea_outcome_name((nea_outcome)k),
                       rec.outcomes[k]);
        }
    }
    put_family(&o, "nea_route_responses_total", "counter", "Responses by status class.");
    for (unsigned r = 0; r < src->n; r++) {
        if (!fetch(src, r, &rec)) {
            continue;
        }
        for (unsigned c = 1; c <= 5; c++) {
            put_route(&o, "nea_route_responses_total", &rec);
            nea__textf(&o, ",code=\"%uxx\"} %" PRIu64 "\n", c, rec.responses[c]);
        }
    }
    put_family(&o, "nea_route_received_bytes_total", "counter", "Request head and body bytes.");
    for (unsigned r = 0; r < src->n; r++) {
        if (!fetch(src, r, &rec)) {
            continue;
        }
        put_route(&o, "nea_route_received_bytes_total", &rec);
        nea__textf(&o, "} %" PRIu64 "\n", rec.bytes_in);
    }
    put_family(&o, "nea_route_sent_bytes_total", "counter", "Response bytes sent.");
    for (unsigned r = 0; r < src->n; r++) {
        if (!fetch(src, r, &rec)) {
            continue;
        }
        put_route(&o, "nea_route_sent_bytes_total", &rec);
        nea__textf(&o, "} %" PRIu64 "\n", rec.bytes_out);
    }
    for (unsigned i = 0; i < sizeof(hists) / sizeof(hists[0]); i++) {
        put_histogram(&o, &hists[i], src);
    }
    return o.len;
}
