/*
 * test_upgrade.c - handing listening sockets to the next process
 * (upgrade.c, and nea_server_upgrade in server.c): the LISTEN_FDS protocol
 * read from the environment (well-formed, another process's, malformed),
 * an upgrade to a successor with connections open and arriving (nothing
 * refused, the idle keep-alive connection answered once more, the agent
 * handed over too), a successor that fails (the server keeps serving), a
 * Unix socket whose file stays with the successor, and the state errors.
 *
 * The successor is this very program, run with --successor (or --fail):
 * it takes the sockets with nea_listen_fds_from_env, serves GET /pid and
 * runs until SIGTERM.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"
#include "e2e.h"

static char self[4096];

static void pid_route(nea_req *req, void *data)
{
    char *body = nea_printf(req, "%ld", (long)getpid());
    (void)data;
    nea_respond(req, 200, "text/plain", body, strlen(body));
}

/* --- the successor ---------------------------------------------------------- */

static void on_term(uv_signal_t *h, int signum)
{
    (void)signum;
    uv_close((uv_handle_t *)h, NULL);
    (void)nea_server_close(h->data, NULL, NULL);
}

static void quiet(void *data, int level, const char *msg)
{
    (void)data;
    (void)level;
    (void)msg;
}

static int successor(void)
{
    nea_listen_fds in;
    nea_config cfg;
    uv_loop_t loop;
    uv_signal_t term;
    nea_server *s;
    if (nea_listen_fds_from_env(&in) < 1 || uv_loop_init(&loop) != 0) {
        return 3;
    }
    nea_config_init(&cfg);
    cfg.memory_limit = 16u << 20;
    cfg.arena_count = 4;
    cfg.max_connections = 32;
    cfg.agent_port = in.agent >= 0 ? 0 : -1;
    cfg.inherit = &in;
    cfg.log = quiet;
    if (nea_server_new(&loop, &cfg, &s) != 0 ||
        nea_server_route(s, "GET", "/pid", pid_route, NULL) || nea_server_listen(s) != 0) {
        return 4;
    }
    uv_signal_init(&loop, &term);
    term.data = s;
    uv_signal_start(&term, on_term, SIGTERM);
    uv_run(&loop, UV_RUN_DEFAULT);
    return uv_loop_close(&loop) == 0 ? 0 : 5;
}

/* --- the environment protocol ------------------------------------------------ */

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "failed: %s (line %d)\n", #cond, __LINE__);                            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void put_at(int fd, int where)
{
    if (fd != where) {
        CHECK(dup2(fd, where) == where);
        close(fd);
    }
}

/* In a child: descriptors 3, 4 and 5 set up as a parent would. */
static void env_protocol(void *arg)
{
    nea_listen_fds in;
    char pid[32];
    int p[2];
    (void)arg;
    put_at(socket(AF_INET, SOCK_STREAM, 0), 3);
    put_at(socket(AF_INET, SOCK_STREAM, 0), 4);
    CHECK(pipe(p) == 0);
    put_at(p[1], 5);
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());

    /* Nothing handed over. */
    CHECK(nea_listen_fds_from_env(&in) == 0);
    CHECK(in.http_count == 0 && in.agent == -1 && in.ready == -1);

    /* Two sockets, the second named for the agent, and a ready pipe. */
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "2", 1);
    setenv("LISTEN_FDNAMES", "nea-http:nea-agent", 1);
    setenv("NEA_READY_FD", "5", 1);
    CHECK(nea_listen_fds_from_env(&in) == 1);
    CHECK(in.http_count == 1 && in.http[0] == 3 && in.agent == 4 && in.ready == 5);
    CHECK((fcntl(3, F_GETFD) & FD_CLOEXEC) != 0 && (fcntl(5, F_GETFD) & FD_CLOEXEC) != 0);
    CHECK(getenv("LISTEN_PID") == NULL && getenv("LISTEN_FDS") == NULL &&
          getenv("LISTEN_FDNAMES") == NULL && getenv("NEA_READY_FD") == NULL);

    /* systemd's own names, or none: HTTP. */
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "2", 1);
    CHECK(nea_listen_fds_from_env(&in) == 2);
    CHECK(in.http[0] == 3 && in.http[1] == 4 && in.agent == -1 && in.ready == -1);

    /* Meant for another process: nothing, and the variables are gone. */
    setenv("LISTEN_PID", "1", 1);
    setenv("LISTEN_FDS", "2", 1);
    CHECK(nea_listen_fds_from_env(&in) == 0 && getenv("LISTEN_FDS") == NULL);

    /* Malformed, or naming a descriptor that is not open. */
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "2x", 1);
    CHECK(nea_listen_fds_from_env(&in) == UV_EINVAL && in.http_count == 0);
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "9", 1);
    CHECK(nea_listen_fds_from_env(&in) == UV_EINVAL && in.http_count == 0 && in.agent == -1);
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "1", 1);
    setenv("NEA_READY_FD", "99", 1);
    CHECK(nea_listen_fds_from_env(&in) == UV_EINVAL);
}

static void test_environment_protocol(void **state)
{
    t_child c;
    (void)state;
    t_child_run(env_protocol, NULL, &c);
    if (!WIFEXITED(c.status) || WEXITSTATUS(c.status) != 0) {
        fail_msg("child: 0x%x %s", c.status, c.stderr_);
    }
}

/* --- upgrades --------------------------------------------------------------------- */

typedef struct upgraded {
    bool called;
    int status;
} upgraded;

static void on_upgraded(nea_server *s, int status, void *data)
{
    upgraded *u = data;
    (void)s;
    u->called = true;
    u->status = status;
}

static void with_agent(nea_config *cfg)
{
    cfg->agent_port = 0;
}

/* GET /pid on fd (a keep-alive connection); the pid, -1 when not 200. */
static long pid_on(h_fixture *f, int fd, h_response *r)
{
    h_sends(f, fd, "GET /pid HTTP/1.1\r\nHost: x\r\n\r\n");
    return h_read(f, fd, r, H_DEADLINE_MS) == 200 ? atol(r->body) : -1;
}

static long pid_fresh(h_fixture *f)
{
    h_response r;
    return h_request(f, "GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &r) == 200
               ? atol(r.body)
               : -1;
}

static void reap(pid_t pid)
{
    int status;
    kill(pid, SIGTERM);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_upgrade_hands_over_without_refusing(void **state)
{
    char *argv[] = {self, "--successor", NULL};
    char buf[64], hv[32];
    h_fixture f;
    h_response r;
    upgraded u = {0};
    pid_t next;
    int idle, agent_port;
    ssize_t n;
    (void)state;
    h_start_tweaked(&f, with_agent);
    assert_int_equal(nea_server_route(f.srv, "GET", "/pid", pid_route, NULL), 0);
    agent_port = nea_server_agent_port(f.srv);
    /* A keep-alive connection, idle when the successor takes over. */
    idle = h_connect(&f);
    assert_int_equal(pid_on(&f, idle, &r), (long)getpid());

    assert_int_equal(nea_server_upgrade(f.srv, argv, on_upgraded, &u), 0);
    assert_int_equal(nea_server_upgrade(f.srv, argv, on_upgraded, &u), NEA_ESTATE);
    next = f.srv->upgrade.pid;
    /* While it starts, connections keep being served (by either). */
    while (!u.called) {
        long who = pid_fresh(&f);
        assert_true(who == (long)getpid() || who == (long)next);
    }
    assert_int_equal(u.status, 0);
    assert_true(t_log_has(&f.log, "listens"));
    h_close(&f);
    /* Every new connection is the successor's now: none refused. */
    for (int i = 0; i < 20; i++) {
        assert_int_equal(pid_fresh(&f), (long)next);
    }
    /* The idle connection was not cut: its next request is answered here,
     * with Connection: close. */
    assert_int_equal(pid_on(&f, idle, &r), (long)getpid());
    assert_non_null(h_header(&r, "Connection", hv, sizeof(hv)));
    assert_string_equal(hv, "close");
    assert_true(h_closed(&f, idle, H_DEADLINE_MS));
    close(idle);
    h_pump(&f, H_DEADLINE_MS, &f.closed);
    assert_true(f.closed);
    assert_int_equal(uv_loop_close(&f.loop), 0);
    /* The agent's socket went along: the successor answers on it. */
    {
        uv_loop_t spare;
        int a;
        assert_int_equal(uv_loop_init(&spare), 0);
        a = s_connect(&spare, agent_port);
        assert_int_equal(uv_loop_close(&spare), 0);
        assert_true(a >= 0);
        fcntl(a, F_SETFL, fcntl(a, F_GETFL) & ~O_NONBLOCK);
        n = recv(a, buf, sizeof(buf) - 1, 0);
        assert_true(n > 0);
        buf[n] = '\0';
        assert_non_null(strstr(buf, "up ready"));
        close(a);
    }
    reap(next);
}

static void test_failed_successor_leaves_the_server_serving(void **state)
{
    char *argv[] = {self, "--fail", NULL};
    h_fixture f;
    upgraded u = {0};
    (void)state;
    h_start_tweaked(&f, NULL);
    assert_int_equal(nea_server_route(f.srv, "GET", "/pid", pid_route, NULL), 0);
    assert_int_equal(nea_server_upgrade(f.srv, argv, on_upgraded, &u), 0);
    H_WAIT(&f, u.called);
    assert_int_equal(u.status, NEA_ESUCCESSOR);
    assert_true(t_log_has(&f.log, "ended before it listened (exit status 7)"));
    for (int i = 0; i < 5; i++) {
        assert_int_equal(pid_fresh(&f), (long)getpid());
    }
    /* And it may try again. */
    H_WAIT(&f, !f.srv->upgrade.open);
    u.called = false;
    argv[0] = "/nonexistent/nea-successor";
    assert_int_equal(nea_server_upgrade(f.srv, argv, on_upgraded, &u), 0);
    H_WAIT(&f, u.called);
    assert_int_equal(u.status, NEA_ESUCCESSOR);
    assert_true(t_log_has(&f.log, "exit status 127"));
    assert_int_equal(pid_fresh(&f), (long)getpid());
    h_stop(&f);
}

static void test_upgrade_state_errors(void **state)
{
    char *argv[] = {self, "--successor", NULL};
    char *empty[] = {NULL};
    nea_config cfg;
    nea_server *s;
    uv_loop_t loop;
    upgraded u = {0};
    (void)state;
    h_config(&cfg);
    cfg.log = quiet;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(nea_server_new(&loop, &cfg, &s), 0);
    assert_int_equal(nea_server_upgrade(s, argv, on_upgraded, &u), NEA_ESTATE); /* not listening */
    assert_int_equal(nea_server_listen(s), 0);
    assert_int_equal(nea_server_upgrade(s, empty, on_upgraded, &u), UV_EINVAL);
    assert_int_equal(nea_server_upgrade(s, NULL, on_upgraded, &u), UV_EINVAL);
    assert_int_equal(nea_server_close(s, NULL, NULL), 0);
    assert_int_equal(nea_server_upgrade(s, argv, on_upgraded, &u), NEA_ESTATE); /* closing */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_false(u.called);
}

static int unix_connect(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    strcpy(sun.sun_path, path);
    assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static void test_unix_socket_file_stays_with_the_successor(void **state)
{
    char *argv[] = {self, "--successor", NULL};
    char path[64];
    struct stat st;
    nea_config cfg;
    h_fixture f;
    h_response r;
    upgraded u = {0};
    pid_t next;
    int fd;
    (void)state;
    snprintf(path, sizeof(path), "/tmp/nea-test-upgrade-%ld.sock", (long)getpid());
    h_config(&cfg);
    cfg.unix_path = path;
    memset(&f, 0, sizeof(f));
    assert_int_equal(uv_loop_init(&f.loop), 0);
    f.cfg = cfg;
    t_log_attach(&f.log, &f.cfg);
    assert_int_equal(nea_server_new(&f.loop, &f.cfg, &f.srv), 0);
    assert_int_equal(nea_server_route(f.srv, "GET", "/pid", pid_route, NULL), 0);
    assert_int_equal(nea_server_listen(f.srv), 0);
    assert_int_equal(nea_server_upgrade(f.srv, argv, on_upgraded, &u), 0);
    next = f.srv->upgrade.pid;
    H_WAIT(&f, u.called);
    assert_int_equal(u.status, 0);
    h_close(&f);
    h_pump(&f, H_DEADLINE_MS, &f.closed);
    assert_true(f.closed);
    assert_int_equal(uv_loop_close(&f.loop), 0);
    assert_int_equal(lstat(path, &st), 0);      /* not removed: the successor serves it */
    assert_int_equal(uv_loop_init(&f.loop), 0); /* a loop for the client alone */
    fd = unix_connect(path);
    s_send(&f.loop, fd, "GET /pid HTTP/1.1\r\nHost: x\r\n\r\n", 30);
    assert_int_equal(s_read(&f.loop, fd, &r, false, H_DEADLINE_MS), 200);
    assert_int_equal(atol(r.body), (long)next);
    close(fd);
    assert_int_equal(uv_loop_close(&f.loop), 0);
    reap(next);
    unlink(path);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_environment_protocol),
        cmocka_unit_test(test_upgrade_hands_over_without_refusing),
        cmocka_unit_test(test_failed_successor_leaves_the_server_serving),
        cmocka_unit_test(test_upgrade_state_errors),
        cmocka_unit_test(test_unix_socket_file_stays_with_the_successor),
    };
    ssize_t n;
    if (argc > 1 && strcmp(argv[1], "--successor") == 0) {
        return successor();
    }
    if (argc > 1 && strcmp(argv[1], "--fail") == 0) {
        return 7;
    }
    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
        return 1;
    }
    self[n] = '\0';
    return cmocka_run_group_tests(tests, NULL, NULL);
}
