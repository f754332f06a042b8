"""Tests of align_bodies: exact regions, unobserved bytes, large bodies."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fcgiforensics.decoders.body import Body
from fcgiforensics.diff import Alignment, DiffRegion, RegionKind, align_bodies
from fcgiforensics.diff.align import MERGE_GAP_BYTES

MB4 = 4 << 20


def noise(size: int, seed: int = 0) -> bytes:
    """Deterministic pseudo-random bytes (SHA-256 in counter mode)."""
    blocks = (
        hashlib.sha256(b"%d:%d" % (seed, k)).digest() for k in range(size // 32 + 1)
    )
    return b"".join(blocks)[:size]


def text(size: int) -> bytes:
    """Lines that repeat with a period of 1000 lines, like a long table."""
    rows = (
        b"<tr><td>row %04d</td><td>value</td></tr>\n" % (i % 1000)
        for i in range(size // 30)
    )
    return b"".join(rows)[:size]


def body(
    data: bytes,
    unobserved: Sequence[tuple[int, int]] = (),
    complete: bool = True,
) -> Body:
    """A Body whose unobserved ranges hold zero placeholders, as built."""
    raw = bytearray(data)
    for start, end in unobserved:
        raw[start:end] = bytes(end - start)
    return Body(bytes(raw), list(unobserved), [], complete)


def region(kind: RegionKind, a0: int, a1: int, b0: int, b1: int) -> DiffRegion:
    """An observed region with its length worked out."""
    return DiffRegion(a0, max(a1 - a0, b1 - b0), kind, a0, a1, b0, b1)


def apply(upstream: bytes, client: bytes, spans: tuple[DiffRegion, ...]) -> bytes:
    """Rebuild the client body from the upstream one and the spans.

    Also checks that the spans are ordered and that their client
    ranges follow each other exactly.
    """
    out = bytearray()
    pos = 0
    for r in sorted(spans, key=lambda r: (r.upstream_start, r.client_start)):
        assert r.upstream_start >= pos
        out += upstream[pos : r.upstream_start]
        assert r.client_start == len(out)
        out += client[r.client_start : r.client_end]
        pos = r.upstream_end
    out += upstream[pos:]
    return bytes(out)


def check(up: Body, cl: Body) -> Alignment:
    """Align and assert the invariants every alignment must keep."""
    result = align_bodies(up, cl)
    for r in result.regions:
        assert r.observed and r.reason == ""
        assert r.offset == r.upstream_start
        assert up.observed(r.upstream_start, r.upstream_end)
        assert cl.observed(r.client_start, r.client_end)
        if r.kind == "replace":
            assert r.upstream_end - r.upstream_start == r.length
            assert r.client_end - r.client_start == r.length
    for r in result.undecidable:
        assert not r.observed and r.reason
    assert apply(up.data, cl.data, result.regions + result.undecidable) == cl.data
    return result


# ----------------------------------------------------------- each kind


def test_identical_bodies_have_no_regions() -> None:
    """Equal bodies give no regions and no undecidable spans."""
    data = noise(10_000)
    result = check(body(data), body(data))
    assert result.identical and not result.differs


def test_empty_bodies_are_identical() -> None:
    """Two empty bodies align to nothing."""
    assert check(body(b""), body(b"")).identical


def test_replace_is_exact() -> None:
    """An overwrite in place is one replace region with exact bounds."""
    up = noise(10_000)
    cl = up[:4000] + noise(100, seed=9) + up[4100:]
    result = check(body(up), body(cl))
    assert result.regions == (region("replace", 4000, 4100, 4000, 4100),)


def test_single_bit_flip() -> None:
    """One flipped bit is a one-byte replace."""
    up = noise(5000)
    cl = bytearray(up)
    cl[2500] ^= 0x10
    result = check(body(up), body(bytes(cl)))
    assert result.regions == (region("replace", 2500, 2501, 2500, 2501),)


def test_insert_is_exact() -> None:
    """Bytes only in the client body are an insert at their upstream offset."""
    up = noise(10_000)
    cl = up[:3000] + b"\x01\x06\x00\x01\x10\x00\x00\x00" + up[3000:]
    result = check(body(up), body(cl))
    assert result.regions == (region("insert", 3000, 3000, 3000, 3008),)
    assert result.regions[0].length == 8


def test_delete_is_exact() -> None:
    """Upstream bytes missing from the client body are a delete."""
    up = noise(10_000)
    cl = up[:6000] + up[6300:]
    result = check(body(up), body(cl))
    assert result.regions == (region("delete", 6000, 6300, 6000, 6000),)


def test_truncate_when_client_stops_early() -> None:
    """A complete client body that is a prefix of upstream is a truncate."""
    up = noise(10_000)
    result = check(body(up), body(up[:7000]))
    assert result.regions == (region("truncate", 7000, 10_000, 7000, 7000),)
    assert result.regions[0].length == 3000


def test_client_longer_at_end_is_insert() -> None:
    """Extra bytes at the end of the client body are an insert at the end."""
    up = noise(1000)
    result = check(body(up), body(up + b"tail"))
    assert result.regions == (region("insert", 1000, 1000, 1000, 1004),)


def test_empty_client_body_is_truncate() -> None:
    """A complete but empty client body truncates all upstream bytes."""
    result = check(body(b"abc"), body(b""))
    assert result.regions == (region("truncate", 0, 3, 0, 0),)


def test_insert_at_start() -> None:
    """Bytes before the whole upstream body are an insert at offset 0."""
    up = noise(1000)
    result = check(body(up), body(b"HTTP/1.1 200 OK\r\n" + up))
    assert result.regions == (region("insert", 0, 0, 0, 17),)


def test_merges_differences_a_few_bytes_apart() -> None:
    """Differing bytes at most MERGE_GAP_BYTES apart make one region."""
    up = noise(2000)
    cl = bytearray(up)
    cl[1000] ^= 1
    cl[1000 + MERGE_GAP_BYTES + 1] ^= 1
    cl[1500] ^= 1
    result = check(body(up), body(bytes(cl)))
    end = 1000 + MERGE_GAP_BYTES + 2
    assert result.regions == (
        region("replace", 1000, end, 1000, end),
        region("replace", 1500, 1501, 1500, 1501),
    )


def test_differences_farther_apart_stay_separate() -> None:
    """Differing bytes more than MERGE_GAP_BYTES apart stay two regions."""
    up = noise(2000)
    cl = bytearray(up)
    cl[1000] ^= 1
    cl[1000 + MERGE_GAP_BYTES + 2] ^= 1
    result = check(body(up), body(bytes(cl)))
    assert len(result.regions) == 2


def test_merge_across_compare_blocks() -> None:
    """Runs on either side of a compare-block boundary still merge."""
    up = noise(200_000)
    cl = bytearray(up)
    cl[65534] ^= 1
    cl[65538] ^= 1
    result = check(body(up), body(bytes(cl)))
    assert result.regions == (region("replace", 65534, 65539, 65534, 65539),)


# ---------------------------------------------------------------- mixes


def test_mix_of_kinds() -> None:
    """A delete, a replace and an insert in one body come out in order."""
    up = noise(50_000)
    garbage = noise(40, seed=5)
    cl = (
        up[:1000]
        + up[1200:20_000]
        + garbage
        + up[20_040:30_000]
        + b"X" * 30
        + up[30_000:]
    )
    result = check(body(up), body(cl))
    assert result.regions == (
        region("delete", 1000, 1200, 1000, 1000),
        region("replace", 20_000, 20_040, 19_800, 19_840),
        region("insert", 30_000, 30_000, 29_800, 29_830),
    )


def test_insert_and_delete_of_same_size_are_not_a_huge_replace() -> None:
    """A shift between a deletion and an insertion of equal size is found."""
    up = noise(100_000)
    cl = up[:10_000] + up[10_100:70_000] + noise(100, seed=3) + up[70_000:]
    result = check(body(up), body(cl))
    assert result.regions == (
        region("delete", 10_000, 10_100, 10_000, 10_000),
        region("insert", 70_000, 70_000, 69_900, 70_000),
    )


def test_replace_then_truncate() -> None:
    """A client that ends in garbage shorter than the rest is replace + truncate."""
    up = noise(10_000)
    cl = up[:5000] + noise(100, seed=4)
    result = check(body(up), body(cl))
    assert result.regions == (
        region("replace", 5000, 5100, 5000, 5100),
        region("truncate", 5100, 10_000, 5100, 5100),
    )


def test_repetitive_text_with_insert_and_delete() -> None:
    """Text repeating with a long period still aligns on the nearest copy."""
    up = text(300_000)
    cl = up[:100_000] + b"INSERTED" + up[100_000:200_000] + up[200_050:]
    result = check(body(up), body(cl))
    assert result.regions == (
        region("insert", 100_000, 100_000, 100_000, 100_008),
        region("delete", 200_000, 200_050, 200_008, 200_008),
    )


def test_duplicated_block() -> None:
    """A block sent twice is an insert of its length."""
    up = noise(20_000)
    cl = up[:8192] + up[4096:8192] + up[8192:]
    result = check(body(up), body(cl))
    assert len(result.regions) == 1
    r = result.regions[0]
    assert r.kind == "insert" and r.length == 4096
    assert cl[r.client_start : r.client_end] == up[4096:8192]


# ------------------------------------------------------------ unobserved


def test_unobserved_upstream_bytes_are_undecidable_not_compared() -> None:
    """An upstream gap is reported undecidable even where the client differs."""
    up = noise(10_000)
    cl = bytearray(up)
    cl[3000:3100] = noise(100, seed=7)
    result = check(body(up, [(2900, 3200)]), body(bytes(cl)))
    assert result.regions == ()
    assert result.undecidable == (
        DiffRegion(
            2900, 300, "replace", 2900, 3200, 2900, 3200, False, "upstream_unobserved"
        ),
    )


def test_unobserved_client_bytes_with_difference_elsewhere() -> None:
    """A client gap is undecidable while a real difference elsewhere is a region."""
    up = noise(10_000)
    cl = bytearray(up)
    cl[8000] ^= 0xFF
    result = check(body(up), body(bytes(cl), [(1000, 1500)]))
    assert result.regions == (region("replace", 8000, 8001, 8000, 8001),)
    assert [
        (r.upstream_start, r.upstream_end, r.reason) for r in result.undecidable
    ] == [(1000, 1500, "client_unobserved")]


def test_placeholders_are_never_compared() -> None:
    """Placeholder zeros against real zeros are undecidable, not equal."""
    up = bytes(1000)
    result = check(body(up), body(up, [(100, 200)]))
    assert result.regions == ()
    assert len(result.undecidable) == 1


def test_gaps_on_both_sides() -> None:
    """Overlapping gaps on both sides give one span saying both were blind."""
    up = noise(5000)
    result = check(body(up, [(1000, 2000)]), body(up, [(1500, 2500)]))
    reasons = [(r.upstream_start, r.upstream_end, r.reason) for r in result.undecidable]
    assert reasons == [(1000, 2500, "both_unobserved")]


def test_insert_next_to_a_gap_is_undecidable() -> None:
    """A length change inside a stretch with a gap cannot be placed."""
    up = noise(10_000)
    cl = up[:5000] + b"extra" + up[5000:]
    result = check(body(up), body(cl, [(4990, 5020)]))
    assert result.regions == ()
    (span,) = result.undecidable
    assert span.upstream_start <= 4990 and span.client_end >= 5020
    assert span.reason == "client_unobserved"


def test_insert_away_from_a_gap_is_still_exact() -> None:
    """A gap far from an insertion leaves the insertion exact."""
    up = noise(100_000)
    cl = up[:60_000] + b"extra bytes!" + up[60_000:]
    result = check(body(up, [(10_000, 11_000)]), body(cl))
    assert result.regions == (region("insert", 60_000, 60_000, 60_000, 60_012),)
    assert [(r.upstream_start, r.upstream_end) for r in result.undecidable] == [
        (10_000, 11_000)
    ]


def test_unobserved_upstream_tail_with_shorter_client() -> None:
    """A truncation into bytes upstream did not observe is undecidable."""
    up = noise(10_000)
    result = check(body(up, [(9000, 10_000)]), body(up[:8000]))
    assert result.regions == ()
    (span,) = result.undecidable
    assert span.kind == "truncate" and span.reason == "upstream_unobserved"


# ----------------------------------------------------------- incomplete


def test_incomplete_shorter_client_tail_is_undecidable() -> None:
    """A client body cut short by the capture is not a truncation."""
    up = noise(10_000)
    result = check(body(up), body(up[:6000], complete=False))
    assert result.regions == ()
    assert result.undecidable == (
        DiffRegion(
            6000, 4000, "truncate", 6000, 10_000, 6000, 6000, False, "client_incomplete"
        ),
    )


def test_incomplete_client_with_real_difference() -> None:
    """Observed damage before the capture stopped is still a region."""
    up = noise(10_000)
    cl = bytearray(up[:6000])
    cl[100] ^= 1
    result = check(body(up), body(bytes(cl), complete=False))
    assert result.regions == (region("replace", 100, 101, 100, 101),)
    assert result.undecidable[0].reason == "client_incomplete"


def test_incomplete_client_with_insert() -> None:
    """An insertion is exact even when the client's end was not seen."""
    up = noise(10_000)
    cl = up[:2000] + b"0123456789abcdef" + up[2000:6000]
    result = check(body(up), body(cl, complete=False))
    assert result.regions == (region("insert", 2000, 2000, 2000, 2016),)
    (span,) = result.undecidable
    assert (span.upstream_start, span.upstream_end) == (6000, 10_000)


def test_incomplete_client_ending_in_garbage() -> None:
    """Garbage at the end of an incomplete client is compared in place."""
    up = noise(10_000)
    cl = up[:6000] + noise(50, seed=2)
    result = check(body(up), body(cl, complete=False))
    assert result.regions == (region("replace", 6000, 6050, 6000, 6050),)
    assert result.undecidable[0].upstream_start == 6050


def test_incomplete_upstream_with_longer_client() -> None:
    """Client bytes past an upstream body cut short are undecidable."""
    up = noise(10_000)
    result = check(body(up[:7000], complete=False), body(up))
    assert result.regions == ()
    assert result.undecidable == (
        DiffRegion(
            7000, 3000, "insert", 7000, 7000, 7000, 10_000, False, "upstream_incomplete"
        ),
    )


def test_incomplete_upstream_with_shorter_complete_client() -> None:
    """A complete client stopping before an incomplete upstream is a truncate."""
    up = noise(10_000)
    result = check(body(up[:8000], complete=False), body(up[:5000]))
    assert result.regions == (region("truncate", 5000, 8000, 5000, 5000),)


def test_incomplete_client_equal_and_identical() -> None:
    """An incomplete client equal to upstream so far has nothing to report."""
    up = noise(1000)
    assert check(body(up), body(up, complete=False)).identical


# --------------------------------------------------------- large bodies


def test_4mb_insert_in_middle() -> None:
    """A 200-byte insertion in the middle of 4 MB is found exactly."""
    up = noise(MB4)
    cl = up[: MB4 // 2] + noise(200, seed=1) + up[MB4 // 2 :]
    result = check(body(up), body(cl))
    half = MB4 // 2
    assert result.regions == (region("insert", half, half, half, half + 200),)


def test_4mb_scattered_flips() -> None:
    """Many single-byte flips across 4 MB each give their own region."""
    up = noise(MB4)
    cl = bytearray(up)
    spots = list(range(12_345, MB4, 300_001))
    for spot in spots:
        cl[spot] ^= 0x80
    result = check(body(up), body(bytes(cl)))
    assert [r.offset for r in result.regions] == spots
    assert all(r.kind == "replace" and r.length == 1 for r in result.regions)


def test_4mb_several_length_changes() -> None:
    """Deletes and inserts spread over 4 MB align exactly."""
    up = noise(MB4)
    cl = (
        up[:100_000]
        + up[100_500:1_000_000]
        + b"<html>error</html>"
        + up[1_000_000:3_000_000]
        + up[3_004_096:]
    )
    result = check(body(up), body(cl))
    assert [(r.kind, r.offset, r.length) for r in result.regions] == [
        ("delete", 100_000, 500),
        ("insert", 1_000_000, 18),
        ("delete", 3_000_000, 4096),
    ]


def test_4mb_shift_with_equal_lengths() -> None:
    """Equal 4 MB lengths with a delete and an insert far apart align exactly."""
    up = noise(MB4)
    cl = up[:500_000] + up[500_200:3_500_000] + b"Z" * 200 + up[3_500_000:]
    result = check(body(up), body(cl))
    assert [(r.kind, r.offset, r.length) for r in result.regions] == [
        ("delete", 500_000, 200),
        ("insert", 3_500_000, 200),
    ]


def test_4mb_wholly_different_bodies() -> None:
    """Two unrelated 4 MB bodies are one replace and end quickly."""
    result = check(body(noise(MB4, 1)), body(noise(MB4, 2)))
    assert result.regions == (region("replace", 0, MB4, 0, MB4),)


def test_4mb_incomplete_client_with_gap() -> None:
    """A 4 MB upstream against a cut, gapped client: gap and tail undecidable."""
    up = noise(MB4)
    result = check(
        body(up), body(up[:3_000_000], [(1_000_000, 1_001_000)], complete=False)
    )
    assert result.regions == ()
    assert [
        (r.upstream_start, r.upstream_end, r.reason) for r in result.undecidable
    ] == [
        (1_000_000, 1_001_000, "client_unobserved"),
        (3_000_000, MB4, "client_incomplete"),
    ]


# ------------------------------------------------------------ properties

EDIT = st.tuples(
    st.sampled_from(["insert", "delete", "replace"]),
    st.floats(0, 1),
    st.integers(1, 300),
    st.binary(min_size=1, max_size=300),
)


def edited(up: bytes, edits: list[tuple[str, float, int, bytes]]) -> bytes:
    """``up`` with each edit applied in turn at a relative position."""
    out = up
    for kind, where, size, data in edits:
        at = int(where * len(out))
        if kind == "insert":
            out = out[:at] + data + out[at:]
        elif kind == "delete":
            out = out[:at] + out[at + size :]
        else:
            out = out[:at] + data[:size] + out[at + len(data[:size]) :]
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 1000),
    size=st.integers(0, 3000),
    alphabet=st.sampled_from([0, 2, 4, 256]),
    edits=st.lists(EDIT, max_size=5),
)
def test_regions_rebuild_client(
    seed: int, size: int, alphabet: int, edits: list[tuple[str, float, int, bytes]]
) -> None:
    """Applying the regions to a fully observed upstream gives the client body."""
    up = noise(size, seed)
    if alphabet:
        up = bytes(b % alphabet for b in up)
    cl = edited(up, edits)
    result = check(body(up), body(cl))
    assert result.undecidable == ()
    assert apply(up, cl, result.regions) == cl
    assert result.identical == (up == cl)


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 1000),
    size=st.integers(1, 3000),
    edits=st.lists(EDIT, max_size=3),
    gaps_up=st.lists(st.tuples(st.floats(0, 1), st.integers(1, 200)), max_size=2),
    gaps_cl=st.lists(st.tuples(st.floats(0, 1), st.integers(1, 200)), max_size=2),
    complete_up=st.booleans(),
    complete_cl=st.booleans(),
)
def test_unobserved_bytes_never_in_regions(
    seed: int,
    size: int,
    edits: list[tuple[str, float, int, bytes]],
    gaps_up: list[tuple[float, int]],
    gaps_cl: list[tuple[float, int]],
    complete_up: bool,
    complete_cl: bool,
) -> None:
    """With gaps and cut ends, regions hold only observed bytes, spans tile both."""
    up = noise(size, seed)
    cl = edited(up, edits)

    def ranges(data: bytes, gaps: list[tuple[float, int]]) -> list[tuple[int, int]]:
        spans = sorted((int(w * len(data)), int(w * len(data)) + n) for w, n in gaps)
        merged: list[tuple[int, int]] = []
        for s, e in spans:
            e = min(e, len(data))
            if s >= e:
                continue
            if merged and s <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
            else:
                merged.append((s, e))
        return merged

    up_body = body(up, ranges(up, gaps_up), complete_up)
    cl_body = body(cl, ranges(cl, gaps_cl), complete_cl)
    result = check(up_body, cl_body)
    if (
        up_body.fully_observed
        and cl_body.fully_observed
        and complete_up
        and complete_cl
    ):
        assert result.undecidable == ()


@pytest.mark.parametrize("cut", [0, 1, 31, 32, 33, 255, 4096])
def test_truncate_lengths(cut: int) -> None:
    """A client cut at any point before the end is a truncate of the rest."""
    up = noise(5000)
    result = check(body(up), body(up[: 5000 - cut]))
    if cut == 0:
        assert result.identical
    else:
        assert result.regions == (
            region("truncate", 5000 - cut, 5000, 5000 - cut, 5000 - cut),
        )


def test_public_names() -> None:
    """The diff package exports exactly its documented names."""
    import fcgiforensics.diff as diff

    assert sorted(diff.__all__) == [
        "Alignment",
        "DiffRegion",
        "RegionKind",
        "Side",
        "UndecidableReason",
        "align_bodies",
        "describe_shapes",
    ]
    for name in diff.__all__:
        assert hasattr(diff, name)
