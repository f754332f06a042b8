"""Property tests on hostile input: nothing but results, anomalies or a
CaptureError may come out of the reading pipeline.

Each property is bounded (a few dozen examples, each a few ms) so that
the file runs in CI in seconds; the atheris harnesses of tests/fuzz/
search the same invariants for as long as one cares to run them.
"""

from __future__ import annotations

import gzip
import random
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fcgiforensics.anomalies import CATALOGUE, Anomaly
from fcgiforensics.decoders.base import Direction
from fcgiforensics.errors import CaptureError
from fcgiforensics.reassembly import Reassembler, ReassemblyLimits
from fcgiforensics.testing import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    Conversation,
    pcap_bytes,
    pcapng_bytes,
)

from .conftest import CollectingSink
from .fuzz.pipeline import (
    check_items,
    decoder_classes,
    follow_path,
    new_decoder,
)

BOUNDED = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- capture files: valid ones, then damaged -------------------------------


def _conversation(server_port: int = 80) -> Conversation:
    conv = Conversation(server_port=server_port, mss=600)
    conv.handshake()
    conv.send_to_server(b"GET /a HTTP/1.1\r\nHost: p\r\n\r\n")
    conv.send_to_client(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                        b"\r\n4\r\nbody\r\n0\r\n\r\n")
    conv.raw(False, 3, b"XXXX")  # a conflicting retransmission
    conv.close()
    return conv


def _fcgi_conversation() -> Conversation:
    conv = Conversation(server_port=9000, mss=600)
    conv.handshake()
    begin = struct.pack("!BBHHBx", 1, 1, 1, 8, 0) + b"\0\1\0\0\0\0\0\0"
    conv.send_to_server(begin + struct.pack("!BBHHBx", 1, 4, 1, 0, 0))
    out = b"Content-Type: text/plain\r\n\r\nhello"
    conv.send_to_client(struct.pack("!BBHHBx", 1, 6, 1, len(out), 3) + out
                        + b"\0\0\0" + struct.pack("!BBHHBx", 1, 3, 1, 8, 0)
                        + b"\0" * 8)
    conv.close()
    return conv


def _valid_files() -> list[bytes]:
    http = _conversation().frames()
    fcgi = _fcgi_conversation().frames()
    return [
        pcap_bytes(http),
        pcap_bytes(fcgi, big_endian=True, nanosecond=True),
        pcapng_bytes(http),
        pcapng_bytes(fcgi, big_endian=True, tsresol=9),
        pcapng_bytes(http, simple=True),
        gzip.compress(pcap_bytes(fcgi), mtime=0),
    ]


VALID = _valid_files()

_flip = st.tuples(st.just("flip"), st.integers(0, 1 << 16),
                  st.integers(0, 255))
_cut = st.tuples(st.just("cut"), st.integers(0, 1 << 16), st.just(0))
_splice = st.tuples(st.just("splice"), st.integers(0, 1 << 16),
                    st.integers(0, len(VALID) - 1))
_insert = st.tuples(st.just("insert"), st.integers(0, 1 << 16),
                    st.integers(0, 255))
_word = st.tuples(st.just("word"), st.integers(0, 1 << 16),
                  st.sampled_from([0, 0xFFFFFFFF, 0x7FFFFFFF, 12, 8, 1, 6,
                                   0x0A0D0D0A, 70_000_000]))


def mutate(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    """Apply byte flips, cuts, splices, inserts and 32-bit overwrites."""
    buf = bytearray(data)
    for kind, where, arg in ops:
        pos = where % (len(buf) + 1)
        if kind == "flip" and buf:
            buf[pos % len(buf)] ^= arg or 1
        elif kind == "cut":
            del buf[pos:]
        elif kind == "splice":
            other = VALID[arg]
            buf[pos:] = other[pos % (len(other) + 1):]
        elif kind == "insert":
            buf[pos:pos] = bytes([arg]) * (1 + arg % 16)
        elif kind == "word" and len(buf) >= 4:
            pos = min(pos, len(buf) - 4)
            buf[pos:pos + 4] = struct.pack("<I", arg)
    return bytes(buf)


def _run_file(data: bytes, protocol: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mutated.cap"
        path.write_bytes(data)
        try:
            outcome = follow_path(str(path), protocol)
        except CaptureError:
            event("CaptureError")
            return
    event("read" if outcome.packets else "read, no packets")
    assert set(outcome.anomalies) <= set(CATALOGUE)


@BOUNDED
@given(base=st.integers(0, len(VALID) - 1),
       ops=st.lists(st.one_of(_flip, _cut, _splice, _insert, _word),
                    min_size=1, max_size=6))
def test_mutated_captures_give_results_or_a_capture_error(
        base: int, ops: list[tuple[str, int, int]]) -> None:
    """Flipped, cut, spliced or overwritten pcap/pcapng bytes end in
    results plus anomalies, or in a CaptureError; nothing else."""
    _run_file(mutate(VALID[base], ops), "auto")


@BOUNDED
@given(data=st.binary(max_size=512),
       head=st.sampled_from([b"", b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\x3c\x4d",
                             b"\x0a\x0d\x0d\x0a", b"\x1f\x8b"]))
def test_random_bytes_give_results_or_a_capture_error(
        data: bytes, head: bytes) -> None:
    """Random bytes, behind each format's magic or none, end in results or
    a CaptureError."""
    _run_file(head + data, "auto")


# -- the reassembler on its own ----------------------------------------------

STREAM = bytes(range(256)) * 12
ISNS = st.sampled_from([0, 1000, 2**31 - 5, 2**32 - 700, 2**32 - 1])


class _OffsetSink:
    """A sink that checks each direction's calls are contiguous and keeps
    only the offsets (gaps here may be gigabytes long)."""

    def __init__(self) -> None:
        self.next = [0, 0]
        self.ended = [False, False]
        self.fed_after_end = 0

    def feed(self, direction: Direction, offset: int, data: bytes) -> None:
        assert offset == self.next[direction]
        self.fed_after_end += self.ended[direction]
        self.next[direction] += len(data)

    def gap(self, direction: Direction, offset: int, length: int) -> None:
        assert offset == self.next[direction] and length > 0
        self.next[direction] += length

    def end(self, direction: Direction, offset: int) -> None:
        assert offset == self.next[direction]
        self.ended[direction] = True


def _new_reassembler(small: bool, sink: type = CollectingSink
                     ) -> tuple[Reassembler, list[Any]]:
    sinks: list[Any] = []

    def sink_for(conn: object) -> object:
        sinks.append(sink())
        return sinks[-1]

    limits = ReassemblyLimits(pending_bytes=1500, retained_bytes=700,
                              connections=4) if small else None
    return Reassembler(sink_for, capture="prop", limits=limits), sinks


def _segments(cuts: list[int]) -> list[tuple[int, int]]:
    points = sorted({0, len(STREAM), *(c % len(STREAM) for c in cuts)})
    return list(zip(points, points[1:], strict=False))


@BOUNDED
@given(isn=ISNS, cuts=st.lists(st.integers(0, 10**6), max_size=30),
       order=st.randoms(use_true_random=False),
       dup=st.floats(0, 0.6), drop=st.floats(0, 0.3), small=st.booleans())
def test_any_segment_order_keeps_every_delivered_byte_true(
        isn: int, cuts: list[int], order: object, dup: float, drop: float,
        small: bool) -> None:
    """Any order, duplication or loss of segments, any ISN and tight limits:
    the stream is delivered contiguously, every byte outside a declared gap
    is the byte sent, and gaps plus data cover the stream to its FIN."""
    assert isinstance(order, random.Random)
    reassembler, sinks = _new_reassembler(small)
    a, b = b"\x0a\0\0\x01", b"\x0a\0\0\x02"
    reassembler.add(1, 1, a, 4000, b, 80, isn, 0, SYN, b"")
    pieces = _segments(cuts)
    sent = [p for p in pieces if order.random() >= drop]
    sent += [p for p in sent if order.random() < dup]
    order.shuffle(sent)
    for frame, (lo, hi) in enumerate(sent, start=2):
        reassembler.add(frame, frame, a, 4000, b, 80,
                        (isn + 1 + lo) % 2**32, 0, PSH, STREAM[lo:hi])
    fin_seq = (isn + 1 + len(STREAM)) % 2**32
    reassembler.add(9999, 9999, a, 4000, b, 80, fin_seq, 0, FIN, b"")
    reassembler.finish()

    [conn] = reassembler.connections
    [sink] = sinks
    half = conn.halves[Direction.TO_SERVER]
    got = bytes(sink.data[Direction.TO_SERVER])
    assert len(got) == len(STREAM) == half.length
    holes = [(g.offset, g.offset + g.length) for g in half.gaps]
    for i in range(len(STREAM)):
        if not any(lo <= i < hi for lo, hi in holes):
            assert got[i] == STREAM[i], i
    assert not half.conflicts
    assert {a.name for a in conn.anomalies} <= set(CATALOGUE)


_segment = st.tuples(
    st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
    st.sampled_from([0, SYN, SYN | ACK, ACK, PSH | ACK, FIN | ACK, RST,
                     RST | ACK, SYN | FIN, 0x3F]),
    st.binary(max_size=64), st.integers(0, 3), st.booleans(),
    st.integers(0, 2000))


@BOUNDED
@given(segments=st.lists(_segment, max_size=40), small=st.booleans())
def test_arbitrary_segments_never_break_the_reassembler(
        segments: list[tuple[int, int, int, bytes, int, bool, int]],
        small: bool) -> None:
    """Arbitrary sequence and ack numbers, flag sets, snaplen cuts and
    4-tuples never raise, and every sink sees contiguous offsets."""
    reassembler, sinks = _new_reassembler(small, _OffsetSink)
    hosts = [b"\x0a\0\0\x01", b"\x0a\0\0\x02"]
    for frame, (seq, ack, flags, data, tuple_id, back, missing) in \
            enumerate(segments, start=1):
        src, dst = hosts[back], hosts[not back]
        sport, dport = (1000 + tuple_id, 80) if not back else \
            (80, 1000 + tuple_id)
        reassembler.add(frame, frame * 1000, src, sport, dst, dport, seq,
                        ack, flags, data, missing % 3 * (missing // 3))
    reassembler.finish()
    for conn, sink in zip(reassembler.connections, sinks, strict=True):
        assert not sink.fed_after_end
        assert {a.name for a in conn.anomalies} <= set(CATALOGUE)
        for half in conn.halves:
            assert sink.next[half.direction] == half.length
            assert sink.ended[half.direction]


def test_bytes_at_the_fin_offset_are_not_fed_after_the_end() -> None:
    """A segment carrying bytes at the FIN's offset, after the FIN ended
    the direction, is reported as tcp.data_after_fin and not fed."""
    reassembler, sinks = _new_reassembler(False, _OffsetSink)
    a, b = b"\x0a\0\0\x01", b"\x0a\0\0\x02"
    reassembler.add(1, 1, a, 4000, b, 80, 99, 0, SYN, b"")
    reassembler.add(2, 2, a, 4000, b, 80, 100, 0, FIN | ACK, b"")
    reassembler.add(3, 3, a, 4000, b, 80, 100, 0, PSH | ACK, b"late")
    reassembler.finish()
    [conn] = reassembler.connections
    [sink] = sinks
    assert sink.fed_after_end == 0
    assert "tcp.data_after_fin" in {a.name for a in conn.anomalies}


# -- the protocol decoders on random and half-valid streams ------------------

HTTP_TOKENS = [
    b"GET / HTTP/1.1\r\n", b"POST /up HTTP/1.0\r\n", b"HEAD /h HTTP/1.1\r\n",
    b"CONNECT x:443 HTTP/1.1\r\n", b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 100 Continue\r\n", b"HTTP/1.1 101 Switching\r\n",
    b"HTTP/1.1 204 No Content\r\n", b"HTTP/1.1 304 Not Modified\r\n",
    b"HTTP/1.1 206 Partial\r\n", b"HTTP/1.0 500 Oops\r\n", b"Host: h\r\n",
    b"Content-Length: 5\r\n", b"Content-Length: 0\r\n",
    b"Content-Length: 99999999999999999999\r\n", b"Content-Length: 3, 4\r\n",
    b"Transfer-Encoding: chunked\r\n", b"Transfer-Encoding: gzip\r\n",
    b"Content-Encoding: gzip\r\n", b"Content-Encoding: br, zstd\r\n",
    b"Content-Encoding: deflate\r\n", b"Content-Range: bytes 0-4/10\r\n",
    b"Connection: close\r\n", b"Expect: 100-continue\r\n", b" folded\r\n",
    b"Bad Header\r\n", b"X: \x00\r\n", b"\r\n", b"\n", b"hello",
    b"5\r\nhello\r\n", b"0\r\n\r\n", b"ffffffffffffffffff\r\n", b"5;x=y\r\n",
    b"0\r\nTrailer: t\r\n\r\n", gzip.compress(b"hello world" * 20, mtime=0),
    gzip.compress(b"abc", mtime=0)[:15], b"\x1f\x8b\x08\x00",
    b"\x28\xb5\x2f\xfd", b"\xff" * 8,
]


def _stream(tokens: list[int], raw: list[bytes]) -> bytes:
    parts = [HTTP_TOKENS[t % len(HTTP_TOKENS)] for t in tokens]
    for i, blob in enumerate(raw):
        parts.insert(i * 3 % (len(parts) + 1), blob)
    return b"".join(parts)


def _schedule(streams: tuple[bytes, bytes], cuts: list[int],
              gaps: list[int]) -> list[tuple[str, Direction, int, int]]:
    """Calls feeding both streams in pieces, interleaved, some lost."""
    calls: list[tuple[str, Direction, int, int]] = []
    for direction in Direction:
        data = streams[direction]
        points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
        for n, (lo, hi) in enumerate(zip(points, points[1:], strict=False)):
            kind = "gap" if n in gaps else "feed"
            calls.append((kind, direction, lo, hi))
    return calls


def _drive(protocol: str, streams: tuple[bytes, bytes],
           calls: list[tuple[str, Direction, int, int]],
           pick: Callable[[list[Direction]], Direction]) -> list[object]:
    """Make ``calls``, choosing the next direction with ``pick``."""
    decoder = new_decoder(protocol)
    queues = {d: [c for c in calls if c[1] is d] for d in Direction}
    out: list[object] = []
    while queues[Direction.TO_SERVER] or queues[Direction.TO_CLIENT]:
        ready = [d for d in Direction if queues[d]]
        kind, direction, lo, hi = queues[pick(ready)].pop(0)
        if kind == "gap":
            out += decoder.gap(direction, lo, hi - lo)
        else:
            out += decoder.feed(direction, lo, streams[direction][lo:hi])
    for direction in Direction:
        out += decoder.end(direction, len(streams[direction]))
    out += decoder.close()
    return out


def _chooser(mix: object) -> Callable[[list[Direction]], Direction]:
    assert isinstance(mix, random.Random)
    return mix.choice


needs_http = pytest.mark.skipif("http" not in decoder_classes(),
                                reason="HTTP/1.x decoder not importable")
needs_fcgi = pytest.mark.skipif("fcgi" not in decoder_classes(),
                                reason="FastCGI decoder not importable")

_tokens = st.lists(st.integers(0, 10**4), max_size=40)
_raw = st.lists(st.binary(max_size=40), max_size=4)
_cuts = st.lists(st.integers(0, 10**5), max_size=20)
_gaps = st.lists(st.integers(0, 20), max_size=2)


@needs_http
@BOUNDED
@given(request=_tokens, response=_tokens, raw=_raw, cuts=_cuts, gaps=_gaps,
       mix=st.randoms(use_true_random=False))
def test_http_decoder_returns_only_exchanges_and_anomalies(
        request: list[int], response: list[int], raw: list[bytes],
        cuts: list[int], gaps: list[int], mix: object) -> None:
    """Half-valid HTTP/1.x streams fed in any split, interleaving and with
    lost pieces give exchanges and catalogued anomalies, never an
    exception."""
    streams = (_stream(request, raw), _stream(response, raw[::-1]))
    items = _drive("http", streams, _schedule(streams, cuts, gaps),
                   _chooser(mix))
    check_items(items, "http")


@needs_http
@BOUNDED
@given(request=_tokens, response=_tokens, cuts=_cuts)
def test_http_decoder_gives_the_same_result_for_any_split(
        request: list[int], response: list[int], cuts: list[int]) -> None:
    """Fed all of the requests then all of the responses, the decoder
    returns the same anomaly names and exchange count whether the streams
    come whole or cut anywhere."""
    streams = (_stream(request, []), _stream(response, []))
    whole = _drive("http", streams, _schedule(streams, [], []), _first)
    pieces = _drive("http", streams, _schedule(streams, cuts, []), _first)
    assert _digest(whole) == _digest(pieces)


def _first(ready: list[Direction]) -> Direction:
    return ready[0]


def _digest(items: list[object]) -> tuple[list[str], int]:
    names = sorted(i.name for i in items if isinstance(i, Anomaly))
    return names, sum(not isinstance(i, Anomaly) for i in items)


_record = st.tuples(
    st.sampled_from([1, 1, 1, 1, 0, 2, 255]),  # version, mostly 1
    st.integers(0, 12),  # type, 12 undefined
    st.sampled_from([0, 1, 1, 1, 2, 65535]),  # request id
    st.binary(max_size=60),
    st.integers(0, 9),  # padding
    st.sampled_from([None, None, None, 0, 8, 65535]),  # a lying length
)


def _records(specs: list[tuple[int, int, int, bytes, int, int | None]]) -> bytes:
    out = []
    for version, rtype, rid, content, pad, lying in specs:
        length = len(content) if lying is None else lying
        out.append(struct.pack("!BBHHBx", version, rtype, rid, length, pad)
                   + content + b"\0" * pad)
    return b"".join(out)


def _begin(rid: int) -> tuple[int, int, int, bytes, int, None]:
    return (1, 1, rid, b"\0\1\1\0\0\0\0\0", 0, None)


@needs_fcgi
@BOUNDED
@given(to_server=st.lists(_record, max_size=12),
       to_client=st.lists(_record, max_size=16), cuts=_cuts, gaps=_gaps,
       mix=st.randoms(use_true_random=False), begin=st.booleans())
def test_fastcgi_decoder_returns_only_requests_and_anomalies(
        to_server: list[tuple[int, int, int, bytes, int, int | None]],
        to_client: list[tuple[int, int, int, bytes, int, int | None]],
        cuts: list[int], gaps: list[int], mix: object, begin: bool) -> None:
    """Random FastCGI records (bad versions, unknown types, lying lengths)
    fed in any split and interleaving, with lost pieces, give requests,
    management records and catalogued anomalies, never an exception."""
    if begin:
        to_server = [_begin(1), *to_server]
    streams = (_records(to_server), _records(to_client))
    items = _drive("fcgi", streams, _schedule(streams, cuts, gaps),
                   _chooser(mix))
    check_items(items, "fcgi")


@needs_fcgi
@BOUNDED
@given(data=st.binary(max_size=600), back=st.binary(max_size=600),
       cuts=_cuts, mix=st.randoms(use_true_random=False))
def test_fastcgi_decoder_survives_random_bytes(
        data: bytes, back: bytes, cuts: list[int], mix: object) -> None:
    """Random bytes in both directions give only catalogued anomalies and
    messages."""
    streams = (data, back)
    items = _drive("fcgi", streams, _schedule(streams, cuts, []),
                   _chooser(mix))
    check_items(items, "fcgi")
