"""Start the FastCGI backends: flup (threaded or prefork), php-fpm, faults.

Each backend is a separate process listening on 127.0.0.1:``port``;
:func:`start_backend` returns it without waiting (see
:func:`testbed.procs.wait_listening`), so several parts start in parallel.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Literal

from .procs import ManagedProcess, TestbedError

__all__ = [
    "BackendKind",
    "BACKEND_KINDS",
    "PHP_FPM",
    "PHP_SCRIPT",
    "start_backend",
]

BackendKind = Literal["flup", "flup-fork", "php", "fault"]
BACKEND_KINDS: tuple[BackendKind, ...] = ("flup", "flup-fork", "php", "fault")

PHP_FPM = "/usr/sbin/php-fpm8.2"

# The directory that holds the ``testbed`` package, put on PYTHONPATH of
# the Python backends so ``python -m testbed.<module>`` works.
_PACKAGE_PARENT = Path(__file__).resolve().parent.parent

PHP_SCRIPT = Path(__file__).resolve().parent / "php" / "body.php"

# php-fpm settings that make the PHP side transparent: no output buffer,
# so each flush() becomes its own STDOUT record, and no compression.
_PHP_INI = """\
output_buffering = 0
implicit_flush = 0
zlib.output_compression = Off
expose_php = Off
display_errors = stderr
log_errors = On
memory_limit = 512M
"""


def _python_env() -> dict[str, str]:
    env = dict(os.environ)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(_PACKAGE_PARENT) + (os.pathsep + old if old else "")
    return env


def start_backend(
    kind: BackendKind,
    port: int,
    workdir: Path,
    *,
    fork_timeout: int | None = None,
    workers: int = 4,
) -> ManagedProcess:
    """Start one backend of ``kind`` on ``port``, with its files in ``workdir``.

    ``fork_timeout`` is flup's per-request timeout in seconds (prefork
    only); ``workers`` the number of flup prefork children or php-fpm
    workers.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{kind}.log"
    python = [sys.executable, "-u", "-m"]

    if kind in ("flup", "flup-fork"):
        argv = [*python, "testbed.flup_app", "--port", str(port)]
        if kind == "flup-fork":
            argv += ["--fork", "--children", str(workers)]
            if fork_timeout is not None:
                argv += ["--timeout", str(fork_timeout)]
        # flup's threaded server notices SIGTERM only when its 1 s select()
        # times out; it holds no state worth a clean exit, so kill it.
        return ManagedProcess(
            kind, argv, log, env=_python_env(), cwd=workdir, stop_signal=signal.SIGKILL
        )

    if kind == "fault":
        argv = [*python, "testbed.fcgi_fault_server", "--port", str(port)]
        return ManagedProcess(kind, argv, log, env=_python_env(), cwd=workdir)

    if kind == "php":
        return _start_php_fpm(port, workdir, log, workers)

    raise TestbedError(f"unknown backend {kind!r}; choose one of {BACKEND_KINDS}")


def _start_php_fpm(port: int, workdir: Path, log: Path, workers: int) -> ManagedProcess:
    if shutil.which(PHP_FPM) is None:
        raise TestbedError(f"{PHP_FPM} is missing; install php-fpm")
    ini = workdir / "php.ini"
    ini.write_text(_PHP_INI)
    conf = workdir / "php-fpm.conf"
    conf.write_text(
        f"""\
[global]
pid = {workdir}/php-fpm.pid
error_log = {workdir}/php-fpm-error.log
daemonize = no

[testbed]
user = root
group = root
listen = 127.0.0.1:{port}
pm = static
pm.max_children = {workers}
catch_workers_output = yes
clear_env = yes
"""
    )
    # -F: stay in the foreground; -R: allow running as root; -c and -y:
    # our own php.ini and pool, nothing from /etc.
    argv = [PHP_FPM, "-F", "-R", "-c", str(ini), "-y", str(conf)]
    return ManagedProcess("php-fpm", argv, log, cwd=workdir)
