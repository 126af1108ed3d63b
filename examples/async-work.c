/*
 * async-work.c - answering later, the safe way: a job on libuv's thread
 * pool (nea_req_work) and an answer from the host's own timer through a
 * reference (nea_req_ref / nea_ref_req).
 *
 *   GET /primes/N   counts the primes below N (at most 50,000,000) on the
 *                   thread pool and answers the count; a job that outlives
 *                   its request (the 2 s response deadline passed: the
 *                   client got 504; or the client reset the connection) is
 *                   told so when it ends
 *   GET /later/MS   answers "later" after MS ms from a timer the host owns
 *                   (not the request's), through a reference
 *
 * Run: nea-async [port]   (default 8081). Try: curl localhost:8081/primes/2000000,
 * then curl localhost:8081/primes/50000000 (504 after 2 s; the job's end is
 * logged later) and curl localhost:8081/later/500.
 */
#include <nea.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- a job on the thread pool ---------------------------------------------------- */

typedef struct primes_job {
    unsigned long below; /* in */
    unsigned long count; /* out */
} primes_job;

/* Runs on a thread-pool thread: it must not touch the request, only arg. */
static void count_primes(void *arg)
{
    primes_job *j = arg;
    j->count = 0;
    for (unsigned long n = 2; n < j->below; n++) {
        unsigned long d = 2;
        while (d * d <= n && n % d != 0) {
            d++;
        }
        j->count += d * d > n;
    }
}

/* Back on the loop, exactly once. req is NULL when the request was
 * cancelled meanwhile (the client left, a deadline passed, the server
 * drains); the job's memory (arg, in the arena) is still valid here. */
static void primes_done(nea_req *req, void *arg)
{
    primes_job *j = arg;
    char *body;
    if (req == NULL) {
        fprintf(stderr, "primes below %lu: the request is gone; %lu dropped\n", j->below,
                j->count);
        return;
    }
    body = nea_printf(req, "%lu primes below %lu\n", j->count, j->below);
    nea_respond(req, 200, "text/plain", body, strlen(body));
}

static void primes_route(nea_req *req, void *data)
{
    primes_job *j = nea_alloc(req, sizeof(*j)); /* lives until primes_done returns */
    (void)data;
    j->below = strtoul(nea_req_path_tail(req), NULL, 10);
    if (j->below > 50000000ul) {
        nea_respond_static(req, 400, "text/plain", "N: at most 50000000\n", 20);
        return;
    }
    if (nea_req_work(req, count_primes, primes_done, j) != 0) {
        nea_respond_static(req, 503, "text/plain", "busy\n", 5);
    }
}

/* --- an answer from the host's own callback ------------------------------------- */

typedef struct pending {
    uv_timer_t timer; /* the host's: outside the request, not tracked */
    nea_ref ref;      /* never the nea_req pointer */
} pending;

static void answer(nea_req *req, void *arg)
{
    (void)arg;
    nea_respond_static(req, 200, "text/plain", "later\n", 6);
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_timer(uv_timer_t *t)
{
    pending *p = t->data;
    nea_req *req = nea_ref_req(p->ref); /* NULL once the request is gone */
    if (req != NULL) {
        nea_req_run(req, answer, NULL);
    }
    uv_close((uv_handle_t *)&p->timer, on_timer_closed);
}

static void later_route(nea_req *req, void *data)
{
    /* The host's own memory (a database client's request would be the
     * same): plain malloc, freed by the host when its callback is done. */
    pending *p = malloc(sizeof(*p));
    (void)data;
    if (p == NULL) {
        nea_respond_static(req, 503, "text/plain", "busy\n", 5);
        return;
    }
    p->ref = nea_req_ref(req);
    uv_timer_init(nea_req_loop(req), &p->timer);
    p->timer.data = p;
    uv_timer_start(&p->timer, on_timer, strtoul(nea_req_path_tail(req), NULL, 10), 0);
    nea_req_keep(req); /* answered from code libnea does not see */
}

int main(int argc, char **argv)
{
    nea_config cfg;
    nea_route routes[] = {
        {.method = "GET", .path = "/primes/", .fn = primes_route},
        {.method = "GET", .path = "/later/", .fn = later_route},
    };
    nea_config_init(&cfg);
    cfg.port = argc > 1 ? atoi(argv[1]) : 8081;
    cfg.response_timeout_ms = 2000;
    return nea_run(&cfg, routes, sizeof(routes) / sizeof(routes[0]), NULL, NULL) == 0 ? 0 : 1;
}
