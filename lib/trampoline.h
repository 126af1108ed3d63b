/*
 * trampoline.h - protected frames and the out-of-memory unwind (see
 * trampoline.c).
 */
#ifndef NEA_TRAMPOLINE_H
#define NEA_TRAMPOLINE_H

#include "nea.h"

#include <setjmp.h>

typedef struct nea__frame {
    struct nea__frame *prev;
    nea_req *req; /* the request whose handler code runs in this frame */
    jmp_buf jb;
} nea__frame;

/* The chain of protected frames on one loop's stack (innermost first). */
typedef struct nea__trampoline {
    nea__frame *top;
} nea__trampoline;

/* Calls fn(req, arg) inside a new frame. Returns 0 when fn returned, or
 * NEA_ENOMEM after an unwind to this frame (the frame is popped either way). */
int nea__tramp_call(nea__trampoline *t, nea_req *req, void (*fn)(nea_req *, void *), void *arg);

/* Unwinds to the innermost frame, which must belong to req (checked by
 * nea__tramp_check before any allocation that may unwind). */
_Noreturn void nea__tramp_unwind(nea__trampoline *t, nea_req *req);

/* The innermost protected frame on the calling thread, whichever server it
 * belongs to; NULL when no handler code is running. Global-hook allocators
 * (adapt.c) find their request through it. */
nea__frame *nea__tramp_current(void);

/* Aborts with a message naming the broken handler rule unless the innermost
 * frame belongs to req: `what` names the call (e.g. "nea_alloc"), `path`
 * identifies req in the message. An unwinding allocation may only happen
 * where its unwind lands in a frame of the same request. */
void nea__tramp_check(const nea__trampoline *t, const nea_req *req, const char *what,
                      const char *path);

#endif /* NEA_TRAMPOLINE_H */
