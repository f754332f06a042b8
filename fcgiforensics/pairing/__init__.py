"""Pairing: which upstream FastCGI request served which client request."""

from .pair import ClientRequest, Pair, Pairing, UpstreamRequest, pair_exchanges

__all__ = ["ClientRequest", "UpstreamRequest", "Pair", "Pairing", "pair_exchanges"]
