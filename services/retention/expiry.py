"""Retention (docs/retention.md): when a segment may be purged, and whether a hold keeps it.
Pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum


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


@dataclass(frozen=True)
class HoldScope:
    """What one active hold covers, resolved to plain values: a segment, or a camera over an
    interval (a sitting hold becomes one of these per camera of its room)."""

    hold_id: int
    segment_id: int | None = None
    camera_id: int | None = None
    start: datetime | None = None  # None: open-ended
    end: datetime | None = None


@dataclass(frozen=True)
class SegmentFacts:
    id: int
    camera_id: int
    start: datetime
    end: datetime
    expires_at: datetime
    purged: bool = False


class PurgeDecision(StrEnum):
    PURGE = "purge"
    HELD = "held"
    NOT_EXPIRED = "not_expired"
    ALREADY_PURGED = "already_purged"


def holds_covering(segment: SegmentFacts, holds: Iterable[HoldScope]) -> list[int]:
    """The ids of the holds that cover the segment (any overlap of its time counts)."""
    covering = []
    for hold in holds:
        if hold.segment_id is not None:
            if hold.segment_id == segment.id:
                covering.append(hold.hold_id)
        elif hold.camera_id == segment.camera_id and (
            (hold.start is None or hold.start < segment.end)
            and (hold.end is None or hold.end > segment.start)
        ):
            covering.append(hold.hold_id)
    return covering


def purge_decision(
    segment: SegmentFacts, holds: Iterable[HoldScope], as_of: datetime
) -> PurgeDecision:
    """Never a byte before its expiry, never anything held."""
    if segment.purged:
        return PurgeDecision.ALREADY_PURGED
    if segment.expires_at > as_of:
        return PurgeDecision.NOT_EXPIRED
    if holds_covering(segment, holds):
        return PurgeDecision.HELD
    return PurgeDecision.PURGE
