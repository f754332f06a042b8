"""Regenerate every broken input file of this directory.

Run from the repository root::

    python tests/corpus/make_corpus.py

Each file is small (the largest, gzip-compressed, holds tens of KiB) and
is described, with the outcome the tests expect, in README.md beside
this script.  The output is deterministic for a given zlib.
"""

from __future__ import annotations

import gzip
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from fcgiforensics.testing import (  # noqa: E402
    ACK,
    PSH,
    Conversation,
    Frame,
    pcap_bytes,
    pcapng_bytes,
)

# gzip members are written with a fixed mtime so that a rebuild gives
# the same bytes.
_MTIME = 0

REQUEST = b"GET /page HTTP/1.1\r\nHost: corpus\r\nAccept-Encoding: gzip\r\n\r\n"
PAGE = b"<html><body>" + b"corpus page " * 200 + b"</body></html>\n"


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=_MTIME)


def _http_conversation(response: bytes, *, close: bool = True,
                       mss: int = 1448) -> list[Frame]:
    conv = Conversation(mss=mss)
    conv.handshake()
    conv.send_to_server(REQUEST)
    conv.ack_to_server()
    conv.send_to_client(response)
    conv.ack_to_client()
    if close:
        conv.close()
    return conv.frames()


def _ok_response(body: bytes = PAGE) -> bytes:
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    return head + body


def _plain_frames() -> list[Frame]:
    return _http_conversation(_ok_response())


# -- capture-level damage ------------------------------------------------


def pcap_header_truncated() -> bytes:
    """The 24-byte global header stops after 20 bytes."""
    return pcap_bytes(_plain_frames())[:20]


def pcap_last_record_truncated() -> bytes:
    """The last record's packet bytes stop halfway."""
    data = pcap_bytes(_plain_frames())
    last = _plain_frames()[-1]
    return data[:len(data) - len(last.data) // 2]


def pcap_record_header_truncated() -> bytes:
    """The file ends 7 bytes into the header of a record."""
    frames = _plain_frames()
    return pcap_bytes(frames) + struct.pack("<IIII", 1, 2, 3, 4)[:7]


def pcap_caplen_over_snaplen() -> bytes:
    """Snaplen 96 in the header, yet records up to 1.5 KiB long."""
    return pcap_bytes(_plain_frames(), snaplen=96)


def pcap_caplen_70mb() -> bytes:
    """After two good records, one whose caplen claims 70,000,000 bytes."""
    frames = _plain_frames()
    good = pcap_bytes(frames[:2])
    bogus = struct.pack("<IIII", 1_700_000_000, 0, 70_000_000, 70_000_000)
    return good + bogus + frames[2].data


def _pcapng_sections(frames: list[Frame]) -> tuple[bytes, list[bytes]]:
    """The section header block and every later block of a pcapng file."""
    data = pcapng_bytes(frames)
    blocks: list[bytes] = []
    pos = 0
    while pos < len(data):
        length = struct.unpack_from("<I", data, pos + 4)[0]
        blocks.append(data[pos:pos + length])
        pos += length
    return blocks[0], blocks[1:]


def _block(block_type: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    length = len(body) + 12
    return struct.pack("<II", block_type, length) + body + \
        struct.pack("<I", length)


def pcapng_unknown_block() -> bytes:
    """A block of type 0x4242 (unassigned) sits between two packets."""
    shb, rest = _pcapng_sections(_plain_frames())
    odd = _block(0x4242, b"not a block anyone defined")
    return shb + rest[0] + rest[1] + odd + b"".join(rest[2:])


def pcapng_bad_byte_order() -> bytes:
    """The section header's byte-order magic is 0xdeadbeef."""
    shb, rest = _pcapng_sections(_plain_frames())
    shb = shb[:8] + b"\xef\xbe\xad\xde" + shb[12:]
    return shb + b"".join(rest)


def pcapng_bad_byte_order_second_section() -> bytes:
    """A good section of packets, then a section header with a bad magic."""
    frames = _plain_frames()
    shb, rest = _pcapng_sections(frames)
    bad = shb[:8] + b"\xef\xbe\xad\xde" + shb[12:]
    return shb + b"".join(rest) + bad + b"".join(rest)


def pcapng_short_idb() -> bytes:
    """An interface description block with an empty body (needs 8 bytes)."""
    shb, rest = _pcapng_sections(_plain_frames())
    return shb + _block(1, b"") + b"".join(rest)


def pcapng_short_epb() -> bytes:
    """After the interface, a packet block whose body is 4 bytes, not 20+."""
    shb, rest = _pcapng_sections(_plain_frames())
    return shb + rest[0] + _block(6, b"\0\0\0\0") + b"".join(rest[1:])


def pcapng_timestamp_overflow() -> bytes:
    """Packets stamped near 2^64 microseconds, past what int64 ns holds."""
    frames = [Frame(f.data, (2**64 - 1000 + i) * 1000, f.linktype)
              for i, f in enumerate(_plain_frames())]
    return pcapng_bytes(frames)


def empty() -> bytes:
    """Zero bytes."""
    return b""


def text() -> bytes:
    """A text file under a capture's name."""
    return b"this is a note about the incident, not a capture\n" * 4


def not_a_capture_gz() -> bytes:
    """A valid gzip member whose content is text, not a capture."""
    return _gzip(text())


def truncated_pcap_gz() -> bytes:
    """A gzip-compressed pcap whose compressed stream is cut at 60%."""
    conv = Conversation()
    conv.handshake()
    for i in range(40):
        conv.send_to_server(REQUEST)
        conv.send_to_client(_ok_response(PAGE + str(i).encode()))
    conv.close()
    whole = _gzip(pcap_bytes(conv.frames()))
    return whole[:len(whole) * 6 // 10]


# -- protocol-level damage -----------------------------------------------

#: Uncompressed size of the gzip bomb's body.
BOMB_BYTES = 1 << 30


def _gzip_zeros(size: int) -> bytes:
    """gzip of ``size`` zero bytes (a multiple of 1 MiB), built cheaply.

    After a full flush deflate forgets its history, so every later
    1 MiB block of zeros compresses to the same bytes: three blocks are
    compressed and the middle one repeated.  The member is framed by
    hand (RFC 1952 section 2.3) around the raw deflate data.
    """
    block = bytes(1 << 20)
    count = size // len(block)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    middle = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    last = comp.compress(block) + comp.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(block, crc)
    header = b"\x1f\x8b\x08\x00" + struct.pack("<I", _MTIME) + b"\x02\xff"
    trailer = struct.pack("<II", crc, size & 0xFFFFFFFF)
    return header + first + middle * (count - 2) + last + trailer


def http_gzip_bomb() -> bytes:
    """A 200 response, Content-Encoding: gzip, 1 GiB of zeros in ~1 MiB."""
    body = _gzip_zeros(BOMB_BYTES)
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
            b"Content-Encoding: gzip\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    frames = _http_conversation(head + body, mss=16000)
    return _gzip(pcap_bytes(frames))


def http_chunk_size_2pow63() -> bytes:
    """A chunked response whose second chunk claims 2^63 bytes."""
    response = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n" + b"%x\r\n" % (1 << 63) + b"more bytes\r\n"
                b"0\r\n\r\n")
    return pcap_bytes(_http_conversation(response))


def http_head_unterminated() -> bytes:
    """The response head never reaches its blank line before the FIN."""
    response = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                b"X-Request-Id: 1234\r\nContent-Len")
    return pcap_bytes(_http_conversation(response))


def http_head_endless() -> bytes:
    """200 field lines of 400 bytes (80 KB), over the 64 KiB head limit."""
    lines = [b"HTTP/1.1 200 OK\r\n"]
    for i in range(200):
        lines.append(b"X-Filler-%03d: " % i + b"f" * 384 + b"\r\n")
    return _gzip(pcap_bytes(_http_conversation(b"".join(lines))))


def _fcgi_record(rtype: int, content: bytes, request_id: int = 1,
                 padding: int = 0, length: int | None = None) -> bytes:
    """One FastCGI 1.0 record (spec section 3.3)."""
    size = len(content) if length is None else length
    return struct.pack("!BBHHBx", 1, rtype, request_id, size, padding) + \
        content + b"\0" * padding


def _fcgi_params(pairs: list[tuple[bytes, bytes]]) -> bytes:
    out = b""
    for name, value in pairs:
        out += bytes([len(name), len(value)]) + name + value
    return out


def _fcgi_request() -> bytes:
    begin = _fcgi_record(1, struct.pack("!HB5x", 1, 0))
    params = _fcgi_params([(b"SCRIPT_FILENAME", b"/srv/index.php"),
                           (b"REQUEST_METHOD", b"GET"),
                           (b"REQUEST_URI", b"/page")])
    return (begin + _fcgi_record(4, params) + _fcgi_record(4, b"")
            + _fcgi_record(5, b""))


def _fcgi_conversation(response: bytes, *, mss: int = 1448) -> list[Frame]:
    conv = Conversation(server_port=9000, mss=mss)
    conv.handshake()
    conv.send_to_server(_fcgi_request())
    conv.ack_to_server()
    conv.send_to_client(response)
    conv.ack_to_client()
    conv.close()
    return conv.frames()


def _fcgi_end() -> bytes:
    return _fcgi_record(3, struct.pack("!IB3x", 0, 0))


def fcgi_content_past_stream() -> bytes:
    """A STDOUT record announcing 65535 bytes; 100 follow, then the FIN."""
    head = b"Status: 200 OK\r\nContent-Type: text/html\r\n\r\n"
    content = head + b"x" * (100 - len(head))
    record = _fcgi_record(6, content, length=0xFFFF)
    return pcap_bytes(_fcgi_conversation(record))


def fcgi_10000_tiny_records() -> bytes:
    """The response body arrives as 10,000 STDOUT records of 1 byte each."""
    head = b"Content-Type: text/plain\r\n\r\n"
    records = [_fcgi_record(6, head)]
    records += [_fcgi_record(6, b"abcdefghij"[i % 10:i % 10 + 1])
                for i in range(10_000)]
    records += [_fcgi_record(6, b""), _fcgi_end()]
    return pcap_bytes(_fcgi_conversation(b"".join(records), mss=60000))


# -- TCP-level damage ----------------------------------------------------

#: Bytes per far-ahead segment; an IPv4 total length must fit 16 bits.
OOW_SEGMENT = 65000

#: Segments sent far ahead: just past 64 MiB of waiting bytes, the
#: reassembler's default pending limit.
OOW_SEGMENTS = 1100

#: Stream distance between two far-ahead segments, so that the last one
#: lands about 1 GiB past the hole (under 2^31: no sequence ambiguity).
OOW_STRIDE = (1 << 30) // OOW_SEGMENTS


def tcp_out_of_window_1gb() -> bytes:
    """After a response head, 1100 x 65000-byte segments spread over 1 GiB
    ahead of a hole that never fills (gzip keeps the file tiny)."""
    body_len = 1 << 30
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: " + str(body_len).encode() + b"\r\n\r\n")
    conv = Conversation()
    conv.handshake()
    conv.send_to_server(REQUEST)
    conv.ack_to_server()
    conv.send_to_client(head)
    payload = bytes(OOW_SEGMENT)
    start = len(head) + 1_000_000
    for i in range(OOW_SEGMENTS):
        conv.raw(False, start + i * OOW_STRIDE, payload, PSH | ACK)
    return _gzip(pcap_bytes(conv.frames()))


FILES: dict[str, Callable[[], bytes]] = {
    "pcap-header-truncated.pcap": pcap_header_truncated,
    "pcap-last-record-truncated.pcap": pcap_last_record_truncated,
    "pcap-record-header-truncated.pcap": pcap_record_header_truncated,
    "pcap-caplen-over-snaplen.pcap": pcap_caplen_over_snaplen,
    "pcap-caplen-70mb.pcap": pcap_caplen_70mb,
    "pcapng-unknown-block.pcapng": pcapng_unknown_block,
    "pcapng-bad-byte-order.pcapng": pcapng_bad_byte_order,
    "pcapng-bad-byte-order-second-section.pcapng":
        pcapng_bad_byte_order_second_section,
    "pcapng-short-idb.pcapng": pcapng_short_idb,
    "pcapng-short-epb.pcapng": pcapng_short_epb,
    "pcapng-timestamp-overflow.pcapng": pcapng_timestamp_overflow,
    "empty.pcap": empty,
    "text.pcap": text,
    "not-a-capture.gz": not_a_capture_gz,
    "truncated.pcap.gz": truncated_pcap_gz,
    "http-gzip-bomb.pcap.gz": http_gzip_bomb,
    "http-chunk-size-2pow63.pcap": http_chunk_size_2pow63,
    "http-head-unterminated.pcap": http_head_unterminated,
    "http-head-endless.pcap.gz": http_head_endless,
    "fcgi-content-past-stream.pcap": fcgi_content_past_stream,
    "fcgi-10000-tiny-records.pcap": fcgi_10000_tiny_records,
    "tcp-out-of-window-1gb.pcap.gz": tcp_out_of_window_1gb,
}


def main() -> None:
    for name, build in FILES.items():
        data = build()
        (HERE / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
