"""Worker threads benchmark: nea-demo with 1 and 2 workers against nginx with
1 and 2 worker processes, on the same machine, in one run.

    python3 -B test/bench/workers.py [NEA_DEMO] [--quick] [--out DIR]

  NEA_DEMO   nea-demo binary (default: build/examples/nea-demo)
  --quick    1 round x 3 s per cell instead of 3 rounds x 8 s
  --out DIR  results.md, results.csv, workers.svg (throughput ratios vs
             nginx on a linear axis), raw/ (wrk output), logs/
             (default /tmp/nea-workers-bench)
  --replot DIR  only redraw DIR/workers.svg from DIR/results.csv

Environment: NEA_WORKERS_BENCH_PORT (first port, default 20150; the run uses
the 10 after it).

Servers (none pinned: a 2-worker server needs both cores; wrk runs with 2
threads and 64 connections on the same two cores, the same for every
server, so compare ratios within the run):

  nea-w1       nea-demo --workers 1
  nea-w2       nea-demo --workers 2 (connections dealt round-robin when the
               reuseport eBPF program loads, i.e. run as root)
  nea-w2-hash  nea-demo --workers 2 run as user nobody: no BPF, the kernel's
               reuseport hash spreads connections (the baseline to beat)
  nginx-w1     peers/nginx.conf.in as run.py uses it (one process)
  nginx-w2     the same with a master and 2 worker processes, `listen ...
               reuseport` (one socket per worker, as libnea does)

Workloads: /hello keep-alive, /hello pipelined x8, /hello Connection: close.
Per cell: requests/s (wrk), the server's CPU time per request (utime+stime
of the process and its children, from /proc), and for nea-demo the accept
balance: max/min over the workers of the connections each accepted in the
cell (/stats worker_accepted; each reading itself is one connection).
Rounds are interleaved. Medians over rounds are reported.

Then memory: nea-demo --prefault --workers 2 under a mixed load (mixed.py's
exact mix plus /alloc 1-50 KiB from wrk at once), VmHWM against the printed
reservation.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))
import neatools as T  # noqa: E402

DEMO_ARGS = ["--arena-size", "256k", "--arenas", "128", "--connections", "256",
             "--memory-limit", "1G"]
WORKLOADS = ["hello", "pipeline", "close"]
WRK_THREADS, WRK_CONNS = 2, 64


def say(msg):
    print(msg, flush=True)


def tree_ticks(pid):
    """utime+stime of pid and its direct children (nginx's workers)."""
    total = T.cpu_ticks(pid)
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                rest = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(rest[1]) == pid:
            total += int(rest[11]) + int(rest[12])
    return total


def wrk(port, workload, dur, path):
    url = f"http://127.0.0.1:{port}"
    args = {"hello": [f"{url}/hello"],
            "pipeline": ["-s", os.path.join(HERE, "pipeline.lua"), f"{url}/hello"],
            "close": ["-H", "Connection: close", f"{url}/hello"]}[workload]
    cmd = ["wrk", "-t", str(WRK_THREADS), "-c", str(WRK_CONNS), "-d", f"{dur}s"] + args
    with open(path, "w") as f:
        subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                       timeout=dur + 30, check=True)
    req, rps, bad = 0, 0.0, 0
    with open(path) as f:
        for line in f:
            w = line.split()
            if " requests in " in line:
                req = int(w[0])
            elif line.startswith("Requests/sec:"):
                rps = float(w[1])
            elif "Non-2xx or 3xx responses:" in line:
                bad = int(w[-1])
    return req, rps, bad


def worker_accepted(port):
    st = T.fetch_stats(port)
    return st.get("worker_accepted", [])


class Bench:
    def __init__(self, demo, out, quick):
        self.demo, self.out, self.quick = demo, out, quick
        self.rounds, self.dur = (1, 3) if quick else (3, 8)
        self.port = int(os.environ.get("NEA_WORKERS_BENCH_PORT", "20150"))
        self.raw = os.path.join(out, "raw")
        self.logs = os.path.join(out, "logs")
        os.makedirs(self.raw, exist_ok=True)
        os.makedirs(self.logs, exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix="nea-workers-bench-")
        self.servers = {}  # name -> (server, port, is_demo)
        self.cells = {}    # (server, workload) -> list of (rps, cpu_us, balance)

    def start_demo(self, name, port, workers, extra=(), as_nobody=False):
        args = ["--workers", str(workers)] + DEMO_ARGS + list(extra)
        binary = os.path.abspath(self.demo)
        if as_nobody:
            # No CAP_BPF: libnea falls back to the kernel's reuseport hash.
            srv = T.Server(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            binary, "--port", str(port)] + args,
                           os.path.join(self.logs, f"{name}.out"),
                           os.path.join(self.logs, f"{name}.err"), tag=name)
            if not srv.wait_port(port):
                raise SystemExit(f"{name} did not start")
            srv.info = {"reserved": None}
        else:
            srv = T.Demo(binary, args, os.path.join(self.logs, f"{name}.out"),
                         os.path.join(self.logs, f"{name}.err"), port=port, tag=name)
            if not srv.started:
                raise SystemExit(f"{name} did not start: {T.describe_exit(srv.exit_code)}")
        self.servers[name] = (srv, port, True)
        return srv

    def start_nginx(self, name, port, workers):
        d = os.path.join(self.tmp, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(HERE, "peers", "nginx.conf.in")) as f:
            conf = f.read().replace("@PORT@", str(port)).replace("@DIR@", d)
        if workers > 1:
            conf = conf.replace("master_process off;", "master_process on;")
            conf = conf.replace("worker_processes 1;", f"worker_processes {workers};")
            conf = conf.replace("backlog=1024;", "backlog=1024 reuseport;")
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(conf)
        srv = T.Server(["nginx", "-p", d, "-c", os.path.join(d, "nginx.conf")],
                       os.path.join(self.logs, f"{name}.log"), tag=name)
        if not srv.wait_port(port):
            raise SystemExit(f"{name} did not start")
        time.sleep(0.3)  # let every worker process come up
        self.servers[name] = (srv, port, False)

    def cell(self, name, workload, rnd):
        srv, port, is_demo = self.servers[name]
        before = worker_accepted(port) if is_demo else []
        t0 = tree_ticks(srv.pid)
        req, rps, bad = wrk(port, workload, self.dur,
                            os.path.join(self.raw, f"{name}-{workload}-{rnd}.txt"))
        t1 = tree_ticks(srv.pid)
        balance = None
        if is_demo:
            after = worker_accepted(port)
            per = [a - b for a, b in zip(after, before)]
            if len(per) > 1 and min(per) > 0:
                balance = (max(per) / min(per), per)
        cpu_us = (t1 - t0) / T.CLK_TCK * 1e6 / req if req else float("nan")
        self.cells.setdefault((name, workload), []).append((rps, cpu_us, balance, bad))
        bal = f" accepted {balance[1]} max/min {balance[0]:.3f}" if balance else ""
        say(f"  {name:12s} {workload:9s} {rps:10.0f} req/s {cpu_us:6.2f} us CPU/req"
            f"{' non2xx=' + str(bad) if bad else ''}{bal}")

    def throughput(self):
        p = self.port
        self.start_demo("nea-w1", p + 1, 1)
        self.start_demo("nea-w2", p + 2, 2)
        self.start_demo("nea-w2-hash", p + 3, 2, as_nobody=True)
        self.start_nginx("nginx-w1", p + 4, 1)
        self.start_nginx("nginx-w2", p + 5, 2)
        for name, (srv, port, _) in self.servers.items():
            wrk(port, "hello", 1, os.path.join(self.raw, f"{name}-warmup.txt"))
        for rnd in range(self.rounds):
            say(f"round {rnd + 1}/{self.rounds}")
            for workload in WORKLOADS:
                for name in self.servers:
                    self.cell(name, workload, rnd)
        self.compared = list(self.servers)
        for name, (srv, _, _) in self.servers.items():
            srv.stop()

    def memory(self):
        """--prefault --workers 2 under mixed.py plus wrk /alloc at once."""
        port = self.port + 6
        srv = self.start_demo("nea-w2-prefault", port, 2, extra=["--prefault"])
        reserved = srv.reserved
        mixed = subprocess.Popen(
            [sys.executable, "-B", os.path.join(HERE, "mixed.py"), "--port", str(port),
             "--count", "20000" if self.quick else "100000", "--deadline", "300"],
            stdout=open(os.path.join(self.logs, "mixed.out"), "w"), stdin=subprocess.DEVNULL)
        cmd = ["wrk", "-t", "2", "-c", "64", "-d", f"{self.dur}s", "-s",
               os.path.join(HERE, "alloc.lua"), f"http://127.0.0.1:{port}/"]
        with open(os.path.join(self.raw, "memory-alloc.txt"), "w") as f:
            subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=self.dur + 30)
        mixed_rc = mixed.wait(330)
        st = srv.status()
        stats = T.fetch_stats(port)
        srv.stop()
        self.mem = {"reserved": reserved, "hwm_kib": st["VmHWM"], "rss_kib": st["VmRSS"],
                    "over_kib": st["VmHWM"] - reserved / 1024, "mixed_ok": mixed_rc == 0,
                    "requests": stats.get("requests"), "worker_requests":
                    stats.get("worker_requests")}
        say(f"memory: reserved {reserved} B, VmHWM {st['VmHWM']} KiB "
            f"({self.mem['over_kib']:+.0f} KiB vs reserved), requests {stats.get('requests')} "
            f"per worker {stats.get('worker_requests')}, mixed.py ok={mixed_rc == 0}")

    def report(self):
        med = {}
        for (name, wl), vals in self.cells.items():
            rps = statistics.median(v[0] for v in vals)
            cpu = statistics.median(v[1] for v in vals)
            bals = [v[2][0] for v in vals if v[2]]
            med[(name, wl)] = (rps, cpu, statistics.median(bals) if bals else None,
                               max(bals) if bals else None)
        self.when = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
        lines = [f"# Worker threads benchmark ({self.when})",
                 "", f"`python3 -B test/bench/workers.py{' --quick' if self.quick else ''}`: "
                 f"{self.rounds} round(s) x {self.dur} s per cell, wrk -t{WRK_THREADS} "
                 f"-c{WRK_CONNS}, nothing pinned, {os.cpu_count()} CPUs. Medians over rounds.", "",
                 "| server | workload | req/s | CPU us/req | accept max/min (median, worst) |",
                 "| --- | --- | ---: | ---: | ---: |"]
        csv = ["server,workload,rps,cpu_us_per_req,balance_median,balance_worst"]
        for wl in WORKLOADS:
            for name in self.compared:
                rps, cpu, bm, bw = med[(name, wl)]
                b = f"{bm:.3f}, {bw:.3f}" if bm else ""
                lines.append(f"| {name} | {wl} | {rps:.0f} | {cpu:.2f} | {b} |")
                csv.append(f"{name},{wl},{rps:.0f},{cpu:.3f},{bm or ''},{bw or ''}")
        lines += ["", "| ratio | hello | pipeline | close |", "| --- | ---: | ---: | ---: |"]

        def row(label, f):
            lines.append(f"| {label} | " + " | ".join(f"{f(wl):.2f}" for wl in WORKLOADS) + " |")
        row("nea-w2 / nginx-w2 throughput", lambda wl: med[("nea-w2", wl)][0] / med[("nginx-w2", wl)][0])
        row("nea-w1 / nginx-w1 throughput", lambda wl: med[("nea-w1", wl)][0] / med[("nginx-w1", wl)][0])
        row("nea-w2 / nea-w1 throughput", lambda wl: med[("nea-w2", wl)][0] / med[("nea-w1", wl)][0])
        row("nea-w2 / nea-w1 CPU per request", lambda wl: med[("nea-w2", wl)][1] / med[("nea-w1", wl)][1])
        row("nea-w2 / nginx-w2 CPU per request", lambda wl: med[("nea-w2", wl)][1] / med[("nginx-w2", wl)][1])
        if getattr(self, "mem", None):
            m = self.mem
            lines += ["", f"Memory, `nea-demo --prefault --workers 2 {' '.join(DEMO_ARGS)}` under "
                      f"mixed.py plus wrk /alloc: reserved {m['reserved']} B "
                      f"({m['reserved'] / 1048576:.2f} MiB), VmHWM {m['hwm_kib']} KiB "
                      f"({m['hwm_kib'] / 1024:.2f} MiB): {m['over_kib'] / 1024:+.2f} MiB over the "
                      f"reservation; {m['requests']} requests, per worker {m['worker_requests']}."]
        with open(os.path.join(self.out, "workers.svg"), "w") as f:
            f.write(ratio_svg(med, self.when))
        with open(os.path.join(self.out, "results.md"), "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(os.path.join(self.out, "results.csv"), "w") as f:
            f.write("\n".join(csv) + "\n")
        say("\n".join(lines))


def ratio_svg(med, when):
    """Bars on a linear axis: nea-demo's throughput over nginx's, per workload,
    with one worker each and with two each; a line marks parity (1.0)."""
    pairs = [("1 worker each", "nea-w1", "nginx-w1", "#7aa6d6"),
             ("2 workers each", "nea-w2", "nginx-w2", "#1f5fa8")]
    labels = {"hello": "/hello keep-alive", "pipeline": "/hello pipelined x8",
              "close": "/hello Connection: close"}
    ratios = {(wl, a): med[(a, wl)][0] / med[(b, wl)][0] for wl in WORKLOADS
              for _, a, b, _ in pairs}
    top = max(2.0, max(ratios.values()) * 1.1)
    w, h, left, right, y0, y1 = 720, 300, 60, 20, 40, 240
    scale = (y1 - y0) / top
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'font-family="sans-serif" font-size="12">',
           f'<text x="{left}" y="20" font-size="14">nea-demo throughput / nginx throughput, '
           f'same run ({when}); higher is better</text>']
    for i in range(int(top / 0.5) + 1):
        v = i * 0.5
        y = y1 - v * scale
        out.append(f'<line x1="{left}" x2="{w - right}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="{"#000" if v == 1.0 else "#ddd"}"/>')
        out.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{v:.1f}x</text>')
    group = (w - left - right) / len(WORKLOADS)
    for g, wl in enumerate(WORKLOADS):
        x = left + g * group + 20
        for k, (_, a, _, color) in enumerate(pairs):
            r = ratios[(wl, a)]
            bx = x + k * (group - 40) / 2
            bw = (group - 40) / 2 - 6
            out.append(f'<rect x="{bx:.1f}" y="{y1 - r * scale:.1f}" width="{bw:.1f}" '
                       f'height="{r * scale:.1f}" fill="{color}"/>')
            out.append(f'<text x="{bx + bw / 2:.1f}" y="{y1 - r * scale - 4:.1f}" '
                       f'text-anchor="middle">{r:.2f}</text>')
        out.append(f'<text x="{left + g * group + group / 2:.1f}" y="{y1 + 18}" '
                   f'text-anchor="middle">{labels[wl]}</text>')
    for k, (name, _, _, color) in enumerate(pairs):
        out.append(f'<rect x="{left + k * 160}" y="{h - 26}" width="12" height="12" '
                   f'fill="{color}"/>')
        out.append(f'<text x="{left + k * 160 + 18}" y="{h - 16}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("demo", nargs="?", default=os.path.join(T.REPO, "build/examples/nea-demo"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="/tmp/nea-workers-bench")
    ap.add_argument("--replot", metavar="DIR",
                    help="only redraw DIR/workers.svg from DIR/results.csv (titled with "
                         "the date of DIR/results.md)")
    a = ap.parse_args()
    if a.replot:
        med = {}
        with open(os.path.join(a.replot, "results.csv")) as f:
            next(f)
            for line in f:
                name, wl, rps = line.split(",")[:3]
                med[(name, wl)] = (float(rps),)
        with open(os.path.join(a.replot, "results.md")) as f:
            when = re.search(r"\(([^)]*UTC)\)", f.readline()).group(1)
        with open(os.path.join(a.replot, "workers.svg"), "w") as f:
            f.write(ratio_svg(med, when))
        return
    b = Bench(a.demo, a.out, a.quick)
    try:
        b.throughput()
        b.memory()
        b.report()
    finally:
        T.cleanup()


if __name__ == "__main__":
    main()
