"""The anomaly catalogue: every name used is listed, and the docs agree."""

from __future__ import annotations

import re
from pathlib import Path

from fcgiforensics.anomalies import CATALOGUE, catalogue_markdown

PACKAGE = Path(__file__).resolve().parent.parent / "fcgiforensics"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "anomalies.md"
NAME = re.compile(r'"((?:capture|tcp|http|fcgi)\.[a-z0-9_]+)"')


def test_every_name_in_the_code_is_catalogued() -> None:
    """An anomaly name written anywhere in the package is in CATALOGUE."""
    used = set()
    for path in PACKAGE.rglob("*.py"):
        used |= set(NAME.findall(path.read_text()))
    assert used - set(CATALOGUE) == set()


def test_names_are_stable_dotted_identifiers() -> None:
    """Names are layer.snake_case, so scripts can match on them."""
    for name in CATALOGUE:
        assert re.fullmatch(r"(capture|tcp|http|fcgi)\.[a-z0-9_]+", name)


def test_docs_page_is_generated_from_the_catalogue() -> None:
    """docs/anomalies.md equals the generated page (regenerate it with
    `python -m fcgiforensics.anomalies > docs/anomalies.md`)."""
    assert DOCS.read_text() == catalogue_markdown()
