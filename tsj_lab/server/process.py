"""What every process tsj runs itself shares: ports, pids, the unprivileged user, locks.

The embedded server (:mod:`tsj_lab.server.cluster`) and PgBouncer
(:mod:`tsj_lab.server.pooler`) both listen on 127.0.0.1 on a port chosen once and
remembered, name their process in a pidfile, and run as ``nobody`` when tsj runs as root
(PostgreSQL refuses root). One implementation of each here.
"""

from __future__ import annotations

import fcntl
import os
import platform
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import EmbeddedError

UNPRIVILEGED = "nobody"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


def port_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:``port``."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def read_port(port_file: Path) -> int | None:
    """The port remembered in ``port_file``; None before the first start."""
    try:
        return int(port_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def choose_port(port_file: Path, *, requested: int | None = None, what: str = "TSJ_PORT") -> int:
    """``requested`` if free (else one line naming ``what`` to change), else the remembered
    port if free, else any free port."""
    if requested is not None:
        if not port_free(requested):
            raise EmbeddedError(f"port {requested} on 127.0.0.1 is in use; stop what listens "
                                f"there or choose another port ({what})")
        return requested
    remembered = read_port(port_file)
    if remembered and port_free(remembered):
        return remembered
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def live_pid(pidfile: Path, *, program: str) -> int | None:
    """The pid the first line of ``pidfile`` names, if that process runs ``program``.

    A process killed hard leaves its pidfile; the pid in it may since belong to another
    program, hence the look at its command line.
    """
    try:
        pid = int(pidfile.read_text().split("\n", 1)[0].split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return pid if program.encode() in cmdline else None


def server_user() -> dict[str, object]:
    """``subprocess.run`` arguments that run a server as ``nobody`` when tsj is root."""
    if os.geteuid() != 0:
        return {}
    user = pwd.getpwnam(UNPRIVILEGED)
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def give_to_server_user(*paths: Path) -> None:
    """Hand ``paths`` to ``nobody`` when tsj is root (the server must read and write them)."""
    if os.geteuid() != 0:
        return
    user = pwd.getpwnam(UNPRIVILEGED)
    for p in paths:
        os.chown(p, user.pw_uid, user.pw_gid)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created) while the block runs: two tsj processes
    setting up the same tree or apt state take turns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def run(cmd: list[str], *, what: str, cwd: Path | None = None, **kwargs: object) -> None:
    """Run ``cmd``; its last line of output as a one-line error when it fails."""
    try:
        res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    except OSError as exc:
        raise EmbeddedError(f"{what} could not run ({exc.strerror}); re-run 'tsj db start'") from None
    if res.returncode:
        detail = (res.stderr or res.stdout).strip().splitlines()
        last = detail[-1] if detail else f"exit {res.returncode}"
        raise EmbeddedError(f"{what} failed: {last}; fix that and re-run 'tsj db start'")


def check_platform() -> None:
    """Linux on x86_64/aarch64 with Debian's apt tools and keyring, or one line saying so."""
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


def kill_hard(pid: int) -> None:
    """SIGKILL a server process (tests use it to simulate a crash)."""
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.05)
