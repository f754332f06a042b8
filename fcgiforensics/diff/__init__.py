"""Compare the body the app sent with the body the client got.

:func:`align_bodies` finds the exact regions where they differ, keeping
apart what the captures cannot decide; :func:`describe_shapes` puts
recognisable shapes of a region's bytes into words.
"""

from __future__ import annotations

from .align import (
    Alignment,
    DiffRegion,
    RegionKind,
    UndecidableReason,
    align_bodies,
)
from .shapes import Side, describe_shapes

__all__ = [
    "Alignment",
    "DiffRegion",
    "RegionKind",
    "Side",
    "UndecidableReason",
    "align_bodies",
    "describe_shapes",
]
