"""Frame references and timestamps, as they travel through the pipeline.

A frame is named by Wireshark's 1-based number within its capture file.
A leg may be several rotated files, so inside the pipeline a frame is a
single integer ``file_index << 32 | number``: for the first (or only)
file it *is* the Wireshark number.  Timestamps are integer nanoseconds
since the Unix epoch; they become floats or strings only at the edges.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable

__all__ = [
    "FRAME_FILE_SHIFT",
    "frame_ref",
    "frame_number",
    "frame_file",
    "frames_by_file",
    "format_frames",
    "ns_to_iso",
]

FRAME_FILE_SHIFT = 32
_NUMBER_MASK = (1 << FRAME_FILE_SHIFT) - 1


def frame_ref(file_index: int, number: int) -> int:
    """Pack a file index and a 1-based frame number into one frame id."""
    return (file_index << FRAME_FILE_SHIFT) | number


def frame_number(ref: int) -> int:
    """The 1-based frame number that Wireshark shows for ``ref``."""
    return ref & _NUMBER_MASK


def frame_file(ref: int) -> int:
    """The index of the capture file, within its leg, that holds ``ref``."""
    return ref >> FRAME_FILE_SHIFT


def frames_by_file(refs: Iterable[int]) -> list[tuple[int, list[int]]]:
    """``refs`` grouped by the file that holds them, files in leg order:
    ``[(file_index, [ref, ...]), ...]``."""
    grouped: dict[int, list[int]] = {}
    for ref in refs:
        grouped.setdefault(frame_file(ref), []).append(ref)
    return sorted(grouped.items())


def format_frames(refs: list[int] | tuple[int, ...]) -> str:
    """A compact human form: ``12``, ``12-15``, ``3, 7-9``."""
    numbers = sorted({frame_number(r) for r in refs})
    runs: list[str] = []
    start = prev = -2
    for n in numbers:
        if n != prev + 1:
            if start >= 0:
                runs.append(str(start) if start == prev else f"{start}-{prev}")
            start = n
        prev = n
    if start >= 0:
        runs.append(str(start) if start == prev else f"{start}-{prev}")
    return ", ".join(runs)


def ns_to_iso(ns: int) -> str:
    """ISO 8601 UTC with microseconds and a ``Z``, as the JSON report uses."""
    seconds, rest = divmod(ns, 1_000_000_000)
    moment = _dt.datetime.fromtimestamp(seconds, tz=_dt.UTC)
    moment = moment.replace(microsecond=rest // 1000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
