#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_ws (test/fuzz/corpus_ws/).

    test/fuzz/make_ws_seeds.py [DIR]

Input format (see fuzz_ws.c): byte 0 picks the mode (0: a client's frames,
1: a server's frames, 2: a handshake, 3: UTF-8 and close payloads); for the
frame modes, byte 1 sets max_message, byte 2 the number of seed bytes that
follow, which cut the input into pieces.
"""
import os
import struct
import sys

KEY = b"\x37\xfa\x21\x3d"


def frame(opcode, payload, fin=True, masked=True, rsv=0):
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    n = len(payload)
    m = 0x80 if masked else 0
    if n < 126:
        head += bytes([m | n])
    elif n <= 0xFFFF:
        head += bytes([m | 126]) + struct.pack(">H", n)
    else:
        head += bytes([m | 127]) + struct.pack(">Q", n)
    if masked:
        payload = bytes(b ^ KEY[i % 4] for i, b in enumerate(payload))
        head += KEY
    return head + payload


def frames_seed(mode, body, limit=0, cuts=b""):
    return bytes([mode, limit, len(cuts)]) + cuts + body


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus_ws")
    os.makedirs(out, exist_ok=True)
    seeds = {
        "client_hello": frames_seed(0, frame(1, b"Hello")),
        "client_hello_split": frames_seed(0, frame(1, b"Hello"), cuts=b"\x01\x03\x05"),
        "client_fragments_ping": frames_seed(
            0,
            frame(1, b"price: \xe2", fin=False)
            + frame(9, b"p1")
            + frame(0, b"\x82", fin=False)
            + frame(10, b"")
            + frame(0, b"\xac 5"),
            cuts=b"\x02",
        ),
        "client_binary_16bit": frames_seed(0, frame(2, bytes(range(256)) * 2)),
        "client_binary_64bit": frames_seed(0, frame(2, b"x" * 65536)),
        "client_close_reason": frames_seed(0, frame(8, b"\x03\xe8bye") + frame(1, b"after")),
        "client_close_empty": frames_seed(0, frame(8, b"")),
        "client_bad_utf8": frames_seed(0, frame(1, b"ok\xc3\x28")),
        "client_bad_close_code": frames_seed(0, frame(8, b"\x03\xed")),
        "client_unmasked": frames_seed(0, frame(1, b"a", masked=False)),
        "client_rsv1": frames_seed(0, frame(1, b"a", rsv=0x40)),
        "client_too_big": frames_seed(0, frame(2, b"y" * 300), limit=16),
        "client_limit_fits": frames_seed(0, frame(2, b"y" * 16) + frame(1, b""), limit=1),
        "client_fragmented_ping": frames_seed(0, bytes([0x09, 0x80]) + KEY),
        "client_nonminimal": frames_seed(0, bytes([0x82, 0xFE, 0x00, 0x05]) + KEY + b"abcde"),
        "server_hello": frames_seed(1, frame(1, b"Hello", masked=False)),
        "server_fragments": frames_seed(
            1, frame(1, b"Hel", fin=False, masked=False) + frame(0, b"lo", masked=False)
        ),
        "server_masked": frames_seed(1, frame(2, b"m")),
        "handshake_ok": b"\x02"
        + b"Host: x\nUpgrade: websocket\nConnection: Upgrade\n"
        b"Sec-WebSocket-Key:dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version:13\n",
        "handshake_version": b"\x02"
        + b"Upgrade: websocket\nConnection: keep-alive, upgrade\n"
        b"Sec-WebSocket-Key:dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version:8\n",
        "base64": b"\x02Zm9vYmFy",
        "utf8_mixed": b"\x03\x05caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
        "utf8_surrogate": b"\x03\x00\xed\xa0\x80",
        "close_payload": b"\x03\x03\xe8going away",
        "close_long_reason": b"\x03\x0f\xa0" + "é".encode() * 70,
    }
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"{len(seeds)} seeds in {out}")


if __name__ == "__main__":
    main()
