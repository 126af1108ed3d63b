/*
 * fuzz_tls.c - libFuzzer target for the TLS engine's input side (lib/tls.c):
 * record tracking, the checks before BearSSL sees a byte, the handshake up
 * to the ClientHello and beyond, and - after a real handshake with a BearSSL
 * client in this process - records, renegotiation attempts, plaintext
 * handed out in pieces, parking between requests and closing.
 *
 * One server object lives for the whole process, with an EC P-256
 * certificate made by the openssl command on the first input (in a
 * temporary directory, removed at exit). Each input is one connection: a
 * state block and a record block of the sizes the engine asks for.
 *
 * Input layout: byte 0 is flags, the rest is what the client sends.
 *   bits 0-1  how the bytes are cut: whole, 1-byte, 7-byte or 61-byte pieces;
 *             even pieces go in through recv_buf/recv_ack, odd ones through
 *             nea__tls_feed
 *   bit 2     first a real handshake and one request from the in-process
 *             client; then the bytes go in ...
 *   bit 3     ... (with bit 2) as application data through that client
 *             (encrypted), otherwise raw, as the client's next records
 *   bit 4     plaintext is taken one byte at a time (backpressure)
 *   bit 5     park the record block whenever the connection is idle
 *   bit 6     the admit hook refuses full handshakes
 *   bit 7     the server sends close_notify before the stream ends
 *
 * Checked after every step (abort() on violation): exactly one phase;
 * FAILED exactly when there is a reason; an ended or parked connection
 * offers no buffer; no buffer larger than the record block; ALPN, once
 * open, is "http/1.1" or none. At the end of each input: the stream's end
 * leaves it CLOSED, FAILED or half-closed (OPEN with NEA__TLS_EOF, taking
 * no more input), nea__tls_conn_end hands back the block it
 * holds, and only the server's current certificate is alive.
 *
 * Seeds (corpus_tls/): ClientHellos captured from python3's ssl module
 * (OpenSSL 3.0) through a MemoryBIO - TLS 1.2 only, TLS 1.3 only, either -
 * whole, cut and truncated, and refused by the admit hook; plain HTTP; an
 * SSLv2-style hello; appdata_* (a real handshake, then requests as
 * application data, parked, read a byte at a time, closed by the server);
 * raw_* (a real handshake, then raw records: a renegotiation, an oversized
 * record, one that fails authentication, a close_notify, an unknown type).
 *
 * Built with clang and -fsanitize=fuzzer (test/fuzz/CMakeLists.txt, target
 * fuzz_tls), and with any compiler together with replay.c (fuzz_replay_tls,
 * run by ctest over corpus_tls/ and regressions_tls/).
 */
#include "common.h"
#include "tls.h"

#include <bearssl.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define STATE_MAX 8192
#define RECORDS_MAX 20480

static alignas(16) unsigned char server_mem[4096];
static alignas(16) unsigned char state_mem[STATE_MAX];
static alignas(16) unsigned char records_mem[RECORDS_MAX];
static nea__tls_server *server;
static char dir[64];
static int admit_answer = 1;
static bool verbose; /* FUZZ_TLS_VERBOSE set: one line per input on stderr */

/* The in-process client: BearSSL, trusting the server's key as known. */
static br_ssl_client_context client;
static br_x509_minimal_context minimal; /* what init_full wants; replaced by known */
static br_x509_knownkey_context known;
static unsigned char client_buf[BR_SSL_BUFSIZE_BIDI];
static unsigned char pub_q[BR_EC_KBUF_PUB_MAX_SIZE];
static br_ec_public_key pub;

static const char *client_alpn[] = {"http/1.1"};

/* The response the server gives each complete request head. */
static const char response[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_tls: invariant violated: %s\n", what);
        abort();
    }
}

static void remove_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "fuzz_tls: could not remove %s\n", dir);
    }
}

static unsigned char der[4096];
static size_t der_len;

static void der_append(void *ctx, const void *p, size_t n)
{
    (void)ctx;
    check(der_len + n <= sizeof(der), "certificate fits");
    memcpy(der + der_len, p, n);
    der_len += n;
}

/* The certificate's public key, for the client's known-key trust. */
static void load_public_key(const char *path)
{
    static char text[8192];
    br_pem_decoder_context pc;
    br_x509_decoder_context xd;
    const br_x509_pkey *pk;
    FILE *f = fopen(path, "rb");
    size_t n, off = 0;

    check(f != NULL, "certificate readable");
    n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    br_pem_decoder_init(&pc);
    while (off < n) {
        off += br_pem_decoder_push(&pc, text + off, n - off);
        if (br_pem_decoder_event(&pc) == BR_PEM_BEGIN_OBJ) {
            br_pem_decoder_setdest(&pc, der_append, NULL);
        }
    }
    br_x509_decoder_init(&xd, NULL, NULL);
    br_x509_decoder_push(&xd, der, der_len);
    pk = br_x509_decoder_get_pkey(&xd);
    check(pk != NULL && pk->key_type == BR_KEYTYPE_EC, "an EC certificate");
    memcpy(pub_q, pk->key.ec.q, pk->key.ec.qlen);
    pub.curve = pk->key.ec.curve;
    pub.q = pub_q;
    pub.qlen = pk->key.ec.qlen;
}

static int admit(void *data)
{
    (void)data;
    return admit_answer;
}

static void setup(void)
{
    char cmd[512], crt[96], key[96], err[256];
    nea_tls_cert cert = {0};

    snprintf(dir, sizeof(dir), "/tmp/nea-fuzz-tls-XXXXXX");
    check(mkdtemp(dir) != NULL, "temporary directory");
    atexit(remove_dir);
    snprintf(cmd, sizeof(cmd),
             "cd %s && openssl ecparam -name prime256v1 -genkey -noout -out k.pem 2>/dev/null && "
             "openssl req -x509 -new -key k.pem -subj /CN=fuzz -days 2 -out c.pem 2>/dev/null",
             dir);
    check(system(cmd) == 0, "openssl made the certificate");
    snprintf(crt, sizeof(crt), "%s/c.pem", dir);
    snprintf(key, sizeof(key), "%s/k.pem", dir);
    cert.cert_file = crt;
    cert.key_file = key;
    check(nea__tls_server_size(8) <= sizeof(server_mem), "server fits");
    check(nea__tls_conn_size() <= STATE_MAX, "state fits");
    check(nea__tls_records_size() <= RECORDS_MAX, "records fit");
    check(nea__tls_server_init(server_mem, 8, &cert, admit, &server, err, sizeof(err)) == 0, err);
    load_public_key(crt);
    verbose = getenv("FUZZ_TLS_VERBOSE") != NULL;
}

/* --- One connection ---------------------------------------------------------------- */

typedef struct run {
    nea__tls_conn *c;
    unsigned flags;
    bool parked;     /* the block is ours, not the engine's */
    char head[2048]; /* plaintext received since the last answered head */
    size_t head_len;
    bool with_client;  /* the in-process client is connected */
    unsigned answered; /* request heads answered */
} run;

static void check_state(run *r)
{
    unsigned st = nea__tls_status(r->c);
    unsigned phase = st & (NEA__TLS_HANDSHAKE | NEA__TLS_OPEN | NEA__TLS_CLOSED | NEA__TLS_FAILED);
    unsigned io = NEA__TLS_RECV | NEA__TLS_READ | NEA__TLS_WRITE | NEA__TLS_SEND;
    nea__tls_reason why = nea__tls_reason_of(r->c);
    size_t n;

    check(phase != 0 && (phase & (phase - 1)) == 0, "exactly one phase");
    check(((st & NEA__TLS_FAILED) != 0) == (why != NEA__TLS_R_NONE), "FAILED iff a reason");
    check((unsigned)why < NEA__TLS_R_COUNT, "a known reason");
    if ((st & (NEA__TLS_CLOSED | NEA__TLS_FAILED | NEA__TLS_PARKED)) != 0) {
        check((st & io) == 0, "an ended or parked connection offers no buffer");
    }
    check(((st & NEA__TLS_PARKED) != 0) == r->parked, "parked as we think");
    if (nea__tls_recv_buf(r->c, &n) != NULL) {
        check(n > 0 && n <= nea__tls_records_size(), "input room within the block");
    }
    if ((st & NEA__TLS_OPEN) != 0 && nea__tls_alpn(r->c) != NULL) {
        check(strcmp(nea__tls_alpn(r->c), "http/1.1") == 0, "ALPN http/1.1");
    }
}

/* The server side of the application: take plaintext, answer heads. */
static void serve(run *r)
{
    const unsigned char *p;
    size_t n;

    while ((p = nea__tls_read_buf(r->c, &n)) != NULL) {
        size_t take = (r->flags & 0x10) != 0 ? 1 : n;
        if (r->head_len + take > sizeof(r->head)) {
            r->head_len = 0;
        }
        memcpy(r->head + r->head_len, p, take);
        r->head_len += take;
        nea__tls_read_ack(r->c, take);
        check_state(r);
        for (size_t i = 0; i + 3 < r->head_len;) {
            if (memcmp(r->head + i, "\r\n\r\n", 4) != 0) {
                i++;
                continue;
            }
            (void)nea__tls_write(r->c, response, sizeof(response) - 1);
            nea__tls_flush(r->c);
            memmove(r->head, r->head + i + 4, r->head_len - (i + 4));
            r->head_len -= i + 4;
            i = 0;
            r->answered++;
            check_state(r);
        }
    }
}

/* Moves ciphertext between the server and the in-process client (or drops
 * the server's when there is none) until neither side moves. */
static void shuttle(run *r)
{
    bool moved = true;
    while (moved) {
        const unsigned char *p;
        unsigned char *q;
        size_t n, room;
        moved = false;
        serve(r);
        p = nea__tls_send_buf(r->c, &n);
        if (p != NULL) {
            if (r->with_client) {
                q = br_ssl_engine_recvrec_buf(&client.eng, &room);
                if (q == NULL) {
                    break;
                }
                n = n < room ? n : room;
                memcpy(q, p, n);
                br_ssl_engine_recvrec_ack(&client.eng, n);
            }
            nea__tls_send_ack(r->c, n);
            moved = true;
        }
        if (r->with_client) {
            p = br_ssl_engine_sendrec_buf(&client.eng, &n);
            if (p != NULL) {
                size_t took = nea__tls_feed(r->c, p, n);
                if (took > 0) {
                    br_ssl_engine_sendrec_ack(&client.eng, took);
                    moved = true;
                }
            }
            /* The client drops what the server says after the handshake. */
            if (br_ssl_engine_recvapp_buf(&client.eng, &n) != NULL) {
                br_ssl_engine_recvapp_ack(&client.eng, n);
                moved = true;
            }
        }
        check_state(r);
    }
}

/* Parks when idle (flag bit 5), and unparks before more input. */
static void maybe_park(run *r)
{
    if ((r->flags & 0x20) != 0 && !r->parked) {
        void *b = nea__tls_park(r->c);
        if (b != NULL) {
            check(b == records_mem, "park hands back our block");
            r->parked = true;
        }
    }
}

static void unpark(run *r)
{
    if (r->parked) {
        nea__tls_unpark(r->c, records_mem);
        r->parked = false;
    }
}

/* Sends piece as the client's bytes: raw into the server. */
static void feed_piece(run *r, const uint8_t *p, size_t n, unsigned index)
{
    unpark(r);
    check_state(r);
    while (n > 0) {
        size_t took;
        if (index % 2 == 0) {
            size_t room;
            unsigned char *q = nea__tls_recv_buf(r->c, &room);
            if (q == NULL) {
                break;
            }
            took = n < room ? n : room;
            memcpy(q, p, took);
            nea__tls_recv_ack(r->c, took);
        } else {
            took = nea__tls_feed(r->c, p, n);
            if (took == 0) {
                break;
            }
        }
        p += took;
        n -= took;
        check_state(r);
        shuttle(r);
    }
    shuttle(r);
    maybe_park(r);
}

/* Sends piece through the client as application data. */
static void send_piece(run *r, const uint8_t *p, size_t n)
{
    unpark(r);
    while (n > 0) {
        size_t room;
        unsigned char *q = br_ssl_engine_sendapp_buf(&client.eng, &room);
        if (q == NULL) {
            break;
        }
        room = n < room ? n : room;
        memcpy(q, p, room);
        br_ssl_engine_sendapp_ack(&client.eng, room);
        br_ssl_engine_flush(&client.eng, 0);
        p += room;
        n -= room;
        shuttle(r);
    }
    shuttle(r);
    maybe_park(r);
}

/* A real handshake and one request from the in-process client. */
static void handshake(run *r)
{
    static const char get[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    br_ssl_client_init_full(&client, &minimal, NULL, 0);
    br_x509_knownkey_init_ec(&known, &pub, BR_KEYTYPE_SIGN);
    br_ssl_engine_set_x509(&client.eng, &known.vtable);
    br_ssl_engine_set_buffer(&client.eng, client_buf, sizeof(client_buf), 1);
    br_ssl_engine_set_protocol_names(&client.eng, client_alpn, 1);
    check(br_ssl_client_reset(&client, "fuzz", 0) == 1, "client starts");
    r->with_client = true;
    shuttle(r);
    send_piece(r, (const uint8_t *)get, sizeof(get) - 1);
}

static const size_t piece_sizes[4] = {0, 1, 7, 61};

/* Called once per input; usage: see the top of this file. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run r;
    size_t step;
    unsigned index = 0;
    unsigned char *back;

    if (server == NULL) {
        setup();
    }
    if (size == 0) {
        return 0;
    }
    memset(&r, 0, sizeof(r));
    r.flags = data[0];
    data++;
    size--;
    admit_answer = (r.flags & 0x40) == 0;
    r.c = nea__tls_conn_start(state_mem, server, records_mem, NULL);
    check_state(&r);
    if ((r.flags & 0x04) != 0) {
        handshake(&r);
    }
    step = piece_sizes[r.flags & 3] == 0 ? (size > 0 ? size : 1) : piece_sizes[r.flags & 3];
    for (size_t off = 0; off < size; off += step, index++) {
        size_t n = size - off < step ? size - off : step;
        if ((r.flags & 0x0C) == 0x0C) {
            send_piece(&r, data + off, n);
        } else {
            r.with_client = false;
            feed_piece(&r, data + off, n, index);
        }
    }
    if ((r.flags & 0x80) != 0) {
        unpark(&r);
        nea__tls_close(r.c);
        shuttle(&r);
        check_state(&r);
    }
    if (verbose) {
        fprintf(stderr, "fuzz_tls: flags %02x, %s, resumed %d, alpn %s, answered %u\n", r.flags,
                nea__tls_reason_name(nea__tls_reason_of(r.c)), nea__tls_resumed(r.c),
                nea__tls_alpn(r.c) != NULL ? nea__tls_alpn(r.c) : "-", r.answered);
    }
    nea__tls_eof(r.c);
    check_state(&r);
    shuttle(&r);
    check((nea__tls_status(r.c) & (NEA__TLS_CLOSED | NEA__TLS_FAILED | NEA__TLS_EOF)) != 0,
          "ended, or half-closed, after EOF");
    check(nea__tls_recv_buf(r.c, &step) == NULL, "no input after EOF");
    back = nea__tls_conn_end(r.c);
    check(back == (r.parked ? NULL : records_mem), "the block comes back");
    check(nea__tls_server_certs(server, NULL) == 1, "only the current certificate alive");
    return 0;
}
