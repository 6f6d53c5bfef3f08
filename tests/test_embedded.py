"""The embedded server: versions and flavors, idempotent setup, resumed downloads, restart
after a crash, ports, and data folders never opened by another flavor."""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import tarfile
from pathlib import Path

import psycopg
import pytest

from tsj_lab.config import Settings
from tsj_lab.domain import PRODUCTION
from tsj_lab.errors import ConfigError, EmbeddedError
from tsj_lab.server import build, debs, process
from tsj_lab.server.cluster import Embedded, from_settings
from tsj_lab.server.process import kill_hard


def test_second_setup_downloads_nothing(server: Embedded, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(debs, "run", lambda cmd, **kw: calls.append(cmd))
    assert server.ensure_binaries() is False
    assert calls == []


def test_status_reports_versions_and_license(server: Embedded, apache_server: Embedded) -> None:
    st = server.status()
    assert st.running and st.pid and st.port
    assert st.postgres_version.startswith(f"{server.pg_major}.")
    assert st.timescaledb_version == server.timescaledb_version and st.license == "timescale"
    assert st.edition == "timescale" and st.flavor == f"pg{server.pg_major}-{st.timescaledb_version}"
    other = apache_server.status()
    assert other.license == "apache" and other.edition == "apache" and other.port != st.port
    assert other.data_dir != st.data_dir and apache_server.root != server.root
    assert other.postgres_version.split(".")[0] == st.postgres_version.split(".")[0]


def test_status_says_how_it_differs_from_production(server: Embedded) -> None:
    line = server.status().versus_production
    assert line is not None and "Tiger Cloud trading-journal-live" in line
    # Debian's PostgreSQL 18 is a later minor than production's 18.1: said, not hidden
    pg = server.status().postgres_version.split()[0]  # '18.6 (Debian 18.6-3)'
    assert (f"PostgreSQL {pg}, production 18.1" in line) == (pg != PRODUCTION.postgres)
    assert (f"TimescaleDB {server.timescaledb_version}, production 2.24.0" in line) == \
        (server.timescaledb_version != PRODUCTION.timescaledb)
    assert PRODUCTION.versus("18.1", "2.24.0").startswith("as production")
    assert PRODUCTION.differences("17.12", "2.30.0-dev") == [
        "PostgreSQL 17.12, production 18.1", "TimescaleDB 2.30.0-dev, production 2.24.0"]
    assert PRODUCTION.differences("18.1", None) == ["TimescaleDB absent, production 2.24.0"]


def test_the_default_is_production_and_one_setting_picks_another(tmp_path: Path) -> None:
    default = from_settings(Settings.load(env={}, dotenv=None, home=tmp_path))
    assert (default.pg_major, default.timescaledb_version) == (18, "2.24.0") == \
        (PRODUCTION.pg_major, PRODUCTION.timescaledb)
    assert default.root.name == "pg18-timescale-2.24.0" and default.dir.name == "main-pg18-2.24.0"
    newer = from_settings(Settings.load(env={"TSJ_TIMESCALEDB_VERSION": "2.29.2"}, dotenv=None,
                                        home=tmp_path))
    assert newer.root.name == "pg18-timescale-2.29.2" and newer.dir != default.dir
    pg17 = from_settings(Settings.load(env={"TSJ_PG_MAJOR": "17", "TSJ_EDITION": "apache"},
                                       dotenv=None, home=tmp_path))
    assert pg17.root.name == "pg17-apache" and pg17.distro.suite == "trixie"
    assert "postgresql-17-timescaledb" in pg17.distro.edition_packages("apache")
    with pytest.raises(ConfigError, match=r"TSJ_PG_MAJOR=16 is not one .* set it to 18"):
        Settings.load(env={"TSJ_PG_MAJOR": "16"}, dotenv=None)
    with pytest.raises(ConfigError, match="TSJ_TIMESCALEDB_VERSION='latest' is not a"):
        Settings.load(env={"TSJ_TIMESCALEDB_VERSION": "latest"}, dotenv=None)


def test_timescale_tree_holds_the_built_extension(server: Embedded) -> None:
    assert (server.libdir / f"timescaledb-tsl-{server.timescaledb_version}.so").is_file()
    # built, not Debian's apache package (which has a tree of its own); an older version's
    # libraries may sit beside it after 'tsj db upgrade' (the update needs them)
    complete = (server.root / ".complete").read_text()
    assert f"postgresql-server-dev-{server.pg_major}" in complete
    assert f"postgresql-{server.pg_major}-timescaledb" not in complete


def test_url_has_no_password_and_connects(server: Embedded) -> None:
    url = server.url()
    assert "@127.0.0.1:" in url and ":" not in url.split("//", 1)[1].split("@", 1)[0]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.slow
def test_interrupted_download_is_resumed(server: Embedded, tmp_path: Path) -> None:
    """A truncated .deb (a download cut short) is fetched again; the rest is reused."""
    home = tmp_path / "home"
    apt = f"apt-{server.distro.suite}"
    shutil.copytree(server.home / apt / "debs", home / apt / "debs")
    victim = next((home / apt / "debs").glob(f"postgresql-{server.pg_major}_*.deb"))
    victim.write_bytes(victim.read_bytes()[:1000])
    fresh = Embedded(home, edition="apache", pg_major=server.pg_major)  # no build needed
    assert fresh.ensure_binaries() is True
    assert fresh.installed and (fresh.bin / "postgres").is_file()
    assert victim.stat().st_size > 1000
    assert not (home / f"pg{server.pg_major}-apache.partial").exists()


def test_restart_after_crash_recovers_stale_pid(server: Embedded) -> None:
    other = server.sibling(f"{server.instance}-crash")
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
        other = server.sibling(f"{server.instance}-port", port=port)
        try:
            with pytest.raises(EmbeddedError, match=f"port {port} on 127.0.0.1 is in use"):
                other.start()
        finally:
            shutil.rmtree(other.dir, ignore_errors=True)


def test_unsupported_platform_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process.sys, "platform", "darwin")
    with pytest.raises(EmbeddedError, match="set TSJ_DATABASE_URL"):
        process.check_platform()


def test_bad_arguments_fail_up_front(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="instance name"):
        Embedded(tmp_path, instance="../x")
    with pytest.raises(ValueError, match="port 80"):
        Embedded(tmp_path, port=80)
    with pytest.raises(ValueError, match="edition 'oss' is unknown"):
        Embedded(tmp_path, edition="oss")
    with pytest.raises(ValueError, match="PostgreSQL 16 is not one tsj runs"):
        Embedded(tmp_path, pg_major=16)


def test_a_data_folder_of_another_flavor_is_refused_not_wiped(server: Embedded) -> None:
    """A data folder stamped by another PostgreSQL or TimescaleDB (or not stamped at all)
    is never opened silently: one line names what made it and the two ways out."""
    other = server.sibling(f"{server.instance}-legacy")
    try:
        other.ensure_cluster()
        other.made_by_file.write_text("pg17-2.30.0-dev\n")
        with pytest.raises(EmbeddedError, match=rf"made by pg17-2.30.0-dev, not {server.flavor}; "
                           r"it is kept .*TSJ_TIMESCALEDB_VERSION.*its data is lost"):
            other.ensure_cluster()
        other.made_by_file.unlink()
        with pytest.raises(EmbeddedError, match=r"of unknown making \(no made-by stamp\)"):
            other.start()
        assert (other.data / "PG_VERSION").read_text().strip() == str(server.pg_major)
    finally:
        shutil.rmtree(other.dir, ignore_errors=True)


def test_an_upgrade_is_refused_across_majors_and_editions(server: Embedded, tmp_path: Path) -> None:
    other_major = Embedded(tmp_path, pg_major=17 if server.pg_major == 18 else 18)
    with pytest.raises(EmbeddedError, match=r"cannot be updated in place .*\(pg_dump\)"):
        server.upgrade_from(other_major)
    with pytest.raises(EmbeddedError, match="cannot be updated in place"):
        server.upgrade_from(Embedded(tmp_path, edition="apache", pg_major=server.pg_major))
    with pytest.raises(EmbeddedError, match="holds no database made by"):
        server.upgrade_from(Embedded(tmp_path, pg_major=server.pg_major,
                                     timescaledb_version="2.20.0"))


def test_upgrade_updates_the_extension_and_keeps_the_data(server: Embedded) -> None:
    """What ``tsj db upgrade`` does: production's 2.24.0 data folder taken over by the test
    server's newer version, ALTER EXTENSION ... UPDATE in each database, rows kept. Runs in
    the matrix leg on a newer version (make test-matrix); the default leg runs 2.24.0 itself."""
    if server.timescaledb_version == PRODUCTION.timescaledb:
        pytest.skip("the test server runs production's version: nothing newer to update to "
                    "(the 2.29.2 leg of make test-matrix runs this)")
    older = Embedded(server.home, instance=f"{server.instance}-upg", pg_major=server.pg_major,
                     apt_mirror=server.apt_mirror)
    newer = server.sibling(f"{server.instance}-upg")
    try:
        with psycopg.connect(older.start(), autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (t timestamptz NOT NULL, v int)")
            conn.execute("SELECT create_hypertable('kept', 't')")
            conn.execute("INSERT INTO kept VALUES (now(), 1), (now(), 2)")
        assert newer.upgrade_from(older) == ["tsj"]
        assert not older.dir.exists() and newer.made_by() == newer.flavor
        with psycopg.connect(newer.url(), autocommit=True) as conn:
            assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = "
                                "'timescaledb'").fetchone() == (server.timescaledb_version,)
            assert conn.execute("SELECT count(*) FROM kept").fetchone() == (2,)
    finally:
        for s in (older, newer):
            s.stop()
            shutil.rmtree(s.dir, ignore_errors=True)


def test_build_tools_missing_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no cmake, make or cc
    with pytest.raises(EmbeddedError, match=r"building TimescaleDB needs cmake, make, cc, not "
                                            r"found; .*TSJ_EDITION=apache"):
        build.check_tools()


def _fake_source(path: Path, version: str, *, tsl: bool = True) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        names = ["timescaledb/version.config", "timescaledb/src/init.c"]
        for name in names + (["timescaledb/tsl/CMakeLists.txt"] if tsl else []):
            data = f"version = {version}\n".encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_bad_source_archives_are_one_line_each(tmp_path: Path) -> None:
    home = tmp_path / "home"
    missing = Embedded(home, timescaledb_source=str(tmp_path / "nope.tar.gz"))
    with pytest.raises(EmbeddedError, match=r"nope.tar.gz not found; set TSJ_TIMESCALEDB_SOURCE"):
        missing.ensure_binaries()
    assert not missing.installed and not list(home.glob("apt*"))  # failed before downloading
    vendored = build.vendored_source(PRODUCTION.timescaledb)
    assert vendored is not None, "../shared/vendor/ holds production's source (README)"
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(vendored.read_bytes()[:2_000_000])
    with pytest.raises(EmbeddedError, match=r"cut.tar.gz is unreadable .*TSJ_EDITION=apache"):
        build.unpack_source(cut, tmp_path / "src")
    apache_only = _fake_source(tmp_path / "apache-only.tar.gz", "2.24.0", tsl=False)
    with pytest.raises(EmbeddedError, match=r"not TimescaleDB's complete source \(no "
                                            r"version.config or tsl/"):
        build.unpack_source(apache_only, tmp_path / "src")


def test_an_archive_of_another_version_names_the_setting(tmp_path: Path) -> None:
    """TSJ_TIMESCALEDB_SOURCE pointing at 2.99.0 while 2.24.0 is asked for: the tree would
    be named for a version it does not hold, so the build refuses before compiling."""
    archive = _fake_source(tmp_path / "other.tar.gz", "2.99.0")
    with pytest.raises(EmbeddedError, match=r"is TimescaleDB 2.99.0, not 2.24.0; set "
                                            r"TSJ_TIMESCALEDB_VERSION=2.99.0"):
        build.build(archive, version="2.24.0", root=tmp_path / "root", bindir=tmp_path,
                    libdir=tmp_path, work=tmp_path / "work")
    assert not (tmp_path / "work" / "timescaledb-build.log").exists()  # nothing compiled


def test_vendored_releases_are_found_by_version() -> None:
    versions = build.vendored_versions()
    assert {"2.24.0", "2.29.2"} <= set(versions), versions
    assert versions.index("2.24.0") < versions.index("2.29.2")
    assert build.vendored_source("2.29.2").name == "timescaledb-2.29.2.tar.gz"
    if "2.30.0-dev" in versions:  # the snapshot's name carries its commit
        assert build.vendored_source("2.30.0-dev").name.startswith("timescaledb-2.30.0-dev-")
    assert build.vendored_source("2.2.0") is None


def test_missing_passfile_refuses_rather_than_wiping(server: Embedded) -> None:
    other = server.sibling(f"{server.instance}-nopass")
    try:
        other.ensure_cluster()
        other.passfile.unlink()
        with pytest.raises(EmbeddedError, match=r"passfile .* is missing .* holds a database"):
            other.ensure_cluster()
        assert (other.data / "PG_VERSION").is_file()
    finally:
        shutil.rmtree(other.dir, ignore_errors=True)


def test_half_made_cluster_is_redone(server: Embedded) -> None:
    other = server.sibling(f"{server.instance}-half")
    try:
        (other.data).mkdir(parents=True)
        (other.data / "PG_VERSION").write_text(f"{server.pg_major}\n")  # initdb cut short
        other.ensure_cluster()
        assert other.passfile.is_file() and (other.data / "global").is_dir()
    finally:
        shutil.rmtree(other.dir, ignore_errors=True)


def test_a_clone_elsewhere_finds_the_archive_beside_its_origin(tmp_path, monkeypatch) -> None:
    """`git clone ~/work/tsj-lab /tmp/x`: /tmp/x has no ../shared, its origin does."""
    origin, clone = tmp_path / "work" / "main", tmp_path / "elsewhere" / "clone"
    archive = tmp_path / "work" / build.VENDOR_DIR / "timescaledb-2.24.0.tar.gz"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"an archive")
    for repo in (origin, clone):
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
    monkeypatch.setattr(build, "PROJECT_DIR", clone)
    assert build.vendored_source("2.24.0") is None  # no origin: GitHub's archive
    subprocess.run(["git", "-C", str(clone), "remote", "add", "origin", str(origin)], check=True)
    assert build.vendored_source("2.24.0") == archive
    subprocess.run(["git", "-C", str(clone), "remote", "set-url", "origin",
                    "https://example.com/tsj-lab.git"], check=True)
    assert build.vendored_source("2.24.0") is None  # a remote origin is no folder to look beside


def test_a_tree_counts_as_installed_only_where_it_was_relocated(tmp_path: Path) -> None:
    """Binaries name their loader by absolute path: a tree reached through another path
    (moved, or made through a symlink that is gone) must be redone, not run ('initdb could
    not run (No such file or directory)' was all a user saw)."""
    from tsj_lab.server import debs

    root = tmp_path / "home" / "pg18-timescale-2.24.0"
    root.mkdir(parents=True)
    debs.mark_complete(root, [])
    assert debs.installed(root)
    moved = tmp_path / "elsewhere"
    (tmp_path / "home").rename(moved)
    assert not debs.installed(moved / "pg18-timescale-2.24.0")
    (root / ".complete").parent.mkdir(parents=True)
    (root / ".complete").write_text("postgresql-18.deb\n")  # a mark from before: no location
    assert not debs.installed(root)
