"""Side-by-side hex view of a region, in the body coordinates of each side.

Bytes the capture did not observe are shown as ``??`` and never as their
placeholder value.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..decoders.body import Body

__all__ = ["HexRow", "hex_rows", "hex_text", "CONTEXT_BYTES", "MAX_ROWS"]

#: Bytes of context shown before and after a region: one row each way.
CONTEXT_BYTES = 16
#: Rows shown per side; a long region is cut there, with a note.
MAX_ROWS = 8
_WIDTH = 16


@dataclass(frozen=True, slots=True)
class HexRow:
    """One 16-byte row of one side: offset, hex cells, printable text.

    ``marks`` flags the cells inside the region being shown.
    """

    offset: int
    cells: tuple[str, ...]
    text: str
    marks: tuple[bool, ...]


def _observed(body: Body, i: int) -> bool:
    return not any(a <= i < b for a, b in body.unobserved)


def hex_rows(
    body: Body, start: int, end: int, context: int = CONTEXT_BYTES
) -> list[HexRow]:
    """Rows covering ``[start, end)`` of ``body`` with ``context`` around."""
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
        rows = rows[: MAX_ROWS // 2] + rows[-MAX_ROWS // 2 :]
    return rows


def _render(row: HexRow | None) -> str:
    if row is None:
        return " " * (8 + 2 + _WIDTH * 3 + 18)
    cells = "".join(
        ("*" if mark else " ") + cell
        for cell, mark in zip(row.cells, row.marks, strict=True)
    )
    cells = cells.ljust(_WIDTH * 3)
    return f"{row.offset:08x}  {cells}  |{row.text.ljust(_WIDTH)}|"


def hex_text(
    upstream: Body, ustart: int, uend: int, client: Body, cstart: int, cend: int
) -> list[str]:
    """Lines of a two-column view: upstream (the app's bytes) and client.

    A ``*`` before a byte marks it as inside the region.
    """
    left = hex_rows(upstream, ustart, uend)
    right = hex_rows(client, cstart, cend)
    lines = [f"{'upstream (what the app sent)':<76}  client (what it got)"]
    for i in range(max(len(left), len(right))):
        a = left[i] if i < len(left) else None
        b = right[i] if i < len(right) else None
        lines.append(f"{_render(a)}  {_render(b)}".rstrip())
    return lines
