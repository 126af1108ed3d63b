/*
 * fuzzloop.h - what the fuzz targets that drive a server's loop share: the
 * monotonic clock in milliseconds, and one turn of the loop that is sure to
 * come back.
 *
 * The turn: a UV_RUN_ONCE bounded by a wake-up timer that repeats every
 * millisecond once due. A one-shot wake-up is not enough: libuv reads the
 * loop time at the start of a run, so a wake-up armed a millisecond before
 * can fire before the poll, which then waits for the next timer - the
 * server's next deadline, up to seconds away - while the client, which has
 * bytes to send, never gets its turn.
 */
#ifndef NEA_FUZZLOOP_H
#define NEA_FUZZLOOP_H

#include <stdint.h>
#include <time.h>

#include <uv.h>

static inline uint64_t fuzz_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline void fuzz_on_wake(uv_timer_t *t)
{
    (void)t;
}

/* Arms wake (a timer of loop) to end the next UV_RUN_ONCE within about ms. */
static inline void fuzz_wake_in(uv_loop_t *loop, uv_timer_t *wake, uint64_t ms)
{
    uv_update_time(loop);
    uv_timer_start(wake, fuzz_on_wake, ms, 1);
}

/* One turn of loop, back within about ms (or sooner, on I/O). */
static inline void fuzz_turn(uv_loop_t *loop, uv_timer_t *wake, uint64_t ms)
{
    fuzz_wake_in(loop, wake, ms);
    uv_run(loop, UV_RUN_ONCE);
    uv_timer_stop(wake);
}

#endif /* NEA_FUZZLOOP_H */
