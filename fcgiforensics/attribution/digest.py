"""Body digests that an application declares about its own response.

A digest computed by the app before its bytes left it is an oracle: if
the body rebuilt from the FastCGI leg contradicts it, the damage was done
before the capture point, by the app or its FastCGI server.

Understood out of the box: ``Content-MD5`` (RFC 1864, base64 MD5),
``Content-Digest`` and ``Repr-Digest`` (RFC 9530 section 2 and 3:
a structured dictionary such as ``sha-256=:base64:``).  Any other header
is named with ``--digest-header NAME[:ALGO]``, its value hex or base64.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "DigestSpec",
    "DeclaredDigest",
    "parse_digest_spec",
    "find_digest",
    "digest_matches",
]

# RFC 9530 section 5 registry names -> hashlib names.
_RFC9530_ALGOS = {"sha-256": "sha256", "sha-512": "sha512", "md5": "md5", "sha": "sha1"}
_DICT_MEMBER = re.compile(r"([a-z0-9*_.-]+)\s*=\s*:([A-Za-z0-9+/=]*):")
_HEX = re.compile(r"[0-9a-fA-F]+")
# A field name is a token (RFC 9110 section 5.6.2).
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True, slots=True)
class DigestSpec:
    """A custom digest header: its name and hash (None: guess from name)."""

    header: str
    algorithm: str | None = None


@dataclass(frozen=True, slots=True)
class DeclaredDigest:
    """A digest found in a response's headers, decoded to raw bytes."""

    header: str
    algorithm: str  # a hashlib name
    value: bytes


def parse_digest_spec(text: str) -> DigestSpec:
    """``X-Body-SHA1`` or ``X-Checksum:sha256`` -> DigestSpec.

    ValueError unless the name is a field name (a token, RFC 9110 section
    5.6.2) and the hash, when given after the colon, is one this Python
    can compute with a fixed digest size (SHAKE has none, so a header
    value alone cannot be checked against it).
    """
    name, colon, given = text.partition(":")
    name = name.strip()
    if not _FIELD_NAME.fullmatch(name):
        raise ValueError(f"a digest header needs a field name, not {name!r}")
    algo = given.strip().lower().replace("-", "") or None
    if colon and algo is None:
        raise ValueError(f"no hash algorithm after ':' in {text!r}")
    if algo is not None:
        try:
            hashlib.new(algo).digest()  # listed names may lack a provider
        except (ValueError, TypeError):  # TypeError: SHAKE, no fixed size
            raise ValueError(f"unknown hash algorithm {algo!r}") from None
    return DigestSpec(name, algo)


def _guess_algorithm(header: str, size: int) -> str | None:
    lowered = header.lower().replace("-", "").replace("_", "")
    for algo in ("sha512", "sha384", "sha256", "sha224", "sha1", "md5"):
        if algo in lowered:
            return algo
    by_size = {16: "md5", 20: "sha1", 32: "sha256", 64: "sha512"}
    return by_size.get(size)


def _decode_value(value: str) -> bytes | None:
    value = value.strip()
    if _HEX.fullmatch(value) and len(value) % 2 == 0:
        return bytes.fromhex(value)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def find_digest(
    headers: Sequence[tuple[str, str]], custom: Sequence[DigestSpec] = ()
) -> DeclaredDigest | None:
    """The first digest the headers declare (custom names first)."""
    by_name: dict[str, str] = {}
    for name, text in headers:
        by_name.setdefault(name.lower(), text)

    for spec in custom:
        value = by_name.get(spec.header.lower())
        if value is None:
            continue
        raw = _decode_value(value)
        if raw is None:
            continue
        algo = spec.algorithm or _guess_algorithm(spec.header, len(raw))
        if algo is not None:
            return DeclaredDigest(spec.header, algo, raw)

    # Content-Digest first: it covers the content as sent, which every
    # response lets us check; Repr-Digest covers the whole
    # representation, which a 206 or a HEAD response does not carry.
    for header in ("content-digest", "repr-digest"):
        member = by_name.get(header)
        if member is None:
            continue
        for algo_name, b64 in _DICT_MEMBER.findall(member):
            algo = _RFC9530_ALGOS.get(algo_name.lower())
            raw = _decode_value(b64)
            if algo is not None and raw is not None:
                return DeclaredDigest(header.title(), algo, raw)

    md5 = by_name.get("content-md5")
    if md5 is not None:
        raw = _decode_value(md5)
        if raw is not None and len(raw) == 16:
            return DeclaredDigest("Content-MD5", "md5", raw)
    return None


def digest_matches(declared: DeclaredDigest, body: bytes) -> bool:
    """True when ``body`` hashes to the declared value."""
    return hashlib.new(declared.algorithm, body).digest() == declared.value
