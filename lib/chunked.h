/*
 * chunked.h - the strict decoder of the chunked transfer coding (RFC 9112
 * section 7.1) for request bodies.
 *
 * The decoder is a pure byte-level state machine: no libuv, no allocation,
 * no I/O. It is fed whatever bytes arrived, in pieces of any size, and
 * resumes exactly where the previous piece ended. Chunk data is never
 * copied: it is reported as spans of the caller's input. Everything that is
 * not chunk data (size lines, extensions, CRLFs, trailers) is validated and
 * discarded, and bounded by meta_limit per chunk-size line and for the
 * trailer section, so that a peer cannot keep a connection busy with
 * framing that carries no body.
 */
#ifndef NEA_CHUNKED_H
#define NEA_CHUNKED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct nea__chunked {
    uint64_t left;     /* the chunk-size being read, then its data bytes not yet reported */
    size_t meta;       /* non-data bytes of the current size line or trailer section */
    size_t meta_limit; /* most bytes one size line, or the trailer section, may take */
    const char *error; /* why the framing is malformed; NULL until BAD */
    unsigned digits;   /* hex digits of the chunk-size seen so far */
    unsigned name_len; /* bytes of the trailer field name seen so far */
    unsigned char state;
    unsigned char match; /* forbidden trailer names the name still matches (bit set) */
} nea__chunked;

typedef enum {
    NEA__CHUNKED_MORE, /* all of the input was consumed; feed more */
    NEA__CHUNKED_DATA, /* *data, *data_len: a run of body bytes inside the input */
    NEA__CHUNKED_DONE, /* the message ended: *used counts up to and including the
                          CRLF that ends the trailer section; bytes after it belong to
                          the next request and were NOT looked at */
    NEA__CHUNKED_BAD,  /* malformed framing: answer 400 and close */
} nea__chunked_result;

/* meta_limit: the most bytes one chunk-size line (with its extensions and the
 * CRLF ending the previous chunk's data) may take, and the most the trailer
 * section may take in all (they are discarded, so they are bounded separately
 * from the body); exceeding it is BAD. */
void nea__chunked_init(nea__chunked *ck, size_t meta_limit);

/* Consumes bytes from in[0..len). *used = bytes consumed by this call (always set).
 * On DATA, the data run is in[*used - *data_len .. *used) (i.e. *data points into in).
 * Call again with the rest of the input after DATA. After BAD or DONE, further calls
 * return the same result and consume nothing (sticky). */
nea__chunked_result nea__chunked_feed(nea__chunked *ck, const char *in, size_t len, size_t *used,
                                      const char **data, size_t *data_len);

/* Why the decoder returned BAD (a static string), or NULL if it did not. */
const char *nea__chunked_error(const nea__chunked *ck);

/* Chunk-data bytes announced by the current chunk-size line and not yet
 * reported as DATA (0 between chunks). A body limit can be enforced as soon
 * as a size line is complete: received + nea__chunked_left() > limit. */
uint64_t nea__chunked_left(const nea__chunked *ck);

#endif /* NEA_CHUNKED_H */
