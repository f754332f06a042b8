"""The figures: they render, and the evidence is drawn as distinct artists."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

import fcgiforensics  # noqa: E402
from fcgiforensics.analysis import Exchange  # noqa: E402
from fcgiforensics.notebook import Investigation  # noqa: E402
from fcgiforensics.notebook.figures import (  # noqa: E402
    HOP_STYLE,
    byte_view,
    corruption_map,
    timeline,
)
from tests.test_analysis import write_app_cut  # noqa: E402
from tests.test_notebook_api import (  # noqa: E402
    CORRUPT_AT,
    KINDS,
    sample_investigation,
    write_kinds,
)

CAPTURES = Path(__file__).resolve().parent.parent / "captures"


@pytest.fixture(scope="module")
def lossy(tmp_path_factory: pytest.TempPathFactory) -> Investigation:
    return sample_investigation(tmp_path_factory.mktemp("lossy"), lossy=True)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Investigation:
    return sample_investigation(tmp_path_factory.mktemp("clean"), lossy=False)


@pytest.fixture(scope="module")
def kinds(tmp_path_factory: pytest.TempPathFactory) -> Investigation:
    sample = write_kinds(tmp_path_factory.mktemp("kinds"))
    return fcgiforensics.analyze(sample.client, sample.upstream)


def _png(fig: Figure) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=60)
    return out.getvalue()


def _artists(fig: Figure, prefix: str) -> list[object]:
    return [
        a
        for a in fig.findobj()
        if isinstance(a.get_gid(), str) and a.get_gid().startswith(prefix)
    ]


def test_corruption_map_draws_one_rectangle_per_region(clean: Investigation) -> None:
    """Each region is one hatched Rectangle in its exchange's row."""
    fig = corruption_map(clean.analysis)
    assert _png(fig).startswith(b"\x89PNG")
    regions = _artists(fig, "region:")
    assert len(regions) == len(clean.regions) == 1
    (rect,) = regions
    assert isinstance(rect, Rectangle)
    assert rect.get_gid() == "region:2:1"
    assert rect.get_x() == CORRUPT_AT
    assert rect.get_hatch() == HOP_STYLE["proxy"][1]
    assert len(_artists(fig, "body:")) == 3


def test_corruption_map_hatches_unobserved_ranges(lossy: Investigation) -> None:
    """Body bytes a capture lacks are drawn as hatched rectangles."""
    fig = corruption_map(lossy)
    unobserved = _artists(fig, "unobserved:3:client")
    assert unobserved
    assert all(isinstance(r, Rectangle) and r.get_hatch() for r in unobserved)
    assert _png(fig).startswith(b"\x89PNG")


def test_corruption_map_can_keep_only_damaged_rows(lossy: Investigation) -> None:
    """only_damaged drops the ok exchanges from the map."""
    fig = corruption_map(lossy, only_damaged=True)
    assert {a.get_gid() for a in _artists(fig, "body:")} == {"body:2", "body:3"}


def test_hops_differ_by_hatch_not_colour_alone() -> None:
    """Every hop style pairs a colour with its own hatch pattern."""
    hatches = [hatch for _, hatch in HOP_STYLE.values()]
    assert all(hatches)
    assert len(set(hatches)) == len(hatches)


def test_timeline_draws_the_region_on_both_legs(clean: Investigation) -> None:
    """The corrupted region is a band on the client and upstream axes."""
    fig = timeline(clean.analysis, 2)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert [a for a in ax.get_children() if a.get_gid() == "region:2:1"]
    upstream = fig.axes[1]
    assert [a for a in upstream.get_children() if a.get_gid() == "record"]
    assert _png(fig).startswith(b"\x89PNG")


def test_timeline_marks_gaps_conflicts_and_late_frames(lossy: Investigation) -> None:
    """A gap is hatched, a conflicting copy and a late frame have markers."""
    fig = timeline(lossy.analysis, 3)
    client = fig.axes[0]
    gids = [a.get_gid() for a in client.get_children()]
    assert "gap" in gids and "conflict" in gids and "late" in gids
    gap = next(a for a in client.get_children() if a.get_gid() == "gap")
    assert gap.get_hatch()
    assert _png(fig).startswith(b"\x89PNG")


def test_timeline_zooms_onto_a_region(clean: Investigation) -> None:
    """region= narrows the y axes around the region's stream offsets."""
    full = timeline(clean, 2)
    zoomed = timeline(clean, 2, region=0)
    for a, b in zip(full.axes, zoomed.axes, strict=True):
        assert b.get_ylim()[1] - b.get_ylim()[0] < a.get_ylim()[1] - a.get_ylim()[0]
    with pytest.raises(IndexError):
        timeline(clean, 2, region=5)


def test_byte_view_boxes_the_region_bytes(clean: Investigation) -> None:
    """Each marked byte is boxed in the hex and text columns of both sides."""
    fig = byte_view(clean.analysis, 2)
    marks = _artists(fig, "mark")
    # hex_rows shows at most 8 rows; count the marked cells it gives.
    from fcgiforensics.reports.hexview import hex_rows

    ex = clean.exchange(2)
    assert ex.client is not None and ex.upstream is not None
    marked = sum(
        sum(row.marks)
        for body in (ex.upstream.body, ex.client.body)
        for row in hex_rows(body, CORRUPT_AT, CORRUPT_AT + 150)
    )
    assert len(marks) == 2 * marked
    assert _png(fig).startswith(b"\x89PNG")


def test_byte_view_html_marks_without_colour_alone(clean: Investigation) -> None:
    """The notebook view marks region bytes with <mark> (bold, underlined)."""
    view = clean.byte_view(2)
    text = view._repr_html_()
    assert "<mark>" in text and "text-decoration: underline" in text
    assert "upstream (what the app sent)" in str(view)
    assert isinstance(view.figure(), Figure)


# -- every region kind on the timeline -------------------------------------


def _tagged(ax: Axes, gid: str) -> list[Any]:
    return [a for a in ax.get_children() if a.get_gid() == gid]


def _y_span(ax: Axes, band: Patch) -> tuple[float, float]:
    """The stream offsets a band spans, in data coordinates."""
    ys = ax.transData.inverted().transform(band.get_verts())[:, 1]
    return round(float(ys.min()), 3), round(float(ys.max()), 3)


def _one_band(ax: Axes, gid: str) -> tuple[float, float]:
    [band] = [a for a in _tagged(ax, gid) if isinstance(a, Patch)]
    return _y_span(ax, band)


def _one_line(ax: Axes, gid: str) -> Line2D:
    [line] = [a for a in _tagged(ax, gid) if isinstance(a, Line2D)]
    return line


def _client_body_start(ex: Exchange) -> int:
    """Stream offset of the client's first body byte (Content-Length
    bodies: right after the response head)."""
    assert ex.http is not None and ex.http.exchange.response is not None
    return ex.http.exchange.response.head_end


def _upstream_stream(ex: Exchange, start: int, end: int) -> tuple[float, float]:
    assert ex.upstream is not None
    span = ex.upstream.body.stream_range(start, end)
    assert span is not None
    return float(span[0]), float(span[1])


def test_timeline_draws_an_insert_as_band_and_line(kinds: Investigation) -> None:
    """Bytes the client got extra are a band over their client stream
    offsets, and a dashed line where they would sit on the upstream leg."""
    ex = kinds.exchange(1)
    _, offset, length = KINDS[1]
    client, upstream = timeline(kinds, 1).axes
    base = _client_body_start(ex)
    assert _one_band(client, "region:1:1") == (base + offset, base + offset + length)
    line = _one_line(upstream, "region:1:1")
    assert list(line.get_ydata()) == [_upstream_stream(ex, offset, offset + 1)[0]] * 2
    assert line.get_linestyle() == "--"


def test_timeline_draws_a_delete_as_band_and_line(kinds: Investigation) -> None:
    """Bytes the client lacks are a band over their upstream stream
    offsets, and a dashed line where they are missing on the client leg."""
    ex = kinds.exchange(2)
    _, offset, length = KINDS[2]
    client, upstream = timeline(kinds, 2).axes
    assert _one_band(upstream, "region:2:1") == _upstream_stream(
        ex, offset, offset + length
    )
    line = _one_line(client, "region:2:1")
    assert list(line.get_ydata()) == [_client_body_start(ex) + offset] * 2
    assert line.get_linestyle() == "--"


def test_timeline_draws_a_replace_on_both_legs(kinds: Investigation) -> None:
    """Replaced bytes are a band on each leg, over that leg's offsets."""
    ex = kinds.exchange(3)
    _, offset, length = KINDS[3]
    client, upstream = timeline(kinds, 3).axes
    base = _client_body_start(ex)
    assert _one_band(client, "region:3:1") == (base + offset, base + offset + length)
    assert _one_band(upstream, "region:3:1") == _upstream_stream(
        ex, offset, offset + length
    )


def test_timeline_draws_where_the_clients_body_stops(kinds: Investigation) -> None:
    """A body the client got cut short is a solid line where its stream
    stops, with a band as tall as the missing bytes above it; upstream,
    the bytes the client never got are a band."""
    ex = kinds.exchange(4)
    _, offset, length = KINDS[4]
    client, upstream = timeline(kinds, 4).axes
    stop = _client_body_start(ex) + offset
    line = _one_line(client, "region:4:1")
    assert list(line.get_ydata()) == [stop] * 2
    assert line.get_linestyle() == "-"
    assert _one_band(client, "missing:4:1") == (stop, stop + length)
    assert _one_band(upstream, "region:4:1") == _upstream_stream(
        ex, offset, offset + length
    )
    assert not _tagged(upstream, "missing:4:1")
    assert _png(timeline(kinds, 4)).startswith(b"\x89PNG")


def test_timeline_zoom_keeps_the_stop_and_the_missing_bytes(
    kinds: Investigation,
) -> None:
    """Zoomed onto a truncation, the client axis shows the line where the
    body stops and the band up to where it should have ended."""
    ex = kinds.exchange(4)
    _, offset, length = KINDS[4]
    client = timeline(kinds, 4, region=0).axes[0]
    stop = _client_body_start(ex) + offset
    low, high = client.get_ylim()
    assert low < stop and stop + length <= high


def test_corruption_map_draws_every_region_kind(kinds: Investigation) -> None:
    """Insert, delete, replace and truncate regions each get their box."""
    fig = corruption_map(kinds)
    gids = {a.get_gid() for a in _artists(fig, "region:")}
    assert gids == {f"region:{n}:1" for n in KINDS}


def test_timeline_draws_the_app_fault_truncation() -> None:
    """captures/app-fault: the app's stream that stops with no END_REQUEST
    is a solid line where its body ends on the FastCGI leg, and on the
    client leg, whose body stops there too; the missing size is not
    known, so no band is drawn."""
    folder = CAPTURES / "app-fault"
    inv = fcgiforensics.analyze(folder / "client.pcap", folder / "upstream.pcap")
    [ex] = [e for e in inv.analysis.exchanges if "fault=die" in (e.uri or "")]
    [region] = ex.attribution.regions
    assert (region.kind, region.length) == ("truncate", 0)
    assert ex.upstream is not None and ex.client is not None
    client, upstream = timeline(inv, ex.id).axes
    gid = f"region:{ex.id}:1"
    up_end = _upstream_stream(ex, region.offset - 1, region.offset)[1]
    assert list(_one_line(upstream, gid).get_ydata()) == [up_end] * 2
    span = ex.client.body.stream_range(region.offset - 1, region.offset)
    assert span is not None
    assert list(_one_line(client, gid).get_ydata()) == [span[1]] * 2
    assert _one_line(client, gid).get_linestyle() == "-"
    assert not _artists(timeline(inv, ex.id), "missing:")


def test_timeline_draws_an_app_cut_of_known_size(tmp_path: Path) -> None:
    """An app that stops short of its own Content-Length: on the FastCGI
    leg a line where its body stops and a band for the bytes it owed."""
    inv = fcgiforensics.analyze(*write_app_cut(tmp_path, 30_000, 20_000))
    [ex] = inv.analysis.exchanges
    [region] = ex.attribution.regions
    assert (ex.hop, region.kind, region.length) == ("app", "truncate", 10_000)
    upstream = timeline(inv, ex.id).axes[1]
    stop = _upstream_stream(ex, 19_999, 20_000)[1]
    assert list(_one_line(upstream, "region:1:1").get_ydata()) == [stop] * 2
    assert _one_band(upstream, "missing:1:1") == (stop, stop + 10_000)


def test_byte_view_says_how_many_bytes_it_left_out(kinds: Investigation) -> None:
    """A region longer than the view is cut in the middle, and the figure,
    the HTML and the text each say how many bytes were left out there."""
    from fcgiforensics.reports.hexview import hex_rows

    ex = kinds.exchange(4)
    assert ex.upstream is not None
    _, offset, length = KINDS[4]
    rows = hex_rows(ex.upstream.body, offset, offset + length)
    [cut] = [r for r in rows if r.left_out]
    note = f"{cut.left_out:,} bytes ({cut.left_out // 16:,} rows) left out"
    texts = [
        t.get_text()
        for t in byte_view(kinds, 4, region=0).findobj()
        if hasattr(t, "get_text")
    ]
    assert any(note in t for t in texts)
    view = kinds.byte_view(4, region=1)
    assert note in view._repr_html_()
    assert note in str(view)
