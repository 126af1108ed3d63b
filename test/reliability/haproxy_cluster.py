"""haproxy_cluster: three nea-demo instances behind HAProxy (python3 test/reliability/haproxy_cluster.py).

Starts HAProxy 2.6 with examples/haproxy/haproxy.cfg (its ports and stats
socket moved into this test's range, plus a second frontend whose backend has
the same three servers with equal, fixed weights: no agent-check) and three
nea-demo instances on loopback, each with --agent-port, --drain-delay-ms and
a capacity set by its arenas: --arenas 8 (7 for ordinary requests, one is
reserved for /stats and /health) and GET /sleep/20 requests, so one instance
serves 7 / 0.02 s = 350 requests/s and the cluster C = 1050/s, whatever the
CPU does. loadgen drives open-loop load through HAProxy; HAProxy's own
counters (retries `wretr`, redispatches `wredis`, server status and weight)
come from its stats socket (`show stat`).

(a) Rolling restart at 0.5 C: each instance in turn gets SIGTERM (it says
    "drain" to the agent at once, serves on for --drain-delay-ms, then drains
    and exits 0) and is started again; the next one goes once HAProxy sees the
    new one UP with a weight. Targets: 0 failed requests at the client, 0
    HAProxy retries and redispatches.
(b) SIGKILL of one instance at 0.5 C: requests it held at that moment
    (arenas in use from its /stats just before), failed requests at the
    client, HAProxy retries, and the time from the kill until HAProxy marks it
    DOWN (it stops sending to it). Targets: failed <= in flight, <= 2 s.
(d) Fleet cold start: every instance stopped (HAProxy sees them DOWN), then
    all three started at once and the load sent as soon as HAProxy sees
    them UP (status only: a weight of 0 counts). Target: 0 failed.
(e), (f) The rolling restart and the cold start again with HAProxy's
    default weight: the example config without its "weight 100" and the
    instances without --agent-weight (the agent then answers no percentage).
    Target: 0 failed (before, every answer below 100% was weight 0 and the
    backend had no server). Both run on a cluster and a HAProxy of their
    own.
(c) One instance overloaded: hogs (GET /sleep/N sent to it directly) take 5
    of its 7 arenas, one by one; after each the agent's answer is read (its
    weight must drop while the instance has not shed a single request). Then
    the same load goes through the agent backend and through the equal-weight
    backend, one after the other with the hogs held: the overloaded
    instance's share of the balanced requests, its 503s and HAProxy's retries
    for each. Targets: its share falls with the agent, fewer retries.

Invariants (fail the script in every mode): no instance crashed, every
SIGTERM exit was 0, every restarted instance came back UP. Targets are
reported met/MISSED (WARN in --quick mode).

Ports: NEA_HAPROXY_PORT_BASE (default 20500): frontends base and base+1,
instances base+10.., agents base+20...
"""
import os
import re
import shutil
import socket
import threading
import time

import common as C
import neatools as T

EXAMPLE = os.path.join(C.REPO, "examples", "haproxy", "haproxy.cfg")
N = 3
ARENAS = 8
USABLE = ARENAS - 1      # one reserved for the exempt routes
SLEEP_MS = 20
CAPACITY = N * USABLE * 1000 / SLEEP_MS   # requests/s of the cluster
DRAIN_DELAY_MS = 1500    # > agent-inter (250 ms) with a wide margin
HOGS = 5
SETTLE_S = 1.2           # a little more than the agent's averaging time (1 s)


def add_args(ap):
    ap.add_argument("--duration", type=float,
                    help="seconds of load per measured run of (b) and (c) (default 10, quick 5)")
    ap.add_argument("--only", default="abcdef",
                    help="scenarios to run, e.g. 'a' or 'ef' (abcdef)")
    ap.add_argument("--drain-delay-ms", type=int, default=1500,
                    help="the instances' --drain-delay-ms (1500; 0 shows a drain the balancer "
                    "learns of only from failed connections)")
    ap.add_argument("--load", type=float, default=0.5,
                    help="offered load as a fraction of the cluster capacity (0.5)")


# --------------------------------------------------------------------------
# HAProxy

class Ports:
    def __init__(self):
        base = int(os.environ.get("NEA_HAPROXY_PORT_BASE", "20500"))
        self.fe_agent = base
        self.fe_equal = base + 1
        self.http = [base + 10 + i for i in range(N)]
        self.agent = [base + 20 + i for i in range(N)]


def haproxy_config(ports, sock, default_weight=False):
    """The example config, its ports and stats socket moved, plus the
    equal-weight frontend and backend; with default_weight, without its
    "weight 100" (HAProxy's default weight 1)."""
    with open(EXAMPLE) as f:
        cfg = f.read()
    if default_weight:
        if " weight 100" not in cfg:
            raise SystemExit(f"haproxy_cluster: {EXAMPLE} has no 'weight 100' to remove")
        cfg = cfg.replace(" weight 100", "")
    cfg = cfg.replace("/tmp/nea-haproxy.sock", sock)
    cfg = cfg.replace("127.0.0.1:8080", f"127.0.0.1:{ports.fe_agent}")
    for i in range(N):
        cfg = cfg.replace(f"127.0.0.1:808{i + 1}", f"127.0.0.1:{ports.http[i]}")
        cfg = cfg.replace(f"agent-port 918{i + 1}", f"agent-port {ports.agent[i]}")
    m = re.search(r"^    default-server (.*)$", cfg, re.M)
    if m is None or "agent-check" not in m.group(1):
        raise SystemExit(f"haproxy_cluster: {EXAMPLE} has no default-server line with agent-check")
    equal = re.sub(r" agent-check agent-inter \S+", "", m.group(1))
    if os.environ.get("NEA_HAPROXY_LOG") == "1":  # one log line per request, in haproxy.out
        cfg = cfg.replace("global\n", "global\n    log stdout format raw local0\n", 1)
        cfg = cfg.replace("defaults\n", "defaults\n    log global\n    option httplog\n", 1)
    cfg += ("\nfrontend nea_equal\n"
            f"    bind 127.0.0.1:{ports.fe_equal}\n"
            "    default_backend nea_equal\n\n"
            "backend nea_equal\n"
            "    balance roundrobin\n"
            "    option httpchk GET /ready\n"
            "    http-check expect status 200\n"
            f"    default-server {equal}\n")
    for i in range(N):
        cfg += f"    server nea{i + 1} 127.0.0.1:{ports.http[i]}\n"
    return cfg


class HAProxy:
    def __init__(self, binary, ports, default_weight=False):
        d = C.tmpdir()
        tag = "-default" if default_weight else ""
        self.sock = os.path.join(d, f"haproxy{tag}.sock")
        self.cfg_path = os.path.join(d, f"haproxy{tag}.cfg")
        with open(self.cfg_path, "w") as f:
            f.write(haproxy_config(ports, self.sock, default_weight))
        self.server = T.Server([binary, "-db", "-f", self.cfg_path],
                               os.path.join(d, f"haproxy{tag}.out"),
                               cpu=C.CLIENT_CPU if C.PIN else None, tag="haproxy")
        if not C.wait_for(lambda: os.path.exists(self.sock) and T.port_open(ports.fe_agent), 10):
            raise SystemExit("haproxy_cluster: haproxy did not start:\n"
                             + self.server.stderr_text())

    def stat(self):
        """`show stat` as {(proxy, server): row dict}."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(3)
            s.connect(self.sock)
            s.sendall(b"show stat\n")
            lines = read_to_eof(s).decode().splitlines()
        head = lines[0].lstrip("# ").split(",")
        out = {}
        for line in lines[1:]:
            if not line:
                continue
            row = dict(zip(head, line.split(",")))
            out[(row["pxname"], row["svname"])] = row
        return out

    def counters(self, backend):
        """Retries and redispatches of backend, and per server the HTTP
        responses it gave and its status and weight."""
        st = self.stat()
        b = st[(backend, "BACKEND")]
        out = {"wretr": int(b["wretr"] or 0), "wredis": int(b["wredis"] or 0), "servers": {}}
        for i in range(N):
            r = st[(backend, f"nea{i + 1}")]
            resp = sum(int(r[k] or 0) for k in ("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx",
                                                  "hrsp_5xx", "hrsp_other"))
            out["servers"][i] = {"resp": resp, "status": r["status"],
                                 "weight": int(r["weight"] or 0)}
            for k in ("econ", "eresp", "wretr", "wredis", "hrsp_5xx"):
                out["servers"][i][k] = int(r[k] or 0)
        return out

    def server_state(self, backend, i):
        r = self.stat()[(backend, f"nea{i + 1}")]
        return r["status"], int(r["weight"] or 0)


def agent_line(port):
    """The agent's answer on port (one line, then the agent closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        return read_to_eof(s).decode().strip()


def read_to_eof(s):
    """Everything s sends until it closes (HAProxy's stats socket and the
    agent both answer once and close)."""
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            return data
        data += b


def weight_of(line):
    m = re.search(r"(\d+)%", line)
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------
# The instances

class Cluster:
    def __init__(self, demo_bin, ports, rep, agent_weight=100):
        self.bin = demo_bin
        self.ports = ports
        self.rep = rep
        self.agent_weight = agent_weight  # None: not given (the agent answers no percentage)
        self.demos = [None] * N
        self.starts = 0
        self.bad_exits = []
        for i in range(N):
            self.start(i)

    def start(self, i):
        self.starts += 1
        weight = [] if self.agent_weight is None else ["--agent-weight", str(self.agent_weight)]
        d = T.Demo(self.bin, ["--arenas", str(ARENAS), "--agent-port", str(self.ports.agent[i]),
                              "--drain-delay-ms", str(DRAIN_DELAY_MS),
                              "--keepalive-timeout-ms", "30000",
                              "--response-timeout-ms", "120000"] + weight,
                   os.path.join(C.tmpdir(), f"nea{i + 1}-{self.starts}.out"),
                   os.path.join(C.tmpdir(), f"nea{i + 1}-{self.starts}.err"),
                   port=self.ports.http[i], cpu=C.SERVER_CPU if C.PIN else None,
                   tag=f"nea{i + 1}")
        if not d.started:
            raise SystemExit(f"haproxy_cluster: nea{i + 1} did not start "
                             f"({T.describe_exit(d.exit_code)}): {d.stderr_text()}")
        self.demos[i] = d
        return d

    def all_alive(self):
        return all(d is not None and d.alive() for d in self.demos)


def wait_up(hap, backend, i, timeout=10.0, weighted=True):
    """Waits until HAProxy has server i UP (with a weight, unless not
    weighted); returns whether it did."""
    def up():
        st, w = hap.server_state(backend, i)
        return st == "UP" and (w > 0 or not weighted)
    return C.wait_for(up, timeout, step=0.05)


def busy(run):
    """How busy the whole machine was during a run (% of all CPUs), this test's
    own processes (loadgen, HAProxy, the instances) included: other work on
    the machine lowers the instances' real capacity below C, and their 503s
    are then the machine's, not the drain's."""
    return None if run.machine_busy is None else round(run.machine_busy)


def client_failed(run):
    return run["sent"] - run["2xx"]


def run_load(lg, port, seconds, rate, on_start=None):
    """loadgen at rate through port for seconds; on_start() runs in a thread
    once loadgen has started. Returns (LoadgenRun, thread result)."""
    result = {}
    th = None
    if on_start is not None:
        def body():
            try:
                result["value"] = on_start()
            except BaseException as e:  # reported by the caller
                result["error"] = e
        th = threading.Thread(target=body, daemon=True)
        th.start()
    run = C.run_loadgen(lg, port, [(rate, seconds)], [(f"/sleep/{SLEEP_MS}", 1)],
                        connections=256, timeout_ms=5000)
    if th is not None:
        th.join(60)
        if "error" in result:
            raise result["error"]
    return run, result.get("value")


# --------------------------------------------------------------------------
# The scenarios

def rolling_restart(cl, hap, lg, rate, rep, label="(a)", key="rolling_restart"):
    ports = cl.ports
    before = hap.counters("nea")
    log = []

    def restarts():
        time.sleep(1.0)
        for i in range(N):
            t0 = time.monotonic()
            code = cl.demos[i].stop(timeout=DRAIN_DELAY_MS / 1000 + 10)
            t_exit = time.monotonic() - t0
            if code != 0:
                cl.bad_exits.append(f"nea{i + 1}: {T.describe_exit(code)}")
            cl.start(i)
            back = wait_up(hap, "nea", i, weighted=False)
            log.append({"instance": i + 1, "exit": code, "exit_s": round(t_exit, 2),
                        "back_up": back, "back_s": round(time.monotonic() - t0, 2)})
            time.sleep(0.5)
        return log

    # Long enough for three restarts (each about the drain delay plus a
    # health-check round) with a margin at the end.
    seconds = N * (DRAIN_DELAY_MS / 1000 + 2.5) + 3
    run, _ = run_load(lg, ports.fe_agent, seconds, rate, restarts)
    after = hap.counters("nea")
    retries = after["wretr"] - before["wretr"]
    redis = after["wredis"] - before["wredis"]
    failed = client_failed(run)
    C.table(f"{label} rolling restart under load", ["instance", "exit", "exit s", "back UP",
                                                    "restart to UP s"],
            [[e["instance"], e["exit"], e["exit_s"], e["back_up"], e["back_s"]] for e in log])
    C.table(f"{label} per instance, as HAProxy saw it",
            ["instance", "responses", "5xx", "conn errors", "resp errors", "retries",
             "redispatches"],
            [[i + 1] + [after["servers"][i][k] - before["servers"][i][k]
                        for k in ("resp", "hrsp_5xx", "econ", "eresp", "wretr", "wredis")]
             for i in range(N)])
    C.table(f"{label} totals", ["offered/s", "seconds", "sent", "2xx", "failed",
                                "haproxy retries", "redispatches", "machine busy %"],
            [[round(rate), round(seconds, 1), run["sent"], run["2xx"], failed, retries, redis,
              busy(run)]])
    rep.figures[key] = {"rate": rate, "seconds": seconds, "sent": run["sent"],
                        "ok": run["2xx"], "failed": failed, "retries": retries,
                        "redispatches": redis, "restarts": log,
                        "machine_busy_pct": busy(run)}
    rep.hard(f"{label} every instance exited 0 on SIGTERM and came back UP",
             not cl.bad_exits and len(log) == N and all(e["back_up"] for e in log),
             "; ".join(cl.bad_exits) or f"{sum(e['back_up'] for e in log)}/{N} back", "all")
    rep.target(f"{label} failed requests at the client", failed == 0, failed, "0")
    rep.target(f"{label} HAProxy retries + redispatches", retries + redis == 0,
               f"{retries} + {redis}", "0")


def cold_start(cl, hap, lg, rate, seconds, rep, label="(d)", key="cold_start"):
    """Every instance stopped, then all started at once; the load begins as
    soon as HAProxy sees them UP, whatever their weight."""
    for i in range(N):
        code = cl.demos[i].stop(timeout=DRAIN_DELAY_MS / 1000 + 10)
        if code != 0:
            cl.bad_exits.append(f"nea{i + 1}: {T.describe_exit(code)}")
    down = C.wait_for(lambda: all(hap.server_state("nea", i)[0].startswith("DOWN")
                                  for i in range(N)), 10)
    t0 = time.monotonic()
    for i in range(N):
        cl.start(i)
    up = all(wait_up(hap, "nea", i, weighted=False) for i in range(N))
    t_up = time.monotonic() - t0
    weights = [hap.server_state("nea", i)[1] for i in range(N)]
    run, _ = run_load(lg, cl.ports.fe_agent, seconds, rate)
    failed = client_failed(run)
    C.table(f"{label} fleet cold start: all three started at once, load from the moment "
            "HAProxy sees them UP",
            ["offered/s", "seconds", "start to UP s", "weights then", "sent", "failed",
             "machine busy %"],
            [[round(rate), seconds, round(t_up, 2), "/".join(str(w) for w in weights),
              run["sent"], failed, busy(run)]])
    rep.figures[key] = {"rate": rate, "seconds": seconds, "up_s": round(t_up, 2),
                        "weights": weights, "sent": run["sent"], "failed": failed,
                        "machine_busy_pct": busy(run)}
    rep.hard(f"{label} all DOWN after the stop, all UP after the start", down and up,
             f"down={down} up={up}", "both")
    rep.target(f"{label} failed requests at the client", failed == 0, failed, "0")


def sigkill(cl, hap, lg, rate, seconds, rep):
    victim = 1
    ports = cl.ports
    before = hap.counters("nea")
    out = {}

    def kill():
        time.sleep(min(2.0, seconds / 3))
        st = cl.demos[victim].stats(tries=3)
        out["inflight"] = max(0, st["arenas_in_use"] - 1) if st else None  # less /stats itself
        t0 = time.monotonic()
        cl.demos[victim].kill()
        seen_down = C.wait_for(lambda: hap.server_state("nea", victim)[0].startswith("DOWN"),
                               10, step=0.01)
        out["down_s"] = time.monotonic() - t0 if seen_down else None
        return out

    run, _ = run_load(lg, ports.fe_agent, seconds, rate, kill)
    after = hap.counters("nea")
    retries = after["wretr"] - before["wretr"]
    redis = after["wredis"] - before["wredis"]
    failed = client_failed(run)
    inflight = out.get("inflight")
    down = out.get("down_s")
    C.table("(b) SIGKILL of one instance under load",
            ["offered/s", "sent", "failed", "in flight at kill", "haproxy retries",
             "redispatches", "kill to DOWN s", "machine busy %"],
            [[round(rate), run["sent"], failed, inflight, retries, redis,
              None if down is None else round(down, 3), busy(run)]])
    rep.figures["sigkill"] = {"rate": rate, "seconds": seconds, "sent": run["sent"],
                              "failed": failed, "inflight": inflight, "retries": retries,
                              "redispatches": redis, "down_s": down,
                              "machine_busy_pct": busy(run)}
    rep.target("(b) failed requests <= in flight at the kill",
               None if inflight is None else failed <= inflight, failed, f"<= {inflight}")
    rep.target("(b) kill to DOWN (stops sending)", down is not None and down <= 2.0,
               "-" if down is None else f"{down:.3f} s", "<= 2 s")
    cl.start(victim)
    rep.hard("(b) the killed instance came back UP", wait_up(hap, "nea", victim),
             "UP" if hap.server_state("nea", victim)[0] == "UP" else "not UP", "UP")


class Hogs:
    """Connections to one instance, each holding an arena with GET /sleep/MS."""

    def __init__(self, port):
        self.port = port
        self.socks = []

    def add(self, ms):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.sendall(f"GET /sleep/{ms} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        self.socks.append(s)

    def finish(self):
        """Waits for every answer; returns how many were 200."""
        ok = 0
        for s in self.socks:
            try:
                s.settimeout(60)
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    ok += 1
            except OSError:
                pass
            s.close()
        self.socks = []
        return ok


def overloaded(cl, hap, lg, rate, seconds, rep):
    target = 0
    ports = cl.ports
    demo = cl.demos[target]
    hogs = Hogs(ports.http[target])
    hold_ms = int((2 * seconds + HOGS * SETTLE_S + 10) * 1000)
    time.sleep(2 * SETTLE_S)  # the load of (b) is gone from the agent's average
    steps = [{"hogs": 0, "agent": agent_line(ports.agent[target]),
              "shed_503": demo.stats()["shed_503"]}]
    for k in range(1, HOGS + 1):
        hogs.add(hold_ms)
        C.wait_for(lambda: (demo.stats() or {}).get("arenas_in_use", 0) >= k + 1, 5)
        time.sleep(SETTLE_S)  # the agent's weight is an average over about a second
        st = demo.stats()
        steps.append({"hogs": k, "agent": agent_line(ports.agent[target]),
                      "shed_503": st["shed_503"]})
    C.table("(c) hogs on nea1, one by one: agent answer before any shed",
            ["hogs", "agent", "shed 503 so far"],
            [[s["hogs"], s["agent"], s["shed_503"]] for s in steps])
    weights = [weight_of(s["agent"]) for s in steps]
    dropped = all(w is not None for w in weights) and weights[-1] < weights[0]
    no_shed = all(s["shed_503"] == steps[0]["shed_503"] for s in steps)
    # Let HAProxy read the lowered weight before the load starts.
    C.wait_for(lambda: hap.server_state("nea", target)[1] < 100, 3)
    rows = []
    res = {}
    for backend, port in (("nea", ports.fe_agent), ("nea_equal", ports.fe_equal)):
        b0 = hap.counters(backend)
        s0 = demo.stats()["shed_503"]
        weight_seen = []

        def sample(backend=backend, weight_seen=weight_seen):
            t_end = time.monotonic() + seconds
            while time.monotonic() < t_end:
                weight_seen.append(hap.server_state(backend, target)[1])
                time.sleep(0.25)

        run, _ = run_load(lg, port, seconds, rate, sample)
        b1 = hap.counters(backend)
        s1 = demo.stats()["shed_503"]
        resp = [b1["servers"][i]["resp"] - b0["servers"][i]["resp"] for i in range(N)]
        share = resp[target] / max(1, sum(resp))
        retries = (b1["wretr"] - b0["wretr"]) + (b1["wredis"] - b0["wredis"])
        mean_w = sum(weight_seen) / len(weight_seen) if weight_seen else None
        res[backend] = {"share": share, "retries": retries, "shed_503": s1 - s0,
                        "failed": client_failed(run), "sent": run["sent"],
                        "weight_mean": mean_w, "responses": resp,
                        "machine_busy_pct": busy(run)}
        rows.append([backend, round(rate), run["sent"], client_failed(run),
                     f"{100 * share:.1f}%", s1 - s0, retries,
                     "-" if mean_w is None else round(mean_w, 1), busy(run)])
    ok = hogs.finish()
    C.table("(c) the same load with nea1's arenas held: agent weights vs equal weights",
            ["backend", "offered/s", "sent", "failed", "nea1 share", "nea1 503s",
             "haproxy retries", "nea1 weight (mean)", "machine busy %"], rows)
    rep.figures["overloaded"] = {"rate": rate, "seconds": seconds, "hogs": HOGS,
                                 "agent_steps": steps, "agent": res["nea"],
                                 "equal": res["nea_equal"], "hogs_ok": ok}
    rep.hard("(c) every hog answered 200", ok == HOGS, f"{ok}/{HOGS}", f"{HOGS}/{HOGS}")
    rep.target("(c) agent weight drops before the instance sheds", dropped and no_shed,
               f"{weights[0]}% -> {weights[-1]}%, shed {steps[-1]['shed_503'] - steps[0]['shed_503']}",
               "lower, 0 shed")
    rep.target("(c) overloaded instance's share falls with the agent",
               res["nea"]["share"] < res["nea_equal"]["share"],
               f"{100 * res['nea']['share']:.1f}% vs {100 * res['nea_equal']['share']:.1f}%",
               "agent < equal")
    rep.target("(c) fewer 503-retries with the agent",
               res["nea"]["retries"] < res["nea_equal"]["retries"]
               or res["nea_equal"]["retries"] == 0 == res["nea"]["retries"],
               f"{res['nea']['retries']} vs {res['nea_equal']['retries']}", "agent < equal")


def default_weight(binary, demo_bin, lg, ports, rate, seconds, rep, only):
    """(e) and (f): HAProxy's default weight, instances without --agent-weight."""
    cl = Cluster(demo_bin, ports, rep, agent_weight=None)
    hap = HAProxy(binary, ports, default_weight=True)
    for i in range(N):
        if not wait_up(hap, "nea", i, weighted=False):
            raise SystemExit(f"haproxy_cluster: HAProxy never saw nea{i + 1} UP")
    C.table("(e, f) HAProxy's default weight: the agent's answers",
            ["instance", "agent", "HAProxy weight"],
            [[i + 1, agent_line(ports.agent[i]), hap.server_state("nea", i)[1]]
             for i in range(N)])
    if "e" in only:
        rolling_restart(cl, hap, lg, rate, rep, "(e) default weight:",
                        "default_weight_rolling_restart")
    if "f" in only:
        cold_start(cl, hap, lg, rate, seconds, rep, "(f) default weight:",
                   "default_weight_cold_start")
    rep.hard("(e, f) no instance crashed", cl.all_alive(), "alive" if cl.all_alive() else "died",
             "alive")
    for d in cl.demos:
        code = d.stop(timeout=DRAIN_DELAY_MS / 1000 + 10)
        if code != 0:
            cl.bad_exits.append(f"{d.tag}: {T.describe_exit(code)}")
    rep.hard("(e, f) every instance exited 0 on SIGTERM", not cl.bad_exits,
             "; ".join(cl.bad_exits) or "0", "0")
    hap.server.stop()


def run(args, rep):
    binary = shutil.which("haproxy")
    if binary is None:
        C.note("haproxy is not installed (scripts/install-deps.sh installs it): skipped")
        rep.target("haproxy installed", None, "no", "yes")
        return
    global DRAIN_DELAY_MS
    DRAIN_DELAY_MS = args.drain_delay_ms
    seconds = args.duration or (5.0 if args.quick else 10.0)
    rate = args.load * CAPACITY
    demo_bin, lg = C.tools()
    ports = Ports()
    for p in [ports.fe_agent, ports.fe_equal] + ports.http + ports.agent:
        if T.port_open(p):
            raise SystemExit(f"haproxy_cluster: port {p} is in use "
                             "(set NEA_HAPROXY_PORT_BASE)")
    if not any(x in args.only for x in "abcd"):
        default_weight(binary, demo_bin, lg, ports, rate, seconds, rep, args.only)
        return
    cl = Cluster(demo_bin, ports, rep)
    hap = HAProxy(binary, ports)
    for i in range(N):
        if not wait_up(hap, "nea", i) or not wait_up(hap, "nea_equal", i):
            raise SystemExit(f"haproxy_cluster: HAProxy never saw nea{i + 1} UP")
    C.note(f"cluster capacity {CAPACITY:.0f}/s (GET /sleep/{SLEEP_MS}, {USABLE} arenas each); "
           f"offering {rate:.0f}/s")
    if "a" in args.only:
        rolling_restart(cl, hap, lg, rate, rep)
    if "b" in args.only:
        sigkill(cl, hap, lg, rate, seconds, rep)
    if "c" in args.only:
        overloaded(cl, hap, lg, rate * 0.8, seconds, rep)
    if "d" in args.only:
        cold_start(cl, hap, lg, rate, seconds, rep)
    rep.hard("no instance crashed", cl.all_alive(), "alive" if cl.all_alive() else "died",
             "alive")
    for d in cl.demos:
        code = d.stop(timeout=DRAIN_DELAY_MS / 1000 + 10)
        if code != 0:
            cl.bad_exits.append(f"{d.tag}: {T.describe_exit(code)}")
    rep.hard("every instance exited 0 on SIGTERM", not cl.bad_exits,
             "; ".join(cl.bad_exits) or "0", "0")
    hap.server.stop()
    if "e" in args.only or "f" in args.only:
        C.wait_for(lambda: not T.port_open(ports.fe_agent), 5)
        default_weight(binary, demo_bin, lg, ports, rate, seconds, rep, args.only)


if __name__ == "__main__":
    raise SystemExit(C.main("haproxy_cluster", __doc__.split("\n\n")[0], run, 150, 240,
                            add_args))
