"""Ad-hoc SQL: engines by connection name, ``:name`` binds, the Arrow read of any query."""

from __future__ import annotations

import pandas as pd
import psycopg
import pytest
from sqlalchemy import text

from tsj_lab.config import Settings
from tsj_lab.errors import ConfigError, QueryError
from tsj_lab.lab import adhoc
from tsj_lab.server.cluster import Embedded


@pytest.fixture(autouse=True)
def _kernel_settings(request: pytest.FixtureRequest) -> None:
    """What the kernel extension does at a notebook's start: the settings, loaded once
    (after the test server runs, for the tests that use one)."""
    if "server" in request.fixturenames:
        request.getfixturevalue("server")  # the environment points at it from then on
        adhoc.use_settings(Settings.load())


def test_names_resolve_only_with_the_kernels_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(adhoc, "_SETTINGS", [])
    with pytest.raises(ConfigError, match=r"not configured in this process; run '%load_ext "
                                          r"tsj_lab.lab.ipython'"):
        adhoc.url_of("target")


def test_engines_know_names_not_urls(server: Embedded, target_url: str) -> None:
    target, source = adhoc.engine("target"), adhoc.engine("source")
    for eng in (target, source):
        assert repr(eng) == "Engine(postgresql+psycopg://)"
        assert str(eng.url) == "postgresql+psycopg://"
    assert adhoc.engine("target") is target  # one engine (and pool) per name
    db_of = "SELECT current_database() AS db"
    assert pd.read_sql(text(db_of), target)["db"].tolist() == ["tsj"]
    assert pd.read_sql(text(db_of), source)["db"].tolist() == ["tsj_source"]
    with pytest.raises(ValueError, match=r"connection name 'prod' is unknown; use one of"):
        adhoc.engine("prod")


def test_binds_compile_for_psycopg() -> None:
    query = ("SELECT x::float8, ':not_a_bind' AS s, '5%' AS p FROM t "
             "WHERE symbol = :symbol AND time >= CAST(:start AS timestamptz)")
    bound, values = adhoc.to_psycopg(query, {"symbol": "ES", "start": "2026-01-18", "other": 1})
    assert bound == ("SELECT x::float8, ':not_a_bind' AS s, '5%%' AS p FROM t "
                     "WHERE symbol = %(symbol)s AND time >= CAST(%(start)s AS timestamptz)")
    assert values == {"symbol": "ES", "start": "2026-01-18"}  # only what the query uses
    with pytest.raises(ValueError, match=r"query needs a value for :start; pass it in params"):
        adhoc.to_psycopg(query, {"symbol": "ES"})
    assert adhoc.from_psycopg("WHERE s = %(symbol)s AND p LIKE 'a%%'") == "WHERE s = :symbol AND p LIKE 'a%'"


def test_read_goes_through_arrow_with_the_same_binds(server: Embedded) -> None:
    query = "SELECT g, g * 0.5 AS half, :tag AS tag FROM generate_series(1, :n) AS g ORDER BY g"
    params = {"n": 50_000, "tag": "x'; DROP TABLE tick_data; --"}
    got = adhoc.read(query, params)
    assert len(got) == 50_000 and got["g"].iloc[-1] == 50_000
    assert set(got["tag"]) == {params["tag"]}  # a value, never SQL
    same = pd.read_sql(text(query), adhoc.engine("target"), params=params)
    assert got["g"].tolist() == same["g"].tolist()
    assert adhoc.read("SELECT current_database() AS db", connection="source")["db"][0] == "tsj_source"


def test_sql_errors_are_postgresql_one_line(target_url: str) -> None:
    with psycopg.connect(target_url) as conn, pytest.raises(psycopg.Error) as err:
        conn.execute("SELEC 1")
    assert adhoc.sql_error(err.value) == 'syntax error at or near "SELEC"'
    # the Arrow path too: ADBC's message repeats the query with its values; ours does not
    with pytest.raises(QueryError) as err:
        adhoc.read("SELECT * FROM tick_datta WHERE symbol = :symbol", {"symbol": "S3cretish"})
    assert str(err.value) == "relation \"tick_datta\" does not exist (on 'target')"
