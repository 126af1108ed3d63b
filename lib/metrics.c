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

/* Every finished request adds to three or four histograms: inlined there,
 * with the lowest edge a constant. */
static inline __attribute__((always_inline)) void hist_add(nea_histogram *h, unsigned min_log2,
                                                           uint64_t v)
{
    bump(&h->count, 1);
    bump(&h->sum, v);
    bump(&h->buckets[nea__hist_index(min_log2, v)], 1);
}

void nea__hist_add(nea_histogram *h, unsigned min_log2, uint64_t v)
{
    hist_add(h, min_log2, v);
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
        hist_add(&r->arena_peak_bytes, NEA_HIST_BYTES_LOG2, s->arena_peak);
        if (s->arena_peak > __atomic_load_n(&r->arena_peak_max, __ATOMIC_RELAXED)) {
            __atomic_store_n(&r->arena_peak_max, s->arena_peak, __ATOMIC_RELAXED);
        }
    }
    if (s->waited) {
        hist_add(&r->queue_ns, NEA_HIST_NS_LOG2, s->queue_ns);
    }
    if (s->handled) {
        hist_add(&r->handler_ns, NEA_HIST_NS_LOG2, s->handler_ns);
    }
    hist_add(&r->total_ns, NEA_HIST_NS_LOG2, s->total_ns);
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

/* Record r as the reader gives it; false when it counted no request (its
 * series are left out). */
static bool fetch(const nea__records *src, unsigned r, nea_route_stats *rec)
{
    src->read(src->data, r, rec);
    return rec->requests > 0;
}

/* --- the exposition a piece at a time ------------------------------------------ */

/* The families of the exposition, in order, each with its kind of lines:
 * one value (a server counter), one per arena class, one per shed cause,
 * or, per route that counted a request, ROUTE_LINES[which] lines. The
 * whole text (nea__metrics_write) and the text a piece at a time
 * (nea__expo_next) are both written from this one table. */
enum { K_GLOBAL, K_CLASS, K_SHED, K_TLS_HANDSHAKES, K_TLS_FAILURES, K_ROUTE };
enum { R_REQUESTS, R_RESPONSES, R_RECEIVED, R_SENT, R_HIST };

/* Lines per histogram and route: every EXPO_EVERY-th bucket edge, +Inf,
 * _sum, _count. */
#define HIST_EDGES ((NEA_HIST_BUCKETS - 2) / EXPO_EVERY + 1)
#define HIST_LINES (HIST_EDGES + 3)

static const struct expo_family {
    const char *name, *type, *help;
    unsigned kind;
    unsigned which; /* the counter, class gauge or route family */
    size_t offset;  /* histograms: of the histogram in nea_route_stats */
    unsigned min_log2;
    bool seconds;
} expo_families[] = {
    {"nea_requests_total", "counter", "Request heads fully received.", K_GLOBAL, 0, 0, 0, false},
    {"nea_connections_accepted_total", "counter", "Connections accepted into a slot.", K_GLOBAL, 1,
     0, 0, false},
    {"nea_connections_open", "gauge", "Connections in a slot now.", K_GLOBAL, 2, 0, 0, false},
    {"nea_arenas", "gauge", "Arenas in the reservation.", K_GLOBAL, 3, 0, 0, false},
    {"nea_arenas_in_use", "gauge", "Arenas held by requests now.", K_GLOBAL, 4, 0, 0, false},
    {"nea_arena_queue_length", "gauge", "Routed heads waiting for an arena now.", K_GLOBAL, 5, 0, 0,
     false},
    {"nea_conn_buffers", "gauge", "Connection buffers in the reservation.", K_GLOBAL, 6, 0, 0,
     false},
    {"nea_conn_buffers_in_use", "gauge", "Connection buffers held by connections with work now.",
     K_GLOBAL, 7, 0, 0, false},
    {"nea_conn_buffer_waiters", "gauge", "Connections waiting in line for a connection buffer now.",
     K_GLOBAL, 8, 0, 0, false},
    {"nea_shedding", "gauge", "1 while shedding for CPU.", K_GLOBAL, 9, 0, 0, false},
    {"nea_ws_connections_open", "gauge", "WebSocket connections now.", K_GLOBAL, 10, 0, 0, false},
    {"nea_ws_upgrades_total", "counter", "Connections switched to WebSocket.", K_GLOBAL, 11, 0, 0,
     false},
    {"nea_ws_messages_received_total", "counter", "WebSocket messages handed to a handler.",
     K_GLOBAL, 12, 0, 0, false},
    {"nea_ws_messages_sent_total", "counter", "WebSocket data frames sent.", K_GLOBAL, 13, 0, 0,
     false},
    {"nea_ws_failed_total", "counter",
     "WebSocket connections failed for the peer's protocol error (1002, 1007).", K_GLOBAL, 14, 0,
     0, false},
    {"nea_ws_too_big_total", "counter",
     "WebSocket connections closed 1009 (a message over its limit).", K_GLOBAL, 15, 0, 0, false},
    {"nea_ws_message_oom_total", "counter", "WebSocket messages whose handler ran out of arena.",
     K_GLOBAL, 16, 0, 0, false},
    {"nea_arena_class_size_bytes", "gauge", "Usable bytes per arena of a class.", K_CLASS, 0, 0, 0,
     false},
    {"nea_arena_class_arenas", "gauge", "Arenas of a class.", K_CLASS, 1, 0, 0, false},
    {"nea_arena_class_in_use", "gauge", "Arenas of a class held by requests now.", K_CLASS, 2, 0, 0,
     false},
    {"nea_shed_total", "counter", "503 answers by cause (no handler ran).", K_SHED, 0, 0, 0, false},
    {"nea_tls_handshakes_total", "counter",
     "TLS handshakes completed, by whether the session was resumed.", K_TLS_HANDSHAKES, 0, 0, 0,
     false},
    {"nea_tls_failures_total", "counter", "TLS connections that failed (closed), by reason.",
     K_TLS_FAILURES, 0, 0, 0, false},
    {"nea_route_requests_total", "counter", "Finished requests by outcome.", K_ROUTE, R_REQUESTS, 0,
     0, false},
    {"nea_route_responses_total", "counter", "Responses by status class.", K_ROUTE, R_RESPONSES, 0,
     0, false},
    {"nea_route_received_bytes_total", "counter", "Request head and body bytes.", K_ROUTE,
     R_RECEIVED, 0, 0, false},
    {"nea_route_sent_bytes_total", "counter", "Response bytes sent.", K_ROUTE, R_SENT, 0, 0, false},
    {"nea_route_arena_peak_bytes", "histogram", "Most arena bytes a request used.", K_ROUTE, R_HIST,
     offsetof(nea_route_stats, arena_peak_bytes), NEA_HIST_BYTES_LOG2, false},
    {"nea_route_queue_seconds", "histogram", "Wait from a routed head to its arena.", K_ROUTE,
     R_HIST, offsetof(nea_route_stats, queue_ns), NEA_HIST_NS_LOG2, true},
    {"nea_route_handler_seconds", "histogram", "Handler start to response issued.", K_ROUTE, R_HIST,
     offsetof(nea_route_stats, handler_ns), NEA_HIST_NS_LOG2, true},
    {"nea_route_duration_seconds", "histogram", "Request start to end (response written).", K_ROUTE,
     R_HIST, offsetof(nea_route_stats, total_ns), NEA_HIST_NS_LOG2, true},
};
#define EXPO_FAMILIES (sizeof(expo_families) / sizeof(expo_families[0]))

static const char *const shed_causes[] = {"no_slot", "no_arena", "cpu",
                                          "fair",    "draining", "no_buffer"};
#define SHED_CAUSES (sizeof(shed_causes) / sizeof(shed_causes[0]))

static uint64_t global_value(const nea_stats *st, unsigned which)
{
    const nea_stats_class arenas = nea_stats_arenas(st);
    const uint64_t v[] = {
        st->requests,       st->accepted,        st->connections_open, arenas.count,
        arenas.in_use,      st->queue_length,    st->conn_buffers,     st->conn_buffers_in_use,
        st->buffer_waiters, st->shedding,        st->ws_open,          st->ws_upgraded,
        st->ws_messages_in, st->ws_messages_out, st->ws_failed,        st->ws_too_big,
        st->ws_message_oom};
    return v[which];
}

static uint64_t shed_value(const nea_stats *st, unsigned i)
{
    const uint64_t v[SHED_CAUSES] = {st->shed_no_slot, st->shed_no_arena, st->shed_cpu,
                                     st->shed_fair,    st->shed_draining, st->shed_no_buffer};
    return v[i];
}

/* Lines of a family after its header: per route for K_ROUTE. */
static unsigned expo_lines(const struct expo_family *f, const nea_stats *st)
{
    static const unsigned per_route[] = {[R_REQUESTS] = NEA_OUTCOME_COUNT,
                                         [R_RESPONSES] = 5,
                                         [R_RECEIVED] = 1,
                                         [R_SENT] = 1,
                                         [R_HIST] = HIST_LINES};
    switch (f->kind) {
    case K_GLOBAL:
        return 1;
    case K_CLASS:
        return st->arena_class_count;
    case K_SHED:
        return SHED_CAUSES;
    case K_TLS_HANDSHAKES:
        return 2;
    case K_TLS_FAILURES:
        return NEA_TLS_REASONS;
    default:
        return per_route[f->which];
    }
}

/* Line `line` of a histogram family for record rec. */
static void expo_hist_line(nea__text *o, const struct expo_family *f, const nea_route_stats *rec,
                           unsigned line)
{
    const nea_histogram *h = (const nea_histogram *)((const char *)rec + f->offset);
    char series[96];
    if (line < HIST_EDGES) {
        unsigned edge = line * EXPO_EVERY;
        uint64_t cum = 0;
        for (unsigned i = 0; i <= edge; i++) {
            cum += h->buckets[i];
        }
        snprintf(series, sizeof(series), "%s_bucket", f->name);
        put_route(o, series, rec);
        nea__textf(o, ",le=\"");
        put_value(o, nea_histogram_edge(f->min_log2, edge), f->seconds);
        nea__textf(o, "\"} %" PRIu64 "\n", cum);
    } else if (line == HIST_EDGES) {
        snprintf(series, sizeof(series), "%s_bucket", f->name);
        put_route(o, series, rec);
        nea__textf(o, ",le=\"+Inf\"} %" PRIu64 "\n", h->count);
    } else if (line == HIST_EDGES + 1) {
        snprintf(series, sizeof(series), "%s_sum", f->name);
        put_route(o, series, rec);
        nea__textf(o, "} ");
        put_value(o, h->sum, f->seconds);
        nea__textf(o, "\n");
    } else {
        snprintf(series, sizeof(series), "%s_count", f->name);
        put_route(o, series, rec);
        nea__textf(o, "} %" PRIu64 "\n", h->count);
    }
}

/* Line `line` of family f (after its header). */
static void expo_body_line(nea__text *o, const struct expo_family *f, const nea_stats *st,
                           const nea_route_stats *rec, unsigned line)
{
    switch (f->kind) {
    case K_GLOBAL:
        nea__textf(o, "%s %" PRIu64 "\n", f->name, global_value(st, f->which));
        return;
    case K_CLASS: {
        const nea_stats_class *c = &st->classes[line];
        uint64_t v = f->which == 0 ? c->size : f->which == 1 ? c->count : c->in_use;
        nea__textf(o, "%s{class=\"%u\"} %" PRIu64 "\n", f->name, line, v);
        return;
    }
    case K_SHED:
        nea__textf(o, "%s{cause=\"%s\"} %" PRIu64 "\n", f->name, shed_causes[line],
                   shed_value(st, line));
        return;
    case K_TLS_HANDSHAKES:
        nea__textf(o, "%s{resumed=\"%s\"} %" PRIu64 "\n", f->name, line == 0 ? "false" : "true",
                   line == 0 ? st->tls_handshakes - st->tls_resumed : st->tls_resumed);
        return;
    case K_TLS_FAILURES:
        if (nea_tls_reason_name(line) != NULL) { /* reasons without a name have no series */
            nea__textf(o, "%s{reason=\"%s\"} %" PRIu64 "\n", f->name, nea_tls_reason_name(line),
                       st->tls_failed[line]);
        }
        return;
    default:
        break;
    }
    switch (f->which) {
    case R_REQUESTS:
        put_route(o, f->name, rec);
        nea__textf(o, ",outcome=\"%s\"} %" PRIu64 "\n", nea_outcome_name((nea_outcome)line),
                   rec->outcomes[line]);
        break;
    case R_RESPONSES:
        put_route(o, f->name, rec);
        nea__textf(o, ",code=\"%uxx\"} %" PRIu64 "\n", line + 1, rec->responses[line + 1]);
        break;
    case R_RECEIVED:
    case R_SENT:
        put_route(o, f->name, rec);
        nea__textf(o, "} %" PRIu64 "\n", f->which == R_RECEIVED ? rec->bytes_in : rec->bytes_out);
        break;
    default:
        expo_hist_line(o, f, rec, line);
        break;
    }
}

void nea__expo_begin(nea__expo *x)
{
    memset(x, 0, sizeof(*x));
}

static void expo_next_family(nea__expo *x)
{
    x->family++;
    x->record = 0;
    x->line = 0;
    x->header_done = false;
    x->have = false;
}

/* Writes the line at x (moving x past units that have no line left, and
 * past routes that counted no request); false at the end of the text. */
static bool expo_line(nea__text *o, nea__expo *x, const nea__records *src, const nea_stats *st)
{
    while (x->family < EXPO_FAMILIES) {
        const struct expo_family *f = &expo_families[x->family];
        if (!x->header_done) {
            put_family(o, f->name, f->type, f->help);
            return true;
        }
        if (f->kind != K_ROUTE) {
            if (x->line < expo_lines(f, st)) {
                expo_body_line(o, f, st, NULL, x->line);
                return true;
            }
            expo_next_family(x);
            continue;
        }
        if (x->record >= src->n) {
            expo_next_family(x);
            continue;
        }
        if (!x->have) {
            x->have = fetch(src, x->record, &x->rec);
            if (!x->have) {
                x->record++; /* counted no request: left out */
                continue;
            }
        }
        if (x->line < expo_lines(f, st)) {
            expo_body_line(o, f, st, &x->rec, x->line);
            return true;
        }
        x->record++;
        x->line = 0;
        x->have = false;
    }
    return false;
}

static void expo_advance(nea__expo *x)
{
    if (!x->header_done) {
        x->header_done = true;
        x->line = 0;
    } else {
        x->line++;
    }
}

size_t nea__metrics_write(const nea__records *src, const nea_stats *st, char *buf, size_t cap)
{
    nea__text o = {buf, cap, 0};
    nea__expo x;
    if (cap > 0) {
        buf[0] = '\0';
    }
    nea__expo_begin(&x);
    while (expo_line(&o, &x, src, st)) {
        expo_advance(&x);
    }
    return o.len;
}

size_t nea__expo_next(nea__expo *x, const nea__records *src, const nea_stats *st, char *buf,
                      size_t cap)
{
    nea__text o = {buf, cap, 0};
    if (cap == 0) {
        return 0;
    }
    buf[0] = '\0';
    for (;;) {
        size_t mark = o.len;
        if (!expo_line(&o, x, src, st)) {
            break;
        }
        if (o.len >= cap) {
            /* It does not fit: cut it off, and write it first next time
             * (from the same record copy). */
            o.len = mark;
            buf[mark] = '\0';
            break;
        }
        expo_advance(x);
    }
    return o.len;
}

/* A label value's escaped length is at most twice its length; the rest of
 * a line (names, other labels, an edge, a 64-bit count, HELP and TYPE) is
 * well under EXPO_LINE_FIXED. */
#define EXPO_LINE_FIXED 256

size_t nea__expo_line_max(const nea__records *src)
{
    size_t most = 0;
    nea_route_stats rec;
    for (unsigned r = 0; r < src->n; r++) {
        size_t n;
        src->read(src->data, r, &rec);
        n = strlen(rec.path) + strlen(rec.method);
        most = n > most ? n : most;
    }
    return EXPO_LINE_FIXED + 2 * most;
}
