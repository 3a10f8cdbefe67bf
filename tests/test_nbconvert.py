"""Every notebook also runs top to bottom with plain nbclient (what `nbconvert --execute` and
"Run All" do): no reliance on anything nbval sets up.

Each notebook runs in a fresh kernel of this environment's Python, in ``notebooks/`` as its
working directory. Every error output must belong to a cell tagged ``raises-exception`` (the
exercise stubs); any other error fails the test with the cell's source and the error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))
CELL_TIMEOUT = 60  # seconds; Run All of a whole notebook is meant to take 20 s or less


@pytest.fixture(scope="module")
def kernel_specs(tmp_path_factory: pytest.TempPathFactory) -> KernelSpecManager:
    """Kernel specs that can only mean this environment's Python."""
    kernels = tmp_path_factory.mktemp("kernels")
    (kernels / "asyncproc-test").mkdir()
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "asyncproc-kit test kernel",
        "language": "python",
    }
    (kernels / "asyncproc-test" / "kernel.json").write_text(json.dumps(spec))
    return KernelSpecManager(kernel_dirs=[str(kernels)])


def test_there_are_notebooks() -> None:
    assert PATHS, f"no notebooks in {NOTEBOOKS}"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_runs_with_plain_nbclient(path: Path, kernel_specs: KernelSpecManager) -> None:
    nb = nbformat.read(path, as_version=4)
    km = AsyncKernelManager(kernel_name="asyncproc-test", kernel_spec_manager=kernel_specs)
    client = NotebookClient(
        nb,
        km=km,
        timeout=CELL_TIMEOUT,
        allow_errors=True,  # collect every error, then judge them below
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute(cleanup_kc=True)  # a client given a km leaves its kernel running otherwise

    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code_cells, f"{path.name} has no code cells"
    assert all(cell.execution_count for cell in code_cells if cell.source.strip())
    unexpected = [
        f"cell {n}:\n{cell.source}\n--> {out.ename}: {out.evalue}"
        for n, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and "raises-exception" not in cell.metadata.get("tags", [])
        for out in cell.outputs
        if out.output_type == "error"
    ]
    assert not unexpected, f"{path.name} raised outside raises-exception cells:\n" + "\n\n".join(
        unexpected
    )
