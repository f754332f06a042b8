"""Every notebook under notebooks/ runs, top to bottom, in a real kernel."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))

#: Seconds one cell may take; the samples are small, so a cell that runs
#: longer than this is stuck, not slow.
CELL_TIMEOUT = 300


def _samples() -> Path:
    override = os.environ.get("FCGIFORENSICS_CAPTURES")
    return Path(override) if override else REPO / "captures"


@pytest.fixture
def kernel_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A ``python3`` kernelspec running this interpreter, found first."""
    from ipykernel.kernelspec import install

    prefix = tmp_path / "jupyter"
    install(kernel_name="python3", prefix=str(prefix))
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    return "python3"


def test_there_is_a_notebook() -> None:
    """The walkthrough notebook ships with the repository."""
    assert REPO / "notebooks" / "walkthrough.ipynb" in NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    """Notebooks are committed with no outputs and no execution counts."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: a cell has outputs"
            assert cell.execution_count is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_without_error(path: Path, kernel_name: str) -> None:
    """Executing the notebook in an ipykernel raises no error in any cell."""
    if not (_samples() / "relay-overwrite" / "client.pcap").is_file():
        pytest.skip(
            f"sample captures missing: {_samples() / 'relay-overwrite'} "
            "(run captures/make_captures.py, or set FCGIFORENSICS_CAPTURES)"
        )
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()  # raises CellExecutionError naming the failing cell

    # The figures really were drawn, as PNG images.
    images = [
        output
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "image/png" in output.get("data", {})
    ]
    assert images, f"{path.name} drew no figure"
    assert sys.executable  # the kernelspec above runs this interpreter
