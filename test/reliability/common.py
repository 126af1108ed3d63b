"""common.py - shared helpers for libnea's reliability scripts (python3 stdlib only).

Every script here starts nea-demo on 127.0.0.1 with --port 0 (pinned to CPU 0
when the machine has two cores or more), drives it from CPU 1 with loadgen or
a Python client, reads the server's own figures from /proc/PID and /stats,
and prints a small table plus one JSON line. This module holds what they all
need on top of test/tools/neatools.py (building, starting and stopping
nea-demo, /proc readings, /stats): running loadgen, the capacity ramp,
tables, and the verdicts.

Verdicts: a *hard invariant* (a good request not 200, a hog not 500, the
process died, a probe failed, slots or arenas not back to baseline) fails
the script (exit 1) in every mode. A *target* (latency, recovery time, ...)
is reported as met/MISSED in full mode and only as WARN in --quick mode,
because a shared 2-core machine makes millisecond figures noisy.

Environment:
  NEA_DEMO      path of nea-demo (default: built Release in NEA_REL_BUILD)
  NEA_LOADGEN   path of loadgen (default: built in NEA_REL_BUILD)
  NEA_REL_BUILD CMake build directory, configured with NEA_BUILD_TOOLS=ON
                (default /tmp/nea-rel-<uid>)
  NEA_REL_NOPIN set to 1 to not pin processes to CPUs
  NEA_REL_PORT_BASE  listen on ports from this one up (default: port 0, the
                kernel's pick); each demo a script starts takes the next port
"""
import argparse
import datetime
import json
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))
import neatools as T  # noqa: E402
from neatools import (REPO, NCPU, CLK_TCK, proc_status, reset_hwm, cpu_seconds,  # noqa: E402,F401
                      fd_count, http_get, http_get_json)

PIN = NCPU >= 2 and os.environ.get("NEA_REL_NOPIN", "") != "1"
SERVER_CPU = 0
CLIENT_CPU = 1 if NCPU >= 2 else 0

_children = []  # loadgen Popen objects started here, killed by pid on exit
_tmpdir = None
_name = "reliability"


def note(msg):
    """Progress message on stderr (stdout carries only tables and the JSON line)."""
    T.note(msg)


def tmpdir():
    global _tmpdir
    if _tmpdir is None:
        _tmpdir = tempfile.mkdtemp(prefix=f"nea-{_name}-")
    return _tmpdir


def pin_client():
    """Moves the calling (client) process to the client CPU."""
    if PIN:
        os.sched_setaffinity(0, {CLIENT_CPU})


def raise_nofile(want=65536):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = min(want, hard) if hard != resource.RLIM_INFINITY else want
    if new > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --------------------------------------------------------------------------
# Binaries

def tools():
    """Returns (demo, loadgen) paths, building (neatools.build into
    NEA_REL_BUILD) what NEA_DEMO / NEA_LOADGEN do not name."""
    build = os.environ.get("NEA_REL_BUILD", f"/tmp/nea-rel-{os.getuid()}")
    demo = os.environ.get("NEA_DEMO")
    lg = os.environ.get("NEA_LOADGEN")
    if not demo or not lg:
        note(f"building nea-demo and loadgen (Release) in {build}")
        t = T.build(build, ["nea-demo", "loadgen"])
        demo = demo or t.demo
        lg = lg or t.loadgen
    for p in (demo, lg):
        if not p or not os.access(p, os.X_OK):
            raise SystemExit(f"{_name}: {p} is not an executable")
    return demo, lg


# --------------------------------------------------------------------------
# /proc readings

def server_sockets(port):
    """Counts of TCP states of sockets whose local port is `port` (IPv4, /proc/net/tcp)."""
    names = {"01": "established", "04": "fin_wait1", "05": "fin_wait2", "06": "time_wait",
             "07": "close", "08": "close_wait", "09": "last_ack", "0A": "listen",
             "0B": "closing"}
    counts = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            lport = int(parts[1].rsplit(":", 1)[1], 16)
            if lport == port:
                st = names.get(parts[3], parts[3])
                counts[st] = counts.get(st, 0) + 1
    return counts


def stats_pid(port, timeout=5):
    """The pid of the process that answered one `GET /stats` on a fresh
    connection, or None when the connection failed or the answer was not a
    200 whose JSON body carries "pid"."""
    status, body = T.http_get(port, "/stats", timeout=timeout)
    try:
        return int(json.loads(body)["pid"]) if status == 200 else None
    except (ValueError, KeyError, TypeError):
        return None


# --------------------------------------------------------------------------
# The demo server

_ports_used = 0


def _next_port():
    """0 (the kernel picks), or with NEA_REL_PORT_BASE=N the next of N..N+99:
    each demo of a script gets a port of its own within a fixed range."""
    global _ports_used
    base = os.environ.get("NEA_REL_PORT_BASE")
    if not base:
        return 0
    if _ports_used >= 100:
        raise SystemExit(f"{_name}: more than 100 demos started from NEA_REL_PORT_BASE={base}")
    _ports_used += 1
    return int(base) + _ports_used - 1


def Demo(binary, args, nofile=None, data=None, tag="demo", start_timeout=15.0, port=None):
    """neatools.Demo on 127.0.0.1 (port 0 unless NEA_REL_PORT_BASE is set, or the
    port given: a second server on a first one's address), pinned to the server
    CPU, optionally under prlimit; stdout and stderr go to TAG.out / TAG.err in
    the temp dir."""
    d = tmpdir()
    return T.Demo(binary, args, os.path.join(d, f"{tag}.out"), os.path.join(d, f"{tag}.err"),
                  port=_next_port() if port is None else port,
                  cpu=SERVER_CPU if PIN else None, nofile=nofile, data=data, tag=tag,
                  start_timeout=start_timeout)


# --------------------------------------------------------------------------
# loadgen

class LoadgenRun:
    """A finished loadgen run: summary, interval lines, and CPU use over the
    schedule (not the drain after it): loadgen's and the server's in % of one
    core, and the machine's steal time in % of all cores (a VM whose host is
    busy shows it here; it inflates every latency)."""

    def __init__(self, summary, intervals, client_cpu, server_cpu, steal, srv_core_busy,
                 machine_busy=None):
        self.s = summary
        self.intervals = intervals
        self.client_cpu = client_cpu
        self.server_cpu = server_cpu
        self.steal = steal
        self.machine_busy = machine_busy  # % of all CPUs, any process or softirq
        # CPU the server core spent on anything but the server process
        # (softirq of loopback traffic, other processes).
        self.srv_core_other = None
        if srv_core_busy is not None and server_cpu is not None:
            self.srv_core_other = max(0.0, srv_core_busy - server_cpu)

    def __getitem__(self, k):
        return self.s[k]

    def get(self, k, default=None):
        return self.s.get(k, default)


def machine_ticks():
    """{"cpu": (total, idle, steal), "cpu0": ..., ...} jiffies from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu"):
                break
            w = line.split()
            v = [int(x) for x in w[1:]]
            out[w[0]] = (sum(v[:8]), v[3] + v[4], v[7] if len(v) > 7 else 0)
    return out


def busy_between(m0, m1, cpu):
    """Busy % (everything but idle and iowait) of one CPU line between two samples."""
    a, b = m0.get(cpu), m1.get(cpu)
    if a is None or b is None or b[0] <= a[0]:
        return None
    return 100.0 * (1 - (b[1] - a[1]) / (b[0] - a[0]))


def loadgen_cmd(lg, port, phases, paths, connections=100, retry=False, timeout_ms=5000,
                interval_ms=0, seed=1):
    cmd = []
    if PIN:
        cmd += ["taskset", "-c", str(CLIENT_CPU)]
    cmd += [lg, "--host", "127.0.0.1", "--port", str(port), "--json", "--interval-ms",
            str(interval_ms), "--connections", str(connections), "--timeout-ms", str(timeout_ms),
            "--seed", str(seed)]
    for rate, secs in phases:
        cmd += ["--phase", f"{rate:.3f}:{secs:g}"]
    for path, w in paths:
        cmd += ["--path", f"{path}:{w}"]
    if retry:
        cmd += ["--retry-503"]
    return cmd


def _safe_cpu(pid):
    try:
        return cpu_seconds(pid)
    except (OSError, IndexError, ValueError):
        return None


def run_loadgen(lg, port, phases, paths, demo=None, on_tick=None, tick_s=1.0, **kw):
    """Runs loadgen to completion; returns a LoadgenRun. CPU figures cover the
    schedule only. on_tick(elapsed_s), if given, is called about every tick_s
    seconds while loadgen runs (for samplers)."""
    cmd = loadgen_cmd(lg, port, phases, paths, **kw)
    sched = sum(s for _, s in phases)
    limit = sched + kw.get("timeout_ms", 5000) / 1000 + 30
    out_path = os.path.join(tmpdir(), "loadgen.out")
    with open(out_path, "w") as out:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                             text=True)
        _children.append(p)
        c0 = _safe_cpu(p.pid)
        s0 = demo.cpu() if demo is not None and demo.alive() else None
        m0 = machine_ticks()
        c1 = s1 = m1 = None
        t_end = t0 + sched
        next_tick = t0 + tick_s
        while p.poll() is None:
            now = time.monotonic()
            if now - t0 > limit:
                p.kill()
                p.wait()
                raise SystemExit(f"{_name}: loadgen ran over its {limit:.0f} s bound")
            if c1 is None and now >= t_end:
                c1 = _safe_cpu(p.pid)
                s1 = demo.cpu() if demo is not None and demo.alive() else None
                m1 = machine_ticks()
                w = now - t0
            if on_tick is not None and now >= next_tick:
                on_tick(now - t0)
                next_tick += tick_s
            time.sleep(min(0.02, max(0.001, t_end - now)) if c1 is None else 0.02)
        err = p.stderr.read()
        p.stderr.close()
    if c1 is None:  # ended before the schedule's end (interrupted)
        w = time.monotonic() - t0
        c1, s1, m1 = c0, None, machine_ticks()
    if p.returncode != 0:
        raise SystemExit(f"{_name}: loadgen exit {p.returncode}: {err.strip()}")
    summary, intervals = None, []
    with open(out_path) as f:
        for line in f:
            d = json.loads(line)
            if d["type"] == "summary":
                summary = d
            else:
                intervals.append(d)
    if summary is None:
        raise SystemExit(f"{_name}: loadgen printed no summary")
    if not summary.get("balanced"):
        raise SystemExit(f"{_name}: loadgen reports an unbalanced run: {summary}")
    ccpu = (c1 - c0) / w * 100 if c0 is not None and c1 is not None and w > 0 else 0.0
    scpu = (s1 - s0) / w * 100 if s0 is not None and s1 is not None and w > 0 else None
    a, b = m0["cpu"], m1["cpu"]
    steal = (b[2] - a[2]) / (b[0] - a[0]) * 100 if b[0] > a[0] else 0.0
    core = busy_between(m0, m1, f"cpu{SERVER_CPU}") if PIN else None
    return LoadgenRun(summary, intervals, ccpu, scpu, steal, core, busy_between(m0, m1, "cpu"))


def ms(us):
    """Microseconds (or None) to a short millisecond string."""
    if us is None:
        return "-"
    return f"{us / 1000:.2f}"


def bottleneck(run):
    """What ran out during a loadgen run, from the CPU figures: "server" (its
    process >= 85% of its core), "server-core" (its core >= 90% busy counting
    softirq and other processes), "client" (loadgen >= 85%), "machine" (all
    CPUs >= 90% busy), "-" (none: the limit was elsewhere, e.g. admission)."""
    tags = []
    if run.server_cpu is not None and run.server_cpu >= 85:
        tags.append("server")
    elif (run.server_cpu is not None and run.srv_core_other is not None
          and run.server_cpu + run.srv_core_other >= 90):
        tags.append("server-core")
    if run.client_cpu >= 85:
        tags.append("client")
    if run.machine_busy is not None and run.machine_busy >= 90:
        tags.append("machine")
    return "+".join(tags) if tags else "-"


def capacity_ramp(lg, demo, path, start, factor, max_rate, step_s, connections,
                  timeout_ms=2000, track=0.95, good_share=1.0):
    """Offers start, start*factor, ... for step_s each (separate loadgen runs)
    until goodput has stopped tracking the offered rate (goodput < track *
    offered) without raising the best goodput so far by 5%, twice in a row, or
    max_rate is passed. C = the highest goodput seen. Returns (C, rows).

    path: one path, or a list of (path, weight) for a mix; good_share is the
    fraction of the mix answered 2xx when all goes well (hogs get 500): C is
    then the highest goodput / good_share."""
    rows = []
    best = 0.0
    misses = 0
    rate = float(start)
    while rate <= max_rate:
        paths = [(path, 1)] if isinstance(path, str) else path
        r = run_loadgen(lg, demo.port, [(rate, step_s)], paths, demo=demo,
                        connections=connections, timeout_ms=timeout_ms)
        gp = r["goodput"] / good_share
        tracking = gp >= track * rate
        stalled = not tracking and gp < 1.05 * best
        best = max(best, gp)
        rows.append({"offered": round(rate), "goodput": round(gp, 1),
                     "rate503": round(r["rate503"], 1), "err": r["err"], "tmo": r["tmo"],
                     "ok_p99_us": r["ok_p99"], "server_cpu": round(r.server_cpu or 0, 1),
                     "client_cpu": round(r.client_cpu, 1), "steal_pct": round(r.steal, 1),
                     "machine_busy_pct": None if r.machine_busy is None
                     else round(r.machine_busy, 1),
                     "srv_core_other_pct": None if r.srv_core_other is None
                     else round(r.srv_core_other, 1),
                     "tracking": tracking,
                     "bottleneck": bottleneck(r)})
        note(f"ramp {path if isinstance(path, str) else 'mix'} offered {rate:.0f}/s: goodput {gp:.0f}/s, 503 {r['rate503']:.0f}/s, "
             f"server cpu {r.server_cpu or 0:.0f}%, client cpu {r.client_cpu:.0f}%")
        misses = misses + 1 if stalled else 0
        if misses >= 2:
            break
        rate *= factor
    return best, rows


# --------------------------------------------------------------------------
# Output

def table(title, headers, rows):
    """Prints a small aligned text table on stdout."""
    cells = [[str(h) for h in headers]] + [["-" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    print(f"\n{title}")
    for j, r in enumerate(cells):
        print("  " + "  ".join(c.rjust(widths[i]) if i else c.ljust(widths[i])
                               for i, c in enumerate(r)))
        if j == 0:
            print("  " + "  ".join("-" * w for w in widths))
    sys.stdout.flush()


class Report:
    """Collects figures and verdicts; `finish` prints the verdict table and the
    JSON line and returns the exit status."""

    def __init__(self, name, quick, args=None):
        self.name = name
        self.quick = quick
        self.figures = {}
        self.checks = []
        self.t0 = time.monotonic()
        self.args = args

    def hard(self, what, ok, value, expect):
        self.checks.append({"check": what, "kind": "invariant", "value": value,
                            "expect": expect, "ok": bool(ok),
                            "verdict": "ok" if ok else "FAIL"})

    def target(self, what, ok, value, expect, by=None):
        if ok is None:
            verdict = "n/a"
        elif ok:
            verdict = "met"
        else:
            verdict = "WARN" if self.quick else "MISSED"
        c = {"check": what, "kind": "target", "value": value, "expect": expect,
             "ok": ok, "verdict": verdict}
        if by is not None:
            c["by"] = by
        self.checks.append(c)

    def failed(self):
        return [c for c in self.checks if c["kind"] == "invariant" and not c["ok"]]

    def finish(self):
        rows = []
        for c in self.checks:
            v = c["verdict"] + (f" ({c['by']})" if c.get("by") and c["verdict"] != "met" else "")
            rows.append([c["check"], c["value"], c["expect"], v])
        table(f"{self.name}: verdicts ({'quick' if self.quick else 'full'} mode)",
              ["check", "value", "expect", "verdict"], rows)
        out = {"test": self.name, "mode": "quick" if self.quick else "full",
               "date": datetime.date.today().isoformat(),
               "elapsed_s": round(time.monotonic() - self.t0, 1),
               "host": {"cpus": NCPU, "pinned": PIN}, "figures": self.figures,
               "checks": self.checks, "invariants_ok": not self.failed()}
        print(json.dumps(out, separators=(",", ":")), flush=True)
        return 1 if self.failed() else 0


def cleanup():
    for p in _children:
        try:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            pass
    T.cleanup()
    if _tmpdir is not None and os.environ.get("NEA_REL_KEEP", "") != "1":
        import shutil
        shutil.rmtree(_tmpdir, ignore_errors=True)


class Overtime(Exception):
    pass


def main(name, description, run, bound_quick, bound_full, add_args=None):
    """Common entry: parses --quick (plus the script's own options), arms a
    wall-clock bound, runs run(args, report), prints the verdicts, cleans up."""
    global _name
    _name = name
    T.name = name
    ap = argparse.ArgumentParser(prog=f"{name}.py", description=description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short CI run (seconds)")
    if add_args is not None:
        add_args(ap)
    args = ap.parse_args()
    bound = bound_quick if args.quick else bound_full

    def on_alarm(signum, frame):
        raise Overtime()

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(143))
    signal.alarm(int(bound))
    report = Report(name, args.quick, args)
    pin_client()  # this process and the Python clients it runs: the client CPU
    rc = 2
    try:
        run(args, report)
        signal.alarm(0)
        rc = report.finish()
    except Overtime:
        print(f"{name}: over its {bound} s wall-clock bound, stopped", file=sys.stderr)
        report.hard("finished within the time bound", False, f"> {bound} s", f"<= {bound} s")
        report.finish()
        rc = 2
    finally:
        signal.alarm(0)
        cleanup()
    return rc


def pct(values, p):
    """Nearest-rank percentile of a list (None if empty)."""
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, math.ceil(p / 100 * len(v)) - 1))
    return v[k]


def slope_per_min(samples):
    """Least-squares slope of [(t_seconds, value)] in value per minute."""
    n = len(samples)
    if n < 2:
        return None
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    num = sum((t - mt) * (v - mv) for t, v in samples)
    den = sum((t - mt) ** 2 for t, _ in samples)
    return num / den * 60 if den > 0 else None


def wait_for(cond, timeout, step=0.05):
    """Polls cond() until true or timeout; returns its last value."""
    deadline = time.monotonic() + timeout
    v = cond()
    while not v and time.monotonic() < deadline:
        time.sleep(step)
        v = cond()
    return v


def settled_fds(demo, timeout=5.0):
    """The server's open fd count once it has not changed for 0.5 s (a
    connection just closed by the client may take a moment to go)."""
    deadline = time.monotonic() + timeout
    last, same = demo.fds(), 0
    while time.monotonic() < deadline and same < 5:
        time.sleep(0.1)
        v = demo.fds()
        same = same + 1 if v == last else 0
        last = v
    return last


def idle_baseline_ok(stats, probe_conns=0):
    """/stats taken on its own connection: one connection (the /stats one) and
    one arena (the /stats request itself) is the idle baseline."""
    return (stats is not None and stats["connections_open"] <= 1 + probe_conns
            and stats["arenas_in_use"] <= 1 and stats["queue_length"] == 0)
