"""The progress bar: drawn on a terminal, silent anywhere else."""

from __future__ import annotations

import io

from fcgiforensics.cli.progress import Progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_on_a_terminal_and_erases_itself() -> None:
    """On a terminal the bar shows label, share and megabytes, and done()
    erases it so that the report starts on a clean line."""
    out = _Tty()
    bar = Progress("reading c.pcap", out)
    bar(50_000_000, 200_000_000)
    assert "reading c.pcap [#####" in out.getvalue()
    assert "25% 50/200 MB" in out.getvalue()
    bar.done()
    assert out.getvalue().endswith("\r\x1b[K")


def test_progress_is_silent_when_not_a_terminal() -> None:
    """Piped or in CI, nothing is written: scripts never see the bar."""
    out = io.StringIO()
    bar = Progress("reading c.pcap", out)
    bar(1, 2)
    bar(2, 2)
    bar.done()
    assert out.getvalue() == ""
