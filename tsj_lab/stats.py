"""Latency statistics: percentiles as numpy computes them, and a distribution's summary.

Pure functions over lists of milliseconds, shared by the benchmark harness
(:mod:`tsj_lab.bench`) and the concurrency measurement (:mod:`tsj_lab.db.clients`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Stats:
    """A latency distribution in milliseconds."""

    n: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no samples; take at least one")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q={q} is outside 0-100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    lo = math.floor(rank)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def summarize(samples_ms: Sequence[float]) -> Stats:
    return Stats(len(samples_ms), percentile(samples_ms, 50), percentile(samples_ms, 95),
                 percentile(samples_ms, 99), max(samples_ms), sum(samples_ms) / len(samples_ms))
