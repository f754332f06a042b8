"""Align the upstream body with the client's body and list where they differ.

The upstream body is rebuilt from the FastCGI ``FCGI_STDOUT`` records
(FastCGI 1.0 spec, section 6.2); the client body is what the HTTP
decoder got after de-chunking and content-decoding (RFC 9112 section 7,
RFC 9110 section 8.4).  Both are :class:`~fcgiforensics.decoders.body.Body`
objects whose ``unobserved`` ranges hold placeholder bytes.

:func:`align_bodies` returns an :class:`Alignment`: the exact regions
where the client departs from the upstream body, and apart from them
the spans that cannot be decided because one side never observed the
bytes needed to decide.  A placeholder byte is never compared.

How the alignment is found, and why it stays fast on large bodies:

* Equal lengths: compare the bodies block by block at the same offsets
  (the usual damage is bytes overwritten in place).  Only when a long
  run differs is a shifted alignment tried, since one insertion and
  one deletion of the same size also keep the lengths equal.
* Different lengths: strip the common prefix and suffix, then align
  the middle on *anchors*: short byte strings that occur exactly once
  in each side.  The anchors are sampled from one side, searched in the
  other with ``bytes.find`` (C speed), chained in increasing order on
  both sides and extended along their diagonal; the stretches between
  anchors are aligned the same way.  Only a tiny middle, bounded by
  :data:`TINY_MIDDLE_CELLS`, is searched cell by cell.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from ..decoders.body import Body

__all__ = [
    "RegionKind",
    "UndecidableReason",
    "DiffRegion",
    "Alignment",
    "align_bodies",
    "MERGE_GAP_BYTES",
    "COMPARE_BLOCK_BYTES",
    "ANCHOR_BYTES",
    "ANCHORS_PER_PASS",
    "TINY_MIDDLE_CELLS",
    "REALIGN_MIN_BYTES",
]

RegionKind = Literal["replace", "insert", "delete", "truncate"]

#: Why a span went to :attr:`Alignment.undecidable`.
UndecidableReason = Literal[
    "",
    "upstream_unobserved",
    "client_unobserved",
    "both_unobserved",
    "client_incomplete",
    "upstream_incomplete",
]

#: Differing bytes separated by at most this many equal bytes form one
#: region.  Garbage written over a body matches the original by chance
#: now and then (a space, a zero byte); cutting one overwrite into a
#: dozen regions at those bytes would hide its shape.  Eight equal bytes
#: in a row happen by chance about once in 2**64 random positions, so
#: two regions this close are almost surely one incident.
MERGE_GAP_BYTES = 8

#: A match shorter than this between two differences is treated as
#: chance and swallowed into one region (see :data:`MERGE_GAP_BYTES`).
SHORT_MATCH_BYTES = MERGE_GAP_BYTES + 1

#: Bytes compared per slice.  64 KiB slices copy quickly and keep the
#: number of Python-level steps over a 4 MB body near 64.
COMPARE_BLOCK_BYTES = 65536

#: Length of an anchor.  32 random bytes are unique in any body this
#: tool sees; shorter strings repeat too often in text (HTML, JSON).
ANCHOR_BYTES = 32

#: A longer anchor tried when every short one repeats, as in HTML made
#: of many near-identical rows.
LONG_ANCHOR_BYTES = 256

#: Anchors sampled per stretch.  Each costs about two scans of the
#: stretch; eight spread evenly split a stretch into ninths, so a body
#: with a few differences is done after a few levels.
ANCHORS_PER_PASS = 8

#: Upper bound on ``len(upstream middle) * len(client middle)`` for the
#: cell-by-cell search (256 x 256).  It runs in pure Python, about 20 ms
#: at this size; anything larger is left as one region.
TINY_MIDDLE_CELLS = 65536

#: In the equal-length path, a run of differing bytes longer than this
#: may be a shift (an insertion and a deletion of the same size) rather
#: than an overwrite, and a shifted alignment is tried over it.
REALIGN_MIN_BYTES = 64


@dataclass(frozen=True, slots=True)
class DiffRegion:
    """A run where the client body departs from the upstream body.

    ``offset`` and ``length`` are the REGION fields of the JSON report:
    ``offset`` is in upstream body coordinates, ``length`` counts the
    replaced, inserted, deleted or missing bytes.  The two ranges give
    the bytes on each side: ``[upstream_start, upstream_end)`` and
    ``[client_start, client_end)``; one of them is empty for an
    ``insert`` (upstream), ``delete`` or ``truncate`` (client).

    In :attr:`Alignment.regions`, ``observed`` is True and every byte of
    both ranges was seen.  In :attr:`Alignment.undecidable`, ``observed``
    is False, ``reason`` says what was missing, ``kind`` only describes
    the shape of the two ranges (``replace`` when both have bytes, even
    of different lengths) and ``length`` is the longer range.
    """

    offset: int
    length: int
    kind: RegionKind
    upstream_start: int
    upstream_end: int
    client_start: int
    client_end: int
    observed: bool = True
    reason: UndecidableReason = ""


@dataclass(frozen=True, slots=True)
class Alignment:
    """The result of :func:`align_bodies`, both tuples sorted by position."""

    regions: tuple[DiffRegion, ...]
    undecidable: tuple[DiffRegion, ...]

    @property
    def identical(self) -> bool:
        """True when every byte was compared and none differed."""
        return not self.regions and not self.undecidable

    @property
    def differs(self) -> bool:
        """True when at least one observed difference was found."""
        return bool(self.regions)


# A match is a diagonal run: upstream[u:u+n] == client[c:c+n], all seen.
_Match = tuple[int, int, int]


class _Side:
    """One body's bytes and the sorted, merged ranges it did not observe."""

    __slots__ = ("data", "starts", "ends", "complete")

    def __init__(self, body: Body) -> None:
        self.data = body.data
        self.complete = body.complete
        merged: list[tuple[int, int]] = []
        for start, end in sorted(body.unobserved):
            start, end = max(start, 0), min(end, len(body.data))
            if start >= end:
                continue
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        self.starts = [s for s, _ in merged]
        self.ends = [e for _, e in merged]

    def __len__(self) -> int:
        return len(self.data)

    def blind(self, start: int, end: int) -> bool:
        """True when some byte of ``[start, end)`` was not observed."""
        if start >= end:
            return False
        i = bisect.bisect_right(self.ends, start)
        return i < len(self.starts) and self.starts[i] < end

    def seen_until(self, pos: int, limit: int) -> int:
        """End of the observed run from ``pos`` onwards, at most ``limit``."""
        i = bisect.bisect_right(self.starts, pos) - 1
        if i >= 0 and self.ends[i] > pos:
            return pos
        if i + 1 < len(self.starts):
            return min(limit, max(pos, self.starts[i + 1]))
        return limit

    def seen_from(self, pos: int, floor: int) -> int:
        """Start of the observed run that ends at ``pos``, at least ``floor``."""
        i = bisect.bisect_right(self.starts, pos - 1) - 1
        if i >= 0 and self.ends[i] > pos - 1:
            return pos
        if i >= 0:
            return max(floor, min(pos, self.ends[i]))
        return floor

    def blind_pieces(self, start: int, end: int) -> list[tuple[int, int]]:
        """The unobserved ranges clipped to ``[start, end)``."""
        out: list[tuple[int, int]] = []
        i = bisect.bisect_right(self.ends, start)
        while i < len(self.starts) and self.starts[i] < end:
            out.append((max(start, self.starts[i]), min(end, self.ends[i])))
            i += 1
        return out


def align_bodies(upstream: Body, client: Body) -> Alignment:
    """Align ``client`` against ``upstream`` and return where they differ.

    Regions hold only differences between bytes both sides observed.
    Anything that would need an unobserved byte, or the bytes past the
    end of an incomplete body, goes to ``undecidable`` instead.
    """
    up, cl = _Side(upstream), _Side(client)
    builder = _RegionBuilder(up, cl)

    # Step 1: equal lengths keep the identity alignment unless a long
    # differing run is better explained by a shift.
    if len(up) == len(cl):
        builder.diagonal(0, 0, len(up))
        _try_realign(builder)
        return builder.result()

    # Step 2: different lengths.  When either end was not seen, the two
    # ends do not correspond and no common suffix may be taken.
    open_end = not up.complete or not cl.complete
    matches = _find_matches(up, cl, 0, len(up), 0, len(cl), open_end)
    _add_gaps(builder, matches, 0, len(up), 0, len(cl), open_end)
    return builder.result()


class _RegionBuilder:
    """Collects regions and undecidable spans as the alignment is walked."""

    __slots__ = ("up", "cl", "regions", "undecidable")

    def __init__(self, up: _Side, cl: _Side) -> None:
        self.up = up
        self.cl = cl
        self.regions: list[DiffRegion] = []
        self.undecidable: list[DiffRegion] = []

    def result(self) -> Alignment:
        def key(r: DiffRegion) -> tuple[int, int]:
            return (r.upstream_start, r.client_start)

        return Alignment(
            tuple(sorted(self.regions, key=key)),
            tuple(sorted(self.undecidable, key=key)),
        )

    def region(self, a0: int, a1: int, b0: int, b1: int) -> None:
        """Record an observed difference of any shape."""
        self.regions.append(_make(a0, a1, b0, b1, self._kind(a0, a1, b0, b1)))

    def blind(
        self,
        a0: int,
        a1: int,
        b0: int,
        b1: int,
        reason: UndecidableReason = "",
    ) -> None:
        """Record a span that cannot be decided."""
        if a0 == a1 and b0 == b1:
            return
        if not reason:
            u_blind = self.up.blind(a0, a1)
            c_blind = self.cl.blind(b0, b1)
            if u_blind and c_blind:
                reason = "both_unobserved"
            elif u_blind:
                reason = "upstream_unobserved"
            else:
                reason = "client_unobserved"
        kind = self._kind(a0, a1, b0, b1)
        self.undecidable.append(_make(a0, a1, b0, b1, kind, reason))

    def _kind(self, a0: int, a1: int, b0: int, b1: int) -> RegionKind:
        if a0 == a1:
            return "insert"
        if b0 == b1:
            # The client stops here: nothing of it follows.
            if a1 == len(self.up) and b0 == len(self.cl):
                return "truncate"
            return "delete"
        return "replace"

    def diagonal(self, a0: int, b0: int, length: int) -> None:
        """Compare ``length`` bytes at the same relative offsets.

        Bytes either side did not observe become undecidable spans; the
        rest are compared block by block and differing runs recorded.
        """
        blind = sorted(
            [(s - a0, e - a0) for s, e in self.up.blind_pieces(a0, a0 + length)]
            + [(s - b0, e - b0) for s, e in self.cl.blind_pieces(b0, b0 + length)]
        )
        pos = 0
        for start, end in _merge_ranges(blind):
            if start > pos:
                self._compare(a0 + pos, b0 + pos, start - pos)
            self.blind(a0 + start, a0 + end, b0 + start, b0 + end)
            pos = end
        if pos < length:
            self._compare(a0 + pos, b0 + pos, length - pos)

    def _compare(self, a0: int, b0: int, length: int) -> None:
        for start, end in _differing_runs(self.up.data, a0, self.cl.data, b0, length):
            self.regions.append(
                _make(a0 + start, a0 + end, b0 + start, b0 + end, "replace")
            )


def _make(
    a0: int,
    a1: int,
    b0: int,
    b1: int,
    kind: RegionKind,
    reason: UndecidableReason = "",
) -> DiffRegion:
    return DiffRegion(
        offset=a0,
        length=max(a1 - a0, b1 - b0),
        kind=kind,
        upstream_start=a0,
        upstream_end=a1,
        client_start=b0,
        client_end=b1,
        observed=not reason,
        reason=reason,
    )


def _merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in ranges:
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(end, out[-1][1]))
        else:
            out.append((start, end))
    return out


# ---------------------------------------------------------------- bytes


# A differing run, allowing short equal stretches inside it.
_DIFF_RUN = re.compile(
    rb"[^\x00]+(?:\x00{1,%d}[^\x00]+)*" % MERGE_GAP_BYTES,
)


def _xor(x: bytes, y: bytes) -> bytes:
    """Byte-wise XOR of two equal-length strings: zero where they agree."""
    n = len(x)
    value = int.from_bytes(x, "big") ^ int.from_bytes(y, "big")
    return value.to_bytes(n, "big")


def _differing_runs(
    x: bytes, a0: int, y: bytes, b0: int, length: int
) -> list[tuple[int, int]]:
    """Runs ``[start, end)`` (relative) where ``x`` and ``y`` differ.

    Equal blocks are skipped by slice comparison; a differing block is
    XORed and scanned for non-zero runs, both at C speed.  Runs closer
    than :data:`MERGE_GAP_BYTES` are merged, across blocks too.
    """
    runs: list[tuple[int, int]] = []
    pos = 0
    while pos < length:
        k = min(COMPARE_BLOCK_BYTES, length - pos)
        xs = x[a0 + pos : a0 + pos + k]
        ys = y[b0 + pos : b0 + pos + k]
        if xs != ys:
            for m in _DIFF_RUN.finditer(_xor(xs, ys)):
                start, end = pos + m.start(), pos + m.end()
                if runs and start - runs[-1][1] <= MERGE_GAP_BYTES:
                    runs[-1] = (runs[-1][0], end)
                else:
                    runs.append((start, end))
        pos += k
    return runs


def _common_prefix(x: bytes, a: int, y: bytes, b: int, limit: int) -> int:
    """How many bytes ``x[a:]`` and ``y[b:]`` share, at most ``limit``."""
    n = 0
    while n < limit:
        k = min(COMPARE_BLOCK_BYTES, limit - n)
        xs = x[a + n : a + n + k]
        ys = y[b + n : b + n + k]
        if xs == ys:
            n += k
            continue
        diff = _xor(xs, ys)
        return n + len(diff) - len(diff.lstrip(b"\x00"))
    return n


def _common_suffix(x: bytes, a: int, y: bytes, b: int, limit: int) -> int:
    """How many bytes end both ``x[:a]`` and ``y[:b]``, at most ``limit``."""
    n = 0
    while n < limit:
        k = min(COMPARE_BLOCK_BYTES, limit - n)
        xs = x[a - n - k : a - n]
        ys = y[b - n - k : b - n]
        if xs == ys:
            n += k
            continue
        diff = _xor(xs, ys)
        return n + len(diff) - len(diff.rstrip(b"\x00"))
    return n


def _forward(up: _Side, a: int, a1: int, cl: _Side, b: int, b1: int) -> int:
    """Length of the observed, equal run starting at ``(a, b)``."""
    limit = min(up.seen_until(a, a1) - a, cl.seen_until(b, b1) - b)
    return _common_prefix(up.data, a, cl.data, b, limit) if limit > 0 else 0


def _backward(up: _Side, a: int, a0: int, cl: _Side, b: int, b0: int) -> int:
    """Length of the observed, equal run ending at ``(a, b)``."""
    limit = min(a - up.seen_from(a, a0), b - cl.seen_from(b, b0))
    return _common_suffix(up.data, a, cl.data, b, limit) if limit > 0 else 0


# ------------------------------------------------------------- matching


def _find_matches(
    up: _Side,
    cl: _Side,
    a0: int,
    a1: int,
    b0: int,
    b1: int,
    open_end: bool,
    *,
    max_cells: int = TINY_MIDDLE_CELLS,
) -> list[_Match]:
    """Equal, observed diagonal runs between the two ranges, in order.

    ``max_cells`` bounds the middles searched cell by cell (0: none).

    Works on an explicit stack of stretches so that many differences
    cannot exhaust Python's recursion limit.  Every stretch pushed is
    strictly smaller than the one it came from.
    """
    matches: list[_Match] = []
    stack = [(a0, a1, b0, b1, open_end)]
    while stack:
        a0, a1, b0, b1, open_end = stack.pop()

        # Step 1: the common prefix.
        n = _forward(up, a0, a1, cl, b0, b1)
        if n:
            matches.append((a0, b0, n))
            a0, b0 = a0 + n, b0 + n

        # Step 2: the common suffix, when the two ends correspond.
        if not open_end:
            n = _backward(up, a1, a0, cl, b1, b0)
            if n:
                matches.append((a1 - n, b1 - n, n))
                a1, b1 = a1 - n, b1 - n
        if a0 == a1 or b0 == b1:
            continue

        # Step 3: anchors in the middle, or for a tiny middle the
        # longest common run found cell by cell.
        # XXX: a large middle with no anchor at all (wholly rewritten,
        # or one byte value throughout) stays one region, however it
        # might split.
        anchors = _anchor_chain(up, cl, a0, a1, b0, b1)
        if not anchors and (a1 - a0) * (b1 - b0) <= max_cells:
            run = _longest_common_run(up, cl, a0, a1, b0, b1)
            if run is not None:
                anchors = [run]

        # Step 4: extend each anchor along its diagonal, and queue the
        # stretches between anchors.  An anchor already inside the
        # previous extension, or behind it on one side, is dropped.
        ua, cb = a0, b0
        for p, q in anchors:
            if p < ua or q < cb:
                continue
            back = _backward(up, p, ua, cl, q, cb)
            ahead = _forward(up, p, a1, cl, q, b1)
            matches.append((p - back, q - back, back + ahead))
            if p - back > ua or q - back > cb:
                stack.append((ua, p - back, cb, q - back, False))
            ua, cb = p + ahead, q + ahead
        if anchors and (ua < a1 or cb < b1):
            stack.append((ua, a1, cb, b1, open_end))

    matches.sort()
    return matches


def _anchor_chain(
    up: _Side, cl: _Side, a0: int, a1: int, b0: int, b1: int
) -> list[tuple[int, int]]:
    """Anchors ``(p, q)`` with ``up[p:p+k] == cl[q:q+k]``, increasing on both.

    Anchors are sampled from the shorter stretch, so that a long body
    against a short one still finds the short one's place.  A sample
    should occur exactly once in each stretch.  When none does (text
    that repeats with a long period), the occurrence nearest to the
    stretch's start or end diagonal is taken instead: the guess with the
    smallest shift, as regions of the least total size would have it.
    """
    rounds = (
        (ANCHOR_BYTES, False),
        (LONG_ANCHOR_BYTES, False),
        (ANCHOR_BYTES, True),
    )
    for size, nearest in rounds:
        if a1 - a0 <= b1 - b0:
            pairs = _sample(up, a0, a1, cl, b0, b1, size, nearest)
        else:
            swapped = _sample(cl, b0, b1, up, a0, a1, size, nearest)
            pairs = [(p, q) for q, p in swapped]
        if pairs:
            pairs.sort()
            return _increasing_chain(pairs)
    return []


def _sample(
    src: _Side,
    s0: int,
    s1: int,
    dst: _Side,
    d0: int,
    d1: int,
    size: int,
    nearest: bool,
) -> list[tuple[int, int]]:
    """Pairs ``(p, q)``: ``size`` bytes at ``src[p]`` found at ``dst[q]``.

    Unless ``nearest``, the bytes must occur once in each stretch.
    Both copies must have been observed.
    """
    span = s1 - s0
    if span < size or d1 - d0 < size:
        return []
    count = min(ANCHORS_PER_PASS, span // size)
    found: list[tuple[int, int]] = []
    for i in range(count):
        p = s0 + (span - size) * (2 * i + 1) // (2 * count)
        if src.blind(p, p + size):
            continue
        needle = src.data[p : p + size]
        if needle.count(needle[:1]) == size:
            continue  # one byte repeated: never unique where it matters
        if nearest:
            # The expected places on the start and end diagonals.
            expected = (d0 + p - s0, d1 - (s1 - p))
            q = _nearest(dst.data, needle, d0, d1, expected)
        else:
            if src.data.find(needle, s0, s1) != p:
                continue
            if src.data.rfind(needle, s0, s1) != p:
                continue
            q = dst.data.find(needle, d0, d1)
            if q >= 0 and dst.data.rfind(needle, d0, d1) != q:
                continue
        if q < 0 or dst.blind(q, q + size):
            continue
        found.append((p, q))
    return found


def _nearest(
    data: bytes, needle: bytes, start: int, end: int, expected: Sequence[int]
) -> int:
    """The occurrence of ``needle`` in ``[start, end)`` nearest to a guess.

    Returns -1 when there is none.  Each guess costs two searches that
    stop at their first hit.
    """
    best, best_distance = -1, -1
    for guess in expected:
        guess = min(max(guess, start), end)
        after = data.find(needle, guess, end)
        before = data.rfind(needle, start, min(end, guess + len(needle) - 1))
        for q in (after, before):
            if q >= 0 and (best < 0 or abs(q - guess) < best_distance):
                best, best_distance = q, abs(q - guess)
    return best


def _increasing_chain(pairs: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The longest subsequence of ``pairs`` (sorted by p) increasing in q."""
    tails: list[int] = []  # q of the last pair of the best chain of length i+1
    tail_index: list[int] = []
    parent: list[int] = []
    for i, (_, q) in enumerate(pairs):
        j = bisect.bisect_left(tails, q)
        parent.append(tail_index[j - 1] if j else -1)
        if j == len(tails):
            tails.append(q)
            tail_index.append(i)
        else:
            tails[j] = q
            tail_index[j] = i
    chain: list[tuple[int, int]] = []
    i = tail_index[-1] if tail_index else -1
    while i >= 0:
        chain.append(pairs[i])
        i = parent[i]
    chain.reverse()
    return chain


def _longest_common_run(
    up: _Side, cl: _Side, a0: int, a1: int, b0: int, b1: int
) -> tuple[int, int] | None:
    """Start of the longest observed common run of a tiny middle.

    Dynamic programming over every cell, so only for middles within
    :data:`TINY_MIDDLE_CELLS`.  Runs shorter than
    :data:`SHORT_MATCH_BYTES` count as chance and give None.
    """
    # Unobserved bytes get values no byte equals, distinct per side.
    xs = _masked(up, a0, a1, -1)
    ys = _masked(cl, b0, b1, -2)

    # Only cells where the bytes agree can extend a run, so walk each
    # row through the positions of its byte value alone.
    where: dict[int, list[int]] = {}
    for j, yv in enumerate(ys):
        where.setdefault(yv, []).append(j)
    best_len, best_end_x, best_end_y = 0, 0, 0
    prev: dict[int, int] = {}
    for i, xv in enumerate(xs):
        cur: dict[int, int] = {}
        for j in where.get(xv, ()):
            run = prev.get(j - 1, 0) + 1
            cur[j] = run
            if run > best_len:
                best_len, best_end_x, best_end_y = run, i + 1, j + 1
        prev = cur
    if best_len < SHORT_MATCH_BYTES:
        return None
    return a0 + best_end_x - best_len, b0 + best_end_y - best_len


def _masked(side: _Side, start: int, end: int, hole: int) -> list[int]:
    values = list(side.data[start:end])
    for s, e in side.blind_pieces(start, end):
        values[s - start : e - start] = [hole] * (e - s)
    return values


# ------------------------------------------------------------ the walk


def _add_gaps(
    builder: _RegionBuilder,
    matches: list[_Match],
    a0: int,
    a1: int,
    b0: int,
    b1: int,
    open_end: bool,
) -> None:
    """Turn the stretches between matches into regions.

    A match shorter than :data:`SHORT_MATCH_BYTES` between two
    differences is chance: it is dropped and the stretches around it
    become one region.
    """
    kept = [
        m
        for m in matches
        if m[2] >= SHORT_MATCH_BYTES
        or (m[0] == a0 and m[1] == b0)
        or (not open_end and m[0] + m[2] == a1 and m[1] + m[2] == b1)
    ]
    ua, cb = a0, b0
    for p, q, n in kept:
        _gap(builder, ua, p, cb, q)
        ua, cb = p + n, q + n
    if open_end:
        _open_tail(builder, ua, a1, cb, b1)
    else:
        _gap(builder, ua, a1, cb, b1)


def _gap(builder: _RegionBuilder, a0: int, a1: int, b0: int, b1: int) -> None:
    """One stretch between two matches (or a match and a body end)."""
    if a0 == a1 and b0 == b1:
        return

    # Bytes not observed anywhere in the stretch: which of them changed,
    # and even how the stretch lines up, cannot be told.
    if builder.up.blind(a0, a1) or builder.cl.blind(b0, b1):
        builder.blind(a0, a1, b0, b1)
        return

    # The part both sides have is compared in place; what one side has
    # beyond it was inserted or deleted there.
    shared = min(a1 - a0, b1 - b0)
    if shared:
        builder.diagonal(a0, b0, shared)
    if a1 - a0 > shared or b1 - b0 > shared:
        builder.region(a0 + shared, a1, b0 + shared, b1)


def _open_tail(builder: _RegionBuilder, a0: int, a1: int, b0: int, b1: int) -> None:
    """The last stretch when at least one body's end was not seen.

    The bytes both sides have are compared in place.  What one side has
    beyond the other is a difference only if the shorter side is known
    to end there; otherwise it is undecidable.
    """
    up, cl = builder.up, builder.cl
    shared = min(a1 - a0, b1 - b0)
    if shared:
        builder.diagonal(a0, b0, shared)
    a, b = a0 + shared, b0 + shared
    if a < a1:
        # The upstream body goes on where the client's stops.
        if not cl.complete:
            builder.blind(a, a1, b, b, "client_incomplete")
        elif up.blind(a, a1):
            builder.blind(a, a1, b, b)
        else:
            builder.region(a, a1, b, b)
    elif b < b1:
        # The client body goes on where the upstream's stops.
        if not up.complete:
            builder.blind(a, a, b, b1, "upstream_incomplete")
        elif cl.blind(b, b1):
            builder.blind(a, a, b, b1)
        else:
            builder.region(a, a, b, b1)


# --------------------------------------------------------- equal length


def _try_realign(builder: _RegionBuilder) -> None:
    """Replace long in-place differences by a shifted alignment if cheaper.

    An insertion and a deletion of the same size keep the lengths equal
    but make every byte between them differ in place.  The window from
    the first to the last long run is aligned with anchors; the result
    is kept only if it accounts for fewer bytes.
    """
    long_runs = [r for r in builder.regions if r.length > REALIGN_MIN_BYTES]
    if not long_runs:
        return
    start = long_runs[0].upstream_start
    end = long_runs[-1].upstream_end

    def inside(r: DiffRegion) -> bool:
        return start <= r.upstream_start and r.upstream_end <= end

    trial = _RegionBuilder(builder.up, builder.cl)
    # A shift leaves long equal runs on another diagonal, which anchors
    # find; the cell-by-cell search would only comb through garbage.
    matches = _find_matches(
        builder.up, builder.cl, start, end, start, end, False, max_cells=0
    )
    _add_gaps(trial, matches, start, end, start, end, False)

    before = _cost(r for r in builder.regions + builder.undecidable if inside(r))
    after = _cost(trial.regions + trial.undecidable)
    if after < before:
        builder.regions = [r for r in builder.regions if not inside(r)]
        builder.undecidable = [r for r in builder.undecidable if not inside(r)]
        builder.regions += trial.regions
        builder.undecidable += trial.undecidable


def _cost(regions: Iterable[DiffRegion]) -> int:
    return sum(r.length for r in regions)
