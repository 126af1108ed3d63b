"""two_processes: two nea-demo --workers 2 on one address (python3 -B test/reliability/two_processes.py).

A rolling restart on one host, or two binaries side by side, puts two
processes in one SO_REUSEPORT group. Each nea-demo deals its connections
round-robin over its own workers with a reuseport program while the group is
its own; the second process finds the group shared and leaves the dealing to
the kernel's hash, and the first one notices within a second. 200 fresh
connections (GET /stats, Connection: close) are counted by the pid that
answered.

Invariant: each process answers at least 25% of the 200 connections. Then
the second one stops and the first deals round-robin again (its log says so
within NEA__BALANCE_CHECK_MS plus a margin; only where the program can be
loaded).
"""

import common as C

CONNECTIONS = 200


def run(args, rep):
    demo_bin, _ = C.tools()
    a = C.Demo(demo_bin, ["--workers", "2"], tag="first")
    if not a.started:
        raise SystemExit("two_processes: the first demo did not start")
    b = C.Demo(demo_bin, ["--workers", "2"], tag="second", port=a.port)
    if not b.started:
        raise SystemExit("two_processes: the second demo did not start on the first one's port")
    got = {a.pid: 0, b.pid: 0, None: 0}
    for _ in range(CONNECTIONS):
        who = C.stats_pid(a.port)
        got[who if who in got else None] += 1
    first_sees = C.wait_for(lambda: a.stderr_count("another server or process listens") > 0, 3)
    code_b = b.stop()
    balanced = a.stderr_count("dealt round-robin")
    back = C.wait_for(lambda: a.stderr_count("dealt round-robin") > balanced, 3) if balanced else None
    code_a = a.stop()
    C.table(f"two_processes: {CONNECTIONS} connections to 127.0.0.1:{a.port}, two nea-demo "
            "--workers 2", ["process", "pid", "connections", "share"],
            [["first", a.pid, got[a.pid], f"{got[a.pid] / CONNECTIONS:.1%}"],
             ["second", b.pid, got[b.pid], f"{got[b.pid] / CONNECTIONS:.1%}"],
             ["no answer", "-", got[None], "-"]])
    rep.hard("each process answers >= 25% of the connections",
             got[a.pid] >= CONNECTIONS // 4 and got[b.pid] >= CONNECTIONS // 4,
             f"{got[a.pid]} / {got[b.pid]}", f">= {CONNECTIONS // 4} each")
    rep.hard("every connection answered", got[None] == 0, got[None], 0)
    rep.target("the first process notices the shared group", bool(first_sees), bool(first_sees),
               "within 3 s")
    rep.target("alone again, the first process deals round-robin again",
               None if back is None else bool(back), "n/a (no program here)" if back is None
               else bool(back), "within 3 s")
    rep.hard("both exit 0 after SIGTERM", code_a == 0 and code_b == 0, f"{code_a}/{code_b}", "0/0")
    rep.figures = {"first": got[a.pid], "second": got[b.pid], "unanswered": got[None]}


if __name__ == "__main__":
    raise SystemExit(C.main("two_processes", __doc__, run, 60, 60))
