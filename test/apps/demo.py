#!/usr/bin/env python3
"""Server-sent events, per-route response timeouts, JSON error bodies and the
streamed metrics scrape (docs/applications.md) on nea-demo, with real clients:
curl -N and python3's http.client for the event stream, curl and promtool for
the scrape.

nea-demo runs with --response-timeout-ms 50 (a tight default), a 32 KiB arena
and --json-errors. GET /events/N writes an event every 100 ms: its route's own
response timeout (1000 ms) lets it run where /sleep/200 gets the 504.

    test/apps/demo.py BUILD_DIR

Exit 0 when every check passed, 1 otherwise, 77 (skipped) when nea-demo, curl
or promtool is missing.
"""
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time

failures = []


def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + ("" if ok else ": " + detail))
    if not ok:
        failures.append(what)


def start_demo(demo):
    proc = subprocess.Popen(
        [demo, "--port", "0", "--response-timeout-ms", "50", "--arena-size", "32k",
         "--json-errors"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    line = proc.stdout.readline() if ready else ""
    m = re.match(r"listening on http://[^:]+:(\d+) ", line)
    if m is None:
        proc.kill()
        raise SystemExit("demo.py: nea-demo did not start: " + line + proc.stderr.read())
    return proc, int(m.group(1))


def sse_with_curl(port):
    """curl -N gets each event as it is written, 100 ms apart."""
    p = subprocess.Popen(["curl", "-sN", "-D", "-", "--max-time", "10",
                          "http://127.0.0.1:%d/events/5" % port],
                         stdout=subprocess.PIPE, text=True)
    head, ids, stamps = [], [], []
    in_head = True
    for line in p.stdout:
        if in_head:
            if line.strip() == "":
                in_head = False
            else:
                head.append(line.strip().lower())
            continue
        if line.startswith("id: "):
            ids.append(int(line[4:]))
            stamps.append(time.monotonic())
    rc = p.wait()
    check("curl -N: exit 0 (the chunked stream ended cleanly)", rc == 0, str(rc))
    check("curl -N: text/event-stream, chunked",
          "content-type: text/event-stream" in head and "transfer-encoding: chunked" in head,
          repr(head))
    check("curl -N: events 1..5 in order", ids == [1, 2, 3, 4, 5], repr(ids))
    if len(stamps) == 5:
        spread = stamps[-1] - stamps[0]
        check("curl -N: events arrive as written (4 gaps of ~100 ms)", spread >= 0.35,
              "%.3f s" % spread)


def read_events(resp):
    """(id, data) of each event until the stream ends."""
    events, cur = [], {}
    while True:
        line = resp.readline()
        if not line:
            return events
        line = line.decode().rstrip("\n")
        if line == "":
            events.append((int(cur.get("id", -1)), cur.get("data")))
            cur = {}
        else:
            k, _, v = line.partition(": ")
            cur[k] = v


def sse_with_http_client(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/events/4", headers={"Last-Event-ID": "2"})
    r = c.getresponse()
    check("http.client: 200 text/event-stream",
          r.status == 200 and r.getheader("Content-Type") == "text/event-stream",
          "%d %s" % (r.status, r.getheader("Content-Type")))
    check("http.client: chunked", r.chunked)
    check("http.client: Cache-Control no-cache", r.getheader("Cache-Control") == "no-cache")
    ev = read_events(r)
    check("http.client: Last-Event-ID 2 resumes at 3",
          ev == [(3, "tick 3 of 4"), (4, "tick 4 of 4")], repr(ev))
    # The framing was right: the same connection serves the next request.
    c.request("GET", "/hello")
    r = c.getresponse()
    check("http.client: keep-alive after the stream", r.status == 200 and r.read() == b"Hello, World!")
    c.request("HEAD", "/events/3")
    r = c.getresponse()
    check("http.client: HEAD gets the head only", r.status == 200 and r.read() == b"")
    c.request("GET", "/events/many")
    r = c.getresponse()
    check("http.client: /events/many is 400", r.status == 400, str(r.status))
    r.read()
    c.close()


def scrape(port):
    return subprocess.run(["curl", "-s", "--max-time", "10", "http://127.0.0.1:%d/metrics" % port],
                          capture_output=True, check=True).stdout


def cancelled_events(text):
    m = re.search(rb'nea_route_requests_total\{route="/events/",method="GET",'
                  rb'outcome="cancelled"\} (\d+)', text)
    return int(m.group(1)) if m else 0


def client_leaves(port):
    """A client that leaves mid-stream cancels the request; its arena returns."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/events/1000")
    r = c.getresponse()
    first = r.readline()
    c.sock.shutdown(socket.SHUT_RDWR)  # the response still holds the socket: shut it for real
    r.close()
    c.close()
    check("a leaving client got its first event", first == b"id: 1\n", repr(first))
    end = time.monotonic() + 3
    while time.monotonic() < end and cancelled_events(scrape(port)) < 1:
        time.sleep(0.05)
    check("the left stream is counted cancelled", cancelled_events(scrape(port)) == 1)
    stats = json.loads(subprocess.run(["curl", "-s", "http://127.0.0.1:%d/stats" % port],
                                      capture_output=True, check=True).stdout)
    check("no arena held but /stats's own", stats["arenas_in_use"] == 1, repr(stats["arenas_in_use"]))


def timeouts_and_errors(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/sleep/200")
    r = c.getresponse()
    body = r.read()
    check("/sleep/200 under the 50 ms default: 504 with the JSON body",
          r.status == 504 and r.getheader("Content-Type") == "application/json"
          and json.loads(body) == {"error": "timeout"}, "%d %r" % (r.status, body))
    c.request("GET", "/nope")
    r = c.getresponse()
    body = r.read()
    check("404 with the JSON body", r.status == 404 and json.loads(body) == {"error": "not found"},
          "%d %r" % (r.status, body))
    c.request("GET", "/hello")
    r = c.getresponse()
    check("the connection stays open after a 404", r.status == 200 and r.read() == b"Hello, World!")
    c.request("POST", "/svg", body=b"x" * 40000)
    r = c.getresponse()
    body = r.read()
    check("413 with the JSON body, and the connection closes",
          r.status == 413 and json.loads(body) == {"error": "too large"}
          and r.getheader("Connection") == "close", "%d %r" % (r.status, body))
    c.close()


def metrics_larger_than_the_arena(port):
    for path in ["/hello", "/alloc/1", "/stream/1", "/sleep/1", "/spin/1", "/health", "/ready",
                 "/static", "/stats", "/events/1"]:
        subprocess.run(["curl", "-s", "-o", "/dev/null", "http://127.0.0.1:%d%s" % (port, path)],
                       check=True)
    subprocess.run(["curl", "-s", "-o", "/dev/null", "--data-binary", "1, 2\n",
                    "http://127.0.0.1:%d/svg" % port], check=True)
    text = scrape(port)
    routes = set(re.findall(rb'nea_route_requests_total\{route="([^"]*)"', text))
    check("the scrape has 8+ routes", len(routes) >= 9, repr(sorted(routes)))
    check("the text is larger than the 32 KiB arena", len(text) > 32768, str(len(text)))
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True)
    check("promtool check metrics accepts it", p.returncode == 0, p.stdout.decode() + p.stderr.decode())
    total = re.search(rb'nea_route_arena_peak_bytes_sum\{route="/metrics",method="GET"\} (\d+)', text)
    count = re.search(rb'nea_route_arena_peak_bytes_count\{route="/metrics",method="GET"\} (\d+)',
                      text)
    mean = int(total.group(1)) / int(count.group(1)) if total and count else None
    check("a scrape's arena peak is under 16 KiB", mean is not None and mean < 16384, repr(mean))


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    demo = os.path.join(build, "examples", "nea-demo")
    for need in ("curl", "promtool"):
        if shutil.which(need) is None:
            print("demo.py: %s is missing; skipped" % need)
            return 77
    if not os.access(demo, os.X_OK):
        print("demo.py: %s is missing; skipped" % demo)
        return 77
    proc, port = start_demo(demo)
    try:
        sse_with_curl(port)
        sse_with_http_client(port)
        timeouts_and_errors(port)
        client_leaves(port)
        metrics_larger_than_the_arena(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = None
    check("nea-demo drains and exits 0 on SIGTERM", rc == 0, repr(rc))
    if failures:
        print("demo.py: %d check(s) failed" % len(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
