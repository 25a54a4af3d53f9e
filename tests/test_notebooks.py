"""The notebooks (jupytext percent scripts) run top to bottom on the example study's results."""

from __future__ import annotations

from pathlib import Path

import jupytext
import pytest
from nbclient import NotebookClient

from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, example_run: Path):
    notebook = jupytext.read(path)
    client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(example_run)}})
    client.execute()
    errors = [o for cell in notebook.cells if cell.cell_type == "code"
              for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
    if "new_figure(" in path.read_text(encoding="utf-8"):
        # a cell that draws shows its figure in Jupyter (the style module forces no backend)
        images = [o for cell in notebook.cells if cell.cell_type == "code" and "new_figure(" in cell.source
                  for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
        assert images, "the plotting cell displayed no figure"
