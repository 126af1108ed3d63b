/*
 * url.h - percent-encoding: the routing view of a request path, decoding,
 * query parameters (see url.c; the forms that decode into a request's
 * arena are urlreq.c's).
 */
#ifndef NEA_URL_H
#define NEA_URL_H

#include "common.h"

/* Route paths may contain '%' only in these escapes (hex in either case):
 * the bytes the routing view keeps encoded. True when path's '%' are all
 * such escapes. */
bool nea__url_route_ok(const char *path, size_t len);

/* When raw (a request path, still encoded) starts, in the routing view,
 * with route (a registered path): the raw bytes that cover it; SIZE_MAX
 * otherwise. An exact route matches when the result is raw_len. */
size_t nea__url_match(const char *raw, size_t raw_len, const char *route, size_t route_len);

/* The raw bytes of path (NUL-terminated, still encoded) that cover the
 * first route_len bytes of a route it matched: where a prefix route's tail
 * starts in the raw path. */
size_t nea__url_raw_prefix(const char *path, size_t route_len);

/* Checks src as nea_url_decode_into would and sets *out_len to the
 * length it decodes to (without the NUL); 0, or UV_EINVAL as
 * nea_url_decode_into. */
int nea__url_decoded_len(const char *src, size_t len, unsigned flags, size_t *out_len);

#endif /* NEA_URL_H */
