/*
 * consumer.c - an out-of-tree program built against an installed libnea, once
 * through find_package(nea) and once through pkg-config. It only needs the
 * header, the library and libuv to resolve: it computes the default plan and
 * succeeds when the reservation is non-empty.
 */
#include <stdio.h>

#include <nea.h>

int main(void)
{
    nea_config cfg;
    nea_plan plan;
    char err[256] = "";

    nea_config_init(&cfg);
    int rc = nea_config_plan(&cfg, &plan, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "nea_config_plan: %s: %s\n", nea_strerror(rc), err);
        return 1;
    }
    printf("nea plan total: %zu bytes\n", plan.total);
    return plan.total > 0 ? 0 : 1;
}
