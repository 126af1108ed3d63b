/*
 * test_file.c - nea_respond_file (file.c) end to end: a file larger than
 * the arena streamed with the right length and bytes (sendfile turns and
 * buffered pieces in between), Last-Modified, If-Modified-Since answered
 * 304, HEAD, a missing file left to the handler, and the descriptor closed
 * on every path (written, cancelled). Byte ranges (206, 416, and the
 * Range headers served whole: several ranges, bad syntax, inverted), the
 * ETag and the conditional headers in RFC 9110's order (If-Match,
 * If-Unmodified-Since, If-None-Match over If-Modified-Since, If-Range),
 * HEAD for each, offsets past 4 GiB in a sparse file, and curl and
 * python3's http.client as clients.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "e2e.h"
#include "strict.h"

static char path[64];
static char big_path[64]; /* the sparse file, ?big */
static int file_rc;       /* what nea_respond_file returned last */

static void file_route(nea_req *req, void *data)
{
    const char *q = nea_req_query(req);
    (void)data;
    file_rc = nea_respond_file(req,
                               strcmp(q, "big") == 0 ? big_path
                               : q[0] != '\0'        ? "/nonexistent/x"
                                                     : path,
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

/* --- ranges ---------------------------------------------------------------------- */

/* METHOD /file with more header lines (extra, each with its CRLF, or "")
 * on fd; the response read by the strict reader into r. */
static int get_with(h_fixture *f, int fd, const char *method, const char *extra, t_strict *r)
{
    char req[512];
    snprintf(req, sizeof(req), "%s /file HTTP/1.1\r\nHost: x\r\n%s\r\n", method, extra);
    return t_strict_fetch(&f->loop, fd, req, r, strcmp(method, "HEAD") == 0);
}

/* The value of header name in r's head, or "" (a static buffer, one at a
 * time). */
static const char *hdr(const t_strict *r, const char *name)
{
    static char v[256];
    size_t n = strlen(name);
    const char *p = strstr(r->head, "\r\n");
    v[0] = '\0';
    while (p != NULL && p[2] != '\r') {
        p += 2;
        if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
            const char *b = p + n + 1, *e = strstr(b, "\r\n");
            while (*b == ' ') {
                b++;
            }
            snprintf(v, sizeof(v), "%.*s", (int)(e - b), b);
            break;
        }
        p = strstr(p, "\r\n");
    }
    return v;
}

/* FNV-1a of len bytes of the test file's pattern from offset first, as
 * the strict reader hashes a body. */
static uint32_t pattern_fnv(uint64_t first, uint64_t len)
{
    uint32_t h = 2166136261u;
    for (uint64_t i = first; i < first + len; i++) {
        h = (h ^ (uint32_t)(i % 256)) * 16777619u;
    }
    return h;
}

static void test_single_ranges(void **state)
{
    static const struct {
        const char *range;
        const char *content_range;
        uint64_t first, len;
    } cases[] = {
        {"bytes=0-9", "bytes 0-9/300000", 0, 10},
        {"bytes=299990-", "bytes 299990-299999/300000", 299990, 10},
        {"bytes=-10", "bytes 299990-299999/300000", 299990, 10},
        {"bytes=100-100", "bytes 100-100/300000", 100, 1},
        {"bytes=299999-400000", "bytes 299999-299999/300000", 299999, 1}, /* clipped */
        {"bytes=250000-99999999999999999999999", "bytes 250000-299999/300000", 250000, 50000},
        {"bytes=-99999999", "bytes 0-299999/300000", 0, 300000}, /* suffix longer than file */
        {"bytes=1-299998", "bytes 1-299998/300000", 1, 299998},
        {"BYTES=5-6", "bytes 5-6/300000", 5, 2},   /* the unit is case-insensitive */
        {"bytes=,5-6,", "bytes 5-6/300000", 5, 2}, /* empty list elements */
        {"bytes= 5-6 ", "bytes 5-6/300000", 5, 2},
    };
    h_fixture *f = *state;
    t_strict r;
    char extra[128], cl[32];
    int fd = h_connect(f);

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(extra, sizeof(extra), "Range: %s\r\n", cases[i].range);
        if (get_with(f, fd, "GET", extra, &r) != 206 ||
            strcmp(hdr(&r, "Content-Range"), cases[i].content_range) != 0) {
            fail_msg("%s: %d, Content-Range '%s'", cases[i].range, r.status,
                     hdr(&r, "Content-Range"));
        }
        snprintf(cl, sizeof(cl), "%" PRIu64, cases[i].len);
        assert_string_equal(hdr(&r, "Content-Length"), cl);
        assert_string_equal(hdr(&r, "Accept-Ranges"), "bytes");
        assert_int_equal(r.body_len, cases[i].len);
        assert_int_equal(r.fnv, pattern_fnv(cases[i].first, cases[i].len));
        /* HEAD: the same head, no body (the next response would break). */
        assert_int_equal(get_with(f, fd, "HEAD", extra, &r), 206);
        assert_string_equal(hdr(&r, "Content-Range"), cases[i].content_range);
        assert_string_equal(hdr(&r, "Content-Length"), cl);
    }
    assert_int_equal(file_rc, 0);
    close(fd);
    assert_true(h_arenas_settle(f));
    assert_int_equal(file_fds(), 0);
}

/* A long range, checked whole by the strict reader: sendfile turns start
 * at the range's offset. */
static void test_long_range_bytes(void **state)
{
    h_fixture *f = *state;
    t_strict r;
    int fd = h_connect(f);
    assert_int_equal(t_strict_fetch(&f->loop, fd,
                                    "GET /file HTTP/1.1\r\nHost: x\r\nRange: bytes=512-\r\n\r\n",
                                    &r, false),
                     206);
    assert_int_equal(r.body_len, 300000 - 512);
    assert_true(r.pattern_ok); /* 512 is a multiple of 256: the pattern restarts at 0 */
    assert_non_null(strstr(r.head, "Content-Range: bytes 512-299999/300000\r\n"));
    close(fd);
}

static void test_unsatisfiable_ranges(void **state)
{
    static const char *const ranges[] = {
        "bytes=300000-",
        "bytes=300000-300001",
        "bytes=99999999999999999999999-",
        "bytes=-0",
    };
    h_fixture *f = *state;
    t_strict r;
    char extra[128];
    int fd = h_connect(f);
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        snprintf(extra, sizeof(extra), "Range: %s\r\n", ranges[i]);
        if (get_with(f, fd, "GET", extra, &r) != 416) {
            fail_msg("%s: %d", ranges[i], r.status);
        }
        assert_string_equal(hdr(&r, "Content-Range"), "bytes */300000");
        assert_int_equal(get_with(f, fd, "HEAD", extra, &r), 416);
        assert_string_equal(hdr(&r, "Content-Range"), "bytes */300000");
    }
    /* The connection carries on. */
    assert_int_equal(get_with(f, fd, "GET", "Range: bytes=0-0\r\n", &r), 206);
    close(fd);
}

/* Range headers served as the whole file, which is always a correct answer
 * to a GET: several ranges, another unit, bad syntax, an inverted range. */
static void test_ranges_served_whole(void **state)
{
    static const char *const ranges[] = {
        "bytes=0-1,5-6", "bytes=0-1, 300000-", "bytes=-1,-2", "items=0-1",  "bytes=",
        "bytes=5-2",     "bytes=abc",          "bytes=1-2-3", "bytes=--1",  "bytes=1",
        "bytes 0-1",     "bytes=0x10-",        "bytes=+1-2",  "bytes=1-+2", "bytes=,",
    };
    h_fixture *f = *state;
    t_strict r;
    char extra[128];
    int fd = h_connect(f);
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        snprintf(extra, sizeof(extra), "Range: %s\r\n", ranges[i]);
        if (get_with(f, fd, "GET", extra, &r) != 200) {
            fail_msg("%s: %d", ranges[i], r.status);
        }
        assert_string_equal(hdr(&r, "Content-Length"), "300000");
        assert_string_equal(hdr(&r, "Content-Range"), "");
        assert_int_equal(r.body_len, 300000);
        assert_true(r.pattern_ok);
    }
    close(fd);
}

/* --- validators and conditions --------------------------------------------------- */

static void test_etag_and_if_none_match(void **state)
{
    static const char *const match[] = {
        "\"de0b6b3a7640000-493e0\"",
        "W/\"de0b6b3a7640000-493e0\"", /* weak comparison */
        "\"a\", \"de0b6b3a7640000-493e0\"",
        "\"a\",\"de0b6b3a7640000-493e0\" , \"b\"",
        "*",
        "\"x,y\", \"de0b6b3a7640000-493e0\"", /* a comma inside a tag */
    };
    static const char *const miss[] = {
        "\"a\"",
        "\"de0b6b3a7640000-493e1\"",
        "de0b6b3a7640000-493e0",              /* not quoted */
        "\"a\" x, \"de0b6b3a7640000-493e0\"", /* malformed: names nothing */
        "w/\"de0b6b3a7640000-493e0\"",
    };
    h_fixture *f = *state;
    t_strict r;
    char want[64], extra[256];
    struct stat sb;
    struct timespec later[2] = {{1000000000, 0}, {1000000001, 5}};
    int fd = h_connect(f);

    /* Derived from the modification time (ns) and the size. */
    assert_int_equal(get_with(f, fd, "HEAD", "", &r), 200);
    assert_int_equal(stat(path, &sb), 0);
    snprintf(want, sizeof(want), "\"%" PRIx64 "-%" PRIx64 "\"",
             (uint64_t)sb.st_mtim.tv_sec * 1000000000u + (uint64_t)sb.st_mtim.tv_nsec,
             (uint64_t)sb.st_size);
    assert_string_equal(hdr(&r, "ETag"), want);
    assert_string_equal(want, "\"de0b6b3a7640000-493e0\"");

    /* 304 with the validators and no body, for every form that names it. */
    for (size_t i = 0; i < sizeof(match) / sizeof(match[0]); i++) {
        snprintf(extra, sizeof(extra), "If-None-Match: %s\r\n", match[i]);
        if (get_with(f, fd, "GET", extra, &r) != 304) {
            fail_msg("If-None-Match: %s gave %d", match[i], r.status);
        }
        assert_string_equal(hdr(&r, "ETag"), want);
        assert_string_equal(hdr(&r, "Last-Modified"), "Sun, 09 Sep 2001 01:46:40 GMT");
        assert_int_equal(r.body_len, 0);
        assert_int_equal(get_with(f, fd, "HEAD", extra, &r), 304);
    }
    /* Lists that do not name it, or are malformed: the file. */
    for (size_t i = 0; i < sizeof(miss) / sizeof(miss[0]); i++) {
        snprintf(extra, sizeof(extra), "If-None-Match: %s\r\n", miss[i]);
        if (get_with(f, fd, "GET", extra, &r) != 200) {
            fail_msg("If-None-Match: %s gave %d", miss[i], r.status);
        }
        assert_int_equal(r.body_len, 300000);
    }
    /* If-None-Match takes precedence over If-Modified-Since: a date that
     * alone would give 304 is ignored when the tag does not match, and a
     * date that alone would send the file is ignored when it does. */
    assert_int_equal(get_with(f, fd, "GET",
                              "If-None-Match: \"other\"\r\n"
                              "If-Modified-Since: Sun, 09 Sep 2001 01:46:40 GMT\r\n",
                              &r),
                     200);
    assert_int_equal(get_with(f, fd, "GET",
                              "If-None-Match: \"de0b6b3a7640000-493e0\"\r\n"
                              "If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT\r\n",
                              &r),
                     304);
    /* A condition is evaluated before the Range: 304. */
    assert_int_equal(get_with(f, fd, "GET", "If-None-Match: *\r\nRange: bytes=0-1\r\n", &r), 304);

    /* The tag follows the file: a new modification time, a new tag. */
    assert_int_equal(utimensat(AT_FDCWD, path, later, 0), 0);
    assert_int_equal(get_with(f, fd, "GET", "If-None-Match: \"de0b6b3a7640000-493e0\"\r\n", &r),
                     200);
    assert_string_equal(hdr(&r, "ETag"), "\"de0b6b3e2feca05-493e0\"");
    close(fd);
}

static void test_if_match_and_unmodified_since(void **state)
{
    static const struct {
        const char *extra;
        int status;
    } cases[] = {
        {"If-Match: \"de0b6b3a7640000-493e0\"\r\n", 200},
        {"If-Match: \"a\", \"de0b6b3a7640000-493e0\"\r\n", 200},
        {"If-Match: *\r\n", 200},
        {"If-Match: \"a\"\r\n", 412},
        {"If-Match: W/\"de0b6b3a7640000-493e0\"\r\n", 412}, /* strong comparison */
        {"If-Match: garbage\r\n", 412},
        {"If-Unmodified-Since: Sun, 09 Sep 2001 01:46:40 GMT\r\n", 200},
        {"If-Unmodified-Since: Sun, 09 Sep 2001 01:46:39 GMT\r\n", 412},
        {"If-Unmodified-Since: not a date\r\n", 200}, /* ignored */
        /* If-Match decides; If-Unmodified-Since is then not looked at. */
        {"If-Match: *\r\nIf-Unmodified-Since: Sun, 09 Sep 2001 01:46:39 GMT\r\n", 200},
        /* 412 before 304, and before a range. */
        {"If-Match: \"a\"\r\nIf-None-Match: *\r\n", 412},
        {"If-Match: \"a\"\r\nRange: bytes=0-1\r\n", 412},
    };
    h_fixture *f = *state;
    t_strict r;
    int fd = h_connect(f);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (get_with(f, fd, "GET", cases[i].extra, &r) != cases[i].status) {
            fail_msg("%s gave %d, want %d", cases[i].extra, r.status, cases[i].status);
        }
        assert_int_equal(get_with(f, fd, "HEAD", cases[i].extra, &r), cases[i].status);
    }
    close(fd);
}

static void test_if_range(void **state)
{
    static const struct {
        const char *if_range;
        int status;
    } cases[] = {
        {"\"de0b6b3a7640000-493e0\"", 206},
        {"Sun, 09 Sep 2001 01:46:40 GMT", 206}, /* the exact Last-Modified */
        {"W/\"de0b6b3a7640000-493e0\"", 200},   /* a weak tag never matches */
        {"\"stale\"", 200},                     /* another version: the whole file */
        {"Sun, 09 Sep 2001 01:46:41 GMT", 200}, /* not the same date */
        {"yesterday", 200},
    };
    h_fixture *f = *state;
    t_strict r;
    char extra[256];
    int fd = h_connect(f);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(extra, sizeof(extra), "Range: bytes=10-19\r\nIf-Range: %s\r\n", cases[i].if_range);
        if (get_with(f, fd, "GET", extra, &r) != cases[i].status) {
            fail_msg("If-Range: %s gave %d, want %d", cases[i].if_range, r.status, cases[i].status);
        }
        assert_string_equal(hdr(&r, "Content-Length"), cases[i].status == 206 ? "10" : "300000");
        assert_int_equal(r.fnv,
                         cases[i].status == 206 ? pattern_fnv(10, 10) : pattern_fnv(0, 300000));
    }
    close(fd);
}

/* A date validator is only as strong as the clock's second: a file
 * modified just now could change again within it, so If-Range with its
 * date serves the whole file. */
static void test_if_range_date_of_a_fresh_file(void **state)
{
    h_fixture *f = *state;
    t_strict r;
    char extra[300];
    int fd;
    assert_int_equal(utimensat(AT_FDCWD, path, NULL, 0), 0); /* now */
    fd = h_connect(f);
    assert_int_equal(get_with(f, fd, "HEAD", "", &r), 200);
    snprintf(extra, sizeof(extra), "Range: bytes=0-0\r\nIf-Range: %s\r\n",
             hdr(&r, "Last-Modified"));
    assert_int_equal(get_with(f, fd, "GET", extra, &r), 200);
    close(fd);
}

/* --- over 4 GiB ------------------------------------------------------------------- */

#define BIG_SIZE ((uint64_t)5 << 30 | 12345) /* 5 GiB and a bit */

/* A sparse file of BIG_SIZE bytes with markers at offsets a 32-bit offset
 * cannot hold; false when the file system cannot make one. */
static bool make_sparse(void)
{
    int fd;
    bool ok;
    snprintf(big_path, sizeof(big_path), "/tmp/nea_test_big_%d", (int)getpid());
    fd = open(big_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    ok = ftruncate(fd, (off_t)BIG_SIZE) == 0 &&
         pwrite(fd, "AB", 2, (off_t)0xFFFFFFFFu) == 2 &&           /* across 4 GiB */
         pwrite(fd, "NEA-MARKER", 10, (off_t)4831838208u) == 10 && /* 4.5 GiB */
         pwrite(fd, "TAIL!", 5, (off_t)(BIG_SIZE - 5)) == 5;
    close(fd);
    return ok;
}

static void test_over_4gib_sparse(void **state)
{
    static const struct {
        const char *range, *content_range, *body;
    } cases[] = {
        {"bytes=4294967295-4294967296", "bytes 4294967295-4294967296/5368721465", "AB"},
        {"bytes=4831838208-4831838217", "bytes 4831838208-4831838217/5368721465", "NEA-MARKER"},
        {"bytes=-5", "bytes 5368721460-5368721464/5368721465", "TAIL!"},
        {"bytes=5368721460-", "bytes 5368721460-5368721464/5368721465", "TAIL!"},
    };
    h_fixture *f = *state;
    h_response r;
    t_strict sr;
    struct stat sb;
    char req[256];
    int fd;

    if (!make_sparse()) {
        unlink(big_path);
        skip();
    }
    assert_int_equal(stat(big_path, &sb), 0);
    assert_true((uint64_t)sb.st_blocks * 512 < ((uint64_t)1 << 30)); /* really sparse */
    fd = h_connect(f);
    assert_int_equal(
        t_strict_fetch(&f->loop, fd, "HEAD /file?big HTTP/1.1\r\nHost: x\r\n\r\n", &sr, true), 200);
    assert_string_equal(hdr(&sr, "Content-Length"), "5368721465");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(req, sizeof(req), "GET /file?big HTTP/1.1\r\nHost: x\r\nRange: %s\r\n\r\n",
                 cases[i].range);
        h_expect(f, fd, req, 206, &r);
        assert_string_equal(h_header(&r, "Content-Range", req, sizeof(req)),
                            cases[i].content_range);
        assert_int_equal(r.body_len, strlen(cases[i].body));
        assert_memory_equal(r.body, cases[i].body, r.body_len);
    }
    h_expect(f, fd, "GET /file?big HTTP/1.1\r\nHost: x\r\nRange: bytes=5368721465-\r\n\r\n", 416,
             &r);
    assert_string_equal(h_header(&r, "Content-Range", req, sizeof(req)), "bytes */5368721465");
    close(fd);
    assert_true(h_arenas_settle(f));
    unlink(big_path);
}

/* --- real clients ----------------------------------------------------------------- */

typedef struct client_run {
    bool done;
    int64_t status;
    int signal;
} client_run;

static void on_client_exit(uv_process_t *p, int64_t status, int signal)
{
    client_run *c = p->data;
    c->done = true;
    c->status = status;
    c->signal = signal;
    uv_close((uv_handle_t *)p, NULL);
}

/* Runs argv (stdout and stderr inherited) while the server's loop runs;
 * its exit status, or -1 when it could not start. */
static int run_client(h_fixture *f, char **argv)
{
    uv_process_t proc;
    uv_process_options_t o;
    uv_stdio_container_t io[3];
    client_run c = {0};
    uint64_t end = h_now_ms() + 60000; /* python3 starts slowly on a busy machine */

    memset(&o, 0, sizeof(o));
    io[0].flags = UV_IGNORE;
    io[1].flags = UV_INHERIT_FD;
    io[1].data.fd = 1;
    io[2].flags = UV_INHERIT_FD;
    io[2].data.fd = 2;
    o.file = argv[0];
    o.args = argv;
    o.stdio = io;
    o.stdio_count = 3;
    o.exit_cb = on_client_exit;
    proc.data = &c;
    if (uv_spawn(&f->loop, &proc, &o) != 0) {
        return -1;
    }
    while (!c.done && h_now_ms() < end) {
        h_step(f, 10);
    }
    assert_true(c.done);
    h_step(f, 0); /* the close callback */
    return c.signal != 0 ? 128 + c.signal : (int)c.status;
}

static bool have(const char *prog)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", prog);
    return system(cmd) == 0;
}

static size_t slurp(const char *file, char *buf, size_t cap)
{
    FILE *fp = fopen(file, "rb");
    size_t n;
    assert_non_null(fp);
    n = fread(buf, 1, cap - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return n;
}

static void test_curl(void **state)
{
    static char body[400000], head[4096];
    h_fixture *f = *state;
    char url[64], out[64], hdrs[64];
    FILE *fp;
    size_t n;

    if (!have("curl")) {
        skip();
    }
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/file", f->port);
    snprintf(out, sizeof(out), "/tmp/nea_test_curl_%d", (int)getpid());
    snprintf(hdrs, sizeof(hdrs), "/tmp/nea_test_curl_h_%d", (int)getpid());

    /* curl -r: one range. */
    assert_int_equal(run_client(f, (char *[]){"curl", "-sS", "-f", "-r", "1000-1999", "-o", out,
                                              "-D", hdrs, url, NULL}),
                     0);
    n = slurp(out, body, sizeof(body));
    assert_int_equal(n, 1000);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal((unsigned char)body[i], (1000 + i) % 256);
    }
    slurp(hdrs, head, sizeof(head));
    assert_non_null(strstr(head, "HTTP/1.1 206 "));
    assert_non_null(strstr(head, "Content-Range: bytes 1000-1999/300000\r\n"));

    /* curl -C -: a download cut after 100000 bytes resumes where it ended. */
    fp = fopen(out, "wb");
    assert_non_null(fp);
    for (size_t i = 0; i < 100000; i++) {
        fputc((int)(i % 256), fp);
    }
    fclose(fp);
    assert_int_equal(
        run_client(f, (char *[]){"curl", "-sS", "-f", "-C", "-", "-o", out, "-D", hdrs, url, NULL}),
        0);
    n = slurp(out, body, sizeof(body));
    assert_int_equal(n, 300000);
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)body[i] != i % 256) {
            fail_msg("byte %zu is %u", i, (unsigned char)body[i]);
        }
    }
    slurp(hdrs, head, sizeof(head));
    assert_non_null(strstr(head, "Content-Range: bytes 100000-299999/300000\r\n"));

    /* A range past the end: 416, which curl reports without failing. */
    assert_int_equal(
        run_client(f, (char *[]){"curl", "-sS", "-r", "300000-", "-o", out, "-D", hdrs, url, NULL}),
        0);
    slurp(hdrs, head, sizeof(head));
    assert_non_null(strstr(head, "HTTP/1.1 416 "));
    assert_non_null(strstr(head, "Content-Range: bytes */300000\r\n"));
    unlink(out);
    unlink(hdrs);
}

/* python3's http.client on one keep-alive connection: it checks the
 * framing of every response itself (a HEAD's or a 304's body would break
 * the next one). */
static const char py_client[] =
    "import http.client, sys\n"
    "c = http.client.HTTPConnection('127.0.0.1', int(sys.argv[1]), timeout=20)\n"
    "def get(method, hdrs={}):\n"
    "    c.request(method, '/file', headers=hdrs)\n"
    "    r = c.getresponse()\n"
    "    return r, r.read()\n"
    "r, full = get('GET')\n"
    "assert r.status == 200 and len(full) == 300000, r.status\n"
    "assert full == bytes(i % 256 for i in range(300000))\n"
    "etag = r.getheader('ETag')\n"
    "assert r.getheader('Accept-Ranges') == 'bytes'\n"
    "r, b = get('GET', {'Range': 'bytes=1000-1999'})\n"
    "assert r.status == 206 and b == full[1000:2000], r.status\n"
    "assert r.getheader('Content-Range') == 'bytes 1000-1999/300000'\n"
    "r, b = get('GET', {'Range': 'bytes=-500'})\n"
    "assert r.status == 206 and b == full[-500:]\n"
    "r, b = get('HEAD', {'Range': 'bytes=0-99'})\n"
    "assert r.status == 206 and b == b'' and r.getheader('Content-Length') == '100'\n"
    "r, b = get('GET', {'If-None-Match': etag})\n"
    "assert r.status == 304 and b == b'' and r.getheader('ETag') == etag\n"
    "r, b = get('HEAD', {'If-None-Match': etag})\n"
    "assert r.status == 304 and b == b''\n"
    "r, b = get('GET', {'Range': 'bytes=0-9', 'If-Range': etag})\n"
    "assert r.status == 206 and b == full[:10]\n"
    "r, b = get('GET', {'Range': 'bytes=0-9', 'If-Range': '\"stale\"'})\n"
    "assert r.status == 200 and b == full\n"
    "r, b = get('GET', {'Range': 'bytes=400000-'})\n"
    "assert r.status == 416 and r.getheader('Content-Range') == 'bytes */300000'\n"
    "r, b = get('GET', {'Range': 'bytes=0-1,4-5'})\n"
    "assert r.status == 200 and b == full\n"
    "print('http.client: ok')\n";

static void test_python_http_client(void **state)
{
    h_fixture *f = *state;
    char port[16];
    if (!have("python3")) {
        skip();
    }
    snprintf(port, sizeof(port), "%d", f->port);
    assert_int_equal(run_client(f, (char *[]){"python3", "-c", (char *)py_client, port, NULL}), 0);
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
        cmocka_unit_test_setup_teardown(test_single_ranges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_range_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsatisfiable_ranges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ranges_served_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_etag_and_if_none_match, setup, teardown),
        cmocka_unit_test_setup_teardown(test_if_match_and_unmodified_since, setup, teardown),
        cmocka_unit_test_setup_teardown(test_if_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_if_range_date_of_a_fresh_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_over_4gib_sparse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_curl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_python_http_client, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
