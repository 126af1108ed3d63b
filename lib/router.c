/*
 * router.c - the route table: method + exact path, or method + prefix.
 *
 * The table is a fixed array in the reservation (max_routes entries) filled
 * before or after listen; lookups are a linear scan, which for the tens of
 * routes a bounded server has is faster than any hashing. Precedence: an
 * exact route beats a prefix route; among prefixes the longest wins. A GET
 * route also serves HEAD. No match for the path at all gives 404; a path
 * that exists under other methods gives 405 with Allow.
 */
#include "internal.h"

#include <string.h>

int nea_server_route(nea_server *s, const char *method, const char *path, nea_handler_fn fn,
                     void *data)
{
    nea__route *r;
    size_t len;

    if (method == NULL || path == NULL || fn == NULL || path[0] != '/' || method[0] == '\0') {
        return UV_EINVAL;
    }
    if (s->nroutes == s->cfg.max_routes) {
        return NEA_EROUTES;
    }
    len = strlen(path);
    r = &s->routes[s->nroutes++];
    r->method = method;
    r->method_len = strlen(method);
    r->is_get = strcmp(method, "GET") == 0;
    r->path = path;
    r->path_len = len;
    r->prefix = path[len - 1] == '/' && len > 1;
    r->fn = fn;
    r->data = data;
    return 0;
}

static bool path_matches(const nea__route *r, const char *path, size_t len)
{
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

nea__route_result nea__route_find(const nea_server *s, const char *method, size_t method_len,
                                  const char *path, size_t path_len, const nea__route **out)
{
    const nea__route *best = NULL;
    bool path_known = false;

    for (unsigned i = 0; i < s->nroutes; i++) {
        const nea__route *r = &s->routes[i];
        if (!path_matches(r, path, path_len)) {
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

size_t nea__route_allow(const nea_server *s, const char *path, size_t path_len, char *buf,
                        size_t cap)
{
    size_t n = append(buf, 0, cap, "Allow: ");
    size_t first = n;
    bool get = false, head = false;

    for (unsigned i = 0; i < s->nroutes; i++) {
        const nea__route *r = &s->routes[i];
        bool seen = false;
        if (!path_matches(r, path, path_len)) {
            continue;
        }
        /* List each method once. */
        for (unsigned j = 0; j < i && !seen; j++) {
            seen = path_matches(&s->routes[j], path, path_len) &&
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
