"""Event-time arithmetic."""

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.calendar import add_months, format_timestamp, parse_timestamp, year_of

UTC = timezone.utc


@pytest.mark.parametrize(
    "start, months, expected",
    [
        ("2024-02-29T12:00:00", 12, "2025-02-28T12:00:00"),
        ("2025-01-31T08:30:00", 1, "2025-02-28T08:30:00"),
        ("2024-01-31T08:30:00", 1, "2024-02-29T08:30:00"),
        ("2025-03-31T00:00:00", 12, "2026-03-31T00:00:00"),
        ("2025-11-30T23:59:59", 3, "2026-02-28T23:59:59"),
        ("2025-12-15T10:00:00", 1, "2026-01-15T10:00:00"),
    ],
)
def test_add_months_clamps_to_the_last_day(start, months, expected):
    moment = datetime.fromisoformat(start).replace(tzinfo=UTC)
    assert add_months(moment, months) == datetime.fromisoformat(expected).replace(tzinfo=UTC)


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9000, 1, 1)),
       st.integers(0, 240))
def test_add_months_keeps_time_and_never_goes_back(naive, months):
    moment = naive.replace(tzinfo=UTC)
    later = add_months(moment, months)
    assert later >= moment
    assert later.time() == moment.time()
    assert (later.year * 12 + later.month) - (moment.year * 12 + moment.month) == months


def test_timestamps_are_read_in_utc_and_need_an_offset():
    assert year_of(parse_timestamp("2025-01-01T00:30:00+01:00")) == 2024
    assert format_timestamp(parse_timestamp("2025-06-01T12:00:00-02:00")) == "2025-06-01T14:00:00Z"
    with pytest.raises(ValueError, match="offset"):
        parse_timestamp("2025-06-01T12:00:00")
