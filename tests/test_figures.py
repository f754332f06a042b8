"""The figures: they render, and the evidence is drawn as distinct artists."""

from __future__ import annotations

import io

import pytest

pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from fcgiforensics.notebook import Investigation  # noqa: E402
from fcgiforensics.notebook.figures import (  # noqa: E402
    HOP_STYLE,
    byte_view,
    corruption_map,
    timeline,
)
from tests.test_notebook_api import CORRUPT_AT, sample_investigation  # noqa: E402


@pytest.fixture(scope="module")
def lossy(tmp_path_factory: pytest.TempPathFactory) -> Investigation:
    return sample_investigation(tmp_path_factory.mktemp("lossy"), lossy=True)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Investigation:
    return sample_investigation(tmp_path_factory.mktemp("clean"), lossy=False)


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
    assert rect.get_gid() == "region:2:0"
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
        assert [a for a in ax.get_children() if a.get_gid() == "region:2:0"]
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
