/*
 * test_listener.c - where a server listens (listener.c, and the listening
 * parts of server.c): a Unix domain socket (served, removed at close, a
 * path too long, in use, stale, a regular file, the abstract namespace,
 * shared by workers), and listening sockets the host hands over (a
 * connection already queued on one is served, one that is not a socket,
 * more sockets than workers, workers beyond them joining or sharing, the
 * ready pipe).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "e2e.h"

static const char get_hello[] = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";

/* A fresh directory for socket files, and a path in it. */
static char dir[64];

static const char *sock_path(const char *name)
{
    static char path[256];
    if (dir[0] == '\0') {
        strcpy(dir, "/tmp/nea-test-listener-XXXXXX");
        assert_non_null(mkdtemp(dir));
    }
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return path;
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* The fixture without its TCP expectations: the server created and
 * listening on cfg (whatever it names); returns nea_server_listen's code. */
static int l_start(h_fixture *f, nea_config *cfg)
{
    int rc;
    memset(f, 0, sizeof(*f));
    t_handlers_reset();
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->cfg = *cfg;
    t_log_attach(&f->log, &f->cfg);
    assert_int_equal(nea_server_new(&f->loop, &f->cfg, &f->srv), 0);
    t_routes_add(f->srv);
    rc = nea_server_listen(f->srv);
    f->port = nea_server_port(f->srv);
    return rc;
}

/* A connection to the Unix socket at path (abstract with a leading '@'). */
static int unix_connect(const char *path)
{
    struct sockaddr_un sun;
    size_t n = strlen(path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, n);
    if (path[0] == '@') {
        sun.sun_path[0] = '\0';
    }
    assert_int_equal(
        connect(fd, (struct sockaddr *)&sun,
                (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '@' ? 0 : 1))),
        0);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static int unix_request(h_fixture *f, const char *path, h_response *r)
{
    int fd = unix_connect(path), status;
    h_sends(f, fd, get_hello);
    status = h_read(f, fd, r, H_DEADLINE_MS);
    close(fd);
    return status;
}

/* A TCP socket listening on 127.0.0.1 (port 0: any), optionally with
 * SO_REUSEPORT; its port in *port. */
static int tcp_listener(bool reuseport, int *port)
{
    struct sockaddr_in a = {0};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    }
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static bool fd_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0 || errno != EBADF;
}

/* --- Unix domain sockets ------------------------------------------------------- */

static void r_peer_rc(nea_req *req, void *d)
{
    struct sockaddr_storage ss;
    char *body = nea_printf(req, "%d", nea_req_peer(req, &ss));
    (void)d;
    nea_respond(req, 200, "text/plain", body, strlen(body));
}

static void test_unix_socket_serves_and_is_removed_at_close(void **state)
{
    const char *path = sock_path("serve.sock");
    nea_config cfg;
    h_fixture f;
    h_response r;
    nea_stats st;
    int fd;
    (void)state;
    h_config(&cfg);
    cfg.unix_path = path;
    assert_int_equal(l_start(&f, &cfg), 0);
    assert_int_equal(nea_server_route(f.srv, "GET", "/peer", r_peer_rc, NULL), 0);
    assert_int_equal(f.port, -1); /* not TCP */
    assert_true(exists(path));
    assert_int_equal(unix_request(&f, path, &r), 200);
    assert_string_equal(r.body, "Hello, World!");
    /* Keep-alive works, and a peer has no IP address to name. */
    fd = unix_connect(path);
    h_sends(&f, fd, "GET /peer HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(&f, fd, &r, H_DEADLINE_MS), 200);
    assert_int_equal(atoi(r.body), UV_ENOTCONN);
    h_sends(&f, fd, get_hello);
    assert_int_equal(h_read(&f, fd, &r, H_DEADLINE_MS), 200);
    close(fd);
    h_stats(&f, &st);
    assert_int_equal(st.accepted, 2);
    assert_int_equal(st.responses[2], 3);
    h_stop(&f);
    assert_false(exists(path));
}

static void test_unix_path_too_long_is_refused(void **state)
{
    char path[200];
    nea_config cfg;
    nea_server *s = NULL;
    uv_loop_t loop;
    t_log log;
    (void)state;
    memset(path, 'a', sizeof(path) - 1);
    path[0] = '/';
    path[sizeof(path) - 1] = '\0';
    h_config(&cfg);
    cfg.unix_path = path;
    t_log_attach(&log, &cfg);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(nea_server_new(&loop, &cfg, &s), UV_ENAMETOOLONG);
    assert_null(s);
    assert_true(t_log_has(&log, "unix_path is 199 bytes, at most 107 fit"));
    /* 107 bytes is the longest that fits. */
    path[107] = '\0';
    assert_int_equal(nea_server_new(&loop, &cfg, &s), 0);
    (void)nea_server_close(s, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_unix_path_served_by_another_is_in_use(void **state)
{
    const char *path = sock_path("busy.sock");
    nea_config cfg;
    h_fixture a, b;
    h_response r;
    (void)state;
    h_config(&cfg);
    cfg.unix_path = path;
    assert_int_equal(l_start(&a, &cfg), 0);
    assert_int_equal(l_start(&b, &cfg), UV_EADDRINUSE);
    assert_true(t_log_has(&b.log, "cannot listen on unix:"));
    h_close(&b);
    h_pump(&b, H_DEADLINE_MS, &b.closed);
    assert_true(b.closed);
    assert_int_equal(uv_loop_close(&b.loop), 0);
    /* The refused one left the path to its owner. */
    assert_true(exists(path));
    assert_int_equal(unix_request(&a, path, &r), 200);
    h_stop(&a);
    assert_false(exists(path));
}

static void test_unix_stale_socket_file_is_replaced(void **state)
{
    const char *path = sock_path("stale.sock");
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    nea_config cfg;
    h_fixture f;
    h_response r;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    (void)state;
    /* A process that bound the path and died: the file, nobody behind it. */
    strcpy(sun.sun_path, path);
    assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    close(fd);
    assert_true(exists(path));
    h_config(&cfg);
    cfg.unix_path = path;
    assert_int_equal(l_start(&f, &cfg), 0);
    assert_true(t_log_has(&f.log, "replaced a socket file nobody served"));
    assert_int_equal(unix_request(&f, path, &r), 200);
    h_stop(&f);
}

static void test_unix_path_of_a_regular_file_is_left_alone(void **state)
{
    const char *path = sock_path("regular");
    char buf[16] = "";
    nea_config cfg;
    h_fixture f;
    FILE *fp = fopen(path, "w");
    (void)state;
    assert_non_null(fp);
    fputs("keep me", fp);
    fclose(fp);
    h_config(&cfg);
    cfg.unix_path = path;
    assert_int_equal(l_start(&f, &cfg), UV_EADDRINUSE);
    h_close(&f);
    h_pump(&f, H_DEADLINE_MS, &f.closed);
    assert_int_equal(uv_loop_close(&f.loop), 0);
    fp = fopen(path, "r");
    assert_non_null(fp);
    assert_non_null(fgets(buf, sizeof(buf), fp));
    fclose(fp);
    assert_string_equal(buf, "keep me");
    unlink(path);
}

static void test_unix_abstract_name(void **state)
{
    char name[64];
    nea_config cfg;
    h_fixture f;
    h_response r;
    (void)state;
    snprintf(name, sizeof(name), "@nea-test-%ld", (long)getpid());
    h_config(&cfg);
    cfg.unix_path = name;
    assert_int_equal(l_start(&f, &cfg), 0);
    assert_int_equal(unix_request(&f, name, &r), 200);
    h_stop(&f);
}

static void test_unix_socket_shared_by_workers(void **state)
{
    const char *path = sock_path("workers.sock");
    nea_config cfg;
    h_fixture f;
    h_response r;
    nea_stats st;
    (void)state;
    h_config(&cfg);
    cfg.unix_path = path;
    cfg.workers = 2;
    assert_int_equal(l_start(&f, &cfg), 0);
    assert_true(t_log_has(&f.log, "each accepts when it can"));
    for (int i = 0; i < 20; i++) {
        assert_int_equal(unix_request(&f, path, &r), 200);
    }
    H_WAIT(&f, (nea_server_stats(f.srv, &st), st.accepted == 20));
    h_close(&f);
    h_pump(&f, H_DEADLINE_MS, &f.closed);
    assert_true(f.closed);
    assert_int_equal(uv_loop_close(&f.loop), 0);
    assert_false(exists(path));
}

/* --- sockets the host hands over ------------------------------------------------ */

static void test_inherited_socket_serves_its_queued_connection(void **state)
{
    nea_listen_fds in = {.agent = -1, .ready = -1};
    nea_config cfg;
    h_fixture f;
    h_response r;
    int port, early;
    (void)state;
    in.http[0] = tcp_listener(false, &port);
    in.http_count = 1;
    /* A client connects and asks before the server exists: the kernel
     * holds the connection in the socket's queue. */
    early = socket(AF_INET, SOCK_STREAM, 0);
    {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(connect(early, (struct sockaddr *)&a, sizeof(a)), 0);
    }
    assert_int_equal(send(early, get_hello, strlen(get_hello), 0), (ssize_t)strlen(get_hello));
    h_config(&cfg);
    cfg.port = 1; /* ignored: the inherited socket is served */
    cfg.inherit = &in;
    assert_int_equal(l_start(&f, &cfg), 0);
    assert_int_equal(f.port, port);
    fcntl(early, F_SETFL, fcntl(early, F_GETFL) | O_NONBLOCK);
    assert_int_equal(h_read(&f, early, &r, H_DEADLINE_MS), 200);
    close(early);
    assert_int_equal(h_request(&f, get_hello, &r), 200);
    h_stop(&f);
    assert_false(fd_open(in.http[0])); /* the server owned it, and closed it */
}

static void test_inherited_fd_that_is_not_a_socket(void **state)
{
    nea_listen_fds in = {.agent = -1, .ready = -1};
    nea_config cfg;
    h_fixture f;
    int p[2];
    (void)state;
    assert_int_equal(pipe(p), 0);
    in.http[0] = p[0];
    in.http_count = 1;
    h_config(&cfg);
    cfg.inherit = &in;
    assert_int_equal(l_start(&f, &cfg), UV_ENOTSOCK);
    assert_true(t_log_has(&f.log, "cannot listen on inherited fd"));
    assert_false(fd_open(p[0]));
    close(p[1]);
    h_close(&f);
    h_pump(&f, H_DEADLINE_MS, &f.closed);
    assert_int_equal(uv_loop_close(&f.loop), 0);
}

static void test_more_inherited_sockets_than_workers(void **state)
{
    nea_listen_fds in = {.agent = -1, .ready = -1};
    nea_config cfg;
    h_fixture f;
    int port;
    (void)state;
    in.http[0] = tcp_listener(true, &port);
    in.http[1] = tcp_listener(true, &port);
    in.http_count = 2;
    h_config(&cfg);
    cfg.inherit = &in;
    assert_int_equal(l_start(&f, &cfg), UV_EINVAL);
    assert_true(t_log_has(&f.log, "2 inherited listening sockets for 1 workers"));
    assert_false(fd_open(in.http[0]));
    assert_false(fd_open(in.http[1]));
    h_close(&f);
    h_pump(&f, H_DEADLINE_MS, &f.closed);
    assert_int_equal(uv_loop_close(&f.loop), 0);
}

/* Workers beyond the inherited sockets: a reuseport socket gets company in
 * its group (each worker its own socket), a plain one is shared. Either
 * way every connection is served. */
static void inherited_with_workers(bool reuseport)
{
    nea_listen_fds in = {.agent = -1, .ready = -1};
    nea_config cfg;
    h_fixture f;
    h_response r;
    nea_stats st;
    int port;
    in.http[0] = tcp_listener(reuseport, &port);
    in.http_count = 1;
    h_config(&cfg);
    cfg.workers = 2;
    cfg.inherit = &in;
    assert_int_equal(l_start(&f, &cfg), 0);
    assert_int_equal(f.port, port);
    assert_true(nea__server_worker(f.srv, 0)->own_socket);
    assert_int_equal(nea__server_worker(f.srv, 1)->own_socket, reuseport);
    assert_int_equal(nea__server_worker(f.srv, 1)->listener.port, port);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(h_request(&f, get_hello, &r), 200);
    }
    H_WAIT(&f, (nea_server_stats(f.srv, &st), st.responses[2] == 20));
    h_close(&f);
    h_pump(&f, H_DEADLINE_MS, &f.closed);
    assert_true(f.closed);
    assert_int_equal(uv_loop_close(&f.loop), 0);
}

static void test_workers_beyond_an_inherited_reuseport_socket_join_it(void **state)
{
    (void)state;
    inherited_with_workers(true);
}

static void test_workers_beyond_an_inherited_plain_socket_share_it(void **state)
{
    (void)state;
    inherited_with_workers(false);
}

/* The ready pipe: one byte once listening; none when listening failed. */
static void test_ready_pipe_says_whether_listening(void **state)
{
    nea_listen_fds in = {.agent = -1, .ready = -1};
    nea_config cfg;
    h_fixture f;
    char buf[4];
    int p[2], port, bad[2];
    (void)state;
    assert_int_equal(pipe(p), 0);
    in.http[0] = tcp_listener(false, &port);
    in.http_count = 1;
    in.ready = p[1];
    h_config(&cfg);
    cfg.inherit = &in;
    assert_int_equal(l_start(&f, &cfg), 0);
    assert_int_equal(read(p[0], buf, sizeof(buf)), 1);
    assert_int_equal(read(p[0], buf, sizeof(buf)), 0); /* and closed */
    close(p[0]);
    h_stop(&f);

    assert_int_equal(pipe(p), 0);
    assert_int_equal(pipe(bad), 0);
    in.http[0] = bad[0];
    in.ready = p[1];
    assert_int_equal(l_start(&f, &cfg), UV_ENOTSOCK);
    assert_int_equal(read(p[0], buf, sizeof(buf)), 0); /* closed without a byte */
    close(p[0]);
    close(bad[1]);
    h_close(&f);
    h_pump(&f, H_DEADLINE_MS, &f.closed);
    assert_int_equal(uv_loop_close(&f.loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unix_socket_serves_and_is_removed_at_close),
        cmocka_unit_test(test_unix_path_too_long_is_refused),
        cmocka_unit_test(test_unix_path_served_by_another_is_in_use),
        cmocka_unit_test(test_unix_stale_socket_file_is_replaced),
        cmocka_unit_test(test_unix_path_of_a_regular_file_is_left_alone),
        cmocka_unit_test(test_unix_abstract_name),
        cmocka_unit_test(test_unix_socket_shared_by_workers),
        cmocka_unit_test(test_inherited_socket_serves_its_queued_connection),
        cmocka_unit_test(test_inherited_fd_that_is_not_a_socket),
        cmocka_unit_test(test_more_inherited_sockets_than_workers),
        cmocka_unit_test(test_workers_beyond_an_inherited_reuseport_socket_join_it),
        cmocka_unit_test(test_workers_beyond_an_inherited_plain_socket_share_it),
        cmocka_unit_test(test_ready_pipe_says_whether_listening),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (dir[0] != '\0') {
        rmdir(dir);
    }
    return rc;
}
