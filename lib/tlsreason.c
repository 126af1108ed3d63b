/*
 * tlsreason.c - why a TLS connection failed: each reason's stable name
 * (the label of nea_tls_failures_total, the word in the log line, what
 * nea_tls_reason_name returns), and the mapping from BearSSL's error codes,
 * its own and the alerts sent or received, to those reasons.
 *
 * Invariants: names never change once released (dashboards and alerts are
 * written against them); every reason but NEA__TLS_R_NONE has one; the
 * reasons fit nea_stats.tls_failed. The mapping is total: a code it does
 * not know is a failed handshake.
 */
#include "tlsreason.h"

#include <stddef.h>

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

nea__tls_reason nea__tls_reason_of_error(int err)
{
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

#endif /* NEA_HAVE_TLS */
