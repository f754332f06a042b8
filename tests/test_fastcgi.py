"""Tests of the FastCGI 1.0 decoder (fcgiforensics.decoders.fastcgi)."""

from __future__ import annotations

import random
import signal
import sys
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fcgiforensics.anomalies import CATALOGUE, Anomaly
from fcgiforensics.decoders import fastcgi
from fcgiforensics.decoders.base import Direction
from fcgiforensics.decoders.body import BodyPiece
from fcgiforensics.decoders.fastcgi import (
    FcgiDecoder,
    FcgiManagementRecord,
    FcgiRequest,
    FcgiType,
)

UP = Direction.TO_SERVER
DOWN = Direction.TO_CLIENT

# ---------------------------------------------------------------------------
# A small record writer


def record(
    rtype: int,
    rid: int,
    content: bytes = b"",
    *,
    padding: int | None = None,
    version: int = 1,
) -> bytes:
    """One record, padded to a multiple of 8 unless told otherwise."""
    pad = -len(content) & 7 if padding is None else padding
    n = len(content)
    head = bytes([version, rtype, rid >> 8, rid & 255, n >> 8, n & 255, pad, 0])
    return head + content + bytes(pad)


def pair(name: bytes, value: bytes) -> bytes:
    """A name-value pair with 1- or 4-byte lengths (spec section 3.4)."""

    def length(n: int) -> bytes:
        return bytes([n]) if n < 128 else (n | 0x80000000).to_bytes(4, "big")

    return length(len(name)) + length(len(value)) + name + value


def begin(rid: int, role: int = 1, keep: bool = False) -> bytes:
    return record(1, rid, bytes([0, role, int(keep), 0, 0, 0, 0, 0]))


def end_request(rid: int, app: int = 0, proto: int = 0) -> bytes:
    return record(3, rid, app.to_bytes(4, "big") + bytes([proto, 0, 0, 0]))


PARAMS = {b"REQUEST_METHOD": b"GET", b"SCRIPT_NAME": b"/index.php"}


def request_bytes(
    rid: int,
    params: dict[bytes, bytes] | None = None,
    stdin: bytes = b"",
    keep: bool = False,
) -> bytes:
    """BEGIN_REQUEST, PARAMS and STDIN streams as nginx sends them."""
    nv = b"".join(pair(k, v) for k, v in (params or PARAMS).items())
    out = begin(rid, keep=keep) + record(4, rid, nv) + record(4, rid)
    if stdin:
        out += record(5, rid, stdin)
    return out + record(5, rid)


def response_bytes(
    rid: int, stdout: bytes, *, chunk: int = 0, stderr: bytes = b""
) -> bytes:
    """STDOUT in records of ``chunk`` bytes, STDERR, END_REQUEST."""
    out = b""
    step = chunk or max(len(stdout), 1)
    for i in range(0, len(stdout), step):
        out += record(6, rid, stdout[i : i + step])
    out += record(6, rid)
    if stderr:
        out += record(7, rid, stderr) + record(7, rid)
    return out + end_request(rid)


PAGE = b"Status: 201 Created\r\nContent-Type: text/plain\r\n\r\nhello world"

Conversation = list[tuple[Direction, bytes]]


def run(conv: Conversation, step: int = 0) -> list[object]:
    """Feed each segment in order (``step`` bytes per call), end, close."""
    dec = FcgiDecoder()
    offsets = {UP: 0, DOWN: 0}
    out: list[object] = []
    for direction, data in conv:
        n = step or max(len(data), 1)
        for i in range(0, len(data), n):
            out += dec.feed(direction, offsets[direction] + i, data[i : i + n])
        offsets[direction] += len(data)
    # The app's side ends first: its early end is what these tests probe.
    out += dec.end(DOWN, offsets[DOWN])
    out += dec.end(UP, offsets[UP])
    out += dec.close()
    return out


def requests(out: list[object]) -> list[FcgiRequest]:
    return [m for m in out if isinstance(m, FcgiRequest)]


def names(out: list[object]) -> list[str]:
    return [m.name for m in out if isinstance(m, Anomaly)]


def simple() -> Conversation:
    return [(UP, request_bytes(1, stdin=b"a=1")), (DOWN, response_bytes(1, PAGE))]


# ---------------------------------------------------------------------------
# Well-formed traffic


def test_simple_request_decodes_every_field() -> None:
    """A lone request yields one complete FcgiRequest with all fields set."""
    out = run(simple())
    assert names(out) == []
    [req] = requests(out)
    assert req.request_id == 1 and req.begun and req.complete
    assert req.role == fastcgi.ROLE_RESPONDER and not req.keep_conn
    assert req.params == {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/index.php"}
    assert req.param_pairs == tuple(PARAMS.items())
    assert req.stdin.data == b"a=1" and req.stdin.complete
    assert req.status == 201
    assert req.headers.content_type == "text/plain"
    assert (
        req.header_block == b"Status: 201 Created\r\nContent-Type: text/plain\r\n\r\n"
    )
    assert req.headers.fields == (
        ("Status", "201 Created"),
        ("Content-Type", "text/plain"),
    )
    assert req.body.data == b"hello world" and req.body.complete
    assert req.app_status == 0 and req.protocol_status == 0
    assert [r.type for r in req.records] == [
        FcgiType.BEGIN_REQUEST,
        FcgiType.PARAMS,
        FcgiType.PARAMS,
        FcgiType.STDIN,
        FcgiType.STDIN,
        FcgiType.STDOUT,
        FcgiType.STDOUT,
        FcgiType.END_REQUEST,
    ]
    assert [r.number for r in req.records] == [1, 2, 3, 4, 5, 1, 2, 3]


def test_body_pieces_map_exactly_to_stream_offsets() -> None:
    """Each body byte maps to its stream offset, labelled by its record."""
    stdout = b"Content-Type: a/b\n\n" + b"0123456789" * 3
    out = run([(UP, request_bytes(1)), (DOWN, response_bytes(1, stdout, chunk=12))])
    [req] = requests(out)
    # Records of 12 content bytes take 8 + 12 + 4 (padding) stream bytes.
    # The header block is 19 bytes: record 1 is all header, record 2
    # carries 7 header bytes then 5 body bytes, record 5 the last byte.
    assert req.body.data == b"0123456789" * 3
    assert req.body.pieces == [
        BodyPiece(0, 5, 24 + 8 + 7, 24 + 8 + 12, True, "record 2"),
        BodyPiece(5, 17, 48 + 8, 48 + 20, True, "record 3"),
        BodyPiece(17, 29, 72 + 8, 72 + 20, True, "record 4"),
        BodyPiece(29, 30, 96 + 8, 96 + 9, True, "record 5"),
    ]
    assert req.body.stream_range(4, 6) == (24 + 8 + 11, 48 + 9)
    assert req.body.labels(4, 6) == ["record 2", "record 3"]


def test_byte_by_byte_equals_whole() -> None:
    """Feeding one byte per call gives exactly what one call gives."""
    assert run(simple(), step=1) == run(simple())


def test_trailing_bytes_do_not_delay_finished_requests() -> None:
    """A request is emitted at END_REQUEST even with the next record partly fed."""
    dec = FcgiDecoder()
    dec.feed(UP, 0, request_bytes(1))
    tail = record(6, 1, b"x")[:5]
    out = dec.feed(DOWN, 0, response_bytes(1, PAGE) + tail)
    assert len(requests(out)) == 1
    n = len(response_bytes(1, PAGE))
    after = dec.end(DOWN, n + 5)
    assert names(after) == ["fcgi.truncated_record"]
    assert after[0] == Anomaly(
        "fcgi.truncated_record",
        "the stream ends 5 bytes into a record header",
        direction=DOWN.label,
        stream_offset=n,
    )


def test_pairs_with_long_lengths_split_across_params_records() -> None:
    """4-byte lengths work and a pair may break anywhere between records."""
    value = b"v" * 300
    nv = pair(b"HTTP_COOKIE", value) + pair(b"X" * 200, b"") + pair(b"A", b"b")
    up = begin(1)
    for cut in (2, 3, 9, 230, 400):
        up += record(4, 1, nv[:cut])
        nv = nv[cut:]
    up += record(4, 1, nv) + record(4, 1) + record(5, 1)
    [req] = requests(run([(UP, up), (DOWN, response_bytes(1, PAGE))]))
    assert req.params == {"HTTP_COOKIE": "v" * 300, "X" * 200: "", "A": "b"}


def test_unusual_padding_is_skipped() -> None:
    """Padding of any length (spec section 3.3) is skipped, not read."""
    down = record(6, 1, PAGE, padding=255) + record(6, 1, padding=3) + end_request(1)
    [req] = requests(run([(UP, request_bytes(1)), (DOWN, down)]))
    assert req.body.data == b"hello world" and req.complete


def test_interleaved_request_ids() -> None:
    """Records of two requests interleaved on one connection stay apart."""
    up = begin(1) + begin(2)
    up += record(4, 2, pair(b"N", b"2")) + record(4, 1, pair(b"N", b"1"))
    up += record(4, 1) + record(4, 2) + record(5, 2) + record(5, 1)
    down = record(6, 2, b"\r\nbody two") + record(6, 1, b"\r\nbody one")
    down += record(6, 2, b"!") + record(6, 2) + end_request(2)
    down += record(6, 1) + end_request(1, app=3)
    out = run([(UP, up), (DOWN, down)])
    assert names(out) == []
    two, one = requests(out)
    assert (two.request_id, two.params, two.body.data) == (2, {"N": "2"}, b"body two!")
    assert (one.request_id, one.params, one.body.data) == (1, {"N": "1"}, b"body one")
    assert one.app_status == 3 and two.status == 200


def test_keep_alive_sequence_pairs_in_order() -> None:
    """Requests reusing id 1 on a kept-alive connection pair in order."""
    conv: Conversation = []
    for i in range(3):
        params = {b"REQUEST_METHOD": b"GET", b"N": str(i).encode()}
        conv.append((UP, request_bytes(1, params, keep=True)))
        conv.append((DOWN, response_bytes(1, b"\r\nreply %d" % i)))
    out = run(conv)
    assert names(out) == []
    reqs = requests(out)
    assert [(r.params["N"], r.body.data) for r in reqs] == [
        ("0", b"reply 0"),
        ("1", b"reply 1"),
        ("2", b"reply 2"),
    ]
    assert all(r.keep_conn and r.complete for r in reqs)


def test_requests_fed_ahead_of_responses_still_pair_in_order() -> None:
    """The web server's side may run ahead; responses take the oldest request."""
    up = b"".join(request_bytes(1, {b"N": b"%d" % i}, keep=True) for i in range(3))
    down = b"".join(response_bytes(1, b"\r\n%d" % i) for i in range(3))
    reqs = requests(run([(UP, up), (DOWN, down)]))
    assert [(r.params["N"], r.body.data) for r in reqs] == [
        ("0", b"0"),
        ("1", b"1"),
        ("2", b"2"),
    ]


def test_management_records() -> None:
    """GET_VALUES, GET_VALUES_RESULT and UNKNOWN_TYPE become messages."""
    up = record(9, 0, pair(b"FCGI_MAX_CONNS", b"") + pair(b"FCGI_MPXS_CONNS", b""))
    down = record(10, 0, pair(b"FCGI_MAX_CONNS", b"10"))
    down += record(11, 0, bytes([42, 0, 0, 0, 0, 0, 0, 0]))
    out = run([(UP, up), (DOWN, down)])
    assert names(out) == []
    values, result, unknown = out
    assert isinstance(values, FcgiManagementRecord)
    assert values.pairs == ((b"FCGI_MAX_CONNS", b""), (b"FCGI_MPXS_CONNS", b""))
    assert isinstance(result, FcgiManagementRecord)
    assert result.pairs == ((b"FCGI_MAX_CONNS", b"10"),)
    assert isinstance(unknown, FcgiManagementRecord)
    assert unknown.unknown_type == 42 and unknown.record.type is FcgiType.UNKNOWN_TYPE


def test_abort_and_filter_data() -> None:
    """ABORT_REQUEST sets aborted; a FILTER request's DATA stream is kept."""
    up = record(1, 1, bytes([0, 3, 0, 0, 0, 0, 0, 0])) + record(4, 1)
    up += record(5, 1) + record(8, 1, b"file") + record(8, 1) + record(2, 1)
    out = run([(UP, up), (DOWN, response_bytes(1, b"\r\n"))])
    [req] = requests(out)
    assert req.role == fastcgi.ROLE_FILTER and req.aborted
    assert req.data.data == b"file" and req.data.complete


def test_location_without_status_is_302_as_nginx_does() -> None:
    """With Location and no Status the status is 302; with neither, 200."""
    out = run([(UP, request_bytes(1)), (DOWN, response_bytes(1, b"Location: /x\n\n"))])
    [req] = requests(out)
    assert req.status == 302 and req.headers.location == "/x"


# ---------------------------------------------------------------------------
# Any split gives the same result


@st.composite
def conversations(draw: st.DrawFn) -> Conversation:
    conv: Conversation = []
    for i in range(draw(st.integers(1, 3))):
        stdin = draw(st.binary(max_size=40))
        body = draw(st.binary(max_size=200))
        chunk = draw(st.integers(1, 64))
        conv.append((UP, request_bytes(1, {b"N": b"%d" % i}, stdin, keep=True)))
        conv.append(
            (DOWN, response_bytes(1, b"X-N: %d\r\n\r\n" % i + body, chunk=chunk))
        )
    if draw(st.booleans()):
        # Some damage, so that anomaly paths are split too.
        conv.append((DOWN, record(6, 1, b"late") + b"\x07garbage" + record(6, 9, b"z")))
    return conv


def split_feed(conv: Conversation, cuts: list[int]) -> list[object]:
    dec = FcgiDecoder()
    offsets = {UP: 0, DOWN: 0}
    out: list[object] = []
    rng = random.Random(sum(cuts))
    for direction, data in conv:
        i = 0
        while i < len(data):
            n = rng.choice(cuts)
            out += dec.feed(direction, offsets[direction] + i, data[i : i + n])
            i += n
        offsets[direction] += len(data)
    out += dec.end(DOWN, offsets[DOWN]) + dec.end(UP, offsets[UP]) + dec.close()
    return out


@settings(max_examples=150, deadline=None)
@given(conversations(), st.lists(st.integers(1, 30), min_size=1, max_size=5))
def test_any_split_gives_the_same_events(conv: Conversation, cuts: list[int]) -> None:
    """However either direction is cut into calls, the output is the same."""
    assert split_feed(conv, cuts) == split_feed(conv, [1 << 20])


# ---------------------------------------------------------------------------
# Misframing


def test_bad_version_then_resync() -> None:
    """A header with version 2 loses framing; the next good pair restores it."""
    bad = record(6, 1, b"zzzz", version=2)
    down = record(6, 1, b"\r\nab") + bad + record(6, 1, b"cd") + record(6, 1)
    down += end_request(1)
    out = run([(UP, request_bytes(1)), (DOWN, down)])
    assert names(out) == ["fcgi.bad_version", "fcgi.resync"]
    assert out[0].stream_offset == 16 and out[0].direction == DOWN.label
    assert out[1].stream_offset == 16 + len(bad)
    [req] = requests(out)
    # After the loss the body stops growing and is marked incomplete.
    assert req.body.data == b"ab" and not req.body.complete and req.complete


def test_unknown_type_loses_framing() -> None:
    """A type FastCGI 1.0 lacks is reported where its header starts."""
    down = record(6, 1, b"\r\n") + record(12, 1, b"??") + response_bytes(1, b"")
    out = run([(UP, request_bytes(1)), (DOWN, down)])
    assert names(out)[:2] == ["fcgi.unknown_type", "fcgi.resync"]
    assert out[0].stream_offset == 16


def test_truncated_record_and_fin_before_end() -> None:
    """A record cut by the end of the app's stream, and no END_REQUEST."""
    down = record(6, 1, b"\r\n0123456789")[:15]
    out = run([(UP, request_bytes(1)), (DOWN, down)])
    assert names(out) == ["fcgi.truncated_record", "fcgi.fin_before_end"]
    assert out[0].stream_offset == 0 and out[1].stream_offset == 15
    [req] = requests(out)
    assert not req.complete and req.app_status is None
    assert req.body.data == b"01234" and not req.body.complete
    assert [a.name for a in req.anomalies] == names(out)


def test_capture_end_without_fin_is_unfinished() -> None:
    """close() flushes open requests with fcgi.request_unfinished."""
    dec = FcgiDecoder()
    dec.feed(UP, 0, request_bytes(1))
    dec.feed(DOWN, 0, record(6, 1, b"\r\nx"))
    out = dec.close()
    assert names(out) == ["fcgi.request_unfinished"]
    assert not requests(out)[0].complete


def test_record_after_end_and_unknown_request_id() -> None:
    """A record for an ended id, and one for an id never begun, are named apart."""
    down = response_bytes(1, PAGE) + record(6, 1, b"\r\nlate")
    down += record(6, 7, b"\r\nwho")
    down += end_request(7)
    out = run([(UP, request_bytes(1)), (DOWN, down)])
    assert names(out) == [
        "fcgi.record_after_end",
        "fcgi.unknown_request_id",
        "fcgi.fin_before_end",
    ]
    first, seven, late = requests(out)
    assert seven.request_id == 7 and not seven.begun and seven.complete
    assert late.request_id == 1 and not late.begun and not late.complete


def test_unknown_request_id_on_server_side_still_pairs() -> None:
    """PARAMS without BEGIN_REQUEST (capture began mid-request) still pairs."""
    up = record(4, 1, pair(b"A", b"b")) + record(4, 1) + record(5, 1)
    out = run([(UP, up), (DOWN, response_bytes(1, PAGE))])
    assert names(out) == ["fcgi.unknown_request_id"]
    [req] = requests(out)
    assert (
        not req.begun and req.params == {"A": "b"} and req.body.data == b"hello world"
    )


def test_empty_stdout_midstream() -> None:
    """STDOUT content after the empty STDOUT record is flagged and kept."""
    down = record(6, 1, b"\r\nab") + record(6, 1) + record(6, 1, b"cd") + end_request(1)
    out = run([(UP, request_bytes(1)), (DOWN, down)])
    assert names(out) == ["fcgi.empty_stdout_midstream"]
    assert out[0].stream_offset == 24
    assert requests(out)[0].body.data == b"abcd"


def test_header_in_stdout_from_a_header_sent_without_its_content() -> None:
    """flup's timeout can send a STDOUT header, then STDERR, never the content."""
    stderr = b"Timeout Exceeded\n  File x\n"
    down = record(6, 1, b"Status: 200 OK\r\n\r\nfirst part")
    # The header claims 44 bytes (+4 padding); the next 48 bytes on the
    # wire are a STDERR record and the empty STDOUT record, so framing
    # happens to land on the empty STDERR record that follows.
    down += record(6, 1, b"A" * 44)[:8]
    down += record(7, 1, stderr) + record(6, 1) + record(7, 1) + end_request(1)
    out = run([(UP, request_bytes(1)), (DOWN, down)])
    assert names(out) == ["fcgi.header_in_stdout", "fcgi.traceback_in_stdout"]
    # The STDERR header read as content, then flup's timeout text, both
    # inside record 2 (whose content starts at offset 48).
    assert [a.stream_offset for a in out[:2]] == [48, 56]
    [req] = requests(out)
    assert req.complete and req.stderr == b""
    assert req.body.data == b"first part" + record(7, 1, stderr) + record(6, 1)[:4]
    assert req.body.labels(10, 11) == ["record 2"]


def test_header_in_stdout_split_across_records() -> None:
    """An embedded header cut across two STDOUT records is still found."""
    inner = record(3, 1, bytes(8))
    down = record(6, 1, b"\r\n" + inner[:3]) + record(6, 1, inner[3:])
    down += record(6, 1) + end_request(1)
    out = run([(UP, request_bytes(1)), (DOWN, down)])
    assert names(out) == ["fcgi.header_in_stdout"]
    assert out[0].stream_offset == 8 + 2


def test_random_binary_gives_no_embedded_headers() -> None:
    """Four MiB of random STDOUT raise no header_in_stdout."""
    rng = random.Random(1234)
    body = rng.randbytes(4 << 20)
    out = run(
        [(UP, request_bytes(1)), (DOWN, response_bytes(1, b"\r\n" + body, chunk=65535))]
    )
    assert names(out) == []
    assert requests(out)[0].body.data == body


def test_stderr_between_stdout_records() -> None:
    """A STDERR record while STDOUT is open is flagged; after it, not."""
    down = record(6, 1, b"\r\na") + record(7, 1, b"warn") + record(6, 1, b"b")
    down += record(6, 1) + record(7, 1, b"late log") + end_request(1)
    out = run([(UP, request_bytes(1)), (DOWN, down)])
    assert names(out) == ["fcgi.stderr_in_stdout"]
    assert out[0].stream_offset == 16
    [req] = requests(out)
    assert req.stderr == b"warnlate log" and req.body.data == b"ab"


def test_traceback_text_in_stdout() -> None:
    """Traceback text printed into STDOUT is flagged at its offset."""
    body = b"\r\n<p>oops</p>Traceback (most recent call last):\n"
    out = run([(UP, request_bytes(1)), (DOWN, response_bytes(1, body, chunk=20))])
    assert names(out) == ["fcgi.traceback_in_stdout"]
    # Byte 13 of STDOUT: record 1 holds bytes 0-19 after its 8-byte header.
    assert out[0].stream_offset == 8 + 13


def test_warning_text_in_stdout_is_told_apart_from_a_crash() -> None:
    """A PHP warning printed into STDOUT is fcgi.warning_in_stdout, once,
    and a fatal error after it is still fcgi.traceback_in_stdout."""
    body = (
        b"\r\n<br /><b>Warning</b>:  Undefined variable $x<br />"
        b"<b>Warning</b>:  again<br /><b>Fatal error</b>:  boom"
    )
    out = run([(UP, request_bytes(1)), (DOWN, response_bytes(1, body, chunk=30))])
    assert sorted(names(out)) == ["fcgi.traceback_in_stdout", "fcgi.warning_in_stdout"]


def test_content_length_mismatch() -> None:
    """A CGI Content-Length that disagrees with the body is flagged."""
    page = b"Content-Length: 5\r\n\r\nhello world"
    out = run([(UP, request_bytes(1)), (DOWN, response_bytes(1, page))])
    assert names(out) == ["fcgi.content_length_mismatch"]
    head = {b"REQUEST_METHOD": b"HEAD"}
    out = run([(UP, request_bytes(1, head)), (DOWN, response_bytes(1, page))])
    assert names(out) == []


def test_gap_inside_content_keeps_framing() -> None:
    """Missing content bytes become an exact unobserved range; framing holds."""
    down = record(6, 1, b"\r\n0123456789") + record(6, 1) + end_request(1)
    dec = FcgiDecoder()
    dec.feed(UP, 0, request_bytes(1))
    out = dec.feed(DOWN, 0, down[:12])
    out += dec.gap(DOWN, 12, 4)
    out += dec.feed(DOWN, 16, down[16:])
    assert names(out) == ["fcgi.gap"]
    [req] = requests(out)
    assert req.body.data[:2] == b"01" and req.body.data[6:] == b"6789"
    assert req.body.unobserved == [(2, 6)]
    assert req.body.stream_range(6, 10) == (16, 20)
    assert req.body.stream_range(2, 6) is None
    assert req.body.complete


def test_gap_over_a_header_loses_and_recovers_framing() -> None:
    """A gap hiding a header loses framing; resync finds the next pair."""
    recs = [record(6, 1, b"\r\nab"), record(6, 1, b"cd"), record(6, 1, b"ef")]
    down = b"".join(recs) + record(6, 1) + end_request(1)
    dec = FcgiDecoder()
    dec.feed(UP, 0, request_bytes(1))
    a = len(recs[0])
    out = dec.feed(DOWN, 0, down[:a])
    out += dec.gap(DOWN, a, 5)
    out += dec.feed(DOWN, a + 5, down[a + 5 :])
    out += dec.end(DOWN, len(down))
    assert names(out) == ["fcgi.gap", "fcgi.resync"]
    assert out[1].stream_offset == 2 * a
    [req] = requests(out)
    assert req.complete and req.body.data == b"ab" and not req.body.complete


def test_misframed_header_in_stdout_end_of_stream() -> None:
    """A lost stream that never recovers still flushes its requests."""
    down = record(6, 1, b"\r\nab") + b"\xff" * 30
    out = run([(UP, request_bytes(1)), (DOWN, down)])
    assert names(out) == ["fcgi.bad_version", "fcgi.fin_before_end"]


def test_wrong_direction_loses_framing() -> None:
    """A STDOUT header in the web server's stream is misframing, then resync."""
    up = record(6, 1, b"x") + record(4, 0, b"") + request_bytes(1)
    out = run([(UP, up), (DOWN, response_bytes(1, PAGE))])
    assert names(out) == ["fcgi.wrong_direction", "fcgi.resync"]
    assert out[1].stream_offset == 24
    assert len(requests(out)) == 1


def test_bad_request_id_loses_framing() -> None:
    """An application record with request id 0 is misframing, then resync."""
    up = request_bytes(1) + record(5, 0, b"abc") + request_bytes(2)
    out = run([(UP, up), (DOWN, response_bytes(1, PAGE) + response_bytes(2, PAGE))])
    assert names(out) == ["fcgi.bad_request_id", "fcgi.resync"]
    assert [r.request_id for r in requests(out)] == [1, 2]


def test_flood_of_plausible_bytes_stays_quiet() -> None:
    """A run of 0x01 bytes yields one loss of framing, not one per record."""
    down = record(6, 1, b"\r\n") + b"\x01" * 5000 + response_bytes(1, b"")
    out = run([(UP, request_bytes(1)), (DOWN, down)], step=7)
    assert len(names(out)) <= 4


def test_params_pair_limit() -> None:
    """More than MAX_PARAMS_PAIRS pairs stop decoding with an anomaly."""
    many = {b"P%d" % i: b"" for i in range(fastcgi.MAX_PARAMS_PAIRS + 5)}
    out = run([(UP, request_bytes(1, many)), (DOWN, response_bytes(1, PAGE))])
    assert names(out) == ["fcgi.params_limit"]
    assert len(requests(out)[0].params) == fastcgi.MAX_PARAMS_PAIRS


def test_cgi_header_limit_keeps_every_byte() -> None:
    """A header block over the limit is cut there and the rest is body."""
    stdout = b"X: " + b"y" * (fastcgi.MAX_CGI_HEADER_BYTES + 10)
    out = run([(UP, request_bytes(1)), (DOWN, response_bytes(1, stdout, chunk=60000))])
    assert names(out) == ["fcgi.cgi_header_limit"]
    [req] = requests(out)
    assert req.status is None and not req.headers.complete
    assert len(req.header_block) + len(req.body) == len(stdout)


def test_bad_cgi_header() -> None:
    """An unterminated header block and a bad Status are reported."""
    out = run([(UP, request_bytes(1)), (DOWN, response_bytes(1, b"Status: abc\n\n"))])
    assert names(out) == ["fcgi.bad_cgi_header"]
    assert requests(out)[0].status is None
    out = run([(UP, request_bytes(1)), (DOWN, response_bytes(1, b"X: 1\r\n"))])
    assert names(out) == ["fcgi.bad_cgi_header"]


# ---------------------------------------------------------------------------
# Cross-check with flup's own record writer


class _Sink:
    """A socket stand-in that keeps what flup sends."""

    def __init__(self) -> None:
        self.data = b""

    def fileno(self) -> int:
        return -1

    def send(self, data: bytes) -> int:
        self.data += bytes(data)
        return len(data)


def test_reads_what_flup_writes() -> None:
    """Records and 4-byte pair lengths written by flup decode as sent."""
    from flup.server import fcgi_base as flup

    def write(rtype: int, content: bytes) -> bytes:
        rec = flup.Record(rtype, 1)
        rec.contentData = content
        rec.contentLength = len(content)
        sink = _Sink()
        rec.write(sink)
        return sink.data

    nv = flup.encode_pair(b"HTTP_X", b"z" * 200) + flup.encode_pair(b"A", b"")
    up = begin(1) + write(4, nv) + write(4, b"") + write(5, b"")
    down = write(6, b"Status: 500 Internal Server Error\r\n\r\nerr")
    down += write(6, b"") + write(7, b"Traceback...") + write(7, b"")
    down += write(3, (0).to_bytes(4, "big") + bytes(4))
    [req] = requests(run([(UP, up), (DOWN, down)]))
    assert req.params == {"HTTP_X": "z" * 200, "A": ""}
    assert (
        req.status == 500 and req.body.data == b"err" and req.stderr == b"Traceback..."
    )


# ---------------------------------------------------------------------------
# Public surface


def test_public_names() -> None:
    """The module exports exactly its documented API."""
    assert set(fastcgi.__all__) == {
        "CRASH_MARKERS",
        "FcgiType",
        "ROLE_RESPONDER",
        "ROLE_AUTHORIZER",
        "ROLE_FILTER",
        "FcgiRecord",
        "CgiHeaders",
        "FcgiRequest",
        "FcgiManagementRecord",
        "FcgiDecoder",
        "MAX_PARAMS_BYTES",
        "MAX_PARAMS_PAIRS",
        "MAX_STDIN_KEPT",
        "MAX_STDOUT_KEPT",
        "MAX_STDERR_KEPT",
        "MAX_CGI_HEADER_BYTES",
        "MAX_PENDING_BYTES",
        "MAX_LIVE_REQUESTS",
        "MAX_EMBEDDED_HEADER_REPORTS",
    }


def test_every_anomaly_name_is_catalogued() -> None:
    """Each fcgi.* name the decoder can produce is in the CATALOGUE."""
    import pathlib
    import re

    source = pathlib.Path(fastcgi.__file__).read_text()
    used = set(re.findall(r'"(fcgi\.[a-z_]+)"', source))
    assert used and used <= set(CATALOGUE)


class _AlarmSink(_Sink):
    """A socket stand-in that runs flup's SIGALRM handler after one send.

    flup's Record.write sends header, content and padding in three calls;
    the prefork server's ``timeout`` raises from a signal handler that may
    run between any two of them, after writing STDERR records itself.
    """

    def __init__(self, fire_after: int) -> None:
        super().__init__()
        self.fire_after = fire_after
        self.calls = 0
        self.request: Any = None

    def send(self, data: bytes) -> int:
        sent = super().send(data)
        self.calls += 1
        if self.calls == self.fire_after:
            self.request.timeout_handler(signal.SIGALRM, sys._getframe())
        return sent


def _flup_timeout_run(fire_after: int) -> bytes:
    """What flup's Request.run writes when the alarm fires after a send."""
    from flup.server import fcgi_base as flup

    sink = _AlarmSink(fire_after)

    class Server:
        maxwrite = 8192
        inputStreamShrinkThreshold = 102400

        def handler(self, req: Any) -> tuple[int, int]:
            req.stdout.write(b"Status: 200 OK\r\n\r\nfirst part")
            req.stdout.write(b"never sent in full")
            return 0, 0

        def error(self, req: object) -> None:
            raise AssertionError("flup only writes its error page before output")

    class Conn:
        server = Server()

        def writeRecord(self, rec: flup.Record) -> None:  # noqa: N802
            rec.write(sink)

        def end_request(self, req: flup.Request, app: int, proto: int) -> None:
            self.writeRecord(
                _flup_record(flup, 3, app.to_bytes(4, "big") + bytes([proto, 0, 0, 0]))
            )

    req = flup.Request(Conn(), flup.InputStream, 0)
    req.requestId = 1
    sink.request = req
    req.run()
    return sink.data


def _flup_record(flup: Any, rtype: int, content: bytes) -> Any:
    rec = flup.Record(rtype, 1)
    rec.contentData = content
    rec.contentLength = len(content)
    return rec


def test_flup_timeout_after_a_stdout_header() -> None:
    """flup's alarm after a STDOUT header leaves that record without content."""
    down = _flup_timeout_run(fire_after=4)  # the second record's header
    out = run([(UP, request_bytes(1)), (DOWN, down)])
    got = names(out)
    assert got[0] == "fcgi.header_in_stdout" and "fcgi.stderr_in_stdout" in got
    [req] = requests(out)
    # flup still reports success, which is why the body looks normal.
    assert req.complete and req.app_status == 0 and req.protocol_status == 0
    assert req.body.data.startswith(b"first part\x01\x07\x00\x01")


def test_flup_timeout_before_padding() -> None:
    """flup's alarm before padding shifts every later header by the padding."""
    down = _flup_timeout_run(fire_after=2)  # content of record 1, not padding
    out = run([(UP, request_bytes(1)), (DOWN, down)])
    assert names(out)[:2] == ["fcgi.bad_version", "fcgi.resync"]
    [req] = requests(out)
    assert req.complete and req.body.data == b"first part" and not req.body.complete


def test_web_server_closing_first_is_an_abort() -> None:
    """When the web server's side ends before END_REQUEST, the request is
    aborted (FastCGI 1.0 section 5.4) and the anomaly is on the web
    server's side, so nothing blames the app."""
    dec = FcgiDecoder()
    web = request_bytes(1)
    app = record(6, 1, b"Content-Type: text/plain\r\n\r\n" + b"x" * 100)
    out = dec.feed(UP, 0, web) + dec.feed(DOWN, 0, app)
    out += dec.end(UP, len(web)) + dec.end(DOWN, len(app)) + dec.close()
    [req] = requests(out)
    assert req.aborted and not req.complete
    assert [(a.name, a.direction) for a in req.anomalies] == [
        ("fcgi.web_server_closed", UP.label)
    ]


def test_content_length_met_makes_the_body_whole_without_end_request() -> None:
    """A body that meets the app's CGI Content-Length is complete even if
    the stream stops before END_REQUEST."""
    dec = FcgiDecoder()
    web = request_bytes(1)
    app = record(6, 1, b"Content-Length: 5\r\n\r\nhello")
    out = dec.feed(UP, 0, web) + dec.feed(DOWN, 0, app)
    out += dec.end(UP, len(web)) + dec.end(DOWN, len(app)) + dec.close()
    [req] = requests(out)
    assert req.body.data == b"hello" and req.body.complete
