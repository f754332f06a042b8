"""One capture leg, read and decoded: connections, HTTP exchanges, FastCGI
requests, and every anomaly with the frames it was seen in.

This module joins the stages (capture reading, reassembly, protocol
detection, decoders); it holds no protocol logic of its own.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .anomalies import Anomaly
from .capture.leg import LegStats, follow_legs
from .decoders.base import ConnectionDecoder, Direction
from .decoders.detect import DetectingDecoder, Protocol
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
    "mebibytes",
    "MAX_LIMIT_BYTES",
]

#: The largest size limit a user may set (``--max-body``, ``--max-pending``
#: and their notebook keywords), in bytes: 1 TiB.
MAX_LIMIT_BYTES = 1 << 40


def mebibytes(value: float) -> int:
    """A size limit given in MiB, in bytes; ValueError unless it is at
    least one byte (a limit of 0 would read as "none given") and at most
    :data:`MAX_LIMIT_BYTES`."""
    if not 1 <= value * 1024 * 1024 <= MAX_LIMIT_BYTES:
        raise ValueError(f"size out of range: {value!r} MiB")
    return int(value * 1024 * 1024)


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

    def _sink_for(self, conn: Connection) -> DetectingDecoder:
        # A port option names the server.  Without SYN or SYN-ACK the
        # client was only guessed from the ports: an option naming the
        # guessed client's port turns the connection round, and with no
        # option the detector checks the guess against the first bytes.
        forced = self._forced(conn.server[1])
        swap = None
        if forced is None and conn.guessed_roles:
            forced = self._forced(conn.client[1])
            if forced is not None:
                self.reassembler.swap_roles(conn)
            else:
                swap = functools.partial(self.reassembler.swap_roles, conn)
        detector = DetectingDecoder(
            self._make, lambda found: self._collect(conn, found), forced, swap
        )
        self._detectors[conn.index] = detector
        return detector

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
