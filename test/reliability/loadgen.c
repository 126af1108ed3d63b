/*
 * loadgen.c - open-loop HTTP/1.1 load generator on libuv, for libnea's
 * reliability tests (overload sweep, recovery pulse, hog mix).
 *
 * Open loop: request i of a phase with rate R that starts at T is *intended*
 * to be sent at T + i/R, whatever happened to earlier requests. Latency is
 * measured from that intended time, so time a request spends waiting in this
 * client (no free connection) or in the server's queues is counted, never
 * hidden (no coordinated omission). A 1 ms uv_timer releases every request
 * whose intended time has passed, in bursts when the rate exceeds 1000/s.
 *
 * Each request goes out on an idle keep-alive connection if one exists,
 * else on a new connection while fewer than --connections are open, else it
 * waits in the client queue (its latency still running). One request per
 * connection at a time (no pipelining).
 *
 * Memory is fixed after start: the connection slots are one array, the
 * queue of not-yet-sent first attempts is just a range of request indices
 * (a first attempt's intended time and path are functions of its index),
 * retries live in a fixed-capacity heap, and latencies go to log-bucketed
 * histograms (1 us .. 60 s, < 0.8% bucket width). No per-sample storage.
 *
 * Accounting invariant, checked at exit and reported as "balanced":
 *   sent    == 2xx + 4xx + 500 + 503 + other + errors + timeouts
 *   retries == r2xx + r4xx + r500 + r503 + rother + rerrors + rtimeouts
 * "sent" counts first attempts whose intended time has come (offered load),
 * whether or not they reached a socket ("wire" counts socket writes).
 *
 * Only loopback targets are accepted: this tool exists to load-test servers
 * on the same machine.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#include <uv.h>

#define MAX_PATHS 64
#define MAX_PHASES 64
#define MAX_CONNS 60000
#define RR_MAX 100000      /* longest weighted round-robin cycle */
#define RETRY_CAP 65536    /* retries waiting for their jittered delay */
#define LINE_KEEP 256      /* bytes kept of one response head line */
#define READ_BUF 65536     /* one read buffer shared by all connections */

/* ---------------------------------------------------------------------- */
/* Histogram: HDR-style, values in microseconds.
 *
 * Values 0..255 get one bucket each. Above, each power-of-two range
 * [2^m, 2^(m+1)) is split into 128 equal buckets, so a bucket is at most
 * 1/128 (0.78%) of its values wide. The top value is 60 s = 6e7 us, whose
 * highest bit is 25: buckets = 256 + (25 - 7) * 128 = 2560, 20 KiB per
 * histogram. Larger values are clamped into the last bucket (max is still
 * kept exactly). Percentiles report the bucket's highest value, capped at
 * the exact maximum, so they never understate.
 */
#define H_EXACT 256
#define H_SUB 128
#define H_TOP_US 60000000ULL
#define H_BUCKETS (H_EXACT + (25 - 7) * H_SUB)

typedef struct {
    uint64_t n;
    uint64_t max;
    double sum;
    uint64_t b[H_BUCKETS];
} hist;

static int h_index(uint64_t v)
{
    if (v > H_TOP_US) {
        v = H_TOP_US;
    }
    if (v < H_EXACT) {
        return (int)v;
    }
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - 7; /* v >> shift is in [128, 255] */
    return H_EXACT + (shift - 1) * H_SUB + (int)((v >> shift) - H_SUB);
}

static uint64_t h_upper(int idx)
{
    if (idx < H_EXACT) {
        return (uint64_t)idx;
    }
    int k = idx - H_EXACT;
    int shift = k / H_SUB + 1;
    uint64_t sub = (uint64_t)(k % H_SUB) + H_SUB;
    return ((sub + 1) << shift) - 1;
}

static void h_add(hist *h, uint64_t v)
{
    h->b[h_index(v)]++;
    h->n++;
    h->sum += (double)v;
    if (v > h->max) {
        h->max = v;
    }
}

/* Smallest recorded value v such that at least p% of samples are <= v. */
static uint64_t h_pct(const hist *h, double p)
{
    if (h->n == 0) {
        return 0;
    }
    uint64_t want = (uint64_t)ceil(p / 100.0 * (double)h->n);
    if (want < 1) {
        want = 1;
    }
    uint64_t seen = 0;
    for (int i = 0; i < H_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want) {
            uint64_t u = h_upper(i);
            return u < h->max ? u : h->max;
        }
    }
    return h->max;
}

/* ---------------------------------------------------------------------- */
/* Counters. One set per interval, one for the whole run, one per phase.  */

enum { K_2XX, K_4XX, K_500, K_503, K_OTHER, K_N };
static const char *const k_name[K_N] = {"2xx", "4xx", "500", "503", "other"};

typedef struct {
    uint64_t sent;      /* first attempts whose intended time has come */
    uint64_t wire;      /* requests written to a socket (incl. retries) */
    uint64_t k[K_N];    /* first-attempt responses by status class */
    uint64_t err_conn;  /* connect failed (refused, ...) */
    uint64_t err_io;    /* reset / closed before a full response / write error */
    uint64_t err_proto; /* response we could not parse */
    uint64_t err_stale; /* subset of err_io: reused keep-alive conn, no byte back */
    uint64_t tmo;       /* no full response within --timeout-ms of intended time */
    uint64_t retry;     /* retries scheduled after a first-attempt 503 */
    uint64_t rk[K_N];   /* retry responses by status class */
    uint64_t rerr;
    uint64_t rtmo;
    uint64_t rskip;     /* 503s not retried: retry would start after the end */
    uint64_t w2xx;      /* 2xx (incl. retries) completed inside this window */
    uint64_t w503;      /* 503 (incl. retries) completed inside this window */
    hist ok;            /* latency of 2xx responses (first attempts and retries) */
    hist s503;          /* latency of 503 responses (first attempts and retries) */
    hist lag;           /* intended time -> written to socket */
    hist ok_svc;        /* 2xx latency from the socket write (not CO-free) */
    hist s503_svc;      /* 503 latency from the socket write (not CO-free) */
} stats;

/* ---------------------------------------------------------------------- */
/* Requests and connections.                                               */

typedef struct {
    uint64_t t;     /* intended send time, uv_hrtime() ns */
    uint32_t path;  /* index into paths */
    uint16_t phase; /* phase the request is attributed to */
    uint8_t retry;  /* 1 for the retry of a 503 */
} rreq;

enum { C_FREE, C_CONNECTING, C_IDLE, C_BUSY, C_CLOSING };
enum {
    P_STATUS,
    P_HEADERS,
    P_BODY,
    P_BODY_EOF,
    P_CHUNK_SIZE,
    P_CHUNK_DATA,
    P_CHUNK_END,
    P_TRAILER,
    P_DONE
};

typedef struct conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    int state;
    struct conn *next_free;
    struct conn *idle_prev, *idle_next;
    int has_req;
    int writing;      /* a uv_write on wreq has not called back yet */
    rreq r;
    uint32_t nreq;    /* requests started on this connection */
    uint64_t rx;      /* bytes received for the current request */
    uint64_t t_sent;  /* uv_hrtime() when the current request was written */
    /* response parser */
    int ps;
    int status;
    int keep;
    int chunked;
    int have_cl;
    int proto_err;
    uint64_t remain;
    size_t linelen;
    char line[LINE_KEEP];
} conn;

/* ---------------------------------------------------------------------- */
/* Global state: one load generator per process.                           */

static struct {
    /* options */
    char host[64];
    int port;
    struct sockaddr_storage addr;
    int has_source;
    struct sockaddr_in source; /* --source: every connection's local address */
    int nphases;
    double ph_rate[MAX_PHASES];
    double ph_secs[MAX_PHASES];
    int npaths;
    char *path[MAX_PATHS];
    unsigned weight[MAX_PATHS];
    int conns_max;
    int retry503;
    uint64_t timeout_ms;
    uint64_t interval_ms;
    int json;
    uint64_t seed;

    /* derived schedule */
    uint64_t ph_first[MAX_PHASES]; /* index of the phase's first request */
    uint64_t ph_count[MAX_PHASES];
    uint64_t ph_start[MAX_PHASES]; /* ns offset from t0 */
    uint64_t total;                /* first attempts in the whole run */
    uint32_t *rr;                  /* path index per slot of the cycle */
    uint32_t rr_len;
    uv_buf_t reqbuf[MAX_PATHS];    /* pre-built request text per path */

    /* run state */
    uv_loop_t *loop;
    uv_timer_t tick, iv;
    uv_signal_t sigint, sigterm;
    uint64_t t0, t_end, deadline, tmo_ns, iv_last;
    uint64_t gen;                  /* next first attempt to release */
    uint64_t q_head;               /* next released first attempt to send */
    uint64_t outstanding;          /* released or scheduled, not yet resolved */
    uint64_t gen_lag_max;          /* ns the tick released a request late */
    uint64_t last_scan;            /* last in-flight timeout scan */
    int stopping;
    int interrupted;

    conn *conns;
    int conns_hw;                  /* slots ever used: [0, conns_hw) */
    conn *free_list;
    conn *idle_head;
    int n_open, n_open_max, n_idle, n_busy;

    rreq *heap;                    /* retries, min-heap by t */
    int heap_n;

    uint64_t rng;
    stats iv_st, tot;
    stats *ph_st;
    char rbuf[READ_BUF];
} g;

/* Every counted event goes to the interval, the run and the request's phase. */
#define EACH_STATS(phase, body)                                                                    \
    do {                                                                                           \
        stats *each_[3] = {&g.iv_st, &g.tot, &g.ph_st[(phase)]};                                   \
        for (int each_i_ = 0; each_i_ < 3; each_i_++) {                                            \
            stats *s = each_[each_i_];                                                             \
            body;                                                                                  \
        }                                                                                          \
    } while (0)

static void dispatch(void);
static void conn_close(conn *c);
static void finish(void);

static uint64_t rng_next(void)
{
    /* xorshift64*: deterministic jitter, seeded by --seed */
    g.rng ^= g.rng >> 12;
    g.rng ^= g.rng << 25;
    g.rng ^= g.rng >> 27;
    return g.rng * 2685821657736338717ULL;
}

/* ---------------------------------------------------------------------- */
/* Schedule                                                                 */

/* Intended time (ns, absolute) and phase of first attempt i < g.total. */
static uint64_t intended(uint64_t i, int *phase)
{
    for (int p = 0; p < g.nphases; p++) {
        if (i < g.ph_first[p] + g.ph_count[p]) {
            *phase = p;
            double off = (double)(i - g.ph_first[p]) * 1e9 / g.ph_rate[p];
            return g.t0 + g.ph_start[p] + (uint64_t)off;
        }
    }
    *phase = g.nphases - 1;
    return g.t_end;
}

static rreq first_attempt(uint64_t i)
{
    rreq r;
    int phase;
    r.t = intended(i, &phase);
    r.phase = (uint16_t)phase;
    r.path = g.rr[i % g.rr_len];
    r.retry = 0;
    return r;
}

/* ---------------------------------------------------------------------- */
/* Retry heap (min by intended time)                                        */

static void heap_push(rreq r)
{
    int i = g.heap_n++;
    while (i > 0) {
        int up = (i - 1) / 2;
        if (g.heap[up].t <= r.t) {
            break;
        }
        g.heap[i] = g.heap[up];
        i = up;
    }
    g.heap[i] = r;
}

static rreq heap_pop(void)
{
    rreq top = g.heap[0];
    rreq last = g.heap[--g.heap_n];
    int i = 0;
    for (;;) {
        int l = 2 * i + 1;
        if (l >= g.heap_n) {
            break;
        }
        int m = (l + 1 < g.heap_n && g.heap[l + 1].t < g.heap[l].t) ? l + 1 : l;
        if (g.heap[m].t >= last.t) {
            break;
        }
        g.heap[i] = g.heap[m];
        i = m;
    }
    if (g.heap_n > 0) {
        g.heap[i] = last;
    }
    return top;
}

/* ---------------------------------------------------------------------- */
/* Outcomes: each released request ends in exactly one of these.           */

static int status_class(int status)
{
    if (status >= 200 && status < 300) {
        return K_2XX;
    }
    if (status >= 400 && status < 500) {
        return K_4XX;
    }
    if (status == 500) {
        return K_500;
    }
    if (status == 503) {
        return K_503;
    }
    return K_OTHER;
}

/* Phase whose time window contains absolute time t, or -1 after the end. */
static int phase_at(uint64_t t)
{
    uint64_t off = t - g.t0;
    for (int p = 0; p < g.nphases; p++) {
        uint64_t end = p + 1 < g.nphases ? g.ph_start[p + 1] : g.t_end - g.t0;
        if (off < end) {
            return p;
        }
    }
    return -1;
}

static void outcome_response(const rreq *r, int status, uint64_t t_sent, uint64_t now)
{
    int k = status_class(status);
    uint64_t lat_us = now > r->t ? (now - r->t) / 1000 : 0;
    uint64_t svc_us = now > t_sent ? (now - t_sent) / 1000 : 0;
    EACH_STATS(r->phase, {
        if (r->retry) {
            s->rk[k]++;
        } else {
            s->k[k]++;
        }
        if (k == K_2XX) {
            h_add(&s->ok, lat_us);
            h_add(&s->ok_svc, svc_us);
        } else if (k == K_503) {
            h_add(&s->s503, lat_us);
            h_add(&s->s503_svc, svc_us);
        }
    });
    g.outstanding--;

    /* Goodput counts completions by when they happen, so responses that
     * trickle in after a window (queued work draining) do not inflate it. */
    if (k == K_2XX || k == K_503) {
        int wp = phase_at(now);
        stats *win[3] = {&g.iv_st, wp >= 0 ? &g.tot : NULL, wp >= 0 ? &g.ph_st[wp] : NULL};
        for (int i = 0; i < 3; i++) {
            if (win[i] && k == K_2XX) {
                win[i]->w2xx++;
            } else if (win[i]) {
                win[i]->w503++;
            }
        }
    }

    if (k == K_503 && !r->retry && g.retry503) {
        uint64_t delay_ms = 50 + rng_next() % 101; /* 50..150 ms */
        rreq rr = *r;
        rr.t = now + delay_ms * 1000000ULL;
        rr.retry = 1;
        if (rr.t >= g.t_end || g.heap_n >= RETRY_CAP || g.stopping) {
            EACH_STATS(r->phase, s->rskip++);
        } else {
            heap_push(rr);
            g.outstanding++;
            EACH_STATS(r->phase, s->retry++);
        }
    }
}

enum { E_CONN, E_IO, E_PROTO, E_STALE };

static void outcome_error(const rreq *r, int kind)
{
    EACH_STATS(r->phase, {
        if (r->retry) {
            s->rerr++;
        } else if (kind == E_CONN) {
            s->err_conn++;
        } else if (kind == E_PROTO) {
            s->err_proto++;
        } else {
            s->err_io++;
            if (kind == E_STALE) {
                s->err_stale++;
            }
        }
    });
    g.outstanding--;
}

static void outcome_timeout(const rreq *r)
{
    EACH_STATS(r->phase, {
        if (r->retry) {
            s->rtmo++;
        } else {
            s->tmo++;
        }
    });
    g.outstanding--;
}

/* ---------------------------------------------------------------------- */
/* Connection pool                                                          */

static void idle_push(conn *c)
{
    c->state = C_IDLE;
    c->idle_prev = NULL;
    c->idle_next = g.idle_head;
    if (g.idle_head) {
        g.idle_head->idle_prev = c;
    }
    g.idle_head = c;
    g.n_idle++;
}

static void idle_remove(conn *c)
{
    if (c->idle_prev) {
        c->idle_prev->idle_next = c->idle_next;
    } else {
        g.idle_head = c->idle_next;
    }
    if (c->idle_next) {
        c->idle_next->idle_prev = c->idle_prev;
    }
    c->idle_prev = c->idle_next = NULL;
    g.n_idle--;
}

static void on_close(uv_handle_t *h)
{
    conn *c = h->data;
    c->state = C_FREE;
    c->next_free = g.free_list;
    g.free_list = c;
    g.n_open--;
    if (!g.stopping) {
        dispatch(); /* a slot came free: a queued request may connect */
    }
}

static void conn_close(conn *c)
{
    if (c->state == C_CLOSING || c->state == C_FREE) {
        return;
    }
    if (c->state == C_IDLE) {
        idle_remove(c);
    } else if (c->state == C_BUSY) {
        g.n_busy--;
    }
    c->state = C_CLOSING;
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void conn_fail(conn *c, int kind)
{
    if (c->has_req) {
        c->has_req = 0;
        outcome_error(&c->r, kind);
    }
    conn_close(c);
}

static void on_write(uv_write_t *w, int status)
{
    conn *c = w->handle->data;
    c->writing = 0;
    if (status < 0 && c->state != C_CLOSING) {
        conn_fail(c, E_IO);
    }
}

static void parser_reset(conn *c)
{
    c->ps = P_STATUS;
    c->status = 0;
    c->keep = 1;
    c->chunked = 0;
    c->have_cl = 0;
    c->proto_err = 0;
    c->remain = 0;
    c->linelen = 0;
    c->rx = 0;
}

static void send_current(conn *c)
{
    uint64_t now = uv_hrtime();
    c->t_sent = now;
    c->has_req = 1;
    c->nreq++;
    c->state = C_BUSY;
    g.n_busy++;
    parser_reset(c);
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &g.reqbuf[c->r.path], 1, on_write);
    c->writing = rc == 0;
    if (rc < 0) {
        conn_fail(c, E_IO);
        return;
    }
    uint64_t lag_us = now > c->r.t ? (now - c->r.t) / 1000 : 0;
    EACH_STATS(c->r.phase, {
        s->wire++;
        h_add(&s->lag, lag_us);
    });
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    /* libuv calls alloc, reads, then calls read_cb before the next alloc,
     * so one buffer serves every connection. */
    buf->base = g.rbuf;
    buf->len = sizeof g.rbuf;
}

/* ---------------------------------------------------------------------- */
/* Response parser: status line, headers, Content-Length / chunked /
 * read-until-close bodies. Data may arrive split at any byte.             */

static int ci_prefix(const char *s, size_t n, const char *pfx, size_t *vlen_off)
{
    size_t pl = strlen(pfx);
    if (n < pl || strncasecmp(s, pfx, pl) != 0) {
        return 0;
    }
    *vlen_off = pl;
    return 1;
}

static int ci_contains(const char *s, size_t n, const char *needle)
{
    size_t nl = strlen(needle);
    for (size_t i = 0; i + nl <= n; i++) {
        if (strncasecmp(s + i, needle, nl) == 0) {
            return 1;
        }
    }
    return 0;
}

static void head_line(conn *c, const char *s, size_t n)
{
    size_t off;
    switch (c->ps) {
    case P_STATUS:
        if (n == 0) {
            return; /* tolerate a stray empty line before the status line */
        }
        if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)s[7]) ||
            s[8] != ' ' || !isdigit((unsigned char)s[9]) || !isdigit((unsigned char)s[10]) ||
            !isdigit((unsigned char)s[11])) {
            c->proto_err = 1;
            return;
        }
        c->keep = s[7] >= '1'; /* HTTP/1.0 closes unless it says keep-alive */
        c->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
        c->chunked = 0;
        c->have_cl = 0;
        c->ps = P_HEADERS;
        return;
    case P_HEADERS:
        if (n == 0) {
            if (c->status >= 100 && c->status < 200) {
                if (c->status == 101) {
                    c->proto_err = 1; /* no upgrades here */
                } else {
                    c->ps = P_STATUS; /* interim response, the real one follows */
                }
            } else if (c->status == 204 || c->status == 304) {
                c->ps = P_DONE;
            } else if (c->chunked) {
                c->ps = P_CHUNK_SIZE;
            } else if (c->have_cl) {
                c->ps = c->remain ? P_BODY : P_DONE;
            } else {
                c->ps = P_BODY_EOF;
                c->keep = 0;
            }
            return;
        }
        if (ci_prefix(s, n, "content-length:", &off)) {
            uint64_t v = 0;
            int digits = 0;
            while (off < n && (s[off] == ' ' || s[off] == '\t')) {
                off++;
            }
            while (off < n && isdigit((unsigned char)s[off]) && digits < 19) {
                v = v * 10 + (uint64_t)(s[off] - '0');
                off++;
                digits++;
            }
            if (digits == 0) {
                c->proto_err = 1;
                return;
            }
            c->have_cl = 1;
            c->remain = v;
        } else if (ci_prefix(s, n, "transfer-encoding:", &off)) {
            if (ci_contains(s + off, n - off, "chunked")) {
                c->chunked = 1;
            }
        } else if (ci_prefix(s, n, "connection:", &off)) {
            if (ci_contains(s + off, n - off, "close")) {
                c->keep = 0;
            } else if (ci_contains(s + off, n - off, "keep-alive")) {
                c->keep = 1;
            }
        }
        return;
    case P_CHUNK_SIZE: {
        uint64_t v = 0;
        size_t i = 0;
        int digits = 0;
        while (i < n && isxdigit((unsigned char)s[i]) && digits < 15) {
            int ch = tolower((unsigned char)s[i]);
            v = v * 16 + (uint64_t)(isdigit(ch) ? ch - '0' : ch - 'a' + 10);
            i++;
            digits++;
        }
        if (digits == 0) {
            c->proto_err = 1;
            return;
        }
        if (v == 0) {
            c->ps = P_TRAILER;
        } else {
            c->remain = v;
            c->ps = P_CHUNK_DATA;
        }
        return;
    }
    case P_CHUNK_END:
        if (n != 0) {
            c->proto_err = 1;
            return;
        }
        c->ps = P_CHUNK_SIZE;
        return;
    case P_TRAILER:
        if (n == 0) {
            c->ps = P_DONE;
        }
        return;
    default:
        c->proto_err = 1;
        return;
    }
}

/* Feed bytes; returns how many were consumed (stops at the response end). */
static size_t parse(conn *c, const char *p, size_t n)
{
    size_t used = 0;
    while (used < n && c->ps != P_DONE && !c->proto_err) {
        const char *s = p + used;
        size_t left = n - used;
        switch (c->ps) {
        case P_BODY:
        case P_CHUNK_DATA: {
            size_t take = left < c->remain ? left : (size_t)c->remain;
            c->remain -= take;
            used += take;
            if (c->remain == 0) {
                c->ps = c->ps == P_BODY ? P_DONE : P_CHUNK_END;
            }
            break;
        }
        case P_BODY_EOF:
            used = n;
            break;
        default: {
            const char *nl = memchr(s, '\n', left);
            size_t seg = nl ? (size_t)(nl - s) : left;
            size_t room = sizeof c->line - c->linelen;
            size_t keep = seg < room ? seg : room; /* long lines are truncated */
            memcpy(c->line + c->linelen, s, keep);
            c->linelen += keep;
            if (!nl) {
                used = n;
                break;
            }
            used += seg + 1;
            size_t ln = c->linelen;
            if (ln > 0 && c->line[ln - 1] == '\r') {
                ln--;
            }
            c->linelen = 0;
            head_line(c, c->line, ln);
            break;
        }
        }
    }
    return used;
}

static void response_done(conn *c, int extra)
{
    c->has_req = 0;
    outcome_response(&c->r, c->status, c->t_sent, uv_hrtime());
    /* Reuse only a clean keep-alive connection whose write has completed
     * (libuv runs write callbacks before the next poll, so the last case is
     * a guard, not an expected path). */
    if (c->keep && !extra && !c->writing && !g.stopping) {
        g.n_busy--;
        idle_push(c);
        dispatch();
    } else {
        conn_close(c);
    }
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = st->data;
    if (c->state == C_CLOSING || c->state == C_FREE || nread == 0) {
        return;
    }
    if (nread < 0) {
        if (c->has_req && c->ps == P_BODY_EOF && nread == UV_EOF) {
            response_done(c, 0); /* body delimited by close */
            return;
        }
        if (c->has_req) {
            int stale = c->nreq > 1 && c->rx == 0;
            conn_fail(c, stale ? E_STALE : E_IO);
        } else {
            conn_close(c); /* server closed an idle keep-alive connection */
        }
        return;
    }
    if (!c->has_req) {
        conn_close(c); /* bytes nobody asked for: do not reuse */
        return;
    }
    size_t n = (size_t)nread;
    c->rx += n;
    size_t used = parse(c, buf->base, n);
    if (c->proto_err) {
        conn_fail(c, E_PROTO);
    } else if (c->ps == P_DONE) {
        response_done(c, used < n);
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    conn *c = req->handle->data;
    if (c->state == C_CLOSING) {
        return; /* timed out or shutting down while connecting */
    }
    if (status < 0) {
        conn_fail(c, E_CONN);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc < 0) {
        conn_fail(c, E_IO);
        return;
    }
    send_current(c);
}

static void conn_open(conn *c)
{
    uv_tcp_init(g.loop, &c->tcp);
    c->tcp.data = c;
    c->state = C_CONNECTING;
    c->has_req = 1;
    c->nreq = 0;
    g.n_open++;
    if (g.n_open > g.n_open_max) {
        g.n_open_max = g.n_open;
    }
    if (g.has_source) {
        /* Port 0: the kernel picks one; only the address is chosen. */
        (void)uv_tcp_bind(&c->tcp, (const struct sockaddr *)&g.source, 0);
    }
    int rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&g.addr, on_connect);
    if (rc < 0) {
        conn_fail(c, E_CONN); /* e.g. EMFILE: no socket could be made */
    }
}

static conn *slot_get(void)
{
    if (g.free_list) {
        conn *c = g.free_list;
        g.free_list = c->next_free;
        return c;
    }
    if (g.conns_hw < g.conns_max) {
        return &g.conns[g.conns_hw++];
    }
    return NULL;
}

/* Send queued requests (retries and first attempts, earliest intended time
 * first) while an idle connection or a free slot exists. */
static void dispatch(void)
{
    if (g.stopping) {
        return;
    }
    uint64_t now = uv_hrtime();
    for (;;) {
        int have_fresh = g.q_head < g.gen;
        int have_retry = g.heap_n > 0 && g.heap[0].t <= now;
        if (!have_fresh && !have_retry) {
            return;
        }
        rreq fresh = {0, 0, 0, 0};
        if (have_fresh) {
            fresh = first_attempt(g.q_head);
        }
        int use_retry = have_retry && (!have_fresh || g.heap[0].t < fresh.t);

        conn *c = g.idle_head;
        if (c) {
            idle_remove(c);
        } else {
            c = slot_get();
            if (!c) {
                return; /* all C connections busy: requests wait, latency runs */
            }
        }
        rreq r;
        if (use_retry) {
            r = heap_pop();
        } else {
            r = fresh;
            g.q_head++;
        }
        c->r = r;
        if (c->state == C_IDLE) {
            send_current(c);
        } else {
            conn_open(c);
        }
    }
}

/* ---------------------------------------------------------------------- */
/* Timers                                                                   */

static void release(uint64_t now)
{
    while (g.gen < g.total) {
        int phase;
        uint64_t t = intended(g.gen, &phase);
        if (t > now) {
            break;
        }
        if (now - t > g.gen_lag_max) {
            g.gen_lag_max = now - t;
        }
        EACH_STATS(phase, s->sent++);
        g.outstanding++;
        g.gen++;
    }
}

static void expire(uint64_t now)
{
    while (g.q_head < g.gen) {
        rreq r = first_attempt(g.q_head);
        if (r.t + g.tmo_ns > now) {
            break;
        }
        outcome_timeout(&r);
        g.q_head++;
    }
    while (g.heap_n > 0 && g.heap[0].t + g.tmo_ns <= now) {
        rreq r = heap_pop();
        outcome_timeout(&r);
    }
    /* Scanning every slot each millisecond is cheap up to about a thousand
     * connections; above that, every 10 ms is precise enough for timeouts
     * of seconds and keeps the scan under ~6M slot checks per second. */
    if (g.conns_hw > 1024 && now - g.last_scan < 10000000ULL) {
        return;
    }
    g.last_scan = now;
    for (int i = 0; i < g.conns_hw; i++) {
        conn *c = &g.conns[i];
        if (c->has_req && (c->state == C_BUSY || c->state == C_CONNECTING) &&
            c->r.t + g.tmo_ns <= now) {
            c->has_req = 0;
            outcome_timeout(&c->r);
            conn_close(c); /* a late response must not be read as the next one's */
        }
    }
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
    uint64_t now = uv_hrtime();
    release(now);
    expire(now);
    dispatch();
    if ((g.gen >= g.total && g.outstanding == 0 && now >= g.t_end) || now >= g.deadline ||
        g.interrupted) {
        finish();
    }
}

/* ---------------------------------------------------------------------- */
/* Output                                                                   */

typedef struct {
    char buf[16384];
    size_t len;
    int json;
    int first;
} out;

static void out_raw(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void out_raw(out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = sizeof o->buf - o->len;
    int n = vsnprintf(o->buf + o->len, room, fmt, ap);
    va_end(ap);
    if (n > 0) {
        o->len += (size_t)n < room ? (size_t)n : room - 1;
    }
}

static void out_sep(out *o, const char *key)
{
    if (o->json) {
        out_raw(o, "%s\"%s\":", o->first ? "" : ",", key);
    } else {
        out_raw(o, "%s%s=", o->first ? "" : " ", key);
    }
    o->first = 0;
}

static void out_u(out *o, const char *key, uint64_t v)
{
    out_sep(o, key);
    out_raw(o, "%" PRIu64, v);
}

static void out_f(out *o, const char *key, double v, int prec)
{
    out_sep(o, key);
    out_raw(o, "%.*f", prec, v);
}

static void out_s(out *o, const char *key, const char *v)
{
    out_sep(o, key);
    out_raw(o, o->json ? "\"%s\"" : "%s", v);
}

/* A latency figure: null (JSON) or '-' (text) when there are no samples. */
static void out_lat(out *o, const char *key, const hist *h, double p)
{
    out_sep(o, key);
    if (h->n == 0) {
        out_raw(o, o->json ? "null" : "-");
    } else if (p < 0) {
        out_raw(o, "%" PRIu64, h->max);
    } else {
        out_raw(o, "%" PRIu64, h_pct(h, p));
    }
}

static uint64_t errors_of(const stats *s)
{
    return s->err_conn + s->err_io + s->err_proto;
}

static uint64_t completed_of(const stats *s)
{
    uint64_t n = 0;
    for (int k = 0; k < K_N; k++) {
        n += s->k[k];
    }
    return n;
}

static uint64_t rcompleted_of(const stats *s)
{
    uint64_t n = 0;
    for (int k = 0; k < K_N; k++) {
        n += s->rk[k];
    }
    return n;
}

/* The fields shared by interval lines, the summary and its phases. */
static void out_stats(out *o, const stats *s, double secs, int full)
{
    out_u(o, "sent", s->sent);
    out_u(o, "wire", s->wire);
    for (int k = 0; k < K_N; k++) {
        out_u(o, k_name[k], s->k[k]);
    }
    out_u(o, "err", errors_of(s));
    out_u(o, "tmo", s->tmo);
    out_u(o, "retry", s->retry);
    out_u(o, "r2xx", s->rk[K_2XX]);
    out_u(o, "r503", s->rk[K_503]);
    if (full) {
        out_u(o, "r4xx", s->rk[K_4XX]);
        out_u(o, "r500", s->rk[K_500]);
        out_u(o, "rother", s->rk[K_OTHER]);
        out_u(o, "rerr", s->rerr);
        out_u(o, "rtmo", s->rtmo);
        out_u(o, "rskip", s->rskip);
        out_u(o, "completed", completed_of(s));
        out_u(o, "err_connect", s->err_conn);
        out_u(o, "err_io", s->err_io);
        out_u(o, "err_stale", s->err_stale);
        out_u(o, "err_proto", s->err_proto);
    }
    double d = secs > 0 ? secs : 1;
    out_f(o, "goodput", (double)s->w2xx / d, 1);
    out_f(o, "rate503", (double)s->w503 / d, 1);
    out_lat(o, "ok_p50", &s->ok, 50);
    if (full) {
        out_lat(o, "ok_p90", &s->ok, 90);
    }
    out_lat(o, "ok_p99", &s->ok, 99);
    if (full) {
        out_lat(o, "ok_p999", &s->ok, 99.9);
    }
    out_lat(o, "ok_max", &s->ok, -1);
    out_lat(o, "503_p50", &s->s503, 50);
    out_lat(o, "503_p99", &s->s503, 99);
    out_lat(o, "503_max", &s->s503, -1);
    if (full) {
        out_lat(o, "ok_svc_p50", &s->ok_svc, 50);
    }
    out_lat(o, "ok_svc_p99", &s->ok_svc, 99);
    if (full) {
        out_lat(o, "ok_svc_max", &s->ok_svc, -1);
        out_lat(o, "503_svc_p50", &s->s503_svc, 50);
    }
    out_lat(o, "503_svc_p99", &s->s503_svc, 99);
    if (full) {
        out_lat(o, "503_svc_max", &s->s503_svc, -1);
        out_lat(o, "lag_p50", &s->lag, 50);
        out_lat(o, "lag_p99", &s->lag, 99);
        out_lat(o, "lag_max", &s->lag, -1);
    }
}

static void out_begin(out *o, const char *type)
{
    o->len = 0;
    o->json = g.json;
    o->first = 1;
    if (o->json) {
        out_raw(o, "{");
        out_s(o, "type", type);
    } else if (strcmp(type, "interval") != 0) {
        out_raw(o, "%s", type);
        o->first = 0;
    }
}

static void out_end(out *o)
{
    if (o->json) {
        out_raw(o, "}");
    }
    out_raw(o, "\n");
    fwrite(o->buf, 1, o->len, stdout);
    fflush(stdout);
}

static void print_interval(uint64_t now)
{
    static out o;
    double secs = (double)(now - g.iv_last) / 1e9;
    out_begin(&o, "interval");
    out_f(&o, "t", (double)(now - g.t0) / 1e9, 3);
    out_stats(&o, &g.iv_st, secs, 0);
    out_u(&o, "queue", (g.gen - g.q_head) + (uint64_t)g.heap_n);
    out_u(&o, "inflight", (uint64_t)g.n_busy);
    out_u(&o, "conns", (uint64_t)g.n_open);
    out_end(&o);
    memset(&g.iv_st, 0, sizeof g.iv_st);
    g.iv_last = now;
}

static void on_interval(uv_timer_t *t)
{
    (void)t;
    print_interval(uv_hrtime());
}

static double sched_secs(void)
{
    double d = 0;
    for (int p = 0; p < g.nphases; p++) {
        d += g.ph_secs[p];
    }
    return d;
}

static int balanced(const stats *s)
{
    return s->sent == completed_of(s) + errors_of(s) + s->tmo &&
           s->retry == rcompleted_of(s) + s->rerr + s->rtmo;
}

static void print_summary(uint64_t now)
{
    static out o;
    char target[128];
    snprintf(target, sizeof target, "%s:%d", g.host, g.port);
    out_begin(&o, "summary");
    out_s(&o, "target", target);
    out_f(&o, "duration_s", sched_secs(), 3);
    out_f(&o, "elapsed_s", (double)(now - g.t0) / 1e9, 3);
    out_u(&o, "connections", (uint64_t)g.conns_max);
    out_u(&o, "timeout_ms", g.timeout_ms);
    out_u(&o, "retry_503", (uint64_t)g.retry503);
    out_stats(&o, &g.tot, sched_secs(), 1);
    out_u(&o, "conns_max_open", (uint64_t)g.n_open_max);
    out_f(&o, "gen_lag_max_us", (double)g.gen_lag_max / 1e3, 0);
    out_u(&o, "interrupted", (uint64_t)g.interrupted);
    out_sep(&o, "balanced");
    out_raw(&o, balanced(&g.tot) ? "true" : "false");
    if (g.json) {
        out_raw(&o, ",\"phases\":[");
        for (int p = 0; p < g.nphases; p++) {
            out_raw(&o, "%s{", p ? "," : "");
            o.first = 1;
            out_f(&o, "rate", g.ph_rate[p], 3);
            out_f(&o, "seconds", g.ph_secs[p], 3);
            out_stats(&o, &g.ph_st[p], g.ph_secs[p], 1);
            out_raw(&o, "}");
        }
        out_raw(&o, "]");
        out_end(&o);
    } else {
        out_end(&o);
        for (int p = 0; p < g.nphases; p++) {
            out_begin(&o, "phase");
            out_u(&o, "index", (uint64_t)p);
            out_f(&o, "rate", g.ph_rate[p], 3);
            out_f(&o, "seconds", g.ph_secs[p], 3);
            out_stats(&o, &g.ph_st[p], g.ph_secs[p], 1);
            out_end(&o);
        }
    }
}

static int stats_empty(const stats *s)
{
    return s->sent == 0 && s->wire == 0 && completed_of(s) == 0 && errors_of(s) == 0 &&
           s->tmo == 0 && s->retry == 0 && rcompleted_of(s) == 0 && s->rerr == 0 &&
           s->rtmo == 0 && s->rskip == 0;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) {
        if (h->type == UV_TCP) {
            conn_close(h->data);
        } else {
            uv_close(h, NULL);
        }
    }
}

static void finish(void)
{
    if (g.stopping) {
        return;
    }
    g.stopping = 1;
    uint64_t now = uv_hrtime();
    /* Anything unresolved at the hard deadline counts as a timeout. By
     * construction expire() has already resolved everything by then. */
    while (g.q_head < g.gen) {
        rreq r = first_attempt(g.q_head++);
        outcome_timeout(&r);
    }
    while (g.heap_n > 0) {
        rreq r = heap_pop();
        outcome_timeout(&r);
    }
    for (int i = 0; i < g.conns_hw; i++) {
        conn *c = &g.conns[i];
        if (c->has_req) {
            c->has_req = 0;
            outcome_timeout(&c->r);
        }
    }
    if (g.interval_ms > 0 && !stats_empty(&g.iv_st)) {
        print_interval(now); /* the last, partial interval */
    }
    uv_walk(g.loop, close_walk, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    (void)signum;
    g.interrupted = 1; /* the next tick prints the summary and exits */
}

/* ---------------------------------------------------------------------- */
/* Options                                                                  */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: loadgen --port N [--host 127.0.0.1]\n"
            "               (--rate R --duration S | --phase RATE:SECONDS ...)\n"
            "               [--connections C] [--path /p[:WEIGHT] ...] [--retry-503]\n"
            "               [--timeout-ms MS] [--interval-ms MS] [--json] [--seed N]\n"
            "\n"
            "Open-loop HTTP/1.1 GET load: request i of a phase is intended at\n"
            "phase_start + i/RATE; latency is measured from that intended time.\n"
            "  --host IP           loopback address only (127.0.0.0/8, ::1, localhost)\n"
            "  --source IP         connect from this 127.0.0.0/8 address (many clients\n"
            "                      on one machine, e.g. for fair-share tests)\n"
            "  --port N            target port (required)\n"
            "  --rate R            requests per second (with --duration)\n"
            "  --duration S        seconds (with --rate)\n"
            "  --phase RATE:SECS   one step of a schedule; repeat for more (max %d)\n"
            "  --connections C     max concurrent connections (default 100)\n"
            "  --path /p[:W]       request path, weight W (default 1); repeat; chosen\n"
            "                      deterministically by smooth weighted round-robin\n"
            "  --retry-503         retry a first-attempt 503 once after 50-150 ms\n"
            "  --timeout-ms MS     per-request timeout from intended time (default 5000)\n"
            "  --interval-ms MS    one line per interval (default 1000, 0 = none)\n"
            "  --json              interval lines and the final summary as JSON\n"
            "  --seed N            seed of the retry jitter (default 1)\n",
            MAX_PHASES);
}

static int parse_double(const char *s, double *out_v)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < 0) {
        return -1;
    }
    *out_v = v;
    return 0;
}

static int parse_u64(const char *s, uint64_t *out_v)
{
    char *end;
    if (!isdigit((unsigned char)*s)) {
        return -1;
    }
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) {
        return -1;
    }
    *out_v = v;
    return 0;
}

static int add_phase(const char *spec)
{
    const char *colon = strchr(spec, ':');
    char rate[64];
    if (!colon || (size_t)(colon - spec) >= sizeof rate || g.nphases >= MAX_PHASES) {
        return -1;
    }
    memcpy(rate, spec, (size_t)(colon - spec));
    rate[colon - spec] = 0;
    double r, s;
    if (parse_double(rate, &r) || parse_double(colon + 1, &s) || s <= 0 || r > 1e7) {
        return -1;
    }
    g.ph_rate[g.nphases] = r;
    g.ph_secs[g.nphases] = s;
    g.nphases++;
    return 0;
}

static int add_path(const char *spec)
{
    if (g.npaths >= MAX_PATHS || spec[0] != '/') {
        return -1;
    }
    size_t len = strlen(spec);
    unsigned w = 1;
    const char *colon = strrchr(spec, ':');
    if (colon && colon[1]) {
        uint64_t v;
        if (parse_u64(colon + 1, &v) == 0) {
            if (v == 0 || v > RR_MAX) {
                return -1;
            }
            w = (unsigned)v;
            len = (size_t)(colon - spec);
        }
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)spec[i];
        if (ch <= ' ' || ch == 0x7f) {
            return -1; /* no spaces or control bytes in a request target */
        }
    }
    if (len == 0 || len > 4096) {
        return -1;
    }
    g.path[g.npaths] = strndup(spec, len);
    g.weight[g.npaths] = w;
    g.npaths++;
    return 0;
}

static int set_host(const char *h)
{
    if (strlen(h) >= sizeof g.host) {
        return -1;
    }
    snprintf(g.host, sizeof g.host, "%s", h);
    return 0;
}

static int resolve_target(void)
{
    const char *h = strcmp(g.host, "localhost") == 0 ? "127.0.0.1" : g.host;
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    memset(&g.addr, 0, sizeof g.addr);
    if (uv_ip4_addr(h, g.port, &a4) == 0) {
        if ((ntohl(a4.sin_addr.s_addr) >> 24) != 127) {
            return -1;
        }
        memcpy(&g.addr, &a4, sizeof a4);
        return 0;
    }
    if (uv_ip6_addr(h, g.port, &a6) == 0) {
        if (!IN6_IS_ADDR_LOOPBACK(&a6.sin6_addr)) {
            return -1;
        }
        memcpy(&g.addr, &a6, sizeof a6);
        return 0;
    }
    return -1;
}

static unsigned gcd(unsigned a, unsigned b)
{
    while (b) {
        unsigned t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Smooth weighted round-robin: weights 10 and 90 give one /alloc in every
 * ten requests, spread out rather than in a block. */
static int build_rr(void)
{
    unsigned d = 0;
    uint64_t sum = 0;
    for (int i = 0; i < g.npaths; i++) {
        d = gcd(d, g.weight[i]);
    }
    for (int i = 0; i < g.npaths; i++) {
        g.weight[i] /= d;
        sum += g.weight[i];
    }
    if (sum > RR_MAX) {
        return -1;
    }
    g.rr_len = (uint32_t)sum;
    g.rr = calloc(sum, sizeof *g.rr);
    int64_t cur[MAX_PATHS] = {0};
    if (!g.rr) {
        return -1;
    }
    for (uint32_t slot = 0; slot < g.rr_len; slot++) {
        int best = 0;
        for (int i = 0; i < g.npaths; i++) {
            cur[i] += g.weight[i];
            if (cur[i] > cur[best]) {
                best = i;
            }
        }
        cur[best] -= (int64_t)sum;
        g.rr[slot] = (uint32_t)best;
    }
    return 0;
}

static int build_requests(void)
{
    for (int i = 0; i < g.npaths; i++) {
        size_t cap = strlen(g.path[i]) + sizeof g.host + 128;
        char *b = malloc(cap);
        if (!b) {
            return -1;
        }
        int n = snprintf(b, cap,
                         "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: nea-loadgen\r\n"
                         "Accept: */*\r\n\r\n",
                         g.path[i], g.host, g.port);
        g.reqbuf[i] = uv_buf_init(b, (unsigned)n);
    }
    return 0;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)g.conns_max + 64;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
        rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < want) {
            fprintf(stderr, "loadgen: warning: RLIMIT_NOFILE %llu < %llu needed\n",
                    (unsigned long long)rl.rlim_cur, (unsigned long long)want);
        }
    }
}

static int parse_args(int argc, char **argv)
{
    double rate = -1, duration = -1;
    uint64_t v;
    snprintf(g.host, sizeof g.host, "127.0.0.1");
    g.port = -1;
    g.conns_max = 100;
    g.timeout_ms = 5000;
    g.interval_ms = 1000;
    g.seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--retry-503")) {
            g.retry503 = 1;
            continue;
        } else if (!strcmp(a, "--json")) {
            g.json = 1;
            continue;
        }
        if (!val) {
            fprintf(stderr, "loadgen: %s needs a value\n", a);
            return -1;
        }
        i++;
        int bad = 0;
        if (!strcmp(a, "--host")) {
            bad = set_host(val);
        } else if (!strcmp(a, "--port")) {
            bad = parse_u64(val, &v) || v == 0 || v > 65535;
            g.port = (int)v;
        } else if (!strcmp(a, "--rate")) {
            bad = parse_double(val, &rate) || rate > 1e7;
        } else if (!strcmp(a, "--duration")) {
            bad = parse_double(val, &duration) || duration <= 0;
        } else if (!strcmp(a, "--phase")) {
            bad = add_phase(val);
        } else if (!strcmp(a, "--connections")) {
            bad = parse_u64(val, &v) || v == 0 || v > MAX_CONNS;
            g.conns_max = (int)v;
        } else if (!strcmp(a, "--path")) {
            bad = add_path(val);
        } else if (!strcmp(a, "--timeout-ms")) {
            bad = parse_u64(val, &v) || v == 0 || v > 3600000;
            g.timeout_ms = v;
        } else if (!strcmp(a, "--interval-ms")) {
            bad = parse_u64(val, &v) || v > 3600000;
            g.interval_ms = v;
        } else if (!strcmp(a, "--seed")) {
            bad = parse_u64(val, &g.seed);
        } else if (!strcmp(a, "--source")) {
            /* Loopback only, like the target: one machine plays many clients. */
            bad = uv_ip4_addr(val, 0, &g.source) != 0 ||
                  (ntohl(g.source.sin_addr.s_addr) >> 24) != 127;
            g.has_source = !bad;
        } else {
            fprintf(stderr, "loadgen: unknown option %s\n", a);
            return -1;
        }
        if (bad) {
            fprintf(stderr, "loadgen: bad value for %s: %s\n", a, val);
            return -1;
        }
    }
    if (g.port < 0) {
        fprintf(stderr, "loadgen: --port is required\n");
        return -1;
    }
    if (g.nphases > 0 && (rate >= 0 || duration >= 0)) {
        fprintf(stderr, "loadgen: use either --phase or --rate/--duration\n");
        return -1;
    }
    if (g.nphases == 0) {
        if (rate < 0 || duration < 0) {
            fprintf(stderr, "loadgen: need --rate and --duration, or --phase\n");
            return -1;
        }
        g.ph_rate[0] = rate;
        g.ph_secs[0] = duration;
        g.nphases = 1;
    }
    if (resolve_target()) {
        fprintf(stderr, "loadgen: --host must be a loopback IP address: %s\n", g.host);
        return -1;
    }
    if (g.npaths == 0 && add_path("/")) {
        return -1;
    }
    if (build_rr()) {
        fprintf(stderr, "loadgen: path weights too large (sum > %d)\n", RR_MAX);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv)) {
        usage(stderr);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();

    /* The schedule: phase p owns requests [ph_first, ph_first + ph_count). */
    uint64_t off_ns = 0;
    for (int p = 0; p < g.nphases; p++) {
        g.ph_first[p] = g.total;
        g.ph_count[p] = (uint64_t)floor(g.ph_rate[p] * g.ph_secs[p] + 1e-9);
        g.ph_start[p] = off_ns;
        g.total += g.ph_count[p];
        off_ns += (uint64_t)llround(g.ph_secs[p] * 1e9);
    }

    g.conns = calloc((size_t)g.conns_max, sizeof *g.conns);
    g.heap = calloc(RETRY_CAP, sizeof *g.heap);
    g.ph_st = calloc((size_t)g.nphases, sizeof *g.ph_st);
    if (!g.conns || !g.heap || !g.ph_st || build_requests()) {
        fprintf(stderr, "loadgen: out of memory at start\n");
        return 2;
    }
    g.rng = 0x9E3779B97F4A7C15ULL ^ (g.seed * 0xD1B54A32D192ED03ULL);
    if (g.rng == 0) {
        g.rng = 1;
    }

    g.loop = uv_default_loop();
    uv_timer_init(g.loop, &g.tick);
    uv_timer_init(g.loop, &g.iv);
    uv_signal_init(g.loop, &g.sigint);
    uv_signal_init(g.loop, &g.sigterm);
    uv_signal_start(&g.sigint, on_signal, SIGINT);
    uv_signal_start(&g.sigterm, on_signal, SIGTERM);

    g.tmo_ns = g.timeout_ms * 1000000ULL;
    g.t0 = uv_hrtime();
    g.iv_last = g.t0;
    g.t_end = g.t0 + off_ns;
    g.deadline = g.t_end + g.tmo_ns;
    uv_timer_start(&g.tick, on_tick, 0, 1);
    if (g.interval_ms > 0) {
        uv_timer_start(&g.iv, on_interval, g.interval_ms, g.interval_ms);
    }
    uv_run(g.loop, UV_RUN_DEFAULT);
    print_summary(uv_hrtime());
    int rc = uv_loop_close(g.loop);
    if (rc != 0) {
        fprintf(stderr, "loadgen: uv_loop_close: %s\n", uv_strerror(rc));
    }
    for (int i = 0; i < g.npaths; i++) {
        free(g.reqbuf[i].base);
        free(g.path[i]);
    }
    free(g.rr);
    free(g.conns);
    free(g.heap);
    free(g.ph_st);
    return 0;
}
