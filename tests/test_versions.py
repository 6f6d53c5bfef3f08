"""What upgrading buys (tsj bench-versions): figures side by side, one finding per figure,
and a real comparison of production's TimescaleDB with the test server's newer one."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import pytest

from tsj_lab.bench import versions
from tsj_lab.config import Settings
from tsj_lab.domain import PRODUCTION
from tsj_lab.server.cluster import Embedded


def _figures() -> tuple[list[str], list[dict]]:
    rows = [
        versions._row("1m candles p50", "ms", "lower", "2.24.0", 31.0, 10),
        versions._row("1m candles p50", "ms", "lower", "2.29.2", 10.0, 10),
        versions._row("compression ratio", "x", "higher", "2.24.0", 20.0, 3),
        versions._row("compression ratio", "x", "higher", "2.29.2", 21.0, 3),
        versions._row("ingest", "rows/s", "higher", "2.24.0", 200_000, 1),
        versions._row("ingest", "rows/s", "higher", "2.29.2", 100_000, 1),
        versions._row("direct compress", "rows/s", "higher", "2.24.0", math.nan, 0,
                      note="unsupported"),
        versions._row("direct compress", "rows/s", "higher", "2.29.2", 90_000, 1),
    ]
    return ["2.24.0", "2.29.2"], rows


def test_figures_side_by_side_with_ratios_and_findings() -> None:
    order, rows = _figures()
    table = versions._figures(rows, order)
    assert list(table.columns) == ["figure", "unit", "better", "2.24.0", "2.29.2", "ratio", "n",
                                   "note"]
    assert list(table["figure"]) == ["1m candles p50", "compression ratio", "ingest",
                                     "direct compress"]  # in the order measured
    candles = table.set_index("figure").loc["1m candles p50"]
    assert candles["ratio"] == pytest.approx(10 / 31)
    lines = versions.findings(table, order)
    assert lines[0] == "2.29.2 is 3.1x better than 2.24.0 on 1m candles (31 vs 10 ms, n = 10)"
    assert lines[1].startswith("compression ratio: the same on both within 15%")
    assert lines[2] == ("2.29.2 is 2.0x worse than 2.24.0 on ingest "
                        "(200,000 vs 100,000 rows/s, n = 1)")
    assert lines[3] == "direct compress: only 2.29.2 has it"
    assert "|" in versions._markdown(table).splitlines()[2]


def test_the_default_pair_is_production_and_the_newest_release(tmp_path: Path) -> None:
    assert versions.newest_release() == "2.29.2"  # the vendored releases (not 2.30.0-dev)
    with pytest.raises(ValueError, match="at least two different versions"):
        versions.compare(versions=["2.24.0", "2.24.0"], settings=Settings.load(home=tmp_path))
    with pytest.raises(ValueError, match="days=1"):
        versions.compare(versions=["2.24.0", "2.29.2"], days=1,
                         settings=Settings.load(home=tmp_path))


def test_a_comparison_on_two_versions_writes_its_report(server: Embedded, tmp_path: Path) -> None:
    """Production's 2.24.0 against the test server's version, on a small data set. Runs in
    the matrix leg on a newer version (make test-matrix): the default leg's server is 2.24.0
    itself, and building a second version there would double make test's set-up."""
    if server.timescaledb_version == PRODUCTION.timescaledb:
        pytest.skip("the test server runs production's version: nothing to compare it with "
                    "(the 2.29.2 leg of make test-matrix runs this)")
    pair = [PRODUCTION.timescaledb, str(server.timescaledb_version)]
    settings = Settings.load(env={}, dotenv=None, home=server.home, pg_major=server.pg_major)
    started = dt.datetime.now(dt.UTC)
    result = versions.compare(versions=pair, settings=settings, days=2, interval_ms=20_000,
                              samples=3, warmup=1, instance=f"{server.instance}-versions")
    figures = result.figures.set_index("figure")
    assert {"AC8 window 1h p95", "compression ratio", "refresh policy job candle_1m "
            "(its own window)"} <= set(figures.index)
    assert (figures.loc["compression ratio", pair] > 1).all()
    # the application's last day of 1m candles: every minute of a day, on both versions
    candles = result.details["candles"].set_index(["query", "version"])
    for v in pair:
        assert 1300 <= candles.loc[("candles_last_day", v), "rows"] <= 1441
    assert {d["timescaledb_version"] for d in result.servers.values()} == set(pair)
    paths = versions.write_report(result, started=started, reports_dir=tmp_path)
    summary = json.loads(paths["json"].read_text())
    assert summary["name"] == "versions" and len(summary["findings"]) == len(figures)
    assert "passfile" not in paths["json"].read_text()
    assert summary["environment"]["databases"][pair[0]]["production"].startswith(
        "differs from production")  # Debian's 18.6 is not production's 18.1
