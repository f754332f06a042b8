"""Static checks of the package: mypy in strict mode and ruff."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("mypy") is None, reason="needs mypy")
def test_mypy_strict_on_the_package() -> None:
    """The package type-checks under mypy --strict (pyproject.toml)."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "fcgiforensics"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="needs ruff")
def test_ruff_on_package_tests_and_benchmarks() -> None:
    """ruff finds nothing in the package, the tests or the benchmarks."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "fcgiforensics",
            "benchmarks",
            "tests",
            "captures",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:]
