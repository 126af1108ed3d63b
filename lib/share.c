/*
 * share.c - who holds the connection slots and who asks for one: the
 * counts fair share on slots is decided from (admission.c decides).
 *
 * Holdings are counted only when slots are contended (an accept finds none
 * free), at most every NEA__TALLY_MS: a Misra-Gries pass over the slots
 * keeps the NEA__TALLY addresses that may hold the most (every address
 * holding more than count / (NEA__TALLY + 1) is among them), a second pass
 * counts those exactly, heaviest first. Between two counts, accepts and
 * closes keep the count in step. Slots whose peer has no IP address (a
 * Unix domain socket) are never counted.
 *
 * An address's share of the slots is an even split between the addresses
 * contending: those holding slots, and those that asked for one in the
 * last NEA__WAITING_MS (the last NEA__WAITING such addresses, every one of
 * them, refused or not), never more than fair_share_pct of the slots. So
 * four greedy addresses end up with a quarter each, not first-come, and an
 * address alone is never over its share once fair share is off.
 *
 * No allocation: every table is fixed and lives in admission's struct.
 */
#include "share.h"

#include <string.h>

void nea__share_init(nea__share *sh, uv_loop_t *loop, char *slots, size_t stride, unsigned count,
                     unsigned pct_slots)
{
    memset(sh, 0, sizeof(*sh));
    sh->loop = loop;
    sh->slots = slots;
    sh->stride = stride;
    sh->count = count;
    sh->pct_slots = pct_slots;
}

nea__peer_key nea__share_key(const struct sockaddr *sa)
{
    nea__peer_key k;
    memset(&k, 0, sizeof(k));
    if (sa->sa_family == AF_INET) {
        k.family = AF_INET;
        memcpy(k.addr, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        k.family = AF_INET6;
        memcpy(k.addr, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
    }
    return k;
}

bool nea__share_same(const nea__peer_key *a, const nea__peer_key *b)
{
    return a->family == b->family && memcmp(a->addr, b->addr, sizeof(a->addr)) == 0;
}

bool nea__share_is(nea__conn *c, const nea__peer_key *k)
{
    nea__peer_key ck = nea__share_key(nea__conn_peer(c));
    return nea__share_same(&ck, k);
}

static nea__conn *slot(const nea__share *sh, unsigned i)
{
    return (nea__conn *)(sh->slots + (size_t)i * sh->stride);
}

/* The address of a slot that counts towards a holding (family 0: none). */
static nea__peer_key holder(nea__conn *c)
{
    nea__peer_key none = {0};
    if (c->state == NEA__C_FREE || c->state == NEA__C_CLOSING) {
        return none;
    }
    return nea__share_key(nea__conn_peer(c));
}

static int find(const nea__share *sh, const nea__peer_key *k)
{
    for (unsigned j = 0; j < sh->tally_len; j++) {
        if (nea__share_same(&sh->tally[j].key, k)) {
            return (int)j;
        }
    }
    return -1;
}

void nea__share_count(nea__share *sh)
{
    unsigned n = 0;
    for (unsigned i = 0; i < sh->count; i++) { /* the candidates */
        nea__peer_key k = holder(slot(sh, i));
        unsigned j;
        if (k.family == 0) {
            continue;
        }
        for (j = 0; j < n && !nea__share_same(&sh->tally[j].key, &k); j++) {
        }
        if (j < n) {
            sh->tally[j].slots++;
        } else if (n < NEA__TALLY) {
            sh->tally[n].key = k;
            sh->tally[n++].slots = 1;
        } else {
            unsigned kept = 0;
            for (j = 0; j < n; j++) {
                if (--sh->tally[j].slots > 0) {
                    sh->tally[kept++] = sh->tally[j];
                }
            }
            n = kept;
        }
    }
    sh->tally_len = n;
    for (unsigned j = 0; j < n; j++) {
        sh->tally[j].slots = 0;
    }
    for (unsigned i = 0; i < sh->count; i++) { /* their exact holdings */
        nea__peer_key k = holder(slot(sh, i));
        int j = k.family != 0 ? find(sh, &k) : -1;
        if (j >= 0) {
            sh->tally[j].slots++;
        }
    }
    for (unsigned j = 1; j < n; j++) { /* heaviest first */
        for (unsigned m = j; m > 0 && sh->tally[m].slots > sh->tally[m - 1].slots; m--) {
            nea__holding t = sh->tally[m];
            sh->tally[m] = sh->tally[m - 1];
            sh->tally[m - 1] = t;
        }
    }
    sh->tally_accepts = 0;
    sh->tally_ms = uv_now(sh->loop);
    if (sh->tally_ms == 0) {
        sh->tally_ms = 1;
    }
}

void nea__share_fresh(nea__share *sh)
{
    if (sh->tally_ms == 0 || uv_now(sh->loop) - sh->tally_ms >= NEA__TALLY_MS) {
        nea__share_count(sh);
    }
}

/* The count is being used: slots are contended. */
static bool in_use(const nea__share *sh)
{
    return sh->tally_ms != 0 && uv_now(sh->loop) - sh->tally_ms < NEA__TALLY_MS;
}

unsigned nea__share_held(const nea__share *sh, const nea__peer_key *k)
{
    int j = find(sh, k);
    return j >= 0 ? sh->tally[j].slots : 0;
}

static bool recent(const nea__share *sh, uint64_t ms)
{
    return ms != 0 && uv_now(sh->loop) - ms <= NEA__WAITING_MS;
}

static unsigned share(const nea__share *sh)
{
    unsigned contenders = sh->tally_len, even;
    for (unsigned j = 0; j < NEA__WAITING; j++) {
        if (recent(sh, sh->waiting[j].ms) && nea__share_held(sh, &sh->waiting[j].key) == 0) {
            contenders++;
        }
    }
    contenders = contenders > 0 ? contenders : 1;
    even = (sh->count + contenders - 1) / contenders;
    return sh->pct_slots != 0 && sh->pct_slots < even ? sh->pct_slots : even;
}

bool nea__share_over(const nea__share *sh, unsigned held)
{
    return held > share(sh);
}

static void add(nea__share *sh, const nea__peer_key *k, int d)
{
    int j = find(sh, k);
    if (j >= 0 && (d > 0 || sh->tally[j].slots > 0)) {
        sh->tally[j].slots = (unsigned)((int)sh->tally[j].slots + d);
    }
}

void nea__share_accepted(nea__share *sh, nea__conn *c)
{
    nea__peer_key k;
    if (!in_use(sh)) {
        sh->tally_accepts++;
        return;
    }
    k = nea__share_key(nea__conn_peer(c));
    add(sh, &k, 1);
    nea__share_asked(sh, &k, false);
}

void nea__share_closing(nea__share *sh, nea__conn *c)
{
    if (in_use(sh)) {
        nea__peer_key k = nea__share_key(nea__conn_peer(c));
        add(sh, &k, -1);
    }
}

void nea__share_asked(nea__share *sh, const nea__peer_key *k, bool refused)
{
    unsigned j, oldest = 0;
    if (k->family == 0) {
        return;
    }
    for (j = 0; j < NEA__WAITING; j++) {
        if (sh->waiting[j].ms != 0 && nea__share_same(&sh->waiting[j].key, k)) {
            break;
        }
        if (sh->waiting[j].ms < sh->waiting[oldest].ms) {
            oldest = j;
        }
    }
    if (j == NEA__WAITING) {
        j = oldest;
        sh->waiting[j].key = *k;
        sh->waiting[j].refused_ms = 0;
    }
    sh->waiting[j].ms = uv_now(sh->loop);
    if (refused) {
        sh->waiting[j].refused_ms = sh->waiting[j].ms;
    }
}

bool nea__share_someone_waiting(const nea__share *sh)
{
    for (unsigned j = 0; j < NEA__WAITING; j++) {
        if (recent(sh, sh->waiting[j].refused_ms)) {
            return true;
        }
    }
    return false;
}

bool nea__share_other_waiting(const nea__share *sh, const nea__peer_key *k)
{
    for (unsigned j = 0; j < NEA__WAITING; j++) {
        if (recent(sh, sh->waiting[j].refused_ms) && !nea__share_same(&sh->waiting[j].key, k) &&
            !nea__share_over(sh, nea__share_held(sh, &sh->waiting[j].key) + 1)) {
            return true;
        }
    }
    return false;
}
