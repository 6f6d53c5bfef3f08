"""The embedded server: its tree, its data folder, initdb, start, stop, status, url.

What runs is a *flavor*: a PostgreSQL major (18 by default, as production; 17 with
TSJ_PG_MAJOR=17) and an edition:

* ``timescale`` (the default): TimescaleDB built from a release's complete source (both
  license halves; :mod:`tsj_lab.server.build`), production's 2.24.0 unless
  TSJ_TIMESCALEDB_VERSION names another: compression, continuous aggregates and policy jobs.
* ``apache``: Debian's ``postgresql-NN-timescaledb``, built from a source with ``tsl/``
  removed (``timescaledb.license = apache``).

Each flavor has its own tree (``<home>/pg18-timescale-2.24.0``, ``<home>/pg18-apache``;
:mod:`tsj_lab.server.debs` fills it) and, per instance, its own data folder
(``<home>/main-pg18-2.24.0``), stamped with what made it: a data folder is never opened by
another PostgreSQL major or TimescaleDB version. Moving one to another TimescaleDB version
is :meth:`Embedded.upgrade_from`, which the user asks for (``tsj db upgrade``).

PostgreSQL refuses to run as root, so when tsj runs as root the server runs as the
unprivileged user ``nobody``. The server listens on 127.0.0.1 only, on a port chosen once
and remembered; the password lives in a 0600 passfile that the URL names, so the URL
itself carries no secret.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from .. import queries
from ..config import EDITIONS, PG_MAJORS, Settings
from ..domain import PRODUCTION
from ..errors import EmbeddedError
from . import build, debs
from .process import (
    choose_port,
    give_to_server_user,
    live_pid,
    read_port,
    run,
    server_user,
)

# a child of 'tsj_lab' so the CLI can show set-up progress (downloads, the build) alone
log = logging.getLogger("tsj_lab.server")

SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "shared_preload_libraries": "'timescaledb'",
    "jit": "off",
    "max_connections": "200",
    "shared_buffers": "'1GB'",
    "work_mem": "'32MB'",
    "maintenance_work_mem": "'256MB'",
    "max_wal_size": "'4GB'",
    "timescaledb.telemetry_level": "off",
    # No job scheduler: the workbench's ticks have fixed dates, so the 90-day retention
    # job would drop a benchmark's data mid-run. tsj runs each job itself (CALL run_job)
    # where it applies or proves a policy, and records what the job did.
    "timescaledb.max_background_workers": "0",
    "track_io_timing": "on",
    "log_min_messages": "warning",
}
SUPERUSER = "tsj"
TARGET_DB = "tsj"
SOURCE_DB = "tsj_source"
CONF_MARKER = "# tsj-lab"  # closes the server's postgresql.conf: initdb finished
#: the most TimescaleDB background workers an instance with the scheduler on may have
MAX_BACKGROUND_WORKERS = 32


@dataclass(frozen=True)
class Status:
    running: bool
    pid: int | None
    port: int | None
    data_dir: Path
    postgres_version: str | None = None
    timescaledb_version: str | None = None
    license: str | None = None
    edition: str | None = None  # the tree it runs: 'timescale' or 'apache'
    flavor: str | None = None  # 'pg18-2.24.0', 'pg18-apache'

    @property
    def versus_production(self) -> str | None:
        """Whether it runs production's versions, and what differs (None: not running)."""
        if not self.running:
            return None
        return PRODUCTION.versus(self.postgres_version, self.timescaledb_version)


def from_settings(settings: Settings, *, instance: str = "main",
                  background_workers: int = 0) -> Embedded:
    """The embedded server ``settings`` describe (home, port, versions, edition, source);
    ``background_workers`` > 0 for an instance that runs the job scheduler."""
    return Embedded(default_home(settings.home), instance=instance,
                    port=settings.port if instance == "main" else None,
                    edition=settings.edition, pg_major=settings.pg_major,
                    timescaledb_version=settings.timescaledb_version,
                    timescaledb_source=settings.timescaledb_source,
                    apt_mirror=settings.apt_mirror, background_workers=background_workers)


def default_home(project_home: Path) -> Path:
    """Where the server lives: ``project_home`` unless, as root, ``nobody`` cannot reach it.

    A clone under /root (mode 0700) cannot host a server that runs as ``nobody``; its
    files then go to a folder under /var/tmp named after the project path.
    """
    if os.geteuid() != 0 or _reachable_by_nobody(project_home):
        return project_home
    digest = hashlib.sha256(str(project_home.resolve()).encode()).hexdigest()[:10]
    return Path("/var/tmp") / f"tsj-{digest}"


def _reachable_by_nobody(path: Path) -> bool:
    path = path.resolve()
    for parent in [*reversed(path.parents)]:
        if parent.exists() and not (parent.stat().st_mode & 0o001):
            return False
    return True


class Embedded:
    """One embedded server: the tree of its flavor under ``home``, data in its own folder.

    ``timescaledb_source`` names an archive (path or URL) to build instead of
    ``timescaledb_version``'s vendored or GitHub archive; it must hold that version.
    ``background_workers`` > 0 runs TimescaleDB's job scheduler with that many workers
    (the live run's instance); 0, the default, runs none (see SERVER_SETTINGS).
    """

    def __init__(self, home: Path, *, instance: str = "main", port: int | None = None,
                 edition: str = "timescale", pg_major: int = PRODUCTION.pg_major,
                 timescaledb_version: str = PRODUCTION.timescaledb,
                 timescaledb_source: str | None = None, apt_mirror: str | None = None,
                 background_workers: int = 0) -> None:
        if not re.fullmatch(r"[a-z0-9_-]+", instance):
            raise ValueError(f"instance name {instance!r} must be lowercase letters, digits, - or _")
        if port is not None and not 1024 <= port <= 65535:
            raise ValueError(f"port {port} is out of range; use 1024-65535")
        if edition not in EDITIONS:
            raise ValueError(f"edition {edition!r} is unknown; use 'timescale' or 'apache' "
                             "(TSJ_EDITION)")
        if pg_major not in PG_MAJORS:
            raise ValueError(f"PostgreSQL {pg_major} is not one tsj runs; use one of {PG_MAJORS}")
        if not 0 <= background_workers <= MAX_BACKGROUND_WORKERS:
            raise ValueError(f"background_workers={background_workers} is out of range; use "
                             f"0 (no job scheduler) to {MAX_BACKGROUND_WORKERS}")
        self.background_workers = background_workers
        self.home = home
        self.instance = instance
        self.requested_port = port
        self.edition = edition
        self.pg_major = pg_major
        self.distro = debs.DISTROS[pg_major]
        # Debian's apache build has the version its package has; only a build chooses one
        self.timescaledb_version = timescaledb_version if edition == "timescale" else None
        self.timescaledb_source = timescaledb_source
        self.apt_mirror = apt_mirror  # None: the mirror this machine's apt uses
        #: what this server runs, named once: its tree and data folders carry it
        self.flavor = f"pg{pg_major}-{timescaledb_version if edition == 'timescale' else 'apache'}"
        self.root = home / (f"pg{pg_major}-timescale-{timescaledb_version}"
                            if edition == "timescale" else f"pg{pg_major}-apache")
        pg_lib = self.root / "usr" / "lib" / "postgresql" / str(pg_major)
        self.bin = pg_lib / "bin"
        self.libdir = pg_lib / "lib"
        # flavors never share a data folder: each reads only its own catalogs
        self.dir = home / f"{instance}-{self.flavor}"
        self.data = self.dir / "data"
        self.passfile = self.dir / "pgpass"
        self.port_file = self.dir / "port"
        self.logfile = self.dir / "postgres.log"
        self.made_by_file = self.dir / "made-by"

    def sibling(self, instance: str, *, port: int | None = None) -> Embedded:
        """Another instance of the same flavor (same tree, its own data folder)."""
        return Embedded(self.home, instance=instance, port=port, edition=self.edition,
                        pg_major=self.pg_major,
                        timescaledb_version=self.timescaledb_version or PRODUCTION.timescaledb,
                        timescaledb_source=self.timescaledb_source, apt_mirror=self.apt_mirror)

    def __repr__(self) -> str:
        return f"Embedded({self.instance!r}, {self.flavor!r}, home={str(self.home)!r})"

    # -- binaries ---------------------------------------------------------------------

    @property
    def installed(self) -> bool:
        return debs.installed(self.root)

    def ensure_binaries(self) -> bool:
        """Fetch, relocate (and for the timescale edition build) the server; False when
        it was all there already."""
        if self.installed:
            return False
        packages = [*self.distro.server_packages, *self.distro.edition_packages(self.edition)]
        then = None
        if self.edition == "timescale":
            build.check_tools()
            archive = build.source_archive(  # before the downloads: fail fast
                version=str(self.timescaledb_version), source=self.timescaledb_source,
                downloads=self.home / "src")

            def then() -> None:
                build.build(archive, version=str(self.timescaledb_version), root=self.root,
                            bindir=self.bin, libdir=self.libdir,
                            work=self.home / "build" / self.root.name)
        return debs.install(self.root, home=self.home, suite=self.distro.suite,
                            packages=packages, bindir=self.bin, mirror=self.apt_mirror,
                            then=then)

    # -- cluster ----------------------------------------------------------------------

    def ensure_cluster(self) -> None:
        """initdb once; a data dir left half-made by an interrupted initdb is redone.

        The steps end with the passfile, then the tsj-lab settings: a cluster holding both
        is complete. One with the settings but no passfile was made whole once (and may
        hold data), so it is never wiped: the user decides. Nor is one made by another
        flavor (its catalogs name another PostgreSQL or TimescaleDB).
        """
        configured = self._configured()
        if configured:
            self._check_made_by()
        if configured and self.passfile.is_file():
            return
        if configured:
            raise EmbeddedError(
                f"the passfile {self.passfile} is missing but {self.data} holds a database; "
                f"restore the passfile, or remove {self.dir} to start afresh (its data is lost)"
            )
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        password = secrets.token_urlsafe(24)
        pwfile = self.dir / "initdb.pw"
        pwfile.write_text(password + "\n")
        give_to_server_user(self.dir, pwfile)
        try:
            self._pg(
                "initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=scram-sha-256",
                f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C", "--no-instructions",
                what="initdb",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        self.made_by_file.write_text(f"{self.flavor}\n")
        # the passfile is the client's (root's or the user's): 0600 or libpq ignores it
        self.passfile.write_text(f"127.0.0.1:*:*:{SUPERUSER}:{password}\n")
        self.passfile.chmod(0o600)
        with open(self.data / "postgresql.conf", "a") as fh:
            fh.write(f"\n{CONF_MARKER}\n")
            fh.writelines(f"{k} = {v}\n" for k, v in SERVER_SETTINGS.items())
        give_to_server_user(self.data / "postgresql.conf")

    def made_by(self) -> str | None:
        """The flavor that made this data folder ('pg18-2.24.0'); None when unstamped."""
        try:
            return self.made_by_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    def _check_made_by(self) -> None:
        made_by = self.made_by()
        if made_by == self.flavor:
            return
        what = f"made by {made_by}" if made_by else "of unknown making (no made-by stamp)"
        raise EmbeddedError(
            f"{self.dir} holds a database {what}, not {self.flavor}; it is kept as it is: "
            f"run the flavor that made it (TSJ_PG_MAJOR, TSJ_TIMESCALEDB_VERSION, "
            f"TSJ_EDITION), or remove {self.dir} to start afresh (its data is lost)")

    def _configured(self) -> bool:
        conf = self.data / "postgresql.conf"
        return conf.is_file() and CONF_MARKER in conf.read_text(errors="replace")

    def upgrade_from(self, older: Embedded) -> list[str]:
        """Take over ``older``'s data folder (same PostgreSQL major, another TimescaleDB)
        and update the extension in every database with ``ALTER EXTENSION timescaledb
        UPDATE``; the databases updated. Only when the user asks (``tsj db upgrade``):
        there is no way back to the older version.
        """
        if older.pg_major != self.pg_major or {self.edition, older.edition} != {"timescale"}:
            raise EmbeddedError(
                f"{older.flavor} cannot be updated in place to {self.flavor}: only TimescaleDB "
                "moves within one PostgreSQL major of the timescale edition; dump and restore "
                "(pg_dump) instead")
        if older.made_by() != older.flavor or not older._configured():
            raise EmbeddedError(f"{older.dir} holds no database made by {older.flavor}; "
                                "nothing to upgrade")
        if self._configured():
            raise EmbeddedError(f"{self.dir} holds a database already; remove it (its data is "
                                f"lost) before moving {older.dir} there")
        if not older.installed:
            raise EmbeddedError(f"{older.flavor}'s tree {older.root} is not installed; the "
                                "update needs its library once: run 'tsj db setup' with "
                                f"TSJ_TIMESCALEDB_VERSION={older.timescaledb_version} first")
        older.stop()
        self.ensure_binaries()
        # the server opens each database with the version its catalog names until the
        # update has run: the new tree needs the old version's libraries beside its own
        for lib in older.libdir.glob(f"timescaledb*-{older.timescaledb_version}.so"):
            shutil.copy2(lib, self.libdir / lib.name)
        shutil.rmtree(self.dir, ignore_errors=True)  # an unconfigured, half-made folder
        older.dir.rename(self.dir)
        self.made_by_file.write_text(f"{self.flavor}\n")
        self.start()
        updated = []
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            names = [r[0] for r in conn.execute(queries.text("server.databases"))]
        for name in names:
            with psycopg.connect(self.url(name), autocommit=True) as conn:
                has = conn.execute(queries.text("server.has_timescaledb")).fetchone()
            if not has:
                continue
            # a session of its own whose first statement is the update: nothing of the
            # old version may be loaded into it (TimescaleDB's instruction)
            with psycopg.connect(self.url(name), autocommit=True) as conn:
                conn.execute("ALTER EXTENSION timescaledb UPDATE")
            updated.append(name)
        return updated

    def start(self) -> str:
        """Set up as needed, start when not running, and return the target URL."""
        self.ensure_binaries()
        self.ensure_cluster()
        self._clear_stale_pid()
        if self.pid() is None:  # not status(): that connects to read versions
            port = choose_port(self.port_file, requested=self.requested_port)
            try:
                self._pg(
                    "pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-w", "-t", "120",
                    "-o", f"-p {port}{_scheduler_options(self.background_workers)}", "start",
                    what="pg_ctl start",
                )
            except EmbeddedError as exc:
                raise EmbeddedError(f"the server did not start: {self._last_log_error() or exc}; "
                                    f"see {self.logfile}") from None
            self.port_file.write_text(f"{port}\n")
            self._ensure_databases()
        return self.url()

    def stop(self) -> bool:
        """Stop the server cleanly; False when it was not running."""
        self._clear_stale_pid()
        if self.pid() is None:
            return False
        self._pg("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "120", "stop",
                 what="pg_ctl stop")
        return True

    def port(self) -> int | None:
        """The port the server listens on (or last did); None before its first start."""
        return read_port(self.port_file)

    def pid(self) -> int | None:
        """The running postmaster's pid; None when it does not run."""
        return live_pid(self.data / "postmaster.pid", program="postgres")

    def url(self, dbname: str = TARGET_DB) -> str:
        port = self.port()
        if port is None:
            raise EmbeddedError("the embedded server was never started; run 'tsj db start'")
        return (f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{dbname}"
                f"?passfile={self.passfile}&application_name=tsj")

    def status(self) -> Status:
        pid = self.pid()
        base = Status(running=pid is not None, pid=pid, port=self.port(), data_dir=self.data,
                      edition=self.edition, flavor=self.flavor)
        if pid is None:
            return base
        # psycopg itself, not tsj_lab.db: the server layer sits below the connections layer
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            pg_version, _num, ts_version, _available = conn.execute(
                queries.text("probe.versions")).fetchone() or (None, None, None, None)
            license_ = (conn.execute("SHOW timescaledb.license").fetchone() or (None,))[0] \
                if ts_version else None
        return Status(True, pid, base.port, self.data, pg_version, ts_version, license_,
                      self.edition, self.flavor)

    # -- helpers ----------------------------------------------------------------------

    def _ensure_databases(self) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            have = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
            for db in (TARGET_DB, SOURCE_DB):
                if db not in have:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
        with psycopg.connect(self.url(TARGET_DB), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")

    def _last_log_error(self) -> str | None:
        try:
            lines = self.logfile.read_text(errors="replace").splitlines()
        except OSError:
            return None
        errors = [ln.split(":  ", 1)[-1] for ln in lines if "FATAL" in ln or "ERROR" in ln]
        return errors[-1] if errors else None

    def _clear_stale_pid(self) -> None:
        pidfile = self.data / "postmaster.pid"
        if pidfile.exists() and self.pid() is None:
            log.warning("removing stale %s left by a crashed server", pidfile)
            pidfile.unlink()

    def _pg(self, tool: str, *args: str, what: str) -> None:
        run([str(self.bin / tool), *args], what=what, cwd=self.dir, **server_user())


def _scheduler_options(workers: int) -> str:
    """The server options that turn TimescaleDB's job scheduler on with ``workers``
    background workers ('' for 0: SERVER_SETTINGS keep it off).

    Only an instance made for it runs the scheduler (the live run's): the bench's ticks
    have fixed dates, and its instance must never run their retention job. Given at
    start, not written into postgresql.conf, so the instance's folder is made as any
    other's. PostgreSQL's own pool of workers holds the scheduler's (the launcher, one
    scheduler per database, one per running job) besides its 8 for parallel queries.
    """
    if not workers:
        return ""
    return (f" -c timescaledb.max_background_workers={workers}"
            f" -c max_worker_processes={workers + 8}")
