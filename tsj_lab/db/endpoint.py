"""A database, resolved once where the user named it (the CLI, a notebook's first cell).

An :class:`Endpoint` holds the URL (and never shows it: ``repr``, ``str`` and
:attr:`~Endpoint.redacted` carry ``***`` for the password), what the server can do, probed
once on first use (:attr:`~Endpoint.caps`), how it is reached (:attr:`~Endpoint.pooling`),
and at most one pool. Phases take an Endpoint, or a connection opened from one, and hand
it down; nothing below the CLI parses a URL string to reach a database. The scoped
variants are Endpoints too: :meth:`~Endpoint.scoped` (a search path, for scratch schemas)
and :meth:`~Endpoint.through` (the same database behind a latency proxy or a pooler).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from ..config import redact, validate_url, with_params
from .conn import Capabilities, Pooling, connect, pool, pooling, probe


class Endpoint:
    """One database: where (URL, kept secret), what (capabilities), how (pooling)."""

    def __init__(self, url: str, *, name: str = "database") -> None:
        self._url = validate_url(url)
        self.name = name  # 'target', 'source', 'pooler', or what the caller calls it
        self._caps: Capabilities | None = None
        self._pool: ConnectionPool | None = None
        self._held: tuple[int, psycopg.Connection[Any]] | None = None

    @property
    def url(self) -> str:
        """The URL with its password, for libpq and drivers only (never for messages)."""
        return self._url

    @property
    def redacted(self) -> str:
        """The URL with the password replaced by ``***``: what messages and reports show."""
        return redact(self._url)

    def __repr__(self) -> str:
        return f"Endpoint({self.name!r}, {self.redacted!r})"

    __str__ = __repr__

    # -- connections ----------------------------------------------------------------------

    def connect(self, *, autocommit: bool = False, **kwargs: Any) -> psycopg.Connection[Any]:
        """A new connection (the caller closes it); errors are one-line ConnectErrors."""
        return connect(self, autocommit=autocommit, **kwargs)

    @contextmanager
    def connection(self, *, autocommit: bool = False) -> Iterator[psycopg.Connection[Any]]:
        """A new connection, committed (or rolled back) and closed on exit."""
        conn = self.connect(autocommit=autocommit)
        try:
            with conn:
                yield conn
        finally:
            conn.close()

    @contextmanager
    def held(self) -> Iterator[psycopg.Connection[Any]]:
        """One autocommit connection that every single-statement step of a phase shares
        while the block runs: :func:`tsj_lab.db.connection` (and ``using``) on this
        Endpoint in autocommit mode hand it out instead of opening another. Only in the
        thread that holds it: a worker thread still gets a connection of its own."""
        if self._held is not None:  # nested: the outer block's connection serves
            yield self._held[1]
            return
        conn = self.connect(autocommit=True)
        self._held = (threading.get_ident(), conn)
        try:
            yield conn
        finally:
            self._held = None
            conn.close()

    def held_connection(self) -> psycopg.Connection[Any] | None:
        """The connection :meth:`held` shares with this thread, if any (and still usable)."""
        held = self._held
        if held is None or held[0] != threading.get_ident() or held[1].closed:
            return None
        return held[1]

    def pool(self, *, min_size: int = 2, max_size: int = 20, name: str = "tsj") -> ConnectionPool:
        """This endpoint's pool, opened on first use and kept until :meth:`close`; a call
        with other sizes replaces it (the story's pool is min 2, max 20)."""
        current = self._pool
        if current is not None and not current.closed and (
                current.min_size, current.max_size) == (min_size, max_size):
            return current
        if current is not None:
            current.close()
        self._pool = pool(self, min_size=min_size, max_size=max_size, name=name)
        return self._pool

    def close(self) -> None:
        """Close the pool, if one was opened."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    # -- what it is -----------------------------------------------------------------------

    @property
    def caps(self) -> Capabilities:
        """PostgreSQL and TimescaleDB versions and license, probed once on first use."""
        return self.capabilities()

    def capabilities(self, conn: psycopg.Connection[Any] | None = None) -> Capabilities:
        """:attr:`caps`, probing on ``conn`` when it is the first ask and one is open."""
        if self._caps is None:
            if conn is not None:
                self._caps = probe(conn)
            else:
                with self.connection(autocommit=True) as own:
                    self._caps = probe(own)
        return self._caps

    def refresh(self, conn: psycopg.Connection[Any] | None = None) -> Capabilities:
        """Probe again (after ``CREATE EXTENSION`` changed what the database can do)."""
        self._caps = None
        return self.capabilities(conn)

    @property
    def pooling(self) -> Pooling:
        """Whether a pooler stands in between, and whether it keeps prepared statements."""
        return pooling(self)

    # -- variants -------------------------------------------------------------------------

    def scoped(self, *, search_path: str) -> Endpoint:
        """The same database with another search path (a scratch schema first)."""
        return Endpoint(with_params(self._url, options=f"-csearch_path={search_path}"),
                        name=f"{self.name}[{search_path.split(',')[0]}]")

    def through(self, url: str, *, name: str | None = None) -> Endpoint:
        """The same database reached at ``url`` (a latency proxy or a pooler in front);
        its facts are the database's, so they are shared, not probed again."""
        other = Endpoint(url, name=name or f"{self.name} via proxy")
        other._caps = self._caps
        return other


def as_endpoint(db: Endpoint | str, *, name: str = "database") -> Endpoint:
    """``db`` itself, or an Endpoint for a URL a test or an analyst typed."""
    return db if isinstance(db, Endpoint) else Endpoint(db, name=name)
