"""Event-time arithmetic: UTC normalisation, calendar years, month addition.

Nothing here reads the wall clock; every function takes the moment it works on.
"""

from __future__ import annotations

import calendar
from datetime import datetime, timezone

UTC = timezone.utc


def to_utc(moment: datetime) -> datetime:
    """Return ``moment`` in UTC; a naive datetime is a programming error."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"timestamp without a UTC offset: {moment.isoformat()}")
    return moment.astimezone(UTC)


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 timestamp with an offset (``Z`` allowed) into UTC."""
    return to_utc(datetime.fromisoformat(text))


def year_of(moment: datetime) -> int:
    """The calendar year of ``moment`` in UTC (CONTRACT 3: years are UTC years)."""
    return to_utc(moment).year


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus whole months: same day and time, clamped to the month's end.

    2024-02-29 + 12 months is 2025-02-28; 2025-01-31 + 1 month is 2025-02-28.
    """
    month_index = moment.month - 1 + months
    year = moment.year + month_index // 12
    month = month_index % 12 + 1
    last_day = calendar.monthrange(year, month)[1]
    return moment.replace(year=year, month=month, day=min(moment.day, last_day))


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix, the form every output uses."""
    return to_utc(moment).isoformat().replace("+00:00", "Z")
