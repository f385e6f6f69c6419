"""The walkthrough notebooks: stored outputs are current and clean, and each runs at the tiny budget.

Execution uses nbclient with a fresh kernel per notebook, KERAS_VAE_NOTEBOOK_BUDGET=tiny and this
checkout first on PYTHONPATH; a notebook passes when no cell errs, nothing reaches stderr, no
output holds a machine path or TensorFlow/CUDA start-up noise, and every figure cell has a PNG.
"""
import importlib.util
import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("make_notebooks", ROOT / "notebooks" / "make_notebooks.py")
make_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_notebooks)
NAMES = sorted(make_notebooks.NOTEBOOKS)


def _stored(name):
    return nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)


@pytest.mark.parametrize("name", NAMES)
def test_stored_notebook_is_generated_executed_and_clean(name):
    nb = _stored(name)
    expected = [src for _, src in make_notebooks.NOTEBOOKS[name]]
    assert [c.source for c in nb.cells] == expected, "stale: run python notebooks/make_notebooks.py " + name
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1))  # executed top to bottom, once
    assert make_notebooks.problems(nb) == []
    assert all("execution" not in c.metadata for c in nb.cells)  # no timing metadata stored
    figures = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert figures >= 1


def test_problems_finds_noise_paths_errors_and_missing_figures():
    nb = make_notebooks.make([("code", "plt.show()"), ("code", "print(1)")])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="ok\n")]
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stderr", text="x"),
                           nbformat.v4.new_output("stream", name="stdout", text="saved to /tmp/abc/run\n"),
                           nbformat.v4.new_output("error", ename="ValueError", evalue="", traceback=[])]
    found = " | ".join(make_notebooks.problems(nb))
    for part in ("figure without an image", "stderr", "'/tmp/'", "error ValueError"):
        assert part in found


# Clears the stored outputs of argv[2] and executes it with make_notebooks.execute in a fresh kernel in argv[3];
# writes the executed notebook to argv[4].
EXECUTE = """
import sys
import nbformat
sys.path.insert(0, sys.argv[1])
import make_notebooks
nb = nbformat.read(sys.argv[2], as_version=4)
for cell in nb.cells:
    if cell.cell_type == "code":
        cell.outputs, cell.execution_count = [], None
make_notebooks.execute(nb, cwd=sys.argv[3], timeout=600)
nbformat.write(nb, sys.argv[4])
"""


def background_jobs(items, tmp_path_factory):
    """Each selected notebook executed at the tiny budget by a process of its own (tests.support.background:
    run ahead of the test, on the core the test process leaves idle)."""
    import sys

    from tests.support.background import Job

    env = {**os.environ, getattr(make_notebooks, "BUDGET_VARIABLE", "KERAS_VAE_NOTEBOOK_BUDGET"): "tiny",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    jobs = {}
    for item in items:
        if item.originalname == "test_notebook_runs_at_the_tiny_budget":
            name = item.callspec.params["name"]
            tmp = tmp_path_factory.mktemp(name)
            jobs[f"notebook {name}"] = Job([sys.executable, "-c", EXECUTE, str(ROOT / "notebooks"),
                                            str(ROOT / "notebooks" / f"{name}.ipynb"), str(tmp),
                                            str(tmp / "executed.ipynb")], tmp / "log", env=env, cwd=tmp,
                                           out=tmp / "executed.ipynb")
    return jobs


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_at_the_tiny_budget(name, background):
    result = background.result(f"notebook {name}")
    assert result.returncode == 0, result.stderr[-3000:]  # make_notebooks.execute raised: a cell failed or timed out
    executed = background.jobs[f"notebook {name}"].out
    assert make_notebooks.problems(nbformat.read(executed, as_version=4)) == []
