"""Digest headers an app declares: parsing the names users give, finding
and checking what the headers say."""

from __future__ import annotations

import base64
import hashlib

import pytest

from fcgiforensics.attribution import parse_digest_spec
from fcgiforensics.attribution.digest import digest_matches, find_digest


def test_a_spec_names_a_header_and_maybe_its_hash() -> None:
    """``NAME`` leaves the hash to be guessed; ``NAME:ALGO`` fixes it."""
    assert parse_digest_spec("X-Body-SHA1").algorithm is None
    assert parse_digest_spec(" X-Sum : SHA-256 ").header == "X-Sum"
    assert parse_digest_spec("X-Sum:sha-256").algorithm == "sha256"


@pytest.mark.parametrize("bad", ["", ":", ":md5", "A B", "X:nohash", "X:shake_128"])
def test_a_spec_without_a_name_or_a_fixed_size_hash_is_refused(bad: str) -> None:
    """An empty or spaced name, an unknown hash and SHAKE (no fixed digest
    size) are refused rather than matched against nothing."""
    with pytest.raises(ValueError):
        parse_digest_spec(bad)


def test_content_digest_is_preferred_to_repr_digest() -> None:
    """With both fields, the one every response lets us check comes first."""
    body = b"payload"
    value = base64.b64encode(hashlib.sha256(body).digest()).decode()
    headers = [
        ("Repr-Digest", f"sha-256=:{value}:"),
        ("Content-Digest", f"sha-256=:{value}:"),
    ]
    declared = find_digest(headers)
    assert declared is not None and declared.header == "Content-Digest"
    assert digest_matches(declared, body)
    assert not digest_matches(declared, body + b"!")
