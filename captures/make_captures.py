"""Remake the capture pairs of this folder with the testbed.

Run from the repository root, as root (nginx, php-fpm and tcpdump run on
loopback)::

    sudo python3 captures/make_captures.py [NAME ...]

Each pair is a folder holding ``client.pcap`` (client <-> nginx, or
client <-> relay) and ``upstream.pcap`` (nginx <-> FastCGI app).  The
summary each pair must give is fixed by its story, not read back from
the tool: it is written to ``expected.json``, and the script fails when
the tool disagrees.  Ports and timestamps change from one run to the
next; the stories and the counts do not.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import dpkt  # type: ignore[import-untyped]  # noqa: E402

from fcgiforensics.analysis import Analysis, AnalysisOptions, analyze  # noqa: E402
from fcgiforensics.attribution import parse_digest_spec  # noqa: E402
from fcgiforensics.capture.records import read_records  # noqa: E402
from fcgiforensics.testing import Frame, write_pcap  # noqa: E402
from tests.testbed import RelayFault, Testbed, unavailable_reason  # noqa: E402

# Ask nginx to close after the response: a damaged or short response
# then ends at once instead of when a client timeout fires.
CLOSE = [("Connection", "close")]


@dataclass(frozen=True, slots=True)
class Pair:
    """One capture pair: how to make it and the summary it must give."""

    name: str
    make: Callable[[Path, Path], None]
    ok: int = 0
    corrupted: int = 0
    incomplete: int = 0
    unmatched: int = 0
    digest_headers: list[str] = field(default_factory=list)
    #: Which hop each corrupted exchange is blamed on: "app" or "proxy".
    blamed: str = ""

    def hops(self) -> dict[str, int]:
        return {self.blamed: self.corrupted} if self.corrupted else {}

    def summary(self) -> dict[str, int]:
        return {
            "exchanges": self.ok + self.corrupted + self.incomplete + self.unmatched,
            "ok": self.ok,
            "corrupted": self.corrupted,
            "incomplete": self.incomplete,
            "unmatched": self.unmatched,
        }


def _keep(tb: Testbed, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tb.client_pcap, out / "client.pcap")
    shutil.copyfile(tb.upstream_pcap, out / "upstream.pcap")


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise SystemExit(f"make_captures: {what}")


def make_relay_overwrite(work: Path, out: Path) -> None:
    """Four responses; the relay overwrites 16 bytes of the second one."""
    fault = RelayFault("overwrite", 20_000, 16, uri_contains="seed=2&")
    with Testbed(work, backend="flup", relay_faults=[fault]) as tb:
        for seed in range(1, 5):
            tb.fetch(f"/body?size=50000&seed={seed}&mode=length", headers=CLOSE)
    _check(len(tb.relay_events) == 1, "the relay did not fire exactly once")
    _keep(tb, out)


def make_app_digest_lie(work: Path, out: Path) -> None:
    """Honest and lying X-Body-SHA1 and Content-MD5 digests."""
    uris = [
        "/body?size=40000&seed=1&digest=sha1",
        "/body?size=40000&seed=2&digest=sha1&lie=1",
        "/body?size=40000&seed=3&digest=md5",
        "/body?size=40000&seed=4&digest=md5&lie=1&mode=chunked",
    ]
    with Testbed(work, backend="flup", buffering=False) as tb:
        for uri in uris:
            _check(tb.fetch(uri).error is None, f"{uri} failed")
    _keep(tb, out)


def make_app_fault(work: Path, out: Path) -> None:
    """An app that dies mid-body, one that writes a notice on STDERR
    mid-STDOUT, one that crashes mid-body with a traceback on STDERR."""
    uris = [
        "/body?size=60000&seed=1&fault=die&after=20000&mode=chunked",
        "/body?size=30000&seed=2&fault=stderr&after=10000",
        "/body?size=30000&seed=3",
        "/body?size=40000&seed=4&fault=crash&after=25000&mode=chunked",
    ]
    with Testbed(work, backend="fault") as tb:
        for uri in uris:
            _check(tb.fetch(uri, timeout=5).error is None, f"{uri} failed")
    _keep(tb, out)


def make_clean_gzip(work: Path, out: Path) -> None:
    """nginx gzips and chunks text bodies; a binary body passes as is."""
    uris = [
        "/body?size=150000&seed=1",
        "/body?size=150000&seed=2&mode=chunked",
        "/body?size=40000&seed=3&binary=1&mode=chunked",
        "/body?size=100&seed=4",
    ]
    with Testbed(work, backend="php", gzip=True) as tb:
        for uri in uris:
            _check(tb.fetch(uri, accept_gzip=True).intact, f"{uri} failed")
    _keep(tb, out)


def make_lossy(work: Path, out: Path) -> None:
    """Three clean responses; one client-leg frame of the largest is then
    deleted from the capture, as a lossy capture would lose it."""
    with Testbed(work, backend="flup") as tb:
        big = tb.fetch("/body?size=200000&seed=1")
        tb.fetch("/body?size=5000&seed=2")
        tb.fetch("/body?size=20000&seed=3&mode=chunked")
        server_port = tb.client_port
    _check(big.intact and big.local_port is not None, "the large fetch failed")
    _keep(tb, out)

    frames = [
        Frame(data, ts_ns, linktype, orig_len)
        for _, ts_ns, linktype, data, orig_len in read_records(str(tb.client_pcap))
    ]
    carrying = []
    for index, frame in enumerate(frames):
        tcp = dpkt.ethernet.Ethernet(frame.data).data.data
        if tcp.sport == server_port and tcp.dport == big.local_port and tcp.data:
            carrying.append(index)
    _check(len(carrying) >= 3, "too few data frames in the large response")
    victim = carrying[len(carrying) // 2]
    write_pcap(str(out / "client.pcap"), frames[:victim] + frames[victim + 1 :])


PAIRS = [
    Pair("relay-overwrite", make_relay_overwrite, ok=3, corrupted=1, blamed="proxy"),
    Pair(
        "app-digest-lie",
        make_app_digest_lie,
        ok=2,
        corrupted=2,
        digest_headers=["X-Body-SHA1"],
        blamed="app",
    ),
    Pair("app-fault", make_app_fault, ok=2, corrupted=2, blamed="app"),
    Pair("clean-gzip", make_clean_gzip, ok=4),
    Pair("lossy", make_lossy, ok=2, incomplete=1),
]


def _hops(analysis: Analysis) -> dict[str, int]:
    """How many corrupted exchanges each hop is blamed for."""
    counts: dict[str, int] = {}
    for ex in analysis.exchanges:
        if ex.hop is not None:
            counts[ex.hop] = counts.get(ex.hop, 0) + 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="pairs to remake (default: all)")
    args = parser.parse_args(argv)
    reason = unavailable_reason()
    if reason is not None:
        print(f"make_captures: {reason}", file=sys.stderr)
        return 2
    wanted = [p for p in PAIRS if not args.names or p.name in args.names]

    failures = 0
    for pair in wanted:
        out = HERE / pair.name
        with tempfile.TemporaryDirectory(prefix=f"capture-{pair.name}-") as work:
            pair.make(Path(work), out)
        options = AnalysisOptions(
            digests=tuple(parse_digest_spec(d) for d in pair.digest_headers)
        )
        analysis = analyze(
            [str(out / "client.pcap")], [str(out / "upstream.pcap")], options
        )
        got = (analysis.summary(), _hops(analysis))
        want = (pair.summary(), pair.hops())
        status = "ok" if got == want else f"MISMATCH (got {got})"
        print(f"{pair.name}: {want} {status}")
        failures += got != want

    expected = {
        "pairs": {
            pair.name: {
                "digest_headers": pair.digest_headers,
                "summary": pair.summary(),
                "hops": pair.hops(),
            }
            for pair in PAIRS
        }
    }
    (HERE / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
