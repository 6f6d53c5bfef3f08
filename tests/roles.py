"""Login roles for tests of what a restricted role (a Supabase migration role) meets."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import psycopg
from psycopg import sql


def role_url(url: str, server, *, options: str = "") -> tuple[str, str, str]:
    """A new login role on ``server`` and its URL to ``url``'s database."""
    role, password = f"r_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} " + options).format(
            sql.Identifier(role), sql.Literal(password)))
    parts = urlsplit(url)
    return role, password, f"postgresql://{role}:{password}@127.0.0.1:{parts.port}{parts.path}"


def drop_role(server, role: str, *urls: str) -> None:
    # the role's objects go to the test's own user first: DROP OWNED BY of a hypertable with
    # compressed chunks trips TimescaleDB 2.24 ("unable to get valid parent Oid for
    # hypertable"); the databases themselves are dropped by make_db
    for url in urls:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
