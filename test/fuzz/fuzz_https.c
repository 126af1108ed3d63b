/*
 * fuzz_https.c - libFuzzer target for the TLS front of a whole server: what
 * a client sends to a connection slot of a server with a certificate
 * (lib/tlsio.c and the TLS paths of lib/conn.c, lib/output.c and
 * lib/exchange.c, over the engine in lib/tls.c), before any handshake or
 * after a real one.
 *
 * One server lives for the whole process on its own loop, with an EC P-256
 * certificate made by the openssl command on the first input (in a
 * temporary directory, removed at exit), four slots, two connection
 * buffers, a 1 KiB read buffer and short deadlines. Each input is one
 * connection: one end of a socketpair adopted by the server
 * (nea__server_adopt, testing builds only); this file is the client.
 *
 * Input layout: byte 0 is flags, the rest is what the client sends.
 *   bits 0-1  how the bytes are cut into writes: whole, 1, 7 or 61 bytes
 *             (the loop runs between writes)
 *   bit 2     first a real handshake by an in-process BearSSL client
 *             (TLS 1.2, trusting the server's key as known); then the bytes
 *             go ...
 *   bit 3     ... (with bit 2) as application data through that client,
 *             encrypted: HTTP requests to the server's routes; otherwise as
 *             raw bytes on the socket (records of their own, garbage)
 *   bit 4     the client reads nothing until it has sent everything
 *   bit 5     the client closes without half-closing first
 *
 * After the input the client half-closes (unless bit 5) and reads until the
 * server closes (bounded); the loop runs until the slot is free. Checked
 * (abort() on violation): the connection is closed; no connection open, no
 * connection buffer or arena in use, no live request; at most one
 * finished handshake and at most one failure reason counted, and exactly
 * one finished handshake when the in-process client made one;
 * with application data, what the client decrypted is a sequence of
 * HTTP/1.1 responses (fz_responses_valid; the last may be cut).
 *
 * Built with clang and -fsanitize=fuzzer (test/fuzz/CMakeLists.txt, target
 * fuzz_https), and with any compiler together with replay.c
 * (fuzz_replay_https, run by ctest over corpus_https/ and
 * regressions_https/).
 */
#include "fuzzloop.h"
#include "server.h"

#include "responses.h"

#include <bearssl.h>
#include <errno.h>
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

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* How long a real handshake may take (the server's deadline, and twice it
 * for the client): under Valgrind BearSSL is tens of times slower. */
#define HANDSHAKE_MS (RUNNING_ON_VALGRIND ? 20000u : 1000u)

#define TIMEOUT_MS 20
#define SETTLE_MS 3000
#define RX_CAP (64u * 1024u)

static uv_loop_t loop;
static nea_server *srv;
static uv_timer_t wake;
static char dir[64];
static bool verbose; /* FUZZ_HTTPS_VERBOSE set: one line per input */

/* The in-process client. */
static br_ssl_client_context client;
static br_x509_minimal_context minimal;
static br_x509_knownkey_context known;
static unsigned char client_buf[BR_SSL_BUFSIZE_BIDI];
static unsigned char pub_q[BR_EC_KBUF_PUB_MAX_SIZE];
static br_ec_public_key pub;
static const char *client_alpn[] = {"http/1.1"};

static char rx[RX_CAP]; /* what the client decrypted */
static size_t rx_len;
static unsigned char rx_memo[RX_CAP + 1];
static bool server_closed;

static void fail(const char *what)
{
    nea_stats st;
    nea_server_stats(srv, &st);
    fprintf(stderr,
            "fuzz_https: invariant violated: %s\n"
            "  connections_open=%u buffers_in_use=%u arenas_in_use=%u live=%u handshakes=%llu\n"
            "  received %zu bytes: %.*s\n",
            what, st.connections_open, st.conn_buffers_in_use, nea_stats_arenas(&st).in_use,
            srv->env.reqs.live, (unsigned long long)st.tls_handshakes, rx_len,
            (int)(rx_len < 2048 ? rx_len : 2048), rx);
    fprintf(stderr, "  shed: no_slot=%llu no_buffer=%llu cpu=%llu; tls failed:",
            (unsigned long long)st.shed_no_slot, (unsigned long long)st.shed_no_buffer,
            (unsigned long long)st.shed_cpu);
    for (unsigned i = 1; i < NEA_TLS_REASONS; i++) {
        if (st.tls_failed[i] > 0) {
            fprintf(stderr, " %s=%llu", nea_tls_reason_name(i),
                    (unsigned long long)st.tls_failed[i]);
        }
    }
    fprintf(stderr, "\n");
    abort();
}

static void check(bool ok, const char *what)
{
    if (!ok) {
        fail(what);
    }
}

static void on_log(void *data, int level, const char *msg)
{
    (void)data;
    (void)level;
    if (verbose) {
        fprintf(stderr, "fuzz_https: log: %s\n", msg);
    }
}

static void h_hello(nea_req *req, void *d)
{
    (void)d;
    nea_respond_static(req, 200, "text/plain", "Hello, World!", 13);
}

static void h_echo(nea_req *req, void *d)
{
    size_t n;
    const char *b = nea_req_body(req, &n);
    (void)d;
    nea_respond(req, 200, "application/octet-stream", b, n);
}

/* GET /big: 40 KiB, more than one TLS record and than the socket takes at
 * once from a client that does not read. */
static void h_big(nea_req *req, void *d)
{
    static char body[40 * 1024];
    (void)d;
    memset(body, 'b', sizeof(body));
    nea_respond_static(req, 200, "application/octet-stream", body, sizeof(body));
}

static void remove_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "fuzz_https: could not remove %s\n", dir);
    }
}

static unsigned char der[4096];
static size_t der_len;

static void der_append(void *ctx, const void *p, size_t n)
{
    (void)ctx;
    if (der_len + n > sizeof(der)) {
        abort();
    }
    memcpy(der + der_len, p, n);
    der_len += n;
}

/* The certificate's public key, for the client's known-key trust. */
static void load_public_key(const char *path)
{
    static char text[8192];
    br_pem_decoder_context pc;
    br_x509_decoder_context xd;
    const br_x509_pkey *pk;
    FILE *f = fopen(path, "rb");
    size_t n, off = 0;

    if (f == NULL) {
        abort();
    }
    n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    br_pem_decoder_init(&pc);
    while (off < n) {
        off += br_pem_decoder_push(&pc, text + off, n - off);
        if (br_pem_decoder_event(&pc) == BR_PEM_BEGIN_OBJ) {
            br_pem_decoder_setdest(&pc, der_append, NULL);
        }
    }
    br_x509_decoder_init(&xd, NULL, NULL);
    br_x509_decoder_push(&xd, der, der_len);
    pk = br_x509_decoder_get_pkey(&xd);
    if (pk == NULL || pk->key_type != BR_KEYTYPE_EC) {
        abort();
    }
    memcpy(pub_q, pk->key.ec.q, pk->key.ec.qlen);
    pub.curve = pk->key.ec.curve;
    pub.q = pub_q;
    pub.qlen = pk->key.ec.qlen;
}

/* At exit: the server closes, so its certificate (heap) is freed. */
static void close_server(void)
{
    if (nea_server_close(srv, NULL, NULL) == 0) {
        uv_close((uv_handle_t *)&wake, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        (void)uv_loop_close(&loop);
    }
}

static void setup(void)
{
    static char crt[96], key[96];
    char cmd[512];
    nea_config cfg;
    int rc;

    verbose = getenv("FUZZ_HTTPS_VERBOSE") != NULL;
    signal(SIGPIPE, SIG_IGN);
    snprintf(dir, sizeof(dir), "/tmp/nea-fuzz-https-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        abort();
    }
    atexit(remove_dir);
    snprintf(cmd, sizeof(cmd),
             "cd %s && openssl ecparam -name prime256v1 -genkey -noout -out k.pem 2>/dev/null && "
             "openssl req -x509 -new -key k.pem -subj /CN=fuzz -days 2 -out c.pem 2>/dev/null",
             dir);
    if (system(cmd) != 0) {
        abort();
    }
    snprintf(crt, sizeof(crt), "%s/c.pem", dir);
    snprintf(key, sizeof(key), "%s/k.pem", dir);
    load_public_key(crt);
    if (uv_loop_init(&loop) != 0) {
        abort();
    }
    uv_timer_init(&loop, &wake);
    nea_config_init(&cfg);
    cfg.port = 0;
    cfg.memory_limit = 8u << 20;
    cfg.arena_size = 64u << 10;
    cfg.arena_count = 2;
    cfg.max_connections = 4;
    cfg.conn_buffers = 2;
    cfg.read_buffer_size = 1024;
    cfg.max_body_size = 2048;
    cfg.tls_sessions = 4;
    cfg.header_timeout_ms = TIMEOUT_MS;
    cfg.body_timeout_ms = TIMEOUT_MS;
    cfg.keepalive_timeout_ms = TIMEOUT_MS;
    cfg.write_timeout_ms = 5 * TIMEOUT_MS;
    cfg.tls_handshake_ms = HANDSHAKE_MS; /* a real handshake has to fit */
    cfg.overload_target_ms = 0;          /* handshakes under ASan would turn CPU shedding on */
    cfg.tls.cert_file = crt;
    cfg.tls.key_file = key;
    cfg.log = on_log;
    rc = nea_server_new(&loop, &cfg, &srv);
    if (rc != 0) {
        fprintf(stderr, "fuzz_https: nea_server_new: %s\n", nea_strerror(rc));
        abort();
    }
    atexit(close_server);
    if (nea_server_route(srv, "GET", "/hello", h_hello, NULL) != 0 ||
        nea_server_route(srv, "POST", "/echo", h_echo, NULL) != 0 ||
        nea_server_route(srv, "GET", "/big", h_big, NULL) != 0) {
        abort();
    }
}

/* --- the client's side of the socket ------------------------------------------------ */

/* Runs the loop once without waiting (or waiting at most ms). */
static void step(unsigned ms)
{
    if (ms == 0) {
        uv_run(&loop, UV_RUN_NOWAIT);
        return;
    }
    fuzz_turn(&loop, &wake, ms);
}

/* Bytes the server sent: into the in-process client (tls), else dropped. */
static void receive(int fd, bool tls)
{
    unsigned char tmp[4096];
    for (;;) {
        size_t room = sizeof(tmp);
        unsigned char *q = tls ? br_ssl_engine_recvrec_buf(&client.eng, &room) : NULL;
        bool into_client = q != NULL;
        ssize_t n;
        if (!into_client) {
            if (tls && br_ssl_engine_current_state(&client.eng) != BR_SSL_CLOSED) {
                /* The client takes nothing now (or ever: it got close_notify
                 * and cannot answer after our half-close): only the end. */
                n = recv(fd, tmp, 1, MSG_PEEK | MSG_DONTWAIT);
                if (n == 0 ||
                    (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
                    server_closed = true;
                }
                return;
            }
            q = tmp; /* dropped: no client, or a closed one (the end still counts) */
            room = sizeof(tmp);
        }
        n = recv(fd, q, room, MSG_DONTWAIT);
        if (n > 0) {
            if (into_client) {
                br_ssl_engine_recvrec_ack(&client.eng, (size_t)n);
            }
        } else if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            server_closed = true;
            return;
        } else if (errno != EINTR) {
            return;
        }
    }
}

/* The client's plaintext (responses), kept for the check. */
static void take_plaintext(void)
{
    size_t n;
    unsigned char *p;
    while ((p = br_ssl_engine_recvapp_buf(&client.eng, &n)) != NULL) {
        size_t take = n < RX_CAP - rx_len ? n : RX_CAP - rx_len;
        memcpy(rx + rx_len, p, take);
        rx_len += take;
        br_ssl_engine_recvapp_ack(&client.eng, n);
    }
}

/* The client's ciphertext to the socket; false when the socket takes no more. */
static bool flush_client(int fd)
{
    size_t n;
    unsigned char *p;
    while ((p = br_ssl_engine_sendrec_buf(&client.eng, &n)) != NULL) {
        ssize_t w = send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w <= 0) {
            return false;
        }
        br_ssl_engine_sendrec_ack(&client.eng, (size_t)w);
    }
    return true;
}

/* One round: the client's ciphertext out, the server's in, the loop once. */
static void shuttle(int fd, bool tls, bool reads)
{
    if (tls) {
        (void)flush_client(fd);
    }
    step(0);
    if (reads) {
        receive(fd, tls);
        if (tls) {
            take_plaintext();
        }
    }
}

static bool handshake(int fd)
{
    uint64_t end = fuzz_now_ms() + 2 * HANDSHAKE_MS;
    br_ssl_client_init_full(&client, &minimal, NULL, 0);
    br_x509_knownkey_init_ec(&known, &pub, BR_KEYTYPE_KEYX | BR_KEYTYPE_SIGN);
    br_ssl_engine_set_x509(&client.eng, &known.vtable);
    br_ssl_engine_set_versions(&client.eng, BR_TLS12, BR_TLS12);
    br_ssl_engine_set_buffer(&client.eng, client_buf, sizeof(client_buf), 1);
    br_ssl_engine_set_protocol_names(&client.eng, client_alpn, 1);
    if (!br_ssl_client_reset(&client, "fuzz", 0)) {
        abort();
    }
    while (fuzz_now_ms() < end && !server_closed) {
        unsigned st = br_ssl_engine_current_state(&client.eng);
        if (st == BR_SSL_CLOSED) {
            return false;
        }
        if ((st & BR_SSL_SENDAPP) != 0) {
            return true;
        }
        shuttle(fd, true, true);
        step(1);
    }
    return false;
}

/* Sends piece: through the client (encrypted) or raw. */
static void send_piece(int fd, const uint8_t *p, size_t n, bool app, bool reads)
{
    unsigned stalls = 0;
    while (n > 0 && !server_closed && stalls < 200) {
        size_t took = 0;
        if (app) {
            size_t room;
            unsigned char *q = br_ssl_engine_sendapp_buf(&client.eng, &room);
            if (q != NULL) {
                took = n < room ? n : room;
                memcpy(q, p, took);
                br_ssl_engine_sendapp_ack(&client.eng, took);
                br_ssl_engine_flush(&client.eng, 0);
            } else if (br_ssl_engine_current_state(&client.eng) == BR_SSL_CLOSED) {
                return;
            }
        } else {
            ssize_t w = send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                return;
            }
            took = w > 0 ? (size_t)w : 0;
        }
        p += took;
        n -= took;
        stalls = took > 0 ? 0 : stalls + 1;
        shuttle(fd, app, reads);
        if (stalls > 10) {
            step(1);
        }
    }
}

static bool settled(void)
{
    nea_stats st;
    nea_server_stats(srv, &st);
    return st.connections_open == 0 && st.conn_buffers_in_use == 0 &&
           nea_stats_arenas(&st).in_use == 0 && srv->env.reqs.live == 0;
}

static uint64_t failures(const nea_stats *st)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < NEA_TLS_REASONS; i++) {
        n += st->tls_failed[i];
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    static const size_t cuts[] = {0, 1, 7, 61};
    nea_stats before, after;
    unsigned flags;
    size_t cut;
    bool tls, app, reads;
    uint64_t end;
    int sv[2];

    if (!ready) {
        setup();
        ready = true;
    }
    if (size == 0) {
        return 0;
    }
    flags = data[0];
    data++;
    size--;
    cut = cuts[flags & 3];
    tls = (flags & 4) != 0;
    app = tls && (flags & 8) != 0;
    reads = (flags & 16) == 0;
    rx_len = 0;
    server_closed = false;
    nea_server_stats(srv, &before);

    uv_update_time(&loop); /* the deadlines start from now, not from the last iteration */
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0 || nea__server_adopt(srv, sv[0]) != 0) {
        abort();
    }
    if (tls && !handshake(sv[1])) {
        fail("the in-process client's handshake did not finish");
    }
    for (size_t off = 0; off < size && !server_closed;) {
        size_t n = cut == 0 || size - off < cut ? size - off : cut;
        send_piece(sv[1], data + off, n, app, reads);
        off += n;
    }
    if (app) {
        (void)flush_client(sv[1]);
    }
    if ((flags & 32) == 0) {
        shutdown(sv[1], SHUT_WR);
        /* Reads until the server closes, the deadlines bounding it. */
        end = fuzz_now_ms() + SETTLE_MS;
        while (!server_closed && fuzz_now_ms() < end) {
            shuttle(sv[1], tls, true);
            step(2);
        }
        check(server_closed, "the server closed the connection");
    }
    close(sv[1]);
    end = fuzz_now_ms() + SETTLE_MS;
    while (!settled() && fuzz_now_ms() < end) {
        step(2);
    }
    check(settled(), "nothing held once the client is gone");
    nea_server_stats(srv, &after);
    check(after.tls_handshakes - before.tls_handshakes <= 1, "at most one handshake counted");
    check(failures(&after) - failures(&before) <= 1, "at most one failure counted");
    if (tls) {
        check(after.tls_handshakes - before.tls_handshakes == 1, "the real handshake counted");
    }
    if (app) {
        fz_stream s = {rx, rx_len, true, false, rx_memo, false};
        check(fz_responses_valid(&s), "decrypted responses are HTTP/1.1 responses");
    }
    if (verbose) {
        fprintf(stderr,
                "fuzz_https: flags %02x, %zu bytes: handshakes +%llu, failures +%llu, %zu "
                "bytes of responses\n",
                flags, size, (unsigned long long)(after.tls_handshakes - before.tls_handshakes),
                (unsigned long long)(failures(&after) - failures(&before)), rx_len);
    }
    return 0;
}
