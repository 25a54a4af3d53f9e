"""The notebooks (jupytext percent scripts) run top to bottom, headless, on the example study's
results, and every cell that draws shows its figure (as it would in Jupyter)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import jupytext
import pytest
from nbclient import NotebookClient

from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))
# A cell that makes a figure: the style module's new_figure or matplotlib's own.
DRAWS = re.compile(r"\bnew_figure\(|\bplt\.(subplots|figure)\(")
# the public API: no notebook reaches into a workflow step module or a private name
INTERNAL = re.compile(r"alliance(\.\w+)*\.(steps|figures)\b|from alliance\S* import [^\n]*\b_\w+|\bM\._\w+")


def run_notebook(path: Path, folder: Path):
    notebook = jupytext.read(path)
    client = NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(folder)}})
    started = time.perf_counter()
    client.execute()
    return notebook, time.perf_counter() - started


def test_there_is_a_tutorial_and_every_notebook_uses_the_public_api():
    assert [p.name for p in NOTEBOOKS][0] == "00-tutorial-your-first-model.py"
    for path in NOTEBOOKS:
        assert not INTERNAL.search(path.read_text(encoding="utf-8")), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_shows_its_figures(path: Path, example_run: Path):
    notebook, seconds = run_notebook(path, example_run)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    errors = [o for cell in code for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
    drawing = [cell for cell in code if DRAWS.search(cell.source)]
    assert drawing, "each notebook draws at least one figure"
    for cell in drawing:
        images = [o for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
        assert len(images) == 1, f"the cell drawing a figure displayed {len(images)} images:\n{cell.source[:200]}"
    assert seconds < 60, f"{path.name} took {seconds:.0f} s"
