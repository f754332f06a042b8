"""Anomalies: damage or oddity found in the input, kept as data.

An anomaly never stops a run.  Each has a stable dotted name (listed in
:data:`CATALOGUE` and in docs/anomalies.md), a sentence for people, and
the place where it was seen.  Layers that find anomalies return them;
they do not also log them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Anomaly", "CATALOGUE"]


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One piece of damage or oddity, and where it was seen.

    ``stream_offset`` counts bytes of the TCP stream in ``direction`` of
    ``connection``; ``first_frame``/``last_frame`` are frame ids (see
    :mod:`fcgiforensics.frames`); ``file_offset`` is used by the capture
    reader.  Any of them may be None when the layer cannot know it.
    """

    name: str
    detail: str
    capture: str | None = None
    connection: str | None = None
    direction: str | None = None
    stream_offset: int | None = None
    first_frame: int | None = None
    last_frame: int | None = None
    file_offset: int | None = None

    def __str__(self) -> str:
        where: list[str] = []
        if self.capture:
            where.append(self.capture)
        if self.first_frame is not None:
            from .frames import frame_number

            where.append(f"frame {frame_number(self.first_frame)}")
        if self.file_offset is not None:
            where.append(f"file offset {self.file_offset:#x}")
        if self.connection:
            where.append(self.connection)
        if self.stream_offset is not None:
            where.append(f"stream offset {self.stream_offset}")
        prefix = ", ".join(where)
        return f"{self.name}: {self.detail}" + (f" ({prefix})" if prefix else "")


#: Every anomaly name the package can produce, with a one-line meaning.
#: docs/anomalies.md is generated from this table; a test pins both.
CATALOGUE: dict[str, str] = {
    # capture reading
    "capture.truncated_packet": (
        "the packet was captured with a snaplen shorter than its length; "
        "its missing bytes are unobserved"
    ),
    "capture.truncated_file": "the file ends inside a record header or body",
    "capture.bad_record": "a record header is impossible (absurd length)",
    "capture.unknown_block": "a pcapng block of an unknown type was skipped",
    "capture.unsupported_linktype": "packets of a link type this tool cannot read",
    "capture.bad_packet": "a link, IP or TCP header is malformed",
    "capture.ip_fragment": "an IP fragment; fragments are not reassembled",
    # TCP reassembly
    "tcp.midstream": "the connection was first seen without its SYN",
    "tcp.gap": "stream bytes the capture never saw (lost or not captured)",
    "tcp.overlap_conflict": (
        "a retransmission carried bytes that differ from an earlier copy"
    ),
    "tcp.overlap_unverified": (
        "a retransmission overlapped bytes no longer kept for comparison"
    ),
    "tcp.retransmission": "a segment carried bytes already seen",
    "tcp.out_of_order": "a segment arrived ahead of bytes not yet seen",
    "tcp.rst": "the connection was reset",
    "tcp.data_after_fin": "data beyond the sender's FIN",
    "tcp.before_start": "data before the first byte seen of a mid-stream connection",
    "tcp.late_data": (
        "bytes arrived after their range was declared a gap; not merged"
    ),
    "tcp.pending_limit": "too many out-of-order bytes were waiting; a gap was declared",
    "tcp.connection_limit": "too many connections at once; new ones were not followed",
}
