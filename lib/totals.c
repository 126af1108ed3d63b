/*
 * totals.c - the process's figures: every worker's counters and per-route
 * records, read from any thread and summed (nea_server_stats,
 * nea_server_worker_stats, nea_server_route_stats, nea_server_metrics_text).
 *
 * Each worker writes its own figures on its own thread only: its counters,
 * which server.c publishes as a snapshot before the worker's loop waits,
 * and its per-route records, which metrics.c writes with relaxed atomic
 * stores. A reader therefore takes no lock on any thread: it reads a worker
 * live when that worker runs on the calling thread and from its snapshot
 * otherwise (nea__server_figures), and the workers add up here (counters
 * by nea__stats_add, records by nea__route_stats_add). Figures of another
 * worker are at most one loop iteration old. With one worker the totals are
 * that worker's own figures.
 */
#include "server.h"

#include <string.h>

void nea_server_stats(const nea_server *s, nea_stats *out)
{
    NEA__NEED(s, "server");
    const nea_server *g = s->group;
    nea_stats one;
    if (g->plan.workers == 1) {
        nea__server_figures(g, out);
        return;
    }
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < g->plan.workers; i++) {
        nea__server_figures(nea__server_worker(g, i), &one);
        nea__stats_add(out, &one);
    }
}

int nea_server_worker_stats(const nea_server *s, unsigned worker, nea_stats *out)
{
    NEA__NEED(s, "server");
    if (worker >= s->plan.workers) {
        return UV_EINVAL;
    }
    nea__server_figures(nea__server_worker(s, worker), out);
    return 0;
}

unsigned nea_server_route_stats_count(const nea_server *s)
{
    NEA__NEED(s, "server");
    return s->group->metrics.count;
}

/* Record i summed over every worker, its names taken from worker 0 (every
 * worker registered the same routes in the same order). */
static void read_route(const void *data, unsigned i, nea_route_stats *out)
{
    const nea_server *g = ((const nea_server *)data)->group;
    nea_route_stats one;
    nea__metrics_read(&g->metrics, i, out);
    for (unsigned w = 1; w < g->plan.workers; w++) {
        nea__metrics_read(&nea__server_worker(g, w)->metrics, i, &one);
        nea__route_stats_add(out, &one);
    }
}

int nea_server_route_stats(const nea_server *s, unsigned i, nea_route_stats *out)
{
    NEA__NEED(s, "server");
    if (i >= nea_server_route_stats_count(s)) {
        return UV_EINVAL;
    }
    read_route(s, i, out);
    return 0;
}

void nea__server_records(const nea_server *s, nea__records *out)
{
    out->n = nea_server_route_stats_count(s);
    out->read = read_route;
    out->data = s;
}

size_t nea_server_metrics_text(const nea_server *s, char *buf, size_t cap)
{
    NEA__NEED(s, "server");
    nea__records src = {nea_server_route_stats_count(s), read_route, s};
    nea_stats st;
    nea_server_stats(s, &st);
    return nea__metrics_write(&src, &st, buf, cap);
}
