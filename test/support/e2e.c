/*
 * e2e.c - see e2e.h.
 */
#include "e2e.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <stdarg.h>
#include <setjmp.h>
#include <cmocka.h>

uint64_t h_now_ms(void)
{
    return s_now_ms();
}

void h_config(nea_config *cfg)
{
    nea_config_init(cfg);
    cfg->port = 0;
    cfg->memory_limit = 16u << 20;
    cfg->arena_size = 64u << 10;
    cfg->arena_count = 8;
    cfg->max_connections = 32;
    cfg->read_buffer_size = 4096;
    cfg->max_body_size = 32u << 10;
}

void h_start(h_fixture *f, const nea_config *cfg)
{
    memset(f, 0, sizeof(*f));
    t_handlers_reset();
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->cfg = *cfg;
    t_log_attach(&f->log, &f->cfg);
    assert_int_equal(nea_server_new(&f->loop, &f->cfg, &f->srv), 0);
    t_routes_add(f->srv);
    assert_int_equal(nea_server_listen(f->srv), 0);
    f->port = nea_server_port(f->srv);
    assert_true(f->port > 0);
}

void h_start_tweaked(h_fixture *f, void (*tweak)(nea_config *))
{
    nea_config cfg;
    h_config(&cfg);
    if (tweak != NULL) {
        tweak(&cfg);
    }
    h_start(f, &cfg);
}

void h_on_closed(nea_server *s, void *data)
{
    h_fixture *f = data;
    (void)s;
    f->closed = true;
    f->closed_calls++;
}

void h_close(h_fixture *f)
{
    f->close_called = true;
    assert_int_equal(nea_server_close(f->srv, h_on_closed, f), 0);
}

static bool all_arenas_back(h_fixture *f)
{
    return f->srv->pools[0].in_use == 0 && f->srv->env.reqs.live == 0;
}

void h_stop(h_fixture *f)
{
    if (!f->close_called) {
        /* Clients are gone; whatever they left in flight ends on its own. */
        H_WAIT(f, all_arenas_back(f));
        assert_int_equal(f->srv->pools[0].in_use, 0);
        assert_int_equal(f->srv->env.reqs.live, 0);
        assert_null(f->srv->env.reqs.tramp.top);
        h_close(f);
    }
    h_pump(f, H_DEADLINE_MS, &f->closed);
    assert_true(f->closed);
    assert_int_equal(f->closed_calls, 1);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

void h_stats(h_fixture *f, nea_stats *st)
{
    nea_server_stats(f->srv, st);
}

nea_stats h_st(h_fixture *f)
{
    nea_stats st;
    nea_server_stats(f->srv, &st);
    return st;
}

nea__conn *h_slot(h_fixture *f, unsigned i)
{
    return nea__admission_slot(&f->srv->admission, i);
}

unsigned h_slots_in(h_fixture *f, nea__conn_state st)
{
    unsigned n = 0;
    for (unsigned i = 0; i < f->srv->admission.count; i++) {
        n += h_slot(f, i)->state == st;
    }
    return n;
}

void h_pump(h_fixture *f, unsigned ms, const bool *done)
{
    s_pump(&f->loop, ms, done);
}

void h_step(h_fixture *f, unsigned ms)
{
    s_step(&f->loop, ms);
}

int h_connect(h_fixture *f)
{
    return s_connect(&f->loop, f->port);
}

void h_send(h_fixture *f, int fd, const char *data, size_t len)
{
    s_send(&f->loop, fd, data, len);
}

void h_sends(h_fixture *f, int fd, const char *s)
{
    s_send(&f->loop, fd, s, strlen(s));
}

int h_read(h_fixture *f, int fd, h_response *r, unsigned timeout_ms)
{
    return s_read(&f->loop, fd, r, f->head_request, timeout_ms);
}

bool h_closed(h_fixture *f, int fd, unsigned timeout_ms)
{
    return s_closed(&f->loop, fd, timeout_ms);
}

bool h_quiet(h_fixture *f, int fd, unsigned ms)
{
    return s_quiet(&f->loop, fd, ms);
}

const char *h_header(const h_response *r, const char *name, char *buf, size_t len)
{
    return s_header(r, name, buf, len);
}

int h_request(h_fixture *f, const char *raw, h_response *r)
{
    int fd = h_connect(f), status;
    h_sends(f, fd, raw);
    status = h_read(f, fd, r, H_DEADLINE_MS);
    close(fd);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    return status;
}

int h_get(h_fixture *f, const char *path)
{
    char req[512];
    int fd = h_connect(f);
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    h_sends(f, fd, req);
    return fd;
}

void h_expect(h_fixture *f, int fd, const char *raw, int status, h_response *r)
{
    h_response local;
    if (r == NULL) {
        r = &local;
    }
    h_sends(f, fd, raw);
    if (h_read(f, fd, r, H_DEADLINE_MS) != status) {
        fail_msg("expected %d for %s, got %d", status, raw, r->status);
    }
}

void h_expect_close(h_fixture *f, const char *raw, int status)
{
    h_response r;
    int fd = h_connect(f);
    h_sends(f, fd, raw);
    if (h_read(f, fd, &r, H_DEADLINE_MS) != status) {
        fail_msg("expected %d for %s, got %d", status, raw, r.status);
    }
    if (strstr(r.head, "Connection: close") == NULL) {
        fail_msg("no Connection: close on %d for %s", status, raw);
    }
    if (!h_closed(f, fd, H_DEADLINE_MS)) {
        fail_msg("connection left open after %d for %s", status, raw);
    }
    close(fd);
}

static h_fixture shared_fixture;

void h_test_start(void **state, void (*tweak)(nea_config *))
{
    h_start_tweaked(&shared_fixture, tweak);
    *state = &shared_fixture;
}

int h_test_setup(void **state)
{
    h_test_start(state, NULL);
    return 0;
}

int h_test_teardown(void **state)
{
    h_stop(*state);
    return 0;
}

nea_stats_class h_arenas(h_fixture *f)
{
    nea_stats st = h_st(f);
    return nea_stats_arenas(&st);
}

unsigned h_arenas_in_use(h_fixture *f)
{
    return h_arenas(f).in_use;
}

bool h_arenas_settle(h_fixture *f)
{
    uint64_t end = h_now_ms() + H_DEADLINE_MS;
    while (h_arenas_in_use(f) != 0 && h_now_ms() < end) {
        h_step(f, 10);
    }
    return h_arenas_in_use(f) == 0;
}
