"""Anomalies: damage or oddity found in the input, kept as data.

An anomaly never stops a run.  Each has a stable dotted name (listed in
:data:`CATALOGUE` and in docs/anomalies.md), a sentence for people, and
the place where it was seen.  Layers that find anomalies return them;
they do not also log them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Anomaly", "CATALOGUE"]


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One piece of damage or oddity, and where it was seen.

    ``stream_offset`` counts bytes of the TCP stream in ``direction`` of
    ``connection``; ``first_frame``/``last_frame`` are frame ids (see
    :mod:`fcgiforensics.frames`); ``file_offset`` is used by the capture
    reader.  Any of them may be None when the layer cannot know it.
    """

    name: str
    detail: str
    capture: str | None = None
    connection: str | None = None
    direction: str | None = None
    stream_offset: int | None = None
    first_frame: int | None = None
    last_frame: int | None = None
    file_offset: int | None = None

    def __str__(self) -> str:
        where: list[str] = []
        if self.capture:
            where.append(self.capture)
        if self.first_frame is not None:
            from .frames import frame_number

            where.append(f"frame {frame_number(self.first_frame)}")
        if self.file_offset is not None:
            where.append(f"file offset {self.file_offset:#x}")
        if self.connection:
            where.append(self.connection)
        if self.stream_offset is not None:
            where.append(f"stream offset {self.stream_offset}")
        prefix = ", ".join(where)
        return f"{self.name}: {self.detail}" + (f" ({prefix})" if prefix else "")


#: Every anomaly name the package can produce, with a one-line meaning.
#: docs/anomalies.md is generated from this table; a test pins both.
CATALOGUE: dict[str, str] = {
    # capture reading
    "capture.truncated_packet": (
        "the packet was captured with a snaplen shorter than its length; "
        "its missing bytes are unobserved"
    ),
    "capture.truncated_file": "the file ends inside a record header or body",
    "capture.bad_record": "a record header is impossible (absurd length)",
    "capture.unknown_block": "a pcapng block of an unknown type was skipped",
    "capture.unsupported_linktype": "packets of a link type this tool cannot read",
    "capture.bad_packet": "a link, IP or TCP header is malformed",
    "capture.ip_fragment": "an IP fragment; fragments are not reassembled",
    # TCP reassembly
    "tcp.midstream": "the connection was first seen without its SYN",
    "tcp.gap": "stream bytes the capture never saw (lost or not captured)",
    "tcp.overlap_conflict": (
        "a retransmission carried bytes that differ from an earlier copy"
    ),
    "tcp.overlap_unverified": (
        "a retransmission overlapped bytes no longer kept for comparison"
    ),
    "tcp.retransmission": "a segment carried bytes already seen",
    "tcp.out_of_order": "a segment arrived ahead of bytes not yet seen",
    "tcp.rst": "the connection was reset",
    "tcp.data_after_fin": "data beyond the sender's FIN",
    "tcp.data_after_rst": "data after the connection was reset; not delivered",
    "tcp.before_start": "data before the first byte seen of a mid-stream connection",
    "tcp.late_data": ("bytes arrived after their range was declared a gap; not merged"),
    "tcp.pending_limit": "too many out-of-order bytes were waiting; a gap was declared",
    "tcp.connection_limit": (
        "the leg held more connections than are followed; later ones were not"
    ),
    # HTTP/1.x (client leg)
    "http.bad_request_line": "a line where a request line belongs is not one",
    "http.bad_status_line": "a line where a status line belongs is not one",
    "http.bad_header": "a field line is malformed (ignored) or holds NUL or CR",
    "http.obs_fold": "a field value continues on a folded line (obsolete)",
    "http.head_too_large": "a head or trailer section passed the size limit",
    "http.too_many_fields": "a head passed the limit on field lines",
    "http.truncated_head": "the stream stops inside a message head",
    "http.te_and_cl": (
        "both Transfer-Encoding and Content-Length (a request smuggling sign)"
    ),
    "http.bad_transfer_encoding": "a request's transfer codings do not end in chunked",
    "http.transfer_coding": "transfer codings other than chunked were not undone",
    "http.bad_content_length": "Content-Length is not one decimal number",
    "http.bad_content_range": "a 206 response's Content-Range cannot be read",
    "http.bad_chunk_size": "a chunk-size line is not hex, too long or overflows",
    "http.bad_chunk_end": "chunk data is not followed by CRLF",
    "http.truncated_body": "the stream stops inside a body",
    "http.body_gap": "body bytes missing from the capture, kept as unobserved",
    "http.body_limit": "a body passed the size limit; the rest was not kept",
    "http.gap": "bytes missing in a head or in chunk framing; framing was lost",
    "http.skipped_bytes": "bytes passed over while seeking a start line after a loss",
    "http.unexpected_response": "a response came with no request to answer",
    "http.unplaceable_response": (
        "a response found after lost framing; no request can be given to it"
    ),
    "http.response_to_lost_request": (
        "a response paired with a request the capture lost or could not decode"
    ),
    "http.tunnel": "the connection left HTTP/1.x (101 or CONNECT); rest not decoded",
    "http.unknown_coding": "a content coding this tool cannot undo; body kept encoded",
    "http.decode_error": "content decoding failed; bytes decoded before it are kept",
    "http.decode_gap": "content decoding stopped at bytes missing from the capture",
    "http.decode_truncated": "the encoded body ends before its coding's end marker",
    "http.decode_trailing_data": "bytes follow the end of the encoded stream",
    "http.decompression_limit": (
        "content decoding passed the output size or ratio limit and stopped"
    ),
    # FastCGI decoding (nginx <-> application leg)
    "fcgi.bad_version": "a record header whose version is not 1; framing lost",
    "fcgi.unknown_type": "a record type FastCGI 1.0 does not define; framing lost",
    "fcgi.truncated_record": "the stream ends inside a record header or its content",
    "fcgi.fin_before_end": "the application's stream ended before END_REQUEST",
    "fcgi.web_server_closed": (
        "the web server closed the connection before END_REQUEST: the "
        "request was aborted (FastCGI 1.0 section 5.4), not failed"
    ),
    "fcgi.request_unfinished": (
        "the capture ended while a request had no END_REQUEST yet"
    ),
    "fcgi.record_after_end": "a record for a request that has already ended",
    "fcgi.unknown_request_id": "a record for a request id that no BEGIN_REQUEST opened",
    "fcgi.empty_stdout_midstream": (
        "STDOUT content after the empty STDOUT record that ended the stream"
    ),
    "fcgi.header_in_stdout": (
        "STDOUT content holds bytes that form a record header of the same "
        "request (misframing, such as a header sent without its content)"
    ),
    "fcgi.stderr_in_stdout": (
        "a STDERR record arrived while STDOUT was still open (legal; damage "
        "only when its text reports a crash)"
    ),
    "fcgi.traceback_in_stdout": (
        "STDOUT content holds the text of a traceback or fatal error"
    ),
    "fcgi.warning_in_stdout": (
        "STDOUT content holds the text of a runtime warning (not damage)"
    ),
    "fcgi.content_length_mismatch": (
        "the CGI Content-Length header disagrees with the STDOUT body"
    ),
    "fcgi.gap": "stream bytes missing on the FastCGI leg, inside a record or between",
    "fcgi.resync": "framing recovered at a confirmed record header after a loss",
    "fcgi.wrong_direction": (
        "a record header of a type only the other side sends; framing lost"
    ),
    "fcgi.bad_request_id": (
        "a management record header with a nonzero request id, or an "
        "application one with id 0; framing lost"
    ),
    "fcgi.bad_record_length": "a fixed-size record body of the wrong length",
    "fcgi.bad_params": "the PARAMS stream ends inside a name-value pair",
    "fcgi.stream_after_end": (
        "PARAMS, STDIN, DATA or STDERR content after the empty record ending it"
    ),
    "fcgi.bad_cgi_header": (
        "the CGI header block in STDOUT is unfinished or has a malformed line "
        "(a Status that is not three ASCII digits from 100, a Content-Length "
        "that is not 1 to 19 ASCII digits)"
    ),
    "fcgi.cgi_header_limit": "the CGI header block passed its size limit",
    "fcgi.params_limit": "PARAMS of a request passed the byte or pair limit",
    "fcgi.stdin_limit": "STDIN or DATA of a request passed the size kept",
    "fcgi.stdout_limit": "STDOUT of a request passed the size kept",
    "fcgi.stderr_limit": "STDERR of a request passed the size kept",
    "fcgi.request_limit": "too many requests open at once on one connection",
}


def catalogue_markdown() -> str:
    """docs/anomalies.md, generated from :data:`CATALOGUE`.

    Regenerate with ``python -m fcgiforensics.anomalies > docs/anomalies.md``.
    """
    lines = [
        "# Anomaly catalogue",
        "",
        "Every anomaly fcgiforensics reports has a stable dotted name. An",
        "anomaly is damage or oddity found in the input; it never stops a",
        "run. It comes with where it was seen: capture file, frame number",
        "(1-based, as in Wireshark), file offset, connection, direction and",
        "stream offset, as far as the layer that found it knows them.",
        "",
        "This page is generated from `fcgiforensics.anomalies.CATALOGUE`.",
        "",
    ]
    layer = ""
    titles = {
        "capture": "Capture files",
        "tcp": "TCP reassembly",
        "http": "HTTP/1.x (client leg)",
        "fcgi": "FastCGI (upstream leg)",
    }
    for name, meaning in CATALOGUE.items():
        prefix = name.split(".", 1)[0]
        if prefix != layer:
            layer = prefix
            lines += [
                f"## {titles.get(prefix, prefix)}",
                "",
                "| name | meaning |",
                "| --- | --- |",
            ]
        lines.append(f"| `{name}` | {meaning} |")
        nxt = list(CATALOGUE)
        i = nxt.index(name)
        if i + 1 == len(nxt) or nxt[i + 1].split(".", 1)[0] != prefix:
            lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(catalogue_markdown(), end="")
