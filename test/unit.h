/*
 * unit.h - the fixture the memory-core unit tests share: a server on its
 * own loop with a small configuration and its log captured, requests opened
 * straight from the pool (no socket), and a teardown that checks every
 * arena came back before closing and asserting uv_loop_close() == 0.
 */
#ifndef NEA_TEST_UNIT_H
#define NEA_TEST_UNIT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "checkers.h"
#include "server.h"

#define KIB ((size_t)1024)
#define MIB (KIB * 1024)

typedef struct fixture {
    uv_loop_t loop;
    nea_config cfg;
    nea_server *srv;
    int closed;
    int log_count;
    int log_level;
    char log_last[512];
    char log_all[8192];
} fixture;

static inline void capture_log(void *data, int level, const char *msg)
{
    fixture *f = data;
    size_t len = strlen(f->log_all);
    f->log_count++;
    f->log_level = level;
    snprintf(f->log_last, sizeof(f->log_last), "%s", msg);
    snprintf(f->log_all + len, sizeof(f->log_all) - len, "%s\n", msg);
}

/* 8 MiB limit, 4 arenas of 16 KiB, 4 connections of 1 KiB; log into f
 * (or nowhere when f is NULL). */
static inline void unit_config(nea_config *cfg, fixture *f)
{
    nea_config_init(cfg);
    cfg->port = 0;
    cfg->memory_limit = 8 * MIB;
    cfg->arena_size = 16 * KIB;
    cfg->arena_count = 4;
    cfg->max_connections = 4;
    cfg->read_buffer_size = 1 * KIB;
    cfg->log = f != NULL ? capture_log : NULL;
    cfg->log_data = f;
}

static inline void on_closed(nea_server *s, void *data)
{
    (void)s;
    ((fixture *)data)->closed++;
}

static inline unsigned free_len(const nea__pool *p)
{
    unsigned n = 0;
    for (nea__arena *a = p->free; a != NULL; a = a->next_free) {
        n++;
    }
    return n;
}

static inline void assert_pool_whole(const fixture *f)
{
    assert_int_equal(f->srv->pool.in_use, 0);
    assert_int_equal(free_len(&f->srv->pool), f->srv->pool.count);
    assert_int_equal(f->srv->env.reqs.live, 0);
    assert_null(f->srv->env.reqs.tramp.top);
}

/* A request in a fresh arena, as the server makes one for a head. */
static inline nea_req *open_req(fixture *f)
{
    nea__arena *a = nea__pool_acquire(&f->srv->pool);
    nea_req *req;
    assert_non_null(a);
    req = nea__req_open(&f->srv->env.reqs, a, NULL);
    assert_non_null(req);
    return req;
}

/* Ends req and runs the loop until its tracked handles have closed. */
static inline void end_req(fixture *f, nea_req *req)
{
    nea__req_end(req);
    (void)uv_run(&f->loop, UV_RUN_DEFAULT);
}

static inline void unit_stop(fixture *f)
{
    assert_pool_whole(f);
    nea_server_close(f->srv, on_closed, f);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->closed, 1);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
}

#endif
