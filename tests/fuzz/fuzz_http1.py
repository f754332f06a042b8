"""atheris harness: a call script (see tests/fuzz/pipeline.py) through the
HTTP/1.x decoder.

Any byte string is a script of feed, gap and end calls on the two
directions; the invariant is that only messages and catalogued
anomalies come back.  Run through ``python tests/fuzz/run.py http1``;
pytest does not collect this file and CI does not need atheris.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

if __name__ == "__main__":
    # Instrument the package before anything else imports it, so that
    # coverage feedback reaches the code under test.
    import atheris

    with atheris.instrument_imports(include=["fcgiforensics"]):
        import fcgiforensics.decoders.content  # noqa: F401
        import fcgiforensics.decoders.http1  # noqa: F401

from tests.fuzz.pipeline import decode_calls, run_calls  # noqa: E402

PROTOCOL = "http"


def one_input(data: bytes) -> None:
    """Check one input; raises only on a broken invariant."""
    run_calls(PROTOCOL, decode_calls(data))


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
