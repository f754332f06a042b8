"""A small FastCGI 1.0 responder that misbehaves on request.

It speaks the protocol itself over plain sockets (no library), so it can
write exactly the records a fault needs.  Run it as
``python -m testbed.fcgi_fault_server --port N``.

The body and its headers follow :mod:`testbed.bodies`; the ``fault`` and
``after`` query parameters pick the damage, always at body offset
``after``:

``fault=die``
    Send the CGI headers and ``after`` body bytes, then close the socket
    with no END_REQUEST.  ``mode=length`` announces the full length in a
    CGI ``Content-Length``; ``mode=chunked`` announces none.
``fault=empty_stdout``
    Send an empty FCGI_STDOUT record (the end-of-stream mark of the
    FastCGI spec, section 3.3) after ``after`` bytes, then the rest.
``fault=crash``
    Send ``after`` body bytes, then a Python traceback on FCGI_STDERR,
    then end the stream and the request normally, as flup does when the
    application raises in the middle of its response.
``fault=stderr``
    Put an FCGI_STDERR record (a notice, no crash) between the STDOUT
    records at ``after``; the whole body follows.
``fault=fake_header``
    Write eight bytes shaped like a record header inside the STDOUT
    content at ``after`` (they are part of the body).
"""

from __future__ import annotations

import argparse
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from .bodies import BodyQuery, parse_body_query

__all__ = ["CRASH_MESSAGE", "STDERR_MESSAGE", "serve", "main"]

# Record types and constants of the FastCGI 1.0 spec, sections 8 and 5.1.
FCGI_VERSION_1 = 1
FCGI_BEGIN_REQUEST = 1
FCGI_ABORT_REQUEST = 2
FCGI_END_REQUEST = 3
FCGI_PARAMS = 4
FCGI_STDIN = 5
FCGI_STDOUT = 6
FCGI_STDERR = 7
FCGI_GET_VALUES = 9
FCGI_GET_VALUES_RESULT = 10
FCGI_UNKNOWN_TYPE = 11
FCGI_RESPONDER = 1
FCGI_KEEP_CONN = 1
FCGI_REQUEST_COMPLETE = 0
FCGI_UNKNOWN_ROLE = 3

# Content length is a 16-bit field (spec section 3.3).
MAX_CONTENT = 65535

# What ``fault=stderr`` writes on the error stream.
STDERR_MESSAGE = b"fault server: stderr record between stdout records\n"

# What ``fault=crash`` writes there: the shape of flup's report.
CRASH_MESSAGE = (
    b"Traceback (most recent call last):\n"
    b'  File "fault_server.py", line 1, in respond\n'
    b"RuntimeError: fault server: crashed mid-response\n"
)

_HEADER = struct.Struct(">BBHHBx")


class PeerClosed(Exception):
    """The web server closed the connection between or inside records."""


@dataclass
class _Request:
    """The request being read: id, flags and the PARAMS stream so far."""

    request_id: int
    role: int
    flags: int
    params: bytearray = field(default_factory=bytearray)
    params_done: bool = False
    stdin_done: bool = False


def _record(kind: int, request_id: int, content: bytes) -> bytes:
    # Pad every record to a multiple of 8 bytes, as the spec recommends
    # (section 3.3) and as php-fpm does.
    padding = -len(content) % 8
    head = _HEADER.pack(FCGI_VERSION_1, kind, request_id, len(content), padding)
    return head + content + b"\0" * padding


def _recv_exact(sock: socket.socket, count: int) -> bytes:
    chunks = []
    while count:
        data = sock.recv(count)
        if not data:
            raise PeerClosed
        chunks.append(data)
        count -= len(data)
    return b"".join(chunks)


def _decode_params(data: bytes) -> dict[bytes, bytes]:
    # Name-value pairs, spec section 3.4: lengths of one byte, or four
    # bytes with the top bit set.
    pairs: dict[bytes, bytes] = {}
    pos = 0

    def length() -> int:
        nonlocal pos
        if data[pos] < 0x80:
            pos += 1
            return data[pos - 1]
        value: int = struct.unpack_from(">I", data, pos)[0] & 0x7FFFFFFF
        pos += 4
        return value

    while pos < len(data):
        name_len = length()
        value_len = length()
        name = data[pos : pos + name_len]
        pos += name_len
        pairs[name] = data[pos : pos + value_len]
        pos += value_len
    return pairs


def _read_request(sock: socket.socket) -> _Request:
    """Read records until one request's PARAMS and STDIN have both ended."""
    request: _Request | None = None
    while request is None or not (request.params_done and request.stdin_done):
        _, kind, request_id, length, padding = _HEADER.unpack(_recv_exact(sock, 8))
        content = _recv_exact(sock, length + padding)[:length]
        if kind == FCGI_GET_VALUES:
            # Management record (section 4.1): answer with no values.
            sock.sendall(_record(FCGI_GET_VALUES_RESULT, 0, b""))
        elif request_id == 0:
            unknown = struct.pack(">B7x", kind)
            sock.sendall(_record(FCGI_UNKNOWN_TYPE, 0, unknown))
        elif kind == FCGI_BEGIN_REQUEST:
            role, flags = struct.unpack_from(">HB", content)
            request = _Request(request_id, role, flags)
        elif request is None or kind == FCGI_ABORT_REQUEST:
            continue
        elif kind == FCGI_PARAMS:
            request.params += content
            request.params_done = length == 0
        elif kind == FCGI_STDIN:
            request.stdin_done = length == 0
    return request


def _cgi_head(query: BodyQuery) -> bytes:
    lines = [b"Status: 200 OK", b"Content-Type: " + query.content_type().encode()]
    digest = query.digest_header()
    if digest is not None:
        lines.append(f"{digest[0]}: {digest[1]}".encode())
    if query.mode == "length":
        lines.append(b"Content-Length: %d" % query.announced_length())
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _stdout_records(request_id: int, data: bytes, chunk: int) -> list[bytes]:
    step = min(chunk, MAX_CONTENT)
    return [
        _record(FCGI_STDOUT, request_id, data[start : start + step])
        for start in range(0, len(data), step)
    ]


def _respond(sock: socket.socket, request: _Request) -> bool:
    """Answer one request; return False when the connection must close."""
    rid = request.request_id
    if request.role != FCGI_RESPONDER:
        end = struct.pack(">IB3x", 0, FCGI_UNKNOWN_ROLE)
        sock.sendall(_record(FCGI_END_REQUEST, rid, end))
        return bool(request.flags & FCGI_KEEP_CONN)

    params = _decode_params(bytes(request.params))
    end = struct.pack(">IB3x", 0, FCGI_REQUEST_COMPLETE)
    try:
        query = parse_body_query(params[b"QUERY_STRING"].decode("latin-1"))
    except (KeyError, ValueError) as exc:
        head = b"Status: 400 Bad Request\r\nContent-Type: text/plain\r\n\r\n"
        answer = head + f"bad query: {exc}\n".encode()
        sock.sendall(
            _record(FCGI_STDOUT, rid, answer)
            + _record(FCGI_STDOUT, rid, b"")
            + _record(FCGI_END_REQUEST, rid, end)
        )
        return bool(request.flags & FCGI_KEEP_CONN)
    body = query.sent()
    cut = min(query.after, len(body))

    # Step 1: the plan, as a list of ready records.  The split at ``cut``
    # puts the damage on a record boundary, except for fake_header whose
    # bytes live inside the content.
    plan = [_record(FCGI_STDOUT, rid, _cgi_head(query))]
    if query.fault == "crash":
        plan += _stdout_records(rid, body, query.chunk)
        plan.append(_record(FCGI_STDERR, rid, CRASH_MESSAGE))
    elif query.fault in ("empty_stdout", "stderr"):
        plan += _stdout_records(rid, body[:cut], query.chunk)
        if query.fault == "empty_stdout":
            plan.append(_record(FCGI_STDOUT, rid, b""))
        else:
            plan.append(_record(FCGI_STDERR, rid, STDERR_MESSAGE))
        plan += _stdout_records(rid, body[cut:], query.chunk)
    else:
        plan += _stdout_records(rid, body, query.chunk)

    # Step 2: send, pausing between records when asked to.
    for number, record in enumerate(plan):
        if number > 1 and query.slow_ms:
            time.sleep(query.slow_ms / 1000)
        sock.sendall(record)

    # Step 3: a dying app closes without ending the stream or the request.
    if query.fault == "die":
        return False
    sock.sendall(_record(FCGI_STDOUT, rid, b"") + _record(FCGI_END_REQUEST, rid, end))
    return bool(request.flags & FCGI_KEEP_CONN)


def _serve_connection(sock: socket.socket) -> None:
    with sock:
        try:
            while _respond(sock, _read_request(sock)):
                pass
        except (PeerClosed, ConnectionError):
            return


def serve(port: int) -> None:
    """Accept FastCGI connections on 127.0.0.1:``port`` forever."""
    listener = socket.create_server(("127.0.0.1", port), backlog=64)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_serve_connection, args=(conn,), daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    serve(parser.parse_args(argv).port)


if __name__ == "__main__":
    main()
