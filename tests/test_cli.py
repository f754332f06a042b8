"""The command line: exit statuses, the JSON contract, help and errors."""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from fcgiforensics.cli import commands
from fcgiforensics.cli.main import build_parser, main
from fcgiforensics.testing import (
    Conversation,
    http_request,
    two_leg_exchanges,
    write_pcap,
    write_pcapng,
)

from .report_contract import check_report

BODIES = [random.Random(i).randbytes(50_000) for i in range(3)]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fcgiforensics", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


@pytest.fixture
def clean_pair(tmp_path: Path) -> tuple[Path, Path]:
    client, upstream = two_leg_exchanges(BODIES)
    write_pcap(str(tmp_path / "c.pcap"), client)
    write_pcap(str(tmp_path / "u.pcap"), upstream)
    return tmp_path / "c.pcap", tmp_path / "u.pcap"


@pytest.fixture
def corrupted_pair(tmp_path: Path) -> tuple[Path, Path]:
    seen = list(BODIES)
    damaged = bytearray(seen[1])
    damaged[30_000:30_200] = bytes(200)
    seen[1] = bytes(damaged)
    client, upstream = two_leg_exchanges(BODIES, client_bodies=seen)
    write_pcap(str(tmp_path / "c.pcap"), client)
    write_pcap(str(tmp_path / "u.pcap"), upstream)
    return tmp_path / "c.pcap", tmp_path / "u.pcap"


def test_clean_pair_exits_0_with_every_exchange_ok(
    clean_pair: tuple[Path, Path],
) -> None:
    """Identical bodies on both legs: exit 0 and three ok exchanges."""
    result = run("diff", "--json", *map(str, clean_pair))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    check_report(doc)
    assert doc["summary"]["ok"] == 3
    assert [ex["paired_by"] for ex in doc["exchanges"]] == ["endpoint"] * 3


def test_corrupted_pair_exits_1_and_locates_the_region(
    corrupted_pair: tuple[Path, Path],
) -> None:
    """A zeroed run between the legs: exit 1, hop proxy, the exact region,
    frames on both legs and a Wireshark filter for them."""
    result = run("diff", "--json", *map(str, corrupted_pair))
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    check_report(doc)
    ex = doc["exchanges"][1]
    assert (ex["verdict"], ex["hop"]) == ("corrupted", "proxy")
    [region] = ex["regions"]
    assert (region["offset"], region["length"], region["kind"]) == (
        30_000,
        200,
        "replace",
    )
    assert region["client_frames"] and region["upstream_frames"]
    assert region["wireshark_filter"].startswith("frame.number")
    assert any("zero" in s for s in region["shapes"])


def test_text_report_shows_evidence_and_hex(corrupted_pair: tuple[Path, Path]) -> None:
    """The human report names the region, its frames and shows hex."""
    result = run("diff", *map(str, corrupted_pair))
    assert result.returncode == 1
    out = result.stdout
    assert "1 corrupted (by proxy)" in out
    assert "bytes 30,000 to 30,199 differ" in out
    assert "Wireshark: frame.number" in out
    assert "upstream (what the app sent)" in out


def test_both_legs_in_one_file(tmp_path: Path) -> None:
    """One capture holding both legs (as tcpdump -i any writes) is read
    once and reported with role client+upstream."""
    client, upstream = two_leg_exchanges(BODIES)
    both = sorted(client + upstream, key=lambda f: f.ts_ns)
    write_pcap(str(tmp_path / "both.pcap"), both)
    result = run("diff", "--json", str(tmp_path / "both.pcap"))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    check_report(doc)
    assert [c["role"] for c in doc["captures"]] == ["client+upstream"]
    assert doc["summary"]["ok"] == 3


def test_unreadable_input_is_one_line_and_status_2(tmp_path: Path) -> None:
    """A foreign file and a missing file each give exit 2 and one stderr
    line naming the file, never a traceback."""
    text = tmp_path / "notes.txt"
    text.write_text("not a capture\n")
    for path in (str(text), str(tmp_path / "missing.pcap")):
        result = run("diff", path, path)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and path in lines[0]
        assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    """--debug trades the one-line message for a traceback."""
    result = run("--debug", "streams", str(tmp_path / "missing.pcap"))
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_bad_usage_is_status_2() -> None:
    """An unknown option and a missing argument exit with status 2."""
    assert run("diff", "--no-such-option", "x").returncode == 2
    assert run("diff").returncode == 2
    assert run("diff", "a", "b", "c").returncode == 2
    assert run("diff", "--digest-header", "X:nohash", "a").returncode == 2


def test_help_reads_like_a_man_page() -> None:
    """--help describes commands, exit statuses and examples."""
    out = run("--help").stdout
    for part in ("commands:", "exit status:", "examples:", "diff", "streams"):
        assert part in out
    diff_help = run("diff", "--help").stdout
    for part in ("incomplete", "--digest-header", "exit status", "-i any"):
        assert part in diff_help


def test_http_and_fcgi_listings_and_body_export(
    clean_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    """http and fcgi list each message with its SHA-256, and --body -o
    writes the rebuilt body byte for byte."""
    client, upstream = clean_pair
    http = json.loads(run("http", "--json", str(client)).stdout)
    fcgi = json.loads(run("fcgi", "--json", str(upstream)).stdout)
    assert [r["uri"] for r in http["exchanges"]] == ["/n/0", "/n/1", "/n/2"]
    assert [r["body_sha256"] for r in http["exchanges"]] == [
        r["body_sha256"] for r in fcgi["requests"]
    ]
    out = tmp_path / "body.bin"
    assert run("fcgi", str(upstream), "--body", "2", "-o", str(out)).returncode == 0
    assert out.read_bytes() == BODIES[1]
    assert run("http", str(client), "--body", "9").returncode == 2


def test_port_override_forces_the_protocol(clean_pair: tuple[Path, Path]) -> None:
    """--http-port makes a connection HTTP whatever its first bytes: the
    FastCGI leg then yields no FastCGI request."""
    _, upstream = clean_pair
    doc = json.loads(run("fcgi", "--json", "--http-port", "9000", str(upstream)).stdout)
    assert doc["requests"] == []


def test_streams_json_lists_connections(clean_pair: tuple[Path, Path]) -> None:
    """streams --json gives one row per connection with byte counts."""
    client, _ = clean_pair
    doc = json.loads(run("streams", "--json", str(client)).stdout)
    [cap] = doc["captures"]
    [conn] = cap["connections"]
    assert conn["to_client"]["bytes"] > 150_000
    assert conn["to_client"]["gaps"] == []


def test_limit_options_cut_bodies_with_an_anomaly(
    clean_pair: tuple[Path, Path],
) -> None:
    """--max-body bounds the bytes kept of each body: past it the body is
    cut and the limit is reported, never an out-of-memory."""
    client, upstream = clean_pair
    fcgi = json.loads(run("fcgi", "--json", "--max-body", "0.01", str(upstream)).stdout)
    assert {r["body_length"] for r in fcgi["requests"]} == {10485}
    assert all("fcgi.stdout_limit" in r["anomalies"] for r in fcgi["requests"])
    http = json.loads(run("http", "--json", "--max-body", "0.01", str(client)).stdout)
    assert all("http.body_limit" in r["anomalies"] for r in http["exchanges"])
    assert run("diff", "--max-pending", "0", str(client)).returncode == 2
    ok = run("diff", "--max-pending", "1", "--json", str(client), str(upstream))
    assert ok.returncode == 0


def _stderr_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line a failed in-process run wrote on stderr."""
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_body_of_a_request_without_response_is_one_line_and_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``http --body ID -o FILE`` on a request the capture has no response
    to says so in one line, exits 2 and writes no file."""
    conv = Conversation(
        client="192.0.2.10", client_port=51000, server="192.0.2.1", server_port=80
    )
    conv.handshake()
    conv.send_to_server(http_request("GET", "/lost"))
    conv.close()
    write_pcap(str(tmp_path / "c.pcap"), conv.frames())
    out = tmp_path / "body.bin"
    status = main(["http", str(tmp_path / "c.pcap"), "--body", "1", "-o", str(out)])
    assert status == 2
    line = _stderr_line(capsys)
    assert "--body 1" in line and "GET /lost" in line and "no response" in line
    assert not out.exists()


def test_body_output_that_cannot_be_written_fails_before_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``-o`` into a missing directory is one line and exit 2, found before
    the capture is read (here the capture does not even exist)."""
    target = tmp_path / "no" / "such" / "body.bin"
    missing = str(tmp_path / "missing.pcap")
    assert main(["http", missing, "--body", "1", "-o", str(target)]) == 2
    line = _stderr_line(capsys)
    assert str(target) in line and "missing.pcap" not in line


def test_output_without_body_is_a_usage_error(
    clean_pair: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """``-o`` alone would be ignored, so it is refused: exit 2, one line."""
    client, _ = clean_pair
    assert main(["http", str(client), "-o", str(client.parent / "x.bin")]) == 2
    assert "--body" in _stderr_line(capsys)


def _help_parsers() -> dict[str, argparse.ArgumentParser]:
    """The top-level parser and each subcommand's, by the prog they show."""
    parser = build_parser()
    found = {parser.prog: parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update({p.prog: p for p in action.choices.values()})
    return found


def _help_examples() -> list[tuple[str, list[str]]]:
    """Every ``fcgiforensics ...`` line of every help epilog, as argv words.

    A continued line (ending in a backslash) is joined to the next, and a
    shell redirection or pipe ends the command.
    """
    examples = []
    for prog, parser in _help_parsers().items():
        text = (parser.epilog or "").replace("\\\n", " ")
        for line in text.splitlines():
            if not line.startswith("  fcgiforensics "):
                continue
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            words = list(lexer)
            for stop in ("|", ">", ">>", "<"):
                if stop in words:
                    words = words[: words.index(stop)]
            examples.append((prog, words))
    return examples


def test_every_help_text_has_examples() -> None:
    """The top-level help and each subcommand's help give at least one
    example of that command."""
    progs = {prog for prog, _ in _help_examples()}
    assert progs == set(_help_parsers())


@pytest.mark.parametrize(
    ("prog", "words"),
    _help_examples(),
    ids=[" ".join(words[1:])[:50] for _, words in _help_examples()],
)
def test_help_example_parses_and_runs(
    prog: str,
    words: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each example in a help text parses with the real parser, as the
    command of the help it is in, and runs to exit 0 or 1 on captures
    made under the file names it uses."""
    assert words[0] == "fcgiforensics"
    args = build_parser().parse_args(words[1:])
    if prog != "fcgiforensics":
        assert prog == f"fcgiforensics {args.command}"
    if "--html" in words:
        pytest.importorskip("pandas")
        pytest.importorskip("matplotlib")

    # Every capture named holds both legs of three exchanges, so that any
    # file can stand for either leg and --body 3 exists.
    client, upstream = two_leg_exchanges(BODIES)
    both = sorted(client + upstream, key=lambda f: f.ts_ns)
    monkeypatch.chdir(tmp_path)
    for word in words:
        if not re.search(r"\.pcap(ng)?(\.gz)?$", word):
            continue
        plain = word.removesuffix(".gz")
        if plain.endswith(".pcapng"):
            write_pcapng(plain, both)
        else:
            write_pcap(plain, both)
        if word.endswith(".gz"):
            data = Path(plain).read_bytes()
            Path(plain).unlink()
            Path(word).write_bytes(gzip.compress(data))
    assert main(words[1:]) in (0, 1), capsys.readouterr().err
    assert capsys.readouterr().err == ""


def test_help_gives_exit_status_3() -> None:
    """The top-level help and diff's help list exit status 3, a bug."""
    parsers = _help_parsers()
    assert "3   internal error" in (parsers["fcgiforensics"].epilog or "")
    assert "3 internal error" in (parsers["fcgiforensics diff"].epilog or "")


def test_html_to_a_missing_directory_fails_before_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``diff --html`` into a directory that does not exist is one line and
    exit 2 (not 1, "corrupted"), found before the captures are read."""
    target = tmp_path / "no" / "dir" / "r.html"
    missing = str(tmp_path / "missing.pcap")
    assert main(["diff", "--html", str(target), missing, missing]) == 2
    line = _stderr_line(capsys)
    assert str(target) in line and "missing.pcap" not in line
    assert main(["diff", "--html", str(tmp_path), missing]) == 2
    assert "directory" in _stderr_line(capsys)


def test_html_without_the_notebook_extra_names_the_install(
    clean_pair: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without pandas, ``--html`` says in one line to install the notebook
    extra and exits 2, before reading and without writing the page."""
    for name in list(sys.modules):
        if name.startswith(("fcgiforensics.notebook", "fcgiforensics.reports.html")):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pandas", None)
    out = tmp_path / "r.html"
    assert main(["diff", "--html", str(out), *map(str, clean_pair)]) == 2
    line = _stderr_line(capsys)
    assert "pip install 'fcgiforensics[notebook]'" in line
    assert not out.exists()


def test_unexpected_exception_is_an_internal_error_with_status_3(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A bug exits 3, never 1 ("corrupted"), with one line naming the
    exception; --debug lets the exception through instead."""

    def broken(args: argparse.Namespace) -> int:
        raise RuntimeError("no such\nstate")

    monkeypatch.setattr(commands, "run_streams", broken)
    assert main(["streams", str(tmp_path / "any.pcap")]) == 3
    assert _stderr_line(capsys) == (
        "fcgiforensics: internal error: RuntimeError: no such state "
        "(run again with --debug for a traceback; please report it)"
    )
    with pytest.raises(RuntimeError):
        main(["--debug", "streams", str(tmp_path / "any.pcap")])


def test_keyboard_interrupt_is_not_an_internal_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Ctrl-C still exits 130, not 3."""

    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "run_streams", interrupted)
    assert main(["streams", str(tmp_path / "any.pcap")]) == 130
    assert "internal error" not in capsys.readouterr().err


USAGE_ERRORS = [
    [],
    ["nosuch"],
    ["streams"],
    ["diff", "--no-such-option", "x"],
    ["diff", "--digest-header", ":", "c.pcap"],
    ["diff", "--digest-header", "", "c.pcap"],
    ["diff", "--digest-header", "X-Sum:", "c.pcap"],
    ["diff", "--digest-header", "Two Words", "c.pcap"],
    ["diff", "--digest-header", "X:nohash", "c.pcap"],
    ["diff", "--digest-header", "X:shake_128", "c.pcap"],
    ["diff", "--http-port", "", "c.pcap"],
    ["diff", "--http-port", ",", "c.pcap"],
    ["diff", "--http-port", "\xb9\xb2", "c.pcap"],
    ["diff", "--fastcgi-port", "70000", "c.pcap"],
    ["diff", "--max-body", "nan", "c.pcap"],
    ["diff", "--max-body", "1e-9", "c.pcap"],
    ["diff", "--max-pending", "0", "c.pcap"],
    ["diff", "--html", "", "c.pcap"],
    ["diff", "-c", "", "u.pcap"],
    ["diff", ""],
    ["http", "--body", "0", "c.pcap"],
    ["http", "--body", "abc", "c.pcap"],
    ["http", "--body", "\xb9", "c.pcap"],
    ["fcgi", "--body", "1", "-o", "", "u.pcap"],
]


@pytest.mark.parametrize("argv", USAGE_ERRORS, ids=lambda a: " ".join(a) or "none")
def test_usage_error_is_one_line_and_status_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad command line, empty and invalid option values included, is
    one stderr line pointing at the command's --help, and exit 2."""
    assert main(argv) == 2
    line = _stderr_line(capsys)
    assert re.fullmatch(r"fcgiforensics: .+ \(see fcgiforensics( \w+)? --help\)", line)


@pytest.mark.parametrize(
    "name", ["relay-overwrite", "app-digest-lie", "app-fault", "clean-gzip", "lossy"]
)
def test_json_of_each_shipped_sample_honours_the_contract(name: str) -> None:
    """``diff --json`` on every committed capture pair passes the
    REPORT.md checker, with the exit status its verdicts call for."""
    root = Path(__file__).resolve().parent.parent
    expected = json.loads((root / "captures" / "expected.json").read_text())
    pair = expected["pairs"][name]
    digests = [f"--digest-header={d}" for d in pair["digest_headers"]]
    folder = root / "captures" / name
    result = run(
        "diff",
        "--json",
        *digests,
        str(folder / "client.pcap"),
        str(folder / "upstream.pcap"),
    )
    doc = json.loads(result.stdout)
    check_report(doc)
    assert doc["summary"] == pair["summary"]
    assert result.returncode == (1 if pair["summary"]["corrupted"] else 0)


def test_region_filter_names_the_leg_whose_capture_it_selects() -> None:
    """A proxy region's wireshark_filter is for the client capture, an app
    region's for the upstream capture, and the JSON says which."""
    root = Path(__file__).resolve().parent.parent / "captures"
    legs = {}
    for name in ("relay-overwrite", "app-fault"):
        result = run(
            "diff",
            "--json",
            str(root / name / "client.pcap"),
            str(root / name / "upstream.pcap"),
        )
        for ex in json.loads(result.stdout)["exchanges"]:
            for region in ex["regions"]:
                legs[(ex["hop"], region["wireshark_filter_leg"])] = region
    assert set(legs) == {("proxy", "client"), ("app", "upstream")}
    app = legs[("app", "upstream")]
    assert app["wireshark_filter"] == app["upstream_wireshark_filter"]


def test_rotated_files_are_named_beside_their_frame_numbers(tmp_path: Path) -> None:
    """With a client leg rotated into two files, each CAPTURE counts its own
    packets and connections, and sides and regions name the file that
    holds their frames."""
    from fcgiforensics.capture.records import CaptureInfo, read_records
    from fcgiforensics.testing import Frame

    root = Path(__file__).resolve().parent.parent / "captures" / "relay-overwrite"
    path = str(root / "client.pcap")
    frames = [
        Frame(d, ts, lt, ol)
        for _, ts, lt, d, ol in read_records(path, CaptureInfo(path), 0)
    ]
    first, second = tmp_path / "c1.pcap", tmp_path / "c2.pcap"
    write_pcap(str(first), frames[:14])  # the first connection and a half
    write_pcap(str(second), frames[14:])
    result = run(
        "diff",
        "--json",
        "-c",
        str(first),
        "-c",
        str(second),
        "-u",
        str(root / "upstream.pcap"),
    )
    doc = json.loads(result.stdout)
    check_report(doc)
    c1, c2, _ = doc["captures"]
    assert (c1["packets"], c2["packets"]) == (14, len(frames) - 14)
    assert c1["tcp_connections"] + c2["tcp_connections"] == 4
    [damaged] = [ex for ex in doc["exchanges"] if ex["regions"]]
    assert damaged["client"]["first_frame_capture"] == str(second)
    [region] = damaged["regions"]
    assert region["client_frames_by_capture"] == [
        {"capture": str(second), "frames": region["client_frames"]}
    ]
    assert region["upstream_frames_by_capture"][0]["capture"] == str(
        root / "upstream.pcap"
    )


def test_http_and_fcgi_listings_give_the_frames_diff_gives() -> None:
    """``http`` and ``fcgi`` list each message's first and last frame, the
    same frames ``diff`` gives for each side."""
    root = Path(__file__).resolve().parent.parent / "captures" / "app-fault"
    client, upstream = str(root / "client.pcap"), str(root / "upstream.pcap")
    report = json.loads(run("diff", "--json", client, upstream).stdout)
    http = json.loads(run("http", "--json", client).stdout)["exchanges"]
    fcgi = json.loads(run("fcgi", "--json", upstream).stdout)["requests"]
    for ex, h, f in zip(report["exchanges"], http, fcgi, strict=True):
        assert (h["first_frame"], h["last_frame"]) == (
            ex["client"]["first_frame"],
            ex["client"]["last_frame"],
        )
        assert (f["first_frame"], f["last_frame"]) == (
            ex["upstream"]["first_frame"],
            ex["upstream"]["last_frame"],
        )
