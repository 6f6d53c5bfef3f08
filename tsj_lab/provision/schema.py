"""Provisioning: applies the sql/ files by name, edition-aware, and validates AC1-AC6.

The target gets what its license allows (DESIGN.md, Editions):

* ``timescale``: the story's production DDL (sql/schema_timescale.sql): hypertable with
  1-day chunks, columnstore/compression + 30-day policy, 90-day retention policy, the
  four candle continuous aggregates (real-time) with refresh policies.
* ``apache`` (the embedded default): the hypertable and index, the four candles as
  PostgreSQL materialized views (sql/schema.sql) refreshed by :func:`refresh_candles`,
  retention by :func:`apply_retention`; compression is reported unsupported.

Provisioning reads the catalog first and applies only the statements whose object is
missing, so a second run changes nothing and says so; a dry run returns that SQL
without executing it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from .. import queries
from ..db import Endpoint, as_endpoint, capabilities, clients, limits, shown
from . import layout
from ..db import Capabilities, connection, one, scalar, url_of, using
from ..domain import (CANDLE_BY_VIEW, CANDLE_VIEWS, CANDLES, FAIL, OK, UNSUPPORTED, WARN,
                     CandleView, Finding)
from ..errors import ConnectError, SchemaError
from .layout import (CHUNK_INTERVAL, COMPRESS_AFTER, RETENTION, compression_settings,
                     story_compression)
from ..domain import interval_text as _interval

log = logging.getLogger("tsj_lab")

TICK_INDEX = "tick_data_symbol_time_idx"
POOL_TEST_SIZE = 50
# CHUNK_INTERVAL, COMPRESS_AFTER and RETENTION (the story's intervals) come from layout


@dataclass(frozen=True)
class CandlePolicy:
    """A continuous aggregate's refresh policy: materialize [now - start_offset,
    now - end_offset) every ``schedule_interval``."""

    start_offset: timedelta
    end_offset: timedelta
    schedule_interval: timedelta

    def __str__(self) -> str:
        return (f"start {_interval(self.start_offset)}, end {_interval(self.end_offset)}, "
                f"every {_interval(self.schedule_interval)}")


#: the story's policy for candle_1m; the others lag one bucket of their own and span at
#: least two (a refresh window must), and none reaches back to the retention horizon.
#: Why these (the live run, docs/live.md): a refresh costs under a second for every view
#: (a rollup reads candle_1m, 10-60x cheaper than the ticks), so freshness decides. A
#: rollup's end offset (5 min and up) exceeds candle_1m's worst lag (1 min bucket + 1 min
#: end offset + 1 min schedule), so it never materializes a bucket whose minutes candle_1m
#: has not; a schedule shorter than the bucket finds no new whole bucket to materialize;
#: the start offsets (24 buckets each) take in ticks that arrive that late.
CANDLE_POLICIES = {
    "candle_1m": CandlePolicy(timedelta(hours=1), timedelta(minutes=1), timedelta(minutes=1)),
    "candle_5m": CandlePolicy(timedelta(hours=2), timedelta(minutes=5), timedelta(minutes=5)),
    "candle_15m": CandlePolicy(timedelta(hours=6), timedelta(minutes=15),
                               timedelta(minutes=15)),
    "candle_1h": CandlePolicy(timedelta(days=1), timedelta(hours=1), timedelta(hours=1)),
}

#: TimescaleDB refuses a refresh policy whose window (start_offset - end_offset) covers
#: fewer buckets: the story's 1 hour / 1 minute pair is valid for candle_1m alone
MIN_REFRESH_BUCKETS = 2


def check_candle_policies(policies: dict[str, CandlePolicy] | None = None) -> None:
    """ValueError naming the first view whose policy TimescaleDB would refuse: a window of
    fewer than two of its buckets, or an end offset not before the start offset."""
    for view, pol in (policies or CANDLE_POLICIES).items():
        width = CANDLE_BY_VIEW[view].width
        if pol.start_offset - pol.end_offset < MIN_REFRESH_BUCKETS * width:
            raise ValueError(
                f"refresh policy of {view} ({pol}) covers "
                f"{(pol.start_offset - pol.end_offset) / width:.2f} buckets of "
                f"{_interval(width)}; TimescaleDB needs at least {MIN_REFRESH_BUCKETS}: "
                f"start_offset >= end_offset + {_interval(MIN_REFRESH_BUCKETS * width)}")


def _unique_index(view: str) -> str:
    return f"{view}_symbol_bucket_idx"


def create_source(url: Endpoint | str) -> None:
    """The Supabase-shaped plain ``tick_data`` (no extension needed)."""
    with connection(url) as conn:
        conn.execute(queries.compose("schema.create_tick_table", table="tick_data"))
        conn.execute(queries.text("schema.create_tick_indexes"))


# -- the plan: which statements the target still needs ----------------------------------


@dataclass(frozen=True)
class Step:
    """One statement of provisioning: the object it makes and the sql/ block that does."""

    target: str  # the object created or changed, e.g. 'candle_5m'
    action: str  # in words: 'create materialized view'
    query: str  # the block name in sql/*.sql
    needs: str = "create"  # 'create' (CREATE on the schema) or 'owner' (owns tick_data)
    parts: tuple[tuple[str, str | sql.Composable], ...] = ()  # see queries.compose
    params: tuple[tuple[str, Any], ...] = ()

    def statement(self) -> psycopg.sql.SQL | psycopg.sql.Composed:
        return queries.compose(self.query, **dict(self.parts))

    def run(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(self.statement(), dict(self.params) or None)

    def sql_text(self, conn: psycopg.Connection[Any]) -> str:
        """The statement as it runs, values bound (what a dry run prints)."""
        return psycopg.ClientCursor(conn).mogrify(self.statement(), dict(self.params) or None)


@dataclass(frozen=True)
class _State:
    has_table: bool
    is_hypertable: bool
    chunk_interval: timedelta | None
    compression_enabled: bool
    views: frozenset[str]
    indexes: frozenset[str]
    compress_story: bool  # tick_data's columnstore settings are the story's
    compress_after: timedelta | None  # the compression policy's; None: no policy
    drop_after: timedelta | None  # the retention policy's; None: no policy
    candle_policies: tuple[tuple[str, CandlePolicy], ...] = ()  # view -> its refresh policy


def _read_state(conn: psycopg.Connection[Any]) -> _State:
    indexes = [TICK_INDEX, *(_unique_index(v) for v in CANDLE_VIEWS)]
    cur = conn.execute(queries.text("schema_catalog.provision_state"),
                       {"views": list(CANDLE_VIEWS), "indexes": indexes})
    row = cur.fetchone()
    assert row is not None
    vals = dict(zip([d.name for d in cur.description or ()], row))
    for key in ("views", "indexes"):
        vals[key] = frozenset(vals[key])
    policies: dict[str, CandlePolicy] = {}
    for view, _job, start, end, every in conn.execute(queries.text("schema_catalog.candle_policies"),
                                                      {"views": list(CANDLE_VIEWS)}):
        policies.setdefault(view, CandlePolicy(start, end, every))
    settings = compression_settings(conn) if vals["compression_enabled"] else None
    return _State(**vals, compress_story=bool(settings and story_compression(*settings)),
                  candle_policies=tuple(sorted(policies.items())))


def _table_steps(conn: psycopg.Connection[Any], st: _State, *, migrate_data: bool) -> list[Step]:
    steps = []
    if not st.has_table:
        steps.append(Step("tick_data", "create table", "schema.create_tick_table",
                          parts=(("table", "tick_data"),)))
    if not st.is_hypertable:
        rows = 0
        if st.has_table:
            _check_privileges(conn, [Step("tick_data", "convert", "schema_catalog.count_ticks", "owner")])
            rows = scalar(conn, queries.text("schema_catalog.count_ticks"))
        if rows and not migrate_data:
            raise SchemaError(
                f"table 'tick_data' exists as a plain table with {rows} rows; nothing was "
                "changed; run 'tsj provision --migrate-data' to convert it "
                "(create_hypertable(..., migrate_data => true) copies every row into chunks)"
            )
        query = "schema.create_hypertable_migrate_data" if rows else "schema.create_hypertable"
        steps.append(Step("tick_data", "convert to hypertable (1-day chunks)", query, "owner"))
    elif st.chunk_interval != CHUNK_INTERVAL:
        steps.append(Step("tick_data", f"set chunk interval {_interval(st.chunk_interval)} -> "
                          "1 day (new chunks; existing ones keep theirs)", "schema.set_chunk_interval",
                          "owner"))
    if TICK_INDEX not in st.indexes:
        steps.append(Step(TICK_INDEX, "create index (symbol, time DESC)", "schema.create_tick_indexes",
                          "owner"))
    return steps


def _apache_steps(st: _State) -> list[Step]:
    steps = []
    for view in CANDLE_VIEWS:
        if view not in st.views:
            block, parts = candle_ddl(CANDLE_BY_VIEW[view])
            steps.append(Step(view, "create materialized view", block, parts=parts))
        index = _unique_index(view)
        if index not in st.indexes:
            steps.append(Step(index, "create unique index (symbol, bucket)",
                              "schema.create_candle_unique_index", "owner",
                              (("view", view), ("index", index))))
    return steps


def candle_ddl(candle: CandleView, *, continuous: bool = False, materialized_only: bool = False,
               view: str | None = None, flat: bool = False
               ) -> tuple[str, tuple[tuple[str, str | sql.Composable], ...]]:
    """(block, parts) that create ``candle``'s view (or one named ``view``): from the
    ticks (candle_1m; any width when ``flat``) or rolled up from candle_1m; a continuous
    aggregate (real-time unless ``materialized_only``) or a PostgreSQL materialized view.
    Every candle view of both editions comes from these two blocks."""
    options = (queries.compose("schema_timescale.continuous",
                               materialized_only=sql.Literal(materialized_only))
               if continuous else sql.SQL(""))
    parts: tuple[tuple[str, str | sql.Composable], ...] = (
        ("view", view or candle.view), ("width", sql.Literal(candle.interval)),
        ("options", options))
    if flat or candle == CANDLES[0]:
        return "schema.create_candles", parts
    return "schema.create_candle_rollup", (*parts, ("base", CANDLES[0].view))


def _timescale_steps(st: _State, kinds: dict[str, str]) -> list[Step]:
    """The timescale-license statements still needed; ``kinds`` maps routine names the
    server has to 'f' (function) or 'p' (procedure), from pg_proc.

    A policy with other intervals than the story's (a table made ``WITH
    (tsdb.hypertable)`` on 2.23+ carries a columnstore policy after its chunk interval) is
    replaced, and the step says what it had.
    """
    check_candle_policies()  # before any statement: TimescaleDB would refuse it midway
    # 2.18 renamed compression to columnstore; add_columnstore_policy is a procedure.
    api = "columnstore" if kinds.get("add_columnstore_policy") == "p" else "compression"
    steps = []
    if not st.compression_enabled:
        steps.append(Step("tick_data", "enable columnstore (segmentby symbol, orderby time DESC)",
                          f"schema_timescale.enable_{api}", "owner"))
    elif not st.compress_story:
        steps.append(Step("tick_data", "set columnstore settings other than the story's to "
                          "segmentby symbol, orderby time DESC (chunks compressed from now on)",
                          f"schema_timescale.enable_{api}", "owner"))
    if st.compress_after not in (None, COMPRESS_AFTER):
        steps.append(Step("policy_compression", f"remove {api} policy after "
                          f"{_interval(st.compress_after)} (the story's is 30 days)",
                          f"schema_timescale.remove_{api}_policy", "owner"))
    if st.compress_after != COMPRESS_AFTER:
        steps.append(Step("policy_compression", f"add {api} policy after 30 days",
                          f"schema_timescale.add_{api}_policy", "owner"))
    if st.drop_after not in (None, RETENTION):
        steps.append(Step("policy_retention", f"remove retention policy after "
                          f"{_interval(st.drop_after)} (the story's is 90 days)",
                          "schema_timescale.remove_retention_policy", "owner"))
    if st.drop_after != RETENTION:
        steps.append(Step("policy_retention", "add retention policy (90 days)",
                          "schema_timescale.add_retention_policy", "owner"))
    have = dict(st.candle_policies)
    for view in CANDLE_VIEWS:
        if view not in st.views:
            block, parts = candle_ddl(CANDLE_BY_VIEW[view], continuous=True)
            steps.append(Step(view, "create continuous aggregate (real-time)", block, parts=parts))
        want, got = CANDLE_POLICIES[view], have.get(view)
        if got is not None and got != want:
            steps.append(Step(f"{view} policy", f"remove refresh policy ({got})",
                              "schema_timescale.remove_candle_policy", "owner", params=(("view", view),)))
        if got != want:
            steps.append(Step(f"{view} policy", f"add refresh policy ({want})",
                              "schema_timescale.add_candle_policy", "owner",
                              params=(("view", view), *asdict(want).items())))
    return steps


def _plan(conn: psycopg.Connection[Any], caps: Capabilities, *,
          migrate_data: bool) -> tuple[list[Step], _State]:
    st = _read_state(conn)
    steps = _table_steps(conn, st, migrate_data=migrate_data)
    if caps.license == "timescale":
        kinds = dict(conn.execute(queries.text("schema_catalog.timescaledb_routines")).fetchall())
        steps += _timescale_steps(st, kinds)
    else:
        steps += _apache_steps(st)
    return steps, st


def _present(st: _State, caps: Capabilities) -> list[str]:
    """The provisioned objects that exist, in words (for 'nothing to do')."""
    out = ["tick_data hypertable"] if st.is_hypertable else []
    out += sorted(st.indexes)
    out += [v for v in CANDLE_VIEWS if v in st.views]
    if caps.license == "timescale":
        out += ["compression"] * st.compression_enabled
        out += ["compression policy"] * (st.compress_after is not None)
        out += ["retention policy"] * (st.drop_after is not None)
        out += [f"{v} policy" for v, _ in st.candle_policies]
    return out


# -- provisioning -----------------------------------------------------------------------


@dataclass
class ProvisionResult:
    """What provisioning did (or, in a dry run, would do) to one target."""

    target: str  # redacted URL
    edition: str
    timescaledb_version: str | None
    dry_run: bool
    steps: list[Step] = field(default_factory=list)
    sql: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    after: str = ""  # what a dry run could not plan yet

    @property
    def changed(self) -> bool:
        return bool(self.steps) and not self.dry_run

    def summary(self) -> str:
        if not self.steps:
            return f"nothing to do: {len(self.present)} objects already present ({self.edition})"
        verb = "would apply" if self.dry_run else "applied"
        then = f", {self.after}" if self.after else ""
        return f"{verb} {len(self.steps)} statements ({self.edition}){then}"

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "edition": self.edition,
                "timescaledb_version": self.timescaledb_version, "dry_run": self.dry_run,
                "changed": self.changed, "summary": self.summary(),
                "steps": [{"target": s.target, "action": s.action, "query": s.query}
                          for s in self.steps],
                "sql": self.sql, "present": self.present}


def missing_extension_error(url: Endpoint | str, caps: Capabilities, *, cause: str = "") -> SchemaError:
    """The one-line error for a target without TimescaleDB, saying how to enable it;
    ``cause``: why provisioning could not create it itself."""
    where = shown(url)
    if caps.timescaledb_available and cause:
        return SchemaError(
            f"database at {where} has no timescaledb extension and provisioning cannot "
            f"create it ({cause}); run 'CREATE EXTENSION timescaledb;' in it as its owner "
            "or a superuser (the server must have shared_preload_libraries = 'timescaledb')"
        )
    if caps.timescaledb_available:
        return SchemaError(
            f"database at {where} has no timescaledb extension; run 'tsj provision' (it "
            "creates it where the role may), or 'CREATE EXTENSION timescaledb;' in it as "
            "its owner or a superuser (the server must have shared_preload_libraries = "
            "'timescaledb')"
        )
    return SchemaError(
        f"server at {where} has no TimescaleDB installed (plain PostgreSQL "
        f"{caps.postgres_version}); install TimescaleDB, add shared_preload_libraries = "
        "'timescaledb' and restart, then run 'CREATE EXTENSION timescaledb;'"
    )


def _extension_step(conn: psycopg.Connection[Any], url: Endpoint | str, caps: Capabilities) -> Step:
    """Creating the extension, when the server offers it (installed and preloaded)."""
    preloaded = scalar(conn, queries.text("schema.timescaledb_preloaded"))
    if not caps.timescaledb_available:
        raise missing_extension_error(url, caps)
    if not preloaded:
        raise missing_extension_error(url, caps, cause="the server does not preload it")
    return Step("timescaledb", "create extension", "schema.create_extension")


def _apply_extension(conn: psycopg.Connection[Any], step: Step, url: Endpoint | str,
                     caps: Capabilities) -> None:
    log.info("provision: %s %s", step.action, step.target)
    try:
        step.run(conn)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise missing_extension_error(url, caps, cause=str(exc).splitlines()[0]) from None


def _check_privileges(conn: psycopg.Connection[Any], steps: list[Step]) -> None:
    role, schema, can_create, owns, owner = one(conn,
                                                queries.text("schema_catalog.provision_privileges"))
    if schema is None:
        raise SchemaError(f"role '{role}' has no schema on its search_path; "
                          "create one or set search_path")
    creates = [s.target for s in steps if s.needs == "create"]
    if creates and not can_create:
        raise SchemaError(
            f"role '{role}' lacks CREATE on schema '{schema}' (needed for {', '.join(creates)}); "
            f"run 'GRANT CREATE ON SCHEMA {schema} TO {role}' as its owner, "
            "or provision as the database owner"
        )
    if owner is not None and not owns and any(s.needs == "owner" for s in steps):
        raise SchemaError(
            f"role '{role}' does not own table '{schema}.tick_data' (owner '{owner}'), which "
            f"converting, indexing and adding policies need; provision as '{owner}' or run "
            f"'ALTER TABLE {schema}.tick_data OWNER TO {role}'"
        )


def _apply(conn: psycopg.Connection[Any], step: Step) -> None:
    log.info("provision: %s %s", step.action, step.target)
    try:
        step.run(conn)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise SchemaError(f"{step.action} '{step.target}' refused: "
                          f"{str(exc).splitlines()[0]}; grant that privilege or "
                          "provision as the database owner") from None
    except psycopg.Error as exc:
        raise SchemaError(f"{step.action} '{step.target}' failed: "
                          f"{str(exc).splitlines()[0]}") from None


def provision(target: Endpoint | str | psycopg.Connection[Any], *, dry_run: bool = False,
              migrate_data: bool = False, for_license: str | None = None) -> ProvisionResult:
    """Create what the target's edition needs and is missing (idempotent).

    ``target`` is a URL or an open autocommit connection (kept open; every step runs on
    it). With ``dry_run`` the SQL is returned, not run; with it, ``for_license``
    ('timescale' or 'apache') plans for that license instead of the server's, e.g. to read
    the production DDL against the embedded server. A plain ``tick_data`` holding rows is
    refused unless ``migrate_data``. On the apache edition all statements run in one
    transaction; continuous aggregates cannot, so on the timescale edition each
    statement commits on its own and a rerun resumes where a failure stopped.
    """
    if for_license not in (None, "timescale", "apache"):
        raise ValueError(f"for_license={for_license!r} is unknown; use 'timescale' or 'apache'")
    if isinstance(target, psycopg.Connection) and not target.autocommit:
        raise ValueError("provision needs an autocommit connection (it commits per statement "
                         "on the timescale edition); connect with autocommit=True")
    with using(target, autocommit=True) as conn:
        url = url_of(conn) if isinstance(target, psycopg.Connection) else target
        return _provision(conn, url, dry_run=dry_run, migrate_data=migrate_data,
                          for_license=for_license)


def _provision(conn: psycopg.Connection[Any], url: Endpoint | str, *, dry_run: bool, migrate_data: bool,
               for_license: str | None) -> ProvisionResult:
    caps = capabilities(url, conn)  # an Endpoint's own probe: once per command
    if caps.timescaledb_version is None:
        step = _extension_step(conn, url, caps)
        if dry_run:
            return ProvisionResult(shown(url), "timescaledb (not yet created)", None, True,
                                   [step], [queries.text(step.query)], [],
                                   after="then the edition's DDL, planned once it exists")
        _apply_extension(conn, step, url, caps)
        if isinstance(url, Endpoint):
            url.refresh(conn)  # it has TimescaleDB now: what it can do has changed
        created = _provision(conn, url, dry_run=False, migrate_data=migrate_data,
                             for_license=for_license)
        created.steps.insert(0, step)
        created.sql.insert(0, queries.text(step.query))
        return created
    if for_license is not None and for_license != caps.license:
        if not dry_run:
            raise ValueError(f"for_license={for_license!r} differs from the server's "
                             f"{caps.license!r}; planning for another license needs dry_run")
        caps = replace(caps, license=for_license)
    steps, state = _plan(conn, caps, migrate_data=migrate_data)
    result = ProvisionResult(shown(url), caps.edition, caps.timescaledb_version, dry_run,
                             steps, [s.sql_text(conn) for s in steps], _present(state, caps))
    if dry_run or not steps:
        return result
    _check_privileges(conn, steps)
    # the apache edition's statements in one transaction; a continuous aggregate cannot be
    # created inside one, so the timescale edition's each commit on their own
    with nullcontext() if caps.license == "timescale" else conn.transaction():
        for step in steps:
            _apply(conn, step)
    _verify_complete(conn, caps)
    log.info("provision: %s", result.summary())
    return result


def _verify_complete(conn: psycopg.Connection[Any], caps: Capabilities) -> None:
    """The catalog after provisioning: nothing may be left to do."""
    left, _ = _plan(conn, caps, migrate_data=True)
    if left:
        names = ", ".join(s.target for s in left)
        raise SchemaError(f"provisioning finished but {names} still missing; "
                          "run 'tsj provision -v' and check the server log")


# -- refresh and retention --------------------------------------------------------------


@dataclass(frozen=True)
class Refreshed:
    view: str
    how: str  # 'full', 'full concurrently', or 'window' (continuous aggregates)
    seconds: float


def _check_window(start: datetime | None, end: datetime | None) -> None:
    for name, value in (("start", start), ("end", end)):
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{name}={value.isoformat()} has no time zone; pass an aware "
                             "datetime (candle buckets are aligned in UTC)")
    if start is not None and end is not None and start >= end:
        raise ValueError(f"refresh window start={start.isoformat()} is not before "
                         f"end={end.isoformat()}; swap them or widen the window")


def refresh_candles(url: Endpoint | str, *, start: datetime | None = None,
                    end: datetime | None = None) -> list[Refreshed]:
    """Bring the candle views up to date with the ticks, in dependency order.

    timescale: ``refresh_continuous_aggregate`` over [start, end) (None: unbounded).
    apache: materialized views cannot refresh a window, so each is recomputed whole
    (``start``/``end`` are ignored), CONCURRENTLY once it holds data so readers are not
    blocked.
    """
    _check_window(start, end)
    done = []
    with connection(url, autocommit=True) as conn:
        caps = capabilities(url, conn)
        if caps.timescaledb_version is None:
            raise missing_extension_error(url, caps)
        lifted = limits.lift_session(conn, url)  # a refresh is one long statement
        for view in CANDLE_VIEWS:
            t0 = time.perf_counter()
            try:
                how = _refresh_one(conn, view, caps, start, end)
            except psycopg.errors.ObjectNotInPrerequisiteState as exc:
                raise SchemaError(f"refresh of '{view}' failed: {str(exc).splitlines()[0]}; "
                                  "run 'tsj provision' (it recreates the view's unique "
                                  "index)") from None
            except psycopg.Error as exc:
                limit = limits.limit_error(exc, purpose=f"the refresh of '{view}'",
                                           side="target", lifted=lifted, role=conn.info.user)
                raise limit or SchemaError(f"refresh of '{view}' failed: "
                                           f"{str(exc).splitlines()[0]}") from None
            done.append(Refreshed(view, how, time.perf_counter() - t0))
            log.info("refresh: %s (%s) in %.3f s", view, how, done[-1].seconds)
    return done


def refresh_written(url: Endpoint | str, *, start: datetime | None = None,
                    end: datetime | None = None) -> list[Refreshed]:
    """After ticks were written in [start, end): the candle views brought up to date over
    the whole UTC days around them (nothing when the target has no candle views yet).

    What every command that writes ticks does, so the views are current (a real-time
    aggregate shows ticks below its watermark only once refreshed).
    """
    with connection(url, autocommit=True) as conn:
        if not conn.execute(queries.text("schema_catalog.candle_relations"),
                            {"views": list(CANDLE_VIEWS)}).fetchall():
            return []
    day = timedelta(days=1)
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    lo = epoch + (start - epoch) // day * day if start else None
    hi = epoch - ((epoch - end) // day) * day if end else None  # the next day boundary
    return refresh_candles(url, start=lo, end=hi)


def _refresh_one(conn: psycopg.Connection[Any], view: str, caps: Capabilities,
                 start: datetime | None, end: datetime | None) -> str:
    row = conn.execute(queries.text("schema_catalog.candle_relations"), {"views": [view]}).fetchone()
    if row is None:
        raise SchemaError(f"candle view '{view}' not found; run 'tsj provision'")
    _, kind, populated, materialized_only, _ = row
    if kind == "v" and materialized_only is not None:  # a continuous aggregate
        if start is None:
            # Not unbounded: a refresh over days whose ticks retention dropped deletes
            # their candles (TimescaleDB #2198, #2592). The oldest tick's day is where the
            # ticks begin (chunks are whole days, and retention drops whole chunks).
            start = scalar(conn, queries.text("schema_timescale.oldest_tick_day"))
            if start is None:
                return "window (no ticks: candles kept)"
            if end is not None and start >= end:
                return "window (no ticks before the end)"
        args = {"view": view, "start": start, "end": end}
        if scalar(conn, queries.text("schema_timescale.refresh_takes_options")):
            per_day = int(timedelta(days=1) / CANDLE_WIDTHS[view])
            args["options"] = Jsonb({"buckets_per_batch": per_day})
            conn.execute(queries.text("schema_timescale.refresh_candles_batched"), args)
        else:
            conn.execute(queries.text("schema_timescale.refresh_candles"), args)
        return "window"
    if kind != "m":
        raise SchemaError(f"candle view '{view}' is neither a materialized view nor a "
                          "continuous aggregate; drop it and run 'tsj provision'")
    if start is not None or end is not None:
        log.info("refresh: %s is a materialized view on %s; recomputing it whole",
                 view, caps.edition)
    # CONCURRENTLY keeps readers unblocked but refuses a never-populated view.
    name = "schema.refresh_matview_concurrently" if populated else "schema.refresh_matview"
    conn.execute(queries.compose(name, view=view))
    return "full concurrently" if populated else "full"


# a positive whole number: '0 days' would drop every chunk
_INTERVAL = re.compile(r"^\s*0*[1-9]\d*\s*(minute|hour|day|week|month|year)s?\s*$",
                       re.IGNORECASE)


def apply_retention(url: Endpoint | str, *, older_than: str | timedelta = "90 days",
                    dry_run: bool = False) -> list[str]:
    """Drop the chunks of ``tick_data`` whose ticks are all older than ``older_than``.

    What the retention policy's job does under the timescale license, run by tsj on the
    apache edition (``drop_chunks``). Returns the chunks dropped (or, with ``dry_run``,
    those that would be). On apache, refresh the candles afterwards: the materialized
    views are recomputed whole, so their candles for dropped ticks go too.
    """
    if isinstance(older_than, timedelta):
        if older_than <= timedelta(0):
            raise ValueError(f"older_than={older_than} must be positive, e.g. '90 days'")
    elif not _INTERVAL.match(older_than):
        raise ValueError(f"older_than={older_than!r} is not an interval like '90 days' "
                         "(a positive whole number and minutes, hours, days, weeks, months "
                         "or years)")
    name = "schema.show_old_chunks" if dry_run else "schema.drop_old_chunks"
    with connection(url) as conn:
        caps = capabilities(url, conn)
        if caps.timescaledb_version is None:
            raise missing_extension_error(url, caps)
        if not _read_state(conn).is_hypertable:
            raise SchemaError("hypertable 'tick_data' not found; run 'tsj provision'")
        try:
            chunks = [r[0] for r in conn.execute(queries.text(name),
                                                 {"older_than": older_than})]
        except psycopg.errors.InsufficientPrivilege as exc:
            raise SchemaError(f"dropping chunks of 'tick_data' refused: "
                              f"{str(exc).splitlines()[0]}; run 'tsj retention' as the "
                              "table's owner") from None
    log.info("retention: %s %d chunks older than %s", "would drop" if dry_run else "dropped",
             len(chunks), older_than)
    return chunks


# -- validation: the story's Testing table, AC1-AC6 ---------------------------------------


@dataclass(frozen=True)
class ValidationRow:
    """One row of the story's validation table: for AC2, AC3 and AC5 a view of the
    :class:`~tsj_lab.domain.Finding` that :mod:`tsj_lab.provision.layout` judged (the integrity
    checks report the same finding), for AC1, AC4 and AC6 its own reading."""

    ac: str  # 'AC1'..'AC6'
    check: str  # what the story asks, in words
    status: str  # ok / warn / unsupported / fail
    mode: str  # native / emulated / unavailable: how this edition provides it
    detail: str  # the evidence, or the cause and the fix

    @classmethod
    def of(cls, ac: str, finding: Finding, *, mode: str = "native") -> ValidationRow:
        return cls(ac, _CHECKS[ac], finding.status, mode, finding.detail)


_CHECKS = {
    "AC1": "connection: SELECT 1",
    "AC2": "hypertable tick_data, 1-day chunks",
    "AC3": "compression: segmentby symbol, orderby time DESC, policy after 30 days",
    "AC4": "candle_1m/5m/15m/1h aggregates",
    "AC5": "retention 90 days",
    "AC6": f"{POOL_TEST_SIZE} concurrent connections through the pool",
}


def _row(ac: str, status: str, mode: str, detail: str) -> ValidationRow:
    return ValidationRow(ac, _CHECKS[ac], status, mode, detail)


def validate(url: Endpoint | str, *, pool_size: int = POOL_TEST_SIZE,
             pool_timeout: float = 30.0) -> list[ValidationRow]:
    """AC1-AC6 against ``url``: one row each; a failed check is a row, not an exception."""
    if pool_size < 1:
        raise ValueError(f"pool_size={pool_size} must be at least 1")
    if pool_timeout <= 0:
        raise ValueError(f"pool_timeout={pool_timeout} must be positive seconds")
    try:
        with connection(url, autocommit=True) as conn:
            conn.execute(queries.text("schema_catalog.select_one")).fetchone()
            caps = capabilities(url, conn)  # probed once per Endpoint
            rows = [_row("AC1", OK, "native", f"{caps.edition} {caps.timescaledb_version or ''} "
                         f"on PostgreSQL {caps.postgres_version}".replace("  ", " "))]
            rows += _catalog_rows(conn, url, caps)
    except ConnectError as exc:
        return [_row("AC1", FAIL, "native", str(exc))] + [
            _row(ac, FAIL, "native", "not checked: no connection") for ac in list(_CHECKS)[1:]]
    return rows + [_check_pool(url, size=pool_size, timeout=pool_timeout)]


def _catalog_rows(conn: psycopg.Connection[Any], url: Endpoint | str,
                  caps: Capabilities) -> list[ValidationRow]:
    if caps.timescaledb_version is None:
        why = str(missing_extension_error(url, caps))
        return [_row(ac, FAIL, "unavailable", why) for ac in ("AC2", "AC3", "AC4", "AC5")]
    timescale = caps.license == "timescale"
    lay = layout.read(conn, license=caps.license)
    rows = [ValidationRow.of("AC2", layout.judge_hypertable(lay)),
            ValidationRow.of("AC3", layout.judge_compression(lay),
                             mode="native" if timescale else "unavailable"),
            _check_candles(conn, timescale=timescale),
            ValidationRow.of("AC5", layout.judge_retention(lay),
                             mode="native" if timescale else "emulated")]
    story = _story_checks(conn)
    return [replace(r, detail=f"{r.detail}; story's query: {story[r.ac]}")
            if r.status != UNSUPPORTED else r for r in rows]


def _story_checks(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """The story's own validation queries (its Testing table, AC2-AC5), run as written
    but for tick_data in the current schema: their row counts, or why one cannot run."""
    out = {}
    for ac in ("AC2", "AC3", "AC4", "AC5"):
        name = f"schema_catalog.story_{ac.lower()}"
        try:
            with conn.transaction():
                n = scalar(conn, queries.text(name))
            out[ac] = f"{n} row{'s' if n != 1 else ''}"
        except psycopg.errors.UndefinedTable:
            out[ac] = "its view is gone in this TimescaleDB version"
    return out


def _check_candles(conn: psycopg.Connection[Any], *, timescale: bool) -> ValidationRow:
    found = {r[0]: r for r in conn.execute(queries.text("schema_catalog.candle_relations"),
                                           {"views": list(CANDLE_VIEWS)})}
    missing = [v for v in CANDLE_VIEWS if v not in found]
    if missing:
        return _row("AC4", FAIL, "native" if timescale else "emulated",
                    f"candle views missing: {', '.join(missing)}; run 'tsj provision'")
    if timescale:
        row = _check_caggs(found)
        if row.status != OK:
            return row
        have = dict(_read_state(conn).candle_policies)
        wrong = [f"{v} ({have[v]})" for v in CANDLE_VIEWS if have.get(v) != CANDLE_POLICIES[v]]
        if wrong:
            return _row("AC4", FAIL, "native", f"refresh policies other than the story's: "
                        f"{', '.join(wrong)}; run 'tsj provision' (it replaces them)")
        return row
    wrong = [v for v in CANDLE_VIEWS if found[v][1] != "m"]
    if wrong:
        return _row("AC4", FAIL, "emulated", f"not materialized views: {', '.join(wrong)}")
    empty = [v for v in CANDLE_VIEWS if not found[v][2]]
    note = f"; never refreshed: {', '.join(empty)} (run 'tsj refresh')" if empty else ""
    return _row("AC4", OK, "emulated",
                f"4 materialized views refreshed by 'tsj refresh' (no policies under apache){note}")


def _check_caggs(found: dict[str, Any]) -> ValidationRow:
    plain = [v for v in CANDLE_VIEWS if found[v][3] is None]
    if plain:
        return _row("AC4", FAIL, "native", f"not continuous aggregates: {', '.join(plain)}; "
                    "drop them and run 'tsj provision'")
    no_policy = [v for v in CANDLE_VIEWS if not found[v][4]]
    if no_policy:
        return _row("AC4", FAIL, "native", f"no refresh policy on {', '.join(no_policy)}; "
                    "run 'tsj provision'")
    stale = [v for v in CANDLE_VIEWS if found[v][3]]
    if stale:
        return _row("AC4", WARN, "native", f"4 continuous aggregates with policies, but "
                    f"materialized_only = true on {', '.join(stale)}: replay misses the newest "
                    "candle; ALTER MATERIALIZED VIEW ... SET (timescaledb.materialized_only = false)")
    return _row("AC4", OK, "native", "4 continuous aggregates (real-time, materialized_only = "
                "false) with refresh policies")


def _check_pool(url: Endpoint | str, *, size: int, timeout: float) -> ValidationRow:
    """AC6: ``size`` clients at once through the configured pooling, all their queries done.

    The clients hold connections of a psycopg_pool pool to ``url``; when ``url`` is itself
    a pooler (PgBouncer in transaction mode, Supavisor), they share its fewer server
    connections, which is the point of one. Both sides are in the detail.
    """
    got = clients.run(url, clients=size, queries_per_client=10, timeout=timeout)
    mode = "native" if got.via == "direct" else "pooler"
    if got.ok:
        return _row("AC6", OK, mode, f"{got.describe()}; psycopg_pool pool (max_size={size})")
    limit = _max_connections(url)
    fix = ("raise the pooler's client limit (PgBouncer: max_client_conn) or its pool size"
           if got.via == "pooler" else
           f"raise max_connections (server: {limit}) or lower other load, or connect "
           "through a pooler")
    return _row("AC6", FAIL, mode, f"{got.describe()}; {fix}")


def _max_connections(url: Endpoint | str) -> int | None:
    try:
        with connection(url, autocommit=True) as conn:
            return scalar(conn, queries.text("schema_catalog.max_connections"))
    except ConnectError:
        return None


def validation_frame(rows: list[ValidationRow]) -> pd.DataFrame:
    return pd.DataFrame([asdict(r) for r in rows], columns=list(ValidationRow.__dataclass_fields__))


def failed(rows: list[ValidationRow]) -> list[ValidationRow]:
    return [r for r in rows if r.status == FAIL]


# -- relations ----------------------------------------------------------------------------


def has_table(conn: psycopg.Connection[Any], name: str) -> bool:
    """Whether relation ``name`` (a table, view, continuous aggregate or materialized view)
    is visible: the first on the search path, or schema-qualified. Every "does table X
    exist" in the package asks this."""
    return bool(scalar(conn, queries.text("schema_catalog.has_table"), {"name": name}))


def row_security(conn: psycopg.Connection[Any], table: str) -> tuple[bool, bool, str]:
    """Whether row-level security filters ``table`` for this connection's role, whether it
    is on for the table at all, and the role's name (the preflight shows all three)."""
    active, enabled, role = one(conn, queries.text("schema_catalog.row_security"), {"name": table})
    return bool(active), bool(enabled), role


def filtered_message(table: str, *, side: str, role: str) -> str:
    """What a read of ``table`` filtered by row-level security would do, and the fix."""
    return (f"row-level security filters table '{table}' on the {side} for role '{role}', so "
            "a read would silently miss rows; connect as a role with BYPASSRLS, as the "
            "table's owner, or as Supabase's 'postgres' role")


def require_unfiltered(conn: psycopg.Connection[Any], table: str, *, side: str) -> None:
    """SchemaError when row-level security filters ``table`` for this connection's role.

    Supabase enables RLS on its tables; a role it filters reads a subset of the rows
    without an error, so a copy and the verification reading through the same filter
    would agree on a partial result. Every phase that reads ``tick_data`` whole (the
    migration on both sides, reconciliation) asks this before its first read.
    """
    active, _enabled, role = row_security(conn, table)
    if active:
        raise SchemaError(filtered_message(table, side=side, role=role))


def has_rows(conn: psycopg.Connection[Any], table: str) -> bool:
    """Whether ``table`` exists and holds at least one row (stops at the first)."""
    if not has_table(conn, table):
        return False
    return bool(scalar(conn, queries.compose("schema_catalog.has_rows", table=table)))


# -- layout -----------------------------------------------------------------------------


def _frame(url: Endpoint | str, name: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    with connection(url, autocommit=True) as conn:
        cur = conn.execute(queries.text(name), params)
        return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description or ()])


def chunk_layout(url: Endpoint | str) -> pd.DataFrame:
    """The chunks of ``tick_data``, oldest first: time range, compressed, bytes."""
    return _frame(url, "schema_catalog.chunk_layout")


def relation_sizes(url: Endpoint | str) -> pd.DataFrame:
    """On-disk bytes of ``tick_data`` and of each candle view."""
    return _frame(url, "schema_catalog.relation_sizes", {"views": list(CANDLE_VIEWS)})



@contextmanager
def scratch_schema(url: Endpoint | str, name: str, *, keep: bool = False) -> Iterator[Endpoint]:
    """A new schema ``name`` on ``url``, and ``url`` scoped to it; dropped afterwards.

    The scoped URL puts the schema first on the search_path and TimescaleDB's own schema
    next (on plain PostgreSQL, the source, the schema alone), so :func:`provision` or
    :func:`create_source` there builds the story's objects in it, never touching the
    database's own ``tick_data``. The schema goes with everything in it (policy jobs
    included) unless ``keep``.
    """
    with connection(url, autocommit=True) as conn:
        ext = conn.execute(queries.text("policies.extension_schema")).fetchone()
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield as_endpoint(url).scoped(search_path=f"{name},{ext[0]}" if ext else name)
    finally:
        if keep:
            log.info("scratch schema %s kept", name)
        else:
            with connection(url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(name)))


# -- candle correctness -----------------------------------------------------------------

#: bucket width of each candle view
CANDLE_WIDTHS = {c.view: c.width for c in CANDLES}


def candle_differences(url: Endpoint | str, view: str, *, against: str = "ticks",
                       since: datetime | None = None) -> int:
    """Rows of candle ``view`` that differ from a recompute (0: equal row for row).

    ``against='ticks'`` recomputes from the raw ticks, from ``since`` on (a bucket
    boundary: the candles of days whose ticks were dropped have nothing to compare
    with); ``'candle_1m'`` rolls the 1-minute candles up to the view's width (5m/15m/1h
    must equal that).
    """
    if view not in CANDLE_WIDTHS:
        raise ValueError(f"candle view {view!r} is unknown; use one of {CANDLE_VIEWS}")
    if against not in ("ticks", "candle_1m"):
        raise ValueError(f"against={against!r} is unknown; use 'ticks' or 'candle_1m'")
    name = "schema.candle_diff_ticks" if against == "ticks" else "schema.candle_diff_rollup"
    with connection(url, autocommit=True) as conn:
        return int(scalar(conn, queries.compose(name, view=view),
                          {"width": CANDLE_WIDTHS[view], "since": since}))
