/*
 * file.c - serving a file as a streamed response (nea_respond_file).
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
 * cached. The descriptor
 * belongs to the request (a defer closes it on every path: written,
 * cancelled, out of memory).
 *
 * Invariants: the Content-Length announced is the size fstat saw; a file
 * that shrinks under the response cannot be framed and closes the
 * connection (nea_stream_end's rule).
 */
#include "req.h"
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* Not modified when If-Modified-Since is a date no older than the file's
 * (second precision, as Last-Modified has). */
static bool not_modified(const nea_req *req, int64_t mtime)
{
    const char *ims = nea_req_header(req, "If-Modified-Since");
    int64_t since;
    return ims != NULL && nea__http_date_parse(ims, &since) == 0 && mtime <= since;
}

int nea_respond_file(nea_req *req, const char *path, const char *content_type, size_t buf_size)
{
    NEA__NEED(req, "request");
    char date[40];
    struct stat sb;
    file_stream *f = nea_try_alloc(req, sizeof(*f));
    int rc;

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
    nea__http_date(date, sizeof(date), (int64_t)sb.st_mtime);
    rc = nea_resp_header(req, "Last-Modified", date);
    if (rc != 0) {
        return rc;
    }
    if (not_modified(req, (int64_t)sb.st_mtime)) {
        return nea_respond_static(req, 304, NULL, NULL, 0);
    }
    if (buf_size == 0) {
        buf_size = nea_arena_available(req) / 2;
        buf_size = buf_size < FILE_BUF_MAX ? buf_size : FILE_BUF_MAX;
    }
    f->cap = buf_size;
    f->off = 0;
    f->left = (uint64_t)sb.st_size;
    f->buf = nea_try_alloc(req, buf_size);
    if (f->buf == NULL || buf_size == 0) {
        return NEA_ENOMEM;
    }
    rc = nea_stream_start(req, 200, content_type, f->left);
    if (rc == 0 && req->phase == NEA__R_STREAMING) { /* not for HEAD: its head was the whole response */
        file_more(req, f);
    }
    return rc;
}
