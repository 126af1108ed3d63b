/*
 * test_heapguard.c - the heap guard (heapguard/nea-heapguard.c), linked
 * ahead of libc so its malloc is the process's: it stays silent outside
 * handler code, catches a deliberate malloc in a test handler (reporting the
 * call and the route, and aborting unless NEA_HEAPGUARD=report), and proves
 * that the demo's /json and /gzip handlers and the shared test routes never
 * reach the heap. Not built under the sanitizers (they own malloc); under
 * Valgrind, whose allocator replaces the guard's forwarding target, the
 * tests that need the guard to see calls are skipped.
 */
#include "child.h"
#include "clib.h"
#include "e2e.h"
#include "unit.h"

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

/* The guard's own interface (libnea_heapguard.so). */
unsigned long nea_heapguard_hits(void);
const char *nea_heapguard_report(void);
int nea_heapguard_active(void);

static void *volatile sink;

/* Breaks handler rule 1 on purpose. */
static void r_leak(nea_req *req, void *d)
{
    (void)d;
    sink = malloc(24);
    free(sink);
    nea_respond_static(req, 200, "text/plain", "leaked", 6);
}

static void test_guard_linked(void **state)
{
    (void)state;
    /* libnea's nea_req_current was found (the test exports its symbols). */
    assert_int_equal(nea_heapguard_active(), 1);
}

static void test_silent_outside_handlers(void **state)
{
    h_fixture *f = *state;
    unsigned long before = nea_heapguard_hits();
    int fd;
    (void)f;
    sink = malloc(100);
    free(sink);
    sink = calloc(4, 4);
    free(sink);
    fd = h_connect(f);
    h_expect(f, fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 200, NULL);
    close(fd);
    assert_int_equal(nea_heapguard_hits(), before);
}

static void test_catches_malloc_in_handler(void **state)
{
    h_fixture *f = *state;
    unsigned long before = nea_heapguard_hits();
    int fd;
    if (RUNNING_ON_VALGRIND) {
        skip();
    }
    assert_int_equal(setenv("NEA_HEAPGUARD", "report", 1), 0);
    assert_int_equal(nea_server_route(f->srv, "GET", "/leak", r_leak, NULL), 0);
    fd = h_connect(f);
    h_expect(f, fd, "GET /leak HTTP/1.1\r\nHost: x\r\n\r\n", 200, NULL);
    close(fd);
    assert_int_equal(nea_heapguard_hits(), before + 1);
    assert_true(contains(nea_heapguard_report(), "malloc(24)"));
    assert_true(contains(nea_heapguard_report(), "GET /leak"));
}

static void leak_in_frame(nea_req *req, void *arg)
{
    (void)arg;
    r_leak(req, NULL);
}

/* In the child: the default mode aborts at the first heap call. */
static void child_leaks(void *arg)
{
    fixture *f;
    (void)arg;
    unsetenv("NEA_HEAPGUARD");
    f = unit_start(NULL);
    nea__req_call(open_req(f), leak_in_frame, NULL);
}

static void test_aborts_by_default(void **state)
{
    t_child c;
    (void)state;
    if (RUNNING_ON_VALGRIND) {
        skip();
    }
    t_child_run(child_leaks, NULL, &c);
    t_child_aborted(&c, "libnea heap guard: malloc(24) called inside handler code of - -");
}

/* Every handler the demo's library routes and the shared test routes run,
 * success and out-of-memory paths: not one libc allocation under a frame. */
static void test_demo_handlers_never_touch_heap(void **state)
{
    h_fixture *f = *state;
    unsigned long before;
    static const char *const raws[] = {
        "GET /json/40 HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /gzip/24 HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /json/65536 HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /gzip/3000 HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        "GET /hdr?x=1 HTTP/1.1\r\nHost: x\r\nX-Test: y\r\n\r\n",
        "GET /p/a HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /sleep/1 HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /alloc/100000000 HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /respond-then-oom HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /status/404 HTTP/1.1\r\nHost: x\r\n\r\n",
    };
    static const int want[] = {200, 200, 500, 500, 200, 200, 200, 200, 200, 500, 200, 404};
    if (RUNNING_ON_VALGRIND) {
        skip();
    }
    unsetenv("NEA_HEAPGUARD"); /* abort at once on a heap call */
    t_clib_routes(f->srv);
    before = nea_heapguard_hits();
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < sizeof(raws) / sizeof(raws[0]); i++) {
            int fd = h_connect(f);
            h_expect(f, fd, raws[i], want[i], NULL);
            close(fd);
        }
    }
    assert_int_equal(nea_heapguard_hits(), before);
}

static int setup(void **state)
{
    h_test_start(state, t_clib_config);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_guard_linked),
        cmocka_unit_test_setup_teardown(test_silent_outside_handlers, setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_catches_malloc_in_handler, setup, h_test_teardown),
        cmocka_unit_test(test_aborts_by_default),
        cmocka_unit_test_setup_teardown(test_demo_handlers_never_touch_heap, setup,
                                        h_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
