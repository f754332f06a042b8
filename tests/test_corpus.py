"""Broken and hostile input files through the real command line.

Every file of tests/corpus/ is run in a child process, as a user would
run it, under an address-space limit: a decompression bomb or an
unbounded buffer then fails the test instead of the machine.  The
expectations below are the ones README.md of the corpus states.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import importlib.util
import json
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fcgiforensics.cli.main import build_parser

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "corpus"

#: Address space a child may map.  The largest honest run of the corpus
#: (the gzip bomb, decoded up to its 256 MiB limit) stays near 600 MiB;
#: an unbounded decompression would pass this at once.
MEMORY_LIMIT = 1536 * 1024 * 1024

#: Seconds a child may run; the slowest file takes about 3 s.
CHILD_TIMEOUT = 60

#: Files of the corpus directory that are not inputs.
NOT_INPUTS = {"README.md", "make_corpus.py"}


@dataclass(frozen=True)
class Expect:
    """What reading one corpus file must give.

    ``status`` is the exit status of ``streams``; ``streams`` the anomaly
    names its JSON must count; ``packets`` the records kept (None: not
    pinned); ``protocol`` the decoder the file is meant for; ``decoded``
    the anomaly names that decoder must return; ``bug`` a known defect
    that makes the file fail today (the test is then a strict xfail).
    """

    status: int = 0
    streams: tuple[str, ...] = ()
    packets: int | None = None
    protocol: str = "none"
    decoded: tuple[str, ...] = ()
    bug: str | None = None
    tcp: bool = True  # False: no packet can be decoded to TCP


UNREADABLE = 2

EXPECT: dict[str, Expect] = {
    "pcap-header-truncated.pcap": Expect(UNREADABLE),
    "pcap-last-record-truncated.pcap": Expect(
        streams=("capture.truncated_file",), packets=10, protocol="http"),
    "pcap-record-header-truncated.pcap": Expect(
        streams=("capture.truncated_file",), packets=11),
    "pcap-caplen-over-snaplen.pcap": Expect(packets=11),
    "pcap-caplen-70mb.pcap": Expect(streams=("capture.bad_record",),
                                    packets=2),
    "pcapng-unknown-block.pcapng": Expect(
        streams=("capture.unknown_block",), packets=11),
    "pcapng-bad-byte-order.pcapng": Expect(UNREADABLE),
    "pcapng-bad-byte-order-second-section.pcapng": Expect(
        streams=("capture.bad_record",), packets=11),
    # Its packets name the broken interface, whose link type is unknown:
    # they are counted, not guessed at.
    "pcapng-short-idb.pcapng": Expect(
        streams=("capture.bad_record", "capture.unsupported_linktype"),
        tcp=False),
    "pcapng-short-epb.pcapng": Expect(
        streams=("capture.bad_record",), packets=11),
    "pcapng-timestamp-overflow.pcapng": Expect(
        streams=("capture.bad_record",), packets=11),
    "empty.pcap": Expect(UNREADABLE),
    "text.pcap": Expect(UNREADABLE),
    "not-a-capture.gz": Expect(UNREADABLE),
    "truncated.pcap.gz": Expect(
        streams=("capture.truncated_file",)),
    "http-gzip-bomb.pcap.gz": Expect(
        packets=76, protocol="http", decoded=("http.decompression_limit",)),
    "http-chunk-size-2pow63.pcap": Expect(
        packets=10, protocol="http", decoded=("http.bad_chunk_size",)),
    "http-head-unterminated.pcap": Expect(
        packets=10, protocol="http", decoded=("http.truncated_head",)),
    "http-head-endless.pcap.gz": Expect(
        protocol="http", decoded=("http.head_too_large",)),
    "fcgi-content-past-stream.pcap": Expect(
        packets=10, protocol="fcgi",
        decoded=("fcgi.truncated_record",)),
    "fcgi-10000-tiny-records.pcap": Expect(packets=11, protocol="fcgi"),
    "tcp-out-of-window-1gb.pcap.gz": Expect(
        streams=("tcp.pending_limit", "tcp.gap"), packets=1106,
        protocol="http", decoded=("http.body_gap",)),
}


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_child(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` from the repository root, memory-limited."""
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True,
        timeout=CHILD_TIMEOUT, preexec_fn=_limit_memory, check=False)


def _inputs() -> list[str]:
    return sorted(p.name for p in CORPUS.iterdir()
                  if p.is_file() and p.name not in NOT_INPUTS)


def _params(names: list[str]) -> list[Any]:
    """Corpus names as pytest params, known bugs marked strict xfail."""
    out = []
    for name in names:
        bug = EXPECT[name].bug
        marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


def _commands() -> set[str]:
    """Subcommands the command line offers today."""
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def _assert_one_line_error(proc: subprocess.CompletedProcess[str],
                           name: str) -> None:
    assert proc.returncode == UNREADABLE, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("fcgiforensics: ")
    assert name in lines[0]


def _assert_clean_exit(proc: subprocess.CompletedProcess[str],
                       allowed: tuple[int, ...] = (0,)) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode in allowed, proc.stderr[-3000:]


# -- the corpus itself --------------------------------------------------


def test_every_corpus_file_has_an_expectation_and_a_readme_line() -> None:
    """The corpus directory, README.md and this file's table list the same
    input files."""
    readme = (CORPUS / "README.md").read_text()
    listed = {line.split("`")[1] for line in readme.splitlines()
              if line.startswith("- `")}
    assert set(_inputs()) == set(EXPECT) == listed


def test_corpus_files_stay_small() -> None:
    """No corpus file is over 128 KiB, so the repository stays light."""
    sizes = {name: (CORPUS / name).stat().st_size for name in _inputs()}
    assert max(sizes.values()) <= 128 * 1024, sizes


def test_make_corpus_rebuilds_the_committed_files() -> None:
    """make_corpus.py regenerates every committed file (gzip files compared
    after decompression, as zlib versions may differ)."""
    spec = importlib.util.spec_from_file_location(
        "make_corpus", CORPUS / "make_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, build in module.FILES.items():
        built = build()
        committed = (CORPUS / name).read_bytes()
        if name.endswith(".gz") and name != "truncated.pcap.gz":
            built, committed = gzip.decompress(built), gzip.decompress(committed)
        assert built == committed, name


# -- the streams command ------------------------------------------------


@pytest.mark.parametrize("name", _params(sorted(EXPECT)))
def test_streams_command_on_corpus_file(name: str) -> None:
    """``streams --json`` exits 2 with one stderr line naming the file for
    unreadable input, else 0 with the expected anomalies and every record
    before the damage kept, within the memory limit."""
    expect = EXPECT[name]
    proc = run_child("-m", "fcgiforensics", "streams", "--json",
                     f"tests/corpus/{name}")
    if expect.status == UNREADABLE:
        _assert_one_line_error(proc, name)
        return
    _assert_clean_exit(proc)
    [capture] = json.loads(proc.stdout)["captures"]
    for anomaly in expect.streams:
        assert capture["anomalies"].get(anomaly, 0) > 0, anomaly
    if expect.packets is not None:
        assert capture["packets"] == expect.packets
    assert capture["packets"] > 0
    assert (capture["tcp_connections"] >= 1) == expect.tcp


def test_absurd_caplen_keeps_the_connection_of_earlier_records() -> None:
    """The records before a 70 MB caplen still form their connection."""
    proc = run_child("-m", "fcgiforensics", "streams", "--json",
                     "tests/corpus/pcap-caplen-70mb.pcap")
    _assert_clean_exit(proc)
    [capture] = json.loads(proc.stdout)["captures"]
    [conn] = capture["connections"]
    assert conn["first_frame"] == 1 and conn["last_frame"] == 2
    assert any("70000000" in text for text in capture["capture_anomalies"])


def test_out_of_window_data_is_bounded_by_the_pending_limit() -> None:
    """1 GiB of far-ahead segments become declared gaps, not a buffer: the
    stream accounts for about 1 GiB while the child stays in its limit."""
    proc = run_child("-m", "fcgiforensics", "streams", "--json",
                     "tests/corpus/tcp-out-of-window-1gb.pcap.gz")
    _assert_clean_exit(proc)
    [conn] = json.loads(proc.stdout)["captures"][0]["connections"]
    half = conn["to_client"]
    assert half["bytes"] > 1 << 30
    assert {g["reason"] for g in half["gaps"]} >= {"limit"}
    assert half["unobserved_bytes"] >= half["bytes"] - 1100 * 65000 - 200


# -- the decoders, through the library pipeline ---------------------------


@functools.cache
def _decoded(name: str, protocol: str) -> dict[str, Any]:
    """The pipeline's JSON summary of a corpus file (each run once)."""
    proc = run_child("-m", "tests.fuzz.pipeline", f"tests/corpus/{name}",
                     protocol)
    _assert_clean_exit(proc)
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def _decoder_params() -> list[Any]:
    return _params(sorted(n for n, e in EXPECT.items()
                          if e.protocol != "none"))


@pytest.mark.parametrize("name", _decoder_params())
def test_decoders_on_corpus_file(name: str) -> None:
    """The file's protocol decoder returns the expected anomalies and at
    least one message, raises nothing and stays within the memory limit."""
    expect = EXPECT[name]
    result = _decoded(name, expect.protocol)
    for anomaly in expect.decoded:
        assert result["anomalies"].get(anomaly, 0) > 0, result["anomalies"]
    assert result["messages"], result


def test_gzip_bomb_body_stops_near_the_decoded_limit() -> None:
    """The 1 GiB gzip bomb is decoded no further than the content decoder's
    limit, and its wire body is kept whole."""
    from fcgiforensics.decoders.content import MAX_DECODED_BYTES

    [message] = _decoded("http-gzip-bomb.pcap.gz", "http")["messages"]
    assert message["status"] == 200
    assert message["wire_body"] > 1_000_000
    assert message["body"] == MAX_DECODED_BYTES


def test_bad_chunk_size_keeps_the_chunks_before_it() -> None:
    """A 2^63 chunk size stops the body but keeps the 5 bytes decoded
    before it, marked incomplete."""
    [message] = _decoded("http-chunk-size-2pow63.pcap", "http")["messages"]
    assert message["body"] == 5 and message["complete"] is False


def test_ten_thousand_tiny_records_rebuild_the_whole_body() -> None:
    """10,000 one-byte STDOUT records rebuild a 10,000-byte body."""
    [message] = _decoded("fcgi-10000-tiny-records.pcap", "fcgi")["messages"]
    assert message["body"] == 10_000 and message["complete"] is True
    assert message["body_head"] == "abcdefghijabcdef"


def test_fastcgi_record_past_the_stream_keeps_its_content() -> None:
    """A STDOUT record cut by the FIN keeps the content bytes that came."""
    [message] = _decoded("fcgi-content-past-stream.pcap", "fcgi")["messages"]
    assert message["complete"] is False
    assert message["body"] == 100 - len(
        b"Status: 200 OK\r\nContent-Type: text/html\r\n\r\n")


# -- the protocol commands, once the command line has them ----------------

#: Each protocol command, and the corpus protocols it is run on.
_PROTOCOL_COMMANDS = {"http": {"http"}, "fcgi": {"fcgi"},
                      "diff": {"http", "fcgi"}}


def _command_params() -> list[Any]:
    out = []
    for command, protocols in _PROTOCOL_COMMANDS.items():
        for name, expect in sorted(EXPECT.items()):
            if expect.status != UNREADABLE and \
                    expect.protocol not in protocols:
                continue
            marks = [pytest.mark.xfail(strict=True, reason=expect.bug)] \
                if expect.bug else []
            out.append(pytest.param(command, name, marks=marks,
                                    id=f"{command}-{name}"))
    return out


@pytest.mark.parametrize(("command", "name"), _command_params())
def test_protocol_command_on_corpus_file(command: str, name: str) -> None:
    """``http``, ``fcgi`` and ``diff`` treat unreadable input as streams
    does, and report a file's decoder anomalies in their JSON."""
    assert command in _commands()
    expect = EXPECT[name]
    proc = run_child("-m", "fcgiforensics", command, "--json",
                     f"tests/corpus/{name}")
    if expect.status == UNREADABLE:
        _assert_one_line_error(proc, name)
        return
    _assert_clean_exit(proc, (0, 1) if command == "diff" else (0,))
    json.loads(proc.stdout)
    if command == expect.protocol:
        for anomaly in expect.decoded:
            assert anomaly in proc.stdout, anomaly


# -- inputs the fuzz harnesses once crashed on -----------------------------

FUZZ_REGRESSIONS = CORPUS / "fuzz"


def _regression_params() -> list[Any]:
    if not FUZZ_REGRESSIONS.is_dir():
        return []
    return [pytest.param(p.parent.name, p.name,
                         id=f"{p.parent.name}-{p.name}")
            for p in sorted(FUZZ_REGRESSIONS.glob("*/*")) if p.is_file()]


def test_every_fuzz_regression_is_described() -> None:
    """Each crash input under fuzz/ has a line in README.md saying what it
    found."""
    readme = (CORPUS / "README.md").read_text()
    described = {line.split("`")[1] for line in readme.splitlines()
                 if line.startswith("* `")}
    found = {str(p.relative_to(CORPUS))
             for p in FUZZ_REGRESSIONS.rglob("*") if p.is_file()}
    assert found == described


@pytest.mark.parametrize(("harness", "name"), _regression_params())
def test_fuzz_regression_input(harness: str, name: str) -> None:
    """An input a fuzz harness once crashed on now passes the harness's
    own check (replayed without atheris)."""
    spec = importlib.util.spec_from_file_location(
        f"fuzz_{harness}", REPO / "tests" / "fuzz" / f"fuzz_{harness}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.one_input((FUZZ_REGRESSIONS / harness / name).read_bytes())
