"""atheris harness: arbitrary bytes as a capture file, through the pipeline.

The invariant is the one of :func:`tests.fuzz.pipeline.follow_path`:
results plus anomalies, or a CaptureError; anything else is a crash.
Run through ``python tests/fuzz/run.py capture``; pytest does not
collect this file and CI does not need atheris.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

if __name__ == "__main__":
    # Instrument the package before anything else imports it, so that
    # coverage feedback reaches the code under test.
    import atheris

    with atheris.instrument_imports(include=["fcgiforensics"]):
        import fcgiforensics.capture.leg  # noqa: F401
        import fcgiforensics.capture.packets  # noqa: F401
        import fcgiforensics.capture.records  # noqa: F401
        import fcgiforensics.decoders.content  # noqa: F401
        import fcgiforensics.decoders.fastcgi  # noqa: F401
        import fcgiforensics.decoders.http1  # noqa: F401
        import fcgiforensics.reassembly.reassembler  # noqa: F401

from fcgiforensics.errors import CaptureError  # noqa: E402
from tests.fuzz.pipeline import follow_path  # noqa: E402

# A RAM-backed directory when there is one: the harness writes a file
# per input, and a disk would make that the bottleneck.
_SCRATCH = Path(tempfile.mkdtemp(
    prefix="fuzz-capture-",
    dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)
_PATH = str(_SCRATCH / "input.cap")

def one_input(data: bytes) -> None:
    """Check one input; raises only on a broken invariant."""
    with open(_PATH, "wb") as out:
        out.write(data)
    try:
        follow_path(_PATH, "auto")
    except CaptureError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
