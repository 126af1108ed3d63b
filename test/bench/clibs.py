#!/usr/bin/env python3
"""clibs.py - /json and /gzip: the arena adapters against libc malloc.

Runs nea-demo with --libc-routes (the same handlers, with jansson and zlib
left on libc malloc, registered as /json-libc/N and /gzip-libc/N) and
measures each pair with wrk, rounds interleaved so a noisy patch of the
machine hits both sides. Prints requests/s per route (median of the rounds)
and the ratio arena / libc: above 1 means the arena version is faster.

  python3 -B test/bench/clibs.py [--demo build/examples/nea-demo]
      [--rounds 3] [--seconds 5] [--port 20410] [--json-n 100] [--gzip-n 64]

The server runs pinned to CPU 0 and wrk (1 thread, 16 connections) to CPU 1
when taskset exists.
"""
import argparse
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time


def pin(cpu, cmd):
    return (["taskset", "-c", str(cpu)] if shutil.which("taskset") else []) + cmd


def wait_port(port, proc, seconds=10.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            sys.exit("clibs.py: nea-demo exited early")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("clibs.py: nea-demo did not start listening")


def wrk(port, path, seconds):
    out = subprocess.run(
        pin(1, ["wrk", "-t", "1", "-c", "16", "-d", f"{seconds}s",
                f"http://127.0.0.1:{port}{path}"]),
        check=True, capture_output=True, text=True).stdout
    if "Non-2xx" in out:
        sys.exit(f"clibs.py: {path} answered errors:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo", default="build/examples/nea-demo")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--port", type=int, default=20410)
    ap.add_argument("--json-n", type=int, default=100)
    ap.add_argument("--gzip-n", type=int, default=64)
    a = ap.parse_args()
    pairs = [(f"/json/{a.json_n}", f"/json-libc/{a.json_n}"),
             (f"/gzip/{a.gzip_n}", f"/gzip-libc/{a.gzip_n}")]
    proc = subprocess.Popen(
        pin(0, [a.demo, "--port", str(a.port), "--arena-size", "512k", "--arenas", "32",
                "--connections", "64", "--libc-routes", "--overload-target-ms", "0"]),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(a.port, proc)
        for arena, libc in pairs:  # warm-up, not counted
            wrk(a.port, arena, 1)
            wrk(a.port, libc, 1)
        rates = {p: [] for pair in pairs for p in pair}
        for _ in range(a.rounds):
            for arena, libc in pairs:
                for path in (arena, libc):
                    rates[path].append(wrk(a.port, path, a.seconds))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{a.rounds} rounds x {a.seconds} s, wrk -t1 -c16")
    print("| route | arena req/s | libc req/s | arena / libc |")
    print("|---|---|---|---|")
    for arena, libc in pairs:
        ra, rl = statistics.median(rates[arena]), statistics.median(rates[libc])
        print(f"| {arena} | {ra:.0f} | {rl:.0f} | {ra / rl:.2f} |")


if __name__ == "__main__":
    main()
