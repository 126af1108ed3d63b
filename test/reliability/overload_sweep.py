"""overload_sweep: capacity, then 0.5C, 1C, 2C and 4C open-loop (python3 test/reliability/overload_sweep.py).

Two series, each on its own nea-demo:
  hello   GET /hello on the default configuration (--prefault): CPU-bound,
          admission (arenas, slots) never runs out.
  sleep5  GET /sleep/5 with --arenas 16 --queue-timeout-ms 0 --prefault
          --reserved-arenas 0 (all 16 for the route, as before arenas could be
          reserved):
          every request holds an arena ~5 ms, so C ~ 16 / 5 ms and what is
          offered beyond it must be refused with 503.
  sleep5-q100 (full mode only) the same at 0.5C and 2C with the default
          --queue-timeout-ms 100, to show what the queue wait costs.
  sleep5-slots (full mode only) /sleep/5 with --arenas 16 --connections 16:
          admission by connection slots (a new connection evicts the oldest
          idle one or gets an immediate 503), C taken from sleep5.
  spin    GET /spin/500: 500 us of CPU in the handler, so the server's core
          is the limit with the client far from its own; CPU shedding on
          (the default --overload-target-ms 5).
  spin-off / hello-off  the same with --overload-target-ms 0 (no CPU
          shedding: the behaviour before it existed), at the C measured by
          spin / hello in the same run, for a before/after on one machine.
  step    GET /spin/1000 (1 ms of CPU per request): 0.5C then 2C, five times
          (quick: once), open loop, with GET /health at 100/s from a second
          loadgen; every 2C phase's figures include its onset. Targets over
          every 2C phase: admitted p99 <= 20 ms, 503 p99 <= 10 ms (from the
          intended time) and < 1 ms (from the socket write, CPU-bound),
          /health max < 10 ms.

Capacity C: loadgen offers start, start*f, ... (separate runs) until goodput
stops tracking the offered rate (< 95%) without growing (by 5%) twice in a
row; C is the highest goodput seen. For /hello (full mode) wrk -t1 -c256, a
closed-loop client, is run too as a cross-check. Then each step offers k*C for a fixed time, open loop (loadgen
measures from the intended send time, so queueing is not hidden).

Figures per step: goodput (2xx/s completed in the window), 503/s, p50/p99
of admitted (2xx) requests and of 503s from the intended send time, 503
p50/p99 from the socket write (503_svc: without this client's timer lag),
errors and timeouts, CPU of server and client (which one was the limit).
Targets: goodput at 2C >= 0.9C; admitted p99 at 2C <= 2x its 0.5C value;
503 p99 < 1 ms, compared on 503_svc_p99 (the intended-time 503_p99 includes
loadgen's ~0.6 ms mean timer lag and is reported next to it).
"""
import json
import os
import re
import shutil
import subprocess

import common as C

SERIES = {
    "hello": {"path": "/hello", "demo": ["--prefault"], "conns": 512,
              "ramp": (5000, 1.4, 400000), "ramp_quick": (10000, 2.0, 400000)},
    "sleep5": {"path": "/sleep/5", "demo": ["--arenas", "16", "--queue-timeout-ms", "0",
                                            "--prefault", "--reserved-arenas", "0"],
               "conns": 1000,
               "ramp": (800, 1.25, 60000), "ramp_quick": (1500, 1.5, 60000)},
    "sleep5-slots": {"path": "/sleep/5", "demo": ["--arenas", "16", "--connections", "16",
                                                  "--queue-timeout-ms", "0", "--prefault",
                                                  "--reserved-arenas", "0"],
                     "conns": 1000},
    "spin": {"path": "/spin/500", "demo": ["--prefault"], "conns": 512,
             "ramp": (500, 1.25, 20000), "ramp_quick": (800, 1.5, 20000)},
    "spin-off": {"path": "/spin/500", "demo": ["--prefault", "--overload-target-ms", "0"],
                 "conns": 512, "capacity_of": "spin"},
    "hello-off": {"path": "/hello", "demo": ["--prefault", "--overload-target-ms", "0"],
                  "conns": 512, "capacity_of": "hello"},
}
STEPS = [0.5, 1.0, 2.0, 4.0]


def add_args(ap):
    ap.add_argument("--series", default="hello,sleep5,spin,step",
                    help="comma-separated series: hello, sleep5, spin, spin-off, hello-off, "
                         "step (default hello,sleep5,spin,step; an -off series follows its "
                         "base)")
    ap.add_argument("--capacity-hello", type=float, help="skip the ramp, use this C for /hello")
    ap.add_argument("--capacity-sleep5", type=float, help="skip the ramp, use this C for /sleep/5")
    ap.add_argument("--step-seconds", type=float, help="seconds per step (default 10, quick 2)")
    ap.add_argument("--compare-demo", help="the step series once more with this nea-demo "
                    "(e.g. an older build), in the same run, for a before/after")


def wrk_rate(port, path):
    """Closed-loop cross-check of C: wrk -t1 -c256 -d5s on the client CPU."""
    cmd = (["taskset", "-c", str(C.CLIENT_CPU)] if C.PIN else []) + [
        "wrk", "-t1", "-c256", "-d5s", f"http://127.0.0.1:{port}{path}"]
    try:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"Requests/sec:\s*([0-9.]+)", out)
    return float(m.group(1)) if m else None


def run_series(name, cfg, args, rep, demo_bin, lg, cap_override):
    quick = args.quick
    step_s = args.step_seconds or (2.0 if quick else 10.0)
    demo = C.Demo(demo_bin, cfg["demo"], tag=name)
    if not demo.started:
        raise SystemExit(f"overload_sweep: demo for {name} did not start")
    C.note(f"{name}: demo pid {demo.pid} port {demo.port} arenas={demo.arenas}")
    ramp_rows = []
    if cap_override:
        cap = cap_override
    else:
        start, f, top = cfg["ramp_quick" if quick else "ramp"]
        cap, ramp_rows = C.capacity_ramp(lg, demo, cfg["path"], start, f, top,
                                         1.0 if quick else 2.0, cfg["conns"])
    wrk = None
    if name == "hello" and not quick and shutil.which("wrk"):
        wrk = wrk_rate(demo.port, cfg["path"])
        C.note(f"{name}: wrk closed loop: {wrk} req/s")
    C.note(f"{name}: C = {cap:.0f}/s")
    rows = []
    steps = {}
    for k in STEPS:
        st0 = demo.stats() or {}
        r = C.run_loadgen(lg, demo.port, [(k * cap, step_s)], [(cfg["path"], 1)], demo=demo,
                          connections=cfg["conns"])
        st1 = demo.stats() or {}
        transitions = st1.get("shed_transitions", 0) - st0.get("shed_transitions", 0)
        shed_cpu = st1.get("shed_cpu", 0) - st0.get("shed_cpu", 0)
        d = {"k": k, "offered": round(k * cap), "sent": r["sent"],
             "goodput": round(r["goodput"], 1), "rate503": round(r["rate503"], 1),
             "ok_p50_us": r["ok_p50"], "ok_p99_us": r["ok_p99"], "503_p50_us": r["503_p50"],
             "503_p99_us": r["503_p99"], "503_svc_p50_us": r["503_svc_p50"],
             "503_svc_p99_us": r["503_svc_p99"], "ok_svc_p99_us": r["ok_svc_p99"],
             "err": r["err"], "tmo": r["tmo"], "other": r["4xx"] + r["500"] + r["other"],
             "lag_p99_us": r["lag_p99"], "gen_lag_max_us": r["gen_lag_max_us"],
             "server_cpu": round(r.server_cpu or 0, 1), "client_cpu": round(r.client_cpu, 1),
             "bottleneck": C.bottleneck(r), "steal_pct": round(r.steal, 1),
             "srv_core_other_pct": None if r.srv_core_other is None
             else round(r.srv_core_other, 1),
             "machine_busy_pct": None if r.machine_busy is None else round(r.machine_busy, 1),
             "err_io": r["err_io"], "err_stale": r["err_stale"],
             "shed_cpu": shed_cpu, "shed_transitions": transitions}
        steps[k] = d
        C.note(f"{name} {k}C: goodput {d['goodput']:.0f}/s 503 {d['rate503']:.0f}/s "
               f"ok_p99 {C.ms(d['ok_p99_us'])} ms 503_svc_p99 {C.ms(d['503_svc_p99_us'])} ms "
               f"err {d['err']} tmo {d['tmo']} shed_cpu {shed_cpu} on/off {transitions}")
        rows.append([f"{k:g}C", d["offered"], d["goodput"], d["rate503"], C.ms(d["ok_p50_us"]),
                     C.ms(d["ok_p99_us"]), C.ms(d["503_p50_us"]), C.ms(d["503_p99_us"]),
                     C.ms(d["503_svc_p50_us"]), C.ms(d["503_svc_p99_us"]), d["err"], d["tmo"],
                     d["other"], f"{d['server_cpu']:.0f}/{d['client_cpu']:.0f}",
                     d["bottleneck"],
                     "-" if d["srv_core_other_pct"] is None else f"{d['srv_core_other_pct']:.0f}",
                     "-" if d["machine_busy_pct"] is None else f"{d['machine_busy_pct']:.0f}",
                     f"{d['steal_pct']:.0f}", d["shed_cpu"], d["shed_transitions"]])
    alive = demo.alive()
    st = demo.stats() if alive else None
    code = demo.stop()
    if ramp_rows:
        C.table(f"overload_sweep {name}: capacity ramp on {cfg['path']} "
                f"({'1' if quick else '2'} s per rate) -> C = {cap:.0f}/s",
                ["offered/s", "goodput/s", "503/s", "err", "tmo", "ok_p99 ms", "cpu srv/cli %",
                 "limit", "tracking"],
                [[x["offered"], x["goodput"], x["rate503"], x["err"], x["tmo"],
                  C.ms(x["ok_p99_us"]), f"{x['server_cpu']:.0f}/{x['client_cpu']:.0f}",
                  x["bottleneck"], x["tracking"]] for x in ramp_rows])
    C.table(f"overload_sweep {name}: {cfg['path']}, demo {' '.join(cfg['demo'])}, "
            f"C = {cap:.0f}/s" + (f" (wrk -t1 -c256 closed loop: {wrk:.0f}/s)" if wrk else "")
            + f", {step_s:g} s per step, loadgen --connections {cfg['conns']}; "
            "latencies in ms",
            ["step", "offered/s", "goodput/s", "503/s", "ok_p50", "ok_p99", "503_p50",
             "503_p99", "503svc_p50", "503svc_p99", "err", "tmo", "other", "cpu srv/cli %",
             "limit", "cpu0 other%", "machine%", "steal%", "shed_cpu", "on/off"], rows)
    fig = {"path": cfg["path"], "demo_args": cfg["demo"], "capacity": round(cap, 1),
           "capacity_from": "option" if cap_override else "ramp", "ramp": ramp_rows,
           "wrk_closed_loop_rps": wrk,
           "step_s": step_s, "steps": [steps[k] for k in STEPS], "alive": alive,
           "exit_code": code, "stats_after": st}
    # Verdicts.
    s2, s05 = steps[2.0], steps[0.5]
    ratio_gp = s2["goodput"] / cap if cap else None
    rep.target(f"{name}: goodput at 2C >= 0.9C", ratio_gp is not None and ratio_gp >= 0.9,
               f"{s2['goodput']:.0f}/s = {ratio_gp:.2f}C", ">= 0.90C",
               by=f"{ratio_gp - 0.9:+.2f}C")
    if s2["ok_p99_us"] and s05["ok_p99_us"]:
        ratio = s2["ok_p99_us"] / s05["ok_p99_us"]
        rep.target(f"{name}: admitted p99 at 2C / at 0.5C", ratio <= 2.0,
                   f"{ratio:.2f} ({C.ms(s2['ok_p99_us'])} / {C.ms(s05['ok_p99_us'])} ms)",
                   "<= 2", by=f"{ratio - 2:+.2f}")
    else:
        rep.target(f"{name}: admitted p99 at 2C / at 0.5C", False, "no 2xx", "<= 2")
    svc = [steps[k]["503_svc_p99_us"] for k in STEPS if steps[k]["503_svc_p99_us"] is not None]
    tot = [steps[k]["503_p99_us"] for k in STEPS if steps[k]["503_p99_us"] is not None]
    if svc:
        worst = max(svc)
        rep.target(f"{name}: 503 p99 from the socket write (worst step)", worst < 1000,
                   f"{C.ms(worst)} ms (from intended time: {C.ms(max(tot))} ms)", "< 1 ms",
                   by=f"{(worst - 1000) / 1000:+.2f} ms")
    else:
        rep.target(f"{name}: 503 p99 from the socket write", None, "no 503 at any step",
                   "< 1 ms")
    if "--overload-target-ms" not in cfg["demo"]:
        worst = max(steps[k]["shed_transitions"] / step_s for k in (2.0, 4.0))
        rep.target(f"{name}: CPU shedding on/off transitions per second at 2C and 4C",
                   worst <= 1.0, f"{worst:.2f}/s", "<= 1/s", by=f"{worst - 1:+.2f}/s")
    client_limited = [f"{k:g}C" for k in STEPS if "client" in steps[k]["bottleneck"]]
    fig["client_limited_steps"] = client_limited
    # Invariants: the server must survive and answer only 200 or 503.
    other = sum(steps[k]["other"] for k in STEPS)
    rep.hard(f"{name}: only 200 and 503 answered", other == 0, other, 0)
    errs = sum(steps[k]["err"] for k in STEPS)
    sent = sum(steps[k]["sent"] for k in STEPS)
    fig["errors"] = errs
    ev = st.get("evicted") if st else None
    rep.target(f"{name}: requests with no response (connection closed or reset)",
               errs == 0, f"{errs} of {sent}" + (f" (server evicted {ev} idle)" if ev else ""),
               "0", by=f"{errs / sent:.2%}" if sent else None)
    rep.hard(f"{name}: process alive, exit 0 after SIGTERM", alive and code == 0,
             f"alive={alive} exit={code}", "alive, 0")
    rep.hard(f"{name}: idle afterwards (/stats: 1 connection, 1 arena = the /stats request)",
             C.idle_baseline_ok(st),
             None if st is None else f"conns={st['connections_open']} arenas={st['arenas_in_use']}",
             "1/1")
    return fig, cap


def run_q100(args, rep, demo_bin, lg, cap):
    """/sleep/5 at 0.5C and 2C with the default 100 ms queue timeout."""
    step_s = args.step_seconds or 10.0
    demo = C.Demo(demo_bin, ["--arenas", "16", "--prefault", "--reserved-arenas", "0"],
                  tag="sleep5-q100")
    rows, steps = [], {}
    for k in (0.5, 2.0):
        r = C.run_loadgen(lg, demo.port, [(k * cap, step_s)], [("/sleep/5", 1)], demo=demo,
                          connections=1000)
        steps[k] = {"k": k, "offered": round(k * cap), "goodput": round(r["goodput"], 1),
                    "rate503": round(r["rate503"], 1), "ok_p50_us": r["ok_p50"],
                    "ok_p99_us": r["ok_p99"], "503_p99_us": r["503_p99"],
                    "503_svc_p99_us": r["503_svc_p99"], "err": r["err"], "tmo": r["tmo"]}
        x = steps[k]
        rows.append([f"{k:g}C", x["offered"], x["goodput"], x["rate503"], C.ms(x["ok_p50_us"]),
                     C.ms(x["ok_p99_us"]), C.ms(x["503_p99_us"]), C.ms(x["503_svc_p99_us"]),
                     x["err"], x["tmo"]])
    alive = demo.alive()
    code = demo.stop()
    C.table(f"overload_sweep sleep5-q100: /sleep/5, --arenas 16 and the default "
            f"--queue-timeout-ms 100, C = {cap:.0f}/s; latencies in ms",
            ["step", "offered/s", "goodput/s", "503/s", "ok_p50", "ok_p99", "503_p99",
             "503svc_p99", "err", "tmo"], rows)
    rep.hard("sleep5-q100: process alive, exit 0 after SIGTERM", alive and code == 0,
             f"alive={alive} exit={code}", "alive, 0")
    return {"capacity": cap, "step_s": step_s, "steps": [steps[0.5], steps[2.0]]}


def run_step(args, rep, demo_bin, lg, label="step", targets=True):
    """The step series: a CPU-bound route (/spin/1000) at 0.5C, then 2C,
    several times over, open loop; each 2C phase's figures include its
    onset. A second loadgen asks GET /health 100 times a second throughout
    (its own connections). Targets over every 2C phase: admitted p99 <= 20
    ms, 503 p99 <= 10 ms (and < 1 ms for this CPU-bound route, from the
    socket write), /health max < 10 ms."""
    quick = args.quick
    path = "/spin/1000"
    cycles = 1 if quick else 5
    low_s, high_s = (1.0, 2.0) if quick else (2.0, 3.0)
    demo = C.Demo(demo_bin, ["--prefault"], tag=label)
    if not demo.started:
        raise SystemExit(f"overload_sweep: demo for {label} did not start")
    cap, _ = C.capacity_ramp(lg, demo, path, 400, 1.25 if not quick else 1.5, 20000,
                             1.0 if quick else 2.0, 512)
    phases = []
    for _ in range(cycles):
        phases += [(0.5 * cap, low_s), (2.0 * cap, high_s)]
    total = sum(t for _, t in phases)
    hcmd = C.loadgen_cmd(lg, demo.port, [(100.0, total)], [("/health", 1)], connections=4,
                         timeout_ms=5000)
    hout = open(os.path.join(C.tmpdir(), "step-health.out"), "w+")
    hp = subprocess.Popen(hcmd, stdout=hout, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    st0 = demo.stats() or {}
    r = C.run_loadgen(lg, demo.port, phases, [(path, 1)], demo=demo, connections=512)
    hp.wait(timeout=total + 30)
    hout.seek(0)
    health = [json.loads(x) for x in hout if '"summary"' in x][-1]
    hout.close()
    st1 = demo.stats() or {}
    alive = demo.alive()
    code = demo.stop()
    rows, highs = [], []
    for i, ph in enumerate(r.s["phases"]):
        rows.append([i, f"{ph['rate']:.0f}", f"{ph['seconds']:g}", f"{ph['goodput']:.0f}",
                     f"{ph['rate503']:.0f}", C.ms(ph["ok_p50"]), C.ms(ph["ok_p99"]),
                     C.ms(ph["ok_max"]), C.ms(ph["503_p50"]), C.ms(ph["503_p99"]),
                     C.ms(ph["503_svc_p99"]), ph["err"] + ph["tmo"]])
        if i % 2 == 1:
            highs.append(ph)
    C.table(f"overload_sweep {label}: {path}, C = {cap:.0f}/s, {cycles} x (0.5C {low_s:g} s, "
            f"2C {high_s:g} s), open loop; latencies in ms from the intended send time "
            "(503svc: from the socket write)",
            ["phase", "offered/s", "s", "goodput/s", "503/s", "ok_p50", "ok_p99", "ok_max",
             "503_p50", "503_p99", "503svc_p99", "err+tmo"], rows)
    C.table(f"overload_sweep {label}: GET /health at 100/s throughout (its own loadgen)",
            ["sent", "200", "p50 ms", "p99 ms", "max ms", "svc p99 ms", "svc max ms"],
            [[health["sent"], health["2xx"], C.ms(health["ok_p50"]), C.ms(health["ok_p99"]),
              C.ms(health["ok_max"]), C.ms(health.get("ok_svc_p99")),
              C.ms(health.get("ok_svc_max"))]])

    def worst(key):
        vals = [ph[key] for ph in highs if ph[key] is not None]
        return max(vals) if vals else None

    ok99, s99, svc99 = worst("ok_p99"), worst("503_p99"), worst("503_svc_p99")
    fig = {"binary": demo_bin, "path": path, "capacity": round(cap, 1), "cycles": cycles,
           "low_s": low_s, "high_s": high_s, "phases": r.s["phases"], "health": health,
           "shed_cpu": st1.get("shed_cpu", 0) - st0.get("shed_cpu", 0),
           "worst_2c": {"ok_p99_us": ok99, "503_p99_us": s99, "503_svc_p99_us": svc99},
           "exit_code": code}
    if not targets:
        return fig
    rep.target("step: admitted p99 over every 2C phase", ok99 is not None and ok99 <= 20000,
               f"{C.ms(ok99)} ms", "<= 20 ms",
               by=None if ok99 is None else f"{(ok99 - 20000) / 1000:+.2f} ms")
    rep.target("step: 503 p99 over every 2C phase (from the intended time)",
               s99 is not None and s99 <= 10000, f"{C.ms(s99)} ms", "<= 10 ms",
               by=None if s99 is None else f"{(s99 - 10000) / 1000:+.2f} ms")
    rep.target("step: 503 p99 for the CPU-bound route (from the socket write)",
               svc99 is not None and svc99 < 1000, f"{C.ms(svc99)} ms", "< 1 ms",
               by=None if svc99 is None else f"{(svc99 - 1000) / 1000:+.2f} ms")
    hmax = health["ok_max"]
    rep.target("step: /health max", hmax is not None and hmax < 10000 and
               health["2xx"] == health["sent"], f"{C.ms(hmax)} ms, {health['2xx']}/"
               f"{health['sent']} 200", "< 10 ms, all 200",
               by=None if hmax is None else f"{(hmax - 10000) / 1000:+.2f} ms")
    other = r["4xx"] + r["500"] + r["other"]
    rep.hard("step: only 200 and 503 answered", other == 0, other, 0)
    rep.hard("step: process alive, exit 0 after SIGTERM", alive and code == 0,
             f"alive={alive} exit={code}", "alive, 0")
    return fig


def run(args, rep):
    demo_bin, lg = C.tools()
    C.raise_nofile()
    figs = {}
    names = [s.strip() for s in args.series.split(",") if s.strip()]
    if "step" in names:
        names.remove("step")
        figs["step"] = run_step(args, rep, demo_bin, lg)
        if args.compare_demo:
            figs["step-compare"] = run_step(args, rep, args.compare_demo, lg, "step-compare",
                                            targets=False)
    for n in names:
        if n not in SERIES:
            raise SystemExit(f"overload_sweep: unknown series {n}")
    caps = {}
    for n in names:
        base = SERIES[n].get("capacity_of")
        if base is not None:
            if base not in caps:
                raise SystemExit(f"overload_sweep: series {n} needs {base} earlier in --series")
            override = caps[base]
        elif n == "hello":
            override = args.capacity_hello
        elif n.startswith("sleep5"):
            override = args.capacity_sleep5
        else:
            override = None
        figs[n], cap = run_series(n, SERIES[n], args, rep, demo_bin, lg, override)
        caps[n] = cap
        if n == "sleep5" and not args.quick:
            figs["sleep5-q100"] = run_q100(args, rep, demo_bin, lg, cap)
            figs["sleep5-slots"], _ = run_series("sleep5-slots", SERIES["sleep5-slots"], args,
                                                 rep, demo_bin, lg, cap)
    rep.figures = figs


if __name__ == "__main__":
    raise SystemExit(C.main("overload_sweep", __doc__, run, 150, 1800, add_args))
