"""Counts and digests one symbol-day at a time: the same rows as one statement over the window."""

from __future__ import annotations

import datetime as dt

import psycopg

from tsj_lab import queries
from tsj_lab.data import digest, generate
from tsj_lab.domain import TickSpec
from tsj_lab.provision import schema

UTC = dt.UTC


def _window_digest(conn: psycopg.Connection, **params: object) -> list[tuple]:
    return conn.execute(queries.compose("digest.day", table="tick_data"),
                        {"since": "-infinity", "until": "infinity", "symbols": None} | params
                        ).fetchall()


def test_the_walk_gives_the_window_digest_odd_rows_included(make_db) -> None:
    src = make_db(timescale=False)
    schema.create_source(src)
    generate.load(src, TickSpec(("ES", "NQ"), "2024-01-02", days=3, interval_ms=60_000),
                  workers=1)
    with psycopg.connect(src, autocommit=True) as conn:
        conn.execute("ALTER TABLE tick_data ALTER COLUMN symbol DROP NOT NULL")
        conn.execute(
            "INSERT INTO tick_data (time, symbol, volume) VALUES ('-infinity', 'ES', 1), "
            "('infinity', 'NQ', 2), ('20000-01-01 00:00+00', 'ES', 3), "
            "('1990-05-01 12:00+00', 'NQ', 4), ('2024-01-03 10:00+00', NULL, 5)")
        walked = digest.walk(conn)
        assert sorted(walked, key=str) == sorted(_window_digest(conn), key=str)
        assert len(walked) == 2 * 3 + 1 + 2 + 1  # symbol-days, 1990, odd ES and NQ, NULL
        # a window and symbols: the same rows as the window's one statement
        lo, hi = dt.datetime(2024, 1, 3, 6, tzinfo=UTC), dt.datetime(2024, 1, 4, tzinfo=UTC)
        part = digest.walk(conn, since=lo, until=hi, only=["NQ"])
        assert sorted(part, key=str) == sorted(
            _window_digest(conn, since=lo, until=hi, symbols=["NQ"]), key=str)
        assert [r[2] for r in part] == [18 * 60]
        counts = {(r[0], r[1]): r[2] for r in digest.walk(conn, counts=True)}
        assert counts[("ES", dt.date(2024, 1, 2))] == 1440
        assert counts[("ES", None)] == 2 and counts[("NQ", None)] == 1
        assert counts[(None, None)] == 1 and counts[("NQ", dt.date(1990, 5, 1))] == 1
        assert digest.symbols(conn) == ["ES", "NQ"]
        assert digest.symbols_in(conn, since=dt.datetime(2025, 1, 1, tzinfo=UTC)) == []
