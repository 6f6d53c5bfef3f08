"""The `tsj` command as a user runs it: one-line errors, exit codes, no tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys

from tsj_lab.embedded import Embedded

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
