"""Side-by-side hex view of a region, in the body coordinates of each side.

Bytes the capture did not observe are shown as ``??`` and never as their
placeholder value.  A long region is cut to :data:`MAX_ROWS` rows per
side; the first row after the cut says how many bytes were left out, and
every view prints that as a line of its own (:func:`left_out_note`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..decoders.body import Body

__all__ = [
    "HexRow",
    "hex_rows",
    "hex_text",
    "hex_column",
    "left_out_note",
    "CONTEXT_BYTES",
    "MAX_ROWS",
]

#: Bytes of context shown before and after a region: one row each way.
CONTEXT_BYTES = 16
#: Rows shown per side; a long region is cut there, with a note.
MAX_ROWS = 8
_WIDTH = 16
# Characters of one rendered row: offset, cells with their marks, text.
_COLUMN = 8 + 2 + _WIDTH * 3 + 2 + _WIDTH + 2


@dataclass(frozen=True, slots=True)
class HexRow:
    """One 16-byte row of one side: offset, hex cells, printable text.

    ``marks`` flags the cells inside the region being shown.
    ``left_out`` counts the body bytes between the row shown before this
    one and this one, which the view does not show (0: none).
    """

    offset: int
    cells: tuple[str, ...]
    text: str
    marks: tuple[bool, ...]
    left_out: int = 0


def _observed(body: Body, i: int) -> bool:
    return not any(a <= i < b for a, b in body.unobserved)


def hex_rows(
    body: Body, start: int, end: int, context: int = CONTEXT_BYTES
) -> list[HexRow]:
    """Rows covering ``[start, end)`` of ``body`` with ``context`` around.

    At most :data:`MAX_ROWS` rows: the first and last halves; the first
    row of the second half carries the count of bytes left out.
    """
    lo = max((start - context) // _WIDTH * _WIDTH, 0)
    hi = min(end + context, len(body))
    rows: list[HexRow] = []
    for row in range(lo, hi, _WIDTH):
        cells = []
        text = []
        marks = []
        for i in range(row, min(row + _WIDTH, hi)):
            if _observed(body, i):
                b = body.data[i]
                cells.append(f"{b:02x}")
                text.append(chr(b) if 32 <= b < 127 else ".")
            else:
                cells.append("??")
                text.append("?")
            marks.append(start <= i < end)
        rows.append(HexRow(row, tuple(cells), "".join(text), tuple(marks)))
    if len(rows) > MAX_ROWS:
        head, tail = rows[: MAX_ROWS // 2], rows[-MAX_ROWS // 2 :]
        skipped = tail[0].offset - head[-1].offset - _WIDTH
        rows = head + [dataclasses.replace(tail[0], left_out=skipped)] + tail[1:]
    return rows


def left_out_note(row: HexRow) -> str:
    """The line a view prints before ``row`` when bytes were left out."""
    lines = row.left_out // _WIDTH
    return (
        f"... {row.left_out:,} bytes ({lines:,} rows) left out, "
        f"{row.offset - row.left_out:08x} to {row.offset - 1:08x} ..."
    )


def _render(row: HexRow | None) -> str:
    if row is None:
        return " " * _COLUMN
    cells = "".join(
        ("*" if mark else " ") + cell
        for cell, mark in zip(row.cells, row.marks, strict=True)
    )
    cells = cells.ljust(_WIDTH * 3)
    return f"{row.offset:08x}  {cells}  |{row.text.ljust(_WIDTH)}|"


def hex_column(body: Body, start: int, end: int) -> list[str]:
    """Lines of a one-column view of ``[start, end)`` of ``body``."""
    lines = []
    for row in hex_rows(body, start, end):
        if row.left_out:
            lines.append(left_out_note(row))
        lines.append(_render(row))
    return lines


def hex_text(
    upstream: Body, ustart: int, uend: int, client: Body, cstart: int, cend: int
) -> list[str]:
    """Lines of a two-column view: upstream (the app's bytes) and client.

    A ``*`` before a byte marks it as inside the region.
    """
    left = hex_rows(upstream, ustart, uend)
    right = hex_rows(client, cstart, cend)
    lines = [f"{'upstream (what the app sent)':<{_COLUMN}}  client (what it got)"]
    for i in range(max(len(left), len(right))):
        a = left[i] if i < len(left) else None
        b = right[i] if i < len(right) else None

        # Bytes left out on either side: a line of its own, in its column.
        if (a is not None and a.left_out) or (b is not None and b.left_out):
            notes = [
                left_out_note(r) if r is not None and r.left_out else "" for r in (a, b)
            ]
            lines.append(f"{notes[0]:<{_COLUMN}}  {notes[1]}".rstrip())
        lines.append(f"{_render(a)}  {_render(b)}".rstrip())
    return lines
