/*
 * arena_bench.c - micro-benchmark: libnea's arena allocator vs malloc/free for
 * the allocation mix of one demo request. Not a test: it prints figures.
 *
 * Per request, both sides make the same 14 allocations and touch each:
 *   a 400-byte request struct, a 300-byte copy of the head, 10 header index
 *   entries of 16 bytes, one body block cycling 1..50 KiB, one 32-byte printf;
 * then release everything: nea__arena_reset on one side (NEA_SCRUB_NONE, as in
 * the default config), 14 free() calls on the other. Times are
 * clock_gettime(CLOCK_MONOTONIC) over ~2 million allocations per round, 5
 * rounds per side (interleaved, after a warm-up), median reported.
 *
 * Build and run (from the repository root; the arena functions are internal, so
 * it links the static testing library, which NEA_BUILD_TESTS=ON provides):
 *
 *   cmake -S . -B build-tools -DCMAKE_BUILD_TYPE=Release -DNEA_BUILD_TOOLS=ON && \
 *     cmake --build build-tools --target arena_bench
 *   build-tools/tools/arena_bench [allocations-per-round]
 */
#include "arena.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define ROUNDS 5
#define ALLOCS_PER_REQUEST 14
#define ARENA_BYTES ((size_t)64 * 1024)

static const char head[300] = "GET /svg?width=640&height=480 HTTP/1.1\r\nHost: localhost:8080\r\n"
                              "User-Agent: bench/1.0\r\nAccept: */*\r\nAccept-Encoding: gzip\r\n";

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static size_t block_size(size_t i)
{
    return (i % 50 + 1) * 1024; /* 1..50 KiB, cycling */
}

/* Every allocation is written and read back into the checksum, so the compiler
 * cannot drop a malloc/free pair as unused. */
static uint64_t sink;

static uint64_t run_arena(nea__arena *a, size_t requests)
{
    uint64_t t0 = now_ns(), sum = 0;
    for (size_t i = 0; i < requests; i++) {
        char *req = nea__arena_alloc(a, 400, NEA__ALIGN);
        char *copy = nea__arena_alloc(a, sizeof(head), 1);
        char *block, *line;
        memset(req, 0, 400);
        memcpy(copy, head, sizeof(head));
        for (int h = 0; h < 10; h++) {
            char *e = nea__arena_alloc(a, 16, NEA__ALIGN);
            e[0] = (char)h;
            sum += (unsigned char)e[0];
        }
        block = nea__arena_alloc(a, block_size(i), NEA__ALIGN);
        block[0] = 'b';
        block[block_size(i) - 1] = 'e';
        line = nea__arena_alloc(a, 32, 1);
        snprintf(line, 32, "%zu bytes", block_size(i));
        sum += (uint64_t)(unsigned char)req[0] + (unsigned char)copy[5] + (unsigned char)block[0] +
               (unsigned char)line[0];
        nea__arena_reset(a, NEA_SCRUB_NONE);
    }
    sink += sum;
    return now_ns() - t0;
}

static uint64_t run_malloc(size_t requests)
{
    uint64_t t0 = now_ns(), sum = 0;
    for (size_t i = 0; i < requests; i++) {
        char *req = malloc(400);
        char *copy = malloc(sizeof(head));
        char *hdr[10];
        char *block, *line;
        memset(req, 0, 400);
        memcpy(copy, head, sizeof(head));
        for (int h = 0; h < 10; h++) {
            hdr[h] = malloc(16);
            hdr[h][0] = (char)h;
            sum += (unsigned char)hdr[h][0];
        }
        block = malloc(block_size(i));
        block[0] = 'b';
        block[block_size(i) - 1] = 'e';
        line = malloc(32);
        snprintf(line, 32, "%zu bytes", block_size(i));
        sum += (uint64_t)(unsigned char)req[0] + (unsigned char)copy[5] + (unsigned char)block[0] +
               (unsigned char)line[0];
        free(line);
        free(block);
        for (int h = 10; h-- > 0;) {
            free(hdr[h]);
        }
        free(copy);
        free(req);
    }
    sink += sum;
    return now_ns() - t0;
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return (a > b) - (a < b);
}

static double median_ns_per_alloc(uint64_t *t, size_t allocs)
{
    qsort(t, ROUNDS, sizeof(*t), cmp_u64);
    return (double)t[ROUNDS / 2] / (double)allocs;
}

int main(int argc, char **argv)
{
    size_t target = argc > 1 ? strtoul(argv[1], NULL, 10) : 2000000;
    size_t requests = (target + ALLOCS_PER_REQUEST - 1) / ALLOCS_PER_REQUEST;
    size_t allocs = requests * ALLOCS_PER_REQUEST;
    uint64_t ta[ROUNDS], tm[ROUNDS];
    nea__arena arena;
    char *mem;
    double a, m;

    mem = mmap(NULL, ARENA_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    memset(mem, 0, ARENA_BYTES); /* resident, like a prefaulted reservation */
    nea__arena_init(&arena, mem, ARENA_BYTES, NULL);

    (void)run_arena(&arena, requests / 10 + 1); /* warm-up: page faults, caches, */
    (void)run_malloc(requests / 10 + 1);        /* and malloc's free lists */
    for (int r = 0; r < ROUNDS; r++) {
        ta[r] = run_arena(&arena, requests);
        tm[r] = run_malloc(requests);
    }
    a = median_ns_per_alloc(ta, allocs);
    m = median_ns_per_alloc(tm, allocs);

    printf("arena_bench: %zu requests x %d allocations = %zu allocations per round, "
           "median of %d rounds\n",
           requests, ALLOCS_PER_REQUEST, allocs, ROUNDS);
    printf("  arena  (nea__arena_alloc + nea__arena_reset): %7.2f ns/alloc  %8.1f ns/request\n", a,
           a * ALLOCS_PER_REQUEST);
    printf("  malloc (malloc + free):                       %7.2f ns/alloc  %8.1f ns/request\n", m,
           m * ALLOCS_PER_REQUEST);
    printf("  malloc / arena: %.2fx\n", m / a);
    printf("  (checksum %llu)\n", (unsigned long long)sink);
    munmap(mem, ARENA_BYTES);
    return 0;
}
