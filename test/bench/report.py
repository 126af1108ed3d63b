#!/usr/bin/env python3
"""Turns run.py's raw measurements into results.md, results.csv and bench.svg.

    report.py OUT_DIR

Reads OUT_DIR/raw/{cells,pressure,servers}.csv, env.txt and the
zero-allocation snapshots, prints results.md on stdout and writes it, the
CSV and (when gnuplot is installed) the chart into OUT_DIR.
"""
import csv
import os
import shutil
import statistics
import subprocess
import sys

SERVERS = ["nea-demo", "nginx", "mhd", "h2o", "uvmalloc"]
WORKLOADS = ["hello", "pipeline", "close", "alloc", "svg"]
TITLES = {
    "hello": "/hello keep-alive",
    "pipeline": "/hello pipelined x8",
    "close": "/hello Connection: close",
    "alloc": "/alloc 1/10/50 KiB",
    "svg": "/svg 1000 lines",
}
NEA = "nea-demo"


def read_csv(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_kv(path):
    out = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                k, _, v = line.rstrip("\n").partition("=")
                out[k] = v
    return out


def read_counts(path):
    out = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    out[parts[0]] = int(parts[1])
    return out


def fmt_int(v):
    return "n/a" if v is None else f"{v:,.0f}"


def fmt(v, digits=2):
    return "n/a" if v is None else f"{v:.{digits}f}"


def mib(kb):
    return None if kb is None else kb / 1024.0


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/nea-bench-out"
    raw = os.path.join(out, "raw")
    env = read_kv(os.path.join(raw, "env.txt"))
    servers_info = {r["server"]: r for r in read_csv(os.path.join(raw, "servers.csv"))}
    servers = [s for s in SERVERS if s in servers_info]
    cells = read_csv(os.path.join(raw, "cells.csv"))
    pressure = {r["server"]: r for r in read_csv(os.path.join(raw, "pressure.csv"))}
    reserved = servers_info.get(NEA, {}).get("reserved_bytes") or None
    reserved = int(reserved) if reserved else None

    # ---- medians over rounds (peak RSS: the largest of the rounds)
    agg = {}
    for s in servers:
        for w in WORKLOADS:
            rows = [r for r in cells if r["server"] == s and r["workload"] == w]
            if not rows:
                agg[s, w] = None
                continue
            def med(k):
                vals = [float(r[k]) for r in rows if r[k] not in ("", "nan")]
                vals = [v for v in vals if v == v and (v > 0 or k not in ("p50_ms", "p99_ms"))]  # NaN, wrk 0.00us
                return statistics.median(vals) if vals else None
            agg[s, w] = {
                "rounds": len(rows),
                "rps": med("rps"),
                "p50": med("p50_ms"),
                "p99": med("p99_ms"),
                "cpu": med("cpu_us_per_req"),
                "rss": max(int(r["peak_rss_kb"]) for r in rows),
                "non2xx": sum(int(r["non2xx"]) for r in rows),
                "errors": sum(int(r["socket_errors"]) for r in rows),
            }

    # whole-run peak RSS: start-up/warm-up, every cell, the pressure phase
    peak = {}
    for s in servers:
        vals = [int(servers_info[s]["startup_hwm_kb"] or 0)]
        vals += [int(r["peak_rss_kb"]) for r in cells if r["server"] == s]
        bench_peak = max(vals)
        press = int(pressure[s]["peak_rss_kb"]) if s in pressure else None
        peak[s] = (bench_peak, press, max(bench_peak, press or 0))

    md = []
    md.append("# libnea benchmark results\n")
    md.append(f"Command: `{env.get('command', 'test/bench/run.py')}` ({env.get('date', '?')}); "
              f"{env.get('rounds', '?')} round(s) x {env.get('duration_s', '?')} s per cell, medians over rounds; "
              "server on CPU 0, wrk (`-t 1 -c 64`) on CPU 1.\n")
    md.append(f"Machine: {env.get('cpu', '?')}, Linux {env.get('kernel', '?')}. "
              f"wrk {env.get('wrk', '?')}, nginx {env.get('nginx', '?')}, libmicrohttpd {env.get('libmicrohttpd', '?')}, "
              f"libh2o {env.get('libh2o', '?')}, libuv {env.get('libuv', '?')}.\n")
    if NEA in servers:
        md.append(f"nea-demo: `{env.get('nea_demo', '')}` (commit {env.get('nea_commit', '?')}), "
                  f"reserved {reserved:,} bytes ({reserved / 1048576:.1f} MiB).\n")
    else:
        md.append(f"**nea-demo not measured ({env.get('nea_demo', 'missing')}): this run has the peers only.**\n")
    deaths = []
    dp = os.path.join(raw, "deaths.txt")
    if os.path.exists(dp):
        deaths = [line.strip().split(",", 1) for line in open(dp) if line.strip()]
    for name, how in deaths:
        md.append(f"**{name} {how}**; its later cells are n/a (see logs/{name.replace('-zero', '')}.log).\n")
    md.append("![throughput and peak RSS per server](bench.svg)\n")

    # ---- req/s matrix
    md.append("## Throughput (req/s, median)\n")
    md.append("| workload | " + " | ".join(servers) + " |")
    md.append("|---|" + "---:|" * len(servers))
    for w in WORKLOADS:
        md.append(f"| {TITLES[w]} | " + " | ".join(fmt_int(agg[s, w]["rps"]) if agg[s, w] else "n/a"
                                                  for s in servers) + " |")
    md.append("")

    # ---- details
    md.append("## Per cell\n")
    md.append("| workload | server | req/s | p50 ms | p99 ms | CPU us/req | peak RSS MiB | non-2xx | socket errors |")
    md.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for w in WORKLOADS:
        for s in servers:
            a = agg[s, w]
            if not a:
                md.append(f"| {TITLES[w]} | {s} | n/a | n/a | n/a | n/a | n/a | n/a | n/a |")
                continue
            md.append(f"| {TITLES[w]} | {s} | {fmt_int(a['rps'])} | {fmt(a['p50'], 3)} | {fmt(a['p99'], 3)} | "
                      f"{fmt(a['cpu'])} | {fmt(mib(a['rss']), 1)} | {a['non2xx']} | {a['errors']} |")
    md.append("")

    # ---- ratios
    peers = [s for s in servers if s != NEA]
    if NEA in servers and peers:
        md.append("## nea-demo vs each peer\n")
        md.append("req/s ratio = nea-demo / peer (above 1: nea-demo faster); "
                  "CPU ratio = nea-demo CPU per request / peer's (below 1: nea-demo cheaper).\n")
        md.append("| workload | " + " | ".join(f"vs {p} req/s | vs {p} CPU" for p in peers) + " |")
        md.append("|---|" + "---:|---:|" * len(peers))
        for w in WORKLOADS:
            row = []
            n = agg[NEA, w]
            for p in peers:
                a = agg[p, w]
                if n and a and a["rps"] and a["cpu"]:
                    row.append(f"{n['rps'] / a['rps']:.2f}x")
                    row.append(f"{n['cpu'] / a['cpu']:.2f}x")
                else:
                    row += ["n/a", "n/a"]
            md.append(f"| {TITLES[w]} | " + " | ".join(row) + " |")
        md.append("")

        md.append("## Targets (issue 5)\n")
        md.append("| target | measured | verdict |")
        md.append("|---|---|---|")

        def target(name, ok, text):
            verdict = "not judged" if ok is None else "met" if ok else "MISSED"
            md.append(f"| {name} | {text} | {verdict} |")

        def ratio_target(name, w, peer, want):
            n, a = agg[NEA, w], agg.get((peer, w))
            if n and a:
                r = n["rps"] / a["rps"]
                target(name, r >= want, f"{r:.2f}x")

        dead = dict(deaths)
        if NEA in dead:
            target("every target", None, f"nea-demo {dead[NEA]}")
            md.append("")
        else:
            judge_targets(agg, peak, reserved, target, ratio_target)
            md.append("")

    # ---- memory under pressure
    md.append("## Memory under pressure: 64 concurrent GET /alloc/4096 (4 MiB each)\n")
    md.append("| server | requests | 200 | non-2xx | socket errors | peak RSS MiB | reserved MiB |")
    md.append("|---|---:|---:|---:|---:|---:|---:|")
    for s in servers:
        if s not in pressure:
            md.append(f"| {s} | n/a | n/a | n/a | n/a | n/a | |")
            continue
        p = pressure[s]
        ok = int(p["requests"]) - int(p["non2xx"])
        res = f"{int(p['reserved_bytes']) / 1048576:.1f}" if p["reserved_bytes"] else ""
        md.append(f"| {s} | {int(p['requests']):,} | {ok:,} | {int(p['non2xx']):,} | {p['socket_errors']} | "
                  f"{int(p['peak_rss_kb']) / 1024:.1f} | {res} |")
    md.append("")

    md.append("## Peak RSS over the whole run (MiB)\n")
    md.append("| server | throughput phase | pressure phase | whole run | reserved |")
    md.append("|---|---:|---:|---:|---:|")
    for s in servers:
        b, p, wpk = peak[s]
        res = f"{reserved / 1048576:.1f}" if s == NEA and reserved else ""
        md.append(f"| {s} | {b / 1024:.1f} | {fmt(mib(p), 1)} | {wpk / 1024:.1f} | {res} |")
    md.append("")

    # ---- zero allocations
    md.append("## Heap calls in steady state (alloccount.so)\n")
    any_zero = False
    for name, label in ((NEA, "nea-demo"), ("uvmalloc", "uvmalloc (control: plain malloc server)")):
        before = read_counts(os.path.join(raw, f"zero-{name}-before.txt"))
        after = read_counts(os.path.join(raw, f"zero-{name}-after.txt"))
        run_line = ""
        rp = os.path.join(raw, f"zero-{name}-run.txt")
        if os.path.exists(rp):
            run_line = open(rp).read().strip()
        if not before or not after:
            if name == NEA:
                md.append("nea-demo: not measured (binary missing).\n")
            continue
        any_zero = True
        reqs = 0
        for part in run_line.split():
            if part.startswith("requests="):
                reqs = int(part.split("=")[1])
        allocs = sum(after[k] - before[k] for k in before
                     if k not in ("free", "free_null", "bytes_requested"))
        md.append(f"**{label}**: after 1000 warm-up requests, {run_line or '?'}: "
                  f"{allocs} allocating calls ({allocs / reqs if reqs else 0:.2f} per request).\n")
        md.append("| function | before | after | difference |")
        md.append("|---|---:|---:|---:|")
        for k in before:
            md.append(f"| {k} | {before[k]:,} | {after.get(k, 0):,} | {after.get(k, 0) - before[k]:,} |")
        md.append("")
    if not any_zero:
        md.append("not measured.\n")

    text = "\n".join(md) + "\n"
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(text)

    # ---- results.csv
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["phase", "workload", "server", "rounds", "req_per_s", "p50_ms", "p99_ms", "cpu_us_per_req",
                     "peak_rss_kb", "non2xx", "socket_errors", "reserved_bytes"])
        for w in WORKLOADS:
            for s in servers:
                a = agg[s, w]
                if not a:
                    wr.writerow(["throughput", w, s] + ["n/a"] * 8 + [""])
                    continue
                wr.writerow(["throughput", w, s, a["rounds"], f"{a['rps']:.1f}", fmt(a["p50"], 3),
                             fmt(a["p99"], 3), f"{a['cpu']:.3f}", a["rss"], a["non2xx"], a["errors"],
                             reserved if s == NEA else ""])
        for s in servers:
            if s in pressure:
                p = pressure[s]
                wr.writerow(["pressure", "alloc4096", s, 1, p["rps"], "", "", "", p["peak_rss_kb"], p["non2xx"],
                             p["socket_errors"], p["reserved_bytes"]])
        for s in servers:
            wr.writerow(["whole-run", "all", s, "", "", "", "", "", peak[s][2], "", "",
                         reserved if s == NEA else ""])

    # ---- chart
    chart(out, servers, agg, peak, reserved)
    sys.stdout.write(text)


def judge_targets(agg, peak, reserved, target, ratio_target):
    ratio_target("/hello pipelined req/s >= 1.0x nginx", "pipeline", "nginx", 1.0)
    n, a = agg[NEA, "pipeline"], agg.get(("nginx", "pipeline"))
    if n and a:
        target("/hello pipelined CPU/req <= nginx", n["cpu"] <= a["cpu"],
               f"{n['cpu']:.2f} vs {a['cpu']:.2f} us/req")
    ratio_target("/alloc req/s >= 1.2x libmicrohttpd", "alloc", "mhd", 1.2)
    ratio_target("/svg req/s >= 1.0x libmicrohttpd", "svg", "mhd", 1.0)
    bench_peak, _, whole = peak[NEA]
    limit_kb = reserved / 1024 + 2048
    target("nea-demo peak RSS <= reserved + 2 MiB", whole <= limit_kb,
           f"{whole / 1024:.1f} MiB vs {reserved / 1048576:.1f} + 2 MiB")


def chart(out, servers, agg, peak, reserved):
    if not shutil.which("gnuplot"):
        print("report.py: gnuplot not found, no chart (install gnuplot-nox)", file=sys.stderr)
        return
    raw = os.path.join(out, "raw")
    with open(os.path.join(raw, "throughput.dat"), "w") as f:
        f.write("workload " + " ".join(servers) + "\n")
        for w in WORKLOADS:
            vals = [f"{agg[s, w]['rps']:.0f}" if agg[s, w] else "NaN" for s in servers]
            f.write(f'"{TITLES[w]}" ' + " ".join(vals) + "\n")
    with open(os.path.join(raw, "rss.dat"), "w") as f:
        f.write('server "throughput phase" "64 x /alloc/4096"\n')
        for s in servers:
            b, p, _ = peak[s]
            f.write(f"{s} {b / 1024:.2f} {p / 1024 if p is not None else 'NaN'}\n")
    n = len(servers)
    res_plot = ""
    if reserved:
        res_plot = (f", {reserved / 1048576:.2f} with lines dt 2 lw 1.5 lc rgb '#444444' "
                    "title 'nea-demo reservation'")
    script = f"""
set terminal svg size 1000,820 dynamic font 'sans,11' background rgb 'white'
set output '{os.path.join(out, "bench.svg")}'
set datafile missing 'NaN'
set multiplot layout 2,1
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set key outside top center horizontal
set grid ytics
set title 'Throughput per workload (req/s, median; log scale; nginx serves /hello only)'
set logscale y
set yrange [1000:*]
set format y '%.0s%c'
plot for [i=2:{n + 1}] '{os.path.join(raw, "throughput.dat")}' using i:xtic(1) title columnheader(i)
unset logscale y
set yrange [0:*]
set format y '%g'
set title 'Peak RSS per server (MiB)'
set ylabel 'MiB'
set offsets 0, 0, graph 0.15, 0
plot for [i=2:3] '{os.path.join(raw, "rss.dat")}' using i:xtic(1) title columnheader(i){res_plot}
unset multiplot
"""
    with open(os.path.join(raw, "bench.gp"), "w") as f:
        f.write(script)
    r = subprocess.run(["gnuplot", os.path.join(raw, "bench.gp")], capture_output=True, text=True)
    if r.returncode != 0:
        print("report.py: gnuplot failed:\n" + r.stderr, file=sys.stderr)


if __name__ == "__main__":
    main()
