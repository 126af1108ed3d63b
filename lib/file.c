/*
 * file.c - serving a file as a streamed response (nea_respond_file), with
 * validators (ETag, Last-Modified), conditional requests and one byte range.
 *
 * The first block (behind the head) is read into one buffer of the
 * request's arena and written as a piece of a streamed response
 * (stream.c). After it, each turn hands the socket what it takes at once
 * straight from the page cache (sendfile, at most FILE_TURN bytes, so other
 * connections get the loop too) and then writes one buffered piece, which
 * libuv sends when the socket has room and whose completion starts the
 * next turn. A file of any size costs the buffer and a few bytes of state.
 * Reads (pread, sendfile) run on the loop thread: like nginx without aio,
 * this suits files on local disks, whose blocks the kernel usually has
 * cached. The descriptor belongs to the request (a defer closes it on
 * every path: written, cancelled, out of memory).
 *
 * Before any byte is read the request's conditions are evaluated in the
 * order of RFC 9110 13.2.2 against what fstat saw: If-Match (else
 * If-Unmodified-Since) -> 412; If-None-Match (else If-Modified-Since) ->
 * 304 for GET and HEAD; then Range, guarded by If-Range, for GET and HEAD
 * alike (a HEAD gets the head its GET would get). The ETag is
 * "<mtime in ns, hex>-<size, hex>": it changes when either does. One
 * range gets 206 with Content-Range; a range that starts past the end,
 * 416 with a Content-Range that gives only the size; a Range this code
 * does not serve (several ranges, another unit, bad syntax, an inverted
 * range) is ignored: 200 with the whole file, always a correct answer to
 * a GET. Nothing here allocates beyond the request's arena.
 *
 * Invariants: offsets and lengths are 64-bit throughout (off_t included);
 * the Content-Length announced is the size fstat saw (or the range's
 * length within it); a file that shrinks under the response cannot be
 * framed and closes the connection (nea_stream_end's rule).
 */
#include "req.h"
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

_Static_assert(sizeof(off_t) >= 8, "files over 2 GiB need a 64-bit off_t (_FILE_OFFSET_BITS=64)");

/* The default buffer: half of what the arena has left, at most this. */
#define FILE_BUF_MAX ((size_t)256 * 1024)
/* The most one turn sends with sendfile before it yields to the loop. */
#define FILE_TURN ((uint64_t)4 << 20)

typedef struct file_stream {
    int fd;
    uint64_t off, left;
    char *buf;
    size_t cap;
} file_stream;

static void close_file(void *arg)
{
    file_stream *f = arg;
    if (f->fd >= 0) {
        close(f->fd);
        f->fd = -1;
    }
}

static void file_more(nea_req *req, void *arg)
{
    file_stream *f = arg;
    uint64_t turn = FILE_TURN;
    size_t want;
    ssize_t n;
    int sent;

    while (f->left > 0 && turn > 0) {
        uint64_t chunk = f->left < turn ? f->left : turn;
        sent = nea__stream_sendfile(req, f->fd, f->off, (size_t)chunk);
        if (sent <= 0) {
            break; /* the socket is full (or the head is not out): a buffered piece */
        }
        f->off += (uint64_t)sent;
        f->left -= (uint64_t)sent;
        turn -= (uint64_t)sent;
    }
    want = f->left < f->cap ? (size_t)f->left : f->cap;
    if (want == 0) {
        (void)nea_stream_end(req);
        return;
    }
    do {
        n = pread(f->fd, f->buf, want, (off_t)f->off);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
        (void)nea_stream_end(req); /* shorter than announced: closes the connection */
        return;
    }
    f->off += (uint64_t)n;
    f->left -= (uint64_t)n;
    (void)nea_stream_write(req, f->buf, (size_t)n, file_more, f);
}

static const char *skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    return p;
}

/* Whether list (an If-Match or If-None-Match value: "*" or a list of
 * entity-tags) names etag (ours, strong, quoted). Weak comparison ignores
 * W/ on the listed tags; strong comparison never matches a weak one. A
 * malformed list names nothing. */
static bool etag_listed(const char *list, const char *etag, bool weak)
{
    size_t etag_len = strlen(etag);
    const char *p = list;
    for (;;) {
        const char *tag;
        bool is_weak = false;
        while (*p == ' ' || *p == '\t' || *p == ',') {
            p++;
        }
        if (*p == '\0') {
            return false;
        }
        if (*p == '*') {
            return true;
        }
        if (p[0] == 'W' && p[1] == '/') {
            is_weak = true;
            p += 2;
        }
        if (*p != '"') {
            return false;
        }
        tag = p++;
        /* etagc: %x21 / %x23-7E / obs-text */
        while (*p == 0x21 || (*p >= 0x23 && *p != 0x7f) || (unsigned char)*p >= 0x80) {
            p++;
        }
        if (*p != '"') {
            return false;
        }
        p++;
        if ((weak || !is_weak) && (size_t)(p - tag) == etag_len &&
            memcmp(tag, etag, etag_len) == 0) {
            return true;
        }
        p = skip_ows(p);
        if (*p != ',' && *p != '\0') {
            return false;
        }
    }
}

/* A run of digits, saturating at UINT64_MAX (a position past any file).
 * NULL when there is none. */
static const char *parse_u64(const char *p, uint64_t *out)
{
    uint64_t v = 0;
    const char *start = p;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
    }
    *out = v;
    return p == start ? NULL : p;
}

typedef enum {
    RANGE_IGNORE, /* serve the whole file: 200 */
    RANGE_ONE,    /* 206 */
    RANGE_UNSAT,  /* 416 */
} range_kind;

/* Range = "bytes=" range-set (RFC 9110 14.1.1), of exactly one range-spec
 * (empty list elements aside): first-last, first-, or -suffix. */
static range_kind range_parse(const char *v, uint64_t size, uint64_t *first, uint64_t *len)
{
    uint64_t a = 0, b = UINT64_MAX;
    bool suffix = false, seen = false;
    const char *p;

    if (strncasecmp(v, "bytes=", 6) != 0) {
        return RANGE_IGNORE; /* another unit */
    }
    p = v + 6;
    for (;;) {
        p = skip_ows(p);
        if (*p == ',') {
            p++;
            continue; /* an empty element */
        }
        if (*p == '\0') {
            break;
        }
        if (seen) {
            return RANGE_IGNORE; /* several ranges: the whole file */
        }
        seen = true;
        if (*p == '-') {
            suffix = true;
            p = parse_u64(p + 1, &b);
        } else if ((p = parse_u64(p, &a)) != NULL && *p == '-') {
            p++;
            if (*p >= '0' && *p <= '9') {
                p = parse_u64(p, &b);
            }
        } else {
            p = NULL;
        }
        if (p == NULL || (!suffix && b < a)) {
            return RANGE_IGNORE; /* bad syntax, or an inverted range */
        }
        p = skip_ows(p);
        if (*p != ',' && *p != '\0') {
            return RANGE_IGNORE;
        }
    }
    if (!seen) {
        return RANGE_IGNORE;
    }
    if (suffix) {
        if (b == 0) {
            return RANGE_UNSAT;
        }
        if (size == 0) {
            return RANGE_IGNORE; /* satisfiable, yet no byte to send: the empty file */
        }
        *len = b < size ? b : size;
        *first = size - *len;
        return RANGE_ONE;
    }
    if (a >= size) {
        return RANGE_UNSAT;
    }
    *first = a;
    *len = (b < size - 1 ? b : size - 1) - a + 1;
    return RANGE_ONE;
}

/* If-Range (RFC 9110 13.1.5): the range applies only to the representation
 * the client has: a strong entity-tag equal to ours, or the exact
 * Last-Modified date, when that date is a strong validator (the file was
 * not modified within the second before now, in which it could change
 * again unseen). */
static bool if_range_holds(const char *v, const char *etag, int64_t mtime)
{
    int64_t date;
    if (v[0] == '"' || (v[0] == 'W' && v[1] == '/')) {
        return v[0] == '"' && strcmp(v, etag) == 0;
    }
    return nea__http_date_parse(v, &date) == 0 && date == mtime && mtime < (int64_t)time(NULL) - 1;
}

/* The validators libnea derives from fstat: a strong ETag from the
 * modification time (nanoseconds) and the size. */
static void etag_format(char *buf, size_t cap, const struct stat *sb)
{
    uint64_t ns = (uint64_t)sb->st_mtim.tv_sec * 1000000000u + (uint64_t)sb->st_mtim.tv_nsec;
    snprintf(buf, cap, "\"%" PRIx64 "-%" PRIx64 "\"", ns, (uint64_t)sb->st_size);
}

typedef enum { COND_SEND, COND_304, COND_412 } cond_result;

/* The preconditions of RFC 9110 13.2.2, in its order. */
static cond_result preconditions(const nea_req *req, const char *etag, int64_t mtime, bool get)
{
    const char *v;
    int64_t date;

    if ((v = nea_req_header(req, "If-Match")) != NULL) {
        if (!etag_listed(v, etag, false)) {
            return COND_412;
        }
    } else if ((v = nea_req_header(req, "If-Unmodified-Since")) != NULL &&
               nea__http_date_parse(v, &date) == 0 && mtime > date) {
        return COND_412;
    }
    if ((v = nea_req_header(req, "If-None-Match")) != NULL) {
        if (etag_listed(v, etag, true)) {
            return get ? COND_304 : COND_412;
        }
    } else if (get && (v = nea_req_header(req, "If-Modified-Since")) != NULL &&
               nea__http_date_parse(v, &date) == 0 && mtime <= date) {
        return COND_304;
    }
    return COND_SEND;
}

int nea_respond_file(nea_req *req, const char *path, const char *content_type, size_t buf_size)
{
    static const char unsat[] = "range not satisfiable\n";
    char date[40], etag[48], range[80];
    struct stat sb;
    file_stream *f;
    const char *method, *v;
    bool get;
    uint64_t size, first = 0, len;
    range_kind kind = RANGE_IGNORE;
    int64_t mtime;
    int rc;

    NEA__NEED(req, "request");
    f = nea_try_alloc(req, sizeof(*f));
    method = nea_req_method(req);
    get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (f == NULL) {
        return NEA_ENOMEM;
    }
    f->fd = -1;
    if (nea_req_defer(req, close_file, f) != 0) {
        return NEA_ENOMEM;
    }
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) {
        return -errno;
    }
    rc = fstat(f->fd, &sb) != 0 ? -errno : S_ISDIR(sb.st_mode) ? UV_EISDIR : 0;
    if (rc != 0) {
        close_file(f);
        return rc;
    }
    size = len = (uint64_t)sb.st_size;
    mtime = (int64_t)sb.st_mtim.tv_sec;
    nea__http_date(date, sizeof(date), mtime);
    etag_format(etag, sizeof(etag), &sb);
    if ((rc = nea_resp_header(req, "Last-Modified", date)) != 0 ||
        (rc = nea_resp_header(req, "ETag", etag)) != 0) {
        return rc;
    }
    switch (preconditions(req, etag, mtime, get)) {
    case COND_304:
        return nea_respond_static(req, 304, NULL, NULL, 0);
    case COND_412:
        return nea_respond_static(req, 412, NULL, NULL, 0);
    default:
        break;
    }
    if (get && (rc = nea_resp_header(req, "Accept-Ranges", "bytes")) != 0) {
        return rc;
    }
    if (get && (v = nea_req_header(req, "Range")) != NULL) {
        const char *ir = nea_req_header(req, "If-Range");
        if (ir == NULL || if_range_holds(ir, etag, mtime)) {
            kind = range_parse(v, size, &first, &len);
        }
    }
    if (kind == RANGE_UNSAT) {
        snprintf(range, sizeof(range), "bytes */%" PRIu64, size);
        if ((rc = nea_resp_header(req, "Content-Range", range)) != 0) {
            return rc;
        }
        return nea_respond_static(req, 416, "text/plain", unsat, sizeof(unsat) - 1);
    }
    if (kind == RANGE_ONE) {
        snprintf(range, sizeof(range), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, first,
                 first + len - 1, size);
        if ((rc = nea_resp_header(req, "Content-Range", range)) != 0) {
            return rc;
        }
    }
    f->off = first;
    f->left = len;
    f->buf = NULL;
    f->cap = 0;
    if (!req->is_head) { /* a HEAD's head is the whole response: no buffer */
        if (buf_size == 0) {
            buf_size = nea_arena_available(req) / 2;
            buf_size = buf_size < FILE_BUF_MAX ? buf_size : FILE_BUF_MAX;
        }
        f->cap = buf_size;
        f->buf = nea_try_alloc(req, buf_size);
        if (f->buf == NULL || buf_size == 0) {
            return NEA_ENOMEM;
        }
    }
    rc = nea_stream_start(req, kind == RANGE_ONE ? 206 : 200, content_type, len);
    /* Not for HEAD: its head was the whole response. */
    if (rc == 0 && req->phase == NEA__R_STREAMING) {
        file_more(req, f);
    }
    return rc;
}
