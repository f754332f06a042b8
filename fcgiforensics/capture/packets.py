"""From a captured frame to a TCP segment: link layer, IPv4/IPv6, TCP.

One function, :func:`decode_tcp`, does it with ``struct`` on the frame
bytes.  It is the hottest code of the tool (it runs once per packet), so
it avoids per-layer objects; see README "Performance" for the
measurement behind that choice.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

__all__ = [
    "LINKTYPE_NAMES",
    "TcpSegment",
    "NotTcp",
    "decode_tcp",
]

# Link types from the tcpdump.org registry that this tool reads.
LINKTYPE_NULL = 0
LINKTYPE_EN10MB = 1
LINKTYPE_RAW = 101
LINKTYPE_RAW_OLD = 12
LINKTYPE_RAW_OLD2 = 14
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

LINKTYPE_NAMES = {
    LINKTYPE_NULL: "NULL",
    LINKTYPE_EN10MB: "EN10MB",
    LINKTYPE_RAW: "RAW",
    LINKTYPE_RAW_OLD: "RAW",
    LINKTYPE_RAW_OLD2: "RAW",
    LINKTYPE_LOOP: "LOOP",
    LINKTYPE_LINUX_SLL: "LINUX_SLL",
    LINKTYPE_IPV4: "IPV4",
    LINKTYPE_IPV6: "IPV6",
    LINKTYPE_LINUX_SLL2: "LINUX_SLL2",
}

_ETH_IPV4 = 0x0800
_ETH_IPV6 = 0x86DD
_ETH_VLAN_TAGS = (0x8100, 0x88A8, 0x9100)

# BSD loopback address families: AF_INET is 2 everywhere; AF_INET6 is
# 24 (NetBSD/OpenBSD), 28 (FreeBSD), 30 (macOS) and 10 on Linux.
_AF_INET6 = (24, 28, 30, 10)

# IPv6 extension headers that are walked over (RFC 8200 section 4).
_IPV6_EXT = {0, 43, 60, 135, 139, 140}
_IPV6_FRAGMENT = 44
_IPV6_AH = 51

_U16 = struct.Struct("!H")
_IPV4 = struct.Struct("!BxHHHBB")
_TCP = struct.Struct("!HHIIBBH")
_NULL_LE = struct.Struct("<I")
# Ethernet, IPv4 without options and the TCP header, in one unpack: the
# frame nearly every capture is made of (see decode_tcp's fast path).
_ETH_IPV4_TCP = struct.Struct("!12xHBxH2xHxB2x4s4sHHIIBBH")
_NULL_BE = struct.Struct(">I")

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10


class TcpSegment(NamedTuple):
    """One TCP segment as captured.

    ``payload`` holds the captured bytes; ``missing`` counts payload
    bytes that the IP length announces but the capture cut off (snaplen).
    Addresses are the raw 4 or 16 address bytes.
    """

    src: bytes
    sport: int
    dst: bytes
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    payload: bytes
    missing: int


class NotTcp(NamedTuple):
    """A frame that carries no TCP segment, and why (for counting)."""

    reason: str  # "other" | "fragment" | "linktype" | "malformed"
    detail: str


_OTHER = NotTcp("other", "")

# NamedTuple's generated __new__ is Python code; building the tuple through
# tuple.__new__ gives the same object from C, once per packet.
_new_tuple = tuple.__new__


def decode_tcp(linktype: int, frame: bytes, origlen: int) -> TcpSegment | NotTcp:
    """Decode ``frame`` of ``linktype`` down to its TCP segment.

    ``origlen`` is the length on the wire; a smaller ``len(frame)`` means
    snaplen truncation, reported through ``TcpSegment.missing``.
    """
    # Fast path: Ethernet, IPv4 with no options, unfragmented TCP.  Every
    # field comes from one unpack; anything else takes the steps below.
    if linktype == LINKTYPE_EN10MB and len(frame) >= 54:
        (
            ethertype,
            vhl,
            total,
            frag,
            proto,
            src,
            dst,
            sport,
            dport,
            seq,
            ack,
            off,
            flags,
            window,
        ) = _ETH_IPV4_TCP.unpack_from(frame)
        if (
            ethertype == _ETH_IPV4
            and vhl == 0x45
            and proto == 6
            and not frag & 0x3FFF
            and off >= 0x50
            and total >= 40
        ):
            start = 34 + (off >> 4) * 4
            ip_end = 14 + total
            if start <= ip_end:
                return _segment(
                    frame,
                    origlen,
                    start,
                    ip_end,
                    src,
                    sport,
                    dst,
                    dport,
                    seq,
                    ack,
                    flags,
                    window,
                )

    # Step 1: the link layer gives the network protocol and where it starts.
    if linktype == LINKTYPE_EN10MB:
        if len(frame) < 14:
            return NotTcp("malformed", "Ethernet header cut short")
        ethertype = _U16.unpack_from(frame, 12)[0]
        pos = 14
        while ethertype in _ETH_VLAN_TAGS:  # IEEE 802.1Q / 802.1ad tags
            if len(frame) < pos + 4:
                return NotTcp("malformed", "VLAN tag cut short")
            ethertype = _U16.unpack_from(frame, pos + 2)[0]
            pos += 4
    elif linktype == LINKTYPE_LINUX_SLL2:
        if len(frame) < 20:
            return NotTcp("malformed", "SLL2 header cut short")
        ethertype = _U16.unpack_from(frame, 0)[0]
        pos = 20
    elif linktype == LINKTYPE_LINUX_SLL:
        if len(frame) < 16:
            return NotTcp("malformed", "SLL header cut short")
        ethertype = _U16.unpack_from(frame, 14)[0]
        pos = 16
    elif linktype == LINKTYPE_NULL or linktype == LINKTYPE_LOOP:
        if len(frame) < 4:
            return NotTcp("malformed", "loopback header cut short")
        # NULL stores the family in the capturing host's byte order,
        # LOOP in network order; accept either reading.
        family = _NULL_BE.unpack_from(frame, 0)[0]
        if linktype == LINKTYPE_NULL and family > 0xFFFF:
            family = _NULL_LE.unpack_from(frame, 0)[0]
        if family == 2:
            ethertype = _ETH_IPV4
        elif family in _AF_INET6:
            ethertype = _ETH_IPV6
        else:
            return _OTHER
        pos = 4
    elif linktype in (
        LINKTYPE_RAW,
        LINKTYPE_RAW_OLD,
        LINKTYPE_RAW_OLD2,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
    ):
        if not frame:
            return NotTcp("malformed", "empty raw IP packet")
        ethertype = _ETH_IPV6 if frame[0] >> 4 == 6 else _ETH_IPV4
        pos = 0
    else:
        return NotTcp("linktype", f"link type {linktype}")

    # Step 2: IPv4 or IPv6, to the TCP header (RFC 791, RFC 8200).
    if ethertype == _ETH_IPV4:
        if len(frame) < pos + 20:
            return NotTcp("malformed", "IPv4 header cut short")
        vhl, total, _, frag, _, proto = _IPV4.unpack_from(frame, pos)
        if proto != 6:
            return _OTHER
        ihl = (vhl & 0x0F) * 4
        if vhl >> 4 != 4 or ihl < 20 or total < ihl:
            return NotTcp("malformed", f"IPv4 header length {ihl}, total {total}")
        if frag & 0x3FFF:
            return NotTcp("fragment", "IPv4 fragment")
        src = frame[pos + 12 : pos + 16]
        dst = frame[pos + 16 : pos + 20]
        ip_end = pos + total
        pos += ihl
    elif ethertype == _ETH_IPV6:
        if len(frame) < pos + 40:
            return NotTcp("malformed", "IPv6 header cut short")
        plen = _U16.unpack_from(frame, pos + 4)[0]
        nxt = frame[pos + 6]
        src = frame[pos + 8 : pos + 24]
        dst = frame[pos + 24 : pos + 40]
        ip_end = pos + 40 + plen
        pos += 40
        while nxt != 6:
            if nxt in _IPV6_EXT or nxt == _IPV6_AH:
                if len(frame) < pos + 2:
                    return NotTcp("malformed", "IPv6 extension header cut short")
                size = (
                    (frame[pos + 1] + 2) * 4
                    if nxt == _IPV6_AH
                    else (frame[pos + 1] + 1) * 8
                )
                nxt = frame[pos]
                pos += size
            elif nxt == _IPV6_FRAGMENT:
                return NotTcp("fragment", "IPv6 fragment")
            else:
                return _OTHER
    else:
        return _OTHER

    # Step 3: TCP (RFC 9293 section 3.1); the payload ends where IP says.
    if len(frame) < pos + 20:
        return NotTcp("malformed", "TCP header cut short")
    sport, dport, seq, ack, off, flags, window = _TCP.unpack_from(frame, pos)
    doff = (off >> 4) * 4
    if doff < 20 or pos + doff > ip_end:
        return NotTcp("malformed", f"TCP data offset {doff}")
    return _segment(
        frame,
        origlen,
        pos + doff,
        ip_end,
        src,
        sport,
        dst,
        dport,
        seq,
        ack,
        flags,
        window,
    )


def _segment(
    frame: bytes,
    origlen: int,
    start: int,
    ip_end: int,
    src: bytes,
    sport: int,
    dst: bytes,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
) -> TcpSegment:
    """The segment whose payload runs from ``start`` to where IP says it
    ends, ``ip_end``; what the capture cut off is counted as missing."""
    captured_end = max(min(ip_end, len(frame)), start)
    missing = ip_end - captured_end
    if ip_end > len(frame) and origlen <= len(frame):
        # The IP length claims more than the whole frame and the frame was
        # not cut by snaplen: the header lies.  Trust the bytes present.
        missing = 0
    return _new_tuple(
        TcpSegment,
        (
            src,
            sport,
            dst,
            dport,
            seq,
            ack,
            flags & 0x3F,
            window,
            frame[start:captured_end],
            missing,
        ),
    )
