/*
 * hello.c - the smallest libnea embedding: a server on the host's own loop
 * answering GET /hello. Stop it with Ctrl-C.
 */
#include <nea.h>

#include <signal.h>
#include <stdio.h>

static void hello(nea_req *req, void *data)
{
    static const char body[] = "Hello, World!";
    (void)data;
    nea_respond_static(req, 200, "text/plain", body, sizeof(body) - 1);
}

static void on_sigint(uv_signal_t *h, int signum)
{
    (void)signum;
    uv_close((uv_handle_t *)h, NULL);
    nea_server_close(h->data, NULL, NULL);
}

int main(void)
{
    uv_loop_t *loop = uv_default_loop();
    nea_config cfg;
    nea_server *srv;
    uv_signal_t sig;
    int rc;

    nea_config_init(&cfg);
    if ((rc = nea_server_new(loop, &cfg, &srv)) != 0 ||
        (rc = nea_server_route(srv, "GET", "/hello", hello, NULL)) != 0 ||
        (rc = nea_server_listen(srv)) != 0) {
        fprintf(stderr, "nea-hello: %s\n", nea_strerror(rc));
        return 1;
    }
    printf("listening on http://%s:%d\n", cfg.host, nea_server_port(srv));
    fflush(stdout);
    uv_signal_init(loop, &sig);
    sig.data = srv;
    uv_signal_start(&sig, on_sigint, SIGINT);
    uv_run(loop, UV_RUN_DEFAULT);
    return uv_loop_close(loop) == 0 ? 0 : 1;
}
