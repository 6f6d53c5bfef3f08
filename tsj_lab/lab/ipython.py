"""The IPython extension every notebook kernel loads: ``%%sql`` on 'target' and 'source'.

``load_ipython_extension`` registers JupySQL's magics and the connection names
'target' (made current) and 'source' as ``%sql`` connections, and puts ``engines``
(the names' SQLAlchemy engines, :func:`tsj_lab.lab.adhoc.engine`) in the user namespace.
``python -m tsj_lab.lab.ipython install`` (run by ``make setup``) writes an IPython config
file into this environment's ``etc/ipython`` so that every kernel started from it
(JupyterLab, papermill, nbval) loads the extension; ``%load_ext tsj_lab.lab.ipython`` does
the same by hand.

What changes from JupySQL's defaults, and why:

- A connection is known by its name only: no URL is resolved, shown or stored (the
  engine's URL is empty, see :mod:`tsj_lab.lab.adhoc`), and the name connects on first use,
  so a kernel that never runs SQL connects to nothing and starts no server.
- ``:name`` bind parameters are on (``named_parameters``); the SQL is sent as written,
  not rewritten by sqlglot (which turns ``ORDER BY 1`` into ``ORDER BY 1 NULLS FIRST``).
- Results are DataFrames (``autopandas``), read through a server-side cursor that stops
  at ``autolimit`` rows (:data:`tsj_lab.lab.adhoc.MAX_ROWS`) with a message saying so: a
  ``SELECT * FROM tick_data`` does not pull millions of rows into the kernel.
- A failing statement is PostgreSQL's one-line message, without traceback or SQL echo.
- JupySQL's config files (pyproject.toml, ~/.jupysql) and DSN default connection are not
  read: the first prints a hint about a missing 'toml' package into every report.
"""

from __future__ import annotations

import atexit
import json
import sys
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import sqlalchemy
import sqlparse
from IPython import get_ipython
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import needs_local_scope
from sql import display as sql_display
from sql import exceptions, parse
from sql._current import _set_sql_magic
from sql._patch import patch_ipython_usage_error
from sql.connection import ConnectionManager, SQLAlchemyConnection
from sql.magic import RenderMagic, SqlCmdMagic, SqlMagic, SqlPlotMagic
from sqlalchemy.engine.result import IteratorResult, SimpleResultMetaData

from . import adhoc, tables
from ..config import Settings
from ..db import explain
from ..errors import TsjError

#: the JupySQL settings every kernel starts with
SETTINGS: dict[str, Any] = {
    "autopandas": True, "autolimit": adhoc.MAX_ROWS, "named_parameters": "enabled",
    "short_errors": True, "displaycon": True, "feedback": 1,
}
EXTENSION = "tsj_lab.lab.ipython"
_FORMER_NAME = "tsj_lab.ipython"
_ROW_STATEMENTS = ("select", "with", "table", "values")


class NamedConnection(SQLAlchemyConnection):
    """A JupySQL connection known by name, connected on first use, capped, untranslated."""

    def __init__(self, engine: sqlalchemy.engine.Engine, alias: str, config: Any) -> None:
        # JupySQL connects in __init__; we only register, and connect in _open().
        self.__dict__.update(_tsj_engine=engine, _tsj_config=config, _tsj_open=False,
                             _url=alias, alias=alias)
        ConnectionManager.connections[alias] = self
        self._result_sets = _ResultSets()

    def __getattr__(self, name: str) -> Any:
        # Reached only for what JupySQL's __init__ would have set: connect, then look again.
        if name.startswith("_tsj") or self.__dict__.get("_tsj_open"):
            raise AttributeError(name)
        self._open()
        return getattr(self, name)

    def _open(self) -> None:
        self.__dict__["_tsj_open"] = True
        current = ConnectionManager.current
        try:
            SQLAlchemyConnection.__init__(self, self._tsj_engine, alias=self.alias,
                                          config=self._tsj_config)
        except Exception as exc:
            self.__dict__["_tsj_open"] = False
            raise _usage_error(f"cannot connect to {self.alias!r}: {_cause(exc)}",
                               "ConnectError") from None
        finally:
            ConnectionManager.current = current if current is not None else self
        self._url = self.alias  # JupySQL's init stored repr(engine.url); keep only the name

    def close(self) -> None:
        if self.__dict__.get("_tsj_open"):
            super().close()

    def _transpile_query(self, query: str) -> str:
        return query  # PostgreSQL as written; see the module docstring

    def raw_execute(self, query: str, parameters: Any = None, with_: Any = None) -> Any:
        try:
            return super().raw_execute(query, parameters=parameters, with_=with_)
        except (sqlalchemy.exc.DBAPIError, _psycopg_error()) as exc:
            raise _usage_error(f"{adhoc.sql_error(exc)} (on {self.alias!r})", "SQLError") from None
        except ValueError as exc:  # a :name without a value (adhoc.to_psycopg)
            raise _usage_error(str(exc), "SQLError") from None

    def _execute_with_parameters(self, query: str, parameters: Any) -> Any:
        limit = getattr(self._tsj_config, "autolimit", 0) or 0
        first = query.lstrip().split(None, 1)[0].lower() if query.strip() else ""
        if limit <= 0 or first not in _ROW_STATEMENTS:
            return super()._execute_with_parameters(query, parameters)
        bound, values = adhoc.to_psycopg(query, parameters or {})
        keys, rows = _fetch_capped(self._connection.connection.driver_connection, bound,
                                   values, limit=limit)
        if len(rows) > limit:
            rows = rows[:limit]
            # a note, not an error: JupySQL's own message display (as 'Switching to
            # connection'), which wraps at words; stderr's pink box read as a failure
            sql_display.message(
                f"The result has more than {limit:,} rows; %%sql kept the first {limit:,}. "
                f"Read it whole with tsj_lab.lab.adhoc.read(query, params, "
                f"connection={self.alias!r}) (Arrow), or narrow the query.")
        return IteratorResult(SimpleResultMetaData(keys), iter(rows))


def _fetch_capped(conn: Any, query: str, params: Mapping[str, Any], *,
                  limit: int) -> tuple[list[str], list[tuple[Any, ...]]]:
    """``limit + 1`` rows at most through a server-side cursor, in its own transaction."""
    with conn.transaction(), conn.cursor(name="tsj_adhoc") as cur:
        cur.execute(query, params)
        rows = cur.fetchmany(limit + 1)
        keys = [d.name for d in cur.description or []]
    return keys, rows


class _ResultSets(list[Any]):
    """JupySQL's result-set bookkeeping, for a connection not opened yet."""

    def append(self, result: Any) -> None:
        if result in self:
            self.remove(result)
        super().append(result)

    def is_last(self, result: Any) -> bool:
        return not self or self[-1] is result

    def close_all(self) -> None:
        for r in self:
            r.close()
        self.clear()


def _cause(exc: BaseException) -> str:
    """Why a connection failed, and the fix, without the URL (which tsj's messages name)."""
    root = exc.__cause__ or exc
    root = getattr(root, "orig", None) or root  # SQLAlchemy wraps the driver's error
    if not isinstance(root, TsjError):
        root = explain(root, "")
    # tsj's ConnectError reads 'cannot connect to URL: cause; fix'
    return str(root).split(": ", 1)[-1]


def _psycopg_error() -> type[BaseException]:
    return psycopg.Error


def _usage_error(message: str, kind: str) -> Exception:
    # IPython shows a UsageError as its message alone, no traceback (JupySQL's own trick).
    return exceptions.exception_factory(kind)(message)


def _show_usage_error(shell: Any, exc: BaseException) -> None:
    """A magic's error as an error output of one line (JupySQL prints it to stderr).

    As an error output it is what papermill, nbval and the report name as the cell's
    failure (``SQLError: relation "x" does not exist (on 'target')``); the traceback is
    that one line.
    """
    kind = getattr(exc, "error_type", None) or type(exc).__name__
    shell._showtraceback(type(kind, (Exception,), {}), str(exc), [f"{kind}: {exc}"])


#: the analysts' connections ("pooler", the third of config.CONNECTION_NAMES, is the benchmark's)
ANALYST_CONNECTIONS = ("target", "source")


def register(shell: Any, names: tuple[str, ...] = ANALYST_CONNECTIONS) -> None:
    """JupySQL's magics in ``shell``, configured, with ``names`` as connections ('target' current)."""
    # the notebook boundary: the kernel reads its settings once, and the names resolve
    # with them (adhoc.engine connects on first use)
    adhoc.use_settings(Settings.load())
    magic = SqlMagic(shell)
    for key, value in SETTINGS.items():
        setattr(magic, key, value)
    _set_sql_magic(magic)
    for m in (magic, RenderMagic, SqlPlotMagic, SqlCmdMagic):
        shell.register_magics(m)
    shell.register_magic_function(_checked(magic), magic_kind="line_cell", magic_name="sql")
    patch_ipython_usage_error(shell)
    shell.show_usage_error = types.MethodType(_show_usage_error, shell)
    # JupySQL closes its connections at exit saying so through IPython's display, which
    # outside a kernel (pytest, scripts) is gone by then: close them without a word.
    atexit.unregister(ConnectionManager.close_all)
    atexit.register(ConnectionManager.close_all, verbose=False)
    for name in sorted(names, key=lambda n: n == "target"):  # target last: the current one
        NamedConnection(adhoc.engine(name), name, magic)
    ConnectionManager.current = ConnectionManager.connections["target"]
    shell.push({"engines": {name: adhoc.engine(name) for name in names}})
    # Frames read as people read figures (tables.formatters): NUMERIC(20,8)'s
    # 4297.25000000 as 4297.25, counts as 345,600, not 345600.000000 or 1.86e+05
    html = shell.display_formatter.formatters["text/html"]
    html.for_type(pd.DataFrame, tables.frame_html)
    html.for_type(pd.Series, tables.series_html)
    # the benchmark's data set, shown by its notebook, by name: bench is a layer above lab
    html.for_type_by_name("tsj_lab.bench", "Dataset", tables.record_html)


def _checked(magic: Any) -> Any:
    """JupySQL's ``%sql``/``%%sql``, first checking that a lone first word names a connection.

    JupySQL reads a word it does not know as the start of the SQL: ``%%sql nosuchconn``
    answered "'nosuchconn\\nSELECT' is not a valid connection identifier" (the cell's first
    word in it), or sent ``nosuchconn SELECT ...`` to the server. A word that is no SQL
    keyword, no connection and no variable of the notebook is a mistyped connection name.
    """
    @needs_local_scope
    def sql(line: str = "", cell: str | None = None, local_ns: Any = None) -> Any:
        check_connection(magic, line, local_ns or {})
        return magic.execute(line, cell or "", local_ns)

    sql.__doc__ = magic.execute.__doc__
    return sql


def check_connection(magic: Any, line: str, local_ns: Mapping[str, Any]) -> None:
    """A UsageError naming the connections when the line's one word is not one of them."""
    words = parse.magic_args(magic.execute, line, "sql", allowed_duplicates=_DUPLICATES).line
    if len(words) == 1 and _unknown_connection(words[0], local_ns):
        known = sorted(ConnectionManager.connections)
        raise _usage_error(f"no connection {words[0]!r}; the connections are "
                           f"{', '.join(map(repr, known))} (e.g. %%sql {_first(known)})",
                           "UsageError")


#: JupySQL's own list (sql.command.SQLCommand), so the line parses as it would there
_DUPLICATES = ["-w", "--with", "--append", "--interact"]


def _unknown_connection(word: str, local_ns: Mapping[str, Any]) -> bool:
    if not word.isidentifier() or word in ConnectionManager.connections or word in local_ns:
        return False
    first = sqlparse.parse(word)[0].token_first()
    return first is None or not first.is_keyword  # SELECT, WITH, VACUUM... start SQL


def _first(names: list[str]) -> str:
    return "target" if "target" in names else next(iter(names), "target")


def load_ipython_extension(shell: Any) -> None:
    register(shell)


def sql_magic() -> Any:
    """The running kernel's JupySQL magic; outside a kernel, a shell with the extension."""
    shell = get_ipython() or InteractiveShell.instance()
    found = shell.magics_manager.registry.get("SqlMagic")
    if found is None or "target" not in ConnectionManager.connections:
        register(shell)
        found = shell.magics_manager.registry["SqlMagic"]
    return found


def run_cell(query: str, params: Mapping[str, Any] | None = None, *,
             connection: str = "target", quiet: bool = False) -> Any:
    """What ``%%sql CONNECTION`` does with ``query``, its ``:name`` binds taken from ``params``.

    The same code path as a cell (parsing, connection lookup, binding, fetch, DataFrame),
    without putting the parameters into the user's namespace. ``quiet``: no
    'Switching to connection' line (JupySQL's ``feedback = 0`` for this call).
    """
    magic = sql_magic()
    feedback = magic.feedback
    check_connection(magic, connection, params or {})
    if quiet:
        magic.feedback = 0
    try:
        return magic.execute(line=connection, cell=query, local_ns=dict(params or {}))
    finally:
        magic.feedback = feedback


@contextmanager
def connection(engine: sqlalchemy.engine.Engine, alias: str) -> Iterator[str]:
    """``engine`` as a ``%sql`` connection called ``alias`` for a while; the current one stays."""
    sql_magic()
    current = ConnectionManager.current
    conn = NamedConnection(engine, alias, sql_magic())
    try:
        yield alias
    finally:
        ConnectionManager.connections.pop(alias, None)
        conn.close()
        ConnectionManager.current = current


def config_path(prefix: Path | None = None) -> Path:
    """The IPython kernel config file of this environment (``sys.prefix/etc/ipython``)."""
    return Path(prefix or sys.prefix) / "etc" / "ipython" / "ipython_kernel_config.json"


def install(prefix: Path | None = None) -> Path:
    """Make every kernel of this environment load the extension; returns the file written."""
    path = config_path(prefix)
    config = json.loads(path.read_text()) if path.is_file() else {}
    app = config.setdefault("InteractiveShellApp", {})
    # the module's name before the package had layer folders: its import would fail
    extra = [e for e in app.get("extra_extensions", []) if e != _FORMER_NAME]
    if EXTENSION not in extra:
        extra.append(EXTENSION)
    app["extra_extensions"] = extra
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        sys.exit("usage: python -m tsj_lab.lab.ipython install")
    print(f"kernels of {sys.prefix} load {EXTENSION}: {install()}")
