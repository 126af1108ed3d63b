"""slot_flood: addresses that hold connection slots with silent connections (python3 -B test/reliability/slot_flood.py).

nea-demo --connections 256. A flood from 127.0.0.1 keeps 306 connections
open that never send a byte and reconnects whenever the server closes one;
a polite client from 127.0.0.2 asks GET /hello on a fresh connection every
100 ms (2 s timeout). Then several greedy addresses at once (127.0.0.11-14
with 400, 200, 120 and 80 silent connections, each more than an even
share of 64) plus the polite client: how many slots each address holds is
sampled from the server's accepted sockets (ss -tnp: sockets in the accept
queue belong to no process) over the second half of the run. Each scenario
runs with fair share on (--fair-share-pct 50, the default) and off (0).

Targets: the polite client gets >= 95% 200s in both floods (fair share
on); with several greedy addresses each holds within 0.5x-1.5x of an even
part of the slots they hold between them (proportional, not first-come;
with connections replaced as fast as they are closed, many slots are
changing hands at any moment). Invariants: the server stays up and
exits 0.
"""
import selectors
import socket
import subprocess
import threading
import time

import common as C

SLOTS = 256


def add_args(ap):
    ap.add_argument("--seconds", type=float, help="seconds per scenario (default 17, quick 6)")


class Flood:
    """n connections from src that never send; each one the server closes
    is opened again at once."""

    def __init__(self, port, src, n):
        self.port, self.src, self.n = port, src, n
        self.sel = selectors.DefaultSelector()
        self.reconnects = 0
        self.stop = False
        for _ in range(n):
            self.open()
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def open(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((self.src, 0))
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", self.port))
        except BlockingIOError:
            pass
        except OSError:
            s.close()
            return
        self.sel.register(s, selectors.EVENT_READ)

    def loop(self):
        while not self.stop:
            for key, _ in self.sel.select(0.05):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    self.sel.unregister(s)
                    s.close()
                    self.reconnects += 1
                    self.open()

    def close(self):
        self.stop = True
        self.t.join(5)
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()


class Polite:
    """GET /hello from src on a fresh connection every 100 ms."""

    def __init__(self, port, src, count):
        self.port, self.src, self.count = port, src, count
        self.ok = 0
        self.statuses = {}
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def one(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2.0)
        try:
            s.bind((self.src, 0))
            s.connect(("127.0.0.1", self.port))
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError as e:
            return type(e).__name__
        finally:
            s.close()
        return data[9:12].decode() if data.startswith(b"HTTP/1.1 ") else "no answer"

    def loop(self):
        t0 = time.monotonic()
        for i in range(self.count):
            st = self.one()
            self.statuses[st] = self.statuses.get(st, 0) + 1
            self.ok += st == "200"
            delay = t0 + (i + 1) * 0.1 - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def wait(self, timeout):
        self.t.join(timeout)


def held_by_address(port, pid):
    """Accepted connections on port by peer address (the demo's own sockets)."""
    out = subprocess.run(["ss", "-Htnp", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True, timeout=10).stdout
    held = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 5 or f"pid={pid}," not in line:
            continue
        peer = parts[3].rsplit(":", 1)[0]
        held[peer] = held.get(peer, 0) + 1
    return held


def scenario(demo_bin, fair, floods, secs, tag):
    demo = C.Demo(demo_bin, ["--connections", str(SLOTS), "--fair-share-pct", str(fair)],
                  tag=f"{tag}{fair}")
    if not demo.started:
        raise SystemExit("slot_flood: demo did not start")
    cpu0 = demo.cpu()
    t0 = time.monotonic()
    fl = [Flood(demo.port, src, n) for src, n in floods]
    time.sleep(0.5)  # the floods fill the slots first
    polite = Polite(demo.port, "127.0.0.2", int(secs * 10))
    samples = []
    t_end = time.monotonic() + secs
    while time.monotonic() < t_end:
        time.sleep(0.5)
        if time.monotonic() > t_end - secs / 2:
            samples.append(held_by_address(demo.port, demo.pid))
    polite.wait(secs + 10)
    cpu = demo.cpu()
    for f in fl:
        f.close()
    st = demo.stats() if demo.alive() else {}
    code = demo.stop()
    mean = {}
    for src, _ in floods:
        vals = [s.get(src, 0) for s in samples]
        mean[src] = sum(vals) / len(vals) if vals else 0.0
    return {"fair_share_pct": fair, "polite_sent": polite.count, "polite_200": polite.ok,
            "polite_statuses": polite.statuses, "held_mean": mean,
            "reconnects": {src: f.reconnects for (src, _), f in zip(floods, fl)},
            "shed_no_slot": st.get("shed_no_slot"), "shed_fair": st.get("shed_fair"),
            "evicted": st.get("evicted"), "server_cpu_pct": 100 * (cpu - cpu0) / (time.monotonic() - t0),
            "exit_code": code}


def run(args, rep):
    demo_bin, _ = C.tools()
    C.raise_nofile()
    secs = args.seconds or (6.0 if args.quick else 17.0)
    one = [("127.0.0.1", SLOTS + 50)]
    many = [("127.0.0.11", 400), ("127.0.0.12", 200), ("127.0.0.13", 120), ("127.0.0.14", 80)]
    runs = {}
    for name, floods in (("one", one), ("many", many)):
        for fair in (50, 0):
            C.note(f"slot_flood: {name} greedy address(es), --fair-share-pct {fair}")
            runs[(name, fair)] = scenario(demo_bin, fair, floods, secs, name)
    rows = []
    for (name, fair), r in runs.items():
        held = " ".join(f"{src.rsplit('.', 1)[1]}:{v:.0f}" for src, v in r["held_mean"].items())
        rows.append([name, fair, f"{r['polite_200']}/{r['polite_sent']}",
                     f"{r['polite_200'] / r['polite_sent']:.0%}", held, r["shed_no_slot"],
                     r["shed_fair"], r["evicted"], f"{r['server_cpu_pct']:.0f}"])
    C.table(f"slot_flood: {SLOTS} slots, silent connections reconnecting; polite 127.0.0.2 "
            f"GET /hello every 100 ms for {secs:g} s",
            ["flood", "fair%", "polite 200", "share", "slots held (mean, 2nd half)",
             "shed_no_slot", "shed_fair", "evicted", "server cpu%"], rows)
    for name in ("one", "many"):
        r = runs[(name, 50)]
        share = r["polite_200"] / r["polite_sent"]
        rep.target(f"{name} flood: polite 200s (fair share on)", share >= 0.95, f"{share:.1%}",
                   ">= 95%", by=f"{(share - 0.95) * 100:+.1f} pts")
    # Proportional: of the slots the greedy addresses hold at a moment (the
    # rest are changing hands), each address's part against 1/N.
    held = runs[("many", 50)]["held_mean"]
    total = sum(held.values())
    ratio = [v / total * len(many) if total else 0.0 for v in held.values()]
    worst = max(abs(x - 1) for x in ratio) if ratio else 1.0
    rep.target("several greedy addresses: each holds 0.5x-1.5x an even part of what they hold",
               worst <= 0.5, " ".join(f"{x:.2f}x" for x in ratio), "within 0.5 of 1.00x")
    rep.hard("server exits 0 after SIGTERM (every run)",
             all(r["exit_code"] == 0 for r in runs.values()),
             "/".join(str(r["exit_code"]) for r in runs.values()), "0")
    rep.figures = {f"{n}_{f}": r for (n, f), r in runs.items()}


if __name__ == "__main__":
    raise SystemExit(C.main("slot_flood", __doc__, run, 100, 200, add_args))
