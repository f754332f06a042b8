"""Build small synthetic captures, for this package's tests and for yours.

Real captures are the best test input, but some cases (a conflicting
retransmission, a sequence-number wraparound, a pcapng with two link
types) are hard to provoke on purpose.  :class:`Conversation` writes the
TCP segments of one connection; :func:`write_pcap` and
:func:`write_pcapng` turn frames into files that Wireshark opens.

Example::

    conv = Conversation()
    conv.handshake()
    conv.send_to_server(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    conv.send_to_client(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nhi")
    conv.close()
    write_pcap("demo.pcap", conv.frames())
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

__all__ = [
    "Frame",
    "Conversation",
    "fcgi_record",
    "fcgi_params",
    "fcgi_request",
    "fcgi_response",
    "http_request",
    "http_response",
    "two_leg_exchanges",
    "one_exchange",
    "tcp_frame",
    "pcap_bytes",
    "pcapng_bytes",
    "write_pcap",
    "write_pcapng",
]

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

_LINKTYPES = {
    "EN10MB": 1,
    "RAW": 101,
    "NULL": 0,
    "LOOP": 108,
    "LINUX_SLL": 113,
    "LINUX_SLL2": 276,
}


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured frame: its bytes, time, link type and wire length."""

    data: bytes
    ts_ns: int
    linktype: int = 1
    orig_len: int | None = None

    def truncated(self, snaplen: int) -> Frame:
        """This frame as a capture with ``snaplen`` would have stored it."""
        return Frame(self.data[:snaplen], self.ts_ns, self.linktype, len(self.data))


def _checksum_free_ip(src: str, dst: str, payload: bytes) -> tuple[bytes, int]:
    """An IP header (checksums left zero: readers do not verify them)."""
    s = ipaddress.ip_address(src)
    d = ipaddress.ip_address(dst)
    if s.version == 4:
        header = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(payload),
            0,
            0x4000,
            64,
            6,
            0,
            s.packed,
            d.packed,
        )
        return header, 0x0800
    header = struct.pack(
        "!IHBB16s16s", 6 << 28, len(payload), 6, 64, s.packed, d.packed
    )
    return header, 0x86DD


def tcp_frame(
    src: str,
    sport: int,
    dst: str,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    payload: bytes = b"",
    *,
    linktype: str = "EN10MB",
    vlan: int | None = None,
    window: int = 65535,
) -> bytes:
    """One TCP segment framed for ``linktype`` (EN10MB, RAW, NULL, LOOP,
    LINUX_SLL or LINUX_SLL2), with an optional 802.1Q ``vlan`` tag."""
    tcp = (
        struct.pack(
            "!HHIIBBHHH",
            sport,
            dport,
            seq % (1 << 32),
            ack % (1 << 32),
            5 << 4,
            flags,
            window,
            0,
            0,
        )
        + payload
    )
    ip, ethertype = _checksum_free_ip(src, dst, tcp)
    packet = ip + tcp
    v6 = ethertype == 0x86DD
    if linktype == "EN10MB":
        tag = b"" if vlan is None else struct.pack("!HH", 0x8100, vlan)
        return (
            b"\x02\x00\x00\x00\x00\x02"
            + b"\x02\x00\x00\x00\x00\x01"
            + tag
            + struct.pack("!H", ethertype)
            + packet
        )
    if linktype == "RAW":
        return packet
    if linktype == "NULL":
        return struct.pack("<I", 30 if v6 else 2) + packet
    if linktype == "LOOP":
        return struct.pack(">I", 30 if v6 else 2) + packet
    if linktype == "LINUX_SLL":
        return struct.pack("!HHH8sH", 0, 772, 6, b"\0" * 8, ethertype) + packet
    if linktype == "LINUX_SLL2":
        return struct.pack("!HHIHBB8s", ethertype, 0, 1, 772, 0, 6, b"\0" * 8) + packet
    raise ValueError(f"unknown link type {linktype!r}")


@dataclass(slots=True)
class Conversation:
    """The segments of one TCP connection, written as they happen.

    Each ``send_*`` call cuts data into ``mss``-sized segments and moves
    the sequence numbers on; ``frames()`` returns them in order.  Tests
    may reorder, duplicate, drop or alter frames before writing them.
    """

    client: str = "10.0.0.1"
    client_port: int = 40000
    server: str = "10.0.0.2"
    server_port: int = 80
    client_isn: int = 1000
    server_isn: int = 500000
    linktype: str = "EN10MB"
    mss: int = 1448
    start_ns: int = 1_700_000_000_000_000_000
    step_ns: int = 1000
    _frames: list[Frame] = field(default_factory=list)
    _cseq: int = 0
    _sseq: int = 0

    def __post_init__(self) -> None:
        self._cseq = self.client_isn
        self._sseq = self.server_isn

    def _emit(
        self, to_server: bool, flags: int, payload: bytes = b"", seq: int | None = None
    ) -> Frame:
        if to_server:
            data = tcp_frame(
                self.client,
                self.client_port,
                self.server,
                self.server_port,
                self._cseq if seq is None else seq,
                self._sseq,
                flags,
                payload,
                linktype=self.linktype,
            )
        else:
            data = tcp_frame(
                self.server,
                self.server_port,
                self.client,
                self.client_port,
                self._sseq if seq is None else seq,
                self._cseq,
                flags,
                payload,
                linktype=self.linktype,
            )
        ts = self.start_ns + len(self._frames) * self.step_ns
        frame = Frame(data, ts, _LINKTYPES[self.linktype])
        self._frames.append(frame)
        return frame

    def handshake(self) -> None:
        """SYN, SYN-ACK, ACK."""
        self._emit(True, SYN)
        self._cseq += 1
        self._emit(False, SYN | ACK)
        self._sseq += 1
        self._emit(True, ACK)

    def _send(self, to_server: bool, data: bytes) -> list[Frame]:
        out = []
        for i in range(0, len(data), self.mss):
            piece = data[i : i + self.mss]
            out.append(self._emit(to_server, PSH | ACK, piece))
            if to_server:
                self._cseq += len(piece)
            else:
                self._sseq += len(piece)
        return out

    def send_to_server(self, data: bytes) -> list[Frame]:
        """Client sends ``data``; returns the frames written."""
        return self._send(True, data)

    def send_to_client(self, data: bytes) -> list[Frame]:
        """Server sends ``data``; returns the frames written."""
        return self._send(False, data)

    def ack_to_server(self) -> Frame:
        """The server acknowledges all it was sent (a pure ACK)."""
        return self._emit(False, ACK)

    def ack_to_client(self) -> Frame:
        """The client acknowledges all it was sent (a pure ACK)."""
        return self._emit(True, ACK)

    def raw(
        self, to_server: bool, seq_offset: int, payload: bytes, flags: int = PSH | ACK
    ) -> Frame:
        """A segment at stream offset ``seq_offset`` (for retransmissions)."""
        isn = self.client_isn if to_server else self.server_isn
        return self._emit(to_server, flags, payload, seq=isn + 1 + seq_offset)

    def close(self) -> None:
        """FIN from the client, FIN from the server, final ACK."""
        self._emit(True, FIN | ACK)
        self._cseq += 1
        self._emit(False, FIN | ACK)
        self._sseq += 1
        self._emit(True, ACK)

    def frames(self) -> list[Frame]:
        return list(self._frames)


def pcap_bytes(
    frames: list[Frame],
    *,
    nanosecond: bool = False,
    big_endian: bool = False,
    snaplen: int = 262144,
) -> bytes:
    """A classic pcap file holding ``frames`` (all of one link type)."""
    order = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    linktype = frames[0].linktype if frames else 1
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for f in frames:
        sec, ns = divmod(f.ts_ns, 1_000_000_000)
        frac = ns if nanosecond else ns // 1000
        orig = f.orig_len if f.orig_len is not None else len(f.data)
        out.append(struct.pack(order + "IIII", sec, frac, len(f.data), orig))
        out.append(f.data)
    return b"".join(out)


def _block(block_type: int, body: bytes, order: str) -> bytes:
    body += b"\0" * (-len(body) % 4)
    length = len(body) + 12
    return (
        struct.pack(order + "II", block_type, length)
        + body
        + struct.pack(order + "I", length)
    )


def pcapng_bytes(
    frames: list[Frame],
    *,
    big_endian: bool = False,
    tsresol: int = 6,
    simple: bool = False,
) -> bytes:
    """A pcapng file: one interface per link type met, in order of use.

    ``tsresol`` is the if_tsresol option (6: microseconds, 9: ns);
    ``simple`` writes simple packet blocks (no timestamps, interface 0).
    """
    order = ">" if big_endian else "<"
    out = [_block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1), order)]
    ifaces: dict[int, int] = {}
    for f in frames:
        if f.linktype not in ifaces:
            ifaces[f.linktype] = len(ifaces)
            opt = struct.pack(order + "HHB3x", 9, 1, tsresol) + struct.pack(
                order + "HH", 0, 0
            )
            out.append(
                _block(
                    1, struct.pack(order + "HHI", f.linktype, 0, 262144) + opt, order
                )
            )
        orig = f.orig_len if f.orig_len is not None else len(f.data)
        if simple:
            out.append(_block(3, struct.pack(order + "I", orig) + f.data, order))
            continue
        ticks = f.ts_ns // (10 ** (9 - tsresol))
        out.append(
            _block(
                6,
                struct.pack(
                    order + "IIIII",
                    ifaces[f.linktype],
                    ticks >> 32,
                    ticks & 0xFFFFFFFF,
                    len(f.data),
                    orig,
                )
                + f.data,
                order,
            )
        )
    return b"".join(out)


def write_pcap(path: str, frames: list[Frame], **options: bool | int) -> None:
    """Write ``frames`` to ``path`` as pcap (see :func:`pcap_bytes`)."""
    with open(path, "wb") as out:
        out.write(pcap_bytes(frames, **options))  # type: ignore[arg-type]


def write_pcapng(path: str, frames: list[Frame], **options: bool | int) -> None:
    """Write ``frames`` to ``path`` as pcapng (see :func:`pcapng_bytes`)."""
    with open(path, "wb") as out:
        out.write(pcapng_bytes(frames, **options))  # type: ignore[arg-type]


# -- FastCGI and HTTP message bytes ----------------------------------------

FCGI_BEGIN_REQUEST, FCGI_END_REQUEST, FCGI_PARAMS = 1, 3, 4
FCGI_STDIN, FCGI_STDOUT, FCGI_STDERR = 5, 6, 7

#: Largest content of one FastCGI record (the length field is 16 bits).
FCGI_MAX_CONTENT = 0xFFFF


def fcgi_record(
    rtype: int, request_id: int, content: bytes = b"", padding: int = 0
) -> bytes:
    """One FastCGI 1.0 record (section 3.3): header, content, padding."""
    return (
        struct.pack("!BBHHBx", 1, rtype, request_id, len(content), padding)
        + content
        + b"\0" * padding
    )


def fcgi_params(params: dict[str, str]) -> bytes:
    """Name-value pairs (section 3.4), with 1- or 4-byte lengths."""
    out = []
    for name, value in params.items():
        for text in (name, value):
            n = len(text.encode("latin-1"))
            out.append(bytes([n]) if n < 128 else struct.pack("!I", n | 0x80000000))
        out.append(name.encode("latin-1") + value.encode("latin-1"))
    return b"".join(out)


def _records(
    rtype: int, request_id: int, data: bytes, size: int = FCGI_MAX_CONTENT
) -> bytes:
    parts = [
        fcgi_record(
            rtype, request_id, data[i : i + size], -min(size, len(data) - i) % 8
        )
        for i in range(0, len(data), size)
    ]
    return b"".join(parts) + fcgi_record(rtype, request_id)


def fcgi_request(
    request_id: int, params: dict[str, str], stdin: bytes = b"", keep_conn: bool = False
) -> bytes:
    """What a web server sends: BEGIN_REQUEST, PARAMS, STDIN (responder)."""
    begin = struct.pack("!HB5x", 1, 1 if keep_conn else 0)
    return (
        fcgi_record(FCGI_BEGIN_REQUEST, request_id, begin)
        + _records(FCGI_PARAMS, request_id, fcgi_params(params))
        + _records(FCGI_STDIN, request_id, stdin)
    )


def fcgi_response(
    request_id: int,
    headers: bytes,
    body: bytes,
    *,
    stderr: bytes = b"",
    record_size: int = 8192,
    app_status: int = 0,
) -> bytes:
    """What an app sends: STDOUT records (CGI headers, blank line, body),
    optional STDERR, and END_REQUEST."""
    out = _records(FCGI_STDOUT, request_id, headers + b"\r\n" + body, record_size)
    if stderr:
        out += _records(FCGI_STDERR, request_id, stderr)
    return out + fcgi_record(
        FCGI_END_REQUEST, request_id, struct.pack("!IB3x", app_status, 0)
    )


def http_request(method: str, target: str, host: str = "example") -> bytes:
    """A minimal HTTP/1.1 request head."""
    return f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


def http_response(
    body: bytes, *, status: int = 200, headers: tuple[tuple[str, str], ...] = ()
) -> bytes:
    """An HTTP/1.1 response with Content-Length."""
    lines = [f"HTTP/1.1 {status} OK", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def two_leg_exchanges(
    bodies: list[bytes],
    *,
    client_bodies: list[bytes] | None = None,
    mss: int = 1448,
    upstream_mss: int | None = None,
    start_ns: int = 1_765_000_000 * 10**9,
    client_port: int = 51000,
    upstream_port: int = 42000,
) -> tuple[list[Frame], list[Frame]]:
    """Frames of both legs for one keep-alive client connection and one
    kept-alive FastCGI connection serving ``GET /n`` for each body.

    ``client_bodies`` (default: the same bodies) is what the client leg
    carries, so a test can corrupt one response between the legs.
    """
    client_bodies = bodies if client_bodies is None else client_bodies
    client = Conversation(
        client="192.0.2.10",
        client_port=client_port,
        server="192.0.2.1",
        server_port=80,
        mss=mss,
        start_ns=start_ns,
    )
    upstream = Conversation(
        client="127.0.0.1",
        client_port=upstream_port,
        server="127.0.0.1",
        server_port=9000,
        mss=upstream_mss or mss,
        start_ns=start_ns + 100_000,
    )
    client.handshake()
    upstream.handshake()
    for n, (body, seen) in enumerate(zip(bodies, client_bodies, strict=True)):
        uri = f"/n/{n}"
        client.send_to_server(http_request("GET", uri))
        upstream.send_to_server(
            fcgi_request(
                1,
                {
                    "REQUEST_METHOD": "GET",
                    "REQUEST_URI": uri,
                    "REMOTE_ADDR": "192.0.2.10",
                    "REMOTE_PORT": str(client_port),
                    "SCRIPT_NAME": "/n",
                },
                keep_conn=True,
            )
        )
        upstream.send_to_client(
            fcgi_response(1, b"Content-Type: application/octet-stream\r\n", body)
        )
        upstream.ack_to_client()
        for i, _ in enumerate(client.send_to_client(http_response(seen))):
            if i % 2:
                client.ack_to_client()
        client.ack_to_client()
    client.close()
    upstream.close()
    return client.frames(), upstream.frames()


def one_exchange(
    app: bytes,
    client: bytes,
    *,
    method: str = "GET",
    uri: str = "/x",
    params: dict[str, str] | None = None,
    start_ns: int = 1_765_000_000 * 10**9,
) -> tuple[list[Frame], list[Frame]]:
    """Frames of both legs of one exchange, with the app's and the
    client's bytes given whole, for damage :func:`two_leg_exchanges`
    cannot express (STDERR between STDOUT records, odd CGI headers, a
    web server that adds or rewrites headers).

    ``app`` is what the app sends on the FastCGI leg (build it with
    :func:`fcgi_response` or :func:`fcgi_record`), ``client`` what the
    client leg carries back (an HTTP response).  The FastCGI request
    names the client's endpoint in REMOTE_ADDR/REMOTE_PORT, as nginx
    does; ``params`` adds to or overrides its PARAMS.
    """
    conv = Conversation(
        client="192.0.2.10",
        client_port=51000,
        server="192.0.2.1",
        server_port=80,
        start_ns=start_ns,
    )
    upstream = Conversation(
        client="127.0.0.1",
        client_port=42000,
        server="127.0.0.1",
        server_port=9000,
        start_ns=start_ns + 100_000,
    )
    conv.handshake()
    upstream.handshake()
    conv.send_to_server(http_request(method, uri))
    fields = {
        "REQUEST_METHOD": method,
        "REQUEST_URI": uri,
        "REMOTE_ADDR": "192.0.2.10",
        "REMOTE_PORT": "51000",
    }
    fields.update(params or {})
    upstream.send_to_server(fcgi_request(1, fields))
    upstream.send_to_client(app)
    conv.send_to_client(client)
    conv.close()
    upstream.close()
    return conv.frames(), upstream.frames()
