"""The notebook API: DataFrames checked against the JSON report."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

import fcgiforensics  # noqa: E402
from fcgiforensics.frames import ns_to_iso  # noqa: E402
from fcgiforensics.notebook import Investigation  # noqa: E402
from fcgiforensics.notebook.frames import (  # noqa: E402
    ANOMALY_COLUMNS,
    CONNECTION_COLUMNS,
    EXCHANGE_ADDITIONS,
    EXCHANGE_COLUMNS,
    PACKET_COLUMNS,
    RECORD_COLUMNS,
    REGION_ADDITIONS,
    REGION_COLUMNS,
    TIME_DTYPE,
)
from fcgiforensics.reports.text_report import report_text  # noqa: E402
from fcgiforensics.testing import Frame, two_leg_exchanges, write_pcap  # noqa: E402

# -- synthetic captures shared by the notebook, figure and HTML tests ------

BODY_LENGTH = 30_000
CORRUPT_AT, CORRUPT_LENGTH = 12_000, 150


def numbered_body(tag: str, length: int = BODY_LENGTH) -> bytes:
    """Lines that name their own offset, so every frame's payload is unique."""
    out = bytearray()
    while len(out) < length:
        out += f"{len(out):08d} {tag} abcdefghijklmnopqrstuvwxyz\n".encode()
    return bytes(out[:length])


def _find(frames: list[Frame], tag: str, offset: int) -> int:
    """The frame carrying the line of body ``tag`` that holds ``offset``."""
    line = len(numbered_body(tag, 200).split(b"\n")[0]) + 1
    needle = f"{offset // line * line:08d} {tag}".encode()
    return next(i for i, f in enumerate(frames) if needle in f.data)


@dataclass
class Sample:
    client: Path
    upstream: Path


def write_sample(folder: Path, *, lossy: bool = False) -> Sample:
    """Three exchanges; the second damaged between the legs.

    With ``lossy``, the client leg of the third also loses one frame,
    carries two frames swapped and one retransmission with other bytes.
    """
    bodies = [numbered_body(t) for t in ("A", "B", "C")]
    seen = list(bodies)
    damaged = bytearray(bodies[1])
    damaged[CORRUPT_AT : CORRUPT_AT + CORRUPT_LENGTH] = b"\xcf" * CORRUPT_LENGTH
    seen[1] = bytes(damaged)
    client, upstream = two_leg_exchanges(bodies, client_bodies=seen)
    if lossy:
        # A retransmitted copy whose last byte differs, right after it.
        j = _find(client, "C", 2_900)
        altered = client[j].data[:-1] + bytes([client[j].data[-1] ^ 0xFF])
        client.insert(j + 1, Frame(altered, client[j].ts_ns + 1))
        # Two frames swapped: the earlier bytes come late.
        k = _find(client, "C", 14_500)
        client[k], client[k + 2] = client[k + 2], client[k]
        # One frame lost by the capture (its bytes are acknowledged).
        m = _find(client, "C", 23_200)
        del client[m]
    folder.mkdir(parents=True, exist_ok=True)
    sample = Sample(folder / "client.pcap", folder / "upstream.pcap")
    write_pcap(str(sample.client), client)
    write_pcap(str(sample.upstream), upstream)
    return sample


#: The damage of :func:`write_kinds`, one exchange each, by id: region
#: kind, body offset and length.
KINDS = {
    1: ("insert", 5_000, 300),
    2: ("delete", 7_000, 400),
    3: ("replace", CORRUPT_AT, CORRUPT_LENGTH),
    4: ("truncate", 20_000, BODY_LENGTH - 20_000),
}


def write_kinds(folder: Path) -> Sample:
    """Four exchanges, each damaged between the legs with one region
    kind of :data:`KINDS` (the client's copy of the last one stops short,
    with a Content-Length of its own)."""
    bodies = [numbered_body(t) for t in ("K", "L", "M", "N")]
    seen = list(bodies)
    seen[0] = bodies[0][:5_000] + b"X" * 300 + bodies[0][5_000:]
    seen[1] = bodies[1][:7_000] + bodies[1][7_400:]
    replaced = bytearray(bodies[2])
    replaced[CORRUPT_AT : CORRUPT_AT + CORRUPT_LENGTH] = b"\xcf" * CORRUPT_LENGTH
    seen[2] = bytes(replaced)
    seen[3] = bodies[3][:20_000]
    client, upstream = two_leg_exchanges(bodies, client_bodies=seen)
    folder.mkdir(parents=True, exist_ok=True)
    sample = Sample(folder / "client.pcap", folder / "upstream.pcap")
    write_pcap(str(sample.client), client)
    write_pcap(str(sample.upstream), upstream)
    return sample


def sample_investigation(folder: Path, *, lossy: bool) -> Investigation:
    """The sample of :func:`write_sample`, written to ``folder`` and read."""
    sample = write_sample(folder, lossy=lossy)
    return fcgiforensics.analyze(str(sample.client), [str(sample.upstream)])


@pytest.fixture(scope="module")
def lossy(tmp_path_factory: pytest.TempPathFactory) -> Investigation:
    return sample_investigation(tmp_path_factory.mktemp("lossy"), lossy=True)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Investigation:
    return sample_investigation(tmp_path_factory.mktemp("clean"), lossy=False)


@pytest.fixture(scope="module")
def kinds(tmp_path_factory: pytest.TempPathFactory) -> Investigation:
    sample = write_kinds(tmp_path_factory.mktemp("kinds"))
    return fcgiforensics.analyze(sample.client, sample.upstream)


CAPTURES = Path(__file__).resolve().parent.parent / "captures"


# -- the entry point -------------------------------------------------------


def test_import_does_not_load_pandas_or_matplotlib() -> None:
    """Importing the package and the CLI leaves pandas and matplotlib unloaded."""
    code = (
        "import sys, fcgiforensics, fcgiforensics.cli.main\n"
        "print(sorted(m for m in ('pandas', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_analyze_is_exported_and_wraps_an_analysis(clean: Investigation) -> None:
    """fcgiforensics.analyze is public and returns an Investigation."""
    assert "analyze" in fcgiforensics.__all__
    assert isinstance(clean, Investigation)
    assert clean.analysis.summary()["corrupted"] == 1
    assert "1 corrupted" in repr(clean)
    assert "<table>" in clean._repr_html_()


def test_analyze_accepts_the_diff_options(tmp_path: Path) -> None:
    """Digest header and port options reach the analysis; bad ones raise."""
    sample = write_sample(tmp_path)
    inv = fcgiforensics.analyze(
        sample.client,
        sample.upstream,
        digest_header="X-Body-SHA1",
        fastcgi_ports=[9000],
    )
    assert inv.analysis.summary()["exchanges"] == 3
    with pytest.raises(ValueError):
        fcgiforensics.analyze(sample.client, sample.upstream, digest_header="X:nohash")


# -- frames against the report --------------------------------------------


def _dtypes(frame: pd.DataFrame) -> dict[str, str]:
    return {name: str(dtype) for name, dtype in frame.dtypes.items()}


def _expected(columns: dict[str, str]) -> dict[str, str]:
    return {name: str(pd.Series(dtype=dtype).dtype) for name, dtype in columns.items()}


@pytest.mark.parametrize("name", ["clean", "lossy"])
def test_exchanges_match_the_report(name: str, request: pytest.FixtureRequest) -> None:
    """One exchange row per report exchange, with the report's dotted names."""
    inv: Investigation = request.getfixturevalue(name)
    doc = inv.report()
    frame = inv.exchanges
    assert _dtypes(frame) == _expected(EXCHANGE_COLUMNS)
    assert len(frame) == len(doc["exchanges"])

    flat = pd.json_normalize(doc["exchanges"])
    missing = set(flat.columns) - set(frame.columns) - {"regions"}
    assert not missing
    for column in ("id", "verdict", "client.status", "upstream.body_length"):
        assert frame[column].tolist() == flat[column].tolist()
    assert frame["hop"].fillna("-").tolist() == flat["hop"].fillna("-").tolist()
    assert frame["region_count"].tolist() == [
        len(ex["regions"]) for ex in doc["exchanges"]
    ]


def test_exchange_times_keep_nanoseconds(clean: Investigation) -> None:
    """Start times are UTC datetimes equal to the sides' integer nanoseconds."""
    first = clean.analysis.exchanges[0]
    assert first.client is not None
    stamp = clean.exchanges["client.start"].iloc[0]
    assert stamp.value == first.client.start_ns
    assert str(stamp.tz) == "UTC"


def test_regions_match_the_report(clean: Investigation) -> None:
    """Each report region is a row with its exchange id, offsets and filter."""
    doc = clean.report()
    frame = clean.regions
    assert _dtypes(frame) == _expected(REGION_COLUMNS)
    expected = [
        (ex["id"], r["offset"], r["length"], r["kind"], r["wireshark_filter"])
        for ex in doc["exchanges"]
        for r in ex["regions"]
    ]
    got = list(
        frame[
            ["exchange_id", "offset", "length", "kind", "wireshark_filter"]
        ].itertuples(index=False, name=None)
    )
    assert got == expected
    assert got[0][1:3] == (CORRUPT_AT, CORRUPT_LENGTH)
    assert frame["client_end"].iloc[0] - frame["client_start"].iloc[0] == CORRUPT_LENGTH


def test_connections_match_the_report(lossy: Investigation) -> None:
    """One row per TCP connection the captures' entries count."""
    doc = lossy.report()
    frame = lossy.connections
    assert _dtypes(frame) == _expected(CONNECTION_COLUMNS)
    assert len(frame) == sum(c["tcp_connections"] for c in doc["captures"])
    client = frame[frame["leg"] == "client"].iloc[0]
    assert client["protocol"] == "http"
    assert client["to_client.gaps"] >= 1
    assert client["to_client.conflicts"] == 1


def test_anomalies_match_the_report(lossy: Investigation) -> None:
    """Anomaly rows count the same names as the captures' anomaly counts."""
    doc = lossy.report()
    frame = lossy.anomalies
    assert _dtypes(frame) == _expected(ANOMALY_COLUMNS)
    expected: Counter[str] = Counter()
    for capture in doc["captures"]:
        expected.update(capture["anomalies"])
    assert Counter(frame["name"]) == expected
    conflict = frame[frame["name"] == "tcp.overlap_conflict"].iloc[0]
    assert conflict["leg"] == "client"
    assert conflict["frame"] > 0
    assert conflict["meaning"]


def test_records_are_the_fastcgi_records(clean: Investigation) -> None:
    """Every record of every upstream request is a row, typed by name."""
    frame = clean.records
    assert _dtypes(frame) == _expected(RECORD_COLUMNS)
    total = sum(
        len(ex.fcgi.request.records) for ex in clean.analysis.exchanges if ex.fcgi
    )
    assert len(frame) == total
    assert {"BEGIN_REQUEST", "PARAMS", "STDIN", "STDOUT", "END_REQUEST"} <= set(
        frame["type"]
    )
    assert frame["frame"].notna().all()


def test_packets_cover_both_legs(clean: Investigation) -> None:
    """packets() gives each leg's frames whose bytes add up to the streams."""
    frame = clean.packets(2)
    assert _dtypes(frame) == _expected(PACKET_COLUMNS)
    assert set(frame["leg"]) == {"client", "upstream"}
    response = frame[
        (frame["leg"] == "client") & (frame["direction"] == "server->client")
    ]
    assert response["length"].sum() > BODY_LENGTH
    assert not response["late"].any()
    offsets = response["stream_offset"].tolist()
    assert offsets == sorted(offsets)


def test_packets_mark_gaps_conflicts_and_late_frames(lossy: Investigation) -> None:
    """A lost frame, a differing copy and a swapped frame each show in packets()."""
    frame = lossy.packets(3)
    client = frame[frame["leg"] == "client"]
    kinds = Counter(client["kind"])
    assert kinds["gap"] == 1
    assert kinds["conflict"] == 1
    # The two frames overtaken by the swap, and the differing copy.
    assert client["late"].fillna(False).sum() == 3
    gap = client[client["kind"] == "gap"].iloc[0]
    assert gap["gap_reason"] == "acked"
    assert pd.isna(gap["frame"])


def test_lossy_exchange_is_incomplete_with_unobserved_bytes(
    lossy: Investigation,
) -> None:
    """The exchange with a lost frame is incomplete and its gap is counted."""
    row = lossy.exchanges.set_index("id").loc[3]
    assert row["verdict"] == "incomplete"
    assert row["client.unobserved_bytes"] > 0


def test_unknown_exchange_names_the_valid_ids(clean: Investigation) -> None:
    """Asking for an exchange that does not exist raises a KeyError saying why."""
    with pytest.raises(KeyError, match="1 to 3"):
        clean.packets(99)


def test_empty_capture_gives_typed_empty_frames(tmp_path: Path) -> None:
    """A capture with no packets still gives every frame its columns and dtypes."""
    path = tmp_path / "empty.pcap"
    write_pcap(str(path), [])
    inv = fcgiforensics.analyze(path)
    for frame, columns in (
        (inv.exchanges, EXCHANGE_COLUMNS),
        (inv.regions, REGION_COLUMNS),
        (inv.connections, CONNECTION_COLUMNS),
        (inv.anomalies, ANOMALY_COLUMNS),
        (inv.records, RECORD_COLUMNS),
    ):
        assert len(frame) == 0
        assert _dtypes(frame) == _expected(columns)


# -- columns are the report's fields ---------------------------------------


def _flat(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``doc`` flattened with dots, as the frames name their columns; a
    side that is null (one leg only) has no fields."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        elif not (value is None and key in ("client", "upstream")):
            out[f"{prefix}{key}"] = value
    return out


def _cell(value: Any, dtype: str) -> Any:
    """A frame cell in the report's terms: ISO times, None for missing."""
    if isinstance(value, list):
        return value
    if pd.isna(value):
        return None
    if dtype == TIME_DTYPE:
        return ns_to_iso(value.value)
    return value.item() if hasattr(value, "item") else value


def _check_against(
    frame: pd.DataFrame,
    docs: list[dict[str, Any]],
    columns: dict[str, str],
    additions: tuple[str, ...],
) -> None:
    flat = [_flat(d) for d in docs]
    keys = {k for f in flat for k in f}
    assert set(frame.columns) == keys | set(additions)
    assert not keys & set(additions)
    assert len(frame) == len(docs)
    for n, row in enumerate(flat):
        for key, value in row.items():
            assert _cell(frame[key].iloc[n], columns[key]) == value, (n, key)


def test_region_columns_are_the_json_region_fields(kinds: Investigation) -> None:
    """Every REGION field of diff --json is a column of the same name with
    the same value (times as UTC datetimes to the ns, shown as the
    report's ISO strings), one row per report region, and the only other
    columns are the documented additions."""
    doc = kinds.report()
    frame = kinds.regions
    regions = [r for ex in doc["exchanges"] for r in ex["regions"]]
    assert len(regions) == len(KINDS)
    _check_against(frame, regions, REGION_COLUMNS, REGION_ADDITIONS)
    assert _dtypes(frame) == _expected(REGION_COLUMNS)
    for column in ("client_time", "upstream_time"):
        assert str(frame[column].dtype) == "datetime64[ns, UTC]"
    evidence = [r for ex in kinds.analysis.exchanges for r in ex.attribution.regions]
    assert [t.value for t in frame["client_time"]] == [
        r.client_time_ns for r in evidence
    ]
    assert frame["upstream_time"].notna().all()


def test_exchange_columns_are_the_json_exchange_fields() -> None:
    """Every EXCHANGE field of diff --json but its regions, digests
    included, is a column of the same dotted name and value; the other
    columns are the documented additions."""
    folder = CAPTURES / "app-digest-lie"
    inv = fcgiforensics.analyze(
        folder / "client.pcap", folder / "upstream.pcap", digest_header="X-Body-SHA1"
    )
    docs = [dict(ex) for ex in inv.report()["exchanges"]]
    for ex in docs:
        del ex["regions"]
    assert any("digest" in (ex["upstream"] or {}) for ex in docs)
    _check_against(inv.exchanges, docs, EXCHANGE_COLUMNS, EXCHANGE_ADDITIONS)


def test_record_numbers_are_integers(clean: Investigation) -> None:
    """A region's FastCGI records are a list of ints, in the frame and in
    the JSON beside the labels, and name STDOUT rows of records."""
    [region] = clean.report()["exchanges"][1]["regions"]
    assert region["records"] and region["record_numbers"]
    assert region["records"] == [f"record {n}" for n in region["record_numbers"]]
    row = clean.regions.iloc[0]
    assert row["record_numbers"] == region["record_numbers"]
    assert all(type(n) is int for n in row["record_numbers"])
    records = clean.records[
        (clean.records["exchange_id"] == row["exchange_id"])
        & (clean.records["direction"] == "server->client")
    ]
    chosen = records[records["number"].isin(row["record_numbers"])]
    assert set(chosen["type"]) == {"STDOUT"}


# -- region numbers ---------------------------------------------------------


def test_regions_are_numbered_as_the_text_report_prints_them(
    kinds: Investigation,
) -> None:
    """The region column, byte_view and timeline take the number the text
    report prints (from 1); 0 is refused with a message saying so."""
    text = report_text(kinds.analysis)
    for ex_id, number in kinds.regions[["exchange_id", "region"]].itertuples(
        index=False
    ):
        assert number == 1
        assert f"region {number}: " in text
        view = kinds.byte_view(ex_id, region=number)
        assert view.region == 0 and repr(view).endswith(f"region {number}>")
        assert f"region {number}:" in view._repr_html_()
        assert kinds.timeline(ex_id, region=number).axes
    assert "<td>1</td>" in kinds.evidence(3)._repr_html_()
    with pytest.raises(IndexError, match="numbered from 1"):
        kinds.byte_view(3, region=0)
    with pytest.raises(IndexError, match="numbered from 1"):
        kinds.timeline(3, region=2)


# -- limits, as the command line sets them ---------------------------------


def _cli_report(*args: str) -> dict[str, Any]:
    import json

    result = subprocess.run(
        [sys.executable, "-m", "fcgiforensics", "diff", "--json", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode in (0, 1), result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def _anomaly_counts(doc: dict[str, Any]) -> list[dict[str, int]]:
    return [c["anomalies"] for c in doc["captures"]]


def test_max_body_cuts_a_body_as_the_cli_does(tmp_path: Path) -> None:
    """max_body is --max-body in MiB: a body over it is cut with the same
    anomalies, lengths and verdicts as the command line gives."""
    sample = write_sample(tmp_path)
    size = 0.01  # MiB: 10,485 bytes, a third of each body
    inv = fcgiforensics.analyze(sample.client, sample.upstream, max_body=size)
    cli = _cli_report("--max-body", str(size), str(sample.client), str(sample.upstream))
    doc = inv.report()
    assert _anomaly_counts(doc) == _anomaly_counts(cli)
    assert doc["captures"][0]["anomalies"].get("http.body_limit")
    assert doc["captures"][1]["anomalies"].get("fcgi.stdout_limit")
    for leg in ("client", "upstream"):
        lengths = [e[leg]["body_length"] for e in doc["exchanges"]]
        assert lengths == [e[leg]["body_length"] for e in cli["exchanges"]]
        assert all(n <= int(size * 2**20) for n in lengths)
    assert [e["verdict"] for e in doc["exchanges"]] == [
        e["verdict"] for e in cli["exchanges"]
    ]


def test_max_pending_declares_a_gap_as_the_cli_does(tmp_path: Path) -> None:
    """max_pending is --max-pending in MiB: out-of-order bytes over it make
    the hole a gap, with the same anomalies as the command line."""
    sample = write_sample(tmp_path, lossy=True)
    size = 0.001  # MiB: 1,048 bytes, less than the two frames held back
    inv = fcgiforensics.analyze(sample.client, sample.upstream, max_pending=size)
    cli = _cli_report(
        "--max-pending", str(size), str(sample.client), str(sample.upstream)
    )
    assert _anomaly_counts(inv.report()) == _anomaly_counts(cli)
    assert inv.report()["captures"][0]["anomalies"].get("tcp.pending_limit")
    default = fcgiforensics.analyze(sample.client, sample.upstream)
    assert "tcp.pending_limit" not in set(default.anomalies["name"])


@pytest.mark.parametrize("size", [0, 1e-7, -1, 2**20 + 1, float("nan")])
def test_limits_out_of_range_are_refused(tmp_path: Path, size: float) -> None:
    """Sizes the command line refuses raise ValueError, naming the option."""
    sample = write_sample(tmp_path)
    for name in ("max_body", "max_pending"):
        with pytest.raises(ValueError, match=name):
            fcgiforensics.analyze(sample.client, sample.upstream, **{name: size})


def test_an_unchanged_retransmission_is_a_copy_row_and_drawn(tmp_path: Path) -> None:
    """A client-leg frame captured twice with the same bytes is a ``copy``
    row of ``packets`` at the second capture's own time, and the
    timeline marks it."""
    from matplotlib.figure import Figure

    client, upstream = two_leg_exchanges([numbered_body("r", 20_000)])
    data = [i for i, f in enumerate(client) if len(f.data) > 1000]
    again = client[data[3]]
    late = Frame(again.data, client[data[-1]].ts_ns + 1000, again.linktype)
    client = client[: data[-1] + 1] + [late] + client[data[-1] + 1 :]
    write_pcap(str(tmp_path / "c.pcap"), client)
    write_pcap(str(tmp_path / "u.pcap"), upstream)
    inv = fcgiforensics.analyze(str(tmp_path / "c.pcap"), str(tmp_path / "u.pcap"))
    packets = inv.packets(1)
    copies = packets[packets["kind"] == "copy"]
    assert len(copies) == 1
    [row] = copies.to_dict("records")
    assert row["leg"] == "client" and row["frame"] == data[-1] + 2
    assert row["time"].value == late.ts_ns
    figure = inv.timeline(1)
    assert isinstance(figure, Figure)
    assert any(line.get_gid() == "copies" for ax in figure.axes for line in ax.lines)
