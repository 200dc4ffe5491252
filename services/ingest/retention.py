"""Retention (docs/retention.md): when a segment may be purged. Pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta, tzinfo


def add_calendar_years(day: date, years: int) -> date:
    """The same calendar day `years` later; 29 February rounds up to 1 March, so a retention
    period is never a day short (3 x 365 days, or relativedelta, lands on 28 February)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February into a common year
        return date(day.year + years, 3, 1)


def end_of_local_day(day: date, zone: tzinfo) -> datetime:
    """The instant the local day ends (the next local midnight), in UTC."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)


def expiry_for(
    segment_end: datetime,
    sitting_ends: Iterable[datetime],
    *,
    zone: tzinfo,
    years: int = 3,
) -> datetime:
    """The earliest instant a segment may be purged.

    The latest of: the end of the local day `years` calendar years after the end of every
    sitting the segment covers, or after the segment's own end when it covers none.
    """
    anchors = list(sitting_ends) or [segment_end]
    return max(
        end_of_local_day(add_calendar_years(anchor.astimezone(zone).date(), years), zone)
        for anchor in anchors
    )
