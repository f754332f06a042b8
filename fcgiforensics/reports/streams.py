"""Reports of the ``streams`` command: rows of connections, text or JSON."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..capture.leg import LegStats
from ..frames import frame_number, ns_to_iso
from ..reassembly import Connection, HalfStream

__all__ = ["connection_row", "streams_json", "streams_text"]


#: How many bytes of each copy of a conflicting retransmission the JSON
#: shows: enough to see the difference, not a dump of the stream.
CONFLICT_BYTES_SHOWN = 64


def _maybe_number(ref: int | None) -> int | None:
    return None if ref is None else frame_number(ref)


def _half_row(half: HalfStream) -> dict[str, Any]:
    return {
        "bytes": half.length,
        "packets": half.packets,
        "gaps": [
            {
                "offset": g.offset,
                "length": g.length,
                "reason": g.reason,
                "before_frame": _maybe_number(g.before_frame),
                "after_frame": _maybe_number(g.after_frame),
            }
            for g in half.gaps
        ],
        "unobserved_bytes": sum(g.length for g in half.gaps),
        "conflicts": len(half.conflicts),
        "conflicting_copies": [
            {
                "offset": c.offset,
                "length": max(len(c.first), len(c.second)),
                "first_frames": [frame_number(f) for f in c.first_frames],
                "second_frame": frame_number(c.second_frame),
                "receiver_kept": c.receiver_kept,
                "first_hex": c.first[:CONFLICT_BYTES_SHOWN].hex(),
                "second_hex": c.second[:CONFLICT_BYTES_SHOWN].hex(),
            }
            for c in half.conflicts
        ],
        "retransmissions": half.retransmissions,
        "out_of_order": half.out_of_order,
        "keepalives": half.keepalives,
        "fin": half.fin,
        "rst": half.rst,
    }


def connection_row(conn: Connection) -> dict[str, Any]:
    """One connection as a JSON-ready mapping."""
    return {
        "index": conn.index,
        "connection": conn.label(),
        "client_port": conn.client[1],
        "server_port": conn.server[1],
        "first_frame": frame_number(conn.first_frame),
        "last_frame": frame_number(conn.last_frame),
        "start": ns_to_iso(conn.first_time),
        "end": ns_to_iso(conn.last_time),
        "seconds": (conn.last_time - conn.first_time) / 1e9,
        "midstream": conn.midstream,
        "to_server": _half_row(conn.to_server),
        "to_client": _half_row(conn.to_client),
        "anomalies": dict(Counter(a.name for a in conn.anomalies)),
    }


def streams_json(
    path_stats: list[tuple[str, LegStats]], connections: list[list[Connection]]
) -> dict[str, Any]:
    """The ``streams --json`` document."""
    captures = []
    for (path, stats), conns in zip(path_stats, connections, strict=True):
        counts = Counter(a.name for a in stats.anomalies)
        for conn in conns:
            counts.update(a.name for a in conn.anomalies)
        captures.append(
            {
                "path": path,
                "format": stats.files[0].format if stats.files else "",
                "link_types": stats.link_type_names,
                "packets": stats.packets,
                "tcp_segments": stats.tcp_segments,
                "not_tcp": dict(stats.not_tcp),
                "tcp_connections": len(conns),
                "anomalies": dict(counts),
                "capture_anomalies": [str(a) for a in stats.anomalies],
                "connections": [connection_row(c) for c in conns],
            }
        )
    return {"format": "fcgiforensics.streams/1", "captures": captures}


def streams_text(doc: dict[str, Any]) -> str:
    """A table a person reads: one line per connection."""
    lines: list[str] = []
    for cap in doc["captures"]:
        lines.append(
            f"{cap['path']}: {cap['format']} {','.join(cap['link_types'])}, "
            f"{cap['packets']} packets, {cap['tcp_connections']} TCP "
            "connections"
        )
        for text in cap["capture_anomalies"]:
            lines.append(f"  ! {text}")
        head = (
            f"  {'#':>4}  {'connection':<44} {'c->s bytes':>10} "
            f"{'s->c bytes':>10}  {'frames':<13} {'start (UTC)':<15} "
            f"{'seconds':>8}  anomalies"
        )
        lines.append(head)
        for row in cap["connections"]:
            frames = f"{row['first_frame']}-{row['last_frame']}"
            names = ", ".join(
                f"{n} x{c}" if c > 1 else n for n, c in sorted(row["anomalies"].items())
            )
            lines.append(
                f"  {row['index']:>4}  {row['connection']:<44} "
                f"{row['to_server']['bytes']:>10} "
                f"{row['to_client']['bytes']:>10}  {frames:<13} "
                f"{row['start'][11:26]:<15} {row['seconds']:>8.3f}  "
                f"{names or '-'}"
            )
        lines.append("")
    return "\n".join(lines)
