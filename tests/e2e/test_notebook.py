"""The example notebook runs every cell green: the pipeline, the client, a strategy, the readers."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "examples" / "client.ipynb"

pytestmark = pytest.mark.e2e


def test_the_example_notebook_runs(tmp_path: Path) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=240,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "mock exchange on port" in text
    assert text.count("BUY notebook-") + text.count("SELL notebook-") == 2
    assert "tickpipe up exited with 0" in text
    charts = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(charts) == 2
