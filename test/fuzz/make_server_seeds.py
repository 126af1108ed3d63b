#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_server (test/fuzz/corpus_server/).

Each seed is a script in fuzz_server's op language (see the comment at the top
of test/fuzz/fuzz_server.c); the helpers below spell the ops out. Re-run after
changing the language or the canned request table:

    python3 test/fuzz/make_server_seeds.py
"""
import os

# Canned request indexes (fuzz_server.c, canned[]).
NOW, LATER3, LATER12, LATER40, NEVER, FORGET, OOM, BIG900 = range(8)
ECHO10, ECHO200_HEAD, ECHO_CHUNKED_HEAD, NOW_CLOSE, NOW_10, HEAD, PARTIAL, MISSING = range(8, 16)
EXPECT, ECHO1024_HEAD, CHUNK16, CHUNK_LAST, BIG5000, UPGRADE = range(16, 22)
STREAM3000, HEAD_STREAM, SINK20, SINK_CHUNKED_HEAD, SINK5000_HEAD, SINK_EXPECT = range(22, 28)


def OPEN(k): return bytes([0x00 | k])
def SEND(k, data): return bytes([0x10 | k, len(data)]) + data
def REQ(k, s): return bytes([0x20 | k, s])
def SHUT(k): return bytes([0x30 | k])
def CLOSE(k, rst=False): return bytes([0x40 | k | (8 if rst else 0)])
def READ(k): return bytes([0x50 | k])
def WAIT(ms): return bytes([0x60 | max(0, min(15, (ms + 2) // 3 - 1))])
HOLD = bytes([0x70])
RELEASE = bytes([0x80])
def FAULT(nth): return bytes([0x90 | (nth - 1)])
FAULT_ACCEPT = bytes([0x98])
def PUMP(n): return bytes([0xA0 | (n - 1)])
def FILL(k, big=False): return bytes([0xB0 | k | (8 if big else 0)])
def PIPE(k, s): return bytes([0xC0 | k, s])
def OREQ(k, s): return bytes([0xD0 | k, s])
READALL = bytes([0xE0])


def cat(*ops): return b"".join(ops)


SEEDS = {
    "now": cat(OREQ(0, NOW), PUMP(4), READ(0)),
    "now_close": cat(OREQ(0, NOW_CLOSE), PUMP(4), READ(0)),
    "http10_head_404": cat(OREQ(0, NOW_10), OREQ(1, HEAD), OREQ(2, MISSING), PUMP(8), READALL),
    "upgrade": cat(OREQ(0, UPGRADE), PUMP(4), READ(0)),
    "garbage_400": cat(OPEN(0), SEND(0, b"GET /now HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), PUMP(4), READ(0)),
    "pipeline_now": cat(OPEN(0), PIPE(0, NOW), PUMP(8), READ(0)),
    "pipeline_mixed": cat(OPEN(0), SEND(0, b"GET /now HTTP/1.1\r\nHost: a\r\n\r\nHEAD /now HTTP/1.1\r\nHost: a\r\n\r\nGET /later/3 HTTP/1.1\r\nHost: a\r\n\r\nGET /forget HTTP/1.1\r\nHost: a\r\n\r\n"), WAIT(6), READ(0)),
    "pipeline_half_close": cat(OPEN(0), PIPE(0, NOW), SHUT(0), WAIT(6), READ(0)),
    "half_close_async": cat(OPEN(0), PIPE(0, LATER3), SHUT(0), WAIT(15), READ(0)),
    "slots_full_reject": cat(OPEN(0), OPEN(1), OPEN(2), PUMP(4), OPEN(3), PUMP(4), READ(3)),
    "slots_full_reject_many": cat(OREQ(0, PARTIAL), OREQ(1, PARTIAL), OREQ(2, PARTIAL), OPEN(3), OPEN(4), OPEN(5), OPEN(6), OPEN(7), PUMP(8), READALL),
    "evict_idle": cat(OREQ(0, NOW), OREQ(1, NOW), OREQ(2, NOW), PUMP(6), READALL, OREQ(3, NOW), PUMP(6), READALL),
    "evict_skips_busy": cat(OREQ(0, NOW), OREQ(1, LATER12), OREQ(2, PARTIAL), PUMP(6), OREQ(3, NOW), PUMP(6), READALL, WAIT(15), READALL),
    "linger_gives_way": cat(OREQ(0, NOW_CLOSE), OPEN(1), OPEN(2), PUMP(6), OREQ(3, NOW), PUMP(6), READALL),
    "queue_timeout_503": cat(HOLD, HOLD, OREQ(0, NOW), WAIT(12), READ(0)),
    "queue_full_503": cat(HOLD, HOLD, OREQ(0, NOW), OREQ(1, NOW), OREQ(2, NOW), PUMP(4), READALL),
    "queue_granted": cat(HOLD, HOLD, OREQ(0, NOW), OREQ(1, LATER3), PUMP(2), RELEASE, PUMP(2), RELEASE, WAIT(6), READALL),
    "queue_client_gone": cat(HOLD, HOLD, OREQ(0, NOW), CLOSE(0, True), PUMP(2), RELEASE, PUMP(4)),
    "slowloris_408": cat(OREQ(0, PARTIAL), WAIT(21), READ(0)),
    "drip_body_rate_408": cat(OREQ(0, ECHO200_HEAD), FILL(0), WAIT(6), FILL(0), WAIT(6), FILL(0), WAIT(6), FILL(0), WAIT(6), READ(0)),
    "body_idle_408": cat(OREQ(0, ECHO200_HEAD), WAIT(21), READ(0)),
    "body_complete": cat(OREQ(0, ECHO200_HEAD), FILL(0, True), FILL(0, True), FILL(0, True), SEND(0, b"x" * 8), PUMP(4), READ(0)),
    "echo_small": cat(OREQ(0, ECHO10), PUMP(4), READ(0)),
    "echo_1024": cat(OREQ(0, ECHO1024_HEAD), *[FILL(0, True)] * 16, PUMP(4), READ(0)),
    "chunked_echo": cat(OREQ(0, ECHO_CHUNKED_HEAD), REQ(0, CHUNK16), REQ(0, CHUNK16), REQ(0, CHUNK_LAST), PUMP(4), READ(0)),
    "expect_continue": cat(OREQ(0, EXPECT), PUMP(4), READ(0), SEND(0, b"hello"), PUMP(4), READ(0)),
    "forget_500": cat(OREQ(0, FORGET), PUMP(4), READ(0)),
    "never_504": cat(OREQ(0, NEVER), WAIT(24), READ(0)),
    "later_200_and_504": cat(OREQ(0, LATER12), OREQ(1, LATER40), WAIT(27), READALL),
    "oom_500": cat(OREQ(0, OOM), OREQ(1, BIG5000), OREQ(2, BIG900), PUMP(4), READALL),
    "fault_1": cat(FAULT(1), OREQ(0, NOW), PUMP(4), READ(0)),
    "fault_2_echo": cat(FAULT(2), OREQ(0, ECHO10), PUMP(4), READ(0)),
    "fault_3_later": cat(FAULT(3), OREQ(0, LATER3), WAIT(6), READ(0)),
    "fault_5_echo": cat(FAULT(5), OREQ(0, ECHO10), PUMP(4), READ(0)),
    "fault_accept": cat(FAULT_ACCEPT, OREQ(0, NOW), PUMP(4), OREQ(1, NOW), PUMP(4), READALL),
    "gone_mid_body": cat(OREQ(0, ECHO200_HEAD), FILL(0), CLOSE(0, True), PUMP(4)),
    "gone_mid_head": cat(OREQ(0, PARTIAL), CLOSE(0), PUMP(4)),
    "gone_during_async": cat(OREQ(0, LATER12), PUMP(2), CLOSE(0), WAIT(15)),
    "gone_during_never": cat(OREQ(0, NEVER), PUMP(2), CLOSE(0, True), PUMP(4)),
    "stream_3000": cat(OREQ(0, STREAM3000), PUMP(8), READ(0), PUMP(8), READ(0)),
    "stream_head_and_pipelined": cat(OPEN(0), PIPE(0, STREAM3000), PUMP(8), READ(0), WAIT(6), READ(0)),
    "stream_head_only": cat(OREQ(0, HEAD_STREAM), PUMP(4), READ(0)),
    "stream_reader_stalls": cat(OREQ(0, STREAM3000), PUMP(2), WAIT(45), READ(0)),
    "stream_client_gone": cat(OREQ(0, STREAM3000), PUMP(2), CLOSE(0, True), PUMP(4)),
    "sink_small": cat(OREQ(0, SINK20), PUMP(4), READ(0)),
    "sink_chunked": cat(OREQ(0, SINK_CHUNKED_HEAD), REQ(0, CHUNK16), REQ(0, CHUNK16), REQ(0, CHUNK_LAST), PUMP(4), READ(0)),
    "sink_413": cat(OREQ(0, SINK5000_HEAD), PUMP(4), READ(0)),
    "sink_expect": cat(OREQ(0, SINK_EXPECT), PUMP(4), READ(0), SEND(0, b"0123456789abcdef"), PUMP(4), READ(0)),
    "sink_early_answer": cat(OPEN(0), SEND(0, b"POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: 4000\r\n\r\n"), *[FILL(0, True)] * 48, PUMP(4), READ(0)),
    "keepalive_expiry": cat(OREQ(0, NOW), READ(0), WAIT(30), READ(0), REQ(0, NOW), PUMP(4), READ(0)),
}

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus_server")
os.makedirs(here, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(here, name), "wb") as f:
        f.write(data)
print(f"{len(SEEDS)} seeds written to {here}")
