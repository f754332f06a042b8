"""Frame and file forms the reader must take apart exactly: stacked VLAN
tags, IPv4 options, IPv6 extension headers, and pcapng interfaces that
each keep time their own way."""

from __future__ import annotations

import struct
from pathlib import Path

from fcgiforensics.capture.packets import NotTcp, TcpSegment, decode_tcp
from fcgiforensics.capture.records import CaptureInfo, read_records

PAYLOAD = b"GET / HTTP/1.1\r\n\r\n"
SRC4, DST4 = bytes([192, 0, 2, 10]), bytes([192, 0, 2, 1])
SRC6, DST6 = bytes(15) + b"\x01", bytes(15) + b"\x02"


def _tcp(payload: bytes = PAYLOAD) -> bytes:
    # sport, dport, seq, ack, data offset 5, PSH|ACK, window, sum, urgent
    return struct.pack("!HHIIBBHHH", 51000, 80, 1000, 2000, 5 << 4, 0x18, 512, 0, 0) + (
        payload
    )


def _ipv4(options: bytes = b"") -> bytes:
    tcp = _tcp()
    ihl = 5 + len(options) // 4
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        0,
        ihl * 4 + len(tcp),
        0,
        0x4000,
        64,
        6,
        0,
        SRC4,
        DST4,
    )
    return header + options + tcp


def _ipv6(*extensions: tuple[int, bytes]) -> bytes:
    """IPv6 with extension headers given as (their type, their bytes after
    the next-header field); each names the next one."""
    tcp = _tcp()
    kinds = [kind for kind, _ in extensions] + [6]
    chain = b"".join(
        bytes([kinds[i + 1]]) + body for i, (_, body) in enumerate(extensions)
    )
    header = struct.pack(
        "!IHBB16s16s", 6 << 28, len(chain) + len(tcp), kinds[0], 64, SRC6, DST6
    )
    return header + chain + tcp


def _segment(frame: bytes, linktype: int = 1) -> TcpSegment:
    seg = decode_tcp(linktype, frame, len(frame))
    assert not isinstance(seg, NotTcp), seg
    return seg


def test_stacked_8021ad_and_8021q_tags_are_skipped() -> None:
    """An 802.1ad outer tag over an 802.1Q inner tag (QinQ) still leads to
    the TCP segment and its payload."""
    eth = b"\x02" * 6 + b"\x04" * 6
    tags = struct.pack("!HH", 0x88A8, 100) + struct.pack("!HH", 0x8100, 200)
    seg = _segment(eth + tags + struct.pack("!H", 0x0800) + _ipv4())
    assert (seg.src, seg.sport, seg.dport) == (SRC4, 51000, 80)
    assert seg.payload == PAYLOAD


def test_ipv4_options_move_the_tcp_header() -> None:
    """An IPv4 header with options (IHL 7) is followed to TCP where IHL
    says, on the fast Ethernet path and on raw IP."""
    options = b"\x01\x01\x01\x00" + b"\x44\x04\x05\x00"  # NOPs, timestamp
    packet = _ipv4(options)
    eth = b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", 0x0800)
    for frame, linktype in ((eth + packet, 1), (packet, 101)):
        seg = _segment(frame, linktype)
        assert seg.payload == PAYLOAD and seg.seq == 1000


def test_ipv6_extension_headers_are_walked_to_tcp() -> None:
    """Hop-by-hop options, a routing header, a destination-options header
    and an authentication header (RFC 8200, RFC 4302) are stepped over."""
    hop_by_hop = (0, b"\x00" + b"\x01\x04\x00\x00\x00\x00")  # 8 bytes
    routing = (43, b"\x00" + b"\x00\x00" + bytes(4))  # type 0, 8 bytes
    dest = (60, b"\x00" + bytes(6))
    auth = (51, b"\x04" + bytes(2) + bytes(8) + bytes(12))  # 24 bytes: len 4
    packet = _ipv6(hop_by_hop, routing, dest, auth)
    seg = _segment(packet, 101)
    assert (seg.src, seg.dst) == (SRC6, DST6)
    assert seg.payload == PAYLOAD


def _block(block_type: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return (
        struct.pack("<II", block_type, len(body) + 12)
        + body
        + struct.pack("<I", len(body) + 12)
    )


def _idb(linktype: int, *options: tuple[int, bytes]) -> bytes:
    opts = b"".join(
        struct.pack("<HH", code, len(v)) + v + b"\0" * (-len(v) % 4)
        for code, v in options
    )
    return _block(1, struct.pack("<HHI", linktype, 0, 65535) + opts + bytes(4))


def _epb(iface: int, ticks: int, data: bytes) -> bytes:
    head = struct.pack(
        "<IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data)
    )
    return _block(6, head + data)


def test_each_pcapng_interface_keeps_its_own_time_and_link_type(
    tmp_path: Path,
) -> None:
    """Interface 0 counts microseconds, interface 1 nanoseconds from an
    if_tsoffset of 1000 s, interface 2 in 2^-10 s; each packet's time and
    link type follow its own interface."""
    shb = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    raw, eth = 101, 1
    frame_eth = b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", 0x0800) + _ipv4()
    data = (
        shb
        + _idb(eth)  # no if_tsresol: microseconds
        + _idb(raw, (9, b"\x09"), (14, struct.pack("<q", 1000)))
        + _idb(raw, (9, b"\x8a"))  # 2^-10 s
        + _epb(0, 1_700_000_000_123_456, frame_eth)
        + _epb(1, 5_000_000_007, _ipv4())
        + _epb(2, 3 * 1024 + 512, _ipv4())
    )
    path = tmp_path / "ifaces.pcapng"
    path.write_bytes(data)
    info = CaptureInfo(str(path))
    records = list(read_records(str(path), info, 0))
    assert [(r[0], r[1], r[2]) for r in records] == [
        (1, 1_700_000_000_123_456_000, eth),
        (2, 1005 * 10**9 + 7, raw),
        (3, 3_500_000_000, raw),
    ]
    assert info.anomalies == []
    for _, _, linktype, frame, _ in records:
        assert _segment(frame, linktype).payload == PAYLOAD
