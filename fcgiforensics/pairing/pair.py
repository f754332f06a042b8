"""Match each client HTTP request with the FastCGI request that served it.

Evidence, strongest first:

1. ``endpoint``: nginx passes the client's address and port in the
   REMOTE_ADDR / REMOTE_PORT params; on one client connection, requests
   are matched in order where method and URI agree.
2. ``uri``: the same method and REQUEST_URI, nearest in time once the
   clock offset between the two capture machines is taken out.
3. ``time``: only where one side's method or URI is unknown (its head
   fell in a capture gap); the nearest request in time.

A weaker match never overrides a stronger one, and requests that match
nothing stay unmatched: pairing two different requests would compare
two different bodies and blame a hop for nothing.
"""

from __future__ import annotations

import bisect
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ClientRequest",
    "UpstreamRequest",
    "Pair",
    "Pairing",
    "pair_exchanges",
    "MAX_TIME_DISTANCE_NS",
]

#: How far apart in time (after the clock offset) a ``uri`` or ``time``
#: match may be.  A proxied request reaches the app within a few seconds
#: (nginx's default fastcgi_connect/read timeouts are 60 s); ten minutes
#: allows slow apps but stops matching a request from another hour.
MAX_TIME_DISTANCE_NS = 600 * 1_000_000_000


@dataclass(frozen=True, slots=True)
class ClientRequest:
    """What pairing needs of a client-leg request."""

    index: int
    client_addr: str
    client_port: int
    method: str | None
    uri: str | None
    time_ns: int


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """What pairing needs of an upstream FastCGI request (from PARAMS)."""

    index: int
    remote_addr: str | None
    remote_port: int | None
    method: str | None
    uri: str | None
    time_ns: int


@dataclass(frozen=True, slots=True)
class Pair:
    """A client request and its upstream request; either may be None."""

    client: int | None
    upstream: int | None
    by: str  # "endpoint" | "uri" | "time" | "unmatched"
    #: A ``uri`` pair with a rival: another upstream request for the same
    #: method and URI nearly as close in time, so the two may be crossed.
    ambiguous: bool = False


@dataclass(frozen=True, slots=True)
class Pairing:
    """All pairs, and the clock offset estimated between the two legs.

    ``clock_offset_ns`` is upstream time minus client time for the same
    request (the median over endpoint matches, else over unique URI
    matches); None when nothing allowed an estimate.
    """

    pairs: tuple[Pair, ...]
    clock_offset_ns: int | None
    offset_samples: int


def pair_exchanges(
    client: Sequence[ClientRequest],
    upstream: Sequence[UpstreamRequest],
    known_offsets: Sequence[int] = (),
) -> Pairing:
    """Pair client requests with upstream requests (see module docstring).

    ``known_offsets`` are clock-offset samples from pairs made earlier
    (by endpoint, while the captures were read); they join this call's
    own samples.
    """
    matched: dict[int, tuple[int, str]] = {}  # client index -> (upstream, by)
    taken: set[int] = set()

    # Step 1: the client's own endpoint, carried in REMOTE_ADDR/PORT.
    by_endpoint: dict[tuple[str | None, int | None], list[UpstreamRequest]] = (
        defaultdict(list)
    )
    for u in sorted(upstream, key=lambda u: u.time_ns):
        by_endpoint[(u.remote_addr, u.remote_port)].append(u)
    for c in sorted(client, key=lambda c: c.time_ns):
        group = by_endpoint.get((c.client_addr, c.client_port), [])
        for u in group:
            if u.index not in taken and _same_request(c, u):
                matched[c.index] = (u.index, "endpoint")
                taken.add(u.index)
                break

    # Step 2: the clock offset between the legs' capture machines.
    ups = {u.index: u for u in upstream}
    cls = {c.index: c for c in client}
    samples = [ups[u].time_ns - cls[c].time_ns for c, (u, _) in matched.items()]
    samples += known_offsets
    if not samples:
        samples = _unique_uri_offsets(client, upstream)
    offset = int(statistics.median(samples)) if samples else None
    skew = offset or 0

    # Step 3: the same method and URI, nearest in time; then time alone
    # where a side's method or URI is unknown.  Requests are grouped by
    # what they may match, so the work grows with the group, not with
    # every client request times every upstream one.
    def known(r: ClientRequest | UpstreamRequest) -> bool:
        return r.method is not None and r.uri is not None

    uri_groups: dict[
        tuple[str | None, str | None],
        tuple[list[ClientRequest], list[UpstreamRequest]],
    ] = defaultdict(lambda: ([], []))
    for c in client:
        if c.index not in matched and known(c):
            uri_groups[(c.method, c.uri)][0].append(c)
    for u in upstream:
        if u.index not in taken and known(u):
            uri_groups[(u.method, u.uri)][1].append(u)
    ambiguous: set[int] = set()
    for cs, us in uri_groups.values():
        _match_nearest(cs, us, skew, "uri", matched, taken)
        ambiguous |= _rivalled(cs, us, skew, matched)

    unknown_c = [c for c in client if c.index not in matched and not known(c)]
    unknown_u = [u for u in upstream if u.index not in taken and not known(u)]
    rest_u = [u for u in upstream if u.index not in taken]
    rest_c = [c for c in client if c.index not in matched and known(c)]
    _match_nearest(unknown_c, rest_u, skew, "time", matched, taken)
    _match_nearest(rest_c, unknown_u, skew, "time", matched, taken)

    # Step 4: one pair per client request, then the upstream leftovers.
    pairs = [
        Pair(c.index, *matched[c.index], ambiguous=c.index in ambiguous)
        if c.index in matched
        else Pair(c.index, None, "unmatched")
        for c in client
    ]
    pairs += [
        Pair(None, u.index, "unmatched") for u in upstream if u.index not in taken
    ]
    return Pairing(tuple(pairs), offset, len(samples))


#: How many upstream requests nearest in time each client request is
#: weighed against per round.  The nearest match is always among them;
#: the rounds repeat for the requests whose neighbours were all taken.
NEIGHBOURS = 8


def _match_nearest(
    cs: Sequence[ClientRequest],
    us: Sequence[UpstreamRequest],
    skew: int,
    by: str,
    matched: dict[int, tuple[int, str]],
    taken: set[int],
) -> None:
    """Pair ``cs`` with ``us``, closest in time (after ``skew``) first.

    Each round weighs every free client request against its
    :data:`NEIGHBOURS` nearest free upstream requests on either side in
    time, and takes pairs in order of distance; a round that pairs
    nothing ends the search.
    """
    while True:
        free_u = sorted(
            (u for u in us if u.index not in taken), key=lambda u: u.time_ns
        )
        free_c = [c for c in cs if c.index not in matched]
        if not free_u or not free_c:
            return
        times = [u.time_ns for u in free_u]
        candidates = []
        for c in free_c:
            t = c.time_ns + skew
            i = bisect.bisect_left(times, t)
            for j in range(max(0, i - NEIGHBOURS), min(len(free_u), i + NEIGHBOURS)):
                distance = abs(times[j] - t)
                if distance <= MAX_TIME_DISTANCE_NS:
                    candidates.append((distance, c.index, free_u[j].index))
        progress = False
        for _, ci, ui in sorted(candidates):
            if ci not in matched and ui not in taken:
                matched[ci] = (ui, by)
                taken.add(ui)
                progress = True
        if not progress:
            return


#: How much farther in time than the chosen one a rival upstream request
#: may be and still make a ``uri`` pair ambiguous: twice the distance, or
#: this much more, whichever is larger.  Requests for one URI that a
#: client sends one after another are spaced by at least a round trip;
#: concurrent ones are not.
RIVAL_SLACK_NS = 50_000_000


def _rivalled(
    cs: Sequence[ClientRequest],
    us: Sequence[UpstreamRequest],
    skew: int,
    matched: dict[int, tuple[int, str]],
) -> set[int]:
    """Client requests of ``cs`` paired by URI that have a rival in ``us``."""
    if len(us) < 2:
        return set()
    ordered = sorted(us, key=lambda u: u.time_ns)
    times = [u.time_ns for u in ordered]
    when = {u.index: u.time_ns for u in us}
    out = set()
    for c in cs:
        chosen = matched.get(c.index)
        if chosen is None or chosen[1] != "uri":
            continue
        t = c.time_ns + skew
        best = abs(when[chosen[0]] - t)
        reach = max(2 * best, best + RIVAL_SLACK_NS)
        i = bisect.bisect_left(times, t)
        for j in range(max(0, i - 2), min(len(ordered), i + 2)):
            u = ordered[j]
            if u.index != chosen[0] and abs(u.time_ns - t) <= reach:
                out.add(c.index)
                break
    return out


def _same_request(c: ClientRequest, u: UpstreamRequest) -> bool:
    return (
        c.method is not None
        and c.method == u.method
        and c.uri is not None
        and c.uri == u.uri
    )


def _unique_uri_offsets(
    client: Sequence[ClientRequest], upstream: Sequence[UpstreamRequest]
) -> list[int]:
    """Time differences of requests whose method+URI occur once per leg."""

    def unique(
        items: Sequence[ClientRequest] | Sequence[UpstreamRequest],
    ) -> dict[tuple[str | None, str | None], int]:
        seen: dict[tuple[str | None, str | None], list[int]] = defaultdict(list)
        for item in items:
            if item.method is not None and item.uri is not None:
                seen[(item.method, item.uri)].append(item.time_ns)
        return {k: v[0] for k, v in seen.items() if len(v) == 1}

    a, b = unique(client), unique(upstream)
    return [b[k] - a[k] for k in a.keys() & b.keys()]
