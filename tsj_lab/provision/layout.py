"""The story's layout of ``tick_data`` (AC2, AC3, AC5): read once, judged in one place.

Provisioning's validation (``schema.validate``: the AC2, AC3 and AC5 rows) and the
integrity checks (``checks.check_layout``: ``chunk_interval``, ``compression``) both read
a :class:`Layout` with :func:`read` and judge it with :func:`judge_hypertable`,
:func:`judge_compression` and :func:`judge_retention`, so a wrong chunk interval or
compression setting is one :class:`~tsj_lab.domain.Finding`, with one status and one
wording, whoever asks. The story's intervals live here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg

from .. import queries
from ..db import Endpoint, capabilities, connection, probe, scalar
from ..domain import FAIL, OK, UNSUPPORTED, Finding, interval_text

CHUNK_INTERVAL = timedelta(days=1)
COMPRESS_AFTER = timedelta(days=30)
RETENTION = timedelta(days=90)


@dataclass(frozen=True)
class Layout:
    """What the catalog says of one table's hypertable, compression and policies."""

    table: str  # as to_regclass reads it: 'tick_data', 'other.tick_data'
    license: str | None  # 'timescale' or 'apache' (None: no TimescaleDB)
    hypertable: bool
    chunks: int = 0
    time_column: str | None = None
    chunk_interval: timedelta | None = None
    #: (segmentby, orderby); (None, None): none set; None: the server has no settings view
    settings: tuple[str | None, str | None] | None = (None, None)
    compression_job: int | None = None
    compress_after: timedelta | None = None
    retention_job: int | None = None
    drop_after: timedelta | None = None


def read(conn: psycopg.Connection[Any], *, table: str = "tick_data",
         license: str | None) -> Layout:
    """The layout of ``table`` on ``conn`` (a server with TimescaleDB)."""
    dim = conn.execute(queries.text("schema_catalog.hypertable_dimension"),
                       {"table": table}).fetchone()
    if dim is None:
        return Layout(table, license, hypertable=False)
    jobs: dict[str, tuple[int, timedelta | None]] = {}
    for proc, job, compress_after, drop_after in conn.execute(
            queries.text("schema_catalog.policy_jobs"), {"table": table}):
        jobs.setdefault(proc, (job, compress_after if proc == "policy_compression" else drop_after))
    compression, retention = jobs.get("policy_compression"), jobs.get("policy_retention")
    return Layout(table, license, True, dim[0], dim[1], dim[2],
                  compression_settings(conn, table=table),
                  compression[0] if compression else None, compression[1] if compression else None,
                  retention[0] if retention else None, retention[1] if retention else None)


def compression_settings(conn: psycopg.Connection[Any], *, table: str = "tick_data"
                         ) -> tuple[str | None, str | None] | None:
    """Segmentby and orderby of ``table`` (None, None: none set); None when the server
    has no settings view (TimescaleDB < 2.14)."""
    views = [r[0] for r in conn.execute(queries.text("schema_catalog.settings_views"))]
    if not views:
        return None
    view = sorted(views)[0]  # hypertable_columnstore_settings when the server has it
    got = conn.execute(queries.compose("schema_catalog.compression_settings", view=view),
                       {"table": table}).fetchone()
    return (got[0], got[1]) if got else (None, None)


def story_compression(segmentby: str | None, orderby: str | None) -> bool:
    """Whether columnstore settings are the story's: segment by symbol, order by time DESC."""
    # the settings views quote keywords: "time" DESC
    order = (orderby or "").replace('"', "").replace(" ", "").lower()
    return segmentby == "symbol" and order == "timedesc"


# -- the judges: one Finding each ---------------------------------------------------------


def judge_hypertable(lay: Layout, *, want: timedelta = CHUNK_INTERVAL) -> Finding:
    """AC2 (check ``chunk_interval``): a hypertable with ``want`` chunks."""
    t, expected = lay.table, interval_text(want)
    if not lay.hypertable:
        return Finding("chunk_interval", FAIL, t, observed="not a hypertable",
                       expected=f"hypertable, {expected} chunks",
                       detail=f"hypertable '{t}' not found; run 'tsj provision'")
    got = interval_text(lay.chunk_interval)
    if lay.chunk_interval != want:
        return Finding("chunk_interval", FAIL, t, observed=got, expected=expected,
                       detail=f"chunk interval of '{t}' is {got}, want {expected}; run "
                              f"\"SELECT set_chunk_time_interval('{t}', INTERVAL "
                              f"'{expected}')\" (new chunks only)")
    return Finding("chunk_interval", OK, t, observed=got, expected=expected,
                   detail=f"time column '{lay.time_column}', chunk interval {got}, "
                          f"{lay.chunks} chunks")


def judge_compression(lay: Layout, *, want: timedelta = COMPRESS_AFTER) -> Finding:
    """AC3 (check ``compression``): segmentby symbol, orderby time DESC, a policy after
    ``want``; unsupported without the timescale license."""
    t = lay.table
    expected = f"segmentby symbol, orderby time DESC, policy after {interval_text(want)}"
    if lay.license != "timescale":
        return Finding("compression", UNSUPPORTED, t, observed="unavailable", expected=expected,
                       detail=f"compression (columnstore) needs the timescale license; this "
                              f"server is {lay.license}")
    if lay.settings is None:
        return Finding("compression", FAIL, t, observed="no settings view", expected=expected,
                       detail="no compression settings view in timescaledb_information; "
                              "TimescaleDB >= 2.14 is needed")
    segmentby, orderby = lay.settings
    policy = (f"job {lay.compression_job} after {interval_text(lay.compress_after)}"
              if lay.compression_job is not None else "missing")
    observed = f"segmentby {segmentby or '-'}, orderby {orderby or '-'}, policy {policy}"
    detail = f"segmentby={segmentby}, orderby={orderby}, policy {policy}"
    if story_compression(segmentby, orderby) and lay.compress_after == want:
        return Finding("compression", OK, t, observed=observed, expected=expected, detail=detail)
    return Finding("compression", FAIL, t, observed=observed, expected=expected,
                   detail=f"{detail}; want symbol, time DESC, {interval_text(want)}: "
                          "run 'tsj provision'")


def judge_retention(lay: Layout, *, want: timedelta = RETENTION) -> Finding:
    """AC5 (the retention policy): a job dropping chunks after ``want``; unsupported
    without the timescale license, where 'tsj retention' does its work."""
    t, expected = lay.table, f"retention policy after {interval_text(want)}"
    if lay.license != "timescale":
        return Finding("retention", UNSUPPORTED, t, observed="no policy jobs", expected=expected,
                       detail=f"no policy jobs under the {lay.license} license; 'tsj "
                              f"retention' drops chunks older than {interval_text(want)} "
                              "(drop_chunks)")
    if lay.retention_job is None:
        return Finding("retention", FAIL, t, observed="no retention policy", expected=expected,
                       detail=f"no retention job on '{t}'; run 'tsj provision'")
    got = interval_text(lay.drop_after)
    observed = f"job {lay.retention_job} drops after {got}"
    if lay.drop_after != want:
        return Finding("retention", FAIL, t, observed=observed, expected=expected,
                       detail=f"retention job {lay.retention_job} drops after {got}, want "
                              f"{interval_text(want)}; run 'tsj provision' (it replaces it)")
    return Finding("retention", OK, t, observed=observed, expected=expected,
                   detail=f"retention job {lay.retention_job}: drop after {got}")


# -- what the target's policies tell a migration -------------------------------------------


@dataclass(frozen=True)
class TargetFacts:
    """What the target's policies and settings tell a migration of history.

    ``drop_after`` / ``compress_after`` come from the target's own retention and compression
    policy jobs (None without one: plain PostgreSQL, the apache edition, or a policy removed).
    """

    now: dt.datetime | None = None
    drop_after: dt.timedelta | None = None
    compress_after: dt.timedelta | None = None
    direct_compress: bool = False  # the server compresses on COPY (TimescaleDB >= 2.23)
    decompress_limit: bool = False  # it caps tuples decompressed per DML transaction

    @property
    def kept_since(self) -> dt.datetime | None:
        """The first UTC day the retention job keeps (days ending by now - drop_after go)."""
        if self.drop_after is None or self.now is None:
            return None
        return day_floor(self.now - self.drop_after)

    @property
    def compress_before(self) -> dt.datetime | None:
        """Batches ending by this instant land in chunks the compression policy compresses."""
        if self.compress_after is None or self.now is None:
            return None
        return self.now - self.compress_after


def target_facts(target_url: Endpoint | str) -> TargetFacts:
    """The target's retention and compression policies and what its COPY can do."""
    with connection(target_url, autocommit=True) as conn:
        return facts_of(conn, db=target_url)


def facts_of(conn: psycopg.Connection[Any], *, db: Endpoint | str | None = None) -> TargetFacts:
    """:func:`target_facts` on an open connection to the target (``db``: its Endpoint, whose
    capabilities are then not probed again)."""
    caps = capabilities(db, conn) if db is not None else probe(conn)
    if caps.timescaledb_version is None:
        return TargetFacts()
    names = {r[0] for r in conn.execute(queries.text("migrate.target_settings"))}
    lay = read(conn, license=caps.license)  # the policies, as provisioning reads them
    now = scalar(conn, queries.text("migrate.server_now"))
    return TargetFacts(now, lay.drop_after, lay.compress_after,
                       direct_compress=(caps.license == "timescale" and
                                        "timescaledb.enable_direct_compress_copy" in names),
                       decompress_limit=("timescaledb.max_tuples_decompressed_per_dml_transaction"
                                         in names))


def day_floor(t: dt.datetime) -> dt.datetime:
    t = t.astimezone(dt.UTC)
    return dt.datetime.combine(t.date(), dt.time(), dt.UTC)
