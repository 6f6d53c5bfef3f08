"""Proof of the story's policies (AC3-AC5): each job run once and its effect checked.

A policy counts as working when its job has run and done what the story asks, not when
its row is in the catalog. :func:`prove` builds the story's schema in a scratch schema of
the target (so a production database's own ``tick_data`` is never touched), loads ticks
spanning more than the 90-day retention horizon, back-fills the candles, then runs each
job with ``CALL run_job`` and checks:

* compression: every chunk older than 30 days is compressed, with the story's settings
  (segment by symbol, order by time DESC), none newer is, and no tick was lost;
* retention: no chunk older than 90 days is left, and only those chunks' ticks went;
* each candle refresh policy: the candles equal a recompute from the ticks that remain,
  the ticks of the last hour are materialized, and the candles of the dropped days are
  still there (a refresh window reaching past the retention horizon would delete them:
  TimescaleDB issues #2198, #2592).

The scratch schema is dropped afterwards, with its jobs. On the apache edition there are
no policy jobs: each row says so (``unsupported``), never ``ok``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import psycopg
from psycopg import sql

from ..data import generate
from .. import queries
from ..provision import schema
from ..db import Endpoint, connection, one, probe_url, scalar
from ..domain import FAIL, OK, UNSUPPORTED, TickSpec

log = logging.getLogger("tsj_lab")

#: the ticks proved on: more days than the retention keeps, one tick a minute
PROOF_DAYS = 100


@dataclass(frozen=True)
class PolicyProof:
    """One policy's job, run once, and what it did."""

    policy: str  # 'compression', 'retention', 'candle_1m refresh', ...
    job_id: int | None
    status: str  # ok / fail / unsupported
    detail: str  # the effect checked, in numbers, or what went wrong
    seconds: float  # the job's run time


def prove(url: Endpoint | str, *, days: int = PROOF_DAYS, symbols: tuple[str, ...] = ("ES",),
          interval_ms: int = 60_000, seed: int = 11, keep: bool = False) -> list[PolicyProof]:
    """Run every policy job once on ``days`` of ticks in a scratch schema of ``url``.

    ``keep`` leaves the scratch schema in place (its name is in the log) to look at.
    """
    if days <= schema.RETENTION.days + 1:
        raise ValueError(f"days={days} must exceed the {schema.RETENTION.days}-day retention "
                         "by 2 or more, or the retention job has nothing to drop")
    caps = probe_url(url)
    if caps.timescaledb_version is None:
        raise schema.missing_extension_error(url, caps)
    if caps.license != "timescale":
        return [PolicyProof(p, None, UNSUPPORTED, f"no policy jobs under the {caps.license} "
                            "license (Debian's build); " + why, 0.0)
                for p, why in _APACHE_NOTES.items()]
    with schema.scratch_schema(url, f"tsj_proof_{uuid.uuid4().hex[:8]}", keep=keep) as scoped:
        return _prove_in(scoped, days=days, symbols=symbols, interval_ms=interval_ms, seed=seed)


_APACHE_NOTES = {
    "compression": "compression needs the timescale license",
    "retention": "'tsj retention' drops chunks older than 90 days (drop_chunks)",
    **{f"{v} refresh": "'tsj refresh' recomputes the materialized view" for v in schema.CANDLE_VIEWS},
}


def _prove_in(url: Endpoint | str, *, days: int, symbols: tuple[str, ...], interval_ms: int,
              seed: int) -> list[PolicyProof]:
    schema.provision(url)
    # history ends a day ago; the back-fill materializes it and stops 2 hours ago, so
    # each refresh job finds the recent ticks (the last 50 minutes) in its own window
    today = datetime.now(UTC).date()
    generate.load(url,
                  TickSpec(tuple(symbols), today - timedelta(days=days + 1), days=days,
                           interval_ms=interval_ms, seed=seed), workers=1, progress=False,
                  direct=False)  # plain: the compression job must find its chunks
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    schema.refresh_candles(url, end=hour - timedelta(hours=2))
    with connection(url, autocommit=True) as conn:
        conn.execute(queries.text("policies.recent_ticks"), {"symbol": symbols[0]})
        jobs = dict(conn.execute(queries.text("policies.jobs"),
                                 {"views": list(schema.CANDLE_VIEWS)}).fetchall())
        proofs = [_run(conn, "compression", jobs, _check_compression)]
        until = _facts(conn)["expired_until"]  # where the dropped days end
        old = {v: _old_candles(conn, v, until) for v in schema.CANDLE_VIEWS}
        proofs.append(_run(conn, "retention", jobs,
                           lambda c, before: _check_retention(c, before, old, until)))
        for view in schema.CANDLE_VIEWS:
            proofs.append(_run(conn, f"{view} refresh", jobs,
                               _refresh_check(view, old=old, until=until)))
    return proofs


def run_job(conn: psycopg.Connection[Any], job: int) -> None:
    """``CALL run_job(job)`` on an autocommit connection, its outcome kept in tsj_job_runs.

    A run outside the scheduler writes neither ``job_stats`` nor ``job_errors``; the
    record is what lets 'tsj check' see that the last run of a job failed. Re-raises the
    job's error after recording it.
    """
    conn.execute(queries.text("policies.create_job_runs"))
    started = datetime.now(UTC)
    try:
        conn.execute(queries.text("policies.run_job"), {"job": job})
    except psycopg.Error as exc:
        conn.execute(queries.text("policies.record_job_run"), {
            "job": job, "started_at": started, "succeeded": False,
            "message": str(exc).splitlines()[0] if str(exc) else type(exc).__name__})
        raise
    conn.execute(queries.text("policies.record_job_run"), {"job": job, "started_at": started,
                                                  "succeeded": True, "message": None})


Check = Callable[[psycopg.Connection[Any], dict[str, Any]], tuple[bool, str]]


def _run(conn: psycopg.Connection[Any], policy: str, jobs: dict[str, int],
         check: Check) -> PolicyProof:
    job = jobs.get(policy)
    if job is None:
        return PolicyProof(policy, None, FAIL, "no job for this policy after provisioning; "
                           "run 'tsj provision' and look at its steps", 0.0)
    before = _facts(conn)
    t0 = time.perf_counter()
    try:
        run_job(conn, job)
    except psycopg.Error as exc:
        return PolicyProof(policy, job, FAIL, f"job {job} failed: {str(exc).splitlines()[0]}",
                           time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    ok, detail = check(conn, before)
    log.info("policies: %s job %d in %.2f s: %s", policy, job, seconds, detail)
    return PolicyProof(policy, job, OK if ok else FAIL, detail, seconds)


def _facts(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    cur = conn.execute(queries.text("policies.facts"), {"compress_after": schema.COMPRESS_AFTER,
                                                      "drop_after": schema.RETENTION})
    row = cur.fetchone()
    assert row is not None
    facts = dict(zip([d.name for d in cur.description or ()], row))
    facts["at"] = datetime.now(UTC)
    return facts


def _check_compression(conn: psycopg.Connection[Any], before: dict[str, Any]) -> tuple[bool, str]:
    after = _facts(conn)
    settings = conn.execute(queries.text("policies.chunk_settings")).fetchall()
    wrong = [s for s in settings if not schema.story_compression(*s)]
    compressed = after["old_chunks"] - after["old_uncompressed"]
    ok = (after["old_chunks"] > 0 and after["old_uncompressed"] == 0
          and after["young_compressed"] == 0 and after["ticks"] == before["ticks"]
          and not wrong and len(settings) == compressed)
    segmentby, orderby = settings[0] if settings else ("-", "-")
    detail = (f"{compressed} of {after['old_chunks']} chunks older than 30 days compressed "
              f"(segmentby {segmentby}, orderby {orderby}"
              f"{f'; other settings on {len(wrong)}' if wrong else ''}); "
              f"{after['young_compressed']} of {after['chunks'] - after['old_chunks']} newer "
              f"ones; ticks {before['ticks']:,} before and {after['ticks']:,} after")
    return ok, detail


def _check_retention(conn: psycopg.Connection[Any], before: dict[str, Any],
                     old: dict[str, int], until: datetime) -> tuple[bool, str]:
    after = _facts(conn)
    went = before["ticks"] - after["ticks"]
    kept = {v: _old_candles(conn, v, until) for v in schema.CANDLE_VIEWS}
    ok = (before["expired_chunks"] > 0 and after["expired_chunks"] == 0
          and after["chunks"] == before["chunks"] - before["expired_chunks"]
          and went == before["expired_ticks"] and kept == old)
    detail = (f"{before['expired_chunks']} chunks older than 90 days dropped "
              f"({after['expired_chunks']} left), {after['chunks']} remain; {went:,} ticks "
              f"went, the {before['expired_ticks']:,} in those chunks; candle_1m of the "
              f"dropped days: {kept['candle_1m']:,} of {old['candle_1m']:,} kept")
    return ok, detail


def _old_candles(conn: psycopg.Connection[Any], view: str, until: datetime | None) -> int:
    """Candles of ``view`` before ``until``: the days whose ticks retention drops."""
    row = conn.execute(queries.compose("policies.old_candles", view=view),
                       {"until": until}).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _refresh_check(view: str, *, old: dict[str, int], until: datetime) -> Check:
    """The check of ``view``'s refresh job, for :func:`_run`."""
    return lambda conn, before: _check_refresh(conn, view, old, until, before["at"])


def _check_refresh(conn: psycopg.Connection[Any], view: str, old: dict[str, int],
                   until: datetime, at: datetime) -> tuple[bool, str]:
    width, policy = schema.CANDLE_WIDTHS[view], schema.CANDLE_POLICIES[view]
    diffs = scalar(conn, queries.compose("schema.candle_diff_ticks", view=view),
                   {"width": width, "since": until})
    kept = _old_candles(conn, view, until)
    mat = one(conn, queries.text("policies.materialization_table"), {"view": view})
    materialized, expected = one(conn, queries.compose("policies.materialized",
                                                       mat=sql.Identifier(*mat)),
                                 {"width": width, "at": at, **asdict(policy)})
    # candle_1m's window always holds recent ticks: its job must have materialized them
    ok = (diffs == 0 and kept == old[view] > 0 and materialized == expected
          and (expected > 0 or view != "candle_1m"))
    detail = (f"{materialized} of {expected} buckets of the last hour's ticks in its window "
              f"materialized; {diffs} candles differ from a recompute of the ticks left; "
              f"{kept:,} of {old[view]:,} candles of the dropped days kept")
    return ok, detail


def proofs_frame(proofs: list[PolicyProof]) -> pd.DataFrame:
    return pd.DataFrame([asdict(p) for p in proofs],
                        columns=list(PolicyProof.__dataclass_fields__))


def failed(proofs: list[PolicyProof]) -> list[PolicyProof]:
    return [p for p in proofs if p.status == FAIL]


