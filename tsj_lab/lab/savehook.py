"""JupyterLab's save of a notebook that changes nothing git would commit leaves git clean.

git's clean filter (nbstripout, installed by ``make setup``) keeps a run's outputs and
the kernel's metadata out of commits, so ``git diff`` is empty after a Run All. ``git
status`` still lists the notebook as modified: it trusts the file's size in the index, and
a file with outputs is larger, so it never asks the filter. :func:`post_save`, Jupyter
server's ``FileContentsManager.post_save_hook``, re-stages a saved notebook only when its
filtered content *is* what the index holds already: the index learns the file's new size
and status is clean, while a notebook someone edited stays modified and unstaged.
``python -m tsj_lab.lab.savehook install`` (run by ``make setup``) configures every
Jupyter server of this environment to call it.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("tsj_lab")

HOOK = "tsj_lab.lab.savehook.post_save"


def post_save(model: dict[str, Any] | None = None, os_path: str = "",
              contents_manager: Any = None, **_: Any) -> None:
    """After a save: ``git add`` the notebook if that stages nothing new (see the module)."""
    path = Path(os_path)
    if path.suffix != ".ipynb" or not path.is_file():
        return
    try:
        refresh(path)
    except (OSError, subprocess.SubprocessError) as exc:  # a save must never fail for git
        log.debug("git index not refreshed for %s: %s", path, exc)


def refresh(path: Path) -> bool:
    """Stage ``path`` when its filtered content equals its index entry; whether it did."""
    folder = path.resolve().parent
    listed = _git(folder, "ls-files", "--stage", "--", path.name)
    if not listed:
        return False  # untracked, or not in a git checkout: nothing to keep clean
    staged = listed.split()[1]
    if _git(folder, "hash-object", "--path", path.name, "--", path.name) != staged:
        return False  # an edit git would commit: leave it to its author
    _git(folder, "add", "--", path.name)
    return True


def _git(cwd: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    return out.stdout.strip() if out.returncode == 0 else ""


def config_path(prefix: Path | None = None) -> Path:
    """This environment's Jupyter server config file for the hook."""
    return (Path(prefix or sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.d"
            / "tsj_lab.json")


def install(prefix: Path | None = None) -> Path:
    """Make every Jupyter server of this environment call :func:`post_save`."""
    path = config_path(prefix)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"FileContentsManager": {"post_save_hook": HOOK}}, indent=2)
                    + "\n")
    return path


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        sys.exit("usage: python -m tsj_lab.lab.savehook install")
    print(f"Jupyter servers of {sys.prefix} call {HOOK} after a save: {install()}")
