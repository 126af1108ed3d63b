/*
 * balance.h - dealing new connections round-robin over the workers'
 * listening sockets (see balance.c).
 */
#ifndef NEA_BALANCE_H
#define NEA_BALANCE_H

#include "common.h"

/* Attaches the round-robin program to the SO_REUSEPORT group of the
 * listening socket fd, whose n sockets joined it in worker order. Returns 0,
 * or a negative errno (e.g. UV_EPERM without CAP_BPF): the kernel then keeps
 * hashing connections over the sockets. */
int nea__balance_attach(int fd, unsigned n);

#endif /* NEA_BALANCE_H */
