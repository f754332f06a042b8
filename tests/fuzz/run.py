"""Run one atheris harness for a while, seeded from the repository's captures.

Usage (from the repository root; needs ``pip install atheris``)::

    python tests/fuzz/run.py capture --seconds 180
    python tests/fuzz/run.py http1 --seconds 180 --jobs 1
    python tests/fuzz/run.py fastcgi --seconds 180

Seeds come from captures/ and tests/corpus/: the capture harness gets
the files themselves, the decoder harnesses get each connection's
reassembled streams as call scripts (see tests/fuzz/pipeline.py).  The
working corpus and any crash inputs go under ``--work`` (default: a
directory in /tmp).  A crash input is also copied to
tests/corpus/fuzz/HARNESS/, where tests/test_corpus.py replays it; add a
line to tests/corpus/README.md saying what it found.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))

from tests.fuzz.pipeline import encode_calls, record_connections  # noqa: E402

HARNESSES = {"capture": "fuzz_capture.py", "http1": "fuzz_http1.py",
             "fastcgi": "fuzz_fastcgi.py"}
PROTOCOL = {"http1": "http", "fastcgi": "fcgi"}

#: Largest input the fuzzer makes (libFuzzer -max_len); longer seeds are
#: cut to it.  Damage shows in small inputs, and speed finds more of it.
MAX_LEN = 16 * 1024

#: Seeds whose one run takes longer than this (seconds) are left out:
#: a decompression bomb would otherwise take most of the fuzzer's time.
SLOW_SEED = 0.2


def _capture_files() -> list[Path]:
    found: list[Path] = []
    for folder in (REPO / "captures", REPO / "tests" / "corpus"):
        if folder.is_dir():
            found += [p for p in sorted(folder.iterdir())
                      if p.is_file() and p.suffix in (".pcap", ".pcapng", ".gz")]
    return found


def _fast(harness: str, data: bytes) -> bool:
    """True when one run of ``data`` stays under :data:`SLOW_SEED`."""
    spec = importlib.util.spec_from_file_location(
        f"seed_{harness}", HERE / HARNESSES[harness])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    start = time.monotonic()
    try:
        module.one_input(data[:MAX_LEN])
    except Exception:  # a crashing seed is still a good seed
        pass
    return time.monotonic() - start < SLOW_SEED


def write_seeds(harness: str, seeds: Path) -> int:
    """Fill ``seeds`` with starting inputs for ``harness``; returns the count."""
    count = 0
    for path in _capture_files():
        if harness == "capture":
            data = path.read_bytes()
            if _fast(harness, data):
                (seeds / path.name).write_bytes(data)
                count += 1
            continue
        try:
            sinks = record_connections(str(path))
        except Exception:  # unreadable inputs give no streams to seed
            continue
        for i, sink in enumerate(sinks):
            if sink.protocol != PROTOCOL[harness]:
                continue
            script = encode_calls(sink.calls)
            if _fast(harness, script):
                (seeds / f"{path.name}.{i}").write_bytes(script)
                count += 1
    return count


def keep_crashes(harness: str, work: Path) -> list[Path]:
    """Copy crash inputs into tests/corpus/fuzz/HARNESS/, named by hash."""
    target = REPO / "tests" / "corpus" / "fuzz" / harness
    kept: list[Path] = []
    for crash in sorted(work.glob("crash-*")) + sorted(work.glob("oom-*")) \
            + sorted(work.glob("timeout-*")):
        data = crash.read_bytes()
        target.mkdir(parents=True, exist_ok=True)
        name = f"{crash.name.split('-')[0]}-{hashlib.sha1(data).hexdigest()[:12]}"
        shutil.copyfile(crash, target / name)
        kept.append(target / name)
    return kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("harness", choices=sorted(HARNESSES))
    parser.add_argument("--seconds", type=int, default=180)
    parser.add_argument("--jobs", type=int, default=1,
                        help="parallel fuzzing processes (libFuzzer -fork)")
    parser.add_argument("--work", type=Path, default=None,
                        help="directory for the working corpus and crashes")
    parser.add_argument("--rss-mb", type=int, default=2048,
                        help="memory limit of one execution")
    args = parser.parse_args(argv)

    work = args.work or Path(tempfile.mkdtemp(prefix=f"fuzz-{args.harness}-"))
    corpus = work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    seeds = work / "seeds"
    seeds.mkdir(exist_ok=True)
    print(f"{write_seeds(args.harness, seeds)} seeds in {seeds}", flush=True)

    command = [sys.executable, str(HERE / HARNESSES[args.harness]),
               f"-max_total_time={args.seconds}",
               f"-rss_limit_mb={args.rss_mb}", "-timeout=20",
               f"-max_len={MAX_LEN}",
               "-print_final_stats=1", f"-artifact_prefix={work}/",
               str(corpus), str(seeds)]
    if args.jobs > 1:
        command.insert(2, f"-fork={args.jobs}")
        command.insert(3, "-ignore_crashes=1")
    status = subprocess.call(command, cwd=REPO)

    kept = keep_crashes(args.harness, work)
    for path in kept:
        print(f"crash input kept: {path.relative_to(REPO)}")
    print(f"work directory: {work}; fuzzer exit status {status}")
    return 1 if kept else 0


if __name__ == "__main__":
    sys.exit(main())
