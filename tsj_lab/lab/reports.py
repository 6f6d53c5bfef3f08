"""Notebook runs into dated reports: papermill, offline HTML, a JSON summary, an index.

:func:`run` executes ``notebooks/NAME.ipynb`` with papermill into
``reports/YYYY-MM-DD/HHMMSS-NAME.ipynb`` and writes next to it ``.html`` (input cells
hidden, plotly.js inlined, no CDN reference) and ``.json`` (format version, environment
stamp, parameters, start/end/status and every record the notebook made with
:mod:`tsj_lab.lab.recording`), then regenerates ``reports/index.html``. A failed notebook
still gets all three files, and only then :class:`~tsj_lab.errors.ReportError` is raised.

Connections: the kernel is started with an environment of its own
(:func:`tsj_lab.config.child_env`: this process's, with the run's settings' URLs
in TSJ_DATABASE_URL / TSJ_SOURCE_URL / TSJ_POOLER_URL), so ``--target`` reaches it
without this process's environment being changed.

Secrets: papermill writes parameters into the output notebook, so a parameter that
carries a password is refused; notebooks receive connection names ('target', 'source')
and resolve them with :func:`tsj_lab.db.connections.resolve_url`. As a second line of
defence every artifact is scrubbed of the configured passwords before it is written.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat
import papermill
from jupyter_client.manager import AsyncKernelManager
from papermill.exceptions import PapermillExecutionError
from traitlets import Dict, Unicode
from traitlets.config import Config

from ..config import CONNECTION_NAMES, PROJECT_DIR, Settings, child_env, redact, validate_url
from ..errors import ReportError
from .environment import environment, scrub, scrub_text, secrets_of
from .html import REPORTS_DIR, write_html, write_index
from .recording import collect, plain

log = logging.getLogger("tsj_lab")

FORMAT_VERSION = 1
NOTEBOOKS_DIR = PROJECT_DIR / "notebooks"
_SECRET_KEY = re.compile(r"pass(word|wd)?|secret|token|api_?key|credential", re.IGNORECASE)

# -- parameters ------------------------------------------------------------------------


def notebook_path(name: str, *, notebooks_dir: Path = NOTEBOOKS_DIR) -> Path:
    """``notebooks_dir/NAME.ipynb``; an unknown name fails naming the ones there are."""
    path = Path(notebooks_dir) / (name if name.endswith(".ipynb") else f"{name}.ipynb")
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in Path(notebooks_dir).glob("*.ipynb"))) or "none"
        raise ValueError(f"notebook {name!r} not found in {notebooks_dir}; known: {known}")
    return path


def notebook_parameters(path: Path) -> dict[str, dict[str, Any]]:
    """The names, inferred types and defaults of the notebook's ``parameters`` cell."""
    return papermill.inspect_notebook(str(path))


def check_parameters(params: Mapping[str, Any], *, declared: Iterable[str] | None = None,
                     notebook: str = "notebook") -> dict[str, Any]:
    """``params`` if none is unknown or carries a secret; ``ValueError`` naming it otherwise."""
    declared = None if declared is None else set(declared)
    for key, value in params.items():
        if declared is not None and key not in declared:
            raise ValueError(f"{notebook} has no parameter {key!r}; its parameters are "
                             f"{sorted(declared)}")
        text = json.dumps(value, default=str)
        if _SECRET_KEY.search(key) or redact(text) != text:
            raise ValueError(
                f"parameter {key!r} carries a secret ({redact(text)}); papermill writes "
                "parameters into the report, so pass a connection name like 'target' and put "
                "the URL in TSJ_DATABASE_URL or TSJ_SOURCE_URL")
        if key in CONNECTION_NAMES and isinstance(value, str):
            _check_connection(key, value, notebook=notebook)
    return dict(params)


def _check_connection(key: str, value: str, *, notebook: str) -> None:
    """A connection parameter names a connection or holds a URL: known before a kernel starts."""
    if "://" in value or "=" in value:
        validate_url(value, what=f"{notebook} parameter {key!r}")
    elif value not in CONNECTION_NAMES:
        raise ValueError(f"{notebook} parameter {key!r} is {value!r}, not a connection; use "
                         f"one of {CONNECTION_NAMES} (their URLs come from TSJ_DATABASE_URL, "
                         "TSJ_SOURCE_URL, TSJ_POOLER_URL and TSJ_LIVE_URL)")


def coerce_parameters(raw: Mapping[str, str], declared: Mapping[str, Mapping[str, Any]], *,
                      notebook: str = "notebook") -> dict[str, Any]:
    """Command-line strings typed like the notebook's defaults ('5' -> 5 unless it is a str).

    A value that cannot be of its default's kind ('abc' where the default is 5, 'ES'
    where it is a list) is a ``ValueError`` here, before any data is made or a kernel
    started, rather than a ``TypeError`` deep inside the report.
    """
    out: dict[str, Any] = {}
    for key, value in raw.items():
        default = _literal(str(declared.get(key, {}).get("default", "")))
        if isinstance(default, str):
            out[key] = value  # a string parameter stays a string, even '2024' or 'None'
            continue
        literal = _literal(value)
        typed = value if literal is _NOT_A_LITERAL else literal
        kind = _kind_of(default)
        if kind and not _is_kind(typed, default):
            raise ValueError(f"{notebook} parameter {key!r} takes {kind} like {default!r}; "
                             f"got {value!r}")
        out[key] = typed
    return out


def _kind_of(default: Any) -> str | None:
    """What a default asks for, in words; None when anything goes (None, an expression)."""
    for types, words in ((bool, "True or False"), (int, "a whole number"),
                         (float, "a number"), ((list, tuple), "a list"), (dict, "a dict")):
        if isinstance(default, types):
            return words
    return None


def _is_kind(value: Any, default: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


_NOT_A_LITERAL = object()


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return _NOT_A_LITERAL


# -- a run -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """Where a run's files are and how it ended."""

    name: str
    status: str  # 'ok' or 'failed'
    notebook: Path
    html: Path
    json: Path
    summary: dict[str, Any]


def run(
    name: str,
    *,
    parameters: Mapping[str, Any] | None = None,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    reports_dir: Path = REPORTS_DIR,
    progress: bool = False,
    kernel_name: str | None = None,
    settings: Settings,
) -> Report:
    """Execute ``NAME.ipynb`` into a dated report, write HTML and JSON, refresh the index.

    Raises :class:`ReportError` after writing everything when the notebook failed.
    """
    source = notebook_path(name, notebooks_dir=notebooks_dir)
    params = check_parameters(parameters or {}, declared=notebook_parameters(source),
                              notebook=f"notebook {source.stem!r}")
    paths = claim(reports_dir, source.stem)
    started = _now()
    env = environment(str(params.get("target", "target")), settings=settings)
    error = _execute(source, paths["ipynb"], params, kernel_env=child_env(settings),
                     progress=progress, kernel_name=kernel_name)
    finished = _now()
    nb = _read_output(paths["ipynb"], source, error)
    scrub(nb, secrets=secrets_of(settings))
    nbformat.write(nb, str(paths["ipynb"]))
    summary = _summary(source.stem, paths, params, env, started, finished, error, collect(nb))
    write_html(nb, paths["html"], summary=summary)
    paths["json"].write_text(scrub_text(json.dumps(summary, indent=2, default=str),
                                         secrets_of(settings)) + "\n")
    write_index(reports_dir)
    report = Report(source.stem, summary["status"], paths["ipynb"], paths["html"], paths["json"],
                    summary)
    if error:
        raise ReportError(f"notebook {source.stem!r} failed in cell {error['cell']}: "
                          f"{error['ename']}: {error['evalue']}; see {paths['html']}")
    log.info("report %s written: %s", source.stem, paths["html"])
    return report


def claim(reports_dir: Path, name: str, *, now: datetime | None = None) -> dict[str, Path]:
    """Fresh ``reports_dir/YYYY-MM-DD/HHMMSS-NAME.{ipynb,html,json}`` paths.

    The .ipynb is created exclusively (O_EXCL), so two runs started in the same second
    get ``HHMMSS-NAME`` and ``HHMMSS-NAME-2`` instead of overwriting each other.
    """
    now = now or datetime.now(UTC)
    folder = Path(reports_dir) / now.strftime("%Y-%m-%d")
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{now.strftime('%H%M%S')}-{name}"
    for i in range(1, 1000):
        candidate = stem if i == 1 else f"{stem}-{i}"
        try:
            os.close(os.open(folder / f"{candidate}.ipynb", os.O_CREAT | os.O_EXCL | os.O_WRONLY,
                             0o644))
        except FileExistsError:
            continue
        return {ext: folder / f"{candidate}.{ext}" for ext in ("ipynb", "html", "json")}
    raise ReportError(f"999 reports named {stem!r} in {folder}; remove some")


class EnvKernelManager(AsyncKernelManager):
    """nbclient's kernel manager, starting the kernel with :attr:`kernel_env` (when set)
    instead of this process's environment.

    Set per run through traitlets config (``{"EnvKernelManager": {"kernel_env": ...}}``):
    nbclient creates the manager itself and hands it only its own config. The section
    name is the class name, which is why it has no leading underscore (traitlets skips
    such keys).
    """

    kernel_env = Dict(value_trait=Unicode(), help="the kernel's whole environment").tag(config=True)

    def start_kernel(self, *args: Any, **kw: Any) -> Any:  # Any: the base's awaitable
        if self.kernel_env:
            kw.setdefault("env", dict(self.kernel_env))
        return super().start_kernel(*args, **kw)


def _execute(source: Path, output: Path, params: dict[str, Any], *, kernel_env: Mapping[str, str],
             progress: bool, kernel_name: str | None) -> dict[str, Any] | None:
    """Run the notebook with papermill; the error (cell, name, value) or None.

    The kernel gets ``kernel_env`` as its environment: papermill hands its engine keywords
    to nbclient's client, whose ``config`` reaches the kernel manager it creates.
    """
    try:
        papermill.execute_notebook(
            str(source), str(output), parameters=params, progress_bar=progress,
            kernel_name=kernel_name, cwd=str(source.parent), log_output=False,
            # the kernel's own start-up chatter (TCP transport) is not the user's business
            extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
            kernel_manager_class=EnvKernelManager,
            config=Config({"EnvKernelManager": {"kernel_env": dict(kernel_env)}}))
    except PapermillExecutionError as exc:
        return {"cell": exc.exec_count, "ename": exc.ename, "evalue": redact(exc.evalue)}
    except Exception as exc:  # a dead kernel, a timeout: the report says so all the same
        log.warning("notebook %s did not run: %s", source.stem, redact(str(exc)))
        return {"cell": None, "ename": type(exc).__name__, "evalue": redact(str(exc))}
    return None


def _read_output(path: Path, source: Path, error: dict[str, Any] | None) -> nbformat.NotebookNode:
    """The executed notebook; when papermill never wrote it, the source with the error on top."""
    try:
        return nbformat.read(str(path), as_version=4)
    except Exception:
        nb = nbformat.read(str(source), as_version=4)
        why = f"{error['ename']}: {error['evalue']}" if error else "no output notebook"
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(f"**The notebook did not run:** `{why}`"))
        return nb


def _summary(name: str, paths: dict[str, Path], params: dict[str, Any], env: dict[str, Any],
             started: datetime, finished: datetime, error: dict[str, Any] | None,
             records: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "status": "failed" if error else "ok",
        "error": error,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "duration_s": round((finished - started).total_seconds(), 3),
        "parameters": plain(params),
        "environment": env,
        "files": {k: p.name for k, p in paths.items()},
        **records,
    }


def _now() -> datetime:
    return datetime.now(UTC)
