"""Explore an analysis in Jupyter: DataFrames, figures and rich HTML.

This package needs pandas and matplotlib (``pip install
fcgiforensics[notebook]``); the rest of fcgiforensics never imports it.
The entry point is :func:`fcgiforensics.analyze`::

    import fcgiforensics
    inv = fcgiforensics.analyze("client.pcap", "upstream.pcap")
    inv.exchanges[inv.exchanges.verdict == "corrupted"]
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from ..analysis import Analysis, AnalysisOptions, Exchange
from ..analysis import analyze as _analyze
from ..attribution import parse_digest_spec
from ..legs import LegOptions
from ..reports.json_report import report_json
from . import figures
from .display import STYLE, ByteView, exchange_html, summary_html
from .frames import (
    anomalies_frame,
    connections_frame,
    exchanges_frame,
    find_exchange,
    packets_frame,
    records_frame,
    regions_frame,
)

__all__ = ["Investigation", "investigate", "ByteView"]

PathLike = str | os.PathLike[str]


def _paths(value: PathLike | Sequence[PathLike]) -> list[str]:
    if isinstance(value, str | os.PathLike):
        return [os.fspath(value)]
    return [os.fspath(v) for v in value]


class Investigation:
    """An :class:`~fcgiforensics.analysis.Analysis`, ready for a notebook.

    The DataFrame attributes are built on first use and kept; their
    columns are those of the ``diff --json`` report (see
    :mod:`fcgiforensics.notebook.frames`).  The figure methods return
    matplotlib Figures, which a notebook draws.
    """

    def __init__(self, analysis: Analysis) -> None:
        self.analysis = analysis

    # -- tables ---------------------------------------------------------

    @cached_property
    def exchanges(self) -> pd.DataFrame:
        """One row per exchange: verdict, hop, both sides' fields."""
        return exchanges_frame(self.analysis)

    @cached_property
    def regions(self) -> pd.DataFrame:
        """One row per region where a client body departs from the app's."""
        return regions_frame(self.analysis)

    @cached_property
    def connections(self) -> pd.DataFrame:
        """One row per TCP connection of each leg."""
        return connections_frame(self.analysis)

    @cached_property
    def anomalies(self) -> pd.DataFrame:
        """One row per anomaly, with the capture, connection and frame."""
        return anomalies_frame(self.analysis)

    @cached_property
    def records(self) -> pd.DataFrame:
        """One row per FastCGI record of every upstream request."""
        return records_frame(self.analysis)

    @property
    def corrupted(self) -> pd.DataFrame:
        """The rows of :attr:`exchanges` whose verdict is ``corrupted``."""
        frame = self.exchanges
        return frame[frame["verdict"] == "corrupted"]

    def packets(self, exchange_id: int) -> pd.DataFrame:
        """The frames that carried one exchange, on both legs."""
        return packets_frame(self.analysis, exchange_id)

    def exchange(self, exchange_id: int) -> Exchange:
        """The :class:`~fcgiforensics.analysis.Exchange` itself."""
        return find_exchange(self.analysis, exchange_id)

    def report(self) -> dict[str, Any]:
        """The ``diff --json`` document of this analysis."""
        return report_json(self.analysis)

    # -- figures and views ----------------------------------------------

    def corruption_map(self, *, only_damaged: bool = False) -> Figure:
        """See :func:`fcgiforensics.notebook.figures.corruption_map`."""
        return figures.corruption_map(self.analysis, only_damaged=only_damaged)

    def timeline(self, exchange_id: int, *, region: int | None = None) -> Figure:
        """See :func:`fcgiforensics.notebook.figures.timeline`."""
        return figures.timeline(self.analysis, exchange_id, region=region)

    def byte_view(self, exchange_id: int, region: int = 0) -> ByteView:
        """One region as hex and text on both legs (HTML in a notebook)."""
        return ByteView(self.analysis, exchange_id, region)

    def evidence(self, exchange_id: int) -> _Html:
        """One exchange's sides, evidence sentences and hex views."""
        ex = self.exchange(exchange_id)
        plain = "\n".join(
            [f"exchange {ex.id}: {ex.verdict}"]
            + [f"- {s}" for s in ex.attribution.evidence]
        )
        return _Html(exchange_html(self.analysis, exchange_id), plain)

    def write_html(self, path: PathLike) -> None:
        """Write the self-contained HTML report to ``path``."""
        from ..reports.html_report import write_html

        write_html(self.analysis, os.fspath(path))

    # -- notebook display -----------------------------------------------

    def _repr_html_(self) -> str:
        return f"<style>{STYLE}</style>" + summary_html(self.analysis)

    def __repr__(self) -> str:
        s = self.analysis.summary()
        return (
            f"<Investigation: {s['exchanges']} exchanges, {s['ok']} ok, "
            f"{s['corrupted']} corrupted, {s['incomplete']} incomplete, "
            f"{s['unmatched']} unmatched>"
        )


class _Html:
    """A fragment of HTML that a notebook renders as such."""

    def __init__(self, text: str, plain: str) -> None:
        self.text = text
        self.plain = plain

    def _repr_html_(self) -> str:
        return f"<style>{STYLE}</style>{self.text}"

    def __repr__(self) -> str:
        return self.plain


def investigate(
    client: PathLike | Sequence[PathLike],
    upstream: PathLike | Sequence[PathLike] | None = None,
    *,
    digest_header: str | Iterable[str] = (),
    http_ports: Iterable[int] = (),
    fastcgi_ports: Iterable[int] = (),
) -> Investigation:
    """Read both legs, judge every exchange, wrap the result.

    ``client`` and ``upstream`` are a capture file or a list of rotated
    files; ``upstream`` None means one capture holds both legs.  The
    keywords are the ``diff`` options of the same names: a digest header
    such as ``"X-Body-SHA1"`` or ``"X-Checksum:sha256"``, and ports whose
    connections are HTTP or FastCGI whatever their first bytes say.
    """
    specs = [digest_header] if isinstance(digest_header, str) else digest_header
    options = AnalysisOptions(
        digests=tuple(parse_digest_spec(s) for s in specs),
        leg=LegOptions(
            http_ports=frozenset(http_ports),
            fastcgi_ports=frozenset(fastcgi_ports),
        ),
    )
    legs = _paths(upstream) if upstream is not None else None
    return Investigation(_analyze(_paths(client), legs, options))
