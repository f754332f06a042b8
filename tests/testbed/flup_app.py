"""The WSGI app behind flup, and a command line that serves it over FastCGI.

Run as ``python -m testbed.flup_app --port N [--fork] [--timeout S]``.
``--fork`` uses ``flup.server.fcgi_fork`` (prefork, one request per child
at a time, with flup's per-request ``timeout`` in seconds); without it the
threaded ``flup.server.fcgi`` server is used.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .bodies import BodyQuery, parse_body_query

__all__ = ["body_app", "main"]

StartResponse = Callable[..., Any]


def body_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Serve ``/body?...`` as described in :mod:`testbed.bodies`."""
    try:
        query = parse_body_query(str(environ.get("QUERY_STRING", "")))
    except ValueError as exc:
        message = f"bad query: {exc}\n".encode()
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [message]

    # Step 1: headers.  Without Content-Length nginx must chunk the body
    # towards an HTTP/1.1 client (RFC 9112 section 7.1).
    headers = [("Content-Type", query.content_type())]
    digest = query.digest_header()
    if digest is not None:
        headers.append(digest)
    body = query.sent()
    if query.mode == "length":
        headers.append(("Content-Length", str(len(body))))
    start_response("200 OK", headers)

    # Step 2: the body, in pieces, with an optional pause between them.
    return _pieces(body, query)


def _pieces(body: bytes, query: BodyQuery) -> Iterator[bytes]:
    for start in range(0, len(body), query.chunk):
        if start and query.slow_ms:
            time.sleep(query.slow_ms / 1000)
        yield body[start : start + query.chunk]


def main(argv: list[str] | None = None) -> None:
    """Serve :func:`body_app` on 127.0.0.1 until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fork", action="store_true")
    parser.add_argument("--timeout", type=int, default=None)
    parser.add_argument("--children", type=int, default=4)
    args = parser.parse_args(argv)
    address = ("127.0.0.1", args.port)

    if args.fork:
        from flup.server import fcgi_fork  # type: ignore[import-untyped]

        fcgi_fork.WSGIServer(
            body_app,
            bindAddress=address,
            timeout=args.timeout,
            minSpare=args.children,
            maxSpare=args.children,
            maxChildren=args.children,
        ).run()
    else:
        from flup.server import fcgi

        fcgi.WSGIServer(body_app, bindAddress=address, debug=False).run()


if __name__ == "__main__":
    main()
