"""One capture leg, read and decoded: connections, HTTP exchanges, FastCGI
requests, and every anomaly with the frames it was seen in.

This module joins the stages (capture reading, reassembly, protocol
detection, decoders); it holds no protocol logic of its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .anomalies import Anomaly
from .capture.leg import LegStats, follow_leg
from .decoders.base import ConnectionDecoder, Direction
from .decoders.detect import DetectingDecoder, Protocol
from .decoders.fastcgi import FcgiDecoder, FcgiRequest
from .decoders.http1 import Http1Decoder, HttpExchange
from .reassembly import Connection, Reassembler, ReassemblyLimits

__all__ = ["LegOptions", "Leg", "HttpItem", "FcgiItem", "read_leg"]


@dataclass(frozen=True, slots=True)
class LegOptions:
    """How to read a leg: port overrides for protocol detection, limits."""

    http_ports: frozenset[int] = frozenset()
    fastcgi_ports: frozenset[int] = frozenset()
    limits: ReassemblyLimits = ReassemblyLimits()


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


def read_leg(
    paths: Iterable[str],
    options: LegOptions | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Leg:
    """Read, reassemble and decode the capture files of one leg."""
    options = options or LegOptions()
    paths = list(paths)
    label = "+".join(paths)
    outputs: list[tuple[Connection, list[Any]]] = []
    detectors: dict[int, DetectingDecoder] = {}

    def make(protocol: Protocol) -> ConnectionDecoder | None:
        if protocol is Protocol.HTTP:
            return Http1Decoder()
        if protocol is Protocol.FASTCGI:
            return FcgiDecoder()
        return None

    def sink_for(conn: Connection) -> DetectingDecoder:
        forced = None
        if conn.server[1] in options.fastcgi_ports:
            forced = Protocol.FASTCGI
        elif conn.server[1] in options.http_ports:
            forced = Protocol.HTTP
        found: list[Any] = []
        outputs.append((conn, found))
        detector = DetectingDecoder(make, found.extend, forced)
        detectors[conn.index] = detector
        return detector

    reassembler = Reassembler(sink_for, capture=label, limits=options.limits)
    stats = follow_leg(paths, reassembler, progress=progress)
    reassembler.finish()

    # Sort what the decoders returned into messages and located anomalies.
    leg = Leg(paths, label, stats, reassembler.connections)
    leg.anomalies.extend(stats.anomalies)
    for conn, found in outputs:
        detector = detectors[conn.index]
        leg.protocols[conn.index] = detector.protocol or Protocol.UNKNOWN
        leg.anomalies.extend(conn.anomalies)
        http_seq = fcgi_seq = 0
        # Decoders return an anomaly on its own and again inside the
        # message it concerns; count each once.
        standalone = {id(item) for item in found if isinstance(item, Anomaly)}
        for item in found:
            if isinstance(item, Anomaly):
                leg.anomalies.append(locate(item, conn, label))
            elif isinstance(item, HttpExchange):
                item_raw = item.anomalies
                located = tuple(locate(a, conn, label) for a in item.anomalies)
                item = dataclasses.replace(item, anomalies=located)
                leg.http.append(HttpItem(conn, item, http_seq))
                leg.anomalies.extend(
                    loc
                    for raw, loc in zip(item_raw, located, strict=True)
                    if id(raw) not in standalone
                )
                http_seq += 1
            elif isinstance(item, FcgiRequest):
                item_raw = item.anomalies
                located = tuple(locate(a, conn, label) for a in item.anomalies)
                item = dataclasses.replace(item, anomalies=located)
                leg.fcgi.append(FcgiItem(conn, item, fcgi_seq))
                leg.anomalies.extend(
                    loc
                    for raw, loc in zip(item_raw, located, strict=True)
                    if id(raw) not in standalone
                )
                fcgi_seq += 1
    return leg
