/*
 * Shared helpers for the benchmark peer servers: argument parsing and the
 * routes' work (the /alloc fill, the /svg CSV-to-path conversion), so that
 * every peer does byte-for-byte the same work as nea-demo. Everything here
 * allocates from the general heap on purpose: the peers are "what you would
 * write without libnea".
 */
#ifndef NEA_BENCH_PEER_COMMON_H
#define NEA_BENCH_PEER_COMMON_H

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PEER_HELLO "Hello, World!"
#define PEER_HELLO_LEN (sizeof(PEER_HELLO) - 1)

/* Largest /alloc/N the peers accept, in KiB (1 GiB); beyond it they say 400. */
#define PEER_ALLOC_MAX_KIB (1024UL * 1024UL)

static int peer_parse_port(int argc, char **argv, const char *prog)
{
    int port = 8080;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            char *end;
            errno = 0;
            long v = strtol(argv[++i], &end, 10);
            if (errno || *end || v < 1 || v > 65535) {
                fprintf(stderr, "%s: bad port '%s'\n", prog, argv[i]);
                exit(2);
            }
            port = (int)v;
        } else {
            fprintf(stderr, "usage: %s [--port N]\n", prog);
            exit(2);
        }
    }
    return port;
}

/*
 * "/alloc/N" path tail -> KiB count. Returns 0 and sets *kib on success,
 * -1 when the tail is not a plain decimal number within PEER_ALLOC_MAX_KIB.
 */
static int peer_parse_kib(const char *s, size_t len, unsigned long *kib)
{
    unsigned long v = 0;
    if (len == 0 || len > 10)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > PEER_ALLOC_MAX_KIB)
        return -1;
    *kib = v;
    return 0;
}

/*
 * The /alloc work: malloc N KiB, fill with 0xAA, free. Writes the decimal
 * byte count into out (at least 24 bytes) and returns its length, or -1 when
 * malloc failed. The volatile read keeps the compiler from dropping the
 * memset together with the malloc/free pair.
 */
static int peer_alloc_work(unsigned long kib, char *out)
{
    size_t bytes = (size_t)kib * 1024;
    unsigned char *p = malloc(bytes ? bytes : 1);
    if (!p)
        return -1;
    memset(p, 0xAA, bytes);
    if (bytes)
        (void)((volatile unsigned char *)p)[bytes - 1];
    free(p);
    return snprintf(out, 24, "%zu", bytes);
}

/* Growable heap buffer used to build the SVG document. */
struct peer_buf {
    char *data;
    size_t len, cap;
};

static int peer_buf_put(struct peer_buf *b, const char *s, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d)
            return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

/*
 * Parses one integer at *pp (optional '-', then 1..18 digits) and appends
 * " <value>" to b. Returns 0, or -1 when malformed, -2 when out of memory.
 */
static int peer_svg_number(const char **pp, const char *end, struct peer_buf *b)
{
    const char *p = *pp;
    int neg = 0, digits = 0;
    long long v = 0;
    char tmp[32];

    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    while (p < end && *p >= '0' && *p <= '9') {
        if (++digits > 18)
            return -1;
        v = v * 10 + (*p - '0');
        p++;
    }
    if (digits == 0)
        return -1;
    /* " <value>" formatted by hand, right to left ("-0" prints as "0"). */
    char *e = tmp + sizeof tmp, *q = e;
    do {
        *--q = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (neg && !(q[0] == '0' && q + 1 == e))
        *--q = '-';
    *--q = ' ';
    if (peer_buf_put(b, q, (size_t)(e - q)))
        return -2;
    *pp = p;
    return 0;
}

/*
 * The /svg work. The body is lines "x, y" (integers, optional '-', any number
 * of spaces after the comma, optional trailing '\r', final newline optional;
 * empty lines are skipped). On success returns 0 and a malloc'd document in
 * *out / *outlen:
 *   <svg xmlns="http://www.w3.org/2000/svg"><path d="M 0 0 L x1 y1 ..."/></svg>\n
 * (with no points: d="M 0 0"). Returns -1 on a malformed body (the caller
 * answers 400) and -2 when out of memory.
 */
static int peer_svg_build(const char *body, size_t len, char **out, size_t *outlen)
{
    static const char head[] = "<svg xmlns=\"http://www.w3.org/2000/svg\"><path d=\"M 0 0";
    static const char tail[] = "\"/></svg>\n";
    struct peer_buf b = {0};
    const char *p = body, *end = body + len;
    int points = 0, rc;

    if (peer_buf_put(&b, head, sizeof head - 1))
        return -2;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        if (le > p && le[-1] == '\r')
            le--;
        if (le == p) { /* empty line */
            p = eol ? eol + 1 : end;
            continue;
        }
        if (points++ == 0 && peer_buf_put(&b, " L", 2))
            goto oom;
        if ((rc = peer_svg_number(&p, le, &b)))
            goto fail;
        if (p >= le || *p != ',') {
            rc = -1;
            goto fail;
        }
        p++;
        while (p < le && *p == ' ')
            p++;
        if ((rc = peer_svg_number(&p, le, &b)))
            goto fail;
        if (p != le) {
            rc = -1;
            goto fail;
        }
        p = eol ? eol + 1 : end;
    }
    if (peer_buf_put(&b, tail, sizeof tail - 1))
        goto oom;
    *out = b.data;
    *outlen = b.len;
    return 0;
oom:
    rc = -2;
fail:
    free(b.data);
    return rc;
}

#endif
