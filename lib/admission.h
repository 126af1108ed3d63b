/*
 * admission.h - who gets a connection slot and who gets an arena (see
 * admission.c).
 */
#ifndef NEA_ADMISSION_H
#define NEA_ADMISSION_H

#include "exchange.h"
#include "oneshot.h"
#include "share.h"

/* Connections accepted only to be told 503 when every slot is busy. */
#define NEA__REJECT_SLOTS 16
/* How many connections of a list an accept looks at for one it may evict
 * (bounded work per accept when slots are full). */
#define NEA__EVICT_SCAN 64
/* A connection that never sent a byte is evicted for a newcomer only once
 * it is this old, unless its address holds more than its share: a client
 * that just connected sends its request within a round trip. */
#define NEA__SILENT_GRACE_MS 1000
/* The longest a head waits for the loop's next iterations (the CPU
 * target refuses it long before, when there is one). */
#define NEA__LOOP_WAIT_MAX_MS 1000
typedef struct nea__admission nea__admission;

/* A connection that gets no slot: told 503 and closed (oneshot.c). */
typedef struct nea__reject {
    nea__oneshot o;
    nea__admission *adm;
    struct nea__reject *next;
    char hdrbuf[NEA__HDRBUF];
    uv_buf_t ebufs[3];
} nea__reject;

struct nea__admission {
    nea__conn_env *env;
    nea__pool *pools; /* one per arena class */
    unsigned classes;
    nea__load *load;
    unsigned reserved; /* arenas of class 0 only exempt routes may take */
    unsigned share_arenas;
    char *slots; /* the first connection slot */
    size_t stride;
    unsigned count;
    nea__conn *free_conns;
    nea__conn *idle_head, *idle_tail;     /* answered keep-alive connections, oldest first */
    nea__conn *silent_head, *silent_tail; /* accepted, never sent a byte, oldest first */
    /* Per arena class: FIFO of routed heads waiting for an arena of that
     * class, and the same for NEA_ROUTE_EXEMPT routes, served first. */
    nea__conn *wait_head[NEA_ARENA_CLASSES], *wait_tail[NEA_ARENA_CLASSES];
    nea__conn *exempt_head[NEA_ARENA_CLASSES], *exempt_tail[NEA_ARENA_CLASSES];
    nea__conn *linger_head, *linger_tail; /* closing after their last response, oldest first */
    nea__conn *bufwait_head, *bufwait_tail; /* waiting for a connection buffer, first come */
    unsigned bufwait_len;
    unsigned wait_len;                    /* over every class */
    unsigned wait_max;
    nea__reject rejects[NEA__REJECT_SLOTS];
    nea__reject *free_rejects;
    uv_stream_t *listener;
    nea__share share;    /* who holds the slots and who asks for one (share.c) */
    uv_idle_t regrant;   /* hands out arenas in the next iteration (admission.c: grant) */
    bool accept_pending; /* a connection waits on the listener for a slot */
    bool granting;       /* the arena hand-off loop is running */
    bool stopped;        /* draining: no connection is accepted any more */
    /* A slot, a reject handle or an arena came back (the server may finish
     * closing). */
    void (*changed)(void *data);
    void *changed_data;
};

/* Sets up count slots of `stride` bytes at slots and the reject handles,
 * and makes admission the owner of the slots, of the waiters of the arena
 * pools (pools[0 .. classes), one per arena class) and of the connections
 * waiting for a connection buffer. */
void nea__admission_init(nea__admission *adm, nea__conn_env *env, nea__pool *pools,
                         unsigned classes, nea__load *load, char *slots, size_t stride,
                         unsigned count, void (*changed)(void *data), void *changed_data);
nea__conn *nea__admission_slot(const nea__admission *adm, unsigned i);
/* A connection is pending on listener: accept it into a slot, make room by
 * evicting an idle one, or answer it 503 on a reject handle. */
void nea__admission_on_connection(nea__admission *adm, uv_stream_t *listener);
/* Serves an already-connected stream socket in a free slot, as if accepted.
 * Returns 0, UV_EBUSY (no free slot) or the accept error. */
int nea__admission_adopt(nea__admission *adm, uv_os_sock_t fd);
/* Drain: accept no more, close idle connections and those receiving a
 * head (unless keep_idle: a successor serves the address, so each is
 * answered once more, with Connection: close, or closes at its keep-alive
 * deadline). Queued heads keep their place; in-flight requests carry on. */
void nea__admission_drain(nea__admission *adm, bool keep_idle);
/* Slots holding a request or a connection on its way to one (idle
 * keep-alive and lingering slots give way to newcomers, so they count as
 * free). O(max_connections). */
unsigned nea__admission_slots_busy(const nea__admission *adm);
/* Closes every connection, cancelling what is in flight. */
void nea__admission_cancel(nea__admission *adm);
/* True while any slot or reject handle is in use. */
bool nea__admission_busy(const nea__admission *adm);
/* Closes the always-open timers of the slots and reject handles (each
 * handle's data is set to data). */
void nea__admission_close_timers(nea__admission *adm, uv_close_cb cb, void *data);

#endif /* NEA_ADMISSION_H */
