"""Integrity checks -> one table of results.

Reconciliation (source against target, per symbol and UTC day), data quality of the
target's ticks, candles against the raw ticks, and the hypertable's layout. Every check
runs in the database (sql/checks.sql): two passes over ``tick_data`` (one aggregate scan
with FILTER clauses, one ordered window walk) leave small per-(symbol, day) tables that
the rest of the suite reads; only those results ever reach Python.

Each finding is a :class:`~tsj_lab.domain.Finding` (``CheckResult`` here): check name,
scope (table, symbol, UTC day), status, observed against expected, rows affected and a
few sample rows. A check that finds nothing yields one ``ok`` row for the whole table, so
nothing is silently skipped. The layout's findings (chunk interval, compression) are
judged by :mod:`tsj_lab.provision.layout`, the same judges provisioning's AC2/AC3 rows come from.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pandas as pd
import psycopg

from ..data import digest as days_digest
from ..data import generate
from ..provision import layout, schema
from .. import queries
from ..db import Endpoint, capabilities, connection
from ..db.limits import bounded, lift, limit_error
from ..domain import (CANDLE_BY_VIEW, CANDLE_VIEWS, OK, QUARANTINE, STATUSES, Finding, TickSpec,
                      interval_text)
from ..errors import SchemaError
from ..provision.layout import facts_of
from ..parallel import progress_bar
from . import reconcile

log = logging.getLogger("tsj_lab")

_RANK = {"ok": 0, "unsupported": 0, "warn": 1, "fail": 2}

#: what a finding of each check means: 'fail' is wrong data or a broken promise of the
#: story; 'warn' is suspicious data that real feeds can legitimately contain.
SEVERITY: dict[str, str] = {
    "reconcile": "fail",
    "duplicate_ticks": "warn",  # two identical fills in one instant can be real
    "null_prices": "warn",  # quote-only or trade-only ticks exist in real feeds
    "crossed_quotes": "warn",  # crossed markets happen for an instant
    "last_outside_quote": "warn",  # trades print outside a stale quote
    "non_positive_prices": "fail",
    "negative_volume": "fail",
    "future_ticks": "fail",
    "implausible_times": "fail",
    "gaps": "warn",  # feed outages are facts to know, not corruption
    "hour_shifts": "fail",
    "candle_recompute": "fail",
    "candle_rollup": "fail",
    "candle_freshness": "warn",  # 'tsj refresh' fixes it
    "chunk_interval": "fail",
    "retention": "warn",  # 'tsj retention' (apache) or the policy (timescale) fixes it
    "compression": "warn",
    "jobs": "fail",  # a policy whose job fails does not hold, whatever its catalog row says
}

#: quality checks of the aggregate pass: check name -> chk_days column
_QUALITY = {
    "null_prices": "null_price",
    "crossed_quotes": "crossed_quote",
    "last_outside_quote": "last_outside",
    "non_positive_prices": "non_positive",
    "negative_volume": "negative_volume",
    "future_ticks": "future",
    "implausible_times": "implausible",
}
#: the largest time-zone offset a shift is read as (UTC-12 .. UTC+14)
MAX_SHIFT_HOURS = 14
_BREAK = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


#: one row of the results table: the domain's finding (its fields are the JSON's keys)
CheckResult = Finding


@dataclass(frozen=True)
class Options:
    """What the suite checks and how strictly; every field has a plain default."""

    table: str = "tick_data"
    #: candle buckets compared with a recompute per view; 0 compares every bucket
    sample: int = 0
    #: sample rows kept per finding
    sample_rows: int = 5
    #: the expected spacing of ticks; None: each symbol's median step
    interval_ms: float | None = None
    #: a gap is longer than this many expected intervals
    gap_multiple: float = 10.0
    #: daily UTC clock windows where gaps are session breaks; the default covers the CME
    #: Globex daily halt (17:00-18:00 Chicago: 22:00-23:00 UTC in winter, 21:00-22:00 in summer)
    breaks: tuple[str, ...] = ("21:00-23:00",)
    #: gaps from Friday to the weekend or Monday are weekend closes
    weekends: bool = True
    #: last may lie outside [bid, ask] by this fraction of its price
    last_tolerance: float = 0.0
    future_tolerance: dt.timedelta = dt.timedelta(minutes=5)
    #: how far candle views may lag the last tick (0: tsj refreshes them, apache)
    candle_lag: dt.timedelta = dt.timedelta(0)
    retention: dt.timedelta = dt.timedelta(days=90)
    compress_after: dt.timedelta = dt.timedelta(days=30)
    #: random seed of the sampled candle comparison (-1..1, PostgreSQL's setseed)
    seed: float = 0.16
    #: findings per check that get their own sample query (the rest are still counted)
    max_detail_rows: int = 50
    #: ticks per symbol used to estimate its step
    step_sample: int = 2000

    def __post_init__(self) -> None:
        _positive = {"gap_multiple": self.gap_multiple, "max_detail_rows": self.max_detail_rows,
                     "step_sample": self.step_sample}
        for name, value in _positive.items():
            if value <= 0:
                raise ValueError(f"{name}={value} must be positive")
        if self.sample < 0 or self.sample_rows < 0:
            raise ValueError(f"sample={self.sample} and sample_rows={self.sample_rows} "
                             "must be >= 0 (sample 0: every bucket)")
        if self.interval_ms is not None and self.interval_ms <= 0:
            raise ValueError(f"interval_ms={self.interval_ms} must be positive, or None to "
                             "estimate it")
        if not 0 <= self.last_tolerance < 1:
            raise ValueError(f"last_tolerance={self.last_tolerance} must be a fraction in [0, 1)")
        if not -1 <= self.seed <= 1:
            raise ValueError(f"seed={self.seed} must lie in [-1, 1]")
        for name in ("future_tolerance", "candle_lag", "retention", "compress_after"):
            if getattr(self, name) < dt.timedelta(0):
                raise ValueError(f"{name}={getattr(self, name)} must not be negative")
        break_windows(self.breaks)


def break_windows(breaks: Iterable[str]) -> tuple[list[float], list[float]]:
    """``("22:00-23:00", ...)`` as parallel lists of start and end seconds after midnight."""
    starts, ends = [], []
    for text in breaks:
        m = _BREAK.match(text.strip())
        if not m or int(m[1]) > 24 or int(m[3]) > 24 or int(m[2]) > 59 or int(m[4]) > 59:
            raise ValueError(f"break window {text!r} is not HH:MM-HH:MM (UTC), e.g. 22:00-23:00")
        starts.append(int(m[1]) * 3600 + int(m[2]) * 60.0)
        ends.append(int(m[3]) * 3600 + int(m[4]) * 60.0)
    return starts, ends


# -- the suite ----------------------------------------------------------------------------


@dataclass
class _Run:
    """What the steps of one suite run share: the connection and what earlier steps found."""

    conn: psycopg.Connection[Any]
    opts: Options
    license: str | None
    source_url: Endpoint | str | None
    results: list[CheckResult] = field(default_factory=list)
    steps: dict[str, float | None] = field(default_factory=dict)  # symbol -> step in s
    target: Endpoint | str | None = None  # the database of ``conn`` (its probe is kept)

    def q(self, name: str, params: dict[str, Any] | None = None, **idents: str) -> list[Any]:
        """Rows of named query ``name`` with ``{table}`` (and ``idents``) filled in."""
        stmt = queries.compose(name, table=self.opts.table, **idents)
        return self.conn.execute(stmt, params or {}).fetchall()

    def add(self, check: str, *, found: int = 0, status: str | None = None,
            **fields: Any) -> None:
        status = status or (SEVERITY[check] if found else "ok")
        table = fields.pop("table", self.opts.table)
        self.results.append(CheckResult(check, status, table, rows_affected=found, **fields))


def run(
    target_url: Endpoint | str,
    *,
    source_url: Endpoint | str | None = None,
    progress: bool | None = None,
    timings: dict[str, float] | None = None,
    stats: dict[str, int] | None = None,
    **options: Any,
) -> list[CheckResult]:
    """Run every check on ``target_url`` (and reconcile with ``source_url``); the findings.

    ``options`` are the fields of :class:`Options` (bad values raise ValueError before any
    connection is made). ``timings``, when given, receives the seconds of each step;
    ``stats`` the number of ticks and of (symbol, day) pairs checked.
    """

    opts = Options(**options)
    # One transaction for the whole suite: its temporary tables and its time zone live in
    # it, so it runs the same through a transaction-mode pooler (PgBouncer, Supavisor) as
    # direct, and every step sees one snapshot of the ticks.
    with connection(target_url) as conn:
        caps = capabilities(target_url, conn)
        if caps.timescaledb_version is None:
            # names the target and how to enable the extension ('tsj provision' cannot)
            raise schema.missing_extension_error(target_url, caps)
        if not schema.has_table(conn, opts.table):
            raise SchemaError(f"table '{opts.table}' not found on the target; run 'tsj provision'")
        schema.require_unfiltered(conn, opts.table, side="target")
        conn.execute(queries.text("checks.session"))
        # the suite's passes read the whole table by design: tsj's own statement_timeout
        # for them, not a role's (Supabase's are meant for an application's requests)
        lift(conn)
        ctx = _Run(conn, opts, caps.license, source_url, target=target_url)
        _run_steps(ctx, progress=progress, timings=timings)
        if stats is not None:
            stats.update(zip(("ticks", "symbol_days"), ctx.q("checks.tick_extent")[0][1:]))
    return ctx.results


def _run_steps(ctx: _Run, *, progress: bool | None, timings: dict[str, float] | None) -> None:
    """Each step in order, under one progress bar, timed."""
    with progress_bar(_steps(), desc="checks", unit="step", progress=progress) as bar:
        for name, step in bar:
            bar.set_postfix_str(name)
            t0 = time.perf_counter()
            try:
                step(ctx)
            except psycopg.Error as exc:
                limit = limit_error(exc, purpose=f"check step '{name}'", side="target",
                                    lifted=True, fix="run 'tsj check' at a quieter time")
                if limit is not None:
                    raise limit from None
                # e.g. a tick_data without the story's columns: one line, not a traceback
                raise SchemaError(f"check step '{name}' failed on table '{ctx.opts.table}': "
                                  f"{str(exc).splitlines()[0]}") from None
            seconds = time.perf_counter() - t0
            log.info("checks: %s in %.2f s", name, seconds)
            if timings is not None:
                timings[name] = seconds


def run_all(target_url: Endpoint | str, *, source_url: Endpoint | str | None = None,
            progress: bool | None = None,
            **kwargs: Any) -> pd.DataFrame:
    """:func:`run` as a DataFrame (the results table notebooks show)."""
    return to_frame(run(target_url, source_url=source_url, progress=progress, **kwargs))


def to_frame(results: Sequence[CheckResult]) -> pd.DataFrame:
    """The results table: one row per :class:`CheckResult`, its fields as columns."""
    cols = list(CheckResult.__dataclass_fields__)
    return pd.DataFrame([r.as_dict() for r in results], columns=cols)


def worst(results: Iterable[CheckResult]) -> str:
    """The worst status among ``results``: 'fail', 'warn' or 'ok'."""
    rank = max((_RANK[r.status] for r in results), default=0)
    return {0: "ok", 1: "warn", 2: "fail"}[rank]


def exit_status(results: Iterable[CheckResult], *, strict: bool = False) -> int:
    """1 on any fail (or any warn with ``strict``), else 0."""
    w = worst(results)
    return 1 if w == "fail" or (strict and w == "warn") else 0


def summary(results: Iterable[CheckResult]) -> dict[str, int]:
    """How many rows have each status."""
    out = dict.fromkeys(STATUSES, 0)
    for r in results:
        out[r.status] += 1
    return out


def _steps() -> list[tuple[str, Callable[[_Run], None]]]:

    return [
        ("layout", check_layout),
        ("quality", check_quality),
        ("sequence", check_sequence),
        ("reconcile", check_reconcile),
        *((f"candles {v}", _candle_step(v)) for v in CANDLE_VIEWS),
    ]


# -- data to check -----------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """What :func:`prepare` did: rows it loaded per side, and the source worth reconciling."""

    target_rows: int
    source_rows: int
    source_url: Endpoint | str | None  # None: no source, or one with no ticks to compare
    note: str


def prepare(
    target_url: Endpoint | str,
    *,
    source_url: Endpoint | str | None = None,
    symbols: Sequence[str] = ("ES", "BTCUSD"),
    days: int = 1,
    interval_ms: int = 1000,
    seed: int = 16,
) -> Prepared:
    """Make the suite self-sufficient: small generated ticks where there are none.

    When neither side holds ticks, the target is provisioned and loaded with ``days`` of
    generated ticks ending yesterday (so nothing is past retention or in the future), its
    candle views refreshed, and the source (if any) gets the same rows. Existing ticks are
    never touched: a target with ticks next to an empty source leaves the source out
    (nothing to reconcile), an empty target next to a source with ticks stays empty (the
    suite then says the ticks are missing: migrate first).
    """
    target_has = generate.holds_ticks(target_url)
    source_has = source_url is not None and generate.holds_ticks(source_url)
    if target_has and source_url is not None and not source_has:
        return Prepared(0, 0, None, "the source holds no ticks while the target does: "
                                    "nothing to reconcile (run 'tsj migrate' from a source)")
    if target_has or source_has:
        note = ("existing ticks checked as they are" if target_has else
                "the target holds no ticks while the source does: run 'tsj migrate'")
        return Prepared(0, 0, source_url, note)
    spec = TickSpec.ending_yesterday(symbols, days=days, interval_ms=interval_ms, seed=seed,
                                     sessions=True)
    target_rows, source_rows = generate.ensure_data(target_url, spec, source_url=source_url)
    return Prepared(target_rows, source_rows, source_url,
                    f"generated {target_rows} target and {source_rows} source rows")


# -- layout ------------------------------------------------------------------------------


def check_layout(ctx: _Run) -> None:
    """AC2's chunk interval and AC3's compression as provisioning judges them
    (:mod:`tsj_lab.provision.layout`), then what the data shows: chunks past retention, old chunks
    left uncompressed, failed policy jobs."""
    lay = layout.read(ctx.conn, table=ctx.opts.table, license=ctx.license)
    ctx.results.append(layout.judge_hypertable(lay))
    if not lay.hypertable:
        return
    _check_retention(ctx, lay)
    _check_compression(ctx, lay)
    check_jobs(ctx)


def _check_retention(ctx: _Run, lay: layout.Layout) -> None:
    """No chunk older than the retention policy's interval (without one: the option's)."""
    opts = ctx.opts
    retention = lay.drop_after or opts.retention
    policy = (f"retention policy drop_after {interval_text(lay.drop_after)}"
              if lay.drop_after else "no retention policy")
    old = ctx.q("checks.old_chunks", {"table": opts.table, "retention": retention,
                                      "limit": opts.sample_rows})
    n_old = old[0][0] if old else 0
    ctx.add("retention", found=n_old, observed=f"{n_old} chunks",
            expected=f"0 chunks older than {interval_text(retention)}",
            samples=[_jsonable(r[1:]) for r in old],
            detail=(f"{policy}; " if ctx.license == "timescale" else "")
                   + ("its job has not dropped them yet" if old and lay.drop_after
                      else "drop them with 'tsj retention'" if old else "AC5"))


def _check_compression(ctx: _Run, lay: layout.Layout) -> None:
    """AC3's settings and policy (unsupported without the timescale license); when they
    hold, no chunk older than the policy's interval left uncompressed."""
    judged = layout.judge_compression(lay, want=ctx.opts.compress_after)
    if judged.status != OK:
        ctx.results.append(judged)
        return
    late = ctx.q("checks.uncompressed_old_chunks", {
        "table": ctx.opts.table, "compress_after": lay.compress_after,
        "limit": ctx.opts.sample_rows})
    n = late[0][0] if late else 0
    ctx.add("compression", found=n, observed=f"{judged.observed}; {n} old chunks uncompressed",
            expected=f"chunks older than {interval_text(lay.compress_after)} compressed",
            samples=[_jsonable(r[1:]) for r in late],
            detail=f"{judged.detail}; " + ("the compression policy has not run on them yet"
                                           if n else "AC3"))


def check_jobs(ctx: _Run) -> None:
    """Each policy or user job's last run (the scheduler's job_stats and job_errors, or tsj's
    own CALL run_job record, whichever is newer): a failed last run fails the check."""
    jobs = ctx.q("checks.jobs")
    tsj_runs: dict[int, tuple[Any, ...]] = {}
    if schema.has_table(ctx.conn, "tsj_job_runs"):
        tsj_runs = {r[0]: tuple(r[1:]) for r in ctx.q("checks.tsj_job_runs")}
    if not jobs:
        ctx.add("jobs", status="ok" if ctx.license != "timescale" else "warn", found=0,
                observed="no jobs", expected="policy jobs that ran without error",
                detail="no policy jobs: run 'tsj provision'" if ctx.license == "timescale"
                else f"no policy jobs under the '{ctx.license}' license")
        return
    failed, never = [], 0
    for job_id, proc, rel, owner, started, status, _runs, _failures, err, _err_at in jobs:
        own = tsj_runs.get(job_id)
        if own is not None and (started is None or own[0] >= started):
            started, status, err = own[0], "Success" if own[1] else "Failed", own[2]
        if started is None:
            never += 1
        elif status == "Failed":
            failed.append((job_id, proc, rel, owner, started, err or "no error recorded"))
    for job_id, proc, rel, owner, started, err in failed:
        ctx.add("jobs", found=1, table=rel or ctx.opts.table,
                observed=f"job {job_id} ({proc}) failed at {_ts(started)}",
                expected="its last run succeeded", samples=[[job_id, proc, rel, _ts(started)]],
                detail=f"job {job_id} ({proc}{' on ' + rel if rel else ''}) last run failed: "
                       f"{' '.join(str(err).split())[:300]}; {job_fix(job_id, str(err), owner=owner)}")
    if not failed:
        ctx.add("jobs", observed=f"{len(jobs)} jobs, {len(jobs) - never} ran, none failed",
                expected="no job's last run failed",
                detail=(f"{never} not run yet (no scheduler run or CALL run_job recorded)"
                        if never else "job_stats, job_errors"))


#: what a job's error says -> the fix, most specific first; '{job}' is the job id
_JOB_FIXES = (
    (re.compile(r"not permitted to log in|permission denied to start background process",
                re.IGNORECASE),
     "the job runs as its table's owner, who cannot log in: ALTER ROLE that owner LOGIN (or "
     "give the table to a role that can), then CALL run_job({job})"),
    (re.compile(r"permission denied|must be owner", re.IGNORECASE),
     "the job runs as role {owner}, which lacks a privilege on what it touches: GRANT it to "
     "{owner} (or give the policy to the table's owner), then CALL run_job({job})"),
    (re.compile(r"does not exist|not found|could not open relation", re.IGNORECASE),
     "what the job acts on is gone: re-create it ('tsj provision'), or remove the job with "
     "SELECT delete_job({job})"),
    (re.compile(r"cannot drop portal", re.IGNORECASE),
     "a TimescaleDB defect in this build's scheduler (the job's work may be done, its run is "
     "still recorded failed): run a released TimescaleDB (2.24.0, as production) or CALL "
     "run_job({job}) by hand"),
)


def job_fix(job: int, message: str, *, owner: str | None = None) -> str:
    """The fix for job ``job`` (run as role ``owner``) whose run failed with ``message``:
    one clause, for one line."""
    for pattern, fix in _JOB_FIXES:
        if pattern.search(message or ""):
            return fix.format(job=job, owner=f"'{owner}'" if owner else "its owner")
    return f"fix the cause, then CALL run_job({job})"


# -- data quality: the aggregate pass ----------------------------------------------------


def check_quality(ctx: _Run) -> None:
    """One scan into chk_days; then each anomaly per (symbol, day) with sample rows."""
    opts = ctx.opts
    limits = {"last_tolerance": opts.last_tolerance, "future_tolerance": opts.future_tolerance}
    ctx.conn.execute(queries.compose("checks.day_scan", table=opts.table), limits)
    for check, kind in _QUALITY.items():
        days = ctx.q("checks.day_findings", {"kind": kind})
        if not days:
            ctx.add(check, observed="0 rows", expected="0 rows")
            continue
        for i, (symbol, day, found, n) in enumerate(days):
            samples = []
            if i < opts.max_detail_rows and opts.sample_rows:
                samples = _quality_sample(ctx, kind, symbol, day, limits)
            detail = f"of {n} ticks that day" if day else "rows with no plausible day"
            ctx.add(check, found=found, symbol=symbol, day=day, observed=f"{found} rows",
                    expected="0 rows", samples=samples, detail=detail)


def _quality_sample(ctx: _Run, kind: str, symbol: str, day: dt.date | None,
                    limits: dict[str, Any]) -> list[list[Any]]:
    params = {"kind": kind, "symbol": symbol, "day": day, "limit": ctx.opts.sample_rows, **limits}
    # rows without a plausible day (implausible times) are found outside any day range
    rows = ctx.q("checks.undated_sample" if day is None else "checks.quality_sample", params)
    return [_jsonable(r) for r in rows]


# -- data quality: the ordered walk ------------------------------------------------------


def check_sequence(ctx: _Run) -> None:
    """One ordered walk into chk_seq: duplicates, gaps, whole-hour shifts."""
    opts = ctx.opts
    ctx.steps = _symbol_steps(ctx)
    symbols = sorted(ctx.steps)
    gap_s = [None if (step := ctx.steps[s]) is None else step * opts.gap_multiple for s in symbols]
    ctx.conn.execute(queries.compose("checks.sequence_scan", table=opts.table),
                     {"symbols": symbols, "gap_s": gap_s})
    _check_duplicates(ctx)
    _check_gaps(ctx)
    _check_hour_shifts(ctx)


def _symbol_steps(ctx: _Run) -> dict[str, float | None]:
    """Each symbol's expected step in seconds: the option, else its median step (or None)."""
    rows = ctx.q("checks.symbol_steps", {"n": ctx.opts.step_sample})
    if ctx.opts.interval_ms is not None:
        return {r[0]: ctx.opts.interval_ms / 1000 for r in rows}
    return {r[0]: None if r[1] is None else float(r[1]) for r in rows}


def _check_duplicates(ctx: _Run) -> None:
    days = ctx.q("checks.duplicates")
    if not days:
        ctx.add("duplicate_ticks", observed="0 extra copies", expected="0 extra copies",
                detail="identical in every column")
    for i, (symbol, day, found) in enumerate(days):
        samples = []
        if i < ctx.opts.max_detail_rows:
            samples = [_jsonable(r) for r in ctx.q("checks.duplicate_sample", {
                "symbol": symbol, "day": day, "limit": ctx.opts.sample_rows})]
        ctx.add("duplicate_ticks", found=found, symbol=symbol, day=day,
                observed=f"{found} extra copies", expected="0 extra copies", samples=samples,
                detail="rows identical in every column to another row")


def _check_gaps(ctx: _Run) -> None:
    opts = ctx.opts
    b0, b1 = break_windows(opts.breaks)
    slack = max((v for v in ctx.steps.values() if v), default=1.0) * opts.gap_multiple
    rows = ctx.q("checks.gaps", {"weekends": opts.weekends, "break_start_s": b0,
                              "break_end_s": b1, "slack_s": slack})
    expected = f"no gap over {opts.gap_multiple:g} steps outside session breaks"
    if not rows:
        ctx.add("gaps", observed="0 gaps", expected=expected, detail=_steps_text(ctx.steps))
    by_day: dict[tuple[str, dt.date], list[Any]] = {}
    for r in rows:
        by_day.setdefault((r[0], r[1]), []).append(r)
    for symbol, day in by_day:
        found = by_day[(symbol, day)]
        longest = max(g[4] for g in found)
        ctx.add("gaps", found=len(found), symbol=symbol, day=day,
                observed=f"{len(found)} gaps, longest {longest:g} s", expected=expected,
                samples=[_jsonable((g[2], g[3], g[4])) for g in found[:opts.sample_rows]],
                detail=f"step {ctx.steps.get(symbol) or 0:g} s; samples: last tick before, "
                       "first after, seconds")


def _steps_text(steps: dict[str, float | None]) -> str:
    return "steps: " + ", ".join(f"{s} {v:g} s" if v else f"{s} unknown"
                                 for s, v in sorted(steps.items()))


def _check_hour_shifts(ctx: _Run) -> None:
    symbols = sorted(ctx.steps)
    rows = ctx.q("checks.hour_shifts", {
        "symbols": symbols, "step_s": [ctx.steps[s] for s in symbols], "join_steps": 2,
        "tol_steps": 2, "max_hours": MAX_SHIFT_HOURS})
    expected = "no block of ticks moved by whole hours onto other ticks"
    if not rows:
        ctx.add("hour_shifts", observed="0 rows", expected=expected)
    for row in rows:
        _add_hour_shift(ctx, *row, expected=expected)


def _add_hour_shift(ctx: _Run, symbol: str, day: dt.date, first: dt.datetime,
                    last: dt.datetime, found: int, hole_after: dt.datetime,
                    hole_before: dt.datetime, hours: int, kind: str, block_first: dt.datetime,
                    block_last: dt.datetime, *, expected: str) -> None:
    lim = ctx.opts.sample_rows
    span = {"symbol": symbol, "start": block_first, "end": block_last, "limit": lim}
    if kind == "collisions":
        moved = found
        samples = ctx.q("checks.hour_shift_sample", {**span, "start": first, "end": last})
        where = f"onto {_ts(first)}..{_ts(last)}"
    else:
        # the block holds every shifted tick plus the originals it collided with
        moved = ctx.q("checks.range_count", span)[0][0] - found
        samples = ctx.q("checks.range_head" if hours > 0 else "checks.range_tail", span)
        where = f"now {_ts(block_first)}..{_ts(block_last)}, {found} of them onto other ticks"
    ctx.add("hour_shifts", found=moved, symbol=symbol, day=day,
            observed=f"{moved} ticks shifted {hours:+d} h", expected=expected,
            samples=[_jsonable(r) for r in samples],
            detail=f"{where}; hole {_ts(hole_after)}..{_ts(hole_before)}: timestamps "
                   "written with a time-zone offset")


# -- reconciliation ----------------------------------------------------------------------



def check_reconcile(ctx: _Run) -> None:
    """Source against target per (symbol, UTC day): the ticks engineer's digest.day."""
    expected = "source = target: rows, first/last time, volume, checksum per symbol and day"
    if not ctx.source_url:
        ctx.add("reconcile", status="unsupported", observed="no source", expected=expected,
                detail="no source given; pass --source URL (or set TSJ_SOURCE_URL)")
        return
    with connection(ctx.source_url, autocommit=True) as src:
        if not schema.has_table(src, ctx.opts.table):
            ctx.add("reconcile", status="warn", observed="no source table", expected=expected,
                    detail=f"table '{ctx.opts.table}' not found on the source; migrate first "
                           "or pass the right --source")
            return
        schema.require_unfiltered(src, ctx.opts.table, side="source")
        # The two digests are independent full scans on two servers (or two databases):
        # run them at the same time.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tsj-digest") as ex:
            pending = ex.submit(_digest, src, ctx.opts.table, side="source")
            target = _digest(ctx.conn, ctx.opts.table, side="target")
            source = pending.result()
    quarantine = _quarantine_digest(ctx.conn)
    source, skipped = _kept_days(ctx.conn, source, target, db=ctx.target)
    compared = reconcile.compare(source, target, quarantine)
    bad = [c for c in compared if c.status != reconcile.OK]
    if not bad:
        rows = sum(v[0] for v in source.values())
        ctx.add("reconcile", observed=f"{len(source)} symbol-days, {rows} rows match",
                expected=expected, detail=skipped)
        return
    for c in bad:
        explained = c.status == reconcile.QUARANTINED
        ctx.add("reconcile", status="warn" if explained else "fail",
                found=_reconcile_rows(c.source, c.target), symbol=c.symbol, day=c.day,
                observed=_digest_text(c.target), expected=_digest_text(c.source),
                samples=[_jsonable(d) for d in c.differing_fields()],
                detail=(f"the {c.quarantined[0]} missing rows are in the migration's quarantine "
                        f"({QUARANTINE}): the target cannot hold them"
                        if explained and c.quarantined else "samples: field, source, target"))


def _kept_days(conn: psycopg.Connection[Any], source: dict[reconcile.Key, reconcile.Digest],
               target: dict[reconcile.Key, reconcile.Digest], *,
               db: Endpoint | str | None = None
               ) -> tuple[dict[reconcile.Key, reconcile.Digest], str]:
    """The source's symbol-days to compare, and what was left out: days older than the
    target's retention horizon that the target does not hold (its retention job drops
    them, and 'tsj migrate' skips them). Such days the target does hold are compared."""
    kept = facts_of(conn, db=db).kept_since
    if kept is None:
        return source, ""
    gone = {k: v for k, v in source.items()
            if k not in target and k[1] is not None and k[1] < kept.date()}
    if not gone:
        return source, ""
    days = sorted({k[1] for k in gone if k[1] is not None})
    rows = sum(v[0] for v in gone.values())
    note = (f"skipped {len(gone)} source symbol-day(s), {rows} rows ({days[0]}..{days[-1]}) "
            f"older than the target's retention (kept from {kept.date()}): not migrated")
    return {k: v for k, v in source.items() if k not in gone}, note


def _quarantine_digest(conn: psycopg.Connection[Any]) -> dict[reconcile.Key, reconcile.Digest]:
    """The digest of the rows the migration set aside (target + quarantine = source)."""
    if not schema.has_table(conn, QUARANTINE):
        return {}
    # small and without an index: one statement
    rows = conn.execute(queries.compose("digest.day", table=QUARANTINE),
                        {"since": "-infinity", "until": "infinity", "symbols": None}).fetchall()
    return reconcile.digests(rows)


def _digest(conn: psycopg.Connection[Any], table: str, *,
            side: str) -> dict[reconcile.Key, reconcile.Digest]:
    """digest.day's rows of ``table``, one statement per symbol-day (tsj_lab.data.digest)."""
    with bounded(conn, f"reconcile's digest of {table} per symbol-day", side=side,
                 fix="check that tick_data has an index on (symbol, time)"):
        rows = days_digest.walk(conn, table=table)
    return reconcile.digests(rows)


def _reconcile_rows(s: tuple[Any, ...] | None, t: tuple[Any, ...] | None) -> int:
    """The difference in row count; at least 1 when only the content differs."""
    return abs((s[0] if s else 0) - (t[0] if t else 0)) or 1


def _digest_text(d: tuple[Any, ...] | None) -> str:
    if d is None:
        return "absent"
    if d[1] is None:  # rows outside the tick domain have no first/last time
        return f"{d[0]} rows"
    return f"{d[0]} rows, volume {d[3]}, {d[1]:%H:%M:%S}..{d[2]:%H:%M:%S}"


# -- candles -----------------------------------------------------------------------------


def _candle_step(view: str) -> Callable[[_Run], None]:
    def step(ctx: _Run) -> None:
        check_candles(ctx, view)

    step.__name__ = f"check_{view}"
    return step


def check_candles(ctx: _Run, view: str) -> None:
    """``view`` equals a recompute from the ticks, rolls up from candle_1m, and is fresh."""
    if not schema.has_table(ctx.conn, view):
        ctx.add("candle_recompute", status="fail", table=view, observed="missing",
                expected=f"candle view {view}",
                detail=f"view '{view}' not found; run 'tsj provision'")
        return
    last_time = ctx.q("checks.tick_extent")[0][0]
    try:
        with ctx.conn.transaction():  # a savepoint: the suite's transaction goes on
            last_bucket, _view_ticks = ctx.q("checks.candle_freshness", view=view)[0]
    except psycopg.errors.ObjectNotInPrerequisiteState:
        ctx.add("candle_freshness", status="fail", table=view, observed="never refreshed",
                expected="populated", detail=f"{view} holds no data yet; run 'tsj refresh'")
        return
    width = CANDLE_BY_VIEW[view].interval  # '5 minutes'
    _check_freshness(ctx, view, last_time, last_bucket)
    horizon = _horizon(last_time, ctx.opts.candle_lag)
    _check_recompute(ctx, view, width, horizon)
    if view != "candle_1m":
        _check_rollup(ctx, view, width)


def _horizon(last_time: dt.datetime | None, lag: dt.timedelta) -> dt.datetime | str:
    """Buckets ending by this instant must be complete in the views."""
    if not lag or last_time is None:
        return "infinity"
    return last_time - lag


def _bucket(t: dt.datetime, seconds: int) -> dt.datetime:
    epoch = int(t.timestamp() // seconds * seconds)
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def _check_freshness(ctx: _Run, view: str, last_time: dt.datetime | None,
                     last_bucket: dt.datetime | None) -> None:
    lag = ctx.opts.candle_lag
    if last_time is None:
        ctx.add("candle_freshness", table=view, observed="no ticks", expected="-")
        return
    want = _bucket(last_time - lag, CANDLE_BY_VIEW[view].seconds)
    fresh = last_bucket is not None and last_bucket >= want
    ctx.add("candle_freshness", status="ok" if fresh else SEVERITY["candle_freshness"],
            found=0 if fresh else 1, table=view,
            observed=f"last bucket {_ts(last_bucket)}", expected=f">= {_ts(want)}",
            detail=f"{view}: last tick {_ts(last_time)}, lag allowed {lag}"
                   + ("" if fresh else "; run 'tsj refresh'"))


def _watermark(ctx: _Run, view: str) -> tuple[dt.datetime | str, str]:
    """The view's watermark ('infinity' for a plain materialized view) and what it means."""
    row = ctx.q("checks.candle_watermark", {"view": view})
    if not row:
        return "infinity", "materialized view"
    mark, materialized_only = row[0]
    if materialized_only:
        return "infinity", f"materialized only, watermark {_ts(mark)}"
    with ctx.conn.transaction():  # a savepoint: an error leaves the suite's transaction
        tail = ctx.q("checks.candle_tail", {"watermark": mark}, view=view)[0][0]
    return mark, (f"materialized before {_ts(mark)}, {tail} bucket(s) from then on "
                  "aggregated in real time from the ticks")


def _check_recompute(ctx: _Run, view: str, width: str, horizon: dt.datetime | str) -> None:
    opts = ctx.opts
    mark, parts = _watermark(ctx, view)
    params = {"width": width, "horizon": horizon, "limit": opts.sample_rows, "sample": opts.sample,
              "watermark": mark}
    if opts.sample:
        ctx.q("checks.set_seed", {"seed": opts.seed})
        rows = ctx.q("checks.candle_recompute_sample", params, view=view)
        scope = f"{opts.sample} sampled buckets"
    else:
        rows = ctx.q("checks.candle_recompute", params, view=view)
        scope = "every bucket"
    found, tail = (rows[0][0], rows[0][1]) if rows else (0, 0)
    where = f" ({found - tail} materialized, {tail} in the real-time tail)" if found else ""
    ctx.add("candle_recompute", found=found, table=view,
            observed=f"{found} buckets differ{where}", expected=f"0 buckets differ ({scope})",
            samples=[_jsonable(r[2:]) for r in rows],
            detail=f"{view} ({parts}) against time_bucket('{width}') over the ticks"
                   + ("; samples: bucket, symbol, then view/ticks open, high, low, close, "
                      "volume, count" if found else ""))


def _check_rollup(ctx: _Run, view: str, width: str) -> None:
    rows = ctx.q("checks.candle_rollup", {"width": width, "limit": ctx.opts.sample_rows},
                 view=view, base="candle_1m")
    found = rows[0][0] if rows else 0
    ctx.add("candle_rollup", found=found, table=view, observed=f"{found} buckets differ",
            expected="0 buckets differ", samples=[_jsonable(r[1:]) for r in rows],
            detail=f"{view} against candle_1m rolled up to {width}")


# -- values ------------------------------------------------------------------------------


def _ts(t: dt.datetime | None) -> str:
    return "-" if t is None else t.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _value(v: Any) -> Any:
    """A JSON-able form of one database value (exact: decimals as text)."""
    if isinstance(v, dt.datetime):
        return v.astimezone(dt.UTC).isoformat() if v.tzinfo else v.isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return v.total_seconds()
    if isinstance(v, (Decimal, uuid.UUID)):
        return str(v)
    return v


def _jsonable(row: Iterable[Any]) -> list[Any]:
    return [_value(v) for v in row]
