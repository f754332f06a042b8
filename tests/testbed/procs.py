"""Child processes, free ports and readiness checks for the testbed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "TestbedError",
    "ManagedProcess",
    "free_port",
    "is_listening",
    "wait_listening",
]

# Readiness is polled this often; short enough that a start costs little
# more than the program's own start-up.
POLL_SECONDS = 0.005

# /proc/net/tcp state code of a listening socket (include/net/tcp_states.h).
_TCP_LISTEN = "0A"


class TestbedError(Exception):
    """The testbed could not start, run or stop one of its parts."""

    __test__ = False  # not a pytest test class


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def is_listening(port: int) -> bool:
    """Tell whether some socket listens on 127.0.0.1:``port`` (or any address).

    This reads /proc/net/tcp instead of connecting, so checking readiness
    puts no packets on the wire for the captures to see.
    """
    wanted = {f"0100007F:{port:04X}", f"00000000:{port:04X}"}
    with open("/proc/net/tcp", encoding="ascii") as table:
        next(table)
        for line in table:
            fields = line.split()
            if fields[1] in wanted and fields[3] == _TCP_LISTEN:
                return True
    return False


class ManagedProcess:
    """One child process in its own session, with its output in a log file.

    The child leads a new process group, so :meth:`stop` reaches the
    workers it forks (nginx, php-fpm and flup's prefork server all fork).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.stop_signal = stop_signal
        with open(log_path, "wb") as log:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )

    def log_tail(self, limit: int = 2000) -> str:
        """The last ``limit`` characters of the child's output."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-limit:]

    def check_running(self) -> None:
        """Raise TestbedError if the child has already exited."""
        code = self.popen.poll()
        if code is not None:
            raise TestbedError(
                f"{self.name} exited with status {code}: {' '.join(self.argv)}\n"
                f"--- {self.log_path} ---\n{self.log_tail()}"
            )

    def stop(self, timeout: float = 3.0) -> int:
        """Signal the child's group, wait, and SIGKILL the group if needed."""
        if self.popen.poll() is None:
            self._signal_group(self.stop_signal)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait(timeout)
        # Workers that outlive their master are ours too; end them.
        self._signal_group(signal.SIGKILL)
        return self.popen.returncode

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.popen.pid, signum)
        except ProcessLookupError:
            pass


def wait_listening(
    processes: Sequence[tuple[ManagedProcess, int]], timeout: float = 10.0
) -> None:
    """Wait until each process listens on its port, or raise TestbedError."""
    deadline = time.monotonic() + timeout
    pending = list(processes)
    while pending:
        for process, _ in pending:
            process.check_running()
        pending = [(proc, port) for proc, port in pending if not is_listening(port)]
        if not pending:
            return
        if time.monotonic() > deadline:
            names = ", ".join(f"{proc.name} on {port}" for proc, port in pending)
            tails = "\n".join(
                f"--- {proc.log_path} ---\n{proc.log_tail()}" for proc, _ in pending
            )
            raise TestbedError(f"not listening after {timeout}s: {names}\n{tails}")
        time.sleep(POLL_SECONDS)
