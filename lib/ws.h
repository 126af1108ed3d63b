/*
 * ws.h - the WebSocket protocol core (RFC 6455) without I/O: the opening
 * handshake, an incremental frame parser, frame heads for sending, close
 * payloads, UTF-8 validation, and the SHA-1 and base64 the handshake needs
 * (see ws.c).
 */
#ifndef NEA_WS_H
#define NEA_WS_H

#include "http.h"

/* Opcodes (RFC 6455 5.2). */
enum {
    NEA__WS_CONT = 0x0,
    NEA__WS_TEXT = 0x1,
    NEA__WS_BINARY = 0x2,
    NEA__WS_CLOSE = 0x8,
    NEA__WS_PING = 0x9,
    NEA__WS_PONG = 0xA,
};

/* Close codes (RFC 6455 7.4.1 and the IANA registry). */
enum {
    NEA__WS_NORMAL = 1000,
    NEA__WS_GOING_AWAY = 1001,
    NEA__WS_PROTOCOL_ERROR = 1002,
    NEA__WS_UNSUPPORTED = 1003,
    NEA__WS_NO_STATUS = 1005, /* reported for a close frame without a code; never sent */
    NEA__WS_ABNORMAL = 1006,  /* the connection dropped without a close frame; never sent */
    NEA__WS_INVALID_DATA = 1007,
    NEA__WS_POLICY = 1008,
    NEA__WS_TOO_BIG = 1009,
    NEA__WS_EXTENSION = 1010,
    NEA__WS_INTERNAL = 1011,
};

#define NEA__WS_CONTROL_MAX 125 /* payload bytes of a control frame */
#define NEA__WS_REASON_MAX 123  /* bytes of a close reason (after the 2-byte code) */
#define NEA__WS_HEAD_MAX 14     /* 2 + 8 (64-bit length) + 4 (mask key) */
#define NEA__WS_ACCEPT_LEN 28   /* base64 of a SHA-1 digest */

/* --- SHA-1 (RFC 3174) and base64 (RFC 4648) --------------------------------------- */

typedef struct nea__sha1 {
    uint32_t h[5];
    uint64_t bytes; /* hashed so far */
    uint8_t block[64];
    size_t block_len;
} nea__sha1;

void nea__sha1_init(nea__sha1 *s);
void nea__sha1_update(nea__sha1 *s, const void *data, size_t len);
void nea__sha1_final(nea__sha1 *s, uint8_t digest[20]);

/* Writes the padded base64 of len bytes and a NUL into out (4 * ceil(len / 3)
 * + 1 bytes); returns the length without the NUL. */
size_t nea__base64_encode(char *out, const uint8_t *in, size_t len);
/* Decodes the canonical padded base64 text in[0..len): length a multiple of
 * 4, the alphabet of RFC 4648 section 4, '=' only as padding, unused bits
 * zero. Writes at most cap bytes. Returns 0 and *out_len, or UV_EINVAL
 * (not canonical base64, or more than cap bytes). */
int nea__base64_decode(uint8_t *out, size_t cap, const char *in, size_t len, size_t *out_len);

/* --- UTF-8 --------------------------------------------------------------------------- */

/* Incremental validation (RFC 3629): no overlong forms, no surrogates,
 * nothing above U+10FFFF. Zero-initialise, or nea__utf8_init. */
typedef struct nea__utf8 {
    uint8_t need;   /* continuation bytes still expected */
    uint8_t lo, hi; /* the range of the next one */
} nea__utf8;

void nea__utf8_init(nea__utf8 *u);
/* Feeds len bytes; false at the first byte that cannot be UTF-8 (u is then
 * meaningless). */
bool nea__utf8_feed(nea__utf8 *u, const uint8_t *p, size_t len);
/* True when the bytes fed so far end on a character boundary. */
bool nea__utf8_complete(const nea__utf8 *u);

/* --- frames -------------------------------------------------------------------------- */

/* What nea__ws_parse found. */
typedef enum nea__ws_ev_type {
    NEA__WS_EV_NEED,  /* every byte given was consumed: call again with more */
    NEA__WS_EV_DATA,  /* a piece of a text or binary message */
    NEA__WS_EV_PING,  /* a complete ping: answer with a pong of the same payload */
    NEA__WS_EV_PONG,  /* a complete pong */
    NEA__WS_EV_CLOSE, /* a valid close frame: answer with a close; later bytes are ignored */
    NEA__WS_EV_ERROR, /* the peer broke the protocol: close with code; sticky */
} nea__ws_ev_type;

typedef struct nea__ws_event {
    nea__ws_ev_type type;
    unsigned opcode;     /* DATA: the message's, NEA__WS_TEXT or NEA__WS_BINARY */
    bool first, last;    /* DATA: the message's first / last piece (both for a
                            message in one piece) */
    const uint8_t *data; /* DATA: unmasked payload, inside the caller's buffer;
                            PING, PONG: the payload; CLOSE: the reason (valid
                            UTF-8, not NUL-terminated); valid until the next call */
    size_t len;
    uint64_t message_len; /* DATA: the message's payload bytes announced by its
                             frames' heads so far (this frame's included) */
    unsigned code;        /* CLOSE: the code received (1005 when none);
                             ERROR: the code to close with (1002, 1007, 1009) */
    const char *why;      /* ERROR: what was wrong (static) */
} nea__ws_event;

/* An incremental frame parser: bytes may arrive split at any offset; the
 * events are the same however they are split. No heap, no I/O. */
typedef struct nea__ws_parser {
    /* Settings. max_message is the limit hook: the payload bytes one data
     * message may announce before the parser fails it with 1009 (0: no
     * limit). It is checked at every data frame's head, before any of its
     * payload is read, and may be changed between calls (e.g. once the
     * owner decides to take a long message in pieces). */
    bool client; /* parse a server's frames (unmasked), not a client's (masked) */
    uint64_t max_message;

    /* State (zeroed by nea__ws_parser_init). */
    uint8_t state;
    uint8_t head[NEA__WS_HEAD_MAX];
    uint8_t head_len, head_need;
    uint8_t opcode; /* of the frame being read */
    bool fin;
    uint8_t mask[4];
    uint64_t frame_len, frame_left;
    uint8_t msg_opcode; /* the data message in progress (0: none) */
    bool msg_delivered; /* a piece of it was delivered */
    uint64_t msg_len;
    nea__utf8 utf8; /* text messages */
    uint8_t ctl[NEA__WS_CONTROL_MAX];
    uint8_t ctl_len;
    unsigned fail_code;
    const char *fail_why;
} nea__ws_parser;

void nea__ws_parser_init(nea__ws_parser *p, bool client, uint64_t max_message);

/*
 * Parses data[0..len) up to the next event and returns the bytes consumed;
 * *ev says what was found. Call again with the rest (data + consumed) until
 * NEA__WS_EV_NEED, which consumes everything it is given. Masked payload is
 * unmasked in place, so data must be writable; a DATA event points into
 * it. Text is validated as it arrives: invalid UTF-8 fails the message
 * (1007) at the piece holding the first bad byte, before it is delivered,
 * and so does a message that ends inside a character. After ERROR every
 * call returns the same error and consumes everything; after CLOSE every
 * byte is consumed and ignored (NEED).
 */
size_t nea__ws_parse(nea__ws_parser *p, uint8_t *data, size_t len, nea__ws_event *ev);

/* True between frames with no data message under way: nothing of the
 * peer's is half-read (a closed or failed parser is not between frames). */
bool nea__ws_parser_between(const nea__ws_parser *p);

/* XORs len bytes with the mask key, starting at payload offset pos. */
void nea__ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t pos);

/*
 * Writes the head of a frame into out: FIN, opcode, the payload length in
 * the fewest bytes, and the mask key when mask is not NULL (a client's
 * frame: mask the payload with nea__ws_mask; a server's frames are never
 * masked). Returns its length (2 to 14), or 0 for a frame RFC 6455 forbids
 * (an unknown opcode, a control frame fragmented or over 125 bytes, a
 * length of 2^63 or more).
 */
size_t nea__ws_frame_head(uint8_t out[NEA__WS_HEAD_MAX], unsigned opcode, bool fin, uint64_t len,
                          const uint8_t *mask);

/* Whether code may appear in a close frame: 1000-1003, 1007-1014,
 * 3000-4999 (1004-1006 and 1015 are reserved, the rest unassigned). */
bool nea__ws_close_code_ok(unsigned code);

/*
 * The payload of a close frame: code (big-endian) and reason, the reason
 * cut at a character boundary to NEA__WS_REASON_MAX bytes. code 0 gives
 * an empty payload (no status; reason must then be empty). Returns 0 and
 * *out_len, or UV_EINVAL (a code nea__ws_close_code_ok refuses, or a reason
 * that is not UTF-8).
 */
int nea__ws_close_payload(uint8_t out[NEA__WS_CONTROL_MAX], unsigned code, const char *reason,
                          size_t reason_len, size_t *out_len);

/* --- the opening handshake ------------------------------------------------------------ */

typedef struct nea__ws_handshake {
    char accept[NEA__WS_ACCEPT_LEN + 1]; /* Sec-WebSocket-Accept, NUL-terminated */
    const char *protocols;               /* Sec-WebSocket-Protocol as offered, or NULL */
    const char *origin;                  /* Origin, or NULL */
    const char *why;                     /* when refused: what was wrong (static) */
} nea__ws_handshake;

/* Sec-WebSocket-Accept for a key: base64(SHA-1(key + the RFC 6455 GUID)). */
void nea__ws_accept_key(const char *key, size_t key_len, char out[NEA__WS_ACCEPT_LEN + 1]);

/*
 * Checks an opening handshake (RFC 6455 4.2.1): method GET, HTTP/1.1 or
 * later, Upgrade listing "websocket", Connection listing "upgrade" (both
 * case-insensitive, over every line of the field), exactly one
 * Sec-WebSocket-Key that is the base64 of 16 bytes, and exactly one
 * Sec-WebSocket-Version, 13 (Host is the head guard's). Returns 0 with
 * out->accept filled, or the status to answer: 405 (not GET), 426 (another
 * version: answer with "Sec-WebSocket-Version: 13"), 400 (anything else);
 * out->why says which.
 */
int nea__ws_handshake_check(const char *method, int http_major, int http_minor,
                            const nea__hdr *hdrs, size_t n, nea__ws_handshake *out);

/* Writes the 101 response head (Upgrade, Connection, Sec-WebSocket-Accept,
 * and Sec-WebSocket-Protocol when protocol is not NULL) into buf; returns
 * its length, or 0 when it does not fit in cap bytes. */
size_t nea__ws_accept_head(char *buf, size_t cap, const char *accept, const char *protocol);

#endif /* NEA_WS_H */
