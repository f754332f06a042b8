"""Real HTTP clients for the testbed: curl, and Python's http.client."""

from __future__ import annotations

import http.client
import itertools
import queue
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .bodies import parse_body_query

__all__ = ["CURL", "FetchResult", "curl_fetch", "http_client_fetch_many", "dechunk"]

CURL = "/usr/bin/curl"

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class FetchResult:
    """One request and what the client got back.

    ``saved`` holds the bytes the client handed over: curl's output file
    (wire form with ``raw=True``: chunk framing and gzip left in place),
    or what http.client's ``read()`` returned (de-chunked, still gzipped).
    ``body`` is ``saved`` with chunked coding and gzip undone.
    ``generated_body`` is what :func:`make_body` gives for the query, and
    ``app_body`` what the app wrote for it (they differ for ``lie=1`` and
    the fault server's faults).  ``connection`` numbers the client's
    connection (per fetch_many call; curl uses its fetch number) and
    ``local_port`` is its source port, as seen in the client-leg capture.
    """

    uri: str
    client: str
    status: int | None
    headers: Headers
    saved: bytes
    body: bytes
    local_port: int | None
    error: str | None
    generated_body: bytes
    app_body: bytes
    connection: int
    started_ns: int
    ended_ns: int
    saved_path: Path | None = None

    def header(self, name: str) -> str | None:
        """The last value of response header ``name`` (any case), or None."""
        wanted = name.lower()
        found = None
        for key, value in self.headers:
            if key.lower() == wanted:
                found = value
        return found

    @property
    def intact(self) -> bool:
        """True when the fetch succeeded and the body is what the app wrote."""
        return self.error is None and self.status == 200 and self.body == self.app_body


def dechunk(data: bytes) -> tuple[bytes, bool]:
    """Undo chunked coding (RFC 9112 section 7.1).

    Return the data and whether the last-chunk was seen; a truncated
    stream gives the complete chunk data read so far.
    """
    out = bytearray()
    pos = 0
    while True:
        newline = data.find(b"\n", pos)
        if newline < 0:
            return bytes(out), False
        size_text = data[pos:newline].split(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return bytes(out), False
        if size == 0:
            return bytes(out), True
        start = newline + 1
        out += data[start : start + size]
        if start + size + 2 > len(data):
            return bytes(out), False
        pos = start + size + 2


def _decode(saved: bytes, headers: Headers, raw: bool) -> tuple[bytes, str | None]:
    names = {key.lower(): value.lower() for key, value in headers}
    body = saved
    problem = None
    if raw and "chunked" in names.get("transfer-encoding", ""):
        body, complete = dechunk(body)
        if not complete:
            problem = "chunked body has no last-chunk"
    if names.get("content-encoding") == "gzip":
        # wbits 31: gzip wrapper (RFC 1952).  A truncated stream still
        # gives what it holds.
        inflater = zlib.decompressobj(31)
        try:
            body = inflater.decompress(body) + inflater.flush()
        except zlib.error as exc:
            return body, f"gzip: {exc}"
        if not inflater.eof:
            problem = problem or "gzip stream is truncated"
    return body, problem


def _app_bodies(uri: str) -> tuple[bytes, bytes]:
    try:
        query = parse_body_query(uri)
    except ValueError:
        return b"", b""
    return query.generated(), query.sent()


def _parse_header_file(text: str) -> tuple[int | None, Headers]:
    # curl -D writes every header block (1xx included); keep the last.
    blocks = [block for block in text.split("\r\n\r\n") if block.strip()]
    if not blocks:
        return None, ()
    lines = blocks[-1].split("\r\n")
    status_parts = lines[0].split(" ")
    status = int(status_parts[1]) if len(status_parts) > 1 else None
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return status, tuple(headers)


def curl_fetch(
    port: int,
    uri: str,
    out_dir: Path,
    number: int,
    *,
    raw: bool = False,
    headers: Sequence[tuple[str, str]] = (),
    timeout: float = 10.0,
) -> FetchResult:
    """Fetch ``uri`` from 127.0.0.1:``port`` with curl, saving the body."""
    body_path = out_dir / f"fetch-{number:04d}.body"
    head_path = out_dir / f"fetch-{number:04d}.headers"
    argv = [CURL, "-sS", "--http1.1", "--max-time", str(timeout)]
    argv += ["-o", str(body_path), "-D", str(head_path)]
    argv += ["-w", "%{local_port}"]
    if raw:
        argv.append("--raw")
    for name, value in headers:
        argv += ["-H", f"{name}: {value}"]
    argv.append(f"http://127.0.0.1:{port}{uri}")

    started = time.time_ns()
    done = subprocess.run(argv, capture_output=True, timeout=timeout + 5, check=False)
    ended = time.time_ns()

    saved = body_path.read_bytes() if body_path.exists() else b""
    # Bytes, not read_text(): universal newlines would eat the CRs.
    head_bytes = head_path.read_bytes() if head_path.exists() else b""
    head_text = head_bytes.decode("latin-1")
    status, response_headers = _parse_header_file(head_text)
    body, problem = _decode(saved, response_headers, raw)
    error = None
    if done.returncode != 0:
        error = f"curl exit {done.returncode}: {done.stderr.decode().strip()}"
    elif problem is not None:
        error = problem
    port_text = done.stdout.decode().strip()
    generated, sent = _app_bodies(uri)
    return FetchResult(
        uri=uri,
        client="curl",
        status=status,
        headers=response_headers,
        saved=saved,
        body=body,
        local_port=int(port_text) if port_text.isdigit() and port_text != "0" else None,
        error=error,
        generated_body=generated,
        app_body=sent,
        connection=number,
        started_ns=started,
        ended_ns=ended,
        saved_path=body_path,
    )


def _http_client_worker(
    port: int,
    jobs: queue.Queue[tuple[int, str]],
    next_connection: Callable[[], int],
    results: dict[int, FetchResult],
    headers: dict[str, str],
    timeout: float,
) -> None:
    conn: http.client.HTTPConnection | None = None
    connection_no = next_connection()
    while True:
        try:
            index, uri = jobs.get_nowait()
        except queue.Empty:
            break
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            conn.connect()
        assert conn.sock is not None
        local_port: int = conn.sock.getsockname()[1]
        started = time.time_ns()
        status: int | None = None
        response_headers: Headers = ()
        saved, error = b"", None
        closing = True
        try:
            conn.request("GET", uri, headers=headers)
            response = conn.getresponse()
            status = response.status
            response_headers = tuple(response.getheaders())
            try:
                saved = response.read()
            except http.client.IncompleteRead as exc:
                saved, error = exc.partial, f"IncompleteRead: {exc!r}"
            closing = response.will_close
        except (OSError, http.client.HTTPException) as exc:
            error = f"{type(exc).__name__}: {exc}"
        ended = time.time_ns()
        body, problem = _decode(saved, response_headers, raw=False)
        generated, sent = _app_bodies(uri)
        results[index] = FetchResult(
            uri=uri,
            client="http.client",
            status=status,
            headers=response_headers,
            saved=saved,
            body=body,
            local_port=local_port,
            error=error or problem,
            generated_body=generated,
            app_body=sent,
            connection=connection_no,
            started_ns=started,
            ended_ns=ended,
        )
        # A failed or closing exchange ends the connection; open a new one.
        if error is not None or closing:
            conn.close()
            conn = None
            connection_no = next_connection()
    if conn is not None:
        conn.close()


def http_client_fetch_many(
    port: int,
    uris: Sequence[str],
    *,
    concurrency: int = 8,
    headers: Sequence[tuple[str, str]] = (),
    timeout: float = 10.0,
) -> list[FetchResult]:
    """Fetch ``uris`` over ``concurrency`` keep-alive connections, in order."""
    jobs: queue.Queue[tuple[int, str]] = queue.Queue()
    for item in enumerate(uris):
        jobs.put(item)
    results: dict[int, FetchResult] = {}
    counter = itertools.count()
    lock = threading.Lock()

    def next_connection() -> int:
        with lock:
            return next(counter)

    threads = [
        threading.Thread(
            target=_http_client_worker,
            args=(port, jobs, next_connection, results, dict(headers), timeout),
        )
        for _ in range(max(1, min(concurrency, len(uris))))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [results[index] for index in range(len(uris))]
