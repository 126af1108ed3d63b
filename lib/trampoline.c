/*
 * trampoline.c - protected frames: the out-of-memory unwind's landing pads.
 *
 * Model: Lua's ldo.c. Every entry into handler code goes through a protected
 * frame (a jmp_buf on the C stack, chained through `prev` to the enclosing
 * one). An allocation that cannot be satisfied _longjmp()s to the innermost
 * frame, and the frame's owner (req.c) decides what the unwind means.
 *
 * Invariant: an unwind always lands in a frame of the request whose arena
 * ran out. Unwinding allocators check it at every call (not only when the
 * arena happens to be exhausted), so a handler that allocates outside any
 * frame (from a raw libuv callback) or from another request's arena while a
 * different request's frame is innermost fails at once, with a message that
 * names the rule, instead of blaming the wrong request later.
 *
 * Besides each server's chain, one thread-local pointer names the innermost
 * frame on the thread, so code that gets no request argument (a library's
 * global allocation hooks) can find the request whose handler is running.
 * It is saved and restored by nea__tramp_call on both of its exits, so it
 * is right again after an unwind.
 *
 * _setjmp/_longjmp do not save the signal mask, so there is no syscall on
 * the hot path. The frame lives in nea__tramp_call's stack frame, which is
 * still valid when the unwind lands there.
 */
#include "trampoline.h"

#include <stdio.h>
#include <stdlib.h>

static _Thread_local nea__frame *current;

nea__frame *nea__tramp_current(void)
{
    return current;
}

int nea__tramp_call(nea__trampoline *t, nea_req *req, void (*fn)(nea_req *, void *), void *arg)
{
    nea__frame f;
    /* Not modified after _setjmp: no volatile needed. */
    nea__frame *const outer = current;

    f.prev = t->top;
    f.req = req;
    t->top = &f;
    current = &f;
    if (_setjmp(f.jb) == 0) {
        fn(req, arg);
        t->top = f.prev;
        current = outer;
        return 0;
    }
    current = outer;
    t->top = f.prev;
    return NEA_ENOMEM;
}

void nea__tramp_unwind(nea__trampoline *t, nea_req *req)
{
    nea__frame *f = t->top;
    if (f == NULL || f->req != req) {
        /* nea__tramp_check prevents this; a direct caller that skipped it
         * must not jump into another request's frame. */
        fprintf(stderr, "libnea: out-of-memory unwind without a frame of its request; aborting\n");
        abort();
    }
    _longjmp(f->jb, 1);
}

void nea__tramp_check(const nea__trampoline *t, const nea_req *req, const char *what,
                      const char *path)
{
    if (t->top != NULL && t->top->req == req) {
        return;
    }
    if (t->top == NULL) {
        fprintf(stderr,
                "libnea: %s(request %s) called outside a protected frame: handler code must be "
                "entered through its handler or nea_req_run (handler rule 4); aborting\n",
                what, path != NULL ? path : "-");
    } else {
        fprintf(stderr,
                "libnea: %s(request %s) called while another request's handler code is running: "
                "a handler allocates only from its own request; enter another request with "
                "nea_req_run (handler rule 1); aborting\n",
                what, path != NULL ? path : "-");
    }
    abort();
}
