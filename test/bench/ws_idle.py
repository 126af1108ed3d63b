"""ws_idle: what idle WebSocket connections cost, next to idle keep-alive
HTTP connections (/usr/bin/python3 test/bench/ws_idle.py [--connections N]
[--build DIR] [--port P]).

Starts nea-demo (--prefault, so the whole reservation is resident from the
start and the growth is what lives outside it) and holds, in turn, N idle
keep-alive HTTP connections (each sent GET /hello once) and N idle
WebSocket connections to /ws/echo (each sent one message, echoed), from
this process. With each set open and idle for a second it reads the
server's /stats (connection buffers and arenas held, WebSocket counters)
and nea-demo's VmRSS, and prints one markdown table. Needs Debian's
python3-websockets (scripts/install-deps.sh), hence /usr/bin/python3.

Hard invariants (exit 1): every connection answered, none closed while
idle, no connection buffer and no arena held by the idle connections.
"""
import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time

import websockets

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import neatools as T  # noqa: E402


def rss_kib(pid):
    return T.proc_status(pid).get("VmRSS", 0)


def stats(port):
    return T.http_get_json(port, "/stats")


def hold_http(port, n):
    conns = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        conns.append(s)
    for s in conns:
        buf = b""
        while b"Hello, World!" not in buf:
            d = s.recv(4096)
            if not d:
                sys.exit("an HTTP connection closed before its answer")
            buf += d
    return conns


async def hold_ws(port, n, measure):
    uri = f"ws://127.0.0.1:{port}/ws/echo"
    conns = []
    for _ in range(n):
        conns.append(await websockets.connect(uri, compression=None, ping_interval=None))
    for i, ws in enumerate(conns):
        await ws.send(f"message {i}")
    for i, ws in enumerate(conns):
        if await ws.recv() != f"message {i}":
            sys.exit("a WebSocket message came back wrong")
    await asyncio.sleep(1)
    result = await asyncio.get_running_loop().run_in_executor(None, measure)
    if any(ws.closed for ws in conns):
        sys.exit("a WebSocket connection was closed while idle")
    for ws in conns:
        await ws.close()
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--build", default="build")
    ap.add_argument("--port", type=int, default=26081)
    a = ap.parse_args()
    demo = subprocess.Popen(
        [os.path.join(a.build, "examples", "nea-demo"), "--port", str(a.port), "--prefault",
         "--connections", str(2 * a.connections + 16), "--keepalive-timeout-ms", "600000"],
        stdout=subprocess.PIPE, text=True)
    line = demo.stdout.readline()
    if "listening" not in line:
        sys.exit(f"nea-demo did not start: {line!r}")
    rows = []
    try:
        base = rss_kib(demo.pid)

        def measure():
            return stats(a.port), rss_kib(demo.pid)

        conns = hold_http(a.port, a.connections)
        time.sleep(1)
        st, rss = measure()
        rows.append(("keep-alive HTTP", st, rss))
        for s in conns:
            s.close()
        while stats(a.port)["connections_open"] > 1:
            time.sleep(0.05)
        st, rss = asyncio.run(hold_ws(a.port, a.connections, measure))
        rows.append(("WebSocket", st, rss))
    finally:
        demo.terminate()
        demo.wait()
    bad = False
    print(f"nea-demo: {line.strip()}")
    print(f"VmRSS at start (after --prefault): {base} KiB\n")
    print("| idle connections | open | conn buffers held | arenas held | ws_open | "
          "VmRSS growth | per connection |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, st, rss in rows:
        # The /stats request's own connection and arena are counted too.
        buffers, arenas = st["conn_buffers_in_use"] - 1, st["arenas_in_use"] - 1
        grow = rss - base
        print(f"| {a.connections} {name} | {st['connections_open'] - 1} | {buffers} | {arenas} | "
              f"{st['ws_open']} | {grow} KiB | {grow * 1024 // a.connections} B |")
        bad = bad or buffers != 0 or arenas != 0 or st["connections_open"] - 1 != a.connections
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
