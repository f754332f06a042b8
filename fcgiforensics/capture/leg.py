"""Read the capture files of one leg and feed their TCP segments on.

This is the loop that runs once per packet; it keeps its work to the
minimum: read a record, decode it to TCP, hand the fields to the
:class:`~fcgiforensics.reassembly.Reassembler`.
"""

from __future__ import annotations

import heapq
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import repeat

from ..anomalies import Anomaly
from ..frames import frame_file, frame_number
from ..reassembly import Reassembler
from .packets import LINKTYPE_NAMES, NotTcp, decode_tcp
from .records import CaptureInfo, RecordTuple, read_records

__all__ = ["LegStats", "follow_leg", "follow_legs", "merged_records"]

#: How often (in records) the progress callback is called.
PROGRESS_EVERY = 4096


@dataclass(slots=True)
class LegStats:
    """What reading one leg's files found, besides the TCP streams."""

    files: list[CaptureInfo] = field(default_factory=list)
    packets: int = 0
    tcp_segments: int = 0
    not_tcp: Counter[str] = field(default_factory=Counter)
    anomalies: list[Anomaly] = field(default_factory=list)

    @property
    def link_type_names(self) -> list[str]:
        names: list[str] = []
        for info in self.files:
            for lt in info.link_types:
                name = LINKTYPE_NAMES.get(lt, f"LINKTYPE_{lt}")
                if name not in names:
                    names.append(name)
        return names


def merged_records(paths: list[str], infos: list[CaptureInfo]) -> Iterator[RecordTuple]:
    """Records of several files (a rotated capture) in timestamp order."""
    streams = [
        read_records(p, info, i)
        for i, (p, info) in enumerate(zip(paths, infos, strict=True))
    ]
    if len(streams) == 1:
        return streams[0]
    return heapq.merge(*streams, key=lambda rec: rec[1])


def follow_leg(
    paths: Iterable[str],
    reassembler: Reassembler,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> LegStats:
    """Feed every TCP segment of ``paths`` to ``reassembler``.

    ``progress(done, total)`` is called now and then with file bytes
    read so far and the files' total size.  The reassembler is not
    finished here: the caller may feed more before calling ``finish``.
    """
    return follow_legs([(list(paths), reassembler)], progress=progress)[0]


def follow_legs(
    groups: list[tuple[list[str], Reassembler]],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> list[LegStats]:
    """Feed several legs, each its own files and reassembler, in one pass.

    Records of all legs are merged in timestamp order, so that messages
    of both legs complete at about the same time and a caller pairing
    them can let go of each pair early: memory then follows the
    exchanges in flight, not the size of the files.
    """
    all_stats = [LegStats(files=[CaptureInfo(p) for p in paths]) for paths, _ in groups]
    total = sum(_size(p) for paths, _ in groups for p in paths)
    records = [
        merged_records(paths, stats.files)
        for (paths, _), stats in zip(groups, all_stats, strict=True)
    ]
    tagged = _interleave(records) if len(records) > 1 else zip(repeat(0), records[0])
    adds = [reassembler.add for _, reassembler in groups]
    # Anomalies of no connection that this pass adds (connection limit).
    seen = [len(reassembler.anomalies) for _, reassembler in groups]
    packets = [0] * len(groups)
    segments = [0] * len(groups)
    # Per leg, per file index: [first frame, last frame, packets, bytes]
    # cut by the snaplen.  Each cut is a gap on its stream already; the
    # file gets one anomaly, not one per packet (a -s 96 capture of
    # millions of packets would make millions).
    cuts: list[dict[int, list[int]]] = [{} for _ in groups]
    count = 0
    for leg, (frame, ts, linktype, data, origlen) in tagged:
        count += 1
        packets[leg] += 1
        seg = decode_tcp(linktype, data, origlen)
        if isinstance(seg, NotTcp):
            stats = all_stats[leg]
            stats.not_tcp[seg.reason] += 1
            if seg.reason in ("malformed", "fragment", "linktype"):
                _note_not_tcp(stats, groups[leg][1].capture, seg, frame)
        else:
            segments[leg] += 1
            src, sport, dst, dport, seq, ack, flags, _, payload, missing = seg
            if missing:
                _count_cut(cuts[leg], frame, missing)
            adds[leg](
                frame, ts, src, sport, dst, dport, seq, ack, flags, payload, missing
            )
        if progress is not None and count % PROGRESS_EVERY == 0:
            done = sum(i.bytes_read for st in all_stats for i in st.files)
            progress(done, total)
    for i, stats in enumerate(all_stats):
        stats.packets = packets[i]
        stats.tcp_segments = segments[i]
        stats.anomalies.extend(groups[i][1].anomalies[seen[i] :])
        _note_cuts(stats, cuts[i])
        for info in stats.files:
            stats.anomalies.extend(info.anomalies)
    if progress is not None:
        progress(total, total)
    return all_stats


#: Records taken from one leg before looking at the other again.  The
#: legs need only stay roughly in step (for memory, not correctness), so
#: a run of records per turn spares a comparison between legs per record.
INTERLEAVE_RUN = 256


def _interleave(
    records: list[Iterator[RecordTuple]],
) -> Iterator[tuple[int, RecordTuple]]:
    """Records of several legs, roughly in time order, tagged by leg.

    The leg whose next record is oldest goes next, for a run of up to
    :data:`INTERLEAVE_RUN` records that are not newer than the other
    legs' next records.
    """
    heads: list[RecordTuple | None] = [next(it, None) for it in records]
    while True:
        live = [i for i, h in enumerate(heads) if h is not None]
        if not live:
            return
        leg = min(live, key=lambda i: heads[i][1])  # type: ignore[index]
        others = [heads[i][1] for i in live if i != leg]  # type: ignore[index]
        limit = min(others) if others else None
        head = heads[leg]
        assert head is not None
        it = records[leg]
        yield leg, head
        for _ in range(INTERLEAVE_RUN):
            nxt = next(it, None)
            if nxt is None or (limit is not None and nxt[1] > limit):
                heads[leg] = nxt
                break
            yield leg, nxt
        else:
            heads[leg] = next(it, None)


# Anomalies of frames that are not usable TCP, one per kind and file: a
# capture full of fragments should not produce a million identical lines.
def _note_not_tcp(stats: LegStats, capture: str, seg: NotTcp, frame: int) -> None:
    name = {
        "malformed": "capture.bad_packet",
        "fragment": "capture.ip_fragment",
        "linktype": "capture.unsupported_linktype",
    }[seg.reason]
    if stats.not_tcp[seg.reason] <= 1:
        stats.anomalies.append(
            Anomaly(
                name, seg.detail, capture=capture, first_frame=frame, last_frame=frame
            )
        )


def _count_cut(cuts: dict[int, list[int]], frame: int, missing: int) -> None:
    """Count one packet whose TCP payload the snaplen cut short."""
    entry = cuts.get(frame_file(frame))
    if entry is None:
        cuts[frame_file(frame)] = [frame, frame, 1, missing]
    else:
        entry[1] = frame
        entry[2] += 1
        entry[3] += missing


def _note_cuts(stats: LegStats, cuts: dict[int, list[int]]) -> None:
    """One ``capture.truncated_packet`` per file with packets cut short."""
    for index, (first, last, packets, missing) in sorted(cuts.items()):
        stats.anomalies.append(
            Anomaly(
                "capture.truncated_packet",
                f"{packets} packets cut short by the snaplen, frames "
                f"{frame_number(first)} to {frame_number(last)}: {missing} "
                "bytes of TCP payload not captured (snaplen gaps on their "
                "streams)",
                capture=stats.files[index].path,
                first_frame=first,
                last_frame=last,
            )
        )


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
