"""How history can reach compressed chunks, measured: the figures behind the migration's
choice of ``direct_compress`` (docs/migration.md).

:func:`measure` builds the story's schema in a scratch schema of the target (as
:mod:`tsj_lab.checks.policies` does: a production ``tick_data`` is never touched), makes
deterministic ticks of days older than the 30-day compression horizon, and writes them
the migration's way (one transaction and one binary COPY per symbol-day) by each of
:data:`WAYS`, until every chunk is compressed:

* ``policy``: COPY every day, then the compression policy's job (``CALL run_job``);
* ``per_day``: COPY a day (all its symbols), then ``compress_chunk`` on it, day by day;
* ``direct``: COPY with ``timescaledb.enable_direct_compress_copy`` (TimescaleDB 2.23+):
  the rows are compressed as they arrive, no job after;
* ``into_compressed``: the days' chunks are already compressed (half their ticks, not
  timed); COPY the other half into them, then the policy's job recompresses them.

Each way runs ``runs`` times in turns on a truncated hypertable; rows/s is rows written
over the seconds from the first COPY to the last chunk compressed.
"""

from __future__ import annotations

import logging
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import psycopg

from .. import queries
from ..provision import schema
from ..db import Endpoint, connection, one, probe_url, scalar

log = logging.getLogger("tsj_lab")

WAYS: dict[str, str] = {
    "policy": "COPY, then the compression policy's job",
    "per_day": "COPY a day (every symbol), then compress_chunk on it",
    "direct": "COPY with direct compression (enable_direct_compress_copy)",
    "into_compressed": "COPY into chunks already compressed, then the policy's job",
}
COLUMNS = ["way", "how", "runs", "rows", "p50_rows_per_s", "min_rows_per_s", "max_rows_per_s",
           "p50_s", "bytes", "chunks", "compressed_chunks", "partial_chunks", "compressed",
           "supported", "note"]
#: the measured days end this long ago: all older than the 30-day compress_after
AGE = timedelta(days=40)


@dataclass(frozen=True)
class _Unit:
    symbol: str
    lo: datetime
    hi: datetime


def measure(url: Endpoint | str, *, days: int = 3, per_day: int = 20_000,
            symbols: Sequence[str] = ("ES", "NQ"), runs: int = 3,
            ways: Sequence[str] = tuple(WAYS)) -> pd.DataFrame:
    """One row per way: rows/s (p50, min, max over ``runs``), bytes, and whether the result
    is compressed. ``per_day`` ticks per symbol and day. Ways the server cannot do are rows
    with ``supported`` False (the apache edition: all of them)."""
    if not 1 <= days <= 60 or not 2 <= per_day <= 1_000_000 or not 1 <= runs <= 20:
        raise ValueError(f"days={days}, per_day={per_day}, runs={runs} out of range; use "
                         "1-60 days, 2-1000000 ticks a day, 1-20 runs")
    unknown = [w for w in ways if w not in WAYS]
    if unknown or not symbols:
        raise ValueError(f"unknown way(s) {', '.join(unknown) or '-'} or no symbols; use "
                         f"{', '.join(WAYS)}")
    caps = probe_url(url)
    if caps.timescaledb_version is None:
        raise schema.missing_extension_error(url, caps)
    if caps.license != "timescale":
        return _unsupported(ways, f"no compression under the {caps.license} license")
    with schema.scratch_schema(url, f"tsj_paths_{uuid.uuid4().hex[:8]}") as scoped:
        return _measure_in(scoped, days=days, per_day=per_day, symbols=list(symbols),
                           runs=runs, ways=list(ways))


def _unsupported(ways: Sequence[str], note: str) -> pd.DataFrame:
    return pd.DataFrame([{"way": w, "how": WAYS[w], "runs": 0, "rows": 0, "compressed": False,
                          "supported": False, "note": note} for w in ways], columns=COLUMNS)


def _measure_in(url: Endpoint | str, *, days: int, per_day: int, symbols: list[str], runs: int,
                ways: list[str]) -> pd.DataFrame:
    schema.provision(url)
    start = datetime.combine(datetime.now(UTC).date() - AGE - timedelta(days=days),
                             datetime.min.time(), UTC)
    units = [_Unit(s, start + timedelta(days=d), start + timedelta(days=d + 1))
             for d in range(days) for s in symbols]
    with connection(url, autocommit=True) as conn:
        conn.execute(queries.text("migrate.paths_source"), {
            "start": start, "days": days, "per_day": per_day, "symbols": symbols})
        data = {(u, half): _copy_out(conn, u, half) for u in units for half in (None, 0, 1)}
        job = scalar(conn, queries.text("migrate.paths_compression_job"))
        direct = conn.execute(queries.text("migrate.target_settings")).fetchall()
        has_direct = ("timescaledb.enable_direct_compress_copy",) in [tuple(r) for r in direct]
        samples: dict[str, list[float]] = {w: [] for w in ways}
        last: dict[str, dict[str, Any]] = {}
        for _ in range(runs):
            for way in ways:  # in turns: a busy neighbour slows every way alike
                if way == "direct" and not has_direct:
                    continue
                conn.execute(queries.text("migrate.paths_truncate"))
                rows, seconds = _WAYS[way](conn, units, data, job)
                samples[way].append(rows / seconds)
                last[way] = {"rows": rows, "seconds": seconds, **_state(conn),
                             "expected": days * per_day * len(symbols)}
                log.info("paths: %s %d rows in %.3f s", way, rows, seconds)
    return pd.DataFrame([_row(w, samples[w], last.get(w), has_direct) for w in ways],
                        columns=COLUMNS)


def _row(way: str, rates: list[float], last: dict[str, Any] | None,
         has_direct: bool) -> dict[str, Any]:
    if not rates or last is None:
        return {"way": way, "how": WAYS[way], "runs": 0, "rows": 0, "compressed": False,
                "supported": False,
                "note": "this TimescaleDB has no direct compression on COPY (2.23+)"
                if way == "direct" and not has_direct else "not run"}
    return {"way": way, "how": WAYS[way], "runs": len(rates), "rows": last["rows"],
            "p50_rows_per_s": round(statistics.median(rates)),
            "min_rows_per_s": round(min(rates)), "max_rows_per_s": round(max(rates)),
            "p50_s": round(last["rows"] / statistics.median(rates), 3),
            "bytes": int(last["bytes"]), "chunks": last["chunks"],
            "compressed_chunks": last["compressed"], "partial_chunks": last["partial"],
            "compressed": bool(last["chunks"] and last["compressed"] == last["chunks"]
                               and last["total"] == last["expected"]),
            "supported": True, "note": f"{last['total']} ticks in the hypertable after"}


def _copy_out(conn: psycopg.Connection[Any], u: _Unit, half: int | None) -> bytes:
    buf = bytearray()
    with conn.cursor().copy(queries.text("migrate.paths_copy_out"),
                            {"symbol": u.symbol, "lo": u.lo, "hi": u.hi, "half": half}) as cp:
        for chunk in cp:
            buf += chunk
    return bytes(buf)


def _copy_in(conn: psycopg.Connection[Any], data: bytes, *, direct: bool = False) -> int:
    """One symbol-day in one transaction, as a migration batch writes it."""
    with conn.transaction():
        if direct:
            conn.execute(queries.text("migrate.set_local"),
                         {"name": "timescaledb.enable_direct_compress_copy", "value": "on"})
        with conn.cursor() as cur:
            with cur.copy(queries.compose("migrate.copy_in", table="tick_data")) as cp:
                cp.write(data)
            return cur.rowcount


def _state(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    rows, chunks, compressed, partial, size = one(conn, queries.text("migrate.paths_state"), {})
    return {"total": rows, "chunks": chunks, "compressed": compressed, "partial": partial,
            "bytes": size}


Data = dict[tuple[_Unit, int | None], bytes]


def _policy(conn: psycopg.Connection[Any], units: list[_Unit], data: Data,
            job: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    rows = sum(_copy_in(conn, data[(u, None)]) for u in units)
    conn.execute(queries.text("policies.run_job"), {"job": job})
    return rows, time.perf_counter() - t0


def _per_day(conn: psycopg.Connection[Any], units: list[_Unit], data: Data,
             job: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    rows = 0
    for i, u in enumerate(units):
        rows += _copy_in(conn, data[(u, None)])
        if i + 1 == len(units) or units[i + 1].lo != u.lo:  # the day's last symbol: complete
            conn.execute(queries.text("migrate.paths_compress_chunks"))
    return rows, time.perf_counter() - t0


def _direct(conn: psycopg.Connection[Any], units: list[_Unit], data: Data,
            job: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    rows = sum(_copy_in(conn, data[(u, None)], direct=True) for u in units)
    return rows, time.perf_counter() - t0


def _into_compressed(conn: psycopg.Connection[Any], units: list[_Unit], data: Data,
                     job: int) -> tuple[int, float]:
    for u in units:  # the set-up, not timed: half of each day, compressed
        _copy_in(conn, data[(u, 0)])
    conn.execute(queries.text("policies.run_job"), {"job": job})
    t0 = time.perf_counter()
    rows = sum(_copy_in(conn, data[(u, 1)]) for u in units)
    conn.execute(queries.text("policies.run_job"), {"job": job})
    return rows, time.perf_counter() - t0


_WAYS: dict[str, Callable[..., tuple[int, float]]] = {
    "policy": _policy, "per_day": _per_day, "direct": _direct,
    "into_compressed": _into_compressed}
