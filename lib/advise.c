/*
 * advise.c - the sizing advisor: observed per-route arena peaks in, arena
 * classes for a memory budget out (nea_advise), and the advice as text
 * ready to paste (nea_advice_format).
 *
 * It sits at the top with run.c. It reads the histograms of
 * nea_route_stats, takes its floor (the smallest arena) and its budget (one
 * worker's arena bytes) from plan.c, and asks nea_config_plan whether a
 * layout fits. Pure arithmetic on the caller's data, no allocation:
 *
 *   need(route)  = page_round(max(min_arena, min(quantile(peaks, 1 - oom_rate),
 *                                                largest peak) * (1 + headroom)))
 *   classes      = ascending sizes; a class takes every route whose need is
 *                  within 25% above the smallest need not yet covered, and
 *                  is as large as the largest of them
 *   weight(k)    = the summed total durations of its routes (in-flight time,
 *                  by Little's law proportional to the arenas it holds)
 *   count(k > 0) = weight(k) / sum(weight * stride) * arena budget (>= 1),
 *                  per worker: the budget is one worker's share of
 *                  memory_limit less its slab's fixed part and connections;
 *                  class 0 (the smallest) takes what memory_limit leaves
 */
#include "server.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static bool has_peaks(const nea_route_stats *r)
{
    return r->arena_peak_bytes.count > 0;
}

/* What one route's arena must hold for all but oom_rate of its requests. */
static size_t route_need(const nea_route_stats *r, double oom_rate, unsigned headroom_pct,
                         size_t min_size, const nea_plan *p)
{
    uint64_t q = nea_histogram_quantile(&r->arena_peak_bytes, NEA_HIST_BYTES_LOG2, 1.0 - oom_rate);
    if (q > r->arena_peak_max) {
        q = r->arena_peak_max; /* the largest peak seen is exact */
    }
    q += q / 100 * headroom_pct;
    if (q < min_size) {
        q = min_size;
    }
    return nea__plan_span(p, (size_t)q);
}

static double route_weight(const nea_route_stats *r)
{
    return r->total_ns.sum > 0 ? (double)r->total_ns.sum : (double)r->arena_peak_bytes.count;
}

/* Requests whose peak may have exceeded size: whole buckets above it. */
static uint64_t over(const nea_route_stats *r, size_t size)
{
    uint64_t n = 0;
    if (r->arena_peak_max <= size) {
        return 0;
    }
    for (unsigned i = 0; i < NEA_HIST_BUCKETS; i++) {
        if (nea_histogram_edge(NEA_HIST_BYTES_LOG2, i) > size) {
            n += r->arena_peak_bytes.buckets[i];
        }
    }
    return n;
}

/* Requests of the mix that fit in flight: the class that runs out first
 * decides (count / its share of the in-flight time). */
static double mix_in_flight(const nea_plan *p, const double *weight, double total)
{
    double cap = -1;
    for (unsigned k = 0; k < p->class_count; k++) {
        if (weight[k] > 0) {
            double c = p->classes[k].count / (weight[k] / total);
            cap = cap < 0 || c < cap ? c : cap;
        }
    }
    return cap < 0 ? p->arena_total : cap;
}

int nea_advise(const nea_config *cfg, const nea_route_stats *routes, unsigned n, double oom_rate,
               unsigned headroom_pct, unsigned *route_class, nea_advice *out)
{
    size_t min_size, floor = 0, budget;
    size_t sizes[NEA_ARENA_CLASSES];
    double weight[NEA_ARENA_CLASSES] = {0}, total = 0, held = 0, ideal = 0, one = 0, per = 0;
    double floor_ideal = 0;
    uint64_t requests = 0, overs = 0;
    unsigned k = 0;
    nea_plan p;
    nea_config one_cfg;
    int rc;

    if (n == 0 || !(oom_rate >= 0 && oom_rate < 1)) {
        return UV_EINVAL;
    }
    if ((rc = nea_config_plan(cfg, &p, NULL, 0)) != 0) {
        return rc;
    }
    min_size = nea__plan_min_arena(cfg, nea__server_sizes());
    /* Classes, smallest first. */
    while (k < NEA_ARENA_CLASSES) {
        size_t lo = SIZE_MAX, hi;
        for (unsigned i = 0; i < n; i++) {
            size_t need = has_peaks(&routes[i])
                              ? route_need(&routes[i], oom_rate, headroom_pct, min_size, &p)
                              : 0;
            lo = need > floor && need < lo ? need : lo;
        }
        if (lo == SIZE_MAX) {
            break;
        }
        hi = lo;
        for (unsigned i = 0; i < n; i++) {
            size_t need = has_peaks(&routes[i])
                              ? route_need(&routes[i], oom_rate, headroom_pct, min_size, &p)
                              : 0;
            if (need > floor && (k == NEA_ARENA_CLASSES - 1 || need <= lo + lo / 4) && need > hi) {
                hi = need;
            }
        }
        sizes[k++] = hi;
        floor = hi;
    }
    if (k == 0) {
        sizes[k++] = nea__plan_span(&p, cfg->arena_size); /* nothing observed: as configured */
    }
    for (unsigned i = 0; i < n; i++) {
        const nea_route_stats *r = &routes[i];
        size_t need = has_peaks(r) ? route_need(r, oom_rate, headroom_pct, min_size, &p) : 0;
        unsigned c = 0;
        while (c + 1 < k && sizes[c] < need) {
            c++;
        }
        route_class[i] = c;
        if (has_peaks(r)) {
            double w = route_weight(r);
            double mean = (double)r->arena_peak_bytes.sum / (double)r->arena_peak_bytes.count;
            weight[c] += w;
            total += w;
            held += w * (double)sizes[c];
            ideal += w * mean;
            floor_ideal += w * (mean > (double)min_size ? mean : (double)min_size);
            one += w * (double)sizes[k - 1];
            requests += r->arena_peak_bytes.count;
            overs += over(r, sizes[c]);
        }
    }

    memset(out, 0, sizeof(*out));
    out->cfg = *cfg;
    out->cfg.arena_size = sizes[0];
    out->cfg.arena_count = 0;
    out->cfg.arena_class_count = k - 1;
    out->oom_rate = oom_rate;
    /* The budget for one worker's arenas: its share of memory_limit less
     * what its slab needs besides one arena per class (descriptors of more
     * arenas are a rounding error the plan check below absorbs). Counts
     * are per worker, as the config's are. */
    for (unsigned c = 1; c < k; c++) {
        out->cfg.arena_classes[c - 1] = (nea_arena_class){.size = sizes[c], .count = 1};
    }
    out->cfg.arena_count = 1 + cfg->reserved_arenas;
    if ((rc = nea_config_plan(&out->cfg, &p, NULL, 0)) != 0) {
        return rc;
    }
    budget = nea__plan_arena_budget(cfg, &p);
    for (unsigned c = 0; c < k; c++) {
        per += weight[c] * (double)p.classes[c].stride;
    }
    for (unsigned c = 1; c < k && per > 0; c++) {
        double want = weight[c] / per * (double)budget;
        out->cfg.arena_classes[c - 1].count = want >= 1 ? (unsigned)want : 1;
    }
    out->cfg.arena_count = 0;
    /* Give way, 1% at a time, until class 0 has arenas again. */
    while ((rc = nea_config_plan(&out->cfg, &out->plan, NULL, 0)) != 0) {
        bool shrunk = false;
        for (unsigned c = 1; c < k; c++) {
            unsigned *cnt = &out->cfg.arena_classes[c - 1].count;
            if (*cnt > 1) {
                *cnt -= *cnt / 100 > 0 ? *cnt / 100 : 1;
                shrunk = true;
            }
        }
        if (!shrunk) {
            return rc;
        }
    }
    out->predicted_oom = requests > 0 ? (double)overs / (double)requests : 0;
    out->fit_ratio = ideal > 0 ? held / ideal : 0;
    out->floor_fit = floor_ideal > 0 ? held / floor_ideal : 0;
    out->one_class_fit = ideal > 0 ? one / ideal : 0;
    out->in_flight = mix_in_flight(&out->plan, weight, total) * out->plan.workers;
    one_cfg = *cfg;
    one_cfg.arena_size = sizes[k - 1];
    one_cfg.arena_count = 0;
    one_cfg.arena_class_count = 0;
    if (nea_config_plan(&one_cfg, &p, NULL, 0) == 0) {
        out->in_flight_one_class = (double)p.classes[0].count * p.workers;
    }
    return 0;
}

size_t nea_advice_format(const nea_advice *a, const nea_route_stats *routes, unsigned n,
                         const unsigned *route_class, char *buf, size_t cap)
{
    const nea_plan *p = &a->plan;
    nea__text t = {buf, cap, 0};

    if (cap > 0) {
        buf[0] = '\0';
    }
    nea__textf(&t, "/* libnea sizing advice: memory_limit %zu, target OOM rate %g%% */\n",
               a->cfg.memory_limit, a->oom_rate * 100);
    nea__textf(
        &t, "cfg.arena_size = %zu;\ncfg.arena_count = 0; /* class 0: %u arenas, what is left */\n",
        a->cfg.arena_size, p->classes[0].count);
    nea__textf(&t, "cfg.arena_class_count = %u;\n", a->cfg.arena_class_count);
    for (unsigned c = 0; c < a->cfg.arena_class_count; c++) {
        nea__textf(&t, "cfg.arena_classes[%u] = (nea_arena_class){.size = %zu, .count = %u};\n", c,
                   a->cfg.arena_classes[c].size, a->cfg.arena_classes[c].count);
    }
    for (unsigned i = 0; i < n; i++) {
        if (routes[i].method[0] != '\0' && route_class[i] != 0) {
            nea__textf(&t,
                       "/* nea_server_route_class(s, \"%s\", \"%s\", fn, data, flags, %u); */\n",
                       routes[i].method, routes[i].path, route_class[i]);
        }
    }
    nea__textf(&t, "/* nea-demo: --memory-limit %zu --arena-size %zu --arenas 0",
               a->cfg.memory_limit, a->cfg.arena_size);
    for (unsigned c = 0; c < a->cfg.arena_class_count; c++) {
        nea__textf(&t, " --arena-class %zu:%u", a->cfg.arena_classes[c].size,
                   a->cfg.arena_classes[c].count);
    }
    for (unsigned i = 0; i < n; i++) {
        if (routes[i].method[0] != '\0' && route_class[i] != 0) {
            nea__textf(&t, " --route-class %s=%u", routes[i].path, route_class[i]);
        }
    }
    nea__textf(&t,
               " */\n/* predicted: OOM 500s <= %.4f%%, arena memory %.2fx an ideal per-request fit "
               "(%.2fx above the smallest arena; one class: %.2fx), %.0f requests of this mix in "
               "flight (one class: %.0f, %.2fx) */\n",
               a->predicted_oom * 100, a->fit_ratio, a->floor_fit, a->one_class_fit, a->in_flight,
               a->in_flight_one_class,
               a->in_flight_one_class > 0 ? a->in_flight / a->in_flight_one_class : 0);
    return t.len;
}
