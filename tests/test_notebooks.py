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
from nbclient import NotebookClient

from tsj_lab import bench
from tsj_lab.lab import reports
from tsj_lab.config import CONNECTION_NAMES, PROJECT_DIR
from tsj_lab.server.cluster import Embedded

NOTEBOOKS = sorted((PROJECT_DIR / "notebooks").glob("*.ipynb"))
FIXTURES = Path(__file__).parent / "notebooks"


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def _code_cells(path: Path) -> list[nbformat.NotebookNode]:
    return [c for c in _read(path).cells if c.cell_type == "code"]


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


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


@pytest.mark.parametrize("large,quick", [(False, False), (False, True), (True, False)],
                         ids=["full", "quick", "large"])
def test_bench_presets_pass_only_declared_parameters(large: bool, quick: bool) -> None:
    """What `tsj bench` passes to 04_benchmark is declared there (papermill would only warn)."""
    path = PROJECT_DIR / "notebooks" / "04_benchmark.ipynb"
    declared = reports.notebook_parameters(path)
    passed = bench.parameters(large=large, quick=quick)
    assert set(passed) <= set(declared), f"undeclared: {sorted(set(passed) - set(declared))}"
    reports.check_parameters({"target": "target", "source": "source", **passed},
                             declared=declared, notebook="04_benchmark")


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
         "-p", "no:cacheprovider", "-p", "no:randomly",  # a notebook's cells keep their order
         "-q", "--nbval-lax", "--nbval-current-env", str(notebook)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)


@pytest.mark.slow
def test_nbval_fails_a_notebook_with_a_failing_assert(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.ipynb"
    wrong.write_text((FIXTURES / "fail.ipynb").read_text())
    out = _nbval(wrong, tmp_path)
    assert out.returncode == 1, out.stdout[-2000:]
    assert "arithmetic is broken" in out.stdout


@pytest.mark.slow
def test_nbval_passes_a_right_answer(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 2"),
                                         nbformat.v4.new_code_cell("assert x + x == 4")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    right = tmp_path / "right.ipynb"
    nbformat.write(nb, str(right))
    out = _nbval(right, tmp_path)
    assert out.returncode == 0, out.stdout[-2000:]


@pytest.mark.slow
def test_outputs_of_a_notebook_run_in_place_stay_out_of_commits(tmp_path: Path) -> None:
    """`make setup` installs nbstripout as git's clean filter for notebooks."""
    if subprocess.run(["git", "rev-parse", "--git-dir"], cwd=PROJECT_DIR,
                      capture_output=True).returncode:
        pytest.skip("not a git checkout: there are no commits to keep outputs out of")
    nb = _read(NOTEBOOKS[0])
    cell = next(c for c in nb.cells if c.cell_type == "code")
    cell.outputs = [nbformat.v4.new_output("stream", text="a result an analyst saw\n")]
    cell.execution_count = 7
    ran = tmp_path / "ran.ipynb"
    nbformat.write(nb, str(ran))
    path = NOTEBOOKS[0].relative_to(PROJECT_DIR)
    blob = subprocess.run(["git", "hash-object", "-w", "--path", str(path), str(ran)],
                          cwd=PROJECT_DIR, capture_output=True, text=True, check=True).stdout.strip()
    staged = subprocess.run(["git", "cat-file", "-p", blob], cwd=PROJECT_DIR,
                            capture_output=True, text=True, check=True).stdout
    assert "a result an analyst saw" not in staged, "run 'make setup' (installs nbstripout)"
    assert '"execution_count": null' in staged
    assert '"parameters"' in staged  # the papermill tag survives the filter


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=PROJECT_DIR, capture_output=True, text=True,
                          check=True).stdout.strip()


def _staged(path: Path, content: Path) -> str:
    """What git would commit for ``path`` holding ``content``: its clean filter applied."""
    return _git("hash-object", "--path", str(path.relative_to(PROJECT_DIR)), str(content))


def _configured_filter() -> str:
    return _git("config", "filter.nbstripout.clean")


@pytest.fixture(scope="module")
def ran_candles(tmp_path_factory: pytest.TempPathFactory, server: Embedded) -> Path:
    """notebooks/05_candles.ipynb after an nbclient Run All (plotly, widgets, the kernel's
    language_info), written where JupyterLab would save it, but in a temporary folder."""
    if subprocess.run(["git", "rev-parse", "--git-dir"], cwd=PROJECT_DIR,
                      capture_output=True).returncode:
        pytest.skip("not a git checkout: there is no git status to keep clean")
    path = PROJECT_DIR / "notebooks" / "05_candles.ipynb"
    nb = _read(path)
    NotebookClient(nb, timeout=600, resources={"metadata": {"path": str(path.parent)}}).execute()
    assert nb.metadata.language_info.get("version"), "the kernel wrote no language_info"
    ran = tmp_path_factory.mktemp("ran") / path.name
    nbformat.write(nb, str(ran))
    return ran


def test_run_all_leaves_git_clean(ran_candles: Path) -> None:
    """An analyst who only ran a notebook sees a clean `git status`: the kernel's rewrite of
    metadata.language_info (Python's version, codemirror_mode) is filtered out with the
    outputs (nbstripout --extra-keys, installed by `make setup`)."""
    path = PROJECT_DIR / "notebooks" / ran_candles.name
    assert any(c.get("outputs") for c in _read(ran_candles).cells), "nothing ran"
    assert _staged(path, ran_candles) == _staged(path, path), (
        f"{path.name}: a Run All changes what git commits; run 'make setup' (git's clean "
        f"filter, now: {_configured_filter()})")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_what_a_run_writes_is_filtered_from_every_notebook(path: Path, ran_candles: Path,
                                                           tmp_path: Path) -> None:
    """What the run above wrote into 05_candles (kernel metadata, outputs, execution
    counts and timings) written into each notebook: git commits each unchanged. (One real
    run, not six: each costs 40-120 s, and nbval runs them all anyway.)"""
    ran = _read(ran_candles)
    nb = _read(path)
    nb.metadata = ran.metadata
    cell_ran = next(c for c in ran.cells if c.cell_type == "code" and c.outputs)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = cell_ran.outputs, cell_ran.execution_count
            cell.metadata = {**cell.metadata, **{k: v for k, v in cell_ran.metadata.items()
                                                 if k != "tags"}}
    out = tmp_path / path.name
    nbformat.write(nb, str(out))
    assert _staged(path, out) == _staged(path, path), (
        f"{path.name}: what a Run All writes changes what git commits; run 'make setup' "
        f"(git's clean filter, now: {_configured_filter()})")
