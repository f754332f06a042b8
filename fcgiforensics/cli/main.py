"""The ``fcgiforensics`` command: parse arguments, run, print, exit.

Only this layer writes to the terminal and configures logging.  A bad
command line, an input that cannot be read or an output that cannot be
written print one line and exit with status 2; any other exception is a
bug of this tool and exits with status 3, never 1 (which means
"corrupted").  ``--debug`` shows the traceback instead of the line.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from .. import __version__
from ..errors import FcgiForensicsError
from . import commands

__all__ = ["main", "build_parser", "EXIT_USAGE", "EXIT_INTERNAL"]

#: Exit status of a bad command line, or of input or output that cannot
#: be read or written (REPORT.md).
EXIT_USAGE = 2

#: Exit status of an unexpected exception: a bug, not a verdict.
EXIT_INTERNAL = 3

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
  2   an input could not be read, an output could not be written, or
      the command line was wrong (one line on stderr says which)
  3   internal error: a bug in fcgiforensics (run again with --debug)

examples:
  fcgiforensics diff client.pcap upstream.pcap
  fcgiforensics diff --json both-legs.pcapng > report.json
  fcgiforensics streams capture.pcap.gz
  fcgiforensics http client.pcap --body 3 -o body.bin

Run 'fcgiforensics COMMAND --help' for a command's options.
"""


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line (REPORT.md: exit 2, one line)."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        self.exit(EXIT_USAGE, f"fcgiforensics: {text} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    # Subparsers are made of the same class, so their errors are one line too.
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.register(sub)
    return parser


def _one_line(exc: BaseException) -> str:
    """The exception's message with its line breaks folded into spaces."""
    return " ".join(str(exc).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.error("a command is needed: diff, streams, http or fcgi")
    except SystemExit as exc:  # usage error already printed, or --help
        return EXIT_USAGE if exc.code not in (0, None) else 0
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
        print(f"fcgiforensics: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("fcgiforensics: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        # A bug: exit 1 would read as "corrupted" to a script.
        if args.debug:
            raise
        print(
            f"fcgiforensics: internal error: {type(exc).__name__}: "
            f"{_one_line(exc)} (run again with --debug for a traceback; "
            "please report it)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
