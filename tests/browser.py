"""Headless Chromium for the report tests: the DOM of an HTML file after its scripts ran.

The flags keep Chromium from reaching the network (this machine has none, and a report
must not need it) and from touching any profile but a fresh one.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed; run 'make browser' (apt-get install chromium)")
    return exe


def rendered_dom(html: Path, *, budget_ms: int = 15000) -> str:
    """The DOM of ``html`` once its scripts ran (virtual time, so no wall-clock sleep)."""
    with tempfile.TemporaryDirectory(prefix="tsj-chromium-") as profile:
        out = subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}",
             f"--virtual-time-budget={budget_ms}", "--dump-dom", html.resolve().as_uri()],
            capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, f"chromium failed: {out.stderr[-2000:]}"
    return out.stdout
