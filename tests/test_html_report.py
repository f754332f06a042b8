"""The self-contained HTML report of ``diff --html``."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

from fcgiforensics.cli.main import main  # noqa: E402
from fcgiforensics.notebook import Investigation  # noqa: E402
from fcgiforensics.reports.html_report import write_html  # noqa: E402
from tests.test_notebook_api import (  # noqa: E402
    sample_investigation,
    write_sample,
)


@pytest.fixture(scope="module")
def lossy(tmp_path_factory: pytest.TempPathFactory) -> Investigation:
    return sample_investigation(tmp_path_factory.mktemp("lossy"), lossy=True)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Investigation:
    return sample_investigation(tmp_path_factory.mktemp("clean"), lossy=False)


def _page(inv: Investigation, tmp_path: Path) -> str:
    path = tmp_path / "report.html"
    write_html(inv.analysis, str(path))
    return path.read_text(encoding="utf-8")


def test_report_is_self_contained(lossy: Investigation, tmp_path: Path) -> None:
    """The page names no http(s) URL, loads no script and embeds its images."""
    page = _page(lossy, tmp_path)
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"https?://", page, re.IGNORECASE)
    assert "<script" not in page.lower()
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<link" not in page.lower() and "@import" not in page


def test_report_holds_every_evidence_sentence(
    lossy: Investigation, tmp_path: Path
) -> None:
    """Each damaged exchange's evidence sentences appear, escaped, in the page."""
    page = _page(lossy, tmp_path)
    damaged = [ex for ex in lossy.analysis.exchanges if ex.verdict != "ok"]
    assert {ex.verdict for ex in damaged} == {"corrupted", "incomplete"}
    for ex in damaged:
        assert f'id="exchange-{ex.id}"' in page
        for sentence in ex.attribution.evidence:
            assert html.escape(sentence) in page


def test_report_shows_the_hex_view_and_the_filter(
    clean: Investigation, tmp_path: Path
) -> None:
    """The region's bytes are marked and its Wireshark filter is given."""
    page = _page(clean, tmp_path)
    region = clean.regions.iloc[0]
    assert html.escape(region["wireshark_filter"]) in page
    assert "<mark>" in page
    assert "upstream (what the app sent)" in page


def test_report_escapes_what_the_capture_says(tmp_path: Path) -> None:
    """Text from the capture (a URI here) cannot inject markup into the page."""
    inv_dir = tmp_path / "cap"
    sample = write_sample(inv_dir)
    import fcgiforensics

    inv = fcgiforensics.analyze(sample.client, sample.upstream)
    inv.analysis.exchanges[1].uri = "/<script>alert(1)</script>"
    page = _page(inv, tmp_path)
    assert "<script>" not in page
    assert "&lt;script&gt;" in page


def test_cli_writes_the_html_report(tmp_path: Path) -> None:
    """``diff --html FILE`` writes the page and keeps its exit status."""
    sample = write_sample(tmp_path / "cap")
    out = tmp_path / "out.html"
    status = main(
        ["diff", "--html", str(out), str(sample.client), str(sample.upstream)]
    )
    assert status == 1
    assert "Which hop corrupted the responses" in out.read_text(encoding="utf-8")
