"""Benchmark: fcgiforensics against tcpflow and tshark on the same capture.

    python benchmarks/bench.py                 # reassembly (streams)
    python benchmarks/bench.py --size-mb 400   # a larger capture

It writes a synthetic capture under benchmarks/data/ (HTTP/1.1 responses
of 1 MB over keep-alive connections, cut into 1448-byte segments, with
ACKs as a real receiver sends them), then runs, one after the other:

* ``fcgiforensics streams FILE`` (reassembly of every connection),
* ``tcpflow -r FILE -o DIR`` (splitting the capture into flow files),
* ``tshark -r FILE -q --export-objects http,DIR`` (HTTP reassembly),

and prints wall time, peak memory (max RSS) and the ratios.  Timings are
measured, never asserted: this is not a test.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from fcgiforensics.testing import Conversation, pcap_bytes  # noqa: E402

RESPONSE = 1_000_000
GNU_TIME = "/usr/bin/time"  # Debian package "time"


def make_capture(path: Path, size_mb: int, seed: int = 1) -> tuple[int, int]:
    """Write the benchmark capture; returns (packets, bytes)."""
    rng = random.Random(seed)
    body = rng.randbytes(RESPONSE)
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: %d\r\n\r\n" % RESPONSE
    )
    packets = 0
    written = 0
    with open(path, "wb") as out:
        conn_index = 0
        while written < size_mb * 1_000_000:
            conv = Conversation(
                client="192.168.1.10",
                client_port=40000 + conn_index,
                server="192.168.1.20",
                server_port=80,
                client_isn=rng.getrandbits(32),
                server_isn=rng.getrandbits(32),
                start_ns=1_765_000_000_000_000_000 + conn_index * 10**9,
            )
            conv.handshake()
            for i in range(10):  # ten requests per keep-alive connection
                conv.send_to_server(
                    b"GET /file?n=%d HTTP/1.1\r\nHost: bench\r\n\r\n" % i
                )
                sent = conv.send_to_client(head + body)
                # A receiver acknowledges every second segment.
                for _ in range(len(sent) // 2):
                    conv.ack_to_client()
            conv.close()
            frames = conv.frames()
            data = pcap_bytes(frames)
            out.write(data if written == 0 else data[24:])
            written += len(data)
            packets += len(frames)
            conn_index += 1
    return packets, written


def measure(cmd: list[str], cwd: Path) -> tuple[float, int, int]:
    """Run ``cmd``; return (wall seconds, max RSS in KiB, exit status).

    Peak memory comes from GNU time: a child forked from this Python
    process would count this process's memory before its exec as its own.
    """
    report = cwd / "time.out"
    start = time.perf_counter()
    proc = subprocess.run(
        [GNU_TIME, "-f", "%M", "-o", str(report), *cmd],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    wall = time.perf_counter() - start
    rss = int(report.read_text().split()[-1])
    return wall, rss, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=220)
    parser.add_argument(
        "--keep", action="store_true", help="keep the generated capture for another run"
    )
    args = parser.parse_args()
    if not os.path.exists(GNU_TIME):
        print("needs GNU time: apt-get install time", file=sys.stderr)
        return 2

    data_dir = HERE / "data"
    data_dir.mkdir(exist_ok=True)
    capture = data_dir / f"bench-{args.size_mb}mb.pcap"
    if not capture.exists():
        print(f"writing {capture} ...", flush=True)
        packets, size = make_capture(capture, args.size_mb)
        print(f"  {packets} packets, {size / 1e6:.0f} MB")
    size = capture.stat().st_size

    work = Path(tempfile.mkdtemp(prefix="fcgif-bench-"))
    runs: dict[str, list[str]] = {
        "fcgiforensics streams": [
            sys.executable,
            "-m",
            "fcgiforensics",
            "streams",
            "--json",
            str(capture),
        ],
        "tcpflow -r": ["tcpflow", "-r", str(capture), "-o", str(work / "tcpflow")],
        "tshark --export-objects http": [
            "tshark",
            "-r",
            str(capture),
            "-q",
            "--export-objects",
            f"http,{work / 'tshark'}",
        ],
    }
    results: dict[str, tuple[float, int, int]] = {}
    for name, cmd in runs.items():
        if shutil.which(cmd[0]) is None:
            print(f"{name}: not installed, skipped")
            continue
        results[name] = measure(cmd, work)
        wall, rss, code = results[name]
        print(f"{name:<32} {wall:8.2f} s  {rss / 1024:8.0f} MiB  exit {code}")
    shutil.rmtree(work, ignore_errors=True)

    ours = results.get("fcgiforensics streams")
    if ours:
        print(f"\ncapture: {size / 1e6:.0f} MB")
        print(f"peak memory / file size: {ours[1] * 1024 / size:.2f}")
        for name, (wall, _rss, _) in results.items():
            if name != "fcgiforensics streams":
                print(f"fcgiforensics time / {name} time: {ours[0] / wall:.2f}")
    if not args.keep:
        capture.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
