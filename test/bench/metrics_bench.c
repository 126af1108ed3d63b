/*
 * metrics_bench.c - micro-benchmark: what counting one finished request in
 * the per-route metrics costs (nea__metrics_record: status class, outcome,
 * bytes, four histograms). Not a test: it prints figures.
 *
 * Each round counts 2 million samples spread over 12 routes, with arena
 * peaks cycling 1..64 KiB and times cycling 5 us..5 ms, so buckets and
 * records change from one sample to the next as in a mixed workload. The
 * same loop without the call (building the samples only) is timed too and
 * subtracted. A request also reads the clock for its durations: the two
 * reads around the handler are shared with the CPU-overload accounting, and
 * the metrics add one at the end (more only when a request waits for an
 * arena, has a body, or is answered later than its handler's first call);
 * that read is printed separately so the total per request is plain. Times are
 * clock_gettime(CLOCK_MONOTONIC) per round, 7 rounds each, interleaved after a warm-up, median
 * reported.
 *
 * Build and run (from the repository root; the recording function is
 * internal, so it links the static testing library, which NEA_BUILD_TESTS=ON
 * provides):
 *
 *   cmake -S . -B build-tools -DCMAKE_BUILD_TYPE=Release -DNEA_BUILD_TOOLS=ON && \
 *     cmake --build build-tools --target metrics_bench
 *   build-tools/tools/metrics_bench [samples-per-round]
 */
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ROUNDS 7
#define ROUTES 12

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t sink;

/* The i-th sample of the mix. */
static void make_sample(nea__sample *s, size_t i)
{
    s->route = (unsigned)(i % (ROUTES + 1));
    s->status = i % 97 == 0 ? 503 : i % 13 == 0 ? 404 : 200;
    s->outcome = i % 97 == 0 ? NEA_OUTCOME_SHED : NEA_OUTCOME_COMPLETED;
    s->bytes_in = 80 + i % 300;
    s->bytes_out = 120 + i % 4000;
    s->arena_peak = (i % 64 + 1) * 1024;
    s->waited = s->handled = true;
    s->queue_ns = i % 7 == 0 ? 20000 : 0;
    s->handler_ns = 5000 + (i % 1000) * 5000;
    s->total_ns = s->handler_ns + 3000;
}

static uint64_t run(nea__metrics *m, size_t n, bool record)
{
    nea__sample s;
    uint64_t t0 = now_ns();
    memset(&s, 0, sizeof(s));
    for (size_t i = 0; i < n; i++) {
        make_sample(&s, i);
        if (record) {
            nea__metrics_record(m, &s);
        } else {
            sink += s.arena_peak + s.route; /* keep the sample alive */
        }
        __asm__ volatile("" ::: "memory");
    }
    return now_ns() - t0;
}

static uint64_t run_clock(size_t n)
{
    uint64_t t0 = now_ns(), sum = 0;
    for (size_t i = 0; i < n; i++) {
        sum += now_ns();
    }
    sink += sum;
    return now_ns() - t0;
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return (a > b) - (a < b);
}

static double median(uint64_t *t, size_t n)
{
    qsort(t, ROUNDS, sizeof(*t), cmp_u64);
    return (double)t[ROUNDS / 2] / (double)n;
}

int main(int argc, char **argv)
{
    static nea_route_stats records[ROUTES + 1];
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 2000000;
    uint64_t tr[ROUNDS], tb[ROUNDS], tc[ROUNDS];
    nea__metrics m;
    nea_route_stats one;
    double rec, base, clk;

    nea__metrics_init(&m, records, ROUTES + 1);
    for (unsigned i = 0; i < ROUTES; i++) {
        nea__metrics_route_added(&m, "GET", "/route", 0);
    }
    (void)run(&m, n / 10 + 1, true); /* warm-up */
    (void)run(&m, n / 10 + 1, false);
    for (int r = 0; r < ROUNDS; r++) {
        tr[r] = run(&m, n, true);
        tb[r] = run(&m, n, false);
        tc[r] = run_clock(n);
    }
    rec = median(tr, n);
    base = median(tb, n);
    clk = median(tc, n);
    printf("metrics_bench: %zu samples per round over %d routes, median of %d rounds\n", n, ROUTES,
           ROUNDS);
    printf("  loop + nea__metrics_record: %6.2f ns/request\n", rec);
    printf("  loop alone:                 %6.2f ns/request\n", base);
    printf("  recording:                  %6.2f ns/request\n", rec - base);
    printf("  one clock read:             %6.2f ns (the metrics add one per plain request)\n", clk);
    printf("  recording + 1 clock read:   %6.2f ns/request\n", rec - base + clk);
    nea__metrics_read(&m, 1, &one); /* requests is derived when read, not stored */
    printf("  (checksum %llu, /route count %llu)\n", (unsigned long long)sink,
           (unsigned long long)one.requests);
    return 0;
}
