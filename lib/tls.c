/*
 * tls.c - one TLS connection's engine, on BearSSL: the server side of a
 * TLS 1.2 handshake and its records, in memory the caller provides, with
 * the certificate and session cache its server shares (tlsserver.c).
 * docs/tls.md says why BearSSL (it never allocates, and takes every buffer
 * from the caller) and what it costs.
 *
 * Invariants:
 *  - Nothing here allocates. A connection is one nea__tls_conn (BearSSL's
 *    server context inside) plus one record block: input IN_LEN bytes,
 *    then output OUT_LEN bytes. IN_LEN is the largest record the offered
 *    suites can send (AEAD only: 16384 bytes of payload, an 8-byte explicit
 *    nonce and a 16-byte tag, behind a 5-byte header); OUT_LEN is what
 *    BearSSL needs for 2048-byte records.
 *  - A handshake pins its server's current certificate from the
 *    ClientHello (policy_choose) until it is done or fails, never longer.
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
#include "tlscert.h"

#include <stdint.h>
#include <string.h>

#if NEA_HAVE_TLS

#define IN_LEN (5 + 16384 + 8 + 16)
#define OUT_LEN (2048 + 85)
#define IN_SPAN NEA__ROUND_UP((size_t)IN_LEN, NEA__ALIGN)
#define OUT_SPAN NEA__ROUND_UP((size_t)OUT_LEN, NEA__ALIGN)
#define RECORD_BODY_MAX (16384 + 8 + 16) /* the longest record body any offered suite sends */

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
    nea__tls_cert *cert;    /* pinned from choose to the end of the handshake */
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
    nea__tls_cert *cert;

    if (!nea__tls_server_admits(s, c->data)) {
        c->shed = true;
        return 0;
    }
    cert = nea__tls_server_pin(s);
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
        nea__tls_server_unpin(c->server, c->cert);
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

/* The reason behind a BearSSL error code: refused by the admit hook, or
 * what the code says. */
static nea__tls_reason reason_of_error(const nea__tls_conn *c, int err)
{
    return c->shed ? NEA__TLS_R_SHED : nea__tls_reason_of_error(err);
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
    const br_ssl_session_cache_class **cache;

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
    cache = nea__tls_server_cache(s);
    if (cache != NULL) {
        br_ssl_server_set_cache(&c->sc, cache);
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
    nea__tls_wipe(c, sizeof(*c));
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

static unsigned char *nea__tls_write_buf(nea__tls_conn *c, size_t *len)
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

static void nea__tls_write_ack(nea__tls_conn *c, size_t n)
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

#else /* !NEA_HAVE_TLS: size 0, nothing starts */

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
