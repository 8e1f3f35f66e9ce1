"""notebooks/explore.ipynb runs from top to bottom, so that it cannot rot."""

import os

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO


@pytest.mark.slow
def test_explore_notebook_executes(tmp_path, monkeypatch):
    # An empty demo folder makes the notebook build its own tiny data and model.
    monkeypatch.setenv("SVGAN_DEMO_DIR", str(tmp_path / "no_demo"))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    path = os.path.join(REPO, "notebooks", "explore.ipynb")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": os.path.dirname(path)}}).execute()
    outputs = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", []))
    assert "disease probabilities" in outputs and "WT: Dice" in outputs and "| split |" in outputs
