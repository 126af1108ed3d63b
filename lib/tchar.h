/*
 * tchar.h - the byte classes of HTTP's grammar, one definition each:
 * RFC 9110's token characters, which the request head guard (http.c:
 * methods, field names, list elements) and the chunked decoder (chunked.c:
 * extension and trailer names) share, and hex digits (chunk sizes,
 * percent-encoding in http.c and url.c).
 *
 *   tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
 *           "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
 *
 * Inline, and a switch rather than a search of a string: every byte of every
 * field name comes through here. Depends on nothing, so the chunked decoder
 * stays a pure byte-level state machine.
 */
#ifndef NEA_TCHAR_H
#define NEA_TCHAR_H

#include <stdbool.h>

static inline bool nea__is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
        return true; /* most bytes: range tests before the switch */
    }
    switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
        return true;
    default:
        return false;
    }
}

/* The value of hex digit c, or -1 when c is none. */
static inline int nea__hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

#endif /* NEA_TCHAR_H */
