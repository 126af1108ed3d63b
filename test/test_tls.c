/*
 * test_tls.c - the TLS engine (tls.c) driven over real sockets on 127.0.0.1
 * by a small libuv harness in this file (accept, move ciphertext between the
 * socket and the engine, answer a fixed HTTP response), against real
 * clients: curl, python3's ssl and openssl s_client. Certificates are made
 * by the openssl command when the program starts, in a temporary directory.
 *
 * The harness reads straight into the engine's input buffer (alloc_cb hands
 * libuv nea__tls_recv_buf) and writes straight from its output buffer, and
 * gives a connection's record buffers back to a small pool whenever it is
 * idle (nea__tls_park), taking another block when the next byte arrives -
 * the way a connection slot is meant to use the engine. Blocks in the pool
 * are PROT_NONE, so an engine that touched a block it gave back would
 * fault. Each connection's
 * end (reason, resumed, ALPN, requests served) is logged for the tests.
 *
 * This program also interposes malloc to count heap calls while 300
 * handshakes run (not under sanitizers or Valgrind, which own malloc).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"
#include "sock.h"
#include "tls.h"

#include <bearssl.h>

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

#if defined(NEA_ASAN) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

/* --- Heap calls, counted while `counting` ------------------------------------ */

static int counting;
static unsigned long heap_calls;

#if !SANITIZED
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static void count_call(int yes)
{
    if (yes && __atomic_load_n(&counting, __ATOMIC_RELAXED)) {
        __atomic_fetch_add(&heap_calls, 1ul, __ATOMIC_RELAXED);
    }
}

void *malloc(size_t n)
{
    count_call(1);
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
    count_call(1);
    return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
    count_call(1);
    return __libc_realloc(p, n);
}

void free(void *p)
{
    count_call(p != NULL);
    __libc_free(p);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    count_call(1);
    *out = __libc_memalign(align, n);
    return *out != NULL ? 0 : ENOMEM;
}

void *aligned_alloc(size_t align, size_t n)
{
    count_call(1);
    return __libc_memalign(align, n);
}

void *memalign(size_t align, size_t n)
{
    count_call(1);
    return __libc_memalign(align, n);
}
#endif

/* --- Certificates ---------------------------------------------------------------- */

static char dir[64];                            /* the temporary directory with the certificates */
static char fp_one[80], fp_two[80], fp_rsa[80]; /* SHA-256 of each certificate, hex */

static void path_of(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", dir, name);
}

static void read_fingerprint(const char *name, char *out, size_t len)
{
    char path[128];
    FILE *f;
    path_of(path, sizeof(path), name);
    f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(out, (int)len, f));
    fclose(f);
    out[strcspn(out, " \n")] = '\0';
}

static int make_certs(void **state)
{
    char cmd[4096];
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/nea-tls-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        return -1;
    }
    /* one, two: EC P-256; rsa: RSA-2048; small: RSA-1024 (refused); enc: an
     * encrypted key (refused). *.fp: SHA-256 of each certificate's DER. */
    snprintf(cmd, sizeof(cmd),
             "set -e; cd %s; "
             "for n in one two; do "
             "  openssl ecparam -name prime256v1 -genkey -noout -out $n.key; "
             "  openssl req -x509 -new -key $n.key -subj /CN=nea-test-$n -days 2 -out $n.crt; "
             "done; "
             "openssl genrsa -out rsa.key 2048; "
             "openssl req -x509 -new -key rsa.key -subj /CN=nea-test-rsa -days 2 -out rsa.crt; "
             "openssl genrsa -out small.key 1024; "
             "openssl req -x509 -new -key small.key -subj /CN=small -days 2 -out small.crt; "
             "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -aes256 "
             "  -pass pass:secret -out enc.key; "
             "for n in one two rsa; do "
             "  openssl x509 -in $n.crt -outform DER | sha256sum > $n.fp; "
             "done",
             dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "test_tls: making certificates failed (openssl)\n");
        return -1;
    }
    read_fingerprint("one.fp", fp_one, sizeof(fp_one));
    read_fingerprint("two.fp", fp_two, sizeof(fp_two));
    read_fingerprint("rsa.fp", fp_rsa, sizeof(fp_rsa));
    return 0;
}

static int remove_certs(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A certificate source naming files in dir. */
static nea_tls_cert files(const char *crt, const char *key)
{
    static char c[128], k[128];
    nea_tls_cert t = {0};
    path_of(c, sizeof(c), crt);
    path_of(k, sizeof(k), key);
    t.cert_file = c;
    t.key_file = k;
    return t;
}

/* --- The harness server -------------------------------------------------------------- */

#define SLOTS 8
#define BLOCKS (SLOTS + 2)
#define BLOCK_BYTES 20480 /* a multiple of the page size, >= nea__tls_records_size() */
#define STATE_BYTES 8192
#define LOG_MAX 1024
#define BIG_BODY (200 * 1024)

typedef struct tconn {
    uv_tcp_t tcp;
    uv_write_t wreq;
    uv_timer_t timer;
    bool used, reading, writing, ending;
    nea__tls_conn *tls;
    unsigned char *block; /* the record buffers, NULL while parked */
    alignas(16) unsigned char state[STATE_BYTES];
    char req[8192]; /* plaintext received, not yet answered */
    size_t req_len;
    size_t body_left; /* of a request body being read */
    size_t body_got;
    bool responding, flushed, close_after;
    char head[256];
    size_t head_len;
    const char *body;
    size_t body_len, pos; /* response bytes written to the engine */
    size_t wlen;          /* bytes of the write in flight */
    unsigned served;
    int log;
} tconn;

typedef struct tlog {
    bool ended;
    bool opened; /* the handshake completed */
    bool resumed;
    bool parked; /* gave its record buffers back at least once */
    unsigned reason;
    int detail;
    unsigned served;
    char alpn[16];
} tlog;

static struct {
    uv_loop_t loop;
    uv_tcp_t listener;
    int port;
    alignas(16) unsigned char srv_mem[256 * 1024];
    nea__tls_server *srv;
    tconn slots[SLOTS];
    unsigned char *pool[BLOCKS];
    unsigned pool_n;
    tlog log[LOG_MAX];
    unsigned nlog;
    unsigned ended;
    int admit;             /* what the admit hook answers */
    unsigned deadline_ms;  /* handshake deadline; 0 = none */
    unsigned poison;       /* 1: blocks in the pool are inaccessible */
    unsigned end_count_at; /* stop counting heap calls when this many ended */
} H;

/* The record blocks: page-aligned, so a parked block can be made
 * inaccessible (PROT_NONE) - BearSSL is not instrumented by ASan, a fault
 * is what proves it never touches a block it gave back. */
static unsigned char *block_mem;
static char big_body[BIG_BODY];
static const char hello_body[] = "hello\n";

static void pool_put(unsigned char *b)
{
    assert_true(H.pool_n < BLOCKS);
    if (H.poison) {
        memset(b, 0xDB, BLOCK_BYTES);
        assert_int_equal(mprotect(b, BLOCK_BYTES, PROT_NONE), 0);
    }
    H.pool[H.pool_n++] = b;
}

/* FIFO-ish: the block given back longest ago, so an unparked connection
 * gets a different block than it gave back. */
static unsigned char *pool_get(void)
{
    unsigned char *b;
    assert_true(H.pool_n > 0);
    b = H.pool[0];
    memmove(H.pool, H.pool + 1, (H.pool_n - 1) * sizeof(H.pool[0]));
    H.pool_n--;
    assert_int_equal(mprotect(b, BLOCK_BYTES, PROT_READ | PROT_WRITE), 0);
    return b;
}

static int admit_hook(void *data)
{
    (void)data;
    return H.admit;
}

static void on_closed(uv_handle_t *h)
{
    tconn *c = h->data;
    unsigned char *b = nea__tls_conn_end(c->tls);
    if (b != NULL) {
        pool_put(b);
    }
    c->used = false;
    H.ended++;
    if (H.end_count_at != 0 && H.ended >= H.end_count_at) {
        __atomic_store_n(&counting, 0, __ATOMIC_SEQ_CST);
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    tconn *c = h->data;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* Logs how the connection ended and closes it. */
static void finish(tconn *c)
{
    tlog *l = &H.log[c->log];
    unsigned st = nea__tls_status(c->tls);
    const char *alpn = nea__tls_alpn(c->tls);
    if (c->ending) {
        return;
    }
    c->ending = true;
    l->ended = true;
    l->reason = nea__tls_reason_of(c->tls);
    l->detail = nea__tls_detail(c->tls);
    l->resumed = nea__tls_resumed(c->tls);
    l->served = c->served;
    l->opened = l->opened || (st & (NEA__TLS_OPEN | NEA__TLS_CLOSED)) != 0;
    snprintf(l->alpn, sizeof(l->alpn), "%s", alpn != NULL ? alpn : "");
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

static bool head_complete(tconn *c, size_t *head_end)
{
    for (size_t i = 0; i + 3 < c->req_len; i++) {
        if (memcmp(c->req + i, "\r\n\r\n", 4) == 0) {
            *head_end = i + 4;
            return true;
        }
    }
    return false;
}

/* Value of a header in the head (case-insensitive name), or NULL. */
static const char *header(const char *head, size_t len, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i + n < len; i++) {
        if ((i == 0 || head[i - 1] == '\n') && strncasecmp(head + i, name, n) == 0 &&
            head[i + n] == ':') {
            return head + i + n + 1;
        }
    }
    return NULL;
}

/* Starts the response to the head at the start of req, once any body is in. */
static void start_response(tconn *c, size_t head_end)
{
    const char *cl = header(c->req, head_end, "Content-Length");
    const char *conn = header(c->req, head_end, "Connection");
    bool post = strncmp(c->req, "POST ", 5) == 0;

    c->close_after = conn != NULL && strncasecmp(conn + strspn(conn, " "), "close", 5) == 0;
    c->body = hello_body;
    c->body_len = sizeof(hello_body) - 1;
    if (strncmp(c->req, "GET /big ", 9) == 0) {
        c->body = big_body;
        c->body_len = BIG_BODY;
    }
    if (post && cl != NULL) {
        c->body_left = strtoul(cl, NULL, 10);
        c->body_got = 0;
    }
    memmove(c->req, c->req + head_end, c->req_len - head_end);
    c->req_len -= head_end;
    c->responding = true;
    c->flushed = false;
    c->pos = 0;
}

/* Takes plaintext from the engine: request heads, then bodies. */
static void take_plaintext(tconn *c)
{
    size_t n, take;
    const unsigned char *p;
    while ((p = nea__tls_read_buf(c->tls, &n)) != NULL) {
        take = sizeof(c->req) - c->req_len < n ? sizeof(c->req) - c->req_len : n;
        if (take == 0) {
            return; /* the harness's buffer is full: the engine holds the rest */
        }
        memcpy(c->req + c->req_len, p, take);
        c->req_len += take;
        nea__tls_read_ack(c->tls, take);
    }
}

/* Counts body bytes held in req; returns true once the body is complete. */
static bool body_done(tconn *c)
{
    size_t take = c->body_left < c->req_len ? c->body_left : c->req_len;
    c->body_left -= take;
    c->body_got += take;
    memmove(c->req, c->req + take, c->req_len - take);
    c->req_len -= take;
    return c->body_left == 0;
}

/* Writes as much of the response into the engine as fits. */
static void produce(tconn *c)
{
    size_t total = c->head_len + c->body_len;
    while (c->pos < total) {
        const char *src =
            c->pos < c->head_len ? c->head + c->pos : c->body + (c->pos - c->head_len);
        size_t left = c->pos < c->head_len ? c->head_len - c->pos : total - c->pos;
        size_t w = nea__tls_write(c->tls, src, left);
        if (w == 0) {
            return;
        }
        c->pos += w;
    }
    if (!c->flushed) {
        nea__tls_flush(c->tls);
        c->flushed = true;
    }
}

static void pump(tconn *c);

static void on_write(uv_write_t *req, int status)
{
    tconn *c = req->data;
    c->writing = false;
    if (c->ending) {
        return;
    }
    if (status < 0) {
        nea__tls_eof(c->tls);
        finish(c);
        return;
    }
    nea__tls_send_ack(c->tls, c->wlen);
    pump(c);
}

/* Sends what the engine sealed: try_write first, uv_write for the rest. */
static bool send_out(tconn *c)
{
    size_t n;
    const unsigned char *p = nea__tls_send_buf(c->tls, &n);
    uv_buf_t b;
    int r;
    if (p == NULL || c->writing) {
        return false;
    }
    b = uv_buf_init((char *)(uintptr_t)p, (unsigned)n);
    r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (r > 0) {
        nea__tls_send_ack(c->tls, (size_t)r);
        return true;
    }
    if (r != UV_EAGAIN) {
        nea__tls_eof(c->tls);
        return false;
    }
    c->wlen = n;
    c->writing = true;
    c->wreq.data = c;
    assert_int_equal(uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write), 0);
    return false;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    tconn *c = h->data;
    size_t n;
    unsigned char *p;
    (void)hint;
    if ((nea__tls_status(c->tls) & NEA__TLS_PARKED) != 0) {
        c->block = pool_get();
        nea__tls_unpark(c->tls, c->block);
    }
    p = nea__tls_recv_buf(c->tls, &n);
    *buf = uv_buf_init((char *)p, (unsigned)n);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    tconn *c = s->data;
    (void)buf;
    if (c->ending) {
        return;
    }
    if (nread > 0) {
        nea__tls_recv_ack(c->tls, (size_t)nread);
    } else if (nread == UV_ENOBUFS) {
        uv_read_stop(s);
        c->reading = false;
    } else if (nread < 0) {
        nea__tls_eof(c->tls);
    }
    pump(c);
}

static void pump(tconn *c)
{
    unsigned st;
    bool progress = true;
    size_t head_end;

    while (progress && !c->ending) {
        progress = false;
        st = nea__tls_status(c->tls);
        if ((st & (NEA__TLS_CLOSED | NEA__TLS_FAILED)) != 0) {
            finish(c);
            return;
        }
        if ((st & NEA__TLS_OPEN) != 0) {
            H.log[c->log].opened = true;
            uv_timer_stop(&c->timer);
        }
        take_plaintext(c);
        if (!c->responding && c->body_left == 0 && head_complete(c, &head_end)) {
            start_response(c, head_end);
        }
        if (c->responding && c->body_left > 0) {
            size_t before = c->req_len;
            (void)body_done(c);
            progress |= c->req_len != before;
        }
        if (c->responding && c->body_left == 0) {
            if (c->pos == 0 && c->head_len == 0) {
                if (c->body_got > 0) {
                    static char got[32];
                    snprintf(got, sizeof(got), "got %zu\n", c->body_got);
                    c->body = got;
                    c->body_len = strlen(got);
                }
                c->head_len = (size_t)snprintf(
                    c->head, sizeof(c->head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n%s\r\n",
                    c->body_len, c->close_after ? "Connection: close\r\n" : "");
            }
            size_t before = c->pos;
            produce(c);
            progress |= c->pos != before;
        }
        progress |= send_out(c);
        st = nea__tls_status(c->tls);
        if (c->responding && c->flushed && (st & NEA__TLS_SEND) == 0 && !c->writing) {
            c->responding = false;
            c->head_len = 0;
            c->body_got = 0;
            c->served++;
            progress = true;
            if (c->close_after) {
                nea__tls_close(c->tls);
            }
        }
    }
    if (c->ending) {
        return;
    }
    st = nea__tls_status(c->tls);
    if (c->close_after && !c->responding && (st & NEA__TLS_SEND) == 0 && !c->writing) {
        finish(c); /* close_notify sent */
        return;
    }
    if ((st & NEA__TLS_EOF) != 0 && !c->responding && (st & (NEA__TLS_READ | NEA__TLS_SEND)) == 0 &&
        !c->writing) {
        finish(c); /* the client half-closed and everything it asked is answered */
        return;
    }
    if ((st & (NEA__TLS_RECV | NEA__TLS_PARKED)) != 0 && !c->reading) {
        assert_int_equal(uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read), 0);
        c->reading = true;
    }
    if ((st & NEA__TLS_OPEN) != 0 && (st & (NEA__TLS_READ | NEA__TLS_SEND)) == 0 &&
        !c->responding && c->req_len == 0 && !c->writing && c->block != NULL) {
        unsigned char *b = nea__tls_park(c->tls);
        if (b != NULL) {
            assert_ptr_equal(b, c->block);
            c->block = NULL;
            pool_put(b);
            H.log[c->log].parked = true;
        }
    }
}

static void on_deadline(uv_timer_t *t)
{
    tconn *c = t->data;
    if ((nea__tls_status(c->tls) & NEA__TLS_HANDSHAKE) != 0) {
        nea__tls_abort(c->tls, NEA__TLS_R_TIMEOUT);
        finish(c);
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    tconn *c = NULL;
    assert_int_equal(status, 0);
    for (unsigned i = 0; i < SLOTS; i++) {
        if (!H.slots[i].used) {
            c = &H.slots[i];
            break;
        }
    }
    assert_non_null(c);
    assert_true(H.nlog < LOG_MAX);
    memset(c, 0, offsetof(tconn, state));
    c->used = true;
    c->log = (int)H.nlog++;
    memset(&H.log[c->log], 0, sizeof(H.log[0]));
    c->req_len = 0;
    c->body_left = 0;
    c->responding = false;
    c->served = 0;
    c->head_len = 0;
    assert_int_equal(uv_tcp_init(&H.loop, &c->tcp), 0);
    assert_int_equal(uv_timer_init(&H.loop, &c->timer), 0);
    c->tcp.data = c;
    c->timer.data = c;
    assert_int_equal(uv_accept(server, (uv_stream_t *)&c->tcp), 0);
    c->block = pool_get();
    c->tls = nea__tls_conn_start(c->state, H.srv, c->block, c);
    if (H.deadline_ms > 0) {
        uv_timer_start(&c->timer, on_deadline, H.deadline_ms, 0);
    }
    pump(c);
}

static void harness_start(const nea_tls_cert *cert, unsigned sessions)
{
    struct sockaddr_in a;
    struct sockaddr_storage got;
    int len = sizeof(got);
    char err[256] = "";

    memset(H.log, 0, sizeof(H.log));
    H.nlog = H.ended = 0;
    H.admit = 1;
    H.deadline_ms = 0;
    H.end_count_at = 0;
    H.poison = 1;
    assert_true(nea__tls_conn_size() <= STATE_BYTES);
    assert_true(nea__tls_records_size() <= BLOCK_BYTES);
    assert_true(nea__tls_server_size(sessions) <= sizeof(H.srv_mem));
    if (block_mem == NULL) {
        void *m = mmap(NULL, (size_t)BLOCKS * BLOCK_BYTES, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        assert_true(m != MAP_FAILED);
        block_mem = m;
    }
    assert_int_equal(mprotect(block_mem, (size_t)BLOCKS * BLOCK_BYTES, PROT_READ | PROT_WRITE), 0);
    H.pool_n = 0;
    for (unsigned i = 0; i < BLOCKS; i++) {
        pool_put(block_mem + (size_t)i * BLOCK_BYTES);
    }
    memset(big_body, 'x', sizeof(big_body));
    assert_int_equal(
        nea__tls_server_init(H.srv_mem, sessions, cert, admit_hook, &H.srv, err, sizeof(err)), 0);
    assert_int_equal(uv_loop_init(&H.loop), 0);
    assert_int_equal(uv_tcp_init(&H.loop, &H.listener), 0);
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&H.listener, (const struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&H.listener, 64, on_connection), 0);
    assert_int_equal(uv_tcp_getsockname(&H.listener, (struct sockaddr *)&got, &len), 0);
    H.port = ntohs(((struct sockaddr_in *)&got)->sin_port);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) {
        uv_close(h, NULL);
    }
}

/* Ends every connection, closes the loop and the server; every record
 * block must be back in the pool and only the current certificate left. */
static void harness_stop(void)
{
    for (unsigned i = 0; i < SLOTS; i++) {
        if (H.slots[i].used && !H.slots[i].ending) {
            nea__tls_eof(H.slots[i].tls);
            finish(&H.slots[i]);
        }
    }
    uv_close((uv_handle_t *)&H.listener, NULL);
    uv_run(&H.loop, UV_RUN_DEFAULT);
    uv_walk(&H.loop, close_walk, NULL);
    uv_run(&H.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&H.loop), 0);
    assert_int_equal(H.pool_n, BLOCKS);
    assert_int_equal(nea__tls_server_certs(H.srv, NULL), 1);
    nea__tls_server_destroy(H.srv);
}

/* Runs the loop until n connections ended (or the deadline). */
static void wait_ended(unsigned n)
{
    uint64_t end = s_now_ms() + S_DEADLINE_MS;
    while (H.ended < n && s_now_ms() < end) {
        s_step(&H.loop, 50);
    }
    if (H.ended < n) {
        fail_msg("%u connections ended, %u expected; last log reason %u", H.ended, n,
                 H.nlog > 0 ? H.log[H.nlog - 1].reason : 0);
    }
}

/* --- Clients: child processes on the same loop --------------------------------------- */

typedef struct client {
    uv_process_t proc;
    uv_pipe_t in, out;
    uv_write_t wreq;
    char output[65536];
    size_t len;
    bool exited, eof;
    int64_t status;
    /* called with the output so far whenever some arrives; may write stdin */
    void (*on_output)(struct client *cl);
    const char *stdin_text;
} client;

static void client_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    client *cl = h->data;
    (void)hint;
    *buf = uv_buf_init(cl->output + cl->len, (unsigned)(sizeof(cl->output) - 1 - cl->len));
}

static void client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    client *cl = s->data;
    (void)buf;
    if (n > 0) {
        cl->len += (size_t)n;
        cl->output[cl->len] = '\0';
        if (cl->on_output != NULL) {
            cl->on_output(cl);
        }
    } else if (n < 0) {
        cl->eof = true;
        uv_close((uv_handle_t *)s, NULL);
    }
}

static void client_exit(uv_process_t *p, int64_t status, int sig)
{
    client *cl = p->data;
    cl->exited = true;
    cl->status = sig != 0 ? 128 + sig : status;
    uv_close((uv_handle_t *)p, NULL);
}

/* Writes text to the client's stdin (the write stays in flight briefly:
 * text must outlive it). */
static void client_say(client *cl, const char *text)
{
    uv_buf_t b = uv_buf_init((char *)(uintptr_t)text, (unsigned)strlen(text));
    assert_int_equal(uv_write(&cl->wreq, (uv_stream_t *)&cl->in, &b, 1, NULL), 0);
}

/* Runs argv (a shell that runs the command with stderr into stdout) with
 * that output captured (on H.loop, which serves the
 * TLS connections meanwhile) until it exits and its output ends; kills it
 * at the deadline. Returns its exit status. */
static int64_t client_run(client *cl, char **argv)
{
    uv_process_options_t o = {0};
    uv_stdio_container_t io[3];
    uint64_t end = s_now_ms() + 3 * S_DEADLINE_MS;

    cl->len = 0;
    cl->output[0] = '\0';
    cl->exited = cl->eof = false;
    assert_int_equal(uv_pipe_init(&H.loop, &cl->in, 0), 0);
    assert_int_equal(uv_pipe_init(&H.loop, &cl->out, 0), 0);
    cl->in.data = cl->out.data = cl->proc.data = cl;
    io[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
    io[0].data.stream = (uv_stream_t *)&cl->in;
    io[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    io[1].data.stream = (uv_stream_t *)&cl->out;
    io[2].flags = UV_INHERIT_FD; /* the shell's own complaints; the command's go to stdout */
    io[2].data.fd = 2;
    o.file = argv[0];
    o.args = argv;
    o.stdio = io;
    o.stdio_count = 3;
    o.exit_cb = client_exit;
    assert_int_equal(uv_spawn(&H.loop, &cl->proc, &o), 0);
    assert_int_equal(uv_read_start((uv_stream_t *)&cl->out, client_alloc, client_read), 0);
    if (cl->stdin_text != NULL) {
        client_say(cl, cl->stdin_text);
    }
    if (cl->on_output == NULL) {
        uv_close((uv_handle_t *)&cl->in, NULL); /* EOF on its stdin once written */
    }
    while (!(cl->exited && cl->eof) && s_now_ms() < end) {
        s_step(&H.loop, 50);
    }
    if (!cl->exited) {
        uv_process_kill(&cl->proc, SIGKILL);
        while (!cl->exited) {
            s_step(&H.loop, 50);
        }
        fail_msg("client %s did not finish in time; output:\n%s", argv[0], cl->output);
    }
    if (!uv_is_closing((uv_handle_t *)&cl->in)) {
        uv_close((uv_handle_t *)&cl->in, NULL);
    }
    s_step(&H.loop, 0);
    return cl->status;
}

static char port_str[16];

static const char *port_arg(void)
{
    snprintf(port_str, sizeof(port_str), "%d", H.port);
    return port_str;
}

/* The python3 client, one mode per argv[1]:
 *   get PORT [VERSION]  one GET; prints version, cipher, ALPN, status, body,
 *                       the certificate's SHA-256
 *   tls13 PORT          TLS 1.3 only: prints "refused REASON" or "connected"
 *   reload PORT         A: handshake + GET, prints "A fp status", waits for
 *                       a line; then GET on A again ("A2 status") and a new
 *                       connection B ("B fp status")
 *   park PORT           three GETs on one connection, a line from stdin
 *                       before each of the last two
 *   loop PORT N         prints "ready", waits for a line, then N
 *                       connections, one GET each, every other one resuming
 *                       the previous session; prints "done N RESUMED"
 *   raw PORT HEX        handshake over a plain socket, then sends HEX as
 *                       raw bytes; prints "closed", "reset" or "data"
 *   halfclose PORT      handshake over a plain socket, one GET, then
 *                       shutdown(SHUT_WR); prints the response's first line
 *                       and whether close_notify came */
static const char PY[] =
    "import hashlib, socket, ssl, sys\n"
    "mode, port = sys.argv[1], int(sys.argv[2])\n"
    "def ctx(v=ssl.TLSVersion.TLSv1_2):\n"
    "    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\n"
    "    c.check_hostname = False\n"
    "    c.verify_mode = ssl.CERT_NONE\n"
    "    c.minimum_version = v\n"
    "    c.maximum_version = v\n"
    "    c.set_alpn_protocols(['http/1.1'])\n"
    "    return c\n"
    "def recv(s):\n"
    "    d = s.recv(65536)\n"
    "    if not d:\n"
    "        raise EOFError('closed')\n"
    "    return d\n"
    "def get(s, path='/'):\n"
    "    s.sendall(('GET %s HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' % path).encode())\n"
    "    data = b''\n"
    "    while b'\\r\\n\\r\\n' not in data:\n"
    "        data += recv(s)\n"
    "    head, _, body = data.partition(b'\\r\\n\\r\\n')\n"
    "    n = [int(l.split(b':')[1]) for l in head.split(b'\\r\\n')\n"
    "         if l.lower().startswith(b'content-length:')][0]\n"
    "    while len(body) < n:\n"
    "        body += recv(s)\n"
    "    return head.split(b'\\r\\n')[0].decode(), body\n"
    "def conn(c, sess=None):\n"
    "    s = socket.create_connection(('127.0.0.1', port), timeout=10)\n"
    "    return c.wrap_socket(s, session=sess)\n"
    "def fp(s):\n"
    "    return hashlib.sha256(s.getpeercert(True)).hexdigest()\n"
    "if mode == 'get':\n"
    "    s = conn(ctx())\n"
    "    st, body = get(s)\n"
    "    print(s.version(), s.cipher()[0], s.selected_alpn_protocol(), st.split()[1],\n"
    "          body.decode().strip(), fp(s))\n"
    "elif mode == 'tls13':\n"
    "    try:\n"
    "        s = conn(ctx(ssl.TLSVersion.TLSv1_3))\n"
    "        print('connected', s.version())\n"
    "    except ssl.SSLError as e:\n"
    "        print('refused', e.reason)\n"
    "elif mode == 'reload':\n"
    "    a = conn(ctx())\n"
    "    print('A', fp(a), get(a)[0].split()[1], flush=True)\n"
    "    sys.stdin.readline()\n"
    "    print('A2', get(a)[0].split()[1])\n"
    "    b = conn(ctx())\n"
    "    print('B', fp(b), get(b)[0].split()[1])\n"
    "elif mode == 'park':\n"
    "    s = conn(ctx())\n"
    "    for i in range(3):\n"
    "        if i > 0:\n"
    "            sys.stdin.readline()\n"
    "        print('got', i, get(s)[0].split()[1], flush=True)\n"
    "elif mode == 'loop':\n"
    "    n, c, sess, resumed = int(sys.argv[3]), ctx(), None, 0\n"
    "    print('ready', flush=True)\n"
    "    sys.stdin.readline()\n"
    "    for i in range(n):\n"
    "        s = conn(c, sess if i % 2 else None)\n"
    "        get(s)\n"
    "        resumed += s.session_reused\n"
    "        sess = s.session\n"
    "        s.close()\n"
    "    print('done', n, resumed)\n"
    "else:\n"
    "    raw = socket.create_connection(('127.0.0.1', port), timeout=10)\n"
    "    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()\n"
    "    obj = ctx().wrap_bio(inc, out)\n"
    "    while True:\n"
    "        try:\n"
    "            obj.do_handshake()\n"
    "            break\n"
    "        except ssl.SSLWantReadError:\n"
    "            raw.sendall(out.read())\n"
    "            inc.write(recv(raw))\n"
    "    raw.sendall(out.read())\n"
    "if mode == 'halfclose':\n"
    "    obj.write(b'GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\n"
    "    raw.sendall(out.read())\n"
    "    raw.shutdown(socket.SHUT_WR)\n"
    "    while True:\n"
    "        d = raw.recv(65536)\n"
    "        if not d:\n"
    "            break\n"
    "        inc.write(d)\n"
    "    inc.write_eof()\n"
    "    text = b''\n"
    "    try:\n"
    "        while True:\n"
    "            d = obj.read(65536)\n"
    "            if not d:\n"
    "                text += b' eof'\n"
    "                break\n"
    "            text += d\n"
    "    except ssl.SSLZeroReturnError:\n"
    "        text += b' close_notify'\n"
    "    except ssl.SSLError as e:\n"
    "        text += (' ' + e.reason).encode()\n"
    "    print(text.split(b'\\r\\n')[0].decode(), text.split()[-1].decode())\n"
    "elif mode == 'raw':\n"
    "    raw.sendall(bytes.fromhex(sys.argv[3]))\n"
    "    try:\n"
    "        print('closed' if raw.recv(100) == b'' else 'data')\n"
    "    except ConnectionResetError:\n"
    "        print('reset')\n";

/* argv for /bin/sh running argv0 and args with its stderr in its stdout. */
#define SHELL_2TO1 "/bin/sh", "-c", "exec \"$0\" \"$@\" 2>&1"

static int64_t python(client *cl, const char *mode, const char *extra)
{
    char *argv[] = {SHELL_2TO1,   "/usr/bin/python3", "-c",          (char *)PY,
                    (char *)mode, (char *)port_arg(), (char *)extra, NULL};
    return client_run(cl, argv);
}

static int64_t curl(client *cl, const char *args)
{
    char cmd[1024];
    char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    snprintf(cmd, sizeof(cmd), "exec curl -sSk --http1.1 --max-time 10 %s 2>&1", args);
    return client_run(cl, argv);
}

static int64_t s_client(client *cl, const char *args)
{
    char cmd[1024];
    char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    snprintf(cmd, sizeof(cmd), "exec openssl s_client -connect 127.0.0.1:%d -tls1_2 %s 2>&1",
             H.port, args);
    return client_run(cl, argv);
}

static client cl;

/* --- Tests: real clients -------------------------------------------------------------- */

/* The figures the plan prints: a connection's state and record buffers, and
 * the active total inside 24 KiB. */
static void test_sizes(void **state)
{
    (void)state;
    size_t st = nea__tls_conn_size(), rec = nea__tls_records_size();
    print_message("tls: state %zu B, records %zu B, active %zu B, session cache 1024: %zu B\n", st,
                  rec, st + rec, nea__tls_server_size(1024));
    assert_int_equal(rec, NEA__ROUND_UP(5 + 16384 + 24, NEA__ALIGN) +
                              NEA__ROUND_UP(2048 + 85, NEA__ALIGN));
    assert_true(st + rec <= 24 * 1024);
    assert_true(st >= 4096 && st <= 4608);
    assert_int_equal(nea__tls_server_size(1024) - nea__tls_server_size(0), 102400);
}

/* curl: two requests on one connection, ALPN http/1.1, TLS 1.2; then a
 * 200 KiB response (many records out) and a 100 KiB upload (full 16 KiB
 * records in). */
static void test_curl(void **state)
{
    nea_tls_cert cert = files("one.crt", "one.key");
    char args[512];
    (void)state;
    harness_start(&cert, 64);

    snprintf(args, sizeof(args),
             "-v -o /dev/null -o /dev/null https://127.0.0.1:%d/a https://127.0.0.1:%d/b", H.port,
             H.port);
    assert_int_equal(curl(&cl, args), 0);
    assert_non_null(strstr(cl.output, "ALPN: server accepted http/1.1"));
    assert_non_null(strstr(cl.output, "SSL connection using TLSv1.2 / ECDHE-ECDSA-AES128-GCM"));
    assert_non_null(strstr(cl.output, "subject: CN=nea-test-one"));
    assert_non_null(strstr(cl.output, "Re-using existing connection"));
    wait_ended(1);
    assert_int_equal(H.nlog, 1);
    assert_int_equal(H.log[0].served, 2);
    assert_string_equal(H.log[0].alpn, "http/1.1");
    assert_false(H.log[0].resumed);
    assert_int_equal(H.log[0].reason, NEA__TLS_R_NONE);

    snprintf(args, sizeof(args), "https://127.0.0.1:%d/a https://127.0.0.1:%d/b", H.port, H.port);
    assert_int_equal(curl(&cl, args), 0);
    assert_string_equal(cl.output, "hello\nhello\n");
    wait_ended(2);

    snprintf(args, sizeof(args), "-o /dev/null -w '%%{size_download}' https://127.0.0.1:%d/big",
             H.port);
    assert_int_equal(curl(&cl, args), 0);
    assert_string_equal(cl.output, "204800");

    snprintf(args, sizeof(args), "-H 'Expect:' --data-binary @%s/up.bin https://127.0.0.1:%d/up",
             dir, H.port);
    {
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "head -c 102400 /dev/zero > %s/up.bin", dir);
        assert_int_equal(system(cmd), 0);
    }
    assert_int_equal(curl(&cl, args), 0);
    assert_string_equal(cl.output, "got 102400\n");
    wait_ended(4);
    harness_stop();
}

/* python3 ssl, TLS 1.2 forced: the cipher, ALPN and certificate; TLS 1.3
 * forced: refused (a TLS 1.3-only client offers only TLS 1.3 suites:
 * nothing in common), and the next client is served. */
static void test_python(void **state)
{
    nea_tls_cert cert = files("one.crt", "one.key");
    char want[256];
    (void)state;
    harness_start(&cert, 64);

    assert_int_equal(python(&cl, "get", NULL), 0);
    snprintf(want, sizeof(want), "TLSv1.2 ECDHE-ECDSA-AES128-GCM-SHA256 http/1.1 200 hello %s\n",
             fp_one);
    assert_string_equal(cl.output, want);

    assert_int_equal(python(&cl, "tls13", NULL), 0);
    assert_non_null(strstr(cl.output, "refused"));
    wait_ended(2);
    assert_int_equal(H.log[1].reason, NEA__TLS_R_NO_SHARED);
    assert_false(H.log[1].opened);

    assert_int_equal(python(&cl, "get", NULL), 0);
    assert_non_null(strstr(cl.output, " 200 hello "));
    harness_stop();
}

/* An RSA-2048 certificate: ECDHE-RSA. */
static void test_rsa(void **state)
{
    nea_tls_cert cert = files("rsa.crt", "rsa.key");
    char want[256];
    (void)state;
    harness_start(&cert, 64);
    assert_int_equal(python(&cl, "get", NULL), 0);
    snprintf(want, sizeof(want), "TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256 http/1.1 200 hello %s\n",
             fp_rsa);
    assert_string_equal(cl.output, want);
    harness_stop();
}

/* openssl s_client -sess_out, then -sess_in: the second handshake is
 * resumed (no certificate, no public-key work), on both sides. */
static void test_resumption(void **state)
{
    nea_tls_cert cert = files("one.crt", "one.key");
    char args[256];
    (void)state;
    harness_start(&cert, 64);

    snprintf(args, sizeof(args), "-alpn http/1.1 -sess_out %s/sess.pem", dir);
    cl.stdin_text = "";
    assert_int_equal(s_client(&cl, args), 0);
    assert_non_null(strstr(cl.output, "New, TLSv1.2, Cipher is ECDHE-ECDSA-AES128-GCM-SHA256"));
    assert_non_null(strstr(cl.output, "ALPN protocol: http/1.1"));

    snprintf(args, sizeof(args), "-alpn http/1.1 -sess_in %s/sess.pem", dir);
    assert_int_equal(s_client(&cl, args), 0);
    assert_non_null(strstr(cl.output, "Reused, TLSv1.2, Cipher is ECDHE-ECDSA-AES128-GCM-SHA256"));
    /* A client that offers only h2 gets no ALPN answer; the handshake goes on. */
    assert_int_equal(s_client(&cl, "-alpn h2"), 0);
    assert_non_null(strstr(cl.output, "No ALPN negotiated"));
    assert_non_null(strstr(cl.output, "New, TLSv1.2"));
    cl.stdin_text = NULL;
    wait_ended(3);
    assert_string_equal(H.log[2].alpn, "");
    assert_int_equal(H.log[2].reason, NEA__TLS_R_NONE);
    assert_false(H.log[0].resumed);
    assert_true(H.log[1].resumed);
    assert_true(H.log[1].opened);
    assert_int_equal(H.log[1].reason, NEA__TLS_R_NONE);

    /* Without a cache nothing resumes. */
    harness_stop();
    harness_start(&cert, 0);
    snprintf(args, sizeof(args), "-sess_out %s/sess.pem", dir);
    cl.stdin_text = "";
    assert_int_equal(s_client(&cl, args), 0);
    snprintf(args, sizeof(args), "-sess_in %s/sess.pem", dir);
    assert_int_equal(s_client(&cl, args), 0);
    cl.stdin_text = NULL;
    assert_non_null(strstr(cl.output, "New, TLSv1.2"));
    harness_stop();
}

static const char *reload_cert;

static void reload_when_ready(client *c)
{
    static const char go[] = "go\n";
    if (strstr(c->output, "A ") != NULL && strchr(strstr(c->output, "A "), '\n') != NULL &&
        reload_cert != NULL) {
        char crt[32], key[32];
        nea_tls_cert bad = files("one.crt", "two.key"), next;
        char err[256] = "";
        snprintf(crt, sizeof(crt), "%s.crt", reload_cert);
        snprintf(key, sizeof(key), "%s.key", reload_cert);
        /* A certificate whose key does not match changes nothing. */
        assert_int_equal(nea__tls_server_reload(H.srv, &bad, err, sizeof(err)), NEA_ETLS_CERT);
        assert_non_null(strstr(err, "does not belong"));
        next = files(crt, key);
        assert_int_equal(nea__tls_server_reload(H.srv, &next, err, sizeof(err)), 0);
        /* Connection A's handshake is done: the old certificate is gone. */
        assert_int_equal(nea__tls_server_certs(H.srv, NULL), 1);
        reload_cert = NULL;
        client_say(c, go);
    }
}

/* Reload: an established connection carries on, the next handshake shows
 * the new certificate. */
static void test_reload(void **state)
{
    nea_tls_cert cert = files("one.crt", "one.key");
    char want[512];
    size_t bytes;
    (void)state;
    harness_start(&cert, 64);
    assert_int_equal(nea__tls_server_certs(H.srv, &bytes), 1);
    print_message("tls: one EC P-256 certificate and key take %zu heap bytes\n", bytes);
    assert_true(bytes > 300 && bytes < 1024);

    reload_cert = "two";
    cl.on_output = reload_when_ready;
    assert_int_equal(python(&cl, "reload", NULL), 0);
    cl.on_output = NULL;
    assert_null(reload_cert);
    snprintf(want, sizeof(want), "A %s 200\nA2 200\nB %s 200\n", fp_one, fp_two);
    assert_string_equal(cl.output, want);
    harness_stop();
}

/* A handshake in progress keeps the certificate it chose: reloading while
 * it waits for the client's second flight leaves two certificates alive
 * until it ends. Driven by hand: the client's first flight is a real
 * ClientHello built here. */
static size_t client_hello(unsigned char *out, size_t cap, uint16_t version);

/* The bytes of a minimal TLS 1.2 ClientHello (one suite, x25519, ECDSA). */
static size_t client_hello(unsigned char *out, size_t cap, uint16_t version)
{
    static const unsigned char ext[] = {
        0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x1d, /* supported_groups: x25519 */
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00,             /* ec_point_formats: uncompressed */
        0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04, 0x03, /* signature_algorithms: ecdsa+sha256 */
    };
    unsigned char body[256];
    size_t n = 0, total;
    body[n++] = 1; /* client_hello */
    n += 3;        /* length, below */
    body[n++] = (unsigned char)(version >> 8);
    body[n++] = (unsigned char)version;
    for (int i = 0; i < 32; i++) {
        body[n++] = (unsigned char)(i * 7);
    }
    body[n++] = 0; /* session id */
    body[n++] = 0; /* cipher suites: 2 bytes */
    body[n++] = 2;
    body[n++] = 0xc0; /* ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 */
    body[n++] = 0x2b;
    body[n++] = 1; /* compression: null */
    body[n++] = 0;
    body[n++] = 0;
    body[n++] = (unsigned char)sizeof(ext);
    memcpy(body + n, ext, sizeof(ext));
    n += sizeof(ext);
    body[1] = 0;
    body[2] = (unsigned char)((n - 4) >> 8);
    body[3] = (unsigned char)(n - 4);
    total = 5 + n;
    assert_true(total <= cap);
    out[0] = 22;
    out[1] = 3;
    out[2] = 1;
    out[3] = (unsigned char)(n >> 8);
    out[4] = (unsigned char)n;
    memcpy(out + 5, body, n);
    return total;
}

static void test_reload_mid_handshake(void **state)
{
    nea_tls_cert cert = files("one.crt", "one.key"), next = files("two.crt", "two.key");
    unsigned char hello[512], reply[4096];
    size_t n = client_hello(hello, sizeof(hello), 0x0303);
    char err[256];
    int fd;
    ssize_t got = 0;
    uint64_t end;
    (void)state;
    harness_start(&cert, 64);

    fd = s_connect(&H.loop, H.port);
    s_send(&H.loop, fd, hello, n);
    /* The server's first flight (ServerHello ... ServerHelloDone). */
    end = s_now_ms() + S_DEADLINE_MS;
    while (got <= 0 && s_now_ms() < end) {
        s_step(&H.loop, 20);
        got = recv(fd, reply, sizeof(reply), 0);
    }
    assert_true(got > 5);
    assert_int_equal(reply[0], 22);
    assert_int_equal(reply[5], 2); /* ServerHello */
    assert_int_equal(nea__tls_server_certs(H.srv, NULL), 1);
    assert_int_equal(nea__tls_server_reload(H.srv, &next, err, sizeof(err)), 0);
    assert_int_equal(nea__tls_server_certs(H.srv, NULL), 2); /* the handshake holds one */
    close(fd);
    wait_ended(1);
    assert_int_equal(H.log[0].reason, NEA__TLS_R_TRUNCATED);
    assert_int_equal(nea__tls_server_certs(H.srv, NULL), 1);
    harness_stop();
}

/* Each hostile input fails its own connection with its reason; the server
 * goes on serving. */
static void expect_failure(const void *bytes, size_t n, bool shut, unsigned reason)
{
    unsigned before = H.nlog, target = H.ended + 1;
    int fd = s_connect(&H.loop, H.port);
    s_send(&H.loop, fd, bytes, n);
    if (shut) {
        shutdown(fd, SHUT_WR);
    }
    wait_ended(target);
    assert_true(s_closed(&H.loop, fd, S_DEADLINE_MS));
    close(fd);
    assert_int_equal(H.nlog, before + 1);
    assert_int_equal(H.log[before].reason, reason);
}

static void test_hostile(void **state)
{
    nea_tls_cert cert = files("one.crt", "one.key");
    static const char plain[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    static const unsigned char garbage[] = {0x00, 0x01, 0x02, 0x03, 0xff, 0xfe};
    static const unsigned char sslv2[] = {0x80, 0x2e, 0x01, 0x00, 0x02};
    static const unsigned char huge[] = {22, 3, 1, 0x48, 0x00}; /* 18432-byte record */
    static const unsigned char heartbeat[] = {24, 3, 3, 0, 3, 1, 0, 0};
    unsigned char hello[512];
    size_t n = client_hello(hello, sizeof(hello), 0x0303);
    char hex[128];
    unsigned target;
    (void)state;
    harness_start(&cert, 64);

    expect_failure(plain, sizeof(plain) - 1, false, NEA__TLS_R_PLAIN_HTTP);
    expect_failure(garbage, sizeof(garbage), false, NEA__TLS_R_NOT_TLS);
    expect_failure(sslv2, sizeof(sslv2), false, NEA__TLS_R_VERSION);
    expect_failure(huge, sizeof(huge), false, NEA__TLS_R_RECORD_TOO_LARGE);
    /* A record of an unknown type (heartbeat) after a good ClientHello. */
    {
        unsigned char then[600];
        memcpy(then, hello, n);
        memcpy(then + n, heartbeat, sizeof(heartbeat));
        expect_failure(then, n + sizeof(heartbeat), false, NEA__TLS_R_BAD_RECORD);
    }
    /* A ClientHello cut short, then EOF. */
    expect_failure(hello, 40, true, NEA__TLS_R_TRUNCATED);
    /* A ClientHello whose handshake length runs past its record, then
     * garbage where the next record header should be. */
    {
        unsigned char bad[512];
        memcpy(bad, hello, n);
        bad[3] = 0;
        bad[4] = 20; /* the record ends inside the hello */
        bad[25] = 0x99;
        expect_failure(bad, n, false, NEA__TLS_R_NOT_TLS);
    }
    /* No suite in common: only TLS_RSA_WITH_AES_128_CBC_SHA offered. */
    {
        unsigned char only_cbc[512];
        memcpy(only_cbc, hello, n);
        only_cbc[5 + 4 + 2 + 32 + 1 + 2] = 0x00;
        only_cbc[5 + 4 + 2 + 32 + 1 + 3] = 0x2f;
        expect_failure(only_cbc, n, false, NEA__TLS_R_NO_SHARED);
    }
    /* After a real handshake: an encrypted record longer than any offered
     * suite can produce, and one that fails authentication. */
    snprintf(hex, sizeof(hex), "1703034020%s", "00000000");
    target = H.ended + 1;
    assert_int_equal(python(&cl, "raw", hex), 0);
    wait_ended(target);
    assert_int_equal(H.log[H.nlog - 1].reason, NEA__TLS_R_RECORD_TOO_LARGE);
    assert_true(H.log[H.nlog - 1].opened);
    assert_true(strstr(cl.output, "closed") != NULL || strstr(cl.output, "reset") != NULL);

    snprintf(hex, sizeof(hex), "1703030020%s",
             "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
    target = H.ended + 1;
    assert_int_equal(python(&cl, "raw", hex), 0);
    wait_ended(target);
    assert_int_equal(H.log[H.nlog - 1].reason, NEA__TLS_R_BAD_RECORD);

    /* A renegotiation: openssl s_client's "R" command. */
    cl.stdin_text = "R\n";
    target = H.ended + 1;
    s_client(&cl, "");
    cl.stdin_text = NULL;
    wait_ended(target);
    assert_int_equal(H.log[H.nlog - 1].reason, NEA__TLS_R_RENEGOTIATION);
    assert_true(H.log[H.nlog - 1].opened);

    /* And the next client is served. */
    assert_int_equal(python(&cl, "get", NULL), 0);
    assert_non_null(strstr(cl.output, " 200 hello "));
    harness_stop();
}

/* A client that sends a request and half-closes gets its answer: the
 * engine stays open for it after the EOF (NEA__TLS_EOF), and the harness
 * closes once it has answered. */
static void test_half_close(void **state)
{
    nea_tls_cert cert = files("one.crt", "one.key");
    (void)state;
    harness_start(&cert, 64);
    if (python(&cl, "halfclose", NULL) != 0) {
        fail_msg("python: %s", cl.output);
    }
    assert_non_null(strstr(cl.output, "HTTP/1.1 200 OK"));
    wait_ended(1);
    assert_int_equal(H.log[0].served, 1);
    assert_int_equal(H.log[0].reason, NEA__TLS_R_NONE);
    harness_stop();
}

/* The same, in memory and in a fixed order: a request arrives, the stream
 * ends before the server reads it, and the request can still be read and
 * answered. The client is BearSSL in this process, trusting the
 * certificate's key as known. */
static br_ssl_client_context mem_client;
static br_x509_minimal_context mem_minimal;
static br_x509_knownkey_context mem_known;
static unsigned char mem_client_buf[BR_SSL_BUFSIZE_BIDI];

/* Moves ciphertext both ways until neither side moves. */
static void mem_shuttle(nea__tls_conn *c)
{
    bool moved = true;
    while (moved) {
        const unsigned char *p;
        unsigned char *q;
        size_t n, room;
        moved = false;
        p = nea__tls_send_buf(c, &n);
        q = br_ssl_engine_recvrec_buf(&mem_client.eng, &room);
        if (p != NULL && q != NULL) {
            n = n < room ? n : room;
            memcpy(q, p, n);
            br_ssl_engine_recvrec_ack(&mem_client.eng, n);
            nea__tls_send_ack(c, n);
            moved = true;
        }
        p = br_ssl_engine_sendrec_buf(&mem_client.eng, &n);
        if (p != NULL && (n = nea__tls_feed(c, p, n)) > 0) {
            br_ssl_engine_sendrec_ack(&mem_client.eng, n);
            moved = true;
        }
    }
}

static void test_half_close_in_memory(void **state)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    static const char *alpn[] = {"http/1.1"};
    static alignas(16) unsigned char srv_mem[4096], conn_mem[STATE_BYTES], rec[BLOCK_BYTES];
    nea_tls_cert cert = files("one.crt", "one.key");
    nea__tls_server *srv;
    nea__tls_conn *c;
    br_x509_decoder_context xd;
    unsigned char der[2048], *q;
    size_t der_len = 0, n;
    char err[512], path[128];
    const unsigned char *p;
    FILE *f;
    (void)state;

    /* The certificate's key, for the client. */
    path_of(path, sizeof(path), "one.crt");
    snprintf(err, sizeof(err), "openssl x509 -in %s -outform DER -out %s.der", path, path);
    assert_int_equal(system(err), 0);
    snprintf(err, sizeof(err), "%s.der", path);
    f = fopen(err, "rb");
    assert_non_null(f);
    der_len = fread(der, 1, sizeof(der), f);
    fclose(f);
    br_x509_decoder_init(&xd, NULL, NULL);
    br_x509_decoder_push(&xd, der, der_len);
    assert_non_null(br_x509_decoder_get_pkey(&xd));

    assert_int_equal(nea__tls_server_init(srv_mem, 8, &cert, NULL, &srv, err, sizeof(err)), 0);
    c = nea__tls_conn_start(conn_mem, srv, rec, NULL);
    br_ssl_client_init_full(&mem_client, &mem_minimal, NULL, 0);
    br_x509_knownkey_init_ec(&mem_known, &br_x509_decoder_get_pkey(&xd)->key.ec, BR_KEYTYPE_SIGN);
    br_ssl_engine_set_x509(&mem_client.eng, &mem_known.vtable);
    br_ssl_engine_set_buffer(&mem_client.eng, mem_client_buf, sizeof(mem_client_buf), 1);
    br_ssl_engine_set_protocol_names(&mem_client.eng, alpn, 1);
    assert_int_equal(br_ssl_client_reset(&mem_client, "x", 0), 1);
    mem_shuttle(c);
    assert_true((nea__tls_status(c) & NEA__TLS_OPEN) != 0);
    assert_string_equal(nea__tls_alpn(c), "http/1.1");

    q = br_ssl_engine_sendapp_buf(&mem_client.eng, &n);
    assert_non_null(q);
    memcpy(q, req, sizeof(req) - 1);
    br_ssl_engine_sendapp_ack(&mem_client.eng, sizeof(req) - 1);
    br_ssl_engine_flush(&mem_client.eng, 0);
    mem_shuttle(c);
    /* The request is in; the stream ends before the server reads it. */
    nea__tls_eof(c);
    assert_int_equal(nea__tls_status(c) &
                         (NEA__TLS_OPEN | NEA__TLS_EOF | NEA__TLS_READ | NEA__TLS_RECV),
                     NEA__TLS_OPEN | NEA__TLS_EOF | NEA__TLS_READ);
    assert_null(nea__tls_recv_buf(c, &n));
    p = nea__tls_read_buf(c, &n);
    assert_non_null(p);
    assert_int_equal(n, sizeof(req) - 1);
    assert_memory_equal(p, req, n);
    nea__tls_read_ack(c, n);
    assert_int_equal(nea__tls_write(c, "HTTP/1.1 200 OK\r\n\r\n", 19), 19);
    nea__tls_flush(c);
    assert_non_null(nea__tls_send_buf(c, &n));
    assert_true((nea__tls_status(c) & NEA__TLS_SEND) != 0);
    /* A second EOF changes nothing; the end hands the block back. */
    nea__tls_eof(c);
    assert_int_equal(nea__tls_reason_of(c), NEA__TLS_R_NONE);
    assert_ptr_equal(nea__tls_conn_end(c), rec);
    nea__tls_server_destroy(srv);
}

/* A handshake that stalls meets the caller's deadline (nea__tls_abort). */
static void test_deadline(void **state)
{
    nea_tls_cert cert = files("one.crt", "one.key");
    unsigned char hello[512];
    (void)client_hello(hello, sizeof(hello), 0x0303);
    (void)state;
    harness_start(&cert, 64);
    H.deadline_ms = 200;
    int fd = s_connect(&H.loop, H.port);
    s_send(&H.loop, fd, hello, 30);
    wait_ended(1);
    assert_int_equal(H.log[0].reason, NEA__TLS_R_TIMEOUT);
    assert_true(s_closed(&H.loop, fd, S_DEADLINE_MS));
    close(fd);
    harness_stop();
}

/* Shedding: a full handshake is refused before its public-key work; a
 * resumed one (none to do) is still admitted. */
static void test_shed(void **state)
{
    nea_tls_cert cert = files("one.crt", "one.key");
    char args[256];
    (void)state;
    harness_start(&cert, 64);

    snprintf(args, sizeof(args), "-sess_out %s/sess.pem", dir);
    cl.stdin_text = "";
    assert_int_equal(s_client(&cl, args), 0);
    H.admit = 0;
    snprintf(args, sizeof(args), "-sess_in %s/sess.pem", dir);
    assert_int_equal(s_client(&cl, args), 0);
    assert_non_null(strstr(cl.output, "Reused, TLSv1.2"));
    cl.stdin_text = NULL;

    assert_int_equal(python(&cl, "get", NULL), 1);
    wait_ended(3);
    assert_int_equal(H.log[2].reason, NEA__TLS_R_SHED);
    assert_false(H.log[2].opened);
    assert_int_equal(nea__tls_server_certs(H.srv, NULL), 1);
    H.admit = 1;
    harness_stop();
}

static void say_next(client *c)
{
    static const char next[] = "next\n";
    const char *p = c->output;
    unsigned lines = 0;
    while ((p = strchr(p, '\n')) != NULL) {
        lines++;
        p++;
    }
    /* After each answered GET the connection is idle: parked, its block
     * inaccessible in the pool; then the next GET takes another block. */
    if (lines == 1 || lines == 2) {
        static unsigned said;
        if (said < lines) {
            tconn *conn = NULL;
            for (unsigned i = 0; i < SLOTS; i++) {
                if (H.slots[i].used) {
                    conn = &H.slots[i];
                }
            }
            assert_non_null(conn);
            assert_true((nea__tls_status(conn->tls) & NEA__TLS_PARKED) != 0);
            assert_null(conn->block);
            assert_int_equal(H.pool_n, BLOCKS);
            said = lines;
            client_say(c, next);
        }
    }
}

/* An idle connection gives its record buffers back and continues on other
 * ones (the given-back block is PROT_NONE in the pool: any use of it by the
 * engine would fault). */
static void test_park(void **state)
{
    nea_tls_cert cert = files("one.crt", "one.key");
    (void)state;
    harness_start(&cert, 64);
    cl.on_output = say_next;
    assert_int_equal(python(&cl, "park", NULL), 0);
    cl.on_output = NULL;
    assert_string_equal(cl.output, "got 0 200\ngot 1 200\ngot 2 200\n");
    wait_ended(1);
    assert_true(H.log[0].parked);
    assert_int_equal(H.log[0].served, 3);
    harness_stop();
}

static void start_counting(client *c)
{
    if (strstr(c->output, "ready\n") != NULL && !__atomic_load_n(&counting, __ATOMIC_SEQ_CST) &&
        heap_calls == 0) {
        __atomic_store_n(&counting, 1, __ATOMIC_SEQ_CST);
        client_say(c, "go\n");
    }
}

/* 300 handshakes (every other one resumed) after a warm-up: no heap call
 * in this process from the first accept to the 300th connection's end. */
static void test_no_heap(void **state)
{
    nea_tls_cert cert = files("one.crt", "one.key");
    (void)state;
    if (SANITIZED || RUNNING_ON_VALGRIND) {
        skip();
    }
    harness_start(&cert, 64);
    cl.stdin_text = "go\n";
    assert_int_equal(python(&cl, "loop", "20"), 0);
    cl.stdin_text = NULL;
    assert_non_null(strstr(cl.output, "done 20 10"));
    wait_ended(20);

    heap_calls = 0;
    H.end_count_at = H.ended + 300;
    cl.on_output = start_counting;
    assert_int_equal(python(&cl, "loop", "300"), 0);
    cl.on_output = NULL;
    __atomic_store_n(&counting, 0, __ATOMIC_SEQ_CST);
    assert_non_null(strstr(cl.output, "done 300 150"));
    wait_ended(320);
    print_message("tls: %lu heap calls over 300 handshakes\n", heap_calls);
    assert_int_equal(heap_calls, 0);
    for (unsigned i = 20; i < 320; i++) {
        assert_int_equal(H.log[i].reason, NEA__TLS_R_NONE);
        assert_int_equal(H.log[i].served, 1);
        assert_int_equal(H.log[i].resumed, i % 2 == 1);
    }
    harness_stop();
}

/* --- Tests: loading certificates ------------------------------------------------------- */

static int try_load(nea_tls_cert cert, char *err, size_t errlen)
{
    static alignas(16) unsigned char mem[8192];
    nea__tls_server *s;
    int rc = nea__tls_server_init(mem, 0, &cert, NULL, &s, err, errlen);
    if (rc == 0) {
        assert_int_equal(nea__tls_server_certs(s, NULL), 1);
        nea__tls_server_destroy(s);
    }
    return rc;
}

static char *slurp(const char *name, size_t *len)
{
    char path[128];
    static char buf[4][8192];
    static unsigned next;
    char *b = buf[next++ % 4];
    FILE *f;
    path_of(path, sizeof(path), name);
    f = fopen(path, "rb");
    assert_non_null(f);
    *len = fread(b, 1, sizeof(buf[0]), f);
    fclose(f);
    return b;
}

static void test_load(void **state)
{
    char err[256];
    nea_tls_cert mem = {0};
    (void)state;

    assert_int_equal(try_load(files("one.crt", "one.key"), err, sizeof(err)), 0);
    assert_int_equal(try_load(files("rsa.crt", "rsa.key"), err, sizeof(err)), 0);

    mem.cert_pem = slurp("two.crt", &mem.cert_pem_len);
    mem.key_pem = slurp("two.key", &mem.key_pem_len);
    assert_int_equal(try_load(mem, err, sizeof(err)), 0);

    assert_int_equal(try_load(files("nope.crt", "one.key"), err, sizeof(err)), NEA_ETLS_CERT);
    assert_non_null(strstr(err, "cannot open"));
    assert_non_null(strstr(err, "nope.crt"));
    assert_int_equal(try_load(files("one.crt", "two.key"), err, sizeof(err)), NEA_ETLS_CERT);
    assert_non_null(strstr(err, "does not belong"));
    assert_int_equal(try_load(files("one.crt", "rsa.key"), err, sizeof(err)), NEA_ETLS_CERT);
    assert_non_null(strstr(err, "does not belong"));
    assert_int_equal(try_load(files("small.crt", "small.key"), err, sizeof(err)), NEA_ETLS_CERT);
    assert_non_null(strstr(err, "2048 to 4096"));
    assert_int_equal(try_load(files("one.crt", "enc.key"), err, sizeof(err)), NEA_ETLS_CERT);
    assert_non_null(strstr(err, "encrypted"));
    assert_int_equal(try_load(files("one.key", "one.key"), err, sizeof(err)), NEA_ETLS_CERT);
    assert_non_null(strstr(err, "no CERTIFICATE"));
    assert_int_equal(try_load(files("one.crt", "one.crt"), err, sizeof(err)), NEA_ETLS_CERT);
    assert_non_null(strstr(err, "no private key"));

    memset(&mem, 0, sizeof(mem));
    mem.cert_pem = "-----BEGIN CERTIFICATE-----\n!!!\n";
    mem.cert_pem_len = strlen(mem.cert_pem);
    mem.key_pem = slurp("one.key", &mem.key_pem_len);
    assert_int_equal(try_load(mem, err, sizeof(err)), NEA_ETLS_CERT);
    assert_non_null(strstr(err, "not valid PEM"));
    mem.cert_pem = NULL;
    assert_int_equal(try_load(mem, err, sizeof(err)), NEA_ETLS_CERT);
    assert_non_null(strstr(err, "no TLS certificate given"));

    assert_string_equal(nea_err_name(NEA_ETLS_CERT), "NEA_ETLS_CERT");
    assert_string_equal(nea__tls_reason_name(NEA__TLS_R_RECORD_TOO_LARGE), "record_too_large");
    assert_string_equal(nea__tls_reason_name(NEA__TLS_R_COUNT), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_curl),
        cmocka_unit_test(test_python),
        cmocka_unit_test(test_rsa),
        cmocka_unit_test(test_resumption),
        cmocka_unit_test(test_reload),
        cmocka_unit_test(test_reload_mid_handshake),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_half_close),
        cmocka_unit_test(test_half_close_in_memory),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_shed),
        cmocka_unit_test(test_park),
        cmocka_unit_test(test_no_heap),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, make_certs, remove_certs);
}
