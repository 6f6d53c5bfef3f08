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
import copy
import hashlib
import html
import json
import logging
import os
import platform
import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jinja2
import nbformat
import papermill
from jupyter_client.manager import AsyncKernelManager
from nbconvert import HTMLExporter
from nbconvert.preprocessors import TagRemovePreprocessor
from papermill.exceptions import PapermillExecutionError
from traitlets import Dict, Unicode
from traitlets.config import Config

from . import plots
from ..config import CONNECTION_NAMES, PROJECT_DIR, Settings, child_env, redact, validate_url
from ..db.connections import resolve_url
from ..db import Endpoint, probe_url, shown
from ..domain import PRODUCTION
from ..errors import ReportError, TsjError
from .recording import RECORD_MIME, collect, plain

log = logging.getLogger("tsj_lab")

FORMAT_VERSION = 1
NOTEBOOKS_DIR = PROJECT_DIR / "notebooks"
REPORTS_DIR = PROJECT_DIR / "reports"
_SECRET_KEY = re.compile(r"pass(word|wd)?|secret|token|api_?key|credential", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

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
                         "TSJ_SOURCE_URL and TSJ_POOLER_URL)")


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
    settings: Settings | None = None,
) -> Report:
    """Execute ``NAME.ipynb`` into a dated report, write HTML and JSON, refresh the index.

    Raises :class:`ReportError` after writing everything when the notebook failed.
    """
    source = notebook_path(name, notebooks_dir=notebooks_dir)
    params = check_parameters(parameters or {}, declared=notebook_parameters(source),
                              notebook=f"notebook {source.stem!r}")
    settings = settings or Settings.load()
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
    paths["json"].write_text(_scrub_text(json.dumps(summary, indent=2, default=str),
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


# -- environment stamp and secrets -------------------------------------------------------


def environment(target: str = "target", *, settings: Settings | None = None) -> dict[str, Any]:
    """tsj_lab version, git commit, machine, and the target's versions and license."""
    try:
        tsj_version = version("tsj-lab")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        tsj_version = None
    return {
        "tsj_lab": tsj_version,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        # benchmarks share the cores with whatever else runs: say how busy they were
        "load_average": list(os.getloadavg()),
        "database": _database(target, settings=settings),
    }


def _database(target: str, *, settings: Settings | None) -> dict[str, Any]:
    """The probe of connection ``target``; its error, redacted, when it cannot be reached."""
    try:
        url = resolve_url(target, settings=settings)
        caps = probe_url(url).as_dict()
        return {"connection": target, "url": _safe_url(url)} | caps | {
            "production": PRODUCTION.versus(caps["postgres_version"], caps["timescaledb_version"])}
    except (TsjError, ValueError) as exc:
        return {"connection": target, "error": redact(str(exc))}


def _safe_url(url: Endpoint | str) -> str:
    """``url`` without password and query (a passfile path is nobody's business)."""
    p = urlsplit(shown(url))
    return f"{p.scheme}://{p.netloc}{p.path}"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=PROJECT_DIR, capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def secrets_of(settings: Settings) -> list[str]:
    """The passwords in the configured URLs (URL userinfo or a ``password=`` parameter)."""
    found = []
    for url in (settings.target_url, settings.source_url):
        if not url:
            continue
        p = urlsplit(url)
        found += [p.password or "", *(v for k, v in parse_qsl(p.query) if k == "password")]
    # very short "passwords" would blank out ordinary text; redact() still catches URLs
    return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)


def scrub(nb: nbformat.NotebookNode, *, secrets: list[str]) -> None:
    """Remove passwords from every source, output and metadata string of ``nb`` (in place)."""
    nb.metadata = _scrub_tree(nb.metadata, secrets, text=True)
    for cell in nb.cells:
        cell.source = _scrub_text(cell.source, secrets, text=True)
        for out in cell.get("outputs", []):
            for key in ("text", "evalue", "traceback"):
                if key in out:
                    out[key] = _scrub_tree(out[key], secrets, text=True)
            for mime, value in out.get("data", {}).items():
                # HTML and JS (plotly.js) only lose literal secrets: redact()'s
                # 'password=' pattern could match inside minified code
                out["data"][mime] = _scrub_tree(value, secrets, text=mime.startswith("text/plain"))


def _scrub_tree(value: Any, secrets: list[str], *, text: bool) -> Any:
    if isinstance(value, str):
        return _scrub_text(value, secrets, text=text)
    if isinstance(value, list):
        return [_scrub_tree(v, secrets, text=text) for v in value]
    if isinstance(value, dict):
        return type(value)({k: _scrub_tree(v, secrets, text=text) for k, v in value.items()})
    return value


def _scrub_text(value: str, secrets: list[str], *, text: bool = True) -> str:
    for secret in secrets:
        value = value.replace(secret, "***")
    return redact(value) if text else value


# -- HTML ----------------------------------------------------------------------------------

# The lab template with every CDN reference removed: require.js (which would also make
# the inlined plotly.js register as an AMD module instead of window.Plotly), MathJax,
# mermaid and the widget manager. The report must open offline.
_HTML_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""
_CDN_SCRIPT = re.compile(r"<script[^>]*\bsrc=[\"']https?://[^\"']*[\"'][^>]*>\s*</script>", re.I)
_HIDE_INPUT = "tsj-hide-input"


def write_html(nb: nbformat.NotebookNode, path: Path, *,
               summary: Mapping[str, Any] | None = None) -> Path:
    """``nb`` as one offline HTML file: inputs hidden except a failing cell's, records dropped."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        _prepare_cell(cell)
    if summary is not None:
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(_heading(summary)))
    exporter = HTMLExporter(template_name="lab", raw_template=_HTML_TEMPLATE,
                            exclude_input_prompt=True, exclude_output_prompt=True)
    exporter.register_preprocessor(
        TagRemovePreprocessor(remove_input_tags={_HIDE_INPUT}), enabled=True)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": path.stem}})
    path.write_text(body, encoding="utf-8")
    return path


def _prepare_cell(cell: nbformat.NotebookNode) -> None:
    if cell.cell_type != "code":
        return
    outputs = []
    for out in cell.get("outputs", []):
        data = out.get("data")
        if data is not None:
            data.pop(RECORD_MIME, None)
            if not data:
                continue  # a record: it is in the JSON, not for reading
            if "text/html" in data:
                data["text/html"] = _CDN_SCRIPT.sub("", "".join(data["text/html"]))
        outputs.append(out)
    cell.outputs = outputs
    # the code stays visible only where it failed, next to its traceback
    if not any(o.get("output_type") == "error" for o in outputs):
        cell.metadata.setdefault("tags", []).append(_HIDE_INPUT)


def _heading(summary: Mapping[str, Any]) -> str:
    db = summary.get("environment", {}).get("database", {})
    server = (f"PostgreSQL {db.get('postgres_version')}, TimescaleDB "
              f"{db.get('timescaledb_version') or '-'} ({db.get('license') or 'no license'}); "
              f"{db.get('production') or 'production not compared'}"
              if "postgres_version" in db else f"database not probed: {db.get('error', '-')}")
    params = ", ".join(f"`{k}={v!r}`" for k, v in summary.get("parameters", {}).items())
    params = params or "defaults"
    params = html.escape(params, quote=False)
    status = summary.get("status", "?")
    error = summary.get("error")
    lines = [
        f"# {summary.get('name')} — {'FAILED' if status == 'failed' else status}",
        f"Run {str(summary.get('started_at'))[:19]} UTC "
        f"({summary.get('duration_s')} s) · {server} · "
        f"tsj_lab {summary.get('environment', {}).get('tsj_lab')} "
        f"@ {str(summary.get('environment', {}).get('git_commit'))[:10]}",
        f"Parameters: {params}",
    ]
    if error:
        what = html.escape(f"{error.get('ename')}: {error.get('evalue')}", quote=False)
        lines.append(f"**Error in cell {error.get('cell')}: {what}**")
    return "\n\n".join(lines)


# -- the index -------------------------------------------------------------------------------


def runs(reports_dir: Path = REPORTS_DIR) -> list[dict[str, Any]]:
    """Every run's JSON summary under ``reports_dir``, newest first, with its folder."""
    found = []
    for path in Path(reports_dir).glob("*/*.json"):
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError):
            log.warning("skipping unreadable report summary %s", path)
            continue
        if isinstance(summary, dict) and summary.get("format_version"):
            found.append(summary | {"folder": path.parent.name, "stem": path.stem})
    return sorted(found, key=lambda s: (s.get("started_at", ""), s["stem"]), reverse=True)


def trend_series(all_runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Points per chart: each metric, and each workload's p50/p95, per notebook, over runs.

    Runs of one notebook with other parameters (the tiny defaults, a quick and a full
    bench) measured other things: each parameter set gets its own charts, titled by the
    parameters that differ, so a line never joins a tiny run to a full one.
    """
    variants = _variants(all_runs)
    charts: dict[str, list[dict[str, Any]]] = {}
    for summary in all_runs:
        at, name = summary.get("started_at"), variants[id(summary)]
        for m in summary.get("metrics", []):
            title = f"{name}: {m['name']}" + (f" ({m['unit']})" if m.get("unit") else "")
            charts.setdefault(title, []).append(
                {"at": at, "series": _series_label(m.get("params", {})), "value": m.get("value"),
                 "n": m.get("n")})
        for r in summary.get("results", []):
            for stat in ("p50_ms", "p95_ms"):
                charts.setdefault(f"{name}: {r['workload']} latency (ms)", []).append(
                    {"at": at, "series": f"{stat} {_series_label(r.get('params', {}))}".strip(),
                     "value": r.get(stat), "n": r.get("n")})
    return charts


def _variants(all_runs: list[dict[str, Any]]) -> dict[int, str]:
    """Each run's chart prefix: its notebook, and its parameter set's tag when siblings differ."""
    by_name: dict[Any, list[dict[str, Any]]] = {}
    for summary in all_runs:
        by_name.setdefault(summary.get("name"), []).append(summary)
    out: dict[int, str] = {}
    for name, group in by_name.items():
        tags = [parameter_tag(s) for s in group]
        for summary, tag in zip(group, tags):
            out[id(summary)] = f"{name} {tag}" if len(set(tags)) > 1 else str(name)
    return out


def parameter_tag(summary: Mapping[str, Any]) -> str:
    """A short tag of a run's parameters ('#3fa2c1'): runs with the same tag are comparable."""
    text = json.dumps(summary.get("parameters") or {}, sort_keys=True, default=str)
    return "#" + hashlib.sha1(text.encode()).hexdigest()[:6]


def _parameter_text(summary: Mapping[str, Any]) -> str:
    params = summary.get("parameters") or {}
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "defaults"


def _series_label(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "value"


def write_index(reports_dir: Path = REPORTS_DIR) -> Path:
    """``reports_dir/index.html``: runs newest first, then a trend chart per figure.

    A figure gets a chart once two runs recorded it.
    """
    all_runs = runs(reports_dir)
    for summary in all_runs:
        summary["tag"], summary["parameter_text"] = parameter_tag(summary), _parameter_text(summary)
    charts: list[str] = []
    for title, points in sorted(trend_series(all_runs).items()):
        if len({p["at"] for p in points}) < 2:
            continue  # one run is a point, not a trend: its figures are in its report
        fig = plots.trend(points, title=title)
        # plotly.js inlined once, in the first chart: the page opens offline
        charts.append(fig.to_html(full_html=False, include_plotlyjs=not charts,
                                  include_mathjax=False, default_height=320))
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                             autoescape=True)
    page = env.get_template("index.html.j2").render(
        runs=all_runs, charts=charts, generated=_now().isoformat(timespec="seconds"))
    path = Path(reports_dir) / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)  # two runs finishing together: each writes a whole page
    return path
