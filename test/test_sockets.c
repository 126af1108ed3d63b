/*
 * test_sockets.c - a server's listening sockets (sockets.c), the parts the
 * other tests do not reach: a single server with reuse_port that joins a
 * group whose round-robin program belongs to another server detaches it
 * (and gets its share), and a server left alone in its group attaches its
 * program again at its next look. Where the program cannot be loaded (no
 * CAP_BPF) they are skipped.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "e2e.h"

static uv_loop_t *y_loop;

/* GET /who: "x" from the first server, "y" from the second. */
static void who(nea_req *req, void *data)
{
    (void)data;
    nea_respond(req, 200, "text/plain", nea_req_loop(req) == y_loop ? "y" : "x", 1);
}

static void quiet(void *data, int level, const char *msg)
{
    (void)data;
    (void)level;
    (void)msg;
}

typedef struct server {
    uv_loop_t *loop;
    nea_server *srv;
    bool closed;
    t_log log;
} server;

static void on_closed(nea_server *s, void *data)
{
    (void)s;
    ((server *)data)->closed = true;
}

static void start(server *sv, uv_loop_t *loop, unsigned workers, int reuse, int port)
{
    nea_config cfg;
    memset(sv, 0, sizeof(*sv));
    sv->loop = loop;
    h_config(&cfg);
    cfg.workers = workers;
    cfg.reuse_port = reuse;
    cfg.port = port;
    t_log_attach(&sv->log, &cfg);
    if (workers > 1) {
        cfg.log = quiet; /* worker threads log too: not into a shared buffer */
    }
    assert_int_equal(nea_server_new(loop, &cfg, &sv->srv), 0);
    assert_int_equal(nea_server_route(sv->srv, "GET", "/who", who, NULL), 0);
    assert_int_equal(nea_server_listen(sv->srv), 0);
}

static void stop(server *sv)
{
    assert_int_equal(nea_server_close(sv->srv, on_closed, sv), 0);
    s_pump(sv->loop, H_DEADLINE_MS, &sv->closed);
    assert_true(sv->closed);
}

/* Requests on one loop, both servers' loops run by the caller: which one
 * answered (both servers' handlers run on this thread). */
static char ask(uv_loop_t *a, uv_loop_t *b, int port)
{
    s_response r;
    int fd = s_connect(a, port);
    static const char req[] = "GET /who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    s_send(a, fd, req, sizeof(req) - 1);
    for (uint64_t end = s_now_ms() + S_DEADLINE_MS; s_now_ms() < end;) {
        uv_run(b, UV_RUN_NOWAIT);
        if (s_read(a, fd, &r, false, 5) == 200) {
            close(fd);
            return r.body[0];
        }
    }
    close(fd);
    fail_msg("no answer");
    return 0;
}

static void test_single_server_joining_detaches_the_program(void **state)
{
    uv_loop_t lx, ly;
    server x, y;
    unsigned got_y = 0;
    (void)state;
    assert_int_equal(uv_loop_init(&lx), 0);
    assert_int_equal(uv_loop_init(&ly), 0);
    y_loop = &ly;
    start(&x, &lx, 2, 0, 0);
    if (!x.srv->balance.attached) {
        stop(&x);
        assert_int_equal(uv_loop_close(&lx), 0);
        assert_int_equal(uv_loop_close(&ly), 0);
        skip(); /* no program here: nothing to detach */
    }
    /* One more server, one worker, reuse_port: it joins X's group. Under
     * X's program it would never get a connection. */
    start(&y, &ly, 1, 1, nea_server_port(x.srv));
    assert_true(t_log_has(&y.log, "its round-robin program is detached"));
    for (int i = 0; i < 90; i++) {
        got_y += ask(&lx, &ly, nea_server_port(x.srv)) == 'y';
    }
    print_message("the joining server answered %u of 90\n", got_y);
    assert_true(got_y >= 10); /* about a third: 3 sockets, the kernel's hash */
    stop(&y);
    stop(&x);
    assert_int_equal(uv_loop_close(&lx), 0);
    assert_int_equal(uv_loop_close(&ly), 0);
}

static void test_alone_again_the_program_comes_back(void **state)
{
    uv_loop_t lx, ly;
    server x, y;
    (void)state;
    assert_int_equal(uv_loop_init(&lx), 0);
    assert_int_equal(uv_loop_init(&ly), 0);
    y_loop = &ly;
    start(&x, &lx, 2, 0, 0);
    if (!x.srv->balance.attached) {
        stop(&x);
        assert_int_equal(uv_loop_close(&lx), 0);
        assert_int_equal(uv_loop_close(&ly), 0);
        skip();
    }
    start(&y, &ly, 1, 1, nea_server_port(x.srv));
    /* X notices the shared group at its next look ... */
    for (uint64_t end = s_now_ms() + 3000; x.srv->balance.attached && s_now_ms() < end;) {
        s_step(&lx, 20);
        uv_run(&ly, UV_RUN_NOWAIT);
    }
    assert_false(x.srv->balance.attached);
    /* ... and once Y is gone, deals round-robin again. */
    stop(&y);
    for (uint64_t end = s_now_ms() + 3000; !x.srv->balance.attached && s_now_ms() < end;) {
        s_step(&lx, 20);
    }
    assert_true(x.srv->balance.attached);
    stop(&x);
    assert_int_equal(uv_loop_close(&lx), 0);
    assert_int_equal(uv_loop_close(&ly), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_server_joining_detaches_the_program),
        cmocka_unit_test(test_alone_again_the_program_comes_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
