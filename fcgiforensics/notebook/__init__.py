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
from ..legs import LegOptions, mebibytes
from ..reassembly import ReassemblyLimits
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


def _mebibytes(name: str, value: float) -> int:
    """``value`` MiB in bytes, checked as the command line checks it."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} is a size in MiB, got {value!r}")
    try:
        return mebibytes(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


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

    def _position(self, exchange_id: int, region: int) -> int:
        """The list position of region number ``region`` (from 1)."""
        count = len(self.exchange(exchange_id).attribution.regions)
        if not 1 <= region <= count:
            have = f"regions 1 to {count}" if count else "no region"
            raise IndexError(
                f"exchange {exchange_id} has no region {region}: regions "
                f"are numbered from 1, as the text report and the "
                f"'region' column of .regions number them ({have})"
            )
        return region - 1

    def timeline(self, exchange_id: int, *, region: int | None = None) -> Figure:
        """Time against stream offset of one exchange's response, both legs.

        ``region`` is a region number (from 1, the ``region`` column of
        :attr:`regions`, as the text report prints it): the axes zoom
        onto it.  See :func:`fcgiforensics.notebook.figures.timeline`.
        """
        position = None if region is None else self._position(exchange_id, region)
        return figures.timeline(self.analysis, exchange_id, region=position)

    def byte_view(self, exchange_id: int, region: int = 1) -> ByteView:
        """Region number ``region`` (from 1, as the text report and the
        ``region`` column number it) as hex and text on both legs (HTML
        in a notebook)."""
        return ByteView(self.analysis, exchange_id, self._position(exchange_id, region))

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
    max_body: float | None = None,
    max_pending: float | None = None,
) -> Investigation:
    """Read both legs, judge every exchange, wrap the result.

    ``client`` and ``upstream`` are a capture file or a list of rotated
    files; ``upstream`` None means one capture holds both legs.  The
    keywords are the ``diff`` options of the same names: a digest header
    such as ``"X-Body-SHA1"`` or ``"X-Checksum:sha256"``; ports whose
    connections are HTTP or FastCGI whatever their first bytes say;
    ``max_body`` and ``max_pending`` in MiB, as ``--max-body`` and
    ``--max-pending`` take them (the bytes kept of one body, and the
    out-of-order bytes one TCP direction may hold; None: the defaults).
    """
    specs = [digest_header] if isinstance(digest_header, str) else digest_header
    limits = ReassemblyLimits()
    if max_pending is not None:
        limits = ReassemblyLimits(pending_bytes=_mebibytes("max_pending", max_pending))
    options = AnalysisOptions(
        digests=tuple(parse_digest_spec(s) for s in specs),
        leg=LegOptions(
            http_ports=frozenset(http_ports),
            fastcgi_ports=frozenset(fastcgi_ports),
            limits=limits,
            max_body=None if max_body is None else _mebibytes("max_body", max_body),
        ),
    )
    legs = _paths(upstream) if upstream is not None else None
    return Investigation(_analyze(_paths(client), legs, options))
