"""tsj's own limits on its statements, and one line when a database limit stops one.

Supabase gives its roles a ``statement_timeout`` meant for an application's requests
(``anon`` 3 s, ``authenticated`` 8 s), and a careful DBA gives a migration role one too.
tsj's statements are small by design (counts and digests per symbol-day, copies per
batch), and the transactions that run them set tsj's own limits with ``SET LOCAL``
(:func:`bounded`): nothing outlives the transaction, so it is safe behind a
transaction-mode pooler, and no role setting is changed. PostgreSQL lets every role set
both for itself (they are user settings), which is what Supabase's own guide does for
long statements.

Where a limit still stops a statement (tsj's own, or a role's on a statement tsj does not
bound), :func:`limit_error` turns the server's error into one line: which setting, for
which role, what the statement was doing, and the fix. :func:`database_error` does the
same for any other database error, for the CLI's last resort: no traceback, ever.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg

from .. import queries
from ..errors import LimitError, TsjError
from .conn import pooling

if TYPE_CHECKING:
    from .endpoint import Endpoint

#: tsj's own limit on each of its statements: a batch's COPY or a symbol-day's digest takes
#: seconds; this bounds one that hangs (a lock, a missing index) without cutting real work
STATEMENT_TIMEOUT = "15min"
#: tsj's own limit on idling inside its transactions: they are never idle by design (a
#: role's shorter limit, meant for abandoned sessions, would end a batch while the source
#: streams to it on another connection)
IDLE_TIMEOUT = "5min"

#: SQLSTATE -> the setting that raises it
_SETTINGS = {
    "25P03": "idle_in_transaction_session_timeout",
    "25P04": "transaction_timeout",
    "55P03": "lock_timeout",
}


@contextmanager
def bounded(conn: psycopg.Connection[Any], purpose: str, *, side: str,
            fix: str = "") -> Iterator[psycopg.Connection[Any]]:
    """One transaction (a savepoint inside the caller's) under tsj's own limits.

    ``purpose`` says what the statements do ("the digest of tick_data per symbol-day"),
    ``side`` where they run ("source"), ``fix`` what helps when tsj's own limit is too
    short (a smaller batch, an index). A limit that stops a statement raises
    :class:`~tsj_lab.errors.LimitError` in one line.
    """
    lifted = False
    try:
        with conn.transaction():
            lift(conn)
            lifted = True
            yield conn
    except psycopg.Error as exc:
        err = limit_error(exc, purpose=purpose, side=side, lifted=lifted, fix=fix,
                          role=conn.info.user)
        if err is None:
            raise
        raise err from None


@contextmanager
def naming(purpose: str, *, side: str, fix: str = "", lifted: bool = False,
           role: str | None = None) -> Iterator[None]:
    """A limit that stops a statement tsj cannot bound (one outside a transaction block,
    such as a continuous aggregate's refresh), or one in a transaction opened by hand with
    tsj's limits ``lifted``, as one :class:`LimitError` naming it."""
    try:
        yield
    except psycopg.Error as exc:
        err = limit_error(exc, purpose=purpose, side=side, lifted=lifted, fix=fix, role=role)
        if err is None:
            raise
        raise err from None


def lift(conn: psycopg.Connection[Any]) -> None:
    """tsj's own limits for the rest of the connection's current transaction (SET LOCAL)."""
    conn.execute(queries.text("limits.lift"), {"statement": STATEMENT_TIMEOUT, "idle": IDLE_TIMEOUT})


def lift_session(conn: psycopg.Connection[Any], url: Endpoint | str) -> bool:
    """tsj's own limits for the rest of a session of its own, for statements no transaction
    block may hold (``CALL refresh_continuous_aggregate``): on a direct connection only,
    since through a transaction-mode pooler a session setting would stay on a server
    connection other clients get next. Whether it was set."""
    if pooling(url).pooled:
        return False
    conn.execute(queries.text("limits.lift_session"),
                 {"statement": STATEMENT_TIMEOUT, "idle": IDLE_TIMEOUT})
    return True


def setting_of(exc: BaseException) -> str | None:
    """The limit setting that ended the statement behind ``exc`` (None: not a limit)."""
    state = getattr(exc, "sqlstate", None)
    if state == "57014":  # query_canceled: a statement_timeout, or someone's cancel
        msg = str(exc).lower()
        return "statement_timeout" if "statement timeout" in msg else None
    return _SETTINGS.get(state or "")


def limit_error(exc: BaseException, *, purpose: str, side: str, lifted: bool = False,
                fix: str = "", role: str | None = None) -> LimitError | None:
    """One line for a statement a limit stopped: the setting, whose it is, what the
    statement did and the fix; None when ``exc`` is not a limit."""
    setting = setting_of(exc)
    if setting is None:
        return None
    role = role or role_of(exc)
    own = lifted and setting in ("statement_timeout", "idle_in_transaction_session_timeout")
    if own:
        value = STATEMENT_TIMEOUT if setting == "statement_timeout" else IDLE_TIMEOUT
        return LimitError(
            f"{setting} stopped {purpose} on the {side} after tsj's own limit of {value}; "
            + (fix or "find what holds it (a lock, a missing index) and re-run"))
    whose, name = (f"of role '{role}'", f'"{role}"') if role else ("of the role", "...")
    return LimitError(
        f"{setting} {whose} stopped {purpose} on the {side}; "
        f"raise it for this role (ALTER ROLE {name} SET {setting} = '{STATEMENT_TIMEOUT}') "
        "or connect as a role without it" + (f", or {fix}" if fix else ""))


def role_of(exc: BaseException) -> str | None:
    """The user a failed connection attempt logged in as (psycopg keeps the connection on
    those only; None otherwise)."""
    pgconn = getattr(exc, "pgconn", None)
    try:
        return pgconn.user.decode() if pgconn is not None else None
    except Exception:  # a connection already closed answers nothing
        return None


def database_error(exc: psycopg.Error) -> TsjError:
    """Any database error as one line (the CLI's last resort; phases raise their own)."""
    limit = limit_error(exc, purpose="a statement", side="database")
    if limit is not None:
        return limit
    diag = exc.diag
    msg = " ".join((diag.message_primary or str(exc) or type(exc).__name__).split())
    state = f" (SQLSTATE {exc.sqlstate})" if exc.sqlstate else ""
    if isinstance(exc, psycopg.OperationalError):
        return TsjError(f"the database connection failed: {msg}{state}; check that the server "
                        "is up and re-run (tsj's phases resume where they stopped)")
    return TsjError(f"the database refused a statement: {msg}{state}; "
                    "re-run with -v for the step, and check the role's rights and the schema")
