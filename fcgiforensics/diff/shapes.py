"""Recognisable shapes in the bytes of a diff region, put into words.

A region of garbage says little; a region that holds a FastCGI record
header, a PHP error message or a copy of bytes from 64 KiB earlier
points at the code that broke.  :func:`describe_shapes` looks for such
shapes in one side's bytes of a region and returns one short sentence
per finding.  It never decodes text lossily: bytes are shown with
escapes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Literal

from .align import DiffRegion

__all__ = [
    "Side",
    "describe_shapes",
    "BOUNDARY_MIN",
    "ZERO_RUN_MIN_BYTES",
    "REPEAT_MIN_BYTES",
    "MAX_LISTED",
]

Side = Literal["client", "upstream"]

#: Smallest power of two reported as a boundary.  4096 is the page size
#: and the smallest buffer size servers use; below it a region edge
#: lands on a multiple by chance too often (one in 1024 for 1024).
BOUNDARY_MIN = 4096

#: Largest power of two tried as a boundary (1 GiB): bodies stay below.
BOUNDARY_MAX = 1 << 30

#: Shortest run of zero bytes worth a sentence.  Binary formats carry a
#: few zero bytes everywhere (integers, padding); sixteen in a row look
#: like a cleared or never-filled buffer.
ZERO_RUN_MIN_BYTES = 16

#: Shortest repeat reported.  In text, strings of eight or so bytes
#: ("</div>\n  ") recur by chance; sixteen rarely do.
REPEAT_MIN_BYTES = 16

#: Bytes of the region searched for elsewhere when the whole region is
#: not a repeat, to find a partial one.
REPEAT_PROBE_BYTES = 64

#: Occurrences of a probe examined before giving up: a probe that occurs
#: more often than this is a common string, not a telling repeat.
REPEAT_MAX_HITS = 16

#: Findings of one kind listed one by one; more are summed up.
MAX_LISTED = 3

#: Largest request id taken as plausible in a record header.  nginx
#: always sends id 1, and servers that multiplex keep few requests open
#: at once; ids up to 65535 are legal but would let random bytes pass.
MAX_REQUEST_ID = 1024

#: The spec recommends records aligned on 8 bytes (section 3.3), so
#: servers pad by 0 to 7; a larger padding suggests chance bytes.
FCGI_ALIGNMENT = 8

#: Characters of quoted text shown in a sentence.
QUOTE_CHARS = 72

# FastCGI 1.0 spec, section 8: record types 1..11.
_FCGI_TYPES = {
    1: "FCGI_BEGIN_REQUEST",
    2: "FCGI_ABORT_REQUEST",
    3: "FCGI_END_REQUEST",
    4: "FCGI_PARAMS",
    5: "FCGI_STDIN",
    6: "FCGI_STDOUT",
    7: "FCGI_STDERR",
    8: "FCGI_DATA",
    9: "FCGI_GET_VALUES",
    10: "FCGI_GET_VALUES_RESULT",
    11: "FCGI_UNKNOWN_TYPE",
}

# FastCGI 1.0 spec, section 3.3: version (1), type, requestId (2 bytes),
# contentLength (2 bytes), paddingLength, reserved (sent as zero).
_FCGI_HEADER = re.compile(rb"\x01[\x01-\x0b][\x00-\xff]{5}\x00", re.DOTALL)

# Text that error handlers write: markers, and what they mean.
_ERROR_MARKERS: tuple[tuple[bytes, str], ...] = (
    (b"Traceback (most recent call last)", "a Python traceback"),
    (b"PHP Fatal error", "a PHP fatal error"),
    (b"PHP Parse error", "a PHP parse error"),
    (b"PHP Warning", "a PHP warning"),
    (b"PHP Notice", "a PHP notice"),
    (b"PHP Deprecated", "a PHP deprecation notice"),
    (b"Fatal error</b>:", "a PHP fatal error (HTML display_errors)"),
    (b"Fatal error: ", "a PHP fatal error"),
    (b"Parse error: ", "a PHP parse error"),
    (b"Stack trace:\n#0", "a PHP stack trace"),
    (b"Primary script unknown", "a php-fpm error"),
    (b"Unhandled Exception", "an unhandled exception report"),
)

# RFC 9112 section 7.1: chunk-size [ chunk-ext ] CRLF, at a line start.
_CHUNK_LINE = re.compile(
    rb"(?:\A|(?<=\r\n))([0-9A-Fa-f]{1,16})((?:[ \t]*;[^\r\n]*)?)\r\n"
)

# RFC 9112 section 4 (status line) and section 5 (field lines); field
# names are case-insensitive (RFC 9110 section 5.1).  CGI responses on
# the FastCGI leg use "Status:" (RFC 3875 section 6.3.3).
_HTTP_TEXT = re.compile(
    rb"(?:\A|(?<=\n))("
    rb"HTTP/1\.[01] [1-5][0-9][0-9][^\r\n]*"
    rb"|(?i:content-type|content-length|transfer-encoding|content-encoding"
    rb"|connection|server|date|status|set-cookie|x-powered-by|location"
    rb"|cache-control|keep-alive|vary|etag|last-modified):[ \t][^\r\n]*"
    rb")"
)

_ZERO_RUN = re.compile(rb"\x00{%d,}" % ZERO_RUN_MIN_BYTES)

# Whether a copy at (offset, length) may be reported.
_Usable = Callable[[int, int], bool]


def describe_shapes(
    region: DiffRegion,
    upstream: bytes,
    client: bytes,
    *,
    side: Side = "client",
    unobserved: Sequence[tuple[int, int]] = (),
) -> list[str]:
    """Sentences about recognisable shapes in one side's bytes of ``region``.

    ``side`` picks the body examined: the client's bytes (what a proxy
    delivered) or the upstream's (what the app sent, for app damage).
    ``unobserved`` lists that body's unobserved ranges, so that a repeat
    is never found in placeholder bytes.
    """
    if side == "client":
        body, start, end = client, region.client_start, region.client_end
    else:
        body, start, end = upstream, region.upstream_start, region.upstream_end
    data = body[start:end]

    found: list[str] = []
    found += _boundaries(side, start, end)
    if data:
        found += _fcgi_headers(data, side, start)
        found += _error_text(data, side, start)
        found += _chunk_lines(data, side, start)
        found += _http_text(data, side, start)
        found += _zero_runs(data, side, start)
        found += _repeats(body, start, end, side, unobserved)
    return found


def _show(data: bytes) -> str:
    """Bytes as readable text: printable ASCII kept, the rest escaped."""
    out: list[str] = []
    for byte in data[:QUOTE_CHARS]:
        if byte == 0x0D:
            out.append("\\r")
        elif byte == 0x0A:
            out.append("\\n")
        elif byte == 0x09:
            out.append("\\t")
        elif byte == 0x5C:
            out.append("\\\\")
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02x}")
    if len(data) > QUOTE_CHARS:
        out.append("...")
    return "".join(out)


def _at(side: Side, base: int, index: int) -> str:
    return f"region byte {index:,} ({side} byte {base + index:,})"


def _more(count: int, what: str) -> list[str]:
    if count <= MAX_LISTED:
        return []
    return [f"and {count - MAX_LISTED:,} more {what}"]


def _power_of_two(pos: int) -> str | None:
    """Why ``pos`` is a boundary, or None when it is not one."""
    if pos <= 0 or pos % BOUNDARY_MIN:
        return None
    if pos & (pos - 1) == 0:
        return f"which is 2^{pos.bit_length() - 1}"
    step = BOUNDARY_MIN
    while step * 2 <= BOUNDARY_MAX and pos % (step * 2) == 0:
        step *= 2
    return f"a multiple of {step:,}"


def _boundaries(side: Side, start: int, end: int) -> list[str]:
    if start == end:
        why = _power_of_two(start)
        if why is None:
            return []
        return [f"the region sits at {side} byte {start:,}, {why}"]
    found: list[str] = []
    why = _power_of_two(start)
    if why is not None:
        found.append(f"the region starts at {side} byte {start:,}, {why}")
    why = _power_of_two(end)
    if why is not None:
        found.append(f"the region ends before {side} byte {end:,}, {why}")
    return found


def _fcgi_headers(data: bytes, side: Side, base: int) -> list[str]:
    """FastCGI record headers (FastCGI 1.0 spec, sections 3.3 and 8).

    Eight bytes pass for a header only if they look like one a server
    would write: application records (types 1 to 8) with a request id
    from 1 to :data:`MAX_REQUEST_ID`, management records (9 to 11) with
    id 0, and padding below 8.  Random bytes then pass about once in
    10**10 positions instead of once in 10**6.
    """
    hits: list[str] = []
    for m in _FCGI_HEADER.finditer(data):
        header = m.group()
        kind = header[1]
        request_id = int.from_bytes(header[2:4], "big")
        padding = header[6]
        if kind <= 8 and not 0 < request_id <= MAX_REQUEST_ID:
            continue
        if kind > 8 and request_id != 0:
            continue
        if padding >= FCGI_ALIGNMENT:
            continue
        length = int.from_bytes(header[4:6], "big")
        hits.append(
            f"a FastCGI record header at {_at(side, base, m.start())}: "
            f"{_FCGI_TYPES[kind]}, request id {request_id}, "
            f"content length {length:,}, padding {padding}"
        )
    return hits[:MAX_LISTED] + _more(len(hits), "FastCGI record headers")


def _error_text(data: bytes, side: Side, base: int) -> list[str]:
    """Error and traceback text; one sentence per line that holds some.

    The quote runs from the marker to the end of its line.
    """
    hits: list[tuple[int, str]] = []
    lines_seen: set[int] = set()
    for marker, meaning in _ERROR_MARKERS:
        pos = data.find(marker)
        while pos >= 0:
            line_start = data.rfind(b"\n", 0, pos) + 1
            if line_start not in lines_seen:
                lines_seen.add(line_start)
                line_end = data.find(b"\n", pos)
                line = data[pos : line_end if line_end >= 0 else len(data)]
                quoted = _show(line.rstrip(b"\r"))
                hits.append((pos, f'{meaning} ("{quoted}") at {_at(side, base, pos)}'))
            pos = data.find(marker, pos + len(marker))
    hits.sort()
    texts = [text for _, text in hits]
    return texts[:MAX_LISTED] + _more(len(texts), "lines of error text")


def _chunk_lines(data: bytes, side: Side, base: int) -> list[str]:
    """Text that reads as an HTTP/1.1 chunk-size line (RFC 9112, 7.1)."""
    hits: list[str] = []
    for m in _CHUNK_LINE.finditer(data):
        size = int(m.group(1), 16)
        line = _show(m.group())
        if size == 0 and data[m.end() : m.end() + 2] == b"\r\n":
            what = f'a last-chunk ("{line}\\r\\n")'
        else:
            what = f'an HTTP chunk-size line ("{line}", {size:,} bytes)'
        hits.append(f"{what} at {_at(side, base, m.start())}")
    return hits[:MAX_LISTED] + _more(len(hits), "chunk-size lines")


def _http_text(data: bytes, side: Side, base: int) -> list[str]:
    """HTTP status-line or header-field text inside the body."""
    hits = [
        f'HTTP header text ("{_show(m.group(1))}") at {_at(side, base, m.start())}'
        for m in _HTTP_TEXT.finditer(data)
    ]
    return hits[:MAX_LISTED] + _more(len(hits), "lines of HTTP header text")


def _zero_runs(data: bytes, side: Side, base: int) -> list[str]:
    runs = [(m.end() - m.start(), m.start()) for m in _ZERO_RUN.finditer(data)]
    if not runs:
        return []
    if runs[0] == (len(data), 0):
        return [f"all {len(data):,} bytes of the region are zero"]
    length, start = max(runs, key=lambda r: (r[0], -r[1]))
    sentence = (
        f"a run of {length:,} zero bytes at region bytes "
        f"{start:,}-{start + length - 1:,} ({side} bytes "
        f"{base + start:,}-{base + start + length - 1:,})"
    )
    if len(runs) > 1:
        sentence += f", and {len(runs) - 1:,} shorter or equal runs"
    return [sentence]


def _repeats(
    body: bytes,
    start: int,
    end: int,
    side: Side,
    unobserved: Sequence[tuple[int, int]],
) -> list[str]:
    """Whether the region's bytes copy bytes from elsewhere in the body.

    The whole region is looked for first; failing that, its first
    :data:`REPEAT_PROBE_BYTES` bytes, and the copy is then followed as
    far as it goes.  A copy overlapping the region itself, or lying in
    bytes that were not observed, does not count.
    """
    size = end - start
    data = body[start:end]
    if size < REPEAT_MIN_BYTES or data.count(data[:1]) == size:
        return []  # too short to mean anything, or one byte repeated

    def usable(at: int, length: int) -> bool:
        if at < end and start < at + length:
            return False
        return not any(s < at + length and at < e for s, e in unobserved)

    # Step 1: the whole region, found elsewhere.
    at = _find_other(body, data, usable, start)
    if at is not None:
        return [f"the {size:,} bytes {_repeat_of(side, at, size, start)}"]

    # Step 2: a copy of the region's opening bytes, followed forward.
    probe = data[:REPEAT_PROBE_BYTES]
    at = _find_other(body, probe, usable, start)
    if at is None:
        return []
    length = _shared_length(body, at, data, start - at if at < start else size)
    for s, _ in unobserved:
        if at <= s < at + length:
            length = s - at
    if length < REPEAT_MIN_BYTES:
        return []
    return [f"the first {length:,} bytes {_repeat_of(side, at, length, start)}"]


def _find_other(
    body: bytes, needle: bytes, usable: _Usable, near: int = 0
) -> int | None:
    """The usable copy of ``needle`` nearest to offset ``near``.

    A duplicated block repeats the bytes right before it; text bodies
    repeat themselves with long periods, so the nearest copy is the one
    that explains the damage, not the first in the body.
    """
    found: list[int] = []
    pos = body.rfind(needle, 0, near + len(needle) - 1)
    hits = 0
    while pos >= 0 and hits < REPEAT_MAX_HITS:
        if usable(pos, len(needle)):
            found.append(pos)
            break
        hits += 1
        pos = body.rfind(needle, 0, pos + len(needle) - 1)
    pos = body.find(needle, near + 1)
    hits = 0
    while pos >= 0 and hits < REPEAT_MAX_HITS:
        if usable(pos, len(needle)):
            found.append(pos)
            break
        hits += 1
        pos = body.find(needle, pos + 1)
    return min(found, key=lambda at: abs(at - near)) if found else None


def _shared_length(body: bytes, at: int, data: bytes, limit: int) -> int:
    """Longest ``n <= limit`` with ``body[at:at+n] == data[:n]``."""
    lo, hi = 0, min(limit, len(data), len(body) - at)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if body[at : at + mid] == data[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _repeat_of(side: Side, at: int, length: int, start: int) -> str:
    distance = start - at
    where = (
        f"{distance:,} bytes earlier" if distance > 0 else f"{-distance:,} bytes later"
    )
    return f"repeat {side} body bytes {at:,}-{at + length - 1:,} ({where})"
