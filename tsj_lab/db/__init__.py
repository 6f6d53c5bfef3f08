"""Pooled connections, the capability probe, and a SQLAlchemy engine on the same target.

Every connection error goes through :func:`explain`, which turns libpq's text into one
line that names the cause and the fix, with the password redacted.
"""

from __future__ import annotations

import atexit
import logging
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from .. import queries
from ..config import redact, validate_url
from ..errors import ConnectError, TsjError

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.engine import Engine

log = logging.getLogger("tsj_lab")

#: a statement db.one/scalar run: SQL text or a composed block (queries.compose)
Statement = str | psycopg.sql.SQL | psycopg.sql.Composed
Params = Mapping[str, Any] | Sequence[Any] | None


@dataclass(frozen=True)
class Capabilities:
    """What the connected server can do."""

    postgres_version: str
    postgres_version_num: int
    timescaledb_version: str | None
    license: str | None  # 'timescale', 'apache', or None without the extension
    timescaledb_available: bool  # the extension can be created in this database

    @property
    def edition(self) -> str:
        if self.timescaledb_version is None:
            return "postgresql"
        return f"timescaledb-{self.license}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"edition": self.edition}


def explain(exc: BaseException, url: str) -> TsjError:
    """A one-line :class:`ConnectError` for a failed connection to ``url``."""
    where = redact(url)
    msg = " ".join(str(exc).split())
    low = msg.lower()
    if "password authentication failed" in low:
        cause, fix = "the password was refused", "check the password in the URL or passfile"
    elif "does not exist" in low and "database" in low:
        cause, fix = "the database does not exist", "create it or fix the database name in the URL"
    elif "role" in low and "does not exist" in low:
        cause, fix = "the user does not exist", "fix the user name in the URL"
    elif "connection refused" in low or "could not connect" in low:
        cause, fix = "nothing accepts connections there", "start the server or fix host and port"
    elif "could not translate host name" in low or "name or service not known" in low:
        cause, fix = "the host name does not resolve", "fix the host in the URL"
    elif "statement pooling mode" in low:
        cause = "a pooler in statement mode is there, and it refuses the transactions tsj needs"
        fix = "use the pooler's transaction-mode (or session-mode) port, e.g. Supabase's 6543"
    elif "timeout" in low or isinstance(exc, PoolTimeout):
        cause, fix = "the connection timed out", "check the host, port and firewall"
    else:
        cause, fix = redact(msg), "check the URL"
    return ConnectError(f"cannot connect to {where}: {cause}; {fix}")


def connect(url: str, *, autocommit: bool = False, **kwargs: Any) -> psycopg.Connection[Any]:
    """One connection to ``url``; failures become a one-line :class:`ConnectError`.

    Behind a pooler that does not manage prepared statements, psycopg's own (prepared
    after a query's 5th run) are turned off: see :func:`pooling`.
    """
    validate_url(url)
    try:
        conn = psycopg.connect(url, autocommit=autocommit, connect_timeout=10, **kwargs)
    except psycopg.OperationalError as exc:
        raise explain(exc, url) from None
    if "prepare_threshold" not in kwargs:
        try:
            found = _POOLING.get(url) or _detect_pooling(conn, url)
        except psycopg.OperationalError as exc:
            conn.close()
            raise explain(exc, url) from None
        if not found.prepares:
            conn.prepare_threshold = None
    return conn


# -- poolers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pooling:
    """What stands between tsj and the server, as far as a connection can tell."""

    pooled: bool  # the server accepted us on another port than the URL's: a pooler (or proxy)
    server_port: int | None  # the port the server accepted the connection on
    prepares: bool  # psycopg may prepare statements on the server (direct, or pooler-managed)

    def describe(self) -> str:
        if not self.pooled:
            return "direct"
        return ("through a pooler" + ("" if self.prepares else
                " without prepared-statement support (psycopg's prepared statements off)"))


_POOLING: dict[str, Pooling] = {}


def pooling(url: str) -> Pooling:
    """How ``url`` reaches its server (detected once per URL and process).

    A pooler is seen by the port: the server names the port it accepted the connection on
    (``inet_server_port()``), which differs from the URL's when PgBouncer, Supavisor or a
    cloud pooler sits in between. Behind one, a transaction-mode pooler may hand each
    transaction another server connection, so tsj keeps no session state across
    transactions. Prepared statements survive it only when the pooler manages them
    (PgBouncer 1.21+ with ``max_prepared_statements`` > 0), which shows as the server not
    knowing a statement by the name the client gave it (PgBouncer renames them).
    """
    if url not in _POOLING:
        with connect(url, autocommit=True):  # detects and caches
            pass
    return _POOLING[url]


def _detect_pooling(conn: psycopg.Connection[Any], url: str) -> Pooling:
    _pid, server_port = one(conn, queries.text("pooler.server_side"), prepare=False)
    url_port = urlsplit(url).port or 5432
    pooled = server_port is not None and int(server_port) != url_port
    prepares = True
    if pooled:
        name = f"tsj_probe_{uuid.uuid4().hex[:12]}"
        with conn.transaction():  # one transaction: one server connection for the probe
            res = conn.pgconn.prepare(name.encode(), b"SELECT 1")
            if res.status != psycopg.pq.ExecStatus.COMMAND_OK:
                raise psycopg.OperationalError(res.error_message.decode(errors="replace"))
            kept = scalar(conn, queries.text("pooler.prepared_here"), {"name": name},
                          prepare=False)
            if kept:  # passed through as is: the pooler does not manage prepared statements
                conn.execute(queries.compose("pooler.deallocate", statement=name), prepare=False)
            prepares = not kept
    found = Pooling(pooled, None if server_port is None else int(server_port), prepares)
    _POOLING[url] = found
    if pooled:
        log.info("%s: %s", redact(url), found.describe())
    return found


def pool(
    url: str,
    *,
    min_size: int = 2,
    max_size: int = 20,
    timeout: float = 30.0,
    name: str = "tsj",
) -> ConnectionPool:
    """An open pool to ``url`` (the story's min 2, max 20), checked with one connection."""
    if min_size < 0 or max_size < 1 or min_size > max_size:
        raise ValueError(f"pool size min={min_size} max={max_size} is invalid; need 0 <= min <= max")
    validate_url(url)
    # Fail fast, with the cause, rather than after the pool's 30 s of retries.
    connect(url).close()
    kwargs: dict[str, Any] = {"connect_timeout": 10}
    if not pooling(url).prepares:
        kwargs["prepare_threshold"] = None
    p = ConnectionPool(
        url, min_size=min_size, max_size=max_size, timeout=timeout, name=name, open=False,
        kwargs=kwargs,
    )
    p.open(wait=True, timeout=timeout)
    return p


@contextmanager
def connection(url: str, *, autocommit: bool = False) -> Iterator[psycopg.Connection[Any]]:
    conn = connect(url, autocommit=autocommit)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


@contextmanager
def using(target: str | psycopg.Connection[Any], *,
          autocommit: bool = False) -> Iterator[psycopg.Connection[Any]]:
    """``target`` itself when it is a connection (left open; its transactions are the
    caller's), else a new connection to the URL, closed afterwards: how a phase takes
    either and hands one connection down to its steps."""
    if isinstance(target, psycopg.Connection):
        yield target
        return
    with connection(target, autocommit=autocommit) as conn:
        yield conn


def url_of(conn: psycopg.Connection[Any]) -> str:
    """The URL a connection was made to, without its password (for messages)."""
    info = conn.info
    host = f"[{info.host}]" if ":" in info.host else info.host
    return f"postgresql://{info.user}@{host}:{info.port}/{info.dbname}"


def one(conn: psycopg.Connection[Any], query: Statement, params: Params = None,
        **kwargs: Any) -> tuple[Any, ...]:
    """The row a single-row ``query`` returns (an aggregate, a catalog lookup)."""
    row = conn.execute(query, params, **kwargs).fetchone()
    if row is None:  # a bug in the query, not in the data: say which
        raise TsjError(f"expected one row, got none from: {_first_line(query)}")
    return tuple(row)


def scalar(conn: psycopg.Connection[Any], query: Statement, params: Params = None,
           **kwargs: Any) -> Any:
    """The first value of the row a single-row ``query`` returns."""
    return one(conn, query, params, **kwargs)[0]


def _first_line(query: Statement) -> str:
    text = query if isinstance(query, str) else query.as_string(None)
    code = [s for s in text.splitlines() if s.strip() and not s.lstrip().startswith("--")]
    return code[0].strip()[:80] if code else "(empty)"


def probe(conn: psycopg.Connection[Any]) -> Capabilities:
    """PostgreSQL version, TimescaleDB version and license of the connected database."""
    pg_version, pg_num, ts_version, available = one(conn, queries.text("probe.versions"))
    license_ = None
    if ts_version is not None:
        license_ = scalar(conn, "SHOW timescaledb.license")
    return Capabilities(pg_version, int(pg_num), ts_version, license_, bool(available))


def probe_url(url: str) -> Capabilities:
    with connection(url, autocommit=True) as conn:
        return probe(conn)


def engine(url: str, **kwargs: Any) -> Engine:
    """A SQLAlchemy engine (psycopg 3 driver) on the same target, for pandas."""
    # deferred: only notebooks read through SQLAlchemy; the CLI never pays its import
    from sqlalchemy import create_engine  # noqa: PLC0415

    validate_url(url)
    sa_url = "postgresql+psycopg://" + url.split("://", 1)[1]
    try:
        prepares = pooling(url).prepares
    except ConnectError:  # said when the engine first connects; meanwhile the safe setting
        prepares = False
    if not prepares:
        kwargs.setdefault("connect_args", {}).setdefault("prepare_threshold", None)
    return create_engine(sa_url, pool_pre_ping=True, hide_parameters=True, **kwargs)


# -- the fast fetch path: named query -> DataFrame -----------------------------------------
#
# ADBC's PostgreSQL driver reads results with COPY BINARY and decodes them in C++ straight
# into Arrow columns; pandas then takes the columns without per-row Python objects. Values
# are still bound by psycopg (client-side, ``ClientCursor.mogrify``), so queries keep their
# ``%(name)s`` parameters and nothing is spliced into SQL by hand. Both connections are
# kept per thread and per URL: a fresh connection costs more than a 1 h window's fetch.
# See docs/benchmarks.md for the measured alternatives.

_FRAME_CONNS = threading.local()
# Closed while the interpreter is whole: ADBC's finalizer fails noisily at shutdown.
atexit.register(lambda: close_frames())


def read_frame(
    url: str,
    query_name: str,
    params: Mapping[str, Any] | None = None,
    *,
    identifiers: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The rows of the named query as a DataFrame, through Arrow (ADBC).

    ``identifiers`` fill ``{name}`` placeholders (a view or table name). NUMERIC columns
    come back as text: cast them to float8 in the query when the frame wants numbers.
    """
    return read_query(url, queries.compose(query_name, **(identifiers or {})), params)


def read_query(url: str, query: str | psycopg.sql.SQL | psycopg.sql.Composed,
               params: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The rows of ``query`` (psycopg ``%(name)s`` parameters) as a DataFrame, through Arrow.

    The engine of :func:`read_frame`; :func:`tsj_lab.lab.adhoc.read` calls it for ad-hoc SQL.
    """
    for attempt in (1, 2):
        pg, arrow = _frame_connections(url)
        bound = psycopg.ClientCursor(pg).mogrify(query, params)
        try:
            with arrow.cursor() as cur:
                cur.execute(bound)
                table = cur.fetch_arrow_table()
            return table.to_pandas()
        except Exception:
            # A dropped connection (server restart) is retried once on a new one;
            # a second failure, or a failing query, is the caller's to see.
            if attempt == 2 or not _frame_connection_broken(url):
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def close_frames() -> None:
    """Close this thread's cached :func:`read_frame` connections."""
    cache: dict[str, tuple[Any, Any]] = getattr(_FRAME_CONNS, "cache", {})
    for pg, arrow in cache.values():
        _close_quietly(arrow)
        _close_quietly(pg)
    cache.clear()


def _frame_connections(url: str) -> tuple[psycopg.Connection[Any], Any]:
    cache: dict[str, tuple[Any, Any]] = _FRAME_CONNS.__dict__.setdefault("cache", {})
    if url not in cache:
        # deferred: ADBC and pyarrow take half a second to import; only frame reads need them
        import adbc_driver_postgresql.dbapi as adbc  # noqa: PLC0415

        pg = connect(url, autocommit=True)
        try:
            arrow = adbc.connect(url, autocommit=True)
        except Exception as exc:
            pg.close()
            raise explain(exc, url) from None
        cache[url] = (pg, arrow)
    return cache[url]


def _frame_connection_broken(url: str) -> bool:
    """Whether the cached connection to ``url`` is dead; a dead one is dropped."""
    cache: dict[str, tuple[Any, Any]] = getattr(_FRAME_CONNS, "cache", {})
    pg, arrow = cache.get(url, (None, None))
    try:
        with arrow.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()
        return False
    except Exception:
        cache.pop(url, None)
        _close_quietly(arrow)
        _close_quietly(pg)
        return True


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # closing a dead connection may raise; nothing to do about it
        pass
