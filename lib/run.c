/*
 * run.c - nea_run, the convenience entry point that owns a loop.
 *
 * For programs whose only job is serving HTTP: a private loop, the server,
 * and SIGINT/SIGTERM handlers that start a graceful drain. The run ends
 * when the server has closed, whoever closed it (the host may, from
 * ready_cb's handlers or after nea_server_upgrade). Hosts with their own
 * loop use nea_server_new and friends directly.
 */
#include "log.h"
#include "server.h"

#include <signal.h>

typedef struct run_state {
    nea_server *srv;
    uv_signal_t sigint, sigterm;
    int signum;
} run_state;

static void on_signal(uv_signal_t *h, int signum)
{
    run_state *st = h->data;
    if (st->signum != 0) {
        return;
    }
    st->signum = signum;
    nea__log(&st->srv->cfg, NEA_LOG_INFO, "signal %d: draining", signum);
    uv_close((uv_handle_t *)&st->sigint, NULL);
    uv_close((uv_handle_t *)&st->sigterm, NULL);
    (void)nea_server_close(st->srv, NULL, NULL);
}

int nea_run(const nea_config *cfg, const nea_route *routes, size_t n,
            void (*ready_cb)(nea_server *s, void *data), void *data)
{
    uv_loop_t loop;
    run_state st = {0};
    int rc = uv_loop_init(&loop);

    if (rc != 0) {
        return rc;
    }
    rc = nea_server_new(&loop, cfg, &st.srv);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = nea_server_add_route(st.srv, &routes[i]);
    }
    if (rc == 0) {
        rc = nea_server_listen(st.srv);
    }
    if (rc != 0) {
        if (st.srv != NULL) {
            (void)nea_server_close(st.srv, NULL, NULL);
            uv_run(&loop, UV_RUN_DEFAULT);
        }
        uv_loop_close(&loop);
        return rc;
    }
    uv_signal_init(&loop, &st.sigint);
    uv_signal_init(&loop, &st.sigterm);
    st.sigint.data = st.sigterm.data = &st;
    uv_signal_start(&st.sigint, on_signal, SIGINT);
    uv_signal_start(&st.sigterm, on_signal, SIGTERM);
    /* The server keeps the loop alive, the signal handlers do not: the run
     * also ends when the host closes the server itself (after an upgrade,
     * nea_server_upgrade). */
    uv_unref((uv_handle_t *)&st.sigint);
    uv_unref((uv_handle_t *)&st.sigterm);
    if (ready_cb != NULL) {
        ready_cb(st.srv, data);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    if (st.signum == 0) {
        uv_close((uv_handle_t *)&st.sigint, NULL);
        uv_close((uv_handle_t *)&st.sigterm, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    return uv_loop_close(&loop);
}
