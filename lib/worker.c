/*
 * worker.c - a worker thread: a loop of its own, a wake-up other threads
 * can send, and the thread that runs the loop.
 *
 * Everything a worker serves with is set up on the creating thread before
 * the worker's thread starts (thread creation orders those writes before
 * anything the worker does), and after the thread ends its owner joins it
 * before touching the loop's memory again. In between, the only things that
 * cross threads are the wake-up (uv_async_send) and what the owner chooses
 * to publish with atomics (stats.c snapshots): no locks on the request path.
 * The loop's memory lives in the worker's slab of the reservation; libuv
 * itself allocates a little for the loop, once, in nea__worker_init.
 */
#include "worker.h"

static _Thread_local const nea__worker *current;

static void on_wake(uv_async_t *h)
{
    nea__worker *w = h->data;
    w->on_wake(w->data);
}

int nea__worker_init(nea__worker *w, void (*wake_cb)(void *data), void *data)
{
    int rc = uv_loop_init(&w->loop);
    if (rc != 0) {
        return rc;
    }
    rc = uv_async_init(&w->loop, &w->wake, on_wake);
    if (rc != 0) {
        (void)uv_loop_close(&w->loop);
        return rc;
    }
    w->wake.data = w;
    w->on_wake = wake_cb;
    w->data = data;
    w->started = false;
    return 0;
}

static void run(nea__worker *w)
{
    current = w;
    (void)uv_run(&w->loop, UV_RUN_DEFAULT);
    /* Every handle has closed (the owner closes them all before it lets the
     * loop run dry), so this succeeds and frees libuv's own loop state. */
    (void)uv_loop_close(&w->loop);
    current = NULL;
}

static void thread_main(void *arg)
{
    run(arg);
}

int nea__worker_start(nea__worker *w)
{
    int rc = uv_thread_create(&w->thread, thread_main, w);
    w->started = rc == 0;
    return rc;
}

void nea__worker_run_here(nea__worker *w)
{
    const nea__worker *outer = current;
    run(w);
    current = outer;
}

void nea__worker_wake(nea__worker *w)
{
    (void)uv_async_send(&w->wake);
}

void nea__worker_close_wake(nea__worker *w, uv_close_cb cb, void *data)
{
    w->wake.data = data;
    uv_close((uv_handle_t *)&w->wake, cb);
}

void nea__worker_join(nea__worker *w)
{
    if (w->started) {
        (void)uv_thread_join(&w->thread);
        w->started = false;
    }
}

const nea__worker *nea__worker_current(void)
{
    return current;
}
