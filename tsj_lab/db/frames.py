"""Fast reads into DataFrames: named queries through Arrow (ADBC), and a SQLAlchemy engine
for pandas and JupySQL on the same database."""

from __future__ import annotations

import atexit
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import psycopg

from .. import queries
from ..config import validate_url
from ..errors import ConnectError
from .conn import connect, explain, pooling, url_text

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.engine import Engine

    from .endpoint import Endpoint


def engine(db: Endpoint | str, **kwargs: Any) -> Engine:
    """A SQLAlchemy engine (psycopg 3 driver) on the same target, for pandas."""
    # deferred: only notebooks read through SQLAlchemy; the CLI never pays its import
    from sqlalchemy import create_engine  # noqa: PLC0415

    url = validate_url(db) if isinstance(db, str) else db.url
    sa_url = "postgresql+psycopg://" + url.split("://", 1)[1]
    try:
        prepares = pooling(db).prepares
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
    db: Endpoint | str,
    query_name: str,
    params: Mapping[str, Any] | None = None,
    *,
    identifiers: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The rows of the named query as a DataFrame, through Arrow (ADBC).

    ``identifiers`` fill ``{name}`` placeholders (a view or table name). NUMERIC columns
    come back as text: cast them to float8 in the query when the frame wants numbers.
    """
    return read_query(db, queries.compose(query_name, **(identifiers or {})), params)


def read_query(db: Endpoint | str, query: str | psycopg.sql.SQL | psycopg.sql.Composed,
               params: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The rows of ``query`` (psycopg ``%(name)s`` parameters) as a DataFrame, through Arrow.

    The engine of :func:`read_frame`; :func:`tsj_lab.lab.adhoc.read` calls it for ad-hoc SQL.
    """
    for attempt in (1, 2):
        pg, arrow = _frame_connections(db)
        bound = psycopg.ClientCursor(pg).mogrify(query, params)
        try:
            with arrow.cursor() as cur:
                cur.execute(bound)
                table = cur.fetch_arrow_table()
            return table.to_pandas()
        except Exception:
            # A dropped connection (server restart) is retried once on a new one;
            # a second failure, or a failing query, is the caller's to see.
            if attempt == 2 or not _frame_connection_broken(url_text(db)):
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def close_frames() -> None:
    """Close this thread's cached :func:`read_frame` connections."""
    cache: dict[str, tuple[Any, Any]] = getattr(_FRAME_CONNS, "cache", {})
    for pg, arrow in cache.values():
        _close_quietly(arrow)
        _close_quietly(pg)
    cache.clear()


def _frame_connections(db: Endpoint | str) -> tuple[psycopg.Connection[Any], Any]:
    cache: dict[str, tuple[Any, Any]] = _FRAME_CONNS.__dict__.setdefault("cache", {})
    url = url_text(db)
    if url not in cache:
        # deferred: ADBC and pyarrow take half a second to import; only frame reads need them
        import adbc_driver_postgresql.dbapi as adbc  # noqa: PLC0415

        pg = connect(db, autocommit=True)
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
