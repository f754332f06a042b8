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

from fcgiforensics.testing import (  # noqa: E402
    Conversation,
    pcap_bytes,
    two_leg_exchanges,
)

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


def make_pair(
    client_path: Path, upstream_path: Path, size_mb: int, seed: int = 2
) -> tuple[int, int]:
    """Write a two-leg pair: 1 MB responses, ten per keep-alive connection;
    the client leg in 1448-byte segments, the upstream leg in 16 KiB ones
    (loopback carries larger segments).  Returns (packets, bytes)."""
    rng = random.Random(seed)
    bodies = [rng.randbytes(RESPONSE) for _ in range(10)]
    packets = written = 0
    with open(client_path, "wb") as c_out, open(upstream_path, "wb") as u_out:
        n = 0
        while written < size_mb * 1_000_000:
            client, upstream = two_leg_exchanges(
                bodies,
                upstream_mss=16384,
                client_port=40000 + n,
                upstream_port=30000 + n,
                start_ns=1_765_000_000_000_000_000 + n * 10**9,
            )
            for frames, out in ((client, c_out), (upstream, u_out)):
                data = pcap_bytes(frames)
                out.write(data if n == 0 else data[24:])
                written += len(data)
                packets += len(frames)
            n += 1
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
        "--diff",
        action="store_true",
        help="benchmark the whole diff on a two-leg pair "
        "(SIZE_MB in all) instead of reassembly alone",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the generated capture for another run"
    )
    args = parser.parse_args()
    if not os.path.exists(GNU_TIME):
        print("needs GNU time: apt-get install time", file=sys.stderr)
        return 2

    data_dir = HERE / "data"
    data_dir.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="fcgif-bench-"))
    if args.diff:
        client = data_dir / f"pair-{args.size_mb}mb-client.pcap"
        upstream = data_dir / f"pair-{args.size_mb}mb-upstream.pcap"
        files = [client, upstream]
        if not client.exists() or not upstream.exists():
            print(f"writing {client} and {upstream} ...", flush=True)
            packets, size = make_pair(client, upstream, args.size_mb)
            print(f"  {packets} packets, {size / 1e6:.0f} MB")
        ours_name = "fcgiforensics diff"
        runs: dict[str, list[list[str]]] = {
            ours_name: [
                [
                    sys.executable,
                    "-m",
                    "fcgiforensics",
                    "diff",
                    "--json",
                    str(client),
                    str(upstream),
                ]
            ],
            "tcpflow -r (both files)": [
                ["tcpflow", "-r", str(f), "-o", str(work / f"tf{i}")]
                for i, f in enumerate(files)
            ],
            "tshark --export-objects http (client)": [
                [
                    "tshark",
                    "-r",
                    str(client),
                    "-q",
                    "--export-objects",
                    f"http,{work / 'tshark'}",
                ]
            ],
        }
    else:
        capture = data_dir / f"bench-{args.size_mb}mb.pcap"
        files = [capture]
        if not capture.exists():
            print(f"writing {capture} ...", flush=True)
            packets, size = make_capture(capture, args.size_mb)
            print(f"  {packets} packets, {size / 1e6:.0f} MB")
        ours_name = "fcgiforensics streams"
        runs = {
            ours_name: [
                [
                    sys.executable,
                    "-m",
                    "fcgiforensics",
                    "streams",
                    "--json",
                    str(capture),
                ]
            ],
            "tcpflow -r": [
                ["tcpflow", "-r", str(capture), "-o", str(work / "tcpflow")]
            ],
            "tshark --export-objects http": [
                [
                    "tshark",
                    "-r",
                    str(capture),
                    "-q",
                    "--export-objects",
                    f"http,{work / 'tshark'}",
                ]
            ],
        }
    size = sum(f.stat().st_size for f in files)

    results: dict[str, tuple[float, int, int]] = {}
    for name, cmds in runs.items():
        if shutil.which(cmds[0][0]) is None:
            print(f"{name}: not installed, skipped")
            continue
        walls, rsss, codes = zip(*(measure(cmd, work) for cmd in cmds), strict=True)
        results[name] = (sum(walls), max(rsss), max(codes))
        wall, rss, code = results[name]
        print(f"{name:<40} {wall:8.2f} s  {rss / 1024:8.0f} MiB  exit {code}")
    shutil.rmtree(work, ignore_errors=True)

    ours = results.get(ours_name)
    if ours:
        print(f"\ncaptures: {size / 1e6:.0f} MB")
        print(f"peak memory / capture size: {ours[1] * 1024 / size:.2f}")
        for name, (wall, _rss, _) in results.items():
            if name != ours_name:
                print(f"{ours_name} time / {name} time: {ours[0] / wall:.2f}")
    if not args.keep:
        for f in files:
            f.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
