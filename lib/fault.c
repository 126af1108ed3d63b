/*
 * fault.c - the failure-injection counters of fault.h. Built only into the
 * test library (NEA_FAULT_INJECTION); every counter belongs to one server,
 * or to the thread-local plan waiting for the next one.
 */
#include "fault.h"

#include <string.h>

static _Thread_local nea__fault next_server;

void nea__fault_arm(nea__fault *f, nea__fault_point pt, unsigned long nth, bool persistent)
{
    nea__fault_counter *c = &f->at[pt];
    c->nth = nth;
    c->persistent = persistent;
    c->seen = 0;
    c->failed = 0;
}

bool nea__fault_hit(nea__fault *f, nea__fault_point pt)
{
    nea__fault_counter *c;
    if (f == NULL || f->at[pt].nth == 0) {
        return false;
    }
    c = &f->at[pt];
    c->seen++;
    if (c->seen == c->nth || (c->persistent && c->seen > c->nth)) {
        c->failed++;
        return true;
    }
    return false;
}

unsigned long nea__fault_seen(const nea__fault *f, nea__fault_point pt)
{
    return f->at[pt].seen;
}

unsigned long nea__fault_failed(const nea__fault *f, nea__fault_point pt)
{
    return f->at[pt].failed;
}

nea__fault *nea__fault_next_server(void)
{
    return &next_server;
}
