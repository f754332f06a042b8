"""The HTTP/1.x decoder: framing, pairing, damage and the body-to-stream map."""

from __future__ import annotations

import gzip
import time
import zlib
from collections.abc import Sequence

import brotli
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from fcgiforensics.anomalies import CATALOGUE, Anomaly
from fcgiforensics.decoders.base import Direction
from fcgiforensics.decoders.body import BodyPiece
from fcgiforensics.decoders.http1 import (
    Http1Decoder,
    HttpExchange,
    field_values,
)
from fcgiforensics.errors import StrictModeError, UsageError

UP, DOWN = Direction.TO_SERVER, Direction.TO_CLIENT


def body_of(exchange: HttpExchange) -> bytes:
    """The decoded response body of an exchange that has a response."""
    assert exchange.response is not None
    return exchange.response.body.data


def target_of(exchange: HttpExchange) -> str:
    """The request target of an exchange that has a request."""
    assert exchange.request is not None
    return exchange.request.target


def get(target: str = "/", method: str = "GET", extra: bytes = b"") -> bytes:
    return f"{method} {target} HTTP/1.1\r\nHost: t\r\n".encode() + extra + b"\r\n"


def ok(body: bytes, extra: bytes = b"", status: bytes = b"200 OK") -> bytes:
    head = b"HTTP/1.1 %s\r\nContent-Length: %d\r\n" % (status, len(body))
    return head + extra + b"\r\n" + body


def chunked(pieces: Sequence[bytes], extra: bytes = b"", ext: bytes = b"") -> bytes:
    out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n" + extra + b"\r\n"
    for piece in pieces:
        out += b"%x%s\r\n%s\r\n" % (len(piece), ext, piece)
    return out + b"0\r\n\r\n"


Event = tuple[str, Direction, int, bytes | int]


def run(
    events: Sequence[Event], *, close: bool = True
) -> tuple[list[HttpExchange], list[Anomaly]]:
    """Replay events; split the results into exchanges and anomalies."""
    decoder = Http1Decoder()
    results: list[object] = []
    for kind, direction, offset, payload in events:
        if kind == "data":
            assert isinstance(payload, bytes)
            results += decoder.feed(direction, offset, payload)
        elif kind == "gap":
            assert isinstance(payload, int)
            results += decoder.gap(direction, offset, payload)
        else:
            results += decoder.end(direction, offset)
    if close:
        results += decoder.close()
    exchanges = [r for r in results if isinstance(r, HttpExchange)]
    anomalies = [r for r in results if isinstance(r, Anomaly)]
    assert len(exchanges) + len(anomalies) == len(results)
    return exchanges, anomalies


def stream(
    direction: Direction, data: bytes, cuts: Sequence[int] = (), *, end: bool = True
) -> list[Event]:
    """Events carrying ``data`` cut at the given offsets, then its end."""
    points = sorted({0, len(data), *(c for c in cuts if 0 < c < len(data))})
    events: list[Event] = [
        ("data", direction, a, data[a:b])
        for a, b in zip(points, points[1:], strict=False)
    ]
    if end:
        events.append(("end", direction, len(data), 0))
    return events


def conversation(
    requests: bytes, responses: bytes, step: int | None = None
) -> tuple[list[HttpExchange], list[Anomaly]]:
    """Both directions, requests first, each cut every ``step`` bytes."""

    def cuts(data: bytes) -> list[int]:
        return list(range(0, len(data), step)) if step else []

    return run(
        stream(UP, requests, cuts(requests)) + stream(DOWN, responses, cuts(responses))
    )


def names(anomalies: Sequence[Anomaly]) -> list[str]:
    return [a.name for a in anomalies]


# Framing and pairing.


@pytest.mark.parametrize("step", [None, 1, 7])
def test_keep_alive_pairs_in_order(step: int | None) -> None:
    """Two requests on one connection pair with their responses, however cut."""
    requests = get("/a") + get("/b")
    responses = ok(b"first") + ok(b"second!")
    exchanges, anomalies = conversation(requests, responses, step)
    assert anomalies == []
    assert [(x.request and x.request.target) for x in exchanges] == ["/a", "/b"]
    assert [x.response and x.response.body.data for x in exchanges] == [
        b"first",
        b"second!",
    ]
    assert all(x.complete for x in exchanges)
    second = exchanges[1].response
    assert second is not None
    assert second.head_start == len(ok(b"first"))
    assert second.raw_head == responses[second.head_start : second.head_end]
    body_at = second.head_end
    assert second.body.pieces == [BodyPiece(0, 7, body_at, body_at + 7, True, "")]
    assert second.body is second.wire_body


def test_request_fields_keep_wire_form() -> None:
    """Request fields stay bytes in wire order, with their raw head and offsets."""
    raw = (
        b"POST /up?x=%C3 HTTP/1.0\r\nX-A:  one \r\nx-a: two\r\n"
        b"Content-Length: 3\r\n\r\nabc"
    )
    exchanges, anomalies = conversation(raw, ok(b""))
    request = exchanges[0].request
    assert request is not None and anomalies == []
    assert (request.method, request.target, request.version) == (
        "POST",
        "/up?x=%C3",
        "HTTP/1.0",
    )
    assert field_values(request.headers, b"X-a") == [b"one", b"two"]
    assert request.headers[0] == (b"X-A", b"one")
    assert (request.head_start, request.head_end) == (0, len(raw) - 3)
    assert request.body.data == b"abc"
    assert request.body.stream_range(0, 3) == (len(raw) - 3, len(raw))


def test_pipelined_requests_pair_fifo() -> None:
    """Three pipelined requests pair, in order, with three responses."""
    requests = get("/1") + get("/2") + get("/3")
    responses = ok(b"1") + ok(b"22") + ok(b"333")
    exchanges, _ = conversation(requests, responses)
    got = [(target_of(x), body_of(x)) for x in exchanges]
    assert got == [("/1", b"1"), ("/2", b"22"), ("/3", b"333")]


def test_response_fed_before_request_waits_for_it() -> None:
    """A response seen before its request still pairs with it (and HEAD holds)."""
    events = stream(DOWN, ok(b"xyz"), end=False) + stream(UP, get("/late", "HEAD"))
    events += [("data", DOWN, len(ok(b"xyz")), ok(b"body"))]
    exchanges, anomalies = run(events)
    assert exchanges[0].request is not None
    assert exchanges[0].request.method == "HEAD"
    assert exchanges[0].response is not None
    assert exchanges[0].response.body.data == b""
    # The bytes meant as a body were read as the next (unexpected) response.
    assert "http.bad_status_line" in names(anomalies)


def test_head_response_has_no_body() -> None:
    """A response to HEAD has no body whatever its Content-Length says."""
    requests = get("/", "HEAD") + get("/next")
    responses = ok(b"").replace(b"Length: 0", b"Length: 500") + ok(b"n")
    exchanges, anomalies = conversation(requests, responses)
    assert anomalies == []
    assert [body_of(x) for x in exchanges] == [b"", b"n"]
    assert exchanges[0].response.content_length == 500  # type: ignore[union-attr]


@pytest.mark.parametrize("status", [b"204 No Content", b"304 Not Modified"])
def test_no_body_statuses(status: bytes) -> None:
    """204 and 304 responses end at their head."""
    head = b"HTTP/1.1 " + status + b"\r\nContent-Length: 9\r\n\r\n"
    exchanges, anomalies = conversation(get() + get("/2"), head + ok(b"x"))
    assert anomalies == []
    assert [len(body_of(x)) for x in exchanges] == [0, 1]


def test_interim_responses_are_recorded() -> None:
    """1xx heads are kept on the final response and do not take a request."""
    interim = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n"
    )
    exchanges, anomalies = conversation(get(), interim + ok(b"done"))
    response = exchanges[0].response
    assert anomalies == [] and response is not None
    assert [i.status for i in response.interim] == [100, 103]
    assert response.interim[1].headers == ((b"Link", b"</s>"),)
    assert response.head_start == len(interim)
    assert response.body.data == b"done"


@pytest.mark.parametrize("step", [None, 1])
def test_chunked_with_extensions_and_trailers(step: int | None) -> None:
    """Chunks are de-chunked, their boundaries and labels kept, trailers read."""
    body = chunked([b"hello ", b"world"], ext=b' ; name="v"')
    body = body[:-2] + b"Digest: x\r\n\r\n"
    exchanges, anomalies = conversation(get(), body, step)
    response = exchanges[0].response
    assert anomalies == [] and response is not None and response.complete
    assert response.chunked and response.body.data == b"hello world"
    first = body.index(b"6 ;")
    second = body.index(b"5 ;")
    last = body.index(b"0\r\n")
    assert response.chunks == ((first, 6), (second, 5), (last, 0))
    assert response.trailers == ((b"Digest", b"x"),)
    data1 = body.index(b"hello")
    data2 = body.index(b"world")
    assert response.wire_body.pieces == [
        BodyPiece(0, 6, data1, data1 + 6, True, "chunk 1"),
        BodyPiece(6, 11, data2, data2 + 5, True, "chunk 2"),
    ]
    assert response.body.labels(5, 7) == ["chunk 1", "chunk 2"]


def test_close_delimited_body_ends_at_end() -> None:
    """Without framing fields a response body runs to the close (RFC 9112 §6.3)."""
    response = b"HTTP/1.0 200 OK\r\n\r\nall of it"
    exchanges, anomalies = conversation(get(), response)
    assert anomalies == []
    assert exchanges[0].response is not None
    assert exchanges[0].response.body.data == b"all of it"
    assert exchanges[0].complete


def test_close_delimited_body_without_end_is_truncated() -> None:
    """A capture that stops before the close leaves the body incomplete."""
    events = stream(UP, get()) + stream(DOWN, b"HTTP/1.0 200 OK\r\n\r\npart", end=False)
    exchanges, anomalies = run(events)
    assert names(anomalies) == ["http.truncated_body"]
    assert exchanges[0].response is not None
    assert not exchanges[0].response.body.complete and not exchanges[0].complete


def test_partial_content_keeps_range_start() -> None:
    """A 206 body records where it belongs in the whole representation."""
    extra = b"Content-Range: bytes 500-503/1000\r\n"
    exchanges, anomalies = conversation(
        get(), ok(b"abcd", extra, b"206 Partial Content")
    )
    assert anomalies == []
    assert exchanges[0].response is not None
    assert exchanges[0].response.range_start == 500


def test_trailing_response_bytes_are_reported() -> None:
    """Bytes after the last answered response become anomalies, not exchanges."""
    exchanges, anomalies = conversation(get(), ok(b"x") + b"HTTP/1.1 200")
    assert len(exchanges) == 1 and exchanges[0].complete
    assert names(anomalies) == ["http.truncated_head"]


def test_response_without_request_is_unexpected() -> None:
    """A response with no request at all is an unpaired exchange."""
    exchanges, anomalies = conversation(b"", ok(b"ghost"))
    assert names(anomalies) == ["http.unexpected_response"]
    assert exchanges[0].request is None
    assert exchanges[0].anomalies == (anomalies[0],)


def test_request_without_response_is_flushed_at_close() -> None:
    """A request never answered is emitted, incomplete, at close."""
    exchanges, _ = run(stream(UP, get("/lonely"), end=False))
    assert len(exchanges) == 1
    assert exchanges[0].response is None and not exchanges[0].complete


# Content codings.


CODINGS = {
    b"gzip": gzip.compress,
    b"x-gzip": gzip.compress,
    b"deflate": zlib.compress,
    b"br": brotli.compress,
    b"zstd": zstandard.ZstdCompressor().compress,
}
PAGE = b"".join(b"<p>row %d</p>\n" % i for i in range(4000))


@pytest.mark.parametrize("coding", sorted(CODINGS))
def test_each_content_coding_is_decoded(coding: bytes) -> None:
    """Every supported coding is undone; the wire body stays encoded."""
    wire = CODINGS[coding](PAGE)
    exchanges, anomalies = conversation(
        get(), ok(wire, b"Content-Encoding: " + coding + b"\r\n"), 1448
    )
    response = exchanges[0].response
    assert anomalies == [] and response is not None
    assert response.content_encoding == coding.decode()
    assert response.wire_body.data == wire
    assert response.body.data == PAGE
    start = response.head_end
    assert response.body.stream_range(0, len(PAGE)) == (start, start + len(wire))
    assert all(not p.exact for p in response.body.pieces)


def test_stacked_codings_in_chunks_map_to_chunks() -> None:
    """``gzip, br`` in chunks decodes; decoded pieces carry chunk labels."""
    wire = brotli.compress(gzip.compress(PAGE))
    half = len(wire) // 2
    response = chunked([wire[:half], wire[half:]], b"Content-Encoding: gzip, br\r\n")
    exchanges, anomalies = conversation(get(), response)
    decoded = exchanges[0].response
    assert anomalies == [] and decoded is not None
    assert decoded.body.data == PAGE
    assert set(decoded.body.labels(0, len(PAGE))) <= {"chunk 1", "chunk 2"}


def test_unknown_coding_keeps_body_encoded() -> None:
    """An unknown coding is reported and the body is left as sent."""
    exchanges, anomalies = conversation(
        get(), ok(b"\x1f\x9d...", b"Content-Encoding: compress\r\n")
    )
    assert names(anomalies) == ["http.unknown_coding"]
    response = exchanges[0].response
    assert response is not None and response.body is response.wire_body


def test_gzip_bomb_stops_at_limit() -> None:
    """A nested gzip bomb stops with an anomaly before it grows large."""
    bomb = gzip.compress(gzip.compress(bytes(200 * 1024 * 1024)))
    exchanges, anomalies = conversation(
        get(), ok(bomb, b"Content-Encoding: gzip, gzip\r\n")
    )
    assert names(anomalies) == ["http.decompression_limit"]
    response = exchanges[0].response
    assert response is not None
    assert len(response.body) < 8 * 1024 * 1024
    assert not response.body.complete and response.wire_body.complete


# Malformed input.


def test_huge_chunk_size_is_rejected() -> None:
    """A chunk size of 2**63 is an overflow attempt; the framing is given up."""
    response = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8000000000000000\r\nx"
    )
    exchanges, anomalies = conversation(get(), response)
    assert names(anomalies)[0] == "http.bad_chunk_size"
    assert anomalies[0].stream_offset == response.index(b"8000")
    assert exchanges[0].response is not None
    assert not exchanges[0].response.complete


def test_non_hex_chunk_size_is_rejected() -> None:
    """A chunk-size line that is not hex loses the framing."""
    response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    _, anomalies = conversation(get(), response)
    assert names(anomalies)[0] == "http.bad_chunk_size"


def test_head_without_end_is_truncated() -> None:
    """Field lines with no blank line after them end as a truncated head."""
    exchanges, anomalies = conversation(b"GET / HTTP/1.1\r\nHost: x\r\n", b"")
    assert names(anomalies) == ["http.truncated_head"]
    assert exchanges == []


@pytest.mark.parametrize("step", [None, 1000])
def test_head_too_large(step: int | None) -> None:
    """A head past the limit is reported once and the next request is found."""
    big = b"GET / HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 70000 + b"\r\n\r\n"
    exchanges, anomalies = conversation(big + get("/after"), ok(b"1") + ok(b"2"), step)
    assert names(anomalies)[0] == "http.head_too_large"
    assert "http.skipped_bytes" in names(anomalies)
    assert exchanges[-1].request is not None
    assert exchanges[-1].request.target == "/after"


def test_bad_request_line_resynchronises() -> None:
    """Garbage before a request is reported, skipped, and pairing says so."""
    requests = b"\x16\x03\x01garbage\r\nmore\r\n" + get("/real")
    exchanges, anomalies = conversation(requests, ok(b"400") + ok(b"real"))
    assert names(anomalies)[:2] == ["http.bad_request_line", "http.skipped_bytes"]
    assert exchanges[0].request is None
    assert "http.response_to_lost_request" in names(exchanges[0].anomalies)
    assert exchanges[1].request is not None
    assert exchanges[1].request.target == "/real"


def test_bad_header_line_is_reported() -> None:
    """A field line with space before the colon is reported and ignored."""
    request = b"GET / HTTP/1.1\r\nHost : x\r\nOk: y\r\n\r\n"
    exchanges, anomalies = conversation(request, ok(b""))
    assert names(anomalies) == ["http.bad_header"]
    assert exchanges[0].request is not None
    assert exchanges[0].request.headers == ((b"Ok", b"y"),)


def test_transfer_encoding_beats_content_length() -> None:
    """TE with CL is a smuggling sign; chunked framing wins (RFC 9112 §6.3)."""
    response = chunked([b"abc"], b"Content-Length: 1\r\n")
    exchanges, anomalies = conversation(get(), response)
    assert names(anomalies) == ["http.te_and_cl"]
    assert exchanges[0].response.body.data == b"abc"  # type: ignore[union-attr]


def test_bad_content_length() -> None:
    """Disagreeing Content-Length values lose the framing of a request."""
    request = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
    _, anomalies = conversation(request + get("/next"), ok(b"") + ok(b""))
    assert names(anomalies)[0] == "http.bad_content_length"


def test_upgrade_switches_to_tunnel() -> None:
    """After a 101 neither direction is decoded as HTTP any more."""
    request = get("/ws", extra=b"Upgrade: websocket\r\n") + b"\x81\x05hello"
    response = b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x81\x02hi"
    exchanges, anomalies = conversation(request, response)
    assert names(anomalies) == ["http.tunnel"]
    assert len(exchanges) == 1 and exchanges[0].response is not None
    assert exchanges[0].response.status == 101


def test_refused_upgrade_stays_http() -> None:
    """An Upgrade answered with a plain response leaves the connection HTTP."""
    requests = get("/", extra=b"Upgrade: h2c\r\n") + get("/two")
    exchanges, anomalies = conversation(requests, ok(b"1") + ok(b"2"))
    assert anomalies == []
    assert [body_of(x) for x in exchanges] == [b"1", b"2"]


def test_strict_mode_raises_on_first_anomaly() -> None:
    """Strict mode turns the first anomaly into an exception."""
    decoder = Http1Decoder(strict=True)
    with pytest.raises(StrictModeError):
        decoder.feed(UP, 0, b"NOT HTTP\r\n")


def test_overlapping_offsets_are_a_usage_error() -> None:
    """Calls that go back in the stream are the caller's mistake."""
    decoder = Http1Decoder()
    decoder.feed(UP, 0, b"GET")
    with pytest.raises(UsageError):
        decoder.feed(UP, 1, b"ET")


# Gaps.


def test_gap_in_content_length_body_is_unobserved() -> None:
    """Missing body bytes of a known length become unobserved; decoding goes on."""
    response = ok(b"0123456789") + ok(b"next")
    cut = response.index(b"0123")
    events = stream(UP, get() + get("/2")) + [
        ("data", DOWN, 0, response[: cut + 3]),
        ("gap", DOWN, cut + 3, 4),
        ("data", DOWN, cut + 7, response[cut + 7 :]),
        ("end", DOWN, len(response), 0),
    ]
    exchanges, anomalies = run(events)
    assert names(anomalies) == ["http.body_gap"]
    body = exchanges[0].response.body  # type: ignore[union-attr]
    assert body.unobserved == [(3, 7)] and body.complete
    assert body.data[:3] == b"012" and body.data[7:] == b"789"
    assert body.stream_range(7, 10) == (cut + 7, cut + 10)
    assert exchanges[1].response.body.data == b"next"  # type: ignore[union-attr]


def test_gap_inside_chunk_data_is_unobserved() -> None:
    """A gap wholly inside one chunk's data keeps the chunk framing."""
    response = chunked([b"abcdefgh", b"ij"])
    cut = response.index(b"cd")
    events = stream(UP, get()) + [
        ("data", DOWN, 0, response[:cut]),
        ("gap", DOWN, cut, 2),
        ("data", DOWN, cut + 2, response[cut + 2 :]),
    ]
    exchanges, anomalies = run(events)
    body = exchanges[0].response.body  # type: ignore[union-attr]
    assert names(anomalies) == ["http.body_gap"]
    assert body.unobserved == [(2, 4)] and exchanges[0].complete
    assert body.data[4:] == b"efghij"


def test_gap_over_chunk_framing_loses_the_response() -> None:
    """A gap over a chunk-size line ends the body incomplete; later ones unplaced."""
    response = chunked([b"abcd", b"efgh"]) + ok(b"later")
    cut = response.index(b"\r\n4\r\nefgh")
    events = stream(UP, get() + get("/2")) + [
        ("data", DOWN, 0, response[:cut]),
        ("gap", DOWN, cut, 5),
        ("data", DOWN, cut + 5, response[cut + 5 :]),
    ]
    exchanges, anomalies = run(events)
    assert names(anomalies)[0] == "http.gap"
    assert anomalies[0].stream_offset == cut
    first = exchanges[0]
    assert first.response is not None and not first.complete
    assert first.response.body.data == b"abcd"
    unplaced = [x for x in exchanges if x.request is None]
    assert unplaced and body_of(unplaced[0]) == b"later"
    assert "http.unplaceable_response" in names(anomalies)


def test_gap_in_request_head_resynchronises() -> None:
    """A lost request head is marked; the next request line restores framing."""
    requests = get("/lost") + get("/found")
    events: list[Event] = [
        ("data", UP, 0, requests[:5]),
        ("gap", UP, 5, 10),
        ("data", UP, 15, requests[15:]),
    ]
    events += stream(DOWN, ok(b"L") + ok(b"F"))
    exchanges, anomalies = run(events)
    assert names(anomalies)[:2] == ["http.gap", "http.skipped_bytes"]
    assert exchanges[0].request is None
    assert exchanges[0].response.body.data == b"L"  # type: ignore[union-attr]
    assert exchanges[1].request.target == "/found"  # type: ignore[union-attr]
    assert exchanges[1].response.body.data == b"F"  # type: ignore[union-attr]


def test_gap_in_response_head_loses_that_response() -> None:
    """A gap in a response head leaves its request unanswered and is reported."""
    responses = ok(b"one") + ok(b"two")
    events = stream(UP, get() + get("/2")) + [
        ("data", DOWN, 0, responses[:4]),
        ("gap", DOWN, 4, 6),
        ("data", DOWN, 10, responses[10:]),
    ]
    exchanges, anomalies = run(events)
    assert names(anomalies)[0] == "http.gap"
    assert exchanges[0].response is None
    assert any(x.request is None and x.response is not None for x in exchanges)


def test_gap_in_encoded_body_stops_decoding() -> None:
    """Missing bytes of a gzip body keep the framing but stop the decoding."""
    wire = gzip.compress(PAGE)
    response = ok(wire, b"Content-Encoding: gzip\r\n")
    start = response.index(wire)
    events = stream(UP, get()) + [
        ("data", DOWN, 0, response[: start + 100]),
        ("gap", DOWN, start + 100, 50),
        ("data", DOWN, start + 150, response[start + 150 :]),
    ]
    exchanges, anomalies = run(events)
    assert names(anomalies) == ["http.body_gap", "http.decode_gap"]
    assert anomalies[1].stream_offset == start + 100
    response_out = exchanges[0].response
    assert response_out is not None
    assert response_out.wire_body.unobserved == [(100, 150)]
    assert response_out.wire_body.complete and not response_out.body.complete


def test_gap_in_close_delimited_body() -> None:
    """A gap in a body read to the close is unobserved and reading goes on."""
    response = b"HTTP/1.0 200 OK\r\n\r\nabcdef"
    events = stream(UP, get()) + [
        ("data", DOWN, 0, response[:-4]),
        ("gap", DOWN, len(response) - 4, 2),
        ("data", DOWN, len(response) - 2, response[-2:]),
        ("end", DOWN, len(response), 0),
    ]
    exchanges, _ = run(events)
    body = exchanges[0].response.body  # type: ignore[union-attr]
    assert body.unobserved == [(2, 4)] and body.data[4:] == b"ef" and body.complete


def test_offset_jump_is_a_gap() -> None:
    """A feed past the expected offset is taken as a gap before it."""
    response = ok(b"0123456789")
    cut = response.index(b"0123")
    events = stream(UP, get()) + [
        ("data", DOWN, 0, response[: cut + 2]),
        ("data", DOWN, cut + 5, response[cut + 5 :]),
    ]
    exchanges, _ = run(events)
    assert exchanges[0].response.body.unobserved == [(2, 5)]  # type: ignore[union-attr]


# Properties and cost.


def _sample() -> tuple[bytes, bytes]:
    """A connection mixing most framings, used by the split property."""
    wire = gzip.compress(PAGE[:3000])
    requests = (
        get("/a")
        + get("/h", "HEAD")
        + b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"3;x\r\nabc\r\n0\r\n\r\n"
        + get("/c")
        + get("/z")
    )
    responses = (
        ok(b"alpha")
        + ok(b"", b"X: y\r\n").replace(b"Length: 0", b"Length: 9")
        + b"HTTP/1.1 100 Continue\r\n\r\n"
        + chunked([wire[:200], wire[200:]], b"Content-Encoding: gzip\r\n", b";e=1")
        + ok(b"c")
        + b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the end"
    )
    return requests, responses


REQUESTS, RESPONSES = _sample()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, len(REQUESTS) - 1), max_size=20),
    st.lists(st.integers(1, len(RESPONSES) - 1), max_size=40),
    st.booleans(),
)
def test_any_split_gives_the_same_exchanges(
    up_cuts: list[int], down_cuts: list[int], interleave: bool
) -> None:
    """However the streams are cut (and interleaved), the exchanges are the same."""
    expected = conversation(REQUESTS, RESPONSES)
    up = stream(UP, REQUESTS, up_cuts)
    down = stream(DOWN, RESPONSES, down_cuts)
    if interleave:
        events: list[Event] = []
        for i in range(max(len(up), len(down))):
            events += up[i : i + 1] + down[i : i + 1]
    else:
        events = up + down
    got = run(events)
    assert got[0] == expected[0]
    assert sorted(map(repr, got[1])) == sorted(map(repr, expected[1]))
    assert len(expected[0]) == 5 and expected[1] == []


def test_large_body_in_segments_is_linear() -> None:
    """A 4 MB body fed in 1448-byte pieces is decoded in one pass."""
    body = bytes(range(256)) * (4 * 4096)
    response = ok(body)
    decoder = Http1Decoder()
    decoder.feed(UP, 0, get())
    started = time.perf_counter()
    results: list[object] = []
    for i in range(0, len(response), 1448):
        results += decoder.feed(DOWN, i, response[i : i + 1448])
    elapsed = time.perf_counter() - started
    exchange = results[-1]
    assert isinstance(exchange, HttpExchange) and exchange.response is not None
    assert exchange.response.body.data == body
    assert len(exchange.response.body.pieces) == 1
    assert elapsed < 2.0


def test_every_anomaly_name_is_catalogued() -> None:
    """Every http.* name the decoders use is in the anomaly catalogue."""
    import re
    from pathlib import Path

    import fcgiforensics.decoders.content as content
    import fcgiforensics.decoders.http1 as http1

    text = "".join(Path(m.__file__).read_text() for m in (http1, content) if m.__file__)
    used = set(re.findall(r'"(http\.[a-z_]+)"', text))
    assert used and used <= set(CATALOGUE)


def test_gap_in_request_chunk_framing_ends_request() -> None:
    """A gap over a request's chunk-size line ends that request incomplete."""
    requests = (
        b"POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n" + get("/next")
    )
    cut = requests.index(b"3\r\ndef")
    events: list[Event] = [
        ("data", UP, 0, requests[:cut]),
        ("gap", UP, cut, 3),
        ("data", UP, cut + 3, requests[cut + 3 :]),
    ]
    events += stream(DOWN, ok(b"1") + ok(b"2"))
    exchanges, anomalies = run(events)
    assert names(anomalies)[:2] == ["http.gap", "http.skipped_bytes"]
    first = exchanges[0].request
    assert first is not None and not first.complete
    assert first.body.data == b"abc" and first.chunks == ((first.head_end, 3),)
    assert exchanges[1].request is not None
    assert exchanges[1].request.target == "/next"


def test_request_trailing_partial_head_is_truncated() -> None:
    """A request stream that stops inside a head reports it and keeps the rest."""
    exchanges, anomalies = conversation(get("/a") + b"GET /b HT", ok(b"a"))
    assert [x.request.target for x in exchanges] == ["/a"]  # type: ignore[union-attr]
    assert names(anomalies) == ["http.truncated_head"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.booleans(),
            st.one_of(
                st.binary(max_size=40),
                st.sampled_from(
                    [
                        b"HTTP/1.1 200 OK\r\n",
                        b"GET / HTTP/1.1\r\n",
                        b"Content-Length: 3\r\n",
                        b"Transfer-Encoding: chunked\r\n",
                        b"Content-Encoding: gzip\r\n",
                        b"\r\n",
                        b"5\r\n",
                        b"0\r\n\r\n",
                    ]
                ),
                st.integers(1, 30),
            ),
        ),
        max_size=30,
    )
)
def test_arbitrary_input_never_raises(
    steps: list[tuple[bool, bytes | int]],
) -> None:
    """Any mix of bytes and gaps on either side gives results, not exceptions."""
    decoder = Http1Decoder()
    offsets = {UP: 0, DOWN: 0}
    for upward, item in steps:
        direction = UP if upward else DOWN
        if isinstance(item, int):
            decoder.gap(direction, offsets[direction], item)
            offsets[direction] += item
        else:
            decoder.feed(direction, offsets[direction], item)
            offsets[direction] += len(item)
    decoder.end(UP, offsets[UP])
    decoder.close()
