"""Notebook hygiene, and that nbval really fails a notebook whose answer is wrong.

Every notebook in notebooks/ is run by nbval as part of `make test` (see
[tool.pytest.ini_options]); these tests check what nbval cannot: no committed outputs,
a `parameters` cell whose names are the ones the CLI passes (papermill's inspection),
connection names rather than URLs, and assert cells that check the result.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest

from tsj_lab.config import CONNECTION_NAMES, PROJECT_DIR

NOTEBOOKS = sorted((PROJECT_DIR / "notebooks").glob("*.ipynb"))
FIXTURES = Path(__file__).parent / "notebooks"
# `tsj report NAME ... -p KEY VALUE` as the Makefile (and so CI) calls it
_REPORT_CALL = re.compile(r"tsj report (\S+)((?:\s+-p\s+\S+\s+\S+)+)")


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def _code_cells(path: Path) -> list[nbformat.NotebookNode]:
    return [c for c in _read(path).cells if c.cell_type == "code"]


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def passed_by_the_cli() -> dict[str, set[str]]:
    """Notebook name -> parameter names that Makefile targets pass with -p."""
    makefile = (PROJECT_DIR / "Makefile").read_text().replace("\\\n", " ")
    passed: dict[str, set[str]] = {}
    for name, flags in _REPORT_CALL.findall(makefile):
        passed.setdefault(name, set()).update(re.findall(r"-p\s+(\S+)", flags))
    return passed


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "notebooks/ holds no notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_no_outputs_committed(path: Path) -> None:
    dirty = [i for i, c in enumerate(_code_cells(path)) if c.outputs or c.execution_count]
    assert not dirty, f"{path.name}: code cells {dirty} carry outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_first_code_cell_is_the_parameters_cell(path: Path) -> None:
    cells = _code_cells(path)
    tagged = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
    assert tagged == [0], f"{path.name}: want exactly one 'parameters' cell, first; got {tagged}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_parameters_are_connection_names_not_urls(path: Path) -> None:
    params = papermill.inspect_notebook(str(path))
    assert "target" in params, f"{path.name}: no 'target' parameter"
    for name in CONNECTION_NAMES:
        if name in params:
            assert ast.literal_eval(params[name]["default"]) == name, (
                f"{path.name}: parameter {name!r} must default to the connection name {name!r}")
    for name, p in params.items():
        assert "://" not in str(p["default"]), f"{path.name}: parameter {name!r} defaults to a URL"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_cli_passes_only_declared_parameters(path: Path) -> None:
    declared = set(papermill.inspect_notebook(str(path)))
    passed = passed_by_the_cli().get(path.stem, set())
    assert passed <= declared, f"{path.name}: the Makefile passes {sorted(passed - declared)}"


def test_makefile_reports_name_existing_notebooks() -> None:
    names = {p.stem for p in NOTEBOOKS}
    assert set(passed_by_the_cli()) <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_has_assert_cells_and_offline_plotly(path: Path) -> None:
    sources = [c.source for c in _code_cells(path)]
    assert any(re.search(r"^\s*assert\b", s, re.M) for s in sources), (
        f"{path.name}: no assert cell; nbval would pass a wrong answer")
    if any("plotly" in s for s in sources):
        assert any("plotly_mimetype+notebook" in s for s in sources), (
            f"{path.name}: set plotly.io.renderers.default = 'plotly_mimetype+notebook' "
            "or its figures are missing from the HTML report")


def _nbval(notebook: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """pytest --nbval-lax on one notebook, outside this project's configuration."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-c", "/dev/null", "--rootdir", str(tmp_path),
         "-p", "no:cacheprovider", "-q", "--nbval-lax", "--nbval-current-env", str(notebook)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)


def test_nbval_fails_a_notebook_with_a_failing_assert(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.ipynb"
    wrong.write_text((FIXTURES / "fail.ipynb").read_text())
    out = _nbval(wrong, tmp_path)
    assert out.returncode == 1, out.stdout[-2000:]
    assert "arithmetic is broken" in out.stdout


def test_nbval_passes_a_right_answer(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 2"),
                                         nbformat.v4.new_code_cell("assert x + x == 4")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    right = tmp_path / "right.ipynb"
    nbformat.write(nb, str(right))
    out = _nbval(right, tmp_path)
    assert out.returncode == 0, out.stdout[-2000:]
