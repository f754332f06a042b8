"""Pairing client requests with upstream requests, from the strongest
evidence down, never pairing two different requests."""

from __future__ import annotations

from fcgiforensics.pairing import (
    ClientRequest,
    Pairing,
    UpstreamRequest,
    pair_exchanges,
)

S = 1_000_000_000


def client(
    i: int, port: int, uri: str | None, t: float, method: str | None = "GET"
) -> ClientRequest:
    return ClientRequest(i, "192.0.2.10", port, method, uri, int(t * S))


def upstream(
    i: int,
    port: int | None,
    uri: str | None,
    t: float,
    method: str | None = "GET",
    addr: str | None = "192.0.2.10",
) -> UpstreamRequest:
    return UpstreamRequest(i, addr, port, method, uri, int(t * S))


def pairs(result: Pairing) -> set[tuple[int | None, int | None, str]]:
    return {(p.client, p.upstream, p.by) for p in result.pairs}


def test_endpoint_pairs_requests_on_one_connection_in_order() -> None:
    """The same URI twice on one kept-alive connection pairs in order."""
    result = pair_exchanges(
        [client(0, 5000, "/a", 1.0), client(1, 5000, "/a", 2.0)],
        [upstream(0, 5000, "/a", 1.001), upstream(1, 5000, "/a", 2.001)],
    )
    assert pairs(result) == {(0, 0, "endpoint"), (1, 1, "endpoint")}
    assert abs(result.clock_offset_ns - 1_000_000) < 10


def test_clock_offset_between_capture_machines_is_estimated() -> None:
    """With the upstream capture's clock 3.5 s ahead, pairs hold and the
    offset is reported."""
    result = pair_exchanges(
        [client(i, 6000 + i, f"/r{i}", 10.0 + i) for i in range(5)],
        [upstream(i, 6000 + i, f"/r{i}", 13.5 + i + 0.002) for i in range(5)],
    )
    assert {p.by for p in result.pairs} == {"endpoint"}
    assert abs(result.clock_offset_ns - 3_502_000_000) < 1000


def test_nat_rewritten_ports_fall_back_to_uri_and_time() -> None:
    """Behind NAT the REMOTE_PORT matches no client connection: requests
    pair by method and URI, the nearest in time after the offset."""
    result = pair_exchanges(
        [client(0, 7000, "/x", 1.0), client(1, 7001, "/x", 5.0)],
        [
            upstream(0, 40001, "/x", 5.01, addr="10.0.0.1"),
            upstream(1, 40000, "/x", 1.01, addr="10.0.0.1"),
        ],
    )
    assert pairs(result) == {(0, 1, "uri"), (1, 0, "uri")}


def test_different_uris_are_never_paired() -> None:
    """Two requests for different URIs stay unmatched, whatever their
    timing: pairing them would compare two different bodies."""
    result = pair_exchanges(
        [client(0, 7000, "/a", 1.0)], [upstream(0, 9999, "/b", 1.0)]
    )
    assert pairs(result) == {(0, None, "unmatched"), (None, 0, "unmatched")}


def test_time_alone_only_where_a_request_line_is_unknown() -> None:
    """A client request whose head the capture lost pairs by time alone,
    and only with an upstream request near it."""
    result = pair_exchanges(
        [client(0, 7000, None, 1.0, method=None)],
        [upstream(0, 40000, "/a", 1.2), upstream(1, 40001, "/b", 2000.0)],
    )
    assert (0, 0, "time") in pairs(result)
    assert (None, 1, "unmatched") in pairs(result)


def test_far_apart_requests_do_not_pair() -> None:
    """Once other pairs fix the clock offset near zero, a same-URI request
    an hour away is left unmatched (the limit is ten minutes)."""
    result = pair_exchanges(
        [client(0, 7000, "/a", 0.0), client(1, 7001, "/b", 1.0)],
        [upstream(0, 7001, "/b", 1.001), upstream(1, 1, "/a", 3600.0)],
    )
    assert pairs(result) == {
        (1, 0, "endpoint"),
        (0, None, "unmatched"),
        (None, 1, "unmatched"),
    }


def test_a_lone_unique_uri_estimates_a_large_clock_offset() -> None:
    """With nothing else to go by, a URI seen once on each leg an hour
    apart is taken as one request and a one-hour clock offset (two
    machines' clocks may well differ by a time zone)."""
    result = pair_exchanges(
        [client(0, 7000, "/a", 0.0)], [upstream(0, 1, "/a", 3600.0)]
    )
    assert pairs(result) == {(0, 0, "uri")}
    assert result.clock_offset_ns == 3600 * S


def test_known_offsets_join_the_estimate() -> None:
    """Offset samples from pairs made while reading count in the median."""
    result = pair_exchanges([], [], known_offsets=[5, 7, 9])
    assert result.clock_offset_ns == 7 and result.offset_samples == 3


def test_many_requests_for_one_uri_behind_nat_pair_in_time_order() -> None:
    """Thousands of requests for the same URI whose ports NAT rewrote pair
    each with the upstream request nearest in time, one to one."""
    n = 5000
    result = pair_exchanges(
        [client(i, 7000 + i % 50, "/same", i * 0.01) for i in range(n)],
        [upstream(i, 40000 + i % 50, "/same", i * 0.01 + 0.003) for i in range(n)],
    )
    assert pairs(result) == {(i, i, "uri") for i in range(n)}


def test_a_taken_neighbour_does_not_leave_a_request_unmatched() -> None:
    """When the upstream requests nearest a client request in time are all
    taken by closer ones, it still pairs with a farther free one."""
    clients = [client(i, 7000, "/x", 1.0 + i * 0.001) for i in range(20)]
    ups = [upstream(i, 40000, "/x", 1.0 + i * 0.001) for i in range(19)]
    ups.append(upstream(19, 40000, "/x", 9.0))
    result = pair_exchanges(clients, ups)
    assert all(p.by == "uri" for p in result.pairs)
    assert len(result.pairs) == 20


def test_a_uri_pair_with_a_close_rival_is_marked_ambiguous() -> None:
    """Two requests for one URI behind NAT a millisecond apart may be
    crossed: both pairs say so; requests a second apart do not."""
    close = pair_exchanges(
        [client(0, 7000, "/a", 1.000), client(1, 7001, "/a", 1.001)],
        [upstream(0, 40000, "/a", 1.003), upstream(1, 40001, "/a", 1.004)],
    )
    assert [p.ambiguous for p in close.pairs] == [True, True]
    apart = pair_exchanges(
        [client(0, 7000, "/a", 1.0), client(1, 7001, "/a", 2.0)],
        [upstream(0, 40000, "/a", 1.003), upstream(1, 40001, "/a", 2.003)],
    )
    assert [p.ambiguous for p in apart.pairs] == [False, False]
    assert {(p.client, p.upstream) for p in apart.pairs} == {(0, 0), (1, 1)}
