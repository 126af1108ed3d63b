/*
 * test_tlsio.c - HTTPS through a whole nea_server (lib/tlsio.c with the TLS
 * paths of conn.c, output.c and exchange.c), against real clients run as
 * child processes on the server's loop: curl, python3's ssl (TLS 1.2; TLS
 * 1.3 only is refused) and openssl s_client. Certificates are made with the
 * openssl command in a temporary directory when the program starts.
 *
 * What a user would see: responses over TLS with keep-alive, pipelining
 * (distinct answers each once, in order),
 * streamed responses and uploads, 100-continue, a file; session
 * resumption, also across workers; an idle connection holding no buffer;
 * handshakes waiting in line for a buffer; certificate reload; and every
 * hostile case closing its own connection, counted by reason, while the
 * next client is served and nothing stays held: plain HTTP (a plain 400),
 * garbage, a truncated ClientHello, a slow handshake (the deadline), a
 * renegotiation, an oversized record, a client that stops reading, a
 * reset, and a handshake flood while the loop sheds for CPU.
 *
 * WebSocket over TLS (wss://), with Debian's python3-websockets: messages
 * echoed (one larger than a TLS record), the idle connection holding no
 * buffer, pinged and answering over TLS, the close handshake with 1000;
 * and a client that resets in the middle of a frame, whose arena and slot
 * come back.
 */
#include "e2e.h"
#include "proc.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

#define LONG_MS (3 * H_DEADLINE_MS)
/* The handshake deadline: short, but a real handshake under Valgrind must
 * fit. */
#define HANDSHAKE_MS (RUNNING_ON_VALGRIND ? 3000u : 300u)

/* --- certificates ---------------------------------------------------------------- */

static char dir[64];
static char cert_one[128], key_one[128], cert_two[128], key_two[128], key_enc[128];
static char fp_one[80], fp_two[80];
static char client_py[256], wss_py[256];

static void read_first_word(const char *path, char *out, size_t len)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(out, (int)len, f));
    fclose(f);
    out[strcspn(out, " \n")] = '\0';
}

static int make_certs(void **state)
{
    char cmd[2048], path[160];
    const char *src = getenv("NEA_TEST_SOURCE_DIR");
    (void)state;
    snprintf(client_py, sizeof(client_py), "%s/support/tls_client.py",
             src != NULL ? src : NEA_TEST_SOURCE_DIR);
    snprintf(wss_py, sizeof(wss_py), "%s/support/wss_client.py",
             src != NULL ? src : NEA_TEST_SOURCE_DIR);
    snprintf(dir, sizeof(dir), "/tmp/nea-tlsio-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        return -1;
    }
    snprintf(cmd, sizeof(cmd),
             "set -e; cd %s; "
             "for n in one two; do "
             "  openssl ecparam -name prime256v1 -genkey -noout -out $n.key; "
             "  openssl req -x509 -new -key $n.key -subj /CN=localhost -days 2 -out $n.crt; "
             "  openssl x509 -in $n.crt -outform DER | sha256sum > $n.fp; "
             "done; "
             "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -aes256 "
             "  -pass pass:secret -out enc.key 2>/dev/null; "
             "head -c 3145728 /dev/urandom > upload.bin; "
             "head -c 300000 /dev/urandom > file.bin",
             dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "test_tlsio: making certificates failed (openssl)\n");
        return -1;
    }
    snprintf(cert_one, sizeof(cert_one), "%s/one.crt", dir);
    snprintf(key_one, sizeof(key_one), "%s/one.key", dir);
    snprintf(cert_two, sizeof(cert_two), "%s/two.crt", dir);
    snprintf(key_two, sizeof(key_two), "%s/two.key", dir);
    snprintf(key_enc, sizeof(key_enc), "%s/enc.key", dir);
    snprintf(path, sizeof(path), "%s/one.fp", dir);
    read_first_word(path, fp_one, sizeof(fp_one));
    snprintf(path, sizeof(path), "%s/two.fp", dir);
    read_first_word(path, fp_two, sizeof(fp_two));
    return 0;
}

static int remove_certs(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* --- routes of this file ------------------------------------------------------------ */

/* GET /stream/N: N KiB whose byte i is i % 256, in 1 KiB pieces (N = 0:
 * the length unknown, 64 KiB, chunked). */
typedef struct pattern {
    uint64_t left;
    char buf[1024];
} pattern;

static void stream_more(nea_req *req, void *arg)
{
    pattern *p = arg;
    size_t n = p->left < sizeof(p->buf) ? (size_t)p->left : sizeof(p->buf);
    if (n == 0) {
        (void)nea_stream_end(req);
        return;
    }
    p->left -= n;
    (void)nea_stream_write(req, p->buf, n, stream_more, p);
}

static void r_stream(nea_req *req, void *d)
{
    uint64_t kib = strtoull(nea_req_path_tail(req), NULL, 10);
    pattern *p = nea_alloc(req, sizeof(*p));
    (void)d;
    for (size_t i = 0; i < sizeof(p->buf); i++) {
        p->buf[i] = (char)(i % 256);
    }
    p->left = (kib == 0 ? 64 : kib) * 1024;
    if (nea_stream_start(req, 200, "application/octet-stream",
                         kib == 0 ? NEA_LENGTH_UNKNOWN : p->left) == 0) {
        stream_more(req, p);
    }
}

/* POST /upload: the body in pieces; answers "bytes=N fnv=H" (FNV-1a 32). */
typedef struct upload {
    uint64_t bytes;
    uint32_t h;
} upload;

static void upload_piece(nea_req *req, const char *data, size_t len, void *arg)
{
    upload *u = arg;
    if (data != NULL) {
        for (size_t i = 0; i < len; i++) {
            u->h = (u->h ^ (unsigned char)data[i]) * 16777619u;
        }
        u->bytes += len;
        return;
    }
    char *answer = nea_printf(req, "bytes=%llu fnv=%08x", (unsigned long long)u->bytes, u->h);
    nea_respond(req, 200, "text/plain", answer, strlen(answer));
}

static void r_upload(nea_req *req, void *d)
{
    upload *u = nea_alloc(req, sizeof(*u));
    (void)d;
    u->bytes = 0;
    u->h = 2166136261u;
    assert_int_equal(nea_body_read(req, upload_piece, u), 0);
}

/* GET /file: file.bin through nea_respond_file (sendfile cannot encrypt:
 * buffered pieces). */
static void r_file(nea_req *req, void *d)
{
    char path[128];
    (void)d;
    snprintf(path, sizeof(path), "%s/file.bin", dir);
    assert_int_equal(nea_respond_file(req, path, "application/octet-stream", 0), 0);
}

/* /ws/echo: a WebSocket route that sends every message back as it came,
 * and what it saw. */
static struct {
    unsigned opened, messages, closed, close_code;
} wss;

static void wss_open(nea_ws *ws, nea_req *upgrade, void *data)
{
    (void)ws;
    (void)upgrade;
    (void)data;
    wss.opened++;
}

static void wss_message(nea_ws *ws, nea_req *msg, const nea_ws_msg *m, void *data)
{
    (void)msg;
    (void)data;
    wss.messages++;
    assert_true(m->last);
    assert_int_equal(nea_ws_send(ws, m->opcode, m->data, m->len), 0);
}

static void wss_close(nea_ws *ws, unsigned code, void *data)
{
    (void)ws;
    (void)data;
    wss.closed++;
    wss.close_code = code;
}

static const nea_ws_route wss_echo = {.open = wss_open, .message = wss_message, .close = wss_close};

/* --- the fixture ----------------------------------------------------------------------- */

static void (*extra_tweak)(nea_config *);

static void tls_tweak(nea_config *cfg)
{
    cfg->tls.cert_file = cert_one;
    cfg->tls.key_file = key_one;
    cfg->tls_handshake_ms = HANDSHAKE_MS;
    cfg->max_body_size = 16u << 10;
    /* Handshakes under Valgrind take long enough to turn CPU shedding on,
     * which would refuse the next ones: the flood test sheds by hand. */
    cfg->overload_target_ms = 0;
    if (extra_tweak != NULL) {
        extra_tweak(cfg);
    }
}

static h_fixture fx;

static void h_on_closed_flag(nea_server *s, void *data)
{
    (void)s;
    *(bool *)data = true;
}

/* h_start with this file's routes too (before listening: with workers the
 * routes are read-only once it listens). */
static void start(void **state, void (*tweak)(nea_config *))
{
    h_fixture *f = &fx;
    nea_config cfg;
    h_config(&cfg);
    extra_tweak = tweak;
    tls_tweak(&cfg);
    memset(f, 0, sizeof(*f));
    t_handlers_reset();
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->cfg = cfg;
    t_log_attach(&f->log, &f->cfg);
    assert_int_equal(nea_server_new(&f->loop, &f->cfg, &f->srv), 0);
    t_routes_add(f->srv);
    assert_int_equal(nea_server_route(f->srv, "GET", "/stream/", r_stream, NULL), 0);
    assert_int_equal(nea_server_route_stream(f->srv, "POST", "/upload", r_upload, NULL, 0, 0), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/file", r_file, NULL), 0);
    assert_int_equal(nea_server_route_ws(f->srv, "/ws/echo", &wss_echo, NULL), 0);
    memset(&wss, 0, sizeof(wss));
    assert_int_equal(nea_server_listen(f->srv), 0);
    f->port = nea_server_port(f->srv);
    *state = f;
}

static int setup(void **state)
{
    start(state, NULL);
    return 0;
}

static t_proc proc, other;

/* Runs the python client (mode and args) to its end; returns its output. */
static const char *py(h_fixture *f, const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "exec python3 %s %s", client_py, args);
    (void)t_proc_run_shell(&proc, &f->loop, cmd, LONG_MS);
    return proc.output;
}

static void py_start(h_fixture *f, t_proc *p, const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "exec python3 %s %s", client_py, args);
    t_proc_shell(p, &f->loop, cmd);
}

/* Starts the python client in wait- mode and waits until it is ready: a
 * race against a deadline then starts only when it says go (python's own
 * start-up can take longer than a short deadline on a busy machine). */
static void py_ready(h_fixture *f, t_proc *p, const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "exec python3 %s wait-%s", client_py, args);
    t_proc_shell(p, &f->loop, cmd);
    assert_true(t_proc_wait_output(p, "ready", LONG_MS));
}

static const char *shell(h_fixture *f, const char *cmd)
{
    (void)t_proc_run_shell(&proc, &f->loop, cmd, LONG_MS);
    return proc.output;
}

static void must_contain(const char *out, const char *needle)
{
    if (strstr(out, needle) == NULL) {
        fail_msg("expected \"%s\" in:\n%s", needle, out);
    }
}

/* Once the clients are gone: no connection, no buffer, no arena held, and
 * a new client is served. */
static void check_clean(h_fixture *f)
{
    char args[64];
    H_WAIT(f, h_st(f).connections_open == 0);
    H_WAIT(f, h_st(f).conn_buffers_in_use == 0);
    assert_int_equal(h_arenas_in_use(f), 0);
    snprintf(args, sizeof(args), "get %d /hello", f->port);
    must_contain(py(f, args), "200 13");
}

static uint64_t failed(h_fixture *f, const char *reason)
{
    nea_stats st = h_st(f);
    for (unsigned i = 0; i < NEA_TLS_REASONS; i++) {
        if (nea_tls_reason_name(i) != NULL && strcmp(nea_tls_reason_name(i), reason) == 0) {
            return st.tls_failed[i];
        }
    }
    fail_msg("no reason %s", reason);
    return 0;
}

static uint64_t failed_total(h_fixture *f)
{
    nea_stats st = h_st(f);
    uint64_t n = 0;
    for (unsigned i = 0; i < NEA_TLS_REASONS; i++) {
        n += st.tls_failed[i];
    }
    return n;
}

/* --- clients that do things right ------------------------------------------------------- */

static void test_plan_and_start_line(void **state)
{
    h_fixture *f = *state;
    const nea_plan *p = nea_server_plan(f->srv);
    assert_true(p->tls_conn_size >= 4096 && p->tls_conn_size <= 4608);
    assert_true(p->tls_records_size >= 18432 && p->tls_records_size <= 18688);
    assert_int_equal(p->tls_sessions, 1024);
    assert_true(p->tls_cache_bytes >= 102400);
    assert_true(t_log_has(&f->log, "tls=state "));
}

/* A certificate that cannot be used fails nea_server_new, saying why; a
 * plain server has nothing to reload. */
static void test_refusals(void **state)
{
    uv_loop_t loop;
    nea_config cfg;
    nea_server *s = NULL;
    t_log log;
    char err[256] = "";
    nea_tls_cert two = {.cert_file = cert_two, .key_file = key_two};
    bool closed = false;
    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    h_config(&cfg);
    t_log_attach(&log, &cfg);
    cfg.tls.cert_file = cert_one;
    cfg.tls.key_file = key_two; /* not its key */
    assert_int_equal(nea_server_new(&loop, &cfg, &s), NEA_ETLS_CERT);
    assert_true(t_log_has(&log, "does not belong"));
    cfg.tls.key_file = key_enc;
    assert_int_equal(nea_server_new(&loop, &cfg, &s), NEA_ETLS_CERT);
    assert_true(t_log_has(&log, "encrypted"));
    cfg.tls.cert_file = cfg.tls.key_file = NULL;
    assert_int_equal(nea_server_new(&loop, &cfg, &s), 0);
    assert_int_equal(nea_server_plan(s)->tls_cache_bytes, 0);
    assert_int_equal(nea_server_tls_reload(s, &two, err, sizeof(err)), NEA_ESTATE);
    assert_int_equal(nea_server_close(s, h_on_closed_flag, &closed), 0);
    while (!closed) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_curl_keepalive(void **state)
{
    h_fixture *f = *state;
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "exec curl -sSk --http1.1 --max-time 10 -w ' %%{http_code} %%{num_connects}\\n' "
             "https://127.0.0.1:%d/hello https://127.0.0.1:%d/hello",
             f->port, f->port);
    const char *out = shell(f, cmd);
    must_contain(out, "Hello, World! 200 1\nHello, World! 200 0\n"); /* the second reused it */
    assert_int_equal(h_st(f).tls_handshakes, 1);
    assert_int_equal(h_st(f).requests, 2);
    check_clean(f);
    assert_int_equal(failed_total(f), 0);
}

static void test_python_tls12_and_tls13(void **state)
{
    h_fixture *f = *state;
    char args[64];
    snprintf(args, sizeof(args), "get %d /hello 3", f->port);
    const char *out = py(f, args);
    must_contain(out, "TLSv1.2 ECDHE-ECDSA-AES128-GCM-SHA256 http/1.1\n200 13\n200 13\n200 13\n");
    snprintf(args, sizeof(args), "tls13 %d", f->port);
    out = py(f, args);
    must_contain(out, "refused");
    H_WAIT(f, failed(f, "no_shared") + failed(f, "version") == 1);
    check_clean(f);
}

static void test_openssl_resumption(void **state)
{
    h_fixture *f = *state;
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "exec openssl s_client -connect 127.0.0.1:%d -tls1_2 -sess_out %s/sess.pem "
             "</dev/null",
             f->port, dir);
    must_contain(shell(f, cmd), "New, TLSv1.2, Cipher is ECDHE-ECDSA-AES128-GCM-SHA256");
    snprintf(cmd, sizeof(cmd),
             "exec openssl s_client -connect 127.0.0.1:%d -tls1_2 -sess_in %s/sess.pem </dev/null",
             f->port, dir);
    must_contain(shell(f, cmd), "Reused, TLSv1.2");
    H_WAIT(f, h_st(f).tls_handshakes == 2);
    assert_int_equal(h_st(f).tls_resumed, 1);
    check_clean(f);
    assert_int_equal(failed_total(f), 0);
}

static void test_pipelined(void **state)
{
    h_fixture *f = *state;
    char args[64];
    snprintf(args, sizeof(args), "pipeline %d 200", f->port);
    must_contain(py(f, args), "ok 200");
    check_clean(f);
}

/* Pipelined answers each distinct: every one in its place, each once (the
 * gathered batch ahead of the response that does not join it, and not
 * sent again), and nothing stray before the next request's answer. */
static void test_pipelined_in_order_once(void **state)
{
    h_fixture *f = *state;
    char args[64];
    const char *out;
    snprintf(args, sizeof(args), "ordered %d 50", f->port);
    out = py(f, args);
    must_contain(out, "in order 50\n");
    must_contain(out, "then 200 Hello, World!\n");
    check_clean(f);
}

static void test_streamed_response_and_file(void **state)
{
    h_fixture *f = *state;
    char cmd[768];
    const char *check = "python3 -c \"import sys; d=sys.stdin.buffer.read(); "
                        "print(len(d), d == bytes(range(256)) * (len(d) // 256))\"";
    snprintf(cmd, sizeof(cmd),
             "curl -sSk --http1.1 --max-time 20 https://127.0.0.1:%d/stream/4096 | %s", f->port,
             check);
    must_contain(shell(f, cmd), "4194304 True");
    snprintf(cmd, sizeof(cmd),
             "curl -sSk --http1.1 --max-time 20 https://127.0.0.1:%d/stream/0 | %s", f->port,
             check);
    must_contain(shell(f, cmd), "65536 True");
    snprintf(cmd, sizeof(cmd),
             "curl -sSk --http1.1 --max-time 20 https://127.0.0.1:%d/file | cmp - %s/file.bin && "
             "echo same",
             f->port, dir);
    must_contain(shell(f, cmd), "same");
    check_clean(f);
}

static void test_streamed_upload_and_continue(void **state)
{
    h_fixture *f = *state;
    char cmd[768], expect[64];
    snprintf(cmd, sizeof(cmd),
             "python3 -c \"h=2166136261\nfor b in open('%s/upload.bin','rb').read(): "
             "h=((h^b)*16777619)&0xffffffff\nprint('bytes=3145728 fnv=%%08x' %% h)\"",
             dir);
    const char *want = shell(f, cmd);
    size_t n = strcspn(want, "\n");
    assert_true(n < sizeof(expect));
    memcpy(expect, want, n);
    expect[n] = '\0';
    snprintf(cmd, sizeof(cmd),
             "exec curl -sSk --http1.1 --max-time 20 -H 'Expect:' --data-binary @%s/upload.bin "
             "https://127.0.0.1:%d/upload",
             dir, f->port);
    must_contain(shell(f, cmd), expect);
    snprintf(cmd, sizeof(cmd),
             "exec curl -vsSk --http1.1 --max-time 20 -H 'Expect: 100-continue' "
             "--data-binary @%s/upload.bin https://127.0.0.1:%d/upload",
             dir, f->port);
    const char *out = shell(f, cmd);
    must_contain(out, "< HTTP/1.1 100 Continue");
    must_contain(out, expect);
    check_clean(f);
}

/* Sessions are shared by the workers: a client resumes wherever it lands. */
static void two_workers(nea_config *cfg)
{
    cfg->workers = 2;
}

static int setup_workers(void **state)
{
    start(state, two_workers);
    return 0;
}

static void test_resumption_across_workers(void **state)
{
    h_fixture *f = *state;
    char args[64];
    nea_stats w0, w1;
    snprintf(args, sizeof(args), "loop %d 40", f->port);
    py_start(f, &proc, args);
    assert_true(t_proc_wait_output(&proc, "ready", LONG_MS));
    t_proc_say(&proc, "go\n");
    assert_int_equal(t_proc_finish(&proc, LONG_MS), 0);
    must_contain(proc.output, "done 40 20");
    H_WAIT(f, h_st(f).tls_handshakes == 40);
    assert_int_equal(nea_server_worker_stats(f->srv, 0, &w0), 0);
    assert_int_equal(nea_server_worker_stats(f->srv, 1, &w1), 0);
    print_message("handshakes per worker: %llu, %llu\n", (unsigned long long)w0.tls_handshakes,
                  (unsigned long long)w1.tls_handshakes);
    assert_true(w0.tls_handshakes > 0 && w1.tls_handshakes > 0);
    assert_int_equal(h_st(f).tls_resumed, 20);
}

/* An idle connection holds no buffer (its record buffers went back) and
 * takes one again for its next request. */
static void one_buffer(nea_config *cfg)
{
    cfg->conn_buffers = 1;
}

static int setup_one_buffer(void **state)
{
    start(state, one_buffer);
    return 0;
}

static void test_idle_connection_holds_no_buffer(void **state)
{
    h_fixture *f = *state;
    char args[64];
    snprintf(args, sizeof(args), "park %d", f->port);
    py_start(f, &proc, args);
    py_start(f, &other, args);
    assert_true(t_proc_wait_output(&proc, "got 0 200", LONG_MS));
    assert_true(t_proc_wait_output(&other, "got 0 200", LONG_MS));
    H_WAIT(f, h_st(f).conn_buffers_in_use == 0);
    assert_int_equal(h_st(f).connections_open, 2);
    for (int i = 1; i < 3; i++) {
        t_proc_say(&proc, "next\n");
        t_proc_say(&other, "next\n");
        assert_true(t_proc_wait_output(&proc, i == 1 ? "got 1 200" : "got 2 200", LONG_MS));
        assert_true(t_proc_wait_output(&other, i == 1 ? "got 1 200" : "got 2 200", LONG_MS));
    }
    assert_int_equal(t_proc_finish(&proc, LONG_MS), 0);
    assert_int_equal(t_proc_finish(&other, LONG_MS), 0);
    assert_int_equal(h_st(f).conn_buffers, 1);
    assert_int_equal(h_st(f).tls_handshakes, 2);
    check_clean(f);
}

/* A handshake needs a buffer: with the only one held by a slow handshake,
 * the next connection waits in line until the deadline frees it. */
static void test_handshake_waits_for_a_buffer(void **state)
{
    h_fixture *f = *state;
    char args[128];
    uint64_t t0;
    snprintf(args, sizeof(args), "get %d /hello", f->port);
    py_ready(f, &other, args);
    /* the first 9 bytes of a ClientHello record, and no more */
    snprintf(args, sizeof(args), "pre %d 160303010001000100", f->port);
    py_ready(f, &proc, args);
    t0 = h_now_ms();
    t_proc_say(&proc, "go\n");
    H_WAIT(f, h_st(f).conn_buffers_in_use == 1);
    t_proc_say(&other, "go\n");
    H_WAIT(f, h_st(f).buffer_waiters == 1);
    assert_int_equal(t_proc_finish(&other, LONG_MS), 0);
    must_contain(other.output, "200 13");
    assert_true(h_now_ms() - t0 >= HANDSHAKE_MS);
    assert_int_equal(t_proc_finish(&proc, LONG_MS), 0);
    must_contain(proc.output, "closed");
    assert_int_equal(failed(f, "timeout"), 1);
    check_clean(f);
}

/* With every slot in a handshake, a newcomer is closed (no plain 503 a
 * TLS client could not read), counted in shed_no_slot. */
static void two_slots(nea_config *cfg)
{
    cfg->max_connections = 2;
}

static int setup_two_slots(void **state)
{
    start(state, two_slots);
    return 0;
}

static void test_no_slot_closes(void **state)
{
    h_fixture *f = *state;
    static t_proc third;
    char args[128];
    snprintf(args, sizeof(args), "get %d /hello", f->port);
    py_ready(f, &third, args);
    snprintf(args, sizeof(args), "pre %d 160303010001000100", f->port);
    py_ready(f, &proc, args);
    py_ready(f, &other, args);
    t_proc_say(&proc, "go\n");
    t_proc_say(&other, "go\n");
    H_WAIT(f, h_st(f).connections_open == 2);
    t_proc_say(&third, "go\n");
    assert_int_equal(t_proc_finish(&third, LONG_MS), 1);
    assert_true(strstr(third.output, "error") != NULL);
    assert_int_equal(h_st(f).shed_no_slot, 1);
    assert_int_equal(h_st(f).responses[5], 0); /* no 503 was sent */
    (void)t_proc_finish(&proc, LONG_MS);       /* their handshake deadline */
    (void)t_proc_finish(&other, LONG_MS);
    assert_int_equal(failed(f, "timeout"), 2);
    check_clean(f);
}

/* A connection that waits for a buffer longer than header_timeout_ms is
 * closed without the plain 503 (counted in shed_no_buffer). */
static void one_buffer_short_wait(nea_config *cfg)
{
    cfg->conn_buffers = 1;
    cfg->header_timeout_ms = HANDSHAKE_MS / 3;
}

static int setup_short_wait(void **state)
{
    start(state, one_buffer_short_wait);
    return 0;
}

static void test_no_buffer_in_time_closes(void **state)
{
    h_fixture *f = *state;
    char args[128];
    snprintf(args, sizeof(args), "get %d /hello", f->port);
    py_ready(f, &other, args);
    snprintf(args, sizeof(args), "pre %d 160303010001000100", f->port); /* holds the buffer */
    py_ready(f, &proc, args);
    t_proc_say(&proc, "go\n");
    H_WAIT(f, h_st(f).conn_buffers_in_use == 1);
    t_proc_say(&other, "go\n");
    assert_int_equal(t_proc_finish(&other, LONG_MS), 1);
    assert_true(strstr(other.output, "error") != NULL);
    assert_int_equal(h_st(f).shed_no_buffer, 1);
    assert_int_equal(h_st(f).responses[5], 0);
    (void)t_proc_finish(&proc, LONG_MS);
    check_clean(f);
}

static void test_reload(void **state)
{
    h_fixture *f = *state;
    char args[64], err[256] = "";
    nea_tls_cert two = {.cert_file = cert_two, .key_file = key_two};
    nea_tls_cert bad = {.cert_file = cert_two, .key_file = key_enc};
    snprintf(args, sizeof(args), "fp %d /hello", f->port);
    must_contain(py(f, args), fp_one);
    assert_int_equal(nea_server_tls_reload(f->srv, &two, err, sizeof(err)), 0);
    must_contain(py(f, args), fp_two);
    assert_int_equal(nea_server_tls_reload(f->srv, &bad, err, sizeof(err)), NEA_ETLS_CERT);
    must_contain(err, "encrypted");
    must_contain(py(f, args), fp_two);
    check_clean(f);
}

static void test_metrics_and_stats(void **state)
{
    h_fixture *f = *state;
    char cmd[256];
    snprintf(cmd, sizeof(cmd),
             "exec curl -sSk --http1.1 --max-time 10 https://127.0.0.1:%d/metrics", f->port);
    const char *out = shell(f, cmd);
    must_contain(out, "nea_tls_handshakes_total{resumed=\"false\"} 1\n");
    must_contain(out, "nea_tls_failures_total{reason=\"plain_http\"} 0\n");
    assert_string_equal(nea_tls_reason_name(1), "plain_http");
    assert_null(nea_tls_reason_name(0));
    assert_null(nea_tls_reason_name(NEA_TLS_REASONS - 1));
}

/* --- clients that do not ----------------------------------------------------------------- */

static void test_plain_http_gets_400(void **state)
{
    h_fixture *f = *state;
    char args[160];
    /* "GET / HTTP/1.1\r\nHost: x\r\n\r\n" */
    snprintf(args, sizeof(args), "pre %d 474554202f20485454502f312e310d0a486f73743a20780d0a0d0a",
             f->port);
    must_contain(py(f, args), "HTTP/1.1 400 Bad Request");
    H_WAIT(f, failed(f, "plain_http") == 1);
    assert_int_equal(h_st(f).rejected_400, 1);
    check_clean(f);
}

static void test_garbage(void **state)
{
    h_fixture *f = *state;
    char args[128];
    snprintf(args, sizeof(args), "pre %d 0102030405060708090a0b0c0d0e0f", f->port);
    const char *out = py(f, args);
    assert_true(strstr(out, "closed") != NULL || strstr(out, "reset") != NULL);
    H_WAIT(f, failed(f, "not_tls") == 1);
    check_clean(f);
}

static void test_truncated_client_hello(void **state)
{
    h_fixture *f = *state;
    char args[128];
    snprintf(args, sizeof(args), "pre %d 16030100a0010000 shut", f->port);
    must_contain(py(f, args), "closed");
    H_WAIT(f, failed(f, "truncated") == 1);
    check_clean(f);
}

static void test_slow_handshake_meets_the_deadline(void **state)
{
    h_fixture *f = *state;
    char args[128];
    uint64_t t0 = h_now_ms();
    snprintf(args, sizeof(args), "pre %d 16030100a0010000", f->port);
    must_contain(py(f, args), "closed");
    assert_true(h_now_ms() - t0 >= HANDSHAKE_MS);
    assert_int_equal(failed(f, "timeout"), 1);
    check_clean(f);
}

/* A connection that only connects: the deadline too, without a buffer. */
static void test_silent_connection_meets_the_deadline(void **state)
{
    h_fixture *f = *state;
    int fd = h_connect(f);
    H_WAIT(f, h_st(f).connections_open == 1);
    assert_int_equal(h_st(f).conn_buffers_in_use, 0);
    assert_true(h_closed(f, fd, LONG_MS));
    close(fd);
    assert_int_equal(failed(f, "timeout"), 1);
    check_clean(f);
}

static void test_renegotiation_refused(void **state)
{
    h_fixture *f = *state;
    char cmd[256], args[128];
    const char *out;
    /* openssl s_client renegotiates when it reads "R" */
    snprintf(cmd, sizeof(cmd), "exec openssl s_client -connect 127.0.0.1:%d -tls1_2", f->port);
    t_proc_shell(&proc, &f->loop, cmd);
    assert_true(t_proc_wait_output(&proc, "Verify return code", LONG_MS));
    t_proc_say(&proc, "R\n");
    (void)t_proc_finish(&proc, LONG_MS); /* it ends when the server closes */
    must_contain(proc.output, "RENEGOTIATING");
    H_WAIT(f, failed(f, "renegotiation") == 1);
    /* and a raw handshake record after the handshake */
    snprintf(args, sizeof(args), "raw %d 160303001000112233445566778899aabbccddeeff", f->port);
    out = py(f, args);
    assert_true(strstr(out, "closed") != NULL || strstr(out, "reset") != NULL);
    H_WAIT(f, failed(f, "renegotiation") == 2);
    check_clean(f);
}

static void test_oversized_record(void **state)
{
    h_fixture *f = *state;
    char args[128];
    snprintf(args, sizeof(args), "raw %d 1703035000000102030405060708", f->port);
    const char *out = py(f, args);
    assert_true(strstr(out, "closed") != NULL || strstr(out, "reset") != NULL);
    H_WAIT(f, failed(f, "record_too_large") == 1);
    check_clean(f);
}

/* After the handshake the stream ends inside a record (its header
 * announces 64 bytes, 3 came): a truncation, closed and counted as such,
 * not taken for a half-close between records. */
static void test_truncated_record(void **state)
{
    h_fixture *f = *state;
    char args[128];
    snprintf(args, sizeof(args), "raw %d 1703030040aabbcc shut", f->port);
    must_contain(py(f, args), "closed");
    H_WAIT(f, failed(f, "truncated") == 1);
    check_clean(f);
}

static void short_write_timeout(nea_config *cfg)
{
    /* Long enough that the test sees the stalled write before it times out:
     * under valgrind, encrypting the /big answers takes one loop iteration
     * longer than 300 ms, and the deadline then passes within it. */
    cfg->write_timeout_ms = RUNNING_ON_VALGRIND ? 5000 : 300;
}

static int setup_write_timeout(void **state)
{
    start(state, short_write_timeout);
    return 0;
}

/* A client that asks for a lot and reads nothing: its response cannot be
 * written in time (closed, counted); others are served meanwhile. */
static void test_client_stops_reading(void **state)
{
    h_fixture *f = *state;
    char args[64];
    uint64_t timeouts = h_st(f).timeouts;
    snprintf(args, sizeof(args), "stall %d /big 4", f->port);
    py_start(f, &other, args);
    assert_true(t_proc_wait_output(&other, "sent", LONG_MS));
    H_WAIT(f, h_slots_in(f, NEA__C_WRITING) == 1);
    snprintf(args, sizeof(args), "get %d /hello", f->port);
    must_contain(py(f, args), "200 13");
    H_WAIT(f, h_st(f).timeouts == timeouts + 1);
    H_WAIT(f, h_st(f).connections_open == 0);
    t_proc_say(&other, "bye\n");
    (void)t_proc_finish(&other, LONG_MS);
    check_clean(f);
}

static void test_half_close_is_answered(void **state)
{
    h_fixture *f = *state;
    char args[64];
    snprintf(args, sizeof(args), "halfclose %d", f->port);
    must_contain(py(f, args), "HTTP/1.1 200 OK close_notify");
    check_clean(f);
    assert_int_equal(failed_total(f), 0);
}

static void short_keepalive(nea_config *cfg)
{
    cfg->keepalive_timeout_ms = 200;
}

static int setup_short_keepalive(void **state)
{
    start(state, short_keepalive);
    return 0;
}

/* An idle connection closed at its keep-alive deadline gets close_notify
 * (a buffer is borrowed for it). */
static void test_idle_close_sends_close_notify(void **state)
{
    h_fixture *f = *state;
    char args[64];
    snprintf(args, sizeof(args), "idle %d", f->port);
    must_contain(py(f, args), "HTTP/1.1 200 OK closed close_notify");
    check_clean(f);
}

static void test_reset_cancels_the_request(void **state)
{
    h_fixture *f = *state;
    char args[64];
    snprintf(args, sizeof(args), "reset %d /sleep/2000", f->port);
    must_contain(py(f, args), "reset sent");
    H_WAIT(f, t_defers_run == 1);
    check_clean(f);
}

/* While the loop sheds for CPU, new full handshakes are refused before
 * their public-key work; a resumed one, and a connection already open,
 * are served. */
static nea__load load_before;

static void force_shedding(h_fixture *f)
{
    nea__load *l = &f->srv->load;
    load_before = *l;
    l->shedding = true;
    l->budget_ns = 0;            /* every admission finds the budget spent */
    l->hold_ns = UINT64_MAX / 4; /* and it does not stop on its own */
    l->last_shed = uv_hrtime();
}

static void test_handshake_flood_while_shedding(void **state)
{
    h_fixture *f = *state;
    char cmd[512], args[64];
    snprintf(cmd, sizeof(cmd),
             "exec openssl s_client -connect 127.0.0.1:%d -tls1_2 -sess_out %s/flood.pem "
             "</dev/null",
             f->port, dir);
    must_contain(shell(f, cmd), "New, TLSv1.2");
    snprintf(args, sizeof(args), "park %d /metrics", f->port); /* an exempt route */
    py_start(f, &other, args);
    assert_true(t_proc_wait_output(&other, "got 0 200", LONG_MS));
    force_shedding(f);
    snprintf(cmd, sizeof(cmd),
             "for i in $(seq 20); do openssl s_client -connect 127.0.0.1:%d -tls1_2 "
             "</dev/null >/dev/null 2>&1 & done; wait; echo flood done",
             f->port);
    must_contain(shell(f, cmd), "flood done");
    H_WAIT(f, failed(f, "shed") == 20);
    snprintf(cmd, sizeof(cmd),
             "exec openssl s_client -connect 127.0.0.1:%d -tls1_2 -sess_in %s/flood.pem </dev/null",
             f->port, dir);
    must_contain(shell(f, cmd), "Reused, TLSv1.2");
    t_proc_say(&other, "next\n");
    assert_true(t_proc_wait_output(&other, "got 1 200", LONG_MS));
    /* Shedding over: the budget and hold as they were. */
    f->srv->load.shedding = false;
    f->srv->load.budget_ns = load_before.budget_ns;
    f->srv->load.hold_ns = load_before.hold_ns;
    t_proc_say(&other, "next\n");
    assert_int_equal(t_proc_finish(&other, LONG_MS), 0);
    assert_int_equal(h_st(f).tls_resumed, 1);
    check_clean(f);
}

/* --- WebSocket over TLS ----------------------------------------------------------------- */

/* Pings after a short silence, so an idle client is pinged within the
 * test; a ping not answered closes the connection soon. */
static void quick_pings(nea_config *cfg)
{
    cfg->ws_ping_interval_ms = RUNNING_ON_VALGRIND ? 1000 : 250;
    cfg->ws_pong_timeout_ms = RUNNING_ON_VALGRIND ? 5000 : 1000;
}

static int setup_quick_pings(void **state)
{
    start(state, quick_pings);
    return 0;
}

/* Ends the client (killed if it still runs), so that a failed test leaves
 * no handle open on the loop. */
static void stop_client(t_proc *p)
{
    if (!p->exited) {
        uv_process_kill(&p->proc, SIGKILL);
    }
    (void)t_proc_finish(p, LONG_MS);
}

/* Runs the loop until p's output holds needle; fails showing the output. */
static void expect_output(t_proc *p, const char *needle)
{
    if (!t_proc_wait_output(p, needle, LONG_MS)) {
        stop_client(p);
        fail_msg("expected \"%s\" from the client; it said:\n%s", needle, p->output);
    }
}

/* H_WAIT while the client p runs: a failure ends the client first. */
#define CLIENT_WAIT(f, p, cond)                                                                    \
    do {                                                                                           \
        uint64_t end_ = h_now_ms() + H_DEADLINE_MS;                                                \
        while (!(cond) && h_now_ms() < end_) {                                                     \
            h_step((f), 5);                                                                        \
        }                                                                                          \
        if (!(cond)) {                                                                             \
            stop_client(p);                                                                        \
            fail_msg("not within %u ms: %s; the client said:\n%s", H_DEADLINE_MS, #cond,           \
                     (p)->output);                                                                 \
        }                                                                                          \
    } while (0)

/* The WebSocket connection is open and idle, and holds its slot only: its
 * connection buffer (with the TLS record buffers) went back to the pool. */
static bool wss_idle_holds_nothing(h_fixture *f)
{
    nea_stats st = h_st(f);
    return st.connections_open == 1 && st.ws_open == 1 && st.conn_buffers_in_use == 0 &&
           h_arenas_in_use(f) == 0 && h_slots_in(f, NEA__C_WS_IDLE) == 1;
}

/* python3-websockets over TLS: text and binary messages echoed exactly
 * (the binary one, 40,000 bytes, spans three TLS records and ten read
 * buffers); idle, the connection gives its buffer back, is pinged over
 * TLS and answers (a second ping comes only after the first was
 * answered); the client's close with 1000 is echoed and reported. */
static void test_wss_echo_pings_and_close(void **state)
{
    h_fixture *f = *state;
    char cmd[512];
    nea_stats st;

    if (system("/usr/bin/python3 -c 'import websockets' 2>/dev/null") != 0) {
        print_message("python3-websockets is not installed (scripts/install-deps.sh): skipped\n");
        skip();
    }
    snprintf(cmd, sizeof(cmd), "exec /usr/bin/python3 %s echo %d", wss_py, f->port);
    t_proc_shell(&proc, &f->loop, cmd);
    expect_output(&proc, "echoed 5");
    CLIENT_WAIT(f, &proc, wss_idle_holds_nothing(f));
    expect_output(&proc, "pong 2");
    CLIENT_WAIT(f, &proc, wss_idle_holds_nothing(f)); /* after the pings too */
    t_proc_say(&proc, "close\n");
    if (t_proc_finish(&proc, LONG_MS) != 0) {
        fail_msg("the client failed:\n%s", proc.output);
    }
    must_contain(proc.output, "closed 1000");
    assert_int_equal(wss.opened, 1);
    assert_int_equal(wss.messages, 5);
    H_WAIT(f, wss.closed == 1);
    assert_int_equal(wss.close_code, 1000);
    st = h_st(f);
    assert_int_equal(st.ws_upgraded, 1);
    assert_int_equal(st.ws_messages_in, 5);
    assert_int_equal(st.ws_messages_out, 5);
    assert_int_equal(st.ws_failed, 0);
    assert_int_equal(st.tls_handshakes, 1);
    assert_int_equal(failed_total(f), 0);
    check_clean(f);
    assert_int_equal(h_st(f).ws_open, 0);
}

/* A client that sends a frame's masked head and part of its payload over
 * TLS, then resets the TCP connection: the message's arena, the buffer
 * and the slot come back; the route hears 1006; no handler ran. */
static void test_wss_reset_mid_frame(void **state)
{
    h_fixture *f = *state;
    char cmd[512];

    snprintf(cmd, sizeof(cmd), "exec /usr/bin/python3 %s reset %d", wss_py, f->port);
    t_proc_shell(&proc, &f->loop, cmd);
    expect_output(&proc, "sent");
    CLIENT_WAIT(f, &proc,
                h_arenas_in_use(f) == 1 && h_slots_in(f, NEA__C_WS_FRAME) == 1 &&
                    h_st(f).ws_open == 1 && h_st(f).conn_buffers_in_use == 1);
    t_proc_say(&proc, "reset\n");
    if (t_proc_finish(&proc, LONG_MS) != 0) {
        fail_msg("the client failed:\n%s", proc.output);
    }
    must_contain(proc.output, "reset sent");
    H_WAIT(f, wss.closed == 1);
    assert_int_equal(wss.close_code, 1006);
    assert_int_equal(wss.messages, 0);
    H_WAIT(f, h_st(f).connections_open == 0 && h_st(f).ws_open == 0 &&
                  h_st(f).conn_buffers_in_use == 0 && h_arenas_in_use(f) == 0 &&
                  f->srv->env.reqs.live == 0);
    assert_int_equal(h_st(f).ws_messages_in, 0);
    check_clean(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_plan_and_start_line, setup, h_test_teardown),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test_setup_teardown(test_curl_keepalive, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_python_tls12_and_tls13, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_openssl_resumption, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_pipelined, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_in_order_once, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_streamed_response_and_file, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_streamed_upload_and_continue, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_resumption_across_workers, setup_workers,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_idle_connection_holds_no_buffer, setup_one_buffer,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_handshake_waits_for_a_buffer, setup_one_buffer,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_no_slot_closes, setup_two_slots, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_no_buffer_in_time_closes, setup_short_wait,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_reload, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_metrics_and_stats, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_plain_http_gets_400, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_garbage, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_truncated_client_hello, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_slow_handshake_meets_the_deadline, setup,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_silent_connection_meets_the_deadline, setup,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_renegotiation_refused, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_oversized_record, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_truncated_record, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_client_stops_reading, setup_write_timeout,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_half_close_is_answered, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_idle_close_sends_close_notify, setup_short_keepalive,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_reset_cancels_the_request, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_handshake_flood_while_shedding, setup,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_wss_echo_pings_and_close, setup_quick_pings,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_wss_reset_mid_frame, setup, h_test_teardown),
    };
    return cmocka_run_group_tests(tests, make_certs, remove_certs);
}
