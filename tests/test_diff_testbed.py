"""End to end: real faults made on the testbed, judged by ``analyze``.

Each test provokes one kind of damage with real nginx, a real FastCGI
backend and tcpdump on loopback, then checks the verdict, the hop and
the exact regions the tool reports, and that every clean exchange of the
same run is ``ok``.  The last test pins the committed captures of
``captures/`` to ``captures/expected.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dpkt  # type: ignore[import-untyped]
import pytest

from fcgiforensics.analysis import Analysis, AnalysisOptions, Exchange, analyze
from fcgiforensics.attribution import parse_digest_spec
from fcgiforensics.capture.records import read_records
from fcgiforensics.testing import Frame, write_pcap
from tests.testbed import (
    FAKE_RECORD_HEADER,
    BackendKind,
    FetchResult,
    RelayFault,
    Testbed,
    unavailable_reason,
)

CAPTURES = Path(__file__).resolve().parent.parent / "captures"

# Ask nginx to close after each response, so a client short of bytes
# after a relay delete fails at once instead of waiting for a timeout.
CLOSE = [("Connection", "close")]

# The shift applied to the upstream capture's clock, and how far the
# estimated offset may stray from it: loopback adds well under 50 ms
# between a client request and its FastCGI request.
CLOCK_SHIFT_NS = 3_500_000_000
CLOCK_SLACK_NS = 50_000_000

Region = tuple[int, int, str]


def _needs_testbed(backend: BackendKind | None = None) -> None:
    reason = unavailable_reason(backend)
    if reason is not None:
        pytest.skip(reason)


def _analyze(tb: Testbed, *digests: str) -> Analysis:
    options = AnalysisOptions(digests=tuple(parse_digest_spec(d) for d in digests))
    return analyze([str(tb.client_pcap)], [str(tb.upstream_pcap)], options)


def _by_uri(analysis: Analysis) -> dict[str, Exchange]:
    found: dict[str, Exchange] = {}
    for exchange in analysis.exchanges:
        assert exchange.uri is not None, exchange.attribution.evidence
        assert exchange.uri not in found, f"{exchange.uri} seen twice"
        found[exchange.uri] = exchange
    return found


def _regions(exchange: Exchange) -> list[Region]:
    return [(r.offset, r.length, r.kind) for r in exchange.attribution.regions]


def _assert_ok(exchange: Exchange) -> None:
    attribution = exchange.attribution
    assert (exchange.verdict, exchange.hop) == ("ok", None), attribution.evidence
    assert attribution.regions == []


def _assert_proxy(exchange: Exchange) -> None:
    attribution = exchange.attribution
    assert (exchange.verdict, exchange.hop) == ("corrupted", "proxy"), (
        attribution.evidence
    )
    for region in attribution.regions:
        assert region.client_frames and region.upstream_frames, region


def _assert_app(exchange: Exchange, regions: list[Region]) -> None:
    attribution = exchange.attribution
    assert (exchange.verdict, exchange.hop) == ("corrupted", "app"), (
        attribution.evidence
    )
    assert _regions(exchange) == regions, attribution.evidence
    for region in attribution.regions:
        assert region.upstream_frames, region


def _frames(path: Path) -> list[Frame]:
    return [
        Frame(data, ts_ns, linktype, orig_len)
        for _, ts_ns, linktype, data, orig_len in read_records(str(path))
    ]


def _tcp(frame: Frame) -> dpkt.tcp.TCP:
    # Both legs are captured on lo, which tcpdump writes as Ethernet.
    assert frame.linktype == dpkt.pcap.DLT_EN10MB
    return dpkt.ethernet.Ethernet(frame.data).data.data


# Relay damage on the client leg ---------------------------------------------


@pytest.mark.testbed
@pytest.mark.parametrize("backend", ["flup", "php"])
def test_relay_damage_to_length_bodies_is_blamed_on_the_proxy(
    tmp_path: Path, backend: BackendKind
) -> None:
    """Overwritten, deleted and duplicated bytes of Content-Length responses
    are reported as proxy damage at their exact body offsets; the other
    responses of the run stay ok."""
    _needs_testbed(backend)
    faults = [
        RelayFault("overwrite", 5000, 4, uri_contains="seed=11&"),
        RelayFault("delete", 7000, 10, uri_contains="seed=12&"),
        RelayFault("duplicate", 9000, 16, uri_contains="seed=13&"),
    ]
    uris = [f"/body?size=20000&seed={seed}&binary=1" for seed in range(10, 15)]
    with Testbed(tmp_path, backend=backend, relay_faults=faults) as tb:
        results = [tb.fetch(uri, headers=CLOSE) for uri in uris]
    assert [event.uri for event in tb.relay_events] == uris[1:4]
    assert results[0].intact and results[4].intact

    exchanges = _by_uri(_analyze(tb))
    assert sorted(exchanges) == sorted(uris)
    overwritten, deleted, duplicated = (exchanges[uri] for uri in uris[1:4])
    for exchange in (overwritten, deleted, duplicated):
        _assert_proxy(exchange)
    assert _regions(overwritten) == [(5000, 4, "replace")]
    assert _regions(deleted) == [(7000, 10, "delete")]
    # The client keeps Content-Length bytes: 16 extra in the middle, so
    # the last 16 of the app's body never reach it.
    assert _regions(duplicated) == [(9016, 16, "insert"), (19984, 16, "truncate")]
    _assert_ok(exchanges[uris[0]])
    _assert_ok(exchanges[uris[4]])


@pytest.mark.testbed
def test_any_interface_captures_give_the_same_verdicts(tmp_path: Path) -> None:
    """Both legs captured with ``tcpdump -i any`` (Linux cooked headers)
    give the exact proxy region and ok verdicts that ``-i lo`` gives."""
    _needs_testbed("flup")
    faults = [RelayFault("overwrite", 3000, 8, uri_contains="seed=21&")]
    uris = [f"/body?size=10000&seed={seed}&binary=1" for seed in (20, 21, 22)]
    with Testbed(tmp_path, relay_faults=faults, any_iface=True) as tb:
        for uri in uris:
            tb.fetch(uri, headers=CLOSE)
    cooked = {dpkt.pcap.DLT_LINUX_SLL, 276}  # 276: LINKTYPE_LINUX_SLL2
    for path in (tb.client_pcap, tb.upstream_pcap):
        linktypes = {f.linktype for f in _frames(path)}
        assert linktypes and linktypes <= cooked

    exchanges = _by_uri(_analyze(tb))
    _assert_proxy(exchanges[uris[1]])
    assert _regions(exchanges[uris[1]]) == [(3000, 8, "replace")]
    _assert_ok(exchanges[uris[0]])
    _assert_ok(exchanges[uris[2]])


@pytest.mark.testbed
@pytest.mark.parametrize("backend", ["flup", "php"])
def test_relay_damage_to_chunked_bodies_is_blamed_on_the_proxy(
    tmp_path: Path, backend: BackendKind
) -> None:
    """Relay damage inside chunk data is located in decoded-body offsets
    (the chunk-size line taken out); the clean response stays ok."""
    _needs_testbed(backend)
    wire = 100  # body wire offset: inside the first chunk's data
    faults = [
        RelayFault("overwrite", wire, 4, uri_contains="seed=21&"),
        RelayFault("delete", wire, 10, uri_contains="seed=22&"),
        RelayFault("duplicate", wire, 16, uri_contains="seed=23&"),
    ]
    uris = [f"/body?size=20000&seed={seed}&mode=chunked" for seed in range(20, 24)]
    with Testbed(tmp_path, backend=backend, relay_faults=faults) as tb:
        results = [tb.fetch(uri, raw=True, headers=CLOSE) for uri in uris]
    assert results[0].intact

    # Where the fault lands in the decoded body: past the first
    # chunk-size line, which must be longer than the fault's reach.
    saved = results[1].saved
    size_line = saved.index(b"\r\n") + 2
    assert int(saved[: size_line - 2], 16) > wire + 16, saved[:size_line]
    decoded = wire - size_line

    exchanges = _by_uri(_analyze(tb))
    assert sorted(exchanges) == sorted(uris)
    overwritten, deleted, duplicated = (exchanges[uri] for uri in uris[1:])
    for exchange in (overwritten, deleted, duplicated):
        _assert_proxy(exchange)
    assert _regions(overwritten) == [(decoded, 4, "replace")]
    # A deletion or duplication also shifts the chunk framing after it;
    # the first region is the relay's own doing.
    assert _regions(deleted)[0] == (decoded, 10, "delete")
    assert _regions(duplicated)[0] == (decoded + 16, 16, "insert")
    _assert_ok(exchanges[uris[0]])


# Damage done by the app ----------------------------------------------------


@pytest.mark.testbed
def test_app_contradicting_its_own_digest_is_blamed_on_the_app(
    tmp_path: Path,
) -> None:
    """A body that contradicts the app's X-Body-SHA1 or Content-MD5 is app
    damage with no located region; honest digests stay ok."""
    _needs_testbed("flup")
    honest = [
        "/body?size=30000&seed=1&digest=sha1",
        "/body?size=30000&seed=4&digest=md5",
    ]
    sha1_lies = [
        "/body?size=30000&seed=2&digest=sha1&lie=1",
        "/body?size=30000&seed=3&digest=sha1&lie=1&mode=chunked",
    ]
    md5_lie = "/body?size=30000&seed=5&digest=md5&lie=1"
    with Testbed(tmp_path, backend="flup", buffering=False) as tb:
        for uri in [*honest, *sha1_lies, md5_lie]:
            assert tb.fetch(uri).error is None

    exchanges = _by_uri(_analyze(tb, "X-Body-SHA1"))
    for uri in honest:
        _assert_ok(exchanges[uri])
        assert exchanges[uri].attribution.digest_matches is True
    for uri in [*sha1_lies, md5_lie]:
        _assert_app(exchanges[uri], [])
        assert exchanges[uri].attribution.digest_matches is False

    # Without --digest-header only the standard Content-MD5 is an oracle.
    plain = _by_uri(_analyze(tb))
    for uri in sha1_lies:
        _assert_ok(plain[uri])
    _assert_app(plain[md5_lie], [])


@pytest.mark.testbed
def test_flup_prefork_timeout_puts_stderr_inside_stdout(tmp_path: Path) -> None:
    """flup's prefork timeout cuts a slow response with a traceback on
    STDERR while nginx hands the client a well-formed shorter body: app
    damage where STDOUT stopped."""
    _needs_testbed("flup-fork")
    slow = "/body?size=400000&seed=7&chunk=20000&slow_ms=100&mode=chunked"
    quick = "/body?size=4000&seed=8"
    with Testbed(tmp_path, backend="flup-fork", fork_timeout=1, buffering=False) as tb:
        cut = tb.fetch(slow)
        after = tb.fetch(quick)
    assert cut.error is None and after.intact
    stopped = len(cut.body)
    assert 0 < stopped < 400_000 and stopped % 20_000 == 0
    assert cut.body == cut.app_body[:stopped]

    exchanges = _by_uri(_analyze(tb))
    _assert_app(exchanges[slow], [(stopped, 0, "truncate")])
    assert "fcgi.stderr_in_stdout" in {
        f.name for f in exchanges[slow].attribution.findings
    }
    client = exchanges[slow].client
    assert client is not None and client.complete
    _assert_ok(exchanges[quick])


@pytest.mark.testbed
def test_fault_server_damage_is_blamed_on_the_app(tmp_path: Path) -> None:
    """A dying app (with and without Content-Length), an empty STDOUT
    record mid-stream, a crash report on STDERR and a fake record header
    inside STDOUT are app damage at the fault's body offset, even where
    the client's response looks complete; a notice on STDERR between
    STDOUT records is not damage."""
    _needs_testbed("fault")
    die_length = "/body?size=100000&seed=1&fault=die&after=5000&mode=length"
    die_chunked = "/body?size=100000&seed=2&fault=die&after=5000&mode=chunked"
    empty = "/body?size=20000&seed=3&fault=empty_stdout&after=4000"
    stderr = "/body?size=20000&seed=4&fault=stderr&after=777"
    crash = "/body?size=20000&seed=7&fault=crash&after=3000&mode=chunked"
    fake = "/body?size=20000&seed=5&fault=fake_header&after=777"
    clean = "/body?size=20000&seed=6"
    with Testbed(tmp_path, backend="fault") as tb:
        # Connection: close, or nginx keeps the short response's
        # connection open until the client gives up.
        results = {die_length: tb.fetch(die_length, headers=CLOSE, timeout=5)}
        for uri in (die_chunked, empty, stderr, crash, fake, clean):
            results[uri] = tb.fetch(uri, timeout=5)
    assert results[die_length].error is not None
    # Where nginx makes the damage invisible to the client.
    for uri in (die_chunked, stderr, crash, fake):
        assert results[uri].error is None, results[uri]
    assert results[clean].intact and results[stderr].intact

    exchanges = _by_uri(_analyze(tb))
    _assert_app(exchanges[die_length], [(5000, 95_000, "truncate")])
    _assert_app(exchanges[die_chunked], [(5000, 0, "truncate")])
    _assert_app(exchanges[empty], [(4000, 0, "insert")])
    _assert_app(exchanges[crash], [(3000, 0, "truncate")])
    _assert_app(exchanges[fake], [(777, len(FAKE_RECORD_HEADER), "insert")])
    for uri in (die_chunked, crash, fake):
        client = exchanges[uri].client
        assert client is not None and client.complete
    _assert_ok(exchanges[clean])
    _assert_ok(exchanges[stderr])
    assert any(
        "STDERR" in e and "not damage" in e
        for e in exchanges[stderr].attribution.evidence
    )


# What must not be called damage ----------------------------------------------


@pytest.mark.testbed
def test_gzip_and_chunking_by_nginx_are_ok(tmp_path: Path) -> None:
    """Responses nginx gzips and chunks are ok once decoded."""
    _needs_testbed("php")
    uris = [
        "/body?size=200000&seed=1",
        "/body?size=200000&seed=2&mode=chunked",
        "/body?size=50000&seed=3&binary=1&mode=chunked",
        "/body?size=100&seed=4",
    ]
    with Testbed(tmp_path, backend="php", gzip=True) as tb:
        results = [tb.fetch(uri, accept_gzip=True) for uri in uris]
    assert all(result.intact for result in results)
    assert results[0].header("Content-Encoding") == "gzip"

    exchanges = _by_uri(_analyze(tb))
    for uri in uris:
        _assert_ok(exchanges[uri])
    for uri in uris[:2]:
        client = exchanges[uri].client
        assert client is not None
        assert (client.content_encoding, client.chunked) == ("gzip", True)


@pytest.mark.testbed
def test_frame_missing_from_the_capture_is_incomplete(tmp_path: Path) -> None:
    """A client-leg frame deleted from the capture makes its exchange
    incomplete, never corrupted; the other exchanges stay ok."""
    _needs_testbed("flup")
    big = "/body?size=300000&seed=7"
    small = ["/body?size=5000&seed=8", "/body?size=20000&seed=9&mode=chunked"]
    with Testbed(tmp_path, backend="flup") as tb:
        fetched = tb.fetch(big)
        for uri in small:
            assert tb.fetch(uri).intact
        server_port = tb.client_port
    assert fetched.intact and fetched.local_port is not None

    # Drop one data frame from the middle of the big response.
    frames = _frames(tb.client_pcap)
    carrying = [
        index
        for index, frame in enumerate(frames)
        if (tcp := _tcp(frame)).sport == server_port
        and tcp.dport == fetched.local_port
        and tcp.data
    ]
    assert len(carrying) >= 3
    victim = carrying[len(carrying) // 2]
    lossy = tmp_path / "lossy.pcap"
    write_pcap(str(lossy), frames[:victim] + frames[victim + 1 :])

    analysis = analyze([str(lossy)], [str(tb.upstream_pcap)])
    exchanges = _by_uri(analysis)
    hit = exchanges[big]
    assert (hit.verdict, hit.hop) == ("incomplete", None), hit.attribution.evidence
    assert hit.attribution.regions == []
    for uri in small:
        _assert_ok(exchanges[uri])


@pytest.mark.testbed
@pytest.mark.parametrize("snaplen", [200, 1000])
def test_snaplen_capture_is_incomplete(tmp_path: Path, snaplen: int) -> None:
    """Packets cut by a snaplen leave their exchanges incomplete, never
    corrupted."""
    _needs_testbed("flup")
    uris = ["/body?size=100000&seed=1", "/body?size=30000&seed=2&mode=chunked"]
    with Testbed(tmp_path, backend="flup", snaplen=snaplen) as tb:
        for uri in uris:
            assert tb.fetch(uri).intact
    analysis = _analyze(tb)
    assert len(analysis.exchanges) == len(uris)
    for exchange in analysis.exchanges:
        assert exchange.verdict == "incomplete", exchange.attribution.evidence
        assert exchange.hop is None and exchange.attribution.regions == []


# Many clients, one file, shifted clocks ----------------------------------------


@dataclass(frozen=True, slots=True)
class KeepAliveRun:
    """A run of concurrent keep-alive clients and its two capture files."""

    client_pcap: Path
    upstream_pcap: Path
    results: tuple[FetchResult, ...]
    workdir: Path


@pytest.fixture(scope="module")
def keepalive_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeepAliveRun]:
    """40 requests with distinct seeds over 8 keep-alive client connections,
    and kept FastCGI connections behind them."""
    _needs_testbed("php")
    workdir = tmp_path_factory.mktemp("keepalive")
    uris = [
        f"/body?size={20_000 + 997 * i}&seed={100 + i}"
        + ("&mode=chunked" if i % 2 else "")
        for i in range(40)
    ]
    # php-fpm serves one connection per worker: as many workers as
    # nginx keeps FastCGI connections, or requests queue behind them.
    with Testbed(workdir, backend="php", keep_conn=True, workers=8) as tb:
        results = tb.fetch_many(uris, concurrency=8)
    assert all(result.intact for result in results)
    yield KeepAliveRun(tb.client_pcap, tb.upstream_pcap, tuple(results), workdir)


def _assert_paired_by_endpoint(analysis: Analysis, run: KeepAliveRun) -> None:
    exchanges = _by_uri(analysis)
    assert len(exchanges) == len(run.results)
    for result in run.results:
        exchange = exchanges[result.uri]
        _assert_ok(exchange)
        assert exchange.paired_by == "endpoint"
        assert exchange.client is not None and exchange.fcgi is not None
        assert exchange.client.client_port == result.local_port
        params = exchange.fcgi.request.params
        assert params["REMOTE_PORT"] == str(result.local_port)
        assert params["REQUEST_URI"] == result.uri


@pytest.mark.testbed
def test_concurrent_keepalive_clients_pair_by_endpoint(
    keepalive_run: KeepAliveRun,
) -> None:
    """Requests interleaved over kept-alive connections on both legs are
    each paired with their own FastCGI request, and all are ok."""
    analysis = analyze(
        [str(keepalive_run.client_pcap)], [str(keepalive_run.upstream_pcap)]
    )
    assert len({r.local_port for r in keepalive_run.results}) == 8
    _assert_paired_by_endpoint(analysis, keepalive_run)


@pytest.mark.testbed
def test_both_legs_in_one_file_give_the_same_verdicts(
    keepalive_run: KeepAliveRun,
) -> None:
    """Both legs merged into one capture, as tcpdump -i any writes them,
    give the same pairs and verdicts as two files."""
    frames = _frames(keepalive_run.client_pcap) + _frames(keepalive_run.upstream_pcap)
    merged = keepalive_run.workdir / "merged.pcap"
    write_pcap(str(merged), sorted(frames, key=lambda frame: frame.ts_ns))
    analysis = analyze([str(merged)])
    assert analysis.same_file
    _assert_paired_by_endpoint(analysis, keepalive_run)


@pytest.mark.testbed
def test_clock_offset_between_legs_is_estimated(keepalive_run: KeepAliveRun) -> None:
    """An upstream capture whose clock runs 3.5 s ahead still pairs every
    request right, and the offset is estimated."""
    shifted = keepalive_run.workdir / "upstream-shifted.pcap"
    frames = [
        Frame(f.data, f.ts_ns + CLOCK_SHIFT_NS, f.linktype, f.orig_len)
        for f in _frames(keepalive_run.upstream_pcap)
    ]
    write_pcap(str(shifted), frames)
    analysis = analyze([str(keepalive_run.client_pcap)], [str(shifted)])
    _assert_paired_by_endpoint(analysis, keepalive_run)
    offset = analysis.pairing.clock_offset_ns
    assert offset is not None
    assert abs(offset - CLOCK_SHIFT_NS) < CLOCK_SLACK_NS


# The committed captures ----------------------------------------------------------


def _expected_pairs() -> list[tuple[str, dict[str, object]]]:
    path = CAPTURES / "expected.json"
    if not path.exists():
        return []
    pairs: dict[str, dict[str, object]] = json.loads(path.read_text())["pairs"]
    return sorted(pairs.items())


@pytest.mark.parametrize(("name", "expected"), _expected_pairs())
def test_committed_capture_pairs_give_the_expected_summary(
    name: str, expected: dict[str, object]
) -> None:
    """Each committed capture pair gives the summary counts, and blames
    the hops, that captures/expected.json records for it."""
    folder = CAPTURES / name
    digests = expected.get("digest_headers", [])
    assert isinstance(digests, list)
    options = AnalysisOptions(digests=tuple(parse_digest_spec(d) for d in digests))
    analysis = analyze(
        [str(folder / "client.pcap")], [str(folder / "upstream.pcap")], options
    )
    assert analysis.summary() == expected["summary"]
    hops: dict[str, int] = {}
    for ex in analysis.exchanges:
        if ex.hop is not None:
            hops[ex.hop] = hops.get(ex.hop, 0) + 1
    assert hops == expected["hops"]


@pytest.mark.testbed
def test_head_request_aborted_by_nginx_is_ok(tmp_path: Path) -> None:
    """A HEAD through nginx to a slow flup app: nginx closes the FastCGI
    connection once it has the head, which is an abort by the web server
    (fcgi.web_server_closed), never app damage; the exchange is ok."""
    import subprocess

    _needs_testbed("flup")
    slow = "/body?size=50000&seed=35&chunk=1000&slow_ms=30"
    with Testbed(tmp_path, backend="flup") as tb:
        head = subprocess.run(
            [
                "curl",
                "-sI",
                "--max-time",
                "10",
                f"http://127.0.0.1:{tb.client_port}{slow}",
            ],
            capture_output=True,
            check=False,
        )
        assert head.returncode == 0
    analysis = analyze([str(tb.client_pcap)], [str(tb.upstream_pcap)])
    [exchange] = analysis.exchanges
    assert exchange.method == "HEAD"
    assert (exchange.verdict, exchange.hop) == ("ok", None)
    names = {a.name for a in analysis.upstream_leg.anomalies}
    assert "fcgi.fin_before_end" not in names


@pytest.mark.testbed
def test_nginx_giving_up_on_a_stalled_app_is_explained(tmp_path: Path) -> None:
    """An app silent past fastcgi_read_timeout: nginx closes both legs and
    the client loses bytes that had reached nginx.  The cut is at nginx
    (proxy), and the evidence says how long the app had been silent."""
    _needs_testbed("flup")
    slow = "/body?size=20000&seed=5&chunk=1000&slow_ms=1500&mode=length"
    with Testbed(tmp_path, backend="flup", read_timeout="1s") as tb:
        assert tb.fetch(slow, timeout=15).error
    [ex] = analyze([str(tb.client_pcap)], [str(tb.upstream_pcap)]).exchanges
    assert (ex.verdict, ex.hop) == ("corrupted", "proxy")
    assert ex.attribution.regions[0].kind == "truncate"
    text = " ".join(ex.attribution.evidence)
    assert "fastcgi_read_timeout" in text and "s after the app's last byte" in text


@pytest.mark.testbed
def test_a_client_that_leaves_early_is_not_damage(tmp_path: Path) -> None:
    """curl gives up (--max-time) on a slow response; nginx then aborts the
    FastCGI request.  Nothing was damaged: incomplete, no hop."""
    import subprocess

    _needs_testbed("flup")
    slow = "/body?size=20000&seed=7&chunk=1000&slow_ms=700&mode=length"
    with Testbed(tmp_path, backend="flup") as tb:
        subprocess.run(
            [
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "--max-time",
                "1",
                f"http://127.0.0.1:{tb.client_port}{slow}",
            ],
            check=False,
            capture_output=True,
        )
    [ex] = analyze([str(tb.client_pcap)], [str(tb.upstream_pcap)]).exchanges
    assert (ex.verdict, ex.hop) == ("incomplete", None)
    assert any("the client left" in e for e in ex.attribution.evidence)
