"""PostgreSQL binary arrays straight into numpy: the decoding half of the column fetch path.

:func:`tsj_lab.db.frames.read_frame` asks the server for one row holding one array per
column (``array_agg`` over the query's ordered rows) in binary. A one-dimensional binary
array without NULLs is a 20-byte header and then, per element, a 4-byte length and the
value; for the fixed-width types below that is one numpy structured dtype, so a column of
345,600 values becomes a numpy array without a Python object per value. Arrays with NULLs,
and every other type (text, NUMERIC, interval), are left to psycopg's own loaders: lists
of Python values (NUMERIC as ``Decimal``, exact), which pandas takes as they are.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
from psycopg.adapt import Loader
from psycopg.pq import Format

#: PostgreSQL's epoch for timestamps: binary timestamp(tz) counts microseconds from it
PG_EPOCH = np.datetime64("2000-01-01T00:00:00", "us")
_HEADER = 20  # ndim, has-null flag, element oid, then one (size, lower bound) dimension


class _ArrayLoader(Loader):
    """A binary array of one fixed-width type as a numpy array (psycopg's list with NULLs)."""

    format = Format.BINARY
    wire: str = ""  # big-endian numpy type of one element
    native: str = ""

    def __init__(self, oid: int, context: Any = None):
        super().__init__(oid, context)
        # psycopg's own loader for this array type, for arrays holding NULLs
        fallback = psycopg.adapters.get_loader(oid, Format.BINARY)
        assert fallback is not None  # psycopg loads every built-in array type
        self._fallback = fallback(oid, context)

    def load(self, data: Any) -> Any:
        values = elements(data, self.wire)
        if values is None:
            return np.asarray(self._fallback.load(data), dtype=object)
        return self.convert(values)

    def convert(self, values: np.ndarray) -> np.ndarray:
        return values.astype(self.native)


def elements(data: Any, wire: str) -> np.ndarray | None:
    """The elements of a one-dimensional binary array of ``wire``-typed values; None when
    the array holds NULLs (or has more dimensions), which need psycopg's loader."""
    buf = memoryview(data)
    ndim, has_null, _ = np.frombuffer(buf, ">i4", 3)
    if ndim == 0:
        return np.empty(0, wire)
    if ndim != 1 or has_null:
        return None
    n = int(np.frombuffer(buf, ">i4", 1, 12)[0])
    return np.frombuffer(buf, [("len", ">i4"), ("value", wire)], n, _HEADER)["value"]


class Float8Array(_ArrayLoader):
    wire, native = ">f8", "f8"


class Float4Array(_ArrayLoader):
    wire, native = ">f4", "f4"


class Int8Array(_ArrayLoader):
    wire, native = ">i8", "i8"


class Int4Array(_ArrayLoader):
    wire, native = ">i4", "i4"


class Int2Array(_ArrayLoader):
    wire, native = ">i2", "i2"


class TimestampArray(_ArrayLoader):
    """timestamp and timestamptz: microseconds since 2000-01-01 (UTC for timestamptz)."""

    wire, native = ">i8", "i8"

    def convert(self, values: np.ndarray) -> np.ndarray:
        return values.astype("i8").view("m8[us]") + PG_EPOCH


#: array type oid -> loader (float8[], float4[], int8[], int4[], int2[], timestamp[], timestamptz[])
LOADERS: dict[int, type[_ArrayLoader]] = {
    1022: Float8Array, 1021: Float4Array, 1016: Int8Array, 1007: Int4Array, 1005: Int2Array,
    1115: TimestampArray, 1185: TimestampArray,
}
#: element type oids whose column is a timezone-aware (UTC) time in the frame
TIMESTAMPTZ = 1184


def register(conn: psycopg.Connection[Any]) -> None:
    """Load the fixed-width arrays above as numpy arrays on ``conn`` (binary results)."""
    for oid, loader in LOADERS.items():
        conn.adapters.register_loader(oid, loader)


#: element type oid -> numpy dtype of an empty column (a query that found no rows)
_EMPTY = {701: "f8", 700: "f4", 20: "i8", 23: "i4", 21: "i2", 1114: "M8[us]", 1184: "M8[us]"}


def empty(oid: int) -> np.ndarray:
    """An empty column for element type ``oid`` (object for types numpy does not hold)."""
    return np.empty(0, _EMPTY.get(oid, object))
