"""What every connection decoder accepts and returns."""

from __future__ import annotations

import enum
from typing import Protocol

__all__ = ["Direction", "ConnectionDecoder"]


class Direction(enum.IntEnum):
    """Which way bytes flow on a TCP connection.

    The *client* is the side that opened the connection (sent the SYN),
    or for a connection seen mid-stream, the side that sent the first
    request.  On the FastCGI leg the client is the web server (nginx).
    """

    TO_SERVER = 0
    TO_CLIENT = 1

    @property
    def label(self) -> str:
        return "client->server" if self is Direction.TO_SERVER else "server->client"


class ConnectionDecoder(Protocol):
    """The interface shared by the HTTP/1.x and FastCGI decoders.

    Offsets are 64-bit TCP stream offsets of the given direction, counted
    from its first byte.  Calls for one direction come in increasing
    offset order and never overlap; a ``gap`` stands for bytes the capture
    lacks.  Each call returns what it finished: messages (the decoder's
    own dataclasses) and :class:`Anomaly` objects, in stream order.
    """

    def feed(self, direction: Direction, offset: int, data: bytes) -> list[object]:
        """Take bytes ``[offset, offset + len(data))`` of ``direction``."""
        ...

    def gap(self, direction: Direction, offset: int, length: int) -> list[object]:
        """Bytes ``[offset, offset + length)`` were not observed."""
        ...

    def end(self, direction: Direction, offset: int) -> list[object]:
        """``direction`` ended at ``offset`` (FIN, RST or end of capture)."""
        ...

    def close(self) -> list[object]:
        """The capture is over: flush every unfinished message."""
        ...
