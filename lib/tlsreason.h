/*
 * tlsreason.h - why a TLS connection failed: the reasons, counted per
 * reason in nea_stats.tls_failed and logged by name, and the TLS library's
 * error codes mapped to them (see tlsreason.c).
 */
#ifndef NEA_TLSREASON_H
#define NEA_TLSREASON_H

#include "nea.h"

/* Why a TLS connection failed: counted per reason, logged by name. */
typedef enum nea__tls_reason {
    NEA__TLS_R_NONE = 0,
    NEA__TLS_R_PLAIN_HTTP,       /* "plain_http": an HTTP request sent to the TLS port */
    NEA__TLS_R_NOT_TLS,          /* "not_tls": the first bytes are no TLS handshake record */
    NEA__TLS_R_VERSION,          /* "version": no TLS 1.2 in common (a TLS 1.3-only client,
                                    SSL 3.0, an SSLv2-style hello) */
    NEA__TLS_R_NO_SHARED,        /* "no_shared": no cipher suite, curve or signature hash in
                                    common with the certificate */
    NEA__TLS_R_HANDSHAKE,        /* "handshake": a malformed or out-of-order handshake */
    NEA__TLS_R_RECORD_TOO_LARGE, /* "record_too_large": a record longer than TLS allows for
                                    the suites offered, so longer than the input buffer */
    NEA__TLS_R_BAD_RECORD,       /* "bad_record": a record that fails authentication, or of
                                    an unknown type or bad length */
    NEA__TLS_R_RENEGOTIATION,    /* "renegotiation": a handshake message after the handshake
                                    (renegotiation is refused) */
    NEA__TLS_R_PEER_ALERT,       /* "peer_alert": the client sent a fatal alert (for example
                                    it does not trust the certificate) */
    NEA__TLS_R_TRUNCATED,        /* "truncated": the stream ended inside the handshake or a
                                    record */
    NEA__TLS_R_SHED,             /* "shed": a full handshake refused before its public-key
                                    work because the admit hook said no */
    NEA__TLS_R_TIMEOUT,          /* "timeout": the caller's handshake deadline
                                    (nea__tls_abort) */
    NEA__TLS_R_INTERNAL,         /* "internal": the engine could not start (no randomness) */
    NEA__TLS_R_COUNT
} nea__tls_reason;

/* Short stable name of a reason ("plain_http", ...), for logs and metrics. */
const char *nea__tls_reason_name(nea__tls_reason r);

#if NEA_HAVE_TLS
/* The reason behind an error code of BearSSL's engine (br_ssl_engine_last_error). */
nea__tls_reason nea__tls_reason_of_error(int err);
#endif

#endif /* NEA_TLSREASON_H */
