"""A checker for the fcgiforensics.diff/1 contract (../shared/REPORT.md).

Written from the contract's text, field by field, so that a report that
drops, renames or retypes a required field fails the tests that use it.
"""

from __future__ import annotations

import re
from typing import Any

_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _require(obj: dict[str, Any], key: str, types: tuple[type, ...], where: str) -> Any:
    assert key in obj, f"{where}: missing {key!r}"
    value = obj[key]
    assert isinstance(value, types), (
        f"{where}.{key}: {type(value).__name__} is not {types}"
    )
    return value


def check_side(side: dict[str, Any], where: str, upstream: bool) -> None:
    _require(side, "connection", (str,), where)
    _require(side, "client_port", (int,), where)
    if upstream:
        _require(side, "request_id", (int,), where)
    _require(side, "status", (int, type(None)), where)
    _require(side, "body_length", (int,), where)
    sha = _require(side, "body_sha256", (str, type(None)), where)
    if sha is not None:
        assert _HEX64.fullmatch(sha), f"{where}.body_sha256: {sha!r}"
    for key in ("first_frame", "last_frame"):
        frame = _require(side, key, (int, type(None)), where)
        assert frame is None or frame >= 1, f"{where}.{key} is 1-based"
    assert _ISO.fullmatch(_require(side, "start", (str,), where))
    _require(side, "complete", (bool,), where)
    transfer = _require(side, "transfer", (dict,), where)
    _require(transfer, "chunked", (bool,), where + ".transfer")
    _require(transfer, "content_encoding", (str, type(None)), where + ".transfer")
    if "digest" in side:
        digest = side["digest"]
        _require(digest, "header", (str,), where + ".digest")
        _require(digest, "matches", (bool, type(None)), where + ".digest")


def check_region(region: dict[str, Any], where: str) -> None:
    offset = _require(region, "offset", (int,), where)
    length = _require(region, "length", (int,), where)
    assert offset >= 0 and length >= 0
    assert _require(region, "kind", (str,), where) in (
        "replace",
        "insert",
        "delete",
        "truncate",
    )
    for key in ("client_frames", "upstream_frames"):
        frames = _require(region, key, (list,), where)
        assert all(isinstance(f, int) and f >= 1 for f in frames)
    _require(region, "wireshark_filter", (str,), where)


def check_report(doc: dict[str, Any]) -> None:
    """Assert that ``doc`` honours every required part of the contract."""
    assert _require(doc, "format", (str,), "report") == "fcgiforensics.diff/1"
    _require(doc, "tool_version", (str,), "report")
    for i, cap in enumerate(_require(doc, "captures", (list,), "report")):
        where = f"captures[{i}]"
        _require(cap, "path", (str,), where)
        assert _require(cap, "role", (str,), where) in (
            "client",
            "upstream",
            "client+upstream",
        )
        assert _require(cap, "format", (str,), where) in ("pcap", "pcapng")
        _require(cap, "link_types", (list,), where)
        _require(cap, "packets", (int,), where)
        _require(cap, "tcp_connections", (int,), where)
        anomalies = _require(cap, "anomalies", (dict,), where)
        assert all(isinstance(v, int) for v in anomalies.values())
    counts = {"ok": 0, "corrupted": 0, "incomplete": 0, "unmatched": 0}
    exchanges = _require(doc, "exchanges", (list,), "report")
    for i, ex in enumerate(exchanges):
        where = f"exchanges[{i}]"
        _require(ex, "id", (int,), where)
        _require(ex, "method", (str, type(None)), where)
        _require(ex, "uri", (str, type(None)), where)
        verdict = _require(ex, "verdict", (str,), where)
        assert verdict in counts
        counts[verdict] += 1
        hop = _require(ex, "hop", (str, type(None)), where)
        assert (hop in ("app", "proxy")) == (verdict == "corrupted")
        for key, upstream in (("client", False), ("upstream", True)):
            side = _require(ex, key, (dict, type(None)), where)
            if side is not None:
                check_side(side, f"{where}.{key}", upstream)
        if verdict == "unmatched":
            assert (ex["client"] is None) != (ex["upstream"] is None)
        for j, region in enumerate(_require(ex, "regions", (list,), where)):
            check_region(region, f"{where}.regions[{j}]")
        evidence = _require(ex, "evidence", (list,), where)
        assert all(isinstance(e, str) for e in evidence)
    summary = _require(doc, "summary", (dict,), "report")
    assert summary == {"exchanges": len(exchanges), **counts}
