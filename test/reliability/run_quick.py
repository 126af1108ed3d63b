"""run_quick.py - every reliability script of test/reliability in --quick mode (CI).

Exits non-zero if any of them reports a broken hard invariant (a good request
not 200, a hog not 500, the server died, a probe failed, slots / arenas / fds
not back to baseline) or does not finish. Timing targets are only reported
(WARN): a shared 2-core machine makes them noisy.

usage: python3 -B test/reliability/run_quick.py [SCRIPT...]   (default: all of them)
       (test/reliability/run_quick.sh is the same, as CI's entry point)
env:   NEA_REL_BUILD  CMake build dir for nea-demo (Release) and loadgen, configured
                      with NEA_BUILD_TOOLS=ON (default /tmp/nea-rel-<uid>)
       NEA_DEMO / NEA_LOADGEN  use these binaries instead of building
       NEA_REL_OUT    where each script's log and JSON line are kept
                      (default $NEA_REL_BUILD/results)
       NEA_REL_PORT_BASE  fixed port range N..N+99 for the demos (default: port 0)
About 3.5 minutes on the 2-core VM, build included (haproxy_cluster needs
HAProxy and ports 20500-20530; without haproxy it reports n/a).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))
import neatools as T  # noqa: E402

# Script -> its --quick wall-clock bound in seconds. Each script bounds itself;
# run_quick kills it (and what it started) 30 s after this, as the backstop.
BOUNDS = {"hog_mix": 120, "fair_share": 60, "overload_sweep": 150, "recovery_pulse": 90, "slow_clients": 120,
          "fd_flood": 60, "ceiling": 90, "soak": 90, "haproxy_cluster": 90,
          "metrics_scrape": 60, "idle_connections": 90, "upgrade": 90, "two_processes": 60,
          "slot_flood": 100, "tls_connections": 90}


def say(msg):
    print(f"=== run_quick: {msg}", flush=True)


def run_one(script, out):
    """Runs SCRIPT.py --quick, tees its stdout into OUT/SCRIPT.log; returns the exit
    code (124 when the backstop timer had to kill it)."""
    bound = BOUNDS.get(script, 120) + 30
    cmd = [sys.executable, "-B", os.path.join(HERE, f"{script}.py"), "--quick"]
    killed = []

    def backstop():
        killed.append(True)
        say(f"{script} ran over {bound} s: killing it")
        try:
            os.killpg(p.pid, signal.SIGKILL)  # its own session: the script and its children
        except OSError:
            pass

    with open(os.path.join(out, f"{script}.log"), "w") as log:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                             start_new_session=True)
        timer = threading.Timer(bound, backstop)
        timer.start()
        try:
            for line in p.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                log.write(line)
            p.wait()
        finally:
            timer.cancel()
    return 124 if killed else p.returncode


def last_json(log_path):
    try:
        with open(log_path) as f:
            lines = [line for line in f if line.startswith('{"test"')]
        return lines[-1] if lines else None
    except OSError:
        return None


def summary(out, scripts):
    say("summary")
    for s in scripts:
        try:
            with open(os.path.join(out, f"{s}.json")) as f:
                d = json.loads(f.read())
        except (OSError, ValueError):
            print(f"  {s:15} no JSON result")
            continue
        bad = [c for c in d["checks"] if c["kind"] == "invariant" and not c["ok"]]
        warn = [c for c in d["checks"] if c["kind"] == "target" and c["ok"] is False]
        print(f"  {s:15} {d['elapsed_s']:6.1f} s  invariants {'ok' if not bad else 'FAILED'}"
              f"  targets warned: {len(warn)}")
        for c in bad:
            print(f"      FAIL {c['check']}: {c['value']} (expect {c['expect']})")
        for c in warn:
            print(f"      warn {c['check']}: {c['value']} (target {c['expect']})")
    sys.stdout.flush()


def main():
    T.name = "run_quick"
    start = time.monotonic()
    scripts = sys.argv[1:] or list(BOUNDS)
    if any(a.startswith("-") for a in scripts):
        print(__doc__)
        return 0 if scripts in (["-h"], ["--help"]) else 2
    for tool in ("taskset", "prlimit", "cmake"):
        if shutil.which(tool) is None:
            print(f"run_quick: {tool} not found (util-linux / cmake)", file=sys.stderr)
            return 1
    build = os.environ.get("NEA_REL_BUILD", f"/tmp/nea-rel-{os.getuid()}")
    out = os.environ.get("NEA_REL_OUT", os.path.join(build, "results"))
    if not os.environ.get("NEA_DEMO") or not os.environ.get("NEA_LOADGEN"):
        say(f"building nea-demo and loadgen (Release, NEA_BUILD_TOOLS=ON) in {build}")
        t = T.build(build, ["nea-demo", "loadgen"])
        os.environ.setdefault("NEA_DEMO", t.demo or "")
        os.environ.setdefault("NEA_LOADGEN", t.loadgen or "")
    os.environ["NEA_REL_BUILD"] = build
    os.makedirs(out, exist_ok=True)

    failed = []
    for s in scripts:
        if not os.path.isfile(os.path.join(HERE, f"{s}.py")) or s not in BOUNDS:
            print(f"run_quick: no reliability script {s}.py", file=sys.stderr)
            failed.append(f"{s}(missing)")
            continue
        say(f"{s} --quick")
        t0 = time.monotonic()
        rc = run_one(s, out)
        line = last_json(os.path.join(out, f"{s}.log"))
        with open(os.path.join(out, f"{s}.json"), "w") as f:
            f.write(line or "")
        say(f"{s} exit {rc} in {time.monotonic() - t0:.0f} s")
        if rc != 0:
            failed.append(f"{s}(exit {rc})")

    summary(out, scripts)
    say(f"{time.monotonic() - start:.0f} s total")
    if failed:
        say(f"FAILED: {' '.join(failed)}")
        return 1
    say("passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
