"""A rebuilt message body, with what the capture did not show kept apart.

Both decoders (HTTP/1.x and FastCGI) build a :class:`Body`: the decoded
bytes, the ranges of it that were never observed, and a map from body
offsets back to TCP stream offsets, so every byte can be traced to the
frames that carried it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

__all__ = ["BodyPiece", "Body", "BodyBuilder"]


@dataclass(frozen=True, slots=True)
class BodyPiece:
    """Body bytes ``[body_start, body_end)`` came from stream bytes
    ``[stream_start, stream_end)``.

    For identity pieces (plain, de-chunked, FastCGI content) both ranges
    have the same length and map byte for byte.  For content-decoded
    pieces (gzip...) the map is coarse: every body byte of the piece came
    from somewhere in the stream range.  ``label`` names the wire unit,
    such as ``"chunk 3"`` or ``"record 64"``.
    """

    body_start: int
    body_end: int
    stream_start: int
    stream_end: int
    exact: bool = True
    label: str = ""


@dataclass(slots=True)
class Body:
    """Decoded body bytes plus the evidence of how they were rebuilt.

    ``data`` holds placeholder bytes (zero) inside each ``unobserved``
    range, so that offsets stay true; those bytes were *not* seen and must
    never be compared or shown as content.  ``complete`` is False when the
    end of the body was not seen (its true length may be larger).
    """

    data: bytes = b""
    unobserved: list[tuple[int, int]] = field(default_factory=list)
    pieces: list[BodyPiece] = field(default_factory=list)
    complete: bool = True
    released_length: int | None = None

    def __len__(self) -> int:
        if self.released_length is not None:
            return self.released_length
        return len(self.data)

    @property
    def released(self) -> bool:
        """True once :meth:`release` dropped the bytes (metadata stays)."""
        return self.released_length is not None

    def release(self) -> None:
        """Drop the bytes and their map, keeping length and unobserved ranges.

        A long run calls this on bodies already judged, so that memory
        follows the exchanges in flight rather than the capture's size.
        """
        if self.released_length is None:
            self.released_length = len(self.data)
            self.data = b""
            self.pieces = []

    @property
    def fully_observed(self) -> bool:
        """True when every byte of ``data`` was seen in the capture."""
        return not self.unobserved

    def observed(self, start: int, end: int) -> bool:
        """True when no byte of ``[start, end)`` is unobserved."""
        return not any(u0 < end and start < u1 for u0, u1 in self.unobserved)

    def stream_range(self, start: int, end: int) -> tuple[int, int] | None:
        """The stream offsets that carried body bytes ``[start, end)``.

        Returns None when no piece covers the range (unobserved bytes).
        """
        starts = [p.body_start for p in self.pieces]
        i = max(bisect.bisect_right(starts, start) - 1, 0)
        lo: int | None = None
        hi: int | None = None
        for piece in self.pieces[i:]:
            if piece.body_start >= end:
                break
            if piece.body_end <= start:
                continue
            if piece.exact:
                s0 = piece.stream_start + max(start - piece.body_start, 0)
                s1 = piece.stream_start + min(end, piece.body_end) - piece.body_start
            else:
                s0, s1 = piece.stream_start, piece.stream_end
            lo = s0 if lo is None else min(lo, s0)
            hi = s1 if hi is None else max(hi, s1)
        if lo is None or hi is None:
            return None
        return lo, hi

    def labels(self, start: int, end: int) -> list[str]:
        """The wire units (chunks, records...) that carried ``[start, end)``."""
        return [
            p.label
            for p in self.pieces
            if p.body_start < end and start < p.body_end and p.label
        ]


class BodyBuilder:
    """Accumulates a :class:`Body` piece by piece without quadratic copies."""

    __slots__ = ("_parts", "_length", "_unobserved", "_pieces")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._length = 0
        self._unobserved: list[tuple[int, int]] = []
        self._pieces: list[BodyPiece] = []

    def __len__(self) -> int:
        return self._length

    @property
    def fully_observed(self) -> bool:
        """True while every byte added so far was observed."""
        return not self._unobserved

    def add(
        self,
        data: bytes,
        stream_start: int,
        stream_end: int | None = None,
        *,
        label: str = "",
    ) -> None:
        """Append observed bytes that came from ``stream_start`` onwards.

        Give ``stream_end`` only for content-decoded bytes, whose stream
        range differs in length from ``data`` (the map is then coarse).
        """
        if not data and stream_end is None:
            return
        exact = stream_end is None
        end = stream_start + len(data) if stream_end is None else stream_end
        start = self._length
        self._parts.append(data)
        self._length += len(data)
        self._pieces.append(
            BodyPiece(start, self._length, stream_start, end, exact, label)
        )

    def add_unobserved(self, length: int) -> None:
        """Append ``length`` bytes that the capture did not show."""
        if length <= 0:
            return
        start = self._length
        self._parts.append(bytes(length))
        self._length += length
        if self._unobserved and self._unobserved[-1][1] == start:
            self._unobserved[-1] = (self._unobserved[-1][0], self._length)
        else:
            self._unobserved.append((start, self._length))

    def build(self, *, complete: bool = True) -> Body:
        """The finished body; the builder may be dropped afterwards."""
        return Body(
            b"".join(self._parts),
            list(self._unobserved),
            list(self._pieces),
            complete,
        )
