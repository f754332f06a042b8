"""The one exception root, and the errors that stop a run.

Damage *inside* a capture is not an error: it becomes an :class:`Anomaly`
and the run goes on.  These classes are for input that cannot be read at
all, an output file that cannot be written, or a command line that
makes no sense.
"""

from __future__ import annotations

__all__ = [
    "FcgiForensicsError",
    "CaptureError",
    "CaptureFormatError",
    "OutputError",
    "UsageError",
    "StrictModeError",
]


class FcgiForensicsError(Exception):
    """Root of every error this package raises on purpose."""


class CaptureError(FcgiForensicsError):
    """A capture file cannot be opened or read.

    ``offset`` is the file offset of the problem (in the decompressed
    bytes for a gzip file) and ``frame`` the 1-based number of the
    record being read, when known.
    """

    def __init__(
        self,
        path: str,
        reason: str,
        *,
        offset: int | None = None,
        frame: int | None = None,
    ) -> None:
        self.path = path
        self.reason = reason
        self.offset = offset
        self.frame = frame
        super().__init__(str(self))

    def __str__(self) -> str:
        where = [self.path]
        if self.frame is not None:
            where.append(f"frame {self.frame}")
        if self.offset is not None:
            where.append(f"file offset {self.offset:#x}")
        head = where[0] + ": " + " ".join(where[1:]) if len(where) > 1 else where[0]
        return f"{head}: {self.reason}"


class CaptureFormatError(CaptureError):
    """The file is not a capture this tool can read (wrong magic, bad header)."""


class OutputError(FcgiForensicsError):
    """A file the user asked for cannot be written.

    ``option`` is the command-line option that named it (``--html``,
    ``-o``), when there is one.
    """

    def __init__(self, path: str, reason: str, *, option: str | None = None) -> None:
        self.path = path
        self.reason = reason
        self.option = option
        super().__init__(str(self))

    def __str__(self) -> str:
        named = f"{self.option} {self.path}" if self.option else self.path
        return f"{named}: cannot write it: {self.reason}"


class UsageError(FcgiForensicsError):
    """The command line or an API call asks for something impossible."""


class StrictModeError(FcgiForensicsError):
    """Raised in strict mode on the first anomaly; carries it."""

    def __init__(self, anomaly: object) -> None:
        self.anomaly = anomaly
        super().__init__(str(anomaly))
