"""Which protocol a connection speaks, from its first bytes, on any port.

A FastCGI connection opens with a BEGIN_REQUEST record (FastCGI 1.0
section 3.3: version 1, type 1, content length 8) or a GET_VALUES
management record; an HTTP/1.x connection opens with a request line,
``METHOD SP request-target SP HTTP/1.x`` (RFC 9112 section 3).  Port
options override the guess.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from typing import Any

from .base import ConnectionDecoder, Direction

__all__ = ["Protocol", "guess_protocol", "DetectingDecoder", "DETECT_BYTES"]

#: Bytes kept while the protocol is unknown.  A request line or a FastCGI
#: header decides within a few dozen bytes; 64 KiB allows very long URIs.
DETECT_BYTES = 64 * 1024

# A token (RFC 9110 section 5.6.2) then a space: the start of a request.
_REQUEST_START = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,32} ")
_KNOWN_METHODS = (
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"TRACE ",
    b"CONNECT ",
)


class Protocol(enum.Enum):
    HTTP = "http"
    FASTCGI = "fastcgi"
    UNKNOWN = "unknown"


def guess_protocol(to_server: bytes, to_client: bytes) -> Protocol | None:
    """The protocol these first bytes show, or None while undecided."""
    if len(to_server) >= 8:
        version, rtype = to_server[0], to_server[1]
        length = int.from_bytes(to_server[4:6], "big")
        if version == 1 and ((rtype == 1 and length == 8) or rtype == 9):
            return Protocol.FASTCGI
    if to_server.startswith(_KNOWN_METHODS):
        return Protocol.HTTP
    if to_server:
        if _REQUEST_START.match(to_server):
            line_end = to_server.find(b"\n")
            if line_end < 0:
                return None if len(to_server) < DETECT_BYTES else Protocol.UNKNOWN
            if b" HTTP/1." in to_server[:line_end]:
                return Protocol.HTTP
        if len(to_server) >= 8:
            return Protocol.UNKNOWN
    if to_client.startswith(b"HTTP/1."):
        return Protocol.HTTP
    if len(to_client) >= DETECT_BYTES:
        return Protocol.UNKNOWN
    return None


class DetectingDecoder:
    """A stream sink that waits for the protocol, then hands on to a decoder.

    Calls are buffered until :func:`guess_protocol` decides (or a port
    override fixes the protocol from the start); then ``make(protocol)``
    builds the decoder (or returns None for unknown traffic) and the
    buffered calls are replayed to it.  Every decoder output is passed to
    ``emit``.
    """

    def __init__(
        self,
        make: Callable[[Protocol], ConnectionDecoder | None],
        emit: Callable[[list[Any]], None],
        forced: Protocol | None = None,
    ) -> None:
        self._make = make
        self._emit = emit
        self.protocol: Protocol | None = None
        self.decoder: ConnectionDecoder | None = None
        self._calls: list[tuple[str, Direction, int, Any]] = []
        self._heads = [bytearray(), bytearray()]
        self._held = 0
        if forced is not None:
            self._decide(forced)

    def _decide(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self.decoder = self._make(protocol)
        calls, self._calls = self._calls, []
        self._heads = [bytearray(), bytearray()]
        for kind, direction, offset, arg in calls:
            self._forward(kind, direction, offset, arg)

    def _forward(self, kind: str, direction: Direction, offset: int, arg: Any) -> None:
        decoder = self.decoder
        if decoder is None:
            return
        if kind == "feed":
            self._emit(decoder.feed(direction, offset, arg))
        elif kind == "gap":
            self._emit(decoder.gap(direction, offset, arg))
        else:
            self._emit(decoder.end(direction, offset))

    def _hold(self, kind: str, direction: Direction, offset: int, arg: Any) -> None:
        self._calls.append((kind, direction, offset, arg))
        if kind == "feed":
            self._held += len(arg)
            if offset == len(self._heads[direction]):
                self._heads[direction] += arg[:DETECT_BYTES]
        guess = guess_protocol(bytes(self._heads[0]), bytes(self._heads[1]))
        if guess is None and self._held > DETECT_BYTES:
            guess = Protocol.UNKNOWN  # a start lost in a gap, or no protocol
        if guess is not None:
            self._decide(guess)

    def feed(self, direction: Direction, offset: int, data: bytes) -> None:
        decoder = self.decoder
        if decoder is not None:  # decided: straight through (per segment)
            out = decoder.feed(direction, offset, data)
            if out:
                self._emit(out)
        elif self.protocol is None:
            self._hold("feed", direction, offset, data)

    def gap(self, direction: Direction, offset: int, length: int) -> None:
        if self.protocol is None:
            self._hold("gap", direction, offset, length)
        else:
            self._forward("gap", direction, offset, length)

    def end(self, direction: Direction, offset: int) -> None:
        if self.protocol is None:
            self._hold("end", direction, offset, None)
        else:
            self._forward("end", direction, offset, None)

    def close(self) -> None:
        if self.protocol is None:
            heads = (bytes(self._heads[0]), bytes(self._heads[1]))
            self._decide(guess_protocol(*heads) or Protocol.UNKNOWN)
        if self.decoder is not None:
            self._emit(self.decoder.close())
