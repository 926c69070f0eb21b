"""The notebook of the docs (docs/notebooks/ddb_step_by_step.ipynb) is what scripts/build_notebook.py writes,
carries its figures, and runs top to bottom in a fresh kernel with its amount of work shrunk."""

import importlib.util
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "notebooks" / "ddb_step_by_step.ipynb"


def _builder():
    spec = importlib.util.spec_from_file_location("build_notebook", ROOT / "scripts" / "build_notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _images(cell) -> int:
    return sum("image/png" in output.get("data", {}) for output in cell.get("outputs", []))


def test_the_notebook_in_the_docs_is_the_one_the_script_builds_with_its_figures():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    written = [(cell.cell_type, cell.source) for cell in notebook.cells]
    assert written == [(kind, source) for kind, source in _builder().CELLS]
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code)  # executed, in order
    assert sum(_images(cell) for cell in code) == 3  # the data, the synthetic images, the findings: inline
    assert not [o for cell in code for o in cell.outputs if o.output_type == "error"]


def test_the_notebook_runs_top_to_bottom(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    settings = notebook.cells[1]
    assert settings.source.startswith("# how much work each step does")
    settings.source = f'DIFFUSION_STEPS = 3\nIMAGES_PER_CLASS = 4\nEPOCHS = 1\nOUT = "{tmp_path / "out"}"\n'
    NotebookClient(notebook, timeout=600, resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert sum(_images(cell) for cell in code) == 3
    table = "".join(o.get("text", "") for o in code[-1].outputs)
    assert "ERM" in table and "DDB-II" in table
    assert (tmp_path / "out" / "diffusion" / "pipeline" / "model_index.json").is_file()
