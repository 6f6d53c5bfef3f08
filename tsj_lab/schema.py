"""Applies the sql/ files by name, edition-aware; validates AC1-AC6.

(First cut: the plain source table and the apache-edition target. The provisioning
work extends this with the timescale edition, validation, dry runs and refresh.)
"""

from __future__ import annotations

import logging

from . import queries
from .db import connection, probe
from .errors import SchemaError

log = logging.getLogger("tsj_lab")

CANDLE_VIEWS = ("candle_1m", "candle_5m", "candle_15m", "candle_1h")


def create_source(url: str) -> None:
    """The Supabase-shaped plain ``tick_data`` (no extension needed)."""
    with connection(url) as conn:
        conn.execute(queries.text("create_source_table"))


def provision(url: str) -> None:
    """The target's hypertable, indexes and candle views (idempotent)."""
    with connection(url) as conn:
        caps = probe(conn)
        if caps.timescaledb_version is None:
            raise SchemaError(
                "target has no timescaledb extension; run 'CREATE EXTENSION timescaledb' "
                "as a superuser (and add it to shared_preload_libraries)"
            )
        for name in ("create_tick_table", "create_hypertable", "create_tick_indexes",
                     "create_candle_1m_matview"):
            conn.execute(queries.text(name))
