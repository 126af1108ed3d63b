/*
 * tlscert.c - a certificate chain and its private key, from PEM (files or
 * memory) to the one heap block a TLS server hands BearSSL: the PEM
 * decoded, the key checked (an EC key on P-256, P-384 or P-521, or RSA of
 * 2048 to 4096 bits, unencrypted) and matched against the first
 * certificate, chain and key copied into a block of their own.
 *
 * Invariants: a certificate is one calloc'd block (nea__tls_cert, the
 * chain's entries, their DER, the key material), made only when a server
 * starts or reloads, never per connection; every buffer that held key
 * material (the file's text, the decoded DER, the decoder) is wiped before
 * it is freed, and so is the block; a load that fails leaves nothing
 * allocated and says why in the caller's errbuf. Who holds a certificate
 * and when it is freed is the server's business (tlsserver.c).
 */
#include "tlscert.h"

#if NEA_HAVE_TLS

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PEM_FILE_MAX ((size_t)1 << 20)
#define PEM_OBJECTS_MAX 16
#define RSA_BITS_MAX 4096 /* BearSSL's largest RSA key */

void nea__tls_wipe(void *p, size_t n)
{
    memset(p, 0, n);
    __asm__ __volatile__("" : : "r"(p) : "memory");
}

/* Reads a whole file (at most PEM_FILE_MAX bytes) into a heap block. */
static int read_file(const char *path, unsigned char **out, size_t *len, char *errbuf,
                     size_t errlen)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    size_t n;

    if (f == NULL) {
        return nea__refuse(NEA_ETLS_CERT, errbuf, errlen, "cannot open %s: %s", path,
                           strerror(errno));
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
        return nea__refuse(NEA_ETLS_CERT, errbuf, errlen,
                           "cannot read %s (unreadable, or over 1 MiB)", path);
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
static void key_copy(nea__tls_cert *c, const br_skey_decoder_context *kd, unsigned char *dst)
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
static bool key_matches(const nea__tls_cert *c, const char **why)
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
        return nea__refuse(NEA_ETLS_CERT, errbuf, errlen,
                           "no TLS %s given (a file or PEM in memory)", what);
    }
    *text = (unsigned char *)(uintptr_t)mem;
    *len = mem_len;
    return 0;
}

static void text_done(unsigned char *text, size_t len, bool owned)
{
    if (owned) {
        nea__tls_wipe(text, len);
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
        return nea__refuse(NEA_ETLS_CERT, errbuf, errlen, "the TLS key is not valid PEM");
    }
    for (i = 0; i < n && !is_key_name(objs[i].name); i++) {
        if (strcmp(objs[i].name, "ENCRYPTED PRIVATE KEY") == 0) {
            break;
        }
    }
    if (i == n || !is_key_name(objs[i].name)) {
        rc = nea__refuse(NEA_ETLS_CERT, errbuf, errlen, "%s",
                         i < n ? "the TLS key is encrypted (give it unencrypted)"
                               : "no private key in the TLS key PEM");
    } else {
        br_skey_decoder_init(kd);
        br_skey_decoder_push(kd, der.buf + objs[i].off, objs[i].len);
        if (br_skey_decoder_last_error(kd) != 0) {
            rc =
                nea__refuse(NEA_ETLS_CERT, errbuf, errlen, "the TLS private key cannot be decoded");
        } else if (key_unsupported(kd) != NULL) {
            rc = nea__refuse(NEA_ETLS_CERT, errbuf, errlen, "%s", key_unsupported(kd));
        }
    }
    if (der.buf != NULL) {
        nea__tls_wipe(der.buf, der.cap);
        free(der.buf);
    }
    return rc;
}

/* Builds one certificate block from the chain's DER objects and the key. */
static int cert_build(const pem_out *der, const pem_obj *objs, int n,
                      const br_skey_decoder_context *kd, nea__tls_cert **out, char *errbuf,
                      size_t errlen)
{
    size_t certs = 0, der_bytes = 0, bytes;
    nea__tls_cert *c;
    unsigned char *at;
    const char *why;

    for (int i = 0; i < n; i++) {
        if (strcmp(objs[i].name, "CERTIFICATE") == 0) {
            certs++;
            der_bytes += objs[i].len;
        }
    }
    if (certs == 0) {
        return nea__refuse(NEA_ETLS_CERT, errbuf, errlen,
                           "no CERTIFICATE in the TLS certificate PEM");
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
        nea__tls_wipe(c, c->bytes);
        free(c);
        return nea__refuse(NEA_ETLS_CERT, errbuf, errlen, "%s", why);
    }
    *out = c;
    return 0;
}

int nea__tls_cert_load(const nea_tls_cert *src, nea__tls_cert **out, char *errbuf, size_t errlen)
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
            rc = nea__refuse(NEA_ETLS_CERT, errbuf, errlen, "the TLS certificate is not valid PEM");
        } else {
            rc = cert_build(&der, objs, n, &kd, out, errbuf, errlen);
        }
    }
    free(der.buf);
    nea__tls_wipe(&kd, sizeof(kd));
    if (ktext != NULL) {
        text_done(ktext, klen, kown);
    }
    if (ctext != NULL) {
        text_done(ctext, clen, cown);
    }
    return rc;
}

void nea__tls_cert_free(nea__tls_cert *c)
{
    nea__tls_wipe(c, c->bytes);
    free(c);
}

#else /* !NEA_HAVE_TLS: nothing to load (tlsserver.c refuses every certificate) */

typedef int nea__tls_cert_none; /* ISO C wants a declaration in every file */

#endif /* NEA_HAVE_TLS */
