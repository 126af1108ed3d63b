#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_wsconn (test/fuzz/corpus_wsconn/).

    test/fuzz/make_wsconn_seeds.py [DIR]

Input format (see fuzz_wsconn.c): byte 0 is flags (bits 0-1 the route:
0 /echo, 1 /pieces, 2 /keep, 3 /oom; bit 2 a greeting from open; bit 3 a
slow reader; bits 4-6 the Nth arena grant fails; bit 7 end with a reset),
then a script of one-byte ops (high nibble the op, low nibble its argument).
"""
import os
import sys

ECHO, PIECES, KEEP, OOM = 0, 1, 2, 3
GREET, SLOW, RESET = 4, 8, 0x80


def fault(n):
    return (n & 7) << 4


def frame(b0, payload, unmasked=False, key=0):
    """FRAME: b0 raw (FIN, RSV, opcode), a length byte, the payload."""
    assert len(payload) < 256
    return bytes([0x00 | (8 if unmasked else 0) | (key & 7), b0, len(payload)]) + payload


def message(a):
    return bytes([0x10 | a])


def raw(data):
    return bytes([0x20, len(data)]) + data


def control(a):
    return bytes([0x30 | a])


def close(code, reason_len=0):
    return bytes([0x40 | reason_len, code >> 8, code & 255])


def wait(a):
    return bytes([0x50 | a])


def arenas(take):
    return bytes([0x60 | (1 if take else 0)])


def read():
    return bytes([0x70])


def big(a):
    return bytes([0x80 | a])


def split(mode):
    return bytes([0x90 | mode])


def burst(a):
    return bytes([0xA0 | a])


SEEDS = {
    "echo_text": bytes([ECHO]) + frame(0x81, b"hello") + read(),
    "echo_binary_fragments": bytes([ECHO]) + frame(0x02, b"abc") + control(3) +
    frame(0x80, b"def") + read(),
    "echo_messages_split_1": bytes([ECHO]) + split(1) + message(5) + message(0) + read(),
    "echo_messages_split_7": bytes([ECHO]) + split(2) + message(9) + control(2) + read(),
    "echo_burst": bytes([ECHO]) + burst(15) + read() + burst(3),
    "echo_unmasked": bytes([ECHO]) + frame(0x81, b"plain", unmasked=True),
    "echo_rsv": bytes([ECHO]) + frame(0xC1, b"rsv"),
    "echo_reserved_opcode": bytes([ECHO]) + frame(0x83, b"x"),
    "echo_bad_utf8": bytes([ECHO]) + frame(0x01, b"ok \xe0") + frame(0x80, b"\x80\x80"),
    "echo_too_big": bytes([ECHO]) + big(3),
    "echo_close_codes": bytes([ECHO]) + close(1000, 4),
    "echo_close_bad_code": bytes([ECHO]) + close(1005),
    "echo_greeting_slow": bytes([ECHO | GREET | SLOW]) + message(15) + message(15) + message(15) +
    wait(5) + read(),
    "echo_idle_pinged": bytes([ECHO]) + wait(5) + wait(5) + read() + wait(3) + read(),
    "echo_no_arena": bytes([ECHO]) + arenas(True) + message(2) + wait(3) + arenas(False),
    "echo_no_arena_released": bytes([ECHO]) + arenas(True) + message(2) + arenas(False) + read(),
    "echo_fault": bytes([ECHO | fault(1)]) + message(1) + message(2) + read(),
    "echo_reset": bytes([ECHO | RESET]) + frame(0x02, b"half"),
    "echo_slow_drip": bytes([ECHO]) + split(1) + frame(0x81, b"a slow message") + wait(8),
    "pieces_big": bytes([PIECES]) + big(7) + big(15) + read(),
    "pieces_fragments": bytes([PIECES]) + message(13) + message(7) + read(),
    "pieces_split_64": bytes([PIECES]) + split(3) + big(4) + read(),
    "keep_later": bytes([KEEP]) + message(2) + message(4) + wait(3) + read(),
    "keep_never": bytes([KEEP]) + message(13) + wait(11) + message(1) + read(),
    "keep_reset": bytes([KEEP | RESET]) + message(13),
    "oom_message": bytes([OOM]) + message(15) + message(14) + message(1) + read(),
    "oom_fault": bytes([OOM | fault(2)]) + message(14) + message(3) + read(),
    "raw_garbage": bytes([ECHO]) + raw(b"\x81\xff\xff\xff\xff\xff\xff\xff\xff\xff"),
    "raw_control_too_long": bytes([ECHO]) + raw(b"\x89\xfe\x00\x80"),
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__),
                                                               "corpus_wsconn")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"{len(SEEDS)} seeds written to {out}")


if __name__ == "__main__":
    main()
