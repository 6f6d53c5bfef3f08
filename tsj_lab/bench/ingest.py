"""The ingest benchmark: the same ticks loaded by psql \\copy and by tsj's binary COPY.

Each method loads the same rows into a fresh scratch hypertable, in alternating turns;
the CSV and the pre-encoded buffers are written before any clock starts. On the timescale
license, with days past the compression horizon, two more: the loader's history path
(straight into compressed chunks, verified) against psql \\copy followed by the
compression job. Each load's WAL bytes and the table's size after it are kept beside its
time (:func:`load_table`, :func:`record_loads`).
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
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import psycopg
from psycopg import sql

from .. import queries
from ..config import Settings, redact
from ..data.columnstore import DIRECT_SETTINGS
from ..data.copybin import Encoded, encode
from ..db import Endpoint, capabilities, connect, scalar, url_text
from ..domain import DEFAULT_SYMBOLS, TickSpec
from ..server.cluster import from_settings
from ..errors import ConfigError, TsjError
from ..data.generate import default_workers, write_parts
from ..data.prices import Part, columns, frame, plan
from ..lab import recording

log = logging.getLogger("tsj_lab")

BENCH_TABLE = "tsj_ingest_bench"


#: the loads of one turn, in the order they run: psql \copy of a CSV written beforehand;
#: tsj binary COPY of buffers encoded beforehand (the like-for-like figure); tsj streamed
#: (generate + encode + load, as `tsj generate` does) over `workers` connections; and over 1;
#: then, where the server compresses (:data:`HISTORY_METHODS`), the loader's history path
#: (pre-encoded, compressed on COPY, verified) and psql \copy followed by the compression job
INGEST_METHODS = ("psql", "pre_encoded", "streamed", "streamed_1", "history_direct",
                  "psql_then_compress")
HISTORY_METHODS = ("history_direct", "psql_then_compress")
#: the report's load paths (`load *` metrics) and the method measuring each
LOAD_PATHS = {"psql_copy": "psql", "tsj_copy": "pre_encoded", "history_direct": "history_direct",
              "psql_copy_then_compress": "psql_then_compress"}
#: issue 24's goals: a path's rows/s at least this many times its base path's
LOAD_GOALS = {"tsj_copy": ("psql_copy", 1.5), "history_direct": ("psql_copy_then_compress", 3.0)}


@dataclass(frozen=True)
class IngestResult:
    """The same rows loaded into the same fresh hypertable by each of :data:`INGEST_METHODS`,
    ``repeats`` times in alternating turns; the figures are medians over the turns."""

    rows: int
    workers: int
    seconds: Mapping[str, tuple[float, ...]]  # per method: each turn's load time, in order
    loaded: Mapping[str, tuple[int, ...]]  # per method: rows in the table after each load
    wal_bytes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # WAL of each load
    table_bytes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # size after it
    statuses: Mapping[str, tuple[tuple[int, ...], ...]] = field(default_factory=dict)  # chunks'

    @property
    def methods(self) -> tuple[str, ...]:
        """The methods this run measured, in :data:`INGEST_METHODS` order."""
        return tuple(m for m in INGEST_METHODS if m in self.seconds)

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
        out: dict[str, float | int] = {
            "rows": self.rows, "workers": self.workers, "repeats": self.repeats,
            "psql_rows_per_s": round(self.psql_rows_per_s),
            "pre_encoded_rows_per_s": round(self.pre_encoded_rows_per_s),
            "copy_rows_per_s": round(self.copy_rows_per_s),
            "copy_1_rows_per_s": round(self.copy_1_rows_per_s),
            "speedup_vs_psql": round(self.speedup, 2),
            "streamed_speedup_vs_psql": round(self.ratio("streamed"), 2)}
        if "history_direct" in self.seconds:
            out.update({"history_direct_rows_per_s": round(self.rows_per_s("history_direct")),
                        "psql_then_compress_rows_per_s": round(self.rows_per_s("psql_then_compress")),
                        "history_speedup": round(self.ratio("history_direct", "psql_then_compress"), 2)})
        return out


#: what the ingest benchmark loads unless told otherwise: a day of the four default symbols
DEFAULT_SPEC = TickSpec(DEFAULT_SYMBOLS, dt.date(2024, 1, 2))


def ingest_benchmark(
    url: Endpoint | str,
    spec: TickSpec = DEFAULT_SPEC,
    *,
    workers: int | None = None,
    psql: str | None = None,
    settings: Settings | None = None,
    repeats: int = 5,
    history: bool | None = None,
) -> IngestResult:
    """Load the same ticks by each of :data:`INGEST_METHODS`, ``repeats`` turns of all of
    them in that order, into a scratch hypertable emptied and CHECKPOINTed before each load.

    The CSV and the pre-encoded buffers are written before any clock starts. ``psql``
    None: the embedded server's under ``settings.home``,
    else the one on PATH. ``history`` (None: where the server can) adds
    :data:`HISTORY_METHODS`: the scratch table then has the story's columnstore settings
    and compression policy, and ``spec``'s days must be past its 30-day horizon.
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
        history = _history_possible(url, spec) if history is None else history
        job = _bench_table(url, create=True, compress=history)
        try:
            loads = _ingest_loads(url, parts, [encode(p) for p in parts], csv, psql, workers, job)
            if not history:
                loads = {m: f for m, f in loads.items() if m not in HISTORY_METHODS}
            runs = _turns(url, loads, repeats)
        finally:
            _bench_table(url, create=False)
    result = IngestResult(rows, workers, *(
        {m: tuple(getattr(x, f) for x in r) for m, r in runs.items()}
        for f in ("seconds", "rows", "wal", "size", "statuses")))
    _check_loaded(result)
    log.info("ingest benchmark: %s", result.as_dict())
    return result


def _check_loaded(result: IngestResult) -> None:
    """Every load must have left all the rows (a rate of a partial load means nothing), and
    a history load compressed chunks only, none unordered or partial."""
    wrong = {m: ns for m, ns in result.loaded.items() if set(ns) != {result.rows}}
    if wrong:
        raise TsjError(f"ingest benchmark: loads left {wrong} rows, not {result.rows} each; "
                       f"is something else writing to {BENCH_TABLE}?")
    for method in HISTORY_METHODS:
        bad = [s for s in result.statuses.get(method, ()) if not s or set(s) != {1}]
        if bad:
            raise TsjError(f"ingest benchmark: {method} left chunks of status {bad}, not all "
                           "1 (compressed; 2 unordered, 8 partial)")


def _history_possible(url: Endpoint | str, spec: TickSpec) -> bool:
    """Whether the server compresses (timescale license, direct compress COPY) and every
    day of ``spec`` is past the scratch table's 30-day compression horizon."""
    with connect(url, autocommit=True) as conn:
        names = {r[0] for r in conn.execute(queries.text("generate.direct_settings"))}
        now = conn.execute(queries.text("generate.server_now")).fetchone()
        caps = capabilities(url, conn)
    end = dt.datetime.combine(spec.start, dt.time(), dt.UTC) + dt.timedelta(days=spec.days)
    return (caps.license == "timescale" and set(DIRECT_SETTINGS) <= names and now is not None
            and end <= now[0] - dt.timedelta(days=30))


def _ingest_loads(url: Endpoint | str, parts: Sequence[Part], encoded: Sequence[Encoded], csv: str,
                  psql: str, workers: int, job: int | None) -> dict[str, Any]:
    """Each method's load, a callable of no argument."""
    def tsj(items: Sequence[Part | Encoded], n: int, direct: bool = False) -> Any:
        return lambda: write_parts(url, items, table=BENCH_TABLE, workers=n, progress=False,
                                   direct=direct)

    def psql_then_compress() -> None:
        _psql_copy(url, psql, csv)
        with connect(url, autocommit=True) as conn:
            conn.execute(queries.text("policies.run_job"), {"job": job})

    return {"psql": lambda: _psql_copy(url, psql, csv), "pre_encoded": tsj(encoded, workers),
            "streamed": tsj(parts, workers), "streamed_1": tsj(parts, 1),
            "history_direct": tsj(encoded, workers, direct=True),
            "psql_then_compress": psql_then_compress}


@dataclass(frozen=True)
class _Sample:
    """One timed load: seconds, rows left, WAL bytes written, table bytes, chunk statuses."""

    seconds: float
    rows: int
    wal: int
    size: int
    statuses: tuple[int, ...]


def _turns(url: Endpoint | str, loads: Mapping[str, Any], repeats: int) -> dict[str, list[_Sample]]:
    """``repeats`` turns of every load, turn i starting at the i-th method of
    :data:`INGEST_METHODS` (as ``bench.time_interleaved`` does): no method always follows
    the same one (the compression job, say) on a busy machine."""
    runs: dict[str, list[_Sample]] = {m: [] for m in INGEST_METHODS if m in loads}
    order = list(runs)
    for i in range(repeats):
        for method in order[i % len(order):] + order[:i % len(order)]:
            runs[method].append(_timed(loads[method], url))
    return runs


def _write_csv(parts: Sequence[Part], path: str) -> int:
    rows = 0
    for i, part in enumerate(parts):
        df = frame(columns(part))
        df.to_csv(path, mode="a" if i else "w", header=not i, index=False, float_format="%.8f")
        rows += len(df)
    return rows


def _timed(load: Any, url: Endpoint | str) -> _Sample:
    """One load into the emptied scratch table: its seconds, and (untimed) the rows, WAL
    bytes, table bytes and chunk statuses it left."""
    with connect(url, autocommit=True) as conn:
        conn.execute(queries.compose("ingest.truncate", table=BENCH_TABLE))
        try:  # each load starts without the previous one's dirty pages
            conn.execute(queries.text("ingest.checkpoint"))
        except psycopg.errors.InsufficientPrivilege:
            log.info("no CHECKPOINT privilege on the target; loads may overlap flushes")
        lsn = scalar(conn, queries.text("ingest.wal_lsn"))
    t0 = _time.perf_counter()
    load()
    seconds = _time.perf_counter() - t0
    with connect(url, autocommit=True) as conn:
        wal = scalar(conn, queries.text("ingest.wal_since"), {"lsn": lsn})
        size = scalar(conn, queries.text("ingest.size"), {"name": BENCH_TABLE})
        statuses = scalar(conn, queries.text("ingest.chunk_status"), {"name": BENCH_TABLE})
        rows = scalar(conn, queries.compose("ingest.count", table=BENCH_TABLE))
    return _Sample(seconds, int(rows or 0), int(wal or 0), int(size or 0), tuple(statuses or ()))


def _bench_table(url: Endpoint | str, *, create: bool, compress: bool = False) -> int | None:
    """Create (with the story's columnstore settings and compression policy when
    ``compress``; returns the policy's job) or drop the scratch table."""
    with connect(url, autocommit=True) as conn:
        if not create:
            conn.execute(queries.compose("ingest.drop_table", table=BENCH_TABLE))
            return None
        conn.execute(queries.compose("schema.create_tick_table", table=BENCH_TABLE))
        conn.execute(queries.text("ingest.hypertable"), {"name": BENCH_TABLE})
        conn.execute(queries.compose("ingest.index", table=BENCH_TABLE,
                                     index=BENCH_TABLE + "_idx"))
        if not compress:
            return None
        conn.execute(queries.compose("ingest.compression", table=BENCH_TABLE))
        return int(scalar(conn, queries.text("ingest.compression_policy"), {"name": BENCH_TABLE}))


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


def load_table(result: IngestResult) -> pd.DataFrame:
    """One row per load path of :data:`LOAD_PATHS` the run measured: medians over its turns
    (n) of rows/s, seconds, WAL bytes written and the table's bytes after, and, for a path
    with a goal (:data:`LOAD_GOALS`), its rows/s over its base path's against the goal."""
    out = []
    for path, method in LOAD_PATHS.items():
        if method not in result.seconds:
            continue
        base, goal = LOAD_GOALS.get(path, (None, None))
        speedup = (result.ratio(method, LOAD_PATHS[base])
                   if base is not None and LOAD_PATHS[base] in result.seconds else None)
        out.append({"path": path, "n": result.repeats, "rows": result.rows,
                    "rows_per_s": round(result.rows_per_s(method)),
                    "p50_s": round(statistics.median(result.seconds[method]), 3),
                    "bytes_written": int(statistics.median(result.wal_bytes.get(method, (0,)))),
                    "bytes_stored": int(statistics.median(result.table_bytes.get(method, (0,)))),
                    "base": base, "speedup": None if speedup is None else round(speedup, 2),
                    "goal": goal})
    return pd.DataFrame(out)


def record_loads(result: IngestResult) -> pd.DataFrame:
    """The report's load figures (:func:`load_table`): ``load rows_per_s``, ``load
    bytes_written`` (WAL bytes), ``load bytes_stored`` (the table after), each with params
    path, and ``load speedup_vs_psql`` (path, base, goal) for the paths with a goal."""
    table = load_table(result)
    for r in table.to_dict("records"):
        scope = {"path": r["path"], "rows": result.rows, "workers": result.workers}
        recording.record_metric("load rows_per_s", r["rows_per_s"], unit="rows/s", n=r["n"], **scope)
        recording.record_metric("load bytes_written", r["bytes_written"], unit="bytes", n=r["n"],
                                of="wal", **scope)
        recording.record_metric("load bytes_stored", r["bytes_stored"], unit="bytes", n=r["n"],
                                **scope)
        if pd.notna(r["speedup"]):
            recording.record_metric("load speedup_vs_psql", r["speedup"], unit="x", n=r["n"],
                                    base=r["base"], goal=r["goal"], **scope)
    recording.record_table("loads", table)
    return table
