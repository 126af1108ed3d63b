/*
 * child.h - running code that must crash (abort, fault) in a fork()ed
 * child and looking only at how the child ended and what it wrote to
 * stderr.
 */
#ifndef NEA_TEST_CHILD_H
#define NEA_TEST_CHILD_H

#include <stddef.h>

typedef struct t_child {
    int status;         /* from waitpid */
    char stderr_[4096]; /* what the child wrote to stderr (NUL-terminated) */
} t_child;

/* Runs fn(arg) in a child whose stderr goes to a temporary file and whose
 * SIGABRT, SIGSEGV and SIGBUS have their default actions (cmocka's handlers
 * would turn them into a failed test inside the child); the child exits 0
 * when fn returns. */
void t_child_run(void (*fn)(void *arg), void *arg, t_child *out);
/* Asserts the child died of SIGABRT and its stderr contains needle. */
void t_child_aborted(const t_child *c, const char *needle);

#endif
