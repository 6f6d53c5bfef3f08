"""Connections, pools and the capability probe, on an :class:`~tsj_lab.db.endpoint.Endpoint`
(or, for tests and notebooks, a URL string, which is validated each time).

Every connection error goes through :func:`explain`, which turns libpq's text into one
line that names the cause and the fix, with the password redacted. Every connect and
probe is counted in :data:`COUNTS` (per database), so a test can hold a command to
"each database probed once".
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
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
    from .endpoint import Endpoint

log = logging.getLogger("tsj_lab")

#: connects and probes per database in this process: ("connect" | "probe", url_of) -> n
COUNTS: Counter[tuple[str, str]] = Counter()


#: a statement db.one/scalar run: SQL text or a composed block (queries.compose)
Statement = str | psycopg.sql.SQL | psycopg.sql.Composed
Params = Mapping[str, Any] | Sequence[Any] | None


def url_text(db: Endpoint | str) -> str:
    """The URL behind ``db`` (with its password: for libpq, never for messages)."""
    return db if isinstance(db, str) else db.url


def shown(db: Endpoint | str) -> str:
    """``db`` as messages show it: the URL with its password replaced by ``***``."""
    return redact(url_text(db))


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
    elif "canceling statement due to statement timeout" in low:
        cause = "the role's statement_timeout stopped tsj's first catalog read"
        fix = "raise it for this role (ALTER ROLE ... SET statement_timeout = '15min')"
    elif "timeout" in low or isinstance(exc, PoolTimeout):
        cause, fix = "the connection timed out", "check the host, port and firewall"
    else:
        cause, fix = redact(msg), "check the URL"
    return ConnectError(f"cannot connect to {where}: {cause}; {fix}")


def connect(db: Endpoint | str, *, autocommit: bool = False,
            **kwargs: Any) -> psycopg.Connection[Any]:
    """One connection to ``db``; failures become a one-line :class:`ConnectError`.

    Behind a pooler that does not manage prepared statements, psycopg's own (prepared
    after a query's 5th run) are turned off: see :func:`pooling`.
    """
    url = db if isinstance(db, str) else db.url
    if isinstance(db, str):
        validate_url(url)
    try:
        conn = psycopg.connect(url, autocommit=autocommit, connect_timeout=10, **kwargs)
    except psycopg.OperationalError as exc:
        raise explain(exc, url) from None
    COUNTS["connect", url_of(conn)] += 1
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


def pooling(db: Endpoint | str) -> Pooling:
    """How ``url`` reaches its server (detected once per URL and process).

    A pooler is seen by the port: the server names the port it accepted the connection on
    (``inet_server_port()``), which differs from the URL's when PgBouncer, Supavisor or a
    cloud pooler sits in between. Behind one, a transaction-mode pooler may hand each
    transaction another server connection, so tsj keeps no session state across
    transactions. Prepared statements survive it only when the pooler manages them
    (PgBouncer 1.21+ with ``max_prepared_statements`` > 0), which shows as the server not
    knowing a statement by the name the client gave it (PgBouncer renames them).
    """
    url = url_text(db)
    if url not in _POOLING:
        with connect(db, autocommit=True):  # detects and caches
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
    db: Endpoint | str,
    *,
    min_size: int = 2,
    max_size: int = 20,
    timeout: float = 30.0,
    name: str = "tsj",
) -> ConnectionPool:
    """An open pool to ``url`` (the story's min 2, max 20), checked with one connection."""
    if min_size < 0 or max_size < 1 or min_size > max_size:
        raise ValueError(f"pool size min={min_size} max={max_size} is invalid; need 0 <= min <= max")
    url = url_text(db)
    # Fail fast, with the cause, rather than after the pool's 30 s of retries.
    connect(db).close()
    kwargs: dict[str, Any] = {"connect_timeout": 10}
    if not pooling(db).prepares:
        kwargs["prepare_threshold"] = None
    p = ConnectionPool(
        url, min_size=min_size, max_size=max_size, timeout=timeout, name=name, open=False,
        kwargs=kwargs,
    )
    p.open(wait=True, timeout=timeout)
    return p


@contextmanager
def connection(db: Endpoint | str, *,
               autocommit: bool = False) -> Iterator[psycopg.Connection[Any]]:
    """A connection to ``db`` for a block: the Endpoint's held one (autocommit steps of a
    phase share it, see :meth:`Endpoint.held`), else a new one, closed afterwards."""
    shared = None if isinstance(db, str) or not autocommit else db.held_connection()
    if shared is not None:
        yield shared
        return
    conn = connect(db, autocommit=autocommit)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


@contextmanager
def using(target: Endpoint | str | psycopg.Connection[Any], *,
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
    """PostgreSQL version, TimescaleDB version and license of the connected database
    (:attr:`Endpoint.caps <tsj_lab.db.endpoint.Endpoint.caps>` keeps it for a command)."""
    COUNTS["probe", url_of(conn)] += 1
    pg_version, pg_num, ts_version, available = one(conn, queries.text("probe.versions"))
    license_ = None
    if ts_version is not None:
        license_ = scalar(conn, "SHOW timescaledb.license")
    return Capabilities(pg_version, int(pg_num), ts_version, license_, bool(available))


def probe_url(db: Endpoint | str) -> Capabilities:
    """The capabilities of ``db``: an Endpoint's own (probed once), else a probe now."""
    if not isinstance(db, str):
        return db.caps
    with connection(db, autocommit=True) as conn:
        return probe(conn)


def capabilities(db: Endpoint | str | psycopg.Connection[Any],
                 conn: psycopg.Connection[Any] | None = None) -> Capabilities:
    """What ``db`` can do, probed at most once per Endpoint: on ``conn`` when one is open
    (no extra connection), else on a connection of its own."""
    if isinstance(db, psycopg.Connection):
        return probe(db)
    if not isinstance(db, str):
        return db.capabilities(conn)
    if conn is not None:
        return probe(conn)
    return probe_url(db)
