/*
 * router.c - the route table: method + exact path, or method + prefix.
 *
 * The table is a fixed array in the reservation (max_routes entries) filled
 * before or after listen; lookups are a linear scan, which for the tens of
 * routes a bounded server has is faster than any hashing. Precedence: an
 * exact route beats a prefix route; among prefixes the longest wins. A GET
 * route also serves HEAD. No match for the path at all gives 404; a path
 * that exists under other methods gives 405 with Allow.
 *
 * Percent-encoded paths: routes match the path's routing view (url.c), in
 * which every escape is decoded except %2F, %25 and %00, so "/hel%6co"
 * reaches "/hello" while "/a%2Fb" never reaches "/a/b". A route path may
 * hold '%' only in those three escapes (any other could never match).
 * Paths without '%' (nearly all) are compared byte for byte.
 */
#include "router.h"
#include "url.h"

#include <llhttp.h>
#include <stdio.h>
#include <string.h>

void nea__router_init(nea__router *r, nea__route *table, unsigned cap, size_t head_max)
{
    r->routes = table;
    r->count = 0;
    r->cap = cap;
    r->head_max = head_max;
    memset(r->chain, 0, sizeof(r->chain));
}

void nea__router_copy(nea__router *dst, const nea__router *src)
{
    memcpy(dst->routes, src->routes, (size_t)src->count * sizeof(*src->routes));
    dst->count = src->count;
    memcpy(dst->chain, src->chain, sizeof(dst->chain));
}

/* A method llhttp parses; any other gets 501 before routing. */
static bool method_known(const char *method)
{
    static const char *const known[] = {
#define NEA__METHOD_NAME(num, name, string) #string,
        HTTP_METHOD_MAP(NEA__METHOD_NAME)
#undef NEA__METHOD_NAME
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (strcmp(method, known[i]) == 0) {
            return true;
        }
    }
    return false;
}

int nea__router_add(nea__router *r, const char *method, const char *path, nea_handler_fn fn,
                    void *data, unsigned flags, char *why, size_t why_len)
{
    /* The shortest request line around the path, and the head's final CRLF:
     * "M SP path SP HTTP/1.0 CRLF CRLF". */
    static const size_t framing = 1 + sizeof(" HTTP/1.0\r\n") - 1 + 2;
    nea__route *rt;
    size_t len, mlen;

    if ((flags & ~(unsigned)(NEA_ROUTE_EXEMPT | NEA_ROUTE_READY | NEA_ROUTE_STREAM_BODY)) != 0) {
        return nea__refuse(UV_EINVAL, why, why_len, "unknown route flags 0x%x", flags);
    }
    /* A readiness route is answered by libnea itself: it takes no handler. */
    if (method == NULL || path == NULL || (fn == NULL) != ((flags & NEA_ROUTE_READY) != 0)) {
        return nea__refuse(UV_EINVAL, why, why_len,
                           "route needs a method, a path and a handler (none for NEA_ROUTE_READY)");
    }
    mlen = strlen(method);
    for (size_t i = 0; i < mlen; i++) {
        if (method[i] < 'A' || method[i] > 'Z') {
            if (method[i] != '-') {
                return nea__refuse(NEA_EROUTE_METHOD, why, why_len,
                                   "method \"%s\" is not an uppercase method name (methods are "
                                   "case-sensitive)",
                                   method);
            }
        }
    }
    if (mlen == 0 || !method_known(method)) {
        return nea__refuse(NEA_EROUTE_METHOD, why, why_len,
                           "method \"%s\" is answered 501 before routing (not a method the parser "
                           "knows)",
                           method);
    }
    len = strlen(path);
    if (path[0] != '/') {
        return nea__refuse(NEA_EROUTE_PATH, why, why_len, "path \"%s\" does not start with '/'",
                           path);
    }
    if (!nea__url_route_ok(path, len)) {
        return nea__refuse(
            NEA_EROUTE_PATH, why, why_len,
            "path \"%s\" has a '%%' other than %%2F, %%25 or %%00: routes are matched "
            "with every other escape decoded, so write the character itself",
            path);
    }
    if (len + mlen + framing > r->head_max) {
        return nea__refuse(NEA_EROUTE_PATH, why, why_len,
                           "path of %zu bytes cannot fit a request head of read_buffer_size %zu",
                           len, r->head_max);
    }
    for (unsigned i = 0; i < r->count; i++) {
        if (strcmp(r->routes[i].method, method) == 0 && strcmp(r->routes[i].path, path) == 0) {
            return nea__refuse(NEA_EROUTE_DUP, why, why_len, "%s %s is already registered", method,
                               path);
        }
    }
    if (r->count == r->cap) {
        return nea__refuse(NEA_EROUTES, why, why_len, "route table full (max_routes %u)", r->cap);
    }
    rt = &r->routes[r->count++];
    rt->method = method;
    rt->method_len = mlen;
    rt->is_get = strcmp(method, "GET") == 0;
    rt->path = path;
    rt->path_len = len;
    rt->prefix = path[len - 1] == '/' && len > 1;
    rt->fn = fn;
    rt->data = data;
    rt->flags = flags;
    rt->body_max = UINT64_MAX;
    rt->response_ms = 0;
    rt->ws = NULL;
    {
        unsigned char k = len > 1 ? (unsigned char)path[1] : 0;
        rt->next = r->chain[k];
        r->chain[k] = r->count; /* 1 + its index */
    }
    return 0;
}

nea__route *nea__router_get(nea__router *r, const char *method, const char *path)
{
    for (unsigned i = 0; i < r->count; i++) {
        if (strcmp(r->routes[i].method, method) == 0 && strcmp(r->routes[i].path, path) == 0) {
            return &r->routes[i];
        }
    }
    return NULL;
}

/* encoded: path holds a '%', so it is compared in its routing view. */
static bool path_matches(const nea__route *r, const char *path, size_t len, bool encoded)
{
    if (encoded) {
        size_t raw = nea__url_match(path, len, r->path, r->path_len);
        return raw != SIZE_MAX && (r->prefix || raw == len);
    }
    /* Most routes differ from the path in their first byte after '/':
     * one comparison rules them out before memcmp. */
    if (r->path_len > 1 && (len < 2 || path[1] != r->path[1])) {
        return false;
    }
    if (r->prefix) {
        return len >= r->path_len && memcmp(path, r->path, r->path_len) == 0;
    }
    return len == r->path_len && memcmp(path, r->path, len) == 0;
}

static bool method_matches(const nea__route *r, const char *method, size_t len)
{
    if (len == r->method_len && memcmp(method, r->method, len) == 0) {
        return true;
    }
    return r->is_get && len == 4 && memcmp(method, "HEAD", 4) == 0;
}

/* Longest match wins; an exact route counts as longer than any prefix of
 * the same length. */
static size_t route_rank(const nea__route *r)
{
    return r->path_len * 2 + (r->prefix ? 0 : 1);
}

nea__route_result nea__route_find(const nea__router *s, const char *method, size_t method_len,
                                  const char *path, size_t path_len, const nea__route **out)
{
    const nea__route *best = NULL;
    bool path_known = false, encoded = memchr(path, '%', path_len) != NULL;
    /* Decoded matching looks at every route; a plain path only at its chain. */
    unsigned i = encoded ? 1 : s->chain[path_len > 1 ? (unsigned char)path[1] : 0];

    while (i != 0 && i <= s->count) {
        const nea__route *r = &s->routes[i - 1];
        i = encoded ? i + 1 : r->next;
        if (!path_matches(r, path, path_len, encoded)) {
            continue;
        }
        path_known = true;
        if (method_matches(r, method, method_len) &&
            (best == NULL || route_rank(r) > route_rank(best))) {
            best = r;
        }
    }
    *out = best;
    if (best != NULL) {
        return NEA__ROUTE_FOUND;
    }
    return path_known ? NEA__ROUTE_NO_METHOD : NEA__ROUTE_NO_PATH;
}

static size_t append(char *buf, size_t at, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (at + n < cap) {
        memcpy(buf + at, s, n);
        at += n;
    }
    return at;
}

size_t nea__route_allow(const nea__router *s, const char *path, size_t path_len, char *buf,
                        size_t cap)
{
    size_t n = append(buf, 0, cap, "Allow: ");
    size_t first = n;
    bool get = false, head = false, encoded = memchr(path, '%', path_len) != NULL;

    for (unsigned i = 0; i < s->count; i++) {
        const nea__route *r = &s->routes[i];
        bool seen = false;
        if (!path_matches(r, path, path_len, encoded)) {
            continue;
        }
        /* List each method once. */
        for (unsigned j = 0; j < i && !seen; j++) {
            seen = path_matches(&s->routes[j], path, path_len, encoded) &&
                   strcmp(s->routes[j].method, r->method) == 0;
        }
        if (seen) {
            continue;
        }
        if (n > first) {
            n = append(buf, n, cap, ", ");
        }
        n = append(buf, n, cap, r->method);
        get = get || r->is_get;
        head = head || strcmp(r->method, "HEAD") == 0;
    }
    if (get && !head) {
        n = append(buf, n, cap, ", HEAD");
    }
    return append(buf, n, cap, "\r\n");
}
