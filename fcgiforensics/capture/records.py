"""Read capture files (pcap, pcapng, either gzip-compressed) into records.

This is the edge where files are opened.  A reader yields one
:class:`RawRecord`-shaped tuple per captured packet and collects the
damage it meets as :class:`~fcgiforensics.anomalies.Anomaly` objects;
it raises :class:`~fcgiforensics.errors.CaptureFormatError` only when the
file is not a capture at all.

The file is read in large blocks, never whole, so memory stays bounded
by :data:`READ_BLOCK` whatever the capture's size.  A regular file is
memory-mapped; anything else (a pipe, ``/dev/stdin``, a FIFO) is read
forward as a stream, never seeked.
"""

from __future__ import annotations

import gzip
import io
import mmap
import os
import stat
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..anomalies import Anomaly
from ..errors import CaptureError, CaptureFormatError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = [
    "READ_BLOCK",
    "MAX_RECORD",
    "CaptureInfo",
    "RecordTuple",
    "read_records",
]

#: Bytes read from the file at a time.  Large enough that the per-read
#: cost vanishes, small enough to keep a multi-GB capture out of memory.
READ_BLOCK = 8 * 1024 * 1024

#: A record whose captured length exceeds this is treated as damage, not
#: data.  libpcap's own ceiling is 256 KiB (MAXIMUM_SNAPLEN); pcapng
#: blocks may be a little larger, so allow 1 MiB before calling it absurd.
MAX_RECORD = 1024 * 1024

# (frame number, timestamp ns, link type, packet bytes, original length)
RecordTuple = tuple[int, int, int, bytes, int]

_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),  # little endian, microseconds
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),  # nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(slots=True)
class CaptureInfo:
    """What a reader learnt about one file while reading it."""

    path: str
    format: str = ""
    compressed: bool = False
    link_types: list[int] = field(default_factory=list)
    records: int = 0
    bytes_read: int = 0
    anomalies: list[Anomaly] = field(default_factory=list)

    def note(
        self,
        name: str,
        detail: str,
        *,
        frame: int | None = None,
        offset: int | None = None,
    ) -> None:
        """Record damage found at ``frame`` / file ``offset``."""
        self.anomalies.append(
            Anomaly(
                name,
                detail,
                capture=self.path,
                first_frame=frame,
                last_frame=frame,
                file_offset=offset,
            )
        )


def _read_up_to(file: io.BufferedIOBase, size: int) -> tuple[bytes, bool]:
    """Up to ``size`` bytes of ``file``; True if a compressed stream ended
    early, in which case what was decompressed before the cut is kept."""
    parts: list[bytes] = []
    got = 0
    while got < size:
        try:
            chunk = file.read1(size - got)
        except EOFError:
            return b"".join(parts), True
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts), False


class _BlockReader:
    """A forward-only window over a file, refilled in :data:`READ_BLOCK` steps.

    ``buf[pos:]`` holds unread bytes; ``base`` is the file offset of
    ``buf[0]``.  ``need(n)`` makes sure ``n`` bytes are available.
    """

    __slots__ = (
        "_file",
        "_raw",
        "_info",
        "buf",
        "pos",
        "base",
        "eof",
        "_released",
        "cut_short",
    )

    def __init__(
        self,
        file: io.BufferedIOBase,
        first: bytes | mmap.mmap,
        info: CaptureInfo,
        raw: io.BufferedIOBase,
    ) -> None:
        self._file = file
        self._raw = raw
        self._info = info
        info.bytes_read = raw.tell()
        self.buf = first
        self.pos = 0
        self.base = 0
        self._released = 0
        self.cut_short = False  # a compressed stream ended before its end
        # A mapped file is all there from the start: nothing to refill.
        self.eof = isinstance(first, mmap.mmap)

    def release(self) -> None:
        """Let the kernel drop mapped pages already read (bounded RSS).

        Records are copied out of the map as they are read, so the pages
        behind ``pos`` are never looked at again.
        """
        buf = self.buf
        if not isinstance(buf, mmap.mmap):
            return
        upto = self.pos - self.pos % mmap.PAGESIZE
        if upto - self._released >= READ_BLOCK:
            buf.madvise(mmap.MADV_DONTNEED, self._released, upto - self._released)
            self._released = upto
            self._info.bytes_read = upto

    def need(self, n: int) -> bool:
        """True when ``n`` unread bytes are available (reads more if needed)."""
        if len(self.buf) - self.pos >= n:
            return True
        while not self.eof and len(self.buf) - self.pos < n:
            more, cut = _read_up_to(self._file, max(READ_BLOCK, n))
            if cut:
                self.cut_short = self.eof = True
            if not more:
                self.eof = True
                break
            self.base += self.pos
            self.buf = bytes(self.buf[self.pos :]) + more
            self.pos = 0
            self._info.bytes_read = self._raw.tell()
        return len(self.buf) - self.pos >= n

    @property
    def offset(self) -> int:
        """File offset of the next unread byte."""
        return self.base + self.pos


class _Stream(io.RawIOBase):
    """A forward-only input (a pipe) with the bytes read to tell its format
    put back in front.  ``tell`` counts the bytes read, for progress."""

    def __init__(self, raw: io.BufferedReader, head: bytes) -> None:
        super().__init__()
        self._raw = raw
        self._head = head
        self._read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        head = self._head
        if head:
            n = min(len(view), len(head))
            view[:n] = head[:n]
            self._head = head[n:]
        else:
            n = self._raw.readinto1(view)
        self._read += n
        return n

    def tell(self) -> int:
        return self._read

    def close(self) -> None:
        self._raw.close()
        super().close()


def _open(path: str) -> tuple[io.BufferedIOBase, io.BufferedIOBase, bool, bool]:
    """Open ``path`` for reading, looking through gzip compression.

    Returns the stream to read, the file under it (whose ``tell`` is the
    bytes read), whether it is compressed, and whether it is a regular
    file (which can be mapped).
    """
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
    except FileNotFoundError:
        raise CaptureError(path, "no such file") from None
    except IsADirectoryError:
        raise CaptureError(path, "is a directory, not a capture file") from None
    except PermissionError:
        raise CaptureError(path, "permission denied") from None
    except OSError as exc:
        raise CaptureError(path, exc.strerror or str(exc)) from None
    try:
        regular = stat.S_ISREG(os.fstat(raw.fileno()).st_mode)
        if regular:
            head = raw.read(2)
            raw.seek(0)
            under: io.BufferedIOBase = raw
        else:
            # A pipe cannot seek back: keep what was read, put it back.
            head = raw.read(2)
            under = io.BufferedReader(_Stream(raw, head), READ_BLOCK)
    except OSError as exc:
        raw.close()
        raise CaptureError(path, exc.strerror or str(exc)) from None
    if head == _GZIP_MAGIC:
        return gzip.GzipFile(fileobj=under, mode="rb"), under, True, regular
    return under, under, False, regular


def read_records(
    path: str, info: CaptureInfo | None = None, file_index: int = 0
) -> Iterator[RecordTuple]:
    """Yield ``(frame, ts_ns, linktype, data, orig_len)`` for each packet.

    ``frame`` is the 1-based record number, packed with ``file_index``
    as described in :mod:`fcgiforensics.frames`.  Damage goes to
    ``info.anomalies``; reading stops at damage that loses the framing,
    keeping every record before it.
    """
    if info is None:
        info = CaptureInfo(path)
    file, raw, compressed, regular = _open(path)
    info.compressed = compressed
    with raw, file:
        try:
            first, cut = _read_up_to(file, READ_BLOCK)
        except (OSError, zlib.error) as exc:
            raise CaptureFormatError(
                path, f"cannot decompress: {exc}", offset=0
            ) from None
        if len(first) < 4:
            raise CaptureFormatError(
                path, f"too short to be a capture ({len(first)} bytes)", offset=0
            )
        if not compressed and regular:
            # A plain file: map it instead of copying block by block.
            mapped = mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_READ)
            reader = _BlockReader(file, mapped, info, raw)
        else:
            reader = _BlockReader(file, first, info, raw)
            reader.cut_short = reader.eof = cut
        magic = first[:4]
        frame_base = file_index << 32
        try:
            if magic in _PCAP_MAGIC:
                info.format = "pcap"
                yield from _read_pcap(reader, info, frame_base)
            elif magic == _PCAPNG_SHB:
                info.format = "pcapng"
                yield from _read_pcapng(reader, info, frame_base)
            else:
                raise CaptureFormatError(
                    path,
                    f"not a pcap or pcapng file (starts with {first[:4].hex()})",
                    offset=0,
                )
        except (OSError, EOFError, zlib.error) as exc:
            # A gzip stream cut short or damaged: keep what was read.
            info.note(
                "capture.truncated_file",
                f"compressed stream unreadable: {exc}",
                frame=info.records + 1,
                offset=reader.offset,
            )
        finally:
            if isinstance(reader.buf, mmap.mmap):
                reader.buf.close()
        if reader.cut_short:
            info.note(
                "capture.truncated_file",
                "the compressed stream is cut short; records up to the cut were read",
                frame=info.records + 1,
                offset=reader.offset,
            )


def _read_pcap(
    r: _BlockReader, info: CaptureInfo, frame_base: int
) -> Iterator[RecordTuple]:
    """The classic libpcap format: a 24-byte header, then records."""
    if not r.need(24):
        raise CaptureFormatError(info.path, "pcap header cut short", offset=0)
    order, ts_unit = _PCAP_MAGIC[r.buf[:4]]
    _, _, _, _, snaplen, linkfield = struct.unpack_from(order + "HHiIII", r.buf, 4)
    linktype = linkfield & 0x0FFFFFFF  # upper bits may carry FCS length
    info.link_types.append(linktype)
    r.pos = 24
    record = struct.Struct(order + "IIII")
    limit = max(snaplen, 262144) if snaplen <= MAX_RECORD else MAX_RECORD
    number = 0

    # Step 2: records.  The inner loop walks the records that lie wholly
    # inside the current block; the outer one refills and meets damage.
    unpack = record.unpack_from
    while True:
        buf = r.buf
        pos = r.pos
        size = min(len(buf), pos + READ_BLOCK)  # a window over a mapped file
        while pos + 16 <= size:
            sec, frac, caplen, origlen = unpack(buf, pos)
            start = pos + 16
            end = start + caplen
            if end > size or caplen > limit:
                break
            number += 1
            pos = end
            yield (
                frame_base | number,
                sec * 1_000_000_000 + frac * ts_unit,
                linktype,
                buf[start:end],
                origlen,
            )
        r.pos = pos
        info.records = number
        r.release()

        if not r.need(16):
            if len(r.buf) - r.pos:
                info.note(
                    "capture.truncated_file",
                    f"file ends inside a record header "
                    f"({len(r.buf) - r.pos} of 16 bytes)",
                    frame=frame_base | (number + 1),
                    offset=r.offset,
                )
            return
        caplen = unpack(r.buf, r.pos)[2]
        if caplen > limit:
            info.note(
                "capture.bad_record",
                f"record length {caplen} exceeds snaplen {snaplen}; "
                f"the rest of the file cannot be framed",
                frame=frame_base | (number + 1),
                offset=r.offset,
            )
            return
        if not r.need(16 + caplen):
            info.note(
                "capture.truncated_file",
                f"file ends inside a record: {len(r.buf) - r.pos - 16} "
                f"of {caplen} bytes present",
                frame=frame_base | (number + 1),
                offset=r.offset,
            )
            return


# pcapng block types (draft-ietf-opsawg-pcapng, section 4 onwards)
_SHB = 0x0A0D0D0A
_IDB = 1
_OPB = 2  # obsolete packet block
_SPB = 3
_NRB = 4
_ISB = 5
_EPB = 6
# Fewest body bytes each block type needs for its fixed fields.
_MIN_BODY = {_SHB: 16, _IDB: 8, _EPB: 20, _OPB: 20, _SPB: 4}
#: Timestamps are int64 nanoseconds downstream: about the year 2262.
_MAX_TS = 2**63 - 1
_KNOWN_SKIPPED = {_NRB, _ISB, 0x0A, 0xBAD, 0x40000BAD, 0x80000001}


@dataclass(slots=True)
class _Interface:
    linktype: int
    snaplen: int
    # ns = ticks * ts_mul // ts_div, in integers: a float would lose the
    # nanoseconds of a 2020s timestamp (about 1.7e18 ns).
    ts_mul: int = 1000  # default if_tsresol 6: microseconds
    ts_div: int = 1
    ts_offset_ns: int = 0


def _tsresol(code: int) -> tuple[int, int]:
    """(multiplier, divisor) turning ticks into ns for an if_tsresol value."""
    if code & 0x80:
        return 1_000_000_000, 1 << (code & 0x7F)
    if code <= 9:
        return 10 ** (9 - code), 1
    return 1, 10 ** (code - 9)


def _parse_idb(body: bytes, order: str) -> tuple[_Interface, bool]:
    """The interface an IDB describes, and whether its options were whole.

    An option whose length runs past the block ends the option list: the
    link type and snaplen before it still hold, the options after it
    cannot be found.
    """
    linktype, _, snaplen = struct.unpack_from(order + "HHI", body, 0)
    iface = _Interface(linktype, snaplen)
    pos = 8
    while pos + 4 <= len(body):
        code, length = struct.unpack_from(order + "HH", body, pos)
        if code == 0:
            break
        if pos + 4 + length > len(body):
            return iface, False
        value = body[pos + 4 : pos + 4 + length]
        if code == 9 and length >= 1:
            iface.ts_mul, iface.ts_div = _tsresol(value[0])
        elif code == 14 and length == 8:
            iface.ts_offset_ns = struct.unpack(order + "q", value)[0] * 1_000_000_000
        pos += 4 + ((length + 3) & ~3)
    return iface, True


def _read_pcapng(
    r: _BlockReader, info: CaptureInfo, frame_base: int
) -> Iterator[RecordTuple]:
    """pcapng: sections of blocks; packets refer to their interface."""
    order = "<"
    interfaces: list[_Interface] = []
    number = 0
    last_ts = 0
    while True:
        if not r.need(12):
            if len(r.buf) - r.pos:
                info.note(
                    "capture.truncated_file",
                    "file ends inside a block header",
                    frame=frame_base | (number + 1),
                    offset=r.offset,
                )
            break
        block_type = struct.unpack_from(order + "I", r.buf, r.pos)[0]

        # Step 1: a section header fixes the byte order of what follows.
        if block_type == _SHB:
            bom = r.buf[r.pos + 8 : r.pos + 12]
            if bom == b"\x4d\x3c\x2b\x1a":
                order = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                order = ">"
            elif r.offset == 0:
                raise CaptureFormatError(
                    info.path,
                    f"pcapng section header with byte-order magic {bom.hex()}",
                    offset=r.offset,
                )
            else:
                info.note(
                    "capture.bad_record",
                    f"section header with byte-order magic {bom.hex()}; "
                    "the rest of the file cannot be framed",
                    frame=frame_base | (number + 1),
                    offset=r.offset,
                )
                break
            interfaces = []
        length = struct.unpack_from(order + "I", r.buf, r.pos + 4)[0]
        if length < 12 or length % 4 or length > MAX_RECORD + 64:
            if number == 0 and block_type == _SHB and not info.link_types:
                raise CaptureFormatError(
                    info.path,
                    f"pcapng section header length {length} is impossible",
                    offset=r.offset,
                )
            info.note(
                "capture.bad_record",
                f"block length {length} is impossible; the rest of "
                "the file cannot be framed",
                frame=frame_base | (number + 1),
                offset=r.offset,
            )
            break
        if not r.need(length):
            info.note(
                "capture.truncated_file",
                f"file ends inside a block: {len(r.buf) - r.pos} of "
                f"{length} bytes present",
                frame=frame_base | (number + 1),
                offset=r.offset,
            )
            break
        offset = r.offset
        body = r.buf[r.pos + 8 : r.pos + length - 4]
        r.pos += length
        r.release()
        if len(body) < _MIN_BODY.get(block_type, 0):
            if block_type in (_EPB, _OPB, _SPB):
                number += 1
            info.note(
                "capture.bad_record",
                f"block of type {block_type:#x} is {len(body)} bytes, too "
                "short for its fields; skipped",
                frame=frame_base | number if block_type != _IDB else None,
                offset=offset,
            )
            if block_type == _IDB:
                # Keep later interface numbers true, with a placeholder
                # whose link type nothing reads.
                interfaces.append(_Interface(-1, 0))
            continue

        # Step 2: packets, in any of the three packet block forms.
        if block_type == _EPB or block_type == _OPB:
            if block_type == _EPB:
                iface_id, hi, lo, caplen, origlen = struct.unpack_from(
                    order + "IIIII", body, 0
                )
            else:
                iface_id, _, hi, lo, caplen, origlen = struct.unpack_from(
                    order + "HHIIII", body, 0
                )
            number += 1
            info.records = number
            if iface_id >= len(interfaces) or caplen > len(body) - 20:
                info.note(
                    "capture.bad_record",
                    f"packet block names interface {iface_id} or "
                    f"length {caplen} that does not exist",
                    frame=frame_base | number,
                    offset=offset,
                )
                continue
            iface = interfaces[iface_id]
            ts = ((hi << 32) | lo) * iface.ts_mul // iface.ts_div + iface.ts_offset_ns
            if not 0 <= ts <= _MAX_TS:
                info.note(
                    "capture.bad_record",
                    f"timestamp {ts} ns is out of range; the previous "
                    "packet's time is used",
                    frame=frame_base | number,
                    offset=offset,
                )
                ts = last_ts
            last_ts = ts
            yield (
                frame_base | number,
                ts,
                iface.linktype,
                body[20 : 20 + caplen],
                origlen,
            )
        elif block_type == _SPB:
            number += 1
            info.records = number
            if not interfaces:
                info.note(
                    "capture.bad_record",
                    "simple packet block before any interface",
                    frame=frame_base | number,
                    offset=offset,
                )
                continue
            origlen = struct.unpack_from(order + "I", body, 0)[0]
            iface = interfaces[0]
            caplen = min(origlen, len(body) - 4)
            if iface.snaplen:
                caplen = min(caplen, iface.snaplen)
            # A simple packet block carries no timestamp.
            yield (
                frame_base | number,
                0,
                iface.linktype,
                body[4 : 4 + caplen],
                origlen,
            )
        elif block_type == _IDB:
            iface, whole = _parse_idb(body, order)
            if not whole:
                info.note(
                    "capture.bad_record",
                    "interface description option runs past its block; "
                    "the options after it are ignored",
                    frame=None,
                    offset=offset,
                )
            interfaces.append(iface)
            if iface.linktype not in info.link_types:
                info.link_types.append(iface.linktype)
        elif block_type != _SHB and block_type not in _KNOWN_SKIPPED:
            info.note(
                "capture.unknown_block",
                f"block type {block_type:#x} skipped",
                frame=None,
                offset=offset,
            )


def sniff_format(path: str) -> str:
    """``"pcap"``, ``"pcapng"`` or ``""`` from the first bytes of ``path``."""
    try:
        with open(path, "rb") as raw:
            head = raw.read(2)
            raw.seek(0)
            stream: io.BufferedIOBase = (
                gzip.GzipFile(fileobj=raw) if head == _GZIP_MAGIC else raw
            )
            magic = stream.read(4)
    except (OSError, EOFError):
        return ""
    if magic in _PCAP_MAGIC:
        return "pcap"
    return "pcapng" if magic == _PCAPNG_SHB else ""
