/*
 * responses.c - see responses.h. Memoised on the offset, so linear even
 * with the HEAD ambiguity (a body announced, not sent).
 */
#include "responses.h"

#include <string.h>

static const char *find(const char *hay, size_t hay_len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= hay_len; i++) {
        if (memcmp(hay + i, needle, n) == 0) {
            return hay + i;
        }
    }
    return NULL;
}

static bool from(const fz_stream *s, size_t p)
{
    static const char version[] = "HTTP/1.1 ";
    size_t left = s->len - p, head_len, cl = 0;
    const char *head = s->rx + p, *end, *line;
    int status;
    bool closes, ok = false;

    if (left == 0) {
        return true;
    }
    if (s->memo[p] != 0) {
        return s->memo[p] == 2;
    }
    if (left < 13) {
        /* Too short to judge: a prefix of a status line, if it may be cut. */
        ok = s->cut_ok && memcmp(head, version, left < 9 ? left : 9) == 0;
        goto out;
    }
    if (memcmp(head, version, 9) != 0 || head[9] < '1' || head[9] > '5' || head[10] < '0' ||
        head[10] > '9' || head[11] < '0' || head[11] > '9' || head[12] != ' ') {
        goto out;
    }
    status = (head[9] - '0') * 100 + (head[10] - '0') * 10 + (head[11] - '0');
    end = find(head, left, "\r\n\r\n");
    if (end == NULL) {
        ok = s->cut_ok; /* head still arriving */
        goto out;
    }
    head_len = (size_t)(end + 4 - head);
    if (s->strict && status == 503 && find(head, head_len, "\r\nRetry-After: ") == NULL) {
        goto out;
    }
    line = find(head, head_len, "\r\nContent-Length: ");
    if (line != NULL) {
        for (line += 18; *line >= '0' && *line <= '9'; line++) {
            cl = cl * 10 + (size_t)(*line - '0');
        }
    }
    closes = find(head, head_len, "\r\nConnection: close\r\n") != NULL;
    if (status < 200) {
        /* Only 100 Continue, bare, and never the last word. */
        ok = status == 100 && line == NULL && !closes && from(s, p + head_len);
        goto out;
    }
    if (s->strict && line == NULL) {
        goto out; /* every response libnea sends announces its length */
    }
    /* With a body of Content-Length bytes... */
    if (head_len + cl > left) {
        ok = s->cut_ok; /* body still arriving */
    } else if (closes) {
        ok = head_len + cl == left; /* nothing may follow Connection: close */
    } else {
        ok = from(s, p + head_len + cl);
    }
    /* ...or, answering HEAD, with the length announced and no body. */
    if (!ok && cl > 0) {
        ok = closes ? head_len == left : from(s, p + head_len);
    }
out:
    s->memo[p] = ok ? 2 : 1;
    return ok;
}

bool fz_responses_valid(const fz_stream *s)
{
    memset(s->memo, 0, s->len + 1);
    return from(s, 0);
}
