"""fair_share: one greedy client against ten polite ones (python3 -B test/reliability/fair_share.py).

nea-demo with --arenas 16 --queue-timeout-ms 50 --prefault serves
GET /sleep/20 (each request holds an arena 20 ms, so C ~ 16 / 20 ms = 800/s).
Each client is its own loadgen bound to its own address in 127.0.0.0/8
(--source): the greedy one from 127.0.0.2 with 100 connections offering
2.5C, ten polite ones from 127.0.0.10-19 with 10 connections each offering
C/40 (0.25C together). Run twice on the same machine, minutes apart:
--fair-share-pct 50 (the default) and --fair-share-pct 0 (off).

Target: the polite clients get >= 95% 200s with fair share on. Reported:
their share of 200s, 503s by cause (/stats), the greedy client's goodput,
and the same with fair share off.
"""
import json
import os
import subprocess
import time

import common as C

POLITE = 10
PATH = "/sleep/20"


def add_args(ap):
    ap.add_argument("--seconds", type=float, help="seconds of load per run (default 10, quick 3)")


def one_run(lg, demo_bin, fair, secs):
    demo = C.Demo(demo_bin, ["--arenas", "16", "--queue-timeout-ms", "50", "--prefault",
                             "--reserved-arenas", "0", "--fair-share-pct", str(fair)],
                  tag=f"fair{fair}")
    if not demo.started:
        raise SystemExit("fair_share: demo did not start")
    cap = 16 / 0.020
    clients = [("greedy", "127.0.0.2", 2.5 * cap, 100)]
    clients += [(f"polite{i}", f"127.0.0.{10 + i}", cap / 40, 10) for i in range(POLITE)]
    procs = []
    for name, src, rate, conns in clients:
        cmd = C.loadgen_cmd(lg, demo.port, [(rate, secs)], [(PATH, 1)], connections=conns,
                            timeout_ms=5000) + ["--source", src]
        out = open(os.path.join(C.tmpdir(), f"fair-{fair}-{name}.out"), "w+")
        procs.append((name, subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE,
                                             stdin=subprocess.DEVNULL, text=True), out))
    deadline = time.monotonic() + secs + 30
    results = {}
    for name, p, out in procs:
        try:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            raise SystemExit(f"fair_share: loadgen {name} ran over its bound")
        err = p.stderr.read()
        if p.returncode != 0:
            raise SystemExit(f"fair_share: loadgen {name} exit {p.returncode}: {err.strip()}")
        out.seek(0)
        summary = [json.loads(x) for x in out if '"summary"' in x]
        out.close()
        if not summary:
            raise SystemExit(f"fair_share: loadgen {name} printed no summary")
        results[name] = summary[-1]
    st = demo.stats() if demo.alive() else None
    code = demo.stop()
    polite = [results[f"polite{i}"] for i in range(POLITE)]
    sent = sum(r["sent"] for r in polite)
    ok = sum(r["2xx"] for r in polite)
    worst = min((r["2xx"] / r["sent"] if r["sent"] else 0.0) for r in polite)
    g = results["greedy"]
    return {"fair_share_pct": fair, "seconds": secs, "polite_sent": sent, "polite_200": ok,
            "polite_200_share": ok / sent if sent else None, "worst_polite_200_share": worst,
            "polite_503": sum(r["503"] for r in polite),
            "polite_err_tmo": sum(r["err"] + r["tmo"] for r in polite),
            "greedy_sent": g["sent"], "greedy_200": g["2xx"], "greedy_503": g["503"],
            "stats": st, "exit_code": code}


def run(args, rep):
    demo_bin, lg = C.tools()
    C.raise_nofile()
    secs = args.seconds or (3.0 if args.quick else 10.0)
    on = one_run(lg, demo_bin, 50, secs)
    off = one_run(lg, demo_bin, 0, secs)
    rows = []
    for r in (on, off):
        st = r["stats"] or {}
        rows.append([r["fair_share_pct"], r["polite_sent"], f"{r['polite_200_share']:.1%}",
                     f"{r['worst_polite_200_share']:.1%}", r["polite_503"], r["polite_err_tmo"],
                     r["greedy_sent"], r["greedy_200"], r["greedy_503"],
                     st.get("shed_fair", "-"), st.get("shed_no_arena", "-")])
    C.table(f"fair_share: {PATH}, 16 arenas, greedy 127.0.0.2 (100 conns, 2.5C) vs "
            f"{POLITE} polite 127.0.0.10-19 (10 conns, C/40 each), {secs:g} s",
            ["fair%", "polite sent", "polite 200", "worst polite", "polite 503", "polite err",
             "greedy sent", "greedy 200", "greedy 503", "shed_fair", "shed_no_arena"], rows)
    share = on["polite_200_share"] or 0.0
    rep.target("polite clients' 200s with fair share on", share >= 0.95, f"{share:.1%}",
               ">= 95%", by=f"{(share - 0.95) * 100:+.1f} pts")
    rep.hard("server exits 0 after SIGTERM (both runs)",
             on["exit_code"] == 0 and off["exit_code"] == 0,
             f"{on['exit_code']}/{off['exit_code']}", "0/0")
    rep.figures = {"on": on, "off": off}


if __name__ == "__main__":
    raise SystemExit(C.main("fair_share", __doc__, run, 60, 120, add_args))
