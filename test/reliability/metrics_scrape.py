"""metrics_scrape: the demo's GET /metrics under saturation
(python3 test/reliability/metrics_scrape.py [--quick]).

nea-demo (--arenas 4 --reserved-arenas 1 --queue-timeout-ms 0
--access-log) has its three ordinary arenas held by GET /sleep/ requests;
then GET /hello must be refused 503 while GET /metrics is answered 200 from
the reserved arena, with text that `promtool check metrics` accepts and
that counts the refusal in route="/hello" (outcome="shed"). After the
sleepers finish, the access log (stdout) has one line per request, and the
503 was logged (rate-limited) on stderr.
"""
import shutil
import socket
import subprocess

import common as C


def held_sleep(port, ms):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET /sleep/{ms} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    return s


def series(text, prefix):
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return None


def run(args, rep):
    demo_bin, _ = C.tools()
    demo = C.Demo(demo_bin, ["--arenas", "4", "--reserved-arenas", "1",
                             "--queue-timeout-ms", "0", "--access-log"])
    if not demo.started:
        raise SystemExit(f"metrics_scrape: demo failed to start (exit {demo.exit_code})")
    port = demo.port
    held = [held_sleep(port, 3000) for _ in range(3)]
    busy = C.wait_for(lambda: (demo.stats() or {}).get("arenas_in_use", 0) >= 3, 5)
    rep.hard("three sleepers hold the ordinary arenas", busy, busy, True)
    st, _ = C.T.http_get(port, "/hello")
    rep.hard("GET /hello while saturated", st == 503, st, 503)
    st, body = C.T.http_get(port, "/metrics")
    rep.hard("GET /metrics while saturated", st == 200, st, 200)
    text = body.decode() if st == 200 else ""
    shed = series(text, 'nea_route_requests_total{route="/hello",method="GET",outcome="shed"}')
    rep.hard("the 503 counted for route=\"/hello\"", shed == 1, shed, 1)
    if shutil.which("promtool"):
        p = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True,
                           timeout=30)
        rep.hard("promtool check metrics", p.returncode == 0,
                 p.returncode if p.returncode == 0 else p.stdout.decode() + p.stderr.decode(), 0)
    else:
        rep.hard("promtool installed (Debian prometheus)", False, "missing", "present")
    for s in held:
        s.settimeout(10)
        got = s.recv(64)
        rep.hard("sleeper answered", got.startswith(b"HTTP/1.1 200"), got[:12].decode(errors="replace"),
                 "HTTP/1.1 200")
        s.close()
    rc = demo.stop()
    rep.hard("demo exits 0 after SIGTERM", rc == 0, rc, 0)
    with open(demo.out_path) as f:
        log = f.read()
    rep.hard("access log: a line per sleeper", log.count('"GET /sleep/3000" 200') == 3,
             log.count('"GET /sleep/3000" 200'), 3)
    rep.hard("access log: the shed /hello", '"GET /hello" 503' in log and "outcome=shed" in log,
             '"GET /hello" 503' in log, True)
    rep.hard("503 logged on stderr", demo.stderr_count("503 for GET /hello") == 1,
             demo.stderr_count("503 for GET /hello"), 1)


if __name__ == "__main__":
    raise SystemExit(C.main("metrics_scrape", __doc__, run, 60, 60))
