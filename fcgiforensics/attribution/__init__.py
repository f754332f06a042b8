"""Attribution: the verdict and the hop for each paired exchange."""

from .digest import DeclaredDigest, DigestSpec, find_digest, parse_digest_spec
from .verdict import Attribution, Finding, RegionEvidence, attribute

__all__ = [
    "Attribution",
    "DeclaredDigest",
    "DigestSpec",
    "Finding",
    "RegionEvidence",
    "attribute",
    "find_digest",
    "parse_digest_spec",
]
