/*
 * test_file.c - nea_respond_file (file.c) end to end: a file larger than
 * the arena streamed with the right length and bytes (sendfile turns and
 * buffered pieces in between), Last-Modified, If-Modified-Since answered
 * 304, HEAD, a missing file left to the handler, and the descriptor closed
 * on every path (written, cancelled).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "e2e.h"
#include "strict.h"

static char path[64];
static int file_rc; /* what nea_respond_file returned last */

static void file_route(nea_req *req, void *data)
{
    (void)data;
    file_rc = nea_respond_file(req, nea_req_query(req)[0] != '\0' ? "/nonexistent/x" : path,
                               "application/octet-stream", 4096);
    if (file_rc < 0) {
        nea_respond_static(req, 404, "text/plain", "missing", 7);
    }
}

/* Descriptors of this process open on the test file. */
static unsigned file_fds(void)
{
    unsigned n = 0;
    struct dirent *e;
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        char link[300], target[128];
        ssize_t k;
        snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
        k = readlink(link, target, sizeof(target) - 1);
        if (k > 0) {
            target[k] = '\0';
            n += strcmp(target, path) == 0;
        }
    }
    closedir(d);
    return n;
}

/* A file of n bytes whose byte i is i % 256, modified at a known time. */
static void make_file(size_t n)
{
    FILE *fp;
    struct timespec times[2] = {{1000000000, 0}, {1000000000, 0}}; /* 2001-09-09 01:46:40 */
    unsigned char block[256];
    snprintf(path, sizeof(path), "/tmp/nea_test_file_%d", (int)getpid());
    for (size_t i = 0; i < sizeof(block); i++) {
        block[i] = (unsigned char)i;
    }
    fp = fopen(path, "wb");
    assert_non_null(fp);
    for (size_t i = 0; i < n; i += sizeof(block)) {
        size_t k = n - i < sizeof(block) ? n - i : sizeof(block);
        assert_int_equal(fwrite(block, 1, k, fp), k);
    }
    fclose(fp);
    assert_int_equal(utimensat(AT_FDCWD, path, times, 0), 0);
}

static int setup(void **state)
{
    h_test_start(state, NULL);
    make_file(300000); /* more than four arenas */
    assert_int_equal(nea_server_route(((h_fixture *)*state)->srv, "GET", "/file", file_route, NULL),
                     0);
    return 0;
}

static int teardown(void **state)
{
    unlink(path);
    return h_test_teardown(state);
}

static void test_file_larger_than_the_arena(void **state)
{
    h_fixture *f = *state;
    t_strict r;
    int fd = h_connect(f);

    assert_int_equal(
        t_strict_fetch(&f->loop, fd, "GET /file HTTP/1.1\r\nHost: x\r\n\r\n", &r, false), 200);
    assert_int_equal(file_rc, 0);
    assert_non_null(strstr(r.head, "Content-Length: 300000\r\n"));
    assert_non_null(strstr(r.head, "Last-Modified: Sun, 09 Sep 2001 01:46:40 GMT\r\n"));
    assert_int_equal(r.body_len, 300000);
    assert_true(r.pattern_ok);
    assert_true(h_arenas(f).peak_bytes < 8192);
    assert_true(h_arenas_settle(f));
    assert_int_equal(file_fds(), 0);
    close(fd);
}

/* 16 MiB of bytes without a period take several sendfile turns (at most
 * 4 MiB each) with buffered pieces between them: every byte must still come
 * in order (a period of 256 would hide an offset off by a page). */
static void test_file_in_turns(void **state)
{
    h_fixture *f = *state;
    t_strict r;
    uint32_t want = 2166136261u, x = 12345;
    FILE *fp = fopen(path, "wb");
    int fd;
    assert_non_null(fp);
    for (size_t i = 0; i < 16u << 20; i++) {
        unsigned char b;
        x = x * 1103515245u + 12345u;
        b = (unsigned char)(x >> 16);
        want = (want ^ b) * 16777619u;
        fputc(b, fp);
    }
    fclose(fp);
    fd = h_connect(f);
    assert_int_equal(
        t_strict_fetch(&f->loop, fd, "GET /file HTTP/1.1\r\nHost: x\r\n\r\n", &r, false), 200);
    assert_int_equal(r.body_len, 16u << 20);
    assert_int_equal(r.fnv, want);
    assert_true(h_arenas_settle(f));
    assert_int_equal(file_fds(), 0);
    close(fd);
}

static void test_if_modified_since(void **state)
{
    h_fixture *f = *state;
    t_strict sr;
    h_response r;
    int fd = h_connect(f);

    h_expect(f, fd,
             "GET /file HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: Sun, 09 Sep 2001 01:46:40 "
             "GMT\r\n\r\n",
             304, &r);
    assert_int_equal(r.body_len, 0);
    assert_null(strstr(r.head, "Content-Length"));
    assert_non_null(strstr(r.head, "Last-Modified: Sun, 09 Sep 2001 01:46:40 GMT\r\n"));
    assert_int_equal(
        t_strict_fetch(
            &f->loop, fd,
            "GET /file HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: Sun, 09 Sep 2001 01:46:39 "
            "GMT\r\n\r\n",
            &sr, false),
        200);
    assert_int_equal(sr.body_len, 300000);
    /* A date libnea cannot read is ignored: the file is sent. */
    assert_int_equal(
        t_strict_fetch(&f->loop, fd,
                       "GET /file HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: yesterday\r\n\r\n", &sr,
                       false),
        200);
    close(fd);
}

static void test_head(void **state)
{
    h_fixture *f = *state;
    t_strict r;
    int fd = h_connect(f);
    assert_int_equal(
        t_strict_fetch(&f->loop, fd, "HEAD /file HTTP/1.1\r\nHost: x\r\n\r\n", &r, true), 200);
    assert_non_null(strstr(r.head, "Content-Length: 300000\r\n"));
    h_expect(f, fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 200, NULL);
    close(fd);
}

static void test_missing_file_is_the_handlers(void **state)
{
    h_fixture *f = *state;
    h_response r;
    int fd = h_connect(f);
    h_expect(f, fd, "GET /file?missing HTTP/1.1\r\nHost: x\r\n\r\n", 404, &r);
    assert_int_equal(file_rc, UV_ENOENT);
    close(fd);
}

static void test_cancel_closes_the_file(void **state)
{
    h_fixture *f = *state;
    int fd, small = 4096;
    make_file(64u << 20); /* more than the kernel's socket buffers take */
    fd = h_connect(f);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    h_sends(f, fd, "GET /file HTTP/1.1\r\nHost: x\r\n\r\n");
    H_WAIT(f, file_fds() == 1); /* stalled mid-file: the client reads nothing */
    close(fd);
    assert_true(h_arenas_settle(f));
    assert_int_equal(file_fds(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_file_larger_than_the_arena, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_in_turns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_if_modified_since, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file_is_the_handlers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_closes_the_file, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
