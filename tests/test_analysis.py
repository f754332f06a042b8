"""The analysis pipeline's memory contract on long runs."""

from __future__ import annotations

import random
from pathlib import Path

from fcgiforensics.analysis import AnalysisOptions, analyze
from fcgiforensics.testing import Frame, two_leg_exchanges, write_pcap


def _pair(tmp_path: Path, damaged: int | None) -> tuple[str, str]:
    """Three keep-alive connections of 40 exchanges each, both legs; the
    client leg's copy of exchange ``damaged`` (0-based) altered."""
    frames: tuple[list[Frame], list[Frame]] = ([], [])
    for conn in range(3):
        bodies = [random.Random(conn * 40 + i).randbytes(30_000) for i in range(40)]
        seen = list(bodies)
        if damaged is not None and damaged // 40 == conn:
            bad = bytearray(seen[damaged % 40])
            bad[100:110] = b"X" * 10
            seen[damaged % 40] = bytes(bad)
        client, upstream = two_leg_exchanges(
            bodies,
            client_bodies=seen,
            client_port=51000 + conn,
            upstream_port=42000 + conn,
            start_ns=1_765_000_000 * 10**9 + conn * 10**9,
        )
        frames[0].extend(client)
        frames[1].extend(upstream)
    write_pcap(str(tmp_path / "c.pcap"), frames[0])
    write_pcap(str(tmp_path / "u.pcap"), frames[1])
    return str(tmp_path / "c.pcap"), str(tmp_path / "u.pcap")


def test_lean_run_releases_judged_bodies_and_keeps_the_damaged(
    tmp_path: Path,
) -> None:
    """Without keep_bodies, ok bodies drop their bytes once judged (their
    length and hash stay), the legs do not list every message, closed
    connections drop their frame index, and a corrupted exchange keeps
    everything its report needs."""
    client, upstream = _pair(tmp_path, damaged=97)
    analysis = analyze([client], [upstream], AnalysisOptions(keep_bodies=False))
    assert analysis.summary()["corrupted"] == 1
    for ex in analysis.exchanges:
        assert ex.client is not None and ex.upstream is not None
        assert ex.client.body_length == 30_000
        assert ex.client.body_sha256 is not None
        if ex.verdict == "ok":
            assert ex.client.body.released and ex.upstream.body.released
            assert ex.fcgi is not None and ex.fcgi.request.records == ()
        else:
            assert ex.id == 98
            assert not ex.client.body.released
            assert ex.attribution.regions[0].client_frames
    assert analysis.client_leg.http == [] and analysis.upstream_leg.fcgi == []
    first, _, damaged = analysis.client_leg.connections
    # The first connection closed before a sweep: its index is gone; the
    # one carrying the damaged exchange keeps it for the report's figures.
    assert first.closed and len(first.to_client.seg_offsets) == 0
    assert len(damaged.to_client.seg_offsets) > 0


def test_default_run_keeps_everything_for_notebooks(tmp_path: Path) -> None:
    """With the default options every body, message and index is kept."""
    client, upstream = _pair(tmp_path, damaged=None)
    analysis = analyze([client], [upstream])
    assert analysis.summary()["ok"] == 120
    assert not any(
        ex.client.body.released for ex in analysis.exchanges if ex.client is not None
    )
    assert len(analysis.client_leg.http) == 120
    assert len(analysis.client_leg.connections[0].to_client.seg_offsets) > 0


def test_a_capture_started_mid_exchange_never_blames(tmp_path: Path) -> None:
    """Both legs captured from the middle of the second of four responses:
    what began before the capture is incomplete, and nothing is called
    corrupted (a response without its request, paired by time with a
    request without its BEGIN_REQUEST, once was)."""
    bodies = [random.Random(i).randbytes(30_000) for i in range(4)]
    client, upstream = two_leg_exchanges(bodies)
    write_pcap(str(tmp_path / "c.pcap"), client[len(client) // 3 :])
    write_pcap(str(tmp_path / "u.pcap"), upstream[len(upstream) // 3 :])
    analysis = analyze([str(tmp_path / "c.pcap")], [str(tmp_path / "u.pcap")])
    verdicts = [ex.verdict for ex in analysis.exchanges]
    assert "corrupted" not in verdicts
    assert verdicts.count("incomplete") >= 2
    started_late = [
        ex for ex in analysis.exchanges if ex.client is not None and ex.method is None
    ]
    assert started_late and all(
        "was not captured" in " ".join(ex.attribution.evidence) for ex in started_late
    )


def test_time_only_pairing_never_blames_the_proxy() -> None:
    """Two sides paired by time alone whose bodies differ may be two
    different requests: incomplete, no hop."""
    from fcgiforensics.attribution import attribute
    from fcgiforensics.legs import read_leg

    bodies = [b"a" * 5000]
    client, upstream = two_leg_exchanges(bodies, client_bodies=[b"b" * 5000])
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        write_pcap(f"{tmp}/c.pcap", client)
        write_pcap(f"{tmp}/u.pcap", upstream)
        [h] = read_leg([f"{tmp}/c.pcap"]).http
        [f] = read_leg([f"{tmp}/u.pcap"]).fcgi
    weak = attribute(
        h.exchange, h.connection, f.request, f.connection, weak_pairing=True
    )
    strong = attribute(h.exchange, h.connection, f.request, f.connection)
    assert (weak.verdict, weak.hop) == ("incomplete", None)
    assert (strong.verdict, strong.hop) == ("corrupted", "proxy")


def _app_gzip_pair(tmp_path: Path, damage: bool) -> tuple[str, str]:
    """One exchange whose app compressed its own body with gzip (as
    Django's GZipMiddleware does); nginx passes it on unchanged."""
    import gzip

    from fcgiforensics.testing import fcgi_response

    body = b"hello world " * 2000
    wire = bytearray(gzip.compress(body))
    if damage:
        wire[40:44] = b"\xff\xff\xff\xff"
    app = fcgi_response(
        1, b"Content-Type: text/plain\r\nContent-Encoding: gzip\r\n", bytes(wire)
    )
    client = (
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: %d\r\n\r\n" % len(wire) + bytes(wire)
    )
    return _one_exchange(tmp_path, app, client)


def test_a_body_the_app_compressed_itself_is_compared_decoded(
    tmp_path: Path,
) -> None:
    """The app's own Content-Encoding is undone before comparing, so a
    response it gzipped itself is ok, not a 24,000-byte difference."""
    client, upstream = _app_gzip_pair(tmp_path, damage=False)
    [ex] = analyze([client], [upstream]).exchanges
    assert (ex.verdict, ex.hop) == ("ok", None)
    assert ex.upstream is not None and ex.upstream.body_length == 24_000
    assert ex.upstream.content_encoding == "gzip"


def test_an_undecodable_app_encoding_is_the_apps_damage(tmp_path: Path) -> None:
    """A gzip stream that the app sent broken, and nginx passed on as it
    was, is damage by the app, located on the FastCGI leg."""
    client, upstream = _app_gzip_pair(tmp_path, damage=True)
    [ex] = analyze([client], [upstream]).exchanges
    assert (ex.verdict, ex.hop) == ("corrupted", "app")
    [region] = ex.attribution.regions
    assert region.upstream_frames


def test_x_accel_redirect_is_not_compared(tmp_path: Path) -> None:
    """When the app hands the body to nginx with X-Accel-Redirect, the
    client's body never travelled upstream: incomplete, never blamed."""
    from fcgiforensics.testing import fcgi_response, http_response

    client, upstream = _one_exchange(
        tmp_path,
        fcgi_response(1, b"X-Accel-Redirect: /protected/7.bin\r\n", b""),
        http_response(b"\x00\x01" * 5000),
    )
    [ex] = analyze([client], [upstream]).exchanges
    assert (ex.verdict, ex.hop) == ("incomplete", None)
    assert "X-Accel-Redirect" in ex.attribution.evidence[0]


def _one_exchange(
    tmp_path: Path, app: bytes, client: bytes, method: str = "GET"
) -> tuple[str, str]:
    """Both legs of one exchange, written to files: ``app`` is what the
    app sends on the FastCGI leg, ``client`` what the client leg carries."""
    from fcgiforensics.testing import one_exchange

    client_frames, upstream_frames = one_exchange(app, client, method=method)
    write_pcap(str(tmp_path / "c.pcap"), client_frames)
    write_pcap(str(tmp_path / "u.pcap"), upstream_frames)
    return str(tmp_path / "c.pcap"), str(tmp_path / "u.pcap")


def _stdout_with_stderr(body: bytes, cut: int, stderr: bytes, rest: bool) -> bytes:
    """STDOUT up to body byte ``cut``, a STDERR record, then the rest of
    the body (when ``rest``), the stream ends and END_REQUEST."""
    import struct

    from fcgiforensics.testing import fcgi_record

    head = b"Content-Type: text/plain\r\n\r\n"
    out = fcgi_record(6, 1, head + body[:cut]) + fcgi_record(7, 1, stderr)
    if rest:
        out += fcgi_record(6, 1, body[cut:])
    return (
        out
        + fcgi_record(6, 1)
        + fcgi_record(7, 1)
        + fcgi_record(3, 1, struct.pack("!IB3x", 0, 0))
    )


def test_a_notice_on_stderr_mid_stdout_is_not_damage(tmp_path: Path) -> None:
    """A STDERR record between STDOUT records with no crash report in it
    (a PHP notice) leaves an intact response ok, with the text told."""
    from fcgiforensics.testing import http_response

    body = b"0123456789" * 500
    notice = b"PHP Notice:  Undefined index: q in /srv/a.php on line 3\n"
    app = _stdout_with_stderr(body, 1000, notice, rest=True)
    client, upstream = _one_exchange(tmp_path, app, http_response(body))
    [ex] = analyze([client], [upstream]).exchanges
    assert (ex.verdict, ex.hop) == ("ok", None)
    told = [e for e in ex.attribution.evidence if "STDERR" in e]
    assert len(told) == 1 and "Undefined index" in told[0]


def test_a_crash_report_on_stderr_cuts_the_body_on_the_app(tmp_path: Path) -> None:
    """A Python traceback on STDERR after which STDOUT ends (flup's way of
    failing mid-response) is app damage: the body stops at the crash."""
    from fcgiforensics.testing import http_response

    body = b"0123456789" * 500
    crash = b'Traceback (most recent call last):\n  File "app.py"\nKeyError\n'
    app = _stdout_with_stderr(body, 1000, crash, rest=False)
    client, upstream = _one_exchange(tmp_path, app, http_response(body[:1000]))
    [ex] = analyze([client], [upstream]).exchanges
    assert (ex.verdict, ex.hop) == ("corrupted", "app")
    assert [(r.offset, r.length, r.kind) for r in ex.attribution.regions] == [
        (1000, 0, "truncate")
    ]


def test_a_crash_report_the_body_went_on_after_is_not_damage(
    tmp_path: Path,
) -> None:
    """A traceback logged on STDERR with STDOUT going on after it to a
    normal end (an error the app handled) is told, not blamed."""
    from fcgiforensics.testing import http_response

    body = b"0123456789" * 500
    crash = b"Traceback (most recent call last):\n  ...\nValueError: x\n"
    app = _stdout_with_stderr(body, 1000, crash, rest=True)
    client, upstream = _one_exchange(tmp_path, app, http_response(body))
    [ex] = analyze([client], [upstream]).exchanges
    assert (ex.verdict, ex.hop) == ("ok", None)
    assert any("handled and logged" in e for e in ex.attribution.evidence)


def test_proxy_damage_besides_app_damage_is_told(tmp_path: Path) -> None:
    """When the app damaged a response and the client got other bytes
    again, the app is named and the proxy's regions stay in the evidence."""
    from fcgiforensics.testing import http_response

    body = b"0123456789" * 500
    crash = b"Traceback (most recent call last):\n"
    app = _stdout_with_stderr(body, 3000, crash, rest=False)
    seen = bytearray(body[:3000])
    seen[100:116] = bytes(16)
    client, upstream = _one_exchange(tmp_path, app, http_response(bytes(seen)))
    [ex] = analyze([client], [upstream]).exchanges
    assert (ex.verdict, ex.hop) == ("corrupted", "app")
    assert any("after the FastCGI leg" in e for e in ex.attribution.evidence)
    assert any("bytes 100 to 115 differ" in e for e in ex.attribution.evidence)


def test_a_digest_only_the_client_got_is_not_the_apps(tmp_path: Path) -> None:
    """A Content-MD5 that the web server added (the app sent none) is no
    oracle for the app: the changed body is the proxy's doing."""
    import base64
    import hashlib

    from fcgiforensics.testing import fcgi_response, http_response

    body = b"abcdefgh" * 1000
    seen = body[:500] + b"X" + body[501:]
    md5 = base64.b64encode(hashlib.md5(seen).digest()).decode()
    app = fcgi_response(1, b"Content-Type: text/plain\r\n", body)
    client_bytes = http_response(seen, headers=(("Content-MD5", md5),))
    client, upstream = _one_exchange(tmp_path, app, client_bytes)
    [ex] = analyze([client], [upstream]).exchanges
    assert (ex.verdict, ex.hop) == ("corrupted", "proxy")
    assert ex.attribution.digest is None


def _repr_digest(data: bytes) -> str:
    import base64
    import hashlib

    return "sha-256=:" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":"


def test_repr_digest_covers_the_coded_representation(tmp_path: Path) -> None:
    """An app that gzips its body and sends a Repr-Digest of the gzipped
    bytes (RFC 9530 section 3) is ok, not a digest liar."""
    import gzip

    from fcgiforensics.testing import fcgi_response

    body = b"hello world " * 2000
    wire = gzip.compress(body)
    head = (
        b"Content-Type: text/plain\r\nContent-Encoding: gzip\r\n"
        b"Repr-Digest: " + _repr_digest(wire).encode() + b"\r\n"
    )
    client_bytes = (
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: %d\r\n\r\n" % len(wire) + wire
    )
    client, upstream = _one_exchange(
        tmp_path, fcgi_response(1, head, wire), client_bytes
    )
    [ex] = analyze([client], [upstream]).exchanges
    assert (ex.verdict, ex.hop) == ("ok", None)
    assert ex.attribution.digest_matches is True


def test_repr_digest_of_a_partial_response_is_not_checked(tmp_path: Path) -> None:
    """A 206 whose Repr-Digest covers the whole representation is not
    compared with the partial content it carries."""
    from fcgiforensics.testing import fcgi_response

    whole = b"0123456789" * 100
    part = whole[100:200]
    head = (
        b"Status: 206 Partial Content\r\nContent-Range: bytes 100-199/1000\r\n"
        b"Repr-Digest: " + _repr_digest(whole).encode() + b"\r\n"
    )
    client_bytes = (
        b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 100-199/1000\r\n"
        b"Content-Length: 100\r\n\r\n" + part
    )
    client, upstream = _one_exchange(
        tmp_path, fcgi_response(1, head, part), client_bytes
    )
    [ex] = analyze([client], [upstream]).exchanges
    assert ex.verdict != "corrupted"
    assert ex.attribution.digest_matches is None
    assert any("Repr-Digest" in e and "not" in e for e in ex.attribution.evidence)


def test_content_digest_on_head_is_not_checked(tmp_path: Path) -> None:
    """A HEAD response carries no content, so its Content-Digest is not
    checked against anything."""
    from fcgiforensics.testing import fcgi_response

    body = b"z" * 300
    head = b"Content-Digest: " + _repr_digest(body).encode() + b"\r\n"
    client_bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 300\r\n\r\n"
    client, upstream = _one_exchange(
        tmp_path, fcgi_response(1, head, b""), client_bytes, method="HEAD"
    )
    [ex] = analyze([client], [upstream]).exchanges
    assert ex.verdict == "ok"
    assert ex.attribution.digest_matches is None


def test_multipart_byteranges_is_not_compared(tmp_path: Path) -> None:
    """A 206 multipart/byteranges body, which nginx builds from the app's
    whole body, is incomplete rather than a difference blamed on it."""
    from fcgiforensics.testing import fcgi_response

    whole = b"0123456789" * 100
    parts = (
        b"--B\r\nContent-Range: bytes 0-9/1000\r\n\r\n"
        + whole[:10]
        + b"\r\n--B\r\nContent-Range: bytes 500-509/1000\r\n\r\n"
        + whole[500:510]
        + b"\r\n--B--\r\n"
    )
    client_bytes = (
        b"HTTP/1.1 206 Partial Content\r\n"
        b"Content-Type: multipart/byteranges; boundary=B\r\n"
        b"Content-Length: %d\r\n\r\n" % len(parts) + parts
    )
    client, upstream = _one_exchange(
        tmp_path,
        fcgi_response(1, b"Content-Type: text/plain\r\n", whole),
        client_bytes,
    )
    [ex] = analyze([client], [upstream]).exchanges
    assert (ex.verdict, ex.hop) == ("incomplete", None)
    assert "multipart/byteranges" in ex.attribution.evidence[-1]


def test_an_anomaly_told_early_and_again_in_its_request_counts_once() -> None:
    """The FastCGI decoder reports STDERR inside STDOUT when it sees it and
    again in the request when that ends; the leg counts it once per
    request (two in captures/app-fault)."""
    from tests.conftest import CAPTURES

    folder = CAPTURES / "app-fault"
    analysis = analyze([str(folder / "client.pcap")], [str(folder / "upstream.pcap")])
    counts = analysis.upstream_leg.anomaly_counts()
    assert counts["fcgi.stderr_in_stdout"] == 2
    assert counts["fcgi.fin_before_end"] == 1


# -- the text report -------------------------------------------------------


def write_app_cut(folder: Path, length: int, cut: int) -> tuple[Path, Path]:
    """One exchange whose app declares a Content-Length of ``length``,
    sends ``cut`` body bytes and closes with no END_REQUEST; nginx passes
    on what it got and closes too."""
    from fcgiforensics.testing import (
        ACK,
        FIN,
        Conversation,
        fcgi_record,
        fcgi_request,
        http_request,
    )

    body = bytes(random.Random(length).choice(b"abcdefgh\n") for _ in range(length))
    c = Conversation(
        client="192.0.2.10", client_port=51000, server="192.0.2.1", server_port=80
    )
    u = Conversation(
        client="127.0.0.1",
        client_port=42000,
        server="127.0.0.1",
        server_port=9000,
        start_ns=c.start_ns + 100_000,
    )
    c.handshake()
    u.handshake()
    get = http_request("GET", "/cut")
    c.send_to_server(get)
    request = fcgi_request(
        1,
        {
            "REQUEST_METHOD": "GET",
            "REQUEST_URI": "/cut",
            "REMOTE_ADDR": "192.0.2.10",
            "REMOTE_PORT": "51000",
        },
    )
    u.send_to_server(request)
    stdout = b"Content-Length: %d\r\n\r\n" % length + body[:cut]
    records = b"".join(
        fcgi_record(6, 1, stdout[i : i + 8000]) for i in range(0, len(stdout), 8000)
    )
    u.send_to_client(records)
    u.raw(False, len(records), b"", FIN | ACK)  # the app closes first
    u.raw(True, len(request), b"", FIN | ACK)
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % length
    c.send_to_client(head + body[:cut])
    c.raw(False, len(head) + cut, b"", FIN | ACK)
    c.raw(True, len(get), b"", FIN | ACK)
    folder.mkdir(parents=True, exist_ok=True)
    write_pcap(str(folder / "c.pcap"), c.frames())
    write_pcap(str(folder / "u.pcap"), u.frames())
    return folder / "c.pcap", folder / "u.pcap"


def _region_block(text: str, exchange_id: int) -> list[str]:
    """The lines of the report's region 1 of one exchange."""
    lines = text.splitlines()
    start = lines.index(
        next(x for x in lines if x.startswith(f"exchange {exchange_id}:"))
    )
    block = lines[start:]
    first = next(i for i, x in enumerate(block) if x.startswith("  region 1:"))
    end = next((i for i, x in enumerate(block) if not x.strip()), len(block))
    return block[first:end]


def _damaged_pair(
    tmp_path: Path, seen: bytes, split: bool = False
) -> tuple[list[str], list[str]]:
    """Two exchanges of 30,000 bytes, the client's copy of the second
    replaced by ``seen``; ``split`` writes the client leg as two rotated
    files, the second from the second response on."""
    bodies = [random.Random(i).randbytes(30_000) for i in range(2)]
    client, upstream = two_leg_exchanges(bodies, client_bodies=[bodies[0], seen])
    write_pcap(str(tmp_path / "u.pcap"), upstream)
    if not split:
        write_pcap(str(tmp_path / "c.pcap"), client)
        return [str(tmp_path / "c.pcap")], [str(tmp_path / "u.pcap")]
    half = len(client) // 2
    write_pcap(str(tmp_path / "c1.pcap"), client[:half])
    write_pcap(str(tmp_path / "c2.pcap"), client[half:])
    return [str(tmp_path / "c1.pcap"), str(tmp_path / "c2.pcap")], [
        str(tmp_path / "u.pcap")
    ]


def test_text_report_names_the_capture_file_and_time_on_each_leg(
    tmp_path: Path,
) -> None:
    """A proxy region gives, per leg, the capture time of its first frame
    and a Wireshark filter prefixed by the capture file that holds it."""
    from fcgiforensics.frames import ns_to_iso
    from fcgiforensics.reports.json_report import wireshark_filter
    from fcgiforensics.reports.text_report import report_text

    seen = bytearray(random.Random(1).randbytes(30_000))
    seen[12_000:12_100] = bytes(100)
    client, upstream = _damaged_pair(tmp_path, bytes(seen))
    analysis = analyze(client, upstream)
    ex = analysis.exchanges[1]
    [region] = ex.attribution.regions
    assert region.client_time_ns is not None and region.upstream_time_ns is not None
    block = _region_block(report_text(analysis), ex.id)
    assert block[1:5] == [
        f"    client leg (first frame captured {ns_to_iso(region.client_time_ns)}):",
        f"      {client[0]}, Wireshark: {wireshark_filter(region.client_frames)}",
        f"    upstream leg (first frame captured "
        f"{ns_to_iso(region.upstream_time_ns)}):",
        f"      {upstream[0]}, Wireshark: {wireshark_filter(region.upstream_frames)}",
    ]


def test_text_report_names_the_rotated_file_holding_the_frames(
    tmp_path: Path,
) -> None:
    """With a leg in rotated files, the filter names the file holding the
    region's frames and numbers them as Wireshark does in that file."""
    from fcgiforensics.frames import frame_file, frame_number
    from fcgiforensics.reports.text_report import report_text

    seen = bytearray(random.Random(1).randbytes(30_000))
    seen[12_000:12_100] = bytes(100)
    client, upstream = _damaged_pair(tmp_path, bytes(seen), split=True)
    analysis = analyze(client, upstream)
    [region] = analysis.exchanges[1].attribution.regions
    assert {frame_file(f) for f in region.client_frames} == {1}
    numbers = sorted({frame_number(f) for f in region.client_frames})
    wanted = f"      {client[1]}, Wireshark: frame.number == {numbers[0]}"
    assert len(numbers) == 1
    assert wanted in _region_block(report_text(analysis), 2)


def test_text_report_of_a_truncation_says_where_the_body_stops(
    tmp_path: Path,
) -> None:
    """A client body cut short is told as a truncation with its missing
    size, and neither its evidence nor its region lines say that the
    client leg carried other bytes."""
    from fcgiforensics.reports.text_report import report_text

    seen = random.Random(1).randbytes(30_000)[:20_000]
    client, upstream = _damaged_pair(tmp_path, seen)
    text = report_text(analyze(client, upstream))
    block = _region_block(text, 2)
    assert block[0] == "  region 1: truncated at offset 20,000, 10,000 bytes short"
    detail = text[text.index("exchange 2: GET") :]
    assert "the client's body stops at offset 20,000" in detail
    assert "other bytes" not in detail


def test_text_report_shows_the_app_bytes_where_its_body_stops(
    tmp_path: Path,
) -> None:
    """An app-side region names the upstream file and frame, and shows the
    upstream bytes up to where the app's body stops, in hex."""
    from fcgiforensics.frames import frame_number
    from fcgiforensics.reports.text_report import report_text

    client, upstream = write_app_cut(tmp_path, 30_000, 20_000)
    analysis = analyze([str(client)], [str(upstream)])
    [ex] = analysis.exchanges
    [region] = ex.attribution.regions
    assert (ex.hop, region.kind, region.length) == ("app", "truncate", 10_000)
    assert ex.upstream is not None
    block = _region_block(report_text(analysis), ex.id)
    assert block[0] == "  region 1: truncated at offset 20,000, 10,000 bytes short"
    assert block[1].startswith("    upstream leg (first frame captured 20")
    [frame] = region.upstream_frames
    assert (
        block[2]
        == f"      {upstream}, Wireshark: frame.number == {frame_number(frame)}"
    )
    assert block[3] == "    upstream body up to where it stops, at offset 20,000:"
    last = ex.upstream.body.data[19_984:20_000]
    assert block[4].split("|")[0].split() == ["00004e10", *(f"{b:02x}" for b in last)]


def test_text_report_quotes_the_apps_stderr_escaped_and_bounded(
    tmp_path: Path,
) -> None:
    """For damage found in STDERR, the request's STDERR is quoted: first
    lines only, each cut to a width, with control and undecodable bytes
    escaped so that the terminal shows them rather than obeys them."""
    import dataclasses

    from fcgiforensics.attribution import Finding
    from fcgiforensics.reports.text_report import (
        STDERR_LINE_CHARS,
        STDERR_LINES,
        report_text,
    )

    client, upstream = write_app_cut(tmp_path, 30_000, 20_000)
    analysis = analyze([str(client)], [str(upstream)])
    [ex] = analysis.exchanges
    plain = report_text(analysis)
    assert "STDERR" not in plain  # a cut stream is not STDERR's doing
    stderr = (
        b"Traceback (most recent call last):\n"
        b"\x1b[2J\x1b[31mred\r\n"
        b"\xff\xfe not utf-8\n" + b"y" * 500 + b"\n"
    ) + b"".join(b"line %d\n" % n for n in range(20))
    assert ex.fcgi is not None
    ex.fcgi = dataclasses.replace(
        ex.fcgi, request=dataclasses.replace(ex.fcgi.request, stderr=stderr)
    )
    ex.attribution.findings.append(Finding("fcgi.stderr_in_stdout", None, 20_000))
    text = report_text(analysis)
    assert "\x1b" not in text and "\r" not in text
    block = _region_block(text, ex.id)
    at = block.index(
        f"    STDERR the app sent for this request ({len(stderr):,} bytes):"
    )
    quoted = block[at + 1 : at + 2 + STDERR_LINES]
    assert quoted[:3] == [
        "      | Traceback (most recent call last):",
        "      | \\x1b[2J\\x1b[31mred",
        "      | \\xff\\xfe not utf-8",
    ]
    assert quoted[3] == "      | " + "y" * (STDERR_LINE_CHARS - 3) + "..."
    assert quoted[-1] == f"      | ... (first {STDERR_LINES} lines shown)"


def test_hex_views_say_how_many_bytes_they_left_out() -> None:
    """A region longer than the view keeps its first and last rows, and a
    line in the cut says exactly how many bytes and rows are not shown,
    in the column of the side that was cut."""
    from fcgiforensics.decoders.body import Body
    from fcgiforensics.reports.hexview import MAX_ROWS, hex_rows, hex_text

    body = Body(bytes(range(256)) * 4)
    rows = hex_rows(body, 100, 900)
    assert len(rows) == MAX_ROWS
    [cut] = [r for r in rows if r.left_out]
    shown = {o for r in rows for o in range(r.offset, r.offset + len(r.cells))}
    missing = [o for o in range(rows[0].offset, rows[-1].offset) if o not in shown]
    assert cut.left_out == len(missing) == missing[-1] - missing[0] + 1
    note = f"... {cut.left_out:,} bytes ({cut.left_out // 16} rows) left out"

    # Only the client side is long: the note stands in the client column.
    lines = hex_text(Body(bytes(1024)), 100, 100, body, 100, 900)
    [line] = [x for x in lines if "left out" in x]
    assert line.lstrip().startswith(note) and line.index(note) == 80


def _left_early(tmp_path: Path, damage: bool) -> tuple[str, str]:
    """A client that leaves mid-response, after which nginx aborts the
    FastCGI request: the app sent 30,000 of 50,000 bytes, the client got
    20,000 (with 8 bytes changed when ``damage``)."""
    from fcgiforensics.testing import fcgi_record

    body = bytes(range(250)) * 200
    app = fcgi_record(6, 1, b"Content-Type: text/plain\r\n\r\n" + body[:30_000])
    seen = bytearray(body[:20_000])
    if damage:
        seen[5000:5008] = b"XXXXXXXX"
    client = b"HTTP/1.1 200 OK\r\nContent-Length: 50000\r\n\r\n" + bytes(seen)
    return _one_exchange(tmp_path, app, client)


def test_a_client_that_left_is_incomplete_when_what_it_got_agrees(
    tmp_path: Path,
) -> None:
    """When the client left and nginx aborted the app, the bytes the client
    did get agree with the app's: incomplete, nobody blamed."""
    client, upstream = _left_early(tmp_path, damage=False)
    [ex] = analyze([client], [upstream]).exchanges
    assert (ex.verdict, ex.hop) == ("incomplete", None)
    assert any("the client left" in e for e in ex.attribution.evidence)


def test_a_client_that_left_still_shows_damage_in_what_it_got(
    tmp_path: Path,
) -> None:
    """Bytes the client received before it left that differ from the app's
    are the proxy's damage, located; the early end is not a region."""
    client, upstream = _left_early(tmp_path, damage=True)
    [ex] = analyze([client], [upstream]).exchanges
    assert (ex.verdict, ex.hop) == ("corrupted", "proxy")
    assert [(r.offset, r.length, r.kind) for r in ex.attribution.regions] == [
        (5000, 8, "replace")
    ]


def test_differing_bodies_of_a_possibly_crossed_pair_blame_nobody(
    tmp_path: Path,
) -> None:
    """Behind NAT, two requests for one URI in the same instant may pair
    crossed; a difference in such a pair is incomplete, never blamed."""
    from fcgiforensics.testing import (
        Conversation,
        fcgi_request,
        fcgi_response,
        http_request,
        http_response,
    )

    start = 1_765_000_000 * 10**9
    client_frames, upstream_frames = [], []
    bodies = [b"A" * 3000, b"B" * 3000]
    for i, body in enumerate(bodies):
        c = Conversation(client_port=51000 + i, start_ns=start + i * 1_000_000)
        u = Conversation(
            client="127.0.0.1",
            client_port=42000 + i,
            server="127.0.0.1",
            server_port=9000,
            start_ns=start + i * 1_000_000 + 100_000,
        )
        c.handshake()
        u.handshake()
        c.send_to_server(http_request("GET", "/same"))
        params = {
            "REQUEST_METHOD": "GET",
            "REQUEST_URI": "/same",
            "REMOTE_ADDR": "198.51.100.7",  # the NAT's address and ports
            "REMOTE_PORT": str(60000 + i),
        }
        u.send_to_server(fcgi_request(1, params))
        u.send_to_client(fcgi_response(1, b"Content-Type: text/plain\r\n", body))
        seen = body if i == 0 else body[:100] + b"X" + body[101:]
        c.send_to_client(http_response(seen))
        c.close()
        u.close()
        client_frames += c.frames()
        upstream_frames += u.frames()
    write_pcap(str(tmp_path / "c.pcap"), sorted(client_frames, key=lambda f: f.ts_ns))
    write_pcap(str(tmp_path / "u.pcap"), sorted(upstream_frames, key=lambda f: f.ts_ns))
    exchanges = analyze(
        [str(tmp_path / "c.pcap")], [str(tmp_path / "u.pcap")]
    ).exchanges
    assert [ex.paired_by for ex in exchanges] == ["uri", "uri"]
    assert [ex.verdict for ex in exchanges] == ["ok", "incomplete"]
    assert "may be crossed" in exchanges[1].attribution.evidence[-1]


def test_a_record_cut_after_the_web_server_left_is_not_the_apps(
    tmp_path: Path,
) -> None:
    """nginx answers HEAD from the app's head and closes the FastCGI
    connection; the app's record cut short by that close is the abort's
    doing, and the exchange is ok."""
    import struct

    from fcgiforensics.testing import fcgi_record

    head = b"Content-Type: text/plain\r\nContent-Length: 5000\r\n\r\n"
    body = b"z" * 100
    cut = struct.pack("!BBHHBx", 1, 6, 1, 1000, 0) + body  # 1000 announced
    app = fcgi_record(6, 1, head) + cut
    client = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"
    client_path, upstream_path = _one_exchange(tmp_path, app, client, method="HEAD")
    analysis = analyze([client_path], [upstream_path])
    [ex] = analysis.exchanges
    names = {a.name for a in analysis.upstream_leg.anomalies}
    assert {"fcgi.truncated_record", "fcgi.web_server_closed"} <= names
    assert (ex.verdict, ex.hop) == ("ok", None), ex.attribution.evidence
