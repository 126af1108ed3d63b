/*
 * tlsserver.h - what every connection of one HTTPS server shares: the
 * certificate (swappable while serving), the session cache and the admit
 * hook (see tlsserver.c). No socket, no loop; the object lives in memory
 * the caller provides (the reservation), certificates on the heap.
 */
#ifndef NEA_TLSSERVER_H
#define NEA_TLSSERVER_H

#include "nea.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct nea__tls_server nea__tls_server;

/* Called at the start of every full handshake, before any public-key work,
 * with the data given to nea__tls_conn_start: nonzero admits it, zero
 * refuses it (reason NEA__TLS_R_SHED). Resumed handshakes (no public-key
 * work) are not asked. Runs on the connection's thread. */
typedef int (*nea__tls_admit_fn)(void *conn_data);

/* Bytes of a server object with a cache of `sessions` resumable sessions
 * (0: no resumption). 0 without TLS support. */
size_t nea__tls_server_size(unsigned sessions);

/* Builds a server object in mem (nea__tls_server_size(sessions) bytes,
 * NEA__ALIGN-aligned) with the certificate chain and key of cert (PEM files
 * or memory). admit may be NULL (admit all). Returns 0 and *out, or
 * NEA_ETLS_CERT (the reason in errbuf: unreadable file, no certificate, no
 * key or an unsupported one, key and certificate that do not match),
 * NEA_ENOTLS (built without TLS), UV_EINVAL, UV_ENOMEM. Allocates the
 * certificate from the heap; nothing else. */
int nea__tls_server_init(void *mem, unsigned sessions, const nea_tls_cert *cert,
                         nea__tls_admit_fn admit, nea__tls_server **out, char *errbuf,
                         size_t errlen);

/* Loads cert and makes it the certificate of every handshake that starts
 * from now on; handshakes in progress finish with the certificate they
 * began with, established connections are not affected. On error nothing
 * changes. Errors as nea__tls_server_init. Any thread. */
int nea__tls_server_reload(nea__tls_server *s, const nea_tls_cert *cert, char *errbuf,
                           size_t errlen);

/* Frees the certificates. Every connection must have ended first. */
void nea__tls_server_destroy(nea__tls_server *s);

/* Certificates still allocated (the current one and any that handshakes in
 * progress hold), and their bytes. Any thread. */
unsigned nea__tls_server_certs(nea__tls_server *s, size_t *bytes);

#if NEA_HAVE_TLS
/* For one connection's engine (tls.c), from the thread it runs on. */

typedef struct nea__tls_cert nea__tls_cert; /* tlscert.h */
struct br_ssl_session_cache_class_;         /* BearSSL's br_ssl_session_cache_class */

/* Whether the admit hook lets a full handshake go on (no hook: yes). */
bool nea__tls_server_admits(nea__tls_server *s, void *conn_data);
/* The current certificate, held for a handshake until unpinned. */
nea__tls_cert *nea__tls_server_pin(nea__tls_server *s);
/* Lets go of a pinned certificate; the last holder of one that is no
 * longer current frees it. */
void nea__tls_server_unpin(nea__tls_server *s, nea__tls_cert *c);
/* The shared session cache to give a connection's engine, or NULL when
 * the server keeps no sessions. */
const struct br_ssl_session_cache_class_ **nea__tls_server_cache(nea__tls_server *s);
#endif

#endif /* NEA_TLSSERVER_H */
