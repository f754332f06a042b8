"""A TCP relay between the HTTP client and nginx that damages responses.

The relay follows HTTP/1.1 message framing on each connection (RFC 9112
section 6: Content-Length, chunked, or until close) so it knows which
request each response answers and where each byte sits inside that
response.  A :class:`RelayFault` then overwrites, deletes or duplicates a
byte range of the responses to matching requests.  The framing is read
from the bytes nginx sent, so a fault never confuses the relay itself.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from typing import Literal

__all__ = ["RelayFault", "RelayEvent", "Relay", "ResponseFramer"]

# Bytes read from a socket at a time: one loopback segment is at most 64 KiB.
_READ_SIZE = 65536

# A header block or chunk-size line longer than this is not HTTP we
# produce; the relay stops framing and passes the rest through.
_MAX_LINE = 65536

Action = Literal["overwrite", "delete", "duplicate"]
Anchor = Literal["body", "message"]


@dataclass(frozen=True, slots=True)
class RelayFault:
    """Damage bytes ``[offset, offset + length)`` of matching responses.

    ``uri_contains`` selects requests whose target contains it ("" matches
    all).  ``anchor="body"`` counts from the first byte after the response
    header block, in wire form (chunk-size lines included);
    ``anchor="message"`` counts from the status line.  ``overwrite``
    writes ``data`` (or, when empty, each byte XOR 0xFF); ``delete`` drops
    the range; ``duplicate`` sends the range twice in a row.
    """

    action: Action
    offset: int
    length: int = 1
    uri_contains: str = ""
    data: bytes = b""
    anchor: Anchor = "body"

    def __post_init__(self) -> None:
        if self.offset < 0 or self.length < 1:
            raise ValueError(f"bad fault range {self.offset}+{self.length}")
        if self.data and (self.action != "overwrite" or len(self.data) != self.length):
            raise ValueError("data is for overwrite and must be `length` bytes long")


@dataclass(frozen=True, slots=True)
class RelayEvent:
    """One fault applied to one piece of a response, as the relay saw it."""

    client_port: int
    uri: str
    action: Action
    message_offset: int
    original: bytes
    written: bytes


@dataclass(frozen=True, slots=True)
class _Piece:
    """Bytes of one response; ``offset`` counts from its status line.

    ``request`` is the 0-based number of the request it answers on the
    connection (an interim 1xx response shares it with the final one).
    """

    request: int
    offset: int
    data: bytes
    head_length: int | None


class ResponseFramer:
    """Split a connection's response stream into pieces of single messages.

    ``requests`` is filled by the request side with (method, target) of
    each request in order, before the request is forwarded; a response to
    HEAD is known to have no body (RFC 9112 section 6.3, rule 1).
    """

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.answered = 0
        self._offset = 0
        self._head = bytearray()
        self._head_length: int | None = None
        self._state = "head"
        self._final = False
        self._left = 0
        self._line = bytearray()

    def feed(self, data: bytes) -> list[_Piece]:
        """Frame ``data``; return it cut at message boundaries."""
        pieces = []
        while data:
            used = self._consume(data)
            piece = _Piece(self.answered, self._offset, data[:used], self._head_length)
            pieces.append(piece)
            self._offset += used
            data = data[used:]
            if self._state == "done":
                self._next_message()
        return pieces

    def _next_message(self) -> None:
        if self._final:
            self.answered += 1
        self._final = False
        self._offset = 0
        self._head.clear()
        self._head_length = None
        self._state = "head"

    def _consume(self, data: bytes) -> int:
        """Advance the state machine over a prefix of ``data``; return its size."""
        if self._state == "head":
            return self._consume_head(data)
        if self._state == "length":
            used = min(self._left, len(data))
            self._left -= used
            if self._left == 0:
                self._state = "done"
            return used
        if self._state in ("size", "trailer"):
            return self._consume_line(data)
        if self._state == "chunk":
            used = min(self._left, len(data))
            self._left -= used
            if self._left == 0:
                self._state = "size"
            return used
        return len(data)  # "close": everything to the end of the stream

    def _consume_head(self, data: bytes) -> int:
        # The header block ends at the first empty line (RFC 9112 section 2.1).
        before = len(self._head)
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > _MAX_LINE:
                self._state = "close"
            return len(data)
        self._head_length = end + 4
        self._start_body(bytes(self._head[: end + 4]))
        return end + 4 - before

    def _start_body(self, head: bytes) -> None:
        # RFC 9112 section 6.3: the rules that decide the body length.
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip().lower()
        if 100 <= status < 200:
            # An interim response; the final one follows (RFC 9110 15.2).
            self._state = "done"
            return
        self._final = True
        method = "GET"
        if self.answered < len(self.requests):
            method = self.requests[self.answered][0]
        if method == "HEAD" or status in (204, 304):
            self._state = "done"
        elif b"chunked" in fields.get(b"transfer-encoding", b""):
            self._state = "size"
            self._line.clear()
        elif fields.get(b"content-length", b"").isdigit():
            self._left = int(fields[b"content-length"])
            self._state = "length" if self._left else "done"
        else:
            self._state = "close"

    def _consume_line(self, data: bytes) -> int:
        # Chunk-size lines and trailer lines end with LF (RFC 9112 7.1).
        newline = data.find(b"\n")
        if newline < 0:
            self._line += data
            if len(self._line) > _MAX_LINE:
                self._state = "close"
            return len(data)
        line = bytes(self._line + data[:newline]).strip()
        self._line.clear()
        if self._state == "trailer":
            if not line:
                self._state = "done"
            return newline + 1
        size_text = line.split(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            self._state = "close"
            return newline + 1
        if size == 0:
            self._state = "trailer"
        else:
            # Chunk data and the CRLF after it.
            self._left = size + 2
            self._state = "chunk"
        return newline + 1


class _RequestTracker:
    """Find request heads in the client's stream; record method and target."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skip = 0

    def feed(self, data: bytes) -> list[tuple[str, str]]:
        requests: list[tuple[str, str]] = []
        if self._skip:
            used = min(self._skip, len(data))
            self._skip -= used
            data = data[used:]
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return requests
            head = bytes(self._buffer[:end])
            del self._buffer[: end + 4]
            parts = head.split(b"\r\n")[0].split(b" ")
            method = parts[0].decode("latin-1")
            target = parts[1].decode("latin-1") if len(parts) > 1 else ""
            requests.append((method, target))
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    self._skip = int(value.strip() or b"0")
            used = min(self._skip, len(self._buffer))
            del self._buffer[:used]
            self._skip -= used


def _damage(
    piece: _Piece, faults: list[RelayFault]
) -> tuple[bytes, list[tuple[RelayFault, int, bytes, bytes]]]:
    """Apply ``faults`` to one piece; return new bytes and what was done."""
    out = bytearray()
    done = []
    pos = piece.offset
    data = piece.data
    end = pos + len(data)

    # Absolute fault ranges inside this message.
    ranges = []
    for fault in faults:
        base = 0
        if fault.anchor == "body":
            if piece.head_length is None or pos < piece.head_length:
                continue
            base = piece.head_length
        ranges.append((fault, base + fault.offset, base + fault.offset + fault.length))

    cursor = pos
    for fault, start, stop in sorted(ranges, key=lambda item: item[1]):
        lo, hi = max(start, cursor), min(stop, end)
        if lo >= hi:
            continue
        out += data[cursor - pos : lo - pos]
        original = data[lo - pos : hi - pos]
        if fault.action == "overwrite":
            written = (
                fault.data[lo - start : hi - start]
                if fault.data
                else bytes(byte ^ 0xFF for byte in original)
            )
        elif fault.action == "delete":
            written = b""
        else:
            # XXX: a duplicated range that spans two reads is repeated piecewise.
            written = original + original
        out += written
        done.append((fault, lo, original, written))
        cursor = hi
    out += data[cursor - pos :]
    return bytes(out), done


class _Connection:
    """One relayed connection: its two sockets and the response framer."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.client_port: int = client.getpeername()[1]
        self.framer = ResponseFramer()


class Relay:
    """Listen on 127.0.0.1:``port``; relay each connection to ``upstream_port``.

    ``events`` lists every fault applied, in order.
    """

    def __init__(self, port: int, upstream_port: int, faults: list[RelayFault]) -> None:
        self.port = port
        self.upstream_port = upstream_port
        self.faults = list(faults)
        self.events: list[RelayEvent] = []
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", port), backlog=128)
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting and close every relayed connection."""
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        self._thread.join(2)
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            conn = _Connection(client, upstream)
            for target in (self._pump_requests, self._pump_responses):
                threading.Thread(target=target, args=(conn,), daemon=True).start()

    def _pump_requests(self, conn: _Connection) -> None:
        # Record each request before forwarding it, so its response can
        # never arrive first.
        tracker = _RequestTracker()
        try:
            while data := conn.client.recv(_READ_SIZE):
                conn.framer.requests += tracker.feed(data)
                conn.upstream.sendall(data)
            conn.upstream.shutdown(socket.SHUT_WR)
        except OSError:
            return

    def _pump_responses(self, conn: _Connection) -> None:
        framer = conn.framer
        try:
            while data := conn.upstream.recv(_READ_SIZE):
                out = bytearray()
                for piece in framer.feed(data):
                    uri = ""
                    if piece.request < len(framer.requests):
                        uri = framer.requests[piece.request][1]
                    faults = [f for f in self.faults if f.uri_contains in uri]
                    damaged, done = _damage(piece, faults)
                    out += damaged
                    self._record(conn, uri, done)
                conn.client.sendall(out)
            conn.client.shutdown(socket.SHUT_WR)
        except OSError:
            return

    def _record(
        self,
        conn: _Connection,
        uri: str,
        done: list[tuple[RelayFault, int, bytes, bytes]],
    ) -> None:
        with self._lock:
            for fault, offset, original, written in done:
                self.events.append(
                    RelayEvent(
                        conn.client_port, uri, fault.action, offset, original, written
                    )
                )
