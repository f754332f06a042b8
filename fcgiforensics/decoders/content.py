"""Streaming Content-Encoding decoding with bounded output (RFC 9110 §8.4).

A :class:`ContentDecoder` takes the wire body of one message (after
de-chunking, still content-encoded) in pieces, each with the stream range
that carried it, and builds the decoded :class:`Body`.  Decoded bytes map
coarsely back to the stream: a block of output points at the range of the
encoded bytes whose feeding produced it.

Every codec has an output limit and a ratio limit.  Going over either stops
decoding with an ``http.decompression_limit`` anomaly; a decompression
bomb never allocates much more than the limit, because each codec is driven
through an API that bounds the output of one call.  A damaged stream stops
decoding with ``http.decode_error``; what was decoded before it is kept.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence

import brotli
import zstandard

from ..anomalies import Anomaly
from ..errors import UsageError
from .body import Body, BodyBuilder

__all__ = [
    "MAX_DECODED_BYTES",
    "MAX_RATIO",
    "RATIO_FLOOR",
    "SUPPORTED_CODINGS",
    "ContentDecoder",
    "parse_codings",
]

#: Largest decoded body kept, per coding layer and for the whole chain.
#: Web responses worth diffing are far smaller; beyond this a body is
#: either a bomb or something this tool should not hold in memory twice.
MAX_DECODED_BYTES = 256 * 1024 * 1024

#: Largest decoded/encoded size ratio accepted.  Deflate cannot exceed
#: about 1032:1, so an honest single gzip or deflate layer never trips
#: it; brotli, zstd and nested layers can go far higher, which is how a
#: bomb is built.
MAX_RATIO = 1100

#: The ratio is only judged once this much has been decoded, so that a
#: small run of repeated bytes (a page of spaces) is not called a bomb.
RATIO_FLOOR = 1024 * 1024

#: Encoded bytes handed to a codec in one call.  Small steps bound the
#: output lost when a call fails, and place a failure within a step.
_INPUT_STEP = 4096

#: zstd has no bounded-output call, so its input is fed in small steps: a
#: block header is 3 bytes and an RLE block one more, and a block decodes
#: to at most 128 KiB (RFC 8878 §3.1.1.2), so 64 bytes give at most 2 MiB.
_ZSTD_INPUT_STEP = 64

#: brotli fails a whole call on bad input, dropping that call's output,
#: so it gets smaller steps than the other codecs.
_BROTLI_INPUT_STEP = 256

#: Output of one bounded call; the unit in which budgets are checked.
_OUTPUT_STEP = 256 * 1024

#: Largest zstd window accepted.  RFC 9659 §3 caps the window of zstd as
#: an HTTP content coding at 8 MiB, which also caps decoder memory.
_ZSTD_MAX_WINDOW = 8 * 1024 * 1024

SUPPORTED_CODINGS = frozenset({"gzip", "x-gzip", "deflate", "br", "zstd"})

_GZIP_MAGIC = b"\x1f\x8b"


def parse_codings(values: Iterable[bytes]) -> list[str]:
    """The codings named by Content-Encoding field values, in order applied.

    Several field lines form one list (RFC 9110 §5.3); names are
    case-insensitive (§8.4.1) and ``identity`` means no coding at all.
    """
    codings: list[str] = []
    for value in values:
        for item in value.split(b","):
            name = item.strip().lower().decode("latin-1")
            if name and name != "identity":
                codings.append(name)
    return codings


class _CodecError(Exception):
    """A codec cannot go on; ``name`` is the anomaly to record."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(detail)
        self.name = name
        self.detail = detail


class _Stage:
    """One coding layer: encoded bytes in, decoded bytes out, with limits."""

    coding: str
    finished: bool

    def __init__(self, coding: str, max_output: int, max_ratio: int) -> None:
        self.coding = coding
        self.finished = False
        self.max_output = max_output
        self.max_ratio = max_ratio
        self.taken = 0
        self.given = 0
        self.error: _CodecError | None = None

    def decode(self, data: bytes) -> bytes:
        """Decode ``data``; on failure set ``error`` and keep earlier output."""
        out: list[bytes] = []
        try:
            self._decode_into(data, out)
        except _CodecError as exc:
            self.error = exc
        return b"".join(out)

    def _decode_into(self, data: bytes, out: list[bytes]) -> None:
        """Append decoded blocks to ``out``; raise :class:`_CodecError`."""
        raise NotImplementedError

    def truncated(self) -> bool:
        """True when input stopped before the coding's end marker."""
        return not self.finished

    def _budget(self) -> int:
        """How many more bytes this layer may produce (at least 1)."""
        return max(self.max_output - self.given, 0) + 1

    def _count(self, produced: int, out: list[bytes]) -> None:
        """Account for output and stop at the size or ratio limit.

        The budget lets one byte past the limit through, to tell "exactly
        at the limit" from "over it"; that byte is taken back here.
        """
        self.given += produced
        if self.given > self.max_output:
            excess = self.given - self.max_output
            if out and excess <= len(out[-1]):
                out[-1] = out[-1][: len(out[-1]) - excess]
            raise _CodecError(
                "http.decompression_limit",
                f"{self.coding} output passed {self.max_output} bytes "
                "(the size limit, or the ratio limit for the bytes so far)",
            )
        if self.given > RATIO_FLOOR and self.given > self.taken * self.max_ratio:
            raise _CodecError(
                "http.decompression_limit",
                f"{self.coding} expanded {self.taken} bytes to {self.given}, "
                f"over the {self.max_ratio}:1 ratio limit",
            )


class _ZlibStage(_Stage):
    """gzip (RFC 1952, several members allowed) and deflate (RFC 1950).

    ``deflate`` is the zlib format (RFC 9110 §8.4.1.2), but some servers
    send raw deflate (RFC 1951); the first two bytes tell them apart.
    """

    def __init__(self, coding: str, max_output: int, max_ratio: int) -> None:
        super().__init__(coding, max_output, max_ratio)
        self._gzip = coding in ("gzip", "x-gzip")
        self._obj: zlib._Decompress | None = None
        self._head = b""
        if self._gzip:
            self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def _pick_deflate(self) -> None:
        """Choose zlib or raw deflate from the zlib header check (RFC 1950 §2.2)."""
        cmf, flg = self._head[0], self._head[1]
        wrapped = cmf & 0x0F == 8 and (cmf << 8 | flg) % 31 == 0
        self._obj = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)

    def _decode_into(self, data: bytes, out: list[bytes]) -> None:
        if self._obj is None:
            self._head += data
            if len(self._head) < 2:
                return
            self._pick_deflate()
            data, self._head = self._head, b""
        self.taken += len(data)
        pending = False
        while data or pending:
            if self.finished:
                data = self._next_member(data)
                continue
            obj = self._obj
            assert obj is not None
            want = min(self._budget(), _OUTPUT_STEP)
            try:
                block = obj.decompress(data, want)
            except zlib.error as exc:
                raise _CodecError(
                    "http.decode_error", f"{self.coding}: {exc}"
                ) from None
            out.append(block)
            self._count(len(block), out)
            if obj.eof:
                self.finished = True
                pending = False
                data = obj.unused_data
            else:
                # A full block can leave output inside the inflater after
                # the last input byte was read (raw deflate has no trailer
                # to come after it), so ask again until a block is short.
                pending = len(block) == want
                data = obj.unconsumed_tail

    def _next_member(self, data: bytes) -> bytes:
        """Start the next gzip member (RFC 1952 §2.2) or reject trailing bytes."""
        if self._gzip and data[:2] == _GZIP_MAGIC[: len(data[:2])]:
            self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
            self.finished = False
            return data
        raise _CodecError(
            "http.decode_trailing_data",
            f"{len(data)} bytes after the end of the {self.coding} stream",
        )


class _BrotliStage(_Stage):
    """br (RFC 7932), with output bounded by ``output_buffer_limit``."""

    def __init__(self, coding: str, max_output: int, max_ratio: int) -> None:
        super().__init__(coding, max_output, max_ratio)
        self._obj = brotli.Decompressor()

    def _decode_into(self, data: bytes, out: list[bytes]) -> None:
        for i in range(0, len(data), _BROTLI_INPUT_STEP):
            if self.finished:
                raise _CodecError(
                    "http.decode_trailing_data",
                    f"{len(data) - i} bytes after the end of the br stream",
                )
            step = data[i : i + _BROTLI_INPUT_STEP]
            self.taken += len(step)
            # XXX: bytes after the end marker inside the same step fail the
            # step as a decode error, and that step's output is lost.
            try:
                self._process(step, out)
            except brotli.error as exc:
                raise _CodecError("http.decode_error", f"br: {exc}") from None
            self.finished = bool(self._obj.is_finished())

    def _process(self, step: bytes, out: list[bytes]) -> None:
        """Feed one step, draining output in bounded blocks.

        ``can_accept_more_data()`` says whether input is still held, not
        whether output is: once a step's input is all taken it is True
        while the output of that input may still be pending (brotli 1.2).
        So draining goes on until the stream ends or a call gives nothing.
        """
        block = self._obj.process(step, output_buffer_limit=_OUTPUT_STEP)
        out.append(block)
        self._count(len(block), out)
        while not self._obj.is_finished() and (
            block or not self._obj.can_accept_more_data()
        ):
            block = self._obj.process(b"", output_buffer_limit=_OUTPUT_STEP)
            out.append(block)
            self._count(len(block), out)


class _ZstdStage(_Stage):
    """zstd (RFC 8878), one frame, fed in steps that bound each call's output."""

    def __init__(self, coding: str, max_output: int, max_ratio: int) -> None:
        super().__init__(coding, max_output, max_ratio)
        dctx = zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW)
        self._obj = dctx.decompressobj()

    def _decode_into(self, data: bytes, out: list[bytes]) -> None:
        for i in range(0, len(data), _ZSTD_INPUT_STEP):
            step = data[i : i + _ZSTD_INPUT_STEP]
            if self.finished:
                raise _CodecError(
                    "http.decode_trailing_data",
                    f"{len(data) - i} bytes after the end of the zstd frame",
                )
            self.taken += len(step)
            try:
                block = self._obj.decompress(step)
            except zstandard.ZstdError as exc:
                raise _CodecError("http.decode_error", f"zstd: {exc}") from None
            out.append(block)
            self._count(len(block), out)
            if self._obj.eof:
                self.finished = True
                tail = self._obj.unused_data + data[i + _ZSTD_INPUT_STEP :]
                if tail:
                    raise _CodecError(
                        "http.decode_trailing_data",
                        f"{len(tail)} bytes after the end of the zstd frame",
                    )


def _make_stage(coding: str, max_output: int, max_ratio: int) -> _Stage:
    """The layer that undoes ``coding``."""
    if coding in ("gzip", "x-gzip", "deflate"):
        return _ZlibStage(coding, max_output, max_ratio)
    if coding == "br":
        return _BrotliStage(coding, max_output, max_ratio)
    return _ZstdStage(coding, max_output, max_ratio)


class ContentDecoder:
    """Undo the content codings of one message body, as it streams in.

    ``codings`` lists the codings in the order the sender applied them
    (as Content-Encoding lists them, RFC 9110 §8.4); they are undone in
    reverse.  ``direction`` is the label put on anomalies.  After the
    first anomaly the decoder stops: later input is ignored and the body
    is incomplete.
    """

    __slots__ = (
        "_stages",
        "_builder",
        "_direction",
        "_max_output",
        "_max_ratio",
        "_taken",
        "_stopped",
    )

    def __init__(
        self,
        codings: Sequence[str],
        *,
        direction: str = "server->client",
        max_output: int = MAX_DECODED_BYTES,
        max_ratio: int = MAX_RATIO,
    ) -> None:
        unknown = [c for c in codings if c not in SUPPORTED_CODINGS]
        if unknown or not codings:
            raise UsageError(f"cannot decode content codings {list(codings)!r}")
        self._stages = [
            _make_stage(c, max_output, max_ratio) for c in reversed(codings)
        ]
        self._builder = BodyBuilder()
        self._direction = direction
        self._max_output = max_output
        self._max_ratio = max_ratio
        self._taken = 0
        self._stopped = False

    @property
    def stopped(self) -> bool:
        """True once an anomaly has ended decoding."""
        return self._stopped

    def feed(
        self, data: bytes, stream_start: int, stream_end: int, *, label: str = ""
    ) -> list[Anomaly]:
        """Decode wire bytes that came from stream ``[stream_start, stream_end)``."""
        if self._stopped or not data:
            return []
        decoded: list[bytes] = []
        failure: _CodecError | None = None
        for i in range(0, len(data), _INPUT_STEP):
            step = data[i : i + _INPUT_STEP]
            self._taken += len(step)
            block, failure = self._run(step)
            decoded.append(block)
            if failure is not None:
                break
        block = b"".join(decoded)
        if block:
            self._builder.add(block, stream_start, stream_end, label=label)
        if failure is not None:
            return [self._stop(failure.name, failure.detail, stream_start)]
        return []

    def _run(self, data: bytes) -> tuple[bytes, _CodecError | None]:
        """Push ``data`` through every layer; check the whole-chain ratio.

        Returns what came out of the last layer and the first failure.
        """
        # Every layer may give out no more than the whole chain may, so a
        # nested bomb stops at the ratio limit, not at a layer's own size.
        allowance = min(
            max(RATIO_FLOOR, self._taken * self._max_ratio),
            self._max_output,
        )
        for stage in self._stages:
            stage.max_output = allowance
            data = stage.decode(data)
            if stage.error is not None:
                # Bytes a failing layer gave out still go through the rest.
                rest = self._stages[self._stages.index(stage) + 1 :]
                for later in rest:
                    data = later.decode(data)
                return data, stage.error
            if not data:
                return b"", None
        total = len(self._builder) + len(data)
        if total > RATIO_FLOOR and total > self._taken * self._max_ratio:
            return data, _CodecError(
                "http.decompression_limit",
                f"content codings expanded {self._taken} bytes to {total}, "
                f"over the {self._max_ratio}:1 ratio limit",
            )
        return data, None

    def _stop(self, name: str, detail: str, offset: int) -> Anomaly:
        """End decoding with an anomaly at stream ``offset``."""
        self._stopped = True
        return Anomaly(name, detail, direction=self._direction, stream_offset=offset)

    def gap(self, stream_offset: int, length: int) -> list[Anomaly]:
        """Encoded bytes were not observed: no decoder can step over them."""
        if self._stopped:
            return []
        return [
            self._stop(
                "http.decode_gap",
                f"{length} bytes of the encoded body are missing; decoding stopped",
                stream_offset,
            )
        ]

    def finish(self, stream_offset: int) -> list[Anomaly]:
        """The wire body ended at ``stream_offset``; check every coding ended."""
        if self._stopped or not self._taken:
            return []
        for stage in self._stages:
            if stage.truncated():
                return [
                    self._stop(
                        "http.decode_truncated",
                        f"the {stage.coding} stream ends before its end marker",
                        stream_offset,
                    )
                ]
        return []

    def build(self, *, complete: bool = True) -> Body:
        """The decoded body; incomplete if decoding stopped early."""
        return self._builder.build(complete=complete and not self._stopped)
