"""Applies the sql/ files by name, edition-aware; validates AC1-AC6.

(Second cut: the four candle views and their refresh on the apache edition. The
provisioning work extends this with the timescale edition, validation and dry runs.)
"""

from __future__ import annotations

import logging
from datetime import datetime

from . import queries
from .db import connection, probe
from .errors import SchemaError

log = logging.getLogger("tsj_lab")

#: in dependency order: the 5m/15m/1h views are built from candle_1m
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
        for name in ("create_tick_table", "create_hypertable", "create_tick_indexes"):
            conn.execute(queries.text(name))
        for view in CANDLE_VIEWS:
            conn.execute(queries.text(f"create_{view}_matview"))
            conn.execute(queries.compose("create_candle_unique_index", view=view,
                                         index=f"{view}_symbol_bucket_idx"))


def refresh_candles(url: str, *, start: datetime | None = None,
                    end: datetime | None = None) -> list[str]:
    """Recompute the candle views in dependency order; returns the views refreshed."""
    with connection(url, autocommit=True) as conn:
        for view in CANDLE_VIEWS:
            row = conn.execute(queries.text("matview_populated"), {"view": view}).fetchone()
            if row is None:
                raise SchemaError(f"candle view '{view}' not found; run 'tsj provision'")
            # CONCURRENTLY keeps readers unblocked but refuses a never-populated view.
            name = "refresh_matview_concurrently" if row[0] else "refresh_matview"
            conn.execute(queries.compose(name, view=view))
    return list(CANDLE_VIEWS)
