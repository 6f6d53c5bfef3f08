"""Fast reads into DataFrames: named queries as one row of column arrays (psycopg, prepared
where the endpoint allows), ad-hoc SQL through Arrow (ADBC), and a SQLAlchemy engine for
pandas and JupySQL on the same database."""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg import sql

from .. import queries
from ..config import validate_url
from ..errors import ConnectError
from .conn import connect, explain, pooling, url_text

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.engine import Engine

    from .endpoint import Endpoint

T = TypeVar("T")


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
# read_frame asks for one row: the query's rows folded into one array per column on the
# server (``SELECT array_agg(c0), array_agg(c1), ... FROM (query) AS q(c0, c1, ...)``), in
# binary, and decodes fixed-width arrays with numpy (tsj_lab.db.columns): one message, no
# Python object per value. Where the endpoint allows server-side prepared statements
# (direct, or a pooler that manages them: Endpoint.pooling) the statement is prepared and
# the session plans it generically (plan_cache_mode), so a repeated read skips the planner:
# 1.9-2.0 ms of the real-time candle view's 3.3 ms on the bench-large tables. Behind a
# transaction-mode pooler without them the same statement runs unprepared. Values are bound
# by psycopg (``%(name)s``); nothing is spliced into SQL by hand. Ad-hoc SQL
# (read_query, %%sql's read) still goes through ADBC/Arrow, which takes any statement.
# Connections are kept per thread and URL: a fresh one costs more than a 1 h window's fetch.
# See docs/benchmarks.md for the measured alternatives.

_FRAME_CONNS = threading.local()
# Closed while the interpreter is whole: ADBC's finalizer fails noisily at shutdown.
atexit.register(lambda: close_frames())


@dataclass(frozen=True)
class _Shape:
    """A query's result columns, and the statement folding its rows into one array each."""

    names: tuple[str, ...]
    oids: tuple[int, ...]  # element type oid per column
    folded: sql.SQL | sql.Composed


class _Frames:
    """One thread's connections to one URL: psycopg (column reads, binding), ADBC (lazy)."""

    def __init__(self, db: Endpoint | str):
        self.db = db
        # deferred: numpy and pandas are for frame reads; the CLI's start never pays for them
        from . import columns  # noqa: PLC0415

        self.pg = connect(db, autocommit=True)  # detects the pooling first: no extra connect
        columns.register(self.pg)
        self.prepares = prepares(db)
        if generic_plans(db):
            # plan once per connection, not per read (the note above); a session setting,
            # so never through a pooler, where it would stay on a shared server connection
            self.pg.execute(queries.text("frames.generic_plans"))
        self.shapes: dict[bytes, _Shape] = {}
        self._arrow: Any = None

    def shape(self, query: sql.SQL | sql.Composed, params: Mapping[str, Any] | None) -> _Shape:
        key = query.as_bytes(self.pg)
        if key not in self.shapes:
            inner = sql.SQL(key.decode().strip().rstrip(";"))  # our own named SQL, a subquery
            cur = self.pg.execute(queries.compose("frames.describe", query=inner), params)
            desc = cur.description or []
            aliases = [sql.Identifier(f"c{i}") for i in range(len(desc))]
            arrays = sql.SQL(", ").join(queries.compose("frames.column_array", column=a)
                                        for a in aliases)
            folded = queries.compose("frames.columns", arrays=arrays, query=inner,
                                     aliases=sql.SQL(", ").join(aliases))
            self.shapes[key] = _Shape(tuple(d.name for d in desc), tuple(d.type_code for d in desc),
                                      folded)
        return self.shapes[key]

    def arrow(self) -> Any:
        if self._arrow is None:
            # deferred: ADBC and pyarrow take half a second to import; only ad-hoc reads need them
            import adbc_driver_postgresql.dbapi as adbc  # noqa: PLC0415

            try:
                self._arrow = adbc.connect(url_text(self.db), autocommit=True)
            except Exception as exc:
                raise explain(exc, url_text(self.db)) from None
        return self._arrow

    def close(self) -> None:
        if self._arrow is not None:
            _close_quietly(self._arrow)
        _close_quietly(self.pg)


def prepares(db: Endpoint | str) -> bool:
    """Whether :func:`read_frame` prepares its statements on ``db``: direct (with generic
    plans), or through a pooler that manages prepared statements (plans as the server
    chooses); not through a transaction-mode pooler without that support."""
    try:
        return pooling(db).prepares
    except ConnectError:
        return False


def generic_plans(db: Endpoint | str) -> bool:
    """Whether :func:`read_frame`'s statements on ``db`` run generic plans: where it
    prepares them and nothing stands between (``plan_cache_mode`` is a session setting)."""
    return prepares(db) and not pooling(db).pooled


def read_frame(
    db: Endpoint | str,
    query_name: str,
    params: Mapping[str, Any] | None = None,
    *,
    identifiers: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The rows of the named query as a DataFrame, through the column path (above).

    ``identifiers`` fill ``{name}`` placeholders (a view or table name). float8, int and
    timestamp columns arrive as numpy columns (timestamptz as UTC); NUMERIC columns as
    exact ``Decimal`` objects (cast to float8 in the query when the frame wants floats);
    other types as psycopg loads them. The query's ORDER BY is the frame's order. The
    server holds the result as arrays while it sends them: one read is limited to
    PostgreSQL's 1 GB per value, about 89 million rows of a float8 column; page longer reads.
    """
    query = queries.compose(query_name, **(identifiers or {}))
    return _retrying(db, lambda frames: _read_columns(frames, query, params))


def read_arrow(db: Endpoint | str, query_name: str, params: Mapping[str, Any] | None = None, *,
               identifiers: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The named query through ADBC/Arrow (:func:`read_query`): read_frame's engine until
    issue 24, kept for the benchmark's comparison of fetch paths."""
    return read_query(db, queries.compose(query_name, **(identifiers or {})), params)


def read_query(db: Endpoint | str, query: str | sql.SQL | sql.Composed,
               params: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The rows of ``query`` (psycopg ``%(name)s`` parameters) as a DataFrame, through Arrow.

    :func:`tsj_lab.lab.adhoc.read` calls it for ad-hoc SQL: ADBC takes any statement and
    types its columns from the result. NUMERIC columns come back as text.
    """
    def run(frames: _Frames) -> pd.DataFrame:
        bound = psycopg.ClientCursor(frames.pg).mogrify(query, params)
        with frames.arrow().cursor() as cur:
            cur.execute(bound)
            return cur.fetch_arrow_table().to_pandas()

    return _retrying(db, run)


def _read_columns(frames: _Frames, query: sql.SQL | sql.Composed,
                  params: Mapping[str, Any] | None) -> pd.DataFrame:
    shape = frames.shape(query, params)
    cur = frames.pg.cursor(binary=True)
    cur.execute(shape.folded, params, prepare=frames.prepares)
    row = cur.fetchone()
    assert row is not None  # an aggregate without GROUP BY returns one row
    import pandas as pd  # noqa: PLC0415  # deferred, as in _Frames

    # the columns are fresh arrays of this read (numpy's byte-swapping copy): no second copy
    return pd.DataFrame({name: _column(value, oid)
                         for name, value, oid in zip(shape.names, row, shape.oids)}, copy=False)


def _column(value: Any, oid: int) -> Any:
    """One folded column as pandas takes it: array_agg of no rows is NULL."""
    import pandas as pd  # noqa: PLC0415  # deferred, as in _Frames

    from . import columns  # noqa: PLC0415

    if value is None:
        value = columns.empty(oid)
    if oid == columns.TIMESTAMPTZ and getattr(value, "dtype", None) is not None \
            and value.dtype.kind == "M":
        return pd.DatetimeIndex(value, copy=False).tz_localize("UTC")
    return value


def _retrying(db: Endpoint | str, read: Callable[[_Frames], T]) -> T:
    for attempt in (1, 2):
        frames = _frames(db)
        try:
            return read(frames)
        except psycopg.errors.FeatureNotSupported:
            # "cached plan must not change result type": a view or table was made again
            # with other columns since this connection prepared its read (and described
            # it); a new connection describes and prepares afresh
            if attempt == 2:
                raise
            _drop(url_text(db))
        except Exception:
            # A dropped connection (server restart) is retried once on a new one;
            # a second failure, or a failing query, is the caller's to see.
            if attempt == 2 or not _frame_connection_broken(url_text(db)):
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def close_frames() -> None:
    """Close this thread's cached :func:`read_frame` connections."""
    cache: dict[str, _Frames] = getattr(_FRAME_CONNS, "cache", {})
    for frames in cache.values():
        frames.close()
    cache.clear()


def _frames(db: Endpoint | str) -> _Frames:
    cache: dict[str, _Frames] = _FRAME_CONNS.__dict__.setdefault("cache", {})
    url = url_text(db)
    if url not in cache:
        cache[url] = _Frames(db)
    return cache[url]


def _frame_connection_broken(url: str) -> bool:
    """Whether the cached connections to ``url`` are dead; dead ones are dropped."""
    cache: dict[str, _Frames] = getattr(_FRAME_CONNS, "cache", {})
    frames = cache.get(url)
    if frames is None:
        return True
    try:
        frames.pg.execute("SELECT 1").fetchall()
        if frames._arrow is not None:
            with frames._arrow.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchall()
        return False
    except Exception:
        _drop(url)
        return True


def _drop(url: str) -> None:
    cache: dict[str, _Frames] = getattr(_FRAME_CONNS, "cache", {})
    frames = cache.pop(url, None)
    if frames is not None:
        frames.close()


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # closing a dead connection may raise; nothing to do about it
        pass
