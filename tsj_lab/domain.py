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


def utc_time(value: str | date | datetime | None, what: str) -> datetime | None:
    """``value`` as an aware UTC datetime (None or '' stay None): ISO text, a date (its UTC
    midnight) or a datetime; a time without an offset is UTC. The one parser of the times
    users type (a migration's --since/--until, the explorer's range)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{what} {value!r} is not a date or time; use YYYY-MM-DD[THH:MM[:SS]]"
                             "[Z|+HH:MM] (UTC when no offset is given)") from None
    elif not isinstance(value, datetime):
        value = datetime.combine(value, datetime.min.time())
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_range(start: str | date | datetime | None, end: str | date | datetime | None, *,
              names: tuple[str, str] = ("start", "end")
              ) -> tuple[datetime | None, datetime | None]:
    """[start, end) in UTC (:func:`utc_time`; either end may be open: None); an empty or
    reversed range is a ValueError that says so."""
    lo, hi = utc_time(start, names[0]), utc_time(end, names[1])
    if lo is not None and hi is not None and hi <= lo:
        raise ValueError(f"{names[1]} {hi.isoformat()} is not after {names[0]} "
                         f"{lo.isoformat()}; swap them or widen the range")
    return lo, hi


def interval_text(value: timedelta | None) -> str:
    """An interval as a person (and PostgreSQL) writes it: '30 days', '1 hour', '90 minutes';
    'none' for no interval. The one formatter of the package."""
    if value is None:
        return "none"
    secs = int(value.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if secs and secs % size == 0:
            n = secs // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return str(value)


@dataclass(frozen=True)
class CandleView:
    """One candle width and the view (continuous aggregate or materialized view) serving it."""

    name: str  # '1m': what users type (tsj refresh, the explorer, bench parameters)
    view: str  # 'candle_1m'
    width: timedelta

    @property
    def interval(self) -> str:
        """The width as PostgreSQL interval text ('1 minute', '15 minutes', '1 hour')."""
        return interval_text(self.width)

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
    and AC5 rows are built from the same findings (:mod:`tsj_lab.provision.layout` judges them once).
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


#: the synthetic data's symbols, seed and spacing when none are named
DEFAULT_SYMBOLS = ("ES", "NQ", "EURUSD", "BTCUSD")
DEFAULT_SEED = 16
DEFAULT_INTERVAL_MS = 250  # 345,600 ticks per symbol and day
DAY_MS = 86_400_000


@dataclass(frozen=True)
class TickSpec:
    """A synthetic data set: which symbols, which UTC days, how dense, from which seed.

    The one description every generating call takes (loader, bench, checks, explorer,
    ingest benchmark); made from text too (``"ES,NQ"``, ``"2024-01-02"``), and checked
    once, here."""

    symbols: tuple[str, ...]
    start: date
    days: int = 1
    interval_ms: int = DEFAULT_INTERVAL_MS
    seed: int = DEFAULT_SEED
    sessions: bool = False  # session breaks (the checks' gap rules need them)

    def __post_init__(self) -> None:
        raw: Any = self.symbols
        symbols = tuple(s.strip() for s in (raw.split(",") if isinstance(raw, str) else raw))
        if not symbols or any(not s or len(s) > 32 for s in symbols):
            raise ValueError(f"symbols {list(symbols)!r} must be 1-32 characters each, e.g. ES,NQ")
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"symbols {list(symbols)!r} repeat; name each symbol once")
        start: Any = self.start
        if isinstance(start, str):
            try:
                start = date.fromisoformat(start)
            except ValueError:
                raise ValueError(f"start {start!r} is not a date; use YYYY-MM-DD") from None
        if isinstance(start, datetime):
            start = start.date()
        if not 1 <= self.days <= 3660:
            raise ValueError(f"days={self.days} is out of range; use 1-3660")
        if start > date(9998, 1, 1) - timedelta(days=self.days):
            raise ValueError(f"start {start} plus {self.days} days passes the year 9997; "
                             "use an earlier start")
        if not 1 <= self.interval_ms <= DAY_MS:
            raise ValueError(f"interval_ms={self.interval_ms} is out of range; use 1-{DAY_MS}")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"seed={self.seed} must be a non-negative integer below 2**63")
        object.__setattr__(self, "symbols", symbols)
        object.__setattr__(self, "start", start)

    @classmethod
    def ending_yesterday(cls, symbols: Sequence[str] | str, *, days: int = 1,
                         interval_ms: int = DEFAULT_INTERVAL_MS, seed: int = DEFAULT_SEED,
                         sessions: bool = False) -> TickSpec:
        """``days`` ending yesterday (UTC): nothing past a retention policy, nothing ahead."""
        start = datetime.now(UTC).date() - timedelta(days=days)
        names = symbols.split(",") if isinstance(symbols, str) else symbols
        return cls(tuple(names), start, days, interval_ms, seed, sessions)

    @property
    def ticks_per_day(self) -> int:
        """Ticks of one symbol in one UTC day (without session breaks)."""
        return -(-DAY_MS // self.interval_ms)


#: tick_data's columns, in the story's DDL order (the COPY and the quarantine use them)
TICK_COLUMNS = ("time", "symbol", "bid_price", "ask_price", "last_price", "volume", "source",
                "trade_id", "account_id")

#: the target table where the migration sets aside the rows the target refuses (reason kept)
QUARANTINE = "tsj_migration_quarantine"


@dataclass(frozen=True)
class Production:
    """The story's production database, which the embedded server runs by default and every
    report compares its target with."""

    name: str
    postgres: str  # '18.1'
    timescaledb: str  # '2.24.0'

    @property
    def pg_major(self) -> int:
        return int(self.postgres.split(".", 1)[0])

    def differences(self, postgres: str | None, timescaledb: str | None) -> list[str]:
        """How a server of these versions differs from production, one phrase per version
        that differs ('PostgreSQL 17.12, production 18.1'); empty when both match."""
        said = []
        if postgres and postgres.split()[0] != self.postgres:
            said.append(f"PostgreSQL {postgres.split()[0]}, production {self.postgres}")
        if timescaledb != self.timescaledb:
            said.append(f"TimescaleDB {timescaledb or 'absent'}, production {self.timescaledb}")
        return said

    def versus(self, postgres: str | None, timescaledb: str | None) -> str:
        """One line: the same versions as production, or what differs."""
        diff = self.differences(postgres, timescaledb)
        if not diff:
            return f"as production ({self})"
        return f"differs from production ({self}): {'; '.join(diff)}"

    def __str__(self) -> str:
        return f"{self.name}, PostgreSQL {self.postgres}, TimescaleDB {self.timescaledb}"


#: Tiger Cloud 'trading-journal-live' (the story's "Environment Configuration")
PRODUCTION = Production("Tiger Cloud trading-journal-live", "18.1", "2.24.0")
