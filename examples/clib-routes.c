/*
 * clib-routes.c - handlers that use jansson and zlib with the arena
 * adapters of nea.h (see clib-routes.h for the routes).
 *
 * With the arena adapters the libraries never return NULL to these
 * handlers: the plain adapters unwind on exhaustion, so the request ends
 * with the out-of-memory 500 and nothing needs freeing (the arena goes back
 * whole). Only the libc siblings check for NULL and free what they took.
 */
#include "clib-routes.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

char clib_libc[] = "libc";

void clib_routes_init(void)
{
    json_set_alloc_funcs(nea_arena_malloc, nea_arena_free);
}

static void answer(nea_req *req, int status, const char *text)
{
    nea_respond_static(req, status, "text/plain", text, strlen(text));
}

/* The route's N: decimal digits only, 1..max; 0 when invalid. */
static unsigned route_n(nea_req *req, bool libc)
{
    const unsigned long max = libc ? CLIB_LIBC_MAX_N : UINT32_MAX;
    const char *s = nea_req_path_tail(req);
    unsigned long v = 0;
    size_t i;
    for (i = 0; s[i] >= '0' && s[i] <= '9' && v <= max; i++) {
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    return s[i] == '\0' && v >= 1 && v <= max ? (unsigned)v : 0;
}

/* The libc siblings own the heap block that holds the body until the
 * request ends. */
static void respond_owned(nea_req *req, const char *ctype, void *body, size_t len, bool libc)
{
    if (libc && nea_req_defer(req, free, body) != 0) {
        free(body);
        answer(req, 500, "out of memory\n");
        return;
    }
    nea_respond_static(req, 200, ctype, body, len);
}

/* --- GET /json/N ------------------------------------------------------------ */

static json_t *json_items(unsigned n)
{
    json_t *root = json_array();
    for (unsigned i = 0; root != NULL && i < n; i++) {
        char name[32];
        json_t *item;
        snprintf(name, sizeof(name), "item-%u", i);
        item = json_pack("{s:I, s:s, s:b, s:f, s:[I,I,I]}", "id", (json_int_t)i, "name", name,
                         "even", i % 2 == 0, "score", i * 0.25, "tags", (json_int_t)i,
                         (json_int_t)(i * 2), (json_int_t)(i * 3));
        if (json_array_append_new(root, item) != 0) {
            json_decref(root);
            root = NULL;
        }
    }
    return root;
}

void clib_json(nea_req *req, void *data)
{
    const bool libc = data == CLIB_LIBC;
    unsigned n = route_n(req, libc);
    json_t *root;
    char *text;

    if (n == 0) {
        answer(req, 400, "usage: /json/N (N >= 1)\n");
        return;
    }
    if (libc) {
        json_set_alloc_funcs(malloc, free);
    }
    root = json_items(n);
    text = root != NULL ? json_dumps(root, JSON_COMPACT) : NULL;
    if (libc) {
        json_decref(root);
        clib_routes_init();
    }
    /* Arena: no decref needed, the arena drops the whole tree. */
    if (text == NULL) {
        answer(req, 500, "out of memory\n");
        return;
    }
    respond_owned(req, "application/json", text, strlen(text), libc);
}

/* --- GET /gzip/N ------------------------------------------------------------ */

/* One KiB of text: numbered lines of words drawn by a small LCG, so the
 * output is neither trivial to compress nor random. */
static void text_kib(char *buf, unsigned kib)
{
    static const char *const words[] = {"arena",   "bound",  "request", "memory", "handler",
                                        "deflate", "json",   "refusal", "slot",   "unwind",
                                        "libuv",   "llhttp", "pool",    "guard",  "page"};
    uint32_t seed = kib * 2654435761u + 1;
    size_t o = (size_t)snprintf(buf, 1024, "%08u", kib);
    while (o < 1023) {
        const char *w;
        seed = seed * 1103515245u + 12345u;
        w = words[(seed >> 16) % (sizeof(words) / sizeof(words[0]))];
        buf[o++] = (seed >> 8) % 11 == 0 ? '\n' : ' ';
        for (size_t i = 0; w[i] != '\0' && o < 1023; i++) {
            buf[o++] = w[i];
        }
    }
    buf[1023] = '\n';
}

typedef struct gz_out {
    unsigned char *buf;
    size_t cap;
    void *(*grow)(void *p, size_t n);
} gz_out;

/* Grows the output buffer by a step and points zs at its free part; false
 * when the allocator returned NULL (libc; the arena adapter unwinds
 * instead). Fixed steps, not doubling: the arena grows its last block in
 * place, and doubling would ask for up to twice the memory the answer needs. */
static bool gz_room(z_stream *zs, gz_out *out)
{
    size_t used = out->cap - zs->avail_out;
    size_t cap = out->cap + 16384;
    unsigned char *p = out->grow(out->buf, cap);
    if (p == NULL) {
        return false;
    }
    out->buf = p;
    out->cap = cap;
    zs->next_out = p + used;
    zs->avail_out = (uInt)(cap - used);
    return true;
}

/* Feeds n KiB of text (flush Z_FINISH after the last), growing the output
 * whenever deflate fills it. */
static bool gz_deflate(z_stream *zs, gz_out *out, unsigned n)
{
    char text[1024];
    int rc = Z_OK;
    for (unsigned k = 0; k <= n && rc != Z_STREAM_END; k++) {
        const int flush = k == n ? Z_FINISH : Z_NO_FLUSH;
        if (k < n) {
            text_kib(text, k);
            zs->next_in = (unsigned char *)text;
            zs->avail_in = sizeof(text);
        }
        do {
            if (zs->avail_out == 0 && !gz_room(zs, out)) {
                return false;
            }
            rc = deflate(zs, flush);
        } while (rc == Z_OK && (zs->avail_in > 0 || zs->avail_out == 0 || flush == Z_FINISH));
    }
    return rc == Z_STREAM_END;
}

void clib_gzip(nea_req *req, void *data)
{
    const bool libc = data == CLIB_LIBC;
    unsigned n = route_n(req, libc);
    z_stream zs;
    gz_out out = {NULL, 0, libc ? realloc : nea_arena_realloc};
    bool ok;

    if (n == 0) {
        answer(req, 400, "usage: /gzip/N (N >= 1)\n");
        return;
    }
    memset(&zs, 0, sizeof(zs));
    if (!libc) {
        zs.zalloc = nea_zalloc;
        zs.zfree = nea_zfree;
        zs.opaque = req;
    }
    /* windowBits 15 + 16: a gzip wrapper; memLevel 8: zlib's default. */
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK) {
        answer(req, 500, "out of memory\n");
        return;
    }
    ok = gz_deflate(&zs, &out, n);
    deflateEnd(&zs);
    if (!ok) {
        if (libc) {
            free(out.buf);
        }
        answer(req, 500, "deflate failed\n");
        return;
    }
    if (nea_resp_header(req, "Content-Encoding", "gzip") != 0) {
        if (libc) {
            free(out.buf);
        }
        answer(req, 500, "out of memory\n");
        return;
    }
    respond_owned(req, "text/plain", out.buf, out.cap - zs.avail_out, libc);
}
