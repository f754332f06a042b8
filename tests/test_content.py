"""Streaming content decoding: every coding, limits, damage and the body map."""

from __future__ import annotations

import gzip
import random
import zlib

import brotli
import pytest
import zstandard

from fcgiforensics.anomalies import CATALOGUE, Anomaly
from fcgiforensics.decoders.content import (
    MAX_DECODED_BYTES,
    MAX_RATIO,
    SUPPORTED_CODINGS,
    ContentDecoder,
    parse_codings,
)
from fcgiforensics.errors import UsageError

PLAIN = b"".join(b"line %d of a test page\n" % i for i in range(3000))


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


ENCODERS = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": zstandard.ZstdCompressor().compress,
}


def _decode(
    codings: list[str],
    wire: bytes,
    step: int | None = None,
    *,
    max_output: int = MAX_DECODED_BYTES,
    max_ratio: int = MAX_RATIO,
) -> tuple[bytes, list[Anomaly], ContentDecoder]:
    """Feed ``wire`` (placed at stream offset 1000) in steps of ``step``."""
    decoder = ContentDecoder(codings, max_output=max_output, max_ratio=max_ratio)
    anomalies: list[Anomaly] = []
    step = step or max(len(wire), 1)
    for i in range(0, len(wire), step):
        piece = wire[i : i + step]
        anomalies += decoder.feed(piece, 1000 + i, 1000 + i + len(piece))
    anomalies += decoder.finish(1000 + len(wire))
    return decoder.build().data, anomalies, decoder


@pytest.mark.parametrize("coding", sorted(ENCODERS))
@pytest.mark.parametrize("step", [None, 1, 1448])
def test_each_coding_round_trips(coding: str, step: int | None) -> None:
    """Each supported coding decodes to the original, however it is cut."""
    data, anomalies, _ = _decode([coding], ENCODERS[coding](PLAIN), step)
    assert data == PLAIN
    assert anomalies == []


@pytest.mark.parametrize("coding", sorted(ENCODERS))
def test_trailing_bytes_after_stream_are_an_anomaly(coding: str) -> None:
    """Bytes after a coding's end marker are reported and the output is kept."""
    wire = ENCODERS[coding](PLAIN) + b"\xffjunk"
    data, anomalies, _ = _decode([coding], wire)
    if coding == "br":
        # brotli fails the whole last step: its output is lost.
        assert PLAIN.startswith(data) and len(data) > len(PLAIN) // 2
        assert [a.name for a in anomalies] == ["http.decode_error"]
    else:
        assert data == PLAIN
        assert [a.name for a in anomalies] == ["http.decode_trailing_data"]


def _noise_then_zeros(zeros: int) -> bytes:
    """8 KiB of noise, then a run of zeros: the run packs to a few bytes.

    The noise keeps the whole body under the ratio limit, so the run is
    decoded in full, from the last few encoded bytes.
    """
    return random.Random(7).randbytes(8192) + bytes(zeros)


FEW_MB_ENCODERS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "raw deflate": _raw_deflate,
    "br": brotli.compress,
    "zstd": zstandard.ZstdCompressor().compress,
}


@pytest.mark.parametrize("name", sorted(FEW_MB_ENCODERS))
@pytest.mark.parametrize("step", [None, 1448])
def test_large_expansion_of_the_last_bytes_is_decoded_whole(
    name: str, step: int | None
) -> None:
    """A few MB that the last encoded bytes expand to are all decoded."""
    plain = _noise_then_zeros(3 * 1024 * 1024)
    coding = "deflate" if name == "raw deflate" else name
    data, anomalies, decoder = _decode([coding], FEW_MB_ENCODERS[name](plain), step)
    assert anomalies == []
    assert len(data) == len(plain) and data == plain
    assert decoder.build().complete


def test_brotli_body_under_the_ratio_floor_is_not_cut_short() -> None:
    """600 KB of zeros over br, a 14-byte stream, decodes to all 600 KB."""
    plain = bytes(600_000)
    data, anomalies, _ = _decode(["br"], brotli.compress(plain))
    assert (len(data), anomalies) == (len(plain), [])


def test_raw_deflate_output_pending_after_the_last_byte_is_kept() -> None:
    """Raw deflate output still inside zlib once all input is read comes out.

    Raw deflate has no trailer, so the end of its last match can still be
    inside the inflater when the final byte has been read and an output
    block is full; those bytes must come out, not be called truncated.
    """
    cut_short = []
    for extra in range(0, 512, 8):
        plain = bytes(256 * 1024 + extra)
        data, anomalies, _ = _decode(["deflate"], _raw_deflate(plain))
        if (len(data), anomalies) != (len(plain), []):
            cut_short.append((extra, len(plain) - len(data)))
    assert cut_short == []


def test_raw_deflate_is_accepted_for_deflate() -> None:
    """``deflate`` without the zlib wrapper falls back to raw deflate."""
    data, anomalies, _ = _decode(["deflate"], _raw_deflate(PLAIN), 1)
    assert (data, anomalies) == (PLAIN, [])


def test_gzip_members_are_concatenated() -> None:
    """A gzip body of several members decodes to their concatenation."""
    wire = gzip.compress(b"first ") + gzip.compress(b"second")
    data, anomalies, _ = _decode(["gzip"], wire, 3)
    assert (data, anomalies) == (b"first second", [])


def test_stacked_codings_are_undone_in_reverse() -> None:
    """``gzip, br`` means gzip then br were applied; br is undone first."""
    wire = brotli.compress(gzip.compress(PLAIN))
    data, anomalies, _ = _decode(parse_codings([b"gzip, br"]), wire, 700)
    assert (data, anomalies) == (PLAIN, [])


def test_parse_codings_lists_fields_in_order() -> None:
    """Several fields form one list; identity and case are normalised away."""
    assert parse_codings([b"GZip , identity", b"br"]) == ["gzip", "br"]
    assert parse_codings([b""]) == []


def test_unknown_coding_is_a_usage_error() -> None:
    """The caller must check SUPPORTED_CODINGS before asking for a decoder."""
    assert "compress" not in SUPPORTED_CODINGS
    with pytest.raises(UsageError):
        ContentDecoder(["compress"])


def test_corrupt_stream_keeps_bytes_decoded_before() -> None:
    """A damaged gzip stream stops with an anomaly at the failing block."""
    wire = bytearray(gzip.compress(PLAIN))
    wire[3500:3510] = bytes(10)
    decoder = ContentDecoder(["gzip"])
    anomalies: list[Anomaly] = []
    for start in range(0, len(wire), 1000):
        piece = bytes(wire[start : start + 1000])
        anomalies += decoder.feed(piece, start, start + len(piece))
    anomalies += decoder.finish(len(wire))
    body = decoder.build()
    # Deflate notices the damage a little after it (a bad back-reference).
    assert [a.name for a in anomalies] == ["http.decode_error"]
    assert anomalies[0].stream_offset in range(3000, len(wire), 1000)
    assert len(body.data) > 10000 and PLAIN.startswith(body.data[:10000])
    assert not body.complete


def test_truncated_stream_is_an_anomaly() -> None:
    """An encoded body that ends before its end marker is reported at the end."""
    wire = zstandard.ZstdCompressor().compress(PLAIN)[:-10]
    _, anomalies, decoder = _decode(["zstd"], wire)
    assert [(a.name, a.stream_offset) for a in anomalies] == [
        ("http.decode_truncated", 1000 + len(wire))
    ]
    assert not decoder.build().complete


def test_gap_stops_decoding() -> None:
    """No decoder can step over missing encoded bytes."""
    decoder = ContentDecoder(["gzip"])
    wire = gzip.compress(PLAIN)
    assert decoder.feed(wire[:100], 0, 100) == []
    gap = decoder.gap(100, 50)
    assert [(a.name, a.stream_offset) for a in gap] == [("http.decode_gap", 100)]
    assert decoder.feed(wire[150:], 150, len(wire)) == []
    assert decoder.finish(len(wire)) == []
    assert not decoder.build().complete


@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
def test_bomb_stops_at_output_limit(coding: str) -> None:
    """A bomb stops with an anomaly and never outgrows the limit by much."""
    limit = 2 * 1024 * 1024
    wire = ENCODERS[coding](bytes(64 * 1024 * 1024))
    data, anomalies, _ = _decode([coding], wire, max_output=limit, max_ratio=10**9)
    assert [a.name for a in anomalies] == ["http.decompression_limit"]
    assert len(data) <= limit + 4 * 1024 * 1024


def test_ratio_limit_stops_a_bomb_early() -> None:
    """A brotli bomb trips the ratio limit soon after the ratio floor."""
    wire = brotli.compress(bytes(64 * 1024 * 1024))
    data, anomalies, _ = _decode(["br"], wire)
    assert [a.name for a in anomalies] == ["http.decompression_limit"]
    assert len(data) < 8 * 1024 * 1024


def test_decoded_blocks_map_to_encoded_stream_ranges() -> None:
    """Each decoded piece points, coarsely, at the encoded bytes fed for it."""
    wire = gzip.compress(PLAIN)
    decoder = ContentDecoder(["gzip"])
    half = len(wire) // 2
    decoder.feed(wire[:half], 500, 500 + half, label="chunk 1")
    decoder.feed(wire[half:], 900, 900 + len(wire) - half, label="chunk 2")
    body = decoder.build()
    assert body.data == PLAIN
    assert all(not p.exact for p in body.pieces)
    assert {(p.stream_start, p.stream_end, p.label) for p in body.pieces} <= {
        (500, 500 + half, "chunk 1"),
        (900, 900 + len(wire) - half, "chunk 2"),
    }
    assert body.pieces[-1].body_end == len(PLAIN)


def test_anomaly_names_are_catalogued() -> None:
    """Every anomaly the content decoder can return is in the catalogue."""
    for name in (
        "http.decode_error",
        "http.decode_gap",
        "http.decode_truncated",
        "http.decode_trailing_data",
        "http.decompression_limit",
    ):
        assert name in CATALOGUE
