/*
 * share.h - who holds the connection slots and who asks for one: the
 * counts fair share on slots is decided from (see share.c).
 */
#ifndef NEA_SHARE_H
#define NEA_SHARE_H

#include "conn.h"

/* Addresses that asked for a slot recently (fair share: they contend). */
#define NEA__WAITING 16
/* How long such an address counts as contending (and, refused, waiting). */
#define NEA__WAITING_MS 1000
/* The heaviest addresses, counted under contention: how many, and how
 * long a count is used before the slots are counted again. */
#define NEA__TALLY 16
#define NEA__TALLY_MS 10

/* A client address, as fair share compares them (no port). family 0: no
 * address (a Unix domain socket, or unknown): never counted. */
typedef struct nea__peer_key {
    uint8_t family;
    uint8_t addr[16];
} nea__peer_key;

/* How many slots an address holds. */
typedef struct nea__holding {
    nea__peer_key key;
    unsigned slots;
} nea__holding;

typedef struct nea__share {
    uv_loop_t *loop;
    char *slots; /* the first connection slot */
    size_t stride;
    unsigned count;
    unsigned pct_slots; /* fair_share_pct of the slots (0 = fair share off) */
    /* The addresses holding the most slots, heaviest first, exact for
     * each; an address not listed holds no more than count / (NEA__TALLY
     * + 1). */
    nea__holding tally[NEA__TALLY];
    unsigned tally_len;
    uint64_t tally_ms;      /* loop time of the count; 0 = none */
    unsigned tally_accepts; /* connections accepted since the count, not added to it */
    /* The addresses that asked for a slot while they were contended, in
     * the last NEA__WAITING_MS (the entry seen longest ago gives way when
     * all are taken). */
    struct {
        nea__peer_key key;
        uint64_t ms;         /* loop time it last asked; 0 = free entry */
        uint64_t refused_ms; /* loop time it was last refused; 0 = never */
    } waiting[NEA__WAITING];
} nea__share;

void nea__share_init(nea__share *sh, uv_loop_t *loop, char *slots, size_t stride, unsigned count,
                     unsigned pct_slots);
nea__peer_key nea__share_key(const struct sockaddr *sa);
bool nea__share_same(const nea__peer_key *a, const nea__peer_key *b);
/* c's client has the address k. */
bool nea__share_is(nea__conn *c, const nea__peer_key *k);
/* Counts the slots (two passes) unless the count is younger than
 * NEA__TALLY_MS; nea__share_count always counts. */
void nea__share_fresh(nea__share *sh);
void nea__share_count(nea__share *sh);
/* Slots held by address k, by the count. */
unsigned nea__share_held(const nea__share *sh, const nea__peer_key *k);
/* An address holding `held` slots holds more than its share: an even split
 * between the addresses holding or asking for slots, capped at
 * fair_share_pct. */
bool nea__share_over(const nea__share *sh, unsigned held);
/* c was accepted (slots contended or not); c is about to give up its slot.
 * Keep the count in step between two counts. */
void nea__share_accepted(nea__share *sh, nea__conn *c);
void nea__share_closing(nea__share *sh, nea__conn *c);
/* k asked for a slot while they were contended (refused: it waits). */
void nea__share_asked(nea__share *sh, const nea__peer_key *k, bool refused);
/* Some address was refused a slot within NEA__WAITING_MS. */
bool nea__share_someone_waiting(const nea__share *sh);
/* Another address than k was refused a slot within NEA__WAITING_MS and
 * holds less than its share: a slot k gives up would serve it. */
bool nea__share_other_waiting(const nea__share *sh, const nea__peer_key *k);

#endif /* NEA_SHARE_H */
