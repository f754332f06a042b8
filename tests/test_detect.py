"""Which protocol a connection speaks, from its first bytes."""

from __future__ import annotations

from typing import Any

from fcgiforensics.decoders.base import Direction
from fcgiforensics.decoders.detect import (
    DETECT_BYTES,
    DetectingDecoder,
    Protocol,
    guess_protocol,
)
from fcgiforensics.testing import fcgi_request

UP, DOWN = Direction.TO_SERVER, Direction.TO_CLIENT


def test_fastcgi_is_known_by_its_begin_request_record() -> None:
    """A BEGIN_REQUEST header (version 1, type 1, length 8) means FastCGI."""
    assert guess_protocol(fcgi_request(1, {"A": "b"}), b"") is Protocol.FASTCGI


def test_http_is_known_by_its_request_line_on_any_port() -> None:
    """A known method, or any token followed by an HTTP/1.x request line."""
    assert guess_protocol(b"GET / HTTP/1.1\r\n", b"") is Protocol.HTTP
    assert guess_protocol(b"PROPFIND /x HTTP/1.1\r\n", b"") is Protocol.HTTP
    assert guess_protocol(b"PROPFIND /x", b"") is None  # wait for the line


def test_a_response_alone_means_http() -> None:
    """With nothing from the client yet, a status line decides."""
    assert guess_protocol(b"", b"HTTP/1.1 200 OK\r\n") is Protocol.HTTP


def test_other_bytes_are_unknown_and_short_ones_undecided() -> None:
    """Eight bytes that are neither protocol are unknown; fewer wait."""
    assert guess_protocol(b"\x16\x03\x01\x02\x00\x01\x00\x01", b"") is Protocol.UNKNOWN
    assert guess_protocol(b"\x16\x03", b"") is None


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Direction, int, Any]] = []

    def feed(self, d: Direction, offset: int, data: bytes) -> list[object]:
        self.calls.append(("feed", d, offset, data))
        return [f"fed {len(data)}"]

    def gap(self, d: Direction, offset: int, length: int) -> list[object]:
        self.calls.append(("gap", d, offset, length))
        return []

    def end(self, d: Direction, offset: int) -> list[object]:
        self.calls.append(("end", d, offset, None))
        return []

    def close(self) -> list[object]:
        self.calls.append(("close", UP, 0, None))
        return ["closed"]


def test_buffered_calls_are_replayed_in_order_once_decided() -> None:
    """Bytes seen before the protocol is known reach the decoder in the
    order they came, each call as it was, and outputs are emitted."""
    made: list[Protocol] = []
    recorder = _Recorder()
    emitted: list[object] = []

    def make(protocol: Protocol) -> _Recorder:
        made.append(protocol)
        return recorder

    det = DetectingDecoder(make, emitted.extend)  # type: ignore[arg-type]
    det.feed(UP, 0, b"GE")
    det.feed(UP, 2, b"T / HTTP/1.1\r\n")
    det.feed(DOWN, 0, b"HTTP/1.1 200 OK\r\n")
    det.close()
    assert made == [Protocol.HTTP]
    assert [c[:3] for c in recorder.calls] == [
        ("feed", UP, 0),
        ("feed", UP, 2),
        ("feed", DOWN, 0),
        ("close", UP, 0),
    ]
    assert emitted == ["fed 2", "fed 14", "fed 17", "closed"]


def _maker(made: list[Protocol]) -> Any:
    """A decoder factory that only notes which protocol it was asked for."""

    def make(protocol: Protocol) -> None:
        made.append(protocol)

    return make


def _drop(out: list[Any]) -> None:
    del out


def test_port_override_decides_before_any_byte() -> None:
    """A forced protocol builds its decoder at once."""
    made: list[Protocol] = []
    DetectingDecoder(
        lambda p: made.append(p),
        lambda out: None,  # type: ignore[arg-type, func-returns-value]
        Protocol.FASTCGI,
    )
    assert made == [Protocol.FASTCGI]


def test_a_start_lost_in_a_gap_gives_up_after_the_detection_limit() -> None:
    """When the first bytes were never seen, the detector holds a bounded
    amount and then calls the connection unknown."""
    made: list[Protocol] = []
    det = DetectingDecoder(_maker(made), _drop)
    det.gap(UP, 0, 100)
    det.feed(UP, 100, b"x" * (DETECT_BYTES + 1))
    assert made == [Protocol.UNKNOWN]
