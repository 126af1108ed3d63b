/*
 * clib-routes.h - nea-demo routes that use real C libraries (jansson and
 * zlib) allocating from the request's arena; the test suite runs the same
 * handlers (test_alloc, test_adapt, the heap-guard check).
 *
 *   GET /json/N   a JSON array of N objects built and encoded by jansson
 *   GET /gzip/N   N KiB of generated text compressed by zlib's deflate,
 *                 Content-Encoding: gzip (the deflate state needs about
 *                 270 KiB of arena: run the demo with --arena-size 512k)
 *
 * Registered with data CLIB_LIBC, the same handlers let the libraries use
 * libc malloc instead (the benchmark's comparison; they break the handler
 * rules on purpose). A too-large N exhausts the arena: the request gets the
 * out-of-memory 500, and every other request carries on.
 */
#ifndef NEA_CLIB_ROUTES_H
#define NEA_CLIB_ROUTES_H

#include <nea.h>

/* Pass as the route's data for the libc-malloc sibling of a handler. */
extern char clib_libc[];
#define CLIB_LIBC ((void *)clib_libc)

/* Largest N the libc siblings accept (400 above it): nothing else bounds
 * their heap. The arena routes take any N below 2^32; the arena bounds
 * them (a too-large N stops at the arena's end with the 500). */
#define CLIB_LIBC_MAX_N 65536u

/* Points jansson's global allocation hooks at the arena adapters; call once
 * before serving. */
void clib_routes_init(void);

void clib_json(nea_req *req, void *data);
void clib_gzip(nea_req *req, void *data);

#endif
