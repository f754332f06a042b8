"""Reassembly properties over any capture order of a direction's segments.

"First" means first in capture order, so a shuffle changes which copy of
a byte is first.  What holds for every order: each byte the stream
carries comes from the earliest-captured segment holding it; a byte no
segment holds is a gap; a later copy that differs is a conflict naming
both frames.  With no differing copies, every order gives the same
stream and the same gaps.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fcgiforensics.decoders.base import Direction
from fcgiforensics.reassembly import Connection, Reassembler
from fcgiforensics.testing import ACK, FIN, PSH, SYN

STREAM = random.Random(11).randbytes(3000)
CLIENT, SERVER = b"\x0a\0\0\x01", b"\x0a\0\0\x02"

PROPERTIES = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass(frozen=True, slots=True)
class Segment:
    """One captured segment: the bytes it carries from ``offset`` on, then
    ``missing`` bytes a snaplen cut off (both empty for a probe)."""

    offset: int
    data: bytes
    missing: int = 0

    @property
    def carried(self) -> range:
        return range(self.offset, self.offset + len(self.data))

    @property
    def cut(self) -> range:
        start = self.offset + len(self.data)
        return range(start, start + self.missing)


@dataclass(slots=True)
class ByteSink:
    """Records every byte delivered and the gaps, in stream order."""

    data: bytearray
    gaps: list[tuple[int, int]]
    ended: bool = False

    def feed(self, direction: Direction, offset: int, data: bytes) -> None:
        assert direction is Direction.TO_SERVER
        assert offset == len(self.data) and not self.ended
        self.data += data

    def gap(self, direction: Direction, offset: int, length: int) -> None:
        assert offset == len(self.data) and length > 0 and not self.ended
        self.gaps.append((offset, length))
        self.data += b"\0" * length

    def end(self, direction: Direction, offset: int) -> None:
        if direction is Direction.TO_SERVER:
            assert offset == len(self.data)
            self.ended = True


@st.composite
def segments(draw: st.DrawFn, conflicting: bool) -> list[Segment]:
    """Segments over STREAM: true copies, snaplen-cut copies, zero-length
    probes and (if ``conflicting``) copies with altered bytes, with
    duplicates; a cut never hides bytes another segment carries, so
    each byte's evidence does not depend on the order."""
    kinds = ["true", "cut", "probe"] + (["conflict"] if conflicting else [])
    out: list[Segment] = []
    for _ in range(draw(st.integers(0, 24))):
        offset = draw(st.integers(0, len(STREAM) - 1))
        end = min(len(STREAM), offset + draw(st.integers(1, 700)))
        kind = draw(st.sampled_from(kinds))
        true = STREAM[offset:end]
        if kind == "true":
            out.append(Segment(offset, true))
        elif kind == "cut":
            keep = draw(st.integers(0, len(true) - 1))
            out.append(Segment(offset, true[:keep], len(true) - keep))
        elif kind == "probe":
            out.append(Segment(offset, b""))
        elif len(true) >= 2:  # one byte at next-1 would be a keep-alive
            forged = bytearray(true)
            for i in draw(st.lists(st.integers(0, len(true) - 1), min_size=1)):
                forged[i] ^= draw(st.integers(1, 255))
            out.append(Segment(offset, bytes(forged)))
    out += (
        [out[i % len(out)] for i in draw(st.lists(st.integers(0, 99)))] if out else []
    )
    return [
        s
        for s in out
        if not s.missing
        or not any(set(s.cut) & set(o.carried) for o in out if o is not s and o != s)
    ]


def _run(order: list[Segment], fin_at: int, isn: int) -> tuple[Connection, ByteSink]:
    """Feed SYN, ``order`` (with the FIN after ``fin_at`` segments), finish."""
    sinks: list[ByteSink] = []

    def sink_for(conn: Connection) -> ByteSink:
        sinks.append(ByteSink(bytearray(), []))
        return sinks[-1]

    reassembler = Reassembler(sink_for, capture="prop")
    add = reassembler.add
    add(1, 1, CLIENT, 4000, SERVER, 80, isn, 0, SYN, b"")
    frame = 2
    for i, seg in enumerate([*order, None]):
        if i == fin_at:
            seq = (isn + 1 + len(STREAM)) % 2**32
            add(frame, frame, CLIENT, 4000, SERVER, 80, seq, 0, FIN | ACK, b"")
            frame += 1
        if seg is not None:
            seq = (isn + 1 + seg.offset) % 2**32
            flags = PSH | ACK if seg.data or seg.missing else ACK
            add(
                frame,
                frame,
                CLIENT,
                4000,
                SERVER,
                80,
                seq,
                0,
                flags,
                seg.data,
                seg.missing,
            )
            frame += 1
    reassembler.finish()
    [conn] = reassembler.connections
    return conn, sinks[0]


def _frames(order: list[Segment], fin_at: int) -> list[int]:
    """The frame number each segment of ``order`` was given by :func:`_run`."""
    return [2 + i + (i >= fin_at) for i in range(len(order))]


def _evidence(sink: ByteSink) -> tuple[bytes, frozenset[int]]:
    """The stream bytes and the set of offsets that are gaps."""
    holes = frozenset(i for off, n in sink.gaps for i in range(off, off + n))
    return bytes(sink.data), holes


@PROPERTIES
@given(
    segs=segments(conflicting=True),
    order=st.randoms(use_true_random=False),
    fin=st.integers(0, 60),
    isn=st.integers(0, 2**32 - 1),
)
def test_each_byte_comes_from_its_earliest_captured_copy(
    segs: list[Segment], order: random.Random, fin: int, isn: int
) -> None:
    """In any capture order, the stream carries each byte from the first
    captured segment that holds it, a byte no segment holds is a gap, and
    every later copy that differs is a conflict naming both frames, with
    receiver_kept 'first' only if the first copy was delivered before the
    later one was captured."""
    order.shuffle(segs)
    fin_at = fin % (len(segs) + 1)
    conn, sink = _run(segs, fin_at, isn)
    half = conn.to_server
    frames = _frames(segs, fin_at)
    stream, holes = _evidence(sink)
    assert sink.ended and len(stream) == half.length == len(STREAM)

    # When each offset became deliverable: once every byte up to it was
    # held or known cut by some segment captured so far (inf: never).
    covered_at = [float("inf")] * len(STREAM)
    for seg, frame in zip(segs, frames, strict=True):
        for i in [*seg.carried, *seg.cut]:
            covered_at[i] = min(covered_at[i], frame)
    delivered_at = []
    latest = 0.0
    for when in covered_at:
        latest = max(latest, when)
        delivered_at.append(latest)

    for i in range(len(STREAM)):
        holders = [
            (frame, seg.data[i - seg.offset])
            for seg, frame in zip(segs, frames, strict=True)
            if i in seg.carried
        ]
        if not holders:
            assert i in holes, i
            continue
        first_frame, first_byte = holders[0]
        assert i not in holes and stream[i] == first_byte, i
        assert half.frames_for(i, i + 1) == [first_frame], i
        for frame, byte in holders[1:]:
            if byte == first_byte:
                continue
            kept = "first" if delivered_at[i] < frame else "unknown"
            assert any(
                c.second_frame == frame
                and first_frame in c.first_frames
                and c.offset <= i < c.offset + len(c.second)
                and c.first[i - c.offset] == first_byte
                and c.second[i - c.offset] == byte
                and c.receiver_kept == kept
                for c in half.conflicts
            ), (i, frame)

    # Nothing is reported that the stream does not show.
    for c in half.conflicts:
        assert stream[c.offset : c.offset + len(c.first)] == c.first
    names = {a.name for a in conn.anomalies}
    assert names <= {"tcp.gap", "tcp.overlap_conflict"}


@PROPERTIES
@given(
    segs=segments(conflicting=False),
    orders=st.lists(st.randoms(use_true_random=False), min_size=2, max_size=2),
    fins=st.lists(st.integers(0, 60), min_size=2, max_size=2),
)
def test_any_order_of_agreeing_copies_gives_the_same_stream(
    segs: list[Segment], orders: list[random.Random], fins: list[int]
) -> None:
    """Copies that agree (with duplicates, snaplen cuts, probes and the FIN
    anywhere) give the same stream and the same gaps in any order, and no
    conflict."""
    results = []
    for order, fin in zip(orders, fins, strict=True):
        shuffled = list(segs)
        order.shuffle(shuffled)
        conn, sink = _run(shuffled, fin % (len(segs) + 1), 1000)
        assert not conn.to_server.conflicts
        results.append(_evidence(sink))
    assert results[0] == results[1]
    stream, holes = results[0]
    for i in range(len(STREAM)):
        if i not in holes:
            assert stream[i] == STREAM[i]
        else:
            assert not any(i in s.carried for s in segs)
