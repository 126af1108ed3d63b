/*
 * harness.c - see harness.h.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

unsigned h_defers_run;
size_t h_big_len = 8u << 20;
static char *big_body;

uint64_t h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void on_log(void *data, int level, const char *msg)
{
    h_fixture *f = data;
    size_t n = strlen(msg);
    (void)level;
    if (f->log_len + n + 2 < sizeof(f->log)) {
        memcpy(f->log + f->log_len, msg, n);
        f->log_len += n;
        f->log[f->log_len++] = '\n';
        f->log[f->log_len] = '\0';
    }
}

void h_config(nea_config *cfg)
{
    nea_config_init(cfg);
    cfg->port = 0;
    cfg->memory_limit = 16u << 20;
    cfg->arena_size = 64u << 10;
    cfg->arena_count = 8;
    cfg->max_connections = 32;
    cfg->read_buffer_size = 4096;
    cfg->max_body_size = 32u << 10;
}

/* --- handlers --------------------------------------------------------------- */

static void r_hello(nea_req *req, void *d)
{
    (void)d;
    nea_respond(req, 200, "text/plain", "Hello, World!", 13);
}

static void r_echo(nea_req *req, void *d)
{
    size_t n;
    const char *b = nea_req_body(req, &n);
    (void)d;
    nea_respond(req, 200, "application/octet-stream", b, n);
}

static void r_hdr(nea_req *req, void *d)
{
    const char *v = nea_req_header(req, "x-test");
    char *s = nea_printf(req, "%s|%s", v != NULL ? v : "(none)", nea_req_query(req));
    (void)d;
    nea_respond(req, 200, "text/plain", s, strlen(s));
}

static void r_prefix(nea_req *req, void *d)
{
    const char *t = nea_req_path_tail(req);
    (void)d;
    nea_respond(req, 200, "text/plain", t, strlen(t));
}

static void r_alloc(nea_req *req, void *d)
{
    size_t n = (size_t)strtoull(nea_req_path_tail(req), NULL, 10);
    char *p = nea_alloc(req, n);
    (void)d;
    memset(p, 1, n);
    nea_respond(req, 200, "text/plain", "ok", 2);
}

static void count_defer(void *arg)
{
    (void)arg;
    h_defers_run++;
}

static void sleep_done(nea_req *req, void *arg)
{
    (void)arg;
    nea_respond(req, 200, "text/plain", "slept", 5);
}

static void on_sleep(uv_timer_t *t)
{
    nea_req_run(t->data, sleep_done, NULL);
}

static void r_sleep(nea_req *req, void *d)
{
    uv_timer_t *t = nea_req_timer(req);
    (void)d;
    assert_int_equal(nea_req_defer(req, count_defer, NULL), 0);
    t->data = req;
    uv_timer_start(t, on_sleep, strtoull(nea_req_path_tail(req), NULL, 10), 0);
}

static void r_big(nea_req *req, void *d)
{
    (void)d;
    nea_respond_static(req, 200, "application/octet-stream", big_body, h_big_len);
}

static void r_respond_then_oom(nea_req *req, void *d)
{
    (void)d;
    nea_respond(req, 200, "text/plain", "early", 5);
    (void)nea_alloc(req, SIZE_MAX / 2);
}

/* --- fixture ----------------------------------------------------------------- */

void h_start(h_fixture *f, const nea_config *cfg)
{
    memset(f, 0, sizeof(*f));
    h_defers_run = 0;
    if (big_body == NULL) {
        big_body = malloc(h_big_len);
        memset(big_body, 'b', h_big_len);
    }
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->cfg = *cfg;
    f->cfg.log = on_log;
    f->cfg.log_data = f;
    assert_int_equal(nea_server_new(&f->loop, &f->cfg, &f->srv), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/hello", r_hello, NULL), 0);
    assert_int_equal(nea_server_route(f->srv, "POST", "/hello", r_hello, NULL), 0);
    assert_int_equal(nea_server_route(f->srv, "POST", "/echo", r_echo, NULL), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/hdr", r_hdr, NULL), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/p/", r_prefix, NULL), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/alloc/", r_alloc, NULL), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/sleep/", r_sleep, NULL), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/big", r_big, NULL), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/respond-then-oom", r_respond_then_oom, NULL),
                     0);
    assert_int_equal(nea_server_listen(f->srv), 0);
    f->port = nea_server_port(f->srv);
    assert_true(f->port > 0);
}

static void on_closed(nea_server *s, void *data)
{
    (void)s;
    ((h_fixture *)data)->closed = true;
}

void h_close(h_fixture *f)
{
    f->close_called = true;
    nea_server_close(f->srv, on_closed, f);
}

void h_stop(h_fixture *f)
{
    uint64_t deadline = h_now_ms() + H_DEADLINE_MS;
    if (!f->close_called) {
        h_close(f);
    }
    while (!f->closed && h_now_ms() < deadline) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    assert_true(f->closed);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

void h_stats(h_fixture *f, nea_stats *st)
{
    nea_server_stats(f->srv, st);
}

/* Waits for the loop or fd (if >= 0) to have something, at most ms. */
static void wait_some(h_fixture *f, int fd, int ms)
{
    struct pollfd p[2] = {{uv_backend_fd(&f->loop), POLLIN, 0}, {fd, POLLIN, 0}};
    int t = uv_backend_timeout(&f->loop);
    if (t < 0 || t > ms) {
        t = ms;
    }
    poll(p, fd >= 0 ? 2 : 1, t);
}

void h_pump(h_fixture *f, unsigned ms, const bool *done)
{
    uint64_t end = h_now_ms() + ms;
    do {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        if (done != NULL && *done) {
            return;
        }
        wait_some(f, -1, (int)(end > h_now_ms() ? end - h_now_ms() : 0));
    } while (h_now_ms() < end);
    uv_run(&f->loop, UV_RUN_NOWAIT);
}

int h_connect(h_fixture *f)
{
    struct sockaddr_in a = {0};
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    assert_true(fd >= 0);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)f->port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    return fd;
}

void h_send(h_fixture *f, int fd, const char *data, size_t len)
{
    uint64_t end = h_now_ms() + H_DEADLINE_MS;
    while (len > 0 && h_now_ms() < end) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
        } else if (n < 0 && errno != EAGAIN) {
            return; /* peer closed: callers check the outcome */
        }
        uv_run(&f->loop, UV_RUN_NOWAIT);
    }
    uv_run(&f->loop, UV_RUN_NOWAIT);
}

void h_sends(h_fixture *f, int fd, const char *s)
{
    h_send(f, fd, s, strlen(s));
}

const char *h_header(const h_response *r, const char *name, char *buf, size_t len)
{
    size_t n = strlen(name);
    const char *p = strstr(r->head, "\r\n");
    while (p != NULL && p[2] != '\r') {
        p += 2;
        if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1, *e = strstr(v, "\r\n");
            while (*v == ' ') {
                v++;
            }
            snprintf(buf, len, "%.*s", (int)(e - v), v);
            return buf;
        }
        p = strstr(p, "\r\n");
    }
    return NULL;
}

/* Reads into r until a complete response is parsed. A connection's bytes
 * beyond one response stay in the kernel (recv with MSG_PEEK first). */
int h_read(h_fixture *f, int fd, h_response *r, unsigned timeout_ms)
{
    static char buf[1 << 20];
    uint64_t end = h_now_ms() + timeout_ms;
    size_t have = 0;

    memset(r, 0, sizeof(*r));
    r->status = -1;
    for (;;) {
        ssize_t n = recv(fd, buf + have, sizeof(buf) - have - 1, MSG_PEEK);
        if (n > 0 && (size_t)n > have) {
            char *hend;
            buf[n] = '\0';
            hend = strstr(buf, "\r\n\r\n");
            if (hend != NULL) {
                size_t hlen = (size_t)(hend - buf) + 4, clen = 0;
                char v[32];
                int status = atoi(buf + 9);
                bool bodyless = status == 100 || status == 204 || status == 304;
                snprintf(r->head, sizeof(r->head), "%.*s", (int)hlen, buf);
                if (h_header(r, "content-length", v, sizeof(v)) != NULL) {
                    clen = (size_t)strtoull(v, NULL, 10);
                }
                if (bodyless || f->head_request) {
                    clen = 0;
                }
                if ((size_t)n >= hlen + clen) {
                    /* consume exactly this response */
                    size_t take = hlen + clen;
                    recv(fd, buf, take, 0);
                    r->status = status;
                    r->body_len = clen < sizeof(r->body) ? clen : sizeof(r->body) - 1;
                    memcpy(r->body, buf + hlen, r->body_len);
                    return status;
                }
            }
        } else if (n == 0 || (n < 0 && errno != EAGAIN)) {
            return -1;
        }
        if (h_now_ms() >= end) {
            return -1;
        }
        uv_run(&f->loop, UV_RUN_NOWAIT);
        wait_some(f, fd, 10);
    }
}

bool h_closed(h_fixture *f, int fd, unsigned timeout_ms)
{
    char buf[4096];
    uint64_t end = h_now_ms() + timeout_ms;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN)) {
            return true;
        }
        if (h_now_ms() >= end) {
            return false;
        }
        uv_run(&f->loop, UV_RUN_NOWAIT);
        wait_some(f, fd, 10);
    }
}

bool h_quiet(h_fixture *f, int fd, unsigned ms)
{
    char c;
    uint64_t end = h_now_ms() + ms;
    while (h_now_ms() < end) {
        ssize_t n = recv(fd, &c, 1, MSG_PEEK);
        if (n >= 0 || errno != EAGAIN) {
            return false;
        }
        uv_run(&f->loop, UV_RUN_NOWAIT);
        wait_some(f, fd, 10);
    }
    return true;
}

int h_request(h_fixture *f, const char *raw, h_response *r)
{
    int fd = h_connect(f), status;
    h_sends(f, fd, raw);
    status = h_read(f, fd, r, H_DEADLINE_MS);
    close(fd);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    return status;
}
