"""Run tcpdump on loopback for one leg of the testbed."""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from .procs import TestbedError

__all__ = ["TCPDUMP", "CaptureStats", "Tcpdump", "check_tcpdump"]

TCPDUMP = "/usr/bin/tcpdump"

# How long tcpdump may take to open the interface.  It usually needs a few
# tens of milliseconds; the margin covers a loaded CI machine.
_START_TIMEOUT = 10.0

# After the traffic, the pcap is "settled" once its size has not changed
# for this long (tcpdump writes each packet at once with -U and
# --immediate-mode), or when the cap runs out.
_SETTLE_QUIET = 0.03
_SETTLE_CAP = 2.0

# Kernel socket buffer for the capture, in KiB (-B).  A 1 MB response on
# loopback arrives in a burst of 64 KiB segments; on a loaded 2-core
# machine 32 MiB still overflowed now and then, so take 128 MiB.
_BUFFER_KIB = 131072

_COUNTS = re.compile(rb"(\d+) packets? (captured|received by filter|dropped by kernel)")


@dataclass(frozen=True, slots=True)
class CaptureStats:
    """tcpdump's own counters, printed when it stops."""

    captured: int
    received_by_filter: int
    dropped_by_kernel: int


def check_tcpdump(interface: str) -> None:
    """Raise TestbedError unless tcpdump exists and lists ``interface``."""
    if shutil.which(TCPDUMP) is None:
        raise TestbedError(f"{TCPDUMP} is missing; install tcpdump")
    listing = subprocess.run(
        [TCPDUMP, "-D"], capture_output=True, text=True, timeout=10, check=False
    )
    if listing.returncode != 0:
        raise TestbedError(f"tcpdump -D failed: {listing.stderr.strip()}")
    names = {line.split(".", 1)[1].split()[0] for line in listing.stdout.splitlines()}
    if interface not in names:
        raise TestbedError(
            f"tcpdump cannot capture on {interface!r}; tcpdump -D lists: "
            + ", ".join(sorted(names))
        )


class Tcpdump:
    """One tcpdump process writing ``path`` for packets matching ``bpf``.

    :meth:`start` returns once tcpdump says it is listening, so no packet
    of the traffic that follows is missed.  :meth:`stop` waits for the file
    to settle, sends SIGINT and reads tcpdump's counters.
    """

    def __init__(
        self,
        path: Path,
        bpf: str,
        *,
        interface: str = "lo",
        snaplen: int | None = None,
    ) -> None:
        self.path = path
        self.bpf = bpf
        self.interface = interface
        self.snaplen = snaplen
        self.stats: CaptureStats | None = None
        self._stderr = b""
        self._popen: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        """The tcpdump command line."""
        argv = [TCPDUMP, "-i", self.interface, "-n", "-U", "--immediate-mode"]
        argv += ["-B", str(_BUFFER_KIB), "-w", str(self.path)]
        if self.snaplen is not None:
            argv += ["-s", str(self.snaplen)]
        return [*argv, self.bpf]

    def spawn(self) -> None:
        """Start tcpdump; call :meth:`wait_listening` before any traffic."""
        self._popen = subprocess.Popen(
            self.argv(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def wait_listening(self) -> None:
        """Block until tcpdump reports "listening on", or raise TestbedError."""
        popen = self._require()
        assert popen.stderr is not None
        deadline = time.monotonic() + _START_TIMEOUT
        while b"listening on" not in self._stderr:
            left = deadline - time.monotonic()
            if left <= 0:
                self._fail(f"no 'listening on' after {_START_TIMEOUT}s")
            ready, _, _ = select.select([popen.stderr], [], [], left)
            if not ready:
                continue
            data = os.read(popen.stderr.fileno(), 4096)
            if not data:
                popen.wait(5)
                self._fail(f"exited with status {popen.returncode}")
            self._stderr += data

    def start(self) -> None:
        """:meth:`spawn` and :meth:`wait_listening`."""
        self.spawn()
        self.wait_listening()

    def stop(self) -> CaptureStats:
        """Let the file settle, stop tcpdump with SIGINT and return its counters."""
        popen = self._require()
        self._settle()
        if popen.poll() is None:
            popen.send_signal(signal.SIGINT)
        try:
            _, rest = popen.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            popen.kill()
            _, rest = popen.communicate()
        self._stderr += rest
        if popen.returncode not in (0, -signal.SIGINT):
            self._fail(f"exited with status {popen.returncode}")
        self.stats = self._parse_counts()
        return self.stats

    def _settle(self) -> None:
        deadline = time.monotonic() + _SETTLE_CAP
        size = -1
        while time.monotonic() < deadline:
            now = self.path.stat().st_size if self.path.exists() else 0
            if now == size:
                return
            size = now
            time.sleep(_SETTLE_QUIET)

    def _parse_counts(self) -> CaptureStats:
        counts = {kind: int(number) for number, kind in _COUNTS.findall(self._stderr)}
        return CaptureStats(
            captured=counts.get(b"captured", 0),
            received_by_filter=counts.get(b"received by filter", 0),
            dropped_by_kernel=counts.get(b"dropped by kernel", 0),
        )

    def _require(self) -> subprocess.Popen[bytes]:
        if self._popen is None:
            raise TestbedError("tcpdump was not started")
        return self._popen

    def _fail(self, what: str) -> NoReturn:
        popen = self._require()
        if popen.poll() is None:
            popen.kill()
            popen.wait()
        stderr = self._stderr.decode(errors="replace").strip()
        raise TestbedError(
            f"tcpdump on {self.interface} ({self.bpf!r}) {what}: "
            f"{' '.join(self.argv())}\n{stderr}"
        )
