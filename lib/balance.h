/*
 * balance.h - dealing new connections over one server's listening sockets:
 * round-robin, skipping workers that are full, and only while the
 * reuseport group holds that server's sockets alone (see balance.c).
 */
#ifndef NEA_BALANCE_H
#define NEA_BALANCE_H

#include "common.h"

/* How often worker 0 looks again at who shares its reuseport group. */
#define NEA__BALANCE_CHECK_MS 1000

typedef struct nea__balance {
    int flags_map; /* entry 0: the round-robin counter; entry 1 + i: worker i is full */
    int socks_map; /* entry i: worker i's listening socket */
    unsigned n;
    bool attached; /* the program deals this group's connections */
} nea__balance;

/* Makes the maps for the n listening sockets fds[] (worker i: fds[i]; each
 * listening, with SO_REUSEPORT). Returns 0, or a negative errno (e.g.
 * UV_EPERM without CAP_BPF; nothing is left open then). */
int nea__balance_init(nea__balance *b, const int *fds, unsigned n);
/* Whether the reuseport group of fds[0]'s address holds exactly the
 * sockets fds[] (1), or others too (0: another server or process serves
 * the address), from the kernel's list of listening sockets
 * (NETLINK_SOCK_DIAG); a negative errno when it cannot tell. */
int nea__balance_alone(const int *fds, unsigned n);
/* Deals the group's connections with b's program, loaded now (it replaces
 * any program the group had). fd: one of b's sockets. Returns 0 or a
 * negative errno. */
int nea__balance_attach(nea__balance *b, int fd);
/* The group's connections are spread by the kernel's hash again (whoever
 * attached the program). Returns 0, or a negative errno (UV_ENOENT: no
 * program was attached). */
int nea__balance_detach(nea__balance *b, int fd);
/* Tells the program whether worker i has a free connection slot (any
 * thread; one system call: call it on changes only). */
void nea__balance_set_full(int flags_map, unsigned i, bool full);
/* Closes the maps (the kernel frees them with the last program). */
void nea__balance_close(nea__balance *b);

#endif /* NEA_BALANCE_H */
