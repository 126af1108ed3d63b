/*
 * urlreq.c - percent-decoding for a request: nea_url_decode and
 * nea_try_url_decode into the request's arena, and nea_query_param, a
 * query parameter of the request decoded there.
 *
 * The decoding itself and the search of a query are url.c's; this file
 * only takes the room. A request form measures first
 * (nea__url_decoded_len: a malformed escape is refused before anything is
 * allocated), then takes exactly the decoded length plus a NUL from the
 * arena through the public allocation calls a handler would use (nea_alloc
 * unwinds, nea_try_alloc returns NULL), then decodes into it.
 */
#include "url.h"

static int decode_alloc(nea_req *req, bool unwind, const char *src, size_t len, unsigned flags,
                        char **out, size_t *out_len)
{
    size_t n;
    char *dst;
    int rc = nea__url_decoded_len(src, len, flags, &n);
    if (rc != 0) {
        return rc;
    }
    dst = unwind ? nea_alloc(req, n + 1) : nea_try_alloc(req, n + 1);
    if (dst == NULL) {
        return NEA_ENOMEM;
    }
    (void)nea_url_decode_into(dst, src, len, flags, out_len);
    *out = dst;
    return 0;
}

int nea_url_decode(nea_req *req, const char *src, size_t len, unsigned flags, char **out,
                   size_t *out_len)
{
    NEA__NEED(req, "request");
    return decode_alloc(req, true, src, len, flags, out, out_len);
}

int nea_try_url_decode(nea_req *req, const char *src, size_t len, unsigned flags, char **out,
                       size_t *out_len)
{
    NEA__NEED(req, "request");
    return decode_alloc(req, false, src, len, flags, out, out_len);
}

int nea_query_param(nea_req *req, const char *name, char **value, size_t *len)
{
    NEA__NEED(req, "request");
    size_t pos = 0, raw_len;
    const char *raw;
    int rc = nea_query_find(nea_req_query(req), name, &pos, &raw, &raw_len);
    if (rc != 0) {
        return rc;
    }
    return nea_url_decode(req, raw, raw_len, NEA_DECODE_PLUS, value, len);
}
