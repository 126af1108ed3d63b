/*
 * tlscert.h - a certificate chain and its private key, loaded from PEM
 * into one heap block (see tlscert.c). BearSSL's types show here: only the
 * TLS files include it (tlsserver.c holds certificates, tls.c hands them
 * to a handshake).
 */
#ifndef NEA_TLSCERT_H
#define NEA_TLSCERT_H

#include "common.h"

#if NEA_HAVE_TLS

#include <bearssl.h>

/* One certificate chain and its key, in one heap block. */
typedef struct nea__tls_cert {
    unsigned refs; /* its server's count (tlsserver.c), under the server's lock */
    int key_type;  /* BR_KEYTYPE_EC or BR_KEYTYPE_RSA */
    br_x509_certificate *chain;
    size_t chain_len;
    union {
        br_ec_private_key ec;
        br_rsa_private_key rsa;
    } key;
    size_t bytes;         /* of the whole block */
    unsigned char data[]; /* chain entries, DER, then key material */
} nea__tls_cert;

/* Loads the chain and key src names (PEM files, else PEM in memory) into
 * one new block, refs 0. Returns 0 and *out, NEA_ETLS_CERT with the reason
 * in errbuf (unreadable, not PEM, no certificate, no key, an encrypted or
 * unsupported key, a key that is not the first certificate's), or
 * UV_ENOMEM. */
int nea__tls_cert_load(const nea_tls_cert *src, nea__tls_cert **out, char *errbuf, size_t errlen);
/* Wipes and frees the block. */
void nea__tls_cert_free(nea__tls_cert *c);
/* memset that the compiler may not drop: secrets leave no copy behind. */
void nea__tls_wipe(void *p, size_t n);

#endif /* NEA_HAVE_TLS */

#endif /* NEA_TLSCERT_H */
