"""PgBouncer in front of the embedded server: fetch, configure, start, stop, url.

PgBouncer comes from Debian 13's ``pgbouncer`` package, fetched and relocated the way
the server is (:mod:`tsj_lab.server.debs`: private apt state, ``dpkg-deb -x``, patchelf),
into ``<home>/pgbouncer``; its port, pid and user are handled as the server's are
(:mod:`tsj_lab.server.process`). One PgBouncer per server instance lives in
``<home>/<instance>/pgbouncer-<mode>``: it listens on 127.0.0.1 only, on a port chosen once
and remembered, and runs as ``nobody`` when tsj runs as root, like the server.

Authentication: the auth_file holds the superuser's SCRAM secret as the server stores it
(never the password), so PgBouncer checks the client's SCRAM login and logs into the
server with the same secret. Clients use the server's passfile: the URL carries no secret.

``prepared_statements`` is PgBouncer's ``max_prepared_statements``: 0 behaves like
PgBouncer before 1.21 (no protocol-level prepared statements in transaction mode), which
is what tsj must survive; the default 200 is PgBouncer 1.22's.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import time
from urllib.parse import urlsplit, urlunsplit

import psycopg

from .. import queries
from ..errors import EmbeddedError
from . import debs
from .cluster import SOURCE_DB, SUPERUSER, TARGET_DB, Embedded
from .process import choose_port, give_to_server_user, live_pid, read_port, server_user

log = logging.getLogger("tsj_lab")

#: PgBouncer and the shared libraries it loads (found with readelf -d / ldd on the binary)
PACKAGES = (
    "pgbouncer", "libc6", "libcares2", "libevent-2.1-7t64", "libssl3t64", "libsystemd0",
    "libpam0g", "libcap2", "libgcrypt20", "libgpg-error0", "liblzma5", "libzstd1", "liblz4-1",
    "libaudit1", "libcap-ng0",
)
MODES = ("transaction", "session", "statement")


class PgBouncer:
    """One PgBouncer in ``mode`` in front of the embedded ``server``."""

    def __init__(self, server: Embedded, *, mode: str = "transaction",
                 prepared_statements: int = 200, pool_size: int = 20,
                 max_clients: int = 500, name: str | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"pool mode {mode!r} is unknown; use one of {MODES}")
        if prepared_statements < 0:
            raise ValueError(f"prepared_statements={prepared_statements} must be >= 0")
        if name is not None and not re.fullmatch(r"[a-z0-9_-]+", name):
            raise ValueError(f"pooler name {name!r} must be lowercase letters, digits, - or _")
        if pool_size < 1 or max_clients < 1:
            raise ValueError(f"pool_size={pool_size} and max_clients={max_clients} must be >= 1")
        self.server = server
        self.mode = mode
        self.prepared_statements = prepared_statements
        self.pool_size = pool_size
        self.max_clients = max_clients
        self.root = server.home / "pgbouncer"
        self.exe = self.root / "usr" / "sbin" / "pgbouncer"
        # one folder (config, port, log) per PgBouncer of this server: name it to run several
        self.dir = server.dir / (name or f"pgbouncer-{mode}")
        self.config = self.dir / "pgbouncer.ini"
        self.auth_file = self.dir / "userlist.txt"
        self.pidfile = self.dir / "pgbouncer.pid"
        self.logfile = self.dir / "pgbouncer.log"
        self.port_file = self.dir / "port"

    # -- binaries ---------------------------------------------------------------------

    @property
    def installed(self) -> bool:
        return debs.installed(self.root)

    def ensure_binaries(self) -> bool:
        """Fetch and relocate PgBouncer; False when it was already there."""
        return debs.install(self.root, home=self.server.home, suite=debs.TOOLS_SUITE,
                            packages=PACKAGES, bindir=self.exe.parent,
                            mirror=self.server.apt_mirror)

    # -- process ----------------------------------------------------------------------

    def start(self) -> str:
        """Set up as needed, start when not running, and return the target URL through it."""
        self.ensure_binaries()
        self.server.start()
        if self.pid() is not None:
            port = read_port(self.port_file)
            if port and self.config.is_file() and self.config.read_text() == self._config_text(port):
                return self.url()
            self.stop()  # other settings, or the server moved to another port: restart
        self.dir.mkdir(parents=True, exist_ok=True)
        self.logfile.unlink(missing_ok=True)  # its errors are this start's, if any
        port = choose_port(self.port_file)
        self._write_auth_file()
        self._write_config(port)
        self.pidfile.unlink(missing_ok=True)
        give_to_server_user(self.dir, self.config, self.auth_file)
        self._run_pgbouncer("-d", str(self.config))
        self.port_file.write_text(f"{port}\n")
        self._wait_listening(port)
        return self.url()

    def stop(self) -> bool:
        """Stop PgBouncer (immediate shutdown); False when it was not running."""
        pid = self.pid()
        if pid is None:
            return False
        # SIGQUIT is the immediate shutdown since PgBouncer 1.23 (SIGTERM waits for clients)
        os.kill(pid, signal.SIGQUIT)
        for _ in range(200):
            if self.pid() is None:
                return True
            time.sleep(0.05)
        raise EmbeddedError(f"pgbouncer (pid {pid}) did not stop in 10 s; see {self.logfile}")

    def pid(self) -> int | None:
        return live_pid(self.pidfile, program="pgbouncer")

    def url(self, dbname: str = TARGET_DB) -> str:
        """``dbname`` through PgBouncer: the server's URL with the pooler's port."""
        port = read_port(self.port_file)
        if port is None:
            raise EmbeddedError("the pooler was never started; run 'tsj db pooler'")
        return (f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{dbname}"
                f"?passfile={self.server.passfile}&application_name=tsj")

    def source_url(self) -> str:
        return self.url(SOURCE_DB)

    def through(self, url: str) -> str:
        """``url`` (a database of the server, its URL as the server gives it) through PgBouncer."""
        port = read_port(self.port_file)
        if port is None:
            raise EmbeddedError("the pooler was never started; run 'tsj db pooler'")
        p = urlsplit(url)
        return urlunsplit((p.scheme, f"{p.username}@127.0.0.1:{port}", p.path, p.query, ""))

    # -- helpers ----------------------------------------------------------------------

    def _write_auth_file(self) -> None:
        with psycopg.connect(self.server.url("postgres"), autocommit=True) as conn:
            row = conn.execute(queries.text("pooler.scram_secret"), {"role": SUPERUSER}).fetchone()
        if not row or not row[0] or not str(row[0]).startswith("SCRAM-SHA-256$"):
            raise EmbeddedError(f"role '{SUPERUSER}' has no SCRAM secret on the server; "
                                "remove the instance folder and re-run 'tsj db start'")
        # 0600 before the secret goes in: it never sits readable by others
        fd = os.open(self.auth_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f'"{SUPERUSER}" "{row[0]}"\n')

    def _write_config(self, port: int) -> None:
        self.config.write_text(self._config_text(port))

    def _config_text(self, port: int) -> str:
        settings = {
            "listen_addr": "127.0.0.1",
            "listen_port": port,
            "unix_socket_dir": "",
            "auth_type": "scram-sha-256",
            "auth_file": self.auth_file,
            "admin_users": SUPERUSER,
            "pool_mode": self.mode,
            "default_pool_size": self.pool_size,
            "max_client_conn": self.max_clients,
            "max_prepared_statements": self.prepared_statements,
            "ignore_startup_parameters": "extra_float_digits",
            "logfile": self.logfile,
            "pidfile": self.pidfile,
            "log_connections": 0,
            "log_disconnections": 0,
        }
        lines = ["[databases]", f"* = host=127.0.0.1 port={self.server.port()}",
                 "", "[pgbouncer]", *(f"{k} = {v}" for k, v in settings.items())]
        return "\n".join(lines) + "\n"

    def _run_pgbouncer(self, *args: str) -> None:
        try:
            res = subprocess.run([str(self.exe), *args], cwd=self.dir, capture_output=True,
                                 text=True, timeout=30, **server_user())  # type: ignore[call-overload]
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EmbeddedError(f"pgbouncer could not run ({exc}); remove {self.root} and "
                                "re-run 'tsj db pooler'") from None
        if res.returncode:
            # before it daemonizes, PgBouncer says what it refuses on stderr (e.g. a setting)
            said = [ln for ln in (res.stderr or res.stdout).splitlines() if ln.strip()]
            said = [ln for ln in said if " ERROR " in ln] or said  # the cause, not 'FATAL'
            cause = said[0].split(" ", 4)[-1] if said else f"exit {res.returncode}"
            raise EmbeddedError(f"pgbouncer did not start: {cause}; see {self.config} "
                                f"and {self.logfile}")

    def _wait_listening(self, port: int, timeout: float = 10.0) -> None:
        """Until PgBouncer runs (its pidfile names a live process) and takes connections."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is not None:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        return
            time.sleep(0.05)
        said = self._last_log_error()
        raise EmbeddedError(f"pgbouncer did not start on 127.0.0.1:{port} within {timeout:g} s"
                            f"{': ' + said if said else ''}; see {self.logfile}")

    def _last_log_error(self) -> str | None:
        try:
            lines = self.logfile.read_text(errors="replace").splitlines()
        except OSError:
            return None
        errors = [ln.split(" ", 4)[-1] for ln in lines if " FATAL " in ln or " ERROR " in ln]
        return errors[-1] if errors else None
