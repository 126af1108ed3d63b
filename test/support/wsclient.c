/*
 * wsclient.c - see wsclient.h.
 */
#include "wsclient.h"

#include "sock.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdarg.h>
#include <setjmp.h>
#include <cmocka.h>

static uint8_t msg_buf[T_WS_MSG_MAX];

/* Waits for the loop or fd to have something, at most ms. */
static void wait_some(uv_loop_t *loop, int fd, int ms)
{
    struct pollfd p[2] = {{uv_backend_fd(loop), POLLIN, 0}, {fd, POLLIN, 0}};
    int t = uv_backend_timeout(loop);
    if (t < 0 || t > ms) {
        t = ms;
    }
    poll(p, 2, t);
}

static uint32_t next_rand(t_ws *w)
{
    w->seed = w->seed * 1664525u + 1013904223u;
    return w->seed;
}

void t_ws_attach(t_ws *w, uv_loop_t *loop, int fd)
{
    memset(w, 0, sizeof(*w));
    w->loop = loop;
    w->msg = msg_buf;
    w->auto_pong = true;
    w->seed = (uint32_t)fd * 2654435761u + 12345u;
    nea__ws_parser_init(&w->parser, true, 0);
    w->fd = fd;
}

bool t_ws_open(t_ws *w, uv_loop_t *loop, int port, const char *path, const char *extra, int *status,
               char *head, size_t head_len)
{
    static const char key[] = "dGhlIHNhbXBsZSBub25jZQ=="; /* RFC 6455's example nonce */
    char req[2048], want[NEA__WS_ACCEPT_LEN + 1], got[64];
    s_response r;
    int n;

    t_ws_attach(w, loop, s_connect(loop, port));
    n = snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                 "Sec-WebSocket-Version: 13\r\n%s\r\n",
                 path, key, extra != NULL ? extra : "");
    s_send(loop, w->fd, req, (size_t)n);
    *status = s_read(loop, w->fd, &r, false, S_DEADLINE_MS);
    if (head != NULL) {
        snprintf(head, head_len, "%s", r.head);
    }
    if (*status != 101) {
        return false;
    }
    nea__ws_accept_key(key, strlen(key), want);
    return s_header(&r, "sec-websocket-accept", got, sizeof(got)) != NULL &&
           strcmp(got, want) == 0 && s_header(&r, "upgrade", got, sizeof(got)) != NULL &&
           strcasecmp(got, "websocket") == 0;
}

size_t t_ws_build(uint8_t *out, unsigned opcode, bool fin, const void *data, size_t len,
                  const uint8_t *mask)
{
    uint8_t b0, b1, len7;
    size_t h = 0;
    b0 = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0F));
    len7 = len < 126 ? (uint8_t)len : len <= 0xFFFF ? 126 : 127;
    b1 = (uint8_t)((mask != NULL ? 0x80 : 0) | len7);
    out[h++] = b0;
    out[h++] = b1;
    if (len7 == 126) {
        out[h++] = (uint8_t)(len >> 8);
        out[h++] = (uint8_t)len;
    } else if (len7 == 127) {
        for (int i = 7; i >= 0; i--) {
            out[h++] = (uint8_t)((uint64_t)len >> (8 * i));
        }
    }
    if (mask != NULL) {
        memcpy(out + h, mask, 4);
        h += 4;
    }
    if (len > 0) {
        memcpy(out + h, data, len);
        if (mask != NULL) {
            nea__ws_mask(out + h, len, mask, 0);
        }
    }
    return h + len;
}

static uint8_t tx[T_WS_MSG_MAX + 16];

void t_ws_frame(t_ws *w, unsigned opcode, bool fin, const void *data, size_t len)
{
    uint32_t k = next_rand(w);
    uint8_t mask[4] = {(uint8_t)k, (uint8_t)(k >> 8), (uint8_t)(k >> 16), (uint8_t)(k >> 24)};
    assert_true(len <= T_WS_MSG_MAX);
    s_send(w->loop, w->fd, tx, t_ws_build(tx, opcode, fin, data, len, mask));
}

void t_ws_send_raw(t_ws *w, const void *data, size_t len, size_t piece)
{
    const uint8_t *p = data;
    if (piece == 0) {
        piece = len;
    }
    while (len > 0) {
        size_t n = len < piece ? len : piece;
        s_send(w->loop, w->fd, p, n);
        p += n;
        len -= n;
        for (int i = 0; i < 3; i++) {
            uv_run(w->loop, UV_RUN_NOWAIT);
        }
    }
}

/* Feeds what is buffered to the parser until an event completes. */
static t_ws_kind parse_some(t_ws *w)
{
    while (w->rx_pos < w->rx_len) {
        nea__ws_event ev;
        size_t n = nea__ws_parse(&w->parser, w->rx + w->rx_pos, w->rx_len - w->rx_pos, &ev);
        w->rx_pos += n;
        switch (ev.type) {
        case NEA__WS_EV_NEED:
            break;
        case NEA__WS_EV_DATA:
            if (ev.first) {
                w->msg_len = 0;
                w->opcode = ev.opcode;
            }
            assert_true(w->msg_len + ev.len <= T_WS_MSG_MAX);
            if (ev.len > 0) {
                memcpy(w->msg + w->msg_len, ev.data, ev.len);
            }
            w->msg_len += ev.len;
            if (ev.last) {
                return T_WS_MESSAGE;
            }
            break;
        case NEA__WS_EV_PING:
        case NEA__WS_EV_PONG:
            memcpy(w->ctl, ev.data, ev.len);
            w->ctl_len = ev.len;
            if (ev.type == NEA__WS_EV_PONG) {
                w->pongs++;
                return T_WS_PONG;
            }
            w->pings++;
            if (!w->auto_pong) {
                return T_WS_PING;
            }
            t_ws_frame(w, NEA__WS_PONG, true, w->ctl, w->ctl_len);
            break;
        case NEA__WS_EV_CLOSE:
            w->code = ev.code;
            if (ev.len > 0) {
                memcpy(w->ctl, ev.data, ev.len);
            }
            w->ctl_len = ev.len;
            return T_WS_CLOSE;
        case NEA__WS_EV_ERROR:
            fail_msg("the server broke RFC 6455: %s (close code %u)", ev.why, ev.code);
            break;
        }
    }
    w->rx_pos = w->rx_len = 0;
    return T_WS_NONE;
}

t_ws_kind t_ws_next(t_ws *w, unsigned timeout_ms)
{
    uint64_t end = s_now_ms() + timeout_ms;
    for (;;) {
        t_ws_kind k = parse_some(w);
        ssize_t n;
        if (k != T_WS_NONE) {
            return w->kind = k;
        }
        if (w->eof) {
            return w->kind = T_WS_EOF;
        }
        n = recv(w->fd, w->rx + w->rx_len, sizeof(w->rx) - w->rx_len, 0);
        if (n > 0) {
            w->rx_len += (size_t)n;
            continue;
        }
        if (n == 0 || errno != EAGAIN) {
            w->eof = true;
            w->reset = n < 0;
            continue;
        }
        if (s_now_ms() >= end) {
            return w->kind = T_WS_NONE;
        }
        uv_run(w->loop, UV_RUN_NOWAIT);
        wait_some(w->loop, w->fd, 10);
    }
}

void t_ws_expect(t_ws *w, unsigned opcode, const void *data, size_t len)
{
    t_ws_kind k = t_ws_next(w, S_DEADLINE_MS);
    if (k != T_WS_MESSAGE) {
        fail_msg("expected a message of %zu bytes, got event %d (close code %u)", len, (int)k,
                 w->code);
    }
    assert_int_equal(w->opcode, opcode);
    assert_int_equal(w->msg_len, len);
    assert_memory_equal(w->msg, data, len);
}

unsigned t_ws_close(t_ws *w, unsigned code, const char *reason)
{
    uint8_t payload[NEA__WS_CONTROL_MAX];
    size_t n = 0;
    unsigned got = 0;
    assert_int_equal(
        nea__ws_close_payload(payload, code, reason, reason != NULL ? strlen(reason) : 0, &n), 0);
    t_ws_frame(w, NEA__WS_CLOSE, true, payload, n);
    for (;;) {
        t_ws_kind k = t_ws_next(w, S_DEADLINE_MS);
        if (k == T_WS_CLOSE) {
            got = w->code;
            continue;
        }
        if (k == T_WS_EOF || k == T_WS_NONE) {
            assert_int_equal(k, T_WS_EOF); /* the server closes the TCP connection first */
            return got;
        }
    }
}

void t_ws_drop(t_ws *w, bool reset)
{
    if (w->fd < 0) {
        return;
    }
    if (reset) {
        s_reset(w->fd);
    } else {
        close(w->fd);
    }
    w->fd = -1;
}
