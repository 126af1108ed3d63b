/*
 * tls.c - the TLS engine, on BearSSL: a server's certificate (swappable
 * while serving) and shared session cache, and each connection's TLS state
 * in memory the caller provides. docs/tls.md says why BearSSL (it never
 * allocates, and takes every buffer from the caller) and what it costs.
 *
 * Invariants:
 *  - Nothing here allocates per connection. A connection is one
 *    nea__tls_conn (BearSSL's server context inside) plus one record block:
 *    input IN_LEN bytes, then output OUT_LEN bytes. IN_LEN is the largest
 *    record the offered suites can send (AEAD only: 16384 bytes of payload,
 *    an 8-byte explicit nonce and a 16-byte tag, behind a 5-byte header);
 *    OUT_LEN is what BearSSL needs for 2048-byte records. Certificates are
 *    heap blocks made when loaded.
 *  - A certificate is referenced by its server while current and by each
 *    handshake that chose it, from the ClientHello to the end of the
 *    handshake; the last release frees it. Counts, the current pointer and
 *    the session cache are guarded by the server's lock (workers share one
 *    server object); nothing else is shared.
 *  - BearSSL takes received bytes at most one record header or body at a
 *    time, and every header passes check_header first: so the first byte
 *    tells plain HTTP from TLS, an oversized record fails before a byte of
 *    its body is stored, and a handshake record after the handshake
 *    (renegotiation) fails the connection, whatever BearSSL would say.
 *  - Parking: between requests BearSSL's input and output positions are at
 *    rest (nothing buffered either way), so its two buffer pointers are the
 *    only reference to the record block; nea__tls_park takes them away and
 *    nea__tls_unpark sets them to another block. Only connection_at_rest,
 *    the two park functions and policy_choose (which keeps the policy
 *    BearSSL's set_single_* installed) touch BearSSL's fields directly;
 *    test_tls proves the parking by making given-back blocks PROT_NONE.
 */
#include "tls.h"
#include "common.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *nea__tls_reason_name(nea__tls_reason r)
{
    static const char *const names[NEA__TLS_R_COUNT] = {
        [NEA__TLS_R_NONE] = "none",
        [NEA__TLS_R_PLAIN_HTTP] = "plain_http",
        [NEA__TLS_R_NOT_TLS] = "not_tls",
        [NEA__TLS_R_VERSION] = "version",
        [NEA__TLS_R_NO_SHARED] = "no_shared",
        [NEA__TLS_R_HANDSHAKE] = "handshake",
        [NEA__TLS_R_RECORD_TOO_LARGE] = "record_too_large",
        [NEA__TLS_R_BAD_RECORD] = "bad_record",
        [NEA__TLS_R_RENEGOTIATION] = "renegotiation",
        [NEA__TLS_R_PEER_ALERT] = "peer_alert",
        [NEA__TLS_R_TRUNCATED] = "truncated",
        [NEA__TLS_R_SHED] = "shed",
        [NEA__TLS_R_TIMEOUT] = "timeout",
        [NEA__TLS_R_INTERNAL] = "internal",
    };
    return (unsigned)r < NEA__TLS_R_COUNT ? names[r] : "unknown";
}

_Static_assert(NEA__TLS_R_COUNT <= NEA_TLS_REASONS, "nea_stats.tls_failed is too short");

const char *nea_tls_reason_name(unsigned reason)
{
    if (reason == NEA__TLS_R_NONE || reason >= NEA__TLS_R_COUNT) {
        return NULL;
    }
    return nea__tls_reason_name((nea__tls_reason)reason);
}

#if NEA_HAVE_TLS

#include <bearssl.h>
#include <errno.h>
#include <pthread.h>

#define IN_LEN (5 + 16384 + 8 + 16)
#define OUT_LEN (2048 + 85)
#define IN_SPAN NEA__ROUND_UP((size_t)IN_LEN, NEA__ALIGN)
#define OUT_SPAN NEA__ROUND_UP((size_t)OUT_LEN, NEA__ALIGN)
#define RECORD_BODY_MAX (16384 + 8 + 16) /* the longest record body any offered suite sends */
#define SESSION_BYTES 100                /* one entry of BearSSL's LRU session cache */
#define PEM_FILE_MAX ((size_t)1 << 20)
#define PEM_OBJECTS_MAX 16
#define RSA_BITS_MAX 4096 /* BearSSL's largest RSA key */

/* TLS record content types. */
enum { CT_CCS = 20, CT_ALERT = 21, CT_HANDSHAKE = 22, CT_APPDATA = 23 };

/* Server preference: AES-128-GCM (AES-NI where present), then ChaCha20,
 * then AES-256-GCM; the certificate's key type picks ECDSA or RSA. */
static const uint16_t suites[] = {
    BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    BR_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    BR_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    BR_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    BR_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    BR_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
};
static const char *alpn_names[] = {"http/1.1"};

/* One certificate chain and its key, in one heap block. */
typedef struct tls_cert {
    unsigned refs; /* under the server's lock */
    int key_type;  /* BR_KEYTYPE_EC or BR_KEYTYPE_RSA */
    br_x509_certificate *chain;
    size_t chain_len;
    union {
        br_ec_private_key ec;
        br_rsa_private_key rsa;
    } key;
    size_t bytes;         /* of the whole block */
    unsigned char data[]; /* chain entries, DER, then key material */
} tls_cert;

/* BearSSL's LRU cache behind the server's lock, so every worker's
 * handshakes share it. */
typedef struct tls_cache {
    const br_ssl_session_cache_class *vtable;
    br_ssl_session_cache_lru lru;
    nea__tls_server *server;
} tls_cache;

struct nea__tls_server {
    pthread_mutex_t lock;
    tls_cert *current;
    unsigned certs;    /* live certificates */
    size_t cert_bytes; /* their bytes */
    nea__tls_admit_fn admit;
    unsigned sessions;
    tls_cache cache;
    unsigned char store[]; /* sessions * SESSION_BYTES */
};

/* This connection's policy: asks the admit hook, pins the current
 * certificate, then hands over to BearSSL's single-key policy. */
typedef struct tls_policy {
    const br_ssl_server_policy_class *vtable;
    const br_ssl_server_policy_class **inner; /* set by choose */
} tls_policy;

struct nea__tls_conn {
    br_ssl_server_context sc;
    tls_policy policy;
    nea__tls_server *server;
    tls_cert *cert;         /* pinned from choose to the end of the handshake */
    unsigned char *records; /* NULL while parked */
    void *data;
    uint32_t body_left; /* bytes of the current record's body still to come */
    uint8_t hdr[5];     /* the current record header */
    uint8_t hdr_len;    /* its bytes received; 0 between records */
    uint8_t phase;      /* NEA__TLS_HANDSHAKE, _OPEN, _CLOSED or _FAILED */
    uint8_t reason;     /* nea__tls_reason, when FAILED */
    bool seen;          /* a byte arrived */
    bool full;          /* choose ran: a full handshake */
    bool shed;          /* the admit hook refused it */
    bool closing;       /* close_notify queued */
    bool peer_eof;      /* the stream ended between records: no more input */
    int detail;         /* BearSSL's error code */
};

/* --- Certificates ------------------------------------------------------------ */

/* memset that the compiler may not drop: secrets leave no copy behind. */
static void wipe(void *p, size_t n)
{
    memset(p, 0, n);
    __asm__ __volatile__("" : : "r"(p) : "memory");
}

NEA_PRINTF(3, 4) static int cert_error(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (errbuf != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errbuf, errlen, fmt, ap);
        va_end(ap);
    }
    return NEA_ETLS_CERT;
}

/* Reads a whole file (at most PEM_FILE_MAX bytes) into a heap block. */
static int read_file(const char *path, unsigned char **out, size_t *len, char *errbuf,
                     size_t errlen)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    size_t n;

    if (f == NULL) {
        return cert_error(errbuf, errlen, "cannot open %s: %s", path, strerror(errno));
    }
    buf = malloc(PEM_FILE_MAX);
    if (buf == NULL) {
        fclose(f);
        return UV_ENOMEM;
    }
    n = fread(buf, 1, PEM_FILE_MAX, f);
    if (ferror(f) || !feof(f)) {
        fclose(f);
        free(buf);
        return cert_error(errbuf, errlen, "cannot read %s (unreadable, or over 1 MiB)", path);
    }
    fclose(f);
    *out = buf;
    *len = n;
    return 0;
}

typedef struct pem_obj {
    char name[128];  /* BearSSL keeps at most 127 bytes of it */
    size_t off, len; /* of its DER in the output */
} pem_obj;

typedef struct pem_out {
    unsigned char *buf; /* NULL: count only */
    size_t cap, len;
} pem_out;

static void pem_append(void *ctx, const void *data, size_t n)
{
    pem_out *o = ctx;
    if (o->buf != NULL && n <= o->cap - o->len) {
        memcpy(o->buf + o->len, data, n);
    }
    o->len += n;
}

/* Decodes every PEM object of text, DER concatenated into out, one entry
 * per object in objs. Returns the object count, or -1 on a syntax error,
 * an unterminated object or more than PEM_OBJECTS_MAX objects. */
static int pem_decode(const unsigned char *text, size_t len, pem_out *out, pem_obj *objs)
{
    br_pem_decoder_context pc;
    const unsigned char *p = text;
    size_t left = len;
    bool tail = false, inside = false;
    int n = 0;

    br_pem_decoder_init(&pc);
    for (;;) {
        size_t used;
        if (left == 0) {
            if (tail) {
                break;
            }
            /* A last newline, so an END line at the very end is seen. */
            tail = true;
            p = (const unsigned char *)"\n";
            left = 1;
        }
        used = br_pem_decoder_push(&pc, p, left);
        p += used;
        left -= used;
        switch (br_pem_decoder_event(&pc)) {
        case BR_PEM_BEGIN_OBJ:
            if (n == PEM_OBJECTS_MAX) {
                return -1;
            }
            snprintf(objs[n].name, sizeof(objs[n].name), "%s", br_pem_decoder_name(&pc));
            objs[n].off = out->len;
            br_pem_decoder_setdest(&pc, pem_append, out);
            inside = true;
            break;
        case BR_PEM_END_OBJ:
            objs[n].len = out->len - objs[n].off;
            n++;
            inside = false;
            break;
        case BR_PEM_ERROR:
            return -1;
        default:
            break;
        }
    }
    return inside ? -1 : n;
}

/* Decodes text in two passes (count, then copy into one heap block). */
static int pem_load(const unsigned char *text, size_t len, pem_out *out, pem_obj *objs)
{
    int n;
    out->buf = NULL;
    out->cap = out->len = 0;
    n = pem_decode(text, len, out, objs);
    if (n <= 0) {
        return n;
    }
    out->cap = out->len;
    out->buf = malloc(out->cap);
    if (out->buf == NULL) {
        return -2;
    }
    out->len = 0;
    return pem_decode(text, len, out, objs);
}

static bool is_key_name(const char *name)
{
    return strcmp(name, "PRIVATE KEY") == 0 || strcmp(name, "RSA PRIVATE KEY") == 0 ||
           strcmp(name, "EC PRIVATE KEY") == 0;
}

/* The key's bytes, for the block's size. */
static size_t key_bytes(const br_skey_decoder_context *kd)
{
    if (br_skey_decoder_key_type(kd) == BR_KEYTYPE_EC) {
        return br_skey_decoder_get_ec(kd)->xlen;
    }
    const br_rsa_private_key *k = br_skey_decoder_get_rsa(kd);
    return k->plen + k->qlen + k->dplen + k->dqlen + k->iqlen;
}

static unsigned char *copy_out(unsigned char **dst, const unsigned char *src, size_t n)
{
    unsigned char *at = *dst;
    memcpy(at, src, n);
    *dst += n;
    return at;
}

/* Copies the key from the decoder into the block at *dst. */
static void key_copy(tls_cert *c, const br_skey_decoder_context *kd, unsigned char *dst)
{
    c->key_type = br_skey_decoder_key_type(kd);
    if (c->key_type == BR_KEYTYPE_EC) {
        const br_ec_private_key *k = br_skey_decoder_get_ec(kd);
        c->key.ec.curve = k->curve;
        c->key.ec.xlen = k->xlen;
        c->key.ec.x = copy_out(&dst, k->x, k->xlen);
        return;
    }
    const br_rsa_private_key *k = br_skey_decoder_get_rsa(kd);
    br_rsa_private_key *r = &c->key.rsa;
    r->n_bitlen = k->n_bitlen;
    r->plen = k->plen;
    r->p = copy_out(&dst, k->p, k->plen);
    r->qlen = k->qlen;
    r->q = copy_out(&dst, k->q, k->qlen);
    r->dplen = k->dplen;
    r->dp = copy_out(&dst, k->dp, k->dplen);
    r->dqlen = k->dqlen;
    r->dq = copy_out(&dst, k->dq, k->dqlen);
    r->iqlen = k->iqlen;
    r->iq = copy_out(&dst, k->iq, k->iqlen);
}

static const unsigned char *strip_zeros(const unsigned char *p, size_t *len)
{
    while (*len > 0 && *p == 0) {
        p++;
        (*len)--;
    }
    return p;
}

/* Whether the first certificate's public key is the private key's. */
static bool key_matches(const tls_cert *c, const char **why)
{
    br_x509_decoder_context xd;
    const br_x509_pkey *pk;

    br_x509_decoder_init(&xd, NULL, NULL);
    br_x509_decoder_push(&xd, c->chain[0].data, c->chain[0].data_len);
    pk = br_x509_decoder_get_pkey(&xd);
    if (br_x509_decoder_last_error(&xd) != 0 || pk == NULL) {
        *why = "the first certificate cannot be decoded";
        return false;
    }
    *why = "the private key does not belong to the first certificate";
    if (pk->key_type != c->key_type) {
        return false;
    }
    if (c->key_type == BR_KEYTYPE_EC) {
        unsigned char pub[BR_EC_KBUF_PUB_MAX_SIZE];
        br_ec_public_key mine;
        size_t n = br_ec_compute_pub(br_ec_get_default(), &mine, pub, &c->key.ec);
        return n != 0 && pk->key.ec.curve == c->key.ec.curve && pk->key.ec.qlen == n &&
               memcmp(pk->key.ec.q, pub, n) == 0;
    }
    unsigned char mod[RSA_BITS_MAX / 8];
    br_rsa_compute_modulus compute = br_rsa_compute_modulus_get_default();
    size_t n = compute(NULL, &c->key.rsa), theirs = pk->key.rsa.nlen;
    const unsigned char *a, *b;
    if (n == 0 || n > sizeof(mod) || compute(mod, &c->key.rsa) != n) {
        return false;
    }
    a = strip_zeros(mod, &n);
    b = strip_zeros(pk->key.rsa.n, &theirs);
    return n == theirs && memcmp(a, b, n) == 0;
}

/* Why a decoded key cannot be used, or NULL. */
static const char *key_unsupported(const br_skey_decoder_context *kd)
{
    if (br_skey_decoder_key_type(kd) == BR_KEYTYPE_EC) {
        int curve = br_skey_decoder_get_ec(kd)->curve;
        bool ok = curve == BR_EC_secp256r1 || curve == BR_EC_secp384r1 || curve == BR_EC_secp521r1;
        return ok ? NULL : "EC key on an unsupported curve (use P-256, P-384 or P-521)";
    }
    uint32_t bits = br_skey_decoder_get_rsa(kd)->n_bitlen;
    return bits >= 2048 && bits <= RSA_BITS_MAX
               ? NULL
               : "RSA key of an unsupported size (2048 to 4096 bits)";
}

/* Where a PEM text comes from: the file if named, else memory. */
static int source_text(const char *file, const void *mem, size_t mem_len, const char *what,
                       unsigned char **text, size_t *len, bool *owned, char *errbuf, size_t errlen)
{
    *owned = false;
    if (file != NULL) {
        *owned = true;
        return read_file(file, text, len, errbuf, errlen);
    }
    if (mem == NULL || mem_len == 0) {
        return cert_error(errbuf, errlen, "no TLS %s given (a file or PEM in memory)", what);
    }
    *text = (unsigned char *)(uintptr_t)mem;
    *len = mem_len;
    return 0;
}

static void text_done(unsigned char *text, size_t len, bool owned)
{
    if (owned) {
        wipe(text, len);
        free(text);
    }
}

/* Decodes the key PEM into kd. */
static int key_decode(const unsigned char *text, size_t len, br_skey_decoder_context *kd,
                      char *errbuf, size_t errlen)
{
    pem_obj objs[PEM_OBJECTS_MAX];
    pem_out der;
    int n = pem_load(text, len, &der, objs), rc = 0, i;

    if (n == -2) {
        return UV_ENOMEM;
    }
    if (n < 0) {
        free(der.buf);
        return cert_error(errbuf, errlen, "the TLS key is not valid PEM");
    }
    for (i = 0; i < n && !is_key_name(objs[i].name); i++) {
        if (strcmp(objs[i].name, "ENCRYPTED PRIVATE KEY") == 0) {
            break;
        }
    }
    if (i == n || !is_key_name(objs[i].name)) {
        rc = cert_error(errbuf, errlen, "%s",
                        i < n ? "the TLS key is encrypted (give it unencrypted)"
                              : "no private key in the TLS key PEM");
    } else {
        br_skey_decoder_init(kd);
        br_skey_decoder_push(kd, der.buf + objs[i].off, objs[i].len);
        if (br_skey_decoder_last_error(kd) != 0) {
            rc = cert_error(errbuf, errlen, "the TLS private key cannot be decoded");
        } else if (key_unsupported(kd) != NULL) {
            rc = cert_error(errbuf, errlen, "%s", key_unsupported(kd));
        }
    }
    if (der.buf != NULL) {
        wipe(der.buf, der.cap);
        free(der.buf);
    }
    return rc;
}

/* Builds one certificate block from the chain's DER objects and the key. */
static int cert_build(const pem_out *der, const pem_obj *objs, int n,
                      const br_skey_decoder_context *kd, tls_cert **out, char *errbuf,
                      size_t errlen)
{
    size_t certs = 0, der_bytes = 0, bytes;
    tls_cert *c;
    unsigned char *at;
    const char *why;

    for (int i = 0; i < n; i++) {
        if (strcmp(objs[i].name, "CERTIFICATE") == 0) {
            certs++;
            der_bytes += objs[i].len;
        }
    }
    if (certs == 0) {
        return cert_error(errbuf, errlen, "no CERTIFICATE in the TLS certificate PEM");
    }
    bytes = sizeof(*c) + certs * sizeof(br_x509_certificate) + der_bytes + key_bytes(kd);
    c = calloc(1, bytes);
    if (c == NULL) {
        return UV_ENOMEM;
    }
    c->bytes = bytes;
    c->chain = (br_x509_certificate *)(void *)c->data;
    at = c->data + certs * sizeof(br_x509_certificate);
    for (int i = 0; i < n; i++) {
        if (strcmp(objs[i].name, "CERTIFICATE") == 0) {
            c->chain[c->chain_len].data = copy_out(&at, der->buf + objs[i].off, objs[i].len);
            c->chain[c->chain_len].data_len = objs[i].len;
            c->chain_len++;
        }
    }
    key_copy(c, kd, at);
    if (!key_matches(c, &why)) {
        wipe(c, c->bytes);
        free(c);
        return cert_error(errbuf, errlen, "%s", why);
    }
    *out = c;
    return 0;
}

/* Loads the chain and key src names into one new block. */
static int cert_load(const nea_tls_cert *src, tls_cert **out, char *errbuf, size_t errlen)
{
    unsigned char *ctext = NULL, *ktext = NULL;
    size_t clen = 0, klen = 0;
    bool cown = false, kown = false;
    br_skey_decoder_context kd;
    pem_obj objs[PEM_OBJECTS_MAX];
    pem_out der = {NULL, 0, 0};
    int rc, n;

    rc = source_text(src->cert_file, src->cert_pem, src->cert_pem_len, "certificate", &ctext, &clen,
                     &cown, errbuf, errlen);
    if (rc == 0) {
        rc = source_text(src->key_file, src->key_pem, src->key_pem_len, "key", &ktext, &klen, &kown,
                         errbuf, errlen);
    }
    if (rc == 0) {
        rc = key_decode(ktext, klen, &kd, errbuf, errlen);
    }
    if (rc == 0) {
        n = pem_load(ctext, clen, &der, objs);
        if (n == -2) {
            rc = UV_ENOMEM;
        } else if (n < 0) {
            rc = cert_error(errbuf, errlen, "the TLS certificate is not valid PEM");
        } else {
            rc = cert_build(&der, objs, n, &kd, out, errbuf, errlen);
        }
    }
    free(der.buf);
    wipe(&kd, sizeof(kd));
    if (ktext != NULL) {
        text_done(ktext, klen, kown);
    }
    if (ctext != NULL) {
        text_done(ctext, clen, cown);
    }
    return rc;
}

static void cert_free(tls_cert *c)
{
    wipe(c, c->bytes);
    free(c);
}

static tls_cert *cert_acquire(nea__tls_server *s)
{
    tls_cert *c;
    pthread_mutex_lock(&s->lock);
    c = s->current;
    c->refs++;
    pthread_mutex_unlock(&s->lock);
    return c;
}

/* Drops one reference; frees the certificate after the last one. Call with
 * the lock held; returns the block to free once it is released. */
static tls_cert *cert_unref_locked(nea__tls_server *s, tls_cert *c)
{
    if (--c->refs > 0) {
        return NULL;
    }
    s->certs--;
    s->cert_bytes -= c->bytes;
    return c;
}

static void cert_release(nea__tls_server *s, tls_cert *c)
{
    tls_cert *dead;
    pthread_mutex_lock(&s->lock);
    dead = cert_unref_locked(s, c);
    pthread_mutex_unlock(&s->lock);
    if (dead != NULL) {
        cert_free(dead);
    }
}

/* --- The server -------------------------------------------------------------- */

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

size_t nea__tls_server_size(unsigned sessions)
{
    return NEA__ROUND_UP(sizeof(nea__tls_server) + (size_t)sessions * SESSION_BYTES, NEA__ALIGN);
}

int nea__tls_server_init(void *mem, unsigned sessions, const nea_tls_cert *cert,
                         nea__tls_admit_fn admit, nea__tls_server **out, char *errbuf,
                         size_t errlen)
{
    nea__tls_server *s = mem;
    tls_cert *c;
    int rc;

    if (mem == NULL || cert == NULL || out == NULL) {
        return UV_EINVAL;
    }
    rc = cert_load(cert, &c, errbuf, errlen);
    if (rc != 0) {
        return rc;
    }
    memset(s, 0, sizeof(*s));
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        cert_free(c);
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
    tls_cert *c, *dead;
    int rc;

    if (s == NULL || cert == NULL) {
        return UV_EINVAL;
    }
    rc = cert_load(cert, &c, errbuf, errlen);
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
        cert_free(dead);
    }
    return 0;
}

void nea__tls_server_destroy(nea__tls_server *s)
{
    if (s == NULL || s->current == NULL) {
        return;
    }
    cert_release(s, s->current);
    s->current = NULL;
    wipe(s->store, (size_t)s->sessions * SESSION_BYTES);
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

/* --- One connection: policy ---------------------------------------------------- */

static nea__tls_conn *conn_of(const br_ssl_server_policy_class **pctx)
{
    return (nea__tls_conn *)(void *)((char *)(void *)pctx - offsetof(nea__tls_conn, policy));
}

/* Runs once per full handshake, after the ClientHello and before any
 * public-key work: the place to refuse when overloaded, and the moment the
 * handshake takes the current certificate. */
static int policy_choose(const br_ssl_server_policy_class **pctx, const br_ssl_server_context *cc,
                         br_ssl_server_choices *choices)
{
    nea__tls_conn *c = conn_of(pctx);
    nea__tls_server *s = c->server;
    tls_cert *cert;

    if (s->admit != NULL && !s->admit(c->data)) {
        c->shed = true;
        return 0;
    }
    cert = cert_acquire(s);
    c->cert = cert;
    c->full = true;
    if (cert->key_type == BR_KEYTYPE_EC) {
        br_ssl_server_set_single_ec(&c->sc, cert->chain, cert->chain_len, &cert->key.ec,
                                    BR_KEYTYPE_SIGN, BR_KEYTYPE_EC, br_ec_get_default(),
                                    br_ecdsa_sign_asn1_get_default());
    } else {
        br_ssl_server_set_single_rsa(&c->sc, cert->chain, cert->chain_len, &cert->key.rsa,
                                     BR_KEYTYPE_SIGN, br_rsa_private_get_default(),
                                     br_rsa_pkcs1_sign_get_default());
    }
    /* set_single_* installed BearSSL's policy; keep it as the inner one. */
    c->policy.inner = c->sc.policy_vtable;
    br_ssl_server_set_policy(&c->sc, &c->policy.vtable);
    return (*c->policy.inner)->choose(c->policy.inner, cc, choices);
}

static uint32_t policy_keyx(const br_ssl_server_policy_class **pctx, unsigned char *data,
                            size_t *len)
{
    nea__tls_conn *c = conn_of(pctx);
    return c->policy.inner != NULL ? (*c->policy.inner)->do_keyx(c->policy.inner, data, len) : 0;
}

static size_t policy_sign(const br_ssl_server_policy_class **pctx, unsigned algo_id,
                          unsigned char *data, size_t hv_len, size_t len)
{
    nea__tls_conn *c = conn_of(pctx);
    return c->policy.inner != NULL
               ? (*c->policy.inner)->do_sign(c->policy.inner, algo_id, data, hv_len, len)
               : 0;
}

static const br_ssl_server_policy_class policy_class = {sizeof(tls_policy), policy_choose,
                                                        policy_keyx, policy_sign};

/* --- One connection: state ------------------------------------------------------ */

size_t nea__tls_conn_size(void)
{
    return NEA__ROUND_UP(sizeof(nea__tls_conn), NEA__ALIGN);
}

size_t nea__tls_records_size(void)
{
    return IN_SPAN + OUT_SPAN;
}

static void unpin(nea__tls_conn *c)
{
    if (c->cert != NULL) {
        cert_release(c->server, c->cert);
        c->cert = NULL;
    }
}

static bool live(const nea__tls_conn *c)
{
    return (c->phase & (NEA__TLS_CLOSED | NEA__TLS_FAILED)) == 0 && c->records != NULL;
}

static bool input_open(const nea__tls_conn *c)
{
    return live(c) && !c->peer_eof;
}

static void fail(nea__tls_conn *c, nea__tls_reason r, int detail)
{
    if ((c->phase & (NEA__TLS_CLOSED | NEA__TLS_FAILED)) != 0) {
        return;
    }
    c->phase = NEA__TLS_FAILED;
    c->reason = (uint8_t)r;
    c->detail = detail;
    unpin(c);
}

/* The reason behind a BearSSL error code. */
static nea__tls_reason reason_of_error(const nea__tls_conn *c, int err)
{
    if (c->shed) {
        return NEA__TLS_R_SHED;
    }
    if (err >= BR_ERR_SEND_FATAL_ALERT) {
        switch (err - BR_ERR_SEND_FATAL_ALERT) {
        case 40: /* handshake_failure: nothing in common */
            return NEA__TLS_R_NO_SHARED;
        case 70: /* protocol_version */
            return NEA__TLS_R_VERSION;
        case 100: /* no_renegotiation */
            return NEA__TLS_R_RENEGOTIATION;
        default:
            return NEA__TLS_R_HANDSHAKE;
        }
    }
    if (err >= BR_ERR_RECV_FATAL_ALERT) {
        return err - BR_ERR_RECV_FATAL_ALERT == 70 ? NEA__TLS_R_VERSION : NEA__TLS_R_PEER_ALERT;
    }
    switch (err) {
    case BR_ERR_UNSUPPORTED_VERSION:
    case BR_ERR_BAD_VERSION:
        return NEA__TLS_R_VERSION;
    case BR_ERR_BAD_CIPHER_SUITE:
        return NEA__TLS_R_NO_SHARED;
    case BR_ERR_TOO_LARGE:
        return NEA__TLS_R_RECORD_TOO_LARGE;
    case BR_ERR_BAD_LENGTH:
    case BR_ERR_BAD_MAC:
    case BR_ERR_UNKNOWN_TYPE:
        return NEA__TLS_R_BAD_RECORD;
    case BR_ERR_BAD_PARAM:
    case BR_ERR_BAD_STATE:
    case BR_ERR_NO_RANDOM:
        return NEA__TLS_R_INTERNAL;
    default:
        return NEA__TLS_R_HANDSHAKE;
    }
}

/* Brings phase up to date with BearSSL after every step. */
static void refresh(nea__tls_conn *c)
{
    unsigned st;
    if ((c->phase & (NEA__TLS_CLOSED | NEA__TLS_FAILED)) != 0 || c->records == NULL) {
        return;
    }
    st = br_ssl_engine_current_state(&c->sc.eng);
    if (st == BR_SSL_CLOSED) {
        int err = br_ssl_engine_last_error(&c->sc.eng);
        if (err == BR_ERR_OK) {
            c->phase = NEA__TLS_CLOSED;
            unpin(c);
        } else {
            fail(c, reason_of_error(c, err), err);
        }
        return;
    }
    if (c->phase == NEA__TLS_HANDSHAKE && (st & (BR_SSL_SENDAPP | BR_SSL_RECVAPP)) != 0) {
        c->phase = NEA__TLS_OPEN;
        unpin(c);
    }
}

/* What the very first byte says: a TLS handshake record starts with 22. */
static nea__tls_reason check_first(unsigned char b)
{
    if (b == CT_HANDSHAKE) {
        return NEA__TLS_R_NONE;
    }
    if (b >= 'A' && b <= 'Z') {
        return NEA__TLS_R_PLAIN_HTTP;
    }
    return (b & 0x80) != 0 ? NEA__TLS_R_VERSION : NEA__TLS_R_NOT_TLS; /* SSLv2-style hello */
}

static nea__tls_reason check_header(const nea__tls_conn *c)
{
    unsigned type = c->hdr[0], len = (unsigned)c->hdr[3] << 8 | c->hdr[4];
    if (c->hdr[1] != 3) {
        return c->phase == NEA__TLS_HANDSHAKE ? NEA__TLS_R_NOT_TLS : NEA__TLS_R_BAD_RECORD;
    }
    if (type < CT_CCS || type > CT_APPDATA) {
        return NEA__TLS_R_BAD_RECORD;
    }
    if (len > RECORD_BODY_MAX) {
        return NEA__TLS_R_RECORD_TOO_LARGE;
    }
    if (type == CT_HANDSHAKE && c->phase == NEA__TLS_OPEN) {
        return NEA__TLS_R_RENEGOTIATION;
    }
    return NEA__TLS_R_NONE;
}

/* Follows record boundaries over n received bytes (never more than BearSSL
 * asked for: the rest of one header or one body). */
static nea__tls_reason track(nea__tls_conn *c, const unsigned char *p, size_t n)
{
    while (n > 0) {
        if (c->body_left > 0) {
            size_t take = n < c->body_left ? n : c->body_left;
            c->body_left -= (uint32_t)take;
            p += take;
            n -= take;
            if (c->body_left == 0) {
                c->hdr_len = 0;
            }
            continue;
        }
        if (!c->seen) {
            nea__tls_reason r = check_first(*p);
            c->seen = true;
            if (r != NEA__TLS_R_NONE) {
                return r;
            }
        }
        c->hdr[c->hdr_len++] = *p++;
        n--;
        if (c->hdr_len == sizeof(c->hdr)) {
            nea__tls_reason r = check_header(c);
            if (r != NEA__TLS_R_NONE) {
                return r;
            }
            c->body_left = (uint32_t)c->hdr[3] << 8 | c->hdr[4];
            if (c->body_left == 0) {
                c->hdr_len = 0;
            }
        }
    }
    return NEA__TLS_R_NONE;
}

nea__tls_conn *nea__tls_conn_start(void *mem, nea__tls_server *s, void *records, void *data)
{
    nea__tls_conn *c = mem;
    br_ssl_engine_context *eng = &c->sc.eng;

    memset(c, 0, sizeof(*c));
    c->server = s;
    c->records = records;
    c->data = data;
    c->phase = NEA__TLS_HANDSHAKE;
    br_ssl_server_zero(&c->sc);
    br_ssl_engine_set_versions(eng, BR_TLS12, BR_TLS12);
    br_ssl_engine_set_suites(eng, suites, sizeof(suites) / sizeof(suites[0]));
    br_ssl_engine_set_hash(eng, br_sha256_ID, &br_sha256_vtable);
    br_ssl_engine_set_hash(eng, br_sha384_ID, &br_sha384_vtable);
    br_ssl_engine_set_prf_sha256(eng, &br_tls12_sha256_prf);
    br_ssl_engine_set_prf_sha384(eng, &br_tls12_sha384_prf);
    br_ssl_engine_set_default_aes_gcm(eng);
    br_ssl_engine_set_default_chapol(eng);
    br_ssl_engine_set_default_ec(eng);
    br_ssl_engine_add_flags(eng, BR_OPT_NO_RENEGOTIATION | BR_OPT_ENFORCE_SERVER_PREFERENCES);
    br_ssl_engine_set_protocol_names(eng, alpn_names, 1);
    br_ssl_engine_set_buffers_bidi(eng, c->records, IN_LEN, c->records + IN_SPAN, OUT_LEN);
    c->policy.vtable = &policy_class;
    br_ssl_server_set_policy(&c->sc, &c->policy.vtable);
    if (s->sessions > 0) {
        br_ssl_server_set_cache(&c->sc, &s->cache.vtable);
    }
    if (!br_ssl_server_reset(&c->sc)) {
        fail(c, NEA__TLS_R_INTERNAL, br_ssl_engine_last_error(eng));
    }
    return c;
}

void *nea__tls_conn_end(nea__tls_conn *c)
{
    void *records = c->records;
    unpin(c);
    wipe(c, sizeof(*c));
    return records;
}

unsigned nea__tls_status(const nea__tls_conn *c)
{
    const br_ssl_engine_context *eng = &c->sc.eng;
    unsigned s = c->phase;
    size_t n;

    if (c->records == NULL) {
        return s | NEA__TLS_PARKED | (c->peer_eof ? NEA__TLS_EOF : 0);
    }
    if ((s & (NEA__TLS_CLOSED | NEA__TLS_FAILED)) != 0) {
        return s;
    }
    if (c->peer_eof) {
        s |= NEA__TLS_EOF;
    } else if (br_ssl_engine_recvrec_buf(eng, &n) != NULL) {
        s |= NEA__TLS_RECV;
    }
    if (br_ssl_engine_recvapp_buf(eng, &n) != NULL) {
        s |= NEA__TLS_READ;
    }
    if (br_ssl_engine_sendapp_buf(eng, &n) != NULL) {
        s |= NEA__TLS_WRITE;
    }
    if (br_ssl_engine_sendrec_buf(eng, &n) != NULL) {
        s |= NEA__TLS_SEND;
    }
    return s;
}

nea__tls_reason nea__tls_reason_of(const nea__tls_conn *c)
{
    return (nea__tls_reason)c->reason;
}

int nea__tls_detail(const nea__tls_conn *c)
{
    return c->detail;
}

const char *nea__tls_alpn(const nea__tls_conn *c)
{
    if ((c->phase & (NEA__TLS_OPEN | NEA__TLS_CLOSED)) == 0) {
        return NULL;
    }
    return br_ssl_engine_get_selected_protocol((br_ssl_engine_context *)(uintptr_t)&c->sc.eng);
}

bool nea__tls_resumed(const nea__tls_conn *c)
{
    return (c->phase & (NEA__TLS_OPEN | NEA__TLS_CLOSED)) != 0 && !c->full;
}

unsigned char *nea__tls_recv_buf(nea__tls_conn *c, size_t *len)
{
    unsigned char *p = NULL;
    *len = 0;
    if (input_open(c)) {
        p = br_ssl_engine_recvrec_buf(&c->sc.eng, len);
    }
    if (p == NULL) {
        *len = 0;
    }
    return p;
}

void nea__tls_recv_ack(nea__tls_conn *c, size_t n)
{
    size_t room;
    unsigned char *p = nea__tls_recv_buf(c, &room);
    nea__tls_reason r;

    if (p == NULL || n == 0) {
        return;
    }
    r = track(c, p, n < room ? n : room);
    if (r != NEA__TLS_R_NONE) {
        fail(c, r, 0);
        return;
    }
    br_ssl_engine_recvrec_ack(&c->sc.eng, n < room ? n : room);
    refresh(c);
}

size_t nea__tls_feed(nea__tls_conn *c, const void *data, size_t len)
{
    const unsigned char *in = data;
    size_t done = 0;
    while (done < len) {
        size_t room, n;
        unsigned char *p = nea__tls_recv_buf(c, &room);
        if (p == NULL) {
            break;
        }
        n = len - done < room ? len - done : room;
        memcpy(p, in + done, n);
        nea__tls_recv_ack(c, n);
        done += n;
    }
    return done;
}

const unsigned char *nea__tls_read_buf(nea__tls_conn *c, size_t *len)
{
    const unsigned char *p = NULL;
    *len = 0;
    if (live(c)) {
        p = br_ssl_engine_recvapp_buf(&c->sc.eng, len);
    }
    if (p == NULL) {
        *len = 0;
    }
    return p;
}

void nea__tls_read_ack(nea__tls_conn *c, size_t n)
{
    if (live(c) && n > 0) {
        br_ssl_engine_recvapp_ack(&c->sc.eng, n);
        refresh(c);
    }
}

unsigned char *nea__tls_write_buf(nea__tls_conn *c, size_t *len)
{
    unsigned char *p = NULL;
    *len = 0;
    if (live(c) && !c->closing) {
        p = br_ssl_engine_sendapp_buf(&c->sc.eng, len);
    }
    if (p == NULL) {
        *len = 0;
    }
    return p;
}

void nea__tls_write_ack(nea__tls_conn *c, size_t n)
{
    if (live(c) && n > 0) {
        br_ssl_engine_sendapp_ack(&c->sc.eng, n);
        refresh(c);
    }
}

size_t nea__tls_write(nea__tls_conn *c, const void *data, size_t len)
{
    const unsigned char *in = data;
    size_t done = 0;
    while (done < len) {
        size_t room, n;
        unsigned char *p = nea__tls_write_buf(c, &room);
        if (p == NULL) {
            break;
        }
        n = len - done < room ? len - done : room;
        memcpy(p, in + done, n);
        nea__tls_write_ack(c, n);
        done += n;
    }
    return done;
}

void nea__tls_flush(nea__tls_conn *c)
{
    if (live(c)) {
        br_ssl_engine_flush(&c->sc.eng, 0);
        refresh(c);
    }
}

const unsigned char *nea__tls_send_buf(nea__tls_conn *c, size_t *len)
{
    const unsigned char *p = NULL;
    *len = 0;
    if (live(c)) {
        p = br_ssl_engine_sendrec_buf(&c->sc.eng, len);
    }
    if (p == NULL) {
        *len = 0;
    }
    return p;
}

void nea__tls_send_ack(nea__tls_conn *c, size_t n)
{
    if (live(c) && n > 0) {
        br_ssl_engine_sendrec_ack(&c->sc.eng, n);
        refresh(c);
    }
}

void nea__tls_close(nea__tls_conn *c)
{
    if (live(c) && !c->closing) {
        c->closing = true;
        br_ssl_engine_close(&c->sc.eng);
        refresh(c);
    }
}

void nea__tls_eof(nea__tls_conn *c)
{
    if ((c->phase & (NEA__TLS_CLOSED | NEA__TLS_FAILED)) != 0 || c->peer_eof) {
        return;
    }
    if (!c->seen) {
        c->phase = NEA__TLS_CLOSED;
        unpin(c);
    } else if (c->phase == NEA__TLS_OPEN && c->hdr_len == 0) {
        c->peer_eof = true; /* a half-close: what was received can still be read and answered */
    } else {
        fail(c, NEA__TLS_R_TRUNCATED, 0);
    }
}

void nea__tls_abort(nea__tls_conn *c, nea__tls_reason r)
{
    fail(c, r, 0);
}

/* Nothing buffered in either direction: BearSSL waits for the first byte
 * of a record header, has no plaintext to hand out, and its output record
 * is empty and not being sent (oxa == oxc < oxb). */
static bool connection_at_rest(const nea__tls_conn *c)
{
    const br_ssl_engine_context *e = &c->sc.eng;
    return e->ixa == 0 && e->ixb == 0 && c->hdr_len == 0 && e->oxa == e->oxc && e->oxb > e->oxa;
}

void *nea__tls_park(nea__tls_conn *c)
{
    void *records = c->records;
    if (c->phase != NEA__TLS_OPEN || c->closing || records == NULL || !connection_at_rest(c)) {
        return NULL;
    }
    c->records = NULL;
    c->sc.eng.ibuf = NULL;
    c->sc.eng.obuf = NULL;
    return records;
}

void nea__tls_unpark(nea__tls_conn *c, void *records)
{
    if (c->records != NULL || records == NULL) {
        return;
    }
    c->records = records;
    c->sc.eng.ibuf = c->records;
    c->sc.eng.obuf = c->records + IN_SPAN;
}

#else /* !NEA_HAVE_TLS: sizes 0, nothing starts */

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

size_t nea__tls_conn_size(void)
{
    return 0;
}

size_t nea__tls_records_size(void)
{
    return 0;
}

/* No connection can start without a server object, so these only keep the
 * callers free of conditional code: every one reports a failed connection. */
nea__tls_conn *nea__tls_conn_start(void *mem, nea__tls_server *s, void *records, void *data)
{
    (void)s;
    (void)records;
    (void)data;
    return mem;
}

void *nea__tls_conn_end(nea__tls_conn *c)
{
    (void)c;
    return NULL;
}

unsigned nea__tls_status(const nea__tls_conn *c)
{
    (void)c;
    return NEA__TLS_FAILED;
}

nea__tls_reason nea__tls_reason_of(const nea__tls_conn *c)
{
    (void)c;
    return NEA__TLS_R_INTERNAL;
}

int nea__tls_detail(const nea__tls_conn *c)
{
    (void)c;
    return 0;
}

const char *nea__tls_alpn(const nea__tls_conn *c)
{
    (void)c;
    return NULL;
}

bool nea__tls_resumed(const nea__tls_conn *c)
{
    (void)c;
    return false;
}

unsigned char *nea__tls_recv_buf(nea__tls_conn *c, size_t *len)
{
    (void)c;
    *len = 0;
    return NULL;
}

void nea__tls_recv_ack(nea__tls_conn *c, size_t n)
{
    (void)c;
    (void)n;
}

size_t nea__tls_feed(nea__tls_conn *c, const void *data, size_t len)
{
    (void)c;
    (void)data;
    (void)len;
    return 0;
}

const unsigned char *nea__tls_read_buf(nea__tls_conn *c, size_t *len)
{
    (void)c;
    *len = 0;
    return NULL;
}

void nea__tls_read_ack(nea__tls_conn *c, size_t n)
{
    (void)c;
    (void)n;
}

unsigned char *nea__tls_write_buf(nea__tls_conn *c, size_t *len)
{
    (void)c;
    *len = 0;
    return NULL;
}

void nea__tls_write_ack(nea__tls_conn *c, size_t n)
{
    (void)c;
    (void)n;
}

size_t nea__tls_write(nea__tls_conn *c, const void *data, size_t len)
{
    (void)c;
    (void)data;
    (void)len;
    return 0;
}

void nea__tls_flush(nea__tls_conn *c)
{
    (void)c;
}

const unsigned char *nea__tls_send_buf(nea__tls_conn *c, size_t *len)
{
    (void)c;
    *len = 0;
    return NULL;
}

void nea__tls_send_ack(nea__tls_conn *c, size_t n)
{
    (void)c;
    (void)n;
}

void nea__tls_close(nea__tls_conn *c)
{
    (void)c;
}

void nea__tls_eof(nea__tls_conn *c)
{
    (void)c;
}

void nea__tls_abort(nea__tls_conn *c, nea__tls_reason r)
{
    (void)c;
    (void)r;
}

void *nea__tls_park(nea__tls_conn *c)
{
    (void)c;
    return NULL;
}

void nea__tls_unpark(nea__tls_conn *c, void *records)
{
    (void)c;
    (void)records;
}

#endif /* NEA_HAVE_TLS */
