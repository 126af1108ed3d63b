/*
 * oneshot.c - a connection accepted only to be answered once and closed:
 * the 503 for a connection that gets no slot (admission.c) and the
 * agent's one-line answer (agent.c).
 *
 * The answer is written at once (pre-built bytes the owner keeps valid),
 * then the connection is half-closed (FIN) and whatever the peer sends is
 * read and dropped until it closes or the linger time passes: closing with
 * unread bytes in the kernel would send a reset, which may discard the
 * answer before the peer read it. The handle lives in its owner's struct
 * (a fixed number of them: no allocation); while all are busy the owner
 * leaves the connection pending on the listener, where libuv stops polling
 * until it is taken.
 */
#include "oneshot.h"

static void on_tcp_closed(uv_handle_t *h)
{
    nea__oneshot *o = h->data;
    o->in_use = false;
    (*o->handles_open)--;
    o->closed(o);
}

void nea__oneshot_close(nea__oneshot *o)
{
    if (o->in_use && !uv_is_closing((uv_handle_t *)&o->tcp)) {
        uv_timer_stop(&o->timer);
        uv_close((uv_handle_t *)&o->tcp, on_tcp_closed);
    }
}

static void on_timer(uv_timer_t *t)
{
    nea__oneshot_close(t->data);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    nea__oneshot *o = h->data;
    (void)suggested;
    *buf = uv_buf_init(o->discard, sizeof(o->discard));
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    if (n < 0) { /* EOF or error: nothing more to say */
        nea__oneshot_close(st->data);
    }
}

static void on_written(uv_write_t *w, int status)
{
    nea__oneshot *o = w->data;
    if (status < 0 || uv_shutdown(&o->shut, (uv_stream_t *)&o->tcp, NULL) != 0) {
        nea__oneshot_close(o);
    }
}

void nea__oneshot_init(nea__oneshot *o, uv_loop_t *loop, unsigned *handles_open,
                       void (*closed)(nea__oneshot *o), void *data)
{
    o->in_use = false;
    o->handles_open = handles_open;
    o->closed = closed;
    o->data = data;
    uv_timer_init(loop, &o->timer);
    o->timer.data = o;
    (*handles_open)++;
}

int nea__oneshot_accept(nea__oneshot *o, uv_stream_t *listener)
{
    int rc;
    uv_tcp_init(listener->loop, &o->tcp);
    o->tcp.data = o;
    o->in_use = true;
    (*o->handles_open)++;
    rc = uv_accept(listener, (uv_stream_t *)&o->tcp);
    if (rc != 0) {
        nea__oneshot_close(o);
    }
    return rc;
}

void nea__oneshot_send(nea__oneshot *o, const uv_buf_t *bufs, unsigned n)
{
    o->wreq.data = o;
    if (uv_write(&o->wreq, (uv_stream_t *)&o->tcp, bufs, n, on_written) != 0 ||
        uv_read_start((uv_stream_t *)&o->tcp, on_alloc, on_read) != 0) {
        nea__oneshot_close(o);
        return;
    }
    uv_timer_start(&o->timer, on_timer, NEA__ONESHOT_LINGER_MS, 0);
}

void nea__oneshot_close_timer(nea__oneshot *o, uv_close_cb cb, void *data)
{
    o->timer.data = data;
    uv_close((uv_handle_t *)&o->timer, cb);
}
