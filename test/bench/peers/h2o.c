/*
 * h2o: the benchmark routes on libh2o. Debian's libh2o-dev (2.2.5) is built
 * against libuv (there is no libh2o-evloop package), so this runs one libuv
 * loop in one thread, accepting with uv_listen and handing each socket to
 * h2o_accept. h2o buffers a request body completely before calling the
 * handler (req->entity), keeps connections alive and answers pipelined
 * requests in order.
 *
 *   h2o --port N
 */
#include <signal.h>
#include <uv.h>

#include <h2o.h>

#include "common.h"

static h2o_globalconf_t config;
static h2o_context_t ctx;
static h2o_accept_ctx_t accept_ctx;

static void send_body(h2o_req_t *req, int status, const char *reason, const char *ctype, const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = reason;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype, strlen(ctype));
    req->res.content_length = len; /* else h2o 2.2 answers chunked */
    h2o_send_inline(req, body, len); /* copies body into the request's pool */
}

static int is_exact(h2o_req_t *req, const char *path)
{
    size_t n = strlen(path);
    return req->path_normalized.len == n && memcmp(req->path_normalized.base, path, n) == 0;
}

static int on_hello(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) || !is_exact(req, "/hello"))
        return -1; /* not ours: h2o answers 404 */
    send_body(req, 200, "OK", "text/plain", PEER_HELLO, PEER_HELLO_LEN);
    return 0;
}

static int on_alloc(h2o_handler_t *self, h2o_req_t *req)
{
    unsigned long kib;
    char num[24];
    int n;
    (void)self;
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")))
        return -1;
    /* registered on "/alloc": the path is "/alloc/N" */
    if (req->path_normalized.len <= 7 ||
        peer_parse_kib(req->path_normalized.base + 7, req->path_normalized.len - 7, &kib)) {
        send_body(req, 400, "Bad Request", "text/plain", "bad size\n", 9);
        return 0;
    }
    if ((n = peer_alloc_work(kib, num)) < 0)
        send_body(req, 500, "Internal Server Error", "text/plain", "out of memory\n", 14);
    else
        send_body(req, 200, "OK", "text/plain", num, (size_t)n);
    return 0;
}

static int on_svg(h2o_handler_t *self, h2o_req_t *req)
{
    char *svg = NULL;
    size_t svg_len = 0;
    int rc;
    (void)self;
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST")) || !is_exact(req, "/svg"))
        return -1;
    rc = peer_svg_build(req->entity.base ? req->entity.base : "", req->entity.base ? req->entity.len : 0, &svg,
                        &svg_len);
    if (rc == 0) {
        send_body(req, 200, "OK", "image/svg+xml", svg, svg_len);
        free(svg);
    } else if (rc == -1) {
        send_body(req, 400, "Bad Request", "text/plain", "malformed csv\n", 14);
    } else {
        send_body(req, 500, "Internal Server Error", "text/plain", "out of memory\n", 14);
    }
    return 0;
}

static void route(h2o_hostconf_t *host, const char *path, int (*fn)(h2o_handler_t *, h2o_req_t *))
{
    h2o_pathconf_t *pc = h2o_config_register_path(host, path, 0);
    h2o_handler_t *h = h2o_create_handler(pc, sizeof *h);
    h->on_req = fn;
}

static void on_connection(uv_stream_t *listener, int status)
{
    uv_tcp_t *conn;
    h2o_socket_t *sock;

    if (status != 0)
        return;
    conn = h2o_mem_alloc(sizeof *conn);
    uv_tcp_init(listener->loop, conn);
    if (uv_accept(listener, (uv_stream_t *)conn) != 0) {
        uv_close((uv_handle_t *)conn, (uv_close_cb)free);
        return;
    }
    uv_tcp_nodelay(conn, 1);
    sock = h2o_uv_socket_create((uv_stream_t *)conn, (uv_close_cb)free);
    h2o_accept(&accept_ctx, sock);
}

int main(int argc, char **argv)
{
    int port = peer_parse_port(argc, argv, "h2o");
    uv_loop_t *loop = uv_default_loop();
    static uv_tcp_t listener;
    struct sockaddr_in addr;
    h2o_hostconf_t *host;
    int rc;

    signal(SIGPIPE, SIG_IGN);
    h2o_config_init(&config);
    host = h2o_config_register_host(&config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    route(host, "/hello", on_hello);
    route(host, "/alloc", on_alloc);
    route(host, "/svg", on_svg);

    h2o_context_init(&ctx, loop, &config);
    accept_ctx.ctx = &ctx;
    accept_ctx.hosts = config.hosts;

    uv_ip4_addr("127.0.0.1", port, &addr);
    uv_tcp_init(loop, &listener);
    if ((rc = uv_tcp_bind(&listener, (const struct sockaddr *)&addr, 0)) < 0 ||
        (rc = uv_listen((uv_stream_t *)&listener, 1024, on_connection)) < 0) {
        fprintf(stderr, "h2o: listen on 127.0.0.1:%d: %s\n", port, uv_strerror(rc));
        return 1;
    }
    printf("h2o listening on http://127.0.0.1:%d\n", port);
    fflush(stdout);
    return uv_run(loop, UV_RUN_DEFAULT);
}
