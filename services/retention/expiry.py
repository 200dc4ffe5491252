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
    required_ends: Iterable[datetime],
    *,
    zone: tzinfo,
    years: int = 3,
) -> datetime:
    """The earliest instant a segment may be purged.

    The latest of: the end of the local day `years` calendar years after the segment's own end,
    and the same after the end of the required interval (margins included) of every sitting
    the segment touches. A frame is never kept less than `years`, whichever sitting it serves.
    """
    return max(
        end_of_local_day(add_calendar_years(anchor.astimezone(zone).date(), years), zone)
        for anchor in (segment_end, *required_ends)
    )


@dataclass(frozen=True)
class HoldScope:
    """One frozen part of what an active hold covers: a segment, or a camera over an interval.
    A sitting hold has one per camera of its room, and more once the sitting has moved."""

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


def sitting_scopes(
    hold_id: int, camera_ids: Iterable[int], start: datetime, end: datetime
) -> list[HoldScope]:
    """A sitting hold's scope: every camera of the room over the sitting's required interval."""
    return [
        HoldScope(hold_id, camera_id=camera_id, start=start, end=end)
        for camera_id in sorted(set(camera_ids))
    ]


def scope_covers(scope: HoldScope, segment: SegmentFacts) -> bool:
    """Whether the scope covers the segment (any overlap of its time counts)."""
    if scope.segment_id is not None:
        return scope.segment_id == segment.id
    return (
        scope.camera_id == segment.camera_id
        and (scope.start is None or scope.start < segment.end)
        and (scope.end is None or scope.end > segment.start)
    )


def holds_covering(segment: SegmentFacts, holds: Iterable[HoldScope]) -> list[int]:
    """The ids of the holds that cover the segment, each once, in order."""
    return sorted({scope.hold_id for scope in holds if scope_covers(scope, segment)})


def _contains(outer: HoldScope, inner: HoldScope) -> bool:
    if outer.segment_id is not None:
        return inner.segment_id == outer.segment_id
    if inner.segment_id is not None:
        # A camera part does not say when the segment was: add it rather than guess.
        return False
    return (
        outer.camera_id == inner.camera_id
        and (outer.start is None or (inner.start is not None and outer.start <= inner.start))
        and (outer.end is None or (inner.end is not None and outer.end >= inner.end))
    )


def scopes_to_add(frozen: Iterable[HoldScope], wanted: Iterable[HoldScope]) -> list[HoldScope]:
    """What a hold must add so it covers the union of its frozen scope and `wanted` (a moved
    sitting's new scope): each wanted part not already inside a frozen part of the same hold."""
    have = list(frozen)
    return [
        scope
        for scope in wanted
        if not any(part.hold_id == scope.hold_id and _contains(part, scope) for part in have)
    ]


def newly_covered(
    segments: Iterable[SegmentFacts], frozen: Iterable[HoldScope], added: Iterable[HoldScope]
) -> list[int]:
    """The segments the added scopes cover that the frozen ones did not, by id."""
    before, after = list(frozen), list(added)
    return sorted(
        segment.id
        for segment in segments
        if any(scope_covers(scope, segment) for scope in after)
        and not any(scope_covers(scope, segment) for scope in before)
    )


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
