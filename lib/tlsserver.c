/*
 * tlsserver.c - what every connection of one HTTPS server shares, on every
 * worker: the certificate new handshakes take (swapped by a reload while
 * serving), the certificates handshakes in progress still hold, BearSSL's
 * session cache for resumption, and the admit hook asked before a full
 * handshake's public-key work.
 *
 * Invariants: a certificate is referenced by its server while current and
 * by each handshake that chose it (nea__tls_server_pin), from the
 * ClientHello to the end of the handshake (nea__tls_server_unpin); the
 * last release frees it, so a reload never pulls a certificate from under
 * a handshake. The counts, the current pointer and the session cache are
 * guarded by the server's lock (workers share one server object); nothing
 * else here is shared, and nothing is allocated but certificates
 * (tlscert.c). The cache is sessions * SESSION_BYTES bytes after the
 * struct, in the reservation; it is wiped when the server goes.
 */
#include "tlsserver.h"
#include "tlscert.h"

#include <stdio.h>
#include <string.h>

#if NEA_HAVE_TLS

#include <pthread.h>

#define SESSION_BYTES 100 /* one entry of BearSSL's LRU session cache */

/* BearSSL's LRU cache behind the server's lock, so every worker's
 * handshakes share it. */
typedef struct tls_cache {
    const br_ssl_session_cache_class *vtable;
    br_ssl_session_cache_lru lru;
    nea__tls_server *server;
} tls_cache;

struct nea__tls_server {
    pthread_mutex_t lock;
    nea__tls_cert *current;
    unsigned certs;    /* live certificates */
    size_t cert_bytes; /* their bytes */
    nea__tls_admit_fn admit;
    unsigned sessions;
    tls_cache cache;
    unsigned char store[]; /* sessions * SESSION_BYTES */
};

/* --- Certificates in use -------------------------------------------------- */

nea__tls_cert *nea__tls_server_pin(nea__tls_server *s)
{
    nea__tls_cert *c;
    pthread_mutex_lock(&s->lock);
    c = s->current;
    c->refs++;
    pthread_mutex_unlock(&s->lock);
    return c;
}

/* Drops one reference; frees the certificate after the last one. Call with
 * the lock held; returns the block to free once it is released. */
static nea__tls_cert *cert_unref_locked(nea__tls_server *s, nea__tls_cert *c)
{
    if (--c->refs > 0) {
        return NULL;
    }
    s->certs--;
    s->cert_bytes -= c->bytes;
    return c;
}

void nea__tls_server_unpin(nea__tls_server *s, nea__tls_cert *c)
{
    nea__tls_cert *dead;
    pthread_mutex_lock(&s->lock);
    dead = cert_unref_locked(s, c);
    pthread_mutex_unlock(&s->lock);
    if (dead != NULL) {
        nea__tls_cert_free(dead);
    }
}

/* --- The session cache ---------------------------------------------------- */

static void cache_save(const br_ssl_session_cache_class **ctx, br_ssl_server_context *sc,
                       const br_ssl_session_parameters *params)
{
    tls_cache *k = (tls_cache *)(void *)ctx;
    pthread_mutex_lock(&k->server->lock);
    k->lru.vtable->save(&k->lru.vtable, sc, params);
    pthread_mutex_unlock(&k->server->lock);
}

static int cache_load(const br_ssl_session_cache_class **ctx, br_ssl_server_context *sc,
                      br_ssl_session_parameters *params)
{
    tls_cache *k = (tls_cache *)(void *)ctx;
    int found;
    pthread_mutex_lock(&k->server->lock);
    found = k->lru.vtable->load(&k->lru.vtable, sc, params);
    pthread_mutex_unlock(&k->server->lock);
    return found;
}

static const br_ssl_session_cache_class cache_class = {sizeof(tls_cache), cache_save, cache_load};

/* --- The server object ---------------------------------------------------- */

size_t nea__tls_server_size(unsigned sessions)
{
    return NEA__ROUND_UP(sizeof(nea__tls_server) + (size_t)sessions * SESSION_BYTES, NEA__ALIGN);
}

int nea__tls_server_init(void *mem, unsigned sessions, const nea_tls_cert *cert,
                         nea__tls_admit_fn admit, nea__tls_server **out, char *errbuf,
                         size_t errlen)
{
    nea__tls_server *s = mem;
    nea__tls_cert *c;
    int rc;

    if (mem == NULL || cert == NULL || out == NULL) {
        return UV_EINVAL;
    }
    rc = nea__tls_cert_load(cert, &c, errbuf, errlen);
    if (rc != 0) {
        return rc;
    }
    memset(s, 0, sizeof(*s));
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        nea__tls_cert_free(c);
        return UV_ENOMEM;
    }
    c->refs = 1;
    s->current = c;
    s->certs = 1;
    s->cert_bytes = c->bytes;
    s->admit = admit;
    s->sessions = sessions;
    s->cache.vtable = &cache_class;
    s->cache.server = s;
    br_ssl_session_cache_lru_init(&s->cache.lru, s->store, (size_t)sessions * SESSION_BYTES);
    *out = s;
    return 0;
}

int nea__tls_server_reload(nea__tls_server *s, const nea_tls_cert *cert, char *errbuf,
                           size_t errlen)
{
    nea__tls_cert *c, *dead;
    int rc;

    if (s == NULL || cert == NULL) {
        return UV_EINVAL;
    }
    rc = nea__tls_cert_load(cert, &c, errbuf, errlen);
    if (rc != 0) {
        return rc;
    }
    c->refs = 1;
    pthread_mutex_lock(&s->lock);
    dead = cert_unref_locked(s, s->current);
    s->current = c;
    s->certs++;
    s->cert_bytes += c->bytes;
    pthread_mutex_unlock(&s->lock);
    if (dead != NULL) {
        nea__tls_cert_free(dead);
    }
    return 0;
}

void nea__tls_server_destroy(nea__tls_server *s)
{
    if (s == NULL || s->current == NULL) {
        return;
    }
    nea__tls_server_unpin(s, s->current);
    s->current = NULL;
    nea__tls_wipe(s->store, (size_t)s->sessions * SESSION_BYTES);
    pthread_mutex_destroy(&s->lock);
}

unsigned nea__tls_server_certs(nea__tls_server *s, size_t *bytes)
{
    unsigned n;
    pthread_mutex_lock(&s->lock);
    n = s->certs;
    if (bytes != NULL) {
        *bytes = s->cert_bytes;
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* --- For the engine (tls.c) ----------------------------------------------- */

bool nea__tls_server_admits(nea__tls_server *s, void *conn_data)
{
    return s->admit == NULL || s->admit(conn_data);
}

const struct br_ssl_session_cache_class_ **nea__tls_server_cache(nea__tls_server *s)
{
    return s->sessions > 0 ? &s->cache.vtable : NULL;
}

#else /* !NEA_HAVE_TLS: size 0, every certificate refused */

size_t nea__tls_server_size(unsigned sessions)
{
    (void)sessions;
    return 0;
}

int nea__tls_server_init(void *mem, unsigned sessions, const nea_tls_cert *cert,
                         nea__tls_admit_fn admit, nea__tls_server **out, char *errbuf,
                         size_t errlen)
{
    (void)mem;
    (void)sessions;
    (void)cert;
    (void)admit;
    (void)out;
    if (errbuf != NULL && errlen > 0) {
        snprintf(errbuf, errlen, "libnea was built without TLS (configure with -DNEA_TLS=ON)");
    }
    return NEA_ENOTLS;
}

int nea__tls_server_reload(nea__tls_server *s, const nea_tls_cert *cert, char *errbuf,
                           size_t errlen)
{
    return nea__tls_server_init(s, 0, cert, NULL, NULL, errbuf, errlen);
}

void nea__tls_server_destroy(nea__tls_server *s)
{
    (void)s;
}

unsigned nea__tls_server_certs(nea__tls_server *s, size_t *bytes)
{
    (void)s;
    if (bytes != NULL) {
        *bytes = 0;
    }
    return 0;
}

#endif /* NEA_HAVE_TLS */
