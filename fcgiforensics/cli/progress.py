"""A one-line progress bar on stderr, shown only on a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]

#: Seconds between redraws; faster only costs time on long runs.
REDRAW_EVERY = 0.1


class Progress:
    """Draws ``label [#####     ] 45% 120/260 MB`` on ``stream``.

    Silent when ``stream`` is not a terminal (a pipe, CI, a notebook), so
    that scripted use never sees control characters.
    """

    def __init__(
        self, label: str, stream: TextIO | None = None, enabled: bool | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        self.label = label
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._last = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < REDRAW_EVERY and done < total:
            return
        self._last = now
        share = done / total if total else 1.0
        bar = "#" * int(share * 20)
        self.stream.write(
            f"\r{self.label} [{bar:<20}] {share:4.0%} "
            f"{done / 1e6:.0f}/{total / 1e6:.0f} MB"
        )
        self.stream.flush()
        self._drawn = True

    def done(self) -> None:
        """Erase the bar so that the report starts on a clean line."""
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False
