"""Decide, for one exchange, whether the client got what the app sent.

The rules are those of the report contract (REPORT.md, ``verdict`` and
``hop``), applied in this order:

1. Seen on one leg only: ``unmatched``.
2. Damage already on the FastCGI leg, observed: the body contradicts the
   digest the app declared, the app's records are misframed, STDERR or a
   record header sits inside STDOUT, or the app's stream stops before its
   END_REQUEST: ``corrupted`` by the ``app``.
3. Otherwise the two bodies are aligned; a difference made only of
   observed bytes is ``corrupted`` by the ``proxy`` (nginx or the client
   leg's network, between the two capture points).
4. A difference that needs a byte the capture lacks: ``incomplete``.
5. Else ``ok``.  Chunking and content coding done by nginx were undone
   by the decoders, so they are never seen as differences.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..anomalies import Anomaly
from ..decoders.base import Direction
from ..decoders.body import Body
from ..decoders.content import SUPPORTED_CODINGS, ContentDecoder, parse_codings
from ..decoders.fastcgi import CRASH_MARKERS, FcgiRequest
from ..decoders.http1 import HttpExchange, field_values
from ..diff import Alignment, DiffRegion, align_bodies, describe_shapes
from ..frames import format_frames, frame_number
from ..reassembly import Connection
from .digest import DeclaredDigest, DigestSpec, digest_matches, find_digest

__all__ = ["Finding", "RegionEvidence", "Attribution", "attribute", "APP_DAMAGE"]

#: FastCGI anomalies that, seen on the app's side of the connection, show
#: damage the app (or its FastCGI server) did to the response.
APP_DAMAGE = {
    "fcgi.bad_version": "a record header with a wrong version",
    "fcgi.unknown_type": "a record header of an unknown type",
    "fcgi.wrong_direction": "a record type the app must not send",
    "fcgi.bad_request_id": "a record header with an impossible request id",
    "fcgi.bad_record_length": "a record of the wrong length",
    "fcgi.truncated_record": "a record cut off by the end of the stream",
    "fcgi.fin_before_end": "the app closed the connection before END_REQUEST",
    "fcgi.empty_stdout_midstream": "STDOUT content after the empty STDOUT record",
    "fcgi.header_in_stdout": "a FastCGI record header inside STDOUT content",
    "fcgi.stderr_in_stdout": "a crash report on STDERR in the middle of STDOUT",
    "fcgi.traceback_in_stdout": "the text of a traceback or fatal error in STDOUT",
    "http.decode_error": "its own Content-Encoding stream, which cannot be decoded",
    "http.decode_truncated": "its own Content-Encoding stream cut short",
    "fcgi.content_length_mismatch": (
        "a body whose length contradicts the app's Content-Length"
    ),
}

#: Length of a FastCGI record header (spec section 3.3).
FCGI_HEADER_BYTES = 8

#: Anomalies meaning the capture lacks bytes of a message.
UNOBSERVED = {
    "tcp.gap",
    "fcgi.gap",
    "http.gap",
    "http.body_gap",
    "http.decode_gap",
    "fcgi.request_unfinished",
    "capture.truncated_packet",
}


@dataclass(frozen=True, slots=True)
class RegionEvidence:
    """A located difference, with the frames that show it on each leg."""

    offset: int
    length: int
    kind: str
    client_frames: tuple[int, ...]
    upstream_frames: tuple[int, ...]
    records: tuple[str, ...] = ()
    shapes: tuple[str, ...] = ()
    region: DiffRegion | None = None
    #: Capture time (ns) of the frame carrying the region's first byte.
    client_time_ns: int | None = None
    upstream_time_ns: int | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """One piece of app-side damage: which anomaly, where in the body."""

    name: str
    anomaly: Anomaly | None
    body_offset: int | None


@dataclass(slots=True)
class Attribution:
    verdict: str
    hop: str | None
    regions: list[RegionEvidence] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    digest: DeclaredDigest | None = None
    digest_matches: bool | None = None
    client_digest_matches: bool | None = None
    findings: list[Finding] = field(default_factory=list)
    alignment: Alignment | None = None
    #: The upstream body as compared: the app's bytes with its own
    #: Content-Encoding undone (None when it set none).
    upstream_decoded: Body | None = None


def _body_offset_at(body: Body, stream_offset: int) -> int:
    """How many body bytes came before ``stream_offset`` of the stream."""
    best = 0
    for piece in body.pieces:
        if piece.stream_start >= stream_offset:
            break
        if piece.exact:
            best = piece.body_start + min(
                stream_offset - piece.stream_start, piece.body_end - piece.body_start
            )
        else:
            best = piece.body_end
    return best


def _frames(
    conn: Connection | None, direction: Direction, body: Body, start: int, end: int
) -> tuple[int, ...]:
    """Frames of ``direction`` that carried body bytes ``[start, end)``."""
    if conn is None:
        return ()
    if end <= start:  # an empty range: the bytes on either side of it
        start, end = max(start - 1, 0), start + 1
    span = body.stream_range(start, min(end, len(body)))
    if span is None:
        return ()
    return tuple(conn.halves[direction].frames_for(*span))


def _time(
    conn: Connection | None, direction: Direction, body: Body, offset: int
) -> int | None:
    """When the frame carrying body byte ``offset`` was captured (ns)."""
    if conn is None or len(body) == 0:
        return None
    at = min(offset, len(body) - 1)
    span = body.stream_range(at, at + 1)
    return None if span is None else conn.halves[direction].time_at(span[0])


#: Undecidable spans described one by one in the evidence; the rest are
#: counted in the sentence before them.
MAX_SPANS_TOLD = 3


def _unobserved_sentence(
    span: DiffRegion,
    ubody: Body,
    cbody: Body,
    client_conn: Connection,
    upstream_conn: Connection,
) -> str:
    """Which bytes a leg lacks, and between which frames the hole lies."""
    parts = []
    for leg, body, conn, start, end in (
        ("client", cbody, client_conn, span.client_start, span.client_end),
        ("upstream", ubody, upstream_conn, span.upstream_start, span.upstream_end),
    ):
        missing = [
            (max(a, start), min(b, end))
            for a, b in body.unobserved
            if a < end and start < b
        ]
        if not missing and not (
            leg == "client" and not body.complete and start >= len(body)
        ):
            continue
        if not missing:
            parts.append(
                f"the client leg ends at body offset {_fmt(start)} before the body does"
            )
            continue
        a, b = missing[0]
        before = _frames(conn, Direction.TO_CLIENT, body, max(a - 1, 0), a)
        after = (
            _frames(conn, Direction.TO_CLIENT, body, b, b + 1) if b < len(body) else ()
        )
        where = ""
        if before or after:
            around = [format_frames(list(f)) for f in (before, after) if f]
            where = (
                " (between frames " + " and ".join(around) + ")"
                if len(around) == 2
                else f" (after frame {around[0]})"
            )
        parts.append(
            f"the {leg} leg lacks body bytes {_fmt(a)} to {_fmt(b - 1)}{where}"
        )
    return "; ".join(parts) or (
        f"body bytes {_fmt(span.offset)} onwards could not be aligned"
    )


def _representation(request: FcgiRequest) -> tuple[Body, str | None, list[Anomaly]]:
    """The app's body with the app's own Content-Encoding undone.

    An app may compress its response itself (Django's GZipMiddleware
    does); the client's body is compared after decoding, so the app's
    must be too, or every such response would look damaged.  Returns the
    body to compare, the coding undone (None: nothing to undo) and the
    decoder's anomalies (a stream that cannot be decoded is the app's).
    """
    header = request.headers.get("Content-Encoding")
    codings = parse_codings([header.encode("latin-1")]) if header else []
    body = request.body
    if not codings or any(c not in SUPPORTED_CODINGS for c in codings):
        return body, None, []
    decoder = ContentDecoder(codings, direction=Direction.TO_CLIENT.label)
    found: list[Anomaly] = []
    spans = sorted(
        [(p.body_start, p.body_end, p) for p in body.pieces]
        + [(a, b, None) for a, b in body.unobserved],
        key=lambda span: span[0],
    )
    stream_at = 0
    for start, end, piece in spans:
        if piece is None:
            found += decoder.gap(stream_at, end - start)
            break
        found += decoder.feed(
            body.data[start:end],
            piece.stream_start,
            piece.stream_end,
            label=piece.label,
        )
        stream_at = piece.stream_end
    if body.complete:
        found += decoder.finish(stream_at)
    return decoder.build(complete=body.complete), ", ".join(codings), found


def _digest_forms(
    declared: DeclaredDigest,
    client: HttpExchange,
    upstream: FcgiRequest,
    raw: Body,
    decoded: Body,
) -> list[Body] | str:
    """The upstream bodies ``declared`` may describe, or why none can be
    checked.

    Content-MD5 and Content-Digest cover the content as sent, after any
    content coding (RFC 9530 section 2); Repr-Digest covers the whole
    selected representation (section 3), content coding included, which
    only a complete 200 response carries.  A custom header may mean the
    coded or the decoded bytes.
    """
    method = client.request.method if client.request is not None else ""
    if method == "HEAD" or upstream.status in (204, 304):
        return (
            f"a {method or upstream.status} response carries no content to "
            f"check the app's {declared.header} against"
        )
    if declared.header in ("Content-MD5", "Content-Digest"):
        return [raw]
    if declared.header == "Repr-Digest":
        if upstream.status not in (None, 200):
            return (
                f"the app's Repr-Digest covers the whole representation, "
                f"which a {upstream.status} response does not carry: not "
                "checked"
            )
        return [raw]
    return [raw, decoded]


#: How much of the app's STDERR text an evidence sentence quotes.
STDERR_QUOTED = 120


def _stderr_sentence(request: FcgiRequest, anomaly: Anomaly) -> str:
    """Evidence for STDERR that came while STDOUT was open and that is not
    damage: no crash report in it, or one after which the body went on."""
    where = ""
    if anomaly.first_frame is not None:
        where = f" (frame {frame_number(anomaly.first_frame)})"
    text = request.stderr[:STDERR_QUOTED].decode("utf-8", "backslashreplace")
    more = "..." if len(request.stderr) > STDERR_QUOTED else ""
    why = (
        "with no crash report in it"
        if _crash_report(request) is None
        else "and the app's body went on after its crash report (an error "
        "handled and logged)"
    )
    return (
        f"the app wrote {_fmt(len(request.stderr))} bytes to STDERR while "
        f"its STDOUT was open{where}: {text!r}{more}; a legal FastCGI "
        f"record that nginx logs and does not send, {why}, so not damage "
        "by itself"
    )


def _abort_timing(conn: Connection) -> str:
    """How long after the app's last byte the web server closed: about
    fastcgi_read_timeout when nginx gave up on a stalled app."""
    app, web = conn.to_client, conn.to_server
    if web.end_time is None:
        return ""
    before = [t for t in app.seg_times if t <= web.end_time]
    if not before:
        return ""
    idle = (web.end_time - max(before)) / 1e9
    if idle < 0.5:
        return ""
    return (
        f", {idle:.1f} s after the app's last byte (nginx gives up on a "
        "silent app after fastcgi_read_timeout)"
    )


def _client_left_first(client_conn: Connection) -> str:
    """A sentence if the client ended its connection before the web
    server ended its side of it (an empty string otherwise).

    Both times come from the client leg's own capture, so no clock
    offset between the legs enters the comparison.
    """
    left, served = client_conn.to_server.end_time, client_conn.to_client.end_time
    if left is None or (served is not None and served <= left):
        return ""
    return (
        "the client closed its connection before the response ended, "
        "and the web server then aborted the FastCGI request: nothing "
        "was damaged, the client left"
    )


def _started_before_capture(
    client: HttpExchange | None, upstream: FcgiRequest | None
) -> list[str]:
    """Why a side's start is missing from the capture (empty: it is not)."""
    why = []
    if client is not None and client.request is None:
        why.append(
            "the client leg holds a response whose request was not captured "
            "(the capture began, or a gap fell, after it was sent)"
        )
    if upstream is not None and not upstream.begun:
        why.append(
            "the FastCGI leg holds records of a request whose BEGIN_REQUEST "
            "was not captured (the capture began, or a gap fell, after it)"
        )
    return why


def _client_body_for_diff(exchange: HttpExchange, conn: Connection) -> Body:
    """The client's decoded body, with an observed early end made final.

    The HTTP decoder marks a body cut by the connection's close as
    incomplete.  If the close itself was captured (FIN or RST) with no
    capture gap, the truncation is a fact, not a lack of evidence.
    """
    response = exchange.response
    assert response is not None
    body = response.body
    if body.complete:
        return body
    half = conn.to_client
    names = {a.name for a in exchange.anomalies}
    if (
        (half.fin or half.rst)
        and not half.gaps
        and not names & UNOBSERVED
        and not {"http.decode_error", "http.decompression_limit", "http.body_limit"}
        & names
    ):
        return Body(body.data, body.unobserved, body.pieces, True)
    return body


def _unobserved_before(
    request: FcgiRequest, conn: Connection, anomaly: Anomaly
) -> bool:
    """True when the app's stream lacks bytes between the request's first
    record and ``anomaly``.

    After a capture gap (packet loss, snaplen) the decoder must find the
    record framing again; a record header, or the END_REQUEST itself, may
    lie in the bytes never seen.  What looks misframed then is a fact
    about the capture, not about the app (REPORT.md, ``incomplete``).
    """
    half = conn.to_client
    starts = [
        r.stream_offset for r in request.records if r.direction is Direction.TO_CLIENT
    ]
    start = min(starts) if starts else 0
    end = anomaly.stream_offset
    if end is None:
        end = half.length
    return bool(half.unobserved(start, end + 1))


def _crash_report(request: FcgiRequest) -> bytes | None:
    """The first crash marker in the request's STDERR text, if any."""
    for marker in CRASH_MARKERS:
        if marker in request.stderr:
            return marker
    return None


def _app_findings(request: FcgiRequest, conn: Connection) -> list[Finding]:
    out: list[Finding] = []
    for anomaly in request.anomalies:
        if anomaly.name not in APP_DAMAGE:
            continue
        if anomaly.name == "fcgi.stderr_in_stdout" and _crash_report(request) is None:
            # A STDERR record may come at any time (FastCGI 1.0 section
            # 5.3); nginx logs it and sends STDOUT on unchanged.  Only a
            # crash report says the response was cut.
            continue
        if (
            anomaly.name == "fcgi.traceback_in_stdout"
            and (request.status or 200) >= 500
        ):
            continue  # an error page is the response the app chose
        if anomaly.direction != Direction.TO_CLIENT.label:
            continue  # the web server's side: not the app's doing
        if anomaly.name == "fcgi.truncated_record" and not (
            conn.to_client.fin or conn.to_client.rst
        ):
            continue  # the capture stopped, the app did not
        if anomaly.name in ("fcgi.truncated_record", "fcgi.fin_before_end") and (
            request.aborted
        ):
            # The web server closed first (FastCGI 1.0 section 5.4): the
            # app's stream was cut after it left, by its leaving.
            continue
        if _unobserved_before(request, conn, anomaly):
            continue  # the framing was lost in bytes the capture lacks
        offset = None
        if anomaly.stream_offset is not None:
            offset = _body_offset_at(request.body, anomaly.stream_offset)
        if anomaly.name in ("fcgi.fin_before_end", "fcgi.content_length_mismatch"):
            offset = len(request.body)
        if (
            anomaly.name == "fcgi.stderr_in_stdout"
            and offset is not None
            and offset < len(request.body)
        ):
            # The body went on after the report: the app handled and
            # logged an error, and its response did not stop there.
            continue
        out.append(Finding(anomaly.name, anomaly, offset))
    return out


def _fmt(n: int) -> str:
    return f"{n:,}"


def attribute(
    client: HttpExchange | None,
    client_conn: Connection | None,
    upstream: FcgiRequest | None,
    upstream_conn: Connection | None,
    digests: Sequence[DigestSpec] = (),
    *,
    weak_pairing: bool | str = False,
) -> Attribution:
    """The verdict, hop, regions and evidence for one paired exchange.

    ``weak_pairing`` says the pair may join two different requests: made
    by time alone (True: a request line was not captured), or for the
    reason it gives (a string).  A difference may then come from the
    pairing, so it never blames the proxy.
    """
    # Step 1: a side whose start the capture lacks cannot be judged: the
    # capture began (or a gap fell) after its request did.
    late = _started_before_capture(client, upstream)
    if late:
        result = Attribution("incomplete", None)
        result.evidence.extend(late)
        return result

    # Step 2: one leg only.
    if client is None or upstream is None:
        leg = "client" if client is not None else "upstream"
        result = Attribution("unmatched", None)
        result.evidence.append(f"this request was seen on the {leg} leg only")
        return result
    assert upstream_conn is not None and client_conn is not None

    result = Attribution("ok", None)

    # The app may hand the body to nginx (X-Accel-Redirect): the client's
    # body then never travelled on the FastCGI leg, so there is nothing to
    # compare it with.
    delegated = upstream.headers.get("X-Accel-Redirect")
    if delegated is not None:
        result.verdict = "incomplete"
        result.evidence.append(
            f"the app answered with X-Accel-Redirect: {delegated}; nginx "
            "served that body itself, so it did not travel on the FastCGI "
            "leg and cannot be compared"
        )
        return result

    raw_ubody = upstream.body
    ubody, undone, coding_anomalies = _representation(upstream)
    if undone is not None:
        result.upstream_decoded = ubody
        result.evidence.append(
            f"the app encoded its body itself ({undone}, "
            f"{_fmt(len(raw_ubody))} bytes): compared after decoding"
        )
        for coded in coding_anomalies:
            if coded.name in APP_DAMAGE:
                if coded.stream_offset is not None:
                    frames = upstream_conn.to_client.frames_for(
                        max(coded.stream_offset - 1, 0), coded.stream_offset + 1
                    )
                    if frames:
                        coded = dataclasses.replace(
                            coded, first_frame=frames[-1], last_frame=frames[-1]
                        )
                result.findings.append(Finding(coded.name, coded, len(ubody)))
                result.evidence.append(
                    f"the app sent {APP_DAMAGE[coded.name]}: decoding stops at "
                    f"body offset {_fmt(len(ubody))} ({coded.detail})"
                )

    # Step 2a: the app's own digest, checked against the upstream body.
    # Only a digest on the FastCGI leg is the app's: one that only the
    # client got was added after it, and says nothing about the app.
    declared = find_digest(list(upstream.headers.fields), digests)
    result.digest = declared
    response = client.response
    if declared is None and response is not None:
        added = find_digest(
            [(n.decode("latin-1"), v.decode("latin-1")) for n, v in response.headers],
            digests,
        )
        if added is not None:
            result.evidence.append(
                f"the client got a {added.header} that the app did not send "
                "(the web server added it); it is not the app's oracle"
            )
    if declared is not None:
        candidates = _digest_forms(declared, client, upstream, raw_ubody, ubody)
        if isinstance(candidates, str):
            result.evidence.append(candidates)
            candidates = []
        forms = [b for b in candidates if b.fully_observed and b.complete]
        if forms:
            result.digest_matches = any(digest_matches(declared, b.data) for b in forms)
        if result.digest_matches:
            result.evidence.append(
                f"the upstream body matches the app's {declared.header} "
                f"({declared.algorithm})"
            )
        elif result.digest_matches is False:
            result.evidence.append(
                f"the upstream body contradicts the app's "
                f"{declared.header} ({declared.algorithm}): the app sent "
                "bytes other than those it digested"
            )
            result.findings.append(Finding("digest", None, None))
        if response is not None and candidates:
            seen = [
                b
                for b in (response.body, response.wire_body)
                if b.fully_observed and b.complete
            ]
            if seen:
                result.client_digest_matches = any(
                    digest_matches(declared, b.data) for b in seen
                )

    # Step 2b: damage visible in the FastCGI records.
    if upstream.aborted:
        # The decoder saw the web server's side end first: an abort
        # (FastCGI 1.0 section 5.4), not the app stopping.
        result.evidence.append(
            "the web server closed the FastCGI connection before the app's "
            "END_REQUEST; the app did not stop on its own"
            + _abort_timing(upstream_conn)
        )
        finished = client.response is not None and client.response.complete
        gone = "" if finished else _client_left_first(client_conn)
        if gone:
            # nginx aborts the upstream request when its client goes away
            # (it logs a 499): what the client missed, it chose to miss;
            # what it got is still compared (Step 4).
            result.evidence.append(gone)
    else:
        gone = ""
    findings = _app_findings(upstream, upstream_conn)
    for noted in upstream.anomalies:
        if noted.name == "fcgi.stderr_in_stdout" and not any(
            f.anomaly is noted for f in findings
        ):
            result.evidence.append(_stderr_sentence(upstream, noted))
    for finding in findings:
        result.findings.append(finding)
        where = ""
        anomaly = finding.anomaly
        if anomaly is not None and anomaly.first_frame is not None:
            where = f" (frame {frame_number(anomaly.first_frame)})"
        at = (
            ""
            if finding.body_offset is None
            else f" at body offset {_fmt(finding.body_offset)}"
        )
        result.evidence.append(
            f"the FastCGI leg shows {APP_DAMAGE[finding.name]}{at}{where}"
        )

    # Step 3: align the bodies.
    response = client.response
    if response is None:
        result.verdict = "incomplete"
        result.evidence.append("the client leg holds no response to compare")
        return (
            _app_verdict(result, upstream, upstream_conn) if result.findings else result
        )
    cbody = _client_body_for_diff(client, client_conn)
    content_types = field_values(response.headers, b"content-type")
    if response.status == 206 and any(
        t.lower().startswith(b"multipart/byteranges") for t in content_types
    ):
        # XXX: the parts of a multipart/byteranges body are not placed
        # at their ranges, so there is nothing exact to compare.
        result.verdict = "incomplete"
        result.evidence.append(
            "a 206 multipart/byteranges response: its parts are not "
            "matched to the app's body, so it is not compared"
        )
        return result
    if response.range_start is not None and upstream.status != 206:
        # nginx cut the range from the app's whole body (RFC 9110
        # section 14.2); an app that answered 206 itself sent the part.
        start = response.range_start
        ubody_cmp = _slice(ubody, start, start + len(cbody))
        result.evidence.append(
            f"a 206 response: compared with upstream bytes from {_fmt(start)}"
        )
    else:
        ubody_cmp = ubody
    if client.request is not None and client.request.method == "HEAD":
        alignment = None
    else:
        alignment = align_bodies(ubody_cmp, cbody)
    result.alignment = alignment
    if response.status != upstream.status and upstream.status is not None:
        result.evidence.append(
            f"the app answered {upstream.status}, the client got {response.status}"
        )

    # Step 4: decide.
    if (
        response.status != upstream.status
        and not upstream.complete
        and not result.findings
    ):
        # The app's response never finished (nginx gave up on it, or the
        # capture ended) and nginx answered something else in its place,
        # such as a 504: two different responses, nothing to compare.
        result.verdict = "incomplete"
        result.evidence.append(
            f"the app's response never finished, and the client got "
            f"{response.status} from the web server in its place"
        )
        return result
    if result.findings:
        if alignment is not None and alignment.regions:
            # One hop is named per exchange, the first to damage it; what
            # the proxy changed besides is told, not dropped.
            later = [
                _proxy_region(r, ubody_cmp, cbody, client_conn, upstream_conn)
                for r in alignment.regions
            ]
            result.evidence.append(
                f"besides the app's damage, the client's body departs from "
                f"the app's in {len(later)} more place(s), after the "
                "FastCGI leg:"
            )
            result.evidence.extend(_region_sentence(r) for r in later[:MAX_SPANS_TOLD])
        return _app_verdict(result, upstream, upstream_conn)
    if alignment is None:
        # HEAD: no body on either leg (RFC 9110 section 9.3.2); what can
        # be compared is the status.
        if response.status == upstream.status and client.complete:
            result.evidence.append(
                f"a HEAD response carries no body; the client got the "
                f"app's status {response.status}"
            )
        else:
            result.verdict = "incomplete"
            result.evidence.append(
                "a HEAD response carries no body to compare, and its "
                "status or end could not be matched"
            )
        return result
    differing = list(alignment.regions) if alignment is not None else []
    if gone:
        # Only bytes the client received can be wrong; where its body
        # stops early, it left.
        differing = [r for r in differing if r.kind != "truncate"]
        if not differing or weak_pairing:
            result.verdict = "incomplete"
            return result
    if differing and weak_pairing:
        why = (
            weak_pairing
            if isinstance(weak_pairing, str)
            else "this pair was made by time alone (a request line was not captured)"
        )
        result.verdict = "incomplete"
        result.evidence.append(
            f"the bodies differ, but {why}: they may be two different "
            "requests, so no hop is blamed"
        )
        return result
    if differing:
        result.verdict = "corrupted"
        result.hop = "proxy"
        for region in differing:
            result.regions.append(
                _proxy_region(region, ubody_cmp, cbody, client_conn, upstream_conn)
            )
        if result.digest_matches:
            result.evidence.append(
                "the app's digest vouches for the upstream bytes, so the "
                "damage happened after the FastCGI leg"
            )
        for evidence in result.regions:
            result.evidence.append(_region_sentence(evidence))
        return result
    if (
        alignment is not None
        and alignment.undecidable
        or not ubody.complete
        or not cbody.complete
    ):
        result.verdict = "incomplete"
        spans: tuple[DiffRegion, ...] = alignment.undecidable if alignment else ()
        undecided = sum(
            max(r.upstream_end - r.upstream_start, r.client_end - r.client_start)
            for r in spans
        )
        if undecided:
            result.evidence.append(
                f"{_fmt(undecided)} bytes could not be compared: the "
                "capture lacks them on at least one leg"
            )
            for span in spans[:MAX_SPANS_TOLD]:
                result.evidence.append(
                    _unobserved_sentence(
                        span, ubody_cmp, cbody, client_conn, upstream_conn
                    )
                )
        elif upstream.aborted:
            result.evidence.append(
                "the web server aborted the request before the app "
                "finished (FastCGI 1.0 section 5.4): the response was "
                f"never whole, and the {_fmt(min(len(cbody), len(ubody)))} "
                "bytes both legs carried agree"
            )
        else:
            result.evidence.append("a body's end was not captured")
        return result
    result.evidence.append(
        f"the client's body equals the app's body ({_fmt(len(cbody))} bytes)"
    )
    return result


def _slice(body: Body, start: int, end: int) -> Body:
    """Bytes ``[start, end)`` of ``body`` as a body of their own."""
    unobserved = [
        (max(a, start) - start, min(b, end) - start)
        for a, b in body.unobserved
        if a < end and start < b
    ]
    return Body(body.data[start:end], unobserved, [], body.complete or end <= len(body))


def _app_verdict(
    result: Attribution, upstream: FcgiRequest, conn: Connection
) -> Attribution:
    result.verdict = "corrupted"
    result.hop = "app"
    body = upstream.body
    for finding in result.findings:
        if finding.body_offset is None:
            continue
        offset = finding.body_offset
        declared = upstream.headers.content_length
        if finding.name in ("fcgi.fin_before_end", "fcgi.content_length_mismatch"):
            kind = "truncate"
            length = max((declared or offset) - offset, 0)
        elif finding.name == "fcgi.stderr_in_stdout":
            # The crash report came after the last body byte (a report the
            # body went on after is no finding): the body stops there, and
            # how much is missing is not known.
            kind = "truncate"
            length = max((declared or offset) - offset, 0)
        elif finding.name == "fcgi.header_in_stdout":
            # The look-alike header is itself body content: its eight
            # bytes (FastCGI 1.0 spec, section 3.3) are the region.
            kind = "insert"
            length = min(FCGI_HEADER_BYTES, max(len(body) - offset, 0))
        else:
            kind = "insert"
            length = 0
        frames: tuple[int, ...] = ()
        if finding.anomaly is not None and finding.anomaly.first_frame:
            frames = (finding.anomaly.first_frame,)
        labels = tuple(body.labels(max(offset - 1, 0), offset + 1))
        result.regions.append(
            RegionEvidence(
                offset,
                length,
                kind,
                (),
                frames,
                labels,
                upstream_time_ns=_time(conn, Direction.TO_CLIENT, body, offset),
            )
        )
    return result


def _proxy_region(
    region: DiffRegion,
    ubody: Body,
    cbody: Body,
    client_conn: Connection,
    upstream_conn: Connection,
) -> RegionEvidence:
    client_frames = _frames(
        client_conn, Direction.TO_CLIENT, cbody, region.client_start, region.client_end
    )
    upstream_frames = _frames(
        upstream_conn,
        Direction.TO_CLIENT,
        ubody,
        region.upstream_start,
        region.upstream_end,
    )
    labels = tuple(
        ubody.labels(
            region.upstream_start, max(region.upstream_end, region.upstream_start + 1)
        )
    )
    shapes = tuple(
        describe_shapes(region, ubody.data, cbody.data, unobserved=cbody.unobserved)
    )
    return RegionEvidence(
        region.offset,
        region.length,
        region.kind,
        client_frames,
        upstream_frames,
        labels,
        shapes,
        region,
        _time(client_conn, Direction.TO_CLIENT, cbody, region.client_start),
        _time(upstream_conn, Direction.TO_CLIENT, ubody, region.upstream_start),
    )


def _frames_phrase(frames: tuple[int, ...]) -> str:
    """``frame 20`` or ``frames 20-22``, as Wireshark numbers them."""
    text = format_frames(list(frames))
    single = len({frame_number(f) for f in frames}) == 1
    return f"frame {text}" if single else f"frames {text}"


def _region_sentence(r: RegionEvidence) -> str:
    end = r.offset + max(r.length, 1) - 1
    what = {
        "replace": f"bytes {_fmt(r.offset)} to {_fmt(end)} differ",
        "insert": f"the client got {_fmt(r.length)} extra bytes at "
        f"offset {_fmt(r.offset)}",
        "delete": f"bytes {_fmt(r.offset)} to {_fmt(end)} are missing "
        "from the client's body",
        "truncate": f"the client's body stops at offset {_fmt(r.offset)}, "
        f"{_fmt(r.length)} bytes short",
    }[r.kind]
    parts = [what]
    if r.upstream_frames:
        records = f" in {', '.join(r.records)}" if r.records else ""
        parts.append(
            f"the FastCGI leg carried the app's bytes{records} "
            f"({_frames_phrase(r.upstream_frames)})"
        )
    if r.client_frames:
        carried = {
            "replace": "carried other bytes in",
            "insert": "carried the extra bytes in",
            "delete": "went on past the missing bytes in",
            "truncate": "ended the body in",
        }[r.kind]
        parts.append(f"the client leg {carried} {_frames_phrase(r.client_frames)}")
    sentence = "; ".join(parts)
    if r.shapes:
        sentence += " (" + "; ".join(r.shapes) + ")"
    return sentence
