"""Rebuild each direction of each TCP connection as a byte stream.

The :class:`Reassembler` is sans-IO: it is handed decoded segments
(:class:`~fcgiforensics.capture.packets.TcpSegment` fields plus frame id
and timestamp) and hands the in-order bytes of every direction to a
:class:`StreamSink` chosen per connection.  It never fills a gap and never
picks between differing copies silently:

* bytes the capture lacks become :class:`StreamGap` records (and a
  ``gap`` call on the sink), whether the peer acknowledged them, a
  snaplen cut them, or they were never seen at all;
* two captured copies of the same bytes that differ become an
  :class:`OverlapConflict` keeping both versions and their frames; the
  stream carries, byte by byte, the copy captured first, whether it was
  delivered at once or waited out of order.

Stream offsets are 64-bit and count from the first byte after the SYN
(or the first byte seen, for connections caught mid-stream), so the
32-bit sequence wraparound never reaches the layers above.
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import logging
from array import array
from dataclasses import dataclass, field
from typing import Protocol

from ..anomalies import Anomaly
from ..capture.packets import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN
from ..decoders.base import Direction

__all__ = [
    "StreamSink",
    "StreamGap",
    "OverlapConflict",
    "HalfStream",
    "Connection",
    "ReassemblyLimits",
    "Reassembler",
]

log = logging.getLogger(__name__)

_SEQ_MOD = 1 << 32
_SEQ_HALF = 1 << 31
_ENDS = TCP_FIN | TCP_RST
#: Of these flags, a keep-alive probe carries ACK alone.
_PROBE_FLAGS = TCP_ACK | _ENDS


class StreamSink(Protocol):
    """Receives one connection's bytes in stream order (a decoder, say)."""

    def feed(self, direction: Direction, offset: int, data: bytes) -> object: ...

    def gap(self, direction: Direction, offset: int, length: int) -> object: ...

    def end(self, direction: Direction, offset: int) -> object: ...


@dataclass(frozen=True, slots=True)
class StreamGap:
    """Stream bytes ``[offset, offset + length)`` that the capture lacks.

    ``reason`` says how the gap is known: ``"acked"`` (the peer
    acknowledged bytes the capture never showed), ``"snaplen"`` (the frame
    was captured cut short), ``"unseen"`` (later bytes arrived but these
    never did, up to the end of the capture), ``"limit"`` (too many bytes
    waited behind the hole; see :class:`ReassemblyLimits`).
    ``before_frame``/``after_frame`` are the frames on each side of it.
    """

    offset: int
    length: int
    reason: str
    before_frame: int | None
    after_frame: int | None


@dataclass(frozen=True, slots=True)
class OverlapConflict:
    """Two captured copies of the same stream bytes that differ.

    ``first`` was captured earlier and is what the stream carries;
    ``second`` came later in ``second_frame``.  ``receiver_kept`` is
    ``"first"`` when the first copy had already been delivered in order
    before the second was captured (a receiver discards a retransmission
    of bytes it has), or ``"unknown"`` when the first copy was still
    waiting out of order as the second came, where the choice depends on
    the receiver's TCP stack (Linux, for one, keeps the copy that fills
    the hole).
    """

    offset: int
    first: bytes
    second: bytes
    first_frames: tuple[int, ...]
    second_frame: int
    receiver_kept: str


@dataclass(frozen=True, slots=True)
class ReassemblyLimits:
    """Bounds that keep a hostile or broken capture from taking the memory.

    ``pending_bytes``: out-of-order bytes one direction may hold while
    waiting for a hole to fill.  Linux caps a receive window at a few
    MiB by default (tcp_rmem), so 64 MiB waiting means the hole will not
    be filled by anything the receiver would accept.

    ``retained_bytes``: delivered bytes kept to compare retransmissions
    against.  Retransmissions can only cover unacknowledged data, which
    is bounded by the window; 16 MiB leaves room for large windows.

    ``connections``: connections followed in one capture leg; beyond,
    new ones are ignored (their segments counted, and the first one
    reported as ``tcp.connection_limit``), so a port scan cannot exhaust
    memory.
    """

    pending_bytes: int = 64 * 1024 * 1024
    retained_bytes: int = 16 * 1024 * 1024
    connections: int = 1_000_000


def _gap_end(gap: StreamGap) -> int:
    return gap.offset + gap.length


#: Added to a snaplen placeholder's rank so that it sorts after every
#: copy that carries bytes: captured bytes beat bytes known to be cut off.
_PLACEHOLDER_RANK = 1 << 62


class _Waiting:
    """A segment held out of order until the bytes before it arrive.

    ``rank`` is its place in capture order (the order of
    :meth:`Reassembler.add` calls).  A placeholder carries no bytes: it
    stands for the tail a snaplen cut off ``[start, end)``, which becomes
    a gap unless a copy with those bytes is waiting too.  ``won`` lists
    the ranges this copy delivered; the rest of it lost to earlier copies
    and is compared with them.
    """

    __slots__ = ("start", "end", "data", "frame", "ts", "rank", "won")

    def __init__(
        self, start: int, end: int, data: bytes, frame: int, ts: int, rank: int
    ) -> None:
        self.start = start
        self.end = end
        self.data = data
        self.frame = frame
        self.ts = ts
        self.rank = rank
        self.won: list[tuple[int, int]] = []


class HalfStream:
    """One direction of a connection: its bytes' evidence and statistics."""

    __slots__ = (
        "direction",
        "base",
        "next",
        "started",
        "probe_base",
        "syn_frame",
        "fin_offset",
        "ended",
        "pending",
        "pending_bytes",
        "arrivals",
        "peer_acked",
        "retained_starts",
        "retained_chunks",
        "retained_bytes",
        "retained_head",
        "seg_offsets",
        "seg_lengths",
        "seg_frames",
        "seg_times",
        "copy_offsets",
        "copy_lengths",
        "copy_frames",
        "copy_times",
        "gaps",
        "conflicts",
        "packets",
        "payload_bytes",
        "retransmissions",
        "out_of_order",
        "keepalives",
        "first_time",
        "last_time",
        "last_frame",
        "rst",
        "fin",
        "end_time",
    )

    def __init__(self, direction: Direction) -> None:
        self.direction = direction
        self.base = 0  # sequence number of stream offset 0
        self.next = 0  # next expected stream offset
        self.started = False
        self.probe_base = False  # base fixed by a segment with no data
        self.syn_frame: int | None = None
        self.fin_offset: int | None = None
        self.ended = False
        self.fin = False
        self.rst = False
        self.end_time: int | None = None  # when its FIN or RST was captured
        # Out-of-order segments, a heap of (start offset, rank, segment):
        # the lowest offset comes out first, ties in capture order.
        self.pending: list[tuple[int, int, _Waiting]] = []
        self.pending_bytes = 0
        self.arrivals = 0  # segments ranked so far (capture order)
        self.peer_acked = -1
        # Recently delivered bytes, to compare retransmissions against.
        self.retained_starts: list[int] = []
        self.retained_chunks: list[tuple[bytes, int]] = []
        self.retained_bytes = 0
        self.retained_head = 0
        # Where every delivered byte came from (parallel seg_* arrays), and
        # later copies of delivered bytes (retransmissions, duplicates, the
        # losing side of an overlap) in capture order (copy_* arrays).
        self.forget_index()
        self.gaps: list[StreamGap] = []
        self.conflicts: list[OverlapConflict] = []
        self.packets = 0
        self.payload_bytes = 0
        self.retransmissions = 0
        self.out_of_order = 0
        self.keepalives = 0
        self.first_time: int | None = None
        self.last_time: int | None = None
        self.last_frame: int | None = None

    @property
    def length(self) -> int:
        """Stream bytes accounted for: delivered plus declared gaps."""
        return self.next

    def forget_index(self) -> None:
        """Drop the offset-to-frame index (once nothing will ask for it).

        It costs 32 bytes a data packet; a long run that has judged every
        exchange of a closed connection lets it go.  ``frames_for`` and
        ``time_at`` then find nothing.
        """
        self.seg_offsets = array("q")
        self.seg_lengths = array("l")
        self.seg_frames = array("q")
        self.seg_times = array("q")
        self.copy_offsets = array("q")
        self.copy_lengths = array("l")
        self.copy_frames = array("q")
        self.copy_times = array("q")

    def frames_for(self, start: int, end: int) -> list[int]:
        """Frames whose delivered bytes fall in ``[start, end)``, in order."""
        offsets = self.seg_offsets
        i = max(bisect.bisect_right(offsets, start) - 1, 0)
        out: list[int] = []
        for j in range(i, len(offsets)):
            s = offsets[j]
            if s >= end:
                break
            if s + self.seg_lengths[j] > start:
                out.append(self.seg_frames[j])
        return out

    def copies_for(self, start: int, end: int) -> list[tuple[int, int]]:
        """(frame, capture time) of every later copy of bytes in
        ``[start, end)``: the frames that carried them again, besides the
        one :meth:`frames_for` names, in capture order."""
        out = []
        for j in range(len(self.copy_offsets)):
            s = self.copy_offsets[j]
            if s < end and s + self.copy_lengths[j] > start:
                out.append((self.copy_frames[j], self.copy_times[j]))
        return out

    def note_copy(self, offset: int, length: int, frame: int, ts: int) -> None:
        """Index a later copy of ``length`` delivered bytes at ``offset``."""
        if length > 0:
            self.copy_offsets.append(offset)
            self.copy_lengths.append(length)
            self.copy_frames.append(frame)
            self.copy_times.append(ts)

    def time_at(self, offset: int) -> int | None:
        """Capture time (ns) of the frame that carried stream ``offset``."""
        i = bisect.bisect_right(self.seg_offsets, offset) - 1
        if i < 0:
            return None
        if offset >= self.seg_offsets[i] + self.seg_lengths[i]:
            return None
        return self.seg_times[i]

    def unobserved(self, start: int, end: int) -> list[StreamGap]:
        """Gaps that overlap stream bytes ``[start, end)``.

        Gaps are declared at the stream's end as it grows, so they lie in
        offset order and never overlap: a bisection finds the first one
        (a snaplen-cut capture has a gap per packet).
        """
        gaps = self.gaps
        i = bisect.bisect_right(gaps, start, key=_gap_end)
        out: list[StreamGap] = []
        while i < len(gaps) and gaps[i].offset < end:
            out.append(gaps[i])
            i += 1
        return out


#: In-order bytes of one direction gathered before the sink sees them:
#: one ``feed`` call per batch instead of one per segment, which spares
#: the decoders ~45 calls per batch on a stream of 1448-byte segments.
#: A gap, the other direction's data, an end or the capture's end hands
#: the batch over at once, so the sink sees every call in stream order.
FEED_BATCH = 64 * 1024


@dataclass(slots=True)
class Connection:
    """One TCP connection: its endpoints and both directions' evidence.

    ``client`` is the side that sent the SYN, or that received the SYN-ACK
    of a connection caught without its SYN (``midstream`` True).  Caught
    with neither, it is the side with the higher port: ``guessed_roles``
    is then True, until :meth:`Reassembler.swap_roles` corrects the guess
    from the first bytes or a port option.
    """

    index: int
    client: tuple[bytes, int]
    server: tuple[bytes, int]
    first_frame: int
    first_time: int
    midstream: bool
    halves: tuple[HalfStream, HalfStream] = field(
        default_factory=lambda: (
            HalfStream(Direction.TO_SERVER),
            HalfStream(Direction.TO_CLIENT),
        )
    )
    anomalies: list[Anomaly] = field(default_factory=list)
    sink: StreamSink | None = None
    closed: bool = False
    guessed_roles: bool = False
    # In-order bytes of one direction not yet handed to the sink (see
    # FEED_BATCH): where they start, and the segments' bytes.
    held_direction: Direction = Direction.TO_SERVER
    held_offset: int = 0
    held: list[bytes] = field(default_factory=list)
    held_bytes: int = 0

    @property
    def to_server(self) -> HalfStream:
        return self.halves[Direction.TO_SERVER]

    @property
    def to_client(self) -> HalfStream:
        return self.halves[Direction.TO_CLIENT]

    @property
    def last_time(self) -> int:
        times = [h.last_time for h in self.halves if h.last_time is not None]
        return max(times, default=self.first_time)

    @property
    def last_frame(self) -> int:
        frames = [h.last_frame for h in self.halves if h.last_frame is not None]
        return max(frames, default=self.first_frame)

    def label(self) -> str:
        """``"127.0.0.1:51234 -> 127.0.0.1:8080"`` as the report prints it."""
        return f"{format_endpoint(*self.client)} -> {format_endpoint(*self.server)}"


def format_address(addr: bytes) -> str:
    """Dotted IPv4 or compressed IPv6 text for raw address bytes."""
    import ipaddress

    return str(ipaddress.ip_address(addr))


def format_endpoint(addr: bytes, port: int) -> str:
    text = format_address(addr)
    return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"


class Reassembler:
    """Follows every TCP connection of one capture leg.

    ``sink_for(connection)`` is called once per new connection and may
    return a :class:`StreamSink` (a protocol decoder) or None to only keep
    statistics and evidence.  Feed segments with :meth:`add` in capture
    order, then call :meth:`finish` once.

    ``anomalies`` holds what belongs to no followed connection: the
    ``tcp.connection_limit`` met, once.  ``ignored_connections`` counts
    the segments of the connections left out.
    """

    def __init__(
        self,
        sink_for: object = None,
        *,
        capture: str = "",
        limits: ReassemblyLimits | None = None,
    ) -> None:
        self._sink_for = sink_for
        self.capture = capture
        self.limits = limits or ReassemblyLimits()
        self.connections: list[Connection] = []
        # (src, sport, dst, dport) -> (connection, direction of that flow)
        self._flows: dict[
            tuple[bytes, int, bytes, int], tuple[Connection, Direction]
        ] = {}
        self.ignored_connections = 0
        self.anomalies: list[Anomaly] = []

    # -- public entry points -------------------------------------------

    def add(
        self,
        frame: int,
        ts: int,
        src: bytes,
        sport: int,
        dst: bytes,
        dport: int,
        seq: int,
        ack: int,
        flags: int,
        payload: bytes,
        missing: int = 0,
    ) -> None:
        """Take one captured TCP segment."""
        found = self._flows.get((src, sport, dst, dport))
        if found is None or (
            flags & TCP_SYN and not flags & TCP_ACK and self._is_new_syn(found, seq)
        ):
            found = self._open(frame, ts, src, sport, dst, dport, seq, flags, payload)
            if found is None:
                return
        conn, direction = found
        half = conn.halves[direction]
        peer = conn.halves[1 - direction]

        # Step 1: bookkeeping common to every segment.
        half.packets += 1
        if half.first_time is None:
            half.first_time = ts
        half.last_time = ts
        half.last_frame = frame

        # Step 2: SYN fixes where stream offset 0 lies.
        if flags & TCP_SYN:
            if not half.started:
                half.base = (seq + 1) % _SEQ_MOD
                half.started = True
                half.syn_frame = frame
            return
        if not half.started:
            half.base = seq
            half.started = True
            # Mid-stream, a segment with no data may be a keep-alive probe,
            # one before the next byte: the first data will tell.
            half.probe_base = not (payload or missing or flags & _ENDS)

        # Step 3: the ACK tells what the peer received, which finds the
        # holes that the capture (not the network) lost.
        if flags & TCP_ACK and peer.started:
            # (the body of _unwrap, inlined: this runs for every packet)
            nxt = peer.next
            acked = (
                nxt
                + ((ack - peer.base) % _SEQ_MOD - nxt + _SEQ_HALF) % _SEQ_MOD
                - _SEQ_HALF
            )
            if peer.fin_offset is not None:
                acked = min(acked, peer.fin_offset)  # the FIN takes one number
            if acked > peer.peer_acked:
                peer.peer_acked = acked
                self._trim_retained(peer)
                if peer.pending and acked > peer.next:
                    self._declare_acked_gap(conn, peer, acked)

        # Step 4: the payload, if any, then FIN and RST.
        nxt = half.next  # _unwrap, inlined: once per packet
        offset = (
            nxt
            + ((seq - half.base) % _SEQ_MOD - nxt + _SEQ_HALF) % _SEQ_MOD
            - _SEQ_HALF
        )
        if half.probe_base and (payload or missing or flags & _ENDS):
            offset = self._maybe_rebase(half, offset)
        if payload or missing:
            self._data(conn, half, offset, payload, missing, frame, ts)
        elif offset == half.next - 1 and flags & _PROBE_FLAGS == TCP_ACK:
            # A keep-alive probe as Linux sends it: no payload, one before
            # the next byte (RFC 9293 section 3.8.4).
            half.keepalives += 1
        if flags & TCP_FIN and half.fin_offset is None:
            half.fin = True
            if half.end_time is None:
                half.end_time = ts
            # After a reset the direction is over: a FIN does not reopen it.
            if not half.ended:
                half.fin_offset = offset + len(payload) + missing
                self._maybe_end(conn, half)
        if flags & TCP_RST:
            half.rst = True
            if half.end_time is None:
                half.end_time = ts
            conn.anomalies.append(
                self._anomaly(conn, half, "tcp.rst", "connection reset", offset, frame)
            )
            self._flush(conn, half, "unseen")
            self._end(conn, half)
            self._flush(conn, peer, "unseen")
            self._end(conn, peer)
            conn.closed = True

    def finish(self) -> None:
        """The capture is over: declare what never came, end every stream."""
        for conn in self.connections:
            for half in conn.halves:
                self._flush(conn, half, "unseen")
                self._end(conn, half)
            close = getattr(conn.sink, "close", None)
            if close is not None:
                close()

    # -- connections ----------------------------------------------------

    def _is_new_syn(self, found: tuple[Connection, Direction], seq: int) -> bool:
        conn, direction = found
        half = conn.halves[direction]
        if half.syn_frame is None:
            return conn.closed or half.started
        return (seq + 1) % _SEQ_MOD != half.base

    def _open(
        self,
        frame: int,
        ts: int,
        src: bytes,
        sport: int,
        dst: bytes,
        dport: int,
        seq: int,
        flags: int,
        payload: bytes,
    ) -> tuple[Connection, Direction] | None:
        if len(self.connections) >= self.limits.connections:
            if not self.ignored_connections:
                self.anomalies.append(
                    Anomaly(
                        "tcp.connection_limit",
                        f"{len(self.connections)} connections followed, the "
                        "limit; this one and later new ones are not followed",
                        capture=self.capture,
                        connection=f"{format_endpoint(src, sport)} -> "
                        f"{format_endpoint(dst, dport)}",
                        first_frame=frame,
                        last_frame=frame,
                    )
                )
            self.ignored_connections += 1
            return None

        # Who is the client?  The SYN sender; mid-stream, a SYN-ACK
        # sender is the server, otherwise guess the higher port.
        syn_only = bool(flags & TCP_SYN) and not flags & TCP_ACK
        midstream = not syn_only
        if syn_only or (not flags & TCP_SYN and sport > dport):
            client, server = (src, sport), (dst, dport)
        else:
            client, server = (dst, dport), (src, sport)

        # A new SYN on a 4-tuple in use ends the old connection first.
        old = self._flows.get((src, sport, dst, dport))
        if old is not None:
            old_conn = old[0]
            for half in old_conn.halves:
                self._flush(old_conn, half, "unseen")
                self._end(old_conn, half)
            old_conn.closed = True

        conn = Connection(len(self.connections), client, server, frame, ts, midstream)
        conn.guessed_roles = not flags & TCP_SYN
        if midstream:
            conn.anomalies.append(
                Anomaly(
                    "tcp.midstream",
                    "connection first seen without its SYN",
                    capture=self.capture,
                    connection=conn.label(),
                    first_frame=frame,
                    last_frame=frame,
                )
            )
        self.connections.append(conn)
        self._flows[(client[0], client[1], server[0], server[1])] = (
            conn,
            Direction.TO_SERVER,
        )
        self._flows[(server[0], server[1], client[0], client[1])] = (
            conn,
            Direction.TO_CLIENT,
        )
        if callable(self._sink_for):
            conn.sink = self._sink_for(conn)
        log.debug("connection %d opened at frame %d", conn.index, frame)
        # (looked up again: the sink's maker may have swapped the roles)
        return self._flows[(src, sport, dst, dport)]

    def swap_roles(self, conn: Connection) -> None:
        """Make the client of ``conn`` its server, and the server its client.

        For a connection whose client was guessed from the ports
        (``guessed_roles``), once a port option or its first bytes show
        the guess wrong.  Each direction keeps its evidence and takes the other
        :class:`Direction`; anomalies already recorded are relabelled.
        Calls made to the sink before the swap used the old directions.
        """
        self._release(conn)  # the batch was taken under the old roles
        old = conn.label()
        conn.guessed_roles = False
        was_to_server, was_to_client = conn.halves
        was_to_client.direction = Direction.TO_SERVER
        was_to_server.direction = Direction.TO_CLIENT
        conn.halves = (was_to_client, was_to_server)
        conn.client, conn.server = conn.server, conn.client
        (caddr, cport), (saddr, sport) = conn.client, conn.server
        for key, direction in (
            ((caddr, cport, saddr, sport), Direction.TO_SERVER),
            ((saddr, sport, caddr, cport), Direction.TO_CLIENT),
        ):
            found = self._flows.get(key)
            if found is not None and found[0] is conn:
                self._flows[key] = (conn, direction)
        new = conn.label()
        flip = {d.label: Direction(1 - d).label for d in Direction}
        conn.anomalies[:] = [
            dataclasses.replace(
                a,
                connection=new if a.connection == old else a.connection,
                direction=flip.get(a.direction or "", a.direction),
            )
            for a in conn.anomalies
        ]

    # -- sequence numbers -----------------------------------------------

    @staticmethod
    def _maybe_rebase(half: HalfStream, offset: int) -> int:
        """The first data of a mid-stream direction whose first segment
        had none: if the data starts one past it, that segment was a
        keep-alive probe (seq = next - 1), and the stream starts here, not
        one byte earlier.  Returns the data's offset."""
        half.probe_base = False
        if offset != 1 or half.next or half.pending or half.gaps:
            return offset
        half.base = (half.base + 1) % _SEQ_MOD
        half.keepalives += 1
        if half.peer_acked > 0:
            half.peer_acked -= 1  # the ACK answering the probe
        return 0

    @staticmethod
    def _unwrap(half: HalfStream, seq: int) -> int:
        """The 64-bit stream offset of ``seq``, nearest to ``half.next``."""
        rel = (seq - half.base) % _SEQ_MOD
        delta = (rel - half.next + _SEQ_HALF) % _SEQ_MOD - _SEQ_HALF
        return half.next + delta

    # -- data -------------------------------------------------------------

    def _data(
        self,
        conn: Connection,
        half: HalfStream,
        offset: int,
        data: bytes,
        missing: int,
        frame: int,
        ts: int,
    ) -> None:
        half.payload_bytes += len(data)
        end = offset + len(data) + missing

        # Nothing lies beyond the FIN (RFC 9293 section 3.10.7.4) or after
        # a reset: bytes there are reported, never delivered after the end.
        if half.ended and half.fin_offset is None:
            conn.anomalies.append(
                self._anomaly(
                    conn,
                    half,
                    "tcp.data_after_rst",
                    f"{len(data) + missing} bytes after the connection was reset",
                    offset,
                    frame,
                )
            )
            return
        fin = half.fin_offset
        if fin is not None and end > fin:
            conn.anomalies.append(
                self._anomaly(
                    conn,
                    half,
                    "tcp.data_after_fin",
                    f"{end - max(offset, fin)} bytes after the FIN",
                    max(offset, fin),
                    frame,
                )
            )
            if offset >= fin:
                return
            data = data[: fin - offset]
            missing = max(0, fin - offset - len(data))
            end = fin

        # A keep-alive probe repeats the byte before the next expected
        # one (RFC 9293 section 3.8.4); it carries no stream data.
        if len(data) + missing <= 1 and offset == half.next - 1:
            half.keepalives += 1
            return

        # Old bytes again: compare what overlaps; what is new is in order.
        if offset < half.next:
            half.retransmissions += 1
            if offset < 0 and conn.midstream:
                conn.anomalies.append(
                    self._anomaly(
                        conn,
                        half,
                        "tcp.before_start",
                        f"{-offset} bytes before the first byte seen",
                        offset,
                        frame,
                    )
                )
            overlap = min(end, half.next) - offset
            self._compare(conn, half, offset, data[:overlap], frame, ts)
            if end <= half.next:
                return
            data = data[half.next - offset :]
            missing = end - half.next - len(data)
            offset = half.next

        # In order: deliver at once (the common case, kept short), unless
        # it runs into bytes that wait already: those were captured first,
        # so the drain picks each byte's copy.
        if offset == half.next:
            pending = half.pending
            if pending and pending[0][0] < end:
                self._wait(half, offset, data, missing, frame, ts)
                self._drain(conn, half)
            else:
                self._deliver(conn, half, offset, data, frame, ts)
                if missing:
                    self._gap(
                        conn, half, offset + len(data), missing, "snaplen", frame, frame
                    )
                if pending:
                    self._drain(conn, half)
            self._maybe_end(conn, half)
            return

        # Ahead of a hole: wait for the hole to fill.
        half.out_of_order += 1
        self._wait(half, offset, data, missing, frame, ts)
        if half.pending_bytes > self.limits.pending_bytes:
            first, _, held = half.pending[0]
            self._gap(
                conn,
                half,
                half.next,
                first - half.next,
                "limit",
                half.last_frame,
                held.frame,
            )
            conn.anomalies.append(
                self._anomaly(
                    conn,
                    half,
                    "tcp.pending_limit",
                    f"{half.pending_bytes} bytes waited behind a hole",
                    half.next,
                    frame,
                )
            )
            self._drain(conn, half)
            self._maybe_end(conn, half)
        elif half.peer_acked > half.next:
            self._declare_acked_gap(conn, half, half.peer_acked)

    def _wait(
        self,
        half: HalfStream,
        offset: int,
        data: bytes,
        missing: int,
        frame: int,
        ts: int,
    ) -> None:
        """Hold a segment (and its snaplen-cut tail) for :meth:`_drain`."""
        rank = half.arrivals
        half.arrivals = rank + 1
        pending = half.pending
        if data:
            end = offset + len(data)
            held = _Waiting(offset, end, data, frame, ts, rank)
            heapq.heappush(pending, (offset, rank, held))
            half.pending_bytes += len(data)
        if missing:
            start = offset + len(data)
            rank += _PLACEHOLDER_RANK
            held = _Waiting(start, start + missing, b"", frame, ts, rank)
            heapq.heappush(pending, (start, rank, held))

    def _deliver(
        self,
        conn: Connection,
        half: HalfStream,
        offset: int,
        data: bytes,
        frame: int,
        ts: int,
    ) -> None:
        """Hand in-order bytes to the sink and index where they came from."""
        if not data:
            return
        half.seg_offsets.append(offset)
        half.seg_lengths.append(len(data))
        half.seg_frames.append(frame)
        half.seg_times.append(ts)
        half.retained_starts.append(offset)
        half.retained_chunks.append((data, frame))
        half.retained_bytes += len(data)
        if half.retained_bytes > self.limits.retained_bytes:
            self._trim_retained(half, force=True)
        half.next = offset + len(data)
        if conn.sink is None:
            return
        if conn.held:
            if conn.held_direction is half.direction and conn.held_bytes < FEED_BATCH:
                conn.held.append(data)
                conn.held_bytes += len(data)
                return
            self._release(conn)
        conn.held_direction = half.direction
        conn.held_offset = offset
        conn.held = [data]
        conn.held_bytes = len(data)

    @staticmethod
    def _release(conn: Connection) -> None:
        """Hand the batch of in-order bytes held for ``conn`` to its sink."""
        held = conn.held
        if not held or conn.sink is None:
            return
        conn.held = []
        conn.held_bytes = 0
        data = held[0] if len(held) == 1 else b"".join(held)
        conn.sink.feed(conn.held_direction, conn.held_offset, data)

    def _drain(self, conn: Connection, half: HalfStream) -> None:
        """Deliver the waiting segments that are now in order.

        Every byte comes from the earliest-captured copy that holds it,
        wherever the copies start.  The copies covering the current offset
        are candidates in a heap by capture order; the stream moves on to
        the end of the earliest one or to the start of the next waiting
        segment, whichever is nearer.  Each step costs O(log n), so
        draining n segments costs O(n log n).
        """
        pending = half.pending
        if not pending or pending[0][0] > half.next:
            return
        candidates: list[tuple[int, _Waiting]] = []
        pos = half.next
        while True:
            # Step 1: the segments that start by here become candidates.
            while pending and pending[0][0] <= pos:
                held = heapq.heappop(pending)[2]
                half.pending_bytes -= len(held.data)
                heapq.heappush(candidates, (held.rank, held))

            # Step 2: copies that end by here are done: compare the bytes
            # they lost with those that were delivered.
            while candidates and candidates[0][1].end <= pos:
                self._settle(conn, half, heapq.heappop(candidates)[1])
            if not candidates:
                return

            # Step 3: the earliest-captured copy carries the bytes up to
            # its end or to the next segment, which may be earlier still.
            held = candidates[0][1]
            stop = held.end
            if pending and pending[0][0] < stop:
                stop = pending[0][0]
            if held.rank >= _PLACEHOLDER_RANK:
                self._gap(
                    conn, half, pos, stop - pos, "snaplen", held.frame, held.frame
                )
            else:
                piece = held.data[pos - held.start : stop - held.start]
                self._deliver(conn, half, pos, piece, held.frame, held.ts)
                if held.won and held.won[-1][1] == pos:
                    held.won[-1] = (held.won[-1][0], stop)
                else:
                    held.won.append((pos, stop))
            pos = stop

    def _settle(self, conn: Connection, half: HalfStream, held: _Waiting) -> None:
        """Compare the bytes of a drained copy that an earlier copy carried.

        Both copies waited, or the earlier one waited while this one
        filled the hole: which of them a receiver kept is not known.
        """
        if held.rank >= _PLACEHOLDER_RANK:
            return
        if not held.won:
            half.retransmissions += 1
        lo = held.start
        for won_lo, won_hi in [*held.won, (held.end, held.end)]:
            if lo < won_lo:
                lost = held.data[lo - held.start : won_lo - held.start]
                self._compare(conn, half, lo, lost, held.frame, held.ts, "unknown")
            lo = won_hi

    def _declare_acked_gap(
        self, conn: Connection, half: HalfStream, acked: int
    ) -> None:
        """The receiver has bytes the capture never showed: a gap."""
        first, _, held = half.pending[0]
        end = min(acked, first)
        if end > half.next:
            self._gap(
                conn,
                half,
                half.next,
                end - half.next,
                "acked",
                half.last_frame,
                held.frame,
            )
            self._drain(conn, half)
            self._maybe_end(conn, half)

    def _flush(self, conn: Connection, half: HalfStream, reason: str) -> None:
        """Declare every remaining hole and deliver what waited behind it."""
        pending = half.pending
        while pending:
            first, _, held = pending[0]
            if first > half.next:
                self._gap(
                    conn,
                    half,
                    half.next,
                    first - half.next,
                    reason,
                    half.last_frame,
                    held.frame,
                )
            self._drain(conn, half)
        if half.peer_acked > half.next:
            self._gap(
                conn,
                half,
                half.next,
                half.peer_acked - half.next,
                "acked",
                half.last_frame,
                None,
            )
        if half.fin_offset is not None and half.fin_offset > half.next:
            self._gap(
                conn,
                half,
                half.next,
                half.fin_offset - half.next,
                reason,
                half.last_frame,
                None,
            )

    def _gap(
        self,
        conn: Connection,
        half: HalfStream,
        offset: int,
        length: int,
        reason: str,
        before: int | None,
        after: int | None,
    ) -> None:
        if length <= 0:
            return
        gap = StreamGap(offset, length, reason, before, after)
        half.gaps.append(gap)
        half.next = offset + length
        conn.anomalies.append(
            self._anomaly(
                conn,
                half,
                "tcp.gap",
                f"{length} bytes not in the capture ({reason})",
                offset,
                after if after is not None else before,
            )
        )
        if conn.sink is not None:
            self._release(conn)
            conn.sink.gap(half.direction, offset, length)

    # -- overlaps -------------------------------------------------------------

    def _compare(
        self,
        conn: Connection,
        half: HalfStream,
        offset: int,
        data: bytes,
        frame: int,
        ts: int,
        kept: str = "first",
    ) -> None:
        """Index a later copy of delivered bytes and compare it with them.

        ``kept`` is the conflict's ``receiver_kept``: ``"first"`` for a
        retransmission of bytes delivered before it was captured.
        """
        if not data:
            return
        half.note_copy(offset, len(data), frame, ts)
        end = offset + len(data)

        # Bytes landing in a range already declared a gap came too late
        # to be delivered: say so, and never merge them in.
        late = 0
        for gap in half.unobserved(offset, end):
            late += min(end, gap.offset + gap.length) - max(offset, gap.offset)
        if late:
            conn.anomalies.append(
                self._anomaly(
                    conn,
                    half,
                    "tcp.late_data",
                    f"{late} bytes arrived after their range was declared a gap",
                    offset,
                    frame,
                )
            )

        # Walk the retained chunks that overlap the copy.
        starts = half.retained_starts
        i = max(bisect.bisect_right(starts, offset) - 1, half.retained_head)
        compared = 0
        while i < len(starts) and starts[i] < end:
            chunk, first_frame = half.retained_chunks[i]
            lo = max(offset, starts[i])
            hi = min(end, starts[i] + len(chunk))
            if lo < hi:
                old = chunk[lo - starts[i] : hi - starts[i]]
                new = data[lo - offset : hi - offset]
                compared += hi - lo
                if old != new:
                    self._conflict(
                        conn, half, lo, old, new, (first_frame,), frame, kept
                    )
            i += 1
        if compared + late < len(data):
            conn.anomalies.append(
                self._anomaly(
                    conn,
                    half,
                    "tcp.overlap_unverified",
                    f"{len(data) - compared - late} retransmitted bytes no longer "
                    "kept to compare",
                    offset,
                    frame,
                )
            )

    def _conflict(
        self,
        conn: Connection,
        half: HalfStream,
        offset: int,
        first: bytes,
        second: bytes,
        first_frames: tuple[int, ...],
        frame: int,
        kept: str,
    ) -> None:
        # Narrow to the bytes that really differ, keeping both versions.
        n = min(len(first), len(second))
        lo = 0
        while lo < n and first[lo] == second[lo]:
            lo += 1
        hi = n
        while hi > lo and first[hi - 1] == second[hi - 1]:
            hi -= 1
        if lo == hi and len(first) == len(second):
            return
        conflict = OverlapConflict(
            offset + lo, first[lo:hi], second[lo:hi], first_frames, frame, kept
        )
        half.conflicts.append(conflict)
        conn.anomalies.append(
            self._anomaly(
                conn,
                half,
                "tcp.overlap_conflict",
                f"{hi - lo} retransmitted bytes differ from the first copy "
                f"(receiver kept: {kept})",
                offset + lo,
                frame,
            )
        )

    def _trim_retained(self, half: HalfStream, force: bool = False) -> None:
        """Forget delivered bytes that can no longer be retransmitted."""
        keep_from = half.peer_acked - 65536  # slack for late duplicates
        starts = half.retained_starts
        chunks = half.retained_chunks
        head = half.retained_head
        while head < len(starts):
            end = starts[head] + len(chunks[head][0])
            if end > keep_from and not (
                force and half.retained_bytes > self.limits.retained_bytes
            ):
                break
            half.retained_bytes -= len(chunks[head][0])
            chunks[head] = (b"", chunks[head][1])
            head += 1
        if head > 256 and head * 2 > len(starts):
            del starts[:head]
            del chunks[:head]
            head = 0
        half.retained_head = head

    # -- ends ---------------------------------------------------------------

    def _maybe_end(self, conn: Connection, half: HalfStream) -> None:
        if half.fin_offset is not None and half.next >= half.fin_offset:
            self._end(conn, half)

    def _end(self, conn: Connection, half: HalfStream) -> None:
        if half.ended:
            return
        half.ended = True
        if conn.sink is not None:
            self._release(conn)
            conn.sink.end(half.direction, half.next)
        if all(h.ended for h in conn.halves):
            conn.closed = True
            # Nothing more can be delivered: bytes kept to compare
            # retransmissions against go (later copies are reported as
            # data after the end, not compared).
            for h in conn.halves:
                h.retained_starts = []
                h.retained_chunks = []
                h.retained_bytes = h.retained_head = 0

    def _anomaly(
        self,
        conn: Connection,
        half: HalfStream,
        name: str,
        detail: str,
        offset: int,
        frame: int | None,
    ) -> Anomaly:
        return Anomaly(
            name,
            detail,
            capture=self.capture,
            connection=conn.label(),
            direction=half.direction.label,
            stream_offset=offset,
            first_frame=frame,
            last_frame=frame,
        )
