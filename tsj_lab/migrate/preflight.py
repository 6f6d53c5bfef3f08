"""Before copying: what the source and the target allow this role, each item ok, warn or
blocker, with the fix.

A Supabase project as it really is: row-level security on its tables, a
``statement_timeout`` on its roles, a pooler on port 6543, and whoever runs the migration
handed a careful read-only role. The preflight reads each side's facts once (one catalog
statement, row-level security through :func:`tsj_lab.provision.schema.row_security` as
the phases ask it, the pooler through :func:`tsj_lab.db.pooling`) and judges them in pure
functions; ``tsj migrate --dry-run`` prints the table, and :func:`tsj_lab.migrate.run`
refuses to start on a blocker (:meth:`Preflight.require`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import psycopg

from .. import queries
from ..data import digest as days_digest
from ..db import Endpoint, Pooling, capabilities, connection, pooling, scalar, url_text
from ..db.limits import IDLE_TIMEOUT, STATEMENT_TIMEOUT, bounded
from ..errors import PreflightError
from ..provision import schema

OK, WARN, BLOCKER = "ok", "warn", "blocker"
#: what tsj needs of a server: hashtextextended (11), CTEs NOT MATERIALIZED (12); tested on
#: PostgreSQL 15 (what most Supabase projects run), 17 and 18
OLDEST, TESTED = 120000, 150000
#: Supabase's transaction-mode pooler port
SUPABASE_TRANSACTION_PORT = 6543


@dataclass(frozen=True)
class Item:
    """One line of the preflight: what was looked at, what it is, the verdict and the fix."""

    side: str  # 'source' or 'target'
    item: str  # 'server', 'role', 'row_security', ...
    status: str  # ok, warn or blocker
    value: str
    fix: str = ""
    #: the one line a refused migration prints (default: item, value and fix)
    error: str = field(default="", repr=False)

    def message(self) -> str:
        return self.error or f"{self.side} {self.item}: {self.value}; {self.fix}"

    def as_dict(self) -> dict[str, str]:
        d = asdict(self)
        del d["error"]
        return d


@dataclass(frozen=True)
class Preflight:
    items: tuple[Item, ...]

    @property
    def blockers(self) -> list[Item]:
        return [i for i in self.items if i.status == BLOCKER]

    @property
    def status(self) -> str:
        return max((i.status for i in self.items), key=(OK, WARN, BLOCKER).index, default=OK)

    def require(self) -> None:
        """PreflightError naming the first blocker (and how many more) in one line."""
        if not self.blockers:
            return
        first, more = self.blockers[0], len(self.blockers) - 1
        raise PreflightError(first.message() + (f" (and {more} more blocker(s): see "
                                                "'tsj migrate --dry-run')" if more else ""))

    def rows(self) -> list[dict[str, str]]:
        return [i.as_dict() for i in self.items]


@dataclass(frozen=True)
class Facts:
    """What one side's catalog says (sql/preflight.sql), and what tsj found around it."""

    side: str
    table: str
    database: str
    server_version: str
    server_version_num: int
    role: str
    superuser: bool
    bypassrls: bool
    replication: bool
    has_table: bool
    can_select: bool | None
    can_insert: bool | None
    can_delete: bool | None
    can_create: bool | None
    statement_timeout_ms: int
    idle_timeout_ms: int
    table_bytes: int | None
    estimated_rows: int | None
    wal_level: str
    max_slots: int
    used_slots: int
    symbol_time_index: bool
    rls_active: bool = False  # row-level security filters the table for this role
    rls_enabled: bool = False
    pooling: Pooling | None = None
    url_port: int | None = None
    timescaledb: str | None = None  # version on the target ('' : no extension)
    license: str | None = None
    hypertable: bool = False
    has_checkpoints: bool = False
    days: int | None = None  # UTC days with ticks (source)


def check(source_url: Endpoint | str, target_url: Endpoint | str, *,
          table: str = "tick_data") -> Preflight:
    """Read and judge both sides; blockers are items, not exceptions (see :meth:`require`)."""
    return Preflight((*judge_source(read(source_url, side="source", table=table)),
                      *judge_target(read(target_url, side="target", table=table))))


def read(url: Endpoint | str, *, side: str, table: str = "tick_data") -> Facts:
    """One side's :class:`Facts`: one catalog read, row-level security, the pooler."""
    with connection(url, autocommit=True) as conn:
        cur = conn.execute(queries.text("preflight.facts"), {"table": table})
        row = cur.fetchone()
        names = [d.name for d in cur.description or ()]
        if row is None:  # the session's role is always in pg_roles
            raise PreflightError(f"the {side}'s role is not in pg_roles; check the URL's user")
        facts = Facts(side, table, **dict(zip(names, row)))
        extra: dict[str, Any] = {"pooling": pooling(url), "url_port": urlsplit(url_text(url)).port or 5432}
        if facts.has_table:
            extra["rls_active"], extra["rls_enabled"], _role = schema.row_security(conn, table)
        if side == "target":
            extra |= _target_facts(conn, facts, url)
        elif facts.has_table and facts.can_select and not extra.get("rls_active"):
            extra["days"] = _days(conn, table)
    return _with(facts, extra)


def _with(facts: Facts, extra: dict[str, Any]) -> Facts:
    return Facts(**(asdict(facts) | extra | {"pooling": extra.get("pooling", facts.pooling)}))


def _target_facts(conn: psycopg.Connection[Any], facts: Facts,
                  db: Endpoint | str) -> dict[str, Any]:
    caps = capabilities(db, conn)  # an Endpoint's, probed once per command
    hyper = bool(caps.timescaledb_version and facts.has_table
                 and scalar(conn, queries.text("migrate.is_hypertable")))
    return {"timescaledb": caps.timescaledb_version or "", "license": caps.license,
            "hypertable": hyper,
            "has_checkpoints": schema.has_table(conn, "tsj_migration_batches")}


def _days(conn: psycopg.Connection[Any], table: str) -> int:
    """How many UTC days hold ticks: index probes only (tsj_lab.data.digest)."""
    with bounded(conn, "the preflight's count of days", side="source"):
        syms = days_digest.symbols(conn, table=table)
        return len({lo.date() for _s, lo, _hi in days_digest.days(conn, syms, table=table)})


# -- judging: pure functions of the facts ----------------------------------------------------


def judge_source(f: Facts) -> list[Item]:
    """The source's items: server, role and rights, RLS, limits, size, index, change feed."""
    items = [_server(f), _role(f, need="SELECT", have=bool(f.can_select),
                                fix=f"GRANT SELECT ON {f.table} TO \"{f.role}\"")]
    if f.has_table:
        items.append(_row_security(f))
    items += [*_limits(f)]
    if f.has_table:
        items += [_size(f), _index(f)]
    items += [*_change_feed(f), _pooler(f)]
    return items


def judge_target(f: Facts) -> list[Item]:
    """The target's items: server and TimescaleDB, the hypertable, rights, RLS, limits."""
    have = bool(f.can_insert and f.can_delete and (f.can_create or f.has_checkpoints))
    items = [_server(f), _hypertable(f),
             _role(f, need="INSERT, DELETE" + ("" if f.has_checkpoints else ", CREATE"),
                   have=have or not f.has_table,
                   fix=(f"GRANT INSERT, DELETE ON {f.table} TO \"{f.role}\""
                        + ("" if f.has_checkpoints else
                           f"; GRANT CREATE ON SCHEMA public TO \"{f.role}\"")))]
    if f.has_table:
        items.append(_row_security(f))
    return [*items, *_limits(f), _pooler(f)]


def _server(f: Facts) -> Item:
    value = f"PostgreSQL {f.server_version}"
    if f.side == "target":
        value += (f", TimescaleDB {f.timescaledb} ({f.license} license)" if f.timescaledb
                  else ", no TimescaleDB")
        if not f.timescaledb and not f.has_table:  # with a plain table: see _hypertable
            return Item(f.side, "server", BLOCKER, value,
                        "create the extension: run 'tsj provision' as a role that may")
    if f.server_version_num < OLDEST:
        return Item(f.side, "server", BLOCKER, value, "tsj needs PostgreSQL 12 or newer")
    if f.server_version_num < TESTED:
        return Item(f.side, "server", WARN, value,
                    "tsj is tested on PostgreSQL 15, 17 and 18; verify the result closely")
    return Item(f.side, "server", OK, value)


def _role(f: Facts, *, need: str, have: bool, fix: str) -> Item:
    rights = (f"{need} on {f.table} {'yes' if have else 'no'}, superuser "
              f"{_yes(f.superuser)}, BYPASSRLS {_yes(f.bypassrls)}, REPLICATION "
              f"{_yes(f.replication)}")
    value = f"'{f.role}': {rights}"
    if not f.has_table and f.side == "source":
        fix = "create it or point --source at the Supabase database"
        return Item(f.side, "role", BLOCKER, f"'{f.role}': table '{f.table}' not found", fix,
                    error=f"table '{f.table}' not found on the source; {fix}")
    if not have:
        return Item(f.side, "role", BLOCKER, value, fix)
    return Item(f.side, "role", OK, value)


def _yes(b: bool | None) -> str:
    return "yes" if b else "no"


def _row_security(f: Facts) -> Item:
    if f.rls_active:
        msg = schema.filtered_message(f.table, side=f.side, role=f.role)
        return Item(f.side, "row_security", BLOCKER,
                    f"on, and it filters {f.table} for role '{f.role}' (a read would silently "
                    "miss rows)", "connect as a role with BYPASSRLS, as the table's owner, or "
                    "as Supabase's 'postgres' role", error=msg)
    if f.rls_enabled:
        why = "superuser" if f.superuser else "BYPASSRLS" if f.bypassrls else "the owner"
        return Item(f.side, "row_security", OK, f"on, bypassed by this role ({why})")
    return Item(f.side, "row_security", OK, "off")


def _limits(f: Facts) -> list[Item]:
    """The role's statement and idle limits: tsj sets its own in its transactions."""
    out = []
    for name, ms, own in (("statement_timeout", f.statement_timeout_ms, STATEMENT_TIMEOUT),
                          ("idle_in_transaction_session_timeout", f.idle_timeout_ms,
                           IDLE_TIMEOUT)):
        if not ms:
            out.append(Item(f.side, name, OK, "0 (none)"))
            continue
        value = f"{_ms(ms)} for role '{f.role}'"
        out.append(Item(
            f.side, name, WARN, value,
            f"tsj sets its own {own} (SET LOCAL) for its bounded statements; any other "
            f"that outlasts {_ms(ms)} stops in one line naming it. To lift it: ALTER ROLE "
            f"\"{f.role}\" SET {name} = '{own}'"))
    return out


def _ms(ms: int) -> str:
    return f"{ms} ms" if ms < 1000 else str(dt.timedelta(milliseconds=ms))


def _size(f: Facts) -> Item:
    rows = f.estimated_rows if f.estimated_rows is not None and f.estimated_rows >= 0 else None
    parts = [_bytes(f.table_bytes or 0),
             f"~{rows:,} rows" if rows is not None else "rows unknown (never analyzed)"]
    if f.days is not None:
        parts.append(f"{f.days} day(s) with ticks")
        if rows is not None and f.days:
            parts.append(f"~{rows // f.days:,} rows a day")
    return Item(f.side, "size", OK, ", ".join(parts))


def _bytes(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    size, unit = float(n) / 1024, "kB"
    for bigger in ("MB", "GB", "TB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{size:,.1f} {unit}"


def _hypertable(f: Facts) -> Item:
    if f.hypertable:
        return Item(f.side, "hypertable", OK, f"{f.table} is a hypertable")
    if not f.has_table:
        return Item(f.side, "hypertable", BLOCKER, f"no table '{f.table}'", "run 'tsj provision'",
                    error=f"table '{f.table}' not found on the target; run 'tsj provision'")
    fix = ("check that --source and --target are not swapped, or run 'tsj provision' on the "
           "TimescaleDB")
    return Item(f.side, "hypertable", BLOCKER, f"{f.table} is a plain table", fix,
                error=f"{f.table} on the target (database '{f.database}') is not a "
                      f"hypertable; {fix}")


def _index(f: Facts) -> Item:
    if f.symbol_time_index:
        return Item(f.side, "index", OK, "led by (symbol, time)")
    return Item(f.side, "index", WARN, "no index led by (symbol, time)",
                f"each symbol-day read scans the whole table: CREATE INDEX ON {f.table} "
                "(symbol, time)")


def _change_feed(f: Facts) -> list[Item]:
    """What a parallel run's change feed (logical decoding) needs of the source."""
    why = "a parallel run's change feed needs it; a one-off copy does not"
    free = f.max_slots - f.used_slots
    return [
        Item(f.side, "replication", OK if f.replication or f.superuser else WARN,
             f"role '{f.role}' {'has' if f.replication or f.superuser else 'lacks'} "
             "REPLICATION", "" if f.replication or f.superuser else
             f"{why}: ALTER ROLE \"{f.role}\" REPLICATION, or a role that has it"),
        Item(f.side, "wal_level", OK if f.wal_level == "logical" else WARN, f.wal_level,
             "" if f.wal_level == "logical" else
             f"{why}: ALTER SYSTEM SET wal_level = logical and a restart"),
        Item(f.side, "replication_slots", OK if free > 0 else WARN,
             f"{free} free of {f.max_slots}", "" if free > 0 else
             f"{why}: drop an unused slot or raise max_replication_slots"),
    ]


def _pooler(f: Facts) -> Item:
    p = f.pooling
    if p is None or not p.pooled:
        return Item(f.side, "pooler", OK, "direct")
    mode = ("transaction mode (Supabase's port 6543)" if f.url_port == SUPABASE_TRANSACTION_PORT
            else "transaction or session mode")
    prepared = "" if p.prepares else ", prepared statements off"
    return Item(f.side, "pooler", OK, f"a pooler on port {f.url_port} (server port "
                f"{p.server_port}), {mode}{prepared}: each read is one statement and each "
                "batch one transaction, so both modes work")
