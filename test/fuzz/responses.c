/*
 * responses.c - see responses.h. Memoised on the offset, so linear even
 * with the HEAD ambiguity (a body announced, not sent), which is ruled out
 * when the client is known to have sent no HEAD.
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
    if (!ok && cl > 0 && !s->no_head) {
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

bool fz_contains(const char *hay, size_t len, const char *needle)
{
    return find(hay, len, needle) != NULL;
}

/* The response at p: its status, head length and announced body length;
 * false when its head has not fully arrived. */
static bool head_at(const fz_stream *s, size_t p, fz_response *r, size_t *cl)
{
    const char *head = s->rx + p, *end, *line;
    size_t left = s->len - p;

    if (left < 13) {
        return false;
    }
    end = find(head, left, "\r\n\r\n");
    if (end == NULL) {
        return false;
    }
    r->status = (head[9] - '0') * 100 + (head[10] - '0') * 10 + (head[11] - '0');
    r->head = head;
    r->head_len = (size_t)(end + 4 - head);
    r->closes = find(head, r->head_len, "\r\nConnection: close\r\n") != NULL;
    *cl = 0;
    line = find(head, r->head_len, "\r\nContent-Length: ");
    if (line != NULL) {
        for (line += 18; *line >= '0' && *line <= '9'; line++) {
            *cl = *cl * 10 + (size_t)(*line - '0');
        }
    }
    return true;
}

/* Whether the validated reading goes on at q (the end counts as valid). */
static bool valid_at(const fz_stream *s, size_t q, bool closes)
{
    if (q == s->len) {
        return true;
    }
    return q < s->len && !closes && s->memo[q] == 2;
}

size_t fz_responses_each(const fz_stream *s, void (*fn)(const fz_response *r, void *data),
                         void *data)
{
    size_t p = 0, count = 0;

    while (p < s->len) {
        fz_response r;
        size_t cl, left = s->len - p;
        if (!head_at(s, p, &r, &cl)) {
            break; /* a head cut short: not a response yet */
        }
        if (r.status < 200) {
            p += r.head_len;
            continue;
        }
        /* The reading from() prefers: with the body (arriving, if cut),
         * else a HEAD answer with none. */
        r.body = r.head + r.head_len;
        r.cut = r.head_len + cl > left;
        if (r.cut ? !s->cut_ok : !valid_at(s, p + r.head_len + cl, r.closes)) {
            r.cut = false;
            cl = 0;
        }
        r.body_len = r.cut ? left - r.head_len : cl;
        fn(&r, data);
        count++;
        if (r.cut) {
            break;
        }
        p += r.head_len + r.body_len;
    }
    return count;
}
