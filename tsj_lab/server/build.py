"""TimescaleDB built from its complete source against the embedded PostgreSQL's headers.

The source holds both halves: the Apache ``src/`` and the Timescale License ``tsl/``
(compression, continuous aggregates, policy jobs), as Timescale Cloud runs it; Debian's
packages have ``tsl/`` removed. The archive of a version is the vendored one
(``../shared/vendor/timescaledb-<version>.tar.gz`` beside this checkout or the checkout it
was cloned from), else GitHub's archive of that release tag, else the one
TSJ_TIMESCALEDB_SOURCE names. Each version installs into its own server tree, once.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tarfile
import time
import urllib.request
import zlib
from pathlib import Path

from ..config import PROJECT_DIR
from ..errors import EmbeddedError

log = logging.getLogger("tsj_lab.server")

#: where releases come from when no vendored archive is at hand
TAG_URL = "https://github.com/timescale/timescaledb/archive/refs/tags/{version}.tar.gz"
VENDOR_DIR = Path("shared", "vendor")
BUILD_TOOLS = ("cmake", "make", "cc")
#: TimescaleDB's own switches for a plain extension build: no tests, no lint, no git, no
#: telemetry (which is also what OpenSSL would be for)
CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release", "-DREGRESS_CHECKS=OFF", "-DTAP_CHECKS=OFF",
    "-DWARNINGS_AS_ERRORS=OFF", "-DLINTER=OFF", "-DUSE_TELEMETRY=OFF", "-DUSE_OPENSSL=OFF",
    "-DGENERATE_DOWNGRADE_SCRIPT=OFF", "-DCMAKE_DISABLE_FIND_PACKAGE_Git=TRUE",
)
APACHE_FIX = "run Debian's apache build instead with TSJ_EDITION=apache (no AC3-AC5)"


def vendor_dirs() -> list[Path]:
    """The vendor folders beside this checkout and beside the checkout it was cloned from.

    A clone made elsewhere (``git clone ~/work/tsj-lab /tmp/x``) has no ../shared; its
    origin, a local path, does.
    """
    found = [PROJECT_DIR.parent / VENDOR_DIR]
    try:
        origin = subprocess.run(["git", "-C", str(PROJECT_DIR), "config", "--get",
                                 "remote.origin.url"], capture_output=True, text=True,
                                timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        origin = ""
    if origin and "://" not in origin and ":" not in origin.split("/", 1)[0]:
        found.append(Path(origin).expanduser().resolve().parent / VENDOR_DIR)
    return [d for d in found if d.is_dir()]


def vendored_versions() -> list[str]:
    """The TimescaleDB versions whose source is vendored, oldest first."""
    names = {_archive_version(p) for d in vendor_dirs() for p in d.glob("timescaledb-*.tar.gz")}
    return sorted(names, key=_version_key)


def vendored_source(version: str) -> Path | None:
    """The vendored archive of ``version`` (``timescaledb-2.24.0.tar.gz``, or a snapshot's
    ``timescaledb-2.30.0-dev-<commit>.tar.gz``); None when there is none."""
    for folder in vendor_dirs():
        for path in sorted(folder.glob("timescaledb-*.tar.gz")):
            if _archive_version(path) == version:
                return path
    return None


def source_archive(*, version: str, source: str | None, downloads: Path) -> Path:
    """The archive to build: ``source`` (path or URL), else the vendored one of
    ``version``, else GitHub's of that tag (downloaded once into ``downloads``)."""
    vendored = vendored_source(version) if source is None else None
    where = source or (str(vendored) if vendored else TAG_URL.format(version=version))
    if "://" in where:
        return _fetch_archive(where, downloads, version=version)
    path = Path(where).expanduser()
    if not path.is_file():
        raise EmbeddedError(
            f"TimescaleDB source archive {path} not found; set TSJ_TIMESCALEDB_SOURCE to "
            f"a path or URL of TimescaleDB's source .tar.gz, or {APACHE_FIX}")
    return path


def check_tools() -> None:
    missing = [t for t in BUILD_TOOLS if not shutil.which(t)]
    if missing:
        raise EmbeddedError(
            f"building TimescaleDB needs {', '.join(missing)}, not found; install them "
            f"(Debian: 'apt-get install cmake gcc make'), or {APACHE_FIX}")


def build(archive: Path, *, version: str, root: Path, bindir: Path, libdir: Path,
          work: Path) -> None:
    """Build TimescaleDB ``version`` (both halves) from ``archive`` against the PostgreSQL
    of the tree at ``root`` (its ``bindir/pg_config``), and install it into that tree.

    ``work`` is this tree's own build folder (two versions may build at once)."""
    shutil.rmtree(work / "out", ignore_errors=True)  # an interrupted build's cache
    src = unpack_source(archive, work / "src")
    found = source_version(src)
    if found != version:
        raise EmbeddedError(
            f"{archive} is TimescaleDB {found}, not {version}; set "
            f"TSJ_TIMESCALEDB_VERSION={found} to build it, or point TSJ_TIMESCALEDB_SOURCE "
            f"at {version}'s source")
    build_log = work / "timescaledb-build.log"
    log.info("building TimescaleDB %s with the Timescale License half from %s "
             "(1-3 minutes on 2 cores, once; log: %s)", version, archive, build_log)
    t0 = time.perf_counter()
    # the tree's own headers (OpenSSL's, which PostgreSQL's include) after the system's
    include = root / "usr" / "include"
    flags = " ".join(f"-idirafter {d}" for d in [include, *sorted(include.glob("*-linux-gnu"))])
    steps = [
        ("configure", ["cmake", "-S", str(src), "-B", str(work / "out"),
                       f"-DPG_CONFIG={bindir / 'pg_config'}", f"-DCMAKE_C_FLAGS={flags}",
                       *CMAKE_OPTIONS]),
        ("compile", ["make", "-C", str(work / "out"), "-j", str(os.cpu_count() or 2)]),
        ("install", ["make", "-C", str(work / "out"), "install"]),
    ]
    with open(build_log, "w") as out:
        for what, cmd in steps:
            out.write(f"$ {' '.join(cmd)}\n")
            out.flush()
            if subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode:
                raise EmbeddedError(
                    f"building TimescaleDB {version} failed ({what}): "
                    f"{first_error(build_log)}; see {build_log}; fix that and re-run "
                    f"'tsj db setup', or {APACHE_FIX}")
    if not (libdir / f"timescaledb-tsl-{version}.so").is_file():
        raise EmbeddedError(
            f"the TimescaleDB build installed no timescaledb-tsl-{version}.so (the "
            f"Timescale License half) into {libdir}; see {build_log}")
    shutil.rmtree(work / "src", ignore_errors=True)
    shutil.rmtree(work / "out", ignore_errors=True)
    log.info("built and installed TimescaleDB %s in %.0f s", version, time.perf_counter() - t0)


def _fetch_archive(url: str, folder: Path, *, version: str) -> Path:
    """``url`` downloaded once into ``folder`` (a cut-short download is fetched again)."""
    name = Path(url.split("?", 1)[0]).name
    dest = folder / (name if name.startswith("timescaledb") else f"timescaledb-{name}")
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
            f"cannot download TimescaleDB {version}'s source from {url} ({exc}); set "
            f"TSJ_TIMESCALEDB_SOURCE to a local copy of the archive, or {APACHE_FIX}") from None
    partial.rename(dest)
    return dest


def unpack_source(archive: Path, dest: Path) -> Path:
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
                    f"the full source archive, or {APACHE_FIX}")
            tf.extractall(dest, filter="data")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        if archive.parent.name == "src" and archive.parent.parent == dest.parent.parent.parent:
            archive.unlink(missing_ok=True)  # our own download: fetch it again next time
        raise EmbeddedError(
            f"TimescaleDB source archive {archive} is unreadable ({exc}); fetch it again or "
            f"point TSJ_TIMESCALEDB_SOURCE at a good copy, or {APACHE_FIX}") from None
    return dest / top


def source_version(src: Path) -> str:
    text = (src / "version.config").read_text()
    m = re.search(r"^version\s*=\s*(\S+)", text, re.MULTILINE)
    if not m:
        raise EmbeddedError(f"{src / 'version.config'} names no version; is this TimescaleDB?")
    return m.group(1)


def first_error(build_log: Path) -> str:
    """The build log's first error line (a compiler's or CMake's), else its last line."""
    lines = build_log.read_text(errors="replace").splitlines()
    for line in lines:
        if re.search(r"\berror\b|CMake Error", line, re.IGNORECASE) and "Werror" not in line:
            return line.strip()[:300]
    return lines[-1].strip()[:300] if lines else "no output"


def _archive_version(path: Path) -> str:
    """'2.24.0' of timescaledb-2.24.0.tar.gz; '2.30.0-dev' of timescaledb-2.30.0-dev-4bf70ffa9b3b.tar.gz."""
    stem = path.name.removeprefix("timescaledb-").removesuffix(".tar.gz")
    m = re.match(r"\d+\.\d+\.\d+(-(?:dev|rc\d*|beta\d*))?", stem)
    return m.group(0) if m else stem


def _version_key(version: str) -> tuple[int, ...]:
    nums = [int(n) for n in re.findall(r"\d+", version.split("-", 1)[0])]
    return (*nums, 0 if "-" in version else 1)  # 2.30.0-dev before 2.30.0
