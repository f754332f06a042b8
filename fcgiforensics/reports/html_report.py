"""The ``diff --html FILE`` report: one self-contained HTML page.

The page holds the summary, the corruption map, then each damaged
exchange's evidence sentences, timeline and hex views.  Figures are
inline base64 PNGs; there are no scripts, no fonts and no links to
anything outside the file, so it can be mailed, attached to a ticket
and opened offline.  pandas and matplotlib are imported with this
module, which the CLI loads only when ``--html`` is given.
"""

from __future__ import annotations

import html
from typing import Any

from .. import __version__
from ..analysis import Analysis, Exchange
from ..anomalies import CATALOGUE
from ..notebook.display import STYLE, exchange_html, figure_img, summary_html
from ..notebook.figures import corruption_map, timeline
from ..notebook.frames import legs_of
from .json_report import report_json

__all__ = ["MAX_DETAILED_EXCHANGES", "html_document", "write_html"]

#: Damaged exchanges given a detailed section (two figures each, about
#: 150 kB); past this a page gets slow to open, and the rest are in the
#: summary table and the JSON report.
MAX_DETAILED_EXCHANGES = 25

_PAGE_STYLE = """
body { margin: 16px 24px; max-width: 1400px; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
h3 { font-size: 14px; }
section.exchange { border-top: 2px solid #444; margin-top: 20px; }
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _captures(analysis: Analysis) -> str:
    rows = []
    for capture in report_json(analysis)["captures"]:
        anomalies = ", ".join(
            f"{name} x{count}" for name, count in sorted(capture["anomalies"].items())
        )
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{_e(v)}</td>"
                for v in (
                    capture["path"],
                    capture["role"],
                    capture["format"],
                    capture["packets"],
                    capture["tcp_connections"],
                    anomalies or "none",
                )
            )
            + "</tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("file", "role", "format", "packets", "TCP connections", "anomalies")
    )
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _anomalies(analysis: Analysis) -> str:
    counts: dict[tuple[str, str], int] = {}
    for role, leg in legs_of(analysis):
        for a in leg.anomalies:
            counts[(role, a.name)] = counts.get((role, a.name), 0) + 1
    if not counts:
        return "<p>No anomaly was found in the captures.</p>"
    rows = "".join(
        f"<tr><td>{_e(role)}</td><td>{_e(name)}</td><td>{count}</td>"
        f"<td>{_e(CATALOGUE.get(name, ''))}</td></tr>"
        for (role, name), count in sorted(counts.items())
    )
    return (
        "<table><tr><th>leg</th><th>anomaly</th><th>count</th>"
        f"<th>meaning</th></tr>{rows}</table>"
    )


def _exchange_section(analysis: Analysis, ex: Exchange) -> str:
    parts = [f'<section class="exchange" id="exchange-{ex.id}">']
    parts.append(exchange_html(analysis, ex.id))
    if ex.client is not None or ex.upstream is not None:
        parts.append(
            figure_img(
                timeline(analysis, ex.id),
                f"time against stream offset of exchange {ex.id}, both legs",
            )
        )
        if ex.attribution.regions:
            parts.append(
                figure_img(
                    timeline(analysis, ex.id, region=0),
                    f"the same, zoomed onto region 1 of exchange {ex.id}",
                )
            )
    parts.append("</section>")
    return "".join(parts)


def html_document(analysis: Analysis) -> str:
    """The whole report page, as text."""
    summary: dict[str, Any] = analysis.summary()
    damaged = [
        ex for ex in analysis.exchanges if ex.verdict in ("corrupted", "incomplete")
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>fcgiforensics diff: "
        f"{summary['corrupted']} corrupted of {summary['exchanges']}</title>",
        f"<style>{STYLE}{_PAGE_STYLE}</style></head>",
        '<body class="fcgif">',
        "<h1>Which hop corrupted the responses</h1>",
        f"<p>fcgiforensics {_e(__version__)}, report format "
        f"{_e(report_json(analysis)['format'])}.</p>",
        "<h2>Captures</h2>",
        _captures(analysis),
        "<h2>Summary</h2>",
        summary_html(analysis),
    ]
    if analysis.exchanges:
        parts += [
            "<h2>Corruption map</h2>",
            "<p>One row per exchange, the body from its first byte. A band "
            "marks bytes the client got differently from what the app sent "
            "(cross-hatched: changed by the proxy; striped: by the app). "
            "Grey diagonal hatching marks bytes the captures lack.</p>",
            figure_img(corruption_map(analysis), "corruption map"),
        ]
    parts.append("<h2>Evidence</h2>")
    if not damaged:
        parts.append(
            "<p>Every exchange seen on both legs was delivered as the app sent it.</p>"
        )
    for ex in damaged[:MAX_DETAILED_EXCHANGES]:
        parts.append(_exchange_section(analysis, ex))
    if len(damaged) > MAX_DETAILED_EXCHANGES:
        parts.append(
            f"<p>{len(damaged) - MAX_DETAILED_EXCHANGES} more damaged "
            "exchanges are listed in the summary only; the JSON report "
            "(<code>--json</code>) has all of them.</p>"
        )
    parts += ["<h2>Anomalies</h2>", _anomalies(analysis), "</body></html>"]
    return "\n".join(parts) + "\n"


def write_html(analysis: Analysis, path: str) -> None:
    """Write the self-contained report of ``analysis`` to ``path``."""
    document = html_document(analysis)
    with open(path, "w", encoding="utf-8") as out:
        out.write(document)
