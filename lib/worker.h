/*
 * worker.h - one worker thread with its own loop (see worker.c).
 */
#ifndef NEA_WORKER_H
#define NEA_WORKER_H

#include "common.h"

typedef struct nea__worker {
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t wake; /* another thread asks this one to run on_wake */
    bool started;    /* the thread exists and has not been joined */
    void (*on_wake)(void *data);
    void *data;
} nea__worker;

/* Initialises the loop and the wake-up handle (data = the owner's data; it
 * stays open until nea__worker_close_wake). Runs on the creating thread,
 * before the worker's thread exists. Returns 0 or a UV_E* error (nothing is
 * then left open). */
int nea__worker_init(nea__worker *w, void (*on_wake)(void *data), void *data);
/* Starts the thread: it runs the loop until no handle is left, closes it
 * and ends. Returns 0 or a UV_E* error (no thread then). */
int nea__worker_start(nea__worker *w);
/* Runs the loop on the calling thread until no handle is left and closes it:
 * for a worker whose thread never started. */
void nea__worker_run_here(nea__worker *w);
/* From any thread: on_wake runs soon on the worker's thread. */
void nea__worker_wake(nea__worker *w);
/* From the worker's thread: closes the wake-up handle (its data is set to
 * data before cb runs). */
void nea__worker_close_wake(nea__worker *w, uv_close_cb cb, void *data);
/* Waits for a started thread to end (after its loop ran out of handles). */
void nea__worker_join(nea__worker *w);
/* The worker whose thread is calling, or NULL on any other thread. */
const nea__worker *nea__worker_current(void);

#endif /* NEA_WORKER_H */
