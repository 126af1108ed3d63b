"""repro_evict.py - eviction of a connection whose request has already arrived.

Start the demo with one connection slot, then run this against its port:

    nea-demo --port 0 --connections 1            # prints the port
    python3 test/reliability/repro_evict.py PORT [N]

Each of N rounds (default 100): client B connects and sends GET /sleep/50,
then client C connects and sends the same. B was accepted first and its
request is already in the server's socket, so B should get its 200 (C a 503,
or its turn later). If the server takes B for an idle keep-alive connection
and evicts it to make room for C, B's connection is closed with no response.
Prints how many B requests were answered and how many were dropped; exit 1 if
any was dropped. Loopback only; every socket has a 2 s timeout.
"""
import socket
import sys
import time


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    port = int(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    req = b"GET /sleep/50 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    ok = dropped = other = 0
    for _ in range(min(n, 10000)):
        b = socket.create_connection(("127.0.0.1", port), timeout=2)
        b.sendall(req)
        c = socket.create_connection(("127.0.0.1", port), timeout=2)
        c.sendall(req)
        try:
            d = b.recv(64)
        except OSError:
            d = b""
        if d.startswith(b"HTTP/1.1 200"):
            ok += 1
        elif not d:
            dropped += 1
        else:
            other += 1
        b.close()
        c.close()
        time.sleep(0.06)  # let the 50 ms request finish before the next round
    print(f"B answered 200: {ok}; B closed without a response: {dropped}; other: {other}")
    return 1 if dropped else 0


if __name__ == "__main__":
    sys.exit(main())
