"""The embedded server: idempotent setup, resumed downloads, restart after a crash, ports."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import psycopg
import pytest

from tsj_lab import embedded
from tsj_lab.embedded import Embedded, kill_hard
from tsj_lab.errors import EmbeddedError


def test_second_setup_downloads_nothing(server: Embedded, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    real_run = embedded._run
    monkeypatch.setattr(embedded, "_run", lambda cmd, **kw: (calls.append(cmd), real_run(cmd, **kw)))
    assert server.ensure_binaries() is False
    assert calls == []


def test_status_reports_versions_and_license(server: Embedded) -> None:
    st = server.status()
    assert st.running and st.pid and st.port
    assert st.postgres_version.startswith("17.")
    assert st.timescaledb_version and st.license == "apache"


def test_url_has_no_password_and_connects(server: Embedded) -> None:
    url = server.url()
    assert "@127.0.0.1:" in url and ":" not in url.split("//", 1)[1].split("@", 1)[0]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_interrupted_download_is_resumed(server: Embedded, tmp_path: Path) -> None:
    """A truncated .deb (a download cut short) is fetched again; the rest is reused."""
    home = tmp_path / "home"
    shutil.copytree(server.home / "apt" / "debs", home / "apt" / "debs")
    victim = next((home / "apt" / "debs").glob("postgresql-17-timescaledb_*.deb"))
    victim.write_bytes(victim.read_bytes()[:1000])
    fresh = Embedded(home)
    assert fresh.ensure_binaries() is True
    assert fresh.installed and (fresh.bin / "postgres").is_file()
    assert victim.stat().st_size > 1000
    assert not (home / "pg17.partial").exists()


def test_restart_after_crash_recovers_stale_pid(server: Embedded) -> None:
    other = Embedded(server.home, instance=f"{server.instance}-crash")
    try:
        other.start()
        kill_hard(other.status().pid)
        assert (other.data / "postmaster.pid").exists()
        assert not other.status().running
        other.start()
        assert other.status().running
        assert other.stop() is True
        assert other.stop() is False
    finally:
        other.stop()
        shutil.rmtree(other.dir, ignore_errors=True)


def test_port_in_use_is_one_clear_line(server: Embedded) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        other = Embedded(server.home, instance=f"{server.instance}-port", port=port)
        try:
            with pytest.raises(EmbeddedError, match=f"port {port} on 127.0.0.1 is in use"):
                other.start()
        finally:
            shutil.rmtree(other.dir, ignore_errors=True)


def test_unsupported_platform_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded.sys, "platform", "darwin")
    with pytest.raises(EmbeddedError, match="set TSJ_DATABASE_URL"):
        embedded._check_platform()


def test_bad_arguments_fail_up_front(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="instance name"):
        Embedded(tmp_path, instance="../x")
    with pytest.raises(ValueError, match="port 80"):
        Embedded(tmp_path, port=80)


def test_missing_passfile_refuses_rather_than_wiping(server: Embedded) -> None:
    other = Embedded(server.home, instance=f"{server.instance}-nopass")
    try:
        other.ensure_cluster()
        other.passfile.unlink()
        with pytest.raises(EmbeddedError, match="passfile .* is missing .* holds a database"):
            other.ensure_cluster()
        assert (other.data / "PG_VERSION").is_file()
    finally:
        shutil.rmtree(other.dir, ignore_errors=True)


def test_half_made_cluster_is_redone(server: Embedded) -> None:
    other = Embedded(server.home, instance=f"{server.instance}-half")
    try:
        (other.data).mkdir(parents=True)
        (other.data / "PG_VERSION").write_text("17\n")  # initdb cut short
        other.ensure_cluster()
        assert other.passfile.is_file() and (other.data / "global").is_dir()
    finally:
        shutil.rmtree(other.dir, ignore_errors=True)
