"""Tests of the testbed itself: real nginx, backends, clients and tcpdump."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from pathlib import Path

import dpkt  # type: ignore[import-untyped]
import pytest

from tests.testbed import (
    BACKEND_KINDS,
    FAKE_RECORD_HEADER,
    LINE_LENGTH,
    STDERR_MESSAGE,
    BackendKind,
    RelayFault,
    Testbed,
    dechunk,
    make_body,
    parse_body_query,
    unavailable_reason,
)
from tests.testbed.relay import ResponseFramer

PHP_BODIES = Path(__file__).parent / "testbed" / "php" / "bodies.php"

# Link-layer header lengths of the capture kinds tcpdump writes here:
# Ethernet (lo), Linux cooked v1 and v2 (-i any).
_LINK_HEADER = {dpkt.pcap.DLT_EN10MB: 14, 113: 16, 276: 20}


def _needs_testbed(backend: BackendKind | None = None) -> None:
    reason = unavailable_reason(backend)
    if reason is not None:
        pytest.skip(reason)


def _tcp_packets(path: Path) -> list[tuple[int, int, bytes, int]]:
    """(sport, dport, payload, caplen) of each TCP/IPv4 packet in a pcap."""
    packets = []
    with open(path, "rb") as handle:
        reader = dpkt.pcap.Reader(handle)
        skip = _LINK_HEADER[reader.datalink()]
        for _, frame in reader:
            ip = dpkt.ip.IP(frame[skip:])
            if isinstance(ip.data, dpkt.tcp.TCP):
                tcp = ip.data
                packets.append((tcp.sport, tcp.dport, bytes(tcp.data), len(frame)))
    return packets


def _count_on_port(path: Path, port: int) -> int:
    return sum(1 for s, d, _, _ in _tcp_packets(path) if port in (s, d))


def _payload_from(path: Path, port: int) -> bytes:
    # Good enough on quiet loopback with one connection: no loss, no
    # reordering, and retransmissions are not expected.
    return b"".join(data for s, _, data, _ in _tcp_packets(path) if s == port)


# Bodies ------------------------------------------------------------------


def test_make_body_is_deterministic_and_sized() -> None:
    """make_body gives the same bytes for the same arguments, of the asked size."""
    for size in (0, 1, 63, 64, 65, 100_000):
        for text in (True, False):
            body = make_body(size, 7, text=text)
            assert len(body) == size
            assert body == make_body(size, 7, text=text)
    assert make_body(1000, 1) != make_body(1000, 2)
    assert make_body(1000, 1, text=False) != make_body(1000, 2, text=False)


def test_text_body_lines_carry_their_offset() -> None:
    """Each text line starts with its own offset and the seed."""
    body = make_body(10 * LINE_LENGTH, 42)
    for offset in range(0, len(body), LINE_LENGTH):
        line = body[offset : offset + LINE_LENGTH]
        assert line.startswith(b"%010d s42 " % offset)
        assert line.endswith(b"\n")
    assert body.isascii()


def test_body_query_parses_every_parameter() -> None:
    """parse_body_query reads the documented parameters and rejects bad ones."""
    query = parse_body_query(
        "/body?size=10&seed=3&mode=chunked&binary=1&digest=md5&lie=1"
        "&slow_ms=5&chunk=4&fault=die&after=2"
    )
    assert (query.size, query.seed, query.mode) == (10, 3, "chunked")
    assert (query.binary, query.digest, query.lie) == (True, "md5", True)
    assert (query.slow_ms, query.chunk) == (5, 4)
    assert (query.fault, query.after) == ("die", 2)
    assert query.sent() == query.generated()[:2]
    with pytest.raises(ValueError):
        parse_body_query("/body?mode=sideways")


def test_lie_flips_one_byte_after_digesting() -> None:
    """lie=1 sends a body that differs from the digested one in one byte."""
    query = parse_body_query("/body?size=1000&digest=sha1&lie=1")
    header = query.digest_header()
    assert header is not None
    assert header[1] == hashlib.sha1(query.generated()).hexdigest()
    pairs = zip(query.sent(), query.generated(), strict=True)
    differing = [i for i, (sent, made) in enumerate(pairs) if sent != made]
    assert differing == [500]


@pytest.mark.skipif(shutil.which("php") is None, reason="php CLI is missing")
def test_php_port_of_make_body_gives_identical_bytes() -> None:
    """bodies.php produces byte-for-byte the same bodies as make_body."""
    cases = [(0, 0, 1), (1, 9, 1), (4097, 4294967295, 1), (70_001, 3, 0)]
    for size, seed, text in cases:
        script = (
            f"require '{PHP_BODIES}'; "
            f"echo testbed_make_body({size}, {seed}, (bool){text});"
        )
        done = subprocess.run(["php", "-r", script], capture_output=True, check=True)
        assert done.stdout == make_body(size, seed, text=bool(text))


def test_dechunk_handles_complete_and_truncated_streams() -> None:
    """dechunk returns the chunk data and whether the last-chunk was seen."""
    assert dechunk(b"3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n") == (b"abcde", True)
    assert dechunk(b"3\r\nabc\r\n5\r\nde") == (b"abcde", False)


def test_relay_framer_splits_keep_alive_responses() -> None:
    """The relay's framer assigns each byte to the request it answers."""
    stream = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    )
    for step in (1, 5, len(stream)):
        framer = ResponseFramer()
        framer.requests += [("GET", "/a"), ("HEAD", "/b"), ("GET", "/c")]
        owners = bytearray()
        for start in range(0, len(stream), step):
            for piece in framer.feed(stream[start : start + step]):
                owners += bytes([piece.request]) * len(piece.data)
        assert owners.count(0) == 40
        assert owners.count(1) == 38
        assert framer.answered == 3


# The real testbed ----------------------------------------------------------


@pytest.mark.testbed
@pytest.mark.parametrize("backend", BACKEND_KINDS)
def test_each_backend_serves_make_body_and_is_captured(
    tmp_path: Path, backend: BackendKind
) -> None:
    """Every backend, through nginx, gives the client make_body's bytes, and
    both legs are captured on the right ports."""
    _needs_testbed(backend)
    with Testbed(tmp_path, backend=backend) as tb:
        big = tb.fetch("/body?size=1000000&seed=3&mode=length")
        chunked = tb.fetch("/body?size=50000&seed=4&mode=chunked&binary=1", raw=True)
        client_port, fcgi_port = tb.client_port, tb.fcgi_port
    assert big.error is None, tb.nginx_errors()
    assert big.saved == make_body(1_000_000, 3) == big.generated_body
    assert big.header("Content-Length") == "1000000"
    assert chunked.header("Transfer-Encoding") == "chunked"
    assert chunked.saved != chunked.body
    assert chunked.body == make_body(50_000, 4, text=False)
    assert big.local_port is not None
    assert _count_on_port(tb.client_pcap, big.local_port) > 10
    assert _count_on_port(tb.client_pcap, client_port) > 20
    assert _count_on_port(tb.upstream_pcap, fcgi_port) > 20
    assert tb.client_stats is not None and tb.client_stats.dropped_by_kernel == 0


@pytest.mark.testbed
def test_fetch_many_reuses_connections(tmp_path: Path) -> None:
    """fetch_many runs requests over a few keep-alive connections, all intact."""
    _needs_testbed("flup")
    uris = [f"/body?size={1000 * i + 1}&seed={i}&mode=chunked" for i in range(24)]
    with Testbed(tmp_path, backend="flup", keep_conn=True) as tb:
        results = tb.fetch_many(uris, concurrency=4)
    assert [result.uri for result in results] == uris
    assert all(result.intact for result in results)
    assert len({result.local_port for result in results}) <= 4
    upstream = {s for s, d, _, _ in _tcp_packets(tb.upstream_pcap) if d == tb.fcgi_port}
    assert len(upstream) <= 8  # nginx's keepalive pool, not one per request


@pytest.mark.testbed
def test_gzip_compresses_text_and_body_decodes(tmp_path: Path) -> None:
    """With gzip on, text bodies arrive compressed and decode to the app's bytes."""
    _needs_testbed("php")
    with Testbed(tmp_path, backend="php", gzip=True) as tb:
        result = tb.fetch("/body?size=200000&seed=5", accept_gzip=True)
        plain = tb.fetch("/body?size=200000&seed=5")
    assert result.header("Content-Encoding") == "gzip"
    assert len(result.saved) < 200_000 // 4
    assert result.intact and plain.intact
    assert plain.header("Content-Encoding") is None


@pytest.mark.testbed
def test_digest_headers_and_lies(tmp_path: Path) -> None:
    """digest=sha1/md5 adds a matching header; lie=1 makes it contradict the body."""
    _needs_testbed("flup")
    with Testbed(tmp_path, backend="flup", buffering=False) as tb:
        honest = tb.fetch("/body?size=3000&digest=sha1")
        liar = tb.fetch("/body?size=3000&digest=sha1&lie=1&mode=chunked")
        md5 = tb.fetch("/body?size=3000&digest=md5")
    assert honest.header("X-Body-SHA1") == hashlib.sha1(honest.body).hexdigest()
    assert liar.header("X-Body-SHA1") != hashlib.sha1(liar.body).hexdigest()
    assert liar.body == liar.app_body != liar.generated_body
    expected_md5 = base64.b64encode(hashlib.md5(md5.body).digest()).decode()
    assert md5.intact and md5.header("Content-MD5") == expected_md5


def _relayed(app: bytes, action: str) -> bytes:
    # What a Content-Length client keeps after the relay damaged bytes
    # 100..103: it reads exactly 10000 bytes, or fewer if the stream ends.
    if action == "overwrite":
        return app[:100] + bytes(b ^ 0xFF for b in app[100:104]) + app[104:]
    if action == "delete":
        return app[:100] + app[104:]
    return (app[:104] + app[100:])[: len(app)]


@pytest.mark.testbed
@pytest.mark.parametrize("action", ["overwrite", "delete", "duplicate"])
def test_relay_fault_changes_what_the_client_got(tmp_path: Path, action: str) -> None:
    """A relay fault changes exactly the chosen bytes of the chosen response,
    and the client-leg capture shows the damaged stream."""
    _needs_testbed("flup")
    fault = RelayFault(
        action,
        offset=100,
        length=4,
        uri_contains="seed=9",  # type: ignore[arg-type]
    )
    with Testbed(tmp_path, backend="flup", relay_faults=[fault]) as tb:
        clean = tb.fetch("/body?size=10000&seed=8")
        # Connection: close lets nginx end the stream, so a client short
        # of bytes after a delete fails at once instead of timing out.
        hit = tb.fetch("/body?size=10000&seed=9", headers=[("Connection", "close")])
        relay_port = tb.client_port
        events = tb.relay_events
    assert clean.intact
    assert hit.saved == _relayed(hit.app_body, action)
    assert (hit.error is not None) == (action == "delete")
    assert [event.uri for event in events] == ["/body?size=10000&seed=9"]
    assert relay_port != tb.nginx_port
    assert hit.saved[90:120] in _payload_from(tb.client_pcap, relay_port)


@pytest.mark.testbed
def test_fault_server_die_truncates(tmp_path: Path) -> None:
    """fault=die stops the body after `after` bytes, with or without a length."""
    _needs_testbed("fault")
    with Testbed(tmp_path, backend="fault", keep_conn=True) as tb:
        length = tb.fetch("/body?size=100000&fault=die&after=5000&mode=length")
        chunked = tb.fetch("/body?size=100000&fault=die&after=5000&mode=chunked")
    assert length.error is not None and length.saved == make_body(5000, 0)
    assert length.header("Content-Length") == "100000"
    assert chunked.body == make_body(5000, 0)


@pytest.mark.testbed
def test_fault_server_stderr_and_fake_header(tmp_path: Path) -> None:
    """fault=stderr reaches nginx's error log; fake_header bytes are body bytes."""
    _needs_testbed("fault")
    with Testbed(tmp_path, backend="fault") as tb:
        noisy = tb.fetch("/body?size=20000&fault=stderr&after=777")
        fake = tb.fetch("/body?size=20000&fault=fake_header&after=777")
    assert noisy.intact and noisy.body == make_body(20000, 0)
    assert STDERR_MESSAGE.decode().strip() in tb.nginx_errors()
    assert fake.intact and fake.body[777:785] == FAKE_RECORD_HEADER
    assert fake.header("Content-Length") == "20008"


@pytest.mark.testbed
def test_fault_server_crash_ends_a_chunked_body_early(tmp_path: Path) -> None:
    """fault=crash sends a traceback on STDERR after `after` bytes and ends
    the request; nginx gives the client a well-formed shorter body."""
    _needs_testbed("fault")
    with Testbed(tmp_path, backend="fault") as tb:
        crashed = tb.fetch("/body?size=20000&fault=crash&after=3000&mode=chunked")
    assert crashed.error is None and crashed.body == make_body(3000, 0)
    assert "RuntimeError: fault server: crashed" in tb.nginx_errors()


@pytest.mark.testbed
def test_fault_server_empty_stdout_is_on_the_wire(tmp_path: Path) -> None:
    """fault=empty_stdout puts an empty STDOUT record mid-stream on the FastCGI leg."""
    _needs_testbed("fault")
    with Testbed(tmp_path, backend="fault", buffering=False) as tb:
        result = tb.fetch("/body?size=20000&fault=empty_stdout&after=4000", timeout=2)
    upstream = _payload_from(tb.upstream_pcap, tb.fcgi_port)
    empty_stdout = bytes([1, 6, 0, 1, 0, 0, 0, 0])
    # The mid-stream one, with STDOUT content after it.  (The closing one
    # may be cut: nginx has ended the response at the first and may close
    # while the app still writes.)
    mid = upstream.find(empty_stdout)
    assert mid > 0
    after = upstream[mid + len(empty_stdout) : mid + len(empty_stdout) + 8]
    assert after[:4] == bytes([1, 6, 0, 1]) and after[4:6] != b"\0\0"
    assert result.body[:4000] == make_body(4000, 0)


@pytest.mark.testbed
def test_snaplen_and_any_interface(tmp_path: Path) -> None:
    """snaplen cuts captured packets; any_iface writes Linux cooked captures."""
    _needs_testbed("flup")
    with Testbed(tmp_path, backend="flup", snaplen=200, any_iface=True) as tb:
        result = tb.fetch("/body?size=100000")
    assert result.intact
    packets = _tcp_packets(tb.client_pcap)
    assert packets and max(caplen for *_, caplen in packets) <= 200
    with open(tb.client_pcap, "rb") as handle:
        assert dpkt.pcap.Reader(handle).datalink() in (113, 276)


@pytest.mark.testbed
def test_slow_ms_spaces_out_the_body(tmp_path: Path) -> None:
    """slow_ms makes the app pause between pieces of the body."""
    _needs_testbed("flup-fork")
    with Testbed(tmp_path, backend="flup-fork", buffering=False) as tb:
        result = tb.fetch("/body?size=5000&chunk=1000&slow_ms=30&mode=chunked")
    assert result.intact
    assert result.ended_ns - result.started_ns >= 4 * 30 * 1_000_000
