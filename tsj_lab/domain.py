"""The domain's vocabulary: what a tick is, which candle views exist, what a status means.

Every other module takes these facts from here, so that adding a candle width or a
status is one change. Derived tables (a module's ``{name: (interval, view)}``) are
built from :data:`CANDLES`, never written out again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class CandleView:
    """One candle width and the view (continuous aggregate or materialized view) serving it."""

    name: str  # '1m': what users type (tsj refresh, the explorer, bench parameters)
    view: str  # 'candle_1m'
    width: timedelta

    @property
    def interval(self) -> str:
        """The width as PostgreSQL interval text ('1 minute', '15 minutes', '1 hour')."""
        seconds = int(self.width.total_seconds())
        for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
            if seconds % size == 0:
                count = seconds // size
                return f"{count} {unit}{'s' if count != 1 else ''}"
        return f"{seconds} seconds"

    @property
    def seconds(self) -> int:
        return int(self.width.total_seconds())


#: in dependency order: the 5m/15m/1h candles must roll up from candle_1m
CANDLES = (
    CandleView("1m", "candle_1m", timedelta(minutes=1)),
    CandleView("5m", "candle_5m", timedelta(minutes=5)),
    CandleView("15m", "candle_15m", timedelta(minutes=15)),
    CandleView("1h", "candle_1h", timedelta(hours=1)),
)
CANDLE_VIEWS = tuple(c.view for c in CANDLES)
#: view name ('candle_5m') or width name ('5m') -> the candle view
CANDLE_BY_VIEW = {c.view: c for c in CANDLES}
CANDLE_BY_NAME = {c.name: c for c in CANDLES}

#: the outcome of a check, a validation row or a policy proof
OK, WARN, FAIL, UNSUPPORTED = "ok", "warn", "fail", "unsupported"
STATUSES = (OK, WARN, FAIL, UNSUPPORTED)


@dataclass
class Finding:
    """One judged fact: which check, where (table, symbol, UTC day), its status, what was
    observed against what was expected, the rows affected and a few sample rows.

    The integrity checks report a list of these (``tsj check``); provisioning's AC2, AC3
    and AC5 rows are built from the same findings (:mod:`tsj_lab.layout` judges them once).
    """

    check: str  # 'chunk_interval', 'compression', 'gaps', ...
    status: str  # one of STATUSES
    table: str = "tick_data"
    symbol: str | None = None
    day: date | None = None
    observed: str = ""
    expected: str = ""
    rows_affected: int = 0
    samples: list[list[Any]] = field(default_factory=list)
    detail: str = ""  # the evidence, or the cause and the fix

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: the synthetic data's symbols and seed when none are named (tsj generate, the explorer)
DEFAULT_SYMBOLS = ("ES", "NQ", "EURUSD", "BTCUSD")
DEFAULT_SEED = 16


@dataclass(frozen=True)
class TickSpec:
    """A synthetic data set: which symbols, which UTC days, how dense, from which seed."""

    symbols: tuple[str, ...]
    start: date
    days: int = 1
    interval_ms: int = 250
    seed: int = DEFAULT_SEED
    sessions: bool = False  # session breaks (the checks' gap rules need them)

    @classmethod
    def ending_yesterday(cls, symbols: Sequence[str], *, days: int = 1,
                         **kwargs: int | bool) -> TickSpec:
        """``days`` ending yesterday (UTC): nothing past a retention policy, nothing ahead."""
        start = datetime.now(UTC).date() - timedelta(days=days)
        return cls(tuple(symbols), start, days, **kwargs)  # type: ignore[arg-type]


#: tick_data's columns, in the story's DDL order (the COPY and the quarantine use them)
TICK_COLUMNS = ("time", "symbol", "bid_price", "ask_price", "last_price", "volume", "source",
                "trade_id", "account_id")
