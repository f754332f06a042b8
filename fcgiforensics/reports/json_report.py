"""The ``diff --json`` document: the public contract of ../REPORT.md.

Field names and meanings follow that contract exactly.  Extensions (new
fields only) are listed in :data:`EXTENSIONS` and in the README; a
change of meaning would need a new ``format`` number.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import __version__
from ..analysis import Analysis, Exchange, Side
from ..attribution import RegionEvidence
from ..frames import frame_number, ns_to_iso
from ..legs import Leg

__all__ = [
    "FORMAT",
    "EXTENSIONS",
    "report_json",
    "wireshark_filter",
    "record_numbers",
]

FORMAT = "fcgiforensics.diff/1"

#: Fields this tool adds to the contract; scripts may ignore them.
EXTENSIONS = {
    "clock_offset_ns": (
        "median upstream minus client request time: proxy latency plus "
        "any offset between the capture clocks"
    ),
    "paired_by": "endpoint | uri | time | unmatched: how the pair was made",
    "body_sha256": "null when some body bytes were not observed",
    "unobserved_bytes": "body bytes the capture lacks, on that side",
    "upstream_wireshark_filter": "the region's frames on the upstream leg",
    "wireshark_filter_leg": "client | upstream: whose capture wireshark_filter is for",
    "records": "the FastCGI records that carried the region's bytes",
    "record_numbers": "the numbers of those records, as integers",
    "shapes": "recognisable shapes of the region's bytes",
    "client_time": "capture time of the frame with the region's first byte",
    "upstream_time": "the same on the upstream leg",
}


def wireshark_filter(frames: tuple[int, ...] | list[int]) -> str:
    """A Wireshark display filter selecting ``frames``."""
    numbers = sorted({frame_number(f) for f in frames})
    if not numbers:
        return ""
    if len(numbers) == 1:
        return f"frame.number == {numbers[0]}"
    return "frame.number in {" + " ".join(map(str, numbers)) + "}"


def record_numbers(labels: Iterable[str]) -> list[int]:
    """The record numbers that ``records`` labels name, each once, in order.

    The upstream body labels each piece ``"record N"``, N counting the
    app's records from 1 (``FcgiRecord.number``); labels of any other
    form name no record.
    """
    numbers = set()
    for label in labels:
        kind, _, number = label.partition(" ")
        if kind == "record" and number.isascii() and number.isdigit():
            numbers.add(int(number))
    return sorted(numbers)


def _capture(leg: Leg, role: str) -> list[dict[str, Any]]:
    rows = []
    for info in leg.stats.files:
        rows.append(
            {
                "path": info.path,
                "role": role,
                "format": info.format,
                "link_types": leg.stats.link_type_names,
                "packets": leg.stats.packets
                if len(leg.stats.files) == 1
                else info.records,
                "tcp_connections": len(leg.connections),
                "anomalies": leg.anomaly_counts(),
            }
        )
    return rows


def _side(
    side: Side | None, exchange: Exchange, upstream: bool
) -> dict[str, Any] | None:
    if side is None:
        return None
    doc: dict[str, Any] = {
        "connection": side.connection.label(),
        "client_port": side.client_port,
    }
    if upstream:
        doc["request_id"] = side.request_id
    doc.update(
        {
            "status": side.status,
            "body_length": len(side.body),
            "body_sha256": side.body_sha256,
            "first_frame": frame_number(side.first_frame)
            if side.first_frame is not None
            else None,
            "last_frame": frame_number(side.last_frame)
            if side.last_frame is not None
            else None,
            "start": ns_to_iso(side.start_ns),
            "complete": side.complete,
            "transfer": {
                "chunked": side.chunked,
                "content_encoding": side.content_encoding,
            },
            "unobserved_bytes": sum(b - a for a, b in side.body.unobserved),
        }
    )
    attribution = exchange.attribution
    if attribution.digest is not None:
        matches = (
            attribution.digest_matches
            if upstream
            else attribution.client_digest_matches
        )
        doc["digest"] = {"header": attribution.digest.header, "matches": matches}
    return doc


def _region(region: RegionEvidence) -> dict[str, Any]:
    client = sorted({frame_number(f) for f in region.client_frames})
    upstream = sorted({frame_number(f) for f in region.upstream_frames})
    return {
        "offset": region.offset,
        "length": region.length,
        "kind": region.kind,
        "client_frames": client,
        "upstream_frames": upstream,
        "wireshark_filter": wireshark_filter(client or upstream),
        # Which leg's capture ``wireshark_filter`` selects frames of: the
        # client leg's when the region has client frames (damage by the
        # proxy), else the upstream leg's (damage by the app).
        "wireshark_filter_leg": "client"
        if client
        else "upstream"
        if upstream
        else None,
        "upstream_wireshark_filter": wireshark_filter(upstream),
        "records": list(region.records),
        "record_numbers": record_numbers(region.records),
        "shapes": list(region.shapes),
        "client_time": _iso(region.client_time_ns),
        "upstream_time": _iso(region.upstream_time_ns),
    }


def _iso(ns: int | None) -> str | None:
    return None if ns is None else ns_to_iso(ns)


def exchange_json(ex: Exchange) -> dict[str, Any]:
    """One EXCHANGE object of the contract."""
    return {
        "id": ex.id,
        "method": ex.method,
        "uri": ex.uri,
        "client": _side(ex.client, ex, upstream=False),
        "upstream": _side(ex.upstream, ex, upstream=True),
        "verdict": ex.verdict,
        "hop": ex.hop,
        "regions": [_region(r) for r in ex.attribution.regions],
        "evidence": list(ex.attribution.evidence),
        "paired_by": ex.paired_by,
    }


def report_json(analysis: Analysis) -> dict[str, Any]:
    """The whole ``fcgiforensics.diff/1`` document."""
    if analysis.same_file:
        captures = _capture(analysis.client_leg, "client+upstream")
    else:
        captures = _capture(analysis.client_leg, "client") + _capture(
            analysis.upstream_leg, "upstream"
        )
    return {
        "format": FORMAT,
        "tool_version": __version__,
        "captures": captures,
        "exchanges": [exchange_json(ex) for ex in analysis.exchanges],
        "summary": analysis.summary(),
        "clock_offset_ns": analysis.pairing.clock_offset_ns,
    }
