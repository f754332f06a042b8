"""FastCGI 1.0 decoder for the web server <-> application leg, sans-IO.

Bytes of one connection go in through :class:`FcgiDecoder`; out come
:class:`FcgiRequest` messages (one per request, at END_REQUEST or, left
unfinished, when the stream ends), :class:`FcgiManagementRecord`
messages for request id 0, and :class:`Anomaly` objects.

Direction.TO_SERVER carries what the web server sends (BEGIN_REQUEST,
PARAMS, STDIN, DATA, ABORT_REQUEST, GET_VALUES); Direction.TO_CLIENT
what the application answers (STDOUT, STDERR, END_REQUEST,
GET_VALUES_RESULT, UNKNOWN_TYPE).

Pairing across directions is causal: a TO_CLIENT record belongs to the
oldest request of its id that TO_SERVER has begun and that has not yet
ended.  The caller must therefore interleave the two directions in
capture order, as a reassembler does; how either direction is split
into calls does not matter.

Framing is lost on a header that this side cannot send (see
``FcgiDecoder._start_record``), or on missing bytes that hide the next
header.  The decoder then looks for a
plausible header whose record is followed by another plausible header
(see :func:`_plausible`), and goes on from there.  Body bytes it did
not see are never invented: a gap inside a record's content becomes an
unobserved range of the body, and after a loss of framing the body of
each open request stops growing.
"""

from __future__ import annotations

import enum
import functools
import re
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

from ..anomalies import Anomaly
from .base import Direction
from .body import Body, BodyBuilder

__all__ = [
    "CRASH_MARKERS",
    "FcgiType",
    "ROLE_RESPONDER",
    "ROLE_AUTHORIZER",
    "ROLE_FILTER",
    "FcgiRecord",
    "CgiHeaders",
    "FcgiRequest",
    "FcgiManagementRecord",
    "FcgiDecoder",
    "MAX_PARAMS_BYTES",
    "MAX_PARAMS_PAIRS",
    "MAX_STDIN_KEPT",
    "MAX_STDOUT_KEPT",
    "MAX_STDERR_KEPT",
    "MAX_CGI_HEADER_BYTES",
    "MAX_PENDING_BYTES",
    "MAX_LIVE_REQUESTS",
    "MAX_EMBEDDED_HEADER_REPORTS",
]


# Limits.  Going over any of them is an anomaly, never unbounded memory.

#: PARAMS bytes decoded per request.  nginx sends one pair per request
#: header plus about thirty fixed ones; its default header buffers cap
#: a request head near 32 KiB, so 1 MiB is far beyond any honest stream.
MAX_PARAMS_BYTES = 1 << 20

#: Name-value pairs kept per request.  nginx turns each request header
#: into one HTTP_* pair; a few hundred is already a very odd request.
MAX_PARAMS_PAIRS = 4096

#: STDIN (and DATA) bytes kept per request.  Uploads can be huge and the
#: diff only needs response bodies; 64 MiB keeps forms and API payloads.
MAX_STDIN_KEPT = 64 << 20

#: STDOUT content kept per request.  Dynamic pages above 64 MiB are rare,
#: and a connection rarely has more than one request open at a time.
MAX_STDOUT_KEPT = 64 << 20

#: STDERR bytes kept per request.  It holds log lines and tracebacks;
#: 1 MiB shows the story without letting a log storm fill memory.
MAX_STDERR_KEPT = 1 << 20

#: Bytes of the CGI header block.  nginx refuses anything larger than its
#: fastcgi_buffer_size (4 or 8 KiB by default) with "upstream sent too
#: big header", so 64 KiB covers every configuration seen in practice.
MAX_CGI_HEADER_BYTES = 64 << 10

#: Bytes held while framing is lost.  A candidate header is confirmed by
#: the header after its record, so at most one whole record (8 + 65535 +
#: 255 bytes, spec section 3.3) plus the next header must wait.
MAX_PENDING_BYTES = 8 + 0xFFFF + 0xFF + 8

#: Requests open at once on one connection.  nginx never multiplexes and
#: php-fpm refuses to; 256 leaves room for other web servers.
MAX_LIVE_REQUESTS = 256

#: header_in_stdout reports per request.  A few locate the damage; a
#: flood of them (a capture of FastCGI served as a file) adds nothing.
MAX_EMBEDDED_HEADER_REPORTS = 16


class FcgiType(enum.IntEnum):
    """Record types of the FastCGI 1.0 spec, section 8."""

    BEGIN_REQUEST = 1
    ABORT_REQUEST = 2
    END_REQUEST = 3
    PARAMS = 4
    STDIN = 5
    STDOUT = 6
    STDERR = 7
    DATA = 8
    GET_VALUES = 9
    GET_VALUES_RESULT = 10
    UNKNOWN_TYPE = 11


#: Roles of BEGIN_REQUEST (spec sections 5.1 and 6).
ROLE_RESPONDER = 1
ROLE_AUTHORIZER = 2
ROLE_FILTER = 3

_HEADER_LEN = 8
_KEEP_CONN = 1

_SENT_BY = {
    Direction.TO_SERVER: frozenset(
        {
            FcgiType.BEGIN_REQUEST,
            FcgiType.ABORT_REQUEST,
            FcgiType.PARAMS,
            FcgiType.STDIN,
            FcgiType.DATA,
            FcgiType.GET_VALUES,
        }
    ),
    Direction.TO_CLIENT: frozenset(
        {
            FcgiType.END_REQUEST,
            FcgiType.STDOUT,
            FcgiType.STDERR,
            FcgiType.GET_VALUES_RESULT,
            FcgiType.UNKNOWN_TYPE,
        }
    ),
}

# Management records carry request id 0 (spec section 4).
_MANAGEMENT = frozenset(
    {FcgiType.GET_VALUES, FcgiType.GET_VALUES_RESULT, FcgiType.UNKNOWN_TYPE}
)

# Bodies of fixed size: sections 5.1, 5.4, 5.5 and 4.2.
_FIXED_LENGTH = {
    FcgiType.BEGIN_REQUEST: 8,
    FcgiType.ABORT_REQUEST: 0,
    FcgiType.END_REQUEST: 8,
    FcgiType.UNKNOWN_TYPE: 8,
}

_EMBEDDED_TYPES = frozenset({FcgiType.END_REQUEST, FcgiType.STDOUT, FcgiType.STDERR})

# Text that application runtimes print when they fail.  Seen inside
# STDOUT it means an error report went to the response instead of (or
# besides) STDERR; flup's timeout message is listed because it reaches
# STDOUT content only through misframing.  Seen on STDERR while STDOUT
# is open, it means the app failed in the middle of its response.
CRASH_MARKERS = (
    b"Traceback (most recent call last):",
    b"Timeout Exceeded\n",
    b"PHP Fatal error:",
    b"PHP Parse error:",
    b"<b>Fatal error</b>:",
    b"<b>Parse error</b>:",
    b"Stack trace:\n#0 ",
    b'Exception in thread "',
)

# Warnings a runtime prints and then carries on: worth telling, not a
# sign that the response was cut.
_WARNING_MARKERS = (
    b"PHP Warning:",
    b"<b>Warning</b>:",
)

_TRACEBACK_MARKERS = (
    *((m, "fcgi.traceback_in_stdout") for m in CRASH_MARKERS),
    *((m, "fcgi.warning_in_stdout") for m in _WARNING_MARKERS),
)

# STDOUT bytes carried from one record to the next so that a header or
# a marker split across records is still found.
_CARRY = max(_HEADER_LEN, *(len(m) for m, _ in _TRACEBACK_MARKERS)) - 1


# ---------------------------------------------------------------------------
# Events


@dataclass(frozen=True, slots=True)
class FcgiRecord:
    """One record as it was framed on the wire (spec section 3.3).

    ``stream_offset`` is where its 8-byte header starts in ``direction``;
    ``number`` counts records of that direction from 1.
    """

    type: FcgiType
    request_id: int
    content_length: int
    padding_length: int
    stream_offset: int
    direction: Direction
    number: int

    @property
    def content_offset(self) -> int:
        """Stream offset of the first content byte."""
        return self.stream_offset + _HEADER_LEN

    @property
    def end_offset(self) -> int:
        """Stream offset just past the padding."""
        return (
            self.stream_offset + _HEADER_LEN + self.content_length + self.padding_length
        )


@dataclass(frozen=True, slots=True)
class CgiHeaders:
    """The CGI response header block at the start of STDOUT.

    ``raw`` holds the block as sent, blank line included when
    ``complete``.  ``fields`` lists every header in order, decoded as
    latin-1 with surrounding blanks removed.  ``status`` is the code of a
    valid ``Status`` header (None when absent or invalid).
    """

    raw: bytes = b""
    fields: tuple[tuple[str, str], ...] = ()
    complete: bool = False
    status: int | None = None
    content_type: str | None = None
    content_length: int | None = None
    location: str | None = None

    def get(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        wanted = name.lower()
        for key, value in self.fields:
            if key.lower() == wanted:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value of header ``name`` (any case), in order."""
        wanted = name.lower()
        return [value for key, value in self.fields if key.lower() == wanted]


@dataclass(frozen=True, slots=True)
class FcgiRequest:
    """One FastCGI request with what both sides sent for it.

    ``begun`` is False for a request whose BEGIN_REQUEST was not seen.
    ``params`` maps names to values (latin-1; the last of repeated names
    wins) and ``param_pairs`` keeps the pairs as sent.  ``body`` is STDOUT
    content after the CGI header block; each piece is labelled
    ``"record N"`` with N the record number in the TO_CLIENT direction.
    ``status`` follows nginx: the Status code, else 302 with Location,
    else 200; None when the header block is unfinished or Status invalid.
    ``complete`` is True when END_REQUEST was seen.  ``anomalies`` repeats
    the anomalies about this request that the decoder also returned.
    """

    request_id: int
    begun: bool
    role: int | None
    keep_conn: bool
    aborted: bool
    params: dict[str, str]
    param_pairs: tuple[tuple[bytes, bytes], ...]
    stdin: Body
    data: Body
    headers: CgiHeaders
    status: int | None
    body: Body
    stderr: bytes
    app_status: int | None
    protocol_status: int | None
    complete: bool
    records: tuple[FcgiRecord, ...]
    anomalies: tuple[Anomaly, ...]

    @property
    def header_block(self) -> bytes:
        """The CGI header block exactly as STDOUT carried it."""
        return self.headers.raw


@dataclass(frozen=True, slots=True)
class FcgiManagementRecord:
    """A record of request id 0 (spec section 4).

    ``pairs`` holds the name-value pairs of GET_VALUES and
    GET_VALUES_RESULT; ``unknown_type`` the type an UNKNOWN_TYPE record
    reports.
    """

    record: FcgiRecord
    pairs: tuple[tuple[bytes, bytes], ...]
    unknown_type: int | None


# ---------------------------------------------------------------------------
# Small helpers


class _Header(NamedTuple):
    version: int
    type: int
    request_id: int
    content_length: int
    padding_length: int
    reserved: int
    offset: int


class _Piece(NamedTuple):
    """Record content from ``offset``; ``data`` None means unobserved."""

    offset: int
    data: bytes | None
    length: int


def _parse_header(raw: bytes | bytearray, offset: int) -> _Header:
    return _Header(
        raw[0],
        raw[1],
        raw[2] << 8 | raw[3],
        raw[4] << 8 | raw[5],
        raw[6],
        raw[7],
        offset,
    )


def _fixed_fields_ok(h: _Header) -> bool:
    """Fields every mainstream writer fills the same way.

    The reserved byte is zero, and padding is either none or what rounds
    the record to a multiple of 8 (what nginx, php-fpm, flup and libfcgi
    all write; section 3.3 recommends it).  Fixed-size bodies have their
    size.
    """
    if h.version != 1 or h.reserved != 0:
        return False
    if h.padding_length not in (0, -h.content_length & 7):
        return False
    fixed = _FIXED_LENGTH.get(FcgiType(h.type))
    return fixed is None or fixed == h.content_length


def _plausible(direction: Direction, h: _Header) -> bool:
    """Whether ``h`` may start a record of ``direction`` (for resync).

    Besides :func:`_fixed_fields_ok`, the type must be one this side
    sends, with request id 0 exactly for management records.  A random
    8-byte window passes with odds near 2**-40; resync also demands that
    the header after the record passes, which makes a false start about
    as likely as guessing an 80-bit key.
    """
    if h.type not in _SENT_BY[direction]:
        return False
    if not _fixed_fields_ok(h):
        return False
    return (h.request_id == 0) == (h.type in _MANAGEMENT)


@functools.lru_cache(maxsize=64)
def _embedded_pattern(request_id: int) -> re.Pattern[bytes]:
    """Candidates for :func:`_embedded`: version 1, an END_REQUEST, STDOUT
    or STDERR type, this request id, any lengths, reserved byte 0."""
    types = b"".join(re.escape(bytes([t])) for t in sorted(_EMBEDDED_TYPES))
    rid = re.escape(request_id.to_bytes(2, "big"))
    return re.compile(b"\x01[" + types + b"]" + rid + b"...\x00", re.DOTALL)


def _embedded(h: _Header, request_id: int) -> bool:
    """Whether ``h``, found inside STDOUT content, looks like a header.

    It must be an END_REQUEST, STDOUT or STDERR header of the very
    request whose content holds it, and pass :func:`_fixed_fields_ok`.
    Five fixed fields (version, type, two id bytes, reserved) and the
    padding rule leave random binary about one chance in 2**45 per byte
    position: under one false report per 30 TB of random STDOUT.
    """
    return (
        h.type in _EMBEDDED_TYPES and h.request_id == request_id and _fixed_fields_ok(h)
    )


def _pair_lengths(buf: bytes | bytearray, pos: int) -> tuple[int, int, int] | None:
    """Name length, value length and data position of the pair at ``pos``.

    Lengths of 0-127 take one byte, longer ones four bytes with the top
    bit set (spec section 3.4).  None when the prefixes are not all here.
    """
    lengths: list[int] = []
    for _ in range(2):
        if pos >= len(buf):
            return None
        if buf[pos] < 0x80:
            lengths.append(buf[pos])
            pos += 1
        else:
            if pos + 4 > len(buf):
                return None
            lengths.append(int.from_bytes(buf[pos : pos + 4], "big") & 0x7FFFFFFF)
            pos += 4
    return lengths[0], lengths[1], pos


def _decode_pairs(data: bytes) -> tuple[list[tuple[bytes, bytes]], int]:
    """Every whole pair in ``data``, and the count of bytes left over."""
    pairs: list[tuple[bytes, bytes]] = []
    pos = 0
    while pos < len(data):
        lengths = _pair_lengths(data, pos)
        if lengths is None:
            break
        name_len, value_len, start = lengths
        if start + name_len + value_len > len(data):
            break
        name_end = start + name_len
        pairs.append((data[start:name_end], data[name_end : name_end + value_len]))
        pos = name_end + value_len
    return pairs, len(data) - pos


def _coalesce(segments: list[_Piece]) -> list[_Piece]:
    """Merge neighbouring observed segments so each record has few pieces."""
    pieces: list[_Piece] = []
    run: list[bytes] = []
    run_start = 0
    for seg in segments:
        if seg.data is None:
            if run:
                joined = b"".join(run)
                pieces.append(_Piece(run_start, joined, len(joined)))
                run = []
            if pieces and pieces[-1].data is None:
                last = pieces[-1]
                pieces[-1] = _Piece(last.offset, None, last.length + seg.length)
            else:
                pieces.append(seg)
        else:
            if not run:
                run_start = seg.offset
            run.append(seg.data)
    if run:
        joined = b"".join(run)
        pieces.append(_Piece(run_start, joined, len(joined)))
    return pieces


def _observed(pieces: list[_Piece]) -> bytes | None:
    """The whole content when every byte was seen, else None."""
    if any(p.data is None for p in pieces):
        return None
    return b"".join(p.data for p in pieces if p.data is not None)


# ---------------------------------------------------------------------------
# Per-request state


class _ByteStream:
    """STDIN or DATA of one request (spec section 5.3)."""

    __slots__ = ("builder", "kept", "ended", "frozen", "limited", "late")

    def __init__(self) -> None:
        self.builder = BodyBuilder()
        self.kept = 0
        self.ended = False
        self.frozen = False
        self.limited = False
        self.late = False


class _Request:
    """Mutable state of one request until it is emitted."""

    __slots__ = (
        "seq",
        "request_id",
        "begun",
        "role",
        "keep_conn",
        "aborted",
        "params_buf",
        "params_total",
        "pairs",
        "params_ended",
        "params_stopped",
        "params_late",
        "stdin",
        "data",
        "head_buf",
        "head_line",
        "head_scan",
        "head_done",
        "head_complete",
        "head_offset",
        "body",
        "stdout_started",
        "stdout_ended",
        "stdout_frozen",
        "stdout_kept",
        "stdout_dropped",
        "midstream_flagged",
        "carry",
        "carry_offsets",
        "embedded_reports",
        "markers_found",
        "stderr",
        "stderr_ended",
        "stderr_limited",
        "stderr_flagged",
        "stderr_late",
        "app_status",
        "protocol_status",
        "complete",
        "records",
        "anomalies",
    )

    def __init__(self, seq: int, request_id: int, begun: bool) -> None:
        self.seq = seq
        self.request_id = request_id
        self.begun = begun
        self.role: int | None = None
        self.keep_conn = False
        self.aborted = False
        self.params_buf = bytearray()
        self.params_total = 0
        self.pairs: list[tuple[bytes, bytes]] = []
        self.params_ended = False
        self.params_stopped = False
        self.params_late = False
        self.stdin = _ByteStream()
        self.data = _ByteStream()
        self.head_buf = bytearray()
        self.head_line = 0
        self.head_scan = 0
        self.head_done = False
        self.head_complete = False
        self.head_offset: int | None = None
        self.body = BodyBuilder()
        self.stdout_started = False
        self.stdout_ended = False
        self.stdout_frozen = False
        self.stdout_kept = 0
        self.stdout_dropped = 0
        self.midstream_flagged = False
        self.carry = b""
        self.carry_offsets: list[int] = []
        self.embedded_reports = 0
        self.markers_found: set[str] = set()
        self.stderr = bytearray()
        self.stderr_ended = False
        self.stderr_limited = False
        self.stderr_flagged = False
        self.stderr_late = False
        self.app_status: int | None = None
        self.protocol_status: int | None = None
        self.complete = False
        self.records: list[FcgiRecord] = []
        self.anomalies: list[Anomaly] = []


# ---------------------------------------------------------------------------
# Per-direction framing state


class _Side:
    """Framing state of one direction."""

    __slots__ = (
        "direction",
        "next_offset",
        "ended",
        "synced",
        "count",
        "head",
        "head_offset",
        "record",
        "content_left",
        "padding_left",
        "segments",
        "scan",
        "scan_offset",
        "scan_pos",
        "lost_at",
        "skipped",
    )

    def __init__(self, direction: Direction) -> None:
        self.direction = direction
        self.next_offset = 0
        self.ended = False
        self.synced = True
        self.count = 0
        self.head = bytearray()
        self.head_offset = 0
        self.record: FcgiRecord | None = None
        self.content_left = 0
        self.padding_left = 0
        self.segments: list[_Piece] = []
        self.scan = bytearray()
        self.scan_offset = 0
        self.scan_pos = 0
        self.lost_at = 0
        self.skipped = 0


# ---------------------------------------------------------------------------
# The decoder


class FcgiDecoder:
    """Decodes both directions of one FastCGI connection.

    Implements the ConnectionDecoder protocol of
    :mod:`fcgiforensics.decoders.base`.  Every call returns, in stream
    order, the anomalies it found and the messages it finished.
    """

    def __init__(self, *, max_stdout: int = MAX_STDOUT_KEPT) -> None:
        """``max_stdout`` bounds the STDOUT bytes kept of one request
        (default :data:`MAX_STDOUT_KEPT`)."""
        self._max_stdout = max_stdout
        self._sides = {d: _Side(d) for d in Direction}
        # Open requests by id, oldest first (see the module docstring).
        self._live: dict[int, deque[_Request]] = {}
        # TO_CLIENT records of ids that no open request explains.
        self._orphans: dict[int, _Request] = {}
        self._seen_ids: set[int] = set()
        self._seq = 0
        self._limit_noted = False
        self._closed = False

    # -- ConnectionDecoder -------------------------------------------------

    def feed(self, direction: Direction, offset: int, data: bytes) -> list[object]:
        """Take bytes ``[offset, offset + len(data))`` of ``direction``."""
        out: list[object] = []
        side = self._sides[direction]
        if side.ended or self._closed:
            return out
        if offset > side.next_offset:
            self._gap(side, side.next_offset, offset - side.next_offset, out)
        elif offset < side.next_offset:
            data = data[side.next_offset - offset :]
            offset = side.next_offset
        if data:
            side.next_offset = offset + len(data)
            self._consume(side, offset, bytes(data), out)
        return out

    def gap(self, direction: Direction, offset: int, length: int) -> list[object]:
        """Bytes ``[offset, offset + length)`` were not observed."""
        out: list[object] = []
        side = self._sides[direction]
        if side.ended or self._closed or length <= 0:
            return out
        end = offset + length
        if end > side.next_offset:
            self._gap(side, side.next_offset, end - side.next_offset, out)
        return out

    def end(self, direction: Direction, offset: int) -> list[object]:
        """``direction`` ended at ``offset`` (FIN, RST or end of capture)."""
        out: list[object] = []
        side = self._sides[direction]
        if side.ended or self._closed:
            return out
        if offset > side.next_offset:
            self._gap(side, side.next_offset, offset - side.next_offset, out)
        self._end_side(side, out)
        if direction is Direction.TO_CLIENT:
            if self._sides[Direction.TO_SERVER].ended:
                # The web server closed first: that is how a server that
                # does not multiplex aborts a request (FastCGI 1.0
                # section 5.4), not the application failing.
                self._flush_open(
                    out,
                    "fcgi.web_server_closed",
                    self._sides[Direction.TO_SERVER].next_offset,
                )
            else:
                self._flush_open(out, "fcgi.fin_before_end", side.next_offset)
        return out

    def close(self) -> list[object]:
        """The capture is over: flush every unfinished request."""
        out: list[object] = []
        if self._closed:
            return out
        for side in self._sides.values():
            if not side.ended:
                self._end_side(side, out)
        offset = self._sides[Direction.TO_CLIENT].next_offset
        self._flush_open(out, "fcgi.request_unfinished", offset)
        self._closed = True
        return out

    # -- Anomalies -----------------------------------------------------------

    def _note(
        self,
        out: list[object],
        req: _Request | None,
        name: str,
        detail: str,
        direction: Direction,
        offset: int | None,
    ) -> None:
        anomaly = Anomaly(name, detail, direction=direction.label, stream_offset=offset)
        out.append(anomaly)
        if req is not None:
            req.anomalies.append(anomaly)

    # -- Framing -------------------------------------------------------------

    def _consume(
        self, side: _Side, offset: int, data: bytes, out: list[object]
    ) -> None:
        """Frame ``data``, alternating between synced parsing and resync."""
        while True:
            if side.synced:
                lost = self._consume_synced(side, offset, data, out)
                if lost is None:
                    return
                side.scan = bytearray(lost[1])
                side.scan_offset = lost[0]
                side.scan_pos = 0
            else:
                side.scan += data
            found = self._rescan(side, out, at_end=False)
            if found is None:
                return
            offset, data = found

    def _consume_synced(
        self, side: _Side, offset: int, data: bytes, out: list[object]
    ) -> tuple[int, bytes] | None:
        """Parse records; on a bad header, return the bytes left to scan."""
        i = 0
        n = len(data)
        while i < n:
            # Step 1: gather the 8-byte header (spec section 3.3).
            if side.record is None:
                if not side.head:
                    side.head_offset = offset + i
                take = min(_HEADER_LEN - len(side.head), n - i)
                side.head += data[i : i + take]
                i += take
                if len(side.head) < _HEADER_LEN:
                    return None
                raw = bytes(side.head)
                side.head.clear()
                header = _parse_header(raw, side.head_offset)
                if not self._start_record(side, header, out):
                    self._lose_framing(side, header.offset)
                    return side.head_offset, raw + data[i:]
            else:
                # Step 2: content, then padding, of the current record.
                take = min(side.content_left, n - i)
                if take:
                    side.segments.append(_Piece(offset + i, data[i : i + take], take))
                    side.content_left -= take
                    i += take
                take = min(side.padding_left, n - i)
                side.padding_left -= take
                i += take
            if (
                side.record is not None
                and side.content_left == 0
                and side.padding_left == 0
            ):
                self._finish_record(side, out, truncated=False)
        return None

    def _start_record(self, side: _Side, h: _Header, out: list[object]) -> bool:
        """Check a header in synced mode; False means framing is lost.

        A header that this side could never send (bad version, unknown
        type, the other side's type, a request id against its type) is
        taken as misframing rather than skipped as one odd record.
        """
        if h.version != 1:
            self._note(
                out,
                None,
                "fcgi.bad_version",
                f"record header has version {h.version}, not 1; framing lost",
                side.direction,
                h.offset,
            )
            return False
        if not FcgiType.BEGIN_REQUEST <= h.type <= FcgiType.UNKNOWN_TYPE:
            self._note(
                out,
                None,
                "fcgi.unknown_type",
                f"record header has type {h.type}, which FastCGI 1.0 does "
                "not define; framing lost",
                side.direction,
                h.offset,
            )
            return False
        rtype = FcgiType(h.type)
        if rtype not in _SENT_BY[side.direction]:
            self._note(
                out,
                None,
                "fcgi.wrong_direction",
                f"record header of type {rtype.name}, which only the other "
                "side sends; framing lost",
                side.direction,
                h.offset,
            )
            return False

        # Management records have request id 0 (section 4), application
        # records never do (section 3.3).
        if (h.request_id == 0) != (rtype in _MANAGEMENT):
            self._note(
                out,
                None,
                "fcgi.bad_request_id",
                f"record header of type {rtype.name} with request id "
                f"{h.request_id}; framing lost",
                side.direction,
                h.offset,
            )
            return False

        side.count += 1
        side.record = FcgiRecord(
            FcgiType(h.type),
            h.request_id,
            h.content_length,
            h.padding_length,
            h.offset,
            side.direction,
            side.count,
        )
        side.content_left = h.content_length
        side.padding_left = h.padding_length
        side.segments = []
        if h.content_length == 0 and h.padding_length == 0:
            self._finish_record(side, out, truncated=False)
        return True

    def _lose_framing(self, side: _Side, offset: int) -> None:
        """Enter resync mode; open requests of this side stop growing."""
        side.synced = False
        side.lost_at = offset
        side.skipped = 0
        side.head.clear()
        for req in self._open_requests():
            if side.direction is Direction.TO_CLIENT:
                if not req.stdout_ended:
                    req.stdout_frozen = True
            else:
                for stream in (req.stdin, req.data):
                    if not stream.ended:
                        stream.frozen = True
                if not req.params_ended:
                    req.params_stopped = True

    def _rescan(
        self, side: _Side, out: list[object], *, at_end: bool
    ) -> tuple[int, bytes] | None:
        """Look for a header that the one after its record confirms.

        Returns the stream offset and bytes from which synced parsing
        goes on, or None while no confirmed header is in the buffer.
        """
        buf = side.scan
        pos = side.scan_pos
        found: int | None = None
        while True:
            p = buf.find(b"\x01", pos)
            if p < 0:
                pos = len(buf)
                break
            if len(buf) - p < _HEADER_LEN:
                pos = len(buf) if at_end else p
                break
            h = _parse_header(buf[p : p + _HEADER_LEN], side.scan_offset + p)
            if not _plausible(side.direction, h):
                pos = p + 1
                continue
            after = p + _HEADER_LEN + h.content_length + h.padding_length
            if after + _HEADER_LEN <= len(buf):
                nxt = _parse_header(buf[after : after + _HEADER_LEN], 0)
                if _plausible(side.direction, nxt):
                    found = p
                    break
                pos = p + 1
                continue
            if at_end and after == len(buf):
                found = p
                break
            if at_end:
                pos = p + 1
                continue
            # Wait for the rest of this candidate's record.
            pos = p
            break

        if found is None:
            side.skipped += pos
            side.scan_offset += pos
            del buf[:pos]
            side.scan_pos = 0
            if len(buf) > MAX_PENDING_BYTES:
                # Cannot happen by construction; kept as a hard bound.
                drop = len(buf) - MAX_PENDING_BYTES
                side.skipped += drop
                side.scan_offset += drop
                del buf[:drop]
            return None

        # Framing is back: report what was skipped and parse on from p.
        skipped = side.skipped + found
        offset = side.scan_offset + found
        self._note(
            out,
            None,
            "fcgi.resync",
            f"framing recovered at a record header after skipping "
            f"{skipped} bytes since offset {side.lost_at}",
            side.direction,
            offset,
        )
        rest = bytes(buf[found:])
        side.scan = bytearray()
        side.scan_pos = 0
        side.synced = True
        side.skipped = 0
        return offset, rest

    def _gap(self, side: _Side, offset: int, length: int, out: list[object]) -> None:
        """Bytes the capture lacks: keep framing when the gap allows it."""
        side.next_offset = offset + length
        if not side.synced:
            side.skipped += len(side.scan)
            side.scan.clear()
            side.scan_offset = offset + length
            side.scan_pos = 0
            self._note(
                out,
                None,
                "fcgi.gap",
                f"{length} stream bytes missing while framing was lost",
                side.direction,
                offset,
            )
            return

        # A gap that ends inside the current record keeps framing: the
        # header already told where the next one starts (section 3.3).
        rec = side.record
        if rec is not None and not side.head:
            take = min(side.content_left, length)
            if take:
                side.segments.append(_Piece(offset, None, take))
                side.content_left -= take
            rest = length - take
            pad = min(side.padding_left, rest)
            side.padding_left -= pad
            rest -= pad
            req = self._request_for_note(rec)
            if rest == 0:
                self._note(
                    out,
                    req,
                    "fcgi.gap",
                    f"{length} stream bytes missing inside record "
                    f"{rec.number} ({rec.type.name}, id {rec.request_id}); "
                    f"{take} content bytes unobserved, framing kept",
                    side.direction,
                    offset,
                )
                if side.content_left == 0 and side.padding_left == 0:
                    self._finish_record(side, out, truncated=False)
                return
            self._note(
                out,
                req,
                "fcgi.gap",
                f"{length} stream bytes missing from inside record "
                f"{rec.number} ({rec.type.name}, id {rec.request_id}) "
                "onwards; framing lost",
                side.direction,
                offset,
            )
            self._finish_record(side, out, truncated=False)
        else:
            self._note(
                out,
                None,
                "fcgi.gap",
                f"{length} stream bytes missing where a record header "
                "was due; framing lost",
                side.direction,
                offset,
            )
        side.record = None
        self._lose_framing(side, offset)
        side.scan = bytearray()
        side.scan_offset = offset + length
        side.scan_pos = 0

    def _end_side(self, side: _Side, out: list[object]) -> None:
        """Flush a direction whose stream is over."""
        while not side.synced:
            found = self._rescan(side, out, at_end=True)
            if found is None:
                side.scan.clear()
                break
            offset, data = found
            self._consume(side, offset, data, out)
        if side.head:
            self._note(
                out,
                None,
                "fcgi.truncated_record",
                f"the stream ends {len(side.head)} bytes into a record header",
                side.direction,
                side.head_offset,
            )
            side.head.clear()
        rec = side.record
        if rec is not None:
            self._note(
                out,
                self._request_for_note(rec),
                "fcgi.truncated_record",
                f"the stream ends inside record {rec.number} "
                f"({rec.type.name}, id {rec.request_id}); "
                f"{side.content_left} content bytes never came",
                side.direction,
                rec.stream_offset,
            )
            self._finish_record(side, out, truncated=True)
        side.ended = True

    # -- Records -------------------------------------------------------------

    def _finish_record(
        self, side: _Side, out: list[object], *, truncated: bool
    ) -> None:
        rec = side.record
        side.record = None
        if rec is None:
            return
        pieces = _coalesce(side.segments)
        side.segments = []
        side.content_left = side.padding_left = 0
        self._dispatch(rec, pieces, truncated, out)

    def _request_for_note(self, rec: FcgiRecord) -> _Request | None:
        """The open request a record belongs to, without creating one."""
        queue = self._live.get(rec.request_id)
        if queue:
            return queue[-1] if rec.direction is Direction.TO_SERVER else queue[0]
        return self._orphans.get(rec.request_id)

    def _dispatch(
        self,
        rec: FcgiRecord,
        pieces: list[_Piece],
        truncated: bool,
        out: list[object],
    ) -> None:
        # Step 1: fixed-size bodies (sections 4.2, 5.1, 5.4, 5.5).
        fixed = _FIXED_LENGTH.get(rec.type)
        if fixed is not None and fixed != rec.content_length:
            self._note(
                out,
                None,
                "fcgi.bad_record_length",
                f"record {rec.number} is {rec.type.name} with "
                f"{rec.content_length} content bytes, not {fixed}",
                rec.direction,
                rec.stream_offset,
            )
        if rec.type in _MANAGEMENT:
            if not truncated:
                self._management(rec, pieces, out)
            return

        # Step 2: application records, by direction.
        if rec.direction is Direction.TO_SERVER:
            self._server_record(rec, pieces, truncated, out)
        else:
            self._client_record(rec, pieces, truncated, out)

    def _management(
        self, rec: FcgiRecord, pieces: list[_Piece], out: list[object]
    ) -> None:
        content = _observed(pieces) or b""
        pairs: list[tuple[bytes, bytes]] = []
        unknown: int | None = None
        if rec.type is FcgiType.UNKNOWN_TYPE:
            unknown = content[0] if content else None
        else:
            pairs, _ = _decode_pairs(content)
        out.append(FcgiManagementRecord(rec, tuple(pairs), unknown))

    def _new_request(
        self, request_id: int, begun: bool, rec: FcgiRecord, out: list[object]
    ) -> _Request | None:
        live = sum(len(q) for q in self._live.values()) + len(self._orphans)
        if live >= MAX_LIVE_REQUESTS:
            if not self._limit_noted:
                self._limit_noted = True
                self._note(
                    out,
                    None,
                    "fcgi.request_limit",
                    f"more than {MAX_LIVE_REQUESTS} requests open at once; "
                    "further ones are not followed",
                    rec.direction,
                    rec.stream_offset,
                )
            return None
        self._seq += 1
        self._seen_ids.add(request_id)
        return _Request(self._seq, request_id, begun)

    def _server_record(
        self,
        rec: FcgiRecord,
        pieces: list[_Piece],
        truncated: bool,
        out: list[object],
    ) -> None:
        rid = rec.request_id

        # BEGIN_REQUEST opens a new request (section 5.1).
        if rec.type is FcgiType.BEGIN_REQUEST:
            req = self._new_request(rid, True, rec, out)
            if req is None:
                return
            req.records.append(rec)
            body = _observed(pieces)
            if body is not None and len(body) >= 3 and not truncated:
                req.role = body[0] << 8 | body[1]
                req.keep_conn = bool(body[2] & _KEEP_CONN)
            self._live.setdefault(rid, deque()).append(req)
            return

        # Other records join the newest open request of their id.
        queue = self._live.get(rid)
        if queue:
            req = queue[-1]
        elif rid in self._seen_ids:
            self._note(
                out,
                None,
                "fcgi.record_after_end",
                f"record {rec.number} ({rec.type.name}) for request {rid}, "
                "which has already ended",
                rec.direction,
                rec.stream_offset,
            )
            return
        else:
            made = self._new_request(rid, False, rec, out)
            if made is None:
                return
            req = made
            self._live.setdefault(rid, deque()).append(req)
            self._note(
                out,
                req,
                "fcgi.unknown_request_id",
                f"record {rec.number} ({rec.type.name}) for request {rid}, "
                "which no BEGIN_REQUEST opened",
                rec.direction,
                rec.stream_offset,
            )
        req.records.append(rec)

        if rec.type is FcgiType.ABORT_REQUEST:
            req.aborted = True
        elif rec.type is FcgiType.PARAMS:
            self._params(req, rec, pieces, truncated, out)
        elif rec.type is FcgiType.STDIN:
            self._byte_stream(req, req.stdin, rec, pieces, truncated, out)
        elif rec.type is FcgiType.DATA:
            self._byte_stream(req, req.data, rec, pieces, truncated, out)

    def _client_record(
        self,
        rec: FcgiRecord,
        pieces: list[_Piece],
        truncated: bool,
        out: list[object],
    ) -> None:
        rid = rec.request_id

        # The oldest open request of this id answers first; records no
        # open request explains gather in an orphan request.
        queue = self._live.get(rid)
        orphan = False
        if queue:
            req = queue[0]
        elif rid in self._orphans:
            req = self._orphans[rid]
            orphan = True
        else:
            seen = rid in self._seen_ids
            made = self._new_request(rid, False, rec, out)
            if made is None:
                return
            req = made
            orphan = True
            self._orphans[rid] = req
            if seen:
                name = "fcgi.record_after_end"
                what = "which has already ended"
            else:
                name = "fcgi.unknown_request_id"
                what = "which no BEGIN_REQUEST opened"
            self._note(
                out,
                req,
                name,
                f"record {rec.number} ({rec.type.name}) for request {rid}, {what}",
                rec.direction,
                rec.stream_offset,
            )
        req.records.append(rec)

        if rec.type is FcgiType.STDOUT:
            self._stdout(req, rec, pieces, out)
        elif rec.type is FcgiType.STDERR:
            self._stderr(req, rec, pieces, out)
        elif rec.type is FcgiType.END_REQUEST and not truncated:
            body = _observed(pieces)
            if body is not None and len(body) >= 5:
                req.app_status = int.from_bytes(body[0:4], "big")
                req.protocol_status = body[4]
            req.complete = True
            if orphan:
                del self._orphans[rid]
            elif queue is not None:
                queue.popleft()
                if not queue:
                    del self._live[rid]
            self._emit(req, out)

    # -- Streams -------------------------------------------------------------

    def _params(
        self,
        req: _Request,
        rec: FcgiRecord,
        pieces: list[_Piece],
        truncated: bool,
        out: list[object],
    ) -> None:
        """Decode PARAMS incrementally; a pair may span records (5.2)."""
        if rec.content_length == 0:
            if not req.params_ended and req.params_buf and not req.params_stopped:
                self._note(
                    out,
                    req,
                    "fcgi.bad_params",
                    f"the PARAMS stream ends with {len(req.params_buf)} bytes "
                    "of an unfinished name-value pair",
                    rec.direction,
                    rec.stream_offset,
                )
            req.params_ended = True
            return
        if req.params_ended:
            if not req.params_late:
                req.params_late = True
                self._note(
                    out,
                    req,
                    "fcgi.stream_after_end",
                    f"PARAMS record {rec.number} after the empty record "
                    "that ended the stream",
                    rec.direction,
                    rec.stream_offset,
                )
            return
        if req.params_stopped:
            return
        for piece in pieces:
            if piece.data is None:
                # Pair boundaries are lost with the bytes.
                req.params_stopped = True
                return
            self._params_bytes(req, rec, piece.data, out)
            if req.params_stopped:
                return

    def _params_bytes(
        self, req: _Request, rec: FcgiRecord, data: bytes, out: list[object]
    ) -> None:
        req.params_total += len(data)
        buf = req.params_buf
        buf += data
        pos = 0
        while True:
            lengths = _pair_lengths(buf, pos)
            if lengths is None:
                break
            name_len, value_len, start = lengths
            end = start + name_len + value_len
            if end - pos > MAX_PARAMS_BYTES or req.params_total > MAX_PARAMS_BYTES:
                self._params_limit(req, rec, "bytes", out)
                return
            if end > len(buf):
                break
            if len(req.pairs) >= MAX_PARAMS_PAIRS:
                self._params_limit(req, rec, "pairs", out)
                return
            name_end = start + name_len
            req.pairs.append((bytes(buf[start:name_end]), bytes(buf[name_end:end])))
            pos = end
        del buf[:pos]
        if req.params_total > MAX_PARAMS_BYTES:
            self._params_limit(req, rec, "bytes", out)

    def _params_limit(
        self, req: _Request, rec: FcgiRecord, what: str, out: list[object]
    ) -> None:
        limit = MAX_PARAMS_BYTES if what == "bytes" else MAX_PARAMS_PAIRS
        req.params_stopped = True
        req.params_buf.clear()
        self._note(
            out,
            req,
            "fcgi.params_limit",
            f"PARAMS of request {req.request_id} exceed {limit} {what}; "
            "the rest is not decoded",
            rec.direction,
            rec.stream_offset,
        )

    def _byte_stream(
        self,
        req: _Request,
        stream: _ByteStream,
        rec: FcgiRecord,
        pieces: list[_Piece],
        truncated: bool,
        out: list[object],
    ) -> None:
        """STDIN or DATA: an empty record ends the stream (5.3)."""
        if rec.content_length == 0:
            stream.ended = True
            return
        if stream.ended and not stream.late:
            stream.late = True
            self._note(
                out,
                req,
                "fcgi.stream_after_end",
                f"{rec.type.name} record {rec.number} after the empty record "
                "that ended the stream",
                rec.direction,
                rec.stream_offset,
            )
        if stream.frozen:
            return
        label = f"record {rec.number}"
        for piece in pieces:
            room = MAX_STDIN_KEPT - stream.kept
            if piece.length > room:
                if not stream.limited:
                    stream.limited = True
                    self._note(
                        out,
                        req,
                        "fcgi.stdin_limit",
                        f"{rec.type.name} of request {req.request_id} exceeds "
                        f"{MAX_STDIN_KEPT} bytes; the rest is not kept",
                        rec.direction,
                        piece.offset + max(room, 0),
                    )
                stream.frozen = True
                if room > 0 and piece.data is not None:
                    stream.builder.add(piece.data[:room], piece.offset, label=label)
                elif room > 0:
                    stream.builder.add_unobserved(room)
                stream.kept = MAX_STDIN_KEPT
                return
            stream.kept += piece.length
            if piece.data is None:
                stream.builder.add_unobserved(piece.length)
            else:
                stream.builder.add(piece.data, piece.offset, label=label)

    def _stdout(
        self,
        req: _Request,
        rec: FcgiRecord,
        pieces: list[_Piece],
        out: list[object],
    ) -> None:
        """STDOUT: CGI header block, then body (sections 5.3 and 6.2)."""
        # Step 1: an empty record ends the stream; more content after it
        # is misframing that nginx would still pass on as body.
        if rec.content_length == 0:
            req.stdout_ended = True
            return
        if req.stdout_ended and not req.midstream_flagged:
            req.midstream_flagged = True
            self._note(
                out,
                req,
                "fcgi.empty_stdout_midstream",
                f"STDOUT record {rec.number} follows the empty STDOUT record "
                "that ended the stream",
                rec.direction,
                rec.stream_offset,
            )
        req.stdout_started = True
        label = f"record {rec.number}"

        for piece in pieces:
            # Step 2: unobserved bytes break the scans; in the header block
            # they hide where the body starts, so the body cannot be placed.
            if piece.data is None:
                req.carry = b""
                req.carry_offsets = []
                if not req.head_done:
                    req.stdout_frozen = True
                elif not req.stdout_frozen:
                    self._body_add(req, rec, None, piece.offset, piece.length, out)
                continue

            # Step 3: look for record headers and tracebacks in the content.
            self._scan_stdout(req, rec, piece.data, piece.offset, out)
            if req.stdout_frozen:
                continue

            # Step 4: the CGI header block, then the body.
            data, offset = piece.data, piece.offset
            if not req.head_done:
                if req.head_offset is None:
                    req.head_offset = offset
                k = self._header_bytes(req, rec, data, offset, out)
                data, offset = data[k:], offset + k
            if data:
                self._body_add(req, rec, data, offset, len(data), out, label)

    def _body_add(
        self,
        req: _Request,
        rec: FcgiRecord,
        data: bytes | None,
        offset: int,
        length: int,
        out: list[object],
        label: str = "",
    ) -> None:
        room = self._max_stdout - req.stdout_kept
        if length > room:
            if req.stdout_dropped == 0:
                self._note(
                    out,
                    req,
                    "fcgi.stdout_limit",
                    f"STDOUT of request {req.request_id} exceeds "
                    f"{self._max_stdout} bytes; the rest is not kept",
                    rec.direction,
                    offset + max(room, 0),
                )
            req.stdout_dropped += length - max(room, 0)
            length = max(room, 0)
            data = data[:length] if data is not None else None
        if length <= 0:
            return
        req.stdout_kept += length
        if data is None:
            req.body.add_unobserved(length)
        else:
            req.body.add(data, offset, label=label)

    def _header_bytes(
        self,
        req: _Request,
        rec: FcgiRecord,
        data: bytes,
        offset: int,
        out: list[object],
    ) -> int:
        """Add STDOUT bytes to the header block; return where the body starts.

        The block ends at the first empty line, LF or CRLF terminated as
        nginx accepts (RFC 3875 section 6.2).
        """
        buf = req.head_buf
        before = len(buf)
        room = MAX_CGI_HEADER_BYTES - before
        buf += data[:room]
        nl = buf.find(b"\n", req.head_scan)
        while nl >= 0:
            line = bytes(buf[req.head_line : nl])
            if line in (b"", b"\r"):
                req.head_done = req.head_complete = True
                del buf[nl + 1 :]
                return nl + 1 - before
            req.head_line = nl + 1
            nl = buf.find(b"\n", nl + 1)
        req.head_scan = len(buf)
        if len(data) > room:
            # The block is too big to be real: keep what came after it as
            # body so that no byte goes unaccounted.
            req.head_done = True
            self._note(
                out,
                req,
                "fcgi.cgi_header_limit",
                f"no end of the CGI header block within {MAX_CGI_HEADER_BYTES} "
                "bytes; the rest of STDOUT is taken as body",
                rec.direction,
                offset + room,
            )
            return room
        return len(data)

    def _scan_stdout(
        self,
        req: _Request,
        rec: FcgiRecord,
        data: bytes,
        offset: int,
        out: list[object],
    ) -> None:
        """Find record headers and tracebacks inside STDOUT content.

        The last few bytes of earlier content are carried over so that a
        match split across records is found; a match wholly inside the
        carry was already examined, so each search starts where a new
        match could begin.
        """
        carry = req.carry
        window = carry + data
        c = len(carry)

        def where(pos: int) -> int:
            return req.carry_offsets[pos] if pos < c else offset + pos - c

        # Record headers (see _embedded for the odds on random data).  The
        # pattern fixes version, type, request id and reserved byte, so
        # candidates are found at C speed; _embedded checks the rest.
        pattern = _embedded_pattern(req.request_id)
        pos = max(0, c - _HEADER_LEN + 1)
        while req.embedded_reports < MAX_EMBEDDED_HEADER_REPORTS:
            found = pattern.search(window, pos)
            if found is None:
                break
            p = found.start()
            pos = p + 1
            h = _parse_header(window[p : p + _HEADER_LEN], where(p))
            if not _embedded(h, req.request_id):
                continue
            req.embedded_reports += 1
            self._note(
                out,
                req,
                "fcgi.header_in_stdout",
                f"STDOUT record {rec.number} content holds a "
                f"{FcgiType(h.type).name} header for request "
                f"{h.request_id} (content length {h.content_length})",
                rec.direction,
                h.offset,
            )

        # Tracebacks and error reports printed into the response: each
        # kind is told once per request.
        for marker, name in _TRACEBACK_MARKERS:
            if name in req.markers_found:
                continue
            p = window.find(marker, max(0, c - len(marker) + 1))
            if p < 0:
                continue
            req.markers_found.add(name)
            self._note(
                out,
                req,
                name,
                f"STDOUT record {rec.number} content holds "
                f"error-report text {marker[:24]!r}",
                rec.direction,
                where(p),
            )

        keep = min(_CARRY, len(window))
        req.carry = window[len(window) - keep :]
        offsets = req.carry_offsets + [
            offset + i for i in range(max(0, len(data) - keep), len(data))
        ]
        req.carry_offsets = offsets[len(offsets) - keep :]

    def _stderr(
        self,
        req: _Request,
        rec: FcgiRecord,
        pieces: list[_Piece],
        out: list[object],
    ) -> None:
        """STDERR: kept as bytes; flagged when it splits STDOUT (5.3)."""
        if rec.content_length == 0:
            req.stderr_ended = True
            return
        if req.stderr_ended and not req.stderr_late:
            req.stderr_late = True
            self._note(
                out,
                req,
                "fcgi.stream_after_end",
                f"STDERR record {rec.number} after the empty record that "
                "ended the stream",
                rec.direction,
                rec.stream_offset,
            )
        if req.stdout_started and not req.stdout_ended and not req.stderr_flagged:
            req.stderr_flagged = True
            self._note(
                out,
                req,
                "fcgi.stderr_in_stdout",
                f"STDERR record {rec.number} arrives while the STDOUT stream "
                "is still open",
                rec.direction,
                rec.stream_offset,
            )
        for piece in pieces:
            if piece.data is None:
                # XXX: unobserved STDERR bytes are left out, not marked;
                # the fcgi.gap anomaly says where they were.
                continue
            room = MAX_STDERR_KEPT - len(req.stderr)
            if len(piece.data) > room and not req.stderr_limited:
                req.stderr_limited = True
                self._note(
                    out,
                    req,
                    "fcgi.stderr_limit",
                    f"STDERR of request {req.request_id} exceeds "
                    f"{MAX_STDERR_KEPT} bytes; the rest is not kept",
                    rec.direction,
                    piece.offset + max(room, 0),
                )
            req.stderr += piece.data[: max(room, 0)]

    # -- Finishing -----------------------------------------------------------

    def _open_requests(self) -> list[_Request]:
        reqs = [r for q in self._live.values() for r in q]
        reqs.extend(self._orphans.values())
        reqs.sort(key=lambda r: r.seq)
        return reqs

    def _flush_open(self, out: list[object], name: str, offset: int) -> None:
        """Emit every open request, unfinished, in the order they opened."""
        when = {
            "fcgi.fin_before_end": "application's stream ended",
            "fcgi.web_server_closed": "web server closed the connection",
        }.get(name, "capture ended")
        direction = Direction.TO_CLIENT
        for req in self._open_requests():
            if name == "fcgi.web_server_closed":
                req.aborted = True
                direction = Direction.TO_SERVER
            self._note(
                out,
                req,
                name,
                f"request {req.request_id} had no END_REQUEST when the {when}",
                direction,
                offset,
            )
            self._emit(req, out)
        self._live.clear()
        self._orphans.clear()

    def _emit(self, req: _Request, out: list[object]) -> None:
        direction = Direction.TO_CLIENT
        headers = self._cgi_headers(req, out)

        # Status as nginx derives it from the CGI header block.
        status: int | None = None
        if headers.complete:
            if headers.get("Status") is not None:
                status = headers.status
            elif headers.location is not None:
                status = 302
            else:
                status = 200

        # The body is whole when STDOUT ended (or END_REQUEST came) and
        # nothing was dropped or frozen before then.
        stdout_done = req.stdout_ended or req.complete
        whole = stdout_done and not req.stdout_dropped and not req.stdout_frozen
        if not whole and headers.content_length is not None:
            # No end of stream, but the app's own Content-Length is met.
            whole = (
                headers.content_length == len(req.body)
                and not req.stdout_dropped
                and not req.stdout_frozen
                and req.body.fully_observed
            )
        body = req.body.build(complete=whole)

        # Content-Length check (RFC 9110 section 8.6), skipped where no
        # body is expected.
        method = dict(req.pairs).get(b"REQUEST_METHOD", b"")
        declared = headers.content_length
        length = len(body) + req.stdout_dropped
        if (
            declared is not None
            and method != b"HEAD"
            and status not in (204, 304)
            and ((whole and length != declared) or length > declared)
        ):
            self._note(
                out,
                req,
                "fcgi.content_length_mismatch",
                f"CGI Content-Length is {declared} but the body has {length} bytes",
                direction,
                req.head_offset,
            )

        params: dict[str, str] = {}
        for name, value in req.pairs:
            params[name.decode("latin-1")] = value.decode("latin-1")
        stdin_whole = req.stdin.ended and not req.stdin.frozen
        data_whole = req.data.ended and not req.data.frozen
        records = sorted(req.records, key=lambda r: (r.direction, r.number))
        anomalies = sorted(
            req.anomalies,
            key=lambda a: (
                a.direction != Direction.TO_SERVER.label,
                a.stream_offset if a.stream_offset is not None else -1,
            ),
        )
        out.append(
            FcgiRequest(
                request_id=req.request_id,
                begun=req.begun,
                role=req.role,
                keep_conn=req.keep_conn,
                aborted=req.aborted,
                params=params,
                param_pairs=tuple(req.pairs),
                stdin=req.stdin.builder.build(complete=stdin_whole),
                data=req.data.builder.build(complete=data_whole),
                headers=headers,
                status=status,
                body=body,
                stderr=bytes(req.stderr),
                app_status=req.app_status,
                protocol_status=req.protocol_status,
                complete=req.complete,
                records=tuple(records),
                anomalies=tuple(anomalies),
            )
        )

    def _cgi_headers(self, req: _Request, out: list[object]) -> CgiHeaders:
        """Parse the header block (RFC 3875 section 6) as nginx reads it."""
        raw = bytes(req.head_buf)
        direction = Direction.TO_CLIENT
        if not req.head_complete:
            if raw and not req.head_done:
                self._note(
                    out,
                    req,
                    "fcgi.bad_cgi_header",
                    f"STDOUT stopped inside the CGI header block after "
                    f"{len(raw)} bytes",
                    direction,
                    req.head_offset,
                )
            return CgiHeaders(raw=raw)

        fields: list[tuple[str, str]] = []
        problems: list[str] = []
        for line in raw.split(b"\n"):
            line = line.removesuffix(b"\r")
            if not line:
                continue
            name, colon, value = line.partition(b":")
            if not colon or not name.strip():
                problems.append(f"line {line[:40]!r} is not a header")
                continue
            fields.append(
                (name.strip().decode("latin-1"), value.strip().decode("latin-1"))
            )
        headers = CgiHeaders(raw=raw, fields=tuple(fields), complete=True)

        status: int | None = None
        status_text = headers.get("Status")
        if status_text is not None:
            code = status_text[:3]
            # str.isdigit() also takes latin-1 superscripts; int() does not.
            digits = len(code) == 3 and code.isascii() and code.isdigit()
            if digits and int(code) >= 100:
                status = int(code)
            else:
                problems.append(f"Status {status_text[:40]!r} has no valid code")

        length: int | None = None
        lengths = set(headers.get_all("Content-Length"))
        if len(lengths) > 1:
            problems.append("Content-Length values disagree")
        elif lengths:
            text = lengths.pop()
            # ASCII digits only, and at most 19 of them, as HTTP Content-Length.
            if text.isascii() and text.isdigit() and len(text) <= 19:
                length = int(text)
            else:
                problems.append(f"Content-Length {text[:40]!r} is not a number")

        for problem in problems:
            self._note(
                out, req, "fcgi.bad_cgi_header", problem, direction, req.head_offset
            )
        return CgiHeaders(
            raw=raw,
            fields=tuple(fields),
            complete=True,
            status=status,
            content_type=headers.get("Content-Type"),
            content_length=length,
            location=headers.get("Location"),
        )
