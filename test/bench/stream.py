#!/usr/bin/env python3
"""stream.py - streaming benchmarks: bodies far larger than the arena.

    python3 -B test/bench/stream.py [--build DIR] [--gib N] [--port P]

Runs nea-demo (Release, built with the tools into DIR, default
/tmp/nea-stream-build) and measures, printing one Markdown table per part:

  1. N GiB (default 1) down (/stream/N*1024, Content-Length), down chunked
     (/stream/..?chunked, read with http.client, a strict parser) and up
     (POST /upload, crc32 checked) through a 64 KiB arena, with the server
     under alloccount.so: VmHWM growth over the prefaulted reservation
     (after a warm-up), heap calls after the warm-up, throughput.
  2. A 100 MiB file: nea-demo's /static against nginx (sendfile on, one
     worker), both pinned to CPU 0, curl pinned to CPU 1, interleaved
     rounds (--rounds, default 15); MB/s (median), the ratio of the medians
     and its range over the rounds, and server CPU time per byte.
  3. 64 readers of /stream/100 that read 1 KiB per second: server memory
     sampled while they hang (flat), each cut by write_timeout_ms (2 s
     here), every arena back afterwards.

Ports: P (default 20300) for nea-demo, P+1 for nginx. Scripts, not tests:
a run's figures go into test/bench/results/ as a file named by its date,
with the command.
"""
import argparse
import http.client
import os
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import neatools  # noqa: E402

neatools.name = "stream.py"
MIB = 1 << 20
PATTERN = bytes(i % 256 for i in range(256)) * 4096  # 1 MiB: byte i is i % 256


def counts(demo, path):
    """alloccount.so's counters, snapshotted with SIGUSR1."""
    if os.path.exists(path):
        os.unlink(path)
    os.kill(demo.pid, signal.SIGUSR1)
    end = time.time() + 5
    while not os.path.exists(path) and time.time() < end:
        time.sleep(0.01)
    with open(path) as f:
        return {k: int(v) for k, v in (line.split() for line in f if line.strip())}


def heap_calls(before, after):
    keys = [k for k in after if k != "free_null"]
    return sum(after[k] - before.get(k, 0) for k in keys)


def get_raw(port, path, nbytes):
    """GET with a known Content-Length, compared against the pattern in
    1 MiB blocks; returns seconds."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    t0 = time.perf_counter()
    f = s.makefile("rb", buffering=MIB)
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += f.readline()
    assert head.startswith(b"HTTP/1.1 200"), head
    assert f"Content-Length: {nbytes}\r\n".encode() in head, head
    got = 0
    while got < nbytes:
        block = f.read(min(MIB, nbytes - got))
        assert block == PATTERN[: len(block)], f"wrong bytes at {got}"
        got += len(block)
    assert f.read(1) == b""
    s.close()
    return time.perf_counter() - t0


def get_chunked(port, path, nbytes):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    t0 = time.perf_counter()
    c.request("GET", path)
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Transfer-Encoding") == "chunked"
    got = 0
    while True:
        block = r.read(MIB)
        if not block:
            break
        assert block == PATTERN[: len(block)], f"wrong bytes at {got}"
        got += len(block)
    assert got == nbytes, (got, nbytes)
    c.close()
    return time.perf_counter() - t0


def upload(port, nbytes):
    block = os.urandom(MIB)
    crc = 0
    s = socket.create_connection(("127.0.0.1", port))
    t0 = time.perf_counter()
    s.sendall(f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {nbytes}\r\n\r\n".encode())
    sent = 0
    while sent < nbytes:
        n = min(MIB, nbytes - sent)
        s.sendall(block[:n])
        crc = zlib.crc32(block[:n], crc)
        sent += n
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.endswith(b"\n"):
        more = s.recv(4096)
        if not more:
            break
        answer += more
    s.close()
    secs = time.perf_counter() - t0
    want = f"bytes={nbytes} crc32={crc:08x}".encode()
    assert want in answer, (want, answer)
    return secs


def part1(tools, port, gib, out):
    counts_path = os.path.join(out, "counts")
    args = ["--prefault", "--arena-size", "64k", "--arenas", "16", "--connections", "64",
            "--memory-limit", "64M"]
    demo = neatools.Demo(tools.demo, args, os.path.join(out, "demo1.out"), os.path.join(out, "demo1.err"), port=port, cpu=0,
                         env={"NEA_ALLOCCOUNT_FILE": counts_path,
                              "LD_PRELOAD": tools.alloccount})
    n = gib << 30
    # Warm-up: every path once, so libuv and the kernel have sized what they size.
    get_raw(port, "/stream/1", MIB)
    get_chunked(port, "/stream/1?chunked", MIB)
    upload(port, MIB)
    hwm0 = neatools.proc_status(demo.pid)["VmHWM"]
    c0 = counts(demo, counts_path)
    rows = []
    for what, fn in (("down, Content-Length", lambda: get_raw(port, f"/stream/{gib * 1024}", n)),
                     ("down, chunked", lambda: get_chunked(port, f"/stream/{gib * 1024}?chunked",
                                                           n)),
                     ("up, Content-Length", lambda: upload(port, n))):
        secs = fn()
        st = neatools.proc_status(demo.pid)
        rows.append((what, n / secs / 1e6, st["VmHWM"] - hwm0))
    c1 = counts(demo, counts_path)
    stats = demo.stats()
    demo.stop()
    print(f"\n### {gib} GiB through a 64 KiB arena (reservation {demo.reserved} bytes, "
          f"prefaulted; VmHWM after warm-up {hwm0} KiB)\n")
    print("| transfer | MB/s | VmHWM growth (KiB) |")
    print("|---|---:|---:|")
    for what, mbs, growth in rows:
        print(f"| {what} | {mbs:.0f} | {growth} |")
    print(f"\nheap calls after warm-up: {heap_calls(c0, c1)} "
          f"(malloc {c1.get('malloc', 0) - c0.get('malloc', 0)}); "
          f"arena_peak_bytes {stats['arena_peak_bytes']}")


NGINX_CONF = """daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/cb; proxy_temp_path {dir}/px; fastcgi_temp_path {dir}/fc;
    uwsgi_temp_path {dir}/uw; scgi_temp_path {dir}/sc;
    sendfile on;
    tcp_nopush on;
    server {{
        listen 127.0.0.1:{port};
        location = /static {{ alias {file}; default_type text/plain; }}
    }}
}}
"""


def curl_speed(port):
    r = subprocess.run(["taskset", "-c", "1", "curl", "-s", "-o", "/dev/null", "-w",
                        "%{speed_download} %{size_download}", f"http://127.0.0.1:{port}/static"],
                       capture_output=True, text=True, check=True)
    speed, size = r.stdout.split()
    return float(speed), int(float(size))


def part2(tools, port, out, rounds):
    path = os.path.join(out, "static.bin")
    with open(path, "wb") as f:
        for _ in range(100):
            f.write(os.urandom(MIB))
    ndir = os.path.join(out, "nginx")
    os.makedirs(ndir, exist_ok=True)
    with open(os.path.join(ndir, "nginx.conf"), "w") as f:
        f.write(NGINX_CONF.format(dir=ndir, port=port + 1, file=path))
    nginx = neatools.Server(["nginx", "-p", ndir, "-c", os.path.join(ndir, "nginx.conf")],
                            os.path.join(out, "nginx.log"), cpu=0, tag="nginx")
    nginx.wait_port(port + 1)
    demo = neatools.Demo(tools.demo, ["--arena-size", "64k", "--arenas", "16", "--static", path],
                         os.path.join(out, "demo2.out"), os.path.join(out, "demo2.err"), port=port, cpu=0)
    servers = (("nea-demo", demo, port), ("nginx", nginx, port + 1))
    speeds = {name: [] for name, _, _ in servers}
    cpu = {name: 0.0 for name, _, _ in servers}
    nbytes = {name: 0 for name, _, _ in servers}
    for name, _, p in servers:
        curl_speed(p)  # warm-up: page cache
    for _ in range(rounds):
        for name, srv, p in servers:
            c0 = srv.cpu()
            speed, size = curl_speed(p)
            cpu[name] += srv.cpu() - c0
            nbytes[name] += size
            assert size == 100 * MIB, (name, size)
            speeds[name].append(speed / 1e6)
    demo.stop()
    nginx.stop()
    print(f"\n### 100 MiB file, {rounds} interleaved rounds (servers on CPU 0, curl on CPU 1)\n")
    print("| server | MB/s (median) | server CPU ns/byte |")
    print("|---|---:|---:|")
    for name, _, _ in servers:
        print(f"| {name} | {statistics.median(speeds[name]):.0f} | "
              f"{cpu[name] * 1e9 / nbytes[name]:.3f} |")
    ratio = statistics.median(speeds["nea-demo"]) / statistics.median(speeds["nginx"])
    rounds_ratio = [a / b for a, b in zip(speeds["nea-demo"], speeds["nginx"])]
    print(f"\nnea-demo / nginx throughput: {ratio:.2f} (of the medians; per round "
          f"{min(rounds_ratio):.2f} .. {max(rounds_ratio):.2f})")


def part3(tools, port, out, readers=64):
    demo = neatools.Demo(tools.demo, ["--prefault", "--arena-size", "64k", "--arenas", "80",
                                      "--connections", "128", "--memory-limit", "64M",
                                      "--write-timeout-ms", "2000"],
                         os.path.join(out, "demo3.out"), os.path.join(out, "demo3.err"), port=port, cpu=0)
    get_raw(port, "/stream/1", MIB)
    rss0 = neatools.proc_status(demo.pid)["VmRSS"]
    t0 = time.time()
    socks = []
    for _ in range(readers):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /stream/100 HTTP/1.1\r\nHost: x\r\n\r\n")
        s.setblocking(False)
        socks.append(s)
    samples = []
    in_use = []
    timeouts0 = demo.stats()["timeouts"]
    all_cut = None
    while time.time() - t0 < 60:
        time.sleep(1.0)
        for s in socks:
            try:
                s.recv(1024)  # 1 KiB per second per reader
            except (BlockingIOError, ConnectionResetError):
                pass
        samples.append(neatools.proc_status(demo.pid)["VmRSS"])
        st = demo.stats()
        in_use.append(st["arenas_in_use"] - 1)  # not counting the /stats request
        if st["timeouts"] - timeouts0 >= readers and all_cut is None:
            all_cut = time.time() - t0
        if all_cut is not None and time.time() - t0 > all_cut + 3:
            break  # a few samples after the cut: memory stays where it was
    for s in socks:
        s.close()
    stats = demo.stats()
    hwm = neatools.proc_status(demo.pid)["VmHWM"]
    demo.stop()
    print(f"\n### {readers} readers of /stream/100 at 1 KiB/s (write_timeout_ms 2000)\n")
    print(f"- cut by the write timeout: {stats['timeouts'] - timeouts0} of {readers}"
          + (f", all within {all_cut:.0f} s" if all_cut is not None else ""))
    print(f"- arenas held by the readers, one sample per second: {in_use}")
    print(f"- server VmRSS: {rss0} KiB before; {min(samples)} .. {max(samples)} KiB while they "
          f"hung ({len(samples)} samples); VmHWM at the end {hwm} KiB "
          f"(reservation {demo.reserved} bytes, prefaulted)")
    print(f"- arenas in use afterwards: {stats['arenas_in_use']} (the /stats request itself)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="/tmp/nea-stream-build")
    ap.add_argument("--gib", type=int, default=1)
    ap.add_argument("--port", type=int, default=20300)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--parts", default="123")
    a = ap.parse_args()
    neatools.build(a.build)
    tools = neatools.Tools(a.build)
    out = tempfile.mkdtemp(prefix="nea-stream-")
    try:
        print(f"stream.py on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        if "1" in a.parts:
            part1(tools, a.port, a.gib, out)
        if "2" in a.parts:
            part2(tools, a.port, out, a.rounds)
        if "3" in a.parts:
            part3(tools, a.port, out)
    finally:
        neatools.cleanup()
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
