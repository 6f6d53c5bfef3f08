"""What upgrading buys: production's TimescaleDB and a newer release, side by side.

:func:`compare` starts one embedded server per TimescaleDB version (same PostgreSQL, each
its own ``versions`` instance), gives each a fresh database with the story's DDL and the
same deterministic ticks, dated up to now (so an application's ``now()`` filters find
them and the continuous aggregates have a real-time tail), and measures each figure on
every version, taking turns where a figure is a latency:

* ingest: the loader's binary COPY into the hypertable (rows/s, one load);
* refresh: candle views materialized up to ``tail_hours`` ago (manual refresh, as a
  backfill does), and, after the reads, each refresh policy's job once (``CALL run_job``);
* AC8 windows (:func:`tsj_lab.bench.workloads.window_fetch`);
* candles with ``now()`` as an application writes the query: the last day of 1m (with
  the unmaterialized tail), the day before (materialized), the last day with the bound
  computed by the client instead, and a week of 1h;
* compression: the days before today compressed chunk by chunk as the policy's job does
  (seconds per chunk, bytes before/after);
* COPY into compressed history (:func:`tsj_lab.migrate.paths.measure`): the policy's way
  and direct compression on COPY, where the version has it.

Every figure carries its sample count; :func:`findings` turns the table into one line per
figure. The machine's load is part of the report (these are two servers on shared cores).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
from psycopg import sql

from .. import queries
from ..config import Settings, redact
from ..data import generate
from ..db import connection, one, probe_url, scalar
from ..domain import CANDLE_VIEWS, DEFAULT_SEED, PRODUCTION, TickSpec
from ..lab import reports
from ..migrate import paths
from ..provision import schema
from ..server.build import vendored_versions
from ..server.cluster import Embedded, default_home
from ..stats import percentile
from . import WINDOWS, Database, Dataset, time_interleaved
from .sizes import compress_chunks
from .workloads import window_fetch

log = logging.getLogger("tsj_lab")

DATABASE = "tsj_versions"
#: the application-shaped candle queries: block -> (label, what it reads)
CANDLE_QUERIES = {
    "candles_last_day": ("1m candles, last day with now() (real-time tail)", "1m"),
    "candles_day_before": ("1m candles, the day before with now() (materialized)", "1m"),
    "candles_since": ("1m candles, last day with a client-computed bound", "1m"),
    "hourly_last_week": ("1h candles, last 7 days with now()", "1h"),
}
#: a ratio within this of 1 is reported as no difference (two servers on shared cores)
NOISE = 0.15


def newest_release() -> str:
    """The newest vendored TimescaleDB release (not a development snapshot)."""
    releases = [v for v in vendored_versions() if "-" not in v]
    if not releases:
        raise ValueError("no TimescaleDB release is vendored (../shared/vendor/); name the "
                         "versions to compare, e.g. 2.24.0,2.29.2")
    return releases[-1]


@dataclass
class Comparison:
    """One run: the versions, the data set, a table of figures and the raw workload rows."""

    versions: list[str]
    spec: TickSpec
    figures: pd.DataFrame
    details: dict[str, pd.DataFrame] = field(default_factory=dict)
    servers: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the machine and production's version's server, as every report's environment
    environment: dict[str, Any] = field(default_factory=dict)

    def findings(self) -> list[str]:
        return findings(self.figures, self.versions)


def servers(versions: Sequence[str], *, settings: Settings, instance: str = "versions"
            ) -> list[Embedded]:
    """One embedded server per version (an ``instance`` each), of the configured PostgreSQL."""
    return [Embedded(default_home(settings.home), instance=instance, pg_major=settings.pg_major,
                     timescaledb_version=v, apt_mirror=settings.apt_mirror) for v in versions]


def compare(*, settings: Settings, versions: Sequence[str] | None = None,
            days: int = 3, symbols: Sequence[str] = ("ES", "NQ"), interval_ms: int = 1000,
            samples: int = 10, warmup: int = 2, seed: int = DEFAULT_SEED,
            tail_hours: float = 6.0, keep: bool = False, instance: str = "versions"
            ) -> Comparison:
    """Every figure on every version of ``versions`` (default: production's and the newest
    vendored release), on ``days`` days of ``symbols`` ending now. Servers it started are
    stopped again unless ``keep``."""
    versions = list(versions or (PRODUCTION.timescaledb, newest_release()))
    if len(set(versions)) < 2:
        raise ValueError(f"versions {versions} must name at least two different versions")
    if not 2 <= days <= 30 or samples < 1 or not 0 < tail_hours < 24:
        raise ValueError(f"days={days}, samples={samples}, tail_hours={tail_hours} out of "
                         "range; use 2-30 days, 1+ samples, a tail of 0-24 hours")
    today = dt.datetime.now(dt.UTC).date()
    spec = TickSpec(tuple(symbols), today - dt.timedelta(days=days - 1), days, interval_ms, seed)
    made = servers(versions, settings=settings, instance=instance)
    started = [s for s in made if not s.status().running]
    try:
        urls = {v: _fresh_database(s) for v, s in zip(versions, made)}
        figures, details = _measure(urls, spec, samples=samples, warmup=warmup, seed=seed,
                                    tail_hours=tail_hours)
        info = {v: _described(u) for v, u in urls.items()}
        # while the servers run: the environment probes the first one
        env = reports.environment(urls[versions[0]], settings=settings) | {"databases": info}
        env["database"]["connection"] = f"versions: TimescaleDB {versions[0]}"  # not its URL
    finally:
        if not keep:
            for s in started:
                s.stop()
    return Comparison(versions, spec, figures, details, info, env)


def write_report(result: Comparison, *, started: dt.datetime, reports_dir: Path = reports.REPORTS_DIR,
                 parameters: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """``reports_dir/YYYY-MM-DD/HHMMSS-versions.{json,html,md}``: the side-by-side table,
    one line per finding, each server's versions, the machine; the index refreshed."""
    finished = dt.datetime.now(dt.UTC)
    folder = reports_dir / started.strftime("%Y-%m-%d")
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{started.strftime('%H%M%S')}-versions"
    out = {ext: folder / f"{stem}.{ext}" for ext in ("json", "html", "md")}
    env = result.environment
    lines = result.findings()
    figures = result.figures.astype(object).where(result.figures.notna(), None)
    summary = {
        "format_version": reports.FORMAT_VERSION, "name": "versions", "status": "ok",
        "error": None, "started_at": started.isoformat(), "finished_at": finished.isoformat(),
        "duration_s": round((finished - started).total_seconds(), 3),
        "parameters": dict(parameters or {}) | {"versions": result.versions,
                                                 "symbols": list(result.spec.symbols),
                                                 "days": result.spec.days,
                                                 "interval_ms": result.spec.interval_ms},
        "environment": env, "files": {k: p.name for k, p in out.items()},
        "metrics": [{"name": r["figure"], "value": r[v], "unit": r["unit"], "n": r["n"],
                     "params": {"timescaledb": v}}
                    for r in figures.to_dict("records") for v in result.versions],
        "checks": [], "results": [],
        "tables": [{"name": "versions", "columns": list(figures.columns),
                    "rows": figures.values.tolist(), "total_rows": len(figures),
                    "truncated": False}],
        "findings": lines,
    }
    out["json"].write_text(json.dumps(summary, indent=2, default=str) + "\n")
    head = (f"TimescaleDB {' vs '.join(result.versions)} on PostgreSQL "
            f"{result.servers[result.versions[0]]['postgres_version']}, "
            f"{result.spec.days} days x {len(result.spec.symbols)} symbols at "
            f"{result.spec.interval_ms} ms, ending now; load average "
            f"{', '.join(f'{x:.1f}' for x in env['load_average'])} on {env['cpu_count']} cores")
    table = _markdown(result.figures)
    out["md"].write_text(f"# What upgrading buys\n\n{head}\n\n{table}\n\n"
                         + "\n".join(f"- {ln}" for ln in lines) + "\n")
    body = result.figures.to_html(index=False, float_format=lambda x: f"{x:.4g}", na_rep="-")
    items = "".join(f"<li>{html.escape(ln)}</li>" for ln in lines)
    out["html"].write_text(f"<!doctype html><meta charset='utf-8'><title>{stem}</title>"
                           f"<h1>What upgrading buys</h1><p>{html.escape(head)}</p>{body}"
                           f"<ul>{items}</ul>\n")
    reports.write_index(reports_dir)
    return out


def _markdown(df: pd.DataFrame) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "-" if math.isnan(v) else f"{v:.4g}"
        return str(v)

    rows = [list(df.columns), ["---"] * len(df.columns),
            *([cell(v) for v in r] for r in df.itertuples(index=False))]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def _fresh_database(server: Embedded) -> str:
    server.start()
    with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
        db = sql.Identifier(DATABASE)
        conn.execute(queries.compose("versions.drop_database", db=db))
        conn.execute(queries.compose("versions.create_database", db=db))
    url = server.url(DATABASE)
    with connection(url, autocommit=True) as conn:
        conn.execute(queries.text("versions.create_extension"))
    return url


def _described(url: str) -> dict[str, Any]:
    caps = probe_url(url).as_dict()
    return caps | {"url": redact(url).split("?", 1)[0],
                   "production": PRODUCTION.versus(caps["postgres_version"],
                                                   caps["timescaledb_version"])}


def _measure(urls: Mapping[str, str], spec: TickSpec, *, samples: int, warmup: int, seed: int,
             tail_hours: float) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """The figures in an order that keeps each honest: candles are read while candle_1m
    has its real-time tail; the policy jobs run after (a job's window, an hour for
    candle_1m, moves the watermark past the rest of the tail, which the real-time view
    then no longer shows); compression comes last (the reads before it see row chunks)."""
    rows: list[dict[str, Any]] = []
    now = {v: _load(v, u, spec, rows) for v, u in urls.items()}
    start = dt.datetime.combine(spec.start, dt.time(), dt.UTC)
    for version, url in urls.items():
        rows += _backfill(version, url, start=start,
                          until=now[version] - dt.timedelta(hours=tail_hours))
    dataset = _dataset(spec, min(now.values()))
    windows, candles = _latencies(urls, dataset, spec, rows, samples=samples, warmup=warmup,
                                  seed=seed)
    for version, url in urls.items():
        rows += _policy_jobs(version, url)
    today = dt.datetime.combine(dt.datetime.now(dt.UTC).date(), dt.time(), dt.UTC)
    for version, url in urls.items():
        rows += _compression(version, url, start=dataset.start, end=today)
    history = [_history_paths(v, u, spec, rows) for v, u in urls.items()]
    details = {"windows": windows, "candles": candles,
               "history_paths": pd.concat(history, ignore_index=True)}
    return _figures(rows, list(urls)), details


def _load(version: str, url: str, spec: TickSpec, rows: list[dict[str, Any]]) -> dt.datetime:
    """The story's DDL and the ticks, none after now; the server's now()."""
    schema.provision(url)
    t0 = time.perf_counter()
    loaded = generate.load(url, spec, direct=False)  # plain: both versions load alike
    seconds = time.perf_counter() - t0
    with connection(url, autocommit=True) as conn:
        scalar(conn, queries.text("versions.delete_future"))
        conn.execute(queries.text("bench.analyze"))
        now: dt.datetime = scalar(conn, queries.text("migrate.server_now"))
    rows.append(_row("ingest: binary COPY into the hypertable", "rows/s", "higher", version,
                     loaded / seconds, 1))
    log.info("versions: %s loaded %d ticks in %.1f s", version, loaded, seconds)
    return now


def _latencies(urls: Mapping[str, str], dataset: Dataset, spec: TickSpec,
               rows: list[dict[str, Any]], *, samples: int, warmup: int, seed: int
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    dbs = [Database(v, u) for v, u in urls.items()]
    windows = window_fetch(dbs, dataset, windows=list(WINDOWS), samples=samples,
                           warmup=warmup, seed=seed)
    for r in windows.to_dict("records"):
        rows.append(_row(f"AC8 window {r['window']} p95", "ms", "lower", r["db"], r["p95_ms"],
                         r["n"]))
    candles = _candles(urls, spec, samples=samples, warmup=warmup, seed=seed)
    for r in candles.to_dict("records"):
        label = CANDLE_QUERIES[r["query"]][0]
        rows.append(_row(f"{label} p50", "ms", "lower", r["version"], r["p50_ms"], r["n"]))
        rows.append(_row(f"{label}: planning p50", "ms", "lower", r["version"],
                         r["plan_p50_ms"], r["n"]))
        rows.append(_row(f"{label}: execution p50", "ms", "lower", r["version"],
                         r["execution_p50_ms"], r["n"]))
    return windows, candles


def _history_paths(version: str, url: str, spec: TickSpec, rows: list[dict[str, Any]]
                   ) -> pd.DataFrame:
    got = paths.measure(url, days=1, per_day=20_000, symbols=spec.symbols[:2], runs=1,
                        ways=("policy", "direct")).assign(version=version)
    for r in got.to_dict("records"):
        figure = f"COPY into compressed history: {r['how']}"
        if r["supported"] and r["compressed"]:
            rows.append(_row(figure, "rows/s", "higher", version, r["p50_rows_per_s"], r["runs"]))
        else:
            rows.append(_row(figure, "rows/s", "higher", version, math.nan, 0,
                             note=r["note"] or "unsupported"))
    return got


def _dataset(spec: TickSpec, now: dt.datetime) -> Dataset:
    start = dt.datetime.combine(spec.start, dt.time(), dt.UTC)
    # whole seconds before now: window_params picks windows inside [start, end)
    end = now.replace(microsecond=0) - dt.timedelta(minutes=1)
    per_symbol = int((end - start).total_seconds() * 1000 // spec.interval_ms)
    return Dataset(spec.symbols, start, end, per_symbol, spec.interval_ms)


def _backfill(version: str, url: str, *, start: dt.datetime, until: dt.datetime
              ) -> list[dict[str, Any]]:
    """Each candle view materialized over [start, until), as a backfill's manual refresh
    does (the rest is candle_1m's real-time tail): seconds each."""
    rows = []
    with connection(url, autocommit=True) as conn:
        for view in CANDLE_VIEWS:
            t0 = time.perf_counter()
            conn.execute(queries.text("history.refresh"), {"view": view, "start": start,
                                                          "end": until})
            rows.append(_row(f"refresh {view} over the history (manual)", "s", "lower",
                             version, time.perf_counter() - t0, 1))
    return rows


def _policy_jobs(version: str, url: str) -> list[dict[str, Any]]:
    """Each view's refresh policy job run once over its own window: seconds each."""
    rows = []
    with connection(url, autocommit=True) as conn:
        jobs = {view: job for job, view in conn.execute(
            queries.text("versions.refresh_jobs")).fetchall()}
        for view in CANDLE_VIEWS:
            t0 = time.perf_counter()
            conn.execute(queries.text("policies.run_job"), {"job": jobs[view]})
            rows.append(_row(f"refresh policy job {view} (its own window)", "s", "lower",
                             version, time.perf_counter() - t0, 1))
    return rows


def _candles(urls: Mapping[str, str], spec: TickSpec, *, samples: int, warmup: int,
             seed: int) -> pd.DataFrame:
    rng = random.Random(f"{seed}-versions-candles")
    params = [{"symbol": rng.choice(spec.symbols)} for _ in range(samples)]
    out = []
    for query in CANDLE_QUERIES:
        with ExitStack() as stack:
            fns: dict[Any, Callable[[Any], Any]] = {}
            for version, url in urls.items():
                conn = stack.enter_context(connection(url, autocommit=True))
                fns[version, "client"] = _fetcher(conn, query)
                fns[version, "server"] = _planner(
                    stack.enter_context(connection(url, autocommit=True)), query)
            got = time_interleaved(fns, [_bound(p) for p in params], warmup=warmup)
        for version in urls:
            latencies, counts = got[version, "client"]
            plans = got[version, "server"][1]  # (planning ms, execution ms) per sample
            out.append({"query": query, "version": version, "n": len(latencies),
                        "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95),
                        "plan_p50_ms": percentile([p for p, _ in plans], 50),
                        "execution_p50_ms": percentile([e for _, e in plans], 50),
                        "rows": sum(counts) / len(counts)})
    return pd.DataFrame(out)


def _bound(p: Mapping[str, Any]) -> dict[str, Any]:
    """Every query's parameters: the symbol, and the last day's start as a value."""
    return {**p, "since": dt.datetime.now(dt.UTC) - dt.timedelta(days=1)}


def _planner(conn: psycopg.Connection[Any], query: str
             ) -> Callable[[Mapping[str, Any]], tuple[float, float]]:
    """The server's planning and execution ms of ``query`` (EXPLAIN ANALYZE): chunk
    exclusion for now() happens at plan time from 2.26.4 on, at execution before."""
    stmt = queries.compose("bench.explain", query=queries.compose(f"versions.{query}"))

    def plan(p: Mapping[str, Any]) -> tuple[float, float]:
        got = scalar(conn, stmt, p)[0]
        return float(got["Planning Time"]), float(got["Execution Time"])

    return plan


def _fetcher(conn: psycopg.Connection[Any], query: str) -> Callable[[Mapping[str, Any]], int]:
    stmt = queries.text(f"versions.{query}")
    return lambda p: len(conn.execute(stmt, p).fetchall())


def _compression(version: str, url: str, *, start: dt.datetime, end: dt.datetime
                 ) -> list[dict[str, Any]]:
    """The chunks wholly before today compressed one by one, as the policy's job would."""
    seconds = compress_chunks(url, start, end)
    with connection(url, autocommit=True) as conn:
        before, after, n = one(conn, queries.text("versions.compression_stats"))
    if not seconds or not after:
        return [_row("compression ratio", "x", "higher", version, math.nan, 0,
                     note="no whole chunk before today")]
    return [_row("compression ratio", "x", "higher", version, int(before) / int(after), int(n)),
            _row("compress one day-chunk p50", "s", "lower", version, percentile(seconds, 50),
                 len(seconds))]


def _row(figure: str, unit: str, better: str, version: str, value: float | None, n: int, *,
         note: str = "") -> dict[str, Any]:
    return {"figure": figure, "unit": unit, "better": better, "version": version,
            "value": math.nan if value is None else float(value), "n": n, "note": note}


def _figures(rows: list[dict[str, Any]], versions: list[str]) -> pd.DataFrame:
    """One row per figure, in the order measured: its value on each version, the last
    version's over the first's, the smallest sample count, any note."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        fig = out.setdefault(r["figure"], {"figure": r["figure"], "unit": r["unit"],
                                           "better": r["better"], **dict.fromkeys(versions, math.nan),
                                           "n": r["n"], "note": ""})
        fig[r["version"]] = r["value"]
        fig["n"] = min(fig["n"], r["n"])
        if r["note"] and r["note"] not in fig["note"]:
            fig["note"] = "; ".join(x for x in (fig["note"], r["note"]) if x)
    table = pd.DataFrame(list(out.values()))
    table["ratio"] = table[versions[-1]] / table[versions[0]]
    return table[["figure", "unit", "better", *versions, "ratio", "n", "note"]]


def findings(figures: pd.DataFrame, versions: Sequence[str]) -> list[str]:
    """One line per figure: which version is faster (or smaller) and by how much."""
    base, new = versions[0], versions[-1]
    lines = []
    for r in figures.to_dict("records"):
        a, b = r[base], r[new]
        what = r["figure"].removesuffix(" p50").removesuffix(" p95")
        if any(isinstance(x, float) and math.isnan(x) for x in (a, b)):
            have = new if not math.isnan(b) else base if not math.isnan(a) else None
            lines.append(f"{what}: only {have} has it" if have else f"{what}: neither measured")
            continue
        if not a or not b:
            lines.append(f"{what}: {a:g} on {base}, {b:g} on {new}")
            continue
        gain = (a / b) if r["better"] == "lower" else (b / a)  # > 1: the newer one is better
        figs = f"({_fmt(a)} vs {_fmt(b)} {r['unit']}, n = {r['n']})"
        if abs(gain - 1) <= NOISE:
            lines.append(f"{what}: the same on both within {NOISE:.0%} {figs}")
        elif gain > 1:
            lines.append(f"{new} is {gain:.1f}x better than {base} on {what} {figs}")
        else:
            lines.append(f"{new} is {1 / gain:.1f}x worse than {base} on {what} {figs}")
    return lines


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"
