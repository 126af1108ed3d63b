/*
 * sock.c - see sock.h.
 */
#include "sock.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <stdarg.h>
#include <setjmp.h>
#include <cmocka.h>

uint64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Waits for the loop or fd (if >= 0) to have something, at most ms. */
static void wait_some(uv_loop_t *loop, int fd, int ms)
{
    struct pollfd p[2] = {{uv_backend_fd(loop), POLLIN, 0}, {fd, POLLIN, 0}};
    int t = uv_backend_timeout(loop);
    if (t < 0 || t > ms) {
        t = ms;
    }
    poll(p, fd >= 0 ? 2 : 1, t);
}

void s_step(uv_loop_t *loop, unsigned ms)
{
    uv_run(loop, UV_RUN_NOWAIT);
    wait_some(loop, -1, (int)ms);
    uv_run(loop, UV_RUN_NOWAIT);
}

void s_pump(uv_loop_t *loop, unsigned ms, const bool *done)
{
    uint64_t end = s_now_ms() + ms;
    do {
        uv_run(loop, UV_RUN_NOWAIT);
        if (done != NULL && *done) {
            return;
        }
        wait_some(loop, -1, (int)(end > s_now_ms() ? end - s_now_ms() : 0));
    } while (s_now_ms() < end);
    uv_run(loop, UV_RUN_NOWAIT);
}

int s_connect(uv_loop_t *loop, int port)
{
    struct sockaddr_in a = {0};
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    assert_true(fd >= 0);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    uv_run(loop, UV_RUN_NOWAIT);
    return fd;
}

void s_send(uv_loop_t *loop, int fd, const void *data, size_t len)
{
    const char *p = data;
    uint64_t end = s_now_ms() + S_DEADLINE_MS;
    while (len > 0 && s_now_ms() < end) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n < 0 && errno != EAGAIN) {
            return; /* peer closed: callers check the outcome */
        }
        uv_run(loop, UV_RUN_NOWAIT);
    }
    uv_run(loop, UV_RUN_NOWAIT);
}

const char *s_header(const s_response *r, const char *name, char *buf, size_t len)
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
int s_read(uv_loop_t *loop, int fd, s_response *r, bool head_only, unsigned timeout_ms)
{
    static char buf[1 << 20];
    uint64_t end = s_now_ms() + timeout_ms;
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
                if (s_header(r, "content-length", v, sizeof(v)) != NULL) {
                    clen = (size_t)strtoull(v, NULL, 10);
                }
                if (bodyless || head_only) {
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
        if (s_now_ms() >= end) {
            return -1;
        }
        uv_run(loop, UV_RUN_NOWAIT);
        wait_some(loop, fd, 10);
    }
}

bool s_closed(uv_loop_t *loop, int fd, unsigned timeout_ms)
{
    char buf[4096];
    uint64_t end = s_now_ms() + timeout_ms;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN)) {
            return true;
        }
        if (s_now_ms() >= end) {
            return false;
        }
        uv_run(loop, UV_RUN_NOWAIT);
        wait_some(loop, fd, 10);
    }
}

int s_read_all(uv_loop_t *loop, int fd, char *buf, size_t len, unsigned timeout_ms)
{
    size_t have = 0;
    uint64_t end = s_now_ms() + timeout_ms;
    for (;;) {
        ssize_t n = recv(fd, buf + have, len - 1 - have, 0);
        if (n > 0) {
            have += (size_t)n;
            continue;
        }
        if (n == 0 || have == len - 1) {
            buf[have] = '\0';
            return (int)have;
        }
        if (errno != EAGAIN || s_now_ms() >= end) {
            return -1;
        }
        uv_run(loop, UV_RUN_NOWAIT);
        wait_some(loop, fd, 10);
    }
}

bool s_quiet(uv_loop_t *loop, int fd, unsigned ms)
{
    char c;
    uint64_t end = s_now_ms() + ms;
    while (s_now_ms() < end) {
        ssize_t n = recv(fd, &c, 1, MSG_PEEK);
        if (n >= 0 || errno != EAGAIN) {
            return false;
        }
        uv_run(loop, UV_RUN_NOWAIT);
        wait_some(loop, fd, 10);
    }
    return true;
}

bool s_drain(uv_loop_t *loop, int fd, size_t body_len, unsigned timeout_ms)
{
    char buf[65536], *hend;
    size_t total = 0;
    uint64_t end = s_now_ms() + timeout_ms;
    for (;;) {
        ssize_t n = recv(fd, buf, 4096, MSG_PEEK);
        if (n == 0 || (n < 0 && errno != EAGAIN) || s_now_ms() >= end) {
            return false;
        }
        if (n > 0 && (hend = memmem(buf, (size_t)n, "\r\n\r\n", 4)) != NULL) {
            total = (size_t)(hend - buf) + 4 + body_len;
            break;
        }
        uv_run(loop, UV_RUN_NOWAIT);
        wait_some(loop, fd, 10);
    }
    while (total > 0 && s_now_ms() < end) {
        ssize_t n = recv(fd, buf, total < sizeof(buf) ? total : sizeof(buf), 0);
        if (n > 0) {
            total -= (size_t)n;
        } else if (n == 0 || errno != EAGAIN) {
            return false;
        } else {
            uv_run(loop, UV_RUN_NOWAIT);
            wait_some(loop, fd, 10);
        }
    }
    return total == 0;
}

void s_reset(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

void s_half_close(int fd)
{
    (void)shutdown(fd, SHUT_WR);
}
