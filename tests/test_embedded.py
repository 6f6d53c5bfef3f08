"""The embedded server: idempotent setup, resumed downloads, restart after a crash, ports."""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import tarfile
from pathlib import Path

import psycopg
import pytest

from tsj_lab.server import embedded
from tsj_lab.server.embedded import Embedded, kill_hard
from tsj_lab.errors import EmbeddedError


def test_second_setup_downloads_nothing(server: Embedded, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    real_run = embedded._run
    monkeypatch.setattr(embedded, "_run", lambda cmd, **kw: (calls.append(cmd), real_run(cmd, **kw)))
    assert server.ensure_binaries() is False
    assert calls == []


def test_status_reports_versions_and_license(server: Embedded, apache_server: Embedded) -> None:
    st = server.status()
    assert st.running and st.pid and st.port
    assert st.postgres_version.startswith("17.")
    assert st.timescaledb_version == "2.30.0-dev" and st.license == "timescale"
    assert st.edition == "timescale"
    other = apache_server.status()
    assert other.license == "apache" and other.edition == "apache" and other.port != st.port
    assert other.data_dir != st.data_dir and apache_server.root != server.root


def test_timescale_tree_holds_the_built_extension(server: Embedded) -> None:
    lib = server.root / "usr" / "lib" / "postgresql" / "17" / "lib"
    assert (lib / "timescaledb-tsl-2.30.0-dev.so").is_file()
    assert not list(lib.glob("timescaledb-2.19*"))  # Debian's apache build is not in it
    assert "postgresql-server-dev-17" in (server.root / ".complete").read_text()


def test_url_has_no_password_and_connects(server: Embedded) -> None:
    url = server.url()
    assert "@127.0.0.1:" in url and ":" not in url.split("//", 1)[1].split("@", 1)[0]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.slow
def test_interrupted_download_is_resumed(server: Embedded, tmp_path: Path) -> None:
    """A truncated .deb (a download cut short) is fetched again; the rest is reused."""
    home = tmp_path / "home"
    shutil.copytree(server.home / "apt" / "debs", home / "apt" / "debs")
    victim = next((home / "apt" / "debs").glob("postgresql-17_*.deb"))
    victim.write_bytes(victim.read_bytes()[:1000])
    fresh = Embedded(home, edition="apache")  # the apache tree: no build needed
    assert fresh.ensure_binaries() is True
    assert fresh.installed and (fresh.bin / "postgres").is_file()
    assert victim.stat().st_size > 1000
    assert not (home / "pg17-apache.partial").exists()


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
    with pytest.raises(ValueError, match="edition 'oss' is unknown"):
        Embedded(tmp_path, edition="oss")


def test_a_cluster_of_the_other_edition_is_refused_not_wiped(server: Embedded) -> None:
    """A data folder made before the editions were kept apart (Debian's apache build,
    no edition file) is refused by the timescale edition, with the fix."""
    other = Embedded(server.home, instance=f"{server.instance}-legacy", edition="apache")
    try:
        other.ensure_cluster()
        other.edition_file.unlink()  # as tsj made them before
        legacy = Embedded(server.home, instance=f"{server.instance}-legacy")
        legacy.dir.parent.mkdir(exist_ok=True)
        other.dir.rename(legacy.dir)
        with pytest.raises(EmbeddedError, match=r"made by the apache edition.*move it to "
                           r".*-legacy-apache and use TSJ_EDITION=apache.*its data is lost"):
            legacy.ensure_cluster()
        assert (legacy.data / "PG_VERSION").is_file()
    finally:
        shutil.rmtree(other.dir, ignore_errors=True)
        shutil.rmtree(server.home / f"{server.instance}-legacy", ignore_errors=True)


def test_build_tools_missing_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no cmake, make or cc
    with pytest.raises(EmbeddedError, match=r"building TimescaleDB needs cmake, make, cc, not "
                                            r"found; .*TSJ_EDITION=apache"):
        embedded._check_build_tools()


def test_bad_source_archives_are_one_line_each(tmp_path: Path) -> None:
    home = tmp_path / "home"
    missing = Embedded(home, timescaledb_source=str(tmp_path / "nope.tar.gz"))
    with pytest.raises(EmbeddedError, match=r"nope.tar.gz not found; set TSJ_TIMESCALEDB_SOURCE"):
        missing.ensure_binaries()
    assert not missing.installed and not (home / "apt").exists()  # failed before downloading
    vendored = embedded.vendored_source()
    if vendored is None:
        pytest.skip("the vendored TimescaleDB source is not beside this clone or its origin")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(vendored.read_bytes()[:2_000_000])
    with pytest.raises(EmbeddedError, match=r"cut.tar.gz is unreadable .*TSJ_EDITION=apache"):
        embedded._unpack_source(cut, tmp_path / "src")
    apache_only = tmp_path / "apache-only.tar.gz"
    with tarfile.open(apache_only, "w:gz") as tf:
        for name in ("timescaledb/version.config", "timescaledb/src/init.c"):
            data = b"version = 2.30.0-dev\n"
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    with pytest.raises(EmbeddedError, match=r"not TimescaleDB's complete source \(no "
                                            r"version.config or tsl/"):
        embedded._unpack_source(apache_only, tmp_path / "src")


def test_missing_passfile_refuses_rather_than_wiping(server: Embedded) -> None:
    other = Embedded(server.home, instance=f"{server.instance}-nopass")
    try:
        other.ensure_cluster()
        other.passfile.unlink()
        with pytest.raises(EmbeddedError, match=r"passfile .* is missing .* holds a database"):
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


def test_a_clone_elsewhere_finds_the_archive_beside_its_origin(tmp_path, monkeypatch) -> None:
    """`git clone ~/work/tsj-lab /tmp/x`: /tmp/x has no ../shared, its origin does."""
    origin, clone = tmp_path / "work" / "main", tmp_path / "elsewhere" / "clone"
    archive = tmp_path / "work" / embedded.VENDORED_NAME
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"an archive")
    for repo in (origin, clone):
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
    monkeypatch.setattr(embedded, "VENDORED_SOURCE", clone.parent / embedded.VENDORED_NAME)
    monkeypatch.setattr(embedded, "PROJECT_DIR", clone)
    assert embedded.vendored_source() is None  # no origin: GitHub's archive
    subprocess.run(["git", "-C", str(clone), "remote", "add", "origin", str(origin)], check=True)
    assert embedded.vendored_source() == archive
    subprocess.run(["git", "-C", str(clone), "remote", "set-url", "origin",
                    "https://example.com/tsj-lab.git"], check=True)
    assert embedded.vendored_source() is None  # a remote origin is no folder to look beside
