/*
 * balance.h - dealing new connections over the workers' listening sockets:
 * round-robin, skipping workers that are full (see balance.c).
 */
#ifndef NEA_BALANCE_H
#define NEA_BALANCE_H

#include "common.h"

/* Attaches the program to the SO_REUSEPORT group of the listening socket
 * fd, whose n sockets joined it in worker order. Returns the map's file
 * descriptor (>= 0; close it when the group is gone), or a negative errno
 * (e.g. UV_EPERM without CAP_BPF): the kernel then keeps hashing
 * connections over the sockets. */
int nea__balance_attach(int fd, unsigned n);
/* Tells the program whether worker i has a free connection slot (any
 * thread; one system call: call it on changes only). */
void nea__balance_set_full(int map, unsigned i, bool full);

#endif /* NEA_BALANCE_H */
