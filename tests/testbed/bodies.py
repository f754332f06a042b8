"""Deterministic response bodies, and what each backend sends for a query.

Every backend of the testbed (the flup app, the PHP script and the fault
server) builds its body with the same algorithm, so a test can recompute
the bytes the app generated from the request URI alone.

The query language, shared by all backends::

    /body?size=N&seed=S&mode=length|chunked&binary=0|1&digest=sha1|md5
         &lie=1&slow_ms=MS&chunk=BYTES
         &fault=die|crash|empty_stdout|stderr|fake_header&after=N

``php/bodies.php`` is a port of :func:`make_body`; the two must give the
same bytes, and a test pins that.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "LINE_LENGTH",
    "FAKE_RECORD_HEADER",
    "BodyQuery",
    "flip_middle_byte",
    "make_body",
    "parse_body_query",
]

# A text body is made of lines this long (newline included).  64 keeps the
# lines short enough to read in a hex dump and makes offsets easy to spot:
# line k starts at offset 64 * k.
LINE_LENGTH = 64

# The filler alphabet; a line's filler is a rotation of it, so the body
# compresses well (gzip sees the same 62 rotations again and again).
_ALPHABET = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

# Largest seed: it is printed on every line and must leave room for filler.
_MAX_SEED = 2**32 - 1

# Binary bodies are SHA-256 in counter mode: block k is
# sha256(b"<seed>:<k>"), 32 bytes each.
_BINARY_BLOCK = 32

# Eight bytes that read as a FastCGI 1.0 record header (spec section 3.3):
# version 1, type FCGI_STDOUT (6), request id 1, content length 4096, no
# padding.  The fault server can write them *inside* STDOUT content.
FAKE_RECORD_HEADER = bytes([1, 6, 0, 1, 0x10, 0x00, 0, 0])

Mode = Literal["length", "chunked"]
Digest = Literal["", "sha1", "md5"]
Fault = Literal["", "die", "crash", "empty_stdout", "stderr", "fake_header"]


def make_body(size: int, seed: int, *, text: bool = True) -> bytes:
    """Return ``size`` deterministic bytes for ``seed``.

    Text bodies are ASCII lines of :data:`LINE_LENGTH` bytes; each line
    starts with its own zero-padded offset and the seed, so a reader of a
    damaged body can tell where a fragment came from::

        0000000000 s3 defghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01\\n

    Binary bodies are pseudo-random bytes (SHA-256 in counter mode).
    """
    if size < 0:
        raise ValueError(f"body size must be >= 0, got {size}")
    if not 0 <= seed <= _MAX_SEED:
        raise ValueError(f"seed must be in 0..{_MAX_SEED}, got {seed}")
    if text:
        return _text_body(size, seed)
    return _binary_body(size, seed)


def _text_body(size: int, seed: int) -> bytes:
    doubled = _ALPHABET + _ALPHABET
    lines = []
    for line_no in range((size + LINE_LENGTH - 1) // LINE_LENGTH):
        prefix = b"%010d s%d " % (line_no * LINE_LENGTH, seed)
        start = (seed + line_no) % len(_ALPHABET)
        fill = LINE_LENGTH - 1 - len(prefix)
        lines.append(prefix + doubled[start : start + fill] + b"\n")
    return b"".join(lines)[:size]


def _binary_body(size: int, seed: int) -> bytes:
    blocks = []
    for block_no in range((size + _BINARY_BLOCK - 1) // _BINARY_BLOCK):
        blocks.append(hashlib.sha256(b"%d:%d" % (seed, block_no)).digest())
    return b"".join(blocks)[:size]


@dataclass(frozen=True, slots=True)
class BodyQuery:
    """The parsed query of a ``/body`` request; every field has a default."""

    size: int = 1000
    seed: int = 0
    mode: Mode = "length"
    binary: bool = False
    digest: Digest = ""
    lie: bool = False
    slow_ms: int = 0
    chunk: int = 16384
    fault: Fault = ""
    after: int = 0

    def generated(self) -> bytes:
        """The body :func:`make_body` gives for this query, before any lie."""
        return make_body(self.size, self.seed, text=not self.binary)

    def sent(self) -> bytes:
        """The body bytes the app writes for this query (CGI headers excluded).

        This differs from :meth:`generated` when the query asks the app to
        lie about its digest (one byte flipped after digesting), to die
        after ``after`` bytes, or to embed a fake record header.
        """
        body = self.generated()
        if self.lie and body:
            body = flip_middle_byte(body)
        if self.fault in ("die", "crash"):
            return body[: self.after]
        if self.fault == "fake_header":
            cut = min(self.after, len(body))
            return body[:cut] + FAKE_RECORD_HEADER + body[cut:]
        return body

    def announced_length(self) -> int:
        """The Content-Length the app announces in ``mode=length``.

        A dying or crashing app announces the whole body and then sends
        less.
        """
        extra = len(FAKE_RECORD_HEADER) if self.fault == "fake_header" else 0
        return self.size + extra

    def digest_header(self) -> tuple[str, str] | None:
        """The digest header the app sends, computed over :meth:`generated`."""
        body = self.generated()
        if self.digest == "sha1":
            return ("X-Body-SHA1", hashlib.sha1(body).hexdigest())
        if self.digest == "md5":
            # RFC 1864: base64 of the 16-byte MD5 digest.
            md5 = hashlib.md5(body).digest()
            return ("Content-MD5", base64.b64encode(md5).decode("ascii"))
        return None

    def content_type(self) -> str:
        """The Content-Type the app sends for this body."""
        return "application/octet-stream" if self.binary else "text/plain"


def flip_middle_byte(body: bytes) -> bytes:
    """Return ``body`` with the byte at ``len // 2`` XORed with 0x01."""
    middle = len(body) // 2
    return body[:middle] + bytes([body[middle] ^ 0x01]) + body[middle + 1 :]


def parse_body_query(target: str) -> BodyQuery:
    """Parse a request target (``/body?...``) or bare query into a BodyQuery.

    Unknown parameters are ignored; a bad value raises ValueError.
    """
    query = urlsplit(target).query if "?" in target else target
    fields = {key: values[-1] for key, values in parse_qs(query).items()}
    mode = fields.get("mode", "length")
    digest = fields.get("digest", "")
    fault = fields.get("fault", "")
    if mode not in ("length", "chunked"):
        raise ValueError(f"mode must be length or chunked, got {mode!r}")
    if digest not in ("", "sha1", "md5"):
        raise ValueError(f"digest must be sha1 or md5, got {digest!r}")
    if fault not in ("", "die", "crash", "empty_stdout", "stderr", "fake_header"):
        raise ValueError(f"unknown fault {fault!r}")
    chunk = int(fields.get("chunk", "16384"))
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    return BodyQuery(
        size=int(fields.get("size", "1000")),
        seed=int(fields.get("seed", "0")),
        mode=mode,  # type: ignore[arg-type]
        binary=fields.get("binary", "0") == "1",
        digest=digest,  # type: ignore[arg-type]
        lie=fields.get("lie", "0") == "1",
        slow_ms=int(fields.get("slow_ms", "0")),
        chunk=chunk,
        fault=fault,  # type: ignore[arg-type]
        after=int(fields.get("after", "0")),
    )
