"""Ad-hoc SQL for analysts: SQLAlchemy engines by connection name, and the Arrow read.

Analysts write their own SQL with ``:name`` bind parameters (SQLAlchemy's and JupySQL's
style). :func:`engine` gives a SQLAlchemy engine for a connection *name* ('target',
'source') whose URL is resolved inside the process on first connect and kept out of the
engine itself, so ``repr(engine)``, ``engine.url`` and everything that prints them
(pandas, JupySQL's connection list) never show a host, a password or a passfile path.
:func:`read` runs any such query through the fast path (ADBC, Arrow) for big results,
with the same bind parameters. The ``%%sql`` magic is wired in :mod:`tsj_lab.lab.ipython`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, text
from sqlalchemy.dialects.postgresql import psycopg as pg_dialect

from ..db import connections
from .. import db
from ..config import CONNECTION_NAMES, Settings, redact
from ..errors import ConfigError, QueryError, TsjError

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.engine import Engine

#: rows a ``%%sql`` cell keeps (JupySQL's ``SqlMagic.autolimit``); beyond it, use read()
MAX_ROWS = 100_000
_PSYCOPG_BIND = re.compile(r"%\((\w+)\)s")


def _check_name(name: str) -> str:
    if name not in CONNECTION_NAMES:
        raise ValueError(f"connection name {name!r} is unknown; use one of {CONNECTION_NAMES}")
    return name


@cache
def engine(name: str = "target") -> Engine:
    """A SQLAlchemy engine (psycopg 3) on connection ``name``; its URL never leaves the process.

    The engine is made with an empty URL and a ``creator`` that resolves ``name`` with
    :func:`tsj_lab.db.connections.resolve_url` and the settings of :func:`use_settings` on
    the first connection (starting the embedded
    server if that is the configured target), so making an engine connects to nothing.
    """
    _check_name(name)
    return create_engine("postgresql+psycopg://", creator=_connector(name),
                         pool_pre_ping=True, hide_parameters=True)


_SETTINGS: list[Settings] = []  # the kernel's, set once by use_settings


def use_settings(settings: Settings) -> None:
    """The settings connection names resolve with in this process: the kernel extension
    (:mod:`tsj_lab.lab.ipython`, at the notebook boundary) loads them once and hands them
    here, so that this module never reads the environment itself."""
    _SETTINGS[:] = [settings]


def _settings() -> Settings:
    if not _SETTINGS:
        raise ConfigError("connection names are not configured in this process; run "
                          "'%load_ext tsj_lab.lab.ipython' (kernels of this environment do) or "
                          "tsj_lab.lab.adhoc.use_settings(Settings.load())")
    return _SETTINGS[0]


def _connector(name: str) -> Any:
    lock, url = threading.Lock(), list[str]()

    def connect() -> Any:
        with lock:
            if not url:
                url.append(connections.resolve_url(name, settings=_settings()))
        return db.connect(url[0])

    return connect


def url_of(name: str) -> str:
    """The URL behind connection ``name`` (for the Arrow path; never display it)."""
    return connections.resolve_url(_check_name(name), settings=_settings())


def to_psycopg(query: str, params: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """``query`` with ``:name`` binds as psycopg's ``%(name)s``, and the values it uses.

    SQLAlchemy's own compiler does it, so ``::casts`` and ``%`` in literals come out as
    the server expects them; a quoted ``':text'`` stays text, as in a ``%%sql`` cell
    (JupySQL's own escaping). A missing value is an error naming it.
    """
    # deferred: JupySQL takes half a second to import, and the CLI's paths never bind here
    from sql.parse import escape_string_literals_with_colon_prefix  # noqa: PLC0415

    query, _ = escape_string_literals_with_colon_prefix(query)
    compiled = text(query).compile(dialect=pg_dialect.dialect())
    needed = list(compiled.params)
    missing = [k for k in needed if k not in (params or {})]
    if missing:
        raise ValueError(f"query needs a value for {', '.join(':' + k for k in missing)}; "
                         "pass it in params")
    return compiled.string, {k: params[k] for k in needed}  # type: ignore[index]


def from_psycopg(query: str) -> str:
    """A named query's psycopg ``%(name)s`` binds as the ``:name`` analysts write."""
    return _PSYCOPG_BIND.sub(r":\1", query).replace("%%", "%")


def read(query: str, params: Mapping[str, Any] | None = None, *,
         connection: str = "target") -> pd.DataFrame:
    """Every row of ``query`` as a DataFrame through Arrow (ADBC): the path for big reads.

    ``params`` fill the query's ``:name`` binds, as in ``%%sql`` and ``pandas.read_sql``.
    NUMERIC columns come back as text: cast them (``::float8``) when you want numbers.
    """
    bound, values = to_psycopg(query, params)
    url = url_of(connection)
    try:
        return db.read_query(url, bound, values)
    except TsjError:
        raise
    except Exception as exc:  # ADBC's and psycopg's errors echo the query with its values
        raise QueryError(f"{sql_error(exc)} (on {connection!r})") from None


_SERVER_ERROR = re.compile(r"ERROR:\s+([^\n]+)")


def sql_error(exc: BaseException) -> str:
    """PostgreSQL's own one-line message for a failed statement (no URL, no SQL echo)."""
    orig = getattr(exc, "orig", None) or exc
    diag = getattr(orig, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if primary:
        return " ".join(primary.split())
    found = _SERVER_ERROR.search(str(orig))  # ADBC: '...: ERROR:  <message>\nLINE 1: ...'
    if found:
        return " ".join(found.group(1).split())
    text_ = str(orig).strip().splitlines()
    return redact(text_[0]) if text_ else type(orig).__name__
