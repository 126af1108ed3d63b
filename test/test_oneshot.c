/*
 * test_oneshot.c - a connection accepted only to be answered once and
 * closed (oneshot.c), over real sockets on 127.0.0.1: the answer arrives
 * whole and then EOF (the half-close, while the handle still lingers);
 * what the peer sends is read and dropped (no reset that could discard
 * the answer); a peer that never closes is closed after the linger time;
 * closed() is called once per connection; the handle is used again.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include <unistd.h>

#include "oneshot.h"

#include "sock.h"

typedef struct fixture {
    uv_loop_t loop;
    uv_tcp_t server;
    int port;
    nea__oneshot o;
    unsigned handles_open;
    unsigned closed;
    bool pending;
    uv_buf_t answer;
    bool timer_closed;
} fixture;

static const char answer[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";

static void on_closed(nea__oneshot *o)
{
    fixture *f = o->data;
    f->closed++;
}

static void on_connection(uv_stream_t *server, int status)
{
    fixture *f = server->data;
    assert_int_equal(status, 0);
    f->pending = true;
}

/* Takes the pending connection and answers it. */
static void answer_pending(fixture *f)
{
    uint64_t end = s_now_ms() + S_DEADLINE_MS;
    while (!f->pending && s_now_ms() < end) {
        s_step(&f->loop, 5);
    }
    assert_true(f->pending);
    f->pending = false;
    assert_int_equal(nea__oneshot_accept(&f->o, (uv_stream_t *)&f->server), 0);
    assert_true(f->o.in_use);
    f->answer = uv_buf_init((char *)answer, sizeof(answer) - 1);
    nea__oneshot_send(&f->o, &f->answer, 1);
}

static int setup(void **state)
{
    static fixture f;
    struct sockaddr_in a;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    memset(&f, 0, sizeof(f));
    assert_int_equal(uv_loop_init(&f.loop), 0);
    assert_int_equal(uv_tcp_init(&f.loop, &f.server), 0);
    f.server.data = &f;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &a), 0);
    assert_int_equal(uv_tcp_bind(&f.server, (struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&f.server, 16, on_connection), 0);
    assert_int_equal(uv_tcp_getsockname(&f.server, (struct sockaddr *)&ss, &len), 0);
    f.port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    nea__oneshot_init(&f.o, &f.loop, &f.handles_open, on_closed, &f);
    assert_int_equal(f.handles_open, 1); /* the timer */
    *state = &f;
    return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
    fixture *f = h->data;
    f->timer_closed = true;
    f->handles_open--;
}

static int teardown(void **state)
{
    fixture *f = *state;
    nea__oneshot_close(&f->o);
    s_pump(&f->loop, 50, NULL);
    nea__oneshot_close_timer(&f->o, on_timer_closed, f);
    uv_close((uv_handle_t *)&f->server, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_true(f->timer_closed);
    assert_int_equal(f->handles_open, 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    return 0;
}

static void test_answer_then_eof(void **state)
{
    fixture *f = *state;
    char buf[256];
    int fd = s_connect(&f->loop, f->port);
    answer_pending(f);
    assert_int_equal(s_read_all(&f->loop, fd, buf, sizeof(buf), S_DEADLINE_MS),
                     (int)sizeof(answer) - 1);
    assert_string_equal(buf, answer);
    close(fd); /* the peer's EOF ends the linger at once */
    s_pump(&f->loop, 200, NULL);
    assert_int_equal(f->closed, 1);
    assert_false(f->o.in_use);
    assert_int_equal(f->handles_open, 1);
}

/* The peer keeps sending (a request body, say) while the answer goes out:
 * its bytes are read and dropped, so it reads the whole answer and a clean
 * EOF, never a reset. */
static void test_peer_bytes_are_discarded(void **state)
{
    fixture *f = *state;
    char buf[256], junk[4096];
    int fd = s_connect(&f->loop, f->port);
    memset(junk, 'x', sizeof(junk));
    s_send(&f->loop, fd, junk, sizeof(junk));
    answer_pending(f);
    s_send(&f->loop, fd, junk, sizeof(junk));
    assert_int_equal(s_read_all(&f->loop, fd, buf, sizeof(buf), S_DEADLINE_MS),
                     (int)sizeof(answer) - 1);
    close(fd);
    s_pump(&f->loop, 200, NULL);
    assert_int_equal(f->closed, 1);
}

/* A peer that reads the answer and never closes is closed after the
 * linger time; the handle then answers the next connection. */
static void test_linger_is_bounded_and_handle_reused(void **state)
{
    fixture *f = *state;
    char buf[256];
    uint64_t t0;
    int fd = s_connect(&f->loop, f->port), fd2;
    answer_pending(f);
    t0 = s_now_ms();
    assert_int_equal(s_read_all(&f->loop, fd, buf, sizeof(buf), S_DEADLINE_MS),
                     (int)sizeof(answer) - 1); /* EOF: the half-close */
    /* The EOF came from the FIN after the answer, not from the close: the
     * handle still lingers, reading what the peer might send. */
    assert_int_equal(f->closed, 0);
    assert_true(f->o.in_use);
    while (f->closed == 0 && s_now_ms() - t0 < S_DEADLINE_MS) {
        s_step(&f->loop, 10);
    }
    assert_int_equal(f->closed, 1);
    assert_true(s_now_ms() - t0 + 50 >= NEA__ONESHOT_LINGER_MS);
    close(fd);
    fd2 = s_connect(&f->loop, f->port);
    answer_pending(f);
    assert_int_equal(s_read_all(&f->loop, fd2, buf, sizeof(buf), S_DEADLINE_MS),
                     (int)sizeof(answer) - 1);
    close(fd2);
    s_pump(&f->loop, 200, NULL);
    assert_int_equal(f->closed, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_answer_then_eof, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_bytes_are_discarded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_linger_is_bounded_and_handle_reused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
