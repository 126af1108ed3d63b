#!/usr/bin/python3
"""WebSocket over TLS (wss://) clients for test_tlsio.c, certificates not
verified (the tests make their own). Run with Debian's /usr/bin/python3:
the echo mode needs python3-websockets (10.4 in Debian 12), which another
python3 on PATH may not have.

    wss_client.py MODE PORT

  echo    wss://127.0.0.1:PORT/ws/echo with python3-websockets: four text
          messages and a binary one of 40,000 bytes (more than one TLS
          record), each echo compared with what was sent; prints
          "echoed 5", then stays idle, printing "pong N" for each ping
          of the server it answers, until a line on stdin; then closes
          with 1000 and prints "closed CODE" (the code the server sent
          back)
  reset   the upgrade by hand over python3's ssl (TLS 1.2), then the head
          of a masked binary frame announcing 40,000 bytes and, in a
          second write, its first 1,000 bytes; prints "sent", waits for a
          line on stdin, then resets the TCP connection (SO_LINGER 0)
          without a close_notify and prints "reset sent"
"""
import asyncio
import socket
import ssl
import struct
import sys


def ctx():
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c


async def echo(port):
    import websockets

    class Counting(websockets.WebSocketClientProtocol):
        """Says when it answers a ping (websockets answers them itself)."""
        pongs = 0

        async def pong(self, data=b''):
            Counting.pongs += 1
            print('pong', Counting.pongs, flush=True)
            await super().pong(data)

    texts = ['hello', 'h\u00e9llo \u20ac \U0001f600', '', 'x' * 5000]
    big = bytes((i * 31 + 7) & 255 for i in range(40000))
    uri = 'wss://127.0.0.1:%d/ws/echo' % port
    async with websockets.connect(uri, ssl=ctx(), max_size=None, compression=None,
                                  ping_interval=None, create_protocol=Counting) as ws:
        for text in texts:
            await ws.send(text)
            got = await ws.recv()
            assert got == text, (len(got), len(text))
        await ws.send(big)
        got = await ws.recv()
        assert got == big, (type(got), len(got))
        print('echoed', len(texts) + 1, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await ws.close(code=1000, reason='done')
        print('closed', ws.close_code, flush=True)


def reset(port):
    c = ctx()
    c.maximum_version = ssl.TLSVersion.TLSv1_2
    s = c.wrap_socket(socket.create_connection(('127.0.0.1', port), timeout=10))
    s.sendall(b'GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n'
              b'Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'
              b'Sec-WebSocket-Version: 13\r\n\r\n')
    head = b''
    while b'\r\n\r\n' not in head:
        d = s.recv(4096)
        if not d:
            raise EOFError('closed before the 101')
        head += d
    assert head.startswith(b'HTTP/1.1 101 '), head.split(b'\r\n')[0]
    mask = b'\x37\xfa\x21\x3d'
    s.sendall(bytes([0x82, 0x80 | 126]) + struct.pack('!H', 40000) + mask)
    s.sendall(bytes(b ^ mask[i % 4] for i, b in enumerate(b'y' * 1000)))
    print('sent', flush=True)
    sys.stdin.readline()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    s.close()
    print('reset sent', flush=True)


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == 'echo':
        asyncio.run(echo(port))
    elif mode == 'reset':
        reset(port)
    else:
        sys.exit('unknown mode ' + mode)


if __name__ == '__main__':
    try:
        main()
    except Exception as e:  # websockets' ConnectionClosed says how it closed
        print('error', type(e).__name__, e, flush=True)
        sys.exit(1)
