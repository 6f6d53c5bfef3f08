"""A report as one offline HTML page, and ``reports/index.html`` over every run.

:func:`write_html` turns an executed notebook into a page with the inputs hidden (except
a failing cell's), the records dropped and no CDN reference; :func:`write_index` lists
the runs' JSON summaries newest first with a trend chart per figure.
"""

from __future__ import annotations

import copy
import hashlib
import html
import json
import logging
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import nbformat
from nbconvert import HTMLExporter
from nbconvert.preprocessors import TagRemovePreprocessor

from . import plots
from ..config import PROJECT_DIR
from .recording import RECORD_MIME

log = logging.getLogger("tsj_lab")

REPORTS_DIR = PROJECT_DIR / "reports"

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
    status = summary.get("status", "?")
    error = summary.get("error")
    lines = [
        f"# {summary.get('name')} — {'FAILED' if status == 'failed' else status}",
        f"Run {str(summary.get('started_at'))[:19].replace('T', ' ')} UTC "
        f"({summary.get('duration_s') or 0:,.1f} s) · {server} · "
        f"tsj_lab {summary.get('environment', {}).get('tsj_lab')} "
        f"@ {str(summary.get('environment', {}).get('git_commit'))[:10]}",
        _parameters(summary.get("parameters") or {}),
    ]
    if error:
        what = html.escape(f"{error.get('ename')}: {error.get('evalue')}", quote=False)
        lines.append(f"**Error in cell {error.get('cell')}: {what}**")
    return "\n\n".join(lines)


def _parameters(params: Mapping[str, Any]) -> str:
    """The run's parameters one per row, folded (a bench passes 30: one paragraph ran on)."""
    if not params:
        return "Parameters: the notebook's defaults"
    rows = "".join(f"<tr><td><code>{html.escape(str(k))}</code></td>"
                   f"<td><code>{html.escape(repr(v))}</code></td></tr>"
                   for k, v in params.items())
    return (f"<details><summary>Parameters: {len(params)} passed (the others: the "
            f"notebook's defaults)</summary><table>{rows}</table></details>")


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
        runs=all_runs, charts=charts, generated=datetime.now(UTC).isoformat(timespec="seconds"))
    path = Path(reports_dir) / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)  # two runs finishing together: each writes a whole page
    return path
