/*
 * fault.h - deterministic failure injection for tests (NEA_FAULT_INJECTION
 * builds only; compiled out of the installed library).
 *
 * Each server carries its own fault plan, so tests (and, later, worker
 * threads) never share one. A plan counts the times each failure point is
 * reached and fails the nth (once, or from then on: SQLite's test_malloc.c
 * sweep). The region and listener steps of nea_server_new run before the
 * server exists: they consult the plan armed for the next server created on
 * the calling thread, which then becomes that server's own plan.
 */
#ifndef NEA_FAULT_H
#define NEA_FAULT_H

#include <stdbool.h>

typedef enum {
    NEA__FAULT_ARENA,  /* an arena grant (every allocation from a request arena) */
    NEA__FAULT_MAP,    /* mmap of the reservation */
    NEA__FAULT_GUARD,  /* mprotect of one guard page */
    NEA__FAULT_LOCK,   /* mlock of one usable range */
    NEA__FAULT_LISTEN, /* bind/listen of the listener */
    NEA__FAULT_ACCEPT, /* accepting one connection into a slot */
    NEA__FAULT_BALANCE, /* loading the workers' balance program (as without CAP_BPF) */
    NEA__FAULT_POINTS
} nea__fault_point;

typedef struct nea__fault_counter {
    unsigned long nth; /* occurrence that fails; 0 = disarmed */
    bool persistent;   /* and every later one */
    unsigned long seen;
    unsigned long failed;
} nea__fault_counter;

typedef struct nea__fault {
    nea__fault_counter at[NEA__FAULT_POINTS];
} nea__fault;

#ifdef NEA_FAULT_INJECTION
/* Arms point pt of f: the nth occurrence from now fails (1 = the next one);
 * persistent: every later one too; nth = 0 disarms. Resets the counts. */
void nea__fault_arm(nea__fault *f, nea__fault_point pt, unsigned long nth, bool persistent);
/* Counts one occurrence of pt; true when it must fail. f may be NULL. */
bool nea__fault_hit(nea__fault *f, nea__fault_point pt);
unsigned long nea__fault_seen(const nea__fault *f, nea__fault_point pt);
unsigned long nea__fault_failed(const nea__fault *f, nea__fault_point pt);
/* The plan the next nea_server_new on this thread starts with (and uses for
 * the mapping steps); it is cleared when that server takes it over. */
nea__fault *nea__fault_next_server(void);
#else
#define nea__fault_hit(f, pt) ((void)(f), false)
#endif

#endif /* NEA_FAULT_H */
