/*
 * sock.h - client sockets on 127.0.0.1 driven from the thread that runs the
 * server's loop: every wait runs the loop (UV_RUN_NOWAIT) and polls the
 * socket, with a deadline; there are no threads and no sleeps.
 */
#ifndef NEA_TEST_SOCK_H
#define NEA_TEST_SOCK_H

#include <uv.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The deadline of every wait that has no reason to be shorter. */
#define S_DEADLINE_MS 5000

typedef struct s_response {
    int status;
    char head[4096];
    char body[65536];
    size_t body_len;
} s_response;

uint64_t s_now_ms(void);
/* Runs the loop once, waiting at most ms for it to have something to do. */
void s_step(uv_loop_t *loop, unsigned ms);
/* Runs the loop for up to ms milliseconds (or until *done becomes true). */
void s_pump(uv_loop_t *loop, unsigned ms, const bool *done);

/* A non-blocking, TCP_NODELAY connection to 127.0.0.1:port. */
int s_connect(uv_loop_t *loop, int port);
/* Sends all of data (running the loop while the kernel is full); stops
 * quietly when the peer closed (callers check the outcome). */
void s_send(uv_loop_t *loop, int fd, const void *data, size_t len);
/* Reads one response; returns its status, or -1 on EOF/reset/timeout.
 * head_only: it answers HEAD (no body). Bytes beyond it stay in the kernel. */
int s_read(uv_loop_t *loop, int fd, s_response *r, bool head_only, unsigned timeout_ms);
/* True if the peer closed (EOF or reset) within timeout_ms, discarding data. */
bool s_closed(uv_loop_t *loop, int fd, unsigned timeout_ms);
/* Reads until the peer closes (at most len - 1 bytes, NUL-terminated into
 * buf); returns the byte count, or -1 on reset or timeout. */
int s_read_all(uv_loop_t *loop, int fd, char *buf, size_t len, unsigned timeout_ms);
/* True if nothing arrives and the socket stays open for ms. */
bool s_quiet(uv_loop_t *loop, int fd, unsigned ms);
/* Closes fd with a reset (SO_LINGER 0): the client is gone, not merely done
 * sending (a plain close of a socket with nothing unread is a FIN, which
 * libnea reads as a half-close). */
void s_reset(int fd);
/* Shuts down fd's sending side: a half-close (the client still reads). */
void s_half_close(int fd);
/* Reads and discards one response whose body is exactly body_len bytes. */
bool s_drain(uv_loop_t *loop, int fd, size_t body_len, unsigned timeout_ms);
/* Value of a response header (case-insensitive), copied into buf; NULL if absent. */
const char *s_header(const s_response *r, const char *name, char *buf, size_t len);

#endif
