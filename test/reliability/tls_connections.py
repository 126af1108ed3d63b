"""tls_connections: open HTTPS connections inside the printed bound
(python3 test/reliability/tls_connections.py [--quick] [--connections N]
[--peer nginx]).

nea-demo runs over TLS (an EC P-256 certificate made with the openssl
command) with --prefault, --connections 1200 and a keep-alive timeout longer
than the run. N TLS connections (python3 ssl, TLS 1.2; default 1000, 200 in
--quick), from source addresses spread over 127.0.2.0/24, each make a full
handshake, send GET /hello once and stay open, idle. Then: how many are still
open, 100 of them served again, the server's /stats over TLS (connections
open, connection buffers in use: an idle TLS connection holds none), and its
VmHWM against the reservation it printed (--prefault: the whole bound is
resident from the start, so what grows is what lives outside it).

The same connections are then opened against a second nea-demo without
--prefault, where the resident memory grows as the slots are touched: its RSS
growth per connection is set beside the bound's figures (slot_bytes per idle
connection, slot_bytes + buffer_bytes per active one). With --peer nginx,
nginx (one worker, the same certificate, TLS 1.2, session cache off) holds
the same connections and its worker's RSS growth per idle TLS connection is
reported too.

Then a new certificate and key are written to the same files and the demo
gets SIGHUP: a new connection must be served the new certificate.

Hard invariants: every connection served at first and still open after,
the 100 served again, no connection buffer held by the idle connections,
VmHWM <= reserved + 2 MiB, SIGHUP reloading the certificate, the process
alive and exit 0 after SIGTERM.
Target (WARN in --quick): the TLS state is at most 1 KiB beyond a plain
idle connection (it is not: BearSSL's context is 4,208 bytes; reported).
"""
import hashlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import common as C

REQ = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"


def add_args(ap):
    ap.add_argument("--connections", type=int, default=None,
                    help="TLS connections held (1000; 200 with --quick)")
    ap.add_argument("--peer", choices=["nginx"], help="also hold them against nginx")


def make_cert(d):
    key, crt = os.path.join(d, "tls.key"), os.path.join(d, "tls.crt")
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out",
                    key], check=True, capture_output=True)
    subprocess.run(["openssl", "req", "-x509", "-new", "-key", key, "-subj", "/CN=localhost",
                    "-days", "2", "-out", crt], check=True, capture_output=True)
    return crt, key


def fingerprint_of(crt):
    der = subprocess.run(["openssl", "x509", "-in", crt, "-outform", "DER"], check=True,
                         capture_output=True).stdout
    return hashlib.sha256(der).hexdigest()


def served_fingerprint(port, ctx):
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5)) as s:
        return hashlib.sha256(s.getpeercert(True)).hexdigest()


def reload_on_sighup(demo, crt, key, ctx):
    """A new certificate and key in the same files, SIGHUP: new connections
    get the new one. Returns (before, after, expected) fingerprints."""
    before = served_fingerprint(demo.port, ctx)
    os.rename(crt, crt + ".old")
    os.rename(key, key + ".old")
    make_cert(os.path.dirname(crt))
    want = fingerprint_of(crt)
    os.kill(demo.pid, signal.SIGHUP)
    C.wait_for(lambda: "TLS certificate reloaded" in demo.stderr_text(), 5.0)
    return before, served_fingerprint(demo.port, ctx), want


def context():
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    c.minimum_version = c.maximum_version = ssl.TLSVersion.TLSv1_2
    return c


def read_response(s, timeout=5.0):
    """One response with a Content-Length body; (status, body) or (None, b'')."""
    s.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            return None, b""
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    n = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":")[1])
    while len(rest) < n:
        d = s.recv(65536)
        if not d:
            return None, b""
        rest += d
    return int(head[9:12]), rest[:n]


def open_tls(port, n, ctx):
    """n TLS connections, each a full handshake and one GET /hello; returns
    (sockets, how many got 200)."""
    socks, ok = [], 0
    for i in range(n):
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.bind((f"127.0.2.{1 + i % 250}", 0))
        try:
            raw.connect(("127.0.0.1", port))
            s = ctx.wrap_socket(raw)
            s.sendall(REQ)
            ok += read_response(s)[0] == 200
        except OSError:
            raw.close()
            continue
        socks.append(s)
    return socks, ok


def still_open(socks):
    """Connections on which nothing arrived (no close_notify, EOF or reset)."""
    n = 0
    for s in socks:
        s.setblocking(False)
        try:
            n += len(s.recv(1)) > 0  # data would be odd, but the connection is open
        except ssl.SSLWantReadError:
            n += 1
        except (OSError, ssl.SSLError):
            pass
        s.setblocking(True)
    return n


def serve_again(socks, k):
    ok = 0
    for s in socks[:k]:
        try:
            s.sendall(REQ)
            ok += read_response(s)[0] == 200
        except OSError:
            pass
    return ok


def tls_stats(port, ctx):
    import json
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5)) as s:
        s.sendall(b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        st, body = read_response(s)
    return json.loads(body) if st == 200 else None


def rss_kib(pid):
    return C.proc_status(pid)["VmRSS"]


def start_demo(demo_bin, crt, key, prefault, tag):
    args = ["--connections", "1200", "--tls-cert", crt, "--tls-key", key,
            "--keepalive-timeout-ms", "600000", "--tls-handshake-ms", "10000"]
    if prefault:
        args.append("--prefault")
    demo = C.Demo(demo_bin, args, nofile=4096, tag=tag)
    if not demo.started:
        raise SystemExit(f"tls_connections: demo did not start (exit {demo.exit_code})")
    return demo


def growth_per_conn(pid, port, n, ctx):
    """RSS growth of pid while n TLS connections open (after a warm-up of 10),
    in bytes per connection, and the sockets (to close)."""
    warm, _ = open_tls(port, 10, ctx)
    before = rss_kib(pid)
    socks, ok = open_tls(port, n, ctx)
    time.sleep(0.5)
    after = rss_kib(pid)
    return round((after - before) * 1024 / max(1, n)), ok, warm + socks


def nginx_peer(n, crt, key, ctx):
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                    else None)
    if exe is None:
        return None
    d = tempfile.mkdtemp(prefix="nea-tls-nginx-")
    port = 18000 + os.getpid() % 1000
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(f"""worker_processes 1; daemon off; pid {d}/nginx.pid;
error_log {d}/error.log; worker_rlimit_nofile 4096;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_timeout 600s; keepalive_requests 100000;
  server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {crt}; ssl_certificate_key {key};
    ssl_protocols TLSv1.2; ssl_session_cache off; ssl_session_tickets off;
    location /hello {{ return 200 "Hello, World!"; }} }} }}
""")
    p = subprocess.Popen(["prlimit", "--nofile=4096:4096", exe, "-p", d, "-c",
                          os.path.join(d, "nginx.conf")], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        C.wait_for(lambda: C.T.port_open(port), 5.0)
        workers = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True,
                                 text=True).stdout.split()
        per, ok, socks = growth_per_conn(int(workers[0]), port, n, ctx)
        for s in socks:
            s.close()
        return {"nginx_ok": ok, "nginx_bytes_per_idle_tls": per}
    finally:
        p.terminate()
        p.wait(timeout=10)
        shutil.rmtree(d, ignore_errors=True)


def run(args, rep):
    n = args.connections or (200 if args.quick else 1000)
    C.raise_nofile(8192)
    demo_bin, _ = C.tools()
    crt, key = make_cert(C.tmpdir())
    ctx = context()

    demo = start_demo(demo_bin, crt, key, True, "demo")
    info = demo.info
    slot, buf = info.get("slot_bytes"), info.get("buffer_bytes")
    state, records = info.get("tls_state_bytes"), info.get("tls_records_bytes")
    C.note(f"demo pid {demo.pid} port {demo.port} reserved {demo.reserved} slot {slot} B "
           f"buffer {buf} B (TLS state {state} B, records {records} B); opening {n}")
    t0 = time.monotonic()
    socks, first_ok = open_tls(demo.port, n, ctx)
    open_s = time.monotonic() - t0
    time.sleep(0.5)
    open_after = still_open(socks)
    st = tls_stats(demo.port, ctx)
    again = serve_again(socks, min(100, n))
    alive = demo.alive()
    hwm_kib = demo.status()["VmHWM"] if alive else None
    for s in socks:
        s.close()
    fp_before, fp_after, fp_want = reload_on_sighup(demo, crt, key, ctx)
    exit_code = demo.stop()

    plain = start_demo(demo_bin, crt, key, False, "demo-noprefault")
    per_idle, plain_ok, more = growth_per_conn(plain.pid, plain.port, n, ctx)
    for s in more:
        s.close()
    plain_exit = plain.stop()

    peer = nginx_peer(n, crt, key, ctx) if args.peer == "nginx" else None
    limit_kib = demo.reserved // 1024 + 2048
    plain_slot = slot - state if slot and state else None
    f = {"connections": n, "open_s": round(open_s, 1), "first_ok": first_ok,
         "open_after": open_after, "served_again_ok": again, "reserved": demo.reserved,
         "slot_bytes": slot, "buffer_bytes": buf, "tls_state_bytes": state,
         "tls_records_bytes": records, "idle_bytes_in_bound": slot,
         "idle_tls_beyond_plain": state, "active_bytes_in_bound": (slot or 0) + (buf or 0),
         "active_tls_bytes": (state or 0) + (records or 0),
         "vmhwm_kib": hwm_kib,
         "vmhwm_over_reserved_kib": None if hwm_kib is None else hwm_kib - demo.reserved // 1024,
         "stats_connections_open": None if st is None else st["connections_open"],
         "stats_buffers_in_use": None if st is None else st["conn_buffers_in_use"],
         "tls_handshakes": None if st is None else st["tls_handshakes"],
         "rss_bytes_per_idle_tls_noprefault": per_idle, "noprefault_ok": plain_ok,
         "exit_code": exit_code, "noprefault_exit_code": plain_exit, "alive": alive}
    if peer:
        f.update(peer)
    rep.figures = f
    rows = [["TLS connections served once (200)", f"{first_ok}/{n} in {f['open_s']} s"],
            ["still open, idle", f"{open_after}/{n}"],
            ["served again (200)", f"{again}/{min(100, n)}"],
            ["/stats connections open / buffers in use",
             f"{f['stats_connections_open']} / {f['stats_buffers_in_use']}"],
            ["bound per idle TLS connection (slot = plain slot + TLS state)",
             f"{slot} = {plain_slot} + {state}"],
            ["bound per active TLS connection (slot + buffer)",
             f"{f['active_bytes_in_bound']} (TLS part {f['active_tls_bytes']})"],
            ["VmHWM / reserved (KiB), --prefault",
             f"{hwm_kib} / {demo.reserved // 1024} (+{f['vmhwm_over_reserved_kib']})"],
            ["RSS growth per idle TLS connection, no prefault (bytes)", per_idle]]
    if peer:
        rows.append(["nginx: RSS growth per idle TLS connection (bytes)",
                     peer["nginx_bytes_per_idle_tls"]])
    C.table(f"tls_connections: {n} TLS connections held open", ["figure", "value"], rows)
    rep.hard("every TLS connection served at first", first_ok == n, f"{first_ok}/{n}", f"{n}/{n}")
    rep.hard("every one still open", open_after == n, f"{open_after}/{n}", f"{n}/{n}")
    rep.hard("100 of them served again", again == min(100, n), f"{again}", f"{min(100, n)}")
    rep.hard("idle TLS connections hold no connection buffer (1: the /stats request)",
             st is not None and st["conn_buffers_in_use"] <= 1,
             f"{f['stats_buffers_in_use']}", "<= 1")
    rep.hard("VmHWM within the printed reservation + 2 MiB",
             hwm_kib is not None and hwm_kib <= limit_kib, f"{hwm_kib} KiB",
             f"<= {limit_kib} KiB")
    rep.hard("SIGHUP reloads the certificate (new connections get the new one)",
             fp_after == fp_want and fp_before != fp_want, f"{fp_after[:16]}",
             f"{fp_want[:16]}")
    rep.hard("processes alive, exit 0 after SIGTERM", alive and exit_code == 0 and plain_exit == 0,
             f"alive={alive} exit={exit_code},{plain_exit}", "alive, 0")
    rep.target("active TLS connection's TLS part <= 24 KiB of the bound",
               f["active_tls_bytes"] <= 24 * 1024, f"{f['active_tls_bytes']} B", "<= 24576 B")
    rep.target("idle TLS connection <= 1 KiB beyond a plain idle one",
               state is not None and state <= 1024, f"{state} B", "<= 1024 B")


if __name__ == "__main__":
    raise SystemExit(C.main("tls_connections", __doc__, run, 90, 300, add_args))
