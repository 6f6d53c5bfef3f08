"""The ingest benchmark: the same ticks loaded by psql \\copy and by tsj's binary COPY.

Each method loads the same rows into a fresh scratch hypertable, in alternating turns;
the CSV and the pre-encoded buffers are written before any clock starts.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import statistics
import subprocess
import tempfile
import time as _time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from .. import queries
from ..config import Settings, redact
from ..data.copybin import Encoded, encode
from ..db import Endpoint, connect, url_text
from ..domain import DEFAULT_SYMBOLS, TickSpec
from ..server.cluster import from_settings
from ..errors import ConfigError, TsjError
from ..data.generate import default_workers, write_parts
from ..data.prices import Part, columns, frame, plan

log = logging.getLogger("tsj_lab")

BENCH_TABLE = "tsj_ingest_bench"


#: the loads of one turn, in the order they run: psql \copy of a CSV written beforehand;
#: tsj binary COPY of buffers encoded beforehand (the like-for-like figure); tsj streamed
#: (generate + encode + load, as `tsj generate` does) over `workers` connections; and over 1
INGEST_METHODS = ("psql", "pre_encoded", "streamed", "streamed_1")


@dataclass(frozen=True)
class IngestResult:
    """The same rows loaded into the same fresh hypertable by each of :data:`INGEST_METHODS`,
    ``repeats`` times in alternating turns; the figures are medians over the turns."""

    rows: int
    workers: int
    seconds: Mapping[str, tuple[float, ...]]  # per method: each turn's load time, in order
    loaded: Mapping[str, tuple[int, ...]]  # per method: rows in the table after each load

    @property
    def repeats(self) -> int:
        return len(self.seconds["psql"])

    def rows_per_s(self, method: str) -> float:
        """The median over the turns of ``method``'s rows/s."""
        return statistics.median(self.rows / s for s in self.seconds[method])

    def ratio(self, method: str, base: str = "psql") -> float:
        """Median rows/s of ``method`` over median rows/s of ``base``."""
        return self.rows_per_s(method) / self.rows_per_s(base)

    @property
    def pre_encoded_rows_per_s(self) -> float:
        return self.rows_per_s("pre_encoded")

    @property
    def copy_rows_per_s(self) -> float:  # streamed, `workers` connections
        return self.rows_per_s("streamed")

    @property
    def copy_1_rows_per_s(self) -> float:  # streamed, 1 connection
        return self.rows_per_s("streamed_1")

    @property
    def psql_rows_per_s(self) -> float:
        return self.rows_per_s("psql")

    @property
    def copy_s(self) -> float:
        return statistics.median(self.seconds["streamed"])

    @property
    def copy_1_s(self) -> float:
        return statistics.median(self.seconds["streamed_1"])

    @property
    def psql_s(self) -> float:
        return statistics.median(self.seconds["psql"])

    @property
    def speedup(self) -> float:
        """The goal's ratio: pre-encoded binary COPY over psql \\copy (both inputs ready)."""
        return self.ratio("pre_encoded")

    def as_dict(self) -> dict[str, float | int]:
        """Medians over ``repeats`` turns; ``copy_*`` are the streamed loads."""
        return {"rows": self.rows, "workers": self.workers, "repeats": self.repeats,
                "psql_rows_per_s": round(self.psql_rows_per_s),
                "pre_encoded_rows_per_s": round(self.pre_encoded_rows_per_s),
                "copy_rows_per_s": round(self.copy_rows_per_s),
                "copy_1_rows_per_s": round(self.copy_1_rows_per_s),
                "speedup_vs_psql": round(self.speedup, 2),
                "streamed_speedup_vs_psql": round(self.ratio("streamed"), 2)}


#: what the ingest benchmark loads unless told otherwise: a day of the four default symbols
DEFAULT_SPEC = TickSpec(DEFAULT_SYMBOLS, dt.date(2024, 1, 2))


def ingest_benchmark(
    url: Endpoint | str,
    spec: TickSpec = DEFAULT_SPEC,
    *,
    workers: int | None = None,
    psql: str | None = None,
    settings: Settings | None = None,
    repeats: int = 3,
) -> IngestResult:
    """Load the same ticks by each of :data:`INGEST_METHODS`, ``repeats`` turns of all of
    them in that order, into a scratch hypertable emptied and CHECKPOINTed before each load.

    The CSV and the pre-encoded buffers are written before any clock starts. ``psql``
    None: the embedded server's under ``settings.home``,
    else the one on PATH.
    """
    if repeats < 1:
        raise ValueError(f"repeats={repeats} is out of range; use 1 or more")
    parts = plan(spec)
    workers = default_workers() if workers is None else workers
    if psql is None:
        if settings is None:
            raise ValueError("ingest_benchmark needs psql (a path) or settings (to find the "
                             "embedded server's psql); pass settings=Settings.load()")
        psql = _psql_binary(settings)
    with tempfile.TemporaryDirectory(prefix="tsj-ingest-") as tmp:
        csv = os.path.join(tmp, "ticks.csv")
        rows = _write_csv(parts, csv)
        loads = _ingest_loads(url, parts, [encode(p) for p in parts], csv, psql, workers)
        _bench_table(url, create=True)
        try:
            runs = _turns(url, loads, repeats)
        finally:
            _bench_table(url, create=False)
    result = IngestResult(rows, workers, {m: tuple(s for s, _ in r) for m, r in runs.items()},
                          {m: tuple(n for _, n in r) for m, r in runs.items()})
    _check_loaded(result)
    log.info("ingest benchmark: %s", result.as_dict())
    return result


def _check_loaded(result: IngestResult) -> None:
    """Every load must have left all the rows: a rate of a partial load means nothing."""
    wrong = {m: ns for m, ns in result.loaded.items() if set(ns) != {result.rows}}
    if wrong:
        raise TsjError(f"ingest benchmark: loads left {wrong} rows, not {result.rows} each; "
                       f"is something else writing to {BENCH_TABLE}?")


def _ingest_loads(url: Endpoint | str, parts: Sequence[Part], encoded: Sequence[Encoded], csv: str,
                  psql: str, workers: int) -> dict[str, Any]:
    """Each method's load, a callable of no argument."""
    def tsj(items: Sequence[Part | Encoded], n: int) -> Any:
        return lambda: write_parts(url, items, table=BENCH_TABLE, workers=n, progress=False)

    return {"psql": lambda: _psql_copy(url, psql, csv), "pre_encoded": tsj(encoded, workers),
            "streamed": tsj(parts, workers), "streamed_1": tsj(parts, 1)}


def _turns(url: Endpoint | str, loads: Mapping[str, Any], repeats: int) -> dict[str, list[tuple[float, int]]]:
    """``repeats`` turns of every load in :data:`INGEST_METHODS` order: (seconds, rows) each."""
    runs: dict[str, list[tuple[float, int]]] = {m: [] for m in INGEST_METHODS}
    for _ in range(repeats):
        for method in INGEST_METHODS:
            runs[method].append(_timed(loads[method], url))
    return runs


def _write_csv(parts: Sequence[Part], path: str) -> int:
    rows = 0
    for i, part in enumerate(parts):
        df = frame(columns(part))
        df.to_csv(path, mode="a" if i else "w", header=not i, index=False, float_format="%.8f")
        rows += len(df)
    return rows


def _timed(load: Any, url: Endpoint | str) -> tuple[float, int]:
    """Seconds one load takes into the emptied scratch table, and the rows it left there."""
    with connect(url, autocommit=True) as conn:
        conn.execute(queries.compose("ingest.truncate", table=BENCH_TABLE))
        try:  # each load starts without the previous one's dirty pages
            conn.execute(queries.text("ingest.checkpoint"))
        except psycopg.errors.InsufficientPrivilege:
            log.info("no CHECKPOINT privilege on the target; loads may overlap flushes")
    t0 = _time.perf_counter()
    load()
    seconds = _time.perf_counter() - t0
    with connect(url, autocommit=True) as conn:
        row = conn.execute(queries.compose("ingest.count", table=BENCH_TABLE)).fetchone()
    return seconds, int(row[0]) if row else 0


def _bench_table(url: Endpoint | str, *, create: bool) -> None:
    with connect(url, autocommit=True) as conn:
        if create:
            conn.execute(queries.compose("schema.create_tick_table", table=BENCH_TABLE))
            conn.execute(queries.text("ingest.hypertable"), {"name": BENCH_TABLE})
            conn.execute(queries.compose("ingest.index", table=BENCH_TABLE,
                                         index=BENCH_TABLE + "_idx"))
        else:
            conn.execute(queries.compose("ingest.drop_table", table=BENCH_TABLE))


def _psql_binary(settings: Settings) -> str:
    """The embedded server's psql (``settings``' home and edition), else the PATH's."""
    bundled = from_settings(settings).bin / "psql"
    found = str(bundled) if bundled.is_file() else shutil.which("psql")
    if not found:
        raise ConfigError(f"psql not found in {bundled.parent} nor on PATH; run 'tsj db setup' "
                          "or install postgresql-client")
    return found


def _psql_copy(url: Endpoint | str, psql: str, csv: str) -> None:
    # psql takes one backslash command per -c: the statement without its doc comments
    code = [ln for ln in queries.text("ingest.psql_copy").splitlines() if not ln.startswith("--")]
    with connect(url) as conn:
        meta = sql.SQL("\n".join(code)).format(table=sql.Identifier(BENCH_TABLE)).as_string(conn)
    with open(csv, "rb") as fh:
        res = subprocess.run([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url_text(url), "-c", meta],
                             stdin=fh, capture_output=True, text=True)
    if res.returncode:
        raise TsjError(f"psql \\copy failed: {redact(res.stderr.strip())}; check {psql}")
