"""hog_mix: memory hogs among good requests (python3 test/reliability/hog_mix.py).

nea-demo (--arena-size 64k --prefault --keepalive-timeout-ms 60000) gets a
steady sub-capacity stream from loadgen: first only good requests (GET
/hello, the baseline), then 10% and 50% hogs (GET /alloc/1024: one MiB from a
64 KiB arena, answered 500). The long keep-alive timeout keeps the server
from closing one of loadgen's idle connections just as loadgen reuses it (an
error unrelated to hogs). The three mixes are interleaved round by round so
drift on a shared machine hits them alike; each mix's p99 is the median over
the rounds.

Figures: good requests answered 200 (%), hogs answered 500 (%), good-request
p50/p99 from the intended send time and their ratio to the baseline, the
same from the socket write (ok_svc), peak RSS growth (VmHWM at the end minus
VmRSS right after start, from /proc/PID/status), process alive and exiting 0
after SIGTERM.
"""
import common as C

MIXES = [("baseline", 0), ("10% hogs", 10), ("50% hogs", 50)]


def add_args(ap):
    ap.add_argument("--rate", type=float, default=5000, help="requests/s (default 5000)")
    ap.add_argument("--duration", type=float, help="seconds per mix and round "
                    "(default 6, quick 2)")
    ap.add_argument("--rounds", type=int, help="rounds of the three mixes (default 5, quick 1)")
    ap.add_argument("--hog-kib", type=int, default=1024, help="KiB a hog asks for (1024)")
    ap.add_argument("--arena-size", default="64k", help="demo --arena-size (64k)")
    ap.add_argument("--connections", type=int, default=100, help="loadgen connections (100)")


def paths_for(pct, hog):
    if pct == 0:
        return [("/hello", 1)]
    g = 100 - pct
    # Smallest integer weights: every full cycle of the smooth round-robin has
    # exactly w_hog hogs in w_good + w_hog requests.
    from math import gcd
    k = gcd(g, pct)
    return [("/hello", g // k), (hog, pct // k)]


def run(args, rep):
    duration = args.duration or (2.0 if args.quick else 6.0)
    rounds = args.rounds or (1 if args.quick else 5)
    hog = f"/alloc/{args.hog_kib}"
    demo_bin, lg = C.tools()
    # Whole cycles of the weights (10 requests) so the expected counts are exact.
    n = int(args.rate * duration) // 10 * 10
    duration = n / args.rate
    # A long keep-alive timeout: loadgen reuses its idle connections LIFO, so
    # one left idle past the default 5 s could be closed by the server just
    # as loadgen writes on it, an error that has nothing to do with hogs.
    demo = C.Demo(demo_bin, ["--arena-size", args.arena_size, "--prefault",
                             "--keepalive-timeout-ms", "60000"])
    if not demo.started:
        raise SystemExit(f"hog_mix: demo failed to start (exit {demo.exit_code})")
    rss0 = demo.status0["VmRSS"]
    hwm0 = demo.status0["VmHWM"]
    # The peak so far is the start itself (prefault populates the guard pages
    # before they are made PROT_NONE and dropped): reset it so VmHWM at the
    # end measures what serving added (clear_refs 5, Linux >= 4.0, needs
    # ownership of the process).
    hwm_reset = C.reset_hwm(demo.pid)
    C.note(f"demo pid {demo.pid} port {demo.port} reserved={demo.reserved} "
           f"arenas={demo.arenas}; VmRSS at start {rss0} KiB, VmHWM at start {hwm0} KiB"
           f"{', peak reset' if hwm_reset else ', could not reset the peak'}")
    st0 = demo.stats()
    res = {name: [] for name, _ in MIXES}
    for rnd in range(rounds):
        for name, pct in MIXES:
            paths = paths_for(pct, hog)
            r = C.run_loadgen(lg, demo.port, [(args.rate, duration)], paths, demo=demo,
                              connections=args.connections)
            wsum = sum(w for _, w in paths)
            hogs = 0 if pct == 0 else n * paths[1][1] // wsum
            good = n - hogs
            bad = r["4xx"] + r["503"] + r["other"] + r["err"] + r["tmo"]
            res[name].append({"sent": r["sent"], "good": good, "hogs": hogs,
                              "good200": r["2xx"], "hog500": r["500"], "bad": bad,
                              "ok_p50": r["ok_p50"], "ok_p99": r["ok_p99"],
                              "ok_svc_p99": r["ok_svc_p99"], "lag_p99": r["lag_p99"],
                              "server_cpu": r.server_cpu})
            C.note(f"round {rnd + 1} {name}: 2xx {r['2xx']}/{good} 500 {r['500']}/{hogs} "
                   f"other {bad}, ok_p99 {C.ms(r['ok_p99'])} ms, "
                   f"svc_p99 {C.ms(r['ok_svc_p99'])} ms")
    alive = demo.alive()
    st = demo.status() if alive else {}
    st1 = demo.stats() if alive else None
    exit_code = demo.stop()
    hwm = st.get("VmHWM")
    growth = hwm - rss0 if hwm is not None else None

    rows = []
    base = C.pct([x["ok_p99"] for x in res["baseline"]], 50)
    base_svc = C.pct([x["ok_svc_p99"] for x in res["baseline"]], 50)
    total_hogs = 0
    figs = {"rate": args.rate, "duration_s": duration, "rounds": rounds, "hog_path": hog,
            "arena_size": demo.arena_size, "arenas": demo.arenas, "reserved": demo.reserved,
            "mixes": {}}
    for name, pct in MIXES:
        xs = res[name]
        good = sum(x["good"] for x in xs)
        hogs = sum(x["hogs"] for x in xs)
        total_hogs += hogs
        g200 = sum(x["good200"] for x in xs)
        h500 = sum(x["hog500"] for x in xs)
        bad = sum(x["bad"] for x in xs)
        p50 = C.pct([x["ok_p50"] for x in xs], 50)
        p99 = C.pct([x["ok_p99"] for x in xs], 50)
        svc = C.pct([x["ok_svc_p99"] for x in xs], 50)
        ratio = p99 / base if base else None
        ratio_svc = svc / base_svc if base_svc else None
        good_pct = 100.0 * g200 / good if good else None
        hog_pct = 100.0 * h500 / hogs if hogs else None
        figs["mixes"][name] = {"hog_pct": pct, "requests": good + hogs, "good": good,
                               "good_200": g200, "hogs": hogs, "hogs_500": h500,
                               "other": bad, "ok_p50_us": p50, "ok_p99_us": p99,
                               "ok_svc_p99_us": svc, "p99_ratio": ratio,
                               "svc_p99_ratio": ratio_svc,
                               "p99_by_round_us": [x["ok_p99"] for x in xs],
                               "server_cpu_pct": round(C.pct([x["server_cpu"] or 0
                                                              for x in xs], 50), 1)}
        rows.append([name, good + hogs, f"{good_pct:.2f}" if good_pct is not None else "-",
                     f"{hog_pct:.2f}" if hog_pct is not None else "-", bad, C.ms(p50),
                     C.ms(p99), f"{ratio:.2f}" if ratio else "-", C.ms(svc),
                     f"{ratio_svc:.2f}" if ratio_svc else "-",
                     f"{figs['mixes'][name]['server_cpu_pct']:.0f}"])
        rep.hard(f"{name}: good requests answered 200", g200 == good and bad == 0,
                 f"{g200}/{good} (+{bad} other)", "100%")
        if hogs:
            rep.hard(f"{name}: hogs answered 500", h500 == hogs, f"{h500}/{hogs}", "100%")
            rep.target(f"{name}: good p99 / baseline p99 (from intended time)",
                       ratio is not None and ratio <= 1.5,
                       f"{ratio:.2f} ({C.ms(p99)} / {C.ms(base)} ms)", "<= 1.5",
                       by=f"{ratio - 1.5:+.2f}" if ratio else None)
    C.table(f"hog_mix: {args.rate:.0f} req/s for {duration:g} s per mix x {rounds} round(s), "
            f"arena {demo.arena_size} B, hog {hog}; latencies in ms (median over rounds)",
            ["mix", "requests", "good 200 %", "hogs 500 %", "other", "ok_p50", "ok_p99",
             "ratio", "svc_p99", "svc ratio", "srv cpu%"], rows)
    oom = (st1["oom_500"] - st0["oom_500"]) if st0 and st1 else None
    figs.update({"vmrss_start_kib": rss0, "vmhwm_start_kib": hwm0,
                 "start_transient_kib": hwm0 - rss0, "hwm_reset": hwm_reset,
                 "vmhwm_end_kib": hwm, "rss_growth_kib": growth,
                 "rss_anon_end_kib": st.get("RssAnon"), "rss_file_end_kib": st.get("RssFile"),
                 "server_oom_500": oom, "alive": alive, "exit_code": exit_code,
                 "incidents_logged": demo.stderr_count("arena exhausted")})
    C.table("hog_mix: memory and process",
            ["figure", "value"],
            [["VmRSS at start (KiB)", rss0],
             ["VmHWM at start, before the reset (KiB)", hwm0],
             ["peak was reset after start", hwm_reset],
             ["VmHWM at end (KiB)", hwm],
             ["peak RSS growth (KiB)", growth],
             ["RssAnon / RssFile at end (KiB)", f"{st.get('RssAnon')} / {st.get('RssFile')}"],
             ["server oom_500 counter", oom], ["alive at end", alive],
             ["exit code after SIGTERM", exit_code]])
    rep.figures = figs
    rep.hard("server counted every hog as oom_500", oom == total_hogs, oom, total_hogs)
    rep.hard("process alive at the end", alive, alive, True)
    rep.hard("graceful exit after SIGTERM", exit_code == 0, exit_code, 0)
    rep.target("peak RSS growth with --prefault", growth is not None and growth <= 1024,
               f"{growth} KiB", "<= 1024 KiB",
               by=f"{growth - 1024:+d} KiB" if growth is not None else None)


if __name__ == "__main__":
    raise SystemExit(C.main("hog_mix", __doc__, run, 120, 1800, add_args))
