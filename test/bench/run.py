"""libnea benchmark driver: nea-demo against nginx, libmicrohttpd, libh2o and a
plain libuv + llhttp + malloc server, on the same machine, in one run.

    python3 -B test/bench/run.py [NEA_DEMO] [--quick] [--out DIR] [--build DIR]

  NEA_DEMO     nea-demo binary (default: build/examples/nea-demo); when it does
               not exist the run goes on with the peers only
  --quick      1 round x 3 s per cell (smoke test) instead of 3 x 10 s
  --out DIR    results: results.md, results.csv, bench.svg, raw/, logs/
               (default /tmp/nea-bench-out)
  --build DIR  CMake build directory for the peers, loadgen and alloccount.so
               (configured with -DNEA_BUILD_TOOLS=ON; default /tmp/nea-bench-build)

Environment: NEA_BENCH_PORT (first port, default 20080; the run uses the next
30), NEA_DEMO_ARGS (replaces nea-demo's sizing flags, see DEFAULT_DEMO_ARGS).

Every server runs pinned to CPU 0 (taskset -c 0), wrk to CPU 1. Rounds are
interleaved: round r runs every workload on every server before round r+1. A
peer whose library was not found at configure time is left out, with a note.
See test/bench/README.md for what each workload and column means.
"""
import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))
import neatools as T  # noqa: E402

REPO = T.REPO
SERVER_CPU, CLIENT_CPU = 0, 1
# Arena big enough for /alloc/50 and the 1000-line /svg (body + document).
DEFAULT_DEMO_ARGS = "--prefault --arena-size 256k --arenas 128 --connections 256 --memory-limit 1G"
WORKLOADS = ["hello", "pipeline", "close", "alloc", "svg"]
ZERO_COUNT = 100000     # mixed requests counted in the zero-allocations phase
CONTROL_COUNT = 10000   # the same mix against uvmalloc, to show the counter works


def say(msg):
    print(msg, flush=True)


def warn(msg):
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ wrk

def _ms(v):
    """A wrk duration ("812.00us", "1.20ms", "2.00s", "1.5m") in milliseconds."""
    num = re.match(r"[0-9.]*", v).group(0) or "0"
    x = float(num) if num != "." else 0.0
    if v.endswith("us"):
        return x / 1000
    if v.endswith("ms"):
        return x
    if v.endswith("m"):
        return x * 60000
    if v.endswith("s"):
        return x * 1000
    return x


def parse_wrk(path):
    """(requests, rps text, p50 ms text, p99 ms text, non2xx, socket errors) of a
    wrk --latency output. wrk 4.1 sometimes prints 0.00us percentiles
    (wg/wrk#354, often with pipelining): a zero latency is "nan", not a number."""
    req, rps, p50, p99, bad, err = 0, "", 0.0, 0.0, 0, 0
    with open(path, errors="replace") as f:
        for line in f:
            w = line.split()
            if " requests in " in line and w:
                req = int(w[0])
            elif line.startswith("Requests/sec:") and len(w) > 1:
                rps = w[1]
            elif re.match(r"^ +50%", line):
                p50 = _ms(w[1])
            elif re.match(r"^ +99%", line):
                p99 = _ms(w[1])
            elif "Non-2xx or 3xx responses:" in line:
                bad = int(w[-1])
            elif "Socket errors:" in line:
                err += sum(int(x.rstrip(",")) for x in w if re.fullmatch(r"[0-9]+,?", x))

    def lat(v):
        return f"{v:.3f}" if v > 0 else "nan"
    return req, rps, lat(p50), lat(p99), bad, err


def run_wrk(path, dur, conns, args):
    """wrk on the client CPU, one thread, bounded in time; output in path."""
    cmd = ["taskset", "-c", str(CLIENT_CPU), "wrk", "-t", "1", "-c", str(conns),
           "-d", f"{dur}s", "--latency"] + args
    with open(path, "w") as f:
        try:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, timeout=dur + 30).returncode
        except subprocess.TimeoutExpired:
            rc = 124
    if rc != 0:
        warn(f"run.py: wrk failed (exit {rc}), see {path}")
        with open(path, errors="replace") as f:
            warn(f.read())
        raise SystemExit(1)


def wrk_args(port, workload):
    url = f"http://127.0.0.1:{port}"
    return {
        "hello": [f"{url}/hello"],
        "pipeline": ["-s", os.path.join(HERE, "pipeline.lua"), f"{url}/hello"],
        "close": ["-H", "Connection: close", f"{url}/hello"],
        "alloc": ["-s", os.path.join(HERE, "alloc.lua"), f"{url}/"],
        "svg": ["-s", os.path.join(HERE, "svg.lua"), f"{url}/svg"],
    }[workload]


def supports(server, workload):
    return server != "nginx" or workload in ("hello", "pipeline", "close")


# ------------------------------------------------------------------ the run

class Bench:
    def __init__(self, args):
        self.quick = args.quick
        self.out = args.out
        self.raw = os.path.join(self.out, "raw")
        self.logs = os.path.join(self.out, "logs")
        self.nea = args.nea_demo
        self.build = args.build
        if self.quick:
            self.rounds, self.dur, self.pressure_dur = 1, 3, 3
        else:
            self.rounds, self.dur, self.pressure_dur = 3, 10, 5
        self.port_base = int(os.environ.get("NEA_BENCH_PORT", "20080"))
        self.nea_args = shlex.split(os.environ.get("NEA_DEMO_ARGS", DEFAULT_DEMO_ARGS))
        self.srv = {}       # name -> neatools.Server
        self.port = {}      # name -> port
        self.servers = []   # measured, in order
        self.dead = {}      # name -> how it died
        self.nea_reserved = ""
        self.nea_status = "missing"
        self.tmp = tempfile.mkdtemp(prefix="nea-bench.")

    # ---- servers

    def _port_free(self, port):
        if T.port_open(port):
            warn(f"run.py: port {port} is already in use (set NEA_BENCH_PORT)")
            return False
        return True

    def start_peer(self, name, port, cmd):
        """Starts cmd on the server CPU and waits (bounded, 10 s) for its port."""
        if not self._port_free(port):
            raise SystemExit(1)
        s = T.Server(cmd, os.path.join(self.logs, f"{name}.log"), cpu=SERVER_CPU, tag=name)
        if not s.wait_port(port, 10.0):
            if not s.alive():
                warn(f"run.py: {name} exited during start-up ({T.describe_exit(s.exit_code)}):")
                warn(s.stderr_text())
            else:
                warn(f"run.py: {name} did not open port {port} within 10 s")
            raise SystemExit(1)
        self.srv[name], self.port[name] = s, port
        return s

    def start_demo(self, name, port, env=None):
        """nea-demo with the sizing flags; None when it could not start."""
        if not self._port_free(port):
            raise SystemExit(1)
        d = T.Demo(self.nea, self.nea_args, os.path.join(self.logs, f"{name}.log"),
                   os.path.join(self.logs, f"{name}.stderr.log"), port=port, cpu=SERVER_CPU,
                   env=env, tag=name, start_timeout=10.0)
        if not d.started:
            return None
        self.srv[name], self.port[name] = d, port
        return d

    def stop(self, name):
        s = self.srv.get(name)
        if s is not None:
            s.stop(5.0)

    def check_alive(self, name, during):
        """True when alive; else records how it died and leaves it out of the run."""
        s = self.srv[name]
        if s.alive():
            return True
        how = T.describe_exit(s.p.returncode)
        self.dead[name] = f"{how} during {during}"
        warn(f"!! {name} {how} during {during}: left out of the rest of the run "
             f"(log: {self.logs}/{name}.log)")
        with open(os.path.join(self.raw, "deaths.txt"), "a") as f:
            f.write(f"{name},{how} during {during}\n")
        return False

    # ---- phases

    def start_all(self, tools):
        if self.nea and os.access(self.nea, os.X_OK):
            d = self.start_demo("nea-demo", self.port_base)
            if d is None:
                log = ""
                for p in ("nea-demo.log", "nea-demo.stderr.log"):
                    with open(os.path.join(self.logs, p), errors="replace") as f:
                        log += f.read()
                warn(log)
                say(f"== nea-demo at {self.nea} FAILED to start (log above): SKIPPING it, "
                    "peers only")
                self.nea_status = f"failed to start: {' '.join(log.split())}"
                self.nea = None
            else:
                self.nea_status = "ok"
                self.nea_reserved = str(d.reserved if d.reserved is not None else "")
                say(f"== nea-demo: {d.line.strip()}")
                if not self.nea_reserved:
                    raise SystemExit("run.py: nea-demo printed no reserved= figure")
                self.servers.append("nea-demo")
        else:
            say(f"== nea-demo not found at {self.nea}: SKIPPING it (peers only; build libnea "
                "with examples, or pass its path)")
            self.nea = None

        ngx = os.path.join(self.tmp, "nginx")
        os.makedirs(ngx)
        with open(os.path.join(HERE, "peers", "nginx.conf.in")) as f:
            conf = f.read().replace("@PORT@", str(self.port_base + 1)).replace("@DIR@", ngx)
        with open(os.path.join(ngx, "nginx.conf"), "w") as f:
            f.write(conf)
        self.start_peer("nginx", self.port_base + 1,
                        ["nginx", "-p", ngx, "-c", os.path.join(ngx, "nginx.conf"),
                         "-e", os.path.join(ngx, "error.log")])
        self.servers.append("nginx")
        for i, name in enumerate(T.PEERS, start=2):
            path = tools.peers.get(name)
            if path is None:
                say(f"== {name}: not built (its library was not found at configure time, see "
                    f"{self.logs}/build.log): SKIPPING it")
                continue
            self.start_peer(name, self.port_base + i, [path, "--port", str(self.port_base + i)])
            self.servers.append(name)

    def run_cell(self, s, w, r, cells):
        if s in self.dead:
            return
        if not self.check_alive(s, "the previous cell or its connections' close"):
            return
        srv = self.srv[s]
        srv.reset_hwm()
        try:
            t0 = srv.ticks()
        except (OSError, IndexError, ValueError):
            self.check_alive(s, f"{w} round {r}")
            return
        path = os.path.join(self.raw, f"wrk-{s}-{w}-{r}.txt")
        run_wrk(path, self.dur, 64, wrk_args(self.port[s], w))
        # The server can die at any moment, also between these reads.
        try:
            t1 = srv.ticks()
            hwm = srv.status()["VmHWM"]
        except (OSError, IndexError, ValueError, KeyError):
            if not self.check_alive(s, f"{w} round {r}"):
                return
            raise SystemExit(f"run.py: cannot read /proc/{srv.pid} of {s}")
        req, rps, p50, p99, bad, err = parse_wrk(path)
        ticks = t1 - t0
        cpu_us = ticks * 1e6 / T.CLK_TCK / req if req else 0.0
        cells.write(f"{s}:{w}:{r},{s},{w},{r},{req},{rps},{p50},{p99},{bad},{err},{ticks},"
                    f"{cpu_us:.3f},{hwm}\n")
        cells.flush()
        extra = f"  non-2xx {bad}, socket errors {err}" if bad + err else ""
        say(f"   {s:<9} {w:<9} round {r}: {float(rps or 0):10.0f} req/s  p50 {float(p50):7.3f} ms"
            f"  p99 {float(p99):8.3f} ms  cpu {cpu_us:7.2f} us/req  rss {hwm:6d} kB{extra}")

    def throughput(self):
        say("== warm-up (1 s of /hello per server, not counted)")
        for s in self.servers:
            run_wrk(os.path.join(self.raw, f"warmup-{s}.txt"), 1, 64,
                    [f"http://127.0.0.1:{self.port[s]}/hello"])
        # Peak RSS from start-up and warm-up (VmHWM is reset before every cell).
        with open(os.path.join(self.raw, "servers.csv"), "w") as f:
            f.write("server,pid,port,startup_hwm_kb,reserved_bytes\n")
            for s in self.servers:
                hwm = self.srv[s].status().get("VmHWM", "")
                res = self.nea_reserved if s == "nea-demo" else ""
                f.write(f"{s},{self.srv[s].pid},{self.port[s]},{hwm},{res}\n")

        say(f"== throughput: {self.rounds} round(s) x {len(WORKLOADS)} workloads x "
            f"{len(self.servers)} servers x {self.dur} s")
        with open(os.path.join(self.raw, "cells.csv"), "w") as cells:
            cells.write("cell,server,workload,round,requests,rps,p50_ms,p99_ms,non2xx,"
                        "socket_errors,cpu_ticks,cpu_us_per_req,peak_rss_kb\n")
            for r in range(1, self.rounds + 1):
                for w in WORKLOADS:
                    for s in self.servers:
                        if supports(s, w):
                            self.run_cell(s, w, r, cells)

    def pressure(self):
        say(f"== memory under pressure: 64 concurrent GET /alloc/4096 (4 MiB each) for "
            f"{self.pressure_dur} s")
        with open(os.path.join(self.raw, "pressure.csv"), "w") as out:
            out.write("server,requests,rps,non2xx,socket_errors,peak_rss_kb,reserved_bytes\n")
            for s in self.servers:
                if s == "nginx" or s in self.dead:
                    continue
                if not self.check_alive(s, "the end of the throughput phase"):
                    continue
                srv = self.srv[s]
                srv.reset_hwm()
                path = os.path.join(self.raw, f"wrk-{s}-pressure.txt")
                run_wrk(path, self.pressure_dur, 64,
                        [f"http://127.0.0.1:{self.port[s]}/alloc/4096"])
                try:
                    hwm = srv.status()["VmHWM"]
                except (OSError, KeyError):
                    if not self.check_alive(s, "the pressure phase"):
                        continue
                    raise SystemExit(1)
                req, rps, _, _, bad, err = parse_wrk(path)
                res = self.nea_reserved if s == "nea-demo" else ""
                out.write(f"{s},{req},{rps},{bad},{err},{hwm},{res}\n")
                note = f"  (reserved {int(res) // 1024} kB)" if res else ""
                say(f"   {s:<9} {req:8d} requests ({bad} non-2xx, {err} socket errors)  "
                    f"peak RSS {hwm:7d} kB{note}")

    def _snapshot(self, name, srv, counts, dest):
        """SIGUSR1 makes alloccount.so write counts; copied to dest."""
        try:
            os.unlink(counts)
        except FileNotFoundError:
            pass
        os.kill(srv.pid, signal.SIGUSR1)
        for _ in range(100):
            if os.path.exists(counts) and os.path.getsize(counts) > 0:
                shutil.copy(counts, dest)
                return True
            time.sleep(0.05)
        warn(f"run.py: {name} wrote no allocation counts (is alloccount.so preloaded?)")
        return False

    def _mixed(self, port, count, big, deadline, dest):
        cmd = [sys.executable, "-B", os.path.join(HERE, "mixed.py"), "--port", str(port),
               "--count", str(count), "--big-kib", str(big), "--deadline", str(deadline)]
        with open(dest, "w") as f:
            try:
                return subprocess.run(cmd, stdout=f, stdin=subprocess.DEVNULL,
                                      timeout=deadline + 20).returncode == 0
            except subprocess.TimeoutExpired:
                return False

    def zero_phase(self, name, count, big, alloccount, peer_path=None):
        """1000 mixed warm-up requests, snapshot, COUNT mixed requests, snapshot."""
        port = self.port_base + 10
        z = f"{name}-zero"
        counts = os.path.join(self.tmp, f"counts-{name}")
        env = {"NEA_ALLOCCOUNT_FILE": counts, "LD_PRELOAD": alloccount}
        if peer_path is None:
            srv = self.start_demo(z, port, env=env)
            if srv is None:
                warn(f"run.py: {z} did not start")
                return False
        else:
            if not self._port_free(port):
                return False
            srv = T.Server([peer_path, "--port", str(port)], os.path.join(self.logs, f"{z}.log"),
                           cpu=SERVER_CPU, env=env, tag=z)
            if not srv.wait_port(port, 10.0):
                warn(f"run.py: {z} did not start ({T.describe_exit(srv.exit_code)})")
                srv.kill()
                return False
            self.srv[z], self.port[z] = srv, port
        raw = self.raw
        if not self._mixed(port, 1000, big, 100, os.path.join(raw, f"zero-{name}-warmup.txt")):
            self.check_alive(z, "the zero-allocation warm-up")
            return False
        if not self._snapshot(name, srv, counts, os.path.join(raw, f"zero-{name}-before.txt")):
            return False
        if not self._mixed(port, count, big, 300, os.path.join(raw, f"zero-{name}-run.txt")):
            self.check_alive(z, "the zero-allocation run")
            return False
        if not self._snapshot(name, srv, counts, os.path.join(raw, f"zero-{name}-after.txt")):
            return False
        self.stop(z)
        with open(os.path.join(raw, f"zero-{name}-run.txt")) as f:
            say(f"   {name}: {f.read().strip()}")
        return True

    def zero(self, tools):
        if tools.alloccount is None:
            say("== zero allocations: alloccount.so not built (NEA_SANITIZE build?), SKIPPED")
            return
        if self.nea:
            say(f"== zero allocations: nea-demo under alloccount.so, 1000 warm-up + "
                f"{ZERO_COUNT} mixed requests")
            if not self.zero_phase("nea-demo", ZERO_COUNT, 100000, tools.alloccount):
                warn(f"!! zero allocations: the nea-demo phase FAILED (see above and "
                     f"{self.raw}/zero-nea-demo-*.txt)")
        else:
            say("== zero allocations: nea-demo missing, SKIPPED")
        # The control's "too big" requests ask 1 MiB, not 100 MB: uvmalloc would
        # really allocate and fill 100 MB each time and the phase would take minutes.
        say(f"== zero allocations control: uvmalloc under alloccount.so, {CONTROL_COUNT} "
            "mixed requests")
        if not self.zero_phase("uvmalloc", CONTROL_COUNT, 1024, tools.alloccount,
                               peer_path=tools.peers["uvmalloc"]):
            warn("!! zero allocations: the uvmalloc control FAILED")

    def env_txt(self):
        def out(cmd, any_rc=False):
            """First line of cmd's output (stdout and stderr), "" on failure."""
            try:
                r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, timeout=10, stdin=subprocess.DEVNULL)
            except (OSError, subprocess.TimeoutExpired):
                return ""
            if r.returncode != 0 and not any_rc:
                return ""
            return (r.stdout.strip().splitlines() or [""])[0]
        cpu = ""
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(": ", 1)[1].strip()
                    break
        h2o = out(["dpkg-query", "-W", "-f=${Version}", "libh2o-dev"]) \
            or out(["pkg-config", "--modversion", "libh2o"])
        demo = (f"{self.nea} {' '.join(self.nea_args)}" if self.nea_status == "ok"
                else self.nea_status)
        lines = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": "test/bench/run.py" + (" --quick" if self.quick else ""),
            "rounds": self.rounds,
            "duration_s": self.dur,
            "pressure_duration_s": self.pressure_dur,
            "nea_demo": demo,
            "nea_commit": out(["git", "-C", REPO, "rev-parse", "--short", "HEAD"]) or "unknown",
            "kernel": os.uname().release,
            "cpu": cpu,
            "wrk": (out(["wrk", "-v"], any_rc=True).split()[1:2] or [""])[0],
            "nginx": out(["nginx", "-v"]).rsplit("/", 1)[-1],
            "libmicrohttpd": out(["pkg-config", "--modversion", "libmicrohttpd"]),
            "libh2o": h2o,
            "libuv": out(["pkg-config", "--modversion", "libuv"]),
        }
        with open(os.path.join(self.raw, "env.txt"), "w") as f:
            for k, v in lines.items():
                f.write(f"{k}={v}\n")

    def run(self):
        for tool in ("wrk", "nginx", "taskset", "cmake"):
            if shutil.which(tool) is None:
                raise SystemExit(f"run.py: {tool} not found (scripts/install-deps.sh bench "
                                 "installs the benchmark tools)")
        if T.NCPU < 2:
            raise SystemExit("run.py: needs 2 CPUs (server on CPU 0, wrk on CPU 1)")
        # Ports inside the kernel's ephemeral range can be taken by wrk's own client
        # sockets (the Connection: close workload opens tens of thousands).
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
        if self.port_base + 30 >= lo and self.port_base <= hi:
            warn(f"run.py: NEA_BENCH_PORT={self.port_base} overlaps the ephemeral port range "
                 f"{lo}-{hi}; pick a lower one")
            return 2

        os.makedirs(self.raw, exist_ok=True)
        os.makedirs(self.logs, exist_ok=True)
        for d in (self.raw, self.logs):
            for n in os.listdir(d):
                os.unlink(os.path.join(d, n))

        say(f"== building the tools (NEA_BUILD_TOOLS=ON) into {self.build}")
        with open(os.path.join(self.logs, "build.log"), "w") as log:
            tools = T.build(self.build, ["nea-tools"], log=log)

        self.start_all(tools)
        self.throughput()
        self.pressure()
        # report.py takes each server's whole-run peak RSS as the largest of the
        # start-up/warm-up peak, the cells' peaks and the pressure peak.
        for s in list(self.srv):
            self.stop(s)
        self.zero(tools)
        self.env_txt()
        return subprocess.run([sys.executable, "-B", os.path.join(HERE, "report.py"),
                               self.out], stdin=subprocess.DEVNULL).returncode

    def cleanup(self):
        T.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)


def main():
    T.name = "run.py"
    ap = argparse.ArgumentParser(prog="run.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("nea_demo", nargs="?", metavar="NEA_DEMO",
                    default=os.path.join(REPO, "build", "examples", "nea-demo"),
                    help="nea-demo binary (default build/examples/nea-demo)")
    ap.add_argument("--quick", action="store_true", help="1 round x 3 s per cell")
    ap.add_argument("--out", default="/tmp/nea-bench-out", help="results directory")
    ap.add_argument("--build", default="/tmp/nea-bench-build",
                    help="CMake build directory for the tools")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(143))
    bench = Bench(args)
    try:
        return bench.run()
    except KeyboardInterrupt:
        return 130
    finally:
        bench.cleanup()


if __name__ == "__main__":
    sys.exit(main())
