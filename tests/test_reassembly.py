"""TCP reassembly: the delivered stream and the evidence of what is missing."""

from __future__ import annotations

import random
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fcgiforensics.capture.leg import follow_leg
from fcgiforensics.capture.packets import NotTcp, decode_tcp
from fcgiforensics.decoders.base import Direction
from fcgiforensics.reassembly import Reassembler, ReassemblyLimits
from fcgiforensics.testing import ACK, FIN, RST, SYN, Conversation, Frame, write_pcap

from .conftest import follow_frames

SERVER_DATA = bytes(random.Random(7).randbytes(20_000))
REQUEST = b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n"


def _exchange(**kw: object) -> tuple[Conversation, list[Frame], list[Frame]]:
    """A connection whose server sends SERVER_DATA; returns the data frames."""
    conv = Conversation(**kw)  # type: ignore[arg-type]
    conv.handshake()
    req = conv.send_to_server(REQUEST)
    data = conv.send_to_client(SERVER_DATA)
    return conv, req, data


def test_in_order_stream_is_delivered_whole(tmp_path: Path) -> None:
    """An undamaged connection yields both directions byte for byte, no
    anomalies, and each direction ends at its FIN."""
    conv, _, _ = _exchange()
    conv.ack_to_client()
    conv.close()
    out = follow_frames(tmp_path, conv.frames())
    [conn] = out.connections
    [sink] = out.sinks
    assert bytes(sink.data[0]) == REQUEST
    assert bytes(sink.data[1]) == SERVER_DATA
    assert conn.anomalies == []
    assert sorted(sink.ends) == [
        (Direction.TO_SERVER, len(REQUEST)),
        (Direction.TO_CLIENT, len(SERVER_DATA)),
    ]
    assert conn.to_client.fin and conn.to_server.fin
    assert not conn.midstream


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(seed=st.integers(0, 2**32), dup=st.floats(0, 0.5), mss=st.integers(200, 3000))
def test_any_reordering_or_duplication_gives_the_same_stream(
    tmp_path: Path, seed: int, dup: float, mss: int
) -> None:
    """Reordering and duplicating data segments changes neither the stream
    nor the evidence: no gap, no conflict."""
    conv = Conversation(mss=mss)
    conv.handshake()
    conv.send_to_server(REQUEST)
    data = conv.send_to_client(SERVER_DATA)
    head = conv.frames()[: len(conv.frames()) - len(data)]
    rng = random.Random(seed)
    shuffled = list(data)
    rng.shuffle(shuffled)
    shuffled += [f for f in data if rng.random() < dup]
    rng.shuffle(shuffled)
    conv2 = Conversation(mss=mss)
    conv2._frames = head + shuffled  # noqa: SLF001 - same sequence space
    conv2._cseq = conv._cseq  # noqa: SLF001
    conv2._sseq = conv._sseq  # noqa: SLF001
    conv2.ack_to_client()
    conv2.close()
    out = follow_frames(tmp_path, conv2.frames())
    [conn] = out.connections
    assert bytes(out.sinks[0].data[1]) == SERVER_DATA
    assert not conn.to_client.gaps and not conn.to_client.conflicts
    assert {a.name for a in conn.anomalies} <= set()


def test_segment_lost_by_the_capture_is_an_acked_gap(tmp_path: Path) -> None:
    """Bytes the receiver acknowledged but the capture never saw become a gap
    of reason 'acked' with the frames around it; nothing is zero-filled into
    the evidence as data."""
    conv, _, data = _exchange()
    conv.ack_to_client()
    conv.close()
    lost = data[3]
    frames = [f for f in conv.frames() if f is not lost]
    out = follow_frames(tmp_path, frames)
    [conn] = out.connections
    [gap] = conn.to_client.gaps
    assert (gap.offset, gap.length, gap.reason) == (3 * 1448, 1448, "acked")
    assert out.sinks[0].gaps == [(Direction.TO_CLIENT, 3 * 1448, 1448)]
    assert [a.name for a in conn.anomalies] == ["tcp.gap"]
    stream = bytes(out.sinks[0].data[1])
    assert stream[: 3 * 1448] == SERVER_DATA[: 3 * 1448]
    assert stream[4 * 1448 :] == SERVER_DATA[4 * 1448 :]
    # The frames around the hole: the one before carried bytes up to it.
    assert gap.after_frame is not None
    assert conn.to_client.frames_for(3 * 1448, 4 * 1448) == []


def test_hole_never_acknowledged_is_unseen_at_capture_end(tmp_path: Path) -> None:
    """A hole with data after it and no ACK over it is declared 'unseen'
    when the capture ends."""
    conv, _, data = _exchange()
    frames = [f for f in conv.frames() if f is not data[2]]
    out = follow_frames(tmp_path, frames)
    [gap] = out.connections[0].to_client.gaps
    assert (gap.offset, gap.length, gap.reason) == (2 * 1448, 1448, "unseen")


def test_snaplen_cut_bytes_are_unobserved_not_zero(tmp_path: Path) -> None:
    """Payload cut off by the snaplen becomes a 'snaplen' gap of exactly the
    missing bytes, and the stream keeps its length."""
    conv, _, _ = _exchange()
    conv.ack_to_client()
    conv.close()
    frames = [f.truncated(200) for f in conv.frames()]
    out = follow_frames(tmp_path, frames)
    conn = out.connections[0]
    gaps = conn.to_client.gaps
    assert all(g.reason == "snaplen" for g in gaps)
    assert sum(g.length for g in gaps) == len(SERVER_DATA) - 146 * len(gaps)
    assert conn.to_client.length == len(SERVER_DATA)
    names = {a.name for a in out.stats.anomalies}
    assert names == {"capture.truncated_packet"}


def test_conflicting_retransmission_keeps_both_versions(tmp_path: Path) -> None:
    """A retransmission whose bytes differ is kept beside the first copy with
    both frames; the stream carries the first copy, which the receiver kept."""
    conv, _, data = _exchange()
    forged = bytearray(SERVER_DATA[1448 : 2 * 1448])
    forged[100:104] = b"EVIL"
    retrans = conv.raw(False, 1448, bytes(forged))
    conv.ack_to_client()
    conv.close()
    out = follow_frames(tmp_path, conv.frames())
    conn = out.connections[0]
    [conflict] = conn.to_client.conflicts
    assert conflict.offset == 1448 + 100
    assert conflict.second == b"EVIL"
    assert conflict.first == SERVER_DATA[1548:1552]
    frames = [f.data for f in conv.frames()]
    assert conflict.first_frames == (frames.index(data[1].data) + 1,)
    assert conflict.second_frame == frames.index(retrans.data) + 1
    assert conflict.receiver_kept == "first"
    assert bytes(out.sinks[0].data[1]) == SERVER_DATA
    assert "tcp.overlap_conflict" in {a.name for a in conn.anomalies}


def test_conflict_between_two_waiting_copies_is_undecided(tmp_path: Path) -> None:
    """Two differing copies that both wait out of order are recorded with
    receiver_kept 'unknown': which one a receiver keeps depends on its stack."""
    conv, _, data = _exchange()
    frames = conv.frames()
    other = conv.raw(False, 2 * 1448, b"X" * 1448)
    conv.ack_to_client()
    ordered = [f for f in frames if f is not data[1]] + [other, data[1]]
    ordered += conv.frames()[len(frames) + 1 :]
    out = follow_frames(tmp_path, ordered)
    [conflict] = out.connections[0].to_client.conflicts
    assert conflict.receiver_kept == "unknown"
    assert conflict.offset == 2 * 1448


def test_identical_retransmission_is_counted_not_reported(tmp_path: Path) -> None:
    """A retransmission with the same bytes counts as one and adds no
    anomaly."""
    conv, _, data = _exchange()
    conv._frames.append(data[4])  # noqa: SLF001 - the same frame again
    out = follow_frames(tmp_path, conv.frames())
    conn = out.connections[0]
    assert conn.to_client.retransmissions == 1
    assert conn.anomalies == []


def test_keepalive_probe_is_not_data(tmp_path: Path) -> None:
    """A keep-alive probe (one byte at next-1) is counted, not delivered."""
    conv, _, _ = _exchange()
    conv.raw(False, len(SERVER_DATA) - 1, b"\0", flags=ACK)
    out = follow_frames(tmp_path, conv.frames())
    conn = out.connections[0]
    assert conn.to_client.keepalives == 1
    assert bytes(out.sinks[0].data[1]) == SERVER_DATA


def test_zero_length_keepalive_probe_is_counted(tmp_path: Path) -> None:
    """A Linux keep-alive probe (no payload, seq one before the next
    expected byte, ACK set) counts as a keep-alive and adds no data and no
    anomaly."""
    conv, _, _ = _exchange()
    conv.raw(False, len(SERVER_DATA) - 1, b"", flags=ACK)
    conv.raw(True, len(REQUEST) - 1, b"", flags=ACK)
    out = follow_frames(tmp_path, conv.frames())
    conn = out.connections[0]
    assert (conn.to_client.keepalives, conn.to_server.keepalives) == (1, 1)
    assert bytes(out.sinks[0].data[1]) == SERVER_DATA
    assert conn.anomalies == []


def test_rst_ends_both_directions(tmp_path: Path) -> None:
    """RST is recorded and ends both directions at once."""
    conv, _, _ = _exchange()
    conv.raw(True, len(REQUEST), b"", flags=RST | ACK)
    out = follow_frames(tmp_path, conv.frames())
    conn = out.connections[0]
    assert conn.to_server.rst
    assert "tcp.rst" in {a.name for a in conn.anomalies}
    assert len(out.sinks[0].ends) == 2


def test_new_syn_on_reused_tuple_starts_new_connection(tmp_path: Path) -> None:
    """A fresh SYN on a closed 4-tuple opens a second connection."""
    a, _, _ = _exchange()
    a.close()
    b, _, _ = _exchange(
        client_isn=9_000_000, server_isn=77, start_ns=1_800_000_000_000_000_000
    )
    b.close()
    out = follow_frames(tmp_path, a.frames() + b.frames())
    assert len(out.connections) == 2
    assert all(bytes(s.data[1]) == SERVER_DATA for s in out.sinks)
    assert out.connections[1].first_frame == len(a.frames()) + 1


def test_retransmitted_syn_is_the_same_connection(tmp_path: Path) -> None:
    """A SYN sent twice does not open a second connection."""
    conv, _, _ = _exchange()
    frames = conv.frames()
    out = follow_frames(tmp_path, frames[:1] + frames)
    assert len(out.connections) == 1


def test_midstream_connection_is_kept_and_marked(tmp_path: Path) -> None:
    """A connection first seen without its SYN is followed from its first
    byte seen, with the client guessed from the ports."""
    conv, _, data = _exchange()
    frames = conv.frames()
    start = frames.index(data[2])
    out = follow_frames(tmp_path, frames[start:])
    [conn] = out.connections
    assert conn.midstream
    assert conn.client[1] == 40000
    assert bytes(out.sinks[0].data[1]) == SERVER_DATA[2 * 1448 :]
    assert [a.name for a in conn.anomalies] == ["tcp.midstream"]


def test_sequence_wraparound_is_invisible(tmp_path: Path) -> None:
    """A stream whose sequence numbers wrap past 2**32 has continuous
    64-bit offsets."""
    conv, _, _ = _exchange(server_isn=2**32 - 5000)
    conv.close()
    out = follow_frames(tmp_path, conv.frames())
    assert bytes(out.sinks[0].data[1]) == SERVER_DATA
    assert out.connections[0].anomalies == []


def test_offsets_map_back_to_frames_and_times(tmp_path: Path) -> None:
    """Every stream byte maps back to the frame (1-based) and time that
    carried it."""
    conv, _, data = _exchange()
    out = follow_frames(tmp_path, conv.frames())
    half = out.connections[0].to_client
    frames = conv.frames()
    numbers = [frames.index(f) + 1 for f in data]
    assert half.frames_for(0, 1) == numbers[:1]
    assert half.frames_for(1447, 1449) == numbers[:2]
    assert half.frames_for(0, len(SERVER_DATA)) == numbers
    assert half.time_at(1448) == data[1].ts_ns


def test_data_after_fin_is_reported(tmp_path: Path) -> None:
    """Bytes sent beyond a FIN are an anomaly, not stream data."""
    conv, _, _ = _exchange()
    conv.raw(False, len(SERVER_DATA), b"", flags=FIN | ACK)
    conv.raw(False, len(SERVER_DATA) + 10, b"late")
    out = follow_frames(tmp_path, conv.frames())
    conn = out.connections[0]
    assert "tcp.data_after_fin" in {a.name for a in conn.anomalies}
    assert bytes(out.sinks[0].data[1]) == SERVER_DATA


def test_syn_flags_constant_is_consistent() -> None:
    """The testing module's flag values are TCP's (RFC 9293 section 3.1)."""
    assert (FIN, SYN, RST, ACK) == (1, 2, 4, 16)


def _frame_number(frames: list[Frame], frame: Frame) -> int:
    """The 1-based number of ``frame`` in ``frames``."""
    return [f.data for f in frames].index(frame.data) + 1


def test_longer_copy_at_a_waiting_offset_does_not_replace_it(
    tmp_path: Path,
) -> None:
    """A longer, different copy arriving at the offset of a waiting segment
    leaves the stream carrying the waiting (earlier) copy, and the
    difference is a conflict whose receiver_kept is 'unknown'."""
    conv, _, data = _exchange()
    frames = conv.frames()
    forged = b"X" * 1448 + SERVER_DATA[3 * 1448 : 3 * 1448 + 10]
    longer = conv.raw(False, 2 * 1448, forged)
    conv.ack_to_client()
    conv.close()
    tail = conv.frames()[len(frames) + 1 :]
    ordered = [f for f in frames if f is not data[1] and f is not data[3]]
    ordered += [longer, data[1], data[3], *tail]
    out = follow_frames(tmp_path, ordered)
    half = out.connections[0].to_client
    assert bytes(out.sinks[0].data[1]) == SERVER_DATA
    [conflict] = half.conflicts
    assert conflict.offset == 2 * 1448
    assert conflict.first == SERVER_DATA[2 * 1448 : 3 * 1448]
    assert conflict.second == b"X" * 1448
    assert conflict.first_frames == (_frame_number(ordered, data[2]),)
    assert conflict.second_frame == _frame_number(ordered, longer)
    assert conflict.receiver_kept == "unknown"


def test_overlapping_waiting_copies_keep_the_earliest_captured(
    tmp_path: Path,
) -> None:
    """Copies waiting at different, overlapping offsets: each byte comes from
    the copy captured first, even when a later copy starts lower, and each
    differing overlap names the earlier frame as first, receiver 'unknown'."""
    conv, _, data = _exchange()
    frames = conv.frames()
    straddle = conv.raw(False, 3 * 1448 - 100, b"Y" * 200)
    conv.ack_to_client()
    tail = conv.frames()[len(frames) + 1 :]
    ordered = [f for f in frames if f is not data[1]] + [straddle, data[1], *tail]
    out = follow_frames(tmp_path, ordered)
    half = out.connections[0].to_client
    assert bytes(out.sinks[0].data[1]) == SERVER_DATA
    got = sorted(
        (c.offset, c.first, c.second, c.first_frames, c.second_frame, c.receiver_kept)
        for c in half.conflicts
    )
    assert got == [
        (
            3 * 1448 - 100,
            SERVER_DATA[3 * 1448 - 100 : 3 * 1448],
            b"Y" * 100,
            (_frame_number(ordered, data[2]),),
            _frame_number(ordered, straddle),
            "unknown",
        ),
        (
            3 * 1448,
            SERVER_DATA[3 * 1448 : 3 * 1448 + 100],
            b"Y" * 100,
            (_frame_number(ordered, data[3]),),
            _frame_number(ordered, straddle),
            "unknown",
        ),
    ]


def test_in_order_copy_overlapping_a_waiting_one_yields_to_it(
    tmp_path: Path,
) -> None:
    """A segment that fills the hole but runs on into bytes an earlier
    segment already holds does not overwrite them: the stream carries the
    earlier copy and the conflict names it first, receiver 'unknown'."""
    conv, _, data = _exchange()
    frames = conv.frames()
    filler = SERVER_DATA[1448 : 2 * 1448] + b"Z" * 100
    late = conv.raw(False, 1448, filler)
    conv.ack_to_client()
    tail = conv.frames()[len(frames) + 1 :]
    ordered = [f for f in frames if f is not data[1]] + [late, *tail]
    out = follow_frames(tmp_path, ordered)
    half = out.connections[0].to_client
    assert bytes(out.sinks[0].data[1]) == SERVER_DATA
    [conflict] = half.conflicts
    assert conflict.offset == 2 * 1448
    assert conflict.first == SERVER_DATA[2 * 1448 : 2 * 1448 + 100]
    assert conflict.second == b"Z" * 100
    assert conflict.first_frames == (_frame_number(ordered, data[2]),)
    assert conflict.second_frame == _frame_number(ordered, late)
    assert conflict.receiver_kept == "unknown"
    assert half.frames_for(2 * 1448, 2 * 1448 + 1) == [_frame_number(ordered, data[2])]


def test_draining_waiting_segments_never_rescans_all_of_them() -> None:
    """Delivering n waiting segments does not walk the whole waiting set for
    each one (which made 32k waiting segments take seconds)."""
    reassembler = Reassembler(capture="drain")
    a, b = b"\x0a\0\0\x01", b"\x0a\0\0\x02"
    reassembler.add(1, 1, a, 4000, b, 80, 999, 0, SYN, b"")
    half = reassembler.connections[0].to_server
    walked = [0]
    base = type(half.pending)

    class Counting(base):  # type: ignore[valid-type, misc]
        def __iter__(self):  # type: ignore[no-untyped-def]
            walked[0] += len(self)
            return super().__iter__()

    half.pending = Counting(half.pending)
    n = 2000
    for i in range(n, 0, -1):
        reassembler.add(
            2 + i, 2 + i, a, 4000, b, 80, 1000 + 10 * i, 0, ACK, bytes([i % 251]) * 10
        )
    reassembler.add(n + 3, n + 3, a, 4000, b, 80, 1000, 0, ACK, b"0" * 10)
    reassembler.finish()
    assert half.length == 10 * (n + 1)
    assert half.gaps == [] and half.conflicts == []
    assert walked[0] <= 4 * n


def test_fin_after_a_reset_does_not_reopen_the_direction() -> None:
    """A FIN captured after a RST sets no end offset, so bytes that follow
    it are data after the reset, never fed to a direction already ended."""
    fed: list[tuple[Direction, int, bytes]] = []
    ends: list[Direction] = []

    class Sink:
        def feed(self, direction: Direction, offset: int, data: bytes) -> None:
            assert direction not in ends
            fed.append((direction, offset, data))

        def gap(self, direction: Direction, offset: int, length: int) -> None:
            assert direction not in ends

        def end(self, direction: Direction, offset: int) -> None:
            ends.append(direction)

    reassembler = Reassembler(lambda conn: Sink(), capture="rst")
    a, b = b"\x0a\0\0\x01", b"\x0a\0\0\x02"
    reassembler.add(1, 1, b, 80, a, 4000, 0, 0, RST, b"")
    reassembler.add(2, 2, b, 80, a, 4000, 1, 0, FIN | ACK, b"")
    reassembler.add(3, 3, b, 80, a, 4000, 0, 0, ACK, b"x")
    reassembler.finish()
    [conn] = reassembler.connections
    assert fed == []
    assert "tcp.data_after_rst" in {a.name for a in conn.anomalies}


def test_connection_limit_is_reported_once_with_its_frame(tmp_path: Path) -> None:
    """Connections past the limit are not followed, and the leg's anomalies
    say so once, at the frame of the first one left out, with the number
    followed."""
    frames: list[Frame] = []
    for i in range(4):
        conv = Conversation(client_port=41000 + i, start_ns=1_700_000_000 + i)
        conv.handshake()
        conv.send_to_server(REQUEST)
        frames += conv.frames()
    frames.sort(key=lambda f: f.ts_ns)
    path = tmp_path / "many.pcap"
    write_pcap(str(path), frames)
    reassembler = Reassembler(
        capture="many.pcap", limits=ReassemblyLimits(connections=2)
    )
    stats = follow_leg([str(path)], reassembler)
    reassembler.finish()
    assert len(reassembler.connections) == 2
    [limit] = [a for a in stats.anomalies if a.name == "tcp.connection_limit"]
    assert limit.first_frame == 3  # the SYN of the third connection
    assert "2 connections" in limit.detail
    assert limit.connection == "10.0.0.1:41002 -> 10.0.0.2:80"
    assert reassembler.anomalies == [limit]


def test_unobserved_returns_exactly_the_gaps_overlapping_a_range(
    tmp_path: Path,
) -> None:
    """unobserved(start, end) gives the gaps that overlap [start, end), in
    order, on a stream with a gap per packet (a snaplen-cut capture)."""
    conv, _, _ = _exchange()
    conv.close()
    out = follow_frames(tmp_path, [f.truncated(200) for f in conv.frames()])
    half = out.connections[0].to_client
    gaps = half.gaps
    assert len(gaps) > 10
    for start in range(0, len(SERVER_DATA), 97):
        for size in (1, 146, 1448, 5000):
            expected = [
                g
                for g in gaps
                if g.offset < start + size and start < g.offset + g.length
            ]
            assert half.unobserved(start, start + size) == expected


def test_midstream_keepalive_first_does_not_shift_the_stream(
    tmp_path: Path,
) -> None:
    """Mid-stream, a keep-alive probe seen before any data (seq one before
    the next byte) does not fix where the stream starts: the data after it
    begins at offset 0, with no one-byte gap in front."""
    conv, _, data = _exchange()
    frames = conv.frames()
    probe = conv.raw(False, 2 * 1448 - 1, b"", flags=ACK)
    start = frames.index(data[2])
    out = follow_frames(tmp_path, [probe, *frames[start:]])
    [conn] = out.connections
    assert conn.midstream
    assert conn.to_client.gaps == []
    assert bytes(out.sinks[0].data[1]) == SERVER_DATA[2 * 1448 :]


def test_midstream_pure_ack_first_still_shows_lost_data_after_it(
    tmp_path: Path,
) -> None:
    """Mid-stream, a pure ACK seen first still fixes where the stream
    starts, so data the capture lost after it, and the peer acknowledged,
    is an 'acked' gap at offset 0."""
    conv, _, data = _exchange()
    frames = conv.frames()
    start = frames.index(data[2])
    pure_ack = conv.raw(False, 1448, b"", flags=ACK)
    conv.ack_to_client()
    out = follow_frames(tmp_path, [pure_ack, *frames[start:], conv.frames()[-1]])
    [conn] = out.connections
    [gap] = conn.to_client.gaps
    assert (gap.offset, gap.length, gap.reason) == (0, 1448, "acked")
    assert conn.to_client.keepalives == 0


def test_in_order_segments_reach_the_sink_in_batches_in_stream_order() -> None:
    """Consecutive in-order segments of one direction reach the sink as a
    few batches of at most FEED_BATCH plus one segment, each call in
    stream order, and the other direction's data hands a batch over."""
    from fcgiforensics.reassembly.reassembler import FEED_BATCH

    calls: list[tuple[str, Direction, int, int]] = []

    class Recorder:
        def feed(self, direction: Direction, offset: int, data: bytes) -> None:
            calls.append(("feed", direction, offset, len(data)))

        def gap(self, direction: Direction, offset: int, length: int) -> None:
            calls.append(("gap", direction, offset, length))

        def end(self, direction: Direction, offset: int) -> None:
            calls.append(("end", direction, offset, 0))

    body = bytes(300_000)
    conv = Conversation(mss=1448)
    conv.handshake()
    conv.send_to_server(REQUEST)
    conv.send_to_client(body)
    conv.send_to_server(REQUEST)
    conv.close()
    reassembler = Reassembler(lambda conn: Recorder())
    for frame, f in enumerate(conv.frames(), start=1):
        seg = decode_tcp(f.linktype, f.data, f.orig_len)
        assert not isinstance(seg, NotTcp)
        src, sport, dst, dport, seq, ack, flags, _, payload, missing = seg
        reassembler.add(
            frame, f.ts_ns, src, sport, dst, dport, seq, ack, flags, payload, missing
        )
    reassembler.finish()

    to_client = [c for c in calls if c[0] == "feed" and c[1] is Direction.TO_CLIENT]
    assert sum(c[3] for c in to_client) == len(body)
    assert all(c[3] <= FEED_BATCH + 1448 for c in to_client)
    assert len(to_client) <= len(body) // FEED_BATCH + 1
    # Every call continues where the last one of its direction stopped,
    # and the second request comes after the whole body.
    at = {Direction.TO_SERVER: 0, Direction.TO_CLIENT: 0}
    for kind, direction, offset, length in calls:
        assert offset == at[direction]
        at[direction] += length if kind == "feed" else 0
    feeds = [(c[1], c[2]) for c in calls if c[0] == "feed"]
    assert feeds[0] == (Direction.TO_SERVER, 0)
    assert feeds[-1] == (Direction.TO_SERVER, len(REQUEST))


def test_every_frame_that_carried_a_byte_is_known(tmp_path: Path) -> None:
    """An identical retransmission is indexed as a later copy: the stream's
    byte names the frame delivered first and, through ``copies_for``,
    the frame that carried it again, with its capture time."""
    conv, _, data = _exchange()
    again = conv.raw(False, 1448, SERVER_DATA[1448 : 2 * 1448])
    conv.ack_to_client()
    conv.close()
    out = follow_frames(tmp_path, conv.frames())
    half = out.connections[0].to_client
    # Identical bytes: find the frames by identity, not by content.
    numbers = {id(f): n for n, f in enumerate(conv.frames(), start=1)}
    first, second = numbers[id(data[1])], numbers[id(again)]
    assert first < second
    assert half.frames_for(2000, 2001) == [first]
    assert half.copies_for(2000, 2001) == [(second, again.ts_ns)]
    assert half.copies_for(0, 1448) == []
    assert half.conflicts == []
