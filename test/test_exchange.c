/*
 * test_exchange.c - the HTTP exchange on a connection slot (exchange.c,
 * with the slot of conn.c under it) over real sockets: keep-alive and
 * close, pipelining (a batch answered in one write) and its read-buffer
 * bound, half-close (answered, queued, cut mid-head or mid-body) against a
 * reset, 100-continue (also pipelined to a client that does not read),
 * request bodies (1,000 chunks), requests split at every byte, every
 * timeout, asynchronous handlers, client disconnects, and pieces of 4 GiB
 * and more.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "e2e.h"

#include <sys/mman.h>
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

/* write(2) and writev(2) on one socket (the server's side of a test's
 * connection) are counted by interposing both; every other call, and
 * these ones too, go straight to the kernel.
 *
 * The same socket can also stand for a client that stops reading at a
 * chosen byte: with cut_continue set, the first write whose bytes end with
 * a 100 Continue is cut 15 bytes short, and from then on (stalled) the
 * kernel takes nothing until the test lets go. */
static int counted_fd = -1;
static unsigned counted_writes;
static bool cut_continue, stalled;

static const char continue_line[] = "HTTP/1.1 100 Continue\r\n\r\n";

static bool ends_with_continue(const struct iovec *iov, int n)
{
    const struct iovec *last = n > 0 ? &iov[n - 1] : NULL;
    size_t k = sizeof(continue_line) - 1;
    return last != NULL && last->iov_len >= k &&
           memcmp((const char *)last->iov_base + last->iov_len - k, continue_line, k) == 0;
}

ssize_t writev(int fd, const struct iovec *iov, int n)
{
    struct iovec part[8];
    size_t total = 0, keep;
    int k = 0;

    if (fd != counted_fd) {
        return (ssize_t)syscall(SYS_writev, fd, iov, n);
    }
    counted_writes++;
    if (stalled) {
        errno = EAGAIN;
        return -1;
    }
    if (!cut_continue || !ends_with_continue(iov, n) || n > 8) {
        return (ssize_t)syscall(SYS_writev, fd, iov, n);
    }
    for (int i = 0; i < n; i++) {
        total += iov[i].iov_len;
    }
    keep = total - 15;
    for (int i = 0; i < n && keep > 0; i++) {
        part[k] = iov[i];
        if (part[k].iov_len > keep) {
            part[k].iov_len = keep;
        }
        keep -= part[k].iov_len;
        k++;
    }
    stalled = true;
    return (ssize_t)syscall(SYS_writev, fd, part, k);
}

ssize_t write(int fd, const void *buf, size_t len)
{
    struct iovec v = {(void *)buf, len};
    if (fd != counted_fd) {
        return (ssize_t)syscall(SYS_write, fd, buf, len);
    }
    return writev(fd, &v, 1);
}

/* The slot of the only open connection. */
static nea__conn *open_slot(h_fixture *f)
{
    for (unsigned i = 0; i < f->srv->admission.count; i++) {
        nea__conn *c = h_slot(f, i);
        if (c->state != NEA__C_FREE && c->state != NEA__C_CLOSING) {
            return c;
        }
    }
    fail_msg("no open connection");
    return NULL;
}

/* The slot in phase st (NULL when none is). */
static nea__conn *open_slot_in(h_fixture *f, nea__conn_state st)
{
    for (unsigned i = 0; i < f->srv->admission.count; i++) {
        if (h_slot(f, i)->state == st) {
            return h_slot(f, i);
        }
    }
    fail_msg("no slot in that phase");
    return NULL;
}

/* Bytes clients sent that no open slot has read from its socket yet. */
static size_t unread(h_fixture *f)
{
    size_t total = 0;
    for (unsigned i = 0; i < f->srv->admission.count; i++) {
        nea__conn *c = h_slot(f, i);
        uv_os_fd_t fd;
        int n = 0;
        if (c->state != NEA__C_FREE && c->state != NEA__C_CLOSING &&
            uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 && ioctl(fd, FIONREAD, &n) == 0) {
            total += (size_t)n;
        }
    }
    return total;
}

static void test_404_with_body_closes(void **state)
{
    h_fixture *f = *state;
    h_response r;
    int fd = h_connect(f);
    h_sends(f, fd, "POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 404);
    assert_true(strstr(r.head, "Connection: close") != NULL);
    assert_true(h_closed(f, fd, H_DEADLINE_MS));
    close(fd);
}

static void test_oom_500_keeps_connection(void **state)
{
    h_fixture *f = *state;
    h_response r;
    nea_stats st;
    int fd = h_connect(f);
    h_sends(f, fd, "GET /alloc/100000000 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 500);
    assert_string_equal(r.body, "Internal Server Error: request exceeded its memory arena\n");
    h_sends(f, fd, "GET /alloc/1000 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    close(fd);
    h_stats(f, &st);
    assert_int_equal(st.oom_500, 1);
    assert_true(strstr(f->log.all, "GET /alloc/100000000 asked 100000000 bytes") != NULL);
}

static void test_pipelining_in_order(void **state)
{
    h_fixture *f = *state;
    h_response r;
    int fd = h_connect(f);
    h_sends(f, fd,
            "GET /p/one HTTP/1.1\r\nHost: x\r\n\r\n"
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\ntwo"
            "GET /sleep/30 HTTP/1.1\r\nHost: x\r\n\r\n"
            "GET /p/four HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "one");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "two");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "slept");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "four");
    close(fd);
}

static void test_pipelined_batch_is_one_write(void **state)
{
    /* Four pipelined requests read at once: the first three responses are
     * gathered in the slot's output buffer and go out with the fourth in
     * one write, not one write per response nor the batch and then the
     * last. */
    h_fixture *f = *state;
    h_response r;
    uv_os_fd_t sfd;
    int fd = h_connect(f);
    h_sends(f, fd, "GET /p/0 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_int_equal(uv_fileno((uv_handle_t *)&open_slot(f)->tcp, &sfd), 0);
    counted_fd = sfd;
    counted_writes = 0;
    h_sends(f, fd,
            "GET /p/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /p/2 HTTP/1.1\r\nHost: x\r\n\r\n"
            "GET /p/3 HTTP/1.1\r\nHost: x\r\n\r\nGET /p/4 HTTP/1.1\r\nHost: x\r\n\r\n");
    for (int i = 1; i <= 4; i++) {
        char want[4];
        snprintf(want, sizeof(want), "%d", i);
        assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
        assert_string_equal(r.body, want);
    }
    counted_fd = -1;
    assert_int_equal(counted_writes, 1);
    close(fd);
}

/* Pipelined: a small answer gathered in the batch, then one too large for
 * it, which leaves in the same writev and is cut by the kernel, then a HEAD
 * of the same resource and a small answer again. Each arrives whole and in
 * order: the large body is exactly its Content-Length (not one byte of the
 * batch counted as its own), the HEAD carries the GET's Content-Length and
 * no body. */
static void test_pipelined_small_large_head_small(void **state)
{
    h_fixture *f = *state;
    h_response r;
    char v[32], want[32];
    int fd = h_connect(f);
    h_sends(f, fd,
            "GET /p/1 HTTP/1.1\r\nHost: x\r\n\r\n"
            "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"
            "HEAD /big HTTP/1.1\r\nHost: x\r\n\r\n"
            "GET /p/4 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "1");
    assert_true(s_drain(&f->loop, fd, t_big_len, H_DEADLINE_MS));
    f->head_request = true;
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    f->head_request = false;
    snprintf(want, sizeof(want), "%zu", t_big_len);
    assert_string_equal(h_header(&r, "content-length", v, sizeof(v)), want);
    assert_int_equal(r.body_len, 0);
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "4");
    close(fd);
}

static void test_half_close_answers_buffered_requests(void **state)
{
    /* The first response (8 MiB) is still being written when the client
     * shuts down its sending side: the requests behind it were received
     * whole, so they are answered too, then the connection closes. */
    h_fixture *f = *state;
    h_response r;
    int fd = h_connect(f);
    h_sends(f, fd,
            "GET /big HTTP/1.1\r\nHost: x\r\n\r\nGET /p/2 HTTP/1.1\r\nHost: x\r\n\r\n"
            "GET /p/3 HTTP/1.1\r\nHost: x\r\n\r\n");
    /* The big response is being written and the two requests behind it
     * were read. */
    H_WAIT(f, h_slots_in(f, NEA__C_WRITING) == 1 && unread(f) == 0);
    shutdown(fd, SHUT_WR);
    H_WAIT(f, open_slot(f)->eof);
    assert_true(s_drain(&f->loop, fd, t_big_len, H_DEADLINE_MS));
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "2");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "3");
    assert_true(h_closed(f, fd, H_DEADLINE_MS));
    close(fd);
}

static void test_pipeline_flood_is_bounded(void **state)
{
    /* Far more pipelined requests than the read buffer holds, behind a
     * response the client does not read yet: the server fills its read
     * buffer, stops reading and leaves the rest in the kernel (it never
     * holds more than read_buffer_size of unprocessed bytes). Then all are
     * answered, in order. */
    h_fixture *f = *state;
    static char reqs[400 * 40];
    h_response r;
    nea__conn *c;
    size_t n = 0;
    int fd = h_connect(f);
    for (int i = 0; i < 400; i++) {
        n += (size_t)snprintf(reqs + n, sizeof(reqs) - n, "GET /p/%03d HTTP/1.1\r\nHost: x\r\n\r\n",
                              i);
    }
    assert_true(n > 2 * f->cfg.read_buffer_size);
    h_sends(f, fd, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    H_WAIT(f, h_slots_in(f, NEA__C_WRITING) == 1);
    c = open_slot(f);
    h_send(f, fd, reqs, n);
    /* Backpressure: the buffer is full, reading stopped, the rest waits in
     * the kernel. */
    H_WAIT(f, !c->reading);
    assert_int_equal(c->w->rlen, f->cfg.read_buffer_size);
    assert_true(unread(f) > 0);
    assert_true(unread(f) + f->cfg.read_buffer_size >= n); /* everything else is still there */
    assert_true(s_drain(&f->loop, fd, t_big_len, H_DEADLINE_MS));
    for (int i = 0; i < 400; i++) {
        char want[16];
        snprintf(want, sizeof(want), "%03d", i);
        assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
        assert_string_equal(r.body, want);
        /* Never more than the read buffer of unprocessed bytes. */
        assert_true(c->w == NULL || c->w->rlen - c->w->rpos <= f->cfg.read_buffer_size);
    }
    close(fd);
}

static void test_http10_keepalive_rules(void **state)
{
    h_fixture *f = *state;
    h_response r;
    char v[64];
    int fd;

    fd = h_connect(f);
    h_sends(f, fd, "GET /hello HTTP/1.0\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(h_header(&r, "connection", v, sizeof(v)), "close");
    assert_true(h_closed(f, fd, H_DEADLINE_MS));
    close(fd);

    fd = h_connect(f);
    h_sends(f, fd, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(h_header(&r, "connection", v, sizeof(v)), "keep-alive");
    h_sends(f, fd, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    close(fd);

    fd = h_connect(f);
    h_sends(f, fd, "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(h_header(&r, "connection", v, sizeof(v)), "close");
    assert_true(h_closed(f, fd, H_DEADLINE_MS));
    close(fd);
}

/* Responses go out without Nagle's delay: accepted sockets have
 * TCP_NODELAY (set once on the listener, which Linux copies to each). */
static void test_accepted_sockets_have_nodelay(void **state)
{
    h_fixture *f = *state;
    h_response r;
    uv_os_fd_t sfd;
    int on = 0;
    socklen_t len = sizeof(on);
    int fd = h_connect(f);
    h_expect(f, fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 200, &r);
    assert_int_equal(uv_fileno((uv_handle_t *)&open_slot(f)->tcp, &sfd), 0);
    assert_int_equal(getsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &on, &len), 0);
    assert_int_equal(on, 1);
    close(fd);
}

static bool lingering_or_gone(h_fixture *f)
{
    return h_slots_in(f, NEA__C_LINGER) > 0 || h_st(f).connections_open == 0;
}

/* raw on a fresh connection is answered status, then its slot lingers
 * while the client keeps its end open. */
static void lingers_after(h_fixture *f, const char *raw, int status)
{
    h_response r;
    int fd = h_connect(f);
    h_sends(f, fd, raw);
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), status);
    H_WAIT(f, lingering_or_gone(f));
    assert_int_equal(h_slots_in(f, NEA__C_LINGER), 1);
    close(fd);
    H_WAIT(f, h_st(f).connections_open == 0);
}

/* A peer that asked to close and sent nothing more gets a plain close once
 * its response is written: no half-close, no waiting for its FIN in
 * LINGER. With bytes after its request (or after an error response) the
 * server still lingers, so what the peer sends cannot reset the response. */
static void test_close_asked_by_peer_needs_no_linger(void **state)
{
    h_fixture *f = *state;
    h_response r;
    int fd = h_connect(f);
    h_sends(f, fd, "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    H_WAIT(f, lingering_or_gone(f)); /* the client has not closed its end */
    assert_int_equal(h_slots_in(f, NEA__C_LINGER), 0);
    assert_true(h_closed(f, fd, H_DEADLINE_MS));
    close(fd);

    /* Bytes after the request, and an error response to a request with a
     * body: the server lingers. */
    lingers_after(f,
                  "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                  "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n",
                  200);
    lingers_after(f,
                  "POST /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n"
                  "\r\nhello",
                  404);
}

/* A request asking to switch protocols on a route that does not: it is
 * answered with Connection: close, and the server lingers rather than
 * closing at once (the client asked for a new protocol, not for the end,
 * and what it sends next must not reset the answer). */
static void test_upgrade_request_answered_then_closed(void **state)
{
    h_fixture *f = *state;
    h_response r;
    char v[32];
    int fd = h_connect(f);
    h_sends(f, fd,
            "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(h_header(&r, "connection", v, sizeof(v)), "close");
    H_WAIT(f, lingering_or_gone(f));
    assert_int_equal(h_slots_in(f, NEA__C_LINGER), 1);
    h_sends(f, fd,
            "\x81\x85"
            "abcd"
            "xxxxx"); /* a frame: drained, not parsed */
    assert_true(h_closed(f, fd, H_DEADLINE_MS));
    close(fd);
    H_WAIT(f, h_st(f).connections_open == 0);
    assert_int_equal(h_st(f).rejected_400, 0);
}

static void test_expect_continue(void **state)
{
    h_fixture *f = *state;
    h_response r;
    int fd = h_connect(f);
    h_sends(f, fd,
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 100);
    h_sends(f, fd, "hello");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "hello");
    close(fd);

    /* Too large: 413 straight away, no 100. */
    fd = h_connect(f);
    h_sends(
        f, fd,
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999\r\nExpect: 100-continue\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 413);
    close(fd);
}

/* 100 Continue goes only to an HTTP/1.1 client that waits for it: a
 * chunked body asked for with Expect gets it, then its echo; on the same
 * connection (kept alive), a body that arrived with its head gets no
 * interim answer; an HTTP/1.0 client (which does not know 1xx answers)
 * gets none either, only its answer once the body arrives. */
static void test_expect_continue_only_when_it_helps(void **state)
{
    h_fixture *f = *state;
    h_response r;
    int fd = h_connect(f);

    h_sends(f, fd,
            "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            "Expect: 100-continue\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 100);
    h_sends(f, fd, "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "abcde");

    h_sends(f, fd,
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
            "hello");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "hello");
    close(fd);

    fd = h_connect(f);
    h_sends(f, fd, "POST /echo HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    H_WAIT(f, h_slots_in(f, NEA__C_BODY) == 1); /* the head was taken up, the body awaited */
    h_sends(f, fd, "hello");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "hello");
    close(fd);
}

/* A method the path does not know, on a target with a query: 405 with
 * the path's Allow (the query is no part of the path), and the connection
 * stays open for the next request. */
static void test_405_for_a_target_with_a_query(void **state)
{
    h_fixture *f = *state;
    h_response r;
    char v[64];
    int fd = h_connect(f);
    h_sends(f, fd, "DELETE /big?x=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 405);
    assert_non_null(h_header(&r, "allow", v, sizeof(v)));
    assert_string_equal(v, "GET, HEAD");
    assert_null(h_header(&r, "connection", v, sizeof(v)));
    h_sends(f, fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "Hello, World!");
    close(fd);
}

static void test_chunked_body(void **state)
{
    h_fixture *f = *state;
    h_response r;
    assert_int_equal(
        h_request(f,
                  "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\n",
                  &r),
        200);
    assert_string_equal(r.body, "hello, world");
}

static void test_chunked_too_large(void **state)
{
    h_fixture *f = *state;
    static char body[40000];
    size_t n;
    int fd = h_connect(f);
    h_response r;
    h_sends(f, fd, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    n = (size_t)snprintf(body, sizeof(body), "%x\r\n", 36000);
    memset(body + n, 'z', 36000);
    h_send(f, fd, body, n + 36000);
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 413);
    assert_true(h_closed(f, fd, H_DEADLINE_MS));
    close(fd);
}

static void test_bad_chunk_framing(void **state)
{
    h_fixture *f = *state;
    h_expect_close(
        f, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n", 400);
}

/* Every split point of several valid requests gives the same answer. */
static void test_split_at_every_offset(void **state)
{
    static const struct {
        const char *req;
        const char *body;
    } cases[] = {
        {"GET /hdr?q=1 HTTP/1.1\r\nHost: example\r\nX-Test: split\r\nAccept: */*\r\n\r\n",
         "split|q=1"},
        {"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world", "hello world"},
        {"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
         "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
         "abcde"},
    };
    h_fixture *f = *state;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const char *req = cases[c].req;
        size_t len = strlen(req);
        int fd = h_connect(f);
        for (size_t i = 1; i < len; i++) {
            h_response r;
            h_send(f, fd, req, i);
            H_WAIT(f, unread(f) == 0); /* the first part was read on its own */
            h_send(f, fd, req + i, len - i);
            if (h_read(f, fd, &r, H_DEADLINE_MS) != 200 || strcmp(r.body, cases[c].body) != 0) {
                fail_msg("case %zu split at %zu: status %d body '%s'", c, i, r.status, r.body);
            }
        }
        close(fd);
    }
}

static void test_idle_and_slow_connections_hold_no_arena(void **state)
{
    h_fixture *f;
    h_response r;
    int fds[8];
    h_test_start(state, NULL);
    f = *state;
    for (int i = 0; i < 8; i++) {
        fds[i] = h_connect(f);
        if (i % 2 == 0) {
            h_sends(f, fds[i], "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
            assert_int_equal(h_read(f, fds[i], &r, H_DEADLINE_MS), 200); /* now idle */
        } else {
            h_sends(f, fds[i], "GET /hello HTTP/1.1\r\nHo"); /* partial head */
        }
    }
    H_WAIT(f, h_slots_in(f, NEA__C_IDLE) == 4 && h_slots_in(f, NEA__C_HEAD) == 4 && unread(f) == 0);
    assert_int_equal(h_arenas_in_use(f), 0);
    for (int i = 0; i < 8; i++) {
        close(fds[i]);
    }
}

/* --- timeouts -------------------------------------------------------------------- */

static void short_timeouts(nea_config *c)
{
    c->header_timeout_ms = 300;
    c->body_timeout_ms = 200;
    c->keepalive_timeout_ms = 200;
    c->write_timeout_ms = 300;
}

static void test_header_deadline_against_dripping_client(void **state)
{
    static const char req[] =
        "GET /hello HTTP/1.1\r\nHost: x\r\nX-Drip: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    h_fixture *f;
    h_response r;
    nea_stats st;
    uint64_t t0;
    int fd, status = -1;
    h_test_start(state, short_timeouts);
    f = *state;
    fd = h_connect(f);
    t0 = h_now_ms();
    /* One byte every 40 ms: each is well inside any idle timeout, but the
     * whole head would take 2.6 s; the deadline counts from the first byte. */
    for (size_t i = 0; i < sizeof(req) - 1 && status < 0; i++) {
        h_send(f, fd, req + i, 1);
        status = h_read(f, fd, &r, 40);
    }
    assert_int_equal(status, 408);
    assert_true(h_now_ms() - t0 >= 280);
    assert_true(h_now_ms() - t0 < 1500);
    assert_true(h_closed(f, fd, H_DEADLINE_MS));
    h_stats(f, &st);
    assert_int_equal(st.timeouts, 1);
    close(fd);
}

static void test_body_timeout(void **state)
{
    h_fixture *f;
    h_response r;
    int fd;
    h_test_start(state, short_timeouts);
    f = *state;
    fd = h_connect(f);
    h_sends(f, fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 408);
    assert_true(h_closed(f, fd, H_DEADLINE_MS));
    assert_true(h_arenas_settle(f));
    close(fd);
}

static void body_deadline(nea_config *c)
{
    c->body_timeout_ms = 200;
    c->body_deadline_ms = 500;
}

static void test_body_deadline_against_dripping_client(void **state)
{
    /* One body byte every 100 ms never trips the 200 ms idle timer; the
     * 500 ms deadline cuts it anyway. */
    h_fixture *f;
    h_response r;
    uint64_t t0;
    int fd, status = -1;
    h_test_start(state, body_deadline);
    f = *state;
    fd = h_connect(f);
    h_sends(f, fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n");
    t0 = h_now_ms();
    for (int i = 0; i < 50 && status < 0; i++) {
        h_send(f, fd, "z", 1);
        status = h_read(f, fd, &r, 100);
    }
    assert_int_equal(status, 408);
    assert_true(h_now_ms() - t0 >= 450);
    assert_true(h_now_ms() - t0 < 2000);
    assert_true(h_closed(f, fd, H_DEADLINE_MS));
    assert_true(h_arenas_settle(f));
    close(fd);
}

static void test_keepalive_timeout(void **state)
{
    h_fixture *f;
    h_response r;
    int fd;
    h_test_start(state, short_timeouts);
    f = *state;
    fd = h_get(f, "/hello");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_true(h_quiet(f, fd, 100));
    assert_true(h_closed(f, fd, H_DEADLINE_MS));
    close(fd);
}

/* The slot's timer is set for the earliest deadline and re-arms when it
 * fires before the current one (conn.c: arm): a handler that outlives the
 * keep-alive timeout it started under is answered, not cut at the old
 * keep-alive deadline; once idle again, the keep-alive timeout applies. */
static void test_later_deadline_replaces_earlier(void **state)
{
    h_fixture *f;
    h_response r;
    int fd;
    h_test_start(state, short_timeouts); /* keep-alive 200 ms */
    f = *state;
    /* The keep-alive deadline of the fresh connection passes while the
     * handler sleeps. */
    fd = h_get(f, "/sleep/400");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_int_equal(h_st(f).timeouts, 0);
    assert_true(h_quiet(f, fd, 100));
    assert_true(h_closed(f, fd, H_DEADLINE_MS));
    close(fd);
}

static void test_slow_reader_is_cut(void **state)
{
    h_fixture *f;
    nea_stats st;
    int fd, small = 4096;
    h_test_start(state, short_timeouts);
    f = *state;
    fd = h_connect(f);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    h_sends(f, fd, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    /* Never read: the 8 MiB response cannot drain, the write timer fires. */
    H_WAIT(f, h_slots_in(f, NEA__C_WRITING) == 1);
    assert_int_equal(h_arenas_in_use(f), 1);
    assert_true(h_arenas_settle(f));
    h_stats(f, &st);
    assert_int_equal(st.timeouts, 1);
    assert_int_equal(st.connections_open, 0);
    close(fd);
}

/* --- asynchronous handlers ------------------------------------------------- */

static void test_async_handler_completes_from_timer(void **state)
{
    h_fixture *f;
    h_response r;
    int fd;
    uint64_t t0;
    h_test_start(state, NULL);
    f = *state;
    t0 = h_now_ms();
    fd = h_get(f, "/sleep/60");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "slept");
    assert_true(h_now_ms() - t0 >= 55);
    assert_true(h_arenas_settle(f));
    assert_int_equal(t_defers_run, 1);
    close(fd);
}

static void test_client_disconnect_cancels_async_request(void **state)
{
    h_fixture *f;
    nea_stats st;
    int fd;
    h_test_start(state, NULL);
    f = *state;
    fd = h_get(f, "/sleep/10000");
    H_WAIT(f, h_arenas_in_use(f) == 1);
    assert_int_equal(h_arenas_in_use(f), 1);
    assert_int_equal(t_defers_run, 0);
    s_reset(fd);
    assert_true(h_arenas_settle(f)); /* long before the 10 s timer */
    assert_int_equal(t_defers_run, 1);
    h_stats(f, &st);
    assert_int_equal(st.responses[2], 0);
    assert_int_equal(st.connections_open, 0);
}

/* --- minimum body data rate --------------------------------------------------- */

static void two_arenas_min_rate(nea_config *cfg)
{
    cfg->arena_count = 2;
    cfg->body_min_rate = 1000;
    cfg->body_rate_grace_ms = 300;
    cfg->queue_timeout_ms = 3000;
}

static void test_dripping_uploads_lose_their_arenas(void **state)
{
    enum { DRIPPERS = 4 };
    static const char head[] = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n";
    h_fixture *f;
    h_response r;
    int d[DRIPPERS], probe;
    nea_stats st;
    uint64_t t0;
    int probe_status = 0;

    h_test_start(state, two_arenas_min_rate);
    f = *state;
    t0 = h_now_ms();
    for (int i = 0; i < DRIPPERS; i++) {
        d[i] = h_connect(f);
        h_sends(f, d[i], head);
    }
    /* Both arenas are held by drippers now; the probe waits in the queue. */
    probe = h_connect(f);
    h_sends(f, probe, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    /* Drip 5 bytes every 50 ms (100 B/s, below the 1000 B/s minimum) until
     * the probe is answered, at most 3 s. */
    while (probe_status == 0 && h_now_ms() - t0 < 3000) {
        for (int i = 0; i < DRIPPERS; i++) {
            (void)write(d[i], "aaaaa", 5);
        }
        h_pump(f, 50, NULL);
        if (h_quiet(f, probe, 1) == false) {
            probe_status = h_read(f, probe, &r, H_DEADLINE_MS);
        }
    }
    assert_int_equal(probe_status, 200);
    print_message("probe served %llu ms after %d dripping uploads started (2 arenas)\n",
                  (unsigned long long)(h_now_ms() - t0), DRIPPERS);
    h_stats(f, &st);
    assert_true(st.timeouts >= 2); /* the drippers that held arenas were cut (408) */
    for (int i = 0; i < DRIPPERS; i++) {
        close(d[i]);
    }
    close(probe);
    assert_true(h_arenas_settle(f));
}

static void slow_but_steady(nea_config *cfg)
{
    cfg->body_min_rate = 100;
    cfg->body_rate_grace_ms = 200;
}

static void test_body_above_min_rate_completes(void **state)
{
    h_fixture *f;
    h_response r;
    int c;

    h_test_start(state, slow_but_steady);
    f = *state;
    c = h_connect(f);
    h_sends(f, c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 120\r\n\r\n");
    /* 20 bytes every 50 ms: 400 B/s, four times the 100 B/s minimum. */
    for (int i = 0; i < 6; i++) {
        h_pump(f, 50, NULL);
        h_sends(f, c, "01234567890123456789");
    }
    assert_int_equal(h_read(f, c, &r, H_DEADLINE_MS), 200);
    assert_int_equal(r.body_len, 120);
    close(c);
}

/* --- handlers that never answer --------------------------------------------- */

static unsigned defers_here;

static void count_defer(void *arg)
{
    (void)arg;
    defers_here++;
}

static void r_forgets(nea_req *req, void *d)
{
    (void)d;
    (void)nea_req_defer(req, count_defer, NULL);
}

static void r_never(nea_req *req, void *d)
{
    (void)d;
    (void)nea_req_defer(req, count_defer, NULL);
    nea_req_keep(req); /* promises an answer that never comes */
}

static void short_response_timeout(nea_config *cfg)
{
    cfg->response_timeout_ms = 200;
}

static void test_handler_with_nothing_pending_gets_500(void **state)
{
    h_fixture *f;
    h_response r;
    nea_stats st;
    int c;

    h_test_start(state, NULL);
    f = *state;
    assert_int_equal(nea_server_route(f->srv, "GET", "/forgets", r_forgets, NULL), 0);
    defers_here = 0;
    c = h_connect(f);
    h_sends(f, c, "GET /forgets HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, c, &r, 1000), 500);
    /* Its own answer: not the out-of-memory one. */
    assert_string_equal(r.body, "Internal Server Error: the handler returned without answering\n");
    assert_int_equal(h_read(f, c, &r, 1000), 200); /* the connection carries on */
    assert_true(t_log_has(&f->log, "GET /forgets returned without responding"));
    assert_int_equal(defers_here, 1);
    h_stats(f, &st);
    assert_int_equal(st.unanswered, 1);
    assert_int_equal(st.oom_500, 0);
    close(c);
}

static void test_response_timeout_gives_504_and_cleans_up(void **state)
{
    h_fixture *f;
    h_response r;
    nea_stats st;
    int c;
    uint64_t t0;

    h_test_start(state, short_response_timeout);
    f = *state;
    assert_int_equal(nea_server_route(f->srv, "GET", "/never", r_never, NULL), 0);
    defers_here = 0;
    t_defers_run = 0;
    c = h_connect(f);
    t0 = h_now_ms();
    h_sends(f, c, "GET /never HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, c, &r, 2000), 504);
    assert_true(h_now_ms() - t0 >= 190);
    assert_int_equal(defers_here, 1);
    /* A handler waiting on a tracked timer past the deadline: 504 too, its
     * timer is closed and its defers run. */
    h_sends(f, c, "GET /sleep/5000 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, c, &r, 2000), 504);
    assert_int_equal(t_defers_run, 1);
    assert_true(h_arenas_settle(f));
    h_sends(f, c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, c, &r, 1000), 200);
    assert_true(t_log_has(&f->log, "no response to GET /never within response_timeout_ms"));
    h_stats(f, &st);
    assert_int_equal(st.unanswered, 2);
    assert_int_equal(nea_stats_shed(&st), 0); /* a handler ran: never a 503 */
    close(c);
}

/* Content-Length equal to the limit is read; a chunk announced beyond the
 * limit is refused at its size line, before any of its data arrives. */
static void test_body_limit_edges(void **state)
{
    static char body[32u << 10];
    char head[128];
    h_fixture *f = *state;
    h_response r;
    int fd = h_connect(f);
    memset(body, 'b', sizeof(body));
    snprintf(head, sizeof(head), "POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n",
             sizeof(body));
    h_sends(f, fd, head);
    h_send(f, fd, body, sizeof(body));
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    h_sends(f, fd,
            "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            "ffffff\r\nabc");
    assert_int_equal(h_read(f, fd, &r, 1000), 413);
    close(fd);
}

/* Drain closes a connection caught mid-head at once, not at its header
 * deadline. */
static void test_drain_closes_connection_mid_head(void **state)
{
    h_fixture *f = *state;
    int fd = h_connect(f);
    h_sends(f, fd, "GET /hello HTTP/1.1\r\nHo");
    H_WAIT(f, h_slots_in(f, NEA__C_HEAD) == 1);
    h_close(f);
    assert_true(h_closed(f, fd, 1000));
    close(fd);
}

/* --- half-close: the peer's end of sending is not a cancel -------------------- */

/* Sends raw, shuts the sending side, and expects each status in turn, then
 * the server's close. */
static void half_close_expect(h_fixture *f, const char *raw, const int *statuses, unsigned n,
                              const char *last_body)
{
    h_response r;
    int fd = h_connect(f);
    h_sends(f, fd, raw);
    s_half_close(fd);
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), statuses[i]);
    }
    if (last_body != NULL) {
        assert_string_equal(r.body, last_body);
    }
    assert_true(h_closed(f, fd, H_DEADLINE_MS));
    close(fd);
}

static void test_half_close_after_a_request_is_answered(void **state)
{
    static const int ok[] = {200};
    static const int two[] = {200, 200};
    h_fixture *f = *state;
    /* answered at once */
    half_close_expect(f, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", ok, 1, "Hello, World!");
    /* answered later, from a timer */
    half_close_expect(f, "GET /sleep/50 HTTP/1.1\r\nHost: x\r\n\r\n", ok, 1, "slept");
    /* a body that arrived whole before the half-close */
    half_close_expect(f, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", ok, 1,
                      "abc");
    /* pipelined, the second one asynchronous */
    half_close_expect(f,
                      "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /sleep/30 HTTP/1.1\r\nHost: x\r\n\r\n",
                      two, 2, "slept");
    assert_true(h_arenas_settle(f));
    assert_int_equal(t_defers_run, 2);
}

static void one_arena_long_queue(nea_config *cfg)
{
    cfg->arena_count = 1;
    cfg->queue_timeout_ms = 3000;
}

/* A complete request waiting for an arena is answered after a half-close. */
static void test_half_close_while_queued_for_an_arena(void **state)
{
    h_fixture *f;
    h_response r;
    int busy, fd;
    h_test_start(state, one_arena_long_queue);
    f = *state;
    busy = h_get(f, "/sleep/300"); /* holds the only arena */
    H_WAIT(f, h_arenas_in_use(f) == 1);
    fd = h_get(f, "/hello");
    H_WAIT(f, h_slots_in(f, NEA__C_QUEUED) == 1);
    s_half_close(fd);
    H_WAIT(f, open_slot_in(f, NEA__C_QUEUED)->eof);
    assert_int_equal(h_read(f, busy, &r, H_DEADLINE_MS), 200);
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "Hello, World!");
    assert_true(h_closed(f, fd, H_DEADLINE_MS));
    close(fd);
    close(busy);
}

/* Input that can no longer come: a head or a body cut by the half-close
 * ends the connection, and a body's request is cancelled. */
static void test_half_close_mid_head_or_body_closes(void **state)
{
    h_fixture *f = *state;
    nea_stats before = h_st(f), after;
    int fd = h_connect(f);
    h_sends(f, fd, "GET /hello HTTP/1.1\r\nHo");
    s_half_close(fd);
    assert_true(h_closed(f, fd, H_DEADLINE_MS));
    close(fd);
    fd = h_connect(f);
    h_sends(f, fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
    H_WAIT(f, h_arenas_in_use(f) == 1);
    s_half_close(fd);
    assert_true(h_closed(f, fd, H_DEADLINE_MS));
    assert_true(h_arenas_settle(f));
    close(fd);
    after = h_st(f);
    assert_int_equal(after.timeouts, before.timeouts); /* not left to a deadline */
}

/* A reset, unlike a half-close, cancels the request in flight at once. */
static void test_reset_cancels_an_async_request(void **state)
{
    h_fixture *f = *state;
    int fd = h_get(f, "/sleep/10000");
    H_WAIT(f, h_arenas_in_use(f) == 1);
    s_reset(fd);
    assert_true(h_arenas_settle(f)); /* long before the 10 s timer */
    assert_int_equal(t_defers_run, 1);
}

/* --- bodies -------------------------------------------------------------------- */

typedef struct counter {
    uint64_t bytes;
} counter;

static void count_piece(nea_req *req, const char *data, size_t len, void *arg)
{
    counter *c = arg;
    (void)data;
    if (data == NULL) {
        char *body = nea_printf(req, "%llu", (unsigned long long)c->bytes);
        (void)nea_respond(req, 200, "text/plain", body, strlen(body));
        return;
    }
    c->bytes += len;
}

static void r_count(nea_req *req, void *d)
{
    counter *c = nea_alloc(req, sizeof(*c));
    (void)d;
    c->bytes = 0;
    assert_int_equal(nea_body_read(req, count_piece, c), 0);
}

/* 1,000 chunks of 8 KiB: the chunked framing budget is per size line. */
static void test_many_chunks_are_not_capped(void **state)
{
    enum { CHUNKS = 1000, CHUNK = 8192 };
    h_fixture *f = *state;
    h_response r;
    nea_route_stats rs;
    static char chunk[CHUNK + 16];
    int fd, n;

    assert_int_equal(
        nea_server_route_stream(f->srv, "POST", "/count", r_count, NULL, 0, (uint64_t)64 << 20),
        0);
    fd = h_connect(f);
    h_sends(f, fd, "POST /count HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    n = snprintf(chunk, sizeof(chunk), "%x\r\n", CHUNK);
    memset(chunk + n, 'c', CHUNK);
    memcpy(chunk + n + CHUNK, "\r\n", 2);
    for (int i = 0; i < CHUNKS; i++) {
        h_send(f, fd, chunk, (size_t)n + CHUNK + 2);
    }
    h_sends(f, fd, "0\r\n\r\n");
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "8192000");
    close(fd);
    /* Received bytes count a body read in pieces too. */
    for (unsigned i = 0; i < nea_server_route_stats_count(f->srv); i++) {
        assert_int_equal(nea_server_route_stats(f->srv, i, &rs), 0);
        if (strcmp(rs.path, "/count") == 0) {
            assert_true(rs.bytes_in >= (uint64_t)CHUNKS * CHUNK);
        }
    }
}

/* --- 100 Continue under a client that does not read ----------------------- */

/* Pipelined uploads, each body followed in the same segment by the next
 * head with Expect: 100-continue, to a client that never reads, on
 * sockets with tiny buffers: as the server's send queue fills, the write
 * of [gathered answers + 100 Continue] is cut at some byte, on many
 * connections at different places (the bodies vary in length), including
 * inside the interim answer, and the next head asks for another one while
 * the rest of the first is still queued. libnea must never hand libuv a
 * write request that is still queued (its queue would be corrupted): the
 * connections end by their write deadline or a reset, and the server
 * keeps serving. */
static void short_writes(nea_config *cfg)
{
    cfg->write_timeout_ms = 300;
    cfg->max_body_size = 4096;
}

static int connect_small(h_fixture *f, int rcvbuf)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f->port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static size_t upload_head(char *buf, size_t cap, unsigned len)
{
    return (size_t)snprintf(buf, cap,
                            "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                            "Content-Length: %u\r\n\r\n",
                            len);
}

static void test_expect_continue_pipeline_to_a_client_that_does_not_read(void **state)
{
    h_fixture *f;
    h_response r;
    static char seg[4096];
    int small = 2048;

    h_test_start(state, short_writes);
    f = *state;
    for (unsigned conn = 0; conn < 60; conn++) {
        unsigned len = 700 + (conn * 37) % 900;
        int fd = connect_small(f, small);
        nea__conn *c;
        uv_os_fd_t sfd;
        size_t n;

        H_WAIT(f, h_slots_in(f, NEA__C_IDLE) == 1);
        c = open_slot(f);
        assert_int_equal(uv_fileno((uv_handle_t *)&c->tcp, &sfd), 0);
        assert_int_equal(setsockopt(sfd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
        n = upload_head(seg, sizeof(seg), len);
        h_send(f, fd, seg, n);
        for (unsigned k = 0; k < 10 && c->state != NEA__C_CLOSING && c->state != NEA__C_FREE;
             k++) {
            /* the body, and the next head asking for 100 Continue */
            unsigned next = 700 + (conn * 37 + k * 101) % 900;
            memset(seg, 'b', len);
            n = len + upload_head(seg + len, sizeof(seg) - len, next);
            if (send(fd, seg, n, MSG_DONTWAIT) != (ssize_t)n) {
                break; /* the server stopped reading: its answers are stuck */
            }
            len = next;
            /* Until the server has read it all and waits for the next body
             * (or is stuck writing). */
            for (uint64_t end = h_now_ms() + 200; h_now_ms() < end && unread(f) > 0;) {
                h_step(f, 1);
            }
            h_step(f, 0);
        }
        s_reset(fd);
        H_WAIT(f, h_st(f).connections_open == 0);
    }
    assert_true(h_arenas_settle(f));
    assert_int_equal(h_request(f, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
}

/* The interleaving itself, exactly: the kernel cuts the interim answer
 * 15 bytes short and the client stops reading; the next body arrives
 * with the next head asking for 100 Continue. Nothing may be handed to
 * libuv twice: once the client reads again it gets every answer, in
 * order, whole. */
static size_t upload(char *seg, size_t cap, unsigned len, char fill, unsigned next)
{
    size_t n;
    memset(seg, fill, len);
    n = len;
    if (next > 0) {
        n += upload_head(seg + len, cap - len, next);
    }
    return n;
}

static void test_expect_continue_cut_inside_the_interim_answer(void **state)
{
    h_fixture *f = *state;
    static char seg[4096], got[16384];
    uv_os_fd_t sfd;
    size_t n, have = 0;
    unsigned continues = 0;
    const char *p;
    int fd = h_connect(f);

    H_WAIT(f, h_slots_in(f, NEA__C_IDLE) == 1);
    assert_int_equal(uv_fileno((uv_handle_t *)&open_slot(f)->tcp, &sfd), 0);
    counted_fd = sfd;
    stalled = false;
    n = upload_head(seg, sizeof(seg), 300);
    h_send(f, fd, seg, n);
    H_WAIT(f, open_slot(f)->state == NEA__C_BODY);
    cut_continue = true;
    n = upload(seg, sizeof(seg), 300, '1', 400);
    h_send(f, fd, seg, n);
    H_WAIT(f, stalled && unread(f) == 0);
    h_pump(f, 20, NULL);
    n = upload(seg, sizeof(seg), 400, '2', 500);
    h_send(f, fd, seg, n);
    H_WAIT(f, unread(f) == 0);
    h_pump(f, 20, NULL);
    /* The client reads again. */
    cut_continue = stalled = false;
    counted_fd = -1;
    for (uint64_t end = h_now_ms() + H_DEADLINE_MS; h_now_ms() < end;) {
        ssize_t r = recv(fd, got + have, sizeof(got) - 1 - have, MSG_DONTWAIT);
        if (r > 0) {
            have += (size_t)r;
            got[have] = '\0';
        } else {
            h_step(f, 1);
        }
        if (strstr(got, "HTTP/1.1 200") != NULL && strstr(got, "22222") != NULL &&
            open_slot(f)->state == NEA__C_BODY) {
            break;
        }
    }
    n = upload(seg, sizeof(seg), 500, '3', 0);
    h_send(f, fd, seg, n);
    for (uint64_t end = h_now_ms() + H_DEADLINE_MS; h_now_ms() < end && strstr(got, "33333") == NULL;) {
        ssize_t r = recv(fd, got + have, sizeof(got) - 1 - have, MSG_DONTWAIT);
        if (r > 0) {
            have += (size_t)r;
            got[have] = '\0';
        } else {
            h_step(f, 1);
        }
    }
    /* Every interim answer whole, every answer in order. */
    for (p = got; (p = strstr(p, continue_line)) != NULL; p++) {
        continues++;
    }
    assert_int_equal(continues, 3);
    assert_true(strstr(got, "11111") < strstr(got, "22222"));
    assert_true(strstr(got, "22222") < strstr(got, "33333"));
    assert_int_equal(h_st(f).responses[2], 3);
    close(fd);
}

/* --- pieces of 4 GiB and more --------------------------------------------------- */

#define HUGE_LEN (((uint64_t)4 << 30) + 10)

static char *huge;

static void r_huge(nea_req *req, void *d)
{
    (void)d;
    assert_int_equal(nea_respond_static(req, 200, "application/octet-stream", huge, HUGE_LEN), 0);
}

static void huge_end(nea_req *req, void *arg)
{
    (void)arg;
    assert_int_equal(nea_stream_end(req), 0);
}

static void r_huge_stream(nea_req *req, void *d)
{
    (void)d;
    assert_int_equal(nea_stream_start(req, 200, "application/octet-stream", HUGE_LEN), 0);
    assert_int_equal(nea_stream_write(req, huge, HUGE_LEN, huge_end, NULL), 0);
}

/* Reads one response of HUGE_LEN body bytes: its Content-Length, every
 * byte, and the last ten. */
static void read_huge(h_fixture *f, int fd)
{
    static char buf[1 << 20];
    char tail[10];
    size_t have = 0, head_end = 0;
    uint64_t got = 0, end = h_now_ms() + H_DEADLINE_MS; /* moved on by every byte */
    const char *cl;

    while (head_end == 0 && h_now_ms() < end) {
        ssize_t n = recv(fd, buf + have, 1, MSG_DONTWAIT);
        if (n > 0) {
            end = h_now_ms() + H_DEADLINE_MS;
            have += (size_t)n;
            if (have >= 4 && memcmp(buf + have - 4, "\r\n\r\n", 4) == 0) {
                head_end = have;
            }
        } else {
            h_step(f, 1);
        }
    }
    buf[head_end] = '\0';
    cl = strstr(buf, "Content-Length: ");
    assert_non_null(cl);
    assert_int_equal(strtoull(cl + 16, NULL, 10), HUGE_LEN);
    while (got < HUGE_LEN && h_now_ms() < end) {
        size_t want = HUGE_LEN - got < sizeof(buf) ? (size_t)(HUGE_LEN - got) : sizeof(buf);
        ssize_t n = recv(fd, buf, want, MSG_DONTWAIT);
        if (n > 0) {
            end = h_now_ms() + H_DEADLINE_MS;
            if (got + (uint64_t)n >= HUGE_LEN - 10) {
                for (uint64_t i = got; i < got + (uint64_t)n; i++) {
                    if (i >= HUGE_LEN - 10) {
                        tail[i - (HUGE_LEN - 10)] = buf[i - got];
                    }
                }
            }
            got += (uint64_t)n;
        } else {
            h_step(f, 0);
        }
    }
    assert_int_equal(got, HUGE_LEN);
    assert_memory_equal(tail, "0123456789", 10);
}

static void test_pieces_of_4_gib_and_more(void **state)
{
    h_fixture *f = *state;
    h_response r;
    int fd;
    if (RUNNING_ON_VALGRIND) {
        skip(); /* valgrind checks every byte of each writev: hours for 4 GiB */
    }
    huge = mmap(NULL, HUGE_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                -1, 0);
    assert_true(huge != MAP_FAILED);
    memcpy(huge + HUGE_LEN - 10, "0123456789", 10); /* the rest reads as the zero page */
    assert_int_equal(nea_server_route(f->srv, "GET", "/huge", r_huge, NULL), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/huge-stream", r_huge_stream, NULL), 0);
    fd = h_connect(f);
    /* Each is followed by a pipelined request, which must not be read as
     * body. */
    h_sends(f, fd,
            "GET /huge HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
            "GET /huge-stream HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    read_huge(f, fd);
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "Hello, World!");
    read_huge(f, fd);
    assert_int_equal(h_read(f, fd, &r, H_DEADLINE_MS), 200);
    assert_string_equal(r.body, "Hello, World!");
    close(fd);
    assert_true(h_arenas_settle(f));
    munmap(huge, HUGE_LEN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_body_limit_edges, h_test_setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_drain_closes_connection_mid_head, h_test_setup,
                                        h_test_teardown),
        cmocka_unit_test_teardown(test_dripping_uploads_lose_their_arenas, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_close_asked_by_peer_needs_no_linger, h_test_setup,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_accepted_sockets_have_nodelay, h_test_setup,
                                        h_test_teardown),
        cmocka_unit_test_teardown(test_later_deadline_replaces_earlier, h_test_teardown),
        cmocka_unit_test_teardown(test_body_above_min_rate_completes, h_test_teardown),
        cmocka_unit_test_teardown(test_handler_with_nothing_pending_gets_500, h_test_teardown),
        cmocka_unit_test_teardown(test_response_timeout_gives_504_and_cleans_up, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_404_with_body_closes, h_test_setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_oom_500_keeps_connection, h_test_setup,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_pipelining_in_order, h_test_setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_batch_is_one_write, h_test_setup,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_small_large_head_small, h_test_setup,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_half_close_answers_buffered_requests, h_test_setup,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_flood_is_bounded, h_test_setup,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_http10_keepalive_rules, h_test_setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_expect_continue, h_test_setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_expect_continue_only_when_it_helps, h_test_setup,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_405_for_a_target_with_a_query, h_test_setup,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_upgrade_request_answered_then_closed, h_test_setup,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_chunked_body, h_test_setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_chunked_too_large, h_test_setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_bad_chunk_framing, h_test_setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_split_at_every_offset, h_test_setup, h_test_teardown),
        cmocka_unit_test_teardown(test_idle_and_slow_connections_hold_no_arena, h_test_teardown),
        cmocka_unit_test_teardown(test_header_deadline_against_dripping_client, h_test_teardown),
        cmocka_unit_test_teardown(test_body_timeout, h_test_teardown),
        cmocka_unit_test_teardown(test_body_deadline_against_dripping_client, h_test_teardown),
        cmocka_unit_test_teardown(test_keepalive_timeout, h_test_teardown),
        cmocka_unit_test_teardown(test_slow_reader_is_cut, h_test_teardown),
        cmocka_unit_test_teardown(test_async_handler_completes_from_timer, h_test_teardown),
        cmocka_unit_test_teardown(test_client_disconnect_cancels_async_request, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_half_close_after_a_request_is_answered, h_test_setup,
                                        h_test_teardown),
        cmocka_unit_test_teardown(test_half_close_while_queued_for_an_arena, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_half_close_mid_head_or_body_closes, h_test_setup,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_reset_cancels_an_async_request, h_test_setup,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_many_chunks_are_not_capped, h_test_setup,
                                        h_test_teardown),
        cmocka_unit_test_teardown(test_expect_continue_pipeline_to_a_client_that_does_not_read,
                                  h_test_teardown),
        cmocka_unit_test_setup_teardown(test_pieces_of_4_gib_and_more, h_test_setup,
                                        h_test_teardown),
        cmocka_unit_test_setup_teardown(test_expect_continue_cut_inside_the_interim_answer,
                                        h_test_setup, h_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
