"""Tests of describe_shapes: each recognisable shape, and its absence."""

from __future__ import annotations

import hashlib

from fcgiforensics.decoders.body import Body
from fcgiforensics.diff import DiffRegion, align_bodies, describe_shapes

# FastCGI 1.0 spec, section 3.3: version 1, FCGI_STDOUT, request id 1,
# content length 4096, no padding, reserved zero.
STDOUT_HEADER = bytes([1, 6, 0, 1, 0x10, 0x00, 0, 0])


def noise(size: int, seed: int = 0) -> bytes:
    """Deterministic pseudo-random bytes (SHA-256 in counter mode)."""
    blocks = (
        hashlib.sha256(b"%d:%d" % (seed, k)).digest() for k in range(size // 32 + 1)
    )
    return b"".join(blocks)[:size]


def only_region(up: bytes, cl: bytes) -> DiffRegion:
    """The single region of a fully observed alignment."""
    (region,) = align_bodies(Body(up), Body(cl)).regions
    return region


def shapes_of_insert(inserted: bytes, at: int = 1000) -> list[str]:
    """Shapes of ``inserted`` put into a random body at ``at``."""
    up = noise(20_000, seed=1)
    cl = up[:at] + inserted + up[at:]
    return describe_shapes(only_region(up, cl), up, cl)


def test_fastcgi_header_inside_body() -> None:
    """A FastCGI record header among client bytes is named with its fields."""
    found = shapes_of_insert(STDOUT_HEADER, at=1000)
    assert (
        "a FastCGI record header at region byte 0 (client byte 1,000): "
        "FCGI_STDOUT, request id 1, content length 4,096, padding 0"
    ) in found


def test_fastcgi_header_rules_reject_chance_bytes() -> None:
    """Header-like bytes breaking the request id or padding rules are ignored."""
    bad_id = bytes([1, 6, 0, 0, 0x10, 0, 0, 0])  # STDOUT with id 0
    bad_pad = bytes([1, 6, 0, 1, 0x10, 0, 200, 0])  # padding 200
    mgmt_id = bytes([1, 9, 0, 5, 0, 8, 0, 0])  # GET_VALUES with id 5
    for inserted in (bad_id, bad_pad, mgmt_id):
        found = shapes_of_insert(b"xx" + inserted + b"yy")
        assert not any("FastCGI" in s for s in found)


def test_management_record_header() -> None:
    """A management record header with request id 0 is recognised."""
    found = shapes_of_insert(b"...." + bytes([1, 10, 0, 0, 0, 16, 0, 0]) + b"....")
    assert any("FCGI_GET_VALUES_RESULT, request id 0" in s for s in found)


def test_python_traceback_text() -> None:
    """Python traceback text is quoted from its marker to the end of line."""
    text = b'oops\nTraceback (most recent call last):\n  File "app.py"\n'
    found = shapes_of_insert(text)
    assert (
        'a Python traceback ("Traceback (most recent call last):") '
        "at region byte 5 (client byte 1,005)"
    ) in found


def test_php_fatal_error_text() -> None:
    """PHP error log text is named, one sentence per line."""
    text = (
        b"PHP Fatal error:  Uncaught Error: boom in /srv/a.php:3\n"
        b"Stack trace:\n#0 {main}\n"
    )
    found = shapes_of_insert(text)
    assert any(
        s.startswith('a PHP fatal error ("PHP Fatal error:  Uncaught') for s in found
    )
    assert any(s.startswith('a PHP stack trace ("Stack trace:")') for s in found)
    # "Fatal error: " also matches inside the first line: said once only.
    assert sum("fatal error" in s for s in found) == 1


def test_zero_run() -> None:
    """The longest run of zero bytes is located in region and body bytes."""
    found = shapes_of_insert(b"abc" + bytes(100) + b"def" + bytes(20))
    assert (
        "a run of 100 zero bytes at region bytes 3-102 (client bytes 1,003-1,102), "
        "and 1 shorter or equal runs"
    ) in found


def test_all_zero_region() -> None:
    """A region made only of zero bytes says so."""
    up = noise(10_000)
    cl = up[:2000] + bytes(300) + up[2300:]
    found = describe_shapes(only_region(up, cl), up, cl)
    assert "all 300 bytes of the region are zero" in found


def test_short_zero_run_is_not_reported() -> None:
    """Fewer than ZERO_RUN_MIN_BYTES zero bytes are not a shape."""
    found = shapes_of_insert(b"ab" + bytes(10) + b"cd")
    assert not any("zero" in s for s in found)


def test_repeat_of_earlier_bytes() -> None:
    """Bytes copied from elsewhere in the body name where they came from."""
    up = noise(1_000_000)
    cl = bytearray(up)
    cl[600_000:600_200] = up[523_000:523_200]
    region = only_region(up, bytes(cl))
    found = describe_shapes(region, up, bytes(cl))
    assert (
        "the 200 bytes repeat client body bytes 523,000-523,199 (77,000 bytes earlier)"
    ) in found


def test_partial_repeat() -> None:
    """A region that starts with copied bytes reports the copied length."""
    up = noise(100_000)
    cl = bytearray(up)
    cl[50_000:50_300] = up[10_000:10_100] + noise(200, seed=8)
    found = describe_shapes(only_region(up, bytes(cl)), up, bytes(cl))
    assert (
        "the first 100 bytes repeat client body bytes 10,000-10,099 "
        "(40,000 bytes earlier)"
    ) in found


def test_repeat_of_later_bytes() -> None:
    """A copy of bytes that come later in the body says 'later'."""
    up = noise(100_000)
    cl = bytearray(up)
    cl[1000:1064] = up[90_000:90_064]
    found = describe_shapes(only_region(up, bytes(cl)), up, bytes(cl))
    assert any(s.endswith("(89,000 bytes later)") for s in found)


def test_repeat_in_unobserved_bytes_is_ignored() -> None:
    """A match inside placeholder bytes is not a repeat."""
    up = noise(10_000)
    cl = bytearray(up)
    cl[2000:2032] = b"Q" * 16 + bytes(16)
    cl[5000:5100] = bytes(100)  # placeholders of an unobserved range
    cl[5040:5056] = b"Q" * 16
    region = DiffRegion(2000, 32, "replace", 2000, 2032, 2000, 2032)
    seen = describe_shapes(region, up, bytes(cl))
    unseen = describe_shapes(region, up, bytes(cl), unobserved=[(5000, 5100)])
    assert any("repeat" in s for s in seen)
    assert not any("repeat" in s for s in unseen)


def test_power_of_two_boundaries() -> None:
    """Region edges on 4096-multiples or powers of two are noted."""
    up = noise(200_000)
    cl = bytearray(up)
    cl[65536:73728] = noise(8192, seed=3)
    found = describe_shapes(only_region(up, bytes(cl)), up, bytes(cl))
    assert "the region starts at client byte 65,536, which is 2^16" in found
    assert "the region ends before client byte 73,728, a multiple of 8,192" in found


def test_truncation_at_boundary_on_either_side() -> None:
    """A truncate names the point where the client body stops."""
    up = noise(300_000)
    cl = up[:131072]
    region = only_region(up, cl)
    assert describe_shapes(region, up, cl) == [
        "the region sits at client byte 131,072, which is 2^17"
    ]
    upstream_view = describe_shapes(region, up, cl, side="upstream")
    assert upstream_view[0] == (
        "the region starts at upstream byte 131,072, which is 2^17"
    )


def test_small_offsets_are_not_boundaries() -> None:
    """Offsets that are not multiples of BOUNDARY_MIN are not boundaries."""
    found = shapes_of_insert(b"x" * 20, at=1024)
    assert not any("region starts" in s or "region sits" in s for s in found)


def test_chunk_size_line() -> None:
    """HTTP chunk-size line text inside the body is named with its size."""
    found = shapes_of_insert(b"\r\n1000\r\n")
    assert (
        'an HTTP chunk-size line ("1000\\r\\n", 4,096 bytes) '
        "at region byte 2 (client byte 1,002)"
    ) in found


def test_last_chunk() -> None:
    """A last-chunk inside the body is named as such."""
    found = shapes_of_insert(b"\r\n0\r\n\r\n")
    assert any(s.startswith('a last-chunk ("0\\r\\n\\r\\n")') for s in found)


def test_http_header_text() -> None:
    """A status line and header fields inside the body are quoted."""
    found = shapes_of_insert(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\nX-Other: 1\r\n\r\n"
    )
    assert (
        'HTTP header text ("HTTP/1.1 200 OK") at region byte 0 (client byte 1,000)'
        in found
    )
    assert any('("content-type: text/html")' in s for s in found)


def test_many_findings_are_summed_up() -> None:
    """More than MAX_LISTED findings of a kind end in one summary sentence."""
    found = shapes_of_insert(b"".join(b"\nStatus: %d\r" % n for n in range(6)))
    headers = [s for s in found if s.startswith("HTTP header text")]
    assert len(headers) == 3
    assert "and 3 more lines of HTTP header text" in found


def test_random_bytes_have_no_shapes() -> None:
    """Plain random garbage at an odd offset gives no sentence at all."""
    assert shapes_of_insert(noise(5000, seed=99), at=1001) == []


def test_upstream_side_of_a_delete() -> None:
    """With side='upstream' the deleted upstream bytes are examined."""
    up = noise(10_000)
    up = up[:3000] + b"PHP Warning:  oops in x.php\n" + up[3000:]
    cl = up[:3000] + up[3028:]
    region = only_region(up, cl)
    assert region.kind == "delete"
    found = describe_shapes(region, up, cl, side="upstream")
    assert any(s.startswith('a PHP warning ("PHP Warning:  oops') for s in found)
    assert describe_shapes(region, up, cl) == []


def test_binary_bytes_are_escaped_not_dropped() -> None:
    """Quoted text shows non-ASCII bytes as escapes."""
    found = shapes_of_insert(b"PHP Notice: \xff\x00x\n")
    assert any('("PHP Notice: \\xff\\x00x")' in s for s in found)
