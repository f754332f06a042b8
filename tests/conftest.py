"""Shared fixtures: running frames through the real reader and reassembler."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fcgiforensics.capture.leg import LegStats, follow_leg
from fcgiforensics.decoders.base import Direction
from fcgiforensics.reassembly import Connection, Reassembler
from fcgiforensics.testing import Frame, write_pcap

REPO = Path(__file__).resolve().parent.parent
CAPTURES = REPO / "captures"


@dataclass
class CollectingSink:
    """A stream sink that records every call, for assertions."""

    data: list[bytearray] = field(default_factory=lambda: [bytearray(), bytearray()])
    gaps: list[tuple[Direction, int, int]] = field(default_factory=list)
    ends: list[tuple[Direction, int]] = field(default_factory=list)

    def feed(self, direction: Direction, offset: int, data: bytes) -> None:
        assert offset == len(self.data[direction]), "bytes out of order"
        self.data[direction] += data

    def gap(self, direction: Direction, offset: int, length: int) -> None:
        assert offset == len(self.data[direction]), "gap out of order"
        self.gaps.append((direction, offset, length))
        self.data[direction] += b"?" * length

    def end(self, direction: Direction, offset: int) -> None:
        self.ends.append((direction, offset))


@dataclass
class Followed:
    stats: LegStats
    connections: list[Connection]
    sinks: list[CollectingSink]


def follow_frames(
    tmp_path: Path, frames: list[Frame], name: str = "t.pcap"
) -> Followed:
    """Write ``frames`` to a pcap, read it back and reassemble it."""
    path = tmp_path / name
    write_pcap(str(path), frames)
    return follow_files([str(path)])


def follow_files(paths: list[str]) -> Followed:
    sinks: list[CollectingSink] = []

    def sink_for(conn: Connection) -> CollectingSink:
        sink = CollectingSink()
        sinks.append(sink)
        return sink

    reassembler = Reassembler(sink_for, capture=os.path.basename(paths[0]))
    stats = follow_leg(paths, reassembler)
    reassembler.finish()
    return Followed(stats, reassembler.connections, sinks)


def is_root() -> bool:
    return os.geteuid() == 0


@pytest.fixture
def follow(tmp_path: Path):  # type: ignore[no-untyped-def]
    return lambda frames, name="t.pcap": follow_frames(tmp_path, frames, name)
