"""One capture leg, read and decoded: connections, HTTP exchanges, FastCGI
requests, and every anomaly with the frames it was seen in.

This module joins the stages (capture reading, reassembly, protocol
detection, decoders).  Its one piece of protocol knowledge says which
side of a connection caught without its handshake is the client, from
the first bytes each side sent (:class:`_RoleCheck`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .anomalies import Anomaly
from .capture.leg import LegStats, follow_legs
from .decoders.base import ConnectionDecoder, Direction
from .decoders.detect import DETECT_BYTES, DetectingDecoder, Protocol, guess_protocol
from .decoders.fastcgi import FcgiDecoder, FcgiRequest
from .decoders.http1 import Http1Decoder, HttpExchange
from .reassembly import Connection, Reassembler, ReassemblyLimits

__all__ = [
    "LegOptions",
    "Leg",
    "HttpItem",
    "FcgiItem",
    "LegCollector",
    "read_leg",
    "read_legs",
    "locate",
]


@dataclass(frozen=True, slots=True)
class LegOptions:
    """How to read a leg: port overrides for protocol detection, limits."""

    http_ports: frozenset[int] = frozenset()
    fastcgi_ports: frozenset[int] = frozenset()
    limits: ReassemblyLimits = ReassemblyLimits()
    #: Bytes kept of one body (HTTP, decoded or not; FastCGI STDOUT).
    #: None: the decoders' defaults (256 MiB and 64 MiB).
    max_body: int | None = None


@dataclass(frozen=True, slots=True)
class HttpItem:
    """An HTTP exchange and the connection it travelled on."""

    connection: Connection
    exchange: HttpExchange
    sequence: int  # position on its connection, from 0


@dataclass(frozen=True, slots=True)
class FcgiItem:
    """A FastCGI request and the connection it travelled on."""

    connection: Connection
    request: FcgiRequest
    sequence: int


Item = HttpItem | FcgiItem


@dataclass(slots=True)
class Leg:
    """Everything read from the capture files of one leg."""

    paths: list[str]
    label: str
    stats: LegStats
    connections: list[Connection]
    protocols: dict[int, Protocol] = field(default_factory=dict)
    http: list[HttpItem] = field(default_factory=list)
    fcgi: list[FcgiItem] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)

    def anomaly_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for a in self.anomalies:
            counts[a.name] = counts.get(a.name, 0) + 1
        return counts


def _direction_of(label: str | None) -> Direction | None:
    for d in Direction:
        if d.label == label:
            return d
    return None


def locate(anomaly: Anomaly, conn: Connection, capture: str) -> Anomaly:
    """Fill in capture, connection and frames of a decoder's anomaly."""
    frame = anomaly.first_frame
    direction = _direction_of(anomaly.direction)
    if frame is None and direction is not None and anomaly.stream_offset is not None:
        half = conn.halves[direction]
        frames = half.frames_for(anomaly.stream_offset, anomaly.stream_offset + 1)
        if not frames:
            frames = half.frames_for(
                max(anomaly.stream_offset - 1, 0), anomaly.stream_offset
            )
        frame = frames[0] if frames else None
    return dataclasses.replace(
        anomaly,
        capture=anomaly.capture or capture,
        connection=anomaly.connection or conn.label(),
        first_frame=frame,
        last_frame=anomaly.last_frame if anomaly.last_frame is not None else frame,
    )


class LegCollector:
    """Builds a :class:`Leg` from what its connections' decoders return.

    Each finished message is located (its anomalies get frames) as soon
    as it comes, appended to the leg, and handed to ``on_item`` if given,
    so a caller can pair and judge messages while the capture is read.
    """

    def __init__(
        self,
        paths: list[str],
        options: LegOptions | None = None,
        on_item: Callable[[Item], None] | None = None,
        *,
        keep_items: bool = True,
    ) -> None:
        self.options = options or LegOptions()
        label = "+".join(paths)
        self.leg = Leg(paths, label, LegStats(), [])
        self.reassembler = Reassembler(
            self._sink_for, capture=label, limits=self.options.limits
        )
        self.leg.connections = self.reassembler.connections
        self._on_item = on_item
        # False: messages go to on_item only, not into the leg's lists, so
        # that a long run need not hold every message to the end.
        self._keep_items = keep_items
        self._detectors: dict[int, DetectingDecoder] = {}
        self._sequence: dict[tuple[int, type], int] = {}
        self._told: dict[int, dict[int, Anomaly]] = {}

    def _make(self, protocol: Protocol) -> ConnectionDecoder | None:
        limit = self.options.max_body
        if protocol is Protocol.HTTP:
            return Http1Decoder() if limit is None else Http1Decoder(max_body=limit)
        if protocol is Protocol.FASTCGI:
            return FcgiDecoder() if limit is None else FcgiDecoder(max_stdout=limit)
        return None

    def _forced(self, port: int) -> Protocol | None:
        """The protocol a port option gives ``port``, if any."""
        if port in self.options.fastcgi_ports:
            return Protocol.FASTCGI
        if port in self.options.http_ports:
            return Protocol.HTTP
        return None

    def _sink_for(self, conn: Connection) -> DetectingDecoder | _RoleCheck:
        # A port option names the server.  Without SYN or SYN-ACK the
        # client was only guessed from the ports, so an option naming the
        # guessed client's port turns the connection round; otherwise the
        # handshake decided.
        forced = self._forced(conn.server[1])
        if forced is None and conn.guessed_roles:
            forced = self._forced(conn.client[1])
            if forced is not None:
                self.reassembler.swap_roles(conn)
            else:
                return _RoleCheck(conn, lambda swap: self._oriented(conn, swap))
        return self._detector(conn, forced)

    def _detector(self, conn: Connection, forced: Protocol | None) -> DetectingDecoder:
        detector = DetectingDecoder(
            self._make, lambda found: self._collect(conn, found), forced
        )
        self._detectors[conn.index] = detector
        return detector

    def _oriented(self, conn: Connection, swap: bool) -> DetectingDecoder:
        """The roles of a mid-stream connection are known: its detector."""
        if swap:
            self.reassembler.swap_roles(conn)
        return self._detector(conn, None)

    def _collect(self, conn: Connection, found: list[Any]) -> None:
        leg = self.leg
        # Decoders return an anomaly on its own, and again inside the
        # message it concerns when that message completes, often in a
        # later call; count each once.  The raw objects are held until
        # their message comes, so that their ids stay unique.
        told = self._told.setdefault(conn.index, {})
        for item in found:
            if isinstance(item, Anomaly):
                told[id(item)] = item
                leg.anomalies.append(locate(item, conn, leg.label))
                continue
            if not isinstance(item, HttpExchange | FcgiRequest):
                continue
            raw = item.anomalies
            located = tuple(locate(a, conn, leg.label) for a in raw)
            leg.anomalies.extend(
                loc
                for a, loc in zip(raw, located, strict=True)
                if told.pop(id(a), None) is None
            )
            item = dataclasses.replace(item, anomalies=located)
            key = (conn.index, type(item))
            sequence = self._sequence.get(key, 0)
            self._sequence[key] = sequence + 1
            wrapped: Item
            if isinstance(item, HttpExchange):
                wrapped = HttpItem(conn, item, sequence)
                if self._keep_items:
                    leg.http.append(wrapped)
            else:
                wrapped = FcgiItem(conn, item, sequence)
                if self._keep_items:
                    leg.fcgi.append(wrapped)
            if self._on_item is not None:
                self._on_item(wrapped)

    def finish(self, stats: LegStats) -> Leg:
        """The capture is read: flush decoders, gather the evidence."""
        self.reassembler.finish()
        leg = self.leg
        leg.stats = stats
        leg.anomalies[:0] = stats.anomalies
        for conn in leg.connections:
            detector = self._detectors.get(conn.index)
            protocol = detector.protocol if detector else None
            leg.protocols[conn.index] = protocol or Protocol.UNKNOWN
            leg.anomalies.extend(conn.anomalies)
        return leg


#: FastCGI record types by sender (FastCGI 1.0 section 8): the web
#: server sends BEGIN_REQUEST, ABORT_REQUEST, PARAMS, STDIN, DATA and
#: GET_VALUES; the application END_REQUEST, STDOUT, STDERR,
#: GET_VALUES_RESULT and UNKNOWN_TYPE.
_WEB_SERVER_RECORDS = frozenset({1, 2, 4, 5, 8, 9})
_APP_RECORDS = frozenset({3, 6, 7, 10, 11})
_STATUS_LINE = b"HTTP/1."


def _role(head: bytes, final: bool) -> str | None:
    """``"client"`` or ``"server"`` as a direction's first bytes show it,
    ``""`` when they show neither, None while too few have come."""
    # Step 1: a status line (RFC 9112 section 4) comes from a server; no
    # method token holds the "/" it starts with.
    if head.startswith(_STATUS_LINE):
        return "server"
    if not final and _STATUS_LINE.startswith(head):
        return None

    # Step 2: a FastCGI record header (section 3.3: version 1, a type,
    # reserved byte 0) says its sender by its type.
    if head[:1] == b"\x01":
        if len(head) < 8:
            return None if not final else ""
        if head[7] == 0 and head[1] in _APP_RECORDS:
            return "server"
        if head[7] == 0 and head[1] in _WEB_SERVER_RECORDS:
            return "client"

    # Step 3: a request line, or BEGIN_REQUEST, as detection reads them.
    guess = guess_protocol(head, b"")
    if guess is Protocol.HTTP or guess is Protocol.FASTCGI:
        return "client"
    if guess is None and not final:
        return None
    return ""


class _RoleCheck:
    """The sink of a connection caught without its handshake, until its
    first bytes show which side is the client.

    The reassembler guessed the client from the ports (the higher one);
    a server listening on an ephemeral port above its client's, as on
    loopback testbeds, turns that guess round, and the decoders would then
    read responses as requests.  Calls are held until either side's first
    bytes show its role (or :data:`DETECT_BYTES` are held, or the capture
    ends); then ``oriented(swap)`` turns the connection round if the guess
    was wrong and returns the real sink, which gets the held calls (in
    the new directions) and every later one.
    """

    def __init__(
        self, conn: Connection, oriented: Callable[[bool], DetectingDecoder]
    ) -> None:
        self._conn = conn
        self._oriented = oriented
        self._sink: DetectingDecoder | None = None
        self._calls: list[tuple[str, Direction, int, Any]] = []
        self._heads = (bytearray(), bytearray())
        self._final = [False, False]
        self._held = 0

    def feed(self, direction: Direction, offset: int, data: bytes) -> None:
        if self._sink is not None:
            self._sink.feed(direction, offset, data)
            return
        self._calls.append(("feed", direction, offset, data))
        self._held += len(data)
        head = self._heads[direction]
        if offset == len(head) and not self._final[direction]:
            head += data[: DETECT_BYTES - len(head)]
            self._final[direction] = len(head) >= DETECT_BYTES
        self._check()

    def gap(self, direction: Direction, offset: int, length: int) -> None:
        if self._sink is not None:
            self._sink.gap(direction, offset, length)
            return
        self._calls.append(("gap", direction, offset, length))
        self._final[direction] = True  # its first bytes can grow no more
        self._check()

    def end(self, direction: Direction, offset: int) -> None:
        if self._sink is not None:
            self._sink.end(direction, offset)
            return
        self._calls.append(("end", direction, offset, None))
        self._final[direction] = True
        self._check()

    def close(self) -> None:
        if self._sink is None:
            self._final = [True, True]
            self._decide(self._swap() is True)
        assert self._sink is not None
        self._sink.close()

    def _swap(self) -> bool | None:
        """True when the first bytes show the guess wrong, False when they
        show it right or show nothing more to wait for, None to wait."""
        sent = _role(bytes(self._heads[Direction.TO_SERVER]), self._final[0])
        got = _role(bytes(self._heads[Direction.TO_CLIENT]), self._final[1])
        wrong = sent == "server" or got == "client"
        right = sent == "client" or got == "server"
        if wrong or right:
            return wrong and not right
        if sent is None or got is None:
            return None
        return False

    def _check(self) -> None:
        swap = self._swap()
        if swap is None and self._held > DETECT_BYTES:
            swap = False  # no role shows: keep the ports' guess
        if swap is not None:
            self._decide(swap)

    def _decide(self, swap: bool) -> None:
        sink = self._sink = self._oriented(swap)
        calls, self._calls = self._calls, []
        for kind, old, offset, arg in calls:
            direction = Direction(1 - old) if swap else old
            if kind == "feed":
                sink.feed(direction, offset, arg)
            elif kind == "gap":
                sink.gap(direction, offset, arg)
            else:
                sink.end(direction, offset)
        # Later calls go straight to the sink.
        self._conn.sink = sink


def read_legs(
    collectors: list[LegCollector],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> list[Leg]:
    """Read several legs in one time-ordered pass (see ``follow_legs``)."""
    groups = [(c.leg.paths, c.reassembler) for c in collectors]
    all_stats = follow_legs(groups, progress=progress)
    return [c.finish(s) for c, s in zip(collectors, all_stats, strict=True)]


def read_leg(
    paths: Iterable[str],
    options: LegOptions | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Leg:
    """Read, reassemble and decode the capture files of one leg."""
    collector = LegCollector(list(paths), options)
    return read_legs([collector], progress=progress)[0]
