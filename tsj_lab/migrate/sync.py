"""The catch-up of the parallel run: make the target equal to the source again, by content.

While the application still writes to Supabase, its ticks change in four ways: new ticks,
late ticks into days already copied, rows updated in place (``trade_id`` and
``account_id`` filled in when a tick is linked to a trade: the day's count unchanged) and
rows deleted. The story's table has no key and no modification time, so the only way to
see which days changed is to read them: a pass compares the per-(symbol, UTC day) digests
of both sides (``digest.day``: rows, volume and a multiset checksum over every column,
target + quarantine against source, as :func:`tsj_lab.migrate.verify` does) and re-copies
exactly the symbol-days that differ, each batch in one target transaction
(:func:`tsj_lab.migrate.copy_batch`: delete the range, COPY, checkpoint). A day whose
every tick the source deleted is deleted on the target too. A pass therefore converges in
one step when nothing writes the source meanwhile, and a pass killed half-way leaves whole
days: the next one compares again and copies what still differs.

What a pass costs: one read of every source row in the window (the digest), plus the rows
of the differing days (docs/migration.md has the figure for 1 changed day in 30).

``reverse=True`` is the rollback's copy back: the source is the TimescaleDB (which took
the application's writes after the flip) and the target the plain table; the window must
start at the flip (``since``), and those days of the plain table are made equal to the
hypertable's.

Both directions write the target under the parallel run's advisory lock (sql/sync.sql),
so a catch-up and the follow mode (:mod:`tsj_lab.migrate.follow`) never interleave.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import psycopg

from .. import queries
from ..db import Endpoint, connect, one, scalar
from ..domain import QUARANTINE
from ..errors import MigrationError, SchemaError
from ..parallel import rows_bar
from ..provision import schema
from ..provision.layout import TargetFacts, facts_of
from . import (DEFAULT_BATCH_SIZE, Batch, BatchResult, Plan, Window, _key, _slices, copy_batch,
               verify, window)

log = logging.getLogger("tsj_lab")

DAY = dt.timedelta(days=1)
#: a differing day is narrowed to at most this many differing minutes for its sample rows
SAMPLE_MINUTES = 5
DIFF_COLUMNS = ["symbol", "time", "change", "column", "source", "target"]
_ROW = ("time", "symbol", "bid_price", "ask_price", "last_price", "volume", "source",
        "trade_id", "account_id")


@dataclass
class SyncResult:
    """One catch-up pass: what differed, what was copied, what it cost."""

    window: Window
    reverse: bool
    compared: pd.DataFrame  # migrate.verify's table at the start of the pass
    days_copied: int = 0
    days_deleted: int = 0
    rows_digested: int = 0  # source rows the comparison read (the whole window)
    rows_read: int = 0  # source rows read to copy the differing days
    rows_copied: int = 0
    rows_quarantined: int = 0
    seconds_compare: float = 0.0
    seconds_copy: float = 0.0
    candles_refreshed: int = 0  # symbol-days whose candle views were refreshed
    skipped_odd: int = 0  # symbols whose rows outside the tick domain differ (tsj migrate)
    samples: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=DIFF_COLUMNS))

    @property
    def differing(self) -> pd.DataFrame:
        """The symbol-days that differed when the pass began."""
        c = self.compared
        return c[c["status"] != "ok"] if len(c) else c

    @property
    def level(self) -> bool:
        """Nothing differed at the start of the pass (so nothing was copied)."""
        return self.differing.empty

    @property
    def rows_read_source(self) -> int:
        return self.rows_digested + self.rows_read

    @property
    def seconds(self) -> float:
        return self.seconds_compare + self.seconds_copy

    def summary(self) -> dict[str, Any]:
        w = self.window
        return {"direction": "back (hypertable -> plain)" if self.reverse else "forward",
                "since": w.since.isoformat() if w.since else "", "until":
                w.until.isoformat() if w.until else "", "days_compared": len(self.compared),
                "days_differing": len(self.differing), "days_copied": self.days_copied,
                "days_deleted": self.days_deleted, "rows_digested": self.rows_digested,
                "rows_read": self.rows_read, "rows_read_source": self.rows_read_source,
                "rows_copied": self.rows_copied, "rows_quarantined": self.rows_quarantined,
                "seconds_compare": round(self.seconds_compare, 3),
                "seconds_copy": round(self.seconds_copy, 3),
                "candles_refreshed_days": self.candles_refreshed}


def sync(
    source: Endpoint | str,
    target: Endpoint | str,
    *,
    since: dt.datetime | str | None = None,
    until: dt.datetime | str | None = None,
    symbols: Sequence[str] | str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    reverse: bool = False,
    force: bool = False,
    samples: int = 0,
    progress: bool | None = None,
) -> SyncResult:
    """One catch-up pass over the window (default: the hypertable's kept days); see the
    module doc. ``force`` skips the guard against a target with newer ticks than the source;
    ``samples`` > 0 keeps sample differing rows of that many days (read before copying).
    """
    if not 1 <= batch_size <= 10_000_000:
        raise ValueError(f"batch_size={batch_size} is out of range; use 1-10000000")
    w = window(since=since, until=until, symbols=symbols)
    if reverse and w.since is None:
        raise ValueError("the copy back (--reverse) needs --since, the time of the flip: it "
                         "replaces the plain table's ticks from then on with the hypertable's")
    started = dt.datetime.now(dt.UTC)
    facts = require_pair(source, target, reverse=reverse, force=force)
    w = _kept(w, facts.kept_since)
    t0 = time.perf_counter()
    compared = verify(source, target, window=w)
    result = SyncResult(w, reverse, compared, seconds_compare=time.perf_counter() - t0,
                        rows_digested=int(compared["rows_source"].sum()) if len(compared) else 0)
    odd = result.differing["day"].isna()
    result.skipped_odd = int(odd.sum())
    todo = result.differing[~odd]
    if samples:
        result.samples = sample_differences(source, target, todo, max_days=samples)
    t0 = time.perf_counter()
    if len(todo):
        plan = _plan(todo[todo["status"] == "mismatch"], w, batch_size, facts)
        _copy_days(source, target, plan, result, reverse=reverse, progress=progress)
        _delete_days(target, todo[todo["status"] == "target_only"], result, w)
        if not reverse:
            result.candles_refreshed = _refresh(target, todo)
    result.seconds_copy = time.perf_counter() - t0
    if not reverse:
        record(target, "sync", started=started, window=w, whole=_whole(w, facts),
               compared=len(compared), differing=len(result.differing),
               copied=result.days_copied + result.days_deleted,
               rows_read=result.rows_read_source, rows_copied=result.rows_copied,
               seconds=result.seconds)
    log.info("sync: %d symbol-day(s) compared, %d differed, %d copied, %d deleted",
             len(compared), len(result.differing), result.days_copied, result.days_deleted)
    return result


def require_pair(source: Endpoint | str, target: Endpoint | str, *, reverse: bool = False,
                 force: bool = False) -> TargetFacts:
    """Both tables there and distinct, the hypertable on the side the direction says; the
    hypertable's policies (its retention bounds the comparison).

    Forward, a target holding ticks newer than the source's newest is refused unless
    ``force``: the TimescaleDB took writes (after the flip), and a forward pass would
    delete them.
    """
    with connect(source, autocommit=True) as src, connect(target, autocommit=True) as tgt:
        for conn, side in ((src, "source"), (tgt, "target")):
            if not schema.has_table(conn, "tick_data"):
                raise SchemaError(f"table 'tick_data' not found on the {side}; "
                                  + ("run 'tsj provision'" if side == "target" else
                                     "point --source at the Supabase database"))
            schema.require_unfiltered(conn, "tick_data", side=side)
        if one(src, queries.text("migrate.identity")) == one(tgt, queries.text("migrate.identity")):
            raise MigrationError(f"source and target are the same table (database "
                                 f"'{tgt.info.dbname}'); point --target at the other database")
        hyper, plain = (src, tgt) if reverse else (tgt, src)
        if not is_hypertable(hyper) or is_hypertable(plain):
            raise SchemaError(_direction_error(reverse))
        if not reverse:
            if not force:
                _refuse_newer_target(src, tgt)
            for block in ("create_batches", "upgrade_batches", "create_quarantine"):
                tgt.execute(queries.text(f"migrate.{block}"))  # copy_batch's checkpoints
        return facts_of(hyper, db=source if reverse else target)


def is_hypertable(conn: psycopg.Connection[Any]) -> bool:
    return bool(scalar(conn, queries.text("migrate.has_timescaledb"))
                and scalar(conn, queries.text("migrate.is_hypertable")))


def _direction_error(reverse: bool) -> str:
    if reverse:
        return ("--reverse copies from the hypertable into the plain table: --source must "
                "be the TimescaleDB and --target the plain PostgreSQL (Supabase)")
    return ("the target must be the hypertable and the source the plain table; check that "
            "--source and --target are not swapped (the copy back after a flip is "
            "'tsj sync --reverse')")


def newest(conn: psycopg.Connection[Any]) -> dict[str, dt.datetime]:
    """Each symbol's newest tick (a loose index scan, sql/sync.sql)."""
    return {s: t for s, t in conn.execute(queries.text("sync.newest")) if t is not None}


def _refuse_newer_target(src: psycopg.Connection[Any], tgt: psycopg.Connection[Any]) -> None:
    refused = ahead_error(newest(tgt), newest(src), what="a forward catch-up")
    if refused is not None:
        raise refused


def ahead_error(have: dict[str, dt.datetime], want: dict[str, dt.datetime], *,
                what: str) -> MigrationError | None:
    """The error for a target whose newest tick of a symbol is newer than the source's:
    the application writes TimescaleDB (the flag flipped), and ``what`` (which deletes
    what the source lacks) would delete those writes. Rarely, the source deleted its own
    newest ticks: then ``--force`` is right."""
    ahead = sorted(s for s, t in have.items() if s in want and t > want[s])
    if not ahead:
        return None
    s = ahead[0]
    return MigrationError(
        f"the target holds ticks newer than the source's newest ({s}: {have[s].isoformat()} > "
        f"{want[s].isoformat()}): it took writes (after the flip?), which {what} would "
        "delete; copy them back with 'tsj sync --reverse --since FLIP_TIME', or pass --force "
        "if the source deleted its newest ticks")


def _kept(w: Window, kept_since: dt.datetime | None) -> Window:
    """``w`` from the hypertable's first kept day on (its retention drops the older)."""
    if kept_since is None or (w.since is not None and w.since >= kept_since):
        return w
    if w.until is not None and w.until <= kept_since:
        return Window(w.until, w.until, w.symbols)
    return Window(kept_since, w.until, w.symbols)


def _whole(w: Window, facts: TargetFacts) -> bool:
    """The pass compared every symbol over all the kept days."""
    return w.until is None and w.symbols is None and (w.since is None or w.since == facts.kept_since)


def _plan(days: pd.DataFrame, w: Window, batch_size: int, facts: TargetFacts) -> Plan:
    """Batches for the differing days; a batch's key is its range and the source's content
    (its day's checksum), so a checkpoint names what was copied, not how many rows."""
    batches: list[Batch] = []
    for r in days.itertuples():
        for lo, hi, share in _slices(r.day, int(r.rows_source), batch_size, w):
            key = _key("sync", r.symbol, lo.isoformat(), hi.isoformat(), r.checksum_source)
            batches.append(Batch(len(batches), r.symbol, lo, hi, share, key))
    key = "sync-" + _key(*[b.key for b in batches])
    return Plan(key, w, batch_size, tuple(batches), pd.DataFrame(), None, facts)


def _copy_days(source: Endpoint | str, target: Endpoint | str, plan: Plan, result: SyncResult,
               *, reverse: bool, progress: bool | None) -> None:
    """Each batch in its own target transaction, under the parallel run's lock."""
    copy = _copy_back if reverse else copy_batch
    days: set[tuple[str | None, dt.date]] = set()
    with connect(source, autocommit=True) as src, connect(target) as tgt, \
            rows_bar(plan.rows, desc="sync", progress=progress) as bar:
        for batch in plan.batches:
            try:
                with tgt.transaction():
                    tgt.execute(queries.text("sync.lock"))
                    res = copy(src, tgt, batch, plan=plan)
            except psycopg.Error as exc:
                raise MigrationError(f"sync of {batch.label()} failed: {_reason(exc)}; fix the "
                                     "cause and run 'tsj sync' again (days already copied "
                                     "are level and are not copied again)") from exc
            result.rows_read += res.source_rows
            result.rows_copied += res.copied_rows
            result.rows_quarantined += res.quarantined_rows
            assert batch.lo is not None
            days.add((batch.symbol, batch.lo.date()))
            bar.update(batch.expected_rows)
    result.days_copied = len(days)


def _copy_back(src: psycopg.Connection[Any], tgt: psycopg.Connection[Any], batch: Batch, *,
               plan: Plan) -> BatchResult:
    """The copy back into the plain table: delete the range, COPY it from the hypertable.
    No checkpoint or quarantine table is made on Supabase; the plain table takes every row
    the hypertable held."""
    t0 = time.perf_counter()
    tgt.execute(queries.text("migrate.delete_range"), _range(batch))
    with src.cursor() as sc, tgt.cursor() as tc:
        with sc.copy(queries.text("migrate.copy_out"), _range(batch)) as out:
            with tc.copy(queries.compose("migrate.copy_in", table="tick_data")) as inp:
                for data in out:
                    inp.write(data)
        read, written = sc.rowcount, tc.rowcount
    return BatchResult(batch, read, written, 0, time.perf_counter() - t0)


def _range(batch: Batch) -> dict[str, Any]:
    return {"symbol": batch.symbol, "lo": batch.lo, "hi": batch.hi}


def _delete_days(target: Endpoint | str, days: pd.DataFrame, result: SyncResult, w: Window) -> None:
    """Symbol-days the source no longer has (every tick deleted there): gone on the target."""
    if days.empty:
        return
    with connect(target) as tgt:
        quarantine = schema.has_table(tgt, QUARANTINE)
        for r in days.itertuples():
            lo = dt.datetime.combine(r.day, dt.time(), dt.UTC)
            hi = lo + DAY
            lo, hi = max(lo, w.since or lo), min(hi, w.until or hi)  # the window's part
            with tgt.transaction():
                tgt.execute(queries.text("sync.lock"))
                p = {"symbol": r.symbol, "lo": lo, "hi": hi}
                tgt.execute(queries.text("migrate.delete_range"), p)
                if quarantine:
                    tgt.execute(queries.text("migrate.delete_quarantine_range"), p)
    result.days_deleted = len(days)


def _refresh(target: Endpoint | str, days: pd.DataFrame) -> int:
    """The candle views over each changed day (a real-time aggregate shows a changed old
    day only once refreshed)."""
    refreshed = 0
    for day in sorted(set(days["day"])):
        lo = dt.datetime.combine(day, dt.time(), dt.UTC)
        if schema.refresh_written(target, start=lo, end=lo + DAY):
            refreshed += int((days["day"] == day).sum())
    return refreshed


def record(target: Endpoint | str, kind: str, *, started: dt.datetime, window: Window, whole: bool,
           compared: int, differing: int, copied: int, rows_read: int, rows_copied: int,
           seconds: float) -> None:
    """One row of tsj_sync_runs on the target (the readiness check reads the newest level one)."""
    with connect(target, autocommit=True) as conn:
        conn.execute(queries.text("sync.create_runs"))
        conn.execute(queries.text("sync.record_run"), {
            "kind": kind, "started_at": started, "since": window.since, "until": window.until,
            "whole": whole, "days_compared": compared, "days_differing": differing,
            "days_copied": copied, "rows_read_source": rows_read, "rows_copied": rows_copied,
            "seconds": seconds})


def last_level(target: Endpoint | str) -> dt.datetime | None:
    """When a whole comparison last found source and target equal (None: never)."""
    with connect(target, autocommit=True) as conn:
        if not schema.has_table(conn, "tsj_sync_runs"):
            return None
        value: dt.datetime | None = scalar(conn, queries.text("sync.last_level"))
        return value


def _reason(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    msg = (diag.message_primary if diag and diag.message_primary else str(exc)).strip()
    return " ".join(msg.split())[:300]


# -- which rows differ ------------------------------------------------------------------------


def differences(source: Endpoint | str, target: Endpoint | str, *, symbol: str, day: dt.date,
                limit: int = 10) -> pd.DataFrame:
    """Sample rows where one symbol-day differs: per differing row, which column, the
    source's value and the target's (``change`` is 'updated', 'missing on target' or
    'extra on target').

    The day is narrowed to its differing minutes by per-minute digests on both sides, and
    only the rows of the first few of those minutes are read and compared (as multisets:
    the table has no key, a row is its whole content); a missing and an extra row at the
    same instant are shown as one updated row.
    """
    if not 1 <= limit <= 10_000:
        raise ValueError(f"limit={limit} is out of range; use 1-10000")
    lo = dt.datetime.combine(day, dt.time(), dt.UTC)
    rng = {"symbol": symbol, "lo": lo, "hi": lo + DAY}
    with connect(source, autocommit=True) as src, connect(target, autocommit=True) as tgt:
        have = {r[0]: r[1:] for r in tgt.execute(queries.text("sync.minute_digest"), rng)}
        want = {r[0]: r[1:] for r in src.execute(queries.text("sync.minute_digest"), rng)}
        minutes = sorted(m for m in have.keys() | want.keys() if have.get(m) != want.get(m))
        minutes = minutes[:SAMPLE_MINUTES]
        if not minutes:
            return pd.DataFrame(columns=DIFF_COLUMNS)
        params = {"symbol": symbol, "minutes": minutes}
        s_rows = Counter(tuple(r) for r in src.execute(queries.text("sync.minute_rows"), params))
        t_rows = Counter(tuple(r) for r in tgt.execute(queries.text("sync.minute_rows"), params))
    return pd.DataFrame(_pair_rows(s_rows - t_rows, t_rows - s_rows)[:limit], columns=DIFF_COLUMNS)


def _pair_rows(only_source: Counter[tuple[Any, ...]],
               only_target: Counter[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows only one side has, paired by instant: one line per differing column."""
    out: list[list[Any]] = []
    src = sorted(only_source.elements(), key=_by_time)
    tgt = sorted(only_target.elements(), key=_by_time)
    while src or tgt:
        s = src[0] if src else None
        t = tgt[0] if tgt else None
        if s is not None and t is not None and s[0] == t[0]:
            src.pop(0)
            tgt.pop(0)
            out += [[s[1], s[0], "updated", col, s[i], t[i]]
                    for i, col in enumerate(_ROW) if s[i] != t[i]]
        elif t is None or (s is not None and s[0] < t[0]):
            src.pop(0)
            out.append([s[1], s[0], "missing on target", "(row)", _text(s), ""])  # type: ignore[index]
        else:
            tgt.pop(0)
            out.append([t[1], t[0], "extra on target", "(row)", "", _text(t)])
    return out


def _by_time(row: tuple[Any, ...]) -> tuple[Any, str]:
    return row[0], str(row)


def _text(row: tuple[Any, ...] | None) -> str:
    if row is None:
        return ""
    return ", ".join(f"{c}={v}" for c, v in zip(_ROW[2:], row[2:]))


def sample_differences(source: Endpoint | str, target: Endpoint | str, days: pd.DataFrame, *,
                       max_days: int = 5, per_day: int = 5) -> pd.DataFrame:
    """:func:`differences` for the first ``max_days`` of ``days`` (symbol, day columns)."""
    frames = [differences(source, target, symbol=r.symbol, day=r.day, limit=per_day)
              for r in days.dropna(subset=["day"]).head(max_days).itertuples()]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=DIFF_COLUMNS)

