/*
 * test_output.c - a connection's output side (output.c) on a pipe whose
 * writes the test cuts exactly where it wants (write(2) and writev(2) are
 * interposed for the pipe: "the kernel takes N more bytes, then nothing"):
 * 100 Continue only with nothing pending, its cut rest through the
 * batch's write request (never queued twice), a response's rest queued
 * once and reported from the loop, one response at a time, and the batch
 * going out ahead of what follows.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "output.h"

#define CAP 4096

/* The pipe's write end, and how many more bytes "the kernel" takes on it
 * (-1: all it can). */
static int cut_fd = -1;
static long cut_left = -1;

ssize_t writev(int fd, const struct iovec *iov, int n)
{
    struct iovec part[8];
    size_t room;
    int k = 0;
    ssize_t r;

    if (fd != cut_fd || cut_left < 0) {
        return (ssize_t)syscall(SYS_writev, fd, iov, n);
    }
    if (cut_left == 0) {
        errno = EAGAIN;
        return -1;
    }
    room = (size_t)cut_left;
    for (int i = 0; i < n && i < 8 && room > 0; i++) {
        part[k] = iov[i];
        if (part[k].iov_len > room) {
            part[k].iov_len = room;
        }
        room -= part[k].iov_len;
        k++;
    }
    r = (ssize_t)syscall(SYS_writev, fd, part, k);
    if (r > 0) {
        cut_left -= r;
    }
    return r;
}

ssize_t write(int fd, const void *buf, size_t len)
{
    struct iovec v = {(void *)buf, len};
    if (fd != cut_fd) {
        return (ssize_t)syscall(SYS_write, fd, buf, len);
    }
    return writev(fd, &v, 1);
}

typedef struct fx {
    uv_loop_t loop;
    uv_pipe_t pipe; /* the write end, as the connection's stream */
    int rd;         /* the read end, the "client" */
    nea__output out;
    char obuf[NEA__OBUF];
    int sent, pieces, drained, last_status;
} fx;

static fx *the;

static void on_sent(nea__output *o, int status)
{
    (void)o;
    the->sent++;
    the->last_status = status;
}

static void on_piece(nea__output *o, int status)
{
    (void)o;
    the->pieces++;
    the->last_status = status;
}

static void on_drained(nea__output *o, int status)
{
    (void)o;
    the->drained++;
    the->last_status = status;
}

static const nea__output_hooks hooks = {on_sent, on_piece, on_drained};

static int setup(void **state)
{
    int p[2];
    fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(pipe(p), 0);
    assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(uv_pipe_init(&f->loop, &f->pipe, 0), 0);
    assert_int_equal(uv_pipe_open(&f->pipe, p[1]), 0);
    f->rd = p[0];
    cut_fd = p[1];
    cut_left = -1;
    nea__out_start(&f->out, (uv_stream_t *)&f->pipe, f->obuf, &hooks);
    the = f;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    cut_fd = -1;
    uv_close((uv_handle_t *)&f->pipe, NULL);
    (void)uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    close(f->rd);
    free(f);
    return 0;
}

/* The kernel takes room more bytes, then nothing until take_all. */
static void fill_to(fx *f, size_t room)
{
    (void)f;
    cut_left = (long)room;
}

static void take_all(void)
{
    cut_left = -1;
}

/* Reads everything in the pipe into buf; returns the count. */
static size_t drain(fx *f, char *buf, size_t cap)
{
    size_t n = 0;
    ssize_t r;
    while (n < cap && (r = read(f->rd, buf + n, cap - n)) > 0) {
        n += (size_t)r;
    }
    return n;
}

static void run_once(fx *f)
{
    (void)uv_run(&f->loop, UV_RUN_NOWAIT);
}

static void test_continue_when_idle_goes_at_once(void **state)
{
    fx *f = *state;
    char buf[64];
    assert_int_equal(nea__out_continue(&f->out), 0);
    assert_true(nea__out_idle(&f->out));
    assert_int_equal(drain(f, buf, sizeof(buf)), 25);
    assert_memory_equal(buf, "HTTP/1.1 100 Continue\r\n\r\n", 25);
}

/* Anything gathered or queued: the interim answer is left out. */
static void test_continue_is_left_out_while_anything_is_pending(void **state)
{
    fx *f = *state;
    char buf[CAP + 64];
    uv_buf_t b = uv_buf_init((char *)"answer", 6);
    assert_true(nea__out_gather(&f->out, &b, 1));
    assert_int_equal(nea__out_continue(&f->out), 0);
    assert_int_equal(nea__out_flush(&f->out), 0);
    assert_int_equal(drain(f, buf, sizeof(buf)), 6); /* the answer only */
    assert_true(nea__out_idle(&f->out));
}

/* The kernel cuts the interim answer after 10 bytes: its rest goes out
 * through the batch's write request, and a second head asking for 100
 * Continue meanwhile gets none (its write request is not queued twice). */
static void test_cut_continue_rest_is_queued_once(void **state)
{
    fx *f = *state;
    static char buf[CAP + 64];
    size_t n;
    fill_to(f, 10);
    assert_int_equal(nea__out_continue(&f->out), 0);
    assert_false(nea__out_idle(&f->out));
    assert_true(f->out.batch_writing);
    assert_int_equal(f->out.olen, 15);
    assert_int_equal(nea__out_continue(&f->out), 0); /* the next head: left out */
    assert_int_equal(f->out.olen, 15);
    n = drain(f, buf, sizeof(buf));
    assert_int_equal(n, 10);
    assert_memory_equal(buf, "HTTP/1.1 1", 10);
    take_all();
    run_once(f);
    assert_int_equal(f->drained, 1);
    assert_int_equal(f->last_status, 0);
    assert_int_equal(drain(f, buf, sizeof(buf)), 15);
    assert_memory_equal(buf, "00 Continue\r\n\r\n", 15);
    assert_true(nea__out_idle(&f->out));
}

/* A response that does not fit: what the kernel took is skipped, the rest
 * is queued once and reported from the loop; meanwhile another response is
 * refused (one at a time). */
static void test_response_rest_is_queued_and_reported(void **state)
{
    fx *f = *state;
    static char big[3000], buf[CAP + 3000];
    uv_buf_t bufs[2];
    memset(big, 'r', sizeof(big));
    fill_to(f, 1000);
    bufs[0] = uv_buf_init((char *)"HEAD", 4);
    bufs[1] = uv_buf_init(big, sizeof(big));
    assert_int_equal(nea__out_send(&f->out, bufs, 2), 0); /* queued */
    assert_int_equal(f->sent, 0);                        /* not reported inside the call */
    assert_int_equal(nea__out_send(&f->out, bufs, 2), UV_EBUSY);
    assert_int_equal(nea__out_piece(&f->out, bufs, 2), UV_EBUSY);
    assert_int_equal(drain(f, buf, sizeof(buf)), 1000);
    assert_memory_equal(buf, "HEAD", 4);
    take_all();
    for (int i = 0; i < 20 && f->sent == 0; i++) {
        run_once(f);
        (void)drain(f, buf, sizeof(buf));
    }
    assert_int_equal(f->sent, 1);
    assert_int_equal(f->last_status, 0);
    assert_true(nea__out_idle(&f->out));
}

static void test_response_that_fits_is_written_now(void **state)
{
    fx *f = *state;
    char buf[64];
    uv_buf_t b = uv_buf_init((char *)"whole", 5);
    assert_int_equal(nea__out_send(&f->out, &b, 1), 1);
    assert_int_equal(drain(f, buf, sizeof(buf)), 5);
    run_once(f);
    assert_int_equal(f->sent, 0); /* nothing to report: it was written in the call */
}

/* The batch goes first, in the same writev as the response behind it. */
static void test_batch_goes_ahead_of_the_response(void **state)
{
    fx *f = *state;
    char buf[64];
    uv_buf_t a = uv_buf_init((char *)"one|", 4), b = uv_buf_init((char *)"two", 3);
    assert_true(nea__out_gather(&f->out, &a, 1));
    assert_int_equal(nea__out_send(&f->out, &b, 1), 1);
    assert_int_equal(drain(f, buf, sizeof(buf)), 7);
    assert_memory_equal(buf, "one|two", 7);
}

/* A gathered batch and a response behind it, with the kernel stopping at
 * every byte in turn (inside the batch, at its end, inside the response's
 * head or body, and nowhere): the reader gets every byte exactly once, in
 * order, and the response is reported only when its rest was queued. */
static void test_batch_and_response_cut_at_every_byte(void **state)
{
    fx *f = *state;
    static char body[300], want[512], got[CAP + 512];
    const char batch[] = "HTTP/1.1 200 OK\r\n\r\none|", head[] = "HEAD|";
    size_t total = 0;

    for (size_t i = 0; i < sizeof(body); i++) {
        body[i] = (char)('a' + i % 26);
    }
    memcpy(want, batch, sizeof(batch) - 1);
    total += sizeof(batch) - 1;
    memcpy(want + total, head, sizeof(head) - 1);
    total += sizeof(head) - 1;
    memcpy(want + total, body, sizeof(body));
    total += sizeof(body);

    for (size_t cut = 0; cut <= total; cut++) {
        uv_buf_t a = uv_buf_init((char *)batch, sizeof(batch) - 1);
        uv_buf_t bufs[2] = {uv_buf_init((char *)head, sizeof(head) - 1),
                            uv_buf_init(body, sizeof(body))};
        size_t n;
        int rc;

        nea__out_start(&f->out, (uv_stream_t *)&f->pipe, f->obuf, &hooks);
        f->sent = f->drained = 0;
        assert_true(nea__out_gather(&f->out, &a, 1));
        fill_to(f, cut);
        rc = nea__out_send(&f->out, bufs, 2);
        assert_true(rc == 0 || rc == 1);
        assert_int_equal(rc == 1, cut == total); /* written in the call only when all fit */
        n = drain(f, got, sizeof(got));
        assert_int_equal(n, cut);
        take_all();
        for (int i = 0; i < 50 && !nea__out_idle(&f->out); i++) {
            run_once(f);
            n += drain(f, got + n, sizeof(got) - n);
        }
        n += drain(f, got + n, sizeof(got) - n);
        assert_true(nea__out_idle(&f->out));
        assert_int_equal(n, total);
        assert_memory_equal(got, want, total);
        assert_int_equal(f->sent, rc == 0 ? 1 : 0);
        assert_int_equal(f->last_status, 0);
    }
}

/* Nothing is gathered while the batch's rest is being written. */
static void test_no_gathering_while_the_batch_drains(void **state)
{
    fx *f = *state;
    static char buf[CAP + 64];
    uv_buf_t a = uv_buf_init((char *)"0123456789", 10);
    assert_true(nea__out_gather(&f->out, &a, 1));
    fill_to(f, 4);
    assert_int_equal(nea__out_flush(&f->out), 0);
    assert_true(f->out.batch_writing);
    assert_false(nea__out_gather(&f->out, &a, 1));
    (void)drain(f, buf, sizeof(buf));
    take_all();
    run_once(f);
    assert_int_equal(f->drained, 1);
    assert_true(nea__out_gather(&f->out, &a, 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_continue_when_idle_goes_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_continue_is_left_out_while_anything_is_pending, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cut_continue_rest_is_queued_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_response_rest_is_queued_and_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_response_that_fits_is_written_now, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_goes_ahead_of_the_response, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_and_response_cut_at_every_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_gathering_while_the_batch_drains, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
