"""Source -> target: batched, resumable, idempotent, verified.

The plan splits the source's ``tick_data`` into batches: one symbol's rows in a slice of
one UTC day, the slices sized from the per-day counts so a batch holds at most
``batch_size`` rows. A batch's key hashes its symbol, range, its day's source count and
the batch size, so a resumed run skips exactly the batches whose checkpoint exists, and a
source that grew on some days redoes only those days.

Each batch runs in ONE target transaction: delete the range, stream COPY out of the
source into COPY in (binary, never decoded in Python), write its checkpoint, commit. A
kill at any moment leaves each batch either whole with its checkpoint or absent; the
delete makes a re-copy exact when nothing else writes the target's range. A batch the
target refuses is redone through a staging table, bisecting down to the refused rows,
which go to ``tsj_migration_quarantine`` with the server's reason. Rows outside the tick
domain (see sql/digest.sql) go there too. At the end, per symbol and UTC day,
source = target + quarantine in rows, volume and the multiset checksum, or
:class:`MigrationError` names the ranges.

Poolers: both sides work through a transaction-mode pooler (Supabase's port 6543,
PgBouncer ``pool_mode = transaction``). A source connection runs each read as one
``COPY ... TO STDOUT`` statement; a target connection runs each batch as one transaction
(its staging table ``ON COMMIT DROP``); no lock, setting or table outlives a transaction.
:func:`pooler_note` says so for the URLs of a run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd
import psycopg

from ..checks import reconcile
from ..provision import schema
from ..provision.layout import TargetFacts, target_facts
from .. import queries
from ..data import digest as days_digest
from ..db import Endpoint, as_endpoint, connect, connection, one, pooling, scalar
from ..db.limits import bounded, lift, naming
from ..domain import QUARANTINE, utc_range
from ..errors import MigrationError, SchemaError
from ..parallel import rows_bar, run_parallel
from . import preflight

log = logging.getLogger("tsj_lab")

DEFAULT_BATCH_SIZE = 100_000
STAGE = "tsj_migration_stage"
#: the dry run's guess when neither history nor a sample can tell (rows/s)
FALLBACK_RATE = 100_000.0


@dataclass(frozen=True)
class Batch:
    """One symbol's rows in [lo, hi); ``lo is None`` marks a symbol's odd rows."""

    batch_id: int
    symbol: str | None
    lo: dt.datetime | None
    hi: dt.datetime | None
    expected_rows: int
    key: str = ""  # what the batch copies: symbol, range, its day's source count, batch size

    @property
    def odd(self) -> bool:
        return self.lo is None

    def label(self) -> str:
        if self.odd:
            return f"{self.symbol} odd rows"
        return f"{self.symbol} [{self.lo:%Y-%m-%d %H:%M:%S}, {self.hi:%Y-%m-%d %H:%M:%S})"


@dataclass(frozen=True)
class Window:
    """What to migrate: [since, until) and the symbols (None: all)."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    symbols: tuple[str, ...] | None = None

    def params(self) -> dict[str, Any]:
        return {"since": self.since or "-infinity", "until": self.until or "infinity",
                "symbols": list(self.symbols) if self.symbols else None}


@dataclass(frozen=True)
class Expired:
    """Source ticks older than the target's retention horizon (its job would drop them)."""

    kept_since: dt.datetime  # the first day kept
    drop_after: dt.timedelta
    days: int
    rows: int
    first_day: dt.date | None
    last_day: dt.date | None
    included: bool  # copied anyway (include_expired)

    def describe(self) -> str:
        if not self.rows:
            return f"no ticks older than the target's {_days(self.drop_after)} retention"
        span = f"{self.first_day}..{self.last_day}"
        if self.included:
            return (f"{self.days} day(s), {self.rows:,} ticks ({span}) are older than the "
                    f"target's {_days(self.drop_after)} retention: copied as asked "
                    "(its retention job will drop them)")
        return (f"skipped {self.days} day(s), {self.rows:,} ticks ({span}): older than the "
                f"target's {_days(self.drop_after)} retention (its job would drop them); "
                "--include-expired copies them")

    def summary(self) -> dict[str, Any]:
        return {"expired_days": self.days, "expired_rows": self.rows,
                "expired_range": f"{self.first_day}..{self.last_day}" if self.rows else "",
                "expired_included": self.included, "kept_since": self.kept_since.isoformat()}


def _days(d: dt.timedelta) -> str:
    return f"{d.days}-day" if d == dt.timedelta(days=d.days) else str(d)


@dataclass(frozen=True)
class Plan:
    key: str
    window: Window  # what is copied and verified: the asked window less the expired days
    batch_size: int
    batches: tuple[Batch, ...]
    counts: pd.DataFrame  # day, symbol, rows (day NaT for odd rows)
    expired: Expired | None = None  # None: the target has no retention policy
    facts: TargetFacts = field(default_factory=TargetFacts)
    #: batches ending by this instant COPY with direct compression (None: never)
    direct_before: dt.datetime | None = None

    @property
    def rows(self) -> int:
        return sum(b.expected_rows for b in self.batches)


def window(*, since: dt.datetime | str | None = None, until: dt.datetime | str | None = None,
           symbols: Sequence[str] | str | None = None) -> Window:
    """A checked :class:`Window`; bad times or an empty range raise ValueError up front."""
    lo, hi = utc_range(since, until, names=("since", "until"))
    if isinstance(symbols, str):
        symbols = [s for s in symbols.split(",") if s.strip()]
    syms = tuple(s.strip() for s in symbols) if symbols else None
    return Window(lo, hi, syms)


def plan(source_url: Endpoint | str, *, batch_size: int = DEFAULT_BATCH_SIZE,
         window: Window = Window(), target_url: Endpoint | str | None = None,
         include_expired: bool = False) -> Plan:
    """The batches for ``window``, from the source's counts per symbol and UTC day.

    With ``target_url``, days older than the target's retention horizon (read from its
    retention policy) are counted in ``Plan.expired`` and left out of the window unless
    ``include_expired``.
    """
    if not 1 <= batch_size <= 10_000_000:
        raise ValueError(f"batch_size={batch_size} is out of range; use 1-10000000")
    facts = target_facts(target_url) if target_url else TargetFacts()
    asked = window
    with connection(source_url, autocommit=True) as conn:
        _require(conn, "tick_data", "source", "create it or point --source at the Supabase database")
        with bounded(conn, "the plan's counts per symbol-day", side="source", fix=_INDEX_FIX):
            expired, old_symbols = _expired(conn, window, facts, include_expired=include_expired)
            if expired is not None and not include_expired:
                window = _kept(window, expired.kept_since)
            rows = _counts(conn, window)
            _require_symbols(conn, asked, {r[0] for r in rows} | old_symbols)
    batches: list[Batch] = []
    odd: dict[str | None, int] = {}
    for symbol, day, n in rows:
        if symbol is None or day is None:
            odd[symbol] = odd.get(symbol, 0) + n
            continue
        for lo, hi, share in _slices(day, n, batch_size, window):
            key = _key(symbol, lo.isoformat(), hi.isoformat(), n, batch_size)
            batches.append(Batch(len(batches), symbol, lo, hi, share, key))
    for symbol, n in sorted(odd.items(), key=lambda kv: str(kv[0])):
        key = _key(symbol, "odd", str(window.since), str(window.until), n)
        batches.append(Batch(len(batches), symbol, None, None, n, key))
    counts = pd.DataFrame(rows, columns=["symbol", "day", "rows"])[["day", "symbol", "rows"]]
    key = _key(*[b.key for b in batches])
    return Plan(key, window, batch_size, tuple(batches), counts, expired, facts)


def _expired(conn: psycopg.Connection[Any], w: Window, facts: TargetFacts, *,
             include_expired: bool) -> tuple[Expired | None, set[str | None]]:
    """The source's ticks in ``w`` before the first kept day (None: no retention policy),
    and their symbols."""
    kept = facts.kept_since
    if kept is None or facts.drop_after is None:
        return None, set()
    old = Window(w.since, min(kept, w.until) if w.until else kept, w.symbols)
    rows = []
    if old.since is None or old.until is None or old.since < old.until:
        rows = _counts(conn, old)
    days = sorted({r[1] for r in rows if r[1] is not None})
    return (Expired(kept, facts.drop_after, len(days), sum(r[2] for r in rows),
                    days[0] if days else None, days[-1] if days else None, include_expired),
            {r[0] for r in rows})


#: what helps when one symbol-day's statement outlasts tsj's own limit
_INDEX_FIX = "check that tick_data has an index on (symbol, time) ('tsj migrate --dry-run' says)"


def _counts(conn: psycopg.Connection[Any], w: Window) -> list[tuple[Any, ...]]:
    """(symbol, day, rows) of the source in ``w``, one statement per symbol-day (day None:
    the odd rows, outside the tick domain or with a NULL symbol), days in order."""
    rows = days_digest.walk(conn, counts=True, since=w.since, until=w.until, only=w.symbols)
    return sorted(rows, key=lambda r: (r[1] is None, r[1] or dt.date.min, str(r[0])))


def _kept(w: Window, kept_since: dt.datetime) -> Window:
    """``w`` from the first kept day on (empty when it ends before)."""
    since = max(w.since, kept_since) if w.since else kept_since
    if w.until is not None and since >= w.until:
        since = w.until
    return Window(since, w.until, w.symbols)


def _require_symbols(conn: psycopg.Connection[Any], w: Window, found: set[str | None]) -> None:
    """A named symbol without a tick in the window is a typo until shown otherwise."""
    missing = [s for s in w.symbols or () if s not in found]
    if not missing:
        return
    span = (f"[{w.since.isoformat() if w.since else '-infinity'}, "
            f"{w.until.isoformat() if w.until else 'infinity'})")
    have = days_digest.symbols_in(conn, since=w.since, until=w.until)[:20]
    there = f"it has {', '.join(map(str, have))} there" if have else "it has no ticks there"
    raise MigrationError(f"symbol(s) {', '.join(missing)} have no ticks in the source's tick_data "
                         f"in {span}; check --symbols and the range ({there})")


def _slices(day: dt.date, n: int, batch_size: int,
            w: Window) -> Iterator[tuple[dt.datetime, dt.datetime, int]]:
    """Equal time slices of the day (clipped to the window), enough for ``batch_size`` rows."""
    start = dt.datetime.combine(day, dt.time(), dt.UTC)
    lo, hi = max(start, w.since or start), min(start + dt.timedelta(days=1), w.until or
                                               start + dt.timedelta(days=1))
    k = -(-n // batch_size)
    span_us = (hi - lo) // dt.timedelta(microseconds=1)
    edges = [lo + dt.timedelta(microseconds=span_us * i // k) for i in range(k)] + [hi]
    for i in range(k):
        # the expected count is a share (for the progress bar); the real one comes from COPY
        yield edges[i], edges[i + 1], n // k + (1 if i < n % k else 0)


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:16]


def _require(conn: psycopg.Connection[Any], table: str, side: str, fix: str) -> None:
    """``table`` exists on ``side`` and this role reads all of its rows."""
    if not schema.has_table(conn, table):
        raise SchemaError(f"table '{table}' not found on the {side}; {fix}")
    schema.require_unfiltered(conn, table, side=side)


# -- copying --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchResult:
    batch: Batch
    source_rows: int
    copied_rows: int
    quarantined_rows: int
    seconds: float


def _params(batch: Batch, plan_key: str) -> dict[str, Any]:
    return {"symbol": batch.symbol, "lo": batch.lo, "hi": batch.hi, "plan_key": plan_key,
            "batch_id": batch.batch_id, "batch_key": batch.key}


def copy_batch(src: psycopg.Connection[Any], tgt: psycopg.Connection[Any], batch: Batch, *,
               plan: Plan) -> BatchResult:
    """Copy one batch with its checkpoint in one target transaction; see the module doc.

    On two idle autocommit connections (a run's batches) the batch is pipelined
    (:func:`_copy_pipelined`); inside a caller's transaction (``tsj sync`` holds its lock
    in one) each statement runs on its own, in a savepoint of that transaction.
    """
    t0 = time.perf_counter()
    if batch.odd:
        return _quarantine_odd(src, tgt, batch, plan, t0)
    try:
        if _idle_autocommit(src) and _idle_autocommit(tgt):
            return _copy_pipelined(src, tgt, batch, plan, t0)
        with bounded(tgt, f"batch {batch.label()}", side="target", fix=_BATCH_FIX):
            _tune(tgt, batch, plan)
            _clear_range(tgt, batch, plan.key)
            read, copied = _stream(src, tgt, batch, "tick_data")
            return _checkpoint(tgt, batch, plan.key, read, copied, 0, t0)
    except psycopg.OperationalError:
        raise
    except psycopg.DatabaseError as exc:
        log.info("batch %s refused (%s); retrying row by row", batch.label(), _reason(exc))
        _settle(src)
        return _copy_with_quarantine(src, tgt, batch, plan, t0)


def _idle_autocommit(conn: psycopg.Connection[Any]) -> bool:
    return conn.autocommit and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def _copy_pipelined(src: psycopg.Connection[Any], tgt: psycopg.Connection[Any], batch: Batch,
                    plan: Plan, t0: float) -> BatchResult:
    """The batch in 7 round trips whatever its size (3 source, 4 target), where 15 were.

    1. each side's opening in one pipeline: BEGIN and tsj's limits (SET LOCAL); on the
       target also its own settings and the range cleared;
    2. the source's COPY out, then the target's COPY in (libpq waits for each to start,
       and for the target's to end: COPY cannot run inside a pipeline);
    3. each side's ending in one pipeline: the source's COMMIT; the target's checkpoint,
       its checksum computed in the same statement (``migrate.checkpoint_held``), and COMMIT.

    psycopg sends a pipeline when it is synced and waits for it then, so the two sides'
    pipelines wait one after the other (nested, as here, or not).

    A failing statement skips the rest of its pipeline, COMMIT included, and the
    transaction is rolled back: the batch is still whole with its checkpoint or absent.
    """
    params = _params(batch, plan.key)
    try:
        # tsj's limits are set in the opening pipelines below (lift), not by bounded()
        with naming(f"the read of batch {batch.label()}", side="source", fix=_BATCH_FIX,
                    lifted=True, role=src.info.user), \
                naming(f"batch {batch.label()}", side="target", fix=_BATCH_FIX, lifted=True,
                       role=tgt.info.user):
            with src.pipeline(), tgt.pipeline():
                src.execute(queries.text("migrate.begin"))
                lift(src)
                tgt.execute(queries.text("migrate.begin"))
                lift(tgt)
                _tune(tgt, batch, plan)
                _clear_range(tgt, batch, plan.key)
            read, copied = _pump(src, tgt, queries.text("migrate.copy_out"), params,
                                 queries.compose("migrate.copy_in", table="tick_data"))
            if read != copied:
                raise MigrationError(f"batch {batch.label()}: read {read} rows but wrote "
                                     f"{copied}; re-run 'tsj migrate'")
            seconds = time.perf_counter() - t0
            with _held_rows(batch, copied), src.pipeline(), tgt.pipeline():
                src.execute(queries.text("migrate.commit"))
                tgt.execute(queries.text("migrate.invalidate"), params)
                tgt.execute(queries.compose("migrate.checkpoint_held", digest=queries.compose(
                    "digest.range", table="tick_data")), params | {
                    "source_rows": read, "copied_rows": copied, "quarantined_rows": 0,
                    "seconds": seconds})
                tgt.execute(queries.text("migrate.commit"))
    except BaseException:
        for conn in (src, tgt):
            if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.rollback()
        raise
    return BatchResult(batch, read, copied, 0, seconds)


def _pump(src: psycopg.Connection[Any], tgt: psycopg.Connection[Any], copy_out: Any,
          params: dict[str, Any], copy_in: Any) -> tuple[int, int]:
    """Stream COPY out of the source into COPY in on the target: (rows read, written)."""
    with src.cursor() as sc, tgt.cursor() as tc:
        with sc.copy(copy_out, params) as out, tc.copy(copy_in) as inp:
            for data in out:
                inp.write(data)
        return sc.rowcount, tc.rowcount


@contextmanager
def _held_rows(batch: Batch, copied: int) -> Iterator[None]:
    """``migrate.checkpoint_held``'s CHECK, refused: the range holds other than the copied
    rows (the error arrives when the pipeline ends, not when the statement is queued)."""
    try:
        yield
    except psycopg.errors.CheckViolation as exc:
        if getattr(exc.diag, "constraint_name", None) != "tsj_migration_batches_held":
            raise
        raise MigrationError(f"batch {batch.label()}: wrote {copied} rows but the target "
                             "holds another number in that range; stop other writers and "
                             "re-run") from None


#: what helps when one batch's statement outlasts tsj's own limit
_BATCH_FIX = "use a smaller --batch-size, and check that tick_data has an index on (symbol, time)"


def _tune(tgt: psycopg.Connection[Any], batch: Batch, plan: Plan) -> None:
    """The batch transaction's own settings (SET LOCAL: nothing outlives it).

    Clearing a range of a compressed chunk (a re-run after the compression job ran)
    decompresses its batches; TimescaleDB refuses a transaction that decompresses more than
    ``max_tuples_decompressed_per_dml_transaction`` (100,000) tuples, and a day's chunk
    can hold more, so the cap is lifted for the batch. With ``direct_compress``, days old
    enough for the compression policy COPY straight into compressed batches.
    """
    if plan.facts.decompress_limit:
        tgt.execute(queries.text("migrate.set_local"),
                    {"name": "timescaledb.max_tuples_decompressed_per_dml_transaction",
                     "value": "0"})
    if plan.direct_before is not None and batch.hi is not None and batch.hi <= plan.direct_before:
        tgt.execute(queries.text("migrate.set_local"),
                    {"name": "timescaledb.enable_direct_compress_copy", "value": "on"})


def _clear_range(tgt: psycopg.Connection[Any], batch: Batch, plan_key: str) -> None:
    tgt.execute(queries.text("migrate.delete_range"), _params(batch, plan_key))
    tgt.execute(queries.text("migrate.delete_quarantine_range"), _params(batch, plan_key))


def _stream(src: psycopg.Connection[Any], tgt: psycopg.Connection[Any], batch: Batch,
            table: str) -> tuple[int, int]:
    """COPY the batch out of the source straight into ``table``: (rows read, rows written)."""
    copy_in = queries.compose("migrate.copy_in", table=table)
    with bounded(src, f"the read of batch {batch.label()}", side="source", fix=_BATCH_FIX), \
            src.cursor() as sc, tgt.cursor() as tc:
        with sc.copy(queries.text("migrate.copy_out"), _params(batch, "")) as out:
            with tc.copy(copy_in) as inp:
                for data in out:
                    inp.write(data)
        return sc.rowcount, tc.rowcount


def _copy_with_quarantine(src: psycopg.Connection[Any], tgt: psycopg.Connection[Any],
                          batch: Batch, plan: Plan, t0: float) -> BatchResult:
    """The slow path: stage the batch, insert it by bisection, quarantine what is refused."""
    plan_key = plan.key
    with bounded(tgt, f"batch {batch.label()} row by row", side="target", fix=_BATCH_FIX):
        _tune(tgt, batch, replace(plan, direct_before=None))  # row by row: no direct COPY
        _clear_range(tgt, batch, plan_key)
        tgt.execute(queries.text("migrate.create_stage"))
        read, staged = _stream(src, tgt, batch, STAGE)
        bad = _bisect(tgt, staged, batch, plan_key)
        return _checkpoint(tgt, batch, plan_key, read, staged - bad, bad, t0)


def _bisect(tgt: psycopg.Connection[Any], staged: int, batch: Batch, plan_key: str) -> int:
    """Insert staged rows 1..staged, halving refused ranges down to single rows."""
    bad = 0
    todo = [(1, staged + 1)]
    while todo:
        lo, hi = todo.pop()
        try:
            with tgt.transaction():  # a savepoint: a refused range rolls back alone
                tgt.execute(queries.text("migrate.stage_insert"), {"lo": lo, "hi": hi})
        except psycopg.OperationalError:
            raise
        except psycopg.DatabaseError as exc:
            if hi - lo > 1:
                mid = (lo + hi) // 2
                todo += [(mid, hi), (lo, mid)]
                continue
            tgt.execute(queries.text("migrate.stage_quarantine"),
                        {"n": lo, "reason": _reason(exc), **_params(batch, plan_key)})
            bad += 1
    return bad


def _quarantine_odd(src: psycopg.Connection[Any], tgt: psycopg.Connection[Any], batch: Batch,
                    plan: Plan, t0: float) -> BatchResult:
    """A symbol's rows outside the tick domain go to the quarantine, all of them."""
    params = {**_params(batch, plan.key), **plan.window.params()}
    with bounded(tgt, f"the quarantine of {batch.label()}", side="target"):
        tgt.execute(queries.text("migrate.odd_clear"), params)
        with bounded(src, f"the read of {batch.label()}", side="source", fix=_INDEX_FIX), \
                src.cursor() as sc, tgt.cursor() as tc:
            with sc.copy(queries.text("migrate.odd_copy_out"), params) as out:
                with tc.copy(queries.text("migrate.odd_copy_in")) as inp:
                    for data in out:
                        inp.write(data)
            read = sc.rowcount
        return _checkpoint(tgt, batch, plan.key, read, 0, read, t0)


def _checkpoint(tgt: psycopg.Connection[Any], batch: Batch, plan_key: str, read: int,
                copied: int, quarantined: int, t0: float) -> BatchResult:
    if read != copied + quarantined:
        raise MigrationError(f"batch {batch.label()}: read {read} rows but wrote {copied} and "
                             f"quarantined {quarantined}; re-run 'tsj migrate'")
    checksum = None
    if not batch.odd:
        held, checksum = one(tgt, queries.compose("digest.range", table="tick_data"),
                             _params(batch, plan_key))
        if held != copied:  # another writer in the range, or rows dropped by a trigger
            raise MigrationError(f"batch {batch.label()}: wrote {copied} rows but the target "
                                 f"holds {held} in that range; stop other writers and re-run")
    seconds = time.perf_counter() - t0
    tgt.execute(queries.text("migrate.invalidate"), _params(batch, plan_key))
    tgt.execute(queries.text("migrate.checkpoint"), {
        **_params(batch, plan_key), "source_rows": read, "copied_rows": copied,
        "quarantined_rows": quarantined, "checksum": checksum, "seconds": seconds})
    return BatchResult(batch, read, copied, quarantined, seconds)


def _reason(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    msg = (diag.message_primary if diag and diag.message_primary else str(exc)).strip()
    return " ".join(msg.split())[:500]


def _settle(conn: psycopg.Connection[Any]) -> None:
    """Bring a source connection whose COPY was cut short back to idle."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.rollback()


def _done(conn: psycopg.Connection[Any], p: Plan) -> set[int]:
    """Ids of the plan's batches whose content already has a checkpoint on the target."""
    keys = [b.key for b in p.batches]
    have = {r[0] for r in conn.execute(queries.text("migrate.done"), {"keys": keys})}
    return {b.batch_id for b in p.batches if b.key in have}


# -- a run ----------------------------------------------------------------------------------


@dataclass
class MigrationResult:
    """What a run did, the source anomalies it carried, and the verification table."""

    plan_key: str
    batches: int
    skipped: int  # batches already checkpointed by an earlier (killed) run
    source_rows: int  # rows read by this run
    copied_rows: int
    quarantined_rows: int
    seconds: float
    anomalies: dict[str, int] = field(default_factory=dict)
    verification: pd.DataFrame = field(default_factory=pd.DataFrame)
    history: pd.DataFrame = field(default_factory=pd.DataFrame)  # checkpoints, in order
    candles_refreshed: list[str] = field(default_factory=list)  # views brought up to date
    expired: Expired | None = None  # ticks past the target's retention (skipped or not)
    direct_compress: bool = False  # old days were COPYed straight into compressed batches
    workers: int = 1  # batches in flight (given, or from the round trip: auto_workers)

    @property
    def rows_per_s(self) -> float:
        return self.source_rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        """Verified, and no symbol-day of the source differs (target-only days are listed)."""
        v = self.verification
        return bool(len(v)) and not (v["status"] == "mismatch").any()

    def summary(self) -> dict[str, Any]:
        return {"plan_key": self.plan_key, "batches": self.batches, "skipped": self.skipped,
                "source_rows": self.source_rows, "copied_rows": self.copied_rows,
                "quarantined_rows": self.quarantined_rows, "seconds": round(self.seconds, 3),
                "rows_per_s": round(self.rows_per_s), **self.anomalies,
                "verified_days": len(self.verification),
                **self._days(), **(self.expired.summary() if self.expired else {}),
                "direct_compress": self.direct_compress, "workers": self.workers}

    def _days(self) -> dict[str, int]:
        status = self.verification.get("status", pd.Series(dtype=object))
        return {"mismatched_days": int((status == "mismatch").sum()),
                "target_only_days": int((status == "target_only").sum())}


def run(
    source_url: Endpoint | str,
    target_url: Endpoint | str,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    since: dt.datetime | str | None = None,
    until: dt.datetime | str | None = None,
    symbols: Sequence[str] | str | None = None,
    workers: int | None = None,
    progress: bool | None = None,
    verify_after: bool = True,
    include_expired: bool = False,
    direct_compress: bool | None = None,
) -> MigrationResult:
    """Migrate (or resume migrating) the window; raises MigrationError when it does not verify.

    Days older than the target's retention horizon are skipped (and reported in
    ``result.expired``) unless ``include_expired``; the verification covers the days copied.
    ``direct_compress`` True COPYs days older than the target's compress_after with direct
    compression where the server has it (plain COPY elsewhere); None takes
    :data:`DIRECT_COMPRESS_DEFAULT`, chosen by the figures in docs/migration.md.
    ``workers`` None sizes the batches in flight by the round trip (:func:`auto_workers`).
    """
    if workers is not None and not 1 <= workers <= 16:
        raise ValueError(f"workers={workers} is out of range; use 1-16")
    w = window(since=since, until=until, symbols=symbols)
    source, target = as_endpoint(source_url, name="source"), as_endpoint(target_url, name="target")
    # the run's single steps (checks, plan, checkpoints' setup, history, refresh, digests)
    # share one connection per side; the batches have one pair per worker
    with source.held(), target.held():
        return _run(source, target, w, batch_size=batch_size, workers=workers,
                    progress=progress, verify_after=verify_after,
                    include_expired=include_expired, direct_compress=direct_compress)


def _run(source_url: Endpoint, target_url: Endpoint, w: Window, *, batch_size: int,
         workers: int | None, progress: bool | None, verify_after: bool, include_expired: bool,
         direct_compress: bool | None) -> MigrationResult:
    round_trip = _refuse_same_table(source_url, target_url)
    if workers is None:
        workers = auto_workers(round_trip)
        log.info("round trip %.0f ms: %d batch(es) in flight", round_trip * 1000, workers)
    preflight.check(source_url, target_url).require()  # before anything is read or written
    p = plan(source_url, batch_size=batch_size, window=w, target_url=target_url,
             include_expired=include_expired)
    p = replace(p, direct_before=_direct_before(p.facts, direct_compress))
    w = p.window
    done = _setup_target(target_url, p)
    todo = [b for b in p.batches if b.batch_id not in done]
    log.info("plan %s: %d batches, %d already done, %d rows to copy", p.key, len(p.batches),
             len(p.batches) - len(todo), sum(b.expected_rows for b in todo))
    t0 = time.perf_counter()
    results = _copy_all(source_url, target_url, p, todo, workers=workers, progress=progress)
    seconds = time.perf_counter() - t0
    result = MigrationResult(
        p.key, len(p.batches), len(p.batches) - len(todo), sum(r.source_rows for r in results),
        sum(r.copied_rows for r in results), sum(r.quarantined_rows for r in results), seconds,
        anomalies=anomalies(source_url, window=w), history=history(target_url, p.key),
        expired=p.expired, direct_compress=p.direct_before is not None,
        workers=min(workers, max(len(todo), 1)))
    if result.copied_rows:  # the candle views show the new ticks only once refreshed
        # a refresh runs outside any transaction block: tsj cannot SET LOCAL its own limit
        with naming("the candle views' refresh (the ticks are copied)", side="target",
                    fix="then re-run 'tsj migrate' (copied batches are skipped)"):
            result.candles_refreshed = [
                r.view for r in schema.refresh_written(target_url, start=w.since, end=w.until)]
    if verify_after:
        result.verification = verify(source_url, target_url, window=w)
        raise_on_mismatch(result.verification)
    return result


#: the default of ``direct_compress``, chosen by the figures (docs/migration.md): direct
#: compression writes compressed chunks faster (migrate_paths.measure), but a whole migration
#: was no faster with it (each batch's checksum and the candle refresh read the rows back
#: from compressed batches, and the policy later rewrites the unordered chunks it leaves)
DIRECT_COMPRESS_DEFAULT = False


def _direct_before(facts: TargetFacts, asked: bool | None) -> dt.datetime | None:
    """Where direct compression on COPY applies: batches ending by the policy's horizon."""
    if not (DIRECT_COMPRESS_DEFAULT if asked is None else asked):
        return None
    if not facts.direct_compress or facts.compress_before is None:
        return None  # apache, TimescaleDB < 2.23, or no compression policy: plain COPY
    return facts.compress_before


def _refuse_same_table(source_url: Endpoint | str, target_url: Endpoint | str) -> float:
    """Migrating a table onto itself would delete it batch by batch. Returns the longer
    side's round trip (seconds) as the identity reads took: what sizes the batches in flight."""
    with connection(source_url, autocommit=True) as src:
        t1 = time.perf_counter()
        source_id = one(src, queries.text("migrate.identity"))
        t2 = time.perf_counter()
    with connection(target_url, autocommit=True) as conn:
        t3 = time.perf_counter()
        if one(conn, queries.text("migrate.identity")) == source_id:
            raise MigrationError(f"source and target are the same table (database "
                                 f"'{source_id[1]}'); point --target at the TimescaleDB")
        t4 = time.perf_counter()
    return max(t2 - t1, t4 - t3)


#: batches in flight per second of round trip: a batch waits about 7 round trips
#: (_copy_pipelined), so on a long link more of them must be under way to keep both
#: servers busy (docs/migration.md, "Round trips")
WORKERS_PER_SECOND_RTT = 25
MAX_WORKERS = 8


def auto_workers(round_trip_s: float) -> int:
    """The batches in flight for a link whose round trip is ``round_trip_s``: 1 when near
    (the source is production), up to :data:`MAX_WORKERS` at 300 ms."""
    return max(1, min(MAX_WORKERS, 1 + int(round_trip_s * WORKERS_PER_SECOND_RTT)))


def _setup_target(target_url: Endpoint | str, p: Plan) -> set[int]:
    """Checkpoint and quarantine tables in place; the batch ids this plan already finished."""
    with connection(target_url, autocommit=True) as conn:
        _require(conn, "tick_data", "target", "run 'tsj provision'")
        _require_hypertable(conn)
        with conn.pipeline():  # one round trip for the five (a far target pays 1, not 5)
            for block in ("create_batches", "upgrade_batches", "upgrade_batches_held",
                          "create_quarantine"):
                conn.execute(queries.text(f"migrate.{block}"))
            done = conn.execute(queries.text("migrate.done"), {"keys": [b.key for b in p.batches]})
        have = {r[0] for r in done.fetchall()}
        return {b.batch_id for b in p.batches if b.key in have}


def _require_hypertable(conn: psycopg.Connection[Any]) -> None:
    """The target's tick_data must be a hypertable: a plain one is most likely the source,
    with --source and --target swapped, and a run would replace its days with the other's."""
    ts = conn.execute(queries.text("migrate.has_timescaledb")).fetchone()
    if ts and ts[0] and scalar(conn, queries.text("migrate.is_hypertable")):
        return
    raise SchemaError(f"tick_data on the target (database '{conn.info.dbname}') is not a "
                      "hypertable; check that --source and --target are not swapped, or run "
                      "'tsj provision' on the TimescaleDB")


def _copy_all(source_url: Endpoint | str, target_url: Endpoint | str, p: Plan,
              todo: list[Batch], *, workers: int,
              progress: bool | None) -> list[BatchResult]:
    """The batches over ``workers`` pairs of connections, with a rows/s and ETA bar."""
    @contextmanager
    def pair() -> Iterator[tuple[psycopg.Connection[Any], psycopg.Connection[Any]]]:
        # autocommit both: copy_batch opens each batch's transaction in its first pipeline
        with connect(source_url, autocommit=True) as src, \
                connect(target_url, autocommit=True) as tgt:
            yield src, tgt

    def step(conns: tuple[psycopg.Connection[Any], psycopg.Connection[Any]],
             batch: Batch) -> BatchResult:
        try:
            return copy_batch(*conns, batch, plan=p)
        except psycopg.Error as exc:
            raise MigrationError(
                f"batch {batch.label()} failed: {_reason(exc)}; fix the cause and "
                "re-run 'tsj migrate' (finished batches are kept)") from exc

    with rows_bar(sum(b.expected_rows for b in todo), desc="migrate", progress=progress) as bar:
        return run_parallel(todo, step, session=pair, workers=workers, name="tsj-migrate",
                            on_done=lambda batch, _res: bar.update(batch.expected_rows))


def history(target_url: Endpoint | str, plan_key: str) -> pd.DataFrame:
    """The plan's checkpoints in commit order, with the cumulated rows (throughput chart)."""
    cols = ["batch_id", "symbol", "lo", "hi", "source_rows", "copied_rows", "quarantined_rows",
            "checksum", "seconds", "finished_at"]
    with connection(target_url, autocommit=True) as conn:
        rows = conn.execute(queries.text("migrate.history"), {"plan_key": plan_key}).fetchall()
    df = pd.DataFrame(rows, columns=cols)
    df["cumulative_rows"] = df["source_rows"].cumsum()
    df["rows_per_s"] = df["source_rows"] / df["seconds"].where(df["seconds"] > 0)
    return df


_ANOMALIES = ("crossed_quotes", "null_prices", "duplicates")


def anomalies(source_url: Endpoint | str, *, window: Window = Window()) -> dict[str, int]:
    """Crossed quotes, rows with NULL prices and duplicate rows in the source window,
    counted one symbol-day at a time (and the odd rows in one statement)."""
    w = window
    with connection(source_url, autocommit=True) as conn, bounded(
            conn, "the count of source anomalies per symbol-day", side="source",
            fix=_INDEX_FIX):
        syms = list(w.symbols) if w.symbols else days_digest.symbols(conn)
        ranges = days_digest.days(conn, syms, since=w.since, until=w.until)
        found = [r for rows in days_digest.pipelined(
            conn, queries.text("migrate.anomalies"),
            [{"symbol": s, "lo": lo, "hi": hi} for s, lo, hi in ranges]) for r in rows]
        found += conn.execute(queries.text("migrate.anomalies_odd"), {
            **w.params(), "symbols": syms, "nulls": not w.symbols}).fetchall()
    return {k: sum(int(r[i]) for r in found) for i, k in enumerate(_ANOMALIES)}


# -- verification and dry run ---------------------------------------------------------------

_DIGEST = ["symbol", "day", "rows", "first_time", "last_time", "volume", "checksum"]


def digest(url: Endpoint | str, *, table: str = "tick_data", window: Window = Window()) -> pd.DataFrame:
    """``digest.day`` of ``table``: rows, first/last time, volume, checksum per symbol-day.

    One statement per symbol-day (tsj_lab.data.digest), so a role's statement_timeout
    meets bounded statements; the quarantine, small and without an index, in one.
    """
    return pd.DataFrame(_digest_rows(url, table=table, window=window), columns=_DIGEST)


def _digest_rows(url: Endpoint | str, *, table: str, window: Window) -> list[tuple[Any, ...]]:
    with connection(url, autocommit=True) as conn:
        if not schema.has_table(conn, table):
            return []
        side = f"database '{conn.info.dbname}'"
        schema.require_unfiltered(conn, table, side=side)
        with bounded(conn, f"the digest of {table} per symbol-day", side=side, fix=_INDEX_FIX):
            if table == QUARANTINE:
                rows = conn.execute(queries.compose("digest.day", table=table),
                                    window.params()).fetchall()
            else:
                rows = days_digest.walk(conn, table=table, since=window.since,
                                        until=window.until, only=window.symbols)
    # digest.day's order: symbol, then day, NULLs last
    rows.sort(key=lambda r: (r[0] is None, r[0] or "", r[1] is None, r[1] or dt.date.min))
    return [tuple(r) for r in rows]


def verify(source_url: Endpoint | str, target_url: Endpoint | str, *,
           window: Window = Window()) -> pd.DataFrame:
    """Per symbol and UTC day: source against target + quarantine, judged by
    :func:`tsj_lab.checks.reconcile.compare` (the comparison ``tsj check`` makes too).

    status is 'ok' when rows (target + quarantined), volume and checksum agree;
    'target_only' for a symbol-day the source does not have (rows the migration never
    touched, e.g. generated into the target: listed, not a failure); else 'mismatch'.
    volume_target and checksum_target include the quarantined rows (the
    digests add up). day is None for rows outside the tick domain.
    """
    src, tgt, qua = (reconcile.digests(_digest_rows(url, table=table, window=window))
                     for url, table in ((source_url, "tick_data"), (target_url, "tick_data"),
                                        (target_url, QUARANTINE)))
    rows = []
    for c in reconcile.compare(src, tgt, qua):
        both = reconcile.add(c.target, c.quarantined)
        (n_src, vol_src, _), (n_both, vol_both, _) = reconcile.sums(c.source), reconcile.sums(both)
        held_aside = c.quarantined[0] if c.quarantined else 0
        rows.append((c.symbol, c.day, n_src, n_both - held_aside, held_aside, vol_src, vol_both,
                     c.source[4] if c.source else None, both[4] if both else None,
                     "ok" if c.same else c.status))
    cols = ["symbol", "day", "rows_source", "rows_target", "quarantined", "volume_source",
            "volume_target", "checksum_source", "checksum_target", "status"]
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values(["day", "symbol"], na_position="last", key=lambda s: s.astype(str)
                           ).reset_index(drop=True)


def raise_on_mismatch(verification: pd.DataFrame) -> None:
    """MigrationError naming the (symbol, day) ranges where source and target differ."""
    bad = verification[verification["status"] == "mismatch"]
    if bad.empty:
        return
    ranges = ", ".join(
        f"{r.symbol} {r.day if r.day is not None and not pd.isna(r.day) else 'odd-time'}"
        f" ({r.rows_source} source / {r.rows_target} target + {r.quarantined} quarantined rows)"
        for r in bad.head(10).itertuples())
    more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
    raise MigrationError(f"verification failed for {len(bad)} symbol-day(s): {ranges}{more}; "
                         "run 'tsj sync' (it re-copies the days whose content differs; "
                         "'tsj migrate' redoes only days whose row count changed)")


@dataclass(frozen=True)
class DryRun:
    """What a run would copy, and how long it would take."""

    plan_key: str
    counts: pd.DataFrame  # day, symbol, rows
    batches: int
    done: int  # batches already checkpointed on the target
    rows: int  # rows still to copy
    rate: float  # rows/s the estimate assumes
    rate_from: str  # 'history', 'sample' or 'default'
    expired: Expired | None = None  # ticks past the target's retention

    @property
    def estimated_s(self) -> float:
        return self.rows / self.rate if self.rate > 0 else float("nan")


def dry_run(
    source_url: Endpoint | str,
    target_url: Endpoint | str,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    since: dt.datetime | str | None = None,
    until: dt.datetime | str | None = None,
    symbols: Sequence[str] | str | None = None,
    include_expired: bool = False,
) -> DryRun:
    """Counts per day and symbol and an estimated time; writes nothing to either side.

    The rate comes from earlier runs' checkpoints on this target, else from a sample: the
    first batch COPYed into the target inside a transaction that is rolled back.
    """
    w = window(since=since, until=until, symbols=symbols)
    p = plan(source_url, batch_size=batch_size, window=w, target_url=target_url,
             include_expired=include_expired)
    done: set[int] = set()
    rate, rate_from = 0.0, "default"
    with connection(target_url, autocommit=True) as conn:
        # counting works before provisioning too; only the estimate is then a guess
        provisioned = schema.has_table(conn, "tick_data")
        if provisioned:
            _require_hypertable(conn)
        if schema.has_table(conn, "tsj_migration_batches"):
            try:
                done = _done(conn, p)
            except psycopg.errors.UndefinedColumn:  # checkpoints older than batch keys
                done = set()
            rate = float(scalar(conn, queries.text("migrate.rate")) or 0)
            rate_from = "history" if rate else rate_from
    if not rate and provisioned:
        rate, rate_from = _sample_rate(source_url, target_url, p)
    elif not rate:
        rate, rate_from = FALLBACK_RATE, "default (target not provisioned: run 'tsj provision')"
    rows = sum(b.expected_rows for b in p.batches if b.batch_id not in done)
    return DryRun(p.key, p.counts, len(p.batches), len(done), rows, rate, rate_from, p.expired)


def _sample_rate(source_url: Endpoint | str, target_url: Endpoint | str, p: Plan) -> tuple[float, str]:
    first = next((b for b in p.batches if not b.odd), None)
    if first is None:
        return FALLBACK_RATE, "default"
    with connect(source_url, autocommit=True) as src, connect(target_url) as tgt:
        t0 = time.perf_counter()
        try:
            lift(tgt)  # as a batch's transaction does
            read, _ = _stream(src, tgt, first, "tick_data")
        except psycopg.DatabaseError:
            return FALLBACK_RATE, "default"
        finally:
            tgt.rollback()  # the sample never stays
        secs = time.perf_counter() - t0
    return (read / secs if read and secs > 0 else FALLBACK_RATE), "sample"


def quarantined(target_url: Endpoint | str, *, limit: int = 100) -> pd.DataFrame:
    """The newest quarantined rows with their reason (time as text: it may be infinite)."""
    if not 1 <= limit <= 100_000:
        raise ValueError(f"limit={limit} is out of range; use 1-100000")
    cols = ["time", "symbol", "bid_price", "ask_price", "last_price", "volume", "source",
            "trade_id", "account_id", "reason", "plan_key", "batch_id", "quarantined_at"]
    with connection(target_url, autocommit=True) as conn:
        if not schema.has_table(conn, QUARANTINE):
            return pd.DataFrame(columns=cols)
        rows = conn.execute(queries.text("migrate.quarantine_rows"), {"limit": limit}).fetchall()
    return pd.DataFrame(rows, columns=cols).astype({"volume": "Int64", "batch_id": "Int64"})


def pooler_note(source_url: Endpoint | str, target_url: Endpoint | str) -> str | None:
    """One line on the pooler mode each side needs, when either is reached through one."""
    sides = {"source": pooling(source_url), "target": pooling(target_url)}
    if not any(p.pooled for p in sides.values()):
        return None
    how = ", ".join(f"{name} {p.describe()}" for name, p in sides.items())
    return (f"{how}: transaction mode is enough for both (each source read is one COPY "
            "statement, each target batch one transaction); session mode works too")
