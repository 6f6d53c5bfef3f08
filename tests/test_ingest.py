"""The ingest benchmark: each method timed in turns on the same rows, the scratch table gone."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import psycopg
import pytest

from tsj_lab.bench import ingest
from tsj_lab.lab import plots, recording
from tsj_lab.config import Settings
from tsj_lab.server.cluster import default_home, from_settings
from tsj_lab.domain import TickSpec
from tsj_lab.errors import ConfigError


@pytest.mark.slow
def test_ingest_benchmark_times_each_method_in_turns(make_db) -> None:
    url = make_db(timescale=True)
    res = ingest.ingest_benchmark(url, TickSpec(["ES"], "2024-01-02", interval_ms=1000), workers=2,
                                  repeats=2, settings=Settings.load())
    assert res.rows == 86_400 and res.repeats == 2
    assert set(res.seconds) == set(res.loaded) == set(ingest.INGEST_METHODS)  # old days: all
    for method in ingest.INGEST_METHODS:  # every load left exactly the same rows
        assert res.loaded[method] == (res.rows, res.rows)
        assert len(res.seconds[method]) == 2 and min(res.seconds[method]) > 0
    fig = res.as_dict()
    assert {"psql_rows_per_s", "pre_encoded_rows_per_s", "copy_rows_per_s", "copy_1_rows_per_s",
            "speedup_vs_psql", "streamed_speedup_vs_psql"} <= set(fig)
    assert fig["repeats"] == 2 and fig["workers"] == 2
    assert fig["speedup_vs_psql"] == round(res.ratio("pre_encoded"), 2)
    assert len(plots.ingest_rates(fig).data[0].y) == 4
    # the history path left compressed chunks, not unordered; psql's after the job too
    assert res.statuses["history_direct"] == res.statuses["psql_then_compress"] == ((1,), (1,))
    assert set(res.statuses["psql"]) == {(0,)}
    loads = ingest.load_table(res).set_index("path")
    assert list(loads.index) == list(ingest.LOAD_PATHS)
    assert (loads["bytes_written"] > 0).all() and (loads["bytes_stored"] > 0).all()
    # compressed on COPY: a fraction of the WAL and of the bytes psql's plain load writes
    assert loads.at["history_direct", "bytes_written"] < loads.at["psql_copy", "bytes_written"] / 4
    ratio = res.ratio("history_direct", "psql_then_compress")
    assert loads.at["history_direct", "speedup"] == round(ratio, 2)
    assert loads.at["tsj_copy", "goal"] == 1.5 and loads.at["history_direct", "goal"] == 3.0
    before = len(recording.recorded())
    ingest.record_loads(res)  # what the notebook records for the report
    metrics = [r for r in recording.recorded()[before:] if r["kind"] == "metric"]
    assert sorted({(r["name"], r["params"]["path"]) for r in metrics}) == sorted(
        [(f"load {m}", p) for m in ("rows_per_s", "bytes_written", "bytes_stored")
         for p in ingest.LOAD_PATHS]
        + [("load speedup_vs_psql", "tsj_copy"), ("load speedup_vs_psql", "history_direct")])
    assert all(r["n"] == 2 for r in metrics)
    with psycopg.connect(url) as conn:  # the scratch table is gone
        assert conn.execute("SELECT to_regclass('tsj_ingest_bench')").fetchone()[0] is None


def test_ingest_benchmark_needs_a_turn() -> None:
    with pytest.raises(ValueError, match="repeats=0"):
        ingest.ingest_benchmark("postgresql://unused", repeats=0)


def test_psql_is_the_embedded_servers_under_the_settings_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """TSJ_HOME (Settings.home) decides which psql is timed, not the PATH's nor the default home."""
    settings = Settings(home=tmp_path / "home")
    server_home = default_home(settings.home)  # as root: under /var/tmp, where nobody reaches
    if server_home != settings.home:
        request.addfinalizer(lambda: shutil.rmtree(server_home, ignore_errors=True))
    bundled = from_settings(settings).bin / "psql"
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match=f"psql not found in {bundled.parent}"):
        ingest._psql_binary(settings)
    bundled.parent.mkdir(parents=True)
    bundled.write_text("#!/bin/sh\n")
    assert ingest._psql_binary(settings) == str(bundled)


def test_each_turn_starts_at_the_next_method(monkeypatch: pytest.MonkeyPatch) -> None:
    """No load always follows the same one (the compression job) on a busy machine."""
    ran: list[str] = []
    monkeypatch.setattr(ingest, "_timed", lambda load, url: load())
    loads = {m: (lambda m=m: ran.append(m) or ingest._Sample(1.0, 1, 1, 1, ()))
             for m in ("psql", "pre_encoded", "history_direct")}
    runs = ingest._turns("postgresql://unused", loads, 3)
    assert ran == ["psql", "pre_encoded", "history_direct", "pre_encoded", "history_direct",
                   "psql", "history_direct", "psql", "pre_encoded"]
    assert {m: len(r) for m, r in runs.items()} == {m: 3 for m in loads}


def test_the_history_loads_run_where_the_server_compresses_old_days(make_db) -> None:
    ts, plain = make_db(timescale=True), make_db(timescale=False)
    recent = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=20)
    assert ingest._history_possible(ts, TickSpec(["ES"], "2024-01-02"))
    assert not ingest._history_possible(ts, TickSpec(["ES"], recent))  # inside 30 days
    assert not ingest._history_possible(plain, TickSpec(["ES"], "2024-01-02"))
