/*
 * balance.c - dealing new connections over one server's listening sockets:
 * round-robin, skipping workers that are full, and only while the
 * reuseport group holds that server's sockets alone.
 *
 * With SO_REUSEPORT alone the kernel picks a listening socket by a hash of
 * the connection's addresses and ports: fair on average, but a load of 64
 * keep-alive connections lands 36/28 on two workers as often as not, and a
 * worker with no free slot keeps getting its share (it answers them 503 at
 * once while a sibling may have room). A reuseport eBPF program may pick the
 * socket itself. This one (BPF_PROG_TYPE_SK_REUSEPORT) keeps two maps: an
 * array, entry 0 a counter and entry 1 + i worker i's "full" flag; and a
 * socket array, entry i worker i's listening socket. Per new connection it
 * takes counter++ (an atomic fetch-and-add, so SYNs on several CPUs at once
 * still get consecutive numbers), starts at worker counter % n and selects
 * the first of up to PROBES workers from there that is not full; when all
 * of those are full, the first (it answers 503 at once). Work per
 * connection: a few map lookups in the kernel, nothing in libnea's request
 * path; a worker writes its flag (a system call) only when it becomes full
 * or stops being full.
 *
 * The program can only select sockets from its own socket array: it never
 * deals another server's sockets, whatever order the group is in. But a
 * reuseport group has one program for all its sockets, and another server
 * or process that binds the same address with SO_REUSEPORT joins the group
 * (a second process during a rolling restart, two embedded servers): under
 * this program it would get no connection at all. So the program is
 * attached only while the group holds this server's sockets alone, read
 * from the kernel's list of listening sockets (NETLINK_SOCK_DIAG: every
 * listening socket on the address, by inode, against the inodes of this
 * server's descriptors). A server that finds others in its group detaches
 * whatever program the group has, so the kernel's hash spreads connections
 * over everyone's sockets; worker 0 looks again every
 * NEA__BALANCE_CHECK_MS and re-attaches once it is alone (server.c). A
 * successor handed this server's sockets finds them alone in the group and
 * attaches its own program.
 *
 * Loading needs CAP_BPF (or CAP_SYS_ADMIN) and Linux 5.12 (atomic fetch in
 * BPF). Without them the maps cannot be made, the caller logs it, and the
 * kernel's hashing stays in place: the workers still share the load, only
 * less evenly. The program lives as long as the socket group (the kernel
 * holds it) or until detached; the maps live as long as the server.
 */
#include "balance.h"

#include <errno.h>
#include <linux/bpf.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SO_ATTACH_REUSEPORT_EBPF
#define SO_ATTACH_REUSEPORT_EBPF 52
#endif
#ifndef SO_DETACH_REUSEPORT_BPF
#define SO_DETACH_REUSEPORT_BPF 68
#endif
#define TCP_LISTEN_STATE 10

#define INSN(c, d, s, o, i)                                                                        \
    ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})

static int bpf_call(int cmd, union bpf_attr *attr)
{
    long rc = syscall(__NR_bpf, cmd, attr, sizeof(*attr));
    return rc < 0 ? -errno : (int)rc;
}

/* Workers looked at per connection, from the round-robin one. */
#define PROBES 4

/* r1 (or r2) = the map fd as a map pointer: 2 instructions. */
static size_t ld_map(struct bpf_insn *p, bool r2, int map)
{
    if (r2) {
        p[0] = INSN(BPF_LD | BPF_DW | BPF_IMM, BPF_REG_2, BPF_PSEUDO_MAP_FD, 0, map);
    } else {
        p[0] = INSN(BPF_LD | BPF_DW | BPF_IMM, BPF_REG_1, BPF_PSEUDO_MAP_FD, 0, map);
    }
    p[1] = INSN(0, 0, 0, 0, 0);
    return 2;
}

/* r0 = lookup(map, key at fp + off): 5 instructions. */
static size_t lookup(struct bpf_insn *p, int map, int16_t off)
{
    size_t i = ld_map(p, false, map);
    p[i++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_2, BPF_REG_10, 0, 0);
    p[i++] = INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_2, 0, 0, off);
    p[i++] = INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem);
    return i;
}

/* Selects the socket of the worker in r7 (the round-robin one) or r8 (a
 * probe's), the context being in r6; returns SK_PASS when that worked,
 * else falls through: 11 instructions. */
static size_t select_worker(struct bpf_insn *p, int socks, bool r7)
{
    size_t i = 0;
    if (r7) {
        p[i++] = INSN(BPF_STX | BPF_MEM | BPF_W, BPF_REG_10, BPF_REG_7, -12, 0);
    } else {
        p[i++] = INSN(BPF_STX | BPF_MEM | BPF_W, BPF_REG_10, BPF_REG_8, -12, 0);
    }
    p[i++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_1, BPF_REG_6, 0, 0);
    i += ld_map(p + i, true, socks);
    p[i++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_3, BPF_REG_10, 0, 0);
    p[i++] = INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_3, 0, 0, -12);
    p[i++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_4, 0, 0, 0);
    p[i++] = INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_sk_select_reuseport);
    p[i++] = INSN(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_0, 0, 2, 0);
    p[i++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, SK_PASS);
    p[i++] = INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
    return i;
}

/* One probe of worker (r7 + k) % n: skipped (a jump past it) when that
 * worker is full or has no entry; selected otherwise. */
static size_t probe(struct bpf_insn *p, int flags, int socks, unsigned k, unsigned n)
{
    struct bpf_insn sel[16];
    size_t i = 0, nsel = select_worker(sel, socks, false);
    /* r8 = (r7 + k) % n; key = r8 + 1 at fp - 8 */
    p[i++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_8, BPF_REG_7, 0, 0);
    p[i++] = INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_8, 0, 0, (int32_t)k);
    p[i++] = INSN(BPF_ALU64 | BPF_MOD | BPF_K, BPF_REG_8, 0, 0, (int32_t)n);
    p[i++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_1, BPF_REG_8, 0, 0);
    p[i++] = INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_1, 0, 0, 1);
    p[i++] = INSN(BPF_STX | BPF_MEM | BPF_W, BPF_REG_10, BPF_REG_1, -8, 0);
    i += lookup(p + i, flags, -8);
    /* no entry, or full: past the selection, to the next probe */
    p[i++] = INSN(BPF_JMP | BPF_JEQ | BPF_K, BPF_REG_0, 0, (int16_t)(nsel + 2), 0);
    p[i++] = INSN(BPF_LDX | BPF_MEM | BPF_DW, BPF_REG_1, BPF_REG_0, 0, 0);
    p[i++] = INSN(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_1, 0, (int16_t)nsel, 0);
    memcpy(p + i, sel, nsel * sizeof(*sel));
    return i + nsel;
}

static int load(int flags, int socks, unsigned n)
{
    struct bpf_insn insns[32 + PROBES * 40];
    union bpf_attr attr;
    size_t i = 0;

    insns[i++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_6, BPF_REG_1, 0, 0); /* the context */
    /* key 0 at fp - 4; r0 = lookup(flags, &key) */
    insns[i++] = INSN(BPF_ST | BPF_MEM | BPF_W, BPF_REG_10, 0, -4, 0);
    i += lookup(insns + i, flags, -4);
    /* no entry (cannot happen): no selection, the kernel hashes */
    insns[i++] = INSN(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_0, 0, 2, 0);
    insns[i++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, SK_PASS);
    insns[i++] = INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
    /* r7 = fetch_add(*r0, 1) % n: the round-robin start */
    insns[i++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_1, 0, 0, 1);
    insns[i++] = INSN(BPF_STX | BPF_DW | BPF_ATOMIC, BPF_REG_0, BPF_REG_1, 0, BPF_ADD | BPF_FETCH);
    insns[i++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_7, BPF_REG_1, 0, 0);
    insns[i++] = INSN(BPF_ALU64 | BPF_MOD | BPF_K, BPF_REG_7, 0, 0, (int32_t)n);
    for (unsigned k = 0; k < PROBES && k < n; k++) {
        i += probe(insns + i, flags, socks, k, n);
    }
    /* every probed worker full: the round-robin one answers 503 */
    i += select_worker(insns + i, socks, true);
    insns[i++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, SK_PASS);
    insns[i++] = INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);

    memset(&attr, 0, sizeof(attr));
    attr.prog_type = BPF_PROG_TYPE_SK_REUSEPORT;
    attr.insns = (uint64_t)(uintptr_t)insns;
    attr.insn_cnt = (uint32_t)i;
    attr.license = (uint64_t)(uintptr_t) "MIT";
    return bpf_call(BPF_PROG_LOAD, &attr);
}

static int map_create(uint32_t type, uint32_t value_size, uint32_t entries)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.map_type = type;
    attr.key_size = sizeof(uint32_t);
    attr.value_size = value_size;
    attr.max_entries = entries;
    return bpf_call(BPF_MAP_CREATE, &attr);
}

static int map_update(int map, uint32_t key, uint64_t value)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.map_fd = (uint32_t)map;
    attr.key = (uint64_t)(uintptr_t)&key;
    attr.value = (uint64_t)(uintptr_t)&value;
    attr.flags = BPF_ANY;
    return bpf_call(BPF_MAP_UPDATE_ELEM, &attr);
}

int nea__balance_init(nea__balance *b, const int *fds, unsigned n)
{
    int rc = 0;
    memset(b, 0, sizeof(*b));
    b->n = n;
    b->flags_map = map_create(BPF_MAP_TYPE_ARRAY, sizeof(uint64_t), 1 + n);
    if (b->flags_map < 0) {
        return b->flags_map;
    }
    b->socks_map = map_create(BPF_MAP_TYPE_REUSEPORT_SOCKARRAY, sizeof(uint64_t), n);
    rc = b->socks_map < 0 ? b->socks_map : 0;
    for (unsigned i = 0; i < n && rc == 0; i++) {
        rc = map_update(b->socks_map, i, (uint64_t)fds[i]);
    }
    if (rc != 0) {
        nea__balance_close(b);
    }
    return rc;
}

int nea__balance_attach(nea__balance *b, int fd)
{
    int prog = load(b->flags_map, b->socks_map, b->n), rc;
    if (prog < 0) {
        return prog;
    }
    rc = setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &prog, sizeof(prog));
    rc = rc == 0 ? 0 : -errno;
    close(prog); /* the socket group holds the program, the program the maps */
    b->attached = b->attached || rc == 0;
    return rc;
}

int nea__balance_detach(nea__balance *b, int fd)
{
    int unused = 0;
    int rc = setsockopt(fd, SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, &unused, sizeof(unused));
    if (b != NULL) {
        b->attached = false;
    }
    return rc == 0 ? 0 : -errno;
}

void nea__balance_set_full(int flags_map, unsigned i, bool full)
{
    (void)map_update(flags_map, 1 + i, full);
}

void nea__balance_close(nea__balance *b)
{
    if (b->flags_map >= 0) {
        close(b->flags_map);
    }
    if (b->socks_map >= 0) {
        close(b->socks_map);
    }
    b->flags_map = b->socks_map = -1;
    b->attached = false;
}

/* --- who else is in the group -------------------------------------------- */

typedef union {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
    struct sockaddr_storage ss;
} any_addr;

/* diag's socket is bound to exactly addr. */
static bool same_address(const struct inet_diag_msg *m, const any_addr *addr)
{
    if (addr->sa.sa_family == AF_INET) {
        return m->id.idiag_sport == addr->in4.sin_port &&
               m->id.idiag_src[0] == addr->in4.sin_addr.s_addr;
    }
    return m->id.idiag_sport == addr->in6.sin6_port &&
           memcmp(m->id.idiag_src, &addr->in6.sin6_addr, sizeof(addr->in6.sin6_addr)) == 0;
}

static bool one_of(uint32_t inode, const ino_t *inodes, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (inodes[i] == inode) {
            return true;
        }
    }
    return false;
}

/* Walks one reply; returns 1 when the dump is over, 0 for more, or a
 * negative errno. *foreign counts sockets on addr not among inodes. */
static int read_reply(const char *buf, size_t len, const any_addr *addr, const ino_t *inodes,
                      unsigned n, unsigned *foreign)
{
    const struct nlmsghdr *h = (const struct nlmsghdr *)(const void *)buf;
    for (; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
        const struct inet_diag_msg *m;
        if (h->nlmsg_type == NLMSG_DONE) {
            return 1;
        }
        if (h->nlmsg_type == NLMSG_ERROR) {
            const struct nlmsgerr *e = NLMSG_DATA(h);
            return e->error < 0 ? e->error : -EIO;
        }
        m = NLMSG_DATA(h);
        if (m->idiag_state == TCP_LISTEN_STATE && same_address(m, addr) &&
            !one_of(m->idiag_inode, inodes, n)) {
            (*foreign)++;
        }
    }
    return 0;
}

int nea__balance_alone(const int *fds, unsigned n)
{
    struct {
        struct nlmsghdr h;
        struct inet_diag_req_v2 r;
    } req;
    ino_t inodes[1024];
    any_addr addr;
    socklen_t alen = sizeof(addr);
    unsigned foreign = 0;
    long buf[2048]; /* 16 KiB, aligned for the headers */
    int nl, rc = 0;

    if (n == 0 || n > sizeof(inodes) / sizeof(inodes[0]) ||
        getsockname(fds[0], &addr.sa, &alen) != 0 ||
        (addr.sa.sa_family != AF_INET && addr.sa.sa_family != AF_INET6)) {
        return -EINVAL;
    }
    for (unsigned i = 0; i < n; i++) {
        struct stat st;
        if (fstat(fds[i], &st) != 0) {
            return -errno;
        }
        inodes[i] = st.st_ino;
    }
    nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (nl < 0) {
        return -errno;
    }
    memset(&req, 0, sizeof(req));
    req.h.nlmsg_len = sizeof(req);
    req.h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.r.sdiag_family = (uint8_t)addr.sa.sa_family;
    req.r.sdiag_protocol = IPPROTO_TCP;
    req.r.idiag_states = 1u << TCP_LISTEN_STATE;
    if (send(nl, &req, sizeof(req), 0) < 0) {
        rc = -errno;
    }
    while (rc == 0) {
        ssize_t got = recv(nl, buf, sizeof(buf), 0);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        rc = got < 0    ? -errno
             : got == 0 ? -EIO
                        : read_reply((const char *)buf, (size_t)got, &addr, inodes, n, &foreign);
    }
    close(nl);
    return rc < 0 ? rc : foreign == 0;
}
