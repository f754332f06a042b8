"""Both decoders on real captures: nginx in front of flup and php-fpm,
driven by curl and http.client, both legs captured by tcpdump.

Every exchange is checked against what the client really kept and what
the app really wrote, and a sample of body offsets is traced back to the
frames of the capture with dpkt, independently of our reader.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dpkt  # type: ignore[import-untyped]
import pytest

from fcgiforensics.decoders.base import Direction
from fcgiforensics.decoders.body import Body
from fcgiforensics.legs import FcgiItem, HttpItem, Leg, read_leg
from fcgiforensics.reassembly import Connection
from tests.testbed import (
    BackendKind,
    FetchResult,
    Testbed,
    make_body,
    parse_body_query,
    unavailable_reason,
)

pytestmark = pytest.mark.testbed

# Link-layer header lengths of what tcpdump writes here: Ethernet on
# `-i lo`, Linux cooked v1 and v2 on `-i any`.
_LINK_HEADER = {dpkt.pcap.DLT_EN10MB: 14, 113: 16, 276: 20}

# TCP sequence numbers wrap at 2**32 (RFC 9293 section 3.4).
_SEQ_SPACE = 2**32

# What nginx may legitimately leave behind on the FastCGI leg: with
# fastcgi_keep_conn on, once a Content-Length body is complete nginx may
# close the connection before END_REQUEST arrives (an abort, never
# reported as the app's doing).
_NGINX_EARLY_CLOSE = "fcgi.web_server_closed"

# Fetched with curl, one fresh connection each: (uri, accept_gzip).  The
# seeds keep every URI unique, so items can be matched by URI.
CURL_FETCHES = [
    ("/body?size=200000&seed=11&mode=length", False),
    ("/body?size=150000&seed=12&mode=chunked", False),
    ("/body?size=90000&seed=13&mode=length&binary=1", False),
    ("/body?size=120000&seed=14&mode=length", True),
    ("/body?size=80000&seed=15&mode=chunked", True),
    # Under gzip_min_length: accepted but sent as is.
    ("/body?size=100&seed=16&mode=length", True),
    ("/body?size=0&seed=17&mode=length", False),
    ("/body?size=0&seed=18&mode=chunked", False),
]

# Fetched with http.client over a few keep-alive connections, while nginx
# keeps its FastCGI connections open (fastcgi_keep_conn on).
MANY_PLAIN = [
    f"/body?size={4000 * i + 7}&seed={100 + i}"
    f"&mode={'chunked' if i % 2 else 'length'}&binary={i % 3 == 0:d}"
    for i in range(16)
]
MANY_GZIP = [
    f"/body?size={9000 * i + 300}&seed={200 + i}"
    f"&mode={'chunked' if i % 2 else 'length'}"
    for i in range(8)
]

SETUPS = [
    pytest.param(("flup", False), id="flup-lo"),
    pytest.param(("php", False), id="php-lo"),
    pytest.param(("flup", True), id="flup-any"),
    pytest.param(("php", True), id="php-any"),
]


def _needs_testbed(backend: BackendKind) -> None:
    reason = unavailable_reason(backend)
    if reason is not None:
        pytest.skip(reason)


# Reading the capture with dpkt, apart from our own reader -----------------


@dataclass(frozen=True, slots=True)
class Packet:
    """One TCP/IPv4 packet as dpkt sees it."""

    sport: int
    dport: int
    seq: int
    flags: int
    payload: bytes


def _packets(path: Path) -> dict[int, Packet]:
    """Every TCP packet of a pcap, keyed by 1-based frame number."""
    out: dict[int, Packet] = {}
    with open(path, "rb") as handle:
        reader = dpkt.pcap.Reader(handle)
        skip = _LINK_HEADER[reader.datalink()]
        for number, (_, frame) in enumerate(reader, start=1):
            ip = dpkt.ip.IP(frame[skip:])
            if isinstance(ip.data, dpkt.tcp.TCP):
                tcp = ip.data
                out[number] = Packet(
                    tcp.sport, tcp.dport, tcp.seq, tcp.flags, bytes(tcp.data)
                )
    return out


def _server_isn(packets: dict[int, Packet], conn: Connection) -> int:
    """The server's initial sequence number, from its SYN-ACK."""
    syn_ack = dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK
    server_port, client_port = conn.server[1], conn.client[1]
    for number in sorted(packets):
        packet = packets[number]
        if number < conn.first_frame or (packet.flags & syn_ack) != syn_ack:
            continue
        if (packet.sport, packet.dport) == (server_port, client_port):
            return packet.seq
    raise AssertionError(f"no SYN-ACK for {conn.label()}")


def _bytes_from_frames(
    packets: dict[int, Packet],
    conn: Connection,
    frames: list[int],
    start: int,
    end: int,
) -> bytes:
    """Server-to-client stream bytes ``[start, end)`` rebuilt from the
    payloads of ``frames`` alone; each frame must hold some of them."""
    isn = _server_isn(packets, conn)
    out = bytearray(end - start)
    covered = [False] * (end - start)
    for number in frames:
        packet = packets[number]
        assert (packet.sport, packet.dport) == (conn.server[1], conn.client[1])
        # Stream offset 0 is the byte after the SYN (RFC 9293 section 3.4).
        offset = (packet.seq - isn - 1) % _SEQ_SPACE
        lo = max(start, offset)
        hi = min(end, offset + len(packet.payload))
        assert lo < hi, f"frame {number} holds none of [{start}, {end})"
        out[lo - start : hi - start] = packet.payload[lo - offset : hi - offset]
        covered[lo - start : hi - start] = [True] * (hi - lo)
    assert all(covered), f"frames {frames} leave part of [{start}, {end}) out"
    return bytes(out)


# Running the testbed ------------------------------------------------------


@dataclass
class Run:
    """One testbed run: what the clients got and both legs decoded."""

    backend: BackendKind
    client_pcap: Path
    upstream_pcap: Path
    results: list[FetchResult]
    client: Leg
    upstream: Leg
    _packets: dict[Path, dict[int, Packet]] = field(default_factory=dict)

    def packets(self, path: Path) -> dict[int, Packet]:
        if path not in self._packets:
            self._packets[path] = _packets(path)
        return self._packets[path]

    def http_item(self, result: FetchResult) -> HttpItem:
        """The client-leg exchange of ``result``, by URI and client port."""
        found = [
            item
            for item in self.client.http
            if item.exchange.request is not None
            and item.exchange.request.target == result.uri
            and item.connection.client[1] == result.local_port
        ]
        assert len(found) == 1, f"{len(found)} exchanges for {result.uri}"
        return found[0]

    def fcgi_item(self, result: FetchResult) -> FcgiItem:
        """The FastCGI request of ``result``, by URI (unique in a run)."""
        found = [
            item
            for item in self.upstream.fcgi
            if item.request.params.get("REQUEST_URI") == result.uri
        ]
        assert len(found) == 1, f"{len(found)} FastCGI requests for {result.uri}"
        return found[0]


@pytest.fixture(scope="module", params=SETUPS)
def run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Run:
    backend, any_iface = request.param
    _needs_testbed(backend)
    workdir = tmp_path_factory.mktemp(f"decode-{backend}")
    with Testbed(
        workdir, backend=backend, gzip=True, keep_conn=True, any_iface=any_iface
    ) as tb:
        results = [tb.fetch(uri, accept_gzip=gz) for uri, gz in CURL_FETCHES]
        results += tb.fetch_many(MANY_PLAIN, concurrency=4)
        results += tb.fetch_many(MANY_GZIP, concurrency=2, accept_gzip=True)
    for result in results:
        assert result.intact, (result.uri, result.error, tb.nginx_errors())
    return Run(
        backend,
        tb.client_pcap,
        tb.upstream_pcap,
        results,
        read_leg([str(tb.client_pcap)]),
        read_leg([str(tb.upstream_pcap)]),
    )


def _chunked(result: FetchResult) -> bool:
    coding = result.header("Transfer-Encoding") or ""
    return "chunked" in coding.lower()


def _content_length(result: FetchResult) -> int | None:
    value = result.header("Content-Length")
    return None if value is None else int(value)


# Bodies -------------------------------------------------------------------


def test_every_exchange_is_decoded_once(run: Run) -> None:
    """Each fetch gives exactly one exchange on the client leg and one
    FastCGI request on the upstream leg, and nothing else is decoded."""
    assert len(run.client.http) == len(run.results)
    assert len(run.upstream.fcgi) == len(run.results)
    for result in run.results:
        run.http_item(result)
        run.fcgi_item(result)


def test_client_leg_body_equals_what_the_client_decoded(run: Run) -> None:
    """The client-leg response body, de-chunked and un-gzipped, equals the
    body the client kept after decoding, fully observed and complete."""
    for result in run.results:
        exchange = run.http_item(result).exchange
        response = exchange.response
        assert response is not None, result.uri
        assert response.body.data == result.body, result.uri
        assert response.body.fully_observed and response.body.complete
        assert response.complete and exchange.complete, result.uri


def test_client_leg_wire_body_equals_what_the_client_saved(run: Run) -> None:
    """The de-chunked, still encoded body equals the bytes the client
    saved before content decoding (curl without --raw, http.client)."""
    for result in run.results:
        response = run.http_item(result).exchange.response
        assert response is not None
        assert response.wire_body.data == result.saved, result.uri
        assert response.wire_body.fully_observed


def test_fastcgi_leg_body_equals_what_the_app_wrote(run: Run) -> None:
    """STDOUT after the CGI header block equals the app's bytes, fully
    observed and complete, for every request."""
    for result in run.results:
        fcgi = run.fcgi_item(result).request
        assert fcgi.body.data == result.app_body, result.uri
        assert fcgi.body.fully_observed and fcgi.body.complete, result.uri


def test_no_decoder_anomalies_on_clean_traffic(run: Run) -> None:
    """Clean traffic gives no HTTP anomaly at all, and on the FastCGI leg at
    most nginx's early close of a kept connection before END_REQUEST."""
    names = {a.name for a in run.client.anomalies}
    assert not {n for n in names if n.startswith("http.")}, names
    for item in run.upstream.fcgi:
        request = item.request
        found = {a.name for a in request.anomalies}
        if request.complete:
            assert not found, found
        else:
            assert found == {_NGINX_EARLY_CLOSE}, found
            assert request.body.complete
    names = {a.name for a in run.upstream.anomalies}
    assert {n for n in names if n.startswith("fcgi.")} <= {_NGINX_EARLY_CLOSE}


# Metadata -----------------------------------------------------------------


def test_response_metadata_matches_the_client_headers(run: Run) -> None:
    """Status, chunked framing, Content-Encoding and Content-Length decoded
    from the client leg agree with the headers the client received."""
    seen_gzip = seen_chunked = seen_length = False
    for result in run.results:
        exchange = run.http_item(result).exchange
        request, response = exchange.request, exchange.response
        assert request is not None and response is not None
        assert (request.method, request.target) == ("GET", result.uri)
        assert response.status == result.status == 200
        assert response.chunked == _chunked(result), result.uri
        assert response.content_encoding == result.header("Content-Encoding")
        assert response.content_length == _content_length(result), result.uri
        seen_gzip |= response.content_encoding == "gzip"
        seen_chunked |= response.chunked
        seen_length |= response.content_length is not None
    assert seen_gzip and seen_chunked and seen_length


def test_gzip_on_is_decoded_as_gzip(run: Run) -> None:
    """A text body over gzip_min_length asked for with Accept-Encoding
    arrives gzipped, its wire body smaller, its decoded body the app's."""
    for result in run.results:
        query = parse_body_query(result.uri)
        response = run.http_item(result).exchange.response
        assert response is not None
        accepted = result.uri in MANY_GZIP or (result.uri, True) in CURL_FETCHES
        if accepted and not query.binary and query.size >= 256:
            assert response.content_encoding == "gzip", result.uri
            assert len(response.wire_body) < len(response.body)
            assert response.body.data == result.app_body
        else:
            assert response.content_encoding is None, result.uri
            assert response.body is response.wire_body or (
                response.body.data == response.wire_body.data
            )


def test_fastcgi_params_name_the_request_and_client_port(run: Run) -> None:
    """PARAMS carry the request's URI and method, and REMOTE_PORT equal to
    the port the client connected from."""
    for result in run.results:
        params = run.fcgi_item(result).request.params
        assert params["REQUEST_URI"] == result.uri
        assert params["REQUEST_METHOD"] == "GET"
        assert params["REMOTE_PORT"] == str(result.local_port)
        assert params["QUERY_STRING"] == result.uri.partition("?")[2]


def test_cgi_headers_carry_what_the_app_set(run: Run) -> None:
    """The CGI header block holds the app's Content-Type, its length in
    mode=length only, and the request status is 200."""
    for result in run.results:
        query = parse_body_query(result.uri)
        request = run.fcgi_item(result).request
        assert request.headers.complete
        content_type = request.headers.content_type or ""
        # php-fpm appends ";charset=UTF-8" to text types.
        assert content_type.split(";")[0] == query.content_type(), content_type
        expected = len(result.app_body) if query.mode == "length" else None
        assert request.headers.content_length == expected, result.uri
        assert request.status == 200
        assert request.headers.raw.endswith(b"\r\n\r\n")


def test_kept_alive_connections_carry_many_exchanges(run: Run) -> None:
    """Keep-alive on the client leg and fastcgi_keep_conn upstream put
    several exchanges on one connection, each decoded in order."""
    assert max(item.sequence for item in run.client.http) >= 2
    assert max(item.sequence for item in run.upstream.fcgi) >= 2
    assert all(item.request.keep_conn for item in run.upstream.fcgi)
    for leg_items in (run.client.http, run.upstream.fcgi):
        by_conn: dict[int, list[int]] = {}
        for item in leg_items:
            by_conn.setdefault(item.connection.index, []).append(item.sequence)
        for sequences in by_conn.values():
            assert sequences == list(range(len(sequences)))


# The body map -------------------------------------------------------------


def _sample_ranges(body: Body) -> Iterator[tuple[int, int]]:
    """A few body ranges: the ends, the middle and across the first and
    last piece boundaries (a chunk or record edge)."""
    n = len(body)
    yield 0, min(16, n)
    yield max(n // 2 - 10, 0), min(n // 2 + 10, n)
    yield max(n - 16, 0), n
    for piece in (body.pieces[0], body.pieces[-1]):
        edge = piece.body_end if piece is body.pieces[0] else piece.body_start
        if 0 < edge < n:
            yield max(edge - 5, 0), min(edge + 5, n)


def _piece_spans(body: Body, start: int, end: int) -> Iterator[tuple[int, int]]:
    """``[start, end)`` cut at piece boundaries, each part within a piece."""
    for piece in body.pieces:
        lo, hi = max(start, piece.body_start), min(end, piece.body_end)
        if lo < hi:
            yield lo, hi


def _check_body_map(run: Run, pcap: Path, conn: Connection, body: Body) -> None:
    packets = run.packets(pcap)
    half = conn.halves[Direction.TO_CLIENT]
    for start, end in _sample_ranges(body):
        if start >= end:
            continue
        for lo, hi in _piece_spans(body, start, end):
            found = body.stream_range(lo, hi)
            assert found is not None, (lo, hi)
            s0, s1 = found
            assert s1 - s0 == hi - lo  # identity pieces map byte for byte
            frames = half.frames_for(s0, s1)
            assert frames, (s0, s1)
            on_wire = _bytes_from_frames(packets, conn, frames, s0, s1)
            assert on_wire == body.data[lo:hi], (lo, hi, frames)


def test_identity_body_offsets_map_to_the_frames_that_carried_them(run: Run) -> None:
    """For identity bodies on both legs, stream_range and frames_for lead to
    capture frames whose TCP payload (read with dpkt) holds those bytes."""
    checked = 0
    for result in run.results:
        if not result.app_body:
            continue
        item = run.http_item(result)
        response = item.exchange.response
        assert response is not None
        if response.content_encoding is None:
            _check_body_map(run, run.client_pcap, item.connection, response.body)
            checked += 1
        fcgi = run.fcgi_item(result)
        upstream = fcgi.connection
        _check_body_map(run, run.upstream_pcap, upstream, fcgi.request.body)
        checked += 1
    assert checked > len(run.results)


def test_chunk_and_record_labels_name_the_wire_units(run: Run) -> None:
    """Pieces of a chunked body are labelled as chunks, FastCGI pieces as
    records, and each label's stream bytes start inside the message."""
    result = next(r for r in run.results if r.uri == CURL_FETCHES[1][0])
    response = run.http_item(result).exchange.response
    assert response is not None and response.chunked
    assert all(p.label.startswith("chunk") for p in response.body.pieces)
    assert response.body.pieces[0].stream_start >= response.head_end
    fcgi = run.fcgi_item(result).request
    assert all(p.label.startswith("record") for p in fcgi.body.pieces)
    stdout_records = {f"record {r.number}" for r in fcgi.records}
    assert {p.label for p in fcgi.body.pieces} <= stdout_records


def test_gzip_body_map_stays_inside_the_response(run: Run) -> None:
    """For a gzipped body the coarse map still points into the response's
    own bytes, after its head, and to frames of its connection."""
    checked = 0
    for result in run.results:
        item = run.http_item(result)
        response = item.exchange.response
        assert response is not None
        if response.content_encoding != "gzip":
            continue
        body, half = response.body, item.connection.to_client
        for start, end in _sample_ranges(body):
            found = body.stream_range(start, end)
            assert found is not None
            assert response.head_end <= found[0] < found[1] <= half.length
            frames = half.frames_for(*found)
            assert frames and all(f >= item.connection.first_frame for f in frames)
        checked += 1
    assert checked >= len(MANY_GZIP)


# HEAD, 204 and 304 --------------------------------------------------------

# A PHP script that answers with the status asked for; its location is
# pasted into the testbed's nginx configuration.
_STATUS_SCRIPT = """<?php
$status = (int)($_GET['status'] ?? 200);
http_response_code($status);
header('Content-Type: text/plain');
header('ETag: "v1"');
if ($status === 200) {
    echo "short body\\n";
}
"""

# Nested in the testbed's `location /`.  fastcgi_param lists are not
# inherited once a level sets its own, so the needed ones are repeated.
_STATUS_LOCATION = """
        location /status {{
            fastcgi_pass app;
            fastcgi_param SCRIPT_FILENAME {script};
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param REQUEST_URI $request_uri;
            fastcgi_param REMOTE_PORT $remote_port;
        }}
"""

HEAD_LENGTH = "/body?size=5000&seed=31&mode=length"
HEAD_CHUNKED = "/body?size=5000&seed=32&mode=chunked"
AFTER = "/body?size=3000&seed=33&mode=length"
# flup writes the head and the first 1000 bytes, then pauses 30 ms per
# piece; nginx, needing no body for HEAD, closes its side meanwhile.
SLOW_HEAD = "/body?size=50000&seed=34&chunk=1000&slow_ms=30"


@dataclass
class Bodiless:
    """A run of requests whose responses carry no body, on one connection."""

    backend: BackendKind
    asked: list[tuple[str, str]]
    client: Leg
    upstream: Leg
    local_port: int

    def http(self, method: str, uri: str) -> HttpItem:
        found = [
            item
            for item in self.client.http
            if item.exchange.request is not None
            and (item.exchange.request.method, item.exchange.request.target)
            == (method, uri)
        ]
        assert len(found) == 1, (method, uri)
        return found[0]

    def fcgi(self, method: str, uri: str) -> FcgiItem:
        found = [
            item
            for item in self.upstream.fcgi
            if (
                item.request.params.get("REQUEST_METHOD"),
                item.request.params.get("REQUEST_URI"),
            )
            == (method, uri)
        ]
        assert len(found) == 1, (method, uri)
        return found[0]


@pytest.fixture(scope="module", params=["flup", "php"])
def bodiless(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Bodiless:
    backend: BackendKind = request.param
    _needs_testbed(backend)
    workdir = tmp_path_factory.mktemp(f"bodiless-{backend}")
    asked = [("HEAD", HEAD_LENGTH), ("HEAD", HEAD_CHUNKED)]
    location = ""
    if backend == "php":
        # Only the PHP side can set a status cheaply; the flup app of the
        # testbed always answers 200.
        script = workdir / "status.php"
        script.write_text(_STATUS_SCRIPT)
        location = _STATUS_LOCATION.format(script=script)
        asked += [("GET", "/status?status=204"), ("GET", "/status?status=304")]
        asked += [("HEAD", "/status?status=200")]
    else:
        asked.append(("HEAD", SLOW_HEAD))
    asked.append(("GET", AFTER))
    with Testbed(workdir, backend=backend, nginx_extra_location=location) as tb:
        conn = http.client.HTTPConnection("127.0.0.1", tb.client_port, timeout=5)
        try:
            conn.connect()
            assert conn.sock is not None
            local_port: int = conn.sock.getsockname()[1]
            for method, uri in asked:
                conn.request(method, uri)
                response = conn.getresponse()
                response.read()
                assert not response.will_close, (method, uri)
        finally:
            conn.close()
    return Bodiless(
        backend,
        asked,
        read_leg([str(tb.client_pcap)]),
        read_leg([str(tb.upstream_pcap)]),
        local_port,
    )


def test_head_response_has_no_body_on_the_client_leg(bodiless: Bodiless) -> None:
    """A response to HEAD ends at its head (RFC 9110 section 9.3.2), even
    with a Content-Length, and the next response on the connection decodes."""
    for uri in (HEAD_LENGTH, HEAD_CHUNKED):
        item = bodiless.http("HEAD", uri)
        response = item.exchange.response
        assert response is not None
        assert response.status == 200 and not response.chunked
        assert len(response.body) == 0 and response.body.complete
        assert item.exchange.complete and not item.exchange.anomalies
        assert item.connection.client[1] == bodiless.local_port
    length = bodiless.http("HEAD", HEAD_LENGTH).exchange.response
    assert length is not None and length.content_length == 5000
    after = bodiless.http("GET", AFTER).exchange.response
    assert after is not None and after.body.data == make_body(3000, 33)
    sequences = [item.sequence for item in bodiless.client.http]
    assert sequences == list(range(len(bodiless.asked)))


def test_head_on_the_fastcgi_leg_keeps_what_the_app_sent(bodiless: Bodiless) -> None:
    """On the FastCGI leg HEAD is just a method: flup writes the body anyway
    and php-fpm writes none, and the decoder keeps exactly that."""
    for uri in (HEAD_LENGTH, HEAD_CHUNKED):
        request = bodiless.fcgi("HEAD", uri).request
        assert request.params["REMOTE_PORT"] == str(bodiless.local_port)
        assert request.body.fully_observed
        # nginx needs only the head for HEAD and may close the FastCGI
        # connection before the app has ended its STDOUT or its request:
        # the request is then aborted by the web server, and its body is
        # complete only if the app's STDOUT stream ended first.
        assert request.body.complete or request.aborted
        if bodiless.backend == "php":
            assert request.body.data == b""
            continue
        # flup writes the body anyway: what came is a prefix of it.
        sent = parse_body_query(uri).sent()
        assert request.body.data == sent[: len(request.body)]
        if request.body.complete:
            assert request.body.data == sent
    after = bodiless.fcgi("GET", AFTER).request
    assert after.body.data == make_body(3000, 33)


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_have_no_body_on_either_leg(
    bodiless: Bodiless, status: int
) -> None:
    """204 and 304 responses end at their head on the client leg (RFC 9112
    section 6.3) and carry an empty STDOUT body after a Status header."""
    if bodiless.backend != "php":
        pytest.skip("the flup app of the testbed cannot choose its status")
    uri = f"/status?status={status}"
    exchange = bodiless.http("GET", uri).exchange
    assert exchange.response is not None
    assert exchange.response.status == status
    assert len(exchange.response.body) == 0 and exchange.complete
    assert not exchange.anomalies
    request = bodiless.fcgi("GET", uri).request
    assert request.headers.status == request.status == status
    assert len(request.body) == 0 and request.body.complete
    assert request.complete and not request.anomalies


def test_web_server_close_first_is_an_abort_not_the_apps_doing(
    bodiless: Bodiless,
) -> None:
    """When nginx closes the FastCGI connection before the app has finished
    (HEAD needs no body), the request is marked aborted by the web server
    and no anomaly blames the app's side."""
    if bodiless.backend != "flup":
        pytest.skip("only the flup app pauses between body pieces here")
    item = bodiless.fcgi("HEAD", SLOW_HEAD)
    request, conn = item.request, item.connection
    # The capture shows the web server's side ended before the app's.
    web_end = conn.to_server.last_frame
    assert web_end is not None and (conn.to_server.fin or conn.to_server.rst)
    app_end = conn.to_client.last_frame
    assert not conn.to_client.fin or (app_end is not None and app_end > web_end)
    assert not request.body.complete and not request.complete
    app_side = [
        a.name for a in request.anomalies if a.direction == Direction.TO_CLIENT.label
    ]
    assert "fcgi.fin_before_end" not in app_side, app_side
    assert request.aborted
