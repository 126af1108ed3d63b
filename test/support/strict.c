/*
 * strict.c - see strict.h. Bytes are read exactly as far as the parser
 * consumes them, so a response that completes leaves the next one in the
 * kernel: it is read with MSG_PEEK and consumed after parsing.
 */
#include "strict.h"

#include "sock.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    t_strict *r = p->data;
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)at[i] != (uint8_t)(r->body_len + i)) {
            r->pattern_ok = false;
        }
        r->fnv = (r->fnv ^ (uint8_t)at[i]) * 16777619u;
    }
    r->body_len += len;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    t_strict *r = p->data;
    r->status = p->status_code;
    r->head_done = true;
    return r->head_only ? 1 : 0; /* 1: this response has no body (HEAD) */
}

static int on_message_complete(llhttp_t *p)
{
    t_strict *r = p->data;
    r->done = true;
    return HPE_PAUSED; /* one message: what follows is left unread */
}

int t_strict_read(uv_loop_t *loop, int fd, t_strict *r, bool head_only, uint64_t stop_after,
                  unsigned timeout_ms)
{
    static char buf[1 << 16];
    uint64_t end = s_now_ms() + timeout_ms;

    memset(r, 0, sizeof(*r));
    r->head_only = head_only;
    r->pattern_ok = true;
    r->fnv = 2166136261u;
    r->stop_after = stop_after;
    r->status = -1;
    llhttp_settings_init(&r->settings);
    r->settings.on_body = on_body;
    r->settings.on_headers_complete = on_headers_complete;
    r->settings.on_message_complete = on_message_complete;
    llhttp_init(&r->parser, HTTP_RESPONSE, &r->settings);
    r->parser.data = r;

    while (!r->done && !r->bad && !r->eof && s_now_ms() < end &&
           (stop_after == 0 || r->body_len < stop_after)) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
        if (n > 0) {
            llhttp_errno_t e = llhttp_execute(&r->parser, buf, (size_t)n);
            size_t used =
                e == HPE_OK ? (size_t)n : (size_t)(llhttp_get_error_pos(&r->parser) - buf);
            if (!r->head_done || r->head_len == 0) {
                size_t k = used < sizeof(r->head) - 1 - r->head_len
                               ? used
                               : sizeof(r->head) - 1 - r->head_len;
                memcpy(r->head + r->head_len, buf, k);
                r->head_len += k;
                r->head[r->head_len] = '\0';
            }
            if (e != HPE_OK && e != HPE_PAUSED) {
                r->bad = true;
                r->error = llhttp_get_error_reason(&r->parser);
                break;
            }
            (void)recv(fd, buf, used, 0);
            continue;
        }
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
            r->eof = true;
            if (llhttp_finish(&r->parser) != HPE_OK && !r->done) {
                r->error = llhttp_get_error_reason(&r->parser);
            }
            break;
        }
        s_step(loop, 5);
    }
    return r->done ? r->status : -1;
}

int t_strict_fetch(uv_loop_t *loop, int fd, const char *request, t_strict *r, bool head_only)
{
    s_send(loop, fd, request, strlen(request));
    return t_strict_read(loop, fd, r, head_only, 0, S_DEADLINE_MS);
}
