"""The subcommands: each parses its options and calls the library."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..capture.leg import follow_leg
from ..errors import OutputError, UsageError
from ..frames import frame_number
from ..reassembly import Reassembler
from ..reports.streams import streams_json, streams_text
from .progress import Progress

# The decoders, attribution and reports are imported by the commands that
# use them, so that `streams` starts without them (about 0.1 s).
if TYPE_CHECKING:
    from ..analysis import Analysis
    from ..legs import Leg, LegOptions

__all__ = ["register"]

_FMT = argparse.RawDescriptionHelpFormatter


def _emit_json(doc: dict[str, Any]) -> None:
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _ascii_digits(text: str) -> bool:
    """True for a non-empty run of 0-9 (``str.isdigit`` takes ``²`` too)."""
    return text.isascii() and text.isdigit()


def _ports(text: str) -> frozenset[int]:
    items = [p.strip() for p in text.split(",")]
    # Five digits hold every port; longer runs are refused before int().
    if not all(_ascii_digits(p) and len(p) <= 5 for p in items):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated port numbers, got {text!r}"
        )
    ports = frozenset(int(p) for p in items)
    if any(not 0 < p < 65536 for p in ports):
        raise argparse.ArgumentTypeError(f"port out of range in {text!r}")
    return ports


def _mebibytes(text: str) -> int:
    from ..legs import mebibytes

    try:
        value = float(text) if text.isascii() else None
    except ValueError:
        value = None
    if value is None:
        raise argparse.ArgumentTypeError(f"expected a size in MiB, got {text!r}")
    try:
        return mebibytes(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size out of range: {text!r}") from None


def _message_id(text: str) -> int:
    """A message number of ``--body``: 1 for the first."""
    if not _ascii_digits(text) or len(text) > 18 or int(text) < 1:
        raise argparse.ArgumentTypeError(
            f"expected a message number from 1, got {text!r}"
        )
    return int(text)


def _file_name(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("empty file name")
    return text


def _digest_header(text: str) -> str:
    """``NAME`` or ``NAME:ALGO``, checked now rather than after the reading."""
    from ..attribution import parse_digest_spec

    try:
        parse_digest_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    return text


def _check_writable(path: str, option: str) -> None:
    """Fail now, not after the whole reading, if ``path`` cannot be written."""
    reason = None
    parent = os.path.dirname(path) or "."
    if os.path.isdir(path):
        reason = "it is a directory"
    elif os.path.exists(path):
        if not os.access(path, os.W_OK):
            reason = "permission denied"
    elif not os.path.isdir(parent):
        reason = f"there is no directory {parent}"
    elif not os.access(parent, os.W_OK | os.X_OK):
        reason = f"permission denied in {parent}"
    if reason is not None:
        raise OutputError(path, reason, option=option)


def _write_file(path: str, option: str, write: Callable[[str], None]) -> None:
    """Run ``write(path)``; a failure to write is one line, not a traceback."""
    try:
        write(path)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OutputError(path, reason, option=option) from None


def _leg_options(args: argparse.Namespace) -> LegOptions:
    from ..legs import LegOptions
    from ..reassembly import ReassemblyLimits

    return LegOptions(
        limits=ReassemblyLimits(pending_bytes=args.max_pending)
        if args.max_pending
        else ReassemblyLimits(),
        max_body=args.max_body,
        http_ports=args.http_port or frozenset(),
        fastcgi_ports=args.fastcgi_port or frozenset(),
    )


def _add_leg_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--http-port",
        type=_ports,
        metavar="PORTS",
        help="treat connections to these server ports as HTTP "
        "(comma-separated); by default the protocol is found "
        "from each connection's first bytes, on any port",
    )
    p.add_argument(
        "--fastcgi-port",
        type=_ports,
        metavar="PORTS",
        help="treat connections to these server ports as FastCGI",
    )
    p.add_argument(
        "--max-body",
        type=_mebibytes,
        metavar="MIB",
        help="keep at most this much of one body (HTTP, decoded or not; "
        "FastCGI STDOUT); past it the body is cut with an anomaly "
        "(default: 256 MiB for HTTP, 64 MiB for FastCGI)",
    )
    p.add_argument(
        "--max-pending",
        type=_mebibytes,
        metavar="MIB",
        help="out-of-order bytes one TCP direction may hold while waiting "
        "for a hole to fill; past it the hole is declared a gap "
        "(default: 64 MiB)",
    )


# -- streams ---------------------------------------------------------------


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


# -- http and fcgi -------------------------------------------------------------


def _read(args: argparse.Namespace) -> Leg:
    from ..legs import read_leg

    bar = Progress(f"reading {'+'.join(args.files)}")
    leg = read_leg(args.files, _leg_options(args), progress=bar)
    bar.done()
    return leg


def _number(ref: int | None) -> int | None:
    return None if ref is None else frame_number(ref)


def _frame_range(row: dict[str, Any]) -> str:
    first, last = row["first_frame"], row["last_frame"]
    if first is None:
        return "-"
    return str(first) if last in (None, first) else f"{first}-{last}"


def _check_body_options(args: argparse.Namespace) -> None:
    """``-o`` goes with ``--body``; its file must be writable before reading."""
    if args.output is not None and args.body is None:
        raise UsageError("-o says where --body writes: give --body ID too")
    if args.output not in (None, "-"):
        _check_writable(args.output, "-o")


def _write_body(
    args: argparse.Namespace, bodies: list[Any], rows: list[dict[str, Any]]
) -> int:
    if not 1 <= args.body <= len(bodies):
        raise UsageError(
            f"--body {args.body}: there are {len(bodies)} messages (numbered from 1)"
        )
    body = bodies[args.body - 1]
    if body is None:
        row = rows[args.body - 1]
        raise UsageError(
            f"--body {args.body}: {row['method']} {row['uri']} has no response "
            "in the capture, so there is no body to write"
        )
    if not body.fully_observed:
        # The bytes must keep their offsets, so the holes are written as
        # zero bytes; say exactly where, so nobody reads them as content.
        ranges = ", ".join(f"{a}-{b - 1}" for a, b in body.unobserved[:5])
        more = " ..." if len(body.unobserved) > 5 else ""
        print(
            f"fcgiforensics: warning: body {args.body}: bytes {ranges}{more} "
            "were not observed and are written as zero bytes",
            file=sys.stderr,
        )
    if args.output in (None, "-"):
        sys.stdout.buffer.write(body.data)
    else:

        def write(path: str) -> None:
            with open(path, "wb") as out:
                out.write(body.data)

        _write_file(args.output, "-o", write)
    return 0


def _listing(
    args: argparse.Namespace,
    leg: Leg,
    name: str,
    key: str,
    rows: list[dict[str, Any]],
    bodies: list[Any],
    extra: tuple[str, str] | None = None,
) -> int:
    """The end of ``http`` and ``fcgi``: a body, the JSON, or a table."""
    if args.body is not None:
        return _write_body(args, bodies, rows)
    if args.json:
        _emit_json(
            {
                "format": f"fcgiforensics.{name}/1",
                "captures": leg.paths,
                key: rows,
                "anomalies": [str(a) for a in leg.anomalies],
            }
        )
        return 0
    head, field = extra or ("", "")
    print(
        f"  {'id':>4}  "
        + (f"{head:>4} " if extra else "")
        + f"{'status':>6} {'bytes':>10}  {'sha256':<12}  {'frames':>11}  "
        "request"
    )
    for r in rows:
        sha = (r["body_sha256"] or "(partial)")[:12]
        names = sorted(set(r["anomalies"]))
        print(
            f"  {r['id']:>4}  "
            + (f"{r[field]!s:>4} " if extra else "")
            + f"{r['status'] or '-'!s:>6} {r['body_length'] or 0:>10}  "
            f"{sha:<12}  {_frame_range(r):>11}  {r['method']} "
            f"{r['uri']}" + (f"  [{', '.join(names)}]" if names else "")
        )
    return 0


def run_http(args: argparse.Namespace) -> int:
    from ..analysis import http_side

    _check_body_options(args)
    leg = _read(args)
    rows: list[dict[str, Any]] = []
    bodies = []
    for n, item in enumerate(leg.http, start=1):
        ex = item.exchange
        req, resp = ex.request, ex.response
        body = resp.body if resp is not None else None
        bodies.append(body)
        side = http_side(item)
        rows.append(
            {
                "id": n,
                "connection": item.connection.label(),
                "method": req.method if req else None,
                "uri": req.target if req else None,
                "status": resp.status if resp else None,
                "body_length": len(body) if body is not None else None,
                "body_sha256": hashlib.sha256(body.data).hexdigest()
                if body is not None and body.fully_observed
                else None,
                "unobserved_bytes": sum(b - a for a, b in body.unobserved)
                if body is not None
                else None,
                "chunked": resp.chunked if resp else None,
                "content_encoding": resp.content_encoding if resp else None,
                "complete": ex.complete,
                "first_frame": _number(side.first_frame),
                "last_frame": _number(side.last_frame),
                "anomalies": [a.name for a in ex.anomalies],
            }
        )
    return _listing(args, leg, "http", "exchanges", rows, bodies)


def run_fcgi(args: argparse.Namespace) -> int:
    from ..analysis import fcgi_side

    _check_body_options(args)
    leg = _read(args)
    rows: list[dict[str, Any]] = []
    bodies = []
    for n, item in enumerate(leg.fcgi, start=1):
        req = item.request
        bodies.append(req.body)
        side = fcgi_side(item)
        rows.append(
            {
                "id": n,
                "connection": item.connection.label(),
                "request_id": req.request_id,
                "method": req.params.get("REQUEST_METHOD"),
                "uri": req.params.get("REQUEST_URI"),
                "remote": f"{req.params.get('REMOTE_ADDR')}:"
                f"{req.params.get('REMOTE_PORT')}",
                "status": req.status,
                "body_length": len(req.body),
                "body_sha256": hashlib.sha256(req.body.data).hexdigest()
                if req.body.fully_observed
                else None,
                "records": len(req.records),
                "stderr_bytes": len(req.stderr),
                "app_status": req.app_status,
                "protocol_status": req.protocol_status,
                "complete": req.complete,
                "first_frame": _number(side.first_frame),
                "last_frame": _number(side.last_frame),
                "anomalies": [a.name for a in req.anomalies],
            }
        )
    return _listing(args, leg, "fcgi", "requests", rows, bodies, ("rid", "request_id"))


# -- diff --------------------------------------------------------------------


def _html_writer(path: str) -> Callable[[Analysis, str], None]:
    """The HTML report writer, once ``path`` and the libraries are known
    to be there: both are checked before the captures are read."""
    _check_writable(path, "--html")
    try:
        from ..reports.html_report import write_html
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in ("pandas", "matplotlib"):
            raise
        raise UsageError(
            "--html needs pandas and matplotlib: pip install 'fcgiforensics[notebook]'"
        ) from None
    return write_html


def run_diff(args: argparse.Namespace) -> int:
    from ..analysis import AnalysisOptions, analyze
    from ..attribution import parse_digest_spec
    from ..reports.json_report import report_json
    from ..reports.text_report import report_text

    client = args.client
    upstream = args.upstream
    if args.legs:
        if len(args.legs) > 2:
            raise UsageError(
                "diff takes CLIENT and UPSTREAM captures; use "
                "--client/--upstream for rotated files"
            )
        client = client + [args.legs[0]]
        if len(args.legs) == 2:
            upstream = upstream + [args.legs[1]]
    if not client:
        raise UsageError("diff needs a client-leg capture")
    try:
        digests = tuple(parse_digest_spec(d) for d in args.digest_header)
    except ValueError as exc:
        raise UsageError(f"--digest-header: {exc}") from None
    write_html = _html_writer(args.html) if args.html is not None else None
    options = AnalysisOptions(
        digests=digests, leg=_leg_options(args), keep_bodies=False
    )
    bar = Progress("reading captures")
    analysis = analyze(client, upstream or None, options, progress=bar)
    bar.done()
    if write_html is not None:
        _write_file(args.html, "--html", lambda path: write_html(analysis, path))
    if args.json:
        _emit_json(report_json(analysis))
    else:
        sys.stdout.write(report_text(analysis))
    return 1 if analysis.summary()["corrupted"] else 0


def register(sub: Any) -> None:
    """Add every subcommand to the ``sub`` subparsers object."""
    p = sub.add_parser(
        "diff",
        formatter_class=_FMT,
        help="compare each response on both legs; name the hop at fault",
        description=(
            "Read the client<->web server leg (HTTP/1.x) and the web\n"
            "server<->app leg (FastCGI), pair each client request with the\n"
            "upstream request that served it, align the body the client\n"
            "got with the body the app sent, and give each exchange a\n"
            "verdict:\n\n"
            "  ok          the client's decoded body equals the app's body\n"
            "  corrupted   they differ on observed bytes, or the app's own\n"
            "              stream is damaged; 'hop' says where: 'app' (the\n"
            "              app or its FastCGI server) or 'proxy' (between\n"
            "              the upstream and client capture points)\n"
            "  incomplete  a difference cannot be decided: the capture\n"
            "              lacks bytes (loss, snaplen, late start)\n"
            "  unmatched   the request was seen on one leg only\n\n"
            "Chunked transfer coding and gzip/deflate/br/zstd content\n"
            "coding applied by the web server are undone first, so they\n"
            "are never reported.  One capture holding both legs (tcpdump\n"
            "-i any) can be given alone."
        ),
        epilog=(
            "exit status: 0 no exchange corrupted, 1 at least one\n"
            "corrupted, 2 unreadable input, unwritable output or bad\n"
            "usage, 3 internal error (a bug: run again with --debug).\n\n"
            "examples:\n"
            "  fcgiforensics diff client.pcap upstream.pcap\n"
            "  fcgiforensics diff any.pcapng --json > report.json\n"
            "  fcgiforensics diff -c c1.pcap -c c2.pcap -u up.pcap.gz \\\n"
            "      --digest-header X-Body-SHA1 --html report.html"
        ),
    )
    p.add_argument(
        "legs",
        nargs="*",
        type=_file_name,
        metavar="CAPTURE",
        help="CLIENT [UPSTREAM]: the client-leg capture, then the "
        "upstream-leg capture (omit it when one file has both)",
    )
    p.add_argument(
        "-c",
        "--client",
        action="append",
        default=[],
        type=_file_name,
        metavar="FILE",
        help="a client-leg file; repeat for rotated captures, merged in time order",
    )
    p.add_argument(
        "-u",
        "--upstream",
        action="append",
        default=[],
        type=_file_name,
        metavar="FILE",
        help="an upstream-leg file; repeatable",
    )
    p.add_argument(
        "--digest-header",
        action="append",
        default=[],
        type=_digest_header,
        metavar="NAME[:ALGO]",
        help="a response header in which the app declares its "
        "body's digest, hex or base64 (e.g. X-Body-SHA1, "
        "X-Checksum:sha256); Content-MD5, Content-Digest and "
        "Repr-Digest are always understood",
    )
    p.add_argument(
        "--json", action="store_true", help="print the fcgiforensics.diff/1 JSON report"
    )
    p.add_argument(
        "--html",
        type=_file_name,
        metavar="FILE",
        help="also write a self-contained HTML report (needs the notebook "
        "extra: pip install 'fcgiforensics[notebook]')",
    )
    _add_leg_options(p)
    p.set_defaults(run=run_diff)

    p = sub.add_parser(
        "streams",
        formatter_class=_FMT,
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
        type=_file_name,
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

    for name, runner, what in (
        ("http", run_http, "HTTP/1.x exchanges of a client leg"),
        ("fcgi", run_fcgi, "FastCGI requests of an upstream leg"),
    ):
        p = sub.add_parser(
            name,
            formatter_class=_FMT,
            help=f"list the {what}",
            description=(
                f"Decode the {what}: method, URI, status, body length and\n"
                "SHA-256 of the rebuilt body (decoded: de-chunked and\n"
                "content-decoded for HTTP; STDOUT after the CGI headers for\n"
                "FastCGI), first and last frame and anomalies.  Files are\n"
                "one leg, merged in time order."
            ),
            epilog=(
                f"examples:\n  fcgiforensics {name} leg.pcap\n"
                f"  fcgiforensics {name} leg.pcap --body 3 -o body.bin"
            ),
        )
        p.add_argument("files", nargs="+", type=_file_name, metavar="FILE")
        p.add_argument(
            "--json",
            action="store_true",
            help=f"print the fcgiforensics.{name}/1 document",
        )
        p.add_argument(
            "--body",
            type=_message_id,
            metavar="ID",
            help="write the rebuilt body of message ID (from 1) instead of the listing",
        )
        p.add_argument(
            "-o",
            "--output",
            type=_file_name,
            metavar="FILE",
            help="where --body writes (default: standard output)",
        )
        _add_leg_options(p)
        p.set_defaults(run=runner)
