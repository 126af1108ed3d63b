/*
 * clib.c - see clib.h.
 */
#include "clib.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

void t_clib_config(nea_config *cfg)
{
    cfg->arena_size = 512 * 1024; /* deflate's state is about 270 KiB */
    cfg->arena_count = 2;
    cfg->memory_limit = 16 * 1024 * 1024;
}

void t_clib_routes(nea_server *s)
{
    clib_routes_init();
    assert_int_equal(nea_server_route(s, "GET", "/json/", clib_json, NULL), 0);
    assert_int_equal(nea_server_route(s, "GET", "/gzip/", clib_gzip, NULL), 0);
}
