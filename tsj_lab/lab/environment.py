"""A report's environment stamp, and the secrets kept out of its files.

:func:`environment` says what a run ran on (tsj_lab version, git commit, machine, load,
the target's versions and license); :func:`secrets_of` lists the passwords of every
configured URL (target, source, pooler) and :func:`scrub` removes them from an executed
notebook, the second line of defence behind refusing them as parameters
(:func:`tsj_lab.lab.reports.check_parameters`).
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import nbformat

from ..config import PROJECT_DIR, Settings, redact
from ..db import Endpoint, probe_url, shown
from ..db.connections import resolve_url
from ..domain import PRODUCTION
from ..errors import TsjError


def environment(target: str = "target", *, settings: Settings) -> dict[str, Any]:
    """tsj_lab version, git commit, machine, and the target's versions and license."""
    try:
        tsj_version = version("tsj-lab")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        tsj_version = None
    return {
        "tsj_lab": tsj_version,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        # benchmarks share the cores with whatever else runs: say how busy they were
        "load_average": list(os.getloadavg()),
        "database": _database(target, settings=settings),
    }


def _database(target: str, *, settings: Settings) -> dict[str, Any]:
    """The probe of connection ``target``; its error, redacted, when it cannot be reached."""
    try:
        url = resolve_url(target, settings=settings)
        caps = probe_url(url).as_dict()
        return {"connection": target, "url": _safe_url(url)} | caps | {
            "production": PRODUCTION.versus(caps["postgres_version"], caps["timescaledb_version"])}
    except (TsjError, ValueError) as exc:
        return {"connection": target, "error": redact(str(exc))}


def _safe_url(url: Endpoint | str) -> str:
    """``url`` without password and query (a passfile path is nobody's business)."""
    p = urlsplit(shown(url))
    return f"{p.scheme}://{p.netloc}{p.path}"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=PROJECT_DIR, capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def secrets_of(settings: Settings) -> list[str]:
    """The passwords in every configured URL a kernel gets (config.child_env): target,
    source, pooler and live (URL userinfo or a ``password=`` parameter), as written and
    percent-decoded (a kernel prints either)."""
    found: list[str] = []
    for url in (settings.target_url, settings.source_url, settings.pooler_url, settings.live_url):
        if not url:
            continue
        p = urlsplit(url)
        for secret in (p.password or "", *(v for k, v in parse_qsl(p.query) if k == "password")):
            found += [secret, unquote(secret)]
    # very short "passwords" would blank out ordinary text; redact() still catches URLs
    return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)


def scrub(nb: nbformat.NotebookNode, *, secrets: list[str]) -> None:
    """Remove passwords from every source, output and metadata string of ``nb`` (in place)."""
    nb.metadata = _scrub_tree(nb.metadata, secrets, text=True)
    for cell in nb.cells:
        cell.source = scrub_text(cell.source, secrets, text=True)
        for out in cell.get("outputs", []):
            for key in ("text", "evalue", "traceback"):
                if key in out:
                    out[key] = _scrub_tree(out[key], secrets, text=True)
            for mime, value in out.get("data", {}).items():
                # HTML and JS (plotly.js) only lose literal secrets: redact()'s
                # 'password=' pattern could match inside minified code
                out["data"][mime] = _scrub_tree(value, secrets, text=mime.startswith("text/plain"))


def _scrub_tree(value: Any, secrets: list[str], *, text: bool) -> Any:
    if isinstance(value, str):
        return scrub_text(value, secrets, text=text)
    if isinstance(value, list):
        return [_scrub_tree(v, secrets, text=text) for v in value]
    if isinstance(value, dict):
        return type(value)({k: _scrub_tree(v, secrets, text=text) for k, v in value.items()})
    return value


def scrub_text(value: str, secrets: list[str], *, text: bool = True) -> str:
    """``value`` without ``secrets``; ``text``: also every URL's or conninfo's password."""
    for secret in secrets:
        value = value.replace(secret, "***")
    return redact(value) if text else value
