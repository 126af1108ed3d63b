"""compare: two nea-demo builds, interleaved, at fixed rates (python3 -B test/reliability/compare.py --other PATH).

On a shared machine two runs minutes apart are not comparable: other work
comes and goes. This starts both servers (the one NEA_DEMO or the default
build names, and --other, e.g. an older build) with the same options, and
runs loadgen against them in turn: for each round, each rate, one run on
each, the order alternating from round to round. Per build and rate it
prints every run's goodput, 503s, admitted p99 and 503 p99 from the socket
write, the server's CPU and the server core's CPU spent on anything else
(a run with much of that is the machine's, not the server's).

Example: python3 -B test/reliability/compare.py --other /tmp/nea-old/build/examples/nea-demo \\
             --path /spin/500 --rates 900,3600 --rounds 3 --seconds 4
"""
import time

import common as C


def add_args(ap):
    ap.add_argument("--other", required=True, help="the other nea-demo to compare with")
    ap.add_argument("--path", default="/spin/500", help="request path (/spin/500)")
    ap.add_argument("--rates", default="900,3600", help="comma-separated rates/s (900,3600)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds (3)")
    ap.add_argument("--seconds", type=float, default=4.0, help="seconds per run (4)")
    ap.add_argument("--demo-args", default="--prefault", help="options for both servers")


def run(args, rep):
    demo_bin, lg = C.tools()
    C.raise_nofile()
    bins = {"this": demo_bin, "other": args.other}
    demos = {k: C.Demo(b, args.demo_args.split(), tag=k) for k, b in bins.items()}
    for k, d in demos.items():
        if not d.started:
            raise SystemExit(f"compare: {k} did not start")
    rates = [float(x) for x in args.rates.split(",")]
    res = {}
    for rnd in range(args.rounds):
        for rate in rates:
            for k in (("this", "other") if rnd % 2 == 0 else ("other", "this")):
                r = C.run_loadgen(lg, demos[k].port, [(rate, args.seconds)], [(args.path, 1)],
                                  demo=demos[k], connections=512)
                res.setdefault((rate, k), []).append(r)
                time.sleep(0.5)
    codes = {k: d.stop() for k, d in demos.items()}
    rows = []
    for (rate, k), runs in sorted(res.items()):
        def col(f):
            return " ".join(f(r) for r in runs)
        rows.append([f"{rate:g}", k, col(lambda r: f"{r['goodput']:.0f}"),
                     col(lambda r: f"{r['rate503']:.0f}"), col(lambda r: C.ms(r["ok_p99"])),
                     col(lambda r: C.ms(r["503_svc_p99"])),
                     col(lambda r: f"{r.server_cpu or 0:.0f}"),
                     col(lambda r: "-" if r.srv_core_other is None else f"{r.srv_core_other:.0f}")])
    C.table(f"compare: {args.path}, {args.rounds} rounds x {args.seconds:g} s per run, "
            f"this = {demo_bin}, other = {args.other}; one value per run",
            ["rate/s", "build", "goodput/s", "503/s", "ok_p99 ms", "503svc_p99 ms",
             "server cpu%", "core other%"], rows)
    rep.hard("both exit 0 after SIGTERM", all(c == 0 for c in codes.values()),
             "/".join(str(c) for c in codes.values()), "0/0")
    rep.figures = {f"{rate:g}/{k}": [{"goodput": r["goodput"], "rate503": r["rate503"],
                                      "ok_p99_us": r["ok_p99"], "503_svc_p99_us": r["503_svc_p99"],
                                      "server_cpu": r.server_cpu,
                                      "core_other": r.srv_core_other} for r in runs]
                   for (rate, k), runs in res.items()}


if __name__ == "__main__":
    raise SystemExit(C.main("compare", __doc__, run, 600, 1800, add_args))
