"""The main job: both legs in, one result per exchange out.

:func:`analyze` reads the client leg and the upstream leg (or one file
holding both), pairs client requests with upstream requests, aligns each
pair's bodies and attributes any damage.  Reports (text, JSON, HTML) and
the notebook API are built from the :class:`Analysis` it returns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .attribution import Attribution, DigestSpec, attribute
from .decoders.base import Direction
from .decoders.body import Body
from .legs import FcgiItem, HttpItem, Leg, LegOptions, read_leg
from .pairing import ClientRequest, Pairing, UpstreamRequest, pair_exchanges
from .reassembly import Connection
from .reassembly.reassembler import format_address

__all__ = ["AnalysisOptions", "Side", "Exchange", "Analysis", "analyze"]


@dataclass(frozen=True, slots=True)
class AnalysisOptions:
    """Options of :func:`analyze` (the CLI flags of ``diff``)."""

    digests: tuple[DigestSpec, ...] = ()
    leg: LegOptions = LegOptions()


@dataclass(frozen=True, slots=True)
class Side:
    """One leg's view of an exchange (the report's SIDE)."""

    connection: Connection
    client_port: int
    request_id: int | None
    status: int | None
    body: Body
    first_frame: int | None
    last_frame: int | None
    start_ns: int
    complete: bool
    chunked: bool
    content_encoding: str | None

    @property
    def body_sha256(self) -> str | None:
        """SHA-256 of the body, or None when some bytes were unobserved."""
        if not self.body.fully_observed:
            return None
        return hashlib.sha256(self.body.data).hexdigest()


@dataclass(slots=True)
class Exchange:
    """One request, on one or both legs, and its verdict."""

    id: int
    method: str | None
    uri: str | None
    client: Side | None
    upstream: Side | None
    paired_by: str
    attribution: Attribution
    http: HttpItem | None = None
    fcgi: FcgiItem | None = None

    @property
    def verdict(self) -> str:
        return self.attribution.verdict

    @property
    def hop(self) -> str | None:
        return self.attribution.hop


@dataclass(slots=True)
class Analysis:
    client_leg: Leg
    upstream_leg: Leg
    same_file: bool
    pairing: Pairing
    exchanges: list[Exchange] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        counts = {
            "exchanges": len(self.exchanges),
            "ok": 0,
            "corrupted": 0,
            "incomplete": 0,
            "unmatched": 0,
        }
        for ex in self.exchanges:
            counts[ex.verdict] += 1
        return counts


def _frame_at(
    conn: Connection, direction: Direction, offset: int, last: bool = False
) -> int | None:
    frames = conn.halves[direction].frames_for(
        max(offset - 1, 0) if last else offset, offset if last else offset + 1
    )
    return frames[-1 if last else 0] if frames else None


def _http_side(item: HttpItem) -> Side:
    conn = item.connection
    req = item.exchange.request
    resp = item.exchange.response
    first = (
        _frame_at(conn, Direction.TO_SERVER, req.head_start)
        if req is not None
        else None
    )
    last = None
    start = conn.first_time
    if req is not None:
        start = conn.to_server.time_at(req.head_start) or start
    body = resp.body if resp is not None else Body()
    if resp is not None:
        end = resp.head_end
        pieces = resp.wire_body.pieces
        if pieces:
            end = max(end, pieces[-1].stream_end)
        if resp.chunks:
            end = max(end, resp.chunks[-1][0] + 1)
        last = _frame_at(conn, Direction.TO_CLIENT, end, last=True)
    return Side(
        conn,
        conn.client[1],
        None,
        resp.status if resp is not None else None,
        body,
        first,
        last,
        start,
        item.exchange.complete,
        resp.chunked if resp is not None else False,
        resp.content_encoding if resp is not None else None,
    )


def _fcgi_side(item: FcgiItem) -> Side:
    conn = item.connection
    req = item.request
    records = req.records
    first = last = None
    start = conn.first_time
    if records:
        head = records[0]
        first = _frame_at(conn, head.direction, head.stream_offset)
        start = conn.halves[head.direction].time_at(head.stream_offset) or start
        tail = records[-1]
        last = _frame_at(conn, tail.direction, tail.end_offset, last=True)
    return Side(
        conn,
        conn.client[1],
        req.request_id,
        req.status,
        req.body,
        first,
        last,
        start,
        req.complete,
        False,
        req.headers.get("Content-Encoding"),
    )


def _client_request(index: int, item: HttpItem) -> ClientRequest:
    conn = item.connection
    req = item.exchange.request
    return ClientRequest(
        index,
        format_address(conn.client[0]),
        conn.client[1],
        req.method if req is not None else None,
        req.target if req is not None else None,
        _http_side(item).start_ns,
    )


def _upstream_request(index: int, item: FcgiItem) -> UpstreamRequest:
    params = item.request.params
    port = params.get("REMOTE_PORT")
    return UpstreamRequest(
        index,
        params.get("REMOTE_ADDR"),
        int(port) if port is not None and port.isdigit() else None,
        params.get("REQUEST_METHOD"),
        params.get("REQUEST_URI"),
        _fcgi_side(item).start_ns,
    )


def analyze_legs(
    client_leg: Leg,
    upstream_leg: Leg,
    same_file: bool,
    options: AnalysisOptions | None = None,
) -> Analysis:
    """Pair and judge the exchanges of two legs already read."""
    options = options or AnalysisOptions()
    http = sorted(client_leg.http, key=lambda i: _http_side(i).start_ns)
    fcgi = sorted(upstream_leg.fcgi, key=lambda i: _fcgi_side(i).start_ns)
    pairing = pair_exchanges(
        [_client_request(i, item) for i, item in enumerate(http)],
        [_upstream_request(i, item) for i, item in enumerate(fcgi)],
    )
    analysis = Analysis(client_leg, upstream_leg, same_file, pairing)
    for number, pair in enumerate(pairing.pairs, start=1):
        h = http[pair.client] if pair.client is not None else None
        f = fcgi[pair.upstream] if pair.upstream is not None else None
        attribution = attribute(
            h.exchange if h else None,
            h.connection if h else None,
            f.request if f else None,
            f.connection if f else None,
            options.digests,
        )
        method = uri = None
        if h is not None and h.exchange.request is not None:
            method, uri = h.exchange.request.method, h.exchange.request.target
        elif f is not None:
            method = f.request.params.get("REQUEST_METHOD")
            uri = f.request.params.get("REQUEST_URI")
        analysis.exchanges.append(
            Exchange(
                number,
                method,
                uri,
                _http_side(h) if h else None,
                _fcgi_side(f) if f else None,
                pair.by,
                attribution,
                h,
                f,
            )
        )
    return analysis


def analyze(
    client: Sequence[str],
    upstream: Sequence[str] | None = None,
    options: AnalysisOptions | None = None,
    *,
    progress: Callable[[str], Callable[[int, int], None] | None] | None = None,
) -> Analysis:
    """Read both legs and judge every exchange.

    ``upstream`` None (or the same files as ``client``) means one capture
    holds both legs, as ``tcpdump -i any`` writes it.
    """
    options = options or AnalysisOptions()
    same = upstream is None or list(upstream) == list(client)
    client_leg = read_leg(
        client, options.leg, progress=progress("client leg") if progress else None
    )
    if same:
        upstream_leg = client_leg
    else:
        assert upstream is not None
        upstream_leg = read_leg(
            upstream,
            options.leg,
            progress=progress("upstream leg") if progress else None,
        )
    return analyze_legs(client_leg, upstream_leg, same, options)
