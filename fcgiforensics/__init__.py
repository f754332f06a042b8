"""fcgiforensics: find which hop corrupted a web response, from captures."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
