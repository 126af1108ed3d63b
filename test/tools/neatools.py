"""neatools.py - the one place libnea's benchmark and reliability scripts get
their servers from (python3 stdlib only).

It owns:
  * building: `build(DIR, targets)` configures DIR with -DNEA_BUILD_TOOLS=ON
    (Release, tests off) and builds the named targets; `Tools(DIR)` names the
    results: nea-demo, loadgen, the bench peers, alloccount.so;
  * starting a server pinned to a CPU with taskset (optionally under prlimit
    and with extra environment), waiting for its port or its first line;
  * nea-demo's `listening on http://HOST:PORT reserved=... arenas=...
    arena_size=... connections=...` line (`parse_listening`);
  * /proc/PID readings (status fields such as VmHWM / VmRSS, CPU time, fds,
    VmHWM reset) and GET /stats;
  * stopping: SIGTERM, a bounded wait, then SIGKILL; `cleanup()` kills every
    process started here that is still running.

test/bench/run.py and test/reliability/common.py import it; scripts there
put this directory on sys.path first.
"""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
NCPU = os.cpu_count() or 1
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The peer servers test/tools/CMakeLists.txt can build, in report order.
PEERS = ("mhd", "h2o", "uvmalloc")

_started = []  # every Server started here, for cleanup()
name = "neatools"  # prefix of messages and errors; scripts set their own


def note(msg):
    """Progress message on stderr (stdout is left to tables and results)."""
    print(f"[{name} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def fail(msg):
    raise SystemExit(f"{name}: {msg}")


# --------------------------------------------------------------------------
# Building

def _run_logged(cmd, what, timeout, log):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    if log is not None:
        log.write(f"$ {' '.join(cmd)}\n{r.stdout}")
        log.flush()
    if r.returncode != 0:
        sys.stderr.write(r.stdout)
        fail(f"{what} failed (exit {r.returncode})")


class Tools:
    """Paths of what a NEA_BUILD_TOOLS build directory holds. A tool that was
    not built (an optional peer whose library is missing) is None."""

    def __init__(self, build_dir):
        self.build_dir = os.path.abspath(build_dir)
        self.tools_dir = os.path.join(self.build_dir, "tools")
        self.demo = self._exe(os.path.join(self.build_dir, "examples", "nea-demo"))
        self.loadgen = self._exe(os.path.join(self.tools_dir, "loadgen"))
        self.peers = {p: self._exe(os.path.join(self.tools_dir, p)) for p in PEERS}
        so = os.path.join(self.tools_dir, "alloccount.so")
        self.alloccount = so if os.path.isfile(so) else None

    @staticmethod
    def _exe(path):
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


def build(build_dir, targets=("nea-demo", "nea-tools"), build_type="Release", log=None,
          jobs=None):
    """Configures build_dir (-DNEA_BUILD_TOOLS=ON, tests off) and builds the
    targets; returns Tools(build_dir). log: an open text file for cmake's
    output (printed on stderr only when a step fails)."""
    _run_logged(["cmake", "-S", REPO, "-B", build_dir, f"-DCMAKE_BUILD_TYPE={build_type}",
                 "-DNEA_BUILD_TOOLS=ON", "-DNEA_BUILD_TESTS=OFF"],
                f"cmake configure of {build_dir}", 300, log)
    _run_logged(["cmake", "--build", build_dir, "--parallel", str(jobs or NCPU), "--target"]
                + list(targets), f"cmake build of {' '.join(targets)}", 900, log)
    return Tools(build_dir)


# --------------------------------------------------------------------------
# /proc readings

def proc_status(pid):
    """The kB fields of /proc/PID/status (VmRSS, VmHWM, RssAnon, ...), in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            v = v.split()
            if len(v) == 2 and v[1] == "kB":
                out[k] = int(v[0])
    return out


def reset_hwm(pid):
    """Restarts VmHWM at the current RSS (echo 5 > clear_refs, Linux >= 4.0)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_ticks(pid):
    """utime + stime of the whole process (all threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rpartition(")")[2].split()
    return int(rest[11]) + int(rest[12])


def cpu_seconds(pid):
    return cpu_ticks(pid) / CLK_TCK


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


# --------------------------------------------------------------------------
# HTTP

def port_open(port, host="127.0.0.1", timeout=0.5):
    """True when something accepts connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_get(port, path, timeout=3.0, tries=1, retry_sleep=0.05, host="127.0.0.1"):
    """(status, body bytes) of GET path on a new connection; retried on 503 or a
    connection error, at most `tries` times. (None, error text) if all failed."""
    last = (None, "not tried")
    for i in range(tries):
        try:
            c = http.client.HTTPConnection(host, port, timeout=timeout)
            c.request("GET", path, headers={"Connection": "close"})
            r = c.getresponse()
            body = r.read()
            c.close()
            if r.status != 503 or i == tries - 1:
                return r.status, body
            last = (r.status, body)
        except (OSError, http.client.HTTPException) as e:
            last = (None, str(e))
        time.sleep(retry_sleep)
    return last


def http_get_json(port, path, tries=20, host="127.0.0.1"):
    st, body = http_get(port, path, tries=tries, host=host)
    if st != 200:
        return None
    return json.loads(body)


def fetch_stats(port, tries=20, host="127.0.0.1"):
    """nea-demo's GET /stats as a dict (retried on 503 / refusal), or None."""
    return http_get_json(port, "/stats", tries=tries, host=host)


# --------------------------------------------------------------------------
# Servers

def describe_exit(code):
    """'exited with status N' or 'killed by SIGNAME' for a Popen returncode."""
    if code is None:
        return "running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


class Server:
    """A server process. The command line is
    [taskset -c CPU] [prlimit --nofile/--data] [env VAR=VALUE...] CMD...:
    each wrapper execs the next, so pid is the server's own. stdout goes to
    out_path, stderr to err_path (the same file when err_path is None)."""

    def __init__(self, cmd, out_path, err_path=None, cpu=None, nofile=None, data=None,
                 env=None, tag=None, cwd=REPO):
        self.tag = tag or os.path.basename(cmd[0])
        self.out_path = out_path
        self.err_path = err_path or out_path
        full = []
        if cpu is not None:
            full += ["taskset", "-c", str(cpu)]
        if nofile is not None or data is not None:
            full += ["prlimit"]
            if nofile is not None:
                full += [f"--nofile={nofile}:{nofile}"]
            if data is not None:
                full += [f"--data={data}:{data}"]
        if env:
            full += ["env"] + [f"{k}={v}" for k, v in env.items()]
        self.cmd = full + list(cmd)
        with open(self.out_path, "w") as out:
            if self.err_path == self.out_path:
                self.p = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, cwd=cwd)
            else:
                with open(self.err_path, "w") as err:
                    self.p = subprocess.Popen(self.cmd, stdout=out, stderr=err,
                                              stdin=subprocess.DEVNULL, cwd=cwd)
        _started.append(self)
        self.pid = self.p.pid
        self.exit_code = None

    def alive(self):
        return self.p.poll() is None

    def wait_port(self, port, timeout=10.0):
        """Waits (bounded) until port accepts; False if the process died or time ran out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                self.exit_code = self.p.returncode
                return False
            if port_open(port, timeout=0.2):
                return True
            time.sleep(0.05)
        return False

    def first_line(self, prefix, timeout):
        """Waits (bounded) for the first stdout line to be complete and start
        with prefix; returns it, or None if the process exited or time ran out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.out_path, errors="replace") as f:
                line = f.readline()
            if line.startswith(prefix) and line.endswith("\n"):
                return line
            if not self.alive():
                self.exit_code = self.p.returncode
                return None
            time.sleep(0.005)
        return None

    def stderr_text(self):
        with open(self.err_path, errors="replace") as f:
            return f.read()

    def stderr_count(self, needle):
        """How many stderr lines contain needle (log lines such as 'arena exhausted')."""
        with open(self.err_path, errors="replace") as f:
            return sum(needle in line for line in f)

    def status(self):
        return proc_status(self.pid)

    def cpu(self):
        return cpu_seconds(self.pid)

    def ticks(self):
        return cpu_ticks(self.pid)

    def fds(self):
        return fd_count(self.pid)

    def reset_hwm(self):
        return reset_hwm(self.pid)

    def stop(self, timeout=15.0):
        """SIGTERM (nea-demo drains gracefully), a bounded wait, then SIGKILL.
        Returns the exit code (negative: the signal)."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.exit_code = self.p.returncode
        return self.exit_code

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.exit_code = self.p.returncode


def parse_listening(line):
    """nea-demo's first line, `listening on http://HOST:PORT reserved=BYTES
    workers=N arenas=N arena_size=BYTES connections=N` (arenas and connections
    per worker, reserved the total), as a dict: host, port and every
    key=value (integers where they are numbers)."""
    words = line.split()
    if words[:2] != ["listening", "on"] or len(words) < 3:
        raise ValueError(f"not a listening line: {line!r}")
    hostport = words[2].split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    out = {"host": host, "port": int(port)}
    for w in words[3:]:
        k, sep, v = w.partition("=")
        if sep:
            out[k] = int(v) if v.isdigit() else v
    return out


class Demo(Server):
    """nea-demo started with --host HOST --port PORT ARGS, ready once its
    `listening on` line is out (port 0: the kernel's pick, read from the
    line). started is False when it exited first (exit_code says how).
    status0 / fds0: /proc status fields and open fds right after start-up."""

    def __init__(self, binary, args, out_path, err_path=None, host="127.0.0.1", port=0,
                 cpu=None, nofile=None, data=None, env=None, tag="nea-demo",
                 start_timeout=15.0):
        self.args = list(args)
        super().__init__([binary, "--host", host, "--port", str(port)] + self.args, out_path,
                         err_path, cpu=cpu, nofile=nofile, data=data, env=env, tag=tag)
        self.line = self.first_line("listening on ", start_timeout)
        self.port = None
        if self.line is None and self.alive():
            self.kill()
            fail(f"{tag} printed no 'listening on' line within {start_timeout} s")
        self.started = self.line is not None
        if self.started:
            info = parse_listening(self.line)
            self.info = info
            self.host = info["host"]
            self.port = info["port"]
            self.reserved = info.get("reserved")
            self.arenas = info.get("arenas")
            self.arena_size = info.get("arena_size")
            self.connections = info.get("connections")
            # Baselines right after start-up (the scripts compare against them).
            self.status0 = proc_status(self.pid)
            self.fds0 = fd_count(self.pid)

    def stats(self, tries=20):
        """GET /stats on a new connection (retried on 503 / refusal, bounded)."""
        return fetch_stats(self.port, tries=tries)


def cleanup():
    """SIGKILL every server started here that still runs."""
    for s in _started:
        try:
            if s.p.poll() is None:
                os.kill(s.pid, signal.SIGKILL)
                s.p.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            pass
