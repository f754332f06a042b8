"""The ``fcgiforensics`` command: parse arguments, run, print, exit.

Only this layer writes to the terminal and configures logging.  Errors
that stop a run print one line and exit with status 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import FcgiForensicsError
from . import commands

__all__ = ["main", "build_parser"]

DESCRIPTION = """\
Find which hop corrupted a web response.

fcgiforensics reads packet captures (pcap or pcapng, optionally gzipped)
of the client<->web server HTTP leg and of the web server<->application
FastCGI leg, rebuilds every TCP stream, decodes both protocols and
compares the body the client received with the body the application sent.
Bytes that a capture lacks are reported as unobserved, never as corrupted.
Frame numbers are 1-based, as Wireshark shows them.
"""

EPILOG = """\
commands:
  diff CLIENT [UPSTREAM]   compare each response on both legs and name the
                           hop that corrupted it (the main job)
  streams FILE...          list the TCP connections and what each capture lacks
  http FILE...             list the HTTP/1.x exchanges of a client leg
  fcgi FILE...             list the FastCGI requests of an upstream leg

exit status:
  0   success; for diff: no exchange is corrupted
  1   diff found at least one corrupted exchange
  2   an input could not be read, or the command line was wrong

examples:
  fcgiforensics diff client.pcap upstream.pcap
  fcgiforensics diff --json both-legs.pcapng > report.json
  fcgiforensics streams -i capture.pcap.gz
  fcgiforensics http client.pcap --body 3 -o body.bin

Run 'fcgiforensics COMMAND --help' for a command's options.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fcgiforensics",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks and debug logging"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed its one line
        return 2 if exc.code not in (0, None) else 0
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(name)s: %(message)s",
    )
    try:
        status: int = args.run(args)
        return status
    except FcgiForensicsError as exc:
        if args.debug:
            raise
        print(f"fcgiforensics: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fcgiforensics: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
