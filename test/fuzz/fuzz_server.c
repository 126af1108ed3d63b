/*
 * fuzz_server.c - libFuzzer target for a whole server: the listener, slot
 * admission (lib/admission.c: accept, eviction of idle connections,
 * lingering connections giving way, the 503 reject handles, the arena wait
 * queue, fair shares between client addresses), the slot's phase machine
 * and its deadlines (lib/conn.c), the HTTP exchange (lib/exchange.c), the
 * output side (lib/output.c: the gathered batch, writes the kernel cuts,
 * 100 Continue), requests that end every way a request can end (lib/req.c,
 * lib/trampoline.c) and host code that comes back to a request later
 * (lib/ref.c: references, holds, thread-pool work).
 *
 * One server lives for the whole process on its own loop, listening on
 * 127.0.0.1 port 0, with a tiny configuration: 3 connection slots, 2 arenas,
 * a wait queue of 2, and timeouts of tens of milliseconds (header, body,
 * body rate, keep-alive, queue, response, write), so every deadline is
 * reachable within an input. Clients are real TCP sockets connected with
 * connect(2): clients 0-3 from one loopback address, 4-7 from another (so
 * fair shares between addresses come into play), both taken afresh for
 * every input from 127.64.0.0/16 with kernel-chosen ports (a pair of
 * addresses comes back only after 30000 inputs, long after the server's
 * TIME_WAIT entries for it expired: no fixed ports, no stalled handshakes).
 * Clients set TCP_NODELAY, so every send leaves as its own segment at once
 * (with Nagle, a segment waits for the server's ACK, which the server
 * delays while it has nothing to send: 40 ms stalls, and pipelined pieces
 * merged). The server's memory of an address refused a slot is cleared
 * between inputs (it would make the next input's addresses over their
 * share).
 *
 * Two kinds of client. An ordinary client reads everything it is sent
 * after every op (so the server's writes never block on it). A deaf client
 * stopped reading: it reads only a little at each READ op (a sip) and
 * everything once the script is over; OPENT opens one with a tiny receive
 * buffer (SO_RCVBUF set before connect(), so the window stays small) and
 * shrinks the server's send buffer for that connection (SO_SNDBUF on the
 * slot's socket, found by the client's address), so the server's send
 * queue fills within a few responses and the kernel cuts writes at
 * arbitrary points, 100 Continue included, until the write deadline
 * closes the connection.
 *
 * Input: a script of one-byte ops, read left to right; the high nibble is
 * the op, the low nibble its argument a (k = a & 7 names one of 8 client
 * sockets). Some ops take the following byte(s) as operands. An input stops
 * at its end or after MAX_OPS ops.
 *
 *   0x0a  OPEN k       connect() client k (closing a previous socket k first)
 *   0x1a  SEND k N ..  send the next N bytes (N = next byte) on k
 *   0x2a  REQ k S      send canned request S (next byte, mod the table) on k
 *   0x3a  SHUT k       half-close k (shutdown SHUT_WR)
 *   0x4a  CLOSE k      check what k received, close k (a & 8: with RST); an
 *                      ordinary client reads first, a deaf one leaves what it
 *                      was sent unread (the kernel then resets)
 *   0x5a  READ k       read what is available on k (deaf: a sip of SIP_BYTES)
 *   0x6a  WAIT         let (a + 1) * 3 ms pass on the loop (WAIT_BUDGET_MS per input)
 *   0x7a  HOLD         take a free arena from the pool (as a busy request would)
 *   0x8a  RELEASE      give a held arena back (the first waiting head gets it)
 *   0x9a  FAULT        fail the ((a & 7) + 1)th arena grant from now (a & 8: the
 *                      next accept into a slot instead)
 *   0xAa  PUMP         run the loop (a + 1) times without waiting
 *   0xBa  FILL k       send 16 bytes of 'x' on k (a & 8: 64), body filler or drip
 *   0xCa  PIPE k S     send canned request S three times in one write on k
 *   0xDa  OREQ k S     OPEN k, then REQ k S
 *   0xEa  READALL      read what is available on every client (deaf ones: a sip)
 *   0xFa  extended, a the sub-op, k = (next byte) & 7:
 *     0xF0 X B   OPENT k: OPEN k deaf, receive buffer ((B & 3): kernel
 *                minimum, 2, 4, 8 KiB) set before connect, the server's
 *                send buffer of the connection ((B >> 2) & 3: kernel
 *                minimum, 4, 8 KiB, untouched) set once it is accepted
 *     0xF1 X B   SQUEEZE k: the server's send buffer of k's connection as
 *                for OPENT (B & 3), now or once it is accepted
 *     0xF2 X     DEAF k: k stops reading (or, when deaf, reads again)
 *     0xF3 X B   XPIPE k: an Expect: 100-continue pipeline: a POST head
 *                with Expect, then (B & 31) + 1 times, each in its own
 *                send after a loop turn, its body followed in the same
 *                segment by the next such head (the last body alone);
 *                bodies of 5, 200, 900 or 40 bytes ((B >> 5) & 3), to
 *                /echo, or to /sink when B & 0x80
 *     0xF4 X P   AWAIT k: run the loop until the slot serving k is in
 *                phase P (mod NEA__C_PHASES; FREE: no slot serves k), at
 *                most AWAIT_MS, taken from the WAIT budget: a following
 *                SHUT or CLOSE then lands in that phase (mid-head, queued
 *                for an arena, mid-body, handler pending, streaming,
 *                writing, lingering)
 *     0xF5       LATE: run the loop until no host timer and no thread-pool
 *                job is pending, at most AWAIT_MS from the WAIT budget
 *     other      nothing
 *
 * Canned requests (REQ, PIPE, OREQ) reach every route: /now answers at
 * once, /later/N from a tracked timer after N ms, /never calls nea_req_keep
 * and is answered 504 at response_timeout_ms, /forget returns without
 * answering (500), /oom exhausts its arena (500), /big/N answers N bytes,
 * /bulk/N answers N bytes from static memory (fills a deaf client's window),
 * POST /echo sends the body back (heads with Content-Length or chunked
 * framing whose body follows via SEND or FILL), GET /stream/N streams N
 * bytes in 64-byte pieces (/drip/N: N pieces, each DRIP_MS after the last,
 * from a tracked timer), POST /sink reads its body in pieces (413 past
 * 4096 bytes, an early answer after 3000), plus HEAD, HTTP/1.0,
 * Connection: close, 100-continue, 404, a chunked upload of 240 one-byte
 * chunks, and a head cut short (slowloris). Handlers that answer later, each
 * request carrying an id (?id=N, N counted per input, written where the
 * template says '@') that its answer echoes in a text/x-id body:
 *   /host/MS/M  a host timer (static, neither tracked nor in the arena)
 *               fires after MS ms and comes back through a stored nea_ref:
 *               nea_ref_req, then nea_req_run; the request calls
 *               nea_req_keep, so past response_timeout_ms it is answered
 *               504 and the reference must read NULL;
 *   /work/MS/M  nea_req_work: the job (on libuv's thread pool) sleeps MS ms
 *               and writes into its arena memory; done answers;
 *   /hold/MS/M  nea_req_hold, released by a host timer after MS ms (0: at
 *               once, inside the handler) with nea_hold_release;
 *   POST /psink a body read in pieces that pauses after each piece
 *               (nea_body_pause); a host timer resumes it PSINK_MS later
 *               through a stored reference (nea_body_resume); the end
 *               answers the id (a paused body counts as idle: pauses
 *               longer than body_timeout_ms in all are answered 408).
 * M: a answer, o exhaust the arena in the late callback (500), n do not
 * answer (504), e (work) answer in the handler, then run the job anyway.
 * After every op the loop runs a couple of times without waiting.
 *
 * After the script: held arenas go back and the fault is disarmed; every
 * client half-closes and reads until the server closes (bounded), then every
 * socket is closed with a reset; the loop runs until the server is quiescent
 * and no host timer or job is pending (bounded: SETTLE_LIMIT_MS), and a
 * fresh probe connection must still be answered 200. Checked (abort() on
 * violation, which libFuzzer reports as a crash):
 *   - connections_open == 0, arenas_in_use == 0, queue_length == 0, no live
 *     request, no protected frame, the idle, wait and linger lists empty,
 *     no connection pending acceptance, no reject handle in use;
 *   - every defer a handler registered ran exactly once;
 *   - late answers: every job's done was called exactly once, after its
 *     work, before its request ended, with the arena memory it was given
 *     intact, and with NULL exactly when nea_ref_req says the request is
 *     gone; every hold was released with the arena intact and the request
 *     not ended, and nea_hold_release called its function exactly once,
 *     with NULL exactly when the reference reads NULL; a stored reference
 *     never finds a request that ended, nor one with another id;
 *   - what each client received is a sequence of HTTP/1.1 responses: status
 *     line with a valid 3-digit status, bodies framed by Content-Length
 *     (HEAD: announced, not sent; allowed only if the client sent "HEAD"),
 *     nothing after "Connection: close", and every 503 carries Retry-After.
 *     A response may be cut short only where the client stopped reading
 *     (or the server's send buffer of its connection was shrunk: writes
 *     then wait for the client's delayed ACKs), saw a reset, or the loop
 *     was held up more than STALL_MS between two runs (a loaded machine: a
 *     write deadline may pass while the socket is writable);
 *   - every id a client received is one it asked for, in the order it
 *     asked (a late answer never reaches another client);
 *   - a client that sent only whole canned requests (no raw bytes, no head
 *     or body cut short) gets its answers in order: the i-th response with
 *     an id answers its i-th request; none is 400, 413, 414 or 431, and an
 *     unanswered handler's 500 does not speak of the memory arena (unless
 *     a fault was injected in this input); and when the server ended the
 *     connection with an orderly close (no reset, and no cut allowed as
 *     above), every request was answered, or the last answer said
 *     Connection: close (a half-close is not a cancel).
 *
 * Seeds (corpus_server/, written by make_server_seeds.py, each named for
 * what it reaches or reproduces): every op and route; a SHUT and a reset
 * in every phase of a request's life (shut_* and reset_*: mid-head,
 * mid-body, queued, handler pending, streaming, writing, lingering);
 * half-closed clients whose complete requests must still be answered
 * (half_close_*: asynchronous, queued for an arena, streamed, thread-pool
 * work, holds); late answers after the client left or the arena was taken
 * over (late_ref_*, work_client_left_*, hold_client_left); Expect:
 * 100-continue pipelines against a client that does not read
 * (expect_pipeline_unread*: the interim answer must never be queued while
 * the gathered batch is); a refusal on a fresh connection in a slot whose
 * last request was a HEAD (fresh_conn_refusal_after_head); chunked uploads
 * of many small chunks (chunked_many_chunks*); an unanswered handler's 500
 * (forget_500).
 *
 * Built two ways: with clang and -fsanitize=fuzzer (test/fuzz/CMakeLists.txt,
 * target fuzz_server), and with any compiler together with replay.c (target
 * fuzz_replay_server, run by ctest over corpus_server/ and
 * regressions_server/). FUZZ_SERVER_VERBOSE=1 traces every op (with the
 * phase of the slot serving the client a SHUT or CLOSE hits).
 */
#include "fuzzloop.h"
#include "server.h"

#include "responses.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CLIENTS 8
#define SLOTS 3
#define BUFFERS 2 /* fewer than SLOTS: a third reader waits in line for one */
#define ARENAS 2
#define QUEUE 2
#define READ_BUFFER 1024
#define MAX_BODY 1024
#define T_HEADER 15
#define T_BODY 15
#define T_BODY_DEADLINE 80
#define T_RATE_GRACE 10
#define BODY_MIN_RATE 4000 /* bytes/s: 40 bytes within the 10 ms grace */
#define T_RESPONSE 20
#define T_KEEPALIVE 25
#define T_QUEUE 8
#define T_WRITE 30
#define MAX_OPS 64
#define WAIT_BUDGET_MS 120   /* real time the WAIT ops of one input may take */
#define AWAIT_MS 30          /* longest one AWAIT or LATE op waits */
#define FINISH_MS 60         /* after the script: how long clients wait for the server's FIN */
#define SETTLE_LIMIT_MS 3000 /* longest the server may take to become quiescent */
#define SLOW_MS 500          /* a phase taking longer is described on stderr */
#define LATER_MAX_MS 60
#define RX_CAP (64u * 1024u)
#define SIP_BYTES 1500       /* what a deaf client reads at a READ */
#define SRC_BASE 0x7F400001u /* 127.64.0.1: the first client address */
#define SRC_PAIRS 30000u     /* address pairs taken in turn, one per input */
#define CONNECT_MS 3500      /* a lost SYN is sent again after 1 s, then 2 s */
#define REQS_KEPT 256        /* requests a client remembers per connection */
#define LATES 8              /* host timers (/host, /hold) at once */
#define JOBS 8               /* thread-pool jobs (/work) at once */
#define BULK_MAX 16384       /* /bulk/N: at most this many bytes */
#define XPIPE_KIND 0xFFFFu   /* the canned index an XPIPE request is recorded with */

/* What a client sent on its connection, in order: the canned request and
 * the id written into it (0: none). */
typedef struct sent_req {
    unsigned canned;
    unsigned id;
} sent_req;

typedef struct client {
    int fd;
    char rx[RX_CAP];
    size_t rx_len;
    bool eof;   /* the server closed its end (orderly) */
    bool reset; /* the connection was reset: what was in flight may be lost */
    bool shut;  /* we half-closed */
    bool deaf;  /* stopped reading: only sips at READ, all at the end */
    /* It stopped reading at some point, or the server's send buffer of its
     * connection was shrunk (writes then wait for ACKs the client delays):
     * the write deadline may cut a response short. */
    bool slowed;
    bool squeeze;  /* the server's send buffer of this connection is still to be set */
    int sndbuf;    /* ... to this */
    bool exact;    /* only whole canned requests were sent */
    bool head;     /* "HEAD" was sent: a body announced may be left out */
    uint32_t roll; /* the last 4 bytes sent, for the HEAD test */
    unsigned nreq; /* requests sent (whole ones, for an exact client) */
    bool lost;     /* more than REQS_KEPT: ids are not checked */
    sent_req reqs[REQS_KEPT];
    struct sockaddr_in local; /* its address, to find the slot serving it */
} client;

static uv_loop_t loop;
static nea_server *srv;
static uv_timer_t wake; /* bounds every UV_RUN_ONCE */
static int port;
static client clients[CLIENTS];
static nea__arena *held[ARENAS];
static unsigned long defers_registered, defers_run;
static bool verbose;
static bool faulted; /* a fault was armed during this input */
static unsigned next_id;
static uint32_t src_pair; /* this input's pair of client addresses */
static unsigned long late_found, late_gone, jobs_live, jobs_gone;
static unsigned char rx_memo[RX_CAP + 1]; /* scratch for fz_responses_valid */

static const char *const phase_names[NEA__C_PHASES] = {
    "free",    "idle",   "waitbuf", "head",   "queued",  "body",
    "handler", "stream", "writing", "linger", "closing",
};

static void fail(const char *what, const client *cl)
{
    nea_stats st;
    nea_server_stats(srv, &st);
    fprintf(stderr,
            "fuzz_server: invariant violated: %s\n"
            "  connections_open=%u arenas_in_use=%u queue_length=%u env.reqs.live=%u "
            "requests=%llu defers %lu/%lu\n",
            what, st.connections_open, nea_stats_arenas(&st).in_use, st.queue_length,
            srv->env.reqs.live, (unsigned long long)st.requests, defers_run, defers_registered);
    if (cl != NULL) {
        fprintf(stderr, "  client %d received %zu bytes%s%s%s: %.*s\n", (int)(cl - clients),
                cl->rx_len, cl->eof ? ", then EOF" : "", cl->reset ? ", then a reset" : "",
                cl->slowed ? " (slowed)" : "", (int)(cl->rx_len < 4096 ? cl->rx_len : 4096),
                cl->rx);
        fprintf(stderr, "  it sent %u request(s)%s:", cl->nreq, cl->exact ? ", all whole" : "");
        for (unsigned i = 0; i < cl->nreq && i < REQS_KEPT; i++) {
            fprintf(stderr, " %u/id%u", cl->reqs[i].canned, cl->reqs[i].id);
        }
        fprintf(stderr, "\n");
    }
    abort();
}

/* What the server holds, for a report of an input that takes too long. */
static void dump_server(const char *when)
{
    const nea__admission *adm = &srv->admission;
    unsigned rejects = 0;
    nea_stats st;
    nea_server_stats(srv, &st);
    for (unsigned i = 0; i < NEA__REJECT_SLOTS; i++) {
        rejects += adm->rejects[i].o.in_use ? 1u : 0u;
    }
    fprintf(stderr,
            "fuzz_server: %s: connections_open=%u arenas_in_use=%u queue_length=%u live=%u "
            "accept_pending=%d rejects_in_use=%u\n",
            when, st.connections_open, nea_stats_arenas(&st).in_use, st.queue_length,
            srv->env.reqs.live, (int)adm->accept_pending, rejects);
    for (unsigned i = 0; i < adm->count; i++) {
        const nea__conn *c = nea__admission_slot(adm, i);
        fprintf(stderr, "  slot %u: %s eof %d reading %d rlen %zu req %p\n", i,
                phase_names[c->state], (int)c->eof, (int)c->reading, c->w != NULL ? c->w->rlen : 0,
                c->w != NULL ? (void *)c->w->req : NULL);
    }
    for (unsigned i = 0; i < CLIENTS; i++) {
        fprintf(stderr, "  client %u: fd %d rx %zu eof %d reset %d shut %d deaf %d\n", i,
                clients[i].fd, clients[i].rx_len, (int)clients[i].eof, (int)clients[i].reset,
                (int)clients[i].shut, (int)clients[i].deaf);
    }
}

/* --- handlers ------------------------------------------------------------ */

static void on_log(void *data, int level, const char *msg)
{
    (void)data;
    if (verbose) {
        fprintf(stderr, "fuzz_server: log %d: %s\n", level, msg);
    }
}

static void count_defer(void *arg)
{
    (void)arg;
    defers_run++;
}

static void add_defer(nea_req *req)
{
    if (nea_req_defer(req, count_defer, NULL) == 0) {
        defers_registered++;
    }
}

/* GET /now: answered at once. */
static void h_now(nea_req *req, void *d)
{
    (void)d;
    add_defer(req);
    nea_respond(req, 200, "text/plain", "now\n", 4);
}

static void later_finish(nea_req *req, void *arg)
{
    (void)arg;
    nea_respond_static(req, 200, "text/plain", "later\n", 6);
}

static void on_later(uv_timer_t *t)
{
    nea_req_run(t->data, later_finish, NULL);
}

/* GET /later/N: answered from a tracked timer after N ms (at most
 * LATER_MAX_MS); past response_timeout_ms it is a 504 instead. */
static void h_later(nea_req *req, void *d)
{
    unsigned long ms = strtoul(nea_req_path_tail(req), NULL, 10);
    uv_timer_t *t;
    (void)d;
    add_defer(req);
    t = nea_req_timer(req);
    t->data = req;
    uv_timer_start(t, on_later, ms < LATER_MAX_MS ? ms : LATER_MAX_MS, 0);
}

/* GET /never: promises an answer that never comes (504). */
static void h_never(nea_req *req, void *d)
{
    (void)d;
    add_defer(req);
    nea_req_keep(req);
}

/* GET /forget: returns with nothing pending (500). */
static void h_forget(nea_req *req, void *d)
{
    (void)d;
    add_defer(req);
}

/* GET /oom: more than any arena holds (500). */
static void h_oom(nea_req *req, void *d)
{
    (void)d;
    add_defer(req);
    (void)nea_alloc(req, (size_t)1 << 40);
    fail("nea_alloc returned after exhausting the arena", NULL);
}

/* GET /big/N: N bytes of body, built in the arena (too many: 500). */
static void h_big(nea_req *req, void *d)
{
    size_t n = (size_t)strtoul(nea_req_path_tail(req), NULL, 10);
    char *p;
    (void)d;
    add_defer(req);
    p = nea_alloc(req, n + 1);
    memset(p, 'b', n);
    nea_respond_static(req, 200, "text/plain", p, n);
}

/* GET /bulk/N: N bytes (at most BULK_MAX) from static memory. */
static char bulk[BULK_MAX];

static void h_bulk(nea_req *req, void *d)
{
    size_t n = (size_t)strtoul(nea_req_path_tail(req), NULL, 10);
    (void)d;
    add_defer(req);
    nea_respond_static(req, 200, "text/plain", bulk, n < BULK_MAX ? n : BULK_MAX);
}

/* POST /echo: the body back. */
static void h_echo(nea_req *req, void *d)
{
    size_t len;
    const char *body = nea_req_body(req, &len);
    (void)d;
    if (body[len] != '\0') {
        fail("body not NUL-terminated", NULL);
    }
    nea_respond(req, 200, "application/octet-stream", body, len);
}

/* GET /stream/N: N bytes streamed in pieces of at most STREAM_PIECE from
 * static memory, Content-Length known; each piece waits for the last. */
#define STREAM_PIECE 64
static const char stream_bytes[STREAM_PIECE] =
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n";

static void stream_more(nea_req *req, void *arg)
{
    size_t *left = arg;
    size_t n = *left < STREAM_PIECE ? *left : STREAM_PIECE;
    if (n == 0) {
        (void)nea_stream_end(req);
        return;
    }
    *left -= n;
    (void)nea_stream_write(req, stream_bytes, n, stream_more, left);
}

static void h_stream(nea_req *req, void *d)
{
    size_t *left = nea_alloc(req, sizeof *left);
    (void)d;
    add_defer(req);
    *left = (size_t)strtoul(nea_req_path_tail(req), NULL, 10);
    if (nea_stream_start(req, 200, "text/plain", *left) == 0) {
        stream_more(req, left);
    }
}

/* GET /drip/N: N pieces of STREAM_PIECE bytes, each DRIP_MS after the
 * last was written (a tracked timer): the producer's turn lasts. */
#define DRIP_MS 4

typedef struct drip {
    nea_req *req; /* the request of the tracked timer */
    uv_timer_t *timer;
    unsigned left;
} drip;

static void drip_next(nea_req *req, void *arg);

static void on_drip(uv_timer_t *t)
{
    drip *d = t->data;
    nea_req_run(d->req, drip_next, d);
}

static void drip_wait(nea_req *req, void *arg)
{
    drip *d = arg;
    (void)req;
    uv_timer_start(d->timer, on_drip, DRIP_MS, 0);
}

static void drip_next(nea_req *req, void *arg)
{
    drip *d = arg;
    if (d->left == 0) {
        (void)nea_stream_end(req);
        return;
    }
    d->left--;
    (void)nea_stream_write(req, stream_bytes, STREAM_PIECE, drip_wait, d);
}

static void h_drip(nea_req *req, void *data)
{
    drip *d = nea_alloc(req, sizeof(*d));
    unsigned long n = strtoul(nea_req_path_tail(req), NULL, 10);
    (void)data;
    add_defer(req);
    d->req = req;
    d->left = (unsigned)(n < 64 ? n : 64);
    d->timer = nea_req_timer(req);
    d->timer->data = d;
    if (nea_stream_start(req, 200, "text/plain", (uint64_t)d->left * STREAM_PIECE) == 0) {
        drip_next(req, d);
    }
}

/* POST /sink: a body read in pieces (route limit SINK_MAX: 413 beyond),
 * answered with its length at the end, or early once SINK_ENOUGH bytes
 * came (the connection then closes after the answer). */
#define SINK_MAX 4096
#define SINK_ENOUGH 3000

static void sink_piece(nea_req *req, const char *data, size_t len, void *arg)
{
    size_t *seen = arg;
    (void)data;
    if (data == NULL) {
        nea_respond(req, 200, "text/plain", "end\n", 4);
        return;
    }
    *seen += len;
    if (*seen >= SINK_ENOUGH) {
        nea_respond(req, 200, "text/plain", "enough\n", 7);
    }
}

static void h_sink(nea_req *req, void *d)
{
    size_t *seen = nea_calloc(req, 1, sizeof *seen);
    (void)d;
    add_defer(req);
    (void)nea_body_read(req, sink_piece, seen);
}

/* --- handlers that answer later ------------------------------------------- */

#define ID_TYPE "text/x-id"
#define LATE_MAGIC 0x6c6174656d656d31ull
#define JOB_MAGIC 0x6a6f626d656d3031ull

/* The id a request carries (?id=N), 0 when none. */
static unsigned req_id(const nea_req *req)
{
    const char *q = nea_req_query(req);
    return strncmp(q, "id=", 3) == 0 ? (unsigned)strtoul(q + 3, NULL, 10) : 0;
}

/* The tail "MS/M" of /host, /work and /hold: MS (at most LATER_MAX_MS),
 * and the mode letter M ('a' when absent). */
static unsigned tail_ms(const nea_req *req, char *mode)
{
    char *end;
    unsigned long ms = strtoul(nea_req_path_tail(req), &end, 10);
    *mode = end[0] == '/' && end[1] != '\0' ? end[1] : 'a';
    return (unsigned)(ms < LATER_MAX_MS ? ms : LATER_MAX_MS);
}

static void answer_id(nea_req *req, unsigned id)
{
    char body[24];
    int n = snprintf(body, sizeof(body), "id=%u\n", id);
    (void)nea_respond(req, 200, ID_TYPE, body, (size_t)n);
}

/* A late callback's answer: the id, or an arena exhausted (500). */
static void answer_late(nea_req *req, unsigned id, char mode)
{
    if (mode == 'o') {
        (void)nea_alloc(req, (size_t)1 << 40);
        fail("nea_alloc returned after exhausting the arena", NULL);
    }
    if (mode != 'n') {
        answer_id(req, id);
    }
}

/* Arena memory a hold or a job keeps: checked intact when it comes back. */
typedef struct late_mem {
    uint64_t magic;
    unsigned id;
} late_mem;

/* A host timer (/host: a stored reference; /hold: a hold to release;
 * /psink: a paused body to resume). The entry is static, neither tracked
 * nor in the arena; it is free again once its timer fired (and is not
 * armed again) and its request ended. */
typedef struct late {
    uv_timer_t timer;
    bool busy;
    bool is_hold;
    bool fired;       /* the timer ran (or the hold was released at once) */
    bool in_timer;    /* its timer callback is on the stack: not free yet */
    bool ended;       /* the request's defers ran */
    bool end_tracked; /* a defer tells when it ends (else: free once fired) */
    bool live;        /* the reference read non-NULL just before the release */
    char mode;
    unsigned id;
    unsigned fn_calls; /* nea_hold_release's function */
    nea_ref ref;
    nea_hold hold;
    late_mem *mem;
} late;

static late lates[LATES];

static late *late_get(void)
{
    for (unsigned i = 0; i < LATES; i++) {
        late *e = &lates[i];
        if (!e->busy) {
            uv_timer_t timer = e->timer;
            memset(e, 0, sizeof(*e));
            e->timer = timer;
            e->busy = true;
            return e;
        }
    }
    return NULL;
}

static void late_maybe_free(late *e)
{
    if (e->busy && e->fired && !e->in_timer && (e->ended || !e->end_tracked)) {
        e->busy = false;
    }
}

static void on_late_end(void *arg)
{
    late *e = arg;
    defers_run++;
    e->ended = true;
    late_maybe_free(e);
}

static void hold_fn(nea_req *req, void *arg)
{
    late *e = arg;
    e->fn_calls++;
    if ((req != NULL) != e->live) {
        fail("nea_hold_release and nea_ref_req disagree on whether the request is live", NULL);
    }
    if (req != NULL) {
        if (req_id(req) != e->id) {
            fail("nea_hold_release called back with another request", NULL);
        }
        answer_late(req, e->id, e->mode);
    }
}

static void late_release(late *e)
{
    if (e->ended) {
        fail("a held request ended before its hold was released", NULL);
    }
    if (e->mem->magic != LATE_MAGIC || e->mem->id != e->id) {
        fail("a held arena changed before its hold was released", NULL);
    }
    e->live = nea_ref_req(e->ref) != NULL;
    nea_hold_release(e->hold, e->mode == 'n' ? NULL : hold_fn, e);
    if (e->fn_calls != (e->mode == 'n' ? 0u : 1u)) {
        fail("nea_hold_release did not call its function exactly once", NULL);
    }
}

static void late_run(nea_req *req, void *arg)
{
    const late *e = arg;
    answer_late(req, e->id, e->mode);
}

static void on_late_timer(uv_timer_t *t)
{
    late *e = t->data;
    e->in_timer = true;
    e->fired = true;
    if (e->is_hold) {
        late_release(e);
    } else {
        nea_req *r = nea_ref_req(e->ref);
        if (r != NULL) {
            if (e->ended) {
                fail("nea_ref_req found a request that had ended", NULL);
            }
            if (req_id(r) != e->id) {
                fail("nea_ref_req found another request", NULL);
            }
            late_found++;
            nea_req_run(r, late_run, e);
        } else {
            late_gone++;
        }
    }
    e->in_timer = false;
    late_maybe_free(e);
}

static unsigned late_busy(void)
{
    unsigned n = 0;
    for (unsigned i = 0; i < LATES; i++) {
        n += lates[i].busy ? 1u : 0u;
    }
    return n;
}

/* GET /host/MS/M?id=N: answered by a host timer through a reference. */
static void h_host(nea_req *req, void *d)
{
    char mode;
    unsigned ms = tail_ms(req, &mode), id = req_id(req);
    late *e = late_get();
    (void)d;
    if (e == NULL) {
        answer_id(req, id);
        return;
    }
    e->mode = mode;
    e->id = id;
    e->ref = nea_req_ref(req);
    nea_req_keep(req);
    e->end_tracked = nea_req_defer(req, on_late_end, e) == 0;
    defers_registered += e->end_tracked ? 1u : 0u;
    uv_timer_start(&e->timer, on_late_timer, ms, 0);
}

/* GET /hold/MS/M?id=N: a hold, released by a host timer (MS 0: at once). */
static void h_hold(nea_req *req, void *d)
{
    char mode;
    unsigned ms = tail_ms(req, &mode), id = req_id(req);
    late_mem *m = nea_alloc(req, sizeof(*m)); /* may unwind: before an entry is taken */
    late *e = late_get();
    (void)d;
    if (e == NULL) {
        answer_id(req, id);
        return;
    }
    m->magic = LATE_MAGIC;
    m->id = id;
    e->is_hold = true;
    e->mode = mode;
    e->id = id;
    e->mem = m;
    e->ref = nea_req_ref(req);
    e->hold = nea_req_hold(req);
    e->end_tracked = nea_req_defer(req, on_late_end, e) == 0;
    defers_registered += e->end_tracked ? 1u : 0u;
    if (ms == 0) {
        e->in_timer = true;
        e->fired = true;
        late_release(e); /* inside the handler: a nested frame */
        e->in_timer = false;
        late_maybe_free(e);
        return;
    }
    uv_timer_start(&e->timer, on_late_timer, ms, 0);
}

/* POST /psink?id=N: a body read in pieces, pausing after each; a host
 * timer resumes it PSINK_MS later through a stored reference. */
#define PSINK_MS 1

static void psink_resume(nea_req *req, void *arg)
{
    (void)arg;
    nea_body_resume(req);
}

static void on_psink_timer(uv_timer_t *t)
{
    late *e = t->data;
    nea_req *r = nea_ref_req(e->ref);
    e->in_timer = true;
    e->fired = true;
    if (r != NULL) {
        if (e->ended) {
            fail("nea_ref_req found a request that had ended", NULL);
        }
        if (req_id(r) != e->id) {
            fail("nea_ref_req found another request", NULL);
        }
        late_found++;
        nea_req_run(r, psink_resume, e); /* the next piece may arm the timer again */
    } else {
        late_gone++;
    }
    e->in_timer = false;
    late_maybe_free(e);
}

static void psink_piece(nea_req *req, const char *data, size_t len, void *arg)
{
    late *e = arg;
    (void)len;
    if (data == NULL) {
        answer_id(req, e->id);
        return;
    }
    nea_body_pause(req);
    if (e->fired) {
        e->fired = false;
        uv_timer_start(&e->timer, on_psink_timer, PSINK_MS, 0);
    }
}

static void h_psink(nea_req *req, void *d)
{
    unsigned id = req_id(req);
    late *e = late_get();
    (void)d;
    if (e == NULL) {
        answer_id(req, id); /* before the body: the connection closes after it */
        return;
    }
    e->mode = 'p';
    e->id = id;
    e->fired = true; /* no timer armed */
    e->ref = nea_req_ref(req);
    /* Its pieces name the entry until the request ends: it must know when. */
    e->end_tracked = nea_req_defer(req, on_late_end, e) == 0;
    if (!e->end_tracked) {
        late_maybe_free(e);
        answer_id(req, id);
        return;
    }
    defers_registered++;
    if (nea_body_read(req, psink_piece, e) != 0) {
        answer_id(req, id);
    }
}

/* A thread-pool job (/work). The slot is static; the job's memory is in
 * the arena and is what work and done are given. */
typedef struct job_mem {
    uint64_t magic;
    unsigned slot, id, ms;
    uint64_t result; /* written by work, on the pool's thread */
} job_mem;

typedef struct job {
    bool busy;
    bool done;        /* done was called */
    bool ended;       /* the request's defers ran */
    bool end_tracked; /* a defer tells when it ends */
    char mode;
    unsigned id;
    unsigned done_calls;
    nea_ref ref;
    job_mem *mem;
} job;

static job jobs[JOBS];

static void job_maybe_free(job *j)
{
    if (j->busy && j->done && (j->ended || !j->end_tracked)) {
        j->busy = false;
    }
}

static void on_job_end(void *arg)
{
    job *j = arg;
    defers_run++;
    j->ended = true;
    job_maybe_free(j);
}

static uint64_t job_result(const job_mem *m)
{
    return (uint64_t)m->id * 7919u + m->ms + 1u;
}

static void job_work(void *arg)
{
    job_mem *m = arg;
    if (m->ms > 0) {
        usleep(m->ms * 1000u);
    }
    m->result = job_result(m);
}

static void job_done(nea_req *req, void *arg)
{
    job_mem *m = arg;
    nea_req *r;
    job *j;
    char mode;
    unsigned id;

    if (m->magic != JOB_MAGIC || m->slot >= JOBS) {
        fail("a job's arena memory changed before its done", NULL);
    }
    j = &jobs[m->slot];
    if (!j->busy || j->mem != m || j->done) {
        fail("done called again for a job that is over", NULL);
    }
    if (++j->done_calls != 1) {
        fail("done called more than once", NULL);
    }
    if (j->ended) {
        fail("a request ended before its job's done was called", NULL);
    }
    if (m->result != job_result(m)) {
        fail("done called before its work ran", NULL);
    }
    r = nea_ref_req(j->ref);
    if ((r != NULL) != (req != NULL) || (req != NULL && r != req)) {
        fail("done's request and nea_ref_req disagree", NULL);
    }
    if (req != NULL && req_id(req) != j->id) {
        fail("done called with another request", NULL);
    }
    jobs_live += req != NULL ? 1u : 0u;
    jobs_gone += req == NULL ? 1u : 0u;
    j->done = true;
    mode = j->mode;
    id = j->id;
    job_maybe_free(j); /* j is not touched again: it may be reused below */
    if (req != NULL && mode != 'e') {
        answer_late(req, id, mode);
    }
}

static job *job_get(void)
{
    for (unsigned i = 0; i < JOBS; i++) {
        if (!jobs[i].busy) {
            memset(&jobs[i], 0, sizeof(jobs[i]));
            jobs[i].busy = true;
            return &jobs[i];
        }
    }
    return NULL;
}

static unsigned jobs_busy(void)
{
    unsigned n = 0;
    for (unsigned i = 0; i < JOBS; i++) {
        n += jobs[i].busy ? 1u : 0u;
    }
    return n;
}

/* The host timers and jobs still pending, for a report. */
static void dump_late(void)
{
    for (unsigned i = 0; i < LATES; i++) {
        const late *e = &lates[i];
        if (e->busy) {
            fprintf(stderr,
                    "  host timer %u: id %u mode %c hold %d fired %d in_timer %d ended %d "
                    "tracked %d active %d\n",
                    i, e->id, e->mode, (int)e->is_hold, (int)e->fired, (int)e->in_timer,
                    (int)e->ended, (int)e->end_tracked,
                    uv_is_active((const uv_handle_t *)&e->timer));
        }
    }
    for (unsigned i = 0; i < JOBS; i++) {
        const job *j = &jobs[i];
        if (j->busy) {
            fprintf(stderr, "  job %u: id %u mode %c done %d ended %d tracked %d\n", i, j->id,
                    j->mode, (int)j->done, (int)j->ended, (int)j->end_tracked);
        }
    }
}

/* GET /work/MS/M?id=N: a job on the thread pool; done answers. */
static void h_work(nea_req *req, void *d)
{
    char mode;
    unsigned ms = tail_ms(req, &mode), id = req_id(req);
    job_mem *m = nea_alloc(req, sizeof(*m)); /* may unwind: before a slot is taken */
    job *j;
    int rc;
    (void)d;
    if (mode == 'e') {
        answer_id(req, id); /* the job runs all the same */
    }
    j = job_get();
    if (j == NULL) {
        if (mode != 'e') {
            answer_id(req, id);
        }
        return;
    }
    m->magic = JOB_MAGIC;
    m->slot = (unsigned)(j - jobs);
    m->id = id;
    m->ms = ms;
    m->result = 0;
    j->mode = mode;
    j->id = id;
    j->mem = m;
    j->ref = nea_req_ref(req);
    j->end_tracked = nea_req_defer(req, on_job_end, j) == 0;
    defers_registered += j->end_tracked ? 1u : 0u;
    rc = nea_req_work(req, job_work, job_done, m);
    if (rc != 0) {
        j->done = true; /* never called: the slot frees with the request */
        job_maybe_free(j);
        if (mode != 'e') {
            answer_id(req, id);
        }
    }
}

static void setup(void)
{
    nea_config cfg;
    int rc;

    verbose = getenv("FUZZ_SERVER_VERBOSE") != NULL;
    signal(SIGPIPE, SIG_IGN);
    for (unsigned i = 0; i < CLIENTS; i++) {
        clients[i].fd = -1;
    }
    memset(bulk, 'z', sizeof(bulk));
    src_pair = ((unsigned)getpid() * 7919u) % SRC_PAIRS; /* replays in a row start elsewhere */
    if (uv_loop_init(&loop) != 0) {
        abort();
    }
    uv_timer_init(&loop, &wake);
    for (unsigned i = 0; i < LATES; i++) {
        uv_timer_init(&loop, &lates[i].timer);
        lates[i].timer.data = &lates[i];
    }

    nea_config_init(&cfg);
    cfg.host = "127.0.0.1";
    cfg.port = 0;
    cfg.read_buffer_size = READ_BUFFER;
    cfg.arena_count = ARENAS;
    cfg.max_connections = SLOTS;
    cfg.conn_buffers = BUFFERS;
    cfg.queue_length = QUEUE;
    cfg.max_body_size = MAX_BODY;
    cfg.queue_timeout_ms = T_QUEUE;
    cfg.header_timeout_ms = T_HEADER;
    cfg.body_timeout_ms = T_BODY;
    cfg.body_deadline_ms = T_BODY_DEADLINE;
    cfg.body_min_rate = BODY_MIN_RATE;
    cfg.body_rate_grace_ms = T_RATE_GRACE;
    cfg.response_timeout_ms = T_RESPONSE;
    cfg.keepalive_timeout_ms = T_KEEPALIVE;
    cfg.write_timeout_ms = T_WRITE;
    cfg.drain_timeout_ms = 2 * T_WRITE;
    cfg.scrub = NEA_SCRUB_POISON;
    cfg.log = on_log;
    /* Room for the request, the head copy, the handler minimum and a body
     * of max_body_size: echoing such a body does not fit (500). */
    cfg.arena_size = NEA__ROUND_UP(sizeof(nea_req), NEA__ALIGN) + READ_BUFFER +
                     NEA__MIN_HANDLER_BYTES + MAX_BODY;
    rc = nea_server_new(&loop, &cfg, &srv);
    if (rc != 0) {
        fprintf(stderr, "fuzz_server: nea_server_new: %s\n", nea_strerror(rc));
        abort();
    }
    if (nea_server_route(srv, "GET", "/now", h_now, NULL) != 0 ||
        nea_server_route(srv, "GET", "/later/", h_later, NULL) != 0 ||
        nea_server_route(srv, "GET", "/never", h_never, NULL) != 0 ||
        nea_server_route(srv, "GET", "/forget", h_forget, NULL) != 0 ||
        nea_server_route(srv, "GET", "/oom", h_oom, NULL) != 0 ||
        nea_server_route(srv, "GET", "/big/", h_big, NULL) != 0 ||
        nea_server_route(srv, "GET", "/bulk/", h_bulk, NULL) != 0 ||
        nea_server_route(srv, "POST", "/echo", h_echo, NULL) != 0 ||
        nea_server_route(srv, "GET", "/stream/", h_stream, NULL) != 0 ||
        nea_server_route(srv, "GET", "/drip/", h_drip, NULL) != 0 ||
        nea_server_route_stream(srv, "POST", "/sink", h_sink, NULL, 0, SINK_MAX) != 0 ||
        nea_server_route_stream(srv, "POST", "/psink", h_psink, NULL, 0, SINK_MAX) != 0 ||
        nea_server_route(srv, "GET", "/host/", h_host, NULL) != 0 ||
        nea_server_route(srv, "GET", "/work/", h_work, NULL) != 0 ||
        nea_server_route(srv, "GET", "/hold/", h_hold, NULL) != 0) {
        abort();
    }
    rc = nea_server_listen(srv);
    if (rc != 0) {
        fprintf(stderr, "fuzz_server: nea_server_listen: %s\n", nea_strerror(rc));
        abort();
    }
    port = nea_server_port(srv);
}

/* --- the loop ------------------------------------------------------------ */

#define STALL_MS 10 /* the harness (or the machine) held the loop up this long */

static uint64_t last_run_end;
/* The loop was held up between two runs (a loaded machine): a write
 * deadline may have passed while the socket was writable, so a response
 * may be cut and its connection closed in order. */
static bool stalled;

static void run_loop(uv_run_mode mode, uint64_t due)
{
    uint64_t t0 = fuzz_now_ms();
    if (last_run_end != 0 && t0 - last_run_end > STALL_MS) {
        stalled = true;
    }
    uv_run(&loop, mode);
    last_run_end = fuzz_now_ms();
    if (last_run_end > due + STALL_MS) {
        stalled = true;
    }
}

static void pump(unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        run_loop(UV_RUN_NOWAIT, fuzz_now_ms());
    }
}

/* Lets up to ms of real time pass on the loop, so timers due by then fire;
 * returns early when done() says so (checked after every iteration). Each
 * turn is bounded as fuzzloop.h's, through run_loop's stall check. */
static void pump_wait(unsigned ms, bool (*done)(void))
{
    uint64_t now = fuzz_now_ms(), end = now + ms;
    while (now < end && (done == NULL || !done())) {
        fuzz_wake_in(&loop, &wake, end - now);
        run_loop(UV_RUN_ONCE, end);
        uv_timer_stop(&wake);
        now = fuzz_now_ms();
    }
}

/* --- clients ------------------------------------------------------------- */

/* Reads up to limit bytes of what client c has been sent so far, without
 * blocking (what does not fit in rx is read and dropped). */
static void client_read(client *c, size_t limit)
{
    char tmp[4096];
    while (c->fd >= 0 && !c->eof && !c->reset && limit > 0) {
        ssize_t n = recv(c->fd, tmp, limit < sizeof(tmp) ? limit : sizeof(tmp), MSG_DONTWAIT);
        if (n > 0) {
            size_t take = (size_t)n;
            limit -= (size_t)n;
            if (take > RX_CAP - c->rx_len) {
                take = RX_CAP - c->rx_len;
            }
            memcpy(c->rx + c->rx_len, tmp, take);
            c->rx_len += take;
        } else if (n == 0) {
            c->eof = true;
        } else if (errno == EINTR) {
            continue;
        } else {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                c->reset = true; /* ECONNRESET */
            }
            return;
        }
    }
}

/* Ordinary clients read everything, after every op. */
static void read_ordinary(void)
{
    for (unsigned i = 0; i < CLIENTS; i++) {
        if (!clients[i].deaf) {
            client_read(&clients[i], SIZE_MAX);
        }
    }
}

/* The loopback address client k connects from in this input. */
static uint32_t client_addr(unsigned k)
{
    return SRC_BASE + 2u * src_pair + (k >= CLIENTS / 2 ? 1u : 0u);
}

/* Binds fd to client k's address; the port is chosen at connect(), by the
 * kernel (IP_BIND_ADDRESS_NO_PORT). The pair of addresses is new in every
 * input: the server's TIME_WAIT entries of earlier inputs (it often closes
 * first) never meet a new connection. */
static void bind_source(int fd, unsigned k)
{
    struct sockaddr_in sin;
    int one = 1;

    (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(client_addr(k));
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        perror("fuzz_server: bind to a loopback address");
        abort();
    }
}

/* Connects client c; rcvbuf > 0: its receive buffer, set before connect()
 * so the window it offers stays that small. */
static void client_open(client *c, int rcvbuf)
{
    int one = 1;
    struct sockaddr_in sin;
    socklen_t len = sizeof(c->local);
    struct pollfd pfd;
    int fd;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("fuzz_server: socket");
        abort();
    }
    bind_source(fd, (unsigned)(c - clients));
    /* Every send its own segment, at once: no Nagle wait for the server's
     * ACK (which it delays while it has nothing to send with it, e.g.
     * against a client's closed window). */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (rcvbuf > 0) {
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    }
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 && errno != EINPROGRESS) {
        perror("fuzz_server: connect");
        abort();
    }
    /* The kernel completes a loopback handshake at once (the listener's
     * backlog takes it whether or not the server accepts). */
    pfd.fd = fd;
    pfd.events = POLLOUT;
    if (poll(&pfd, 1, CONNECT_MS) != 1) {
        fprintf(stderr, "fuzz_server: connect to 127.0.0.1:%d did not complete in %d ms\n", port,
                CONNECT_MS);
        abort();
    }
    if (getsockname(fd, (struct sockaddr *)&c->local, &len) != 0) {
        perror("fuzz_server: getsockname");
        abort();
    }
    c->fd = fd;
    c->rx_len = 0;
    c->eof = c->reset = c->shut = false;
    c->deaf = c->slowed = c->squeeze = false;
    c->exact = true;
    c->head = false;
    c->roll = 0;
    c->nreq = 0;
    c->lost = false;
}

/* Notes bytes about to be sent: a HEAD request among them makes an
 * announced body that is not sent a valid answer. */
static void note_sent(client *c, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        c->roll = c->roll << 8 | (uint8_t)b[i];
        if (c->roll == ((uint32_t)'H' << 24 | (uint32_t)'E' << 16 | (uint32_t)'A' << 8 | 'D')) {
            c->head = true;
        }
    }
}

/* Sends n bytes; false when not all of them could be (a reset, or the
 * server stopped taking them). */
static bool client_send(client *c, const void *p, size_t n)
{
    const char *b = p;
    unsigned stalls = 0;
    if (c->fd < 0 || c->shut) {
        return false;
    }
    note_sent(c, b, n);
    while (n > 0) {
        ssize_t w = send(c->fd, b, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            b += w;
            n -= (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && stalls++ < 20) {
            pump(2); /* the server stopped reading (backpressure): let it work */
            read_ordinary();
        } else {
            return false; /* reset, or the server will not take more */
        }
    }
    return true;
}

/* Raw bytes: the client no longer knows how many requests it sent. */
static void client_send_raw(client *c, const void *p, size_t n)
{
    c->exact = false;
    (void)client_send(c, p, n);
}

static void note_request(client *c, unsigned canned, unsigned id)
{
    if (c->nreq < REQS_KEPT) {
        c->reqs[c->nreq].canned = canned;
        c->reqs[c->nreq].id = id;
    } else {
        c->lost = true;
    }
    c->nreq++;
}

/* --- the slots serving the clients ------------------------------------------ */

/* The slot serving client c (matched by its address), or NULL. */
static nea__conn *slot_of(const client *c)
{
    const nea__admission *adm = &srv->admission;
    if (c->fd < 0) {
        return NULL;
    }
    for (unsigned i = 0; i < adm->count; i++) {
        nea__conn *s = nea__admission_slot(adm, i);
        struct sockaddr_in peer;
        socklen_t len = sizeof(peer);
        uv_os_fd_t fd;
        if (s->state == NEA__C_FREE || s->state == NEA__C_CLOSING ||
            uv_fileno((uv_handle_t *)&s->tcp, &fd) != 0) {
            continue;
        }
        if (getpeername(fd, (struct sockaddr *)&peer, &len) == 0 &&
            peer.sin_port == c->local.sin_port &&
            peer.sin_addr.s_addr == c->local.sin_addr.s_addr) {
            return s;
        }
    }
    return NULL;
}

/* Sets the server's send buffer of c's connection, if it was accepted. */
static void squeeze(client *c)
{
    nea__conn *s = slot_of(c);
    uv_os_fd_t fd;
    if (s != NULL && uv_fileno((uv_handle_t *)&s->tcp, &fd) == 0) {
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &c->sndbuf, sizeof(c->sndbuf));
        c->squeeze = false;
    }
}

/* Sizes of OPENT and SQUEEZE: 1 is raised to the kernel's minimum. */
static const int rcvbufs[4] = {1, 2048, 4096, 8192};
static const int sndbufs[4] = {1, 4096, 8192, 0};

static void set_squeeze(client *c, unsigned b)
{
    c->sndbuf = sndbufs[b & 3u];
    c->slowed = c->slowed || c->sndbuf > 0;
    c->squeeze = c->fd >= 0 && c->sndbuf > 0;
    for (unsigned i = 0; i < 3 && c->squeeze; i++) {
        squeeze(c);
        if (c->squeeze) {
            pump(1); /* not accepted yet */
        }
    }
}

static const char *phase_of(const client *c)
{
    const nea__conn *s = slot_of(c);
    return s != NULL ? phase_names[s->state] : "no slot";
}

static const client *await_client;
static nea__conn_state await_phase;

static bool await_reached(void)
{
    const nea__conn *s = slot_of(await_client);
    return s != NULL ? s->state == await_phase : await_phase == NEA__C_FREE;
}

static bool nothing_late(void)
{
    return late_busy() == 0 && jobs_busy() == 0;
}

/* --- checking what a client received -------------------------------------- */

/* Canned request indexes the checks name (see canned[]). */
#define C_FORGET 5u

/* Walks the responses a client received, next to the requests it sent. */
typedef struct pairing {
    const client *c;
    unsigned i;   /* responses so far */
    unsigned pos; /* requests looked at (by id) */
    bool last_closes;
} pairing;

static bool response_id(const fz_response *r, unsigned *id)
{
    unsigned long v = 0;
    size_t i = 3;
    if (r->cut || r->body_len < 4 || memcmp(r->body, "id=", 3) != 0 ||
        !fz_contains(r->head, r->head_len, "\r\nContent-Type: " ID_TYPE "\r\n")) {
        return false;
    }
    for (; i < r->body_len && r->body[i] >= '0' && r->body[i] <= '9' && v < 0xFFFFFFFFu; i++) {
        v = v * 10 + (unsigned long)(r->body[i] - '0');
    }
    *id = (unsigned)v;
    return i > 3;
}

static void on_response(const fz_response *r, void *data)
{
    pairing *pr = data;
    const client *c = pr->c;
    unsigned id = 0;
    bool has_id = response_id(r, &id);

    if (c->exact && !c->lost) {
        const sent_req *q;
        if (pr->i >= c->nreq) {
            /* A connection refused before any request was read (no slot,
             * or its address over its share) is told 503 and closed. */
            if (r->status != 503 || !r->closes) {
                fail("a client received more answers than it sent requests", c);
            }
            pr->i++;
            return;
        }
        q = &c->reqs[pr->i];
        if (has_id && id != q->id) {
            fail("an answer carries the id of another request", c);
        }
        if (!faulted &&
            (r->status == 400 || r->status == 413 || r->status == 414 || r->status == 431)) {
            fail("a whole canned request was refused as malformed or too large", c);
        }
        if (!faulted && q->canned == C_FORGET && r->status == 500 && !r->cut &&
            fz_contains(r->body, r->body_len, "arena")) {
            fail("an unanswered handler's 500 speaks of the memory arena", c);
        }
    } else if (has_id && !c->lost) {
        while (pr->pos < c->nreq && c->reqs[pr->pos].id != id) {
            pr->pos++;
        }
        if (pr->pos == c->nreq) {
            fail("a client received an id it did not ask for (or out of order)", c);
        }
        pr->pos++;
    }
    pr->i++;
    pr->last_closes = r->closes;
}

static void check_client(const client *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    bool cut_ok, clean;
    pairing pr = {c, 0, 0, false};
    size_t n;

    if (verbose) {
        fprintf(stderr, "fuzz_server: client %d received %zu bytes%s%s%s:\n%.*s\n",
                (int)(c - clients), c->rx_len, c->eof ? ", then EOF" : "",
                c->reset ? ", then a reset" : "", c->slowed ? " (slowed)" : "", (int)c->rx_len,
                c->rx);
    }
    /* A reset after the server's FIN (our bytes reached its closed socket)
     * shows only here: recv() reports the FIN first. */
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        err = errno;
    }
    cut_ok = !c->eof || c->reset || err != 0 || c->rx_len == RX_CAP || c->slowed || stalled;
    clean = !cut_ok;
    fz_stream st = {c->rx, c->rx_len, cut_ok, true, rx_memo, !c->head};
    if (!fz_responses_valid(&st)) {
        fail("a client received something that is not a sequence of HTTP/1.1 responses", c);
    }
    n = fz_responses_each(&st, on_response, &pr);
    if (clean && c->exact && !c->lost && n < c->nreq && !(n > 0 && pr.last_closes)) {
        fail("the server closed in order, leaving whole requests unanswered", c);
    }
}

/* Checks what c received and closes it; an ordinary client reads first, a
 * deaf one leaves what it was sent unread (the kernel then resets). */
static void client_close(client *c, bool rst)
{
    if (c->fd < 0) {
        return;
    }
    if (!c->deaf) {
        client_read(c, SIZE_MAX);
    }
    check_client(c);
    if (rst) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        (void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(c->fd);
    c->fd = -1;
    c->deaf = false;
}

/* --- canned requests -------------------------------------------------------- */

/* 240 one-byte chunks, then the last chunk. */
#define CHUNK1 "1\r\nx\r\n"
#define CHUNKS8 CHUNK1 CHUNK1 CHUNK1 CHUNK1 CHUNK1 CHUNK1 CHUNK1 CHUNK1
#define CHUNKS40 CHUNKS8 CHUNKS8 CHUNKS8 CHUNKS8 CHUNKS8
#define CHUNKS240 CHUNKS40 CHUNKS40 CHUNKS40 CHUNKS40 CHUNKS40 CHUNKS40

/* '@' stands for the request's id (a new one for every request sent). */
static const char *const canned[] = {
    "GET /now HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /later/3 HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /later/12 HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /later/40 HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /never HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /forget HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /oom HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /big/900 HTTP/1.1\r\nHost: a\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789",
    "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 200\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    "GET /now HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    "GET /now HTTP/1.0\r\n\r\n",
    "HEAD /now HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /now HTTP/1.1\r\nHo",
    "GET /missing HTTP/1.1\r\nHost: a\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1024\r\n\r\n",
    "10\r\n0123456789abcdef\r\n",
    "0\r\n\r\n",
    "GET /big/5000 HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /now HTTP/1.1\r\nHost: a\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
    "GET /stream/3000 HTTP/1.1\r\nHost: a\r\n\r\n",
    "HEAD /stream/100 HTTP/1.1\r\nHost: a\r\n\r\n",
    "POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: 20\r\n\r\n01234567890123456789",
    "POST /sink HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n",
    "POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: 16\r\nExpect: 100-continue\r\n\r\n",
    /* 28: answered later, each with its id */
    "GET /host/5/a?id=@ HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /host/30/a?id=@ HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /host/8/o?id=@ HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /host/4/n?id=@ HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /work/0/a?id=@ HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /work/10/a?id=@ HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /work/40/a?id=@ HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /work/3/o?id=@ HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /work/6/e?id=@ HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /work/2/n?id=@ HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /hold/0/a?id=@ HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /hold/8/a?id=@ HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /hold/30/a?id=@ HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /hold/6/n?id=@ HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /hold/4/o?id=@ HTTP/1.1\r\nHost: a\r\n\r\n",
    /* 43: big answers, for clients that stop reading */
    "GET /bulk/16000 HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /bulk/4000 HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /stream/20000 HTTP/1.1\r\nHost: a\r\n\r\n",
    /* 46: Expect: 100-continue, whole; a body followed by the next such head */
    "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
    "helloPOST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    /* 48 */
    "POST /sink HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" CHUNKS240 "0\r\n\r\n",
    "HEAD /never HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /work/20/a?id=@ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    "HEAD /host/5/a?id=@ HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /drip/8 HTTP/1.1\r\nHost: a\r\n\r\n",
    /* 53: bodies paused after every piece, resumed by a host timer */
    "POST /psink?id=@ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" CHUNK1 CHUNK1
        CHUNK1 CHUNK1 "0\r\n\r\n",
    "POST /psink?id=@ HTTP/1.1\r\nHost: a\r\nContent-Length: 200\r\n\r\n",
    "POST /psink?id=@ HTTP/1.1\r\nHost: a\r\nContent-Length: 16\r\nExpect: 100-continue\r\n\r\n",
};
#define CANNED (sizeof(canned) / sizeof(canned[0]))

static bool canned_whole[CANNED]; /* a whole request, and only one */

/* Whether s is exactly one whole request: a head (method first), then the
 * body its framing announces. */
static bool is_whole(const char *s)
{
    const char *end = strstr(s, "\r\n\r\n"), *cl = strstr(s, "\r\nContent-Length: ");
    size_t body;
    if (s[0] < 'A' || s[0] > 'Z' || end == NULL) {
        return false;
    }
    end += 4;
    body = strlen(end);
    if (strstr(s, "\r\nTransfer-Encoding: chunked\r\n") != NULL) {
        return body >= 5 && strcmp(end + body - 5, "0\r\n\r\n") == 0;
    }
    return cl != NULL && cl < end ? strtoul(cl + 18, NULL, 10) == body : body == 0;
}

/* Sends canned request i, copies times in one write, each with its own id. */
static void send_canned(client *c, unsigned i, unsigned copies)
{
    static char out[3 * 2048];
    size_t len = 0;
    for (unsigned k = 0; k < copies; k++) {
        unsigned id = 0;
        for (const char *t = canned[i]; *t != '\0'; t++) {
            if (*t == '@') {
                id = ++next_id;
                len += (size_t)snprintf(out + len, sizeof(out) - len, "%u", id);
            } else {
                out[len++] = *t;
            }
        }
        note_request(c, i, id);
    }
    if (!canned_whole[i]) {
        c->exact = false;
    }
    if (!client_send(c, out, len)) {
        c->exact = false;
    }
}

/* XPIPE: an Expect: 100-continue POST head; then, n times, each in its own
 * send after a loop turn, its body followed by the next such head (the
 * last body alone). */
static void send_xpipe(client *c, unsigned b)
{
    static const unsigned sizes[4] = {5, 200, 900, 40};
    static char out[1024];
    unsigned n = (b & 31u) + 1u, size = sizes[(b >> 5) & 3u];
    char head[160];
    int head_len = snprintf(head, sizeof(head),
                            "POST %s HTTP/1.1\r\nHost: a\r\nContent-Length: %u\r\nExpect: "
                            "100-continue\r\n\r\n",
                            (b & 0x80u) != 0 ? "/sink" : "/echo", size);
    bool ok = client_send(c, head, (size_t)head_len);
    memset(out, 'e', size);
    for (unsigned i = 0; i < n && ok; i++) {
        size_t len = size;
        note_request(c, XPIPE_KIND, 0);
        if (i + 1 < n) {
            memcpy(out + len, head, (size_t)head_len);
            len += (size_t)head_len;
        }
        pump(1);
        read_ordinary();
        ok = client_send(c, out, len);
    }
    if (!ok) {
        c->exact = false;
    }
}

/* --- one input ------------------------------------------------------------------ */

static bool all_clients_done(void)
{
    for (unsigned i = 0; i < CLIENTS; i++) {
        client_read(&clients[i], SIZE_MAX);
    }
    for (unsigned i = 0; i < CLIENTS; i++) {
        if (clients[i].fd >= 0 && !clients[i].eof && !clients[i].reset) {
            return false;
        }
    }
    return true;
}

static bool quiescent(void)
{
    const nea__admission *adm = &srv->admission;
    nea_stats st;
    nea_server_stats(srv, &st);
    return st.connections_open == 0 && nea_stats_arenas(&st).in_use == 0 && st.queue_length == 0 &&
           srv->env.reqs.live == 0 && !adm->accept_pending && !nea__admission_busy(adm) &&
           nothing_late();
}

/* Quiescent, and still so after a few more loop iterations (a connection
 * may still sit in the listener's backlog). */
static bool settled(void)
{
    for (unsigned i = 0; i < 4; i++) {
        if (!quiescent()) {
            return false;
        }
        pump(1);
    }
    return quiescent();
}

/* Runs the loop until cond() holds, for at most SETTLE_LIMIT_MS; describes
 * the server if that takes longer than SLOW_MS. Returns cond(). */
static bool wait_until(bool (*cond)(void), const char *what)
{
    uint64_t start = fuzz_now_ms(), deadline = start + SETTLE_LIMIT_MS;
    bool reported = false;
    while (!cond() && fuzz_now_ms() < deadline) {
        pump_wait(1, cond);
        if (!reported && fuzz_now_ms() - start > SLOW_MS) {
            dump_server(what);
            dump_late();
            reported = true;
        }
    }
    return cond();
}

static void check_idle(void)
{
    const nea__admission *adm = &srv->admission;
    nea_stats st;
    nea_server_stats(srv, &st);
    if (st.connections_open != 0 || nea_stats_arenas(&st).in_use != 0 || st.queue_length != 0 ||
        srv->env.reqs.live != 0) {
        fail("server not back to idle after the input", NULL);
    }
    if (srv->env.reqs.tramp.top != NULL) {
        fail("a protected frame is left on the trampoline", NULL);
    }
    for (unsigned k = 0; k < NEA_ARENA_CLASSES; k++) {
        if (adm->wait_head[k] != NULL || adm->wait_tail[k] != NULL || adm->exempt_head[k] != NULL ||
            adm->exempt_tail[k] != NULL) {
            fail("an arena wait queue is not empty", NULL);
        }
    }
    if (adm->idle_head != NULL || adm->idle_tail != NULL || adm->linger_head != NULL ||
        adm->linger_tail != NULL || adm->wait_len != 0) {
        fail("an admission list (idle, wait, linger) is not empty", NULL);
    }
    if (defers_registered != defers_run) {
        fail("a registered defer did not run exactly once", NULL);
    }
    if (!nothing_late()) {
        fail("a host timer or a job is still pending (or its request did not end)", NULL);
    }
}

/* A fresh connection must still be served: no slot, arena or listener was
 * lost by the input. */
static void probe(void)
{
    static const char req[] = "GET /now HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n";
    client *c = &clients[0];

    client_open(c, 0);
    note_request(c, 0, 0);
    (void)client_send(c, req, sizeof(req) - 1);
    (void)wait_until(all_clients_done, "slow probe");
    if (c->rx_len < 13 || memcmp(c->rx, "HTTP/1.1 200 ", 13) != 0 || !c->eof) {
        fail("a fresh connection was not answered 200 after the input", c);
    }
    client_close(c, true);
}

/* The extended ops (0xFa). */
static const uint8_t *run_extended(unsigned sub, const uint8_t *p, const uint8_t *end,
                                   unsigned *wait_budget)
{
    client *c;
    unsigned b = 0;
    if (sub > 5 || p >= end) {
        return p;
    }
    c = &clients[*p++ & 7u];
    if (sub != 2 && p < end) {
        b = *p++;
    }
    switch (sub) {
    case 0: /* OPENT */
        client_close(c, false);
        client_open(c, rcvbufs[b & 3u]);
        c->deaf = c->slowed = true;
        set_squeeze(c, b >> 2);
        break;
    case 1: /* SQUEEZE */
        set_squeeze(c, b);
        break;
    case 2: /* DEAF */
        c->deaf = !c->deaf;
        c->slowed = true;
        break;
    case 3: /* XPIPE */
        send_xpipe(c, b);
        break;
    case 4:   /* AWAIT */
    case 5: { /* LATE */
        uint64_t t0 = fuzz_now_ms();
        unsigned ms = AWAIT_MS < *wait_budget ? AWAIT_MS : *wait_budget, spent;
        await_client = c;
        await_phase = (nea__conn_state)(b % NEA__C_PHASES);
        pump_wait(ms, sub == 4 ? await_reached : nothing_late);
        spent = (unsigned)(fuzz_now_ms() - t0);
        *wait_budget -= spent < *wait_budget ? spent : *wait_budget;
        if (verbose && sub == 4) {
            fprintf(stderr, "fuzz_server: client %d awaited %s: %s\n", (int)(c - clients),
                    phase_names[await_phase], phase_of(c));
        }
        break;
    }
    default:
        break;
    }
    return p;
}

static void run_script(const uint8_t *p, const uint8_t *end)
{
    unsigned wait_budget = WAIT_BUDGET_MS;

    for (unsigned ops = 0; p < end && ops < MAX_OPS; ops++) {
        uint8_t b = *p++;
        unsigned op = b >> 4, a = b & 15u;
        client *c = &clients[a & 7u];
        if (verbose) {
            fprintf(stderr, "fuzz_server: op %X arg %u\n", op, a);
            if (op == 0x3 || op == 0x4) {
                fprintf(stderr, "fuzz_server: client %u is in phase %s\n", a & 7u, phase_of(c));
            }
        }
        switch (op) {
        case 0x0:
            client_close(c, false);
            client_open(c, 0);
            break;
        case 0x2:
        case 0xC:
        case 0xD:
            if (op == 0xD) {
                client_close(c, false);
                client_open(c, 0);
            }
            if (p >= end) {
                break;
            }
            send_canned(c, *p++ % (unsigned)CANNED, op == 0xC ? 3u : 1u);
            break;
        case 0x1: {
            size_t n;
            if (p >= end) {
                break;
            }
            n = *p++;
            n = n < (size_t)(end - p) ? n : (size_t)(end - p);
            client_send_raw(c, p, n);
            p += n;
            break;
        }
        case 0x3:
            if (c->fd >= 0 && !c->shut) {
                (void)shutdown(c->fd, SHUT_WR);
                c->shut = true;
            }
            break;
        case 0x4:
            client_close(c, (a & 8u) != 0);
            break;
        case 0x5:
            client_read(c, c->deaf ? SIP_BYTES : SIZE_MAX);
            break;
        case 0x6: {
            unsigned ms = (a + 1) * 3;
            ms = ms < wait_budget ? ms : wait_budget;
            wait_budget -= ms;
            pump_wait(ms, NULL);
            break;
        }
        case 0x7:
            for (unsigned i = 0; i < ARENAS; i++) {
                if (held[i] == NULL) {
                    held[i] = nea__pool_acquire(&srv->pools[0]);
                    break;
                }
            }
            break;
        case 0x8:
            for (unsigned i = 0; i < ARENAS; i++) {
                if (held[i] != NULL) {
                    nea__server_give_back(srv, held[i]);
                    held[i] = NULL;
                    break;
                }
            }
            break;
        case 0x9:
            faulted = true;
            if (a & 8u) {
                nea__fault_arm(&srv->fault, NEA__FAULT_ACCEPT, 1, false);
            } else {
                nea__fault_arm(&srv->fault, NEA__FAULT_ARENA, (a & 7u) + 1, false);
            }
            break;
        case 0xA:
            pump(a + 1);
            break;
        case 0xB: {
            char fill[64];
            memset(fill, 'x', sizeof(fill));
            client_send_raw(c, fill, (a & 8u) != 0 ? 64u : 16u);
            break;
        }
        case 0xE:
            for (unsigned i = 0; i < CLIENTS; i++) {
                client_read(&clients[i], clients[i].deaf ? SIP_BYTES : SIZE_MAX);
            }
            break;
        case 0xF:
            p = run_extended(a, p, end, &wait_budget);
            break;
        default:
            break;
        }
        pump(2);
        for (unsigned i = 0; i < CLIENTS; i++) {
            if (clients[i].squeeze) {
                squeeze(&clients[i]);
            }
        }
        read_ordinary();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    uint64_t started, t_script, t_finish, t_settle, t_probe;

    if (!ready) {
        setup();
        for (unsigned i = 0; i < CANNED; i++) {
            canned_whole[i] = is_whole(canned[i]);
        }
        ready = true;
    }
    src_pair = (src_pair + 1) % SRC_PAIRS;
    /* An address refused a slot by an earlier input (another address then)
     * would make this input's second connection over its share. */
    memset(srv->admission.share.waiting, 0, sizeof(srv->admission.share.waiting));
    next_id = 0;
    faulted = stalled = false;
    last_run_end = 0;
    started = fuzz_now_ms();
    run_script(data, data + size);
    t_script = fuzz_now_ms();

    /* Back to a server nobody else uses. */
    for (unsigned i = 0; i < ARENAS; i++) {
        if (held[i] != NULL) {
            nea__server_give_back(srv, held[i]);
            held[i] = NULL;
        }
    }
    nea__fault_arm(&srv->fault, NEA__FAULT_ARENA, 0, false);
    nea__fault_arm(&srv->fault, NEA__FAULT_ACCEPT, 0, false);

    /* Every client says it is done and reads (deaf ones too) until the
     * server closes. */
    for (unsigned i = 0; i < CLIENTS; i++) {
        client *c = &clients[i];
        if (c->fd >= 0 && !c->shut) {
            (void)shutdown(c->fd, SHUT_WR);
            c->shut = true;
        }
    }
    pump(2);
    pump_wait(FINISH_MS, all_clients_done);
    for (unsigned i = 0; i < CLIENTS; i++) {
        client_close(&clients[i], true);
    }
    t_finish = fuzz_now_ms();

    /* The clients are gone: every slot and arena must come back, every
     * host timer and job finish. */
    if (!wait_until(settled, "slow to settle")) {
        fail("the server was not quiescent 3 s after its clients left", NULL);
    }
    check_idle();
    t_settle = fuzz_now_ms();
    probe();
    t_probe = fuzz_now_ms();
    if (!wait_until(settled, "slow to settle after the probe")) {
        fail("the server was not quiescent 3 s after the probe", NULL);
    }
    check_idle();
    if (fuzz_now_ms() - started > 1000) {
        fprintf(stderr,
                "fuzz_server: slow input (%zu bytes): script %llu ms, finish %llu, settle %llu, "
                "probe %llu, settle again %llu\n",
                size, (unsigned long long)(t_script - started),
                (unsigned long long)(t_finish - t_script),
                (unsigned long long)(t_settle - t_finish), (unsigned long long)(t_probe - t_settle),
                (unsigned long long)(fuzz_now_ms() - t_probe));
    }
    if (verbose) {
        nea_stats st;
        nea_server_stats(srv, &st);
        fprintf(stderr,
                "fuzz_server: %zu bytes: %llu ms%s; so far accepted %llu, evicted %llu, shed_503 "
                "%llu (fair %llu), timeouts %llu, unanswered %llu, oom_500 %llu; references "
                "found %lu, gone %lu; jobs done live %lu, cancelled %lu\n",
                size, (unsigned long long)(fuzz_now_ms() - started), stalled ? " (stalled)" : "",
                (unsigned long long)st.accepted, (unsigned long long)st.evicted,
                (unsigned long long)nea_stats_shed(&st), (unsigned long long)st.shed_fair,
                (unsigned long long)st.timeouts, (unsigned long long)st.unanswered,
                (unsigned long long)st.oom_500, late_found, late_gone, jobs_live, jobs_gone);
    }
    return 0;
}
