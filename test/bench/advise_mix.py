#!/usr/bin/env python3
"""advise_mix.py - the sizing advisor on a mixed workload
(python3 -B test/bench/advise_mix.py [--requests N] [--port-base P]).

Routes of very different needs, one request mix, the same memory_limit:

  80%  GET  /hello           a few KiB of arena
  15%  POST /svg             a CSV body of 1..12 KiB (--narrow: 400 rows, ~7 KiB)
   5%  GET  /alloc/K         K = 64..192 KiB (--narrow: 160)

Run A: nea-demo with one (default) class sized for the largest route
(--arena-size 224k), --advise. The mix runs, then SIGTERM prints the
advisor's classes (target 0.1% OOM 500s). Run B: nea-demo with the
advisor's flags, the same memory_limit, and the same mix (same seed).
Prints, per run: requests, 200s, OOM 500s (rate), 503s, arenas per class,
and the in-flight capacity for this mix (the class that runs out first:
count / its share of in-flight time, as the advisor computes it) and the
advisor's fit against an ideal per-request fit. The capacity figures come
from the plans (arena counts), not from a concurrency probe.

Needs a nea-demo build: NEA_DEMO=path, else build/examples/nea-demo.
"""
import argparse
import http.client
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MEMORY = "64M"
COMMON = ["--memory-limit", MEMORY, "--read-buffer", "4k", "--connections", "64",
          "--queue-timeout-ms", "2000", "--overload-target-ms", "0", "--fair-share-pct", "0"]


def plan_mix(n, seed, narrow):
    rnd = random.Random(seed)
    mix = []
    for _ in range(n):
        x = rnd.random()
        if x < 0.80:
            mix.append(("GET", "/hello", None))
        elif x < 0.95:
            rows = 400 if narrow else rnd.randint(60, 700)  # about 1..12 KiB of CSV
            body = "".join(f"{i}, {i * 3 % 500}\n" for i in range(rows)).encode()
            mix.append(("POST", "/svg", body))
        else:
            mix.append(("GET", f"/alloc/{160 if narrow else rnd.randint(64, 192)}", None))
    return mix


def drive(port, mix, workers):
    counts = {}
    lock = threading.Lock()
    parts = [mix[i::workers] for i in range(workers)]

    def worker(items):
        local = {}
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for method, path, body in items:
            for attempt in range(3):
                try:
                    c.request(method, path, body=body)
                    r = c.getresponse()
                    r.read()
                    local[r.status] = local.get(r.status, 0) + 1
                    if r.getheader("Connection", "") == "close":
                        c.close()
                        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    break
                except (OSError, http.client.HTTPException):
                    c.close()
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            else:
                local["error"] = local.get("error", 0) + 1
        c.close()
        with lock:
            for k, v in local.items():
                counts[k] = counts.get(k, 0) + v

    threads = [threading.Thread(target=worker, args=(p,)) for p in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


def route_peaks(port):
    """{route: (requests, mean arena peak, largest)} from GET /metrics."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    sums, counts = {}, {}
    for m in re.finditer(r'nea_route_arena_peak_bytes_(sum|count)\{route="([^"]*)",[^}]*\} (\d+)',
                         text):
        (sums if m.group(1) == "sum" else counts)[m.group(2)] = int(m.group(3))
    out = {}
    for route, n in counts.items():
        if n > 0:
            out[route] = (n, sums[route] / n, None)
    # The largest peak is not exported; the advisor reads it from the records.
    return {r: (n, mean, "-") for r, (n, mean, _) in out.items()}


def start(demo, port, args):
    p = subprocess.Popen([demo, "--port", str(port)] + COMMON + args, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if "listening on" not in line:
        p.kill()
        sys.exit(f"advise_mix: demo did not start: {line!r} {p.stderr.read()}")
    return p


def stop(p):
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    return out, err


def classes_of(err):
    """(count, size) per class from libnea's plan line on stderr."""
    return [(int(c), int(s)) for c, s in re.findall(r"class\d+=(\d+)x\d+\((\d+)\)", err)]


def report(name, counts, classes, n):
    oom = counts.get(500, 0)
    print(f"  {name}: {n} requests: 200 {counts.get(200, 0)}, OOM 500 {oom} "
          f"({100.0 * oom / n:.3f}%), 503 {counts.get(503, 0)}, errors {counts.get('error', 0)}; "
          f"arenas {' + '.join(f'{c} x {s}' for c, s in classes)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--port-base", type=int, default=20210)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--narrow", action="store_true",
                    help="every /svg body 400 rows, every /alloc/ 160 KiB (default: spread)")
    args = ap.parse_args()
    demo = os.environ.get("NEA_DEMO", os.path.join(REPO, "build", "examples", "nea-demo"))
    mix = plan_mix(args.requests, args.seed, args.narrow)
    print(f"advise_mix: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{args.requests} requests, {args.workers} connections, memory_limit {MEMORY}")

    a = start(demo, args.port_base, ["--arena-size", "224k", "--advise"])
    ca = drive(args.port_base, mix, args.workers)
    peaks = route_peaks(args.port_base)
    out, err = stop(a)
    cls_a = classes_of(err)
    report("A (one class)", ca, cls_a, args.requests)
    for route, (n, mean, p_max) in sorted(peaks.items()):
        print(f"    route {route}: {n} requests, arena peak mean {mean:.0f} B, max {p_max} B")
    flags = re.search(r"/\* nea-demo: (.*) \*/", out)
    predicted = re.search(r"/\* predicted: (.*) \*/", out)
    if not flags:
        sys.exit(f"advise_mix: no advice in the demo's output:\n{out}")
    print("  advice:\n    " + "\n    ".join(l for l in out.splitlines() if "listening" not in l))

    b = start(demo, args.port_base + 1, flags.group(1).split())
    cb = drive(args.port_base + 1, mix, args.workers)
    _, err = stop(b)
    report("B (advised)", cb, classes_of(err), args.requests)
    print(f"  predicted for B: {predicted.group(1) if predicted else '?'}")
    in_flight = re.search(r"(\d+) requests of this mix in flight", predicted.group(1) if predicted
                          else "")
    if in_flight and cls_a:
        print(f"  in flight for this mix: B {in_flight.group(1)} vs A {cls_a[0][0]} "
              f"({int(in_flight.group(1)) / cls_a[0][0]:.2f}x), same memory_limit")


if __name__ == "__main__":
    main()
