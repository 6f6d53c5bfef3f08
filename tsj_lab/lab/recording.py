"""What a notebook records for its report: metrics, checks, benchmark results, tables.

Inside a notebook, :func:`record_metric`, :func:`record_check`, :func:`record_result`
and :func:`record_table` publish a display output of the mimetype :data:`RECORD_MIME`.
The executed notebook carries them, so the same call works under papermill, nbval and
JupyterLab without environment variables or side files; :func:`collect` reads them back
from the executed notebook (the runner, :mod:`tsj_lab.lab.reports`, puts them in the JSON).
Outside a kernel the records are only kept in this process (:func:`recorded`).

Every record is checked when it is made (a label, a finite number, a whole sample count,
a known status) and its free text has passwords redacted.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from IPython import get_ipython
from IPython.display import display

from ..config import redact
from ..domain import STATUSES

if TYPE_CHECKING:
    import nbformat

RECORD_MIME = "application/vnd.tsj.record+json"
#: a record's kind and the key :func:`collect` files it under
KINDS = {"metric": "metrics", "check": "checks", "result": "results", "table": "tables"}
MAX_TABLE_ROWS = 500

_RECORDS: list[dict[str, Any]] = []


def record_metric(name: str, value: float, *, unit: str = "", n: int | None = None,
                  **params: Any) -> None:
    """One figure (``value`` in ``unit``, from ``n`` samples) under ``params``."""
    _publish({"kind": "metric", "name": _label(name), "value": _number(value, name),
              "unit": str(unit), "n": _count(n, name), "params": plain(params)})


def record_check(name: str, status: str, *, detail: str = "", **scope: Any) -> None:
    """One check's outcome: ``status`` is ok, warn, fail or unsupported."""
    if status not in STATUSES:
        raise ValueError(f"check {name!r} status {status!r} is unknown; use one of {STATUSES}")
    _publish({"kind": "check", "name": _label(name), "status": status,
              "detail": redact(str(detail)), "scope": plain(scope)})


def record_result(workload: str, params: Mapping[str, Any], *, n: int, p50_ms: float,
                  p95_ms: float, p99_ms: float, max_ms: float | None = None,
                  server_p50_ms: float | None = None, rows_per_s: float | None = None,
                  **extra: Any) -> None:
    """One benchmark workload's latency distribution from ``n`` timed samples."""
    figures = {"p50_ms": p50_ms, "p95_ms": p95_ms, "p99_ms": p99_ms, "max_ms": max_ms,
               "server_p50_ms": server_p50_ms, "rows_per_s": rows_per_s}
    numbers = {k: None if v is None else _number(v, f"{workload}.{k}") for k, v in figures.items()}
    _publish({"kind": "result", "workload": _label(workload), "params": plain(dict(params)),
              "n": _count(n, workload), **numbers, "extra": plain(extra)})


def record_table(name: str, df: Any) -> None:
    """A small table (a DataFrame); rows past :data:`MAX_TABLE_ROWS` are left out, and said so."""
    rows = json.loads(df.head(MAX_TABLE_ROWS).to_json(orient="records", date_format="iso"))
    _publish({"kind": "table", "name": _label(name), "columns": [str(c) for c in df.columns],
              "rows": rows, "total_rows": len(df), "truncated": len(df) > MAX_TABLE_ROWS})


def recorded() -> list[dict[str, Any]]:
    """The records made in this process (a kernel's own view; reports use :func:`collect`)."""
    return list(_RECORDS)


def collect(nb: nbformat.NotebookNode) -> dict[str, list[dict[str, Any]]]:
    """Every record in an executed notebook's outputs, by kind, in the order made."""
    found: dict[str, list[dict[str, Any]]] = {key: [] for key in KINDS.values()}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            record = out.get("data", {}).get(RECORD_MIME)
            kind = record.get("kind") if isinstance(record, dict) else None
            if kind in KINDS:
                found[KINDS[kind]].append({k: v for k, v in record.items() if k != "kind"})
    return found


def plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-safe values (numpy scalars, timestamps...) with any password redacted."""
    return json.loads(redact(json.dumps(dict(values), default=str)))


def _publish(record: dict[str, Any]) -> None:
    _RECORDS.append(record)
    shell = get_ipython()
    # Only a kernel has somewhere to put it; a plain interpreter keeps the list above.
    if shell is not None and getattr(shell, "kernel", None) is not None:
        display({RECORD_MIME: record}, raw=True)


def _label(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"record name {name!r} is empty; give it a short label like 'rows_per_s'")
    return name


def _number(value: Any, name: str) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"record {name!r} value {value!r} is not a number") from None
    return x if math.isfinite(x) else None  # JSON has no NaN: scripts would choke on it


def _count(n: int | None, name: str) -> int | None:
    if n is None:
        return None
    if int(n) != n or n < 0:
        raise ValueError(f"record {name!r} sample count n={n!r} is invalid; "
                         "use a whole number >= 0")
    return int(n)
