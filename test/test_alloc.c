/*
 * test_alloc.c - steady-state request handling makes no heap allocation.
 *
 * This executable interposes malloc and friends (forwarding to glibc's
 * __libc_* entry points) and counts calls while a mixed workload runs after
 * a warm-up: 200s, 404, 405, 400 (smuggling), 413, the OOM 500, 503 from
 * an exhausted arena pool, async handlers, chunked bodies, pipelining, and
 * fresh connections. libuv may grow its fd table when a new fd number first
 * appears; the warm-up uses the same number of connections, so after it no
 * allocation at all is expected. Not built under sanitizers (they own
 * malloc); skipped under Valgrind for the same reason.
 */
#include "e2e.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static volatile int counting;
static volatile unsigned long heap_calls;

void *malloc(size_t n)
{
    heap_calls += (unsigned long)counting;
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
    heap_calls += (unsigned long)counting;
    return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
    heap_calls += (unsigned long)counting;
    return __libc_realloc(p, n);
}

void free(void *p)
{
    heap_calls += (unsigned long)(counting && p != NULL);
    __libc_free(p);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    heap_calls += (unsigned long)counting;
    *out = __libc_memalign(align, n);
    return *out != NULL ? 0 : 12;
}

void *aligned_alloc(size_t align, size_t n)
{
    heap_calls += (unsigned long)counting;
    return __libc_memalign(align, n);
}

void *memalign(size_t align, size_t n)
{
    heap_calls += (unsigned long)counting;
    return __libc_memalign(align, n);
}

/* One round of the mixed workload. */
static void workload(h_fixture *f)
{
    h_response r;
    int ka = h_connect(f), fd, busy;

    h_expect(f, ka, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 200, NULL);
    h_expect(f, ka, "GET /hdr?x=1 HTTP/1.1\r\nHost: x\r\nX-Test: y\r\n\r\n", 200, NULL);
    h_expect(f, ka, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 200, NULL);
    h_expect(f, ka,
             "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
             "3\r\nabc\r\n0\r\n\r\n",
             200, NULL);
    h_expect(f, ka, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404, NULL);
    h_expect(f, ka, "DELETE /hello HTTP/1.1\r\nHost: x\r\n\r\n", 405, NULL);
    h_expect(f, ka, "GET /alloc/100000000 HTTP/1.1\r\nHost: x\r\n\r\n", 500, NULL);
    h_expect(f, ka, "GET /sleep/1 HTTP/1.1\r\nHost: x\r\n\r\n", 200, NULL);
    h_sends(f, ka, "GET /p/a HTTP/1.1\r\nHost: x\r\n\r\nGET /p/b HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h_read(f, ka, &r, H_DEADLINE_MS), 200);
    assert_int_equal(h_read(f, ka, &r, H_DEADLINE_MS), 200);
    close(ka);

    fd = h_connect(f);
    h_expect(f, fd,
             "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
             400, NULL);
    close(fd);
    fd = h_connect(f);
    h_expect(f, fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n", 413,
             NULL);
    close(fd);

    /* The only arena is held by a sleeping request: the next one is shed. */
    busy = h_connect(f);
    h_sends(f, busy, "GET /sleep/100 HTTP/1.1\r\nHost: x\r\n\r\n");
    H_WAIT(f, f->srv->pool.in_use == 1);
    fd = h_connect(f);
    h_expect(f, fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 503, NULL);
    close(fd);
    assert_int_equal(h_read(f, busy, &r, H_DEADLINE_MS), 200);
    close(busy);
    H_WAIT(f, f->srv->stats.connections_open == 0);
}

static void one_arena(nea_config *c)
{
    c->arena_count = 1;
    c->queue_timeout_ms = 10;
}

static void test_steady_state_allocates_nothing(void **state)
{
    h_fixture *f = *state;
    nea_stats st;
    if (RUNNING_ON_VALGRIND) {
        skip();
    }
    workload(f); /* warm-up: libuv sizes its fd table */
    workload(f);
    heap_calls = 0;
    counting = 1;
    for (int i = 0; i < 50; i++) {
        workload(f);
    }
    counting = 0;
    h_stats(f, &st);
    assert_true(st.requests > 50 * 14);
    assert_true(st.oom_500 >= 50);
    assert_true(st.shed_503 >= 50);
    if (heap_calls != 0) {
        fail_msg("%lu heap calls during %llu requests", heap_calls,
                 (unsigned long long)st.requests);
    }
}

static int setup(void **state)
{
    static h_fixture f;
    nea_config cfg;
    h_config(&cfg);
    one_arena(&cfg);
    h_start(&f, &cfg);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    h_stop(*state);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_steady_state_allocates_nothing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
