"""Reports of the ``streams`` command: rows of connections, text or JSON."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..capture.leg import LegStats
from ..frames import frame_number, ns_to_iso
from ..reassembly import Connection, HalfStream

__all__ = ["connection_row", "streams_json", "streams_text"]


def _half_row(half: HalfStream) -> dict[str, Any]:
    return {
        "bytes": half.length,
        "packets": half.packets,
        "gaps": [
            {"offset": g.offset, "length": g.length, "reason": g.reason}
            for g in half.gaps
        ],
        "unobserved_bytes": sum(g.length for g in half.gaps),
        "conflicts": len(half.conflicts),
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
            f"{'s->c bytes':>10}  {'frames':<13} anomalies"
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
                f"{names or '-'}"
            )
        lines.append("")
    return "\n".join(lines)
