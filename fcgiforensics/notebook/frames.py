"""pandas DataFrames over an :class:`~fcgiforensics.analysis.Analysis`.

Column names follow the ``diff --json`` report (REPORT.md): a field
nested in the report is named by its dotted path, as
``pandas.json_normalize`` would flatten it (``client.status``,
``upstream.transfer.chunked``), so a notebook and a script reading the
JSON use the same words.  Columns the report has no field for are
additions, named after what they hold.

Every column has a fixed dtype, whatever the captures hold: nullable
``Int64``, ``boolean`` and ``string`` where a value may be missing,
``datetime64[ns, UTC]`` for capture times (kept to the nanosecond).
Frame columns hold the 1-based numbers Wireshark shows.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..analysis import Analysis, Exchange, Side
from ..anomalies import CATALOGUE
from ..decoders.base import Direction
from ..frames import frame_number
from ..legs import HttpItem, Leg
from ..reassembly import Connection, HalfStream
from ..reports.json_report import Paths, exchange_json, leg_paths

__all__ = [
    "TIME_DTYPE",
    "EXCHANGE_COLUMNS",
    "REGION_COLUMNS",
    "REGION_JSON_COLUMNS",
    "EXCHANGE_ADDITIONS",
    "REGION_ADDITIONS",
    "CONNECTION_COLUMNS",
    "ANOMALY_COLUMNS",
    "RECORD_COLUMNS",
    "PACKET_COLUMNS",
    "as_analysis",
    "find_exchange",
    "legs_of",
    "exchanges_frame",
    "regions_frame",
    "connections_frame",
    "anomalies_frame",
    "records_frame",
    "packets_frame",
    "ResponseSpan",
    "response_spans",
    "exchange_ids",
]

TIME_DTYPE = "datetime64[ns, UTC]"

# One SIDE of the report, as flattened columns (suffixes after "client."
# or "upstream.").  ``request_id`` exists on the upstream side only.
_SIDE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("connection", "string"),
    ("client_port", "Int64"),
    ("request_id", "Int64"),
    ("status", "Int64"),
    ("body_length", "Int64"),
    ("body_sha256", "string"),
    ("first_frame", "Int64"),
    ("last_frame", "Int64"),
    ("first_frame_capture", "string"),
    ("last_frame_capture", "string"),
    ("start", TIME_DTYPE),
    ("complete", "boolean"),
    ("transfer.chunked", "boolean"),
    ("transfer.content_encoding", "string"),
    ("unobserved_bytes", "Int64"),
    ("digest.header", "string"),
    ("digest.matches", "boolean"),
)


def _side_columns(prefix: str) -> dict[str, str]:
    return {
        f"{prefix}.{name}": dtype
        for name, dtype in _SIDE_COLUMNS
        if name != "request_id" or prefix == "upstream"
    }


#: Columns of :func:`exchanges_frame` and their dtypes, in order.
EXCHANGE_COLUMNS: dict[str, str] = {
    "id": "int64",
    "method": "string",
    "uri": "string",
    "verdict": "string",
    "hop": "string",
    "paired_by": "string",
    "region_count": "int64",
    "region_bytes": "int64",
    "evidence": "object",
    **_side_columns("client"),
    **_side_columns("upstream"),
}

#: Columns of :func:`regions_frame` that are REGION fields of the
#: ``diff --json`` report, in the report's order, and their dtypes.
#: ``client_time`` and ``upstream_time`` keep the nanoseconds that the
#: report's ISO strings round to microseconds; ``record_numbers`` is a
#: list of ints per region, ``records`` the same records as labels.
REGION_JSON_COLUMNS: dict[str, str] = {
    "offset": "int64",
    "length": "int64",
    "kind": "string",
    "client_frames": "object",
    "upstream_frames": "object",
    "wireshark_filter": "string",
    "wireshark_filter_leg": "string",
    "upstream_wireshark_filter": "string",
    "client_frames_by_capture": "object",
    "upstream_frames_by_capture": "object",
    "records": "object",
    "record_numbers": "object",
    "shapes": "object",
    "client_time": TIME_DTYPE,
    "upstream_time": TIME_DTYPE,
}

#: Columns of :func:`regions_frame`: the REGION fields, plus which
#: exchange it belongs to (``exchange_id``, ``hop``), its number
#: (``region``, from 1 within its exchange, as the text report prints it
#: and ``Investigation.byte_view(..., region=N)`` takes it), and the
#: ``[start, end)`` body range it covers on each side.
REGION_COLUMNS: dict[str, str] = {
    "exchange_id": "int64",
    "region": "int64",
    "hop": "string",
    **REGION_JSON_COLUMNS,
    "upstream_start": "Int64",
    "upstream_end": "Int64",
    "client_start": "Int64",
    "client_end": "Int64",
}

#: Columns of :func:`exchanges_frame` that are not EXCHANGE fields of
#: the report (whose ``regions`` list is :func:`regions_frame`).
EXCHANGE_ADDITIONS = ("region_count", "region_bytes")

#: Columns of :func:`regions_frame` that are not REGION fields.
REGION_ADDITIONS = tuple(c for c in REGION_COLUMNS if c not in REGION_JSON_COLUMNS)

# Per-direction statistics of a connection: (suffix, dtype).
_HALF_COLUMNS: tuple[tuple[str, str], ...] = (
    ("packets", "int64"),
    ("bytes", "int64"),
    ("retransmissions", "int64"),
    ("out_of_order", "int64"),
    ("gaps", "int64"),
    ("gap_bytes", "int64"),
    ("conflicts", "int64"),
)

#: Columns of :func:`connections_frame`.
CONNECTION_COLUMNS: dict[str, str] = {
    "leg": "string",
    "connection": "string",
    "index": "int64",
    "protocol": "string",
    "client_port": "int64",
    "server_port": "int64",
    "midstream": "bool",
    "first_frame": "Int64",
    "last_frame": "Int64",
    "start": TIME_DTYPE,
    "end": TIME_DTYPE,
    **{f"to_server.{n}": t for n, t in _HALF_COLUMNS},
    **{f"to_client.{n}": t for n, t in _HALF_COLUMNS},
}

#: Columns of :func:`anomalies_frame`.  ``frame`` is the first frame the
#: anomaly was seen in; ``meaning`` is its line in the catalogue.
ANOMALY_COLUMNS: dict[str, str] = {
    "leg": "string",
    "name": "string",
    "meaning": "string",
    "detail": "string",
    "capture": "string",
    "connection": "string",
    "direction": "string",
    "stream_offset": "Int64",
    "frame": "Int64",
    "last_frame": "Int64",
    "file_offset": "Int64",
}

#: Columns of :func:`records_frame` (FastCGI 1.0 spec, section 3.3).
RECORD_COLUMNS: dict[str, str] = {
    "exchange_id": "int64",
    "connection": "string",
    "direction": "string",
    "number": "int64",
    "type": "string",
    "request_id": "int64",
    "content_length": "int64",
    "padding_length": "int64",
    "stream_offset": "int64",
    "end_offset": "int64",
    "frame": "Int64",
    "time": TIME_DTYPE,
}

#: Columns of :func:`packets_frame`.  ``kind`` is ``data`` (a frame whose
#: bytes the stream carries), ``gap`` (bytes the capture lacks),
#: ``conflict`` (a later copy whose bytes differ from the first) or
#: ``copy`` (a later copy of bytes already carried, unchanged).
PACKET_COLUMNS: dict[str, str] = {
    "leg": "string",
    "connection": "string",
    "direction": "string",
    "kind": "string",
    "frame": "Int64",
    "time": TIME_DTYPE,
    "stream_offset": "int64",
    "length": "int64",
    "late": "boolean",
    "retransmission": "boolean",
    "gap_reason": "string",
}


# -- helpers shared by the notebook modules ------------------------------


def as_analysis(source: object) -> Analysis:
    """The :class:`Analysis` itself, or the one a notebook object wraps."""
    if isinstance(source, Analysis):
        return source
    inner = getattr(source, "analysis", None)
    if isinstance(inner, Analysis):
        return inner
    raise TypeError(f"expected an Analysis, got {type(source).__name__}")


def find_exchange(analysis: Analysis, exchange_id: int) -> Exchange:
    """The exchange numbered ``exchange_id``; KeyError names the valid ids."""
    for ex in analysis.exchanges:
        if ex.id == exchange_id:
            return ex
    ids = [ex.id for ex in analysis.exchanges]
    span = f"{ids[0]} to {ids[-1]}" if ids else "none"
    raise KeyError(f"no exchange {exchange_id} (exchanges: {span})")


def legs_of(analysis: Analysis) -> list[tuple[str, Leg]]:
    """Each distinct leg with its report role (``client+upstream`` once)."""
    if analysis.same_file:
        return [("client+upstream", analysis.client_leg)]
    return [("client", analysis.client_leg), ("upstream", analysis.upstream_leg)]


def _frame(ref: int | None) -> int | None:
    return frame_number(ref) if ref is not None else None


def _typed(rows: list[dict[str, Any]], columns: dict[str, str]) -> pd.DataFrame:
    """A frame with exactly ``columns``, in order, with their dtypes."""
    data: dict[str, Any] = {}
    for name, dtype in columns.items():
        values = [row.get(name) for row in rows]
        if dtype == TIME_DTYPE:
            data[name] = pd.to_datetime(
                pd.array(values, dtype="Int64"), unit="ns", utc=True
            )
        elif dtype == "object":
            series = pd.Series(values, dtype="object")
            data[name] = series
        else:
            data[name] = pd.array(values, dtype=dtype)
    frame = pd.DataFrame(data, columns=list(columns))
    return frame.astype({n: t for n, t in columns.items() if t != TIME_DTYPE})


def _flatten(doc: dict[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            _flatten(value, name + ".", out)
        else:
            out[name] = value


# -- exchanges and regions ------------------------------------------------


def _exchange_row(ex: Exchange, paths: Paths) -> dict[str, Any]:
    doc = exchange_json(ex, paths)
    regions = doc.pop("regions")
    row: dict[str, Any] = {}
    _flatten(doc, "", row)
    row["region_count"] = len(regions)
    row["region_bytes"] = sum(r["length"] for r in regions)

    # The report's ISO times keep microseconds; the frame keeps the ns.
    for name, side in (("client", ex.client), ("upstream", ex.upstream)):
        row[f"{name}.start"] = side.start_ns if side is not None else None
    return row


def exchanges_frame(analysis: Analysis) -> pd.DataFrame:
    """One row per exchange: verdict, hop and both sides' SIDE fields."""
    paths = leg_paths(analysis)
    rows = [_exchange_row(ex, paths) for ex in analysis.exchanges]
    return _typed(rows, EXCHANGE_COLUMNS)


def regions_frame(analysis: Analysis) -> pd.DataFrame:
    """One row per REGION of every exchange, with its exchange's id."""
    rows: list[dict[str, Any]] = []
    paths = leg_paths(analysis)
    for ex in analysis.exchanges:
        doc = exchange_json(ex, paths)
        for n, (region, evidence) in enumerate(
            zip(doc["regions"], ex.attribution.regions, strict=True), start=1
        ):
            row = dict(region, exchange_id=ex.id, region=n, hop=ex.hop)
            # The report's ISO times keep microseconds; the frame keeps the ns.
            row["client_time"] = evidence.client_time_ns
            row["upstream_time"] = evidence.upstream_time_ns
            diff = evidence.region
            if diff is not None:
                row["upstream_start"] = diff.upstream_start
                row["upstream_end"] = diff.upstream_end
                row["client_start"] = diff.client_start
                row["client_end"] = diff.client_end
            rows.append(row)
    return _typed(rows, REGION_COLUMNS)


# -- connections and anomalies --------------------------------------------


def _half_row(half: HalfStream, prefix: str, row: dict[str, Any]) -> None:
    row[f"{prefix}.packets"] = half.packets
    row[f"{prefix}.bytes"] = half.length
    row[f"{prefix}.retransmissions"] = half.retransmissions
    row[f"{prefix}.out_of_order"] = half.out_of_order
    row[f"{prefix}.gaps"] = len(half.gaps)
    row[f"{prefix}.gap_bytes"] = sum(g.length for g in half.gaps)
    row[f"{prefix}.conflicts"] = len(half.conflicts)


def connections_frame(analysis: Analysis) -> pd.DataFrame:
    """One row per TCP connection of each leg, with its evidence counts."""
    rows: list[dict[str, Any]] = []
    for role, leg in legs_of(analysis):
        for conn in leg.connections:
            protocol = leg.protocols.get(conn.index)
            row: dict[str, Any] = {
                "leg": role,
                "connection": conn.label(),
                "index": conn.index,
                "protocol": protocol.value if protocol is not None else None,
                "client_port": conn.client[1],
                "server_port": conn.server[1],
                "midstream": conn.midstream,
                "first_frame": _frame(conn.first_frame),
                "last_frame": _frame(conn.last_frame),
                "start": conn.first_time,
                "end": conn.last_time,
            }
            _half_row(conn.to_server, "to_server", row)
            _half_row(conn.to_client, "to_client", row)
            rows.append(row)
    return _typed(rows, CONNECTION_COLUMNS)


def anomalies_frame(analysis: Analysis) -> pd.DataFrame:
    """One row per anomaly of each leg, with where it was seen."""
    rows: list[dict[str, Any]] = []
    for role, leg in legs_of(analysis):
        for a in leg.anomalies:
            rows.append(
                {
                    "leg": role,
                    "name": a.name,
                    "meaning": CATALOGUE.get(a.name),
                    "detail": a.detail,
                    "capture": a.capture,
                    "connection": a.connection,
                    "direction": a.direction,
                    "stream_offset": a.stream_offset,
                    "frame": _frame(a.first_frame),
                    "last_frame": _frame(a.last_frame),
                    "file_offset": a.file_offset,
                }
            )
    return _typed(rows, ANOMALY_COLUMNS)


# -- FastCGI records ------------------------------------------------------


def _first_frame_at(half: HalfStream, offset: int) -> int | None:
    frames = half.frames_for(offset, offset + 1)
    return frames[0] if frames else None


def records_frame(analysis: Analysis) -> pd.DataFrame:
    """One row per FastCGI record of every paired upstream request."""
    rows: list[dict[str, Any]] = []
    for ex in analysis.exchanges:
        if ex.fcgi is None:
            continue
        conn = ex.fcgi.connection
        for rec in ex.fcgi.request.records:
            half = conn.halves[rec.direction]
            rows.append(
                {
                    "exchange_id": ex.id,
                    "connection": conn.label(),
                    "direction": rec.direction.label,
                    "number": rec.number,
                    "type": getattr(rec.type, "name", str(rec.type)),
                    "request_id": rec.request_id,
                    "content_length": rec.content_length,
                    "padding_length": rec.padding_length,
                    "stream_offset": rec.stream_offset,
                    "end_offset": rec.end_offset,
                    "frame": _frame(_first_frame_at(half, rec.stream_offset)),
                    "time": half.time_at(rec.stream_offset),
                }
            )
    return _typed(rows, RECORD_COLUMNS)


# -- packets of one exchange ----------------------------------------------


@dataclass(frozen=True, slots=True)
class ResponseSpan:
    """Where one side of an exchange lies on its connection.

    ``ranges`` maps each direction to the stream range ``[start, end)``
    its messages occupy (the request one way, the response the other).
    """

    leg: str
    side: Side
    ranges: dict[Direction, tuple[int, int]]


def _next_start(starts: list[int], start: int, end: int) -> int:
    """The first message start after ``start``, or ``end`` if none."""
    i = bisect.bisect_right(starts, start)
    return starts[i] if i < len(starts) else end


def _http_ranges(
    ex: Exchange, items: Sequence[HttpItem]
) -> dict[Direction, tuple[int, int]]:
    """Each message runs up to the next message on its connection (RFC
    9112 section 9.3: responses come in request order), so the chunk
    framing and trailers of a chunked body stay inside its range."""
    assert ex.http is not None
    conn = ex.http.connection
    requests: list[int] = []
    responses: list[int] = []
    for item in items:
        if item.connection is not conn:
            continue
        if item.exchange.request is not None:
            requests.append(item.exchange.request.head_start)
        if item.exchange.response is not None:
            responses.append(item.exchange.response.head_start)
    requests.sort()
    responses.sort()

    ranges: dict[Direction, tuple[int, int]] = {}
    req = ex.http.exchange.request
    resp = ex.http.exchange.response
    if req is not None:
        end = _next_start(requests, req.head_start, conn.to_server.length)
        ranges[Direction.TO_SERVER] = (req.head_start, end)
    if resp is not None:
        end = _next_start(responses, resp.head_start, conn.to_client.length)
        ranges[Direction.TO_CLIENT] = (resp.head_start, end)
    return ranges


def _fcgi_ranges(ex: Exchange) -> dict[Direction, tuple[int, int]]:
    assert ex.fcgi is not None
    ranges: dict[Direction, tuple[int, int]] = {}
    for rec in ex.fcgi.request.records:
        lo, hi = ranges.get(rec.direction, (rec.stream_offset, rec.end_offset))
        ranges[rec.direction] = (
            min(lo, rec.stream_offset),
            max(hi, rec.end_offset),
        )
    return ranges


def response_spans(analysis: Analysis, ex: Exchange) -> list[ResponseSpan]:
    """The client side's and the upstream side's spans, those that exist."""
    spans: list[ResponseSpan] = []
    if ex.client is not None and ex.http is not None:
        ranges = _http_ranges(ex, analysis.client_leg.http)
        spans.append(ResponseSpan("client", ex.client, ranges))
    if ex.upstream is not None and ex.fcgi is not None:
        spans.append(ResponseSpan("upstream", ex.upstream, _fcgi_ranges(ex)))
    return spans


class _FrameClock:
    """Capture time of any frame of a connection, from the frames it kept.

    Frames are written in capture order, so the nearest earlier frame
    that carried data gives a lower bound of a frame's time.
    """

    def __init__(self, conn: Connection) -> None:
        pairs = sorted(
            (frame, time)
            for half in conn.halves
            for frames, times in (
                (half.seg_frames, half.seg_times),
                (half.copy_frames, half.copy_times),
            )
            for frame, time in zip(frames, times, strict=True)
        )
        pairs.insert(0, (conn.first_frame, conn.first_time))
        self._frames = [f for f, _ in pairs]
        self._times = [t for _, t in pairs]

    def time_of(self, frame: int | None) -> int | None:
        if frame is None:
            return None
        i = bisect.bisect_right(self._frames, frame) - 1
        return self._times[max(i, 0)]


def _segment_rows(
    leg: str, conn: Connection, direction: Direction, lo: int, hi: int
) -> Iterable[dict[str, Any]]:
    half = conn.halves[direction]
    offsets = half.seg_offsets
    first = max(bisect.bisect_right(offsets, lo) - 1, 0)

    # A frame numbered below one already delivered came late: it filled
    # a hole after later bytes were captured (a retransmission, or
    # reordering on the way to the capture point).
    newest = max(half.seg_frames[:first], default=-1)
    for j in range(first, len(offsets)):
        start, length = offsets[j], half.seg_lengths[j]
        frame = half.seg_frames[j]
        late = frame < newest
        newest = max(newest, frame)
        if start >= hi:
            break
        if start + length <= lo:
            continue
        yield {
            "leg": leg,
            "connection": conn.label(),
            "direction": direction.label,
            "kind": "data",
            "frame": frame_number(frame),
            "time": half.seg_times[j],
            "stream_offset": start,
            "length": length,
            "late": late,
            "retransmission": late,
        }


def _evidence_rows(
    leg: str, conn: Connection, direction: Direction, lo: int, hi: int
) -> Iterable[dict[str, Any]]:
    half = conn.halves[direction]
    clock = _FrameClock(conn)
    base = {"leg": leg, "connection": conn.label(), "direction": direction.label}
    for gap in half.unobserved(lo, hi):
        yield dict(
            base,
            kind="gap",
            time=clock.time_of(gap.before_frame),
            stream_offset=gap.offset,
            length=gap.length,
            gap_reason=gap.reason,
        )
    conflicting = set()
    for c in half.conflicts:
        if not lo <= c.offset < hi:
            continue
        conflicting.add(c.second_frame)
        yield dict(
            base,
            kind="conflict",
            frame=frame_number(c.second_frame),
            time=clock.time_of(c.second_frame),
            stream_offset=c.offset,
            length=len(c.second),
            late=True,
            retransmission=True,
        )
    for j in range(len(half.copy_offsets)):
        start, length = half.copy_offsets[j], half.copy_lengths[j]
        frame = half.copy_frames[j]
        if frame in conflicting or start >= hi or start + length <= lo:
            continue
        yield dict(
            base,
            kind="copy",
            frame=frame_number(frame),
            time=half.copy_times[j],
            stream_offset=start,
            length=length,
            late=True,
            retransmission=True,
        )


def packets_frame(analysis: Analysis, exchange_id: int) -> pd.DataFrame:
    """The frames that carried one exchange, on both legs, in stream order.

    Each leg's rows cover the request direction and the response
    direction of the exchange's connection, within the stream ranges its
    messages occupy; gaps, conflicting copies and unchanged copies
    (retransmissions of bytes already delivered) are rows of their own.
    """
    ex = find_exchange(analysis, exchange_id)
    rows: list[dict[str, Any]] = []
    for span in response_spans(analysis, ex):
        conn = span.side.connection
        for direction, (lo, hi) in sorted(span.ranges.items()):
            rows.extend(_segment_rows(span.leg, conn, direction, lo, hi))
            rows.extend(_evidence_rows(span.leg, conn, direction, lo, hi))
    order = {"client": 0, "upstream": 1}
    rows.sort(
        key=lambda r: (
            order[r["leg"]],
            r["direction"] != Direction.TO_SERVER.label,
            r["stream_offset"],
            r["kind"] != "data",
        )
    )
    return _typed(rows, PACKET_COLUMNS)


def exchange_ids(analysis: Analysis, verdicts: Sequence[str]) -> list[int]:
    """Ids of the exchanges whose verdict is one of ``verdicts``."""
    return [ex.id for ex in analysis.exchanges if ex.verdict in verdicts]
