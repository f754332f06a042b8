"""The reading pipeline end to end, with the robustness invariant checked.

Shared by the corpus tests, the property tests and the fuzz harnesses:
a capture file goes through the reader, ``decode_tcp``, the reassembler
and (optionally) the HTTP/1.x or FastCGI decoder of every connection.
The invariant: the run ends with results plus anomalies, or with a
:class:`~fcgiforensics.errors.CaptureError`; nothing else escapes, and
every object a decoder returns is one of its messages or an Anomaly
whose name is in the catalogue.

Run as a script it prints a JSON summary of one file::

    python -m tests.fuzz.pipeline FILE {none,http,fcgi,auto}
"""

from __future__ import annotations

import functools
import json
import struct
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fcgiforensics.anomalies import CATALOGUE, Anomaly  # noqa: E402
from fcgiforensics.capture.leg import follow_leg  # noqa: E402
from fcgiforensics.decoders.base import Direction  # noqa: E402
from fcgiforensics.reassembly import Connection, Reassembler  # noqa: E402

__all__ = [
    "FCGI_PORT",
    "Call",
    "DecoderSink",
    "Outcome",
    "RecordingSink",
    "check_items",
    "decode_calls",
    "decoder_classes",
    "encode_calls",
    "follow_path",
    "new_decoder",
    "record_connections",
    "run_calls",
]

#: Server port taken as FastCGI by ``protocol="auto"`` (php-fpm's usual).
FCGI_PORT = 9000


@functools.cache
def decoder_classes() -> dict[str, tuple[type, tuple[type, ...]]]:
    """Decoder class and message classes per protocol, for those that import."""
    found: dict[str, tuple[type, tuple[type, ...]]] = {}
    try:
        from fcgiforensics.decoders import http1
    except ImportError:
        pass
    else:
        found["http"] = (http1.Http1Decoder, (http1.HttpExchange,))
    try:
        from fcgiforensics.decoders import fastcgi
    except ImportError:
        pass
    else:
        found["fcgi"] = (
            fastcgi.FcgiDecoder,
            (fastcgi.FcgiRequest, fastcgi.FcgiManagementRecord),
        )
    return found


def new_decoder(protocol: str) -> Any:
    """A fresh decoder for ``"http"`` or ``"fcgi"``."""
    return decoder_classes()[protocol][0]()


def check_items(items: list[object], protocol: str) -> None:
    """Fail unless every item is a message of ``protocol`` or a known Anomaly."""
    messages = decoder_classes()[protocol][1]
    for item in items:
        if isinstance(item, Anomaly):
            assert item.name in CATALOGUE, f"anomaly not catalogued: {item.name}"
        else:
            assert isinstance(item, messages), f"unexpected item {item!r:.200}"


@dataclass
class DecoderSink:
    """Adapts a ConnectionDecoder to the reassembler's sink, keeping output."""

    decoder: Any
    protocol: str
    items: list[object] = field(default_factory=list)

    def feed(self, direction: Direction, offset: int, data: bytes) -> None:
        self.items.extend(self.decoder.feed(direction, offset, data))

    def gap(self, direction: Direction, offset: int, length: int) -> None:
        self.items.extend(self.decoder.gap(direction, offset, length))

    def end(self, direction: Direction, offset: int) -> None:
        self.items.extend(self.decoder.end(direction, offset))

    def close(self) -> None:
        self.items.extend(self.decoder.close())


@dataclass
class Outcome:
    """What one run of the pipeline produced."""

    packets: int = 0
    connections: int = 0
    anomalies: Counter[str] = field(default_factory=Counter)
    messages: list[object] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready digest: counts, anomaly names, message sizes."""
        return {
            "packets": self.packets,
            "connections": self.connections,
            "anomalies": dict(self.anomalies),
            "messages": [_describe(m) for m in self.messages],
        }


def _describe(message: object) -> dict[str, Any]:
    """The sizes and flags of one message that the corpus tests look at."""
    out: dict[str, Any] = {"type": type(message).__name__}
    response = getattr(message, "response", None)
    if response is not None:
        out["status"] = response.status
        out["body"] = len(response.body)
        out["wire_body"] = len(response.wire_body)
        out["complete"] = response.complete
    body = getattr(message, "body", None)
    if body is not None and response is None:
        out["body"] = len(body)
        out["body_head"] = body.data[:16].decode("latin-1")
        out["complete"] = getattr(message, "complete", None)
    return out


def _sink_factory(protocol: str,
                  sinks: list[DecoderSink]) -> Callable[[Connection], object]:
    def sink_for(conn: Connection) -> DecoderSink | None:
        chosen = protocol
        if protocol == "auto":
            chosen = "fcgi" if conn.server[1] == FCGI_PORT else "http"
        if chosen not in decoder_classes():
            return None
        sink = DecoderSink(new_decoder(chosen), chosen)
        sinks.append(sink)
        return sink

    return sink_for


def follow_path(path: str, protocol: str = "auto") -> Outcome:
    """Run ``path`` through the pipeline and check the invariant.

    ``protocol`` is ``"none"`` (reassembly only), ``"http"``, ``"fcgi"``
    or ``"auto"`` (FastCGI on port :data:`FCGI_PORT`, else HTTP).
    A :class:`CaptureError` propagates: it is the one allowed failure.
    """
    sinks: list[DecoderSink] = []
    factory = None if protocol == "none" else _sink_factory(protocol, sinks)
    reassembler = Reassembler(factory, capture=Path(path).name)
    stats = follow_leg([path], reassembler)
    reassembler.finish()

    outcome = Outcome(stats.packets, len(reassembler.connections))
    names = [a.name for a in stats.anomalies]
    for conn in reassembler.connections:
        names += [a.name for a in conn.anomalies]
    for sink in sinks:
        check_items(sink.items, sink.protocol)
        for item in sink.items:
            if isinstance(item, Anomaly):
                names.append(item.name)
            else:
                outcome.messages.append(item)
    unknown = sorted(set(names) - set(CATALOGUE))
    assert not unknown, f"anomalies not catalogued: {unknown}"
    outcome.anomalies.update(names)
    return outcome


# -- decoder call scripts: the input format of the decoder harnesses -------
#
# A script is a run of calls.  Each starts with a control byte and a
# 16-bit big-endian length: the low bit of the control byte is the
# direction; (control >> 1) % 8 is the kind: 0-5 feed the next ``length``
# bytes of the script, 6 is a gap of ``length`` bytes, 7 ends the
# direction.  Any byte string is a valid script, so a fuzzer can mutate
# one freely, and seeds are written from real connections.

Call = tuple[str, Direction, bytes | int]


def decode_calls(script: bytes) -> list[Call]:
    """The calls a script stands for (a cut-off last call is shortened)."""
    calls: list[Call] = []
    pos = 0
    while pos + 3 <= len(script):
        control = script[pos]
        length = int.from_bytes(script[pos + 1:pos + 3], "big")
        pos += 3
        direction = Direction(control & 1)
        kind = (control >> 1) % 8
        if kind < 6:
            calls.append(("feed", direction, script[pos:pos + length]))
            pos += length
        elif kind == 6:
            calls.append(("gap", direction, length))
        else:
            calls.append(("end", direction, 0))
    return calls


def encode_calls(calls: list[Call]) -> bytes:
    """The script of ``calls`` (feeds longer than 65535 bytes are split)."""
    out = bytearray()
    for kind, direction, arg in calls:
        if kind == "feed":
            assert isinstance(arg, bytes)
            for i in range(0, len(arg), 0xFFFF):
                piece = arg[i:i + 0xFFFF]
                out += struct.pack("!BH", int(direction), len(piece)) + piece
        elif kind == "gap":
            assert isinstance(arg, int)
            while arg > 0:
                step = min(arg, 0xFFFF)
                out += struct.pack("!BH", 12 | int(direction), step)
                arg -= step
        else:
            out += struct.pack("!BH", 14 | int(direction), 0)
    return bytes(out)


def run_calls(protocol: str, calls: list[Call]) -> list[object]:
    """Make ``calls`` on a new decoder, then close it; check what it returns.

    Offsets are kept per direction, as a reassembler would give them; a
    direction that has ended is not fed again.
    """
    decoder = new_decoder(protocol)
    offsets = [0, 0]
    ended = [False, False]
    out: list[object] = []
    for kind, direction, arg in calls:
        if ended[direction]:
            continue
        at = offsets[direction]
        if kind == "feed":
            assert isinstance(arg, bytes)
            if arg:
                out += decoder.feed(direction, at, arg)
                offsets[direction] += len(arg)
        elif kind == "gap":
            assert isinstance(arg, int)
            if arg:
                out += decoder.gap(direction, at, arg)
                offsets[direction] += arg
        else:
            out += decoder.end(direction, at)
            ended[direction] = True
    out += decoder.close()
    check_items(out, protocol)
    return out


@dataclass
class RecordingSink:
    """A sink that keeps the calls a reassembler made, as a script."""

    protocol: str
    calls: list[Call] = field(default_factory=list)

    def feed(self, direction: Direction, offset: int, data: bytes) -> None:
        self.calls.append(("feed", direction, bytes(data)))

    def gap(self, direction: Direction, offset: int, length: int) -> None:
        self.calls.append(("gap", direction, length))

    def end(self, direction: Direction, offset: int) -> None:
        self.calls.append(("end", direction, 0))


def record_connections(path: str) -> list[RecordingSink]:
    """The call script of every connection of a capture, by protocol.

    Connections to port :data:`FCGI_PORT` are tagged ``"fcgi"``, the
    rest ``"http"``.
    """
    sinks: list[RecordingSink] = []

    def sink_for(conn: Connection) -> RecordingSink:
        protocol = "fcgi" if conn.server[1] == FCGI_PORT else "http"
        sinks.append(RecordingSink(protocol))
        return sinks[-1]

    reassembler = Reassembler(sink_for, capture=Path(path).name)
    follow_leg([path], reassembler)
    reassembler.finish()
    return sinks


def main(argv: list[str]) -> int:
    path, protocol = argv[0], argv[1] if len(argv) > 1 else "auto"
    json.dump(follow_path(path, protocol).summary(), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
