"""A real testbed for fcgiforensics: nginx, FastCGI apps, curl and tcpdump.

Typical use in a test::

    from tests.testbed import RelayFault, Testbed

    with Testbed(tmp_path, backend="php", gzip=True) as tb:
        result = tb.fetch("/body?size=1000000&seed=3&mode=chunked")
        assert result.body == result.app_body
    analyse(tb.client_pcap, tb.upstream_pcap)

Backends: ``flup`` (threaded), ``flup-fork`` (prefork, ``fork_timeout``),
``php`` (php-fpm) and ``fault`` (our own FastCGI server that misbehaves on
request).  The request language is described in :mod:`testbed.bodies`.
Everything runs on 127.0.0.1, as root, under the given directory.
"""

from .backends import BACKEND_KINDS, BackendKind
from .bed import Testbed, unavailable_reason
from .bodies import (
    FAKE_RECORD_HEADER,
    LINE_LENGTH,
    BodyQuery,
    flip_middle_byte,
    make_body,
    parse_body_query,
)
from .capture import CaptureStats
from .clients import FetchResult, dechunk
from .fcgi_fault_server import STDERR_MESSAGE
from .procs import TestbedError
from .relay import RelayEvent, RelayFault

__all__ = [
    "BACKEND_KINDS",
    "FAKE_RECORD_HEADER",
    "LINE_LENGTH",
    "STDERR_MESSAGE",
    "BackendKind",
    "BodyQuery",
    "CaptureStats",
    "FetchResult",
    "RelayEvent",
    "RelayFault",
    "Testbed",
    "TestbedError",
    "dechunk",
    "flip_middle_byte",
    "make_body",
    "parse_body_query",
    "unavailable_reason",
]
