"""The live run: the story's policies on TimescaleDB's own scheduler while ticks arrive.

The scheduler runs only on the test instance made for it (``live_server``: background
workers on); the shared test server, like the bench's, runs none, and a test proves its
fixed-date ticks outlive a retention job that is due.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tsj_lab import checks, queries
from tsj_lab.bench import live
from tsj_lab.checks import job_fix
from tsj_lab.cli import main
from tsj_lab.db import connection
from tsj_lab.errors import SchemaError
from tsj_lab.provision import schema
from tsj_lab.server.cluster import TARGET_DB, Embedded

#: a small history: every horizon crossed, little to load
_HISTORY = live.History(days=93, old_spacing=dt.timedelta(hours=1),
                        recent_spacing=dt.timedelta(minutes=10), story_hours=1.1)


def test_history_and_phases_refuse_what_cannot_show_the_policies() -> None:
    with pytest.raises(ValueError, match="retention job nothing to drop"):
        live.History(days=80)
    with pytest.raises(ValueError, match="old_spacing"):
        live.History(old_spacing=dt.timedelta(0))
    with pytest.raises(ValueError, match="at least 1"):
        live.Phase("stress", 0, 10)
    with pytest.raises(ValueError, match="seconds=0"):
        live.Phase("story", 1, 0)
    spans = live.History().segments(1_000_000_000.0)
    assert [round((1e9 - s) / 86400, 3) for s, _, _ in spans] == [95.0, 30.0, round(2 / 24, 3)]
    assert spans[-1][1] == 1e9 and spans[-1][2] == dt.timedelta(milliseconds=250)


def test_derived_lag_is_within_width_plus_offset_plus_schedule() -> None:
    """candle_1m's policy (end 1 minute, every minute, runs at :07 past each minute): a tick
    waits for its bucket to close, the end offset, then the run: the schedule equals the
    width, so the wait is the rest of the bucket + 60 s + 7 s + the run's 0.5 s."""
    lags = live.derived_lags(width=60, end_offset=60, every=60, phase=7.0, seconds=0.5)
    assert lags.min() > 67.5 and lags.max() == pytest.approx(127.5)
    assert float(lags.mean()) == pytest.approx(98.0, abs=0.6)
    assert lags.max() <= 60 + 60 + 60  # width + end_offset + schedule_interval


@pytest.mark.slow
def test_a_live_run_is_driven_by_the_scheduler(live_server: Embedded) -> None:
    url = live_server.url(TARGET_DB)
    res = live.run(url, phases=[live.Phase("story", 1, 4.0), live.Phase("stress", 20, 4.0)],
                   history=_HISTORY, schema_name=f"tsj_live_{uuid.uuid4().hex[:6]}")
    summary = res.summary()
    # every story job ran on its own: job_stats records the scheduler's runs only
    # (CALL run_job writes none), and each started after the run began
    assert summary["every_job_ran"], summary["jobs"]
    assert {r.policy for r in res.runs} == set(res.jobs)
    assert all(r.start >= res.started - 1 for r in res.runs)
    assert all(row["next_start"] for row in summary["jobs"])
    # the chunks the retention and compression runs changed are the ones the policies name
    chunks = summary["chunks"]
    assert chunks["ok"], chunks
    assert chunks["dropped"] >= 2 and chunks["compressed"] >= 60
    # every tick was in candle_1m's real-time answer at once
    assert summary["realtime_checks"] > 0
    assert summary["realtime_ok"] == summary["realtime_checks"]
    # latency without any job, per phase and operation, with sample counts
    none = {(r["phase"], r["operation"]): r["n"] for r in summary["latency"]
            if r["during"] == "none"}
    assert none[("story", "insert")] > 0 and none[("stress", "window")] > 0
    stress = [s for s in res.samples if s.phase == "stress" and s.kind == "insert"]
    assert stress and all(s.rows == 20 for s in stress)
    fresh = {row["view"]: row for row in summary["freshness"]}
    assert fresh["candle_1m"]["derived_p95_s"] <= fresh["candle_1m"]["bound_s"] + 5
    # a clean run fails no job (the one exception: a known defect of the scheduler on
    # Debian's PostgreSQL 17.12, said so in its line)
    assert all(live.known_defect(line) for line in summary["failures"]), summary["failures"]
    with connection(url, autocommit=True) as conn:  # the scratch schema is gone
        assert not conn.execute("SELECT 1 FROM pg_namespace WHERE nspname LIKE 'tsj_live_%'"
                                ).fetchall()


def _wait_for_failure(conn: psycopg.Connection[Any], job: int, *, seconds: float = 60.0
                      ) -> str:
    """The error of job ``job``'s first failed scheduler run."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        row = conn.execute("SELECT err_message FROM timescaledb_information.job_errors "
                           "WHERE job_id = %s AND err_message LIKE 'permission denied%%'",
                           [job]).fetchone()
        if row:
            return str(row[0])
        time.sleep(0.5)
    raise AssertionError(f"job {job} did not fail within {seconds} s")


def test_a_job_that_fails_on_the_scheduler_is_named_with_its_fix(
        live_server: Embedded, capsys: pytest.CaptureFixture[str]) -> None:
    """candle_1m's refresh policy belongs to a role whose SELECT on tick_data is revoked:
    the scheduler's run fails, and 'tsj check' and the live report's line name the job,
    the error and the fix in one line (the grant is back by then: a last run that failed
    is a finding until the next run succeeds)."""
    url, name = live_server.url(TARGET_DB), f"tsj_fail_{uuid.uuid4().hex[:6]}"
    role, ident = f"tsj_reader_{uuid.uuid4().hex[:6]}", sql.Identifier
    with connection(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(ident(role)))
    try:
        with schema.scratch_schema(url, name) as scoped:
            schema.provision(scoped)
            with connection(scoped, autocommit=True) as conn:
                for stmt in ("GRANT USAGE ON SCHEMA {} TO {}", "GRANT SELECT ON tick_data TO {1}",
                             "ALTER MATERIALIZED VIEW candle_1m OWNER TO {1}", "SET ROLE {1}"):
                    conn.execute(sql.SQL(stmt).format(ident(name), ident(role)))
                # the policy added by the view's owner: its job runs as that role
                conn.execute(queries.text("schema_timescale.remove_candle_policy"),
                             {"view": "candle_1m"})
                pol = schema.CANDLE_POLICIES["candle_1m"]
                conn.execute(queries.text("schema_timescale.add_candle_policy"), {
                    "view": "candle_1m", "start_offset": pol.start_offset,
                    "end_offset": pol.end_offset, "schedule_interval": pol.schedule_interval})
                conn.execute("RESET ROLE")
                jobs = {p: j for p, j, _ in live.policy_jobs(conn)}
                job = jobs["candle_1m refresh"]
                conn.execute(sql.SQL("REVOKE SELECT ON tick_data FROM {}").format(ident(role)))
                conn.execute("INSERT INTO tick_data (time, symbol, last_price, volume) "
                             "VALUES (now() - interval '10 minutes', 'ES', 100, 1)")
                conn.execute(queries.text("live.schedule_job"), {"job": job, "at": time.time()})
                error = _wait_for_failure(conn, job)
                # the view reads tick_data as its owner too: granted back so the checks can
                # read it; the job's last run stays failed until its next one
                conn.execute(sql.SQL("GRANT SELECT ON tick_data TO {}").format(ident(role)))
            assert error == "permission denied for table tick_data"
            (bad,) = [r for r in checks.run(scoped, progress=False)
                      if r.check == "jobs" and r.status == "fail"
                      and f"job {job} " in r.detail]
            assert "\n" not in bad.detail
            assert f"last run failed: permission denied for table tick_data; the job runs " \
                   f"as role '{role}', which lacks a privilege" in bad.detail
            assert f"GRANT it to '{role}'" in bad.detail and f"CALL run_job({job})" in bad.detail
            assert main(["check", "--target", scoped.url, "--no-source"]) == 1
            assert "permission denied for table tick_data" in capsys.readouterr().out
            line = live.failure_line(job, "candle_1m refresh", error, owner=role)
            assert line.startswith(f"job {job} (candle_1m refresh) failed: permission denied "
                                   "for table tick_data; the job runs as role") and "\n" not in line
    finally:
        with connection(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(ident(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(ident(role)))


def test_job_fix_names_the_cause() -> None:
    assert "ALTER ROLE that owner LOGIN" in job_fix(7, 'role "x" is not permitted to log in')
    assert "SELECT delete_job(7)" in job_fix(7, 'relation "tick_data" does not exist')
    assert "role 'r'" in job_fix(7, "permission denied for table t", owner="r")
    assert job_fix(7, "disk full") == "fix the cause, then CALL run_job(7)"


def test_the_bench_server_runs_no_scheduler_and_keeps_its_fixed_dates(
        server: Embedded, live_server: Embedded, make_db: Callable[..., str]) -> None:
    """The shared test server is made as the bench's is: with a scheduler running on
    another instance, a retention job due now on ticks from 2024 never runs here."""
    url = make_db()
    assert live.scheduler_state(url) == (0, False)
    assert live.scheduler_state(live_server.url(TARGET_DB))[1]
    with pytest.raises(SchemaError, match=r"job scheduler is not running for .*max_background"
                                          r"_workers = 0.*TSJ_LIVE_URL"):
        live.require_scheduler(url)
    schema.provision(url)
    with connection(url, autocommit=True) as conn:
        conn.execute("INSERT INTO tick_data (time, symbol, last_price, volume) "
                     "SELECT t, 'ES', 100, 1 FROM generate_series("
                     "'2024-01-02'::timestamptz, '2024-01-04', interval '1 hour') t")
        jobs = [j for _, j, _ in live.policy_jobs(conn)]
        for job in jobs:
            conn.execute(queries.text("live.schedule_job"), {"job": job, "at": time.time()})
        time.sleep(3.0)
        assert conn.execute("SELECT count(*) FROM tick_data").fetchone() == (49,)
        runs = conn.execute("SELECT coalesce(sum(total_runs), 0) FROM "
                            "timescaledb_information.job_stats WHERE job_id = ANY(%s)",
                            [jobs]).fetchone()
        assert runs == (0,)


def test_bench_parameters_are_the_notebooks() -> None:
    from tsj_lab.cli.live import BENCH_PARAMETERS
    from tsj_lab.lab import reports

    declared = reports.notebook_parameters(reports.notebook_path("07_live"))
    assert set(BENCH_PARAMETERS) <= set(declared)
    assert {"live", "target"} <= set(declared)


def test_tsj_live_and_bench_hand_the_live_database_to_the_report(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The URL reaches the kernel in its settings, never as a parameter; a report with a
    failed check exits 1; tsj bench runs the live report after its own with the same
    settings (no server is started: reports.run and bench.prepare stand in)."""
    import json
    from types import SimpleNamespace

    from tsj_lab import bench
    from tsj_lab.lab import reports

    seen: dict[str, Any] = {}
    failed = {"checks": [{"name": "live_chunks", "status": "fail", "detail": "dropped 0"}]}

    def run(name: str, **kw: Any) -> SimpleNamespace:
        seen[name] = kw
        return SimpleNamespace(summary=failed if name == "07_live" else {}, status="ok",
                               html="x.html", json="x.json", notebook=Path("x.ipynb"))

    monkeypatch.setattr(reports, "run", run)
    monkeypatch.setattr(bench, "prepare", lambda *a, **kw: ([], SimpleNamespace(
        ticks_per_symbol=1, symbols=["ES"])))
    live_url, target = ("postgresql://u:s3cret@live.example:5432/tsdb",
                        "postgresql://u@t.example/t")
    assert main(["live", "--quick", "--live", live_url, "--target", target]) == 1
    kw = seen.pop("07_live")
    assert kw["settings"].live_url == live_url and kw["parameters"]["live"] == "live"
    assert "s3cret" not in json.dumps(kw["parameters"])
    assert main(["bench", "--quick", "--live", live_url, "--target", target,
                 "--source", target]) == 1
    assert set(seen) == {"04_benchmark", "07_live"}
    assert seen["07_live"]["settings"] is seen["04_benchmark"]["settings"]
