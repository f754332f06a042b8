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
    reason = unavailable_reason("flup")
    if reason is not None:
        pytest.skip(reason)
    with Testbed(tmp_path, backend="flup", any_iface=any_iface,
                 keep_conn=True) as tb:
        for uri in URIS:
            assert tb.fetch(uri).intact
        results = tb.fetch_many(URIS * 2, concurrency=3)
        assert all(r.intact for r in results)
    return tb


def _flow_name(conn: Connection, to_server: bool) -> str:
    """tcpflow's file name for one direction: zero-padded address.port."""
    def part(addr: bytes, port: int) -> str:
        return ".".join(f"{b:03d}" for b in addr) + f".{port:05d}"

    src, dst = (conn.client, conn.server) if to_server else \
        (conn.server, conn.client)
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
        subprocess.run(["tcpflow", "-r", str(pcap), "-o", str(flows)],
                       check=True, capture_output=True)
        out = _ours(pcap)
        assert len(out.connections) >= 2
        for conn, sink in zip(out.connections, out.sinks, strict=True):
            for to_server, data in ((True, sink.data[0]),
                                    (False, sink.data[1])):
                if not data:
                    continue
                theirs = (flows / _flow_name(conn, to_server)).read_bytes()
                assert bytes(data) == theirs, _flow_name(conn, to_server)


def _tshark_streams(pcap: Path, count: int) -> list[tuple[bytes, bytes]]:
    """Each TCP stream's two directions, from `tshark -z follow,tcp,raw`."""
    args = ["tshark", "-r", str(pcap), "-q"]
    for i in range(count):
        args += ["-z", f"follow,tcp,raw,{i}"]
    text = subprocess.run(args, check=True, capture_output=True,
                          text=True).stdout
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
