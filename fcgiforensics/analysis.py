"""The main job: both legs in, one result per exchange out.

:func:`analyze` reads the client leg and the upstream leg (or one file
holding both), pairs client requests with upstream requests, aligns each
pair's bodies and attributes any damage.  Reports (text, JSON, HTML) and
the notebook API are built from the :class:`Analysis` it returns.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .attribution import Attribution, DigestSpec, attribute
from .decoders.base import Direction
from .decoders.body import Body
from .legs import FcgiItem, HttpItem, Leg, LegCollector, LegOptions, read_legs
from .pairing import ClientRequest, Pairing, UpstreamRequest, pair_exchanges
from .reassembly import Connection
from .reassembly.reassembler import format_address

__all__ = [
    "AnalysisOptions",
    "Side",
    "Exchange",
    "Analysis",
    "analyze",
    "http_side",
    "fcgi_side",
]

#: Judged exchanges between two sweeps for connections done with (see
#: _Judge._sweep); each sweep walks the connections judged since.
SWEEP_EVERY = 64


@dataclass(frozen=True, slots=True)
class AnalysisOptions:
    """Options of :func:`analyze` (the CLI flags of ``diff``)."""

    digests: tuple[DigestSpec, ...] = ()
    leg: LegOptions = LegOptions()
    #: Keep the bytes of every body.  When False, the bytes of exchanges
    #: judged ``ok`` (with their record lists) are released as soon as
    #: they are judged, the legs do not list every message, and closed
    #: connections drop their frame index once all their exchanges are
    #: judged: memory follows the exchanges in flight and the damaged
    #: ones, not the size of the capture (what the command line does).
    keep_bodies: bool = True


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
    #: SHA-256 of the body, or None when some bytes were unobserved.
    body_sha256: str | None = None
    body_length: int = 0


def _fingerprint(body: Body) -> str | None:
    if not body.fully_observed or body.released:
        return None
    return hashlib.sha256(body.data).hexdigest()


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


def http_side(item: HttpItem) -> Side:
    """The SIDE of a client-leg exchange: frames, times, body, framing."""
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
        _fingerprint(body),
        len(body),
    )


def fcgi_side(item: FcgiItem) -> Side:
    """The SIDE of an upstream FastCGI request."""
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
        _fingerprint(req.body),
        len(req.body),
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
        http_side(item).start_ns,
    )


def _port_number(text: str | None) -> int | None:
    """REMOTE_PORT as a TCP port, or None when it is not one (ASCII digits)."""
    if text is None or not (text.isascii() and text.isdigit()) or len(text) > 5:
        return None
    port = int(text)
    return port if 0 < port < 65536 else None


def _upstream_request(index: int, item: FcgiItem) -> UpstreamRequest:
    params = item.request.params
    port = params.get("REMOTE_PORT")
    return UpstreamRequest(
        index,
        params.get("REMOTE_ADDR"),
        _port_number(port),
        params.get("REQUEST_METHOD"),
        params.get("REQUEST_URI"),
        fcgi_side(item).start_ns,
    )


def _endpoint_key(item: HttpItem | FcgiItem) -> tuple[str | None, int | None]:
    """The client endpoint: the HTTP client's, or nginx's REMOTE_ADDR/PORT."""
    if isinstance(item, HttpItem):
        conn = item.connection
        return format_address(conn.client[0]), conn.client[1]
    params = item.request.params
    port = params.get("REMOTE_PORT")
    return params.get("REMOTE_ADDR"), _port_number(port)


def _request_line(item: HttpItem | FcgiItem) -> tuple[str | None, str | None]:
    if isinstance(item, HttpItem):
        req = item.exchange.request
        return (req.method, req.target) if req is not None else (None, None)
    params = item.request.params
    return params.get("REQUEST_METHOD"), params.get("REQUEST_URI")


class _Judge:
    """Pairs messages of both legs as they finish, and judges each pair.

    Step 1 of pairing (the client endpoint that nginx passes in
    REMOTE_ADDR/REMOTE_PORT, then method and URI in order) needs nothing
    but the two messages, so it runs while the captures are read; what
    it cannot pair waits for :func:`pair_exchanges` at the end.
    """

    def __init__(self, options: AnalysisOptions) -> None:
        self.options = options
        self.waiting: dict[
            tuple[bool, tuple[str | None, int | None]], list[HttpItem | FcgiItem]
        ] = {}
        self.judged: list[tuple[int, Exchange]] = []
        self.offsets: list[int] = []
        # Connections whose judged exchanges may let their index go.
        self._candidates: dict[int, Connection] = {}
        self._keep: set[int] = set()

    def add(self, item: HttpItem | FcgiItem) -> None:
        is_http = isinstance(item, HttpItem)
        key = _endpoint_key(item)
        line = _request_line(item)
        if None not in line and None not in key:
            others = self.waiting.get((not is_http, key), [])
            for i, other in enumerate(others):
                if _request_line(other) == line:
                    del others[i]
                    h, f = (item, other) if is_http else (other, item)
                    assert isinstance(h, HttpItem) and isinstance(f, FcgiItem)
                    self.judge(h, f, "endpoint")
                    return
        self.waiting.setdefault((is_http, key), []).append(item)

    def judge(
        self,
        h: HttpItem | None,
        f: FcgiItem | None,
        by: str,
        *,
        ambiguous: bool = False,
    ) -> None:
        weak: bool | str = by == "time"
        if ambiguous:
            weak = (
                "another request for the same method and URI reached the "
                "app at nearly the same time, so this pair may be crossed "
                "with it"
            )
        attribution = attribute(
            h.exchange if h else None,
            h.connection if h else None,
            f.request if f else None,
            f.connection if f else None,
            self.options.digests,
            weak_pairing=weak,
        )
        client = http_side(h) if h else None
        upstream = fcgi_side(f) if f else None
        decoded = attribution.upstream_decoded
        if upstream is not None and decoded is not None:
            # Offsets count bytes of the decoded body on both sides: the
            # app's own Content-Encoding is undone, as the client's is.
            upstream = dataclasses.replace(
                upstream,
                body=decoded,
                body_sha256=_fingerprint(decoded),
                body_length=len(decoded),
            )
        method, uri = _request_line(h) if h else (None, None)
        if h is None or (method is None and f is not None):
            method, uri = _request_line(f) if f else (None, None)
        exchange = Exchange(0, method, uri, client, upstream, by, attribution, h, f)
        if client is not None and upstream is not None and by == "endpoint":
            self.offsets.append(upstream.start_ns - client.start_ns)
        order = client.start_ns if client else upstream.start_ns if upstream else 0
        self.judged.append((order, exchange))
        if not self.options.keep_bodies:
            if attribution.verdict == "ok":
                _release(h, f)
                if f is not None:
                    # Its records were evidence for nothing: let them go.
                    exchange.fcgi = FcgiItem(
                        f.connection,
                        dataclasses.replace(f.request, records=()),
                        f.sequence,
                    )
            for item in (h, f):
                if item is None:
                    continue
                key = id(item.connection)
                if attribution.verdict != "ok":
                    # Its report draws this connection's packets.
                    self._keep.add(key)
                elif key not in self._keep:
                    self._candidates[key] = item.connection
            if len(self.judged) % SWEEP_EVERY == 0:
                self._sweep()

    def _sweep(self) -> None:
        """Forget the frame index of closed connections with nothing left
        to judge: their exchanges' frames were taken when judged."""
        waiting = {id(i.connection) for items in self.waiting.values() for i in items}
        for key, conn in list(self._candidates.items()):
            if key in self._keep:
                del self._candidates[key]
            elif conn.closed and key not in waiting:
                for half in conn.halves:
                    half.forget_index()
                del self._candidates[key]

    def finish(self, client_leg: Leg, upstream_leg: Leg, same_file: bool) -> Analysis:
        """Pair what is left (URI and time), then number every exchange."""
        waiting = [i for items in self.waiting.values() for i in items]
        http = [i for i in waiting if isinstance(i, HttpItem)]
        fcgi = [i for i in waiting if isinstance(i, FcgiItem)]
        http.sort(key=lambda i: http_side(i).start_ns)
        fcgi.sort(key=lambda i: fcgi_side(i).start_ns)
        pairing = pair_exchanges(
            [_client_request(n, i) for n, i in enumerate(http)],
            [_upstream_request(n, i) for n, i in enumerate(fcgi)],
            known_offsets=self.offsets,
        )
        for pair in pairing.pairs:
            self.judge(
                http[pair.client] if pair.client is not None else None,
                fcgi[pair.upstream] if pair.upstream is not None else None,
                pair.by,
                ambiguous=pair.ambiguous,
            )
        analysis = Analysis(client_leg, upstream_leg, same_file, pairing)
        # Client requests in time order first; then requests seen
        # upstream only.
        ordered = sorted(self.judged, key=lambda j: (j[1].client is None, j[0]))
        for number, (_, exchange) in enumerate(ordered, start=1):
            exchange.id = number
            analysis.exchanges.append(exchange)
        return analysis


def _release(h: HttpItem | None, f: FcgiItem | None) -> None:
    """Drop the bytes of a judged pair's bodies (their metadata stays)."""
    if h is not None and h.exchange.response is not None:
        h.exchange.response.body.release()
        h.exchange.response.wire_body.release()
    if h is not None and h.exchange.request is not None:
        h.exchange.request.body.release()
    if f is not None:
        f.request.body.release()
        f.request.stdin.release()


def analyze_legs(
    client_leg: Leg,
    upstream_leg: Leg,
    same_file: bool,
    options: AnalysisOptions | None = None,
) -> Analysis:
    """Pair and judge the exchanges of two legs already read."""
    judge = _Judge(options or AnalysisOptions())
    items: list[HttpItem | FcgiItem] = [*client_leg.http, *upstream_leg.fcgi]
    for item in items:
        judge.add(item)
    return judge.finish(client_leg, upstream_leg, same_file)


def analyze(
    client: Sequence[str],
    upstream: Sequence[str] | None = None,
    options: AnalysisOptions | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Analysis:
    """Read both legs and judge every exchange, in one pass over the files.

    ``upstream`` None (or the same files as ``client``) means one capture
    holds both legs, as ``tcpdump -i any`` writes it.  Exchanges are
    paired and judged while the captures are read (see ``keep_bodies``
    in :class:`AnalysisOptions`).
    """
    options = options or AnalysisOptions()
    same = upstream is None or list(upstream) == list(client)
    judge = _Judge(options)

    def on_item(item: HttpItem | FcgiItem) -> None:
        # In a file holding both legs, a leg's HTTP is the client side
        # and its FastCGI the upstream side.
        judge.add(item)

    keep = options.keep_bodies
    collectors = [LegCollector(list(client), options.leg, on_item, keep_items=keep)]
    if not same:
        assert upstream is not None
        collectors.append(
            LegCollector(list(upstream), options.leg, on_item, keep_items=keep)
        )
    legs = read_legs(collectors, progress=progress)
    client_leg = legs[0]
    upstream_leg = legs[-1]
    return judge.finish(client_leg, upstream_leg, same)
