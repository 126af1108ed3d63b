"""upgrade: a new process takes over under load (python3 -B test/reliability/upgrade.py).

nea-demo --workers 2 --agent-port 0 --upgrade-on-sigusr2 serves GET /hello to
loadgen (keep-alive connections, open loop) and to a Python client that opens
a fresh connection for every request (Connection: close), so connections
arrive all the time. SIGUSR2 makes the running process start its successor
(the same binary, the same options) on the very same listening sockets; once
the successor listens, the old process stops accepting, answers each idle
keep-alive connection once more with Connection: close, drains and exits.
The successor is upgraded in turn (--upgrades, default 2; quick 1).

Invariants: every request answered 200 (loadgen: no error, no timeout, no
other status; the fresh-connection client: no refused, reset or unanswered
connection), every old process exits 0, each upgrade hands over to a new pid.
Reported: requests, upgrade times (SIGUSR2 to the old process's exit).
"""
import os
import signal
import threading
import time

import common as C


def add_args(ap):
    ap.add_argument("--seconds", type=float, help="seconds of load (default 10, quick 5)")
    ap.add_argument("--rate", type=float, default=2000.0, help="loadgen requests/s (2000)")
    ap.add_argument("--upgrades", type=int, help="upgrades during the load (default 2, quick 1)")


class FreshClient:
    """A request on a fresh connection every ~5 ms until stopped."""

    def __init__(self, port):
        self.port = port
        self.ok = 0
        self.failed = []
        self.pids = set()
        self.stop = False
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def one(self):
        pid = C.stats_pid(self.port)
        if pid is None:
            raise OSError("no 200 with a pid from /stats")
        self.pids.add(pid)

    def loop(self):
        while not self.stop:
            try:
                self.one()
                self.ok += 1
            except OSError as e:
                self.failed.append(f"{time.monotonic():.3f} {e}")
            time.sleep(0.005)

    def finish(self):
        self.stop = True
        self.t.join(10)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (nobody reaps it here) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def exit_status_of(pid):
    """Exit code of a process that is not our child: nea-demo prints its
    drain; we can only tell that it ended (None while it runs)."""
    return None if pid_alive(pid) else 0


def run(args, rep):
    demo_bin, lg = C.tools()
    C.raise_nofile()
    secs = args.seconds or (5.0 if args.quick else 10.0)
    upgrades = args.upgrades if args.upgrades is not None else (1 if args.quick else 2)
    demo = C.Demo(demo_bin, ["--workers", "2", "--agent-port", "0", "--upgrade-on-sigusr2",
                             "--keepalive-timeout-ms", "30000"], tag="upgrade")
    if not demo.started:
        raise SystemExit("upgrade: demo did not start")
    port = demo.port
    fresh = FreshClient(port)
    done = []  # (old pid, new pid, seconds from SIGUSR2 to the old one's exit)
    current = demo.pid
    when = [secs * (k + 1) / (upgrades + 1) for k in range(upgrades)]
    t0 = time.monotonic()
    errors = []

    def on_tick(elapsed):
        nonlocal current
        if not when or elapsed < when[0]:
            return
        when.pop(0)
        old = current
        t = time.monotonic()
        os.kill(old, signal.SIGUSR2)
        if old == demo.pid:
            try:
                demo.p.wait(15)
            except Exception:  # noqa: BLE001
                errors.append(f"pid {old} still running 15 s after SIGUSR2")
                return
            if demo.p.returncode != 0:
                errors.append(f"pid {old} exited {demo.p.returncode}")
        elif not C.wait_for(lambda: not pid_alive(old), 15):
            errors.append(f"pid {old} still running 15 s after SIGUSR2")
            return
        took = time.monotonic() - t
        new = C.http_get_json(port, "/stats")["pid"]
        if new == old:
            errors.append(f"pid {old} still answers after its exit")
        done.append((old, new, took))
        current = new

    r = C.run_loadgen(lg, port, [(args.rate, secs)], [("/hello", 1)], demo=None, on_tick=on_tick,
                      tick_s=0.1, connections=50, timeout_ms=5000)
    fresh.finish()
    elapsed = time.monotonic() - t0
    # The last successor is not our child: SIGTERM and wait for it to go.
    os.kill(current, signal.SIGTERM)
    last_gone = C.wait_for(lambda: not pid_alive(current), 15)
    rows = [[i + 1, o, n, f"{t:.2f}"] for i, (o, n, t) in enumerate(done)]
    C.table(f"upgrade: {args.rate:g}/s GET /hello for {secs:g} s (loadgen, 50 keep-alive "
            f"connections) + a fresh connection every ~5 ms",
            ["upgrade", "old pid", "new pid", "SIGUSR2 to old exit s"], rows)
    s = r.s
    other = s["4xx"] + s["500"] + s["503"] + s["other"]
    C.table("upgrade: requests", ["client", "sent", "200", "other", "err", "tmo", "err_connect"],
            [["loadgen", s["sent"], s["2xx"], other, s["err"], s["tmo"], s["err_connect"]],
             ["fresh connections", fresh.ok + len(fresh.failed), fresh.ok, "-",
              len(fresh.failed), "-", "-"]])
    for e in fresh.failed[:10]:
        C.note(f"fresh-connection failure: {e}")
    rep.hard(f"{upgrades} upgrades, each to a new process", len(done) == upgrades and not errors,
             f"{len(done)} ({'; '.join(errors) or 'ok'})", f"{upgrades}")
    rep.hard("loadgen: every request 200 (no error, timeout, refused connection)",
             s["2xx"] == s["sent"] and s["err"] == 0 and s["tmo"] == 0,
             f"{s['2xx']}/{s['sent']}, err {s['err']} (connect {s['err_connect']}), "
             f"tmo {s['tmo']}", "all 200")
    rep.hard("fresh connections: none refused, reset or unanswered", not fresh.failed and fresh.ok > 0,
             f"{fresh.ok} ok, {len(fresh.failed)} failed", "0 failed")
    rep.hard("the last successor exits after SIGTERM", last_gone, last_gone, True)
    rep.figures = {"seconds": secs, "rate": args.rate, "elapsed_s": round(elapsed, 1),
                   "upgrades": [{"old": o, "new": n, "seconds": round(t, 3)} for o, n, t in done],
                   "loadgen": {k: s[k] for k in ("sent", "2xx", "err", "err_connect", "err_io",
                                                 "tmo", "ok_p99", "ok_max")},
                   "fresh": {"ok": fresh.ok, "failed": len(fresh.failed),
                             "pids": sorted(fresh.pids)}}


if __name__ == "__main__":
    raise SystemExit(C.main("upgrade", __doc__, run, 90, 180, add_args))
