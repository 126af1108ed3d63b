"""tls.py - HTTPS: nea-demo against nginx with the same certificate, in one run.

    python3 -B test/bench/tls.py [--nea-demo PATH] [--rounds N] [--seconds S]
                                 [--port P] [--out FILE]

Both servers run one worker pinned to CPU 0, wrk (one thread, 64
connections) pinned to CPU 1, nea-demo with CPU shedding off
(--overload-target-ms 0: nginx has none; a third instance with the default
shedding runs the keep-alive cell too), rounds interleaved (each workload on nea-demo,
then on nginx, round after round); every figure is the median over the
rounds. The certificate is an EC P-256 one made with the openssl command for
the run; both servers speak TLS 1.2 only (BearSSL, which libnea uses, has no
TLS 1.3) and both pick ECDHE-ECDSA-AES128-GCM-SHA256 for wrk.

Workloads (wrk over https):
  keep-alive   GET /hello on 64 keep-alive connections
  pipelined    the same, 8 requests per write (test/bench/pipeline.lua)
  handshakes   GET /hello with Connection: close: every request a new
               connection and a handshake; wrk resumes the session of its
               first connection, so most are abbreviated (both servers keep a
               session cache; nea-demo's /stats after the run says how many)
  full handshakes  openssl s_time -new (one client, no session reuse, no
               request): every connection a full handshake, ECDHE and an
               ECDSA signature on the server
Per cell: requests/s, and the server's CPU time per request (user + system
from /proc/PID/stat over the wrk run, divided by the requests wrk counted).

Memory (after the throughput rounds): RSS growth of each server while N
(default 1000) TLS connections are held idle after one GET /hello each, and
while 200 connections each wait on a response they do not read (nea-demo:
GET /stream/100, nginx: a 100 MiB file), per connection; beside nea-demo's
exact bound (slot_bytes per idle connection, slot_bytes + buffer_bytes per
active one), from its start line. nea-demo runs without --prefault here so
that its RSS moves at all.

Prints a markdown report (and writes it to --out). Ports: the first free
ones from P, P+10 and P+20 (default P 28100; below the ephemeral range).
"""
import argparse
import json
import os
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_port(port, proc, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


RUNNING = []  # every server started, stopped at the end whatever happens


def free_port(port):
    """port, or the next one after it that nothing is bound to."""
    for p in range(port, port + 50):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", p))
                return p
            except OSError:
                continue
    raise SystemExit(f"tls.py: no free port from {port}")


class Server:
    def __init__(self, name, cmd, port, pid_of=None):
        self.name, self.port = name, port
        self.out = tempfile.TemporaryFile()
        self.err = tempfile.TemporaryFile()
        self.p = subprocess.Popen(["taskset", "-c", "0"] + cmd, stdout=self.out,
                                  stderr=self.err, stdin=subprocess.DEVNULL)
        RUNNING.append(self)
        if not wait_port(port, self.p):
            self.err.seek(0)
            raise SystemExit(f"tls.py: {name} did not start: {self.err.read()[-2000:]!r}")
        self.pid = pid_of(self.p.pid) if pid_of else self.p.pid

    def line(self):
        self.out.seek(0)
        return self.out.read().decode(errors="replace").split("\n")[0]

    def stop(self):
        if self.p.poll() is not None:
            return
        self.p.terminate()
        try:
            self.p.wait(15)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(5)


def start_nea(demo, port, crt, key, prefault, shed=False, name="nea-demo"):
    port = free_port(port)
    args = [demo, "--port", str(port), "--tls-cert", crt, "--tls-key", key,
            "--connections", "1200", "--keepalive-timeout-ms", "600000",
            "--write-timeout-ms", "600000"]
    if prefault:
        args.append("--prefault")
    if not shed:
        args += ["--overload-target-ms", "0"]
    return Server(name, args, port)


def start_nginx(d, port, crt, key):
    port = free_port(port)
    big = os.path.join(d, "big")
    if not os.path.exists(big):
        with open(big, "wb") as f:
            f.truncate(100 << 20)
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(f"""daemon off; master_process off; worker_processes 1;
pid {d}/nginx.pid; error_log {d}/error.log warn; worker_rlimit_nofile 4096;
events {{ worker_connections 4096; }}
http {{
    access_log off; keepalive_requests 100000000; keepalive_timeout 600s; tcp_nodelay on;
    send_timeout 600s;
    server {{
        listen 127.0.0.1:{port} ssl backlog=1024;
        ssl_certificate {crt}; ssl_certificate_key {key};
        ssl_protocols TLSv1.2; ssl_prefer_server_ciphers on;
        ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384;
        ssl_session_cache shared:SSL:1m; ssl_session_tickets off;
        location = /hello {{ default_type text/plain; return 200 "Hello, World!"; }}
        location = /big {{ root {d}; }}
    }}
}}
""")
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    return Server("nginx", ["prlimit", "--nofile=4096:4096", exe, "-p", d, "-c",
                            os.path.join(d, "nginx.conf")], port)


def wrk(port, workload, seconds):
    url = f"https://127.0.0.1:{port}/hello"
    cmd = ["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{seconds}s"]
    if workload == "pipelined":
        cmd += ["-s", os.path.join(HERE, "pipeline.lua"), url, "--", "8"]
    elif workload == "handshakes":
        cmd += ["-H", "Connection: close", url]
    else:
        cmd += [url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    m = re.search(r"(\d+) requests in", out)
    errs = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return int(m.group(1)) if m else 0, (errs.group(1) if errs else ""), \
        int(non2xx.group(1)) if non2xx else 0


def s_time(port, seconds):
    """openssl s_time: new connections, full handshakes only (no session
    reuse), for seconds; the connection count."""
    cmd = ["taskset", "-c", "1", "openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new",
           "-time", str(seconds), "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    m = re.search(r"(\d+) connections in [\d.]+s", out)
    return int(m.group(1)) if m else 0, "", 0


def cell(srv, workload, seconds):
    c0, t0 = cpu_seconds(srv.pid), time.monotonic()
    if workload == "full handshakes":
        n, errs, bad = s_time(srv.port, seconds)
    else:
        n, errs, bad = wrk(srv.port, workload, seconds)
    c1, t1 = cpu_seconds(srv.pid), time.monotonic()
    return {"rps": n / (t1 - t0), "cpu_us": (c1 - c0) * 1e6 / max(1, n), "n": n, "errors": errs,
            "non2xx": bad}


def fetch_stats(port):
    """nea-demo's TLS and shedding counters, from GET /stats over TLS."""
    with tls_context().wrap_socket(socket.create_connection(("127.0.0.1", port))) as s:
        s.sendall(b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        body = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
    st = json.loads(body.split(b"\r\n\r\n", 1)[1])
    return {"tls_handshakes": st["tls_handshakes"], "tls_resumed": st["tls_resumed"],
            "tls_failed": {k: v for k, v in st["tls_failed"].items() if v},
            "shed_cpu": st["shed_cpu"], "shed_transitions": st["shed_transitions"]}


def tls_context():
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    c.maximum_version = ssl.TLSVersion.TLSv1_2
    return c


def open_idle(port, n, ctx):
    socks = []
    for i in range(n):
        raw = socket.socket()
        raw.bind((f"127.0.3.{1 + i % 250}", 0))
        raw.connect(("127.0.0.1", port))
        s = ctx.wrap_socket(raw)
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = b""
        while not buf.endswith(b"Hello, World!"):
            buf += s.recv(4096)
        socks.append(s)
    return socks


def open_stalled(port, n, ctx, path):
    socks = []
    for i in range(n):
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.bind((f"127.0.4.{1 + i % 250}", 0))
        raw.connect(("127.0.0.1", port))
        s = ctx.wrap_socket(raw)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        socks.append(s)
    return socks


def per_conn(srv, opener, n):
    """RSS growth of srv per connection while opener(n) connections are held."""
    warm = opener(10)
    time.sleep(0.3)
    before = rss_kib(srv.pid)
    socks = opener(n)
    time.sleep(1.0)
    after = rss_kib(srv.pid)
    for s in warm + socks:
        s.close()
    return round((after - before) * 1024 / n)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nea-demo", default=os.path.join(REPO, "build/examples/nea-demo"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--port", type=int, default=28100)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--out")
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="nea-bench-tls-")
    crt, key = os.path.join(d, "tls.crt"), os.path.join(d, "tls.key")
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "req", "-x509", "-new", "-key", key, "-subj", "/CN=localhost",
                    "-days", "2", "-out", crt], check=True, capture_output=True)
    workloads = ["keep-alive", "pipelined", "handshakes", "full handshakes"]
    results = {(s, w): [] for s in ("nea-demo", "nginx") for w in workloads}
    results[("nea-demo (shedding on)", "keep-alive")] = []
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load0 = os.getloadavg()
    nea = start_nea(args.nea_demo, args.port, crt, key, True)
    ngx = start_nginx(d, args.port + 10, crt, key)
    shedding = start_nea(args.nea_demo, args.port + 20, crt, key, True, shed=True,
                         name="nea-demo (shedding on)")
    nea_line = nea.line()  # stdout's first line: "listening on https://.."
    resumed = {}
    try:
        for srv in (nea, ngx):
            wrk(srv.port, "keep-alive", 1)  # warm-up
        for r in range(args.rounds):
            for w in workloads:
                for srv in (nea, ngx) + ((shedding,) if w == "keep-alive" else ()):
                    c = cell(srv, w, args.seconds)
                    results[(srv.name, w)].append(c)
                    print(f"round {r + 1} {w:10} {srv.name:8} {c['rps']:9.0f} req/s "
                          f"{c['cpu_us']:6.1f} us CPU/req {c['errors']} {c['non2xx']}",
                          file=sys.stderr, flush=True)
        resumed = fetch_stats(nea.port)
        shed_stats = fetch_stats(shedding.port)
    finally:
        nea.stop()
        shedding.stop()
    # memory: nea-demo without --prefault, nginx as it runs
    ctx = tls_context()
    nea = start_nea(args.nea_demo, args.port, crt, key, False)
    info = dict(kv.split("=", 1) for kv in nea.line().split()[3:] if "=" in kv)
    try:
        mem = {"nea_idle": per_conn(nea, lambda n: open_idle(nea.port, n, ctx), args.idle),
               "nea_active": per_conn(nea, lambda n: open_stalled(nea.port, n, ctx,
                                                                  "/stream/100"), 200)}
    finally:
        nea.stop()
    try:
        mem["nginx_idle"] = per_conn(ngx, lambda n: open_idle(ngx.port, n, ctx), args.idle)
        mem["nginx_active"] = per_conn(ngx, lambda n: open_stalled(ngx.port, n, ctx, "/big"), 200)
    finally:
        ngx.stop()
        shutil.rmtree(d, ignore_errors=True)
    load1 = os.getloadavg()

    def med(s, w, k):
        return statistics.median(c[k] for c in results[(s, w)])

    lines = [f"# HTTPS: nea-demo against nginx ({started})", "",
             f"Command: `python3 -B test/bench/tls.py --rounds {args.rounds} --seconds "
             f"{args.seconds} --idle {args.idle}`; {os.cpu_count()}-vCPU VM shared with other "
             f"work (load average {load0[0]:.2f} before, {load1[0]:.2f} after): read the "
             "ratios. Both servers: one worker pinned to CPU 0, TLS 1.2, the same EC P-256 "
             "certificate; wrk 4.1 (1 thread, 64 connections) pinned to CPU 1. Medians of "
             f"{args.rounds} interleaved rounds of {args.seconds} s.", "",
             f"nea-demo's start line: `{nea_line}`", "",
             "| workload | nea-demo req/s | nginx req/s | ratio | nea-demo CPU/req | "
             "nginx CPU/req | ratio |", "|---|---|---|---|---|---|---|"]
    for w in workloads:
        a, b = med("nea-demo", w, "rps"), med("nginx", w, "rps")
        ca, cb = med("nea-demo", w, "cpu_us"), med("nginx", w, "cpu_us")
        lines.append(f"| {w} | {a:,.0f} | {b:,.0f} | {a / b:.2f} | {ca:.1f} us | {cb:.1f} us | "
                     f"{ca / cb:.2f} |")
    a = med("nea-demo (shedding on)", "keep-alive", "rps")
    b = med("nginx", "keep-alive", "rps")
    lines += ["", f"nea-demo above runs with `--overload-target-ms 0` (no CPU shedding; nginx "
              "has none). With its default shedding on, keep-alive: "
              f"{a:,.0f} req/s ({a / b:.2f} of nginx); its counters: {json.dumps(shed_stats)} "
              "(each wrk run opens 64 connections at once: their full handshakes can turn "
              "shedding on and be refused, and the requests on the connections that made it "
              "get 503 for the hold time)."]
    lines += ["", f"nea-demo's /stats after the rounds: {json.dumps(resumed)}", "",
              "Every cell (req/s, CPU us/req, wrk socket errors, non-2xx):", ""]
    for (s, w), cells in results.items():
        lines.append(f"- {s} {w}: " + "; ".join(
            f"{c['rps']:,.0f}, {c['cpu_us']:.1f}, {c['errors'] or 'none'}, {c['non2xx']}"
            for c in cells))
    lines += ["", "Memory per TLS connection (RSS growth while held, bytes per connection; "
              "nea-demo without --prefault):", "",
              "| | nea-demo bound | nea-demo RSS growth | nginx RSS growth |", "|---|---|---|---|",
              f"| idle ({args.idle} connections, one GET each) | {info.get('slot_bytes')} "
              f"(slot, of which TLS state {info.get('tls_state_bytes')}) | {mem['nea_idle']} | "
              f"{mem['nginx_idle']} |",
              f"| active (200 connections not reading a large response) | "
              f"{int(info.get('slot_bytes', 0)) + int(info.get('buffer_bytes', 0))} (slot + "
              f"buffer, of which TLS records {info.get('tls_records_bytes')}) | "
              f"{mem['nea_active']} | {mem['nginx_active']} |"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    try:
        main()
    finally:
        for srv in RUNNING:
            srv.stop()
