#!/usr/bin/env python3
"""instructions.py - CPU per request as instructions, under callgrind: nea-demo
against uvmalloc (libuv + llhttp + malloc, the same stack without libnea's
bounds), for the /hello workloads.

    python3 -B test/bench/instructions.py [--demo PATH] [--uvmalloc PATH]
                                          [--requests N] [--workloads LIST]

Each server runs under `valgrind --tool=callgrind` twice per workload: once
serving N requests, once serving 2N; the difference of the two totals over N
is the instructions one request costs, start-up and shut-down cancelled out.
Instruction counts do not depend on what else the machine runs (a shared
machine skews wall-clock benchmarks, not these), so this is the A/B measure
for a change on the request path; test/bench/run.py measures time and
throughput on a quiet machine.

Workloads: keepalive (one request at a time on one connection), pipeline
(batches of 8 in one write), close (Connection: close, a new connection per
request). Prints instructions per request for each server and their ratio.

Defaults: build/examples/nea-demo and build/tools/uvmalloc (a build with
-DNEA_BUILD_TOOLS=ON).
"""
import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REQ = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
REQ_CLOSE = b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def read_responses(s, n):
    """Reads n responses to GET /hello (Content-Length bodies)."""
    buf = b""
    done = 0
    while done < n:
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            m = re.search(rb"(?i)content-length:\s*(\d+)", buf[:end])
            size = end + 4 + (int(m.group(1)) if m else 0)
            if len(buf) < size:
                break
            buf = buf[size:]
            done += 1
        if done >= n:
            break
        d = s.recv(65536)
        if not d:
            raise SystemExit("instructions: the server closed the connection")
        buf += d


def drive(port, workload, n):
    if workload == "close":
        for _ in range(n):
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(REQ_CLOSE)
                read_responses(s, 1)
        return
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if workload == "keepalive":
            for _ in range(n):
                s.sendall(REQ)
                read_responses(s, 1)
        else:  # pipeline: batches of 8
            for _ in range(n // 8):
                s.sendall(REQ * 8)
                read_responses(s, 8)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_once(cmd, workload, n, tmp):
    """Total instructions of one callgrind run of cmd serving n requests."""
    port = free_port()
    out = os.path.join(tmp, f"cg.{os.getpid()}.{time.monotonic_ns()}")
    full = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] + \
        [a.replace("PORT", str(port)) for a in cmd]
    p = subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or p.poll() is not None:
                p.kill()
                raise SystemExit(f"instructions: {cmd[0]} did not start: {p.stderr.read()}")
            time.sleep(0.1)
    drive(port, workload, n)
    p.send_signal(2)  # SIGINT: both servers stop on it
    try:
        p.wait(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    total = None
    with open(out) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                total = int(line.split()[1])
    os.unlink(out)
    if total is None:
        raise SystemExit(f"instructions: no total in callgrind's output for {cmd[0]}")
    return total


def per_request(cmd, workload, n, tmp):
    a = run_once(cmd, workload, n, tmp)
    b = run_once(cmd, workload, 2 * n, tmp)
    return (b - a) / n


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", default=os.path.join(REPO, "build", "examples", "nea-demo"))
    ap.add_argument("--uvmalloc", default=os.path.join(REPO, "build", "tools", "uvmalloc"))
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--workloads", default="keepalive,pipeline,close")
    args = ap.parse_args()
    servers = {
        "nea-demo": [args.demo, "--port", "PORT", "--arena-size", "256k", "--arenas", "128",
                     "--connections", "256", "--memory-limit", "1G"],
        "uvmalloc": [args.uvmalloc, "--port", "PORT"],
    }
    print(f"instructions per request under callgrind, {args.requests} vs {2 * args.requests} "
          f"requests ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")
    print(f"{'workload':<10} {'nea-demo':>12} {'uvmalloc':>12} {'ratio':>7}")
    with tempfile.TemporaryDirectory(prefix="nea-ir-") as tmp:
        for w in args.workloads.split(","):
            nea = per_request(servers["nea-demo"], w, args.requests, tmp)
            uvm = per_request(servers["uvmalloc"], w, args.requests, tmp)
            print(f"{w:<10} {nea:>12.0f} {uvm:>12.0f} {nea / uvm:>7.3f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
