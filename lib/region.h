/*
 * region.h - the one anonymous mapping a server lives in (see region.c).
 */
#ifndef NEA_REGION_H
#define NEA_REGION_H

#include "fault.h"
#include "plan.h"

typedef struct nea__region {
    char *base;
    size_t size;
    size_t page;
    bool locked;
} nea__region;

/* Maps plan->total bytes and, per cfg, protects the guard pages, prefaults
 * and locks the usable ranges (where plan and layout put them), before
 * anything is stored in the mapping. Returns 0, or a UV_E* error from
 * mmap/mprotect, or NEA_EMLOCK; the reason is logged through cfg and nothing
 * stays mapped on failure. */
int nea__region_prepare(nea__region *r, const nea_plan *plan, const nea__layout *layout,
                        const nea_config *cfg, nea__fault *fault);
void nea__region_unmap(nea__region *r);

#endif /* NEA_REGION_H */
