/*
 * nea.h - libnea, bounded-memory HTTP/1.1 request handling on libuv.
 *
 * libnea reserves all request memory once, at start, in one mapping whose
 * size is computed exactly from a nea_config (see nea_config_plan). Every
 * in-flight request owns one fixed-size bump arena from that mapping. A
 * request that exhausts its arena gets a 500 and nobody else notices; when
 * arenas or connection slots run out, clients get a pre-built 503 with
 * Retry-After. Steady-state request handling makes no heap allocation.
 *
 * Threading: a server and everything it hands out belong to the thread that
 * runs its uv_loop_t. No function here is safe to call from another thread,
 * with the exceptions that say so. With nea_config.workers > 1 the server
 * runs one share-nothing worker per thread (each with its own loop, slots,
 * arenas and listening socket, see "workers" below); each request belongs
 * to the worker thread that accepted its connection.
 *
 * Errors: functions return 0 or a negative errno-compatible int (libuv's
 * UV_E* codes pass through unchanged; libnea's own codes are NEA_E*, in a
 * range libuv does not use). nea_strerror() names any of them. A function
 * that takes a callback and returns an error never calls that callback.
 *
 * Handler rules (a handler is any function registered with nea_server_route
 * or passed to nea_req_run):
 *   1. Allocate request memory only through the request's arena
 *      (nea_alloc and friends; a C library through the adapters of "Using
 *      C libraries inside handlers" below). It is freed, all at once, when
 *      the request ends. Never free() it.
 *   2. Register every external resource the request holds (fd, lock, heap
 *      block from a third-party library) with nea_req_defer, so it is
 *      released on every path out of the request, including out-of-memory
 *      unwinding and client disconnect.
 *   3. libuv handles that belong to the request live in its arena and are
 *      registered with nea_req_track (or created by nea_req_timer). libnea
 *      closes them when the request ends; do not uv_close them yourself.
 *   4. Re-enter handler code from a libuv callback only through
 *      nea_req_run, so an out-of-memory unwind has a frame to land in. To
 *      come back later from a callback libnea does not run, keep a
 *      reference (nea_req_ref), never the nea_req pointer, and ask for the
 *      request with nea_ref_req when you come back (NULL: it is gone);
 *      work on libuv's thread pool goes through nea_req_work. See "Coming
 *      back later" below.
 *   5. Never longjmp out of a handler, never call uv_run, never block.
 *   6. Respond exactly once (nea_respond, nea_respond_static, a streamed
 *      response from nea_stream_start, or nea_respond_file). A handler
 *      that returns without responding must have something pending: a
 *      tracked handle, a hold or a job (nea_req_hold, nea_req_work), or
 *      nea_req_keep; otherwise the request gets a 500.
 *      No response within response_timeout_ms (the route's own, if it
 *      has one: nea_server_route_timeout): 504. After the response is
 *      written, or the request is cancelled, the nea_req pointer and all
 *      arena memory are invalid.
 *
 * One meaning for 503: libnea answers 503 only before a handler started
 * (no slot, no arena in time, queue full, CPU or fair-share shedding, a
 * readiness check while draining), so a load balancer may retry it
 * anywhere, whatever the method. Once a handler ran, failures are 500 (out
 * of memory, no response) or 504 (response_timeout_ms): not retryable, the
 * handler's side effects may have happened.
 */
#ifndef NEA_H
#define NEA_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define NEA_WARN_UNUSED __attribute__((warn_unused_result))
#define NEA_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define NEA_WARN_UNUSED
#define NEA_PRINTF(f, a)
#endif

#define NEA_VERSION_MAJOR 0
#define NEA_VERSION_MINOR 1
#define NEA_VERSION_PATCH 0
/* The version as one number, 0xMMmmpp, for comparisons at compile time. */
#define NEA_VERSION_HEX ((NEA_VERSION_MAJOR << 16) | (NEA_VERSION_MINOR << 8) | NEA_VERSION_PATCH)

/* The version of the libnea a program runs with (which, with a shared
 * library, may differ from the NEA_VERSION_* it was compiled against):
 * nea_version() as NEA_VERSION_HEX encodes it, nea_version_string() as
 * "MAJOR.MINOR.PATCH" (a static string). */
unsigned nea_version(void);
const char *nea_version_string(void);

/* =========================================================================
 * Configuration and the memory plan
 * =========================================================================
 *
 * What a server is made from. Fill a nea_config with nea_config_init, change
 * what you need, and nea_config_plan says, before anything is mapped, the
 * exact reservation the configuration costs (every term in bytes, nea_plan)
 * or which field it refuses and why. The types the config's fields use come
 * first. Every field with its default: docs/memory.md, "Configuration
 * reference"; the arithmetic worked through: docs/memory.md.
 */

/* Scrub policy applied to the used part of an arena when it is released. */
enum {
    NEA_SCRUB_NONE = 0,   /* fastest; the next request may see old bytes */
    NEA_SCRUB_ZERO = 1,   /* memset 0 */
    NEA_SCRUB_POISON = 2, /* memset 0xDB, makes use-after-release visible */
};

/* Log levels passed to nea_config.log. */
enum { NEA_LOG_ERROR = 0, NEA_LOG_WARN = 1, NEA_LOG_INFO = 2 };

struct nea_completion; /* below: what the completion hook is told */

/*
 * A body the host chooses for one of libnea's own error answers
 * (nea_config.error_bodies), e.g. {"error":"not found"} for a JSON API.
 * nea_server_new copies the content type and the body into the
 * reservation (the plan counts them: nea_plan.error_bodies_bytes), so the
 * answer stays pre-built: no arena, no allocation, the same 503-before-
 * handler rule, the same Retry-After on 503, the same Connection handling
 * (a 404 keeps the connection, a 400 or 413 closes it), no body for HEAD.
 *
 * status: one libnea answers itself: 400, 404, 405, 408, 413, 414, 431,
 * 500 (both the out-of-memory 500 and the unanswered one), 501, 503, 504,
 * 505; each at most once in the list. content_type: non-empty, at most
 * NEA_ERROR_TYPE_MAX bytes, no control characters (CR, LF, NUL...). body:
 * len bytes (NULL allowed when len is 0), at most NEA_ERROR_BODY_MAX.
 * Anything else makes nea_config_plan and nea_server_new refuse the config
 * with NEA_EINVAL_CONFIG, naming the entry. Responses from handlers
 * (nea_respond with status 404, ...) are the handler's own and unaffected.
 */
typedef struct nea_error_body {
    int status;
    const char *content_type;
    const void *body;
    size_t len;
} nea_error_body;

#define NEA_ERROR_TYPE_MAX 127
#define NEA_ERROR_BODY_MAX 65536

/* Arena size classes: the default class 0 (arena_size x arena_count) and
 * up to NEA_ARENA_CLASSES - 1 more, so a route that needs 1 MiB does not
 * force 1 MiB arenas on routes that need 4 KiB. */
#define NEA_ARENA_CLASSES 8

typedef struct nea_arena_class {
    size_t size;    /* usable bytes per arena of the class */
    unsigned count; /* arenas of the class (>= 1) */
} nea_arena_class;

/*
 * TLS (see docs/tls.md). A certificate chain and its private key, in PEM:
 * from files, or from memory. Used by nea_config.tls and
 * nea_server_tls_reload; copied when used, so nothing here need outlive
 * the call.
 *
 * The certificate file holds the server's certificate first, then the
 * intermediates that lead to the client's trust anchor. The key is RSA
 * (2048 to 4096 bits) or EC (P-256, P-384, P-521), unencrypted, in any of
 * the usual PEM forms ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"),
 * and must belong to the first certificate. For each of the two, a file
 * name wins over memory.
 */
typedef struct nea_tls_cert {
    const char *cert_file; /* PEM file: certificate chain, server's certificate first */
    const char *key_file;  /* PEM file: the private key */
    const void *cert_pem;  /* or the same PEM text in memory, cert_pem_len bytes */
    size_t cert_pem_len;
    const void *key_pem; /* or the key's PEM text in memory, key_pem_len bytes */
    size_t key_pem_len;
} nea_tls_cert;

/*
 * Listening sockets a process was handed by the one that started it:
 * systemd's socket activation, or the predecessor of an upgrade
 * (nea_server_upgrade). nea_listen_fds_from_env fills one; point
 * nea_config.inherit at it and nea_server_listen serves on these sockets
 * instead of binding: the connections already waiting in their queues,
 * and every later one, are served. From nea_server_listen on, libnea owns
 * the descriptors (it closes them with the server, or at once on an
 * error).
 */
#define NEA_LISTEN_FDS_MAX 64

typedef struct nea_listen_fds {
    /* Listening stream sockets (TCP or Unix domain) for HTTP: worker i
     * serves on http[i]. Workers beyond http_count join the first one's
     * SO_REUSEPORT group when it has SO_REUSEPORT set (TCP), else share it.
     * More sockets than workers is an error (UV_EINVAL from
     * nea_server_listen): an upgrade may keep or raise the number of
     * workers, not lower it. */
    int http[NEA_LISTEN_FDS_MAX];
    unsigned http_count;
    int agent; /* the agent's listening socket (used when agent_port >= 0), or -1 */
    int ready; /* once nea_server_listen succeeded, libnea writes one byte here and closes
                  it (a predecessor waits for it before it stops accepting); closed
                  without a byte when listening failed. -1 = none */
} nea_listen_fds;

/*
 * Server configuration. Fill with nea_config_init, change what you need,
 * pass to nea_server_new, which copies it (the struct and the strings it
 * points to need not outlive the call). Units are in the names or comments.
 */
typedef struct nea_config {
    const char *host; /* listen address, IPv4 or IPv6 literal. Default "127.0.0.1" */
    int port;         /* 0 picks a free port (see nea_server_port). Default 8080 */
    int backlog;      /* listen(2) backlog. Default 511 */
    /* Listen on this Unix domain socket path instead of host:port (at most
     * 107 bytes; "@name" is Linux's abstract namespace, no file). A socket
     * file left by a process that is gone is replaced; a path a live
     * process serves is UV_EADDRINUSE from nea_server_listen, one too long
     * UV_ENAMETOOLONG from nea_server_new. The file is removed when the
     * server closes, unless it was handed to a successor
     * (nea_server_upgrade). Workers share the one socket (Unix domain
     * sockets have no SO_REUSEPORT groups). Peers have no IP address:
     * fair_share_pct does not apply, nea_req_peer returns UV_ENOTCONN.
     * NULL = TCP. Default NULL */
    const char *unix_path;
    /* Sockets handed over by the parent process (see nea_listen_fds),
     * served instead of host:port or unix_path. Copied by nea_server_new.
     * NULL = bind. Default NULL */
    const nea_listen_fds *inherit;

    size_t memory_limit;      /* bytes; the reservation may not exceed it. Default 64 MiB */
    size_t arena_size;        /* bytes per in-flight request. Default 64 KiB */
    unsigned arena_count;     /* in-flight requests; 0 = as many as memory_limit allows.
                                 Default 0 */
    unsigned max_connections; /* connection slots: what an idle connection costs is one
                                 slot (conn_slot_size in the plan, <= 512 bytes; with
                                 TLS 4,224 more for its TLS state).
                                 Default 16384 */
    unsigned conn_buffers;    /* connection buffers: a connection holds one (its read
                                 buffer, output buffer and exchange state) only while
                                 it has work; with none free, a connection that has
                                 something to say waits for one in line, at most
                                 header_timeout_ms (then 503). Every request in
                                 flight holds one. At most max_connections;
                                 0 = max_connections, at most 1024. Default 0 */
    size_t read_buffer_size;  /* bytes per connection; also the max request head.
                                 Default 8 KiB */
    size_t max_body_size;     /* bytes of a buffered request body; 0 = as large as the
                                 arena allows. A value no arena could ever hold is
                                 refused. Default 0 */
    /* Arena classes beyond the default one: class i (1 .. arena_class_count)
     * is arena_classes[i - 1]. A route names its class when registered
     * (nea_server_route_class, nea_route.arena_class); the others use
     * class 0. Each class has its own arenas and its own wait queue: a
     * request waits only for an arena of its route's class, and runs out of
     * memory (500) at its class's size. arena_count = 0 gives class 0 what
     * memory_limit leaves after every other class. Default: no more classes. */
    nea_arena_class arena_classes[NEA_ARENA_CLASSES - 1];
    unsigned arena_class_count;
    unsigned max_routes;   /* route table capacity. Default 64 */
    unsigned queue_length; /* requests that may wait for an arena; 0 = max_connections.
                              Default 0 */

    unsigned header_timeout_ms;    /* first byte of a head to its end. Default 10000 */
    unsigned body_timeout_ms;      /* idle time between body reads. Default 10000 */
    unsigned body_deadline_ms;     /* head end to body end, however steady the drip.
                                      Default 60000 */
    unsigned body_min_rate;        /* bytes/s a body must average once body_rate_grace_ms
                                      have passed (else 408), so a dripping upload
                                      cannot hold an arena; 0 = no minimum. Default 240 */
    unsigned body_rate_grace_ms;   /* see body_min_rate. Default 5000 */
    unsigned response_timeout_ms;  /* handler start to response: after it the request
                                      gets a 504, its defers run and its handles close.
                                      A route may have its own (nea_server_route_timeout).
                                      Default 30000 */
    unsigned keepalive_timeout_ms; /* idle time between requests. Default 5000 */
    unsigned write_timeout_ms;     /* a response that cannot be sent at once must be
                                      written within this long. Default 10000 */
    unsigned queue_timeout_ms;     /* wait for a free arena before 503; 0 = no wait, 503
                                      at once. Default 100 */
    unsigned drain_timeout_ms;     /* once accepting stops, nea_server_close waits this
                                      long for in-flight requests. Default 5000 */
    unsigned drain_delay_ms;       /* nea_server_close first announces the drain (the
                                      agent answers "drain", NEA_ROUTE_READY routes 503)
                                      and goes on accepting and serving this long, every
                                      response with Connection: close, so that a load
                                      balancer stops sending before any connection is
                                      refused. Set it above the balancer's check interval.
                                      0 = stop accepting at once. Default 0 */
    unsigned retry_after_s;        /* Retry-After value on 503 (0..86400). Default 1 */
    /* The host's bodies for libnea's error answers (see nea_error_body):
     * error_body_count entries, copied by nea_server_new. Statuses not
     * listed keep libnea's text/plain body. Default: none (NULL, 0). */
    const nea_error_body *error_bodies;
    unsigned error_body_count;

    /* WebSocket connections (nea_server_route_ws): one from which nothing
     * arrived for ws_ping_interval_ms is sent a ping; when nothing arrives
     * within ws_pong_timeout_ms after it, the connection is closed (its
     * close callback is told 1006). Both must be > 0. See docs/websocket.md
     * for the other limits a WebSocket connection meets. */
    unsigned ws_ping_interval_ms; /* Default 30000 */
    unsigned ws_pong_timeout_ms;  /* Default 10000 */

    /* Refusal when the CPU is the limit (docs/admission.md, "CPU"), always
     * on, decided per request. Handlers run for at most overload_budget_us
     * per loop iteration (the first one of an iteration always runs); a
     * request ready after that waits in the queue for the next iteration
     * (exempt routes never wait for it). A request whose wait for the loop
     * is predicted (the queued requests ahead of it, at the handlers'
     * recent average time) to exceed overload_target_ms is answered 503 at
     * once, its connection kept; once such refusals have kept coming for
     * overload_interval_ms, the wait allowed is two budgets. While
     * shedding, a queued request that has waited overload_interval_ms when
     * the loop could run it is answered 503 instead. nea_stats.shedding is 1
     * from a refusal until overload_hold_ms pass without one. */
    unsigned overload_target_ms;   /* 0 = never refuse for CPU (the budget still holds).
                                      Default 5 */
    unsigned overload_interval_ms; /* Default 25 */
    unsigned overload_budget_us;   /* handler time per loop iteration. Default 1000 */
    unsigned overload_hold_ms;     /* Default 1000 */
    unsigned reserved_arenas;      /* arenas only NEA_ROUTE_EXEMPT routes may take, so
                                      health and metrics answer when all others are
                                      busy. Default 0 */
    unsigned fair_share_pct;       /* under contention one client address may hold at
                                      most this percent of the arenas while another
                                      address waits for one, and of the slots at most
                                      an even split between the addresses contending
                                      for them, capped at this percent (at least one);
                                      a newcomer over it gets 503 while an address under
                                      it waits (docs/admission.md, "Connection slots").
                                      An address alone is never limited. 0 = no
                                      refusals for fairness. Default 50 */

    /* Load-balancer agent (HAProxy's agent-check): a TCP port on which every
     * connection is answered one line and closed: "drain\n" once
     * nea_server_close was called; otherwise "up ready\n" and, when
     * agent_weight is set, "N%": the share of arenas and connection slots
     * free, averaged over about a second (at most 10 while shedding for
     * CPU). Costs no arena and no allocation; started by
     * nea_server_listen. */
    int agent_port;         /* -1 = no agent; 0 = any free port (see
                               nea_server_agent_port). Default -1 */
    const char *agent_host; /* IP literal; NULL = host. Default NULL */
    /* The weight the balancer gives this server (HAProxy's "weight", 1 when
     * its configuration says nothing). HAProxy sets a server's weight to
     * weight * N / 100 rounded down, so N% means something only for a
     * known weight: with 1, anything below 100% is 0, no traffic. 0 (the
     * weight is not known): the agent answers no percentage and the
     * configured weight stands. W > 0: N is never below ceil(100 / W),
     * which keeps a weight of at least 1 (e.g. weight 100: 1% .. 100%).
     * Percentages start at the capacity free when listening; ramping a
     * restarted server up is the balancer's job (HAProxy: slowstart).
     * Default 0 */
    unsigned agent_weight;
    /* Share-nothing worker threads (see docs/memory.md, "Workers"). Each worker is a
     * thread with its own uv_loop_t, its own listening socket on host:port
     * (SO_REUSEPORT; a Unix socket, or an inherited socket without
     * SO_REUSEPORT, is shared instead: docs/listeners.md) and its own slab
     * of the one reservation holding
     * max_connections slots, arena_count arenas and a queue of queue_length:
     * those fields, and reserved_arenas, are per worker, while memory_limit
     * caps the sum (with arena_count 0, each worker gets as many arenas as
     * fit in memory_limit / workers). 0 = one per online CPU; 1 = no extra
     * thread, the server runs on the host's loop only. Worker 0 always runs
     * on the loop given to nea_server_new; the others start in
     * nea_server_listen. Handlers then run on several threads at once: the
     * data pointers given to nea_server_route are shared by every worker.
     * At most 1024. Default 1 */
    unsigned workers;
    /* Listen with SO_REUSEPORT even when workers is 1, so a host that runs
     * its own loops on its own threads can put one server on each, all
     * sharing one address (the kernel spreads connections across them).
     * Implied by workers > 1. A server whose workers deal connections
     * round-robin does so only while the address's reuseport group holds
     * its own sockets alone; with another server or process in the group
     * the kernel spreads connections over all of them (docs/listeners.md).
     * Default 0 */
    int reuse_port;

    /* TLS (see docs/tls.md): with a certificate and key, every connection
     * speaks TLS 1.2 (ECDHE with AES-GCM or ChaCha20-Poly1305, ALPN
     * "http/1.1", renegotiation refused). The per-connection TLS state and
     * record buffers are part of the plan. An unusable certificate or key
     * fails nea_server_new with NEA_ETLS_CERT; a build without TLS, with
     * NEA_ENOTLS. Default: nothing set, plain HTTP. */
    nea_tls_cert tls;
    unsigned tls_sessions;     /* sessions remembered for resumption (an abbreviated
                                  handshake, no public-key work), shared by every worker,
                                  100 bytes each; 0 = 1024 */
    unsigned tls_handshake_ms; /* accept to handshake done, however the bytes arrive;
                                  0 = header_timeout_ms */

    int prefault;    /* make the whole reservation resident at start. Default 0 */
    int lock_memory; /* mlock the reservation. Default 0 */
    int guard_pages; /* PROT_NONE page after every arena. Default 1 */
    int scrub;       /* NEA_SCRUB_*. Default NEA_SCRUB_NONE */

    /* Log sink. NULL: messages go to stderr. msg is valid only during the
     * call. Called from the loop thread; must not call back into libnea.
     * With workers > 1 it is called from every worker's thread, possibly
     * at the same time: it must be thread-safe (stderr is). */
    void (*log)(void *data, int level, const char *msg);
    void *log_data;

    /* Completion hook (access logs, custom metrics). NULL: none. Called
     * once per request whose head was complete, when it ends: after its
     * response was written, or when it was cancelled, timed out or shed.
     * Called on the loop thread, after libnea counted the request; c and
     * everything it points to are valid only during the call. It must not
     * allocate from the request nor call back into libnea, except the
     * read-only nea_server_stats / nea_server_route_stats. */
    void (*on_complete)(void *data, const struct nea_completion *c);
    void *on_complete_data;
} nea_config;

/*
 * The reservation, term by term, in bytes. Every byte of the one mapping is
 * accounted for. The terms below are one worker's; the mapping holds one
 * such slab per worker:
 *
 *   total        = workers * worker_bytes + tls_cache_bytes
 *   worker_bytes = fixed_overhead + connections_bytes + buffers_bytes + arenas_bytes
 *   connections_bytes = max_connections * conn_slot_size   (page-rounded)
 *   conn_slot_size    = what a waiting connection keeps: its socket handle, its
 *                       deadline's links, its list links, its peer (<= 512)
 *                       + tls_conn_size
 *   buffers_bytes     = conn_buffers * conn_buffer_size    (page-rounded)
 *   conn_buffer_size  = exchange state (parser, write requests, ...)
 *                       + read_buffer_size + output buffer (2 KiB)
 *                       + tls_records_size
 *   arenas_bytes      = the sum over the classes of count * stride
 *   stride            = size rounded up to a page + guard page (if enabled)
 *
 * A connection holds a buffer only while it has work (a request under way,
 * an answer being written): an idle keep-alive connection costs
 * conn_slot_size, nothing more.
 *
 * TLS (a certificate in nea_config.tls) adds three terms, 0 otherwise: the
 * TLS state every connection keeps for its whole life (tls_conn_size, in
 * each slot), the TLS record buffers a connection needs only while it has
 * work (tls_records_size, in each connection buffer, so they are drawn
 * from the same pool and an idle TLS connection holds none), and the
 * session cache, once for the whole server (tls_cache_bytes, shared by
 * every worker).
 *
 * classes[] lists every arena class, class 0 (arena_size x arena_count, the
 * default) first; counts are per worker.
 */
typedef struct nea_plan_class {
    size_t size;          /* usable bytes per arena (class 0: arena_size) */
    size_t stride;        /* size page-rounded, plus the guard page */
    unsigned count;       /* arenas (class 0: arena_count resolved, never 0) */
    size_t bytes;         /* count * stride */
    size_t max_body_size; /* the buffered-body limit in force for its routes: the config's
                             max_body_size, or when that is 0 the most the arena holds */
} nea_plan_class;

typedef struct nea_plan {
    size_t page_size;
    size_t fixed_overhead;     /* server struct, route table, per-route metrics, arena and
                                  queue tables */
    size_t metrics_bytes;      /* of fixed_overhead: (max_routes + 1) per-route metrics
                                  records (see nea_route_stats) */
    size_t error_bodies_bytes; /* of fixed_overhead: the copies of nea_config.error_bodies'
                                  bodies, their lengths summed, rounded up to 64 */
    size_t conn_slot_size;     /* one connection slot: all an idle connection costs */
    unsigned connections;      /* connection slots (max_connections), per worker */
    size_t connections_bytes;  /* those slots, page-rounded */
    unsigned conn_buffers;     /* connection buffers (conn_buffers resolved, never 0) */
    size_t conn_buffer_size;   /* one: exchange state, read buffer, output buffer */
    size_t buffers_bytes;      /* conn_buffers of them */
    size_t arenas_bytes;       /* the sum of classes[].bytes */
    size_t request_overhead;   /* bytes of each arena libnea uses before the handler runs,
                                  not counting the request head and body */
    size_t tls_conn_size;      /* of conn_slot_size: a connection's TLS state (0: no TLS) */
    size_t tls_records_size;   /* of conn_buffer_size: TLS record buffers (0: no TLS) */
    unsigned tls_sessions;     /* TLS sessions kept for resumption (0: no TLS) */
    size_t tls_cache_bytes;    /* the TLS server object and its session cache, once per
                                  server, page-rounded (0: no TLS) */
    unsigned class_count;      /* 1 + arena_class_count */
    unsigned arena_total;      /* arenas of every class */
    nea_plan_class classes[NEA_ARENA_CLASSES];
    unsigned workers;    /* resolved (never 0) */
    size_t worker_bytes; /* one worker's slab: fixed + connections + buffers + arenas */
    size_t total;        /* the whole reservation: workers * worker_bytes + tls_cache_bytes */
} nea_plan;

/* Fills cfg with the documented defaults (always a valid configuration). */
void nea_config_init(nea_config *cfg);

/*
 * Computes the exact reservation for cfg. Returns 0, or NEA_EINVAL_CONFIG,
 * NEA_EOVERFLOW, NEA_EOVERLIMIT, NEA_EARENA_SMALL. On error, if errbuf is not
 * NULL, a one-line explanation naming the field is written to it.
 */
int nea_config_plan(const nea_config *cfg, nea_plan *plan, char *errbuf, size_t errlen);

/* Writes a one-line human summary of plan into buf (e.g. for startup logs),
 * truncated to len bytes including the NUL. */
void nea_plan_format(const nea_plan *plan, char *buf, size_t len);

/* =========================================================================
 * The server
 * =========================================================================
 *
 * One server per loop. nea_server_new makes the one mapping and carves
 * everything from it; nea_server_listen starts accepting (on host:port, a
 * Unix domain socket, or listening sockets handed over by systemd or by a
 * predecessor); nea_server_close drains and unmaps; nea_server_upgrade hands
 * the listening sockets to a new binary without refusing a connection
 * (docs/listeners.md). nea_run, which does all of this on a loop of its own,
 * takes a route table, so it is declared with the routes below.
 */

typedef struct nea_server nea_server; /* opaque; lives inside its reservation */
typedef struct nea_req nea_req;       /* opaque; lives inside its arena */

/*
 * Creates a server on the host's loop: validates cfg, makes the one mapping
 * and carves everything from it. Nothing is listening yet. If SIGPIPE is at
 * its default disposition (terminate the process), it is set to ignored and
 * that is logged: a client closing mid-response must not end the process. A
 * disposition the host chose is left alone (a handler must then not exit). Returns 0 and
 * *out, or a NEA_E* config error, NEA_EMLOCK, or a UV_E* error from mmap.
 * The failure reason is also logged through cfg->log.
 */
int nea_server_new(uv_loop_t *loop, const nea_config *cfg, nea_server **out);

/* Binds and listens on cfg->host:cfg->port, and on the agent port when
 * cfg->agent_port >= 0. Returns 0, NEA_ESTATE (already listening, or
 * closing), or a UV_E* error from bind/listen (logged; nothing listens then,
 * close the server). With workers > 1 every worker binds its own socket to
 * that address (the port worker 0 got, when cfg->port is 0), then the other
 * workers' threads start; from then on nea_server_route returns NEA_ESTATE. */
int nea_server_listen(nea_server *s);

/* The bound port (useful after port 0), or -1 when not listening or not on
 * TCP (a Unix domain socket). */
int nea_server_port(const nea_server *s);

/* The bound agent port, or -1 when there is no agent or it is not listening. */
int nea_server_agent_port(const nea_server *s);

/* The loop the server runs on (the host's, or nea_run's own). */
uv_loop_t *nea_server_loop(const nea_server *s);

/* The plan the server was created with. */
const nea_plan *nea_server_plan(const nea_server *s);

/*
 * Graceful drain. First the announcement: the agent answers "drain",
 * NEA_ROUTE_READY routes answer 503, and every response carries
 * Connection: close (a keep-alive client's next request is still served);
 * new connections are still accepted for drain_delay_ms. Then it stops
 * accepting, closes idle connections and those caught mid-head, lets
 * in-flight and queued requests finish for up to drain_timeout_ms (then
 * cancels them), closes every handle, unmaps the reservation and calls
 * cb(s, data) from the loop, exactly once. After cb, s is invalid. The loop
 * may then be closed with uv_loop_close.
 *
 * May be called from inside a handler: the handler's own request is in
 * flight and finishes normally (its response carries Connection: close).
 * May be called from any thread: from a thread other than the one that
 * created the server (a handler on another worker, a host thread) the
 * close is handed to the server's loop and begins there in its next
 * iteration. With workers > 1 every worker drains on its own thread under
 * the same rules and its own drain_timeout_ms, the threads end, and only
 * then is the reservation unmapped and cb called, on the loop given to
 * nea_server_new. Jobs of nea_req_work still running are waited for.
 * Returns 0, or NEA_ESTATE when the server is already closing (cb is then
 * never called; the first call's callback still runs).
 */
int nea_server_close(nea_server *s, void (*cb)(nea_server *s, void *data), void *data);

/*
 * A zero-downtime upgrade, the way nginx's binary upgrade does it: starts
 * argv[0] (a path; no PATH search) with argv, this process's environment,
 * and the server's listening sockets (one per worker, then the agent's)
 * handed over as systemd's socket activation hands them (descriptors 3 on,
 * LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES), plus NEA_READY_FD. The new
 * program takes them with nea_listen_fds_from_env (nea_config.inherit) and, once
 * its nea_server_listen succeeded, says so on NEA_READY_FD. Until then
 * both processes accept on the same sockets, so nothing is refused while
 * the successor starts. Then cb(s, 0, data) runs on s's loop, and the
 * host closes this server (nea_server_close): with a successor serving,
 * the close skips the drain's announcement (drain_delay_ms; the agent's
 * listening socket is now the successor's and stays quiet here), stops
 * accepting at once, answers the next request on each idle keep-alive
 * connection with Connection: close instead of closing it under the
 * client, and leaves a Unix socket's file in place. If the successor ends
 * or closes NEA_READY_FD without listening, cb(s, NEA_ESUCCESSOR, data)
 * runs and this server goes on as before (the failure is logged).
 * Call it on the thread of the loop given to nea_server_new, while
 * listening. Returns 0 (cb will run exactly once, unless the server is
 * closed first), NEA_ESTATE (not listening, closing, or an upgrade already
 * under way), UV_EINVAL (argv empty), or a UV_E* error from pipe or fork
 * (cb is then never called). Starting the successor allocates and forks:
 * do it from a signal handler of the loop (SIGUSR2 is customary), not per
 * request.
 */
int nea_server_upgrade(nea_server *s, char *const argv[],
                       void (*cb)(nea_server *s, int status, void *data), void *data);

/*
 * Fills *out from the environment: LISTEN_PID and LISTEN_FDS (systemd's
 * protocol: LISTEN_FDS sockets from descriptor 3 on, for the process whose
 * pid is LISTEN_PID) with LISTEN_FDNAMES, where a socket named "nea-agent"
 * is the agent's and every other one is for HTTP; and NEA_READY_FD (set by
 * nea_server_upgrade). The variables are removed from the environment (so
 * child processes do not take them for theirs) and the descriptors marked
 * close-on-exec. Returns the number of HTTP sockets (0: nothing was handed
 * over, *out is empty: http_count 0, agent and ready -1), or UV_EINVAL
 * when the variables are malformed or name more than NEA_LISTEN_FDS_MAX
 * sockets (*out is then empty too).
 */
int nea_listen_fds_from_env(nea_listen_fds *out);

/* =========================================================================
 * Routes
 * =========================================================================
 *
 * What the server answers. A route maps a method and a path (exact, or a
 * prefix ending in '/') to a handler; flags make it exempt from refusal, a
 * readiness check libnea answers itself, or a reader of its body in pieces;
 * it may name an arena class and a response timeout of its own. A WebSocket
 * route answers the opening handshake and then calls its handler once per
 * message. nea_route and nea_run register a whole table at once. With
 * workers > 1, routes are registered before nea_server_listen.
 */

/* A request handler. data is the pointer given to nea_server_route. */
typedef void (*nea_handler_fn)(nea_req *req, void *data);

/*
 * Registers a handler. method: "GET", "POST", ... (exact, case-sensitive).
 * path: exact match, or, when it ends in '/', a prefix route matching every
 * path that starts with it (the longest matching prefix wins; exact routes
 * win over prefixes). A GET route also answers HEAD (without a body).
 * method and path are referenced, not copied: they must stay valid until the
 * server is closed (string literals are the usual case).
 *
 * A route that could never be reached is refused, and the reason logged:
 * returns 0, or UV_EINVAL (NULL method, path or handler), NEA_EROUTES
 * (max_routes reached), NEA_EROUTE_DUP (same method and path again),
 * NEA_EROUTE_METHOD (not an uppercase method name, e.g. "get", or a method
 * libnea answers 501 before routing), NEA_EROUTE_PATH (no leading '/', or a
 * path too long for a request head of read_buffer_size), NEA_ESTATE (with
 * workers > 1, after nea_server_listen: every worker has its own copy of the
 * routes by then, and they are read-only).
 */
int nea_server_route(nea_server *s, const char *method, const char *path, nea_handler_fn fn,
                     void *data);

/* Route flags for nea_server_route_flags. */
enum {
    /* Health, readiness and metrics routes: never shed for CPU or fairness,
     * and may take the reserved_arenas no other route can, so they answer
     * while the server refuses everything else. Keep their handlers small. */
    NEA_ROUTE_EXEMPT = 1u << 0,
    /* A readiness check for balancers that speak only HTTP: answered by
     * libnea itself before any arena is taken (no handler: pass fn NULL),
     * never shed for CPU or fairness: 200 "ready" while the server serves,
     * the 503 with Retry-After once nea_server_close was called (counted in
     * shed_draining). Register it for GET (HEAD then works too). */
    NEA_ROUTE_READY = 1u << 1,
    /* The handler runs as soon as the head is complete and receives the
     * body in pieces (nea_body_read) instead of buffered in the arena, so a
     * body may be larger than the arena. Set by nea_server_route_stream;
     * with nea_server_route_flags the body has no size limit. */
    NEA_ROUTE_STREAM_BODY = 1u << 2,
};

/* nea_server_route with flags (NEA_ROUTE_*); the same errors, and UV_EINVAL
 * for an unknown flag, or for a handler given with NEA_ROUTE_READY (fn must
 * be NULL then, and only then). */
int nea_server_route_flags(nea_server *s, const char *method, const char *path, nea_handler_fn fn,
                           void *data, unsigned flags);

/* nea_server_route_flags for a route whose requests take arenas of class
 * arena_class (0: the default; see nea_config.arena_classes). The same
 * errors, and UV_EINVAL for a class the config does not declare. */
int nea_server_route_class(nea_server *s, const char *method, const char *path, nea_handler_fn fn,
                           void *data, unsigned flags, unsigned arena_class);

/*
 * Registers a route whose handler receives the request body in pieces
 * (NEA_ROUTE_STREAM_BODY is added to flags). max_body is the route's own
 * body limit in bytes (0 = none): a Content-Length above it is answered 413
 * before the handler runs; a chunked body that grows past it is answered 413
 * when it does (the piece callback is then not called again and the
 * request's defers run). cfg.max_body_size does not apply to such a route:
 * it is the limit of a body buffered in the arena. The same errors as
 * nea_server_route_flags.
 */
int nea_server_route_stream(nea_server *s, const char *method, const char *path, nea_handler_fn fn,
                            void *data, unsigned flags, uint64_t max_body);

/*
 * Gives the route registered with exactly this method and path its own
 * response timeout, in place of nea_config.response_timeout_ms for its
 * requests: from the handler's start to its response (then 504), and, for
 * a streamed response, from one piece written to the next piece (then the
 * connection closes). So one server can keep a tight default and still
 * hold long polls and server-sent events (docs/applications.md).
 * response_timeout_ms 0 gives the route the config's again. Takes effect
 * from the next deadline armed: for requests whose handler starts
 * afterwards, and the next gap of streams under way. Returns 0, UV_EINVAL
 * (method or path NULL), UV_ENOENT (no route registered with that method
 * and path; a route's path, not a request's), NEA_ESTATE (with workers > 1,
 * after nea_server_listen: the routes are read-only then).
 */
int nea_server_route_timeout(nea_server *s, const char *method, const char *path,
                             unsigned response_timeout_ms);

/* --- WebSocket routes (RFC 6455) -----------------------------------------
 *
 * A WebSocket route (nea_server_route_ws) answers a valid opening
 * handshake (a GET with Upgrade: websocket) with 101 and then carries
 * messages on the same connection, in its slot. The route's message
 * handler is called once per message, with a request of its own for that
 * message (msg): the payload is in msg's arena, and nea_alloc, defers,
 * nea_req_protect, nea_req_run, references and the C library adapters work
 * on msg as in any handler (it gets no HTTP response: nea_respond and
 * friends return NEA_ESTATE). The arena goes back when the handler returns
 * (and the frames it sent from it are written), or, after nea_req_keep
 * (or with a hold, a job or a tracked handle pending), when nea_ws_done is
 * called. A connection handles one message at a time: the next is not
 * read before the last one ended. An out-of-memory unwind in the handler
 * fails that message only (its defers run, it counts as an out-of-memory
 * outcome, the connection carries on).
 *
 * libnea answers pings, runs the close handshake and enforces the
 * protocol: a client frame that is not masked, reserved bits or opcodes,
 * bad fragmentation or control frames get close 1002, text that is not
 * UTF-8 (checked across fragments as it arrives) 1007, a message over the
 * route's limit 1009 (refused at its frame head, before its payload is
 * read). Between messages a connection holds its slot and nothing else:
 * no connection buffer, no arena.
 *
 * Everything here runs on the connection's loop thread (it aborts naming
 * the rule otherwise), and, like references to requests, a nea_ws must not
 * be kept across callbacks libnea does not run: keep a nea_wsref. See
 * docs/websocket.md.
 */

/* One WebSocket connection; lives in its connection slot. */
typedef struct nea_ws nea_ws;

/* Opcodes of data messages. */
enum { NEA_WS_TEXT = 1, NEA_WS_BINARY = 2 };

/* Flags of a WebSocket route (nea_ws_route.flags). */
enum {
    /* Every message is handed to the handler in pieces as its bytes
     * arrive, so a message may be larger than the arena: up to
     * max_message bytes (0: no limit). The message's arena lives from its
     * first piece to the end of its last. */
    NEA_WS_PIECES = 1u << 0,
};

/* A message (with NEA_WS_PIECES, one piece of it) as its handler gets it. */
typedef struct nea_ws_msg {
    int opcode; /* NEA_WS_TEXT (valid UTF-8) or NEA_WS_BINARY */
    /* The whole message, in msg's arena, NUL-terminated (the NUL not
     * counted in len), valid until msg ends. With NEA_WS_PIECES: this
     * piece, in the connection's read buffer, valid until the handler
     * returns (a text piece may end inside a character; the message as a
     * whole is checked). */
    const char *data;
    size_t len;
    uint64_t offset; /* NEA_WS_PIECES: where this piece starts in its message; else 0 */
    int last;        /* 1: the whole message, or its last piece */
} nea_ws_msg;

typedef struct nea_ws_route {
    /* Optional. A valid handshake arrived (upgrade is its request, in its
     * own arena, inside a protected frame): check Origin or a token, pick
     * a subprotocol from Sec-WebSocket-Protocol and name it with
     * nea_resp_header(upgrade, "Sec-WebSocket-Protocol", name) (headers
     * added here go out with the 101). Return 0 to accept, or an HTTP
     * status (400..599; anything else gives 403) to refuse with an empty
     * body; or answer upgrade yourself with nea_respond (the return value
     * is then ignored). A refused handshake closes the connection. */
    int (*accept)(nea_req *upgrade, void *data);
    /* Optional. The 101 is written: the connection is open. upgrade's
     * method, path, query and headers can still be read (not allocated
     * from: it ends when open returns). Runs outside any protected frame;
     * may send, close, set the connection's data and take a reference. */
    void (*open)(nea_ws *ws, nea_req *upgrade, void *data);
    /* Required. One message, or one piece of one (NEA_WS_PIECES), in its
     * own request msg (see above). m and what it points to are valid as
     * said in nea_ws_msg. */
    void (*message)(nea_ws *ws, nea_req *msg, const nea_ws_msg *m, void *data);
    /* Optional. The connection ended; called exactly once for every
     * connection that was opened, from the loop, outside any protected
     * frame. code: the code of the peer's close frame (1005 when it had
     * none); when none came, the code of libnea's own close (1001 server
     * draining, 1002 or 1007 the peer broke the protocol, 1008 a message
     * too slow, 1009 too big, 1011 internal failure, 1013 no capacity for a
     * message, or nea_ws_close's); else 1006 (the connection dropped: a
     * reset, the peer's end without a close frame, no answer to a ping, a
     * write that could not be made). nea_ws_data still works during the
     * call; sending does not. ws is invalid afterwards. */
    void (*close)(nea_ws *ws, unsigned code, void *data);
    /* Payload bytes one message may have; more: close 1009, refused at its
     * frame head before any of its payload is read. 0: what a message
     * arena holds (its class's size less the request's bookkeeping and 1 KiB
     * left to the handler); a larger value needs NEA_WS_PIECES. */
    uint64_t max_message;
    unsigned arena_class; /* of the message arenas (see nea_server_route_class) */
    unsigned flags;       /* NEA_WS_* */
} nea_ws_route;

/*
 * Registers a WebSocket route at path (exact, or a prefix when it ends in
 * '/', as nea_server_route). route is referenced, not copied: it must stay
 * valid until the server is closed (a static const struct is the usual
 * case); data is passed to its callbacks. Returns 0, the errors of
 * nea_server_route_class, or UV_EINVAL (route NULL, no message handler, an
 * unknown flag, a max_message larger than a message arena holds without
 * NEA_WS_PIECES; the reason is logged).
 */
int nea_server_route_ws(nea_server *s, const char *path, const nea_ws_route *route, void *data);

typedef struct nea_route {
    const char *method;
    const char *path;
    nea_handler_fn fn;
    void *data;
    unsigned flags;       /* NEA_ROUTE_*; 0 when left out of an initializer */
    unsigned arena_class; /* see nea_server_route_class; 0 when left out */
    uint64_t max_body;    /* with NEA_ROUTE_STREAM_BODY: the route's body limit (0 = none) */
    unsigned response_timeout_ms; /* the route's own (see nea_server_route_timeout);
                                     0 = the config's. 0 when left out */
    /* Not NULL: a WebSocket route, registered with nea_server_route_ws(s,
     * path, ws, data); method must be "GET" and fn NULL, and flags,
     * arena_class and max_body are not read (ws says). */
    const struct nea_ws_route *ws;
} nea_route;

/* Registers route with every field it has: flags, arena_class, with
 * NEA_ROUTE_STREAM_BODY max_body, and response_timeout_ms (what nea_run
 * does for each route). The same errors as nea_server_route_class. */
int nea_server_add_route(nea_server *s, const nea_route *route);

/*
 * Owns a loop: creates a server from cfg, registers routes[0..n), listens,
 * prints nothing (ready_cb, if not NULL, is called once listening), runs
 * until SIGINT or SIGTERM, drains gracefully and returns 0, or an error.
 * It also returns once the host closed the server itself (nea_server_close
 * from a handler or a callback on the loop, e.g. after nea_server_upgrade).
 */
int nea_run(const nea_config *cfg, const nea_route *routes, size_t n,
            void (*ready_cb)(nea_server *s, void *data), void *data);

/* =========================================================================
 * The request
 * =========================================================================
 *
 * What a handler reads: method, path, query, headers, body and peer, the
 * path and query decoded, and the request's loop, server and host data. The
 * head stays in the connection's read buffer and the body is in the arena:
 * all of it is valid until the request ends.
 */

/* Request data. The head's strings (method, path, query, headers) are
 * read where they were received, in the connection's read buffer, and the
 * body is in the arena: all of it is valid while the request is live, that
 * is until its response is written or it is cancelled (a reference's
 * nea_ref_req says which). Copy what a hold's later callback needs into the
 * arena (nea_strdup) first. Strings are NUL-terminated. */
const char *nea_req_method(const nea_req *req);
const char *nea_req_path(const nea_req *req);  /* without the query; not decoded */
const char *nea_req_query(const nea_req *req); /* after '?', or "" */
/* The part of the path after a prefix route's prefix ("" for exact routes). */
const char *nea_req_path_tail(const nea_req *req);
/* First header with that name, case-insensitive; NULL when absent. */
const char *nea_req_header(const nea_req *req, const char *name);
/* Number of header fields, and the i-th one (0-based), for iteration:
 * nea_req_header_at sets *name and *value and returns 0, or returns
 * UV_EINVAL (leaving both unchanged) when i >= nea_req_header_count(req). */
size_t nea_req_header_count(const nea_req *req);
int nea_req_header_at(const nea_req *req, size_t i, const char **name, const char **value);
/* The body (NUL-terminated for convenience, not counted in *len). */
const char *nea_req_body(const nea_req *req, size_t *len);
/* The client's address, copied into *addr (sockaddr_in or sockaddr_in6).
 * Returns 0, or UV_ENOTCONN when it is unknown (e.g. a socket adopted for
 * tests, or the request was detached from its connection). */
int nea_req_peer(const nea_req *req, struct sockaddr_storage *addr);
/* HTTP minor version: 0 for HTTP/1.0, 1 for HTTP/1.1. */
int nea_req_http_minor(const nea_req *req);

/* --- Percent-decoding and query parameters ------------------------------
 *
 * nea_req_path and nea_req_query are the raw bytes the client sent. These
 * helpers decode them (RFC 3986 percent-encoding; with NEA_DECODE_PLUS,
 * '+' as a space, the form encoding of query strings). Decoding is strict:
 * a '%' not followed by two hex digits is an error (UV_EINVAL), not copied
 * through, and so is %00 unless NEA_DECODE_NUL is given. Nothing here uses
 * the heap. See docs/files.md for the routing rule: routes match the path
 * with every escape decoded except %2F, %25 and %00.
 */
/* '+' decodes to a space (query strings, forms). */
#define NEA_DECODE_PLUS 0x1u
/* %00 is accepted: the result may contain NUL bytes, so use its length,
 * not strlen. */
#define NEA_DECODE_NUL 0x2u

/*
 * Decodes len bytes of src into dst, which must have room for len + 1
 * bytes (decoding never lengthens); dst may be src (in place). The result
 * is NUL-terminated and its length (without the NUL) stored in *out_len
 * unless out_len is NULL. Needs no request. Returns 0, or UV_EINVAL (a
 * malformed escape, %00 without NEA_DECODE_NUL, an unknown flag, dst NULL);
 * dst's contents are then unspecified.
 */
int nea_url_decode_into(char *dst, const char *src, size_t len, unsigned flags, size_t *out_len);

/*
 * Decodes len bytes of src into a new NUL-terminated string in req's arena
 * (valid until the request ends), of exactly the decoded length plus the
 * NUL; *out_len (unless NULL) gets that length. On arena exhaustion it
 * unwinds like nea_alloc. Returns 0, or UV_EINVAL as nea_url_decode_into
 * (nothing was allocated then, *out is unchanged).
 */
int nea_url_decode(nea_req *req, const char *src, size_t len, unsigned flags, char **out,
                   size_t *out_len);

/* Like nea_url_decode, but returns NEA_ENOMEM on arena exhaustion instead
 * of unwinding (*out unchanged). */
NEA_WARN_UNUSED int nea_try_url_decode(nea_req *req, const char *src, size_t len, unsigned flags,
                                       char **out, size_t *out_len);

/*
 * Finds a parameter of a query string (as nea_req_query returns it):
 * '&'-separated pairs "name=value" or "name" (empty value), whose name,
 * decoded with NEA_DECODE_PLUS, equals name exactly (case-sensitive; a
 * name with a malformed escape or %00 equals nothing). Search starts at
 * offset *pos (0 for the first call) and *pos is set past the pair found,
 * so calling again finds the next pair with the same name. *value (unless
 * NULL) points at the raw, still encoded value inside query, *value_len
 * (unless NULL) gets its length; it is not NUL-terminated. Allocates
 * nothing. Returns 0, UV_ENOENT (no more such pairs; *pos is then the end
 * of query), or UV_EINVAL (query, name or pos NULL).
 */
int nea_query_find(const char *query, const char *name, size_t *pos, const char **value,
                   size_t *value_len);

/*
 * The value of the first query parameter called name (see nea_query_find),
 * decoded with NEA_DECODE_PLUS into req's arena as nea_url_decode does
 * (valid until the request ends; unwinds on arena exhaustion). *len (unless
 * NULL) gets the decoded length. Returns 0, UV_ENOENT (no such parameter),
 * or UV_EINVAL (its value has a malformed escape or %00).
 */
int nea_query_param(nea_req *req, const char *name, char **value, size_t *len);

/* The loop the request runs on (the server's). */
uv_loop_t *nea_req_loop(const nea_req *req);

/*
 * The server the request belongs to: the handle nea_server_new returned,
 * also with workers > 1 (worker 0's, whichever worker's thread runs the
 * request). From a handler on any worker it may be given to the functions
 * documented as callable from any worker's thread (nea_server_stats,
 * nea_server_worker_stats, the route stats, nea_server_metrics_text,
 * nea_respond_metrics, nea_server_close) and to the read-only
 * nea_server_plan and nea_server_port; the rest (nea_server_loop among
 * them) belong to worker 0's thread. Never NULL; allocates nothing.
 */
nea_server *nea_req_server(const nea_req *req);

/*
 * Per-request user data: one pointer the host attaches to req (a session,
 * a parsed token, the state a handler shares with its continuations) and
 * reads back wherever it holds the request: the handler, functions run by
 * nea_req_run and nea_req_protect, stream and body callbacks, nea_req_work's
 * done and nea_hold_release's fn (with a live request). NULL until set; set
 * again, it is replaced. libnea never dereferences nor frees it, and
 * forgets it when the request ends: what it points at must live at least
 * that long, so point it at arena memory (which dies with the request), or
 * at host memory released by a nea_req_defer. Loop thread only, like
 * everything on a request.
 */
void nea_req_set_data(nea_req *req, void *data);
void *nea_req_data(const nea_req *req);

/* =========================================================================
 * Memory: the request's arena
 * =========================================================================
 *
 * A handler allocates only from its request's arena, which is freed all at
 * once when the request ends. Two tiers: nea_alloc and friends never return
 * NULL (exhaustion unwinds to the innermost protected frame and the request
 * gets a 500), nea_try_alloc and nea_try_grow return NULL. What lives outside
 * the arena is released by a defer; libuv handles in the arena are tracked
 * and closed by libnea; nea_req_protect runs a part of a handler so that
 * its exhaustion fails that part alone.
 */

/*
 * Arena allocation. All memory returned below belongs to req's arena and is
 * valid until the request ends. Alignment is alignof(max_align_t).
 *
 * nea_alloc never returns NULL: when the arena is exhausted it records an
 * incident (method, path, bytes asked, arena used and size), logs it, and
 * unwinds to the innermost protected frame (the handler entry, nea_req_run
 * or nea_req_protect). Calling it outside such a frame aborts the process:
 * that is a handler-rule violation.
 */
void *nea_alloc(nea_req *req, size_t n);
void *nea_calloc(nea_req *req, size_t count, size_t size);
/* align must be a power of two. */
void *nea_alloc_aligned(nea_req *req, size_t n, size_t align);
char *nea_strdup(nea_req *req, const char *s);
char *nea_strndup(nea_req *req, const char *s, size_t n);
/* Formats straight into the arena (no heap). */
char *nea_printf(nea_req *req, const char *fmt, ...) NEA_PRINTF(2, 3);
char *nea_vprintf(nea_req *req, const char *fmt, va_list ap) NEA_PRINTF(2, 0);

/* Like nea_alloc, but returns NULL on exhaustion and never unwinds. */
NEA_WARN_UNUSED void *nea_try_alloc(nea_req *req, size_t n);

/*
 * Grows (or shrinks) p, which must be the most recent allocation of req, to
 * n bytes in place. Returns p, or NULL when the arena cannot hold n bytes
 * (p is then unchanged). The usual way to build a buffer of unknown size.
 */
NEA_WARN_UNUSED void *nea_try_grow(nea_req *req, void *p, size_t n);

/* Bytes req's arena can still give (before alignment padding). */
size_t nea_arena_available(const nea_req *req);

/*
 * Registers fn(arg) to run when the request ends, on every path: after the
 * response is written, on out-of-memory unwind, on cancel. Defers run LIFO.
 * Returns 0 or NEA_ENOMEM (the defer is then not registered: release the
 * resource yourself).
 */
int nea_req_defer(nea_req *req, void (*fn)(void *arg), void *arg);

/*
 * Tracks a libuv handle that lives in req's arena and was initialised by the
 * handler. When the request ends libnea stops and closes it (overwriting
 * handle->data) and returns the arena only after its close callback ran.
 * Returns 0 or NEA_ENOMEM (the handle was not tracked; nothing was closed).
 */
int nea_req_track(nea_req *req, uv_handle_t *handle);

/* Allocates, initialises and tracks a timer in req's arena; unwinds on OOM.
 * Set timer->data yourself; start it with uv_timer_start as usual. */
uv_timer_t *nea_req_timer(nea_req *req);

/*
 * Runs fn(req, arg) in a nested protected frame. If fn exhausts the arena,
 * the defers it registered run, the arena is rolled back to where it was
 * before the call, and NEA_ENOMEM is returned; the request carries on.
 * Returns 0 when fn returned normally.
 */
int nea_req_protect(nea_req *req, void (*fn)(nea_req *req, void *arg), void *arg);

/* =========================================================================
 * Responses
 * =========================================================================
 *
 * Exactly one answer per request: nea_respond (the body copied into the
 * arena), nea_respond_static (the body referenced), a streamed response or a
 * file (next section). Headers are added before it.
 */

/*
 * Adds a response header (copied into the arena). Call before nea_respond
 * (or nea_stream_start).
 * Content-Length, Date and Connection are managed by libnea; setting them
 * returns UV_EINVAL. Returns 0, NEA_ENOMEM, NEA_ERESPONDED, UV_EINVAL (name
 * or value with CR, LF or NUL).
 */
int nea_resp_header(nea_req *req, const char *name, const char *value);

/*
 * Sends the response: status line, Date, Content-Type (if not NULL),
 * Content-Length, Connection when needed, added headers, then len bytes of
 * body, which are copied into the arena (body may be transient). For HEAD the
 * body is omitted but its length is announced. The request ends when the
 * write completes. If the arena cannot hold the response, the pre-built 500
 * is sent instead and NEA_ENOMEM returned. Returns 0, NEA_ENOMEM,
 * NEA_ERESPONDED, or UV_EINVAL for a status outside 200..599.
 */
int nea_respond(nea_req *req, int status, const char *content_type, const void *body, size_t len);

/* Like nea_respond, but body is referenced, not copied: it must stay valid
 * and unchanged until the request ends (static or server-lifetime data, or
 * memory from this request's own arena). */
int nea_respond_static(nea_req *req, int status, const char *content_type, const void *body,
                       size_t len);

/* =========================================================================
 * Streaming
 * =========================================================================
 *
 * Bodies larger than the arena, both ways, through a bounded part of it: a
 * response written one piece at a time, a file (ranges, validators,
 * sendfile), and a request body read in pieces by a route registered with
 * nea_server_route_stream.
 */

/*
 * Streaming responses: a body of any size through a bounded part of the
 * arena. nea_stream_start lays out the head; each nea_stream_write hands
 * one piece to the socket, and when the piece is written libnea calls
 * more(req, arg) inside a protected frame (like nea_req_run): the handler
 * may write the next piece then, reusing the same memory. Exactly one
 * piece is in flight at a time, so the arena memory a stream holds is what
 * the handler chose for its buffer, whatever the body's size. more is
 * always called from the loop, never from inside nea_stream_write.
 *
 * Timeouts: a piece must be written within write_timeout_ms, and the
 * handler must write the next piece (or end) within response_timeout_ms
 * (the route's own, if it has one) of the previous one being written;
 * otherwise the connection is closed and the request cancelled (defers
 * run, tracked handles close, more is not called). The same happens when
 * the client goes away or a drain times out. An out-of-memory unwind after
 * nea_stream_start closes the connection (the status line may already be
 * on the wire, so no 500).
 */

/* nea_stream_start length for a body whose size is not known in advance:
 * chunked for HTTP/1.1, delimited by closing the connection for HTTP/1.0. */
#define NEA_LENGTH_UNKNOWN UINT64_MAX

/* Called when the previous piece was written: write the next, or end. */
typedef void (*nea_stream_fn)(nea_req *req, void *arg);

/*
 * Starts a streamed response with status, Content-Type (if not NULL), the
 * headers added with nea_resp_header, and Content-Length: length, or
 * chunked framing for NEA_LENGTH_UNKNOWN. The head is sent with the first
 * piece (or by nea_stream_end). For HEAD, 204 and 304 the head is the whole
 * response: it is sent at once and the request ends with it; later
 * nea_stream_write and nea_stream_end calls return NEA_ESTATE, so a
 * producer that stops on any error is correct for both. If the arena
 * cannot hold the head the pre-built 500 is sent and NEA_ENOMEM returned.
 * Returns 0, NEA_ENOMEM, NEA_ERESPONDED, NEA_ESTATE (cancelled), UV_EINVAL
 * (status outside 200..599, or a Content-Type with CR or LF).
 */
int nea_stream_start(nea_req *req, int status, const char *content_type, uint64_t length);

/*
 * Writes len bytes (len > 0) of the body. data is referenced, not copied:
 * it must stay valid and unchanged until more runs (the usual choice is one
 * buffer from the arena, refilled in more). Returns 0 (more will be called
 * exactly once, unless the request is cancelled first), or NEA_ESTATE (not
 * streaming, a piece still in flight, already ended or cancelled: stop
 * producing), UV_EINVAL (len 0, more NULL, or beyond the announced
 * Content-Length).
 */
int nea_stream_write(nea_req *req, const void *data, size_t len, nea_stream_fn more, void *arg);

/*
 * Ends the body (the chunked terminator for chunked framing); the request
 * ends when everything is written. A body shorter than the announced
 * Content-Length cannot be framed: the connection is closed and UV_EINVAL
 * returned. Returns 0, NEA_ESTATE or UV_EINVAL.
 */
int nea_stream_end(nea_req *req);

/*
 * Serves the file at path (see docs/files.md) with Content-Length,
 * Last-Modified, an ETag derived from the modification time (ns) and the
 * size, and Accept-Ranges: bytes. The request's conditions are evaluated
 * in RFC 9110's order: If-Match, else If-Unmodified-Since, failing -> 412;
 * If-None-Match (weak comparison), else If-Modified-Since, matching -> 304
 * for GET and HEAD (412 for other methods). Then, for GET and HEAD, one
 * byte range (Range, honoured only while If-Range names the current ETag
 * or the exact Last-Modified) -> 206 with Content-Range; a range starting
 * past the end (or "-0") -> 416, whose Content-Range gives only the size; a
 * Range of several ranges, another unit, bad syntax or an inverted range
 * is ignored: 200 with the whole file. HEAD gets the head GET would get.
 * Offsets and lengths are 64-bit. The file is read into buf_size bytes of
 * the arena (0: half of what the arena has left, at most 256 KiB; none for
 * HEAD) and sent from there and by sendfile, streamed as above; its
 * descriptor is closed on every path (a defer). Opening, fstat and reads
 * run on the loop thread. Returns 0 (a response is under way, whatever its
 * status), UV_ENOENT / other UV_E* from open or fstat (nothing was sent:
 * answer it yourself, e.g. 404), UV_EISDIR for a directory, NEA_ENOMEM
 * (the arena cannot hold the state, a header or the buffer; nothing sent),
 * or what nea_stream_start returns.
 */
int nea_respond_file(nea_req *req, const char *path, const char *content_type, size_t buf_size);

/*
 * Streaming request bodies (routes registered with nea_server_route_stream):
 * the handler calls nea_body_read when it is ready to receive; only then is
 * "Expect: 100-continue" answered and the body read. fn(req, data, len,
 * arg) is called inside a protected frame for each piece as it arrives
 * (possibly before nea_body_read returns, for bytes already received), and
 * once more with data NULL and len 0 at the end of the body. A piece is
 * valid until fn returns, or, if fn called nea_body_pause, until
 * nea_body_resume. Pieces are never stored in the arena: the body may be
 * far larger than it. A request without a body gets the end call at once.
 *
 * The handler responds as usual, normally from the end call. A response
 * before the end closes the connection after it (the rest of the body is
 * not read). The body is bounded by body_timeout_ms between reads and by
 * body_min_rate (not by body_deadline_ms); a paused body counts as idle.
 * Returns 0, NEA_ESTATE (not a streaming route, already reading, or
 * responded), NEA_ENOMEM (no arena room for the reader state).
 */
typedef void (*nea_body_fn)(nea_req *req, const char *data, size_t len, void *arg);
int nea_body_read(nea_req *req, nea_body_fn fn, void *arg);
/* Stops delivering pieces (reading stops when the read buffer is full). */
void nea_body_pause(nea_req *req);
/* Delivers pieces again, starting with what arrived in the meantime. */
void nea_body_resume(nea_req *req);

/* =========================================================================
 * Asynchronous work: coming back later (references, holds, thread-pool work)
 * =========================================================================
 *
 * A handler that waits for something (a timer, a database, the thread pool)
 * returns, and the answer is given later from another callback. By then the
 * request may be gone (the client left, a deadline passed, the server
 * drains), and its arena may already serve another request: a bare
 * nea_req * kept across a callback libnea does not run can name a
 * stranger. So host code keeps a reference instead, and asks for the
 * request when it comes back:
 *
 *     nea_ref ref = nea_req_ref(req);             // in the handler
 *     ...
 *     nea_req *r = nea_ref_req(ref);              // in the later callback
 *     if (r != NULL) nea_req_run(r, answer, arg); // NULL: it is gone
 *
 * Everything here runs on the request's loop thread only: called from
 * another thread (another worker, the thread pool, a host thread) it aborts
 * with a message naming the rule. A reference must not be used after the
 * server's close callback ran.
 */

/*
 * Tells libnea the handler will respond later from code libnea cannot see
 * (another request's handler, a host callback reached through a reference).
 * Without it, a handler that returns without responding and without a
 * tracked handle or a hold is a bug: the request gets a 500 at once, logged
 * with its route. Either way response_timeout_ms bounds the wait.
 */
void nea_req_keep(nea_req *req);

/* A request's name: its arena and that arena's generation. Copy it freely;
 * a zero-initialised nea_ref names no request. */
typedef struct nea_ref {
    const void *slot;
    uint64_t gen;
} nea_ref;

/* The reference to req. Allocates nothing. */
nea_ref nea_req_ref(nea_req *req);

/*
 * The request ref names, while it is that same request and it has neither
 * ended nor been cancelled; NULL afterwards, also once its arena serves
 * another request. The pointer returned is valid until the callback that
 * asked for it returns: ask again next time.
 */
nea_req *nea_ref_req(nea_ref ref);

/* A reference that keeps its request's arena reserved (see nea_req_hold). */
typedef struct nea_hold {
    nea_ref ref;
} nea_hold;

/*
 * Keeps req's arena, and everything in it, reserved until nea_hold_release
 * is called for the returned hold, whatever happens to the request
 * meanwhile: a client that leaves cancels the request (it can no longer be
 * answered) but its defers do not run and its arena is not reused until
 * every hold is released. The way to give a host callback libnea does not
 * run (a database client's, uv_fs_*) memory in the arena that outlives a
 * cancel. A held request counts as answered later (like nea_req_keep).
 * Allocates nothing.
 */
nea_hold nea_req_hold(nea_req *req);

/*
 * Releases hold, exactly once (releasing a request's last hold twice
 * aborts). First calls fn(req, arg) when fn is not NULL: inside the
 * request's protected frame while it is live (fn may allocate and
 * respond), or with req NULL once it was cancelled (fn then only releases
 * what the host owns; it must not allocate from the request). Then, when
 * this was the last hold of a request that is over, the request ends:
 * defers run and the arena returns. Nothing in the arena may be used after
 * this returns.
 */
void nea_hold_release(nea_hold hold, void (*fn)(nea_req *req, void *arg), void *arg);

/*
 * Runs work(arg) on libuv's thread pool, then done on the request's loop:
 * done(req, arg) inside the request's protected frame while the request is
 * live (it may allocate and respond), or done(NULL, arg) once it was
 * cancelled meanwhile (client gone, deadline, drain), so the host can
 * release what it owns. done is called exactly once. The arena, and
 * anything in it (including arg), stays reserved until done returns: a
 * cancel while work runs does not release it. work must not touch the
 * request (it runs on another thread): give it what it needs in arg.
 * The work request takes a few bytes of the arena; no heap allocation.
 * Returns 0, UV_EINVAL (work or done NULL), NEA_ESTATE (the request is not
 * live), NEA_ENOMEM (the arena is full) or uv_queue_work's error; on an
 * error neither function is ever called.
 *
 * A server's close waits for its running jobs: after drain_timeout_ms the
 * requests are cancelled, but a job still running keeps its arena, and the
 * close callback runs only after its done returned (with NULL).
 */
int nea_req_work(nea_req *req, void (*work)(void *arg), void (*done)(nea_req *req, void *arg),
                 void *arg);

/*
 * Runs fn(req, arg) inside a protected frame: the way back into handler code
 * from a libuv callback. An out-of-memory unwind inside fn ends the request
 * with a 500 (or closes the connection if response bytes were already
 * sent). Does nothing once the request was cancelled. Give it only a
 * request from the frame you are in (a handler's own req, the request of a
 * timer it tracks) or one nea_ref_req just returned in this same callback:
 * never a pointer kept across callbacks.
 */
void nea_req_run(nea_req *req, void (*fn)(nea_req *req, void *arg), void *arg);

/* =========================================================================
 * WebSocket messages
 * =========================================================================
 *
 * What a WebSocket route's callbacks (see "WebSocket routes" above) do with
 * their connection: send messages, one frame in flight at a time; close;
 * end a message that was kept; keep the host's pointer; and name the
 * connection across callbacks libnea does not run (nea_wsref). See
 * docs/websocket.md.
 */

/*
 * Sends a message of len bytes (opcode NEA_WS_TEXT, which must be UTF-8,
 * or NEA_WS_BINARY) as one frame. data may be transient: it is copied into
 * an arena before it is written (not when it already lies in the arena of
 * the message being handled), the message's while its handler runs or
 * while it is kept, else one taken for this frame; the copy is given back
 * as soon as the kernel has the whole frame, which is at once while the
 * peer keeps up. One frame is written at a time: a send while the last is
 * still being written returns UV_EAGAIN (wait for nea_ws_on_drain).
 * Returns 0, UV_EAGAIN, NEA_ESTATE (not open: closing, closed),
 * UV_EINVAL (another opcode, text that is not UTF-8, data NULL with len >
 * 0), NEA_ENOMEM (the message's arena cannot hold it, or it is larger than
 * an arena), UV_ENOBUFS (no arena or connection buffer free now: try
 * later), or a write error (the connection is then closed).
 */
int nea_ws_send(nea_ws *ws, int opcode, const void *data, size_t len);

/*
 * After nea_ws_send returned UV_EAGAIN: calls fn(ws, arg) once, from the
 * loop, when the frame being written is out (fn may send again); not at all
 * if the connection closes first. A later call replaces an earlier one.
 * Returns 0, UV_EINVAL (fn NULL), NEA_ESTATE (not open, or no frame being
 * written: send now).
 */
int nea_ws_on_drain(nea_ws *ws, void (*fn)(nea_ws *ws, void *arg), void *arg);

/*
 * Starts the close handshake: a close frame with code (0: none; else one
 * RFC 6455 lets an endpoint send: 1000-1003, 1007-1014, 3000-4999) and
 * reason (NULL or UTF-8; cut to 123 bytes at a character boundary) goes
 * out after the frame being written, if any; no message is handed to a
 * handler after it; the connection closes when the peer answers, or
 * 2 s later. Returns 0, NEA_ESTATE (already closing or closed), UV_EINVAL
 * (code or reason), UV_ENOBUFS (no connection buffer free to send it).
 */
int nea_ws_close(nea_ws *ws, unsigned code, const char *reason);

/*
 * Ends a message its handler kept (nea_req_keep, or a hold, a job or a
 * tracked handle pending when it returned): its arena returns (once
 * frames sent from it are written) and the connection reads its next
 * message. Nothing for a message already ended or a request that is not a
 * message. A kept message not ended within response_timeout_ms is
 * cancelled (its defers run, references read as gone, the connection
 * carries on). After this msg must not be used.
 */
void nea_ws_done(nea_req *msg);

/* The host's pointer for this connection (NULL until set). */
void nea_ws_set_data(nea_ws *ws, void *data);
void *nea_ws_data(const nea_ws *ws);

/* A WebSocket connection's name: its slot and the slot's generation. Copy
 * it freely; a zero-initialised nea_wsref names no connection. */
typedef struct nea_wsref {
    const void *slot;
    uint64_t gen;
} nea_wsref;

/* The reference to ws. Allocates nothing. */
nea_wsref nea_ws_ref(nea_ws *ws);

/* The connection ref names while it is open; NULL once it is closing or
 * closed (also after its slot serves another connection). The pointer is
 * valid until the callback that asked returns: ask again next time. Not
 * after the server's close callback ran. */
nea_ws *nea_ref_ws(nea_wsref ref);

/* =========================================================================
 * TLS
 * =========================================================================
 *
 * HTTPS on BearSSL: a certificate in nea_config.tls (above) makes every
 * connection speak TLS 1.2 inside the same printed bound. Here: replacing the
 * certificate without a restart, and the reasons a TLS connection fails, as
 * nea_stats counts them. See docs/tls.md.
 */

/*
 * Replaces the TLS certificate and key without a restart (for example on
 * SIGHUP): cert is read now (files or memory, as nea_config.tls), and every
 * handshake that starts after the call returns uses it, on every worker.
 * Handshakes in progress finish with the previous certificate and
 * established connections carry on; the previous certificate is freed when
 * the last handshake using it ends. Sessions cached before the call can
 * still be resumed.
 *
 * Returns 0, NEA_ETLS_CERT (nothing changes; the reason is written to
 * errbuf when not NULL, and logged), NEA_ESTATE (the server was created
 * without TLS) or NEA_ENOTLS. Allocates the new certificate from the heap,
 * never the reservation. May be called from any thread, including while
 * workers serve.
 */
int nea_server_tls_reload(nea_server *s, const nea_tls_cert *cert, char *errbuf, size_t errlen);

/* The reasons a TLS connection fails, as indexes of nea_stats.tls_failed
 * (docs/tls.md has the table): 1 plain_http, 2 not_tls, 3 version,
 * 4 no_shared, 5 handshake, 6 record_too_large, 7 bad_record,
 * 8 renegotiation, 9 peer_alert, 10 truncated, 11 shed, 12 timeout,
 * 13 internal; the rest are unused. */
#define NEA_TLS_REASONS 16

/* The short, stable name of a TLS failure reason ("plain_http", ...), for
 * logs and metrics; NULL for an index no reason uses. A static string. */
const char *nea_tls_reason_name(unsigned reason);

/* =========================================================================
 * Observability: outcomes, counters, metrics, the advisor
 * =========================================================================
 *
 * What a server tells about itself, all of it kept in the reservation and
 * counted without allocation: how each request ended (nea_outcome) and the
 * completion hook's record of it, the server's counters (nea_stats), per-route
 * metrics with histograms and their Prometheus text, and the sizing advisor,
 * which turns the arena peaks observed into arena classes. See
 * docs/operations.md.
 */

/* How a request ended. */
typedef enum nea_outcome {
    NEA_OUTCOME_COMPLETED = 0, /* a response was written (any status but those below) */
    NEA_OUTCOME_OOM,           /* the request's arena ran out: 500 (or a close) */
    NEA_OUTCOME_SHED,          /* 503: the handler never started */
    NEA_OUTCOME_TIMEOUT,       /* 408, 504, or a response that could not be written in time */
    NEA_OUTCOME_CANCELLED,     /* the client went away (or the drain deadline passed) */
    NEA_OUTCOME_COUNT
} nea_outcome;

/* "completed", "oom", "shed", "timeout", "cancelled"; "unknown" otherwise. */
const char *nea_outcome_name(nea_outcome outcome);

/* What the completion hook is told about one request. Strings are not
 * NUL-terminated: use the lengths (printf "%.*s"). */
typedef struct nea_completion {
    const char *method; /* as received; "" (length 0) when the head was malformed */
    size_t method_len;
    const char *path; /* without the query; "" when the head was malformed */
    size_t path_len;
    const char *route; /* the registered path of the route, or NULL (unrouted) */
    int status;        /* status sent; 0 when no response was (cancelled) */
    nea_outcome outcome;
    uint64_t bytes_in;       /* head and body bytes */
    uint64_t bytes_out;      /* response bytes handed to the socket */
    uint64_t queue_ns;       /* routed head to arena granted (0 when granted at once) */
    uint64_t handler_ns;     /* handler start to response issued; for a handler that
                                answers before returning, to the moment its return or its
                                response's write completed, whichever came first
                                (0: no handler ran) */
    uint64_t total_ns;       /* the request's start to its end; it starts when it first waits
                                (for an arena or its body), is answered by libnea, or
                                its handler starts, whichever comes first */
    size_t arena_peak_bytes; /* the most arena the request used; 0 when it took none */
    const struct sockaddr_storage *peer; /* the client; ss_family AF_UNSPEC when unknown */
} nea_completion;

/* One arena class's figures (nea_stats.classes). */
typedef struct nea_stats_class {
    size_t size;         /* usable bytes per arena */
    unsigned count;      /* arenas */
    unsigned in_use;     /* held by requests now */
    unsigned high_water; /* the most ever held at once */
    size_t peak_bytes;   /* the largest use any of its requests reached */
} nea_stats_class;

/* Server counters since nea_server_new, copied into *out. Totals that are
 * sums of other fields are not stored: nea_stats_shed and nea_stats_arenas
 * compute them from the copy. */
typedef struct nea_stats {
    uint64_t requests;       /* request heads fully received */
    uint64_t responses[6];   /* by status class: [1]=1xx .. [5]=5xx; [0] unused */
    uint64_t oom_500;        /* 500s from arena exhaustion */
                             /* 503s (the handler never started), by cause: */
    uint64_t shed_no_slot;   /*   no connection slot (and none to evict) */
    uint64_t shed_no_arena;  /*   no arena within queue_timeout_ms, or the queue full */
    uint64_t shed_cpu;       /*   the loop overloaded (overload_target_ms) */
    uint64_t shed_fair;      /*   the client's address over fair_share_pct */
    uint64_t shed_draining;  /*   a NEA_ROUTE_READY check while the server drains */
    uint64_t shed_no_buffer; /*  no connection buffer within header_timeout_ms */
    uint64_t timeouts;       /* header, body (idle, deadline, rate), response and write */
    uint64_t unanswered;     /* handlers that never responded: 500 when one returned with
                                nothing pending, 504 at response_timeout_ms */
    uint64_t rejected_400;   /* malformed or smuggling-shaped requests */
    uint64_t accepted;       /* connections accepted into a slot */
    uint64_t evicted;        /* silent (never sent a byte) or idle keep-alive connections
                                closed to make room for a newcomer */
    uint64_t accept_errors;  /* failed accepts, e.g. at the process fd limit */
    uint64_t tls_handshakes; /* TLS handshakes completed (full and resumed) */
    uint64_t tls_resumed;    /*   of them resumed: an abbreviated handshake, no public-key
                                work */
    uint64_t tls_failed[NEA_TLS_REASONS]; /* TLS connections that failed, by reason (see
                                             nea_tls_reason_name; [0] unused); each was
                                             closed, nothing else affected */
    unsigned connections_open;
    unsigned connections_max;     /* the most connections open at once so far (high water) */
    unsigned queue_length;        /* requests waiting for an arena now */
    unsigned conn_buffers;        /* connection buffers (plan.conn_buffers) */
    unsigned conn_buffers_in_use; /* held by connections with work now */
    unsigned conn_buffers_high_water;
    unsigned buffer_waiters;   /* connections waiting in line for a buffer now */
    unsigned shedding;         /* 1 while shedding for CPU */
    uint64_t shed_transitions; /* CPU shedding turned on or off */
    uint64_t loop_lag_us;      /* busy time of the loop's last iteration with I/O */
    /* WebSocket (nea_server_route_ws): */
    unsigned ws_open;         /* WebSocket connections now (also in connections_open) */
    uint64_t ws_upgraded;     /* connections switched to WebSocket (their 101 written) */
    uint64_t ws_messages_in;  /* messages received and handed to a handler */
    uint64_t ws_messages_out; /* data frames sent (nea_ws_send) */
    uint64_t ws_failed;       /* connections failed for the peer's protocol error (close
                                 1002 or 1007) */
    uint64_t ws_too_big;      /* connections closed 1009: a message over its limit */
    uint64_t ws_message_oom;  /* messages whose handler ran out of arena (that message
                                 failed, the connection carried on) */
    unsigned arena_class_count;
    nea_stats_class classes[NEA_ARENA_CLASSES]; /* per arena class, class 0 first */
} nea_stats;

/* Every 503 counted in st: the sum of its six shed_* causes. */
uint64_t nea_stats_shed(const nea_stats *st);

/* st's arena classes taken together: count, in_use and high_water are the
 * sums over the classes (high_water thus the sum of each class's mark),
 * peak_bytes the largest of any class, size 0 (the classes differ). */
nea_stats_class nea_stats_arenas(const nea_stats *st);

/* Copies the counters into *out. With workers > 1 they are summed across
 * the workers (capacities such as each class's count add up, and high
 * waters such as connections_max are the sum of each worker's; each class's peak_bytes and loop_lag_us are the largest of any
 * worker; shedding is the number of workers shedding for CPU). Each worker's figures are
 * live for the worker running on the calling thread and, for the others, as
 * that worker published them before its loop last waited for I/O (so at
 * most one loop iteration old). With workers > 1 this function (and
 * nea_server_worker_stats) may be called from the host's thread or from any
 * handler on any worker thread; it takes no lock. */
void nea_server_stats(const nea_server *s, nea_stats *out);

/* One worker's counters (0 <= worker < nea_server_plan(s)->workers; worker
 * 0 is the one running on the loop given to nea_server_new), under the same
 * rules as nea_server_stats. Returns 0, or UV_EINVAL for a worker number out
 * of range (*out is then unchanged). */
int nea_server_worker_stats(const nea_server *s, unsigned worker, nea_stats *out);

/* --- Per-route metrics ------------------------------------------------------
 *
 * Every server keeps, in its reservation, one record per registered route
 * and one "unrouted" record (requests answered before a route was found:
 * 400, 404, 405, 413 from the head, 431, 503 for want of a slot, ...).
 * A finished request is counted once, in O(1), without allocation, on the
 * loop thread. Reading copies the counters out.
 *
 * With workers > 1 every worker counts in its own records, on its own
 * thread only, and readers sum them: nea_server_route_stats,
 * nea_server_metrics_text (and so the advisor's input) report the whole
 * process, every worker. They may be called from the host's thread (the
 * loop given to nea_server_new) or from any handler on any worker's thread,
 * at any time; they take no lock and the request path takes none for them
 * (each counter is written by its worker alone, as a relaxed atomic store).
 * A read sees every counter at some recent value, not the whole process at
 * one instant: a request another worker is finishing may show in one
 * counter and not yet in the next. Within one copied record, requests is
 * always the sum of outcomes[] and each histogram's count the sum of its
 * buckets; each counter, read again from the same thread, never goes down.
 *
 * Histograms have fixed log-linear buckets: the lowest upper edge is
 * 2^min_log2, then every octave [2^p, 2^(p+1)] is split into
 * NEA_HIST_STEPS equal steps, for NEA_HIST_OCTAVES octaves; the last bucket
 * counts everything above the highest edge. Byte histograms start at 1 KiB
 * (NEA_HIST_BYTES_LOG2), time histograms, in nanoseconds, at 4.096 us
 * (NEA_HIST_NS_LOG2), so bytes reach 4 GiB and times 17.2 s before the
 * overflow bucket. Values are never off by more than one step: 25% of the
 * octave's lower edge.
 */
#define NEA_HIST_OCTAVES 22
#define NEA_HIST_STEPS 4
/* Buckets: one up to the lowest edge, the steps, and one above the highest. */
#define NEA_HIST_BUCKETS (NEA_HIST_OCTAVES * NEA_HIST_STEPS + 2)
#define NEA_HIST_BYTES_LOG2 10
#define NEA_HIST_NS_LOG2 12

typedef struct nea_histogram {
    uint64_t count;
    uint64_t sum; /* of the values recorded: bytes or nanoseconds */
    /* Not cumulative: buckets[i] counts values v with
     * nea_histogram_edge(min_log2, i - 1) < v <= nea_histogram_edge(min_log2, i). */
    uint64_t buckets[NEA_HIST_BUCKETS];
} nea_histogram;

/* Upper edge of bucket i of a histogram whose lowest edge is 2^min_log2
 * (min_log2 >= 2); UINT64_MAX for the last bucket (and beyond). */
uint64_t nea_histogram_edge(unsigned min_log2, unsigned i);

/* The upper edge of the bucket holding quantile q (0 < q <= 1) of h: a
 * value at least as large as that fraction of the values recorded. 0 when h
 * is empty; UINT64_MAX when the quantile lies in the overflow bucket. */
uint64_t nea_histogram_quantile(const nea_histogram *h, unsigned min_log2, double q);

typedef struct nea_route_stats {
    const char *method;                   /* the route's method, or "" for the unrouted record */
    const char *path;                     /* the route's registered path, or "unrouted" */
    unsigned arena_class;                 /* the route's arena class */
    uint64_t requests;                    /* = the sum of outcomes[] */
    uint64_t responses[6];                /* by status class, [1]=1xx .. [5]=5xx */
    uint64_t outcomes[NEA_OUTCOME_COUNT]; /* by nea_outcome */
    uint64_t bytes_in;                    /* request heads and bodies */
    uint64_t bytes_out;                   /* responses handed to the socket */
    uint64_t arena_peak_max;              /* the largest arena peak seen */
    nea_histogram arena_peak_bytes;       /* requests that took an arena */
    nea_histogram queue_ns;               /* routed head to arena granted */
    nea_histogram handler_ns;             /* handler start to response issued */
    nea_histogram total_ns;               /* start to end (see nea_completion) */
} nea_route_stats;

/* Records a server keeps: the routes registered so far, plus one (the
 * unrouted record, index 0). With workers > 1, every worker keeps the same
 * records and this function and the two below sum them (thread rules
 * above). */
unsigned nea_server_route_stats_count(const nea_server *s);

/* Copies record i (0: unrouted; i: the route registered i-th) into *out,
 * summed over every worker (arena_peak_max: the largest of any). Returns 0,
 * or UV_EINVAL when i >= nea_server_route_stats_count(s). */
int nea_server_route_stats(const nea_server *s, unsigned i, nea_route_stats *out);

/* Adds every counter and histogram of from into into (method and path of
 * into are kept): how records of several servers (e.g. one per worker
 * thread) serving the same routes are summed. */
void nea_route_stats_add(nea_route_stats *into, const nea_route_stats *from);

/*
 * Writes the server's metrics as Prometheus text exposition (format
 * 0.0.4) into buf: at most cap bytes, NUL-terminated when cap > 0. Returns
 * the length the whole text needs (without the NUL), like snprintf: when it
 * is >= cap the text was cut. Allocates nothing; call it with the arena
 * memory of a request (nea_try_alloc) to answer a scrape; calling it with
 * cap 0 first measures the text. Names: nea_ prefix, base units (_bytes,
 * _seconds), counters end in _total, every per-route series carries
 * route="<registered path>" and method labels; a route appears once it has
 * counted a request; histograms print every second octave's edge. With
 * workers > 1 the text is the whole process (every worker's records summed,
 * the server counters as nea_server_stats sums them), callable from any
 * worker's thread (see "Per-route metrics" above); since the other workers
 * go on counting between two calls, the text may have grown since it was
 * measured: leave room (e.g. len + len / 16 + 1) and measure again when the
 * result is >= cap.
 */
size_t nea_server_metrics_text(const nea_server *s, char *buf, size_t cap);

/* The Content-Type of the exposition (Prometheus text format 0.0.4). */
#define NEA_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/*
 * Answers a scrape from a handler: the text nea_server_metrics_text writes
 * for the request's server (the whole process with workers, from any
 * worker's thread), as a streamed 200 with NEA_METRICS_CONTENT_TYPE
 * (chunked; HTTP/1.0: delimited by the close), written whole lines at a
 * time through one buffer of buf_size bytes of the arena (0: 4 KiB), so a
 * scrape needs no buffer the size of the text (with 8 routes in use it is
 * about 35 KB). buf_size is raised to hold the longest line, which grows
 * with the longest route path. The state besides the buffer is about
 * 3.6 KiB of the arena. The server counters are read once, at the start;
 * each family's per-route records when the text reaches them, one record
 * at a time. HEAD gets the head only. The route's response timeout bounds
 * the time between pieces, write_timeout_ms each piece. Allocates nothing
 * from the heap. Returns 0 (the response is under way), NEA_ENOMEM (the
 * arena cannot hold the state and the buffer; nothing was sent: answer it
 * yourself), or what nea_stream_start returns.
 */
int nea_respond_metrics(nea_req *req, size_t buf_size);

/* --- The sizing advisor -------------------------------------------------- */

/* What nea_advise recommends. */
typedef struct nea_advice {
    nea_config cfg;             /* the config given, with arena_size, arena_count (0: class 0
                                   takes what memory_limit leaves) and the arena classes
                                   replaced; memory_limit is kept */
    nea_plan plan;              /* cfg's plan */
    double oom_rate;            /* the target given */
    double predicted_oom;       /* at most this fraction of the observed requests would
                                   have exceeded their class (an upper bound: whole
                                   buckets straddling a class size count) */
    double fit_ratio;           /* arena bytes the observed in-flight mix holds with these
                                   classes, over the bytes its requests actually peaked at
                                   (1.0 = an ideal per-request fit) */
    double floor_fit;           /* fit_ratio against an ideal that still gives every request
                                   the smallest arena the config allows (request struct,
                                   read_buffer_size of head, 1 KiB): what classes cost
                                   beyond that floor */
    double one_class_fit;       /* fit_ratio with one class sized for the largest route */
    double in_flight;           /* requests of the observed mix that fit in flight at once,
                                   over every worker */
    double in_flight_one_class; /* the same with one class, same memory_limit */
} nea_advice;

/*
 * The sizing advisor. From the arena-peak histograms of n per-route records
 * (as nea_server_route_stats copies them; records with no arena samples go
 * to class 0), recommends arena classes for cfg->memory_limit: each route
 * needs the (1 - oom_rate) quantile of its peaks (never more than the
 * largest peak seen), plus headroom_pct percent, page-rounded, at least
 * the smallest arena cfg allows; routes whose needs are within 25% of each
 * other share a class (at most NEA_ARENA_CLASSES). Arenas are shared out
 * in proportion to each class's in-flight time (the routes' summed total
 * durations, Little's law), class 0 (the smallest) taking what is left.
 * With cfg->workers > 1 the records are the process's (as
 * nea_server_route_stats sums them) and the counts are per worker, as the
 * config's are, each worker taking memory_limit / workers.
 * route_class[i] gets record i's class. Allocates nothing. Returns 0, or
 * UV_EINVAL (oom_rate outside [0, 1), n == 0), or the plan's error when
 * even one arena per class does not fit.
 */
int nea_advise(const nea_config *cfg, const nea_route_stats *routes, unsigned n, double oom_rate,
               unsigned headroom_pct, unsigned *route_class, nea_advice *out);

/*
 * Writes advice as text ready to paste: the nea_config lines, the routes
 * with their classes (nea_server_route_class), the nea-demo flags, and the
 * predicted figures. At most cap bytes, NUL-terminated; returns the length
 * the whole text needs, like snprintf.
 */
size_t nea_advice_format(const nea_advice *a, const nea_route_stats *routes, unsigned n,
                         const unsigned *route_class, char *buf, size_t cap);

/* =========================================================================
 * C-library adapters: using C libraries inside handlers
 * =========================================================================
 *
 * Adapters that make a library's allocations come from the request's arena
 * (see docs/guide.md, "Using C libraries inside handlers", for each
 * recipe). Every block carries a small header, so these functions free and reallocate only
 * what they allocated themselves. A block lives until its request ends:
 * nea_arena_free (and the libraries' free hooks) reclaims a block only when
 * it is the most recent allocation of its arena, and is otherwise a no-op.
 * Like all arena memory, nothing from a request may outlive it.
 *
 * Two tiers, as nea_alloc / nea_try_alloc: the plain adapters unwind on
 * exhaustion (the request gets the out-of-memory 500, or nea_req_protect
 * returns NEA_ENOMEM), for libraries that crash on NULL or whose failure
 * paths are never tested; the try adapters return NULL, for libraries that
 * check every allocation and report failure to the handler. Unwinding
 * through a library is safe as long as the library holds nothing but arena
 * memory at that moment (no lock, fd or global state half-updated): true
 * for jansson, cJSON, zlib and protobuf-c.
 */

/* The request whose handler code is running on this thread (the innermost
 * protected frame: handler entry, nea_req_run, nea_req_protect), or NULL
 * outside handler code (including defers, which run after the handler). */
nea_req *nea_req_current(void);

/*
 * malloc-shaped adapters over the current request's arena, for libraries
 * with process-global hooks (jansson's json_set_alloc_funcs, cJSON's
 * cJSON_InitHooks). Outside handler code (nea_req_current() == NULL) they
 * allocate from libc instead, so the same hooks serve a library used at
 * startup; nea_arena_free returns such blocks to libc wherever it is called,
 * and nea_arena_realloc keeps them in libc. The plain forms return NULL
 * outside a request only when libc does.
 *
 * nea_arena_realloc grows in place when p is its arena's most recent block
 * (and shrinks in place always); otherwise it copies into a new block of the
 * same request's arena (the old one stays until the request ends).
 * realloc(NULL, n) is malloc(n); realloc(p, 0) keeps p as a zero-size block.
 */
void *nea_arena_malloc(size_t n);
void *nea_arena_calloc(size_t count, size_t size);
void *nea_arena_realloc(void *p, size_t n);
void *nea_arena_try_malloc(size_t n);
void *nea_arena_try_calloc(size_t count, size_t size);
void *nea_arena_try_realloc(void *p, size_t n);
/* Frees p (NULL is fine) from any nea_arena_* or per-object adapter. */
void nea_arena_free(void *p);

/*
 * Per-object adapters: the library passes the request back as its opaque
 * pointer, so they work wherever the request is alive (the free hooks also
 * from its defers). The allocating ones need the request's frame innermost
 * only in their unwinding form.
 *
 * zlib:       strm.zalloc = nea_zalloc (or nea_try_zalloc);
 *             strm.zfree = nea_zfree; strm.opaque = req;
 * protobuf-c: ProtobufCAllocator a = {nea_pbc_alloc, nea_pbc_free, req};
 */
void *nea_zalloc(void *req, unsigned items, unsigned size);
void *nea_try_zalloc(void *req, unsigned items, unsigned size);
void nea_zfree(void *req, void *p);
void *nea_pbc_alloc(void *req, size_t n);
void *nea_try_pbc_alloc(void *req, size_t n);
void nea_pbc_free(void *req, void *p);

/* =========================================================================
 * Errors
 * =========================================================================
 *
 * Functions return 0 or a negative errno-compatible int: libuv's UV_E* codes
 * pass through unchanged, libnea's own are the NEA_E* below.
 * nea_strerror and nea_err_name name any of them.
 */

/* libnea's own error codes: one list (like libuv's UV_ERRNO_MAP) from which
 * the enum below and nea_strerror / nea_err_name are generated. libuv uses
 * -1 .. -4095 (errno range) and a few values near -3000/-4000; libnea's codes
 * live at -30000 and below. XX(name, value, description). */
#define NEA_ERRNO_MAP(XX)                                                                          \
    XX(EINVAL_CONFIG, -30001, "invalid configuration")                                             \
    XX(EOVERFLOW, -30002, "memory plan overflows size_t")                                          \
    XX(EOVERLIMIT, -30003, "memory plan exceeds memory_limit")                                     \
    XX(EARENA_SMALL, -30004, "arena_size too small for a request head")                            \
    XX(ENOMEM, -30005, "request arena exhausted")                                                  \
    XX(EMLOCK, -30006, "cannot lock the reservation in memory (RLIMIT_MEMLOCK too low?)")          \
    XX(EROUTES, -30007, "route table full (raise max_routes)")                                     \
    XX(ESTATE, -30008, "operation not valid in the current state")                                 \
    XX(ERESPONDED, -30009, "request already has a response")                                       \
    XX(EROUTE_DUP, -30010, "a route with this method and path is already registered")              \
    XX(EROUTE_METHOD, -30011, "route method is not one libnea can route")                          \
    XX(EROUTE_PATH, -30012, "route path can never match a request")                                \
    XX(ESUCCESSOR, -30013, "the successor process ended or gave up before it listened")            \
    XX(ETLS_CERT, -30040, "TLS certificate or private key cannot be used")                         \
    XX(ENOTLS, -30041, "libnea was built without TLS support")

enum {
#define NEA__ERRNO_ENUM(name, value, text) NEA_##name = (value),
    NEA_ERRNO_MAP(NEA__ERRNO_ENUM)
#undef NEA__ERRNO_ENUM
};

/* Static name and description of any error code libnea returns. */
const char *nea_strerror(int err);
const char *nea_err_name(int err);

#ifdef __cplusplus
}
#endif

#endif /* NEA_H */
