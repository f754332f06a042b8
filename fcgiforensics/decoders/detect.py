"""Which protocol a connection speaks, from its first bytes, on any port.

A FastCGI connection opens with a BEGIN_REQUEST record (FastCGI 1.0
section 3.3: version 1, type 1, content length 8) or a GET_VALUES
management record; an HTTP/1.x connection opens with a request line,
``METHOD SP request-target SP HTTP/1.x`` (RFC 9112 section 3).  Port
options override the guess.

For a connection caught without its handshake, the reassembler guessed
which side is the client; the same first bytes show whether the guess
was wrong (:func:`guess_reversed`).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from typing import Any

from .base import ConnectionDecoder, Direction

__all__ = [
    "Protocol",
    "guess_protocol",
    "guess_reversed",
    "DetectingDecoder",
    "DETECT_BYTES",
]

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


#: FastCGI record types by sender (FastCGI 1.0 section 8): the web
#: server sends BEGIN_REQUEST, ABORT_REQUEST, PARAMS, STDIN, DATA and
#: GET_VALUES; the application END_REQUEST, STDOUT, STDERR,
#: GET_VALUES_RESULT and UNKNOWN_TYPE.
_WEB_SERVER_RECORDS = frozenset({1, 2, 4, 5, 8, 9})
_APP_RECORDS = frozenset({3, 6, 7, 10, 11})
_STATUS_LINE = b"HTTP/1."


def _role(head: bytes, final: bool) -> str | None:
    """``"client"`` or ``"server"`` as a direction's first bytes show it,
    ``""`` when they show neither, None while too few have come (``final``:
    no more will)."""
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

    # Step 3: a request line, or BEGIN_REQUEST.
    guess = guess_protocol(head, b"")
    if guess is Protocol.HTTP or guess is Protocol.FASTCGI:
        return "client"
    if guess is None and not final:
        return None
    return ""


def guess_reversed(
    to_server: bytes, to_client: bytes, final: tuple[bool, bool]
) -> bool | None:
    """Whether first bytes show the guessed client to be the server: True
    when they do, False when they show the guess right or show nothing
    (and no more bytes will come, per ``final``), None while undecided."""
    sent = _role(to_server, final[0])
    got = _role(to_client, final[1])
    wrong = sent == "server" or got == "client"
    right = sent == "client" or got == "server"
    if wrong or right:
        return wrong and not right
    if sent is None or got is None:
        return None
    return False


class DetectingDecoder:
    """A stream sink that waits for the protocol, then hands on to a decoder.

    Calls are buffered until :func:`guess_protocol` decides (or a port
    override fixes the protocol from the start); then ``make(protocol)``
    builds the decoder (or returns None for unknown traffic) and the
    buffered calls are replayed to it.  Every decoder output is passed to
    ``emit``.

    ``swap_roles``, given for a connection whose client was only guessed
    from the ports, is called once if the first bytes show the guess
    wrong (:func:`guess_reversed`), before the protocol is guessed; the
    held calls are then replayed in the other directions, as the
    connection now names them.
    """

    def __init__(
        self,
        make: Callable[[Protocol], ConnectionDecoder | None],
        emit: Callable[[list[Any]], None],
        forced: Protocol | None = None,
        swap_roles: Callable[[], None] | None = None,
    ) -> None:
        self._make = make
        self._emit = emit
        self.protocol: Protocol | None = None
        self.decoder: ConnectionDecoder | None = None
        self._calls: list[tuple[str, Direction, int, Any]] = []
        self._heads = [bytearray(), bytearray()]
        self._final = [False, False]  # a direction's first bytes are all in
        self._held = 0
        self._swap_roles = swap_roles
        self._orienting = False
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

    def _orient(self, reversed_: bool) -> None:
        """Settle the roles; if reversed, swap them and the held calls."""
        swap, self._swap_roles = self._swap_roles, None
        if not reversed_ or swap is None:
            return
        self._orienting = True  # calls made meanwhile are held as they come
        swap()
        self._orienting = False
        self._calls = [
            (kind, Direction(1 - d), offset, arg)
            for kind, d, offset, arg in self._calls
        ]
        self._heads.reverse()
        self._final.reverse()

    def _hold(self, kind: str, direction: Direction, offset: int, arg: Any) -> None:
        self._calls.append((kind, direction, offset, arg))
        head = self._heads[direction]
        if kind == "feed":
            self._held += len(arg)
            if offset == len(head):
                head += arg[:DETECT_BYTES]
            self._final[direction] = len(head) >= DETECT_BYTES
        else:
            self._final[direction] = True  # its first bytes can grow no more
        if self._orienting:
            return

        # Step 1: which side is the client, where the ports only guessed.
        if self._swap_roles is not None:
            reversed_ = guess_reversed(
                bytes(self._heads[0]), bytes(self._heads[1]), self._final_pair()
            )
            if reversed_ is None and self._held <= DETECT_BYTES:
                return
            self._orient(bool(reversed_))

        # Step 2: the protocol.
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

    def _final_pair(self) -> tuple[bool, bool]:
        return self._final[0], self._final[1]

    def close(self) -> None:
        if self._swap_roles is not None:
            heads = (bytes(self._heads[0]), bytes(self._heads[1]))
            self._orient(guess_reversed(*heads, (True, True)) is True)
        if self.protocol is None:
            heads = (bytes(self._heads[0]), bytes(self._heads[1]))
            self._decide(guess_protocol(*heads) or Protocol.UNKNOWN)
        if self.decoder is not None:
            self._emit(self.decoder.close())
