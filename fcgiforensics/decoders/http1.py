"""HTTP/1.x messages of one client leg connection (RFC 9112), sans-IO.

:class:`Http1Decoder` takes the two byte streams of one connection
(requests to the server, responses to the client), frames messages as
RFC 9112 says, pairs each response with its request in order (keep-alive
and pipelining), and hands back an :class:`HttpExchange` per request.

Each message keeps its wire form next to the decoded one: the raw head
bytes, head offsets, chunk boundaries, the de-chunked ``wire_body`` and
the content-decoded ``body``, both mapped back to stream offsets.

Damage never raises.  Bytes the capture lacks are kept as unobserved
inside a body of known length; a gap in a head or in chunk framing loses
the framing, and the decoder looks for the next start line.  A response
found that way cannot be placed against a request, and says so.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..anomalies import Anomaly
from ..errors import StrictModeError, UsageError
from .base import Direction
from .body import Body, BodyBuilder
from .content import MAX_DECODED_BYTES, SUPPORTED_CODINGS, ContentDecoder, parse_codings

__all__ = [
    "MAX_HEAD_BYTES",
    "MAX_HEADER_LINES",
    "MAX_START_LINE",
    "MAX_CHUNK_LINE",
    "MAX_CHUNK_SIZE",
    "MAX_BODY_BYTES",
    "MAX_STALL_BYTES",
    "DECODE_BLOCK",
    "Headers",
    "HttpRequest",
    "InterimResponse",
    "HttpResponse",
    "HttpExchange",
    "Http1Decoder",
    "field_values",
]

#: Largest message head (start line, fields, blank line).  nginx refuses
#: request heads over 32 KiB by default (large_client_header_buffers
#: 4 8k); twice that leaves room for other servers and still bounds the
#: buffer a head can pin.
MAX_HEAD_BYTES = 64 * 1024

#: Most field lines in one head or trailer section.  Apache stops at 100
#: by default (LimitRequestFields); honest traffic stays well below this.
MAX_HEADER_LINES = 256

#: Longest line taken as a start line while resynchronising.  A request
#: line longer than nginx's 8 KiB header buffer is refused anyway.
MAX_START_LINE = 16 * 1024

#: Longest chunk-size line (size, extensions, CRLF; RFC 9112 §7.1).
#: nginx keeps no extensions; 4 KiB is generous and bounds the buffer.
MAX_CHUNK_LINE = 4 * 1024

#: Largest chunk size accepted.  Sizes are held in a signed 64-bit off_t
#: by nginx and most servers; a larger one is an overflow attempt.
MAX_CHUNK_SIZE = 2**63 - 1

#: Largest wire body kept per message.  Bodies worth diffing are far
#: smaller; past this the framing is still followed but bytes are dropped.
MAX_BODY_BYTES = 256 * 1024 * 1024

#: Response bytes held while no request is known for them.  A request
#: precedes its response; when the request stream lags by more than this
#: the response is taken as having no request.
MAX_STALL_BYTES = 1024 * 1024

#: Wire body bytes handed to the content decoder at once, counted from
#: the start of each chunk (or of the body).  Fixed blocks make the
#: coarse body map independent of how the stream was cut into segments.
DECODE_BLOCK = 16 * 1024

#: Consumed bytes dropped from the front of a buffer once this many.
_TRIM_AT = 64 * 1024

Headers = tuple[tuple[bytes, bytes], ...]
Chunks = tuple[tuple[int, int], ...]

# RFC 9110 §5.6.2 token; RFC 9112 §3 request-line and §4 status-line.
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN_RE = re.compile(_TOKEN)
_REQUEST_LINE_RE = re.compile(
    rb"(" + _TOKEN + rb") ([^ \x00-\x1f\x7f]+) HTTP/1\.([0-9])"
)
_STATUS_LINE_RE = re.compile(
    rb"HTTP/1\.([0-9]) ([0-9]{3})(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?"
)
_CONTENT_RANGE_RE = re.compile(rb"bytes ([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19}|\*)")
# Start lines found at the end of a line while resynchronising.
_RESYNC_REQUEST_RE = re.compile(
    rb"(?:GET|HEAD|POST|PUT|DELETE|OPTIONS|PATCH|TRACE|CONNECT)"
    rb" [^ \x00-\x1f\x7f]{1,8192} HTTP/1\.[0-9]\Z"
)
_RESYNC_STATUS_RE = re.compile(
    rb"HTTP/1\.[0-9] [0-9]{3}(?: [^\x00-\x08\x0a-\x1f\x7f]{0,1024})?\Z"
)
_HEX_RE = re.compile(rb"[0-9A-Fa-f]+")
_DIGITS_RE = re.compile(rb"[0-9]+")
_OWS = b" \t"


def _content_length(values: list[bytes]) -> int | None:
    """The one length that Content-Length fields state, or None (RFC 9110 §8.6)."""
    items = {v.strip(_OWS) for value in values for v in value.split(b",")}
    if len(items) != 1:
        return None
    text = items.pop()
    if not _DIGITS_RE.fullmatch(text) or len(text) > 19:
        return None
    return int(text)


def field_values(headers: Headers, name: bytes) -> list[bytes]:
    """Values of every field line named ``name`` (case-insensitive), in order."""
    wanted = name.lower()
    return [v for n, v in headers if n.lower() == wanted]


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One request as it crossed the wire (RFC 9112 §3).

    ``head_start``/``head_end`` are the stream offsets of the first byte of
    the request line and just past the blank line ending the head.
    ``chunks`` lists ``(offset of the chunk-size line, size)``.
    ``complete`` is False when the end of the request was not seen.
    """

    method: str
    target: str
    version: str
    headers: Headers
    raw_head: bytes
    head_start: int
    head_end: int
    body: Body
    chunked: bool
    chunks: Chunks
    trailers: Headers
    complete: bool


@dataclass(frozen=True, slots=True)
class InterimResponse:
    """A 1xx response head seen before the final one (RFC 9110 §15.2)."""

    version: str
    status: int
    reason: str
    headers: Headers
    raw_head: bytes
    head_start: int
    head_end: int


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """One final response as it crossed the wire (RFC 9112 §4).

    ``wire_body`` is the body after de-chunking, still content-encoded;
    ``body`` is after content decoding, and the same object when there is
    no content coding (or one this tool cannot undo).  ``range_start`` is
    where a 206 body belongs in the whole representation (Content-Range).
    ``content_encoding`` is the Content-Encoding field as sent.
    """

    version: str
    status: int
    reason: str
    headers: Headers
    raw_head: bytes
    head_start: int
    head_end: int
    chunked: bool
    content_encoding: str | None
    content_length: int | None
    range_start: int | None
    chunks: Chunks
    trailers: Headers
    wire_body: Body
    body: Body
    interim: tuple[InterimResponse, ...]
    complete: bool


@dataclass(frozen=True, slots=True)
class HttpExchange:
    """A request and its response, as far as the capture shows them.

    ``request`` is None for a response that no decodable request explains;
    ``response`` is None when none was seen.  ``anomalies`` repeats the
    anomalies (already returned by the decoder) that concern this
    exchange.  ``complete`` means both messages were seen to their end.
    """

    request: HttpRequest | None
    response: HttpResponse | None
    anomalies: tuple[Anomaly, ...]
    complete: bool


class _Mode(enum.Enum):
    """What the bytes at the read position of one direction are."""

    HEAD = "head"
    LENGTH = "length"
    CHUNK_SIZE = "chunk-size"
    CHUNK_DATA = "chunk-data"
    CHUNK_END = "chunk-end"
    TRAILERS = "trailers"
    UNTIL_CLOSE = "until-close"
    RESYNC = "resync"
    WAIT = "wait"
    TUNNEL = "tunnel"
    DONE = "done"


# Body parts of known length, which the fast path of feed() may take.
_BODY_MODES = (_Mode.LENGTH, _Mode.CHUNK_DATA)


class _Slot:
    """A request (or a lost one) in the queue awaiting its response."""

    __slots__ = (
        "method",
        "upgrade",
        "lost",
        "request",
        "request_done",
        "response",
        "response_done",
        "tunnel",
        "anomalies",
    )

    def __init__(self, method: str, *, upgrade: bool, lost: bool) -> None:
        self.method = method
        self.upgrade = upgrade
        self.lost = lost
        self.request: HttpRequest | None = None
        self.request_done = lost
        self.response: HttpResponse | None = None
        self.response_done = False
        self.tunnel = False
        self.anomalies: list[Anomaly] = []


class _Head:
    """A parsed head: start line parts, fields, raw bytes and offsets."""

    __slots__ = ("parts", "headers", "raw", "start", "end")

    def __init__(
        self,
        parts: tuple[str, str, str],
        headers: Headers,
        raw: bytes,
        start: int,
        end: int,
    ) -> None:
        self.parts = parts
        self.headers = headers
        self.raw = raw
        self.start = start
        self.end = end


class _Message:
    """A message whose body is being read, with its builders."""

    __slots__ = (
        "head",
        "slot",
        "anomalies",
        "builder",
        "decoder",
        "chunked",
        "chunks",
        "trailers",
        "content_length",
        "range_start",
        "content_encoding",
        "interim",
        "kept",
        "dropping",
        "run_parts",
        "run_start",
        "run_len",
        "run_label",
        "block",
        "block_start",
        "block_len",
    )

    def __init__(self, head: _Head, slot: _Slot | None) -> None:
        self.head = head
        self.slot = slot
        self.anomalies: list[Anomaly] = slot.anomalies if slot else []
        self.builder = BodyBuilder()
        self.decoder: ContentDecoder | None = None
        self.chunked = False
        self.chunks: list[tuple[int, int]] = []
        self.trailers: list[tuple[bytes, bytes]] = []
        self.content_length: int | None = None
        self.range_start: int | None = None
        self.content_encoding: str | None = None
        self.interim: tuple[InterimResponse, ...] = ()
        self.kept = 0
        self.dropping = False
        self.run_parts: list[bytes] = []
        self.run_start = 0
        self.run_len = 0
        self.run_label = ""
        self.block: list[bytes] = []
        self.block_start = 0
        self.block_len = 0


class _Side:
    """Read state of one direction: buffer, mode and message in progress."""

    __slots__ = (
        "direction",
        "is_request",
        "buf",
        "base",
        "pos",
        "scan",
        "head_start",
        "head_lines",
        "start_parts",
        "mode",
        "remaining",
        "msg",
        "next_offset",
        "ended",
        "midline",
        "skipped",
        "skip_from",
        "deferred",
        "deferred_bytes",
        "wait_head",
        "wait_anomalies",
        "wait_slot",
        "unplaceable",
        "interim",
    )

    def __init__(self, direction: Direction) -> None:
        self.direction = direction
        self.is_request = direction is Direction.TO_SERVER
        self.buf = bytearray()
        self.base = 0
        self.pos = 0
        self.scan = 0
        self.head_start = -1
        self.head_lines = 0
        self.start_parts: tuple[str, str, str] = ("", "", "")
        self.mode = _Mode.HEAD
        self.remaining = 0
        self.msg: _Message | None = None
        self.next_offset = 0
        self.ended = False
        self.midline = False
        self.skipped = 0
        self.skip_from = 0
        self.deferred: list[tuple[str, int, bytes, int]] = []
        self.deferred_bytes = 0
        self.wait_head: _Head | None = None
        self.wait_anomalies: list[Anomaly] = []
        self.wait_slot: _Slot | None = None
        self.unplaceable = False
        self.interim: list[InterimResponse] = []

    def at(self, index: int) -> int:
        """The stream offset of buffer index ``index``."""
        return self.base + index

    def drop_buffer(self) -> None:
        """Forget buffered bytes; the next byte is at ``next_offset``."""
        self.buf.clear()
        self.base = self.next_offset
        self.pos = self.scan = 0
        self.head_start = -1

    def trim(self) -> None:
        """Drop consumed bytes from the front, keeping indices true."""
        if self.pos == 0:
            return
        if self.pos < _TRIM_AT and self.pos < len(self.buf):
            return
        cut = self.pos
        del self.buf[:cut]
        self.base += cut
        self.pos = 0
        self.scan = max(self.scan - cut, 0)
        if self.head_start >= 0:
            self.head_start -= cut


class Http1Decoder:
    """Decode one HTTP/1.x connection; see :class:`ConnectionDecoder`.

    Every call returns, in order, the anomalies it found and the exchanges
    it finished.  An exchange is returned once its response is complete
    and its request has ended, or at :meth:`close` (and at :meth:`end` of
    the response stream) when it never will be.  With ``strict`` the
    first anomaly raises :class:`StrictModeError` instead.
    """

    def __init__(self, *, strict: bool = False, max_body: int = MAX_BODY_BYTES) -> None:
        """``max_body`` bounds the bytes kept of one body, both as sent and
        once content-decoded (default :data:`MAX_BODY_BYTES`)."""
        self._strict = strict
        self._max_body = max_body
        self._sides = (_Side(Direction.TO_SERVER), _Side(Direction.TO_CLIENT))
        self._slots: deque[_Slot] = deque()
        self._answered = 0
        self._closing = False
        self._steps: dict[_Mode, Callable[[_Side, list[object]], bool]] = {
            _Mode.HEAD: self._step_head,
            _Mode.RESYNC: self._step_resync,
            _Mode.LENGTH: self._step_length,
            _Mode.UNTIL_CLOSE: self._step_length,
            _Mode.CHUNK_DATA: self._step_length,
            _Mode.CHUNK_SIZE: self._step_chunk_size,
            _Mode.CHUNK_END: self._step_chunk_end,
            _Mode.TRAILERS: self._step_trailers,
        }

    # The ConnectionDecoder protocol.

    def feed(self, direction: Direction, offset: int, data: bytes) -> list[object]:
        """Take bytes ``[offset, offset + len(data))`` of ``direction``."""
        side = self._sides[direction]
        if (
            side.mode in _BODY_MODES
            and offset == side.next_offset
            and not side.buf
            and len(data) < side.remaining
        ):
            # The common case on a large body: bytes wholly inside a body
            # part of known length, nothing buffered before them.  They
            # go straight to the body; no state changes, nothing can end.
            msg = side.msg
            assert msg is not None
            out: list[object] = []
            label = f"chunk {len(msg.chunks)}" if msg.chunked else ""
            side.next_offset = offset + len(data)
            self._body_bytes(side, msg, bytes(data), offset, label, out)
            side.remaining -= len(data)
            side.base = side.next_offset  # the buffer is empty
            return self._checked(out)
        return self._call(direction, "data", offset, bytes(data), len(data))

    def gap(self, direction: Direction, offset: int, length: int) -> list[object]:
        """Bytes ``[offset, offset + length)`` were not observed."""
        return self._call(direction, "gap", offset, b"", length)

    def end(self, direction: Direction, offset: int) -> list[object]:
        """``direction`` ended at ``offset``."""
        return self._call(direction, "end", offset, b"", 0)

    def close(self) -> list[object]:
        """The capture is over: flush every unfinished exchange."""
        out: list[object] = []
        self._closing = True
        self._pump(out)
        for side in self._sides:
            if side.mode is not _Mode.DONE:
                self._finish_side(side, out, closed=False)
        self._pump(out)
        for slot in self._slots:
            slot.request_done = slot.response_done = True
        self._emit_ready(out)
        self._slots.clear()
        return self._checked(out)

    # Dispatch.

    def _call(
        self, direction: Direction, kind: str, offset: int, data: bytes, length: int
    ) -> list[object]:
        """Check offsets, hand the event to its side, then settle both sides."""
        side = self._sides[direction]
        if offset < side.next_offset:
            raise UsageError(
                f"{direction.label}: offset {offset} goes back before "
                f"{side.next_offset}; calls must not overlap"
            )
        out: list[object] = []
        if offset > side.next_offset:
            hole = offset - side.next_offset
            self._dispatch(side, ("gap", side.next_offset, b"", hole), out)
        self._dispatch(side, (kind, offset, data, length), out)
        self._pump(out)
        return self._checked(out)

    def _checked(self, out: list[object]) -> list[object]:
        """In strict mode, raise on the first anomaly."""
        if self._strict:
            for item in out:
                if isinstance(item, Anomaly):
                    raise StrictModeError(item)
        return out

    def _dispatch(
        self, side: _Side, event: tuple[str, int, bytes, int], out: list[object]
    ) -> None:
        """Apply one event to ``side``, or hold it while the side waits."""
        kind, offset, data, length = event
        if kind == "end":
            side.ended = True
        if side.mode is _Mode.WAIT:
            side.deferred.append(event)
            side.deferred_bytes += len(data)
            side.next_offset = offset + length
            return
        if kind == "data":
            side.next_offset = offset + length
            if side.mode in (_Mode.TUNNEL, _Mode.DONE):
                side.drop_buffer()
                return
            side.buf += data
            self._run(side, out)
        elif kind == "gap":
            self._gap(side, offset, length, out)
            side.next_offset = offset + length
            side.drop_buffer()
            self._run(side, out)
        else:
            self._finish_side(side, out, closed=True)

    def _pump(self, out: list[object]) -> None:
        """Release waiting sides whose reason to wait is gone, until none is."""
        progress = True
        while progress:
            progress = False
            for side in self._sides:
                if side.mode is _Mode.WAIT and self._unwait(side, out):
                    progress = True
                    events, side.deferred = side.deferred, []
                    side.deferred_bytes = 0
                    self._run(side, out)
                    for event in events:
                        self._dispatch(side, event, out)

    # Reading loop.

    def _run(self, side: _Side, out: list[object]) -> None:
        """Consume what the buffer allows in the current mode."""
        while True:
            handler = self._steps.get(side.mode)
            if handler is None or not handler(side, out):
                break
        if side.mode in (_Mode.TUNNEL, _Mode.DONE):
            side.pos = len(side.buf)
        side.trim()

    def _note(
        self,
        side: _Side,
        name: str,
        detail: str,
        offset: int,
        out: list[object],
        into: list[Anomaly] | None = None,
    ) -> Anomaly:
        """Record an anomaly in ``out`` and, if given, in a message's list."""
        anomaly = Anomaly(
            name, detail, direction=side.direction.label, stream_offset=offset
        )
        out.append(anomaly)
        if into is not None:
            into.append(anomaly)
        return anomaly

    # Heads (RFC 9112 §2.1: start-line *( field-line CRLF ) CRLF).

    def _step_head(self, side: _Side, out: list[object]) -> bool:
        """Scan one more line of a head; parse the head at its blank line."""
        buf = side.buf
        nl = buf.find(b"\n", side.scan)
        start = side.head_start if side.head_start >= 0 else side.pos
        if nl < 0:
            side.scan = len(buf)
            if len(buf) - start > MAX_HEAD_BYTES:
                self._head_too_large(side, start, out)
                return True
            return False
        side.scan = nl + 1
        if nl + 1 - start > MAX_HEAD_BYTES:
            self._head_too_large(side, start, out)
            return True
        line_start = side.pos if side.head_start < 0 else self._line_start(side, nl)
        line = bytes(buf[line_start:nl]).removesuffix(b"\r")

        # Before the start line: RFC 9112 §2.2 lets empty lines be skipped.
        if side.head_start < 0:
            if not line:
                side.pos = nl + 1
                return True
            return self._start_line(side, line, line_start, nl, out)

        # A field line, or the blank line that ends the head.
        if line:
            side.head_lines += 1
            if side.head_lines > MAX_HEADER_LINES:
                self._note(
                    side,
                    "http.too_many_fields",
                    f"more than {MAX_HEADER_LINES} field lines in one head",
                    side.at(side.head_start),
                    out,
                )
                self._lose_sync(side, out, cut=nl + 1)
            return True
        raw = bytes(buf[side.head_start : nl + 1])
        head_offset = side.at(side.head_start)
        side.pos = nl + 1
        side.head_start = -1
        self._on_head(side, raw, head_offset, out)
        return True

    @staticmethod
    def _line_start(side: _Side, nl: int) -> int:
        """Index of the first byte of the line ending at ``nl``."""
        return side.buf.rfind(b"\n", side.head_start, nl) + 1 or side.head_start

    def _start_line(
        self, side: _Side, line: bytes, line_start: int, nl: int, out: list[object]
    ) -> bool:
        """Check a start line as soon as it is whole (RFC 9112 §3, §4)."""
        parts = self._parse_start(side, line)
        if parts is None:
            kind = "request" if side.is_request else "status"
            self._note(
                side,
                "http.bad_request_line" if side.is_request else "http.bad_status_line",
                f"not an HTTP/1.x {kind} line: {line[:80]!r}",
                side.at(line_start),
                out,
            )
            if side.is_request:
                self._push_lost(side, out)
            else:
                self._lose_response(side, side.at(line_start), out)
            side.pos = nl + 1
            self._enter_resync(side, nl + 1)
            return True
        side.start_parts = parts
        side.head_start = line_start
        side.head_lines = 0
        return True

    @staticmethod
    def _parse_start(side: _Side, line: bytes) -> tuple[str, str, str] | None:
        """Split a start line into three strings, or None if malformed."""
        if side.is_request:
            match = _REQUEST_LINE_RE.fullmatch(line)
            if match is None:
                return None
            method, target, minor = match.groups()
            return method.decode(), target.decode("latin-1"), f"HTTP/1.{minor.decode()}"
        found = _STATUS_LINE_RE.fullmatch(line)
        if found is None:
            return None
        minor, status, reason = found.groups()
        return (
            f"HTTP/1.{minor.decode()}",
            status.decode(),
            (reason or b"").decode("latin-1"),
        )

    def _head_too_large(self, side: _Side, start: int, out: list[object]) -> None:
        """A head passed :data:`MAX_HEAD_BYTES`: give up on its framing."""
        self._note(
            side,
            "http.head_too_large",
            f"a message head runs past {MAX_HEAD_BYTES} bytes",
            side.at(start),
            out,
        )
        self._lose_sync(side, out, cut=start + MAX_HEAD_BYTES, midline=True)

    def _parse_fields(
        self,
        side: _Side,
        lines: list[bytes],
        offset: int,
        out: list[object],
        into: list[Anomaly],
    ) -> Headers:
        """Field lines to (name, value) pairs (RFC 9112 §5, RFC 9110 §5.5)."""
        fields: list[tuple[bytes, bytes]] = []
        for line in lines:
            # obs-fold (RFC 9112 §5.2): join to the previous value with SP.
            if line[:1] in (b" ", b"\t") and fields:
                name, value = fields[-1]
                fields[-1] = (name, value + b" " + line.strip(_OWS))
                self._note(
                    side,
                    "http.obs_fold",
                    f"folded field line {line[:40]!r}",
                    offset,
                    out,
                    into,
                )
                continue
            name, colon, value = line.partition(b":")
            if not colon or not _TOKEN_RE.fullmatch(name):
                self._note(
                    side,
                    "http.bad_header",
                    f"malformed field line {line[:80]!r} was ignored",
                    offset,
                    out,
                    into,
                )
                continue
            value = value.strip(_OWS)
            if any(c in value for c in b"\x00\r\n"):
                self._note(
                    side,
                    "http.bad_header",
                    f"field {name[:40]!r} holds a NUL or bare CR",
                    offset,
                    out,
                    into,
                )
            fields.append((name, value))
        return tuple(fields)

    def _on_head(self, side: _Side, raw: bytes, offset: int, out: list[object]) -> None:
        """A whole head was read: parse its fields and start its body."""
        lines = [ln.removesuffix(b"\r") for ln in raw.split(b"\n")]
        field_lines = [ln for ln in lines[1:] if ln]
        into: list[Anomaly] = []
        headers = self._parse_fields(side, field_lines, offset, out, into)
        head = _Head(side.start_parts, headers, raw, offset, offset + len(raw))
        if side.is_request:
            self._start_request(side, head, into, out)
            return
        status = int(head.parts[1])
        if 100 <= status < 200 and status != 101:
            # Interim responses precede the final one (RFC 9110 §15.2).
            version, _, reason = head.parts
            side.interim.append(
                InterimResponse(
                    version, status, reason, headers, raw, head.start, head.end
                )
            )
            return
        # The final response waits (briefly) until its request is known.
        side.wait_head = head
        side.wait_anomalies = into
        side.deferred_bytes = 0
        side.mode = _Mode.WAIT

    # Requests (RFC 9112 §6.3 rules 3-6 for their body length).

    def _start_request(
        self, side: _Side, head: _Head, into: list[Anomaly], out: list[object]
    ) -> None:
        """Queue a request and set up the reading of its body."""
        method = head.parts[0]
        upgrade = method == "CONNECT" or bool(field_values(head.headers, b"upgrade"))
        slot = _Slot(method, upgrade=upgrade, lost=False)
        slot.anomalies.extend(into)
        self._slots.append(slot)
        msg = _Message(head, slot)
        side.msg = msg
        if not self._frame_body(side, msg, out, request=True):
            return
        if side.mode is _Mode.HEAD:
            self._finish_message(side, out, complete=True)

    # Responses (RFC 9112 §6.3 rules 1-8).

    def _unwait(self, side: _Side, out: list[object]) -> bool:
        """Decide whether a waiting side can go on; set it going if so."""
        if side.is_request:
            asked = side.wait_slot
            other = self._sides[Direction.TO_CLIENT]
            if asked is None:
                side.mode = _Mode.HEAD
                return True
            if not (asked.response_done or other.ended or self._closing):
                if side.deferred_bytes <= MAX_STALL_BYTES:
                    return False
            side.wait_slot = None
            if asked.tunnel:
                side.mode = _Mode.TUNNEL
                side.deferred.clear()
                side.pos = len(side.buf)
            else:
                side.mode = _Mode.HEAD
            return True

        head = side.wait_head
        assert head is not None
        requester = self._sides[Direction.TO_SERVER]
        slot: _Slot | None = None
        if self._answered < len(self._slots) and not side.unplaceable:
            slot = self._slots[self._answered]
        elif not (
            side.unplaceable
            or requester.ended
            or self._closing
            or side.deferred_bytes + len(side.buf) - side.pos > MAX_STALL_BYTES
        ):
            return False
        into, side.wait_anomalies = side.wait_anomalies, []
        side.wait_head = None
        side.mode = _Mode.HEAD
        self._start_response(side, head, slot, into, out)
        return True

    def _start_response(
        self,
        side: _Side,
        head: _Head,
        slot: _Slot | None,
        into: list[Anomaly],
        out: list[object],
    ) -> None:
        """Pair a final response head with its request and frame its body."""
        msg = _Message(head, slot)
        msg.anomalies.extend(into)
        msg.interim = tuple(side.interim)
        side.interim.clear()
        side.msg = msg
        if slot is not None:
            self._answered += 1
        if slot is None:
            if side.unplaceable:
                name, why = (
                    "http.unplaceable_response",
                    (
                        "response framing was lost earlier; this response "
                        "cannot be paired with a request"
                    ),
                )
            else:
                name, why = "http.unexpected_response", "a response with no request"
            self._note(side, name, why, head.start, out, msg.anomalies)
        elif slot.lost:
            self._note(
                side,
                "http.response_to_lost_request",
                "paired with a request the capture lost or could not decode; "
                "if more requests were lost, later pairs may be shifted",
                head.start,
                out,
                msg.anomalies,
            )
        if self._frame_body(side, msg, out, request=False):
            if side.mode is _Mode.HEAD:
                self._finish_message(side, out, complete=True)

    def _frame_body(
        self, side: _Side, msg: _Message, out: list[object], *, request: bool
    ) -> bool:
        """Pick the body length rule of RFC 9112 §6.3; False if framing is lost."""
        head = msg.head
        headers = head.headers
        te = parse_codings(field_values(headers, b"transfer-encoding"))
        cl_values = field_values(headers, b"content-length")
        status = 0 if request else int(head.parts[1])
        method = msg.slot.method if msg.slot else ""
        msg.content_length = _content_length(cl_values)

        # Content-Encoding and Content-Range are kept for responses only.
        if not request:
            codings = field_values(headers, b"content-encoding")
            if codings:
                msg.content_encoding = ", ".join(c.decode("latin-1") for c in codings)
            if status == 206:
                self._content_range(side, msg, out)

        # Rule 1: no body for HEAD, 1xx, 204 and 304; rule 2: CONNECT tunnels.
        if not request:
            if status == 101 or (method == "CONNECT" and 200 <= status < 300):
                self._start_tunnel(side, msg, out)
                return True
            if method == "HEAD" or status in (204, 304):
                side.mode = _Mode.HEAD
                return True

        # Rule 3: Transfer-Encoding overrides Content-Length (a smuggling sign).
        if te:
            if cl_values:
                self._note(
                    side,
                    "http.te_and_cl",
                    "both Transfer-Encoding and Content-Length; the first wins",
                    head.start,
                    out,
                    msg.anomalies,
                )
            if te[-1] != "chunked":
                # Rule 4: a request cannot be framed; a response runs to close.
                if request:
                    self._note(
                        side,
                        "http.bad_transfer_encoding",
                        f"request transfer codings {te!r} do not end in chunked",
                        head.start,
                        out,
                        msg.anomalies,
                    )
                    self._lose_sync(side, out, cut=side.pos)
                    return False
                self._set_decoder(side, msg, out)
                side.mode = _Mode.UNTIL_CLOSE
                return True
            if len(te) > 1:
                self._note(
                    side,
                    "http.transfer_coding",
                    f"transfer codings {te[:-1]!r} are not undone",
                    head.start,
                    out,
                    msg.anomalies,
                )
            msg.chunked = True
            self._set_decoder(side, msg, out)
            side.mode = _Mode.CHUNK_SIZE
            return True

        # Rule 5: Content-Length; a list of one repeated value is allowed.
        if cl_values:
            if msg.content_length is None:
                self._note(
                    side,
                    "http.bad_content_length",
                    f"unusable Content-Length {b', '.join(cl_values)[:80]!r}",
                    head.start,
                    out,
                    msg.anomalies,
                )
                self._lose_sync(side, out, cut=side.pos)
                return False
            self._set_decoder(side, msg, out)
            side.remaining = msg.content_length
            side.mode = _Mode.LENGTH if msg.content_length else _Mode.HEAD
            return True

        # Rules 6-8: a request has no body; a response runs to close.
        if request:
            side.mode = _Mode.HEAD
        else:
            self._set_decoder(side, msg, out)
            side.mode = _Mode.UNTIL_CLOSE
        return True

    def _content_range(self, side: _Side, msg: _Message, out: list[object]) -> None:
        """Note where a 206 body starts (RFC 9110 §14.4)."""
        ranges = field_values(msg.head.headers, b"content-range")
        if not ranges:
            return
        match = _CONTENT_RANGE_RE.fullmatch(ranges[0].strip(_OWS))
        if match is None:
            self._note(
                side,
                "http.bad_content_range",
                f"unusable Content-Range {ranges[0][:80]!r}",
                msg.head.start,
                out,
                msg.anomalies,
            )
            return
        msg.range_start = int(match.group(1))

    def _set_decoder(self, side: _Side, msg: _Message, out: list[object]) -> None:
        """Prepare content decoding of a response body (RFC 9110 §8.4)."""
        if side.is_request:
            return
        codings = parse_codings(field_values(msg.head.headers, b"content-encoding"))
        if not codings:
            return
        unknown = [c for c in codings if c not in SUPPORTED_CODINGS]
        if unknown:
            self._note(
                side,
                "http.unknown_coding",
                f"content codings {unknown!r} cannot be undone; body kept encoded",
                msg.head.start,
                out,
                msg.anomalies,
            )
            return
        msg.decoder = ContentDecoder(
            codings,
            direction=side.direction.label,
            max_output=min(self._max_body, MAX_DECODED_BYTES),
        )

    def _start_tunnel(self, side: _Side, msg: _Message, out: list[object]) -> None:
        """101 or a CONNECT success: later bytes are not HTTP/1.x."""
        self._note(
            side,
            "http.tunnel",
            f"status {msg.head.parts[1]} switched the connection away "
            "from HTTP/1.x; later bytes are not decoded",
            msg.head.end,
            out,
            msg.anomalies,
        )
        if msg.slot is not None:
            msg.slot.tunnel = True
        self._finish_message(side, out, complete=True)
        side.mode = _Mode.TUNNEL

    # Bodies.

    def _step_length(self, side: _Side, out: list[object]) -> bool:
        """Take body bytes of a known length, or up to the close."""
        msg = side.msg
        assert msg is not None
        avail = len(side.buf) - side.pos
        if side.mode is _Mode.UNTIL_CLOSE:
            take = avail
        else:
            take = min(avail, side.remaining)
        if take:
            label = f"chunk {len(msg.chunks)}" if msg.chunked else ""
            data = bytes(side.buf[side.pos : side.pos + take])
            self._body_bytes(side, msg, data, side.at(side.pos), label, out)
            side.pos += take
            side.remaining -= take
        if side.mode is _Mode.UNTIL_CLOSE or side.remaining:
            return False
        return self._body_part_done(side, msg, out)

    def _body_part_done(self, side: _Side, msg: _Message, out: list[object]) -> bool:
        """A Content-Length body or a chunk's data has all been read."""
        if side.mode is _Mode.CHUNK_DATA:
            side.mode = _Mode.CHUNK_END
            return True
        self._finish_message(side, out, complete=True)
        return True

    def _body_bytes(
        self,
        side: _Side,
        msg: _Message,
        data: bytes,
        offset: int,
        label: str,
        out: list[object],
    ) -> None:
        """Keep observed body bytes, as long runs, and feed the decoder."""
        if msg.dropping:
            return
        if msg.kept + len(data) > self._max_body:
            self._over_body_limit(side, msg, offset, out)
            return
        msg.kept += len(data)
        if msg.run_len and (
            label != msg.run_label or offset != msg.run_start + msg.run_len
        ):
            self._flush_run(side, msg, out)
        if not msg.run_len:
            msg.run_start, msg.run_label = offset, label
            msg.block_start = offset
        msg.run_parts.append(data)
        msg.run_len += len(data)
        if msg.decoder is not None:
            self._feed_blocks(side, msg, data, out)

    def _feed_blocks(
        self, side: _Side, msg: _Message, data: bytes, out: list[object]
    ) -> None:
        """Hand the decoder whole :data:`DECODE_BLOCK` blocks of the run."""
        while data:
            room = DECODE_BLOCK - msg.block_len
            piece, data = data[:room], data[room:]
            msg.block.append(piece)
            msg.block_len += len(piece)
            if msg.block_len == DECODE_BLOCK:
                self._flush_block(side, msg, out)

    def _flush_block(self, side: _Side, msg: _Message, out: list[object]) -> None:
        """Decode the pending block, mapped to the stream range it came from."""
        if not msg.block_len or msg.decoder is None:
            return
        data = b"".join(msg.block)
        start = msg.block_start
        msg.block.clear()
        msg.block_len = 0
        msg.block_start = start + len(data)
        for anomaly in msg.decoder.feed(
            data, start, start + len(data), label=msg.run_label
        ):
            out.append(anomaly)
            msg.anomalies.append(anomaly)

    def _flush_run(self, side: _Side, msg: _Message, out: list[object]) -> None:
        """Close the current run of contiguous body bytes as one piece."""
        self._flush_block(side, msg, out)
        if msg.run_len:
            msg.builder.add(b"".join(msg.run_parts), msg.run_start, label=msg.run_label)
        msg.run_parts = []
        msg.run_len = 0

    def _over_body_limit(
        self, side: _Side, msg: _Message, offset: int, out: list[object]
    ) -> None:
        """Stop keeping a body past :data:`MAX_BODY_BYTES`; framing goes on."""
        self._flush_run(side, msg, out)
        msg.dropping = True
        self._note(
            side,
            "http.body_limit",
            f"body longer than {self._max_body} bytes; the rest is not kept",
            offset,
            out,
            msg.anomalies,
        )

    def _body_hole(
        self, side: _Side, msg: _Message, offset: int, length: int, out: list[object]
    ) -> None:
        """Body bytes the capture lacks: unobserved, and the decoder stops."""
        if msg.dropping:
            return
        if msg.kept + length > self._max_body:
            self._over_body_limit(side, msg, offset, out)
            return
        self._flush_run(side, msg, out)
        msg.kept += length
        msg.builder.add_unobserved(length)
        self._note(
            side,
            "http.body_gap",
            f"{length} body bytes missing from the capture; kept as unobserved",
            offset,
            out,
            msg.anomalies,
        )
        if msg.decoder is not None:
            for anomaly in msg.decoder.gap(offset, length):
                out.append(anomaly)
                msg.anomalies.append(anomaly)

    # Chunked framing (RFC 9112 §7.1).

    def _step_chunk_size(self, side: _Side, out: list[object]) -> bool:
        """Read a chunk-size line: hex size, optional extensions, CRLF."""
        msg = side.msg
        assert msg is not None
        buf = side.buf
        nl = buf.find(b"\n", max(side.scan, side.pos))
        if nl < 0:
            side.scan = len(buf)
            if len(buf) - side.pos > MAX_CHUNK_LINE:
                return self._bad_chunk(side, "chunk-size line too long", out)
            return False
        if nl + 1 - side.pos > MAX_CHUNK_LINE:
            return self._bad_chunk(side, "chunk-size line too long", out)
        line = bytes(buf[side.pos : nl]).removesuffix(b"\r")
        size_text, _, _ext = line.partition(b";")
        size_text = size_text.rstrip(_OWS)
        if not _HEX_RE.fullmatch(size_text):
            return self._bad_chunk(side, f"chunk-size {line[:40]!r} is not hex", out)
        size = int(size_text, 16)
        if size > MAX_CHUNK_SIZE:
            return self._bad_chunk(
                side, f"chunk-size {size_text[:40]!r} overflows 63 bits", out
            )
        msg.chunks.append((side.at(side.pos), size))
        self._flush_run(side, msg, out)
        side.pos = nl + 1
        if size == 0:
            side.mode = _Mode.TRAILERS
            side.scan = side.pos
            side.head_start = side.pos
            side.head_lines = 0
        else:
            side.mode = _Mode.CHUNK_DATA
            side.remaining = size
        return True

    def _bad_chunk(self, side: _Side, why: str, out: list[object]) -> bool:
        """The chunk-size line is unusable: the body's framing is lost."""
        msg = side.msg
        self._note(
            side,
            "http.bad_chunk_size",
            why,
            side.at(side.pos),
            out,
            msg.anomalies if msg else None,
        )
        self._lose_sync(side, out, cut=side.pos)
        return True

    def _step_chunk_end(self, side: _Side, out: list[object]) -> bool:
        """Expect the CRLF that closes a chunk's data."""
        rest = side.buf[side.pos : side.pos + 2]
        if rest == b"\r\n" or rest[:1] == b"\n":
            side.pos += 2 if rest == b"\r\n" else 1
            side.mode = _Mode.CHUNK_SIZE
            return True
        if rest == b"\r" or not rest:
            return False
        msg = side.msg
        self._note(
            side,
            "http.bad_chunk_end",
            f"chunk data is followed by {bytes(rest)!r}, not CRLF",
            side.at(side.pos),
            out,
            msg.anomalies if msg else None,
        )
        self._lose_sync(side, out, cut=side.pos)
        return True

    def _step_trailers(self, side: _Side, out: list[object]) -> bool:
        """Read the trailer section up to its blank line (RFC 9112 §7.1.2)."""
        msg = side.msg
        assert msg is not None
        buf = side.buf
        nl = buf.find(b"\n", side.scan)
        if nl < 0:
            side.scan = len(buf)
            if len(buf) - side.head_start > MAX_HEAD_BYTES:
                return self._trailers_too_large(side, out)
            return False
        side.scan = nl + 1
        if nl + 1 - side.head_start > MAX_HEAD_BYTES:
            return self._trailers_too_large(side, out)
        line_start = buf.rfind(b"\n", side.head_start, nl) + 1 or side.head_start
        if bytes(buf[line_start:nl]).removesuffix(b"\r"):
            side.head_lines += 1
            if side.head_lines > MAX_HEADER_LINES:
                return self._trailers_too_large(side, out)
            return True
        lines = bytes(buf[side.head_start : nl]).split(b"\n")
        lines = [ln.removesuffix(b"\r") for ln in lines]
        offset = side.at(side.head_start)
        msg.trailers.extend(
            self._parse_fields(
                side, [ln for ln in lines if ln], offset, out, msg.anomalies
            )
        )
        side.pos = nl + 1
        side.head_start = -1
        self._finish_message(side, out, complete=True)
        return True

    def _trailers_too_large(self, side: _Side, out: list[object]) -> bool:
        """A trailer section past the head limits: framing is lost."""
        msg = side.msg
        self._note(
            side,
            "http.head_too_large",
            "trailer section too large",
            side.at(side.head_start),
            out,
            msg.anomalies if msg else None,
        )
        self._lose_sync(side, out, cut=side.head_start + MAX_HEAD_BYTES, midline=True)
        return True

    # Finishing messages and exchanges.

    def _finish_message(
        self, side: _Side, out: list[object], *, complete: bool
    ) -> None:
        """Build the message read so far and hand it to its exchange."""
        msg = side.msg
        side.msg = None
        side.mode = _Mode.HEAD
        side.head_start = -1
        side.scan = side.pos
        if msg is None:
            return
        self._flush_run(side, msg, out)
        wire = msg.builder.build(complete=complete and not msg.dropping)
        end = side.at(side.pos)
        if side.is_request:
            self._finish_request(side, msg, wire, complete, out)
            return
        body = wire
        if msg.decoder is not None:
            if wire.complete:
                for anomaly in msg.decoder.finish(end):
                    out.append(anomaly)
                    msg.anomalies.append(anomaly)
            body = msg.decoder.build(complete=wire.complete)
        version, status, reason = msg.head.parts
        response = HttpResponse(
            version=version,
            status=int(status),
            reason=reason,
            headers=msg.head.headers,
            raw_head=msg.head.raw,
            head_start=msg.head.start,
            head_end=msg.head.end,
            chunked=msg.chunked,
            content_encoding=msg.content_encoding,
            content_length=msg.content_length,
            range_start=msg.range_start,
            chunks=tuple(msg.chunks),
            trailers=tuple(msg.trailers),
            wire_body=wire,
            body=body,
            interim=msg.interim,
            complete=complete,
        )
        slot = msg.slot
        if slot is None:
            out.append(HttpExchange(None, response, tuple(msg.anomalies), False))
            return
        slot.response = response
        slot.response_done = True
        self._emit_ready(out)

    def _finish_request(
        self,
        side: _Side,
        msg: _Message,
        wire: Body,
        complete: bool,
        out: list[object],
    ) -> None:
        """Attach a finished request to its slot; wait on an upgrade."""
        method, target, version = msg.head.parts
        slot = msg.slot
        assert slot is not None
        slot.request = HttpRequest(
            method=method,
            target=target,
            version=version,
            headers=msg.head.headers,
            raw_head=msg.head.raw,
            head_start=msg.head.start,
            head_end=msg.head.end,
            body=wire,
            chunked=msg.chunked,
            chunks=tuple(msg.chunks),
            trailers=tuple(msg.trailers),
            complete=complete,
        )
        slot.request_done = True
        if slot.upgrade and complete and side.mode is _Mode.HEAD:
            # After CONNECT or Upgrade the next bytes may not be HTTP/1.x
            # (RFC 9110 §7.8, §9.3.6): wait for the response to say.
            side.wait_slot = slot
            side.mode = _Mode.WAIT
        self._emit_ready(out)

    def _emit_ready(self, out: list[object]) -> None:
        """Return exchanges from the front of the queue that are finished."""
        responder = self._sides[Direction.TO_CLIENT]
        if responder.mode in (_Mode.DONE, _Mode.TUNNEL) and responder.msg is None:
            # No response will come for requests still unanswered.
            while self._answered < len(self._slots):
                slot = self._slots[self._answered]
                if not slot.request_done:
                    break
                slot.response_done = True
                self._answered += 1
        while self._slots:
            slot = self._slots[0]
            if not (slot.request_done and slot.response_done):
                break
            self._slots.popleft()
            self._answered = max(self._answered - 1, 0)
            request, response = slot.request, slot.response
            if request is None and response is None:
                continue  # a lost request never answered: its gap says it all
            complete = (
                request is not None
                and request.complete
                and response is not None
                and response.complete
            )
            out.append(HttpExchange(request, response, tuple(slot.anomalies), complete))

    # Losing and regaining sync.

    def _gap(self, side: _Side, offset: int, length: int, out: list[object]) -> None:
        """Bytes are missing: step over them in a body, else lose framing."""
        while length > 0:
            mode = side.mode
            msg = side.msg
            if mode in (_Mode.TUNNEL, _Mode.DONE):
                return
            if mode is _Mode.RESYNC:
                self._skip(side, len(side.buf) - side.pos + length)
                side.midline = False
                return
            if msg is not None and mode is _Mode.UNTIL_CLOSE:
                self._body_hole(side, msg, offset, length, out)
                return
            if msg is not None and mode in (_Mode.LENGTH, _Mode.CHUNK_DATA):
                take = min(length, side.remaining)
                self._body_hole(side, msg, offset, take, out)
                side.remaining -= take
                offset += take
                length -= take
                if not side.remaining:
                    side.pos = len(side.buf)
                    side.base = offset - len(side.buf)
                    self._body_part_done(side, msg, out)
                continue
            self._note(
                side,
                "http.gap",
                f"{length} bytes missing in {mode.value} framing; "
                "looking for the next message start",
                offset,
                out,
                msg.anomalies if msg else None,
            )
            if side.is_request and msg is None:
                self._push_lost(side, out)
            # The bytes after a gap are tried as a start line: a lost
            # segment often ends where a message begins.
            self._lose_sync(side, out, cut=len(side.buf))
            self._skip(side, length)
            return

    def _push_lost(self, side: _Side, out: list[object]) -> None:
        """Queue a marker for a request the capture lost or mangled."""
        # XXX: a gap may hide several requests; one marker stands for all of
        # them, so later pairs can shift (each says so with an anomaly).
        if self._slots and self._slots[-1].lost and not self._slots[-1].response_done:
            return
        self._slots.append(_Slot("", upgrade=False, lost=True))

    def _lose_response(self, side: _Side, offset: int, out: list[object]) -> None:
        """Response framing is lost: later responses cannot be placed."""
        side.unplaceable = True
        if self._answered < len(self._slots):
            slot = self._slots[self._answered]
            slot.response_done = True
            self._answered += 1
            self._emit_ready(out)

    def _lose_sync(
        self, side: _Side, out: list[object], *, cut: int, midline: bool = False
    ) -> None:
        """Give up the current framing; resynchronise from buffer index ``cut``."""
        if side.msg is not None:
            self._finish_message(side, out, complete=False)
        elif not side.is_request:
            self._lose_response(side, side.at(cut), out)
        elif side.head_start >= 0 or side.pos < len(side.buf):
            self._push_lost(side, out)
        if not side.is_request:
            side.unplaceable = True
        cut = min(cut, len(side.buf))
        side.head_start = -1
        self._enter_resync(side, side.pos)
        self._skip(side, cut - side.pos)
        side.pos = side.scan = cut
        side.midline = midline

    def _enter_resync(self, side: _Side, index: int) -> None:
        """Start looking for a start line at buffer index ``index``."""
        side.mode = _Mode.RESYNC
        side.midline = False
        side.scan = index
        side.head_start = -1
        if not side.skipped:
            side.skip_from = side.at(index)

    def _skip(self, side: _Side, count: int) -> None:
        """Count bytes passed over while resynchronising."""
        side.skipped += count

    def _step_resync(self, side: _Side, out: list[object]) -> bool:
        """Drop bytes until a line holds, or ends with, a start line.

        A body rarely ends with a newline, so a start line is also looked
        for at the end of a line (a known method, or ``HTTP/1.x NNN``).
        Only the last :data:`MAX_START_LINE` bytes of a line are kept.
        """
        buf = side.buf
        nl = buf.find(b"\n", max(side.scan, side.pos))
        end = len(buf) if nl < 0 else nl
        excess = end - side.pos - MAX_START_LINE
        if excess > 0:
            self._skip(side, excess)
            side.pos += excess
            side.midline = True
        if nl < 0:
            side.scan = len(buf)
            return False
        line = bytes(buf[side.pos : nl]).removesuffix(b"\r")
        if not side.midline and self._parse_start(side, line) is not None:
            at = 0
        else:
            pattern = _RESYNC_REQUEST_RE if side.is_request else _RESYNC_STATUS_RE
            found = pattern.search(line)
            at = -1 if found is None else found.start()
        if at < 0:
            self._skip(side, nl + 1 - side.pos)
            side.pos = side.scan = nl + 1
            side.midline = False
            return True
        self._skip(side, at)
        side.pos += at
        side.midline = False
        if side.skipped:
            self._note(
                side,
                "http.skipped_bytes",
                f"{side.skipped} bytes skipped before the next "
                f"{'request' if side.is_request else 'response'} start line",
                side.skip_from,
                out,
            )
        side.skipped = 0
        side.mode = _Mode.HEAD
        side.scan = side.pos
        return True

    def _finish_side(self, side: _Side, out: list[object], *, closed: bool) -> None:
        """The direction ended (``closed``) or the capture stopped."""
        side.ended = True
        mode = side.mode
        msg = side.msg
        if mode is _Mode.WAIT:
            return
        if msg is not None:
            if mode is _Mode.UNTIL_CLOSE and closed:
                # RFC 9112 §6.3 rule 8: the close ends the body.
                self._finish_message(side, out, complete=True)
            else:
                self._note(
                    side,
                    "http.truncated_body",
                    "the stream stops inside a body",
                    side.at(len(side.buf)),
                    out,
                    msg.anomalies,
                )
                self._finish_message(side, out, complete=False)
        elif mode is _Mode.HEAD and side.pos < len(side.buf):
            start = side.head_start if side.head_start >= 0 else side.pos
            self._note(
                side,
                "http.truncated_head",
                f"the stream stops inside a message head "
                f"({len(side.buf) - start} bytes)",
                side.at(start),
                out,
            )
            if not side.is_request:
                self._lose_response(side, side.at(start), out)
        elif mode is _Mode.RESYNC:
            remaining = len(side.buf) - side.pos
            if side.skipped + remaining:
                self._note(
                    side,
                    "http.skipped_bytes",
                    f"{side.skipped + remaining} bytes skipped; no further "
                    "message start was found",
                    side.skip_from,
                    out,
                )
            side.skipped = 0
        side.mode = _Mode.DONE
        side.pos = len(side.buf)
        side.trim()
        self._emit_ready(out)
