"""The vocabulary's own behaviour: times users type, intervals as people write them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from tsj_lab.domain import interval_text, utc_range, utc_time


def test_times_become_aware_utc() -> None:
    assert utc_time("2024-01-02", "start") == datetime(2024, 1, 2, tzinfo=UTC)
    assert utc_time(date(2024, 1, 2), "start") == datetime(2024, 1, 2, tzinfo=UTC)
    assert utc_time("2024-01-02T09:30Z", "start") == datetime(2024, 1, 2, 9, 30, tzinfo=UTC)
    # an offset is converted, not dropped: 09:30 in New York (winter) is 14:30 UTC
    got = utc_time("2024-01-02T09:30-05:00", "start")
    assert got == datetime(2024, 1, 2, 14, 30, tzinfo=UTC) and got.tzinfo == UTC
    ny = timezone(timedelta(hours=-5))
    assert utc_time(datetime(2024, 1, 2, 9, 30, tzinfo=ny), "start") == got
    assert utc_time(None, "start") is None and utc_time("", "start") is None


def test_bad_times_and_ranges_say_what_to_type() -> None:
    with pytest.raises(ValueError, match=r"since 'soon' is not a date or time; use YYYY-MM-DD"):
        utc_time("soon", "since")
    with pytest.raises(ValueError, match="until 2024-01-01T00:00:00\\+00:00 is not after since"):
        utc_range("2024-01-02", "2024-01-01", names=("since", "until"))
    with pytest.raises(ValueError, match="is not after start"):
        utc_range("2024-01-02", "2024-01-02")
    assert utc_range(None, "2024-01-02") == (None, datetime(2024, 1, 2, tzinfo=UTC))


def test_intervals_read_as_people_write_them() -> None:
    assert [interval_text(timedelta(**kw)) for kw in (
        {"days": 30}, {"hours": 1}, {"minutes": 90}, {"seconds": 1})] == [
        "30 days", "1 hour", "90 minutes", "1 second"]
    assert interval_text(None) == "none"
