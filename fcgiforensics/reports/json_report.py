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
from ..capture.packets import LINKTYPE_NAMES
from ..frames import frame_file, frame_number, frames_by_file, ns_to_iso
from ..legs import Leg

__all__ = [
    "FORMAT",
    "EXTENSIONS",
    "report_json",
    "leg_paths",
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
    "first_frame_capture": "the capture file holding first_frame (rotated legs)",
    "last_frame_capture": "the capture file holding last_frame",
    "client_frames_by_capture": "client_frames grouped by the file holding them",
    "upstream_frames_by_capture": "upstream_frames grouped likewise",
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
    """One CAPTURE per file of the leg; a rotated leg's files each count
    the connections that began in them and the anomalies seen in them
    (an anomaly with no frame counts in the first file)."""
    files = leg.stats.files
    connections = [0] * len(files)
    for conn in leg.connections:
        connections[min(frame_file(conn.first_frame), len(files) - 1)] += 1
    anomalies: list[dict[str, int]] = [{} for _ in files]
    for anomaly in leg.anomalies:
        index = 0 if anomaly.first_frame is None else frame_file(anomaly.first_frame)
        counts = anomalies[min(index, len(files) - 1)]
        counts[anomaly.name] = counts.get(anomaly.name, 0) + 1
    rows = []
    for i, info in enumerate(files):
        one = len(files) == 1
        rows.append(
            {
                "path": info.path,
                "role": role,
                "format": info.format,
                "link_types": leg.stats.link_type_names
                if one
                else [LINKTYPE_NAMES.get(t, f"LINKTYPE_{t}") for t in info.link_types],
                "packets": leg.stats.packets if one else info.records,
                "tcp_connections": connections[i],
                "anomalies": anomalies[i],
            }
        )
    return rows


def _path(paths: list[str], index: int) -> str:
    """The file of a leg with ``index`` (the last one past the end)."""
    return paths[min(index, len(paths) - 1)] if paths else ""


def _capture_of(paths: list[str], ref: int | None) -> str | None:
    """The file of a leg that holds frame ``ref``."""
    if ref is None or not paths:
        return None
    return _path(paths, frame_file(ref))


def _by_capture(paths: list[str], refs: tuple[int, ...]) -> list[dict[str, Any]]:
    """``[{"capture": path, "frames": [n, ...]}, ...]``, files in leg order."""
    return [
        {
            "capture": _path(paths, index),
            "frames": sorted({frame_number(r) for r in group}),
        }
        for index, group in frames_by_file(refs)
    ]


def _side(
    side: Side | None, exchange: Exchange, upstream: bool, paths: list[str]
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
            "first_frame_capture": _capture_of(paths, side.first_frame),
            "last_frame_capture": _capture_of(paths, side.last_frame),
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


def _region(region: RegionEvidence, paths: Paths) -> dict[str, Any]:
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
        "client_frames_by_capture": _by_capture(paths[0], region.client_frames),
        "upstream_frames_by_capture": _by_capture(paths[1], region.upstream_frames),
        "records": list(region.records),
        "record_numbers": record_numbers(region.records),
        "shapes": list(region.shapes),
        "client_time": _iso(region.client_time_ns),
        "upstream_time": _iso(region.upstream_time_ns),
    }


def _iso(ns: int | None) -> str | None:
    return None if ns is None else ns_to_iso(ns)


#: The capture files of the client leg and of the upstream leg, in the
#: order given, so that a frame reference names its file.
Paths = tuple[list[str], list[str]]


def leg_paths(analysis: Analysis) -> Paths:
    """The files of both legs of ``analysis``."""
    return (list(analysis.client_leg.paths), list(analysis.upstream_leg.paths))


def exchange_json(ex: Exchange, paths: Paths = ([], [])) -> dict[str, Any]:
    """One EXCHANGE object of the contract; ``paths`` (see
    :func:`leg_paths`) name the file of each frame."""
    return {
        "id": ex.id,
        "method": ex.method,
        "uri": ex.uri,
        "client": _side(ex.client, ex, upstream=False, paths=paths[0]),
        "upstream": _side(ex.upstream, ex, upstream=True, paths=paths[1]),
        "verdict": ex.verdict,
        "hop": ex.hop,
        "regions": [_region(r, paths) for r in ex.attribution.regions],
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
        "exchanges": [
            exchange_json(ex, leg_paths(analysis)) for ex in analysis.exchanges
        ],
        "summary": analysis.summary(),
        "clock_offset_ns": analysis.pairing.clock_offset_ns,
    }
