"""The human report of ``diff``: a summary table, then the evidence."""

from __future__ import annotations

from ..analysis import Analysis, Exchange
from ..frames import format_frames
from ..legs import Leg
from .hexview import hex_text
from .json_report import wireshark_filter

__all__ = ["report_text"]

_URI_WIDTH = 48


def _leg_line(role: str, leg: Leg) -> str:
    formats = {f.format for f in leg.stats.files}
    anomalies = leg.anomaly_counts()
    notes = ", ".join(f"{n} x{c}" for n, c in sorted(anomalies.items()))
    line = (
        f"{role}: {leg.label} ({'/'.join(sorted(formats))}, "
        f"{', '.join(leg.stats.link_type_names)}, {leg.stats.packets} "
        f"packets, {len(leg.connections)} TCP connections)"
    )
    if notes:
        line += f"\n  anomalies: {notes}"
    return line


def _summary_line(analysis: Analysis) -> str:
    s = analysis.summary()
    hops = sorted({ex.hop for ex in analysis.exchanges if ex.hop})
    by = f" (by {' and '.join(hops)})" if hops else ""
    return (
        f"{s['exchanges']} exchanges: {s['ok']} ok, {s['corrupted']} "
        f"corrupted{by}, {s['incomplete']} incomplete, "
        f"{s['unmatched']} unmatched"
    )


def _table(analysis: Analysis) -> list[str]:
    lines = [
        f"  {'id':>4}  {'verdict':<10} {'hop':<5} {'status':>6} {'bytes':>10}  request"
    ]
    for ex in analysis.exchanges:
        side = ex.client or ex.upstream
        status = side.status if side and side.status is not None else "-"
        size = len(side.body) if side else 0
        uri = ex.uri or "?"
        if len(uri) > _URI_WIDTH:
            uri = uri[: _URI_WIDTH - 3] + "..."
        verdict = ex.verdict.upper() if ex.verdict == "corrupted" else ex.verdict
        lines.append(
            f"  {ex.id:>4}  {verdict:<10} {ex.hop or '':<5} "
            f"{status!s:>6} {size:>10}  {ex.method or '?'} {uri}"
        )
    return lines


def _region_words(kind: str, offset: int, length: int) -> str:
    """A region in words; a length of 0 means the size is not known."""
    if kind == "truncate":
        short = (
            f", {length:,} bytes short"
            if length
            else "; how much is missing is not known"
        )
        return f"truncated at offset {offset:,}{short}"
    if kind == "insert":
        return (
            f"{length:,} extra bytes at offset {offset:,}"
            if length
            else f"damage at offset {offset:,} (its size is not known)"
        )
    if kind == "delete":
        return f"{length:,} bytes missing at offset {offset:,}"
    return f"{length:,} bytes replaced at offset {offset:,}"


def _detail(ex: Exchange) -> list[str]:
    head = f"exchange {ex.id}: {ex.method or '?'} {ex.uri or '?'}: {ex.verdict}"
    if ex.hop:
        head += (
            f", by the {ex.hop}"
            if ex.hop == "proxy"
            else ", by the app (or its FastCGI server)"
        )
    lines = [head]
    for label, side in (("client  ", ex.client), ("upstream", ex.upstream)):
        if side is None:
            continue
        frames = "?"
        if side.first_frame is not None and side.last_frame is not None:
            frames = (
                format_frames([side.first_frame])
                + " to "
                + format_frames([side.last_frame])
            )
        rid = f", request id {side.request_id}" if side.request_id is not None else ""
        lines.append(
            f"  {label} {side.connection.label()}{rid}, frames "
            f"{frames}, {len(side.body):,} bytes"
        )
    for sentence in ex.attribution.evidence:
        lines.append(f"  - {sentence}")
    for n, region in enumerate(ex.attribution.regions, start=1):
        shown = region.client_frames or region.upstream_frames
        lines.append(
            f"  region {n}: {_region_words(region.kind, region.offset, region.length)}"
            f"; Wireshark: {wireshark_filter(shown) or '(no frames)'}"
        )
        if region.region is not None and ex.client and ex.upstream:
            r = region.region
            for line in hex_text(
                ex.upstream.body,
                r.upstream_start,
                r.upstream_end,
                ex.client.body,
                r.client_start,
                r.client_end,
            ):
                lines.append("    " + line)
    return lines


def report_text(analysis: Analysis) -> str:
    """The whole report a person reads after ``fcgiforensics diff``."""
    lines = [_summary_line(analysis), ""]
    if analysis.same_file:
        lines.append(_leg_line("both legs", analysis.client_leg))
    else:
        lines.append(_leg_line("client leg", analysis.client_leg))
        lines.append(_leg_line("upstream leg", analysis.upstream_leg))
    offset = analysis.pairing.clock_offset_ns
    if offset is not None and not analysis.same_file:
        lines.append(
            f"upstream requests were captured {offset / 1e6:+.3f} "
            f"ms after their client requests (median of "
            f"{analysis.pairing.offset_samples}: proxy latency "
            f"plus any clock offset between the captures)"
        )
    lines.append("")
    lines.extend(_table(analysis))
    for ex in analysis.exchanges:
        if ex.verdict in ("corrupted", "incomplete"):
            lines.append("")
            lines.extend(_detail(ex))
    return "\n".join(lines) + "\n"
