"""Capture reading: formats, link types, frame numbers and damaged files."""

from __future__ import annotations

import contextlib
import gzip
import os
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.all import rdpcap  # type: ignore[import-untyped]

from fcgiforensics.capture.packets import NotTcp, TcpSegment, decode_tcp
from fcgiforensics.capture.records import CaptureInfo, read_records
from fcgiforensics.errors import CaptureError, CaptureFormatError
from fcgiforensics.frames import frame_number
from fcgiforensics.testing import (
    Conversation,
    Frame,
    pcap_bytes,
    pcapng_bytes,
    tcp_frame,
)

from .conftest import follow_files


def _conversation(linktype: str = "EN10MB", **kw: object) -> list[Frame]:
    conv = Conversation(linktype=linktype, **kw)  # type: ignore[arg-type]
    conv.handshake()
    conv.send_to_server(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    conv.send_to_client(bytes(range(256)) * 40)
    conv.close()
    return conv.frames()


def _records(path: Path) -> tuple[list[tuple[int, int, int, bytes, int]], CaptureInfo]:
    info = CaptureInfo(str(path))
    return list(read_records(str(path), info)), info


@pytest.mark.parametrize("nanosecond", [False, True])
@pytest.mark.parametrize("big_endian", [False, True])
def test_pcap_byte_orders_and_resolutions(
    tmp_path: Path, nanosecond: bool, big_endian: bool
) -> None:
    """pcap in both byte orders, micro- and nanosecond, gives the same packets
    with 1-based frame numbers and exact nanosecond timestamps."""
    frames = _conversation()
    path = tmp_path / "c.pcap"
    path.write_bytes(pcap_bytes(frames, nanosecond=nanosecond, big_endian=big_endian))
    records, info = _records(path)
    assert info.format == "pcap"
    assert [r[0] for r in records] == list(range(1, len(frames) + 1))
    assert [r[3] for r in records] == [f.data for f in frames]
    step = 1 if nanosecond else 1000
    assert [r[1] for r in records] == [f.ts_ns // step * step for f in frames]


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("tsresol", [6, 9])
def test_pcapng_orders_and_tsresol(
    tmp_path: Path, big_endian: bool, tsresol: int
) -> None:
    """pcapng enhanced packet blocks honour byte order and if_tsresol."""
    frames = _conversation()
    path = tmp_path / "c.pcapng"
    path.write_bytes(pcapng_bytes(frames, big_endian=big_endian, tsresol=tsresol))
    records, info = _records(path)
    assert info.format == "pcapng"
    assert [r[3] for r in records] == [f.data for f in frames]
    unit = 10 ** (9 - tsresol)
    assert [r[1] for r in records] == [f.ts_ns // unit * unit for f in frames]


def test_pcapng_several_interfaces_and_link_types(tmp_path: Path) -> None:
    """Each pcapng packet is decoded with its own interface's link type."""
    frames = _conversation("EN10MB") + _conversation("LINUX_SLL2", client_port=40001)
    frames.sort(key=lambda f: f.ts_ns)
    path = tmp_path / "mixed.pcapng"
    path.write_bytes(pcapng_bytes(frames))
    followed = follow_files([str(path)])
    assert followed.stats.link_type_names == ["EN10MB", "LINUX_SLL2"]
    assert len(followed.connections) == 2
    for sink in followed.sinks:
        assert bytes(sink.data[1]) == bytes(range(256)) * 40


def test_pcapng_simple_and_obsolete_packet_blocks(tmp_path: Path) -> None:
    """Simple packet blocks and obsolete packet blocks are read as packets."""
    frames = _conversation()
    simple = pcapng_bytes(frames, simple=True)
    path = tmp_path / "simple.pcapng"
    path.write_bytes(simple)
    records, _ = _records(path)
    assert [r[3] for r in records] == [f.data for f in frames]

    # An obsolete packet block (type 2) holding the first frame.
    shb_and_idb = pcapng_bytes(frames[:1])
    shb_len = struct.unpack_from("<I", shb_and_idb, 4)[0]
    idb_len = struct.unpack_from("<I", shb_and_idb, shb_len + 4)[0]
    head = shb_and_idb[: shb_len + idb_len]
    data = frames[0].data
    body = struct.pack("<HHIIII", 0, 0, 0, 5, len(data), len(data)) + data
    body += b"\0" * (-len(body) % 4)
    block = (
        struct.pack("<II", 2, len(body) + 12) + body + struct.pack("<I", len(body) + 12)
    )
    path.write_bytes(head + block)
    records, _ = _records(path)
    assert len(records) == 1 and records[0][3] == data
    assert records[0][1] == 5000  # 5 microsecond ticks


def test_gzip_compressed_capture(tmp_path: Path) -> None:
    """A gzip-compressed pcap reads the same as the plain one."""
    frames = _conversation()
    path = tmp_path / "c.pcap.gz"
    path.write_bytes(gzip.compress(pcap_bytes(frames)))
    records, info = _records(path)
    assert info.compressed
    assert [r[3] for r in records] == [f.data for f in frames]


def test_rotated_files_are_merged_in_time_order(tmp_path: Path) -> None:
    """Two files of one leg interleave by timestamp and keep their own
    frame numbers."""
    frames = _conversation()
    first, second = frames[0::2], frames[1::2]
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    a.write_bytes(pcap_bytes(first))
    b.write_bytes(pcap_bytes(second))
    followed = follow_files([str(a), str(b)])
    assert bytes(followed.sinks[0].data[1]) == bytes(range(256)) * 40
    assert followed.stats.packets == len(frames)


@pytest.mark.parametrize(
    "linktype", ["EN10MB", "RAW", "NULL", "LOOP", "LINUX_SLL", "LINUX_SLL2"]
)
@pytest.mark.parametrize("v6", [False, True])
def test_link_types_and_ip_versions(linktype: str, v6: bool) -> None:
    """Every supported link type yields the TCP segment, over IPv4 and IPv6."""
    src, dst = ("2001:db8::1", "2001:db8::2") if v6 else ("10.0.0.1", "10.0.0.2")
    frame = tcp_frame(src, 1234, dst, 80, 7, 9, 0x18, b"hello", linktype=linktype)
    lt = {
        "EN10MB": 1,
        "RAW": 101,
        "NULL": 0,
        "LOOP": 108,
        "LINUX_SLL": 113,
        "LINUX_SLL2": 276,
    }[linktype]
    seg = decode_tcp(lt, frame, len(frame))
    assert isinstance(seg, TcpSegment)
    assert (seg.sport, seg.dport, seg.seq, seg.ack) == (1234, 80, 7, 9)
    assert seg.payload == b"hello" and seg.missing == 0


def test_null_link_type_in_big_endian_host_order() -> None:
    """A NULL header written by a big-endian host is read too."""
    frame = tcp_frame(
        "10.0.0.1", 1, "10.0.0.2", 2, 0, 0, 0x18, b"x", linktype="LOOP"
    )  # family 2 in network order
    assert isinstance(decode_tcp(0, frame, len(frame)), TcpSegment)


def test_vlan_tags_are_skipped() -> None:
    """802.1Q-tagged Ethernet frames decode to their TCP segment."""
    frame = tcp_frame("10.0.0.1", 1, "10.0.0.2", 2, 0, 0, 0x18, b"tagged", vlan=42)
    seg = decode_tcp(1, frame, len(frame))
    assert isinstance(seg, TcpSegment) and seg.payload == b"tagged"


def test_ipv6_extension_headers_are_walked() -> None:
    """A hop-by-hop options header before TCP is stepped over."""
    plain = tcp_frame(
        "2001:db8::1", 1, "2001:db8::2", 2, 0, 0, 0x18, b"v6", linktype="RAW"
    )
    tcp = plain[40:]
    hop = bytes([6, 0]) + b"\x01\x04\0\0\0\0"  # next=TCP, 8 bytes, PadN
    header = bytearray(plain[:40])
    header[6] = 0  # next header: hop-by-hop
    struct.pack_into("!H", header, 4, len(tcp) + 8)
    seg = decode_tcp(101, bytes(header) + hop + tcp, 40 + 8 + len(tcp))
    assert isinstance(seg, TcpSegment) and seg.payload == b"v6"


def test_ip_fragments_and_other_protocols_are_counted_not_decoded() -> None:
    """UDP is 'other' and an IPv4 fragment is reported as a fragment."""
    frame = bytearray(tcp_frame("10.0.0.1", 1, "10.0.0.2", 2, 0, 0, 0x18, b"x"))
    frame[14 + 9] = 17  # protocol UDP
    assert decode_tcp(1, bytes(frame), len(frame)) == NotTcp("other", "")
    frame[14 + 9] = 6
    frame[14 + 6] = 0x20  # more fragments
    seg = decode_tcp(1, bytes(frame), len(frame))
    assert isinstance(seg, NotTcp) and seg.reason == "fragment"


def test_snaplen_truncation_is_counted_as_missing() -> None:
    """A frame cut by the snaplen reports how many payload bytes are missing."""
    frame = tcp_frame("10.0.0.1", 1, "10.0.0.2", 2, 0, 0, 0x18, b"a" * 100)
    seg = decode_tcp(1, frame[:64], len(frame))
    assert isinstance(seg, TcpSegment)
    assert len(seg.payload) == 10 and seg.missing == 90


def test_not_a_capture_is_an_error_naming_file_and_offset(tmp_path: Path) -> None:
    """A foreign file raises CaptureFormatError with its path and offset 0."""
    path = tmp_path / "notes.txt"
    path.write_text("hello, this is not a capture\n")
    with pytest.raises(CaptureFormatError) as caught:
        _records(path)
    assert str(caught.value).startswith(f"{path}: file offset 0x0: not a pcap")


def test_missing_file_is_an_error() -> None:
    """A missing file raises CaptureError naming it."""
    with pytest.raises(CaptureError, match="no such file"):
        _records(Path("/nonexistent/x.pcap"))


def test_cut_off_last_record_keeps_earlier_records(tmp_path: Path) -> None:
    """A file cut inside its last record keeps every whole record and
    reports the cut with frame number and file offset."""
    frames = _conversation()
    data = pcap_bytes(frames)
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[:-10])
    records, info = _records(path)
    assert len(records) == len(frames) - 1
    [anomaly] = info.anomalies
    assert anomaly.name == "capture.truncated_file"
    assert anomaly.first_frame == len(frames)
    assert anomaly.file_offset == len(data) - len(frames[-1].data) - 16


def test_absurd_record_length_stops_with_an_anomaly(tmp_path: Path) -> None:
    """A record length beyond any snaplen is damage: reading stops there and
    the records before it are kept."""
    frames = _conversation()
    data = bytearray(pcap_bytes(frames))
    second = 24 + 16 + len(frames[0].data)
    struct.pack_into("<I", data, second + 8, 70_000_000)
    path = tmp_path / "absurd.pcap"
    path.write_bytes(bytes(data))
    records, info = _records(path)
    assert len(records) == 1
    assert info.anomalies[0].name == "capture.bad_record"
    assert info.anomalies[0].file_offset == second
    assert "70000000 exceeds snaplen" in str(info.anomalies[0])


def test_scapy_reads_our_synthetic_captures_the_same(tmp_path: Path) -> None:
    """An independent reader (scapy) sees the same frames in our writer's
    output, so the synthetic captures are sound test input."""
    frames = _conversation()
    path = tmp_path / "c.pcap"
    path.write_bytes(pcap_bytes(frames))
    packets = rdpcap(str(path))
    assert [bytes(p) for p in packets] == [f.data for f in frames]


def test_snaplen_cuts_are_one_anomaly_per_file_with_a_count(tmp_path: Path) -> None:
    """Packets cut by the snaplen make one capture.truncated_packet per file,
    counting them from the first cut frame to the last, while every cut
    stays a 'snaplen' gap on its stream."""
    frames = [f.truncated(96) for f in _conversation()]
    first, second = frames[0::2], frames[1::2]
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    a.write_bytes(pcap_bytes(first))
    b.write_bytes(pcap_bytes(second))
    followed = follow_files([str(a), str(b)])
    cut = [x for x in followed.stats.anomalies if x.name == "capture.truncated_packet"]
    assert [x.capture for x in cut] == [str(a), str(b)]
    for anomaly, half in zip(cut, (first, second), strict=True):
        numbers = [
            i for i, f in enumerate(half, start=1) if len(f.data) < (f.orig_len or 0)
        ]
        assert anomaly.detail.startswith(f"{len(numbers)} packets cut short")
        assert anomaly.first_frame is not None and anomaly.last_frame is not None
        assert frame_number(anomaly.first_frame) == numbers[0]
        assert frame_number(anomaly.last_frame) == numbers[-1]
    [conn] = followed.connections
    gaps = conn.to_client.gaps
    assert len(gaps) == 8 and all(g.reason == "snaplen" for g in gaps)


@contextlib.contextmanager
def _through_pipe(data: bytes) -> Iterator[str]:
    """A path that reads ``data`` from a pipe, as ``cat f | ... /dev/stdin``
    gives it: no seek, no mmap, reads of at most the pipe's buffer."""
    read_fd, write_fd = os.pipe()

    def write() -> None:
        with contextlib.suppress(BrokenPipeError), os.fdopen(write_fd, "wb") as out:
            out.write(data)

    # A daemon, so that a reader failing early cannot hang the run.
    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        yield f"/proc/self/fd/{read_fd}"
    finally:
        os.close(read_fd)
        writer.join(timeout=5)


@pytest.mark.parametrize("form", ["pcap", "pcapng", "pcap.gz"])
def test_capture_read_from_a_pipe(form: str) -> None:
    """A capture arriving on a pipe, plain or gzipped and larger than the
    pipe's buffer, reads the same records as the file, with the bytes read
    counted."""
    conv = Conversation()
    conv.handshake()
    conv.send_to_server(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    conv.send_to_client(bytes(range(256)) * 1200)
    conv.close()
    frames = conv.frames()
    data = pcapng_bytes(frames) if form == "pcapng" else pcap_bytes(frames)
    if form.endswith(".gz"):
        data = gzip.compress(data)
    with _through_pipe(data) as path:
        records, info = _records(Path(path))
    assert [r[3] for r in records] == [f.data for f in frames]
    assert info.anomalies == []
    assert info.compressed == form.endswith(".gz")
    assert info.bytes_read == len(data)


def test_capture_read_from_a_pipe_is_reassembled() -> None:
    """A leg read from a pipe is reassembled like the file."""
    with _through_pipe(pcap_bytes(_conversation())) as path:
        followed = follow_files([path])
    assert bytes(followed.sinks[0].data[1]) == bytes(range(256)) * 40


def test_empty_pipe_is_a_capture_error() -> None:
    """A pipe that closes before a capture header is an error naming it."""
    with _through_pipe(b"") as path, pytest.raises(CaptureFormatError, match="short"):
        _records(Path(path))
