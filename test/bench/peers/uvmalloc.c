/*
 * uvmalloc: libnea's stack without libnea's bounds. One libuv loop, llhttp
 * for parsing, and the general heap for everything: a malloc'd connection,
 * a malloc'd read buffer per read, a growing URL and body per request, a
 * malloc'd response buffer and write request per batch of responses.
 *
 * Responses to the requests found in one read (pipelining) are appended to
 * one buffer and sent with one uv_write, in order. A request that asks for
 * Connection: close (or an HTTP/1.0 request without keep-alive) is answered
 * and then the connection is closed; bytes after it are ignored. A parse
 * error is answered with 400 and the connection is closed.
 *
 *   uvmalloc --port N
 */
#include <signal.h>
#include <uv.h>

#include "llhttp.h"

#include "common.h"

#define READ_CHUNK 65536

struct conn {
    uv_tcp_t tcp;
    llhttp_t parser;
    char *url;
    size_t url_len;
    char *body;
    size_t body_len;
    struct peer_buf out; /* responses produced by the current read */
    int closing;         /* answer what is in out, then close */
};

struct write_req {
    uv_write_t req;
    struct conn *conn;
    char *data;
    int close_after;
};

static llhttp_settings_t settings;

static int append(char **buf, size_t *len, const char *at, size_t n)
{
    char *p = realloc(*buf, *len + n + 1);
    if (!p)
        return -1;
    memcpy(p + *len, at, n);
    *len += n;
    p[*len] = '\0';
    *buf = p;
    return 0;
}

static void free_request(struct conn *c)
{
    free(c->url);
    free(c->body);
    c->url = c->body = NULL;
    c->url_len = c->body_len = 0;
}

static void respond(struct conn *c, int status, const char *ctype, const char *body, size_t len)
{
    const char *reason = status == 200 ? "OK" : status == 400 ? "Bad Request" : status == 404 ? "Not Found" : "Internal Server Error";
    const char *conn_hdr = "";
    char head[256];
    int n;

    if (c->closing)
        conn_hdr = "Connection: close\r\n";
    else if (c->parser.http_major == 1 && c->parser.http_minor == 0)
        conn_hdr = "Connection: keep-alive\r\n";
    n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s\r\n",
                 status, reason, ctype, len, conn_hdr);
    if (peer_buf_put(&c->out, head, (size_t)n) || peer_buf_put(&c->out, body, len)) {
        /* Out of memory for the response itself: drop the connection. */
        c->closing = 1;
    }
}

static void handle(struct conn *c)
{
    int method = llhttp_get_method(&c->parser);
    const char *path = c->url ? c->url : "";
    size_t plen = strcspn(path, "?");

    if (method == HTTP_GET && plen == 6 && memcmp(path, "/hello", 6) == 0) {
        respond(c, 200, "text/plain", PEER_HELLO, PEER_HELLO_LEN);
    } else if (method == HTTP_GET && plen > 7 && memcmp(path, "/alloc/", 7) == 0) {
        unsigned long kib;
        char num[24];
        int n;
        if (peer_parse_kib(path + 7, plen - 7, &kib))
            respond(c, 400, "text/plain", "bad size\n", 9);
        else if ((n = peer_alloc_work(kib, num)) < 0)
            respond(c, 500, "text/plain", "out of memory\n", 14);
        else
            respond(c, 200, "text/plain", num, (size_t)n);
    } else if (method == HTTP_POST && plen == 4 && memcmp(path, "/svg", 4) == 0) {
        char *svg = NULL;
        size_t svg_len = 0;
        int rc = peer_svg_build(c->body ? c->body : "", c->body_len, &svg, &svg_len);
        if (rc == 0) {
            respond(c, 200, "image/svg+xml", svg, svg_len);
            free(svg);
        } else if (rc == -1) {
            respond(c, 400, "text/plain", "malformed csv\n", 14);
        } else {
            respond(c, 500, "text/plain", "out of memory\n", 14);
        }
    } else {
        respond(c, 404, "text/plain", "not found\n", 10);
    }
}

static int on_message_begin(llhttp_t *p)
{
    free_request(p->data);
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    struct conn *c = p->data;
    return append(&c->url, &c->url_len, at, n) ? -1 : 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    struct conn *c = p->data;
    return append(&c->body, &c->body_len, at, n) ? -1 : 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    if (!llhttp_should_keep_alive(p))
        c->closing = 1;
    handle(c);
    free_request(c);
    /* Stop parsing after a closing request: the rest of the read is ignored. */
    return c->closing ? HPE_PAUSED : 0;
}

static void on_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    free_request(c);
    free(c->out.data);
    free(c);
}

static void close_conn(struct conn *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_written(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    if (status < 0 || w->close_after)
        close_conn(w->conn);
    free(w->data);
    free(w);
}

static void flush(struct conn *c)
{
    struct write_req *w;
    uv_buf_t buf;

    if (c->out.len == 0) {
        if (c->closing)
            close_conn(c);
        return;
    }
    w = malloc(sizeof *w);
    if (!w) {
        close_conn(c);
        return;
    }
    w->conn = c;
    w->data = c->out.data;
    w->close_after = c->closing;
    buf = uv_buf_init(w->data, (unsigned)c->out.len);
    c->out.data = NULL;
    c->out.len = c->out.cap = 0;
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_written) < 0) {
        free(w->data);
        free(w);
        close_conn(c);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = malloc(READ_CHUNK);
    buf->len = buf->base ? READ_CHUNK : 0;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = s->data;

    if (n > 0 && !c->closing) {
        llhttp_errno_t err = llhttp_execute(&c->parser, buf->base, (size_t)n);
        if (err != HPE_OK && !c->closing) {
            c->closing = 1;
            respond(c, 400, "text/plain", "bad request\n", 12);
        }
        if (c->closing)
            uv_read_stop(s);
        flush(c);
    } else if (n < 0) {
        close_conn(c);
    }
    free(buf->base);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct conn *c;

    if (status < 0)
        return;
    c = calloc(1, sizeof *c);
    if (!c)
        return;
    uv_tcp_init(server->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        close_conn(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    c->parser.data = c;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int main(int argc, char **argv)
{
    int port = peer_parse_port(argc, argv, "uvmalloc");
    uv_loop_t *loop = uv_default_loop();
    uv_tcp_t server;
    struct sockaddr_in addr;
    int rc;

    signal(SIGPIPE, SIG_IGN);
    llhttp_settings_init(&settings);
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;

    uv_ip4_addr("127.0.0.1", port, &addr);
    uv_tcp_init(loop, &server);
    if ((rc = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0)) < 0 ||
        (rc = uv_listen((uv_stream_t *)&server, 1024, on_connection)) < 0) {
        fprintf(stderr, "uvmalloc: listen on 127.0.0.1:%d: %s\n", port, uv_strerror(rc));
        return 1;
    }
    printf("uvmalloc listening on http://127.0.0.1:%d\n", port);
    fflush(stdout);
    return uv_run(loop, UV_RUN_DEFAULT);
}
