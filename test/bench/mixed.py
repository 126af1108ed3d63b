#!/usr/bin/env python3
"""Sends an exact number of mixed HTTP/1.1 requests to one server.

Used by run.py for the "zero allocations" phase: wrk cannot stop after a
given number of requests, this can. The mix, per block of 100 pipelined
requests on one keep-alive connection:

    35 GET /hello                 20 GET /alloc/1
     2 GET /alloc/BIG (500)       20 POST /svg (10-line CSV)
     5 POST /svg malformed (400)  10 GET /nope (404)
     8 DELETE /hello (404/405)

and, after each block, two requests on connections of their own: one
malformed request (400, the server closes) and one GET /hello with
`Connection: close`. A response that carries `Connection: close` ends its
connection; requests left unanswered on it are sent again on a new one.

Bounded: every socket operation has a timeout and the whole run a deadline.
Prints one line: `requests=N statuses=200:a,400:b,... seconds=S`; exits 1 on
a deadline or protocol error.

BIG is --big-kib (default 100000: 100 MB, beyond any nea-demo arena).

    mixed.py --port N [--count 100000] [--big-kib 100000] [--deadline 300]
"""
import argparse
import socket
import sys
import time

HOST = "127.0.0.1"


def request(method, path, body=None, extra=""):
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n{extra}"
    if body is None:
        return (head + "\r\n").encode()
    return (head + f"Content-Type: text/csv\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


SVG_OK = b"".join(b"%d, %d\n" % (i * 7 - 30, 15 - i * 3) for i in range(10))
SVG_BAD = b"1, 2\n3, x4\n"
BAD_REQUEST = b"GET /hello HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n"


def block(big_kib):
    reqs = []
    reqs += [request("GET", "/hello")] * 35
    reqs += [request("GET", "/alloc/1")] * 20
    reqs += [request("GET", f"/alloc/{big_kib}")] * 2
    reqs += [request("POST", "/svg", SVG_OK)] * 20
    reqs += [request("POST", "/svg", SVG_BAD)] * 5
    reqs += [request("GET", "/nope")] * 10
    reqs += [request("DELETE", "/hello")] * 8
    # Interleave the kinds so that each block exercises them in turn.
    order = sorted(range(len(reqs)), key=lambda i: (i * 37) % len(reqs))
    return [reqs[i] for i in order]


class Conn:
    def __init__(self, port, timeout):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.buf = bytearray()
        self.eof = False

    def fill(self):
        data = self.sock.recv(262144)
        if not data:
            self.eof = True
        self.buf += data

    def response(self):
        """One parsed response: (status, close). None at EOF before a full one."""
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
                status = int(head[0].split(" ")[1])
                length, close = None, False
                for line in head[1:]:
                    name, _, value = line.partition(":")
                    name, value = name.strip().lower(), value.strip().lower()
                    if name == "content-length":
                        length = int(value)
                    elif name == "connection" and "close" in value:
                        close = True
                    elif name == "transfer-encoding":
                        raise RuntimeError("chunked responses are not supported by mixed.py")
                if length is None:
                    length = 0
                while len(self.buf) < end + 4 + length:
                    if self.eof:
                        return None
                    self.fill()
                del self.buf[: end + 4 + length]
                return status, close
            if self.eof:
                return None
            self.fill()

    def close(self):
        self.sock.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=100000)
    ap.add_argument("--big-kib", type=int, default=100000,
                    help="KiB asked by the 2%% of /alloc requests meant to exceed an arena")
    ap.add_argument("--deadline", type=float, default=300.0, help="seconds for the whole run")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per socket operation")
    args = ap.parse_args()

    start = time.monotonic()
    statuses = {}
    done = 0
    blk = block(args.big_kib)
    conn = None

    def count(status):
        nonlocal done
        statuses[status] = statuses.get(status, 0) + 1
        done += 1

    def single(raw):
        c = Conn(args.port, args.timeout)
        c.sock.sendall(raw)
        r = c.response()
        c.close()
        if r is None:
            raise RuntimeError("server closed without answering a single request")
        count(r[0])

    try:
        while done < args.count:
            if time.monotonic() - start > args.deadline:
                raise RuntimeError(f"deadline of {args.deadline}s reached")
            pending = blk[: args.count - done]
            while pending:
                if conn is None:
                    conn = Conn(args.port, args.timeout)
                conn.sock.sendall(b"".join(pending))
                answered, ended = 0, False
                while answered < len(pending) and not ended:
                    r = conn.response()
                    if r is None:
                        if answered == 0:
                            raise RuntimeError("connection closed with no response")
                        ended = True
                    else:
                        count(r[0])
                        answered += 1
                        ended = r[1]
                pending = pending[answered:]
                if ended:
                    conn.close()
                    conn = None
            if done < args.count:
                single(BAD_REQUEST)
            if done < args.count:
                single(request("GET", "/hello", extra="Connection: close\r\n"))
    except (OSError, RuntimeError, ValueError, IndexError) as e:
        print(f"mixed.py: {e} after {done} requests", file=sys.stderr)
        return 1
    finally:
        if conn is not None:
            conn.close()
    secs = time.monotonic() - start
    st = ",".join(f"{k}:{v}" for k, v in sorted(statuses.items()))
    print(f"requests={done} statuses={st} seconds={secs:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
