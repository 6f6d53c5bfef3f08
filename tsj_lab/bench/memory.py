"""Peak memory of every process a benchmark run uses, sampled from /proc while it runs.

``tsj bench`` starts a :class:`Watch` before it generates anything: a daemon thread that
every ``interval_s`` walks the process table and keeps, per process, its peak resident
set (``VmHWM``, the kernel's own high-water mark, so a peak between two samples is not
lost while the process lives) and its peak private memory (``RssAnon``). Processes are
grouped into the roles the report names:

* ``tsj``: the command's own process (generation, the report's runner);
* ``kernel``: the notebook kernels it starts, ``kernel child`` what those start (psql);
* ``pgbouncer``: the pooler in front of the target;
* ``server backend``: the database server's client backends, ``server <type>`` its other
  processes (checkpointer, TimescaleDB workers, ...), found as children of the postmaster.

A server backend's resident set counts the shared buffers it touched, which every
backend shares; ``private`` (``RssAnon``) is its own memory. The watch writes its figures
to a JSON file after every sample, which the benchmark notebook reads at its end
(:func:`record`), so the report holds the run's peaks up to that point.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg

from .. import queries
from ..db import Endpoint, connection, scalar
from ..errors import TsjError
from ..lab import recording

log = logging.getLogger("tsj_lab")

PROC = Path("/proc")
_KIB = 1024.0


@dataclass
class Peak:
    """One process's peaks (MiB) and what it was."""

    pid: int
    role: str
    rss_mib: float = 0.0
    private_mib: float = 0.0


@dataclass
class Snapshot:
    """What the watch has seen so far."""

    started: float  # time.time() of the watch's start
    seconds: float
    samples: int
    peaks: dict[int, Peak] = field(default_factory=dict)
    #: (time.time(), resident MiB) of the notebook kernels at each sample: where a peak was
    kernel_rss: list[tuple[float, float]] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """One row per role: processes seen, the largest peak RSS and private memory of
        one of them, and their peak private memory summed over the run's processes."""
        cols = ["process", "processes", "peak_rss_mib", "peak_private_mib", "sum_private_mib"]
        rows = []
        for role, grp in pd.DataFrame([p.__dict__ for p in self.peaks.values()],
                                      columns=["pid", "role", "rss_mib", "private_mib"]
                                      ).groupby("role", sort=True):
            rows.append({"process": role, "processes": len(grp),
                         "peak_rss_mib": grp["rss_mib"].max(),
                         "peak_private_mib": grp["private_mib"].max(),
                         "sum_private_mib": grp["private_mib"].sum()})
        return pd.DataFrame(rows, columns=cols)

    def as_dict(self) -> dict[str, Any]:
        return {"started": self.started, "seconds": self.seconds, "samples": self.samples,
                "peaks": [p.__dict__ for p in self.peaks.values()],
                "kernel_rss": self.kernel_rss}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Snapshot:
        peaks = {int(p["pid"]): Peak(**p) for p in d.get("peaks", [])}
        return cls(float(d["started"]), float(d["seconds"]), int(d["samples"]), peaks,
                   [(float(t), float(m)) for t, m in d.get("kernel_rss", [])])

    def by_cell(self, notebook: Path) -> pd.DataFrame:
        """The kernel's largest resident set while each code cell of the executed
        ``notebook`` ran (papermill's start and end times), largest first."""
        if not Path(notebook).is_file():
            return pd.DataFrame(columns=["cell", "rss_mib", "seconds"])
        nb = json.loads(Path(notebook).read_text())
        rows = []
        for cell in nb.get("cells", []):
            times = cell.get("metadata", {}).get("papermill", {})
            if cell.get("cell_type") != "code" or not times.get("start_time"):
                continue
            lo = dt.datetime.fromisoformat(times["start_time"]).timestamp()
            hi = (dt.datetime.fromisoformat(times["end_time"]).timestamp()
                  if times.get("end_time") else float("inf"))
            seen = [m for t, m in self.kernel_rss if lo <= t <= hi + self._interval()]
            if seen:
                source = "".join(cell.get("source", "")).strip().splitlines()
                rows.append({"cell": source[0][:70] if source else "", "rss_mib": max(seen),
                             "seconds": (hi - lo) if hi != float("inf") else None})
        return pd.DataFrame(rows, columns=["cell", "rss_mib", "seconds"]).sort_values(
            "rss_mib", ascending=False, ignore_index=True)


    def _interval(self) -> float:
        """The mean time between samples (a sample may land just after a cell ends)."""
        return self.seconds / self.samples if self.samples else 0.0


class Watch:
    """Samples the roles' processes every ``interval_s`` in a daemon thread.

    ``postmaster`` is the database server's main process (None: not on this machine); a
    PgBouncer whose configuration lies in that server's folder (the parent of its data
    directory, where tsj keeps its poolers) counts as the run's pooler.
    """

    def __init__(self, *, out: Path | None = None, postmaster: int | None = None,
                 interval_s: float = 0.5) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s={interval_s} must be positive")
        self.out = out
        self.postmaster = postmaster
        self.pooler_home = _server_folder(postmaster) if postmaster else None
        self.interval_s = interval_s
        self._me = os.getpid()
        self._snap = Snapshot(time.time(), 0.0, 0)
        self._t0 = time.perf_counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Watch:
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="tsj-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.sample()

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(self._snap.started, self._snap.seconds, self._snap.samples,
                            {k: Peak(**v.__dict__) for k, v in self._snap.peaks.items()},
                            list(self._snap.kernel_rss))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sample()
            except Exception as exc:  # a sampler must never take the run down
                log.warning("memory watch: %s", exc)

    def sample(self) -> None:
        """One pass over the process table."""
        table = _processes()
        seen = dict(self._roles(table))
        now, kernels = time.time(), 0.0
        with self._lock:
            for pid, role in seen.items():
                rss, private, current = _memory(pid)
                if rss is None:
                    continue  # gone since the table was read
                if role == "kernel":
                    kernels += current or 0.0
                peak = self._snap.peaks.setdefault(pid, Peak(pid, role))
                peak.rss_mib = max(peak.rss_mib, rss)
                peak.private_mib = max(peak.private_mib, private or 0.0)
            if kernels:
                self._snap.kernel_rss.append((now, kernels))
            self._snap.samples += 1
            self._snap.seconds = time.perf_counter() - self._t0
            data = self._snap.as_dict()
        if self.out is not None:
            tmp = self.out.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            tmp.replace(self.out)

    def _roles(self, table: Mapping[int, tuple[int, str]]) -> Iterator[tuple[int, str]]:
        yield self._me, "tsj"
        for pid in _descendants(table, self._me):
            cmd = table[pid][1]
            if "pgbouncer" in cmd:
                continue  # a pooler the run started: counted below
            yield pid, "kernel" if "ipykernel" in cmd else "kernel child"
        if self.postmaster is not None and self.postmaster in table:
            yield self.postmaster, "server postmaster"
            for pid in _descendants(table, self.postmaster):
                yield pid, server_role(table[pid][1])
        if self.pooler_home:
            for pid, (_, cmd) in table.items():
                if "pgbouncer" in cmd.split(" ", 1)[0] and self.pooler_home in cmd:
                    yield pid, "pgbouncer"


_BACKEND = re.compile(r"^postgres: (?:\S+ ){2}\S+\(\d+\)|^postgres: (?:\S+ ){2}\[local\]")


#: the titles of the server's own processes (PostgreSQL 17-18), by their first words
_TITLES = ("checkpointer", "background writer", "walwriter", "autovacuum launcher",
           "autovacuum worker", "logical replication launcher", "parallel worker", "io worker",
           "walsender", "archiver", "startup")


def server_role(cmdline: str) -> str:
    """A server process's role from the title PostgreSQL gives it."""
    if _BACKEND.match(cmdline):
        return "server backend"
    if not cmdline.startswith("postgres:"):
        return "server backend"  # just forked: it still has the postmaster's command line
    title = cmdline.removeprefix("postgres:").strip()
    if title.startswith("TimescaleDB"):
        return "server TimescaleDB worker"
    known = next((t for t in _TITLES if title.startswith(t)), None)
    return "server " + (known or title.split(" ")[0] or "process")


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process now."""
    out = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        # the command in stat is in parentheses and may hold spaces: the ppid follows ')'
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        out[int(entry.name)] = (ppid, cmd.strip())
    return out


def _descendants(table: Mapping[int, tuple[int, str]], root: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = [], list(kids.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def _memory(pid: int) -> tuple[float | None, float | None, float | None]:
    """(peak RSS, RssAnon, RSS now) in MiB from /proc/PID/status; None when it is gone."""
    try:
        status = (PROC / str(pid) / "status").read_text()
    except OSError:
        return None, None, None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)

    def mib(name: str) -> float | None:
        value = fields.get(name)
        return float(value.split()[0]) / _KIB if value else None

    return mib("VmHWM"), mib("RssAnon"), mib("VmRSS")


def postmaster_of(backend_pid: int) -> int | None:
    """The postmaster of a server backend running on this machine (None: not local)."""
    try:
        stat = (PROC / str(backend_pid) / "stat").read_text()
        cmd = (PROC / str(backend_pid) / "cmdline").read_bytes()
    except OSError:
        return None
    if not cmd.startswith(b"postgres"):
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def watch_for(target: Endpoint | str, *, out: Path | None = None,
              interval_s: float = 0.5) -> Watch:
    """A :class:`Watch` of this process and, when the target's server runs on this
    machine, of that server and its PgBouncer (a target it cannot reach now is left out:
    the run's own first step says why)."""
    try:
        with connection(target, autocommit=True) as conn:  # the backend lives while it is open
            backend = int(scalar(conn, queries.text("schema_catalog.backend_pid")))
            postmaster = postmaster_of(backend)
    except (TsjError, psycopg.Error) as exc:
        log.info("memory watch: the target's server is not watched (%s)", exc)
        postmaster = None
    return Watch(out=out, postmaster=postmaster, interval_s=interval_s)


def _server_folder(postmaster: int) -> str | None:
    """The folder above the data directory the postmaster runs with (its ``-D``)."""
    try:
        args = (PROC / str(postmaster) / "cmdline").read_bytes().decode().split("\0")
    except OSError:
        return None
    data = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "-D"), None)
    return str(Path(data).parent) + "/" if data else None


def load(path: str | Path) -> Snapshot | None:
    """The watch's figures written to ``path`` (None: no watch ran, e.g. under nbval)."""
    if not path or not Path(path).is_file():
        return None
    return Snapshot.from_dict(json.loads(Path(path).read_text()))


def record(snapshot: Snapshot, *, label: str) -> pd.DataFrame:
    """Each role's peaks as report metrics and the run's time so far (the goal of < 1 GB per
    process is judged with the others: :func:`tsj_lab.bench.verdicts.speed`)."""
    table = snapshot.table()
    for rec in table.to_dict("records"):
        params = {"process": rec["process"], "processes": rec["processes"], "run": label}
        recording.record_metric("peak RSS", rec["peak_rss_mib"], unit="MiB",
                                n=snapshot.samples, **params)
        recording.record_metric("peak private memory", rec["peak_private_mib"], unit="MiB",
                                n=snapshot.samples, **params)
    recording.record_metric("run seconds", snapshot.seconds, unit="s", n=1, run=label)
    return table
