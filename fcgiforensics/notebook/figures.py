"""matplotlib figures of an analysis: each function returns a Figure.

The figures are built without pyplot, so nothing is shown or kept in a
global figure list: a notebook displays the returned Figure, a script
saves it.  They must read in black and white and for colour-blind
readers: colours come from the Okabe-Ito palette and every category
also has its own hatch or marker.  Artists that stand for evidence carry
a ``gid`` (``region:<exchange>:<n>``, ``missing:<exchange>:<n>`` for
the bytes a cut body lacks, ``unobserved:...``, ``gap``, ``conflict``,
``record``, ``late``), so tests and users can find them.

Regions are named by their number, from 1, as the text report prints
them (``region:2:1`` is the first region of exchange 2).  The functions
here take a region's *position* in ``Exchange.attribution.regions``
(from 0), as Python lists do;
:class:`~fcgiforensics.notebook.Investigation` takes the number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter

from ..analysis import Analysis, Exchange
from ..decoders.base import Direction
from ..decoders.body import Body
from ..decoders.fastcgi import FcgiType
from ..reports.hexview import HexRow, hex_rows, left_out_note
from .frames import as_analysis, find_exchange, packets_frame, response_spans

__all__ = [
    "PALETTE",
    "HOP_STYLE",
    "MAX_MAP_ROWS",
    "MAX_RECORD_MARKS",
    "corruption_map",
    "timeline",
    "byte_view",
    "region_ranges",
    "RegionRanges",
]

#: Okabe & Ito's palette, distinguishable under the common colour
#: vision deficiencies.
PALETTE = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
    "grey": "#999999",
}

#: How a region is drawn, by the hop that damaged it: colour and hatch.
HOP_STYLE: dict[str | None, tuple[str, str]] = {
    "proxy": (PALETTE["vermillion"], "xxx"),
    "app": (PALETTE["blue"], "\\\\\\"),
    None: (PALETTE["purple"], "ooo"),
}
_UNOBSERVED_HATCH = "///"
_MISSING_HATCH = "..."

#: Exchanges drawn by corruption_map; a row is about a fifth of an inch,
#: and a figure taller than this is no longer read as one picture.
MAX_MAP_ROWS = 200

#: FastCGI record headers ticked by timeline; a plot is about 400 points
#: tall, so more ticks than that merge into a solid bar that tells
#: nothing and hides the frames.
MAX_RECORD_MARKS = 400

# Regions of one row labelled with their offset; more would overlap.
_MAX_MAP_LABELS = 3

# A region shorter than this fraction of the axis is widened on screen
# (never in the data) so that a 200-byte region in a 1 MB body shows.
_MIN_VISIBLE = 0.006


def _bytes_label(n: float, _pos: object = None) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:g} {unit}"
    return f"{n:g} B"


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    fig.set_facecolor("white")
    return fig


# -- where a region lies on each side -------------------------------------


@dataclass(frozen=True, slots=True)
class RegionRanges:
    """Body ranges ``[start, end)`` a region covers on each side."""

    upstream: tuple[int, int] | None
    client: tuple[int, int] | None


def region_ranges(ex: Exchange, index: int) -> RegionRanges:
    """Where region ``index`` of ``ex`` lies in each side's body.

    An app-side region located only by an offset has the same range on
    both sides, clipped to each body.
    """
    evidence = ex.attribution.regions[index]
    diff = evidence.region
    if diff is not None:
        return RegionRanges(
            (diff.upstream_start, diff.upstream_end),
            (diff.client_start, diff.client_end),
        )
    start, end = evidence.offset, evidence.offset + evidence.length

    def clip(body: Body | None) -> tuple[int, int] | None:
        if body is None:
            return None
        return min(start, len(body)), min(end, len(body))

    return RegionRanges(
        clip(ex.upstream.body if ex.upstream else None),
        clip(ex.client.body if ex.client else None),
    )


# -- corruption map -------------------------------------------------------


def _row_label(ex: Exchange) -> str:
    uri = ex.uri or "?"
    if len(uri) > 40:
        uri = uri[:37] + "..."
    hop = f", {ex.hop}" if ex.hop else ""
    return f"#{ex.id} {ex.method or '?'} {uri} ({ex.verdict}{hop})"


def corruption_map(analysis: Analysis, *, only_damaged: bool = False) -> Figure:
    """One row per exchange: its body from offset 0, regions by hop.

    Each row is the body as long as its longer side; regions are drawn
    with the colour and hatch of their hop, and body ranges a capture did
    not observe (on either leg) are hatched in grey, since nothing can be
    said about them.  ``only_damaged`` keeps the corrupted and incomplete
    exchanges.  At most :data:`MAX_MAP_ROWS` rows are drawn.
    """
    analysis = as_analysis(analysis)
    exchanges = [
        ex
        for ex in analysis.exchanges
        if not only_damaged or ex.verdict in ("corrupted", "incomplete")
    ]
    dropped = max(len(exchanges) - MAX_MAP_ROWS, 0)
    exchanges = exchanges[:MAX_MAP_ROWS]
    fig = _new_figure(10, 1.2 + 0.35 * max(len(exchanges), 1))
    ax = fig.add_subplot()
    lengths = [
        max((len(s.body) for s in (ex.client, ex.upstream) if s), default=0)
        for ex in exchanges
    ]
    widest = max(lengths, default=0) or 1
    least = widest * _MIN_VISIBLE

    for row, (ex, length) in enumerate(zip(exchanges, lengths, strict=True)):
        # Step 1: the body itself, a plain outlined bar.
        ax.add_patch(
            Rectangle(
                (0, row - 0.3),
                length,
                0.6,
                facecolor="#f2f2f2",
                edgecolor=PALETTE["black"],
                linewidth=0.6,
                gid=f"body:{ex.id}",
            )
        )

        # Step 2: what a capture lacks, on either side.
        for leg, side in (("client", ex.client), ("upstream", ex.upstream)):
            if side is None:
                continue
            for start, end in side.body.unobserved:
                ax.add_patch(
                    Rectangle(
                        (start, row - 0.3),
                        max(end - start, least),
                        0.6,
                        facecolor="white",
                        edgecolor=PALETTE["grey"],
                        hatch=_UNOBSERVED_HATCH,
                        linewidth=0.6,
                        gid=f"unobserved:{ex.id}:{leg}",
                    )
                )

        # Step 3: the regions, over everything else.
        colour, hatch = HOP_STYLE.get(ex.hop, HOP_STYLE[None])
        for n, region in enumerate(ex.attribution.regions):
            ax.add_patch(
                Rectangle(
                    (region.offset, row - 0.4),
                    max(region.length, least),
                    0.8,
                    facecolor=colour,
                    edgecolor=PALETTE["black"],
                    hatch=hatch,
                    linewidth=0.8,
                    alpha=0.9,
                    gid=f"region:{ex.id}:{n + 1}",
                )
            )
            if n < _MAX_MAP_LABELS:
                ax.annotate(
                    f"{region.offset:,}",
                    (region.offset, row - 0.4),
                    xytext=(2, 1),
                    textcoords="offset points",
                    fontsize=7,
                    va="bottom",
                )

    ax.set_xlim(0, widest * 1.01)
    ax.set_ylim(len(exchanges) - 0.5, -0.5)
    ax.set_yticks(range(len(exchanges)))
    ax.set_yticklabels([_row_label(ex) for ex in exchanges], fontsize=8)
    ax.xaxis.set_major_formatter(FuncFormatter(_bytes_label))
    ax.set_xlabel("offset in the decoded body")
    title = "Where each response body differs between the legs"
    if dropped:
        title += f" (first {MAX_MAP_ROWS} exchanges; {dropped} more not drawn)"
    ax.set_title(title, fontsize=10)
    handles = [
        Patch(
            facecolor=HOP_STYLE[hop][0],
            hatch=HOP_STYLE[hop][1],
            edgecolor=PALETTE["black"],
            label=label,
        )
        for hop, label in (("proxy", "damaged by the proxy"), ("app", "by the app"))
    ]
    handles.append(
        Patch(
            facecolor="white",
            edgecolor=PALETTE["grey"],
            hatch=_UNOBSERVED_HATCH,
            label="not in the capture",
        )
    )
    fig.legend(
        handles=handles, loc="outside lower center", ncols=3, fontsize=8, frameon=False
    )
    return fig


# -- timeline -------------------------------------------------------------

_LEG_TITLES = {
    "client": "client leg (HTTP, nginx to client)",
    "upstream": "upstream leg (FastCGI, app to nginx)",
}


def _draw_leg(
    ax: Axes,
    analysis: Analysis,
    ex: Exchange,
    leg: str,
    origin: int,
    zoom: int | None,
) -> tuple[float, float] | None:
    """Draw one leg's response direction; return the zoomed y range."""
    packets = packets_frame(analysis, ex.id)
    rows = packets[
        (packets["leg"] == leg) & (packets["direction"] == Direction.TO_CLIENT.label)
    ]
    data = rows[rows["kind"] == "data"]
    ms = (data["time"].astype("int64") - origin) / 1e6

    # Segments, tcptrace style: a vertical stroke per frame from its
    # first to its last byte, with a marker at the top.
    lines = [
        [(t, s), (t, s + n)]
        for t, s, n in zip(ms, data["stream_offset"], data["length"], strict=True)
    ]
    ax.add_collection(
        LineCollection(lines, colors=PALETTE["blue"], linewidths=1.2, gid="segments")
    )
    on_time = data["late"] == False  # noqa: E712 (nullable boolean)
    top = data["stream_offset"] + data["length"]
    ax.plot(
        ms[on_time],
        top[on_time],
        linestyle="none",
        marker=".",
        color=PALETTE["blue"],
        markersize=4,
        label="frame (top = last byte)",
    )
    if (~on_time).any():
        ax.plot(
            ms[~on_time],
            top[~on_time],
            linestyle="none",
            marker="^",
            color=PALETTE["orange"],
            markeredgecolor=PALETTE["black"],
            markersize=7,
            label="late frame (retransmission)",
            gid="late",
        )

    # Copies of bytes already carried, unchanged: where they fell.
    copies = rows[rows["kind"] == "copy"]
    if len(copies):
        ax.plot(
            (copies["time"].astype("int64") - origin) / 1e6,
            copies["stream_offset"] + copies["length"],
            linestyle="none",
            marker="v",
            color=PALETTE["orange"],
            markerfacecolor="none",
            markersize=6,
            label="copy of bytes already carried",
            gid="copies",
        )

    # Gaps: the stream range the capture lacks, hatched across the plot.
    for _, gap in rows[rows["kind"] == "gap"].iterrows():
        ax.axhspan(
            gap["stream_offset"],
            gap["stream_offset"] + gap["length"],
            facecolor="none",
            edgecolor=PALETTE["grey"],
            hatch=_UNOBSERVED_HATCH,
            linewidth=0.5,
            gid="gap",
            label=f"gap ({gap['gap_reason']})",
        )

    # Conflicting copies: where a later copy carried other bytes.
    conflicts = rows[rows["kind"] == "conflict"]
    if len(conflicts):
        cms = (conflicts["time"].astype("int64") - origin) / 1e6
        ax.plot(
            cms,
            conflicts["stream_offset"],
            linestyle="none",
            marker="X",
            markersize=9,
            color=PALETTE["vermillion"],
            markeredgecolor=PALETTE["black"],
            gid="conflict",
            label="conflicting copy (discarded)",
        )

    # FastCGI record boundaries (spec section 3.3) on the upstream leg:
    # a tick where each record header starts, at the time of its frame.
    if leg == "upstream" and ex.fcgi is not None:
        half = ex.fcgi.connection.to_client
        marks = [
            (half.time_at(r.stream_offset), r.stream_offset)
            for r in ex.fcgi.request.records
            if r.direction is Direction.TO_CLIENT
        ]
        known = [(t, s) for t, s in marks if t is not None]
        if 0 < len(known) <= MAX_RECORD_MARKS:
            ax.plot(
                [(t - origin) / 1e6 for t, _ in known],
                [s for _, s in known],
                linestyle="none",
                marker="_",
                markersize=10,
                markeredgewidth=1.2,
                color=PALETTE["green"],
                gid="record",
                label="FastCGI record header",
            )

    # The corrupted regions, mapped from body to stream offsets.
    span_y: tuple[float, float] | None = None
    side = ex.client if leg == "client" else ex.upstream
    if side is not None:
        for n in range(len(ex.attribution.regions)):
            drawn = _draw_region(ax, ex, leg, side.body, n, data, ms)
            if drawn is not None and n == zoom:
                span_y = drawn

    ax.set_title(_LEG_TITLES[leg], fontsize=9, loc="left")
    ax.yaxis.set_major_formatter(FuncFormatter(_bytes_label))
    ax.set_ylabel("stream offset")
    ax.autoscale_view()
    return span_y


def _frame_labels(
    ax: Axes, data: Any, ms: Any, lo: float, hi: float, at: float
) -> None:
    """Name the frames that carried stream bytes ``[lo, hi)``, as
    Wireshark numbers them, at height ``at``."""
    hit = data[
        (data["stream_offset"] < hi) & (data["stream_offset"] + data["length"] > lo)
    ]
    for t, frame in zip(ms[hit.index], hit["frame"], strict=True):
        ax.annotate(
            f"frame {frame}",
            (t, at),
            xytext=(4, 6),
            textcoords="offset points",
            fontsize=7,
        )


def _empty_body_start(ex: Exchange, leg: str) -> int | None:
    """The stream offset where an empty body would have begun."""
    if leg == "client":
        if ex.http is None or ex.http.exchange.response is None:
            return None
        return ex.http.exchange.response.head_end
    if ex.fcgi is None:
        return None
    # An empty body: all STDOUT content was the CGI header block, so the
    # body would have begun where the last STDOUT content ends.
    ends = [
        r.content_offset + r.content_length
        for r in ex.fcgi.request.records
        if r.direction is Direction.TO_CLIENT
        and r.type is FcgiType.STDOUT
        and r.content_length
    ]
    return max(ends) if ends else None


def _stream_point(body: Body, offset: int) -> int | None:
    """The stream offset of the boundary just before body byte ``offset``
    (just after the last byte when ``offset`` is the body's length).

    None when the bytes on both sides of the boundary were not observed,
    or the body is empty.
    """
    if offset < len(body):
        span = body.stream_range(offset, offset + 1)
        if span is not None:
            return span[0]
    if 0 < offset <= len(body):
        span = body.stream_range(offset - 1, offset)
        if span is not None:
            return span[1]
    return None


def _draw_region(
    ax: Axes,
    ex: Exchange,
    leg: str,
    body: Body,
    index: int,
    data: Any,
    ms: Any,
) -> tuple[float, float] | None:
    """Draw region ``index`` on one leg; return the stream range drawn.

    A region that covers bytes of this leg is a band over their stream
    offsets.  One that covers none here (the bytes the other leg has
    more, a cut body) is a line at the stream offset between the bytes
    around it: solid where the body stops, dashed inside the body.  A
    truncation of known size adds a hatched band from the stop to where
    the missing bytes would have ended.
    """
    ranges = region_ranges(ex, index)
    body_range = ranges.client if leg == "client" else ranges.upstream
    if body_range is None:
        return None
    evidence = ex.attribution.regions[index]
    number = index + 1
    gid = f"region:{ex.id}:{number}"
    colour, hatch = HOP_STYLE.get(ex.hop, HOP_STYLE[None])
    start, end = body_range

    # Step 1: bytes of this leg: a band over the stream range that carried
    # them (None: the capture did not see them).
    if end > start:
        stream = body.stream_range(start, end)
        if stream is None:
            return None
        ax.axhspan(
            stream[0],
            stream[1],
            facecolor=colour,
            alpha=0.35,
            hatch=hatch,
            edgecolor=colour,
            gid=gid,
            label=f"region {number} ({evidence.kind}): body bytes "
            f"{start:,}-{end - 1:,}",
        )
        ax.axhline(stream[0], color=colour, linewidth=1.5, linestyle="--")
        _frame_labels(ax, data, ms, stream[0], stream[1], stream[1])
        return float(stream[0]), float(stream[1])

    # Step 2: no byte here: a line where the bytes are missing, or
    # where the other leg has extra ones.
    point = _stream_point(body, start) if len(body) else _empty_body_start(ex, leg)
    if point is None:
        return None
    stops = start >= len(body)
    if stops:
        what = f"body stops at {start:,}"
    elif not evidence.length:
        what = f"damage at {start:,}, size not known"
    elif evidence.kind == "insert":
        what = f"the other leg has {evidence.length:,} extra bytes here"
    else:
        what = f"{evidence.length:,} bytes missing here"
    ax.axhline(
        point,
        color=colour,
        linewidth=2.0,
        linestyle="-" if stops else "--",
        gid=gid,
        label=f"region {number} ({evidence.kind}): {what}",
    )
    ax.annotate(
        f"region {number}: {what}",
        (1.0, point),
        xycoords=("axes fraction", "data"),
        xytext=(-4, 3),
        textcoords="offset points",
        ha="right",
        fontsize=7,
        color=PALETTE["black"],
    )
    _frame_labels(ax, data, ms, max(point - 1, 0), point + 1, point)
    top = float(point)

    # Step 3: a cut body of known size: the stream range its missing bytes
    # would have taken (as many stream bytes as body bytes: for a chunked
    # or compressed body, the wire would have held a little more).
    if stops and evidence.kind == "truncate" and evidence.length:
        top = float(point + evidence.length)
        ax.axhspan(
            point,
            top,
            facecolor="white",
            alpha=0.6,
            hatch=_MISSING_HATCH,
            edgecolor=colour,
            linewidth=0.8,
            gid=f"missing:{ex.id}:{number}",
            label=f"region {number}: {evidence.length:,} bytes missing, "
            "to the expected end",
        )
    return float(point), top


def timeline(
    analysis: Analysis, exchange_id: int, *, region: int | None = None
) -> Figure:
    """Time against stream offset of one exchange's response, both legs.

    Each frame is a stroke from its first to its last byte; frames that
    came after later bytes (retransmissions) are orange triangles, gaps
    are hatched bands, conflicting copies are crosses, the FastCGI record
    boundaries are dotted lines, and the corrupted regions are bands in
    their hop's colour and hatch.  A region that covers no byte of a
    leg (where the other leg has extra bytes, or where a body stops) is a
    line at that stream offset, solid where the body stops; a cut body
    of known size also gets a dotted band up to its expected end.  Both
    legs share one time axis, in ms from the first frame of the exchange.
    ``region`` (a position from 0 in ``ex.attribution.regions``) zooms the
    y axes onto that region, with a little context.
    """
    analysis = as_analysis(analysis)
    ex = find_exchange(analysis, exchange_id)
    spans = response_spans(analysis, ex)
    if not spans:
        raise ValueError(f"exchange {exchange_id} has no response to draw")
    if region is not None and not 0 <= region < len(ex.attribution.regions):
        raise IndexError(f"exchange {exchange_id} has no region at position {region}")
    packets = packets_frame(analysis, exchange_id)
    times = packets["time"].dropna().astype("int64")
    origin = int(times.min()) if len(times) else 0

    fig = _new_figure(10, 3.2 * len(spans) + 0.6)
    axes = fig.subplots(len(spans), 1, sharex=True, squeeze=False)[:, 0]
    for ax, span in zip(axes, spans, strict=True):
        zoomed = _draw_leg(ax, analysis, ex, span.leg, origin, region)
        if zoomed is not None:
            # Context of a few frames each way, whatever the MSS.
            mine = packets[packets["leg"] == span.leg]
            lo, hi = zoomed
            pad = max(3.0 * float(mine["length"].median()), hi - lo, 4096.0)
            top = float((mine["stream_offset"] + mine["length"]).max())
            low, high = max(lo - pad, 0.0), min(hi + pad, max(top, hi))
            # Headroom, so that a line where a body stops stays in view.
            ax.set_ylim(low, high + 0.03 * (high - low))
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        ax.legend(unique.values(), unique.keys(), fontsize=7, loc="upper left")
    axes[-1].set_xlabel("time since the exchange's first frame (ms)")
    fig.suptitle(f"exchange {ex.id}: {ex.method} {ex.uri} ({ex.verdict})", fontsize=10)
    return fig


# -- byte view ------------------------------------------------------------

_CELLS = 16
_SIDE_CHARS = 8 + 2 + _CELLS * 3 + 1 + _CELLS  # offset, cells, text
_GUTTER = 6


def _draw_rows(ax: Axes, rows: list[HexRow], x0: float, title: str) -> None:
    ax.text(x0, -1, title, family="monospace", fontsize=9, weight="bold", va="center")
    line = 0
    for row in rows:
        if row.left_out:
            ax.text(
                x0,
                line,
                left_out_note(row),
                family="monospace",
                fontsize=8,
                va="center",
                color=PALETTE["grey"],
            )
            line += 1
        ax.text(
            x0,
            line,
            f"{row.offset:08x}",
            family="monospace",
            fontsize=8,
            va="center",
            color="#444444",
        )
        for i, (cell, mark) in enumerate(zip(row.cells, row.marks, strict=True)):
            cx = x0 + 10 + 3 * i
            tx = x0 + 10 + 3 * _CELLS + 1 + i
            if mark:
                # Marked bytes: a boxed, tinted cell in bold, so the mark
                # survives grey-scale printing.
                for x, w in ((cx - 0.2, 2.4), (tx - 0.1, 1.2)):
                    ax.add_patch(
                        Rectangle(
                            (x, line - 0.45),
                            w,
                            0.9,
                            facecolor="#fbe7a1",
                            edgecolor=PALETTE["black"],
                            linewidth=0.4,
                            gid="mark",
                        )
                    )
            unseen = cell == "??"
            style: dict[str, Any] = {
                "family": "monospace",
                "fontsize": 8,
                "va": "center",
                "weight": "bold" if mark else "normal",
                "color": PALETTE["grey"] if unseen else PALETTE["black"],
                "style": "italic" if unseen else "normal",
            }
            ax.text(cx, line, cell, **style)
            ax.text(tx, line, row.text[i], **style)
        line += 1


def byte_view(analysis: Analysis, exchange_id: int, region: int = 0) -> Figure:
    """The region at position ``region`` (from 0) of one exchange as hex
    and text, side by side.

    The left column is the upstream body (what the app sent), the right
    column the client body (what the client got), each in its own body
    offsets, with one row of context around the region.  Marked bytes
    are boxed and bold; bytes a capture did not observe show as ``??``.
    """
    analysis = as_analysis(analysis)
    ex = find_exchange(analysis, exchange_id)
    if not 0 <= region < len(ex.attribution.regions):
        raise IndexError(f"exchange {exchange_id} has no region at position {region}")
    ranges = region_ranges(ex, region)
    columns: list[tuple[str, list[HexRow]]] = []
    if ex.upstream is not None and ranges.upstream is not None:
        columns.append(
            (
                "upstream (what the app sent)",
                hex_rows(ex.upstream.body, *ranges.upstream),
            )
        )
    if ex.client is not None and ranges.client is not None:
        columns.append(
            ("client (what it got)", hex_rows(ex.client.body, *ranges.client))
        )

    lines = max((len(rows) + 1 for _, rows in columns), default=1)
    fig = _new_figure(7.2 * len(columns) or 7.2, 0.6 + 0.2 * (lines + 2))
    ax = fig.add_subplot()
    ax.set_axis_off()
    for k, (title, rows) in enumerate(columns):
        _draw_rows(ax, rows, k * (_SIDE_CHARS + _GUTTER), title)
    ax.set_xlim(-1, len(columns) * (_SIDE_CHARS + _GUTTER))
    ax.set_ylim(lines + 0.5, -1.8)
    evidence = ex.attribution.regions[region]
    fig.suptitle(
        f"exchange {ex.id}, region {region + 1}: {evidence.kind} of "
        f"{evidence.length:,} bytes at offset {evidence.offset:,}",
        fontsize=9,
    )
    return fig
