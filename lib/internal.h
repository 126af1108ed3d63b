/*
 * internal.h - structures and functions shared between libnea's files.
 *
 * Everything declared here lives inside the one reservation made by
 * nea_server_new (see region.c): the server struct, the route table, the
 * arena descriptors, the connection slots with their read buffers, and the
 * arenas themselves. Nothing here is allocated from the heap. Names are
 * nea__ (internal, shared) and never part of the ABI.
 */
#ifndef NEA_INTERNAL_H
#define NEA_INTERNAL_H

#include "nea.h"

#include <llhttp.h>
#include <setjmp.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Poisoning for AddressSanitizer or Valgrind: bytes of the reservation that
 * no request currently owns are marked inaccessible (arena.c), so overruns
 * inside the one mapping are still caught. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NEA_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define NEA_ASAN 1
#endif

#ifdef NEA_ASAN
#include <sanitizer/asan_interface.h>
#define NEA__POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define NEA__UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#elif defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define NEA__POISON(p, n) VALGRIND_MAKE_MEM_NOACCESS((p), (n))
#define NEA__UNPOISON(p, n) VALGRIND_MAKE_MEM_UNDEFINED((p), (n))
#endif
#endif
#ifndef NEA__POISON
#define NEA__POISON(p, n) ((void)(p), (void)(n))
#define NEA__UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define NEA__ALIGN ((size_t)alignof(max_align_t))
#define NEA__ROUND_UP(x, a) (((x) + ((a)-1)) & ~((size_t)(a)-1))

/* The handler must have at least this much of its arena left after the
 * request struct and the largest possible head; enforced by the plan. */
#define NEA__MIN_HANDLER_BYTES ((size_t)1024)
/* Connections accepted only to be told 503 when every slot is busy. */
#define NEA__REJECT_SLOTS 16
/* How long a closing connection keeps draining input before the final close
 * (so the peer reads our last response instead of a reset). */
#define NEA__LINGER_MS 2000
/* Room for dynamic header lines of a pre-built response (Allow, Date,
 * Connection). */
#define NEA__HDRBUF 192
/* Per-connection output buffer: small responses to pipelined requests are
 * gathered here and sent with one write (see nea__conn_write_bufs). */
#define NEA__OBUF 2048
/* How many of the oldest idle connections an accept looks at for one it may
 * evict (bounded work per accept when slots are full). */
#define NEA__EVICT_SCAN 8

/* --- region.c ------------------------------------------------------------ */

typedef struct nea__region {
    char *base;
    size_t size;
    size_t page;
    bool locked;
} nea__region;

int nea__region_map(nea__region *r, size_t size, bool commit);
int nea__region_guard(nea__region *r, void *addr, size_t len);
/* Faults [addr, addr + len) in, keeping its contents. Returns 0. */
int nea__region_touch(nea__region *r, void *addr, size_t len);
/* mlock [addr, addr + len): NEA_EMLOCK when RLIMIT_MEMLOCK is too low. */
int nea__region_lock(nea__region *r, void *addr, size_t len);
void nea__region_unmap(nea__region *r);

/* --- arena.c ------------------------------------------------------------- */

typedef struct nea__arena {
    char *base;
    size_t size; /* usable bytes */
    size_t used; /* bump offset */
    size_t peak; /* highest `used` since the last reset */
    size_t last; /* offset of the most recent allocation (for grow) */
    struct nea__arena *next_free;
} nea__arena;

void nea__arena_init(nea__arena *a, char *base, size_t size);
/* NULL on exhaustion (or injected failure); never unwinds. */
void *nea__arena_alloc(nea__arena *a, size_t n, size_t align);
void *nea__arena_grow(nea__arena *a, void *p, size_t n);
size_t nea__arena_available(const nea__arena *a);
/* Drops every allocation past `mark` (a previous `used`). */
void nea__arena_rollback(nea__arena *a, size_t mark);
/* Drops everything and applies the scrub policy to the bytes that were used. */
void nea__arena_reset(nea__arena *a, int scrub);

#ifdef NEA_FAULT_INJECTION
/* Fails the nth arena grant from now on (1 = the next one); persistent: also
 * every later one. nth = 0 disarms. Returns how many grants were counted. */
void nea__fault_arm(unsigned long nth, bool persistent);
unsigned long nea__fault_grants(void);
unsigned long nea__fault_failures(void);
#endif

/* --- pool.c -------------------------------------------------------------- */

typedef struct nea__pool {
    nea__arena *arenas;
    nea__arena *free;
    unsigned count;
    unsigned in_use;
    unsigned high_water;
    size_t peak_bytes;
    int scrub;
} nea__pool;

/* Arena i occupies the `span` (page-rounded) bytes at first + i * stride and
 * ends exactly at the span's end; `size` bytes of it are usable. */
void nea__pool_init(nea__pool *p, nea__arena *table, char *first, unsigned count, size_t stride,
                    size_t span, size_t size, int scrub);
nea__arena *nea__pool_acquire(nea__pool *p);
void nea__pool_release(nea__pool *p, nea__arena *a);

/* --- router.c ------------------------------------------------------------ */

typedef struct nea__route {
    const char *method;
    size_t method_len;
    bool is_get; /* also answers HEAD */
    const char *path;
    size_t path_len;
    bool prefix;
    nea_handler_fn fn;
    void *data;
} nea__route;

typedef enum { NEA__ROUTE_FOUND, NEA__ROUTE_NO_PATH, NEA__ROUTE_NO_METHOD } nea__route_result;

nea__route_result nea__route_find(const nea_server *s, const char *method, size_t method_len,
                                  const char *path, size_t path_len, const nea__route **out);
/* Writes "Allow: GET, HEAD\r\n" for a path into buf; returns its length. */
size_t nea__route_allow(const nea_server *s, const char *path, size_t path_len, char *buf,
                        size_t len);

/* --- http.c: the head guard and llhttp glue ------------------------------ */

/* Parse state of the request head being received on a connection. Offsets
 * are into the connection's read buffer. */
typedef struct nea__head {
    size_t start;      /* first byte of the request line (leading CRLFs skipped) */
    size_t scan;       /* raw scanner position */
    size_t line_start; /* start of the line being scanned */
    size_t end;        /* one past the blank line ending the head */
    unsigned lines;    /* header lines seen (request line not counted) */
    bool line_done;    /* the request line is complete */
    bool in_name;      /* scanner is inside a field name */
    /* Filled by llhttp callbacks while the complete head is parsed: */
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
    const char *url;
    size_t url_len;
    uint64_t content_length;
    bool has_cl, has_te, chunked, expect_continue, headers_done, message_done;
    unsigned hosts;
    int status; /* error status decided by a callback, 0 = fine */
} nea__head;

typedef enum {
    NEA__HEAD_MORE, /* need more bytes */
    NEA__HEAD_DONE, /* head complete at head->end */
    NEA__HEAD_BAD,  /* malformed: 400 */
} nea__scan_result;

void nea__http_settings(llhttp_settings_t *settings);
nea__scan_result nea__head_scan(nea__head *h, const char *buf, size_t len);
/* Runs llhttp over the complete head; returns 0 or the status to answer. */
int nea__head_parse(nea__head *h, llhttp_t *parser, const char *buf);
/* Where the path starts in a request target: past "http://authority" for
 * absolute-form (RFC 9112 3.2.2), else 0. */
size_t nea__target_path(const char *url, size_t len);
/* Copies the head into req's arena and indexes it. Returns 0 or 431 when
 * the arena cannot hold the head. */
int nea__head_index(nea_req *req, const char *head, size_t len, size_t path_prefix_len);

/* --- oom.c: protected calls, defers, tracked handles --------------------- */

typedef struct nea__frame {
    struct nea__frame *prev;
    nea_req *req;
    jmp_buf jb;
} nea__frame;

typedef struct nea__defer {
    struct nea__defer *next;
    void (*fn)(void *);
    void *arg;
} nea__defer;

typedef struct nea__tracked {
    struct nea__tracked *next;
    uv_handle_t *handle;
} nea__tracked;

/* --- requests (conn.c owns their lifecycle) ------------------------------ */

typedef struct nea__hdr {
    const char *name;
    const char *value;
} nea__hdr;

typedef struct nea__resp_hdr {
    struct nea__resp_hdr *next;
    const char *line; /* "Name: value\r\n" */
    size_t len;
} nea__resp_hdr;

typedef struct nea__conn nea__conn;

struct nea_req {
    nea_server *srv;
    nea__conn *conn; /* NULL once the request is detached from its connection */
    nea__arena *arena;

    const char *method, *path, *query, *tail;
    nea__hdr *hdrs;
    size_t nhdrs;
    char *body;
    size_t body_len;
    int http_minor;
    bool is_head;

    nea_handler_fn fn;
    void *fn_data;

    /* Lifecycle */
    unsigned depth;   /* protected frames of this request on the stack */
    bool responded;   /* nea_respond was called */
    bool bytes_sent;  /* some response byte reached the socket */
    bool written;     /* the whole response was written */
    bool cancelled;   /* client gone or server closing */
    bool end_pending; /* ended while handler code was on the stack */
    bool ended;       /* defers ran; waiting for handles, then the arena returns */
    unsigned handles_closing;

    nea__defer *defers;
    nea__tracked *tracked;
    nea__resp_hdr *resp_hdrs, **resp_tail;
    size_t resp_hdrs_len;
    uv_buf_t wbufs[2];
    unsigned nwbufs;

    size_t oom_asked; /* bytes requested by the allocation that failed */
};

/* Creates a request in a fresh arena (the request struct is the arena's
 * first allocation). */
nea_req *nea__req_open(nea_server *s, nea__arena *a);
/* Runs fn inside the request's outermost protected frame and handles an
 * out-of-memory unwind (500 or close). */
void nea__req_call(nea_req *req, void (*fn)(nea_req *, void *), void *arg);
/* The outermost frame unwound: answer 500 unless a response is already
 * committed. */
void nea__req_oom(nea_req *req);
/* Called when handler code left the stack: finishes a request whose response
 * was completely written while the handler was still running. */
void nea__req_settle(nea_req *req);
/* Ends the request: runs defers (LIFO), closes tracked handles, and returns
 * the arena once every handle has closed. Idempotent. */
void nea__req_end(nea_req *req);
/* Runs defers registered after `keep` (LIFO) and unlinks them. */
void nea__req_run_defers(nea_req *req, nea__defer *keep);
/* Formats and logs the incident record of an out-of-memory unwind. */
void nea__req_log_oom(nea_req *req);

/* --- response.c ---------------------------------------------------------- */

/* Pre-built error responses: everything but the Date (and Allow) lines. */
typedef enum {
    NEA__E400,
    NEA__E404,
    NEA__E405,
    NEA__E408,
    NEA__E413,
    NEA__E414,
    NEA__E431,
    NEA__E500,
    NEA__E501,
    NEA__E503,
    NEA__E505,
    NEA__ECOUNT
} nea__err;

typedef struct nea__static_resp {
    int status;
    char head[160]; /* status line, Content-Type, Content-Length, Retry-After */
    size_t head_len;
    const char *body;
    size_t body_len;
} nea__static_resp;

void nea__responses_build(nea_server *s);
nea__err nea__err_for_status(int status);
const char *nea__reason(int status);
/* Refreshes the cached "Date: ...\r\n" line if the second changed. */
const char *nea__date_line(nea_server *s, size_t *len);

size_t nea__request_overhead(void);

/* --- conn.c -------------------------------------------------------------- */

typedef enum {
    NEA__C_FREE,
    NEA__C_IDLE,    /* no partial request; keep-alive timer */
    NEA__C_HEAD,    /* receiving a head; header deadline */
    NEA__C_QUEUED,  /* head complete, waiting for an arena */
    NEA__C_BODY,    /* receiving the body into the arena */
    NEA__C_HANDLER, /* handler running or pending (async) */
    NEA__C_WRITING, /* response being written */
    NEA__C_LINGER,  /* sent the last response, draining input before close */
    NEA__C_CLOSING, /* uv_close called */
} nea__conn_state;

struct nea__conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_write_t wreq_continue;
    uv_shutdown_t shut;
    llhttp_t parser;
    nea_server *srv;

    nea__conn_state state;
    char *rbuf;
    char *obuf;          /* NEA__OBUF bytes after rbuf */
    size_t olen;         /* bytes gathered in obuf, not yet handed to the kernel */
    bool owrite_pending; /* obuf is being written by wreq_out */
    uv_write_t wreq_out;
    size_t rlen; /* bytes in rbuf */
    size_t rpos; /* start of the unprocessed part */
    bool reading;
    bool keep_alive;
    bool must_close;   /* close after the current response */
    bool eof;          /* peer finished sending */
    bool counted_open; /* counted in stats.connections_open */
    bool in_process;   /* conn_process is on the stack */
    bool served;       /* at least one response completed on this connection */
    bool in_idle_list; /* linked in the server's idle (evictable) list */

    nea__head head;
    const nea__route *route;
    nea__err route_err;        /* 404/405 decided at head time; NEA__ECOUNT if routed */
    uint64_t body_left;        /* Content-Length bytes still to read */
    uint64_t body_deadline_ms; /* uv_now() by which the body must be complete */
    uint64_t head_started_ms;

    nea_req *req;
    nea__conn *next, *prev; /* free list, idle list or arena wait queue */
    uint64_t queued_ms;

    char hdrbuf[NEA__HDRBUF]; /* dynamic lines of a pre-built response */
    uv_buf_t ebufs[3];
};

/* A handle used only to tell a connection 503 when every slot is busy. */
typedef struct nea__reject {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t shut;
    nea_server *srv;
    struct nea__reject *next;
    char hdrbuf[NEA__HDRBUF];
    char discard[256];
    uv_buf_t ebufs[3];
    bool in_use;
    unsigned closing;
} nea__reject;

/* rbuf: read_buffer_size bytes; obuf: NEA__OBUF bytes (both in the slot). */
void nea__conn_init(nea__conn *c, nea_server *s, char *rbuf, char *obuf);
/* Starts serving the free slot c on the connection pending on listener, or,
 * when listener is NULL, on the connected socket fd. On failure the slot
 * returns to the free list through its close callback. */
int nea__conn_accept(nea__conn *c, uv_stream_t *listener, uv_os_sock_t fd);
void nea__conn_close(nea__conn *c);
/* An idle keep-alive connection that may be closed to make room (answered
 * at least once, no request bytes waiting), oldest first; NULL if none. */
nea__conn *nea__conn_evictable(nea_server *s);
void nea__conn_arena_ready(nea__conn *c, nea__arena *a);
/* The request's response is fully written (or failed with status < 0). */
void nea__conn_response_done(nea__conn *c, int status);
/* A request in its arena finished and let go of the connection. */
void nea__conn_request_detached(nea__conn *c);
/* Fills bufs[0..3) with a pre-built response; returns the count. conn_line
 * is "" or a complete "Connection: ...\r\n" line; allow (405 only) likewise. */
unsigned nea__static_bufs(nea_server *s, nea__err e, const char *conn_line, const char *allow,
                          size_t allow_len, bool head_only, char *hdrbuf, uv_buf_t *bufs);
/* The request's response is ready in bufs (which must stay valid until it
 * is written): write it, then end the request. */
void nea__conn_write_bufs(nea__conn *c, uv_buf_t *bufs, unsigned n);
/* Answers the request with a pre-built error as its response. */
void nea__conn_respond_error(nea__conn *c, nea__err e);
/* The Connection line for the current response: closes the connection
 * after it when the peer or the server wants that. */
const char *nea__conn_line(nea__conn *c);

/* --- server.c ------------------------------------------------------------ */

struct nea_server {
    uv_loop_t *loop;
    nea_config cfg;
    char host[64];
    nea_plan plan;
    nea__region region;

    uv_tcp_t listener;
    uv_timer_t drain_timer;
    bool listener_open; /* the listener handle exists (until its close callback) */
    bool listening;     /* bound and accepting */
    bool closing;
    bool accept_pending;
    bool granting; /* the arena hand-off loop is running */
    uint64_t accept_error_logged_ms;
    int port;
    unsigned handles_open; /* server-owned handles not yet closed */
    void (*close_cb)(nea_server *, void *);
    void *close_data;

    nea__conn *conns;
    nea__conn *free_conns;
    nea__conn *idle_head, *idle_tail; /* oldest idle first */
    nea__conn *wait_head, *wait_tail; /* FIFO of connections waiting for an arena */
    unsigned wait_len;
    unsigned wait_max;

    nea__pool pool;
    nea__route *routes;
    unsigned nroutes;

    nea__reject rejects[NEA__REJECT_SLOTS];
    nea__reject *free_rejects;

    nea__frame *frame;  /* innermost protected frame */
    unsigned live_reqs; /* requests whose arena is not yet back in the pool */
    llhttp_settings_t settings;

    nea__static_resp statics[NEA__ECOUNT];
    uint64_t date_tick; /* uv_now() when the date line was last checked */
    int64_t date_sec;
    char date_line[40];
    size_t date_len;

    nea_stats stats;
    char logbuf[512];
};

void nea__log(nea_server *s, int level, const char *fmt, ...) NEA_PRINTF(3, 4);
void nea__logv(const nea_config *cfg, int level, const char *fmt, va_list ap) NEA_PRINTF(3, 0);
/* A connection slot or reject handle became free, or an arena returned. */
void nea__server_slot_freed(nea_server *s);
void nea__server_arena_released(nea_server *s);
void nea__server_maybe_finish_close(nea_server *s);
void nea__count_response(nea_server *s, int status);
#ifdef NEA_FAULT_INJECTION
/* Serves an already-connected stream socket (e.g. one end of a socketpair)
 * in a free slot, as if accepted. For fuzzing and tests. */
int nea__server_adopt(nea_server *s, uv_os_sock_t fd);
#endif

#endif /* NEA_INTERNAL_H */
