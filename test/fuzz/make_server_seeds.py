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
HOST5, HOST30, HOST_OOM, HOST_SILENT = range(28, 32)
WORK0, WORK10, WORK40, WORK_OOM, WORK_EARLY, WORK_SILENT = range(32, 38)
HOLD0, HOLD8, HOLD30, HOLD_SILENT, HOLD_OOM = range(38, 43)
BULK16K, BULK4K, STREAM20K = range(43, 46)
EXPECT_WHOLE, EXPECT_NEXT, CHUNK_FLOOD, HEAD_NEVER, WORK20_CLOSE, HEAD_HOST5, DRIP8 = range(46, 53)
PSINK_CHUNKED, PSINK200_HEAD, PSINK_EXPECT = range(53, 56)

# Slot phases (lib/conn.h, nea__conn_state), for AWAIT.
FREE, IDLE, WAITBUF, HEAD_PHASE, QUEUED, BODY, HANDLER, STREAM, WRITING, LINGER, CLOSING = range(11)


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
# Extended ops. OPENT: receive buffer rcv (0: kernel minimum, 1: 2 KiB, 2: 4, 3: 8) and
# the server's send buffer snd (0: kernel minimum, 1: 4 KiB, 2: 8, 3: untouched).
def OPENT(k, rcv=0, snd=0): return bytes([0xF0, k, rcv | snd << 2])
def SQUEEZE(k, snd=0): return bytes([0xF1, k, snd])
def DEAF(k): return bytes([0xF2, k])
# XPIPE: n Expect: 100-continue requests, bodies of size_sel (0: 5, 1: 200, 2: 900, 3: 40).
def XPIPE(k, n, size_sel=0, sink=False): return bytes([0xF3, k, (n - 1) | size_sel << 5 | (0x80 if sink else 0)])
def AWAIT(k, phase): return bytes([0xF4, k, phase])
LATE = bytes([0xF5, 0, 0])


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

    # Answered later: a host timer through a stored reference, thread-pool work, holds.
    "host_ref_answers": cat(OREQ(0, HOST5), OREQ(1, HOST_OOM), LATE, READALL),
    "host_ref_504_then_null": cat(OREQ(0, HOST30), WAIT(24), READ(0), LATE, READ(0)),
    "host_ref_silent_504": cat(OREQ(0, HOST_SILENT), WAIT(24), READ(0)),
    "host_ref_pipelined": cat(OPEN(0), PIPE(0, HOST5), LATE, WAIT(15), READ(0)),
    "work_answers": cat(OREQ(0, WORK0), OREQ(1, WORK10), LATE, READALL),
    "work_oom_early_silent": cat(OREQ(0, WORK_OOM), OREQ(1, WORK_EARLY), OREQ(2, WORK_SILENT), LATE, WAIT(24), READALL),
    "work_past_deadline": cat(OREQ(0, WORK40), WAIT(24), READ(0), LATE),
    "work_pipelined_close": cat(OPEN(0), PIPE(0, WORK20_CLOSE), LATE, READ(0)),
    "work_many": cat(OPEN(0), PIPE(0, WORK0), PIPE(0, WORK10), OREQ(1, WORK0), OREQ(2, WORK40), LATE, LATE, READALL),
    "hold_answers": cat(OREQ(0, HOLD0), OREQ(1, HOLD8), LATE, READALL),
    "hold_silent_and_oom": cat(OREQ(0, HOLD_SILENT), OREQ(1, HOLD_OOM), LATE, WAIT(24), READALL),
    "hold_past_deadline": cat(OREQ(0, HOLD30), WAIT(24), READ(0), LATE),
    "head_answered_later": cat(OREQ(0, HEAD_HOST5), LATE, READ(0)),

    # Bodies paused after every piece, resumed by a host timer through a reference.
    "psink_chunked": cat(OREQ(0, PSINK_CHUNKED), LATE, WAIT(6), READ(0)),
    "psink_pipelined_half_closed": cat(OPEN(0), PIPE(0, PSINK_CHUNKED), SHUT(0), LATE, LATE, READ(0)),
    "psink_filled": cat(OREQ(0, PSINK200_HEAD), FILL(0, True), FILL(0, True), PUMP(2), FILL(0, True), SEND(0, b"x" * 8), LATE, READ(0)),
    "psink_expect": cat(OREQ(0, PSINK_EXPECT), PUMP(4), READ(0), SEND(0, b"0123456789abcdef"), LATE, READ(0)),
    "psink_reset_while_paused": cat(OREQ(0, PSINK200_HEAD), FILL(0, True), AWAIT(0, BODY), CLOSE(0, True), LATE),
    "psink_shut_while_paused": cat(OREQ(0, PSINK200_HEAD), FILL(0, True), FILL(0, True), SHUT(0), LATE, READ(0)),
    "psink_deaf_pipelined": cat(OPENT(0, 0, 0), REQ(0, BULK16K), PIPE(0, PSINK_CHUNKED), LATE, READ(0), LATE, READ(0)),

    # Writes that fail: the server stopped reading (its read buffer full behind a
    # pending handler), the client resets, the late answer meets the reset.
    "late_answer_meets_reset": cat(OPEN(0), REQ(0, HOST5), PIPE(0, NOW), PIPE(0, NOW), PIPE(0, NOW), PIPE(0, NOW), PIPE(0, NOW), PIPE(0, NOW), PIPE(0, NOW), PIPE(0, NOW), PIPE(0, NOW), PIPE(0, NOW), PIPE(0, NOW), CLOSE(0, True), LATE),
    "work_done_meets_reset": cat(OPEN(0), REQ(0, WORK10), PIPE(0, NOW), PIPE(0, NOW), PIPE(0, NOW), PIPE(0, NOW), PIPE(0, NOW), PIPE(0, NOW), PIPE(0, NOW), PIPE(0, NOW), PIPE(0, NOW), PIPE(0, NOW), PIPE(0, NOW), CLOSE(0, True), LATE),
    "drained_batch_then_eof": cat(OPENT(0, 0, 0), REQ(0, BULK4K), SEND(0, b"GET /now HTTP/1.1\r\nHost: a\r\n\r\n" * 8), SEND(0, b"GET /now HTTP/1.1\r\nHost: a\r\n\r\n" * 8), PUMP(2), SHUT(0), READ(0), PUMP(4), READ(0), PUMP(4), READ(0), PUMP(4), READ(0), WAIT(9), READ(0)),
    "batch_cut_before_response": cat(OPENT(0, 0, 0), SEND(0, b"GET /now HTTP/1.1\r\nHost: a\r\n\r\n" * 6 + b"GET /bulk/4000 HTTP/1.1\r\nHost: a\r\n\r\n"), PUMP(2), SEND(0, b"GET /now HTTP/1.1\r\nHost: a\r\n\r\n" * 6 + b"GET /bulk/4000 HTTP/1.1\r\nHost: a\r\n\r\n"), PUMP(2), READ(0), PUMP(2), SEND(0, b"GET /now HTTP/1.1\r\nHost: a\r\n\r\n" * 6 + b"GET /bulk/4000 HTTP/1.1\r\nHost: a\r\n\r\n"), PUMP(2), READ(0), WAIT(9), READ(0)),

    # A late answer must never reach the client that took the arena over.
    "late_ref_after_client_left": cat(OREQ(0, HOST5), PUMP(1), CLOSE(0, True), OREQ(1, NEVER), OREQ(2, NEVER), LATE, WAIT(24), READALL),
    "late_ref_after_504_arena_reused": cat(OREQ(0, HOST30), AWAIT(0, IDLE), REQ(0, NEVER), OREQ(1, NEVER), LATE, WAIT(24), READALL),
    "work_client_left_midjob": cat(OREQ(0, WORK40), PUMP(2), CLOSE(0, True), OREQ(1, WORK0), OREQ(2, NOW), LATE, LATE, READALL),
    "work_client_left_arena_poisoned": cat(OREQ(0, WORK10), OREQ(1, WORK10), PUMP(1), CLOSE(0, True), CLOSE(1, True), OREQ(2, NOW), OREQ(3, HOST5), LATE, READALL),
    "hold_client_left": cat(OREQ(0, HOLD30), PUMP(2), CLOSE(0, True), OREQ(1, NOW), OREQ(2, HOLD8), LATE, LATE, READALL),

    # A half-close is not a cancel: what is complete is answered.
    "half_close_host_answered": cat(OREQ(0, HOST5), SHUT(0), LATE, WAIT(6), READ(0)),
    "half_close_work_answered": cat(OREQ(0, WORK10), SHUT(0), LATE, WAIT(6), READ(0)),
    "half_close_hold_answered": cat(OREQ(0, HOLD8), SHUT(0), LATE, WAIT(6), READ(0)),
    "half_close_queued_answered": cat(HOLD, HOLD, OREQ(0, NOW), AWAIT(0, QUEUED), SHUT(0), PUMP(2), RELEASE, WAIT(6), READ(0)),
    "half_close_streamed_answered": cat(OREQ(0, STREAM3000), SHUT(0), PUMP(8), WAIT(6), READ(0)),
    "half_close_pipeline_mixed": cat(OPEN(0), REQ(0, NOW), REQ(0, HOST5), REQ(0, WORK0), REQ(0, HOLD8), REQ(0, STREAM3000), SHUT(0), LATE, WAIT(9), READ(0)),

    # Every step of a request's life, half-closed and reset.
    "shut_mid_head": cat(OREQ(0, PARTIAL), AWAIT(0, HEAD_PHASE), SHUT(0), WAIT(6), READ(0)),
    "reset_mid_head": cat(OREQ(0, PARTIAL), AWAIT(0, HEAD_PHASE), CLOSE(0, True), PUMP(4)),
    # Two buffers: a third partial head waits in line for one, then leaves, or
    # half-closes and is read once client 0's buffer comes back.
    "reset_waiting_for_buffer": cat(OREQ(0, PARTIAL), OREQ(1, PARTIAL), OREQ(2, PARTIAL), AWAIT(2, WAITBUF), CLOSE(2, True), CLOSE(0), PUMP(8), READALL),
    "shut_waiting_for_buffer": cat(OREQ(0, PARTIAL), OREQ(1, PARTIAL), OREQ(2, PARTIAL), AWAIT(2, WAITBUF), SHUT(2), CLOSE(0), PUMP(8), READALL),
    "waiting_for_buffer_answered": cat(OREQ(0, PARTIAL), OREQ(1, PARTIAL), OREQ(2, NOW), AWAIT(2, WAITBUF), CLOSE(0), PUMP(8), READ(2)),
    "shut_mid_body": cat(OREQ(0, ECHO200_HEAD), FILL(0), AWAIT(0, BODY), SHUT(0), WAIT(6), READ(0)),
    "reset_mid_body": cat(OREQ(0, ECHO200_HEAD), FILL(0), AWAIT(0, BODY), CLOSE(0, True), PUMP(4)),
    "shut_mid_sink_body": cat(OREQ(0, SINK_CHUNKED_HEAD), REQ(0, CHUNK16), AWAIT(0, BODY), SHUT(0), WAIT(6), READ(0)),
    "reset_queued": cat(HOLD, HOLD, OREQ(0, NOW), AWAIT(0, QUEUED), CLOSE(0, True), PUMP(2), RELEASE, RELEASE, PUMP(4)),
    "shut_handler_pending": cat(OREQ(0, NEVER), AWAIT(0, HANDLER), SHUT(0), WAIT(24), READ(0)),
    "reset_handler_pending_work": cat(OREQ(0, WORK10), AWAIT(0, HANDLER), CLOSE(0, True), LATE),
    "reset_handler_pending_hold": cat(OREQ(0, HOLD8), AWAIT(0, HANDLER), CLOSE(0, True), LATE),
    "shut_streaming": cat(OREQ(0, DRIP8), AWAIT(0, STREAM), SHUT(0), WAIT(30), READ(0)),
    "reset_streaming": cat(OREQ(0, DRIP8), AWAIT(0, STREAM), CLOSE(0, True), PUMP(4)),
    "shut_streaming_unread": cat(OPENT(0, 0, 0), REQ(0, STREAM20K), AWAIT(0, WRITING), SHUT(0), READ(0), WAIT(9), READ(0)),
    "reset_streaming_unread": cat(OPENT(0, 0, 0), REQ(0, STREAM20K), AWAIT(0, WRITING), CLOSE(0, True), PUMP(4)),
    "drip_pipelined_half_closed": cat(OPEN(0), PIPE(0, DRIP8), SHUT(0), WAIT(45), READ(0)),
    "shut_writing": cat(OPENT(0, 0, 0), REQ(0, BULK16K), AWAIT(0, WRITING), SHUT(0), READ(0), READ(0), WAIT(9), READ(0)),
    "reset_writing": cat(OPENT(0, 0, 0), REQ(0, BULK16K), AWAIT(0, WRITING), CLOSE(0, True), PUMP(4)),
    "close_unread_writing": cat(OPENT(0, 1, 1), PIPE(0, BULK4K), AWAIT(0, WRITING), CLOSE(0), PUMP(4)),
    "reset_lingering": cat(OREQ(0, UPGRADE), AWAIT(0, LINGER), CLOSE(0, True), PUMP(4)),
    "shut_lingering": cat(OREQ(0, SINK5000_HEAD), AWAIT(0, LINGER), SHUT(0), PUMP(4), READ(0)),

    # Clients that stop reading: the server's send queue fills, writes are cut.
    "deaf_bulk_write_timeout": cat(OPENT(0, 0, 0), PIPE(0, BULK16K), WAIT(36), READ(0)),
    "deaf_reads_a_little": cat(OPENT(0, 1, 0), PIPE(0, BULK4K), READ(0), PUMP(4), READ(0), PUMP(4), READ(0), WAIT(9), READ(0)),
    "deaf_after_answers": cat(OREQ(0, NOW), DEAF(0), PIPE(0, BULK16K), PIPE(0, STREAM20K), WAIT(12), DEAF(0), PUMP(4)),
    "deaf_late_answers": cat(OPENT(0, 0, 0), REQ(0, BULK16K), REQ(0, HOST5), REQ(0, WORK0), REQ(0, HOLD8), LATE, READ(0), WAIT(9), READ(0)),
    "squeezed_reading_client": cat(OPEN(0), SQUEEZE(0, 0), PIPE(0, BULK4K), PUMP(4), READ(0), WAIT(9), READ(0), PIPE(0, BULK4K), PUMP(4), READ(0), WAIT(9), READ(0)),
    "squeezed_pipeline": cat(OPEN(0), SQUEEZE(0, 0), DEAF(0), PIPE(0, BIG900), PIPE(0, BULK4K), PUMP(4), READ(0), WAIT(9), READ(0)),

    # Expect: 100-continue pipelines: each body followed by the next head with Expect.
    "expect_pipeline_unread": cat(OPENT(0, 0, 0), XPIPE(0, 32, 1), XPIPE(0, 32, 1), READ(0), XPIPE(0, 32, 2), PUMP(4), READ(0), WAIT(9), READ(0)),
    # ... with the server's flush of gathered answers cut right before the interim answer.
    "expect_pipeline_unread_batch_cut": cat(OPENT(0, 0, 0), XPIPE(0, 32, 2), XPIPE(0, 32, 2), XPIPE(0, 32, 2), READ(0), XPIPE(0, 32, 2)),
    "expect_pipeline_unread_batch_cut_sink": cat(OPENT(0, 1, 1), XPIPE(0, 32, 0, True), XPIPE(0, 32, 0, True), XPIPE(0, 32, 0, True), READ(0), XPIPE(0, 32, 0)),
    "expect_pipeline_unread_small": cat(OPENT(0, 0, 0), REQ(0, BULK16K), XPIPE(0, 32, 0), READ(0), XPIPE(0, 32, 0), WAIT(9)),
    "expect_pipeline_sink": cat(OPENT(0, 1, 0), XPIPE(0, 16, 1, True), READ(0), XPIPE(0, 16, 2, True), WAIT(9), READ(0)),
    "expect_pipeline_reading": cat(OPEN(0), XPIPE(0, 32, 3), PUMP(4), READ(0)),
    "expect_next_head_in_segment": cat(OPENT(0, 0, 1), REQ(0, BULK4K), REQ(0, EXPECT), PIPE(0, EXPECT_NEXT), PIPE(0, EXPECT_NEXT), REQ(0, EXPECT_WHOLE), READ(0), WAIT(9), READ(0)),
    "expect_whole_half_closed": cat(OPEN(0), PIPE(0, EXPECT_WHOLE), SHUT(0), PUMP(8), READ(0)),

    # A refusal on a freshly accepted connection is framed for that
    # connection, not from the slot's last request (a HEAD).
    "fresh_conn_refusal_after_head": cat(OREQ(0, PARTIAL), OREQ(1, PARTIAL), OREQ(2, HEAD_NEVER), PUMP(2), OPEN(4), PUMP(2), CLOSE(2, True), PUMP(2), OPEN(3), PUMP(4), READALL),
    "fair_share_refused": cat(OREQ(0, NEVER), OREQ(1, NEVER), OREQ(2, PARTIAL), OPEN(4), PUMP(2), OREQ(5, NOW), PUMP(2), CLOSE(2), OPEN(3), PUMP(4), READALL, WAIT(24), READALL),
    # A chunked upload of many small chunks is not refused for its size lines.
    "chunked_many_chunks": cat(OREQ(0, CHUNK_FLOOD), PUMP(8), READ(0)),
    "chunked_many_chunks_pipelined": cat(OPEN(0), PIPE(0, CHUNK_FLOOD), PUMP(8), READ(0), PUMP(8), READ(0)),
}

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus_server")
os.makedirs(here, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(here, name), "wb") as f:
        f.write(data)
print(f"{len(SEEDS)} seeds written to {here}")
