/*
 * scrape.c - a metrics scrape as a streamed response (nea_respond_metrics).
 *
 * The Prometheus text grows with the routes (about 6 KB per route in use),
 * past what an ordinary arena holds, while its lines stay short. So the
 * exposition is written a few whole lines at a time (metrics.c's
 * nea__expo) into one buffer of the arena and handed to the socket as one
 * chunk; when the chunk is written, the stream's more callback refills the
 * same buffer with the next lines. The arena a scrape holds is that buffer
 * and this small state, whatever the number of routes.
 *
 * Invariants: the buffer always holds the longest line the exposition can
 * have (nea__expo_line_max, from the route names at the start), so every
 * piece makes progress; the server counters are read once, at the start,
 * so the gauges and counters at the top of the text agree with each other.
 */
#include "server.h"

#include "req.h"

/* Used when the handler gives no size. */
#define SCRAPE_BUF_DEFAULT ((size_t)4096)

typedef struct scrape {
    nea__expo pos;
    nea__records src;
    nea_stats st;
    char *buf;
    size_t cap; /* of buf: a piece and its NUL */
} scrape;

/* The previous piece was written (or this is the first): the next lines,
 * or the end. */
static void scrape_more(nea_req *req, void *arg)
{
    scrape *sc = arg;
    size_t n = nea__expo_next(&sc->pos, &sc->src, &sc->st, sc->buf, sc->cap);
    if (n == 0) {
        (void)nea_stream_end(req);
        return;
    }
    /* An error means the request is over (cancelled): nothing to do. */
    (void)nea_stream_write(req, sc->buf, n, scrape_more, sc);
}

int nea_respond_metrics(nea_req *req, size_t buf_size)
{
    NEA__NEED(req, "request");
    nea_server *s = nea_req_server(req);
    bool head = req->is_head; /* read now: a HEAD's response is over once started */
    nea__records src;
    scrape *sc;
    char *buf;
    size_t line;
    int rc;

    nea__server_records(s, &src);
    line = nea__expo_line_max(&src);
    if (buf_size == 0) {
        buf_size = SCRAPE_BUF_DEFAULT;
    }
    if (buf_size < line) {
        buf_size = line;
    }
    sc = nea_try_alloc(req, sizeof(*sc));
    buf = sc != NULL ? nea_try_alloc(req, buf_size + 1) : NULL;
    if (buf == NULL) {
        return NEA_ENOMEM;
    }
    sc->buf = buf;
    sc->cap = buf_size + 1;
    sc->src = src;
    nea_server_stats(s, &sc->st);
    nea__expo_begin(&sc->pos);
    rc = nea_stream_start(req, 200, NEA_METRICS_CONTENT_TYPE, NEA_LENGTH_UNKNOWN);
    if (rc != 0 || head) {
        return rc; /* HEAD: the head was the whole response */
    }
    scrape_more(req, sc);
    return 0;
}
