"""The Testbed: nginx in front of one FastCGI backend, both legs captured."""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from .backends import PHP_FPM, PHP_SCRIPT, BackendKind, start_backend
from .capture import TCPDUMP, CaptureStats, Tcpdump, check_tcpdump
from .clients import CURL, FetchResult, curl_fetch, http_client_fetch_many
from .nginx import NGINX, NginxOptions, start_nginx
from .procs import ManagedProcess, TestbedError, free_port, wait_listening
from .relay import Relay, RelayEvent, RelayFault

__all__ = ["Testbed", "unavailable_reason"]


def unavailable_reason(backend: BackendKind | None = None) -> str | None:
    """Why the testbed cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "the testbed runs nginx, php-fpm and tcpdump as root; not root"
    needed = [NGINX, TCPDUMP, CURL]
    if backend in (None, "php"):
        needed.append(PHP_FPM)
    missing = [path for path in needed if shutil.which(path) is None]
    if missing:
        return f"missing {', '.join(missing)} (run .ci/install)"
    if backend in (None, "flup", "flup-fork"):
        try:
            import flup  # type: ignore[import-untyped]  # noqa: F401
        except ImportError:
            return "flup is not installed (pip install flup)"
    try:
        check_tcpdump("lo")
    except TestbedError as exc:
        return str(exc)
    return None


class Testbed:
    """nginx on a free port, fastcgi_pass to one backend, tcpdump on both legs.

    Use it as a context manager; everything lives under ``workdir`` and is
    stopped on exit, after which :attr:`client_pcap` and
    :attr:`upstream_pcap` are complete.  With ``relay_faults`` (or
    ``relay=True``) clients connect to a :class:`Relay` in front of nginx
    and the client-leg capture is taken between client and relay.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        workdir: Path,
        backend: BackendKind = "flup",
        *,
        gzip: bool = False,
        keep_conn: bool = False,
        buffering: bool = True,
        relay_faults: Sequence[RelayFault] = (),
        relay: bool | None = None,
        snaplen: int | None = None,
        any_iface: bool = False,
        capture: bool = True,
        fork_timeout: int | None = None,
        workers: int = 4,
        nginx_extra_http: str = "",
        nginx_extra_location: str = "",
        read_timeout: str | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.backend = backend
        self.options = NginxOptions(
            gzip=gzip,
            keep_conn=keep_conn,
            buffering=buffering,
            script=str(PHP_SCRIPT),
            extra_http=nginx_extra_http,
            extra_location=nginx_extra_location,
        )
        if read_timeout is not None:
            self.options = dataclasses.replace(
                self.options, read_timeout=read_timeout
            )
        self.relay_faults = list(relay_faults)
        self.use_relay = bool(relay_faults) if relay is None else relay
        self.snaplen = snaplen
        self.interface = "any" if any_iface else "lo"
        self.capture = capture
        self.fork_timeout = fork_timeout
        self.workers = workers

        self.fcgi_port = 0
        self.nginx_port = 0
        self.relay_port: int | None = None
        self.relay: Relay | None = None
        self.client_stats: CaptureStats | None = None
        self.upstream_stats: CaptureStats | None = None
        self._processes: list[ManagedProcess] = []
        self._dumps: list[Tcpdump] = []
        self._fetches = 0
        self._running = False

    # Paths and ports -------------------------------------------------

    @property
    def client_pcap(self) -> Path:
        """Capture of the client leg (client <-> relay, or client <-> nginx)."""
        return self.workdir / "client.pcap"

    @property
    def upstream_pcap(self) -> Path:
        """Capture of the FastCGI leg (nginx <-> backend)."""
        return self.workdir / "upstream.pcap"

    @property
    def error_log(self) -> Path:
        """nginx's error log."""
        return self.workdir / "nginx" / "error.log"

    @property
    def access_log(self) -> Path:
        """nginx's access log."""
        return self.workdir / "nginx" / "access.log"

    @property
    def client_port(self) -> int:
        """The port HTTP clients connect to (the relay's when there is one)."""
        return self.relay_port if self.relay_port is not None else self.nginx_port

    @property
    def relay_events(self) -> list[RelayEvent]:
        """Faults the relay applied so far."""
        return list(self.relay.events) if self.relay is not None else []

    # Life cycle --------------------------------------------------------

    def __enter__(self) -> Testbed:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start backend, nginx, relay and captures; return when all are ready."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "fetches").mkdir(exist_ok=True)
        if self.capture:
            check_tcpdump(self.interface)
        self.fcgi_port = free_port()
        self.nginx_port = free_port()
        self._running = True
        try:
            self._start_all()
        except BaseException:
            self.stop()
            raise

    def _start_all(self) -> None:
        # Step 1: spawn every process at once; each needs only its port.
        backend = start_backend(
            self.backend,
            self.fcgi_port,
            self.workdir / "backend",
            fork_timeout=self.fork_timeout,
            workers=self.workers,
        )
        self._processes.append(backend)
        nginx = start_nginx(
            self.workdir / "nginx", self.nginx_port, self.fcgi_port, self.options
        )
        self._processes.append(nginx)
        if self.use_relay:
            self.relay_port = free_port()
            self.relay = Relay(self.relay_port, self.nginx_port, self.relay_faults)
        if self.capture:
            self._dumps = [
                Tcpdump(
                    self.client_pcap,
                    f"tcp port {self.client_port}",
                    interface=self.interface,
                    snaplen=self.snaplen,
                ),
                Tcpdump(
                    self.upstream_pcap,
                    f"tcp port {self.fcgi_port}",
                    interface=self.interface,
                    snaplen=self.snaplen,
                ),
            ]
            for dump in self._dumps:
                dump.spawn()

        # Step 2: wait.  Readiness is read from /proc, so no probe
        # connection ends up in the captures.
        wait_listening([(backend, self.fcgi_port), (nginx, self.nginx_port)])
        for dump in self._dumps:
            dump.wait_listening()

    def stop(self) -> None:
        """Stop everything (relay, nginx, backend, then captures); idempotent."""
        if not self._running:
            return
        self._running = False
        errors = []
        if self.relay is not None:
            self.relay.stop()
        # nginx first, so its graceful close of idle connections on both
        # legs is captured; then the backend; the captures last.
        for process in reversed(self._processes):
            process.stop()
        self._processes.clear()
        for dump in self._dumps:
            try:
                dump.stop()
            except TestbedError as exc:
                errors.append(str(exc))
        if len(self._dumps) == 2:
            self.client_stats = self._dumps[0].stats
            self.upstream_stats = self._dumps[1].stats
        self._dumps.clear()
        if errors:
            raise TestbedError("\n".join(errors))

    # Traffic -------------------------------------------------------------

    def fetch(
        self,
        uri: str,
        *,
        raw: bool = False,
        accept_gzip: bool = False,
        headers: Sequence[tuple[str, str]] = (),
        timeout: float = 10.0,
    ) -> FetchResult:
        """GET ``uri`` with curl on a fresh connection and save the body.

        ``raw`` keeps the chunked wire form in ``saved`` (curl ``--raw``);
        ``accept_gzip`` sends ``Accept-Encoding: gzip`` (curl does not
        decompress; :attr:`FetchResult.body` is decompressed).
        """
        self._check_running()
        extra = list(headers)
        if accept_gzip:
            extra.append(("Accept-Encoding", "gzip"))
        self._fetches += 1
        return curl_fetch(
            self.client_port,
            uri,
            self.workdir / "fetches",
            self._fetches,
            raw=raw,
            headers=extra,
            timeout=timeout,
        )

    def fetch_many(
        self,
        uris: Sequence[str],
        *,
        concurrency: int = 8,
        accept_gzip: bool = False,
        headers: Sequence[tuple[str, str]] = (),
        timeout: float = 10.0,
    ) -> list[FetchResult]:
        """GET each of ``uris`` with http.client over ``concurrency`` keep-alive
        connections; results come back in the order of ``uris``."""
        self._check_running()
        extra = list(headers)
        if accept_gzip:
            extra.append(("Accept-Encoding", "gzip"))
        return http_client_fetch_many(
            self.client_port,
            uris,
            concurrency=concurrency,
            headers=extra,
            timeout=timeout,
        )

    def nginx_errors(self) -> str:
        """nginx's error log so far, for assertion messages."""
        try:
            return self.error_log.read_text(errors="replace")
        except OSError:
            return ""

    def _check_running(self) -> None:
        if not self._running:
            raise TestbedError("the testbed is not running; use it in a with-block")
        for process in self._processes:
            process.check_running()
