"""The one small error hierarchy. Messages name the object and the value, and say the fix."""

from __future__ import annotations


class TsjError(Exception):
    """Base of every error tsj reports to its user as one line."""


class ConfigError(TsjError):
    """A setting is missing or malformed."""


class EmbeddedError(TsjError):
    """The embedded TimescaleDB server could not be set up, started or stopped."""


class ConnectError(TsjError):
    """A database could not be reached or refused us."""


class SchemaError(TsjError):
    """The database does not have the shape a phase needs."""


class MigrationError(TsjError):
    """The migration could not copy or verify the ticks."""


class LimitError(TsjError):
    """A database limit (statement_timeout, idle or lock timeout) stopped a statement."""


class PreflightError(SchemaError):
    """The preflight found a blocker: the migration would fail or be wrong."""


class QueryError(TsjError):
    """An analyst's ad-hoc query failed on the server."""


class CheckFailed(TsjError):
    """An integrity or validation check failed."""


class ReportError(TsjError):
    """A notebook run failed; its report was still written."""


class LoadError(TsjError):
    """A bulk load was refused or did not verify; the unit it names was not written."""
