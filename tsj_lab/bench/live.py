"""The live run: the story's policies run by TimescaleDB's own scheduler while ticks arrive.

Everything else in the workbench runs a policy's job itself (``CALL run_job``) on ticks with
fixed dates. Here the ticks are dated relative to now and the scheduler starts the jobs:

1. a scratch schema gets the story's DDL (``schema.provision``) and a history back-filled
   relative to now across the policies' horizons (:class:`History`: older than 90 days,
   30-90 days, the last 30, the newest hours at the story's 250 ms); the candle views are
   materialized up to an hour before now, and the jobs are paused meanwhile;
2. the jobs go back on their schedule with ``alter_job(next_start => ...)`` so each first
   run falls inside the run; the scheduler starts every run;
3. while a writer inserts ticks at now() in the application's way (one small batch per
   symbol each 250 ms on a psycopg_pool pool, the story's min 2 / max 20), at the story's
   rate and at a stress rate (:class:`Phase`), a reader runs the AC8 windows and a poller
   samples ``job_stats`` and each view's watermark four times a second;
4. the samples become the result: each job's runs, durations, failures and next start;
   candle freshness (when a tick reached each view's materialized part); insert and window
   latency with and without a job running; the chunks the scheduler compressed and dropped
   against what the policies promise.

Times are epoch seconds on the server's clock (the poller measures the client's offset).
The scheduler must run for the database (:func:`require_scheduler`); the embedded server
runs none, so ``tsj live`` starts an instance of its own with it on (``instance='live'``).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from .. import queries
from ..checks import job_fix
from ..db import Endpoint, as_endpoint, connection, pool, scalar
from ..domain import CANDLE_BY_VIEW, CANDLE_VIEWS, CANDLES, DEFAULT_INTERVAL_MS
from ..errors import SchemaError
from ..provision import schema
from ..provision.layout import COMPRESS_AFTER, RETENTION
from ..stats import percentile

log = logging.getLogger("tsj_lab")

FORMAT_VERSION = 1
SCHEMA = "tsj_live"
BATCH_SECONDS = DEFAULT_INTERVAL_MS / 1000  # the application flushes each symbol every 250 ms
#: price levels of the back-fill and the writer, per symbol (any other: 100)
_BASE = {"ES": 5000.0, "NQ": 17000.0, "EURUSD": 1.1, "BTCUSD": 60000.0}
#: the AC8 windows the reader runs, as widths of the candle views
_WINDOWS = tuple((c.name, c.seconds) for c in CANDLES)
_REFRESH = " refresh"


@dataclass(frozen=True)
class History:
    """The back-fill, dated relative to now: coarse where only the policies' horizons
    matter (they act on whole 1-day chunks), dense where the refresh windows read."""

    days: int = 95  # > 90: the retention job has chunks to drop
    old_spacing: dt.timedelta = dt.timedelta(seconds=60)  # older than the compression horizon
    recent_spacing: dt.timedelta = dt.timedelta(seconds=10)  # the last 30 days
    story_hours: float = 2.0  # the newest hours at the story's 250 ms
    symbols: tuple[str, ...] = ("ES", "NQ")

    def __post_init__(self) -> None:
        horizon = RETENTION.days + 2
        if self.days < horizon:
            raise ValueError(f"history days={self.days} leaves the retention job nothing to "
                             f"drop; use at least {horizon} (90-day retention, whole chunks)")
        for name in ("old_spacing", "recent_spacing"):
            if getattr(self, name) <= dt.timedelta(0):
                raise ValueError(f"{name}={getattr(self, name)} must be positive")
        if not 0 < self.story_hours <= 24 * COMPRESS_AFTER.days:
            raise ValueError(f"story_hours={self.story_hours} must be positive and within "
                             "the last 30 days")
        if not self.symbols:
            raise ValueError("history needs at least one symbol")

    def segments(self, now: float) -> list[tuple[float, float, dt.timedelta]]:
        """[start, end) and spacing of each part, oldest first, in epoch seconds."""
        day, story = 86400.0, self.story_hours * 3600
        compress = now - COMPRESS_AFTER.total_seconds()
        return [(now - self.days * day, compress, self.old_spacing),
                (compress, now - story, self.recent_spacing),
                (now - story, now, dt.timedelta(milliseconds=DEFAULT_INTERVAL_MS))]

    def rows(self) -> int:
        """Ticks the back-fill writes (about: the ends are not aligned)."""
        per_symbol = sum((end - start) / spacing.total_seconds()
                         for start, end, spacing in self.segments(0.0))
        return int(per_symbol) * len(self.symbols)


@dataclass(frozen=True)
class Phase:
    """A stretch of the run: the writer at ``rate`` times the story's (one tick per symbol
    each 250 ms) for ``seconds``."""

    name: str
    rate: int
    seconds: float

    def __post_init__(self) -> None:
        if self.rate < 1:
            raise ValueError(f"phase {self.name!r}: rate={self.rate} must be a whole multiple "
                             "of the story's rate, at least 1")
        if self.seconds <= 0:
            raise ValueError(f"phase {self.name!r}: seconds={self.seconds} must be positive")


STORY = Phase("story", 1, 150.0)
STRESS = Phase("stress", 100, 90.0)


@dataclass(frozen=True)
class Sample:
    """One timed operation: an insert batch or an AC8 window, its start (server clock)."""

    phase: str
    kind: str  # 'insert' or 'window 1m' ...
    start: float
    ms: float
    rows: int


@dataclass(frozen=True)
class JobRun:
    """One run of a job, as the scheduler recorded it in job_stats."""

    job_id: int
    policy: str  # 'compression', 'retention', 'candle_1m refresh', ...
    start: float
    seconds: float | None  # None: still running when the run ended
    status: str | None  # 'Success', 'Failed'

    @property
    def end(self) -> float:
        return self.start + (self.seconds or 0.0)


@dataclass
class _Shared:
    """What the threads of one run share."""

    offset: float  # server clock minus client clock, seconds
    phase: Phase
    stop: threading.Event = field(default_factory=threading.Event)
    samples: list[Sample] = field(default_factory=list)
    ticks: list[tuple[float, str]] = field(default_factory=list)  # (time, symbol) per batch
    realtime: list[bool] = field(default_factory=list)
    polls: list[tuple[float, list[Any], dict[str, float]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def now(self) -> float:
        return time.time() + self.offset


@dataclass
class LiveResult:
    """What one live run measured; :meth:`summary` is the report's JSON."""

    started: float
    finished: float
    phases: list[Phase]
    history: History
    backfill: dict[str, Any]
    jobs: dict[str, int]  # policy -> job id
    schedules: dict[str, float]  # policy -> schedule interval, seconds
    runs: list[JobRun]
    errors: list[tuple[int, float, str, str]]  # (job, start, message, owner): job_errors
    state: dict[int, dict[str, Any]]  # job -> job_stats at the end
    samples: list[Sample]
    ticks: list[tuple[float, str]]
    realtime: list[bool]
    polls: list[tuple[float, list[Any], dict[str, float]]]
    chunks_before: list[tuple[str, float, bool]]
    chunks_after: list[tuple[str, float, bool]]
    thread_errors: list[str] = field(default_factory=list)

    def job_table(self) -> list[dict[str, Any]]:
        """Per job: runs inside the run, their durations, failures, the next start."""
        return job_table(self)

    def freshness(self) -> list[dict[str, Any]]:
        return freshness(self)

    def latency(self) -> list[dict[str, Any]]:
        return latency(self)

    def chunk_check(self) -> dict[str, Any]:
        return chunk_check(self)

    def failures(self) -> list[str]:
        return failure_lines(self)

    def summary(self) -> dict[str, Any]:
        return summary(self)


# -- the scheduler -------------------------------------------------------------------------


def scheduler_state(db: Endpoint | str) -> tuple[int, bool]:
    """``db``'s server's background-worker limit, and whether a scheduler runs for its
    database (on the bench's instance: 0 and False, so its fixed-date ticks stay)."""
    with connection(db, autocommit=True) as conn:
        workers, running = conn.execute(queries.text("live.scheduler")).fetchone() or (0, False)
    return int(workers), bool(running)


def require_scheduler(db: Endpoint | str) -> int:
    """The scheduler's background-worker limit on ``db``'s server; SchemaError when no
    scheduler runs for its database (the jobs would never start)."""
    workers, running = scheduler_state(db)
    if not workers or not running:
        raise SchemaError(
            f"TimescaleDB's job scheduler is not running for {as_endpoint(db).redacted} "
            f"(timescaledb.max_background_workers = {workers}); run 'tsj live' without "
            "--live and TSJ_LIVE_URL (tsj starts its own instance with the scheduler on), "
            "or name a database whose server runs it (Timescale Cloud does)")
    return int(workers)


# -- the run -------------------------------------------------------------------------------


def run(db: Endpoint | str, *, phases: Sequence[Phase] = (STORY, STRESS), history: History = History(),
        schema_name: str = SCHEMA, keep: bool = False, poll_seconds: float = 0.25,
        read_every: float = 0.1, progress: Callable[[str], None] | None = None) -> LiveResult:
    """One live run on ``db`` (a database whose server runs TimescaleDB's scheduler), in
    scratch schema ``schema_name`` (dropped afterwards unless ``keep``)."""
    phases = list(phases)
    if not phases:
        raise ValueError("a live run needs at least one phase")
    if not 0 < poll_seconds <= 5 or not 0 < read_every <= 60:
        raise ValueError(f"poll_seconds={poll_seconds} and read_every={read_every} must be "
                         "positive seconds (poll_seconds at most 5)")
    say = progress or (lambda _msg: None)
    require_scheduler(db)
    with connection(db, autocommit=True) as conn:
        conn.execute(queries.compose("live.drop_schema", schema=sql.Identifier(schema_name)))
    with schema.scratch_schema(db, schema_name, keep=keep) as scoped:
        say(f"back-filling {history.rows():,} ticks over {history.days} days")
        backfill, jobs, schedules = _prepare(scoped, history)
        say(f"writer, reader and scheduler for {sum(p.seconds for p in phases):.0f} s "
            f"({', '.join(f'{p.name} x{p.rate}' for p in phases)})")
        return _measure(scoped, phases=phases, history=history, backfill=backfill,
                        jobs=jobs, schedules=schedules, poll_seconds=poll_seconds,
                        read_every=read_every)


def policy_jobs(conn: psycopg.Connection[Any]) -> list[tuple[str, int, dt.timedelta]]:
    """(policy, job id, schedule interval) of the story's jobs in the connection's schema,
    named as the policy proofs name them ('compression', 'retention', '<view> refresh')."""
    stmt = queries.compose("live.jobs", named=queries.compose("policies.jobs"))
    return [tuple(r) for r in conn.execute(stmt, {"views": list(CANDLE_VIEWS)})]


def _prepare(db: Endpoint, history: History
             ) -> tuple[dict[str, Any], dict[str, int], dict[str, float]]:
    """The story's DDL, its jobs paused, the history loaded and materialized."""
    t0 = time.perf_counter()
    schema.provision(db)
    with connection(db, autocommit=True) as conn:
        listed = policy_jobs(conn)
        jobs = {policy: job for policy, job, _ in listed}
        schedules = {policy: every.total_seconds() for policy, _, every in listed}
        for job in jobs.values():
            conn.execute(queries.text("live.pause_job"), {"job": job})
        now = float(scalar(conn, "SELECT extract(epoch FROM now())::float8"))
        for symbol in history.symbols:
            for start, end, spacing in history.segments(now):
                conn.execute(queries.text("live.backfill"), {
                    "symbol": symbol, "start": _ts(start), "end": _ts(end),
                    "spacing": spacing, "base": _BASE.get(symbol, 100.0)})
        rows = int(scalar(conn, "SELECT count(*) FROM tick_data"))
    loaded = time.perf_counter() - t0
    # materialized up to an hour before now (whole hours): each refresh policy's first
    # scheduled run then has a window of its own to do, as in production after a pause
    upto = dt.datetime.fromtimestamp(math.floor(now / 3600) * 3600 - 3600, dt.UTC)
    schema.refresh_candles(db, end=upto)
    return ({"rows": rows, "seconds": round(loaded, 2),
             "materialize_seconds": round(time.perf_counter() - t0 - loaded, 2),
             "materialized_until": upto.isoformat(),
             "segments": [{"from_days_ago": round((now - s) / 86400, 3),
                           "to_days_ago": round((now - e) / 86400, 3),
                           "spacing_s": sp.total_seconds()}
                          for s, e, sp in history.segments(now)]},
            jobs, schedules)


def _measure(db: Endpoint, *, phases: list[Phase], history: History, backfill: dict[str, Any],
             jobs: dict[str, int], schedules: dict[str, float], poll_seconds: float,
             read_every: float) -> LiveResult:
    with connection(db, autocommit=True) as conn:
        offset = _clock_offset(conn)
        before = _chunks(conn)
    shared = _Shared(offset, phases[0])
    started = shared.now()
    threads = [threading.Thread(target=_guard(shared, _poll), args=(db, jobs, shared,
                                                                    poll_seconds)),
               threading.Thread(target=_guard(shared, _read), args=(db, history.symbols,
                                                                    shared, read_every))]
    writers = pool(db, min_size=2, max_size=20, name="tsj-live")
    try:
        threads += [threading.Thread(target=_guard(shared, _write), args=(writers, s, shared))
                    for s in history.symbols]
        for t in threads:
            t.start()
        _schedule(db, jobs, phases=phases, started=started, shared=shared)
        for phase in phases:
            shared.phase = phase
            log.info("live: phase %s (x%d) for %.0f s", phase.name, phase.rate, phase.seconds)
            shared.stop.wait(phase.seconds)
        shared.stop.set()
        for t in threads:
            t.join(timeout=30)
    finally:
        shared.stop.set()
        writers.close()
    finished = shared.now()
    with connection(db, autocommit=True) as conn:
        _await_jobs(conn, list(jobs.values()))
        ids = list(jobs.values())
        errors = [(j, s, m, o) for j, s, m, o in conn.execute(
            queries.text("live.job_errors"), {"jobs": ids, "since": started})]
        cur = conn.execute(queries.text("live.job_state"), {"jobs": ids})
        names = [d.name for d in cur.description or ()]
        state = {r[0]: dict(zip(names, r)) for r in cur.fetchall()}
        after = _chunks(conn)
    policy_of = {job: policy for policy, job in jobs.items()}
    return LiveResult(started, finished, phases, history, backfill, jobs, schedules,
                      _runs(shared.polls, policy_of, since=started), errors, state,
                      shared.samples, shared.ticks, shared.realtime, shared.polls, before,
                      after, shared.errors)


def _schedule(db: Endpoint, jobs: dict[str, int], *, phases: list[Phase], started: float,
              shared: _Shared) -> None:
    """Each job's next start inside the run: the refreshes within seconds, retention in
    the first phase, compression early in the last (so its cost meets the stress rate)."""
    first, last_start = phases[0].seconds, sum(p.seconds for p in phases[:-1])
    at = {"retention": started + min(first * 0.4, 20.0),
          "compression": started + last_start + min(phases[-1].seconds * 0.2, 10.0)}
    for i, view in enumerate(CANDLE_VIEWS):
        at[view + _REFRESH] = started + 1.0 + 0.5 * i
    later = {"compression"} if "retention" in jobs else set()
    with connection(db, autocommit=True) as conn:
        for policy, job in jobs.items():
            if policy not in later:
                conn.execute(queries.text("live.schedule_job"), {"job": job, "at": at[policy]})
    if later:
        # compression after retention's first run: a compression job that meets the chunks
        # retention is dropping fails to convert them (seen: 3 of 63 on a busy machine)
        threading.Thread(target=_guard(shared, _schedule_after), daemon=True,
                         args=(db, jobs["compression"], jobs["retention"],
                               at["compression"], shared)).start()


def _schedule_after(db: Endpoint, job: int, after: int, at: float, shared: _Shared) -> None:
    """``job`` on the schedule at ``at`` (or at once, if later) once ``after`` has run."""
    with connection(db, autocommit=True) as conn:
        while not shared.stop.is_set():
            if scalar(conn, queries.text("live.job_finished_runs"), {"job": after}):
                break
            shared.stop.wait(0.5)
        conn.execute(queries.text("live.schedule_job"),
                     {"job": job, "at": max(at, shared.now() + 0.5)})


def _guard(shared: _Shared, fn: Callable[..., None]) -> Callable[..., None]:
    """``fn`` in a thread: an exception is kept (the run reports it) and stops the run."""
    def run(*args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # a thread's failure must reach the result, not vanish
            shared.errors.append(f"{fn.__name__.strip('_')}: {' '.join(str(exc).split())}")
            shared.stop.set()
    return run


def _write(writers: Any, symbol: str, shared: _Shared) -> None:
    """One symbol's feed: every 250 ms the ticks due since the last batch, in one INSERT
    on a pooled connection; every fourth batch, candle_1m's real-time answer checked."""
    stmt, check = queries.text("live.insert_ticks"), queries.text("live.realtime_check")
    base, n, due = _BASE.get(symbol, 100.0), 0, time.monotonic()
    while not shared.stop.is_set():
        phase, now = shared.phase, shared.now()
        k = phase.rate
        times = [now - BATCH_SECONDS * (k - 1 - i) / k for i in range(k)]
        prices = [round(base + 20 * math.sin(t / 3600.0), 2) for t in times]
        t0 = time.perf_counter()
        with writers.connection() as conn:
            conn.execute(stmt, {"symbol": symbol, "times": times, "prices": prices,
                                "volumes": [1] * k})
            ms = (time.perf_counter() - t0) * 1000
            if n % 4 == 0:
                shared.realtime.append(bool(scalar(conn, check, {"symbol": symbol,
                                                                 "at": times[-1]})))
        shared.samples.append(Sample(phase.name, "insert", now, ms, k))
        shared.ticks.append((times[0], symbol))
        n += 1
        due += BATCH_SECONDS
        shared.stop.wait(max(0.0, due - time.monotonic()))


def _read(db: Endpoint, symbols: Sequence[str], shared: _Shared, every: float) -> None:
    """The AC8 windows a live chart loads (1m, 5m, 15m, 1h ending now), one every
    ``every`` seconds, the symbols and widths in turn."""
    stmt = queries.text("bench.window")
    with connection(db, autocommit=True) as conn:
        i = 0
        while not shared.stop.is_set():
            name, width = _WINDOWS[i % len(_WINDOWS)]
            symbol = symbols[(i // len(_WINDOWS)) % len(symbols)]
            now = shared.now()
            t0 = time.perf_counter()
            got = conn.execute(stmt, {"symbol": symbol, "start": _ts(now - width),
                                      "end": _ts(now + 1)}).fetchall()
            ms = (time.perf_counter() - t0) * 1000
            shared.samples.append(Sample(shared.phase.name, f"window {name}", now, ms,
                                         len(got)))
            i += 1
            shared.stop.wait(max(0.0, every - ms / 1000))


def _poll(db: Endpoint, jobs: dict[str, int], shared: _Shared, every: float) -> None:
    stmt, ids = queries.text("live.poll"), list(jobs.values())
    with connection(db, autocommit=True) as conn:
        while not shared.stop.is_set():
            shared.polls.append(_sample(conn, stmt, ids))
            shared.stop.wait(every)
        shared.polls.append(_sample(conn, stmt, ids))


def _sample(conn: psycopg.Connection[Any], stmt: str, ids: list[int]
            ) -> tuple[float, list[Any], dict[str, float]]:
    at, jobs, marks = conn.execute(stmt, {"jobs": ids}).fetchone() or (0.0, [], {})
    return float(at), list(jobs), dict(marks)


def _await_jobs(conn: psycopg.Connection[Any], ids: list[int], *, timeout: float = 120.0
                ) -> None:
    """Wait for jobs still running when the run ended (their runs count)."""
    stmt, deadline = queries.text("live.poll"), time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, jobs, _ = _sample(conn, stmt, ids)
        if not any(j[4] == "Running" for j in jobs):
            return
        time.sleep(0.5)


def _clock_offset(conn: psycopg.Connection[Any]) -> float:
    """Server clock minus client clock (median of 5 round trips, each at its midpoint)."""
    offsets = []
    for _ in range(5):
        t0 = time.time()
        server = float(scalar(conn, "SELECT extract(epoch FROM clock_timestamp())::float8"))
        offsets.append(server - (t0 + time.time()) / 2)
    return statistics.median(offsets)


def _chunks(conn: psycopg.Connection[Any]) -> list[tuple[str, float, bool]]:
    return [(n, float(e), bool(c)) for n, e, c in conn.execute(queries.text("live.chunks"))]


def _ts(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


# -- what the samples say --------------------------------------------------------------------


def _runs(polls: list[tuple[float, list[Any], dict[str, float]]], policy_of: dict[int, str],
          *, since: float) -> list[JobRun]:
    """Each run the polls saw: a new last_run_started_at of a job, its duration and status
    from the newest poll that shows it finished."""
    seen: dict[tuple[int, float], JobRun] = {}
    for _, jobs, _ in polls:
        for job, start, seconds, status, job_status, *_ in jobs:
            if start is None or start < since - 1.0:
                continue
            done = job_status != "Running"
            key = (int(job), float(start))
            if key not in seen or done:
                seen[key] = JobRun(int(job), policy_of.get(int(job), str(job)), float(start),
                                   float(seconds) if done and seconds is not None else None,
                                   status if done else None)
    return sorted(seen.values(), key=lambda r: r.start)


def job_table(res: LiveResult) -> list[dict[str, Any]]:
    out = []
    for policy, job in res.jobs.items():
        runs = [r for r in res.runs if r.job_id == job]
        secs = [r.seconds for r in runs if r.seconds is not None]
        st = res.state.get(job, {})
        nxt = st.get("next_start")
        out.append({"policy": policy, "job": job, "every_s": res.schedules[policy],
                    "runs": len(runs),
                    "failed": sum(r.status == "Failed" for r in runs),
                    "seconds_p50": round(statistics.median(secs), 3) if secs else None,
                    "seconds_max": round(max(secs), 3) if secs else None,
                    "total_runs": st.get("total_runs"),
                    "total_failures": st.get("total_failures"),
                    "last_status": st.get("last_run_status"),
                    "next_start": nxt.isoformat() if nxt else None})
    return out


def _materialized_at(polls: list[tuple[float, list[Any], dict[str, float]]], view: str,
                     bucket_ends: np.ndarray) -> np.ndarray:
    """When each bucket end was first at or below ``view``'s watermark (NaN: not in the run)."""
    at = np.array([p[0] for p in polls])
    marks = np.array([p[2].get(view, -np.inf) or -np.inf for p in polls], dtype=float)
    reached = np.maximum.accumulate(marks)  # a watermark never moves back
    idx = np.searchsorted(reached, bucket_ends, side="left")
    out = np.full(len(bucket_ends), np.nan)
    ok = idx < len(at)
    out[ok] = at[idx[ok]]
    return out


def derived_lags(*, width: float, end_offset: float, every: float, phase: float,
                 seconds: float, horizon: float = 86400.0) -> np.ndarray:
    """The materialization lag of a tick at each second of ``horizon``, when a refresh
    starts at ``phase`` + k * ``every`` (the fixed schedule's grid), takes ``seconds`` and
    materializes every bucket ending at or before its start - ``end_offset``."""
    t = np.arange(0.0, horizon, 1.0) + phase
    bucket_end = np.floor(t / width) * width + width
    k = np.ceil((bucket_end + end_offset - phase) / every)
    return phase + k * every + seconds - t


def freshness(res: LiveResult) -> list[dict[str, Any]]:
    """Per view: the lag from a tick's time to its bucket's materialization, measured on the
    writer's ticks (those whose bound fell inside the run) and derived from the policy on
    the scheduler's own grid and run time (a day of ticks, one a second)."""
    policies = schema.CANDLE_POLICIES
    ticks = np.array([t for t, _ in res.ticks]) if res.ticks else np.zeros(0)
    out = []
    for view in CANDLE_VIEWS:
        width, pol = CANDLE_BY_VIEW[view].seconds, policies[view]
        end, every = pol.end_offset.total_seconds(), pol.schedule_interval.total_seconds()
        bound = width + end + every
        ends = np.floor(ticks / width) * width + width
        lag = _materialized_at(res.polls, view, ends) - ticks
        judged = ticks <= res.finished - bound - 5.0  # had the bound's time inside the run
        measured = lag[judged & ~np.isnan(lag)]
        late = int(np.sum(judged & np.isnan(lag)))
        runs = [r for r in res.runs if r.policy == view + _REFRESH and r.seconds is not None]
        nxt = res.state.get(res.jobs.get(view + _REFRESH, -1), {}).get("next_start")
        phase = (nxt.timestamp() if nxt else res.finished) % every
        dur = statistics.median([r.seconds for r in runs if r.seconds]) if runs else 0.0
        derived = derived_lags(width=width, end_offset=end, every=every, phase=phase,
                               seconds=dur)
        out.append({
            "view": view, "policy": str(pol), "bound_s": bound,
            "measured_n": int(measured.size), "not_materialized_in_bound": late,
            "measured_p50_s": _pct(measured, 50), "measured_p95_s": _pct(measured, 95),
            "measured_max_s": round(float(measured.max()), 1) if measured.size else None,
            "derived_p50_s": _pct(derived, 50), "derived_p95_s": _pct(derived, 95),
            "derived_max_s": round(float(derived.max()), 1),
            "refresh_runs": len(runs), "refresh_seconds_p50": round(dur, 3) if runs else None})
    return out


def _pct(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values.size else None


def _during(samples: list[Sample], runs: list[JobRun]) -> list[tuple[Sample, str]]:
    """Each sample and what ran beside it: 'none', 'refresh', 'compression' or 'retention'
    (a sample overlapping several runs takes the heaviest)."""
    rank = {"compression": 3, "retention": 2, "refresh": 1}
    spans = [(r.start, r.end if r.seconds is not None else math.inf,
              "refresh" if r.policy.endswith(_REFRESH) else r.policy) for r in runs]
    out = []
    for s in samples:
        end = s.start + s.ms / 1000
        kinds = [k for a, b, k in spans if s.start < b and end > a]
        out.append((s, max(kinds, key=rank.__getitem__) if kinds else "none"))
    return out


def frames(res: LiveResult) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The samples (at, phase, operation, ms, during) and the job runs (policy, start, end)
    as DataFrames with datetimes, for the report's timeline."""
    samples = pd.DataFrame(
        [{"at": _ts(s.start), "phase": s.phase, "operation": s.kind.split()[0], "ms": s.ms,
          "during": during} for s, during in _during(res.samples, res.runs)],
        columns=["at", "phase", "operation", "ms", "during"])
    runs = pd.DataFrame([{"policy": r.policy, "start": _ts(r.start), "end": _ts(max(
        r.end, r.start + 0.5))} for r in res.runs], columns=["policy", "start", "end"])
    return samples, runs


def latency(res: LiveResult) -> list[dict[str, Any]]:
    """Insert and AC8-window latency per phase, with no job running and beside each kind of
    job, p50/p95 and their ratio to the no-job figure of the same phase."""
    labelled = _during(res.samples, res.runs)
    out = []
    for phase in res.phases:
        for what in ("insert", "window"):
            groups: dict[str, list[float]] = {}
            for s, during in labelled:
                if s.phase == phase.name and s.kind.startswith(what):
                    groups.setdefault(during, []).append(s.ms)
            base = groups.get("none")
            for during in ("none", "refresh", "compression", "retention"):
                ms = groups.get(during)
                if not ms:
                    continue
                p50, p95 = percentile(ms, 50), percentile(ms, 95)
                row = {"phase": phase.name, "rate": phase.rate, "operation": what,
                       "during": during, "n": len(ms), "p50_ms": round(p50, 2),
                       "p95_ms": round(p95, 2), "p50_ratio": None, "p95_ratio": None}
                if base and during != "none":
                    row["p50_ratio"] = round(p50 / percentile(base, 50), 2)
                    row["p95_ratio"] = round(p95 / percentile(base, 95), 2)
                out.append(row)
    return out


def chunk_check(res: LiveResult) -> dict[str, Any]:
    """The chunks the scheduler's runs dropped and compressed against what the policies
    promise at the time each job started: every chunk ending 90 days before the retention
    run gone, every one ending 30 days before the compression run compressed, no other."""
    before = {n: (end, comp) for n, end, comp in res.chunks_before}
    after = {n: (end, comp) for n, end, comp in res.chunks_after}
    dropped = sorted(set(before) - set(after))
    compressed = sorted(n for n, (_, comp) in after.items()
                        if comp and not before.get(n, (0.0, False))[1])
    first = {p: min((r.start for r in res.runs if r.policy == p), default=None)
             for p in ("retention", "compression")}
    want_drop = ([n for n, (end, _) in before.items()
                  if end <= first["retention"] - RETENTION.total_seconds()]
                 if first["retention"] else [])
    want_comp = ([n for n, (end, comp) in before.items() if n not in want_drop and not comp
                  and end <= first["compression"] - COMPRESS_AFTER.total_seconds()]
                 if first["compression"] else [])
    ok = (first["retention"] is not None and first["compression"] is not None
          and dropped == sorted(want_drop) and compressed == sorted(want_comp))
    return {"ok": ok, "chunks_before": len(before), "chunks_after": len(after),
            "dropped": len(dropped), "expected_dropped": len(want_drop),
            "compressed": len(compressed), "expected_compressed": len(want_comp),
            "retention_ran": first["retention"] is not None,
            "compression_ran": first["compression"] is not None}


def failure_lines(res: LiveResult) -> list[str]:
    """One line per failed job run: the job, its policy, the error and the fix."""
    lines = []
    for job, _start, message, owner in res.errors:
        policy = next((p for p, j in res.jobs.items() if j == job), str(job))
        lines.append(failure_line(job, policy, message, owner=owner))
    lines += [f"the run's {e}" for e in res.thread_errors]
    return lines


def failure_line(job: int, policy: str, message: str | None, *, owner: str | None = None
                 ) -> str:
    """A failed run of ``job`` in one line: the policy, the error, the fix."""
    text = " ".join(str(message or "no error recorded").split())[:300]
    return f"job {job} ({policy}) failed: {text}; {job_fix(job, text, owner=owner)}"


#: TimescaleDB's scheduler on Debian's PostgreSQL 17.12 (2.24.0 and 2.30.0-dev alike) ends
#: every run with this error after the job's work committed; not on PostgreSQL 18.6
_DEFECT = "cannot drop portal"


def known_defect(line: str) -> bool:
    """Whether a failure line is the known scheduler defect (docs/live.md), not the job's."""
    return _DEFECT in line


def summary(res: LiveResult) -> dict[str, Any]:
    """The report's JSON: parameters, counts, and every table above."""
    inserts = [s for s in res.samples if s.kind == "insert"]
    return {
        "format_version": FORMAT_VERSION,
        "started": _ts(res.started).isoformat(), "finished": _ts(res.finished).isoformat(),
        "seconds": round(res.finished - res.started, 1),
        "phases": [asdict(p) for p in res.phases],
        "history": {**asdict(res.history), "old_spacing": res.history.old_spacing.total_seconds(),
                    "recent_spacing": res.history.recent_spacing.total_seconds()},
        "backfill": res.backfill,
        "ticks_written": sum(s.rows for s in inserts),
        "insert_batches": len(inserts),
        "realtime_checks": len(res.realtime), "realtime_ok": sum(res.realtime),
        "polls": len(res.polls),
        "jobs": res.job_table(), "freshness": res.freshness(), "latency": res.latency(),
        "chunks": res.chunk_check(), "failures": res.failures(),
        "every_job_ran": all(r["runs"] > 0 for r in res.job_table()),
    }
