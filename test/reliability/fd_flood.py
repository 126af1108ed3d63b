"""fd_flood: a connection flood at the process fd limit (python3 test/reliability/fd_flood.py).

nea-demo runs under `prlimit --nofile=256:256` with its default 1024
connection slots, so file descriptors run out long before slots do: accept()
fails with EMFILE and libuv's reserve-fd trick must shed connections without
spinning. Before the flood a keep-alive connection is opened and then sends
GET /hello every 100 ms on the same socket for the whole run. The flood (a
Python asyncio client) opens 1000 connections (quick: 600) at once, holds
them without sending anything, and re-opens any the server closes 1 s later,
for 10 s (quick: 3 s). Then it closes them all and 20 new connections each
send GET /hello.

Figures: server CPU during the flood (utime + stime from /proc/PID/stat over
the window, % of one core; a busy loop would show ~100%; target < 20%), the
same over the window minus its first second (the initial accept burst), flood
connections made / closed by the server, server fds (max) during the flood,
"accept failed" lines logged, keep-alive probe requests ok / failed and their
max latency, new connections answered 200 after the flood and how long after
the flood's end the first one succeeded, /stats afterwards.
"""
import asyncio
import socket
import time

import common as C

NOFILE = 256


def add_args(ap):
    ap.add_argument("--flood", type=int, help="flood connections (default 1000, quick 600)")
    ap.add_argument("--seconds", type=float, help="flood window (default 10, quick 3)")


class Flood:
    def __init__(self, port, n, t0, stop_at):
        self.port = port
        self.n = n
        self.t0 = t0
        self.stop_at = stop_at
        self.made = 0
        self.failed = 0
        self.closed_by_server = 0
        self.socks = set()

    def now(self):
        return time.monotonic() - self.t0

    async def one(self):
        loop = asyncio.get_running_loop()
        while self.now() < self.stop_at:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                await asyncio.wait_for(loop.sock_connect(s, ("127.0.0.1", self.port)),
                                       max(0.05, self.stop_at - self.now()))
            except (OSError, asyncio.TimeoutError):
                self.failed += 1
                s.close()
                await asyncio.sleep(1.0)
                continue
            self.made += 1
            self.socks.add(s)
            try:
                d = await asyncio.wait_for(loop.sock_recv(s, 4096),
                                           max(0.05, self.stop_at - self.now()))
                self.closed_by_server += 1  # EOF (or a response) before the end
            except asyncio.TimeoutError:
                pass  # still held at the end of the flood
            except OSError:
                self.closed_by_server += 1
            if self.now() < self.stop_at:
                self.socks.discard(s)
                s.close()
                await asyncio.sleep(1.0)
        # Held sockets are closed by the caller after the CPU sample.


class KeepAlive:
    """One keep-alive connection, a request every 100 ms."""

    def __init__(self, port):
        self.port = port
        self.ok = 0
        self.failed = 0
        self.lat = []
        self.broken = None
        self.r = self.w = None

    async def connect(self):
        self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port)

    async def request(self):
        t = time.monotonic()
        self.w.write(f"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n\r\n".encode())
        head = await asyncio.wait_for(self.r.readuntil(b"\r\n\r\n"), 2.0)
        n = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                n = int(line.split(b":")[1])
        if n:
            await asyncio.wait_for(self.r.readexactly(n), 2.0)
        if head[9:12] != b"200":
            raise ValueError(head[:12])
        self.lat.append(time.monotonic() - t)

    async def run(self, t0, until):
        while time.monotonic() - t0 < until:
            if self.broken is None:
                try:
                    await self.request()
                    self.ok += 1
                except (OSError, ValueError, asyncio.TimeoutError,
                        asyncio.IncompleteReadError) as e:
                    self.failed += 1
                    self.broken = f"{time.monotonic() - t0:.2f} s: {type(e).__name__}"
            await asyncio.sleep(0.1)

    def close(self):
        if self.w is not None:
            self.w.close()


async def new_conns(port, n):
    ok = 0
    for _ in range(n):
        st, _ = await asyncio.get_running_loop().run_in_executor(
            None, lambda: C.http_get(port, "/hello", timeout=2.0))
        ok += st == 200
    return ok


async def main_async(demo, n, secs):
    t0 = time.monotonic()
    ka = KeepAlive(demo.port)
    await ka.connect()
    await ka.request()  # made before the flood
    ka.ok += 1
    total = secs + 4.0
    ka_task = asyncio.ensure_future(ka.run(t0, total))
    fds_max = [demo.fds()]

    async def fd_sampler():
        while time.monotonic() - t0 < total:
            try:
                fds_max[0] = max(fds_max[0], demo.fds())
            except OSError:
                pass
            await asyncio.sleep(0.1)

    samp = asyncio.ensure_future(fd_sampler())
    fl_t0 = time.monotonic() - t0
    flood = Flood(demo.port, n, t0, fl_t0 + secs)
    cpu0 = demo.cpu()
    w0 = time.monotonic()
    tasks = [asyncio.ensure_future(flood.one()) for _ in range(n)]
    await asyncio.sleep(1.0)
    cpu1 = demo.cpu()
    w1 = time.monotonic()
    await asyncio.gather(*tasks)
    cpu2 = demo.cpu()
    w2 = time.monotonic()
    held = len(flood.socks)
    for s in list(flood.socks):
        s.close()
    flood.socks.clear()
    t_end = time.monotonic()
    # New connections after the flood: the first success, then 20 in a row.
    first_ok = None
    deadline = t_end + 3.0
    while time.monotonic() < deadline:
        st, _ = await asyncio.get_running_loop().run_in_executor(
            None, lambda: C.http_get(demo.port, "/hello", timeout=1.0))
        if st == 200:
            first_ok = time.monotonic() - t_end
            break
        await asyncio.sleep(0.05)
    after_ok = await new_conns(demo.port, 20)
    await ka_task
    samp.cancel()
    ka.close()
    return {"flood_connections": n, "flood_s": secs,
            "server_cpu_pct": round((cpu2 - cpu0) / (w2 - w0) * 100, 1),
            "server_cpu_after_1s_pct": round((cpu2 - cpu1) / (w2 - w1) * 100, 1)
            if w2 - w1 > 0.5 else None,
            "connects_made": flood.made, "connects_failed": flood.failed,
            "closed_by_server": flood.closed_by_server, "held_at_end": held,
            "server_fds_max": fds_max[0],
            "keepalive_ok": ka.ok, "keepalive_failed": ka.failed, "keepalive_broken": ka.broken,
            "keepalive_lat_max_ms": round(max(ka.lat) * 1000, 2) if ka.lat else None,
            "keepalive_lat_p99_ms": round(C.pct(ka.lat, 99) * 1000, 2) if ka.lat else None,
            "first_new_ok_after_s": None if first_ok is None else round(first_ok, 3),
            "new_after_ok": after_ok, "new_after_n": 20}


def run(args, rep):
    C.raise_nofile()
    C.pin_client()
    demo_bin, _ = C.tools()
    n = args.flood or (600 if args.quick else 1000)
    secs = args.seconds or (3.0 if args.quick else 10.0)
    demo = C.Demo(demo_bin, [], nofile=NOFILE)
    if not demo.started:
        raise SystemExit(f"fd_flood: demo did not start (exit {demo.exit_code})")
    C.note(f"demo pid {demo.pid} port {demo.port} under nofile={NOFILE}, fds at start "
           f"{demo.fds0}; flood of {n} connections for {secs:g} s")
    f = asyncio.run(main_async(demo, n, secs))
    alive = demo.alive()
    st = None
    if alive:
        C.wait_for(lambda: C.idle_baseline_ok(demo.stats(tries=5)), 5.0, 0.2)
        st = demo.stats()
    f.update({"nofile": NOFILE, "fds_at_start": demo.fds0,
              "accept_failed_logged": demo.stderr_count("accept failed"),
              "stats_after": st, "alive": alive})
    f["exit_code"] = demo.stop()
    rep.figures = f
    C.table(f"fd_flood: nea-demo under prlimit --nofile={NOFILE}:{NOFILE}, {n} connections "
            f"held for {secs:g} s (re-opened 1 s after the server closes one)",
            ["figure", "value"],
            [["server CPU over the flood (% of a core)", f["server_cpu_pct"]],
             ["  the same without its first second", f["server_cpu_after_1s_pct"]],
             ["flood connects made / failed", f"{f['connects_made']} / {f['connects_failed']}"],
             ["  closed by the server during the flood", f["closed_by_server"]],
             ["  still held at the end", f["held_at_end"]],
             ["server fds: at start / max during the flood",
              f"{f['fds_at_start']} / {f['server_fds_max']}"],
             ["'accept failed' lines logged", f["accept_failed_logged"]],
             ["/stats accept_errors after", "-" if not st else st.get("accept_errors", "n/a")],
             ["keep-alive probe: requests ok / failed", f"{f['keepalive_ok']} / "
              f"{f['keepalive_failed']}"],
             ["  p99 / max latency (ms)", f"{f['keepalive_lat_p99_ms']} / "
              f"{f['keepalive_lat_max_ms']}"],
             ["  broken", f["keepalive_broken"] or "no"],
             ["first new connection answered 200, s after the flood",
              f["first_new_ok_after_s"]],
             ["new connections after the flood answered 200",
              f"{f['new_after_ok']}/{f['new_after_n']}"],
             ["/stats after: connections_open / arenas_in_use",
              "-" if not st else f"{st['connections_open']} / {st['arenas_in_use']}"],
             ["alive, exit code after SIGTERM", f"{alive}, {f['exit_code']}"]])
    rep.target("server CPU during the flood (no busy loop)", f["server_cpu_pct"] < 20,
               f"{f['server_cpu_pct']}% of a core", "< 20%",
               by=f"{f['server_cpu_pct'] - 20:+.1f} pp")
    rep.hard("keep-alive connection made before the flood kept working",
             f["keepalive_failed"] == 0, f"{f['keepalive_ok']} ok, {f['keepalive_failed']} failed",
             "0 failed")
    rep.hard("new connections succeed once the flood stops",
             f["new_after_ok"] == f["new_after_n"] and f["first_new_ok_after_s"] is not None,
             f"{f['new_after_ok']}/{f['new_after_n']}, first after {f['first_new_ok_after_s']} s",
             "20/20")
    rep.hard("process alive, exit 0 after SIGTERM", alive and f["exit_code"] == 0,
             f"alive={alive} exit={f['exit_code']}", "alive, 0")
    rep.hard("slots and arenas back to baseline (/stats 1/1)", C.idle_baseline_ok(st),
             None if st is None else f"conns={st['connections_open']} arenas={st['arenas_in_use']}",
             "1/1")


if __name__ == "__main__":
    raise SystemExit(C.main("fd_flood", __doc__, run, 60, 300, add_args))
