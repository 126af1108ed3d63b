"""recovery_pulse: 0.8C, a 3C pulse, 0.8C again (python3 test/reliability/recovery_pulse.py).

nea-demo with --arenas 16 --queue-timeout-ms 1 --prefault serves GET
/sleep/5 (each request holds an arena ~5 ms, so C ~ 16 / 5 ms). C is measured
with a short ramp (or given with --capacity). One open-loop loadgen run then
offers 0.8C, 3C for 10 s, 0.8C (full: 10 s + 10 s + 15 s; quick: 3 + 2 + 4 s),
and retries a 503 once after 50-150 ms (--retry-503), printing a line every
250 ms.

"Before" is the first 0.8C phase minus its first second: its mean interval
goodput G and the 90th percentile P of its interval p99s (the level a steady
interval stays under nine times out of ten; a single interval's p99 is noisy
on a shared machine). An interval is back to normal when its goodput is
within 10% of G and its p99 is at most 1.1 P. Recovery time: from the end of
the pulse to the end of the first interval that starts a run of four normal
intervals (1 s). Target: <= 2 s. Also reported: how many "before" intervals
were themselves normal (the noise floor of the criterion).
"""
import common as C

INTERVAL_MS = 250
RUN_OF = 4


def add_args(ap):
    ap.add_argument("--capacity", type=float, help="C in req/s (default: measured by a ramp)")
    ap.add_argument("--pulse", type=float, default=3.0, help="pulse rate in C (3)")


def run(args, rep):
    quick = args.quick
    demo_bin, lg = C.tools()
    C.raise_nofile()
    demo = C.Demo(demo_bin, ["--arenas", "16", "--queue-timeout-ms", "1", "--prefault"])
    C.note(f"demo pid {demo.pid} port {demo.port} arenas={demo.arenas}")
    ramp = []
    if args.capacity:
        cap = args.capacity
    else:
        cap, ramp = C.capacity_ramp(lg, demo, "/sleep/5", 1000 if quick else 800,
                                    1.3 if quick else 1.25, 60000, 1.0 if quick else 2.0, 1000)
    t1, t2, t3 = (3.0, 2.0, 4.0) if quick else (10.0, 10.0, 15.0)
    phases = [(0.8 * cap, t1), (args.pulse * cap, t2), (0.8 * cap, t3)]
    C.note(f"C = {cap:.0f}/s; phases " + ", ".join(f"{r:.0f}/s x {s:g} s" for r, s in phases))
    r = C.run_loadgen(lg, demo.port, phases, [("/sleep/5", 1)], demo=demo, connections=1000,
                      retry=True, interval_ms=INTERVAL_MS)
    alive = demo.alive()
    st = demo.stats() if alive else None
    code = demo.stop()

    iv = r.intervals
    before = [x for x in iv if 1.0 < x["t"] <= t1 + 0.001]
    g = sum(x["goodput"] for x in before) / len(before) if before else 0
    p99s = [x["ok_p99"] for x in before if x["ok_p99"] is not None]
    p = C.pct(p99s, 90)

    def normal(x):
        return (g > 0 and abs(x["goodput"] - g) <= 0.1 * g and x["ok_p99"] is not None
                and p is not None and x["ok_p99"] <= 1.1 * p)

    noise = sum(normal(x) for x in before)
    pulse_end = t1 + t2
    after = [x for x in iv if x["t"] > pulse_end + 0.001 and x["t"] <= t1 + t2 + t3 + 0.001]
    rec = None
    for i in range(len(after) - RUN_OF + 1):
        if all(normal(x) for x in after[i:i + RUN_OF]):
            rec = after[i]["t"] - pulse_end
            break
    # Each interval's own recovery verdict, for the timeline.
    rows = []
    for x in iv:
        if pulse_end - 1.0 < x["t"] <= pulse_end + 4.0:
            rows.append([f"{x['t']:.2f}", x["sent"], f"{x['goodput']:.0f}", f"{x['rate503']:.0f}",
                         x["retry"], x["r2xx"], x["r503"], C.ms(x["ok_p50"]), C.ms(x["ok_p99"]),
                         x["queue"], x["conns"], "yes" if normal(x) else "no"])
    ph = r["phases"]
    prow = []
    for i, x in enumerate(ph):
        prow.append([["0.8C", f"{args.pulse:g}C", "0.8C"][i], f"{x['rate']:.0f}",
                     f"{x['seconds']:g}", x["sent"], f"{x['goodput']:.0f}",
                     f"{x['rate503']:.0f}", x["retry"], x["r2xx"], x["r503"], x["err"],
                     x["tmo"], C.ms(x["ok_p50"]), C.ms(x["ok_p99"]), C.ms(x["503_svc_p99"])])
    if ramp:
        C.table(f"recovery_pulse: capacity ramp on /sleep/5 -> C = {cap:.0f}/s",
                ["offered/s", "goodput/s", "503/s", "ok_p99 ms"],
                [[x["offered"], x["goodput"], x["rate503"], C.ms(x["ok_p99_us"])] for x in ramp])
    C.table("recovery_pulse: phases (first attempts by intended time; goodput and 503/s by "
            "completion, retries included); latencies in ms",
            ["phase", "rate/s", "s", "sent", "goodput/s", "503/s", "retry", "r2xx", "r503",
             "err", "tmo", "ok_p50", "ok_p99", "503svc_p99"], prow)
    C.table(f"recovery_pulse: {INTERVAL_MS} ms intervals around the end of the pulse "
            f"(t = {pulse_end:g} s); before: goodput G = {g:.0f}/s, interval p99 P90 = "
            f"{C.ms(p)} ms; normal = goodput within 10% of G and p99 <= 1.1 x P90",
            ["t s", "sent", "goodput/s", "503/s", "retry", "r2xx", "r503", "ok_p50", "ok_p99",
             "queue", "conns", "normal"], rows)
    rep.figures = {"capacity": round(cap, 1), "ramp": ramp,
                   "phases": [{"rate": x["rate"], "seconds": x["seconds"], "sent": x["sent"],
                               "goodput": x["goodput"], "rate503": x["rate503"],
                               "retry": x["retry"], "r2xx": x["r2xx"], "r503": x["r503"],
                               "err": x["err"], "tmo": x["tmo"], "ok_p50_us": x["ok_p50"],
                               "ok_p99_us": x["ok_p99"], "503_svc_p99_us": x["503_svc_p99"]}
                              for x in ph],
                   "before_goodput": round(g, 1), "before_p99_p90_us": p,
                   "before_intervals_normal": f"{noise}/{len(before)}",
                   "recovery_s": None if rec is None else round(rec, 2),
                   "interval_ms": INTERVAL_MS,
                   "intervals": [{k: x[k] for k in ("t", "sent", "goodput", "rate503", "ok_p99",
                                                     "retry", "r2xx", "r503", "queue")}
                                 for x in iv],
                   "alive": alive, "exit_code": code, "stats_after": st,
                   "steal_pct": round(r.steal, 1)}
    rep.target("seconds until goodput and p99 are back within 10% of before",
               rec is not None and rec <= 2.0,
               "not within the run" if rec is None else f"{rec:.2f} s", "<= 2 s",
               by=None if rec is None else f"{rec - 2:+.2f} s")
    rep.target("noise floor: before-phase intervals that pass the same test",
               None, f"{noise}/{len(before)}", "(context)")
    other = r["4xx"] + r["500"] + r["other"] + r["r4xx"] + r["r500"] + r["rother"]
    rep.hard("only 200 and 503 answered", other == 0, other, 0)
    rep.target("requests with no response (errors + timeouts)", r["err"] + r["tmo"] == 0,
               f"{r['err']} err, {r['tmo']} tmo of {r['sent']}", "0")
    rep.hard("process alive, exit 0 after SIGTERM", alive and code == 0,
             f"alive={alive} exit={code}", "alive, 0")
    rep.hard("idle afterwards (/stats: 1 connection, 1 arena = the /stats request)",
             C.idle_baseline_ok(st),
             None if st is None else f"conns={st['connections_open']} arenas={st['arenas_in_use']}",
             "1/1")


if __name__ == "__main__":
    raise SystemExit(C.main("recovery_pulse", __doc__, run, 90, 600, add_args))
