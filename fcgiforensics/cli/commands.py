"""The subcommands: each parses its options and calls the library."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..capture.leg import follow_leg
from ..reassembly import Reassembler
from ..reports.streams import streams_json, streams_text
from .progress import Progress

__all__ = ["register"]


def _emit_json(doc: dict[str, Any]) -> None:
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")


def run_streams(args: argparse.Namespace) -> int:
    groups = [args.files] if args.merge else [[f] for f in args.files]
    stats_list = []
    conns_list = []
    for paths in groups:
        label = "+".join(paths)
        reassembler = Reassembler(capture=label)
        progress = Progress(f"reading {label}")
        stats = follow_leg(paths, reassembler, progress=progress)
        progress.done()
        reassembler.finish()
        stats_list.append((label, stats))
        conns_list.append(reassembler.connections)
    doc = streams_json(stats_list, conns_list)
    if args.json:
        _emit_json(doc)
    else:
        sys.stdout.write(streams_text(doc))
    return 0


def register(sub: Any) -> None:
    """Add every subcommand to the ``sub`` subparsers object."""
    fmt = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser(
        "streams",
        formatter_class=fmt,
        help="list TCP connections and what the capture lacks",
        description=(
            "Rebuild every TCP connection of each capture file and list\n"
            "one row per connection: endpoints, bytes each way, frames,\n"
            "and the anomalies met (gaps the capture lacks, conflicting\n"
            "retransmissions, resets...)."
        ),
        epilog=(
            "example:\n  fcgiforensics streams --json lo.pcap | "
            "jq '.captures[0].connections[0]'"
        ),
    )
    p.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="pcap or pcapng file, optionally gzip-compressed",
    )
    p.add_argument(
        "--merge",
        action="store_true",
        help="treat the files as one rotated capture, merged in time order",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the fcgiforensics.streams/1 JSON document",
    )
    p.set_defaults(run=run_streams)
