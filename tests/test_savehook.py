"""A notebook saved after a Run All leaves `git status` clean; an edited one stays modified.

A scratch git repository with the clean filter `make setup` installs (nbstripout, cell ids
kept, language_info dropped), and Jupyter server's own FileContentsManager saving into
it with the hook configured as `python -m tsj_lab.lab.savehook install` configures it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
from jupyter_server.services.contents.filemanager import FileContentsManager

from tsj_lab.lab import savehook

FILTER = f'"{sys.executable}" -m nbstripout --keep-id --extra-keys metadata.language_info'


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                          check=True).stdout.strip()


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    _git(repo, "init", "-q")
    for key, value in (("filter.nbstripout.clean", FILTER), ("filter.nbstripout.smudge", "cat"),
                       ("filter.nbstripout.required", "true"), ("user.email", "t@example.com"),
                       ("user.name", "t")):
        _git(repo, "config", key, value)
    (repo / ".gitattributes").write_text("*.ipynb filter=nbstripout\n")
    (repo / ".gitignore").write_text(".ipynb_checkpoints/\n")  # as the project's
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    nbformat.write(nb, str(repo / "notebooks" / "n.ipynb"))
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "a notebook")
    return repo


def _ran(repo: Path, *, source: str = "print(6 * 7)") -> dict:
    """What JupyterLab saves after a Run All: outputs, a count, the kernel's language_info."""
    nb = nbformat.read(str(repo / "notebooks" / "n.ipynb"), as_version=4)
    nb.cells[0].source = source
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", text="42\n" * 1000)]
    nb.cells[0].execution_count = 1
    nb.metadata["language_info"] = {"name": "python", "version": "3.11.7",
                                    "codemirror_mode": {"name": "ipython", "version": 3}}
    return json.loads(nbformat.writes(nb))


def test_a_save_after_run_all_leaves_git_status_clean(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    manager = FileContentsManager(root_dir=str(repo), post_save_hook=savehook.HOOK)
    manager.save({"type": "notebook", "format": "json", "content": _ran(repo)}, "notebooks/n.ipynb")
    assert "42" in (repo / "notebooks" / "n.ipynb").read_text()  # the outputs stay on disk
    assert _git(repo, "status", "--porcelain") == ""
    # without the hook, git status trusts the file's new size: modified, though diff is empty
    manager = FileContentsManager(root_dir=str(repo))
    ran = _ran(repo)
    ran["cells"][0]["outputs"][0]["text"] = "42\n" * 2000
    manager.save({"type": "notebook", "format": "json", "content": ran}, "notebooks/n.ipynb")
    assert _git(repo, "status", "--porcelain") == "M notebooks/n.ipynb"
    assert _git(repo, "diff") == ""


def test_an_edited_notebook_stays_modified_and_unstaged(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    manager = FileContentsManager(root_dir=str(repo), post_save_hook=savehook.HOOK)
    edited = _ran(repo, source="print(6 * 9)")
    manager.save({"type": "notebook", "format": "json", "content": edited}, "notebooks/n.ipynb")
    assert _git(repo, "status", "--porcelain") == "M notebooks/n.ipynb"  # " M": not staged
    assert _git(repo, "diff", "--cached") == ""
    savehook.post_save(os_path=str(tmp_path / "elsewhere.ipynb"))  # not a file: no error


def test_install_configures_jupyter_servers(tmp_path: Path) -> None:
    path = savehook.install(tmp_path)
    assert path == tmp_path / "etc" / "jupyter" / "jupyter_server_config.d" / "tsj_lab.json"
    assert json.loads(path.read_text()) == {"FileContentsManager": {"post_save_hook": savehook.HOOK}}
