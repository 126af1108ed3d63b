/*
 * test_adapt.c - the allocator adapters (adapt.c): nea_req_current in and
 * out of protected frames; realloc growing in place and by copy; free
 * reclaiming only the last block; the try adapters returning NULL where the
 * plain ones unwind; the libc fallback outside a request; and real
 * libraries on them - zlib (per-object hooks), jansson (global hooks),
 * protobuf-c (ProtobufCAllocator) - including out-of-memory inside jansson
 * and zlib end to end: 500 for that request, the arena back in the pool,
 * nothing leaked (the sanitizer and Valgrind runs check the last part).
 *
 * Handler code records what it saw in plain structs; assertions run after
 * it returned, never inside a protected frame.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "clib.h"
#include "e2e.h"
#include "unit.h"

#ifdef NEA_HAVE_PROTOBUF_C
#include <protobuf-c/protobuf-c.h>
#endif

#define ARENA ((size_t)16 * KIB)

static bool in_arena(const nea_req *req, const void *p)
{
    uintptr_t a = (uintptr_t)req->arena->base, x = (uintptr_t)p;
    return x >= a && x < a + req->arena->size;
}

/* --- nea_req_current ------------------------------------------------------------ */

typedef struct seen {
    nea_req *self, *in_handler, *in_protect, *after_protect, *in_run, *after_run, *in_defer;
    nea_req *other;
    int reached;
} seen;

static void probe_protect(nea_req *req, void *arg)
{
    (void)req;
    ((seen *)arg)->in_protect = nea_req_current();
}

static void probe_other(nea_req *req, void *arg)
{
    (void)req;
    ((seen *)arg)->in_run = nea_req_current();
}

static void probe_defer(void *arg)
{
    ((seen *)arg)->in_defer = nea_req_current();
}

static void probe_handler(nea_req *req, void *arg)
{
    seen *s = arg;
    s->self = req;
    s->in_handler = nea_req_current();
    assert_int_equal(nea_req_protect(req, probe_protect, s), 0);
    s->after_protect = nea_req_current();
    nea_req_run(s->other, probe_other, s);
    s->after_run = nea_req_current();
    assert_int_equal(nea_req_defer(req, probe_defer, s), 0);
}

static void test_current(void **state)
{
    fixture *f = *state;
    seen s = {0};
    nea_req *req = open_req(f);

    assert_null(nea_req_current());
    s.other = open_req(f);
    nea__req_call(req, probe_handler, &s);
    assert_null(nea_req_current());
    assert_ptr_equal(s.in_handler, req);
    assert_ptr_equal(s.in_protect, req);
    assert_ptr_equal(s.after_protect, req);
    assert_ptr_equal(s.in_run, s.other); /* another request entered with nea_req_run */
    assert_ptr_equal(s.after_run, req);
    end_req(f, req);
    assert_null(s.in_defer); /* defers run after the handler: no current request */
    end_req(f, s.other);
    assert_pool_whole(f);
}

static void exhaust(nea_req *req, void *arg)
{
    (void)req;
    (void)arg;
    (void)nea_arena_malloc(ARENA * 2);
}

static void test_current_cleared_by_unwind(void **state)
{
    fixture *f = *state;
    run_req(f, exhaust, NULL);
    assert_int_equal(f->srv->stats.oom_500, 1);
    assert_null(nea_req_current());
    assert_pool_whole(f);
}

/* --- realloc and free ------------------------------------------------------------- */

typedef struct grow_probe {
    char *p, *q, *r, *s;
    size_t used_before, used_after_free, used_after_malloc, used_after_grow, used_after_shrink;
    bool copied_ok;
} grow_probe;

static void grow_in_place(nea_req *req, void *arg)
{
    grow_probe *g = arg;
    g->used_before = req->arena->used;
    g->p = nea_arena_malloc(100);
    memset(g->p, 'a', 100);
    g->used_after_malloc = req->arena->used;
    g->q = nea_arena_realloc(g->p, 1000);
    g->used_after_grow = req->arena->used;
    g->copied_ok = g->q[0] == 'a' && g->q[99] == 'a';
    memset(g->q + 100, 'b', 900); /* the grown part is usable */
    g->r = nea_arena_realloc(g->q, 10);
    g->used_after_shrink = req->arena->used;
    nea_arena_free(g->r);
    g->used_after_free = req->arena->used;
}

static void test_realloc_in_place(void **state)
{
    fixture *f = *state;
    grow_probe g = {0};
    run_req(f, grow_in_place, &g);
    assert_ptr_equal(g.q, g.p);
    assert_ptr_equal(g.r, g.p);
    assert_true(g.copied_ok);
    assert_int_equal(g.used_after_grow - g.used_after_malloc, 900);
    assert_int_equal(g.used_after_grow - g.used_after_shrink, 990);
    assert_int_equal(g.used_after_free, g.used_before); /* the last block is reclaimed */
    assert_int_equal(f->srv->stats.oom_500, 0);
    assert_pool_whole(f);
}

static void grow_by_copy(nea_req *req, void *arg)
{
    grow_probe *g = arg;
    g->p = nea_arena_malloc(100);
    memset(g->p, 'c', 100);
    g->s = nea_arena_malloc(8); /* now p is not the last block */
    g->used_before = req->arena->used;
    nea_arena_free(g->p); /* not the last block: a no-op */
    g->used_after_free = req->arena->used;
    g->q = nea_arena_realloc(g->p, 300);
    g->copied_ok = g->q[0] == 'c' && g->q[99] == 'c' && in_arena(req, g->q);
    memset(g->q + 100, 'd', 200);
    g->r = nea_arena_realloc(g->s, 4); /* shrinking never moves */
    g->used_after_malloc = req->arena->used;
    nea_arena_free(g->p); /* no-op: the copy is last */
    g->used_after_shrink = req->arena->used;
}

static void test_realloc_by_copy(void **state)
{
    fixture *f = *state;
    grow_probe g = {0};
    run_req(f, grow_by_copy, &g);
    assert_ptr_not_equal(g.q, g.p);
    assert_true(g.copied_ok);
    assert_ptr_equal(g.r, g.s);
    assert_int_equal(g.used_after_free, g.used_before);
    assert_true(g.used_after_malloc >= g.used_before + 300);
    assert_int_equal(g.used_after_shrink, g.used_after_malloc);
    assert_pool_whole(f);
}

static void calloc_zeroes(nea_req *req, void *arg)
{
    unsigned char *p;
    bool *ok = arg;
    (void)req;
    /* Dirty the arena first, so zeroes are not left over from the mapping. */
    p = nea_arena_malloc(256);
    memset(p, 0xEE, 256);
    nea_arena_free(p);
    p = nea_arena_calloc(16, 16);
    *ok = p != NULL;
    for (int i = 0; i < 256; i++) {
        *ok = *ok && p[i] == 0;
    }
}

static void test_calloc_zeroes(void **state)
{
    fixture *f = *state;
    bool ok = false;
    run_req(f, calloc_zeroes, &ok);
    assert_true(ok);
    assert_pool_whole(f);
}

/* --- the two tiers -------------------------------------------------------------------- */

typedef struct tiers {
    void *big, *over, *grown, *keep;
    bool keep_intact;
    int reached;
} tiers;

static void try_tier(nea_req *req, void *arg)
{
    tiers *t = arg;
    (void)req;
    t->big = nea_arena_try_malloc(ARENA * 2);
    t->over = nea_arena_try_calloc(SIZE_MAX / 2, 4);
    t->keep = nea_arena_try_malloc(32);
    memset(t->keep, 'k', 32);
    (void)nea_alloc(req, 8);
    t->grown = nea_arena_try_realloc(t->keep, ARENA * 2);
    t->keep_intact = ((char *)t->keep)[31] == 'k';
    t->reached = 1;
}

static void test_try_returns_null(void **state)
{
    fixture *f = *state;
    tiers t = {0};
    run_req(f, try_tier, &t);
    assert_int_equal(t.reached, 1);
    assert_null(t.big);
    assert_null(t.over);
    assert_null(t.grown);
    assert_true(t.keep_intact);
    assert_int_equal(f->srv->stats.oom_500, 0);
    assert_pool_whole(f);
}

static void unwind_calloc(nea_req *req, void *arg)
{
    (void)req;
    (void)nea_arena_calloc(SIZE_MAX / 2, 4);
    ((tiers *)arg)->reached = 1;
}

static void unwind_realloc(nea_req *req, void *arg)
{
    void *p = nea_arena_malloc(16);
    (void)nea_alloc(req, 16);
    (void)nea_arena_realloc(p, ARENA);
    ((tiers *)arg)->reached = 1;
}

static void unwind_zalloc(nea_req *req, void *arg)
{
    (void)nea_zalloc(req, 1024, 1024);
    ((tiers *)arg)->reached = 1;
}

static void unwind_pbc(nea_req *req, void *arg)
{
    (void)nea_pbc_alloc(req, ARENA);
    ((tiers *)arg)->reached = 1;
}

static void test_plain_unwinds(void **state)
{
    fixture *f = *state;
    void (*const fns[])(nea_req *, void *) = {exhaust, unwind_calloc, unwind_realloc, unwind_zalloc,
                                              unwind_pbc};
    for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
        tiers t = {0};
        run_req(f, fns[i], &t);
        assert_int_equal(t.reached, 0);
        assert_int_equal(f->srv->stats.oom_500, i + 1);
        assert_pool_whole(f);
    }
}

static void protect_body(nea_req *req, void *arg)
{
    (void)req;
    (void)arg;
    (void)nea_arena_malloc(1000);
    (void)nea_arena_malloc(ARENA);
}

static void protected_handler(nea_req *req, void *arg)
{
    size_t *out = arg;
    size_t before = req->arena->used;
    out[0] = (size_t)-nea_req_protect(req, protect_body, NULL);
    out[1] = req->arena->used - before; /* rolled back */
}

static void test_unwind_inside_protect(void **state)
{
    fixture *f = *state;
    size_t out[2] = {0, 1};
    run_req(f, protected_handler, out);
    assert_int_equal(out[0], (size_t)-NEA_ENOMEM);
    assert_int_equal(out[1], 0);
    assert_int_equal(f->srv->stats.oom_500, 0);
    assert_pool_whole(f);
}

/* --- outside a request: libc ------------------------------------------------------------ */

typedef struct libc_probe {
    char *heap;
    char *grown;
    bool grown_outside_arena;
} libc_probe;

static void grow_libc_block(nea_req *req, void *arg)
{
    libc_probe *l = arg;
    l->grown = nea_arena_realloc(l->heap, 4096);
    l->grown_outside_arena = !in_arena(req, l->grown);
}

static void test_outside_request_uses_libc(void **state)
{
    fixture *f = *state;
    libc_probe l = {0};
    char *z;

    assert_null(nea_req_current());
    l.heap = nea_arena_malloc(64);
    assert_non_null(l.heap);
    memset(l.heap, 'h', 64);
    z = nea_arena_try_calloc(8, 8);
    assert_non_null(z);
    assert_int_equal(z[63], 0);
    nea_arena_free(z);
    /* Grown inside a request, a libc block stays in libc: it outlives the
     * request and is freed afterwards (ASan and Valgrind would report a
     * block moved into the arena, and a leak if free skipped libc). */
    run_req(f, grow_libc_block, &l);
    assert_true(l.grown_outside_arena);
    assert_int_equal(l.grown[63], 'h');
    memset(l.grown, 'g', 4096);
    l.grown = nea_arena_try_realloc(l.grown, 8192);
    assert_non_null(l.grown);
    assert_int_equal(l.grown[4095], 'g');
    nea_arena_free(l.grown);
    nea_arena_free(NULL);
    assert_null(nea_arena_calloc(SIZE_MAX / 2, 4)); /* outside: NULL, no unwind */
    assert_pool_whole(f);
}

/* --- zlib --------------------------------------------------------------------------------- */

typedef struct zprobe {
    bool try_form;
    int init_rc, rc;
    size_t in_len, out_len, used;
    unsigned char out[256];
    bool state_in_arena;
} zprobe;

static void zend_defer(void *arg)
{
    deflateEnd(arg); /* from a defer: outside the frame, nea_zfree still works */
}

static void z_handler(nea_req *req, void *arg)
{
    zprobe *z = arg;
    static const char text[] = "arena arena arena arena arena arena arena arena arena arena";
    z_stream *zs = nea_calloc(req, 1, sizeof(*zs));
    size_t before = req->arena->used;

    zs->zalloc = z->try_form ? nea_try_zalloc : nea_zalloc;
    zs->zfree = nea_zfree;
    zs->opaque = req;
    z->init_rc =
        deflateInit2(zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
    if (z->init_rc != Z_OK) {
        return;
    }
    assert_int_equal(nea_req_defer(req, zend_defer, zs), 0);
    z->state_in_arena = in_arena(req, zs->state);
    z->used = req->arena->used - before;
    zs->next_in = (unsigned char *)text;
    zs->avail_in = (uInt)(sizeof(text) - 1);
    zs->next_out = z->out;
    zs->avail_out = sizeof(z->out);
    z->rc = deflate(zs, Z_FINISH);
    z->in_len = sizeof(text) - 1;
    z->out_len = sizeof(z->out) - zs->avail_out;
}

static void test_zlib_deflate_in_arena(void **state)
{
    fixture *f = *state;
    zprobe z = {0};
    z_stream inf;
    char back[128];

    run_req(f, z_handler, &z);
    assert_int_equal(z.init_rc, Z_OK);
    assert_int_equal(z.rc, Z_STREAM_END);
    assert_true(z.state_in_arena);
    assert_true(z.used > 256 * KIB); /* window, hash chains, pending buffer */
    /* The output is a valid gzip stream of the input. */
    memset(&inf, 0, sizeof(inf));
    assert_int_equal(inflateInit2(&inf, 15 + 16), Z_OK);
    inf.next_in = z.out;
    inf.avail_in = (uInt)z.out_len;
    inf.next_out = (unsigned char *)back;
    inf.avail_out = sizeof(back);
    assert_int_equal(inflate(&inf, Z_FINISH), Z_STREAM_END);
    assert_int_equal(sizeof(back) - inf.avail_out, z.in_len);
    inflateEnd(&inf);
    assert_pool_whole(f);
}

static void test_zlib_small_arena(void **state)
{
    fixture *f = *state;
    zprobe z = {.try_form = true};
    run_req(f, z_handler, &z);
    assert_int_equal(z.init_rc, Z_MEM_ERROR); /* try form: zlib reports it */
    assert_int_equal(f->srv->stats.oom_500, 0);
    z.try_form = false;
    z.init_rc = 1234;
    run_req(f, z_handler, &z);
    assert_int_equal(z.init_rc, 1234); /* plain form: unwound out of deflateInit2 */
    assert_int_equal(f->srv->stats.oom_500, 1);
    assert_pool_whole(f);
}

/* --- jansson ------------------------------------------------------------------------------- */

typedef struct jprobe {
    bool object_in_arena, text_in_arena;
    char text[64];
} jprobe;

static void j_handler(nea_req *req, void *arg)
{
    jprobe *j = arg;
    json_t *o = json_pack("{s:i}", "n", 7);
    char *s = json_dumps(o, JSON_COMPACT);
    j->object_in_arena = in_arena(req, o);
    j->text_in_arena = in_arena(req, s);
    snprintf(j->text, sizeof(j->text), "%s", s);
    json_decref(o);
}

static void test_jansson_global_hooks(void **state)
{
    fixture *f = *state;
    jprobe j = {0};
    json_t *outside;
    char *s;

    clib_routes_init();
    run_req(f, j_handler, &j);
    assert_true(j.object_in_arena);
    assert_true(j.text_in_arena);
    assert_string_equal(j.text, "{\"n\":7}");
    /* Outside a request the same hooks use libc; freeing returns it (LSan and
     * Valgrind report a leak otherwise). */
    outside = json_pack("{s:s}", "at", "startup");
    s = json_dumps(outside, JSON_COMPACT);
    assert_string_equal(s, "{\"at\":\"startup\"}");
    nea_arena_free(s);
    json_decref(outside);
    assert_pool_whole(f);
}

/* --- protobuf-c --------------------------------------------------------------------------- */

#ifdef NEA_HAVE_PROTOBUF_C
/* proto3 message Point { string name = 1; repeated sint32 values = 2; }
 * described by hand the way protoc-c would, so the test needs no generator. */
typedef struct point {
    ProtobufCMessage base;
    char *name;
    size_t n_values;
    int32_t *values;
} point;

static const ProtobufCFieldDescriptor point_fields[2] = {
    {"name", 1, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_STRING, 0, offsetof(point, name), NULL,
     &protobuf_c_empty_string, 0, 0, NULL, NULL},
    {"values", 2, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_SINT32, offsetof(point, n_values),
     offsetof(point, values), NULL, NULL, 0, 0, NULL, NULL},
};
static const unsigned point_by_name[2] = {0, 1};
static const ProtobufCIntRange point_ranges[2] = {{1, 0}, {0, 2}};
static void point_init(ProtobufCMessage *m);
static const ProtobufCMessageDescriptor point_desc = {
    PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    "t.Point",
    "Point",
    "Point",
    "t",
    sizeof(point),
    2,
    point_fields,
    point_by_name,
    1,
    point_ranges,
    point_init,
    NULL,
    NULL,
    NULL,
};

static void point_init(ProtobufCMessage *m)
{
    point *p = (point *)m;
    memset(p, 0, sizeof(*p));
    p->base.descriptor = &point_desc;
    p->name = (char *)protobuf_c_empty_string;
}

typedef struct pprobe {
    bool try_form;
    uint8_t wire[64];
    size_t wire_len;
    bool unpacked, in_arena;
    char name[16];
    int32_t last;
    size_t n;
} pprobe;

static void p_handler(nea_req *req, void *arg)
{
    pprobe *pp = arg;
    ProtobufCAllocator a = {pp->try_form ? nea_try_pbc_alloc : nea_pbc_alloc, nea_pbc_free, req};
    point *p = (point *)protobuf_c_message_unpack(&point_desc, &a, pp->wire_len, pp->wire);
    pp->unpacked = p != NULL;
    if (p == NULL) {
        return;
    }
    pp->in_arena = in_arena(req, p) && in_arena(req, p->values) && in_arena(req, p->name);
    snprintf(pp->name, sizeof(pp->name), "%s", p->name);
    pp->n = p->n_values;
    pp->last = p->values[p->n_values - 1];
    protobuf_c_message_free_unpacked(&p->base, &a);
}

static void pack_point(pprobe *pp)
{
    int32_t values[3] = {1, -2, 300};
    point p;
    point_init(&p.base);
    p.name = "here";
    p.n_values = 3;
    p.values = values;
    assert_true(protobuf_c_message_get_packed_size(&p.base) <= sizeof(pp->wire));
    pp->wire_len = protobuf_c_message_pack(&p.base, pp->wire);
}

static void test_protobuf_c_allocator(void **state)
{
    fixture *f = *state;
    pprobe pp = {0};
    pack_point(&pp);
    run_req(f, p_handler, &pp);
    assert_true(pp.unpacked);
    assert_true(pp.in_arena);
    assert_string_equal(pp.name, "here");
    assert_int_equal(pp.n, 3);
    assert_int_equal(pp.last, 300);
    assert_pool_whole(f);
}

static void fill_arena(nea_req *req, void *arg)
{
    /* Leave less than the message needs, then unpack with the try form. */
    (void)nea_alloc(req, nea_arena_available(req) - 64);
    p_handler(req, arg);
}

static void test_protobuf_c_exhausted(void **state)
{
    fixture *f = *state;
    pprobe pp = {.try_form = true};
    pack_point(&pp);
    run_req(f, fill_arena, &pp);
    assert_false(pp.unpacked);
    assert_int_equal(f->srv->stats.oom_500, 0);
    assert_pool_whole(f);
}
#endif

/* --- end to end: the demo's /json and /gzip -------------------------------------------------- */

static int e2e_setup(void **state)
{
    h_test_start(state, t_clib_config);
    t_clib_routes(((h_fixture *)*state)->srv);
    return 0;
}

/* The gzip body inflates to n KiB of text. */
static void assert_gunzips_to(const h_response *r, size_t n)
{
    z_stream zs;
    static unsigned char back[64 * 1024];
    memset(&zs, 0, sizeof(zs));
    assert_int_equal(inflateInit2(&zs, 15 + 16), Z_OK);
    zs.next_in = (unsigned char *)r->body;
    zs.avail_in = (uInt)r->body_len;
    zs.next_out = back;
    zs.avail_out = sizeof(back);
    assert_int_equal(inflate(&zs, Z_FINISH), Z_STREAM_END);
    assert_int_equal(zs.total_out, n);
    inflateEnd(&zs);
}

static void test_e2e_json_gzip(void **state)
{
    h_fixture *f = *state;
    h_response r;
    char v[32];
    int fd = h_connect(f);
    json_t *doc;
    json_error_t err;

    h_expect(f, fd, "GET /json/50 HTTP/1.1\r\nHost: x\r\n\r\n", 200, &r);
    json_set_alloc_funcs(malloc, free); /* the test's own parsing, outside the server */
    doc = json_loadb(r.body, r.body_len, 0, &err);
    assert_non_null(doc);
    assert_int_equal(json_array_size(doc), 50);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(doc, 49), "id")), 49);
    json_decref(doc);
    clib_routes_init(); /* only once nothing from the libc hooks is left */
    h_expect(f, fd, "GET /gzip/16 HTTP/1.1\r\nHost: x\r\n\r\n", 200, &r);
    assert_non_null(h_header(&r, "Content-Encoding", v, sizeof(v)));
    assert_string_equal(v, "gzip");
    assert_gunzips_to(&r, 16 * 1024);
    h_expect(f, fd, "GET /json/0 HTTP/1.1\r\nHost: x\r\n\r\n", 400, NULL);
    h_expect(f, fd, "GET /gzip/4294967296 HTTP/1.1\r\nHost: x\r\n\r\n", 400, NULL);
    close(fd);
}

static void test_e2e_oom_inside_libraries(void **state)
{
    h_fixture *f = *state;
    int fd = h_connect(f), other = h_connect(f);
    uint64_t before = h_st(f).oom_500;

    /* Both libraries run out of arena mid-way, however large N is (the arena
     * stops the work, not N): a 500 for that request... */
    h_expect(f, fd, "GET /json/65536 HTTP/1.1\r\nHost: x\r\n\r\n", 500, NULL);
    h_expect(f, fd, "GET /gzip/5000 HTTP/1.1\r\nHost: x\r\n\r\n", 500, NULL);
    h_expect(f, fd, "GET /json/4000000000 HTTP/1.1\r\nHost: x\r\n\r\n", 500, NULL);
    h_expect(f, fd, "GET /gzip/4000000000 HTTP/1.1\r\nHost: x\r\n\r\n", 500, NULL);
    assert_int_equal(h_st(f).oom_500, before + 4);
    /* ...and the connection, the other clients and the arenas carry on. */
    h_expect(f, fd, "GET /json/3 HTTP/1.1\r\nHost: x\r\n\r\n", 200, NULL);
    h_expect(f, other, "GET /gzip/2 HTTP/1.1\r\nHost: x\r\n\r\n", 200, NULL);
    close(fd);
    close(other);
    assert_true(h_arenas_settle(f));
}

/* SQLite-style: fail the nth arena grant of one request, n = 1, 2, ... until
 * one completes; every failure inside the libraries is a 500, the arena
 * comes back and the next request is served. */
static void sweep(h_fixture *f, const char *raw)
{
    static h_response r;
    unsigned long n;
    unsigned failed_runs = 0;
    for (n = 1; n < 200; n++) {
        int st, fd = h_connect(f);
        unsigned long failed;
        nea__fault_arm(&f->srv->fault, NEA__FAULT_ARENA, n, false);
        h_send(f, fd, raw, strlen(raw));
        st = h_read(f, fd, &r, H_DEADLINE_MS);
        failed = nea__fault_failed(&f->srv->fault, NEA__FAULT_ARENA);
        nea__fault_arm(&f->srv->fault, NEA__FAULT_ARENA, 0, false);
        close(fd);
        assert_true(h_arenas_settle(f));
        if (failed == 0) {
            assert_int_equal(st, 200);
            break;
        }
        /* Before the handler, a failed grant for the request or its head is
         * a 500 or a 431; inside the libraries it is the out-of-memory 500. */
        if (st != 500 && st != 431) {
            fail_msg("%s: fault at grant %lu answered %d", raw, n, st);
        }
        failed_runs += st == 500;
        fd = h_connect(f);
        h_expect(f, fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 200, NULL);
        close(fd);
    }
    assert_true(n < 200);
    assert_true(failed_runs > 5);
}

static void test_e2e_fault_sweep(void **state)
{
    h_fixture *f = *state;
    sweep(f, "GET /json/8 HTTP/1.1\r\nHost: x\r\n\r\n");
    sweep(f, "GET /gzip/2 HTTP/1.1\r\nHost: x\r\n\r\n");
}

static int big_setup(void **state)
{
    *state = unit_start(t_clib_config);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_current, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_current_cleared_by_unwind, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_realloc_in_place, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_realloc_by_copy, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_calloc_zeroes, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_try_returns_null, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_plain_unwinds, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_unwind_inside_protect, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_outside_request_uses_libc, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_zlib_deflate_in_arena, big_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_zlib_small_arena, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_jansson_global_hooks, unit_setup, unit_teardown),
#ifdef NEA_HAVE_PROTOBUF_C
        cmocka_unit_test_setup_teardown(test_protobuf_c_allocator, unit_setup, unit_teardown),
        cmocka_unit_test_setup_teardown(test_protobuf_c_exhausted, unit_setup, unit_teardown),
#endif
        cmocka_unit_test_setup_teardown(test_e2e_json_gzip, e2e_setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_e2e_oom_inside_libraries, e2e_setup, h_test_teardown),
        cmocka_unit_test_setup_teardown(test_e2e_fault_sweep, e2e_setup, h_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
