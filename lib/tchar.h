/*
 * tchar.h - RFC 9110's token characters, the one definition the request
 * head guard (http.c: methods, field names, list elements) and the chunked
 * decoder (chunked.c: extension and trailer names) share.
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

#endif /* NEA_TCHAR_H */
