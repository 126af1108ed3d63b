/*
 * test_balance.c - dealing connections over one server's listening sockets
 * (balance.c): who is in a reuseport group, round-robin and past a full
 * socket, a program that never selects a socket it was not given, detach
 * back to the kernel's hash; and two processes with two workers each on
 * one address, each getting its share (only the public API there).
 *
 * Loading the program needs CAP_BPF: without it those tests are skipped
 * (the kernel's hash then spreads connections, covered by test_worker).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "balance.h"

#include "sock.h"

/* A listening socket with SO_REUSEPORT on 127.0.0.1:port (0: any); the
 * port it got in *port. Non-blocking. */
static int member(int *port)
{
    struct sockaddr_in a = {0};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)*port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 64), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* Opens m connections one after another; counts[i] += those that landed
 * on fds[i] (each accepted and closed at once). */
static void deal(const int *fds, unsigned n, unsigned m, int port, unsigned *counts)
{
    for (unsigned k = 0; k < m; k++) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        int c = socket(AF_INET, SOCK_STREAM, 0), got = -1;
        uint64_t end = s_now_ms() + S_DEADLINE_MS;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
        while (got < 0 && s_now_ms() < end) {
            for (unsigned i = 0; i < n && got < 0; i++) {
                int s = accept(fds[i], NULL, NULL);
                if (s >= 0) {
                    close(s);
                    counts[i]++;
                    got = (int)i;
                }
            }
        }
        assert_true(got >= 0);
        close(c);
    }
}

/* Makes the maps, or skips the test without CAP_BPF. */
static void init_or_skip(nea__balance *b, const int *fds, unsigned n)
{
    int rc = nea__balance_init(b, fds, n);
    if (rc == UV_EPERM) {
        for (unsigned i = 0; i < n; i++) {
            close(fds[i]);
        }
        skip();
    }
    assert_int_equal(rc, 0);
}

static void test_alone_sees_who_is_in_the_group(void **state)
{
    int port = 0, fds[3];
    (void)state;
    fds[0] = member(&port);
    fds[1] = member(&port);
    if (nea__balance_alone(fds, 2) < 0) {
        close(fds[0]);
        close(fds[1]);
        skip(); /* no NETLINK_SOCK_DIAG here */
    }
    assert_int_equal(nea__balance_alone(fds, 2), 1);
    /* Someone else joins the address. */
    fds[2] = member(&port);
    assert_int_equal(nea__balance_alone(fds, 2), 0);
    assert_int_equal(nea__balance_alone(fds, 3), 1);
    /* And leaves. */
    close(fds[2]);
    assert_int_equal(nea__balance_alone(fds, 2), 1);
    /* Another address's sockets are not in the group. */
    {
        int other = 0, o = member(&other);
        assert_int_equal(nea__balance_alone(fds, 2), 1);
        close(o);
    }
    close(fds[0]);
    close(fds[1]);
}

static void test_round_robin_and_past_a_full_socket(void **state)
{
    nea__balance b;
    unsigned counts[2] = {0};
    int port = 0, fds[2];
    (void)state;
    fds[0] = member(&port);
    fds[1] = member(&port);
    init_or_skip(&b, fds, 2);
    assert_int_equal(nea__balance_attach(&b, fds[0]), 0);
    assert_true(b.attached);
    deal(fds, 2, 30, port, counts);
    assert_int_equal(counts[0], 15);
    assert_int_equal(counts[1], 15);
    /* Socket 0 is full: every connection goes to 1. */
    nea__balance_set_full(b.flags_map, 0, true);
    deal(fds, 2, 10, port, counts);
    assert_int_equal(counts[0], 15);
    assert_int_equal(counts[1], 25);
    /* Both full: still dealt (each answers 503 at once), round-robin. */
    nea__balance_set_full(b.flags_map, 1, true);
    deal(fds, 2, 10, port, counts);
    assert_int_equal(counts[0], 20);
    assert_int_equal(counts[1], 30);
    nea__balance_close(&b);
    close(fds[0]);
    close(fds[1]);
}

/* The program selects from its own socket array only: a socket that joined
 * the group later gets nothing under it (which is why a shared group is
 * detached), and its share once detached. */
static void test_program_never_deals_a_socket_it_was_not_given(void **state)
{
    nea__balance b;
    unsigned counts[3] = {0};
    int port = 0, fds[3];
    (void)state;
    fds[0] = member(&port);
    fds[1] = member(&port);
    init_or_skip(&b, fds, 2);
    assert_int_equal(nea__balance_attach(&b, fds[0]), 0);
    fds[2] = member(&port); /* another process's, say */
    deal(fds, 3, 30, port, counts);
    assert_int_equal(counts[2], 0);
    assert_int_equal(counts[0], 15);
    assert_int_equal(counts[1], 15);
    /* Detached (from any socket of the group): the kernel hashes over all
     * three. 60 connections all missing one socket: (2/3)^60, never. */
    assert_int_equal(nea__balance_detach(&b, fds[2]), 0);
    assert_false(b.attached);
    assert_int_equal(nea__balance_detach(&b, fds[2]), UV_ENOENT);
    memset(counts, 0, sizeof(counts));
    deal(fds, 3, 60, port, counts);
    assert_true(counts[0] > 0 && counts[1] > 0 && counts[2] > 0);
    nea__balance_close(&b);
    for (unsigned i = 0; i < 3; i++) {
        close(fds[i]);
    }
}

/* --- two processes on one address -------------------------------------------- */

static void pid_route(nea_req *req, void *data)
{
    char *body = nea_printf(req, "%ld", (long)getpid());
    (void)data;
    nea_respond(req, 200, "text/plain", body, strlen(body));
}

static uv_signal_t term;

static void on_term(uv_signal_t *h, int signum)
{
    (void)signum;
    uv_close((uv_handle_t *)h, NULL);
    (void)nea_server_close(h->data, NULL, NULL);
}

static void quiet_log(void *data, int level, const char *msg)
{
    (void)data;
    (void)level;
    (void)msg;
}

/* A process serving GET /pid with two workers on port (0: any), which
 * writes its port to report once listening and runs until SIGTERM. No
 * cmocka here: failures exit non-zero. */
static pid_t start_process(int port, int report)
{
    pid_t pid;
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        uv_loop_t loop;
        nea_server *s;
        nea_config cfg;
        nea_config_init(&cfg);
        cfg.port = port;
        cfg.workers = 2;
        cfg.memory_limit = 16u << 20;
        cfg.arena_count = 4;
        cfg.max_connections = 64;
        cfg.log = quiet_log;
        if (uv_loop_init(&loop) != 0 || nea_server_new(&loop, &cfg, &s) != 0 ||
            nea_server_route(s, "GET", "/pid", pid_route, NULL) != 0 || nea_server_listen(s) != 0) {
            _exit(3);
        }
        port = nea_server_port(s);
        uv_signal_init(&loop, &term);
        term.data = s;
        uv_signal_start(&term, on_term, SIGTERM);
        if (write(report, &port, sizeof(port)) != (ssize_t)sizeof(port)) {
            _exit(4);
        }
        uv_run(&loop, UV_RUN_DEFAULT);
        _exit(uv_loop_close(&loop) == 0 ? 0 : 5);
    }
    return pid;
}

static int read_port(int fd)
{
    int port = -1;
    assert_int_equal(read(fd, &port, sizeof(port)), (ssize_t)sizeof(port));
    return port;
}

/* GET /pid on a fresh connection; the pid that answered. */
static long ask_pid(int port)
{
    static const char req[] = "GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    char buf[1024];
    size_t len = 0;
    ssize_t n;
    const char *body;
    int c = socket(AF_INET, SOCK_STREAM, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(send(c, req, sizeof(req) - 1, 0), (ssize_t)(sizeof(req) - 1));
    while (len < sizeof(buf) - 1 && (n = recv(c, buf + len, sizeof(buf) - 1 - len, 0)) > 0) {
        len += (size_t)n;
    }
    close(c);
    buf[len] = '\0';
    body = strstr(buf, "\r\n\r\n");
    assert_non_null(body);
    assert_non_null(strstr(buf, "200 OK"));
    return atol(body + 4);
}

static void test_two_processes_on_one_address_share_it(void **state)
{
    int p[2], port, status;
    pid_t a, b;
    unsigned got_a = 0, got_b = 0;
    (void)state;
    assert_int_equal(pipe(p), 0);
    a = start_process(0, p[1]);
    port = read_port(p[0]);
    b = start_process(port, p[1]);
    assert_int_equal(read_port(p[0]), port);
    for (int i = 0; i < 200; i++) {
        long who = ask_pid(port);
        got_a += who == (long)a;
        got_b += who == (long)b;
    }
    kill(a, SIGTERM);
    kill(b, SIGTERM);
    assert_int_equal(waitpid(a, &status, 0), a);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(waitpid(b, &status, 0), b);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(p[0]);
    close(p[1]);
    print_message("two processes: %u and %u of 200 connections\n", got_a, got_b);
    assert_int_equal(got_a + got_b, 200);
    assert_true(got_a >= 50);
    assert_true(got_b >= 50);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alone_sees_who_is_in_the_group),
        cmocka_unit_test(test_round_robin_and_past_a_full_socket),
        cmocka_unit_test(test_program_never_deals_a_socket_it_was_not_given),
        cmocka_unit_test(test_two_processes_on_one_address_share_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
