"""Connections caught without their SYN: which side is the client.

Mid-stream, the reassembler guesses the client from the ports (the
higher one).  Loopback testbeds and some proxies listen on ephemeral
ports above the client's, so the guess can be wrong; the first bytes
(a request line or BEGIN_REQUEST one way, a status line or an app's
records the other) and the port options correct it.
"""

from __future__ import annotations

import socket
from pathlib import Path

from fcgiforensics.decoders.detect import Protocol
from fcgiforensics.legs import Leg, LegOptions, read_leg
from fcgiforensics.testing import (
    Conversation,
    fcgi_request,
    fcgi_response,
    http_request,
    http_response,
    write_pcap,
)

BODY = b"midstream body " * 300
CLIENT_PORT, SERVER_PORT = 8080, 41469


def _capture(
    tmp_path: Path,
    to_server: bytes,
    to_client: bytes,
    *,
    client_port: int = CLIENT_PORT,
    server_port: int = SERVER_PORT,
    handshake: bool = False,
) -> str:
    """One connection, without its handshake unless asked, as a pcap."""
    conv = Conversation(client_port=client_port, server_port=server_port)
    if handshake:
        conv.handshake()
    conv.send_to_server(to_server)
    conv.ack_to_server()
    conv.send_to_client(to_client)
    conv.ack_to_client()
    path = tmp_path / "mid.pcap"
    write_pcap(str(path), conv.frames())
    return str(path)


def _http(tmp_path: Path, options: LegOptions | None = None) -> Leg:
    request = http_request("GET", "/mid")
    return read_leg([_capture(tmp_path, request, http_response(BODY))], options)


def _endpoints(leg: Leg) -> tuple[int, int]:
    [conn] = leg.connections
    return conn.client[1], conn.server[1]


def test_http_server_on_the_higher_port_is_found_from_first_bytes(
    tmp_path: Path,
) -> None:
    """Without a SYN and with the server on the higher port, the side that
    sent the request line becomes the client and the exchange is decoded."""
    leg = _http(tmp_path)
    [conn] = leg.connections
    assert conn.midstream
    assert _endpoints(leg) == (CLIENT_PORT, SERVER_PORT)
    assert leg.protocols[conn.index] is Protocol.HTTP
    [item] = leg.http
    exchange = item.exchange
    assert exchange.request is not None and exchange.request.target == "/mid"
    assert exchange.response is not None and exchange.response.status == 200
    assert exchange.response.body.data == BODY
    assert conn.to_server.length == len(http_request("GET", "/mid"))
    assert conn.to_client.frames_for(0, 1) == [3]


def test_anomalies_recorded_before_the_swap_follow_it(tmp_path: Path) -> None:
    """The tcp.midstream anomaly, recorded before the roles were known, names
    the connection as the report does after the swap."""
    leg = _http(tmp_path)
    [conn] = leg.connections
    [midstream] = [a for a in leg.anomalies if a.name == "tcp.midstream"]
    assert midstream.connection == conn.label()
    assert conn.label().startswith(f"10.0.0.1:{CLIENT_PORT} ->")


def test_http_port_option_matches_either_endpoint(tmp_path: Path) -> None:
    """--http-port naming the server's port orients a mid-stream connection
    whose guess had it as the client, and decodes it as HTTP."""
    leg = _http(tmp_path, LegOptions(http_ports=frozenset({SERVER_PORT})))
    assert _endpoints(leg) == (CLIENT_PORT, SERVER_PORT)
    [item] = leg.http
    assert item.exchange.response is not None
    assert item.exchange.response.body.data == BODY


def test_fastcgi_app_on_the_higher_port_is_found_from_first_bytes(
    tmp_path: Path,
) -> None:
    """A FastCGI connection caught mid-stream with the app on the higher
    port: the side sending BEGIN_REQUEST becomes the client (the web
    server) and the request is decoded."""
    params = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/f", "SCRIPT_NAME": "/f"}
    request = fcgi_request(1, params)
    response = fcgi_response(1, b"Content-Type: text/plain\r\n", BODY)
    leg = read_leg([_capture(tmp_path, request, response)])
    assert _endpoints(leg) == (CLIENT_PORT, SERVER_PORT)
    [item] = leg.fcgi
    assert item.request.params["REQUEST_URI"] == "/f"
    assert item.request.body.data == BODY


def test_fastcgi_port_option_matches_either_endpoint(tmp_path: Path) -> None:
    """--fastcgi-port naming the app's port orients a mid-stream connection
    whose guess had the app as the client."""
    params = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/f"}
    request = fcgi_request(1, params)
    response = fcgi_response(1, b"Content-Type: text/plain\r\n", BODY)
    path = _capture(tmp_path, request, response)
    leg = read_leg([path], LegOptions(fastcgi_ports=frozenset({SERVER_PORT})))
    assert _endpoints(leg) == (CLIENT_PORT, SERVER_PORT)
    [item] = leg.fcgi
    assert item.request.body.data == BODY


def test_response_seen_first_still_orients_the_connection(tmp_path: Path) -> None:
    """When the capture shows the server's status line before any request
    bytes, the status line alone makes its sender the server."""
    conv = Conversation(client_port=CLIENT_PORT, server_port=SERVER_PORT)
    conv.send_to_client(http_response(b"late"))
    conv.ack_to_client()
    conv.send_to_server(http_request("GET", "/next"))
    path = tmp_path / "resp.pcap"
    write_pcap(str(path), conv.frames())
    leg = read_leg([str(path)])
    assert _endpoints(leg) == (CLIENT_PORT, SERVER_PORT)
    assert leg.protocols[leg.connections[0].index] is Protocol.HTTP


def test_right_guess_is_kept(tmp_path: Path) -> None:
    """A mid-stream connection whose client does have the higher port keeps
    its roles."""
    request = http_request("GET", "/ok")
    path = _capture(
        tmp_path, request, http_response(BODY), client_port=50000, server_port=80
    )
    leg = read_leg([path])
    assert _endpoints(leg) == (50000, 80)
    [item] = leg.http
    assert item.exchange.response is not None
    assert item.exchange.response.body.data == BODY


def test_syn_decides_even_against_the_first_bytes(tmp_path: Path) -> None:
    """With the SYN captured, its sender is the client whatever its first
    bytes look like, and a port option naming the client's port does not
    swap the roles."""
    path = _capture(
        tmp_path,
        http_response(b"odd"),
        http_request("GET", "/odd"),
        handshake=True,
    )
    for options in (None, LegOptions(http_ports=frozenset({CLIENT_PORT}))):
        leg = read_leg([path], options)
        [conn] = leg.connections
        assert not conn.midstream
        assert _endpoints(leg) == (CLIENT_PORT, SERVER_PORT)
        assert conn.client[0] == socket.inet_aton("10.0.0.1")


def test_syn_ack_decides_when_the_syn_was_missed(tmp_path: Path) -> None:
    """With only the SYN-ACK captured, its sender is the server: neither
    the ports nor the first bytes turn such a connection round."""
    conv = Conversation(client_port=CLIENT_PORT, server_port=SERVER_PORT)
    conv.handshake()
    conv.send_to_server(http_response(b"odd"))
    conv.send_to_client(http_request("GET", "/odd"))
    path = tmp_path / "synack.pcap"
    write_pcap(str(path), conv.frames()[1:])
    for options in (None, LegOptions(http_ports=frozenset({CLIENT_PORT}))):
        leg = read_leg([str(path)], options)
        [conn] = leg.connections
        assert conn.midstream and not conn.guessed_roles
        assert _endpoints(leg) == (CLIENT_PORT, SERVER_PORT)
