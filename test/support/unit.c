/*
 * unit.c - see unit.h.
 */
#include "unit.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void unit_config(nea_config *cfg, fixture *f)
{
    nea_config_init(cfg);
    cfg->port = 0;
    cfg->memory_limit = 8 * MIB;
    cfg->arena_size = 16 * KIB;
    cfg->arena_count = 4;
    cfg->max_connections = 4;
    cfg->read_buffer_size = 1 * KIB;
    if (f != NULL) {
        t_log_attach(&f->log, cfg);
    }
}

fixture *unit_start(void (*tweak)(nea_config *))
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    unit_config(&f->cfg, f);
    if (tweak != NULL) {
        tweak(&f->cfg);
    }
    assert_int_equal(nea_server_new(&f->loop, &f->cfg, &f->srv), 0);
    t_log_clear(&f->log);
    return f;
}

void unit_on_closed(nea_server *s, void *data)
{
    (void)s;
    ((fixture *)data)->closed++;
}

unsigned free_len(const nea__pool *p)
{
    unsigned n = 0;
    for (nea__arena *a = p->free; a != NULL; a = a->next_free) {
        n++;
    }
    return n;
}

void assert_pool_whole(const fixture *f)
{
    assert_int_equal(f->srv->pools[0].in_use, 0);
    assert_int_equal(free_len(&f->srv->pools[0]), f->srv->pools[0].count);
    assert_int_equal(f->srv->env.reqs.live, 0);
    assert_null(f->srv->env.reqs.tramp.top);
}

nea_req *open_req(fixture *f)
{
    nea__arena *a = nea__pool_acquire(&f->srv->pools[0]);
    nea_req *req;
    assert_non_null(a);
    req = nea__req_open(&f->srv->env.reqs, a, NULL);
    assert_non_null(req);
    return req;
}

void end_req(fixture *f, nea_req *req)
{
    nea__req_end(req);
    (void)uv_run(&f->loop, UV_RUN_DEFAULT);
}

void run_req(fixture *f, void (*fn)(nea_req *, void *), void *arg)
{
    nea_req *req = open_req(f);
    nea__req_call(req, fn, arg);
    end_req(f, req);
}

bool contains(const char *hay, const char *needle)
{
    if (strstr(hay, needle) == NULL) {
        print_error("\"%s\" does not contain \"%s\"\n", hay, needle);
        return false;
    }
    return true;
}

int unit_setup(void **state)
{
    *state = unit_start(NULL);
    return 0;
}

int unit_teardown(void **state)
{
    unit_stop(*state);
    return 0;
}

void t_record(void *arg)
{
    t_defer_arg *d = arg;
    d->o->ran[d->id]++;
    if (d->o->n < 16) {
        d->o->seq[d->o->n++] = d->id;
    }
}

void unit_stop(fixture *f)
{
    nea__fault_arm(&f->srv->fault, NEA__FAULT_ARENA, 0, false);
    assert_pool_whole(f);
    assert_int_equal(nea_server_close(f->srv, unit_on_closed, f), 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->closed, 1);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
}
