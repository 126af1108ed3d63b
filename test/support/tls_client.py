#!/usr/bin/env python3
"""TLS clients for the HTTPS tests (test_tlsio.c, test_alloc.c), one mode per
run, on python3's ssl module (OpenSSL), TLS 1.2 unless a mode says otherwise,
certificates not verified (the tests make their own).

    tls_client.py MODE PORT [ARGS...]

A mode written wait-MODE first prints "ready" and waits for a line on stdin.

  get PATH [N]        one connection, N (default 1) GETs one after another;
                      prints "VERSION CIPHER ALPN" then "STATUS LENGTH" per GET
  pipeline N          N GETs of /hello in one write; prints "ok COUNT"
  ordered N           N GETs of /p/I (I = 0..N-1) in one write, then, once all
                      are read, one GET of /hello; prints "in order COUNT" (the
                      answers with body I, in place) and "then STATUS BODY"
  tls13               TLS 1.3 only: prints "refused REASON" or "connected"
  loop N              prints "ready", waits for a line on stdin, then N new
                      connections with one GET each, every other one resuming
                      the previous session; prints "done N RESUMED"
  park [PATH]         three GETs of PATH (default /hello) on one connection, a
                      line from stdin before the second and the third; prints
                      "got I STATUS"
  fp PATH             one GET; prints "FINGERPRINT STATUS" (SHA-256 of the
                      server's certificate)
  halfclose           one GET, then shutdown(SHUT_WR); prints the status line
                      and how the stream ended (close_notify, eof or a reason)
  idle                one GET, then waits for the server to close; prints
                      "closed close_notify" or "closed eof" (or a reason)
  stall PATH N        N GETs of PATH in one write, reads nothing; prints
                      "sent", then waits for a line on stdin
  reset PATH          a GET, then a reset (SO_LINGER 0) without reading
  raw HEX [shut]      after the handshake sends HEX as raw bytes (shut: then
                      half-closes); prints "closed", "reset" or "data"
  pre HEX [shut]      sends HEX before any handshake (shut: then half-closes);
                      prints what came back: its first line, "closed" or
                      "reset"
"""
import hashlib
import socket
import ssl
import sys
import time


def ctx(version=ssl.TLSVersion.TLSv1_2):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    c.minimum_version = version
    c.maximum_version = version
    c.set_alpn_protocols(['http/1.1'])
    return c


def recv(s):
    d = s.recv(65536)
    if not d:
        raise EOFError('closed')
    return d


def read_response(s, buf=b''):
    """One response (Content-Length framing); returns (status, body, rest)."""
    while b'\r\n\r\n' not in buf:
        buf += recv(s)
    head, _, body = buf.partition(b'\r\n\r\n')
    lines = head.split(b'\r\n')
    n = [int(l.split(b':')[1]) for l in lines if l.lower().startswith(b'content-length:')]
    n = n[0] if n else 0
    while len(body) < n:
        body += recv(s)
    return int(lines[0].split()[1]), body[:n], body[n:]


def request(path, close=False):
    extra = 'Connection: close\r\n' if close else ''
    return ('GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n' % (path, extra)).encode()


def conn(c, port, sess=None):
    s = socket.create_connection(('127.0.0.1', port), timeout=10)
    return c.wrap_socket(s, session=sess)


def bio_handshake(port):
    """A handshake over a plain socket through memory BIOs, so raw bytes can
    follow and the end of the stream can be seen as it is."""
    raw = socket.create_connection(('127.0.0.1', port), timeout=10)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx().wrap_bio(inc, out)
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            raw.sendall(out.read())
            inc.write(recv(raw))
    raw.sendall(out.read())
    return raw, inc, out, obj


def drain_bio(raw, inc, obj):
    """Reads until the server closes; returns (plaintext, how it ended)."""
    text = b''
    while True:
        try:
            d = raw.recv(65536)
        except ConnectionResetError:
            return text, 'reset'
        if not d:
            break
        inc.write(d)
    inc.write_eof()
    # read() answers b'' once a close_notify came (SSLZeroReturnError on
    # some versions); a stream that ended without one is an SSLEOFError.
    try:
        while True:
            d = obj.read(65536)
            if not d:
                return text, 'close_notify'
            text += d
    except ssl.SSLZeroReturnError:
        return text, 'close_notify'
    except ssl.SSLEOFError:
        return text, 'eof'
    except ssl.SSLError as e:
        return text, e.reason or 'error'


def main():
    mode, port, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    if mode.startswith('wait-'):
        mode = mode[5:]
        print('ready', flush=True)
        sys.stdin.readline()
    if mode == 'get':
        n = int(args[1]) if len(args) > 1 else 1
        s = conn(ctx(), port)
        print(s.version(), s.cipher()[0], s.selected_alpn_protocol(), flush=True)
        rest = b''
        for _ in range(n):
            s.sendall(request(args[0]))
            st, body, rest = read_response(s, rest)
            print(st, len(body), flush=True)
    elif mode == 'pipeline':
        n = int(args[0])
        s = conn(ctx(), port)
        s.sendall(request('/hello') * n)
        rest, ok = b'', 0
        for _ in range(n):
            st, body, rest = read_response(s, rest)
            ok += st == 200 and body == b'Hello, World!'
        print('ok', ok)
    elif mode == 'ordered':
        n = int(args[0])
        s = conn(ctx(), port)
        s.sendall(b''.join(request('/p/%d' % i) for i in range(n)))
        rest, ok = b'', 0
        for i in range(n):
            st, body, rest = read_response(s, rest)
            ok += st == 200 and body == str(i).encode()
        print('in order', ok)
        s.sendall(request('/hello'))
        st, body, rest = read_response(s, rest)
        print('then', st, body.decode(errors='replace'), flush=True)
    elif mode == 'tls13':
        try:
            conn(ctx(ssl.TLSVersion.TLSv1_3), port)
            print('connected')
        except ssl.SSLError as e:
            print('refused', e.reason)
        except OSError as e:
            print('refused', type(e).__name__)
    elif mode == 'loop':
        n, c, sess, resumed = int(args[0]), ctx(), None, 0
        print('ready', flush=True)
        sys.stdin.readline()
        for i in range(n):
            s = conn(c, port, sess if i % 2 else None)
            s.sendall(request('/hello'))
            read_response(s)
            resumed += s.session_reused
            sess = s.session
            s.close()
        print('done', n, resumed, flush=True)
    elif mode == 'park':
        s = conn(ctx(), port)
        rest = b''
        for i in range(3):
            if i > 0:
                sys.stdin.readline()
            s.sendall(request(args[0] if args else '/hello'))
            st, _, rest = read_response(s, rest)
            print('got', i, st, flush=True)
    elif mode == 'fp':
        s = conn(ctx(), port)
        s.sendall(request(args[0]))
        st, _, _ = read_response(s)
        print(hashlib.sha256(s.getpeercert(True)).hexdigest(), st)
    elif mode == 'halfclose':
        raw, inc, out, obj = bio_handshake(port)
        obj.write(request('/hello'))
        raw.sendall(out.read())
        raw.shutdown(socket.SHUT_WR)
        text, how = drain_bio(raw, inc, obj)
        print(text.split(b'\r\n')[0].decode(), how)
    elif mode == 'idle':
        raw, inc, out, obj = bio_handshake(port)
        obj.write(request('/hello'))
        raw.sendall(out.read())
        text, how = drain_bio(raw, inc, obj)
        print(text.split(b'\r\n')[0].decode(), 'closed', how)
    elif mode == 'stall':
        s = conn(ctx(), port)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(request(args[0]) * int(args[1]))
        print('sent', flush=True)
        sys.stdin.readline()
    elif mode == 'reset':
        s = conn(ctx(), port)
        s.sendall(request(args[0]))
        time.sleep(0.05)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b'\x01\x00\x00\x00\x00\x00\x00\x00')
        s.close()
        print('reset sent')
    elif mode == 'raw':
        raw, inc, out, obj = bio_handshake(port)
        raw.sendall(bytes.fromhex(args[0]))
        if args[1:] == ['shut']:
            raw.shutdown(socket.SHUT_WR)
        try:
            print('closed' if raw.recv(100) == b'' else 'data')
        except ConnectionResetError:
            print('reset')
    elif mode == 'pre':
        raw = socket.create_connection(('127.0.0.1', port), timeout=10)
        raw.sendall(bytes.fromhex(args[0]))
        if args[1:] == ['shut']:
            raw.shutdown(socket.SHUT_WR)
        try:
            d = raw.recv(65536)
            print(d.split(b'\r\n')[0].decode(errors='replace') if d else 'closed')
        except ConnectionResetError:
            print('reset')
    else:
        sys.exit('unknown mode ' + mode)


if __name__ == '__main__':
    try:
        main()
    except (OSError, EOFError, ssl.SSLError) as e:
        print('error', type(e).__name__, e)
        sys.exit(1)
