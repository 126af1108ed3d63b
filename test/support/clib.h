/*
 * clib.h - what the tests of the demo's library routes share
 * (examples/clib-routes.c; built only into those tests, see nea_clib_test).
 */
#ifndef NEA_TEST_CLIB_H
#define NEA_TEST_CLIB_H

#include "clib-routes.h"

/* Arenas big enough for zlib's deflate state (512 KiB, two of them). */
void t_clib_config(nea_config *cfg);
/* Points jansson at the arena adapters and registers GET /json/ and
 * GET /gzip/ on s (asserting each registration). */
void t_clib_routes(nea_server *s);

#endif
