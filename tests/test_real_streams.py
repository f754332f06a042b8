"""Reassembly of real loopback captures, cross-checked against tcpflow and
tshark, which are right for flows without gaps or conflicting copies."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fcgiforensics.reassembly import Connection
from tests.testbed import Testbed, unavailable_reason

from .conftest import Followed, follow_files

pytestmark = pytest.mark.testbed

URIS = [
    "/body?size=1000000&seed=1&mode=length",
    "/body?size=300000&seed=2&mode=chunked&binary=1",
    "/body?size=5000&seed=3&mode=length",
]


def _run_testbed(tmp_path: Path, any_iface: bool) -> Testbed:
    """Run the traffic, again if tcpdump itself reports dropped packets:
    these tests compare lossless captures (loss has tests of its own)."""
    reason = unavailable_reason("flup")
    if reason is not None:
        pytest.skip(reason)
    for attempt in range(3):
        workdir = tmp_path / f"run{attempt}"
        workdir.mkdir()
        with Testbed(
            workdir, backend="flup", any_iface=any_iface, keep_conn=True
        ) as tb:
            for uri in URIS:
                assert tb.fetch(uri).intact
            results = tb.fetch_many(URIS * 2, concurrency=3)
            assert all(r.intact for r in results)
        stats = (tb.client_stats, tb.upstream_stats)
        if all(s is not None and s.dropped_by_kernel == 0 for s in stats):
            return tb
    pytest.skip("tcpdump kept dropping packets on this loaded machine")


def _flow_name(conn: Connection, to_server: bool) -> str:
    """tcpflow's file name for one direction: zero-padded address.port."""

    def part(addr: bytes, port: int) -> str:
        return ".".join(f"{b:03d}" for b in addr) + f".{port:05d}"

    src, dst = (conn.client, conn.server) if to_server else (conn.server, conn.client)
    return f"{part(*src)}-{part(*dst)}"


def _ours(pcap: Path) -> Followed:
    out = follow_files([str(pcap)])
    for conn in out.connections:
        assert conn.to_client.gaps == [] and conn.to_server.gaps == []
        assert conn.to_client.conflicts == []
    return out


@pytest.mark.skipif(shutil.which("tcpflow") is None, reason="needs tcpflow")
def test_loopback_streams_equal_tcpflow(tmp_path: Path) -> None:
    """On `-i lo` captures of both legs, every direction of every
    connection equals tcpflow's flow file byte for byte."""
    tb = _run_testbed(tmp_path, any_iface=False)
    for pcap in (tb.client_pcap, tb.upstream_pcap):
        flows = tmp_path / f"tcpflow-{pcap.stem}"
        subprocess.run(
            ["tcpflow", "-r", str(pcap), "-o", str(flows)],
            check=True,
            capture_output=True,
        )
        out = _ours(pcap)
        assert len(out.connections) >= 2
        for conn, sink in zip(out.connections, out.sinks, strict=True):
            for to_server, data in ((True, sink.data[0]), (False, sink.data[1])):
                if not data:
                    continue
                theirs = (flows / _flow_name(conn, to_server)).read_bytes()
                assert bytes(data) == theirs, _flow_name(conn, to_server)


def _tshark_streams(pcap: Path, count: int) -> list[tuple[bytes, bytes]]:
    """Each TCP stream's two directions, from `tshark -z follow,tcp,raw`."""
    args = ["tshark", "-r", str(pcap), "-q"]
    for i in range(count):
        args += ["-z", f"follow,tcp,raw,{i}"]
    text = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    streams = []
    for block in text.split("Follow: tcp,raw")[1:]:
        to_server = bytearray()
        to_client = bytearray()
        for line in block.splitlines():
            if not re.fullmatch(r"\t?[0-9a-f]+", line):
                continue
            target = to_client if line.startswith("\t") else to_server
            target += bytes.fromhex(line.strip())
        streams.append((bytes(to_server), bytes(to_client)))
    return streams


@pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")
def test_any_interface_streams_equal_tshark(tmp_path: Path) -> None:
    """On `-i any` (Linux cooked) captures, which tcpflow cannot read in its
    SLL2 form, every stream equals tshark's follow output."""
    tb = _run_testbed(tmp_path, any_iface=True)
    for pcap in (tb.client_pcap, tb.upstream_pcap):
        out = _ours(pcap)
        assert out.stats.link_type_names[0] in ("LINUX_SLL", "LINUX_SLL2")
        theirs = _tshark_streams(pcap, len(out.connections))
        ours = [(bytes(s.data[0]), bytes(s.data[1])) for s in out.sinks]
        # tshark prints several follow reports in no stream order.
        assert sorted(ours) == sorted(theirs)


def _rewrite(
    src: Path, dst: Path, drop: set[int], extra: list[tuple[int, bytes]] = ()
) -> None:  # type: ignore[assignment]
    """Copy a capture without the frames in ``drop``, inserting ``extra``
    frames (after the given frame number)."""
    from fcgiforensics.capture.records import read_records
    from fcgiforensics.testing import Frame, write_pcap

    frames = []
    after = dict(extra)
    for number, ts, linktype, data, orig in read_records(str(src)):
        if number not in drop:
            frames.append(Frame(data, ts, linktype, orig))
        if number in after:
            frames.append(Frame(after[number], ts + 1, linktype))
    write_pcap(str(dst), frames)


@pytest.mark.skipif(shutil.which("tcpflow") is None, reason="needs tcpflow")
def test_tcpflow_differs_where_documented(tmp_path: Path) -> None:
    """With a data frame deleted from a real capture, tcpflow writes zeros
    where we report a gap of exactly that frame's bytes; with a conflicting
    retransmission added, tcpflow keeps the last copy, we keep the first
    and record both."""
    tb = _run_testbed(tmp_path, any_iface=False)
    out = _ours(tb.client_pcap)
    conn, sink = out.connections[0], out.sinks[0]
    half = conn.to_client
    victim = half.seg_frames[len(half.seg_frames) // 2]
    index = list(half.seg_frames).index(victim)
    offset, length = half.seg_offsets[index], half.seg_lengths[index]

    # Step 1: a deleted frame.
    holed = tmp_path / "holed.pcap"
    _rewrite(tb.client_pcap, holed, {victim})
    ours = follow_files([str(holed)])
    gaps = ours.connections[0].to_client.gaps
    assert [(g.offset, g.length) for g in gaps] == [(offset, length)]
    flows = tmp_path / "tcpflow-holed"
    subprocess.run(
        ["tcpflow", "-r", str(holed), "-o", str(flows)], check=True, capture_output=True
    )
    theirs = (flows / _flow_name(conn, False)).read_bytes()
    assert theirs[offset : offset + length] == bytes(length)
    assert bytes(sink.data[1])[offset : offset + length] != bytes(length)

    # Step 2: a retransmission of that frame with other bytes, sent after it.
    from fcgiforensics.capture.records import read_records

    original = next(r for r in read_records(str(tb.client_pcap)) if r[0] == victim)[3]
    forged = original[:-10] + b"\0" * 10  # text bodies hold no NUL
    conflicted = tmp_path / "conflict.pcap"
    _rewrite(tb.client_pcap, conflicted, set(), [(victim, forged)])
    ours = follow_files([str(conflicted)])
    [conflict] = ours.connections[0].to_client.conflicts
    assert conflict.second == b"\0" * 10
    assert bytes(ours.sinks[0].data[1]) == bytes(sink.data[1])
    flows = tmp_path / "tcpflow-conflict"
    subprocess.run(
        ["tcpflow", "-r", str(conflicted), "-o", str(flows)],
        check=True,
        capture_output=True,
    )
    theirs = (flows / _flow_name(conn, False)).read_bytes()
    end = offset + length
    assert theirs[end - 10 : end] == b"\0" * 10
