"""The human report of ``diff``: a summary table, then the evidence."""

from __future__ import annotations

from ..analysis import Analysis, Exchange
from ..attribution import RegionEvidence
from ..frames import format_frames, frames_by_file, ns_to_iso
from ..legs import Leg
from .hexview import hex_column, hex_text
from .json_report import wireshark_filter

__all__ = ["report_text", "STDERR_FINDINGS"]

_URI_WIDTH = 48

#: App findings that come from STDERR or from error text the app wrote;
#: the report quotes the request's STDERR beside them.
STDERR_FINDINGS = frozenset({"fcgi.stderr_in_stdout", "fcgi.traceback_in_stdout"})

#: How much STDERR the report quotes: its first lines, enough to name
#: the error and where it began while one region stays readable on a
#: terminal; the bytes read are bounded first, so that a megabyte of
#: STDERR with no newline is never decoded whole.
STDERR_LINES = 6
STDERR_LINE_CHARS = 160
STDERR_BYTES = 4096


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


def _capture_time(ns: int | None) -> str:
    return "" if ns is None else f" (first frame captured {ns_to_iso(ns)})"


def _leg_frames(
    role: str, leg: Leg, frames: tuple[int, ...], ns: int | None
) -> list[str]:
    """Where a region lies on one leg: capture time, and a Wireshark filter
    for each capture file of the leg that holds some of its frames."""
    if not frames and ns is None:
        return []
    lines = [f"    {role} leg{_capture_time(ns)}:"]
    by_file = frames_by_file(frames)
    for index, refs in by_file:
        path = leg.paths[index] if index < len(leg.paths) else leg.label
        lines.append(f"      {path}, Wireshark: {wireshark_filter(refs)}")
    if not by_file:
        lines.append("      (no frames)")
    return lines


def _printable(text: str) -> str:
    """``text`` with every character a terminal would act on escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _stderr_lines(stderr: bytes) -> list[str]:
    """The first lines of the app's STDERR, escaped and bounded."""
    shown = stderr[:STDERR_BYTES].decode("utf-8", "backslashreplace")
    lines = shown.splitlines()
    out = [f"    STDERR the app sent for this request ({len(stderr):,} bytes):"]
    for line in lines[:STDERR_LINES]:
        text = _printable(line)
        if len(text) > STDERR_LINE_CHARS:
            text = text[: STDERR_LINE_CHARS - 3] + "..."
        out.append(f"      | {text}")
    if len(lines) > STDERR_LINES or len(stderr) > STDERR_BYTES:
        out.append(f"      | ... (first {min(len(lines), STDERR_LINES)} lines shown)")
    return out


def _stderr_related(ex: Exchange, region: RegionEvidence) -> bool:
    """True when the app's damage at ``region`` was found in its STDERR
    or in error text it wrote."""
    return any(
        f.name in STDERR_FINDINGS
        and (f.body_offset is None or f.body_offset == region.offset)
        for f in ex.attribution.findings
    )


def _app_bytes(ex: Exchange, region: RegionEvidence) -> list[str]:
    """The upstream bytes at an app-side region (the app's own damage has
    no client counterpart to set beside it)."""
    side = ex.upstream
    if side is None or side.body.released:
        return []
    size = len(side.body)
    start = min(region.offset, size)
    end = min(region.offset + region.length, size)
    if end > start:
        title = f"upstream body bytes {start:,} to {end - 1:,}"
    elif start >= size:
        title = f"upstream body up to where it stops, at offset {start:,}"
    else:
        title = f"upstream body around offset {start:,} (0x{start:x})"
    return [f"    {title}:"] + [
        "    " + line for line in hex_column(side.body, start, end)
    ]


def _region_lines(
    analysis: Analysis, ex: Exchange, number: int, region: RegionEvidence
) -> list[str]:
    words = _region_words(region.kind, region.offset, region.length)
    lines = [f"  region {number}: {words}"]
    lines += _leg_frames(
        "client", analysis.client_leg, region.client_frames, region.client_time_ns
    )
    lines += _leg_frames(
        "upstream",
        analysis.upstream_leg,
        region.upstream_frames,
        region.upstream_time_ns,
    )
    if ex.hop == "app" and ex.fcgi is not None and ex.fcgi.request.stderr:
        if _stderr_related(ex, region):
            lines += _stderr_lines(ex.fcgi.request.stderr)
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
    elif ex.hop == "app":
        lines += _app_bytes(ex, region)
    return lines


def _detail(analysis: Analysis, ex: Exchange) -> list[str]:
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
        lines += _region_lines(analysis, ex, n, region)
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
            lines.extend(_detail(analysis, ex))
    return "\n".join(lines) + "\n"
