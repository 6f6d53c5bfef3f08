"""The `tsj` command as a user runs it: one-line errors, exit codes, no tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from roles import drop_role, role_url

from tsj_lab import bench
from tsj_lab.cli import main
from tsj_lab.config import with_database
from tsj_lab.data import generate
from tsj_lab.db import limits
from tsj_lab.domain import TickSpec
from tsj_lab.lab import reports
from tsj_lab.provision import schema
from tsj_lab.server.cluster import Embedded

TSJ = [sys.executable, "-m", "tsj_lab.cli"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TSJ, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_help_lists_each_phase() -> None:
    res = run("--help")
    assert res.returncode == 0
    for word in ("db", "probe"):
        assert word in res.stdout


def test_probe_prints_capabilities(target_url: str) -> None:
    res = run("probe", "--json", "--target", target_url)
    assert res.returncode == 0, res.stderr
    assert '"license": "timescale"' in res.stdout
    # the story's production named, and how this server differs (Debian's 18.6 is not 18.1)
    assert '"production": "differs from production (Tiger Cloud trading-journal-live, ' \
        'PostgreSQL 18.1, TimescaleDB 2.24.0): PostgreSQL ' in res.stdout


def test_wrong_password_one_line_no_traceback(server: Embedded, target_url: str) -> None:
    bad = target_url.replace("tsj@", "tsj:NotTheP4ss@", 1).split("?", 1)[0]
    res = run("probe", "--target", bad)
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert "NotTheP4ss" not in res.stderr + res.stdout
    assert res.stderr.startswith("tsj: error: cannot connect")


def test_bad_url_is_rejected_before_connecting() -> None:
    res = run("probe", "--target", "mysql://u:pw@h/db")
    assert res.returncode == 1 and "not a PostgreSQL URL" in res.stderr and "pw@" not in res.stderr


def test_db_status_of_the_test_server(server: Embedded) -> None:
    env = {"TSJ_HOME": str(server.home)}
    # the test server is instance 'test'; `tsj db` manages 'main': status reports either way
    res = run("db", "status", "--json", env=env)
    assert res.returncode in (0, 3)
    assert '"running"' in res.stdout


def test_db_url_carries_no_password(server: Embedded) -> None:
    res = run("db", "url", env={"TSJ_HOME": str(server.home)})
    if res.returncode == 0:
        assert "passfile=" in res.stdout and ":***@" not in res.stdout
    else:
        assert "never started" in res.stderr


def test_db_url_source_names_the_plain_database(server: Embedded) -> None:
    res = run("db", "url", "--source", env={"TSJ_HOME": str(server.home)})
    if res.returncode == 0:
        assert "/tsj_source?" in res.stdout
    else:
        assert "never started" in res.stderr and "Traceback" not in res.stderr


def test_bench_hands_its_urls_to_the_report_not_to_the_environment(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    target, source = "postgresql://u:t0psecret@db.example:5432/t", "host=src.example user=u dbname=s"
    seen: dict[str, Any] = {}

    def prepare(target_url: str, source_url: str, spec: Any, **kw: Any) -> tuple[list, SimpleNamespace]:
        seen["prepare"] = (target_url, source_url)
        return [], SimpleNamespace(ticks_per_symbol=1, symbols=["ES"])

    def run(name: str, **kw: Any) -> SimpleNamespace:
        seen["run"] = kw
        return SimpleNamespace(summary={}, status="ok", html="x.html", json="x.json",
                               notebook=Path("x.ipynb"))

    monkeypatch.setattr(bench, "prepare", prepare)
    monkeypatch.setattr(reports, "run", run)
    before = dict(os.environ)
    assert main(["bench", "--quick", "--no-live", "--target", target, "--source", source]
                ) == 0, capsys.readouterr()
    assert dict(os.environ) == before
    settings = seen["run"]["settings"]
    # the phases get the command's Endpoints (resolved once), the kernel the same URLs
    urls = tuple(e.url for e in seen["prepare"])
    assert urls == (target, "postgresql://u@src.example/s")
    assert (settings.target_url, settings.source_url) == urls
    assert "t0psecret" not in repr(seen["prepare"])
    assert seen["run"]["parameters"]["target"] == "target"  # a name, never the URL
    assert "t0psecret" not in capsys.readouterr().out


def test_the_parser_imports_no_phase_module() -> None:
    """Every `tsj` run builds the parser: it must not import pandas & co (cli/__init__.py)."""
    code = ("import sys; from tsj_lab.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('pandas', 'numpy', 'pyarrow', 'plotly', 'tsj_lab.migrate', "
            "'tsj_lab.data.generate', 'tsj_lab.provision.schema') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_migrate_help_states_the_batch_size_it_uses(capsys) -> None:
    from tsj_lab import migrate

    with pytest.raises(SystemExit):
        main(["migrate", "--help"])
    assert f"default {migrate.DEFAULT_BATCH_SIZE})" in " ".join(capsys.readouterr().out.split())


def test_every_command_under_a_role_statement_timeout_finishes_or_says_so_in_one_line(
        make_db, server: Embedded, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A role whose statement_timeout is 150 ms on both sides (Supabase's are 3-8 s, a DBA's
    can be anything): each command finishes (tsj's own SET LOCAL limit inside its
    transactions) or stops in one line naming the setting; never a traceback or a password.
    Then tsj's own limit made tiny: the bounded phases stop in one line naming it."""
    src, tgt, fresh = make_db(timescale=False), make_db(timescale=True), make_db(timescale=True)
    schema.create_source(src)
    schema.provision(tgt)
    generate.load(src, TickSpec(("ES",), "2024-01-02", days=1, interval_ms=1000), workers=1)
    role, password, as_role = role_url(src, server, options="SUPERUSER")
    db = {u: with_database(as_role, urlsplit(u).path.lstrip("/")) for u in (src, tgt, fresh)}
    with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
        conn.execute(f"""ALTER ROLE "{role}" SET statement_timeout = '150ms'""")
    migrate = ["migrate", "--source", db[src], "--target", db[tgt], "--include-expired"]
    check = ["check", "--source", db[src], "--target", db[tgt]]
    commands = [
        ["probe", "--target", db[tgt]],
        ["validate", "--target", db[tgt]],
        ["provision", "--target", db[fresh], "--no-validate"],
        [*migrate, "--dry-run"], migrate, check,
        ["refresh", "--target", db[tgt]],
        ["retention", "--target", db[tgt], "--dry-run"],
        ["generate", "--target", db[fresh], "--symbols", "NQ", "--start", "2024-01-02",
         "--interval-ms", "60000", "--workers", "1"],
    ]

    def tsj(argv: list[str]) -> tuple[int, str, str]:
        code = main(argv)
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err and password not in out + err, argv
        if err:  # stopped: one line naming the limit
            assert code == 1 and err.count("\n") == 1 and err.startswith("tsj: error:"), (
                argv, err)
            assert "statement_timeout" in err, (argv, err)
        return code, out, err

    try:
        done = {tuple(argv): tsj(argv) for argv in commands}
        with capsys.disabled():  # what each did, for the -s reader
            for argv, (code, _out, err) in done.items():
                print(f"\n{' '.join(a for a in argv if '://' not in a)}: exit {code} {err.strip()}")
        code, out, err = done[tuple(migrate)]
        assert code == 0 and "verified 1 symbol-day(s)" in out, err
        code, out, err = done[tuple(check)]
        assert err == "" and "reconcile" not in out, out  # reconciled: not among findings
        monkeypatch.setattr(limits, "STATEMENT_TIMEOUT", "1ms")
        for argv in (migrate, check):
            code, _out, err = tsj(argv)
            assert code == 1 and "after tsj's own limit of 1ms" in err, (argv, err)
    finally:
        drop_role(server, role, src, tgt, fresh)
