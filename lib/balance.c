/*
 * balance.c - dealing new connections over the workers' listening sockets:
 * round-robin, skipping workers that are full.
 *
 * With SO_REUSEPORT alone the kernel picks a listening socket by a hash of
 * the connection's addresses and ports: fair on average, but a load of 64
 * keep-alive connections lands 36/28 on two workers as often as not, and a
 * worker with no free slot keeps getting its share (it answers them 503 at
 * once while a sibling may have room). A reuseport eBPF program may pick the
 * socket itself. This one keeps an array map: entry 0 a counter, entry 1 + i
 * worker i's "full" flag. Per new connection it takes counter++ (an atomic
 * fetch-and-add, so SYNs on several CPUs at once still get consecutive
 * numbers), starts at socket counter % n (sockets are numbered in the
 * order they started listening: worker order) and returns the first of up
 * to PROBES workers from there that is not full; when all of those are full,
 * the first (it answers 503 at once). Work per connection: a few map
 * lookups in the kernel, nothing in libnea's request path; a worker writes
 * its flag (a system call) only when it becomes full or stops being full.
 *
 * Loading it needs CAP_BPF (or CAP_SYS_ADMIN) and Linux 5.12 (atomic fetch
 * in BPF). Without them the attach fails, the caller logs it, and the
 * kernel's hashing stays in place: the workers still share the load, only
 * less evenly. The program lives as long as the socket group (the kernel
 * holds it); the map's descriptor is kept for the flags until close.
 */
#include "balance.h"

#include <errno.h>
#include <linux/bpf.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SO_ATTACH_REUSEPORT_EBPF
#define SO_ATTACH_REUSEPORT_EBPF 52
#endif

#define INSN(c, d, s, o, i)                                                                        \
    ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})

static int bpf_call(int cmd, union bpf_attr *attr)
{
    long rc = syscall(__NR_bpf, cmd, attr, sizeof(*attr));
    return rc < 0 ? -errno : (int)rc;
}

/* Workers looked at per connection, from the round-robin one. */
#define PROBES 4

/* r0 = lookup(map, key at fp + off): 5 instructions. */
static size_t lookup(struct bpf_insn *p, int map, int16_t off)
{
    p[0] = INSN(BPF_LD | BPF_DW | BPF_IMM, BPF_REG_1, BPF_PSEUDO_MAP_FD, 0, map);
    p[1] = INSN(0, 0, 0, 0, 0);
    p[2] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_2, BPF_REG_10, 0, 0);
    p[3] = INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_2, 0, 0, off);
    p[4] = INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem);
    return 5;
}

/* Instructions for one probe of worker (r7 + k) % n; jumps past the probe
 * (to the next one) when that worker is full or has no entry. */
static size_t probe(struct bpf_insn *p, int map, unsigned k, unsigned n)
{
    size_t i = 0;
    /* r8 = (r7 + k) % n; key = r8 + 1 at fp - 8 */
    p[i++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_8, BPF_REG_7, 0, 0);
    p[i++] = INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_8, 0, 0, (int32_t)k);
    p[i++] = INSN(BPF_ALU64 | BPF_MOD | BPF_K, BPF_REG_8, 0, 0, (int32_t)n);
    p[i++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_1, BPF_REG_8, 0, 0);
    p[i++] = INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_1, 0, 0, 1);
    p[i++] = INSN(BPF_STX | BPF_MEM | BPF_W, BPF_REG_10, BPF_REG_1, -8, 0);
    i += lookup(p + i, map, -8);
    /* no entry, or full: next probe */
    p[i++] = INSN(BPF_JMP | BPF_JEQ | BPF_K, BPF_REG_0, 0, 4, 0);
    p[i++] = INSN(BPF_LDX | BPF_MEM | BPF_DW, BPF_REG_1, BPF_REG_0, 0, 0);
    p[i++] = INSN(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_1, 0, 2, 0);
    /* free: this worker */
    p[i++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_0, BPF_REG_8, 0, 0);
    p[i++] = INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
    return i;
}

static int load(int map, unsigned n)
{
    struct bpf_insn insns[16 + PROBES * 16];
    union bpf_attr attr;
    size_t i = 0;

    /* key 0 at fp - 4; r0 = lookup(map, &key) */
    insns[i++] = INSN(BPF_ST | BPF_MEM | BPF_W, BPF_REG_10, 0, -4, 0);
    i += lookup(insns + i, map, -4);
    /* no entry (cannot happen): an index past the end, the kernel hashes */
    insns[i++] = INSN(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_0, 0, 2, 0);
    insns[i++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, (int32_t)n);
    insns[i++] = INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
    /* r7 = fetch_add(*r0, 1) % n: the round-robin start */
    insns[i++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_1, 0, 0, 1);
    insns[i++] = INSN(BPF_STX | BPF_DW | BPF_ATOMIC, BPF_REG_0, BPF_REG_1, 0, BPF_ADD | BPF_FETCH);
    insns[i++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_7, BPF_REG_1, 0, 0);
    insns[i++] = INSN(BPF_ALU64 | BPF_MOD | BPF_K, BPF_REG_7, 0, 0, (int32_t)n);
    for (unsigned k = 0; k < PROBES && k < n; k++) {
        i += probe(insns + i, map, k, n);
    }
    /* every probed worker full: the round-robin one answers 503 */
    insns[i++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_0, BPF_REG_7, 0, 0);
    insns[i++] = INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);

    memset(&attr, 0, sizeof(attr));
    attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
    attr.insns = (uint64_t)(uintptr_t)insns;
    attr.insn_cnt = (uint32_t)i;
    attr.license = (uint64_t)(uintptr_t) "MIT";
    return bpf_call(BPF_PROG_LOAD, &attr);
}

int nea__balance_attach(int fd, unsigned n)
{
    union bpf_attr attr;
    int map, prog, rc;

    memset(&attr, 0, sizeof(attr));
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = sizeof(uint32_t);
    attr.value_size = sizeof(uint64_t);
    attr.max_entries = 1 + n;
    map = bpf_call(BPF_MAP_CREATE, &attr);
    if (map < 0) {
        return map;
    }
    prog = load(map, n);
    if (prog < 0) {
        close(map);
        return prog;
    }
    rc = setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &prog, sizeof(prog));
    rc = rc == 0 ? 0 : -errno;
    close(prog); /* the socket group holds the program, the program the map */
    if (rc != 0) {
        close(map);
        return rc;
    }
    return map;
}

void nea__balance_set_full(int map, unsigned i, bool full)
{
    union bpf_attr attr;
    uint32_t key = 1 + i;
    uint64_t value = full;
    memset(&attr, 0, sizeof(attr));
    attr.map_fd = (uint32_t)map;
    attr.key = (uint64_t)(uintptr_t)&key;
    attr.value = (uint64_t)(uintptr_t)&value;
    attr.flags = BPF_ANY;
    (void)bpf_call(BPF_MAP_UPDATE_ELEM, &attr);
}
