"""TCP reassembly: segments in, per-direction byte streams and evidence out."""

from .reassembler import (
    Connection,
    HalfStream,
    OverlapConflict,
    Reassembler,
    ReassemblyLimits,
    StreamGap,
    StreamSink,
)

__all__ = [
    "Connection",
    "HalfStream",
    "OverlapConflict",
    "Reassembler",
    "ReassemblyLimits",
    "StreamGap",
    "StreamSink",
]
