"""Numbers read from the wire accept ASCII digits only.

``str.isdigit()`` is true for latin-1 superscripts such as ``\\xb2`` and
``\\xb9``, which ``int()`` rejects, and ``int()`` refuses more than 4300
digits; a value like that is malformed input, never a crash.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fcgiforensics.analysis import analyze
from fcgiforensics.anomalies import Anomaly
from fcgiforensics.decoders.base import Direction
from fcgiforensics.decoders.fastcgi import FcgiDecoder, FcgiRequest
from fcgiforensics.testing import (
    fcgi_request,
    fcgi_response,
    http_response,
    one_exchange,
    write_pcap,
)

SUPERSCRIPTS = ["\xb2\xb9\xb9", "\xb9"]
TOO_LONG = "1" * 5000


def _fcgi_run(cgi_head: bytes) -> tuple[FcgiRequest, list[str]]:
    """One request answered with ``cgi_head``, a blank line and a body."""
    decoder = FcgiDecoder()
    up = fcgi_request(1, {"REQUEST_METHOD": "GET", "REQUEST_URI": "/"})
    down = fcgi_response(1, cgi_head, b"hello")
    out: list[object] = []
    out += decoder.feed(Direction.TO_SERVER, 0, up)
    out += decoder.feed(Direction.TO_CLIENT, 0, down)
    out += decoder.end(Direction.TO_CLIENT, len(down))
    out += decoder.end(Direction.TO_SERVER, len(up))
    out += decoder.close()
    [request] = [m for m in out if isinstance(m, FcgiRequest)]
    return request, [m.name for m in out if isinstance(m, Anomaly)]


@pytest.mark.parametrize("code", SUPERSCRIPTS, ids=["three", "one"])
def test_cgi_status_with_non_ascii_digits_is_a_bad_header(code: str) -> None:
    """A CGI Status whose code is not three ASCII digits is fcgi.bad_cgi_header."""
    request, names = _fcgi_run(b"Status: " + code.encode("latin-1") + b" OK\r\n")
    assert names == ["fcgi.bad_cgi_header"]
    assert request.status is None


@pytest.mark.parametrize(
    "length", [*SUPERSCRIPTS, TOO_LONG], ids=["three", "one", "5000 digits"]
)
def test_cgi_content_length_not_a_short_ascii_number_is_a_bad_header(
    length: str,
) -> None:
    """A CGI Content-Length that is not a short ASCII number is a bad header."""
    head = b"Content-Length: " + length.encode("latin-1") + b"\r\n"
    request, names = _fcgi_run(head)
    assert names == ["fcgi.bad_cgi_header"]
    assert request.headers.content_length is None


def _pair_with_remote_port(tmp_path: Path, remote_port: str) -> tuple[str, str]:
    """Both legs of one exchange whose REMOTE_PORT param is ``remote_port``."""
    client, upstream = one_exchange(
        fcgi_response(1, b"Content-Type: text/plain\r\n", b"hi"),
        http_response(b"hi"),
        uri="/p",
        params={"REMOTE_PORT": remote_port},
    )
    write_pcap(str(tmp_path / "c.pcap"), client)
    write_pcap(str(tmp_path / "u.pcap"), upstream)
    return str(tmp_path / "c.pcap"), str(tmp_path / "u.pcap")


@pytest.mark.parametrize(
    "port",
    [*SUPERSCRIPTS, TOO_LONG, "99999", ""],
    ids=["three", "one", "5000 digits", "too large", "empty"],
)
def test_malformed_remote_port_is_an_unknown_port(tmp_path: Path, port: str) -> None:
    """A REMOTE_PORT that is no port number leaves the port unknown, and
    the exchange is still paired by its method and URI."""
    client, upstream = _pair_with_remote_port(tmp_path, port)
    [exchange] = analyze([client], [upstream]).exchanges
    assert exchange.verdict == "ok"
    assert exchange.paired_by == "uri"
