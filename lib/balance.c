/*
 * balance.c - dealing new connections round-robin over the workers'
 * listening sockets.
 *
 * With SO_REUSEPORT alone the kernel picks a listening socket by a hash of
 * the connection's addresses and ports: fair on average, but a load of 64
 * keep-alive connections lands 36/28 on two workers as often as not. A
 * reuseport eBPF program may pick the socket itself; this one keeps one
 * counter in a one-entry array map, adds one per new connection (an atomic
 * fetch-and-add, so concurrent SYNs on several CPUs still get consecutive
 * numbers) and returns counter % n, the index of a socket in the group
 * (sockets are numbered in the order they started listening: worker
 * order). Work per connection: a map lookup and an atomic add in the
 * kernel; nothing in libnea's request path.
 *
 * Loading it needs CAP_BPF (or CAP_SYS_ADMIN) and Linux 5.12 (atomic fetch
 * in BPF). Without them the attach fails, the caller logs it, and the
 * kernel's hashing stays in place: the workers still share the load, only
 * less evenly. The program and map live as long as the socket group (the
 * kernel holds them); their file descriptors are closed at once.
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

int nea__balance_attach(int fd, unsigned n)
{
    union bpf_attr attr;
    int map, prog, rc;

    memset(&attr, 0, sizeof(attr));
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = sizeof(uint32_t);
    attr.value_size = sizeof(uint64_t);
    attr.max_entries = 1;
    map = bpf_call(BPF_MAP_CREATE, &attr);
    if (map < 0) {
        return map;
    }
    {
        const struct bpf_insn insns[] = {
            /* key = 0, on the stack at fp - 4 */
            INSN(BPF_ST | BPF_MEM | BPF_W, BPF_REG_10, 0, -4, 0),
            /* r0 = lookup(map, &key) */
            INSN(BPF_LD | BPF_DW | BPF_IMM, BPF_REG_1, BPF_PSEUDO_MAP_FD, 0, map),
            INSN(0, 0, 0, 0, 0),
            INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_2, BPF_REG_10, 0, 0),
            INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_2, 0, 0, -4),
            INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem),
            /* no entry (cannot happen): an index past the end, the kernel hashes */
            INSN(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_0, 0, 2, 0),
            INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, (int32_t)n),
            INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
            /* r1 = fetch_add(*r0, 1); return r1 % n */
            INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_1, 0, 0, 1),
            INSN(BPF_STX | BPF_DW | BPF_ATOMIC, BPF_REG_0, BPF_REG_1, 0, BPF_ADD | BPF_FETCH),
            INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_0, BPF_REG_1, 0, 0),
            INSN(BPF_ALU64 | BPF_MOD | BPF_K, BPF_REG_0, 0, 0, (int32_t)n),
            INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
        };
        memset(&attr, 0, sizeof(attr));
        attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
        attr.insns = (uint64_t)(uintptr_t)insns;
        attr.insn_cnt = sizeof(insns) / sizeof(insns[0]);
        attr.license = (uint64_t)(uintptr_t) "MIT";
        prog = bpf_call(BPF_PROG_LOAD, &attr);
    }
    if (prog < 0) {
        close(map);
        return prog;
    }
    rc = setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &prog, sizeof(prog)) == 0 ? 0 : -errno;
    close(prog);
    close(map);
    return rc;
}
