"""slow_clients: slowloris, slow body and slow reader against a few slots (python3 test/reliability/slow_clients.py).

Each scenario gets a fresh nea-demo with --connections 64 (fewer slots than
attackers) and a Python asyncio client (stdlib; slowhttptest was not used
because it neither re-opens cut connections nor reports when each one was
cut) that opens 200 slow connections at once:

  slowloris  GET /hello, the request line and one header, then one more
             header byte every 0.5 s, never finishing the head. Cut by the
             header deadline (--header-timeout-ms; 408).
  slowbody   POST /svg with Content-Length: 32768 (fits the 64 KiB arena),
             then one body byte every 0.5 s. The body timeout (10 s) is an
             idle timer between reads that this drip never trips; the body
             deadline (--body-deadline-ms, set to the header deadline here)
             cuts it (408).
  slowread   GET /static of an 8 MiB file with SO_RCVBUF 4 KiB, then never
             reads. Cut by the write timeout (10 s): /static is a streamed
             response, so the cut comes 10 s after the last piece the
             kernel took, moments after the request.

Meanwhile a probe launches a good request (new connection, GET /hello) every
100 ms; a probe that gets a 503 or a refused/reset connection retries every
100 ms until it has a 200 or its deadline passes: the scenario's cutting
timeout + 1 s (header timeout for slowloris, body/write timeout, 10 s, for
the others). Attackers stop (close) at the end of the attack window.

Figures: probe success rate within the deadline, first-try success rate,
probe latency p50/p99/max; what happened to the attackers (held a slot and
cut with 408 / rejected with 503 / closed without a response / still held
when they left) and when they were cut (seconds after the start); the
server's open fds and ESTABLISHED sockets over time (the server's view of the
cut: a slow reader cannot see it without reading); /stats afterwards
(connections_open and arenas_in_use back to the idle 1/1 of the /stats
request itself).

Full mode: default timeouts (10 s), attack 15 s (slowbody 20 s), plus
"slowloris-persistent" (attackers reconnect 100 ms after being cut, 25 s:
context, no target). Quick mode: --header-timeout-ms 1000, slowloris 3 s,
slowbody 3 s, slowread 12 s.
"""
import asyncio
import os
import socket
import time

import common as C

ATTACKERS = 200
SLOTS = 64
DRIP_S = 0.5
PROBE_EVERY = 0.1
RETRY_EVERY = 0.1
STATIC_BYTES = 8 << 20
FIXED_TIMEOUT_S = 10.0  # body_timeout_ms and write_timeout_ms defaults, not demo flags


def add_args(ap):
    ap.add_argument("--scenarios", default=None,
                    help="comma-separated: slowloris, slowbody, slowread, slowloris-persistent "
                         "(default: all but -persistent in quick mode)")
    ap.add_argument("--attackers", type=int, default=ATTACKERS, help="slow connections (200)")
    ap.add_argument("--slots", type=int, default=SLOTS, help="demo --connections (64)")


def status_of(data):
    if data.startswith(b"HTTP/1.") and len(data) >= 12:
        try:
            return int(data[9:12])
        except ValueError:
            return None
    return None


class Attack:
    def __init__(self, kind, port, n, t0, stop_at, persistent):
        self.kind = kind
        self.port = port
        self.n = n
        self.t0 = t0
        self.stop_at = stop_at
        self.persistent = persistent
        self.conns = []  # one dict per connection made

    def now(self):
        return time.monotonic() - self.t0

    async def one(self, slot):
        loop = asyncio.get_running_loop()
        while True:
            rec = {"slot": slot, "t_open": self.now(), "outcome": None, "t_end": None,
                   "status": None}
            self.conns.append(rec)
            await self.run_conn(loop, rec)
            if not self.persistent or self.now() >= self.stop_at - 0.1:
                return
            await asyncio.sleep(0.1)
            if self.now() >= self.stop_at:
                return

    async def run_conn(self, loop, rec):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        if self.kind == "slowread":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            await asyncio.wait_for(loop.sock_connect(s, ("127.0.0.1", self.port)),
                                   max(0.1, self.stop_at - self.now()))
        except (OSError, asyncio.TimeoutError):
            rec["outcome"] = "connect failed"
            rec["t_end"] = self.now()
            s.close()
            return
        host = f"127.0.0.1:{self.port}"
        try:
            if self.kind == "slowread":
                await loop.sock_sendall(s, f"GET /static HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                await self.hold_unread(s, rec)
            else:
                if self.kind.startswith("slowloris"):
                    first = f"GET /hello HTTP/1.1\r\nHost: {host}\r\nX-a: b\r\n".encode()
                    drip = b"X-slow: " + b"a" * 4000  # never reaches the 8 KiB head limit
                else:
                    first = (f"POST /svg HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/csv\r\n"
                             f"Content-Length: 32768\r\n\r\n").encode()
                    drip = b"1, 2\n" * 6553
                await loop.sock_sendall(s, first)
                await self.drip(loop, s, rec, drip)
        except OSError:
            if rec["outcome"] is None:
                rec["outcome"] = "reset"
                rec["t_end"] = self.now()
        finally:
            s.close()

    async def drip(self, loop, s, rec, drip):
        """Sends one byte every DRIP_S while reading whatever the server says."""
        got = bytearray()

        async def reader():
            while True:
                try:
                    d = await loop.sock_recv(s, 4096)
                except OSError:
                    d = b""
                if not d:
                    return
                got.extend(d)

        rd = asyncio.ensure_future(reader())
        i = 0
        try:
            while not rd.done() and self.now() < self.stop_at and i < len(drip):
                done, _ = await asyncio.wait({rd}, timeout=DRIP_S)
                if done:
                    break
                try:
                    await loop.sock_sendall(s, drip[i:i + 1])
                except OSError:
                    await asyncio.wait({rd}, timeout=0.5)
                    break
                i += 1
        finally:
            if not rd.done():
                rd.cancel()
                try:
                    await rd
                except (asyncio.CancelledError, OSError):
                    pass
        rec["t_end"] = self.now()
        rec["status"] = status_of(bytes(got))
        if rec["status"] is not None:
            rec["outcome"] = f"answered {rec['status']}"
        elif self.now() >= self.stop_at - 0.01 and not rd.done():
            rec["outcome"] = "held until it left"
        elif got:
            rec["outcome"] = "garbage"
        else:
            rec["outcome"] = "closed, no response"
        if rec["outcome"] == "held until it left" or (self.now() >= self.stop_at - 0.01
                                                     and rec["status"] is None and not got):
            rec["outcome"] = "held until it left"

    async def hold_unread(self, s, rec):
        """Never reads: peeks at the status line once, then waits for the end."""
        seen = None
        while self.now() < self.stop_at:
            await asyncio.sleep(0.25)
            if seen is None:
                try:
                    d = s.recv(16, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                    if d == b"":
                        rec["outcome"] = "closed, no response"
                        rec["t_end"] = self.now()
                        return
                    seen = status_of(d)
                except BlockingIOError:
                    pass
                except OSError:
                    rec["outcome"] = "reset"
                    rec["t_end"] = self.now()
                    return
        rec["status"] = seen
        rec["t_end"] = self.now()
        rec["outcome"] = ("held until it left (response " + str(seen) + " unread)"
                          if seen is not None else "held until it left, nothing received")


class Probe:
    def __init__(self, port, t0, deadline_s):
        self.port = port
        self.t0 = t0
        self.deadline_s = deadline_s
        self.results = []

    async def attempt(self, timeout):
        w = None
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port),
                                          timeout)
            w.write(f"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                    "Connection: close\r\n\r\n".encode())
            data = await asyncio.wait_for(r.read(65536), timeout)
            return status_of(data) or "no response"
        except asyncio.TimeoutError:
            return "timeout"
        except OSError as e:
            return type(e).__name__
        finally:
            if w is not None:
                w.close()

    async def one(self, t_launch):
        t_dead = t_launch + self.deadline_s
        attempts = 0
        first = None
        while True:
            now = time.monotonic() - self.t0
            left = t_dead - now
            if left <= 0:
                break
            attempts += 1
            st = await self.attempt(left)
            if first is None:
                first = st
            if st == 200:
                self.results.append({"t": t_launch, "ok": True, "first": first,
                                     "attempts": attempts,
                                     "latency": time.monotonic() - self.t0 - t_launch})
                return
            await asyncio.sleep(RETRY_EVERY)
        self.results.append({"t": t_launch, "ok": False, "first": first, "attempts": attempts,
                             "latency": None})

    async def run(self, start, stop):
        tasks = []
        k = 0
        while True:
            t = start + k * PROBE_EVERY
            if t > stop:
                break
            delay = t - (time.monotonic() - self.t0)
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(self.one(t)))
            k += 1
        await asyncio.gather(*tasks)


async def sampler(demo, t0, until, out):
    while time.monotonic() - t0 < until:
        try:
            out.append((round(time.monotonic() - t0, 2), demo.fds(),
                        C.server_sockets(demo.port).get("established", 0)))
        except OSError:
            pass
        await asyncio.sleep(0.1)


async def scenario_async(kind, demo, attack_s, probe_deadline, persistent, n):
    t0 = time.monotonic()
    attack = Attack("slowloris" if kind.startswith("slowloris") else kind, demo.port, n, t0,
                    attack_s, persistent)
    probe = Probe(demo.port, t0, probe_deadline)
    probe_stop = attack_s + 1.0
    samples = []
    samp = asyncio.ensure_future(sampler(demo, t0, probe_stop + probe_deadline + 1, samples))
    atk = [asyncio.ensure_future(attack.one(i)) for i in range(n)]
    await probe.run(0.5, probe_stop)
    await asyncio.gather(*atk)
    samp.cancel()
    try:
        await samp
    except asyncio.CancelledError:
        pass
    return attack, probe, samples


def summarize(kind, demo, attack, probe, samples, fds0, attack_s, deadline, cut_timeout):
    outcomes = {}
    for c in attack.conns:
        outcomes[c["outcome"]] = outcomes.get(c["outcome"], 0) + 1
    cut = [c["t_end"] for c in attack.conns
           if c["status"] in (408,) and c["t_end"] is not None]
    held = [c["t_end"] - c["t_open"] for c in attack.conns
            if c["status"] == 408 and c["t_end"] is not None]
    pr = probe.results
    ok = [p for p in pr if p["ok"]]
    first_ok = [p for p in pr if p["first"] == 200]
    lat = [p["latency"] for p in ok]
    peak = max((s[2] for s in samples), default=0)
    # Server view of the cut: first sample after the peak where ESTABLISHED
    # server sockets fell below half of the peak.
    t_peak = next((s[0] for s in samples if s[2] == peak), None)
    t_half = next((s[0] for s in samples if t_peak is not None and s[0] > t_peak
                   and s[2] < peak / 2), None)
    t_back = next((s[0] for s in samples if t_peak is not None and s[0] > t_peak
                   and s[1] <= fds0 + 2), None)
    fails = [p for p in pr if not p["ok"]]
    return {"scenario": kind, "attack_s": attack_s, "attackers": attack.n,
            "connections_made": len(attack.conns), "outcomes": outcomes,
            "cut_408": len(cut),
            "cut_408_at_s": None if not cut else {"min": round(min(cut), 2),
                                                  "median": round(C.pct(cut, 50), 2),
                                                  "max": round(max(cut), 2)},
            "held_before_408_s": None if not held else {"min": round(min(held), 2),
                                                        "max": round(max(held), 2)},
            "server_established_peak": peak, "server_peak_at_s": t_peak,
            "server_half_cut_at_s": t_half, "server_fds_back_at_s": t_back,
            "probe_deadline_s": deadline, "cut_timeout_s": cut_timeout,
            "probes": len(pr), "probes_ok": len(ok),
            "probe_success_pct": round(100.0 * len(ok) / len(pr), 2) if pr else None,
            "probe_first_try_pct": round(100.0 * len(first_ok) / len(pr), 2) if pr else None,
            "probe_latency_s": None if not lat else {
                "p50": round(C.pct(lat, 50), 3), "p99": round(C.pct(lat, 99), 3),
                "max": round(max(lat), 3)},
            "probe_failed_launch_s": None if not fails else [round(fails[0]["t"], 2),
                                                            round(fails[-1]["t"], 2)],
            "probe_attempts_max": max((p["attempts"] for p in pr), default=0),
            "timeline": samples[::5]}


def run_scenario(kind, args, rep, demo_bin, static_path):
    quick = args.quick
    persistent = kind.endswith("-persistent")
    hto = 1000 if quick else 10000
    demo_args = ["--connections", str(args.slots), "--header-timeout-ms", str(hto),
                 "--static", static_path]
    if kind.startswith("slowloris"):
        cut_timeout = hto / 1000
        attack_s = 3.0 if quick else (25.0 if persistent else 15.0)
    elif kind == "slowbody":
        # A steady drip never trips the idle body timer; the body deadline
        # (set like the header deadline) is what cuts it.
        demo_args += ["--body-deadline-ms", str(hto)]
        cut_timeout = hto / 1000
        attack_s = 3.0 if quick else 20.0
    else:
        cut_timeout = FIXED_TIMEOUT_S
        attack_s = 12.0 if quick else 15.0
    deadline = cut_timeout + 1.0
    demo = C.Demo(demo_bin, demo_args, tag=kind)
    fds0 = demo.fds()
    st0 = demo.stats()
    C.note(f"{kind}: demo pid {demo.pid} port {demo.port}, {args.attackers} attackers vs "
           f"{args.slots} slots for {attack_s:g} s, probe deadline {deadline:g} s")
    attack, probe, samples = asyncio.run(
        scenario_async(kind, demo, attack_s, deadline, persistent, args.attackers))
    # Afterwards: every slot and arena back (the attackers have closed).
    alive = demo.alive()
    st = None
    if alive:
        ok = C.wait_for(lambda: C.idle_baseline_ok(demo.stats(tries=5)), 5.0, 0.2)
        st = demo.stats()
    fds1 = demo.fds() if alive else None
    code = demo.stop()
    s = summarize(kind, demo, attack, probe, samples, fds0, attack_s, deadline, cut_timeout)
    s.update({"demo_args": demo_args, "stats_before": st0, "stats_after": st,
              "fds_before": fds0, "fds_after": fds1, "alive": alive, "exit_code": code})
    C.note(f"{kind}: probes {s['probes_ok']}/{s['probes']} ok, outcomes {s['outcomes']}")
    # Verdicts.
    sp = s["probe_success_pct"]
    hard_probe = kind in ("slowloris", "slowread")
    what = (f"{kind}: probes answered 200 within {deadline:g} s "
            f"({'header' if kind.startswith('slowloris') else 'body' if kind == 'slowbody' else 'write'}"
            f" timeout + 1 s)")
    if persistent:
        rep.target(what + " [context: attackers reconnect]", None,
                   f"{sp}% of {s['probes']}", "(no target)")
    elif hard_probe:
        rep.hard(what, sp == 100.0, f"{sp}% of {s['probes']}", "100%")
    else:
        rep.target(what, sp == 100.0, f"{sp}% of {s['probes']}", "100%",
                   by=None if sp is None else f"{sp - 100:+.1f} pp")
    rep.hard(f"{kind}: process alive, exit 0 after SIGTERM", alive and code == 0,
             f"alive={alive} exit={code}", "alive, 0")
    rep.hard(f"{kind}: slots and arenas back to baseline (/stats 1/1)",
             C.idle_baseline_ok(st),
             None if st is None else f"conns={st['connections_open']} arenas={st['arenas_in_use']}",
             "1/1")
    return s


def run(args, rep):
    C.raise_nofile()
    C.pin_client()
    demo_bin, _ = C.tools()
    if args.scenarios:
        kinds = [k.strip() for k in args.scenarios.split(",") if k.strip()]
    elif args.quick:
        kinds = ["slowloris", "slowbody", "slowread"]
    else:
        kinds = ["slowloris", "slowbody", "slowread", "slowloris-persistent"]
    static_path = os.path.join(C.tmpdir(), "static.bin")
    with open(static_path, "wb") as f:
        f.write(b"x" * STATIC_BYTES)
    res = []
    for k in kinds:
        if k not in ("slowloris", "slowbody", "slowread", "slowloris-persistent"):
            raise SystemExit(f"slow_clients: unknown scenario {k}")
        res.append(run_scenario(k, args, rep, demo_bin, static_path))
    rows = []
    for s in res:
        cutat = s["cut_408_at_s"]
        lat = s["probe_latency_s"]
        rows.append([s["scenario"], f"{s['attack_s']:g}", s["connections_made"],
                     f"{s['probe_success_pct']}% of {s['probes']}",
                     f"{s['probe_first_try_pct']}%",
                     "-" if not lat else f"{lat['p50']:.2f}/{lat['p99']:.2f}/{lat['max']:.2f}",
                     s["cut_408"],
                     "-" if not cutat else f"{cutat['min']:.1f}..{cutat['max']:.1f}",
                     s["server_established_peak"], s["server_half_cut_at_s"],
                     s["server_fds_back_at_s"],
                     "-" if not s["stats_after"] else
                     f"{s['stats_after']['connections_open']}/{s['stats_after']['arenas_in_use']}",
                     "-" if not s["stats_after"] else
                     f"{s['stats_after']['evicted']}/{s['stats_after']['shed_503']}/"
                     f"{s['stats_after']['timeouts']}"])
    C.table(f"slow_clients: {args.attackers} slow connections vs {args.slots} slots; probe every "
            f"{PROBE_EVERY * 1000:.0f} ms, retried every {RETRY_EVERY * 1000:.0f} ms until its "
            "deadline; times in s after the attack started",
            ["scenario", "attack s", "conns made", "probe ok", "1st try ok",
             "probe lat p50/p99/max", "408 cuts", "408 at", "srv estab peak",
             "srv half cut at", "srv fds back at", "after conns/arenas",
             "srv evicted/503/timeouts"], rows)
    orow = []
    for s in res:
        for o, n in sorted(s["outcomes"].items(), key=lambda kv: -kv[1]):
            orow.append([s["scenario"], o, n])
    C.table("slow_clients: what happened to the slow connections", ["scenario", "outcome", "n"],
            orow)
    rep.figures = {"attackers": args.attackers, "slots": args.slots, "scenarios": res}


if __name__ == "__main__":
    raise SystemExit(C.main("slow_clients", __doc__, run, 120, 900, add_args))
