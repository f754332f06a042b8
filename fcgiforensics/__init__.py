"""fcgiforensics: find which hop corrupted a web response, from captures."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .notebook import Investigation

__version__ = "0.1.0"

__all__ = ["__version__", "analyze"]


def analyze(client: Any, upstream: Any = None, **options: Any) -> Investigation:
    """Analyse captures for a notebook; see :func:`.notebook.investigate`.

    pandas and matplotlib are imported here, on first call, never by
    ``import fcgiforensics`` or the command line.
    """
    from .notebook import investigate

    return investigate(client, upstream, **options)
