"""tsj_lab.bench.verdicts: the goals judged from a run's figures, and two runs compared."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tsj_lab.bench import verdicts


def _summary(rows: list[tuple[str, float, str, bool]], **params: Any) -> dict[str, Any]:
    table = pd.DataFrame([{"check": c, "target": "t", "measured": m, "status": s, "detail": "",
                           "ratio": r} for c, m, s, r in rows], columns=verdicts.COLUMNS)
    return {"format_version": 1, "name": "04_benchmark", "status": "ok",
            "started_at": params.pop("started_at", "2026-12-03T10:00:00"),
            "parameters": params, "tables": [{"name": "verdicts", "columns": list(table.columns),
                                             "rows": table.to_dict("records")}]}


def test_a_verdict_holds_when_its_status_and_ratio_hold() -> None:
    first = _summary([("goal: a", 1.20, "ok", True), ("goal: b", 40.0, "ok", True),
                      ("AC8 window 1h", 50.0, "ok", False), ("goal: c", 2.0, "warn", True)])
    second = _summary([("goal: a", 1.30, "ok", True), ("goal: b", 30.0, "ok", True),
                       ("AC8 window 1h", 90.0, "ok", False), ("goal: c", 1.9, "ok", True)])
    got = verdicts.compare(first, second).set_index("check")
    assert got.loc["goal: a", "holds"]  # +8%
    assert not got.loc["goal: b", "holds"]  # -25%: the ratio moved
    assert got.loc["AC8 window 1h", "holds"]  # not a ratio: only its status counts
    assert not got.loc["goal: c", "holds"]  # warn, then ok
    assert got.loc["goal: b", "change"] == pytest.approx(0.75)


def test_a_check_missing_from_one_run_does_not_hold() -> None:
    got = verdicts.compare(_summary([("goal: a", 1.0, "ok", True)]),
                           _summary([("goal: a", 1.0, "ok", True), ("goal: new", 2.0, "ok", True)]))
    assert got.set_index("check")["holds"].to_dict() == {"goal: a": True, "goal: new": False}


def test_a_report_without_verdicts_is_named() -> None:
    with pytest.raises(ValueError, match="has no verdicts table; compare two reports"):
        verdicts.compare({"name": "05_candles", "tables": []}, _summary([]))


def test_tsj_reports_compare_picks_the_last_two_runs_measured_alike(tmp_path: Path) -> None:
    day = tmp_path / "2026-12-03"
    day.mkdir()
    runs = {"100000": _summary([("goal: a", 1.0, "ok", True)], started_at="2026-12-03T10:00:00",
                               samples=30, memory_file="/tmp/a"),
            "110000": _summary([("goal: a", 9.0, "ok", True)], started_at="2026-12-03T11:00:00",
                               samples=5),  # a quick run between them: not comparable
            "120000": _summary([("goal: a", 1.1, "ok", True)], started_at="2026-12-03T12:00:00",
                               samples=30, memory_file="/tmp/b")}
    for stem, s in runs.items():
        (day / f"{stem}-04_benchmark.json").write_text(json.dumps(s))
    cmd = [sys.executable, "-m", "tsj_lab.cli", "reports", "compare", "--reports-dir", str(tmp_path)]
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "2026-12-03T10:00:00 against 2026-12-03T12:00:00" in ok.stdout
    assert "all 1 verdicts hold" in ok.stdout
    moved = subprocess.run(cmd + ["--tolerance", "0.05"], capture_output=True, text=True, timeout=120)
    assert moved.returncode == 1 and "1 of 1 verdict(s) do not hold: goal: a" in moved.stdout
    bad = subprocess.run(cmd[:-2] + [str(day / "nope.json"), str(day / "x.json")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "cannot read report summary" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def _metric(name: str, value: float, n: int = 1, **params: Any) -> dict[str, Any]:
    return {"kind": "metric", "name": name, "value": value, "n": n, "unit": "", "params": params}


def test_speed_goals_are_judged_at_the_longest_round_trip_and_say_the_miss() -> None:
    records = [
        _metric("migration extra round trips", 3.0, rtt_ms=50, rows=454_600, batches=5),
        _metric("migration extra round trips", 44.0, rtt_ms=300, rows=454_600, batches=5),
        _metric("migration extra round trips", 8.0, rtt_ms=300, rows=2_592_000, batches=30),
        _metric("migration fraction of direct", 0.95, rtt_ms=150, rows=2_592_000),
        _metric("migration fraction of direct", 0.84, rtt_ms=300, rows=2_592_000),
        _metric("migration fraction of direct", 0.30, rtt_ms=300, rows=454_600),
        _metric("load speedup_vs_psql", 1.18, n=5, path="tsj_copy", base="psql_copy"),
        _metric("load speedup_vs_psql", 3.3, n=5, path="history_direct",
                base="psql_copy_then_compress"),
        {"kind": "check", "name": "x", "status": "ok"},
    ]
    got = verdicts.speed(records).set_index("check")
    assert list(got.index) == [
        "goal: migration at 300 ms, extra round trips (454,600 rows)",
        "goal: migration at 300 ms, extra round trips (2,592,000 rows)",
        "goal: migration at 300 ms vs direct rows/s (2,592,000 rows)",
        "goal: bulk load vs psql \\copy",
        "goal: history load (old days, compressed) vs psql \\copy + compression"]
    trips = got.loc["goal: migration at 300 ms, extra round trips (454,600 rows)"]
    assert trips["status"] == "warn" and "missed by 340%" in trips["detail"]
    assert got.loc["goal: migration at 300 ms, extra round trips (2,592,000 rows)", "status"] == "ok"
    load = got.loc["goal: bulk load vs psql \\copy"]
    assert load["status"] == "warn" and "missed by 27%" in load["detail"] and load["ratio"]
    assert got["status"].tolist().count("ok") == 3
    assert verdicts.speed([]).empty
