/*
 * test_chunked.c - the strict chunked transfer-coding decoder (chunked.c),
 * driven directly: no server, no socket.
 *
 * Most of it is one table of framings, valid and malformed. Each case is
 * decoded three ways - in one feed, split into two feeds at every byte
 * offset, and one byte per feed - and every way must give the same result,
 * the same body, and stop at the same byte: a decoder whose answer depends
 * on how the bytes arrived is a request-smuggling bug. Every valid message
 * is followed by a pipelined request, which DONE must leave unconsumed.
 * Malformed cases also name the reason the decoder must give, so that a
 * case cannot pass by failing for some unrelated reason.
 */
#include "chunked.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define DONE NEA__CHUNKED_DONE
#define MORE NEA__CHUNKED_MORE
#define BAD NEA__CHUNKED_BAD
#define DATA NEA__CHUNKED_DATA

/* Follows every valid message in its input; DONE must stop right before it. */
#define PIPELINED "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
#define META 4096 /* meta_limit of the cases that do not test it */

typedef struct tcase {
    const char *name;
    nea__chunked_result want;
    const char *in;
    size_t len;
    const char *body;
    size_t body_len;
    size_t meta_limit;
    const char *why; /* BAD only: a substring of nea__chunked_error() */
} tcase;

/* sizeof, not strlen: inputs and bodies may hold NUL bytes. */
#define CASE(name, want, in, body, limit, why)                                                     \
    {                                                                                              \
        name, want, in, sizeof(in) - 1, body, sizeof(body) - 1, limit, why                         \
    }
#define OK(name, in, body) CASE(name, DONE, in, body, META, NULL)
#define OK_LIM(name, in, body, limit) CASE(name, DONE, in, body, limit, NULL)
#define PARTIAL(name, in, body) CASE(name, MORE, in, body, META, NULL)
#define BAD_(name, in, body, why) CASE(name, BAD, in, body, META, why)
#define BAD_LIM(name, in, body, limit) CASE(name, BAD, in, body, limit, E_LIMIT)

/* The reasons, as substrings of the decoder's messages. */
#define E_LIMIT "exceed their limit"
#define E_SIZE_FIRST "does not start with a hex digit"
#define E_DIGITS "longer than 16 hex digits"
#define E_SIZE_BYTE "invalid byte in chunk-size"
#define E_SIZE_BARE_LF "chunk-size line ended by a bare LF"
#define E_SIZE_CRLF "chunk-size line not ended by CRLF"
#define E_BWS "whitespace in chunk-size line not followed by ';'"
#define E_EXT_NO_NAME "chunk extension without a name"
#define E_EXT_NAME "invalid byte in chunk-ext name"
#define E_EXT_NAME_BWS "whitespace after chunk-ext name"
#define E_EXT_VAL "neither a token nor a quoted-string"
#define E_EXT_TOKEN "invalid byte in chunk-ext value"
#define E_QUOTED "invalid byte in quoted chunk-ext value"
#define E_QPAIR "invalid quoted-pair"
#define E_AFTER_QUOTED "after quoted chunk-ext value"
#define E_DATA_CRLF "chunk-data not followed by CRLF"
#define E_FOLD "obs-fold"
#define E_EMPTY_NAME "empty name"
#define E_TR_BARE_LF "trailer line ended by a bare LF"
#define E_TR_NAME "invalid byte in trailer name"
#define E_NO_COLON "without a colon"
#define E_FORBIDDEN "in the trailer section"
#define E_TR_VALUE "invalid byte in trailer value"
#define E_TR_CRLF "trailer line not ended by CRLF"
#define E_FINAL "trailer section not ended by CRLF"

#define ALPHABET "abcdefghijklmnopqrstuvwxyz"
#define LONG_EXT                                                                                   \
    "5;extension-name-that-goes-on=and-a-value-that-goes-on-and-on-and-on-until-the-limit-is-gone" \
    "\r\nhello\r\n0\r\n\r\n"
#define TEN_TRAILERS                                                                               \
    "A: b\r\nA: b\r\nA: b\r\nA: b\r\nA: b\r\nA: b\r\nA: b\r\nA: b\r\nA: b\r\nA: b\r\n"
/* 5 one-byte chunks: 5 * 5 framing bytes, plus 5 for "0\r\n\r\n". */
#define FIVE_CHUNKS "1\r\na\r\n1\r\nb\r\n1\r\nc\r\n1\r\nd\r\n1\r\ne\r\n0\r\n\r\n"

static const tcase cases[] = {
    /* --- valid messages ------------------------------------------------ */
    OK("simple", "5\r\nhello\r\n0\r\n\r\n", "hello"),
    OK("empty body", "0\r\n\r\n", ""),
    OK("multi-chunk", "5\r\nhello\r\n1\r\n,\r\n6\r\n world\r\n0\r\n\r\n", "hello, world"),
    OK("one-byte chunks", "1\r\na\r\n1\r\nb\r\n1\r\nc\r\n0\r\n\r\n", "abc"),
    OK("hex lower", "1a\r\n" ALPHABET "\r\n0\r\n\r\n", ALPHABET),
    OK("hex upper", "1A\r\n" ALPHABET "\r\n0\r\n\r\n", ALPHABET),
    OK("hex letter lower", "f\r\n0123456789abcde\r\n0\r\n\r\n", "0123456789abcde"),
    OK("hex letter upper", "F\r\n0123456789abcde\r\n0\r\n\r\n", "0123456789abcde"),
    OK("leading zeros", "0005\r\nhello\r\n0\r\n\r\n", "hello"),
    OK("16 digits with leading zeros", "0000000000000005\r\nhello\r\n0\r\n\r\n", "hello"),
    OK("last chunk of zeros", "5\r\nhello\r\n000\r\n\r\n", "hello"),
    OK("last chunk of 16 zeros", "0000000000000000\r\n\r\n", ""),
    OK("data holds CRLF, NUL and framing", "9\r\n0\r\n\r\n\0\n\r\x80\r\n0\r\n\r\n",
       "0\r\n\r\n\0\n\r\x80"),
    OK("ext name only", "5;name\r\nhello\r\n0\r\n\r\n", "hello"),
    OK("ext token value", "5;name=value\r\nhello\r\n0\r\n\r\n", "hello"),
    OK("ext every tchar", "5;!#$%&'*+-.^_`|~09AZaz=!#$%&'*+-.^_`|~09AZaz\r\nhello\r\n0\r\n\r\n",
       "hello"),
    OK("several ext", "5;a=1;b;c=\"x\"\r\nhello\r\n0\r\n\r\n", "hello"),
    OK("ext quoted", "5;a=\"hello, world; x=y\"\r\nhello\r\n0\r\n\r\n", "hello"),
    OK("ext quoted empty", "5;a=\"\"\r\nhello\r\n0\r\n\r\n", "hello"),
    OK("ext quoted-pair", "5;a=\"q\\\"x\\\\y\\z\"\r\nhello\r\n0\r\n\r\n", "hello"),
    OK("ext quoted HTAB SP obs-text", "5;a=\"\t \xff\x80\"\r\nhello\r\n0\r\n\r\n", "hello"),
    OK("ext quoted-pair HTAB SP obs-text", "5;a=\"\\\t\\ \\\xff\"\r\nhello\r\n0\r\n\r\n", "hello"),
    OK("ext BWS around", "5 ; a = b\r\nhello\r\n0\r\n\r\n", "hello"),
    OK("ext BWS tabs quoted", "5\t;\ta\t=\t\"v\"\r\nhello\r\n0\r\n\r\n", "hello"),
    OK("ext BWS between", "5;a=b ;c ;d=\"e\" ; f\r\nhello\r\n0\r\n\r\n", "hello"),
    OK("last chunk with ext", "5\r\nhello\r\n0;done=yes\r\n\r\n", "hello"),
    OK("last chunk with ext and BWS", "0 ; a = \"b\"\r\n\r\n", ""),
    OK("trailers", "5\r\nhello\r\n0\r\nExpires: never\r\nX-Sum: abc\r\n\r\n", "hello"),
    OK("trailer empty value", "0\r\nX-A:\r\n\r\n", ""),
    OK("trailer OWS and inner whitespace", "0\r\nX-A: \t v a l \t\r\n\r\n", ""),
    OK("trailer obs-text", "0\r\nX-A: caf\xc3\xa9\r\n\r\n", ""),
    OK("trailer names like forbidden ones",
       "0\r\nHosts: x\r\nHos: x\r\nContent-Lengths: 1\r\nContent-Type: a\r\n"
       "Transfer-Encodings: b\r\nXHost: c\r\n\r\n",
       ""),
    OK("trailer every tchar", "0\r\n!#$%&'*+-.^_`|~09AZaz: v\r\n\r\n", ""),
    /* The budget is per size line (with the CRLF ending the previous
     * chunk's data) and for the trailer section, not for the message. */
    OK_LIM("a size line exactly at the limit", "5\r\nhello\r\n0\r\n\r\n", "hello", 5),
    OK_LIM("trailers exactly at the limit", "0\r\nA: b\r\n\r\n", "", 8),
    OK_LIM("the limit is per size line, not per message", FIVE_CHUNKS, "abcde", 5),

    /* --- incomplete: everything consumed, more wanted -------------------- */
    PARTIAL("nothing", "", ""),
    PARTIAL("size only", "5", ""),
    PARTIAL("size CR", "5\r", ""),
    PARTIAL("partial data", "5\r\nhel", "hel"),
    PARTIAL("data without CRLF yet", "5\r\nhello", "hello"),
    PARTIAL("data and CR", "5\r\nhello\r", "hello"),
    PARTIAL("before trailer section", "5\r\nhello\r\n0\r\n", "hello"),
    PARTIAL("in trailer section", "0\r\nX: y\r\n", ""),
    PARTIAL("final CR", "0\r\n\r", ""),
    PARTIAL("unterminated quoted ext", "5;a=\"unterminated", ""),
    PARTIAL("largest chunk-size", "ffffffffffffffff\r\nabc", "abc"),
    PARTIAL("largest chunk-size upper", "FFFFFFFFFFFFFFFF\r\n", ""),

    /* --- chunk-size ------------------------------------------------------ */
    BAD_("empty size line", "\r\n", "", E_SIZE_FIRST),
    BAD_("ext without size", ";a\r\n", "", E_SIZE_FIRST),
    BAD_("non-hex digit", "g\r\n", "", E_SIZE_FIRST),
    BAD_("non-hex after digit", "5g\r\nhello", "", E_SIZE_BYTE),
    BAD_("0x prefix", "0x5\r\nhello", "", E_SIZE_BYTE),
    BAD_("leading space", " 5\r\nhello", "", E_SIZE_FIRST),
    BAD_("trailing space", "5 \r\nhello", "", E_BWS),
    BAD_("trailing tab", "5\t\r\nhello", "", E_BWS),
    BAD_("space between digits", "5 5\r\nhello", "", E_BWS),
    BAD_("plus sign", "+5\r\nhello", "", E_SIZE_FIRST),
    BAD_("minus sign", "-5\r\nhello", "", E_SIZE_FIRST),
    BAD_("17 digits", "00000000000000005\r\nhello\r\n0\r\n\r\n", "", E_DIGITS),
    BAD_("overflow", "10000000000000000\r\n", "", E_DIGITS),
    BAD_("17 f", "fffffffffffffffff\r\n", "", E_DIGITS),
    BAD_("last chunk of 17 zeros", "00000000000000000\r\n\r\n", "", E_DIGITS),
    BAD_("lone CR then a byte in size line", "5\rX\nhello\r\n0\r\n\r\n", "", E_SIZE_CRLF),
    BAD_("CR CR LF in size line", "5\r\r\nhello\r\n0\r\n\r\n", "", E_SIZE_CRLF),
    BAD_("bare LF in size line", "5\nhello\r\n0\r\n\r\n", "", E_SIZE_BARE_LF),
    BAD_("bare LF after ext value", "5;a=b\nhello\r\n0\r\n\r\n", "", E_SIZE_BARE_LF),
    BAD_("bare LF after ext name", "5;a\nhello\r\n0\r\n\r\n", "", E_SIZE_BARE_LF),
    BAD_("bare LF in last chunk", "0\n\r\n", "", E_SIZE_BARE_LF),
    BAD_("LF CR in size line", "5\n\rhello", "", E_SIZE_BARE_LF),

    /* --- chunk-ext ------------------------------------------------------- */
    BAD_("bare semicolon", "5;\r\nhello\r\n0\r\n\r\n", "", E_EXT_NO_NAME),
    BAD_("double semicolon", "5;;a\r\nhello", "", E_EXT_NO_NAME),
    BAD_("semicolon and BWS only", "5; \r\nhello", "", E_EXT_NO_NAME),
    BAD_("ext without name", "5;=v\r\nhello", "", E_EXT_NO_NAME),
    BAD_("ext quoted name", "5;\"a\"=b\r\nhello", "", E_EXT_NO_NAME),
    BAD_("ext empty value", "5;a=\r\nhello", "", E_EXT_VAL),
    BAD_("ext value with space", "5;a=b c\r\nhello", "", E_BWS),
    BAD_("ext name with space", "5;a b\r\nhello", "", E_EXT_NAME_BWS),
    BAD_("ext value trailing BWS", "5;a=b \r\nhello", "", E_BWS),
    BAD_("ext name trailing BWS", "5;a \r\nhello", "", E_EXT_NAME_BWS),
    BAD_("ext quoted trailing BWS", "5;a=\"b\" \r\nhello", "", E_BWS),
    BAD_("ext non-token name", "5;a@b\r\nhello", "", E_EXT_NAME),
    BAD_("ext non-token value", "5;a=b/c\r\nhello", "", E_EXT_TOKEN),
    BAD_("ext second equals", "5;a=b=c\r\nhello", "", E_EXT_TOKEN),
    BAD_("ext DEL value", "5;a=\x7f\r\nhello", "", E_EXT_VAL),
    BAD_("ext text after quoted", "5;a=\"x\"y\r\nhello", "", E_AFTER_QUOTED),
    BAD_("ext CR in quoted", "5;a=\"x\r\nhello", "", E_QUOTED),
    BAD_("ext CTL in quoted", "5;a=\"\x01\"\r\nhello", "", E_QUOTED),
    BAD_("ext DEL in quoted", "5;a=\"\x7f\"\r\nhello", "", E_QUOTED),
    BAD_("ext quoted-pair CR", "5;a=\"\\\r\nhello", "", E_QPAIR),
    BAD_("ext quoted-pair DEL", "5;a=\"\\\x7f\"\r\nhello", "", E_QPAIR),
    BAD_("lone CR after quoted ext", "5;a=\"b\"\rX\nhello", "", E_SIZE_CRLF),

    /* --- CRLF after chunk-data -------------------------------------------- */
    BAD_("XY instead of CRLF after data", "5\r\nhelloXY0\r\n\r\n", "hello", E_DATA_CRLF),
    BAD_("missing CRLF after data", "5\r\nhello0\r\n\r\n", "hello", E_DATA_CRLF),
    BAD_("bare LF after data", "5\r\nhello\n0\r\n\r\n", "hello", E_DATA_CRLF),
    BAD_("lone CR then a byte after data", "5\r\nhelloX\r0\r\n\r\n", "hello", E_DATA_CRLF),
    BAD_("a byte then LF after data", "5\r\nhelloX\n0\r\n\r\n", "hello", E_DATA_CRLF),
    BAD_("LF LF after data", "5\r\nhello\n\n0\r\n\r\n", "hello", E_DATA_CRLF),
    BAD_("CR then a byte after data", "5\r\nhello\rX0\r\n\r\n", "hello", E_DATA_CRLF),
    BAD_("CR CR LF after data", "5\r\nhello\r\r\n0\r\n\r\n", "hello", E_DATA_CRLF),
    BAD_("LF CR after data", "5\r\nhello\n\r0\r\n\r\n", "hello", E_DATA_CRLF),
    BAD_("data longer than its size", "3\r\nhello\r\n0\r\n\r\n", "hel", E_DATA_CRLF),
    BAD_("data shorter than its size", "6\r\nhello\r\n0\r\n\r\n", "hello\r", E_DATA_CRLF),

    /* --- trailer section ---------------------------------------------------- */
    BAD_("final bare LF", "0\r\n\n", "", E_TR_BARE_LF),
    BAD_("final CR then a byte", "0\r\n\rX", "", E_FINAL),
    BAD_("final CR CR LF", "0\r\n\r\r\n", "", E_FINAL),
    BAD_("trailer Content-Length", "5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n", "hello",
         E_FORBIDDEN),
    BAD_("trailer content-length", "0\r\ncontent-length: 0\r\n\r\n", "", E_FORBIDDEN),
    BAD_("trailer CONTENT-LENGTH empty", "0\r\nCONTENT-LENGTH:\r\n\r\n", "", E_FORBIDDEN),
    BAD_("trailer Transfer-Encoding", "0\r\nTransfer-Encoding: chunked\r\n\r\n", "", E_FORBIDDEN),
    BAD_("trailer tRANSFER-eNCODING", "0\r\ntRANSFER-eNCODING: gzip\r\n\r\n", "", E_FORBIDDEN),
    BAD_("trailer Host", "0\r\nHost: evil\r\n\r\n", "", E_FORBIDDEN),
    BAD_("trailer HoSt after another", "0\r\nX: y\r\nHoSt:x\r\n\r\n", "", E_FORBIDDEN),
    BAD_("trailer HOST", "0\r\nHOST: x\r\n\r\n", "", E_FORBIDDEN),
    BAD_("trailer obs-fold SP", "0\r\nX: a\r\n b\r\n\r\n", "", E_FOLD),
    BAD_("trailer obs-fold HTAB", "0\r\nX: a\r\n\tb\r\n\r\n", "", E_FOLD),
    BAD_("trailer line starting with SP", "0\r\n X: a\r\n\r\n", "", E_FOLD),
    BAD_("trailer without colon", "0\r\nXabc\r\n\r\n", "", E_NO_COLON),
    BAD_("trailer without colon, bare LF", "0\r\nXabc\n\r\n", "", E_NO_COLON),
    BAD_("trailer empty name", "0\r\n: x\r\n\r\n", "", E_EMPTY_NAME),
    BAD_("trailer space before colon", "0\r\nX : y\r\n\r\n", "", E_TR_NAME),
    BAD_("trailer tab before colon", "0\r\nX\t: y\r\n\r\n", "", E_TR_NAME),
    BAD_("trailer Host with space before colon", "0\r\nHost : y\r\n\r\n", "", E_TR_NAME),
    BAD_("trailer non-token name", "0\r\nX(y): z\r\n\r\n", "", E_TR_NAME),
    BAD_("trailer CTL in value",
         "0\r\nX: a\x01"
         "b\r\n\r\n",
         "", E_TR_VALUE),
    BAD_("trailer DEL in value", "0\r\nX: a\x7f\r\n\r\n", "", E_TR_VALUE),
    BAD_("trailer ESC in value", "0\r\nX: \x1b[0m\r\n\r\n", "", E_TR_VALUE),
    BAD_("trailer lone CR in value", "0\r\nX: a\rb\r\n\r\n", "", E_TR_CRLF),
    BAD_("trailer bare LF in value", "0\r\nX: a\nb\r\n\r\n", "", E_TR_BARE_LF),
    BAD_("trailer ended by bare LF", "0\r\nX: a\n\r\n", "", E_TR_BARE_LF),
    BAD_("bare LF after trailers", "0\r\nX: a\r\n\n", "", E_TR_BARE_LF),

    /* --- NUL anywhere in the framing ---------------------------------------- */
    BAD_("NUL first",
         "\0"
         "5\r\nhello\r\n0\r\n\r\n",
         "", E_SIZE_FIRST),
    BAD_("NUL in size", "5\0\r\nhello", "", E_SIZE_BYTE),
    BAD_("NUL for LF of size line", "5\r\0hello", "", E_SIZE_CRLF),
    BAD_("NUL in ext name", "5;a\0=b\r\nhello", "", E_EXT_NAME),
    BAD_("NUL as ext name", "5;\0\r\nhello", "", E_EXT_NO_NAME),
    BAD_("NUL in ext token", "5;a=b\0\r\nhello", "", E_EXT_TOKEN),
    BAD_("NUL in quoted ext", "5;a=\"\0\"\r\nhello", "", E_QUOTED),
    BAD_("NUL in quoted-pair", "5;a=\"\\\0\"\r\nhello", "", E_QPAIR),
    BAD_("NUL instead of CRLF after data", "5\r\nhello\0\r\n0\r\n\r\n", "hello", E_DATA_CRLF),
    BAD_("NUL for LF after data", "5\r\nhello\r\0", "hello", E_DATA_CRLF),
    BAD_("NUL at trailer start", "0\r\n\0\r\n", "", E_TR_NAME),
    BAD_("NUL in trailer name", "0\r\nX\0: y\r\n\r\n", "", E_TR_NAME),
    BAD_("NUL in trailer value", "0\r\nX: \0\r\n\r\n", "", E_TR_VALUE),
    BAD_("NUL for LF of trailer", "0\r\nX: y\r\0", "", E_TR_CRLF),
    BAD_("NUL for final LF", "0\r\n\r\0", "", E_FINAL),

    /* --- meta_limit ---------------------------------------------------------- */
    BAD_LIM("a size line one over the limit", "5\r\nhello\r\n0\r\n\r\n", "hello", 4),
    BAD_LIM("trailers one over the limit", "0\r\nA: b\r\n\r\n", "", 7),
    BAD_LIM("one long size line among short ones", "1\r\na\r\n1;x=yy\r\nb\r\n0\r\n\r\n", "a", 5),
    BAD_LIM("long extension", LONG_EXT, "", 64),
    BAD_LIM("many trailers", "0\r\n" TEN_TRAILERS "\r\n", "", 40),
    BAD_LIM("limit zero", "0\r\n\r\n", "", 0),
};

#define NCASES (sizeof(cases) / sizeof(cases[0]))

/* What decoding one input gave. */
typedef struct outcome {
    nea__chunked_result result;
    size_t consumed; /* bytes consumed in total (up to the byte that ended it) */
    size_t body_len;
    unsigned runs; /* DATA results */
    const char *error;
} outcome;

/* Where the case being run is, for failure messages. */
static struct {
    const char *name;
    const char *mode;
    size_t split;
} at;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fail_msg("case \"%s\", %s %zu: %s", at.name, at.mode, at.split, #cond);                \
        }                                                                                          \
    } while (0)

/* Decodes in[0..len) in pieces: of `step` bytes each, or, when step is 0,
 * the two pieces [0, split) and [split, len). The body goes to body. */
static void decode(const char *in, size_t len, size_t meta_limit, size_t split, size_t step,
                   outcome *o, char *body, size_t body_cap)
{
    nea__chunked ck;
    size_t start = 0;

    nea__chunked_init(&ck, meta_limit);
    memset(o, 0, sizeof(*o));
    do {
        size_t end =
            step > 0 ? (len - start > step ? start + step : len) : (start < split ? split : len);
        size_t off = start;
        for (;;) {
            size_t used = 12345, dlen = 12345;
            const char *data = in;
            nea__chunked_result r =
                nea__chunked_feed(&ck, in + off, end - off, &used, &data, &dlen);
            CHECK(used <= end - off);
            if (r == DATA) {
                CHECK(dlen > 0 && dlen <= used);
                CHECK(data == in + off + used - dlen);
                /* A run is whole: it ends at the end of its chunk or of the input. */
                CHECK(off + used == end || nea__chunked_left(&ck) == 0);
                CHECK(o->body_len + dlen <= body_cap);
                memcpy(body + o->body_len, data, dlen);
                o->body_len += dlen;
                o->runs++;
                off += used;
                continue;
            }
            CHECK(data == NULL && dlen == 0);
            off += used;
            if (r == MORE) {
                CHECK(off == end);
                CHECK(nea__chunked_error(&ck) == NULL);
                break;
            }
            CHECK(r == DONE || r == BAD);
            o->result = r;
            o->consumed = off;
            o->error = nea__chunked_error(&ck);
            CHECK((r == BAD) == (o->error != NULL));
            /* Sticky: the rest of the input, or anything else, changes nothing. */
            for (int again = 0; again < 2; again++) {
                const char *rest = again == 0 ? in + off : "0\r\n\r\n";
                size_t rest_len = again == 0 ? len - off : 5;
                size_t u = 1, dl = 1;
                const char *d = in;
                CHECK(nea__chunked_feed(&ck, rest, rest_len, &u, &d, &dl) == r);
                CHECK(u == 0 && d == NULL && dl == 0);
                CHECK(nea__chunked_error(&ck) == o->error);
            }
            return;
        }
        start = end;
    } while (start < len);
    o->result = MORE;
    o->consumed = len;
}

static const char *result_name(nea__chunked_result r)
{
    switch (r) {
    case NEA__CHUNKED_MORE:
        return "MORE";
    case NEA__CHUNKED_DATA:
        return "DATA";
    case NEA__CHUNKED_DONE:
        return "DONE";
    case NEA__CHUNKED_BAD:
        return "BAD";
    }
    return "?";
}

static void test_table(void **state)
{
    static char in[4096], want_body[4096], body[4096];
    (void)state;

    for (size_t k = 0; k < NCASES; k++) {
        const tcase *c = &cases[k];
        size_t len = c->len;
        outcome ref, o;

        memcpy(in, c->in, c->len);
        if (c->want == DONE) {
            memcpy(in + len, PIPELINED, sizeof(PIPELINED) - 1);
            len += sizeof(PIPELINED) - 1;
        }
        memcpy(want_body, c->body, c->body_len);

        at.name = c->name;
        at.mode = "one feed";
        at.split = len;
        decode(in, len, c->meta_limit, len, 0, &ref, body, sizeof(body));
        if (ref.result != c->want) {
            fail_msg("case \"%s\": %s (%s), want %s", c->name, result_name(ref.result),
                     ref.error != NULL ? ref.error : "no error", result_name(c->want));
        }
        CHECK(ref.body_len == c->body_len && memcmp(body, want_body, c->body_len) == 0);
        /* DONE stops before the pipelined request; MORE took everything. */
        if (c->want != BAD) {
            CHECK(ref.consumed == c->len);
        }
        if (c->want == BAD && strstr(ref.error, c->why) == NULL) {
            fail_msg("case \"%s\": BAD for \"%s\", want \"%s\"", c->name, ref.error, c->why);
        }

        for (size_t split = 0; split <= len; split++) {
            at.mode = "split at";
            at.split = split;
            decode(in, len, c->meta_limit, split, 0, &o, body, sizeof(body));
            CHECK(o.result == ref.result && o.consumed == ref.consumed);
            CHECK(o.error == ref.error);
            CHECK(o.body_len == c->body_len && memcmp(body, want_body, c->body_len) == 0);
        }

        at.mode = "byte by byte";
        at.split = 1;
        decode(in, len, c->meta_limit, 0, 1, &o, body, sizeof(body));
        CHECK(o.result == ref.result && o.consumed == ref.consumed);
        CHECK(o.error == ref.error);
        CHECK(o.body_len == c->body_len && memcmp(body, want_body, c->body_len) == 0);
    }
    print_message("%zu framings, each in one feed, split at every offset and byte by byte\n",
                  NCASES);
}

/* A 10000-byte chunk in one feed is one DATA of 10000 bytes pointing into
 * the input; split in two it is at most two runs. */
static void test_data_spans_whole(void **state)
{
    static char in[16384];
    const size_t n = 10000;
    size_t len = 0, used, dlen;
    const char *data;
    nea__chunked ck;
    (void)state;

    len += (size_t)snprintf(in, sizeof(in), "%zx\r\n", n);
    assert_int_equal(len, 6); /* "2710\r\n" */
    for (size_t i = 0; i < n; i++) {
        in[len + i] = (char)(i * 7 + 3);
    }
    len += n;
    memcpy(in + len, "\r\n0\r\n\r\n", 7);
    len += 7;

    nea__chunked_init(&ck, 64);
    assert_int_equal(nea__chunked_feed(&ck, in, len, &used, &data, &dlen), DATA);
    assert_ptr_equal(data, in + 6);
    assert_int_equal(dlen, n);
    assert_int_equal(used, 6 + n);
    assert_int_equal(nea__chunked_feed(&ck, in + used, len - used, &used, &data, &dlen), DONE);
    assert_int_equal(used, 7);

    for (size_t split = 7; split < 6 + n; split += 997) {
        size_t off = 0, runs = 0, total = 0;
        nea__chunked_init(&ck, 64);
        while (off < split) {
            nea__chunked_result r =
                nea__chunked_feed(&ck, in + off, split - off, &used, &data, &dlen);
            off += used;
            if (r != DATA) {
                break;
            }
            runs++;
            total += dlen;
        }
        assert_int_equal(off, split);
        assert_int_equal(nea__chunked_left(&ck), 6 + n - split);
        for (;;) {
            nea__chunked_result r =
                nea__chunked_feed(&ck, in + off, len - off, &used, &data, &dlen);
            off += used;
            if (r != DATA) {
                assert_int_equal(r, DONE);
                break;
            }
            runs++;
            total += dlen;
        }
        assert_int_equal(runs, 2);
        assert_int_equal(total, n);
        assert_int_equal(off, len);
    }
}

/* After DONE or BAD nothing is consumed, whatever is fed. */
static void test_sticky(void **state)
{
    static const char msg[] = "3\r\nabc\r\n0\r\n\r\n" PIPELINED;
    size_t used, dlen;
    const char *data;
    nea__chunked ck;
    (void)state;

    nea__chunked_init(&ck, 100);
    assert_int_equal(nea__chunked_feed(&ck, msg, sizeof(msg) - 1, &used, &data, &dlen), DATA);
    assert_int_equal(
        nea__chunked_feed(&ck, msg + used, sizeof(msg) - 1 - used, &used, &data, &dlen), DONE);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(nea__chunked_feed(&ck, "5\r\nhello", 8, &used, &data, &dlen), DONE);
        assert_int_equal(used, 0);
        assert_null(data);
        assert_int_equal(dlen, 0);
        assert_int_equal(nea__chunked_feed(&ck, NULL, 0, &used, &data, &dlen), DONE);
    }
    assert_null(nea__chunked_error(&ck));

    nea__chunked_init(&ck, 100);
    assert_int_equal(nea__chunked_feed(&ck, "5\nhello", 7, &used, &data, &dlen), BAD);
    assert_int_equal(used, 2);
    assert_non_null(nea__chunked_error(&ck));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(nea__chunked_feed(&ck, "0\r\n\r\n", 5, &used, &data, &dlen), BAD);
        assert_int_equal(used, 0);
        assert_null(data);
        assert_int_equal(dlen, 0);
    }

    /* init starts a fresh message. */
    nea__chunked_init(&ck, 100);
    assert_null(nea__chunked_error(&ck));
    assert_int_equal(nea__chunked_feed(&ck, "0\r\n\r\n", 5, &used, &data, &dlen), DONE);
    assert_int_equal(used, 5);
}

/* nea__chunked_left announces a chunk as soon as its size line ends, so a
 * body limit can be applied before the data arrives. */
static void test_left_announces_chunks(void **state)
{
    size_t used, dlen;
    const char *data;
    nea__chunked ck;
    (void)state;

    nea__chunked_init(&ck, 100);
    assert_int_equal(nea__chunked_left(&ck), 0);
    assert_int_equal(nea__chunked_feed(&ck, "ffffffffffffffff", 16, &used, &data, &dlen), MORE);
    assert_int_equal(nea__chunked_left(&ck), 0); /* the line could still be malformed */
    assert_int_equal(nea__chunked_feed(&ck, "\r\n", 2, &used, &data, &dlen), MORE);
    assert_true(nea__chunked_left(&ck) == UINT64_MAX);
    assert_int_equal(nea__chunked_feed(&ck, "abc", 3, &used, &data, &dlen), DATA);
    assert_true(nea__chunked_left(&ck) == UINT64_MAX - 3);

    nea__chunked_init(&ck, 100);
    assert_int_equal(nea__chunked_feed(&ck, "a;x=y\r\n0123", 11, &used, &data, &dlen), DATA);
    assert_int_equal(dlen, 4);
    assert_int_equal(nea__chunked_left(&ck), 6);
    assert_int_equal(nea__chunked_feed(&ck, "456789\r\n", 8, &used, &data, &dlen), DATA);
    assert_int_equal(used, 6);
    assert_int_equal(nea__chunked_left(&ck), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_data_spans_whole),
        cmocka_unit_test(test_sticky),
        cmocka_unit_test(test_left_announces_chunks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
