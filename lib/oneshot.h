/*
 * oneshot.h - a connection accepted only to be answered once and closed
 * (see oneshot.c).
 */
#ifndef NEA_ONESHOT_H
#define NEA_ONESHOT_H

#include "common.h"

/* How long an answered peer may keep sending before the close. */
#define NEA__ONESHOT_LINGER_MS 500

typedef struct nea__oneshot nea__oneshot;

struct nea__oneshot {
    uv_tcp_t tcp;
    uv_timer_t timer; /* always open: bounds the lingering close */
    uv_write_t wreq;
    uv_shutdown_t shut;
    bool in_use; /* tcp is open: accepted, until its close callback */
    unsigned *handles_open;
    void (*closed)(nea__oneshot *o); /* the owner's: tcp closed, the handle is free again */
    void *data;
    char discard[256]; /* whatever the peer sends is read and dropped */
};

/* Makes o's timer (counted in *handles_open) on loop; o->data = data. */
void nea__oneshot_init(nea__oneshot *o, uv_loop_t *loop, unsigned *handles_open,
                       void (*closed)(nea__oneshot *o), void *data);
/* Takes the connection pending on listener. Returns 0, or the accept error
 * (the handle is then closing: closed() follows). */
int nea__oneshot_accept(nea__oneshot *o, uv_stream_t *listener);
/* Writes bufs[0 .. n) (they stay valid until closed() runs; n <= 4), then
 * half-closes and reads until the peer closes or NEA__ONESHOT_LINGER_MS
 * pass, so the peer reads the answer rather than a reset; then closes. */
void nea__oneshot_send(nea__oneshot *o, const uv_buf_t *bufs, unsigned n);
/* Closes at once (closed() follows); nothing when not in use or closing. */
void nea__oneshot_close(nea__oneshot *o);
/* Closes the timer, its data set to data (for the owner's final close). */
void nea__oneshot_close_timer(nea__oneshot *o, uv_close_cb cb, void *data);

#endif /* NEA_ONESHOT_H */
