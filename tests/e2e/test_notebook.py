"""The lesson notebook, run top to bottom as a learner's "run all" would (nbclient, a real Jupyter kernel), in a
fresh folder: no cell may fail, and every cell that draws shows its figure. The notebook is kept in git without
outputs, so that what a learner sees is what their own run draws, and a change of the package cannot leave stale
figures behind."""

import json
import re
import time

import pytest
from conftest import ROOT

NOTEBOOK = ROOT / "notebooks" / "lesson.ipynb"


def test_the_notebook_is_kept_without_outputs():
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    assert all(not cell.get("outputs") and cell.get("execution_count") is None
               for cell in cells if cell["cell_type"] == "code")


def test_the_lesson_notebook_runs_top_to_bottom_and_draws_every_figure(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    start = time.perf_counter()
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()  # raises CellExecutionError on an error
    seconds = time.perf_counter() - start
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        shown = len(re.findall(r"^\s*show\(", cell.source, flags=re.MULTILINE))  # calls, not the definition
        images = [output for output in cell.outputs if "image/png" in output.get("data", {})]
        assert len(images) >= shown, cell.source[:200]
    assert (tmp_path / "runs" / "lesson" / "study" / "compare.json").exists()
    print(f"the notebook ran in {seconds:.0f} s")
    assert seconds < 600  # it takes under 5 minutes on 2 cores with nothing else running; a busy machine is slower
