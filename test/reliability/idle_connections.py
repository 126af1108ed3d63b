"""idle_connections: many idle keep-alive connections inside the printed bound
(python3 test/reliability/idle_connections.py [--quick] [--connections N] [--hold S]
[--peer nginx]).

nea-demo runs with --connections 16384 --prefault and a keep-alive timeout
longer than the hold. N connections (default 15000: this machine caps a
process at 20,000 open files), from source addresses spread over
127.0.1.0/24, each send GET /hello once and then stay idle for --hold
seconds (default 30, also in --quick). Meanwhile a newcomer from 127.0.0.1
asks GET /hello on a fresh connection every 50 ms (its latency is timed).
After the hold: how many idle connections are still open (none may have
been closed), 500 of them are served again on their own connection, and the
server's VmHWM is compared with the reservation it printed (--prefault: the
whole bound is resident from the start, so the growth is what lives outside
it: libuv's per-fd tables, thread stacks, libc).

With --peer nginx the same connections are held against nginx (one worker,
worker_connections 20000, keepalive_timeout above the hold) and its worker's
RSS growth per idle connection is reported beside libnea's bytes per idle
connection in the bound (conn_slot_size) and its RSS growth.

Hard invariants: every idle connection answered 200 at first, every one
still open after the hold, the 500 re-served answered 200, newcomers all
200, VmHWM <= reserved + 1 MiB, the process alive. Target (WARN in --quick):
newcomer p99 < 10 ms.
"""
import os
import random
import select
import shutil
import socket
import subprocess
import tempfile
import time

import common as C

REQ = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"


def add_args(ap):
    ap.add_argument("--connections", type=int, default=15000, help="idle connections (15000)")
    ap.add_argument("--hold", type=float, default=30.0, help="seconds they stay idle (30)")
    ap.add_argument("--peer", choices=["nginx"], help="also hold them against nginx")


def read_response(s, timeout=5.0):
    """Reads one response to GET /hello (a small Content-Length body); returns
    the status or None."""
    s.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            return None
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    n = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":")[1])
    while len(rest) < n:
        d = s.recv(4096)
        if not d:
            return None
        rest += d
    return int(head[9:12])


def open_idle(port, n):
    """n connections, each served once; returns (sockets, how many got 200)."""
    socks, ok = [], 0
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((f"127.0.1.{1 + i % 250}", 0))
        s.connect(("127.0.0.1", port))
        s.sendall(REQ)
        try:
            ok += read_response(s) == 200
        except OSError:
            pass
        s.setblocking(False)
        socks.append(s)
    return socks, ok


def still_open(socks):
    """Sockets with nothing to read (no EOF, no reset): still open."""
    p = select.poll()
    for s in socks:
        p.register(s, select.POLLIN | select.POLLERR | select.POLLHUP)
    closed = {fd for fd, _ in p.poll(0)}
    return sum(1 for s in socks if s.fileno() not in closed)


def newcomers_during(port, seconds):
    """GET /hello on a fresh connection every 50 ms; (latencies, failures)."""
    lat, failed = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2.0) as s:
                s.sendall(REQ)
                if read_response(s, 2.0) == 200:
                    lat.append(time.monotonic() - t)
                else:
                    failed += 1
        except OSError:
            failed += 1
        time.sleep(max(0.0, 0.05 - (time.monotonic() - t)))
    return lat, failed


def reserve_again(socks, k):
    """GET /hello again on k of the idle connections; how many got 200."""
    ok = 0
    for s in random.Random(7).sample(socks, k):
        s.setblocking(True)
        try:
            s.sendall(REQ)
            ok += read_response(s) == 200
        except OSError:
            pass
    return ok


def rss_kib(pid):
    return C.proc_status(pid)["VmRSS"]


def nginx_peer(n, hold):
    """Holds n idle keep-alive connections against nginx; its worker's RSS
    growth per connection (bytes), or None when nginx is not installed."""
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                    else None)
    if exe is None:
        return None
    d = tempfile.mkdtemp(prefix="nea-idle-nginx-")
    port = 18000 + os.getpid() % 1000
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(f"""worker_processes 1; daemon off; pid {d}/nginx.pid;
error_log {d}/error.log; worker_rlimit_nofile 20000;
events {{ worker_connections 20000; }}
http {{ access_log off; keepalive_timeout {int(hold) + 60}s; keepalive_requests 100000;
  server {{ listen 127.0.0.1:{port}; location /hello {{ return 200 "Hello, World!"; }} }} }}
""")
    p = subprocess.Popen(["prlimit", "--nofile=20000:20000", exe, "-p", d, "-c",
                          os.path.join(d, "nginx.conf")], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        C.wait_for(lambda: C.T.port_open(port), 5.0)
        workers = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True,
                                 text=True).stdout.split()
        w = int(workers[0])
        socks, _ = open_idle(port, 10)  # warm
        before = rss_kib(w)
        more, ok = open_idle(port, n)
        time.sleep(1.0)
        after = rss_kib(w)
        for s in socks + more:
            s.close()
        return {"nginx_ok": ok, "nginx_rss_growth_kib": after - before,
                "nginx_bytes_per_idle": round((after - before) * 1024 / n)}
    finally:
        p.terminate()
        p.wait(timeout=10)
        shutil.rmtree(d, ignore_errors=True)


def run(args, rep):
    n, hold = args.connections, args.hold
    C.raise_nofile(20000)
    demo_bin, _ = C.tools()
    demo = C.Demo(demo_bin, ["--connections", "16384", "--prefault",
                             "--keepalive-timeout-ms", str(int(hold * 1000) + 60000)],
                  nofile=20000)
    if not demo.started:
        raise SystemExit(f"idle_connections: demo did not start (exit {demo.exit_code})")
    slot = demo.info.get("slot_bytes")
    C.note(f"demo pid {demo.pid} port {demo.port} reserved {demo.reserved} slot {slot} B; "
           f"opening {n} idle connections")
    rss0 = rss_kib(demo.pid)
    t0 = time.monotonic()
    socks, first_ok = open_idle(demo.port, n)
    open_s = time.monotonic() - t0
    rss1 = rss_kib(demo.pid)
    C.note(f"{first_ok}/{n} served in {open_s:.1f} s; holding them {hold:g} s")
    lat, newcomer_failed = newcomers_during(demo.port, hold)
    alive = demo.alive()
    open_after = still_open(socks)
    again = reserve_again(socks, min(500, n))
    st = demo.stats() if alive else None
    hwm_kib = demo.status()["VmHWM"] if alive else None
    for s in socks:
        s.close()
    peer = nginx_peer(n, 5.0) if args.peer == "nginx" else None
    exit_code = demo.stop()
    limit_kib = demo.reserved // 1024 + 1024
    f = {"connections": n, "hold_s": hold, "open_s": round(open_s, 1), "first_ok": first_ok,
         "open_after_hold": open_after, "served_again_ok": again,
         "newcomers": len(lat) + newcomer_failed, "newcomers_failed": newcomer_failed,
         "newcomer_p99_ms": round(C.pct(lat, 99) * 1000, 2) if lat else None,
         "newcomer_max_ms": round(max(lat) * 1000, 2) if lat else None,
         "reserved": demo.reserved, "slot_bytes": slot, "vmhwm_kib": hwm_kib,
         "vmhwm_over_reserved_kib": None if hwm_kib is None else hwm_kib - demo.reserved // 1024,
         "rss_growth_kib": rss1 - rss0,
         "bytes_per_idle_in_bound": slot,
         "stats_connections_open": None if st is None else st["connections_open"],
         "stats_buffers_in_use": None if st is None else st.get("conn_buffers_in_use"),
         "exit_code": exit_code, "alive": alive}
    if peer:
        f.update(peer)
    rep.figures = f
    rows = [["idle connections served once (200)", f"{first_ok}/{n} in {f['open_s']} s"],
            ["still open after the hold", f"{open_after}/{n} after {hold:g} s"],
            ["served again (200)", f"{again}/{min(500, n)}"],
            ["newcomers (200 / asked), p99 / max ms",
             f"{len(lat)}/{f['newcomers']}, {f['newcomer_p99_ms']} / {f['newcomer_max_ms']}"],
            ["bytes per idle connection in the bound (slot)", slot],
            ["server RSS growth while opening them (KiB)", f["rss_growth_kib"]],
            ["VmHWM / reserved (KiB)", f"{hwm_kib} / {demo.reserved // 1024} "
                                       f"(+{f['vmhwm_over_reserved_kib']})"],
            ["/stats connections_open / buffers in use",
             f"{f['stats_connections_open']} / {f['stats_buffers_in_use']}"]]
    if peer:
        rows.append(["nginx: RSS growth per idle connection (bytes)",
                     peer["nginx_bytes_per_idle"]])
    C.table(f"idle_connections: {n} idle keep-alive connections held {hold:g} s", ["figure", "value"],
            rows)
    rep.hard("every idle connection served at first", first_ok == n, f"{first_ok}/{n}", f"{n}/{n}")
    rep.hard("every idle connection still open after the hold", open_after == n,
             f"{open_after}/{n}", f"{n}/{n}")
    rep.hard("500 of them served again", again == min(500, n), f"{again}", f"{min(500, n)}")
    rep.hard("newcomers all answered 200", newcomer_failed == 0 and lat,
             f"{newcomer_failed} failed of {f['newcomers']}", "0 failed")
    rep.hard("VmHWM within the printed reservation + 1 MiB",
             hwm_kib is not None and hwm_kib <= limit_kib, f"{hwm_kib} KiB",
             f"<= {limit_kib} KiB")
    rep.hard("an idle connection costs at most 512 bytes of the bound",
             slot is not None and slot <= 512, f"{slot} B", "<= 512 B")
    rep.hard("process alive, exit 0 after SIGTERM", alive and exit_code == 0,
             f"alive={alive} exit={exit_code}", "alive, 0")
    p99 = f["newcomer_p99_ms"]
    rep.target("newcomer p99 while the connections are held", p99 is not None and p99 < 10,
               f"{p99} ms", "< 10 ms")


if __name__ == "__main__":
    raise SystemExit(C.main("idle_connections", __doc__, run, 90, 150, add_args))
