"""HTML fragments for notebooks and for the ``--html`` report.

Everything here returns text; nothing is fetched or linked from the
network.  Every value from a capture is escaped, since URIs and body
bytes are the peer's choice.  Marked bytes are tinted *and* bold *and*
underlined, so the mark survives printing and colour blindness.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from matplotlib.figure import Figure

from ..analysis import Analysis, Exchange, Side
from ..frames import format_frames
from ..reports.hexview import HexRow, hex_column, hex_rows, hex_text, left_out_note
from ..reports.json_report import wireshark_filter
from .figures import byte_view, region_ranges
from .frames import as_analysis, find_exchange

__all__ = [
    "STYLE",
    "figure_png_base64",
    "figure_img",
    "summary_html",
    "exchange_html",
    "hex_html",
    "ByteView",
]

#: CSS shared by the notebook fragments and the HTML report.
STYLE = """
.fcgif { font-family: system-ui, sans-serif; font-size: 13px; }
.fcgif table { border-collapse: collapse; margin: 4px 0 10px; }
.fcgif th, .fcgif td { border: 1px solid #bbb; padding: 2px 6px;
  text-align: left; vertical-align: top; }
.fcgif th { background: #eee; }
.fcgif .corrupted { font-weight: bold; }
.fcgif .hex { font-family: ui-monospace, monospace; font-size: 12px;
  white-space: pre; border: none; }
.fcgif .hex td { border: none; padding: 0 1px; }
.fcgif mark { background: #fbe7a1; color: #000; font-weight: bold;
  text-decoration: underline; }
.fcgif .unseen { color: #777; font-style: italic; }
.fcgif .sides { display: flex; gap: 24px; flex-wrap: wrap; }
.fcgif .gap-row td { color: #777; }
"""

#: Resolution of embedded PNGs: sharp enough on a laptop screen, a few
#: tens of kB per figure.
PNG_DPI = 110


def figure_png_base64(fig: Figure, dpi: int = PNG_DPI) -> str:
    """``fig`` as a base64 PNG, without the software name matplotlib adds."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def figure_img(fig: Figure, alt: str) -> str:
    """An ``<img>`` holding ``fig`` inline (a data: URI, no file, no URL)."""
    data = figure_png_base64(fig)
    return (
        f'<img alt="{html.escape(alt)}" '
        f'src="data:image/png;base64,{data}" style="max-width: 100%">'
    )


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _table(head: list[str], rows: list[list[str]], raw: bool = False) -> str:
    """A table; cells are escaped unless ``raw`` (already HTML)."""
    out = ["<table><tr>"]
    out += [f"<th>{_e(h)}</th>" for h in head]
    out.append("</tr>")
    for row in rows:
        cells = row if raw else [_e(c) for c in row]
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


# -- summary --------------------------------------------------------------


def summary_html(analysis: Analysis) -> str:
    """The counts line and one table row per exchange."""
    analysis = as_analysis(analysis)
    s = analysis.summary()
    line = (
        f"<p><b>{s['exchanges']} exchanges</b>: {s['ok']} ok, "
        f"<span class=corrupted>{s['corrupted']} corrupted</span>, "
        f"{s['incomplete']} incomplete, {s['unmatched']} unmatched</p>"
    )
    rows: list[list[str]] = []
    for ex in analysis.exchanges:
        side = ex.client or ex.upstream
        verdict = _e(ex.verdict)
        if ex.verdict == "corrupted":
            verdict = f"<span class=corrupted>{verdict.upper()}</span>"
        rows.append(
            [
                _e(ex.id),
                verdict,
                _e(ex.hop or ""),
                _e(side.status if side else ""),
                _e(f"{len(side.body):,}" if side else ""),
                _e(f"{ex.method} {ex.uri}"),
                _e(len(ex.attribution.regions)),
            ]
        )
    table = _table(
        ["id", "verdict", "hop", "status", "bytes", "request", "regions"],
        rows,
        raw=True,
    )
    return f'<div class="fcgif">{line}{table}</div>'


# -- one exchange ---------------------------------------------------------


def _side_row(label: str, side: Side | None) -> list[str]:
    if side is None:
        return [label, "not seen on this leg", "", "", "", ""]
    frames = ""
    if side.first_frame is not None and side.last_frame is not None:
        frames = (
            f"{format_frames([side.first_frame])} to {format_frames([side.last_frame])}"
        )
    rid = f" (request id {side.request_id})" if side.request_id is not None else ""
    unseen = sum(b - a for a, b in side.body.unobserved)
    return [
        label,
        side.connection.label() + rid,
        str(side.status if side.status is not None else "?"),
        f"{len(side.body):,}",
        frames,
        f"{unseen:,}",
    ]


def exchange_html(
    analysis: Analysis, exchange_id: int, *, hex_views: bool = True
) -> str:
    """One exchange: sides, evidence sentences, regions and hex views."""
    analysis = as_analysis(analysis)
    ex = find_exchange(analysis, exchange_id)
    hop = f", by the {ex.hop}" if ex.hop else ""
    parts = [
        f"<h3>exchange {ex.id}: {_e(ex.method)} {_e(ex.uri)}: "
        f"{_e(ex.verdict)}{_e(hop)}</h3>",
        _table(
            ["leg", "connection", "status", "body bytes", "frames", "unobserved"],
            [_side_row("client", ex.client), _side_row("upstream", ex.upstream)],
        ),
        "<ul>"
        + "".join(f"<li>{_e(s)}</li>" for s in ex.attribution.evidence)
        + "</ul>",
    ]
    if ex.attribution.regions:
        rows = []
        for n, r in enumerate(ex.attribution.regions, start=1):
            rows.append(
                [
                    str(n),
                    r.kind,
                    f"{r.offset:,}",
                    f"{r.length:,}",
                    wireshark_filter(r.client_frames) or "-",
                    wireshark_filter(r.upstream_frames) or "-",
                    ", ".join(r.records),
                ]
            )
        parts.append(
            _table(
                [
                    "region",
                    "kind",
                    "offset",
                    "length",
                    "client frames (filter)",
                    "upstream frames (filter)",
                    "FastCGI records",
                ],
                rows,
            )
        )
    if hex_views:
        for n in range(len(ex.attribution.regions)):
            parts.append(hex_html(analysis, ex.id, n))
    return '<div class="fcgif">' + "".join(parts) + "</div>"


# -- hex views ------------------------------------------------------------


def _hex_table(title: str, rows: list[HexRow]) -> str:
    out = [f'<div><b>{_e(title)}</b><table class="hex">']
    for row in rows:
        if row.left_out:
            note = _e(left_out_note(row))
            out.append(f'<tr class="gap-row"><td colspan="3">{note}</td></tr>')
        cells = []
        text = []
        for cell, char, mark in zip(row.cells, row.text, row.marks, strict=True):
            c = _e(cell)
            t = _e(char)
            if cell == "??":
                c = f"<span class=unseen>{c}</span>"
                t = f"<span class=unseen>{t}</span>"
            if mark:
                c, t = f"<mark>{c}</mark>", f"<mark>{t}</mark>"
            cells.append(c)
            text.append(t)
        out.append(
            f"<tr><td>{row.offset:08x}</td><td>{' '.join(cells)}</td>"
            f"<td>|{''.join(text)}|</td></tr>"
        )
    out.append("</table></div>")
    return "".join(out)


def hex_html(analysis: Analysis, exchange_id: int, region: int = 0) -> str:
    """The region at position ``region`` (from 0) of an exchange as two
    hex tables side by side; its heading gives the region's number."""
    analysis = as_analysis(analysis)
    ex = find_exchange(analysis, exchange_id)
    if not 0 <= region < len(ex.attribution.regions):
        raise IndexError(f"exchange {exchange_id} has no region at position {region}")
    ranges = region_ranges(ex, region)
    r = ex.attribution.regions[region]
    tables = []
    if ex.upstream is not None and ranges.upstream is not None:
        rows = hex_rows(ex.upstream.body, *ranges.upstream)
        tables.append(_hex_table("upstream (what the app sent)", rows))
    if ex.client is not None and ranges.client is not None:
        rows = hex_rows(ex.client.body, *ranges.client)
        tables.append(_hex_table("client (what it got)", rows))
    head = (
        f"<p>region {region + 1}: {_e(r.kind)} of {r.length:,} bytes at body "
        f"offset {r.offset:,}; marked bytes are in the region, "
        f"<span class=unseen>??</span> bytes were not captured.</p>"
    )
    return (
        f'<div class="fcgif">{head}<div class="sides">'
        + "".join(tables)
        + "</div></div>"
    )


class ByteView:
    """One region's bytes on both legs, rich in a notebook.

    A notebook shows it as HTML tables; ``str()`` gives the text view of
    the ``diff`` report; :meth:`figure` draws it with matplotlib.
    ``region`` is the region's position (from 0) in the exchange's list;
    :attr:`number` is the number the reports print.
    """

    def __init__(self, analysis: Analysis, exchange_id: int, region: int = 0):
        self.analysis = as_analysis(analysis)
        self.exchange: Exchange = find_exchange(self.analysis, exchange_id)
        if not 0 <= region < len(self.exchange.attribution.regions):
            raise IndexError(
                f"exchange {exchange_id} has no region at position {region}"
            )
        self.region = region

    def _repr_html_(self) -> str:
        return (
            "<style>"
            + STYLE
            + "</style>"
            + hex_html(self.analysis, self.exchange.id, self.region)
        )

    def __str__(self) -> str:
        ex = self.exchange
        ranges = region_ranges(ex, self.region)
        if ex.upstream is None or ex.client is None:
            side = ex.upstream or ex.client
            span = ranges.upstream or ranges.client
            assert side is not None and span is not None
            return "\n".join(hex_column(side.body, *span))
        assert ranges.upstream is not None and ranges.client is not None
        return "\n".join(
            hex_text(ex.upstream.body, *ranges.upstream, ex.client.body, *ranges.client)
        )

    def __repr__(self) -> str:
        return f"<ByteView exchange {self.exchange.id} region {self.number}>"

    @property
    def number(self) -> int:
        """The region's number, from 1, as the text report prints it."""
        return self.region + 1

    def figure(self) -> Figure:
        """The same view as a matplotlib Figure (for print or a file)."""
        return byte_view(self.analysis, self.exchange.id, self.region)

    def _repr_mimebundle_(self, **_: Any) -> dict[str, str]:
        return {"text/html": self._repr_html_(), "text/plain": str(self)}
