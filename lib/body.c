/*
 * body.c - a request body on its way in: its framing (Content-Length, or
 * chunked through the strict decoder of chunked.c), its limit and its
 * pace.
 *
 * The decoder only says where body bytes are in what arrived, and when the
 * body ends; where they go (the arena, or in pieces to a handler) is the
 * connection's business. A limit is enforced as early as it can be: a
 * chunk announced beyond it is refused when its size line is complete,
 * before its data arrives.
 *
 * Pace: an arena is held only by a body that is moving. A body may idle
 * body_timeout_ms between reads, must be complete by its deadline however
 * steadily it drips, and after body_rate_grace_ms must average
 * body_min_rate bytes/s since it started.
 *
 * Invariants: no allocation, no I/O; DONE is reported only after every
 * DATA of the body, and no byte after the body's end is consumed.
 */
#include "body.h"

#include <string.h>

void nea__body_rx_start(nea__body_rx *b, bool chunked, uint64_t length, uint64_t limit,
                        size_t meta_limit, uint64_t now_ms, unsigned deadline_ms,
                        size_t buffered)
{
    memset(b, 0, sizeof(*b));
    b->is_chunked = chunked;
    if (chunked) {
        nea__chunked_init(&b->chunked, meta_limit);
    } else {
        b->left = length;
    }
    b->limit = limit;
    b->start_ms = b->last_ms = now_ms;
    b->deadline_ms = deadline_ms > 0 ? now_ms + deadline_ms : UINT64_MAX;
    b->received = buffered;
}

void nea__body_rx_arrived(nea__body_rx *b, size_t n, uint64_t now_ms)
{
    b->received += n;
    b->last_ms = now_ms;
}

static nea__body_step feed_chunked(nea__body_rx *b, const char *in, size_t len, size_t *used,
                                   const char **data, size_t *data_len)
{
    switch (nea__chunked_feed(&b->chunked, in, len, used, data, data_len)) {
    case NEA__CHUNKED_DATA:
        return NEA__BODY_DATA;
    case NEA__CHUNKED_DONE:
        return NEA__BODY_DONE;
    case NEA__CHUNKED_BAD:
        return NEA__BODY_BAD;
    case NEA__CHUNKED_MORE:
        break;
    }
    /* A chunk announced beyond the limit is refused before its data. */
    return nea__chunked_left(&b->chunked) > b->limit - b->got ? NEA__BODY_TOO_LARGE
                                                               : NEA__BODY_MORE;
}

nea__body_step nea__body_rx_feed(nea__body_rx *b, const char *in, size_t len, size_t *used,
                                 const char **data, size_t *data_len)
{
    nea__body_step step;

    if (b->is_chunked) {
        step = feed_chunked(b, in, len, used, data, data_len);
    } else if (b->left == 0) {
        *used = *data_len = 0;
        *data = NULL;
        step = NEA__BODY_DONE;
    } else {
        size_t n = (uint64_t)len < b->left ? len : (size_t)b->left;
        b->left -= n;
        *used = *data_len = n;
        *data = in;
        step = n > 0 ? NEA__BODY_DATA : NEA__BODY_MORE;
    }
    if (step == NEA__BODY_DATA) {
        if (*data_len > b->limit - b->got) {
            return NEA__BODY_TOO_LARGE;
        }
        b->got += *data_len;
    }
    return step;
}

uint64_t nea__body_rx_due(const nea__body_rx *b, const nea_config *cfg)
{
    uint64_t due = b->last_ms + cfg->body_timeout_ms;

    if (b->deadline_ms < due) {
        due = b->deadline_ms;
    }
    if (cfg->body_min_rate > 0) {
        /* The first moment the average drops below the rate. */
        uint64_t slow = b->start_ms + b->received * 1000u / cfg->body_min_rate + 1;
        uint64_t grace = b->start_ms + cfg->body_rate_grace_ms;
        slow = slow > grace ? slow : grace;
        due = slow < due ? slow : due;
    }
    return due;
}
